//! Job leases: how workers — in one process or several — share the queue.
//!
//! A worker claims the oldest queued sync job (or a running one whose lease
//! expired: its worker died) and holds it with a lease it renews by
//! heartbeat. Every page commits the page's rows and the job's checkpoint
//! in one transaction, fenced by the lease: a worker that lost its lease
//! writes nothing, so a job resumes exactly where its last committed page
//! left it — no duplicates, no loss. On PostgreSQL the claim uses
//! `FOR UPDATE SKIP LOCKED`; SQLite has one writer at a time anyway.

use serde::Serialize;
use serde_json::Value;
use sqlx::types::Json;
use time::OffsetDateTime;
use uuid::Uuid;

use super::records::{RecordBatch, RecordCounts, upsert_pg, upsert_sqlite};
use crate::connections::Viewer;
use crate::impl_for_backends;
use crate::jobs::{Job, JobStatus};
use crate::metrics::WriteCounts;
use crate::metrics::store::MetricBatch;
use crate::storage::{PgStore, SqliteStore};
use crate::tenancy::WorkspaceId;

/// Which alert, if any, the newest outcomes (newest first, at most
/// `alert_after + 1`) call for: `sync_failed` when the newest
/// `alert_after` failed and the one before them did not (so a streak
/// alerts once), `sync_recovered` when a success ends such a streak.
pub fn streak_event(outcomes: &[String], alert_after: usize) -> Option<&'static str> {
    let failed = |s: &String| s == "failed";
    let (newest, older) = outcomes.split_first()?;
    if failed(newest) {
        let streak = outcomes
            .iter()
            .take(alert_after)
            .filter(|s| failed(s))
            .count();
        let before = outcomes.get(alert_after);
        (streak == alert_after && !before.is_some_and(failed)).then_some("sync_failed")
    } else {
        (older.len() >= alert_after && older.iter().take(alert_after).all(failed))
            .then_some("sync_recovered")
    }
}

/// Queues an event for the workspace's webhook, if it has one (like
/// `enqueue_webhook_event!`, for events that aren't about a connection's
/// status). Carries ids and names only, never an error text or a token.
macro_rules! enqueue_alert {
    ($tx:expr, $workspace:expr, $event:expr, $payload:expr, $at:expr) => {
        sqlx::query(
            "INSERT INTO webhook_deliveries (id, workspace_id, event, payload, attempts, next_attempt_at, created_at) \
             SELECT $1, $2, $3, $4, 0, $5, $5 WHERE EXISTS \
             (SELECT 1 FROM webhook_endpoints WHERE workspace_id = $2)",
        )
        .bind(Uuid::now_v7())
        .bind($workspace)
        .bind($event)
        .bind(Json($payload))
        .bind($at)
        .execute(&mut *$tx)
        .await
    };
}

/// Proof of holding a job: every write names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub job_id: Uuid,
    pub workspace: WorkspaceId,
    pub owner: Uuid,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Claimed {
    #[sqlx(flatten)]
    pub job: Job,
    pub attempts: i32,
    pub checkpoint: Json<Value>,
}

