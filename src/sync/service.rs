//! Asking for syncs: enqueue (one active job per connection and object,
//! enforced by the database), list, cancel, retry, and health.

use serde::Serialize;
use uuid::Uuid;

use time::OffsetDateTime;

use crate::app::AppState;
use crate::audit::AuditEntry;
use crate::connections::service::resolve;
use crate::connections::{Connection, Viewer};
use crate::error::{AppError, AppResult};
use crate::jobs::store::{Created, NewJob};
use crate::jobs::{Job, JobStatus};
use crate::storage::now;
use crate::tenancy::Tenant;

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Enqueued {
    pub job_id: Uuid,
    pub provider: String,
    pub object: String,
    /// True when a job was already queued or running: that one is returned.
    pub existing: bool,
}

pub(crate) async fn require_ready(state: &AppState, provider: Option<&str>) -> AppResult<()> {
    if !state.settings.sync.enabled {
        return Err(AppError::Unavailable(
            "syncing is switched off on this server (PLUGBOARD_INGEST_ENABLED=false)".into(),
        ));
    }
    // A handed-off provider is synced by its automation, not our workers.
    if provider.is_some_and(|p| super::handoff::is_handed_off(state, p)) {
        return Ok(());
    }
    if !super::worker::workers_alive(state).await {
        return Err(AppError::Unavailable(
            "background worker unavailable, sync temporarily paused".into(),
        ));
    }
    Ok(())
}

pub async fn enqueue(
    state: &AppState,
    tenant: &Tenant,
    provider_key: &str,
    object: Option<&str>,
) -> AppResult<Vec<Enqueued>> {
    enqueue_now(state, tenant, provider_key, object, false).await
}

/// "Sync now" of a provider (or one object): held to one per connection
/// and object per `sync.min_interval_secs` unless an admin forces it.
pub async fn enqueue_now(
    state: &AppState,
    tenant: &Tenant,
    provider_key: &str,
    object: Option<&str>,
    force: bool,
) -> AppResult<Vec<Enqueued>> {
    if force {
        tenant.require_admin("force a sync inside its minimum interval")?;
    }
    require_ready(state, Some(provider_key)).await?;
    let connection = resolve(state, tenant, provider_key, None).await?;
    let hold = if force { Hold::Forced } else { Hold::Interval };
    enqueue_on(state, tenant, connection, object, hold, false).await
}

/// "Sync now" or "Dry run" of one object of one connection (the object
/// page's Sync controls): held to `sync.min_interval_secs` like the Data
/// Hub's button unless an admin forces it.
pub async fn enqueue_object(
    state: &AppState,
    tenant: &Tenant,
    connection: Connection,
    object: &str,
    dry_run: bool,
    force: bool,
) -> AppResult<Enqueued> {
    if force {
        tenant.require_admin("force a sync inside its minimum interval")?;
    }
    require_ready(state, Some(&connection.provider)).await?;
    let hold = if force { Hold::Forced } else { Hold::Interval };
    enqueue_on(state, tenant, connection, Some(object), hold, dry_run)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| AppError::not_found("nothing to sync"))
}

/// The job's rule options with `dryRun` on: the worker counts what a run
/// would write and writes nothing (records, marks, local entities).
fn as_dry_run(mut metadata: serde_json::Value) -> serde_json::Value {
    match metadata.get_mut("rule").and_then(|r| r.as_object_mut()) {
        Some(rule) => {
            rule.insert("dryRun".into(), serde_json::Value::Bool(true));
        }
        None => {
            if let Some(m) = metadata.as_object_mut() {
                m.insert("rule".into(), serde_json::json!({"dryRun": true}));
            }
        }
    }
    metadata
}

/// Why sync requests are refused right now (ingest switched off, or no
/// live worker), for pages that disable their buttons; `None` when
/// syncing works.
pub async fn paused_reason(state: &AppState, provider: &str) -> Option<String> {
    require_ready(state, Some(provider))
        .await
        .err()
        .map(|e| match e {
            AppError::Unavailable(m) => m,
            other => other.to_string(),
        })
}

/// Whether a request is held to the "Sync now" interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hold {
    Interval,
    /// An admin's override, audited when it skips the wait.
    Forced,
    /// Retrying a failed job: the failure is what it answers.
    Never,
}

/// When an object of a connection may be synced again by "Sync now".
#[derive(Debug, Clone)]
pub struct TooSoon {
    pub object: String,
    pub last_sync_at: OffsetDateTime,
    pub next_at: OffsetDateTime,
}

/// The objects of `connection` still inside the minimum interval: their
/// newest job (queued, running or finished, however started) is younger
/// than it. An active job isn't "too soon": asking again returns it.
pub async fn too_soon(
    state: &AppState,
    tenant: &Tenant,
    connection: &Connection,
    objects: &[&str],
) -> AppResult<Vec<TooSoon>> {
    let interval = state.settings.sync.min_interval_secs;
    if interval == 0 {
        return Ok(Vec::new());
    }
    let interval = time::Duration::seconds(i64::try_from(interval).unwrap_or(i64::MAX));
    let at = now();
    let mut out = Vec::new();
    for object in objects {
        let Some(last) = state
            .store
            .last_job_of(tenant.workspace_id, connection.id, object)
            .await?
        else {
            continue;
        };
        if !last.status().is_finished() {
            continue;
        }
        let next_at = last
            .created_at
            .checked_add(interval)
            .unwrap_or(last.created_at);
        if next_at > at {
            out.push(TooSoon {
                object: (*object).to_owned(),
                last_sync_at: last.created_at,
                next_at,
            });
        }
    }
    Ok(out)
}

