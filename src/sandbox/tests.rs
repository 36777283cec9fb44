//! Drives the sandbox router the way a client would, with `oneshot`.

use std::collections::{HashMap, HashSet};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Request, StatusCode, header};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http_body_util::BodyExt;
use serde_json::Value;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tower::ServiceExt;

use super::*;

const CLIENT_ID: &str = "plugboard-sandbox";
const CLIENT_SECRET: &str = "sandbox-secret";
const PUBLIC_URL: &str = "http://127.0.0.1:8080";
const REDIRECT: &str = "http://127.0.0.1:8080/oauth/callback/sandbox";

fn sandbox_with(secret: &str, lifetime: u64) -> Sandbox {
    Sandbox::new(SandboxConfig {
        public_url: PUBLIC_URL.into(),
        client_id: CLIENT_ID.into(),
        client_secret: secret.into(),
        token_lifetime_secs: lifetime,
        dataset: Dataset::default(),
        requests_per_minute: 60,
        revisions: false,
    })
}

fn sandbox() -> (Sandbox, Router) {
    let sandbox = sandbox_with(CLIENT_SECRET, 3600);
    let router = sandbox.router();
    (sandbox, router)
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }

    fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or_default().to_owned()
    }

    /// The query parameters of the `Location` header.
    fn redirect_params(&self) -> HashMap<String, String> {
        let location = self.header("location");
        let query = location.split_once('?').map(|(_, q)| q).unwrap_or_default();
        serde_urlencoded::from_str(query).expect("redirect query")
    }
}

async fn send(app: &Router, request: Request<Body>) -> Reply {
    let response = app.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    Reply {
        status,
        headers,
        body,
    }
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).expect("request")
}

fn form(uri: &str, pairs: &[(&str, &str)]) -> Request<Body> {
    Request::post(uri)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(
            serde_urlencoded::to_string(pairs).expect("form"),
        ))
        .expect("request")
}

fn api(uri: &str, token: &str, company: Option<&str>) -> Request<Body> {
    let mut request = Request::get(uri).header(header::AUTHORIZATION, format!("Bearer {token}"));
    if let Some(company) = company {
        request = request.header("X-Sandbox-Company", company);
    }
    request.body(Body::empty()).expect("request")
}

fn pkce() -> (String, String) {
    let verifier = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

fn authorize_params<'a>(challenge: Option<&'a str>, state: &'a str) -> Vec<(&'a str, &'a str)> {
    let mut params = vec![
        ("response_type", "code"),
        ("client_id", CLIENT_ID),
        ("redirect_uri", REDIRECT),
        ("scope", "metrics.read projects.read"),
        ("state", state),
    ];
    if let Some(challenge) = challenge {
        params.push(("code_challenge", challenge));
        params.push(("code_challenge_method", "S256"));
    }
    params
}

/// Approves a request on the consent form; returns the code.
async fn approve(app: &Router, challenge: Option<&str>, company: &str) -> String {
    let mut params = authorize_params(challenge, "st-1");
    params.push(("company", company));
    params.push(("decision", "approve"));
    let reply = send(app, form("/oauth/authorize", &params)).await;
    assert_eq!(reply.status, StatusCode::FOUND, "{}", reply.text());
    assert!(reply.header("location").starts_with(REDIRECT));
    let query = reply.redirect_params();
    assert_eq!(query["state"], "st-1");
    query["code"].clone()
}

async fn exchange(app: &Router, code: &str, verifier: Option<&str>, redirect: &str) -> Reply {
    let mut params = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect),
        ("client_id", CLIENT_ID),
        ("client_secret", CLIENT_SECRET),
    ];
    if let Some(verifier) = verifier {
        params.push(("code_verifier", verifier));
    }
    send(app, form("/oauth/token", &params)).await
}

async fn refresh(app: &Router, token: &str) -> Reply {
    let params = [
        ("grant_type", "refresh_token"),
        ("refresh_token", token),
        ("client_id", CLIENT_ID),
        ("client_secret", CLIENT_SECRET),
    ];
    send(app, form("/oauth/token", &params)).await
}

/// A full code flow with PKCE; returns the token response.
async fn tokens(app: &Router, company: &str) -> Value {
    let (verifier, challenge) = pkce();
    let code = approve(app, Some(&challenge), company).await;
    let reply = exchange(app, &code, Some(&verifier), REDIRECT).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    reply.json()
}

fn enc(value: &str) -> String {
    let encoded = serde_urlencoded::to_string([("v", value)]).expect("encode");
    encoded.trim_start_matches("v=").to_owned()
}

fn ymd(date: time::Date) -> String {
    date.format(time::macros::format_description!("[year]-[month]-[day]"))
        .expect("format")
}

fn str_of<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key].as_str().unwrap_or_default()
}

async fn userinfo_status(app: &Router, token: &str) -> Reply {
    send(app, api("/oauth/userinfo", token, None)).await
}

// ---------------------------------------------------------------- authorize

#[tokio::test]
async fn consent_page_shows_client_scopes_and_company() {
    let (_, app) = sandbox();
    let (_, challenge) = pkce();
    let query =
        serde_urlencoded::to_string(authorize_params(Some(&challenge), "x<y")).expect("query");
    let reply = send(&app, get(&format!("/oauth/authorize?{query}"))).await;
    assert_eq!(reply.status, StatusCode::OK);
    let html = reply.text();
    for needle in [
        "Approve",
        "Deny",
        "Sandbox company",
        "value=\"acme\"",
        "<code>metrics.read</code>",
        "<code>projects.read</code>",
        CLIENT_ID,
        &challenge,
        "x&#60;y",
    ] {
        assert!(html.contains(needle), "missing {needle}");
    }
    assert!(!html.contains("<script"));
    // The page's own CSP allows exactly its inline stylesheet.
    let csp = reply.header("content-security-policy");
    let hash = STANDARD.encode(Sha256::digest(PAGE_CSS.as_bytes()));
    assert!(csp.contains(&format!("'sha256-{hash}'")), "{csp}");
    assert!(csp.contains("script-src") || csp.contains("default-src 'none'"));
    assert!(html.contains(&format!("<style>{PAGE_CSS}</style>")));
}

