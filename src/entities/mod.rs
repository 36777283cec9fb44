//! Local entities: Plugboard's own `projects` and `people`, fed from
//! provider records through per-object field mappings.
//!
//! - [`mapping`]: the effective mapping of a provider object (a saved
//!   override or the provider's `mappingDefaults`), saving it, and
//!   [`mapping::ensure_mapping_current`], which blocks an object whose
//!   provider fields changed since the mapping was saved.
//! - [`apply`]: [`apply::apply_records`] maps stored records into entities
//!   under field policies, a conflict policy and a deletion policy.
//! - [`matching`]: initial matching of records to existing entities.
//! - [`service`]: reading and editing entities locally.
//!
//! An entity's mapped columns travel as JSON values in one canonical form
//! per column (see [`normalize`]), so the policy logic is written once for
//! both kinds.

pub mod apply;
pub mod mapping;
pub mod matching;
pub mod service;
pub mod store;

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use time::macros::format_description;
use time::{Date, OffsetDateTime};
use uuid::Uuid;

/// What a job for an object with an out-of-date mapping fails with.
pub const MAPPING_OUT_OF_DATE: &str = "Mappings out of date; review in Integrations Hub";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntityKind {
    Project,
    Person,
}

impl EntityKind {
    /// The `target` of a mapping that feeds this kind.
    pub fn from_target(target: &str) -> Option<EntityKind> {
        match target {
            "projects" => Some(EntityKind::Project),
            "people" => Some(EntityKind::Person),
            _ => None,
        }
    }

    pub fn target(self) -> &'static str {
        match self {
            EntityKind::Project => "projects",
            EntityKind::Person => "people",
        }
    }

    /// For messages: "project not found".
    pub fn noun(self) -> &'static str {
        match self {
            EntityKind::Project => "project",
            EntityKind::Person => "person",
        }
    }

    /// The columns a mapping may target (and a PATCH may edit).
    pub fn columns(self) -> &'static [&'static str] {
        match self {
            EntityKind::Project => &[
                "number",
                "name",
                "client_name",
                "status",
                "start_date",
                "end_date",
            ],
            EntityKind::Person => &["name", "email", "title", "active"],
        }
    }

    pub fn column(self, name: &str) -> Option<&'static str> {
        self.columns().iter().copied().find(|c| *c == name)
    }

    /// The column deactivation and reactivation write.
    pub fn status_column(self) -> &'static str {
        match self {
            EntityKind::Project => "status",
            EntityKind::Person => "active",
        }
    }

    /// The status column's value for active / inactive.
    pub fn status_value(self, active: bool) -> Value {
        match self {
            EntityKind::Project => Value::from(if active { "active" } else { "inactive" }),
            EntityKind::Person => Value::Bool(active),
        }
    }

    /// The column matched exactly before name (+ client) is tried.
    pub fn key_column(self) -> &'static str {
        match self {
            EntityKind::Project => "number",
            EntityKind::Person => "email",
        }
    }
}

/// How a mapped field follows the source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FieldPolicy {
    /// Overwrite unless the field was edited locally (the default).
    #[default]
    PreserveLocal,
    /// Always overwrite, local edits included.
    FollowSource,
    /// The source's first value is written (unless already edited
    /// locally); after that the field is left alone.
    WriteOnce,
}

impl FieldPolicy {
    pub const ALL: [FieldPolicy; 3] = [
        FieldPolicy::PreserveLocal,
        FieldPolicy::FollowSource,
        FieldPolicy::WriteOnce,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FieldPolicy::PreserveLocal => "preserve_local",
            FieldPolicy::FollowSource => "follow_source",
            FieldPolicy::WriteOnce => "write_once",
        }
    }

    pub fn parse(raw: &str) -> Option<FieldPolicy> {
        FieldPolicy::ALL.into_iter().find(|p| p.as_str() == raw)
    }

    /// Whether the source may write a field in this state.
    pub fn allows_write(self, state: &FieldState) -> bool {
        match self {
            FieldPolicy::FollowSource => true,
            FieldPolicy::PreserveLocal => !state.edited,
            FieldPolicy::WriteOnce => !state.sourced && !state.edited,
        }
    }
}

/// Per mapped field of an entity: the source's value beside the local one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FieldState {
    /// The provider's last value, as delivered (None: never delivered;
    /// `Some(Null)`: delivered as null).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub source: Option<Value>,
    /// Changed locally since the source last wrote it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub edited: bool,
    /// The source has written the local value at least once.
    #[serde(default, skip_serializing_if = "is_false")]
    pub sourced: bool,
}

fn is_false(b: &bool) -> bool {
    !b
}

