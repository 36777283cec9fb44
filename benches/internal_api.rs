//! Internal API benchmark against PostgreSQL (not a test; prints figures).
//!
//!   cargo bench --bench internal_api
//!
//! 1. Writes 1,000,000 metric rows through POST /api/internal/metrics/write
//!    in batches of 10,000 and prints rows/s.
//! 2. Calls GET /api/internal/connection-tokens from 64 concurrent clients
//!    (token fresh, so no refresh) and prints requests/s, p50 and p99.
//!
//! Uses a fresh database on TEST_DATABASE_URL's server, dropped afterwards.
//! BENCH_METRIC_ROWS and BENCH_TOKEN_REQUESTS scale it down for a quick run.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::{Duration, Instant};

use plugboard::app;
use plugboard::config::Settings;
use serde_json::{Value, json};
use sqlx::ConnectOptions;
use sqlx::postgres::PgConnectOptions;
use tokio::net::TcpListener;

const CHANNELS: [&str; 3] = ["organic", "paid", "email"];

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn database_url(admin: &str, name: &str) -> String {
    let scheme_end = admin.find("://").map_or(0, |i| i + 3);
    let base = match admin[scheme_end..].find('/') {
        Some(slash) => &admin[..scheme_end + slash],
        None => admin,
    };
    format!("{base}/{name}")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let metric_rows = env_usize("BENCH_METRIC_ROWS", 1_000_000);
    let batch = 10_000;
    let token_requests = env_usize("BENCH_TOKEN_REQUESTS", 20_000);
    let concurrency = 64;

    let admin_url = std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let db_name = format!("pb_bench_{}", uuid::Uuid::new_v4().simple());
    let mut admin = PgConnectOptions::from_str(&admin_url)?.connect().await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE DATABASE \"{db_name}\""
    )))
    .execute(&mut admin)
    .await?;

    let result = run(
        &admin_url,
        &db_name,
        metric_rows,
        batch,
        token_requests,
        concurrency,
    )
    .await;

    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS \"{db_name}\" WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await?;
    result
}

async fn run(
    admin_url: &str,
    db_name: &str,
    metric_rows: usize,
    batch: usize,
    token_requests: usize,
    concurrency: usize,
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let env: HashMap<String, String> = [
        ("DATABASE_URL", database_url(admin_url, db_name)),
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
        ("PLUGBOARD_SANDBOX_CLIENT_ID", "bench-client".into()),
        ("PLUGBOARD_SANDBOX_CLIENT_SECRET", "bench-secret".into()),
        ("PLUGBOARD_INTERNAL_REQUESTS_PER_MINUTE", "100000000".into()),
        ("PLUGBOARD_DATABASE_MAX_CONNECTIONS", "32".into()),
        ("PLUGBOARD_OAUTH_KEEPALIVE_INTERVAL_MINUTES", "0".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let settings = Settings::from_env_map(&env)?;
    let state = app::build_state(settings).await?;
    let server = app::spawn(state, listener).await?;
    let http = reqwest::Client::builder()
        .cookie_store(true)
        .pool_max_idle_per_host(concurrency)
        .build()?;

    // A workspace, a client-credentials sandbox connection, a service key.
    let me: Value = http
        .post(format!("{base}/api/auth/signup"))
        .json(&json!({"email": "bench@example.com", "password": "bench password 123", "name": "Bench", "organization": "Bench"}))
        .send()
        .await?
        .json()
        .await?;
    let ws = me["currentWorkspaceId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let conn: Value = http
        .post(format!("{base}/api/integrations/sandbox/connect"))
        .json(&json!({"flow": "client_credentials", "clientId": "bench-client", "clientSecret": "bench-secret", "headers": {"X-Sandbox-Company": "bench"}}))
        .send()
        .await?
        .json()
        .await?;
    let connection_id = conn["id"].as_str().unwrap_or_default().to_owned();
    let key: Value = http
        .post(format!("{base}/api/workspaces/{ws}/service-keys"))
        .json(&json!({"name": "bench", "scopes": ["tokens:read", "metrics:write"]}))
        .send()
        .await?
        .json()
        .await?;
    let key = key["key"].as_str().unwrap_or_default().to_owned();

    // 1. Metric writes.
    let start = Instant::now();
    let mut written = 0usize;
    let mut request_times = Vec::new();
    while written < metric_rows {
        let n = batch.min(metric_rows - written);
        let rows: Vec<Value> = (written..written + n)
            .map(|i| {
                let day = i % 3650;
                let (y, d) = (2016 + day / 365, day % 365);
                let date = time::Date::from_ordinal_date(y as i32, (d + 1) as u16).unwrap_or(time::macros::date!(2020 - 01 - 01));
                json!({
                    "date": date.to_string(),
                    "accountId": format!("prop-{}", i / 3650 % 1000),
                    "metricsJson": {"sessions": i % 1000, "users": i % 700, "revenue": (i % 5000) as f64 / 3.0},
                    "dimensionsJson": {"channel": CHANNELS[i % 3]},
                })
            })
            .collect();
        let body = json!({"tenant": {"workspaceId": ws}, "provider": "sandbox", "connectionId": connection_id, "metrics": rows});
        let t = Instant::now();
        let res = http
            .post(format!("{base}/api/internal/metrics/write"))
            .bearer_auth(&key)
            .json(&body)
            .send()
            .await?;
        anyhow::ensure!(
            res.status().is_success(),
            "metrics write failed: {}",
            res.text().await?
        );
        request_times.push(t.elapsed());
        written += n;
    }
    let elapsed = start.elapsed();
    request_times.sort();
    println!(
        "metrics/write: {written} rows in {} batches of {batch}: {:.2} s, {:.0} rows/s (per batch p50 {:?}, p99 {:?}; includes JSON encoding in the client)",
        request_times.len(),
        elapsed.as_secs_f64(),
        written as f64 / elapsed.as_secs_f64(),
        percentile(&request_times, 0.5),
        percentile(&request_times, 0.99)
    );

    // 2. connection-tokens at 64 concurrent clients.
    let url = format!("{base}/api/internal/connection-tokens?connectionId={connection_id}");
    let warm = http.get(&url).bearer_auth(&key).send().await?;
    anyhow::ensure!(
        warm.status().is_success(),
        "connection-tokens failed: {}",
        warm.text().await?
    );
    let per_client = token_requests / concurrency;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (http, url, key) = (http.clone(), url.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            let mut times = Vec::with_capacity(per_client);
            for _ in 0..per_client {
                let t = Instant::now();
                let res = http.get(&url).bearer_auth(&key).send().await;
                match res {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        times.push(t.elapsed());
                    }
                    _ => return Err(anyhow::anyhow!("connection-tokens request failed")),
                }
            }
            Ok(times)
        }));
    }
    let mut latencies = Vec::with_capacity(token_requests);
    for task in tasks {
        latencies.extend(task.await??);
    }
    let elapsed = start.elapsed();
    latencies.sort();
    println!(
        "connection-tokens: {} requests, {concurrency} concurrent clients: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms (each call audited)",
        latencies.len(),
        latencies.len() as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.5).as_secs_f64() * 1000.0,
        percentile(&latencies, 0.99).as_secs_f64() * 1000.0
    );

    server.stop().await?;
    Ok(())
}
