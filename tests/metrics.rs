//! The metric store's key and write modes: rows keyed by connection and
//! object as well as (workspace, provider, account, date, dimensions);
//! `metrics/write` merging metric keys by default and `replace_day`
//! removing vanished dimension combinations; a sync re-read replacing the
//! days it reads (across pages); the accounts providers report, shown on
//! the Data Hub; and the migration keeping existing rows.

mod common;

use std::str::FromStr;
use std::time::Duration;

use common::{
    Backend, ClientExt, SANDBOX_ID, SANDBOX_SECRET, TestApp, TestUser, api_error, client,
    sandbox_app,
};
use plugboard::tenancy::WorkspaceId;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::{ConnectOptions, Connection};
use uuid::Uuid;

on_both_backends!(
    writes_merge_metric_keys_and_replace_day_removes_vanished_combinations,
    personal_and_workspace_connections_keep_their_own_rows,
    a_sync_reread_replaces_its_days_even_across_pages,
    accounts_are_remembered_and_named_on_the_data_hub,
    the_migration_keeps_existing_metric_rows,
);

const AGENT_KEY: &str = "agent-key-0123456789-abcdefghijklmnopqrstuvwxyz";

async fn app(backend: Backend, extra: &[(&'static str, &str)]) -> TestApp {
    let mut env = vec![("AGENT_SERVICE_KEY", AGENT_KEY)];
    env.extend_from_slice(extra);
    sandbox_app(backend, &env).await
}

async fn write(app: &TestApp, body: Value) -> reqwest::Response {
    client()
        .post(app.url("/api/internal/metrics/write"))
        .bearer_auth(AGENT_KEY)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn write_ok(app: &TestApp, body: Value) -> Value {
    let res = write(app, body).await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

fn counts(written: u64, inserted: u64, updated: u64, unchanged: u64, deleted: u64) -> Value {
    json!({"written": written, "inserted": inserted, "updated": updated, "unchanged": unchanged, "deleted": deleted})
}

/// Every stored row of the workspace's sandbox metrics between two days.
async fn stored(
    app: &TestApp,
    ws: Uuid,
    from: time::Date,
    to: time::Date,
) -> Vec<plugboard::metrics::store::StoredMetricRow> {
    app.store
        .list_metrics(WorkspaceId(ws), "sandbox", from, to, 100_000)
        .await
        .unwrap()
}

async fn writes_merge_metric_keys_and_replace_day_removes_vanished_combinations(backend: Backend) {
    let app = app(backend, &[]).await;
    let admin = app.signup("admin@a.example", "Acme").await;
    let ws = admin.workspace_id;
    let day = time::macros::date!(2026 - 11 - 20);
    let body = |rows: Value| json!({"tenant": {"workspaceId": ws}, "provider": "sandbox", "metrics": rows});
    let seven = json!({"sessions": 100, "users": 80, "conversions": 5, "revenue": 99.5,
                       "ad_clicks": 12, "impressions": 3000, "cost": 7.25});
    let web = json!({"channel": "web"});
    // Seven metrics of one day, plus another day, account and object that
    // later writes must not touch.
    let first = write_ok(
        &app,
        body(json!([
            {"date": "2026-11-20", "accountId": "prop-1", "metricsJson": seven, "dimensionsJson": web},
            {"date": "2026-11-21", "accountId": "prop-1", "metricsJson": {"sessions": 1}, "dimensionsJson": web},
            {"date": "2026-11-20", "accountId": "prop-2", "metricsJson": {"sessions": 2}, "dimensionsJson": web},
        ])),
    )
    .await;
    assert_eq!(first, counts(3, 3, 0, 0, 0));
    let mut other_object = body(
        json!([{"date": "2026-11-20", "accountId": "prop-1", "metricsJson": {"sessions": 3}, "dimensionsJson": web}]),
    );
    other_object["object"] = json!("my_report");
    assert_eq!(write_ok(&app, other_object).await, counts(1, 1, 0, 0, 0));

    // An automation writing 3 of the 7 metrics keeps the other 4.
    let three = body(json!([
        {"date": "2026-11-20", "accountId": "prop-1", "metricsJson": {"sessions": 120, "revenue": 101, "cost": 7.25}, "dimensionsJson": web}
    ]));
    assert_eq!(write_ok(&app, three.clone()).await, counts(1, 0, 1, 0, 0));
    let rows = stored(&app, ws, day, day).await;
    let row = rows
        .iter()
        .find(|r| r.account_id == "prop-1" && r.object.is_empty())
        .unwrap();
    assert_eq!(
        row.metrics.0,
        json!({"sessions": 120, "users": 80, "conversions": 5, "revenue": 101,
               "ad_clicks": 12, "impressions": 3000, "cost": 7.25})
    );
    assert_eq!(row.connection_id, None);
    // Sending it again changes nothing, and there is still one row for the
    // key even though it has no connection.
    assert_eq!(write_ok(&app, three).await, counts(1, 0, 0, 1, 0));
    assert_eq!(
        app.db.count("SELECT COUNT(*) FROM metric_rows").await,
        4,
        "no duplicate rows for writes without a connection"
    );

    // replace_day: the rows written are the day's only combinations, each
    // with exactly the metrics given.
    let mut replace = body(json!([
        {"date": "2026-11-20", "accountId": "prop-1", "metricsJson": {"sessions": 50}, "dimensionsJson": web},
        {"date": "2026-11-20", "accountId": "prop-1", "metricsJson": {"sessions": 60}, "dimensionsJson": {"channel": "app"}},
    ]));
    replace["mode"] = json!("replace_day");
    assert_eq!(write_ok(&app, replace.clone()).await, counts(2, 1, 1, 0, 0));
    assert_eq!(
        write_ok(&app, replace).await,
        counts(2, 0, 0, 2, 0),
        "an idempotent re-write changes nothing"
    );
    let mut only_app = body(json!([
        {"date": "2026-11-20", "accountId": "prop-1", "metricsJson": {"sessions": 61}, "dimensionsJson": {"channel": "app"}},
    ]));
    only_app["mode"] = json!("replace_day");
    assert_eq!(write_ok(&app, only_app).await, counts(1, 0, 1, 0, 1));
    let rows = stored(&app, ws, day, day + time::Duration::days(1)).await;
    let summary: Vec<(String, String, String, String, Value)> = rows
        .iter()
        .map(|r| {
            (
                r.metric_date.to_string(),
                r.account_id.clone(),
                r.object.clone(),
                r.dimensions.0["channel"].as_str().unwrap().to_owned(),
                r.metrics.0.clone(),
            )
        })
        .collect();
    let expected = vec![
        ("2026-11-20", "prop-1", "", "app", json!({"sessions": 61})),
        (
            "2026-11-20",
            "prop-1",
            "my_report",
            "web",
            json!({"sessions": 3}),
        ),
        ("2026-11-20", "prop-2", "", "web", json!({"sessions": 2})),
        ("2026-11-21", "prop-1", "", "web", json!({"sessions": 1})),
    ];
    let mut summary = summary;
    summary.sort_by(|a, b| (&a.0, &a.1, &a.2).cmp(&(&b.0, &b.1, &b.2)));
    assert_eq!(
        summary,
        expected
            .into_iter()
            .map(|(d, a, o, c, m)| (d.to_owned(), a.to_owned(), o.to_owned(), c.to_owned(), m))
            .collect::<Vec<_>>(),
        "the vanished web row is gone; other days, accounts and objects are untouched"
    );

    // Bad modes and objects are refused with the field, writing nothing.
    let before = app.db.count("SELECT COUNT(*) FROM metric_rows").await;
    let mut bad = body(json!([{"date": "2026-11-22", "metricsJson": {"a": 1}}]));
    bad["mode"] = json!("overwrite");
    let err = api_error(write(&app, bad).await, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(err["field"], "mode");
    let mut bad = body(json!([{"date": "2026-11-22", "metricsJson": {"a": 1}}]));
    bad["object"] = json!("a\u{7}b");
    let err = api_error(write(&app, bad).await, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(err["field"], "object");
    assert_eq!(
        app.db.count("SELECT COUNT(*) FROM metric_rows").await,
        before
    );
    app.stop().await;
}

// ---- syncs ---------------------------------------------------------------

async fn connect(app: &TestApp, user: &TestUser, ownership: &str) -> Uuid {
    let res = user
        .client
        .post_json(
            app.url("/api/integrations/sandbox/connect"),
            &json!({"flow": "client_credentials", "clientId": SANDBOX_ID, "clientSecret": SANDBOX_SECRET,
                    "headers": {"X-Sandbox-Company": "acme"}, "ownership": ownership}),
        )
        .await;
    assert!(res.status().is_success(), "connect: {}", res.status());
    let conn: Value = res.json().await.unwrap();
    conn["id"].as_str().unwrap().parse().unwrap()
}

async fn select(app: &TestApp, user: &TestUser, connection: Uuid, ids: &[&str]) {
    let res = user
        .client
        .post_json(
            app.url("/api/data/select-account"),
            &json!({"provider": "sandbox", "connectionId": connection, "accountIds": ids}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
}

/// Syncs the sandbox's daily metrics with the user's connection and waits
/// for the job; returns `{job, log}`.
async fn sync_metrics(app: &TestApp, user: &TestUser) -> Value {
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
            return body;
        }
        assert!(std::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn today() -> time::Date {
    time::OffsetDateTime::now_utc().date()
}

async fn personal_and_workspace_connections_keep_their_own_rows(backend: Backend) {
    let app = app(backend, &[]).await;
    let admin = app.signup("admin@a.example", "Acme").await;
    let ws = admin.workspace_id;
    let shared = connect(&app, &admin, "workspace").await;
    select(&app, &admin, shared, &["prop-1"]).await;
    sync_metrics(&app, &admin).await;
    let all = |rows: &[plugboard::metrics::store::StoredMetricRow], c: Uuid| {
        rows.iter().filter(|r| r.connection_id == Some(c)).count()
    };
    let window = (today() - time::Duration::days(100), today());
    let rows = stored(&app, ws, window.0, window.1).await;
    assert_eq!(all(&rows, shared), 90);
    assert!(rows.iter().all(|r| r.object == "daily_metrics"));

    // Rows of the same connection and account but another object (an
    // automation's, with no object) and a combination of the sync's object
    // that the provider doesn't report, both on a day the re-read covers.
    let yesterday = (today() - time::Duration::days(1)).to_string();
    let row = json!({"date": yesterday, "accountId": "prop-1", "metricsJson": {"sessions": 7}, "dimensionsJson": {"channel": "email"}});
    let base = json!({"tenant": {"workspaceId": ws}, "provider": "sandbox", "connectionId": shared, "metrics": [row]});
    write_ok(&app, base.clone()).await;
    let mut stale = base;
    stale["object"] = json!("daily_metrics");
    write_ok(&app, stale).await;
    let reread = sync_metrics(&app, &admin).await;
    assert_eq!(
        reread["job"]["counts"]["deleted"], 1,
        "the re-read removed the combination it no longer reads: {reread}"
    );
    let rows = stored(&app, ws, window.0, window.1).await;
    let emails: Vec<&str> = rows
        .iter()
        .filter(|r| r.dimensions.0.get("channel").is_some())
        .map(|r| r.object.as_str())
        .collect();
    assert_eq!(emails, vec![""], "only the other object's row is left");

    // The admin's own connection on the same account has its own rows:
    // neither sync overwrites the other's.
    let mine = connect(&app, &admin, "user").await;
    assert_ne!(mine, shared);
    select(&app, &admin, mine, &["prop-1"]).await;
    sync_metrics(&app, &admin).await;
    let rows = stored(&app, ws, window.0, window.1).await;
    assert_eq!(all(&rows, mine), 90);
    assert_eq!(all(&rows, shared), 90 + 1);
    let day = today() - time::Duration::days(5);
    let of_day: Vec<_> = rows
        .iter()
        .filter(|r| r.metric_date == day && r.object == "daily_metrics")
        .collect();
    assert_eq!(of_day.len(), 2);
    assert_eq!(of_day[0].metrics.0, of_day[1].metrics.0);
    app.stop().await;
}

async fn a_sync_reread_replaces_its_days_even_across_pages(backend: Backend) {
    // Re-reading 11 days × 4 channels = 44 rows takes two pages of 30: one
    // day is split between them.
    let app = app(backend, &[("PLUGBOARD_SYNC_METRICS_LOOKBACK_DAYS", "10")]).await;
    let admin = app.signup("admin@a.example", "Acme").await;
    let ws = admin.workspace_id;
    let sandbox = app.state.sandbox.as_ref().unwrap();
    sandbox.set_metric_channels(&["web", "app", "email", "ads", "social"]);
    let c = connect(&app, &admin, "workspace").await;
    select(&app, &admin, c, &["prop-1"]).await;
    let first = sync_metrics(&app, &admin).await;
    assert_eq!(first["job"]["counts"]["created"], 90 * 5, "{first}");
    let window = (today() - time::Duration::days(100), today());
    assert_eq!(stored(&app, ws, window.0, window.1).await.len(), 90 * 5);

    // The provider stops reporting one channel: the re-read removes it from
    // the days it reads, and only from those.
    sandbox.set_metric_channels(&["web", "app", "email", "social"]);
    let second = sync_metrics(&app, &admin).await;
    let counts = &second["job"]["counts"];
    assert_eq!(counts["fetched"], 11 * 4, "{second}");
    assert_eq!(counts["deleted"], 11, "only the vanished channel: {second}");
    assert_eq!(
        counts["unchanged"],
        11 * 4,
        "the day split between pages isn't rewritten: {second}"
    );
    assert!(
        second["log"].to_string().contains("page 2"),
        "the re-read spans pages: {second}"
    );
    let rows = stored(&app, ws, window.0, window.1).await;
    assert_eq!(rows.len(), 90 * 5 - 11);
    let reread_from = today() - time::Duration::days(10);
    for r in &rows {
        let channel = r.dimensions.0["channel"].as_str().unwrap();
        assert!(
            r.metric_date < reread_from || channel != "ads",
            "a vanished combination survived on {}",
            r.metric_date
        );
    }
    // Every re-read day still has all its reported channels, the one that
    // straddles the page boundary included.
    let mut day = reread_from;
    while day <= today() {
        let n = rows.iter().filter(|r| r.metric_date == day).count();
        assert_eq!(n, 4, "{day}");
        day = day.next_day().unwrap();
    }
    app.stop().await;
}

// ---- accounts --------------------------------------------------------------

async fn accounts_are_remembered_and_named_on_the_data_hub(backend: Backend) {
    let app = app(backend, &[]).await;
    let admin = app.signup("admin@a.example", "Acme").await;
    let c = connect(&app, &admin, "workspace").await;
    assert_eq!(
        app.db.count("SELECT COUNT(*) FROM provider_accounts").await,
        0
    );
    // Listing remembers what the provider reports.
    let listed = admin
        .client
        .get_json(app.url(&format!("/api/oauth/sandbox/accounts?connectionId={c}")))
        .await;
    assert_eq!(
        listed["accounts"][1],
        json!({"id": "prop-2", "label": "Acme App", "currency": "EUR", "timeZone": "Europe/Berlin"}),
        "{listed}"
    );
    let known = app
        .store
        .list_provider_accounts(WorkspaceId(admin.workspace_id))
        .await
        .unwrap();
    let found: Vec<_> = known
        .iter()
        .map(|a| {
            (
                a.connection_id,
                a.external_id.as_str(),
                a.name.as_str(),
                a.currency.as_deref(),
                a.time_zone.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        found,
        vec![
            (
                c,
                "prop-1",
                "Acme Web",
                Some("USD"),
                Some("America/New_York")
            ),
            (c, "prop-2", "Acme App", Some("EUR"), Some("Europe/Berlin")),
            (c, "prop-3", "Acme Shop", Some("GBP"), Some("Europe/London")),
        ]
    );
    // Choosing lists again (refreshing names) and the Data Hub names the
    // chosen accounts with their currencies, not their ids.
    app.db
        .execute("UPDATE provider_accounts SET name = 'old name', currency = NULL")
        .await;
    select(&app, &admin, c, &["prop-2", "prop-3"]).await;
    let html = admin.client.get_text(app.url("/data/connections")).await;
    let start = html.find("data-testid=\"accounts-sandbox\"").expect(&html);
    let shown = &html[start..start + html[start..].find("</dd>").unwrap()];
    assert!(shown.contains("Acme App (EUR), Acme Shop (GBP)"), "{shown}");
    assert!(
        !shown.contains("prop-2") && !shown.contains("old name"),
        "{shown}"
    );
    // Another workspace sees none of them.
    let other = app.signup("x@b.example", "B").await;
    assert!(
        app.store
            .list_provider_accounts(WorkspaceId(other.workspace_id))
            .await
            .unwrap()
            .is_empty()
    );
    app.stop().await;
}

// ---- the migration -----------------------------------------------------------

/// The version before metric rows were keyed by connection and object.
const BEFORE: i64 = 20261122000010;

/// Rows under the old schema: (SQL, which of the four ids it binds).
const SEED: &[(&str, &[usize])] = &[
    (
        "INSERT INTO users (id, email, email_normalized, name, password_hash, created_at) \
         VALUES ($1, 'a@a.example', 'a@a.example', 'A', 'x', '2026-11-20T00:00:00Z')",
        &[0],
    ),
    (
        "INSERT INTO organizations (id, name, created_at) VALUES ($1, 'Acme', '2026-11-20T00:00:00Z')",
        &[1],
    ),
    (
        "INSERT INTO workspaces (id, organization_id, name, created_at) VALUES ($1, $2, 'Acme', '2026-11-20T00:00:00Z')",
        &[2, 1],
    ),
    (
        "INSERT INTO connections (id, workspace_id, provider, environment, owner_key, flow, status, created_at, updated_at) \
         VALUES ($1, $2, 'sandbox', 'production', 'workspace', 'client_credentials', 'CONNECTED', \
         '2026-11-20T00:00:00Z', '2026-11-20T00:00:00Z')",
        &[3, 2],
    ),
    // A synced row (with its connection) and an automation's (without).
    (
        "INSERT INTO metric_rows (workspace_id, provider, account_id, metric_date, dimension_key, dimensions, metrics, \
         connection_id, written_by, updated_at) \
         VALUES ($1, 'sandbox', 'prop-1', '2026-11-20', '{}', '{}', '{\"sessions\":1}', $2, $3, '2026-11-20T00:00:00Z')",
        &[2, 3, 0],
    ),
    (
        "INSERT INTO metric_rows (workspace_id, provider, account_id, metric_date, dimension_key, dimensions, metrics, \
         connection_id, written_by, updated_at) \
         VALUES ($1, 'sandbox', 'prop-2', '2026-11-20', '{}', '{}', '{\"sessions\":2}', NULL, $2, '2026-11-20T00:00:00Z')",
        &[2, 0],
    ),
];

/// Runs one statement of [`SEED`] on a pool of either backend.
macro_rules! seed {
    ($pool:expr, $ids:expr, $statement:expr) => {{
        let (sql, binds): (&str, &[usize]) = $statement;
        let mut q = sqlx::query(sql);
        for b in binds {
            q = q.bind($ids[*b]);
        }
        q.execute($pool).await
    }};
}

const AFTER: &str = "SELECT account_id || ':' || object || ':' || CAST(connection_id IS NULL AS INTEGER) || ':' || \
     CAST(metrics AS TEXT) FROM metric_rows ORDER BY account_id";

async fn the_migration_keeps_existing_metric_rows(backend: Backend) {
    let ids = [
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
    ];
    let up_to = |m: &sqlx::migrate::Migrator| {
        sqlx::migrate::Migrator::with_migrations(
            m.iter().filter(|m| m.version <= BEFORE).cloned().collect(),
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let (rows, duplicate_refused) = match backend {
        Backend::Sqlite => {
            let options = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(dir.path().join("m.db"))
                .create_if_missing(true)
                .foreign_keys(true);
            let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
            up_to(&plugboard::storage::SQLITE_MIGRATOR)
                .run(&pool)
                .await
                .unwrap();
            for statement in SEED {
                seed!(&pool, ids, *statement).unwrap();
            }
            plugboard::storage::SQLITE_MIGRATOR
                .run(&pool)
                .await
                .unwrap();
            let rows: Vec<String> = sqlx::query_scalar(AFTER).fetch_all(&pool).await.unwrap();
            let refused = seed!(&pool, ids, SEED[SEED.len() - 1]).is_err();
            pool.close().await;
            (rows, refused)
        }
        Backend::Postgres => {
            let admin_url = common::test_database_url();
            let name = format!("pb_test_mig_{}", Uuid::new_v4().simple());
            let mut admin = sqlx::postgres::PgConnectOptions::from_str(&admin_url)
                .unwrap()
                .connect()
                .await
                .unwrap();
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
                .execute(&mut admin)
                .await
                .unwrap();
            let options = sqlx::postgres::PgConnectOptions::from_str(&admin_url)
                .unwrap()
                .database(&name);
            let pool = sqlx::PgPool::connect_with(options).await.unwrap();
            up_to(&plugboard::storage::PG_MIGRATOR)
                .run(&pool)
                .await
                .unwrap();
            for statement in SEED {
                seed!(&pool, ids, *statement).unwrap();
            }
            plugboard::storage::PG_MIGRATOR.run(&pool).await.unwrap();
            let rows: Vec<String> = sqlx::query_scalar(
                "SELECT account_id || ':' || object || ':' || (connection_id IS NULL)::int || ':' || metrics::text \
                 FROM metric_rows ORDER BY account_id",
            )
            .fetch_all(&pool)
            .await
            .unwrap();
            let refused = seed!(&pool, ids, SEED[SEED.len() - 1]).is_err();
            pool.close().await;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
            )))
            .execute(&mut admin)
            .await
            .unwrap();
            admin.close().await.unwrap();
            (rows, refused)
        }
    };
    let expected: &[&str] = match backend {
        Backend::Sqlite => &[
            r#"prop-1:daily_metrics:0:{"sessions":1}"#,
            r#"prop-2::1:{"sessions":2}"#,
        ],
        Backend::Postgres => &[
            r#"prop-1:daily_metrics:0:{"sessions": 1}"#,
            r#"prop-2::1:{"sessions": 2}"#,
        ],
    };
    assert_eq!(
        rows, expected,
        "the synced row is its object's; the automation's has none"
    );
    assert!(
        duplicate_refused,
        "rows without a connection still have one row per key"
    );
}
