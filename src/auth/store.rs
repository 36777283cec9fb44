//! SQL for users and server-side sessions.

use std::collections::HashMap;

use sqlx::types::Json;
use time::OffsetDateTime;
use uuid::Uuid;

use super::User;
use crate::audit::AuditEntry;
use crate::impl_for_backends;
use crate::tenancy::WorkspaceId;

/// A user row with its password hash; kept apart from [`User`] so the hash
/// can't be serialised by accident.
#[derive(Clone, sqlx::FromRow)]
pub struct UserCredentials {
    pub id: Uuid,
    pub password_hash: String,
}

impl std::fmt::Debug for UserCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserCredentials")
            .field("id", &self.id)
            .field("password_hash", &"[redacted]")
            .finish()
    }
}

pub struct NewUser<'a> {
    pub id: Uuid,
    pub email: &'a str,
    pub email_normalized: &'a str,
    pub name: &'a str,
    pub password_hash: &'a str,
    pub created_at: OffsetDateTime,
}

/// Where a new user lands: a new organization of their own, an existing
/// workspace through an invite, or an existing workspace by admin choice (CLI).
pub enum Landing<'a> {
    NewOrganization {
        organization_id: Uuid,
        organization_name: &'a str,
        workspace_id: WorkspaceId,
        workspace_name: &'a str,
    },
    Invite {
        invite_id: Uuid,
        workspace_id: WorkspaceId,
        role: &'a str,
    },
    Workspace {
        workspace_id: WorkspaceId,
        role: &'a str,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateAccountOutcome {
    Created,
    EmailTaken,
    /// The invite expired, was revoked or used while the form was open.
    InviteGone,
}

#[async_trait::async_trait]
pub trait AccountStore {
    /// Creates the user and where they land in one transaction.
    async fn create_account(
        &self,
        user: &NewUser<'_>,
        landing: &Landing<'_>,
        audit: &AuditEntry,
    ) -> sqlx::Result<CreateAccountOutcome>;
    async fn find_credentials(
        &self,
        email_normalized: &str,
    ) -> sqlx::Result<Option<UserCredentials>>;
    async fn get_user(&self, id: Uuid) -> sqlx::Result<Option<User>>;
    async fn find_user_by_email(&self, email_normalized: &str) -> sqlx::Result<Option<User>>;
    async fn record_login(&self, id: Uuid, at: OffsetDateTime) -> sqlx::Result<()>;
    async fn count_users(&self) -> sqlx::Result<i64>;
}

pub type SessionData = HashMap<String, serde_json::Value>;

#[async_trait::async_trait]
pub trait SessionRecordStore {
    /// False when the id is taken (the caller draws a new one).
    async fn session_insert(
        &self,
        id_hash: &[u8],
        user_id: Option<Uuid>,
        data: &SessionData,
        expires_at: OffsetDateTime,
    ) -> sqlx::Result<bool>;
    async fn session_upsert(
        &self,
        id_hash: &[u8],
        user_id: Option<Uuid>,
        data: &SessionData,
        expires_at: OffsetDateTime,
    ) -> sqlx::Result<()>;
    async fn session_load(
        &self,
        id_hash: &[u8],
        now: OffsetDateTime,
    ) -> sqlx::Result<Option<(SessionData, OffsetDateTime)>>;
    async fn session_delete(&self, id_hash: &[u8]) -> sqlx::Result<()>;
    async fn session_delete_expired(&self, now: OffsetDateTime) -> sqlx::Result<u64>;
}

macro_rules! user_select {
    () => {
        "SELECT id, email, name, created_at, last_login_at FROM users "
    };
}

