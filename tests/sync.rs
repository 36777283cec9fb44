//! Syncing records from the sandbox end to end: full read with the
//! parent-only filter and deletion markers, a delta read that fetches only
//! what changed, one job for concurrent requests, retries on 429, a
//! Retry-After past the limit failing clearly, and the 503s.

mod common;

use std::time::Duration;

use common::{
    Backend, ClientExt, SANDBOX_ID, SANDBOX_SECRET, TestApp, TestUser, api_error, sandbox_app,
    set_faults,
};
use plugboard::tenancy::WorkspaceId;
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

on_both_backends!(
    full_then_delta_sync_of_projects,
    concurrent_requests_make_one_job,
    throttling_is_retried_and_long_waits_fail_clearly,
    refused_without_workers_or_when_switched_off,
    daily_metrics_sync_into_the_metrics_store,
);

async fn connect(app: &TestApp) -> (TestUser, Uuid) {
    let owner = app.signup("sync@example.com", "Sync").await;
    let conn: Value = owner
        .client
        .post_json(
            app.url("/api/integrations/sandbox/connect"),
            &json!({"flow": "client_credentials", "clientId": SANDBOX_ID, "clientSecret": SANDBOX_SECRET, "headers": {"X-Sandbox-Company": "acme"}}),
        )
        .await
        .json()
        .await
        .unwrap();
    (owner, conn["id"].as_str().unwrap().parse().unwrap())
}

