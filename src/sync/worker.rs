//! Workers: claim a sync job, read its object page by page with the
//! connection's token (refreshed on use, one refresh and one retry on a
//! 401), and commit each page with the job's checkpoint. A job resumes from
//! its checkpoint after a crash; a lost lease stops the worker without a
//! write. Full reads end by marking records the provider no longer returns
//! as deleted; delta reads move the high-water mark.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::watch;
use uuid::Uuid;

use super::delta;
use super::fetch::{ObjectReader, Position, ReadSpec};
use super::leases::{Claimed, Lease, PageCommit};
use super::limits::{self, Limits};
use super::records::{RecordBatch, RecordCounts, RecordRow, last_wins};
use super::retry::{RetryPolicy, send};
use crate::app::AppState;
use crate::connections::Connection;
use crate::connections::tokens::{self, base_url, provider_of, required_headers};
use crate::jobs::JobStatus;
use crate::metrics::semantic::CurrencySource;
use crate::metrics::store::MetricBatch;
use crate::metrics::{DayKey, MetricInput, MetricRow, RowKey};
use crate::providers::ObjectKind;
use crate::providers::ObjectMeta;
use crate::storage::now;

/// How long a claim holds without a heartbeat (`PLUGBOARD_SYNC_LEASE_SECS`).
fn lease_length(state: &AppState) -> time::Duration {
    time::Duration::seconds(i64::try_from(state.settings.sync.lease_secs).unwrap_or(60))
}

/// Four beats per lease: one lost beat never loses the job.
fn heartbeat_every(state: &AppState) -> Duration {
    Duration::from_millis(state.settings.sync.lease_secs.saturating_mul(250).max(500))
}

/// The job's resumable state, committed with every page.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Checkpoint {
    pub account_index: usize,
    pub position: Option<Position>,
    /// The delta bound this run sends, formatted for the provider (None:
    /// a full read).
    pub since: Option<String>,
    /// The stored high-water mark the run started from (UTC); the run's
    /// new mark is never older.
    #[serde(default)]
    pub mark_from: Option<String>,
    /// The newest delta cursor value seen so far.
    pub high_water: Option<String>,
    pub counts: Counts,
    pub pages: u64,
    /// Metrics: the days (YYYY-MM-DD) of the current account this job has
    /// replaced (see [`days_to_replace`]). Committed with each page, so a
    /// resumed job neither clears a half-written day again nor skips one.
    #[serde(default)]
    pub replaced_days: Vec<String>,
    /// Metrics: the last day of the previous page, which the next page may
    /// continue, with the dimension keys written for it so far.
    #[serde(default)]
    pub pending_day: Option<PendingDay>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PendingDay {
    pub date: String,
    pub keys: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Counts {
    pub fetched: u64,
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub deleted: u64,
    pub skipped_children: u64,
    pub errors: u64,
}

impl Counts {
    fn add(&mut self, r: RecordCounts) {
        self.created += r.created;
        self.updated += r.updated;
        self.unchanged += r.unchanged;
        self.deleted += r.deleted;
    }
}

#[derive(Debug, thiserror::Error)]
enum RunError {
    #[error("{0}")]
    Failed(String),
    /// Another worker holds the job now, or it was cancelled: stop quietly.
    #[error("lease lost")]
    LeaseLost,
}

fn failed(message: impl Into<String>) -> RunError {
    RunError::Failed(message.into())
}

/// Runs workers until `stop` turns true; returns when they have stopped.
/// Each worker runs supervised: one that fails is restarted with backoff.
pub async fn run_workers(state: AppState, count: u32, stop: watch::Receiver<bool>) {
    let mut tasks = Vec::new();
    for n in 1..=count {
        let (loop_state, loop_stop) = (state.clone(), stop.clone());
        tasks.push(AbortOnDrop(tokio::spawn(crate::background::supervise(
            format!("sync worker {n}"),
            state.background.clone(),
            stop.clone(),
            move || worker_loop(loop_state.clone(), loop_stop.clone()),
        ))));
    }
    for mut task in tasks {
        let _ = (&mut task.0).await;
    }
}

async fn worker_loop(state: AppState, mut stop: watch::Receiver<bool>) {
    let worker = Uuid::now_v7();
    let started = now();
    let mut last_beat: Option<std::time::Instant> = None;
    loop {
        if *stop.borrow() {
            break;
        }
        // Every 10 s is plenty for "is a worker alive" (30 s window) and
        // keeps idle workers from writing all the time.
        if last_beat.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
            if let Err(e) = state.store.worker_heartbeat(worker, started, now()).await {
                tracing::warn!(error = %e, "worker heartbeat failed");
            }
            last_beat = Some(std::time::Instant::now());
        }
        let claimed = if state.settings.sync.enabled {
            match state
                .store
                .claim_sync_job(worker, now(), now() + lease_length(&state))
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "claiming a job failed");
                    None
                }
            }
        } else {
            None
        };
        match claimed {
            Some(job) => {
                // Provider calls of the job carry `job-<id>` as X-Request-ID.
                let request_id = format!("job-{}", job.job.id);
                crate::outbound::REQUEST_ID
                    .scope(request_id, run_job(&state, job, worker))
                    .await
            }
            None => {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = stop.changed() => {}
                }
            }
        }
    }
    let _ = state.store.remove_worker(worker).await;
}

