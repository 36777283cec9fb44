//! Sync rules end to end: saving with rising revisions, precise rejections
//! that change nothing, admins only and workspaces apart, concurrent edits,
//! and the planner — one job per due slot, jitter bounds, the revision in
//! the job's key, and how each initialSyncMode seeds the high-water mark.
//!
//! The apps run without sync workers or the planner loop, so nothing moves
//! jobs or rules behind the test's back; the tests call the planner.

mod common;

use common::{Backend, ClientExt, SANDBOX_ID, SANDBOX_SECRET, TestApp, TestUser, api_error};
use plugboard::rules::format_mark;
use plugboard::rules::planner::{PlanReport, plan_due};
use plugboard::tenancy::WorkspaceId;
use reqwest::StatusCode;
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

on_both_backends!(
    rules_round_trip_and_invalid_ones_change_nothing,
    admins_only_and_workspaces_apart,
    concurrent_edits_keep_revisions_distinct,
    planner_queues_one_job_per_due_slot,
    initial_sync_modes_seed_the_high_water_mark,
);

async fn app(backend: Backend) -> TestApp {
    common::sandbox_app(
        backend,
        &[
            ("PLUGBOARD_SYNC_WORKERS", "0"),
            ("PLUGBOARD_PLANNER_INTERVAL_SECS", "0"),
        ],
    )
    .await
}

async fn connect(app: &TestApp, user: &TestUser) -> Uuid {
    let res = user
        .client
        .post_json(
            app.url("/api/integrations/sandbox/connect"),
            &json!({"flow": "client_credentials", "clientId": SANDBOX_ID, "clientSecret": SANDBOX_SECRET, "headers": {"X-Sandbox-Company": "acme"}}),
        )
        .await;
    assert!(res.status().is_success(), "connect: {}", res.status());
    let conn: Value = res.json().await.unwrap();
    conn["id"].as_str().unwrap().parse().unwrap()
}

fn rules_url(app: &TestApp, object: &str) -> String {
    app.url(&format!("/api/integrations/sandbox/{object}/rules"))
}

async fn put(user: &TestUser, url: &str, body: &Value) -> reqwest::Response {
    user.client.put(url).json(body).send().await.unwrap()
}

async fn put_ok(user: &TestUser, url: &str, body: &Value) -> Value {
    let res = put(user, url, body).await;
    let status = res.status();
    let saved: Value = res.json().await.unwrap();
    assert!(status.is_success(), "{status}: {saved}");
    saved
}

fn time_of(value: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(value.as_str().expect("a timestamp"), &Rfc3339).unwrap()
}

fn now() -> OffsetDateTime {
    plugboard::storage::now()
}

async fn plan(app: &TestApp, at: OffsetDateTime) -> PlanReport {
    plan_due(&app.state, at).await.expect("planner pass")
}

/// Jobs of one sandbox object, newest first.
async fn jobs(app: &TestApp, user: &TestUser, object: &str) -> Vec<Value> {
    user.client
        .get_json(app.url(&format!("/api/integrations/sandbox/jobs?object={object}")))
        .await
        .as_array()
        .unwrap()
        .clone()
}

