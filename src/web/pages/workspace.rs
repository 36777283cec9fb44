use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::kit::FormState;
use super::{Layout, redirect_with_outcome, with_status};
use crate::app::AppState;
use crate::auth::extract::{CurrentTenant, CurrentUser};
use crate::auth::session;
use crate::error::{AppError, AppResult};
use crate::input::{Name, SingleLine};
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
    new_workspace: FormState,
}

pub async fn home(State(state): State<AppState>, current: CurrentTenant) -> AppResult<Response> {
    render(&state, current, FormState::default()).await
}

async fn render(
    state: &AppState,
    current: CurrentTenant,
    new_workspace: FormState,
) -> AppResult<Response> {
    let CurrentTenant {
        user,
        session,
        tenant,
    } = current;
    let members = state.store.list_members(tenant.workspace_id).await?;
    Ok(HomePage {
        layout: Layout::signed_in(state, &session, &user, &tenant).await?,
        workspace_name: tenant.workspace_name.clone(),
        organization_name: tenant.organization_name.clone(),
        role: tenant.role.as_str(),
        members,
        can_manage: tenant.role.can_manage_members(),
        provider_count: state.providers.len(),
        new_workspace,
    }
    .into_response())
}

#[derive(Deserialize)]
pub struct NewWorkspaceForm {
    name: SingleLine,
}

/// A bad name re-renders the home page (422) with the error beside the
/// field and the name kept; nothing is created.
pub async fn create(
    State(state): State<AppState>,
    current: CurrentTenant,
    form: CsrfForm<NewWorkspaceForm>,
) -> AppResult<Response> {
    let CsrfForm { form, session } = form;
    let outcome = match Name::parse(form.name.as_str()) {
        Ok(name) => service::create_workspace(&state.store, &current.tenant, &name).await,
        Err(problem) => Err(AppError::validation("name", problem)),
    };
    match outcome {
        Ok(id) => {
            session::choose_workspace(&state.store, &session, current.user.id, id).await?;
            let message = format!("Workspace {} created.", form.name.trim());
            redirect_with_outcome(&session, "/", Ok(message)).await
        }
        Err(err @ (AppError::Validation { .. } | AppError::Conflict { .. })) => {
            let typed =
                FormState::with_values([("name", form.name.as_str())]).with_error(&err, &["name"]);
            let page = render(&state, current, typed).await?;
            Ok(with_status(err.status(), page))
        }
        Err(err) => redirect_with_outcome(&session, "/", Err(err)).await,
    }
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
