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

use super::read::{AggRow, AggregateSpec, Bucket, Col};
use super::semantic::{Aggregation, MetricDef, ObjectSemantics, Unit};
use crate::app::AppState;
use crate::connections::Viewer;
use crate::error::{AppError, AppResult};
use crate::tenancy::WorkspaceId;

// Dates as `2026-11-21` in JSON (time's default is a tuple).
time::serde::format_description!(iso_date, Date, "[year]-[month]-[day]");

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
    #[serde(with = "iso_date")]
    pub from: Date,
    #[schema(value_type = String, format = Date)]
    #[serde(with = "iso_date")]
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
    #[serde(with = "iso_date")]
    pub from: Date,
    #[schema(value_type = String, format = Date)]
    #[serde(with = "iso_date")]
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
    #[serde(with = "iso_date")]
    pub period: Date,
    /// Group key → value (`provider`, `account`, dimension keys), as asked.
    pub group: BTreeMap<String, String>,
    /// Account names, when grouped by account and the name is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_name: Option<String>,
    #[serde(flatten)]
    pub split: Split,
    /// The providers whose data the row holds.
    pub providers: Vec<String>,
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
    #[serde(with = "iso_date::option")]
    pub first_day: Option<Date>,
    #[schema(value_type = Option<String>, format = Date)]
    #[serde(with = "iso_date::option")]
    pub last_day: Option<Date>,
}

/// The dashboard's tiles in one answer (`GET /api/data/kpis`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KpiBoard {
    #[schema(value_type = String, format = Date)]
    #[serde(with = "iso_date")]
    pub from: Date,
    #[schema(value_type = String, format = Date)]
    #[serde(with = "iso_date")]
    pub to: Date,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compared: Option<ComparedRange>,
    /// Today in the workspace's zone: partial, so outside "last N days".
    #[schema(value_type = String, format = Date)]
    #[serde(with = "iso_date")]
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

// ---------------------------------------------------------------- catalog

