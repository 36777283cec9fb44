//! Settings pages: the index, webhooks (the secret shown once, deliveries,
//! redelivery), `sync_failed` / `sync_recovered` events, the audit log
//! (filters, paging, CSV) and the keys' creator and last-use columns.
//! Members get 403; another workspace's ids are 404.

mod common;

use std::time::Duration;

use common::{
    Backend, ClientExt, SANDBOX_ID, SANDBOX_SECRET, TestApp, TestUser, client, sandbox_app,
    set_faults,
};
use plugboard::audit::AuditEntry;
use plugboard::tenancy::WorkspaceId;
use reqwest::StatusCode;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

on_both_backends!(
    settings_index_links_every_page_and_members_get_403,
    webhooks_page_shows_the_secret_once_lists_deliveries_and_redelivers,
    repeated_sync_failures_alert_once_and_recovery_is_announced,
    audit_log_filters_pages_and_exports_csv,
    keys_show_their_creator_and_last_use,
);

async fn post_form(
    app: &TestApp,
    c: &reqwest::Client,
    path: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let token = app.csrf(c, "/").await;
    let mut form: Vec<(&str, &str)> = fields.to_vec();
    form.push(("_csrf", token.as_str()));
    c.post(app.url(path)).form(&form).send().await.unwrap()
}

async fn status_of(c: &reqwest::Client, app: &TestApp, path: &str) -> StatusCode {
    c.get(app.url(path)).send().await.unwrap().status()
}

