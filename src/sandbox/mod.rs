//! The built-in sandbox provider: a fake OAuth 2.0 authorization server
//! (RFC 6749, PKCE per RFC 7636, revocation per RFC 7009) and a small data
//! API, served by Plugboard itself under `/sandbox`. It exists for offline
//! demos and as the test bed for the OAuth and sync code, so it is as strict
//! as real providers (single-use codes, rotating refresh tokens with reuse
//! detection, exact redirect URIs) and can inject faults on demand.
//!
//! State is in memory, except issued access and refresh tokens: once the
//! app attaches its store ([`Sandbox::attach_store`]) they are also kept in
//! the database (as digests), so a demo connection survives a restart.

mod data;
mod oauth;
pub mod store;
#[cfg(test)]
mod tests;

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use askama::Template;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

/// How the app configures its sandbox.
#[derive(Clone)]
pub struct SandboxConfig {
    /// e.g. `http://127.0.0.1:8080`, no trailing slash.
    pub public_url: String,
    pub client_id: String,
    pub client_secret: String,
    /// Access token lifetime; 0 makes tokens expire at once (for tests).
    pub token_lifetime_secs: u64,
    pub dataset: Dataset,
    /// The request budget its quota headers advertise.
    pub requests_per_minute: u32,
    /// The last [`REVISED_DAYS`] days' metrics change from one read to the
    /// next, as real providers revise recent days.
    pub revisions: bool,
}

/// Days (today included) whose sandbox metrics are revised between reads.
pub const REVISED_DAYS: u32 = 3;

impl fmt::Debug for SandboxConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SandboxConfig")
            .field("public_url", &self.public_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field("token_lifetime_secs", &self.token_lifetime_secs)
            .field("dataset", &self.dataset)
            .field("requests_per_minute", &self.requests_per_minute)
            .field("revisions", &self.revisions)
            .finish()
    }
}

/// Size of the generated data set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dataset {
    pub properties: usize,
    pub days: u32,
    /// Parent projects.
    pub projects: usize,
    pub children_per_project: usize,
    pub people: usize,
}

impl Default for Dataset {
    fn default() -> Self {
        Dataset {
            properties: 3,
            days: 90,
            projects: 60,
            children_per_project: 2,
            people: 40,
        }
    }
}

impl Dataset {
    /// `properties=3,days=90,projects=60,children=2,people=40`; unnamed
    /// sizes keep their defaults.
    pub fn parse(raw: &str) -> Result<Dataset, String> {
        let mut d = Dataset::default();
        for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?}: expected name=number"))?;
            let n: usize = value
                .trim()
                .parse()
                .map_err(|_| format!("{part:?}: expected a whole number"))?;
            match name.trim() {
                "properties" => d.properties = n,
                "days" => d.days = u32::try_from(n).unwrap_or(u32::MAX),
                "projects" => d.projects = n,
                "children" => d.children_per_project = n,
                "people" => d.people = n,
                other => return Err(format!("{other:?}: unknown size")),
            }
        }
        Ok(d)
    }

    /// Caps keep a mistyped size from exhausting memory (projects are held in
    /// memory; the rest is generated per request) or overflowing dates.
    /// People are generated one page at a time, so their cap is high enough
    /// for the sync benchmark's 200,000 records.
    fn clamped(self) -> Dataset {
        Dataset {
            properties: self.properties.min(1_000),
            days: self.days.min(36_500),
            projects: self.projects.min(5_000),
            children_per_project: self.children_per_project.min(20),
            people: self.people.min(1_000_000),
        }
    }
}

