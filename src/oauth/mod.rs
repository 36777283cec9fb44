//! OAuth 2.0 with the `oauth2` crate, sent through our one outbound client.
//!
//! Every provider quirk comes from its provider.json: URLs (with
//! `{publicUrl}` and `{param}` placeholders), scope separator, extra
//! authorization and token parameters, JSON or form token bodies, client
//! authentication in a header or the body, and where the tokens sit in the
//! token response (Slack's `authed_user`). The [`TokenHttp`] adapter
//! rewrites requests and normalises responses so the crate sees standard
//! OAuth; it also turns 5xx and 429 answers into transport errors, so a
//! provider outage is never mistaken for a revoked grant.

pub mod state;

use std::sync::{Arc, Mutex};

use oauth2::basic::{BasicClient, BasicErrorResponseType, BasicTokenResponse};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet,
    EndpointSet, HttpRequest, HttpResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl,
    RefreshToken, RequestTokenError, Scope, TokenResponse, TokenUrl,
};
use secrecy::ExposeSecret;
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::config::Settings;
use crate::providers::{AuthMeta, ClientAuthMethod, Flow, Provider, TokenRequestFormat};
use crate::vault::Secret;

/// Client id and secret of the OAuth app registered at the provider.
#[derive(Clone, Debug)]
pub struct AppCredentials {
    pub client_id: String,
    pub client_secret: Secret,
}

/// Where the app credentials of a provider come from: the env variables the
/// provider file names; the sandbox falls back to built-in ones.
pub fn app_credentials(
    settings: &Settings,
    provider: &Provider,
    sandbox: Option<&AppCredentials>,
) -> Option<AppCredentials> {
    let auth = &provider.meta.auth;
    let id = settings
        .provider_env(&auth.client_id_env)
        .map(|s| s.expose_secret().to_owned());
    let secret = settings
        .provider_env(&auth.client_secret_env)
        .map(|s| Secret::new(s.expose_secret()));
    match (id, secret) {
        (Some(client_id), Some(client_secret)) => Some(AppCredentials {
            client_id,
            client_secret,
        }),
        _ if provider.meta.key == "sandbox" => sandbox.cloned(),
        _ => None,
    }
}

/// Replaces `{publicUrl}` and the provider's `urlParams` placeholders.
pub fn expand_url(template: &str, public_url: &str, params: &[(String, String)]) -> String {
    let mut url = template.replace("{publicUrl}", public_url);
    for (key, value) in params {
        url = url.replace(&format!("{{{key}}}"), value);
    }
    url
}

/// URL parameters (Microsoft's `{tenant}`) at their defaults.
pub fn default_url_params(auth: &AuthMeta) -> Vec<(String, String)> {
    auth.url_params
        .iter()
        .filter_map(|p| p.default.clone().map(|d| (p.key.clone(), d)))
        .collect()
}

pub fn supports_pkce(provider: &Provider) -> bool {
    provider
        .meta
        .auth
        .flows
        .iter()
        .any(|f| matches!(f, Flow::AuthorizationCode { pkce: true }))
}

pub fn supports_flow(provider: &Provider, flow: &str) -> bool {
    provider.meta.auth.flows.iter().any(|f| {
        matches!(
            (f, flow),
            (Flow::AuthorizationCode { .. }, "authorization_code")
                | (Flow::ClientCredentials, "client_credentials")
                | (Flow::ApiKey { .. }, "api_key")
        )
    })
}

#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    #[error("the provider's OAuth app is not configured: set {0}")]
    NotConfigured(String),
    #[error("provider metadata has an unusable {0}")]
    BadMetadata(&'static str),
    /// The grant is gone: invalid_grant, unauthorized_client, invalid_client.
    /// `detail` is the provider's `error_description`, redacted.
    #[error("the provider rejected the grant ({code}{}); the account must be reconnected", detail_suffix(.detail))]
    Revoked {
        code: String,
        detail: Option<String>,
    },
    /// The provider refused for another reason (bad request, scope…).
    #[error("the provider refused the request ({code})")]
    Rejected { code: String },
    /// Network trouble, 5xx, 429, unreadable answers: worth retrying later.
    #[error("the provider is unavailable or answered unexpectedly: {0}")]
    Transient(String),
}

