//! The daily roll-up (`metric_daily`) that the dashboard and the explorer
//! read stays equal to the sums of the raw `metric_rows` after every kind
//! of write: inserts, merges, `replace_day` deletions (vanished
//! combinations, every field of a day replaced), a sync and its re-sync, and a deleted
//! connection. Compared per (provider, connection, object, account, day,
//! currency) and field, on both backends.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{
    Backend, ClientExt, RawDb, SANDBOX_ID, SANDBOX_SECRET, TestApp, TestUser, sandbox_app,
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

on_both_backends!(the_daily_roll_up_always_equals_the_raw_rows,);

const AGENT_KEY: &str = "agent-key-0123456789-abcdefghijklmnopqrstuvwxyz";

type GroupKey = (
    Uuid,
    String,
    Option<Uuid>,
    String,
    String,
    String,
    Option<String>,
);
type Sums = BTreeMap<GroupKey, BTreeMap<String, f64>>;
type Stored = (
    Uuid,
    String,
    Option<Uuid>,
    String,
    String,
    String,
    Option<String>,
    String,
);

async fn rows_of(db: &RawDb, table: &str) -> Vec<Stored> {
    let sql = format!(
        "SELECT workspace_id, provider, connection_id, object, account_id, CAST(metric_date AS TEXT), \
         currency, CAST(metrics AS TEXT) FROM {table}"
    );
    match db {
        RawDb::Postgres(pool) => sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_all(pool)
            .await
            .unwrap(),
        RawDb::Sqlite(pool) => sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_all(pool)
            .await
            .unwrap(),
    }
}

/// Per group and numeric field: the sum of the table's rows.
fn sums(rows: Vec<Stored>) -> Sums {
    let mut out = Sums::new();
    for (ws, provider, conn, object, account, day, currency, metrics) in rows {
        let metrics: Value = serde_json::from_str(&metrics).unwrap();
        let group = out
            .entry((ws, provider, conn, object, account, day, currency))
            .or_default();
        for (field, value) in metrics.as_object().unwrap() {
            if let Some(v) = value.as_f64() {
                *group.entry(field.clone()).or_default() += v;
            }
        }
    }
    out
}

/// The roll-up holds one row per group, with the raw rows' sums.
async fn assert_rolled_up(app: &TestApp, step: &str) -> usize {
    let daily_rows = rows_of(&app.db, "metric_daily").await;
    let groups = daily_rows.len();
    let daily = sums(daily_rows);
    assert_eq!(daily.len(), groups, "{step}: one roll-up row per group");
    let raw = sums(rows_of(&app.db, "metric_rows").await);
    assert_eq!(
        daily.keys().collect::<Vec<_>>(),
        raw.keys().collect::<Vec<_>>(),
        "{step}: the same groups"
    );
    for (key, fields) in &raw {
        let rolled = &daily[key];
        assert_eq!(
            rolled.keys().collect::<Vec<_>>(),
            fields.keys().collect::<Vec<_>>(),
            "{step}: the same fields of {key:?}"
        );
        for (field, v) in fields {
            let r = rolled[field];
            assert!(
                (r - v).abs() <= 1e-9 * v.abs().max(1.0),
                "{step}: {key:?} {field}: roll-up {r}, raw {v}"
            );
        }
    }
    groups
}

async fn write(app: &TestApp, body: Value) {
    let res = common::client()
        .post(app.url("/api/internal/metrics/write"))
        .bearer_auth(AGENT_KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "{}",
        res.text().await.unwrap()
    );
}

