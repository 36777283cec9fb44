//! Personal connections are private: their jobs, logs and the projects they
//! brought in are their owner's alone (404 for everyone else, admins
//! included, who still see the connection's status and may disable or
//! disconnect it); service keys use them only with `tokens:read_personal`
//! and the owner's audited, revocable consent; secret env headers never
//! leave the server; cancel and retry follow *Sync now*.

mod common;

use std::time::Duration;

use common::{
    Backend, ClientExt, PASSWORD, SANDBOX_ID, SANDBOX_SECRET, TestApp, TestUser, api_error, client,
    sandbox_app,
};
use plugboard::jobs::JobStatus;
use plugboard::jobs::store::NewJob;
use plugboard::storage::now;
use plugboard::tenancy::WorkspaceId;
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

on_both_backends!(
    personal_data_is_its_owners_alone,
    service_keys_need_the_scope_and_the_owners_consent,
    secret_env_headers_stay_on_the_server,
    cancel_and_retry_follow_sync_now,
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
    let user = TestUser {
        client: c,
        id: me["user"]["id"].as_str().unwrap().parse().unwrap(),
        email: email.to_owned(),
        workspace_id: admin.workspace_id,
    };
    let res = user
        .client
        .post_json(
            app.url(&format!("/api/workspaces/{}/switch", admin.workspace_id)),
            &json!({}),
        )
        .await;
    assert!(res.status().is_success(), "switch: {}", res.status());
    user
}

