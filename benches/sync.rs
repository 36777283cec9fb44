//! Sync benchmark against PostgreSQL (not a test; prints figures).
//!
//!   cargo bench --bench sync
//!
//! 1. Starts the app with the built-in sandbox sized to 200,000 records
//!    (people, plus parent projects) and 100,000 daily metric rows
//!    (1,000 properties × 100 days, every property selected), then syncs
//!    them through the real workers: records first (the `people` and
//!    `projects` jobs run side by side), then `daily_metrics`. Each phase
//!    is timed from enqueue to every job succeeded; the stored rows are
//!    counted back from the database and must all be there.
//! 2. Loads the very same rows (read back from `records` and `metric_rows`,
//!    every column) with `COPY … FROM STDIN` (text format) into scratch
//!    tables made `LIKE` the real ones (logged, same primary key and
//!    indexes, no foreign keys), timing only the COPY, and prints the
//!    ratio of the sync's rate to COPY's.
//!
//! The sandbox provider's rate budget (600 requests/min per connection,
//! 6,000 overall) is lifted through PLUGBOARD_RATE_LIMITS and its advertised
//! quota through PLUGBOARD_SANDBOX_REQUESTS_PER_MINUTE, so the figures are
//! what the engine and the database can do, not what the budget allows.
//!
//! Uses a fresh database on TEST_DATABASE_URL's server, dropped afterwards;
//! its query (e.g. `?sslmode=disable`) is kept, and the output says whether
//! the connections use TLS, which changes the records figure a lot.
//! BENCH_RECORDS and BENCH_METRIC_ROWS scale it down for a quick run.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::{Duration, Instant};

use plugboard::app;
use plugboard::config::Settings;
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Row};
use tokio::net::TcpListener;
use uuid::Uuid;

const CLIENT_ID: &str = "bench-client";
const CLIENT_SECRET: &str = "bench-secret";
/// Most people the sandbox generates (`Dataset::clamped`).
const MAX_PEOPLE: usize = 1_000_000;
const RATE_LIMITS: &str = "sandbox:rpm=1000000,global=1000000";
const SANDBOX_RPM: &str = "10000000";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `admin` with its database replaced by `name`; query parameters (such as
/// `sslmode`) are kept.
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

/// What the sandbox serves, sized from the wanted row counts.
#[derive(Debug, Clone, Copy)]
struct Plan {
    projects: usize,
    people: usize,
    properties: usize,
    days: usize,
}

impl Plan {
    /// Records: 1 in 40 a parent project (5,000 of 200,000), the rest
    /// people. Metric rows: 100 days per property up to 1,000 properties,
    /// then more days.
    fn new(records: usize, metric_rows: usize) -> Plan {
        let projects = (records / 40).min(5_000);
        let properties = (metric_rows / 100).clamp(1, 1_000);
        Plan {
            projects,
            people: records - projects,
            properties,
            days: (metric_rows / properties).max(1),
        }
    }

    fn records(&self) -> usize {
        self.projects + self.people
    }

    fn metric_rows(&self) -> usize {
        self.properties * self.days
    }

    /// `children=0`: the projects object reads parents only (its parentOnly
    /// filter), so children would be filtered out by the sandbox anyway.
    fn dataset(&self) -> String {
        format!(
            "properties={},days={},projects={},children=0,people={}",
            self.properties, self.days, self.projects, self.people
        )
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let plan = Plan::new(
        env_usize("BENCH_RECORDS", 200_000),
        env_usize("BENCH_METRIC_ROWS", 100_000),
    );
    anyhow::ensure!(
        plan.people <= MAX_PEOPLE,
        "BENCH_RECORDS is too large: the sandbox generates at most {MAX_PEOPLE} people"
    );

    let admin_url = std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let db_name = format!("pb_bench_{}", Uuid::new_v4().simple());
    let mut admin = PgConnectOptions::from_str(&admin_url)?.connect().await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE DATABASE \"{db_name}\""
    )))
    .execute(&mut admin)
    .await?;

    let result = run(&admin_url, &db_name, plan).await;

    let dropped = sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS \"{db_name}\" WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await;
    admin.close().await.ok();
    result?;
    dropped?;
    Ok(())
}

