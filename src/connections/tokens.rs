//! Access tokens on use: refreshed when they expire within the window,
//! with exactly one refresh in flight per connection.
//!
//! Two layers make the single flight: an in-process mutex per connection
//! (200 tasks of one server wait on it instead of polling the database),
//! and a lease on the connection row (`refresh_lease_*`) that only one
//! process can hold. Every token write bumps `token_version`; a waiter that
//! sees the version moved reuses the result instead of refreshing again,
//! which matters with rotating refresh tokens: a second refresh would spend
//! a refresh token the provider has already invalidated.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use time::OffsetDateTime;

use super::store::{Change, RefreshFailure, RefreshedTokens};
use super::{
    ACCESS_TOKEN, API_KEY, CLIENT_SECRET, Connection, ConnectionEvent, OWNER_KIND, REFRESH_TOKEN,
    Status,
};
use crate::app::AppState;
use crate::audit::AuditEntry;
use crate::error::{AppError, AppResult};
use crate::oauth::{self, AppCredentials, OAuthError, OAuthProvider, TokenSet, expand_url};
use crate::providers::{HeaderSource, Provider};
use crate::storage::now;
use crate::vault::store::{SealedField, get_secret, seal_field};
use crate::vault::{Place, Secret};

const LEASE: time::Duration = time::Duration::seconds(60);
const WAIT_FOR_OTHER_PROCESS: Duration = Duration::from_secs(30);

pub fn place(c: &Connection, field: &'static str) -> Place<'static> {
    Place {
        workspace_id: c.workspace_id,
        owner_kind: OWNER_KIND,
        owner_id: c.id,
        field,
    }
}

pub fn provider_of<'a>(state: &'a AppState, c: &Connection) -> AppResult<&'a Arc<Provider>> {
    state.providers.get(&c.provider).ok_or_else(|| {
        AppError::Unavailable(format!("provider {:?} is no longer installed", c.provider))
    })
}

/// An error for callers that can't use the connection in its state.
/// The 409 for a connection that can't be used. One that needs reauth
/// says what the provider last answered (redacted), so whoever reads the
/// 409 knows why without opening the Data Hub.
pub fn unusable(c: &Connection) -> AppError {
    let mut message = format!("the {} connection is {}", c.provider, c.status().as_str());
    if c.status() == Status::NeedsReauth
        && let Some(last) = c.last_error.as_deref().filter(|e| !e.trim().is_empty())
    {
        message.push_str(&format!(
            "; the provider's last answer: {}",
            crate::outbound::redact_text(last)
        ));
    }
    AppError::Conflict {
        field: Some("status".into()),
        message,
    }
}

/// True when the token should be refreshed before use: it expires within
/// the window, or within half its lifetime for short-lived tokens (so a
/// 60-second token isn't refreshed on every single use).
pub fn is_expiring(c: &Connection, window_secs: u64, at: OffsetDateTime) -> bool {
    let Some(expires) = c.access_expires_at else {
        return false;
    };
    let mut window = window_secs as i64;
    if let Some(lifetime) = c.access_lifetime_secs.filter(|l| *l > 0) {
        window = window.min(lifetime / 2);
    }
    expires - at <= time::Duration::seconds(window)
}

/// The OAuth endpoint client for a connection or a new authorization.
pub fn oauth_client<'a>(
    state: &AppState,
    provider: &'a Provider,
    credentials: AppCredentials,
) -> OAuthProvider<'a> {
    let public_url = state.settings.public_url();
    OAuthProvider {
        provider,
        redirect_uri: format!("{public_url}/api/oauth/{}/callback", provider.meta.key),
        url_params: oauth::default_url_params(&provider.meta.auth),
        public_url,
        credentials,
        http: state.outbound.client().clone(),
    }
}