/// A sandbox connection with client credentials; returns its id.
async fn connect(app: &TestApp, user: &TestUser, ownership: &str) -> Uuid {
    let res = user
        .client
        .post_json(
            app.url("/api/integrations/sandbox/connect"),
            &json!({"flow": "client_credentials", "clientId": SANDBOX_ID, "clientSecret": SANDBOX_SECRET,
                    "headers": {"X-Sandbox-Company": "acme"}, "ownership": ownership}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED, "connect {ownership}");
    let body: Value = res.json().await.unwrap();
    body["id"].as_str().unwrap().parse().unwrap()
}

/// Syncs an object of the user's connection; returns the job once succeeded.
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
    let id = jobs[0]["jobId"].as_str().unwrap().to_owned();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let body = user
            .client
            .get_json(app.url(&format!("/api/jobs/{id}")))
            .await;
        match body["job"]["status"].as_str().unwrap_or_default() {
            "succeeded" => return id,
            "failed" | "cancelled" => panic!("sync failed: {body}"),
            _ => {}
        }
        assert!(std::time::Instant::now() < deadline, "sync too slow");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

async fn status(res: reqwest::Response) -> StatusCode {
    res.status()
}

async fn personal_data_is_its_owners_alone(backend: Backend) {
    let app = sandbox_app(backend, &[]).await;
    let owner = app.signup("owner@p.example", "Private Co").await;
    // Alice is an admin, so she can apply her own connection's records.
    let alice = join(&app, &owner, "alice@p.example", "admin").await;
    let bob = join(&app, &owner, "bob@p.example", "member").await;
    let workspace_conn = connect(&app, &owner, "workspace").await;
    let alice_conn = connect(&app, &alice, "user").await;

    // Alice's own connection wins for her: the job and projects are hers.
    let job = sync(&app, &alice, "projects").await;
    let applied = alice
        .client
        .post_json(
            app.url("/api/integrations/sandbox/projects/apply"),
            &json!({"conflictPolicy": "auto_create", "connectionId": alice_conn}),
        )
        .await;
    assert_eq!(applied.status(), StatusCode::OK);
    let projects = alice.client.get_json(app.url("/api/projects")).await;
    let project = projects[0]["id"].as_str().unwrap().to_owned();
    let shown = alice
        .client
        .get_json(app.url(&format!("/api/projects/{project}")))
        .await;
    assert_eq!(shown["links"][0]["connectionId"], alice_conn.to_string());
    let mine = alice
        .client
        .get_json(app.url(&format!("/api/jobs/{job}")))
        .await;
    assert_eq!(mine["job"]["connectionId"], alice_conn.to_string());
    assert!(!mine["log"].as_array().unwrap().is_empty());

    // Bob (member) and the owner (admin) find none of it: 404 as for a made-up id.
    for (who, user) in [("member", &bob), ("admin", &owner)] {
        for path in [
            format!("/api/jobs/{job}"),
            format!("/data/jobs/{job}"),
            format!("/api/projects/{project}"),
            format!("/api/oauth/sandbox/accounts?connectionId={alice_conn}"),
        ] {
            let res = user.client.get(app.url(&path)).send().await.unwrap();
            assert_eq!(res.status(), StatusCode::NOT_FOUND, "{who} {path}");
        }
        let jobs = user
            .client
            .get_text(app.url("/api/integrations/sandbox/jobs"))
            .await;
        assert!(!jobs.contains(&job), "{who} lists Alice's job");
        let listed = user.client.get_text(app.url("/api/projects")).await;
        assert!(!listed.contains(&project), "{who} lists Alice's project");
        let hub = user.client.get_text(app.url("/data/connections")).await;
        assert!(!hub.contains(&job), "{who} sees Alice's job on the hub");
    }
    // An admin can't read the records, apply or edit through it either.
    let res = owner
        .client
        .get(app.url(&format!(
            "/api/integrations/sandbox/projects/matching/suggestions?connectionId={alice_conn}"
        )))
        .send()
        .await
        .unwrap();
    api_error(res, StatusCode::NOT_FOUND).await;
    let res = owner
        .client
        .post_json(
            app.url("/api/integrations/sandbox/projects/apply"),
            &json!({"conflictPolicy": "auto_create", "connectionId": alice_conn}),
        )
        .await;
    api_error(res, StatusCode::NOT_FOUND).await;
    let res = owner
        .client
        .patch_json(
            app.url(&format!("/api/projects/{project}")),
            &json!({"name": "Renamed"}),
        )
        .await;
    api_error(res, StatusCode::NOT_FOUND).await;
    let res = owner
        .client
        .post_json(
            app.url("/api/data/select-account"),
            &json!({"provider": "sandbox", "connectionId": alice_conn, "accountIds": ["prop-1"]}),
        )
        .await;
    api_error(res, StatusCode::NOT_FOUND).await;

    // The admin sees that it exists and its status, nothing read through it.
    let listed = owner
        .client
        .get_json(app.url("/api/integrations/connections"))
        .await;
    let seen = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == alice_conn.to_string())
        .expect("admin lists the member's connection")
        .clone();
    assert_eq!(seen["status"], "CONNECTED");
    assert_eq!(seen["ownership"], "user");
    assert_eq!(seen["isYoursToUse"], false);
    assert_eq!(seen["headerValues"], json!({}));
    assert!(seen["accountId"].is_null());
    // Bob doesn't list it at all; Alice sees her own in full.
    let bobs = bob
        .client
        .get_text(app.url("/api/integrations/connections"))
        .await;
    assert!(!bobs.contains(&alice_conn.to_string()));
    let alices = alice
        .client
        .get_json(app.url("/api/integrations/connections"))
        .await;
    let own = alices
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == alice_conn.to_string())
        .unwrap()
        .clone();
    assert_eq!(own["isYoursToUse"], true);
    assert_eq!(own["headerValues"]["X-Sandbox-Company"], "acme");
    // The hub lists it for the admin with its status.
    let hub = owner.client.get_text(app.url("/data/connections")).await;
    assert!(hub.contains("data-testid=\"members-personal\""));
    assert!(hub.contains(&format!("data-testid=\"personal-{alice_conn}\"")));
    assert!(
        !bob.client
            .get_text(app.url("/data/connections"))
            .await
            .contains("members-personal")
    );

    // The admin may disable and disconnect it, but not re-authorize it.
    let res = owner
        .client
        .post_json(
            app.url(&format!(
                "/api/integrations/connections/{alice_conn}/disable"
            )),
            &json!({}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], "DISABLED");
    assert_eq!(body["headerValues"], json!({}));
    let alices = alice
        .client
        .get_text(app.url("/api/integrations/connections"))
        .await;
    assert!(alices.contains("DISABLED"));
    let res = owner
        .client
        .post_json(
            app.url(&format!(
                "/api/integrations/connections/{alice_conn}/enable"
            )),
            &json!({}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = owner
        .client
        .post_json(
            app.url(&format!(
                "/api/integrations/connections/{alice_conn}/reconnect"
            )),
            &json!({}),
        )
        .await;
    api_error(res, StatusCode::FORBIDDEN).await;
    // A member can't disable or disconnect someone else's.
    let res = bob
        .client
        .post_json(
            app.url("/api/data/disconnect"),
            &json!({"provider": "sandbox", "connectionId": alice_conn}),
        )
        .await;
    api_error(res, StatusCode::NOT_FOUND).await;
    let res = owner
        .client
        .post_json(
            app.url("/api/data/disconnect"),
            &json!({"provider": "sandbox", "connectionId": alice_conn}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], "NOT_CONNECTED");
    // The workspace's connection stays everyone's.
    let res = bob
        .client
        .get(app.url(&format!(
            "/api/oauth/sandbox/accounts?connectionId={workspace_conn}"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    app.stop().await;
}

/// Creates a key through the admin API; returns the full key.
async fn make_key(app: &TestApp, admin: &TestUser, scopes: &[&str]) -> String {
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
    let body: Value = res.json().await.unwrap();
    body["key"].as_str().unwrap().to_owned()
}

async fn tokens(app: &TestApp, key: &str, connection: Uuid) -> reqwest::Response {
    client()
        .get(app.url(&format!(
            "/api/internal/connection-tokens?connectionId={connection}"
        )))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
}

async fn context(app: &TestApp, key: &str, job: Uuid) -> reqwest::Response {
    client()
        .get(app.url(&format!("/api/internal/run-context?jobId={job}")))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
}

async fn set_consent(
    app: &TestApp,
    user: &TestUser,
    conn: Uuid,
    allowed: bool,
) -> reqwest::Response {
    user.client
        .put(app.url(&format!("/api/integrations/connections/{conn}/automations")))
        .json(&json!({ "allowed": allowed }))
        .send()
        .await
        .unwrap()
}

async fn audit_actions(app: &TestApp, admin: &TestUser, conn: Uuid) -> Vec<String> {
    let audit = admin
        .client
        .get_json(app.url(&format!("/api/workspaces/{}/audit", admin.workspace_id)))
        .await;
    let entries = audit
        .as_array()
        .cloned()
        .or_else(|| audit["entries"].as_array().cloned())
        .unwrap_or_default();
    entries
        .iter()
        .filter(|e| e.to_string().contains(&conn.to_string()))
        .filter_map(|e| e["action"].as_str().map(str::to_owned))
        .collect()
}

async fn a_job_on(app: &TestApp, ws: Uuid, conn: Uuid, object: &str, status: JobStatus) -> Uuid {
    let id = Uuid::now_v7();
    app.store
        .create_job(&NewJob {
            id,
            workspace_id: WorkspaceId(ws),
            connection_id: Some(conn),
            provider: "sandbox",
            object: Some(object),
            kind: "sync",
            status,
            idempotency_key: None,
            metadata: json!({}),
            requested_by: None,
            at: now(),
        })
        .await
        .unwrap();
    id
}

async fn service_keys_need_the_scope_and_the_owners_consent(backend: Backend) {
    let app = sandbox_app(backend, &[]).await;
    let owner = app.signup("owner@k.example", "Keys Co").await;
    let alice = join(&app, &owner, "alice@k.example", "member").await;
    let bob = join(&app, &owner, "bob@k.example", "member").await;
    let workspace_conn = connect(&app, &owner, "workspace").await;
    let alice_conn = connect(&app, &alice, "user").await;
    let plain = make_key(
        &app,
        &owner,
        &["tokens:read", "tokens:read_refresh", "context:read"],
    )
    .await;
    let personal = make_key(
        &app,
        &owner,
        &["tokens:read", "tokens:read_personal", "context:read"],
    )
    .await;
    let job = a_job_on(
        &app,
        owner.workspace_id,
        alice_conn,
        "projects",
        JobStatus::Failed,
    )
    .await;

    // The workspace's connection: any key with tokens:read.
    assert_eq!(
        status(tokens(&app, &plain, workspace_conn).await).await,
        StatusCode::OK
    );
    // Alice's: nobody yet, not even with the scope; 404 as for a made-up id.
    for key in [&plain, &personal] {
        api_error(tokens(&app, key, alice_conn).await, StatusCode::NOT_FOUND).await;
        api_error(context(&app, key, job).await, StatusCode::NOT_FOUND).await;
    }

    // Only Alice can switch it on: others find no such connection.
    api_error(
        set_consent(&app, &bob, alice_conn, true).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    api_error(
        set_consent(&app, &owner, alice_conn, true).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    let err = api_error(
        set_consent(&app, &owner, workspace_conn, true).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(err["field"], "allowed");
    let res = set_consent(&app, &alice, alice_conn, true).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["automationsAllowed"], true);
    assert!(
        audit_actions(&app, &owner, alice_conn)
            .await
            .contains(&"connection.automations_allowed".to_owned())
    );

    // With consent: the key with the scope may, the other still may not.
    let res = tokens(&app, &personal, alice_conn).await;
    assert_eq!(res.status(), StatusCode::OK);
    let issued: Value = res.json().await.unwrap();
    assert!(!issued["access_token"].as_str().unwrap().is_empty());
    assert!(issued.get("refresh_token").is_none());
    let res = context(&app, &personal, job).await;
    assert_eq!(res.status(), StatusCode::OK);
    let ctx: Value = res.json().await.unwrap();
    assert_eq!(ctx["connectionId"], alice_conn.to_string());
    api_error(
        tokens(&app, &plain, alice_conn).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    api_error(context(&app, &plain, job).await, StatusCode::NOT_FOUND).await;

    // Alice's card offers the switch; turning it off from the page revokes it.
    let hub = alice.client.get_text(app.url("/data/connections")).await;
    assert!(hub.contains("data-testid=\"automations-sandbox\""));
    let csrf = app.csrf(&alice.client, "/data/connections").await;
    let res = alice
        .client
        .post(app.url(&format!("/data/connections/{alice_conn}/automations-off")))
        .form(&[("_csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert!(res.status().is_redirection(), "{}", res.status());
    api_error(
        tokens(&app, &personal, alice_conn).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    api_error(context(&app, &personal, job).await, StatusCode::NOT_FOUND).await;
    assert!(
        audit_actions(&app, &owner, alice_conn)
            .await
            .contains(&"connection.automations_revoked".to_owned())
    );

    // Consent ends with a disconnect: reconnecting asks again.
    assert_eq!(
        set_consent(&app, &alice, alice_conn, true).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        status(tokens(&app, &personal, alice_conn).await).await,
        StatusCode::OK
    );
    let res = alice
        .client
        .post_json(
            app.url("/api/data/disconnect"),
            &json!({"provider": "sandbox", "connectionId": alice_conn}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(connect(&app, &alice, "user").await, alice_conn);
    api_error(
        tokens(&app, &personal, alice_conn).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    app.stop().await;
}

/// The shipped providers, with the sandbox given an operator's secret
/// header and a plain env header, in a folder of their own.
fn providers_with_secret_header() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("providers");
    for entry in std::fs::read_dir(&source).unwrap() {
        let entry = entry.unwrap();
        let target = dir.path().join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            for file in std::fs::read_dir(entry.path()).unwrap() {
                let file = file.unwrap();
                std::fs::copy(file.path(), target.join(file.file_name())).unwrap();
            }
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
    let path = dir.path().join("sandbox/provider.json");
    let mut meta: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let headers = meta["requiredHeaders"].as_array_mut().unwrap();
    headers.push(
        json!({"key": "X-Sandbox-Operator", "label": "Operator token", "source": "env",
                        "envKey": "PLUGBOARD_SANDBOX_OPERATOR_TOKEN", "secret": true}),
    );
    headers.push(
        json!({"key": "X-Sandbox-Region", "label": "Region", "source": "env",
                        "envKey": "PLUGBOARD_SANDBOX_REGION"}),
    );
    std::fs::write(&path, serde_json::to_string_pretty(&meta).unwrap()).unwrap();
    dir
}

const OPERATOR_SECRET: &str = "operator-developer-token-0123456789";
const AGENT_KEY: &str = "agent-key-0123456789-abcdefghijklmnopqrstuvwxyz";

async fn secret_env_headers_stay_on_the_server(backend: Backend) {
    let providers = providers_with_secret_header();
    let dir = providers.path().display().to_string();
    let app = sandbox_app(
        backend,
        &[
            ("PLUGBOARD_PROVIDERS_DIR", &dir),
            ("PLUGBOARD_SANDBOX_OPERATOR_TOKEN", OPERATOR_SECRET),
            ("PLUGBOARD_SANDBOX_REGION", "eu-1"),
            ("AGENT_SERVICE_KEY", AGENT_KEY),
        ],
    )
    .await;
    let owner = app.signup("owner@h.example", "Headers Co").await;
    let conn = connect(&app, &owner, "workspace").await;
    let key = make_key(&app, &owner, &["tokens:read", "tokens:read_refresh"]).await;

    let res = tokens(&app, &key, conn).await;
    assert_eq!(res.status(), StatusCode::OK);
    let text = res.text().await.unwrap();
    assert!(
        !text.contains(OPERATOR_SECRET),
        "secret header handed out: {text}"
    );
    let issued: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(issued["headers"]["X-Sandbox-Company"], "acme");
    assert_eq!(issued["headers"]["X-Sandbox-Region"], "eu-1");
    assert!(issued["headers"].get("X-Sandbox-Operator").is_none());
    // Nor to the deployment-wide key.
    let res = client()
        .get(app.url(&format!(
            "/api/internal/connection-tokens?connectionId={conn}"
        )))
        .header("x-agent-service-key", AGENT_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(!res.text().await.unwrap().contains(OPERATOR_SECRET));
    // Plugboard's own calls still send it: the test call passes.
    let diagnostics = owner
        .client
        .get_json(app.url("/api/integrations/sandbox/test"))
        .await;
    assert_eq!(diagnostics["ok"], true, "{diagnostics}");
    // The shipped Google Ads developer token is marked secret.
    let ads = owner
        .client
        .get_json(app.url("/api/integrations/google-ads"))
        .await;
    let developer = ads["requiredHeaders"]
        .as_array()
        .or_else(|| ads["provider"]["requiredHeaders"].as_array())
        .expect("google-ads lists its required headers")
        .iter()
        .find(|h| h["key"] == "developer-token")
        .unwrap()
        .clone();
    assert_eq!(developer["secret"], true);
    app.stop().await;
}

async fn cancel_and_retry_follow_sync_now(backend: Backend) {
    let app = sandbox_app(backend, &[]).await;
    let owner = app.signup("owner@c.example", "Cancel Co").await;
    let alice = join(&app, &owner, "alice@c.example", "member").await;
    let bob = join(&app, &owner, "bob@c.example", "member").await;
    let ws = owner.workspace_id;
    let workspace_conn = connect(&app, &owner, "workspace").await;
    let alice_conn = connect(&app, &alice, "user").await;
    // Waiting jobs aren't claimed by the workers: they stay cancellable.
    let ws_waiting = a_job_on(
        &app,
        ws,
        workspace_conn,
        "projects",
        JobStatus::WaitingExternal,
    )
    .await;
    let alice_waiting =
        a_job_on(&app, ws, alice_conn, "projects", JobStatus::WaitingExternal).await;
    let ws_failed = a_job_on(&app, ws, workspace_conn, "people", JobStatus::Failed).await;
    let alice_failed = a_job_on(&app, ws, alice_conn, "people", JobStatus::Failed).await;
    let cancel = |user: &TestUser, job: Uuid| {
        let c = user.client.clone();
        let url = app.url(&format!("/api/jobs/{job}/cancel"));
        async move { c.post_json(url, &json!({})).await }
    };
    let retry = |user: &TestUser, job: Uuid| {
        let c = user.client.clone();
        let url = app.url(&format!("/api/jobs/{job}/retry"));
        async move { c.post_json(url, &json!({})).await }
    };

    // A member may not touch the workspace's jobs (403) nor see another's (404).
    api_error(cancel(&bob, ws_waiting).await, StatusCode::FORBIDDEN).await;
    api_error(retry(&bob, ws_failed).await, StatusCode::FORBIDDEN).await;
    api_error(cancel(&bob, alice_waiting).await, StatusCode::NOT_FOUND).await;
    api_error(retry(&bob, alice_failed).await, StatusCode::NOT_FOUND).await;
    api_error(cancel(&alice, ws_waiting).await, StatusCode::FORBIDDEN).await;
    // The admin may not touch Alice's: it isn't theirs to see.
    api_error(cancel(&owner, alice_waiting).await, StatusCode::NOT_FOUND).await;
    api_error(retry(&owner, alice_failed).await, StatusCode::NOT_FOUND).await;
    // The job page offers the buttons only to those allowed.
    let page = bob
        .client
        .get_text(app.url(&format!("/data/jobs/{ws_failed}")))
        .await;
    assert!(page.contains("Sync job") && !page.contains("job-retry"));
    let page = bob
        .client
        .get_text(app.url(&format!("/data/jobs/{ws_waiting}")))
        .await;
    assert!(!page.contains("job-cancel"));
    let page = owner
        .client
        .get_text(app.url(&format!("/data/jobs/{ws_failed}")))
        .await;
    assert!(page.contains("job-retry"));
    let page = alice
        .client
        .get_text(app.url(&format!("/data/jobs/{alice_waiting}")))
        .await;
    assert!(page.contains("job-cancel"));

    // The owner of the personal connection may, on that connection.
    let res = cancel(&alice, alice_waiting).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], "cancelled");
    let res = retry(&alice, alice_failed).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let again: Value = res.json().await.unwrap();
    let shown = alice
        .client
        .get_json(app.url(&format!("/api/jobs/{}", again["jobId"].as_str().unwrap())))
        .await;
    assert_eq!(shown["job"]["connectionId"], alice_conn.to_string());

    // An admin may on the workspace's, from the page too.
    let csrf = app.csrf(&owner.client, "/data/connections").await;
    let res = owner
        .client
        .post(app.url(&format!("/data/jobs/{ws_waiting}/cancel")))
        .form(&[("_csrf", csrf.as_str()), ("confirm", "yes")])
        .send()
        .await
        .unwrap();
    assert!(res.status().is_redirection(), "{}", res.status());
    let shown = owner
        .client
        .get_json(app.url(&format!("/api/jobs/{ws_waiting}")))
        .await;
    assert_eq!(shown["job"]["status"], "cancelled");
    let res = retry(&owner, ws_failed).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let again: Value = res.json().await.unwrap();
    let shown = owner
        .client
        .get_json(app.url(&format!("/api/jobs/{}", again["jobId"].as_str().unwrap())))
        .await;
    assert_eq!(shown["job"]["connectionId"], workspace_conn.to_string());
    app.stop().await;
}