async fn run(admin_url: &str, db_name: &str, plan: Plan) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let url = database_url(admin_url, db_name);
    let tuned: Vec<(&str, String)> = vec![
        ("PLUGBOARD_SANDBOX_DATASET", plan.dataset()),
        ("PLUGBOARD_RATE_LIMITS", RATE_LIMITS.into()),
        ("PLUGBOARD_SANDBOX_REQUESTS_PER_MINUTE", SANDBOX_RPM.into()),
        (
            "PLUGBOARD_SYNC_METRICS_BACKFILL_DAYS",
            plan.days.to_string(),
        ),
        ("PLUGBOARD_SYNC_MAX_PAGES", "1000000".into()),
        ("PLUGBOARD_PLANNER_INTERVAL_SECS", "0".into()),
        ("PLUGBOARD_OAUTH_KEEPALIVE_INTERVAL_MINUTES", "0".into()),
    ];
    let mut env: HashMap<String, String> = [
        ("DATABASE_URL", url.clone()),
        ("PLUGBOARD_DATA_DIR", dir.path().display().to_string()),
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
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    env.extend(tuned.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
    let settings = Settings::from_env_map(&env)?;
    let sync_settings = settings.sync.clone();
    let max_connections = settings.database.max_connections;
    let state = app::build_state(settings).await?;
    let server = app::spawn(state, listener).await?;
    let db = PgPoolOptions::new()
        .max_connections(2)
        .connect(&url)
        .await?;

    let server_version: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(&db)
        .await?;
    let tls: Option<bool> =
        sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_optional(&db)
            .await?;
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "sync bench: PostgreSQL {server_version} at {}, {cores} cores (app, sandbox and PostgreSQL share them); \
         database connections {} TLS (sslmode from TEST_DATABASE_URL, sqlx's default is prefer)",
        admin_url.rsplit('@').next().unwrap_or_default(),
        if tls == Some(true) { "over" } else { "without" }
    );
    println!("settings:");
    for (k, v) in &tuned {
        println!("  {k}={v}");
    }
    println!(
        "  (defaults kept: PLUGBOARD_SYNC_WORKERS={}, PLUGBOARD_DATABASE_MAX_CONNECTIONS={max_connections}, \
         per-connection job concurrency from provider.json; the rate limits above lift the sandbox's \
         provider.json budget of 600 requests/min per connection and 6,000 overall for the bench)",
        sync_settings.workers
    );

    let result = measure(&base, &db, plan).await;
    server.stop().await?;
    db.close().await;
    result
}

struct Phase {
    elapsed: Duration,
    requests: u64,
    jobs: Vec<JobRun>,
}

struct JobRun {
    object: String,
    fetched: u64,
    created: u64,
    pages: u64,
    /// From enqueue to the poll that saw it succeed (the jobs table keeps
    /// whole seconds only).
    done_after: Duration,
}

impl Phase {
    fn pages(&self) -> u64 {
        self.jobs.iter().map(|j| j.pages).sum()
    }
}

