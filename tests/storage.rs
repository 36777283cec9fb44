//! Store behaviour on both backends: sessions, the vault's secrets table,
//! key rotation (10,000 secrets, interrupted and resumed).

mod common;

use std::sync::Arc;

use common::{Backend, ClientExt, SANDBOX_ID, SANDBOX_SECRET, sandbox_app, spawn_app};
use plugboard::connections::Viewer;
use plugboard::storage::now;
use plugboard::tenancy::WorkspaceId;
use plugboard::vault::store::{get_secret, put_secret, rotate_all};
use plugboard::vault::{KeyRing, Place, Secret, VaultError, generate_key_entry};
use time::Duration;
use uuid::Uuid;

on_both_backends!(
    sessions_expire_and_are_swept,
    secrets_round_trip_bound_to_their_row,
    rotation_of_ten_thousand_secrets_resumes_after_interruption,
    rotation_skips_what_it_cannot_open,
    records_store_counts_deletes_and_vanishes,
    leases_fence_pages_and_resume_from_checkpoints,
    rate_budgets_are_shared_by_every_process,
);

/// Two processes (two stores with their own pools) draw from one budget:
/// 60 a minute with a burst of 3 grants three requests at once, then one
/// a second, whichever process asks.
async fn rate_budgets_are_shared_by_every_process(backend: Backend) {
    use plugboard::sync::limits::Rate;
    use std::time::{Duration as StdDuration, UNIX_EPOCH};
    let app = spawn_app(backend).await;
    let other = plugboard::storage::connect(&app.settings).await.unwrap();
    let stores = [app.store.clone(), other.clone()];
    let rate = Rate::per_minute(60, 3);
    let t0 = UNIX_EPOCH + StdDuration::from_secs(1_795_000_000);
    for i in 0..3 {
        let granted = stores[i % 2]
            .take_rate_slot("provider:sandbox", rate, t0)
            .await
            .unwrap();
        assert_eq!(granted, None, "burst request {i}");
    }
    let wait = other
        .take_rate_slot("provider:sandbox", rate, t0)
        .await
        .unwrap()
        .expect("the fourth request waits");
    assert_eq!(wait, StdDuration::from_secs(1));
    // A denied request takes nothing: it is granted once its turn comes.
    let t1 = t0 + StdDuration::from_secs(1);
    assert_eq!(
        app.store
            .take_rate_slot("provider:sandbox", rate, t1)
            .await
            .unwrap(),
        None
    );
    assert!(
        other
            .take_rate_slot("provider:sandbox", rate, t1)
            .await
            .unwrap()
            .is_some()
    );
    // Budgets are independent per key.
    assert_eq!(
        other
            .take_rate_slot("connection:x", rate, t1)
            .await
            .unwrap(),
        None
    );
    other.close().await;
    app.stop().await;
}

async fn sessions_expire_and_are_swept(backend: Backend) {
    let app = spawn_app(backend).await;
    let store = &app.store;
    let data = std::collections::HashMap::from([("k".to_owned(), serde_json::json!("v"))]);
    let live = b"live-session-hash".to_vec();
    let dead = b"dead-session-hash".to_vec();
    assert!(
        store
            .session_insert(&live, None, &data, now() + Duration::hours(1))
            .await
            .unwrap()
    );
    assert!(
        !store
            .session_insert(&live, None, &data, now() + Duration::hours(1))
            .await
            .unwrap(),
        "ids never collide silently"
    );
    assert!(
        store
            .session_insert(&dead, None, &data, now() - Duration::seconds(1))
            .await
            .unwrap()
    );
    // Saving a session deleted meanwhile (log-out, password reset) doesn't
    // bring it back.
    let gone = b"gone-session-hash".to_vec();
    store
        .session_update(&gone, None, &data, now() + Duration::hours(1))
        .await
        .unwrap();
    assert!(store.session_load(&gone, now()).await.unwrap().is_none());
    assert!(store.session_load(&live, now()).await.unwrap().is_some());
    assert!(
        store.session_load(&dead, now()).await.unwrap().is_none(),
        "expired sessions don't load"
    );
    // The app's own maintenance loop runs the same sweep and may get there
    // first; either way only the live session may remain.
    let swept = store.session_delete_expired(now()).await.unwrap();
    assert!(swept <= 1, "swept {swept}");
    assert_eq!(app.db.count("SELECT COUNT(*) FROM sessions").await, 1);
    assert!(store.session_load(&live, now()).await.unwrap().is_some());
    app.stop().await;
}