impl_for_backends! {
    impl AccountStore {
        async fn create_account(&self, user: &NewUser<'_>, landing: &Landing<'_>, audit: &AuditEntry) -> sqlx::Result<CreateAccountOutcome> {
            let mut tx = self.begin_write().await?;
            let inserted = sqlx::query(
                "INSERT INTO users (id, email, email_normalized, name, password_hash, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (email_normalized) DO NOTHING",
            )
            .bind(user.id)
            .bind(user.email)
            .bind(user.email_normalized)
            .bind(user.name)
            .bind(user.password_hash)
            .bind(user.created_at)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted == 0 {
                return Ok(CreateAccountOutcome::EmailTaken);
            }
            let (workspace_id, role) = match landing {
                Landing::NewOrganization { organization_id, organization_name, workspace_id, workspace_name } => {
                    sqlx::query("INSERT INTO organizations (id, name, created_by, created_at) VALUES ($1, $2, $3, $4)")
                        .bind(organization_id)
                        .bind(organization_name)
                        .bind(user.id)
                        .bind(user.created_at)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query("INSERT INTO workspaces (id, organization_id, name, created_at) VALUES ($1, $2, $3, $4)")
                        .bind(workspace_id)
                        .bind(organization_id)
                        .bind(workspace_name)
                        .bind(user.created_at)
                        .execute(&mut *tx)
                        .await?;
                    (*workspace_id, "owner")
                }
                Landing::Invite { invite_id, workspace_id, role } => {
                    let claimed = sqlx::query(
                        "UPDATE invites SET accepted_at = $2, accepted_by = $3 WHERE id = $1 \
                         AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > $2",
                    )
                    .bind(invite_id)
                    .bind(user.created_at)
                    .bind(user.id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if claimed == 0 {
                        return Ok(CreateAccountOutcome::InviteGone);
                    }
                    (*workspace_id, *role)
                }
                Landing::Workspace { workspace_id, role } => (*workspace_id, *role),
            };
            sqlx::query("INSERT INTO memberships (workspace_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)")
                .bind(workspace_id)
                .bind(user.id)
                .bind(role)
                .bind(user.created_at)
                .execute(&mut *tx)
                .await?;
            let mut audit = audit.clone();
            audit.workspace_id = Some(workspace_id);
            crate::insert_audit!(&mut *tx, &audit)?;
            tx.commit().await?;
            Ok(CreateAccountOutcome::Created)
        }

        async fn find_credentials(&self, email_normalized: &str) -> sqlx::Result<Option<UserCredentials>> {
            sqlx::query_as("SELECT id, password_hash FROM users WHERE email_normalized = $1")
                .bind(email_normalized)
                .fetch_optional(&self.pool)
                .await
        }

        async fn get_user(&self, id: Uuid) -> sqlx::Result<Option<User>> {
            sqlx::query_as(concat!(user_select!(), "WHERE id = $1"))
                .bind(id)
                .fetch_optional(&self.pool)
                .await
        }

        async fn find_user_by_email(&self, email_normalized: &str) -> sqlx::Result<Option<User>> {
            sqlx::query_as(concat!(user_select!(), "WHERE email_normalized = $1"))
                .bind(email_normalized)
                .fetch_optional(&self.pool)
                .await
        }

        async fn record_login(&self, id: Uuid, at: OffsetDateTime) -> sqlx::Result<()> {
            sqlx::query("UPDATE users SET last_login_at = $2 WHERE id = $1")
                .bind(id)
                .bind(at)
                .execute(&self.pool)
                .await
                .map(|_| ())
        }

        async fn count_users(&self) -> sqlx::Result<i64> {
            sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(&self.pool).await
        }
    }
}

impl_for_backends! {
    impl SessionRecordStore {
        async fn session_insert(&self, id_hash: &[u8], user_id: Option<Uuid>, data: &SessionData, expires_at: OffsetDateTime) -> sqlx::Result<bool> {
            let inserted = sqlx::query(
                "INSERT INTO sessions (id_hash, user_id, data, expires_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (id_hash) DO NOTHING",
            )
            .bind(id_hash)
            .bind(user_id)
            .bind(Json(data))
            .bind(expires_at)
            .execute(&self.pool)
            .await?
            .rows_affected();
            Ok(inserted == 1)
        }

        async fn session_upsert(&self, id_hash: &[u8], user_id: Option<Uuid>, data: &SessionData, expires_at: OffsetDateTime) -> sqlx::Result<()> {
            sqlx::query(
                "INSERT INTO sessions (id_hash, user_id, data, expires_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (id_hash) DO UPDATE SET user_id = excluded.user_id, data = excluded.data, \
                 expires_at = excluded.expires_at",
            )
            .bind(id_hash)
            .bind(user_id)
            .bind(Json(data))
            .bind(expires_at)
            .execute(&self.pool)
            .await
            .map(|_| ())
        }

        async fn session_load(&self, id_hash: &[u8], now: OffsetDateTime) -> sqlx::Result<Option<(SessionData, OffsetDateTime)>> {
            let row: Option<(Json<SessionData>, OffsetDateTime)> = sqlx::query_as(
                "SELECT data, expires_at FROM sessions WHERE id_hash = $1 AND expires_at > $2",
            )
            .bind(id_hash)
            .bind(now)
            .fetch_optional(&self.pool)
            .await?;
            Ok(row.map(|(data, expires)| (data.0, expires)))
        }

        async fn session_delete(&self, id_hash: &[u8]) -> sqlx::Result<()> {
            sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
                .bind(id_hash)
                .execute(&self.pool)
                .await
                .map(|_| ())
        }

        async fn session_delete_expired(&self, now: OffsetDateTime) -> sqlx::Result<u64> {
            Ok(sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
                .bind(now)
                .execute(&self.pool)
                .await?
                .rows_affected())
        }
    }
}
