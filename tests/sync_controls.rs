//! The object page's Sync controls tab and the post-restore resync: the
//! worker-offline banner, sync now / dry run / retry / cancel from the tab
//! (with the minimum interval), `plugboard restore mark` against the
//! sandbox, the resync wizard, and who may see it.

mod common;

use std::time::Duration;

use common::{Backend, ClientExt, SANDBOX_ID, SANDBOX_SECRET, TestApp, TestUser, set_faults};
use plugboard::connections::REFRESH_TOKEN;
use plugboard::storage::now;
use plugboard::tenancy::WorkspaceId;
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

on_both_backends!(
    paused_banner_disables_buttons_until_a_worker_is_alive,
    sync_now_respects_the_interval_and_cancel_asks_first,
    sync_now_dry_run_and_retry_run_on_workers,
    restore_mark_cli_marks_and_verifies_connections,
    resync_wizard_resets_marks_and_clears_the_flag,
    members_get_403_and_other_workspaces_404,
);

const PAUSED: &str = "Sync temporarily paused (background worker offline)";

async fn connect_sandbox(app: &TestApp, user: &TestUser) -> String {
    let res = user
        .client
        .post_json(
            app.url("/api/integrations/sandbox/connect"),
            &json!({"flow": "client_credentials", "clientId": SANDBOX_ID, "clientSecret": SANDBOX_SECRET, "headers": {"X-Sandbox-Company": "acme"}}),
        )
        .await;
    assert!(res.status().is_success(), "connect: {}", res.status());
    let conn: Value = res.json().await.unwrap();
    conn["id"].as_str().unwrap().to_owned()
}

fn tab_path(connection: &str) -> String {
    format!("/integrations/sandbox/projects/sync?connection={connection}")
}

async fn tab(app: &TestApp, user: &TestUser, connection: &str) -> String {
    let res = user
        .client
        .get(app.url(&tab_path(connection)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.text().await.unwrap()
}

async fn post_action(
    app: &TestApp,
    user: &TestUser,
    connection: &str,
    action: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let csrf = app.csrf(&user.client, &tab_path(connection)).await;
    let mut form: Vec<(&str, &str)> = vec![("_csrf", &csrf), ("connectionId", connection)];
    form.extend_from_slice(fields);
    user.client
        .post(app.url(&format!("/integrations/sandbox/projects/sync/{action}")))
        .form(&form)
        .send()
        .await
        .unwrap()
}

/// The opening tag of the element with this test id.
fn tag<'a>(html: &'a str, testid: &str) -> Option<&'a str> {
    let at = html.find(&format!("data-testid=\"{testid}\""))?;
    let start = html[..at].rfind('<')?;
    let end = at + html[at..].find('>')?;
    Some(&html[start..=end])
}

fn button_disabled(html: &str, testid: &str) -> bool {
    tag(html, testid)
        .unwrap_or_else(|| panic!("no {testid} in the page"))
        .contains(" disabled")
}

async fn jobs_of(app: &TestApp, user: &TestUser) -> Vec<Value> {
    user.client
        .get_json(app.url("/api/integrations/sandbox/jobs?object=projects"))
        .await
        .as_array()
        .unwrap()
        .clone()
}

