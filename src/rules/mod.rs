//! Sync rules: for one connection's object, what to sync (fields, filters),
//! how (full or delta, conflict and deletion policies, dry run) and when (an
//! interval in minutes or a cron expression). Admins write them through the
//! API; the [`planner`] queues a sync job whenever one falls due.
//!
//! A rule is validated against `providers/rule.schema.json` (compiled in),
//! then against what the schema can't know: the object's declared fields
//! and capabilities. Errors carry the JSON pointer of the offending value.
//! The stored document is the normalised [`Rule`], every default spelled out,
//! so the worker reading `metadata.rule` never guesses.

pub mod planner;
pub mod service;
pub mod store;

use std::collections::BTreeSet;
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime, UtcOffset};

use crate::error::AppError;
use crate::input::{Patch, SingleLine, TextKind, problem_in_json};
use crate::providers::ObjectMeta;
use uuid::Uuid;

pub const SCHEMA_JSON: &str = include_str!("../../providers/rule.schema.json");

/// The schema's bounds for `interval.minutes`; cron is held to the minimum too.
pub const MIN_INTERVAL_MINUTES: u32 = 5;
pub const MAX_INTERVAL_MINUTES: u32 = 43_200;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum Interval {
    Minutes(u32),
    /// Five fields, evaluated in UTC.
    Cron(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Behaviour {
    Full,
    Delta,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConflictPolicy {
    #[default]
    Upsert,
    Skip,
    AutoCreate,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeletionPolicy {
    #[default]
    MarkInactiveKeepLink,
    Ignore,
    SoftDelete,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InitialSyncMode {
    #[default]
    FullOnce,
    DeltaOnlyAfterDate,
    DeltaOnlyFromNow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FilterOp {
    Eq,
    Ne,
    Gt,
    Gte,
    Lt,
    Lte,
    In,
    Contains,
    Exists,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    pub field: String,
    pub op: FilterOp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
}

impl Filter {
    /// Whether a stored record (its declared fields by name) passes.
    pub fn matches(&self, record: &Value) -> bool {
        use std::cmp::Ordering;
        let field = record.get(&self.field).filter(|v| !v.is_null());
        let order = |v: &Value| -> Option<Ordering> {
            match (field?, v) {
                (Value::Number(a), Value::Number(b)) => a.as_f64()?.partial_cmp(&b.as_f64()?),
                (Value::String(a), Value::String(b)) => Some(a.as_str().cmp(b.as_str())),
                _ => None,
            }
        };
        let equal = |v: &Value| match (field, v) {
            (Some(a), b) if a == b => true,
            // Providers send ids and numbers as strings or numbers alike.
            (Some(Value::String(a)), Value::Number(b))
            | (Some(Value::Number(b)), Value::String(a)) => *a == b.to_string(),
            _ => false,
        };
        let value = self.value.as_ref().unwrap_or(&Value::Null);
        match self.op {
            FilterOp::Eq => equal(value),
            FilterOp::Ne => !equal(value),
            FilterOp::Gt => order(value) == Some(Ordering::Greater),
            FilterOp::Gte => matches!(order(value), Some(Ordering::Greater | Ordering::Equal)),
            FilterOp::Lt => order(value) == Some(Ordering::Less),
            FilterOp::Lte => matches!(order(value), Some(Ordering::Less | Ordering::Equal)),
            FilterOp::In => value
                .as_array()
                .is_some_and(|items| items.iter().any(equal)),
            FilterOp::Contains => match (field, value) {
                (Some(Value::String(a)), Value::String(b)) => {
                    a.to_lowercase().contains(&b.to_lowercase())
                }
                (Some(Value::Array(items)), v) => items.contains(v),
                _ => false,
            },
            FilterOp::Exists => field.is_some() == value.as_bool().unwrap_or(true),
        }
    }
}

/// The part of a rule that scopes what a sync maps into local entities.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Scope {
    /// None or empty: every mapped field. (Options, so a null in job
    /// metadata reads as "none" instead of voiding the filters.)
    pub fields: Option<Vec<String>>,
    pub filters: Option<Vec<Filter>>,
}

impl Scope {
    pub fn admits(&self, record: &Value) -> bool {
        self.filters.iter().flatten().all(|f| f.matches(record))
    }

    pub fn keeps_field(&self, source: &str) -> bool {
        match &self.fields {
            Some(fields) if !fields.is_empty() => fields.iter().any(|f| f == source),
            _ => true,
        }
    }
}

fn yes() -> bool {
    true
}

/// A rule as stored and handed to the worker: every default explicit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    /// Empty: all of the object's fields.
    #[serde(default)]
    pub fields: Vec<String>,
    #[serde(default)]
    pub filters: Vec<Filter>,
    pub interval: Interval,
    pub behaviour: Behaviour,
    #[serde(default)]
    pub conflict_policy: ConflictPolicy,
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    #[serde(default)]
    pub include_subprojects: bool,
    #[serde(default)]
    pub initial_sync_mode: InitialSyncMode,
    /// UTC, `YYYY-MM-DDTHH:MM:SSZ`; set only with `delta_only_after_date`.
    #[serde(default)]
    pub initial_sync_since: Option<String>,
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default = "yes")]
    pub enabled: bool,
}

/// The body of `PUT …/rules`: a rule plus its envelope (the connection and
/// the revision you edited, which are not stored). It is what the handler
/// parses, so the documented type and the accepted body can't drift:
/// unknown keys are refused here, by name. `validate` then checks the
/// rule against `rule.schema.json` and the object.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleInput {
    /// Empty: all of the object's fields.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub fields: Vec<SingleLine>,
    #[serde(default)]
    pub filters: Vec<FilterInput>,
    pub interval: Interval,
    pub behaviour: Behaviour,
    #[serde(default)]
    pub conflict_policy: ConflictPolicy,
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    #[serde(default)]
    pub include_subprojects: bool,
    #[serde(default)]
    pub initial_sync_mode: InitialSyncMode,
    /// RFC 3339 date-time or `YYYY-MM-DD`; only with `delta_only_after_date`.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub initial_sync_since: Option<SingleLine>,
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The connection the rule is for; default: the one you'd use.
    #[serde(default)]
    pub connection_id: Option<Uuid>,
    /// The revision you edited; a newer one is a conflict (409).
    #[serde(default)]
    #[schema(value_type = Option<i32>, minimum = 1)]
    pub revision: Option<std::num::NonZeroU32>,
}

/// A filter as sent: the stored [`Filter`], refusing unknown keys.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FilterInput {
    #[schema(value_type = String)]
    pub field: SingleLine,
    pub op: FilterOp,
    /// Required except with `exists` (a boolean there).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub value: Patch<Value>,
}