async fn member_of(app: &TestApp, admin: &TestUser, email: &str) -> TestUser {
    let member = app.signup(email, "Elsewhere").await;
    app.join(
        &admin.client,
        admin.workspace_id,
        &member.client,
        email,
        "member",
    )
    .await;
    // Work in the admin's workspace.
    let token = app.csrf(&member.client, "/").await;
    let res = member
        .client
        .post(app.url(&format!("/workspaces/{}/switch", admin.workspace_id)))
        .form(&[("_csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert!(res.status().is_redirection(), "{}", res.status());
    TestUser {
        workspace_id: admin.workspace_id,
        ..member
    }
}

async fn connect(app: &TestApp, user: &TestUser) {
    let res = user
        .client
        .post_json(
            app.url("/api/integrations/sandbox/connect"),
            &json!({"flow": "client_credentials", "clientId": SANDBOX_ID, "clientSecret": SANDBOX_SECRET,
                    "headers": {"X-Sandbox-Company": "acme"}, "ownership": "workspace"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED, "connect");
}

/// Syncs one object and waits for the job to end; its status.
async fn sync(app: &TestApp, user: &TestUser, object: &str) -> String {
    let res = user
        .client
        .post_json(
            app.url(&format!("/api/integrations/sandbox/{object}/sync")),
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
            return status.to_owned();
        }
        assert!(std::time::Instant::now() < deadline, "job stuck: {body}");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

async fn hooks_received(mock: &MockServer, at_least: usize) -> Vec<wiremock::Request> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let received: Vec<_> = mock
            .received_requests()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.url.path() == "/hook")
            .collect();
        if received.len() >= at_least || std::time::Instant::now() > deadline {
            return received;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn hook_mock() -> MockServer {
    let mock = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&mock)
        .await;
    mock
}

async fn settings_index_links_every_page_and_members_get_403(backend: Backend) {
    let app = sandbox_app(backend, &[]).await;
    let admin = app.signup("admin@settings.example", "Settings").await;
    let home = admin.client.get_text(app.url("/")).await;
    assert!(home.contains("href=\"/settings\""), "{home}");
    let index = admin.client.get_text(app.url("/settings")).await;
    for href in [
        "/settings/members",
        "/settings/keys",
        "/settings/webhooks",
        "/settings/audit",
        "/settings/workspace",
    ] {
        assert!(
            index.contains(&format!("href=\"{href}\"")),
            "{href}: {index}"
        );
        assert_eq!(
            status_of(&admin.client, &app, href).await,
            StatusCode::OK,
            "{href}"
        );
    }
    assert!(
        index.contains("<title>Settings · Plugboard</title>"),
        "{index}"
    );

    let member = member_of(&app, &admin, "member@settings.example").await;
    let home = member.client.get_text(app.url("/")).await;
    assert!(!home.contains("href=\"/settings\""), "{home}");
    for href in [
        "/settings",
        "/settings/webhooks",
        "/settings/audit",
        "/settings/audit.csv",
        "/settings/keys",
    ] {
        assert_eq!(
            status_of(&member.client, &app, href).await,
            StatusCode::FORBIDDEN,
            "{href}"
        );
    }
    let res = post_form(
        &app,
        &member.client,
        "/settings/webhooks",
        &[("url", "https://example.com/hook")],
    )
    .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        app.db.count("SELECT COUNT(*) FROM webhook_endpoints").await,
        0
    );
    // Signed out: to the log-in page.
    let res = client().get(app.url("/settings")).send().await.unwrap();
    assert!(res.status().is_redirection(), "{}", res.status());
    app.stop().await;
}

async fn webhooks_page_shows_the_secret_once_lists_deliveries_and_redelivers(backend: Backend) {
    let mock = hook_mock().await;
    let app = sandbox_app(backend, &[("PLUGBOARD_OUTBOUND_ALLOW", "127.0.0.1")]).await;
    let admin = app.signup("admin@hooks.example", "Hooks").await;
    let page = admin.client.get_text(app.url("/settings/webhooks")).await;
    assert!(page.contains("No deliveries yet"), "{page}");

    // Bad URLs: 422, the typed value kept, the error beside the field.
    for (bad, why) in [
        ("ftp://example.com/hook", "expected an http(s) URL"),
        ("http://10.0.0.1/hook", "not allowed"),
    ] {
        let res = post_form(&app, &admin.client, "/settings/webhooks", &[("url", bad)]).await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        let html = res.text().await.unwrap();
        assert!(html.contains("data-testid=\"error-url\""), "{html}");
        assert!(html.contains(why), "{bad}: {html}");
        assert!(html.contains(&format!("value=\"{bad}\"")), "{html}");
    }
    assert_eq!(
        app.db.count("SELECT COUNT(*) FROM webhook_endpoints").await,
        0
    );

    // Saved: the secret is in this response only.
    let url = format!("{}/hook", mock.uri());
    let res = post_form(&app, &admin.client, "/settings/webhooks", &[("url", &url)]).await;
    assert_eq!(res.status(), StatusCode::OK);
    let html = res.text().await.unwrap();
    let marker = "data-testid=\"signing-secret\"";
    assert!(html.contains(marker), "{html}");
    let start = html.find("value=\"whsec_").unwrap() + "value=\"".len();
    let secret = html[start..start + html[start..].find('"').unwrap()].to_owned();
    let again = admin.client.get_text(app.url("/settings/webhooks")).await;
    assert!(!again.contains(&secret) && !again.contains(marker));
    assert!(again.contains(&format!("value=\"{url}\"")), "{again}");
    let audit = admin.client.get_text(app.url("/settings/audit")).await;
    assert!(audit.contains("webhook.set"), "{audit}");
    assert!(!audit.contains(&secret));

    // An event is delivered and listed with its status and attempts.
    connect(&app, &admin).await;
    let hooks = hooks_received(&mock, 1).await;
    assert_eq!(hooks.len(), 1);
    let delivery_id = hooks[0].headers["plugboard-delivery"]
        .to_str()
        .unwrap()
        .to_owned();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let page = loop {
        let page = admin.client.get_text(app.url("/settings/webhooks")).await;
        if page.contains(">delivered<") || std::time::Instant::now() > deadline {
            break page;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        page.matches("data-testid=\"delivery-row\"").count(),
        1,
        "{page}"
    );
    assert!(page.contains("<code>connected</code>"), "{page}");
    assert!(page.contains(">delivered<"), "{page}");
    assert!(page.contains("data-testid=\"redeliver\""), "{page}");

    // Another workspace's admin can't redeliver it, nor see it.
    let other = app.signup("other@hooks.example", "Other").await;
    let redeliver = format!("/settings/webhooks/deliveries/{delivery_id}/redeliver");
    for confirm in [None, Some("yes")] {
        let fields: Vec<(&str, &str)> = confirm.map(|c| ("confirm", c)).into_iter().collect();
        let res = post_form(&app, &other.client, &redeliver, &fields).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
    }
    let theirs = other.client.get_text(app.url("/settings/webhooks")).await;
    assert!(!theirs.contains("data-testid=\"delivery-row\""));

    // Redeliver asks first, then sends the same delivery again.
    let res = post_form(&app, &admin.client, &redeliver, &[]).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.text().await.unwrap().contains("confirm"));
    assert_eq!(hooks_received(&mock, 1).await.len(), 1);
    let res = post_form(&app, &admin.client, &redeliver, &[("confirm", "yes")]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let hooks = hooks_received(&mock, 2).await;
    assert_eq!(hooks.len(), 2);
    assert_eq!(
        hooks[1].headers["plugboard-delivery"].to_str().unwrap(),
        delivery_id
    );
    let t: i64 = hooks[1].headers["plugboard-signature"]
        .to_str()
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .trim_start_matches("t=")
        .parse()
        .unwrap();
    assert_eq!(
        hooks[1].headers["plugboard-signature"].to_str().unwrap(),
        plugboard::webhooks::signature(&secret, t, &hooks[1].body)
    );
    assert_eq!(
        app.db
            .count("SELECT COUNT(*) FROM audit_log WHERE action = 'webhook.redeliver'")
            .await,
        1
    );
    let bogus = "/settings/webhooks/deliveries/not-an-id/redeliver";
    let res = post_form(&app, &admin.client, bogus, &[("confirm", "yes")]).await;
    assert!(res.status().is_client_error(), "{}", res.status());

    // Removing asks first.
    let res = post_form(&app, &admin.client, "/settings/webhooks/remove", &[]).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        app.db.count("SELECT COUNT(*) FROM webhook_endpoints").await,
        1
    );
    let res = post_form(
        &app,
        &admin.client,
        "/settings/webhooks/remove",
        &[("confirm", "yes")],
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        app.db.count("SELECT COUNT(*) FROM webhook_endpoints").await,
        0
    );
    app.stop().await;
}

async fn alerts(app: &TestApp, event: &'static str) -> i64 {
    let sql: &'static str = match event {
        "sync_failed" => "SELECT COUNT(*) FROM webhook_deliveries WHERE event = 'sync_failed'",
        _ => "SELECT COUNT(*) FROM webhook_deliveries WHERE event = 'sync_recovered'",
    };
    app.db.count(sql).await
}

async fn repeated_sync_failures_alert_once_and_recovery_is_announced(backend: Backend) {
    let mock = hook_mock().await;
    let app = sandbox_app(
        backend,
        &[
            ("PLUGBOARD_OUTBOUND_ALLOW", "127.0.0.1"),
            ("PLUGBOARD_SYNC_ALERT_AFTER_FAILURES", "2"),
        ],
    )
    .await;
    let admin = app.signup("admin@alerts.example", "Alerts").await;
    let res = admin
        .client
        .put(app.url(&format!("/api/workspaces/{}/webhook", admin.workspace_id)))
        .json(&json!({"url": format!("{}/hook", mock.uri())}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    connect(&app, &admin).await;

    // One failure: no alert yet; the second: one; the third: still one.
    for (round, expected) in [(1, 0), (2, 1), (3, 1)] {
        set_faults(&app, json!({"bad_request_next": 1})).await;
        assert_eq!(
            sync(&app, &admin, "projects").await,
            "failed",
            "round {round}"
        );
        assert_eq!(alerts(&app, "sync_failed").await, expected, "round {round}");
    }
    // A success of another object doesn't end this object's streak.
    set_faults(&app, json!({})).await;
    assert_eq!(sync(&app, &admin, "people").await, "succeeded");
    assert_eq!(alerts(&app, "sync_recovered").await, 0);
    assert_eq!(sync(&app, &admin, "projects").await, "succeeded");
    assert_eq!(alerts(&app, "sync_recovered").await, 1);
    assert_eq!(sync(&app, &admin, "projects").await, "succeeded");
    assert_eq!(alerts(&app, "sync_recovered").await, 1);
    assert_eq!(alerts(&app, "sync_failed").await, 1);

    // Delivered, and the payload names the object, never an error text.
    let hooks = hooks_received(&mock, 3).await;
    let events: Vec<Value> = hooks
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    let names: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["connected", "sync_failed", "sync_recovered"],
        "{events:?}"
    );
    let failed = &events[1];
    assert_eq!(failed["object"], "projects");
    assert_eq!(failed["provider"], "sandbox");
    assert_eq!(failed["consecutiveFailures"], 2);
    assert_eq!(failed["workspaceId"], admin.workspace_id.to_string());
    for r in &hooks {
        let body = String::from_utf8_lossy(&r.body);
        assert!(!body.contains("error") && !body.contains('@'), "{body}");
    }
    let page = admin.client.get_text(app.url("/settings/webhooks")).await;
    assert!(page.contains("<code>sync_failed</code>"), "{page}");
    assert!(page.contains("<code>sync_recovered</code>"), "{page}");
    app.stop().await;
}

async fn audit_log_filters_pages_and_exports_csv(backend: Backend) {
    let app = sandbox_app(backend, &[]).await;
    let admin = app.signup("admin@audit.example", "Audit").await;
    let ws = WorkspaceId(admin.workspace_id);
    for i in 0..60 {
        let entry = AuditEntry::new(Some(ws), Some(admin.id), "test.bulk")
            .target("thing", i)
            .details(json!({"n": i}));
        app.store.record_audit(&entry).await.unwrap();
    }
    let hostile = AuditEntry::new(Some(ws), None, "test.other")
        .details(json!({"name": "=HYPERLINK(\"http://evil\")"}));
    app.store.record_audit(&hostile).await.unwrap();
    let mut old = AuditEntry::new(Some(ws), Some(admin.id), "test.old");
    old.created_at = time::macros::datetime!(2026-01-15 12:00 UTC);
    app.store.record_audit(&old).await.unwrap();
    // Another workspace's entries never show here.
    let other = app.signup("other@audit.example", "Other").await;
    let theirs = AuditEntry::new(
        Some(WorkspaceId(other.workspace_id)),
        Some(other.id),
        "test.bulk",
    );
    app.store.record_audit(&theirs).await.unwrap();

    let rows = |html: &str| html.matches("data-testid=\"audit-row\"").count();
    let html = admin.client.get_text(app.url("/settings/audit")).await;
    assert_eq!(rows(&html), 50, "{html}");
    assert!(html.contains("page 1 of 2"), "{html}");
    assert!(html.contains("<option value=\"test.other\""), "{html}");

    let url = format!("/settings/audit?actor={}&action=test.bulk&page=2", admin.id);
    let html = admin.client.get_text(app.url(&url)).await;
    assert_eq!(rows(&html), 10, "{html}");
    assert!(html.contains("51–60 of 60"), "{html}");
    assert!(html.contains(">admin</td>"), "the actor's name: {html}");
    // Paging links keep the filters.
    assert!(html.contains("action=test%2Ebulk"), "{html}");

    let html = admin
        .client
        .get_text(app.url("/settings/audit?action=test.other"))
        .await;
    assert_eq!(rows(&html), 1);
    assert!(html.contains(">system</td>"), "{html}");

    let html = admin
        .client
        .get_text(app.url("/settings/audit?from=2026-01-15&to=2026-01-15"))
        .await;
    assert_eq!(rows(&html), 1, "{html}");
    assert!(html.contains("test.old"));
    let html = admin
        .client
        .get_text(app.url("/settings/audit?from=2026-01-16&to=2026-01-20"))
        .await;
    assert_eq!(rows(&html), 0);
    assert!(html.contains("No entries match"), "{html}");

    for (query, field) in [
        ("from=yesterday", "from"),
        ("from=2026-02-01&to=2026-01-01", "to"),
        ("actor=nobody", "actor"),
    ] {
        let res = admin
            .client
            .get(app.url(&format!("/settings/audit?{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{query}");
        let html = res.text().await.unwrap();
        assert!(
            html.contains(&format!("data-testid=\"error-{field}\"")),
            "{html}"
        );
        let res = admin
            .client
            .get(app.url(&format!("/settings/audit.csv?{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{query}");
    }

    // CSV: the same filters; formulas defused.
    let res = admin
        .client
        .get(app.url("/settings/audit.csv?action=test.other"))
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
    assert!(
        res.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("audit-log.csv")
    );
    let csv = res.text().await.unwrap();
    let lines: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(lines[0].starts_with("time,time_utc,actor,"), "{csv}");
    assert!(lines[1].contains("test.other"), "{csv}");
    assert!(
        !lines[1].contains(",=") && !lines[1].contains(",\"="),
        "{csv}"
    );
    let csv = admin.client.get_text(app.url("/settings/audit.csv")).await;
    assert_eq!(
        csv.matches("test.bulk").count(),
        60,
        "all of ours, none of theirs"
    );

    // The other admin sees only their own entries.
    let html = other.client.get_text(app.url("/settings/audit")).await;
    assert_eq!(
        html.matches("audit-action\">test.bulk<").count(),
        1,
        "{html}"
    );
    assert!(!html.contains("test.other") && !html.contains("test.old"));
    app.stop().await;
}

async fn keys_show_their_creator_and_last_use(backend: Backend) {
    let app = sandbox_app(backend, &[]).await;
    let admin = app.signup("keeper@keys.example", "Keys").await;
    let res = post_form(
        &app,
        &admin.client,
        "/settings/workspace",
        &[("time_zone", "Asia/Kolkata")],
    )
    .await;
    assert!(res.status().is_redirection());
    let res = post_form(
        &app,
        &admin.client,
        "/settings/keys",
        &[("name", "n8n"), ("scope", "context:read")],
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let html = res.text().await.unwrap();
    let start = html.find("value=\"pb_sk_").unwrap() + "value=\"".len();
    let key = html[start..start + html[start..].find('"').unwrap()].to_owned();
    let html = admin.client.get_text(app.url("/settings/keys")).await;
    assert!(html.contains("<th>Created by</th>"), "{html}");
    assert!(
        html.contains("data-testid=\"key-creator\">keeper</td>"),
        "{html}"
    );
    assert!(
        html.contains("data-testid=\"key-last-used\">never</td>"),
        "{html}"
    );

    let res = client()
        .get(app.url(&format!(
            "/api/internal/run-context?jobId={}",
            uuid::Uuid::new_v4()
        )))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let html = admin.client.get_text(app.url("/settings/keys")).await;
    let cell = "data-testid=\"key-last-used\">";
    let at = html.find(cell).unwrap() + cell.len();
    let used = &html[at..at + html[at..].find('<').unwrap()];
    assert!(
        used.ends_with("Asia/Kolkata"),
        "in the workspace zone: {used}"
    );
    app.stop().await;
}
