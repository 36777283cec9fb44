//! Layered settings: compiled-in `config/default.toml`, an optional TOML file
//! named by `PLUGBOARD_CONFIG`, then environment variables (and `.env`).
//!
//! Environment names are an explicit table rather than a prefix convention:
//! setting names contain underscores, so `PLUGBOARD_A_B_C` could not say
//! which underscore is a section break. The table is also what `.env.example`
//! is checked against.

use std::collections::HashMap;
use std::path::PathBuf;

use config::{Config, File, FileFormat};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// Environment variable → setting key. Earlier names win over later ones
/// for the same key (`DATABASE_URL` over `PLUGBOARD_DATABASE_URL`).
pub const ENV_VARS: &[(&str, &str)] = &[
    ("PLUGBOARD_ENV", "env"),
    ("PLUGBOARD_DATA_DIR", "data_dir"),
    ("PLUGBOARD_HOST", "server.host"),
    ("PORT", "server.port"),
    ("PLUGBOARD_PORT", "server.port"),
    ("PLUGBOARD_PUBLIC_URL", "server.public_url"),
    ("PLUGBOARD_BODY_LIMIT_BYTES", "server.body_limit_bytes"),
    (
        "PLUGBOARD_REQUEST_TIMEOUT_SECS",
        "server.request_timeout_secs",
    ),
    (
        "PLUGBOARD_SHUTDOWN_GRACE_SECS",
        "server.shutdown_grace_secs",
    ),
    (
        "PLUGBOARD_TRUST_PROXY_HEADERS",
        "server.trust_proxy_headers",
    ),
    ("DATABASE_URL", "database.url"),
    ("PLUGBOARD_DATABASE_URL", "database.url"),
    (
        "PLUGBOARD_DATABASE_MAX_CONNECTIONS",
        "database.max_connections",
    ),
    (
        "PLUGBOARD_DATABASE_ACQUIRE_TIMEOUT_SECS",
        "database.acquire_timeout_secs",
    ),
    ("PLUGBOARD_ALLOW_SIGNUP", "auth.allow_signup"),
    ("PLUGBOARD_SESSION_TTL_HOURS", "auth.session_ttl_hours"),
    ("PLUGBOARD_MIN_PASSWORD_LENGTH", "auth.min_password_length"),
    (
        "PLUGBOARD_LOGIN_ATTEMPTS_PER_IP_PER_MINUTE",
        "auth.login_attempts_per_ip_per_minute",
    ),
    (
        "PLUGBOARD_LOGIN_ATTEMPTS_PER_ACCOUNT_PER_MINUTE",
        "auth.login_attempts_per_account_per_minute",
    ),
    ("PLUGBOARD_INVITE_TTL_HOURS", "auth.invite_ttl_hours"),
    ("PLUGBOARD_LOG_FORMAT", "log.format"),
    ("PLUGBOARD_LOG_LEVEL", "log.level"),
    ("PLUGBOARD_ENCRYPTION_KEYS", "vault.encryption_keys"),
    ("PLUGBOARD_ROTATE_BATCH_SIZE", "vault.rotate_batch_size"),
    ("PLUGBOARD_PROVIDERS_DIR", "providers.dir"),
    ("PLUGBOARD_OAUTH_ENABLED", "oauth.enabled"),
    (
        "PLUGBOARD_OAUTH_REFRESH_WINDOW_SECS",
        "oauth.refresh_window_secs",
    ),
    (
        "PLUGBOARD_OAUTH_STATE_TTL_MINUTES",
        "oauth.state_ttl_minutes",
    ),
    (
        "PLUGBOARD_OAUTH_REAUTH_AFTER_FAILING_HOURS",
        "oauth.reauth_after_failing_hours",
    ),
    (
        "PLUGBOARD_OAUTH_KEEPALIVE_IDLE_HOURS",
        "oauth.keepalive_idle_hours",
    ),
    (
        "PLUGBOARD_OAUTH_KEEPALIVE_INTERVAL_MINUTES",
        "oauth.keepalive_interval_minutes",
    ),
    (
        "PLUGBOARD_HTTP_CONNECT_TIMEOUT_SECS",
        "http.connect_timeout_secs",
    ),
    ("PLUGBOARD_HTTP_READ_TIMEOUT_SECS", "http.read_timeout_secs"),
    ("PLUGBOARD_OUTBOUND_ALLOW", "http.outbound_allow"),
    ("PLUGBOARD_WEBHOOK_MAX_ATTEMPTS", "webhooks.max_attempts"),
    ("PLUGBOARD_SANDBOX", "sandbox.enabled"),
    (
        "PLUGBOARD_SANDBOX_TOKEN_LIFETIME_SECS",
        "sandbox.token_lifetime_secs",
    ),
    ("PLUGBOARD_SANDBOX_DATASET", "sandbox.dataset"),
    (
        "PLUGBOARD_SANDBOX_REQUESTS_PER_MINUTE",
        "sandbox.requests_per_minute",
    ),
    ("PLUGBOARD_SANDBOX_REVISIONS", "sandbox.revisions"),
    ("PLUGBOARD_METRICS_MAX_RANGE_DAYS", "metrics.max_range_days"),
    (
        "PLUGBOARD_METRICS_REVISION_MARGIN_DAYS",
        "metrics.revision_margin_days",
    ),
    ("AGENT_SERVICE_KEY", "internal.agent_service_key"),
    ("PLUGBOARD_AGENT_SERVICE_KEY", "internal.agent_service_key"),
    (
        "PLUGBOARD_INTERNAL_REQUESTS_PER_MINUTE",
        "internal.requests_per_minute",
    ),
    (
        "PLUGBOARD_INTERNAL_BODY_LIMIT_BYTES",
        "internal.body_limit_bytes",
    ),
    (
        "PLUGBOARD_INTERNAL_MAX_METRIC_ROWS",
        "internal.max_metric_rows",
    ),
    ("PLUGBOARD_INGEST_ENABLED", "sync.enabled"),
    ("PLUGBOARD_SYNC_WORKERS", "sync.workers"),
    (
        "PLUGBOARD_SYNC_MAX_RETRY_AFTER_SECS",
        "sync.max_retry_after_secs",
    ),
    ("PLUGBOARD_SYNC_MAX_PAGES", "sync.max_pages"),
    ("PLUGBOARD_SYNC_LEASE_SECS", "sync.lease_secs"),
    ("PLUGBOARD_SYNC_SOFT_LIMIT_SECS", "sync.soft_limit_secs"),
    ("PLUGBOARD_SYNC_HARD_LIMIT_SECS", "sync.hard_limit_secs"),
    ("PLUGBOARD_SYNC_MAX_ATTEMPTS", "sync.max_attempts"),
    ("PLUGBOARD_JOB_LOG_RETENTION_DAYS", "retention.job_log_days"),
    ("PLUGBOARD_AUDIT_RETENTION_DAYS", "retention.audit_days"),
    ("PLUGBOARD_SYNC_MAX_PAGE_BYTES", "sync.max_page_bytes"),
    ("PLUGBOARD_SYNC_PAGE_TIMEOUT_SECS", "sync.page_timeout_secs"),
    (
        "PLUGBOARD_SYNC_DELTA_LOOKBACK_SECS",
        "sync.delta_lookback_secs",
    ),
    (
        "PLUGBOARD_SYNC_METRICS_BACKFILL_DAYS",
        "sync.metrics_backfill_days",
    ),
    (
        "PLUGBOARD_SYNC_METRICS_LOOKBACK_DAYS",
        "sync.metrics_lookback_days",
    ),
    ("PLUGBOARD_RATE_LIMITS", "sync.rate_limits"),
    ("PLUGBOARD_REDACT_FIELDS", "sync.redact_fields"),
    ("PLUGBOARD_HANDOFF", "sync.handoff"),
    ("PLUGBOARD_HANDOFF_SECRET", "sync.handoff_secret"),
    (
        "PLUGBOARD_HANDOFF_TIMEOUT_SECS",
        "sync.handoff_timeout_secs",
    ),
    (
        "PLUGBOARD_PLANNER_INTERVAL_SECS",
        "sync.planner_interval_secs",
    ),
    ("PLUGBOARD_SYNC_MIN_INTERVAL_SECS", "sync.min_interval_secs"),
    (
        "PLUGBOARD_SYNC_ALERT_AFTER_FAILURES",
        "sync.alert_after_failures",
    ),
];

