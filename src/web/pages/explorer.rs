//! The metric explorer (`/data/metrics`): the query API as a form. The
//! page's query string is the API's (`metrics`, `from`, `to`, `grain`,
//! `groupBy`, `provider`, `account`, `dim.<key>`, `compare`) plus the
//! table's `page`, `sort` and `dir`, so a view bookmarks and its CSV
//! (`/data/metrics.csv?<same query>`, written like the API's CSV) holds
//! exactly what the table shows.

use std::cmp::Ordering;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use time::Date;

use super::dashboard::pairs;
use super::kit::{Dir, FormState, Table, TableQuery};
use super::{Layout, with_status};
use crate::app::AppState;
use crate::auth::extract::CurrentTenant;
use crate::connections::Viewer;
use crate::error::{AppError, AppResult};
use crate::metrics::query::{self, Catalog, GroupKey, MetricQuery, QueryResult, ResultRow};
use crate::web::charts::ValueFormat;

const PAGE_SIZE: usize = 50;
/// The table's own parameters: not part of the query.
const TABLE_KEYS: [&str; 3] = ["page", "sort", "dir"];

/// One result row as the table shows it.
pub struct Row {
    pub period: Date,
    pub groups: Vec<String>,
    pub split: String,
    pub values: Vec<Option<f64>>,
    pub cells: Vec<String>,
    pub provisional: bool,
}

/// The kit's pager and sort state, with links that keep the query.
pub struct ExplorerTable {
    pub t: Table,
    /// `period`, `g<i>`, `split` or `m<i>`.
    pub sort: String,
    pub base: String,
}

impl ExplorerTable {
    fn href(&self, sort: &str, dir: Dir, page: usize) -> String {
        let sep = if self.base.is_empty() { "" } else { "&" };
        format!(
            "/data/metrics?{}{sep}page={page}&sort={sort}&dir={}",
            self.base,
            dir.as_str()
        )
    }

    pub fn sort_href(&self, column: &str) -> String {
        let dir = if column == self.sort && self.t.dir == Dir::Asc {
            Dir::Desc
        } else {
            Dir::Asc
        };
        self.href(column, dir, 1)
    }

    pub fn page_href(&self, page: usize) -> String {
        self.href(&self.sort, self.t.dir, page)
    }

    pub fn aria_sort(&self, column: &str) -> &'static str {
        match (column == self.sort, self.t.dir) {
            (false, _) => "none",
            (true, Dir::Asc) => "ascending",
            (true, Dir::Desc) => "descending",
        }
    }

    pub fn arrow(&self, column: &str) -> &'static str {
        match (column == self.sort, self.t.dir) {
            (false, _) => "",
            (true, Dir::Asc) => "▲",
            (true, Dir::Desc) => "▼",
        }
    }

    pub fn csv_href(&self) -> String {
        format!("/data/metrics.csv?{}", self.base)
    }
}

pub struct Choice {
    pub value: String,
    pub label: String,
    pub checked: bool,
}

pub struct TotalView {
    pub label: String,
    pub parts: Vec<String>,
}

#[derive(Template, WebTemplate)]
#[template(path = "explorer.html")]
pub struct ExplorerPage {
    layout: Layout,
    form: FormState,
    metrics: Vec<Choice>,
    groups: Vec<Choice>,
    providers: Vec<Choice>,
    accounts: Vec<Choice>,
    /// (key, label, typed value) per dimension filter.
    dims: Vec<(String, String, String)>,
    grains: Vec<&'static str>,
    compares: Vec<&'static str>,
    head_groups: Vec<String>,
    head_metrics: Vec<String>,
    has_split: bool,
    rows: Vec<Row>,
    totals: Vec<TotalView>,
    table: Option<ExplorerTable>,
    period: String,
    /// Nothing to explore yet: no metrics in the catalog.
    no_catalog: bool,
}

