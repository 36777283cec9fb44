//! Sync requests and jobs.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::auth::extract::{CurrentTenant, CurrentUser};
use crate::connections::Viewer;
use crate::error::{AppError, AppResult};
use crate::input::SingleLine;
use crate::jobs::{Job, JobStatus};
use crate::sync::leases::JobLogLine;
use crate::sync::service::{self, Enqueued, Health};
use crate::web::extract::{ApiQuery, parse_json};
use crate::web::openapi::responses as errors;
use crate::web::parse_path_id;

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncAll {
    /// Only this provider; absent: every connected one.
    #[serde(default)]
    provider: Option<SingleLine>,
    /// Admins: sync even inside the minimum interval (audited). Others: 403.
    #[serde(default)]
    force: bool,
}

#[utoipa::path(
    post,
    path = "/data/sync",
    operation_id = "sync_data",
    tag = "sync",
    summary = "Sync one provider, or every connected one",
    description = "The body is optional: none (or {}) syncs every connected provider. Each connection's object syncs at most once per PLUGBOARD_SYNC_MIN_INTERVAL_SECS: inside that window the answer is 429 with Retry-After and `lastSyncAt`, unless an admin sends `force: true` (audited).",
    security(("session_cookie" = [])),
    request_body = inline(SyncAll),
    responses((status = 202, description = "Jobs queued (or the ones already queued).", body = Vec<Enqueued>), errors::Tenant, errors::Conflict, errors::Unavailable, errors::Body, errors::RateLimited)
)]
pub async fn sync_data(
    State(state): State<AppState>,
    current: CurrentTenant,
    body: axum::body::Bytes,
) -> AppResult<(StatusCode, Json<Vec<Enqueued>>)> {
    // The body is optional: none means every connected provider. Anything
    // else must be the object, so a mangled body never widens to "all".
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    let input: SyncAll = match first {
        None => SyncAll::default(),
        Some(b'{') => parse_json(&body)?,
        Some(_) => {
            return Err(AppError::bad_request(
                None,
                "expected a JSON object such as {\"provider\": \"…\"}, or no body",
            ));
        }
    };
    let jobs = match input.provider {
        Some(p) => service::enqueue_now(&state, &current.tenant, &p, None, input.force).await?,
        None => service::enqueue_all_now(&state, &current.tenant, input.force).await?,
    };
    Ok((StatusCode::ACCEPTED, Json(jobs)))
}

#[utoipa::path(
    post,
    path = "/integrations/{provider}/{object}/sync",
    operation_id = "sync_object",
    tag = "sync",
    summary = "Sync one object of a provider",
    security(("session_cookie" = [])),
    params(("provider" = String, Path, description = "A provider key from the catalog."), ("object" = String, Path, description = "An object key of the provider.")),
    responses((status = 202, description = "Jobs queued.", body = Vec<Enqueued>), errors::Tenant, errors::Conflict, errors::Unavailable, errors::JsonContentType, errors::RateLimited)
)]
pub async fn sync_object(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path((provider, object)): Path<(String, String)>,
) -> AppResult<(StatusCode, Json<Vec<Enqueued>>)> {
    let jobs = service::enqueue(&state, &current.tenant, &provider, Some(&object)).await?;
    Ok((StatusCode::ACCEPTED, Json(jobs)))
}

#[derive(Deserialize)]
pub struct JobsQuery {
    object: Option<SingleLine>,
    status: Option<SingleLine>,
}

#[utoipa::path(
    get,
    path = "/integrations/{provider}/jobs",
    operation_id = "list_jobs",
    tag = "sync",
    summary = "A provider's recent jobs (100)",
    security(("session_cookie" = [])),
    params(("provider" = String, Path, description = "A provider key from the catalog."), ("object" = Option<String>, Query, description = "Only this object."), ("status" = Option<JobStatus>, Query, description = "Only jobs in this status.")),
    responses((status = 200, description = "Jobs, newest first.", body = Vec<Job>), errors::Tenant, errors::Invalid)
)]
pub async fn list(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path(provider): Path<String>,
    ApiQuery(q): ApiQuery<JobsQuery>,
) -> AppResult<Json<Vec<Job>>> {
    Ok(Json(
        state
            .store
            .list_jobs(
                Viewer::from(&current.tenant),
                &provider,
                q.object.as_deref(),
                q.status.as_deref(),
                100,
            )
            .await?,
    ))
}

#[utoipa::path(
    get,
    path = "/jobs/{id}",
    operation_id = "show_job",
    tag = "sync",
    summary = "A job and its log",
    security(("session_cookie" = [])),
    params(("id" = Uuid, Path, description = "The job.")),
    responses((status = 200, description = "The job.", body = JobDetail), errors::Tenant)
)]
pub async fn show(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path(id): Path<String>,
) -> AppResult<Json<JobDetail>> {
    let id = parse_path_id(&id, "job")?;
    let job = service::job(&state, &current.tenant, id).await?;
    let log = state
        .store
        .job_logs(Viewer::from(&current.tenant), id)
        .await?;
    Ok(Json(JobDetail { job, log }))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct JobDetail {
    job: Job,
    log: Vec<JobLogLine>,
}

#[utoipa::path(
    post,
    path = "/jobs/{id}/cancel",
    operation_id = "cancel_job",
    tag = "sync",
    summary = "Cancel a queued or running job",
    security(("session_cookie" = [])),
    params(("id" = Uuid, Path, description = "The job.")),
    responses((status = 200, description = "The job.", body = Job), errors::Tenant, errors::Conflict, errors::JsonContentType)
)]
pub async fn cancel(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path(id): Path<String>,
) -> AppResult<Json<Job>> {
    Ok(Json(
        service::cancel(&state, &current.tenant, parse_path_id(&id, "job")?).await?,
    ))
}

#[utoipa::path(
    post,
    path = "/jobs/{id}/retry",
    operation_id = "retry_job",
    tag = "sync",
    summary = "Queue a finished job again",
    security(("session_cookie" = [])),
    params(("id" = Uuid, Path, description = "The job.")),
    responses((status = 202, description = "Queued.", body = Enqueued), errors::Tenant, errors::Conflict, errors::Unavailable, errors::JsonContentType)
)]
pub async fn retry(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path(id): Path<String>,
) -> AppResult<(StatusCode, Json<Enqueued>)> {
    Ok((
        StatusCode::ACCEPTED,
        Json(service::retry(&state, &current.tenant, parse_path_id(&id, "job")?).await?),
    ))
}

#[utoipa::path(
    get,
    path = "/integrations/health",
    operation_id = "sync_health",
    tag = "sync",
    summary = "The sync workers and queue",
    security(("session_cookie" = [])),
    responses((status = 200, description = "Queue health.", body = Health), errors::SignedIn)
)]
pub async fn health(State(state): State<AppState>, _user: CurrentUser) -> AppResult<Json<Health>> {
    Ok(Json(service::health(&state).await?))
}