/// A present key is `Some`, even when its value is null.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

pub type FieldStates = BTreeMap<String, FieldState>;

/// A project or person, its mapped columns as canonical JSON values.
#[derive(Debug, Clone, PartialEq)]
pub struct Entity {
    pub kind: EntityKind,
    pub id: Uuid,
    pub values: BTreeMap<String, Value>,
    pub field_state: FieldStates,
    pub deleted_at: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

impl Entity {
    /// A new entity with every column empty, active, named `name`.
    pub fn new(kind: EntityKind, name: &str, at: OffsetDateTime) -> Entity {
        let mut values: BTreeMap<String, Value> = kind
            .columns()
            .iter()
            .map(|c| ((*c).to_owned(), Value::Null))
            .collect();
        values.insert("name".into(), Value::from(name));
        values.insert(kind.status_column().into(), kind.status_value(true));
        Entity {
            kind,
            id: Uuid::now_v7(),
            values,
            field_state: FieldStates::new(),
            deleted_at: None,
            created_at: at,
            updated_at: at,
        }
    }

    pub fn value(&self, column: &str) -> &Value {
        self.values.get(column).unwrap_or(&Value::Null)
    }

    pub fn text(&self, column: &str) -> Option<String> {
        self.value(column).as_str().map(str::to_owned)
    }

    pub fn date(&self, column: &str) -> Option<Date> {
        self.value(column).as_str().and_then(parse_date)
    }

    pub fn is_active(&self) -> bool {
        match self.kind {
            EntityKind::Project => self.value("status") == "active",
            EntityKind::Person => self.value("active") == &Value::Bool(true),
        }
    }

    /// Sets a column; true when the value changed.
    pub fn set(&mut self, column: &str, value: Value) -> bool {
        if self.value(column) == &value {
            return false;
        }
        self.values.insert(column.to_owned(), value);
        true
    }