/// The query pairs without the table's and empty ones; with the first
/// catalog metric when none is given, so the first visit shows something.
fn query_pairs(all: &[(String, String)], catalog: &Catalog) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = all
        .iter()
        .filter(|(k, v)| !TABLE_KEYS.contains(&k.as_str()) && !v.trim().is_empty())
        .cloned()
        .collect();
    if !out.iter().any(|(k, _)| k == "metrics")
        && let Some(m) = catalog.metrics.first()
    {
        out.insert(0, ("metrics".to_owned(), m.key.clone()));
    }
    out
}

fn encode(pairs: &[(String, String)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

fn error_fields(catalog: &Catalog) -> Vec<String> {
    let mut f: Vec<String> = [
        "metrics", "from", "to", "grain", "groupBy", "provider", "account", "compare",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    f.extend(catalog.dimensions.iter().map(|d| format!("dim.{}", d.key)));
    f
}

async fn parse(
    state: &AppState,
    tenant: &crate::tenancy::Tenant,
    catalog: &Catalog,
    q: &[(String, String)],
) -> AppResult<MetricQuery> {
    let today = query::workspace_today(state, tenant.workspace_id).await?;
    query::parse_query(q, catalog, today, state.settings.metrics.max_range_days)
}

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
    let all = pairs(raw.as_deref());
    let catalog = query::catalog(&state, &viewer).await?;
    let q = query_pairs(&all, &catalog);
    let layout = Layout::signed_in(&state, &session, &user, &tenant).await?;
    let values: Vec<(&str, &str)> = q.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let has = |k: &str, v: &str| {
        q.iter()
            .filter(|(key, _)| key == k)
            .flat_map(|(_, val)| val.split(','))
            .any(|x| x.trim() == v)
    };
    let mut page = ExplorerPage {
        layout,
        form: FormState::with_values(values.iter().copied()),
        metrics: catalog
            .metrics
            .iter()
            .map(|m| Choice {
                checked: has("metrics", &m.key),
                value: m.key.clone(),
                label: m.label.clone(),
            })
            .collect(),
        groups: [("provider", "Provider"), ("account", "Account")]
            .iter()
            .map(|(k, l)| ((*k).to_owned(), (*l).to_owned()))
            .chain(
                catalog
                    .dimensions
                    .iter()
                    .map(|d| (d.key.clone(), d.label.clone())),
            )
            .map(|(value, label)| Choice {
                checked: has("groupBy", &value),
                value,
                label,
            })
            .collect(),
        providers: catalog
            .providers
            .iter()
            .map(|p| Choice {
                checked: has("provider", &p.key),
                value: p.key.clone(),
                label: p.display_name.clone(),
            })
            .collect(),
        accounts: catalog
            .providers
            .iter()
            .flat_map(|p| {
                p.accounts.iter().map(|a| Choice {
                    checked: has("account", &a.id),
                    value: a.id.clone(),
                    label: format!("{} · {}", p.display_name, a.name),
                })
            })
            .collect(),
        dims: catalog
            .dimensions
            .iter()
            .map(|d| {
                let field = format!("dim.{}", d.key);
                let typed = q
                    .iter()
                    .find(|(k, _)| *k == field)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default();
                (d.key.clone(), d.label.clone(), typed)
            })
            .collect(),
        grains: vec!["day", "week", "month"],
        compares: vec!["none", "previous_period", "previous_year"],
        head_groups: Vec::new(),
        head_metrics: Vec::new(),
        has_split: false,
        rows: Vec::new(),
        totals: Vec::new(),
        table: None,
        period: String::new(),
        no_catalog: catalog.metrics.is_empty(),
    };
    if page.no_catalog {
        return Ok(page.into_response());
    }
    let query = match parse(&state, &tenant, &catalog, &q).await {
        Ok(query) => query,
        Err(err @ AppError::Validation { .. }) => {
            let fields = error_fields(&catalog);
            let names: Vec<&str> = fields.iter().map(String::as_str).collect();
            page.form = page.form.with_error(&err, &names);
            return Ok(with_status(StatusCode::UNPROCESSABLE_ENTITY, page));
        }
        Err(err) => return Err(err),
    };
    let result = query::run(&state, &viewer, &query).await?;
    let table_query = TableQuery {
        page: first(&all, "page"),
        sort: first(&all, "sort"),
        dir: first(&all, "dir"),
    };
    let mut rows = rows_of(&result, &query);
    let sort = sort_key(table_query.sort.as_deref(), &query);
    let dir = if table_query.dir.as_deref() == Some("desc") {
        Dir::Desc
    } else {
        Dir::Asc
    };
    rows.sort_by(|a, b| {
        let o = compare_rows(a, b, &sort);
        if dir == Dir::Desc { o.reverse() } else { o }
    });
    // Sorted above; the kit only pages (no columns to sort by).
    let t = Table::apply(&table_query, &[], "period", PAGE_SIZE, &mut rows);
    page.has_split = rows.iter().any(|r| !r.split.is_empty());
    page.head_groups = query.group_by.iter().map(group_name).collect();
    page.head_metrics = result.metrics.iter().map(|m| m.label.clone()).collect();
    page.totals = totals(&result);
    page.period = match &result.compared {
        Some(c) => format!(
            "{} – {}, compared with {} – {}",
            result.from, result.to, c.from, c.to
        ),
        None => format!("{} – {}", result.from, result.to),
    };
    page.rows = rows;
    let mut t = t;
    t.dir = dir;
    page.table = Some(ExplorerTable {
        t,
        sort,
        base: encode(&q),
    });
    Ok(page.into_response())
}

/// `/data/metrics.csv?<query>`: every row of the query (not one page).
pub async fn csv(
    State(state): State<AppState>,
    current: CurrentTenant,
    RawQuery(raw): RawQuery,
) -> AppResult<Response> {
    let viewer = Viewer::from(&current.tenant);
    let all = pairs(raw.as_deref());
    let catalog = query::catalog(&state, &viewer).await?;
    let q = query_pairs(&all, &catalog);
    let query = parse(&state, &current.tenant, &catalog, &q).await?;
    let result = query::run(&state, &viewer, &query).await?;
    Ok(query::to_csv(&result, &query)
        .into_download(&format!("metrics-{}-{}.csv", result.from, result.to)))
}

fn first(pairs: &[(String, String)], key: &str) -> Option<String> {
    pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
}

fn group_key(g: &GroupKey) -> String {
    match g {
        GroupKey::Provider => "provider".into(),
        GroupKey::Account => "account".into(),
        GroupKey::Dimension(d) => d.clone(),
    }
}

fn group_name(g: &GroupKey) -> String {
    match g {
        GroupKey::Provider => "Provider".into(),
        GroupKey::Account => "Account".into(),
        GroupKey::Dimension(d) => d.clone(),
    }
}

fn split_text(row: &ResultRow) -> String {
    [row.split.provider.as_deref(), row.split.currency.as_deref()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" · ")
}

fn rows_of(result: &QueryResult, query: &MetricQuery) -> Vec<Row> {
    result
        .rows
        .iter()
        .map(|r| {
            let values: Vec<Option<f64>> = result
                .metrics
                .iter()
                .map(|m| r.values.get(&m.key).copied().flatten())
                .collect();
            let cells = result
                .metrics
                .iter()
                .zip(&values)
                .map(|(m, v)| ValueFormat::new(m.unit, r.split.currency.as_deref()).format(*v))
                .collect();
            Row {
                period: r.period,
                groups: query
                    .group_by
                    .iter()
                    .map(|g| {
                        let id = r.group.get(&group_key(g)).cloned().unwrap_or_default();
                        match (g, &r.account_name) {
                            (GroupKey::Account, Some(name)) if *name != id => {
                                format!("{name} ({id})")
                            }
                            _ => id,
                        }
                    })
                    .collect(),
                split: split_text(r),
                values,
                cells,
                provisional: r.provisional,
            }
        })
        .collect()
}

/// A sort key the table knows, else `period`.
fn sort_key(asked: Option<&str>, query: &MetricQuery) -> String {
    let ok = match asked {
        Some("period" | "split") => true,
        Some(k) => {
            let index = |prefix: &str| k.strip_prefix(prefix).and_then(|n| n.parse::<usize>().ok());
            index("g").is_some_and(|i| i < query.group_by.len())
                || index("m").is_some_and(|i| i < query.metrics.len())
        }
        None => false,
    };
    match asked {
        Some(k) if ok => k.to_owned(),
        _ => "period".to_owned(),
    }
}

fn compare_rows(a: &Row, b: &Row, sort: &str) -> Ordering {
    let by_period = || {
        a.period
            .cmp(&b.period)
            .then_with(|| a.groups.cmp(&b.groups))
    };
    if sort == "split" {
        return a.split.cmp(&b.split).then_with(by_period);
    }
    if let Some(i) = sort.strip_prefix("g").and_then(|n| n.parse::<usize>().ok()) {
        return a.groups.get(i).cmp(&b.groups.get(i)).then_with(by_period);
    }
    if let Some(i) = sort.strip_prefix("m").and_then(|n| n.parse::<usize>().ok()) {
        let (x, y) = (
            a.values.get(i).copied().flatten(),
            b.values.get(i).copied().flatten(),
        );
        // Missing values sort before any number.
        let o = match (x, y) {
            (Some(x), Some(y)) => x.total_cmp(&y),
            (None, Some(_)) => Ordering::Less,
            (Some(_), None) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        };
        return o.then_with(by_period);
    }
    by_period()
}

fn totals(result: &QueryResult) -> Vec<TotalView> {
    result
        .totals
        .iter()
        .filter_map(|t| {
            let info = result.metrics.iter().find(|m| m.key == t.key)?;
            let parts = t
                .parts
                .iter()
                .map(|p| {
                    let f = ValueFormat::new(info.unit, p.split.currency.as_deref());
                    let mut text = f.format(p.value);
                    if let Some(r) = p.delta_ratio.filter(|r| r.is_finite()) {
                        text.push_str(&format!(
                            " ({}{:.1}% vs {})",
                            if r >= 0.0 { "+" } else { "" },
                            r * 100.0,
                            f.format(p.compared)
                        ));
                    }
                    if let Some(provider) = &p.split.provider {
                        text = format!("{provider}: {text}");
                    }
                    text
                })
                .collect();
            Some(TotalView {
                label: info.label.clone(),
                parts,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sort_keys_are_checked() {
        let q = MetricQuery {
            metrics: vec!["a".into(), "b".into()],
            from: time::macros::date!(2026 - 01 - 01),
            to: time::macros::date!(2026 - 01 - 02),
            grain: query::Grain::Day,
            group_by: vec![GroupKey::Account],
            providers: Vec::new(),
            accounts: Vec::new(),
            dimensions: Vec::new(),
            compare: query::Compare::None,
        };
        assert_eq!(sort_key(Some("m1"), &q), "m1");
        assert_eq!(sort_key(Some("m2"), &q), "period");
        assert_eq!(sort_key(Some("g0"), &q), "g0");
        assert_eq!(sort_key(Some("g1"), &q), "period");
        assert_eq!(sort_key(Some("<x>"), &q), "period");
        assert_eq!(sort_key(None, &q), "period");
    }

    #[test]
    fn table_links_keep_the_query() {
        let mut table = Table::paged(&TableQuery::default(), "period", 50, 120);
        table.dir = Dir::Asc;
        let t = ExplorerTable {
            t: table,
            sort: "m0".into(),
            base: encode(&[
                ("metrics".into(), "clicks".into()),
                ("dim.device".into(), "a&b".into()),
            ]),
        };
        assert_eq!(
            t.page_href(2),
            "/data/metrics?metrics=clicks&dim.device=a%26b&page=2&sort=m0&dir=asc"
        );
        assert_eq!(
            t.sort_href("m0"),
            "/data/metrics?metrics=clicks&dim.device=a%26b&page=1&sort=m0&dir=desc"
        );
        assert_eq!(
            t.csv_href(),
            "/data/metrics.csv?metrics=clicks&dim.device=a%26b"
        );
    }
}
