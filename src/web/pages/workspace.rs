use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{Layout, redirect_with_outcome};
use crate::app::AppState;
use crate::auth::extract::{CurrentTenant, CurrentUser};
use crate::auth::session;
use crate::error::{AppError, AppResult};
use crate::input::Name;
use crate::tenancy::{Member, WorkspaceId, service};
use crate::web::extract::CsrfForm;

#[derive(Template, WebTemplate)]
#[template(path = "home.html")]
pub struct HomePage {
    layout: Layout,
    workspace_name: String,
    organization_name: String,
    role: &'static str,
    members: Vec<Member>,
    can_manage: bool,
    provider_count: usize,
    new_workspace: super::kit::FormState,
}

pub async fn home(State(state): State<AppState>, current: CurrentTenant) -> AppResult<Response> {
    let CurrentTenant {
        user,
        session,
        tenant,
    } = current;
    let members = state.store.list_members(tenant.workspace_id).await?;
    Ok(HomePage {
        layout: Layout::signed_in(&state, &session, &user, &tenant).await?,
        workspace_name: tenant.workspace_name.clone(),
        organization_name: tenant.organization_name.clone(),
        role: tenant.role.as_str(),
        members,
        can_manage: tenant.role.can_manage_members(),
        provider_count: state.providers.len(),
        new_workspace: super::kit::FormState::default(),
    }
    .into_response())
}

#[derive(Deserialize)]
pub struct NewWorkspaceForm {
    name: Name,
}

pub async fn create(
    State(state): State<AppState>,
    current: CurrentTenant,
    form: CsrfForm<NewWorkspaceForm>,
) -> AppResult<Response> {
    let outcome = service::create_workspace(&state.store, &current.tenant, &form.form.name).await;
    if let Ok(id) = &outcome {
        session::choose_workspace(&state.store, &form.session, current.user.id, *id).await?;
    }
    let message = outcome.map(|_| format!("Workspace {} created.", form.form.name.trim()));
    redirect_with_outcome(&form.session, "/", message).await
}

/// A workspace the user isn't a member of is "not found", like one that
/// doesn't exist.
pub async fn switch(
    State(state): State<AppState>,
    current: CurrentUser,
    Path(raw_id): Path<String>,
    form: CsrfForm<serde::de::IgnoredAny>,
) -> AppResult<Response> {
    let id = super::parse_path_id(&raw_id, "workspace").map(WorkspaceId)?;
    let membership = state
        .store
        .membership(id, current.user.id)
        .await?
        .ok_or_else(|| AppError::not_found("workspace not found"))?;
    session::choose_workspace(&state.store, &form.session, current.user.id, id).await?;
    redirect_with_outcome(
        &form.session,
        "/",
        Ok(format!("Switched to {}.", membership.workspace_name)),
    )
    .await
}
