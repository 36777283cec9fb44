//! Job history: `/data/jobs` lists the workspace's jobs (not another
//! member's personal connection's) with filters in the URL, the job page
//! shows times, duration, counts that match the log and a paged log, and
//! "Sync now" is held to one per connection and object per interval
//! unless an admin forces it.

mod common;

use std::time::Duration;

use common::{
    Backend, ClientExt, PASSWORD, SANDBOX_ID, SANDBOX_SECRET, TestApp, TestUser, api_error, client,
    sandbox_app,
};
use plugboard::tenancy::WorkspaceId;
use reqwest::StatusCode;
use serde_json::{Value, json};

on_both_backends!(
    history_lists_filters_and_hides_others_personal_jobs,
    job_page_counts_match_the_log_and_the_log_pages,
    sync_now_is_held_to_its_interval,
);

/// Invites `email` into the admin's workspace and signs them up with it.
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
    TestUser {
        client: c,
        id: me["user"]["id"].as_str().unwrap().parse().unwrap(),
        email: email.to_owned(),
        workspace_id: admin.workspace_id,
    }
}

async fn connect(app: &TestApp, user: &TestUser, ownership: &str) {
    let res = user
        .client
        .post_json(
            app.url("/api/integrations/sandbox/connect"),
            &json!({"flow": "client_credentials", "clientId": SANDBOX_ID, "clientSecret": SANDBOX_SECRET,
                    "headers": {"X-Sandbox-Company": "acme"}, "ownership": ownership}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED, "connect {ownership}");
}

/// Syncs one object of the connection the user would use; the job id.
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
    jobs[0]["jobId"].as_str().unwrap().to_owned()
}

