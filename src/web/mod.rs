//! HTTP: the router, middleware, and thin handlers (extract, call the
//! capability, render). JSON lives under `/api`, HTML pages elsewhere.

pub mod api;
pub mod charts;
pub mod csv;
pub mod extract;
pub mod openapi;
pub mod pages;
pub mod schema_form;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, SessionManagerLayer};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::auth::session::{DbSessionStore, SESSION_COOKIE};
use crate::error::{AppError, ErrorInfo};

pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");
const APP_CSS: &str = include_str!("../../templates/app.css");
const APP_JS: &str = include_str!("../../templates/app.js");
const FAVICON_SVG: &str = include_str!("../../templates/favicon.svg");
/// Scripts only from this server (`/static/app.js`): no inline script, no
/// CDN, so injected markup can't run code.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; object-src 'none'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'";

pub fn router(state: AppState) -> Router {
    let settings = &state.settings;
    let sessions = SessionManagerLayer::new(DbSessionStore::new(state.store.clone()))
        .with_name(SESSION_COOKIE)
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_secure(settings.cookies_secure())
        // Saved on every request so the inactivity window really slides.
        .with_always_save(true)
        .with_expiry(Expiry::OnInactivity(time::Duration::hours(i64::from(
            settings.auth.session_ttl_hours,
        ))));

    let api = api::routes()
        .nest(
            "/internal",
            api::internal_routes(settings.internal.body_limit_bytes),
        )
        .fallback(api_not_found)
        .layer(middleware::from_fn(require_json_bodies))
        .layer(middleware::from_fn(refuse_control_paths));
    let pages = pages::routes()
        .fallback(page_not_found)
        .layer(middleware::from_fn(refuse_control_paths))
        .layer(middleware::from_fn_with_state(state.clone(), html_errors));

    let body_limit = settings.server.body_limit_bytes;
    let timeout = Duration::from_secs(settings.server.request_timeout_secs);

    // Everything under /api plus /health and /ready: routed and documented
    // from the same registrations.
    let (documented, document) = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(health))
        .routes(routes!(ready))
        .nest("/api", api)
        .split_for_parts();
    let document = Arc::new(openapi::Document::new(document));

    let mut router = documented;
    // The sandbox is its own little server: no sessions, no CSRF, no API rules.
    if let Some(sandbox) = &state.sandbox {
        router = router.nest_service("/sandbox", sandbox.router());
    }
    router
        .route("/static/app.css", get(stylesheet))
        .route("/static/app.js", get(script))
        .route("/static/favicon.svg", get(favicon))
        .route("/favicon.ico", get(favicon))
        .merge(pages)
        .layer(Extension(document))
        .layer(sessions)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(
            ServiceBuilder::new()
                .layer(middleware::from_fn(sanitize_request_id))
                .layer(SetRequestIdLayer::new(REQUEST_ID_HEADER, MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(request_span)
                        .on_request(())
                        .on_response(
                            tower_http::trace::DefaultOnResponse::new()
                                .level(tracing::Level::INFO)
                                .latency_unit(tower_http::LatencyUnit::Millis),
                        ),
                )
                .layer(middleware::from_fn(scope_request_id))
                .layer(PropagateRequestIdLayer::new(REQUEST_ID_HEADER))
                // Dynamic answers may carry keys, tokens and links shown once,
                // or tenant data: no cache keeps them. Static assets say otherwise.
                .layer(SetResponseHeaderLayer::if_not_present(
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("no-store"),
                ))
                // Invite links carry tokens in the path: never leak them as a Referer.
                .layer(SetResponseHeaderLayer::if_not_present(
                    header::REFERRER_POLICY,
                    HeaderValue::from_static("no-referrer"),
                ))
                .layer(SetResponseHeaderLayer::if_not_present(
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                ))
                .layer(SetResponseHeaderLayer::if_not_present(
                    header::X_FRAME_OPTIONS,
                    HeaderValue::from_static("DENY"),
                ))
                .layer(SetResponseHeaderLayer::if_not_present(
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static(CONTENT_SECURITY_POLICY),
                ))
                .layer(CatchPanicLayer::custom(panic_response))
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::REQUEST_TIMEOUT,
                    timeout,
                )),
        )
        .with_state(state)
}

