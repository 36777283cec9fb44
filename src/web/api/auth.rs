use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use tower_sessions::Session;

use crate::app::AppState;
use crate::auth::extract::{ClientIp, CurrentUser};
use crate::auth::{self, LoginInput, SignupInput, SignupPolicy, User, normalize_email, session};
use crate::error::AppResult;
use crate::tenancy::{WorkspaceId, WorkspaceMembership};
use crate::web::extract::ApiJson;
use crate::web::openapi::{ErrorBody, responses as errors};

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Me {
    user: User,
    workspaces: Vec<WorkspaceView>,
    current_workspace_id: Option<WorkspaceId>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceView {
    #[serde(flatten)]
    membership: WorkspaceMembership,
    #[schema(value_type = crate::tenancy::Role)]
    role: &'static str,
}

impl From<WorkspaceMembership> for WorkspaceView {
    fn from(membership: WorkspaceMembership) -> Self {
        let role = membership.role().as_str();
        WorkspaceView { membership, role }
    }
}

async fn me_of(state: &AppState, user: User, session: &Session) -> AppResult<Me> {
    let workspaces = state.store.workspaces_for_user(user.id).await?;
    let chosen: Option<WorkspaceId> = session.get(session::WORKSPACE_KEY).await.ok().flatten();
    let current_workspace_id =
        match chosen.filter(|ws| workspaces.iter().any(|m| m.workspace_id == *ws)) {
            Some(ws) => Some(ws),
            None => state
                .store
                .default_workspace(user.id)
                .await?
                .map(|m| m.workspace_id),
        };
    Ok(Me {
        user,
        workspaces: workspaces.into_iter().map(WorkspaceView::from).collect(),
        current_workspace_id,
    })
}

#[utoipa::path(
    post,
    path = "/auth/signup",
    operation_id = "signup",
    tag = "auth",
    summary = "Create an account (and an organization, or join by invite) and sign in",
    request_body = SignupInput,
    responses(
        (status = 201, description = "Signed up and signed in; sets the session cookie.", body = Me),
        (status = 403, description = "Sign-up is closed on this server.", body = ErrorBody),
        errors::Conflict,
        errors::Body
    )
)]
pub async fn signup(
    State(state): State<AppState>,
    session: Session,
    ApiJson(input): ApiJson<SignupInput>,
) -> AppResult<(StatusCode, Json<Me>)> {
    let created = auth::signup(
        &state.store,
        &SignupPolicy::from_settings(&state.settings),
        &input,
    )
    .await?;
    session::begin(&session, created.user_id, Some(created.workspace_id)).await?;
    let user = state
        .store
        .get_user(created.user_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("user vanished after sign-up"))?;
    Ok((
        StatusCode::CREATED,
        Json(me_of(&state, user, &session).await?),
    ))
}

#[utoipa::path(
    post,
    path = "/auth/login",
    operation_id = "login",
    tag = "auth",
    summary = "Sign in with email and password",
    request_body = LoginInput,
    responses(
        (status = 200, description = "Signed in; sets the session cookie.", body = Me),
        (status = 401, description = "Invalid email or password (invalid_credentials).", body = ErrorBody),
        errors::RateLimited,
        errors::Body
    )
)]
pub async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    session: Session,
    ApiJson(input): ApiJson<LoginInput>,
) -> AppResult<Json<Me>> {
    state
        .login_throttle
        .check(ip, &normalize_email(&input.email))?;
    let user = auth::authenticate(&state.store, &input).await?;
    session::begin(&session, user.id, None).await?;
    Ok(Json(me_of(&state, user, &session).await?))
}

#[utoipa::path(
    post,
    path = "/auth/logout",
    operation_id = "logout",
    tag = "auth",
    summary = "End the session",
    responses((status = 204, description = "Signed out."), errors::JsonContentType)
)]
pub async fn logout(session: Session) -> AppResult<StatusCode> {
    session::end(&session).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get,
    path = "/me",
    operation_id = "me",
    tag = "auth",
    summary = "The signed-in user, their workspaces and the current one",
    security(("session_cookie" = [])),
    responses((status = 200, description = "The signed-in user.", body = Me), errors::SignedIn)
)]
pub async fn me(State(state): State<AppState>, current: CurrentUser) -> AppResult<Json<Me>> {
    Ok(Json(me_of(&state, current.user, &current.session).await?))
}