impl Claimed {
    pub fn lease(&self, owner: Uuid) -> Lease {
        Lease {
            job_id: self.job.id,
            workspace: self.job.workspace_id,
            owner,
        }
    }
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobLogLine {
    pub level: String,
    pub message: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// The job state to commit with a page's rows, made from what the page
/// wrote so that a resumed job's counts include every committed page.
pub type CheckpointFor<'a> = dyn Fn(RecordCounts) -> (Value, Value) + Send + Sync + 'a;

/// A page's state to commit with its rows.
pub struct PageCommit<'a> {
    /// (checkpoint, counts) given the page's own counts.
    pub checkpoint: &'a CheckpointFor<'a>,
    pub lease_until: OffsetDateTime,
    /// Run the writes for their counts, then roll them back.
    pub dry_run: bool,
}

#[async_trait::async_trait]
pub trait LeaseStore {
    /// Claims the oldest claimable sync job, across workspaces (this is the
    /// worker's queue).
    async fn claim_sync_job(
        &self,
        owner: Uuid,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
    ) -> sqlx::Result<Option<Claimed>>;
    /// Ends a full read: marks the object's records the run (the job) didn't
    /// return deleted, in one transaction with the lease fence. `None` when
    /// the lease was lost or the job cancelled: then nothing is marked, since
    /// a run that didn't finish can't know what vanished.
    async fn mark_vanished_fenced(
        &self,
        lease: &Lease,
        lease_until: OffsetDateTime,
        connection_id: Uuid,
        object: &str,
        at: OffsetDateTime,
    ) -> sqlx::Result<Option<u64>>;
    /// Renews the lease; false when it was lost or the job was cancelled.
    async fn heartbeat_job(&self, lease: &Lease, lease_until: OffsetDateTime)
    -> sqlx::Result<bool>;
    /// Ends a job held by `lease`. In the same transaction, the job that
    /// makes `alert_after` consecutive failures of its connection's object
    /// queues a `sync_failed` webhook event, and the first success after
    /// such a streak a `sync_recovered` one: once per streak.
    async fn finish_sync_job(
        &self,
        lease: &Lease,
        status: JobStatus,
        counts: &Value,
        error: Option<&str>,
        at: OffsetDateTime,
        alert_after: u32,
    ) -> sqlx::Result<bool>;
    async fn append_job_log(
        &self,
        workspace: WorkspaceId,
        job_id: Uuid,
        level: &str,
        message: &str,
        at: OffsetDateTime,
    ) -> sqlx::Result<()>;
    /// A job's log, if the viewer may see the job (see `Viewer`).
    async fn job_logs(&self, viewer: Viewer, job_id: Uuid) -> sqlx::Result<Vec<JobLogLine>>;
    /// Cancels a queued or running job; the worker sees it at its next
    /// heartbeat or page.
    async fn cancel_job(
        &self,
        workspace: WorkspaceId,
        job_id: Uuid,
        at: OffsetDateTime,
    ) -> sqlx::Result<bool>;
    async fn worker_heartbeat(
        &self,
        worker: Uuid,
        started_at: OffsetDateTime,
        at: OffsetDateTime,
    ) -> sqlx::Result<()>;
    async fn remove_worker(&self, worker: Uuid) -> sqlx::Result<()>;
    /// Workers that beat since `since`.
    async fn live_workers(&self, since: OffsetDateTime) -> sqlx::Result<i64>;
    /// Queued sync jobs and when the oldest was queued (system-wide health).
    async fn queue_stats(&self) -> sqlx::Result<(i64, Option<OffsetDateTime>)>;
    async fn mark_connection_synced(
        &self,
        workspace: WorkspaceId,
        connection_id: Uuid,
        at: OffsetDateTime,
    ) -> sqlx::Result<()>;
}

#[async_trait::async_trait]
pub trait PageStore {
    /// Writes a page's records and the job's checkpoint in one transaction,
    /// only while `lease` holds. None: the lease was lost; nothing written.
    async fn commit_record_page(
        &self,
        lease: &Lease,
        page: &PageCommit<'_>,
        batch: &RecordBatch<'_>,
    ) -> sqlx::Result<Option<RecordCounts>>;
    /// The same for a page of daily metrics.
    async fn commit_metric_page(
        &self,
        lease: &Lease,
        page: &PageCommit<'_>,
        batch: &MetricBatch<'_>,
    ) -> sqlx::Result<Option<WriteCounts>>;
}

// Fencing: the update only matches while this worker holds the lease on
// a running job, and it locks the job row for the page's transaction.
const FENCE: &str = "UPDATE jobs SET lease_until = $4, updated_at = $5 \
     WHERE workspace_id = $1 AND id = $2 AND lease_owner = $3 AND status = 'running'";
const SAVE_CHECKPOINT: &str =
    "UPDATE jobs SET checkpoint = $3, counts = $4 WHERE workspace_id = $1 AND id = $2";

macro_rules! claimed_columns {
    () => {
        "id, workspace_id, connection_id, provider, object, kind, status, idempotency_key, summary, error, \
         metadata, counts, requested_by, created_at, started_at, finished_at, updated_at, attempts, checkpoint"
    };
}

impl_for_backends! {
    impl LeaseStore {
        async fn claim_sync_job(&self, owner: Uuid, now: OffsetDateTime, lease_until: OffsetDateTime) -> sqlx::Result<Option<Claimed>> {
            // Claims are serialised (an advisory lock on PostgreSQL, the
            // write lock on SQLite) so the count of a connection's running
            // jobs can't be read stale by two claimers at once; a claim is
            // one short statement, so the queue stays fast.
            let mut tx = self.begin_write().await?;
            sqlx::query(Self::sql("SELECT pg_advisory_xact_lock(72720501)", "SELECT 1"))
                .execute(&mut *tx)
                .await?;
            let claimed = sqlx::query_as(Self::sql(
                concat!(
                    "UPDATE jobs SET status = 'running', lease_owner = $1, lease_until = $3, attempts = attempts + 1, \
                     started_at = COALESCE(started_at, $2), updated_at = $2 WHERE id = \
                     (SELECT j.id FROM jobs j WHERE j.kind = 'sync' AND (j.status = 'queued' OR (j.status = 'running' AND j.lease_until < $2)) \
                      AND (SELECT COUNT(*) FROM jobs r WHERE r.connection_id = j.connection_id AND r.status = 'running' \
                           AND r.lease_until >= $2 AND r.id <> j.id) \
                          < COALESCE((SELECT l.max_concurrent_per_connection FROM provider_limits l WHERE l.provider = j.provider), 1) \
                      ORDER BY j.created_at, j.id LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING ",
                    claimed_columns!()
                ),
                concat!(
                    "UPDATE jobs SET status = 'running', lease_owner = $1, lease_until = $3, attempts = attempts + 1, \
                     started_at = COALESCE(started_at, $2), updated_at = $2 WHERE id = \
                     (SELECT j.id FROM jobs j WHERE j.kind = 'sync' AND (j.status = 'queued' OR (j.status = 'running' AND j.lease_until < $2)) \
                      AND (SELECT COUNT(*) FROM jobs r WHERE r.connection_id = j.connection_id AND r.status = 'running' \
                           AND r.lease_until >= $2 AND r.id <> j.id) \
                          < COALESCE((SELECT l.max_concurrent_per_connection FROM provider_limits l WHERE l.provider = j.provider), 1) \
                      ORDER BY j.created_at, j.id LIMIT 1) RETURNING ",
                    claimed_columns!()
                ),
            ))
            .bind(owner)
            .bind(now)
            .bind(lease_until)
            .fetch_optional(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(claimed)
        }

        async fn mark_vanished_fenced(&self, lease: &Lease, lease_until: OffsetDateTime, connection_id: Uuid, object: &str, at: OffsetDateTime) -> sqlx::Result<Option<u64>> {
            let mut tx = self.begin_write().await?;
            let held = sqlx::query(FENCE)
                .bind(lease.workspace)
                .bind(lease.job_id)
                .bind(lease.owner)
                .bind(lease_until)
                .bind(at)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if held == 0 {
                return Ok(None);
            }
            let marked = sqlx::query(super::records::MARK_VANISHED)
                .bind(lease.workspace)
                .bind(connection_id)
                .bind(object)
                .bind(lease.job_id)
                .bind(at)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            Ok(Some(marked))
        }

        async fn heartbeat_job(&self, lease: &Lease, lease_until: OffsetDateTime) -> sqlx::Result<bool> {
            let renewed = sqlx::query(
                "UPDATE jobs SET lease_until = $4 WHERE workspace_id = $1 AND id = $2 AND lease_owner = $3 AND status = 'running'",
            )
            .bind(lease.workspace)
            .bind(lease.job_id)
            .bind(lease.owner)
            .bind(lease_until)
            .execute(&self.pool)
            .await?
            .rows_affected();
            Ok(renewed == 1)
        }

        async fn finish_sync_job(&self, lease: &Lease, status: JobStatus, counts: &Value, error: Option<&str>, at: OffsetDateTime, alert_after: u32) -> sqlx::Result<bool> {
            let mut tx = self.begin_write().await?;
            let done = sqlx::query(
                "UPDATE jobs SET status = $4, counts = $5, error = $6, finished_at = $7, updated_at = $7, \
                 lease_owner = NULL, lease_until = NULL \
                 WHERE workspace_id = $1 AND id = $2 AND lease_owner = $3 AND status = 'running'",
            )
            .bind(lease.workspace)
            .bind(lease.job_id)
            .bind(lease.owner)
            .bind(status.as_str())
            .bind(Json(counts))
            .bind(error)
            .bind(at)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if done != 1 {
                return Ok(false);
            }
            let job: Option<(Option<Uuid>, String, Option<String>)> = sqlx::query_as(
                "SELECT connection_id, provider, object FROM jobs WHERE workspace_id = $1 AND id = $2",
            )
            .bind(lease.workspace)
            .bind(lease.job_id)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some((Some(connection_id), provider, Some(object))) = job {
                // The newest finished outcomes of this object; cancelled
                // jobs neither break nor extend a streak.
                let outcomes: Vec<String> = sqlx::query_scalar(
                    "SELECT status FROM jobs WHERE workspace_id = $1 AND connection_id = $2 AND object = $3 \
                     AND status IN ('succeeded', 'failed') AND finished_at IS NOT NULL \
                     ORDER BY finished_at DESC, id DESC LIMIT $4",
                )
                .bind(lease.workspace)
                .bind(connection_id)
                .bind(&object)
                .bind(i64::from(alert_after).saturating_add(1))
                .fetch_all(&mut *tx)
                .await?;
                if let Some(event) = streak_event(&outcomes, alert_after as usize) {
                    let payload = serde_json::json!({
                        "event": event,
                        "workspaceId": lease.workspace,
                        "connectionId": connection_id,
                        "provider": provider,
                        "object": object,
                        "jobId": lease.job_id,
                        "consecutiveFailures": alert_after,
                        "occurredAt": at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
                    });
                    enqueue_alert!(tx, lease.workspace, event, &payload, at)?;
                }
            }
            tx.commit().await?;
            Ok(true)
        }

        async fn worker_heartbeat(&self, worker: Uuid, started_at: OffsetDateTime, at: OffsetDateTime) -> sqlx::Result<()> {
            sqlx::query(
                "INSERT INTO workers (id, started_at, heartbeat_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
            )
            .bind(worker)
            .bind(started_at)
            .bind(at)
            .execute(&self.pool)
            .await
            .map(|_| ())
        }

        async fn remove_worker(&self, worker: Uuid) -> sqlx::Result<()> {
            sqlx::query("DELETE FROM workers WHERE id = $1").bind(worker).execute(&self.pool).await.map(|_| ())
        }

        async fn live_workers(&self, since: OffsetDateTime) -> sqlx::Result<i64> {
            sqlx::query_scalar("SELECT COUNT(*) FROM workers WHERE heartbeat_at >= $1")
                .bind(since)
                .fetch_one(&self.pool)
                .await
        }

        async fn queue_stats(&self) -> sqlx::Result<(i64, Option<OffsetDateTime>)> {
            sqlx::query_as("SELECT COUNT(*), MIN(created_at) FROM jobs WHERE kind = 'sync' AND status = 'queued'")
                .fetch_one(&self.pool)
                .await
        }

        async fn mark_connection_synced(&self, workspace: WorkspaceId, connection_id: Uuid, at: OffsetDateTime) -> sqlx::Result<()> {
            sqlx::query("UPDATE connections SET last_sync_at = $3 WHERE workspace_id = $1 AND id = $2")
                .bind(workspace)
                .bind(connection_id)
                .bind(at)
                .execute(&self.pool)
                .await
                .map(|_| ())
        }

        async fn append_job_log(&self, workspace: WorkspaceId, job_id: Uuid, level: &str, message: &str, at: OffsetDateTime) -> sqlx::Result<()> {
            sqlx::query("INSERT INTO job_logs (id, job_id, workspace_id, level, message, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(Uuid::now_v7())
                .bind(job_id)
                .bind(workspace)
                .bind(level)
                .bind(message)
                .bind(at)
                .execute(&self.pool)
                .await
                .map(|_| ())
        }

        async fn job_logs(&self, viewer: Viewer, job_id: Uuid) -> sqlx::Result<Vec<JobLogLine>> {
            sqlx::query_as(concat!(
                "SELECT l.level, l.message, l.created_at FROM job_logs l JOIN jobs j ON j.id = l.job_id \
                 WHERE l.workspace_id = $1 AND j.workspace_id = $1 AND l.job_id = $2 AND ",
                crate::visible_connection!("j.connection_id", "$1", "$3"),
                " ORDER BY l.id"
            ))
                .bind(viewer.workspace)
                .bind(job_id)
                .bind(viewer.user)
                .fetch_all(&self.pool)
                .await
        }

        async fn cancel_job(&self, workspace: WorkspaceId, job_id: Uuid, at: OffsetDateTime) -> sqlx::Result<bool> {
            let cancelled = sqlx::query(
                "UPDATE jobs SET status = 'cancelled', finished_at = $3, updated_at = $3, lease_owner = NULL, lease_until = NULL \
                 WHERE workspace_id = $1 AND id = $2 AND status IN ('queued', 'running', 'waiting_external')",
            )
            .bind(workspace)
            .bind(job_id)
            .bind(at)
            .execute(&self.pool)
            .await?
            .rows_affected();
            Ok(cancelled == 1)
        }
    }
}

/// A page's write on a transaction that first takes the fenced
/// checkpoint: the fenced update comes first and locks the job row, so a
/// concurrent claim can't slip in between the check and the rows. Yields
/// `None` (nothing written) when the lease is no longer held.
macro_rules! fenced_page {
    ($store:expr, $lease:expr, $page:expr, $at:expr, |$tx:ident| $write:expr) => {{
        let mut $tx = $store.begin_write().await?;
        let held = sqlx::query(FENCE)
            .bind($lease.workspace)
            .bind($lease.job_id)
            .bind($lease.owner)
            .bind($page.lease_until)
            .bind($at)
            .execute(&mut *$tx)
            .await?
            .rows_affected();
        if held == 0 {
            return Ok(None);
        }
        // A dry run's rows are written inside a savepoint and rolled back:
        // its counts are exactly what a real run would write.
        if $page.dry_run {
            sqlx::query("SAVEPOINT dry_run").execute(&mut *$tx).await?;
        }
        let counts = $write.await?;
        if $page.dry_run {
            sqlx::query("ROLLBACK TO SAVEPOINT dry_run")
                .execute(&mut *$tx)
                .await?;
        }
        let (checkpoint, job_counts) = ($page.checkpoint)(RecordCounts::from(counts));
        sqlx::query(SAVE_CHECKPOINT)
            .bind($lease.workspace)
            .bind($lease.job_id)
            .bind(Json(checkpoint))
            .bind(Json(job_counts))
            .execute(&mut *$tx)
            .await?;
        $tx.commit().await?;
        Ok(Some(counts))
    }};
}

#[async_trait::async_trait]
impl PageStore for PgStore {
    async fn commit_record_page(
        &self,
        lease: &Lease,
        page: &PageCommit<'_>,
        batch: &RecordBatch<'_>,
    ) -> sqlx::Result<Option<RecordCounts>> {
        fenced_page!(self, lease, page, batch.at, |tx| upsert_pg(&mut tx, batch))
    }

    async fn commit_metric_page(
        &self,
        lease: &Lease,
        page: &PageCommit<'_>,
        batch: &MetricBatch<'_>,
    ) -> sqlx::Result<Option<WriteCounts>> {
        fenced_page!(self, lease, page, batch.at, |tx| {
            crate::metrics::store::upsert_pg(&mut tx, batch)
        })
    }
}

#[async_trait::async_trait]
impl PageStore for SqliteStore {
    async fn commit_record_page(
        &self,
        lease: &Lease,
        page: &PageCommit<'_>,
        batch: &RecordBatch<'_>,
    ) -> sqlx::Result<Option<RecordCounts>> {
        fenced_page!(self, lease, page, batch.at, |tx| upsert_sqlite(
            &mut tx, batch
        ))
    }

    async fn commit_metric_page(
        &self,
        lease: &Lease,
        page: &PageCommit<'_>,
        batch: &MetricBatch<'_>,
    ) -> sqlx::Result<Option<WriteCounts>> {
        fenced_page!(self, lease, page, batch.at, |tx| {
            crate::metrics::store::upsert_sqlite(&mut tx, batch)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::streak_event;

    fn v(xs: &[&str]) -> Vec<String> {
        xs.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_streak_alerts_once_and_recovers_once() {
        assert_eq!(streak_event(&v(&["failed", "failed"]), 3), None);
        assert_eq!(
            streak_event(&v(&["failed", "failed", "failed"]), 3),
            Some("sync_failed")
        );
        assert_eq!(
            streak_event(&v(&["failed", "failed", "failed", "succeeded"]), 3),
            Some("sync_failed")
        );
        // The fourth failure in a row: already alerted.
        assert_eq!(
            streak_event(&v(&["failed", "failed", "failed", "failed"]), 3),
            None
        );
        assert_eq!(
            streak_event(&v(&["succeeded", "failed", "failed", "failed"]), 3),
            Some("sync_recovered")
        );
        assert_eq!(
            streak_event(&v(&["succeeded", "failed", "failed", "succeeded"]), 3),
            None
        );
        assert_eq!(streak_event(&v(&["succeeded", "succeeded"]), 1), None);
        assert_eq!(streak_event(&v(&["failed"]), 1), Some("sync_failed"));
        assert_eq!(streak_event(&v(&[]), 3), None);
    }
}