/// Path segments that follow these prefixes are bearer tokens (invite,
/// password reset and connect links).
const TOKEN_PATH_PREFIXES: [&str; 4] = [
    "/invites/",
    "/api/invites/",
    "/reset/",
    crate::connectlinks::PATH,
];

/// The path as logged: the token segment of a link path becomes
/// `[redacted]`, so request logs can't be replayed as invites or resets.
pub fn loggable_path(path: &str) -> String {
    for prefix in TOKEN_PATH_PREFIXES {
        if let Some(rest) = path.strip_prefix(prefix) {
            let tail = rest.find('/').and_then(|i| rest.get(i..)).unwrap_or("");
            return format!("{prefix}[redacted]{tail}");
        }
    }
    path.to_owned()
}

/// One span per request. The path only, tokens redacted: query strings can
/// carry OAuth codes and tokens, so they are never logged.
fn request_span(req: &Request<Body>) -> tracing::Span {
    let request_id = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    tracing::info_span!(
        "request",
        method = %req.method(),
        path = %loggable_path(req.uri().path()),
        request_id = %request_id,
    )
}

/// A client-sent X-Request-ID is kept only if it is short and plain, so it
/// can't inject text into log lines; otherwise a fresh one is generated.
async fn sanitize_request_id(mut req: Request, next: Next) -> Response {
    let acceptable = req.headers().get(REQUEST_ID_HEADER).map(|v| {
        let bytes = v.as_bytes();
        !bytes.is_empty()
            && bytes.len() <= 128
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
    });
    if acceptable == Some(false) {
        req.headers_mut().remove(REQUEST_ID_HEADER);
    }
    next.run(req).await
}

/// Makes the request id the one provider calls made for this request carry.
async fn scope_request_id(req: Request, next: Next) -> Response {
    match req
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    {
        Some(id) => crate::outbound::REQUEST_ID.scope(id, next.run(req)).await,
        None => next.run(req).await,
    }
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("handler panicked");
    AppError::internal(anyhow::anyhow!("handler panicked")).into_response()
}

/// JSON endpoints take JSON only. With SameSite cookies and no CORS, a
/// cross-site page can't send that content type, which is the API's CSRF
/// defence; bodiless POSTs included.
async fn require_json_bodies(req: Request, next: Next) -> Response {
    let mutating = matches!(
        *req.method(),
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    if mutating && !extract::is_json_content_type(req.headers()) {
        return AppError::UnsupportedMediaType("expected Content-Type: application/json".into())
            .into_response();
    }
    next.run(req).await
}

/// Path segments (provider and object keys, ids) that decode to control
/// characters or invalid UTF-8 name nothing: 404 before any handler, so they
/// never reach the database.
async fn refuse_control_paths(req: Request, next: Next) -> Response {
    if !path_is_plain_text(req.uri().path()) {
        return AppError::not_found("no such resource").into_response();
    }
    next.run(req).await
}

pub fn path_is_plain_text(path: &str) -> bool {
    percent_encoding::percent_decode_str(path)
        .decode_utf8()
        .is_ok_and(|decoded| !decoded.chars().any(char::is_control))
}

/// Turns error responses of page routes into HTML: 401 redirects to the
/// log-in page, everything else renders the error page, with the nav when
/// the session is signed in.
async fn html_errors(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    let session = req.extensions().get::<tower_sessions::Session>().cloned();
    let response = next.run(req).await;
    let Some(info) = response.extensions().get::<ErrorInfo>().cloned() else {
        return response;
    };
    if info.status == StatusCode::UNAUTHORIZED && info.code == "unauthenticated" {
        let next = if path.starts_with('/') && !path.starts_with("//") {
            path
        } else {
            "/".into()
        };
        return Redirect::to(&format!("/login?next={}", urlencode(&next))).into_response();
    }
    let layout = pages::error_layout(&state, session.as_ref()).await;
    let mut page = pages::render_error(layout, &info);
    *page.status_mut() = info.status;
    if let Some(retry) = response.headers().get(header::RETRY_AFTER) {
        page.headers_mut()
            .insert(header::RETRY_AFTER, retry.clone());
    }
    page
}

/// Ids in paths that don't parse are as absent as ids that don't exist.
pub fn parse_path_id(raw: &str, what: &str) -> Result<uuid::Uuid, AppError> {
    uuid::Uuid::parse_str(raw).map_err(|_| AppError::not_found(format!("{what} not found")))
}

pub fn urlencode(value: &str) -> String {
    serde_urlencoded::to_string([("v", value)])
        .map(|s| s.trim_start_matches("v=").to_owned())
        .unwrap_or_default()
}

async fn api_not_found() -> AppError {
    AppError::not_found("no such API route")
}

async fn page_not_found() -> AppError {
    AppError::not_found("page not found")
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Liveness {
    /// Always `ok` while the process serves requests.
    pub status: &'static str,
}

/// Liveness: the process answers.
#[utoipa::path(
    get,
    path = "/health",
    operation_id = "health",
    tag = "meta",
    summary = "Liveness",
    responses((status = 200, description = "The process is up.", body = Liveness))
)]
async fn health() -> Json<Liveness> {
    Json(Liveness { status: "ok" })
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Readiness {
    /// `ready`, or `unavailable` with a reason.
    pub status: &'static str,
    /// The database backend: `postgres` or `sqlite`.
    pub database: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

fn unavailable(database: &'static str, reason: String) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(Readiness {
            status: "unavailable",
            database,
            reason: Some(reason),
        }),
    )
        .into_response()
}

