//! Connect links: a single-use link, valid 7 days, that lets the right
//! person run a provider's OAuth flow — any admin of the workspace for a
//! `workspace` link, only the named member for a `user` link. Anyone else
//! gets 404 and the link stays open. Links are stored as a sha256 of the
//! token (like invites), audited and revocable.
//!
//! Reconnect links for a connection that needs reauthorization are minted
//! with the `needs_reauth` event. Their token is derived from the link id
//! with a server key, so the queued webhook payload holds the id only and
//! the URL is put together when the event is delivered.

pub mod store;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::app::AppState;
use crate::audit::AuditEntry;
use crate::auth::session::random_token;
use crate::connections::service::{self as connections, StartedAuthorization};
use crate::connections::{Connection, Ownership};
use crate::error::{AppError, AppResult};
use crate::oauth;
use crate::storage::now;
use crate::tenancy::service::hash_token;
use crate::tenancy::{Tenant, WorkspaceId};
use store::NewConnectLink;

/// How long a link stays valid.
pub const TTL: Duration = Duration::days(7);
/// The path links live under (its next segment is the token).
pub const PATH: &str = "/connect/";
/// Session key naming the provider whose OAuth flow a link started, so the
/// callback lands on the "connected" page. Holds no token.
pub const LANDING_KEY: &str = "connect_link_provider";
/// One answer for unknown, expired, used, revoked and not-yours links, so a
/// link can't be probed.
pub const GONE: &str = "this connect link is invalid, expired or already used";
const WHAT: &str = "create and revoke connect links";

/// An open link as admins see it (never the token).
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectLink {
    pub id: Uuid,
    pub provider: String,
    pub environment: String,
    /// `workspace` or `user`.
    pub ownership: String,
    /// The member a `user` link is for.
    pub user_id: Option<Uuid>,
    pub user_name: Option<String>,
    /// Set on reconnect links of a broken connection.
    pub connection_id: Option<Uuid>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// An open link found by its token.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LinkLookup {
    pub id: Uuid,
    pub workspace_id: WorkspaceId,
    pub provider: String,
    pub environment: String,
    pub ownership: String,
    pub user_id: Option<Uuid>,
    pub connection_id: Option<Uuid>,
}

/// A new link: `url` holds the only copy of the token and is shown once.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedLink {
    pub id: Uuid,
    pub provider: String,
    pub environment: String,
    pub ownership: String,
    pub user_id: Option<Uuid>,
    pub connection_id: Option<Uuid>,
    pub url: String,
    /// The URL as a QR code (an SVG document), for opening it on a phone.
    pub qr_svg: String,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// What an admin asks for: a provider and an owner, or the connection to
/// reconnect (which fixes provider, environment and owner).
#[derive(Debug, Default, Clone)]
pub struct LinkRequest {
    pub provider: Option<String>,
    pub ownership: Option<String>,
    pub user_id: Option<Uuid>,
    pub environment: Option<String>,
    pub connection_id: Option<Uuid>,
}

/// Provider, environment, ownership and member a link will carry.
struct Target {
    provider: String,
    environment: String,
    ownership: Ownership,
    user_id: Option<Uuid>,
    connection_id: Option<Uuid>,
}

pub fn link_url(state: &AppState, token: &str) -> String {
    format!("{}{PATH}{token}", state.settings.public_url())
}

/// `text` as a QR code, an SVG document with no script and no text.
pub fn qr_svg(text: &str) -> String {
    match qrcode::QrCode::new(text.as_bytes()) {
        Ok(code) => code
            .render::<qrcode::render::svg::Color<'_>>()
            .min_dimensions(200, 200)
            .quiet_zone(true)
            .build(),
        // Only a text too long for any QR version fails; the URL still works.
        Err(_) => String::new(),
    }
}

