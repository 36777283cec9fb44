//! A form rendered from a JSON Schema, and the posted form read back into
//! JSON. Covers the subset our schemas use (`providers/rule.schema.json`):
//! enum → select, boolean → checkbox, array of enum (or of strings the
//! caller offers choices for) → checkbox list, `oneOf` (or an object that
//! takes exactly one of its properties) → radios plus the chosen branch's
//! fields, `format: date-time` → datetime-local, integer/number limits →
//! min/max, arrays of objects → rows, anything else → a text input.
//!
//! Every input is named by the JSON pointer of its value (`/interval/cron`,
//! `/filters/0/op`), so an error the server reports by pointer lands next
//! to its field with [`SchemaForm::field_for_pointer`].

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// Choices the schema doesn't hold but the caller knows (an object's fields
/// from the provider catalog), by pointer pattern: `*` stands for a row
/// index (`/filters/*/field`).
pub type Options = BTreeMap<String, Vec<String>>;

#[derive(Debug, Clone, PartialEq)]
pub enum Widget {
    Text {
        max_length: Option<u64>,
    },
    /// `integer` (step 1) or `number`.
    Number {
        integer: bool,
        min: Option<String>,
        max: Option<String>,
    },
    Checkbox,
    Select {
        options: Vec<String>,
        /// Offers an empty choice (the value left out).
        blank: bool,
    },
    /// Checkboxes, one per option; the value is the array of the checked.
    MultiSelect {
        options: Vec<String>,
    },
    /// A UTC date-time (`YYYY-MM-DDTHH:MM:SSZ` in the JSON).
    DateTime,
    /// Radios choosing one branch; only the chosen branch's fields are read.
    Choice {
        branches: Vec<Branch>,
    },
    /// An array of objects: one row of fields per item.
    Rows {
        rows: Vec<Vec<Field>>,
    },
    /// Any JSON value: typed as JSON, or as plain text for a string.
    Json,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Branch {
    /// The radio's value: the branch's property key.
    pub key: String,
    pub label: String,
    pub fields: Vec<Field>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    /// The JSON pointer of the value; also the input's name.
    pub name: String,
    pub label: String,
    pub hint: String,
    pub required: bool,
    pub nullable: bool,
    pub default: Option<Value>,
    pub widget: Widget,
    /// Shown but not editable, with why (in `hint`).
    pub disabled: bool,
}

impl Field {
    /// The input's id (pointers hold `/`, ids read better without).
    pub fn id(&self) -> String {
        id_of(&self.name)
    }
}

/// What templates read of a field (askama compares strings more easily
/// than it matches enums).
impl Field {
    pub fn kind(&self) -> &'static str {
        match &self.widget {
            Widget::Text { .. } => "text",
            Widget::Number { .. } => "number",
            Widget::Checkbox => "checkbox",
            Widget::Select { .. } => "select",
            Widget::MultiSelect { .. } => "multi",
            Widget::DateTime => "datetime",
            Widget::Choice { .. } => "choice",
            Widget::Rows { .. } => "rows",
            Widget::Json => "json",
        }
    }

    pub fn options(&self) -> &[String] {
        match &self.widget {
            Widget::Select { options, .. } | Widget::MultiSelect { options } => options,
            _ => &[],
        }
    }

    pub fn blank(&self) -> bool {
        matches!(self.widget, Widget::Select { blank: true, .. })
    }

    pub fn min(&self) -> &str {
        match &self.widget {
            Widget::Number { min: Some(m), .. } => m,
            _ => "",
        }
    }

    pub fn max(&self) -> &str {
        match &self.widget {
            Widget::Number { max: Some(m), .. } => m,
            _ => "",
        }
    }

