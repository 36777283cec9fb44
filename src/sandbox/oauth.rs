//! The authorization server: consent page, token, revocation and userinfo
//! endpoints. Tokens and codes are stored only as SHA-256 digests, so a
//! lookup never compares secrets byte by byte and a dump of the maps holds
//! nothing usable.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use askama::Template;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use serde::Serialize;
use subtle::ConstantTimeEq;

use super::store::{StoredToken, TokenChange};
use super::{Inner, Origin, PAGE_CSS, Params, bump, json_response, lock, random_token, sha256};

/// Authorization codes live one minute (RFC 6749 §4.1.2 recommends ≤ 10).
const CODE_LIFETIME: Duration = Duration::from_secs(60);
/// Refresh tokens expire after 30 days unused, which also bounds how long
/// used ones are remembered for reuse detection.
const REFRESH_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);
pub(super) const DEFAULT_SCOPE: &str = "metrics.read projects.read people.read";
const DEFAULT_COMPANY: &str = "acme";
const MAX_PARAM_LEN: usize = 2048;

type Key = [u8; 32];

/// What a code or token grants.
#[derive(Clone, Debug)]
pub(super) struct Grant {
    client_id: String,
    scope: String,
    pub(super) company: String,
    subject: String,
    name: String,
}

struct AuthCode {
    grant: Grant,
    redirect_uri: String,
    challenge: Option<String>,
    expires_at: Instant,
    /// Kept after use until expiry so a replay can be detected.
    consumed: bool,
    /// Tokens issued for this code, revoked if the code is replayed (§4.1.2).
    family: Option<u64>,
}

struct AccessToken {
    grant: Grant,
    family: u64,
    /// None when the lifetime overflows the clock: never expires.
    expires_at: Option<Instant>,
}

struct RefreshToken {
    grant: Grant,
    family: u64,
    expires_at: Option<Instant>,
    used: bool,
}

/// All grants. A family is every token descending from one authorization
/// (code exchange or client credentials), revoked together.
#[derive(Default)]
pub(super) struct Grants {
    codes: HashMap<Key, AuthCode>,
    access: HashMap<Key, AccessToken>,
    refresh: HashMap<Key, RefreshToken>,
    /// Changes to the token maps not yet written to the database (see
    /// `Inner::persist`).
    changes: Vec<TokenChange>,
}

/// The wall-clock expiry of a lifetime starting now; None when it overflows.
fn wall_expiry(lifetime: Duration) -> Option<time::OffsetDateTime> {
    let secs = i64::try_from(lifetime.as_secs()).ok()?;
    time::OffsetDateTime::now_utc().checked_add(time::Duration::seconds(secs))
}

fn stored(
    hash: Key,
    kind: &str,
    grant: &Grant,
    family: u64,
    lifetime: Duration,
    used: bool,
) -> StoredToken {
    StoredToken {
        token_hash: hash.to_vec(),
        kind: kind.to_owned(),
        family: family_key(family),
        client_id: grant.client_id.clone(),
        scope: grant.scope.clone(),
        company: grant.company.clone(),
        subject: grant.subject.clone(),
        name: grant.name.clone(),
        expires_at: wall_expiry(lifetime),
        used,
        created_at: crate::storage::now(),
    }
}

/// Families are random 64-bit numbers, stored as their signed twin.
fn family_key(family: u64) -> i64 {
    i64::from_ne_bytes(family.to_ne_bytes())
}

#[derive(Serialize)]
struct TokenResponse {
    access_token: String,
    token_type: &'static str,
    expires_in: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    scope: String,
}

fn live(expires_at: Option<Instant>, now: Instant) -> bool {
    expires_at.is_none_or(|at| now < at)
}

impl Grants {
    /// Random, so families issued before a restart (or by another server
    /// on the same database) never collide with new ones.
    fn new_family(&mut self) -> u64 {
        uuid::Uuid::new_v4().as_u64_pair().0
    }