/// A workspace to hang secrets on (secrets reference workspaces).
async fn workspace(app: &common::TestApp) -> WorkspaceId {
    WorkspaceId(
        app.signup(
            &format!("{}@vault.example", Uuid::new_v4().simple()),
            "Vault",
        )
        .await
        .workspace_id,
    )
}

async fn secrets_round_trip_bound_to_their_row(backend: Backend) {
    let app = spawn_app(backend).await;
    let ws = workspace(&app).await;
    let ring = KeyRing::parse(common::test_keys()).unwrap();
    let row = Uuid::now_v7();
    let place = Place {
        workspace_id: ws,
        owner_kind: "connection",
        owner_id: row,
        field: "refresh_token",
    };
    let secret = Secret::new("1//refresh-token-plaintext");
    put_secret(app.store.as_ref(), &ring, &place, &secret)
        .await
        .unwrap();
    let back = get_secret(app.store.as_ref(), &ring, &place)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(back.expose(), secret.expose());
    assert!(
        !app.db.dump_text().await.contains("refresh-token-plaintext"),
        "plaintext at rest"
    );

    // Overwrite keeps one row.
    put_secret(app.store.as_ref(), &ring, &place, &Secret::new("second"))
        .await
        .unwrap();
    assert_eq!(app.db.count("SELECT COUNT(*) FROM secrets").await, 1);

    // Copy the ciphertext to another row: it refuses to open there.
    let other = Place {
        owner_id: Uuid::now_v7(),
        ..place
    };
    let sealed = app.store.get_sealed(&place).await.unwrap().unwrap();
    app.store
        .put_sealed(&other, ring.primary_key_id(), &sealed, now())
        .await
        .unwrap();
    let err = get_secret(app.store.as_ref(), &ring, &other)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("authentication"), "{err}");

    // Another workspace's lookup of the same owner finds nothing.
    let ws2 = workspace(&app).await;
    let foreign = Place {
        workspace_id: ws2,
        ..place
    };
    assert!(
        get_secret(app.store.as_ref(), &ring, &foreign)
            .await
            .unwrap()
            .is_none()
    );

    assert_eq!(
        app.store
            .delete_sealed(ws, "connection", row)
            .await
            .unwrap(),
        1
    );
    assert!(
        get_secret(app.store.as_ref(), &ring, &place)
            .await
            .unwrap()
            .is_none()
    );
    app.stop().await;
}