    pub fn step(&self) -> &'static str {
        match &self.widget {
            Widget::Number { integer: false, .. } => "any",
            _ => "1",
        }
    }

    pub fn max_length(&self) -> String {
        match &self.widget {
            Widget::Text {
                max_length: Some(m),
            } => m.to_string(),
            _ => String::new(),
        }
    }

    pub fn branches(&self) -> &[Branch] {
        match &self.widget {
            Widget::Choice { branches } => branches,
            _ => &[],
        }
    }

    pub fn rows(&self) -> &[Vec<Field>] {
        match &self.widget {
            Widget::Rows { rows } => rows,
            _ => &[],
        }
    }
}

pub fn id_of(name: &str) -> String {
    let cleaned: String = name
        .trim_start_matches('/')
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("f-{cleaned}")
}

/// A form: its top-level fields in schema order.
#[derive(Debug, Clone, PartialEq)]
pub struct SchemaForm {
    pub fields: Vec<Field>,
}

fn escape_token(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// Resolves a local `$ref` (`#/$defs/x`) against the root schema.
fn resolve<'a>(root: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => r
            .strip_prefix('#')
            .and_then(|p| root.pointer(p))
            .unwrap_or(schema),
        None => schema,
    }
}

fn enum_options(schema: &Value) -> Option<Vec<String>> {
    schema.get("enum").and_then(Value::as_array).map(|values| {
        values
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            .collect()
    })
}

fn types(schema: &Value) -> Vec<&str> {
    match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

fn limit(schema: &Value, key: &str) -> Option<String> {
    schema
        .get(key)
        .filter(|v| v.is_number())
        .map(Value::to_string)
}

/// Matches a pointer against an options pattern (`*` for one token).
fn pattern_matches(pattern: &str, pointer: &str) -> bool {
    let (p, n): (Vec<&str>, Vec<&str>) =
        (pattern.split('/').collect(), pointer.split('/').collect());
    p.len() == n.len() && p.iter().zip(&n).all(|(a, b)| *a == "*" || a == b)
}

fn offered<'a>(options: &'a Options, pointer: &str) -> Option<&'a Vec<String>> {
    options
        .iter()
        .find(|(pattern, _)| pattern_matches(pattern, pointer))
        .map(|(_, v)| v)
}

struct Builder<'a> {
    root: &'a Value,
    options: &'a Options,
    /// The document whose array lengths decide how many rows are shown.
    doc: &'a Value,
}

