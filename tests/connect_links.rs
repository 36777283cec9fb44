//! Connect links: created by admins (page and API), opened by the right
//! person only — anyone else, signed out, another workspace, expired, used
//! or revoked links get 404 (or the log-in page) and use nothing up — the
//! happy path through the sandbox's OAuth to the "connected" page, and the
//! reconnect link a `needs_reauth` webhook event carries.

mod common;

use std::time::Duration;

use common::{Backend, ClientExt, TestApp, TestUser, api_error, location, sandbox_app};
use reqwest::StatusCode;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

on_both_backends!(
    workspace_link_connects_through_the_sandbox_once,
    only_the_right_person_may_open_a_link,
    expired_used_and_revoked_links_are_gone,
    members_cannot_create_links,
    provider_page_creates_lists_and_revokes_links,
    needs_reauth_event_carries_a_working_reconnect_link,
);

const LINKS_OPEN: &str =
    "SELECT COUNT(*) FROM connect_links WHERE used_at IS NULL AND revoked_at IS NULL";

async fn create_link(app: &TestApp, admin: &TestUser, body: Value) -> Value {
    let res = admin
        .client
        .post_json(
            app.url(&format!(
                "/api/workspaces/{}/connect-links",
                admin.workspace_id
            )),
            &body,
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED, "create link");
    res.json().await.unwrap()
}

/// The path of a link URL (`/connect/<token>`).
fn link_path(link: &Value) -> String {
    let url = link["url"].as_str().unwrap();
    let at = url.find("/connect/").expect("a connect URL");
    url[at..].to_owned()
}

async fn status_of(c: &reqwest::Client, app: &TestApp, path: &str) -> StatusCode {
    c.get(app.url(path)).send().await.unwrap().status()
}

/// Opens the link page and presses "Continue": the redirect to the provider.
async fn begin(app: &TestApp, c: &reqwest::Client, path: &str) -> reqwest::Response {
    let csrf = app.csrf(c, path).await;
    c.post(app.url(path))
        .form(&[("_csrf", csrf.as_str())])
        .send()
        .await
        .unwrap()
}

/// Approves at the sandbox's consent page and follows the callback.
async fn consent(app: &TestApp, c: &reqwest::Client, authorize_url: &str) -> reqwest::Response {
    assert!(
        authorize_url.starts_with(&app.url("/sandbox/oauth/authorize")),
        "{authorize_url}"
    );
    let page = c.get(authorize_url).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let mut form: Vec<(String, String)> = reqwest::Url::parse(authorize_url)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    form.push(("decision".into(), "approve".into()));
    form.push(("company".into(), "acme".into()));
    let res = c
        .post(app.url("/sandbox/oauth/authorize"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert!(res.status().is_redirection(), "consent: {}", res.status());
    c.get(location(&res)).send().await.unwrap()
}

async fn connections(c: &reqwest::Client, app: &TestApp) -> Vec<Value> {
    common::connections(c, app).await
}

async fn audit_actions(app: &TestApp, admin: &TestUser) -> Vec<String> {
    admin
        .client
        .get_json(app.url(&format!("/api/workspaces/{}/audit", admin.workspace_id)))
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect()
}

async fn workspace_link_connects_through_the_sandbox_once(backend: Backend) {
    let app = sandbox_app(backend, &[]).await;
    let owner = app.signup("owner@a.example", "Acme").await;
    let link = create_link(&app, &owner, json!({"provider": "sandbox"})).await;
    assert_eq!(link["ownership"], "workspace");
    assert!(link["qrSvg"].as_str().unwrap().contains("<svg"), "{link}");
    let path = link_path(&link);
    // Stored hashed: the token is nowhere in the database.
    let token = path.trim_start_matches("/connect/").to_owned();
    assert!(!app.db.dump_text().await.contains(&token));

    let page = owner.client.get_text(app.url(&path)).await;
    assert!(page.contains("Connect Plugboard Sandbox"), "{page}");
    assert!(page.contains("data-testid=\"connect-link-continue\""));
    let res = begin(&app, &owner.client, &path).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let res = consent(&app, &owner.client, &location(&res)).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&res), "/connected/sandbox");
    let page = owner.client.get_text(app.url("/connected/sandbox")).await;
    assert!(page.contains("Plugboard Sandbox connected"), "{page}");
    assert!(page.contains("CONNECTED"), "{page}");
    assert!(page.contains("data-testid=\"connected-choose-accounts\""));

    let list = connections(&owner.client, &app).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["status"], "CONNECTED");
    assert_eq!(list[0]["ownership"], "workspace");

    // Single use: the link is gone, for its opener too.
    assert_eq!(
        status_of(&owner.client, &app, &path).await,
        StatusCode::NOT_FOUND
    );
    let open = owner
        .client
        .get_json(app.url(&format!(
            "/api/workspaces/{}/connect-links",
            owner.workspace_id
        )))
        .await;
    assert_eq!(open, json!([]));
    let actions = audit_actions(&app, &owner).await;
    for a in [
        "connect_link.create",
        "connect_link.use",
        "connection.connect",
    ] {
        assert!(actions.iter().any(|x| x == a), "{a} not in {actions:?}");
    }
    app.stop().await;
}

