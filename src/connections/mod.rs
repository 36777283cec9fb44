//! Connected accounts: authorization (OAuth code + PKCE, client
//! credentials, API keys), account selection, token refresh with one
//! refresh in flight per connection across tasks and processes, disconnect,
//! admin enable/disable, and diagnostics.

pub mod accounts;
pub mod service;
pub mod store;
pub mod tokens;

use std::collections::BTreeMap;

use serde::Serialize;
use sqlx::types::Json;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::tenancy::WorkspaceId;

pub const OWNER_KIND: &str = "connection";
pub const ACCESS_TOKEN: &str = "access_token";
pub const REFRESH_TOKEN: &str = "refresh_token";
pub const CLIENT_SECRET: &str = "client_secret";
pub const API_KEY: &str = "api_key";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    Connected,
    Pending,
    Error,
    NeedsReauth,
    Disabled,
    NotConnected,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Connected => "CONNECTED",
            Status::Pending => "PENDING",
            Status::Error => "ERROR",
            Status::NeedsReauth => "NEEDS_REAUTH",
            Status::Disabled => "DISABLED",
            Status::NotConnected => "NOT_CONNECTED",
        }
    }

    pub fn parse(value: &str) -> Status {
        match value {
            "CONNECTED" => Status::Connected,
            "PENDING" => Status::Pending,
            "ERROR" => Status::Error,
            "NEEDS_REAUTH" => Status::NeedsReauth,
            "DISABLED" => Status::Disabled,
            _ => Status::NotConnected,
        }
    }

    /// Whether tokens may be used.
    pub fn usable(self) -> bool {
        matches!(self, Status::Connected | Status::Error)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Ownership {
    Workspace,
    User,
}

impl Ownership {
    pub fn parse(value: &str) -> Option<Ownership> {
        match value {
            "workspace" => Some(Ownership::Workspace),
            "user" => Some(Ownership::User),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Ownership::Workspace => "workspace",
            Ownership::User => "user",
        }
    }

    pub fn owner_key(self, user_id: Uuid) -> String {
        match self {
            Ownership::Workspace => "workspace".to_owned(),
            Ownership::User => user_id.to_string(),
        }
    }
}

/// A connection row. Never holds a token.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Connection {
    pub id: Uuid,
    pub workspace_id: WorkspaceId,
    pub provider: String,
    pub environment: String,
    pub tenant_key: String,
    pub owner_user_id: Option<Uuid>,
    pub owner_key: String,
    pub flow: String,
    pub status: String,
    pub account_id: Option<String>,
    pub account_email: Option<String>,
    pub account_name: Option<String>,
    pub requested_scopes: Json<Vec<String>>,
    pub granted_scopes: Option<Json<Vec<String>>>,
    pub selected_account_ids: Json<Vec<String>>,
    pub header_values: Json<BTreeMap<String, String>>,
    pub client_id: Option<String>,
    pub has_refresh_token: bool,
    pub access_expires_at: Option<OffsetDateTime>,
    pub access_lifetime_secs: Option<i64>,
    pub token_version: i64,
    pub refresh_failing_since: Option<OffsetDateTime>,
    pub last_refreshed_at: Option<OffsetDateTime>,
    pub last_used_at: Option<OffsetDateTime>,
    pub last_sync_at: Option<OffsetDateTime>,
    pub last_error: Option<String>,
    pub connected_by: Option<Uuid>,
    pub connected_at: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    /// The owner's consent that workspace automations may use this personal
    /// connection (ignored for the workspace's own connections).
    pub automations_allowed: bool,
}

impl Connection {
    pub fn status(&self) -> Status {
        Status::parse(&self.status)
    }

    pub fn ownership(&self) -> Ownership {
        if self.owner_user_id.is_some() {
            Ownership::User
        } else {
            Ownership::Workspace
        }
    }

    /// Whether `user` may read this connection's data and use its tokens:
    /// the workspace's connections are everyone's, a personal one its
    /// owner's alone (admins included).
    pub fn usable_by(&self, user: Uuid) -> bool {
        self.owner_user_id.is_none_or(|owner| owner == user)
    }

    /// Requested scopes the provider did not grant (when it says what it granted).
    pub fn missing_scopes(&self) -> Vec<String> {
        match &self.granted_scopes {
            Some(granted) => self
                .requested_scopes
                .iter()
                .filter(|s| !granted.contains(s))
                .cloned()
                .collect(),
            None => Vec::new(),
        }
    }
}

/// What the API and pages show of a connection.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionView {
    pub id: Uuid,
    /// False when this is another member's personal connection, shown to an
    /// admin: existence and status only, its account details left out.
    pub is_yours_to_use: bool,
    /// Personal connections: the owner allows workspace automations to use it.
    pub automations_allowed: bool,
    pub provider: String,
    pub environment: String,
    pub tenant_key: String,
    pub ownership: Ownership,
    pub owner_user_id: Option<Uuid>,
    pub flow: String,
    pub status: Status,
    pub account_id: Option<String>,
    pub account_email: Option<String>,
    pub account_name: Option<String>,
    pub granted_scopes: Option<Vec<String>>,
    pub missing_scopes: Vec<String>,
    pub selected_account_ids: Vec<String>,
    pub header_values: BTreeMap<String, String>,
    pub has_refresh_token: bool,
    /// Set when the provider should have issued a refresh token but didn't
    /// (offline access not granted): the connection dies with its token.
    pub warning: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub access_expires_at: Option<OffsetDateTime>,
    pub connected_by: Option<Uuid>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub connected_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_sync_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_refreshed_at: Option<OffsetDateTime>,
    pub last_error: Option<String>,
}