impl Builder<'_> {
    fn object_fields(&self, schema: &Value, base: &str) -> Vec<Field> {
        let required: Vec<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let Some(props) = schema.get("properties").and_then(Value::as_object) else {
            return Vec::new();
        };
        let mut fields: Vec<Field> = props
            .iter()
            .map(|(key, sub)| {
                let name = format!("{base}/{}", escape_token(key));
                self.field(sub, name, key, required.contains(&key.as_str()))
            })
            .collect();
        // JSON objects keep no order here: what must be filled in comes first.
        fields.sort_by_key(|f| !f.required);
        fields
    }

    fn field(&self, schema: &Value, name: String, key: &str, required: bool) -> Field {
        let schema = resolve(self.root, schema);
        let label = schema
            .get("title")
            .and_then(Value::as_str)
            .map_or_else(|| key.to_owned(), str::to_owned);
        let hint = schema
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let ts = types(schema);
        let nullable = ts.contains(&"null");
        let widget = self.widget(schema, &name, &ts, required);
        Field {
            name,
            label,
            hint,
            required,
            nullable,
            default: schema.get("default").cloned(),
            widget,
            disabled: false,
        }
    }

    fn widget(&self, schema: &Value, name: &str, ts: &[&str], required: bool) -> Widget {
        if let Some(options) = enum_options(schema) {
            return Widget::Select {
                blank: !required && schema.get("default").is_none(),
                options,
            };
        }
        if let Some(branches) = schema.get("oneOf").and_then(Value::as_array) {
            return Widget::Choice {
                branches: branches
                    .iter()
                    .enumerate()
                    .map(|(i, b)| {
                        let b = resolve(self.root, b);
                        let fields = self.object_fields(b, name);
                        let key = b
                            .get("required")
                            .and_then(|r| r.get(0))
                            .and_then(Value::as_str)
                            .map_or_else(|| i.to_string(), str::to_owned);
                        let label = b
                            .get("title")
                            .and_then(Value::as_str)
                            .map_or_else(|| key.clone(), str::to_owned);
                        Branch { key, label, fields }
                    })
                    .collect(),
            };
        }
        if ts.contains(&"boolean") {
            return Widget::Checkbox;
        }
        if ts.contains(&"integer") || ts.contains(&"number") {
            return Widget::Number {
                integer: ts.contains(&"integer"),
                min: limit(schema, "minimum"),
                max: limit(schema, "maximum"),
            };
        }
        if ts.contains(&"object") {
            // Exactly one of its properties: a choice between them.
            if schema.get("maxProperties").and_then(Value::as_u64) == Some(1)
                && let Some(props) = schema.get("properties").and_then(Value::as_object)
            {
                return Widget::Choice {
                    branches: props
                        .iter()
                        .map(|(key, sub)| {
                            let field_name = format!("{name}/{}", escape_token(key));
                            // Not `required`: the other branch's input stays empty.
                            let field = self.field(sub, field_name, key, false);
                            Branch {
                                key: key.clone(),
                                label: field.label.clone(),
                                fields: vec![field],
                            }
                        })
                        .collect(),
                };
            }
        }
        if ts.contains(&"array")
            && let Some(items) = schema.get("items")
        {
            let items = resolve(self.root, items);
            if let Some(options) =
                enum_options(items).or_else(|| offered(self.options, name).cloned())
            {
                return Widget::MultiSelect { options };
            }
            if types(items).contains(&"object") || items.get("properties").is_some() {
                let existing = self
                    .doc
                    .pointer(name)
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len);
                let max = schema
                    .get("maxItems")
                    .and_then(Value::as_u64)
                    .and_then(|m| usize::try_from(m).ok())
                    .unwrap_or(usize::MAX);
                // The items there are and one blank row to add another.
                let count = existing.saturating_add(1).min(max);
                return Widget::Rows {
                    rows: (0..count)
                        .map(|i| {
                            let mut fields = self.object_fields(items, &format!("{name}/{i}"));
                            // A row is read only when something was chosen
                            // or typed, so its selects start blank.
                            for f in &mut fields {
                                f.required = false;
                                if let Widget::Select { blank, .. } = &mut f.widget {
                                    *blank = true;
                                }
                            }
                            fields
                        })
                        .collect(),
                };
            }
        }
        if let Some(options) = offered(self.options, name) {
            return Widget::Select {
                options: options.clone(),
                blank: true,
            };
        }
        if ts.contains(&"string") {
            if schema.get("format").and_then(Value::as_str) == Some("date-time") {
                return Widget::DateTime;
            }
            return Widget::Text {
                max_length: schema.get("maxLength").and_then(Value::as_u64),
            };
        }
        Widget::Json
    }
}

impl SchemaForm {
    /// The form of an object `schema` for editing `doc` (which decides how
    /// many rows array-of-object fields get).
    pub fn build(schema: &Value, options: &Options, doc: &Value) -> SchemaForm {
        let builder = Builder {
            root: schema,
            options,
            doc,
        };
        SchemaForm {
            fields: builder.object_fields(schema, ""),
        }
    }

