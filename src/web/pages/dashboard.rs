//! The Data Hub dashboard (`/data`): KPI tiles, the chosen metric's line
//! chart with its comparison, a bar chart per provider or account, and
//! where each source stands (freshness, coverage, revisions). Every number
//! comes from `metrics::query`; this module only arranges it.
//!
//! The view lives in the URL (`scope`, `range`, `from`, `to`, `compare`,
//! `metric`), so a bookmark or a shared link shows the same thing.

use std::collections::BTreeMap;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use time::{Date, Duration, OffsetDateTime};

use super::kit::FormState;
use super::{Layout, with_status};
use crate::app::AppState;
use crate::auth::extract::CurrentTenant;
use crate::connections::{Connection, Viewer};
use crate::error::{AppError, AppResult};
use crate::metrics::query::{
    self, Compare, Grain, GroupKey, KpiBoard, KpiTile, MetricQuery, MetricTotal, Split,
};
use crate::metrics::semantic::{Aggregation, Unit};
use crate::web::charts::{Bar, BarChart, LineChart, Series, Sparkline, ValueFormat};

/// Session key: when this person last opened the dashboard (unix seconds),
/// for "revised since your last visit".
const LAST_VISIT_KEY: &str = "dashboard_last_visit";
/// The connection cards (moved off `/data` by the hub pages): where empty
/// states send people to connect, choose accounts or sync.
const CONNECTIONS_PAGE: &str = super::CONNECTIONS;
/// Bars per chart: beyond this the chart stops being readable on a phone.
const MAX_BARS: usize = 12;
const MAX_REVISIONS_SHOWN: usize = 10;

/// The query string as pairs, in order (repeated keys kept).
pub fn pairs(raw: Option<&str>) -> Vec<(String, String)> {
    raw.map(|q| {
        form_urlencoded::parse(q.as_bytes())
            .into_owned()
            .collect::<Vec<_>>()
    })
    .unwrap_or_default()
}

fn first<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// The dashboard's scope as the selector names it: `all`, `p:<provider>`
/// or `a:<provider>:<account id>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    All,
    Provider(String),
    Account { provider: String, account: String },
}

impl Scope {
    pub fn parse(value: Option<&str>) -> AppResult<Scope> {
        let Some(v) = value.filter(|v| !v.is_empty() && *v != "all") else {
            return Ok(Scope::All);
        };
        let bad =
            || AppError::validation("scope", "choose all providers, a provider or an account");
        if let Some(p) = v.strip_prefix("p:") {
            if p.is_empty() {
                return Err(bad());
            }
            return Ok(Scope::Provider(p.to_owned()));
        }
        if let Some(rest) = v.strip_prefix("a:")
            && let Some((provider, account)) = rest.split_once(':')
            && !provider.is_empty()
            && !account.is_empty()
        {
            return Ok(Scope::Account {
                provider: provider.to_owned(),
                account: account.to_owned(),
            });
        }
        Err(bad())
    }

    pub fn value(&self) -> String {
        match self {
            Scope::All => "all".to_owned(),
            Scope::Provider(p) => format!("p:{p}"),
            Scope::Account { provider, account } => format!("a:{provider}:{account}"),
        }
    }

    fn providers(&self) -> Vec<String> {
        match self {
            Scope::All => Vec::new(),
            Scope::Provider(p) | Scope::Account { provider: p, .. } => vec![p.clone()],
        }
    }

    fn accounts(&self) -> Vec<String> {
        match self {
            Scope::Account { account, .. } => vec![account.clone()],
            _ => Vec::new(),
        }
    }
}

/// The dashboard's state as typed in the URL, defaults filled in.
#[derive(Debug, Clone)]
pub struct ViewState {
    pub scope: String,
    pub range: String,
    pub from: String,
    pub to: String,
    pub compare: String,
    pub metric: String,
}

impl ViewState {
    pub fn from_pairs(pairs: &[(String, String)]) -> ViewState {
        let get = |k: &str| first(pairs, k).unwrap_or("").to_owned();
        let or = |v: String, d: &str| if v.is_empty() { d.to_owned() } else { v };
        ViewState {
            scope: or(get("scope"), "all"),
            range: or(get("range"), "28d"),
            from: get("from"),
            to: get("to"),
            compare: or(get("compare"), "previous_period"),
            metric: get("metric"),
        }
    }

