//! SQL of the metrics read side: sums per (period bucket, group, object,
//! currency) of one provider's rows, with metric and dimension names bound
//! as parameters — the database adds, Rust only folds the (few) groups.
//! Only rows the viewer may see: rows of workspace connections, of the
//! viewer's own personal connections, and rows written without one.

use sqlx::Row;
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use crate::storage::{PgStore, SqliteStore};
use crate::tenancy::WorkspaceId;

/// How rows are bucketed in SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    Day,
    /// ISO week: its Monday.
    Week,
    /// Its first day.
    Month,
}

/// One summed column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Col {
    /// Σ of a stored metric field.
    Sum(String),
    /// Σ of the product of two stored fields (weighted averages).
    Product(String, String),
}

#[derive(Debug, Clone)]
pub struct AggregateSpec {
    pub workspace: WorkspaceId,
    /// The viewer (nil: a service key, which sees no personal connection).
    pub user: Uuid,
    pub provider: String,
    /// Rows of these objects.
    pub objects: Vec<String>,
    pub from: Date,
    pub to: Date,
    pub bucket: Bucket,
    pub group_account: bool,
    /// Stored dimension names to group by (a missing one groups as NULL).
    pub group_dims: Vec<String>,
    /// Only these accounts (empty: all).
    pub accounts: Vec<String>,
    /// (stored dimension name, value as text).
    pub dim_filters: Vec<(String, String)>,
    pub cols: Vec<Col>,
    /// Also answer the per-day sums without the groups (rows with `daily`),
    /// for the totals. (A second statement: grouping sets made PostgreSQL
    /// sort the rows, several times slower than two hashed scans.)
    pub daily_totals: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AggRow {
    /// A per-day total row (see `AggregateSpec::daily_totals`).
    pub daily: bool,
    pub bucket: Date,
    pub account: Option<String>,
    pub dims: Vec<Option<String>>,
    pub object: String,
    pub currency: Option<String>,
    /// Per column: the sum, None when no row had the field.
    pub sums: Vec<Option<f64>>,
}

/// A changed value, as the revision log keeps it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RevisionRow {
    pub provider: String,
    pub connection_id: Option<Uuid>,
    pub object: String,
    pub account_id: String,
    pub metric_date: Date,
    pub dimension_key: String,
    pub metric: String,
    pub old_value: Option<f64>,
    pub new_value: Option<f64>,
    pub at: OffsetDateTime,
}

#[async_trait::async_trait]
pub trait MetricQueryStore {
    /// One statement: the spec's groups (never the daily totals).
    async fn aggregate_once(&self, spec: &AggregateSpec) -> sqlx::Result<Vec<AggRow>>;

    async fn aggregate_metrics(&self, spec: &AggregateSpec) -> sqlx::Result<Vec<AggRow>> {
        let mut out = self.aggregate_once(spec).await?;
        if spec.daily_totals {
            let days = AggregateSpec {
                bucket: Bucket::Day,
                group_account: false,
                group_dims: Vec::new(),
                daily_totals: false,
                ..spec.clone()
            };
            out.extend(self.aggregate_once(&days).await?.into_iter().map(|mut r| {
                r.daily = true;
                r
            }));
        }
        Ok(out)
    }

    /// First and last day with visible data of a provider.
    async fn metric_coverage(
        &self,
        workspace: WorkspaceId,
        user: Uuid,
        provider: &str,
    ) -> sqlx::Result<(Option<Date>, Option<Date>)>;
    /// Visible revisions recorded after `since`, newest first.
    async fn metric_revisions_since(
        &self,
        workspace: WorkspaceId,
        user: Uuid,
        since: OffsetDateTime,
        limit: i64,
    ) -> sqlx::Result<Vec<RevisionRow>>;
}

const VISIBLE: &str = crate::visible_connection!("connection_id", "$1", "$2");