    /// Every field, nested ones included, depth first.
    pub fn all_fields(&self) -> Vec<&Field> {
        fn walk<'a>(fields: &'a [Field], out: &mut Vec<&'a Field>) {
            for f in fields {
                out.push(f);
                match &f.widget {
                    Widget::Choice { branches } => {
                        branches.iter().for_each(|b| walk(&b.fields, out));
                    }
                    Widget::Rows { rows } => rows.iter().for_each(|r| walk(r, out)),
                    _ => {}
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.fields, &mut out);
        out
    }

    fn field_mut(&mut self, name: &str) -> Option<&mut Field> {
        fn walk<'a>(fields: &'a mut [Field], name: &str) -> Option<&'a mut Field> {
            for f in fields {
                if f.name == name {
                    return Some(f);
                }
                let found = match &mut f.widget {
                    Widget::Choice { branches } => {
                        branches.iter_mut().find_map(|b| walk(&mut b.fields, name))
                    }
                    Widget::Rows { rows } => rows.iter_mut().find_map(|r| walk(r, name)),
                    _ => None,
                };
                if found.is_some() {
                    return found;
                }
            }
            None
        }
        walk(&mut self.fields, name)
    }

    /// Shows a field but keeps it from being changed, saying why.
    pub fn disable(&mut self, name: &str, why: &str) {
        if let Some(f) = self.field_mut(name) {
            f.disabled = true;
            f.hint = why.to_owned();
        }
    }

    /// The field an error at `pointer` belongs to: the field itself, or the
    /// nearest one holding it (`/fields/3` → the `/fields` checkbox list).
    pub fn field_for_pointer(&self, pointer: &str) -> Option<String> {
        self.all_fields()
            .into_iter()
            .filter(|f| {
                pointer == f.name
                    || pointer
                        .strip_prefix(f.name.as_str())
                        .is_some_and(|rest| rest.starts_with('/'))
            })
            .max_by_key(|f| f.name.len())
            .map(|f| f.name.clone())
    }

    /// The form's values for `doc`: (input name, value) pairs as a browser
    /// would post them; a checked checkbox is `true`.
    pub fn values(&self, doc: &Value) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for f in &self.fields {
            field_values(f, doc, &mut out);
        }
        out
    }

    /// Reads a posted form back into JSON. Values that don't parse as
    /// their type are kept as text, so the schema check names the field
    /// and the form shows what was typed.
    pub fn parse(&self, posted: &[(String, String)]) -> Value {
        let mut doc = Map::new();
        for f in &self.fields {
            if let Some(v) = parse_field(f, posted) {
                doc.insert(last_token(&f.name), v);
            }
        }
        Value::Object(doc)
    }
}

fn last_token(pointer: &str) -> String {
    pointer
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .replace("~1", "/")
        .replace("~0", "~")
}

fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn field_values(f: &Field, doc: &Value, out: &mut Vec<(String, String)>) {
    let value = doc.pointer(&f.name).or(f.default.as_ref());
    let mut push = |v: String| out.push((f.name.clone(), v));
    match &f.widget {
        Widget::Checkbox => {
            if value.and_then(Value::as_bool) == Some(true) {
                push("true".to_owned());
            }
        }
        Widget::MultiSelect { .. } => {
            for item in value.and_then(Value::as_array).into_iter().flatten() {
                push(text_of(item));
            }
        }
        Widget::DateTime => {
            // datetime-local has no zone: the form says UTC and drops the Z.
            if let Some(v) = value.filter(|v| !v.is_null()) {
                let text = text_of(v);
                push(
                    text.strip_suffix('Z')
                        .map_or_else(|| text.clone(), str::to_owned),
                );
            }
        }
        Widget::Choice { branches } => {
            let chosen = value.and_then(Value::as_object).and_then(|o| {
                branches.iter().find(|b| {
                    b.fields
                        .iter()
                        .any(|f| o.contains_key(&last_token(&f.name)))
                })
            });
            if let Some(b) = chosen {
                push(b.key.clone());
                for sub in &b.fields {
                    field_values(sub, doc, out);
                }
            }
        }
        Widget::Rows { rows } => {
            for row in rows {
                for sub in row {
                    field_values(sub, doc, out);
                }
            }
        }
        Widget::Json => {
            if let Some(v) = value {
                push(json_text(v));
            }
        }
        Widget::Text { .. } | Widget::Number { .. } | Widget::Select { .. } => {
            if let Some(v) = value.filter(|v| !v.is_null()) {
                push(text_of(v));
            }
        }
    }
}

