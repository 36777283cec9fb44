//! The Data Hub's pages: connection cards at /data/connections (a failed
//! last sync with its job, account names, the sandbox first, providers not
//! set up in one list, connecting your own account beside the workspace's,
//! the account chooser's search), and the Projects and People lists with
//! source vs local values, admin edit / reset, CSV, roles and tenancy.

mod common;

use std::time::Duration;

use common::{
    Backend, ClientExt, SANDBOX_ID, SANDBOX_SECRET, TestApp, TestUser, authorize, location,
    sandbox_app, set_faults,
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

on_both_backends!(
    a_failed_sync_shows_on_its_card,
    fresh_install_cards,
    members_connect_their_own_beside_the_workspace,
    account_chooser_has_search_and_select_all,
    projects_and_people_lists,
    edit_and_reset_on_the_entity_page,
    sandbox_tokens_survive_a_restart,
);

async fn connect(app: &TestApp, user: &TestUser) -> Uuid {
    let res = user
        .client
        .post_json(
            app.url("/api/integrations/sandbox/connect"),
            &json!({"flow": "client_credentials", "clientId": SANDBOX_ID, "clientSecret": SANDBOX_SECRET,
                    "headers": {"X-Sandbox-Company": "acme"}}),
        )
        .await;
    assert!(res.status().is_success(), "connect: {}", res.status());
    let conn: Value = res.json().await.unwrap();
    conn["id"].as_str().unwrap().parse().unwrap()
}

/// Syncs an object and waits for the job to finish; returns `{job, log}`.
async fn sync(app: &TestApp, user: &TestUser, object: &str) -> Value {
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
        if ["succeeded", "failed", "cancelled"].contains(&body["job"]["status"].as_str().unwrap()) {
            return body;
        }
        assert!(std::time::Instant::now() < deadline, "too slow: {body}");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

async fn post_form(
    app: &TestApp,
    user: &TestUser,
    path: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let token = app.csrf(&user.client, "/data/connections").await;
    let mut form: Vec<(&str, &str)> = fields.to_vec();
    form.push(("_csrf", token.as_str()));
    user.client
        .post(app.url(path))
        .form(&form)
        .send()
        .await
        .unwrap()
}

/// The element with `data-testid="{id}"` up to its closing `</{tag}>`.
fn part<'a>(html: &'a str, testid: &str, tag: &str) -> &'a str {
    let start = html
        .find(&format!("data-testid=\"{testid}\""))
        .unwrap_or_else(|| panic!("no {testid} in {html}"));
    let end = html[start..]
        .find(&format!("</{tag}>"))
        .map_or(html.len(), |e| start + e);
    &html[start..end]
}

