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
use crate::web::openapi::responses as errors;
use crate::web::parse_path_id;

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceDetail {
    id: WorkspaceId,
    name: String,
    organization_id: Uuid,
    organization_name: String,
    #[schema(value_type = crate::tenancy::Role)]
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

#[utoipa::path(
    get,
    path = "/workspaces",
    operation_id = "list_workspaces",
    tag = "workspaces",
    summary = "Your workspaces",
    security(("session_cookie" = [])),
    responses((status = 200, description = "The workspaces you belong to.", body = Vec<WorkspaceDetail>), errors::SignedIn)
)]
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

#[derive(Deserialize, utoipa::ToSchema)]
pub struct CreateWorkspace {
    name: Name,
}

/// Creates a workspace in the organization of the current workspace.
#[utoipa::path(
    post,
    path = "/workspaces",
    operation_id = "create_workspace",
    tag = "workspaces",
    summary = "Create a workspace in the current workspace's organization",
    security(("session_cookie" = [])),
    request_body = CreateWorkspace,
    responses((status = 201, description = "Created; you are its owner.", body = WorkspaceDetail), errors::Tenant, errors::Body)
)]
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

#[utoipa::path(
    get,
    path = "/workspaces/{workspace_id}",
    operation_id = "show_workspace",
    tag = "workspaces",
    summary = "One of your workspaces",
    security(("session_cookie" = [])),
    params(("workspace_id" = Uuid, Path, description = "A workspace you belong to.")),
    responses((status = 200, description = "The workspace.", body = WorkspaceDetail), errors::Tenant)
)]
pub async fn show(path: PathTenant) -> AppResult<Json<WorkspaceDetail>> {
    Ok(Json(WorkspaceDetail::from(&path.tenant)))
}

#[utoipa::path(
    post,
    path = "/workspaces/{workspace_id}/switch",
    operation_id = "switch_workspace",
    tag = "workspaces",
    summary = "Make this the session's current workspace",
    security(("session_cookie" = [])),
    params(("workspace_id" = Uuid, Path, description = "A workspace you belong to.")),
    responses((status = 200, description = "Switched.", body = WorkspaceDetail), errors::Tenant, errors::JsonContentType)
)]
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

#[utoipa::path(
    get,
    path = "/workspaces/{workspace_id}/members",
    operation_id = "list_members",
    tag = "workspaces",
    summary = "The workspace's members",
    security(("session_cookie" = [])),
    params(("workspace_id" = Uuid, Path, description = "A workspace you belong to.")),
    responses((status = 200, description = "Members.", body = Vec<Member>), errors::Tenant)
)]
pub async fn members(
    State(state): State<AppState>,
    path: PathTenant,
) -> AppResult<Json<Vec<Member>>> {
    Ok(Json(
        state.store.list_members(path.tenant.workspace_id).await?,
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct MemberInput {
    email: SingleLine,
    #[schema(value_type = crate::tenancy::Role)]
    role: SingleLine,
}

/// Adding a person by email invites them: 202 with the invite (its link
/// shown once), exactly as for an address without an account. They become
/// a member only when they accept.
#[utoipa::path(
    post,
    path = "/workspaces/{workspace_id}/members",
    operation_id = "add_member",
    tag = "workspaces",
    summary = "Invite a person by email (admins); the same answer whether or not they have an account",
    security(("session_cookie" = [])),
    params(("workspace_id" = Uuid, Path, description = "A workspace you belong to.")),
    request_body = MemberInput,
    responses((status = 202, description = "Invited; they join when they accept.", body = CreatedInvite), errors::Tenant, errors::Conflict, errors::Body)
)]
pub async fn add_member(
    state: State<AppState>,
    path: PathTenant,
    input: ApiJson<MemberInput>,
) -> AppResult<(StatusCode, Json<CreatedInvite>)> {
    let (_, created) = create_invite(state, path, input).await?;
    Ok((StatusCode::ACCEPTED, created))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct RoleInput {
    #[schema(value_type = crate::tenancy::Role)]
    role: SingleLine,
}

#[utoipa::path(
    patch,
    path = "/workspaces/{workspace_id}/members/{user_id}",
    operation_id = "change_member_role",
    tag = "workspaces",
    summary = "Change a member's role (admins)",
    security(("session_cookie" = [])),
    params(("workspace_id" = Uuid, Path, description = "A workspace you belong to."), ("user_id" = Uuid, Path, description = "The member's user id.")),
    request_body = RoleInput,
    responses((status = 200, description = "The member with the new role.", body = Member), errors::Tenant, errors::Conflict, errors::Body)
)]
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