fn detail_suffix(detail: &Option<String>) -> String {
    detail
        .as_deref()
        .filter(|d| !d.is_empty())
        .map(|d| format!(": {d}"))
        .unwrap_or_default()
}

impl OAuthError {
    pub fn is_transient(&self) -> bool {
        matches!(self, OAuthError::Transient(_))
    }
}

/// Tokens as obtained from the provider, normalised.
#[derive(Debug, Clone)]
pub struct TokenSet {
    pub access_token: Secret,
    pub refresh_token: Option<Secret>,
    pub token_type: String,
    /// None for tokens that never expire.
    pub expires_at: Option<OffsetDateTime>,
    pub lifetime_secs: Option<u64>,
    /// As granted, when the provider says; otherwise None.
    pub granted_scopes: Option<Vec<String>>,
    pub account_id: Option<String>,
    pub account_name: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenHttpError {
    #[error("network: {0}")]
    Network(String),
    #[error("HTTP {0}")]
    Status(u16),
    #[error("{0}")]
    Build(String),
}

type ConfiguredClient =
    BasicClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

/// Everything needed to talk to one provider's token endpoint.
pub struct OAuthProvider<'a> {
    pub provider: &'a Provider,
    pub credentials: AppCredentials,
    pub public_url: String,
    pub url_params: Vec<(String, String)>,
    pub redirect_uri: String,
    pub http: reqwest::Client,
}

impl<'a> OAuthProvider<'a> {
    fn auth(&self) -> &AuthMeta {
        &self.provider.meta.auth
    }

    fn url(&self, template: Option<&String>, what: &'static str) -> Result<String, OAuthError> {
        template
            .map(|t| expand_url(t, &self.public_url, &self.url_params))
            .ok_or(OAuthError::BadMetadata(what))
    }

    fn client(&self) -> Result<ConfiguredClient, OAuthError> {
        let auth_url = self.url(self.auth().authorization_url.as_ref(), "authorizationUrl")?;
        let token_url = self.url(self.auth().token_url.as_ref(), "tokenUrl")?;
        let client = BasicClient::new(ClientId::new(self.credentials.client_id.clone()))
            .set_client_secret(ClientSecret::new(
                self.credentials.client_secret.expose().to_owned(),
            ))
            .set_auth_uri(
                AuthUrl::new(auth_url).map_err(|_| OAuthError::BadMetadata("authorizationUrl"))?,
            )
            .set_token_uri(
                TokenUrl::new(token_url).map_err(|_| OAuthError::BadMetadata("tokenUrl"))?,
            )
            .set_auth_type(match self.auth().client_auth_method {
                ClientAuthMethod::Basic => AuthType::BasicAuth,
                ClientAuthMethod::Post => AuthType::RequestBody,
            });
        Ok(client)
    }

    fn scopes(&self, scopes: &[String]) -> Vec<Scope> {
        // oauth2 joins scopes with spaces; providers that want commas get
        // one pre-joined scope.
        if scopes.is_empty() {
            Vec::new()
        } else if self.auth().scope_separator == " " {
            scopes.iter().map(|s| Scope::new(s.clone())).collect()
        } else {
            vec![Scope::new(scopes.join(&self.auth().scope_separator))]
        }
    }

    /// The authorization URL, with PKCE when the provider supports it.
    /// Returns the URL and the verifier to keep for the callback.
    pub fn authorize_url(
        &self,
        state: &str,
        scopes: &[String],
    ) -> Result<(String, Option<Secret>), OAuthError> {
        let client = self.client()?.set_redirect_uri(
            RedirectUrl::new(self.redirect_uri.clone())
                .map_err(|_| OAuthError::BadMetadata("redirect URI"))?,
        );
        let state = state.to_owned();
        let mut request = client
            .authorize_url(move || CsrfToken::new(state))
            .add_scopes(self.scopes(scopes));
        for (k, v) in &self.auth().authorization_params {
            request = request.add_extra_param(k.clone(), v.clone());
        }
        let verifier = if supports_pkce(self.provider) {
            let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
            request = request.set_pkce_challenge(challenge);
            Some(Secret::new(verifier.secret().clone()))
        } else {
            None
        };
        let (url, _) = request.url();
        Ok((url.to_string(), verifier))
    }