#[tokio::test]
async fn invalid_authorization_requests_get_400_never_a_redirect() {
    let (_, app) = sandbox();
    let (_, challenge) = pkce();
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("unknown client", vec![("client_id", "someone-else")]),
        ("response_type", vec![("response_type", "token")]),
        (
            "foreign redirect",
            vec![("redirect_uri", "https://evil.example/cb")],
        ),
        ("relative redirect", vec![("redirect_uri", "/cb")]),
        (
            "userinfo redirect",
            vec![("redirect_uri", "http://127.0.0.1:8080@evil.example/cb")],
        ),
        (
            "fragment",
            vec![("redirect_uri", "http://127.0.0.1:8080/cb#x")],
        ),
        ("plain pkce", vec![("code_challenge_method", "plain")]),
        ("short challenge", vec![("code_challenge", "abc")]),
    ];
    for (name, overrides) in cases {
        let mut params = authorize_params(Some(&challenge), "s");
        for (key, value) in overrides {
            if let Some(slot) = params.iter_mut().find(|(k, _)| *k == key) {
                slot.1 = value;
            }
        }
        let query = serde_urlencoded::to_string(&params).expect("query");
        let reply = send(&app, get(&format!("/oauth/authorize?{query}"))).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{name}");
        assert!(reply.headers.get(header::LOCATION).is_none(), "{name}");
        assert!(
            reply.header("content-type").starts_with("text/html"),
            "{name}"
        );
    }
    // Missing redirect_uri, a challenge without a method (implies plain),
    // duplicated parameters and garbage.
    let no_redirect = format!("/oauth/authorize?response_type=code&client_id={CLIENT_ID}");
    let no_method = format!(
        "/oauth/authorize?response_type=code&client_id={CLIENT_ID}&redirect_uri={}&code_challenge={challenge}",
        enc(REDIRECT)
    );
    let duplicate = format!(
        "/oauth/authorize?response_type=code&client_id={CLIENT_ID}&client_id={CLIENT_ID}&redirect_uri={}",
        enc(REDIRECT)
    );
    for uri in [
        no_redirect.as_str(),
        &no_method,
        &duplicate,
        "/oauth/authorize?%%%&=&==",
        "/oauth/authorize",
    ] {
        let reply = send(&app, get(uri)).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{uri}");
    }
    // Loopback redirect URIs on other ports are fine (RFC 8252).
    let mut params = authorize_params(None, "s");
    params[2].1 = "http://localhost:9999/cb";
    let query = serde_urlencoded::to_string(&params).expect("query");
    let reply = send(&app, get(&format!("/oauth/authorize?{query}"))).await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn deny_redirects_with_access_denied_and_state() {
    let (_, app) = sandbox();
    let mut params = authorize_params(None, "keep me");
    params.push(("decision", "deny"));
    params.push(("company", ""));
    let reply = send(&app, form("/oauth/authorize", &params)).await;
    assert_eq!(reply.status, StatusCode::FOUND);
    assert!(
        reply
            .header("location")
            .starts_with(&format!("{REDIRECT}?"))
    );
    let query = reply.redirect_params();
    assert_eq!(query["error"], "access_denied");
    assert_eq!(query["state"], "keep me");
    assert!(query.contains_key("error_description"));
    assert!(!query.contains_key("code"));
}

#[tokio::test]
async fn approve_revalidates_and_checks_the_company() {
    let (_, app) = sandbox();
    let mut params = authorize_params(None, "s");
    params.push(("decision", "approve"));
    params.push(("company", "Not a domain!"));
    let reply = send(&app, form("/oauth/authorize", &params)).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.text().contains("class=\"error\""));
    assert!(reply.headers.get(header::LOCATION).is_none());

    // Tampered hidden field: a foreign redirect is refused on POST too.
    let mut params = authorize_params(None, "s");
    params[2].1 = "https://evil.example/cb";
    params.push(("decision", "approve"));
    params.push(("company", "acme"));
    let reply = send(&app, form("/oauth/authorize", &params)).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.headers.get(header::LOCATION).is_none());

    let mut params = authorize_params(None, "s");
    params.push(("decision", "maybe"));
    let reply = send(&app, form("/oauth/authorize", &params)).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
}

// ---------------------------------------------------------------- token

#[tokio::test]
async fn code_flow_with_pkce() {
    let (_, app) = sandbox();
    let (verifier, challenge) = pkce();
    let code = approve(&app, Some(&challenge), "Globex").await;
    let reply = exchange(&app, &code, Some(&verifier), REDIRECT).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.header("cache-control"), "no-store");
    let body = reply.json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["scope"], "metrics.read projects.read");
    let access = str_of(&body, "access_token");
    let refresh_token = str_of(&body, "refresh_token");
    assert_eq!(
        URL_SAFE_NO_PAD.decode(access).map(|b| b.len()).ok(),
        Some(32)
    );
    assert_eq!(
        URL_SAFE_NO_PAD.decode(refresh_token).map(|b| b.len()).ok(),
        Some(32)
    );
    assert_ne!(access, refresh_token);

    let info = userinfo_status(&app, access).await;
    assert_eq!(info.status, StatusCode::OK);
    let info = info.json();
    assert_eq!(info["email"], "sandbox.user@globex.example");
    assert_eq!(info["company"], "globex");
    assert!(str_of(&info, "sub").contains("globex"));
    assert!(info["name"].is_string());
}

