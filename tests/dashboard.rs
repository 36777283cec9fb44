//! The Data Hub dashboard (`/data`) and the metric explorer
//! (`/data/metrics`): the numbers on the pages are the query API's, empty
//! states lead somewhere, bad input is shown beside its field, the CSV is
//! the table's rows, and a member's personal data stays theirs.

mod common;

use std::time::Duration;

use common::{
    Backend, ClientExt, PASSWORD, SANDBOX_ID, SANDBOX_SECRET, TestApp, TestUser, client,
    sandbox_app,
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

on_both_backends!(
    dashboard_shows_the_kpis_the_api_returns,
    an_empty_workspace_is_sent_to_connect,
    explorer_table_and_csv_match_the_query_api,
    bad_input_is_shown_beside_its_field,
    members_do_not_see_each_others_personal_data,
);

async fn app(backend: Backend) -> TestApp {
    // Deterministic values: no revisions between reads.
    sandbox_app(backend, &[("PLUGBOARD_SANDBOX_REVISIONS", "false")]).await
}

async fn join(app: &TestApp, admin: &TestUser, email: &str, role: &str) -> TestUser {
    let invite: Value = admin
        .client
        .post_json(
            app.url(&format!("/api/workspaces/{}/invites", admin.workspace_id)),
            &json!({"email": email, "role": role}),
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
            &json!({"email": email, "password": PASSWORD, "name": email.split('@').next().unwrap(), "inviteToken": token}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED, "signup {email}");
    let me: Value = res.json().await.unwrap();
    let user = TestUser {
        client: c,
        id: me["user"]["id"].as_str().unwrap().parse().unwrap(),
        email: email.to_owned(),
        workspace_id: admin.workspace_id,
    };
    let res = user
        .client
        .post_json(
            app.url(&format!("/api/workspaces/{}/switch", admin.workspace_id)),
            &json!({}),
        )
        .await;
    assert!(res.status().is_success(), "switch: {}", res.status());
    user
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

async fn sync_metrics(app: &TestApp, user: &TestUser) {
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

/// The HTML of one KPI tile (up to the next tile or the end of the list).
fn tile<'a>(html: &'a str, key: &str) -> &'a str {
    let marker = format!("data-testid=\"kpi-{key}\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no tile {key}"));
    let rest = &html[start + marker.len()..];
    let end = rest
        .find("data-testid=\"kpi-")
        .or_else(|| rest.find("</div>"))
        .unwrap_or(rest.len());
    &rest[..end]
}

/// The raw values (`data-value`) a tile shows, in order.
fn tile_values(html: &str, key: &str) -> Vec<String> {
    tile(html, key)
        .split("data-value=\"")
        .skip(1)
        .map(|s| s.split('"').next().unwrap_or_default().to_owned())
        .collect()
}

/// The API's parts of each tile as the page writes them.
fn api_values(board: &Value) -> Vec<(String, Vec<String>)> {
    board["tiles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let key = t["metric"]["key"].as_str().unwrap().to_owned();
            let parts = t["total"]["parts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    p["value"]
                        .as_f64()
                        .map(|v| v.to_string())
                        .unwrap_or_default()
                })
                .collect();
            (key, parts)
        })
        .collect()
}

