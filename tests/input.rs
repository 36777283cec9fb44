//! The one input validator: control characters (NUL above all, which
//! PostgreSQL can't store) and bidi overrides in names are refused with 422
//! naming the field and change nothing, on every route that once answered
//! 500; joiners in names are kept; control characters in path segments name
//! nothing; provider data with a NUL is stored escaped; a mangled sync body
//! is 400; `/login?next=` stays on this site.

mod common;

use common::{
    Backend, ClientExt, SANDBOX_ID, SANDBOX_SECRET, TestApp, TestUser, api_error, location,
    sandbox_app,
};
use plugboard::tenancy::WorkspaceId;
use reqwest::StatusCode;
use serde_json::{Value, json};

on_both_backends!(
    control_characters_are_refused_with_the_field_and_change_nothing,
    names_refuse_bidi_overrides_and_keep_joiners,
    control_characters_in_path_segments_name_nothing,
    provider_data_with_a_nul_is_stored_escaped,
    a_mangled_sync_body_is_refused_not_widened,
    login_next_stays_on_this_site,
);

async fn connect_sandbox(app: &TestApp, owner: &TestUser) {
    let res = owner
        .client
        .post_json(
            app.url("/api/integrations/sandbox/connect"),
            &json!({"flow": "client_credentials", "clientId": SANDBOX_ID,
                    "clientSecret": SANDBOX_SECRET, "headers": {"X-Sandbox-Company": "acme"}}),
        )
        .await;
    assert_eq!(
        res.status(),
        StatusCode::CREATED,
        "{}",
        res.text().await.unwrap()
    );
}