#[tokio::test]
async fn wrong_verifier_is_invalid_grant_and_burns_the_code() {
    let (_, app) = sandbox();
    let (verifier, challenge) = pkce();
    let (other, _) = pkce();
    let code = approve(&app, Some(&challenge), "acme").await;
    let reply = exchange(&app, &code, Some(&other), REDIRECT).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.error(), "invalid_grant");
    // The code is used up by the failed attempt.
    let reply = exchange(&app, &code, Some(&verifier), REDIRECT).await;
    assert_eq!(reply.error(), "invalid_grant");

    // Missing verifier when a challenge was sent, and a verifier without one.
    let code = approve(&app, Some(&challenge), "acme").await;
    assert_eq!(
        exchange(&app, &code, None, REDIRECT).await.error(),
        "invalid_grant"
    );
    let code = approve(&app, None, "acme").await;
    assert_eq!(
        exchange(&app, &code, Some(&verifier), REDIRECT)
            .await
            .error(),
        "invalid_grant"
    );
    // No PKCE at all is allowed.
    let code = approve(&app, None, "acme").await;
    assert_eq!(
        exchange(&app, &code, None, REDIRECT).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn code_reuse_is_invalid_grant_and_revokes_its_tokens() {
    let (_, app) = sandbox();
    let (verifier, challenge) = pkce();
    let code = approve(&app, Some(&challenge), "acme").await;
    let first = exchange(&app, &code, Some(&verifier), REDIRECT).await;
    assert_eq!(first.status, StatusCode::OK);
    let first = first.json();
    let again = exchange(&app, &code, Some(&verifier), REDIRECT).await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    assert_eq!(again.error(), "invalid_grant");
    let access = str_of(&first, "access_token");
    assert_eq!(
        userinfo_status(&app, access).await.status,
        StatusCode::UNAUTHORIZED
    );
    let refreshed = refresh(&app, str_of(&first, "refresh_token")).await;
    assert_eq!(refreshed.error(), "invalid_grant");
    // Codes that never existed.
    assert_eq!(
        exchange(&app, "nope", None, REDIRECT).await.error(),
        "invalid_grant"
    );
}

#[tokio::test]
async fn redirect_uri_must_match() {
    let (_, app) = sandbox();
    let (verifier, challenge) = pkce();
    let code = approve(&app, Some(&challenge), "acme").await;
    let reply = exchange(&app, &code, Some(&verifier), &format!("{REDIRECT}/other")).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.error(), "invalid_grant");
    // Missing entirely is a malformed request.
    let code = approve(&app, Some(&challenge), "acme").await;
    let params = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("code_verifier", verifier.as_str()),
        ("client_id", CLIENT_ID),
        ("client_secret", CLIENT_SECRET),
    ];
    let reply = send(&app, form("/oauth/token", &params)).await;
    assert_eq!(reply.error(), "invalid_request");
}