impl ConnectionView {
    /// Who the connection is, for the account line: the email, else the
    /// name, else the id (an OpenID provider may return only `sub`).
    pub fn account_label(&self) -> Option<&str> {
        [&self.account_email, &self.account_name, &self.account_id]
            .into_iter()
            .find_map(|v| v.as_deref().filter(|s| !s.trim().is_empty()))
    }

    pub fn of(c: &Connection, provider_issues_refresh_tokens: bool) -> Self {
        let warning = (c.flow == "authorization_code"
            && provider_issues_refresh_tokens
            && !c.has_refresh_token
            && c.status() != Status::NotConnected)
            .then(|| {
                "The provider issued no refresh token (offline access was not granted): \
                 this connection stops working when its access token expires. Reconnect and allow offline access."
                    .to_owned()
            });
        ConnectionView {
            id: c.id,
            is_yours_to_use: true,
            automations_allowed: c.owner_user_id.is_some() && c.automations_allowed,
            provider: c.provider.clone(),
            environment: c.environment.clone(),
            tenant_key: c.tenant_key.clone(),
            ownership: c.ownership(),
            owner_user_id: c.owner_user_id,
            flow: c.flow.clone(),
            status: c.status(),
            account_id: c.account_id.clone(),
            account_email: c.account_email.clone(),
            account_name: c.account_name.clone(),
            granted_scopes: c.granted_scopes.as_ref().map(|g| g.0.clone()),
            missing_scopes: c.missing_scopes(),
            selected_account_ids: c.selected_account_ids.0.clone(),
            header_values: c.header_values.0.clone(),
            has_refresh_token: c.has_refresh_token,
            warning,
            access_expires_at: c.access_expires_at,
            connected_by: c.connected_by,
            connected_at: c.connected_at,
            last_sync_at: c.last_sync_at,
            last_refreshed_at: c.last_refreshed_at,
            last_error: c.last_error.clone(),
        }
    }
}

impl ConnectionView {
    /// What an admin sees of a member's personal connection: that it
    /// exists, who connected it and its status; nothing read through it.
    pub fn status_only(mut self) -> Self {
        self.is_yours_to_use = false;
        self.account_id = None;
        self.account_email = None;
        self.account_name = None;
        self.granted_scopes = None;
        self.missing_scopes = Vec::new();
        self.selected_account_ids = Vec::new();
        self.header_values = BTreeMap::new();
        self
    }

    /// The view `viewer` may have of `c`.
    pub fn for_viewer(c: &Connection, provider_issues_refresh_tokens: bool, viewer: Uuid) -> Self {
        let view = ConnectionView::of(c, provider_issues_refresh_tokens);
        if c.usable_by(viewer) {
            view
        } else {
            view.status_only()
        }
    }
}

/// Who reads data derived from connections (jobs, job logs, records,
/// projects and people): a member of a workspace. Store queries taking a
/// `Viewer` leave out what another member's personal connection brought
/// in, exactly as if it did not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Viewer {
    pub workspace: WorkspaceId,
    pub user: Uuid,
}

impl From<&crate::tenancy::Tenant> for Viewer {
    fn from(t: &crate::tenancy::Tenant) -> Self {
        Viewer {
            workspace: t.workspace_id,
            user: t.user_id,
        }
    }
}

/// SQL condition: the connection id in column `$col` is absent, the
/// workspace's (`$ws` is its parameter) or the viewer's own (`$user`).
#[macro_export]
macro_rules! visible_connection {
    ($col:literal, $ws:literal, $user:literal) => {
        concat!(
            "(",
            $col,
            " IS NULL OR ",
            $col,
            " IN (SELECT vc.id FROM connections vc WHERE vc.workspace_id = ",
            $ws,
            " AND (vc.owner_user_id IS NULL OR vc.owner_user_id = ",
            $user,
            ")))"
        )
    };
}

/// A connection event for automations (the webhook payload); never tokens.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionEvent {
    pub event: &'static str,
    pub workspace_id: WorkspaceId,
    pub connection_id: Uuid,
    pub provider: String,
    pub status: Status,
    pub message: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
    /// A `needs_reauth` event's reconnect link; the delivery adds its URL
    /// (`reconnectUrl`), so the queued payload never holds the token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reconnect_link_id: Option<Uuid>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub reconnect_link_expires_at: Option<OffsetDateTime>,
}

impl ConnectionEvent {
    pub fn new(
        event: &'static str,
        c: &Connection,
        status: Status,
        message: Option<String>,
    ) -> Self {
        ConnectionEvent {
            event,
            workspace_id: c.workspace_id,
            connection_id: c.id,
            provider: c.provider.clone(),
            status,
            message,
            occurred_at: crate::storage::now(),
            reconnect_link_id: None,
            reconnect_link_expires_at: None,
        }
    }

    /// Points the event at a reconnect link.
    pub fn with_link(mut self, link: Option<&crate::connectlinks::store::NewConnectLink>) -> Self {
        self.reconnect_link_id = link.map(|l| l.id);
        self.reconnect_link_expires_at = link.map(|l| l.expires_at);
        self
    }
}
