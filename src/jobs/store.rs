//! SQL for jobs.

use serde_json::Value;
use sqlx::types::Json;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Job, JobStatus};
use crate::connections::Viewer;
use crate::impl_for_backends;
use crate::storage::is_unique_violation;
use crate::tenancy::WorkspaceId;

pub struct NewJob<'a> {
    pub id: Uuid,
    pub workspace_id: WorkspaceId,
    pub connection_id: Option<Uuid>,
    pub provider: &'a str,
    pub object: Option<&'a str>,
    pub kind: &'a str,
    pub status: JobStatus,
    pub idempotency_key: Option<&'a str>,
    pub metadata: Value,
    pub requested_by: Option<Uuid>,
    pub at: OffsetDateTime,
}

/// An external run's report.
pub struct JobReport<'a> {
    pub status: JobStatus,
    pub summary: Option<&'a Value>,
    pub error: Option<&'a str>,
    pub metadata: Option<&'a Value>,
    pub at: OffsetDateTime,
}

/// The job history's filters; `None` is "any". Times are instants (the
/// page turns its dates in the workspace's zone into them).
#[derive(Debug, Clone, Default)]
pub struct JobFilter<'a> {
    pub provider: Option<&'a str>,
    pub object: Option<&'a str>,
    pub status: Option<&'a str>,
    /// Created at or after.
    pub from: Option<OffsetDateTime>,
    /// Created before.
    pub until: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    New(Uuid),
    /// One is already queued or running for this connection and object.
    Existing(Uuid),
}

#[derive(Debug, Clone)]
pub enum ReportOutcome {
    Updated(Box<Job>),
    NotFound,
    AlreadyFinished(JobStatus),
}