#[tokio::test]
async fn refresh_tokens_rotate_and_reuse_revokes_the_family() {
    let (_, app) = sandbox();
    let first = tokens(&app, "acme").await;
    let old_refresh = str_of(&first, "refresh_token");

    let reply = refresh(&app, old_refresh).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.header("cache-control"), "no-store");
    let second = reply.json();
    let new_refresh = str_of(&second, "refresh_token");
    let new_access = str_of(&second, "access_token");
    assert!(!new_refresh.is_empty());
    assert_ne!(new_refresh, old_refresh);
    assert_ne!(new_access, str_of(&first, "access_token"));
    assert_eq!(second["scope"], first["scope"]);
    assert_eq!(
        userinfo_status(&app, new_access).await.status,
        StatusCode::OK
    );

    // The used token is rejected, and that reuse revokes the whole family.
    let reuse = refresh(&app, old_refresh).await;
    assert_eq!(reuse.status, StatusCode::BAD_REQUEST);
    assert_eq!(reuse.error(), "invalid_grant");
    assert_eq!(refresh(&app, new_refresh).await.error(), "invalid_grant");
    assert_eq!(
        userinfo_status(&app, new_access).await.status,
        StatusCode::UNAUTHORIZED
    );

    // Other grants are untouched.
    let other = tokens(&app, "acme").await;
    assert_eq!(
        refresh(&app, str_of(&other, "refresh_token")).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn refresh_can_narrow_but_not_widen_scope() {
    let (_, app) = sandbox();
    let first = tokens(&app, "acme").await;
    let params = [
        ("grant_type", "refresh_token"),
        ("refresh_token", str_of(&first, "refresh_token")),
        ("scope", "people.read"),
        ("client_id", CLIENT_ID),
        ("client_secret", CLIENT_SECRET),
    ];
    let reply = send(&app, form("/oauth/token", &params)).await;
    assert_eq!(reply.error(), "invalid_scope");
    let second = tokens(&app, "acme").await;
    let params = [
        ("grant_type", "refresh_token"),
        ("refresh_token", str_of(&second, "refresh_token")),
        ("scope", "metrics.read"),
        ("client_id", CLIENT_ID),
        ("client_secret", CLIENT_SECRET),
    ];
    let reply = send(&app, form("/oauth/token", &params)).await;
    assert_eq!(reply.status, StatusCode::OK);
    let narrowed = reply.json();
    assert_eq!(narrowed["scope"], "metrics.read");
    // The rotated refresh token keeps the original grant.
    let again = refresh(&app, str_of(&narrowed, "refresh_token"))
        .await
        .json();
    assert_eq!(again["scope"], "metrics.read projects.read");
}

#[tokio::test]
async fn client_credentials_with_basic_auth() {
    let (_, app) = sandbox();
    let basic = STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"));
    let request = |scope: Option<&str>| {
        let mut params = vec![("grant_type", "client_credentials")];
        params.extend(scope.map(|s| ("scope", s)));
        let mut request = form("/oauth/token", &params);
        request.headers_mut().insert(
            header::AUTHORIZATION,
            format!("Basic {basic}").parse().expect("header"),
        );
        request
    };
    let reply = send(&app, request(None)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let body = reply.json();
    assert!(body.get("refresh_token").is_none());
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "metrics.read projects.read people.read");
    assert_eq!(
        userinfo_status(&app, str_of(&body, "access_token"))
            .await
            .status,
        StatusCode::OK
    );

    let reply = send(&app, request(Some("people.read"))).await;
    assert_eq!(reply.json()["scope"], "people.read");
    let reply = send(&app, request(Some("bad\"scope"))).await;
    assert_eq!(reply.error(), "invalid_scope");
}

#[tokio::test]
async fn basic_credentials_are_form_decoded() {
    let secret = "p@ss:w+rd/=&%";
    let sandbox = sandbox_with(secret, 60);
    let app = sandbox.router();
    let encoded = serde_urlencoded::to_string([("v", secret)]).expect("encode");
    let encoded = encoded.trim_start_matches("v=");
    for credentials in [
        format!("{CLIENT_ID}:{encoded}"),
        format!("{CLIENT_ID}:{secret}"),
    ] {
        let mut request = form("/oauth/token", &[("grant_type", "client_credentials")]);
        request.headers_mut().insert(
            header::AUTHORIZATION,
            format!("Basic {}", STANDARD.encode(credentials))
                .parse()
                .expect("header"),
        );
        let reply = send(&app, request).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    }
}

#[tokio::test]
async fn bad_client_credentials_are_401() {
    let (sandbox, app) = sandbox();
    let wrong_body = [
        ("grant_type", "client_credentials"),
        ("client_id", CLIENT_ID),
        ("client_secret", "wrong"),
    ];
    let reply = send(&app, form("/oauth/token", &wrong_body)).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.error(), "invalid_client");

    let no_secret = [
        ("grant_type", "client_credentials"),
        ("client_id", CLIENT_ID),
    ];
    assert_eq!(
        send(&app, form("/oauth/token", &no_secret)).await.status,
        StatusCode::UNAUTHORIZED
    );

    let unknown = [
        ("grant_type", "client_credentials"),
        ("client_id", "other"),
        ("client_secret", CLIENT_SECRET),
    ];
    assert_eq!(
        send(&app, form("/oauth/token", &unknown)).await.status,
        StatusCode::UNAUTHORIZED
    );

    for header_value in [
        format!("Basic {}", STANDARD.encode(format!("{CLIENT_ID}:nope"))),
        "Basic !!!not-base64!!!".to_owned(),
        format!("Basic {}", STANDARD.encode("no-colon")),
        "Bearer something".to_owned(),
    ] {
        let mut request = form("/oauth/token", &[("grant_type", "client_credentials")]);
        request
            .headers_mut()
            .insert(header::AUTHORIZATION, header_value.parse().expect("header"));
        let reply = send(&app, request).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{header_value}");
        assert_eq!(reply.error(), "invalid_client");
        assert!(reply.header("www-authenticate").starts_with("Basic"));
    }
    assert_eq!(sandbox.stats().token_errors, 7);
}

#[tokio::test]
async fn token_endpoint_rejects_malformed_requests() {
    let (_, app) = sandbox();
    let auth = [("client_id", CLIENT_ID), ("client_secret", CLIENT_SECRET)];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut params = auth.to_vec();
        params.extend_from_slice(extra);
        form("/oauth/token", &params)
    };
    let reply = send(&app, with(&[("grant_type", "password")])).await;
    assert_eq!(reply.error(), "unsupported_grant_type");
    let reply = send(&app, with(&[])).await;
    assert_eq!(reply.error(), "invalid_request");
    let reply = send(&app, with(&[("grant_type", "authorization_code")])).await;
    assert_eq!(reply.error(), "invalid_request");
    let reply = send(&app, with(&[("grant_type", "refresh_token")])).await;
    assert_eq!(reply.error(), "invalid_request");
    let reply = send(
        &app,
        with(&[
            ("grant_type", "client_credentials"),
            ("grant_type", "client_credentials"),
        ]),
    )
    .await;
    assert_eq!(reply.error(), "invalid_request");
    for body in [
        "%%%&&==&\u{0}",
        "",
        "grant_type=refresh_token&refresh_token=%FF%FE",
    ] {
        let request = Request::post("/oauth/token")
            .body(Body::from(body))
            .expect("request");
        let reply = send(&app, request).await;
        assert!(reply.status.is_client_error(), "{body}");
        assert!(reply.json()["error"].is_string(), "{body}");
    }
}

// ---------------------------------------------------------------- userinfo, revoke