/// A free value as typed: a string as itself unless it would read back as
/// other JSON (`5`, `true`), which is then quoted.
fn json_text(value: &Value) -> String {
    match value {
        Value::String(s) if serde_json::from_str::<Value>(s).is_err() => s.clone(),
        other => other.to_string(),
    }
}

fn posted_first<'a>(posted: &'a [(String, String)], name: &str) -> Option<&'a str> {
    posted
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn parse_field(f: &Field, posted: &[(String, String)]) -> Option<Value> {
    let raw = posted_first(posted, &f.name);
    let typed = raw.map(str::trim).filter(|v| !v.is_empty());
    let empty = || f.nullable.then_some(Value::Null);
    match &f.widget {
        // Every checkbox is on the form, so one not posted is unchecked.
        Widget::Checkbox => Some(Value::Bool(
            raw.is_some_and(|v| matches!(v, "true" | "on" | "yes")),
        )),
        Widget::MultiSelect { .. } => Some(Value::Array(
            posted
                .iter()
                .filter(|(k, v)| k == &f.name && !v.is_empty())
                .map(|(_, v)| Value::String(v.clone()))
                .collect(),
        )),
        Widget::Number { integer, .. } => match typed {
            None => empty(),
            Some(t) => Some(
                if *integer {
                    t.parse::<i64>().ok().map(Value::from)
                } else {
                    t.parse::<f64>()
                        .ok()
                        .and_then(serde_json::Number::from_f64)
                        .map(Value::Number)
                }
                .unwrap_or_else(|| Value::String(t.to_owned())),
            ),
        },
        Widget::DateTime => match typed {
            None => empty(),
            Some(t) => Some(Value::String(datetime_to_utc(t))),
        },
        Widget::Choice { branches } => {
            let key = typed?;
            let b = branches.iter().find(|b| b.key == key)?;
            let mut obj = Map::new();
            for sub in &b.fields {
                if let Some(v) = parse_field(sub, posted) {
                    obj.insert(last_token(&sub.name), v);
                }
            }
            Some(Value::Object(obj))
        }
        Widget::Rows { rows } => Some(Value::Array(
            rows.iter()
                .filter(|row| {
                    row.iter().any(|sub| {
                        posted_first(posted, &sub.name).is_some_and(|v| !v.trim().is_empty())
                    })
                })
                .map(|row| {
                    let mut obj = Map::new();
                    for sub in row {
                        if let Some(v) = parse_field(sub, posted) {
                            obj.insert(last_token(&sub.name), v);
                        }
                    }
                    Value::Object(obj)
                })
                .collect(),
        )),
        Widget::Json => typed.map(|t| {
            serde_json::from_str::<Value>(t).unwrap_or_else(|_| Value::String(t.to_owned()))
        }),
        Widget::Text { .. } | Widget::Select { .. } => match raw.filter(|v| !v.is_empty()) {
            None => empty(),
            Some(v) => Some(Value::String(v.to_owned())),
        },
    }
}