async fn dashboard_shows_the_kpis_the_api_returns(backend: Backend) {
    let app = app(backend).await;
    let owner = app.signup("owner@a.example", "Acme").await;
    let c = connect(&app, &owner, "workspace").await;
    select(&app, &owner, c, &["prop-1", "prop-2"]).await;
    sync_metrics(&app, &owner).await;

    let mut seen = Vec::new();
    for (page_query, api_query) in [
        ("", "range=28d&compare=previous_period"),
        ("?range=7d&compare=none", "range=7d&compare=none"),
        (
            "?scope=a%3Asandbox%3Aprop-1&range=28d",
            "range=28d&compare=previous_period&provider=sandbox&account=prop-1",
        ),
    ] {
        let board = owner
            .client
            .get_json(app.url(&format!("/api/data/kpis?{api_query}")))
            .await;
        let html = owner
            .client
            .get_text(app.url(&format!("/data{page_query}")))
            .await;
        let expected = api_values(&board);
        assert!(!expected.is_empty(), "{board}");
        assert!(
            expected
                .iter()
                .any(|(_, parts)| parts.iter().any(|v| !v.is_empty())),
            "the sync gave data: {board}"
        );
        for (key, parts) in &expected {
            assert_eq!(
                &tile_values(&html, key),
                parts,
                "tile {key} of /data{page_query}"
            );
        }
        assert!(html.contains("data-testid=\"line-chart\""), "{html}");
        assert!(html.contains("<svg class=\"chart line-chart\""));
        assert!(
            html.contains("class=\"sr-only\""),
            "a table for screen readers"
        );
        seen.push(expected);
    }
    assert_ne!(seen[0], seen[1], "7 days differ from 28");
    assert_ne!(seen[0], seen[2], "one account differs from two");

    // The comparison is drawn dashed; all providers: bars per account when
    // one provider is chosen; a fresh sync says so; coverage is shown.
    let html = owner.client.get_text(app.url("/data")).await;
    assert!(html.contains("stroke-dasharray"), "comparison line");
    let html = owner
        .client
        .get_text(app.url("/data?scope=p%3Asandbox"))
        .await;
    assert!(html.contains("data-testid=\"bar-chart\""), "{html}");
    assert!(html.contains("by account"));
    // Each account's bar is that account's own total (sessions add up, so
    // the bars come from one grouped query).
    let bars = html.split("data-testid=\"bar-chart\"").nth(1).unwrap();
    for account in ["prop-1", "prop-2"] {
        let one = owner
            .client
            .get_text(app.url(&format!(
                "/data?scope=a%3Asandbox%3A{account}&metric=sessions"
            )))
            .await;
        let shown = tile(&one, "sessions")
            .split("class=\"kpi-value\"")
            .nth(1)
            .and_then(|s| s.split('>').nth(1))
            .and_then(|s| s.split('<').next())
            .unwrap()
            .to_owned();
        assert!(
            bars.contains(&format!("<td>{shown}</td>")),
            "{account}: {shown} in {bars}"
        );
    }
    assert!(
        html.contains("synced just now") || html.contains("min ago"),
        "{html}"
    );
    assert!(html.contains("data-testid=\"coverage\""));
    // Choosing a tile's metric keeps the rest of the view in the link.
    let key = &seen[1][1].0;
    assert!(
        html.contains(&format!(
            "scope=p%3Asandbox&#38;range=28d&#38;compare=previous_period&#38;metric={key}"
        )),
        "{html}"
    );
    app.stop().await;
}

async fn an_empty_workspace_is_sent_to_connect(backend: Backend) {
    let app = app(backend).await;
    let owner = app.signup("owner@a.example", "Acme").await;
    let html = owner.client.get_text(app.url("/data")).await;
    assert!(html.contains("data-testid=\"dashboard-empty\""), "{html}");
    assert!(html.contains("href=\"/data/connections\""));
    assert!(!html.contains("data-testid=\"kpis\""));
    let html = owner.client.get_text(app.url("/data/metrics")).await;
    assert!(html.contains("data-testid=\"explorer-empty\""), "{html}");

    // Connected without accounts: choose them first.
    connect(&app, &owner, "workspace").await;
    let html = owner.client.get_text(app.url("/data")).await;
    assert!(html.contains("href=\"/data/sandbox/accounts\""), "{html}");
    app.stop().await;
}

