//! Workspace administration: the rules, checked before the store is asked.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::store::{AcceptOutcome, NewInvite, NewWorkspace};
use super::zone::Zone;
use super::{MemberChange, Role, Tenant, WorkspaceId};
use crate::audit::AuditEntry;
use crate::auth::session::random_token;
use crate::auth::{normalize_email, validate_email, validate_name};
use crate::error::{AppError, AppResult};
use crate::storage::{DynStore, is_unique_violation, now};

pub fn hash_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

pub fn parse_role(field: &str, value: &str) -> AppResult<Role> {
    Role::parse(value.trim())
        .ok_or_else(|| AppError::validation(field, "expected one of owner, admin, member"))
}

/// Admins may hand out roles up to admin; only owners make or unmake owners.
fn require_may_grant(tenant: &Tenant, role: Role) -> AppResult<()> {
    tenant.require_admin("manage members")?;
    if role == Role::Owner && tenant.role != Role::Owner {
        return Err(AppError::Forbidden(
            "only owners can grant the owner role".into(),
        ));
    }
    Ok(())
}

pub async fn create_workspace(
    store: &DynStore,
    tenant: &Tenant,
    name: &str,
) -> AppResult<WorkspaceId> {
    tenant.require_admin("manage members")?;
    let name = validate_name("name", name)?;
    let id = WorkspaceId(Uuid::now_v7());
    let audit = AuditEntry::new(Some(id), Some(tenant.user_id), "workspace.create")
        .target("workspace", id)
        .details(serde_json::json!({ "name": name }));
    let created_at = audit.created_at;
    let result = store
        .create_workspace(
            &NewWorkspace {
                id,
                organization_id: tenant.organization_id,
                name: &name,
                owner: tenant.user_id,
                created_at,
            },
            &audit,
        )
        .await;
    match result {
        Ok(()) => Ok(id),
        Err(e) if is_unique_violation(&e) => Err(AppError::conflict(
            "name",
            "a workspace with this name already exists in the organization",
        )),
        Err(e) => Err(e.into()),
    }
}

/// The workspace's time zone (UTC when unset or unreadable).
pub async fn time_zone(store: &DynStore, workspace: WorkspaceId) -> AppResult<Zone> {
    Ok(store
        .workspace_time_zone(workspace)
        .await?
        .map_or_else(Zone::utc, |name| Zone::from_stored(&name)))
}

