use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::kit::{ConfirmPage, Confirmation, FormState, Table, TableQuery};
use super::{Layout, ShownOnce, parse_path_id, redirect_with_outcome, with_status};
use crate::app::AppState;
use crate::auth::extract::CurrentTenant;
use crate::auth::reset;
use crate::error::{AppError, AppResult};
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
    table: Table,
    invites: Vec<Invite>,
    grantable: Vec<&'static str>,
    all_roles: Vec<&'static str>,
    shown_once: Option<ShownOnce>,
    add_form: FormState,
    me: uuid::Uuid,
}

impl MembersPage {
    fn same(&self, a: &str, b: &str) -> bool {
        a == b
    }
}

const PAGE_SIZE: usize = 25;

type MemberOrder = fn(&Member, &Member) -> std::cmp::Ordering;
const MEMBER_COLUMNS: [(&str, MemberOrder); 4] = [
    ("name", |a, b| {
        a.name.to_lowercase().cmp(&b.name.to_lowercase())
    }),
    ("email", |a, b| {
        a.email.to_lowercase().cmp(&b.email.to_lowercase())
    }),
    ("role", |a, b| a.role_text.cmp(&b.role_text)),
    ("joined", |a, b| a.joined_at.cmp(&b.joined_at)),
];

/// The members page, with a link just created shown once in it.
async fn render(
    state: &AppState,
    current: CurrentTenant,
    query: &TableQuery,
    shown_once: Option<ShownOnce>,
) -> AppResult<Response> {
    let add_form = FormState::with_values([("role", "member")]);
    render_form(state, current, query, shown_once, add_form).await
}

async fn render_form(
    state: &AppState,
    current: CurrentTenant,
    query: &TableQuery,
    shown_once: Option<ShownOnce>,
    add_form: FormState,
) -> AppResult<Response> {
    current.tenant.require_admin("manage members")?;
    let CurrentTenant {
        user,
        session,
        tenant,
    } = current;
    let mut members = state.store.list_members(tenant.workspace_id).await?;
    let table = Table::apply(query, &MEMBER_COLUMNS, "name", PAGE_SIZE, &mut members);
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
        table,
        invites,
        grantable,
        all_roles: Role::ALL.iter().map(|r| r.as_str()).collect(),
        shown_once,
        add_form,
        me: user.id,
    };
    Ok(page.into_response())
}

pub async fn page(
    State(state): State<AppState>,
    current: CurrentTenant,
    Query(query): Query<TableQuery>,
) -> AppResult<Response> {
    render(&state, current, &query, None).await
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
            render(&state, current, &TableQuery::default(), Some(shown)).await
        }
        // A bad address or role, or someone already in: the form again
        // (422/409), the error beside its field, what was typed kept.
        Err(err @ (AppError::Validation { .. } | AppError::Conflict { .. })) => {
            let typed = FormState::with_values([
                ("email", form.email.as_str()),
                ("role", form.role.as_str()),
            ])
            .with_error(&err, &["email", "role"]);
            let page = render_form(&state, current, &TableQuery::default(), None, typed).await?;
            Ok(with_status(err.status(), page))
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
            render(&state, current, &TableQuery::default(), Some(shown)).await
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
    form: CsrfForm<Confirmation>,
) -> AppResult<Response> {
    let user_id = parse_path_id(&user_id, "member")?;
    let leaving = user_id == current.user.id;
    if !form.form.given() {
        if !leaving {
            current.tenant.require_admin("manage members")?;
        }
        // Another workspace's member is not found, like a made-up id.
        let member = state
            .store
            .get_member(current.tenant.workspace_id, user_id)
            .await?
            .ok_or_else(|| AppError::not_found("member not found"))?;
        let layout =
            Layout::signed_in(&state, &form.session, &current.user, &current.tenant).await?;
        let ws = &current.tenant.workspace_name;
        let (title, message) = if leaving {
            (
                "Leave workspace".to_owned(),
                format!("You will lose access to {ws} until someone adds you again."),
            )
        } else {
            (
                "Remove member".to_owned(),
                format!(
                    "{} ({}) will lose access to {ws} at once.",
                    member.name, member.email
                ),
            )
        };
        let action = format!("{BACK}/{user_id}/remove");
        return Ok(ConfirmPage::new(layout, title, message, action, BACK).render());
    }
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
    form: CsrfForm<Confirmation>,
) -> AppResult<Response> {
    let invite_id = parse_path_id(&invite_id, "invite")?;
    if !form.form.given() {
        current.tenant.require_admin("manage members")?;
        let invite = state
            .store
            .list_open_invites(current.tenant.workspace_id, now())
            .await?
            .into_iter()
            .find(|i| i.id == invite_id)
            .ok_or_else(|| AppError::not_found("invite not found"))?;
        let layout =
            Layout::signed_in(&state, &form.session, &current.user, &current.tenant).await?;
        let message = format!(
            "The invite link sent to {} stops working at once.",
            invite.email
        );
        let action = format!("/settings/invites/{invite_id}/revoke");
        return Ok(ConfirmPage::new(layout, "Revoke invite", message, action, BACK).render());
    }
    let outcome = service::revoke_invite(&state.store, &current.tenant, invite_id).await;
    redirect_with_outcome(
        &form.session,
        BACK,
        outcome.map(|()| "Invite revoked.".to_owned()),
    )
    .await
}
