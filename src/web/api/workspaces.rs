use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::app::AppState;
use crate::audit::AuditRecord;
use crate::auth::extract::{CurrentTenant, CurrentUser, PathTenant};
use crate::auth::reset::{self, CreatedReset};
use crate::auth::session;
use crate::error::{AppError, AppResult};
use crate::input::{Name, SingleLine};
use crate::storage::now;
use crate::tenancy::service::{self, CreatedInvite, parse_role};
use crate::tenancy::{Invite, Member, Tenant, WorkspaceId};
use crate::web::extract::ApiJson;
use crate::web::parse_path_id;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceDetail {
    id: WorkspaceId,
    name: String,
    organization_id: Uuid,
    organization_name: String,
    role: &'static str,
}

impl From<&Tenant> for WorkspaceDetail {
    fn from(t: &Tenant) -> Self {
        WorkspaceDetail {
            id: t.workspace_id,
            name: t.workspace_name.clone(),
            organization_id: t.organization_id,
            organization_name: t.organization_name.clone(),
            role: t.role.as_str(),
        }
    }
}

pub async fn list(
    State(state): State<AppState>,
    current: CurrentUser,
) -> AppResult<Json<Vec<WorkspaceDetail>>> {
    let memberships = state.store.workspaces_for_user(current.user.id).await?;
    Ok(Json(
        memberships
            .iter()
            .map(|m| WorkspaceDetail::from(&Tenant::from_membership(current.user.id, m)))
            .collect(),
    ))
}

#[derive(Deserialize)]
pub struct CreateWorkspace {
    name: Name,
}

/// Creates a workspace in the organization of the current workspace.
pub async fn create(
    State(state): State<AppState>,
    current: CurrentTenant,
    ApiJson(input): ApiJson<CreateWorkspace>,
) -> AppResult<(StatusCode, Json<WorkspaceDetail>)> {
    let id = service::create_workspace(&state.store, &current.tenant, &input.name).await?;
    let membership = state
        .store
        .membership(id, current.user.id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("workspace vanished after creation"))?;
    let tenant = Tenant::from_membership(current.user.id, &membership);
    Ok((StatusCode::CREATED, Json(WorkspaceDetail::from(&tenant))))
}

pub async fn show(path: PathTenant) -> AppResult<Json<WorkspaceDetail>> {
    Ok(Json(WorkspaceDetail::from(&path.tenant)))
}

pub async fn switch(
    State(state): State<AppState>,
    path: PathTenant,
) -> AppResult<Json<WorkspaceDetail>> {
    session::choose_workspace(
        &state.store,
        &path.session,
        path.user.id,
        path.tenant.workspace_id,
    )
    .await?;
    Ok(Json(WorkspaceDetail::from(&path.tenant)))
}

pub async fn members(
    State(state): State<AppState>,
    path: PathTenant,
) -> AppResult<Json<Vec<Member>>> {
    Ok(Json(
        state.store.list_members(path.tenant.workspace_id).await?,
    ))
}

#[derive(Deserialize)]
pub struct MemberInput {
    email: SingleLine,
    role: SingleLine,
}

/// Adding a person by email invites them: 202 with the invite (its link
/// shown once), exactly as for an address without an account. They become
/// a member only when they accept.
pub async fn add_member(
    state: State<AppState>,
    path: PathTenant,
    input: ApiJson<MemberInput>,
) -> AppResult<(StatusCode, Json<CreatedInvite>)> {
    let (_, created) = create_invite(state, path, input).await?;
    Ok((StatusCode::ACCEPTED, created))
}

#[derive(Deserialize)]
pub struct RoleInput {
    role: SingleLine,
}

pub async fn change_role(
    State(state): State<AppState>,
    path: PathTenant,
    Path((_, user_id)): Path<(String, String)>,
    ApiJson(input): ApiJson<RoleInput>,
) -> AppResult<Json<Member>> {
    let user_id = parse_path_id(&user_id, "member")?;
    let role = parse_role("role", &input.role)?;
    service::change_role(&state.store, &path.tenant, user_id, role).await?;
    let member = state
        .store
        .get_member(path.tenant.workspace_id, user_id)
        .await?
        .ok_or_else(|| AppError::not_found("member not found"))?;
    Ok(Json(member))
}

pub async fn remove_member(
    State(state): State<AppState>,
    path: PathTenant,
    Path((_, user_id)): Path<(String, String)>,
) -> AppResult<StatusCode> {
    let user_id = parse_path_id(&user_id, "member")?;
    service::remove_member(&state.store, &path.tenant, user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A single-use password reset link for a member (admins; owners for
/// owners), shown once.
pub async fn create_password_reset(
    State(state): State<AppState>,
    path: PathTenant,
    Path((_, user_id)): Path<(String, String)>,
) -> AppResult<(StatusCode, Json<CreatedReset>)> {
    let user_id = parse_path_id(&user_id, "member")?;
    let created = reset::create_link(
        &state.store,
        &path.tenant,
        user_id,
        &state.settings.public_url(),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(created)))
}

pub async fn invites(
    State(state): State<AppState>,
    path: PathTenant,
) -> AppResult<Json<Vec<Invite>>> {
    path.tenant.require_admin("see invites")?;
    Ok(Json(
        state
            .store
            .list_open_invites(path.tenant.workspace_id, now())
            .await?,
    ))
}

pub async fn create_invite(
    State(state): State<AppState>,
    path: PathTenant,
    ApiJson(input): ApiJson<MemberInput>,
) -> AppResult<(StatusCode, Json<CreatedInvite>)> {
    let role = parse_role("role", &input.role)?;
    let created = service::invite(
        &state.store,
        &path.tenant,
        &input.email,
        role,
        &state.settings.public_url(),
        state.settings.auth.invite_ttl_hours,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(created)))
}

pub async fn revoke_invite(
    State(state): State<AppState>,
    path: PathTenant,
    Path((_, invite_id)): Path<(String, String)>,
) -> AppResult<StatusCode> {
    let invite_id = parse_path_id(&invite_id, "invite")?;
    service::revoke_invite(&state.store, &path.tenant, invite_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn audit(
    State(state): State<AppState>,
    path: PathTenant,
) -> AppResult<Json<Vec<AuditRecord>>> {
    path.tenant.require_admin("read the audit log")?;
    Ok(Json(
        state
            .store
            .list_audit(path.tenant.workspace_id, 200)
            .await?,
    ))
}

pub async fn accept_invite(
    State(state): State<AppState>,
    current: CurrentUser,
    Path(token): Path<String>,
) -> AppResult<Json<WorkspaceDetail>> {
    let ws =
        service::accept_invite(&state.store, current.user.id, &current.user.email, &token).await?;
    session::choose_workspace(&state.store, &current.session, current.user.id, ws).await?;
    let membership = state
        .store
        .membership(ws, current.user.id)
        .await?
        .ok_or_else(|| AppError::not_found("workspace not found"))?;
    Ok(Json(WorkspaceDetail::from(&Tenant::from_membership(
        current.user.id,
        &membership,
    ))))
}
