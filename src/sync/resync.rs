//! Post-restore resync. After the database comes back from a backup,
//! `plugboard restore mark` flags every connection's objects
//! `resync_required` and checks each connection's grant; admins then choose
//! in Sync controls what to read again and from when. The resync resets the
//! high-water marks the way a rule's `initialSyncMode` seeds them, queues
//! one-off jobs and clears the flags, in one transaction.

use serde::Serialize;
use serde_json::Value;
use sqlx::types::Json;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::app::AppState;
use crate::audit::AuditEntry;
use crate::connections::store::Change;
use crate::connections::{Connection, ConnectionEvent, Status};
use crate::error::{AppError, AppResult};
use crate::impl_for_backends;
use crate::jobs::JobStatus;
use crate::rules::format_mark;
use crate::storage::now;
use crate::tenancy::{Tenant, WorkspaceId};

/// One flagged object of a connection.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ResyncFlag {
    pub connection_id: Uuid,
    pub object: String,
    pub backup_taken_at: OffsetDateTime,
    pub marked_at: OffsetDateTime,
}

/// An object the wizard resyncs, and where its delta reads resume
/// (`None`: everything is read again, as `initialSyncMode: full_once`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResyncChoice {
    pub object: String,
    /// A canonical high-water mark (`YYYY-MM-DDTHH:MM:SSZ`).
    pub resume_from: Option<String>,
}

/// A one-off resync job to insert with its object's reset.
pub struct ResyncJob {
    pub id: Uuid,
    pub object: String,
    pub resume_from: Option<String>,
    pub metadata: Value,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResyncOutcome {
    Queued(Vec<Uuid>),
    /// A sync of this object is queued or running: nothing was changed.
    Busy(String),
}

#[async_trait::async_trait]
pub trait ResyncStore {
    /// System lookup for the restore command: every connection, of every
    /// workspace.
    async fn all_connection_ids(&self) -> sqlx::Result<Vec<(WorkspaceId, Uuid)>>;
    /// Flags `objects` of each connection (an existing flag keeps its
    /// first marking) and writes `audits`, in one transaction.
    async fn mark_resync_required(
        &self,
        rows: &[(WorkspaceId, Uuid, Vec<String>)],
        backup_taken_at: OffsetDateTime,
        at: OffsetDateTime,
        audits: &[AuditEntry],
    ) -> sqlx::Result<u64>;
    async fn resync_flags(
        &self,
        workspace: WorkspaceId,
        connection_id: Uuid,
    ) -> sqlx::Result<Vec<ResyncFlag>>;
    /// Resets each job's object mark, queues the jobs, clears every flag of
    /// the connection and writes `audit`, all in one transaction.
    async fn apply_resync(
        &self,
        workspace: WorkspaceId,
        connection: &Connection,
        jobs: &[ResyncJob],
        requested_by: Uuid,
        audit: &AuditEntry,
    ) -> sqlx::Result<ResyncOutcome>;
}

impl_for_backends! {
    impl ResyncStore {
        async fn all_connection_ids(&self) -> sqlx::Result<Vec<(WorkspaceId, Uuid)>> {
            sqlx::query_as("SELECT workspace_id, id FROM connections ORDER BY workspace_id, provider, created_at, id")
                .fetch_all(&self.pool)
                .await
        }

        async fn mark_resync_required(&self, rows: &[(WorkspaceId, Uuid, Vec<String>)], backup_taken_at: OffsetDateTime, at: OffsetDateTime, audits: &[AuditEntry]) -> sqlx::Result<u64> {
            let mut tx = self.begin_write().await?;
            let mut marked = 0u64;
            for (workspace, connection_id, objects) in rows {
                for object in objects {
                    marked += sqlx::query(
                        "INSERT INTO resync_required (workspace_id, connection_id, object, backup_taken_at, marked_at) \
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (connection_id, object) DO NOTHING",
                    )
                    .bind(workspace)
                    .bind(connection_id)
                    .bind(object)
                    .bind(backup_taken_at)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                }
            }
            for audit in audits {
                crate::insert_audit!(&mut *tx, audit)?;
            }
            tx.commit().await?;
            Ok(marked)
        }

        async fn resync_flags(&self, workspace: WorkspaceId, connection_id: Uuid) -> sqlx::Result<Vec<ResyncFlag>> {
            sqlx::query_as(
                "SELECT connection_id, object, backup_taken_at, marked_at FROM resync_required \
                 WHERE workspace_id = $1 AND connection_id = $2 ORDER BY object",
            )
            .bind(workspace)
            .bind(connection_id)
            .fetch_all(&self.pool)
            .await
        }

        async fn apply_resync(&self, workspace: WorkspaceId, connection: &Connection, jobs: &[ResyncJob], requested_by: Uuid, audit: &AuditEntry) -> sqlx::Result<ResyncOutcome> {
            let mut tx = self.begin_write().await?;
            let at = crate::storage::now();
            for job in jobs {
                // Checked first: inserting over an active job would abort
                // the PostgreSQL transaction on the unique index.
                let active: Option<Uuid> = sqlx::query_scalar(
                    "SELECT id FROM jobs WHERE workspace_id = $1 AND connection_id = $2 AND object = $3 \
                     AND status IN ('queued', 'running', 'waiting_external')",
                )
                .bind(workspace)
                .bind(connection.id)
                .bind(&job.object)
                .fetch_optional(&mut *tx)
                .await?;
                if active.is_some() {
                    return Ok(ResyncOutcome::Busy(job.object.clone()));
                }
                // As initialSyncMode does on a first run: a resume date is
                // the mark delta reads start from; none reads everything.
                sqlx::query(
                    "INSERT INTO sync_state (workspace_id, connection_id, object, high_water_mark, updated_at) \
                     VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (connection_id, object) DO UPDATE SET high_water_mark = excluded.high_water_mark, \
                     updated_at = excluded.updated_at WHERE sync_state.workspace_id = excluded.workspace_id",
                )
                .bind(workspace)
                .bind(connection.id)
                .bind(&job.object)
                .bind(job.resume_from.as_deref())
                .bind(at)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO jobs (id, workspace_id, connection_id, provider, object, kind, status, idempotency_key, \
                     metadata, requested_by, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 'sync', $6, NULL, $7, $8, $9, $9)",
                )
                .bind(job.id)
                .bind(workspace)
                .bind(connection.id)
                .bind(&connection.provider)
                .bind(&job.object)
                .bind(JobStatus::Queued.as_str())
                .bind(Json(&job.metadata))
                .bind(requested_by)
                .bind(at)
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query("DELETE FROM resync_required WHERE workspace_id = $1 AND connection_id = $2")
                .bind(workspace)
                .bind(connection.id)
                .execute(&mut *tx)
                .await?;
            crate::insert_audit!(&mut *tx, audit)?;
            tx.commit().await?;
            Ok(ResyncOutcome::Queued(jobs.iter().map(|j| j.id).collect()))
        }
    }
}

// ---- restore mark (the CLI) ---------------------------------------------

/// What verifying one connection found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The refresh (or test call) worked: stays connected.
    Verified,
    /// The provider refused the grant: now needs_reauth.
    NeedsReauth(String),
    /// The provider couldn't be reached: unchanged, check again later.
    Unverified(String),
    /// Disabled or already needing a reconnect: not called.
    Skipped(String),
}