    /// What `query::parse_kpi_request` reads.
    fn kpi_pairs(&self, scope: &Scope) -> Vec<(String, String)> {
        let mut out = vec![
            ("range".to_owned(), self.range.clone()),
            ("compare".to_owned(), self.compare.clone()),
        ];
        if self.range == "custom" {
            out.push(("from".to_owned(), self.from.clone()));
            out.push(("to".to_owned(), self.to.clone()));
        }
        out.extend(
            scope
                .providers()
                .into_iter()
                .map(|p| ("provider".to_owned(), p)),
        );
        out.extend(
            scope
                .accounts()
                .into_iter()
                .map(|a| ("account".to_owned(), a)),
        );
        out
    }

    /// This view's link with `metric` (and nothing else) changed.
    pub fn href_with_metric(&self, metric: &str) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.append_pair("scope", &self.scope);
        q.append_pair("range", &self.range);
        if self.range == "custom" {
            q.append_pair("from", &self.from);
            q.append_pair("to", &self.to);
        }
        q.append_pair("compare", &self.compare);
        q.append_pair("metric", metric);
        format!("/data?{}", q.finish())
    }

    pub fn form(&self) -> FormState {
        FormState::with_values([
            ("scope", self.scope.as_str()),
            ("range", self.range.as_str()),
            ("from", self.from.as_str()),
            ("to", self.to.as_str()),
            ("compare", self.compare.as_str()),
            ("metric", self.metric.as_str()),
        ])
    }
}

pub struct ScopeOption {
    pub value: String,
    pub label: String,
}

/// One value of a tile: the whole total, or one currency's / provider's.
pub struct PartView {
    /// Empty when the tile has a single part.
    pub label: String,
    pub value: String,
    /// The unformatted value, for tests and scripts (`data-value`).
    pub raw: String,
    /// The part's currency and provider (`data-currency`, `data-provider`).
    pub currency: String,
    pub provider: String,
    pub compared: Option<String>,
    pub delta: Option<String>,
    /// `up`, `down` or `flat`.
    pub trend: &'static str,
    pub spark: Option<String>,
}

pub struct TileView {
    pub key: String,
    pub label: String,
    pub href: String,
    pub chosen: bool,
    /// Non-additive: the value is a daily average.
    pub per_day: bool,
    pub provisional: bool,
    pub notes: Vec<String>,
    pub parts: Vec<PartView>,
}

pub struct ChartView {
    pub svg: String,
    /// (label, dashed) per line, for the legend.
    pub legend: Vec<(String, bool)>,
    pub head: Vec<String>,
    pub rows: Vec<Vec<String>>,
    pub caption: String,
}

pub struct BarsView {
    pub svg: String,
    pub rows: Vec<(String, String)>,
    pub caption: String,
}

pub struct Freshness {
    pub provider: String,
    pub text: String,
    pub title: String,
    pub failed_job: Option<uuid::Uuid>,
    pub coverage: Option<String>,
}

pub struct TodayPart {
    pub label: String,
    pub value: String,
}

pub struct RevisionView {
    pub text: String,
}

/// What to do first when there is nothing to show yet.
pub struct EmptyState {
    pub title: String,
    pub hint: String,
    pub href: String,
    pub action: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "dashboard.html")]
pub struct DashboardPage {
    layout: Layout,
    form: FormState,
    view: ViewState,
    scopes: Vec<ScopeOption>,
    ranges: Vec<(&'static str, &'static str)>,
    compares: Vec<(&'static str, &'static str)>,
    period: String,
    compared_period: Option<String>,
    tiles: Vec<TileView>,
    line_charts: Vec<ChartView>,
    bars: Option<BarsView>,
    freshness: Vec<Freshness>,
    today: Vec<TodayPart>,
    today_label: String,
    revisions: Vec<RevisionView>,
    empty: Option<EmptyState>,
}

const RANGES: [(&str, &str); 5] = [
    ("7d", "Last 7 days"),
    ("28d", "Last 28 days"),
    ("90d", "Last 90 days"),
    ("mtd", "Month to date"),
    ("custom", "Custom"),
];
const COMPARES: [(&str, &str); 3] = [
    ("previous_period", "Previous period"),
    ("previous_year", "Previous year"),
    ("none", "No comparison"),
];

