//! Dashboard benchmark on SQLite and PostgreSQL (not a test; prints figures).
//!
//!   cargo bench --bench dashboard
//!
//! Per backend: starts the app, seeds one workspace with ~1,000,000 metric
//! rows through the internal write API (3 years × 150 accounts × 6
//! channels = 985,500) and another workspace with 100,000 rows as noise,
//! then files them under the sandbox's `daily_metrics` object (the one its
//! semantic layer describes) with one UPDATE: writing as that object takes
//! the sync's replace-the-day path with its revision log, far too slow to
//! seed a million rows in a bench. Then it measures, after a warm-up:
//!
//! 1. the dashboard's queries: `GET /api/data/kpis` (last 28 days with the
//!    previous period) plus the chart's compared series
//!    (`GET /api/data/metrics/query`, one metric by day), as the page does;
//! 2. an explorer query: three metrics grouped by account and ISO week over
//!    the last 90 days;
//! 3. the dashboard page itself (`GET /data`, every query behind it).
//!
//! Prints p50 and p95 of each next to the targets. PostgreSQL uses
//! a fresh database on TEST_DATABASE_URL's server, dropped afterwards;
//! SQLite a temp file. BENCH_ROWS_DAYS / BENCH_ACCOUNTS / BENCH_RUNS scale
//! it (e.g. BENCH_ROWS_DAYS=60 for a quick run); BENCH_BACKENDS=sqlite or
//! postgres runs one.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::{Duration, Instant};

use plugboard::app;
use plugboard::config::Settings;
use serde_json::{Value, json};
use sqlx::ConnectOptions;
use sqlx::postgres::PgConnectOptions;
use tokio::net::TcpListener;

const CHANNELS: [&str; 6] = ["organic", "paid", "email", "social", "referral", "direct"];
const BATCH: usize = 10_000;
const CLIENT_ID: &str = "bench-client";
const CLIENT_SECRET: &str = "bench-secret";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn database_url(admin: &str, name: &str) -> String {
    let (without_query, query) = match admin.split_once('?') {
        Some((u, q)) => (u, format!("?{q}")),
        None => (admin, String::new()),
    };
    let scheme_end = without_query.find("://").map_or(0, |i| i + 3);
    let base = match without_query[scheme_end..].find('/') {
        Some(slash) => &without_query[..scheme_end + slash],
        None => without_query,
    };
    format!("{base}/{name}{query}")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

#[derive(Debug, Clone, Copy)]
struct Plan {
    days: usize,
    accounts: usize,
    noise_rows: usize,
    runs: usize,
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let plan = Plan {
        days: env_usize("BENCH_ROWS_DAYS", 1095),
        accounts: env_usize("BENCH_ACCOUNTS", 150),
        noise_rows: env_usize("BENCH_NOISE_ROWS", 100_000),
        runs: env_usize("BENCH_RUNS", 40),
    };
    let backends = std::env::var("BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
    if backends.contains("sqlite") {
        let dir = tempfile::tempdir()?;
        run("SQLite", None, dir.path(), plan).await?;
    }
    if backends.contains("postgres") {
        let admin_url = std::env::var("TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let db_name = format!("pb_bench_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnectOptions::from_str(&admin_url)?.connect().await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE \"{db_name}\""
        )))
        .execute(&mut admin)
        .await?;
        let dir = tempfile::tempdir()?;
        let result = run(
            "PostgreSQL",
            Some(database_url(&admin_url, &db_name)),
            dir.path(),
            plan,
        )
        .await;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{db_name}\" WITH (FORCE)"
        )))
        .execute(&mut admin)
        .await?;
        result?;
    }
    Ok(())
}

struct Tenant {
    http: reqwest::Client,
    workspace: String,
    connection: String,
    key: String,
}

