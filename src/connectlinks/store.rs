//! SQL for connect links. Listing and revoking take the workspace id; the
//! only lookup without one is by token hash (the token is the capability).

use time::OffsetDateTime;
use uuid::Uuid;

use super::{ConnectLink, LinkLookup};
use crate::audit::AuditEntry;
use crate::impl_for_backends;
use crate::tenancy::WorkspaceId;

/// A link about to be stored: only the token's hash.
#[derive(Debug, Clone)]
pub struct NewConnectLink {
    pub id: Uuid,
    pub workspace_id: WorkspaceId,
    pub provider: String,
    pub environment: String,
    pub ownership: &'static str,
    pub user_id: Option<Uuid>,
    pub connection_id: Option<Uuid>,
    pub token_hash: Vec<u8>,
    pub created_by: Option<Uuid>,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

pub(crate) const INSERT_LINK_SQL: &str = "INSERT INTO connect_links \
     (id, workspace_id, provider, environment, ownership, user_id, connection_id, token_hash, created_by, created_at, expires_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";

/// Writes a [`NewConnectLink`] on the given executor, so a link minted for
/// a change (a reconnect link in a `needs_reauth` event) commits with it.
#[macro_export]
macro_rules! insert_connect_link {
    ($executor:expr, $link:expr) => {{
        let link: &$crate::connectlinks::store::NewConnectLink = $link;
        sqlx::query($crate::connectlinks::store::INSERT_LINK_SQL)
            .bind(link.id)
            .bind(link.workspace_id)
            .bind(&link.provider)
            .bind(&link.environment)
            .bind(link.ownership)
            .bind(link.user_id)
            .bind(link.connection_id)
            .bind(&link.token_hash)
            .bind(link.created_by)
            .bind(link.created_at)
            .bind(link.expires_at)
            .execute($executor)
            .await
    }};
}

macro_rules! open_link {
    () => {
        " l.used_at IS NULL AND l.revoked_at IS NULL AND l.expires_at > $2 "
    };
}

#[async_trait::async_trait]
pub trait ConnectLinkStore {
    async fn create_connect_link(
        &self,
        link: &NewConnectLink,
        audit: &AuditEntry,
    ) -> sqlx::Result<()>;
    /// Open links of the workspace, oldest first, with the member's name.
    async fn list_open_connect_links(
        &self,
        workspace: WorkspaceId,
        now: OffsetDateTime,
    ) -> sqlx::Result<Vec<ConnectLink>>;
    /// False when the link is not the workspace's or no longer open.
    async fn revoke_connect_link(
        &self,
        workspace: WorkspaceId,
        id: Uuid,
        now: OffsetDateTime,
        audit: &AuditEntry,
    ) -> sqlx::Result<bool>;
    async fn find_open_connect_link(
        &self,
        token_hash: &[u8],
        now: OffsetDateTime,
    ) -> sqlx::Result<Option<LinkLookup>>;
    /// Marks the link used; false when it was used, revoked or expired
    /// meanwhile (only one opener wins).
    async fn claim_connect_link(
        &self,
        id: Uuid,
        user_id: Uuid,
        now: OffsetDateTime,
        audit: &AuditEntry,
    ) -> sqlx::Result<bool>;
}

impl_for_backends! {
    impl ConnectLinkStore {
        async fn create_connect_link(&self, link: &NewConnectLink, audit: &AuditEntry) -> sqlx::Result<()> {
            let mut tx = self.begin_write().await?;
            crate::insert_connect_link!(&mut *tx, link)?;
            crate::insert_audit!(&mut *tx, audit)?;
            tx.commit().await
        }

        async fn list_open_connect_links(&self, workspace: WorkspaceId, now: OffsetDateTime) -> sqlx::Result<Vec<ConnectLink>> {
            sqlx::query_as(concat!(
                "SELECT l.id, l.provider, l.environment, l.ownership, l.user_id, u.name AS user_name, \
                 l.connection_id, l.created_at, l.expires_at \
                 FROM connect_links l LEFT JOIN users u ON u.id = l.user_id \
                 WHERE l.workspace_id = $1 AND",
                open_link!(),
                "ORDER BY l.created_at, l.id"
            ))
            .bind(workspace)
            .bind(now)
            .fetch_all(&self.pool)
            .await
        }

        async fn revoke_connect_link(&self, workspace: WorkspaceId, id: Uuid, now: OffsetDateTime, audit: &AuditEntry) -> sqlx::Result<bool> {
            let mut tx = self.begin_write().await?;
            let changed = sqlx::query(
                "UPDATE connect_links SET revoked_at = $2 WHERE workspace_id = $1 AND id = $3 \
                 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $2",
            )
            .bind(workspace)
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if changed == 0 {
                return Ok(false);
            }
            crate::insert_audit!(&mut *tx, audit)?;
            tx.commit().await?;
            Ok(true)
        }

        async fn find_open_connect_link(&self, token_hash: &[u8], now: OffsetDateTime) -> sqlx::Result<Option<LinkLookup>> {
            sqlx::query_as(concat!(
                "SELECT l.id, l.workspace_id, l.provider, l.environment, l.ownership, l.user_id, l.connection_id \
                 FROM connect_links l WHERE l.token_hash = $1 AND",
                open_link!()
            ))
            .bind(token_hash)
            .bind(now)
            .fetch_optional(&self.pool)
            .await
        }

        async fn claim_connect_link(&self, id: Uuid, user_id: Uuid, now: OffsetDateTime, audit: &AuditEntry) -> sqlx::Result<bool> {
            let mut tx = self.begin_write().await?;
            let claimed = sqlx::query(
                "UPDATE connect_links SET used_at = $2, used_by = $3 WHERE id = $1 \
                 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $2",
            )
            .bind(id)
            .bind(now)
            .bind(user_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if claimed == 0 {
                return Ok(false);
            }
            crate::insert_audit!(&mut *tx, audit)?;
            tx.commit().await?;
            Ok(true)
        }
    }
}