async fn wait_finished(app: &TestApp, user: &TestUser, id: &str) -> Value {
    for _ in 0..300 {
        let job = user
            .client
            .get_json(app.url(&format!("/api/jobs/{id}")))
            .await;
        let status = job["job"]["status"]
            .as_str()
            .or(job["status"].as_str())
            .unwrap_or_default()
            .to_owned();
        if ["succeeded", "failed", "cancelled"].contains(&status.as_str()) {
            return job.get("job").cloned().unwrap_or(job);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("job {id} never finished");
}

async fn heartbeat(app: &TestApp) {
    app.store
        .worker_heartbeat(Uuid::new_v4(), now(), now())
        .await
        .unwrap();
}

async fn paused_banner_disables_buttons_until_a_worker_is_alive(backend: Backend) {
    let app = common::sandbox_app(backend, &[("PLUGBOARD_SYNC_WORKERS", "0")]).await;
    let owner = app.signup("owner@sync.test", "Sync").await;
    let id = connect_sandbox(&app, &owner).await;
    let page = tab(&app, &owner, &id).await;
    assert!(page.contains(PAUSED), "{page}");
    assert!(tag(&page, "sync-paused").is_some());
    for b in ["sync-now", "dry-run"] {
        assert!(button_disabled(&page, b), "{b} enabled while paused");
    }
    // The server refuses too, whatever the browser sends.
    let res = post_action(&app, &owner, &id, "now", &[]).await;
    assert!(res.status().is_redirection());
    let page = tab(&app, &owner, &id).await;
    assert!(page.contains("background worker unavailable"), "{page}");
    assert!(jobs_of(&app, &owner).await.is_empty());

    // A worker's heartbeat: the buttons are back, with no action by anyone.
    heartbeat(&app).await;
    let page = tab(&app, &owner, &id).await;
    assert!(!page.contains(PAUSED));
    for b in ["sync-now", "dry-run"] {
        assert!(!button_disabled(&page, b), "{b} still disabled");
    }
    app.stop().await;

    // Ingest switched off pauses it too, workers or not.
    let off = common::sandbox_app(backend, &[("PLUGBOARD_INGEST_ENABLED", "false")]).await;
    let owner = off.signup("owner@off.test", "Off").await;
    let id = connect_sandbox(&off, &owner).await;
    heartbeat(&off).await;
    let page = tab(&off, &owner, &id).await;
    assert!(page.contains(PAUSED));
    assert!(page.contains("PLUGBOARD_INGEST_ENABLED=false"));
    assert!(button_disabled(&page, "sync-now"));
    off.stop().await;
}

async fn sync_now_respects_the_interval_and_cancel_asks_first(backend: Backend) {
    // No worker runs the jobs (a heartbeat says one is alive): they stay
    // queued for the test to look at.
    let app = common::sandbox_app(
        backend,
        &[
            ("PLUGBOARD_SYNC_WORKERS", "0"),
            ("PLUGBOARD_SYNC_MIN_INTERVAL_SECS", "3600"),
        ],
    )
    .await;
    heartbeat(&app).await;
    let owner = app.signup("owner@sync.test", "Sync").await;
    let id = connect_sandbox(&app, &owner).await;
    let res = post_action(&app, &owner, &id, "dry-run", &[]).await;
    assert!(res.status().is_redirection());
    let jobs = jobs_of(&app, &owner).await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0]["status"], "queued");
    assert_eq!(jobs[0]["metadata"]["rule"]["dryRun"], true);
    let job = jobs[0]["id"].as_str().unwrap().to_owned();
    let page = tab(&app, &owner, &id).await;
    assert!(page.contains(&format!("Dry run of projects queued (job {job})")));
    assert!(tag(&page, &format!("job-row-{job}")).is_some());
    assert!(
        page.contains(&format!("href=\"/data/jobs/{job}\"")),
        "links the job page"
    );

    // Cancel asks first: without confirm=yes nothing happens.
    let res = post_action(&app, &owner, &id, "cancel", &[("job", &job)]).await;
    assert_eq!(res.status(), StatusCode::OK);
    let confirm = res.text().await.unwrap();
    assert!(confirm.contains("data-testid=\"confirm-yes\""));
    assert!(confirm.contains(&format!("name=\"job\" value=\"{job}\"")));
    assert_eq!(jobs_of(&app, &owner).await[0]["status"], "queued");
    let res = post_action(
        &app,
        &owner,
        &id,
        "cancel",
        &[("job", &job), ("confirm", "yes")],
    )
    .await;
    assert!(res.status().is_redirection());
    assert_eq!(jobs_of(&app, &owner).await[0]["status"], "cancelled");

    // Inside the minimum interval Sync now queues nothing and says when.
    let res = post_action(&app, &owner, &id, "now", &[]).await;
    assert!(res.status().is_redirection());
    assert_eq!(jobs_of(&app, &owner).await.len(), 1);
    let page = tab(&app, &owner, &id).await;
    assert!(page.contains("Sync now can run again in"), "{page}");
    assert!(tag(&page, "too-soon").is_some());
    // An admin may force it, on record.
    let res = post_action(&app, &owner, &id, "now", &[("force", "yes")]).await;
    assert!(res.status().is_redirection());
    let jobs = jobs_of(&app, &owner).await;
    assert_eq!(jobs.len(), 2);
    assert_eq!(jobs[0]["status"], "queued");
    assert!(jobs[0]["metadata"]["rule"].get("dryRun").is_none());
    assert_eq!(
        app.db
            .count("SELECT COUNT(*) FROM audit_log WHERE action = 'sync.force'")
            .await,
        1
    );
    // The status filter lists only what it names.
    let filtered = owner
        .client
        .get_text(app.url(&format!("{}&status=cancelled", tab_path(&id))))
        .await;
    assert!(filtered.contains(&format!("job-row-{job}")));
    assert!(!filtered.contains(&format!("job-row-{}", jobs[0]["id"].as_str().unwrap())));
    app.stop().await;
}