/// The token of a reconnect link: an HMAC of its id under a key derived for
/// this purpose, so it need not be stored to be sent later.
pub fn derived_token(state: &AppState, id: Uuid) -> String {
    let key = state.keys.derive_key("connect-link");
    let tag = <Hmac<Sha256> as Mac>::new_from_slice(&key[..])
        .map(|mut mac| {
            mac.update(id.as_bytes());
            mac.finalize().into_bytes().to_vec()
        })
        .unwrap_or_default();
    URL_SAFE_NO_PAD.encode(tag)
}

/// The URL of a reconnect link minted by [`reconnect_link`].
pub fn reconnect_url(state: &AppState, id: Uuid) -> String {
    link_url(state, &derived_token(state, id))
}

/// A reconnect link for a connection that needs reauthorization (OAuth
/// connections only: the others reconnect without a browser).
pub fn reconnect_link(state: &AppState, c: &Connection) -> Option<NewConnectLink> {
    if c.flow != "authorization_code" {
        return None;
    }
    let id = Uuid::now_v7();
    let created_at = now();
    Some(NewConnectLink {
        id,
        workspace_id: c.workspace_id,
        provider: c.provider.clone(),
        environment: c.environment.clone(),
        ownership: c.ownership().as_str(),
        user_id: c.owner_user_id,
        connection_id: Some(c.id),
        token_hash: hash_token(&derived_token(state, id)),
        created_by: None,
        created_at,
        expires_at: created_at + TTL,
    })
}

async fn target(state: &AppState, tenant: &Tenant, req: &LinkRequest) -> AppResult<Target> {
    if let Some(id) = req.connection_id {
        let c = state
            .store
            .get_connection(tenant.workspace_id, id)
            .await?
            .ok_or_else(|| AppError::not_found("connection not found"))?;
        if c.flow != "authorization_code" {
            return Err(AppError::validation(
                "connectionId",
                "only connections made by signing in at the provider reconnect through a link",
            ));
        }
        return Ok(Target {
            ownership: c.ownership(),
            user_id: c.owner_user_id,
            connection_id: Some(c.id),
            provider: c.provider,
            environment: c.environment,
        });
    }
    let key = req.provider.as_deref().unwrap_or_default();
    let provider = state
        .providers
        .get(key)
        .ok_or_else(|| AppError::validation("provider", format!("unknown provider {key:?}")))?;
    if !oauth::supports_flow(provider, "authorization_code") {
        return Err(AppError::validation(
            "provider",
            format!(
                "{} connects with typed credentials, not through a link",
                provider.meta.display_name
            ),
        ));
    }
    let ownership = Ownership::parse(req.ownership.as_deref().unwrap_or("workspace"))
        .ok_or_else(|| AppError::validation("ownership", "expected workspace or user"))?;
    let user_id = match ownership {
        Ownership::Workspace => None,
        Ownership::User => Some(named_member(state, tenant, req.user_id).await?),
    };
    Ok(Target {
        environment: connections::check_environment(provider, req.environment.as_deref())?,
        provider: key.to_owned(),
        ownership,
        user_id,
        connection_id: None,
    })
}

async fn named_member(state: &AppState, tenant: &Tenant, user: Option<Uuid>) -> AppResult<Uuid> {
    let user = user
        .ok_or_else(|| AppError::validation("userId", "a user link needs the member it is for"))?;
    state
        .store
        .get_member(tenant.workspace_id, user)
        .await?
        .map(|m| m.user_id)
        .ok_or_else(|| AppError::validation("userId", "not a member of this workspace"))
}