    /// The changes since the last call, in order.
    pub(super) fn take_changes(&mut self) -> Vec<TokenChange> {
        std::mem::take(&mut self.changes)
    }

    /// Tokens read back from the database after a restart; expired ones
    /// are left out.
    pub(super) fn load(&mut self, tokens: Vec<StoredToken>) {
        let wall_now = time::OffsetDateTime::now_utc();
        let now = Instant::now();
        for t in tokens {
            let Ok(key) = Key::try_from(t.token_hash.as_slice()) else {
                continue;
            };
            let expires_at = match t.expires_at {
                None => None,
                Some(at) if at <= wall_now => continue,
                Some(at) => now.checked_add((at - wall_now).unsigned_abs()),
            };
            let family = u64::from_ne_bytes(t.family.to_ne_bytes());
            let grant = Grant {
                client_id: t.client_id,
                scope: t.scope,
                company: t.company,
                subject: t.subject,
                name: t.name,
            };
            match t.kind.as_str() {
                "access" => {
                    self.access.insert(
                        key,
                        AccessToken {
                            grant,
                            family,
                            expires_at,
                        },
                    );
                }
                "refresh" => {
                    self.refresh.insert(
                        key,
                        RefreshToken {
                            grant,
                            family,
                            expires_at,
                            used: t.used,
                        },
                    );
                }
                _ => {}
            }
        }
    }

    /// Expired entries go whenever something new is stored, so memory stays
    /// bounded by what is live.
    fn prune(&mut self, now: Instant) {
        self.codes.retain(|_, c| now < c.expires_at);
        self.access.retain(|_, t| live(t.expires_at, now));
        self.refresh.retain(|_, t| live(t.expires_at, now));
    }

    fn revoke_family(&mut self, family: u64) {
        self.access.retain(|_, t| t.family != family);
        self.refresh.retain(|_, t| t.family != family);
        self.changes
            .push(TokenChange::DeleteFamily(family_key(family)));
    }

    fn insert_code(&mut self, code: &str, entry: AuthCode, now: Instant) {
        self.prune(now);
        self.codes.insert(sha256(code.as_bytes()), entry);
    }

