//! The Sync controls tab of an object page: sync now and dry run, the last
//! and next run, the object's recent jobs (status filter, retry, cancel;
//! each links to its Data Hub job page), the newest job's log, and the
//! post-restore resync wizard. Without a live worker, or with ingest off,
//! the buttons are disabled under a banner; each request reads health
//! again, so they come back by themselves.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use time::OffsetDateTime;
use uuid::Uuid;

use super::ObjectRow;
use super::object::{Tab, Target, connection_param, tabs, target};
use crate::app::AppState;
use crate::auth::extract::CurrentTenant;
use crate::connections::{Connection, Viewer};
use crate::error::{AppError, AppResult};
use crate::input::{FormFields, SingleLine};
use crate::jobs::{Job, JobStatus};
use crate::rules::format_mark;
use crate::storage::now;
use crate::sync::leases::JobLogLine;
use crate::sync::resync::{self, ResyncChoice};
use crate::sync::service;
use crate::tenancy::Tenant;
use crate::tenancy::zone::Zone;
use crate::web::extract::{ApiQuery, CsrfForm};
use crate::web::pages::jobs::{duration_text, run_seconds};
use crate::web::pages::kit::{ConfirmPage, FormState, is_confirmed};
use crate::web::pages::{Layout, parse_path_id, redirect_with_outcome, with_status};

const SUFFIX: &str = "/sync";
/// Recent jobs the tab lists (the Data Hub's job history has the rest).
const RECENT: i64 = 25;
/// Log lines shown; the job page pages through all of them.
const LOG_LINES: usize = 30;
/// The banner the issue names, word for word.
pub const PAUSED: &str = "Sync temporarily paused (background worker offline)";

#[derive(Deserialize, Default)]
pub struct SyncQuery {
    connection: Option<SingleLine>,
    status: Option<SingleLine>,
    /// Whose log to show (default: the newest job's).
    job: Option<SingleLine>,
}

pub struct JobLine {
    pub id: Uuid,
    pub status: String,
    /// sync, dry run or resync.
    pub kind: &'static str,
    pub created: String,
    pub duration: String,
    pub error: Option<String>,
    pub can_retry: bool,
    pub can_cancel: bool,
}

/// The resync wizard: shown while the connection carries flags.
pub struct Wizard {
    pub backup_taken_at: String,
    /// (key, label, flagged)
    pub objects: Vec<(String, String, bool)>,
}

#[derive(Template, WebTemplate)]
#[template(path = "integration_sync.html")]
pub struct SyncPage {
    layout: Layout,
    provider_key: String,
    provider_name: String,
    object: ObjectRow,
    connection_id: Option<Uuid>,
    connections: Vec<(Uuid, String)>,
    tabs: Vec<Tab>,
    /// Why the buttons are disabled (the banner shows `PAUSED`).
    paused: Option<String>,
    /// "Sync now" waits for the minimum interval: when it may run again.
    too_soon: Option<String>,
    last_run: Option<JobLine>,
    next_run: String,
    jobs: Vec<JobLine>,
    status_filter: String,
    statuses: Vec<(&'static str, String)>,
    log_job: Option<Uuid>,
    log: Vec<JobLogLine>,
    log_more: bool,
    wizard: Option<Wizard>,
    wizard_form: FormState,
}

impl SyncPage {
    fn is_current(&self, id: &Uuid) -> bool {
        self.connection_id.as_ref() == Some(id)
    }

    fn disabled(&self) -> bool {
        self.paused.is_some()
    }

    fn paused_text(&self) -> &'static str {
        PAUSED
    }

    fn back(&self) -> String {
        back_to(&self.provider_key, &self.object.key, self.connection_id)
    }
}

fn back_to(provider: &str, object: &str, connection: Option<Uuid>) -> String {
    match connection {
        Some(id) => format!("/integrations/{provider}/{object}{SUFFIX}?connection={id}"),
        None => format!("/integrations/{provider}/{object}{SUFFIX}"),
    }
}

fn kind_of(job: &Job) -> &'static str {
    let meta = &job.metadata.0;
    if meta.get("resync").is_some() {
        "resync"
    } else if meta
        .pointer("/rule/dryRun")
        .and_then(serde_json::Value::as_bool)
        == Some(true)
    {
        "dry run"
    } else {
        "sync"
    }
}