fn too_soon_error(provider_key: &str, waits: &[TooSoon]) -> Option<AppError> {
    // The whole request waits for the object that can run last.
    let latest = waits.iter().max_by_key(|w| w.next_at)?;
    let secs = (latest.next_at - now()).whole_seconds().max(1);
    let retry_after_secs = u64::try_from(secs).unwrap_or(1);
    let last_sync_at = waits
        .iter()
        .map(|w| w.last_sync_at)
        .max()
        .unwrap_or(latest.last_sync_at);
    Some(AppError::SyncTooSoon {
        message: format!(
            "{provider_key} {} synced {} min ago; Sync now can run again in {} min",
            waits
                .iter()
                .map(|w| w.object.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            (now() - last_sync_at).whole_minutes().max(0),
            retry_after_secs.div_ceil(60)
        ),
        retry_after_secs,
        last_sync_at: last_sync_at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
    })
}

/// Queues the objects of one connection the user may use.
async fn enqueue_on(
    state: &AppState,
    tenant: &Tenant,
    connection: Connection,
    object: Option<&str>,
    hold: Hold,
    dry_run: bool,
) -> AppResult<Vec<Enqueued>> {
    let provider_key = connection.provider.as_str();
    let provider = state
        .providers
        .get(provider_key)
        .ok_or_else(|| AppError::not_found(format!("unknown provider {provider_key:?}")))?;
    if !connection.status().usable() {
        return Err(crate::connections::tokens::unusable(&connection));
    }
    let objects: Vec<&str> = match object {
        Some(key) => {
            let o = provider.object(key).ok_or_else(|| {
                AppError::not_found(format!("{provider_key} has no object {key:?}"))
            })?;
            vec![o.key.as_str()]
        }
        None => provider
            .meta
            .objects
            .iter()
            .map(|o| o.key.as_str())
            .collect(),
    };
    let waits = match hold {
        Hold::Never => Vec::new(),
        Hold::Interval | Hold::Forced => too_soon(state, tenant, &connection, &objects).await?,
    };
    if !waits.is_empty() {
        if hold != Hold::Forced {
            return Err(too_soon_error(provider_key, &waits)
                .unwrap_or_else(|| AppError::internal(anyhow::anyhow!("no wait"))));
        }
        // Forcing past the interval is an admin's decision, on record.
        let audit = AuditEntry::new(
            Some(tenant.workspace_id),
            Some(tenant.user_id),
            "sync.force",
        )
        .target("connection", connection.id)
        .details(serde_json::json!({
            "provider": provider_key,
            "objects": waits.iter().map(|w| w.object.as_str()).collect::<Vec<_>>(),
        }));
        state.store.record_audit(&audit).await?;
    }
    let mut out = Vec::new();
    for key in objects {
        if super::handoff::is_handed_off(state, provider_key) {
            let (job_id, existing) =
                super::handoff::hand_off(state, tenant, &connection, key).await?;
            out.push(Enqueued {
                job_id,
                provider: provider_key.to_owned(),
                object: key.to_owned(),
                existing,
            });
            continue;
        }
        // "Sync now" runs under the object's rule, when it has one.
        let metadata = match state
            .store
            .get_rule(tenant.workspace_id, connection.id, key)
            .await?
        {
            Some(rule) => {
                crate::rules::planner::rule_metadata(rule.id, rule.revision, &rule.rule.0)
            }
            None => serde_json::json!({}),
        };
        let metadata = if dry_run {
            as_dry_run(metadata)
        } else {
            metadata
        };
        let id = Uuid::now_v7();
        let created = state
            .store
            .create_job(&NewJob {
                id,
                workspace_id: tenant.workspace_id,
                connection_id: Some(connection.id),
                provider: provider_key,
                object: Some(key),
                kind: "sync",
                status: JobStatus::Queued,
                idempotency_key: None,
                metadata,
                requested_by: Some(tenant.user_id),
                at: now(),
            })
            .await?;
        let (job_id, existing) = match created {
            Created::New(id) => (id, false),
            Created::Existing(id) => (id, true),
        };
        out.push(Enqueued {
            job_id,
            provider: provider_key.to_owned(),
            object: key.to_owned(),
            existing,
        });
    }
    Ok(out)
}

/// Every connected provider of the workspace (as the user resolves them).
pub async fn enqueue_all(state: &AppState, tenant: &Tenant) -> AppResult<Vec<Enqueued>> {
    enqueue_all_now(state, tenant, false).await
}

/// [`enqueue_all`] for "Sync now": providers inside their interval are
/// left out; if that leaves nothing, the first such refusal is the answer.
pub async fn enqueue_all_now(
    state: &AppState,
    tenant: &Tenant,
    force: bool,
) -> AppResult<Vec<Enqueued>> {
    if force {
        tenant.require_admin("force a sync inside its minimum interval")?;
    }
    // Checked once up front, so a batch is never half queued: without a
    // live worker only handed-off providers go ahead, and if there are
    // none of those the whole request is refused.
    let paused = match require_ready(state, None).await {
        Ok(()) => None,
        Err(e) if state.handoff_targets.is_empty() || !state.settings.sync.enabled => {
            return Err(e);
        }
        Err(e) => Some(e),
    };
    let mut out = Vec::new();
    let mut too_soon = None;
    for provider in state.providers.iter() {
        if paused.is_some() && !super::handoff::is_handed_off(state, &provider.meta.key) {
            continue;
        }
        match enqueue_now(state, tenant, &provider.meta.key, None, force).await {
            Ok(mut jobs) => out.append(&mut jobs),
            Err(AppError::NotFound(_) | AppError::Conflict { .. }) => {}
            Err(e @ AppError::SyncTooSoon { .. }) => {
                too_soon.get_or_insert(e);
            }
            Err(e) => return Err(e),
        }
    }
    if let Some(e) = paused
        && out.is_empty()
    {
        return Err(e);
    }
    if let Some(e) = too_soon
        && out.is_empty()
    {
        return Err(e);
    }
    Ok(out)
}

/// A job the user may see: another member's personal connection's jobs
/// are not found, as if they did not exist.
pub async fn job(state: &AppState, tenant: &Tenant, id: Uuid) -> AppResult<Job> {
    state
        .store
        .get_visible_job(Viewer::from(tenant), id)
        .await?
        .ok_or_else(|| AppError::not_found("job not found"))
}

/// Cancel and retry follow *Sync now*: admins, or the owner of the
/// personal connection the job belongs to.
pub fn may_operate(tenant: &Tenant, job: &Job, connection: Option<&Connection>) -> bool {
    tenant.role.can_manage_members()
        || (job.connection_id.is_some()
            && connection.is_some_and(|c| c.owner_user_id == Some(tenant.user_id)))
}

/// The job and its connection, if the user may cancel or retry it (403
/// if they may only see it).
async fn job_to_operate(
    state: &AppState,
    tenant: &Tenant,
    id: Uuid,
) -> AppResult<(Job, Option<Connection>)> {
    let job = job(state, tenant, id).await?;
    let connection = match job.connection_id {
        Some(c) => state.store.get_connection(tenant.workspace_id, c).await?,
        None => None,
    };
    if !may_operate(tenant, &job, connection.as_ref()) {
        return Err(AppError::Forbidden(
            "only workspace owners and admins, or the owner of the personal connection, \
             can cancel or retry this job"
                .into(),
        ));
    }
    Ok((job, connection))
}

pub async fn cancel(state: &AppState, tenant: &Tenant, id: Uuid) -> AppResult<Job> {
    let (current, _) = job_to_operate(state, tenant, id).await?;
    if current.status().is_finished() {
        return Err(AppError::Conflict {
            field: Some("status".into()),
            message: format!("the job already finished ({})", current.status),
        });
    }
    state
        .store
        .cancel_job(tenant.workspace_id, id, now())
        .await?;
    job(state, tenant, id).await
}

/// A failed or cancelled sync runs again as a new job, on the same
/// connection.
pub async fn retry(state: &AppState, tenant: &Tenant, id: Uuid) -> AppResult<Enqueued> {
    let (previous, connection) = job_to_operate(state, tenant, id).await?;
    if !matches!(previous.status(), JobStatus::Failed | JobStatus::Cancelled)
        || !(previous.kind == "sync" || previous.metadata.0.get("handoff").is_some())
    {
        return Err(AppError::Conflict {
            field: Some("status".into()),
            message: "only failed or cancelled syncs can be retried".into(),
        });
    }
    let connection = connection.ok_or_else(|| AppError::not_found("connection not found"))?;
    require_ready(state, Some(&connection.provider)).await?;
    let object = previous.object.clone();
    let jobs = enqueue_on(
        state,
        tenant,
        connection,
        object.as_deref(),
        Hold::Never,
        false,
    )
    .await?;
    jobs.into_iter()
        .next()
        .ok_or_else(|| AppError::not_found("nothing to retry"))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    pub live_workers: i64,
    pub queued: i64,
    #[serde(with = "time::serde::rfc3339::option")]
    pub oldest_queued_at: Option<time::OffsetDateTime>,
    pub paused: bool,
    /// This process's background loops (workers, planner, …), with how
    /// often each failed and was restarted.
    pub background: Vec<crate::background::LoopHealth>,
}

pub async fn health(state: &AppState) -> AppResult<Health> {
    let live_workers = state
        .store
        .live_workers(now() - time::Duration::seconds(30))
        .await?;
    let (queued, oldest_queued_at) = state.store.queue_stats().await?;
    Ok(Health {
        live_workers,
        queued,
        oldest_queued_at,
        paused: !state.settings.sync.enabled,
        background: state.background.snapshot(),
    })
}