async fn measure(base: &str, db: &PgPool, plan: Plan) -> anyhow::Result<()> {
    let http = reqwest::Client::builder().cookie_store(true).build()?;
    let res = http
        .post(format!("{base}/api/auth/signup"))
        .json(&json!({"email": "bench@example.com", "password": "bench password 123", "name": "Bench", "organization": "Bench"}))
        .send()
        .await?;
    anyhow::ensure!(
        res.status().is_success(),
        "signup failed: {}",
        res.text().await?
    );
    let res = http
        .post(format!("{base}/api/integrations/sandbox/connect"))
        .json(&json!({"flow": "client_credentials", "clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET, "headers": {"X-Sandbox-Company": "acme"}}))
        .send()
        .await?;
    anyhow::ensure!(
        res.status().is_success(),
        "connect failed: {}",
        res.text().await?
    );
    let conn: Value = res.json().await?;
    let connection_id: Uuid = conn["id"].as_str().unwrap_or_default().parse()?;
    let accounts: Vec<String> = (1..=plan.properties).map(|n| format!("prop-{n}")).collect();
    let res = http
        .post(format!("{base}/api/data/select-account"))
        .json(&json!({"provider": "sandbox", "accountIds": accounts}))
        .send()
        .await?;
    anyhow::ensure!(
        res.status().is_success(),
        "selecting the properties failed: {}",
        res.text().await?
    );

    // 1. Records, then metrics, each from enqueue to every job succeeded.
    let records = sync_phase(&http, base, db, &["people", "projects"]).await?;
    let metrics = sync_phase(&http, base, db, &["daily_metrics"]).await?;

    // Every row must have arrived.
    let stored = |object: &'static str| {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM records WHERE connection_id = $1 AND object = $2",
        )
        .bind(connection_id)
        .bind(object)
        .fetch_one(db)
    };
    let (people, projects) = (stored("people").await?, stored("projects").await?);
    let metric_rows: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM metric_rows WHERE connection_id = $1 AND provider = 'sandbox'",
    )
    .bind(connection_id)
    .fetch_one(db)
    .await?;
    let all_records: i64 = sqlx::query_scalar("SELECT count(*) FROM records")
        .fetch_one(db)
        .await?;
    let all_metrics: i64 = sqlx::query_scalar("SELECT count(*) FROM metric_rows")
        .fetch_one(db)
        .await?;
    anyhow::ensure!(
        people == plan.people as i64
            && projects == plan.projects as i64
            && metric_rows == plan.metric_rows() as i64
            && all_records == people + projects
            && all_metrics == metric_rows,
        "rows missing: stored {people} people (expected {}), {projects} projects (expected {}), \
         {metric_rows} metric rows (expected {}); {all_records} records and {all_metrics} metric rows in all",
        plan.people,
        plan.projects,
        plan.metric_rows()
    );
    for job in records.jobs.iter().chain(&metrics.jobs) {
        let expected = match job.object.as_str() {
            "people" => plan.people,
            "projects" => plan.projects,
            _ => plan.metric_rows(),
        } as u64;
        anyhow::ensure!(
            job.fetched == expected && job.created == expected,
            "{}: the job fetched {} and created {}, expected {expected}",
            job.object,
            job.fetched,
            job.created
        );
    }
    // Throttling would make the figures meaningless: say if any happened.
    let throttled: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM job_logs WHERE message LIKE 'waited %' OR message LIKE '%quota is running low%' OR message LIKE 'retry %'",
    )
    .fetch_one(db)
    .await?;

    let rate = |rows: usize, d: Duration| rows as f64 / d.as_secs_f64();
    let sync_records_rate = rate(plan.records(), records.elapsed);
    let sync_metrics_rate = rate(plan.metric_rows(), metrics.elapsed);
    let sync_total = records.elapsed + metrics.elapsed;
    let total_rows = plan.records() + plan.metric_rows();
    println!(
        "records sync: {} records ({} people + {} parent projects) in {:.2} s: {:.0} records/s; \
         {} pages, {} sandbox API requests",
        plan.records(),
        plan.people,
        plan.projects,
        records.elapsed.as_secs_f64(),
        sync_records_rate,
        records.pages(),
        records.requests
    );
    print_jobs(&records);
    println!(
        "metrics sync: {} metric rows ({} properties × {} days) in {:.2} s: {:.0} metric rows/s; \
         {} pages, {} sandbox API requests",
        plan.metric_rows(),
        plan.properties,
        plan.days,
        metrics.elapsed.as_secs_f64(),
        sync_metrics_rate,
        metrics.pages(),
        metrics.requests
    );
    print_jobs(&metrics);
    println!(
        "sync combined: {total_rows} rows in {:.2} s: {:.0} rows/s (phases run one after the other); \
         every row counted back from PostgreSQL; throttling/retry log lines: {throttled}",
        sync_total.as_secs_f64(),
        rate(total_rows, sync_total)
    );

    // 2. The same rows through COPY.
    println!(
        "COPY: text format through PgConnection::copy_in_raw, the rows read back from records / metric_rows \
         (every column), into LOGGED scratch tables created LIKE them INCLUDING ALL (same primary key and \
         indexes, no foreign keys); only the COPY is timed"
    );
    let mut conn = db.acquire().await?;
    let copy_records = copy_table(&mut conn, "records", "bench_copy_records").await?;
    let copy_metrics = copy_table(&mut conn, "metric_rows", "bench_copy_metric_rows").await?;
    drop(conn);
    anyhow::ensure!(
        copy_records.rows == plan.records() as u64
            && copy_metrics.rows == plan.metric_rows() as u64,
        "COPY loaded {} records and {} metric rows",
        copy_records.rows,
        copy_metrics.rows
    );
    let copy_records_rate = rate(plan.records(), copy_records.elapsed);
    let copy_metrics_rate = rate(plan.metric_rows(), copy_metrics.elapsed);
    let copy_total = copy_records.elapsed + copy_metrics.elapsed;
    for (label, copy, copy_rate, sync_rate) in [
        (
            "records",
            &copy_records,
            copy_records_rate,
            sync_records_rate,
        ),
        (
            "metric rows",
            &copy_metrics,
            copy_metrics_rate,
            sync_metrics_rate,
        ),
    ] {
        println!(
            "COPY {label}: {} rows, {:.1} MB of COPY text, in {:.2} s: {:.0} rows/s; sync/COPY = {:.3} (COPY {:.1}× faster)",
            copy.rows,
            copy.bytes as f64 / 1e6,
            copy.elapsed.as_secs_f64(),
            copy_rate,
            sync_rate / copy_rate,
            copy_rate / sync_rate
        );
    }
    let sync_rate = rate(total_rows, sync_total);
    let copy_rate = rate(total_rows, copy_total);
    println!(
        "COPY combined: {total_rows} rows in {:.2} s: {:.0} rows/s; sync/COPY = {:.3} (COPY {:.1}× faster)",
        copy_total.as_secs_f64(),
        copy_rate,
        sync_rate / copy_rate,
        copy_rate / sync_rate
    );
    Ok(())
}