fn job_line(job: &Job, zone: &Zone, may_operate: bool) -> JobLine {
    let status = job.status();
    let duration = match run_seconds(job, now()) {
        Some(s) if status.is_finished() => duration_text(s),
        Some(s) => format!("{} so far", duration_text(s)),
        None => "—".to_owned(),
    };
    JobLine {
        id: job.id,
        status: status.as_str().replace('_', " "),
        kind: kind_of(job),
        created: zone.at(&job.created_at),
        duration,
        error: job.error.as_ref().map(|e| crate::input::excerpt(e, 160)),
        can_retry: may_operate
            && matches!(status, JobStatus::Failed | JobStatus::Cancelled)
            && job.kind == "sync",
        can_cancel: may_operate && !status.is_finished(),
    }
}

/// This connection's jobs of the object, newest first.
async fn object_jobs(
    state: &AppState,
    tenant: &Tenant,
    c: &Connection,
    object: &str,
    status: Option<&str>,
) -> AppResult<Vec<Job>> {
    Ok(state
        .store
        .list_jobs(Viewer::from(tenant), &c.provider, Some(object), status, 200)
        .await?
        .into_iter()
        .filter(|j| j.connection_id == Some(c.id))
        .take(usize::try_from(RECENT).unwrap_or(25))
        .collect())
}

fn status_filter(raw: Option<&str>) -> AppResult<Option<&'static str>> {
    match raw.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => JobStatus::parse(s)
            .map(|s| Some(s.as_str()))
            .ok_or_else(|| AppError::validation("status", "not a job status")),
    }
}

async fn next_run_text(
    state: &AppState,
    tenant: &Tenant,
    c: &Connection,
    object: &str,
    zone: &Zone,
) -> AppResult<String> {
    let rule = state
        .store
        .get_rule(tenant.workspace_id, c.id, object)
        .await?;
    Ok(match rule {
        None => "No rule: it syncs only when asked (save a rule on the Rule tab).".to_owned(),
        Some(r) => match r.next_run_at {
            Some(at) => format!("{} (rule revision {})", zone.at(&at), r.revision),
            None => "Not scheduled: the rule is disabled.".to_owned(),
        },
    })
}

async fn too_soon_text(
    state: &AppState,
    tenant: &Tenant,
    c: &Connection,
    object: &str,
    zone: &Zone,
) -> AppResult<Option<String>> {
    let waits = service::too_soon(state, tenant, c, &[object]).await?;
    Ok(waits.first().map(|w| {
        format!(
            "Synced at {}; Sync now can run again at {} (PLUGBOARD_SYNC_MIN_INTERVAL_SECS).",
            zone.at(&w.last_sync_at),
            zone.at(&w.next_at)
        )
    }))
}

async fn log_of(
    state: &AppState,
    tenant: &Tenant,
    chosen: Option<Uuid>,
    jobs: &[Job],
) -> AppResult<(Option<Uuid>, Vec<JobLogLine>, bool)> {
    // Only a job of this list: the id is the sender's to make up.
    let id = chosen
        .filter(|id| jobs.iter().any(|j| j.id == *id))
        .or_else(|| jobs.first().map(|j| j.id));
    let Some(id) = id else {
        return Ok((None, Vec::new(), false));
    };
    let mut log = state.store.job_logs(Viewer::from(tenant), id).await?;
    let more = log.len() > LOG_LINES;
    let skip = log.len().saturating_sub(LOG_LINES);
    log.drain(..skip);
    Ok((Some(id), log, more))
}

async fn wizard(
    state: &AppState,
    tenant: &Tenant,
    t: &Target<'_>,
    c: &Connection,
    zone: &Zone,
) -> AppResult<Option<Wizard>> {
    let flags = resync::flags(state, tenant, c).await?;
    let Some(taken) = flags.iter().map(|f| f.backup_taken_at).max() else {
        return Ok(None);
    };
    Ok(Some(Wizard {
        backup_taken_at: zone.at(&taken),
        objects: t
            .provider
            .meta
            .objects
            .iter()
            .map(|o| {
                let flagged = flags.iter().any(|f| f.object == o.key);
                (o.key.clone(), o.label.clone(), flagged)
            })
            .collect(),
    }))
}

