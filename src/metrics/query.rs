//! Read side of the metrics store: the query behind the dashboard, the
//! explorer and `GET /api/data/metrics/query`. Sums are taken in SQL per
//! (period, group, provider, currency); canonical keys, scales, derived
//! ratios (from sums, never averaged), non-additive averages and
//! per-currency totals are computed here from those sums.
//!
//! Dates are days in the workspace's time zone; ranges are inclusive.

use std::collections::BTreeMap;

use serde::Serialize;
use time::Date;

use super::semantic::{Aggregation, Unit};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Grain {
    #[default]
    Day,
    /// ISO weeks, starting Monday; a period is named by its Monday.
    Week,
    /// Calendar months, named by their first day.
    Month,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Compare {
    #[default]
    None,
    /// The same number of days just before the range.
    PreviousPeriod,
    /// The same dates a year earlier (29 February maps to 28 February).
    PreviousYear,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GroupKey {
    Provider,
    Account,
    /// A declared dimension's canonical key.
    Dimension(String),
}

/// A validated query (the API parses and checks it; see `parse`).
#[derive(Debug, Clone, PartialEq)]
pub struct MetricQuery {
    /// Canonical keys, derived ones included.
    pub metrics: Vec<String>,
    pub from: Date,
    pub to: Date,
    pub grain: Grain,
    pub group_by: Vec<GroupKey>,
    /// Empty: every visible provider.
    pub providers: Vec<String>,
    /// Empty: every account.
    pub accounts: Vec<String>,
    /// `dim.<key>=<value>` filters: (canonical key, value).
    pub dimensions: Vec<(String, String)>,
    pub compare: Compare,
}

/// What the query answers (JSON as is; CSV from `rows`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueryResult {
    #[schema(value_type = String, format = Date)]
    pub from: Date,
    #[schema(value_type = String, format = Date)]
    pub to: Date,
    pub grain: Grain,
    /// The compared range, when `compare` isn't `none`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compared: Option<ComparedRange>,
    /// The requested metrics, in request order.
    pub metrics: Vec<MetricInfo>,
    /// One row per period, group, and split (see `Split`), sorted by period
    /// then group values.
    pub rows: Vec<ResultRow>,
    /// Per metric (in request order): the range's totals.
    pub totals: Vec<MetricTotal>,
    /// The first day with data per provider (how far back each source goes).
    pub coverage: Vec<Coverage>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComparedRange {
    #[schema(value_type = String, format = Date)]
    pub from: Date,
    #[schema(value_type = String, format = Date)]
    pub to: Date,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricInfo {
    pub key: String,
    pub label: String,
    pub unit: Unit,
    /// None for derived metrics.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aggregation: Option<Aggregation>,
    pub derived: bool,
    /// Providers that have this key.
    pub providers: Vec<String>,
}

/// Values that must not be added together are kept apart: amounts of
/// different currencies, and metrics of different providers that aren't
/// marked comparable under one key.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Split {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResultRow {
    /// First day of the period (the day, the ISO week's Monday, the month's 1st).
    #[schema(value_type = String, format = Date)]
    pub period: Date,
    /// Group key → value (`provider`, `account`, dimension keys), as asked.
    pub group: BTreeMap<String, String>,
    /// Account names, when grouped by account and the name is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_name: Option<String>,
    #[serde(flatten)]
    pub split: Split,
    /// Metric key → value; null where the period has no data for it.
    pub values: BTreeMap<String, Option<f64>>,
    /// Some day of the period is inside its source's settling window.
    pub provisional: bool,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricTotal {
    pub key: String,
    /// One part per split that has data: a single part when everything
    /// could be added; several (one per currency / provider) otherwise.
    pub parts: Vec<TotalPart>,
    /// Some day of the range is provisional for a source of this metric.
    pub provisional: bool,
    /// e.g. "Google Analytics 4 may still revise the last 2 days".
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub provisional_notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TotalPart {
    #[serde(flatten)]
    pub split: Split,
    /// None when no day of the range has data (missing, never zero).
    pub value: Option<f64>,
    /// The same over the compared range.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compared: Option<f64>,
    /// value − compared.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delta: Option<f64>,
    /// (value − compared) / |compared|; None when compared is 0 or missing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delta_ratio: Option<f64>,
    /// Days of the range with data.
    pub days_with_data: u32,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Coverage {
    pub provider: String,
    #[schema(value_type = Option<String>, format = Date)]
    pub first_day: Option<Date>,
    #[schema(value_type = Option<String>, format = Date)]
    pub last_day: Option<Date>,
}

/// The dashboard's tiles in one answer (`GET /api/data/kpis`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KpiBoard {
    #[schema(value_type = String, format = Date)]
    pub from: Date,
    #[schema(value_type = String, format = Date)]
    pub to: Date,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compared: Option<ComparedRange>,
    /// Today in the workspace's zone: partial, so outside "last N days".
    #[schema(value_type = String, format = Date)]
    pub today: Date,
    pub tiles: Vec<KpiTile>,
    pub coverage: Vec<Coverage>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KpiTile {
    pub metric: MetricInfo,
    pub total: MetricTotal,
    /// Daily values over the range per split, for the sparkline (None: no data that day).
    pub series: Vec<SplitSeries>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SplitSeries {
    #[serde(flatten)]
    pub split: Split,
    /// One value per day from `from` to `to`.
    pub values: Vec<Option<f64>>,
}