pub async fn page(
    State(state): State<AppState>,
    current: CurrentTenant,
    RawQuery(raw): RawQuery,
) -> AppResult<Response> {
    let CurrentTenant {
        user,
        session,
        tenant,
    } = current;
    let viewer = Viewer::from(&tenant);
    let pairs = pairs(raw.as_deref());
    let view = ViewState::from_pairs(&pairs);
    let layout = Layout::signed_in(&state, &session, &user, &tenant).await?;

    let connections: Vec<Connection> = state
        .store
        .list_connections(tenant.workspace_id)
        .await?
        .into_iter()
        .filter(|c| crate::connections::service::visible_to(c, &tenant))
        .filter(|c| has_metrics(&state, &c.provider))
        .collect();
    let known = state
        .store
        .list_provider_accounts(tenant.workspace_id)
        .await?;
    let scopes = scope_options(&state, &connections, &known);

    let mut page = DashboardPage {
        layout,
        form: view.form(),
        view: view.clone(),
        scopes,
        ranges: RANGES.to_vec(),
        compares: COMPARES.to_vec(),
        period: String::new(),
        compared_period: None,
        tiles: Vec::new(),
        line_charts: Vec::new(),
        bars: None,
        freshness: Vec::new(),
        today: Vec::new(),
        today_label: String::new(),
        revisions: Vec::new(),
        empty: None,
    };

    if connections.is_empty() {
        page.empty = Some(EmptyState {
            title: "No data source is connected yet.".into(),
            hint: "Connect an analytics or ads account (the sandbox works without any set-up), choose its accounts and sync: the numbers show up here.".into(),
            href: CONNECTIONS_PAGE.into(),
            action: "Connect a data source".into(),
        });
        return Ok(page.into_response());
    }
    if let Some(c) = connections.iter().find(|c| needs_accounts(&state, c)) {
        let name = provider_name(&state, &c.provider);
        page.empty = Some(EmptyState {
            title: format!("Choose which {name} accounts to sync."),
            hint: "Only chosen accounts are synced and shown here.".into(),
            href: format!("/data/{}/accounts", c.provider),
            action: "Choose accounts".into(),
        });
        if connections.iter().all(|c| needs_accounts(&state, c)) {
            return Ok(page.into_response());
        }
    }

    page.freshness = freshness(&state, viewer, &connections, &page.layout.zone).await?;

    let scope = match Scope::parse(Some(&view.scope)) {
        Ok(s) => s,
        Err(err) => return Ok(invalid(page, &view, &err)),
    };
    // One catalog (with its coverage look-ups) for every query of the page.
    let ctx = query::context(&state, &viewer).await?;
    let request = match query::parse_kpi_request(&view.kpi_pairs(&scope), ctx.today) {
        Ok(r) => r,
        Err(err @ AppError::Validation { .. }) => return Ok(invalid(page, &view, &err)),
        Err(err) => return Err(err),
    };
    let board = query::kpis_in(&state, &viewer, &ctx, &request).await?;
    for c in &board.coverage {
        if let Some(f) = page
            .freshness
            .iter_mut()
            .find(|f| f.provider == provider_name(&state, &c.provider))
        {
            f.coverage = match (c.first_day, c.last_day) {
                (Some(a), Some(b)) => Some(format!("data from {a} to {b}")),
                _ => Some("no data yet".to_owned()),
            };
        }
    }
    page.period = format!("{} – {}", board.from, board.to);
    page.compared_period = board
        .compared
        .as_ref()
        .map(|c| format!("{} – {}", c.from, c.to));

    let has_data = board
        .tiles
        .iter()
        .any(|t| t.total.parts.iter().any(|p| p.value.is_some()));
    let ever_synced = board.coverage.iter().any(|c| c.first_day.is_some());
    if !ever_synced && page.empty.is_none() {
        page.empty = Some(EmptyState {
            title: "Nothing synced yet.".into(),
            hint: "Press Sync now on a connection; its first sync fills this page.".into(),
            href: CONNECTIONS_PAGE.into(),
            action: "Sync now".into(),
        });
    }

    let chosen = board
        .tiles
        .iter()
        .find(|t| t.metric.key == view.metric)
        .or_else(|| board.tiles.first());
    page.view.metric = chosen.map(|t| t.metric.key.clone()).unwrap_or_default();
    page.tiles = board
        .tiles
        .iter()
        .map(|t| tile_view(t, &board, &page.view, &state))
        .collect();

    if let Some(tile) = chosen
        && has_data
    {
        page.line_charts = line_charts(&state, &viewer, &ctx, &board, tile, &request).await?;
        page.bars = bars(
            &state,
            &viewer,
            &ctx,
            &board,
            tile,
            &scope,
            (&connections, &known),
        )
        .await?;
    }
    let keys: Vec<String> = board.tiles.iter().map(|t| t.metric.key.clone()).collect();
    if !keys.is_empty() && ever_synced {
        page.today_label = format!("Today so far ({}, partial)", board.today);
        page.today = today_values(&state, &viewer, &ctx, &board, &keys, &request).await?;
    }
    page.revisions = revisions(&state, &session, &viewer).await?;
    Ok(page.into_response())
}

