//! Organizations → workspaces → memberships (owner / admin / member), invites.
//!
//! The tenancy boundary: a [`Tenant`] can only be built from a membership row,
//! and every tenant query in the store takes a [`WorkspaceId`]. Anything of a
//! workspace the caller is not a member of is reported as not found, so a
//! foreign id can't be told apart from a missing one.

pub mod service;
pub mod store;
pub mod zone;

use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema,
)]
#[sqlx(transparent)]
#[serde(transparent)]
pub struct WorkspaceId(pub Uuid);

impl fmt::Display for WorkspaceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Member,
    Admin,
    Owner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }

    pub fn parse(value: &str) -> Option<Role> {
        match value {
            "owner" => Some(Role::Owner),
            "admin" => Some(Role::Admin),
            "member" => Some(Role::Member),
            _ => None,
        }
    }

    pub fn can_manage_members(self) -> bool {
        self >= Role::Admin
    }

    pub const ALL: [Role; 3] = [Role::Owner, Role::Admin, Role::Member];
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A workspace as seen by one of its members.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceMembership {
    pub workspace_id: WorkspaceId,
    pub workspace_name: String,
    pub organization_id: Uuid,
    pub organization_name: String,
    #[serde(skip)]
    pub role_text: String,
}

impl WorkspaceMembership {
    pub fn role(&self) -> Role {
        // The CHECK constraint admits only the three roles; anything else is
        // treated as the least privileged rather than trusted.
        Role::parse(&self.role_text).unwrap_or(Role::Member)
    }
}

/// Proof that `user_id` belongs to `workspace_id` with `role`.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub workspace_id: WorkspaceId,
    pub user_id: Uuid,
    pub role: Role,
    pub workspace_name: String,
    pub organization_id: Uuid,
    pub organization_name: String,
}

impl Tenant {
    /// Refuses (403) anyone but owners and admins; `what` finishes the
    /// sentence "only workspace owners and admins can …".
    pub fn require_admin(&self, what: &str) -> crate::error::AppResult<()> {
        if self.role.can_manage_members() {
            Ok(())
        } else {
            Err(crate::error::AppError::Forbidden(format!(
                "only workspace owners and admins can {what}"
            )))
        }
    }

    pub fn from_membership(user_id: Uuid, m: &WorkspaceMembership) -> Self {
        Tenant {
            workspace_id: m.workspace_id,
            user_id,
            role: m.role(),
            workspace_name: m.workspace_name.clone(),
            organization_id: m.organization_id,
            organization_name: m.organization_name.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    pub user_id: Uuid,
    pub name: String,
    pub email: String,
    #[serde(rename = "role")]
    #[schema(value_type = Role)]
    pub role_text: String,
    #[serde(with = "time::serde::rfc3339")]
    pub joined_at: OffsetDateTime,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Invite {
    pub id: Uuid,
    pub email: String,
    #[serde(rename = "role")]
    #[schema(value_type = Role)]
    pub role_text: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// An open invite found by its link token, with where it leads.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct InviteLookup {
    pub id: Uuid,
    pub workspace_id: WorkspaceId,
    pub workspace_name: String,
    pub organization_name: String,
    pub email: String,
    pub email_normalized: String,
    pub role_text: String,
    pub expires_at: OffsetDateTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberChange {
    Done,
    NotFound,
    /// Refused: the workspace would be left without an owner.
    LastOwner,
}