/// Faults to inject; `POST /_faults` replaces the whole set.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// The next N data-API requests answer 429 with `Retry-After`.
    pub rate_limit_next: u32,
    pub retry_after_secs: u64,
    /// The next N data-API requests answer 503.
    pub unavailable_next: u32,
    /// Every data-API response is delayed this long (capped at 10 minutes).
    pub slow_ms: u64,
    /// The next N token requests answer 500 `{"error":"server_error"}`.
    pub token_error_next: u32,
    /// The next N token requests answer 200 with truncated JSON.
    pub token_malformed_next: u32,
    /// The next N data-API answers report the quota used up, resetting in
    /// `quota_reset_secs`.
    pub quota_exhausted_next: u32,
    pub quota_reset_secs: u64,
    /// The next N data-API requests answer 400 with a body that carries a
    /// token and an email address (for redaction tests).
    pub bad_request_next: u32,
    /// One more property listed with this id and name, as an odd or hostile
    /// provider might send it (`/`, `?`, `#`, `%2F`, NUL …). Its metrics
    /// are prop-1's.
    pub extra_property: Option<String>,
    /// Every projects page lists its first project again at its end, renamed
    /// `… (changed while paging)`, as a provider does when a record changes
    /// between the pages of a read.
    pub repeat_first_project: bool,
}

/// Requests that reached each handler, failed ones included.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct SandboxStats {
    pub authorize: u64,
    pub token_authorization_code: u64,
    pub token_refresh: u64,
    pub token_client_credentials: u64,
    /// Token answers that were errors (4xx/5xx), injected ones included.
    pub token_errors: u64,
    pub revoke: u64,
    pub userinfo: u64,
    pub api_requests: u64,
    /// The X-Request-ID of the latest API or token request.
    pub last_request_id: Option<String>,
    /// The path of the latest daily-metrics request as it arrived, still
    /// percent-encoded (what a provider would see).
    pub last_metrics_path: Option<String>,
}

/// The sandbox; cheap to clone (shared state).
#[derive(Clone)]
pub struct Sandbox {
    inner: Arc<Inner>,
}

impl fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sandbox")
            .field("public_url", &self.inner.public_url)
            .finish_non_exhaustive()
    }
}

struct Inner {
    public_url: String,
    client_id: String,
    /// Only a digest is kept, which also makes the comparison length-blind.
    client_secret_digest: [u8; 32],
    token_lifetime_secs: u64,
    dataset: Dataset,
    requests_per_minute: u32,
    /// Redirect URIs must be on this origin (or loopback).
    public_origin: Option<Origin>,
    /// CSP source for the pages' inline stylesheet.
    style_hash: String,
    created_at: OffsetDateTime,
    grants: Mutex<oauth::Grants>,
    projects: Mutex<Vec<data::Project>>,
    /// Channels daily metrics are broken down by (none: one row a day).
    metric_channels: Mutex<Vec<String>>,
    /// Whether recent days are revised between reads, and how many metric
    /// reads there have been (mixed into the revised days' numbers).
    revisions: std::sync::atomic::AtomicBool,
    metric_reads: AtomicU64,
    faults: Mutex<Faults>,
    rate_window: Mutex<data::RateWindow>,
    stats: Counters,
    /// Where issued tokens are kept across restarts; none in unit tests.
    journal: std::sync::OnceLock<crate::storage::DynStore>,
    /// Writes token changes one batch at a time, in the order they happened.
    persist_lock: tokio::sync::Mutex<()>,
}

impl Inner {
    /// Writes the token maps' changes to the store. A failed write is
    /// logged: the tokens still work until a restart.
    async fn persist(&self) {
        let _order = self.persist_lock.lock().await;
        let changes = lock(&self.grants).take_changes();
        let Some(store) = self.journal.get() else {
            return;
        };
        if changes.is_empty() {
            return;
        }
        if let Err(err) = store
            .apply_sandbox_token_changes(&changes, crate::storage::now())
            .await
        {
            tracing::warn!(error = %err, "sandbox: issued tokens not saved; they won't survive a restart");
        }
    }
}

