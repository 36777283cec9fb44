//! Accounts: sign-up, log-in, log-out, password hashing, log-in throttling,
//! server-side sessions and CSRF tokens for forms.

pub mod extract;
pub mod password;
pub mod reset;
pub mod session;
pub mod store;
pub mod throttle;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::audit::AuditEntry;
use crate::error::{AppError, AppResult};
use crate::input::{Name, SingleLine};
use crate::storage::{DynStore, now};
use crate::tenancy::WorkspaceId;
use crate::tenancy::service::hash_token;
use store::{CreateAccountOutcome, Landing, NewUser};

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_login_at: Option<OffsetDateTime>,
}

/// Longest password accepted: argon2 cost doesn't depend on it, but a
/// megabyte "password" is still not one.
pub const MAX_PASSWORD_LENGTH: usize = 1024;
const MAX_NAME_LENGTH: usize = 200;

/// Lower-cased, trimmed email used as the account identity.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// A deliberately plain check: one `@`, something either side, a dot in the
/// domain, no spaces. Deliverability is the invite flow's problem.
pub fn validate_email(field: &str, email: &str) -> AppResult<()> {
    let email = email.trim();
    let valid = email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && match email.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
            }
            None => false,
        };
    if valid {
        Ok(())
    } else {
        Err(AppError::validation(
            field,
            "expected an email address such as ana@example.com",
        ))
    }
}