fn print_jobs(phase: &Phase) {
    for job in &phase.jobs {
        println!(
            "  {}: {} rows, {} pages ({:.1} rows/page), succeeded {:.2} s after enqueue",
            job.object,
            job.created,
            job.pages,
            job.created as f64 / job.pages.max(1) as f64,
            job.done_after.as_secs_f64()
        );
    }
}

async fn sandbox_requests(http: &reqwest::Client, base: &str) -> anyhow::Result<u64> {
    let stats: Value = http
        .get(format!("{base}/sandbox/_stats"))
        .send()
        .await?
        .json()
        .await?;
    Ok(stats["api_requests"].as_u64().unwrap_or_default())
}

/// Enqueues a sync of each object and waits until all have succeeded.
async fn sync_phase(
    http: &reqwest::Client,
    base: &str,
    db: &PgPool,
    objects: &[&str],
) -> anyhow::Result<Phase> {
    // Workers announce themselves on start; until then syncs answer 503.
    let ready_by = Instant::now() + Duration::from_secs(30);
    while sqlx::query_scalar::<_, i64>("SELECT count(*) FROM workers")
        .fetch_one(db)
        .await?
        == 0
    {
        anyhow::ensure!(Instant::now() < ready_by, "no sync worker started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let requests_before = sandbox_requests(http, base).await?;
    let start = Instant::now();
    let mut ids = Vec::new();
    for object in objects {
        let res = http
            .post(format!("{base}/api/integrations/sandbox/{object}/sync"))
            .json(&json!({}))
            .send()
            .await?;
        anyhow::ensure!(
            res.status() == reqwest::StatusCode::ACCEPTED,
            "enqueueing {object} failed: {} {}",
            res.status(),
            res.text().await?
        );
        let jobs: Value = res.json().await?;
        ids.push(
            jobs[0]["jobId"]
                .as_str()
                .unwrap_or_default()
                .parse::<Uuid>()?,
        );
    }
    // Polled on the database: the job API returns the whole log, which for
    // thousands of pages would load the machine being measured.
    let mut done_after: HashMap<Uuid, Duration> = HashMap::new();
    loop {
        let rows = sqlx::query("SELECT id, status, error FROM jobs WHERE id = ANY($1)")
            .bind(&ids)
            .fetch_all(db)
            .await?;
        let mut done = 0;
        for row in &rows {
            let status: String = row.try_get("status")?;
            match status.as_str() {
                "succeeded" => {
                    done += 1;
                    done_after
                        .entry(row.try_get("id")?)
                        .or_insert_with(|| start.elapsed());
                }
                "failed" | "cancelled" => {
                    let error: Option<String> = row.try_get("error")?;
                    anyhow::bail!("a sync job {status}: {}", error.unwrap_or_default());
                }
                _ => {}
            }
        }
        if done == ids.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = start.elapsed();
    let requests = sandbox_requests(http, base).await? - requests_before;
    let rows = sqlx::query(
        "SELECT id, object, counts, (checkpoint->>'pages')::bigint AS pages \
         FROM jobs WHERE id = ANY($1) ORDER BY object",
    )
    .bind(&ids)
    .fetch_all(db)
    .await?;
    let mut jobs = Vec::new();
    for row in rows {
        let counts: Value = row.try_get("counts")?;
        let pages: Option<i64> = row.try_get("pages")?;
        let id: Uuid = row.try_get("id")?;
        jobs.push(JobRun {
            object: row.try_get("object")?,
            fetched: counts["fetched"].as_u64().unwrap_or_default(),
            created: counts["created"].as_u64().unwrap_or_default(),
            pages: pages.unwrap_or_default().max(0) as u64,
            done_after: done_after.get(&id).copied().unwrap_or(elapsed),
        });
    }
    Ok(Phase {
        elapsed,
        requests,
        jobs,
    })
}

struct CopyRun {
    rows: u64,
    bytes: usize,
    elapsed: Duration,
}

/// Text-format COPY escaping (backslash, newline, carriage return, tab).
fn push_copy_text(out: &mut Vec<u8>, value: Option<&str>) {
    let Some(value) = value else {
        out.extend_from_slice(b"\\N");
        return;
    };
    for byte in value.bytes() {
        match byte {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b => out.push(b),
        }
    }
}

/// Reads every row of `source` (every column, as text) into COPY text,
/// creates `scratch` LIKE it, and times COPY FROM STDIN of that text.
async fn copy_table(
    conn: &mut sqlx::PgConnection,
    source: &str,
    scratch: &str,
) -> anyhow::Result<CopyRun> {
    let columns: Vec<String> = sqlx::query_scalar(
        "SELECT column_name::text FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
    )
    .bind(source)
    .fetch_all(&mut *conn)
    .await?;
    anyhow::ensure!(!columns.is_empty(), "no table {source}");
    let list = columns
        .iter()
        .map(|c| format!("\"{c}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let select = columns
        .iter()
        .map(|c| format!("\"{c}\"::text"))
        .collect::<Vec<_>>()
        .join(", ");
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {select} FROM {source}"
    )))
    .fetch_all(&mut *conn)
    .await?;
    let mut text = Vec::with_capacity(rows.len() * 256);
    for row in &rows {
        for i in 0..columns.len() {
            if i > 0 {
                text.push(b'\t');
            }
            let value: Option<String> = row.try_get(i)?;
            push_copy_text(&mut text, value.as_deref());
        }
        text.push(b'\n');
    }
    drop(rows);
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE {scratch} (LIKE {source} INCLUDING ALL)"
    )))
    .execute(&mut *conn)
    .await?;

    let start = Instant::now();
    let mut copy = conn
        .copy_in_raw(&format!("COPY {scratch} ({list}) FROM STDIN"))
        .await?;
    for chunk in text.chunks(1 << 20) {
        copy.send(chunk).await?;
    }
    let rows = copy.finish().await?;
    let elapsed = start.elapsed();
    Ok(CopyRun {
        rows,
        bytes: text.len(),
        elapsed,
    })
}
