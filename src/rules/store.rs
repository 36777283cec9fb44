//! SQL for sync rules: CRUD with an atomically bumped revision, and the
//! planner's claim of due rules.

use serde_json::Value;
use sqlx::types::Json;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::audit::AuditEntry;
use crate::impl_for_backends;
use crate::tenancy::WorkspaceId;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredRule {
    pub id: Uuid,
    pub workspace_id: WorkspaceId,
    pub connection_id: Uuid,
    pub provider: String,
    pub object: String,
    pub rule: Json<Value>,
    pub revision: i32,
    pub next_run_at: Option<OffsetDateTime>,
    pub last_planned_at: Option<OffsetDateTime>,
    pub created_by: Option<Uuid>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

pub struct RuleSave<'a> {
    pub workspace_id: WorkspaceId,
    pub connection_id: Uuid,
    pub provider: &'a str,
    pub object: &'a str,
    pub rule: &'a Value,
    /// Save only over this revision (409 otherwise); `None`: last write wins.
    pub expected_revision: Option<i32>,
    pub next_run_at: Option<OffsetDateTime>,
    pub actor: Uuid,
    pub at: OffsetDateTime,
}

#[derive(Debug, Clone)]
pub enum SaveOutcome {
    Saved {
        rule: Box<StoredRule>,
        created: bool,
    },
    /// The expected revision wasn't the stored one (`None`: no rule yet).
    RevisionMismatch { current: Option<i32> },
}

/// A due rule as the planner sees it inside the claim.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DueRule {
    pub id: Uuid,
    pub workspace_id: WorkspaceId,
    pub connection_id: Uuid,
    pub provider: String,
    pub object: String,
    pub rule: Json<Value>,
    pub revision: i32,
    /// The slot being claimed.
    pub next_run_at: OffsetDateTime,
    pub connection_status: String,
    /// No sync state yet for the connection's object: nothing was synced.
    pub first_run: bool,
}

/// The planner's decision for one due rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// `None` parks the rule until it is saved again.
    pub next_run_at: Option<OffsetDateTime>,
    /// A high-water mark to set if the object has none yet.
    pub seed_mark: Option<String>,
    pub enqueue: bool,
}

impl Claim {
    pub fn skip(next_run_at: Option<OffsetDateTime>) -> Self {
        Claim {
            next_run_at,
            seed_mark: None,
            enqueue: false,
        }
    }
}

pub type Decide<'a> = &'a (dyn Fn(&DueRule) -> Claim + Send + Sync);

