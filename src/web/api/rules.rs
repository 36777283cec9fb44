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
use crate::rules::RuleInput;
use crate::rules::service::{self, RuleView, Saved};
use crate::web::extract::{ApiQuery, PointerJson};
use crate::web::openapi::responses as errors;

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

#[utoipa::path(
    get,
    path = "/integrations/{provider}/{object}/rules",
    operation_id = "list_rules",
    tag = "sync",
    summary = "Sync rules of an object (admins)",
    security(("session_cookie" = [])),
    params(("provider" = String, Path, description = "A provider key from the catalog."), ("object" = String, Path, description = "An object key of the provider."), ("connectionId" = Option<Uuid>, Query, description = "The connection; default: the one you'd use.")),
    responses((status = 200, description = "Rules.", body = Vec<RuleView>), errors::Tenant, errors::Invalid)
)]
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
#[utoipa::path(
    put,
    path = "/integrations/{provider}/{object}/rules",
    operation_id = "save_rule",
    tag = "sync",
    summary = "Create or replace a sync rule (admins)",
    description = "Validated against the rule schema; errors name the field by JSON pointer. Values the server adjusted instead of rejecting are listed in `adjusted`. Send the `revision` you edited to detect concurrent edits (409).",
    security(("session_cookie" = [])),
    params(("provider" = String, Path, description = "A provider key from the catalog."), ("object" = String, Path, description = "An object key of the provider.")),
    request_body = RuleInput,
    responses((status = 201, description = "Created.", body = Saved), (status = 200, description = "Replaced.", body = Saved), errors::Tenant, errors::Conflict, errors::Body)
)]
pub async fn put(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path((provider, object)): Path<(String, String)>,
    PointerJson(body): PointerJson<RuleInput>,
) -> AppResult<(StatusCode, Json<Saved>)> {
    let saved = service::save(&state, &current.tenant, &provider, &object, body).await?;
    let status = if saved.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(saved)))
}

#[utoipa::path(
    delete,
    path = "/integrations/{provider}/{object}/rules",
    operation_id = "delete_rule",
    tag = "sync",
    summary = "Delete a sync rule (admins)",
    security(("session_cookie" = [])),
    params(("provider" = String, Path, description = "A provider key from the catalog."), ("object" = String, Path, description = "An object key of the provider."), ("connectionId" = Option<Uuid>, Query, description = "The connection; default: the one you'd use.")),
    responses((status = 204, description = "Deleted."), errors::Tenant, errors::Invalid, errors::JsonContentType)
)]
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
