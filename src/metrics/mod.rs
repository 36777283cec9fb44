//! Daily metrics: one row per (workspace, provider, connection, object,
//! account, date, dimensions). The connection (none for an internal write
//! that names none) and the object ('' when a writer names none) keep a
//! personal and a workspace connection on one account apart, and one
//! object's rows apart from another's.
//!
//! A write merges metric keys into the row by default (writing 3 of 7
//! metrics keeps the other 4); a `replace_day` write makes its rows the
//! day's only dimension combinations for that connection, object and
//! account, which is what a sync re-read does. Re-sending the same rows
//! changes nothing. Writes are set-based, in one transaction per request.

pub mod query;
pub mod read;
pub mod semantic;
pub mod store;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::Date;
use time::macros::format_description;
use uuid::Uuid;

use crate::error::{AppError, AppResult};

/// A validated row, ready for the store.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricRow {
    pub date: Date,
    pub account_id: String,
    pub dimensions: Value,
    /// Canonical JSON of `dimensions`: the row's identity within a day.
    pub dimension_key: String,
    pub metrics: Value,
    /// ISO code of the row's currency metrics, when known (see
    /// `semantic::CurrencySource`); filled in after validation.
    pub currency: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct WriteCounts {
    pub written: u64,
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
    /// Rows removed because a `replace_day` write no longer carried them.
    pub deleted: u64,
}

impl std::ops::Add for WriteCounts {
    type Output = WriteCounts;

    fn add(self, other: WriteCounts) -> WriteCounts {
        WriteCounts {
            written: self.written + other.written,
            inserted: self.inserted + other.inserted,
            updated: self.updated + other.updated,
            unchanged: self.unchanged + other.unchanged,
            deleted: self.deleted + other.deleted,
        }
    }
}

/// As posted by automations (and produced by metric fetchers).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricInput {
    #[schema(value_type = String, format = Date)]
    pub date: Value,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub account_id: Option<Value>,
    #[schema(value_type = Object)]
    pub metrics_json: Value,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub dimensions_json: Option<Value>,
}

/// How a write treats what is stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WriteMode {
    /// Metric keys merge into the stored row's; other rows are untouched.
    #[default]
    Merge,
    /// For every (account, date) written, the rows written become that
    /// day's only dimension combinations (for the write's connection and
    /// object), each with exactly the metrics given.
    ReplaceDay,
}

/// One day of one account: what a `replace_day` write replaces.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DayKey {
    pub account_id: String,
    pub date: Date,
}

/// A stored row's identity within its connection and object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowKey {
    pub account_id: String,
    pub date: Date,
    pub dimension_key: String,
}

/// The distinct days of a batch, in order.
pub fn days_of(rows: &[MetricRow]) -> Vec<DayKey> {
    let days: std::collections::BTreeSet<DayKey> = rows
        .iter()
        .map(|r| DayKey {
            account_id: r.account_id.clone(),
            date: r.date,
        })
        .collect();
    days.into_iter().collect()
}

pub const MAX_ACCOUNT_ID_LEN: usize = 200;
pub const MAX_OBJECT_LEN: usize = 100;

/// The object an internal write names: '' for none, else 1-100 printable
/// characters.
pub fn validate_object(object: Option<&str>) -> AppResult<String> {
    match object {
        None => Ok(String::new()),
        Some(o) if o.len() <= MAX_OBJECT_LEN && !o.chars().any(char::is_control) => {
            Ok(o.to_owned())
        }
        Some(_) => Err(AppError::validation(
            "object",
            format!("expected at most {MAX_OBJECT_LEN} printable characters"),
        )),
    }
}
pub const MAX_KEYS: usize = 100;
pub const MAX_NAME_LEN: usize = 100;

