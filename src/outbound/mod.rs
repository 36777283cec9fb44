//! The one outbound HTTP client for every provider call (OAuth included):
//! rustls with the ring provider, connect and read timeouts, and redirects
//! never followed — a token endpoint that redirects is misconfigured or
//! hostile, and following it could send credentials elsewhere.
//!
//! Nothing here logs bodies. URLs are logged through [`redact_url`].

use std::time::Duration;

use crate::config::HttpSettings;

pub const USER_AGENT: &str = concat!("plugboard/", env!("CARGO_PKG_VERSION"));

/// Makes ring the process-wide rustls provider. reqwest is built without a
/// provider of its own so that only one TLS crypto library is compiled in.
pub fn install_crypto_provider() {
    // Err means one is already installed (tests build many apps): fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[derive(Clone, Debug)]
pub struct Outbound {
    client: reqwest::Client,
}

impl Outbound {
    pub fn new(settings: &HttpSettings) -> anyhow::Result<Self> {
        install_crypto_provider();
        let client = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(Duration::from_secs(settings.connect_timeout_secs))
            .read_timeout(Duration::from_secs(settings.read_timeout_secs))
            .timeout(Duration::from_secs(
                settings.read_timeout_secs.saturating_mul(2),
            ))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Outbound { client })
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
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

/// A short, redacted excerpt of a provider's error body for a job log.
pub fn error_excerpt(body: &serde_json::Value, pii_fields: &[String]) -> Option<String> {
    if body.is_null() {
        return None;
    }
    let text = redact_json(body, pii_fields).to_string();
    const MAX: usize = 300;
    Some(if text.len() > MAX {
        let mut end = MAX;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &text[..end])
    } else {
        text
    })
}

#[cfg(test)]
mod tests {
    use super::{error_excerpt, redact_json, redact_url};

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