/// The semantic layer of the providers the viewer has data or a
/// connection of (`GET /api/data/metrics/catalog`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Catalog {
    /// Every canonical key, derived ones included; `providers` says whose.
    pub metrics: Vec<MetricInfo>,
    pub dimensions: Vec<DimensionInfo>,
    pub providers: Vec<ProviderInfo>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DimensionInfo {
    pub key: String,
    pub label: String,
    pub providers: Vec<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderInfo {
    pub key: String,
    pub display_name: String,
    /// The described metrics object.
    pub object: String,
    pub settling_days: u32,
    /// This provider's own labels and units.
    pub metrics: Vec<MetricInfo>,
    /// Accounts of the viewer's visible connections.
    pub accounts: Vec<AccountInfo>,
    #[schema(value_type = Option<String>, format = Date)]
    #[serde(with = "iso_date::option")]
    pub first_day: Option<Date>,
    #[schema(value_type = Option<String>, format = Date)]
    #[serde(with = "iso_date::option")]
    pub last_day: Option<Date>,
    /// The whole layer as declared in provider.json.
    pub semantics: ObjectSemantics,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountInfo {
    pub id: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
}

/// The currency code of amounts whose currency isn't known (ISO 4217's
/// "no currency"): its own part, never added to a known currency.
pub const UNKNOWN_CURRENCY: &str = "XXX";

/// Tiles and catalog order: the usual marketing metrics first.
const PREFERRED: &[&str] = &[
    "sessions",
    "users",
    "new_users",
    "page_views",
    "conversions",
    "revenue",
    "impressions",
    "clicks",
    "cost",
    "ctr",
    "cpc",
    "cpa",
    "roas",
    "conversion_rate",
];

fn metric_infos(provider: &str, s: &ObjectSemantics) -> Vec<MetricInfo> {
    let base = s.metrics.iter().map(|m| MetricInfo {
        key: m.key.clone(),
        label: m.label.clone(),
        unit: m.unit,
        aggregation: Some(m.aggregation),
        derived: false,
        providers: vec![provider.to_owned()],
    });
    let derived = s.derived.iter().map(|d| MetricInfo {
        key: d.key.clone(),
        label: d.label.clone(),
        unit: d.unit,
        aggregation: None,
        derived: true,
        providers: vec![provider.to_owned()],
    });
    base.chain(derived).collect()
}

fn preferred_rank(key: &str) -> usize {
    PREFERRED
        .iter()
        .position(|k| *k == key)
        .unwrap_or(PREFERRED.len())
}

/// The layer for the workspace's visible connections (GET /api/data/metrics/catalog).
pub async fn catalog(state: &AppState, viewer: &Viewer) -> AppResult<Catalog> {
    let connections = state.store.list_connections(viewer.workspace).await?;
    let visible: Vec<&crate::connections::Connection> = connections
        .iter()
        .filter(|c| c.owner_user_id.is_none_or(|o| o == viewer.user))
        .collect();
    let accounts = state.store.list_provider_accounts(viewer.workspace).await?;
    let mut providers = Vec::new();
    for provider in state.providers.iter() {
        let Some((object, semantics)) = super::semantics_of(provider, "") else {
            continue;
        };
        let key = provider.meta.key.as_str();
        let connected = visible.iter().any(|c| c.provider == key);
        let (first_day, last_day) = state
            .store
            .metric_coverage(viewer.workspace, viewer.user, key)
            .await?;
        if !connected && first_day.is_none() {
            continue;
        }
        let mut seen = std::collections::BTreeSet::new();
        let mut own: Vec<AccountInfo> = accounts
            .iter()
            .filter(|a| a.provider == key && visible.iter().any(|c| c.id == a.connection_id))
            .filter(|a| seen.insert(a.external_id.clone()))
            .map(|a| AccountInfo {
                id: a.external_id.clone(),
                name: a.name.clone(),
                currency: a.currency.clone(),
                time_zone: a.time_zone.clone(),
            })
            .collect();
        own.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
        providers.push(ProviderInfo {
            key: key.to_owned(),
            display_name: provider.meta.display_name.clone(),
            object: object.to_owned(),
            settling_days: semantics.settling_days,
            metrics: metric_infos(key, semantics),
            accounts: own,
            first_day,
            last_day,
            semantics: semantics.clone(),
        });
    }
    let mut metrics: Vec<MetricInfo> = Vec::new();
    let mut dimensions: Vec<DimensionInfo> = Vec::new();
    for p in &providers {
        for info in &p.metrics {
            match metrics.iter_mut().find(|m| m.key == info.key) {
                Some(m) => m.providers.push(p.key.clone()),
                None => metrics.push(info.clone()),
            }
        }
        for d in &p.semantics.dimensions {
            match dimensions.iter_mut().find(|x| x.key == d.key) {
                Some(x) => x.providers.push(p.key.clone()),
                None => dimensions.push(DimensionInfo {
                    key: d.key.clone(),
                    label: d.label.clone(),
                    providers: vec![p.key.clone()],
                }),
            }
        }
    }
    metrics.sort_by(|a, b| {
        preferred_rank(&a.key)
            .cmp(&preferred_rank(&b.key))
            .then_with(|| a.derived.cmp(&b.derived))
            .then_with(|| a.key.cmp(&b.key))
    });
    Ok(Catalog {
        metrics,
        dimensions,
        providers,
    })
}

/// Today in the workspace's time zone.
pub async fn workspace_today(state: &AppState, workspace: WorkspaceId) -> AppResult<Date> {
    let zone = crate::tenancy::service::time_zone(&state.store, workspace).await?;
    Ok(zone.date_of(&crate::storage::now()))
}

// ---------------------------------------------------------------- parsing

pub const MAX_QUERY_METRICS: usize = 30;
const MAX_FILTER_VALUES: usize = 200;

fn parse_date(field: &str, raw: &str) -> AppResult<Date> {
    Date::parse(
        raw.trim(),
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .ok()
    .filter(|d| (1990..=2200).contains(&d.year()))
    .ok_or_else(|| AppError::validation(field, "expected a date such as 2026-11-21"))
}

fn printable(field: &str, raw: &str) -> AppResult<String> {
    if raw.is_empty() || raw.len() > super::MAX_ACCOUNT_ID_LEN || raw.chars().any(char::is_control)
    {
        return Err(AppError::validation(
            field,
            format!(
                "expected 1-{} printable characters",
                super::MAX_ACCOUNT_ID_LEN
            ),
        ));
    }
    Ok(raw.to_owned())
}

/// Values of a repeatable parameter; commas separate values too.
fn list_values<'a>(pairs: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    pairs
        .iter()
        .filter(|(k, _)| k == name)
        .flat_map(|(_, v)| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect()
}

fn single<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .rev()
        .find(|(k, v)| k == name && !v.trim().is_empty())
        .map(|(_, v)| v.trim())
}

fn parse_compare(pairs: &[(String, String)]) -> AppResult<Compare> {
    match single(pairs, "compare") {
        None | Some("none") => Ok(Compare::None),
        Some("previous_period") => Ok(Compare::PreviousPeriod),
        Some("previous_year") => Ok(Compare::PreviousYear),
        Some(_) => Err(AppError::validation(
            "compare",
            "expected none, previous_period or previous_year",
        )),
    }
}

fn parse_providers(pairs: &[(String, String)], known: &[&str]) -> AppResult<Vec<String>> {
    let mut out = Vec::new();
    for p in list_values(pairs, "provider") {
        if !known.contains(&p) {
            return Err(AppError::validation(
                "provider",
                format!("no metrics of provider {p:?} in this workspace"),
            ));
        }
        if !out.iter().any(|o| o == p) {
            out.push(p.to_owned());
        }
    }
    Ok(out)
}

fn parse_accounts(pairs: &[(String, String)]) -> AppResult<Vec<String>> {
    let mut out = Vec::new();
    for a in list_values(pairs, "account") {
        let a = printable("account", a)?;
        if !out.contains(&a) {
            out.push(a);
        }
    }
    if out.len() > MAX_FILTER_VALUES {
        return Err(AppError::validation(
            "account",
            format!("at most {MAX_FILTER_VALUES} accounts"),
        ));
    }
    Ok(out)
}

/// Inclusive day count of a range.
fn days_in(from: Date, to: Date) -> i64 {
    (to - from).whole_days() + 1
}

fn check_range(from: Date, to: Date, max_days: u32) -> AppResult<()> {
    if from > to {
        return Err(AppError::validation("from", "from is after to"));
    }
    if days_in(from, to) > i64::from(max_days) {
        return Err(AppError::validation(
            "to",
            format!("the range spans more than {max_days} days (PLUGBOARD_METRICS_MAX_RANGE_DAYS)"),
        ));
    }
    Ok(())
}

/// Parses the API's query string (metrics=..&from=..&to=..&grain=..&groupBy=..&provider=..&account=..&dim.k=v&compare=..)
/// into a validated MetricQuery, 422 naming the field on bad input.
/// Without `from`/`to`: the 28 complete days ending yesterday.
pub fn parse_query(
    pairs: &[(String, String)],
    catalog: &Catalog,
    today: Date,
    max_days: u32,
) -> AppResult<MetricQuery> {
    let mut metrics: Vec<String> = Vec::new();
    for m in list_values(pairs, "metrics") {
        if !catalog.metrics.iter().any(|c| c.key == m) {
            return Err(AppError::validation(
                "metrics",
                format!("unknown metric {m:?}; see GET /api/data/metrics/catalog"),
            ));
        }
        if !metrics.iter().any(|x| x == m) {
            metrics.push(m.to_owned());
        }
    }
    if metrics.is_empty() {
        return Err(AppError::validation(
            "metrics",
            "name at least one metric of the catalog",
        ));
    }
    if metrics.len() > MAX_QUERY_METRICS {
        return Err(AppError::validation(
            "metrics",
            format!("at most {MAX_QUERY_METRICS} metrics"),
        ));
    }
    let yesterday = today.previous_day().unwrap_or(today);
    let to = match single(pairs, "to") {
        Some(raw) => parse_date("to", raw)?,
        None => yesterday,
    };
    let from = match single(pairs, "from") {
        Some(raw) => parse_date("from", raw)?,
        None => to.checked_sub(time::Duration::days(27)).unwrap_or(to),
    };
    check_range(from, to, max_days)?;
    let grain = match single(pairs, "grain") {
        None | Some("day") => Grain::Day,
        Some("week") => Grain::Week,
        Some("month") => Grain::Month,
        Some(_) => return Err(AppError::validation("grain", "expected day, week or month")),
    };
    let mut group_by = Vec::new();
    for g in list_values(pairs, "groupBy") {
        let key = match g {
            "provider" => GroupKey::Provider,
            "account" => GroupKey::Account,
            d if catalog.dimensions.iter().any(|x| x.key == d) => GroupKey::Dimension(d.to_owned()),
            other => {
                return Err(AppError::validation(
                    "groupBy",
                    format!(
                        "unknown dimension {other:?}; expected provider, account or a dimension of the catalog"
                    ),
                ));
            }
        };
        if !group_by.contains(&key) {
            group_by.push(key);
        }
    }
    let known: Vec<&str> = catalog.providers.iter().map(|p| p.key.as_str()).collect();
    let providers = parse_providers(pairs, &known)?;
    let accounts = parse_accounts(pairs)?;
    let mut dimensions = Vec::new();
    for (k, v) in pairs {
        let Some(key) = k.strip_prefix("dim.") else {
            continue;
        };
        let field = format!("dim.{key}");
        if !catalog.dimensions.iter().any(|d| d.key == key) {
            return Err(AppError::validation(
                field,
                format!("unknown dimension {key:?}"),
            ));
        }
        let value = printable(&field, v)?;
        dimensions.push((key.to_owned(), value));
    }
    if dimensions.len() > MAX_FILTER_VALUES {
        return Err(AppError::validation("dim", "too many dimension filters"));
    }
    Ok(MetricQuery {
        metrics,
        from,
        to,
        grain,
        group_by,
        providers,
        accounts,
        dimensions,
        compare: parse_compare(pairs)?,
    })
}

/// KPI range presets: "7d" | "28d" | "90d" | "mtd" | "custom" (with from/to). Last N days = N complete days ending yesterday
/// in the workspace's zone; today is partial and separate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangePreset {
    Last7,
    Last28,
    Last90,
    /// The month's complete days (ending yesterday); on the 1st, today alone.
    MonthToDate,
    Custom {
        from: Date,
        to: Date,
    },
}

impl RangePreset {
    /// The inclusive range for `today`.
    pub fn resolve(self, today: Date) -> (Date, Date) {
        let yesterday = today.previous_day().unwrap_or(today);
        let last = |n: i64| {
            (
                yesterday
                    .checked_sub(time::Duration::days(n - 1))
                    .unwrap_or(yesterday),
                yesterday,
            )
        };
        match self {
            RangePreset::Last7 => last(7),
            RangePreset::Last28 => last(28),
            RangePreset::Last90 => last(90),
            RangePreset::MonthToDate => {
                let first = today.replace_day(1).unwrap_or(today);
                if first == today {
                    (today, today)
                } else {
                    (first, yesterday)
                }
            }
            RangePreset::Custom { from, to } => (from, to),
        }
    }

    /// As in the query string.
    pub fn as_str(self) -> &'static str {
        match self {
            RangePreset::Last7 => "7d",
            RangePreset::Last28 => "28d",
            RangePreset::Last90 => "90d",
            RangePreset::MonthToDate => "mtd",
            RangePreset::Custom { .. } => "custom",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KpiRequest {
    pub range: RangePreset,
    pub compare: Compare,
    pub providers: Vec<String>,
    pub accounts: Vec<String>,
}

/// `range` (default 28d), `from`/`to` for custom, `compare` (default none),
/// repeated `provider` and `account`. Providers are checked by `kpis`.
pub fn parse_kpi_request(pairs: &[(String, String)], today: Date) -> AppResult<KpiRequest> {
    let _ = today;
    let range = match single(pairs, "range") {
        None | Some("28d") => RangePreset::Last28,
        Some("7d") => RangePreset::Last7,
        Some("90d") => RangePreset::Last90,
        Some("mtd") => RangePreset::MonthToDate,
        Some("custom") => {
            let from = parse_date(
                "from",
                single(pairs, "from")
                    .ok_or_else(|| AppError::validation("from", "a custom range needs from"))?,
            )?;
            let to = parse_date(
                "to",
                single(pairs, "to")
                    .ok_or_else(|| AppError::validation("to", "a custom range needs to"))?,
            )?;
            if from > to {
                return Err(AppError::validation("from", "from is after to"));
            }
            RangePreset::Custom { from, to }
        }
        Some(_) => {
            return Err(AppError::validation(
                "range",
                "expected 7d, 28d, 90d, mtd or custom",
            ));
        }
    };
    let mut providers = Vec::new();
    for p in list_values(pairs, "provider") {
        let p = printable("provider", p)?;
        if !providers.contains(&p) {
            providers.push(p);
        }
    }
    Ok(KpiRequest {
        range,
        compare: parse_compare(pairs)?,
        providers,
        accounts: parse_accounts(pairs)?,
    })
}

// ---------------------------------------------------------------- dates

/// First day of the period `date` falls in.
pub fn period_of(date: Date, grain: Grain) -> Date {
    match grain {
        Grain::Day => date,
        Grain::Week => date
            .checked_sub(time::Duration::days(i64::from(
                date.weekday().number_days_from_monday(),
            )))
            .unwrap_or(date),
        Grain::Month => date.replace_day(1).unwrap_or(date),
    }
}

/// Last day of the period starting at `start`.
fn period_end(start: Date, grain: Grain) -> Date {
    match grain {
        Grain::Day => start,
        Grain::Week => start.checked_add(time::Duration::days(6)).unwrap_or(start),
        Grain::Month => {
            let mut d = start;
            while let Some(next) = d.next_day().filter(|n| n.month() == start.month()) {
                d = next;
            }
            d
        }
    }
}

/// The same day a year earlier; 29 February maps to 28 February.
pub fn year_before(date: Date) -> Date {
    let year = date.year() - 1;
    Date::from_calendar_date(year, date.month(), date.day())
        .or_else(|_| Date::from_calendar_date(year, date.month(), 28))
        .unwrap_or(date)
}

/// The compared range: the same number of days just before, or the same
/// dates a year earlier.
pub fn compared_range(from: Date, to: Date, compare: Compare) -> Option<(Date, Date)> {
    match compare {
        Compare::None => None,
        Compare::PreviousPeriod => {
            let len = time::Duration::days(days_in(from, to));
            Some((from.checked_sub(len)?, from.previous_day()?))
        }
        Compare::PreviousYear => Some((year_before(from), year_before(to))),
    }
}

// ---------------------------------------------------------------- evaluation

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Sum,
    NonAdditive,
    Weighted,
    Ratio,
}

/// How one source computes one metric from its summed columns.
#[derive(Debug, Clone, Copy)]
struct How {
    kind: Kind,
    a: usize,
    b: usize,
    scale_a: f64,
    scale_b: f64,
    multiplier: f64,
}

/// What one provider's query sums, and how each requested metric follows.
struct SourcePlan<'a> {
    info: &'a ProviderInfo,
    cols: Vec<Col>,
    /// Per requested metric; None: the provider doesn't have it.
    how: Vec<Option<How>>,
    /// Stored names of the grouped dimensions ('' where it has none).
    group_dims: Vec<String>,
    dim_filters: Vec<(String, String)>,
}

impl SourcePlan<'_> {
    fn col(&mut self, col: Col) -> usize {
        match self.cols.iter().position(|c| *c == col) {
            Some(i) => i,
            None => {
                self.cols.push(col);
                self.cols.len() - 1
            }
        }
    }
}

