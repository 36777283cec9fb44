//! Connecting, choosing accounts, disconnecting, admin actions, diagnostics.
//! Provider behaviour comes from provider.json; no provider is named here.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::types::Json;
use uuid::Uuid;

use super::store::{Change, OAuthStateRow};
use super::tokens::{
    self, base_url, credentials_for, oauth_client, place, provider_get, provider_of, seal_tokens,
};
use super::{
    ACCESS_TOKEN, API_KEY, CLIENT_SECRET, Connection, ConnectionEvent, Ownership, REFRESH_TOKEN,
    Status,
};
use crate::app::AppState;
use crate::audit::AuditEntry;
use crate::error::{AppError, AppResult};
use crate::input::SingleLine;
use crate::oauth::{self, OAuthError, TokenSet, state as oauth_state};
use crate::providers::{HeaderSource, Provider};
use crate::storage::{is_unique_violation, now};
use crate::tenancy::Tenant;
use crate::vault::store::{get_secret, seal_field};
use crate::vault::{Place, Secret};

const PKCE_FIELD: &str = "pkce_verifier";

fn provider<'a>(state: &'a AppState, key: &str) -> AppResult<&'a std::sync::Arc<Provider>> {
    state
        .providers
        .get(key)
        .ok_or_else(|| AppError::not_found(format!("unknown provider {key:?}")))
}

fn require_oauth_enabled(state: &AppState) -> AppResult<()> {
    if state.settings.oauth.enabled {
        Ok(())
    } else {
        Err(AppError::Unavailable(
            "connecting accounts is switched off on this server (PLUGBOARD_OAUTH_ENABLED=false)"
                .into(),
        ))
    }
}

fn parse_ownership(raw: Option<&str>) -> AppResult<Ownership> {
    Ownership::parse(raw.unwrap_or("workspace"))
        .ok_or_else(|| AppError::validation("ownership", "expected workspace or user"))
}

