//! The provider registry: `providers/<key>/provider.json` files, validated
//! against `providers/provider.schema.json` (compiled into the binary, so a
//! custom providers folder is held to the schema this build understands).
//!
//! Loading collects every problem in every file before failing, each with
//! the file, the JSON pointer and a readable message. Unknown keys are kept
//! in `raw` so newer metadata still loads in an older binary.

pub mod catalog;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const SCHEMA_JSON: &str = include_str!("../../providers/provider.schema.json");
pub const PROVIDER_FILE: &str = "provider.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProviderMeta {
    pub provider_schema_version: u32,
    pub key: String,
    pub display_name: String,
    pub category: String,
    pub docs_url: String,
    #[serde(default)]
    pub description: Option<String>,
    pub auth: AuthMeta,
    pub required_headers: Vec<RequiredHeader>,
    pub base_url_variants: Vec<BaseUrlVariant>,
    pub rate_limits: RateLimits,
    #[serde(default)]
    pub accounts: Option<Value>,
    pub objects: Vec<ObjectMeta>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthMeta {
    pub flows: Vec<Flow>,
    #[serde(default)]
    pub authorization_url: Option<String>,
    #[serde(default)]
    pub token_url: Option<String>,
    #[serde(default)]
    pub revoke_url: Option<String>,
    #[serde(default)]
    pub userinfo_url: Option<String>,
    pub default_scopes: Vec<String>,
    pub scope_separator: String,
    pub authorization_params: BTreeMap<String, String>,
    #[serde(default)]
    pub token_params: BTreeMap<String, String>,
    pub token_request_format: TokenRequestFormat,
    pub client_auth_method: ClientAuthMethod,
    pub issues_refresh_token: bool,
    pub refresh_token_rotates: bool,
    #[serde(default)]
    pub default_access_token_lifetime_seconds: Option<u64>,
    #[serde(default = "default_true")]
    pub access_token_expires: bool,
    #[serde(default)]
    pub token_response: BTreeMap<String, String>,
    /// Names of the environment variables holding the client credentials;
    /// never their values.
    pub client_id_env: String,
    pub client_secret_env: String,
    #[serde(default)]
    pub url_params: Vec<UrlParam>,
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Flow {
    AuthorizationCode {
        pkce: bool,
    },
    ClientCredentials,
    #[serde(rename_all = "camelCase")]
    ApiKey {
        header_name: String,
        #[serde(default)]
        value_prefix: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TokenRequestFormat {
    Form,
    Json,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuthMethod {
    Basic,
    Post,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UrlParam {
    pub key: String,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub default: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HeaderSource {
    Env,
    Connection,
    Static,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequiredHeader {
    pub key: String,
    pub label: String,
    pub source: HeaderSource,
    /// The variable's name; its value is never part of the metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default)]
    pub optional: bool,
    /// The operator's credential (source env): used on Plugboard's own
    /// provider calls, never handed to automations.
    #[serde(default)]
    pub secret: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON pointer into userinfo supplying a connection header's value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_userinfo: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BaseUrlVariant {
    pub key: String,
    pub label: String,
    pub base_url: String,
    #[serde(default)]
    pub default: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateLimits {
    pub requests_per_minute: u32,
    pub burst: u32,
    pub max_concurrent_per_connection: u32,
    pub global_requests_per_minute: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub quota_headers: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    Records,
    Metrics,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Capability {
    List,
    Delta,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    pub key: String,
    pub label: String,
    #[serde(default)]
    pub description: Option<String>,
    pub kind: ObjectKind,
    pub endpoint: String,
    pub method: String,
    pub pagination: Value,
    pub record_selector: String,
    pub fields: Vec<FieldMeta>,
    pub capabilities: Vec<Capability>,
    #[serde(default)]
    pub delta_cursor_field: Option<String>,
    /// `rfc3339` (default), `date` or `epoch_seconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta_format: Option<String>,
    /// How far before the high-water mark delta reads start (overrides
    /// `PLUGBOARD_SYNC_DELTA_LOOKBACK_SECS`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta_lookback_seconds: Option<u64>,
    #[serde(default)]
    pub hierarchy: Option<Hierarchy>,
    #[serde(default)]
    pub filters: Option<Filters>,
    #[serde(default)]
    pub deletion_marker: Option<DeletionMarker>,
    #[serde(default)]
    pub metrics: Vec<String>,
    #[serde(default)]
    pub dimensions: Vec<String>,
    #[serde(default)]
    pub mapping_defaults: Option<MappingDefaults>,
    /// What the metrics mean (metrics objects; see `metrics::semantic`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semantics: Option<crate::metrics::semantic::ObjectSemantics>,
}

impl ObjectMeta {
    pub fn supports_delta(&self) -> bool {
        self.capabilities.contains(&Capability::Delta)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldMeta {
    pub name: String,
    #[serde(rename = "type")]
    pub field_type: String,
    pub nullable: bool,
    #[serde(default)]
    pub identifier: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Hierarchy {
    pub parent_key: String,
    pub child_predicate: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Filters {
    #[serde(default)]
    pub parent_only: Option<ParentOnly>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParentOnly {
    pub query: BTreeMap<String, String>,
    pub description: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeletionMarker {
    pub field: String,
    #[serde(default)]
    pub values: Vec<Value>,
    #[serde(default)]
    pub when_present: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MappingDefaults {
    pub mapping_schema_version: u32,
    pub target: String,
    pub fields: Vec<FieldPair>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FieldPair {
    pub source: String,
    pub target: String,
}

/// One loaded provider: typed view plus the raw document.
#[derive(Debug, Clone)]
pub struct Provider {
    pub meta: ProviderMeta,
    pub raw: Value,
    pub source: PathBuf,
}

impl Provider {
    pub fn object(&self, key: &str) -> Option<&ObjectMeta> {
        self.meta.objects.iter().find(|o| o.key == key)
    }

    /// Whether the required header `key` is marked secret (see
    /// [`RequiredHeader::secret`]).
    pub fn header_is_secret(&self, key: &str) -> bool {
        self.meta
            .required_headers
            .iter()
            .any(|h| h.secret && h.key.eq_ignore_ascii_case(key))
    }
}

#[derive(Debug, Clone, Default)]
pub struct ProviderRegistry {
    providers: BTreeMap<String, Arc<Provider>>,
}

impl ProviderRegistry {
    pub fn get(&self, key: &str) -> Option<&Arc<Provider>> {
        self.providers.get(key)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Provider>> {
        self.providers.values()
    }

    pub fn len(&self) -> usize {
        self.providers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.providers.is_empty()
    }

    /// Loads every `<dir>/<key>/provider.json`; all problems or none.
    pub fn load(dir: &Path) -> Result<Self, LoadReport> {
        let mut report = LoadReport::default();
        let validator = match compiled_schema() {
            Ok(v) => v,
            Err(message) => {
                report.push(PathBuf::from("provider.schema.json"), "", message);
                return Err(report);
            }
        };
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(err) => {
                report.push(
                    dir.to_owned(),
                    "",
                    format!("cannot read the providers folder: {err}"),
                );
                return Err(report);
            }
        };
        let mut folders: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .filter(|p| {
                !p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with('.'))
            })
            .collect();
        folders.sort();
        let mut providers = BTreeMap::new();
        for folder in folders {
            let file = folder.join(PROVIDER_FILE);
            let folder_name = folder
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_owned();
            if let Some(provider) = load_one(&validator, &file, &folder_name, &mut report) {
                providers.insert(provider.meta.key.clone(), Arc::new(provider));
            }
        }
        if report.errors.is_empty() {
            Ok(ProviderRegistry { providers })
        } else {
            Err(report)
        }
    }
}

fn compiled_schema() -> Result<jsonschema::Validator, String> {
    let schema: Value = serde_json::from_str(SCHEMA_JSON)
        .map_err(|e| format!("embedded schema is not JSON: {e}"))?;
    jsonschema::draft202012::options()
        .build(&schema)
        .map_err(|e| format!("embedded schema does not compile: {e}"))
}

fn load_one(
    validator: &jsonschema::Validator,
    file: &Path,
    folder_name: &str,
    report: &mut LoadReport,
) -> Option<Provider> {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(err) => {
            report.push(file.to_owned(), "", format!("cannot read: {err}"));
            return None;
        }
    };
    let raw: Value = match serde_json::from_str(&text) {
        Ok(raw) => raw,
        Err(err) => {
            report.push(
                file.to_owned(),
                "",
                format!(
                    "not valid JSON at line {} column {}: {err}",
                    err.line(),
                    err.column()
                ),
            );
            return None;
        }
    };
    let before = report.errors.len();
    for error in validator.iter_errors(&raw) {
        report.push(
            file.to_owned(),
            error.instance_path().as_str(),
            error.to_string(),
        );
    }
    if report.errors.len() > before {
        return None;
    }
    let meta: ProviderMeta = match serde_path_to_error::deserialize(&raw) {
        Ok(meta) => meta,
        Err(err) => {
            let pointer = format!("/{}", err.path().to_string().replace('.', "/"));
            report.push(file.to_owned(), &pointer, err.into_inner().to_string());
            return None;
        }
    };
    for (pointer, message) in semantic_errors(&meta, folder_name) {
        report.push(file.to_owned(), &pointer, message);
    }
    if report.errors.len() > before {
        return None;
    }
    Some(Provider {
        meta,
        raw,
        source: file.to_owned(),
    })
}

/// Words a provider key can't be: fixed routes sit where a provider key
/// goes (`/api/integrations/{provider}` beside `/api/integrations/health`,
/// `/data/{provider}/…` beside `/data/jobs/{id}`, the Integrations Hub pages
/// under `/integrations/…`), so such a provider would be shadowed. Taken from
/// the routes in `web::api` and `web::pages`, plus the ones the hub reserves.
pub const RESERVED_PROVIDER_KEYS: &[&str] = &[
    "capabilities",
    "catalog",
    "connect",
    "connections",
    "docs",
    "health",
    "jobs",
    "metrics",
    "openapi",
    "people",
    "projects",
    "providers",
    "settings",
    "test",
];

/// Rules JSON Schema can't state: cross-references between parts of a file.
fn semantic_errors(meta: &ProviderMeta, folder_name: &str) -> Vec<(String, String)> {
    let mut errors = Vec::new();
    if RESERVED_PROVIDER_KEYS.contains(&meta.key.as_str()) {
        errors.push((
            "/key".to_owned(),
            format!(
                "key {:?} is reserved: a fixed route uses that name; reserved keys are {}",
                meta.key,
                RESERVED_PROVIDER_KEYS.join(", ")
            ),
        ));
    }
    if meta.key != folder_name {
        errors.push((
            "/key".to_owned(),
            format!(
                "key {:?} must equal its folder name {folder_name:?}",
                meta.key
            ),
        ));
    }
    let defaults = meta.base_url_variants.iter().filter(|v| v.default).count();
    if defaults != 1 && meta.base_url_variants.len() > 1 {
        errors.push((
            "/baseUrlVariants".to_owned(),
            format!("exactly one variant must be marked default, found {defaults}"),
        ));
    }
    let mut variant_keys = BTreeSet::new();
    for (i, v) in meta.base_url_variants.iter().enumerate() {
        if !variant_keys.insert(&v.key) {
            errors.push((
                format!("/baseUrlVariants/{i}/key"),
                format!("duplicate variant key {:?}", v.key),
            ));
        }
    }
    let mut object_keys = BTreeSet::new();
    for (i, object) in meta.objects.iter().enumerate() {
        let at = |rest: &str| format!("/objects/{i}{rest}");
        if !object_keys.insert(object.key.as_str()) {
            errors.push((at("/key"), format!("duplicate object key {:?}", object.key)));
        }
        let names: BTreeSet<&str> = object.fields.iter().map(|f| f.name.as_str()).collect();
        if names.len() != object.fields.len() {
            errors.push((at("/fields"), "field names must be unique".to_owned()));
        }
        let identifiers = object.fields.iter().filter(|f| f.identifier).count();
        if object.kind == ObjectKind::Records && identifiers != 1 {
            errors.push((
                at("/fields"),
                format!("a records object needs exactly one identifier field, found {identifiers}"),
            ));
        }
        let mut must_exist = |pointer: String, name: &str, role: &str| {
            if !names.contains(name) {
                errors.push((
                    pointer,
                    format!("{role} {name:?} is not one of the object's fields"),
                ));
            }
        };
        for (j, m) in object.metrics.iter().enumerate() {
            must_exist(at(&format!("/metrics/{j}")), m, "metric");
        }
        for (j, d) in object.dimensions.iter().enumerate() {
            must_exist(at(&format!("/dimensions/{j}")), d, "dimension");
        }
        if let Some(field) = &object.delta_cursor_field {
            must_exist(at("/deltaCursorField"), field, "delta cursor field");
        }
        if let Some(h) = &object.hierarchy {
            must_exist(at("/hierarchy/parentKey"), &h.parent_key, "parent key");
        }
        if let Some(marker) = &object.deletion_marker {
            must_exist(
                at("/deletionMarker/field"),
                &marker.field,
                "deletion marker field",
            );
        }
        if let Some(mapping) = &object.mapping_defaults {
            for (j, pair) in mapping.fields.iter().enumerate() {
                must_exist(
                    at(&format!("/mappingDefaults/fields/{j}/source")),
                    &pair.source,
                    "mapped field",
                );
            }
        }
        if let Some(semantics) = &object.semantics {
            if object.kind != ObjectKind::Metrics {
                errors.push((
                    at("/semantics"),
                    format!(
                        "object {:?} of {}: semantics apply to metrics objects only",
                        object.key, meta.key
                    ),
                ));
            }
            if let Some(crate::metrics::semantic::CurrencySource::Field { field }) =
                &semantics.currency
                && !names.contains(field.as_str())
            {
                errors.push((
                    at("/semantics/currency/field"),
                    format!(
                        "object {:?} of {}: currency field {field:?} is not one of the object's fields",
                        object.key, meta.key
                    ),
                ));
            }
            for (pointer, message) in semantics.problems(&object.metrics, &object.dimensions) {
                errors.push((
                    at(&format!("/semantics{pointer}")),
                    format!("object {:?} of {}: {message}", object.key, meta.key),
                ));
            }
        }
    }
    errors
}

#[derive(Debug, Clone, Serialize)]
pub struct LoadError {
    pub file: PathBuf,
    pub pointer: String,
    pub message: String,
}

#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    pub errors: Vec<LoadError>,
}

impl LoadReport {
    fn push(&mut self, file: PathBuf, pointer: &str, message: String) {
        self.errors.push(LoadError {
            file,
            pointer: if pointer.is_empty() {
                "/".to_owned()
            } else {
                pointer.to_owned()
            },
            message,
        });
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} problem(s) in provider metadata:", self.errors.len())?;
        for e in &self.errors {
            writeln!(f, "  {}: {}: {}", e.file.display(), e.pointer, e.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for LoadReport {}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> ProviderRegistry {
        ProviderRegistry::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("providers"))
            .unwrap_or_else(|report| panic!("{report}"))
    }

    #[test]
    fn shipped_providers_load() {
        let registry = shipped();
        for key in [
            "google-analytics-4",
            "google-ads",
            "google-drive",
            "onedrive",
            "dropbox",
            "slack",
            "linear",
            "bqe-core",
            "notion",
            "asana",
            "github",
            "jira",
            "hubspot",
            "sandbox",
        ] {
            assert!(registry.get(key).is_some(), "{key} missing");
        }
    }

    #[test]
    fn shipped_metrics_objects_declare_semantics() {
        let registry = shipped();
        for provider in registry.iter() {
            for object in &provider.meta.objects {
                if object.kind == ObjectKind::Metrics {
                    assert!(
                        object.semantics.is_some(),
                        "{} {} has no semantics",
                        provider.meta.key,
                        object.key
                    );
                }
            }
        }
        let ads = registry.get("google-ads").unwrap();
        let cost = ads.meta.objects[0]
            .semantics
            .as_ref()
            .and_then(|s| s.metric("cost"))
            .unwrap();
        assert_eq!(cost.source, "cost_micros");
        assert_eq!(cost.scale, Some(0.000001));
    }

    #[test]
    fn unknown_keys_are_kept_in_raw() {
        let registry = shipped();
        let sandbox = registry.get("sandbox").unwrap();
        assert!(sandbox.raw.get("notes").is_some());
    }

    fn invalid_case(case: &str) -> LoadReport {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/providers-invalid")
            .join(case);
        ProviderRegistry::load(&dir).expect_err(case)
    }

    #[test]
    fn malformed_files_are_reported_precisely() {
        let cases: &[(&str, &str, &str)] = &[
            ("missing-header-fields", "/requiredHeaders/0", "label"),
            ("unknown-flow", "/auth/flows/0", ""),
            ("bad-url", "/auth/tokenUrl", ""),
            ("wrong-types", "/rateLimits/requestsPerMinute", ""),
            (
                "duplicate-object-keys",
                "/objects/1/key",
                "duplicate object key",
            ),
            ("key-mismatch", "/key", "folder name"),
            (
                "bad-semantics",
                "/objects/0/semantics/metrics/0/source",
                "object \"daily_metrics\" of bad-semantics: source \"visits\"",
            ),
            ("not-json", "/", "line"),
        ];
        for (case, pointer, words) in cases {
            let report = invalid_case(case);
            assert!(
                report
                    .errors
                    .iter()
                    .any(|e| e.pointer.starts_with(pointer) && e.message.contains(words)),
                "{case}: expected {pointer} / {words:?} in\n{report}"
            );
            assert!(
                report.to_string().contains(PROVIDER_FILE),
                "{case}: file path missing"
            );
        }
    }

    #[test]
    fn wrong_types_reports_every_error() {
        let report = invalid_case("wrong-types");
        assert!(
            report
                .errors
                .iter()
                .any(|e| e.pointer == "/auth/defaultScopes"),
            "{report}"
        );
        assert!(
            report
                .errors
                .iter()
                .any(|e| e.pointer == "/rateLimits/requestsPerMinute"),
            "{report}"
        );
    }

    #[test]
    fn missing_header_env_key_is_reported() {
        let report = invalid_case("missing-header-fields");
        assert!(
            report.errors.iter().any(|e| e.message.contains("envKey")),
            "{report}"
        );
    }
}
