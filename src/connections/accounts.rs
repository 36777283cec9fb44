//! The accounts a provider reports for a connection (properties,
//! customers, sites…): name, currency and time zone as the provider gives
//! them. Written whenever a connection's accounts are listed — choosing
//! accounts lists them too — so the Data Hub can name what it shows.

use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::impl_for_backends;
use crate::tenancy::WorkspaceId;

/// One account as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedAccount<'a> {
    pub external_id: &'a str,
    pub name: &'a str,
    pub currency: Option<&'a str>,
    pub time_zone: Option<&'a str>,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct ProviderAccount {
    pub connection_id: Uuid,
    pub provider: String,
    pub external_id: String,
    pub name: String,
    pub currency: Option<String>,
    pub time_zone: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

#[async_trait::async_trait]
pub trait ProviderAccountStore {
    /// Records what a listing returned; accounts no longer listed are kept
    /// (stored metrics may still name them).
    async fn save_provider_accounts(
        &self,
        workspace: WorkspaceId,
        connection_id: Uuid,
        provider: &str,
        accounts: &[ListedAccount<'_>],
        at: OffsetDateTime,
    ) -> sqlx::Result<()>;
    /// Every account known for the workspace's connections.
    async fn list_provider_accounts(
        &self,
        workspace: WorkspaceId,
    ) -> sqlx::Result<Vec<ProviderAccount>>;
}

impl_for_backends! {
    impl ProviderAccountStore {
        async fn save_provider_accounts(&self, workspace: WorkspaceId, connection_id: Uuid, provider: &str, accounts: &[ListedAccount<'_>], at: OffsetDateTime) -> sqlx::Result<()> {
            let mut tx = self.begin_write().await?;
            for a in accounts {
                // The workspace is checked by the statement itself: a
                // connection of another workspace matches no row.
                sqlx::query(
                    "INSERT INTO provider_accounts (id, workspace_id, connection_id, provider, external_id, name, currency, time_zone, updated_at) \
                     SELECT $1, c.workspace_id, c.id, $4, $5, $6, $7, $8, $9 FROM connections c WHERE c.workspace_id = $2 AND c.id = $3 \
                     ON CONFLICT (connection_id, external_id) DO UPDATE SET name = excluded.name, currency = excluded.currency, \
                     time_zone = excluded.time_zone, updated_at = excluded.updated_at",
                )
                .bind(Uuid::now_v7())
                .bind(workspace)
                .bind(connection_id)
                .bind(provider)
                .bind(a.external_id)
                .bind(a.name)
                .bind(a.currency)
                .bind(a.time_zone)
                .bind(at)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await
        }

        async fn list_provider_accounts(&self, workspace: WorkspaceId) -> sqlx::Result<Vec<ProviderAccount>> {
            sqlx::query_as(
                "SELECT connection_id, provider, external_id, name, currency, time_zone, updated_at FROM provider_accounts \
                 WHERE workspace_id = $1 ORDER BY provider, connection_id, external_id",
            )
            .bind(workspace)
            .fetch_all(&self.pool)
            .await
        }
    }
}