/// The value with object keys sorted at every level: a stable identity
/// whatever order a provider sends keys in.
pub fn canonical(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let sorted: BTreeMap<&String, Value> =
                map.iter().map(|(k, v)| (k, canonical(v))).collect();
            Value::Object(sorted.into_iter().map(|(k, v)| (k.clone(), v)).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

fn check_names(map: &Map<String, Value>, field: &str) -> AppResult<()> {
    if map.len() > MAX_KEYS {
        return Err(AppError::validation(
            field,
            format!("at most {MAX_KEYS} entries"),
        ));
    }
    for key in map.keys() {
        if key.is_empty() || key.len() > MAX_NAME_LEN || key.chars().any(char::is_control) {
            return Err(AppError::validation(
                format!("{field}.{key}"),
                format!("names must be 1-{MAX_NAME_LEN} printable characters"),
            ));
        }
    }
    Ok(())
}

/// Validates one posted row; errors name `metrics[index].field`.
pub fn validate(index: usize, input: &MetricInput) -> AppResult<MetricRow> {
    let at = |field: &str| format!("metrics[{index}].{field}");
    let date = input
        .date
        .as_str()
        .and_then(|s| Date::parse(s, format_description!("[year]-[month]-[day]")).ok())
        .filter(|d| (1990..=2200).contains(&d.year()))
        .ok_or_else(|| {
            AppError::validation(at("date"), "expected an ISO date such as 2026-11-21")
        })?;
    let account_id = match &input.account_id {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s))
            if s.len() <= MAX_ACCOUNT_ID_LEN && !s.chars().any(char::is_control) =>
        {
            s.clone()
        }
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => {
            return Err(AppError::validation(
                at("accountId"),
                format!("expected a string of at most {MAX_ACCOUNT_ID_LEN} printable characters"),
            ));
        }
    };
    let Value::Object(metrics) = &input.metrics_json else {
        return Err(AppError::validation(
            at("metricsJson"),
            "expected an object of metric name to number",
        ));
    };
    if metrics.is_empty() {
        return Err(AppError::validation(
            at("metricsJson"),
            "expected at least one metric",
        ));
    }
    check_names(metrics, &at("metricsJson"))?;
    for (name, value) in metrics {
        // JSON numbers are finite by construction; anything else is refused.
        let finite = value.as_f64().is_some_and(f64::is_finite);
        if !finite {
            return Err(AppError::validation(
                format!("{}.{name}", at("metricsJson")),
                "expected a finite number",
            ));
        }
    }
    let dimensions = match &input.dimensions_json {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(Value::Object(map)) => {
            check_names(map, &at("dimensionsJson"))?;
            for (name, value) in map {
                if !matches!(value, Value::String(_) | Value::Number(_) | Value::Bool(_)) {
                    return Err(AppError::validation(
                        format!("{}.{name}", at("dimensionsJson")),
                        "expected a string, number or boolean",
                    ));
                }
            }
            canonical(&Value::Object(map.clone()))
        }
        Some(_) => {
            return Err(AppError::validation(
                at("dimensionsJson"),
                "expected an object",
            ));
        }
    };
    let dimension_key = serde_json::to_string(&dimensions).unwrap_or_else(|_| "{}".to_owned());
    Ok(MetricRow {
        date,
        account_id,
        dimensions,
        dimension_key,
        metrics: canonical(&input.metrics_json),
        currency: None,
    })
}

/// Validates a whole batch: the first bad row rejects everything, and two
/// rows for the same key are refused (which one should win?).
pub fn validate_batch(inputs: &[MetricInput], max_rows: usize) -> AppResult<Vec<MetricRow>> {
    if inputs.is_empty() {
        return Err(AppError::validation("metrics", "expected at least one row"));
    }
    if inputs.len() > max_rows {
        return Err(AppError::validation(
            "metrics",
            format!("at most {max_rows} rows per request"),
        ));
    }
    let mut rows = Vec::with_capacity(inputs.len());
    let mut seen = std::collections::HashMap::with_capacity(inputs.len());
    for (index, input) in inputs.iter().enumerate() {
        let row = validate(index, input)?;
        let key = (row.date, row.account_id.clone(), row.dimension_key.clone());
        if let Some(first) = seen.insert(key, index) {
            return Err(AppError::validation(
                format!("metrics[{index}]"),
                format!("same date, accountId and dimensions as metrics[{first}]"),
            ));
        }
        rows.push(row);
    }
    Ok(rows)
}

/// An ISO 4217-shaped code (three ASCII letters, upper-cased), or None.
pub fn currency_code(raw: &str) -> Option<String> {
    let code = raw.trim();
    (code.len() == 3 && code.bytes().all(|b| b.is_ascii_alphabetic()))
        .then(|| code.to_ascii_uppercase())
}