async fn only_the_right_person_may_open_a_link(backend: Backend) {
    let app = sandbox_app(backend, &[]).await;
    let owner = app.signup("owner@a.example", "Acme").await;
    let member = app.signup("member@a.example", "Member's own").await;
    app.join(
        &owner.client,
        owner.workspace_id,
        &member.client,
        &member.email,
        "member",
    )
    .await;
    let other = app.signup("admin@b.example", "Beta").await;

    let workspace_link =
        link_path(&create_link(&app, &owner, json!({"provider": "sandbox"})).await);
    let user_link = create_link(
        &app,
        &owner,
        json!({"provider": "sandbox", "ownership": "user", "userId": member.id}),
    )
    .await;
    assert_eq!(user_link["userId"], member.id.to_string());
    let user_link = link_path(&user_link);

    // A member may not use a workspace link; an admin not a user link
    // that names someone else; another workspace's admin neither.
    assert_eq!(
        status_of(&member.client, &app, &workspace_link).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        status_of(&owner.client, &app, &user_link).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        status_of(&other.client, &app, &workspace_link).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        status_of(&other.client, &app, &user_link).await,
        StatusCode::NOT_FOUND
    );
    let res = begin(&app, &owner.client, &workspace_link).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "the owner may");
    // Pressing "Continue" by hand with someone else's session is refused too.
    let csrf = app.csrf(&other.client, "/").await;
    let res = other
        .client
        .post(app.url(&user_link))
        .form(&[("_csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    // None of that used the user link up.
    assert_eq!(app.db.count(LINKS_OPEN).await, 1);

    // Signed out: log in first, then back to the link.
    let anonymous = common::client();
    let res = anonymous.get(app.url(&user_link)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let login = location(&res);
    assert!(login.starts_with("/login?next=%2Fconnect%2F"), "{login}");

    // Another workspace's admin can't list, create in or revoke here.
    let res = other
        .client
        .get(app.url(&format!(
            "/api/workspaces/{}/connect-links",
            owner.workspace_id
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);

    // The named member connects their own account.
    let page = member.client.get_text(app.url(&user_link)).await;
    assert!(
        page.contains("your own Plugboard Sandbox account"),
        "{page}"
    );
    let res = begin(&app, &member.client, &user_link).await;
    let res = consent(&app, &member.client, &location(&res)).await;
    assert_eq!(location(&res), "/connected/sandbox");
    let mine = connections(&member.client, &app).await;
    let personal = mine
        .iter()
        .find(|c| c["ownership"] == "user")
        .expect("a personal connection");
    assert_eq!(personal["ownerUserId"], member.id.to_string());
    assert_eq!(app.db.count(LINKS_OPEN).await, 0);
    app.stop().await;
}

async fn expired_used_and_revoked_links_are_gone(backend: Backend) {
    let app = sandbox_app(backend, &[]).await;
    let owner = app.signup("owner@a.example", "Acme").await;
    let base = format!("/api/workspaces/{}/connect-links", owner.workspace_id);

    // Expired: 404 on open and on continue, nothing used.
    let expired = link_path(&create_link(&app, &owner, json!({"provider": "sandbox"})).await);
    app.db
        .execute("UPDATE connect_links SET expires_at = '2000-01-01T00:00:00Z'")
        .await;
    assert_eq!(
        status_of(&owner.client, &app, &expired).await,
        StatusCode::NOT_FOUND
    );
    let csrf = app.csrf(&owner.client, "/").await;
    let res = owner
        .client
        .post(app.url(&expired))
        .form(&[("_csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let gone = res.text().await.unwrap();
    assert!(gone.contains("invalid, expired or already used"), "{gone}");
    assert!(gone.contains("<nav"), "the gone page keeps the nav");
    assert_eq!(
        app.db
            .count("SELECT COUNT(*) FROM connect_links WHERE used_at IS NOT NULL")
            .await,
        0
    );

    // Used: the second continue is refused, even before the OAuth finished.
    let used = link_path(&create_link(&app, &owner, json!({"provider": "sandbox"})).await);
    let res = begin(&app, &owner.client, &used).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let res = owner
        .client
        .post(app.url(&used))
        .form(&[("_csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        status_of(&owner.client, &app, &used).await,
        StatusCode::NOT_FOUND
    );

    // Revoked through the API: gone, and revoking again is 404.
    let link = create_link(&app, &owner, json!({"provider": "sandbox"})).await;
    let id = link["id"].as_str().unwrap();
    let listed = owner.client.get_json(app.url(&base)).await;
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert!(
        !listed.to_string().contains("/connect/"),
        "no token in lists"
    );
    let res = owner
        .client
        .delete_json(app.url(&format!("{base}/{id}")))
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        status_of(&owner.client, &app, &link_path(&link)).await,
        StatusCode::NOT_FOUND
    );
    let res = owner
        .client
        .delete_json(app.url(&format!("{base}/{id}")))
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert!(
        audit_actions(&app, &owner)
            .await
            .iter()
            .any(|a| a == "connect_link.revoke")
    );

    // Bad requests name their field.
    let res = owner
        .client
        .post_json(app.url(&base), &json!({"provider": "nope"}))
        .await;
    assert_eq!(
        api_error(res, StatusCode::UNPROCESSABLE_ENTITY).await["field"],
        "provider"
    );
    let res = owner
        .client
        .post_json(
            app.url(&base),
            &json!({"provider": "sandbox", "ownership": "user"}),
        )
        .await;
    assert_eq!(
        api_error(res, StatusCode::UNPROCESSABLE_ENTITY).await["field"],
        "userId"
    );
    app.stop().await;
}

async fn members_cannot_create_links(backend: Backend) {
    let app = sandbox_app(backend, &[]).await;
    let owner = app.signup("owner@a.example", "Acme").await;
    let member = app.signup("member@a.example", "Member's own").await;
    app.join(
        &owner.client,
        owner.workspace_id,
        &member.client,
        &member.email,
        "member",
    )
    .await;
    let base = format!("/api/workspaces/{}/connect-links", owner.workspace_id);
    let res = member
        .client
        .post_json(app.url(&base), &json!({"provider": "sandbox"}))
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = member.client.get(app.url(&base)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    // Nor on the page.
    let csrf = app.csrf(&member.client, "/").await;
    let res = member
        .client
        .post(app.url("/integrations/sandbox/connect-links"))
        .form(&[("_csrf", csrf.as_str()), ("owner", "workspace")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.db.count("SELECT COUNT(*) FROM connect_links").await, 0);
    app.stop().await;
}

async fn provider_page_creates_lists_and_revokes_links(backend: Backend) {
    let app = sandbox_app(backend, &[]).await;
    let owner = app.signup("owner@a.example", "Acme").await;
    let page = "/integrations/sandbox";
    let csrf = app.csrf(&owner.client, page).await;
    let html = owner
        .client
        .post(app.url("/integrations/sandbox/connect-links"))
        .form(&[("_csrf", csrf.as_str()), ("owner", "workspace")])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("data-testid=\"new-connect-link\""), "{html}");
    assert!(html.contains("data-testid=\"connect-link-qr\""));
    assert!(html.contains("<svg"), "the QR code is drawn on the server");
    assert!(!html.contains("<?xml"), "inline SVG, no XML declaration");

    // A member id that isn't one: the error sits at the field.
    let res = owner
        .client
        .post(app.url("/integrations/sandbox/connect-links"))
        .form(&[
            ("_csrf", csrf.as_str()),
            ("owner", "0190f0f0-0000-7000-8000-000000000000"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = res.text().await.unwrap();
    assert!(html.contains("data-testid=\"error-owner\""), "{html}");

    // Listed; revoking asks first, then revokes.
    let links = owner
        .client
        .get_json(app.url(&format!(
            "/api/workspaces/{}/connect-links",
            owner.workspace_id
        )))
        .await;
    let id = links[0]["id"].as_str().unwrap().to_owned();
    let html = owner.client.get_text(app.url(page)).await;
    assert!(
        html.contains(&format!("data-testid=\"connect-link-{id}\"")),
        "{html}"
    );
    let action = format!("/integrations/sandbox/connect-links/{id}/revoke");
    let res = owner
        .client
        .post(app.url(&action))
        .form(&[("_csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("data-testid=\"confirm\"")
    );
    assert_eq!(app.db.count(LINKS_OPEN).await, 1, "asking changes nothing");
    let res = owner
        .client
        .post(app.url(&action))
        .form(&[("_csrf", csrf.as_str()), ("confirm", "yes")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.db.count(LINKS_OPEN).await, 0);
    app.stop().await;
}

async fn needs_reauth_event_carries_a_working_reconnect_link(backend: Backend) {
    let hook = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&hook)
        .await;
    let mut app = sandbox_app(backend, &[("PLUGBOARD_OUTBOUND_ALLOW", "127.0.0.1")]).await;
    let owner = app.signup("owner@a.example", "Acme").await;
    let res = owner
        .client
        .put(app.url(&format!("/api/workspaces/{}/webhook", owner.workspace_id)))
        .json(&json!({"url": format!("{}/hook", hook.uri())}))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success());
    common::authorize(&app, &owner.client, "workspace", "approve").await;

    // The sandbox forgets the grant (its tokens are persisted; the restart
    // reloads them), the access token expires: the refresh is refused.
    app.db.execute("DELETE FROM sandbox_tokens").await;
    app.restart().await;
    app.db
        .execute("UPDATE connections SET access_expires_at = '2000-01-01T00:00:00Z'")
        .await;
    let client = app.login("owner@a.example").await;
    let diag = client
        .get_json(app.url("/api/integrations/sandbox/test"))
        .await;
    assert_eq!(diag["ok"], false, "{diag}");
    assert_eq!(
        connections(&client, &app).await[0]["status"],
        "NEEDS_REAUTH"
    );

    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let event = loop {
        let found = hook
            .received_requests()
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|r| serde_json::from_slice::<Value>(&r.body).unwrap())
            .find(|b| b["event"] == "needs_reauth");
        if let Some(event) = found {
            break event;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no needs_reauth event"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let url = event["reconnectUrl"].as_str().expect("a reconnect link");
    assert!(url.starts_with(&app.url("/connect/")), "{event}");
    assert!(event["reconnectLinkExpiresAt"].is_string(), "{event}");
    let token = url.rsplit('/').next().unwrap();
    // The queued payload (and the deliveries API) hold the link's id only.
    let deliveries = client
        .get_text(app.url(&format!(
            "/api/workspaces/{}/webhook/deliveries",
            owner.workspace_id
        )))
        .await;
    assert!(!deliveries.contains(token), "{deliveries}");
    assert!(!app.db.dump_text().await.contains(token));

    // The banner offers a reconnect link too.
    let page = client.get_text(app.url("/integrations/sandbox")).await;
    assert!(page.contains("data-testid=\"reconnect-link-"), "{page}");

    // The link reconnects the same connection.
    let path = format!("/connect/{token}");
    let page = client.get_text(app.url(&path)).await;
    assert!(page.contains("Reconnect Plugboard Sandbox"), "{page}");
    let res = begin(&app, &client, &path).await;
    let res = consent(&app, &client, &location(&res)).await;
    assert_eq!(location(&res), "/connected/sandbox");
    let list = connections(&client, &app).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["status"], "CONNECTED");
    app.stop().await;
}