    /// The API's view: camelCase columns, the source values beside them.
    pub fn view(&self) -> Value {
        let mut out = Map::new();
        out.insert("id".into(), Value::from(self.id.to_string()));
        out.insert("kind".into(), Value::from(self.kind.noun()));
        for column in self.kind.columns() {
            out.insert(camel_case(column), self.value(column).clone());
        }
        let mut sources = Map::new();
        let mut edited = Vec::new();
        for (column, state) in &self.field_state {
            if let Some(source) = &state.source {
                sources.insert(camel_case(column), source.clone());
            }
            if state.edited {
                edited.push(Value::from(camel_case(column)));
            }
        }
        out.insert("sourceValues".into(), Value::Object(sources));
        out.insert("localEdits".into(), Value::Array(edited));
        out.insert("createdAt".into(), Value::from(rfc3339(self.created_at)));
        out.insert("updatedAt".into(), Value::from(rfc3339(self.updated_at)));
        Value::Object(out)
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// `client_name` → `clientName`.
pub fn camel_case(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    let mut upper = false;
    for ch in snake.chars() {
        if ch == '_' {
            upper = true;
        } else if upper {
            out.extend(ch.to_uppercase());
            upper = false;
        } else {
            out.push(ch);
        }
    }
    out
}

/// `clientName` (or `client_name`) → `client_name`.
pub fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for ch in name.chars() {
        if ch.is_ascii_uppercase() {
            out.push('_');
            out.push(ch.to_ascii_lowercase());
        } else {
            out.push(ch);
        }
    }
    out
}

/// `YYYY-MM-DD`, or the date part of an RFC 3339 timestamp.
pub fn parse_date(raw: &str) -> Option<Date> {
    let day = raw.get(..10)?;
    if raw
        .get(10..)
        .is_some_and(|rest| !rest.is_empty() && !rest.starts_with(['T', 't', ' ']))
    {
        return None;
    }
    Date::parse(day, format_description!("[year]-[month]-[day]")).ok()
}

pub fn format_date(d: Date) -> String {
    d.format(format_description!("[year]-[month]-[day]"))
        .unwrap_or_default()
}

/// Whether a provider's status value means active. Kept small on purpose:
/// booleans as they are; integers as BQE's enum (0 = Active, anything else
/// — estimate, complete, hold, inactive — is not active); a few common
/// words. Anything else is not understood (None) and leaves the local
/// status alone.
pub fn status_is_active(raw: &Value) -> Option<bool> {
    match raw {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => n.as_i64().map(|n| n == 0),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "active" | "open" | "in progress" | "in_progress" | "started" | "planned"
            | "current" | "true" => Some(true),
            "inactive" | "closed" | "complete" | "completed" | "done" | "canceled"
            | "cancelled" | "archived" | "hold" | "on hold" | "paused" | "false" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// A provider's value in the column's canonical local form; None when it
/// can't be one (the local value is then left alone; the source value is
/// still kept).
pub fn normalize(kind: EntityKind, column: &str, raw: &Value) -> Option<Value> {
    let text = |v: &Value| -> Option<Value> {
        match v {
            Value::Null => Some(Value::Null),
            Value::String(s) if s.trim().is_empty() => Some(Value::Null),
            Value::String(s) => Some(Value::from(s.trim())),
            Value::Number(n) => Some(Value::from(n.to_string())),
            _ => None,
        }
    };
    match column {
        // An entity always has a name: an empty one isn't taken.
        "name" => text(raw).filter(|v| !v.is_null()),
        "status" | "active" => status_is_active(raw).map(|a| kind.status_value(a)),
        "start_date" | "end_date" => match raw {
            Value::Null => Some(Value::Null),
            Value::String(s) if s.trim().is_empty() => Some(Value::Null),
            Value::String(s) => parse_date(s.trim()).map(|d| Value::from(format_date(d))),
            _ => None,
        },
        _ => text(raw),
    }
}

/// A locally entered value in the column's canonical form, or why not.
pub fn parse_local(kind: EntityKind, column: &str, raw: &Value) -> Result<Value, String> {
    const MAX: usize = 300;
    let optional_text = |v: &Value| -> Result<Value, String> {
        match v {
            Value::Null => Ok(Value::Null),
            Value::String(s) if s.trim().is_empty() => Ok(Value::Null),
            Value::String(s) if s.chars().count() > MAX || s.chars().any(char::is_control) => {
                Err(format!("must be at most {MAX} printable characters"))
            }
            Value::String(s) => Ok(Value::from(s.trim())),
            _ => Err("expected a string or null".into()),
        }
    };
    if kind.column(column).is_none() {
        return Err(format!("{column} is not a field of {}", kind.target()));
    }
    match column {
        "name" => match optional_text(raw)? {
            Value::Null => Err("must not be empty".into()),
            v => Ok(v),
        },
        "email" => match optional_text(raw)? {
            Value::String(s) if !s.contains('@') || s.contains(' ') => {
                Err("expected an email address".into())
            }
            v => Ok(v),
        },
        "status" => match raw.as_str() {
            Some("active") | Some("inactive") => Ok(raw.clone()),
            _ => Err("expected \"active\" or \"inactive\"".into()),
        },
        "active" => match raw {
            Value::Bool(_) => Ok(raw.clone()),
            _ => Err("expected true or false".into()),
        },
        "start_date" | "end_date" => match raw {
            Value::Null => Ok(Value::Null),
            Value::String(s) if s.len() == 10 && parse_date(s).is_some() => Ok(raw.clone()),
            _ => Err("expected a date as YYYY-MM-DD, or null".into()),
        },
        _ => optional_text(raw),
    }
}

/// One mapped field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MappingField {
    pub source: String,
    pub target: String,
    #[serde(default)]
    pub policy: FieldPolicy,
}

/// What a stored record's link says was last applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub provider: String,
    pub object: String,
    pub external_id: String,
    pub connection_id: Uuid,
    pub kind: EntityKind,
    pub entity_id: Uuid,
    pub applied_hash: Option<String>,
    pub applied_deleted: bool,
    pub applied_mapping: Option<String>,
    pub inactive_by_source: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConflictPolicy {
    /// Link to an existing entity found by the matching rules, else create.
    #[default]
    Upsert,
    /// Leave unlinked records for review (matching).
    Skip,
    /// Create an entity for every unlinked record.
    AutoCreate,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeletionPolicy {
    /// Deactivate the entity, keep the link, stop field updates.
    #[default]
    MarkInactiveKeepLink,
    /// Deletion changes nothing locally.
    Ignore,
    /// Soft-delete the entity (hidden from the API); the link stays.
    SoftDelete,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplyOptions {
    #[serde(default)]
    pub conflict_policy: ConflictPolicy,
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// Count what would happen; write nothing.
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApplyCounts {
    /// Entities created (and linked).
    pub created: u64,
    /// Linked entities whose local values changed.
    pub updated: u64,
    /// Records looked at that changed nothing locally.
    pub unchanged: u64,
    /// Unlinked records linked to an existing entity (conflict policy upsert).
    pub linked: u64,
    /// Records left alone: waiting for review, ambiguous, or another
    /// connection's.
    pub skipped: u64,
    /// Entities set inactive by deletion policy mark_inactive_keep_link.
    pub deactivated: u64,
    /// Entities soft-deleted by deletion policy soft_delete.
    pub deleted: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn status_normalisation() {
        assert_eq!(status_is_active(&json!(true)), Some(true));
        assert_eq!(status_is_active(&json!(false)), Some(false));
        assert_eq!(status_is_active(&json!(0)), Some(true), "BQE 0 = Active");
        assert_eq!(status_is_active(&json!(4)), Some(false), "BQE 4 = Inactive");
        assert_eq!(status_is_active(&json!(3)), Some(false), "BQE 3 = Hold");
        assert_eq!(status_is_active(&json!(" Active ")), Some(true));
        assert_eq!(status_is_active(&json!("inactive")), Some(false));
        assert_eq!(status_is_active(&json!("Completed")), Some(false));
        assert_eq!(status_is_active(&json!("whatever")), None);
        assert_eq!(status_is_active(&json!(1.5)), None);
        assert_eq!(status_is_active(&Value::Null), None);
        assert_eq!(
            normalize(EntityKind::Project, "status", &json!(0)),
            Some(json!("active"))
        );
        assert_eq!(
            normalize(EntityKind::Person, "active", &json!("inactive")),
            Some(json!(false))
        );
    }

    #[test]
    fn value_normalisation() {
        let p = EntityKind::Project;
        assert_eq!(normalize(p, "number", &json!(" P-1 ")), Some(json!("P-1")));
        assert_eq!(normalize(p, "number", &json!(42)), Some(json!("42")));
        assert_eq!(normalize(p, "number", &json!("")), Some(Value::Null));
        assert_eq!(normalize(p, "number", &json!({"a": 1})), None);
        assert_eq!(
            normalize(p, "name", &Value::Null),
            None,
            "names can't be emptied"
        );
        assert_eq!(
            normalize(p, "start_date", &json!("2024-03-01T10:00:00Z")),
            Some(json!("2024-03-01"))
        );
        assert_eq!(normalize(p, "end_date", &json!("2024-13-01")), None);
        assert_eq!(normalize(p, "end_date", &json!("2024-03-01x")), None);
        assert_eq!(normalize(p, "end_date", &Value::Null), Some(Value::Null));
    }

    #[test]
    fn local_input_is_checked_per_column() {
        let p = EntityKind::Project;
        assert_eq!(parse_local(p, "name", &json!(" X ")), Ok(json!("X")));
        assert!(parse_local(p, "name", &json!("  ")).is_err());
        assert!(parse_local(p, "status", &json!("paused")).is_err());
        assert!(parse_local(p, "start_date", &json!("2024-02-30")).is_err());
        assert!(parse_local(p, "start_date", &json!("2024-02-03T00:00:00Z")).is_err());
        assert_eq!(parse_local(p, "client_name", &json!("")), Ok(Value::Null));
        assert!(parse_local(p, "client_name", &json!(7)).is_err());
        assert!(
            parse_local(p, "email", &json!("a@b")).is_err(),
            "not a project field"
        );
        assert!(parse_local(EntityKind::Person, "email", &json!("nope")).is_err());
        assert!(parse_local(EntityKind::Person, "active", &json!("yes")).is_err());
    }

    #[test]
    fn policies_decide_on_the_field_state() {
        let fresh = FieldState::default();
        let edited = FieldState {
            edited: true,
            ..FieldState::default()
        };
        let sourced = FieldState {
            sourced: true,
            ..FieldState::default()
        };
        use FieldPolicy::*;
        assert!(PreserveLocal.allows_write(&fresh));
        assert!(PreserveLocal.allows_write(&sourced));
        assert!(!PreserveLocal.allows_write(&edited));
        assert!(FollowSource.allows_write(&edited));
        assert!(WriteOnce.allows_write(&fresh));
        assert!(!WriteOnce.allows_write(&sourced));
        assert!(!WriteOnce.allows_write(&edited));
    }

    #[test]
    fn field_state_keeps_a_null_source() {
        let states: FieldStates =
            serde_json::from_value(json!({"a": {"source": null}, "b": {"edited": true}})).unwrap();
        assert_eq!(states["a"].source, Some(Value::Null));
        assert_eq!(states["b"].source, None);
        let back = serde_json::to_value(&states).unwrap();
        assert_eq!(back, json!({"a": {"source": null}, "b": {"edited": true}}));
    }

    #[test]
    fn names_convert_between_cases() {
        assert_eq!(camel_case("client_name"), "clientName");
        assert_eq!(snake_case("clientName"), "client_name");
        assert_eq!(snake_case("client_name"), "client_name");
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use crate::testing::header_text;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_provider_date_text_parses_or_is_refused(raw in header_text()) {
            let _ = parse_date(&raw);
        }
    }
}