impl Sandbox {
    pub fn new(config: SandboxConfig) -> Self {
        let created_at = OffsetDateTime::now_utc();
        let dataset = config.dataset.clamped();
        let public_url = config.public_url.trim_end_matches('/').to_owned();
        let public_origin = Origin::parse(&public_url);
        if public_origin.is_none() {
            tracing::warn!(
                "sandbox: public_url is not an http(s) URL; only loopback redirect URIs will be accepted"
            );
        }
        let inner = Inner {
            public_origin,
            public_url,
            client_id: config.client_id,
            client_secret_digest: sha256(config.client_secret.as_bytes()),
            token_lifetime_secs: config.token_lifetime_secs,
            dataset,
            requests_per_minute: config.requests_per_minute.max(1),
            style_hash: format!("'sha256-{}'", STANDARD.encode(sha256(PAGE_CSS.as_bytes()))),
            created_at,
            grants: Mutex::new(oauth::Grants::default()),
            projects: Mutex::new(data::generate_projects(&dataset, created_at)),
            metric_channels: Mutex::new(Vec::new()),
            revisions: std::sync::atomic::AtomicBool::new(config.revisions),
            metric_reads: AtomicU64::new(0),
            faults: Mutex::new(Faults::default()),
            rate_window: Mutex::new(data::RateWindow::new(Instant::now())),
            stats: Counters::default(),
            journal: std::sync::OnceLock::new(),
            persist_lock: tokio::sync::Mutex::new(()),
        };
        Sandbox {
            inner: Arc::new(inner),
        }
    }

    /// The sandbox's routes, relative to where the app nests them (`/sandbox`).
    pub fn router(&self) -> Router {
        Router::new()
            .route("/", get(index))
            .route(
                "/oauth/authorize",
                get(oauth::authorize_page).post(oauth::authorize_decision),
            )
            .route("/oauth/token", post(oauth::token))
            .route("/oauth/revoke", post(oauth::revoke))
            .route("/oauth/userinfo", get(oauth::userinfo))
            .route("/api/properties", get(data::properties))
            .route(
                "/api/properties/{id}/daily-metrics",
                get(data::daily_metrics),
            )
            .route("/api/projects", get(data::projects))
            .route("/api/people", get(data::people))
            .route("/_stats", get(stats))
            .route("/_faults", post(faults))
            .with_state(self.inner.clone())
    }

    /// Loads the tokens issued before a restart and keeps new ones in
    /// `store` from now on. Called once, at start.
    pub async fn attach_store(&self, store: crate::storage::DynStore) -> anyhow::Result<()> {
        let tokens = store
            .live_sandbox_tokens(crate::storage::now())
            .await
            .map_err(anyhow::Error::new)?;
        let count = tokens.len();
        lock(&self.inner.grants).load(tokens);
        if self.inner.journal.set(store).is_err() {
            anyhow::bail!("the sandbox's store is attached already");
        }
        tracing::debug!(tokens = count, "sandbox: issued tokens loaded");
        Ok(())
    }

    pub fn stats(&self) -> SandboxStats {
        self.inner.stats.snapshot()
    }

    /// Replaces the injected faults (counters start over).
    pub fn set_faults(&self, faults: Faults) {
        *lock(&self.inner.faults) = faults;
    }

    /// Renames a project and bumps its `updated_at`; unknown ids are ignored.
    pub fn touch_project(&self, id: &str, name: &str) {
        data::update_project(&self.inner, id, |p| p.name = name.to_owned());
    }

    /// Marks a project deleted and bumps its `updated_at`; unknown ids are ignored.
    pub fn delete_project(&self, id: &str) {
        data::update_project(&self.inner, id, |p| p.deleted = true);
    }

    /// Breaks daily metrics down by these channels from now on (a `channel`
    /// dimension, one row per day and channel); none: one row a day. A
    /// channel dropped later is a dimension combination that vanished.
    pub fn set_metric_channels(&self, channels: &[&str]) {
        *lock(&self.inner.metric_channels) = channels.iter().map(|c| (*c).to_owned()).collect();
    }

    /// Switches revisions of recent days between reads on or off.
    pub fn set_revisions(&self, on: bool) {
        self.inner.revisions.store(on, Ordering::Relaxed);
    }
}

#[derive(Default)]
struct Counters {
    authorize: AtomicU64,
    token_authorization_code: AtomicU64,
    token_refresh: AtomicU64,
    token_client_credentials: AtomicU64,
    token_errors: AtomicU64,
    revoke: AtomicU64,
    userinfo: AtomicU64,
    api_requests: AtomicU64,
    last_request_id: Mutex<Option<String>>,
    last_metrics_path: Mutex<Option<String>>,
}

