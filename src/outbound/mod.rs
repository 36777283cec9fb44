//! Outbound HTTP: one client for addresses the operator configured (every
//! provider call, OAuth included, hand-off), and a guarded twin for
//! addresses tenants or providers chose (webhooks), under [`policy`]. Both
//! use rustls with the ring provider, connect and read timeouts, and never
//! follow redirects — a token endpoint that redirects is misconfigured or
//! hostile, and following it could send credentials elsewhere.
//!
//! Nothing here logs bodies. URLs are logged through [`redact_url`].

pub mod policy;

use std::sync::Arc;
use std::time::Duration;

use crate::config::HttpSettings;
use policy::{Allowlist, GuardedResolver, Policy, UrlRefused};

pub const USER_AGENT: &str = concat!("plugboard/", env!("CARGO_PKG_VERSION"));

/// Makes ring the process-wide rustls provider. reqwest is built without a
/// provider of its own so that only one TLS crypto library is compiled in.
pub fn install_crypto_provider() {
    // Err means one is already installed (tests build many apps): fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Two clients with the same settings: `client` for addresses the operator
/// configured (providers, OAuth, hand-off, the sandbox), `guarded` for
/// addresses a tenant or a provider chose, under [`policy`].
#[derive(Clone, Debug)]
pub struct Outbound {
    client: reqwest::Client,
    guarded: reqwest::Client,
    policy: Arc<Policy>,
}

fn builder(settings: &HttpSettings) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .connect_timeout(Duration::from_secs(settings.connect_timeout_secs))
        .read_timeout(Duration::from_secs(settings.read_timeout_secs))
        .timeout(Duration::from_secs(
            settings.read_timeout_secs.saturating_mul(2),
        ))
        .redirect(reqwest::redirect::Policy::none())
}

impl Outbound {
    pub fn new(settings: &HttpSettings) -> anyhow::Result<Self> {
        install_crypto_provider();
        let allow = Allowlist::parse(&settings.outbound_allow).map_err(anyhow::Error::msg)?;
        let policy = Arc::new(Policy::new(allow));
        let client = builder(settings).build()?;
        // A proxy would resolve the name itself, out of the policy's reach.
        let guarded = builder(settings)
            .no_proxy()
            .dns_resolver(GuardedResolver {
                policy: policy.clone(),
            })
            .build()?;
        Ok(Outbound {
            client,
            guarded,
            policy,
        })
    }

    /// The client for operator-configured addresses.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// A request to a tenant- or provider-chosen URL: refused here for a
    /// literal denied address (those never reach the resolver), and at
    /// connect time for a name that resolves to one.
    pub fn guarded_request(
        &self,
        method: reqwest::Method,
        url: &str,
    ) -> Result<reqwest::RequestBuilder, UrlRefused> {
        let url = reqwest::Url::parse(url).map_err(|_| UrlRefused::NotHttp)?;
        self.policy.check_url(&url)?;
        Ok(self.guarded.request(method, url))
    }
}

/// How a guarded request failed, in words safe to show a tenant: which
/// internal addresses exist or answer is not theirs to learn, so refused,
/// timed out and unresolvable all read the same.
pub fn guarded_failure(err: &reqwest::Error) -> &'static str {
    if policy::is_not_allowed(err) {
        "address not allowed"
    } else {
        "could not connect"
    }
}

/// Query parameters whose values never reach a log line.
const SENSITIVE_PARAMS: &[&str] = &[
    "code",
    "access_token",
    "refresh_token",
    "token",
    "client_secret",
    "id_token",
    "key",
    "api_key",
    "apikey",
    "password",
    "state",
    "code_verifier",
    "signature",
    "sig",
];

/// The URL with sensitive query values replaced by `[redacted]`.
pub fn redact_url(url: &str) -> String {
    // A fragment can carry tokens (implicit-flow style): never log it.
    let (url, fragment) = match url.split_once('#') {
        Some((u, _)) => (u, "#[redacted]"),
        None => (url, ""),
    };
    let Some((base, query)) = url.split_once('?') else {
        return format!("{url}{fragment}");
    };
    let parts: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if SENSITIVE_PARAMS.contains(&name.to_ascii_lowercase().as_str()) => {
                format!("{name}=[redacted]")
            }
            _ => pair.to_owned(),
        })
        .collect();
    format!("{base}?{}{fragment}", parts.join("&"))
}

tokio::task_local! {
    /// The id provider calls carry as `X-Request-ID`: the incoming
    /// request's, or `job-<id>` in a sync job, so a provider's support team
    /// and our logs can find the same call.
    pub static REQUEST_ID: String;
}