#[async_trait::async_trait]
pub trait RuleStore {
    async fn list_rules(
        &self,
        workspace: WorkspaceId,
        provider: &str,
        object: &str,
    ) -> sqlx::Result<Vec<StoredRule>>;
    async fn get_rule(
        &self,
        workspace: WorkspaceId,
        connection_id: Uuid,
        object: &str,
    ) -> sqlx::Result<Option<StoredRule>>;
    /// Creates or replaces the rule and writes `audit` (its target and
    /// revision filled in) in the same transaction.
    async fn save_rule(&self, save: &RuleSave<'_>, audit: &AuditEntry)
    -> sqlx::Result<SaveOutcome>;
    async fn delete_rule(
        &self,
        workspace: WorkspaceId,
        connection_id: Uuid,
        object: &str,
        audit: &AuditEntry,
    ) -> sqlx::Result<bool>;
    /// Across workspaces (this is the planner): takes up to `limit` rules
    /// due at `now`, applies `decide` to each — new next run, optional seed
    /// of the high-water mark — and commits, all in one transaction that
    /// no other planner can share a rule with.
    async fn claim_due_rules(
        &self,
        now: OffsetDateTime,
        limit: i64,
        decide: Decide<'_>,
    ) -> sqlx::Result<Vec<(DueRule, Claim)>>;
}

macro_rules! rule_columns {
    () => {
        "id, workspace_id, connection_id, provider, object, rule, revision, next_run_at, last_planned_at, \
         created_by, created_at, updated_at"
    };
}

fn audited(audit: &AuditEntry, rule: &StoredRule) -> AuditEntry {
    let mut entry = audit.clone().target("sync_rule", rule.id);
    if let Value::Object(details) = &mut entry.details {
        details.insert("revision".into(), rule.revision.into());
    }
    entry
}

impl_for_backends! {
    impl RuleStore {
        async fn list_rules(&self, workspace: WorkspaceId, provider: &str, object: &str) -> sqlx::Result<Vec<StoredRule>> {
            sqlx::query_as(concat!(
                "SELECT ", rule_columns!(), " FROM sync_rules \
                 WHERE workspace_id = $1 AND provider = $2 AND object = $3 ORDER BY created_at, id"
            ))
            .bind(workspace)
            .bind(provider)
            .bind(object)
            .fetch_all(&self.pool)
            .await
        }

        async fn get_rule(&self, workspace: WorkspaceId, connection_id: Uuid, object: &str) -> sqlx::Result<Option<StoredRule>> {
            sqlx::query_as(concat!(
                "SELECT ", rule_columns!(), " FROM sync_rules WHERE workspace_id = $1 AND connection_id = $2 AND object = $3"
            ))
            .bind(workspace)
            .bind(connection_id)
            .bind(object)
            .fetch_optional(&self.pool)
            .await
        }

        async fn save_rule(&self, s: &RuleSave<'_>, audit: &AuditEntry) -> sqlx::Result<SaveOutcome> {
            let mut tx = self.begin_write().await?;
            // The revision moves inside the statement: concurrent saves
            // serialise on the row and each gets its own, higher revision.
            let saved: Option<StoredRule> = match s.expected_revision {
                Some(expected) => sqlx::query_as(concat!(
                    "UPDATE sync_rules SET rule = $4, revision = revision + 1, next_run_at = $5, updated_at = $6 \
                     WHERE workspace_id = $1 AND connection_id = $2 AND object = $3 AND revision = $7 RETURNING ",
                    rule_columns!()
                ))
                .bind(s.workspace_id)
                .bind(s.connection_id)
                .bind(s.object)
                .bind(Json(s.rule))
                .bind(s.next_run_at)
                .bind(s.at)
                .bind(expected)
                .fetch_optional(&mut *tx)
                .await?,
                None => sqlx::query_as(concat!(
                    "INSERT INTO sync_rules (id, workspace_id, connection_id, provider, object, rule, revision, \
                     next_run_at, created_by, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $8, $9, $9) \
                     ON CONFLICT (connection_id, object) DO UPDATE SET rule = excluded.rule, \
                     revision = sync_rules.revision + 1, next_run_at = excluded.next_run_at, updated_at = excluded.updated_at \
                     WHERE sync_rules.workspace_id = excluded.workspace_id RETURNING ",
                    rule_columns!()
                ))
                .bind(Uuid::now_v7())
                .bind(s.workspace_id)
                .bind(s.connection_id)
                .bind(s.provider)
                .bind(s.object)
                .bind(Json(s.rule))
                .bind(s.next_run_at)
                .bind(s.actor)
                .bind(s.at)
                .fetch_optional(&mut *tx)
                .await?,
            };
            let Some(rule) = saved else {
                let current: Option<i32> = sqlx::query_scalar(
                    "SELECT revision FROM sync_rules WHERE workspace_id = $1 AND connection_id = $2 AND object = $3",
                )
                .bind(s.workspace_id)
                .bind(s.connection_id)
                .bind(s.object)
                .fetch_optional(&mut *tx)
                .await?;
                return Ok(SaveOutcome::RevisionMismatch { current });
            };
            crate::insert_audit!(&mut *tx, &audited(audit, &rule))?;
            tx.commit().await?;
            let created = rule.revision == 1;
            Ok(SaveOutcome::Saved { rule: Box::new(rule), created })
        }

        async fn delete_rule(&self, workspace: WorkspaceId, connection_id: Uuid, object: &str, audit: &AuditEntry) -> sqlx::Result<bool> {
            let mut tx = self.begin_write().await?;
            let deleted: Option<StoredRule> = sqlx::query_as(concat!(
                "DELETE FROM sync_rules WHERE workspace_id = $1 AND connection_id = $2 AND object = $3 RETURNING ",
                rule_columns!()
            ))
            .bind(workspace)
            .bind(connection_id)
            .bind(object)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(rule) = deleted else {
                return Ok(false);
            };
            crate::insert_audit!(&mut *tx, &audited(audit, &rule))?;
            tx.commit().await?;
            Ok(true)
        }

        async fn claim_due_rules(&self, now: OffsetDateTime, limit: i64, decide: Decide<'_>) -> sqlx::Result<Vec<(DueRule, Claim)>> {
            let mut tx = self.begin_write().await?;
            // PostgreSQL: rows another planner holds are skipped, and a row it
            // committed meanwhile is re-checked against `next_run_at <= $1`.
            // SQLite: BEGIN IMMEDIATE already made this the only writer.
            let due: Vec<DueRule> = sqlx::query_as(Self::sql(
                "SELECT r.id, r.workspace_id, r.connection_id, r.provider, r.object, r.rule, r.revision, r.next_run_at, \
                 c.status AS connection_status, \
                 NOT EXISTS (SELECT 1 FROM sync_state s WHERE s.connection_id = r.connection_id AND s.object = r.object) AS first_run \
                 FROM sync_rules r JOIN connections c ON c.id = r.connection_id AND c.workspace_id = r.workspace_id \
                 WHERE r.next_run_at IS NOT NULL AND r.next_run_at <= $1 \
                 ORDER BY r.next_run_at, r.id LIMIT $2 FOR UPDATE OF r SKIP LOCKED",
                "SELECT r.id, r.workspace_id, r.connection_id, r.provider, r.object, r.rule, r.revision, r.next_run_at, \
                 c.status AS connection_status, \
                 NOT EXISTS (SELECT 1 FROM sync_state s WHERE s.connection_id = r.connection_id AND s.object = r.object) AS first_run \
                 FROM sync_rules r JOIN connections c ON c.id = r.connection_id AND c.workspace_id = r.workspace_id \
                 WHERE r.next_run_at IS NOT NULL AND r.next_run_at <= $1 \
                 ORDER BY r.next_run_at, r.id LIMIT $2",
            ))
            .bind(now)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
            let mut claimed = Vec::with_capacity(due.len());
            for rule in due {
                let claim = decide(&rule);
                // The slot guard makes a claim count once even if a row slipped
                // past the lock.
                let moved = sqlx::query(
                    "UPDATE sync_rules SET next_run_at = $3, last_planned_at = $4 \
                     WHERE workspace_id = $1 AND id = $2 AND next_run_at = $5",
                )
                .bind(rule.workspace_id)
                .bind(rule.id)
                .bind(claim.next_run_at)
                .bind(now)
                .bind(rule.next_run_at)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if moved == 0 {
                    continue;
                }
                if let Some(mark) = &claim.seed_mark {
                    // Only where there is no mark yet: never moves an existing one.
                    sqlx::query(
                        "INSERT INTO sync_state (workspace_id, connection_id, object, high_water_mark, updated_at) \
                         VALUES ($1, $2, $3, $4, $5) \
                         ON CONFLICT (connection_id, object) DO UPDATE SET high_water_mark = excluded.high_water_mark, \
                         updated_at = excluded.updated_at \
                         WHERE sync_state.high_water_mark IS NULL AND sync_state.workspace_id = excluded.workspace_id",
                    )
                    .bind(rule.workspace_id)
                    .bind(rule.connection_id)
                    .bind(&rule.object)
                    .bind(mark)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
                claimed.push((rule, claim));
            }
            tx.commit().await?;
            Ok(claimed)
        }
    }
}