impl Counters {
    fn snapshot(&self) -> SandboxStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        SandboxStats {
            authorize: get(&self.authorize),
            token_authorization_code: get(&self.token_authorization_code),
            token_refresh: get(&self.token_refresh),
            token_client_credentials: get(&self.token_client_credentials),
            token_errors: get(&self.token_errors),
            revoke: get(&self.revoke),
            userinfo: get(&self.userinfo),
            api_requests: get(&self.api_requests),
            last_request_id: lock(&self.last_request_id).clone(),
            last_metrics_path: lock(&self.last_metrics_path).clone(),
        }
    }

    fn note_request_id(&self, headers: &HeaderMap) {
        if let Some(id) = headers.get("x-request-id").and_then(|v| v.to_str().ok()) {
            *lock(&self.last_request_id) = Some(id.to_owned());
        }
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// A poisoned lock only means another request panicked mid-update; the maps
/// stay usable, so carry on rather than take the sandbox down.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// 256 random bits from the thread-local CSPRNG, base64url without padding.
fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

fn json_response(status: StatusCode, body: serde_json::Value) -> Response {
    (status, Json(body)).into_response()
}

/// Decoded `application/x-www-form-urlencoded` pairs (a query string or a
/// form body), kept in order so duplicates can be detected.
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(raw: &[u8]) -> Option<Params> {
        serde_urlencoded::from_bytes::<Vec<(String, String)>>(raw)
            .ok()
            .map(Params)
    }

    /// The first value of `name`; an empty value counts as absent (RFC 6749 §3.1).
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// The first parameter sent more than once, which OAuth forbids.
    fn duplicate(&self) -> Option<&str> {
        let mut seen = std::collections::HashSet::new();
        self.0
            .iter()
            .find(|(k, _)| !seen.insert(k.as_str()))
            .map(|(k, _)| k.as_str())
    }
}

/// Scheme, host and port of an http(s) URL.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl Origin {
    /// Strict parse: absolute http(s), no user info, no fragment, a valid
    /// port, printable ASCII only.
    fn parse(raw: &str) -> Option<Origin> {
        if raw.len() > 2048
            || raw
                .bytes()
                .any(|b| !b.is_ascii_graphic() || b == b'#' || b == b'\\')
        {
            return None;
        }
        let uri: Uri = raw.parse().ok()?;
        let scheme = uri.scheme_str()?.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return None,
        };
        let authority = uri.authority()?;
        if authority.as_str().contains('@') {
            return None;
        }
        let host = authority.host().to_ascii_lowercase();
        if host.is_empty() {
            return None;
        }
        // Whatever follows the host must be a valid port.
        let explicit_port = authority
            .as_str()
            .strip_prefix(authority.host())
            .unwrap_or(":");
        let port = match authority.port_u16() {
            Some(port) => port,
            None if explicit_port.is_empty() => default_port,
            None => return None,
        };
        Some(Origin { scheme, host, port })
    }

    fn is_loopback(&self) -> bool {
        let host = self.host.as_str();
        host == "localhost"
            || host.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
            || host
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .and_then(|h| h.parse::<Ipv6Addr>().ok())
                .is_some_and(|ip| ip.is_loopback())
    }

    /// For a CSP `form-action` source: validated host and port only.
    fn serialize(&self) -> String {
        format!("{}://{}:{}", self.scheme, self.host, self.port)
    }
}

