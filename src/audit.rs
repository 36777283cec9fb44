//! Audit log: who did what to which resource, per workspace. Never secrets.
//!
//! Entries that record a change are written in the same transaction as the
//! change (see [`insert_audit!`]), so the log can't claim what didn't happen
//! or miss what did.

use serde::Serialize;
use sqlx::types::Json;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::impl_for_backends;
use crate::tenancy::WorkspaceId;

#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub id: Uuid,
    pub workspace_id: Option<WorkspaceId>,
    pub actor_user_id: Option<Uuid>,
    pub action: &'static str,
    pub target_type: Option<&'static str>,
    pub target_id: Option<String>,
    pub details: serde_json::Value,
    pub created_at: OffsetDateTime,
}

impl AuditEntry {
    pub fn new(
        workspace_id: Option<WorkspaceId>,
        actor: Option<Uuid>,
        action: &'static str,
    ) -> Self {
        Self {
            id: Uuid::now_v7(),
            workspace_id,
            actor_user_id: actor,
            action,
            target_type: None,
            target_id: None,
            details: serde_json::Value::Object(Default::default()),
            created_at: crate::storage::now(),
        }
    }

    pub fn target(mut self, kind: &'static str, id: impl ToString) -> Self {
        self.target_type = Some(kind);
        self.target_id = Some(id.to_string());
        self
    }

    pub fn details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    pub id: Uuid,
    pub actor_user_id: Option<Uuid>,
    pub action: String,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    #[schema(value_type = Object)]
    pub details: Json<serde_json::Value>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

pub(crate) const INSERT_AUDIT_SQL: &str = "INSERT INTO audit_log \
     (id, workspace_id, actor_user_id, action, target_type, target_id, details, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

/// Writes an [`AuditEntry`] on the given executor (usually a transaction).
#[macro_export]
macro_rules! insert_audit {
    ($executor:expr, $entry:expr) => {{
        let entry: &$crate::audit::AuditEntry = $entry;
        sqlx::query($crate::audit::INSERT_AUDIT_SQL)
            .bind(entry.id)
            .bind(entry.workspace_id)
            .bind(entry.actor_user_id)
            .bind(entry.action)
            .bind(entry.target_type)
            .bind(entry.target_id.as_deref())
            .bind(sqlx::types::Json(&entry.details))
            .bind(entry.created_at)
            .execute($executor)
            .await
    }};
}

#[async_trait::async_trait]
pub trait AuditStore {
    async fn record_audit(&self, entry: &AuditEntry) -> sqlx::Result<()>;
    async fn list_audit(
        &self,
        workspace: WorkspaceId,
        limit: i64,
    ) -> sqlx::Result<Vec<AuditRecord>>;
    /// One page of the workspace's entries matching `filter`, newest
    /// first, and how many match in all.
    async fn search_audit(
        &self,
        workspace: WorkspaceId,
        filter: &AuditFilter<'_>,
        limit: i64,
        offset: i64,
    ) -> sqlx::Result<(Vec<AuditRecord>, i64)>;
    /// The actions the workspace's log holds (for the filter's choices).
    async fn audit_actions(&self, workspace: WorkspaceId) -> sqlx::Result<Vec<String>>;
}

/// What the audit page filters by; `None` matches everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct AuditFilter<'a> {
    pub actor: Option<Uuid>,
    pub action: Option<&'a str>,
    /// Inclusive.
    pub from: Option<OffsetDateTime>,
    /// Exclusive.
    pub until: Option<OffsetDateTime>,
}

const AUDIT_WHERE: &str = "workspace_id = $1 AND ($2 IS NULL OR actor_user_id = $2) \
     AND ($3 IS NULL OR action = $3) AND ($4 IS NULL OR created_at >= $4) \
     AND ($5 IS NULL OR created_at < $5)";

impl_for_backends! {
    impl AuditStore {
        async fn record_audit(&self, entry: &AuditEntry) -> sqlx::Result<()> {
            crate::insert_audit!(&self.pool, entry).map(|_| ())
        }

        async fn list_audit(&self, workspace: WorkspaceId, limit: i64) -> sqlx::Result<Vec<AuditRecord>> {
            sqlx::query_as(
                "SELECT id, actor_user_id, action, target_type, target_id, details, created_at \
                 FROM audit_log WHERE workspace_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2",
            )
            .bind(workspace)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
        }

        async fn search_audit(&self, workspace: WorkspaceId, filter: &AuditFilter<'_>, limit: i64, offset: i64) -> sqlx::Result<(Vec<AuditRecord>, i64)> {
            let rows = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT id, actor_user_id, action, target_type, target_id, details, created_at \
                 FROM audit_log WHERE {AUDIT_WHERE} ORDER BY created_at DESC, id DESC LIMIT $6 OFFSET $7",
            )))
            .bind(workspace)
            .bind(filter.actor)
            .bind(filter.action)
            .bind(filter.from)
            .bind(filter.until)
            .bind(limit)
            .bind(offset)
            .fetch_all(&self.pool)
            .await?;
            let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM audit_log WHERE {AUDIT_WHERE}")))
                .bind(workspace)
                .bind(filter.actor)
                .bind(filter.action)
                .bind(filter.from)
                .bind(filter.until)
                .fetch_one(&self.pool)
                .await?;
            Ok((rows, total))
        }

        async fn audit_actions(&self, workspace: WorkspaceId) -> sqlx::Result<Vec<String>> {
            sqlx::query_scalar("SELECT DISTINCT action FROM audit_log WHERE workspace_id = $1 ORDER BY action")
                .bind(workspace)
                .fetch_all(&self.pool)
                .await
        }
    }
}