/// Waits for a job to finish; returns `{job, log}`.
async fn finished(app: &TestApp, user: &TestUser, id: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let body = user
            .client
            .get_json(app.url(&format!("/api/jobs/{id}")))
            .await;
        let status = body["job"]["status"].as_str().unwrap_or_default();
        if ["succeeded", "failed", "cancelled"].contains(&status) {
            return body;
        }
        assert!(std::time::Instant::now() < deadline, "job stuck: {body}");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

async fn page(app: &TestApp, user: &TestUser, path: &str) -> (StatusCode, String) {
    let res = user.client.get(app.url(path)).send().await.unwrap();
    (res.status(), res.text().await.unwrap())
}

fn rows(html: &str) -> usize {
    html.matches("data-testid=\"job-row\"").count()
}

async fn history_lists_filters_and_hides_others_personal_jobs(backend: Backend) {
    let app = sandbox_app(backend, &[]).await;
    let owner = app.signup("owner@jobs.example", "Jobs").await;
    let member = join(&app, &owner, "member@jobs.example", "member").await;
    connect(&app, &owner, "workspace").await;
    connect(&app, &member, "user").await;
    let shared = sync(&app, &owner, "projects").await;
    let private = sync(&app, &member, "people").await;
    let shared_job = finished(&app, &owner, &shared).await;
    finished(&app, &member, &private).await;

    // The owner sees the workspace connection's job, not the member's
    // personal one; the member sees both. Each row links to its job.
    let (status, html) = page(&app, &owner, "/data/jobs").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains(&format!("href=\"/data/jobs/{shared}\"")),
        "{html}"
    );
    assert!(!html.contains(&private), "another member's personal job");
    assert_eq!(rows(&html), 1, "{html}");
    assert!(
        html.contains("data-testid=\"job-row-status\">succeeded"),
        "{html}"
    );
    assert!(html.contains("fetched"), "{html}");
    assert!(html.contains(" UTC"), "times name the zone: {html}");
    assert!(
        html.contains("<a href=\"/data/jobs\">Jobs</a>"),
        "nav entry: {html}"
    );
    let (_, html) = page(&app, &member, "/data/jobs").await;
    assert_eq!(rows(&html), 2, "{html}");

    // Filters live in the URL and are kept by the form and the links.
    let (_, html) = page(&app, &member, "/data/jobs?object=people&provider=sandbox").await;
    assert_eq!(rows(&html), 1, "{html}");
    assert!(html.contains(&private));
    assert!(
        html.contains("<option value=\"people\" selected>"),
        "{html}"
    );
    let (_, html) = page(&app, &member, "/data/jobs?status=failed").await;
    assert_eq!(rows(&html), 0);
    assert!(html.contains("No jobs match these filters."), "{html}");
    let day = &shared_job["job"]["createdAt"].as_str().unwrap()[..10];
    let (_, html) = page(&app, &owner, &format!("/data/jobs?from={day}&to={day}")).await;
    assert_eq!(rows(&html), 1, "{html}");
    assert!(html.contains(&format!("value=\"{day}\"")), "{html}");
    let date = time::Date::parse(
        day,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .unwrap();
    let next = date.next_day().unwrap();
    let (_, html) = page(&app, &owner, &format!("/data/jobs?from={next}")).await;
    assert_eq!(rows(&html), 0, "{html}");
    let before = date.previous_day().unwrap();
    let (_, html) = page(&app, &owner, &format!("/data/jobs?to={before}")).await;
    assert_eq!(rows(&html), 0, "{html}");

    // Bad filters: 422, the error beside the field, the value kept.
    for (query, field) in [
        ("provider=nope", "provider"),
        ("status=paused", "status"),
        ("from=2026-13-01", "from"),
        ("from=2026-02-02&to=2026-02-01", "to"),
    ] {
        let (status, html) = page(&app, &owner, &format!("/data/jobs?{query}")).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query}");
        assert!(
            html.contains(&format!("data-testid=\"error-{field}\"")),
            "{query}: {html}"
        );
        assert_eq!(rows(&html), 0);
    }
    let (status, _) = page(&app, &owner, "/data/jobs?object=a%00b").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    // Times follow the workspace's zone.
    let token = app.csrf(&owner.client, "/settings/workspace").await;
    let res = owner
        .client
        .post(app.url("/settings/workspace"))
        .form(&[("time_zone", "Asia/Kolkata"), ("_csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let (_, html) = page(&app, &owner, "/data/jobs").await;
    assert!(html.contains(" Asia/Kolkata"), "{html}");

    // A workspace without jobs says what to do.
    let other = app.signup("other@jobs.example", "Other").await;
    let (status, html) = page(&app, &other, "/data/jobs").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("No jobs yet."), "{html}");
    assert!(!html.contains(&shared), "another workspace's job");
    app.stop().await;
}

async fn job_page_counts_match_the_log_and_the_log_pages(backend: Backend) {
    let app = sandbox_app(backend, &[]).await;
    let owner = app.signup("owner@jobpage.example", "Job page").await;
    let member = join(&app, &owner, "member@jobpage.example", "member").await;
    connect(&app, &owner, "workspace").await;
    let id = sync(&app, &owner, "projects").await;
    let done = finished(&app, &owner, &id).await;
    assert_eq!(done["job"]["status"], "succeeded", "{done}");

    // Every count on the page, and the log's last line states the same.
    let (_, html) = page(&app, &owner, &format!("/data/jobs/{id}")).await;
    let counts = done["job"]["counts"].as_object().unwrap();
    assert!(!counts.is_empty());
    let mut stated = Vec::new();
    for (key, value) in counts {
        assert!(
            html.contains(&format!("data-testid=\"job-count-{key}\">{value}<")),
            "{key}: {html}"
        );
        stated.push(format!("{} {value}", key.replace('_', " ")));
    }
    let log = done["log"].as_array().unwrap();
    let last = log.last().unwrap()["message"].as_str().unwrap();
    assert_eq!(last, format!("done: {}", stated.join(", ")));
    assert!(html.contains(last), "{html}");
    assert!(html.contains("data-testid=\"job-duration\">"), "{html}");
    assert!(!html.contains("not started"), "{html}");
    assert!(html.contains(" UTC</dd>"), "{html}");
    // Succeeded: nothing to cancel or retry.
    assert!(!html.contains("data-testid=\"job-retry\""));
    assert!(!html.contains("data-testid=\"job-cancel\""));

    // 250 more lines: three pages of 100, the newest page first.
    let ws = WorkspaceId(owner.workspace_id);
    let job_id: uuid::Uuid = id.parse().unwrap();
    for i in 0..250 {
        app.store
            .append_job_log(
                ws,
                job_id,
                "info",
                &format!("extra line {i:03}"),
                plugboard::storage::now(),
            )
            .await
            .unwrap();
    }
    let total = log.len() + 250;
    let (_, html) = page(&app, &owner, &format!("/data/jobs/{id}")).await;
    assert!(html.contains("data-testid=\"log-pager\""), "{html}");
    assert_eq!(
        html.matches("data-testid=\"log-line\"").count(),
        total - 200,
        "the last page"
    );
    assert!(html.contains("extra line 249"));
    assert!(!html.contains("extra line 000"));
    assert!(
        html.contains(&format!("of {total}, oldest first")),
        "{html}"
    );
    let (_, html) = page(&app, &owner, &format!("/data/jobs/{id}?log_page=1")).await;
    assert_eq!(html.matches("data-testid=\"log-line\"").count(), 100);
    assert!(html.contains(log[0]["message"].as_str().unwrap()));
    assert!(!html.contains("extra line 249"));
    assert!(html.contains("href=\"?log_page=3\""), "{html}");
    let (status, _) = page(&app, &owner, &format!("/data/jobs/{id}?log_page=99")).await;
    assert_eq!(status, StatusCode::OK, "an unknown page shows the newest");

    // A failed job: the admin may retry it, a member who doesn't own the
    // connection sees no button.
    common::set_faults(&app, json!({"bad_request_next": 5})).await;
    let failed = sync(&app, &owner, "people").await;
    let done = finished(&app, &owner, &failed).await;
    assert_eq!(done["job"]["status"], "failed", "{done}");
    let (_, html) = page(&app, &owner, &format!("/data/jobs/{failed}")).await;
    assert!(html.contains("data-testid=\"job-retry\""), "{html}");
    let (status, html) = page(&app, &member, &format!("/data/jobs/{failed}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!html.contains("data-testid=\"job-retry\""), "{html}");
    app.stop().await;
}

async fn post_sync(user: &TestUser, app: &TestApp, body: Value) -> reqwest::Response {
    user.client
        .post_json(app.url("/api/data/sync"), &body)
        .await
}

async fn job_count(app: &TestApp) -> i64 {
    app.db.count("SELECT COUNT(*) FROM jobs").await
}

async fn sync_now_is_held_to_its_interval(backend: Backend) {
    let app = sandbox_app(backend, &[("PLUGBOARD_SYNC_MIN_INTERVAL_SECS", "900")]).await;
    let owner = app.signup("owner@limit.example", "Limit").await;
    let member = join(&app, &owner, "member@limit.example", "member").await;
    connect(&app, &owner, "workspace").await;

    let res = post_sync(&owner, &app, json!({"provider": "sandbox"})).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let jobs: Value = res.json().await.unwrap();
    let mut first = None;
    for job in jobs.as_array().unwrap() {
        let done = finished(&app, &owner, job["jobId"].as_str().unwrap()).await;
        first.get_or_insert(done["job"]["createdAt"].as_str().unwrap().to_owned());
    }
    let queued = job_count(&app).await;

    // Inside the window: 429, Retry-After, the last sync's time; nothing queued.
    let res = post_sync(&owner, &app, json!({"provider": "sandbox"})).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((800..=900).contains(&wait), "{wait}");
    let err: Value = res.json().await.unwrap();
    assert_eq!(err["error"]["code"], "rate_limited", "{err}");
    assert_eq!(err["error"]["retryAfterSecs"], wait, "{err}");
    let last = err["error"]["lastSyncAt"].as_str().unwrap();
    time::OffsetDateTime::parse(last, &time::format_description::well_known::Rfc3339).unwrap();
    assert!(
        last[..16] >= first.as_deref().unwrap()[..16],
        "{last} {first:?}"
    );
    let res = owner
        .client
        .post_json(
            app.url("/api/integrations/sandbox/projects/sync"),
            &json!({}),
        )
        .await;
    api_error(res, StatusCode::TOO_MANY_REQUESTS).await;
    api_error(
        post_sync(&owner, &app, json!({})).await,
        StatusCode::TOO_MANY_REQUESTS,
    )
    .await;
    let res = post_sync(&member, &app, json!({"provider": "sandbox"})).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    // Members can't force; admins can, and it is on record.
    api_error(
        post_sync(&member, &app, json!({"provider": "sandbox", "force": true})).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    assert_eq!(job_count(&app).await, queued);
    let res = post_sync(&owner, &app, json!({"provider": "sandbox", "force": true})).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let forced: Value = res.json().await.unwrap();
    assert_eq!(forced.as_array().unwrap().len(), 3, "{forced}");
    for job in forced.as_array().unwrap() {
        finished(&app, &owner, job["jobId"].as_str().unwrap()).await;
    }
    let audit = owner
        .client
        .get_json(app.url(&format!("/api/workspaces/{}/audit", owner.workspace_id)))
        .await;
    let entry = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "sync.force")
        .unwrap_or_else(|| panic!("no sync.force in {audit}"));
    assert_eq!(entry["actorUserId"], owner.id.to_string(), "{entry}");
    let queued = job_count(&app).await;

    // The hub says when Sync now can run again; admins get Force sync.
    let (_, html) = page(&app, &member, "/data/connections").await;
    assert!(
        html.contains("data-testid=\"sync-again-sandbox\""),
        "{html}"
    );
    assert!(!html.contains("data-testid=\"sync-sandbox\""), "{html}");
    assert!(
        !html.contains("data-testid=\"force-sync-sandbox\""),
        "{html}"
    );
    let (_, html) = page(&app, &owner, "/data/connections").await;
    assert!(
        html.contains("data-testid=\"force-sync-sandbox\""),
        "{html}"
    );
    // The form inside the window queues nothing and says why.
    let token = app.csrf(&member.client, "/data/connections").await;
    let res = member
        .client
        .post(app.url("/data/sandbox/sync"))
        .form(&[("_csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(common::location(&res), "/data/connections");
    let (_, html) = page(&app, &member, "/data/connections").await;
    assert!(html.contains("Not synced:"), "{html}");
    assert!(html.contains("Nothing was queued."), "{html}");
    assert_eq!(job_count(&app).await, queued);
    let res = member
        .client
        .post(app.url("/data/sandbox/sync"))
        .form(&[("_csrf", token.as_str()), ("force", "yes")])
        .send()
        .await
        .unwrap();
    // Refused like other page actions a role doesn't allow: said on the hub.
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let (_, html) = page(&app, &member, "/data/connections").await;
    assert!(html.contains("force a sync"), "{html}");
    assert_eq!(job_count(&app).await, queued);
    let token = app.csrf(&owner.client, "/data/connections").await;
    let res = owner
        .client
        .post(app.url("/data/sandbox/sync"))
        .form(&[("_csrf", token.as_str()), ("force", "yes")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(job_count(&app).await, queued + 3);

    // Scheduled syncs by rules are not held back.
    let rule: Value = owner
        .client
        .put(app.url("/api/integrations/sandbox/people/rules"))
        .json(&json!({"interval": {"minutes": 60}, "behaviour": "full"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let slot = time::OffsetDateTime::parse(
        rule["nextRun"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    // Let the forced jobs finish so the planner isn't deduplicated.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while app
        .db
        .count("SELECT COUNT(*) FROM jobs WHERE status IN ('queued', 'running')")
        .await
        > 0
    {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let report = plugboard::rules::planner::plan_due(&app.state, slot)
        .await
        .unwrap();
    assert_eq!(report.queued.len(), 1, "{report:?}");
    app.stop().await;
}
