//! SQL for webhook endpoints and deliveries.

use sqlx::types::Json;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{OWNER_KIND, SECRET_FIELD};
use crate::audit::AuditEntry;
use crate::impl_for_backends;
use crate::tenancy::WorkspaceId;
use crate::vault::Place;
use crate::vault::store::SealedField;

pub fn secret_place(workspace: WorkspaceId) -> Place<'static> {
    Place {
        workspace_id: workspace,
        owner_kind: OWNER_KIND,
        owner_id: workspace.0,
        field: SECRET_FIELD,
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Delivery {
    pub id: Uuid,
    pub workspace_id: WorkspaceId,
    pub event: String,
    pub payload: Json<serde_json::Value>,
    pub attempts: i32,
}

#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryRecord {
    pub id: Uuid,
    pub event: String,
    pub attempts: i32,
    #[serde(with = "time::serde::rfc3339::option")]
    pub delivered_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub failed_at: Option<OffsetDateTime>,
    pub last_error: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redelivery {
    Queued,
    /// Still being delivered or retried: nothing to redeliver yet.
    StillPending,
    NotFound,
}

#[async_trait::async_trait]
pub trait WebhookStore {
    async fn set_webhook(
        &self,
        workspace: WorkspaceId,
        url: &str,
        secret: &SealedField,
        audit: &AuditEntry,
    ) -> sqlx::Result<()>;
    async fn get_webhook_url(&self, workspace: WorkspaceId) -> sqlx::Result<Option<String>>;
    async fn delete_webhook(
        &self,
        workspace: WorkspaceId,
        audit: &AuditEntry,
    ) -> sqlx::Result<bool>;
    async fn list_deliveries(
        &self,
        workspace: WorkspaceId,
        limit: i64,
    ) -> sqlx::Result<Vec<DeliveryRecord>>;
    /// Leases due deliveries, oldest first (across workspaces: this is the
    /// delivery loop). A retried event can arrive after a later one, so
    /// payloads carry `occurredAt`.
    async fn claim_due_deliveries(
        &self,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
        limit: i64,
    ) -> sqlx::Result<Vec<Delivery>>;
    async fn mark_delivered(&self, id: Uuid, at: OffsetDateTime) -> sqlx::Result<()>;
    /// Queues a finished (delivered or given-up) delivery again, with the
    /// same id so receivers can tell it is the same event.
    async fn redeliver(
        &self,
        workspace: WorkspaceId,
        id: Uuid,
        audit: &AuditEntry,
    ) -> sqlx::Result<Redelivery>;
    async fn mark_delivery_failed(
        &self,
        id: Uuid,
        attempts: i32,
        next_attempt_at: OffsetDateTime,
        error: &str,
        give_up: bool,
        at: OffsetDateTime,
    ) -> sqlx::Result<()>;
}

impl_for_backends! {
    impl WebhookStore {
        async fn set_webhook(&self, workspace: WorkspaceId, url: &str, secret: &SealedField, audit: &AuditEntry) -> sqlx::Result<()> {
            let mut tx = self.begin_write().await?;
            sqlx::query(
                "INSERT INTO webhook_endpoints (workspace_id, url, created_at, updated_at) VALUES ($1, $2, $3, $3) \
                 ON CONFLICT (workspace_id) DO UPDATE SET url = excluded.url, updated_at = excluded.updated_at",
            )
            .bind(workspace)
            .bind(url)
            .bind(audit.created_at)
            .execute(&mut *tx)
            .await?;
            crate::upsert_sealed!(tx, workspace, OWNER_KIND, workspace.0, std::iter::once(secret), audit.created_at)?;
            crate::insert_audit!(&mut *tx, audit)?;
            tx.commit().await
        }

        async fn get_webhook_url(&self, workspace: WorkspaceId) -> sqlx::Result<Option<String>> {
            sqlx::query_scalar("SELECT url FROM webhook_endpoints WHERE workspace_id = $1")
                .bind(workspace)
                .fetch_optional(&self.pool)
                .await
        }

        async fn delete_webhook(&self, workspace: WorkspaceId, audit: &AuditEntry) -> sqlx::Result<bool> {
            let mut tx = self.begin_write().await?;
            let deleted = sqlx::query("DELETE FROM webhook_endpoints WHERE workspace_id = $1")
                .bind(workspace)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            sqlx::query("DELETE FROM secrets WHERE workspace_id = $1 AND owner_kind = $2 AND owner_id = $3")
                .bind(workspace)
                .bind(OWNER_KIND)
                .bind(workspace.0)
                .execute(&mut *tx)
                .await?;
            if deleted > 0 {
                crate::insert_audit!(&mut *tx, audit)?;
            }
            tx.commit().await?;
            Ok(deleted > 0)
        }

        async fn list_deliveries(&self, workspace: WorkspaceId, limit: i64) -> sqlx::Result<Vec<DeliveryRecord>> {
            sqlx::query_as(
                "SELECT id, event, attempts, delivered_at, failed_at, last_error, created_at FROM webhook_deliveries \
                 WHERE workspace_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2",
            )
            .bind(workspace)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
        }

        async fn claim_due_deliveries(&self, now: OffsetDateTime, lease_until: OffsetDateTime, limit: i64) -> sqlx::Result<Vec<Delivery>> {
            sqlx::query_as(Self::sql(
                "UPDATE webhook_deliveries SET next_attempt_at = $2 WHERE id IN \
                 (SELECT id FROM webhook_deliveries WHERE delivered_at IS NULL AND failed_at IS NULL \
                  AND next_attempt_at <= $1 ORDER BY next_attempt_at, id LIMIT $3 FOR UPDATE SKIP LOCKED) \
                 RETURNING id, workspace_id, event, payload, attempts",
                "UPDATE webhook_deliveries SET next_attempt_at = $2 WHERE id IN \
                 (SELECT id FROM webhook_deliveries WHERE delivered_at IS NULL AND failed_at IS NULL \
                  AND next_attempt_at <= $1 ORDER BY next_attempt_at, id LIMIT $3) \
                 RETURNING id, workspace_id, event, payload, attempts",
            ))
            .bind(now)
            .bind(lease_until)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
        }

        async fn redeliver(&self, workspace: WorkspaceId, id: Uuid, audit: &AuditEntry) -> sqlx::Result<Redelivery> {
            let mut tx = self.begin_write().await?;
            let queued = sqlx::query(
                "UPDATE webhook_deliveries SET attempts = 0, next_attempt_at = $3, delivered_at = NULL, \
                 failed_at = NULL, last_error = NULL \
                 WHERE workspace_id = $1 AND id = $2 AND (delivered_at IS NOT NULL OR failed_at IS NOT NULL)",
            )
            .bind(workspace)
            .bind(id)
            .bind(audit.created_at)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if queued == 0 {
                let exists: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM webhook_deliveries WHERE workspace_id = $1 AND id = $2",
                )
                .bind(workspace)
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
                return Ok(if exists > 0 { Redelivery::StillPending } else { Redelivery::NotFound });
            }
            crate::insert_audit!(&mut *tx, audit)?;
            tx.commit().await?;
            Ok(Redelivery::Queued)
        }

        async fn mark_delivered(&self, id: Uuid, at: OffsetDateTime) -> sqlx::Result<()> {
            sqlx::query("UPDATE webhook_deliveries SET delivered_at = $2, attempts = attempts + 1, last_error = NULL WHERE id = $1")
                .bind(id)
                .bind(at)
                .execute(&self.pool)
                .await
                .map(|_| ())
        }

        async fn mark_delivery_failed(&self, id: Uuid, attempts: i32, next_attempt_at: OffsetDateTime, error: &str, give_up: bool, at: OffsetDateTime) -> sqlx::Result<()> {
            sqlx::query(
                "UPDATE webhook_deliveries SET attempts = $2, next_attempt_at = $3, last_error = $4, \
                 failed_at = CASE WHEN $5 THEN $6 ELSE NULL END WHERE id = $1",
            )
            .bind(id)
            .bind(attempts)
            .bind(next_attempt_at)
            .bind(error)
            .bind(give_up)
            .bind(at)
            .execute(&self.pool)
            .await
            .map(|_| ())
        }
    }
}