/// A metric as the query treats it across providers.
struct MetricPlan {
    key: String,
    /// Providers' values can't be added: one part per provider.
    split_provider: bool,
    /// Amounts (or ratios of amounts): one part per currency.
    split_currency: bool,
}

fn scale_of(m: &MetricDef) -> f64 {
    m.scale.filter(|s| s.is_finite() && *s > 0.0).unwrap_or(1.0)
}

fn plan<'a>(
    sources: &[&'a ProviderInfo],
    query: &MetricQuery,
) -> (Vec<SourcePlan<'a>>, Vec<MetricPlan>) {
    let mut plans = Vec::new();
    for info in sources {
        let s = &info.semantics;
        // A filter on a dimension the provider doesn't have matches nothing.
        let mut dim_filters = Vec::new();
        let mut matches = true;
        for (key, value) in &query.dimensions {
            match s.dimension(key) {
                Some(d) => dim_filters.push((d.source.clone(), value.clone())),
                None => matches = false,
            }
        }
        if !matches {
            continue;
        }
        let group_dims = query
            .group_by
            .iter()
            .filter_map(|g| match g {
                GroupKey::Dimension(k) => {
                    Some(s.dimension(k).map(|d| d.source.clone()).unwrap_or_default())
                }
                _ => None,
            })
            .collect();
        let mut p = SourcePlan {
            info,
            cols: Vec::new(),
            how: Vec::new(),
            group_dims,
            dim_filters,
        };
        for key in &query.metrics {
            let how = if let Some(m) = s.metric(key) {
                match m.aggregation {
                    Aggregation::Sum | Aggregation::NonAdditive => {
                        let a = p.col(Col::Sum(m.source.clone()));
                        Some(How {
                            kind: if m.aggregation == Aggregation::Sum {
                                Kind::Sum
                            } else {
                                Kind::NonAdditive
                            },
                            a,
                            b: a,
                            scale_a: scale_of(m),
                            scale_b: 1.0,
                            multiplier: 1.0,
                        })
                    }
                    Aggregation::WeightedAverage => {
                        m.weight_by.as_deref().and_then(|w| s.metric(w)).map(|w| {
                            let a = p.col(Col::Product(m.source.clone(), w.source.clone()));
                            let b = p.col(Col::Sum(w.source.clone()));
                            How {
                                kind: Kind::Weighted,
                                a,
                                b,
                                scale_a: scale_of(m),
                                scale_b: 1.0,
                                multiplier: 1.0,
                            }
                        })
                    }
                }
            } else if let Some(d) = s.derived(key) {
                match (s.metric(&d.numerator), s.metric(&d.denominator)) {
                    (Some(n), Some(den)) => {
                        let a = p.col(Col::Sum(n.source.clone()));
                        let b = p.col(Col::Sum(den.source.clone()));
                        Some(How {
                            kind: Kind::Ratio,
                            a,
                            b,
                            scale_a: scale_of(n),
                            scale_b: scale_of(den),
                            multiplier: d.multiplier.filter(|m| m.is_finite()).unwrap_or(1.0),
                        })
                    }
                    _ => None,
                }
            } else {
                None
            };
            p.how.push(how);
        }
        if p.how.iter().any(Option::is_some) {
            plans.push(p);
        }
    }
    let metrics = query
        .metrics
        .iter()
        .enumerate()
        .map(|(i, key)| {
            let having: Vec<&ObjectSemantics> = plans
                .iter()
                .filter(|p| p.how.get(i).is_some_and(Option::is_some))
                .map(|p| &p.info.semantics)
                .collect();
            // (unit, kind, comparable, amounts involved)
            let traits: Vec<(Unit, Option<Aggregation>, bool, bool)> = having
                .iter()
                .map(|s| match (s.metric(key), s.derived(key)) {
                    (Some(m), _) => {
                        let weight_is_amount = m
                            .weight_by
                            .as_deref()
                            .and_then(|w| s.metric(w))
                            .is_some_and(|w| w.unit == Unit::Currency);
                        (
                            m.unit,
                            Some(m.aggregation),
                            m.comparable,
                            m.unit == Unit::Currency || weight_is_amount,
                        )
                    }
                    (None, Some(d)) => {
                        let parts = [s.metric(&d.numerator), s.metric(&d.denominator)];
                        (
                            d.unit,
                            None,
                            parts.iter().all(|m| m.is_some_and(|m| m.comparable)),
                            d.unit == Unit::Currency
                                || parts
                                    .iter()
                                    .any(|m| m.is_some_and(|m| m.unit == Unit::Currency)),
                        )
                    }
                    (None, None) => (Unit::Count, None, false, false),
                })
                .collect();
            let combinable = traits.len() <= 1
                || traits.first().is_some_and(|first| {
                    traits
                        .iter()
                        .all(|t| t.2 && t.0 == first.0 && t.1 == first.1)
                });
            MetricPlan {
                key: key.clone(),
                split_provider: !combinable,
                split_currency: traits.iter().any(|t| t.3),
            }
        })
        .collect();
    (plans, metrics)
}

