//! The outbound policy: tenant-chosen webhook URLs can't reach loopback,
//! private, link-local or metadata addresses (refused when saved, and at
//! connect time for names that resolve there), failures read the same
//! whatever answered, the operator's allowlist opens addresses, and a
//! provider's next-page link can't lead the token to another host.

mod common;

use std::time::Duration;

use common::{
    Backend, ClientExt, SANDBOX_ID, SANDBOX_SECRET, TestApp, TestUser, api_error, sandbox_app,
    spawn_app_with,
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

on_both_backends!(
    webhooks_to_internal_addresses_are_refused,
    allowlisted_webhooks_deliver_and_failures_stay_generic,
    next_links_to_another_host_are_not_followed,
);

async fn put_webhook(app: &TestApp, user: &TestUser, url: &str) -> reqwest::Response {
    user.client
        .put(app.url(&format!("/api/workspaces/{}/webhook", user.workspace_id)))
        .json(&json!({ "url": url }))
        .send()
        .await
        .unwrap()
}

/// A sandbox connection made over the API: queues a `connected` event.
async fn connect_sandbox(app: &TestApp, user: &TestUser) {
    let res = user
        .client
        .post_json(
            app.url("/api/integrations/sandbox/connect"),
            &json!({"flow": "client_credentials", "clientId": SANDBOX_ID, "clientSecret": SANDBOX_SECRET, "headers": {"X-Sandbox-Company": "acme"}}),
        )
        .await;
    assert!(res.status().is_success(), "{}", res.status());
}

/// The first delivery once it has been attempted.
async fn first_attempt(app: &TestApp, user: &TestUser) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let list = user
            .client
            .get_json(app.url(&format!(
                "/api/workspaces/{}/webhook/deliveries",
                user.workspace_id
            )))
            .await;
        if let Some(d) = list.as_array().and_then(|l| l.first())
            && d["attempts"].as_i64().unwrap_or(0) >= 1
        {
            return d.clone();
        }
        assert!(std::time::Instant::now() < deadline, "{list}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn webhooks_to_internal_addresses_are_refused(backend: Backend) {
    let listener = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&listener)
        .await;
    let port = listener.address().port();
    let app = sandbox_app(backend, &[]).await;
    let owner = app.signup("owner@a.example", "Acme").await;

    for url in [
        format!("http://127.0.0.1:{port}/hook"),
        format!("http://[::1]:{port}/hook"),
        format!("http://[::ffff:127.0.0.1]:{port}/hook"),
        format!("http://2130706433:{port}/hook"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://10.0.0.1/hook".to_owned(),
        "http://[fd00:ec2::254]/latest".to_owned(),
        "http://metadata.google.internal/computeMetadata/v1/".to_owned(),
    ] {
        let error = api_error(
            put_webhook(&app, &owner, &url).await,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
        assert_eq!(error["field"], "url", "{url}: {error}");
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .contains("PLUGBOARD_OUTBOUND_ALLOW"),
            "{error}"
        );
    }
    let res = owner
        .client
        .get(app.url(&format!("/api/workspaces/{}/webhook", owner.workspace_id)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND, "nothing was saved");

    // A name is judged on what it resolves to, when the event is sent:
    // localhost passes the save and is refused at connect time.
    let res = put_webhook(&app, &owner, &format!("http://localhost:{port}/hook")).await;
    assert_eq!(res.status(), StatusCode::OK);
    connect_sandbox(&app, &owner).await;
    let delivery = first_attempt(&app, &owner).await;
    assert_eq!(delivery["event"], "connected", "{delivery}");
    assert_eq!(
        delivery["lastError"], "delivery failed: address not allowed",
        "{delivery}"
    );
    assert!(delivery["deliveredAt"].is_null(), "{delivery}");
    let received = listener.received_requests().await.unwrap_or_default();
    assert!(received.is_empty(), "the listener got {}", received.len());
    app.stop().await;
}

async fn allowlisted_webhooks_deliver_and_failures_stay_generic(backend: Backend) {
    let listener = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&listener)
        .await;
    // A port that refuses connections: bound, then closed.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let app = sandbox_app(backend, &[("PLUGBOARD_OUTBOUND_ALLOW", "127.0.0.1")]).await;

    // Refused: the delivery reads "could not connect", nothing more.
    let first = app.signup("first@a.example", "First").await;
    let res = put_webhook(
        &app,
        &first,
        &format!("http://127.0.0.1:{closed_port}/hook"),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    connect_sandbox(&app, &first).await;
    let delivery = first_attempt(&app, &first).await;
    assert_eq!(
        delivery["lastError"], "delivery failed: could not connect",
        "{delivery}"
    );

    // Allowlisted and listening: delivered. Other private ranges stay shut.
    let second = app.signup("second@a.example", "Second").await;
    let error = api_error(
        put_webhook(&app, &second, "http://10.0.0.1/hook").await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(error["field"], "url");
    let res = put_webhook(&app, &second, &format!("{}/hook", listener.uri())).await;
    assert_eq!(res.status(), StatusCode::OK);
    connect_sandbox(&app, &second).await;
    let delivery = first_attempt(&app, &second).await;
    assert!(delivery["deliveredAt"].is_string(), "{delivery}");
    assert_eq!(listener.received_requests().await.unwrap().len(), 1);
    app.stop().await;
}

/// A provider (wiremock) whose `people` pages by next links: the first page
/// links to another server. The job fails clearly and the other server,
/// which would have received the token, gets nothing.
async fn next_links_to_another_host_are_not_followed(backend: Backend) {
    let provider = MockServer::start().await;
    let elsewhere = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": "AT-next-link", "token_type": "Bearer", "expires_in": 3600
        })))
        .mount(&provider)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/people"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [{"id": "p1", "name": "Ann", "email": "ann@x.example", "title": "CEO", "active": true}],
            "next": format!("{}/api/people?page=2", elsewhere.uri()),
        })))
        .mount(&provider)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": []})))
        .mount(&elsewhere)
        .await;

    let dir = tempfile::tempdir().unwrap();
    let sandbox = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/providers/sandbox/provider.json"
    ))
    .unwrap();
    let mut doc: Value = serde_json::from_str(&sandbox).unwrap();
    let uri = provider.uri();
    doc["key"] = "linkprov".into();
    doc["displayName"] = "Link Provider".into();
    for (field, suffix) in [
        ("authorizationUrl", "/authorize"),
        ("tokenUrl", "/token"),
        ("revokeUrl", "/revoke"),
        ("userinfoUrl", "/userinfo"),
    ] {
        doc["auth"][field] = format!("{uri}{suffix}").into();
    }
    doc["auth"]["clientIdEnv"] = "PLUGBOARD_LINKPROV_CLIENT_ID".into();
    doc["auth"]["clientSecretEnv"] = "PLUGBOARD_LINKPROV_CLIENT_SECRET".into();
    doc["baseUrlVariants"][0]["baseUrl"] = format!("{uri}/api").into();
    doc["requiredHeaders"] = json!([]);
    let people = doc["objects"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|o| o["key"] == "people")
        .unwrap();
    people["pagination"] = json!({"strategy": "next_link", "nextLinkPath": "/next"});
    std::fs::create_dir_all(dir.path().join("linkprov")).unwrap();
    std::fs::write(dir.path().join("linkprov/provider.json"), doc.to_string()).unwrap();
    let app = spawn_app_with(
        backend,
        &[
            ("PLUGBOARD_PROVIDERS_DIR", dir.path().to_str().unwrap()),
            ("PLUGBOARD_LINKPROV_CLIENT_ID", "link-id"),
            ("PLUGBOARD_LINKPROV_CLIENT_SECRET", "link-secret-value"),
            ("PLUGBOARD_OAUTH_KEEPALIVE_INTERVAL_MINUTES", "0"),
        ],
    )
    .await;

    let owner = app.signup("owner@a.example", "Acme").await;
    let res = owner
        .client
        .post_json(
            app.url("/api/integrations/linkprov/connect"),
            &json!({"flow": "client_credentials", "clientId": "link-id", "clientSecret": "link-secret-value"}),
        )
        .await;
    assert!(res.status().is_success(), "{}", res.status());
    // Workers report in before sync requests are taken.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let job = loop {
        let res = owner
            .client
            .post_json(
                app.url("/api/integrations/linkprov/people/sync"),
                &json!({}),
            )
            .await;
        if res.status() == StatusCode::ACCEPTED {
            let jobs: Value = res.json().await.unwrap();
            break jobs[0]["jobId"].as_str().unwrap().to_owned();
        }
        assert!(std::time::Instant::now() < deadline, "{}", res.status());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let body = loop {
        let body = owner
            .client
            .get_json(app.url(&format!("/api/jobs/{job}")))
            .await;
        let status = body["job"]["status"].as_str().unwrap_or_default();
        if ["succeeded", "failed", "cancelled"].contains(&status) {
            break body;
        }
        assert!(std::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(body["job"]["status"], "failed", "{body}");
    let text = body.to_string();
    assert!(
        text.contains("next-page link points to") && text.contains(&elsewhere.uri()),
        "{text}"
    );
    assert!(!text.contains("AT-next-link"), "{text}");
    let pages = provider
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path() == "/api/people")
        .count();
    assert_eq!(pages, 1, "the first page was read");
    assert_eq!(
        elsewhere.received_requests().await.unwrap().len(),
        0,
        "the foreign host got no request"
    );
    app.stop().await;
}
