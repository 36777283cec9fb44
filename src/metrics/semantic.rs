//! The metrics semantic layer: what each stored metric of a provider's
//! `metrics` object means. Declared in provider.json under the object's
//! optional `semantics` (providers/provider.schema.json), so adding a
//! metric to a provider is a metadata change.
//!
//! Stored rows keep the provider's field names (`source`); people and the
//! query API speak canonical keys (`key`). Ratios are never stored or
//! averaged: derived metrics are formulas over summed parts.

use serde::{Deserialize, Serialize};

/// `semantics` of one `metrics` object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectSemantics {
    /// Days, counted back from today in the account's reporting, that the
    /// provider may still revise: their values are *provisional*. Each sync
    /// re-reads at least this many days.
    #[serde(default)]
    pub settling_days: u32,
    /// Where the currency of this object's `currency` metrics comes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<CurrencySource>,
    pub metrics: Vec<MetricDef>,
    #[serde(default)]
    pub derived: Vec<DerivedDef>,
    /// Labels for the object's dimensions other than the date.
    #[serde(default)]
    pub dimensions: Vec<DimensionDef>,
}

/// Where a currency metric's currency code is read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "from", rename_all = "snake_case", deny_unknown_fields)]
pub enum CurrencySource {
    /// The account's currency in `provider_accounts` (Google Ads customers).
    Account,
    /// A field of each row (a record field name, as `metrics` names them).
    Field { field: String },
    /// A JSON pointer into the whole page's response (GA4's
    /// `/metadata/currencyCode`).
    Response { pointer: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricDef {
    /// The field as stored in the row's metrics (one of the object's `metrics`).
    pub source: String,
    /// Canonical key, e.g. `conversions`; unique within the object.
    pub key: String,
    pub label: String,
    pub unit: Unit,
    /// Multiplies the stored value (Google Ads `cost_micros`: 0.000001).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<f64>,
    pub aggregation: Aggregation,
    /// For `weighted_average`: the canonical key of the weight metric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_by: Option<String>,
    /// Same definition as other providers' metrics marked comparable under
    /// the same key and unit, so the all-providers view may add them.
    #[serde(default)]
    pub comparable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A ratio of two sums: `numerator / denominator`, times `multiplier`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DerivedDef {
    pub key: String,
    pub label: String,
    pub unit: Unit,
    /// Canonical keys of `sum` metrics of the same object.
    pub numerator: String,
    pub denominator: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multiplier: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DimensionDef {
    /// The dimension as stored (one of the object's `dimensions`).
    pub source: String,
    /// Canonical key used in `groupBy` and `dim.<key>=` filters.
    pub key: String,
    pub label: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    Count,
    /// An amount in the row's currency; never added across currencies.
    Currency,
    /// A plain quotient such as ROAS (3.2 means 3.2×).
    Ratio,
    /// A fraction shown as a percentage (0.031 is shown as 3.1 %).
    Percent,
    DurationSeconds,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Aggregation {
    Sum,
    /// Distinct counts (users): never summed across days. A period shows
    /// the average of its daily values.
    NonAdditive,
    /// Averaged with the weights of `weight_by` (position by impressions).
    WeightedAverage,
}

impl ObjectSemantics {
    pub fn metric(&self, key: &str) -> Option<&MetricDef> {
        self.metrics.iter().find(|m| m.key == key)
    }

    pub fn derived(&self, key: &str) -> Option<&DerivedDef> {
        self.derived.iter().find(|d| d.key == key)
    }

    pub fn dimension(&self, key: &str) -> Option<&DimensionDef> {
        self.dimensions.iter().find(|d| d.key == key)
    }

    /// Cross-references JSON Schema can't state, as (pointer below
    /// `semantics`, message). `metrics` and `dimensions` are the object's
    /// stored field names.
    pub fn problems(&self, metrics: &[String], dimensions: &[String]) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut keys = std::collections::BTreeSet::new();
        let sum_metric = |key: &str| {
            self.metric(key)
                .is_some_and(|m| m.aggregation == Aggregation::Sum)
        };
        let has_currency_metric = self.metrics.iter().any(|m| m.unit == Unit::Currency)
            || self.derived.iter().any(|d| d.unit == Unit::Currency);
        if has_currency_metric && self.currency.is_none() {
            out.push((
                "/currency".to_owned(),
                "currency metrics need a currency source (account, field or response)".to_owned(),
            ));
        }
        let mut sources = std::collections::BTreeSet::new();
        for (i, m) in self.metrics.iter().enumerate() {
            let at = |rest: &str| format!("/metrics/{i}{rest}");
            if !metrics.contains(&m.source) {
                out.push((
                    at("/source"),
                    format!("source {:?} is not one of the object's metrics", m.source),
                ));
            }
            if !sources.insert(m.source.as_str()) {
                out.push((
                    at("/source"),
                    format!("source {:?} is described twice", m.source),
                ));
            }
            if !keys.insert(m.key.as_str()) {
                out.push((at("/key"), format!("duplicate key {:?}", m.key)));
            }
            if let Some(scale) = m.scale
                && !(scale.is_finite() && scale > 0.0)
            {
                out.push((
                    at("/scale"),
                    "scale must be a finite number above 0".to_owned(),
                ));
            }
            match (&m.aggregation, &m.weight_by) {
                (Aggregation::WeightedAverage, None) => out.push((
                    at("/weightBy"),
                    "a weighted_average metric names its weight in weightBy".to_owned(),
                )),
                (Aggregation::WeightedAverage, Some(w)) if !sum_metric(w) || *w == m.key => out
                    .push((
                        at("/weightBy"),
                        format!("weightBy {w:?} must be another sum metric of the object"),
                    )),
                (Aggregation::Sum | Aggregation::NonAdditive, Some(_)) => out.push((
                    at("/weightBy"),
                    "weightBy only applies to weighted_average metrics".to_owned(),
                )),
                _ => {}
            }
        }
        for (i, d) in self.derived.iter().enumerate() {
            let at = |rest: &str| format!("/derived/{i}{rest}");
            if !keys.insert(d.key.as_str()) {
                out.push((at("/key"), format!("duplicate key {:?}", d.key)));
            }
            for (part, name) in [("numerator", &d.numerator), ("denominator", &d.denominator)] {
                if !sum_metric(name) {
                    out.push((
                        at(&format!("/{part}")),
                        format!("{part} {name:?} must name a sum metric of the object"),
                    ));
                }
            }
            if let Some(x) = d.multiplier
                && !(x.is_finite() && x != 0.0)
            {
                out.push((
                    at("/multiplier"),
                    "multiplier must be a finite non-zero number".to_owned(),
                ));
            }
        }
        let mut dimension_keys = std::collections::BTreeSet::new();
        for (i, d) in self.dimensions.iter().enumerate() {
            let at = |rest: &str| format!("/dimensions/{i}{rest}");
            if !dimensions.contains(&d.source) {
                out.push((
                    at("/source"),
                    format!(
                        "source {:?} is not one of the object's dimensions",
                        d.source
                    ),
                ));
            }
            if !dimension_keys.insert(d.key.as_str()) {
                out.push((at("/key"), format!("duplicate dimension key {:?}", d.key)));
            }
            if matches!(d.key.as_str(), "provider" | "account") {
                out.push((at("/key"), format!("{:?} is a built-in group", d.key)));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sem(v: serde_json::Value) -> ObjectSemantics {
        serde_json::from_value(v).unwrap()
    }

    fn fields() -> (Vec<String>, Vec<String>) {
        (
            ["clicks", "impressions", "cost", "position", "users"]
                .map(String::from)
                .to_vec(),
            ["date", "device"].map(String::from).to_vec(),
        )
    }

    fn problems(v: serde_json::Value) -> Vec<(String, String)> {
        let (m, d) = fields();
        sem(v).problems(&m, &d)
    }

    fn metric(source: &str, key: &str, unit: &str, aggregation: &str) -> serde_json::Value {
        json!({"source": source, "key": key, "label": key, "unit": unit, "aggregation": aggregation})
    }

    #[test]
    fn a_consistent_layer_has_no_problems() {
        let mut position = metric("position", "position", "ratio", "weighted_average");
        position["weightBy"] = json!("impressions");
        let found = problems(json!({
            "settlingDays": 2,
            "currency": {"from": "account"},
            "metrics": [metric("clicks", "clicks", "count", "sum"), metric("impressions", "impressions", "count", "sum"),
                        metric("cost", "cost", "currency", "sum"), position, metric("users", "users", "count", "non_additive")],
            "derived": [{"key": "ctr", "label": "CTR", "unit": "percent", "numerator": "clicks", "denominator": "impressions"}],
            "dimensions": [{"source": "device", "key": "device", "label": "Device"}],
        }));
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn cross_references_are_checked() {
        let cases: Vec<(serde_json::Value, &str, &str)> = vec![
            (
                json!({"metrics": [metric("nope", "x", "count", "sum")]}),
                "/metrics/0/source",
                "not one of the object's metrics",
            ),
            (
                json!({"metrics": [metric("clicks", "x", "count", "sum"), metric("cost", "x", "count", "sum")]}),
                "/metrics/1/key",
                "duplicate key",
            ),
            (
                json!({"metrics": [metric("cost", "cost", "currency", "sum")]}),
                "/currency",
                "currency source",
            ),
            (
                json!({"metrics": [metric("position", "p", "ratio", "weighted_average")]}),
                "/metrics/0/weightBy",
                "weightBy",
            ),
            (
                json!({"metrics": [metric("users", "u", "count", "non_additive"),
                    {"source": "position", "key": "p", "label": "p", "unit": "ratio", "aggregation": "weighted_average", "weightBy": "u"}]}),
                "/metrics/1/weightBy",
                "sum metric",
            ),
            (
                json!({"metrics": [metric("clicks", "clicks", "count", "sum"), metric("users", "users", "count", "non_additive")],
                    "derived": [{"key": "r", "label": "r", "unit": "ratio", "numerator": "clicks", "denominator": "users"}]}),
                "/derived/0/denominator",
                "sum metric",
            ),
            (
                json!({"metrics": [metric("clicks", "clicks", "count", "sum")],
                    "derived": [{"key": "clicks", "label": "r", "unit": "ratio", "numerator": "clicks", "denominator": "clicks"}]}),
                "/derived/0/key",
                "duplicate key",
            ),
            (
                json!({"metrics": [{"source": "clicks", "key": "c", "label": "c", "unit": "count", "aggregation": "sum", "scale": -1.0}]}),
                "/metrics/0/scale",
                "above 0",
            ),
            (
                json!({"metrics": [metric("clicks", "c", "count", "sum")], "dimensions": [{"source": "country", "key": "country", "label": "Country"}]}),
                "/dimensions/0/source",
                "not one of the object's dimensions",
            ),
        ];
        for (layer, pointer, words) in cases {
            let found = problems(layer.clone());
            assert!(
                found.iter().any(|(p, m)| p == pointer && m.contains(words)),
                "{layer}: expected {pointer} / {words:?} in {found:?}"
            );
        }
    }
}