/// Sums of one metric over a set of rows.
#[derive(Debug, Default)]
struct Acc {
    kind: Option<Kind>,
    multiplier: f64,
    sum: f64,
    num: f64,
    den: f64,
    has: bool,
    /// Non-additive: each day's value (the day's sum), averaged over days.
    daily: BTreeMap<Date, f64>,
    days: std::collections::BTreeSet<Date>,
}

impl Acc {
    fn add(&mut self, how: &How, row: &AggRow) {
        let get = |i: usize| row.sums.get(i).copied().flatten();
        self.kind = Some(how.kind);
        self.multiplier = how.multiplier;
        let added = match how.kind {
            Kind::Sum => get(how.a).map(|v| self.sum += v * how.scale_a).is_some(),
            Kind::NonAdditive => get(how.a)
                .map(|v| *self.daily.entry(row.bucket).or_default() += v * how.scale_a)
                .is_some(),
            Kind::Weighted => match (get(how.a), get(how.b)) {
                (Some(p), Some(w)) => {
                    self.num += p * how.scale_a;
                    self.den += w;
                    true
                }
                _ => false,
            },
            Kind::Ratio => {
                let (n, d) = (get(how.a), get(how.b));
                self.num += n.unwrap_or(0.0) * how.scale_a;
                self.den += d.unwrap_or(0.0) * how.scale_b;
                n.is_some() || d.is_some()
            }
        };
        if added {
            self.has = true;
            self.days.insert(row.bucket);
        }
    }

    fn value(&self) -> Option<f64> {
        if !self.has {
            return None;
        }
        let v = match self.kind? {
            Kind::Sum => Some(self.sum),
            Kind::NonAdditive => {
                let n = self.daily.len();
                (n > 0).then(|| self.daily.values().sum::<f64>() / n as f64)
            }
            Kind::Weighted => (self.den != 0.0).then(|| self.num / self.den),
            Kind::Ratio => (self.den != 0.0).then(|| self.num / self.den * self.multiplier),
        };
        v.filter(|v| v.is_finite())
    }
}

fn currency_of(row: &AggRow) -> String {
    row.currency
        .clone()
        .unwrap_or_else(|| UNKNOWN_CURRENCY.to_owned())
}