#[derive(Debug, Clone)]
pub struct VerifiedConnection {
    pub workspace_id: WorkspaceId,
    pub connection_id: Uuid,
    pub provider: String,
    pub environment: String,
    pub verdict: Verdict,
}

#[derive(Debug, Clone, Default)]
pub struct RestoreSummary {
    pub objects_marked: u64,
    pub connections: Vec<VerifiedConnection>,
}

impl RestoreSummary {
    pub fn count(&self, f: fn(&Verdict) -> bool) -> usize {
        self.connections.iter().filter(|c| f(&c.verdict)).count()
    }
}

impl std::fmt::Display for RestoreSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for c in &self.connections {
            let (word, why) = match &c.verdict {
                Verdict::Verified => ("connected", ""),
                Verdict::NeedsReauth(m) => ("needs_reauth", m.as_str()),
                Verdict::Unverified(m) => ("unverified", m.as_str()),
                Verdict::Skipped(m) => ("skipped", m.as_str()),
            };
            let sep = if why.is_empty() { "" } else { ": " };
            writeln!(
                f,
                "{} {} ({}) workspace {}: {word}{sep}{why}",
                c.connection_id, c.provider, c.environment, c.workspace_id
            )?;
        }
        write!(
            f,
            "restore mark: {} objects of {} connections marked resync_required; \
             {} connected, {} needs_reauth, {} unverified, {} skipped",
            self.objects_marked,
            self.connections.len(),
            self.count(|v| matches!(v, Verdict::Verified)),
            self.count(|v| matches!(v, Verdict::NeedsReauth(_))),
            self.count(|v| matches!(v, Verdict::Unverified(_))),
            self.count(|v| matches!(v, Verdict::Skipped(_))),
        )
    }
}