/// The form again with the error beside its field, values as typed (422).
fn invalid(mut page: DashboardPage, view: &ViewState, err: &AppError) -> Response {
    page.form = view
        .form()
        .with_error(err, &["scope", "range", "from", "to", "compare"]);
    with_status(StatusCode::UNPROCESSABLE_ENTITY, page)
}

fn has_metrics(state: &AppState, provider: &str) -> bool {
    state.providers.get(provider).is_some_and(|p| {
        p.meta
            .objects
            .iter()
            .any(|o| o.kind == crate::providers::ObjectKind::Metrics)
    })
}

fn needs_accounts(state: &AppState, c: &Connection) -> bool {
    state
        .providers
        .get(&c.provider)
        .is_some_and(|p| p.meta.accounts.is_some())
        && c.selected_account_ids.is_empty()
}

fn provider_name(state: &AppState, key: &str) -> String {
    state
        .providers
        .get(key)
        .map_or_else(|| key.to_owned(), |p| p.meta.display_name.clone())
}

fn scope_options(
    state: &AppState,
    connections: &[Connection],
    known: &[crate::connections::accounts::ProviderAccount],
) -> Vec<ScopeOption> {
    let mut out = vec![ScopeOption {
        value: "all".into(),
        label: "All providers".into(),
    }];
    let mut providers: Vec<&str> = connections.iter().map(|c| c.provider.as_str()).collect();
    providers.sort_unstable();
    providers.dedup();
    for p in providers {
        let name = provider_name(state, p);
        out.push(ScopeOption {
            value: Scope::Provider(p.to_owned()).value(),
            label: name.clone(),
        });
        for (id, label) in accounts_of(connections, known, p) {
            out.push(ScopeOption {
                value: Scope::Account {
                    provider: p.to_owned(),
                    account: id,
                }
                .value(),
                label: format!("{name} · {label}"),
            });
        }
    }
    out
}

/// The chosen accounts of a provider's visible connections: (id, name).
fn accounts_of(
    connections: &[Connection],
    known: &[crate::connections::accounts::ProviderAccount],
    provider: &str,
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for c in connections.iter().filter(|c| c.provider == provider) {
        for id in c.selected_account_ids.iter() {
            if out.iter().any(|(i, _)| i == id) {
                continue;
            }
            let name = known
                .iter()
                .find(|a| a.connection_id == c.id && &a.external_id == id)
                .map_or_else(|| id.clone(), |a| a.name.clone());
            out.push((id.clone(), name));
        }
    }
    out
}

fn split_label(state: &AppState, split: &Split) -> String {
    let mut parts = Vec::new();
    if let Some(p) = &split.provider {
        parts.push(provider_name(state, p));
    }
    if let Some(c) = &split.currency {
        parts.push(c.clone());
    }
    parts.join(" · ")
}

fn format_of(unit: Unit, split: &Split) -> ValueFormat {
    ValueFormat::new(unit, split.currency.as_deref())
}

fn days(from: Date, count: usize) -> Vec<String> {
    let mut out = Vec::with_capacity(count);
    let mut d = from;
    for _ in 0..count {
        out.push(d.to_string());
        match d.next_day() {
            Some(n) => d = n,
            None => break,
        }
    }
    out
}

