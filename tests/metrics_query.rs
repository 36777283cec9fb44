//! Query semantics of the metrics read API (`/api/data/metrics/*`,
//! `/api/data/kpis`): sums, derived ratios from sums, non-additive
//! averages, per-currency totals, week and month grains across month and
//! year ends, comparison periods, provisional flags at the settling
//! boundary, the revision log, 422s, CSV, tenancy and personal visibility,
//! and the metrics:read scope. Rows are written through the internal API
//! (or a sandbox sync), never straight into the tables.

mod common;

use std::time::Duration;

use common::{
    Backend, ClientExt, PASSWORD, SANDBOX_ID, SANDBOX_SECRET, TestApp, TestUser, api_error, client,
    sandbox_app,
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use time::Date;
use time::macros::date;
use uuid::Uuid;

on_both_backends!(
    sums_ratios_and_non_additive_averages,
    currencies_are_never_added,
    weeks_and_months_cross_month_and_year_ends,
    comparison_periods,
    provisional_flags_at_the_settling_boundary,
    rereads_that_change_a_day_are_logged,
    sandbox_revisions_are_logged_by_syncs,
    bad_input_is_422_naming_the_field,
    csv_rows_are_guarded,
    tenancy_and_personal_visibility,
    service_keys_need_metrics_read,
);

const AGENT_KEY: &str = "agent-key-0123456789-abcdefghijklmnopqrstuvwxyz";

async fn app(backend: Backend, extra: &[(&'static str, &str)]) -> TestApp {
    let mut env = vec![("AGENT_SERVICE_KEY", AGENT_KEY)];
    env.extend_from_slice(extra);
    sandbox_app(backend, &env).await
}

fn today() -> Date {
    // The workspaces here keep the default zone, UTC.
    time::OffsetDateTime::now_utc().date()
}

fn days_ago(n: i64) -> Date {
    today() - time::Duration::days(n)
}

/// Writes sandbox rows (date, account, metrics[, dimensions]) through the
/// internal API.
async fn write(app: &TestApp, ws: Uuid, connection: Option<Uuid>, rows: Value) -> Value {
    let mut body = json!({"tenant": {"workspaceId": ws}, "provider": "sandbox", "metrics": rows});
    if let Some(c) = connection {
        body["connectionId"] = json!(c);
    }
    let res = client()
        .post(app.url("/api/internal/metrics/write"))
        .bearer_auth(AGENT_KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

fn row(d: Date, account: &str, metrics: Value) -> Value {
    json!({"date": d.to_string(), "accountId": account, "metricsJson": metrics})
}

async fn query(user: &TestUser, app: &TestApp, q: &str) -> Value {
    let res = user
        .client
        .get(app.url(&format!("/api/data/metrics/query?{q}")))
        .send()
        .await
        .unwrap();
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{q}: {body}");
    body
}

fn total<'a>(result: &'a Value, key: &str) -> &'a Value {
    result["totals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["key"] == key)
        .unwrap_or_else(|| panic!("no total {key} in {result}"))
}

/// The single part's value of a total.
fn value(result: &Value, key: &str) -> f64 {
    let parts = total(result, key)["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 1, "{key}: {parts:?}");
    parts[0]["value"].as_f64().unwrap()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

async fn sums_ratios_and_non_additive_averages(backend: Backend) {
    let app = app(backend, &[]).await;
    let admin = app.signup("admin@q.example", "Acme").await;
    let ws = admin.workspace_id;
    let (d1, d2) = (date!(2026 - 10 - 05), date!(2026 - 10 - 06));
    write(
        &app,
        ws,
        None,
        json!([
            row(
                d1,
                "prop-1",
                json!({"sessions": 100, "ad_clicks": 1, "impressions": 10, "users": 10})
            ),
            row(d1, "prop-2", json!({"sessions": 50, "users": 20})),
            row(
                d2,
                "prop-1",
                json!({"sessions": 30, "ad_clicks": 50, "impressions": 100, "users": 40})
            ),
        ]),
    )
    .await;
    let q =
        "metrics=sessions,clicks,impressions,ctr,users,conversions&from=2026-10-01&to=2026-10-31";
    let result = query(&admin, &app, q).await;
    assert!(close(value(&result, "sessions"), 180.0), "{result}");
    // `ad_clicks` is stored; `clicks` is its canonical key.
    assert!(close(value(&result, "clicks"), 51.0));
    // The ratio of the sums (51/110), not the mean of the days' ratios (30 %).
    assert!(close(value(&result, "ctr"), 51.0 / 110.0), "{result}");
    // Users are distinct per day: the days' totals (30, 40) averaged, not summed.
    assert!(close(value(&result, "users"), 35.0), "{result}");
    let sessions = &total(&result, "sessions")["parts"][0];
    assert_eq!(sessions["daysWithData"], 2);
    // A metric nobody wrote is missing, never zero.
    let conversions = total(&result, "conversions")["parts"].as_array().unwrap();
    assert!(conversions.is_empty(), "{conversions:?}");
    // Days without data are absent from the rows; present days carry values.
    let rows = result["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{result}");
    assert_eq!(rows[0]["period"], "2026-10-05");
    assert_eq!(rows[0]["values"]["sessions"], 150.0);
    assert!(close(rows[0]["values"]["ctr"].as_f64().unwrap(), 0.1));
    assert_eq!(rows[1]["values"]["users"], 40.0);

    // Grouped by account: each account's own sums and ratios.
    let by_account = query(&admin, &app, &format!("{q}&groupBy=account")).await;
    let rows = by_account["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "{by_account}");
    assert_eq!(rows[0]["group"]["account"], "prop-1");
    assert_eq!(rows[1]["group"]["account"], "prop-2");
    assert_eq!(rows[1]["values"]["clicks"], Value::Null);

    // A month grain averages users over the month's days with data.
    let month = query(&admin, &app, &format!("{q}&grain=month")).await;
    let rows = month["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["period"], "2026-10-01");
    assert!(close(rows[0]["values"]["users"].as_f64().unwrap(), 35.0));
    assert!(close(
        rows[0]["values"]["sessions"].as_f64().unwrap(),
        180.0
    ));

    // The KPI board: the same numbers for a custom range.
    let kpis = admin
        .client
        .get_json(app.url(
            "/api/data/kpis?range=custom&from=2026-10-05&to=2026-10-06&compare=previous_period",
        ))
        .await;
    let tile = kpis["tiles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["metric"]["key"] == "sessions")
        .unwrap();
    assert_eq!(tile["total"]["parts"][0]["value"], 180.0);
    assert_eq!(tile["series"][0]["values"], json!([150.0, 30.0]));
    assert_eq!(kpis["compared"]["from"], "2026-10-03");
    assert_eq!(kpis["compared"]["to"], "2026-10-04");
    assert!(tile["total"]["parts"][0].get("compared").is_none());
    app.stop().await;
}

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

async fn currencies_are_never_added(backend: Backend) {
    let app = app(backend, &[]).await;
    let admin = app.signup("admin@c.example", "Acme").await;
    let ws = admin.workspace_id;
    let conn = connect(&app, &admin, "workspace").await;
    // prop-1 reports USD, prop-2 EUR (the sandbox's accounts).
    select(&app, &admin, conn, &["prop-1", "prop-2"]).await;
    let d = date!(2026 - 09 - 10);
    write(
        &app,
        ws,
        Some(conn),
        json!([
            row(
                d,
                "prop-1",
                json!({"cost": 10.5, "revenue": 42, "sessions": 5, "ad_clicks": 3})
            ),
            row(
                d,
                "prop-2",
                json!({"cost": 20, "revenue": 10, "sessions": 7, "ad_clicks": 1})
            ),
            row(d, "prop-9", json!({"cost": 1})),
        ]),
    )
    .await;
    let result = query(
        &admin,
        &app,
        "metrics=cost,sessions,roas,cpc&from=2026-09-01&to=2026-09-30",
    )
    .await;
    let cost = total(&result, "cost")["parts"].as_array().unwrap();
    let by_currency: Vec<(&str, f64)> = cost
        .iter()
        .map(|p| {
            (
                p["currency"].as_str().unwrap(),
                p["value"].as_f64().unwrap(),
            )
        })
        .collect();
    // An account without a known currency is its own part.
    assert_eq!(
        by_currency,
        vec![("EUR", 20.0), ("USD", 10.5), ("XXX", 1.0)],
        "{result}"
    );
    // Counts are added across currencies.
    assert!(close(value(&result, "sessions"), 12.0));
    // Ratios of amounts are per currency too.
    let roas = total(&result, "roas")["parts"].as_array().unwrap();
    let usd = roas.iter().find(|p| p["currency"] == "USD").unwrap();
    assert!(close(usd["value"].as_f64().unwrap(), 42.0 / 10.5));
    let cpc = total(&result, "cpc")["parts"].as_array().unwrap();
    let eur = cpc.iter().find(|p| p["currency"] == "EUR").unwrap();
    assert!(close(eur["value"].as_f64().unwrap(), 20.0));
    // Rows are split by currency as well.
    let rows = result["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "{result}");
    // The catalog names the accounts with their currencies.
    let catalog = admin
        .client
        .get_json(app.url("/api/data/metrics/catalog"))
        .await;
    let sandbox = &catalog["providers"][0];
    assert_eq!(sandbox["key"], "sandbox");
    assert_eq!(sandbox["settlingDays"], 3);
    let prop1 = sandbox["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == "prop-1")
        .unwrap();
    assert_eq!(prop1["currency"], "USD");
    assert_eq!(prop1["name"], "Acme Web");
    assert!(
        catalog["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["key"] == "roas" && m["derived"] == true)
    );
    app.stop().await;
}

async fn weeks_and_months_cross_month_and_year_ends(backend: Backend) {
    let app = app(backend, &[]).await;
    let admin = app.signup("admin@g.example", "Acme").await;
    let ws = admin.workspace_id;
    let mut rows = Vec::new();
    // 30 Nov and 1 Dec (a month end inside one week), and the ISO week
    // 2026-12-28 .. 2027-01-03 across the year end.
    let mut d = date!(2026 - 11 - 30);
    for _ in 0..2 {
        rows.push(row(d, "prop-1", json!({"sessions": 1})));
        d = d.next_day().unwrap();
    }
    let mut d = date!(2026 - 12 - 28);
    while d <= date!(2027 - 01 - 03) {
        rows.push(row(d, "prop-1", json!({"sessions": 10, "users": 4})));
        d = d.next_day().unwrap();
    }
    write(&app, ws, None, Value::Array(rows)).await;
    let q = "metrics=sessions,users&from=2026-11-01&to=2027-01-31";
    let weeks = query(&admin, &app, &format!("{q}&grain=week")).await;
    let periods: Vec<(&str, f64)> = weeks["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["period"].as_str().unwrap(),
                r["values"]["sessions"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        periods,
        vec![("2026-11-30", 2.0), ("2026-12-28", 70.0)],
        "{weeks}"
    );
    // Users average over the week's days, across the year end.
    assert_eq!(weeks["rows"][1]["values"]["users"], 4.0);
    let months = query(&admin, &app, &format!("{q}&grain=month")).await;
    let periods: Vec<(&str, f64)> = months["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["period"].as_str().unwrap(),
                r["values"]["sessions"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        periods,
        vec![
            ("2026-11-01", 1.0),
            ("2026-12-01", 41.0),
            ("2027-01-01", 30.0)
        ],
        "{months}"
    );
    app.stop().await;
}

async fn comparison_periods(backend: Backend) {
    let app = app(backend, &[]).await;
    let admin = app.signup("admin@p.example", "Acme").await;
    let ws = admin.workspace_id;
    write(
        &app,
        ws,
        None,
        json!([
            row(date!(2026 - 03 - 01), "a", json!({"sessions": 100})),
            row(date!(2026 - 03 - 10), "a", json!({"sessions": 50})),
            // previous period of 2026-03-01..10 is 2026-02-19..28
            row(date!(2026 - 02 - 19), "a", json!({"sessions": 40})),
            row(date!(2026 - 02 - 28), "a", json!({"sessions": 60})),
            row(date!(2026 - 02 - 18), "a", json!({"sessions": 1000})),
            // 29 Feb 2028 compares with 28 Feb 2027
            row(date!(2028 - 02 - 29), "a", json!({"sessions": 30})),
            row(date!(2027 - 02 - 28), "a", json!({"sessions": 20})),
            row(date!(2027 - 03 - 01), "a", json!({"sessions": 999})),
        ]),
    )
    .await;
    let prev = query(
        &admin,
        &app,
        "metrics=sessions&from=2026-03-01&to=2026-03-10&compare=previous_period",
    )
    .await;
    assert_eq!(
        prev["compared"],
        json!({"from": "2026-02-19", "to": "2026-02-28"})
    );
    let part = &total(&prev, "sessions")["parts"][0];
    assert_eq!(part["value"], 150.0);
    assert_eq!(part["compared"], 100.0);
    assert_eq!(part["delta"], 50.0);
    assert_eq!(part["deltaRatio"], 0.5);

    let year = query(
        &admin,
        &app,
        "metrics=sessions&from=2028-02-01&to=2028-02-29&compare=previous_year",
    )
    .await;
    assert_eq!(
        year["compared"],
        json!({"from": "2027-02-01", "to": "2027-02-28"})
    );
    let part = &total(&year, "sessions")["parts"][0];
    assert_eq!(part["value"], 30.0);
    assert_eq!(part["compared"], 20.0);

    // The KPI board compares the same way.
    for (q, value, compared, first, last) in [
        (
            "range=custom&from=2026-03-01&to=2026-03-10&compare=previous_period",
            150.0,
            100.0,
            json!(100.0),
            json!(50.0),
        ),
        (
            "range=custom&from=2028-02-01&to=2028-02-29&compare=previous_year",
            30.0,
            20.0,
            Value::Null,
            json!(30.0),
        ),
    ] {
        let kpis = admin
            .client
            .get_json(app.url(&format!("/api/data/kpis?{q}")))
            .await;
        let tile = kpis["tiles"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["metric"]["key"] == "sessions")
            .unwrap_or_else(|| panic!("{kpis}"));
        let part = &tile["total"]["parts"][0];
        assert_eq!(part["value"], value, "{q}: {kpis}");
        assert_eq!(part["compared"], compared, "{q}: {kpis}");
        // One value per day of the range; days without data are null.
        let days = tile["series"][0]["values"].as_array().unwrap();
        assert_eq!((days.first(), days.last()), (Some(&first), Some(&last)));
    }
    app.stop().await;
}

async fn provisional_flags_at_the_settling_boundary(backend: Backend) {
    let app = app(backend, &[]).await;
    let admin = app.signup("admin@s.example", "Acme").await;
    let ws = admin.workspace_id;
    // The sandbox settles over 3 days: today-3 .. today are provisional.
    write(
        &app,
        ws,
        None,
        json!([
            row(days_ago(4), "a", json!({"sessions": 1})),
            row(days_ago(3), "a", json!({"sessions": 2})),
        ]),
    )
    .await;
    let settled = query(
        &admin,
        &app,
        &format!("metrics=sessions&from={}&to={}", days_ago(10), days_ago(4)),
    )
    .await;
    assert_eq!(total(&settled, "sessions")["provisional"], false);
    let open = query(
        &admin,
        &app,
        &format!("metrics=sessions&from={}&to={}", days_ago(10), days_ago(3)),
    )
    .await;
    let t = total(&open, "sessions");
    assert_eq!(t["provisional"], true);
    assert!(
        t["provisionalNotes"][0]
            .as_str()
            .unwrap()
            .contains("may still revise the last 3 days"),
        "{t}"
    );
    let rows = open["rows"].as_array().unwrap();
    assert_eq!(rows[0]["provisional"], false);
    assert_eq!(rows[1]["provisional"], true);
    app.stop().await;
}

async fn revisions(user: &TestUser, app: &TestApp, since: &str) -> Vec<Value> {
    let res = user
        .client
        .get(app.url("/api/data/metrics/revisions"))
        .query(&[("since", since)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

async fn rereads_that_change_a_day_are_logged(backend: Backend) {
    let app = app(backend, &[]).await;
    let admin = app.signup("admin@r.example", "Acme").await;
    let ws = admin.workspace_id;
    let since = "2000-01-01T00:00:00Z";
    let day = days_ago(1);
    let first = json!([row(day, "a", json!({"sessions": 10, "ad_clicks": 3}))]);
    write(&app, ws, None, first.clone()).await;
    write(&app, ws, None, first).await;
    assert!(
        revisions(&admin, &app, since).await.is_empty(),
        "unchanged: nothing logged"
    );
    write(
        &app,
        ws,
        None,
        json!([row(day, "a", json!({"sessions": 10, "ad_clicks": 5}))]),
    )
    .await;
    let log = revisions(&admin, &app, since).await;
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0]["metric"], "clicks");
    assert_eq!(log[0]["label"], "Clicks");
    assert_eq!(log[0]["oldValue"], 3.0);
    assert_eq!(log[0]["newValue"], 5.0);
    assert_eq!(log[0]["date"], day.to_string());
    // Later than the change: nothing new.
    let later = (time::OffsetDateTime::now_utc() + time::Duration::minutes(1))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    assert!(revisions(&admin, &app, &later).await.is_empty());
    // Days far outside the settling window + margin are not kept.
    let old = days_ago(200);
    write(
        &app,
        ws,
        None,
        json!([row(old, "a", json!({"sessions": 1}))]),
    )
    .await;
    write(
        &app,
        ws,
        None,
        json!([row(old, "a", json!({"sessions": 2}))]),
    )
    .await;
    assert_eq!(revisions(&admin, &app, since).await.len(), 1);
    app.stop().await;
}

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

async fn sandbox_revisions_are_logged_by_syncs(backend: Backend) {
    // A lookback shorter than the sandbox's settling window (3 days).
    let app = app(
        backend,
        &[
            ("PLUGBOARD_SANDBOX_REVISIONS", "true"),
            ("PLUGBOARD_SYNC_METRICS_LOOKBACK_DAYS", "1"),
        ],
    )
    .await;
    let admin = app.signup("admin@sr.example", "Acme").await;
    let conn = connect(&app, &admin, "workspace").await;
    select(&app, &admin, conn, &["prop-1"]).await;
    sync_metrics(&app, &admin).await;
    let since = "2000-01-01T00:00:00Z";
    assert!(revisions(&admin, &app, since).await.is_empty());
    // The re-read covers the settling window and sees the sandbox's
    // revised recent days.
    let reread = sync_metrics(&app, &admin).await;
    assert!(
        reread["log"]
            .to_string()
            .contains(&format!("reading days from {}", days_ago(3))),
        "{reread}"
    );
    let log = revisions(&admin, &app, since).await;
    assert!(!log.is_empty());
    for r in &log {
        let d = Date::parse(
            r["date"].as_str().unwrap(),
            time::macros::format_description!("[year]-[month]-[day]"),
        )
        .unwrap();
        assert!(d >= days_ago(3), "only recent days move: {r}");
        assert_eq!(r["accountName"], "Acme Web");
    }
    // The stored rows carry the account's currency.
    let result = query(
        &admin,
        &app,
        &format!("metrics=revenue&from={}&to={}", days_ago(10), days_ago(1)),
    )
    .await;
    assert_eq!(total(&result, "revenue")["parts"][0]["currency"], "USD");
    app.stop().await;
}

async fn bad_input_is_422_naming_the_field(backend: Backend) {
    let app = app(backend, &[("PLUGBOARD_METRICS_MAX_RANGE_DAYS", "400")]).await;
    let admin = app.signup("admin@b.example", "Acme").await;
    write(
        &app,
        admin.workspace_id,
        None,
        json!([row(date!(2026 - 10 - 01), "a", json!({"sessions": 1}))]),
    )
    .await;
    let cases = [
        ("metrics=bogus", "metrics"),
        ("from=2026-01-01&to=2026-01-31", "metrics"),
        ("metrics=sessions&from=2026-02-01&to=2026-01-01", "from"),
        ("metrics=sessions&from=2024-01-01&to=2026-01-01", "to"),
        ("metrics=sessions&from=2026-13-01", "from"),
        ("metrics=sessions&grain=hour", "grain"),
        ("metrics=sessions&groupBy=country", "groupBy"),
        ("metrics=sessions&dim.country=de", "dim.country"),
        ("metrics=sessions&compare=last_year", "compare"),
        ("metrics=sessions&provider=slack", "provider"),
        ("metrics=sessions&account=%01", "account"),
    ];
    for (q, field) in cases {
        let res = admin
            .client
            .get(app.url(&format!("/api/data/metrics/query?{q}")))
            .send()
            .await
            .unwrap();
        let err = api_error(res, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(err["field"], field, "{q}: {err}");
    }
    for (q, field) in [
        ("range=1y", "range"),
        ("range=custom&from=2026-01-01", "to"),
        ("range=custom&from=2024-01-01&to=2026-01-01", "to"),
        ("compare=x", "compare"),
    ] {
        let res = admin
            .client
            .get(app.url(&format!("/api/data/kpis?{q}")))
            .send()
            .await
            .unwrap();
        let err = api_error(res, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(err["field"], field, "{q}: {err}");
    }
    let res = admin
        .client
        .get(app.url("/api/data/metrics/revisions?since=yesterday"))
        .send()
        .await
        .unwrap();
    let err = api_error(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(err["field"], "since");
    app.stop().await;
}

async fn csv_rows_are_guarded(backend: Backend) {
    let app = app(backend, &[]).await;
    let admin = app.signup("admin@csv.example", "Acme").await;
    write(
        &app,
        admin.workspace_id,
        None,
        json!([
            row(
                date!(2026 - 10 - 01),
                "=HYPERLINK(\"x\")",
                json!({"sessions": 3, "cost": -2.5})
            ),
            row(date!(2026 - 10 - 02), "plain", json!({"sessions": 4})),
        ]),
    )
    .await;
    let q = "metrics=sessions,cost&from=2026-10-01&to=2026-10-02&groupBy=account";
    let res = admin
        .client
        .get(app.url(&format!("/api/data/metrics/query?{q}")))
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let text = res.text().await.unwrap();
    let lines: Vec<&str> = text.split("\r\n").collect();
    assert_eq!(
        lines[0],
        "period,account,account_name,provider,currency,sessions,cost,provisional"
    );
    assert_eq!(
        lines[1],
        "2026-10-01,\"'=HYPERLINK(\"\"x\"\")\",,sandbox,XXX,3,-2.5,false"
    );
    assert_eq!(lines[2], "2026-10-02,plain,,sandbox,XXX,4,,false");
    // format=csv does the same for plain links.
    let same = admin
        .client
        .get_text(app.url(&format!("/api/data/metrics/query?{q}&format=csv")))
        .await;
    assert_eq!(same, text);
    app.stop().await;
}

/// Invites `email` into the admin's workspace and signs them up with it.
async fn join(app: &TestApp, admin: &TestUser, email: &str) -> TestUser {
    let invite: Value = admin
        .client
        .post_json(
            app.url(&format!("/api/workspaces/{}/invites", admin.workspace_id)),
            &json!({"email": email, "role": "member"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let token = invite["inviteUrl"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let c = client();
    let res = c
        .post_json(
            app.url("/api/auth/signup"),
            &json!({"email": email, "password": PASSWORD, "name": "m", "inviteToken": token}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED, "signup {email}");
    let me: Value = res.json().await.unwrap();
    TestUser {
        client: c,
        id: me["user"]["id"].as_str().unwrap().parse().unwrap(),
        email: email.to_owned(),
        workspace_id: admin.workspace_id,
    }
}

async fn tenancy_and_personal_visibility(backend: Backend) {
    let app = app(backend, &[]).await;
    let admin = app.signup("admin@t.example", "Acme").await;
    let ws = admin.workspace_id;
    let member = join(&app, &admin, "member@t.example").await;
    let personal = connect(&app, &admin, "user").await;
    select(&app, &admin, personal, &["prop-1"]).await;
    let d = date!(2026 - 10 - 01);
    write(
        &app,
        ws,
        Some(personal),
        json!([row(d, "prop-1", json!({"sessions": 5}))]),
    )
    .await;
    write(
        &app,
        ws,
        None,
        json!([row(d, "shared", json!({"sessions": 7}))]),
    )
    .await;
    let q = "metrics=sessions&from=2026-10-01&to=2026-10-01";
    let mine = admin
        .client
        .get_json(app.url("/api/data/metrics/catalog"))
        .await;
    assert!(
        mine["providers"][0]["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["id"] == "prop-1"),
        "{mine}"
    );
    // The owner sees their personal connection's rows with the workspace's.
    assert!(close(
        value(&query(&admin, &app, q).await, "sessions"),
        12.0
    ));
    // Another member sees only the workspace's data.
    assert!(close(
        value(&query(&member, &app, q).await, "sessions"),
        7.0
    ));
    let catalog = member
        .client
        .get_json(app.url("/api/data/metrics/catalog"))
        .await;
    assert!(
        catalog["providers"][0]["accounts"]
            .as_array()
            .unwrap()
            .is_empty(),
        "the personal connection's accounts stay private: {catalog}"
    );

    // Another workspace gets nothing: no provider, so no metric to ask for.
    let stranger = app.signup("x@other.example", "Other").await;
    let catalog = stranger
        .client
        .get_json(app.url("/api/data/metrics/catalog"))
        .await;
    assert_eq!(catalog["providers"], json!([]), "{catalog}");
    let res = stranger
        .client
        .get(app.url(&format!("/api/data/metrics/query?{q}")))
        .send()
        .await
        .unwrap();
    api_error(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    let kpis = stranger
        .client
        .get_json(app.url("/api/data/kpis?range=7d"))
        .await;
    assert_eq!(kpis["tiles"], json!([]));
    // The deployment-wide key names a workspace: an unknown one is 404.
    let res = client()
        .get(app.url(&format!(
            "/api/data/metrics/catalog?workspaceId={}",
            Uuid::new_v4()
        )))
        .bearer_auth(AGENT_KEY)
        .send()
        .await
        .unwrap();
    api_error(res, StatusCode::NOT_FOUND).await;
    // Signed out: 401.
    let res = client()
        .get(app.url("/api/data/metrics/catalog"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    app.stop().await;
}

async fn make_key(app: &TestApp, admin: &TestUser, scopes: &[&str]) -> String {
    let res = admin
        .client
        .post_json(
            app.url(&format!(
                "/api/workspaces/{}/service-keys",
                admin.workspace_id
            )),
            &json!({"name": "reader", "scopes": scopes}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let body: Value = res.json().await.unwrap();
    body["key"].as_str().unwrap().to_owned()
}

async fn service_keys_need_metrics_read(backend: Backend) {
    let app = app(backend, &[]).await;
    let admin = app.signup("admin@k.example", "Acme").await;
    let ws = admin.workspace_id;
    let personal = connect(&app, &admin, "user").await;
    let d = date!(2026 - 10 - 01);
    write(
        &app,
        ws,
        Some(personal),
        json!([row(d, "prop-1", json!({"sessions": 5}))]),
    )
    .await;
    write(
        &app,
        ws,
        None,
        json!([row(d, "shared", json!({"sessions": 7}))]),
    )
    .await;
    let q = "/api/data/metrics/query?metrics=sessions&from=2026-10-01&to=2026-10-01";
    let writer = make_key(&app, &admin, &["metrics:write"]).await;
    let res = client()
        .get(app.url(q))
        .bearer_auth(&writer)
        .send()
        .await
        .unwrap();
    api_error(res, StatusCode::FORBIDDEN).await;
    let reader = make_key(&app, &admin, &["metrics:read"]).await;
    let res = client()
        .get(app.url(q))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    // A key sees the workspace's data, never a member's personal connection.
    assert!(close(value(&body, "sessions"), 7.0), "{body}");
    let res = client()
        .get(app.url("/api/data/kpis?range=7d"))
        .bearer_auth("pb_sk_bogus")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    app.stop().await;
}
