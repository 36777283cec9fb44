//! Local projects and people fed from the sandbox provider: the default
//! mapping applied, each field policy over two syncs with a local edit in
//! between, reset to source, each deletion policy, dry runs, a stale
//! mapping blocking until saved again, matching suggestions and the
//! one-transaction confirm, one external id per link, and tenancy.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{
    Backend, ClientExt, SANDBOX_ID, SANDBOX_SECRET, TestApp, TestUser, api_error, sandbox_app,
};
use plugboard::entities::MAPPING_OUT_OF_DATE;
use plugboard::entities::mapping::ensure_mapping_current;
use plugboard::tenancy::WorkspaceId;
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

on_both_backends!(
    defaults_then_each_field_policy_over_two_syncs,
    deletion_policies,
    stale_mapping_blocks_until_saved_again,
    matching_suggestions_and_confirm_in_one_transaction,
    two_connections_cannot_claim_one_external_id,
    tenancy_and_roles,
    a_rule_maps_synced_records_and_a_stale_mapping_stops_its_jobs,
);

async fn connect_as(app: &TestApp, user: &TestUser, ownership: &str) -> Uuid {
    let res = user
        .client
        .post_json(
            app.url("/api/integrations/sandbox/connect"),
            &json!({"flow": "client_credentials", "clientId": SANDBOX_ID, "clientSecret": SANDBOX_SECRET,
                    "headers": {"X-Sandbox-Company": "acme"}, "ownership": ownership}),
        )
        .await;
    assert!(res.status().is_success(), "connect: {}", res.status());
    let conn: Value = res.json().await.unwrap();
    conn["id"].as_str().unwrap().parse().unwrap()
}

async fn connect(app: &TestApp, email: &str) -> (TestUser, Uuid) {
    let owner = app.signup(email, email).await;
    let id = connect_as(app, &owner, "workspace").await;
    (owner, id)
}