/// The first day whose changed values the revision log keeps, for an
/// object settling over `settling_days`: older revisions are pruned.
pub fn revisions_from(today: Date, settling_days: u32, margin_days: u32) -> Date {
    let keep = i64::from(settling_days) + i64::from(margin_days);
    today
        .checked_sub(time::Duration::days(keep))
        .unwrap_or(Date::MIN)
}

/// The semantics that describe rows of `object` (rows written without an
/// object take the provider's first described metrics object).
pub fn semantics_of<'a>(
    provider: &'a crate::providers::Provider,
    object: &str,
) -> Option<(&'a str, &'a semantic::ObjectSemantics)> {
    let described =
        |o: &'a crate::providers::ObjectMeta| o.semantics.as_ref().map(|s| (o.key.as_str(), s));
    match provider.object(object) {
        Some(o) => described(o),
        None if object.is_empty() => provider.meta.objects.iter().find_map(described),
        None => None,
    }
}

/// Which write a batch is: inserts carry its id, which is how one statement
/// reports inserted and updated rows on both databases.
pub fn new_batch_id() -> Uuid {
    Uuid::now_v7()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn input(v: Value) -> MetricInput {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn valid_rows_are_canonical() {
        let a = validate(0, &input(json!({"date": "2026-11-20", "metricsJson": {"b": 2, "a": 1.5}, "dimensionsJson": {"z": "x", "c": 1}}))).unwrap();
        assert_eq!(a.dimension_key, r#"{"c":1,"z":"x"}"#);
        assert_eq!(a.account_id, "");
        let b = validate(0, &input(json!({"date": "2026-11-20", "metricsJson": {"a": 1}, "dimensionsJson": {"c": 1, "z": "x"}}))).unwrap();
        assert_eq!(a.dimension_key, b.dimension_key);
    }

    #[test]
    fn invalid_rows_name_index_and_field() {
        let cases = [
            (
                json!({"date": "2026-13-01", "metricsJson": {"a": 1}}),
                "metrics[3].date",
            ),
            (
                json!({"date": 20261120, "metricsJson": {"a": 1}}),
                "metrics[3].date",
            ),
            (
                json!({"date": "2026-11-20", "metricsJson": [1]}),
                "metrics[3].metricsJson",
            ),
            (
                json!({"date": "2026-11-20", "metricsJson": {}}),
                "metrics[3].metricsJson",
            ),
            (
                json!({"date": "2026-11-20", "metricsJson": {"a": "1"}}),
                "metrics[3].metricsJson.a",
            ),
            (
                json!({"date": "2026-11-20", "metricsJson": {"a": 1}, "dimensionsJson": "x"}),
                "metrics[3].dimensionsJson",
            ),
            (
                json!({"date": "2026-11-20", "metricsJson": {"a": 1}, "dimensionsJson": {"d": {"n": 1}}}),
                "metrics[3].dimensionsJson.d",
            ),
            (
                json!({"date": "2026-11-20", "metricsJson": {"a": 1}, "accountId": {"x": 1}}),
                "metrics[3].accountId",
            ),
        ];
        for (row, field) in cases {
            let err = validate(3, &input(row.clone())).unwrap_err();
            assert!(
                matches!(&err, AppError::Validation { field: Some(f), .. } if f == field),
                "{row}: {err:?}"
            );
        }
    }

    #[test]
    fn batch_rules() {
        let row = json!({"date": "2026-11-20", "metricsJson": {"a": 1}});
        let rows = vec![input(row.clone()), input(row)];
        let err = validate_batch(&rows, 10).unwrap_err();
        assert!(matches!(&err, AppError::Validation { field: Some(f), .. } if f == "metrics[1]"));
        assert!(validate_batch(&[], 10).is_err());
        let many: Vec<_> = (0..3)
            .map(|d| input(json!({"date": format!("2026-11-0{}", d + 1), "metricsJson": {"a": 1}})))
            .collect();
        assert!(validate_batch(&many, 2).is_err());
        assert_eq!(validate_batch(&many, 3).unwrap().len(), 3);
    }
}