async fn sync_now_dry_run_and_retry_run_on_workers(backend: Backend) {
    let app = common::sandbox_app(backend, &[]).await;
    let owner = app.signup("owner@sync.test", "Sync").await;
    let id = connect_sandbox(&app, &owner).await;
    let res = post_action(&app, &owner, &id, "now", &[]).await;
    assert!(res.status().is_redirection());
    let first = jobs_of(&app, &owner).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        wait_finished(&app, &owner, &first).await["status"],
        "succeeded"
    );
    let page = tab(&app, &owner, &id).await;
    assert!(tag(&page, "last-run").is_some());
    assert!(
        page.contains("data-testid=\"log-line\""),
        "the job log is shown"
    );

    // The provider refuses the next request: the job fails, and the tab
    // retries it.
    set_faults(&app, json!({"bad_request_next": 1})).await;
    post_action(&app, &owner, &id, "now", &[]).await;
    let failed = jobs_of(&app, &owner).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(failed, first);
    assert_eq!(
        wait_finished(&app, &owner, &failed).await["status"],
        "failed"
    );
    let page = tab(&app, &owner, &id).await;
    assert!(tag(&page, &format!("retry-{failed}")).is_some(), "{page}");
    assert!(
        tag(&page, &format!("retry-{first}")).is_none(),
        "succeeded jobs aren't retried"
    );
    let res = post_action(&app, &owner, &id, "retry", &[("job", &failed)]).await;
    assert!(res.status().is_redirection());
    let retried = jobs_of(&app, &owner).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(retried, failed);
    assert_eq!(
        wait_finished(&app, &owner, &retried).await["status"],
        "succeeded"
    );
    // A succeeded job can't be retried.
    post_action(&app, &owner, &id, "retry", &[("job", &retried)]).await;
    let page = tab(&app, &owner, &id).await;
    assert!(page.contains("only failed or cancelled syncs can be retried"));

    // A dry run runs and writes nothing; the tab shows its log.
    post_action(&app, &owner, &id, "dry-run", &[]).await;
    let dry = jobs_of(&app, &owner).await[0].clone();
    assert_eq!(dry["metadata"]["rule"]["dryRun"], true);
    let done = wait_finished(&app, &owner, dry["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "succeeded");
    let page = tab(&app, &owner, &id).await;
    assert!(page.contains("<td>dry run</td>"));
    assert!(
        page.contains("dry run: counts show what a real run would write"),
        "the newest job's log: {page}"
    );
    app.stop().await;
}

/// The `plugboard` binary on the test app's database and sandbox.
fn restore_command(app: &TestApp, dir: &std::path::Path, at: &str) -> std::process::Command {
    use secrecy::ExposeSecret;
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_plugboard"));
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PLUGBOARD_DATA_DIR", dir)
        .env("DATABASE_URL", app.settings.database.url.expose_secret())
        .env("PLUGBOARD_PUBLIC_URL", &app.base)
        .env("PLUGBOARD_ENCRYPTION_KEYS", common::test_keys())
        .env(
            "PLUGBOARD_PROVIDERS_DIR",
            concat!(env!("CARGO_MANIFEST_DIR"), "/providers"),
        )
        .env("PLUGBOARD_SANDBOX", "true")
        .env("PLUGBOARD_SANDBOX_CLIENT_ID", SANDBOX_ID)
        .env("PLUGBOARD_SANDBOX_CLIENT_SECRET", SANDBOX_SECRET)
        .env("PLUGBOARD_LOG_LEVEL", "error")
        .args(["restore", "mark", "--backup-taken-at", at]);
    cmd
}

async fn status_of(app: &TestApp, ws: Uuid, id: Uuid) -> String {
    app.store
        .get_connection(WorkspaceId(ws), id)
        .await
        .unwrap()
        .unwrap()
        .status
}

async fn restore_mark_cli_marks_and_verifies_connections(backend: Backend) {
    let app = common::sandbox_app(backend, &[("PLUGBOARD_SYNC_WORKERS", "0")]).await;
    // A connection with a rotating refresh token, as the backup has it...
    let owner = app.signup("owner@restore.test", "Restore").await;
    let res = common::authorize(&app, &owner.client, "workspace", "approve").await;
    assert!(res.status().is_redirection());
    let ws = WorkspaceId(owner.workspace_id);
    let rotating = app.store.list_connections(ws).await.unwrap().remove(0);
    assert!(rotating.has_refresh_token);
    let place = plugboard::connections::tokens::place(&rotating, REFRESH_TOKEN);
    let backed_up = app.store.get_sealed(&place).await.unwrap().unwrap();
    // ...rotated after the backup, then the database restored.
    plugboard::connections::tokens::refresh(&app.state, &rotating, true)
        .await
        .unwrap();
    let key_id = common::test_keys().split(':').next().unwrap();
    app.store
        .put_sealed(&place, key_id, &backed_up, now())
        .await
        .unwrap();
    // Client credentials in another workspace still work.
    let other = app.signup("admin@other.test", "Other").await;
    let steady: Uuid = connect_sandbox(&app, &other).await.parse().unwrap();

    // A time that isn't RFC 3339 is refused before anything happens.
    let dir = tempfile::tempdir().unwrap();
    let out = restore_command(&app, dir.path(), "yesterday")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("RFC 3339"));
    assert_eq!(
        app.db.count("SELECT COUNT(*) FROM resync_required").await,
        0
    );

    let at = (now() - time::Duration::hours(6))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let out = restore_command(&app, dir.path(), &at).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let objects = app
        .state
        .providers
        .get("sandbox")
        .unwrap()
        .meta
        .objects
        .len();
    assert!(
        stdout.contains(&format!(
            "{} objects of 2 connections marked resync_required; 1 connected, 1 needs_reauth",
            objects * 2
        )),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("{} sandbox", rotating.id)));
    assert!(!stdout.contains(&backed_up), "no secret in the output");
    assert_eq!(
        status_of(&app, owner.workspace_id, rotating.id).await,
        "NEEDS_REAUTH"
    );
    assert_eq!(
        status_of(&app, other.workspace_id, steady).await,
        "CONNECTED"
    );
    assert_eq!(
        app.db.count("SELECT COUNT(*) FROM resync_required").await,
        i64::try_from(objects * 2).unwrap()
    );
    assert_eq!(
        app.db
            .count("SELECT COUNT(*) FROM audit_log WHERE action = 'restore.mark'")
            .await,
        2,
        "one entry per workspace"
    );
    assert_eq!(
        app.db
            .count("SELECT COUNT(*) FROM audit_log WHERE action = 'connection.needs_reauth'")
            .await,
        1
    );
    // The flags show up as the wizard on the healthy connection's tab.
    let page = tab(&app, &other, &steady.to_string()).await;
    assert!(tag(&page, "resync-wizard").is_some());
    app.stop().await;
}