/// Syncs an object of the user's connection and waits for success.
async fn sync(app: &TestApp, user: &TestUser, object: &str) {
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
        match body["job"]["status"].as_str().unwrap_or_default() {
            "succeeded" => return,
            "failed" | "cancelled" => panic!("sync failed: {body}"),
            _ => {}
        }
        assert!(
            std::time::Instant::now() < deadline,
            "sync too slow: {body}"
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

async fn apply_raw(app: &TestApp, user: &TestUser, object: &str, body: Value) -> reqwest::Response {
    user.client
        .post_json(
            app.url(&format!("/api/integrations/sandbox/{object}/apply")),
            &body,
        )
        .await
}

/// Applies and returns the counts.
async fn apply(app: &TestApp, user: &TestUser, object: &str, body: Value) -> Value {
    let res = apply_raw(app, user, object, body).await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

fn counts(
    created: u64,
    updated: u64,
    unchanged: u64,
    linked: u64,
    skipped: u64,
    deactivated: u64,
    deleted: u64,
) -> Value {
    json!({"created": created, "updated": updated, "unchanged": unchanged, "linked": linked,
           "skipped": skipped, "deactivated": deactivated, "deleted": deleted})
}

async fn list(app: &TestApp, user: &TestUser, kind: &str) -> Vec<Value> {
    let res = user
        .client
        .get(app.url(&format!("/api/{kind}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.json::<Vec<Value>>().await.unwrap()
}

/// The project with this number, with its links.
async fn project(app: &TestApp, user: &TestUser, number: &str) -> Value {
    let id = list(app, user, "projects")
        .await
        .into_iter()
        .find(|p| p["number"] == number)
        .unwrap_or_else(|| panic!("no project {number}"))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    user.client
        .get_json(app.url(&format!("/api/projects/{id}")))
        .await
}

async fn patch(app: &TestApp, user: &TestUser, kind: &str, id: &Value, body: Value) -> Value {
    let res = user
        .client
        .patch_json(
            app.url(&format!("/api/{kind}/{}", id.as_str().unwrap())),
            &body,
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

async fn put_mapping(
    app: &TestApp,
    user: &TestUser,
    object: &str,
    body: Value,
) -> reqwest::Response {
    user.client
        .put(app.url(&format!("/api/integrations/sandbox/{object}/mapping")))
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// The sandbox's default project mapping with `name` under `policy`.
fn project_mapping(name_policy: &str) -> Value {
    json!({"fields": [
        {"source": "number", "target": "number"},
        {"source": "name", "target": "name", "policy": name_policy},
        {"source": "client_name", "target": "client_name"},
        {"source": "status", "target": "status"},
        {"source": "start_date", "target": "start_date"},
        {"source": "end_date", "target": "end_date"},
    ]})
}

async fn audit_actions(app: &TestApp, user: &TestUser) -> Vec<String> {
    let log: Value = user
        .client
        .get_json(app.url(&format!("/api/workspaces/{}/audit", user.workspace_id)))
        .await;
    log.as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect()
}

async fn defaults_then_each_field_policy_over_two_syncs(backend: Backend) {
    let app = sandbox_app(backend, &[]).await;
    let (owner, _) = connect(&app, "policies@example.com").await;
    let sandbox = app.state.sandbox.clone().unwrap();
    sync(&app, &owner, "projects").await;

    // The provider's defaults, every field preserve_local.
    let mapping = owner
        .client
        .get_json(app.url("/api/integrations/sandbox/projects/mapping"))
        .await;
    assert_eq!(mapping["isDefault"], true, "{mapping}");
    assert_eq!(mapping["version"], 0);
    assert_eq!(mapping["stale"], false);
    assert_eq!(mapping["target"], "projects");
    let fields = mapping["fields"].as_array().unwrap();
    assert_eq!(fields.len(), 6);
    assert!(fields.iter().all(|f| f["policy"] == "preserve_local"));
    let catalog = owner
        .client
        .get_json(app.url("/api/integrations/sandbox/catalog"))
        .await;
    let projects = catalog["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["key"] == "projects")
        .unwrap()
        .clone();
    assert_eq!(
        mapping["fieldSignatureHash"],
        projects["fieldSignatureHash"]
    );

    // A dry run counts what would happen and writes nothing.
    let dry = apply(
        &app,
        &owner,
        "projects",
        json!({"conflictPolicy": "auto_create", "dryRun": true}),
    )
    .await;
    assert_eq!(dry, counts(60, 0, 0, 0, 0, 6, 0));
    assert!(list(&app, &owner, "projects").await.is_empty());
    assert_eq!(app.db.count("SELECT COUNT(*) FROM external_links").await, 0);
    assert_eq!(app.db.count("SELECT COUNT(*) FROM projects").await, 0);

    // Applied: one project per parent record, the deleted ones inactive.
    let first = apply(
        &app,
        &owner,
        "projects",
        json!({"conflictPolicy": "auto_create"}),
    )
    .await;
    assert_eq!(first, dry, "the dry run counted the same");
    let all = list(&app, &owner, "projects").await;
    assert_eq!(all.len(), 60);
    let p1 = project(&app, &owner, "P-0001").await;
    let records = app
        .store
        .list_records(
            WorkspaceId(owner.workspace_id),
            p1["links"][0]["connectionId"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap(),
            "projects",
            1000,
        )
        .await
        .unwrap();
    let rec1 = &records
        .iter()
        .find(|r| r.external_id == "proj-0001")
        .unwrap()
        .data
        .0;
    assert_eq!(p1["name"], rec1["name"]);
    assert_eq!(p1["clientName"], rec1["client_name"]);
    assert_eq!(p1["status"], "active");
    assert_eq!(p1["startDate"], rec1["start_date"]);
    assert_eq!(p1["sourceValues"]["clientName"], rec1["client_name"]);
    assert_eq!(p1["links"][0]["externalId"], "proj-0001");
    assert_eq!(
        project(&app, &owner, "P-0007").await["status"],
        "inactive",
        "sandbox status"
    );
    // Nothing left to apply: a second run changes nothing.
    let again = apply(
        &app,
        &owner,
        "projects",
        json!({"conflictPolicy": "auto_create"}),
    )
    .await;
    assert_eq!(again, counts(0, 0, 0, 0, 0, 0, 0));
    // A run cut short before committing leaves its links unapplied: the
    // next run takes up exactly those.
    app.db
        .execute("UPDATE external_links SET applied_hash = NULL WHERE external_id IN ('proj-0004', 'proj-0005')")
        .await;
    let resumed = apply(&app, &owner, "projects", json!({})).await;
    assert_eq!(resumed, counts(0, 0, 2, 0, 0, 0, 0));

    // preserve_local: the local edit survives a source change; the source
    // value is kept beside it.
    let edited = patch(
        &app,
        &owner,
        "projects",
        &p1["id"],
        json!({"name": "Local 1"}),
    )
    .await;
    assert_eq!(edited["localEdits"], json!(["name"]));
    sandbox.touch_project("proj-0001", "Source 1b");
    sync(&app, &owner, "projects").await;
    let c = apply(&app, &owner, "projects", json!({})).await;
    assert_eq!(c, counts(0, 0, 1, 0, 0, 0, 0));
    let p1 = project(&app, &owner, "P-0001").await;
    assert_eq!(p1["name"], "Local 1");
    assert_eq!(p1["sourceValues"]["name"], "Source 1b");
    // Reset local to source, after which the source is followed again.
    let res = owner
        .client
        .post_json(
            app.url(&format!(
                "/api/projects/{}/reset-field",
                p1["id"].as_str().unwrap()
            )),
            &json!({"field": "name"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let reset: Value = res.json().await.unwrap();
    assert_eq!(reset["name"], "Source 1b");
    assert_eq!(reset["localEdits"], json!([]));
    sandbox.touch_project("proj-0001", "Source 1c");
    sync(&app, &owner, "projects").await;
    assert_eq!(
        apply(&app, &owner, "projects", json!({})).await,
        counts(0, 1, 0, 0, 0, 0, 0)
    );
    assert_eq!(project(&app, &owner, "P-0001").await["name"], "Source 1c");

    // follow_source: the source overwrites the local edit.
    let res = put_mapping(&app, &owner, "projects", project_mapping("follow_source")).await;
    assert_eq!(res.status(), StatusCode::OK);
    let saved: Value = res.json().await.unwrap();
    assert_eq!(saved["version"], 1);
    assert_eq!(saved["isDefault"], false);
    let p2 = project(&app, &owner, "P-0002").await;
    patch(
        &app,
        &owner,
        "projects",
        &p2["id"],
        json!({"name": "Local 2", "clientName": "Local client"}),
    )
    .await;
    sandbox.touch_project("proj-0002", "Source 2b");
    sync(&app, &owner, "projects").await;
    // The new mapping re-applies every record; only P-0002 changes.
    let c = apply(&app, &owner, "projects", json!({})).await;
    assert_eq!(c["updated"], 1, "{c}");
    assert_eq!(c["unchanged"], 59, "{c}");
    let p2 = project(&app, &owner, "P-0002").await;
    assert_eq!(p2["name"], "Source 2b");
    // client_name stayed preserve_local: the local client and the source's.
    assert_eq!(p2["clientName"], "Local client");
    assert_ne!(p2["sourceValues"]["clientName"], "Local client");
    assert_eq!(p2["localEdits"], json!(["clientName"]));
    let res = owner
        .client
        .post_json(
            app.url(&format!(
                "/api/projects/{}/reset-field",
                p2["id"].as_str().unwrap()
            )),
            &json!({"field": "client_name"}),
        )
        .await;
    let reset: Value = res.json().await.unwrap();
    assert_eq!(reset["clientName"], p2["sourceValues"]["clientName"]);

    // write_once: what the source wrote first stays, edited or not.
    let res = put_mapping(&app, &owner, "projects", project_mapping("write_once")).await;
    assert_eq!(res.status(), StatusCode::OK);
    let p3 = project(&app, &owner, "P-0003").await;
    let original = p3["name"].clone();
    sandbox.touch_project("proj-0003", "Source 3b");
    sync(&app, &owner, "projects").await;
    apply(&app, &owner, "projects", json!({})).await;
    let p3 = project(&app, &owner, "P-0003").await;
    assert_eq!(p3["name"], original);
    assert_eq!(p3["sourceValues"]["name"], "Source 3b");
    patch(
        &app,
        &owner,
        "projects",
        &p3["id"],
        json!({"name": "Local 3"}),
    )
    .await;
    sandbox.touch_project("proj-0003", "Source 3c");
    sync(&app, &owner, "projects").await;
    assert_eq!(
        apply(&app, &owner, "projects", json!({})).await,
        counts(0, 0, 1, 0, 0, 0, 0)
    );
    let p3 = project(&app, &owner, "P-0003").await;
    assert_eq!(p3["name"], "Local 3");
    assert_eq!(p3["sourceValues"]["name"], "Source 3c");

    // Bad local input is a 422 naming the field, and changes nothing.
    for (body, field) in [
        (json!({"status": "paused"}), "status"),
        (json!({"startDate": "2024-02-30"}), "startDate"),
        (json!({"colour": "red"}), "colour"),
        (json!({"name": ""}), "name"),
    ] {
        let res = owner
            .client
            .patch_json(
                app.url(&format!("/api/projects/{}", p3["id"].as_str().unwrap())),
                &body,
            )
            .await;
        let err = api_error(res, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(err["field"], field, "{err}");
    }
    assert_eq!(project(&app, &owner, "P-0003").await, p3);
    let res = owner
        .client
        .post_json(
            app.url(&format!(
                "/api/projects/{}/reset-field",
                p3["id"].as_str().unwrap()
            )),
            &json!({"field": "colour"}),
        )
        .await;
    assert_eq!(
        api_error(res, StatusCode::UNPROCESSABLE_ENTITY).await["field"],
        "field"
    );
    let actions = audit_actions(&app, &owner).await;
    for action in ["mapping.save", "entity.update", "entity.reset_field"] {
        assert!(
            actions.iter().any(|a| a == action),
            "{action} in {actions:?}"
        );
    }
    app.stop().await;
}

async fn deletion_policies(backend: Backend) {
    let app = sandbox_app(backend, &[]).await;
    let (owner, _) = connect(&app, "deletions@example.com").await;
    let sandbox = app.state.sandbox.clone().unwrap();
    sync(&app, &owner, "projects").await;
    assert_eq!(
        apply(
            &app,
            &owner,
            "projects",
            json!({"conflictPolicy": "auto_create"})
        )
        .await,
        counts(60, 0, 0, 0, 0, 6, 0)
    );
    // Deleted at the source before the first apply: inactive, link kept.
    let p10 = project(&app, &owner, "P-0010").await;
    assert_eq!(p10["status"], "inactive");
    assert_eq!(p10["links"][0]["inactiveBySource"], true);

    // mark_inactive_keep_link: inactive, link kept, no more field updates.
    sandbox.delete_project("proj-0001");
    sync(&app, &owner, "projects").await;
    let c = apply(
        &app,
        &owner,
        "projects",
        json!({"deletionPolicy": "mark_inactive_keep_link"}),
    )
    .await;
    assert_eq!(c, counts(0, 0, 0, 0, 0, 1, 0));
    let p1 = project(&app, &owner, "P-0001").await;
    assert_eq!(p1["status"], "inactive");
    assert_eq!(p1["links"][0]["externalId"], "proj-0001");
    assert_eq!(p1["links"][0]["inactiveBySource"], true);
    sandbox.touch_project("proj-0001", "Renamed while deleted");
    sync(&app, &owner, "projects").await;
    let c = apply(
        &app,
        &owner,
        "projects",
        json!({"deletionPolicy": "mark_inactive_keep_link"}),
    )
    .await;
    assert_eq!(c, counts(0, 0, 1, 0, 0, 0, 0));
    let after = project(&app, &owner, "P-0001").await;
    assert_eq!(after["name"], p1["name"], "fields no longer follow");
    assert_eq!(after["sourceValues"]["name"], "Renamed while deleted");
    assert_eq!(after["status"], "inactive");

    // ignore: nothing happens locally.
    sandbox.delete_project("proj-0002");
    sync(&app, &owner, "projects").await;
    let c = apply(
        &app,
        &owner,
        "projects",
        json!({"deletionPolicy": "ignore"}),
    )
    .await;
    assert_eq!(c, counts(0, 0, 1, 0, 0, 0, 0));
    let p2 = project(&app, &owner, "P-0002").await;
    assert_eq!(p2["status"], "active");
    assert_eq!(p2["links"][0]["inactiveBySource"], false);

    // soft_delete: hidden from the API, the link kept so it isn't recreated.
    let p3 = project(&app, &owner, "P-0003").await;
    sandbox.delete_project("proj-0003");
    sync(&app, &owner, "projects").await;
    let c = apply(
        &app,
        &owner,
        "projects",
        json!({"deletionPolicy": "soft_delete", "conflictPolicy": "auto_create"}),
    )
    .await;
    assert_eq!(c, counts(0, 0, 0, 0, 0, 0, 1));
    assert_eq!(list(&app, &owner, "projects").await.len(), 59);
    let res = owner
        .client
        .get(app.url(&format!("/api/projects/{}", p3["id"].as_str().unwrap())))
        .send()
        .await
        .unwrap();
    api_error(res, StatusCode::NOT_FOUND).await;
    assert_eq!(
        app.db
            .count("SELECT COUNT(*) FROM projects WHERE deleted_at IS NOT NULL")
            .await,
        1
    );
    assert_eq!(
        app.db.count("SELECT COUNT(*) FROM external_links").await,
        60
    );
    assert_eq!(
        apply(
            &app,
            &owner,
            "projects",
            json!({"deletionPolicy": "soft_delete", "conflictPolicy": "auto_create"})
        )
        .await,
        counts(0, 0, 0, 0, 0, 0, 0)
    );

    // People: a record the provider marks deleted deactivates its person.
    sync(&app, &owner, "people").await;
    assert_eq!(
        apply(
            &app,
            &owner,
            "people",
            json!({"conflictPolicy": "auto_create"})
        )
        .await,
        counts(40, 0, 0, 0, 0, 0, 0)
    );
    let people = list(&app, &owner, "people").await;
    assert_eq!(people.len(), 40);
    assert!(
        people.iter().any(|p| p["active"] == false),
        "sandbox people every 9th inactive"
    );
    app.db
        .execute("UPDATE records SET deleted_at = updated_at WHERE object = 'people' AND external_id = 'person-0001'")
        .await;
    let c = apply(
        &app,
        &owner,
        "people",
        json!({"deletionPolicy": "mark_inactive_keep_link"}),
    )
    .await;
    assert_eq!(c, counts(0, 0, 0, 0, 0, 1, 0));
    assert_eq!(app.db.count("SELECT COUNT(*) FROM external_links WHERE person_id IS NOT NULL AND inactive_by_source").await, 1);
    let deactivated = list(&app, &owner, "people")
        .await
        .into_iter()
        .filter(|p| p["active"] == false)
        .count();
    assert_eq!(
        deactivated,
        people.iter().filter(|p| p["active"] == false).count() + 1
    );
    app.stop().await;
}

async fn stale_mapping_blocks_until_saved_again(backend: Backend) {
    let app = sandbox_app(backend, &[]).await;
    let (owner, _) = connect(&app, "stale@example.com").await;
    let ws = WorkspaceId(owner.workspace_id);
    sync(&app, &owner, "projects").await;

    // Bad input: 422 with a pointer to the entry; nothing saved.
    let mut bad = project_mapping("follow_source");
    bad["fields"][1]["source"] = json!("nope");
    let err = api_error(
        put_mapping(&app, &owner, "projects", bad).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(err["field"], "/fields/1/source");
    let mut bad = project_mapping("follow_source");
    bad["fields"][2]["target"] = json!("email");
    let err = api_error(
        put_mapping(&app, &owner, "projects", bad).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(err["field"], "/fields/2/target");
    let mut bad = project_mapping("sometimes");
    bad["version"] = json!(0);
    let err = api_error(
        put_mapping(&app, &owner, "projects", bad).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(err["field"], "/fields/1/policy");
    assert_eq!(app.db.count("SELECT COUNT(*) FROM mappings").await, 0);
    // Metrics objects aren't entities.
    let res = owner
        .client
        .get(app.url("/api/integrations/sandbox/daily_metrics/mapping"))
        .send()
        .await
        .unwrap();
    api_error(res, StatusCode::NOT_FOUND).await;

    let res = put_mapping(&app, &owner, "projects", project_mapping("follow_source")).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        ensure_mapping_current(&app.state, ws, "sandbox", "projects").await,
        Ok(())
    );
    // Saving from an old version is a conflict.
    let mut old = project_mapping("preserve_local");
    old["version"] = json!(0);
    let err = api_error(
        put_mapping(&app, &owner, "projects", old).await,
        StatusCode::CONFLICT,
    )
    .await;
    assert_eq!(err["field"], "version");

    // The provider's fields changed since (simulated: the mapping was made
    // against another signature and maps a field that is gone).
    app.db
        .execute(
            "UPDATE mappings SET field_signature_hash = 'sha256:before', fields = \
             '[{\"source\":\"legacy_code\",\"target\":\"number\",\"policy\":\"preserve_local\"},\
               {\"source\":\"name\",\"target\":\"name\",\"policy\":\"follow_source\"}]'",
        )
        .await;
    assert_eq!(
        ensure_mapping_current(&app.state, ws, "sandbox", "projects").await,
        Err(MAPPING_OUT_OF_DATE.to_owned())
    );
    assert_eq!(
        app.db
            .count("SELECT COUNT(*) FROM mappings WHERE stale")
            .await,
        1
    );
    let mapping = owner
        .client
        .get_json(app.url("/api/integrations/sandbox/projects/mapping"))
        .await;
    assert_eq!(mapping["stale"], true);
    assert_eq!(mapping["savedFieldSignatureHash"], "sha256:before");
    assert_eq!(
        mapping["fields"],
        json!([{"source": "name", "target": "name", "policy": "follow_source"}]),
        "the entry whose source is gone was dropped"
    );
    // Still blocked on the next check, and for every way in.
    assert_eq!(
        ensure_mapping_current(&app.state, ws, "sandbox", "projects").await,
        Err(MAPPING_OUT_OF_DATE.to_owned())
    );
    let err = api_error(
        apply_raw(&app, &owner, "projects", json!({})).await,
        StatusCode::CONFLICT,
    )
    .await;
    assert_eq!(err["message"], MAPPING_OUT_OF_DATE);
    let res = owner
        .client
        .get(app.url("/api/integrations/sandbox/projects/matching/suggestions"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        api_error(res, StatusCode::CONFLICT).await["message"],
        MAPPING_OUT_OF_DATE
    );
    assert_eq!(app.db.count("SELECT COUNT(*) FROM projects").await, 0);
    // Other objects are not affected.
    assert_eq!(
        ensure_mapping_current(&app.state, ws, "sandbox", "people").await,
        Ok(())
    );
    assert!(
        audit_actions(&app, &owner)
            .await
            .iter()
            .any(|a| a == "mapping.stale")
    );

    // An admin saves it again: unblocked.
    let res = put_mapping(&app, &owner, "projects", project_mapping("follow_source")).await;
    assert_eq!(res.status(), StatusCode::OK);
    let saved: Value = res.json().await.unwrap();
    assert_eq!(saved["stale"], false);
    assert_eq!(saved["version"], 2);
    assert_eq!(
        saved["savedFieldSignatureHash"],
        saved["fieldSignatureHash"]
    );
    assert_eq!(
        ensure_mapping_current(&app.state, ws, "sandbox", "projects").await,
        Ok(())
    );
    let c = apply(
        &app,
        &owner,
        "projects",
        json!({"conflictPolicy": "auto_create"}),
    )
    .await;
    assert_eq!(c["created"], 60);
    app.stop().await;
}

async fn create_project(app: &TestApp, user: &TestUser, body: Value) -> Value {
    let res = user.client.post_json(app.url("/api/projects"), &body).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    res.json().await.unwrap()
}

async fn confirm(app: &TestApp, user: &TestUser, pairs: Value) -> reqwest::Response {
    user.client
        .post_json(
            app.url("/api/integrations/sandbox/projects/matching/confirm"),
            &json!({ "pairs": pairs }),
        )
        .await
}

async fn matching_suggestions_and_confirm_in_one_transaction(backend: Backend) {
    let app = sandbox_app(backend, &[]).await;
    let (owner, connection_id) = connect(&app, "matching@example.com").await;
    let ws = WorkspaceId(owner.workspace_id);
    sync(&app, &owner, "projects").await;
    let records = app
        .store
        .list_records(ws, connection_id, "projects", 1000)
        .await
        .unwrap();
    // Records whose name + client is unique among the parents.
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    let key = |r: &Value| {
        (
            r["name"].as_str().unwrap().to_lowercase(),
            r["client_name"].as_str().unwrap().to_lowercase(),
        )
    };
    for r in &records {
        *seen.entry(key(&r.data.0)).or_default() += 1;
    }
    let unique: Vec<&Value> = records
        .iter()
        .map(|r| &r.data.0)
        .filter(|d| d["id"] != "proj-0001" && d["deleted"] == false && seen[&key(d)] == 1)
        .collect();
    let (by_name, contested) = (unique[0], unique[1]);

    // One local project per rule: the number, then name + client (any case),
    // and two alike for a conflict.
    let l1 = create_project(
        &app,
        &owner,
        json!({"number": "P-0001", "name": "Our own name"}),
    )
    .await;
    let l2 = create_project(
        &app,
        &owner,
        json!({"name": by_name["name"].as_str().unwrap().to_uppercase(), "clientName": by_name["client_name"].as_str().unwrap().to_lowercase()}),
    )
    .await;
    assert_eq!(l1["localEdits"], json!([]), "creating isn't a local edit");
    for _ in 0..2 {
        create_project(
            &app,
            &owner,
            json!({"name": contested["name"], "clientName": contested["client_name"]}),
        )
        .await;
    }
    let res = owner
        .client
        .get(app.url("/api/integrations/sandbox/projects/matching/suggestions"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let s: Value = res.json().await.unwrap();
    assert_eq!(
        (
            s["matched"].as_u64(),
            s["conflict"].as_u64(),
            s["unmatched"].as_u64()
        ),
        (Some(2), Some(1), Some(57)),
        "{s}"
    );
    let find = |id: &Value| {
        s["suggestions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["externalId"] == *id)
            .unwrap()
            .clone()
    };
    let s1 = find(&json!("proj-0001"));
    assert_eq!(s1["status"], "matched");
    assert_eq!(s1["entityId"], l1["id"]);
    assert_eq!(s1["matchedBy"], "number");
    let s2 = find(&by_name["id"]);
    assert_eq!(
        (s2["status"].as_str(), s2["matchedBy"].as_str()),
        (Some("matched"), Some("name_and_client"))
    );
    assert_eq!(s2["entityId"], l2["id"]);
    let s3 = find(&contested["id"]);
    assert_eq!(s3["status"], "conflict");
    assert_eq!(s3["candidates"].as_array().unwrap().len(), 2);

    // Rejected pair lists write nothing.
    let good = json!({"externalId": "proj-0001", "entityId": l1["id"]});
    let err = api_error(
        confirm(
            &app,
            &owner,
            json!([good, {"externalId": "proj-0001", "entityId": l2["id"]}]),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(err["field"], "/pairs/1/externalId");
    let err = api_error(
        confirm(
            &app,
            &owner,
            json!([good, {"externalId": by_name["id"], "entityId": l1["id"]}]),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(err["field"], "/pairs/1/entityId");
    // A bad second pair undoes the first: one transaction.
    let err = api_error(
        confirm(
            &app,
            &owner,
            json!([good, {"externalId": "proj-9999", "entityId": l2["id"]}]),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(err["field"], "/pairs/1/externalId");
    api_error(
        confirm(
            &app,
            &owner,
            json!([good, {"externalId": by_name["id"], "entityId": Uuid::now_v7()}]),
        )
        .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_eq!(app.db.count("SELECT COUNT(*) FROM external_links").await, 0);
    assert!(
        !audit_actions(&app, &owner)
            .await
            .iter()
            .any(|a| a == "matching.confirm")
    );
    let unchanged = owner
        .client
        .get_json(app.url(&format!("/api/projects/{}", l1["id"].as_str().unwrap())))
        .await;
    assert_eq!(unchanged["name"], "Our own name");

    // Accepted: linked, and the source's values land per the policies.
    let res = confirm(
        &app,
        &owner,
        json!([good, {"externalId": by_name["id"], "entityId": l2["id"]}]),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"matched": 2, "changed": 2, "skipped": 0})
    );
    let l1_now = owner
        .client
        .get_json(app.url(&format!("/api/projects/{}", l1["id"].as_str().unwrap())))
        .await;
    let rec1 = records
        .iter()
        .find(|r| r.external_id == "proj-0001")
        .unwrap();
    assert_eq!(l1_now["name"], rec1.data.0["name"]);
    assert_eq!(l1_now["links"][0]["externalId"], "proj-0001");
    assert!(
        audit_actions(&app, &owner)
            .await
            .iter()
            .any(|a| a == "matching.confirm")
    );
    // The same again is skipped; the entity can't take a second record.
    let res = confirm(&app, &owner, json!([good])).await;
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"matched": 0, "changed": 0, "skipped": 1})
    );
    let err = api_error(
        confirm(
            &app,
            &owner,
            json!([{"externalId": "proj-0004", "entityId": l1["id"]}]),
        )
        .await,
        StatusCode::CONFLICT,
    )
    .await;
    assert_eq!(err["field"], "/pairs/0/entityId");
    let s: Value = owner
        .client
        .get_json(app.url("/api/integrations/sandbox/projects/matching/suggestions"))
        .await;
    assert_eq!(
        s["suggestions"].as_array().unwrap().len(),
        58,
        "linked records aren't suggested"
    );

    // Afterwards new records follow the conflict policy: skip waits for
    // review; upsert creates, or leaves the ambiguous for review.
    let c = apply(&app, &owner, "projects", json!({"conflictPolicy": "skip"})).await;
    assert_eq!(c, counts(0, 0, 0, 0, 58, 0, 0));
    assert_eq!(list(&app, &owner, "projects").await.len(), 4);
    let c = apply(
        &app,
        &owner,
        "projects",
        json!({"conflictPolicy": "upsert"}),
    )
    .await;
    assert_eq!(c["linked"], 0, "{c}");
    assert!(c["skipped"].as_u64().unwrap() >= 1, "{c}");
    assert_eq!(
        c["created"].as_u64().unwrap() + c["skipped"].as_u64().unwrap(),
        58,
        "{c}"
    );
    let proj1_links = app
        .db
        .count("SELECT COUNT(*) FROM external_links WHERE external_id = 'proj-0001'")
        .await;
    assert_eq!(proj1_links, 1);
    app.stop().await;
}

async fn two_connections_cannot_claim_one_external_id(backend: Backend) {
    let app = sandbox_app(backend, &[]).await;
    let (owner, shared) = connect(&app, "claims@example.com").await;
    sync(&app, &owner, "projects").await;
    let c = apply(
        &app,
        &owner,
        "projects",
        json!({"conflictPolicy": "auto_create", "connectionId": shared}),
    )
    .await;
    assert_eq!(c["created"], 60);

    // The owner's own connection to the same company reads the same ids.
    let own = connect_as(&app, &owner, "user").await;
    assert_ne!(own, shared);
    sync(&app, &owner, "projects").await;
    let c = apply(
        &app,
        &owner,
        "projects",
        json!({"conflictPolicy": "auto_create", "connectionId": own}),
    )
    .await;
    assert_eq!(c, counts(0, 0, 0, 0, 60, 0, 0));
    assert_eq!(list(&app, &owner, "projects").await.len(), 60);
    let mine = create_project(&app, &owner, json!({"name": "Mine"})).await;
    let err = api_error(
        owner
            .client
            .post_json(
                app.url("/api/integrations/sandbox/projects/matching/confirm"),
                &json!({"connectionId": own, "pairs": [{"externalId": "proj-0001", "entityId": mine["id"]}]}),
            )
            .await,
        StatusCode::CONFLICT,
    )
    .await;
    assert_eq!(err["field"], "/pairs/0/externalId");
    // The database holds to it too.
    assert_eq!(
        app.db
            .count("SELECT COUNT(*) FROM (SELECT external_id FROM external_links GROUP BY workspace_id, provider, object, external_id HAVING COUNT(*) > 1) d")
            .await,
        0
    );
    assert_eq!(
        app.db.count("SELECT COUNT(*) FROM external_links").await,
        60
    );
    app.stop().await;
}

async fn tenancy_and_roles(backend: Backend) {
    let app = sandbox_app(backend, &[]).await;
    let (alice, _) = connect(&app, "alice@a.example").await;
    sync(&app, &alice, "projects").await;
    apply(
        &app,
        &alice,
        "projects",
        json!({"conflictPolicy": "auto_create"}),
    )
    .await;
    assert_eq!(
        put_mapping(&app, &alice, "projects", project_mapping("write_once"))
            .await
            .status(),
        StatusCode::OK
    );
    let p1 = project(&app, &alice, "P-0001").await;
    let id = p1["id"].as_str().unwrap();

    // Bob, owner of another workspace, sees none of it.
    let (bob, _) = connect(&app, "bob@b.example").await;
    assert!(list(&app, &bob, "projects").await.is_empty());
    for res in [
        bob.client
            .get(app.url(&format!("/api/projects/{id}")))
            .send()
            .await
            .unwrap(),
        bob.client
            .patch_json(
                app.url(&format!("/api/projects/{id}")),
                &json!({"name": "x"}),
            )
            .await,
        bob.client
            .post_json(
                app.url(&format!("/api/projects/{id}/reset-field")),
                &json!({"field": "name"}),
            )
            .await,
        bob.client
            .get(app.url(&format!("/api/people/{id}")))
            .send()
            .await
            .unwrap(),
        bob.client
            .get(app.url("/api/projects/not-a-uuid"))
            .send()
            .await
            .unwrap(),
    ] {
        api_error(res, StatusCode::NOT_FOUND).await;
    }
    let mapping = bob
        .client
        .get_json(app.url("/api/integrations/sandbox/projects/mapping"))
        .await;
    assert_eq!(mapping["isDefault"], true, "Alice's mapping is hers");
    sync(&app, &bob, "projects").await;
    api_error(
        confirm(
            &app,
            &bob,
            json!([{"externalId": "proj-0001", "entityId": id}]),
        )
        .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_eq!(
        app.db.count("SELECT COUNT(*) FROM external_links").await,
        60
    );
    assert_eq!(project(&app, &alice, "P-0001").await, p1);

    // A member of Alice's workspace reads but doesn't edit.
    let carol = app.signup("carol@a.example", "Carol's own").await;
    app.join(
        &alice.client,
        alice.workspace_id,
        &carol.client,
        &carol.email,
        "member",
    )
    .await;
    let res = carol
        .client
        .post_json(
            app.url(&format!("/api/workspaces/{}/switch", alice.workspace_id)),
            &json!({}),
        )
        .await;
    assert!(res.status().is_success());
    assert_eq!(list(&app, &carol, "projects").await.len(), 60);
    let seen = carol
        .client
        .get_json(app.url(&format!("/api/projects/{id}")))
        .await;
    assert_eq!(seen["id"], p1["id"]);
    for res in [
        carol
            .client
            .patch_json(
                app.url(&format!("/api/projects/{id}")),
                &json!({"name": "x"}),
            )
            .await,
        carol
            .client
            .post_json(app.url("/api/projects"), &json!({"name": "x"}))
            .await,
        put_mapping(&app, &carol, "projects", project_mapping("follow_source")).await,
        apply_raw(&app, &carol, "projects", json!({})).await,
        carol
            .client
            .get(app.url("/api/integrations/sandbox/projects/matching/suggestions"))
            .send()
            .await
            .unwrap(),
    ] {
        api_error(res, StatusCode::FORBIDDEN).await;
    }
    app.stop().await;
}

/// The worker end to end: "Sync now" under a rule maps the synced records
/// into local projects with the rule's policies; without a rule local
/// entities are left alone; a stale mapping fails the object's jobs with
/// the documented message until an admin saves the mapping again.
async fn a_rule_maps_synced_records_and_a_stale_mapping_stops_its_jobs(backend: Backend) {
    let app = sandbox_app(backend, &[("PLUGBOARD_PLANNER_INTERVAL_SECS", "0")]).await;
    let (owner, connection_id) = connect(&app, "rule-sync@example.com").await;
    // No rule: records only.
    sync(&app, &owner, "projects").await;
    assert!(list(&app, &owner, "projects").await.is_empty());

    let res = owner
        .client
        .put(app.url("/api/integrations/sandbox/projects/rules"))
        .json(&json!({"interval": {"minutes": 60}, "behaviour": "full", "conflictPolicy": "auto_create",
                      "deletionPolicy": "mark_inactive_keep_link"}))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.text().await.unwrap());
    sync(&app, &owner, "projects").await;
    let projects = list(&app, &owner, "projects").await;
    assert_eq!(
        projects.len(),
        60,
        "every parent project, created by the rule"
    );
    let inactive = projects
        .iter()
        .filter(|p| p["status"] == "inactive")
        .count();
    let records = app
        .store
        .list_records(
            plugboard::tenancy::WorkspaceId(owner.workspace_id),
            connection_id,
            "projects",
            1000,
        )
        .await
        .unwrap();
    let expected = records
        .iter()
        .filter(|r| r.deleted_at.is_some() || r.data.0["status"] == "inactive")
        .count();
    assert!(records.iter().filter(|r| r.deleted_at.is_some()).count() == 6);
    assert_eq!(
        inactive, expected,
        "deleted upstream (kept, inactive) or inactive upstream"
    );
    // Again: nothing changes locally.
    sync(&app, &owner, "projects").await;
    assert_eq!(list(&app, &owner, "projects").await.len(), 60);

    // A second workspace whose rule keeps only one client's projects.
    let (other, _) = connect(&app, "rule-filter@example.com").await;
    let client = records[0].data.0["client_name"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = other
        .client
        .put(app.url("/api/integrations/sandbox/projects/rules"))
        .json(&json!({"interval": {"minutes": 60}, "behaviour": "full", "conflictPolicy": "auto_create",
                      "filters": [{"field": "client_name", "op": "eq", "value": client}]}))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.text().await.unwrap());
    sync(&app, &other, "projects").await;
    let theirs = list(&app, &other, "projects").await;
    let wanted = records
        .iter()
        .filter(|r| r.data.0["client_name"] == client.as_str())
        .count();
    assert!(wanted > 0 && wanted < 60);
    assert_eq!(theirs.len(), wanted, "only the filtered client's projects");
    assert!(
        theirs
            .iter()
            .all(|p| p["clientName"] == client.as_str() || p["client_name"] == client.as_str()),
        "{theirs:?}"
    );

    // The provider's fields changed since the mapping was saved.
    let res = put_mapping(&app, &owner, "projects", project_mapping("preserve_local")).await;
    assert_eq!(res.status(), StatusCode::OK);
    app.db
        .execute("UPDATE mappings SET field_signature_hash = 'sha256:before'")
        .await;
    let res = owner
        .client
        .post_json(
            app.url("/api/integrations/sandbox/projects/sync"),
            &json!({}),
        )
        .await;
    let jobs: Value = res.json().await.unwrap();
    let id = jobs[0]["jobId"].as_str().unwrap().to_owned();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let failed = loop {
        let body = owner
            .client
            .get_json(app.url(&format!("/api/jobs/{id}")))
            .await;
        if body["job"]["status"] == "failed" {
            break body;
        }
        assert_ne!(body["job"]["status"], "succeeded", "{body}");
        assert!(std::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(150)).await;
    };
    assert_eq!(
        failed["job"]["error"], "Mappings out of date; review in Integrations Hub",
        "{failed}"
    );
    let mut saved = project_mapping("preserve_local");
    saved["version"] = owner
        .client
        .get_json(app.url("/api/integrations/sandbox/projects/mapping"))
        .await["version"]
        .clone();
    let res = put_mapping(&app, &owner, "projects", saved).await;
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "{}",
        res.text().await.unwrap()
    );
    sync(&app, &owner, "projects").await;
    app.stop().await;
}