#[tokio::test]
async fn userinfo_rejects_expired_and_revoked_tokens() {
    // A zero lifetime expires tokens at once.
    let expiring = sandbox_with(CLIENT_SECRET, 0);
    let app = expiring.router();
    let body = tokens(&app, "acme").await;
    assert_eq!(body["expires_in"], 0);
    let reply = userinfo_status(&app, str_of(&body, "access_token")).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.error(), "invalid_token");
    assert_eq!(
        reply.header("www-authenticate"),
        "Bearer error=\"invalid_token\""
    );
    // Refreshing still works (the refresh token has its own lifetime).
    assert_eq!(
        refresh(&app, str_of(&body, "refresh_token")).await.status,
        StatusCode::OK
    );

    let (_, app) = sandbox();
    let body = tokens(&app, "acme").await;
    let access = str_of(&body, "access_token");
    assert_eq!(userinfo_status(&app, access).await.status, StatusCode::OK);
    let revoke = [
        ("token", access),
        ("token_type_hint", "access_token"),
        ("client_id", CLIENT_ID),
        ("client_secret", CLIENT_SECRET),
    ];
    assert_eq!(
        send(&app, form("/oauth/revoke", &revoke)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        userinfo_status(&app, access).await.status,
        StatusCode::UNAUTHORIZED
    );
    // Revoking an access token leaves the refresh token alone.
    assert_eq!(
        refresh(&app, str_of(&body, "refresh_token")).await.status,
        StatusCode::OK
    );

    for request in [
        get("/oauth/userinfo"),
        api("/oauth/userinfo", "garbage", None),
        Request::get("/oauth/userinfo")
            .header(header::AUTHORIZATION, "Basic abc")
            .body(Body::empty())
            .expect("request"),
    ] {
        let reply = send(&app, request).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            reply.header("www-authenticate"),
            "Bearer error=\"invalid_token\""
        );
    }
}

#[tokio::test]
async fn revoking_a_refresh_token_revokes_its_family() {
    let (_, app) = sandbox();
    let body = tokens(&app, "acme").await;
    let revoke = [
        ("token", str_of(&body, "refresh_token")),
        ("client_id", CLIENT_ID),
        ("client_secret", CLIENT_SECRET),
    ];
    assert_eq!(
        send(&app, form("/oauth/revoke", &revoke)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        userinfo_status(&app, str_of(&body, "access_token"))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        refresh(&app, str_of(&body, "refresh_token")).await.error(),
        "invalid_grant"
    );
    // Unknown tokens are fine (RFC 7009); a bad client is not.
    let unknown = [
        ("token", "whatever"),
        ("client_id", CLIENT_ID),
        ("client_secret", CLIENT_SECRET),
    ];
    assert_eq!(
        send(&app, form("/oauth/revoke", &unknown)).await.status,
        StatusCode::OK
    );
    let bad = [
        ("token", "whatever"),
        ("client_id", CLIENT_ID),
        ("client_secret", "x"),
    ];
    assert_eq!(
        send(&app, form("/oauth/revoke", &bad)).await.status,
        StatusCode::UNAUTHORIZED
    );
}

// ---------------------------------------------------------------- data API

async fn access_token(app: &Router) -> String {
    str_of(&tokens(app, "acme").await, "access_token").to_owned()
}

#[tokio::test]
async fn data_api_needs_token_and_company_header() {
    let (_, app) = sandbox();
    let token = access_token(&app).await;
    let reply = send(&app, api("/api/properties", &token, None)).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        reply.json(),
        serde_json::json!({"error": "missing_header", "header": "X-Sandbox-Company"})
    );
    assert!(!reply.header("x-ratelimit-remaining").is_empty());
    let reply = send(&app, api("/api/properties", &token, Some("  "))).await;
    assert_eq!(reply.error(), "missing_header");

    let reply = send(&app, api("/api/properties", "bogus", Some("acme"))).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        reply.header("www-authenticate"),
        "Bearer error=\"invalid_token\""
    );

    let reply = send(&app, api("/api/properties", &token, Some("acme"))).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.json(),
        serde_json::json!({"properties": [
            {"id": "prop-1", "name": "Acme Web", "currency": "USD", "timeZone": "America/New_York"},
            {"id": "prop-2", "name": "Acme App", "currency": "EUR", "timeZone": "Europe/Berlin"},
            {"id": "prop-3", "name": "Acme Shop", "currency": "GBP", "timeZone": "Europe/London"},
        ]})
    );
    let remaining: u32 = reply
        .header("x-ratelimit-remaining")
        .parse()
        .expect("remaining");
    let reset: u64 = reply.header("x-ratelimit-reset").parse().expect("reset");
    assert!(remaining < 60);
    assert!((1..=60).contains(&reset));
}

async fn all_metrics(app: &Router, token: &str, company: &str, extra: &str) -> Vec<Value> {
    let mut rows = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let mut uri = format!("/api/properties/prop-2/daily-metrics?limit=7{extra}");
        if let Some(cursor) = &cursor {
            uri.push_str(&format!("&cursor={}", enc(cursor)));
        }
        let reply = send(app, api(&uri, token, Some(company))).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        let body = reply.json();
        let page = body["rows"].as_array().cloned().unwrap_or_default();
        assert!(page.len() <= 7);
        rows.extend(page);
        match body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return rows,
        }
    }
    panic!("pagination did not end");
}