/// Admins set the zone pages show times in; unknown names are 422 on
/// `time_zone` and change nothing.
pub async fn set_time_zone(store: &DynStore, tenant: &Tenant, input: &str) -> AppResult<Zone> {
    tenant.require_admin("change workspace settings")?;
    let zone = Zone::parse("time_zone", input)?;
    let audit = AuditEntry::new(
        Some(tenant.workspace_id),
        Some(tenant.user_id),
        "workspace.time_zone",
    )
    .target("workspace", tenant.workspace_id)
    .details(serde_json::json!({ "timeZone": zone.name() }));
    if !store
        .set_workspace_time_zone(tenant.workspace_id, zone.name(), &audit)
        .await?
    {
        return Err(AppError::not_found("workspace not found"));
    }
    Ok(zone)
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedInvite {
    pub id: Uuid,
    pub email: String,
    pub role: Role,
    /// The link holds the only copy of the token; it is shown once.
    pub invite_url: String,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// Adding someone by email is always an invite bound to that email: an
/// existing account joins only by accepting it, and the answer is the same
/// whether or not the address has an account, so it can't be used to find
/// out who has one.
pub async fn invite(
    store: &DynStore,
    tenant: &Tenant,
    email: &str,
    role: Role,
    public_url: &str,
    ttl_hours: u32,
) -> AppResult<CreatedInvite> {
    require_may_grant(tenant, role)?;
    validate_email("email", email)?;
    let email = email.trim();
    let email_normalized = normalize_email(email);
    if let Some(user) = store.find_user_by_email(&email_normalized).await?
        && store
            .get_member(tenant.workspace_id, user.id)
            .await?
            .is_some()
    {
        return Err(AppError::conflict(
            "email",
            "this user is already a member of the workspace",
        ));
    }
    let token = random_token();
    let token_hash = hash_token(&token);
    let id = Uuid::now_v7();
    let audit = AuditEntry::new(
        Some(tenant.workspace_id),
        Some(tenant.user_id),
        "invite.create",
    )
    .target("invite", id)
    .details(serde_json::json!({ "email": email, "role": role }));
    let created_at = audit.created_at;
    let expires_at = created_at + Duration::hours(i64::from(ttl_hours));
    store
        .create_invite(
            &NewInvite {
                id,
                workspace_id: tenant.workspace_id,
                email,
                email_normalized: &email_normalized,
                role,
                token_hash: &token_hash,
                created_by: tenant.user_id,
                created_at,
                expires_at,
            },
            &audit,
        )
        .await?;
    Ok(CreatedInvite {
        id,
        email: email.to_owned(),
        role,
        invite_url: format!("{public_url}/invites/{token}"),
        expires_at,
    })
}

pub async fn revoke_invite(store: &DynStore, tenant: &Tenant, invite_id: Uuid) -> AppResult<()> {
    tenant.require_admin("manage members")?;
    let audit = AuditEntry::new(
        Some(tenant.workspace_id),
        Some(tenant.user_id),
        "invite.revoke",
    )
    .target("invite", invite_id);
    if store
        .revoke_invite(tenant.workspace_id, invite_id, now(), &audit)
        .await?
    {
        Ok(())
    } else {
        Err(AppError::not_found("invite not found"))
    }
}

fn member_change(outcome: MemberChange) -> AppResult<()> {
    match outcome {
        MemberChange::Done => Ok(()),
        MemberChange::NotFound => Err(AppError::not_found("member not found")),
        MemberChange::LastOwner => Err(AppError::conflict(
            "role",
            "a workspace needs at least one owner; make someone else owner first",
        )),
    }
}

pub async fn change_role(
    store: &DynStore,
    tenant: &Tenant,
    user_id: Uuid,
    role: Role,
) -> AppResult<()> {
    require_may_grant(tenant, role)?;
    let target = store
        .get_member(tenant.workspace_id, user_id)
        .await?
        .ok_or_else(|| AppError::not_found("member not found"))?;
    if target.role_text == "owner" && tenant.role != Role::Owner {
        return Err(AppError::Forbidden(
            "only owners can change an owner's role".into(),
        ));
    }
    let audit = AuditEntry::new(
        Some(tenant.workspace_id),
        Some(tenant.user_id),
        "member.role",
    )
    .target("user", user_id)
    .details(serde_json::json!({ "from": target.role_text, "to": role }));
    member_change(
        store
            .set_member_role(tenant.workspace_id, user_id, role, &audit)
            .await?,
    )
}

/// Admins remove others; anyone may leave (unless they are the last owner).
pub async fn remove_member(store: &DynStore, tenant: &Tenant, user_id: Uuid) -> AppResult<()> {
    let leaving = user_id == tenant.user_id;
    if !leaving {
        tenant.require_admin("manage members")?;
    }
    let target = store
        .get_member(tenant.workspace_id, user_id)
        .await?
        .ok_or_else(|| AppError::not_found("member not found"))?;
    if target.role_text == "owner" && tenant.role != Role::Owner {
        return Err(AppError::Forbidden(
            "only owners can remove an owner".into(),
        ));
    }
    let audit = AuditEntry::new(
        Some(tenant.workspace_id),
        Some(tenant.user_id),
        "member.remove",
    )
    .target("user", user_id);
    member_change(
        store
            .remove_member(tenant.workspace_id, user_id, &audit)
            .await?,
    )
}

pub async fn accept_invite(
    store: &DynStore,
    user_id: Uuid,
    user_email: &str,
    token: &str,
) -> AppResult<WorkspaceId> {
    let invite = store
        .find_open_invite(&hash_token(token), now())
        .await?
        .ok_or_else(|| {
            AppError::not_found("this invite link is invalid, expired or already used")
        })?;
    if invite.email_normalized != normalize_email(user_email) {
        return Err(AppError::Forbidden(format!(
            "this invite was sent to {}; log in with that account to accept it",
            invite.email
        )));
    }
    let audit = AuditEntry::new(Some(invite.workspace_id), Some(user_id), "invite.accept")
        .target("invite", invite.id);
    match store.accept_invite(&invite, user_id, now(), &audit).await? {
        AcceptOutcome::Joined | AcceptOutcome::AlreadyMember => Ok(invite.workspace_id),
        AcceptOutcome::Gone => Err(AppError::not_found(
            "this invite link is invalid, expired or already used",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(role: Role) -> Tenant {
        Tenant {
            workspace_id: WorkspaceId(Uuid::nil()),
            user_id: Uuid::nil(),
            role,
            workspace_name: "w".into(),
            organization_id: Uuid::nil(),
            organization_name: "o".into(),
        }
    }

    #[test]
    fn grant_rules() {
        assert!(require_may_grant(&tenant(Role::Member), Role::Member).is_err());
        assert!(require_may_grant(&tenant(Role::Admin), Role::Admin).is_ok());
        assert!(require_may_grant(&tenant(Role::Admin), Role::Owner).is_err());
        assert!(require_may_grant(&tenant(Role::Owner), Role::Owner).is_ok());
    }

    #[test]
    fn role_parsing_names_the_field() {
        assert_eq!(parse_role("role", " admin ").unwrap(), Role::Admin);
        let err = parse_role("role", "superuser").unwrap_err();
        assert!(matches!(err, AppError::Validation { field: Some(f), .. } if f == "role"));
    }

    #[test]
    fn token_hash_is_stable_and_not_the_token() {
        assert_eq!(hash_token("abc"), hash_token("abc"));
        assert_ne!(hash_token("abc"), b"abc".to_vec());
    }
}