/// App credentials for a connection: its own for client-credentials
/// connections, the deployment's OAuth app otherwise.
pub async fn credentials_for(
    state: &AppState,
    provider: &Provider,
    c: Option<&Connection>,
) -> AppResult<AppCredentials> {
    if let Some(c) = c.filter(|c| c.flow == "client_credentials") {
        let secret = get_secret(state.store.as_ref(), &state.keys, &place(c, CLIENT_SECRET))
            .await?
            .ok_or_else(|| AppError::Conflict {
                field: Some("clientSecret".into()),
                message: "the connection's client secret is missing; reconnect it".into(),
            })?;
        return Ok(AppCredentials {
            client_id: c.client_id.clone().unwrap_or_default(),
            client_secret: secret,
        });
    }
    oauth::app_credentials(
        &state.settings,
        provider,
        state.sandbox_credentials.as_ref(),
    )
    .ok_or_else(|| {
        AppError::Unavailable(format!(
            "{} is not configured on this server: set {} and {}",
            provider.meta.display_name,
            provider.meta.auth.client_id_env,
            provider.meta.auth.client_secret_env
        ))
    })
}

/// Seals a token set for a connection row.
pub fn seal_tokens(
    state: &AppState,
    c: &Connection,
    tokens: &TokenSet,
) -> AppResult<Vec<SealedField>> {
    let mut sealed = vec![
        seal_field(
            &state.keys,
            &place(c, ACCESS_TOKEN),
            ACCESS_TOKEN,
            &tokens.access_token,
        )
        .map_err(AppError::internal)?,
    ];
    if let Some(refresh) = &tokens.refresh_token {
        sealed.push(
            seal_field(
                &state.keys,
                &place(c, REFRESH_TOKEN),
                REFRESH_TOKEN,
                refresh,
            )
            .map_err(AppError::internal)?,
        );
    }
    Ok(sealed)
}

/// A usable access token (or API key) for the connection, refreshed first
/// when it is about to expire.
pub async fn access_token(state: &AppState, c: &Connection) -> AppResult<Secret> {
    access_token_with_connection(state, c)
        .await
        .map(|(token, _)| token)
}

/// Like [`access_token`], also returning the connection as it is after a
/// refresh (the same one when none was needed), saving callers a re-read.
pub async fn access_token_with_connection(
    state: &AppState,
    c: &Connection,
) -> AppResult<(Secret, Connection)> {
    if !c.status().usable() {
        return Err(unusable(c));
    }
    if c.flow == "api_key" {
        return Ok((stored(state, c, API_KEY).await?, c.clone()));
    }
    let window = state.settings.oauth.refresh_window_secs;
    let c = if is_expiring(c, window, now()) {
        refresh(state, c, false).await?
    } else {
        c.clone()
    };
    Ok((stored(state, &c, ACCESS_TOKEN).await?, c))
}

async fn stored(state: &AppState, c: &Connection, field: &'static str) -> AppResult<Secret> {
    get_secret(state.store.as_ref(), &state.keys, &place(c, field))
        .await?
        .ok_or_else(|| AppError::Conflict {
            field: Some("status".into()),
            message: format!(
                "the {} connection has no stored credentials; reconnect it",
                c.provider
            ),
        })
}

/// Refreshes once for everyone who saw `seen.token_version`; `force`
/// refreshes even a token that looks fresh (after a 401, or keep-alive).
/// Returns the connection as it is after the refresh, whoever did it.
pub async fn refresh(state: &AppState, seen: &Connection, force: bool) -> AppResult<Connection> {
    let lock = state
        .refresh_locks
        .entry(seen.id)
        .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(())))
        .clone();
    let result = {
        let _in_process = lock.lock().await;
        refresh_holding_local_lock(state, seen, force).await
    };
    drop(lock);
    state
        .refresh_locks
        .remove_if(&seen.id, |_, l| Arc::strong_count(l) == 1);
    result
}