async fn resync_wizard_resets_marks_and_clears_the_flag(backend: Backend) {
    let app = common::sandbox_app(backend, &[("PLUGBOARD_SYNC_WORKERS", "0")]).await;
    heartbeat(&app).await;
    let owner = app.signup("owner@wizard.test", "Wizard").await;
    let id = connect_sandbox(&app, &owner).await;
    let conn: Uuid = id.parse().unwrap();
    let ws = WorkspaceId(owner.workspace_id);
    let page = tab(&app, &owner, &id).await;
    assert!(tag(&page, "resync-wizard").is_none(), "no flag, no wizard");
    for object in ["projects", "people"] {
        app.store
            .set_high_water_mark(ws, conn, object, "2026-11-30T08:00:00Z", true, now())
            .await
            .unwrap();
    }
    let backup = now() - time::Duration::days(1);
    let summary = plugboard::sync::resync::mark_after_restore(&app.state, backup)
        .await
        .unwrap();
    assert_eq!(summary.connections.len(), 1);
    let page = tab(&app, &owner, &id).await;
    assert!(tag(&page, "resync-wizard").is_some());
    let projects_box = tag(&page, "resync-object-projects").unwrap();
    assert!(
        projects_box.contains(" checked"),
        "flagged objects come checked"
    );

    // Nothing chosen, or a day in the future: refused at the field, with
    // what was typed kept, and nothing changed.
    let res = post_action(&app, &owner, &id, "resync", &[]).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = res.text().await.unwrap();
    assert!(body.contains("data-testid=\"error-objects\""), "{body}");
    let res = post_action(
        &app,
        &owner,
        &id,
        "resync",
        &[("objects", "projects"), ("from-projects", "2999-01-01")],
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = res.text().await.unwrap();
    assert!(body.contains("data-testid=\"error-from-projects\""));
    assert!(body.contains("value=\"2999-01-01\""));
    assert!(
        tag(&body, "resync-object-projects")
            .unwrap()
            .contains(" checked")
    );
    let flags = app.db.count("SELECT COUNT(*) FROM resync_required").await;
    assert!(flags > 0);
    assert!(jobs_of(&app, &owner).await.is_empty());

    let res = post_action(
        &app,
        &owner,
        &id,
        "resync",
        &[
            ("objects", "projects"),
            ("from-projects", "2026-11-01"),
            ("objects", "people"),
            ("from-people", ""),
        ],
    )
    .await;
    assert!(res.status().is_redirection(), "{}", res.status());
    assert_eq!(
        app.db.count("SELECT COUNT(*) FROM resync_required").await,
        0
    );
    assert_eq!(
        app.store
            .high_water_mark(ws, conn, "projects")
            .await
            .unwrap()
            .as_deref(),
        Some("2026-11-01T00:00:00Z"),
        "resumes from the chosen day"
    );
    assert_eq!(
        app.store.high_water_mark(ws, conn, "people").await.unwrap(),
        None,
        "read again from scratch"
    );
    let jobs = app
        .store
        .search_jobs(
            plugboard::connections::Viewer {
                workspace: ws,
                user: owner.id,
            },
            &plugboard::jobs::store::JobFilter::default(),
            10,
        )
        .await
        .unwrap();
    assert_eq!(jobs.len(), 2);
    for j in &jobs {
        assert_eq!(j.status, "queued");
        assert!(j.metadata.0.get("resync").is_some());
    }
    let projects = jobs
        .iter()
        .find(|j| j.object.as_deref() == Some("projects"))
        .unwrap();
    assert_eq!(
        projects.metadata.0["resync"]["resumeFrom"],
        "2026-11-01T00:00:00Z"
    );
    assert_eq!(
        app.db
            .count("SELECT COUNT(*) FROM audit_log WHERE action = 'sync.resync'")
            .await,
        1
    );
    let page = tab(&app, &owner, &id).await;
    assert!(tag(&page, "resync-wizard").is_none(), "the flag is cleared");
    assert!(page.contains("resync"));
    // Once cleared, a replayed form changes nothing.
    let res = post_action(&app, &owner, &id, "resync", &[("objects", "projects")]).await;
    assert!(res.status().is_redirection());
    assert_eq!(app.db.count("SELECT COUNT(*) FROM jobs").await, 2);
    app.stop().await;
}

async fn members_get_403_and_other_workspaces_404(backend: Backend) {
    let app = common::sandbox_app(backend, &[("PLUGBOARD_SYNC_WORKERS", "0")]).await;
    heartbeat(&app).await;
    let owner = app.signup("owner@hub.test", "Hub").await;
    let id = connect_sandbox(&app, &owner).await;
    post_action(&app, &owner, &id, "now", &[]).await;
    let job = jobs_of(&app, &owner).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let member = app.signup("member@hub.test", "Elsewhere").await;
    app.join(
        &owner.client,
        owner.workspace_id,
        &member.client,
        &member.email,
        "member",
    )
    .await;
    let csrf = app.csrf(&member.client, "/").await;
    let switch = member
        .client
        .post(app.url(&format!("/workspaces/{}/switch", owner.workspace_id)))
        .form(&[("_csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert!(switch.status().is_redirection());
    let res = member
        .client
        .get(app.url(&tab_path(&id)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let csrf = app.csrf(&member.client, "/").await;
    for action in ["now", "cancel", "resync"] {
        let res = member
            .client
            .post(app.url(&format!("/integrations/sandbox/projects/sync/{action}")))
            .form(&[
                ("_csrf", csrf.as_str()),
                ("connectionId", &id),
                ("job", &job),
                ("confirm", "yes"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{action}");
    }

    let stranger = app.signup("admin@other.test", "Other").await;
    let res = stranger
        .client
        .get(app.url(&tab_path(&id)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    // Their own connection, with the other workspace's job id: not found.
    let theirs = connect_sandbox(&app, &stranger).await;
    let csrf = app.csrf(&stranger.client, "/").await;
    for (connection, action) in [(&id, "now"), (&theirs, "cancel"), (&theirs, "retry")] {
        let res = stranger
            .client
            .post(app.url(&format!("/integrations/sandbox/projects/sync/{action}")))
            .form(&[
                ("_csrf", csrf.as_str()),
                ("connectionId", connection),
                ("job", &job),
                ("confirm", "yes"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{action}");
    }
    let jobs = jobs_of(&app, &owner).await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0]["status"], "queued", "nothing changed");
    app.stop().await;
}