#[async_trait::async_trait]
pub trait JobStore {
    async fn create_job(&self, job: &NewJob<'_>) -> sqlx::Result<Created>;
    /// System lookup (workers, automations); people read through
    /// [`JobStore::get_visible_job`].
    async fn get_job(&self, workspace: WorkspaceId, id: Uuid) -> sqlx::Result<Option<Job>>;
    /// A job the viewer may see: not one of another member's personal
    /// connection.
    async fn get_visible_job(&self, viewer: Viewer, id: Uuid) -> sqlx::Result<Option<Job>>;
    /// System lookup by id alone, for the deployment-wide service key.
    async fn find_job(&self, id: Uuid) -> sqlx::Result<Option<Job>>;
    async fn report_job(
        &self,
        workspace: WorkspaceId,
        id: Uuid,
        report: &JobReport<'_>,
    ) -> sqlx::Result<ReportOutcome>;
    /// Fails external jobs (waiting or running) not reported on since
    /// `before`.
    async fn expire_external_jobs(
        &self,
        before: OffsetDateTime,
        message: &str,
        at: OffsetDateTime,
    ) -> sqlx::Result<u64>;
    /// Queued, running and waiting jobs of the workspace (the Data Hub's
    /// "syncing now" state), oldest first.
    async fn list_active_jobs(&self, viewer: Viewer) -> sqlx::Result<Vec<Job>>;
    /// The last finished sync of each (connection, object) the viewer may
    /// see: what a card says about how its syncs went.
    async fn latest_sync_outcomes(&self, viewer: Viewer) -> sqlx::Result<Vec<Job>>;
    async fn list_jobs(
        &self,
        viewer: Viewer,
        provider: &str,
        object: Option<&str>,
        status: Option<&str>,
        limit: i64,
    ) -> sqlx::Result<Vec<Job>>;
    /// Every job of the workspace the viewer may see that passes `filter`,
    /// newest first, at most `limit`.
    async fn search_jobs(
        &self,
        viewer: Viewer,
        filter: &JobFilter<'_>,
        limit: i64,
    ) -> sqlx::Result<Vec<Job>>;
    /// The newest job of a connection's object, whatever started it (for
    /// the "Sync now" interval).
    async fn last_job_of(
        &self,
        workspace: WorkspaceId,
        connection_id: Uuid,
        object: &str,
    ) -> sqlx::Result<Option<Job>>;
}

macro_rules! job_select {
    () => {
        "SELECT id, workspace_id, connection_id, provider, object, kind, status, idempotency_key, summary, error, \
         metadata, counts, requested_by, created_at, started_at, finished_at, updated_at FROM jobs "
    };
}

impl_for_backends! {
    impl JobStore {
        async fn create_job(&self, job: &NewJob<'_>) -> sqlx::Result<Created> {
            let inserted = sqlx::query(
                "INSERT INTO jobs (id, workspace_id, connection_id, provider, object, kind, status, idempotency_key, \
                 metadata, requested_by, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)",
            )
            .bind(job.id)
            .bind(job.workspace_id)
            .bind(job.connection_id)
            .bind(job.provider)
            .bind(job.object)
            .bind(job.kind)
            .bind(job.status.as_str())
            .bind(job.idempotency_key)
            .bind(Json(&job.metadata))
            .bind(job.requested_by)
            .bind(job.at)
            .execute(&self.pool)
            .await;
            match inserted {
                Ok(_) => Ok(Created::New(job.id)),
                Err(e) if is_unique_violation(&e) => {
                    let existing: Option<Uuid> = sqlx::query_scalar(
                        "SELECT id FROM jobs WHERE workspace_id = $1 AND connection_id = $2 AND object = $3 \
                         AND status IN ('queued', 'running', 'waiting_external')",
                    )
                    .bind(job.workspace_id)
                    .bind(job.connection_id)
                    .bind(job.object)
                    .fetch_optional(&self.pool)
                    .await?;
                    match existing {
                        Some(id) => Ok(Created::Existing(id)),
                        None => Err(e),
                    }
                }
                Err(e) => Err(e),
            }
        }

        async fn get_job(&self, workspace: WorkspaceId, id: Uuid) -> sqlx::Result<Option<Job>> {
            sqlx::query_as(concat!(job_select!(), "WHERE workspace_id = $1 AND id = $2"))
                .bind(workspace)
                .bind(id)
                .fetch_optional(&self.pool)
                .await
        }

        async fn expire_external_jobs(&self, before: OffsetDateTime, message: &str, at: OffsetDateTime) -> sqlx::Result<u64> {
            sqlx::query(
                "UPDATE jobs SET status = 'failed', error = $2, finished_at = $3, updated_at = $3 \
                 WHERE kind = 'external' AND status IN ('waiting_external', 'running') AND updated_at < $1",
            )
            .bind(before)
            .bind(message)
            .bind(at)
            .execute(&self.pool)
            .await
            .map(|r| r.rows_affected())
        }

        async fn list_active_jobs(&self, viewer: Viewer) -> sqlx::Result<Vec<Job>> {
            sqlx::query_as(concat!(
                job_select!(),
                "WHERE workspace_id = $1 AND status IN ('queued', 'running', 'waiting_external') AND ",
                crate::visible_connection!("connection_id", "$1", "$2"),
                " ORDER BY created_at, id LIMIT 200"
            ))
            .bind(viewer.workspace)
            .bind(viewer.user)
            .fetch_all(&self.pool)
            .await
        }

        async fn latest_sync_outcomes(&self, viewer: Viewer) -> sqlx::Result<Vec<Job>> {
            sqlx::query_as(concat!(
                job_select!(),
                "j WHERE j.workspace_id = $1 AND j.kind = 'sync' AND j.status IN ('succeeded', 'failed') \
                 AND j.connection_id IS NOT NULL AND j.finished_at IS NOT NULL AND ",
                crate::visible_connection!("j.connection_id", "$1", "$2"),
                " AND NOT EXISTS (SELECT 1 FROM jobs k WHERE k.workspace_id = j.workspace_id \
                 AND k.connection_id = j.connection_id AND COALESCE(k.object, '') = COALESCE(j.object, '') \
                 AND k.kind = 'sync' AND k.status IN ('succeeded', 'failed') AND k.finished_at IS NOT NULL \
                 AND (k.finished_at > j.finished_at OR (k.finished_at = j.finished_at AND k.id > j.id))) \
                 ORDER BY j.finished_at DESC LIMIT 1000"
            ))
            .bind(viewer.workspace)
            .bind(viewer.user)
            .fetch_all(&self.pool)
            .await
        }

        async fn list_jobs(&self, viewer: Viewer, provider: &str, object: Option<&str>, status: Option<&str>, limit: i64) -> sqlx::Result<Vec<Job>> {
            sqlx::query_as(concat!(
                job_select!(),
                "WHERE workspace_id = $1 AND provider = $2 AND ($3 IS NULL OR object = $3) AND ($4 IS NULL OR status = $4) AND ",
                crate::visible_connection!("connection_id", "$1", "$6"),
                " ORDER BY created_at DESC, id DESC LIMIT $5"
            ))
            .bind(viewer.workspace)
            .bind(provider)
            .bind(object)
            .bind(status)
            .bind(limit)
            .bind(viewer.user)
            .fetch_all(&self.pool)
            .await
        }

        async fn search_jobs(&self, viewer: Viewer, filter: &JobFilter<'_>, limit: i64) -> sqlx::Result<Vec<Job>> {
            sqlx::query_as(concat!(
                job_select!(),
                "WHERE workspace_id = $1 AND ($2 IS NULL OR provider = $2) AND ($3 IS NULL OR object = $3) \
                 AND ($4 IS NULL OR status = $4) AND ($5 IS NULL OR created_at >= $5) AND ($6 IS NULL OR created_at < $6) AND ",
                crate::visible_connection!("connection_id", "$1", "$8"),
                " ORDER BY created_at DESC, id DESC LIMIT $7"
            ))
            .bind(viewer.workspace)
            .bind(filter.provider)
            .bind(filter.object)
            .bind(filter.status)
            .bind(filter.from)
            .bind(filter.until)
            .bind(limit)
            .bind(viewer.user)
            .fetch_all(&self.pool)
            .await
        }

        async fn last_job_of(&self, workspace: WorkspaceId, connection_id: Uuid, object: &str) -> sqlx::Result<Option<Job>> {
            sqlx::query_as(concat!(
                job_select!(),
                "WHERE workspace_id = $1 AND connection_id = $2 AND object = $3 ORDER BY created_at DESC, id DESC LIMIT 1"
            ))
            .bind(workspace)
            .bind(connection_id)
            .bind(object)
            .fetch_optional(&self.pool)
            .await
        }

        async fn get_visible_job(&self, viewer: Viewer, id: Uuid) -> sqlx::Result<Option<Job>> {
            sqlx::query_as(concat!(
                job_select!(),
                "WHERE workspace_id = $1 AND id = $2 AND ",
                crate::visible_connection!("connection_id", "$1", "$3")
            ))
            .bind(viewer.workspace)
            .bind(id)
            .bind(viewer.user)
            .fetch_optional(&self.pool)
            .await
        }

        async fn find_job(&self, id: Uuid) -> sqlx::Result<Option<Job>> {
            sqlx::query_as(concat!(job_select!(), "WHERE id = $1"))
                .bind(id)
                .fetch_optional(&self.pool)
                .await
        }

        async fn report_job(&self, workspace: WorkspaceId, id: Uuid, report: &JobReport<'_>) -> sqlx::Result<ReportOutcome> {
            let finished = report.status.is_finished();
            // The status guard in the WHERE clause makes the transition
            // atomic: a finished job can't be reopened by a racing report.
            let updated = sqlx::query(
                "UPDATE jobs SET status = $3, summary = COALESCE($4, summary), error = COALESCE($5, error), \
                 metadata = COALESCE($6, metadata), updated_at = $7, \
                 started_at = COALESCE(started_at, $7), finished_at = CASE WHEN $8 THEN $7 ELSE finished_at END \
                 WHERE workspace_id = $1 AND id = $2 AND status IN ('queued', 'running', 'waiting_external')",
            )
            .bind(workspace)
            .bind(id)
            .bind(report.status.as_str())
            .bind(report.summary.map(Json))
            .bind(report.error)
            .bind(report.metadata.map(Json))
            .bind(report.at)
            .bind(finished)
            .execute(&self.pool)
            .await?
            .rows_affected();
            let job: Option<Job> = sqlx::query_as(concat!(job_select!(), "WHERE workspace_id = $1 AND id = $2"))
                .bind(workspace)
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
            Ok(match (updated, job) {
                (_, None) => ReportOutcome::NotFound,
                (0, Some(job)) => ReportOutcome::AlreadyFinished(job.status()),
                (_, Some(job)) => ReportOutcome::Updated(Box::new(job)),
            })
        }
    }
}
