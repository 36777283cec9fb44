use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};

use super::{Layout, redirect_with_outcome};
use crate::app::AppState;
use crate::auth::extract::{CurrentUser, MaybeUser};
use crate::auth::session;
use crate::error::{AppError, AppResult};
use crate::storage::now;
use crate::tenancy::service::{self, hash_token};
use crate::web::extract::CsrfForm;

#[derive(Template, WebTemplate)]
#[template(path = "invite.html")]
pub struct InvitePage {
    layout: Layout,
    token: String,
    workspace_name: String,
    organization_name: String,
    role: String,
    email: String,
    signed_in: bool,
}

pub async fn show(
    State(state): State<AppState>,
    maybe: MaybeUser,
    Path(token): Path<String>,
) -> AppResult<Response> {
    let invite = state
        .store
        .find_open_invite(&hash_token(&token), now())
        .await?
        .ok_or_else(|| {
            AppError::not_found("this invite link is invalid, expired or already used")
        })?;
    Ok(InvitePage {
        layout: Layout::for_session(&state, &maybe.session, maybe.user.as_ref()).await?,
        token,
        workspace_name: invite.workspace_name,
        organization_name: invite.organization_name,
        role: invite.role_text,
        email: invite.email,
        signed_in: maybe.user.is_some(),
    }
    .into_response())
}

pub async fn accept(
    State(state): State<AppState>,
    current: CurrentUser,
    Path(token): Path<String>,
    form: CsrfForm<serde::de::IgnoredAny>,
) -> AppResult<Response> {
    let ws =
        service::accept_invite(&state.store, current.user.id, &current.user.email, &token).await?;
    session::choose_workspace(&state.store, &form.session, current.user.id, ws).await?;
    redirect_with_outcome(
        &form.session,
        "/",
        Ok("You joined the workspace.".to_owned()),
    )
    .await
}
