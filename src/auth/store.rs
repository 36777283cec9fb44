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

pub struct NewPasswordReset<'a> {
    pub id: Uuid,
    pub workspace_id: WorkspaceId,
    pub user_id: Uuid,
    pub token_hash: &'a [u8],
    pub created_by: Uuid,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

/// An open reset link found by its token, with whose password it sets.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PasswordResetLookup {
    pub id: Uuid,
    pub workspace_id: WorkspaceId,
    pub user_id: Uuid,
    pub email: String,
    pub expires_at: OffsetDateTime,
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
    /// How many of `target`'s memberships lie outside `actor`'s authority:
    /// workspaces where the actor is not an admin, or where the target is
    /// an owner and the actor is not.
    async fn memberships_beyond(&self, actor: Uuid, target: Uuid) -> sqlx::Result<i64>;
    /// Stores a reset link; earlier open links of the user stop working.
    async fn create_password_reset(
        &self,
        reset: &NewPasswordReset<'_>,
        audit: &AuditEntry,
    ) -> sqlx::Result<()>;
    async fn find_open_password_reset(
        &self,
        token_hash: &[u8],
        now: OffsetDateTime,
    ) -> sqlx::Result<Option<PasswordResetLookup>>;
    /// Sets the password in one transaction: consumes the link (`reset`,
    /// false when it was used or expired meanwhile), closes every other
    /// open link of the user and deletes all their sessions.
    async fn set_password(
        &self,
        user_id: Uuid,
        reset: Option<Uuid>,
        password_hash: &str,
        now: OffsetDateTime,
        audit: &AuditEntry,
    ) -> sqlx::Result<bool>;
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
    /// Updates an existing record only: a session deleted while one of its
    /// requests was in flight (log-out elsewhere, password reset) stays
    /// deleted instead of being written back.
    async fn session_update(
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

        async fn memberships_beyond(&self, actor: Uuid, target: Uuid) -> sqlx::Result<i64> {
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM memberships t LEFT JOIN memberships a \
                 ON a.workspace_id = t.workspace_id AND a.user_id = $1 \
                 WHERE t.user_id = $2 AND (a.role IS NULL OR a.role = 'member' \
                 OR (t.role = 'owner' AND a.role <> 'owner'))",
            )
            .bind(actor)
            .bind(target)
            .fetch_one(&self.pool)
            .await
        }

        async fn create_password_reset(&self, reset: &NewPasswordReset<'_>, audit: &AuditEntry) -> sqlx::Result<()> {
            let mut tx = self.begin_write().await?;
            sqlx::query("UPDATE password_resets SET used_at = $2 WHERE user_id = $1 AND used_at IS NULL")
                .bind(reset.user_id)
                .bind(reset.created_at)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO password_resets (id, workspace_id, user_id, token_hash, created_by, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(reset.id)
            .bind(reset.workspace_id)
            .bind(reset.user_id)
            .bind(reset.token_hash)
            .bind(reset.created_by)
            .bind(reset.created_at)
            .bind(reset.expires_at)
            .execute(&mut *tx)
            .await?;
            crate::insert_audit!(&mut *tx, audit)?;
            tx.commit().await
        }

        async fn find_open_password_reset(&self, token_hash: &[u8], now: OffsetDateTime) -> sqlx::Result<Option<PasswordResetLookup>> {
            sqlx::query_as(
                "SELECT r.id, r.workspace_id, r.user_id, u.email, r.expires_at FROM password_resets r \
                 JOIN users u ON u.id = r.user_id \
                 WHERE r.token_hash = $1 AND r.used_at IS NULL AND r.expires_at > $2",
            )
            .bind(token_hash)
            .bind(now)
            .fetch_optional(&self.pool)
            .await
        }

        async fn set_password(&self, user_id: Uuid, reset: Option<Uuid>, password_hash: &str, now: OffsetDateTime, audit: &AuditEntry) -> sqlx::Result<bool> {
            let mut tx = self.begin_write().await?;
            if let Some(reset) = reset {
                let consumed = sqlx::query(
                    "UPDATE password_resets SET used_at = $3 WHERE id = $1 AND user_id = $2 \
                     AND used_at IS NULL AND expires_at > $3",
                )
                .bind(reset)
                .bind(user_id)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if consumed == 0 {
                    return Ok(false);
                }
            }
            let updated = sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1")
                .bind(user_id)
                .bind(password_hash)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if updated == 0 {
                return Ok(false);
            }
            sqlx::query("UPDATE password_resets SET used_at = $2 WHERE user_id = $1 AND used_at IS NULL")
                .bind(user_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM sessions WHERE user_id = $1")
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
            crate::insert_audit!(&mut *tx, audit)?;
            tx.commit().await?;
            Ok(true)
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

        async fn session_update(&self, id_hash: &[u8], user_id: Option<Uuid>, data: &SessionData, expires_at: OffsetDateTime) -> sqlx::Result<()> {
            sqlx::query("UPDATE sessions SET user_id = $2, data = $3, expires_at = $4 WHERE id_hash = $1")
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
