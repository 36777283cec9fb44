//! Sync rules per provider object (admins).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use uuid::Uuid;

use crate::app::AppState;
use crate::auth::extract::CurrentTenant;
use crate::error::{AppError, AppResult};
use crate::input::SingleLine;
use crate::rules::service::{self, RuleView, Saved};
use crate::web::extract::{ApiJson, ApiQuery};

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct RuleQuery {
    connection_id: Option<SingleLine>,
}

impl RuleQuery {
    fn connection_id(&self) -> AppResult<Option<Uuid>> {
        self.connection_id
            .as_deref()
            .filter(|raw| !raw.is_empty())
            .map(|raw| {
                Uuid::parse_str(raw).map_err(|_| {
                    AppError::validation("connectionId", format!("{raw:?} is not a connection id"))
                })
            })
            .transpose()
    }
}

pub async fn list(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path((provider, object)): Path<(String, String)>,
    ApiQuery(q): ApiQuery<RuleQuery>,
) -> AppResult<Json<Vec<RuleView>>> {
    let id = q.connection_id()?;
    Ok(Json(
        service::list(&state, &current.tenant, &provider, &object, id).await?,
    ))
}

/// 201 when the rule was created, 200 when replaced.
pub async fn put(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path((provider, object)): Path<(String, String)>,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> AppResult<(StatusCode, Json<Saved>)> {
    let saved = service::save(&state, &current.tenant, &provider, &object, body).await?;
    let status = if saved.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(saved)))
}

pub async fn delete(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path((provider, object)): Path<(String, String)>,
    ApiQuery(q): ApiQuery<RuleQuery>,
) -> AppResult<StatusCode> {
    let id = q.connection_id()?;
    service::delete(&state, &current.tenant, &provider, &object, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