async fn refresh_holding_local_lock(
    state: &AppState,
    seen: &Connection,
    force: bool,
) -> AppResult<Connection> {
    let (ws, id, owner) = (seen.workspace_id, seen.id, state.instance_id);
    let started = Instant::now();
    let current = loop {
        let current = state
            .store
            .get_connection(ws, id)
            .await?
            .ok_or_else(|| AppError::not_found("connection not found"))?;
        if current.token_version != seen.token_version {
            return Ok(current);
        }
        if !force && !is_expiring(&current, state.settings.oauth.refresh_window_secs, now()) {
            return Ok(current);
        }
        if !current.status().usable() {
            return Err(unusable(&current));
        }
        let at = now();
        if state
            .store
            .try_lease_refresh(ws, id, current.token_version, owner, at + LEASE, at)
            .await?
        {
            break current;
        }
        if started.elapsed() > WAIT_FOR_OTHER_PROCESS {
            return Err(AppError::Unavailable(
                "another server is refreshing this connection; try again".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    match perform_refresh(state, &current).await {
        Ok(tokens) => {
            let sealed = seal_tokens(state, &current, &tokens)?;
            let was_failing =
                current.refresh_failing_since.is_some() || current.status() == Status::Error;
            let event = was_failing
                .then(|| ConnectionEvent::new("recovered", &current, Status::Connected, None));
            let saved = state
                .store
                .save_refreshed(
                    ws,
                    id,
                    current.token_version,
                    RefreshedTokens {
                        sealed: &sealed,
                        expires_at: tokens.expires_at,
                        lifetime_secs: tokens.lifetime_secs.map(|l| l.min(i64::MAX as u64) as i64),
                        granted_scopes: tokens.granted_scopes.as_deref(),
                        at: now(),
                    },
                    Change::new(None, event.as_ref()),
                )
                .await?;
            if !saved {
                state.store.release_refresh_lease(ws, id, owner).await?;
            }
            state
                .store
                .get_connection(ws, id)
                .await?
                .ok_or_else(|| AppError::not_found("connection not found"))
        }
        Err(err) => Err(record_failure(state, &current, err).await),
    }
}

async fn perform_refresh(state: &AppState, c: &Connection) -> Result<TokenSet, OAuthError> {
    let provider = provider_of(state, c).map_err(|e| OAuthError::Transient(e.to_string()))?;
    let credentials = credentials_for(state, provider, Some(c))
        .await
        .map_err(|e| OAuthError::Transient(e.to_string()))?;
    let client = oauth_client(state, provider, credentials);
    if c.flow == "client_credentials" {
        return client.client_credentials(&c.requested_scopes).await;
    }
    let refresh_token = get_secret(state.store.as_ref(), &state.keys, &place(c, REFRESH_TOKEN))
        .await
        .map_err(|e| OAuthError::Transient(e.to_string()))?;
    match refresh_token {
        Some(token) => client.refresh(&token).await,
        // Expired with nothing to refresh it: only a reconnect helps.
        None => Err(OAuthError::Revoked {
            code: "no_refresh_token".into(),
            detail: None,
        }),
    }
}

/// Revoked grants need a person; outages don't change the status unless
/// they last longer than `reauth_after_failing_hours`.
async fn record_failure(state: &AppState, c: &Connection, err: OAuthError) -> AppError {
    let at = now();
    let failing_since = c.refresh_failing_since.unwrap_or(at);
    let too_long = at - failing_since
        > time::Duration::hours(i64::from(state.settings.oauth.reauth_after_failing_hours));
    let message = err.to_string();
    let (status, event_name) = match &err {
        OAuthError::Revoked { .. } => (Some(Status::NeedsReauth), Some("needs_reauth")),
        _ if too_long => (Some(Status::NeedsReauth), Some("needs_reauth")),
        OAuthError::Rejected { .. } => (Some(Status::Error), Some("refresh_failed")),
        // Only the first failure of a streak is an event.
        _ => (
            None,
            c.refresh_failing_since
                .is_none()
                .then_some("refresh_failed"),
        ),
    };
    let audit = (status == Some(Status::NeedsReauth)).then(|| {
        AuditEntry::new(Some(c.workspace_id), None, "connection.needs_reauth")
            .target("connection", c.id)
            .details(serde_json::json!({ "provider": c.provider, "reason": message }))
    });
    // A person must reconnect: the event carries a link that lets them.
    let link = (status == Some(Status::NeedsReauth))
        .then(|| crate::connectlinks::reconnect_link(state, c))
        .flatten();
    let event = event_name.map(|name| {
        ConnectionEvent::new(
            name,
            c,
            status.unwrap_or_else(|| c.status()),
            Some(message.clone()),
        )
        .with_link(link.as_ref())
    });
    if let Err(db) = state
        .store
        .record_refresh_failure(
            c.workspace_id,
            c.id,
            RefreshFailure {
                owner: state.instance_id,
                error: &message,
                new_status: status,
                at,
            },
            Change::new(audit.as_ref(), event.as_ref()).with_link(link.as_ref()),
        )
        .await
    {
        return db.into();
    }
    tracing::warn!(connection = %c.id, provider = %c.provider, transient = err.is_transient(), error = %message, "token refresh failed");
    match status {
        Some(Status::NeedsReauth) => AppError::Conflict {
            field: Some("status".into()),
            message: format!(
                "the {} connection needs to be reconnected: {message}",
                c.provider
            ),
        },
        _ => AppError::Unavailable(format!(
            "refreshing the {} token failed; try again later ({message})",
            c.provider
        )),
    }
}

/// The provider base URL for a connection's environment.
pub fn base_url(state: &AppState, provider: &Provider, environment: &str) -> Option<String> {
    let variants = &provider.meta.base_url_variants;
    let variant = variants
        .iter()
        .find(|v| v.key == environment)
        .or_else(|| variants.iter().find(|v| v.default))
        .or_else(|| variants.first())?;
    Some(expand_url(
        &variant.base_url,
        &state.settings.public_url(),
        &oauth::default_url_params(&provider.meta.auth),
    ))
}

/// Required header values for calls on this connection; `Err` names the
/// first missing one.
pub fn required_headers(
    state: &AppState,
    provider: &Provider,
    c: &Connection,
) -> Result<Vec<(String, String)>, String> {
    use secrecy::ExposeSecret;
    let mut headers = Vec::new();
    for h in &provider.meta.required_headers {
        let value = match h.source {
            HeaderSource::Static => h.value.clone(),
            HeaderSource::Connection => c.header_values.get(&h.key).cloned(),
            HeaderSource::Env => h
                .env_key
                .as_ref()
                .and_then(|k| state.settings.provider_env(k))
                .map(|v| v.expose_secret().to_owned()),
        };
        match value.filter(|v| !v.is_empty()) {
            Some(v) => headers.push((h.key.clone(), v)),
            None if h.optional => {}
            None => {
                let hint = match h.source {
                    HeaderSource::Env => format!(
                        "set {} on the server",
                        h.env_key.as_deref().unwrap_or("its variable")
                    ),
                    _ => "enter it on the connection".to_owned(),
                };
                return Err(format!(
                    "missing required header {} ({}): {hint}",
                    h.key, h.label
                ));
            }
        }
    }
    Ok(headers)
}

#[derive(Debug)]
pub struct ProviderResponse {
    pub status: u16,
    pub body: Value,
}

/// A GET against the provider with the connection's token and headers.
/// A 401 triggers one refresh and one retry.
pub async fn provider_get(
    state: &AppState,
    c: &Connection,
    url: &str,
) -> AppResult<ProviderResponse> {
    let provider = provider_of(state, c)?;
    let headers =
        required_headers(state, provider, c).map_err(|m| AppError::validation("headers", m))?;
    let token = access_token(state, c).await?;
    let first = send_get(state, provider, c, url, &headers, &token).await?;
    if first.status != 401 || c.flow == "api_key" {
        return Ok(first);
    }
    let latest = state
        .store
        .get_connection(c.workspace_id, c.id)
        .await?
        .unwrap_or_else(|| c.clone());
    let refreshed = refresh(state, &latest, true).await?;
    let token = stored(state, &refreshed, ACCESS_TOKEN).await?;
    send_get(state, provider, &refreshed, url, &headers, &token).await
}

/// Adds the connection's credentials and required headers to a provider
/// request: an API key in the header its provider names, else a bearer token.
pub fn authorize(
    mut request: reqwest::RequestBuilder,
    provider: &Provider,
    c: &Connection,
    token: &Secret,
    headers: &[(String, String)],
) -> reqwest::RequestBuilder {
    let api_key_header = provider.meta.auth.flows.iter().find_map(|f| match f {
        crate::providers::Flow::ApiKey {
            header_name,
            value_prefix,
        } if c.flow == "api_key" => Some((header_name, value_prefix)),
        _ => None,
    });
    request = match api_key_header {
        Some((name, prefix)) => request.header(
            name.as_str(),
            format!("{}{}", prefix.as_deref().unwrap_or(""), token.expose()),
        ),
        None => request.bearer_auth(token.expose()),
    };
    for (k, v) in headers {
        request = request.header(k.as_str(), v.as_str());
    }
    request
}

async fn send_get(
    state: &AppState,
    provider: &Provider,
    c: &Connection,
    url: &str,
    headers: &[(String, String)],
    token: &Secret,
) -> AppResult<ProviderResponse> {
    let request = authorize(
        crate::outbound::with_request_id(state.outbound.client().get(url)),
        provider,
        c,
        token,
        headers,
    );
    let response = request.send().await.map_err(|e| {
        AppError::Unavailable(format!(
            "{} could not be reached ({})",
            provider.meta.display_name,
            if e.is_timeout() {
                "timed out"
            } else {
                "connection failed"
            }
        ))
    })?;
    let status = response.status().as_u16();
    let body = response.json::<Value>().await.unwrap_or(Value::Null);
    let _ = state
        .store
        .touch_connection_used(c.workspace_id, c.id, now())
        .await;
    Ok(ProviderResponse { status, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(expires_in: Option<i64>, lifetime: Option<i64>) -> Connection {
        let at = now();
        Connection {
            id: uuid::Uuid::nil(),
            workspace_id: crate::tenancy::WorkspaceId(uuid::Uuid::nil()),
            provider: "p".into(),
            environment: "production".into(),
            tenant_key: String::new(),
            owner_user_id: None,
            owner_key: "workspace".into(),
            flow: "authorization_code".into(),
            status: "CONNECTED".into(),
            account_id: None,
            account_email: None,
            account_name: None,
            requested_scopes: sqlx::types::Json(vec![]),
            granted_scopes: None,
            selected_account_ids: sqlx::types::Json(vec![]),
            header_values: sqlx::types::Json(Default::default()),
            client_id: None,
            has_refresh_token: true,
            access_expires_at: expires_in.map(|s| at + time::Duration::seconds(s)),
            access_lifetime_secs: lifetime,
            token_version: 0,
            refresh_failing_since: None,
            last_refreshed_at: None,
            last_used_at: None,
            last_sync_at: None,
            last_error: None,
            connected_by: None,
            connected_at: None,
            created_at: at,
            updated_at: at,
            automations_allowed: false,
        }
    }

    #[test]
    fn api_keys_go_in_their_header_tokens_in_bearer() {
        crate::outbound::install_crypto_provider();
        let registry = crate::providers::ProviderRegistry::load(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("providers"),
        )
        .unwrap();
        let mut provider = (**registry.get("sandbox").unwrap()).clone();
        provider
            .meta
            .auth
            .flows
            .push(crate::providers::Flow::ApiKey {
                header_name: "X-Api-Key".into(),
                value_prefix: Some("Key ".into()),
            });
        let client = reqwest::Client::new();
        let extra = [("X-Sandbox-Company".to_owned(), "acme".to_owned())];
        let token = Secret::new("s3cr3t");

        let mut c = conn(None, None);
        c.flow = "api_key".into();
        let req = authorize(client.get("http://x.test/a"), &provider, &c, &token, &extra)
            .build()
            .unwrap();
        assert_eq!(req.headers()["x-api-key"], "Key s3cr3t");
        assert!(req.headers().get("authorization").is_none());
        assert_eq!(req.headers()["x-sandbox-company"], "acme");

        let c = conn(None, None);
        let req = authorize(client.get("http://x.test/a"), &provider, &c, &token, &extra)
            .build()
            .unwrap();
        assert_eq!(req.headers()["authorization"], "Bearer s3cr3t");
        assert!(req.headers().get("x-api-key").is_none());
    }

    #[test]
    fn expiry_window() {
        let at = now();
        assert!(
            !is_expiring(&conn(None, None), 300, at),
            "tokens without expiry never refresh"
        );
        assert!(!is_expiring(&conn(Some(3600), Some(3600)), 300, at));
        assert!(is_expiring(&conn(Some(200), Some(3600)), 300, at));
        assert!(is_expiring(&conn(Some(-5), Some(3600)), 300, at));
        // A 60 s token is refreshed in its last 30 s, not always.
        assert!(!is_expiring(&conn(Some(50), Some(60)), 300, at));
        assert!(is_expiring(&conn(Some(20), Some(60)), 300, at));
    }
}
