//! Request extractors: who is asking, and in which workspace.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts, Path};
use axum::http::request::Parts;
use tower_sessions::Session;
use uuid::Uuid;

use super::User;
use super::session::{USER_KEY, WORKSPACE_KEY};
use crate::app::AppState;
use crate::error::AppError;
use crate::tenancy::{Tenant, WorkspaceId};

async fn session_of(parts: &mut Parts, state: &AppState) -> Result<Session, AppError> {
    Session::from_request_parts(parts, state)
        .await
        .map_err(|(_, msg)| AppError::internal(anyhow::anyhow!("session layer missing: {msg}")))
}

/// A signed-in user. Rejects with 401 (pages turn that into a redirect).
pub struct CurrentUser {
    pub user: User,
    pub session: Session,
}

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let session = session_of(parts, state).await?;
        let user_id: Option<Uuid> = match session.get(USER_KEY).await {
            Ok(id) => id,
            // The session store couldn't be read: the database is away, not
            // the user's sign-in. A 401 would send browsers to log in.
            Err(tower_sessions::session::Error::Store(
                tower_sessions::session_store::Error::Backend(_),
            )) => return Err(AppError::DatabaseUnavailable),
            // A record that doesn't decode is worthless: signed out.
            Err(_) => None,
        };
        let Some(user_id) = user_id else {
            return Err(AppError::Unauthenticated);
        };
        match state.store.get_user(user_id).await? {
            Some(user) => Ok(CurrentUser { user, session }),
            None => {
                // The user was deleted: the session is worthless.
                let _ = session.flush().await;
                Err(AppError::Unauthenticated)
            }
        }
    }
}

/// The signed-in user if there is one; never rejects for lack of a session.
pub struct MaybeUser {
    pub user: Option<User>,
    pub session: Session,
}

impl FromRequestParts<AppState> for MaybeUser {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match CurrentUser::from_request_parts(parts, state).await {
            Ok(CurrentUser { user, session }) => Ok(MaybeUser {
                user: Some(user),
                session,
            }),
            Err(AppError::Unauthenticated) => Ok(MaybeUser {
                user: None,
                session: session_of(parts, state).await?,
            }),
            Err(other) => Err(other),
        }
    }
}

/// The workspace the user is working in (pages and session-scoped APIs):
/// the one chosen in the session, else the one they last chose (see
/// `default_workspace`), else the one they joined first. The membership is
/// re-checked on every request, so removal takes effect at once.
pub struct CurrentTenant {
    pub user: User,
    pub session: Session,
    pub tenant: Tenant,
}

impl FromRequestParts<AppState> for CurrentTenant {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let CurrentUser { user, session } = CurrentUser::from_request_parts(parts, state).await?;
        let chosen: Option<WorkspaceId> = session.get(WORKSPACE_KEY).await.ok().flatten();
        if let Some(ws) = chosen
            && let Some(m) = state.store.membership(ws, user.id).await?
        {
            let tenant = Tenant::from_membership(user.id, &m);
            return Ok(CurrentTenant {
                user,
                session,
                tenant,
            });
        }
        match state.store.default_workspace(user.id).await? {
            Some(m) => {
                session.insert(WORKSPACE_KEY, m.workspace_id).await?;
                let tenant = Tenant::from_membership(user.id, &m);
                Ok(CurrentTenant {
                    user,
                    session,
                    tenant,
                })
            }
            None => Err(AppError::Forbidden(
                "you are not a member of any workspace; ask an admin for an invite".into(),
            )),
        }
    }
}

/// A workspace named in the path (`{workspace_id}`) that the user belongs
/// to. Anything else, a malformed id included, is 404: membership is the
/// only way to learn that a workspace exists.
pub struct PathTenant {
    pub user: User,
    pub session: Session,
    pub tenant: Tenant,
}

impl FromRequestParts<AppState> for PathTenant {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let CurrentUser { user, session } = CurrentUser::from_request_parts(parts, state).await?;
        let not_found = || AppError::not_found("workspace not found");
        let Path(params) = Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|_| not_found())?;
        let id = params
            .get("workspace_id")
            .and_then(|raw| Uuid::parse_str(raw).ok())
            .map(WorkspaceId)
            .ok_or_else(not_found)?;
        let membership = state
            .store
            .membership(id, user.id)
            .await?
            .ok_or_else(not_found)?;
        let tenant = Tenant::from_membership(user.id, &membership);
        Ok(PathTenant {
            user,
            session,
            tenant,
        })
    }
}

/// The client's IP: the socket peer, or with `trust_proxy_headers` the
/// address our own proxy appended last to X-Forwarded-For (earlier entries
/// are client-supplied and can be forged).
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if state.settings.server.trust_proxy_headers {
            let forwarded = parts
                .headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.rsplit(',').next())
                .and_then(|v| v.trim().parse::<IpAddr>().ok());
            if let Some(ip) = forwarded {
                return Ok(ClientIp(ip));
            }
        }
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip())
            .unwrap_or(IpAddr::from([0, 0, 0, 0]));
        Ok(ClientIp(peer))
    }
}