    /// Issues an access token for `access_grant`, and a refresh token for
    /// `refresh_grant` if given (RFC 6749 §6: a rotated refresh token keeps
    /// the original scope even when the access token was narrowed).
    fn issue(
        &mut self,
        access_grant: Grant,
        refresh_grant: Option<Grant>,
        family: u64,
        now: Instant,
        lifetime_secs: u64,
    ) -> TokenResponse {
        self.prune(now);
        let access_token = random_token();
        let scope = access_grant.scope.clone();
        let access_key = sha256(access_token.as_bytes());
        self.changes.push(TokenChange::Put(stored(
            access_key,
            "access",
            &access_grant,
            family,
            Duration::from_secs(lifetime_secs),
            false,
        )));
        self.access.insert(
            access_key,
            AccessToken {
                grant: access_grant,
                family,
                expires_at: now.checked_add(Duration::from_secs(lifetime_secs)),
            },
        );
        let refresh_token = refresh_grant.map(|grant| {
            let token = random_token();
            let refresh_key = sha256(token.as_bytes());
            self.changes.push(TokenChange::Put(stored(
                refresh_key,
                "refresh",
                &grant,
                family,
                REFRESH_LIFETIME,
                false,
            )));
            self.refresh.insert(
                refresh_key,
                RefreshToken {
                    grant,
                    family,
                    expires_at: now.checked_add(REFRESH_LIFETIME),
                    used: false,
                },
            );
            token
        });
        TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in: lifetime_secs,
            refresh_token,
            scope,
        }
    }

    fn redeem_code(
        &mut self,
        code: &str,
        client_id: &str,
        redirect_uri: &str,
        verifier: Option<&str>,
        now: Instant,
        lifetime_secs: u64,
    ) -> Result<TokenResponse, OAuthError> {
        let key = sha256(code.as_bytes());
        let Some(entry) = self.codes.get_mut(&key) else {
            return Err(OAuthError::invalid_grant("unknown authorization code"));
        };
        if now >= entry.expires_at {
            self.codes.remove(&key);
            return Err(OAuthError::invalid_grant("authorization code expired"));
        }
        if entry.consumed {
            if let Some(family) = entry.family {
                self.revoke_family(family);
            }
            return Err(OAuthError::invalid_grant(
                "authorization code already used; tokens issued for it are revoked",
            ));
        }
        // Any attempt uses the code up, so a verifier can't be guessed by retrying.
        entry.consumed = true;
        if entry.grant.client_id != client_id {
            return Err(OAuthError::invalid_grant(
                "code was issued to another client",
            ));
        }
        if entry.redirect_uri != redirect_uri {
            return Err(OAuthError::invalid_grant(
                "redirect_uri does not match the authorization request",
            ));
        }
        match (entry.challenge.as_deref(), verifier) {
            (Some(challenge), Some(verifier)) => {
                if !pkce_matches(challenge, verifier) {
                    return Err(OAuthError::invalid_grant("PKCE verification failed"));
                }
            }
            (Some(_), None) => return Err(OAuthError::invalid_grant("code_verifier is required")),
            // A verifier without a challenge hints at a PKCE downgrade (RFC 9700 §2.1.1).
            (None, Some(_)) => {
                return Err(OAuthError::invalid_grant(
                    "code_verifier sent but no code_challenge was",
                ));
            }
            (None, None) => {}
        }
        let grant = entry.grant.clone();
        let family = self.new_family();
        let tokens = self.issue(grant.clone(), Some(grant), family, now, lifetime_secs);
        if let Some(entry) = self.codes.get_mut(&key) {
            entry.family = Some(family);
        }
        Ok(tokens)
    }

    fn rotate_refresh(
        &mut self,
        token: &str,
        client_id: &str,
        scope: Option<&str>,
        now: Instant,
        lifetime_secs: u64,
    ) -> Result<TokenResponse, OAuthError> {
        let key = sha256(token.as_bytes());
        let Some(entry) = self.refresh.get_mut(&key) else {
            return Err(OAuthError::invalid_grant(
                "unknown or revoked refresh token",
            ));
        };
        if !live(entry.expires_at, now) {
            self.refresh.remove(&key);
            self.changes.push(TokenChange::Delete(key.to_vec()));
            return Err(OAuthError::invalid_grant("refresh token expired"));
        }
        if entry.used {
            // Reuse means a copy leaked: kill every token of the grant.
            let family = entry.family;
            self.revoke_family(family);
            return Err(OAuthError::invalid_grant(
                "refresh token already used; the grant is revoked",
            ));
        }
        if entry.grant.client_id != client_id {
            return Err(OAuthError::invalid_grant(
                "refresh token was issued to another client",
            ));
        }
        let mut access_grant = entry.grant.clone();
        if let Some(requested) = scope {
            let requested = normalize_scope(requested).ok_or_else(OAuthError::bad_scope)?;
            let granted: Vec<&str> = entry.grant.scope.split(' ').collect();
            if !requested.split(' ').all(|s| granted.contains(&s)) {
                return Err(OAuthError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_scope",
                    "requested scope exceeds the original grant",
                ));
            }
            access_grant.scope = requested;
        }
        entry.used = true;
        let family = entry.family;
        let refresh_grant = entry.grant.clone();
        self.changes.push(TokenChange::MarkUsed(key.to_vec()));
        Ok(self.issue(
            access_grant,
            Some(refresh_grant),
            family,
            now,
            lifetime_secs,
        ))
    }

    /// RFC 7009: revoking an access token revokes just it; a refresh token
    /// takes its whole family. Unknown tokens are not an error.
    fn revoke(&mut self, token: &str, client_id: &str) {
        let key = sha256(token.as_bytes());
        if self
            .access
            .get(&key)
            .is_some_and(|t| t.grant.client_id == client_id)
        {
            self.access.remove(&key);
            self.changes.push(TokenChange::Delete(key.to_vec()));
        }
        if let Some(family) = self
            .refresh
            .get(&key)
            .filter(|t| t.grant.client_id == client_id)
            .map(|t| t.family)
        {
            self.revoke_family(family);
        }
    }

    fn bearer(&mut self, token: &str, now: Instant) -> Option<Grant> {
        let key = sha256(token.as_bytes());
        let entry = self.access.get(&key)?;
        if live(entry.expires_at, now) {
            Some(entry.grant.clone())
        } else {
            self.access.remove(&key);
            None
        }
    }
}