impl RuleInput {
    /// The rule document `validate` checks (the envelope taken off), the
    /// connection and the expected revision.
    pub fn into_parts(self) -> (Value, Option<Uuid>, Option<std::num::NonZeroU32>) {
        let mut doc = serde_json::Map::new();
        let mut put = |key: &str, value: Value| {
            doc.insert(key.to_owned(), value);
        };
        put(
            "fields",
            Value::from(
                self.fields
                    .into_iter()
                    .map(String::from)
                    .collect::<Vec<_>>(),
            ),
        );
        let filters = self
            .filters
            .into_iter()
            .map(|f| {
                let mut filter = serde_json::Map::new();
                filter.insert("field".into(), Value::from(f.field.into_inner()));
                filter.insert(
                    "op".into(),
                    serde_json::to_value(f.op).unwrap_or(Value::Null),
                );
                // An explicit null is kept: the schema tells it from absent.
                match f.value {
                    Patch::Keep => {}
                    Patch::Clear => {
                        filter.insert("value".into(), Value::Null);
                    }
                    Patch::Set(v) => {
                        filter.insert("value".into(), v);
                    }
                }
                Value::Object(filter)
            })
            .collect::<Vec<_>>();
        put("filters", Value::from(filters));
        let enums = [
            ("interval", serde_json::to_value(&self.interval)),
            ("behaviour", serde_json::to_value(self.behaviour)),
            ("conflictPolicy", serde_json::to_value(self.conflict_policy)),
            ("deletionPolicy", serde_json::to_value(self.deletion_policy)),
            (
                "initialSyncMode",
                serde_json::to_value(self.initial_sync_mode),
            ),
        ];
        for (key, value) in enums {
            put(key, value.unwrap_or(Value::Null));
        }
        put("includeSubprojects", Value::Bool(self.include_subprojects));
        put(
            "initialSyncSince",
            self.initial_sync_since
                .map(|s| Value::from(s.into_inner()))
                .unwrap_or(Value::Null),
        );
        put("dryRun", Value::Bool(self.dry_run));
        put("enabled", Value::Bool(self.enabled));
        (Value::Object(doc), self.connection_id, self.revision)
    }
}

