//! The page kit: workspace time zone, nav on error pages, CSP and static
//! assets, confirmation before destructive actions.

mod common;

use common::{Backend, ClientExt, TestApp, TestUser, spawn_app};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use serde_json::{Value, json};

on_both_backends!(
    time_zone_is_validated_and_used,
    error_pages_have_the_nav_when_signed_in,
    csp_allows_own_scripts_and_assets_are_served,
    destructive_actions_need_confirmation,
    forms_answer_errors_inline_and_keep_what_was_typed,
);

async fn post_form(
    app: &TestApp,
    user: &TestUser,
    path: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let token = app.csrf(&user.client, "/").await;
    let mut form: Vec<(&str, &str)> = fields.to_vec();
    form.push(("_csrf", token.as_str()));
    user.client
        .post(app.url(path))
        .form(&form)
        .send()
        .await
        .unwrap()
}

async fn time_zone_of(app: &TestApp) -> String {
    let tz: Vec<String> = match &app.db {
        common::RawDb::Postgres(pool) => sqlx::query_scalar("SELECT time_zone FROM workspaces")
            .fetch_all(pool)
            .await
            .unwrap(),
        common::RawDb::Sqlite(pool) => sqlx::query_scalar("SELECT time_zone FROM workspaces")
            .fetch_all(pool)
            .await
            .unwrap(),
    };
    tz.join(",")
}