/// base64url-no-pad(SHA-256(verifier)) == challenge, in constant time.
fn pkce_matches(challenge: &str, verifier: &str) -> bool {
    if !is_pkce_string(verifier) {
        return false;
    }
    let computed = URL_SAFE_NO_PAD.encode(sha256(verifier.as_bytes()));
    bool::from(computed.as_bytes().ct_eq(challenge.as_bytes()))
}

/// RFC 7636 §4.1: 43–128 unreserved characters (same shape for challenges).
fn is_pkce_string(value: &str) -> bool {
    (43..=128).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// Space-separated scope tokens of the RFC 6749 §3.3 alphabet, deduplicated
/// in order; None if malformed.
fn normalize_scope(raw: &str) -> Option<String> {
    if raw.len() > MAX_PARAM_LEN {
        return None;
    }
    let mut tokens: Vec<&str> = Vec::new();
    for token in raw.split(' ').filter(|t| !t.is_empty()) {
        if !token
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
        {
            return None;
        }
        if !tokens.contains(&token) {
            tokens.push(token);
        }
    }
    if tokens.is_empty() {
        Some(DEFAULT_SCOPE.to_owned())
    } else {
        Some(tokens.join(" "))
    }
}

/// A company becomes an email domain label, so: lowercase letters, digits
/// and inner hyphens, at most 63.
fn normalize_company(raw: &str) -> Option<String> {
    let company = raw.trim().to_ascii_lowercase();
    let ok = !company.is_empty()
        && company.len() <= 63
        && company
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !company.starts_with('-')
        && !company.ends_with('-');
    ok.then_some(company)
}

fn user_grant(client_id: &str, scope: &str, company: &str) -> Grant {
    Grant {
        client_id: client_id.to_owned(),
        scope: scope.to_owned(),
        company: company.to_owned(),
        subject: format!("sandbox-user-{company}"),
        name: "Sandbox User".to_owned(),
    }
}

// ---------------------------------------------------------------- errors

/// An RFC 6749 §5.2 error answer.
#[derive(Debug)]
pub(super) struct OAuthError {
    status: StatusCode,
    error: &'static str,
    description: String,
    /// The client tried HTTP Basic, so a 401 must name that scheme.
    basic_challenge: bool,
}

impl OAuthError {
    fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        OAuthError {
            status,
            error,
            description: description.into(),
            basic_challenge: false,
        }
    }

    fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    fn invalid_grant(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_grant", description)
    }

    fn invalid_client(basic: bool) -> Self {
        OAuthError {
            basic_challenge: basic,
            ..Self::new(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "client authentication failed",
            )
        }
    }

    fn bad_scope() -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_scope", "malformed scope")
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let mut response = json_response(
            self.status,
            serde_json::json!({"error": self.error, "error_description": self.description}),
        );
        no_store(response.headers_mut());
        if self.basic_challenge {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"sandbox\""),
            );
        }
        response
    }
}

fn no_store(headers: &mut HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

/// RFC 6750 §3.1 answer for a missing, unknown, expired or revoked token.
pub(super) fn invalid_token() -> Response {
    let mut response = json_response(
        StatusCode::UNAUTHORIZED,
        serde_json::json!({"error": "invalid_token"}),
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer error=\"invalid_token\""),
    );
    response
}