/// A problem with a submitted rule, at a JSON pointer into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    pub pointer: String,
    pub message: String,
}

impl RuleError {
    fn at(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        let pointer = pointer.into();
        RuleError {
            // The document itself: "/" reads better in an error than "".
            pointer: if pointer.is_empty() {
                "/".to_owned()
            } else {
                pointer
            },
            message: message.into(),
        }
    }
}

impl From<RuleError> for AppError {
    fn from(e: RuleError) -> Self {
        AppError::validation(e.pointer, e.message)
    }
}

/// A value the server changed rather than rejected, reported back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Adjustment {
    pub field: String,
    pub message: String,
}

#[derive(Debug, Clone)]
pub struct Validated {
    pub rule: Rule,
    pub adjusted: Vec<Adjustment>,
}

static VALIDATOR: LazyLock<Result<jsonschema::Validator, String>> = LazyLock::new(|| {
    let schema: Value = serde_json::from_str(SCHEMA_JSON)
        .map_err(|e| format!("embedded rule schema is not JSON: {e}"))?;
    jsonschema::draft202012::options()
        .build(&schema)
        .map_err(|e| format!("embedded rule schema does not compile: {e}"))
});

/// RFC 6901 escaping of one reference token.
fn escape_token(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// The first schema error, pointing at the value itself where the schema
/// reports its parent (a missing or unexpected property).
fn schema_error(doc: &Value) -> Result<Option<RuleError>, String> {
    let validator = VALIDATOR.as_ref().map_err(Clone::clone)?;
    let Some(error) = validator.iter_errors(doc).next() else {
        return Ok(None);
    };
    let mut pointer = error.instance_path().as_str().to_owned();
    match error.kind() {
        jsonschema::error::ValidationErrorKind::AdditionalProperties { unexpected } => {
            if let Some(name) = unexpected.first() {
                pointer = format!("{pointer}/{}", escape_token(name));
            }
        }
        jsonschema::error::ValidationErrorKind::Required { property } => {
            if let Some(name) = property.as_str() {
                pointer = format!("{pointer}/{}", escape_token(name));
            }
        }
        _ => {}
    }
    Ok(Some(RuleError::at(pointer, error.to_string())))
}

/// Parses `initialSyncSince`: RFC 3339, or a bare date for midnight UTC.
/// Returns the UTC form the high-water mark uses.
pub fn normalise_since(raw: &str) -> Option<OffsetDateTime> {
    let raw = raw.trim();
    let parsed = OffsetDateTime::parse(raw, &Rfc3339).ok().or_else(|| {
        Date::parse(
            raw,
            time::macros::format_description!("[year]-[month]-[day]"),
        )
        .ok()
        .map(|d| d.midnight().assume_utc())
    })?;
    let utc = parsed.to_offset(UtcOffset::UTC);
    Some(utc.replace_nanosecond(0).unwrap_or(utc))
}

/// `YYYY-MM-DDTHH:MM:SSZ`: how timestamps are written as high-water marks.
pub fn format_mark(at: OffsetDateTime) -> String {
    let utc = at.to_offset(UtcOffset::UTC);
    let utc = utc.replace_nanosecond(0).unwrap_or(utc);
    utc.format(&Rfc3339).unwrap_or_default()
}

/// Checks a submitted rule (without the request's `connectionId` and
/// `revision`) for `object`; `now` bounds `initialSyncSince`.
pub fn validate(
    doc: &Value,
    object: &ObjectMeta,
    now: OffsetDateTime,
) -> Result<Validated, RuleError> {
    match schema_error(doc) {
        Ok(Some(error)) => return Err(error),
        Ok(None) => {}
        // A broken embedded schema is a build defect; refuse rather than
        // accept unchecked input.
        Err(message) => return Err(RuleError::at("/", message)),
    }
    // Every text in a rule (fields, filter values, cron) is one line.
    if let Some((at, problem)) = problem_in_json(doc, TextKind::SingleLine) {
        return Err(RuleError::at(at, problem));
    }
    let mut rule: Rule = serde_path_to_error::deserialize(doc).map_err(|err| {
        let path = err.path().to_string();
        let pointer = if path == "." {
            String::new()
        } else {
            format!("/{}", path.replace('.', "/"))
        };
        RuleError::at(pointer, err.into_inner().to_string())
    })?;

    let declared: BTreeSet<&str> = object.fields.iter().map(|f| f.name.as_str()).collect();
    let unknown = |name: &str| {
        format!(
            "{name:?} is not a field of {}; expected one of {}",
            object.key,
            object
                .fields
                .iter()
                .map(|f| f.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    for (i, name) in rule.fields.iter().enumerate() {
        if !declared.contains(name.as_str()) {
            return Err(RuleError::at(format!("/fields/{i}"), unknown(name)));
        }
    }
    for (i, filter) in rule.filters.iter().enumerate() {
        if !declared.contains(filter.field.as_str()) {
            return Err(RuleError::at(
                format!("/filters/{i}/field"),
                unknown(&filter.field),
            ));
        }
    }
    if let Interval::Cron(expr) = &rule.interval {
        planner::check_cron(expr).map_err(|m| RuleError::at("/interval/cron", m))?;
    }
    if !object.supports_delta() {
        if rule.behaviour == Behaviour::Delta {
            return Err(RuleError::at(
                "/behaviour",
                format!("{} does not support delta reads; use \"full\"", object.key),
            ));
        }
        if rule.initial_sync_mode != InitialSyncMode::FullOnce {
            return Err(RuleError::at(
                "/initialSyncMode",
                format!(
                    "{} does not support delta reads, so it can only start with \"full_once\"",
                    object.key
                ),
            ));
        }
    }
    match (rule.initial_sync_mode, rule.initial_sync_since.as_deref()) {
        (InitialSyncMode::DeltaOnlyAfterDate, None) => {
            return Err(RuleError::at(
                "/initialSyncSince",
                "required when initialSyncMode is \"delta_only_after_date\"",
            ));
        }
        (InitialSyncMode::DeltaOnlyAfterDate, Some(raw)) => {
            let since = normalise_since(raw).ok_or_else(|| {
                RuleError::at(
                    "/initialSyncSince",
                    format!("{raw:?} is not an RFC 3339 date-time (or YYYY-MM-DD)"),
                )
            })?;
            if since > now {
                return Err(RuleError::at(
                    "/initialSyncSince",
                    "must not lie in the future; use \"delta_only_from_now\" to start from the first run",
                ));
            }
            rule.initial_sync_since = Some(format_mark(since));
        }
        (_, Some(_)) => {
            return Err(RuleError::at(
                "/initialSyncSince",
                "only used when initialSyncMode is \"delta_only_after_date\"; remove it or change the mode",
            ));
        }
        (_, None) => {}
    }

    let mut adjusted = Vec::new();
    if rule.include_subprojects
        && let Some(parent_only) = object.filters.as_ref().and_then(|f| f.parent_only.as_ref())
    {
        // The provider declares this object parent-only: sub-records are
        // never read, so the rule says so rather than promising them.
        rule.include_subprojects = false;
        adjusted.push(Adjustment {
            field: "/includeSubprojects".to_owned(),
            message: format!(
                "set to false: {} reads parents only ({})",
                object.key, parent_only.description
            ),
        });
    }
    Ok(Validated { rule, adjusted })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::ProviderRegistry;
    use serde_json::json;
    use std::path::Path;

    fn sandbox_object(key: &str) -> ObjectMeta {
        static REGISTRY: LazyLock<ProviderRegistry> = LazyLock::new(|| {
            ProviderRegistry::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("providers"))
                .unwrap_or_else(|report| panic!("{report}"))
        });
        REGISTRY
            .get("sandbox")
            .and_then(|p| p.object(key).cloned())
            .expect("sandbox object")
    }

    fn now() -> OffsetDateTime {
        time::macros::datetime!(2026-06-01 12:00:00 UTC)
    }

    fn check(doc: Value, object: &str) -> Result<Validated, RuleError> {
        validate(&doc, &sandbox_object(object), now())
    }

    fn pointer_of(doc: Value, object: &str) -> RuleError {
        check(doc.clone(), object).expect_err(&doc.to_string())
    }

    #[test]
    fn the_embedded_schema_compiles() {
        assert!(VALIDATOR.is_ok(), "{:?}", VALIDATOR.as_ref().err());
    }

    #[test]
    fn a_minimal_rule_gets_every_default() {
        let v = check(
            json!({"interval": {"minutes": 60}, "behaviour": "full"}),
            "people",
        )
        .unwrap();
        assert_eq!(
            serde_json::to_value(&v.rule).unwrap(),
            json!({
                "fields": [], "filters": [], "interval": {"minutes": 60}, "behaviour": "full",
                "conflictPolicy": "upsert", "deletionPolicy": "mark_inactive_keep_link",
                "includeSubprojects": false, "initialSyncMode": "full_once",
                "initialSyncSince": null, "dryRun": false, "enabled": true
            })
        );
        assert!(v.adjusted.is_empty());
    }

    #[test]
    fn a_full_rule_is_accepted_and_since_normalised_to_utc() {
        let v = check(
            json!({
                "fields": ["id", "name", "updated_at"],
                "filters": [
                    {"field": "status", "op": "in", "value": ["active", "on_hold"]},
                    {"field": "deleted", "op": "exists"}
                ],
                "interval": {"cron": "15 */6 * * *"},
                "behaviour": "delta",
                "conflictPolicy": "auto_create",
                "deletionPolicy": "soft_delete",
                "initialSyncMode": "delta_only_after_date",
                "initialSyncSince": "2024-03-01T12:30:45.123+02:00",
                "dryRun": true,
                "enabled": false
            }),
            "projects",
        )
        .unwrap();
        assert_eq!(
            v.rule.initial_sync_since.as_deref(),
            Some("2024-03-01T10:30:45Z")
        );
        assert_eq!(v.rule.interval, Interval::Cron("15 */6 * * *".into()));
        let v = check(
            json!({"interval": {"minutes": 5}, "behaviour": "delta",
                   "initialSyncMode": "delta_only_after_date", "initialSyncSince": "2024-03-01"}),
            "projects",
        )
        .unwrap();
        assert_eq!(
            v.rule.initial_sync_since.as_deref(),
            Some("2024-03-01T00:00:00Z")
        );
    }

    #[test]
    fn include_subprojects_is_forced_false_for_parent_only_objects() {
        let v = check(
            json!({"interval": {"minutes": 60}, "behaviour": "full", "includeSubprojects": true}),
            "projects",
        )
        .unwrap();
        assert!(!v.rule.include_subprojects);
        assert_eq!(v.adjusted.len(), 1);
        assert_eq!(v.adjusted[0].field, "/includeSubprojects");
        // An object without the filter keeps what was asked.
        let v = check(
            json!({"interval": {"minutes": 60}, "behaviour": "full", "includeSubprojects": true}),
            "people",
        )
        .unwrap();
        assert!(v.rule.include_subprojects && v.adjusted.is_empty());
    }

    #[test]
    fn invalid_rules_name_the_pointer() {
        let base = || json!({"interval": {"minutes": 60}, "behaviour": "full"});
        let with = |key: &str, value: Value| {
            let mut doc = base();
            doc[key] = value;
            doc
        };
        let cases: Vec<(Value, &str, &str, &str)> = vec![
            (
                with("behaviour", json!("sometimes")),
                "projects",
                "/behaviour",
                "sometimes",
            ),
            (
                with("conflictPolicy", json!("merge")),
                "projects",
                "/conflictPolicy",
                "merge",
            ),
            (
                with("fields", json!(["id", "name", "colour"])),
                "projects",
                "/fields/2",
                "\"colour\" is not a field of projects",
            ),
            (
                with("fields", json!(["id", "id"])),
                "projects",
                "/fields",
                "unique",
            ),
            (
                with(
                    "filters",
                    json!([{"field": "nope", "op": "eq", "value": 1}]),
                ),
                "projects",
                "/filters/0/field",
                "not a field",
            ),
            (
                with("filters", json!([{"field": "status", "op": "eq"}])),
                "projects",
                "/filters/0/value",
                "required",
            ),
            (
                with(
                    "filters",
                    json!([{"field": "status", "op": "in", "value": "x"}]),
                ),
                "projects",
                "/filters/0/value",
                "",
            ),
            (
                with("interval", json!({"minutes": 1})),
                "projects",
                "/interval/minutes",
                "minimum",
            ),
            (
                with("interval", json!({"minutes": 100000})),
                "projects",
                "/interval/minutes",
                "maximum",
            ),
            (
                with("interval", json!({"minutes": 60, "cron": "0 * * * *"})),
                "projects",
                "/interval",
                "",
            ),
            (
                with("interval", json!({"cron": "every day"})),
                "projects",
                "/interval/cron",
                "cron",
            ),
            (
                with("interval", json!({"cron": "* * * * *"})),
                "projects",
                "/interval/cron",
                "5 minutes",
            ),
            (
                with("interval", json!({"cron": "0 0 30 2 *"})),
                "projects",
                "/interval/cron",
                "never",
            ),
            (
                with("behaviour", json!("delta")),
                "people",
                "/behaviour",
                "delta",
            ),
            (
                with("initialSyncMode", json!("delta_only_from_now")),
                "people",
                "/initialSyncMode",
                "full_once",
            ),
            (
                with("initialSyncMode", json!("delta_only_after_date")),
                "projects",
                "/initialSyncSince",
                "required",
            ),
            (
                {
                    let mut d = with("initialSyncMode", json!("delta_only_after_date"));
                    d["initialSyncSince"] = json!("last tuesday");
                    d
                },
                "projects",
                "/initialSyncSince",
                "RFC 3339",
            ),
            (
                {
                    let mut d = with("initialSyncMode", json!("delta_only_after_date"));
                    d["initialSyncSince"] = json!("2030-01-01");
                    d
                },
                "projects",
                "/initialSyncSince",
                "future",
            ),
            (
                with("initialSyncSince", json!("2024-01-01")),
                "projects",
                "/initialSyncSince",
                "only used",
            ),
            (with("behavior", json!("full")), "projects", "/behavior", ""),
            (json!({"behaviour": "full"}), "projects", "/interval", ""),
            (json!([1, 2]), "projects", "/", ""),
            (with("dryRun", json!("yes")), "projects", "/dryRun", ""),
        ];
        for (doc, object, pointer, words) in cases {
            let err = pointer_of(doc.clone(), object);
            assert_eq!(err.pointer, pointer, "{doc}: {err:?}");
            assert!(err.message.contains(words), "{doc}: {err:?}");
        }
    }

    #[test]
    fn marks_are_fixed_width_utc() {
        let t = time::macros::datetime!(2026-01-02 03:04:05.678 +01:00);
        assert_eq!(format_mark(t), "2026-01-02T02:04:05Z");
    }

    #[test]
    fn filters_compare_like_the_provider_means() {
        let record =
            json!({"status": "active", "level": 2, "code": "P-1", "tags": ["a"], "none": null});
        let f = |field: &str, op: FilterOp, value: Value| Filter {
            field: field.into(),
            op,
            value: Some(value),
        };
        assert!(f("status", FilterOp::Eq, json!("active")).matches(&record));
        assert!(f("level", FilterOp::Eq, json!("2")).matches(&record));
        assert!(f("status", FilterOp::Ne, json!("inactive")).matches(&record));
        assert!(f("level", FilterOp::Gte, json!(2)).matches(&record));
        assert!(!f("level", FilterOp::Gt, json!(2)).matches(&record));
        assert!(f("code", FilterOp::Lt, json!("P-2")).matches(&record));
        assert!(f("status", FilterOp::In, json!(["x", "active"])).matches(&record));
        assert!(f("code", FilterOp::Contains, json!("p-")).matches(&record));
        assert!(f("tags", FilterOp::Contains, json!("a")).matches(&record));
        assert!(f("none", FilterOp::Exists, json!(false)).matches(&record));
        assert!(!f("missing", FilterOp::Exists, json!(true)).matches(&record));
        // Mismatched types never pass an ordering.
        assert!(!f("status", FilterOp::Gt, json!(1)).matches(&record));
        let scope = Scope {
            fields: Some(vec!["name".into()]),
            filters: Some(vec![f("status", FilterOp::Eq, json!("active"))]),
        };
        assert!(scope.admits(&record) && scope.keeps_field("name") && !scope.keeps_field("code"));
        let from_metadata: Scope = serde_json::from_value(
            json!({"fields": null, "filters": [{"field": "status", "op": "eq", "value": "x"}]}),
        )
        .unwrap();
        assert!(!from_metadata.admits(&record) && from_metadata.keeps_field("code"));
    }
}