    pub async fn exchange_code(
        &self,
        code: &Secret,
        verifier: Option<&Secret>,
    ) -> Result<TokenSet, OAuthError> {
        let client = self.client()?.set_redirect_uri(
            RedirectUrl::new(self.redirect_uri.clone())
                .map_err(|_| OAuthError::BadMetadata("redirect URI"))?,
        );
        let capture = Capture::default();
        let http = self.token_http(&capture);
        let mut request = client.exchange_code(AuthorizationCode::new(code.expose().to_owned()));
        if let Some(v) = verifier {
            request = request.set_pkce_verifier(PkceCodeVerifier::new(v.expose().to_owned()));
        }
        for (k, v) in &self.auth().token_params {
            request = request.add_extra_param(k.clone(), v.clone());
        }
        let result = request.request_async(&http).await;
        self.finish(result, &capture)
    }

    pub async fn refresh(&self, refresh_token: &Secret) -> Result<TokenSet, OAuthError> {
        let client = self.client()?;
        let capture = Capture::default();
        let http = self.token_http(&capture);
        let refresh = RefreshToken::new(refresh_token.expose().to_owned());
        let mut request = client.exchange_refresh_token(&refresh);
        for (k, v) in &self.auth().token_params {
            request = request.add_extra_param(k.clone(), v.clone());
        }
        let result = request.request_async(&http).await;
        self.finish(result, &capture)
    }

    pub async fn client_credentials(&self, scopes: &[String]) -> Result<TokenSet, OAuthError> {
        let client = self.client()?;
        let capture = Capture::default();
        let http = self.token_http(&capture);
        let mut request = client
            .exchange_client_credentials()
            .add_scopes(self.scopes(scopes));
        for (k, v) in &self.auth().token_params {
            request = request.add_extra_param(k.clone(), v.clone());
        }
        let result = request.request_async(&http).await;
        self.finish(result, &capture)
    }

    fn finish(
        &self,
        result: Result<
            BasicTokenResponse,
            RequestTokenError<TokenHttpError, oauth2::basic::BasicErrorResponse>,
        >,
        capture: &Capture,
    ) -> Result<TokenSet, OAuthError> {
        let token = result.map_err(classify)?;
        let normalized = capture
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default()
            .unwrap_or(Value::Null);
        let lifetime_secs =
            token
                .expires_in()
                .map(|d| d.as_secs())
                .or(if self.auth().access_token_expires {
                    self.auth().default_access_token_lifetime_seconds
                } else {
                    None
                });
        let granted_scopes = token.scopes().map(|scopes| {
            scopes
                .iter()
                .flat_map(|s| split_scopes(s.as_str()))
                .collect::<Vec<_>>()
        });
        let text = |key: &str| normalized.get(key).and_then(value_text);
        Ok(TokenSet {
            access_token: Secret::new(token.access_token().secret().clone()),
            refresh_token: token
                .refresh_token()
                .map(|r| Secret::new(r.secret().clone())),
            token_type: token.token_type().as_ref().to_owned(),
            expires_at: lifetime_secs.map(expiry_after),
            lifetime_secs,
            granted_scopes,
            account_id: text(ACCOUNT_ID_FIELD),
            account_name: text(ACCOUNT_NAME_FIELD),
        })
    }

    fn token_http(&self, capture: &Capture) -> TokenHttp {
        TokenHttp {
            http: self.http.clone(),
            auth: self.auth().clone(),
            capture: capture.clone(),
        }
    }
}

/// The adapter oauth2 sends token requests through: our reqwest client,
/// with the provider's request and response quirks applied. Holds owned
/// data so its futures are plainly `Send`.
struct TokenHttp {
    http: reqwest::Client,
    auth: AuthMeta,
    capture: Capture,
}

impl<'c> oauth2::AsyncHttpClient<'c> for TokenHttp {
    type Error = TokenHttpError;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<HttpResponse, TokenHttpError>> + Send + 'c>,
    >;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let request = rewrite_request(request, &self.auth)?;
            let response = send(&self.http, request).await?;
            let status = response.status().as_u16();
            // Outages and throttling are not the grant's fault.
            if status >= 500 || status == 429 {
                return Err(TokenHttpError::Status(status));
            }
            let normalized = normalise_response(response, &self.auth);
            if let Ok(mut slot) = self.capture.lock() {
                *slot = serde_json::from_slice(normalized.body()).ok();
            }
            Ok(normalized)
        })
    }
}

