//! The sandbox's issued tokens in the database, so a demo connection
//! survives a restart. Rows hold SHA-256 digests of the tokens, never the
//! tokens. The in-memory maps stay the authority while running; every
//! change to them is written here before the answer that caused it leaves.

use time::OffsetDateTime;

use crate::impl_for_backends;

/// An access or refresh token as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredToken {
    pub token_hash: Vec<u8>,
    /// `access` or `refresh`.
    pub kind: String,
    pub family: i64,
    pub client_id: String,
    pub scope: String,
    pub company: String,
    pub subject: String,
    pub name: String,
    /// None: never expires.
    pub expires_at: Option<OffsetDateTime>,
    pub used: bool,
    pub created_at: OffsetDateTime,
}

/// One change to the token maps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenChange {
    Put(StoredToken),
    /// A refresh token was rotated (kept for reuse detection).
    MarkUsed(Vec<u8>),
    Delete(Vec<u8>),
    DeleteFamily(i64),
}

#[async_trait::async_trait]
pub trait SandboxTokenStore {
    /// Tokens not expired at `now`.
    async fn live_sandbox_tokens(&self, now: OffsetDateTime) -> sqlx::Result<Vec<StoredToken>>;
    /// Applies the changes in order, in one transaction, and drops rows
    /// expired at `now`.
    async fn apply_sandbox_token_changes(
        &self,
        changes: &[TokenChange],
        now: OffsetDateTime,
    ) -> sqlx::Result<()>;
}

impl_for_backends! {
    impl SandboxTokenStore {
        async fn live_sandbox_tokens(&self, now: OffsetDateTime) -> sqlx::Result<Vec<StoredToken>> {
            sqlx::query_as(
                "SELECT token_hash, kind, family, client_id, scope, company, subject, name, expires_at, used, created_at \
                 FROM sandbox_tokens WHERE expires_at IS NULL OR expires_at > $1",
            )
            .bind(now)
            .fetch_all(&self.pool)
            .await
        }

        async fn apply_sandbox_token_changes(&self, changes: &[TokenChange], now: OffsetDateTime) -> sqlx::Result<()> {
            let mut tx = self.begin_write().await?;
            for change in changes {
                match change {
                    TokenChange::Put(t) => {
                        sqlx::query(
                            "INSERT INTO sandbox_tokens (token_hash, kind, family, client_id, scope, company, subject, \
                             name, expires_at, used, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                             ON CONFLICT (token_hash) DO NOTHING",
                        )
                        .bind(&t.token_hash)
                        .bind(&t.kind)
                        .bind(t.family)
                        .bind(&t.client_id)
                        .bind(&t.scope)
                        .bind(&t.company)
                        .bind(&t.subject)
                        .bind(&t.name)
                        .bind(t.expires_at)
                        .bind(t.used)
                        .bind(t.created_at)
                        .execute(&mut *tx)
                        .await?;
                    }
                    TokenChange::MarkUsed(hash) => {
                        sqlx::query("UPDATE sandbox_tokens SET used = true WHERE token_hash = $1")
                            .bind(hash)
                            .execute(&mut *tx)
                            .await?;
                    }
                    TokenChange::Delete(hash) => {
                        sqlx::query("DELETE FROM sandbox_tokens WHERE token_hash = $1")
                            .bind(hash)
                            .execute(&mut *tx)
                            .await?;
                    }
                    TokenChange::DeleteFamily(family) => {
                        sqlx::query("DELETE FROM sandbox_tokens WHERE family = $1")
                            .bind(family)
                            .execute(&mut *tx)
                            .await?;
                    }
                }
            }
            sqlx::query("DELETE FROM sandbox_tokens WHERE expires_at IS NOT NULL AND expires_at <= $1")
                .bind(now)
                .execute(&mut *tx)
                .await?;
            tx.commit().await
        }
    }
}
