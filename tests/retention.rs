//! Job logs and the audit log are pruned past their retention, and only
//! what is past it.

mod common;

use common::{Backend, ClientExt, SANDBOX_ID, SANDBOX_SECRET, sandbox_app};
use plugboard::audit::AuditEntry;
use plugboard::storage::now;
use serde_json::{Value, json};
use time::Duration;

on_both_backends!(old_log_lines_and_audit_entries_are_pruned_recent_ones_kept);

async fn old_log_lines_and_audit_entries_are_pruned_recent_ones_kept(backend: Backend) {
    let app = sandbox_app(
        backend,
        &[
            ("PLUGBOARD_JOB_LOG_RETENTION_DAYS", "30"),
            ("PLUGBOARD_AUDIT_RETENTION_DAYS", "90"),
        ],
    )
    .await;
    let owner = app.signup("keep@example.com", "Keep").await;
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
    assert!(conn["id"].is_string(), "{conn}");
    let jobs: Value = owner
        .client
        .post_json(
            app.url("/api/integrations/sandbox/projects/sync"),
            &json!({}),
        )
        .await
        .json()
        .await
        .unwrap();
    let job: uuid::Uuid = jobs[0]["jobId"].as_str().unwrap().parse().unwrap();
    let store = &app.state.store;
    let ws = plugboard::tenancy::WorkspaceId(owner.workspace_id);

    // Two old lines and an old audit entry, beside today's.
    for days in [31, 400] {
        store
            .append_job_log(ws, job, "info", "old line", now() - Duration::days(days))
            .await
            .unwrap();
    }
    store
        .append_job_log(ws, job, "info", "recent line", now() - Duration::days(29))
        .await
        .unwrap();
    let mut old = AuditEntry::new(Some(ws), None, "member.invited");
    old.created_at = now() - Duration::days(91);
    store.record_audit(&old).await.unwrap();
    let mut recent = AuditEntry::new(Some(ws), None, "member.invited");
    recent.created_at = now() - Duration::days(89);
    store.record_audit(&recent).await.unwrap();
    let audit_before = app.db.count("SELECT count(*) FROM audit_log").await;

    let pruned = plugboard::retention::prune(&app.state, now())
        .await
        .unwrap();
    assert_eq!(pruned.job_log_lines, 2);
    assert_eq!(pruned.audit_entries, 1);
    assert_eq!(
        app.db
            .count("SELECT count(*) FROM job_logs WHERE message = 'old line'")
            .await,
        0
    );
    assert_eq!(
        app.db
            .count("SELECT count(*) FROM job_logs WHERE message = 'recent line'")
            .await,
        1
    );
    assert_eq!(
        app.db.count("SELECT count(*) FROM audit_log").await,
        audit_before - 1
    );
    // A second pass finds nothing more.
    let again = plugboard::retention::prune(&app.state, now())
        .await
        .unwrap();
    assert_eq!(again, plugboard::retention::Pruned::default());
}