/// Ready when the database answers and every migration in this binary has
/// been applied.
#[utoipa::path(
    get,
    path = "/ready",
    operation_id = "ready",
    tag = "meta",
    summary = "Readiness: the database answers and is migrated",
    responses(
        (status = 200, description = "Ready.", body = Readiness),
        (status = 503, description = "Not ready; `reason` says why.", body = Readiness),
        (status = 500, description = "Internal error.", body = openapi::ErrorBody)
    )
)]
async fn ready(State(state): State<AppState>) -> Response {
    let database = state.store.backend().name();
    if let Err(err) = state.store.ping().await {
        tracing::warn!(error = %err, "readiness: database unreachable");
        return unavailable(database, "database unreachable".into());
    }
    match state.store.pending_migrations().await {
        Ok(0) => Json(Readiness {
            status: "ready",
            database,
            reason: None,
        })
        .into_response(),
        Ok(pending) => unavailable(database, format!("{pending} migrations not applied")),
        Err(err) => AppError::internal(err).into_response(),
    }
}

async fn script() -> Response {
    static_asset("text/javascript; charset=utf-8", APP_JS)
}

async fn favicon() -> Response {
    static_asset("image/svg+xml", FAVICON_SVG)
}

fn static_asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ),
        ],
        body,
    )
        .into_response()
}

async fn stylesheet() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/css; charset=utf-8"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ),
        ],
        APP_CSS,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::loggable_path;

    #[test]
    fn link_tokens_are_redacted_from_logged_paths() {
        assert_eq!(loggable_path("/invites/abcDEF_123"), "/invites/[redacted]");
        assert_eq!(
            loggable_path("/invites/abcDEF_123/accept"),
            "/invites/[redacted]/accept"
        );
        assert_eq!(
            loggable_path("/api/invites/abcDEF_123/accept"),
            "/api/invites/[redacted]/accept"
        );
        assert_eq!(loggable_path("/reset/tok"), "/reset/[redacted]");
        assert_eq!(loggable_path("/connect/tok"), "/connect/[redacted]");
        assert_eq!(loggable_path("/reset/tok/"), "/reset/[redacted]/");
        for plain in [
            "/",
            "/settings/members",
            "/api/workspaces/x/invites",
            "/data/jobs/1",
        ] {
            assert_eq!(loggable_path(plain), plain);
        }
    }
}
