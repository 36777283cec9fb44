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
    jobs_of_one_connection_run_within_its_concurrency_limit,
    quota_headers_slow_a_job_down_before_429,
    hard_time_limit_fails_the_job_and_calls_carry_request_ids,
    dry_run_counts_without_writing_and_full_behaviour_ignores_the_mark,
    provider_errors_reach_the_log_redacted,
    a_future_high_water_mark_reads_nothing,
    a_killed_worker_process_is_resumed_by_another,
    handed_off_providers_are_synced_by_the_automation,
    data_hub_cards_show_jobs_in_flight,
    hostile_account_ids_stay_one_path_segment,
    nul_in_provider_accounts_is_stored_escaped,
    a_panicking_job_fails_with_its_message_and_stops_its_heartbeat,
    a_page_over_the_size_limit_fails_the_job_clearly,
    a_page_slower_than_the_page_timeout_fails_the_job,
    a_job_claimed_too_often_gives_up_and_can_be_retried,
    a_cancelled_full_read_marks_nothing_deleted,
    a_record_twice_in_one_page_keeps_the_last,
);

async fn connect(app: &TestApp) -> (TestUser, Uuid) {
    connect_as(app, "sync@example.com").await
}

/// A new user and workspace with a sandbox connection (company "acme").
async fn connect_as(app: &TestApp, email: &str) -> (TestUser, Uuid) {
    let owner = app.signup(email, email).await;
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
    let token = app.csrf(&owner.client, "/data/connections").await;
    let res = owner
        .client
        .post(app.url("/data/sandbox/sync"))
        .form(&[("_csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let hub = owner.client.get_text(app.url("/data/connections")).await;
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
    select_properties(&app, &owner).await;

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

async fn select_properties(app: &TestApp, owner: &TestUser) {
    let res = owner
        .client
        .post_json(
            app.url("/api/data/select-account"),
            &json!({"provider": "sandbox", "accountIds": ["prop-1", "prop-2"]}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
}

async fn jobs_of_one_connection_run_within_its_concurrency_limit(backend: Backend) {
    let app = sandbox_app(
        backend,
        &[
            ("PLUGBOARD_SYNC_WORKERS", "3"),
            ("PLUGBOARD_RATE_LIMITS", "sandbox:concurrency=1"),
        ],
    )
    .await;
    let (owner, _) = connect(&app).await;
    select_properties(&app, &owner).await;
    // Slow pages keep jobs running long enough to overlap if they could.
    set_faults(&app, json!({"slow_ms": 150})).await;
    let res = owner
        .client
        .post_json(app.url("/api/data/sync"), &json!({"provider": "sandbox"}))
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let jobs: Value = res.json().await.unwrap();
    let ids: Vec<Uuid> = jobs
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["jobId"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(ids.len(), 3, "{jobs}");
    let mut most_running = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let list = owner
            .client
            .get_json(app.url("/api/integrations/sandbox/jobs"))
            .await;
        let statuses: Vec<String> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["status"].as_str().unwrap().to_owned())
            .collect();
        most_running = most_running.max(statuses.iter().filter(|s| *s == "running").count());
        if statuses.iter().all(|s| s == "succeeded" || s == "failed") {
            assert!(statuses.iter().all(|s| s == "succeeded"), "{list}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{list}");
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    assert_eq!(
        most_running, 1,
        "three idle workers, one connection limited to one running job"
    );
    app.stop().await;
}

async fn quota_headers_slow_a_job_down_before_429(backend: Backend) {
    let app = sandbox_app(backend, &[]).await;
    let (owner, _) = connect(&app).await;
    select_properties(&app, &owner).await;
    // The first answer says the quota is spent until 2 s from now.
    set_faults(
        &app,
        json!({"quota_exhausted_next": 1, "quota_reset_secs": 2}),
    )
    .await;
    let requests_before = common::sandbox_stats(&app).await["api_requests"]
        .as_u64()
        .unwrap();
    let started = std::time::Instant::now();
    let done = finished(&app, &owner, sync(&app, &owner, "daily_metrics").await).await;
    let elapsed = started.elapsed();
    assert_eq!(done["job"]["status"], "succeeded", "{done}");
    assert!(
        elapsed >= Duration::from_secs(2),
        "the job waited for the quota reset: {elapsed:?}"
    );
    assert!(
        done["log"]
            .to_string()
            .contains("quota is running low; pausing 2.0 s"),
        "{done}"
    );
    let stats = common::sandbox_stats(&app).await;
    assert_eq!(
        stats["api_requests"].as_u64().unwrap() - requests_before,
        6,
        "three pages for each of two properties, none refused: {stats}"
    );
    app.stop().await;
}

async fn hard_time_limit_fails_the_job_and_calls_carry_request_ids(backend: Backend) {
    let app = sandbox_app(
        backend,
        &[
            ("PLUGBOARD_SYNC_SOFT_LIMIT_SECS", "1"),
            ("PLUGBOARD_SYNC_HARD_LIMIT_SECS", "2"),
            ("PLUGBOARD_SYNC_LEASE_SECS", "2"),
        ],
    )
    .await;
    let (owner, _) = connect(&app).await;
    let id = sync(&app, &owner, "people").await;
    let ok = finished(&app, &owner, id).await;
    assert_eq!(ok["job"]["status"], "succeeded", "{ok}");
    let stats = common::sandbox_stats(&app).await;
    assert_eq!(stats["last_request_id"], format!("job-{id}"), "{stats}");

    // A request's own id reaches the provider calls it makes.
    let res = owner
        .client
        .get(app.url("/api/oauth/sandbox/accounts"))
        .header("x-request-id", "req-accounts-1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let stats = common::sandbox_stats(&app).await;
    assert_eq!(stats["last_request_id"], "req-accounts-1", "{stats}");

    set_faults(&app, json!({"slow_ms": 3000})).await;
    let slow = finished(&app, &owner, sync(&app, &owner, "people").await).await;
    assert_eq!(slow["job"]["status"], "failed", "{slow}");
    let error = slow["job"]["error"].as_str().unwrap();
    assert!(error.contains("hard time limit of 2 s"), "{error}");
    assert!(
        slow["log"].to_string().contains("soft time limit of 1 s"),
        "{slow}"
    );
    set_faults(&app, json!({})).await;
    app.stop().await;
}

async fn dry_run_counts_without_writing_and_full_behaviour_ignores_the_mark(backend: Backend) {
    use plugboard::jobs::JobStatus;
    use plugboard::jobs::store::NewJob;
    let app = sandbox_app(backend, &[]).await;
    let (owner, connection_id) = connect(&app).await;
    let ws = WorkspaceId(owner.workspace_id);
    let enqueue = |rule: Value| {
        let store = app.store.clone();
        async move {
            let id = Uuid::now_v7();
            store
                .create_job(&NewJob {
                    id,
                    workspace_id: ws,
                    connection_id: Some(connection_id),
                    provider: "sandbox",
                    object: Some("projects"),
                    kind: "sync",
                    status: JobStatus::Queued,
                    idempotency_key: None,
                    metadata: json!({ "rule": rule }),
                    requested_by: None,
                    at: plugboard::storage::now(),
                })
                .await
                .unwrap();
            id
        }
    };
    let dry = finished(&app, &owner, enqueue(json!({"dryRun": true})).await).await;
    assert_eq!(dry["job"]["status"], "succeeded", "{dry}");
    assert_eq!(dry["job"]["counts"]["created"], 60, "{dry}");
    assert!(dry["log"].to_string().contains("dry run"), "{dry}");
    let stored = app
        .store
        .list_records(ws, connection_id, "projects", 1000)
        .await
        .unwrap();
    assert!(
        stored.is_empty(),
        "a dry run wrote {} records",
        stored.len()
    );
    assert_eq!(
        app.store
            .high_water_mark(ws, connection_id, "projects")
            .await
            .unwrap(),
        None
    );

    let real = finished(&app, &owner, sync(&app, &owner, "projects").await).await;
    assert_eq!(real["job"]["counts"]["created"], 60, "{real}");
    // With a mark in place, behaviour "full" still reads everything.
    let full = finished(&app, &owner, enqueue(json!({"behaviour": "full"})).await).await;
    assert_eq!(full["job"]["status"], "succeeded", "{full}");
    assert!(full["log"].to_string().contains("full read"), "{full}");
    assert_eq!(full["job"]["counts"]["fetched"], 60, "{full}");
    assert_eq!(full["job"]["counts"]["unchanged"], 60, "{full}");
    app.stop().await;
}

async fn provider_errors_reach_the_log_redacted(backend: Backend) {
    let app = sandbox_app(backend, &[]).await;
    let (owner, _) = connect(&app).await;
    set_faults(&app, json!({"bad_request_next": 1})).await;
    let failed = finished(&app, &owner, sync(&app, &owner, "people").await).await;
    assert_eq!(failed["job"]["status"], "failed", "{failed}");
    let text = failed.to_string();
    assert!(
        text.contains("HTTP 400") && text.contains("invalid_filter"),
        "the provider's reason is kept: {text}"
    );
    assert!(
        !text.contains("sandbox-leaked-token") && !text.contains("ann@example.com"),
        "credentials and configured personal fields are redacted: {text}"
    );
    app.stop().await;
}

async fn a_future_high_water_mark_reads_nothing(backend: Backend) {
    let app = sandbox_app(backend, &[]).await;
    let (owner, connection_id) = connect(&app).await;
    let ws = WorkspaceId(owner.workspace_id);
    let first = finished(&app, &owner, sync(&app, &owner, "projects").await).await;
    assert_eq!(first["job"]["status"], "succeeded");
    let before = app
        .store
        .list_records(ws, connection_id, "projects", 1000)
        .await
        .unwrap();
    let future = "2099-01-01T00:00:00Z";
    app.store
        .set_high_water_mark(
            ws,
            connection_id,
            "projects",
            future,
            false,
            plugboard::storage::now(),
        )
        .await
        .unwrap();
    let delta = finished(&app, &owner, sync(&app, &owner, "projects").await).await;
    assert_eq!(delta["job"]["status"], "succeeded", "{delta}");
    let counts = &delta["job"]["counts"];
    assert_eq!(counts["fetched"], 0, "{counts}");
    assert_eq!(
        counts["deleted"], 0,
        "a delta read never marks vanished records: {counts}"
    );
    let after = app
        .store
        .list_records(ws, connection_id, "projects", 1000)
        .await
        .unwrap();
    assert_eq!(before.len(), after.len());
    assert!(
        after
            .iter()
            .zip(&before)
            .all(|(a, b)| a.deleted_at == b.deleted_at && a.updated_at == b.updated_at)
    );
    assert_eq!(
        app.store
            .high_water_mark(ws, connection_id, "projects")
            .await
            .unwrap()
            .as_deref(),
        Some(future),
        "the mark never moves back"
    );
    app.stop().await;
}

/// A worker process killed (SIGKILL) mid-job: another process claims the
/// job when the lease expires and resumes from the last committed page;
/// the store ends exactly as after an uninterrupted run, counted once.
async fn a_killed_worker_process_is_resumed_by_another(backend: Backend) {
    use secrecy::ExposeSecret;
    let app = sandbox_app(
        backend,
        &[
            ("PLUGBOARD_SYNC_WORKERS", "0"),
            ("PLUGBOARD_SANDBOX_DATASET", "people=450"),
        ],
    )
    .await;
    let (owner, connection_id) = connect(&app).await;
    let (other, other_connection) = connect_as(&app, "other@example.com").await;
    let data_dir = tempfile::tempdir().unwrap();
    let worker = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_plugboard"))
            .args(["worker", "--count", "1"])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", app.settings.database.url.expose_secret())
            .env("PLUGBOARD_PUBLIC_URL", &app.base)
            .env("PLUGBOARD_ENCRYPTION_KEYS", common::test_keys())
            .env(
                "PLUGBOARD_PROVIDERS_DIR",
                format!("{}/providers", env!("CARGO_MANIFEST_DIR")),
            )
            .env("PLUGBOARD_DATA_DIR", data_dir.path())
            .env("PLUGBOARD_SANDBOX", "true")
            .env("PLUGBOARD_SANDBOX_CLIENT_ID", SANDBOX_ID)
            .env("PLUGBOARD_SANDBOX_CLIENT_SECRET", SANDBOX_SECRET)
            .env("PLUGBOARD_SYNC_LEASE_SECS", "2")
            .env("PLUGBOARD_OAUTH_KEEPALIVE_INTERVAL_MINUTES", "0")
            .env("PLUGBOARD_LOG_LEVEL", "error")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("worker process")
    };
    let mut first = worker();
    // Sync requests need a live worker: wait for its heartbeat.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let job = loop {
        let res = owner
            .client
            .post_json(app.url("/api/integrations/sandbox/people/sync"), &json!({}))
            .await;
        if res.status() == StatusCode::ACCEPTED {
            let jobs: Value = res.json().await.unwrap();
            break jobs[0]["jobId"].as_str().unwrap().parse::<Uuid>().unwrap();
        }
        assert!(std::time::Instant::now() < deadline, "no worker came up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Slow pages; kill the worker once page 1 of 5 is committed.
    set_faults(&app, json!({"slow_ms": 400})).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let body = owner
            .client
            .get_json(app.url(&format!("/api/jobs/{job}")))
            .await;
        let fetched = body["job"]["counts"]["fetched"].as_u64().unwrap_or(0);
        if fetched >= 100 {
            assert!(fetched < 450, "the job finished before the kill: {body}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    first.kill().expect("kill");
    first.wait().ok();
    set_faults(&app, json!({})).await;

    let mut second = worker();
    let resumed = finished(&app, &owner, job).await;
    assert_eq!(resumed["job"]["status"], "succeeded", "{resumed}");
    assert!(
        resumed["log"].to_string().contains("resuming (attempt 2)"),
        "{resumed}"
    );
    let counts = &resumed["job"]["counts"];
    assert_eq!(counts["fetched"], 450, "each record counted once: {counts}");
    assert_eq!(counts["created"], 450, "{counts}");

    // The same data read without interruption, for comparison.
    let res = other
        .client
        .post_json(app.url("/api/integrations/sandbox/people/sync"), &json!({}))
        .await;
    let jobs: Value = res.json().await.unwrap();
    let whole = finished(
        &app,
        &other,
        jobs[0]["jobId"].as_str().unwrap().parse().unwrap(),
    )
    .await;
    assert_eq!(whole["job"]["status"], "succeeded", "{whole}");
    second.kill().ok();
    second.wait().ok();

    let snapshot = |ws: Uuid, conn: Uuid| {
        let store = app.store.clone();
        async move {
            let mut rows: Vec<(String, Value, bool)> = store
                .list_records(WorkspaceId(ws), conn, "people", 10_000)
                .await
                .unwrap()
                .into_iter()
                .map(|r| (r.external_id, r.data.0, r.deleted_at.is_some()))
                .collect();
            rows.sort_by(|a, b| a.0.cmp(&b.0));
            rows
        }
    };
    let interrupted = snapshot(owner.workspace_id, connection_id).await;
    let uninterrupted = snapshot(other.workspace_id, other_connection).await;
    assert_eq!(interrupted.len(), 450);
    assert_eq!(interrupted, uninterrupted);
    app.stop().await;
}

/// A provider configured for hand-off: the sync request POSTs a signed
/// description to the automation (verifiable with the documented recipe,
/// no token in it), the job waits for the automation's report, and a job
/// never reported fails after the timeout.
async fn handed_off_providers_are_synced_by_the_automation(backend: Backend) {
    use hmac::{Hmac, Mac};
    use sha2::Sha256;
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    const SECRET: &str = "handoff-secret-0123456789";
    const AGENT_KEY: &str = "agent-key-0123456789-abcdefghijklmnopqrstuvwxyz";
    let automation = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&automation)
        .await;
    let target = format!("sandbox={}/hook", automation.uri());
    let app = sandbox_app(
        backend,
        &[
            // No workers: the automation does the work.
            ("PLUGBOARD_SYNC_WORKERS", "0"),
            ("PLUGBOARD_HANDOFF", &target),
            ("PLUGBOARD_HANDOFF_SECRET", SECRET),
            ("PLUGBOARD_HANDOFF_TIMEOUT_SECS", "2"),
            ("AGENT_SERVICE_KEY", AGENT_KEY),
        ],
    )
    .await;
    let (owner, connection_id) = connect(&app).await;
    let res = owner
        .client
        .post_json(
            app.url("/api/integrations/sandbox/projects/sync"),
            &json!({}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let jobs: Value = res.json().await.unwrap();
    let job: Uuid = jobs[0]["jobId"].as_str().unwrap().parse().unwrap();
    // A second request while it waits returns the same job.
    let again: Value = owner
        .client
        .post_json(
            app.url("/api/integrations/sandbox/projects/sync"),
            &json!({}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again[0]["jobId"], job.to_string());
    assert_eq!(again[0]["existing"], true);

    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let request = loop {
        let received = automation.received_requests().await.unwrap_or_default();
        if let Some(r) = received.into_iter().next() {
            break r;
        }
        assert!(std::time::Instant::now() < deadline, "no hand-off arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let body: Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(body["jobId"], job.to_string());
    assert_eq!(body["provider"], "sandbox");
    assert_eq!(body["connectionId"], connection_id.to_string());
    assert_eq!(
        body["tenant"]["workspaceId"],
        owner.workspace_id.to_string()
    );
    assert_eq!(body["tenant"]["userId"], owner.id.to_string());
    assert!(body["selectedAccountIds"].is_array());
    let text = String::from_utf8_lossy(&request.body).to_lowercase();
    assert!(
        !text.contains("token\"") && !text.contains(SANDBOX_SECRET),
        "{text}"
    );
    // The documented recipe: HMAC-SHA256 over "<t>.<body>", header t=…,v1=….
    let header = request
        .headers
        .get("plugboard-signature")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let (t, v1) = header
        .split_once(",v1=")
        .map(|(t, v)| (t.trim_start_matches("t=").to_owned(), v.to_owned()))
        .unwrap();
    let age = time::OffsetDateTime::now_utc().unix_timestamp() - t.parse::<i64>().unwrap();
    assert!(
        (0..300).contains(&age),
        "timestamp within the replay window"
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(&request.body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(v1, expected);

    let waiting = owner
        .client
        .get_json(app.url(&format!("/api/jobs/{job}")))
        .await;
    assert_eq!(waiting["job"]["status"], "waiting_external", "{waiting}");
    // The automation reports the end.
    let res = common::client()
        .post(app.url("/api/internal/runs/callback"))
        .header("X-AGENT-SERVICE-KEY", AGENT_KEY)
        .json(&json!({"jobId": job, "status": "succeeded", "summary": {"records": 60}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let done = owner
        .client
        .get_json(app.url(&format!("/api/jobs/{job}")))
        .await;
    assert_eq!(done["job"]["status"], "succeeded", "{done}");

    // Never reported: failed after the timeout, with a clear message.
    let res = owner
        .client
        .post_json(app.url("/api/integrations/sandbox/people/sync"), &json!({}))
        .await;
    let jobs: Value = res.json().await.unwrap();
    let silent: Uuid = jobs[0]["jobId"].as_str().unwrap().parse().unwrap();
    let expired = finished(&app, &owner, silent).await;
    assert_eq!(expired["job"]["status"], "failed", "{expired}");
    assert!(
        expired["job"]["error"]
            .as_str()
            .unwrap()
            .contains("did not report on this job within 2 s"),
        "{expired}"
    );
    // Syncing everything without a live worker still hands off what the
    // automation syncs.
    let res = owner
        .client
        .post_json(app.url("/api/data/sync"), &json!({}))
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let all: Value = res.json().await.unwrap();
    assert_eq!(all.as_array().unwrap().len(), 3, "{all}");
    assert!(
        all.as_array()
            .unwrap()
            .iter()
            .all(|j| j["provider"] == "sandbox")
    );
    app.stop().await;
}

async fn data_hub_cards_show_jobs_in_flight(backend: Backend) {
    let app = sandbox_app(backend, &[]).await;
    let (owner, _) = connect(&app).await;
    let page = owner
        .client
        .get(app.url("/data/connections"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!page.contains("data-testid=\"syncing-sandbox\""));
    set_faults(&app, json!({"slow_ms": 1500})).await;
    let id = sync(&app, &owner, "people").await;
    let page = owner
        .client
        .get(app.url("/data/connections"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("data-testid=\"syncing-sandbox\""), "{page}");
    assert!(
        page.contains(&format!("href=\"/data/jobs/{id}\">people: ")),
        "{page}"
    );
    set_faults(&app, json!({})).await;
    finished(&app, &owner, id).await;
    let page = owner
        .client
        .get(app.url("/data/connections"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!page.contains("data-testid=\"syncing-sandbox\""), "{page}");
    assert!(
        page.contains(" UTC</dd>"),
        "the last sync time is shown: {page}"
    );
    app.stop().await;
}

/// An account id the provider lists with `/`, `..`, `?`, `#` and `%2F` in
/// it is substituted into `/properties/{accountId}/daily-metrics` as one
/// percent-encoded segment: the sandbox sees exactly that path, and the
/// job reads that account's data. A bare `..` is refused, not sent.
async fn hostile_account_ids_stay_one_path_segment(backend: Backend) {
    let app = sandbox_app(backend, &[]).await;
    let (owner, _) = connect(&app).await;
    let hostile = "../admin/x?y=1#z%2Fw";
    set_faults(&app, json!({"extra_property": hostile})).await;
    let res = owner
        .client
        .post_json(
            app.url("/api/data/select-account"),
            &json!({"provider": "sandbox", "accountIds": [hostile]}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let id = sync(&app, &owner, "daily_metrics").await;
    let done = finished(&app, &owner, id).await;
    assert_eq!(done["job"]["status"], "succeeded", "{done}");
    assert!(
        done["job"]["counts"]["fetched"].as_u64().unwrap() > 0,
        "{done}"
    );
    let stats = common::sandbox_stats(&app).await;
    assert_eq!(
        stats["last_metrics_path"],
        "/sandbox/api/properties/..%2Fadmin%2Fx%3Fy=1%23z%252Fw/daily-metrics",
        "{stats}"
    );

    // A dot segment would move up the path however it is encoded.
    set_faults(&app, json!({"extra_property": ".."})).await;
    let res = owner
        .client
        .post_json(
            app.url("/api/data/select-account"),
            &json!({"provider": "sandbox", "accountIds": [".."]}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let id = sync(&app, &owner, "daily_metrics").await;
    let done = finished(&app, &owner, id).await;
    assert_eq!(done["job"]["status"], "failed", "{done}");
    assert_eq!(
        common::sandbox_stats(&app).await["last_metrics_path"],
        stats["last_metrics_path"],
        "nothing was requested for `..`"
    );
    app.stop().await;
}

/// Provider text with U+0000 (an account id and name) is stored with the
/// NUL escaped on both databases, never a 500.
async fn nul_in_provider_accounts_is_stored_escaped(backend: Backend) {
    let app = sandbox_app(backend, &[]).await;
    let (owner, _) = connect(&app).await;
    set_faults(&app, json!({"extra_property": "prop\u{0}nul"})).await;
    let res = owner
        .client
        .get(app.url("/api/oauth/sandbox/accounts"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        app.db
            .count(
                "SELECT COUNT(*) FROM provider_accounts \
                 WHERE external_id = 'prop\\u0000nul' AND name = 'prop\\u0000nul'"
            )
            .await,
        1
    );
    app.stop().await;
}

/// A panic inside a job used to escape the worker with the heartbeat task
/// still renewing the lease: the job stayed "running" for ever and blocked
/// every later sync of its object. Now it is a failed job, retryable.
async fn a_panicking_job_fails_with_its_message_and_stops_its_heartbeat(backend: Backend) {
    let app = sandbox_app(
        backend,
        &[
            ("PLUGBOARD_SYNC_WORKERS", "0"),
            ("PLUGBOARD_SYNC_LEASE_SECS", "2"),
        ],
    )
    .await;
    let (owner, _) = connect(&app).await;
    // Sync requests need a live worker: this test is the worker.
    let worker = Uuid::now_v7();
    let store = &app.state.store;
    let now = plugboard::storage::now();
    store.worker_heartbeat(worker, now, now).await.unwrap();
    let job = sync(&app, &owner, "projects").await;
    let claimed = store
        .claim_sync_job(worker, now, now + time::Duration::seconds(2))
        .await
        .unwrap()
        .expect("the queued job is claimed");
    assert_eq!(claimed.job.id, job);

    plugboard::sync::worker::run_claimed_with(&app.state, claimed, worker, async {
        panic!("provider sent something impossible")
    })
    .await;

    let body = finished(&app, &owner, job).await;
    assert_eq!(body["job"]["status"], "failed", "{body}");
    let error = body["job"]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("failed unexpectedly")
            && error.contains("provider sent something impossible"),
        "{error}"
    );
    // Nothing stays running, and the object can be synced again at once.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let running = app
        .db
        .count("SELECT count(*) FROM jobs WHERE status = 'running'")
        .await;
    assert_eq!(running, 0);
    let again = sync(&app, &owner, "projects").await;
    assert_ne!(again, job);
}

async fn a_page_over_the_size_limit_fails_the_job_clearly(backend: Backend) {
    let app = sandbox_app(backend, &[("PLUGBOARD_SYNC_MAX_PAGE_BYTES", "300")]).await;
    let (owner, _) = connect(&app).await;
    let job = sync(&app, &owner, "projects").await;
    let body = finished(&app, &owner, job).await;
    assert_eq!(body["job"]["status"], "failed", "{body}");
    let error = body["job"]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("larger than the limit of 300 bytes")
            && error.contains("PLUGBOARD_SYNC_MAX_PAGE_BYTES"),
        "{error}"
    );
    let stored = app.db.count("SELECT count(*) FROM records").await;
    assert_eq!(stored, 0, "nothing of the refused page is kept");
}

async fn a_page_slower_than_the_page_timeout_fails_the_job(backend: Backend) {
    let app = sandbox_app(backend, &[("PLUGBOARD_SYNC_PAGE_TIMEOUT_SECS", "1")]).await;
    let (owner, _) = connect(&app).await;
    set_faults(&app, json!({"slow_ms": 2500})).await;
    let job = sync(&app, &owner, "projects").await;
    let body = finished(&app, &owner, job).await;
    assert_eq!(body["job"]["status"], "failed", "{body}");
    let error = body["job"]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("page 1 took longer than 1 s")
            && error.contains("PLUGBOARD_SYNC_PAGE_TIMEOUT_SECS"),
        "{error}"
    );
}

/// A job whose workers keep dying (claimed, never finished) is a poison
/// job: after the limit it fails visibly instead of being claimed for ever.
async fn a_job_claimed_too_often_gives_up_and_can_be_retried(backend: Backend) {
    let app = sandbox_app(
        backend,
        &[
            ("PLUGBOARD_SYNC_WORKERS", "0"),
            ("PLUGBOARD_SYNC_MAX_ATTEMPTS", "2"),
        ],
    )
    .await;
    let (owner, _) = connect(&app).await;
    let worker = Uuid::now_v7();
    let store = &app.state.store;
    let now = plugboard::storage::now();
    store.worker_heartbeat(worker, now, now).await.unwrap();
    let job = sync(&app, &owner, "projects").await;
    // Two workers take the job and vanish: their leases expire at once.
    let expired = now - time::Duration::seconds(1);
    for attempt in 1..=2 {
        let claimed = store.claim_sync_job(worker, now, expired).await.unwrap();
        assert_eq!(claimed.map(|c| c.attempts), Some(attempt));
    }
    let third = store
        .claim_sync_job(worker, now, now + time::Duration::seconds(60))
        .await
        .unwrap()
        .expect("the expired lease is claimed again");
    assert_eq!(third.attempts, 3);
    plugboard::sync::worker::run_claimed_with(&app.state, third, worker, async {
        panic!("a poison job must not run again")
    })
    .await;
    let body = finished(&app, &owner, job).await;
    assert_eq!(body["job"]["status"], "failed", "{body}");
    let error = body["job"]["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("gave up after 2 attempts"), "{error}");
    // Retryable by hand: a new job.
    let res = owner
        .client
        .post_json(app.url(&format!("/api/jobs/{job}/retry")), &json!({}))
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
}

/// Deletions are inferred from what a full read didn't return, so only a
/// run that still holds its lease at the end may infer them: a cancelled
/// one (or one another worker took over) saw too little.
async fn a_cancelled_full_read_marks_nothing_deleted(backend: Backend) {
    let app = sandbox_app(backend, &[("PLUGBOARD_SYNC_WORKERS", "0")]).await;
    let (owner, connection_id) = connect(&app).await;
    let worker = Uuid::now_v7();
    let store = &app.state.store;
    let now = plugboard::storage::now;
    store.worker_heartbeat(worker, now(), now()).await.unwrap();
    let lease_until = || now() + time::Duration::seconds(60);

    let first = sync(&app, &owner, "projects").await;
    let claimed = store
        .claim_sync_job(worker, now(), lease_until())
        .await
        .unwrap()
        .unwrap();
    plugboard::sync::worker::run_claimed(&app.state, claimed, worker).await;
    assert_eq!(
        finished(&app, &owner, first).await["job"]["status"],
        "succeeded"
    );
    let stored = app
        .db
        .count("SELECT count(*) FROM records WHERE deleted_at IS NULL")
        .await;
    assert!(stored > 0);
    let deleted_by_provider = app
        .db
        .count("SELECT count(*) FROM records WHERE deleted_at IS NOT NULL")
        .await;

    let second = sync(&app, &owner, "projects").await;
    let claimed = store
        .claim_sync_job(worker, now(), lease_until())
        .await
        .unwrap()
        .unwrap();
    let lease = claimed.lease(worker);
    let res = owner
        .client
        .post_json(app.url(&format!("/api/jobs/{second}/cancel")), &json!({}))
        .await;
    assert!(res.status().is_success(), "{}", res.status());
    let marked = store
        .mark_vanished_fenced(&lease, lease_until(), connection_id, "projects", now())
        .await
        .unwrap();
    assert_eq!(
        marked, None,
        "the cancelled run's lease no longer fences anything"
    );
    let deleted = app
        .db
        .count("SELECT count(*) FROM records WHERE deleted_at IS NOT NULL")
        .await;
    assert_eq!(
        deleted, deleted_by_provider,
        "only the provider's own deletion markers"
    );
    assert_eq!(
        app.db
            .count("SELECT count(*) FROM records WHERE deleted_at IS NULL")
            .await,
        stored
    );
}

/// A provider may list a record twice in one page (it changed while being
/// paged). PostgreSQL used to fail the job ("ON CONFLICT DO UPDATE command
/// cannot affect row a second time") where SQLite passed; now both keep the
/// last copy.
async fn a_record_twice_in_one_page_keeps_the_last(backend: Backend) {
    let app = sandbox_app(backend, &[]).await;
    let (owner, _) = connect(&app).await;
    set_faults(&app, json!({"repeat_first_project": true})).await;
    let job = sync(&app, &owner, "projects").await;
    let body = finished(&app, &owner, job).await;
    assert_eq!(body["job"]["status"], "succeeded", "{body}");
    let changed = app
        .db
        .count("SELECT count(*) FROM records WHERE object = 'projects' AND CAST(data AS TEXT) LIKE '%(changed while paging)%'")
        .await;
    assert!(changed >= 1, "the later copy is the one stored");
}