/// The JSON path of a top-level key, for SQLite's json_extract.
fn sqlite_path(name: &str) -> String {
    format!("$.\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
}

enum Param {
    Text(String),
    Texts(Vec<String>),
}

/// The statement, and the parameters after the fixed ones ($1 workspace,
/// $2 user, $3 provider, $4 from, $5 to).
fn build(spec: &AggregateSpec, pg: bool) -> (String, Vec<Param>) {
    let mut params: Vec<Param> = Vec::new();
    let mut next = |p: Param, params: &mut Vec<Param>| {
        params.push(p);
        format!("${}", params.len() + 5)
    };
    let field = |name: &str,
                 params: &mut Vec<Param>,
                 next: &mut dyn FnMut(Param, &mut Vec<Param>) -> String| {
        if pg {
            let n = next(Param::Text(name.to_owned()), params);
            format!("(metrics->>{n})::float8")
        } else {
            let n = next(Param::Text(sqlite_path(name)), params);
            format!("json_extract(metrics, {n})")
        }
    };
    let dim = |name: &str,
               params: &mut Vec<Param>,
               next: &mut dyn FnMut(Param, &mut Vec<Param>) -> String| {
        if pg {
            let n = next(Param::Text(name.to_owned()), params);
            format!("(dimensions->>{n})")
        } else {
            let n = next(Param::Text(sqlite_path(name)), params);
            format!("CAST(json_extract(dimensions, {n}) AS TEXT)")
        }
    };
    let bucket = match (spec.bucket, pg) {
        (Bucket::Day, true) => "to_char(metric_date, 'YYYY-MM-DD')".to_owned(),
        (Bucket::Week, true) => "to_char(date_trunc('week', metric_date), 'YYYY-MM-DD')".to_owned(),
        (Bucket::Month, true) => "to_char(metric_date, 'YYYY-MM-01')".to_owned(),
        (Bucket::Day, false) => "metric_date".to_owned(),
        (Bucket::Week, false) => {
            "date(metric_date, '-' || ((CAST(strftime('%w', metric_date) AS INTEGER) + 6) % 7) || ' days')"
                .to_owned()
        }
        (Bucket::Month, false) => "strftime('%Y-%m-01', metric_date)".to_owned(),
    };
    let mut select = vec![bucket];
    select.push(if spec.group_account {
        "account_id".to_owned()
    } else {
        "NULL".to_owned()
    });
    for d in &spec.group_dims {
        let e = dim(d, &mut params, &mut next);
        select.push(e);
    }
    select.push("object".to_owned());
    select.push("currency".to_owned());
    let grouped = select.len();
    for col in &spec.cols {
        let e = match col {
            Col::Sum(f) => field(f, &mut params, &mut next),
            Col::Product(a, b) => {
                let a = field(a, &mut params, &mut next);
                let b = field(b, &mut params, &mut next);
                format!("{a} * {b}")
            }
        };
        // SUM is NULL when no row has the field: missing, not zero. On
        // SQLite `+ 0.0` makes every term a float (no integer overflow, and
        // a float result).
        if pg {
            select.push(format!("SUM({e})"));
        } else {
            select.push(format!("SUM({e} + 0.0)"));
        }
    }
    let mut filter = vec![
        "workspace_id = $1".to_owned(),
        "provider = $3".to_owned(),
        "metric_date >= $4".to_owned(),
        "metric_date <= $5".to_owned(),
        VISIBLE.to_owned(),
    ];
    let list = |values: &[String],
                params: &mut Vec<Param>,
                next: &mut dyn FnMut(Param, &mut Vec<Param>) -> String| {
        if pg {
            let n = next(Param::Texts(values.to_vec()), params);
            format!("= ANY({n}::text[])")
        } else {
            let json = serde_json::to_string(values).unwrap_or_else(|_| "[]".to_owned());
            let n = next(Param::Text(json), params);
            format!("IN (SELECT value FROM json_each({n}))")
        }
    };
    let objects = list(&spec.objects, &mut params, &mut next);
    filter.push(format!("object {objects}"));
    if !spec.accounts.is_empty() {
        let accounts = list(&spec.accounts, &mut params, &mut next);
        filter.push(format!("account_id {accounts}"));
    }
    for (name, value) in &spec.dim_filters {
        let d = dim(name, &mut params, &mut next);
        let v = next(Param::Text(value.clone()), &mut params);
        filter.push(format!("{d} = {v}"));
    }
    // The account column is a constant NULL when not grouped by it.
    let positions: Vec<String> = (1..=grouped)
        .filter(|i| *i != 2 || spec.group_account)
        .map(|i| i.to_string())
        .collect();
    let sql = format!(
        "SELECT {} FROM {} WHERE {} GROUP BY {}",
        select.join(", "),
        table_for(spec),
        filter.join(" AND "),
        positions.join(", ")
    );
    (sql, params)
}

/// The daily roll-up (dimensions summed away per account, day and
/// currency; see its migration) answers every spec that neither groups nor
/// filters by a dimension and only sums fields: the same sums from ~6×
/// fewer rows. Σ a·b of a weighted average can't be taken from sums.
fn table_for(spec: &AggregateSpec) -> &'static str {
    let by_day = spec.group_dims.is_empty()
        && spec.dim_filters.is_empty()
        && spec.cols.iter().all(|c| matches!(c, Col::Sum(_)));
    if by_day {
        "metric_daily"
    } else {
        "metric_rows"
    }
}

fn parse_day(s: &str) -> Option<Date> {
    Date::parse(s, time::macros::format_description!("[year]-[month]-[day]")).ok()
}