/// After a restore from a backup taken at `backup_taken_at`: flags every
/// connection's catalog objects `resync_required`, then verifies each
/// connection once. Refresh tokens rotated since the backup are dead at
/// the provider; those connections become needs_reauth.
pub async fn mark_after_restore(
    state: &AppState,
    backup_taken_at: OffsetDateTime,
) -> anyhow::Result<RestoreSummary> {
    let mut connections = Vec::new();
    for (workspace, id) in state.store.all_connection_ids().await? {
        if let Some(c) = state.store.get_connection(workspace, id).await? {
            connections.push(c);
        }
    }
    let rows: Vec<(WorkspaceId, Uuid, Vec<String>)> = connections
        .iter()
        .map(|c| (c.workspace_id, c.id, catalog_objects(state, &c.provider)))
        .collect();
    let audits = mark_audits(&rows, backup_taken_at);
    let objects_marked = state
        .store
        .mark_resync_required(&rows, backup_taken_at, now(), &audits)
        .await?;
    let mut summary = RestoreSummary {
        objects_marked,
        connections: Vec::new(),
    };
    for c in connections {
        let verdict = verify(state, &c).await?;
        summary.connections.push(VerifiedConnection {
            workspace_id: c.workspace_id,
            connection_id: c.id,
            provider: c.provider.clone(),
            environment: c.environment.clone(),
            verdict,
        });
    }
    Ok(summary)
}

fn catalog_objects(state: &AppState, provider: &str) -> Vec<String> {
    state
        .providers
        .get(provider)
        .map(|p| p.meta.objects.iter().map(|o| o.key.clone()).collect())
        .unwrap_or_default()
}

/// One `restore.mark` entry per workspace, by the operator (no user).
fn mark_audits(
    rows: &[(WorkspaceId, Uuid, Vec<String>)],
    backup_taken_at: OffsetDateTime,
) -> Vec<AuditEntry> {
    let mut workspaces: Vec<WorkspaceId> = Vec::new();
    for r in rows {
        if !workspaces.contains(&r.0) {
            workspaces.push(r.0);
        }
    }
    workspaces
        .into_iter()
        .map(|ws| {
            let connections: Vec<String> = rows
                .iter()
                .filter(|r| r.0 == ws)
                .map(|r| r.1.to_string())
                .collect();
            AuditEntry::new(Some(ws), None, "restore.mark").details(serde_json::json!({
                "backupTakenAt": format_mark(backup_taken_at),
                "connections": connections,
            }))
        })
        .collect()
}

/// One refresh where the connection can refresh (client credentials or a
/// refresh token), else one test call.
async fn verify(state: &AppState, c: &Connection) -> anyhow::Result<Verdict> {
    if !c.status().usable() {
        return Ok(Verdict::Skipped(format!(
            "status {}",
            c.status().as_str().to_lowercase()
        )));
    }
    let refreshable = c.flow == "client_credentials" || c.has_refresh_token;
    let failure = if refreshable {
        match crate::connections::tokens::refresh(state, c, true).await {
            Ok(_) => return Ok(Verdict::Verified),
            Err(e) => e,
        }
    } else {
        match test_call(state, c).await {
            Ok(None) => return Ok(Verdict::Verified),
            Ok(Some(refused)) => AppError::Conflict {
                field: None,
                message: refused,
            },
            Err(e) => e,
        }
    };
    let message = crate::input::excerpt(&failure.to_string(), 240);
    // A provider that can't be reached says nothing about the grant.
    let current = state.store.get_connection(c.workspace_id, c.id).await?;
    let still_fine = current
        .as_ref()
        .is_some_and(|c| c.status() == Status::Connected);
    if matches!(failure, AppError::Unavailable(_)) && still_fine {
        return Ok(Verdict::Unverified(message));
    }
    let current = current.unwrap_or_else(|| c.clone());
    if current.status() != Status::NeedsReauth {
        set_needs_reauth(state, &current, &message).await?;
    }
    Ok(Verdict::NeedsReauth(message))
}

/// `None` when the provider accepted the token; `Some(reason)` when it
/// refused it.
async fn test_call(state: &AppState, c: &Connection) -> AppResult<Option<String>> {
    let provider = crate::connections::tokens::provider_of(state, c)?;
    let Some(url) = crate::connections::service::test_url(state, provider, c) else {
        // Nothing to call: tokens are present, nothing says they are dead.
        return Ok(None);
    };
    let r = crate::connections::tokens::provider_get(state, c, &url).await?;
    Ok(match r.status {
        200..=299 => None,
        401 | 403 => Some(format!(
            "the provider refused the token (HTTP {})",
            r.status
        )),
        s => {
            return Err(AppError::Unavailable(format!(
                "the provider answered HTTP {s}"
            )));
        }
    })
}

async fn set_needs_reauth(state: &AppState, c: &Connection, message: &str) -> anyhow::Result<()> {
    let reason = format!("restore verification failed: {message}");
    let audit = AuditEntry::new(Some(c.workspace_id), None, "connection.needs_reauth")
        .target("connection", c.id)
        .details(serde_json::json!({ "provider": c.provider, "reason": reason }));
    let event = ConnectionEvent::new("needs_reauth", c, Status::NeedsReauth, Some(reason.clone()));
    state
        .store
        .set_connection_status(
            c.workspace_id,
            c.id,
            Status::NeedsReauth,
            Some(&reason),
            Change::new(Some(&audit), Some(&event)),
        )
        .await?;
    Ok(())
}

