//! Password reset. An admin creates a single-use link for a member of
//! their workspace (shown once; only its SHA-256 is stored; it expires);
//! the operator sets a password directly from the command line. Either way
//! the new password follows the sign-up policy, every session of the user
//! ends, and the change is audited.

use serde::Serialize;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::store::{NewPasswordReset, PasswordResetLookup};
use super::{normalize_email, password, validate_password};
use crate::audit::AuditEntry;
use crate::auth::session::random_token;
use crate::error::{AppError, AppResult};
use crate::storage::{DynStore, now};
use crate::tenancy::service::hash_token;
use crate::tenancy::{Role, Tenant};

/// How long a reset link works.
pub const RESET_TTL_HOURS: i64 = 24;

const GONE: &str = "this password reset link is invalid, expired or already used";

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedReset {
    pub user_id: Uuid,
    pub email: String,
    /// The link holds the only copy of the token; it is shown once.
    pub reset_url: String,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// A reset link takes over the whole account, so the admin must hold
/// authority over every workspace the person belongs to, and only owners
/// reset owners. Anyone else is the operator's job (the CLI).
async fn require_may_reset(
    store: &DynStore,
    tenant: &Tenant,
    target_role: &str,
    target: Uuid,
) -> AppResult<()> {
    tenant.require_admin("reset passwords")?;
    if target_role == Role::Owner.as_str() && tenant.role != Role::Owner {
        return Err(AppError::Forbidden(
            "only owners can reset an owner's password".into(),
        ));
    }
    if store.memberships_beyond(tenant.user_id, target).await? > 0 {
        return Err(AppError::Forbidden(
            "this person also belongs to workspaces you don't administer (or owns one); \
             the server operator can reset the password with `plugboard user reset-password`"
                .into(),
        ));
    }
    Ok(())
}

pub async fn create_link(
    store: &DynStore,
    tenant: &Tenant,
    user_id: Uuid,
    public_url: &str,
) -> AppResult<CreatedReset> {
    tenant.require_admin("reset passwords")?;
    let member = store
        .get_member(tenant.workspace_id, user_id)
        .await?
        .ok_or_else(|| AppError::not_found("member not found"))?;
    require_may_reset(store, tenant, &member.role_text, user_id).await?;
    let token = random_token();
    let token_hash = hash_token(&token);
    let id = Uuid::now_v7();
    let audit = AuditEntry::new(
        Some(tenant.workspace_id),
        Some(tenant.user_id),
        "password_reset.create",
    )
    .target("user", user_id);
    let created_at = audit.created_at;
    let expires_at = created_at + Duration::hours(RESET_TTL_HOURS);
    store
        .create_password_reset(
            &NewPasswordReset {
                id,
                workspace_id: tenant.workspace_id,
                user_id,
                token_hash: &token_hash,
                created_by: tenant.user_id,
                created_at,
                expires_at,
            },
            &audit,
        )
        .await?;
    Ok(CreatedReset {
        user_id,
        email: member.email,
        reset_url: format!("{public_url}/reset/{token}"),
        expires_at,
    })
}

/// The open link behind `token`, or 404.
pub async fn find_link(store: &DynStore, token: &str) -> AppResult<PasswordResetLookup> {
    store
        .find_open_password_reset(&hash_token(token), now())
        .await?
        .ok_or_else(|| AppError::not_found(GONE))
}

/// Sets the new password through the link and consumes it.
pub async fn complete(
    store: &DynStore,
    token: &str,
    new_password: &str,
    min_password_length: usize,
) -> AppResult<()> {
    let link = find_link(store, token).await?;
    validate_password(new_password, min_password_length)?;
    let password_hash = password::hash(new_password.to_owned()).await?;
    let audit = AuditEntry::new(
        Some(link.workspace_id),
        Some(link.user_id),
        "user.password_reset",
    )
    .target("user", link.user_id)
    .details(serde_json::json!({ "via": "link", "link": link.id }));
    if store
        .set_password(link.user_id, Some(link.id), &password_hash, now(), &audit)
        .await?
    {
        Ok(())
    } else {
        Err(AppError::not_found(GONE))
    }
}

/// The operator's way (CLI): no link, no workspace.
pub async fn set_by_operator(
    store: &DynStore,
    email: &str,
    new_password: &str,
    min_password_length: usize,
) -> AppResult<Uuid> {
    validate_password(new_password, min_password_length)?;
    let user = store
        .find_user_by_email(&normalize_email(email))
        .await?
        .ok_or_else(|| AppError::not_found("no account uses this email"))?;
    let password_hash = password::hash(new_password.to_owned()).await?;
    let audit = AuditEntry::new(None, None, "user.password_reset")
        .target("user", user.id)
        .details(serde_json::json!({ "via": "cli" }));
    if store
        .set_password(user.id, None, &password_hash, now(), &audit)
        .await?
    {
        Ok(user.id)
    } else {
        Err(AppError::not_found("no account uses this email"))
    }
}