async fn tenant(base: &str, email: &str, accounts: usize) -> anyhow::Result<Tenant> {
    let http = reqwest::Client::builder().cookie_store(true).build()?;
    let me: Value = http
        .post(format!("{base}/api/auth/signup"))
        .json(&json!({"email": email, "password": "bench password 123", "name": "Bench", "organization": email}))
        .send()
        .await?
        .json()
        .await?;
    let workspace = me["currentWorkspaceId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let conn: Value = http
        .post(format!("{base}/api/integrations/sandbox/connect"))
        .json(&json!({"flow": "client_credentials", "clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET,
                      "headers": {"X-Sandbox-Company": "bench"}, "ownership": "workspace"}))
        .send()
        .await?
        .json()
        .await?;
    let connection = conn["id"].as_str().unwrap_or_default().to_owned();
    // Chosen accounts, as a real workspace has them (else the dashboard
    // only asks to choose some).
    let ids: Vec<String> = (1..=accounts).map(|n| format!("prop-{n}")).collect();
    let res = http
        .post(format!("{base}/api/data/select-account"))
        .json(&json!({"provider": "sandbox", "connectionId": connection, "accountIds": ids}))
        .send()
        .await?;
    anyhow::ensure!(
        res.status().is_success(),
        "select-account failed: {}",
        res.text().await?
    );
    let key: Value = http
        .post(format!("{base}/api/workspaces/{workspace}/service-keys"))
        .json(&json!({"name": "bench", "scopes": ["metrics:write", "metrics:read"]}))
        .send()
        .await?
        .json()
        .await?;
    let key = key["key"].as_str().unwrap_or_default().to_owned();
    anyhow::ensure!(
        !workspace.is_empty() && !connection.is_empty() && !key.is_empty(),
        "set-up failed for {email}"
    );
    Ok(Tenant {
        http,
        workspace,
        connection,
        key,
    })
}

/// Writes `rows` rows: day-major over `days` days ending yesterday, then
/// account, then channel. Returns rows/s.
async fn seed(
    base: &str,
    t: &Tenant,
    days: usize,
    accounts: usize,
    rows: usize,
) -> anyhow::Result<f64> {
    let yesterday = time::OffsetDateTime::now_utc().date() - time::Duration::days(1);
    let per_day = accounts * CHANNELS.len();
    // Whole days per batch (a day's rows arrive together, as a sync's do).
    let batch_rows = (BATCH / per_day.max(1)).max(1) * per_day.max(1);
    let start = Instant::now();
    let mut written = 0;
    while written < rows {
        let n = batch_rows.min(rows - written);
        let batch: Vec<Value> = (written..written + n)
            .map(|i| {
                let day = (i / per_day) % days.max(1);
                let account = (i / CHANNELS.len()) % accounts.max(1);
                let date = yesterday - time::Duration::days(day as i64);
                let v = (i % 997) as u64;
                json!({
                    "date": date.to_string(),
                    "accountId": format!("prop-{}", account + 1),
                    "metricsJson": {"sessions": 300 + v, "users": 200 + v / 2, "conversions": v / 40,
                                    "revenue": (v * 7) as f64 / 3.0, "ad_clicks": 20 + v / 10,
                                    "impressions": 2000 + v * 3, "cost": (v * 3) as f64 / 7.0},
                    "dimensionsJson": {"channel": CHANNELS[i % CHANNELS.len()]},
                })
            })
            .collect();
        let body = json!({"tenant": {"workspaceId": t.workspace}, "provider": "sandbox",
                          "connectionId": t.connection, "metrics": batch});
        let res = t
            .http
            .post(format!("{base}/api/internal/metrics/write"))
            .bearer_auth(&t.key)
            .json(&body)
            .send()
            .await?;
        let status = res.status();
        anyhow::ensure!(
            status.is_success(),
            "metrics write failed after {written} rows: {status} {}",
            res.text().await?
        );
        written += n;
    }
    Ok(written as f64 / start.elapsed().as_secs_f64())
}

/// p50 and p95 of `runs` sequential calls of `call` after 3 warm-ups.
async fn measure<F, Fut>(runs: usize, mut call: F) -> anyhow::Result<(Duration, Duration)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    for _ in 0..3 {
        call().await?;
    }
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        call().await?;
        times.push(t.elapsed());
    }
    times.sort();
    Ok((percentile(&times, 0.5), percentile(&times, 0.95)))
}

async fn get_ok(http: &reqwest::Client, url: &str) -> anyhow::Result<()> {
    let res = http.get(url).send().await?;
    let status = res.status();
    let body = res.bytes().await?;
    anyhow::ensure!(
        status.is_success(),
        "{url}: {status} {}",
        String::from_utf8_lossy(&body)
    );
    Ok(())
}

