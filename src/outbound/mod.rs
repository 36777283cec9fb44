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

#[cfg(test)]
mod tests {
    use super::redact_url;

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