type Capture = Arc<Mutex<Option<Value>>>;

const ACCOUNT_ID_FIELD: &str = "plugboard_account_id";
const ACCOUNT_NAME_FIELD: &str = "plugboard_account_name";

/// Longest access-token lifetime taken at its word; a provider answering
/// `expires_in: 1e18` gets this instead of a date past the calendar.
const MAX_TOKEN_LIFETIME: time::Duration = time::Duration::days(3650);

/// When a token that lives `secs` seconds from now expires.
fn expiry_after(secs: u64) -> time::OffsetDateTime {
    let lifetime = i64::try_from(secs)
        .map(time::Duration::seconds)
        .unwrap_or(MAX_TOKEN_LIFETIME)
        .min(MAX_TOKEN_LIFETIME);
    let now = crate::storage::now();
    now.checked_add(lifetime).unwrap_or(now)
}

fn value_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

pub fn split_scopes(raw: &str) -> Vec<String> {
    raw.split([' ', ','])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn classify(
    err: RequestTokenError<TokenHttpError, oauth2::basic::BasicErrorResponse>,
) -> OAuthError {
    match err {
        RequestTokenError::ServerResponse(response) => {
            let code = response.error().as_ref().to_owned();
            match response.error() {
                BasicErrorResponseType::InvalidGrant
                | BasicErrorResponseType::UnauthorizedClient
                | BasicErrorResponseType::InvalidClient => OAuthError::Revoked {
                    code,
                    // The provider's own words, as the 409s show them.
                    detail: response
                        .error_description()
                        .map(|d| crate::outbound::redact_text(d)),
                },
                _ => OAuthError::Rejected { code },
            }
        }
        RequestTokenError::Request(e) => OAuthError::Transient(e.to_string()),
        // The body may hold tokens: never keep it.
        RequestTokenError::Parse(_, _) => OAuthError::Transient("malformed token response".into()),
        RequestTokenError::Other(msg) => OAuthError::Transient(msg),
    }
}

async fn send(
    http: &reqwest::Client,
    request: HttpRequest,
) -> Result<HttpResponse, TokenHttpError> {
    let mut request =
        reqwest::Request::try_from(request).map_err(|e| TokenHttpError::Build(e.to_string()))?;
    if let Ok(id) = crate::outbound::REQUEST_ID.try_with(Clone::clone)
        && let Ok(value) = reqwest::header::HeaderValue::from_str(&id)
    {
        request.headers_mut().insert("x-request-id", value);
    }
    let response = http
        .execute(request)
        .await
        .map_err(|e| TokenHttpError::Network(without_url(&e)))?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .bytes()
        .await
        .map_err(|e| TokenHttpError::Network(without_url(&e)))?;
    let mut builder = http::Response::builder().status(status.as_u16());
    for (name, value) in &headers {
        builder = builder.header(name, value);
    }
    builder
        .body(body.to_vec())
        .map_err(|e| TokenHttpError::Build(e.to_string()))
}

/// reqwest errors print the URL, which for some providers carries secrets.
fn without_url(err: &reqwest::Error) -> String {
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "connection failed"
    } else if err.is_body() || err.is_decode() {
        "reading the response failed"
    } else {
        "request failed"
    };
    kind.to_owned()
}

/// JSON token bodies for providers that want them (Notion).
fn rewrite_request(request: HttpRequest, auth: &AuthMeta) -> Result<HttpRequest, TokenHttpError> {
    if auth.token_request_format != TokenRequestFormat::Json {
        return Ok(request);
    }
    let (mut parts, body) = request.into_parts();
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_bytes(&body).map_err(|e| TokenHttpError::Build(e.to_string()))?;
    let object: Map<String, Value> = pairs
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    let body = serde_json::to_vec(&object).map_err(|e| TokenHttpError::Build(e.to_string()))?;
    parts.headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(http::header::CONTENT_LENGTH);
    Ok(http::Request::from_parts(parts, body))
}