async fn rotation_of_ten_thousand_secrets_resumes_after_interruption(backend: Backend) {
    let app = spawn_app(backend).await;
    let ws = workspace(&app).await;
    let old_entry = generate_key_entry("old").unwrap();
    let new_entry = generate_key_entry("new").unwrap();
    let old_ring = Arc::new(KeyRing::parse(&old_entry).unwrap());
    const N: usize = 10_000;

    // Seal with the old key, in parallel chunks to keep the test quick.
    let mut handles = Vec::new();
    for chunk in 0..8 {
        let store = app.store.clone();
        let ring = old_ring.clone();
        handles.push(tokio::spawn(async move {
            for i in (chunk..N).step_by(8) {
                let owner = Uuid::from_u128(i as u128 + 1);
                let place = Place {
                    workspace_id: ws,
                    owner_kind: "bench",
                    owner_id: owner,
                    field: "token",
                };
                put_secret(
                    store.as_ref(),
                    &ring,
                    &place,
                    &Secret::new(format!("secret-{i}")),
                )
                .await
                .unwrap();
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    assert_eq!(
        app.store.count_sealed_by_key().await.unwrap(),
        vec![("old".to_owned(), N as i64)]
    );

    // New key first, old kept: everything still opens before rotation.
    let ring = KeyRing::parse(&format!("{new_entry},{old_entry}")).unwrap();
    let sample = Place {
        workspace_id: ws,
        owner_kind: "bench",
        owner_id: Uuid::from_u128(42),
        field: "token",
    };
    assert_eq!(
        get_secret(app.store.as_ref(), &ring, &sample)
            .await
            .unwrap()
            .unwrap()
            .expose(),
        "secret-41"
    );

    // Interrupted after 3 batches of 1,000.
    let partial = rotate_all(app.store.as_ref(), &ring, 1_000, Some(3), |_| {})
        .await
        .unwrap();
    assert_eq!(partial.rotated, 3_000);
    let counts = app.store.count_sealed_by_key().await.unwrap();
    assert_eq!(
        counts,
        vec![("new".to_owned(), 3_000), ("old".to_owned(), 7_000)]
    );

    // Resumed: the rest, nothing twice.
    let rest = rotate_all(app.store.as_ref(), &ring, 1_000, None, |_| {})
        .await
        .unwrap();
    assert_eq!(rest.rotated, 7_000);
    assert_eq!(rest.failed, 0);
    assert_eq!(
        app.store.count_sealed_by_key().await.unwrap(),
        vec![("new".to_owned(), N as i64)]
    );

    // The old key can now be retired: the new one alone opens everything.
    let new_only = KeyRing::parse(&new_entry).unwrap();
    for i in [0usize, 1, 4_999, N - 1] {
        let place = Place {
            workspace_id: ws,
            owner_kind: "bench",
            owner_id: Uuid::from_u128(i as u128 + 1),
            field: "token",
        };
        assert_eq!(
            get_secret(app.store.as_ref(), &new_only, &place)
                .await
                .unwrap()
                .unwrap()
                .expose(),
            format!("secret-{i}")
        );
    }
    // And a second run finds nothing to do.
    let again = rotate_all(app.store.as_ref(), &ring, 1_000, None, |_| {})
        .await
        .unwrap();
    assert_eq!((again.rotated, again.batches), (0, 0));
    app.stop().await;
}

async fn rotation_skips_what_it_cannot_open(backend: Backend) {
    let app = spawn_app(backend).await;
    let ws = workspace(&app).await;
    let lost = KeyRing::parse(&generate_key_entry("lost").unwrap()).unwrap();
    let current = KeyRing::parse(&generate_key_entry("cur").unwrap()).unwrap();
    for i in 0..3u128 {
        let place = Place {
            workspace_id: ws,
            owner_kind: "x",
            owner_id: Uuid::from_u128(i + 1),
            field: "f",
        };
        put_secret(app.store.as_ref(), &lost, &place, &Secret::new("s"))
            .await
            .unwrap();
    }
    let report = rotate_all(app.store.as_ref(), &current, 2, None, |_| {})
        .await
        .unwrap();
    assert_eq!(
        (report.rotated, report.failed),
        (0, 3),
        "terminates instead of retrying forever"
    );
    let place = Place {
        workspace_id: ws,
        owner_kind: "x",
        owner_id: Uuid::from_u128(1),
        field: "f",
    };
    let err = get_secret(app.store.as_ref(), &current, &place)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("\"lost\""), "{err}");
    let _ = VaultError::Tampered;
    app.stop().await;
}

async fn records_store_counts_deletes_and_vanishes(backend: Backend) {
    use plugboard::sync::records::{RecordBatch, RecordCounts, RecordRow};
    let app = sandbox_app(backend, &[]).await;
    let owner = app.signup("rec@example.com", "Rec").await;
    let res = owner
        .client
        .post_json(
            app.url("/api/integrations/sandbox/connect"),
            &serde_json::json!({"flow": "client_credentials", "clientId": SANDBOX_ID, "clientSecret": SANDBOX_SECRET, "headers": {"X-Sandbox-Company": "acme"}}),
        )
        .await;
    let conn: serde_json::Value = res.json().await.unwrap();
    let connection_id: Uuid = conn["id"].as_str().unwrap().parse().unwrap();
    let ws = WorkspaceId(owner.workspace_id);
    let store = app.store.clone();
    let row = |id: &str, name: &str, deleted: bool| {
        RecordRow::new(
            id.into(),
            serde_json::json!({"id": id, "name": name}),
            false,
            deleted,
        )
    };
    let write = |rows: Vec<RecordRow>, run_id: Uuid, full_read: bool| {
        let store = store.clone();
        async move {
            store
                .upsert_records(&RecordBatch {
                    workspace: ws,
                    connection_id,
                    object: "projects",
                    run_id,
                    full_read,
                    rows: &rows,
                    at: now(),
                })
                .await
                .unwrap()
        }
    };
    let run1 = Uuid::now_v7();
    let c = write(
        vec![
            row("p1", "One", false),
            row("p2", "Two", false),
            row("p3", "Three", false),
        ],
        run1,
        true,
    )
    .await;
    assert_eq!(
        c,
        RecordCounts {
            created: 3,
            updated: 0,
            unchanged: 0,
            deleted: 0
        }
    );
    // The same page again (a retried page): nothing duplicated, nothing rewritten.
    let c = write(
        vec![
            row("p1", "One", false),
            row("p2", "Two", false),
            row("p3", "Three", false),
        ],
        run1,
        true,
    )
    .await;
    assert_eq!(
        c,
        RecordCounts {
            created: 0,
            updated: 0,
            unchanged: 3,
            deleted: 0
        }
    );
    // A second full read: p1 renamed, p2 marked deleted by the provider, p3 gone.
    let run2 = Uuid::now_v7();
    let c = write(
        vec![row("p1", "One!", false), row("p2", "Two", true)],
        run2,
        true,
    )
    .await;
    assert_eq!(
        c,
        RecordCounts {
            created: 0,
            updated: 1,
            unchanged: 0,
            deleted: 1
        }
    );
    assert_eq!(
        app.store
            .mark_vanished(ws, connection_id, "projects", run2, now())
            .await
            .unwrap(),
        1
    );
    let stored = app
        .store
        .list_records(ws, connection_id, "projects", 10)
        .await
        .unwrap();
    assert_eq!(stored.len(), 3, "deleted records are kept, marked");
    let by_id = |id: &str| stored.iter().find(|r| r.external_id == id).unwrap().clone();
    assert_eq!(by_id("p1").data.0["name"], "One!");
    assert!(by_id("p1").deleted_at.is_none());
    assert!(by_id("p2").deleted_at.is_some() && by_id("p3").deleted_at.is_some());
    // A record that comes back is live again.
    let c = write(vec![row("p3", "Three", false)], Uuid::now_v7(), false).await;
    assert_eq!(c.updated, 1);
    // Delta reads don't touch unchanged rows and never mark vanished ones.
    let c = write(vec![row("p1", "One!", false)], Uuid::now_v7(), false).await;
    assert_eq!(c.unchanged, 1);
    // Another workspace sees none of it.
    let other = app.signup("other@example.com", "Other").await;
    assert!(
        app.store
            .list_records(
                WorkspaceId(other.workspace_id),
                connection_id,
                "projects",
                10
            )
            .await
            .unwrap()
            .is_empty()
    );
    // High-water marks.
    assert_eq!(
        app.store
            .high_water_mark(ws, connection_id, "projects")
            .await
            .unwrap(),
        None
    );
    app.store
        .set_high_water_mark(
            ws,
            connection_id,
            "projects",
            "2026-11-20T00:00:00Z",
            true,
            now(),
        )
        .await
        .unwrap();
    app.store
        .set_high_water_mark(
            ws,
            connection_id,
            "projects",
            "2026-11-21T00:00:00Z",
            false,
            now(),
        )
        .await
        .unwrap();
    assert_eq!(
        app.store
            .high_water_mark(ws, connection_id, "projects")
            .await
            .unwrap()
            .as_deref(),
        Some("2026-11-21T00:00:00Z")
    );
    app.stop().await;
}

/// A worker dies after page 1: its lease expires, another worker claims the
/// job, resumes from the checkpoint, and the dead worker's late write is
/// refused. The store ends exactly as an uninterrupted run would.
async fn leases_fence_pages_and_resume_from_checkpoints(backend: Backend) {
    use plugboard::jobs::JobStatus;
    use plugboard::jobs::store::NewJob;
    use plugboard::sync::leases::PageCommit;
    use plugboard::sync::records::{RecordBatch, RecordRow};
    // The test plays both workers; the app's own must not take the job.
    let app = sandbox_app(backend, &[("PLUGBOARD_SYNC_WORKERS", "0")]).await;
    let owner = app.signup("jobs@example.com", "Jobs").await;
    let conn: serde_json::Value = owner
        .client
        .post_json(
            app.url("/api/integrations/sandbox/connect"),
            &serde_json::json!({"flow": "client_credentials", "clientId": SANDBOX_ID, "clientSecret": SANDBOX_SECRET, "headers": {"X-Sandbox-Company": "acme"}}),
        )
        .await
        .json()
        .await
        .unwrap();
    let connection_id: Uuid = conn["id"].as_str().unwrap().parse().unwrap();
    let ws = WorkspaceId(owner.workspace_id);
    let store = app.store.clone();
    let job_id = Uuid::now_v7();
    store
        .create_job(&NewJob {
            id: job_id,
            workspace_id: ws,
            connection_id: Some(connection_id),
            provider: "sandbox",
            object: Some("projects"),
            kind: "sync",
            status: JobStatus::Queued,
            idempotency_key: None,
            metadata: serde_json::json!({}),
            requested_by: None,
            at: now(),
        })
        .await
        .unwrap();
    let (worker_a, worker_b) = (Uuid::now_v7(), Uuid::now_v7());
    let lease_for = |secs: i64| now() + Duration::seconds(secs);
    let claimed = store
        .claim_sync_job(worker_a, now(), lease_for(60))
        .await
        .unwrap()
        .expect("A claims the job");
    assert_eq!((claimed.job.id, claimed.attempts), (job_id, 1));
    assert!(
        store
            .claim_sync_job(worker_b, now(), lease_for(60))
            .await
            .unwrap()
            .is_none(),
        "held jobs aren't claimed twice"
    );
    let lease_a = claimed.lease(worker_a);

    let row = |id: &str| RecordRow::new(id.into(), serde_json::json!({"id": id}), false, false);
    let commit = |lease: plugboard::sync::leases::Lease,
                  checkpoint: serde_json::Value,
                  rows: Vec<RecordRow>| {
        let store = store.clone();
        async move {
            let checkpoint_for = move |_: plugboard::sync::records::RecordCounts| {
                (checkpoint.clone(), serde_json::json!({}))
            };
            store
                .commit_record_page(
                    &lease,
                    &PageCommit {
                        checkpoint: &checkpoint_for,
                        lease_until: now() + Duration::seconds(60),
                        dry_run: false,
                    },
                    &RecordBatch {
                        workspace: ws,
                        connection_id,
                        object: "projects",
                        run_id: job_id,
                        full_read: true,
                        rows: &rows,
                        at: now(),
                    },
                )
                .await
                .unwrap()
        }
    };
    let c = commit(
        lease_a,
        serde_json::json!({"at": "offset", "offset": 2}),
        vec![row("p1"), row("p2")],
    )
    .await;
    assert_eq!(c.unwrap().created, 2);

    // A dies: its lease runs out. B claims and sees A's checkpoint.
    app.db
        .execute("UPDATE jobs SET lease_until = '2000-01-01T00:00:00Z'")
        .await;
    let resumed = store
        .claim_sync_job(worker_b, now(), lease_for(60))
        .await
        .unwrap()
        .expect("B reclaims");
    assert_eq!((resumed.job.id, resumed.attempts), (job_id, 2));
    assert_eq!(
        resumed.checkpoint.0,
        serde_json::json!({"at": "offset", "offset": 2})
    );
    let lease_b = resumed.lease(worker_b);

    // A wakes up and tries to write page 2: refused, nothing written.
    assert!(
        commit(
            lease_a,
            serde_json::json!({"at": "offset", "offset": 4}),
            vec![row("zombie")]
        )
        .await
        .is_none()
    );
    assert!(!store.heartbeat_job(&lease_a, lease_for(60)).await.unwrap());
    assert!(store.heartbeat_job(&lease_b, lease_for(60)).await.unwrap());

    // B writes page 2, and again (a retried page): no duplicates.
    let c = commit(
        lease_b,
        serde_json::json!({"at": "offset", "offset": 3}),
        vec![row("p3")],
    )
    .await
    .unwrap();
    assert_eq!(c.created, 1);
    let c = commit(lease_b, serde_json::json!({"at": "done"}), vec![row("p3")])
        .await
        .unwrap();
    assert_eq!((c.created, c.unchanged), (0, 1));
    assert!(
        !store
            .finish_sync_job(
                &lease_a,
                JobStatus::Succeeded,
                &serde_json::json!({}),
                None,
                now(),
                3
            )
            .await
            .unwrap()
    );
    assert!(
        store
            .finish_sync_job(
                &lease_b,
                JobStatus::Succeeded,
                &serde_json::json!({"created": 3}),
                None,
                now(),
                3
            )
            .await
            .unwrap()
    );
    let ids: Vec<String> = store
        .list_records(ws, connection_id, "projects", 10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.external_id)
        .collect();
    assert_eq!(
        ids,
        vec!["p1", "p2", "p3"],
        "exactly the uninterrupted run's store"
    );
    let job = store.get_job(ws, job_id).await.unwrap().unwrap();
    assert_eq!(job.status, "succeeded");

    // Cancelled jobs aren't claimed; logs belong to their workspace.
    let queued = Uuid::now_v7();
    store
        .create_job(&NewJob {
            id: queued,
            workspace_id: ws,
            connection_id: Some(connection_id),
            provider: "sandbox",
            object: Some("people"),
            kind: "sync",
            status: JobStatus::Queued,
            idempotency_key: None,
            metadata: serde_json::json!({}),
            requested_by: None,
            at: now(),
        })
        .await
        .unwrap();
    assert!(store.cancel_job(ws, queued, now()).await.unwrap());
    assert!(
        store
            .claim_sync_job(worker_a, now(), lease_for(60))
            .await
            .unwrap()
            .is_none()
    );
    store
        .append_job_log(ws, job_id, "info", "page 1: 2 records", now())
        .await
        .unwrap();
    let viewer = Viewer {
        workspace: ws,
        user: owner.id,
    };
    assert_eq!(store.job_logs(viewer, job_id).await.unwrap().len(), 1);
    let other = app.signup("x@example.com", "X").await;
    assert!(
        store
            .job_logs(
                Viewer {
                    workspace: WorkspaceId(other.workspace_id),
                    user: other.id,
                },
                job_id
            )
            .await
            .unwrap()
            .is_empty()
    );
    app.stop().await;
}