fn tile_view(tile: &KpiTile, board: &KpiBoard, view: &ViewState, state: &AppState) -> TileView {
    let unit = tile.metric.unit;
    let single = tile.total.parts.len() <= 1;
    let parts = tile
        .total
        .parts
        .iter()
        .map(|part| {
            let format = format_of(unit, &part.split);
            let (delta, trend) = match part.delta_ratio {
                Some(r) if r.is_finite() => (
                    Some(format!(
                        "{}{:.1}%",
                        if r >= 0.0 { "+" } else { "" },
                        r * 100.0
                    )),
                    if r > 0.0 {
                        "up"
                    } else if r < 0.0 {
                        "down"
                    } else {
                        "flat"
                    },
                ),
                _ => (None, "flat"),
            };
            let spark = tile
                .series
                .iter()
                .find(|s| s.split == part.split)
                .map(|s| Sparkline {
                    title: format!("{} per day", tile.metric.label),
                    x_labels: days(board.from, s.values.len()),
                    values: s.values.clone(),
                    format: format.clone(),
                })
                .filter(Sparkline::has_data)
                .map(|s| s.svg());
            PartView {
                label: if single {
                    String::new()
                } else {
                    split_label(state, &part.split)
                },
                value: format.format(part.value),
                raw: crate::web::csv::number_cell(part.value),
                currency: part.split.currency.clone().unwrap_or_default(),
                provider: part.split.provider.clone().unwrap_or_default(),
                compared: part.compared.map(|c| format.format(Some(c))),
                delta,
                trend,
                spark,
            }
        })
        .collect();
    TileView {
        key: tile.metric.key.clone(),
        label: tile.metric.label.clone(),
        href: view.href_with_metric(&tile.metric.key),
        chosen: tile.metric.key == view.metric,
        per_day: tile.metric.aggregation == Some(Aggregation::NonAdditive),
        provisional: tile.total.provisional,
        notes: tile.total.provisional_notes.clone(),
        parts,
    }
}

fn base_query(metric: &str, from: Date, to: Date, request: &query::KpiRequest) -> MetricQuery {
    MetricQuery {
        metrics: vec![metric.to_owned()],
        from,
        to,
        grain: Grain::Day,
        group_by: Vec::new(),
        providers: request.providers.clone(),
        accounts: request.accounts.clone(),
        dimensions: Vec::new(),
        compare: Compare::None,
    }
}

/// One chart per part of the chosen metric (a currency or provider each),
/// with the compared period's days dashed under the same x positions.
async fn line_charts(
    state: &AppState,
    viewer: &Viewer,
    ctx: &query::QueryContext,
    board: &KpiBoard,
    tile: &KpiTile,
    request: &query::KpiRequest,
) -> AppResult<Vec<ChartView>> {
    let compared = match &board.compared {
        Some(c) => Some((
            c.from,
            query::run_in(
                state,
                viewer,
                ctx,
                &base_query(&tile.metric.key, c.from, c.to, request),
            )
            .await?,
        )),
        None => None,
    };
    let mut out = Vec::new();
    for series in &tile.series {
        let n = series.values.len();
        let labels = days(board.from, n);
        let mut lines = vec![Series {
            label: "This period".into(),
            values: series.values.clone(),
            dashed: false,
            point_labels: Vec::new(),
        }];
        if let Some((from, result)) = &compared {
            let mut values = vec![None; n];
            for row in result.rows.iter().filter(|r| r.split == series.split) {
                let index = (row.period - *from).whole_days();
                if let Ok(i) = usize::try_from(index)
                    && let Some(slot) = values.get_mut(i)
                {
                    *slot = row.values.get(&tile.metric.key).copied().flatten();
                }
            }
            lines.push(Series {
                label: match request.compare {
                    Compare::PreviousYear => "Previous year".into(),
                    _ => "Previous period".into(),
                },
                values,
                dashed: true,
                point_labels: days(*from, n),
            });
        }
        let split = split_label(state, &series.split);
        let caption = if split.is_empty() {
            format!("{} per day", tile.metric.label)
        } else {
            format!("{} per day · {split}", tile.metric.label)
        };
        let chart = LineChart {
            title: caption.clone(),
            x_labels: labels,
            series: lines,
            format: format_of(tile.metric.unit, &series.split),
        };
        if !chart.has_data() {
            continue;
        }
        out.push(ChartView {
            legend: chart
                .series
                .iter()
                .map(
                    |s| match s.point_labels.first().zip(s.point_labels.last()) {
                        Some((a, b)) => (format!("{} ({a} – {b})", s.label), s.dashed),
                        None => (s.label.clone(), s.dashed),
                    },
                )
                .collect(),
            svg: chart.svg(),
            head: chart.table_head(),
            rows: chart.table_rows(),
            caption,
        });
    }
    Ok(out)
}