async fn time_zone_is_validated_and_used(backend: Backend) {
    let app = spawn_app(backend).await;
    let owner = app.signup("owner@a.example", "Acme").await;
    assert_eq!(time_zone_of(&app).await, "UTC", "the default");
    let page = owner.client.get_text(app.url("/settings/workspace")).await;
    assert!(page.contains("value=\"UTC\""), "{page}");

    // An unknown zone: 422, the form again with the typed value and the
    // error beside the field; nothing saved.
    let res = post_form(
        &app,
        &owner,
        "/settings/workspace",
        &[("time_zone", "Mars/Olympus_Mons")],
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = res.text().await.unwrap();
    assert!(page.contains("value=\"Mars/Olympus_Mons\""), "{page}");
    assert!(page.contains("data-testid=\"error-time_zone\""), "{page}");
    assert!(page.contains("unknown time zone"), "{page}");
    assert_eq!(time_zone_of(&app).await, "UTC");

    // A real one (any case) is stored by its IANA name and used for times.
    let res = post_form(
        &app,
        &owner,
        "/settings/workspace",
        &[("time_zone", "asia/kolkata")],
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(time_zone_of(&app).await, "Asia/Kolkata");
    let res = owner
        .client
        .post_json(
            app.url(&format!(
                "/api/workspaces/{}/service-keys",
                owner.workspace_id
            )),
            &json!({"name": "n8n", "scopes": ["runs:write"]}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let listed = owner
        .client
        .get_json(app.url(&format!(
            "/api/workspaces/{}/service-keys",
            owner.workspace_id
        )))
        .await;
    let at = time::OffsetDateTime::parse(
        listed[0]["createdAt"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    // Kolkata is UTC+05:30 all year.
    let local = at + time::Duration::minutes(330);
    let expected = format!(
        "{:04}-{:02}-{:02} {:02}:{:02} Asia/Kolkata",
        local.year(),
        u8::from(local.month()),
        local.day(),
        local.hour(),
        local.minute()
    );
    let keys = owner.client.get_text(app.url("/settings/keys")).await;
    assert!(keys.contains(&expected), "{expected} in {keys}");

    app.stop().await;
}

async fn error_pages_have_the_nav_when_signed_in(backend: Backend) {
    let app = spawn_app(backend).await;
    let owner = app.signup("owner@a.example", "Acme Nav").await;
    let res = owner
        .client
        .get(app.url("/no/such/page"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let page = res.text().await.unwrap();
    assert!(
        page.contains("data-testid=\"current-workspace\">Acme Nav<"),
        "{page}"
    );
    assert!(page.contains("Log out") && page.contains("<title>Not found"));
    // Each user sees their own workspace in it.
    let member = app.signup("member@b.example", "Beta").await;
    let res = member
        .client
        .get(app.url("/no/such/page"))
        .send()
        .await
        .unwrap();
    assert!(res.text().await.unwrap().contains(">Beta<"));

    // Signed out: the bare frame, no nav.
    let res = common::client()
        .get(app.url("/no/such/page"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let page = res.text().await.unwrap();
    assert!(!page.contains("current-workspace") && !page.contains("Log out"));
    app.stop().await;
}

async fn csp_allows_own_scripts_and_assets_are_served(backend: Backend) {
    let app = spawn_app(backend).await;
    let res = common::client()
        .get(app.url("/login"))
        .send()
        .await
        .unwrap();
    let csp = res.headers()[CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("http"),
        "{csp}"
    );
    let page = res.text().await.unwrap();
    assert!(page.contains("<script src=\"/static/app.js\" defer></script>"));
    assert!(page.contains("rel=\"icon\" href=\"/static/favicon.svg\""));
    assert!(!page.contains("<script>"), "no inline script");
    for (path, kind, needle) in [
        ("/static/favicon.svg", "image/svg+xml", "<svg"),
        ("/favicon.ico", "image/svg+xml", "<svg"),
        ("/static/app.js", "text/javascript", "data-confirm"),
    ] {
        let res = common::client().get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        assert!(
            res.headers()[CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with(kind),
            "{path}"
        );
        assert!(res.text().await.unwrap().contains(needle), "{path}");
    }
    app.stop().await;
}

async fn destructive_actions_need_confirmation(backend: Backend) {
    let app = spawn_app(backend).await;
    let owner = app.signup("owner@a.example", "Acme").await;
    let ws = owner.workspace_id;
    let key: Value = owner
        .client
        .post_json(
            app.url(&format!("/api/workspaces/{ws}/service-keys")),
            &json!({"name": "n8n <prod>", "scopes": ["runs:write"]}),
        )
        .await
        .json()
        .await
        .unwrap();
    let key_id = key["id"].as_str().unwrap().to_owned();
    let invite: Value = owner
        .client
        .post_json(
            app.url(&format!("/api/workspaces/{ws}/invites")),
            &json!({"email": "friend@a.example", "role": "member"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let invite_id = invite["id"].as_str().unwrap().to_owned();
    let open_invites = || async {
        owner
            .client
            .get_json(app.url(&format!("/api/workspaces/{ws}/invites")))
            .await
            .as_array()
            .unwrap()
            .len()
    };
    let key_revoked = || async {
        let keys = owner
            .client
            .get_json(app.url(&format!("/api/workspaces/{ws}/service-keys")))
            .await;
        !keys[0]["revokedAt"].is_null()
    };

    // Without `confirm=yes` each action only asks: a confirmation page
    // whose form repeats the action with the confirmation.
    for (path, what) in [
        (
            format!("/settings/keys/{key_id}/revoke"),
            "n8n &#60;prod&#62;",
        ),
        (
            format!("/settings/invites/{invite_id}/revoke"),
            "friend@a.example",
        ),
    ] {
        for confirm in [None, Some("no"), Some("")] {
            let mut fields = vec![];
            if let Some(c) = confirm {
                fields.push(("confirm", c));
            }
            let res = post_form(&app, &owner, &path, &fields).await;
            assert_eq!(res.status(), StatusCode::OK, "{path}");
            let page = res.text().await.unwrap();
            assert!(page.contains("data-testid=\"confirm\""), "{page}");
            assert!(page.contains(what), "{what} in {page}");
            assert!(!page.contains("<prod>"), "names are escaped");
            assert!(
                page.contains(&format!("action=\"{path}\""))
                    && page.contains("name=\"confirm\" value=\"yes\""),
                "{page}"
            );
        }
    }
    assert!(!key_revoked().await, "the key still works");
    assert_eq!(open_invites().await, 1, "the invite is still open");

    // With the confirmation they happen.
    let path = format!("/settings/keys/{key_id}/revoke");
    let res = post_form(&app, &owner, &path, &[("confirm", "yes")]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(key_revoked().await);
    let path = format!("/settings/invites/{invite_id}/revoke");
    let res = post_form(&app, &owner, &path, &[("confirm", "yes")]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(open_invites().await, 0);

    // Leaving (removing oneself) asks too; the owner stays a member.
    let path = format!("/settings/members/{}/remove", owner.id);
    let res = post_form(&app, &owner, &path, &[]).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.text().await.unwrap().contains("Leave workspace?"));
    let members = owner
        .client
        .get_json(app.url(&format!("/api/workspaces/{ws}/members")))
        .await;
    assert_eq!(members.as_array().unwrap().len(), 1);

    // Disconnecting asks, and names no other workspace's connection: an
    // unknown provider is not found before any question.
    let res = post_form(&app, &owner, "/data/no-such-provider/disconnect", &[]).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    app.stop().await;
}

async fn count_of(app: &TestApp, table: &str) -> i64 {
    match table {
        "workspaces" => app.db.count("SELECT COUNT(*) FROM workspaces").await,
        "service_keys" => app.db.count("SELECT COUNT(*) FROM service_keys").await,
        "invites" => app.db.count("SELECT COUNT(*) FROM invites").await,
        other => panic!("no count for {other}"),
    }
}

/// New workspace, new service key and invite by email: a bad value is the
/// page again with 422 (409 for someone already in), the error next to its
/// field and the typed values kept; nothing is created, nothing flashed.
async fn forms_answer_errors_inline_and_keep_what_was_typed(backend: Backend) {
    let app = spawn_app(backend).await;
    let owner = app.signup("owner@forms.example", "Forms").await;

    // A name with a right-to-left override.
    let res = post_form(
        &app,
        &owner,
        "/workspaces",
        &[("name", "Sales\u{202E}lanretnI")],
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = res.text().await.unwrap();
    assert!(page.contains("data-testid=\"error-name\""), "{page}");
    assert!(page.contains("U+202E"), "{page}");
    assert!(page.contains("value=\"Sales\u{202E}lanretnI\""), "{page}");
    assert!(page.contains("<h2>New workspace</h2>"), "{page}");
    assert_eq!(count_of(&app, "workspaces").await, 1);
    let res = post_form(&app, &owner, "/workspaces", &[("name", "   ")]).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("data-testid=\"error-name\"")
    );
    assert_eq!(count_of(&app, "workspaces").await, 1);

    // A key without scopes: the error at the scopes, the name kept.
    let res = post_form(&app, &owner, "/settings/keys", &[("name", "n8n prod")]).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = res.text().await.unwrap();
    assert!(page.contains("data-testid=\"error-scopes\""), "{page}");
    assert!(page.contains("value=\"n8n prod\""), "{page}");
    assert!(!page.contains("data-testid=\"new-key\""), "{page}");
    // A bad name: the error at the name, the ticked scope still ticked.
    let res = post_form(
        &app,
        &owner,
        "/settings/keys",
        &[("name", "\u{2066}n8n"), ("scope", "runs:write")],
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = res.text().await.unwrap();
    assert!(page.contains("data-testid=\"error-name\""), "{page}");
    assert!(page.contains("value=\"runs:write\" checked"), "{page}");
    assert!(!page.contains("value=\"tokens:read\" checked"), "{page}");
    assert_eq!(count_of(&app, "service_keys").await, 0);

    // An invite to something that isn't an address, then to yourself.
    let res = post_form(
        &app,
        &owner,
        "/settings/members",
        &[("email", "not-an-address"), ("role", "admin")],
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = res.text().await.unwrap();
    assert!(page.contains("data-testid=\"error-email\""), "{page}");
    assert!(page.contains("value=\"not-an-address\""), "{page}");
    assert!(page.contains("<option value=\"admin\" selected>"), "{page}");
    let res = post_form(
        &app,
        &owner,
        "/settings/members",
        &[("email", "owner@forms.example"), ("role", "member")],
    )
    .await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    let page = res.text().await.unwrap();
    assert!(page.contains("data-testid=\"error-email\""), "{page}");
    assert!(page.contains("already a member"), "{page}");
    assert!(!page.contains("data-testid=\"invite-link\""), "{page}");
    assert_eq!(count_of(&app, "invites").await, 0);
    // No flash was left behind for the next page.
    let home = owner.client.get_text(app.url("/")).await;
    assert!(!home.contains("already a member"), "{home}");
    app.stop().await;
}