// ---------------------------------------------------------------- authorize

/// A validated authorization request.
struct AuthRequest {
    client_id: String,
    redirect_uri: String,
    redirect_origin: Origin,
    scope: String,
    state: Option<String>,
    code_challenge: Option<String>,
}

impl Inner {
    /// Checks the parameters shared by the consent page and its POST. The
    /// client and redirect URI are checked first: until both are known good,
    /// errors are shown here and never redirected (RFC 6749 §4.1.2.1).
    fn auth_request(&self, params: &Params) -> Result<AuthRequest, String> {
        if let Some(name) = params.duplicate() {
            return Err(format!("The parameter {name} was sent more than once."));
        }
        let client_id = params.get("client_id").unwrap_or_default();
        if client_id.is_empty()
            || !bool::from(client_id.as_bytes().ct_eq(self.client_id.as_bytes()))
        {
            return Err("Unknown client_id.".into());
        }
        let Some(redirect_uri) = params.get("redirect_uri") else {
            return Err("redirect_uri is required.".into());
        };
        let Some(redirect_origin) = Origin::parse(redirect_uri) else {
            return Err(
                "redirect_uri must be an absolute http(s) URL without user info or fragment."
                    .into(),
            );
        };
        // Without registered URIs, only Plugboard's own origin and loopback
        // (RFC 8252 §7.3) are accepted: the sandbox is no open redirector.
        if !redirect_origin.is_loopback() && self.public_origin.as_ref() != Some(&redirect_origin) {
            return Err(
                "redirect_uri must be on Plugboard's own origin or a loopback address.".into(),
            );
        }
        if params.get("response_type") != Some("code") {
            return Err("response_type must be \"code\".".into());
        }
        let code_challenge = match (
            params.get("code_challenge"),
            params.get("code_challenge_method"),
        ) {
            (None, None) => None,
            (Some(challenge), Some("S256")) if is_pkce_string(challenge) => {
                Some(challenge.to_owned())
            }
            (Some(_), Some("S256")) => return Err("code_challenge is malformed.".into()),
            (None, Some(_)) => return Err("code_challenge_method without code_challenge.".into()),
            // Absent means "plain" (RFC 7636 §4.3), which the sandbox refuses.
            (Some(_), _) => return Err("code_challenge_method must be S256.".into()),
        };
        let scope = normalize_scope(params.get("scope").unwrap_or_default())
            .ok_or_else(|| "scope is malformed.".to_owned())?;
        let state = params.get("state").map(str::to_owned);
        if state.as_ref().is_some_and(|s| s.len() > MAX_PARAM_LEN) {
            return Err("state is too long.".into());
        }
        Ok(AuthRequest {
            client_id: client_id.to_owned(),
            redirect_uri: redirect_uri.to_owned(),
            redirect_origin,
            scope,
            state,
            code_challenge,
        })
    }

    fn consent_page(
        &self,
        status: StatusCode,
        request: &AuthRequest,
        company: &str,
        error: Option<&str>,
    ) -> Response {
        let page = AuthorizePage {
            css: PAGE_CSS,
            client_id: &request.client_id,
            redirect_uri: &request.redirect_uri,
            scope: &request.scope,
            scopes: request.scope.split(' ').collect(),
            state: request.state.as_deref().unwrap_or_default(),
            code_challenge: request.code_challenge.as_deref().unwrap_or_default(),
            code_challenge_method: if request.code_challenge.is_some() {
                "S256"
            } else {
                ""
            },
            company,
            error,
        };
        self.render(status, &page, Some(&request.redirect_origin))
    }
}

#[derive(Template)]
#[template(path = "sandbox/authorize.html")]
struct AuthorizePage<'a> {
    css: &'a str,
    client_id: &'a str,
    redirect_uri: &'a str,
    scope: &'a str,
    scopes: Vec<&'a str>,
    state: &'a str,
    code_challenge: &'a str,
    code_challenge_method: &'a str,
    company: &'a str,
    error: Option<&'a str>,
}

