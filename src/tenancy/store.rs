//! SQL for workspaces, memberships and invites. Every query of tenant data
//! filters by workspace id; the only lookups without one are by the caller's
//! own user id or by an invite token (the token is the capability).

use time::OffsetDateTime;
use uuid::Uuid;

use super::{Invite, InviteLookup, Member, MemberChange, Role, WorkspaceId, WorkspaceMembership};
use crate::audit::AuditEntry;
use crate::impl_for_backends;

pub struct NewWorkspace<'a> {
    pub id: WorkspaceId,
    pub organization_id: Uuid,
    pub name: &'a str,
    pub owner: Uuid,
    pub created_at: OffsetDateTime,
}

pub struct NewInvite<'a> {
    pub id: Uuid,
    pub workspace_id: WorkspaceId,
    pub email: &'a str,
    pub email_normalized: &'a str,
    pub role: Role,
    pub token_hash: &'a [u8],
    pub created_by: Uuid,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptOutcome {
    Joined,
    /// Already a member: the invite is consumed, the existing role kept.
    AlreadyMember,
    /// Expired, revoked or used in the meantime.
    Gone,
}

#[async_trait::async_trait]
pub trait TenancyStore {
    async fn create_workspace(&self, ws: &NewWorkspace<'_>, audit: &AuditEntry)
    -> sqlx::Result<()>;
    async fn workspaces_for_user(&self, user_id: Uuid) -> sqlx::Result<Vec<WorkspaceMembership>>;
    /// Where the user lands: the workspace they last chose while they are
    /// still a member of it, else the one they joined first.
    async fn default_workspace(&self, user_id: Uuid) -> sqlx::Result<Option<WorkspaceMembership>>;
    /// Records the user's choice of workspace for their next log-in.
    async fn remember_workspace(&self, user_id: Uuid, workspace: WorkspaceId) -> sqlx::Result<()>;
    /// The tenancy gate: `None` unless `user_id` is a member of `workspace`.
    async fn membership(
        &self,
        workspace: WorkspaceId,
        user_id: Uuid,
    ) -> sqlx::Result<Option<WorkspaceMembership>>;
    async fn list_members(&self, workspace: WorkspaceId) -> sqlx::Result<Vec<Member>>;
    async fn get_member(
        &self,
        workspace: WorkspaceId,
        user_id: Uuid,
    ) -> sqlx::Result<Option<Member>>;
    /// False when the user is already a member.
    async fn add_member(
        &self,
        workspace: WorkspaceId,
        user_id: Uuid,
        role: Role,
        audit: &AuditEntry,
    ) -> sqlx::Result<bool>;
    async fn set_member_role(
        &self,
        workspace: WorkspaceId,
        user_id: Uuid,
        role: Role,
        audit: &AuditEntry,
    ) -> sqlx::Result<MemberChange>;
    async fn remove_member(
        &self,
        workspace: WorkspaceId,
        user_id: Uuid,
        audit: &AuditEntry,
    ) -> sqlx::Result<MemberChange>;
    /// Replaces any open invite for the same address in the workspace.
    async fn create_invite(&self, invite: &NewInvite<'_>, audit: &AuditEntry) -> sqlx::Result<()>;
    async fn list_open_invites(
        &self,
        workspace: WorkspaceId,
        now: OffsetDateTime,
    ) -> sqlx::Result<Vec<Invite>>;
    async fn revoke_invite(
        &self,
        workspace: WorkspaceId,
        invite_id: Uuid,
        now: OffsetDateTime,
        audit: &AuditEntry,
    ) -> sqlx::Result<bool>;
    async fn find_open_invite(
        &self,
        token_hash: &[u8],
        now: OffsetDateTime,
    ) -> sqlx::Result<Option<InviteLookup>>;
    async fn accept_invite(
        &self,
        invite: &InviteLookup,
        user_id: Uuid,
        now: OffsetDateTime,
        audit: &AuditEntry,
    ) -> sqlx::Result<AcceptOutcome>;
    async fn find_organization_by_name(&self, name: &str) -> sqlx::Result<Option<Uuid>>;
    async fn workspace_exists(&self, workspace: WorkspaceId) -> sqlx::Result<bool>;
    async fn find_workspace_in_org(
        &self,
        organization_id: Uuid,
        name: Option<&str>,
    ) -> sqlx::Result<Option<WorkspaceId>>;
    /// The workspace's IANA time zone name (`UTC` unless an admin set one).
    async fn workspace_time_zone(&self, workspace: WorkspaceId) -> sqlx::Result<Option<String>>;
    /// False when the workspace doesn't exist.
    async fn set_workspace_time_zone(
        &self,
        workspace: WorkspaceId,
        time_zone: &str,
        audit: &AuditEntry,
    ) -> sqlx::Result<bool>;
}

// SQL fragments are macros so queries stay `&'static str` via `concat!`.
macro_rules! membership_select {
    () => {
        "SELECT w.id AS workspace_id, w.name AS workspace_name, \
         o.id AS organization_id, o.name AS organization_name, m.role AS role_text \
         FROM memberships m JOIN workspaces w ON w.id = m.workspace_id \
         JOIN organizations o ON o.id = w.organization_id "
    };
}

macro_rules! member_select {
    () => {
        "SELECT u.id AS user_id, u.name, u.email, m.role AS role_text, \
         m.created_at AS joined_at FROM memberships m JOIN users u ON u.id = m.user_id "
    };
}

macro_rules! open_invite {
    () => {
        " accepted_at IS NULL AND revoked_at IS NULL "
    };
}

// Taking the workspace row's write lock first serialises every owner-count
// check for one workspace, on PostgreSQL (row lock) and SQLite (the writer
// lock), so two concurrent demotions can't both see "another owner left".
const LOCK_WORKSPACE_SQL: &str = "UPDATE workspaces SET name = name WHERE id = $1";

const OWNER_COUNT_SQL: &str =
    "SELECT COUNT(*) FROM memberships WHERE workspace_id = $1 AND role = 'owner'";

/// Inside a transaction: locks the workspace, then returns early with
/// `NotFound` for a non-member, or `LastOwner` when the change would take
/// away the workspace's only owner (`stays_owner` false).
macro_rules! guard_last_owner {
    ($tx:ident, $workspace:expr, $user_id:expr, $stays_owner:expr) => {
        sqlx::query(LOCK_WORKSPACE_SQL)
            .bind($workspace)
            .execute(&mut *$tx)
            .await?;
        let current: Option<String> = sqlx::query_scalar(
            "SELECT role FROM memberships WHERE workspace_id = $1 AND user_id = $2",
        )
        .bind($workspace)
        .bind($user_id)
        .fetch_optional(&mut *$tx)
        .await?;
        let Some(current) = current else {
            return Ok(MemberChange::NotFound);
        };
        if current == "owner" && !$stays_owner {
            let owners: i64 = sqlx::query_scalar(OWNER_COUNT_SQL)
                .bind($workspace)
                .fetch_one(&mut *$tx)
                .await?;
            if owners <= 1 {
                return Ok(MemberChange::LastOwner);
            }
        }
    };
}

impl_for_backends! {
    impl TenancyStore {
        async fn create_workspace(&self, ws: &NewWorkspace<'_>, audit: &AuditEntry) -> sqlx::Result<()> {
            let mut tx = self.begin_write().await?;
            sqlx::query("INSERT INTO workspaces (id, organization_id, name, created_at) VALUES ($1, $2, $3, $4)")
                .bind(ws.id)
                .bind(ws.organization_id)
                .bind(ws.name)
                .bind(ws.created_at)
                .execute(&mut *tx)
                .await?;
            sqlx::query("INSERT INTO memberships (workspace_id, user_id, role, created_at) VALUES ($1, $2, 'owner', $3)")
                .bind(ws.id)
                .bind(ws.owner)
                .bind(ws.created_at)
                .execute(&mut *tx)
                .await?;
            crate::insert_audit!(&mut *tx, audit)?;
            tx.commit().await
        }

        async fn workspaces_for_user(&self, user_id: Uuid) -> sqlx::Result<Vec<WorkspaceMembership>> {
            sqlx::query_as(concat!(membership_select!(), "WHERE m.user_id = $1 ORDER BY o.name, w.name, w.id"))
                .bind(user_id).fetch_all(&self.pool).await
        }

        async fn default_workspace(&self, user_id: Uuid) -> sqlx::Result<Option<WorkspaceMembership>> {
            // Never by name: a workspace someone else named "AAA" must not
            // become the default of a person who joins it.
            sqlx::query_as(concat!(
                membership_select!(),
                "JOIN users u ON u.id = m.user_id WHERE m.user_id = $1 \
                 ORDER BY CASE WHEN m.workspace_id = u.last_workspace_id THEN 0 ELSE 1 END, \
                 m.created_at, w.id LIMIT 1"
            ))
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await
        }

        async fn remember_workspace(&self, user_id: Uuid, workspace: WorkspaceId) -> sqlx::Result<()> {
            sqlx::query("UPDATE users SET last_workspace_id = $2 WHERE id = $1")
                .bind(user_id)
                .bind(workspace)
                .execute(&self.pool)
                .await
                .map(|_| ())
        }

        async fn membership(&self, workspace: WorkspaceId, user_id: Uuid) -> sqlx::Result<Option<WorkspaceMembership>> {
            sqlx::query_as(concat!(membership_select!(), "WHERE m.workspace_id = $1 AND m.user_id = $2"))
                .bind(workspace)
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await
        }

        async fn list_members(&self, workspace: WorkspaceId) -> sqlx::Result<Vec<Member>> {
            sqlx::query_as(concat!(member_select!(), "WHERE m.workspace_id = $1 ORDER BY lower(u.name), u.id"))
                .bind(workspace).fetch_all(&self.pool).await
        }

        async fn get_member(&self, workspace: WorkspaceId, user_id: Uuid) -> sqlx::Result<Option<Member>> {
            sqlx::query_as(concat!(member_select!(), "WHERE m.workspace_id = $1 AND m.user_id = $2"))
                .bind(workspace)
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await
        }

        async fn add_member(&self, workspace: WorkspaceId, user_id: Uuid, role: Role, audit: &AuditEntry) -> sqlx::Result<bool> {
            let mut tx = self.begin_write().await?;
            let inserted = sqlx::query(
                "INSERT INTO memberships (workspace_id, user_id, role, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (workspace_id, user_id) DO NOTHING",
            )
            .bind(workspace)
            .bind(user_id)
            .bind(role.as_str())
            .bind(audit.created_at)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted == 0 {
                return Ok(false);
            }
            crate::insert_audit!(&mut *tx, audit)?;
            tx.commit().await?;
            Ok(true)
        }

        async fn set_member_role(&self, workspace: WorkspaceId, user_id: Uuid, role: Role, audit: &AuditEntry) -> sqlx::Result<MemberChange> {
            let mut tx = self.begin_write().await?;
            guard_last_owner!(tx, workspace, user_id, role == Role::Owner);
            sqlx::query("UPDATE memberships SET role = $3 WHERE workspace_id = $1 AND user_id = $2")
                .bind(workspace)
                .bind(user_id)
                .bind(role.as_str())
                .execute(&mut *tx)
                .await?;
            crate::insert_audit!(&mut *tx, audit)?;
            tx.commit().await?;
            Ok(MemberChange::Done)
        }

        async fn remove_member(&self, workspace: WorkspaceId, user_id: Uuid, audit: &AuditEntry) -> sqlx::Result<MemberChange> {
            let mut tx = self.begin_write().await?;
            guard_last_owner!(tx, workspace, user_id, false);
            sqlx::query("DELETE FROM memberships WHERE workspace_id = $1 AND user_id = $2")
                .bind(workspace)
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
            crate::insert_audit!(&mut *tx, audit)?;
            tx.commit().await?;
            Ok(MemberChange::Done)
        }

        async fn create_invite(&self, invite: &NewInvite<'_>, audit: &AuditEntry) -> sqlx::Result<()> {
            let mut tx = self.begin_write().await?;
            sqlx::query(concat!(
                "UPDATE invites SET revoked_at = $3 WHERE workspace_id = $1 AND email_normalized = $2 AND",
                open_invite!()
            ))
                .bind(invite.workspace_id)
                .bind(invite.email_normalized)
                .bind(invite.created_at)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO invites (id, workspace_id, email, email_normalized, role, token_hash, created_by, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(invite.id)
            .bind(invite.workspace_id)
            .bind(invite.email)
            .bind(invite.email_normalized)
            .bind(invite.role.as_str())
            .bind(invite.token_hash)
            .bind(invite.created_by)
            .bind(invite.created_at)
            .bind(invite.expires_at)
            .execute(&mut *tx)
            .await?;
            crate::insert_audit!(&mut *tx, audit)?;
            tx.commit().await
        }

        async fn list_open_invites(&self, workspace: WorkspaceId, now: OffsetDateTime) -> sqlx::Result<Vec<Invite>> {
            sqlx::query_as(concat!(
                "SELECT id, email, role AS role_text, created_at, expires_at FROM invites WHERE workspace_id = $1 AND",
                open_invite!(),
                "AND expires_at > $2 ORDER BY created_at, id"
            ))
            .bind(workspace).bind(now).fetch_all(&self.pool).await
        }

        async fn revoke_invite(&self, workspace: WorkspaceId, invite_id: Uuid, now: OffsetDateTime, audit: &AuditEntry) -> sqlx::Result<bool> {
            let mut tx = self.begin_write().await?;
            let changed = sqlx::query(concat!(
                "UPDATE invites SET revoked_at = $3 WHERE workspace_id = $1 AND id = $2 AND",
                open_invite!()
            ))
                .bind(workspace)
                .bind(invite_id)
                .bind(now)
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

        async fn find_open_invite(&self, token_hash: &[u8], now: OffsetDateTime) -> sqlx::Result<Option<InviteLookup>> {
            sqlx::query_as(
                "SELECT i.id, i.workspace_id, w.name AS workspace_name, o.name AS organization_name, \
                 i.email, i.email_normalized, i.role AS role_text, i.expires_at \
                 FROM invites i JOIN workspaces w ON w.id = i.workspace_id \
                 JOIN organizations o ON o.id = w.organization_id \
                 WHERE i.token_hash = $1 AND i.accepted_at IS NULL AND i.revoked_at IS NULL AND i.expires_at > $2",
            )
            .bind(token_hash).bind(now).fetch_optional(&self.pool).await
        }

        async fn accept_invite(&self, invite: &InviteLookup, user_id: Uuid, now: OffsetDateTime, audit: &AuditEntry) -> sqlx::Result<AcceptOutcome> {
            let mut tx = self.begin_write().await?;
            let claimed = sqlx::query(concat!(
                "UPDATE invites SET accepted_at = $2, accepted_by = $3 WHERE id = $1 AND",
                open_invite!(),
                "AND expires_at > $2"
            ))
                .bind(invite.id)
                .bind(now)
                .bind(user_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if claimed == 0 {
                return Ok(AcceptOutcome::Gone);
            }
            let joined = sqlx::query(
                "INSERT INTO memberships (workspace_id, user_id, role, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (workspace_id, user_id) DO NOTHING",
            )
            .bind(invite.workspace_id)
            .bind(user_id)
            .bind(&invite.role_text)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            crate::insert_audit!(&mut *tx, audit)?;
            tx.commit().await?;
            Ok(if joined == 1 { AcceptOutcome::Joined } else { AcceptOutcome::AlreadyMember })
        }

        async fn workspace_exists(&self, workspace: WorkspaceId) -> sqlx::Result<bool> {
            // COUNT(*) is a bigint on both backends (a bare 1 is int4 on PostgreSQL).
            let found: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM workspaces WHERE id = $1")
                .bind(workspace)
                .fetch_one(&self.pool)
                .await?;
            Ok(found > 0)
        }

        async fn find_organization_by_name(&self, name: &str) -> sqlx::Result<Option<Uuid>> {
            sqlx::query_scalar("SELECT id FROM organizations WHERE name = $1 ORDER BY created_at, id LIMIT 1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await
        }

        async fn find_workspace_in_org(&self, organization_id: Uuid, name: Option<&str>) -> sqlx::Result<Option<WorkspaceId>> {
            sqlx::query_scalar(
                "SELECT id FROM workspaces WHERE organization_id = $1 AND ($2 IS NULL OR name = $2) \
                 ORDER BY created_at, id LIMIT 1",
            )
            .bind(organization_id)
            .bind(name)
            .fetch_optional(&self.pool)
            .await
        }

        async fn workspace_time_zone(&self, workspace: WorkspaceId) -> sqlx::Result<Option<String>> {
            sqlx::query_scalar("SELECT time_zone FROM workspaces WHERE id = $1")
                .bind(workspace)
                .fetch_optional(&self.pool)
                .await
        }

        async fn set_workspace_time_zone(&self, workspace: WorkspaceId, time_zone: &str, audit: &AuditEntry) -> sqlx::Result<bool> {
            let mut tx = self.begin_write().await?;
            let changed = sqlx::query("UPDATE workspaces SET time_zone = $2 WHERE id = $1")
                .bind(workspace)
                .bind(time_zone)
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
    }
}
