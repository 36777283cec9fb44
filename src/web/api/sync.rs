//! Sync requests and jobs.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;

use crate::app::AppState;
use crate::auth::extract::{CurrentTenant, CurrentUser};
use crate::connections::Viewer;
use crate::error::{AppError, AppResult};
use crate::input::SingleLine;
use crate::jobs::Job;
use crate::sync::service::{self, Enqueued, Health};
use crate::web::extract::{ApiQuery, parse_json};
use crate::web::parse_path_id;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SyncAll {
    #[serde(default)]
    provider: Option<SingleLine>,
}

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
        Some(p) => service::enqueue(&state, &current.tenant, &p, None).await?,
        None => service::enqueue_all(&state, &current.tenant).await?,
    };
    Ok((StatusCode::ACCEPTED, Json(jobs)))
}

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

pub async fn show(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path(id): Path<String>,
) -> AppResult<Json<serde_json::Value>> {
    let id = parse_path_id(&id, "job")?;
    let job = service::job(&state, &current.tenant, id).await?;
    let log = state
        .store
        .job_logs(Viewer::from(&current.tenant), id)
        .await?;
    Ok(Json(serde_json::json!({ "job": job, "log": log })))
}

pub async fn cancel(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path(id): Path<String>,
) -> AppResult<Json<Job>> {
    Ok(Json(
        service::cancel(&state, &current.tenant, parse_path_id(&id, "job")?).await?,
    ))
}

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

pub async fn health(State(state): State<AppState>, _user: CurrentUser) -> AppResult<Json<Health>> {
    Ok(Json(service::health(&state).await?))
}