fn spec_for(
    viewer: &Viewer,
    p: &SourcePlan<'_>,
    query: &MetricQuery,
    (from, to): (Date, Date),
    bucket: Bucket,
    grouped: bool,
) -> AggregateSpec {
    let mut objects = vec![p.info.object.clone()];
    // Rows written without an object are described by the provider's
    // metrics object (see `semantics_of`).
    objects.push(String::new());
    AggregateSpec {
        workspace: viewer.workspace,
        user: viewer.user,
        provider: p.info.key.clone(),
        objects,
        from,
        to,
        bucket,
        group_account: grouped && query.group_by.contains(&GroupKey::Account),
        group_dims: if grouped {
            p.group_dims.clone()
        } else {
            Vec::new()
        },
        accounts: query.accounts.clone(),
        dim_filters: p.dim_filters.clone(),
        cols: p.cols.clone(),
        daily_totals: false,
    }
}

type TotalKey = (usize, Split);

/// Per metric and part: sums over a range, with the providers that added.
#[derive(Default)]
struct Totals {
    parts: BTreeMap<TotalKey, (Acc, std::collections::BTreeSet<String>)>,
    /// (metric, part, day) → that day's sums (sparklines).
    daily: BTreeMap<(usize, Split, Date), Acc>,
}

fn fold_totals(
    totals: &mut Totals,
    p: &SourcePlan<'_>,
    metrics: &[MetricPlan],
    rows: &[AggRow],
    series: bool,
) {
    for row in rows {
        for (i, (how, m)) in p.how.iter().zip(metrics).enumerate() {
            let Some(how) = how else { continue };
            let split = Split {
                provider: m.split_provider.then(|| p.info.key.clone()),
                currency: m.split_currency.then(|| currency_of(row)),
            };
            let entry = totals.parts.entry((i, split.clone())).or_default();
            entry.0.add(how, row);
            entry.1.insert(p.info.key.clone());
            if series {
                totals
                    .daily
                    .entry((i, split, row.bucket))
                    .or_default()
                    .add(how, row);
            }
        }
    }
}

struct Evaluated {
    result: QueryResult,
    /// Per metric (request order), when asked for.
    series: Vec<Vec<SplitSeries>>,
}

/// The first provisional day of each provider: inside its settling window
/// counted back from the source's today (today itself is always partial).
/// The source's today is the earliest of the workspace's and its accounts'
/// (an account behind the workspace's zone hasn't finished its day).
fn provisional_from(info: &ProviderInfo, today: Date) -> Date {
    let now = crate::storage::now();
    let source_today = info
        .accounts
        .iter()
        .filter_map(|a| a.time_zone.as_deref())
        .map(|tz| crate::tenancy::zone::Zone::from_stored(tz).date_of(&now))
        .fold(today, Date::min);
    source_today
        .checked_sub(time::Duration::days(i64::from(info.settling_days)))
        .unwrap_or(source_today)
}