/// The chosen metric per provider (all providers) or per account (one
/// provider): one query per bar, so ratios and non-additive metrics are
/// computed by the engine, never summed here.
async fn bars(
    state: &AppState,
    viewer: &Viewer,
    ctx: &query::QueryContext,
    board: &KpiBoard,
    tile: &KpiTile,
    scope: &Scope,
    // The visible connections and the accounts they reported.
    (connections, known): (
        &[Connection],
        &[crate::connections::accounts::ProviderAccount],
    ),
) -> AppResult<Option<BarsView>> {
    // All providers but only one has this metric: its accounts say more
    // than a single bar.
    let single_provider = match (scope, tile.metric.providers.as_slice()) {
        (Scope::All, [only]) => Some(Scope::Provider(only.clone())),
        _ => None,
    };
    let scope = single_provider.as_ref().unwrap_or(scope);
    let request = |providers: Vec<String>, accounts: Vec<String>| query::KpiRequest {
        range: query::RangePreset::Custom {
            from: board.from,
            to: board.to,
        },
        compare: Compare::None,
        providers,
        accounts,
    };
    // (id, label, the group's own request) per bar.
    let groups: Vec<(String, String, query::KpiRequest)> = match scope {
        Scope::All => tile
            .metric
            .providers
            .iter()
            .map(|p| {
                (
                    p.clone(),
                    provider_name(state, p),
                    request(vec![p.clone()], Vec::new()),
                )
            })
            .collect(),
        Scope::Provider(p) => accounts_of(connections, known, p)
            .into_iter()
            .map(|(id, name)| (id.clone(), name, request(vec![p.clone()], vec![id])))
            .collect(),
        Scope::Account { .. } => return Ok(None),
    };
    if groups.len() < 2 {
        return Ok(None);
    }
    let total_groups = groups.len();
    let mut items = Vec::new();
    let mut currencies = Vec::new();
    let key = tile.metric.key.as_str();
    let note;
    if tile.metric.aggregation == Some(Aggregation::Sum) {
        // Sums add up: one query grouped by provider or account, its daily
        // rows added here, instead of a query per bar.
        let (group, name) = match scope {
            Scope::All => (GroupKey::Provider, "provider"),
            _ => (GroupKey::Account, "account"),
        };
        let mut q = base_query(
            key,
            board.from,
            board.to,
            &request(scope.providers(), scope.accounts()),
        );
        q.group_by = vec![group];
        let result = query::run_in(state, viewer, ctx, &q).await?;
        let mut sums: BTreeMap<(String, Option<String>), f64> = BTreeMap::new();
        for row in &result.rows {
            if let (Some(g), Some(v)) =
                (row.group.get(name), row.values.get(key).copied().flatten())
            {
                *sums
                    .entry((g.clone(), row.split.currency.clone()))
                    .or_default() += v;
            }
        }
        for (id, label, _) in &groups {
            let parts: Vec<(&Option<String>, f64)> = sums
                .iter()
                .filter(|((g, _), _)| g == id)
                .map(|((_, c), v)| (c, *v))
                .collect();
            if parts.is_empty() {
                items.push(Bar {
                    label: label.clone(),
                    value: None,
                });
            }
            for (currency, value) in &parts {
                currencies.push((*currency).clone());
                items.push(Bar {
                    label: match currency {
                        Some(c) if parts.len() > 1 => format!("{label} ({c})"),
                        _ => label.clone(),
                    },
                    value: Some(*value),
                });
            }
        }
        // The biggest first; beyond MAX_BARS the chart would be unreadable.
        items.sort_by(|a, b| {
            b.value
                .unwrap_or(f64::NEG_INFINITY)
                .total_cmp(&a.value.unwrap_or(f64::NEG_INFINITY))
        });
        note = (items.len() > MAX_BARS).then(|| format!(" (top {MAX_BARS} of {})", items.len()));
        items.truncate(MAX_BARS);
    } else {
        // Ratios, averages and distinct counts don't add up across rows:
        // the engine computes each bar.
        note = (total_groups > MAX_BARS).then(|| format!(" (first {MAX_BARS} of {total_groups})"));
        for (_, label, request) in groups.into_iter().take(MAX_BARS) {
            let result = query::run_in(
                state,
                viewer,
                ctx,
                &base_query(key, board.from, board.to, &request),
            )
            .await?;
            let total: Option<&MetricTotal> = result.totals.iter().find(|t| t.key == key);
            let parts = total.map(|t| t.parts.as_slice()).unwrap_or_default();
            if parts.is_empty() {
                items.push(Bar {
                    label: label.clone(),
                    value: None,
                });
            }
            for part in parts {
                currencies.push(part.split.currency.clone());
                items.push(Bar {
                    label: match &part.split.currency {
                        Some(c) if parts.len() > 1 => format!("{label} ({c})"),
                        _ => label.clone(),
                    },
                    value: part.value,
                });
            }
        }
    }
    currencies.sort();
    currencies.dedup();
    // Amounts in different currencies share no scale: one bar length per
    // currency would mislead, so the chart is left out and the tiles say it.
    if tile.metric.unit == Unit::Currency && currencies.len() > 1 {
        return Ok(None);
    }
    let by = if matches!(scope, Scope::All) {
        "provider"
    } else {
        "account"
    };
    let caption = format!("{} by {by}{}", tile.metric.label, note.unwrap_or_default());
    let chart = BarChart {
        title: caption.clone(),
        bars: items,
        format: ValueFormat::new(
            tile.metric.unit,
            currencies.first().cloned().flatten().as_deref(),
        ),
    };
    if !chart.has_data() {
        return Ok(None);
    }
    Ok(Some(BarsView {
        svg: chart.svg(),
        rows: chart.table_rows(),
        caption,
    }))
}