#[tokio::test]
async fn channel_breakdown_splits_days_across_pages_once_each() {
    let (sandbox, app) = sandbox();
    let token = access_token(&app).await;
    sandbox.set_metric_channels(&["web", "app", "email"]);
    // Pages of 7 rows: most days are split between two pages.
    let rows = all_metrics(&app, &token, "acme", "").await;
    assert_eq!(rows.len(), 90 * 3);
    let keys: Vec<(String, String)> = rows
        .iter()
        .map(|r| {
            (
                str_of(r, "date").to_owned(),
                str_of(r, "channel").to_owned(),
            )
        })
        .collect();
    let mut unique = keys.clone();
    unique.dedup();
    assert_eq!(unique, keys, "each (day, channel) exactly once, in order");
    assert_eq!(
        &keys[..3],
        &[
            (keys[0].0.clone(), "web".to_owned()),
            (keys[0].0.clone(), "app".to_owned()),
            (keys[0].0.clone(), "email".to_owned()),
        ]
    );
    // Dropping a channel drops its rows; none: one row a day, as before.
    sandbox.set_metric_channels(&["web", "email"]);
    assert_eq!(all_metrics(&app, &token, "acme", "").await.len(), 90 * 2);
    sandbox.set_metric_channels(&[]);
    let plain = all_metrics(&app, &token, "acme", "").await;
    assert_eq!(plain.len(), 90);
    assert!(plain.iter().all(|r| r.get("channel").is_none()));
}

#[tokio::test]
async fn daily_metrics_cursor_covers_every_day_once_deterministically() {
    let (_, app) = sandbox();
    let token = access_token(&app).await;
    let rows = all_metrics(&app, &token, "acme", "").await;
    assert_eq!(rows.len(), 90);
    let today = OffsetDateTime::now_utc().date();
    let dates: Vec<String> = rows.iter().map(|r| str_of(r, "date").to_owned()).collect();
    let mut expected = Vec::new();
    let mut day = today - time::Duration::days(89);
    while day <= today {
        expected.push(ymd(day));
        day = day.next_day().expect("date");
    }
    assert_eq!(dates, expected, "oldest first, consecutive, ending today");
    for row in &rows {
        for key in [
            "sessions",
            "users",
            "conversions",
            "ad_clicks",
            "impressions",
        ] {
            assert!(row[key].is_u64(), "{key}");
        }
        for key in ["revenue", "cost"] {
            let value = row[key].as_f64().expect("number");
            assert!(
                ((value * 100.0).round() - value * 100.0).abs() < 1e-6,
                "{key}={value}"
            );
        }
    }

    // Same inputs, same numbers; another company, other numbers.
    assert_eq!(all_metrics(&app, &token, "acme", "").await, rows);
    assert_ne!(all_metrics(&app, &token, "globex", "").await, rows);

    // since narrows the window; a big limit gets everything at once.
    let since = today - time::Duration::days(9);
    let recent = all_metrics(&app, &token, "acme", &format!("&since={}", ymd(since))).await;
    assert_eq!(recent.len(), 10);
    assert_eq!(recent[..], rows[80..]);
    let reply = send(
        &app,
        api(
            "/api/properties/prop-2/daily-metrics?limit=99999999999999999999999",
            &token,
            Some("acme"),
        ),
    )
    .await;
    assert_eq!(reply.json()["rows"].as_array().map(Vec::len), Some(90));
    assert!(reply.json()["next_cursor"].is_null());

    for (uri, status) in [
        (
            "/api/properties/prop-9/daily-metrics",
            StatusCode::NOT_FOUND,
        ),
        (
            "/api/properties/prop-01/daily-metrics",
            StatusCode::NOT_FOUND,
        ),
        (
            "/api/properties/prop-99999999999999999999999/daily-metrics",
            StatusCode::NOT_FOUND,
        ),
        (
            "/api/properties/prop-1/daily-metrics?cursor=garbage",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/properties/prop-1/daily-metrics?since=yesterday",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/properties/prop-1/daily-metrics?limit=-1",
            StatusCode::BAD_REQUEST,
        ),
    ] {
        assert_eq!(
            send(&app, api(uri, &token, Some("acme"))).await.status,
            status,
            "{uri}"
        );
    }
}

async fn all_projects(app: &Router, token: &str, extra: &str) -> (Vec<Value>, u64) {
    let mut items = Vec::new();
    let mut offset = 0;
    loop {
        let uri = format!("/api/projects?limit=17&offset={offset}{extra}");
        let reply = send(app, api(&uri, token, Some("acme"))).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        let body = reply.json();
        let total = body["total"].as_u64().expect("total");
        let page = body["items"].as_array().cloned().unwrap_or_default();
        offset += 17;
        items.extend(page);
        if offset as u64 >= total {
            return (items, total);
        }
    }
}

#[tokio::test]
async fn projects_paginate_exactly_once_and_filter_parents() {
    let (_, app) = sandbox();
    let token = access_token(&app).await;
    let (items, total) = all_projects(&app, &token, "").await;
    assert_eq!(total, 180);
    assert_eq!(items.len(), 180);
    let ids: Vec<&str> = items.iter().map(|p| str_of(p, "id")).collect();
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        180,
        "no duplicates"
    );
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    assert_eq!(ids, sorted, "sorted by id");
    let parents: Vec<&Value> = items.iter().filter(|p| p["parent_id"].is_null()).collect();
    assert_eq!(parents.len(), 60);
    assert_eq!(parents.iter().filter(|p| p["deleted"] == true).count(), 6);
    for child in items.iter().filter(|p| !p["parent_id"].is_null()) {
        assert!(ids.contains(&str_of(child, "parent_id")));
    }
    let cutoff = OffsetDateTime::now_utc() - time::Duration::days(31);
    for item in &items {
        for key in ["id", "number", "name", "client_name", "start_date"] {
            assert!(item[key].is_string(), "{key}");
        }
        assert!(["active", "inactive"].contains(&str_of(item, "status")));
        assert!(item["end_date"].is_null() || item["end_date"].is_string());
        let updated = OffsetDateTime::parse(str_of(item, "updated_at"), &Rfc3339).expect("rfc3339");
        assert!(updated > cutoff && updated <= OffsetDateTime::now_utc());
    }

    let (only_parents, total) = all_projects(&app, &token, "&parent_only=true").await;
    assert_eq!(total, 60);
    assert_eq!(only_parents.len(), 60);
    assert!(only_parents.iter().all(|p| p["parent_id"].is_null()));

    // Stable: the same query gives the same answer; far offsets are empty.
    assert_eq!(all_projects(&app, &token, "").await.0, items);
    let reply = send(
        &app,
        api(
            "/api/projects?offset=99999999999999999999",
            &token,
            Some("acme"),
        ),
    )
    .await;
    assert_eq!(reply.json()["items"], serde_json::json!([]));
    assert_eq!(reply.json()["total"], 180);
    let reply = send(&app, api("/api/projects?limit=1000", &token, Some("acme"))).await;
    assert_eq!(reply.json()["items"].as_array().map(Vec::len), Some(180));
    for bad in ["parent_only=maybe", "updated_since=last-week", "limit=ten"] {
        let reply = send(
            &app,
            api(&format!("/api/projects?{bad}"), &token, Some("acme")),
        )
        .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad}");
    }
}