async fn evaluate(
    state: &AppState,
    viewer: &Viewer,
    catalog: &Catalog,
    today: Date,
    query: &MetricQuery,
    (want_rows, want_series): (bool, bool),
) -> AppResult<Evaluated> {
    let sources: Vec<&ProviderInfo> = catalog
        .providers
        .iter()
        .filter(|p| query.providers.is_empty() || query.providers.contains(&p.key))
        .collect();
    let (plans, metrics) = plan(&sources, query);
    let compared = compared_range(query.from, query.to, query.compare);
    let needs_days = plans
        .iter()
        .any(|p| p.how.iter().flatten().any(|h| h.kind == Kind::NonAdditive));
    let row_bucket = match (query.grain, needs_days) {
        (Grain::Day, _) | (_, true) => Bucket::Day,
        (Grain::Week, false) => Bucket::Week,
        (Grain::Month, false) => Bucket::Month,
    };
    let split_provider_rows =
        metrics.iter().any(|m| m.split_provider) && !query.group_by.contains(&GroupKey::Provider);
    let split_currency_rows = metrics.iter().any(|m| m.split_currency);
    let names: BTreeMap<(&str, &str), &str> = catalog
        .providers
        .iter()
        .flat_map(|p| {
            p.accounts
                .iter()
                .map(move |a| ((p.key.as_str(), a.id.as_str()), a.name.as_str()))
        })
        .collect();

    type RowKey = (Date, BTreeMap<String, String>, Split);
    // Per metric sums, the providers that added, the account's name.
    type RowSums = (Vec<Acc>, std::collections::BTreeSet<String>, Option<String>);
    let mut rows: BTreeMap<RowKey, RowSums> = BTreeMap::new();
    let mut main = Totals::default();
    let mut before = Totals::default();
    for p in &plans {
        let ungrouped_days = want_rows && query.group_by.is_empty() && row_bucket == Bucket::Day;
        if want_rows {
            let mut spec = spec_for(viewer, p, query, (query.from, query.to), row_bucket, true);
            // The totals come from the same scan.
            spec.daily_totals = !ungrouped_days;
            let found = state.store.aggregate_metrics(&spec).await?;
            let (days, found): (Vec<AggRow>, Vec<AggRow>) =
                found.into_iter().partition(|r| r.daily);
            fold_totals(&mut main, p, &metrics, &days, want_series);
            for r in &found {
                let mut group = BTreeMap::new();
                let mut dim_index = 0;
                for g in &query.group_by {
                    match g {
                        GroupKey::Provider => {
                            group.insert("provider".to_owned(), p.info.key.clone());
                        }
                        GroupKey::Account => {
                            group.insert(
                                "account".to_owned(),
                                r.account.clone().unwrap_or_default(),
                            );
                        }
                        GroupKey::Dimension(k) => {
                            let v = r
                                .dims
                                .get(dim_index)
                                .cloned()
                                .flatten()
                                .unwrap_or_else(|| NOT_SET.to_owned());
                            dim_index += 1;
                            group.insert(k.clone(), v);
                        }
                    }
                }
                let split = Split {
                    provider: split_provider_rows.then(|| p.info.key.clone()),
                    currency: split_currency_rows.then(|| currency_of(r)),
                };
                let account_name = r
                    .account
                    .as_deref()
                    .and_then(|a| names.get(&(p.info.key.as_str(), a)))
                    .map(|n| (*n).to_owned());
                let entry = rows
                    .entry((period_of(r.bucket, query.grain), group, split))
                    .or_insert_with(|| {
                        (
                            (0..metrics.len()).map(|_| Acc::default()).collect(),
                            Default::default(),
                            None,
                        )
                    });
                for (how, acc) in p.how.iter().zip(entry.0.iter_mut()) {
                    if let Some(how) = how {
                        acc.add(how, r);
                    }
                }
                entry.1.insert(p.info.key.clone());
                if entry.2.is_none() {
                    entry.2 = account_name;
                }
            }
            if ungrouped_days {
                fold_totals(&mut main, p, &metrics, &found, want_series);
            }
        }
        // The previous period ends the day before the range: one scan
        // reads both (the KPI board's usual case).
        let adjacent = compared.filter(|(_, to)| to.next_day() == Some(query.from));
        if !want_rows {
            let from = adjacent.map_or(query.from, |(from, _)| from);
            let spec = spec_for(viewer, p, query, (from, query.to), Bucket::Day, false);
            let found = state.store.aggregate_metrics(&spec).await?;
            let (found, earlier): (Vec<AggRow>, Vec<AggRow>) =
                found.into_iter().partition(|r| r.bucket >= query.from);
            fold_totals(&mut main, p, &metrics, &found, want_series);
            fold_totals(&mut before, p, &metrics, &earlier, false);
        }
        if let Some(range) = compared.filter(|_| want_rows || adjacent.is_none()) {
            let spec = spec_for(viewer, p, query, range, Bucket::Day, false);
            let found = state.store.aggregate_metrics(&spec).await?;
            fold_totals(&mut before, p, &metrics, &found, false);
        }
    }

    // Each provider's first provisional day, worked out once.
    let provisional_start: BTreeMap<&str, Date> = sources
        .iter()
        .map(|info| (info.key.as_str(), provisional_from(info, today)))
        .collect();
    let provisional_until = |providers: &std::collections::BTreeSet<String>, last: Date| {
        providers
            .iter()
            .filter_map(|k| provisional_start.get(k.as_str()))
            .any(|start| last >= *start)
    };
    let result_rows: Vec<ResultRow> = rows
        .into_iter()
        .map(
            |((period, group, split), (accs, providers, account_name))| {
                let last = period_end(period, query.grain).min(query.to);
                ResultRow {
                    period,
                    group,
                    account_name,
                    split,
                    values: metrics
                        .iter()
                        .zip(&accs)
                        .map(|(m, acc)| (m.key.clone(), acc.value()))
                        .collect(),
                    provisional: provisional_until(&providers, last),
                    providers: providers.into_iter().collect(),
                }
            },
        )
        .collect();

    let mut totals = Vec::with_capacity(metrics.len());
    let mut series = Vec::new();
    for (i, m) in metrics.iter().enumerate() {
        let mut keys: Vec<&Split> = main
            .parts
            .keys()
            .chain(before.parts.keys())
            .filter(|(j, _)| *j == i)
            .map(|(_, s)| s)
            .collect();
        keys.sort();
        keys.dedup();
        let mut parts = Vec::new();
        for split in keys {
            let now = main.parts.get(&(i, split.clone())).filter(|(a, _)| a.has);
            let had_before = before
                .parts
                .get(&(i, split.clone()))
                .is_some_and(|(a, _)| a.has);
            if now.is_none() && !had_before {
                continue;
            }
            let value = now.and_then(|(a, _)| a.value());
            let prior = compared.and_then(|_| {
                before
                    .parts
                    .get(&(i, split.clone()))
                    .and_then(|(a, _)| a.value())
            });
            let delta = value.zip(prior).map(|(v, c)| v - c);
            parts.push(TotalPart {
                split: split.clone(),
                value,
                compared: prior,
                delta,
                delta_ratio: delta
                    .zip(prior)
                    .filter(|(_, c)| *c != 0.0)
                    .map(|(d, c)| d / c.abs()),
                days_with_data: now
                    .map(|(a, _)| u32::try_from(a.days.len()).unwrap_or(u32::MAX))
                    .unwrap_or(0),
            });
        }
        // Providers of the metric whose settling window reaches into the range.
        let mut notes = Vec::new();
        for p in plans
            .iter()
            .filter(|p| p.how.get(i).is_some_and(Option::is_some))
        {
            if provisional_start
                .get(p.info.key.as_str())
                .is_some_and(|start| query.to >= *start)
            {
                notes.push(if p.info.settling_days == 0 {
                    format!("{}: today's numbers are partial", p.info.display_name)
                } else {
                    format!(
                        "{} may still revise the last {} days",
                        p.info.display_name, p.info.settling_days
                    )
                });
            }
        }
        totals.push(MetricTotal {
            key: m.key.clone(),
            provisional: !notes.is_empty(),
            provisional_notes: notes,
            parts: parts.clone(),
        });
        if want_series {
            let days: Vec<Date> = {
                let mut d = Some(query.from);
                let mut out = Vec::new();
                while let Some(day) = d.filter(|d| *d <= query.to) {
                    out.push(day);
                    d = day.next_day();
                }
                out
            };
            series.push(
                parts
                    .iter()
                    .map(|part| SplitSeries {
                        split: part.split.clone(),
                        values: days
                            .iter()
                            .map(|d| {
                                main.daily
                                    .get(&(i, part.split.clone(), *d))
                                    .and_then(Acc::value)
                            })
                            .collect(),
                    })
                    .collect(),
            );
        }
    }
    let info_for = |key: &str| {
        catalog
            .metrics
            .iter()
            .find(|m| m.key == key)
            .cloned()
            .map(|mut info| {
                info.providers
                    .retain(|p| sources.iter().any(|s| s.key == *p));
                info
            })
    };
    Ok(Evaluated {
        result: QueryResult {
            from: query.from,
            to: query.to,
            grain: query.grain,
            compared: compared.map(|(from, to)| ComparedRange { from, to }),
            metrics: query.metrics.iter().filter_map(|k| info_for(k)).collect(),
            rows: result_rows,
            totals,
            coverage: sources
                .iter()
                .map(|p| Coverage {
                    provider: p.key.clone(),
                    first_day: p.first_day,
                    last_day: p.last_day,
                })
                .collect(),
        },
        series,
    })
}

/// The group value of rows without the dimension.
pub const NOT_SET: &str = "(not set)";

/// What every query of one request shares: the viewer's catalog (each
/// source's coverage included) and today. A page that asks several
/// queries reads it once instead of once per query.
pub struct QueryContext {
    pub catalog: Catalog,
    pub today: Date,
}

pub async fn context(state: &AppState, viewer: &Viewer) -> AppResult<QueryContext> {
    Ok(QueryContext {
        catalog: catalog(state, viewer).await?,
        today: workspace_today(state, viewer.workspace).await?,
    })
}

/// Runs a query over the viewer's visible data (workspace connections + the viewer's own personal ones).
pub async fn run(state: &AppState, viewer: &Viewer, query: &MetricQuery) -> AppResult<QueryResult> {
    run_in(state, viewer, &context(state, viewer).await?, query).await
}

/// [`run`] with the request's context.
pub async fn run_in(
    state: &AppState,
    viewer: &Viewer,
    ctx: &QueryContext,
    query: &MetricQuery,
) -> AppResult<QueryResult> {
    Ok(
        evaluate(state, viewer, &ctx.catalog, ctx.today, query, (true, false))
            .await?
            .result,
    )
}

/// The dashboard's tiles: every metric of the catalog (in catalog order)
/// with totals, comparison and a daily series, over the preset's range.
pub async fn kpis(state: &AppState, viewer: &Viewer, request: &KpiRequest) -> AppResult<KpiBoard> {
    kpis_in(state, viewer, &context(state, viewer).await?, request).await
}