/// `done: fetched 8, created 8, …`: a job's counts as its log states them,
/// in the order the job page lists them.
pub fn counts_line(what: &str, counts: &Value) -> String {
    let parts: Vec<String> = counts
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{} {v}", k.replace('_', " ")))
                .collect()
        })
        .unwrap_or_default();
    if parts.is_empty() {
        format!("{what}: nothing counted")
    } else {
        format!("{what}: {}", parts.join(", "))
    }
}

async fn log(state: &AppState, lease: &Lease, level: &str, message: &str) {
    // Job logs are written by us, from counts and statuses: no URL, no
    // body, no token ever reaches them.
    if let Err(e) = state
        .store
        .append_job_log(lease.workspace, lease.job_id, level, message, now())
        .await
    {
        tracing::warn!(error = %e, "writing the job log failed");
    }
}

/// What a rule asked of this job (`metadata.rule`, written by the planner).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct RuleOptions {
    behaviour: Option<String>,
    // Option: a null in the metadata must not void the other options.
    dry_run: Option<bool>,
    initial_sync_mode: Option<String>,
    initial_sync_since: Option<String>,
}

/// One view of the job's `metadata.rule` (the defaults when the job has
/// no rule or the view doesn't read).
fn rule_part<T: serde::de::DeserializeOwned + Default>(job: &crate::jobs::Job) -> T {
    job.metadata
        .0
        .get("rule")
        .cloned()
        .and_then(|r| serde_json::from_value(r).ok())
        .unwrap_or_default()
}

async fn run_job(state: &AppState, claimed: Claimed, worker: Uuid) {
    let lease = claimed.lease(worker);
    let lost = Arc::new(AtomicBool::new(false));
    let checkpoint: Checkpoint =
        serde_json::from_value(claimed.checkpoint.0.clone()).unwrap_or_default();
    let body = execute(state, &claimed, &lease, checkpoint, &lost);
    run_guarded(state, &claimed, lease, lost.clone(), body).await;
}

/// Runs a job claimed outside the worker loop (a test driving the queue by
/// hand), exactly as a worker would.
#[doc(hidden)]
pub async fn run_claimed(state: &AppState, claimed: Claimed, worker: Uuid) {
    run_job(state, claimed, worker).await;
}

/// Runs a claimed job with `body` in place of the real read, under the same
/// guards (heartbeat, time limits, panic capture, finish). For tests: a body
/// can fail in ways no provider can make the real one fail, e.g. a panic.
#[doc(hidden)]
pub async fn run_claimed_with(
    state: &AppState,
    claimed: Claimed,
    worker: Uuid,
    body: impl std::future::Future<Output = Result<(), String>>,
) {
    let lease = claimed.lease(worker);
    let lost = Arc::new(AtomicBool::new(false));
    let body = async {
        body.await
            .map(|()| Counts::default())
            .map_err(RunError::Failed)
    };
    run_guarded(state, &claimed, lease, lost, body).await;
}

/// The guards around a job's body: a heartbeat that lives exactly as long
/// as the body, the hard time limit, and a panic turned into a failed job
/// (never a job left "running" under a lease renewed forever).
async fn run_guarded(
    state: &AppState,
    claimed: &Claimed,
    lease: Lease,
    lost: Arc<AtomicBool>,
    body: impl std::future::Future<Output = Result<Counts, RunError>>,
) {
    let max_attempts = state.settings.sync.max_attempts;
    if claimed.attempts > i32::try_from(max_attempts).unwrap_or(i32::MAX) {
        // A poison job: every worker that took it stopped without finishing
        // (crash, kill, lost lease). Running it again would do the same.
        let message = format!(
            "gave up after {max_attempts} attempts: each worker that ran this job stopped before finishing it (PLUGBOARD_SYNC_MAX_ATTEMPTS); retry it once the cause is fixed"
        );
        finish(state, claimed, &lease, Err(failed(message))).await;
        return;
    }
    let heartbeat = AbortOnDrop(tokio::spawn(heartbeat(state.clone(), lease, lost)));
    if claimed.attempts > 1 {
        let message = format!(
            "resuming (attempt {}) from the last committed page",
            claimed.attempts
        );
        log(state, &lease, "info", &message).await;
    }
    let result = within_limits(state, body).await;
    drop(heartbeat);
    finish(state, claimed, &lease, result).await;
}

