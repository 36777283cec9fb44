//! Connect links of a workspace (admins), for automations that hand out
//! "connect your account" links.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use uuid::Uuid;

use crate::app::AppState;
use crate::auth::extract::PathTenant;
use crate::connectlinks::{self, ConnectLink, CreatedLink, LinkRequest};
use crate::error::AppResult;
use crate::input::SingleLine;
use crate::web::extract::ApiJson;
use crate::web::openapi::responses as errors;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewLinkInput {
    /// A provider key that connects through a browser sign-in. Not needed
    /// with `connectionId`.
    #[schema(value_type = Option<String>)]
    provider: Option<SingleLine>,
    /// `workspace` (default: any admin may use it) or `user` (only `userId`).
    #[schema(value_type = Option<String>)]
    ownership: Option<SingleLine>,
    /// The member a `user` link is for.
    user_id: Option<Uuid>,
    /// A base-URL variant key of the provider (its default when absent).
    #[schema(value_type = Option<String>)]
    environment: Option<SingleLine>,
    /// A connection to reconnect: provider, environment and owner are its own.
    connection_id: Option<Uuid>,
}

#[utoipa::path(
    post,
    path = "/workspaces/{workspace_id}/connect-links",
    operation_id = "create_connect_link",
    tag = "connections",
    summary = "Create a single-use connect link, valid 7 days (admins); the URL is in this response only",
    security(("session_cookie" = [])),
    params(("workspace_id" = Uuid, Path, description = "A workspace you administer.")),
    request_body = NewLinkInput,
    responses((status = 201, description = "The link; `url` is shown this once and stored only hashed.", body = CreatedLink), errors::Tenant, errors::Body)
)]
pub async fn create(
    State(state): State<AppState>,
    path: PathTenant,
    ApiJson(input): ApiJson<NewLinkInput>,
) -> AppResult<(StatusCode, Json<CreatedLink>)> {
    let text = |v: Option<SingleLine>| v.map(|s| s.to_string());
    let request = LinkRequest {
        provider: text(input.provider),
        ownership: text(input.ownership),
        user_id: input.user_id,
        environment: text(input.environment),
        connection_id: input.connection_id,
    };
    let created = connectlinks::create(&state, &path.tenant, &request).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[utoipa::path(
    get,
    path = "/workspaces/{workspace_id}/connect-links",
    operation_id = "list_connect_links",
    tag = "connections",
    summary = "The workspace's open connect links, without their tokens (admins)",
    security(("session_cookie" = [])),
    params(("workspace_id" = Uuid, Path, description = "A workspace you administer.")),
    responses((status = 200, description = "Open links, oldest first.", body = Vec<ConnectLink>), errors::Tenant)
)]
pub async fn list(
    State(state): State<AppState>,
    path: PathTenant,
) -> AppResult<Json<Vec<ConnectLink>>> {
    Ok(Json(connectlinks::list(&state, &path.tenant).await?))
}

#[utoipa::path(
    delete,
    path = "/workspaces/{workspace_id}/connect-links/{link_id}",
    operation_id = "revoke_connect_link",
    tag = "connections",
    summary = "Revoke an open connect link (admins)",
    security(("session_cookie" = [])),
    params(("workspace_id" = Uuid, Path, description = "A workspace you administer."), ("link_id" = Uuid, Path, description = "The link.")),
    responses((status = 204, description = "Revoked."), errors::Tenant, errors::JsonContentType)
)]
pub async fn revoke(
    State(state): State<AppState>,
    path: PathTenant,
    Path((_, link_id)): Path<(String, String)>,
) -> AppResult<StatusCode> {
    let id = crate::web::parse_path_id(&link_id, "connect link")?;
    connectlinks::revoke(&state, &path.tenant, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