#[utoipa::path(
    delete,
    path = "/workspaces/{workspace_id}/members/{user_id}",
    operation_id = "remove_member",
    tag = "workspaces",
    summary = "Remove a member (admins)",
    security(("session_cookie" = [])),
    params(("workspace_id" = Uuid, Path, description = "A workspace you belong to."), ("user_id" = Uuid, Path, description = "The member's user id.")),
    responses((status = 204, description = "Removed."), errors::Tenant, errors::Conflict, errors::JsonContentType)
)]
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
#[utoipa::path(
    post,
    path = "/workspaces/{workspace_id}/members/{user_id}/password-reset",
    operation_id = "create_password_reset",
    tag = "workspaces",
    summary = "A single-use password reset link for a member (admins; owners for owners), shown once",
    security(("session_cookie" = [])),
    params(("workspace_id" = Uuid, Path, description = "A workspace you belong to."), ("user_id" = Uuid, Path, description = "The member's user id.")),
    responses((status = 201, description = "The link, shown once.", body = CreatedReset), errors::Tenant, errors::JsonContentType)
)]
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

#[utoipa::path(
    get,
    path = "/workspaces/{workspace_id}/invites",
    operation_id = "list_invites",
    tag = "workspaces",
    summary = "Open invites (admins)",
    security(("session_cookie" = [])),
    params(("workspace_id" = Uuid, Path, description = "A workspace you belong to.")),
    responses((status = 200, description = "Invites not yet accepted, revoked or expired.", body = Vec<Invite>), errors::Tenant)
)]
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

#[utoipa::path(
    post,
    path = "/workspaces/{workspace_id}/invites",
    operation_id = "create_invite",
    tag = "workspaces",
    summary = "Invite someone by email (admins); the link is shown this once",
    security(("session_cookie" = [])),
    params(("workspace_id" = Uuid, Path, description = "A workspace you belong to.")),
    request_body = MemberInput,
    responses((status = 201, description = "The invite, with its link (the only copy of the token).", body = CreatedInvite), errors::Tenant, errors::Conflict, errors::Body)
)]
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

#[utoipa::path(
    delete,
    path = "/workspaces/{workspace_id}/invites/{invite_id}",
    operation_id = "revoke_invite",
    tag = "workspaces",
    summary = "Revoke an open invite (admins)",
    security(("session_cookie" = [])),
    params(("workspace_id" = Uuid, Path, description = "A workspace you belong to."), ("invite_id" = Uuid, Path, description = "The invite.")),
    responses((status = 204, description = "Revoked."), errors::Tenant, errors::JsonContentType)
)]
pub async fn revoke_invite(
    State(state): State<AppState>,
    path: PathTenant,
    Path((_, invite_id)): Path<(String, String)>,
) -> AppResult<StatusCode> {
    let invite_id = parse_path_id(&invite_id, "invite")?;
    service::revoke_invite(&state.store, &path.tenant, invite_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get,
    path = "/workspaces/{workspace_id}/audit",
    operation_id = "audit_log",
    tag = "workspaces",
    summary = "The workspace's audit log, newest first, 200 entries (admins)",
    security(("session_cookie" = [])),
    params(("workspace_id" = Uuid, Path, description = "A workspace you belong to.")),
    responses((status = 200, description = "Audit entries.", body = Vec<AuditRecord>), errors::Tenant)
)]
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

#[utoipa::path(
    post,
    path = "/invites/{token}/accept",
    operation_id = "accept_invite",
    tag = "workspaces",
    summary = "Accept an invite addressed to your email",
    security(("session_cookie" = [])),
    params(("token" = String, Path, description = "The token from the invite link.")),
    responses((status = 200, description = "Joined; now the current workspace.", body = WorkspaceDetail), errors::Tenant, errors::Conflict, errors::JsonContentType)
)]
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