/// [`kpis`] with the request's context.
pub async fn kpis_in(
    state: &AppState,
    viewer: &Viewer,
    ctx: &QueryContext,
    request: &KpiRequest,
) -> AppResult<KpiBoard> {
    let (catalog, today) = (&ctx.catalog, ctx.today);
    let (from, to) = request.range.resolve(today);
    check_range(from, to, state.settings.metrics.max_range_days)?;
    let known: Vec<&str> = catalog.providers.iter().map(|p| p.key.as_str()).collect();
    for p in &request.providers {
        if !known.contains(&p.as_str()) {
            return Err(AppError::validation(
                "provider",
                format!("no metrics of provider {p:?} in this workspace"),
            ));
        }
    }
    let metrics: Vec<String> = catalog
        .metrics
        .iter()
        .filter(|m| {
            request.providers.is_empty()
                || m.providers.iter().any(|p| request.providers.contains(p))
        })
        .map(|m| m.key.clone())
        .collect();
    let query = MetricQuery {
        metrics,
        from,
        to,
        grain: Grain::Day,
        group_by: Vec::new(),
        providers: request.providers.clone(),
        accounts: request.accounts.clone(),
        dimensions: Vec::new(),
        compare: request.compare,
    };
    let evaluated = evaluate(state, viewer, catalog, today, &query, (false, true)).await?;
    let QueryResult {
        compared,
        metrics,
        totals,
        coverage,
        ..
    } = evaluated.result;
    let tiles = metrics
        .into_iter()
        .zip(totals)
        .zip(evaluated.series)
        .map(|((metric, total), series)| KpiTile {
            metric,
            total,
            series,
        })
        .collect();
    Ok(KpiBoard {
        from,
        to,
        compared,
        today,
        tiles,
        coverage,
    })
}

// ---------------------------------------------------------------- revisions

/// A stored day's value that a later read changed ("revised since your
/// last visit").
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Revision {
    pub provider: String,
    pub account_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_name: Option<String>,
    #[schema(value_type = String, format = Date)]
    #[serde(with = "iso_date")]
    pub date: Date,
    /// The row's dimensions (canonical JSON, `{}` for none).
    pub dimensions: String,
    /// Canonical key (the stored field name when the layer doesn't describe it).
    pub metric: String,
    pub label: String,
    /// Scaled like the metric (Google Ads cost in currency units).
    pub old_value: Option<f64>,
    pub new_value: Option<f64>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: time::OffsetDateTime,
}

pub const MAX_REVISIONS: i64 = 500;

/// Values of the viewer's visible data revised after `since`, newest first
/// (at most [`MAX_REVISIONS`]). The log keeps revisions of days inside each
/// object's settling window plus `PLUGBOARD_METRICS_REVISION_MARGIN_DAYS`.
pub async fn revisions_since(
    state: &AppState,
    viewer: &Viewer,
    since: time::OffsetDateTime,
) -> AppResult<Vec<Revision>> {
    let stored = state
        .store
        .metric_revisions_since(viewer.workspace, viewer.user, since, MAX_REVISIONS)
        .await?;
    let accounts = state.store.list_provider_accounts(viewer.workspace).await?;
    Ok(stored
        .into_iter()
        .map(|r| {
            let def = state
                .providers
                .get(&r.provider)
                .and_then(|p| super::semantics_of(p, &r.object))
                .and_then(|(_, s)| s.metrics.iter().find(|m| m.source == r.metric).cloned());
            let scale = def.as_ref().map_or(1.0, scale_of);
            let account_name = accounts
                .iter()
                .find(|a| {
                    a.provider == r.provider
                        && a.external_id == r.account_id
                        && r.connection_id.is_none_or(|c| c == a.connection_id)
                })
                .map(|a| a.name.clone());
            Revision {
                provider: r.provider,
                account_id: r.account_id,
                account_name,
                date: r.metric_date,
                dimensions: r.dimension_key,
                metric: def
                    .as_ref()
                    .map_or_else(|| r.metric.clone(), |d| d.key.clone()),
                label: def.map_or_else(|| r.metric.clone(), |d| d.label),
                old_value: r.old_value.map(|v| v * scale),
                new_value: r.new_value.map(|v| v * scale),
                at: r.at,
            }
        })
        .collect())
}

// ---------------------------------------------------------------- CSV