/// Names the optional extra TOML file; not a setting itself.
pub const CONFIG_FILE_VAR: &str = "PLUGBOARD_CONFIG";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    Development,
    Production,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub env: Environment,
    pub data_dir: PathBuf,
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub auth: AuthSettings,
    pub log: LogSettings,
    pub vault: VaultSettings,
    pub providers: ProviderSettings,
    pub oauth: OAuthSettings,
    pub http: HttpSettings,
    pub webhooks: WebhookSettings,
    pub sandbox: SandboxSettings,
    pub internal: InternalSettings,
    pub sync: SyncSettings,
    pub metrics: MetricsSettings,
    pub retention: RetentionSettings,
    /// Every other `PLUGBOARD_*` variable, by name: provider client ids and
    /// secrets and header values that provider.json files refer to.
    #[serde(skip)]
    pub provider_env: std::collections::BTreeMap<String, SecretString>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct OAuthSettings {
    pub enabled: bool,
    pub refresh_window_secs: u64,
    pub state_ttl_minutes: u32,
    pub reauth_after_failing_hours: u32,
    pub keepalive_idle_hours: u32,
    pub keepalive_interval_minutes: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct HttpSettings {
    pub connect_timeout_secs: u64,
    pub read_timeout_secs: u64,
    /// Hosts and IP ranges tenant-chosen URLs may reach despite the
    /// outbound policy (see `outbound::policy`).
    pub outbound_allow: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct WebhookSettings {
    pub max_attempts: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SandboxMode {
    Auto,
    True,
    False,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SyncSettings {
    pub enabled: bool,
    pub workers: u32,
    pub max_retry_after_secs: u64,
    pub max_pages: u64,
    pub lease_secs: u64,
    pub soft_limit_secs: u64,
    pub hard_limit_secs: u64,
    /// Claims of one job before it fails as a poison job.
    pub max_attempts: u32,
    pub max_page_bytes: u64,
    pub page_timeout_secs: u64,
    pub delta_lookback_secs: u64,
    pub metrics_backfill_days: u32,
    pub metrics_lookback_days: u32,
    /// Per-provider overrides of provider.json rate limits, e.g.
    /// `github:rpm=30,global=600,concurrency=1;slack:rpm=20`.
    pub rate_limits: String,
    /// Record fields (besides credentials, always redacted) kept out of
    /// job logs and log lines, comma-separated.
    pub redact_fields: String,
    /// Providers synced by an automation: `provider=https://…;…`.
    pub handoff: String,
    /// Signs hand-off requests (HMAC-SHA256).
    pub handoff_secret: SecretString,
    pub handoff_timeout_secs: u64,
    /// Seconds between sync-rule planner passes; 0 turns the planner off.
    pub planner_interval_secs: u64,
    /// Shortest time between two "Sync now" of one connection and object
    /// (admins may force one sooner); rules' scheduled syncs are not held.
    pub min_interval_secs: u64,
    /// A `sync_failed` webhook event after this many consecutive failed
    /// jobs of one connection's object (then `sync_recovered` on the next
    /// success); at least 1.
    pub alert_after_failures: u32,
}

/// How long logs are kept (days; 0 keeps them for ever).
#[derive(Debug, Clone, Deserialize)]
pub struct RetentionSettings {
    pub job_log_days: u32,
    pub audit_days: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct MetricsSettings {
    /// Longest range (in days) a metrics query may span.
    pub max_range_days: u32,
    /// Days beyond an object's settling window that revisions are kept.
    pub revision_margin_days: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct InternalSettings {
    pub agent_service_key: SecretString,
    pub requests_per_minute: u32,
    pub body_limit_bytes: usize,
    pub max_metric_rows: usize,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SandboxSettings {
    pub enabled: SandboxMode,
    pub token_lifetime_secs: u64,
    /// Sizes of the generated data, e.g. `projects=5000,people=100000`.
    pub dataset: String,
    pub requests_per_minute: u32,
    /// Recent days' metrics change between reads, as real providers revise
    /// them (switch off for deterministic tests).
    pub revisions: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ServerSettings {
    pub host: String,
    pub port: u16,
    pub public_url: String,
    pub body_limit_bytes: usize,
    pub request_timeout_secs: u64,
    pub shutdown_grace_secs: u64,
    pub trust_proxy_headers: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseSettings {
    /// May carry a password, hence secret.
    pub url: SecretString,
    pub max_connections: u32,
    pub acquire_timeout_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AuthSettings {
    pub allow_signup: bool,
    pub session_ttl_hours: u32,
    pub min_password_length: usize,
    pub login_attempts_per_ip_per_minute: u32,
    pub login_attempts_per_account_per_minute: u32,
    pub invite_ttl_hours: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LogSettings {
    pub format: LogFormat,
    pub level: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct VaultSettings {
    pub encryption_keys: SecretString,
    pub rotate_batch_size: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ProviderSettings {
    pub dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid configuration: {0}")]
    Invalid(String),
    #[error("invalid setting `{setting}`: {message}")]
    Setting { setting: String, message: String },
}

fn setting_error(setting: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Setting {
        setting: setting.to_owned(),
        message: message.into(),
    }
}

impl Settings {
    /// Reads `.env` (if present) and the process environment.
    pub fn load() -> Result<Self, ConfigError> {
        // A missing .env is normal; a malformed one is not silently ignored.
        if let Err(err) = dotenvy::dotenv()
            && !err.not_found()
        {
            return Err(ConfigError::Invalid(format!(".env: {err}")));
        }
        let env: HashMap<String, String> = std::env::vars().collect();
        Self::from_env_map(&env)
    }

    /// The pure core of [`Settings::load`], so tests never touch process env.
    pub fn from_env_map(env: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let mut builder =
            Config::builder().add_source(File::from_str(DEFAULT_TOML, FileFormat::Toml));
        if let Some(path) = env.get(CONFIG_FILE_VAR).filter(|p| !p.is_empty()) {
            builder = builder.add_source(File::new(path, FileFormat::Toml).required(true));
        }
        // Reverse so that the first name listed for a key is applied last and wins.
        for (var, key) in ENV_VARS.iter().rev() {
            if let Some(value) = env.get(*var) {
                builder = builder
                    .set_override(*key, value.as_str())
                    .map_err(|e| setting_error(key, e.to_string()))?;
            }
        }
        let raw = builder
            .build()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let mut settings: Settings = raw
            .try_deserialize()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        settings.provider_env = env
            .iter()
            .filter(|(name, value)| {
                name.starts_with("PLUGBOARD_")
                    && !value.is_empty()
                    && name.as_str() != CONFIG_FILE_VAR
                    && !ENV_VARS.iter().any(|(var, _)| var == name)
            })
            .map(|(name, value)| (name.clone(), SecretString::from(value.clone())))
            .collect();
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if let Err(e) = crate::sandbox::Dataset::parse(&self.sandbox.dataset) {
            return Err(setting_error("sandbox.dataset", e));
        }
        match crate::sync::handoff::parse_targets(&self.sync.handoff) {
            Err(e) => return Err(setting_error("sync.handoff", e)),
            Ok(targets)
                if !targets.is_empty() && self.sync.handoff_secret.expose_secret().len() < 16 =>
            {
                return Err(setting_error(
                    "sync.handoff_secret",
                    "hand-off needs a signing secret of at least 16 characters",
                ));
            }
            Ok(_) => {}
        }
        if self.sync.handoff_timeout_secs == 0 {
            return Err(setting_error(
                "sync.handoff_timeout_secs",
                "expected at least 1 second",
            ));
        }
        if let Err(e) = crate::sync::limits::parse_overrides(&self.sync.rate_limits) {
            return Err(setting_error("sync.rate_limits", e));
        }
        if self.sync.lease_secs < 2 {
            return Err(setting_error(
                "sync.lease_secs",
                "expected at least 2 seconds",
            ));
        }
        if self.sync.hard_limit_secs == 0 || self.sync.soft_limit_secs > self.sync.hard_limit_secs {
            return Err(setting_error(
                "sync.hard_limit_secs",
                "expected at least 1 second and no less than sync.soft_limit_secs",
            ));
        }
        for (key, value) in [
            ("sync.max_attempts", u64::from(self.sync.max_attempts)),
            ("sync.max_page_bytes", self.sync.max_page_bytes),
            ("sync.page_timeout_secs", self.sync.page_timeout_secs),
        ] {
            if value == 0 {
                return Err(setting_error(key, "expected at least 1"));
            }
        }
        if self.sync.alert_after_failures == 0 {
            return Err(setting_error(
                "sync.alert_after_failures",
                "expected at least 1",
            ));
        }
        if self.server.port == 0 {
            return Err(setting_error(
                "server.port",
                "expected a port from 1 to 65535",
            ));
        }
        let public = &self.server.public_url;
        if !public.is_empty()
            && (!(public.starts_with("http://") || public.starts_with("https://"))
                || public.trim_end_matches('/').len() <= "https://".len())
        {
            return Err(setting_error(
                "server.public_url",
                format!("expected an http:// or https:// URL, got {public:?}"),
            ));
        }
        if self.server.body_limit_bytes < 1024 {
            return Err(setting_error(
                "server.body_limit_bytes",
                "expected at least 1024 bytes",
            ));
        }
        if self.server.request_timeout_secs == 0 {
            return Err(setting_error(
                "server.request_timeout_secs",
                "expected at least 1 second",
            ));
        }
        let url = self.database.url.expose_secret();
        let known_scheme = ["postgres://", "postgresql://", "sqlite:"]
            .iter()
            .any(|scheme| url.starts_with(scheme));
        if !url.is_empty() && !known_scheme {
            // Never echo the value: it may hold a password.
            return Err(setting_error(
                "database.url",
                "expected postgres://…, postgresql://…, sqlite:… or empty for the embedded SQLite",
            ));
        }
        if self.database.max_connections == 0 {
            return Err(setting_error(
                "database.max_connections",
                "expected at least 1",
            ));
        }
        if self.auth.session_ttl_hours == 0 {
            return Err(setting_error(
                "auth.session_ttl_hours",
                "expected at least 1",
            ));
        }
        if !(8..=128).contains(&self.auth.min_password_length) {
            return Err(setting_error(
                "auth.min_password_length",
                "expected a number from 8 to 128",
            ));
        }
        if self.auth.login_attempts_per_ip_per_minute == 0
            || self.auth.login_attempts_per_account_per_minute == 0
        {
            return Err(setting_error(
                "auth.login_attempts_per_*_per_minute",
                "expected at least 1",
            ));
        }
        if self.auth.invite_ttl_hours == 0 {
            return Err(setting_error(
                "auth.invite_ttl_hours",
                "expected at least 1",
            ));
        }
        if self.vault.rotate_batch_size == 0 {
            return Err(setting_error(
                "vault.rotate_batch_size",
                "expected at least 1",
            ));
        }
        if self.oauth.state_ttl_minutes == 0 {
            return Err(setting_error(
                "oauth.state_ttl_minutes",
                "expected at least 1",
            ));
        }
        if self.oauth.reauth_after_failing_hours == 0 || self.oauth.keepalive_idle_hours == 0 {
            return Err(setting_error(
                "oauth.reauth_after_failing_hours / oauth.keepalive_idle_hours",
                "expected at least 1",
            ));
        }
        if self.http.connect_timeout_secs == 0 || self.http.read_timeout_secs == 0 {
            return Err(setting_error(
                "http.*_timeout_secs",
                "expected at least 1 second",
            ));
        }
        if let Err(e) = crate::outbound::policy::Allowlist::parse(&self.http.outbound_allow) {
            return Err(setting_error("http.outbound_allow", e));
        }
        if self.metrics.max_range_days == 0 {
            return Err(setting_error(
                "metrics.max_range_days",
                "expected at least 1 day",
            ));
        }
        if self.internal.requests_per_minute == 0 || self.internal.max_metric_rows == 0 {
            return Err(setting_error(
                "internal.requests_per_minute / internal.max_metric_rows",
                "expected at least 1",
            ));
        }
        let agent = self.internal.agent_service_key.expose_secret();
        if !agent.is_empty() && agent.len() < 32 {
            // Never echo it.
            return Err(setting_error(
                "internal.agent_service_key",
                "expected at least 32 characters (a long random string)",
            ));
        }
        if self.webhooks.max_attempts == 0 {
            return Err(setting_error(
                "webhooks.max_attempts",
                "expected at least 1",
            ));
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return Err(setting_error(
                "log.level",
                format!(
                    "expected a tracing filter such as \"info\", got {:?}",
                    self.log.level
                ),
            ));
        }
        Ok(())
    }

    pub fn uses_embedded_sqlite(&self) -> bool {
        let url = self.database.url.expose_secret();
        url.is_empty() || url.starts_with("sqlite:")
    }

    /// Whether the built-in sandbox provider is served.
    pub fn sandbox_enabled(&self) -> bool {
        match self.sandbox.enabled {
            SandboxMode::True => true,
            SandboxMode::False => false,
            SandboxMode::Auto => self.env != Environment::Production && self.uses_embedded_sqlite(),
        }
    }

    /// A provider-related environment value by variable name.
    pub fn provider_env(&self, name: &str) -> Option<&SecretString> {
        self.provider_env.get(name)
    }

    pub fn cookies_secure(&self) -> bool {
        self.server.public_url.starts_with("https://")
    }

    /// The configured public URL, or `http://host:port` (a wildcard host
    /// becomes 127.0.0.1, which a browser can open).
    pub fn public_url(&self) -> String {
        if !self.server.public_url.is_empty() {
            return self.server.public_url.trim_end_matches('/').to_owned();
        }
        let host = match self.server.host.as_str() {
            "0.0.0.0" | "::" | "[::]" => "127.0.0.1",
            other => other,
        };
        format!("http://{host}:{}", self.server.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_load_without_any_environment() {
        let s = Settings::from_env_map(&env(&[])).expect("defaults are valid");
        assert_eq!(s.server.port, 8080);
        assert!(s.uses_embedded_sqlite());
        assert_eq!(s.env, Environment::Development);
        assert_eq!(s.public_url(), "http://127.0.0.1:8080");
        let s = Settings::from_env_map(&env(&[("PORT", "9000"), ("PLUGBOARD_HOST", "0.0.0.0")]))
            .unwrap();
        assert_eq!(s.public_url(), "http://127.0.0.1:9000");
    }

    #[test]
    fn conventional_names_override_and_win() {
        let s = Settings::from_env_map(&env(&[
            ("PORT", "9000"),
            ("PLUGBOARD_PORT", "9001"),
            ("DATABASE_URL", "postgres://a@b/c"),
        ]))
        .unwrap();
        assert_eq!(s.server.port, 9000);
        assert!(!s.uses_embedded_sqlite());
    }

    #[test]
    fn bad_value_names_the_setting() {
        let err = Settings::from_env_map(&env(&[("PORT", "eighty")])).unwrap_err();
        assert!(err.to_string().contains("server.port"), "{err}");
        let err = Settings::from_env_map(&env(&[("PLUGBOARD_LOG_FORMAT", "xml")])).unwrap_err();
        assert!(err.to_string().contains("log.format"), "{err}");
        let err = Settings::from_env_map(&env(&[("PLUGBOARD_PUBLIC_URL", "ftp://x")])).unwrap_err();
        assert!(err.to_string().contains("server.public_url"), "{err}");
        let err = Settings::from_env_map(&env(&[("PLUGBOARD_OUTBOUND_ALLOW", "10.0.0.0/40")]))
            .unwrap_err();
        assert!(
            err.to_string().contains("PLUGBOARD_OUTBOUND_ALLOW"),
            "{err}"
        );
        assert!(err.to_string().contains("10.0.0.0/40"), "{err}");
    }

    #[test]
    fn database_url_error_does_not_echo_the_password() {
        let err = Settings::from_env_map(&env(&[("DATABASE_URL", "mysql://u:hunter2@h/db")]))
            .unwrap_err();
        assert!(err.to_string().contains("database.url"));
        assert!(!err.to_string().contains("hunter2"));
    }

    #[test]
    fn every_setting_is_documented_in_default_toml_and_env_example() {
        let example = include_str!("../.env.example");
        for (var, key) in ENV_VARS {
            assert!(example.contains(var), ".env.example misses {var}");
            let leaf = key.rsplit('.').next().unwrap();
            assert!(
                DEFAULT_TOML.contains(&format!("{leaf} =")),
                "default.toml misses {key}"
            );
            assert!(
                DEFAULT_TOML.contains(var),
                "default.toml does not name {var}"
            );
        }
        assert!(example.contains(CONFIG_FILE_VAR));
    }
}