#[tokio::test]
async fn touched_and_deleted_projects_show_up_in_deltas() {
    let (sandbox, app) = sandbox();
    let token = access_token(&app).await;
    let since = OffsetDateTime::now_utc();
    let since_param = enc(&since.format(&Rfc3339).expect("format"));
    let (before, _) = all_projects(&app, &token, &format!("&updated_since={since_param}")).await;
    assert!(before.is_empty());

    sandbox.touch_project("proj-0003", "Renamed");
    sandbox.delete_project("proj-0004-01");
    sandbox.touch_project("proj-9999", "ignored");
    let (changed, total) =
        all_projects(&app, &token, &format!("&updated_since={since_param}")).await;
    assert_eq!(total, 2);
    assert_eq!(changed[0]["id"], "proj-0003");
    assert_eq!(changed[0]["name"], "Renamed");
    assert_eq!(changed[1]["id"], "proj-0004-01");
    assert_eq!(changed[1]["deleted"], true);

    // An unescaped "+00:00" offset (decoded as a space) is forgiven.
    let plus = since
        .format(&time::format_description::well_known::Rfc3339)
        .expect("format")
        .replace('Z', "+00:00");
    let uri = format!("/api/projects?updated_since={plus}");
    let reply = send(&app, api(&uri, &token, Some("acme"))).await;
    assert_eq!(reply.json()["total"], 2, "{uri}");
}

#[tokio::test]
async fn people_pages_cover_everyone() {
    let (_, app) = sandbox();
    let token = access_token(&app).await;
    let mut people = Vec::new();
    for page in 1.. {
        let uri = format!("/api/people?page={page}&per_page=15");
        let body = send(&app, api(&uri, &token, Some("acme"))).await.json();
        people.extend(body["data"].as_array().cloned().unwrap_or_default());
        if body["has_more"] == false {
            break;
        }
        assert!(page < 10);
    }
    assert_eq!(people.len(), 40);
    let ids: HashSet<&str> = people.iter().map(|p| str_of(p, "id")).collect();
    assert_eq!(ids.len(), 40);
    assert!(
        people
            .iter()
            .all(|p| str_of(p, "email").ends_with("@acme.example"))
    );
    let body = send(&app, api("/api/people", &token, Some("acme")))
        .await
        .json();
    assert_eq!(body["data"].as_array().map(Vec::len), Some(40));
    assert_eq!(body["has_more"], false);
    let body = send(
        &app,
        api(
            "/api/people?page=18446744073709551615&per_page=500",
            &token,
            Some("acme"),
        ),
    )
    .await
    .json();
    assert_eq!(body["data"], serde_json::json!([]));
}

// ---------------------------------------------------------------- faults, stats