async fn sync(app: &TestApp, user: &TestUser, object: &str) -> Uuid {
    let res = user
        .client
        .post_json(
            app.url(&format!("/api/integrations/sandbox/{object}/sync")),
            &json!({}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let jobs: Value = res.json().await.unwrap();
    jobs[0]["jobId"].as_str().unwrap().parse().unwrap()
}

/// Waits for a job to finish; returns `{job, log}`.
async fn finished(app: &TestApp, user: &TestUser, id: Uuid) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let body = user
            .client
            .get_json(app.url(&format!("/api/jobs/{id}")))
            .await;
        let status = body["job"]["status"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if ["succeeded", "failed", "cancelled"].contains(&status.as_str()) {
            return body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "job still {status}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn full_then_delta_sync_of_projects(backend: Backend) {
    let app = sandbox_app(backend, &[]).await;
    let (owner, connection_id) = connect(&app).await;
    let ws = WorkspaceId(owner.workspace_id);

    let first = finished(&app, &owner, sync(&app, &owner, "projects").await).await;
    assert_eq!(first["job"]["status"], "succeeded", "{first}");
    let records = app
        .store
        .list_records(ws, connection_id, "projects", 10_000)
        .await
        .unwrap();
    assert_eq!(
        records.len(),
        60,
        "parents only, through the provider's parent-only filter"
    );
    assert!(records.iter().all(|r| !r.is_child));
    let deleted = records.iter().filter(|r| r.deleted_at.is_some()).count();
    assert_eq!(
        deleted, 6,
        "every 10th sandbox project carries the deletion marker"
    );
    let log = first["log"].to_string();
    assert!(log.contains("full read") && log.contains("page 1"), "{log}");

    // A second read is a delta from the high-water mark: only what changed.
    let sandbox = app.state.sandbox.as_ref().unwrap();
    let target = records
        .iter()
        .find(|r| r.deleted_at.is_none())
        .unwrap()
        .external_id
        .clone();
    sandbox.touch_project(&target, "Renamed project");
    let second = finished(&app, &owner, sync(&app, &owner, "projects").await).await;
    assert_eq!(second["job"]["status"], "succeeded", "{second}");
    assert!(second["log"].to_string().contains("delta read"), "{second}");
    let counts = &second["job"]["counts"];
    assert_eq!(counts["updated"], 1, "{counts}");
    assert!(
        counts["fetched"].as_u64().unwrap() < 10,
        "a delta read fetches only recent changes: {counts}"
    );
    let renamed = app
        .store
        .list_records(ws, connection_id, "projects", 10_000)
        .await
        .unwrap();
    assert_eq!(renamed.len(), 60, "no duplicates");
    assert_eq!(
        renamed
            .iter()
            .find(|r| r.external_id == target)
            .unwrap()
            .data
            .0["name"],
        "Renamed project"
    );

    // People page by page number.
    let people = finished(&app, &owner, sync(&app, &owner, "people").await).await;
    assert_eq!(people["job"]["status"], "succeeded", "{people}");
    assert_eq!(
        app.store
            .list_records(ws, connection_id, "people", 10_000)
            .await
            .unwrap()
            .len(),
        40
    );

    // The Data Hub knows when it last synced; jobs are listed per provider.
    let conns = owner
        .client
        .get_json(app.url("/api/integrations/connections"))
        .await;
    assert!(conns[0]["lastSyncAt"].is_string());
    let jobs = owner
        .client
        .get_json(app.url("/api/integrations/sandbox/jobs?object=projects"))
        .await;
    assert_eq!(jobs.as_array().unwrap().len(), 2);
    // The job page shows counts and the log.
    let id = first["job"]["id"].as_str().unwrap();
    let page = owner
        .client
        .get_text(app.url(&format!("/data/jobs/{id}")))
        .await;
    assert!(
        page.contains("data-testid=\"job-status\">succeeded<") && page.contains("page 1"),
        "{page}"
    );
    // Sync now from the Data Hub queues every record object.
    let token = app.csrf(&owner.client, "/data").await;
    let res = owner
        .client
        .post(app.url("/data/sandbox/sync"))
        .form(&[("_csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let hub = owner.client.get_text(app.url("/data")).await;
    assert!(hub.contains("sync job(s) queued"), "{hub}");
    // Another workspace can't see a job.
    let other = app.signup("other@example.com", "Other").await;
    let id = first["job"]["id"].as_str().unwrap();
    api_error(
        other
            .client
            .get(app.url(&format!("/api/jobs/{id}")))
            .send()
            .await
            .unwrap(),
        StatusCode::NOT_FOUND,
    )
    .await;
    app.stop().await;
}

async fn concurrent_requests_make_one_job(backend: Backend) {
    // Slow pages keep the first job running while the second request comes in.
    let app = sandbox_app(backend, &[]).await;
    let (owner, _) = connect(&app).await;
    set_faults(&app, json!({"slow_ms": 300})).await;
    let empty = json!({});
    let url = app.url("/api/integrations/sandbox/projects/sync");
    let (a, b) = tokio::join!(
        owner.client.post_json(url.clone(), &empty),
        owner.client.post_json(url.clone(), &empty),
    );
    let a: Value = a.json().await.unwrap();
    let b: Value = b.json().await.unwrap();
    assert_eq!(a[0]["jobId"], b[0]["jobId"], "one job: {a} {b}");
    assert!(a[0]["existing"] == true || b[0]["existing"] == true);
    let id: Uuid = a[0]["jobId"].as_str().unwrap().parse().unwrap();
    let done = finished(&app, &owner, id).await;
    assert_eq!(done["job"]["status"], "succeeded");
    app.stop().await;
}

async fn throttling_is_retried_and_long_waits_fail_clearly(backend: Backend) {
    let app = sandbox_app(backend, &[("PLUGBOARD_SYNC_MAX_RETRY_AFTER_SECS", "5")]).await;
    let (owner, _) = connect(&app).await;
    set_faults(&app, json!({"rate_limit_next": 1, "retry_after_secs": 1})).await;
    let ok = finished(&app, &owner, sync(&app, &owner, "people").await).await;
    assert_eq!(ok["job"]["status"], "succeeded", "{ok}");
    let log = ok["log"].to_string();
    assert!(log.contains("retry 1") && log.contains("HTTP 429"), "{log}");

    set_faults(&app, json!({"rate_limit_next": 1, "retry_after_secs": 600})).await;
    let failed = finished(&app, &owner, sync(&app, &owner, "people").await).await;
    assert_eq!(failed["job"]["status"], "failed");
    assert!(
        failed["job"]["error"]
            .as_str()
            .unwrap()
            .contains("rate limited for 600 s"),
        "{failed}"
    );
    // Job logs never carry tokens or secrets.
    let everything = format!("{ok}{failed}");
    assert!(
        !everything.contains(SANDBOX_SECRET) && !everything.to_lowercase().contains("bearer"),
        "{everything}"
    );
    // A failed job can be retried.
    let id = failed["job"]["id"].as_str().unwrap();
    let res = owner
        .client
        .post_json(app.url(&format!("/api/jobs/{id}/retry")), &json!({}))
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let retried: Value = res.json().await.unwrap();
    let again = finished(
        &app,
        &owner,
        retried["jobId"].as_str().unwrap().parse().unwrap(),
    )
    .await;
    assert_eq!(again["job"]["status"], "succeeded");
    app.stop().await;
}

async fn refused_without_workers_or_when_switched_off(backend: Backend) {
    let app = sandbox_app(backend, &[("PLUGBOARD_SYNC_WORKERS", "0")]).await;
    let (owner, _) = connect(&app).await;
    let res = owner
        .client
        .post_json(
            app.url("/api/integrations/sandbox/projects/sync"),
            &json!({}),
        )
        .await;
    let err = api_error(res, StatusCode::SERVICE_UNAVAILABLE).await;
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("background worker unavailable")
    );
    let health = owner
        .client
        .get_json(app.url("/api/integrations/health"))
        .await;
    assert_eq!(health["liveWorkers"], 0);
    app.stop().await;

    let off = sandbox_app(backend, &[("PLUGBOARD_INGEST_ENABLED", "false")]).await;
    let (owner, _) = connect(&off).await;
    let res = owner
        .client
        .post(off.url("/api/data/sync"))
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    api_error(res, StatusCode::SERVICE_UNAVAILABLE).await;
    off.stop().await;
}

async fn daily_metrics_sync_into_the_metrics_store(backend: Backend) {
    let app = sandbox_app(backend, &[]).await;
    let (owner, _) = connect(&app).await;
    let ws = WorkspaceId(owner.workspace_id);
    // Metric objects read each selected account; none selected fails clearly.
    let none = finished(&app, &owner, sync(&app, &owner, "daily_metrics").await).await;
    assert_eq!(none["job"]["status"], "failed");
    assert!(
        none["job"]["error"]
            .as_str()
            .unwrap()
            .contains("no account is selected"),
        "{none}"
    );
    let res = owner
        .client
        .post_json(
            app.url("/api/data/select-account"),
            &json!({"provider": "sandbox", "accountIds": ["prop-1", "prop-2"]}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);

    let first = finished(&app, &owner, sync(&app, &owner, "daily_metrics").await).await;
    assert_eq!(first["job"]["status"], "succeeded", "{first}");
    let rows = app.store.count_metrics(ws, "sandbox").await.unwrap();
    assert_eq!(rows, 2 * 90, "90 days for each of two properties: {first}");
    assert_eq!(first["job"]["counts"]["created"], 180);
    let today = time::OffsetDateTime::now_utc().date();
    let stored = app
        .store
        .list_metrics(ws, "sandbox", today - time::Duration::days(1), today, 10)
        .await
        .unwrap();
    assert!(
        stored
            .iter()
            .all(|r| r.metrics.0["sessions"].is_number() && r.connection_id.is_some())
    );

    // Again: from the last day read minus the 3 days providers revise; the
    // re-read days are rewritten only if their numbers changed (the
    // sandbox's didn't), nothing is duplicated.
    let second = finished(&app, &owner, sync(&app, &owner, "daily_metrics").await).await;
    assert_eq!(second["job"]["status"], "succeeded", "{second}");
    let from = today - time::Duration::days(3);
    assert!(
        second["log"]
            .to_string()
            .contains(&format!("reading days from {from}")),
        "{second}"
    );
    assert_eq!(second["job"]["counts"]["fetched"], 2 * 4, "{second}");
    assert_eq!(second["job"]["counts"]["unchanged"], 2 * 4, "{second}");
    assert_eq!(second["job"]["counts"]["created"], 0);
    assert_eq!(app.store.count_metrics(ws, "sandbox").await.unwrap(), 180);
    app.stop().await;
}