async fn today_values(
    state: &AppState,
    viewer: &Viewer,
    ctx: &query::QueryContext,
    board: &KpiBoard,
    keys: &[String],
    request: &query::KpiRequest,
) -> AppResult<Vec<TodayPart>> {
    let mut q = base_query("", board.today, board.today, request);
    q.metrics = keys.to_vec();
    let result = query::run_in(state, viewer, ctx, &q).await?;
    let mut out = Vec::new();
    for total in &result.totals {
        let Some(info) = result.metrics.iter().find(|m| m.key == total.key) else {
            continue;
        };
        for part in total.parts.iter().filter(|p| p.value.is_some()) {
            let split = split_label(state, &part.split);
            out.push(TodayPart {
                label: if total.parts.len() > 1 && !split.is_empty() {
                    format!("{} ({split})", info.label)
                } else {
                    info.label.clone()
                },
                value: format_of(info.unit, &part.split).format(part.value),
            });
        }
    }
    Ok(out)
}

/// "synced 12 min ago" per connection, or the failed job to look at.
async fn freshness(
    state: &AppState,
    viewer: Viewer,
    connections: &[Connection],
    zone: &crate::tenancy::zone::Zone,
) -> AppResult<Vec<Freshness>> {
    let now = OffsetDateTime::now_utc();
    let mut out = Vec::new();
    for c in connections {
        let jobs = state
            .store
            .list_jobs(viewer, &c.provider, None, None, 10)
            .await?;
        let last_finished = jobs.iter().find(|j| {
            j.connection_id == Some(c.id) && matches!(j.status.as_str(), "succeeded" | "failed")
        });
        let failed_job = last_finished.filter(|j| j.status == "failed").map(|j| j.id);
        let text = match (failed_job, c.last_sync_at) {
            (Some(_), _) => "last sync failed — see job".to_owned(),
            (None, Some(t)) => format!("synced {}", ago(now - t)),
            (None, None) => "never synced".to_owned(),
        };
        let name = provider_name(state, &c.provider);
        out.push(Freshness {
            title: zone.at_opt(&c.last_sync_at, ""),
            provider: if c.owner_user_id.is_some() {
                format!("{name} (yours)")
            } else {
                name
            },
            text,
            failed_job,
            coverage: None,
        });
    }
    Ok(out)
}