/// Adds `X-Request-ID` when the task has one.
pub fn with_request_id(builder: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    match REQUEST_ID.try_with(Clone::clone) {
        Ok(id) => builder.header("x-request-id", id),
        Err(_) => builder,
    }
}

/// Whether a JSON key names a credential: its value never reaches a log.
fn is_credential_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    SENSITIVE_PARAMS.contains(&k.as_str())
        || k.contains("token")
        || k.contains("secret")
        || k.contains("password")
        || k == "authorization"
}

/// A provider's JSON (an error body, say) with credentials and the
/// configured personal-data fields replaced by `[redacted]`.
pub fn redact_json(value: &serde_json::Value, pii_fields: &[String]) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let hidden = is_credential_key(k)
                        || pii_fields.iter().any(|f| f.eq_ignore_ascii_case(k));
                    let v = if hidden && !v.is_null() {
                        Value::String("[redacted]".into())
                    } else {
                        redact_json(v, pii_fields)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| redact_json(v, pii_fields)).collect())
        }
        other => other.clone(),
    }
}

/// A provider's free text (an OAuth `error_description`, say) made fit to
/// show and store: URLs lose sensitive query values ([`redact_url`]),
/// `name=value` pairs whose name is a credential ([`redact_json`]'s rule)
/// and long token-like words become `[redacted]`, control characters go,
/// and it is cut at 200 characters.
pub fn redact_text(text: &str) -> String {
    fn token_like(word: &str) -> bool {
        word.len() >= 20
            && word.chars().any(|c| c.is_ascii_digit())
            && word.chars().any(|c| c.is_ascii_alphabetic())
            && word
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.~+/=".contains(c))
    }
    let words: Vec<String> = text
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .map(|word| {
            if word.starts_with("http://") || word.starts_with("https://") {
                return redact_url(word);
            }
            if let Some((name, value)) = word.split_once('=')
                && !value.is_empty()
                && is_credential_key(name)
            {
                return format!("{name}=[redacted]");
            }
            if token_like(word) {
                return "[redacted]".to_owned();
            }
            word.to_owned()
        })
        .collect();
    crate::input::excerpt(&words.join(" "), 200)
}

/// A short, redacted excerpt of a provider's error body for a job log.
pub fn error_excerpt(body: &serde_json::Value, pii_fields: &[String]) -> Option<String> {
    if body.is_null() {
        return None;
    }
    let text = redact_json(body, pii_fields).to_string();
    Some(crate::input::excerpt(&text, 300))
}

#[cfg(test)]
mod tests {
    use super::{error_excerpt, redact_json, redact_text, redact_url};

    #[test]
    fn provider_text_keeps_words_and_loses_credentials() {
        assert_eq!(redact_text("token revoked"), "token revoked");
        assert_eq!(
            redact_text("bad refresh_token=1//0gAbCdEf and\ncode=xyz"),
            "bad refresh_token=[redacted] and code=[redacted]"
        );
        assert_eq!(
            redact_text("token ya29.a0AfH6SMBx3kLq9ZpQ7rT2 expired"),
            "token [redacted] expired"
        );
        assert_eq!(
            redact_text("see https://p.example/cb?code=abc&x=1"),
            "see https://p.example/cb?code=[redacted]&x=1"
        );
        assert_eq!(redact_text(&"é".repeat(300)).chars().count(), 201);
    }

    #[test]
    fn credentials_and_configured_fields_are_redacted_from_json() {
        let body = serde_json::json!({
            "error": "invalid_grant",
            "access_token": "at-123",
            "details": [{"refreshToken": "rt-456", "email": "ann@example.com", "field": "name"}],
            "Authorization": "Bearer zzz",
        });
        let out = redact_json(&body, &["email".to_owned()]).to_string();
        for secret in ["at-123", "rt-456", "ann@example.com", "zzz"] {
            assert!(!out.contains(secret), "{secret} in {out}");
        }
        assert!(out.contains("invalid_grant") && out.contains("\"field\":\"name\""));
        let long = serde_json::json!({"message": "é".repeat(400)});
        assert!(error_excerpt(&long, &[]).unwrap().ends_with('…'));
        assert_eq!(error_excerpt(&serde_json::Value::Null, &[]), None);
    }

    #[test]
    fn sensitive_query_values_are_redacted() {
        let url = "https://x.example/cb?code=abc&state=s1&scope=read&access_token=t";
        assert_eq!(
            redact_url(url),
            "https://x.example/cb?code=[redacted]&state=[redacted]&scope=read&access_token=[redacted]"
        );
        assert_eq!(redact_url("https://x.example/a"), "https://x.example/a");
        assert!(!redact_url("https://x/#access_token=zzz?token=zzz").contains("zzz"));
    }
}