async fn explorer_table_and_csv_match_the_query_api(backend: Backend) {
    let app = app(backend).await;
    let owner = app.signup("owner@a.example", "Acme").await;
    let c = connect(&app, &owner, "workspace").await;
    select(&app, &owner, c, &["prop-1", "prop-2"]).await;
    sync_metrics(&app, &owner).await;
    let catalog = owner
        .client
        .get_json(app.url("/api/data/metrics/catalog"))
        .await;
    let keys: Vec<String> = catalog["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .take(3)
        .map(|m| m["key"].as_str().unwrap().to_owned())
        .collect();
    let query = format!(
        "metrics={}&groupBy=account&grain=week&compare=previous_period",
        keys.join(",")
    );
    let api = owner
        .client
        .get(app.url(&format!("/api/data/metrics/query?{query}")))
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let res = owner
        .client
        .get(app.url(&format!("/data/metrics.csv?{query}&page=2&sort=m0")))
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
    let csv = res.text().await.unwrap();
    assert_eq!(csv, api, "the page's CSV is the API's rows");
    let json = owner
        .client
        .get_json(app.url(&format!("/api/data/metrics/query?{query}")))
        .await;
    let rows = json["rows"].as_array().unwrap();
    assert!(rows.len() > 2, "{json}");
    assert_eq!(
        csv.lines().count(),
        rows.len() + 1,
        "a header and every row"
    );

    // The page shows the same rows (50 a page), links keep the query.
    let html = owner
        .client
        .get_text(app.url(&format!("/data/metrics?{query}")))
        .await;
    assert!(html.contains("data-testid=\"explorer-table\""), "{html}");
    assert_eq!(
        html.matches("<tr>").count() - 1,
        rows.len().min(50),
        "one table row per result row"
    );
    assert!(html.contains("href=\"/data/metrics.csv?metrics="), "{html}");
    assert!(html.contains("groupBy=account&#38;grain=week"));
    // Sorting by the first metric, descending: the biggest value first.
    let html = owner
        .client
        .get_text(app.url(&format!("/data/metrics?{query}&sort=m0&dir=desc")))
        .await;
    let max = rows
        .iter()
        .filter_map(|r| r["values"][&keys[0]].as_f64())
        .fold(f64::MIN, f64::max);
    assert!(html.contains("aria-sort=\"descending\""));
    let first_row = html.split("<tbody>").nth(1).unwrap();
    let first_row = first_row.split("</tr>").next().unwrap();
    let shown: f64 = first_row
        .split("<td class=\"num\">")
        .nth(1)
        .unwrap()
        .split(['<', ' '])
        .next()
        .unwrap()
        .replace(',', "")
        .parse()
        .unwrap();
    assert!(
        (shown - max).abs() < 0.01 * max.abs().max(1.0),
        "{shown} vs {max}"
    );
    app.stop().await;
}

async fn bad_input_is_shown_beside_its_field(backend: Backend) {
    let app = app(backend).await;
    let owner = app.signup("owner@a.example", "Acme").await;
    let c = connect(&app, &owner, "workspace").await;
    select(&app, &owner, c, &["prop-1"]).await;
    sync_metrics(&app, &owner).await;

    let res = owner
        .client
        .get(app.url("/data/metrics?metrics=no_such_metric&grain=day"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = res.text().await.unwrap();
    assert!(html.contains("data-testid=\"error-metrics\""), "{html}");
    assert!(html.contains("no_such_metric"));

    let res = owner
        .client
        .get(app.url("/data/metrics?from=2026-13-40"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = res.text().await.unwrap();
    assert!(html.contains("data-testid=\"error-from\""), "{html}");
    assert!(
        html.contains("value=\"2026-13-40\""),
        "what was typed is kept"
    );

    let res = owner
        .client
        .get(app.url("/data?range=custom&from=2026-02-10&to=2026-01-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = res.text().await.unwrap();
    assert!(html.contains("class=\"field-error\""), "{html}");
    assert!(html.contains("value=\"2026-02-10\""));

    let res = owner
        .client
        .get(app.url("/data?scope=bogus"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("data-testid=\"error-scope\"")
    );

    // The CSV of a bad query is a plain 422 naming the field.
    let res = owner
        .client
        .get(app.url("/data/metrics.csv?metrics=nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    app.stop().await;
}

async fn members_do_not_see_each_others_personal_data(backend: Backend) {
    let app = app(backend).await;
    let owner = app.signup("owner@a.example", "Acme").await;
    let alice = join(&app, &owner, "alice@a.example", "member").await;
    let bob = join(&app, &owner, "bob@a.example", "member").await;
    let mine = connect(&app, &alice, "user").await;
    select(&app, &alice, mine, &["prop-3"]).await;
    sync_metrics(&app, &alice).await;

    let html = alice.client.get_text(app.url("/data")).await;
    assert!(html.contains("data-testid=\"kpis\""), "{html}");
    assert!(html.contains("prop-3") || html.contains("a:sandbox:prop-3"));
    let board = alice
        .client
        .get_json(app.url("/api/data/kpis?range=28d&compare=previous_period"))
        .await;
    for (key, parts) in api_values(&board) {
        assert_eq!(tile_values(&html, &key), parts);
    }

    for other in [&bob, &owner] {
        let html = other.client.get_text(app.url("/data")).await;
        assert!(!html.contains("data-testid=\"kpis\""), "{html}");
        assert!(!html.contains("prop-3"));
        assert!(html.contains("data-testid=\"dashboard-empty\""));
        let html = other
            .client
            .get_text(app.url("/data?scope=a%3Asandbox%3Aprop-3"))
            .await;
        assert!(!html.contains("data-value=\""), "{html}");
        let res = other
            .client
            .get(app.url("/data/metrics.csv?metrics=sessions&groupBy=account"))
            .send()
            .await
            .unwrap();
        let body = res.text().await.unwrap();
        assert!(!body.contains("prop-3"), "{body}");
    }
    app.stop().await;
}