/// Maps the provider's token response onto standard fields: token paths
/// from metadata, `token_type` when missing, `expires_in` as a number, and
/// `"ok": false` bodies (Slack) as the error responses they are.
fn normalise_response(response: HttpResponse, auth: &AuthMeta) -> HttpResponse {
    let (mut parts, body) = response.into_parts();
    let Ok(Value::Object(mut object)) = serde_json::from_slice::<Value>(&body) else {
        return http::Response::from_parts(parts, body);
    };
    if object.get("ok") == Some(&Value::Bool(false)) {
        let code = object
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("invalid_request")
            .to_owned();
        parts.status = http::StatusCode::BAD_REQUEST;
        let error = serde_json::json!({ "error": code });
        return http::Response::from_parts(parts, serde_json::to_vec(&error).unwrap_or_default());
    }
    let root = Value::Object(object.clone());
    let pick = |name: &str| {
        auth.token_response
            .get(name)
            .and_then(|ptr| root.pointer(ptr))
            .cloned()
    };
    for (field, name) in [
        ("access_token", "accessToken"),
        ("refresh_token", "refreshToken"),
        ("expires_in", "expiresIn"),
        ("scope", "scope"),
        ("token_type", "tokenType"),
    ] {
        if let Some(value) = pick(name) {
            object.insert(field.to_owned(), value);
        }
    }
    if let Some(value) = pick("accountId") {
        object.insert(ACCOUNT_ID_FIELD.to_owned(), value);
    }
    if let Some(value) = pick("accountName") {
        object.insert(ACCOUNT_NAME_FIELD.to_owned(), value);
    }
    if !object.get("token_type").is_some_and(Value::is_string) {
        object.insert("token_type".to_owned(), Value::String("bearer".to_owned()));
    }
    // oauth2's token type parser is case-sensitive; providers aren't.
    if let Some(Value::String(t)) = object.get_mut("token_type") {
        *t = t.to_ascii_lowercase();
    }
    match object.get("expires_in") {
        Some(Value::String(s)) => match s.parse::<u64>() {
            Ok(n) => {
                object.insert("expires_in".to_owned(), Value::from(n));
            }
            Err(_) => {
                object.remove("expires_in");
            }
        },
        Some(Value::Null) => {
            object.remove("expires_in");
        }
        _ => {}
    }
    if let Some(Value::Array(scopes)) = object.get("scope") {
        let joined = scopes
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" ");
        object.insert("scope".to_owned(), Value::String(joined));
    }
    let body = serde_json::to_vec(&Value::Object(object)).unwrap_or(body);
    parts.headers.remove(http::header::CONTENT_LENGTH);
    http::Response::from_parts(parts, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(extra: Value) -> AuthMeta {
        let mut base = serde_json::json!({
            "flows": [{"type": "authorization_code", "pkce": true}],
            "defaultScopes": [], "scopeSeparator": " ", "authorizationParams": {},
            "tokenRequestFormat": "form", "clientAuthMethod": "post",
            "issuesRefreshToken": true, "refreshTokenRotates": false,
            "clientIdEnv": "PLUGBOARD_X_ID", "clientSecretEnv": "PLUGBOARD_X_SECRET"
        });
        if let (Value::Object(b), Value::Object(e)) = (&mut base, extra) {
            b.extend(e);
        }
        serde_json::from_value(base).unwrap()
    }

    fn response(body: Value) -> HttpResponse {
        http::Response::builder()
            .status(200)
            .body(serde_json::to_vec(&body).unwrap())
            .unwrap()
    }

    fn body(r: &HttpResponse) -> Value {
        serde_json::from_slice(r.body()).unwrap()
    }

    #[test]
    fn slack_style_token_paths() {
        let a = auth(serde_json::json!({"tokenResponse": {
            "accessToken": "/authed_user/access_token", "scope": "/authed_user/scope",
            "accountId": "/team/id", "accountName": "/team/name"}}));
        let r = normalise_response(
            response(
                serde_json::json!({"ok": true, "access_token": "xoxb-bot", "authed_user": {"access_token": "xoxp-user", "scope": "a,b"}, "team": {"id": "T1", "name": "Acme"}}),
            ),
            &a,
        );
        let b = body(&r);
        assert_eq!(b["access_token"], "xoxp-user");
        assert_eq!(b["token_type"], "bearer");
        assert_eq!(b[ACCOUNT_ID_FIELD], "T1");
        assert_eq!(split_scopes(b["scope"].as_str().unwrap()), vec!["a", "b"]);
    }

    #[test]
    fn ok_false_becomes_an_error_response() {
        let r = normalise_response(
            response(serde_json::json!({"ok": false, "error": "invalid_code"})),
            &auth(Value::Null),
        );
        assert_eq!(r.status(), 400);
        assert_eq!(body(&r)["error"], "invalid_code");
    }

    #[test]
    fn expires_in_as_string_and_token_type_case() {
        let r = normalise_response(
            response(
                serde_json::json!({"access_token": "t", "expires_in": "3600", "token_type": "Bearer"}),
            ),
            &auth(Value::Null),
        );
        let b = body(&r);
        assert_eq!(b["expires_in"], 3600);
        assert_eq!(b["token_type"], "bearer");
    }

    #[test]
    fn json_token_bodies() {
        let a = auth(serde_json::json!({"tokenRequestFormat": "json"}));
        let req = http::Request::builder()
            .method("POST")
            .uri("https://x.example/token")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(b"grant_type=authorization_code&code=abc".to_vec())
            .unwrap();
        let out = rewrite_request(req, &a).unwrap();
        assert_eq!(out.headers()["content-type"], "application/json");
        let b: Value = serde_json::from_slice(out.body()).unwrap();
        assert_eq!(b["code"], "abc");
    }

    #[test]
    fn url_placeholders() {
        let url = expand_url(
            "https://login.example/{tenant}/token",
            "http://me",
            &[("tenant".into(), "common".into())],
        );
        assert_eq!(url, "https://login.example/common/token");
        assert_eq!(
            expand_url("{publicUrl}/sandbox/x", "http://me:1", &[]),
            "http://me:1/sandbox/x"
        );
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use crate::testing::{any_json, json_with_keys};
    use proptest::prelude::*;

    fn auth(token_response: Value) -> AuthMeta {
        let token_response = if token_response.is_null() {
            serde_json::json!({})
        } else {
            token_response
        };
        serde_json::from_value(serde_json::json!({
            "flows": [{"type": "authorization_code", "pkce": true}],
            "defaultScopes": [], "scopeSeparator": " ", "authorizationParams": {},
            "tokenRequestFormat": "form", "clientAuthMethod": "post",
            "issuesRefreshToken": true, "refreshTokenRotates": false,
            "clientIdEnv": "PLUGBOARD_X_ID", "clientSecretEnv": "PLUGBOARD_X_SECRET",
            "tokenResponse": token_response,
        }))
        .unwrap_or_else(|e| panic!("fixture auth: {e}"))
    }

    fn token_body() -> impl Strategy<Value = Value> {
        prop_oneof![
            any_json(),
            json_with_keys(&[
                "access_token",
                "refresh_token",
                "expires_in",
                "token_type",
                "scope",
                "accessToken",
                "expiresIn",
                "authed_user",
                "team"
            ]),
        ]
    }

    proptest! {
        // Token responses are provider data: normalised and parsed, any body
        // is a token set or a parse error, and any lifetime a date.
        #[test]
        fn any_token_response_parses_or_is_refused(body in token_body(), raw_bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let paths = serde_json::json!({"accessToken": "/authed_user/access_token", "expiresIn": "/expires", "accountId": "/team/id", "accountName": "/team/name"});
            for a in [auth(Value::Null), auth(paths)] {
                for bytes in [serde_json::to_vec(&body).unwrap_or_default(), raw_bytes.clone()] {
                    let response = http::Response::builder()
                        .status(200)
                        .body(bytes)
                        .unwrap_or_else(|e| panic!("{e}"));
                    let out = normalise_response(response, &a);
                    if let Ok(token) = serde_json::from_slice::<BasicTokenResponse>(out.body()) {
                        use oauth2::TokenResponse;
                        let _ = token.expires_in().map(|d| expiry_after(d.as_secs()));
                    }
                }
            }
        }

        #[test]
        fn any_lifetime_is_a_date_within_ten_years(secs in any::<u64>()) {
            let at = expiry_after(secs);
            prop_assert!(at <= crate::storage::now() + MAX_TOKEN_LIFETIME);
        }
    }

    #[test]
    fn a_huge_expires_in_is_capped_not_a_panic() {
        let at = expiry_after(u64::MAX);
        assert!(at > crate::storage::now() + time::Duration::days(3000));
    }
}