async fn assert_field(res: reqwest::Response, field: &str) {
    let error = api_error(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(error["field"], field, "{error}");
    let message = error["message"].as_str().unwrap();
    assert!(
        !message.contains('\0'),
        "the value is not echoed: {message:?}"
    );
}

/// Posts an urlencoded form with the page's CSRF token.
async fn post_form(
    app: &TestApp,
    c: &reqwest::Client,
    page: &str,
    to: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let csrf = app.csrf(c, page).await;
    let mut form: Vec<(&str, &str)> = vec![("_csrf", &csrf)];
    form.extend_from_slice(fields);
    c.post(app.url(to)).form(&form).send().await.unwrap()
}

async fn assert_form_refused(res: reqwest::Response, field: &str) {
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = res.text().await.unwrap();
    assert!(html.contains(field), "the page names the field: {html}");
    assert!(!html.contains('\0'));
}

async fn control_characters_are_refused_with_the_field_and_change_nothing(backend: Backend) {
    let app = sandbox_app(backend, &[]).await;
    let owner = app.signup("owner@example.com", "Acme").await;
    connect_sandbox(&app, &owner).await;
    let anonymous = common::client();

    // 1. The login email, API and form.
    let res = anonymous
        .post_json(
            app.url("/api/auth/login"),
            &json!({"email": "owner\u{0}@example.com", "password": "whatever it is"}),
        )
        .await;
    assert_field(res, "email").await;
    let res = post_form(
        &app,
        &anonymous,
        "/login",
        "/login",
        &[("email", "owner\u{0}@example.com"), ("password", "x")],
    )
    .await;
    assert_form_refused(res, "email").await;

    // 2. The members-form email.
    let res = post_form(
        &app,
        &owner.client,
        "/settings/members",
        "/settings/members",
        &[("email", "new\u{0}@example.com"), ("role", "member")],
    )
    .await;
    assert_form_refused(res, "email").await;
    let invites = owner
        .client
        .get_json(app.url(&format!("/api/workspaces/{}/invites", owner.workspace_id)))
        .await;
    assert_eq!(invites.as_array().unwrap().len(), 0, "{invites}");

    // 3. The jobs filters (a query string: 422 naming the parameter).
    for query in ["status=%00", "object=a%00b", "status=%1B"] {
        let res = owner
            .client
            .get(app.url(&format!("/api/integrations/sandbox/jobs?{query}")))
            .send()
            .await
            .unwrap();
        assert_field(res, query.split('=').next().unwrap()).await;
    }

    // 4. The matching externalId.
    let res = owner
        .client
        .post_json(
            app.url("/api/integrations/sandbox/projects/matching/confirm"),
            &json!({"pairs": [{"externalId": "proj\u{0}1", "entityId": "x"}]}),
        )
        .await;
    assert_field(res, "pairs[0].externalId").await;

    // 5. Rule filter values.
    let rules = app.url("/api/integrations/sandbox/projects/rules");
    let res = owner
        .client
        .put(&rules)
        .json(&json!({"interval": {"minutes": 60}, "behaviour": "full",
                      "filters": [{"field": "name", "op": "eq", "value": "a\u{0}b"}]}))
        .send()
        .await
        .unwrap();
    assert_field(res, "/filters/0/value").await;
    let saved = owner.client.get_json(rules.clone()).await;
    assert!(
        saved.as_array().is_none_or(|r| r.is_empty())
            && saved.get("rule").is_none_or(Value::is_null),
        "no rule saved: {saved}"
    );

    // 6. The credentials form: refused before any flash could carry it.
    let before = common::connections(&owner.client, &app).await.len();
    let res = post_form(
        &app,
        &owner.client,
        "/data/connections",
        "/data/sandbox/credentials",
        &[
            ("flow", "client_credentials"),
            ("client_id", "id\u{0}"),
            ("client_secret", "s"),
        ],
    )
    .await;
    assert_form_refused(res, "client_id").await;
    let hub = owner.client.get_text(app.url("/data/connections")).await;
    assert!(
        !hub.contains('\0') && !hub.contains("id\\0"),
        "no flash echoes it"
    );
    assert_eq!(common::connections(&owner.client, &app).await.len(), before);

    // Other C0 controls too, in JSON bodies.
    let res = owner
        .client
        .post_json(
            app.url("/api/data/select-account"),
            &json!({"provider": "sandbox", "accountIds": ["prop-1", "prop\u{7}2"]}),
        )
        .await;
    assert_field(res, "accountIds[1]").await;
    app.stop().await;
}

async fn names_refuse_bidi_overrides_and_keep_joiners(backend: Backend) {
    let app = common::spawn_app(backend).await;
    let owner = app.signup("names@example.com", "Names").await;
    let workspaces = app.url("/api/workspaces");
    let count = |c: Value| c.as_array().unwrap().len();
    let before = count(owner.client.get_json(workspaces.clone()).await);

    for (name, why) in [
        ("\u{202E}gnp.exe", "right-to-left override"),
        ("Team \u{2066}x\u{2069}", "isolate"),
        ("Team\u{0}", "NUL"),
        ("Team\u{7}", "C0 control"),
        ("Team\u{9b}", "C1 control"),
    ] {
        let res = owner
            .client
            .post_json(workspaces.clone(), &json!({ "name": name }))
            .await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{why}");
        assert_field(res, "name").await;
    }
    assert_eq!(
        count(owner.client.get_json(workspaces.clone()).await),
        before
    );

    // Sign-up names and organizations too.
    let res = common::client()
        .post_json(
            app.url("/api/auth/signup"),
            &json!({"email": "bidi@example.com", "password": "a long enough password",
                    "name": "Ana\u{202D}", "organization": "Org"}),
        )
        .await;
    assert_field(res, "name").await;
    let res = common::client()
        .post_json(
            app.url("/api/auth/signup"),
            &json!({"email": "bidi@example.com", "password": "a long enough password",
                    "name": "Ana", "organization": "Org\u{202A}"}),
        )
        .await;
    assert_field(res, "organization").await;

    // Joiners are part of real names: emoji sequences and Persian ZWNJ.
    for name in ["👩\u{200D}💻 Team", "می\u{200C}خواهم"] {
        let res = owner
            .client
            .post_json(workspaces.clone(), &json!({ "name": name }))
            .await;
        assert_eq!(res.status(), StatusCode::CREATED);
        let created: Value = res.json().await.unwrap();
        assert_eq!(created["name"], name, "{created}");
    }
    let res = common::client()
        .post_json(
            app.url("/api/auth/signup"),
            &json!({"email": "zwnj@example.com", "password": "a long enough password",
                    "name": "می\u{200C}خواهم", "organization": "👩\u{200D}💻 Team"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    app.stop().await;
}

async fn control_characters_in_path_segments_name_nothing(backend: Backend) {
    let app = sandbox_app(backend, &[]).await;
    let owner = app.signup("paths@example.com", "Paths").await;
    for path in [
        "/api/integrations/sand%00box/jobs",
        "/api/integrations/sandbox%0A/catalog",
        "/api/integrations/sandbox/proj%00ects/rules",
        "/api/jobs/%00",
    ] {
        let res = owner.client.get(app.url(path)).send().await.unwrap();
        api_error(res, StatusCode::NOT_FOUND).await;
    }
    let res = owner
        .client
        .post_json(
            app.url("/api/integrations/sand%00box/projects/sync"),
            &json!({}),
        )
        .await;
    api_error(res, StatusCode::NOT_FOUND).await;
    let res = owner
        .client
        .get(app.url("/data/sand%00box/accounts"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    app.stop().await;
}

async fn provider_data_with_a_nul_is_stored_escaped(backend: Backend) {
    let app = sandbox_app(backend, &[]).await;
    let owner = app.signup("nul@example.com", "Nul").await;
    connect_sandbox(&app, &owner).await;
    let ws = WorkspaceId(owner.workspace_id);
    let first = sync_and_wait(&app, &owner, "projects").await;
    assert_eq!(first["job"]["status"], "succeeded", "{first}");
    let connection_id = first["job"]["connectionId"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let records = app
        .store
        .list_records(ws, connection_id, "projects", 10_000)
        .await
        .unwrap();
    let target = records
        .iter()
        .find(|r| r.deleted_at.is_none())
        .unwrap()
        .external_id
        .clone();

    // The provider now sends a name with a NUL in it.
    let sandbox = app.state.sandbox.as_ref().unwrap();
    sandbox.touch_project(&target, "Before\u{0}after");
    let second = sync_and_wait(&app, &owner, "projects").await;
    assert_eq!(second["job"]["status"], "succeeded", "{second}");
    let stored = app
        .store
        .list_records(ws, connection_id, "projects", 10_000)
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.external_id == target)
        .unwrap();
    assert_eq!(
        stored.data["name"], "Before\\u0000after",
        "{:?}",
        stored.data
    );
    app.stop().await;
}

async fn sync_and_wait(app: &TestApp, user: &TestUser, object: &str) -> Value {
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
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let body = user
            .client
            .get_json(app.url(&format!("/api/jobs/{id}")))
            .await;
        let status = body["job"]["status"].as_str().unwrap_or_default();
        if ["succeeded", "failed", "cancelled"].contains(&status) {
            return body;
        }
        assert!(std::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

async fn a_mangled_sync_body_is_refused_not_widened(backend: Backend) {
    let app = sandbox_app(backend, &[]).await;
    let owner = app.signup("syncbody@example.com", "Sync").await;
    connect_sandbox(&app, &owner).await;
    let sync = app.url("/api/data/sync");
    let send = |body: &'static str| {
        owner
            .client
            .post(sync.clone())
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    for body in [
        "not json",
        "{\"provider\": ",
        "[]",
        "\"sandbox\"",
        "null",
        "{} x",
    ] {
        let res = send(body).await.unwrap();
        api_error(res, StatusCode::BAD_REQUEST).await;
    }
    let res = send("{\"providr\": \"sandbox\"}").await.unwrap();
    api_error(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    let jobs = owner
        .client
        .get_json(app.url("/api/integrations/sandbox/jobs"))
        .await;
    assert_eq!(jobs.as_array().unwrap().len(), 0, "nothing queued: {jobs}");

    // No body still means every connected provider.
    let res = send("").await.unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let queued: Value = res.json().await.unwrap();
    assert!(!queued.as_array().unwrap().is_empty(), "{queued}");
    app.stop().await;
}

async fn login_next_stays_on_this_site(backend: Backend) {
    let app = common::spawn_app(backend).await;
    let user = app.signup("next@example.com", "Next").await;
    let cases = [
        ("%2Fdata", "/data"),
        ("%2Fsettings%2Fmembers%3Ftab%3D1", "/settings/members?tab=1"),
        ("%2F%2Fevil.example", "/"),
        ("%2F%5Cevil.example", "/"),
        ("%2F%252F%252Fevil.example", "/"),
        ("%2F%255Cevil.example", "/"),
        ("%2F%09%2Fevil.example", "/"),
        ("%2F%250A%2Fevil.example", "/"),
        ("https%3A%2F%2Fevil.example", "/"),
    ];
    for (given, expected) in cases {
        // Signed in: /login sends you on at once.
        let res = user
            .client
            .get(app.url(&format!("/login?next={given}")))
            .send()
            .await
            .unwrap();
        assert!(res.status().is_redirection(), "{given}: {}", res.status());
        assert_eq!(location(&res), expected, "{given}");
    }
    // Logging in through the form follows the same rule.
    for (given, expected) in [("/data", "/data"), ("/%2F/evil.example", "/")] {
        let fresh = common::client();
        let csrf = app.csrf(&fresh, "/login").await;
        let res = fresh
            .post(app.url("/login"))
            .form(&[
                ("_csrf", csrf.as_str()),
                ("email", "next@example.com"),
                ("password", common::PASSWORD),
                ("next", given),
            ])
            .send()
            .await
            .unwrap();
        assert!(res.status().is_redirection(), "{given}: {}", res.status());
        assert_eq!(location(&res), expected, "{given}");
    }
    app.stop().await;
}
