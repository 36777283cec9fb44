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

#[derive(Deserialize)]
pub struct NewKeyInput {
    name: Name,
    scopes: Vec<SingleLine>,
}

pub async fn create(
    State(state): State<AppState>,
    path: PathTenant,
    ApiJson(input): ApiJson<NewKeyInput>,
) -> AppResult<(StatusCode, Json<CreatedKey>)> {
    let scopes: Vec<String> = input.scopes.iter().map(|s| s.to_string()).collect();
    let created = service::create(&state.store, &path.tenant, &input.name, &scopes).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

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

pub async fn revoke(
    State(state): State<AppState>,
    path: PathTenant,
    Path((_, key_id)): Path<(String, String)>,
) -> AppResult<StatusCode> {
    let id = crate::web::parse_path_id(&key_id, "service key")?;
    service::revoke(&state.store, &path.tenant, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
