//! Service keys and the internal API for automations: every failure status,
//! scopes, cross-workspace 404s, token issuance with refresh, metric batches
//! (validation, nothing written on error, idempotent re-send), run reports.

mod common;

use common::{
    Backend, ClientExt, TestApp, TestUser, api_error, authorize, client, connections, sandbox_app,
    sandbox_stats,
};
use plugboard::jobs::JobStatus;
use plugboard::jobs::store::NewJob;
use plugboard::tenancy::WorkspaceId;
use reqwest::StatusCode;
use reqwest::header::RETRY_AFTER;
use serde_json::{Value, json};
use uuid::Uuid;

on_both_backends!(
    keys_are_managed_by_admins_and_stored_hashed,
    failure_statuses,
    connection_tokens_refresh_and_audit,
    metrics_write_validates_all_or_nothing,
    metrics_write_is_idempotent_and_replaces_days,
    runs_callback_and_context,
    deployment_wide_key,
    per_key_rate_limit,
);

const AGENT_KEY: &str = "agent-key-0123456789-abcdefghijklmnopqrstuvwxyz";

async fn app_with_agent(backend: Backend, extra: &[(&'static str, &str)]) -> TestApp {
    let mut env = vec![("AGENT_SERVICE_KEY", AGENT_KEY)];
    env.extend_from_slice(extra);
    sandbox_app(backend, &env).await
}

/// Creates a key through the admin API; returns (id, full key).
async fn make_key(app: &TestApp, admin: &TestUser, scopes: &[&str]) -> (String, String) {
    let res = admin
        .client
        .post_json(
            app.url(&format!(
                "/api/workspaces/{}/service-keys",
                admin.workspace_id
            )),
            &json!({"name": "n8n", "scopes": scopes}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(
        res.headers()["cache-control"],
        "no-store",
        "a new key: no cache"
    );
    let body: Value = res.json().await.unwrap();
    (
        body["id"].as_str().unwrap().to_owned(),
        body["key"].as_str().unwrap().to_owned(),
    )
}

fn with_key(key: &str, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    req.bearer_auth(key)
}

async fn keys_are_managed_by_admins_and_stored_hashed(backend: Backend) {
    let app = app_with_agent(backend, &[]).await;
    let admin = app.signup("admin@a.example", "Acme").await;
    let (id, key) = make_key(&app, &admin, &["tokens:read", "metrics:write"]).await;
    assert!(key.starts_with("pb_sk_") && key.len() > 50);
    assert!(
        !app.db.dump_text().await.contains(&key),
        "the key is stored only hashed"
    );
    let list = admin
        .client
        .get_json(app.url(&format!(
            "/api/workspaces/{}/service-keys",
            admin.workspace_id
        )))
        .await;
    let listed = list.to_string();
    assert!(!listed.contains(&key), "never shown again");
    assert!(listed.contains(&key[..14]), "the prefix is visible");
    assert_eq!(list[0]["scopes"], json!(["tokens:read", "metrics:write"]));

    // Bad scopes and names are refused with the field.
    let res = admin
        .client
        .post_json(
            app.url(&format!(
                "/api/workspaces/{}/service-keys",
                admin.workspace_id
            )),
            &json!({"name": "x", "scopes": ["tokens:read", "root"]}),
        )
        .await;
    let err = api_error(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(err["field"], "scopes[1]");

    // Members don't manage keys.
    let member = app.signup("member@a.example", "Own").await;
    app.join(
        &admin.client,
        admin.workspace_id,
        &member.client,
        "member@a.example",
        "member",
    )
    .await;
    let res = member
        .client
        .post_json(
            app.url(&format!(
                "/api/workspaces/{}/service-keys",
                admin.workspace_id
            )),
            &json!({"name": "x", "scopes": ["tokens:read"]}),
        )
        .await;
    api_error(res, StatusCode::FORBIDDEN).await;
    // Another workspace doesn't even see them.
    let res = member
        .client
        .delete_json(app.url(&format!(
            "/api/workspaces/{}/service-keys/{id}",
            member.workspace_id
        )))
        .await;
    api_error(res, StatusCode::NOT_FOUND).await;

    // The settings page creates one too and shows it once, in the answer
    // to the form (never through the session).
    let token = app.csrf(&admin.client, "/settings/keys").await;
    let res = admin
        .client
        .post(app.url("/settings/keys"))
        .form(&[
            ("_csrf", token.as_str()),
            ("name", "from page"),
            ("scope", "runs:write"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let page = res.text().await.unwrap();
    assert!(
        page.contains("data-testid=\"new-key\"")
            && page.contains("value=\"pb_sk_")
            && page.contains("shown again"),
        "the new key is shown once: {page}"
    );
    let again = admin.client.get_text(app.url("/settings/keys")).await;
    assert!(!again.contains("value=\"pb_sk_"), "and only once");

    let res = admin
        .client
        .delete_json(app.url(&format!(
            "/api/workspaces/{}/service-keys/{id}",
            admin.workspace_id
        )))
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let audit = admin
        .client
        .get_json(app.url(&format!("/api/workspaces/{}/audit", admin.workspace_id)))
        .await;
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(actions.contains(&"service_key.create") && actions.contains(&"service_key.revoke"));
    assert!(!audit.to_string().contains(&key));
    app.stop().await;
}

async fn failure_statuses(backend: Backend) {
    let app = app_with_agent(backend, &[]).await;
    let admin = app.signup("admin@a.example", "Acme").await;
    authorize(&app, &admin.client, "workspace", "approve").await;
    let conn = connections(&admin.client, &app).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let url = app.url(&format!(
        "/api/internal/connection-tokens?connectionId={conn}"
    ));
    let (id, key) = make_key(&app, &admin, &["metrics:write"]).await;

    // Missing, malformed, unknown: 401 and nothing more.
    let anonymous = client().get(&url).send().await.unwrap();
    let err = api_error(anonymous, StatusCode::UNAUTHORIZED).await;
    assert_eq!(err["message"], "authentication required");
    for bad in [
        "nope",
        "pb_sk_",
        "pb_sk_abcdefgh_0000000000000000000000000000000000000000000",
    ] {
        let res = with_key(bad, client().get(&url)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{bad}");
    }
    // A real prefix with a wrong secret.
    let forged = format!("{}_{}", &key[..14], "A".repeat(43));
    assert_eq!(
        with_key(&forged, client().get(&url))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    // Scope missing: 403.
    let res = with_key(&key, client().get(&url)).send().await.unwrap();
    api_error(res, StatusCode::FORBIDDEN).await;
    // Revoked: 401.
    admin
        .client
        .delete_json(app.url(&format!(
            "/api/workspaces/{}/service-keys/{id}",
            admin.workspace_id
        )))
        .await;
    assert_eq!(
        with_key(&key, client().get(&url))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );

    // Cross-workspace: 404 for connections, jobs and workspaces.
    let other = app.signup("other@b.example", "Other").await;
    let (_, other_key) = make_key(
        &app,
        &other,
        &["tokens:read", "metrics:write", "runs:write", "context:read"],
    )
    .await;
    let res = with_key(&other_key, client().get(&url))
        .send()
        .await
        .unwrap();
    api_error(res, StatusCode::NOT_FOUND).await;
    let ghost = with_key(
        &other_key,
        client().get(app.url(&format!(
            "/api/internal/connection-tokens?connectionId={}",
            Uuid::now_v7()
        ))),
    )
    .send()
    .await
    .unwrap();
    api_error(ghost, StatusCode::NOT_FOUND).await;
    let res = with_key(&other_key, client().post(app.url("/api/internal/metrics/write")))
        .json(&json!({"tenant": {"workspaceId": admin.workspace_id}, "provider": "sandbox", "metrics": [{"date": "2026-11-20", "metricsJson": {"a": 1}}]}))
        .send()
        .await
        .unwrap();
    api_error(res, StatusCode::NOT_FOUND).await;

    // Wrong content type 415, malformed JSON 400 with position, too large 413.
    let res = with_key(
        &other_key,
        client().post(app.url("/api/internal/metrics/write")),
    )
    .header("content-type", "text/plain")
    .body("{}")
    .send()
    .await
    .unwrap();
    api_error(res, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    let res = with_key(
        &other_key,
        client().post(app.url("/api/internal/metrics/write")),
    )
    .header("content-type", "application/json")
    .body("{\"tenant\": {\"workspaceId\": }")
    .send()
    .await
    .unwrap();
    let err = api_error(res, StatusCode::BAD_REQUEST).await;
    assert!(
        err["message"].as_str().unwrap().contains("line 1 column"),
        "{err}"
    );
    app.stop().await;

    let small = app_with_agent(backend, &[("PLUGBOARD_INTERNAL_BODY_LIMIT_BYTES", "2048")]).await;
    let admin = small.signup("admin@a.example", "Acme").await;
    let (_, key) = make_key(&small, &admin, &["metrics:write"]).await;
    let rows: Vec<Value> = (0..100).map(|i| json!({"date": "2026-11-20", "accountId": format!("a{i}"), "metricsJson": {"sessions": i}})).collect();
    let res = with_key(&key, client().post(small.url("/api/internal/metrics/write")))
        .json(&json!({"tenant": {"workspaceId": admin.workspace_id}, "provider": "sandbox", "metrics": rows}))
        .send()
        .await
        .unwrap();
    api_error(res, StatusCode::PAYLOAD_TOO_LARGE).await;
    assert_eq!(small.db.count("SELECT COUNT(*) FROM metric_rows").await, 0);
    small.stop().await;
}

async fn connection_tokens_refresh_and_audit(backend: Backend) {
    let app = app_with_agent(backend, &[]).await;
    let admin = app.signup("admin@a.example", "Acme").await;
    authorize(&app, &admin.client, "workspace", "approve").await;
    admin
        .client
        .post_json(
            app.url("/api/data/select-account"),
            &json!({"provider": "sandbox", "accountIds": ["prop-2"]}),
        )
        .await;
    let conn = connections(&admin.client, &app).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let url = app.url(&format!(
        "/api/internal/connection-tokens?connectionId={conn}"
    ));
    let (_, reader) = make_key(&app, &admin, &["tokens:read"]).await;
    let (_, refresher) = make_key(&app, &admin, &["tokens:read", "tokens:read_refresh"]).await;

    let res = with_key(&reader, client().get(&url)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers()["cache-control"],
        "no-store",
        "tokens: no cache"
    );
    let tokens: Value = res.json().await.unwrap();
    assert!(tokens["access_token"].as_str().unwrap().len() > 20);
    assert_eq!(tokens["token_type"], "Bearer");
    assert!(tokens["expires_at"].is_string());
    assert_eq!(tokens["selectedAccountIds"], json!(["prop-2"]));
    assert_eq!(tokens["headers"]["X-Sandbox-Company"], "acme");
    assert!(
        tokens.get("refresh_token").is_none(),
        "refresh token needs tokens:read_refresh"
    );
    // The token works at the provider.
    let props = client()
        .get(app.url("/sandbox/api/properties"))
        .bearer_auth(tokens["access_token"].as_str().unwrap())
        .header("X-Sandbox-Company", "acme")
        .send()
        .await
        .unwrap();
    assert_eq!(props.status(), StatusCode::OK);

    let with_refresh: Value = with_key(&refresher, client().get(&url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(with_refresh["refresh_token"].is_string());

    // Expiring: refreshed first, through the single-flight path.
    app.db
        .execute("UPDATE connections SET access_expires_at = '2000-01-01T00:00:00Z'")
        .await;
    let fresh: Value = with_key(&reader, client().get(&url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_ne!(fresh["access_token"], tokens["access_token"]);
    assert_eq!(sandbox_stats(&app).await["token_refresh"], 1);

    // Disabled and needs-reauth answer 409 with the status.
    admin
        .client
        .post_json(
            app.url(&format!("/api/integrations/connections/{conn}/disable")),
            &json!({}),
        )
        .await;
    let res = with_key(&reader, client().get(&url)).send().await.unwrap();
    let err = api_error(res, StatusCode::CONFLICT).await;
    assert!(err["message"].as_str().unwrap().contains("DISABLED"));
    app.db
        .execute("UPDATE connections SET status = 'NEEDS_REAUTH'")
        .await;
    let res = with_key(&reader, client().get(&url)).send().await.unwrap();
    let err = api_error(res, StatusCode::CONFLICT).await;
    assert!(err["message"].as_str().unwrap().contains("NEEDS_REAUTH"));

    let audit = admin
        .client
        .get_json(app.url(&format!("/api/workspaces/{}/audit", admin.workspace_id)))
        .await;
    let reads = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "connection.token_read")
        .count();
    assert_eq!(reads, 3, "every successful token call is audited");
    assert!(
        !audit
            .to_string()
            .contains(tokens["access_token"].as_str().unwrap())
    );
    app.stop().await;
}

fn write_body(ws: Uuid, rows: Value) -> Value {
    json!({"tenant": {"workspaceId": ws}, "provider": "sandbox", "metrics": rows})
}

async fn post_metrics(app: &TestApp, key: &str, body: &Value) -> reqwest::Response {
    with_key(key, client().post(app.url("/api/internal/metrics/write")))
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn metrics_write_validates_all_or_nothing(backend: Backend) {
    let app = app_with_agent(backend, &[]).await;
    let admin = app.signup("admin@a.example", "Acme").await;
    let (_, key) = make_key(&app, &admin, &["metrics:write"]).await;
    let ws = admin.workspace_id;
    let good =
        json!({"date": "2026-11-20", "accountId": "prop-1", "metricsJson": {"sessions": 10}});
    let cases = [
        (
            json!({"date": "2026-02-30", "metricsJson": {"sessions": 1}}),
            "metrics[2].date",
        ),
        (
            json!({"date": "2026-11-20", "metricsJson": {"sessions": "ten"}}),
            "metrics[2].metricsJson.sessions",
        ),
        (
            json!({"date": "2026-11-20", "metricsJson": [1, 2]}),
            "metrics[2].metricsJson",
        ),
        (
            json!({"date": "2026-11-20", "metricsJson": {"a": 1}, "dimensionsJson": [1]}),
            "metrics[2].dimensionsJson",
        ),
    ];
    for (bad, field) in cases {
        let res = post_metrics(
            &app,
            &key,
            &write_body(
                ws,
                json!([good.clone(), {"date": "2026-11-21", "metricsJson": {"a": 1}}, bad]),
            ),
        )
        .await;
        let err = api_error(res, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(err["field"], field);
    }
    // A missing field is named too.
    let res = post_metrics(&app, &key, &write_body(ws, json!([{"date": "2026-11-20"}]))).await;
    let err = api_error(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(
        err["field"].as_str().unwrap().starts_with("metrics[0]"),
        "{err}"
    );
    // Duplicate keys within a batch.
    let res = post_metrics(
        &app,
        &key,
        &write_body(ws, json!([good.clone(), good.clone()])),
    )
    .await;
    let err = api_error(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(err["field"], "metrics[1]");
    // Unknown provider, foreign connection.
    let mut body = write_body(ws, json!([good.clone()]));
    body["provider"] = "nope".into();
    let err = api_error(
        post_metrics(&app, &key, &body).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(err["field"], "provider");
    let mut body = write_body(ws, json!([good.clone()]));
    body["connectionId"] = json!(Uuid::now_v7());
    let err = api_error(
        post_metrics(&app, &key, &body).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(err["field"], "connectionId");
    assert_eq!(
        app.db.count("SELECT COUNT(*) FROM metric_rows").await,
        0,
        "nothing written on any error"
    );

    // Over the row limit.
    let small = app_with_agent(backend, &[("PLUGBOARD_INTERNAL_MAX_METRIC_ROWS", "2")]).await;
    let admin2 = small.signup("admin@a.example", "Acme").await;
    let (_, key2) = make_key(&small, &admin2, &["metrics:write"]).await;
    let rows: Vec<Value> = (1..=3)
        .map(|d| json!({"date": format!("2026-11-0{d}"), "metricsJson": {"a": d}}))
        .collect();
    let err = api_error(
        post_metrics(&small, &key2, &write_body(admin2.workspace_id, json!(rows))).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(err["field"], "metrics");
    small.stop().await;
    app.stop().await;
}

async fn metrics_write_is_idempotent_and_replaces_days(backend: Backend) {
    let app = app_with_agent(backend, &[]).await;
    let admin = app.signup("admin@a.example", "Acme").await;
    authorize(&app, &admin.client, "workspace", "approve").await;
    let conn = connections(&admin.client, &app).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, key) = make_key(&app, &admin, &["metrics:write"]).await;
    let ws = admin.workspace_id;
    let rows: Vec<Value> = (1..=9)
        .flat_map(|d| {
            ["prop-1", "prop-2"].map(|p| json!({"date": format!("2026-11-0{d}"), "accountId": p, "metricsJson": {"sessions": d * 10, "revenue": 12.5}, "dimensionsJson": {"channel": "organic"}}))
        })
        .collect();
    let mut body = write_body(ws, json!(rows));
    body["connectionId"] = json!(conn);
    let counts: Value = post_metrics(&app, &key, &body).await.json().await.unwrap();
    assert_eq!(
        counts,
        json!({"written": 18, "inserted": 18, "updated": 0, "unchanged": 0, "deleted": 0})
    );
    // Re-sending the same batch is harmless.
    let counts: Value = post_metrics(&app, &key, &body).await.json().await.unwrap();
    assert_eq!(
        counts,
        json!({"written": 18, "inserted": 0, "updated": 0, "unchanged": 18, "deleted": 0})
    );
    assert_eq!(app.db.count("SELECT COUNT(*) FROM metric_rows").await, 18);
    // A revised day replaces its numbers; the same dimensions in another
    // order are the same row; other dimensions are another row (rows are
    // keyed by connection too: the revision names the same one).
    let mut revised = write_body(
        ws,
        json!([
            {"date": "2026-11-01", "accountId": "prop-1", "metricsJson": {"sessions": 999, "revenue": 1}, "dimensionsJson": {"channel": "organic"}},
            {"date": "2026-11-01", "accountId": "prop-1", "metricsJson": {"sessions": 5}, "dimensionsJson": {"channel": "paid"}},
        ]),
    );
    revised["connectionId"] = json!(conn);
    let counts: Value = post_metrics(&app, &key, &revised)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        counts,
        json!({"written": 2, "inserted": 1, "updated": 1, "unchanged": 0, "deleted": 0})
    );
    let date = time::macros::date!(2026 - 11 - 01);
    let stored = app
        .store
        .list_metrics(WorkspaceId(ws), "sandbox", date, date, 10)
        .await
        .unwrap();
    assert_eq!(stored.len(), 3);
    let organic = stored
        .iter()
        .find(|r| r.account_id == "prop-1" && r.dimensions.0["channel"] == "organic")
        .unwrap();
    assert_eq!(
        organic.metrics.0,
        json!({"revenue": 1, "sessions": 999}),
        "no stale values survive"
    );
    app.stop().await;
}

async fn runs_callback_and_context(backend: Backend) {
    let app = app_with_agent(backend, &[]).await;
    let admin = app.signup("admin@a.example", "Acme").await;
    authorize(&app, &admin.client, "workspace", "approve").await;
    admin
        .client
        .post_json(
            app.url("/api/data/select-account"),
            &json!({"provider": "sandbox", "accountIds": ["prop-1"]}),
        )
        .await;
    let conn: Uuid = connections(&admin.client, &app).await[0]["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let make_job = |kind: &'static str, object: &'static str| {
        let store = app.store.clone();
        let ws = WorkspaceId(admin.workspace_id);
        async move {
            let id = Uuid::now_v7();
            store
                .create_job(&NewJob {
                    id,
                    workspace_id: ws,
                    connection_id: Some(conn),
                    provider: "sandbox",
                    object: Some(object),
                    kind,
                    status: JobStatus::WaitingExternal,
                    idempotency_key: None,
                    metadata: json!({"rule": {"interval": 60}}),
                    requested_by: None,
                    at: plugboard::storage::now(),
                })
                .await
                .unwrap();
            id
        }
    };
    let job = make_job("external", "daily_metrics").await;
    let (_, runner) = make_key(&app, &admin, &["runs:write", "context:read"]).await;
    let (_, reader_only) = make_key(&app, &admin, &["tokens:read"]).await;

    let context_url = app.url(&format!("/api/internal/run-context?jobId={job}"));
    api_error(
        with_key(&reader_only, client().get(&context_url))
            .send()
            .await
            .unwrap(),
        StatusCode::FORBIDDEN,
    )
    .await;
    let ctx: Value = with_key(&runner, client().get(&context_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ctx["tenant"]["workspaceId"], admin.workspace_id.to_string());
    assert_eq!(ctx["provider"], "sandbox");
    assert_eq!(ctx["object"], "daily_metrics");
    assert_eq!(ctx["connectionId"], conn.to_string());
    assert_eq!(ctx["selectedAccountIds"], json!(["prop-1"]));
    assert_eq!(ctx["rule"]["interval"], 60);
    assert!(
        !ctx.to_string().to_lowercase().contains("token"),
        "no tokens in the context: {ctx}"
    );

    let callback = |body: Value| {
        with_key(
            &runner,
            client().post(app.url("/api/internal/runs/callback")),
        )
        .json(&body)
        .send()
    };
    let res = callback(json!({"jobId": job, "status": "exploded"}))
        .await
        .unwrap();
    assert_eq!(
        api_error(res, StatusCode::UNPROCESSABLE_ENTITY).await["field"],
        "status"
    );
    let res = callback(json!({"jobId": job, "status": "running"}))
        .await
        .unwrap();
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "running");
    let res = callback(json!({"jobId": job, "status": "succeeded", "summary": {"rows": 90}}))
        .await
        .unwrap();
    let done: Value = res.json().await.unwrap();
    assert_eq!(done["status"], "succeeded");
    assert_eq!(done["summary"]["rows"], 90);
    assert!(done["finishedAt"].is_string());
    // A finished job can't be reopened.
    let res = callback(json!({"jobId": job, "status": "failed", "error": "late"}))
        .await
        .unwrap();
    api_error(res, StatusCode::CONFLICT).await;
    let res = callback(json!({"jobId": job, "status": "running"}))
        .await
        .unwrap();
    api_error(res, StatusCode::CONFLICT).await;
    // Jobs run by Plugboard's workers aren't the automation's to report.
    let internal_job = make_job("sync", "projects").await;
    let res = callback(json!({"jobId": internal_job, "status": "succeeded"}))
        .await
        .unwrap();
    api_error(res, StatusCode::CONFLICT).await;
    // Another workspace's key: not found.
    let other = app.signup("other@b.example", "Other").await;
    let (_, foreign) = make_key(&app, &other, &["runs:write", "context:read"]).await;
    api_error(
        with_key(&foreign, client().get(&context_url))
            .send()
            .await
            .unwrap(),
        StatusCode::NOT_FOUND,
    )
    .await;
    let res = with_key(
        &foreign,
        client().post(app.url("/api/internal/runs/callback")),
    )
    .json(&json!({"jobId": job, "status": "failed"}))
    .send()
    .await
    .unwrap();
    api_error(res, StatusCode::NOT_FOUND).await;
    app.stop().await;
}

async fn deployment_wide_key(backend: Backend) {
    let app = app_with_agent(backend, &[]).await;
    let a = app.signup("a@a.example", "A").await;
    let b = app.signup("b@b.example", "B").await;
    authorize(&app, &a.client, "workspace", "approve").await;
    let conn = connections(&a.client, &app).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = client()
        .get(app.url(&format!(
            "/api/internal/connection-tokens?connectionId={conn}"
        )))
        .header("X-AGENT-SERVICE-KEY", AGENT_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    for ws in [a.workspace_id, b.workspace_id] {
        let res = client()
            .post(app.url("/api/internal/metrics/write"))
            .header("X-AGENT-SERVICE-KEY", AGENT_KEY)
            .json(&write_body(
                ws,
                json!([{"date": "2026-11-20", "metricsJson": {"a": 1}}]),
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
    let res = client()
        .post(app.url("/api/internal/metrics/write"))
        .header("X-AGENT-SERVICE-KEY", AGENT_KEY)
        .json(&write_body(
            Uuid::now_v7(),
            json!([{"date": "2026-11-20", "metricsJson": {"a": 1}}]),
        ))
        .send()
        .await
        .unwrap();
    api_error(res, StatusCode::NOT_FOUND).await;
    let res = client()
        .get(app.url(&format!(
            "/api/internal/connection-tokens?connectionId={conn}"
        )))
        .header(
            "X-AGENT-SERVICE-KEY",
            "agent-key-WRONG-0123456789-abcdefghijklmnopqrstuvwxyz",
        )
        .send()
        .await
        .unwrap();
    api_error(res, StatusCode::UNAUTHORIZED).await;
    app.stop().await;

    // Off when unset.
    let off = sandbox_app(backend, &[]).await;
    let res = client()
        .get(off.url("/api/internal/run-context?jobId=00000000-0000-0000-0000-000000000000"))
        .header("X-AGENT-SERVICE-KEY", AGENT_KEY)
        .send()
        .await
        .unwrap();
    api_error(res, StatusCode::UNAUTHORIZED).await;
    off.stop().await;
}

async fn per_key_rate_limit(backend: Backend) {
    let app = app_with_agent(backend, &[("PLUGBOARD_INTERNAL_REQUESTS_PER_MINUTE", "3")]).await;
    let admin = app.signup("admin@a.example", "Acme").await;
    let (_, key) = make_key(&app, &admin, &["context:read"]).await;
    let (_, other_key) = make_key(&app, &admin, &["context:read"]).await;
    let url = app.url(&format!(
        "/api/internal/run-context?jobId={}",
        Uuid::now_v7()
    ));
    for _ in 0..3 {
        assert_eq!(
            with_key(&key, client().get(&url))
                .send()
                .await
                .unwrap()
                .status(),
            StatusCode::NOT_FOUND
        );
    }
    let res = with_key(&key, client().get(&url)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(
        res.headers()[RETRY_AFTER]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    // Budgets are per key.
    assert_eq!(
        with_key(&other_key, client().get(&url))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
    app.stop().await;
}