pub fn validate_name(field: &str, value: &str) -> AppResult<String> {
    let value = value.trim();
    if value.is_empty() {
        return Err(AppError::validation(
            field,
            format!("{field} must not be empty"),
        ));
    }
    if value.chars().count() > MAX_NAME_LENGTH {
        return Err(AppError::validation(
            field,
            format!("{field} must be at most {MAX_NAME_LENGTH} characters"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(AppError::validation(
            field,
            format!("{field} must not contain control characters"),
        ));
    }
    Ok(value.to_owned())
}

pub fn validate_password(password: &str, min_len: usize) -> AppResult<()> {
    let len = password.chars().count();
    if len < min_len {
        return Err(AppError::validation(
            "password",
            format!("password must be at least {min_len} characters"),
        ));
    }
    if password.len() > MAX_PASSWORD_LENGTH {
        return Err(AppError::validation(
            "password",
            format!("password must be at most {MAX_PASSWORD_LENGTH} bytes"),
        ));
    }
    Ok(())
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct SignupInput {
    pub email: SingleLine,
    /// Any characters: only its hash is stored.
    #[schema(write_only)]
    pub password: String,
    pub name: Name,
    /// Required unless `invite_token` is given.
    #[serde(default)]
    pub organization: Option<Name>,
    #[serde(default, alias = "inviteToken")]
    #[schema(write_only)]
    pub invite_token: Option<SingleLine>,
}

#[derive(Debug, Clone)]
pub struct SignedUp {
    pub user_id: Uuid,
    pub workspace_id: WorkspaceId,
}

pub struct SignupPolicy {
    pub allow_signup: bool,
    pub min_password_length: usize,
}

impl SignupPolicy {
    pub fn from_settings(settings: &crate::config::Settings) -> Self {
        SignupPolicy {
            allow_signup: settings.auth.allow_signup,
            min_password_length: settings.auth.min_password_length,
        }
    }
}

/// Validates everything before touching the database, then writes the user
/// and their organization (or invite acceptance) in one transaction.
pub async fn signup(
    store: &DynStore,
    policy: &SignupPolicy,
    input: &SignupInput,
) -> AppResult<SignedUp> {
    validate_email("email", &input.email)?;
    let name = validate_name("name", &input.name)?;
    validate_password(&input.password, policy.min_password_length)?;
    let email = input.email.trim();
    let email_normalized = normalize_email(email);

    let invite = match input.invite_token.as_deref().filter(|t| !t.is_empty()) {
        Some(token) => {
            let found = store.find_open_invite(&hash_token(token), now()).await?;
            let invite = found.ok_or_else(|| {
                AppError::validation(
                    "inviteToken",
                    "this invite link is invalid, expired or already used",
                )
            })?;
            if invite.email_normalized != email_normalized {
                return Err(AppError::validation(
                    "email",
                    "this invite was sent to a different email address",
                ));
            }
            Some(invite)
        }
        None => None,
    };
    let organization = match (&invite, input.organization.as_deref()) {
        (Some(_), _) => String::new(),
        (None, Some(org)) => validate_name("organization", org)?,
        (None, None) => {
            return Err(AppError::validation(
                "organization",
                "organization must not be empty",
            ));
        }
    };
    if invite.is_none() && !policy.allow_signup && store.count_users().await? > 0 {
        return Err(AppError::Forbidden(
            "sign-up is closed on this server; ask a workspace admin for an invite link".into(),
        ));
    }

    let password_hash = password::hash(input.password.clone()).await?;
    let user_id = Uuid::now_v7();
    let created_at = now();
    let new_user = NewUser {
        id: user_id,
        email,
        email_normalized: &email_normalized,
        name: &name,
        password_hash: &password_hash,
        created_at,
    };
    let organization_id = Uuid::now_v7();
    let (landing, workspace_id) = match &invite {
        Some(invite) => (
            Landing::Invite {
                invite_id: invite.id,
                workspace_id: invite.workspace_id,
                role: &invite.role_text,
            },
            invite.workspace_id,
        ),
        None => {
            let workspace_id = WorkspaceId(Uuid::now_v7());
            (
                Landing::NewOrganization {
                    organization_id,
                    organization_name: &organization,
                    workspace_id,
                    workspace_name: &organization,
                },
                workspace_id,
            )
        }
    };
    let audit =
        AuditEntry::new(Some(workspace_id), Some(user_id), "user.signup").target("user", user_id);
    match store.create_account(&new_user, &landing, &audit).await? {
        CreateAccountOutcome::Created => Ok(SignedUp {
            user_id,
            workspace_id,
        }),
        CreateAccountOutcome::EmailTaken => Err(AppError::conflict(
            "email",
            "an account with this email already exists; log in instead",
        )),
        CreateAccountOutcome::InviteGone => Err(AppError::validation(
            "inviteToken",
            "this invite link is invalid, expired or already used",
        )),
    }
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct LoginInput {
    pub email: SingleLine,
    /// Any characters: it is only compared with a hash.
    #[schema(write_only)]
    pub password: String,
}

/// Checks credentials. Unknown email and wrong password are the same answer
/// and take the same time.
pub async fn authenticate(store: &DynStore, input: &LoginInput) -> AppResult<User> {
    let invalid = || AppError::InvalidCredentials("invalid email or password".into());
    if input.password.len() > MAX_PASSWORD_LENGTH {
        return Err(invalid());
    }
    let credentials = store
        .find_credentials(&normalize_email(&input.email))
        .await?;
    let Some(credentials) = credentials else {
        password::burn_equal_time(input.password.clone()).await;
        return Err(invalid());
    };
    if !password::verify(input.password.clone(), credentials.password_hash.clone()).await? {
        return Err(invalid());
    }
    store.record_login(credentials.id, now()).await?;
    store.get_user(credentials.id).await?.ok_or_else(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert!(validate_email("email", "ana@example.com").is_ok());
        assert!(validate_email("email", " Ana@Example.com ").is_ok());
        for bad in [
            "",
            "ana",
            "ana@",
            "@x.com",
            "ana@x",
            "a b@x.com",
            "a@b@c.com",
            "a@.com",
        ] {
            assert!(validate_email("email", bad).is_err(), "{bad}");
        }
        assert_eq!(normalize_email(" Ana@Example.COM "), "ana@example.com");
    }

    #[test]
    fn passwords_and_names() {
        assert!(validate_password("short", 10).is_err());
        assert!(validate_password("long enough!", 10).is_ok());
        assert!(validate_password(&"x".repeat(MAX_PASSWORD_LENGTH + 1), 10).is_err());
        assert!(validate_name("name", "  ").is_err());
        assert!(validate_name("name", "a\u{0}b").is_err());
        assert_eq!(validate_name("name", " Ana ").unwrap(), "Ana");
    }
}