async fn a_failed_sync_shows_on_its_card(backend: Backend) {
    let app = sandbox_app(backend, &[]).await;
    let owner = app.signup("owner@a.example", "Acme").await;
    connect(&app, &owner).await;
    let ok = sync(&app, &owner, "people").await;
    assert_eq!(ok["job"]["status"], "succeeded");
    let hub = owner.client.get_text(app.url("/data/connections")).await;
    assert!(
        hub.contains("data-testid=\"status-sandbox\">CONNECTED<"),
        "{hub}"
    );
    assert!(!hub.contains("sync-failed-sandbox"));

    set_faults(&app, json!({"bad_request_next": 1})).await;
    let failed = sync(&app, &owner, "people").await;
    assert_eq!(failed["job"]["status"], "failed", "{failed}");
    let id = failed["job"]["id"].as_str().unwrap();
    let hub = owner.client.get_text(app.url("/data/connections")).await;
    // Not "CONNECTED" with the old time: the failure, its reason, its job.
    assert!(
        hub.contains("data-testid=\"status-sandbox\">SYNC FAILED<"),
        "{hub}"
    );
    let card = part(&hub, "sync-failed-sandbox", "dd");
    assert!(
        card.contains("failed") && card.contains("(people)"),
        "{card}"
    );
    assert!(card.contains("HTTP 400"), "the stored error: {card}");
    assert!(
        card.contains(&format!("href=\"/data/jobs/{id}\"")),
        "{card}"
    );
    let stored = failed["job"]["error"].as_str().unwrap();
    assert!(
        stored.chars().count() <= 240 || card.contains('…'),
        "bounded"
    );
    assert!(hub.contains("Last good sync"), "{hub}");
    // The job page opens from the link.
    let res = owner
        .client
        .get(app.url(&format!("/data/jobs/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    // The next good sync of that object clears it.
    let again = sync(&app, &owner, "people").await;
    assert_eq!(again["job"]["status"], "succeeded");
    let hub = owner.client.get_text(app.url("/data/connections")).await;
    assert!(!hub.contains("sync-failed-sandbox"), "{hub}");
    assert!(hub.contains("data-testid=\"status-sandbox\">CONNECTED<"));

    app.stop().await;
}

async fn fresh_install_cards(backend: Backend) {
    let app = sandbox_app(backend, &[]).await;
    let owner = app.signup("owner@a.example", "Acme").await;
    let hub = owner.client.get_text(app.url("/data/connections")).await;
    let first = hub.find("data-testid=\"card-").expect("cards");
    assert!(
        hub[first..].starts_with("data-testid=\"card-sandbox\""),
        "the sandbox first: {}",
        &hub[first..first + 60]
    );
    // Providers without an OAuth app here: one list with what to set, no
    // dead cards, and no card says "not set up" beside a connect form.
    let list = part(&hub, "available-to-set-up", "section");
    assert!(list.contains("Google Analytics 4"), "{list}");
    assert!(
        list.contains("<code>PLUGBOARD_GOOGLE_CLIENT_ID</code>"),
        "{list}"
    );
    assert!(!hub.contains("data-testid=\"card-ga4\""), "{hub}");
    assert!(!hub.contains("Not set up on this server"));
    let cards = hub.matches("class=\"card provider\"").count();
    let listed = list.matches("<li><strong>").count();
    let installed = app.state.providers.iter().count();
    assert_eq!(cards + listed, installed, "every provider once");
    assert!(listed > cards, "{cards} cards, {listed} listed");
    // The /data route still answers (the dashboard replaces it).
    let res = owner.client.get(app.url("/data")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // Nav.
    for link in [
        "href=\"/data/connections\"",
        "href=\"/data/projects\"",
        "href=\"/data/people\"",
    ] {
        assert!(hub.contains(link), "{link}");
    }
    app.stop().await;
}

async fn members_connect_their_own_beside_the_workspace(backend: Backend) {
    let app = sandbox_app(backend, &[]).await;
    let owner = app.signup("owner@a.example", "Acme").await;
    let res = authorize(&app, &owner.client, "workspace", "approve").await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let member = app.signup("member@a.example", "Member's own").await;
    app.join(
        &owner.client,
        owner.workspace_id,
        &member.client,
        "member@a.example",
        "member",
    )
    .await;
    // Work in the owner's workspace.
    let token = app.csrf(&member.client, "/").await;
    let res = member
        .client
        .post(app.url(&format!("/workspaces/{}/switch", owner.workspace_id)))
        .form(&[("_csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert!(res.status().is_redirection());

    let hub = member.client.get_text(app.url("/data/connections")).await;
    let card = part(&hub, "card-sandbox", "section");
    assert!(card.contains(">CONNECTED<"), "{card}");
    assert!(
        card.contains("href=\"/api/oauth/sandbox/start?ownership=user\""),
        "{card}"
    );
    let res = authorize(&app, &member.client, "user", "approve").await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "the member connected");
    let mine: Vec<Value> = common::connections(&member.client, &app)
        .await
        .into_iter()
        .filter(|c| c["ownership"] == "user")
        .collect();
    assert_eq!(mine.len(), 1, "{mine:?}");
    assert_eq!(mine[0]["status"], "CONNECTED");
    // Theirs is the card they see now; the owner still sees the workspace's
    // and the member's by status only.
    let hub = member.client.get_text(app.url("/data/connections")).await;
    let card = part(&hub, "card-sandbox", "section");
    assert!(card.contains("<dd>personal</dd>"), "{card}");
    let owner_hub = owner.client.get_text(app.url("/data/connections")).await;
    assert!(
        part(&owner_hub, "card-sandbox", "section").contains("<dd>workspace</dd>"),
        "{owner_hub}"
    );
    assert!(owner_hub.contains("data-testid=\"members-personal\""));
    app.stop().await;
}

async fn account_chooser_has_search_and_select_all(backend: Backend) {
    let app = sandbox_app(backend, &[]).await;
    let owner = app.signup("owner@a.example", "Acme").await;
    connect(&app, &owner).await;
    let page = owner
        .client
        .get_text(app.url("/data/sandbox/accounts"))
        .await;
    // The tools are hidden until the script shows them: without it, the
    // form is the plain list of choices and still submits.
    let tools = part(&page, "accounts-form", "form");
    assert!(
        tools.contains("data-account-tools") && tools.contains(" hidden>"),
        "{tools}"
    );
    assert!(tools.contains("data-testid=\"account-search\""));
    assert!(
        tools.contains("data-testid=\"select-all\""),
        "sandbox: multiple"
    );
    assert!(tools.matches("data-account-choice").count() >= 2);
    let js = owner.client.get_text(app.url("/static/app.js")).await;
    assert!(js.contains("data-account-search") && js.contains("data-select-all"));
    let res = post_form(
        &app,
        &owner,
        "/data/sandbox/accounts",
        &[("account_id", "prop-1"), ("account_id", "prop-2")],
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&res), "/data/connections");
    let hub = owner.client.get_text(app.url("/data/connections")).await;
    let names = part(&hub, "accounts-sandbox", "dd");
    assert!(
        names.contains("Acme Web") && !names.contains("prop-1"),
        "{names}"
    );
    app.stop().await;
}

/// Syncs both objects and maps them into projects and people.
async fn with_entities(app: &TestApp, owner: &TestUser) {
    connect(app, owner).await;
    for object in ["projects", "people"] {
        assert_eq!(sync(app, owner, object).await["job"]["status"], "succeeded");
        let res = owner
            .client
            .post_json(
                app.url(&format!("/api/integrations/sandbox/{object}/apply")),
                &json!({"conflictPolicy": "auto_create"}),
            )
            .await;
        assert_eq!(res.status(), StatusCode::OK);
    }
}

fn csv_rows(text: &str) -> Vec<&str> {
    text.split("\r\n").filter(|l| !l.is_empty()).collect()
}

async fn projects_and_people_lists(backend: Backend) {
    let app = sandbox_app(backend, &[]).await;
    let owner = app.signup("owner@a.example", "Acme").await;

    // Empty states lead on: connect first, then sync.
    let page = owner.client.get_text(app.url("/data/projects")).await;
    assert!(
        part(&page, "empty", "div").contains("href=\"/data/connections\""),
        "{page}"
    );
    with_entities(&app, &owner).await;

    let api: Vec<Value> = owner
        .client
        .get_json(app.url("/api/projects"))
        .await
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(api.len(), 60);
    let page = owner.client.get_text(app.url("/data/projects")).await;
    assert!(page.contains("data-testid=\"count\">60 projects"), "{page}");
    assert_eq!(page.matches("data-testid=\"row-").count(), 50, "a page");
    assert!(page.contains("rel=\"next\""));
    assert!(
        page.contains("Plugboard Sandbox · <code>proj-"),
        "the source: {page}"
    );
    assert!(page.contains(" · linked</span>"), "{page}");
    // Members see the data, not the edit links.
    assert!(page.contains("#edit\">Edit</a>"));

    // Search by number; the status filter; paging and sorting keep both.
    let number = api[0]["number"].as_str().unwrap();
    let page = owner
        .client
        .get_text(app.url(&format!("/data/projects?q={number}")))
        .await;
    assert!(
        page.contains("data-testid=\"count\">1 projects match"),
        "{page}"
    );
    let inactive = api.iter().filter(|p| p["status"] == "inactive").count();
    let page = owner
        .client
        .get_text(app.url("/data/projects?status=inactive&sort=key&dir=desc"))
        .await;
    assert_eq!(
        page.matches("data-testid=\"row-").count(),
        inactive,
        "{page}"
    );
    assert!(
        page.contains("sort=name&#38;dir=asc&#38;status=inactive"),
        "{page}"
    );
    let res = owner
        .client
        .get(app.url("/data/projects?q=a%01b"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = res.text().await.unwrap();
    assert!(page.contains("Field: <code>q</code>"), "{page}");
    let page = owner
        .client
        .get_text(app.url("/data/projects?q=no-such-thing"))
        .await;
    assert!(part(&page, "empty", "div").contains("Nothing matches"));

    // People: search by email.
    let people: Vec<Value> = owner
        .client
        .get_json(app.url("/api/people"))
        .await
        .as_array()
        .unwrap()
        .clone();
    let email = people[0]["email"].as_str().unwrap();
    let page = owner
        .client
        .get_text(app.url(&format!("/data/people?q={}", email.to_uppercase())))
        .await;
    assert!(
        page.contains("data-testid=\"count\">1 people match"),
        "{page}"
    );

    // CSV: local and source columns, every row, a formula guarded.
    let id = api[0]["id"].as_str().unwrap();
    let res = owner
        .client
        .patch_json(
            app.url(&format!("/api/projects/{id}")),
            &json!({"clientName": "=HYPERLINK(\"x\")"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    for path in ["/data/projects.csv", "/data/projects?format=csv"] {
        let res = owner.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert!(
            res.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/csv")
        );
        let text = res.text().await.unwrap();
        let rows = csv_rows(&text);
        assert_eq!(
            rows[0],
            "id,number,source_number,name,source_name,client_name,source_client_name,status,source_status,\
             start_date,source_start_date,end_date,source_end_date,edited_fields,providers,external_ids,link_status"
        );
        assert_eq!(rows.len(), 61, "{path}");
        let edited = rows.iter().find(|r| r.starts_with(id)).unwrap();
        assert!(
            edited.contains(",\"'=HYPERLINK(\"\"x\"\")\","),
            "quoted and guarded: {edited}"
        );
        assert!(
            edited.contains(",client_name,Plugboard Sandbox,proj-"),
            "{edited}"
        );
    }
    let text = owner
        .client
        .get_text(app.url("/data/people.csv?status=active"))
        .await;
    let active = people.iter().filter(|p| p["active"] == true).count();
    assert_eq!(csv_rows(&text).len(), active + 1);
    assert!(csv_rows(&text)[0].starts_with("id,name,source_name,email,source_email"));

    // A member sees the list without edit controls.
    let member = app.signup("member@a.example", "Mine").await;
    app.join(
        &owner.client,
        owner.workspace_id,
        &member.client,
        "member@a.example",
        "member",
    )
    .await;
    let token = app.csrf(&member.client, "/").await;
    member
        .client
        .post(app.url(&format!("/workspaces/{}/switch", owner.workspace_id)))
        .form(&[("_csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    let page = member.client.get_text(app.url("/data/projects")).await;
    assert!(page.contains("data-testid=\"count\">60 projects"), "{page}");
    assert!(!page.contains(">Edit</a>"));
    app.stop().await;
}

async fn edit_and_reset_on_the_entity_page(backend: Backend) {
    let app = sandbox_app(backend, &[]).await;
    let owner = app.signup("owner@a.example", "Acme").await;
    with_entities(&app, &owner).await;
    let api: Vec<Value> = owner
        .client
        .get_json(app.url("/api/projects"))
        .await
        .as_array()
        .unwrap()
        .clone();
    let project = &api[0];
    let id = project["id"].as_str().unwrap();
    let name = project["name"].as_str().unwrap();
    let path = format!("/data/projects/{id}");

    // A bad value: 422, the form again with the typed value and the error
    // beside its field; nothing saved.
    let res = post_form(
        &app,
        &owner,
        &format!("{path}/edit"),
        &[
            ("name", "Renamed"),
            ("start_date", "2024-05-01"),
            ("end_date", "2024-04-01"),
        ],
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = res.text().await.unwrap();
    assert!(page.contains("data-testid=\"error-end_date\""), "{page}");
    assert!(page.contains("value=\"Renamed\""), "{page}");
    let res = post_form(&app, &owner, &format!("{path}/edit"), &[("name", "")]).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("data-testid=\"error-name\"")
    );
    let now = owner
        .client
        .get_json(app.url(&format!("/api/projects/{id}")))
        .await;
    assert_eq!(now["name"], name);

    // An edit: local differs from the source, shown on both pages.
    let res = post_form(
        &app,
        &owner,
        &format!("{path}/edit"),
        &[("name", "Renamed here")],
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&res), path);
    let now = owner
        .client
        .get_json(app.url(&format!("/api/projects/{id}")))
        .await;
    assert_eq!(now["name"], "Renamed here");
    assert_eq!(now["localEdits"], json!(["name"]));
    let page = owner.client.get_text(app.url(&path)).await;
    let field = part(&page, "field-name", "tr");
    assert!(
        field.contains("Renamed here") && field.contains(name) && field.contains("edited here"),
        "{field}"
    );
    let list = owner
        .client
        .get_text(app.url("/data/projects?q=renamed"))
        .await;
    assert!(list.contains(&format!("source: {name}")), "{list}");

    // Reset asks first (without JavaScript), then sets the source's value.
    let res = post_form(&app, &owner, &format!("{path}/reset"), &[("field", "name")]).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("data-testid=\"confirm\"")
    );
    let now = owner
        .client
        .get_json(app.url(&format!("/api/projects/{id}")))
        .await;
    assert_eq!(now["name"], "Renamed here", "not before confirming");
    let res = post_form(
        &app,
        &owner,
        &format!("{path}/reset"),
        &[("field", "name"), ("confirm", "yes")],
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let now = owner
        .client
        .get_json(app.url(&format!("/api/projects/{id}")))
        .await;
    assert_eq!(now["name"], name);
    assert_eq!(now["localEdits"], json!([]));

    // People: the status is a choice.
    let people: Vec<Value> = owner
        .client
        .get_json(app.url("/api/people"))
        .await
        .as_array()
        .unwrap()
        .clone();
    let pid = people[0]["id"].as_str().unwrap();
    let res = post_form(
        &app,
        &owner,
        &format!("/data/people/{pid}/edit"),
        &[("active", "maybe")],
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let res = post_form(
        &app,
        &owner,
        &format!("/data/people/{pid}/edit"),
        &[("title", "Chief tester")],
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let now = owner
        .client
        .get_json(app.url(&format!("/api/people/{pid}")))
        .await;
    assert_eq!(now["title"], "Chief tester");

    // Members read the page but get 403 for its forms, and see no controls.
    let member = app.signup("member@a.example", "Mine").await;
    app.join(
        &owner.client,
        owner.workspace_id,
        &member.client,
        "member@a.example",
        "member",
    )
    .await;
    let token = app.csrf(&member.client, "/").await;
    member
        .client
        .post(app.url(&format!("/workspaces/{}/switch", owner.workspace_id)))
        .form(&[("_csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    let page = member.client.get_text(app.url(&path)).await;
    assert!(page.contains("data-testid=\"field-name\""));
    assert!(!page.contains("edit-form") && !page.contains("reset-name"));
    for (action, fields) in [
        ("edit", vec![("name", "Members can't")]),
        ("reset", vec![("field", "name"), ("confirm", "yes")]),
    ] {
        let res = post_form(&app, &member, &format!("{path}/{action}"), &fields).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{action}");
    }
    let now = owner
        .client
        .get_json(app.url(&format!("/api/projects/{id}")))
        .await;
    assert_eq!(now["name"], name);

    // Another workspace: 404 for the id, on the page and its forms.
    let outsider = app.signup("x@b.example", "Other").await;
    let res = outsider.client.get(app.url(&path)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = post_form(
        &app,
        &outsider,
        &format!("{path}/edit"),
        &[("name", "Mine")],
    )
    .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = post_form(
        &app,
        &outsider,
        &format!("{path}/reset"),
        &[("field", "name"), ("confirm", "yes")],
    )
    .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = outsider
        .client
        .get(app.url("/data/projects/not-an-id"))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_client_error());
    let list = outsider.client.get_text(app.url("/data/projects")).await;
    assert!(!list.contains(name), "nothing of the other workspace");
    app.stop().await;
}

async fn sandbox_tokens_survive_a_restart(backend: Backend) {
    let mut app = sandbox_app(backend, &[]).await;
    let owner = app.signup("owner@a.example", "Acme").await;
    let res = authorize(&app, &owner.client, "workspace", "approve").await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let diag = owner
        .client
        .get_json(app.url("/api/integrations/sandbox/test"))
        .await;
    assert_eq!(diag["ok"], true, "{diag}");
    // An access and a refresh token, stored as 32-byte digests only.
    assert_eq!(app.db.count("SELECT COUNT(*) FROM sandbox_tokens").await, 2);
    assert_eq!(
        app.db
            .count("SELECT COUNT(*) FROM sandbox_tokens WHERE length(token_hash) = 32")
            .await,
        2
    );

    app.restart().await;
    // The same session and connection; the token issued before still works
    // (no new authorization, no refresh).
    let diag = owner
        .client
        .get_json(app.url("/api/integrations/sandbox/test"))
        .await;
    assert_eq!(diag["ok"], true, "{diag}");
    let stats = common::sandbox_stats(&app).await;
    assert_eq!(stats["token_refresh"], 0, "{stats}");
    assert_eq!(stats["token_authorization_code"], 0, "{stats}");
    let hub = owner.client.get_text(app.url("/data/connections")).await;
    assert!(
        hub.contains("data-testid=\"status-sandbox\">CONNECTED<"),
        "{hub}"
    );

    // Disconnecting revokes the family: its rows go too.
    let res = owner
        .client
        .post_json(
            app.url("/api/data/disconnect"),
            &json!({"provider": "sandbox"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(app.db.count("SELECT COUNT(*) FROM sandbox_tokens").await, 0);
    app.stop().await;
}