pub(crate) fn check_environment(provider: &Provider, raw: Option<&str>) -> AppResult<String> {
    let variants = &provider.meta.base_url_variants;
    match raw.filter(|e| !e.is_empty()) {
        Some(env) if variants.iter().any(|v| v.key == env) => Ok(env.to_owned()),
        Some(env) => Err(AppError::validation(
            "environment",
            format!(
                "{env:?} is not an environment of {}; expected one of {}",
                provider.meta.display_name,
                variants
                    .iter()
                    .map(|v| v.key.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
        None => Ok(variants
            .iter()
            .find(|v| v.default)
            .or_else(|| variants.first())
            .map(|v| v.key.clone())
            .unwrap_or_else(|| "production".to_owned())),
    }
}

/// Workspace-owned connections are set up by admins; members connect their own.
fn require_may_own(tenant: &Tenant, ownership: Ownership) -> AppResult<()> {
    if ownership == Ownership::Workspace {
        tenant.require_admin(
            "connect accounts for the whole workspace; connect your own with ownership=user",
        )?;
    }
    Ok(())
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StartedAuthorization {
    pub auth_url: String,
    pub state: String,
}

pub async fn start_authorization(
    state: &AppState,
    tenant: &Tenant,
    provider_key: &str,
    ownership: Option<&str>,
    environment: Option<&str>,
) -> AppResult<StartedAuthorization> {
    require_oauth_enabled(state)?;
    let provider = provider(state, provider_key)?;
    if !oauth::supports_flow(provider, "authorization_code") {
        return Err(AppError::validation(
            "provider",
            format!(
                "{} does not connect through a browser authorization; use its connect form",
                provider.meta.display_name
            ),
        ));
    }
    let ownership = parse_ownership(ownership)?;
    require_may_own(tenant, ownership)?;
    let environment = check_environment(provider, environment)?;
    let client = oauth_client(
        state,
        provider,
        credentials_for(state, provider, None).await?,
    );

    let id = Uuid::now_v7();
    let created_at = now();
    let key = state.keys.derive_key("oauth-state");
    let signed = oauth_state::sign(&key, id, tenant.user_id, provider_key, &client.redirect_uri);
    let (auth_url, verifier) = client
        .authorize_url(&signed, &provider.meta.auth.default_scopes)
        .map_err(|e| AppError::internal(anyhow::Error::new(e)))?;
    let row = OAuthStateRow {
        id,
        workspace_id: tenant.workspace_id,
        user_id: tenant.user_id,
        provider: provider_key.to_owned(),
        environment,
        ownership: ownership.as_str().to_owned(),
        redirect_uri: client.redirect_uri.clone(),
        created_at,
        expires_at: created_at
            + time::Duration::minutes(i64::from(state.settings.oauth.state_ttl_minutes)),
    };
    let sealed = match &verifier {
        Some(v) => {
            let place = Place {
                workspace_id: tenant.workspace_id,
                owner_kind: "oauth_state",
                owner_id: id,
                field: PKCE_FIELD,
            };
            Some(seal_field(&state.keys, &place, PKCE_FIELD, v).map_err(AppError::internal)?)
        }
        None => None,
    };
    state
        .store
        .insert_oauth_state(&row, sealed.as_ref())
        .await?;
    Ok(StartedAuthorization {
        auth_url,
        state: signed,
    })
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CallbackQuery {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

pub struct Connected {
    pub connection: Connection,
    pub needs_account_selection: bool,
}

/// A failed callback: shown to the person, nothing created or changed.
fn callback_error(message: impl Into<String>) -> AppError {
    AppError::bad_request(Some("state".into()), message)
}

pub async fn complete_authorization(
    state: &AppState,
    user_id: Uuid,
    provider_key: &str,
    query: &CallbackQuery,
) -> AppResult<Connected> {
    let provider = provider(state, provider_key)?;
    let redirect_uri = format!(
        "{}/api/oauth/{provider_key}/callback",
        state.settings.public_url()
    );
    let signed = query
        .state
        .as_deref()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            callback_error("the provider's answer carries no state; start connecting again")
        })?;
    let key = state.keys.derive_key("oauth-state");
    let id = oauth_state::verify(&key, signed, user_id, provider_key, &redirect_uri).ok_or_else(|| {
        callback_error("this authorization was not started from your session or was altered; start connecting again")
    })?;
    // Single use: the row is gone from here on, whatever happens next.
    let (row, sealed_verifier) = state.store.take_oauth_state(id).await?.ok_or_else(|| {
        callback_error("this authorization was already used or has expired; start connecting again")
    })?;
    if row.expires_at <= now() {
        return Err(callback_error(
            "this authorization took too long and expired; start connecting again",
        ));
    }
    if row.user_id != user_id || row.provider != provider_key {
        return Err(callback_error(
            "this authorization belongs to another session; start connecting again",
        ));
    }
    if let Some(error) = query.error.as_deref() {
        let message = if error == "access_denied" {
            format!(
                "{} access was declined, so nothing was connected.",
                provider.meta.display_name
            )
        } else {
            format!(
                "{} returned an error ({error}{}); nothing was connected.",
                provider.meta.display_name,
                query
                    .error_description
                    .as_deref()
                    .map(|d| format!(": {}", d.chars().take(200).collect::<String>()))
                    .unwrap_or_default()
            )
        };
        return Err(AppError::bad_request(None, message));
    }
    let code = query
        .code
        .as_deref()
        .filter(|c| !c.is_empty())
        .map(Secret::new)
        .ok_or_else(|| {
            AppError::bad_request(
                Some("code".into()),
                "the provider sent no authorization code",
            )
        })?;
    let membership = state
        .store
        .membership(row.workspace_id, user_id)
        .await?
        .ok_or_else(|| {
            callback_error("you are no longer a member of the workspace this was started in")
        })?;
    let tenant = Tenant::from_membership(user_id, &membership);
    let ownership = Ownership::parse(&row.ownership).unwrap_or(Ownership::User);
    require_may_own(&tenant, ownership)?;

    let verifier = match sealed_verifier {
        Some(sealed) => {
            let place = Place {
                workspace_id: row.workspace_id,
                owner_kind: "oauth_state",
                owner_id: row.id,
                field: PKCE_FIELD,
            };
            Some(
                state
                    .keys
                    .open_secret(&sealed, &place)
                    .map_err(AppError::internal)?,
            )
        }
        None => None,
    };
    let client = oauth_client(
        state,
        provider,
        credentials_for(state, provider, None).await?,
    );
    let tokens = client
        .exchange_code(&code, verifier.as_ref())
        .await
        .map_err(|e| match e {
            OAuthError::Transient(_) => AppError::Unavailable(format!(
                "{} did not complete the sign-in ({e}); nothing was connected, try again",
                provider.meta.display_name
            )),
            // The server's own client id or secret is wrong: no account
            // was connected, so there is nothing to reconnect.
            OAuthError::Revoked { code, .. } if is_client_refusal(&code) => AppError::bad_request(
                None,
                format!(
                    "{}: the provider refused these client credentials ({code}); check {} and {}; nothing was connected",
                    provider.meta.display_name,
                    provider.meta.auth.client_id_env,
                    provider.meta.auth.client_secret_env
                ),
            ),
            other => AppError::bad_request(
                None,
                format!(
                    "{}: {other}; nothing was connected",
                    provider.meta.display_name
                ),
            ),
        })?;
    let identity = fetch_identity(state, provider, &tokens).await;
    let header_values = identity.headers.clone();
    let connection = save_new_tokens(
        state,
        &tenant,
        provider,
        NewConnection {
            environment: &row.environment,
            tenant_key: "",
            ownership,
            flow: "authorization_code",
            client_id: None,
            header_values,
        },
        &tokens,
        identity,
        None,
    )
    .await?;
    let needs_account_selection =
        provider.meta.accounts.is_some() && connection.selected_account_ids.is_empty();
    Ok(Connected {
        connection,
        needs_account_selection,
    })
}

/// OAuth error codes that mean the client (the app's credentials), not
/// the grant, was refused.
fn is_client_refusal(code: &str) -> bool {
    matches!(code, "invalid_client" | "unauthorized_client")
}

#[derive(Default, Clone)]
struct Identity {
    id: Option<String>,
    email: Option<String>,
    name: Option<String>,
    /// Connection header values the provider's metadata takes from userinfo.
    headers: BTreeMap<String, String>,
}

/// Who connected, from userinfo when the provider has it (best effort).
async fn fetch_identity(state: &AppState, provider: &Provider, tokens: &TokenSet) -> Identity {
    let mut identity = Identity {
        id: tokens.account_id.clone(),
        email: None,
        name: tokens.account_name.clone(),
        headers: BTreeMap::new(),
    };
    let Some(url) = provider.meta.auth.userinfo_url.as_ref() else {
        return identity;
    };
    let url = oauth::expand_url(
        url,
        &state.settings.public_url(),
        &oauth::default_url_params(&provider.meta.auth),
    );
    let Ok(response) = state
        .outbound
        .client()
        .get(url)
        .bearer_auth(tokens.access_token.expose())
        .send()
        .await
    else {
        return identity;
    };
    if !response.status().is_success() {
        return identity;
    }
    let Ok(body) = response.json::<Value>().await else {
        return identity;
    };
    let text = |keys: &[&str]| {
        keys.iter().find_map(|k| {
            body.get(*k).and_then(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .or_else(|| v.as_i64().map(|n| n.to_string()))
            })
        })
    };
    identity.id = identity
        .id
        .or_else(|| text(&["sub", "id", "user_id", "account_id"]));
    identity.email = text(&["email", "mail", "userPrincipalName"]);
    identity.name = identity
        .name
        .or_else(|| text(&["name", "display_name", "displayName", "login"]));
    for h in &provider.meta.required_headers {
        if let Some(value) = h
            .from_userinfo
            .as_deref()
            .and_then(|ptr| text_at(&body, ptr))
        {
            identity.headers.insert(h.key.clone(), value);
        }
    }
    identity
}

struct NewConnection<'a> {
    environment: &'a str,
    tenant_key: &'a str,
    ownership: Ownership,
    flow: &'static str,
    client_id: Option<String>,
    header_values: BTreeMap<String, String>,
}

/// Creates or replaces the connection for (workspace, provider, environment,
/// tenant, owner) with fresh tokens, in one transaction.
#[allow(clippy::too_many_arguments)]
async fn save_new_tokens(
    state: &AppState,
    tenant: &Tenant,
    provider: &Provider,
    new: NewConnection<'_>,
    tokens: &TokenSet,
    identity: Identity,
    extra_secret: Option<(&'static str, &Secret)>,
) -> AppResult<Connection> {
    let owner_key = new.ownership.owner_key(tenant.user_id);
    for attempt in 0..2 {
        let existing = state
            .store
            .find_connection(
                tenant.workspace_id,
                &provider.meta.key,
                new.environment,
                new.tenant_key,
                &owner_key,
            )
            .await?;
        let at = now();
        let connection = Connection {
            id: existing.as_ref().map_or_else(Uuid::now_v7, |c| c.id),
            workspace_id: tenant.workspace_id,
            provider: provider.meta.key.clone(),
            environment: new.environment.to_owned(),
            tenant_key: new.tenant_key.to_owned(),
            owner_user_id: (new.ownership == Ownership::User).then_some(tenant.user_id),
            owner_key: owner_key.clone(),
            flow: new.flow.to_owned(),
            status: Status::Connected.as_str().to_owned(),
            account_id: identity.id.clone(),
            account_email: identity.email.clone(),
            account_name: identity.name.clone(),
            requested_scopes: Json(provider.meta.auth.scopes_for(new.flow).to_vec()),
            granted_scopes: tokens.granted_scopes.clone().map(Json),
            // A reconnect keeps the accounts chosen before.
            selected_account_ids: existing
                .as_ref()
                .map_or_else(|| Json(Vec::new()), |c| c.selected_account_ids.clone()),
            header_values: Json(new.header_values.clone()),
            client_id: new.client_id.clone(),
            has_refresh_token: tokens.refresh_token.is_some(),
            access_expires_at: tokens.expires_at,
            access_lifetime_secs: tokens.lifetime_secs.map(|l| l.min(i64::MAX as u64) as i64),
            token_version: 0,
            refresh_failing_since: None,
            last_refreshed_at: Some(at),
            last_used_at: None,
            last_sync_at: existing.as_ref().and_then(|c| c.last_sync_at),
            last_error: None,
            connected_by: Some(tenant.user_id),
            connected_at: Some(at),
            created_at: existing.as_ref().map_or(at, |c| c.created_at),
            updated_at: at,
            // Kept across reconnects; saving never changes it.
            automations_allowed: existing.as_ref().is_some_and(|c| c.automations_allowed),
        };
        let mut sealed = seal_tokens(state, &connection, tokens)?;
        if let Some((field, secret)) = extra_secret {
            sealed.push(
                seal_field(&state.keys, &place(&connection, field), field, secret)
                    .map_err(AppError::internal)?,
            );
        }
        let action = if existing.is_some() {
            "connection.reconnect"
        } else {
            "connection.connect"
        };
        let audit = AuditEntry::new(Some(tenant.workspace_id), Some(tenant.user_id), action)
            .target("connection", connection.id)
            .details(serde_json::json!({ "provider": provider.meta.key, "ownership": new.ownership, "environment": new.environment }));
        let event = ConnectionEvent::new("connected", &connection, Status::Connected, None);
        match state
            .store
            .save_connection(
                &connection,
                &sealed,
                Change::new(Some(&audit), Some(&event)),
            )
            .await
        {
            Ok(()) => {
                return state
                    .store
                    .get_connection(tenant.workspace_id, connection.id)
                    .await?
                    .ok_or_else(|| {
                        AppError::internal(anyhow::anyhow!("connection vanished after save"))
                    });
            }
            // Two callbacks raced to create the same connection: the loser
            // retries as an update of the winner's row.
            Err(e) if is_unique_violation(&e) && attempt == 0 => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(AppError::Conflict {
        field: None,
        message: "the connection changed concurrently; try again".into(),
    })
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsInput {
    #[serde(default)]
    pub flow: Option<SingleLine>,
    #[serde(default)]
    pub client_id: Option<SingleLine>,
    #[serde(default)]
    #[schema(write_only)]
    pub client_secret: Option<SingleLine>,
    #[serde(default)]
    #[schema(write_only)]
    pub api_key: Option<SingleLine>,
    #[serde(default)]
    pub headers: BTreeMap<SingleLine, SingleLine>,
    #[serde(default)]
    pub environment: Option<SingleLine>,
    #[serde(default)]
    pub ownership: Option<SingleLine>,
    #[serde(default)]
    pub tenant_key: Option<SingleLine>,
}

/// Header values the connection must carry: validated against metadata.
fn connection_headers(
    provider: &Provider,
    given: &BTreeMap<SingleLine, SingleLine>,
) -> AppResult<BTreeMap<String, String>> {
    let declared: Vec<_> = provider
        .meta
        .required_headers
        .iter()
        .filter(|h| h.source == HeaderSource::Connection)
        .collect();
    for key in given.keys() {
        if !declared.iter().any(|h| h.key.eq_ignore_ascii_case(key)) {
            return Err(AppError::validation(
                format!("headers.{key}"),
                format!("{} takes no header {key:?}", provider.meta.display_name),
            ));
        }
    }
    let mut values = BTreeMap::new();
    for h in declared {
        let value = given
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(&h.key))
            .map(|(_, v)| v.trim().to_owned());
        match value.filter(|v| !v.is_empty()) {
            Some(v) if v.len() > 500 || v.chars().any(char::is_control) => {
                return Err(AppError::validation(
                    format!("headers.{}", h.key),
                    "must be at most 500 printable characters",
                ));
            }
            Some(v) => {
                values.insert(h.key.clone(), v);
            }
            None if h.optional => {}
            None => {
                return Err(AppError::validation(
                    format!("headers.{}", h.key),
                    format!("{} is required", h.label),
                ));
            }
        }
    }
    Ok(values)
}

fn required_text(field: &str, value: Option<&SingleLine>) -> AppResult<String> {
    match value.map(|v| v.trim()).filter(|v| !v.is_empty()) {
        Some(v) if v.len() <= 4096 => Ok(v.to_owned()),
        Some(_) => Err(AppError::validation(field, format!("{field} is too long"))),
        None => Err(AppError::validation(field, format!("{field} is required"))),
    }
}

/// Client-credentials and API-key connections: values checked against the
/// provider's metadata (client credentials are tried at the token endpoint
/// before anything is stored), secrets stored in the vault.
pub async fn connect_with_credentials(
    state: &AppState,
    tenant: &Tenant,
    provider_key: &str,
    input: &CredentialsInput,
) -> AppResult<Connection> {
    require_oauth_enabled(state)?;
    let provider = provider(state, provider_key)?;
    let flow = match input.flow.as_deref() {
        Some(f) => f.to_owned(),
        None if oauth::supports_flow(provider, "client_credentials") => {
            "client_credentials".to_owned()
        }
        None if oauth::supports_flow(provider, "api_key") => "api_key".to_owned(),
        None => String::new(),
    };
    if !matches!(flow.as_str(), "client_credentials" | "api_key")
        || !oauth::supports_flow(provider, &flow)
    {
        return Err(AppError::validation(
            "flow",
            format!(
                "{} does not support {}; use its browser authorization",
                provider.meta.display_name,
                if flow.is_empty() {
                    "credential connections"
                } else {
                    &flow
                }
            ),
        ));
    }
    let ownership = parse_ownership(input.ownership.as_deref())?;
    require_may_own(tenant, ownership)?;
    let environment = check_environment(provider, input.environment.as_deref())?;
    let headers = connection_headers(provider, &input.headers)?;
    let tenant_key = input.tenant_key.as_deref().unwrap_or("").trim().to_owned();
    if tenant_key.len() > 200 {
        return Err(AppError::validation(
            "tenantKey",
            "tenantKey must be at most 200 characters",
        ));
    }
    let new = |flow: &'static str, client_id: Option<String>| NewConnection {
        environment: &environment,
        tenant_key: &tenant_key,
        ownership,
        flow,
        client_id,
        header_values: headers.clone(),
    };
    if flow == "api_key" {
        let key = Secret::new(required_text("apiKey", input.api_key.as_ref())?);
        let tokens = TokenSet {
            access_token: Secret::new(String::new()),
            refresh_token: None,
            token_type: "api_key".into(),
            expires_at: None,
            lifetime_secs: None,
            granted_scopes: None,
            account_id: None,
            account_name: None,
        };
        let c = save_new_tokens(
            state,
            tenant,
            provider,
            new("api_key", None),
            &tokens,
            Identity::default(),
            Some((API_KEY, &key)),
        )
        .await?;
        return Ok(c);
    }
    let client_id = required_text("clientId", input.client_id.as_ref())?;
    let client_secret = Secret::new(required_text("clientSecret", input.client_secret.as_ref())?);
    let credentials = oauth::AppCredentials {
        client_id: client_id.clone(),
        client_secret: client_secret.clone(),
    };
    let tokens = oauth_client(state, provider, credentials)
        .client_credentials(provider.meta.auth.scopes_for("client_credentials"))
        .await
        .map_err(|e| match e {
            // Nothing was connected yet: there is no account to reconnect,
            // the credentials typed are what's wrong.
            OAuthError::Revoked { code, .. } | OAuthError::Rejected { code } => {
                AppError::validation(
                    "clientSecret",
                    format!(
                        "{}: the provider refused these client credentials ({code})",
                        provider.meta.display_name
                    ),
                )
            }
            other => AppError::Unavailable(format!(
                "{} could not be reached to check the credentials: {other}",
                provider.meta.display_name
            )),
        })?;
    save_new_tokens(
        state,
        tenant,
        provider,
        new("client_credentials", Some(client_id)),
        &tokens,
        Identity::default(),
        Some((CLIENT_SECRET, &client_secret)),
    )
    .await
}

/// Connections this user may use and read the data of: the workspace's,
/// and their own. Another member's personal connection is theirs alone.
pub fn visible_to(c: &Connection, tenant: &Tenant) -> bool {
    c.usable_by(tenant.user_id)
}

/// The connections listed to a user: those they may use, and for admins
/// members' personal ones too (shown by status only, see
/// [`ConnectionView::status_only`](super::ConnectionView::status_only)).
pub async fn visible_connections(state: &AppState, tenant: &Tenant) -> AppResult<Vec<Connection>> {
    let all = state.store.list_connections(tenant.workspace_id).await?;
    Ok(all
        .into_iter()
        .filter(|c| visible_to(c, tenant) || tenant.role.can_manage_members())
        .collect())
}

/// The connection a user works with for a provider: an explicit id they
/// may use, else their own connection, else the workspace's. Another
/// member's personal connection is not found, for admins too: reading
/// accounts, records or rules through it would use its tokens or data.
pub async fn resolve(
    state: &AppState,
    tenant: &Tenant,
    provider_key: &str,
    connection_id: Option<Uuid>,
) -> AppResult<Connection> {
    find(state, tenant, provider_key, connection_id, false).await
}

/// As [`resolve`], but admins also reach members' personal connections:
/// for disconnecting them, which uses nothing of theirs.
pub async fn resolve_to_manage(
    state: &AppState,
    tenant: &Tenant,
    provider_key: &str,
    connection_id: Option<Uuid>,
) -> AppResult<Connection> {
    find(state, tenant, provider_key, connection_id, true).await
}

async fn find(
    state: &AppState,
    tenant: &Tenant,
    provider_key: &str,
    connection_id: Option<Uuid>,
    manage: bool,
) -> AppResult<Connection> {
    provider(state, provider_key)?;
    let not_found =
        || AppError::not_found(format!("no {provider_key} connection in this workspace"));
    if let Some(id) = connection_id {
        let c = state
            .store
            .get_connection(tenant.workspace_id, id)
            .await?
            .ok_or_else(not_found)?;
        let reachable = visible_to(&c, tenant) || (manage && tenant.role.can_manage_members());
        if c.provider != provider_key || !reachable {
            return Err(not_found());
        }
        return Ok(c);
    }
    let all = state.store.list_connections(tenant.workspace_id).await?;
    pick(&all, tenant, provider_key)
        .cloned()
        .ok_or_else(not_found)
}

/// The connection the user works with among the workspace's: their own
/// wins, then the workspace's; disconnected ones don't count.
pub fn pick<'a>(
    connections: &'a [Connection],
    tenant: &Tenant,
    provider_key: &str,
) -> Option<&'a Connection> {
    connections
        .iter()
        .filter(|c| {
            c.provider == provider_key
                && visible_to(c, tenant)
                && c.status() != Status::NotConnected
        })
        .min_by_key(|c| (c.owner_user_id.is_none(), c.created_at))
}

pub async fn get_for_admin(state: &AppState, tenant: &Tenant, id: Uuid) -> AppResult<Connection> {
    tenant.require_admin("manage connections")?;
    state
        .store
        .get_connection(tenant.workspace_id, id)
        .await?
        .ok_or_else(|| AppError::not_found("connection not found"))
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    pub id: String,
    pub label: String,
    /// As the provider reports it, where provider.json says where.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
}

fn text_at(value: &Value, pointer: &str) -> Option<String> {
    match value.pointer(pointer)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// What the user may pick (properties, customers, teams…), per metadata.
pub async fn list_accounts(state: &AppState, c: &Connection) -> AppResult<Vec<Account>> {
    let provider = provider_of(state, c)?;
    let spec = provider.meta.accounts.as_ref().ok_or_else(|| {
        AppError::not_found(format!(
            "{} has no accounts to choose from",
            provider.meta.display_name
        ))
    })?;
    let endpoint = spec
        .get("endpoint")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let base = spec
        .get("baseUrl")
        .and_then(Value::as_str)
        .map(|b| oauth::expand_url(b, &state.settings.public_url(), &[]))
        .or_else(|| base_url(state, provider, &c.environment))
        .unwrap_or_default();
    let selector = spec
        .get("recordSelector")
        .and_then(Value::as_str)
        .unwrap_or("");
    // The listing pages like any object: the sync engine's reader walks it.
    let listing: crate::providers::ObjectMeta = serde_json::from_value(serde_json::json!({
        "key": "accounts", "label": "Accounts", "kind": "records", "endpoint": endpoint,
        "method": "GET", "recordSelector": selector, "capabilities": ["list"],
        "pagination": spec.get("pagination").cloned().unwrap_or(serde_json::json!({"strategy": "none"})),
        "fields": [{"name": "id", "type": "string", "nullable": false, "identifier": true}],
    }))
    .map_err(|e| AppError::internal(anyhow::anyhow!("accounts metadata: {e}")))?;
    let raw = serde_json::json!({"objects": [{"key": "accounts", "query": spec.get("query").cloned().unwrap_or(Value::Null)}]});
    let reader = crate::sync::fetch::ObjectReader::new(&listing, &raw);
    let read = crate::sync::fetch::ReadSpec {
        base_url: if endpoint.starts_with("http") {
            String::new()
        } else {
            base
        },
        account_id: None,
        since: None,
        until: None,
        parent_only: false,
        page_size: None,
    };
    let mut records = Vec::new();
    let mut position = crate::sync::fetch::Position::Start;
    // Enough for thousands of accounts; a provider that never ends stops here.
    for _ in 0..50 {
        if position == crate::sync::fetch::Position::Done {
            break;
        }
        let request = reader.request(&read, &position).map_err(|e| match e {
            crate::sync::fetch::FetchError::ForeignNextLink(_) => {
                AppError::Unavailable(format!("{}: {e}", provider.meta.display_name))
            }
            e => AppError::internal(anyhow::anyhow!("accounts request: {e}")),
        })?;
        let url = if request.query.is_empty() {
            request.url.clone()
        } else {
            format!(
                "{}?{}",
                request.url,
                serde_urlencoded::to_string(&request.query).unwrap_or_default()
            )
        };
        let response = provider_get(state, c, &url).await?;
        if response.status != 200 {
            return Err(AppError::Unavailable(format!(
                "{} answered HTTP {} when listing accounts",
                provider.meta.display_name, response.status
            )));
        }
        let page = reader
            .parse(&position, &[], &response.body)
            .map_err(|e| AppError::Unavailable(format!("{}: {e}", provider.meta.display_name)))?;
        records.extend(page.records);
        position = page.next;
    }
    let nested = spec.get("nestedSelector").and_then(Value::as_str);
    let records: Vec<Value> = match nested {
        Some(ptr) => records
            .iter()
            .flat_map(|r| {
                r.pointer(ptr)
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
            })
            .collect(),
        None => records,
    };
    let strip = spec
        .get("idPrefixToStrip")
        .and_then(Value::as_str)
        .unwrap_or("");
    let id_ptr = spec.get("idField").and_then(Value::as_str).unwrap_or("/id");
    let label_ptr = spec
        .get("labelField")
        .and_then(Value::as_str)
        .unwrap_or("/name");
    let optional = |key: &str| spec.get(key).and_then(Value::as_str);
    let (currency_ptr, zone_ptr) = (optional("currencyField"), optional("timeZoneField"));
    let accounts: Vec<Account> = records
        .iter()
        .filter_map(|r| {
            let raw_id = text_at(r, id_ptr)?;
            // e.g. GA4's "properties/123" → "123", what its Data API takes.
            let id = raw_id.strip_prefix(strip).unwrap_or(&raw_id).to_owned();
            let label = text_at(r, label_ptr).unwrap_or_else(|| id.clone());
            Some(Account {
                id,
                label,
                currency: currency_ptr.and_then(|p| reported_text(r, p)),
                time_zone: zone_ptr.and_then(|p| reported_text(r, p)),
            })
        })
        .collect();
    remember_accounts(state, c, &accounts).await?;
    Ok(accounts)
}

/// Provider text shown on pages: bounded, no control characters.
fn reported_text(record: &Value, pointer: &str) -> Option<String> {
    text_at(record, pointer)
        .filter(|t| !t.is_empty() && t.len() <= 100 && !t.chars().any(char::is_control))
}

/// Keeps what the listing said in `provider_accounts`.
async fn remember_accounts(
    state: &AppState,
    c: &Connection,
    accounts: &[Account],
) -> AppResult<()> {
    // Ids and names are provider text: a NUL can't go into PostgreSQL text.
    let escaped: Vec<(String, String)> = accounts
        .iter()
        .map(|a| {
            (
                crate::input::escape_nul_in_text(&a.id),
                crate::input::escape_nul_in_text(&a.label),
            )
        })
        .collect();
    let listed: Vec<crate::connections::accounts::ListedAccount<'_>> = accounts
        .iter()
        .zip(&escaped)
        .map(
            |(a, (id, name))| crate::connections::accounts::ListedAccount {
                external_id: id,
                name,
                currency: a.currency.as_deref(),
                time_zone: a.time_zone.as_deref(),
            },
        )
        .collect();
    state
        .store
        .save_provider_accounts(c.workspace_id, c.id, &c.provider, &listed, now())
        .await?;
    Ok(())
}

pub async fn select_accounts(
    state: &AppState,
    tenant: &Tenant,
    c: &Connection,
    ids: &[String],
) -> AppResult<Connection> {
    // Choosing what the workspace's connection reads is an admin's call.
    require_may_change(tenant, c)?;
    if ids.is_empty() {
        return Err(AppError::validation(
            "accountIds",
            "choose at least one account",
        ));
    }
    let provider = provider_of(state, c)?;
    let multiple = provider
        .meta
        .accounts
        .as_ref()
        .and_then(|a| a.get("multiple"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if ids.len() > 1 && !multiple {
        return Err(AppError::validation(
            "accountIds",
            format!(
                "{} connects one account at a time",
                provider.meta.display_name
            ),
        ));
    }
    let available = list_accounts(state, c).await?;
    for (i, id) in ids.iter().enumerate() {
        if !available.iter().any(|a| &a.id == id) {
            return Err(AppError::validation(
                format!("accountIds[{i}]"),
                format!("{id:?} is not an account this connection can reach"),
            ));
        }
    }
    let mut unique: Vec<String> = Vec::new();
    for id in ids {
        if !unique.contains(id) {
            unique.push(id.clone());
        }
    }
    let audit = AuditEntry::new(
        Some(tenant.workspace_id),
        Some(tenant.user_id),
        "connection.select_accounts",
    )
    .target("connection", c.id)
    .details(serde_json::json!({ "accountIds": unique }));
    state
        .store
        .set_selected_accounts(
            tenant.workspace_id,
            c.id,
            &unique,
            Change::new(Some(&audit), None),
        )
        .await?;
    state
        .store
        .get_connection(tenant.workspace_id, c.id)
        .await?
        .ok_or_else(|| AppError::not_found("connection not found"))
}

/// Members disconnect their own connections; the workspace's need an admin.
fn require_may_change(tenant: &Tenant, c: &Connection) -> AppResult<()> {
    if c.owner_user_id == Some(tenant.user_id) {
        return Ok(());
    }
    tenant.require_admin("change the workspace's connections")
}

/// Revokes at the provider when it can (a failed revoke is recorded, never
/// blocks), deletes the tokens, marks the connection NOT_CONNECTED.
pub async fn disconnect(
    state: &AppState,
    tenant: &Tenant,
    c: &Connection,
) -> AppResult<Connection> {
    require_may_change(tenant, c)?;
    let revoke_error = revoke(state, c).await.err();
    let audit = AuditEntry::new(
        Some(tenant.workspace_id),
        Some(tenant.user_id),
        "connection.disconnect",
    )
    .target("connection", c.id)
    .details(serde_json::json!({ "provider": c.provider, "revokeError": revoke_error }));
    let event = ConnectionEvent::new("disconnected", c, Status::NotConnected, None);
    state
        .store
        .disconnect_connection(
            tenant.workspace_id,
            c.id,
            revoke_error.as_deref(),
            Change::new(Some(&audit), Some(&event)),
        )
        .await?;
    state
        .store
        .get_connection(tenant.workspace_id, c.id)
        .await?
        .ok_or_else(|| AppError::not_found("connection not found"))
}

async fn revoke(state: &AppState, c: &Connection) -> Result<(), String> {
    let provider = provider_of(state, c).map_err(|e| e.to_string())?;
    let Some(url) = provider.meta.auth.revoke_url.as_ref() else {
        return Ok(());
    };
    let url = oauth::expand_url(
        url,
        &state.settings.public_url(),
        &oauth::default_url_params(&provider.meta.auth),
    );
    // Revoking the refresh token ends the whole grant where providers support it.
    let token = match get_secret(state.store.as_ref(), &state.keys, &place(c, REFRESH_TOKEN)).await
    {
        Ok(Some(t)) => t,
        _ => match get_secret(state.store.as_ref(), &state.keys, &place(c, ACCESS_TOKEN)).await {
            Ok(Some(t)) => t,
            _ => return Ok(()),
        },
    };
    let credentials = credentials_for(state, provider, Some(c))
        .await
        .map_err(|e| e.to_string())?;
    let mut form = vec![("token", token.expose().to_owned())];
    let mut request = crate::outbound::with_request_id(state.outbound.client().post(url));
    match provider.meta.auth.client_auth_method {
        crate::providers::ClientAuthMethod::Basic => {
            request = request.basic_auth(
                &credentials.client_id,
                Some(credentials.client_secret.expose()),
            );
        }
        crate::providers::ClientAuthMethod::Post => {
            form.push(("client_id", credentials.client_id.clone()));
            form.push((
                "client_secret",
                credentials.client_secret.expose().to_owned(),
            ));
        }
    }
    let response = request.form(&form).send().await.map_err(|e| {
        if e.is_timeout() {
            "revoke timed out".to_owned()
        } else {
            "revoke request failed".to_owned()
        }
    })?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!(
            "revoke answered HTTP {}",
            response.status().as_u16()
        ))
    }
}

/// The owner switches "automations may use this connection" on or off.
/// Only the owner of a personal connection can; anyone else finds no such
/// connection (workspace connections have nothing to consent to: 422).
pub async fn set_automations_allowed(
    state: &AppState,
    tenant: &Tenant,
    id: Uuid,
    allowed: bool,
) -> AppResult<Connection> {
    let not_found = || AppError::not_found("connection not found");
    let c = state
        .store
        .get_connection(tenant.workspace_id, id)
        .await?
        .filter(|c| visible_to(c, tenant))
        .ok_or_else(not_found)?;
    if c.owner_user_id.is_none() {
        return Err(AppError::validation(
            "allowed",
            "workspace connections are used by the workspace's service keys with tokens:read; \
             consent applies to personal connections",
        ));
    }
    if c.automations_allowed != allowed {
        let action = if allowed {
            "connection.automations_allowed"
        } else {
            "connection.automations_revoked"
        };
        let audit = AuditEntry::new(Some(tenant.workspace_id), Some(tenant.user_id), action)
            .target("connection", c.id)
            .details(serde_json::json!({ "provider": c.provider, "allowed": allowed }));
        let changed = state
            .store
            .set_automations_allowed(
                tenant.workspace_id,
                c.id,
                tenant.user_id,
                allowed,
                Change::new(Some(&audit), None),
            )
            .await?;
        if !changed {
            return Err(not_found());
        }
    }
    state
        .store
        .get_connection(tenant.workspace_id, id)
        .await?
        .ok_or_else(not_found)
}

pub async fn set_enabled(
    state: &AppState,
    tenant: &Tenant,
    id: Uuid,
    enabled: bool,
) -> AppResult<Connection> {
    let c = get_for_admin(state, tenant, id).await?;
    let status = if !enabled {
        Status::Disabled
    } else if c.has_refresh_token || c.access_expires_at.is_some() || c.flow != "authorization_code"
    {
        Status::Connected
    } else {
        Status::NeedsReauth
    };
    if enabled && c.status() != Status::Disabled {
        return Ok(c);
    }
    let action = if enabled {
        "connection.enable"
    } else {
        "connection.disable"
    };
    let audit = AuditEntry::new(Some(tenant.workspace_id), Some(tenant.user_id), action)
        .target("connection", c.id);
    state
        .store
        .set_connection_status(
            tenant.workspace_id,
            c.id,
            status,
            None,
            Change::new(Some(&audit), None),
        )
        .await?;
    get_for_admin(state, tenant, id).await
}

pub enum Reconnect {
    /// Send the admin's browser here to authorize again.
    Redirect(StartedAuthorization),
    Done(Box<Connection>),
}

pub async fn reconnect(state: &AppState, tenant: &Tenant, id: Uuid) -> AppResult<Reconnect> {
    let c = get_for_admin(state, tenant, id).await?;
    // Re-authorizing runs on the owner's grant or credentials: theirs alone.
    if !visible_to(&c, tenant) {
        return Err(AppError::Forbidden(
            "only its owner can re-authorize a personal connection".into(),
        ));
    }
    if c.flow == "authorization_code" {
        let ownership = c.ownership().as_str();
        return Ok(Reconnect::Redirect(
            start_authorization(
                state,
                tenant,
                &c.provider,
                Some(ownership),
                Some(&c.environment),
            )
            .await?,
        ));
    }
    require_oauth_enabled(state)?;
    let provider = provider_of(state, &c)?;
    if c.flow == "api_key" {
        let audit = AuditEntry::new(
            Some(tenant.workspace_id),
            Some(tenant.user_id),
            "connection.reconnect",
        )
        .target("connection", c.id);
        state
            .store
            .set_connection_status(
                tenant.workspace_id,
                c.id,
                Status::Connected,
                None,
                Change::new(Some(&audit), None),
            )
            .await?;
        return Ok(Reconnect::Done(Box::new(
            get_for_admin(state, tenant, id).await?,
        )));
    }
    let credentials = credentials_for(state, provider, Some(&c)).await?;
    let secret = credentials.client_secret.clone();
    let tokens = oauth_client(state, provider, credentials)
        .client_credentials(&c.requested_scopes)
        .await
        .map_err(|e| AppError::Unavailable(format!("{}: {e}", provider.meta.display_name)))?;
    let new = NewConnection {
        environment: &c.environment,
        tenant_key: &c.tenant_key,
        ownership: c.ownership(),
        flow: "client_credentials",
        client_id: c.client_id.clone(),
        header_values: c.header_values.0.clone(),
    };
    let owner_tenant = Tenant {
        user_id: c.owner_user_id.unwrap_or(tenant.user_id),
        ..tenant.clone()
    };
    let saved = save_new_tokens(
        state,
        &owner_tenant,
        provider,
        new,
        &tokens,
        Identity::default(),
        Some((CLIENT_SECRET, &secret)),
    )
    .await?;
    Ok(Reconnect::Done(Box::new(saved)))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Diagnostics {
    pub ok: bool,
    pub provider: String,
    pub connection_id: Option<Uuid>,
    pub status: Option<Status>,
    pub checks: Vec<Check>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub message: String,
}

fn check(name: &'static str, ok: bool, message: impl Into<String>) -> Check {
    Check {
        name,
        ok,
        message: message.into(),
    }
}

/// The lightweight endpoint a test call reads: userinfo, else the account
/// list; `None` when the provider offers neither.
pub fn test_url(state: &AppState, provider: &Provider, c: &Connection) -> Option<String> {
    match (&provider.meta.auth.userinfo_url, &provider.meta.accounts) {
        (Some(u), _) => Some(oauth::expand_url(
            u,
            &state.settings.public_url(),
            &oauth::default_url_params(&provider.meta.auth),
        )),
        (None, Some(spec)) => spec.get("endpoint").and_then(Value::as_str).map(|e| {
            if e.starts_with("http") {
                e.to_owned()
            } else {
                format!(
                    "{}{e}",
                    base_url(state, provider, &c.environment).unwrap_or_default()
                )
            }
        }),
        _ => None,
    }
}

/// A minimal authenticated call, with findings a person can act on.
pub async fn test_connection(
    state: &AppState,
    tenant: &Tenant,
    provider_key: &str,
) -> AppResult<Diagnostics> {
    let provider = provider(state, provider_key)?;
    let mut checks = Vec::new();
    let c = match resolve(state, tenant, provider_key, None).await {
        Ok(c) => c,
        Err(AppError::NotFound(_)) => {
            checks.push(check(
                "connection",
                false,
                format!(
                    "{} is not connected in this workspace",
                    provider.meta.display_name
                ),
            ));
            return Ok(Diagnostics {
                ok: false,
                provider: provider_key.to_owned(),
                connection_id: None,
                status: None,
                checks,
            });
        }
        Err(e) => return Err(e),
    };
    let done = |checks: Vec<Check>| Diagnostics {
        ok: checks.iter().all(|c| c.ok),
        provider: provider_key.to_owned(),
        connection_id: Some(c.id),
        status: Some(c.status()),
        checks,
    };
    if !c.status().usable() {
        let advice = match c.status() {
            Status::NeedsReauth => {
                "the provider no longer accepts this connection's grant: reconnect it"
            }
            Status::Disabled => "an admin disabled this connection: enable it to use it",
            _ => "connect it again",
        };
        checks.push(check(
            "status",
            false,
            format!("connection is {}: {advice}", c.status().as_str()),
        ));
        return Ok(done(checks));
    }
    checks.push(check(
        "status",
        true,
        format!("connection is {}", c.status().as_str()),
    ));
    if let Err(message) = tokens::required_headers(state, provider, &c) {
        checks.push(check("headers", false, message));
        return Ok(done(checks));
    }
    checks.push(check("headers", true, "required headers present"));
    if c.flow == "authorization_code"
        && !c.has_refresh_token
        && provider.meta.auth.issues_refresh_token
    {
        let expired = c.access_expires_at.is_some_and(|e| e <= now());
        checks.push(check(
            "refresh",
            !expired,
            if expired {
                "the access token expired and there is no refresh token: reconnect and allow offline access"
            } else {
                "no refresh token: the connection will stop working when the access token expires"
            },
        ));
        if expired {
            return Ok(done(checks));
        }
    }
    let missing = c.missing_scopes();
    if !missing.is_empty() {
        checks.push(check(
            "scopes",
            false,
            format!(
                "not granted: {}; reconnect and approve them",
                missing.join(", ")
            ),
        ));
    }
    let Some(url) = test_url(state, provider, &c) else {
        checks.push(check(
            "call",
            true,
            "the provider offers no lightweight endpoint to test; tokens are present",
        ));
        return Ok(done(checks));
    };
    match provider_get(state, &c, &url).await {
        Ok(r) if (200..300).contains(&r.status) => {
            checks.push(check("call", true, "the provider accepted the credentials"))
        }
        Ok(r) if r.status == 401 => checks.push(check(
            "call",
            false,
            "the provider rejected the token even after a refresh: reconnect",
        )),
        Ok(r) if r.status == 403 => checks.push(check(
            "call",
            false,
            "the provider refused access (HTTP 403): a scope or permission is missing",
        )),
        Ok(r) if r.status == 429 => checks.push(check(
            "call",
            false,
            "the provider is rate limiting (HTTP 429): try again later",
        )),
        Ok(r) if r.status >= 500 => checks.push(check(
            "call",
            false,
            format!(
                "the provider is failing (HTTP {}): try again later",
                r.status
            ),
        )),
        Ok(r) => checks.push(check(
            "call",
            false,
            format!("the provider answered HTTP {}", r.status),
        )),
        Err(AppError::Unavailable(m)) => checks.push(check(
            "call",
            false,
            format!("provider down or unreachable: {m}"),
        )),
        Err(AppError::Conflict { message, .. }) => checks.push(check("call", false, message)),
        Err(AppError::Validation { message, .. }) => checks.push(check("call", false, message)),
        Err(e) => return Err(e),
    }
    Ok(done(checks))
}

/// Refreshes connections idle long enough for their refresh tokens to age
/// out at the provider. Returns how many were refreshed.
pub async fn keep_alive(state: &AppState) -> usize {
    let idle_before =
        now() - time::Duration::hours(i64::from(state.settings.oauth.keepalive_idle_hours));
    let candidates = match state.store.keepalive_candidates(idle_before, 100).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "keep-alive: listing connections failed");
            return 0;
        }
    };
    let mut refreshed = 0;
    for (ws, id) in candidates {
        let Ok(Some(c)) = state.store.get_connection(ws, id).await else {
            continue;
        };
        match tokens::refresh(state, &c, true).await {
            Ok(_) => refreshed += 1,
            Err(e) => tracing::warn!(connection = %id, error = %e, "keep-alive refresh failed"),
        }
    }
    refreshed
}