/// The pages' stylesheet, inlined and allowed by its hash so the pages stand
/// alone under a CSP without 'unsafe-inline'.
const PAGE_CSS: &str = "
body{font-family:system-ui,sans-serif;background:#f4f5f7;color:#1d2330;margin:0}
main{max-width:34rem;margin:3rem auto;background:#fff;border:1px solid #d8dbe2;border-radius:8px;padding:2rem}
h1{font-size:1.4rem;margin-top:0}
.badge{display:inline-block;background:#fde68a;color:#5b4300;border-radius:4px;padding:0 .4rem;font-size:.8rem}
.muted{color:#5d6576;font-size:.9rem}
code{background:#eef0f4;padding:0 .25rem;border-radius:3px;word-break:break-all}
ul{padding-left:1.2rem}
label{display:block;font-weight:600;margin:1rem 0 .3rem}
input[type=text]{width:100%;box-sizing:border-box;padding:.5rem;border:1px solid #b9bec9;border-radius:4px;font-size:1rem}
.error{background:#fde2e1;color:#8a1c17;border-radius:4px;padding:.5rem .75rem}
.actions{display:flex;gap:.75rem;margin-top:1.5rem}
button{font-size:1rem;padding:.55rem 1.2rem;border-radius:4px;border:1px solid #1d4ed8;cursor:pointer}
button.approve{background:#1d4ed8;color:#fff}
button.deny{background:#fff;color:#1d4ed8}
";

impl Inner {
    /// An HTML page with its own CSP; the app's default CSP (set only when
    /// absent) would block the inline stylesheet. `form_action` adds the
    /// redirect target, as browsers apply form-action to the redirect after
    /// the consent POST.
    fn page(&self, status: StatusCode, html: String, form_action: Option<&Origin>) -> Response {
        let extra = form_action.map(Origin::serialize).unwrap_or_default();
        let csp = format!(
            "default-src 'none'; style-src {}; form-action 'self' {extra}; frame-ancestors 'none'; base-uri 'none'",
            self.style_hash
        );
        let mut response = (status, Html(html)).into_response();
        let headers = response.headers_mut();
        if let Ok(value) = HeaderValue::from_str(csp.trim_end()) {
            headers.insert(header::CONTENT_SECURITY_POLICY, value);
        }
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }

    fn render<T: Template>(
        &self,
        status: StatusCode,
        page: &T,
        form_action: Option<&Origin>,
    ) -> Response {
        match page.render() {
            Ok(html) => self.page(status, html, form_action),
            Err(err) => {
                tracing::error!(error = %err, "sandbox: template failed to render");
                (StatusCode::INTERNAL_SERVER_ERROR, "template error").into_response()
            }
        }
    }

    fn error_page(&self, status: StatusCode, message: &str) -> Response {
        self.render(
            status,
            &ErrorPage {
                css: PAGE_CSS,
                status: status.as_u16(),
                message,
            },
            None,
        )
    }
}

#[derive(Template)]
#[template(path = "sandbox/error.html")]
struct ErrorPage<'a> {
    css: &'a str,
    status: u16,
    message: &'a str,
}

#[derive(Template)]
#[template(path = "sandbox/index.html")]
struct IndexPage<'a> {
    css: &'a str,
    base: String,
    client_id: &'a str,
    token_lifetime_secs: u64,
    dataset: Dataset,
}

async fn index(State(inner): State<Arc<Inner>>) -> Response {
    let page = IndexPage {
        css: PAGE_CSS,
        base: format!("{}/sandbox", inner.public_url),
        client_id: &inner.client_id,
        token_lifetime_secs: inner.token_lifetime_secs,
        dataset: inner.dataset,
    };
    inner.render(StatusCode::OK, &page, None)
}

async fn stats(State(inner): State<Arc<Inner>>) -> Json<SandboxStats> {
    Json(inner.stats.snapshot())
}

/// JSON only: a cross-site HTML form can't send that content type, so no
/// other page can flip faults on through a visitor's browser.
async fn faults(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return json_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            serde_json::json!({"error": "unsupported_media_type", "error_description": "expected Content-Type: application/json"}),
        );
    }
    match serde_json::from_slice::<Faults>(&body) {
        Ok(faults) => {
            *lock(&inner.faults) = faults;
            StatusCode::NO_CONTENT.into_response()
        }
        Err(err) => json_response(
            StatusCode::BAD_REQUEST,
            serde_json::json!({"error": "invalid_request", "error_description": err.to_string()}),
        ),
    }
}