/// `YYYY-MM-DDTHH:MM[:SS]` from a datetime-local input, read as UTC;
/// anything else is passed on as typed for the server to judge.
fn datetime_to_utc(typed: &str) -> String {
    let is_local = typed.len() >= 16
        && typed.as_bytes().get(10) == Some(&b'T')
        && !typed.ends_with('Z')
        && !typed
            .get(10..)
            .is_some_and(|rest| rest.contains(['+', '-']));
    match (is_local, typed.len()) {
        (true, 16) => format!("{typed}:00Z"),
        (true, _) => format!("{typed}Z"),
        (false, _) => typed.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule_schema() -> Value {
        serde_json::from_str(crate::rules::SCHEMA_JSON).unwrap()
    }

    fn options() -> Options {
        let fields = vec!["id".to_owned(), "name".to_owned(), "budget".to_owned()];
        Options::from([
            ("/fields".to_owned(), fields.clone()),
            ("/filters/*/field".to_owned(), fields),
        ])
    }

    fn round_trip(doc: Value) {
        let form = SchemaForm::build(&rule_schema(), &options(), &doc);
        let posted = form.values(&doc);
        assert_eq!(form.parse(&posted), doc, "posted: {posted:?}");
    }

    #[test]
    fn rule_forms_round_trip() {
        round_trip(json!({
            "fields": ["id", "name"],
            "filters": [
                {"field": "name", "op": "contains", "value": "Acme"},
                {"field": "budget", "op": "gt", "value": 5},
                {"field": "name", "op": "eq", "value": "5"},
                {"field": "id", "op": "in", "value": ["a", "b"]},
                {"field": "id", "op": "exists", "value": true}
            ],
            "interval": {"minutes": 30},
            "behaviour": "delta",
            "conflictPolicy": "skip",
            "deletionPolicy": "ignore",
            "includeSubprojects": true,
            "initialSyncMode": "delta_only_after_date",
            "initialSyncSince": "2026-01-02T03:04:05Z",
            "dryRun": false,
            "enabled": true
        }));
        round_trip(json!({
            "fields": [],
            "filters": [],
            "interval": {"cron": "0 */6 * * *"},
            "behaviour": "full",
            "conflictPolicy": "upsert",
            "deletionPolicy": "mark_inactive_keep_link",
            "includeSubprojects": false,
            "initialSyncMode": "full_once",
            "initialSyncSince": null,
            "dryRun": true,
            "enabled": false
        }));
    }

    /// What a browser posts for the form as rendered: the values shown,
    /// and for a select nothing was chosen in, its first option.
    fn browser_post(form: &SchemaForm, doc: &Value) -> Vec<(String, String)> {
        let mut posted = form.values(doc);
        for f in form.all_fields() {
            if let Widget::Select { options, blank } = &f.widget
                && !posted.iter().any(|(k, _)| k == &f.name)
            {
                let first = if *blank { "" } else { options[0].as_str() };
                posted.push((f.name.clone(), first.to_owned()));
            }
            if matches!(
                f.widget,
                Widget::Text { .. } | Widget::Json | Widget::DateTime | Widget::Number { .. }
            ) && !posted.iter().any(|(k, _)| k == &f.name)
            {
                posted.push((f.name.clone(), String::new()));
            }
        }
        posted
    }

    #[test]
    fn the_blank_filter_row_posts_no_filter() {
        let doc = json!({"interval": {"minutes": 60}, "behaviour": "full"});
        let form = SchemaForm::build(&rule_schema(), &options(), &doc);
        let parsed = form.parse(&browser_post(&form, &doc));
        assert_eq!(parsed["filters"], json!([]));
        assert_eq!(parsed["interval"], json!({"minutes": 60}));
        assert_eq!(
            parsed["conflictPolicy"], "upsert",
            "the default is selected"
        );
        assert_eq!(parsed["initialSyncSince"], Value::Null);
    }

    #[test]
    fn widgets_follow_the_schema() {
        let form = SchemaForm::build(&rule_schema(), &options(), &json!({}));
        let by = |name: &str| {
            form.all_fields()
                .into_iter()
                .find(|f| f.name == name)
                .unwrap_or_else(|| panic!("no field {name}"))
                .clone()
        };
        assert!(matches!(
            by("/behaviour").widget,
            Widget::Select { blank: false, .. }
        ));
        assert_eq!(by("/dryRun").widget, Widget::Checkbox);
        assert_eq!(by("/initialSyncSince").widget, Widget::DateTime);
        assert!(by("/initialSyncSince").nullable);
        assert_eq!(
            by("/fields").widget,
            Widget::MultiSelect {
                options: vec!["id".into(), "name".into(), "budget".into()]
            }
        );
        assert_eq!(
            by("/interval/minutes").widget,
            Widget::Number {
                integer: true,
                min: Some("5".into()),
                max: Some("43200".into())
            }
        );
        assert!(
            matches!(by("/interval").widget, Widget::Choice { ref branches } if branches.len() == 2)
        );
        assert!(
            matches!(by("/filters/0/field").widget, Widget::Select { ref options, .. } if options.len() == 3)
        );
        assert!(
            matches!(by("/filters/0/op").widget, Widget::Select { ref options, .. } if options.contains(&"exists".to_owned()))
        );
        assert_eq!(by("/filters/0/value").widget, Widget::Json);
        assert_eq!(by("/behaviour").label, "Behaviour");
        assert!(by("/dryRun").hint.contains("write nothing"));
    }

    #[test]
    fn errors_find_their_field() {
        let doc = json!({"filters": [{"field": "id", "op": "eq", "value": 1}]});
        let form = SchemaForm::build(&rule_schema(), &options(), &doc);
        assert_eq!(
            form.field_for_pointer("/filters/0/field").as_deref(),
            Some("/filters/0/field")
        );
        assert_eq!(
            form.field_for_pointer("/fields/2").as_deref(),
            Some("/fields")
        );
        assert_eq!(
            form.field_for_pointer("/interval/cron").as_deref(),
            Some("/interval/cron")
        );
        assert_eq!(
            form.field_for_pointer("/interval").as_deref(),
            Some("/interval")
        );
        assert_eq!(form.field_for_pointer("/").as_deref(), None);
        assert_eq!(form.field_for_pointer("/fieldsx").as_deref(), None);
    }

    #[test]
    fn typed_values_that_are_not_numbers_are_kept() {
        let form = SchemaForm::build(&rule_schema(), &options(), &json!({}));
        let posted = vec![
            ("/interval".to_owned(), "minutes".to_owned()),
            ("/interval/minutes".to_owned(), "soon".to_owned()),
            (
                "/interval/cron".to_owned(),
                "ignored: not chosen".to_owned(),
            ),
            ("/behaviour".to_owned(), "full".to_owned()),
            (
                "/initialSyncSince".to_owned(),
                "2026-01-02T03:04".to_owned(),
            ),
            ("/filters/0/field".to_owned(), "".to_owned()),
            ("/filters/0/op".to_owned(), "".to_owned()),
        ];
        let doc = form.parse(&posted);
        assert_eq!(doc["interval"], json!({"minutes": "soon"}));
        assert_eq!(doc["initialSyncSince"], "2026-01-02T03:04:00Z");
        assert_eq!(doc["filters"], json!([]), "a blank row is no filter");
        assert_eq!(doc["dryRun"], false);
        // Shown again as typed.
        let again = SchemaForm::build(&rule_schema(), &options(), &doc).values(&doc);
        assert!(again.contains(&("/interval/minutes".to_owned(), "soon".to_owned())));
    }

    #[test]
    fn one_of_branches_become_radios() {
        let schema = json!({
            "type": "object",
            "properties": {
                "auth": {
                    "title": "Auth",
                    "oneOf": [
                        {"title": "Key", "type": "object", "required": ["key"], "properties": {"key": {"type": "string"}}},
                        {"title": "Login", "type": "object", "required": ["user"], "properties": {"user": {"type": "string"}, "port": {"type": "integer", "minimum": 1}}}
                    ]
                },
                "ratio": {"type": "number", "maximum": 1}
            }
        });
        let doc = json!({"auth": {"user": "ann", "port": 22}, "ratio": 0.5});
        let form = SchemaForm::build(&schema, &Options::new(), &doc);
        let posted = form.values(&doc);
        assert!(posted.contains(&("/auth".to_owned(), "user".to_owned())));
        assert_eq!(form.parse(&posted), doc);
    }
}