/// `GET /oauth/authorize`: the consent page.
pub(super) async fn authorize_page(
    State(inner): State<Arc<Inner>>,
    RawQuery(query): RawQuery,
) -> Response {
    bump(&inner.stats.authorize);
    let Some(params) = Params::parse(query.unwrap_or_default().as_bytes()) else {
        return inner.error_page(StatusCode::BAD_REQUEST, "The query string is malformed.");
    };
    match inner.auth_request(&params) {
        Ok(request) => inner.consent_page(StatusCode::OK, &request, DEFAULT_COMPANY, None),
        Err(message) => inner.error_page(StatusCode::BAD_REQUEST, &message),
    }
}

/// `POST /oauth/authorize`: the user's decision. Everything is validated
/// again: the hidden fields are as untrusted as the original query.
pub(super) async fn authorize_decision(State(inner): State<Arc<Inner>>, body: Bytes) -> Response {
    bump(&inner.stats.authorize);
    let Some(params) = Params::parse(&body) else {
        return inner.error_page(StatusCode::BAD_REQUEST, "The form is malformed.");
    };
    let request = match inner.auth_request(&params) {
        Ok(request) => request,
        Err(message) => return inner.error_page(StatusCode::BAD_REQUEST, &message),
    };
    let state = request.state.as_deref();
    match params.get("decision") {
        Some("deny") => {
            let mut query = vec![
                ("error", "access_denied"),
                ("error_description", "The user denied the request."),
            ];
            query.extend(state.map(|s| ("state", s)));
            inner.redirect(&request.redirect_uri, &query)
        }
        Some("approve") => {
            let raw_company = params.get("company").unwrap_or_default();
            let Some(company) = normalize_company(raw_company) else {
                return inner.consent_page(
                    StatusCode::BAD_REQUEST,
                    &request,
                    raw_company,
                    Some("Company: use 1–63 lowercase letters, digits or inner hyphens."),
                );
            };
            let code = random_token();
            let now = Instant::now();
            let entry = AuthCode {
                grant: user_grant(&request.client_id, &request.scope, &company),
                redirect_uri: request.redirect_uri.clone(),
                challenge: request.code_challenge.clone(),
                expires_at: now + CODE_LIFETIME,
                consumed: false,
                family: None,
            };
            lock(&inner.grants).insert_code(&code, entry, now);
            let mut query = vec![("code", code.as_str())];
            query.extend(state.map(|s| ("state", s)));
            inner.redirect(&request.redirect_uri, &query)
        }
        _ => inner.error_page(StatusCode::BAD_REQUEST, "decision must be approve or deny."),
    }
}

impl Inner {
    /// 302 to a validated redirect URI with `query` appended.
    fn redirect(&self, redirect_uri: &str, query: &[(&str, &str)]) -> Response {
        let encoded = serde_urlencoded::to_string(query).unwrap_or_default();
        let separator = if !redirect_uri.contains('?') {
            "?"
        } else if redirect_uri.ends_with('?') || redirect_uri.ends_with('&') {
            ""
        } else {
            "&"
        };
        match HeaderValue::from_str(&format!("{redirect_uri}{separator}{encoded}")) {
            Ok(location) => {
                let mut response = StatusCode::FOUND.into_response();
                response.headers_mut().insert(header::LOCATION, location);
                no_store(response.headers_mut());
                response
            }
            Err(_) => self.error_page(StatusCode::BAD_REQUEST, "redirect_uri is not usable."),
        }
    }
}

// ---------------------------------------------------------------- token

/// `POST /oauth/token`.
pub(super) async fn token(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    inner.stats.note_request_id(&headers);
    let response = token_response(&inner, &headers, &body);
    // Written before the tokens leave, so a restart never loses one a
    // client holds.
    inner.persist().await;
    if response.status().is_client_error() || response.status().is_server_error() {
        bump(&inner.stats.token_errors);
    }
    response
}