async fn connect_and_choose(app: &TestApp, user: &TestUser) -> Uuid {
    let res = user
        .client
        .post_json(
            app.url("/api/integrations/sandbox/connect"),
            &json!({"flow": "client_credentials", "clientId": SANDBOX_ID, "clientSecret": SANDBOX_SECRET,
                    "headers": {"X-Sandbox-Company": "acme"}, "ownership": "workspace"}),
        )
        .await;
    assert!(res.status().is_success(), "connect: {}", res.status());
    let conn: Value = res.json().await.unwrap();
    let id: Uuid = conn["id"].as_str().unwrap().parse().unwrap();
    let res = user
        .client
        .post_json(
            app.url("/api/data/select-account"),
            &json!({"provider": "sandbox", "connectionId": id, "accountIds": ["prop-1", "prop-2"]}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    id
}

async fn sync(app: &TestApp, user: &TestUser) {
    let res = user
        .client
        .post_json(
            app.url("/api/integrations/sandbox/daily_metrics/sync"),
            &json!({}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let jobs: Value = res.json().await.unwrap();
    let id = jobs[0]["jobId"].as_str().unwrap().to_owned();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let body = user
            .client
            .get_json(app.url(&format!("/api/jobs/{id}")))
            .await;
        let status = body["job"]["status"].as_str().unwrap_or_default();
        if ["succeeded", "failed", "cancelled"].contains(&status) {
            assert_eq!(status, "succeeded", "{body}");
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn the_daily_roll_up_always_equals_the_raw_rows(backend: Backend) {
    let app = sandbox_app(
        backend,
        &[
            ("AGENT_SERVICE_KEY", AGENT_KEY),
            ("PLUGBOARD_SYNC_METRICS_LOOKBACK_DAYS", "10"),
        ],
    )
    .await;
    let admin = app.signup("admin@a.example", "Acme").await;
    let other = app.signup("other@b.example", "Other").await;
    let body = |ws: Uuid, rows: Value| json!({"tenant": {"workspaceId": ws}, "provider": "sandbox", "metrics": rows});
    let row = |day: &str, account: &str, channel: &str, metrics: Value| json!({"date": day, "accountId": account, "metricsJson": metrics, "dimensionsJson": {"channel": channel}});

    // Several combinations per (account, day), another object, another
    // workspace; fractional amounts.
    let mut first = Vec::new();
    for day in ["2026-11-19", "2026-11-20", "2026-11-21"] {
        for account in ["prop-1", "prop-2"] {
            for (i, channel) in ["web", "app", "email"].iter().enumerate() {
                first.push(row(
                    day,
                    account,
                    channel,
                    json!({"sessions": 10 + i, "users": 5 + i, "revenue": 1.25 * (i as f64 + 1.0)}),
                ));
            }
        }
    }
    write(&app, body(admin.workspace_id, json!(first))).await;
    let mut mine = body(
        admin.workspace_id,
        json!([row("2026-11-20", "prop-1", "web", json!({"sessions": 3}))]),
    );
    mine["object"] = json!("my_report");
    write(&app, mine).await;
    write(
        &app,
        body(
            other.workspace_id,
            json!([row("2026-11-20", "prop-1", "web", json!({"sessions": 999}))]),
        ),
    )
    .await;
    let groups = assert_rolled_up(&app, "first writes").await;
    assert_eq!(groups, 3 * 2 + 1 + 1, "dimensions are summed away");

    // A merge adds a field to one combination and changes another's.
    write(
        &app,
        body(
            admin.workspace_id,
            json!([row(
                "2026-11-20",
                "prop-1",
                "app",
                json!({"sessions": 40, "cost": 2.5})
            )]),
        ),
    )
    .await;
    assert_rolled_up(&app, "merge").await;

    // replace_day: one day keeps a single combination; another's three
    // combinations give way to a new one with other fields.
    let mut replace = body(
        admin.workspace_id,
        json!([row("2026-11-21", "prop-2", "web", json!({"sessions": 7}))]),
    );
    replace["mode"] = json!("replace_day");
    write(&app, replace).await;
    assert_rolled_up(&app, "replace_day").await;
    let mut swap = body(
        admin.workspace_id,
        json!([row("2026-11-19", "prop-1", "social", json!({"users": 4}))]),
    );
    swap["mode"] = json!("replace_day");
    write(&app, swap).await;
    assert_rolled_up(&app, "replace_day by a new combination").await;

    // A sync (with the accounts' currencies), then a re-sync after the
    // provider stopped reporting a channel: its days are replaced.
    let sandbox = app.state.sandbox.as_ref().unwrap();
    sandbox.set_metric_channels(&["web", "app", "email"]);
    connect_and_choose(&app, &admin).await;
    sync(&app, &admin).await;
    let synced = assert_rolled_up(&app, "sync").await;
    assert!(synced > groups + 90, "the sync's days are rolled up");
    sandbox.set_metric_channels(&["web", "email"]);
    sync(&app, &admin).await;
    assert_rolled_up(&app, "re-sync").await;

    // A deleted connection takes its roll-up with its rows.
    app.db.execute("DELETE FROM connections").await;
    let after = assert_rolled_up(&app, "connection deleted").await;
    assert!(after < synced);
    app.stop().await;
}