fn decode<R>(row: &R, spec: &AggregateSpec) -> sqlx::Result<Option<AggRow>>
where
    R: Row,
    usize: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database>,
    for<'r> f64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<f64>: sqlx::Decode<'r, R::Database>,
{
    let bucket: String = row.try_get(0)?;
    let Some(bucket) = parse_day(&bucket) else {
        return Ok(None);
    };
    let account: Option<String> = row.try_get(1)?;
    let mut i = 2;
    let mut dims = Vec::with_capacity(spec.group_dims.len());
    for _ in &spec.group_dims {
        dims.push(row.try_get::<Option<String>, _>(i)?);
        i += 1;
    }
    let object: String = row.try_get(i)?;
    let currency: Option<String> = row.try_get(i + 1)?;
    i += 2;
    let mut sums = Vec::with_capacity(spec.cols.len());
    for _ in &spec.cols {
        let sum: Option<f64> = row.try_get(i)?;
        sums.push(sum);
        i += 1;
    }
    Ok(Some(AggRow {
        daily: false,
        bucket,
        account,
        dims,
        object,
        currency,
        sums,
    }))
}

// The first and the last visible day, each as an index walk that stops at
// the first visible row: SQLite answers MIN/MAX with a filter beside the
// index by reading every row of the provider.
const COVERAGE_FIRST: &str = "SELECT metric_date FROM metric_rows \
     WHERE workspace_id = $1 AND provider = $3 AND ";
const COVERAGE_ORDER: &str = " ORDER BY metric_date";

fn coverage_sql() -> String {
    format!(
        "SELECT ({COVERAGE_FIRST}{VISIBLE}{COVERAGE_ORDER} LIMIT 1), \
         ({COVERAGE_FIRST}{VISIBLE}{COVERAGE_ORDER} DESC LIMIT 1)"
    )
}

const REVISIONS: &str = "SELECT provider, connection_id, object, account_id, metric_date, dimension_key, metric, \
     old_value, new_value, at FROM metric_revisions WHERE workspace_id = $1 AND at > $3 AND ";

#[async_trait::async_trait]
impl MetricQueryStore for PgStore {
    async fn aggregate_once(&self, spec: &AggregateSpec) -> sqlx::Result<Vec<AggRow>> {
        let (sql, params) = build(spec, true);
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(spec.workspace)
            .bind(spec.user)
            .bind(&spec.provider)
            .bind(spec.from)
            .bind(spec.to);
        for p in params {
            q = match p {
                Param::Text(t) => q.bind(t),
                Param::Texts(t) => q.bind(t),
            };
        }
        let rows = q.fetch_all(&self.pool).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.extend(decode(row, spec)?);
        }
        Ok(out)
    }

    async fn metric_coverage(
        &self,
        workspace: WorkspaceId,
        user: Uuid,
        provider: &str,
    ) -> sqlx::Result<(Option<Date>, Option<Date>)> {
        sqlx::query_as(sqlx::AssertSqlSafe(coverage_sql()))
            .bind(workspace)
            .bind(user)
            .bind(provider)
            .fetch_one(&self.pool)
            .await
    }

    async fn metric_revisions_since(
        &self,
        workspace: WorkspaceId,
        user: Uuid,
        since: OffsetDateTime,
        limit: i64,
    ) -> sqlx::Result<Vec<RevisionRow>> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{REVISIONS}{VISIBLE} ORDER BY at DESC, metric_date DESC LIMIT $4"
        )))
        .bind(workspace)
        .bind(user)
        .bind(since)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
    }
}

#[async_trait::async_trait]
impl MetricQueryStore for SqliteStore {
    async fn aggregate_once(&self, spec: &AggregateSpec) -> sqlx::Result<Vec<AggRow>> {
        let (sql, params) = build(spec, false);
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(spec.workspace)
            .bind(spec.user)
            .bind(&spec.provider)
            .bind(spec.from)
            .bind(spec.to);
        for p in params {
            q = match p {
                Param::Text(t) => q.bind(t),
                Param::Texts(t) => {
                    q.bind(serde_json::to_string(&t).unwrap_or_else(|_| "[]".to_owned()))
                }
            };
        }
        let rows = q.fetch_all(&self.pool).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.extend(decode(row, spec)?);
        }
        Ok(out)
    }

    async fn metric_coverage(
        &self,
        workspace: WorkspaceId,
        user: Uuid,
        provider: &str,
    ) -> sqlx::Result<(Option<Date>, Option<Date>)> {
        let (first, last): (Option<String>, Option<String>) =
            sqlx::query_as(sqlx::AssertSqlSafe(coverage_sql()))
                .bind(workspace)
                .bind(user)
                .bind(provider)
                .fetch_one(&self.pool)
                .await?;
        Ok((
            first.as_deref().and_then(parse_day),
            last.as_deref().and_then(parse_day),
        ))
    }

    async fn metric_revisions_since(
        &self,
        workspace: WorkspaceId,
        user: Uuid,
        since: OffsetDateTime,
        limit: i64,
    ) -> sqlx::Result<Vec<RevisionRow>> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{REVISIONS}{VISIBLE} ORDER BY at DESC, metric_date DESC LIMIT $4"
        )))
        .bind(workspace)
        .bind(user)
        .bind(since)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
    }
}