/// Creates a link (admins). The answer holds the only copy of the token.
pub async fn create(
    state: &AppState,
    tenant: &Tenant,
    req: &LinkRequest,
) -> AppResult<CreatedLink> {
    tenant.require_admin(WHAT)?;
    let t = target(state, tenant, req).await?;
    let token = random_token();
    let id = Uuid::now_v7();
    let audit = AuditEntry::new(
        Some(tenant.workspace_id),
        Some(tenant.user_id),
        "connect_link.create",
    )
    .target("connect_link", id)
    .details(serde_json::json!({
        "provider": t.provider, "ownership": t.ownership, "userId": t.user_id,
        "environment": t.environment, "connectionId": t.connection_id,
    }));
    let link = NewConnectLink {
        id,
        workspace_id: tenant.workspace_id,
        provider: t.provider.clone(),
        environment: t.environment.clone(),
        ownership: t.ownership.as_str(),
        user_id: t.user_id,
        connection_id: t.connection_id,
        token_hash: hash_token(&token),
        created_by: Some(tenant.user_id),
        created_at: audit.created_at,
        expires_at: audit.created_at + TTL,
    };
    state.store.create_connect_link(&link, &audit).await?;
    let url = link_url(state, &token);
    Ok(CreatedLink {
        id,
        qr_svg: qr_svg(&url),
        url,
        provider: t.provider,
        environment: t.environment,
        ownership: t.ownership.as_str().to_owned(),
        user_id: t.user_id,
        connection_id: t.connection_id,
        expires_at: link.expires_at,
    })
}

pub async fn list(state: &AppState, tenant: &Tenant) -> AppResult<Vec<ConnectLink>> {
    tenant.require_admin(WHAT)?;
    Ok(state
        .store
        .list_open_connect_links(tenant.workspace_id, now())
        .await?)
}

pub async fn revoke(state: &AppState, tenant: &Tenant, id: Uuid) -> AppResult<()> {
    tenant.require_admin(WHAT)?;
    let audit = AuditEntry::new(
        Some(tenant.workspace_id),
        Some(tenant.user_id),
        "connect_link.revoke",
    )
    .target("connect_link", id);
    if state
        .store
        .revoke_connect_link(tenant.workspace_id, id, now(), &audit)
        .await?
    {
        Ok(())
    } else {
        Err(AppError::not_found("connect link not found"))
    }
}

/// The open link behind `token` and the opener's membership, if the link is
/// theirs to use; otherwise 404 and nothing changes.
pub async fn open(state: &AppState, user_id: Uuid, token: &str) -> AppResult<(LinkLookup, Tenant)> {
    let gone = || AppError::not_found(GONE);
    let link = state
        .store
        .find_open_connect_link(&hash_token(token), now())
        .await?
        .ok_or_else(gone)?;
    let membership = state
        .store
        .membership(link.workspace_id, user_id)
        .await?
        .ok_or_else(gone)?;
    let tenant = Tenant::from_membership(user_id, &membership);
    let allowed = match Ownership::parse(&link.ownership) {
        Some(Ownership::Workspace) => tenant.role.can_manage_members(),
        Some(Ownership::User) => link.user_id == Some(user_id),
        None => false,
    };
    if allowed {
        Ok((link, tenant))
    } else {
        Err(gone())
    }
}

/// Starts the provider's OAuth flow for the link (the one connect flow of
/// `connections::service`), then uses the link up. A flow that fails to
/// start leaves the link open.
pub async fn start(
    state: &AppState,
    user_id: Uuid,
    token: &str,
) -> AppResult<(LinkLookup, Tenant, StartedAuthorization)> {
    let (link, tenant) = open(state, user_id, token).await?;
    let started = connections::start_authorization(
        state,
        &tenant,
        &link.provider,
        Some(&link.ownership),
        Some(&link.environment),
    )
    .await?;
    let audit = AuditEntry::new(Some(link.workspace_id), Some(user_id), "connect_link.use")
        .target("connect_link", link.id)
        .details(
            serde_json::json!({ "provider": link.provider, "connectionId": link.connection_id }),
        );
    if !state
        .store
        .claim_connect_link(link.id, user_id, now(), &audit)
        .await?
    {
        return Err(AppError::not_found(GONE));
    }
    Ok((link, tenant, started))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qr_is_an_svg_without_script() {
        let svg = qr_svg("http://127.0.0.1:8080/connect/abcDEF_123");
        assert!(svg.contains("<svg"), "{svg}");
        assert!(!svg.contains("<script"));
        assert!(
            !svg.contains("abcDEF_123"),
            "the token is drawn, not written"
        );
    }
}
