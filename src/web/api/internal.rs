//! `/api/internal/*`: server-to-server endpoints for automations.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use uuid::Uuid;

use crate::app::AppState;
use crate::error::{AppError, AppResult};
use crate::input::SingleLine;
use crate::internal::{self, IssuedTokens, MetricsWrite, RunCallback, RunContext, ServiceAuth};
use crate::jobs::Job;
use crate::metrics::WriteCounts;
use crate::web::extract::{ApiJson, ApiQuery};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionQuery {
    connection_id: Option<SingleLine>,
}

fn query_id(raw: Option<&str>, field: &str, what: &str) -> AppResult<Uuid> {
    let raw = raw.ok_or_else(|| AppError::validation(field, format!("{field} is required")))?;
    crate::web::parse_path_id(raw, what)
}

pub async fn connection_tokens(
    State(state): State<AppState>,
    ServiceAuth(caller): ServiceAuth,
    ApiQuery(query): ApiQuery<ConnectionQuery>,
) -> AppResult<Json<IssuedTokens>> {
    let id = query_id(query.connection_id.as_deref(), "connectionId", "connection")?;
    Ok(Json(
        internal::connection_tokens(&state, &caller, id).await?,
    ))
}

pub async fn write_metrics(
    State(state): State<AppState>,
    ServiceAuth(caller): ServiceAuth,
    ApiJson(input): ApiJson<MetricsWrite>,
) -> AppResult<Json<WriteCounts>> {
    Ok(Json(
        internal::write_metrics(&state, &caller, &input).await?,
    ))
}

pub async fn run_callback(
    State(state): State<AppState>,
    ServiceAuth(caller): ServiceAuth,
    ApiJson(input): ApiJson<RunCallback>,
) -> AppResult<Json<Job>> {
    Ok(Json(internal::report_run(&state, &caller, &input).await?))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobQuery {
    job_id: Option<SingleLine>,
}

pub async fn run_context(
    State(state): State<AppState>,
    ServiceAuth(caller): ServiceAuth,
    ApiQuery(query): ApiQuery<JobQuery>,
) -> AppResult<Json<RunContext>> {
    let id = query_id(query.job_id.as_deref(), "jobId", "job")?;
    Ok(Json(internal::run_context(&state, &caller, id).await?))
}
