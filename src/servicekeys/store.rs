//! SQL for service keys.

use serde::Serialize;
use sqlx::types::Json;
use time::OffsetDateTime;
use uuid::Uuid;

use super::Scope;
use crate::audit::AuditEntry;
use crate::impl_for_backends;
use crate::tenancy::WorkspaceId;

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceKeyRecord {
    pub id: Uuid,
    pub name: String,
    pub prefix: String,
    #[schema(value_type = Vec<Scope>)]
    pub scopes: Json<Vec<Scope>>,
    pub created_by: Option<Uuid>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
}

/// What authentication needs: never leaves the server.
#[derive(Clone, sqlx::FromRow)]
pub struct KeyCredential {
    pub id: Uuid,
    pub workspace_id: WorkspaceId,
    pub key_hash: Vec<u8>,
    pub scopes: Json<Vec<Scope>>,
    pub revoked_at: Option<OffsetDateTime>,
}

pub struct NewServiceKey<'a> {
    pub id: Uuid,
    pub workspace_id: WorkspaceId,
    pub name: &'a str,
    pub prefix: &'a str,
    pub key_hash: &'a [u8],
    pub scopes: &'a [Scope],
    pub created_by: Uuid,
    pub created_at: OffsetDateTime,
}

#[async_trait::async_trait]
pub trait ServiceKeyStore {
    async fn create_service_key(
        &self,
        key: &NewServiceKey<'_>,
        audit: &AuditEntry,
    ) -> sqlx::Result<()>;
    async fn list_service_keys(
        &self,
        workspace: WorkspaceId,
    ) -> sqlx::Result<Vec<ServiceKeyRecord>>;
    async fn revoke_service_key(
        &self,
        workspace: WorkspaceId,
        id: Uuid,
        at: OffsetDateTime,
        audit: &AuditEntry,
    ) -> sqlx::Result<bool>;
    /// By the key's public prefix (authentication; the key names its workspace).
    async fn find_key_credential(&self, prefix: &str) -> sqlx::Result<Option<KeyCredential>>;
    /// At most once a minute per key, so hot keys don't write on every call.
    async fn touch_service_key(&self, id: Uuid, at: OffsetDateTime) -> sqlx::Result<()>;
}

impl_for_backends! {
    impl ServiceKeyStore {
        async fn create_service_key(&self, key: &NewServiceKey<'_>, audit: &AuditEntry) -> sqlx::Result<()> {
            let mut tx = self.begin_write().await?;
            sqlx::query(
                "INSERT INTO service_keys (id, workspace_id, name, prefix, key_hash, scopes, created_by, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(key.id)
            .bind(key.workspace_id)
            .bind(key.name)
            .bind(key.prefix)
            .bind(key.key_hash)
            .bind(Json(key.scopes))
            .bind(key.created_by)
            .bind(key.created_at)
            .execute(&mut *tx)
            .await?;
            crate::insert_audit!(&mut *tx, audit)?;
            tx.commit().await
        }

        async fn list_service_keys(&self, workspace: WorkspaceId) -> sqlx::Result<Vec<ServiceKeyRecord>> {
            sqlx::query_as(
                "SELECT id, name, prefix, scopes, created_by, created_at, last_used_at, revoked_at \
                 FROM service_keys WHERE workspace_id = $1 ORDER BY created_at DESC, id DESC",
            )
            .bind(workspace)
            .fetch_all(&self.pool)
            .await
        }

        async fn revoke_service_key(&self, workspace: WorkspaceId, id: Uuid, at: OffsetDateTime, audit: &AuditEntry) -> sqlx::Result<bool> {
            let mut tx = self.begin_write().await?;
            let revoked = sqlx::query(
                "UPDATE service_keys SET revoked_at = $3 WHERE workspace_id = $1 AND id = $2 AND revoked_at IS NULL",
            )
            .bind(workspace)
            .bind(id)
            .bind(at)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if revoked == 0 {
                return Ok(false);
            }
            crate::insert_audit!(&mut *tx, audit)?;
            tx.commit().await?;
            Ok(true)
        }

        async fn find_key_credential(&self, prefix: &str) -> sqlx::Result<Option<KeyCredential>> {
            sqlx::query_as("SELECT id, workspace_id, key_hash, scopes, revoked_at FROM service_keys WHERE prefix = $1")
                .bind(prefix)
                .fetch_optional(&self.pool)
                .await
        }

        async fn touch_service_key(&self, id: Uuid, at: OffsetDateTime) -> sqlx::Result<()> {
            sqlx::query(
                "UPDATE service_keys SET last_used_at = $2 WHERE id = $1 \
                 AND (last_used_at IS NULL OR last_used_at < $3)",
            )
            .bind(id)
            .bind(at)
            .bind(at - time::Duration::minutes(1))
            .execute(&self.pool)
            .await
            .map(|_| ())
        }
    }
}
