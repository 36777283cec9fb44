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
use crate::web::openapi::{ErrorBody, responses as errors};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionQuery {
    connection_id: Option<SingleLine>,
}

fn query_id(raw: Option<&str>, field: &str, what: &str) -> AppResult<Uuid> {
    let raw = raw.ok_or_else(|| AppError::validation(field, format!("{field} is required")))?;
    crate::web::parse_path_id(raw, what)
}

#[utoipa::path(
    get,
    path = "/connection-tokens",
    operation_id = "connection_tokens",
    tag = "internal",
    summary = "A connection's fresh access token (scope tokens:read); the only route that returns tokens",
    description = "Refreshed first when about to expire; every call is audited. The refresh token is included only for keys with tokens:read_refresh.",
    security(("service_key" = []), ("service_key_bearer" = [])),
    params(("connectionId" = Uuid, Query, description = "The connection.")),
    responses(
        (status = 200, description = "Tokens and the headers a provider call needs.", body = IssuedTokens),
        (status = 409, description = "The connection is not usable (status in the message).", body = ErrorBody),
        errors::Invalid,
        errors::ServiceKey
    )
)]
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

#[utoipa::path(
    post,
    path = "/metrics/write",
    operation_id = "write_metrics",
    tag = "internal",
    summary = "Write a batch of daily metric rows (scope metrics:write)",
    description = "Every row is validated first; one invalid row rejects the batch and nothing is written.",
    security(("service_key" = []), ("service_key_bearer" = [])),
    request_body = MetricsWrite,
    responses((status = 200, description = "Counts of rows written.", body = WriteCounts), errors::Body, errors::ServiceKey)
)]
pub async fn write_metrics(
    State(state): State<AppState>,
    ServiceAuth(caller): ServiceAuth,
    ApiJson(input): ApiJson<MetricsWrite>,
) -> AppResult<Json<WriteCounts>> {
    Ok(Json(
        internal::write_metrics(&state, &caller, &input).await?,
    ))
}

#[utoipa::path(
    post,
    path = "/runs/callback",
    operation_id = "run_callback",
    tag = "internal",
    summary = "Report an external job's progress or outcome (scope runs:write)",
    security(("service_key" = []), ("service_key_bearer" = [])),
    request_body = RunCallback,
    responses((status = 200, description = "The job as now recorded.", body = Job), errors::Conflict, errors::Body, errors::ServiceKey)
)]
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

#[utoipa::path(
    get,
    path = "/run-context",
    operation_id = "run_context",
    tag = "internal",
    summary = "What an automation needs to run a job, never tokens (scope context:read)",
    security(("service_key" = []), ("service_key_bearer" = [])),
    params(("jobId" = Uuid, Query, description = "The job.")),
    responses((status = 200, description = "The job's context.", body = RunContext), errors::Invalid, errors::ServiceKey)
)]
pub async fn run_context(
    State(state): State<AppState>,
    ServiceAuth(caller): ServiceAuth,
    ApiQuery(query): ApiQuery<JobQuery>,
) -> AppResult<Json<RunContext>> {
    let id = query_id(query.job_id.as_deref(), "jobId", "job")?;
    Ok(Json(internal::run_context(&state, &caller, id).await?))
}