// ---- the wizard (Sync controls) -----------------------------------------

/// The flags of one connection the admin may manage.
pub async fn flags(
    state: &AppState,
    tenant: &Tenant,
    c: &Connection,
) -> AppResult<Vec<ResyncFlag>> {
    tenant.require_admin("resync after a restore")?;
    Ok(state.store.resync_flags(tenant.workspace_id, c.id).await?)
}

/// Queues a one-off resync of each chosen object of `c`, from its resume
/// mark or from scratch, and clears the connection's flags.
pub async fn resync(
    state: &AppState,
    tenant: &Tenant,
    c: &Connection,
    choices: &[ResyncChoice],
) -> AppResult<Vec<Uuid>> {
    let flagged = flags(state, tenant, c).await?;
    let Some(backup_taken_at) = flagged.iter().map(|f| f.backup_taken_at).max() else {
        return Err(AppError::conflict(
            "resync",
            "this connection has no resync pending",
        ));
    };
    if choices.is_empty() {
        return Err(AppError::validation(
            "objects",
            "choose at least one object to resync",
        ));
    }
    let provider = crate::connections::tokens::provider_of(state, c)?;
    if let Some(bad) = choices
        .iter()
        .find(|ch| provider.object(&ch.object).is_none())
    {
        return Err(AppError::validation(
            "objects",
            format!("{} has no object {:?}", provider.meta.key, bad.object),
        ));
    }
    if !c.status().usable() {
        return Err(crate::connections::tokens::unusable(c));
    }
    super::service::require_ready(state, Some(&c.provider)).await?;
    let mut jobs = Vec::with_capacity(choices.len());
    for ch in choices {
        let rule = state
            .store
            .get_rule(tenant.workspace_id, c.id, &ch.object)
            .await?;
        jobs.push(ResyncJob {
            id: Uuid::now_v7(),
            object: ch.object.clone(),
            resume_from: ch.resume_from.clone(),
            metadata: resync_metadata(rule.as_ref(), ch, backup_taken_at),
        });
    }
    let audit = AuditEntry::new(
        Some(tenant.workspace_id),
        Some(tenant.user_id),
        "sync.resync",
    )
    .target("connection", c.id)
    .details(serde_json::json!({
        "provider": c.provider,
        "backupTakenAt": format_mark(backup_taken_at),
        "objects": choices.iter().map(|ch| serde_json::json!({
            "object": ch.object,
            "resumeFrom": ch.resume_from,
        })).collect::<Vec<_>>(),
    }));
    match state
        .store
        .apply_resync(tenant.workspace_id, c, &jobs, tenant.user_id, &audit)
        .await?
    {
        ResyncOutcome::Queued(ids) => Ok(ids),
        ResyncOutcome::Busy(object) => Err(AppError::conflict(
            "objects",
            format!(
                "a sync of {object} is queued or running: let it finish or cancel it, then resync"
            ),
        )),
    }
}

/// The job's metadata: the object's rule, if any, with its initial mode
/// replaced by the resync's (a resume date reads deltas after it; none
/// reads everything), plus what the resync was.
fn resync_metadata(
    rule: Option<&crate::rules::store::StoredRule>,
    ch: &ResyncChoice,
    backup_taken_at: OffsetDateTime,
) -> Value {
    let mut metadata = match rule {
        Some(r) => crate::rules::planner::rule_metadata(r.id, r.revision, &r.rule.0),
        None => serde_json::json!({}),
    };
    if let Some(rule) = metadata.get_mut("rule").and_then(Value::as_object_mut) {
        let (mode, since) = match &ch.resume_from {
            Some(mark) => ("delta_only_after_date", Value::from(mark.clone())),
            None => ("full_once", Value::Null),
        };
        rule.insert("initialSyncMode".into(), Value::from(mode));
        rule.insert("initialSyncSince".into(), since);
    }
    if let Some(m) = metadata.as_object_mut() {
        m.insert(
            "resync".into(),
            serde_json::json!({
                "backupTakenAt": format_mark(backup_taken_at),
                "resumeFrom": ch.resume_from,
            }),
        );
    }
    metadata
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn resync_metadata_replaces_the_initial_mode() {
        let at = datetime!(2026-12-01 10:00 UTC);
        let full = resync_metadata(
            None,
            &ResyncChoice {
                object: "projects".into(),
                resume_from: None,
            },
            at,
        );
        assert!(full.get("rule").is_none());
        assert_eq!(full["resync"]["backupTakenAt"], "2026-12-01T10:00:00Z");
        assert_eq!(full["resync"]["resumeFrom"], Value::Null);
    }
}