#[tokio::test]
async fn rate_limit_fault_then_success() {
    let (sandbox, app) = sandbox();
    let token = access_token(&app).await;
    sandbox.set_faults(Faults {
        rate_limit_next: 2,
        retry_after_secs: 7,
        ..Faults::default()
    });
    for _ in 0..2 {
        let reply = send(&app, api("/api/properties", &token, Some("acme"))).await;
        assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(reply.header("retry-after"), "7");
        assert_eq!(reply.header("x-ratelimit-remaining"), "0");
        assert_eq!(reply.header("x-ratelimit-reset"), "7");
    }
    let reply = send(&app, api("/api/properties", &token, Some("acme"))).await;
    assert_eq!(reply.status, StatusCode::OK);

    // The same over HTTP, plus 503s and a delay.
    let request = Request::post("/_faults")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(r#"{"unavailable_next": 1, "slow_ms": 30}"#))
        .expect("request");
    assert_eq!(send(&app, request).await.status, StatusCode::NO_CONTENT);
    let started = std::time::Instant::now();
    let reply = send(&app, api("/api/properties", &token, Some("acme"))).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(started.elapsed() >= std::time::Duration::from_millis(30));
    assert_eq!(
        send(&app, api("/api/properties", &token, Some("acme")))
            .await
            .status,
        StatusCode::OK
    );

    // Only JSON is accepted, and it must parse.
    let request = Request::post("/_faults")
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from("{}"))
        .expect("request");
    assert_eq!(
        send(&app, request).await.status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    let request = Request::post("/_faults")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(r#"{"rate_limit_next": -1}"#))
        .expect("request");
    assert_eq!(send(&app, request).await.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn token_faults() {
    let (sandbox, app) = sandbox();
    sandbox.set_faults(Faults {
        token_error_next: 1,
        token_malformed_next: 1,
        ..Faults::default()
    });
    let params = [
        ("grant_type", "client_credentials"),
        ("client_id", CLIENT_ID),
        ("client_secret", CLIENT_SECRET),
    ];
    let reply = send(&app, form("/oauth/token", &params)).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(reply.json(), serde_json::json!({"error": "server_error"}));
    let reply = send(&app, form("/oauth/token", &params)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text(), "{\"access_token\": ");
    assert!(serde_json::from_slice::<Value>(&reply.body).is_err());
    let reply = send(&app, form("/oauth/token", &params)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.json()["access_token"].is_string());
    let stats = sandbox.stats();
    assert_eq!(stats.token_client_credentials, 3);
    assert_eq!(stats.token_errors, 1);
}

#[tokio::test]
async fn stats_count_every_request() {
    let (sandbox, app) = sandbox();
    assert_eq!(sandbox.stats(), SandboxStats::default());
    let query = serde_urlencoded::to_string(authorize_params(None, "s")).expect("query");
    send(&app, get(&format!("/oauth/authorize?{query}"))).await; // authorize 1
    let body = tokens(&app, "acme").await; // authorize 2 (the POST), code 1
    let access = str_of(&body, "access_token");
    let refresh_token = str_of(&body, "refresh_token");
    refresh(&app, refresh_token).await; // refresh 1
    refresh(&app, refresh_token).await; // refresh 2, error 1 (reuse)
    let cc = [
        ("grant_type", "client_credentials"),
        ("client_id", CLIENT_ID),
        ("client_secret", CLIENT_SECRET),
    ];
    send(&app, form("/oauth/token", &cc)).await; // client_credentials 1
    send(&app, form("/oauth/token", &[("grant_type", "nope")])).await; // error 2
    send(&app, form("/oauth/revoke", &[("token", "x")])).await; // revoke 1 (401)
    send(&app, userinfo_status_request(access)).await; // userinfo 1
    send(&app, api("/api/properties", access, None)).await; // api 1 (400)
    send(&app, api("/api/projects", "bogus", Some("acme"))).await; // api 2 (401)

    let expected = SandboxStats {
        authorize: 2,
        token_authorization_code: 1,
        token_refresh: 2,
        token_client_credentials: 1,
        token_errors: 2,
        revoke: 1,
        userinfo: 1,
        api_requests: 2,
        last_request_id: None,
    };
    assert_eq!(sandbox.stats(), expected);
    let reply = send(&app, get("/_stats")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json(), serde_json::to_value(&expected).expect("json"));
}

fn userinfo_status_request(token: &str) -> Request<Body> {
    api("/oauth/userinfo", token, None)
}

#[tokio::test]
async fn index_page_and_debug_hide_the_secret() {
    let (sandbox, app) = sandbox();
    let reply = send(&app, get("/")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.text().contains("/sandbox/oauth/token"));
    assert!(!reply.text().contains(CLIENT_SECRET));
    let config = SandboxConfig {
        public_url: PUBLIC_URL.into(),
        client_id: CLIENT_ID.into(),
        client_secret: CLIENT_SECRET.into(),
        token_lifetime_secs: 1,
        dataset: Dataset::default(),
        requests_per_minute: 60,
        revisions: false,
    };
    assert!(!format!("{config:?}").contains(CLIENT_SECRET));
    assert!(!format!("{sandbox:?}").contains(CLIENT_SECRET));
}

#[test]
fn huge_settings_do_not_panic() {
    let sandbox = Sandbox::new(SandboxConfig {
        public_url: "not a url".into(),
        client_id: CLIENT_ID.into(),
        client_secret: CLIENT_SECRET.into(),
        token_lifetime_secs: u64::MAX,
        dataset: Dataset {
            properties: usize::MAX,
            days: u32::MAX,
            projects: 10,
            children_per_project: usize::MAX,
            people: usize::MAX,
        },
        requests_per_minute: u32::MAX,
        revisions: true,
    });
    assert_eq!(sandbox.inner.dataset.children_per_project, 20);
    assert_eq!(sandbox.inner.dataset.properties, 1_000);
    assert_eq!(sandbox.inner.dataset.people, 1_000_000);
    assert_eq!(lock(&sandbox.inner.projects).len(), 210);
}

#[tokio::test]
async fn never_expiring_tokens_when_lifetime_overflows() {
    let sandbox = sandbox_with(CLIENT_SECRET, u64::MAX);
    let app = sandbox.router();
    let body = tokens(&app, "acme").await;
    assert_eq!(body["expires_in"], u64::MAX);
    assert_eq!(
        userinfo_status(&app, str_of(&body, "access_token"))
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn revisions_change_only_recent_days_between_reads() {
    let (sandbox, app) = sandbox();
    let token = access_token(&app).await;
    let first = all_metrics(&app, &token, "acme", "").await;
    let again = all_metrics(&app, &token, "acme", "").await;
    assert_eq!(first, again, "off: every read is the same");
    sandbox.set_revisions(true);
    let a = all_metrics(&app, &token, "acme", "").await;
    let b = all_metrics(&app, &token, "acme", "").await;
    let n = a.len();
    assert_eq!(n, 90);
    let recent = usize::try_from(crate::sandbox::REVISED_DAYS).unwrap();
    assert_eq!(
        a[..n - recent],
        first[..n - recent],
        "older days never move"
    );
    assert_eq!(b[..n - recent], first[..n - recent]);
    assert_ne!(a[n - recent..], b[n - recent..], "recent days are revised");
}
