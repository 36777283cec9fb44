use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{Layout, ShownOnce, parse_path_id, redirect_with_outcome};
use crate::app::AppState;
use crate::auth::extract::CurrentTenant;
use crate::auth::reset;
use crate::error::AppResult;
use crate::input::SingleLine;
use crate::storage::now;
use crate::tenancy::service::{self, parse_role};
use crate::tenancy::{Invite, Member, Role};
use crate::web::extract::CsrfForm;

const BACK: &str = "/settings/members";

#[derive(Template, WebTemplate)]
#[template(path = "members.html")]
pub struct MembersPage {
    layout: Layout,
    workspace_name: String,
    members: Vec<Member>,
    invites: Vec<Invite>,
    grantable: Vec<&'static str>,
    all_roles: Vec<&'static str>,
    shown_once: Option<ShownOnce>,
}

impl MembersPage {
    fn same(&self, a: &str, b: &str) -> bool {
        a == b
    }
}

/// The members page, with a link just created shown once in it.
async fn render(
    state: &AppState,
    current: CurrentTenant,
    shown_once: Option<ShownOnce>,
) -> AppResult<Response> {
    current.tenant.require_admin("manage members")?;
    let CurrentTenant {
        user,
        session,
        tenant,
    } = current;
    let members = state.store.list_members(tenant.workspace_id).await?;
    let invites = state
        .store
        .list_open_invites(tenant.workspace_id, now())
        .await?;
    let grantable = Role::ALL
        .iter()
        .filter(|r| **r != Role::Owner || tenant.role == Role::Owner)
        .map(|r| r.as_str())
        .collect();
    let page = MembersPage {
        layout: Layout::signed_in(state, &session, &user, &tenant).await?,
        workspace_name: tenant.workspace_name.clone(),
        members,
        invites,
        grantable,
        all_roles: Role::ALL.iter().map(|r| r.as_str()).collect(),
        shown_once,
    };
    Ok(page.into_response())
}

pub async fn page(State(state): State<AppState>, current: CurrentTenant) -> AppResult<Response> {
    render(&state, current, None).await
}

#[derive(Deserialize)]
pub struct AddForm {
    email: SingleLine,
    role: SingleLine,
}

/// Invites by email, whether or not the address has an account; the link
/// is shown once in this response and stored nowhere.
pub async fn add(
    State(state): State<AppState>,
    current: CurrentTenant,
    form: CsrfForm<AddForm>,
) -> AppResult<Response> {
    let CsrfForm { form, session } = form;
    let created = match parse_role("role", &form.role) {
        Ok(role) => {
            service::invite(
                &state.store,
                &current.tenant,
                &form.email,
                role,
                &state.settings.public_url(),
                state.settings.auth.invite_ttl_hours,
            )
            .await
        }
        Err(err) => Err(err),
    };
    match created {
        Ok(invite) => {
            let shown = ShownOnce {
                message: format!(
                    "Invite for {} created. Send them this link; they join when they accept it. \
                     It is shown once and works until {}.",
                    invite.email,
                    invite.expires_at.date()
                ),
                value: invite.invite_url,
                label: "Invite link",
                testid: "invite-link",
            };
            render(&state, current, Some(shown)).await
        }
        Err(err) => redirect_with_outcome(&session, BACK, Err(err)).await,
    }
}

/// A single-use password reset link for a member, shown once.
pub async fn reset_password(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path(user_id): Path<String>,
    form: CsrfForm<serde::de::IgnoredAny>,
) -> AppResult<Response> {
    let user_id = parse_path_id(&user_id, "member")?;
    let created = reset::create_link(
        &state.store,
        &current.tenant,
        user_id,
        &state.settings.public_url(),
    )
    .await;
    match created {
        Ok(link) => {
            let shown = ShownOnce {
                message: format!(
                    "Password reset link for {}. Send it to them; it works once, until {} {:02}:{:02} UTC.",
                    link.email,
                    link.expires_at.date(),
                    link.expires_at.hour(),
                    link.expires_at.minute()
                ),
                value: link.reset_url,
                label: "Password reset link",
                testid: "reset-link",
            };
            render(&state, current, Some(shown)).await
        }
        Err(err) => redirect_with_outcome(&form.session, BACK, Err(err)).await,
    }
}

#[derive(Deserialize)]
pub struct RoleForm {
    role: SingleLine,
}

pub async fn change_role(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path(user_id): Path<String>,
    form: CsrfForm<RoleForm>,
) -> AppResult<Response> {
    let user_id = parse_path_id(&user_id, "member")?;
    let outcome = match parse_role("role", &form.form.role) {
        Ok(role) => service::change_role(&state.store, &current.tenant, user_id, role)
            .await
            .map(|()| format!("Role changed to {role}.")),
        Err(err) => Err(err),
    };
    redirect_with_outcome(&form.session, BACK, outcome).await
}

pub async fn remove(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path(user_id): Path<String>,
    form: CsrfForm<serde::de::IgnoredAny>,
) -> AppResult<Response> {
    let user_id = parse_path_id(&user_id, "member")?;
    let leaving = user_id == current.user.id;
    let outcome = service::remove_member(&state.store, &current.tenant, user_id).await;
    let back = if leaving { "/" } else { BACK };
    redirect_with_outcome(
        &form.session,
        back,
        outcome.map(|()| "Member removed.".to_owned()),
    )
    .await
}

pub async fn revoke_invite(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path(invite_id): Path<String>,
    form: CsrfForm<serde::de::IgnoredAny>,
) -> AppResult<Response> {
    let invite_id = parse_path_id(&invite_id, "invite")?;
    let outcome = service::revoke_invite(&state.store, &current.tenant, invite_id).await;
    redirect_with_outcome(
        &form.session,
        BACK,
        outcome.map(|()| "Invite revoked.".to_owned()),
    )
    .await
}