/// Everything the tab shows; `wizard_form` keeps what was typed when a
/// resync was refused.
async fn render(
    state: &AppState,
    current: &CurrentTenant,
    t: Target<'_>,
    query: &SyncQuery,
    wizard_form: Option<FormState>,
) -> AppResult<SyncPage> {
    let tenant = &current.tenant;
    let layout = Layout::signed_in(state, &current.session, &current.user, tenant).await?;
    let status = status_filter(query.status.as_deref())?;
    let object_key = t.object.key.clone();
    let paused = service::paused_reason(state, &t.provider.meta.key).await;
    let mut page = SyncPage {
        provider_key: t.provider.meta.key.clone(),
        provider_name: t.provider.meta.display_name.clone(),
        object: ObjectRow::of(t.object),
        connection_id: t.connection.as_ref().map(|c| c.id),
        connections: t.connections.clone(),
        tabs: tabs(
            &t.provider.meta.key,
            &object_key,
            t.connection.as_ref().map(|c| c.id),
            SUFFIX,
        ),
        paused,
        too_soon: None,
        last_run: None,
        next_run: String::new(),
        jobs: Vec::new(),
        status_filter: status.unwrap_or_default().to_owned(),
        statuses: JobStatus::ALL
            .iter()
            .map(|s| (s.as_str(), s.as_str().replace('_', " ")))
            .collect(),
        log_job: None,
        log: Vec::new(),
        log_more: false,
        wizard: None,
        wizard_form: FormState::default(),
        layout,
    };
    let Some(c) = &t.connection else {
        return Ok(page);
    };
    let zone = page.layout.zone.clone();
    let may_operate = |j: &Job| service::may_operate(tenant, j, Some(c));
    let all = object_jobs(state, tenant, c, &object_key, None).await?;
    page.last_run = all
        .iter()
        .find(|j| j.status().is_finished())
        .map(|j| job_line(j, &zone, may_operate(j)));
    let listed = match status {
        None => all,
        Some(s) => object_jobs(state, tenant, c, &object_key, Some(s)).await?,
    };
    let chosen = query
        .job
        .as_deref()
        .and_then(|j| Uuid::parse_str(j.trim()).ok());
    (page.log_job, page.log, page.log_more) = log_of(state, tenant, chosen, &listed).await?;
    page.jobs = listed
        .iter()
        .map(|j| job_line(j, &zone, may_operate(j)))
        .collect();
    page.next_run = next_run_text(state, tenant, c, &object_key, &zone).await?;
    page.too_soon = too_soon_text(state, tenant, c, &object_key, &zone).await?;
    page.wizard = wizard(state, tenant, &t, c, &zone).await?;
    page.wizard_form = wizard_form.unwrap_or_else(|| {
        let checked = page
            .wizard
            .iter()
            .flat_map(|w| w.objects.iter().filter(|o| o.2))
            .map(|o| ("objects".to_owned(), o.0.clone()))
            .collect();
        FormState::from_pairs(checked)
    });
    Ok(page)
}

pub async fn sync_show(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path((key, object)): Path<(String, String)>,
    ApiQuery(query): ApiQuery<SyncQuery>,
) -> AppResult<Response> {
    let connection = connection_param(query.connection.as_deref())?;
    let t = target(&state, &current.tenant, &key, &object, connection).await?;
    Ok(render(&state, &current, t, &query, None)
        .await?
        .into_response())
}

