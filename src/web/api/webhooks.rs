//! A workspace's connection-events webhook (admins).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;

use crate::app::AppState;
use crate::audit::AuditEntry;
use crate::auth::extract::PathTenant;
use crate::auth::session::random_token;
use crate::error::{AppError, AppResult};
use crate::input::SingleLine;
use crate::vault::Secret;
use crate::vault::store::seal_field;
use crate::web::extract::ApiJson;
use crate::webhooks::SECRET_FIELD;
use crate::webhooks::store::{DeliveryRecord, secret_place};

#[derive(Deserialize)]
pub struct WebhookInput {
    url: SingleLine,
}

/// Sets the endpoint and returns a new signing secret, shown this once.
pub async fn put(
    State(state): State<AppState>,
    path: PathTenant,
    ApiJson(input): ApiJson<WebhookInput>,
) -> AppResult<(StatusCode, Json<serde_json::Value>)> {
    path.tenant.require_admin("manage webhooks")?;
    let url = input.url.trim();
    if !(url.starts_with("https://") || url.starts_with("http://"))
        || url.len() > 2000
        || url.contains(char::is_whitespace)
    {
        return Err(AppError::validation("url", "expected an http(s) URL"));
    }
    // Names are checked again on the address they resolve to, per delivery.
    let parsed = reqwest::Url::parse(url)
        .map_err(|_| AppError::validation("url", "expected an http(s) URL"))?;
    state
        .outbound
        .policy()
        .check_url(&parsed)
        .map_err(|e| AppError::validation("url", e.to_string()))?;
    let ws = path.tenant.workspace_id;
    let secret = Secret::new(format!("whsec_{}", random_token()));
    let sealed = seal_field(&state.keys, &secret_place(ws), SECRET_FIELD, &secret)
        .map_err(AppError::internal)?;
    let audit = AuditEntry::new(Some(ws), Some(path.tenant.user_id), "webhook.set")
        .details(serde_json::json!({ "url": url }));
    state.store.set_webhook(ws, url, &sealed, &audit).await?;
    Ok((
        StatusCode::OK,
        Json(serde_json::json!({ "url": url, "signingSecret": secret.expose() })),
    ))
}

pub async fn get(
    State(state): State<AppState>,
    path: PathTenant,
) -> AppResult<Json<serde_json::Value>> {
    path.tenant.require_admin("manage webhooks")?;
    let url = state
        .store
        .get_webhook_url(path.tenant.workspace_id)
        .await?
        .ok_or_else(|| AppError::not_found("no webhook configured"))?;
    Ok(Json(serde_json::json!({ "url": url })))
}

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
