//! Service keys of a workspace (admins).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;

use crate::app::AppState;
use crate::auth::extract::PathTenant;
use crate::error::AppResult;
use crate::input::{Name, SingleLine};
use crate::servicekeys::service::{self, CreatedKey};
use crate::servicekeys::store::ServiceKeyRecord;
use crate::web::extract::ApiJson;
use crate::web::openapi::responses as errors;

#[derive(Deserialize, utoipa::ToSchema)]
pub struct NewKeyInput {
    name: Name,
    #[schema(value_type = Vec<crate::servicekeys::Scope>)]
    scopes: Vec<SingleLine>,
}

#[utoipa::path(
    post,
    path = "/workspaces/{workspace_id}/service-keys",
    operation_id = "create_service_key",
    tag = "service-keys",
    summary = "Create a service key (admins); the full key is in this response only",
    security(("session_cookie" = [])),
    params(("workspace_id" = Uuid, Path, description = "A workspace you administer.")),
    request_body = NewKeyInput,
    responses((status = 201, description = "The key; `key` is shown this once and stored only hashed.", body = CreatedKey), errors::Tenant, errors::Body)
)]
pub async fn create(
    State(state): State<AppState>,
    path: PathTenant,
    ApiJson(input): ApiJson<NewKeyInput>,
) -> AppResult<(StatusCode, Json<CreatedKey>)> {
    let scopes: Vec<String> = input.scopes.iter().map(|s| s.to_string()).collect();
    let created = service::create(&state.store, &path.tenant, &input.name, &scopes).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[utoipa::path(
    get,
    path = "/workspaces/{workspace_id}/service-keys",
    operation_id = "list_service_keys",
    tag = "service-keys",
    summary = "The workspace's service keys, without their secrets (admins)",
    security(("session_cookie" = [])),
    params(("workspace_id" = Uuid, Path, description = "A workspace you administer.")),
    responses((status = 200, description = "Keys (prefix only).", body = Vec<ServiceKeyRecord>), errors::Tenant)
)]
pub async fn list(
    State(state): State<AppState>,
    path: PathTenant,
) -> AppResult<Json<Vec<ServiceKeyRecord>>> {
    path.tenant.require_admin("manage service keys")?;
    Ok(Json(
        state
            .store
            .list_service_keys(path.tenant.workspace_id)
            .await?,
    ))
}

#[utoipa::path(
    delete,
    path = "/workspaces/{workspace_id}/service-keys/{key_id}",
    operation_id = "revoke_service_key",
    tag = "service-keys",
    summary = "Revoke a service key (admins)",
    security(("session_cookie" = [])),
    params(("workspace_id" = Uuid, Path, description = "A workspace you administer."), ("key_id" = Uuid, Path, description = "The key.")),
    responses((status = 204, description = "Revoked."), errors::Tenant, errors::JsonContentType)
)]
pub async fn revoke(
    State(state): State<AppState>,
    path: PathTenant,
    Path((_, key_id)): Path<(String, String)>,
) -> AppResult<StatusCode> {
    let id = crate::web::parse_path_id(&key_id, "service key")?;
    service::revoke(&state.store, &path.tenant, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