/// One of the tab's buttons: `now`, `dry-run`, `retry`, `cancel` (asks
/// first) or `resync`.
pub async fn sync_action(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path((key, object, action)): Path<(String, String, String)>,
    form: CsrfForm<FormFields>,
) -> AppResult<Response> {
    let pairs = &form.form;
    let connection = connection_param(pairs.first("connectionId").map(|v| v.as_str()))?;
    let t = target(&state, &current.tenant, &key, &object, connection).await?;
    let c = t
        .connection
        .clone()
        .ok_or_else(|| AppError::not_found("no connection of this provider"))?;
    let back = back_to(&key, &t.object.key, Some(c.id));
    let tenant = &current.tenant;
    let outcome = match action.as_str() {
        "now" | "dry-run" => {
            let dry_run = action == "dry-run";
            let force = is_confirmed(pairs.first("force").map(|v| v.as_str()));
            service::enqueue_object(&state, tenant, c, &t.object.key, dry_run, force)
                .await
                .map(|q| queued_message(&q, dry_run))
        }
        "retry" => {
            let job = job_of(&state, tenant, pairs, &c, &t.object.key).await?;
            service::retry(&state, tenant, job.id)
                .await
                .map(|q| format!("Retry queued as job {}.", q.job_id))
        }
        "cancel" => {
            let job = job_of(&state, tenant, pairs, &c, &t.object.key).await?;
            if !is_confirmed(pairs.first("confirm").map(|v| v.as_str())) {
                return confirm_cancel(&state, &current, &form, &job, &key, &t.object.key, c.id)
                    .await;
            }
            service::cancel(&state, tenant, job.id)
                .await
                .map(|_| "Job cancelled; pages it already stored are kept.".to_owned())
        }
        "resync" => {
            let zone =
                crate::tenancy::service::time_zone(&state.store, tenant.workspace_id).await?;
            match choices(pairs, &zone, now()) {
                Ok(choices) => resync::resync(&state, tenant, &c, &choices)
                    .await
                    .map(|ids| {
                        format!("Resync queued: {} job(s); the flag is cleared.", ids.len())
                    }),
                Err(e) => Err(e),
            }
        }
        _ => return Err(AppError::not_found("page not found")),
    };
    if action == "resync"
        && let Err(err @ AppError::Validation { .. }) = outcome
    {
        // The wizard comes back with the error at its field and what was
        // chosen and typed kept.
        let status = err.status();
        let typed = FormState::from_pairs(
            pairs
                .iter()
                .filter(|(k, _)| k.as_str() == "objects" || k.starts_with("from-"))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        let typed = match &err {
            AppError::Validation {
                field: Some(f),
                message,
            } => typed.with_field_error(f, message.clone()),
            other => {
                let mut t = typed;
                t.message = Some(other.to_string());
                t
            }
        };
        let query = SyncQuery {
            connection: None,
            status: None,
            job: None,
        };
        let page = render(&state, &current, t, &query, Some(typed)).await?;
        return Ok(with_status(status, page));
    }
    redirect_with_outcome(&form.session, &back, outcome).await
}

fn queued_message(q: &service::Enqueued, dry_run: bool) -> String {
    let what = if dry_run { "Dry run" } else { "Sync" };
    if q.existing {
        format!(
            "A sync of {} is already queued or running (job {}): nothing new was queued.",
            q.object, q.job_id
        )
    } else {
        format!("{what} of {} queued (job {}).", q.object, q.job_id)
    }
}

/// The posted job, if it is this connection's job of this object (any
/// other id is not found, as if it did not exist).
async fn job_of(
    state: &AppState,
    tenant: &Tenant,
    pairs: &FormFields,
    c: &Connection,
    object: &str,
) -> AppResult<Job> {
    let raw = pairs
        .first("job")
        .ok_or_else(|| AppError::validation("job", "which job?"))?;
    let id = parse_path_id(raw.as_str(), "job")?;
    let job = service::job(state, tenant, id).await?;
    if job.connection_id != Some(c.id) || job.object.as_deref() != Some(object) {
        return Err(AppError::not_found("job not found"));
    }
    Ok(job)
}

async fn confirm_cancel(
    state: &AppState,
    current: &CurrentTenant,
    form: &CsrfForm<FormFields>,
    job: &Job,
    provider: &str,
    object: &str,
    connection: Uuid,
) -> AppResult<Response> {
    if job.status().is_finished() {
        return Err(AppError::conflict(
            "status",
            format!("the job already finished ({})", job.status),
        ));
    }
    let layout = Layout::signed_in(state, &form.session, &current.user, &current.tenant).await?;
    let message =
        format!("The {object} sync of {provider} stops; pages it already stored are kept.");
    let action = format!("/integrations/{provider}/{object}{SUFFIX}/cancel");
    Ok(ConfirmPage::new(
        layout,
        "Cancel job",
        message,
        action,
        back_to(provider, object, Some(connection)),
    )
    .hidden("job", job.id.to_string())
    .hidden("connectionId", connection.to_string())
    .render())
}

/// The wizard's form: the chosen objects (`objects`, once each) and an
/// optional resume day per object (`from-<object>`, YYYY-MM-DD in the
/// workspace's zone, not in the future).
fn choices(pairs: &FormFields, zone: &Zone, at: OffsetDateTime) -> AppResult<Vec<ResyncChoice>> {
    let mut out: Vec<ResyncChoice> = Vec::new();
    for object in pairs.all("objects") {
        let object = object.trim().to_owned();
        if object.is_empty() || out.iter().any(|c| c.object == object) {
            continue;
        }
        let field = format!("from-{object}");
        let raw = pairs.first(&field).map_or("", |v| v.trim());
        let resume_from = if raw.is_empty() {
            None
        } else {
            let day = time::Date::parse(
                raw,
                time::macros::format_description!("[year]-[month]-[day]"),
            )
            .map_err(|_| AppError::validation(&field, "expected a date as YYYY-MM-DD"))?;
            let start = zone.start_of_day(day).ok_or_else(|| {
                AppError::validation(
                    &field,
                    "this day can't be shown in the workspace's time zone",
                )
            })?;
            if start > at {
                return Err(AppError::validation(&field, "must not be in the future"));
            }
            Some(format_mark(start))
        };
        out.push(ResyncChoice {
            object,
            resume_from,
        });
    }
    if out.is_empty() {
        return Err(AppError::validation(
            "objects",
            "choose at least one object to resync",
        ));
    }
    Ok(out)
}