fn token_response(inner: &Inner, headers: &HeaderMap, body: &[u8]) -> Response {
    let params = Params::parse(body);
    match params.as_ref().and_then(|p| p.get("grant_type")) {
        Some("authorization_code") => bump(&inner.stats.token_authorization_code),
        Some("refresh_token") => bump(&inner.stats.token_refresh),
        Some("client_credentials") => bump(&inner.stats.token_client_credentials),
        _ => {}
    }
    if let Some(fault) = take_token_fault(inner) {
        return fault;
    }
    let Some(params) = params else {
        return OAuthError::invalid_request("the body must be application/x-www-form-urlencoded")
            .into_response();
    };
    match grant(inner, headers, &params) {
        Ok(tokens) => {
            let mut response = (StatusCode::OK, axum::Json(tokens)).into_response();
            no_store(response.headers_mut());
            response
        }
        Err(err) => err.into_response(),
    }
}

fn take_token_fault(inner: &Inner) -> Option<Response> {
    let mut faults = lock(&inner.faults);
    if faults.token_error_next > 0 {
        faults.token_error_next -= 1;
        let mut response = json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            serde_json::json!({"error": "server_error"}),
        );
        no_store(response.headers_mut());
        return Some(response);
    }
    if faults.token_malformed_next > 0 {
        faults.token_malformed_next -= 1;
        let mut response = (StatusCode::OK, "{\"access_token\": ").into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        no_store(response.headers_mut());
        return Some(response);
    }
    None
}

fn grant(inner: &Inner, headers: &HeaderMap, params: &Params) -> Result<TokenResponse, OAuthError> {
    if let Some(name) = params.duplicate() {
        return Err(OAuthError::invalid_request(format!(
            "{name} sent more than once"
        )));
    }
    let client_id = authenticate_client(inner, headers, params)?;
    let now = Instant::now();
    let lifetime = inner.token_lifetime_secs;
    match params.get("grant_type") {
        Some("authorization_code") => {
            let code = params
                .get("code")
                .ok_or_else(|| OAuthError::invalid_request("code is required"))?;
            let redirect_uri = params
                .get("redirect_uri")
                .ok_or_else(|| OAuthError::invalid_request("redirect_uri is required"))?;
            lock(&inner.grants).redeem_code(
                code,
                &client_id,
                redirect_uri,
                params.get("code_verifier"),
                now,
                lifetime,
            )
        }
        Some("refresh_token") => {
            let token = params
                .get("refresh_token")
                .ok_or_else(|| OAuthError::invalid_request("refresh_token is required"))?;
            lock(&inner.grants).rotate_refresh(
                token,
                &client_id,
                params.get("scope"),
                now,
                lifetime,
            )
        }
        Some("client_credentials") => {
            let scope = normalize_scope(params.get("scope").unwrap_or_default())
                .ok_or_else(OAuthError::bad_scope)?;
            let grant = Grant {
                subject: format!("client:{client_id}"),
                client_id,
                scope,
                company: DEFAULT_COMPANY.to_owned(),
                name: "Sandbox service account".to_owned(),
            };
            let mut grants = lock(&inner.grants);
            let family = grants.new_family();
            Ok(grants.issue(grant, None, family, now, lifetime))
        }
        Some(_) => Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant_type must be authorization_code, refresh_token or client_credentials",
        )),
        None => Err(OAuthError::invalid_request("grant_type is required")),
    }
}