/// The seeded rows become the sandbox's `daily_metrics` rows (in USD), and
/// the planner gets fresh statistics, as after a real sync.
async fn as_sync_object(database_url: Option<&str>, dir: &std::path::Path) -> anyhow::Result<()> {
    const TAG: &str = "UPDATE metric_rows SET object = 'daily_metrics', currency = 'USD' \
                       WHERE provider = 'sandbox' AND object = ''";
    // The daily roll-up the writes kept (one row per account and day: an
    // account's rows share a currency) is filed the same way, so it still
    // equals the raw rows.
    const TAG_DAILY: &str = "UPDATE metric_daily SET object = 'daily_metrics', currency = 'USD' \
                             WHERE provider = 'sandbox' AND object = ''";
    match database_url {
        Some(url) => {
            let mut db = PgConnectOptions::from_str(url)?.connect().await?;
            sqlx::query(TAG).execute(&mut db).await?;
            sqlx::query(TAG_DAILY).execute(&mut db).await?;
            // The UPDATE left a dead version of every row; without a VACUUM
            // index scans wade through them (MIN/MAX went from 0.2 ms to
            // ~300 ms), which a real workspace's writes never produce.
            for table in ["metric_rows", "metric_daily"] {
                sqlx::query(sqlx::AssertSqlSafe(format!("VACUUM ANALYZE {table}")))
                    .execute(&mut db)
                    .await?;
            }
        }
        None => {
            let mut db = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(dir.join("plugboard.db"))
                .connect()
                .await?;
            sqlx::query(TAG).execute(&mut db).await?;
            sqlx::query(TAG_DAILY).execute(&mut db).await?;
            sqlx::query("ANALYZE").execute(&mut db).await?;
        }
    }
    Ok(())
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

async fn run(
    label: &str,
    database_url: Option<String>,
    dir: &std::path::Path,
    plan: Plan,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let mut env: HashMap<String, String> = [
        ("PLUGBOARD_DATA_DIR", dir.display().to_string()),
        ("PLUGBOARD_PUBLIC_URL", base.clone()),
        (
            "PLUGBOARD_ENCRYPTION_KEYS",
            plugboard::vault::generate_key_entry("bench")?,
        ),
        (
            "PLUGBOARD_PROVIDERS_DIR",
            format!("{}/providers", env!("CARGO_MANIFEST_DIR")),
        ),
        ("PLUGBOARD_LOG_LEVEL", "error".into()),
        ("PLUGBOARD_SANDBOX", "true".into()),
        ("PLUGBOARD_SANDBOX_CLIENT_ID", CLIENT_ID.into()),
        ("PLUGBOARD_SANDBOX_CLIENT_SECRET", CLIENT_SECRET.into()),
        (
            "PLUGBOARD_SANDBOX_DATASET",
            format!("properties={}", plan.accounts),
        ),
        ("PLUGBOARD_INTERNAL_REQUESTS_PER_MINUTE", "100000000".into()),
        ("PLUGBOARD_REQUEST_TIMEOUT_SECS", "300".into()),
        ("PLUGBOARD_OAUTH_KEEPALIVE_INTERVAL_MINUTES", "0".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    if let Some(url) = &database_url {
        env.insert("DATABASE_URL".into(), url.clone());
    }
    let settings = Settings::from_env_map(&env)?;
    let state = app::build_state(settings).await?;
    let server = app::spawn(state, listener).await?;

    let main = tenant(&base, "bench@example.com", plan.accounts).await?;
    let noise = tenant(&base, "noise@example.com", plan.accounts).await?;
    let rows = plan.days * plan.accounts * CHANNELS.len();
    let rate = seed(&base, &main, plan.days, plan.accounts, rows).await?;
    seed(
        &base,
        &noise,
        plan.days,
        plan.accounts,
        plan.noise_rows.min(rows),
    )
    .await?;
    as_sync_object(database_url.as_deref(), dir).await?;
    println!(
        "dashboard bench, {label}: {rows} rows in the measured workspace ({} days × {} accounts × {} channels) + {} in another; seeded at {rate:.0} rows/s; {} runs each",
        plan.days,
        plan.accounts,
        CHANNELS.len(),
        plan.noise_rows.min(rows),
        plan.runs
    );

    let yesterday = time::OffsetDateTime::now_utc().date() - time::Duration::days(1);
    let from28 = yesterday - time::Duration::days(27);
    let prev_to = from28 - time::Duration::days(1);
    let prev_from = prev_to - time::Duration::days(27);
    let from90 = yesterday - time::Duration::days(89);
    let http = &main.http;
    let kpis = format!("{base}/api/data/kpis?range=28d&compare=previous_period");
    let chart = format!(
        "{base}/api/data/metrics/query?metrics=sessions&grain=day&from={prev_from}&to={prev_to}"
    );
    let explorer = format!(
        "{base}/api/data/metrics/query?metrics=sessions,revenue,ctr&groupBy=account&grain=week&from={from90}&to={yesterday}"
    );
    let page = format!("{base}/data");
    let html = http.get(&page).send().await?.text().await?;
    anyhow::ensure!(
        html.contains("data-testid=\"kpis\"") && html.contains("data-testid=\"bar-chart\""),
        "the dashboard shows no tiles or bars: the page figure would be meaningless"
    );

    let (k50, k95) = measure(plan.runs, || async {
        get_ok(http, &kpis).await?;
        get_ok(http, &chart).await
    })
    .await?;
    let (e50, e95) = measure(plan.runs, || get_ok(http, &explorer)).await?;
    let (p50, p95) = measure(plan.runs, || get_ok(http, &page)).await?;
    let (dash_target, explorer_target) = if label == "SQLite" {
        ("250 ms", "500 ms")
    } else {
        ("100 ms", "200 ms")
    };
    println!(
        "  KPIs with comparison + chart series: p50 {}, p95 {} (target p95 ≤ {dash_target})",
        ms(k50),
        ms(k95)
    );
    println!(
        "  explorer, 3 metrics by account and week, 90 days: p50 {}, p95 {} (target p95 ≤ {explorer_target})",
        ms(e50),
        ms(e95)
    );
    println!(
        "  dashboard page GET /data (every query behind it): p50 {}, p95 {}{}",
        ms(p50),
        ms(p95),
        if label == "SQLite" {
            ""
        } else {
            " (target p95 ≤ 150 ms)"
        }
    );
    server.stop().await?;
    Ok(())
}
