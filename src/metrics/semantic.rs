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