async fn rules_round_trip_and_invalid_ones_change_nothing(backend: Backend) {
    let app = app(backend).await;
    let owner = app.signup("rules@example.com", "Rules").await;
    let connection_id = connect(&app, &owner).await;
    let url = rules_url(&app, "projects");
    assert_eq!(owner.client.get_json(url.clone()).await, json!([]));

    let before = now();
    let body = json!({
        "interval": {"minutes": 60},
        "behaviour": "delta",
        "fields": ["id", "name", "updated_at"],
        "filters": [{"field": "status", "op": "eq", "value": "active"}],
        "includeSubprojects": true
    });
    let res = put(&owner, &url, &body).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let first: Value = res.json().await.unwrap();
    let after = now();
    assert_eq!(first["revision"], 1, "{first}");
    assert_eq!(first["connectionId"], connection_id.to_string());
    // The sandbox's projects are read parents-only: forced, and said so.
    assert_eq!(first["rule"]["includeSubprojects"], false, "{first}");
    assert_eq!(first["adjusted"][0]["field"], "/includeSubprojects");
    assert_eq!(first["rule"]["conflictPolicy"], "upsert");
    assert_eq!(first["rule"]["initialSyncMode"], "full_once");
    let next = time_of(&first["nextRun"]);
    assert!(
        next >= before + Duration::minutes(54) && next <= after + Duration::minutes(66),
        "next run {next} not within ±10 % of an hour after {before}"
    );

    let listed = owner.client.get_json(url.clone()).await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["revision"], 1);
    assert_eq!(listed[0]["rule"], first["rule"]);
    assert_eq!(listed[0]["id"], first["id"]);

    // Saved again (naming the connection): same rule, next revision.
    let mut again = body.clone();
    again["connectionId"] = json!(connection_id);
    again["dryRun"] = json!(true);
    let res = put(&owner, &url, &again).await;
    assert_eq!(res.status(), StatusCode::OK);
    let second: Value = res.json().await.unwrap();
    assert_eq!(second["revision"], 2);
    assert_eq!(second["id"], first["id"]);
    assert_eq!(second["rule"]["dryRun"], true);
    assert!(
        second["rule"].get("connectionId").is_none(),
        "the envelope isn't stored"
    );

    // Each bad rule names where it is wrong, and changes nothing.
    let with = |key: &str, value: Value| {
        let mut doc = body.clone();
        doc[key] = value;
        doc
    };
    let cases = [
        (with("behaviour", json!("sometimes")), "/behaviour"),
        (with("deletionPolicy", json!("shred")), "/deletionPolicy"),
        (with("fields", json!(["id", "name", "colour"])), "/fields/2"),
        (
            with(
                "filters",
                json!([{"field": "name", "op": "eq", "value": "x"}, {"field": "owner", "op": "eq", "value": 1}]),
            ),
            "/filters/1/field",
        ),
        (
            with("interval", json!({"cron": "every tuesday"})),
            "/interval/cron",
        ),
        (
            with("interval", json!({"cron": "*/2 * * * *"})),
            "/interval/cron",
        ),
        (with("interval", json!({"minutes": 2})), "/interval/minutes"),
        (
            with("initialSyncMode", json!("delta_only_after_date")),
            "/initialSyncSince",
        ),
        (with("behavior", json!("full")), "/behavior"),
        (with("revision", json!("two")), "/revision"),
        (with("connectionId", json!("not-an-id")), "/connectionId"),
    ];
    for (doc, pointer) in cases {
        let err = api_error(
            put(&owner, &url, &doc).await,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
        assert_eq!(err["field"], pointer, "{doc}: {err}");
        assert!(!err["message"].as_str().unwrap().is_empty());
    }
    // Delta on an object that can't read deltas.
    let people = rules_url(&app, "people");
    let err = api_error(
        put(
            &owner,
            &people,
            &json!({"interval": {"minutes": 60}, "behaviour": "delta"}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(err["field"], "/behaviour", "{err}");
    assert_eq!(owner.client.get_json(people.clone()).await, json!([]));
    let unchanged = owner.client.get_json(url.clone()).await;
    assert_eq!(unchanged[0]["revision"], 2);
    assert_eq!(unchanged[0]["rule"], second["rule"]);

    // Unknown providers and objects, a connection of no one's.
    let res = put(
        &owner,
        &app.url("/api/integrations/nope/projects/rules"),
        &body,
    )
    .await;
    api_error(res, StatusCode::NOT_FOUND).await;
    api_error(
        put(&owner, &rules_url(&app, "invoices"), &body).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    api_error(
        put(&owner, &url, &with("connectionId", json!(Uuid::new_v4()))).await,
        StatusCode::NOT_FOUND,
    )
    .await;

    // An expected revision that moved on is a 409; the current one saves.
    let err = api_error(
        put(&owner, &url, &with("revision", json!(1))).await,
        StatusCode::CONFLICT,
    )
    .await;
    assert_eq!(err["field"], "revision");
    let third = put_ok(&owner, &url, &with("revision", json!(2))).await;
    assert_eq!(third["revision"], 3);

    // Every save is audited.
    let audit = owner
        .client
        .get_json(app.url(&format!("/api/workspaces/{}/audit", owner.workspace_id)))
        .await;
    let saves: Vec<&Value> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "sync_rule.save")
        .collect();
    assert_eq!(saves.len(), 3, "{audit}");
    assert_eq!(saves[0]["details"]["revision"], 3);
    assert_eq!(saves[0]["targetId"], first["id"]);

    // Deleted once; then there is nothing to delete.
    let res = owner.client.delete_json(url.clone()).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(owner.client.get_json(url.clone()).await, json!([]));
    api_error(
        owner.client.delete_json(url.clone()).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    app.stop().await;
}

async fn admins_only_and_workspaces_apart(backend: Backend) {
    let app = app(backend).await;
    let admin = app.signup("admin@a.example", "A").await;
    let a_connection = connect(&app, &admin).await;
    let url = rules_url(&app, "projects");
    let body = json!({"interval": {"minutes": 30}, "behaviour": "full"});
    let a_rule = put_ok(&admin, &url, &body).await;

    // A member of A gets what every admin-only route answers them.
    let member = app.signup("member@a.example", "Member's own").await;
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
            app.url(&format!("/api/workspaces/{}/switch", admin.workspace_id)),
            &json!({}),
        )
        .await;
    assert!(res.status().is_success());
    api_error(
        member.client.get(url.clone()).send().await.unwrap(),
        StatusCode::FORBIDDEN,
    )
    .await;
    api_error(put(&member, &url, &body).await, StatusCode::FORBIDDEN).await;
    api_error(
        member.client.delete_json(url.clone()).await,
        StatusCode::FORBIDDEN,
    )
    .await;

    // Workspace B's admin, without a sandbox connection: nothing there.
    let outsider = app.signup("admin@b.example", "B").await;
    api_error(
        outsider.client.get(url.clone()).send().await.unwrap(),
        StatusCode::NOT_FOUND,
    )
    .await;
    api_error(put(&outsider, &url, &body).await, StatusCode::NOT_FOUND).await;
    api_error(
        outsider.client.delete_json(url.clone()).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    // Naming A's connection doesn't help.
    let mut aimed = body.clone();
    aimed["connectionId"] = json!(a_connection);
    api_error(put(&outsider, &url, &aimed).await, StatusCode::NOT_FOUND).await;
    let foreign = format!("{url}?connectionId={a_connection}");
    api_error(
        outsider.client.get(foreign.clone()).send().await.unwrap(),
        StatusCode::NOT_FOUND,
    )
    .await;
    api_error(
        outsider.client.delete_json(foreign).await,
        StatusCode::NOT_FOUND,
    )
    .await;

    // With its own connection B sees only its own rules, never A's.
    connect(&app, &outsider).await;
    assert_eq!(outsider.client.get_json(url.clone()).await, json!([]));
    let b_rule = put_ok(&outsider, &url, &body).await;
    assert_eq!(b_rule["revision"], 1);
    assert_ne!(b_rule["id"], a_rule["id"]);
    let seen = outsider.client.get_json(url.clone()).await;
    assert_eq!(seen.as_array().unwrap().len(), 1);
    assert_eq!(seen[0]["id"], b_rule["id"]);
    let a_view = admin.client.get_json(url.clone()).await;
    assert_eq!(a_view.as_array().unwrap().len(), 1);
    assert_eq!(a_view[0]["id"], a_rule["id"]);
    assert_eq!(a_view[0]["revision"], 1);
    app.stop().await;
}

async fn concurrent_edits_keep_revisions_distinct(backend: Backend) {
    let app = app(backend).await;
    let owner = app.signup("race@example.com", "Race").await;
    connect(&app, &owner).await;
    let url = rules_url(&app, "projects");
    put_ok(
        &owner,
        &url,
        &json!({"interval": {"minutes": 60}, "behaviour": "full"}),
    )
    .await;

    // Last write wins, but each write gets its own revision.
    let a = json!({"interval": {"minutes": 15}, "behaviour": "full"});
    let b = json!({"interval": {"minutes": 45}, "behaviour": "delta"});
    let (ra, rb) = tokio::join!(put(&owner, &url, &a), put(&owner, &url, &b));
    assert_eq!(ra.status(), StatusCode::OK);
    assert_eq!(rb.status(), StatusCode::OK);
    let ra: Value = ra.json().await.unwrap();
    let rb: Value = rb.json().await.unwrap();
    let mut revisions = [
        ra["revision"].as_i64().unwrap(),
        rb["revision"].as_i64().unwrap(),
    ];
    revisions.sort();
    assert_eq!(revisions, [2, 3], "{ra} {rb}");
    let last = if ra["revision"] == 3 { &ra } else { &rb };
    let stored = owner.client.get_json(url.clone()).await;
    assert_eq!(stored[0]["revision"], 3);
    assert_eq!(stored[0]["rule"], last["rule"], "the later write is stored");

    // Both naming the revision they read: one saves, the other is told.
    let mut a = a;
    let mut b = b;
    a["revision"] = json!(3);
    b["revision"] = json!(3);
    let (ra, rb) = tokio::join!(put(&owner, &url, &a), put(&owner, &url, &b));
    let mut statuses = [ra.status(), rb.status()];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::CONFLICT]);
    let (won, lost) = if ra.status() == StatusCode::OK {
        (ra, rb)
    } else {
        (rb, ra)
    };
    let won: Value = won.json().await.unwrap();
    assert_eq!(won["revision"], 4);
    let err = api_error(lost, StatusCode::CONFLICT).await;
    assert_eq!(err["field"], "revision");
    assert!(
        err["message"].as_str().unwrap().contains("revision 4"),
        "{err}"
    );
    let stored = owner.client.get_json(url).await;
    assert_eq!(stored[0]["revision"], 4);
    assert_eq!(stored[0]["rule"], won["rule"]);
    app.stop().await;
}

async fn planner_queues_one_job_per_due_slot(backend: Backend) {
    let app = app(backend).await;
    let owner = app.signup("plan@example.com", "Plan").await;
    let connection_id = connect(&app, &owner).await;
    let url = rules_url(&app, "projects");
    let body =
        json!({"interval": {"minutes": 60}, "behaviour": "full", "deletionPolicy": "ignore"});
    let rule = put_ok(&owner, &url, &body).await;
    let rule_id = rule["id"].as_str().unwrap().to_owned();
    let slot = time_of(&rule["nextRun"]);

    // Not due yet.
    assert_eq!(plan(&app, slot - Duration::seconds(1)).await.claimed, 0);
    assert!(jobs(&app, &owner, "projects").await.is_empty());

    // Due: two planners at once queue it once.
    let (a, b) = tokio::join!(plan(&app, slot), plan(&app, slot));
    assert_eq!(a.claimed + b.claimed, 1, "{a:?} {b:?}");
    assert_eq!(a.queued.len() + b.queued.len(), 1, "{a:?} {b:?}");
    let queued = jobs(&app, &owner, "projects").await;
    assert_eq!(queued.len(), 1);
    let job = &queued[0];
    assert_eq!(job["kind"], "sync");
    assert_eq!(job["status"], "queued");
    assert_eq!(job["connectionId"], connection_id.to_string());
    assert_eq!(
        job["idempotencyKey"],
        format!("rule:{rule_id}:rev:1:slot:{}", format_mark(slot))
    );
    let meta = &job["metadata"]["rule"];
    assert_eq!(meta["id"], rule_id.as_str());
    assert_eq!(meta["revision"], 1);
    assert_eq!(meta["behaviour"], "full");
    assert_eq!(meta["dryRun"], false);
    assert_eq!(meta["deletionPolicy"], "ignore");
    assert_eq!(meta["conflictPolicy"], "upsert");
    assert_eq!(meta["initialSyncMode"], "full_once");
    assert_eq!(meta["includeSubprojects"], false);
    assert_eq!(meta["fields"], json!([]));
    assert_eq!(meta["firstRun"], true);

    // The rule moved to its next run: an hour on, ±10 %.
    let moved = owner.client.get_json(url.clone()).await;
    let next = time_of(&moved[0]["nextRun"]);
    assert!(
        next >= slot + Duration::minutes(54) && next <= slot + Duration::minutes(66),
        "{next} after {slot}"
    );
    assert_eq!(time_of(&moved[0]["lastPlannedAt"]), slot);
    assert_eq!(plan(&app, slot).await.claimed, 0, "the slot is taken");

    // Edited: the next slot's job carries the new revision. While the
    // first job is still queued, the one-active-job rule keeps it alone.
    let edited = put_ok(&owner, &url, &body).await;
    assert_eq!(edited["revision"], 2);
    let slot = time_of(&edited["nextRun"]);
    let report = plan(&app, slot).await;
    assert_eq!((report.claimed, report.existing), (1, 1), "{report:?}");
    assert_eq!(jobs(&app, &owner, "projects").await.len(), 1);
    let first_job = queued[0]["id"].as_str().unwrap();
    let res = owner
        .client
        .post_json(
            app.url(&format!("/api/jobs/{first_job}/cancel")),
            &json!({}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let slot = time_of(&owner.client.get_json(url.clone()).await[0]["nextRun"]);
    assert_eq!(plan(&app, slot).await.queued.len(), 1);
    let latest = &jobs(&app, &owner, "projects").await[0];
    assert_eq!(
        latest["idempotencyKey"],
        format!("rule:{rule_id}:rev:2:slot:{}", format_mark(slot))
    );
    assert_eq!(latest["metadata"]["rule"]["revision"], 2);

    // A connection that can't be used: the slot passes without a job.
    let res = owner
        .client
        .post_json(
            app.url(&format!(
                "/api/integrations/connections/{connection_id}/disable"
            )),
            &json!({}),
        )
        .await;
    assert!(res.status().is_success());
    let slot = time_of(&owner.client.get_json(url.clone()).await[0]["nextRun"]);
    let report = plan(&app, slot).await;
    assert_eq!(
        (report.claimed, report.skipped, report.queued.len()),
        (1, 1, 0),
        "{report:?}"
    );
    assert!(time_of(&owner.client.get_json(url.clone()).await[0]["nextRun"]) > slot);
    assert_eq!(jobs(&app, &owner, "projects").await.len(), 2);

    // A disabled rule has no next run and is never planned.
    let mut off = body.clone();
    off["enabled"] = json!(false);
    let off = put_ok(&owner, &url, &off).await;
    assert!(off["nextRun"].is_null(), "{off}");
    assert_eq!(plan(&app, now() + Duration::days(60)).await.claimed, 0);
    app.stop().await;
}

async fn initial_sync_modes_seed_the_high_water_mark(backend: Backend) {
    let app = app(backend).await;
    let owner = app.signup("modes@example.com", "Modes").await;
    let connection_id = connect(&app, &owner).await;
    let ws = WorkspaceId(owner.workspace_id);
    let mark = |object: &'static str| {
        let store = app.store.clone();
        async move {
            store
                .high_water_mark(ws, connection_id, object)
                .await
                .unwrap()
        }
    };
    let projects = rules_url(&app, "projects");
    let metrics = rules_url(&app, "daily_metrics");
    // Far enough apart for a daily cron's +10 % too.
    let t1 = now() + Duration::days(2);
    let t2 = t1 + Duration::days(2);
    let t3 = t2 + Duration::days(2);

    // A dry run writes nothing, not even the starting mark.
    put_ok(
        &owner,
        &projects,
        &json!({"interval": {"minutes": 60}, "behaviour": "delta",
                "initialSyncMode": "delta_only_from_now", "dryRun": true}),
    )
    .await;
    // delta_only_after_date starts at the given moment, in UTC.
    put_ok(
        &owner,
        &metrics,
        &json!({"interval": {"cron": "0 3 * * *"}, "behaviour": "delta",
                "initialSyncMode": "delta_only_after_date",
                "initialSyncSince": "2024-03-01T12:00:00+02:00"}),
    )
    .await;
    let report = plan(&app, t1).await;
    assert_eq!(report.queued.len(), 2, "{report:?}");
    assert_eq!(mark("projects").await, None);
    assert_eq!(
        mark("daily_metrics").await.as_deref(),
        Some("2024-03-01T10:00:00Z")
    );
    let job = &jobs(&app, &owner, "projects").await[0];
    assert_eq!(job["metadata"]["rule"]["dryRun"], true);
    assert_eq!(
        job["metadata"]["rule"]["initialSyncMode"],
        "delta_only_from_now"
    );
    let job = &jobs(&app, &owner, "daily_metrics").await[0];
    assert_eq!(
        job["metadata"]["rule"]["initialSyncSince"],
        "2024-03-01T10:00:00Z"
    );

    // full_once seeds nothing: the first read is a full one.
    put_ok(
        &owner,
        &projects,
        &json!({"interval": {"minutes": 60}, "behaviour": "delta", "initialSyncMode": "full_once"}),
    )
    .await;
    assert_eq!(plan(&app, t2).await.claimed, 2);
    assert_eq!(mark("projects").await, None);

    // delta_only_from_now starts at the first run; an existing mark is
    // never moved by a rule, whatever its mode.
    put_ok(
        &owner,
        &projects,
        &json!({"interval": {"minutes": 60}, "behaviour": "delta", "initialSyncMode": "delta_only_from_now"}),
    )
    .await;
    put_ok(
        &owner,
        &metrics,
        &json!({"interval": {"minutes": 60}, "behaviour": "delta", "initialSyncMode": "delta_only_from_now"}),
    )
    .await;
    assert_eq!(plan(&app, t3).await.claimed, 2);
    assert_eq!(mark("projects").await, Some(format_mark(t3)));
    assert_eq!(
        mark("daily_metrics").await.as_deref(),
        Some("2024-03-01T10:00:00Z")
    );
    app.stop().await;
}
