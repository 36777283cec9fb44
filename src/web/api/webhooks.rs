//! A workspace's connection-events webhook (admins).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::audit::AuditEntry;
use crate::auth::extract::PathTenant;
use crate::error::{AppError, AppResult};
use crate::input::SingleLine;
use crate::web::extract::ApiJson;
use crate::web::openapi::responses as errors;
use crate::webhooks::store::DeliveryRecord;

#[derive(Deserialize, utoipa::ToSchema)]
pub struct WebhookInput {
    /// An http(s) URL, at most 2000 characters.
    url: SingleLine,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct WebhookView {
    url: String,
}

/// The endpoint and its new signing secret: the only response that
/// carries it.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookCreated {
    url: String,
    /// HMAC key for the deliveries' signatures (whsec_…), shown this once.
    signing_secret: String,
}

/// Sets the endpoint and returns a new signing secret, shown this once.
#[utoipa::path(
    put,
    path = "/workspaces/{workspace_id}/webhook",
    operation_id = "set_webhook",
    tag = "webhooks",
    summary = "Set the webhook endpoint (admins); a new signing secret is shown this once",
    security(("session_cookie" = [])),
    params(("workspace_id" = Uuid, Path, description = "A workspace you administer.")),
    request_body = WebhookInput,
    responses((status = 200, description = "The endpoint and its signing secret (returned only here).", body = WebhookCreated), errors::Tenant, errors::Body)
)]
pub async fn put(
    State(state): State<AppState>,
    path: PathTenant,
    ApiJson(input): ApiJson<WebhookInput>,
) -> AppResult<(StatusCode, Json<WebhookCreated>)> {
    let (url, secret) = crate::webhooks::set_endpoint(&state, &path.tenant, &input.url).await?;
    Ok((
        StatusCode::OK,
        Json(WebhookCreated {
            url,
            signing_secret: secret.expose().to_owned(),
        }),
    ))
}

#[utoipa::path(
    get,
    path = "/workspaces/{workspace_id}/webhook",
    operation_id = "get_webhook",
    tag = "webhooks",
    summary = "The webhook endpoint (admins)",
    security(("session_cookie" = [])),
    params(("workspace_id" = Uuid, Path, description = "A workspace you administer.")),
    responses((status = 200, description = "The endpoint.", body = WebhookView), errors::Tenant)
)]
pub async fn get(State(state): State<AppState>, path: PathTenant) -> AppResult<Json<WebhookView>> {
    path.tenant.require_admin("manage webhooks")?;
    let url = state
        .store
        .get_webhook_url(path.tenant.workspace_id)
        .await?
        .ok_or_else(|| AppError::not_found("no webhook configured"))?;
    Ok(Json(WebhookView { url }))
}

#[utoipa::path(
    delete,
    path = "/workspaces/{workspace_id}/webhook",
    operation_id = "delete_webhook",
    tag = "webhooks",
    summary = "Remove the webhook (admins)",
    security(("session_cookie" = [])),
    params(("workspace_id" = Uuid, Path, description = "A workspace you administer.")),
    responses((status = 204, description = "Removed."), errors::Tenant, errors::JsonContentType)
)]
pub async fn delete(State(state): State<AppState>, path: PathTenant) -> AppResult<StatusCode> {
    path.tenant.require_admin("manage webhooks")?;
    let audit = AuditEntry::new(
        Some(path.tenant.workspace_id),
        Some(path.tenant.user_id),
        "webhook.delete",
    );
    if state
        .store
        .delete_webhook(path.tenant.workspace_id, &audit)
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(AppError::not_found("no webhook configured"))
    }
}

#[utoipa::path(
    get,
    path = "/workspaces/{workspace_id}/webhook/deliveries",
    operation_id = "webhook_deliveries",
    tag = "webhooks",
    summary = "Recent deliveries (100, admins)",
    security(("session_cookie" = [])),
    params(("workspace_id" = Uuid, Path, description = "A workspace you administer.")),
    responses((status = 200, description = "Deliveries, newest first.", body = Vec<DeliveryRecord>), errors::Tenant)
)]
pub async fn deliveries(
    State(state): State<AppState>,
    path: PathTenant,
) -> AppResult<Json<Vec<DeliveryRecord>>> {
    path.tenant.require_admin("manage webhooks")?;
    Ok(Json(
        state
            .store
            .list_deliveries(path.tenant.workspace_id, 100)
            .await?,
    ))
}