/// RFC 6749 §2.3.1: HTTP Basic (id and secret form-urlencoded, then
/// base64) or `client_id`/`client_secret` in the body, never both.
fn authenticate_client(
    inner: &Inner,
    headers: &HeaderMap,
    params: &Params,
) -> Result<String, OAuthError> {
    let basic = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(value) => {
            let credentials = value
                .to_str()
                .ok()
                .and_then(|v| v.split_once(' '))
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
                .and_then(|(_, encoded)| decode_basic(encoded.trim()))
                .ok_or_else(|| OAuthError::invalid_client(true))?;
            Some(credentials)
        }
    };
    let (candidates, via_basic) = match basic {
        Some((id, secret)) => {
            if params.get("client_secret").is_some() {
                return Err(OAuthError::invalid_request(
                    "use one client authentication method, not both",
                ));
            }
            // Many clients skip the form-encoding step, so accept the raw
            // form too when it differs.
            let decoded = (form_decode(&id), form_decode(&secret));
            let raw = (id, secret);
            let candidates = if decoded == raw {
                vec![raw]
            } else {
                vec![decoded, raw]
            };
            (candidates, true)
        }
        None => match (params.get("client_id"), params.get("client_secret")) {
            (Some(id), Some(secret)) => (vec![(id.to_owned(), secret.to_owned())], false),
            _ => return Err(OAuthError::invalid_client(false)),
        },
    };
    let accepted = candidates.into_iter().find(|(id, secret)| {
        let id_ok = id.as_bytes().ct_eq(inner.client_id.as_bytes());
        let secret_ok = sha256(secret.as_bytes()).ct_eq(&inner.client_secret_digest);
        bool::from(id_ok & secret_ok)
    });
    let Some((client_id, _)) = accepted else {
        return Err(OAuthError::invalid_client(via_basic));
    };
    if params
        .get("client_id")
        .is_some_and(|body_id| body_id != client_id)
    {
        return Err(OAuthError::invalid_request(
            "client_id in the body differs from the authenticated client",
        ));
    }
    Ok(client_id)
}

fn decode_basic(encoded: &str) -> Option<(String, String)> {
    let bytes = STANDARD
        .decode(encoded)
        .or_else(|_| STANDARD_NO_PAD.decode(encoded))
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

/// application/x-www-form-urlencoded decoding of one component.
fn form_decode(value: &str) -> String {
    // serde_urlencoded splits on '&' and the first '='; escape those first
    // so they survive as literal characters.
    let escaped = value.replace('&', "%26").replace('=', "%3D");
    serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("v={escaped}"))
        .ok()
        .and_then(|pairs| pairs.into_iter().next())
        .map(|(_, v)| v)
        .unwrap_or_else(|| value.to_owned())
}

// ---------------------------------------------------------------- revoke, userinfo

/// `POST /oauth/revoke` (RFC 7009): 200 whether or not the token existed.
pub(super) async fn revoke(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    bump(&inner.stats.revoke);
    let Some(params) = Params::parse(&body) else {
        return OAuthError::invalid_request("the body must be application/x-www-form-urlencoded")
            .into_response();
    };
    let client_id = match authenticate_client(&inner, &headers, &params) {
        Ok(client_id) => client_id,
        Err(err) => return err.into_response(),
    };
    let Some(token) = params.get("token") else {
        return OAuthError::invalid_request("token is required").into_response();
    };
    // token_type_hint only speeds up lookups on real servers; both maps are
    // checked here anyway.
    lock(&inner.grants).revoke(token, &client_id);
    inner.persist().await;
    let mut response = StatusCode::OK.into_response();
    no_store(response.headers_mut());
    response
}

impl Inner {
    /// The grant behind a valid `Authorization: Bearer` header; None
    /// answers [`invalid_token`].
    pub(super) fn authenticate_bearer(&self, headers: &HeaderMap) -> Option<Grant> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|token| !token.is_empty())?;
        lock(&self.grants).bearer(token, Instant::now())
    }
}

/// `GET /oauth/userinfo`.
pub(super) async fn userinfo(State(inner): State<Arc<Inner>>, headers: HeaderMap) -> Response {
    bump(&inner.stats.userinfo);
    match inner.authenticate_bearer(&headers) {
        Some(grant) => axum::Json(serde_json::json!({
            "sub": grant.subject,
            "email": format!("sandbox.user@{}.example", grant.company),
            "name": grant.name,
            "company": grant.company,
        }))
        .into_response(),
        None => invalid_token(),
    }
}