/// `12 min ago`, `3 h ago`, `2 days ago`.
pub fn ago(elapsed: Duration) -> String {
    let secs = elapsed.whole_seconds().max(0);
    match secs {
        0..60 => "just now".to_owned(),
        60..3600 => format!("{} min ago", secs / 60),
        3600..86400 => format!("{} h ago", secs / 3600),
        _ => match secs / 86400 {
            1 => "1 day ago".to_owned(),
            d => format!("{d} days ago"),
        },
    }
}

/// Revisions since the last visit (then this visit becomes the last).
async fn revisions(
    state: &AppState,
    session: &tower_sessions::Session,
    viewer: &Viewer,
) -> AppResult<Vec<RevisionView>> {
    let now = OffsetDateTime::now_utc();
    let last: Option<i64> = session.get(LAST_VISIT_KEY).await.ok().flatten();
    session
        .insert(LAST_VISIT_KEY, now.unix_timestamp())
        .await
        .map_err(|e| AppError::Internal(anyhow::anyhow!("session: {e}")))?;
    let Some(since) = last.and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok()) else {
        return Ok(Vec::new());
    };
    let mut rows = query::revisions_since(state, viewer, since).await?;
    rows.truncate(MAX_REVISIONS_SHOWN);
    Ok(rows
        .into_iter()
        .map(|r| RevisionView {
            text: format!(
                "{} · {} on {} ({}): {} → {}",
                provider_name(state, &r.provider),
                r.label,
                r.date,
                r.account_name.as_deref().unwrap_or(&r.account_id),
                number_or_dash(r.old_value),
                number_or_dash(r.new_value),
            ),
        })
        .collect())
}

fn number_or_dash(v: Option<f64>) -> String {
    match v.filter(|v| v.is_finite()) {
        Some(v) => crate::web::charts::group_thousands(v, if v.fract() == 0.0 { 0 } else { 2 }),
        None => "—".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_round_trip_and_bad_ones_name_the_field() {
        for s in [
            Scope::All,
            Scope::Provider("sandbox".into()),
            Scope::Account {
                provider: "sandbox".into(),
                account: "acc:1".into(),
            },
        ] {
            assert_eq!(Scope::parse(Some(&s.value())).unwrap(), s);
        }
        assert_eq!(Scope::parse(None).unwrap(), Scope::All);
        for bad in ["p:", "a:sandbox", "a::x", "x:y"] {
            match Scope::parse(Some(bad)) {
                Err(AppError::Validation { field, .. }) => {
                    assert_eq!(field.as_deref(), Some("scope"))
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_view_is_kept_in_links() {
        let view = ViewState::from_pairs(&pairs(Some(
            "scope=p%3Asandbox&range=custom&from=2026-01-01&to=2026-01-31&compare=none&metric=clicks",
        )));
        assert_eq!(
            view.href_with_metric("cost"),
            "/data?scope=p%3Asandbox&range=custom&from=2026-01-01&to=2026-01-31&compare=none&metric=cost"
        );
        let defaults = ViewState::from_pairs(&[]);
        assert_eq!(
            (defaults.range.as_str(), defaults.compare.as_str()),
            ("28d", "previous_period")
        );
        assert_eq!(
            defaults.kpi_pairs(&Scope::Account {
                provider: "p".into(),
                account: "a".into()
            }),
            vec![
                ("range".to_owned(), "28d".to_owned()),
                ("compare".to_owned(), "previous_period".to_owned()),
                ("provider".to_owned(), "p".to_owned()),
                ("account".to_owned(), "a".to_owned()),
            ]
        );
    }

    #[test]
    fn elapsed_time_reads_naturally() {
        assert_eq!(ago(Duration::seconds(-5)), "just now");
        assert_eq!(ago(Duration::minutes(12)), "12 min ago");
        assert_eq!(ago(Duration::hours(3)), "3 h ago");
        assert_eq!(ago(Duration::days(1)), "1 day ago");
        assert_eq!(ago(Duration::days(40)), "40 days ago");
    }
}