/// Aborts its task when dropped, whatever the way out (return, panic,
/// cancellation): a guard can't outlive what it guards.
pub struct AbortOnDrop<T>(pub tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Renews the lease until dropped; flags `lost` when renewal fails (another
/// worker took the job, or it was cancelled).
async fn heartbeat(state: AppState, lease: Lease, lost: Arc<AtomicBool>) {
    let soft_limit = Duration::from_secs(state.settings.sync.soft_limit_secs);
    let started = std::time::Instant::now();
    let mut warned = false;
    loop {
        tokio::time::sleep(heartbeat_every(&state)).await;
        let renewed = state
            .store
            .heartbeat_job(&lease, now() + lease_length(&state))
            .await;
        if !matches!(renewed, Ok(true)) {
            lost.store(true, Ordering::SeqCst);
            return;
        }
        if !warned && started.elapsed() >= soft_limit {
            warned = true;
            let message = format!(
                "still running after the soft time limit of {} s (PLUGBOARD_SYNC_SOFT_LIMIT_SECS)",
                soft_limit.as_secs()
            );
            log(&state, &lease, "warn", &message).await;
        }
    }
}

/// The body, cut at the hard time limit, with a panic caught as a failure.
/// Past the limit the read is dropped mid-flight: an unfinished page
/// transaction rolls back, committed pages and the checkpoint stay.
async fn within_limits(
    state: &AppState,
    body: impl std::future::Future<Output = Result<Counts, RunError>>,
) -> Result<Counts, RunError> {
    use futures_util::FutureExt;
    let hard_limit = Duration::from_secs(state.settings.sync.hard_limit_secs);
    let caught = std::panic::AssertUnwindSafe(body).catch_unwind();
    match tokio::time::timeout(hard_limit, caught).await {
        Ok(Ok(result)) => result,
        Ok(Err(panic)) => Err(failed(format!(
            "the worker failed unexpectedly ({}); pages read so far are kept",
            panic_message(panic.as_ref())
        ))),
        Err(_) => Err(failed(format!(
            "stopped at the hard time limit of {} s (PLUGBOARD_SYNC_HARD_LIMIT_SECS); pages read so far are kept",
            hard_limit.as_secs()
        ))),
    }
}

/// A panic's message, when it has one (`panic!("…")` payloads are strings).
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .map_or_else(|| "panic".to_owned(), |m| format!("panic: {m}"))
}

/// Records the outcome: counts on success, the message on failure, nothing
/// when the lease was lost (another worker owns the job now).
async fn finish(
    state: &AppState,
    claimed: &Claimed,
    lease: &Lease,
    result: Result<Counts, RunError>,
) {
    let alert_after = state.settings.sync.alert_after_failures;
    match result {
        Ok(counts) => {
            let counts = serde_json::to_value(counts).unwrap_or(Value::Null);
            // The log ends with the counts the job page shows.
            log(state, lease, "info", &counts_line("done", &counts)).await;
            let _ = state
                .store
                .finish_sync_job(
                    lease,
                    JobStatus::Succeeded,
                    &counts,
                    None,
                    now(),
                    alert_after,
                )
                .await;
        }
        Err(RunError::LeaseLost) => {
            tracing::info!(job = %lease.job_id, "lease lost or job cancelled; stopping");
        }
        Err(RunError::Failed(message)) => {
            log(state, lease, "error", &message).await;
            let counts = state
                .store
                .get_job(lease.workspace, lease.job_id)
                .await
                .ok()
                .flatten()
                .map(|j| j.counts.0)
                .unwrap_or_else(|| claimed.job.counts.0.clone());
            log(state, lease, "info", &counts_line("stopped", &counts)).await;
            let _ = state
                .store
                .finish_sync_job(
                    lease,
                    JobStatus::Failed,
                    &counts,
                    Some(&message),
                    now(),
                    alert_after,
                )
                .await;
        }
    }
}

async fn execute(
    state: &AppState,
    claimed: &Claimed,
    lease: &Lease,
    mut cp: Checkpoint,
    lost: &AtomicBool,
) -> Result<Counts, RunError> {
    let job = &claimed.job;
    let connection_id = job
        .connection_id
        .ok_or_else(|| failed("the job has no connection"))?;
    let mut connection = state
        .store
        .get_connection(job.workspace_id, connection_id)
        .await
        .map_err(|e| failed(format!("reading the connection failed: {e}")))?
        .ok_or_else(|| failed("the connection was deleted"))?;
    if !connection.status().usable() {
        return Err(failed(format!(
            "the connection is {}",
            connection.status().as_str()
        )));
    }
    let provider = provider_of(state, &connection)
        .map_err(|e| failed(e.to_string()))?
        .clone();
    let object_key = job.object.clone().unwrap_or_default();
    let object = provider.object(&object_key).ok_or_else(|| {
        failed(format!(
            "{} has no object {object_key:?}",
            provider.meta.key
        ))
    })?;
    let reader = ObjectReader::new(object, &provider.raw);
    let base = base_url(state, &provider, &connection.environment)
        .ok_or_else(|| failed("the provider has no base URL"))?;
    let headers = required_headers(state, &provider, &connection).map_err(failed)?;
    let accounts: Vec<Option<String>> = if object.endpoint.contains("{accountId}") {
        if connection.selected_account_ids.is_empty() {
            return Err(failed(
                "no account is selected on the connection; choose one on the Data Hub",
            ));
        }
        connection
            .selected_account_ids
            .iter()
            .cloned()
            .map(Some)
            .collect()
    } else {
        vec![None]
    };
    let options: RuleOptions = rule_part(job);
    let is_metrics = object.kind == ObjectKind::Metrics;
    // Objects that feed local projects or people need a current mapping:
    // syncing on with a stale one would map fields that no longer exist.
    let feeds_entities = object
        .mapping_defaults
        .as_ref()
        .is_some_and(|m| matches!(m.target.as_str(), "projects" | "people"));
    if feeds_entities {
        crate::entities::mapping::ensure_mapping_current(
            state,
            job.workspace_id,
            &provider.meta.key,
            &object_key,
        )
        .await
        .map_err(failed)?;
    }
    // The first attempt decides full or delta; a resumed one keeps it.
    if claimed.attempts <= 1 && cp.position.is_none() && cp.account_index == 0 {
        let stored = state
            .store
            .high_water_mark(job.workspace_id, connection_id, &object_key)
            .await
            .map_err(|e| failed(e.to_string()))?;
        // Without a mark, the rule's initial mode says where a delta starts
        // (the planner seeds it for real runs; a dry run must not write it).
        let initial = match options.initial_sync_mode.as_deref() {
            Some("delta_only_after_date") => options
                .initial_sync_since
                .as_deref()
                .and_then(delta::parse_instant),
            Some("delta_only_from_now") => Some(job.created_at),
            _ => None,
        };
        let mark = stored
            .as_deref()
            .and_then(delta::parse_instant)
            .or(initial)
            .filter(|_| options.behaviour.as_deref() != Some("full"));
        cp.mark_from = mark.map(delta::canonical);
        let sync = &state.settings.sync;
        if is_metrics {
            // Metrics always read a window of days: the backfill first,
            // then from the last day read, minus the days providers revise.
            // Days inside the object's settling window are provisional, so
            // each sync re-reads at least those.
            let settling = object.semantics.as_ref().map_or(0, |s| s.settling_days);
            let lookback =
                time::Duration::days(i64::from(sync.metrics_lookback_days.max(settling)));
            let from = match mark {
                Some(m) => m.checked_sub(lookback).unwrap_or(m).min(now() - lookback),
                None => now() - time::Duration::days(i64::from(sync.metrics_backfill_days)),
            };
            cp.since = Some(from.date().to_string());
        } else if object.supports_delta() && reader.sends_since() {
            let lookback = object
                .delta_lookback_seconds
                .unwrap_or(sync.delta_lookback_secs);
            let lookback = time::Duration::seconds(i64::try_from(lookback).unwrap_or(0));
            cp.since =
                mark.map(|m| delta::since_value(m, lookback, object.delta_format.as_deref()));
        }
        let how = match (&cp.since, is_metrics) {
            (Some(since), true) => format!("reading days from {since}"),
            (Some(since), false) => format!("delta read of changes since {since}"),
            (None, _) => "full read".to_owned(),
        };
        let how = if options.dry_run.unwrap_or(false) {
            format!("{how} (dry run: nothing is written)")
        } else {
            how
        };
        log(state, lease, "info", &how).await;
    }
    let full_read = cp.since.is_none() && !is_metrics;
    let limits = state.limits(&provider);
    // Quota headers of one answer pace the request after it.
    let mut pause_before_next: Option<Duration> = None;
    let parent_only = object
        .filters
        .as_ref()
        .is_some_and(|f| f.parent_only.is_some());
    let policy = RetryPolicy {
        max_retry_after: Duration::from_secs(state.settings.sync.max_retry_after_secs),
        ..RetryPolicy::default()
    };

    // Where currency metrics' currency comes from (see `semantic::CurrencySource`).
    let currency_source = object.semantics.as_ref().and_then(|s| s.currency.clone());
    let account_currencies: std::collections::HashMap<String, String> =
        if matches!(currency_source, Some(CurrencySource::Account)) {
            state
                .store
                .list_provider_accounts(job.workspace_id)
                .await
                .map_err(|e| failed(e.to_string()))?
                .into_iter()
                .filter(|a| a.connection_id == connection_id)
                .filter_map(|a| {
                    let code = a
                        .currency
                        .as_deref()
                        .and_then(crate::metrics::currency_code)?;
                    Some((a.external_id, code))
                })
                .collect()
        } else {
            std::collections::HashMap::new()
        };
    let revisions_from = crate::metrics::revisions_from(
        now().date(),
        object.semantics.as_ref().map_or(0, |s| s.settling_days),
        state.settings.metrics.revision_margin_days,
    );

    while let Some(account) = accounts.get(cp.account_index).cloned() {
        let spec = ReadSpec {
            base_url: base.clone(),
            account_id: account.clone(),
            since: cp.since.clone(),
            until: Some(now().date().to_string()),
            parent_only,
            page_size: None,
        };
        let mut position = cp.position.clone().unwrap_or(Position::Start);
        while position != Position::Done {
            if lost.load(Ordering::SeqCst) {
                return Err(RunError::LeaseLost);
            }
            if cp.pages >= state.settings.sync.max_pages {
                return Err(failed(format!(
                    "stopped after {} pages (PLUGBOARD_SYNC_MAX_PAGES)",
                    cp.pages
                )));
            }
            if let Some(pause) = pause_before_next.take() {
                if pause > policy.max_retry_after {
                    return Err(failed(format!(
                        "the provider's quota is used up for {} s, longer than the {} s a job waits; try again later",
                        pause.as_secs(),
                        policy.max_retry_after.as_secs()
                    )));
                }
                log(
                    state,
                    lease,
                    "info",
                    &format!(
                        "the provider's quota is running low; pausing {:.1} s before the next request",
                        pause.as_secs_f64()
                    ),
                )
                .await;
                tokio::time::sleep(pause).await;
            }
            let request = reader
                .request(&spec, &position)
                .map_err(|e| failed(e.to_string()))?;
            let page_timeout = Duration::from_secs(state.settings.sync.page_timeout_secs);
            let fetched = fetch_page(
                state,
                &provider,
                &connection,
                &request,
                &headers,
                (&policy, &limits),
                lease,
            );
            let (status, response_headers, body, refreshed) =
                tokio::time::timeout(page_timeout, fetched)
                    .await
                    .map_err(|_| {
                        failed(format!(
                            "page {} took longer than {} s (PLUGBOARD_SYNC_PAGE_TIMEOUT_SECS); pages read so far are kept",
                            cp.pages.saturating_add(1),
                            page_timeout.as_secs()
                        ))
                    })??;
            if let Some(c) = refreshed {
                connection = c;
            }
            if !(200..300).contains(&status) {
                let excerpt = crate::outbound::error_excerpt(&body, &state.redact_fields)
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default();
                return Err(failed(format!(
                    "{} answered HTTP {status} on page {}{excerpt}",
                    provider.meta.display_name,
                    cp.pages + 1
                )));
            }
            pause_before_next = limits.quota.as_ref().and_then(|quota| {
                limits::quota_pause(quota, &response_headers, std::time::SystemTime::now())
            });
            let parsed = reader
                .parse(&position, &response_headers, &body)
                .map_err(|e| failed(e.to_string()))?;
            let mut rows = Vec::with_capacity(parsed.records.len());
            let mut metric_rows: Vec<MetricRow> = Vec::new();
            let page_currency = match &currency_source {
                Some(CurrencySource::Account) => account
                    .as_ref()
                    .and_then(|a| account_currencies.get(a).cloned()),
                Some(CurrencySource::Response { pointer }) => body
                    .pointer(pointer)
                    .and_then(Value::as_str)
                    .and_then(crate::metrics::currency_code),
                _ => None,
            };
            for record in &parsed.records {
                cp.counts.fetched += 1;
                if let Some(field) = &object.delta_cursor_field
                    && let Some(value) = reader.field(record, field).and_then(|v| match v {
                        Value::String(s) => Some(s.clone()),
                        Value::Number(n) => Some(n.to_string()),
                        _ => None,
                    })
                {
                    cp.high_water = delta::later(cp.high_water.as_deref(), Some(&value));
                }
                if object.kind == ObjectKind::Metrics {
                    match metric_row(&reader, object, record, account.as_deref()) {
                        Some(mut row) => {
                            row.currency = match &currency_source {
                                Some(CurrencySource::Field { field }) => reader
                                    .field(record, field)
                                    .and_then(Value::as_str)
                                    .and_then(crate::metrics::currency_code),
                                _ => page_currency.clone(),
                            };
                            metric_rows.push(row);
                        }
                        None => cp.counts.errors += 1,
                    }
                    continue;
                }
                let child = reader.is_child(record);
                if parent_only && child {
                    // The server-side filter should have kept it out.
                    cp.counts.skipped_children += 1;
                    continue;
                }
                let Some(id) = reader.external_id(record) else {
                    cp.counts.errors += 1;
                    continue;
                };
                rows.push(RecordRow::new(
                    id,
                    reader.project(record),
                    child,
                    reader.is_deleted(record),
                ));
            }
            // The same record, or day and dimensions, twice in a page: the
            // last wins, the same on both databases.
            let rows = last_wins(rows, |r| r.external_id.clone());
            let metric_rows = last_wins(metric_rows, |r| {
                (r.date, r.dimension_key.clone(), r.account_id.clone())
            });
            position = parsed.next;
            cp.pages += 1;
            cp.position = Some(position.clone());
            let at_end = position == Position::Done;
            let account_id = account.clone().unwrap_or_default();
            let (replace_days, also_keep) = if is_metrics {
                days_to_replace(&mut cp, &metric_rows, &account_id, at_end, &spec)
            } else {
                (Vec::new(), Vec::new())
            };
            if at_end {
                cp.position = None;
                cp.account_index += 1;
            }
            // The checkpoint committed with the page counts the page too.
            let before = cp.clone();
            let checkpoint_for = move |written: RecordCounts| {
                let mut after = before.clone();
                after.counts.add(written);
                (
                    serde_json::to_value(&after).unwrap_or(Value::Null),
                    serde_json::to_value(after.counts).unwrap_or(Value::Null),
                )
            };
            let page = PageCommit {
                checkpoint: &checkpoint_for,
                lease_until: now() + lease_length(state),
                dry_run: options.dry_run.unwrap_or(false),
            };
            let written = if object.kind == ObjectKind::Metrics {
                // The provider's answer is the truth for the days read: a
                // re-read replaces them (per account), never merges.
                let batch = MetricBatch {
                    workspace: job.workspace_id,
                    provider: &provider.meta.key,
                    connection_id: Some(connection_id),
                    object: &object_key,
                    rows: &metric_rows,
                    merge: false,
                    replace_days: &replace_days,
                    also_keep: &also_keep,
                    batch_id: Uuid::now_v7(),
                    at: now(),
                    revisions_from: Some(revisions_from),
                };
                state
                    .store
                    .commit_metric_page(lease, &page, &batch)
                    .await
                    .map_err(|e| failed(format!("writing page {} failed: {e}", cp.pages)))?
                    .ok_or(RunError::LeaseLost)?
                    .into()
            } else {
                state
                    .store
                    .commit_record_page(
                        lease,
                        &page,
                        &RecordBatch {
                            workspace: job.workspace_id,
                            connection_id,
                            object: &object_key,
                            run_id: job.id,
                            full_read,
                            rows: &rows,
                            at: now(),
                        },
                    )
                    .await
                    .map_err(|e| failed(format!("writing page {} failed: {e}", cp.pages)))?
                    .ok_or(RunError::LeaseLost)?
            };
            cp.counts.add(written);
            let n = rows.len() + metric_rows.len();
            log(
                state,
                lease,
                "info",
                &format!(
                    "page {}: {n} rows ({} new, {} changed, {} unchanged)",
                    cp.pages, written.created, written.updated, written.unchanged
                ),
            )
            .await;
            if at_end {
                break;
            }
        }
    }

    if options.dry_run.unwrap_or(false) {
        log(
            state,
            lease,
            "info",
            "dry run: counts show what a real run would write; records, marks and deletions are unchanged",
        )
        .await;
        if feeds_entities && job.metadata.0.get("rule").is_some() {
            apply_to_entities(state, lease, &connection, &object_key, job, true).await?;
        }
        return Ok(cp.counts);
    }
    if full_read && object.kind == ObjectKind::Records {
        // Fenced: a cancelled job, or one another worker took over, must
        // not mark what it merely didn't get to as deleted.
        let vanished = state
            .store
            .mark_vanished_fenced(
                lease,
                now() + lease_length(state),
                connection_id,
                &object_key,
                now(),
            )
            .await
            .map_err(|e| failed(e.to_string()))?
            .ok_or(RunError::LeaseLost)?;
        cp.counts.deleted = cp.counts.deleted.saturating_add(vanished);
        if vanished > 0 {
            log(
                state,
                lease,
                "info",
                &format!("{vanished} records no longer returned: marked deleted"),
            )
            .await;
        }
    }
    if let Some(mark) = delta::later(cp.high_water.as_deref(), cp.mark_from.as_deref()) {
        state
            .store
            .set_high_water_mark(
                job.workspace_id,
                connection_id,
                &object_key,
                &mark,
                full_read,
                now(),
            )
            .await
            .map_err(|e| failed(e.to_string()))?;
    }
    if feeds_entities {
        if job.metadata.0.get("rule").is_some() {
            // Deletion policies act on what this run saw: only a run that
            // still holds its lease (not cancelled, not taken over) applies.
            let held = state
                .store
                .heartbeat_job(lease, now() + lease_length(state))
                .await
                .map_err(|e| failed(e.to_string()))?;
            if !held {
                return Err(RunError::LeaseLost);
            }
            apply_to_entities(state, lease, &connection, &object_key, job, false).await?;
        } else {
            // Local entities change only under a rule's policies.
            log(
                state,
                lease,
                "info",
                "no sync rule for this object: records are stored; local projects and people are unchanged",
            )
            .await;
        }
    }
    let _ = state
        .store
        .mark_connection_synced(job.workspace_id, connection_id, now())
        .await;
    Ok(cp.counts)
}

/// Maps the object's stored records into local projects or people with the
/// rule's policies (defaults without a rule). Idempotent and resumable on
/// its own (each link remembers what it applied), so it runs after the
/// records are committed; a crash in between is caught up next run.
async fn apply_to_entities(
    state: &AppState,
    lease: &Lease,
    connection: &Connection,
    object_key: &str,
    job: &crate::jobs::Job,
    dry_run: bool,
) -> Result<(), RunError> {
    let mut apply: crate::entities::ApplyOptions = rule_part(job);
    apply.dry_run = dry_run;
    let scope: crate::rules::Scope = rule_part(job);
    let counts = crate::entities::apply::apply_records_scoped(
        state,
        job.workspace_id,
        connection.id,
        &connection.provider,
        object_key,
        apply,
        &scope,
    )
    .await
    .map_err(|e| failed(format!("mapping records into local entities failed: {e}")))?;
    let prefix = if dry_run {
        "dry run, against the records already stored: would map"
    } else {
        "mapped"
    };
    log(
        state,
        lease,
        "info",
        &format!(
            "{prefix}: {} created, {} updated, {} linked, {} unchanged, {} left for review, {} deactivated, {} deleted",
            counts.created,
            counts.updated,
            counts.linked,
            counts.unchanged,
            counts.skipped,
            counts.deactivated,
            counts.deleted
        ),
    )
    .await;
    Ok(())
}

type Fetched = (u16, Vec<(String, String)>, Value, Option<Connection>);

/// One page over the wire: token, headers, retries; one refresh and one
/// retry on a 401. Retries are logged without URLs or bodies.
async fn fetch_page(
    state: &AppState,
    provider: &crate::providers::Provider,
    connection: &Connection,
    request: &super::fetch::PageRequest,
    headers: &[(String, String)],
    (policy, limits): (&RetryPolicy, &Limits),
    lease: &Lease,
) -> Result<Fetched, RunError> {
    let mut connection = connection.clone();
    let mut refreshed = None;
    for attempt in 0..2 {
        // Both budgets are shared with every process on this database.
        let budgets = [
            (
                format!("provider:{}", provider.meta.key),
                limits.global_rate(),
            ),
            (
                format!("connection:{}", connection.id),
                limits.connection_rate(),
            ),
        ];
        let waited = limits::acquire(state.store.as_ref(), &budgets, policy.max_retry_after)
            .await
            .map_err(|e| failed(e.to_string()))?;
        if waited >= Duration::from_secs(1) {
            log(
                state,
                lease,
                "info",
                &format!(
                    "waited {:.1} s for the provider's request budget",
                    waited.as_secs_f64()
                ),
            )
            .await;
        }
        let (token, current) = tokens::access_token_with_connection(state, &connection)
            .await
            .map_err(|e| failed(e.to_string()))?;
        if current.token_version != connection.token_version {
            refreshed = Some(current.clone());
        }
        connection = current;
        let mut retries = Vec::new();
        let client = state.outbound.client();
        let build = || {
            let method = reqwest::Method::from_bytes(request.method.as_bytes())
                .unwrap_or(reqwest::Method::GET);
            let request_builder = crate::outbound::with_request_id(
                client.request(method, &request.url).query(&request.query),
            );
            let mut b = tokens::authorize(request_builder, provider, &connection, &token, headers);
            if let Some(body) = &request.body {
                b = b.json(body);
            }
            b
        };
        let response = send(build, policy, |r| {
            retries.push(format!(
                "retry {} after {:?}: {}",
                r.attempt, r.wait, r.reason
            ))
        })
        .await;
        for line in retries {
            log(state, lease, "warn", &line).await;
        }
        let response = response.map_err(|e| failed(e.to_string()))?;
        let status = response.status().as_u16();
        if status == 401 && attempt == 0 && connection.flow != "api_key" {
            log(
                state,
                lease,
                "warn",
                "the provider rejected the token; refreshing once",
            )
            .await;
            connection = tokens::refresh(state, &connection, true)
                .await
                .map_err(|e| failed(e.to_string()))?;
            refreshed = Some(connection.clone());
            continue;
        }
        let response_headers: Vec<(String, String)> = response
            .headers()
            .iter()
            .filter_map(|(k, v)| {
                v.to_str()
                    .ok()
                    .map(|v| (k.as_str().to_owned(), v.to_owned()))
            })
            .collect();
        let limit = state.settings.sync.max_page_bytes;
        let body = read_body(response, limit).await.map_err(|e| match e {
            BodyError::TooLarge => failed(format!(
                "{} sent a page larger than the limit of {limit} bytes (PLUGBOARD_SYNC_MAX_PAGE_BYTES); ask for smaller pages or raise the limit",
                provider.meta.display_name
            )),
            BodyError::Read => failed(format!(
                "reading {}'s answer failed part-way",
                provider.meta.display_name
            )),
        })?;
        return Ok((status, response_headers, body, refreshed));
    }
    Err(failed(
        "the provider rejected the token even after a refresh; reconnect",
    ))
}

enum BodyError {
    TooLarge,
    Read,
}

/// The answer as JSON (`Null` when it isn't JSON), read chunk by chunk and
/// refused past `limit` bytes, so a hostile or broken provider can't make a
/// worker buffer without end.
async fn read_body(mut response: reqwest::Response, limit: u64) -> Result<Value, BodyError> {
    if response.content_length().is_some_and(|n| n > limit) {
        return Err(BodyError::TooLarge);
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|_| BodyError::Read)? {
        if (bytes.len() as u64).saturating_add(chunk.len() as u64) > limit {
            return Err(BodyError::TooLarge);
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// The longest window of days a metrics read clears days it didn't see in.
const MAX_WINDOW_DAYS: usize = 20_000;

fn parse_day(s: &str) -> Option<time::Date> {
    time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]")).ok()
}

/// What a metrics page replaces (per account; the provider's answer is the
/// truth for the days read). A day's rows may span pages, so a day is
/// replaced once per job — removing the stored combinations the provider
/// no longer reports — by the first page on which it is known complete:
/// any day of a page but its last (latest) one, which the next page may
/// continue. That last day is kept pending, with the keys written for it,
/// and replaced by the next page (keeping those keys). A day turning up
/// again after being replaced is only added to. On an account's last page,
/// the window's days no page returned are replaced too (emptied).
/// Correct whatever order a provider returns days in; without churn when
/// it returns them in order. Updates the checkpoint accordingly.
fn days_to_replace(
    cp: &mut Checkpoint,
    rows: &[MetricRow],
    account_id: &str,
    at_end: bool,
    spec: &ReadSpec,
) -> (Vec<DayKey>, Vec<RowKey>) {
    let done: std::collections::HashSet<String> = cp.replaced_days.iter().cloned().collect();
    let is_done = |d: &time::Date| done.contains(&d.to_string());
    let last = rows
        .iter()
        .map(|r| r.date)
        .max()
        .filter(|d| !at_end && !is_done(d));
    let mut replace: std::collections::BTreeSet<time::Date> = rows
        .iter()
        .map(|r| r.date)
        .filter(|d| !is_done(d) && Some(*d) != last)
        .collect();
    let mut keep = Vec::new();
    let mut pending_keys = Vec::new();
    if let Some(p) = cp.pending_day.take()
        && let Some(date) = parse_day(&p.date)
    {
        if Some(date) == last {
            pending_keys = p.keys;
        } else {
            replace.insert(date);
            keep.extend(p.keys.into_iter().map(|k| RowKey {
                account_id: account_id.to_owned(),
                date,
                dimension_key: k,
            }));
        }
    }
    if let Some(date) = last {
        pending_keys.extend(
            rows.iter()
                .filter(|r| r.date == date)
                .map(|r| r.dimension_key.clone()),
        );
        cp.pending_day = Some(PendingDay {
            date: date.to_string(),
            keys: pending_keys,
        });
    }
    if at_end
        && let (Some(from), Some(until)) = (
            spec.since.as_deref().and_then(parse_day),
            spec.until.as_deref().and_then(parse_day),
        )
    {
        let mut day = Some(from);
        let mut steps = 0;
        while let Some(d) = day.filter(|d| *d <= until && steps < MAX_WINDOW_DAYS) {
            if !is_done(&d) {
                replace.insert(d);
            }
            day = d.next_day();
            steps += 1;
        }
    }
    if at_end {
        // The next account starts afresh.
        cp.replaced_days.clear();
    } else {
        cp.replaced_days
            .extend(replace.iter().map(|d| d.to_string()));
    }
    let days = replace
        .into_iter()
        .map(|date| DayKey {
            account_id: account_id.to_owned(),
            date,
        })
        .collect();
    (days, keep)
}

/// Whether any worker is alive (sync requests are refused otherwise).
pub async fn workers_alive(state: &AppState) -> bool {
    let since = now() - time::Duration::seconds(30);
    state.store.live_workers(since).await.unwrap_or(0) > 0
}

/// A provider's metric record as a daily row: the date dimension, the
/// declared metrics as numbers (some providers send them as strings), the
/// other dimensions as the row's identity within the day. Validated like
/// the internal API's rows.
fn metric_row(
    reader: &ObjectReader<'_>,
    object: &ObjectMeta,
    record: &Value,
    account: Option<&str>,
) -> Option<MetricRow> {
    let is_date = |name: &str| {
        object
            .fields
            .iter()
            .any(|f| f.name == name && f.field_type == "date")
    };
    let date_field = object
        .dimensions
        .iter()
        .find(|d| is_date(d))
        .or_else(|| object.dimensions.iter().find(|d| d.as_str() == "date"))?;
    let raw_date = reader.field(record, date_field)?.as_str()?;
    // GA4 sends 20261120; everyone else 2026-11-20.
    let compact = (raw_date.len() == 8 && raw_date.bytes().all(|b| b.is_ascii_digit()))
        .then(|| Some((raw_date.get(..4)?, raw_date.get(4..6)?, raw_date.get(6..)?)))
        .flatten();
    let date = match compact {
        Some((year, month, day)) => format!("{year}-{month}-{day}"),
        None => raw_date.to_owned(),
    };
    let mut metrics = serde_json::Map::new();
    for name in &object.metrics {
        let value = match reader.field(record, name) {
            Some(Value::Number(n)) => Value::Number(n.clone()),
            Some(Value::String(s)) => {
                serde_json::Number::from_f64(s.parse::<f64>().ok()?).map(Value::Number)?
            }
            _ => continue,
        };
        metrics.insert(name.clone(), value);
    }
    let mut dimensions = serde_json::Map::new();
    for name in object.dimensions.iter().filter(|d| *d != date_field) {
        if let Some(v) = reader.field(record, name) {
            dimensions.insert(name.clone(), v.clone());
        }
    }
    // Provider data: kept as sent, but a NUL can't be stored.
    let mut dimensions = Value::Object(dimensions);
    crate::input::escape_nul_for_storage(&mut dimensions);
    let input = MetricInput {
        date: Value::String(date),
        account_id: account.map(|a| Value::String(crate::input::escape_nul_in_text(a))),
        metrics_json: Value::Object(metrics),
        dimensions_json: Some(dimensions),
    };
    crate::metrics::validate(0, &input).ok()
}