/// The rows as CSV: period, group columns, provider, currency, one column
/// per metric, provisional. Cells are guarded against formula injection.
pub fn to_csv(result: &QueryResult, query: &MetricQuery) -> crate::web::csv::CsvWriter {
    let mut csv = crate::web::csv::CsvWriter::new();
    let group_names: Vec<String> = query
        .group_by
        .iter()
        .filter(|g| **g != GroupKey::Provider)
        .map(|g| match g {
            GroupKey::Provider => "provider".to_owned(),
            GroupKey::Account => "account".to_owned(),
            GroupKey::Dimension(k) => k.clone(),
        })
        .collect();
    let with_account_name = query.group_by.contains(&GroupKey::Account);
    let mut header: Vec<String> = vec!["period".to_owned()];
    header.extend(group_names.iter().cloned());
    if with_account_name {
        header.push("account_name".to_owned());
    }
    header.push("provider".to_owned());
    header.push("currency".to_owned());
    header.extend(query.metrics.iter().cloned());
    header.push("provisional".to_owned());
    csv.row(&header);
    for row in &result.rows {
        let mut cells: Vec<String> = vec![row.period.to_string()];
        for g in &group_names {
            cells.push(row.group.get(g).cloned().unwrap_or_default());
        }
        if with_account_name {
            cells.push(row.account_name.clone().unwrap_or_default());
        }
        cells.push(
            row.group
                .get("provider")
                .cloned()
                .or_else(|| row.split.provider.clone())
                .unwrap_or_else(|| row.providers.join(" + ")),
        );
        cells.push(row.split.currency.clone().unwrap_or_default());
        for m in &query.metrics {
            cells.push(crate::web::csv::number_cell(
                row.values.get(m).copied().flatten(),
            ));
        }
        cells.push(row.provisional.to_string());
        csv.row(&cells);
    }
    csv
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    fn pairs(q: &str) -> Vec<(String, String)> {
        form_urlencoded::parse(q.as_bytes()).into_owned().collect()
    }

    fn catalog() -> Catalog {
        let semantics: ObjectSemantics = serde_json::from_value(serde_json::json!({
            "metrics": [{"source": "s", "key": "sessions", "label": "Sessions", "unit": "count", "aggregation": "sum"}],
            "dimensions": [{"source": "channel", "key": "channel", "label": "Channel"}],
        }))
        .unwrap();
        let info = ProviderInfo {
            key: "sandbox".into(),
            display_name: "Sandbox".into(),
            object: "daily_metrics".into(),
            settling_days: 3,
            metrics: metric_infos("sandbox", &semantics),
            accounts: Vec::new(),
            first_day: None,
            last_day: None,
            semantics,
        };
        Catalog {
            metrics: info.metrics.clone(),
            dimensions: vec![DimensionInfo {
                key: "channel".into(),
                label: "Channel".into(),
                providers: vec!["sandbox".into()],
            }],
            providers: vec![info],
        }
    }

    fn agg(day: Date, sums: &[Option<f64>]) -> AggRow {
        AggRow {
            daily: false,
            bucket: day,
            account: None,
            dims: Vec::new(),
            object: "o".into(),
            currency: None,
            sums: sums.to_vec(),
        }
    }

    #[test]
    fn weighted_averages_and_scales_follow_the_layer() {
        let semantics: ObjectSemantics = serde_json::from_value(serde_json::json!({
            "metrics": [
                {"source": "impressions", "key": "impressions", "label": "I", "unit": "count", "aggregation": "sum"},
                {"source": "position", "key": "position", "label": "P", "unit": "ratio", "aggregation": "weighted_average", "weightBy": "impressions"},
                {"source": "cost_micros", "key": "cost", "label": "C", "unit": "currency", "aggregation": "sum", "scale": 0.000001},
            ],
            "currency": {"from": "account"},
        }))
        .unwrap();
        let mut c = catalog();
        c.providers[0].semantics = semantics;
        let query = MetricQuery {
            metrics: vec!["position".into(), "cost".into()],
            from: date!(2026 - 01 - 01),
            to: date!(2026 - 01 - 02),
            grain: Grain::Day,
            group_by: Vec::new(),
            providers: Vec::new(),
            accounts: Vec::new(),
            dimensions: Vec::new(),
            compare: Compare::None,
        };
        let sources: Vec<&ProviderInfo> = c.providers.iter().collect();
        let (plans, metrics) = plan(&sources, &query);
        assert_eq!(
            plans[0].cols,
            vec![
                Col::Product("position".into(), "impressions".into()),
                Col::Sum("impressions".into()),
                Col::Sum("cost_micros".into()),
            ]
        );
        assert!(metrics[1].split_currency && !metrics[0].split_currency);
        let (mut position, mut cost) = (Acc::default(), Acc::default());
        // Position 2 on 100 impressions, position 10 on 300: (200 + 3000) / 400.
        for row in [
            agg(
                date!(2026 - 01 - 01),
                &[Some(200.0), Some(100.0), Some(1_500_000.0)],
            ),
            agg(date!(2026 - 01 - 02), &[Some(3000.0), Some(300.0), None]),
        ] {
            position.add(&plans[0].how[0].unwrap(), &row);
            cost.add(&plans[0].how[1].unwrap(), &row);
        }
        assert_eq!(position.value(), Some(8.0));
        assert_eq!(cost.value(), Some(1.5));
        assert_eq!(cost.days.len(), 1);
    }

    #[test]
    fn periods_are_iso_weeks_and_months() {
        // 2027-01-03 is a Sunday: its week starts Monday 2026-12-28.
        assert_eq!(
            period_of(date!(2027 - 01 - 03), Grain::Week),
            date!(2026 - 12 - 28)
        );
        assert_eq!(
            period_of(date!(2026 - 12 - 28), Grain::Week),
            date!(2026 - 12 - 28)
        );
        assert_eq!(
            period_of(date!(2028 - 02 - 29), Grain::Month),
            date!(2028 - 02 - 01)
        );
        assert_eq!(
            period_end(date!(2028 - 02 - 01), Grain::Month),
            date!(2028 - 02 - 29)
        );
        assert_eq!(
            period_end(date!(2026 - 12 - 28), Grain::Week),
            date!(2027 - 01 - 03)
        );
    }

    #[test]
    fn compared_ranges() {
        assert_eq!(
            compared_range(
                date!(2026 - 03 - 01),
                date!(2026 - 03 - 31),
                Compare::PreviousPeriod
            ),
            Some((date!(2026 - 01 - 29), date!(2026 - 02 - 28)))
        );
        assert_eq!(
            compared_range(
                date!(2028 - 02 - 29),
                date!(2028 - 02 - 29),
                Compare::PreviousYear
            ),
            Some((date!(2027 - 02 - 28), date!(2027 - 02 - 28)))
        );
        assert_eq!(
            compared_range(date!(2026 - 03 - 01), date!(2026 - 03 - 01), Compare::None),
            None
        );
    }

    #[test]
    fn presets_end_yesterday() {
        let today = date!(2026 - 12 - 03);
        assert_eq!(
            RangePreset::Last7.resolve(today),
            (date!(2026 - 11 - 26), date!(2026 - 12 - 02))
        );
        assert_eq!(RangePreset::Last28.resolve(today).0, date!(2026 - 11 - 05));
        assert_eq!(
            RangePreset::MonthToDate.resolve(today),
            (date!(2026 - 12 - 01), date!(2026 - 12 - 02))
        );
        let first = date!(2026 - 12 - 01);
        assert_eq!(RangePreset::MonthToDate.resolve(first), (first, first));
    }

    #[test]
    fn queries_parse_with_defaults_and_name_bad_fields() {
        let today = date!(2026 - 12 - 03);
        let q = parse_query(
            &pairs("metrics=sessions&groupBy=account,channel&dim.channel=web&account=a&account=b"),
            &catalog(),
            today,
            1096,
        )
        .unwrap();
        assert_eq!(
            (q.from, q.to),
            (date!(2026 - 11 - 05), date!(2026 - 12 - 02))
        );
        assert_eq!(
            q.group_by,
            vec![GroupKey::Account, GroupKey::Dimension("channel".into())]
        );
        assert_eq!(q.accounts, vec!["a".to_owned(), "b".to_owned()]);
        assert_eq!(q.dimensions, vec![("channel".to_owned(), "web".to_owned())]);
        for (bad, field) in [
            ("metrics=nope", "metrics"),
            ("metrics=sessions&from=2026-12-02&to=2026-12-01", "from"),
            ("metrics=sessions&from=2020-01-01&to=2026-01-01", "to"),
            ("metrics=sessions&grain=year", "grain"),
            ("metrics=sessions&compare=lastweek", "compare"),
            ("metrics=sessions&dim.device=x", "dim.device"),
        ] {
            let err = parse_query(&pairs(bad), &catalog(), today, 1096).unwrap_err();
            assert!(
                matches!(&err, AppError::Validation { field: Some(f), .. } if f == field),
                "{bad}: {err:?}"
            );
        }
        let k = parse_kpi_request(
            &pairs("range=custom&from=2026-01-01&to=2026-01-31&compare=previous_year"),
            today,
        )
        .unwrap();
        assert_eq!(
            k.range,
            RangePreset::Custom {
                from: date!(2026 - 01 - 01),
                to: date!(2026 - 01 - 31)
            }
        );
        assert_eq!(k.compare, Compare::PreviousYear);
    }
}
