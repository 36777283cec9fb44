//! Who may do what with accounts: adding people is an invite they accept,
//! the default workspace is the one last chosen, one-time secrets live only
//! in the response that creates them, and password resets.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{
    Backend, ClientExt, PASSWORD, TestApp, TestUser, api_error, client, extract_csrf, spawn_app,
};
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use uuid::Uuid;

on_both_backends!(
    adding_by_email_is_an_invite_and_tells_nothing,
    default_workspace_is_the_last_chosen,
    one_time_secrets_never_reach_the_session,
    secret_responses_are_not_cached,
    password_reset_link_works_once,
    password_reset_is_limited_by_authority,
    cli_resets_a_password,
);

const NEW_PASSWORD: &str = "a brand new long password";

fn token_of(url: &str) -> String {
    url.rsplit('/').next().unwrap().to_owned()
}

fn sorted_keys(v: &Value) -> Vec<String> {
    let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    keys
}

async fn member_ids(app: &TestApp, admin: &TestUser) -> Vec<String> {
    let members: Value = admin
        .client
        .get_json(app.url(&format!("/api/workspaces/{}/members", admin.workspace_id)))
        .await;
    members
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["userId"].as_str().unwrap().to_owned())
        .collect()
}

async fn login_status(app: &TestApp, email: &str, password: &str) -> StatusCode {
    client()
        .post_json(
            app.url("/api/auth/login"),
            &json!({"email": email, "password": password}),
        )
        .await
        .status()
}

/// A person who has an account only through an invite to `admin`'s
/// workspace: no organization of their own.
async fn invited_account(app: &TestApp, admin: &TestUser, email: &str, role: &str) -> TestUser {
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
    let c = client();
    let res = c
        .post_json(
            app.url("/api/auth/signup"),
            &json!({"email": email, "password": PASSWORD, "name": "Invited",
                    "inviteToken": token_of(invite["inviteUrl"].as_str().unwrap())}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let me: Value = res.json().await.unwrap();
    TestUser {
        client: c,
        id: me["user"]["id"].as_str().unwrap().parse().unwrap(),
        email: email.to_owned(),
        workspace_id: admin.workspace_id,
    }
}

async fn adding_by_email_is_an_invite_and_tells_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let bob = app.signup("bob@b.example", "Org B").await;
    let carol = app.signup("carol@c.example", "Org C").await;
    let url = app.url(&format!("/api/workspaces/{}/members", bob.workspace_id));

    // An address with an account and one without get the same answer.
    let existing = bob
        .client
        .post_json(
            url.clone(),
            &json!({"email": carol.email, "role": "member"}),
        )
        .await;
    let unknown = bob
        .client
        .post_json(
            url.clone(),
            &json!({"email": "nobody@n.example", "role": "member"}),
        )
        .await;
    assert_eq!(existing.status(), StatusCode::ACCEPTED);
    assert_eq!(unknown.status(), existing.status());
    let existing: Value = existing.json().await.unwrap();
    let unknown: Value = unknown.json().await.unwrap();
    assert_eq!(sorted_keys(&existing), sorted_keys(&unknown));
    assert_eq!(existing["email"], carol.email);
    assert_eq!(unknown["email"], "nobody@n.example");
    assert!(
        existing["inviteUrl"]
            .as_str()
            .unwrap()
            .contains("/invites/")
    );

    // Carol is not a member until she accepts.
    assert!(!member_ids(&app, &bob).await.contains(&carol.id.to_string()));
    let me: Value = carol.client.get_json(app.url("/api/me")).await;
    assert_eq!(me["workspaces"].as_array().unwrap().len(), 1);
    let res = carol
        .client
        .get(app.url(&format!("/api/workspaces/{}", bob.workspace_id)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);

    // Someone else signed in can't take her invite.
    let mallory = app.signup("mallory@m.example", "Org M").await;
    let token = token_of(existing["inviteUrl"].as_str().unwrap());
    let res = mallory
        .client
        .post_json(app.url(&format!("/api/invites/{token}/accept")), &json!({}))
        .await;
    api_error(res, StatusCode::FORBIDDEN).await;

    let res = carol
        .client
        .post_json(app.url(&format!("/api/invites/{token}/accept")), &json!({}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(member_ids(&app, &bob).await.contains(&carol.id.to_string()));
    assert!(
        !member_ids(&app, &bob)
            .await
            .contains(&mallory.id.to_string())
    );

    // The form says the same for both, and adds nobody.
    let dave = app.signup("dave@d.example", "Org D").await;
    for email in ["dave@d.example", "nobody2@n.example"] {
        let csrf = app.csrf(&bob.client, "/settings/members").await;
        let res = bob
            .client
            .post(app.url("/settings/members"))
            .form(&[
                ("_csrf", csrf.as_str()),
                ("email", email),
                ("role", "member"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{email}");
        let page = res.text().await.unwrap();
        assert!(page.contains("data-testid=\"invite-link\""), "{page}");
        assert!(
            page.contains(&format!("Invite for {email} created.")),
            "{page}"
        );
    }
    assert!(!member_ids(&app, &bob).await.contains(&dave.id.to_string()));
    app.stop().await;
}

async fn current_workspace(app: &TestApp, c: &reqwest::Client) -> String {
    let me: Value = c.get_json(app.url("/api/me")).await;
    me["currentWorkspaceId"].as_str().unwrap().to_owned()
}

async fn default_workspace_is_the_last_chosen(backend: Backend) {
    let app = spawn_app(backend).await;
    let victim = app.signup("victim@v.example", "Victim Co").await;
    // An organization named to sort first.
    let attacker = app.signup("attacker@a.example", "AAA").await;
    app.join(
        &attacker.client,
        attacker.workspace_id,
        &victim.client,
        &victim.email,
        "member",
    )
    .await;
    let own = victim.workspace_id.to_string();
    let aaa = attacker.workspace_id.to_string();

    // Back to her own workspace, then log out and in: still hers.
    let res = victim
        .client
        .post_json(
            app.url(&format!("/api/workspaces/{own}/switch")),
            &json!({}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    victim
        .client
        .post_json(app.url("/api/auth/logout"), &json!({}))
        .await;
    let again = app.login(&victim.email).await;
    assert_eq!(current_workspace(&app, &again).await, own);
    let home = again.get_text(app.url("/")).await;
    assert!(
        home.contains("data-testid=\"current-workspace\">Victim Co<"),
        "{home}"
    );

    // She picks AAA through the page switcher: that is where she lands next.
    let csrf = app.csrf(&again, "/").await;
    let res = again
        .post(app.url(&format!("/workspaces/{aaa}/switch")))
        .form(&[("_csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let csrf = app.csrf(&again, "/").await;
    again
        .post(app.url("/logout"))
        .form(&[("_csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    let again = app.login(&victim.email).await;
    assert_eq!(current_workspace(&app, &again).await, aaa);

    // Removed from AAA, she falls back to the workspace she joined first.
    let res = attacker
        .client
        .delete_json(app.url(&format!("/api/workspaces/{aaa}/members/{}", victim.id)))
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let again = app.login(&victim.email).await;
    assert_eq!(current_workspace(&app, &again).await, own);
    let home = again.get_text(app.url("/")).await;
    assert!(
        home.contains("data-testid=\"current-workspace\">Victim Co<"),
        "{home}"
    );
    app.stop().await;
}

async fn one_time_secrets_never_reach_the_session(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.signup("admin@a.example", "Acme").await;

    let csrf = app.csrf(&admin.client, "/settings/keys").await;
    let res = admin
        .client
        .post(app.url("/settings/keys"))
        .form(&[
            ("_csrf", csrf.as_str()),
            ("name", "n8n"),
            ("scope", "tokens:read"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let page = res.text().await.unwrap();
    let start = page.find("value=\"pb_sk_").unwrap() + "value=\"".len();
    let key = &page[start..start + page[start..].find('"').unwrap()];
    assert!(key.len() > 20, "{key}");

    let csrf = extract_csrf(&page).unwrap();
    let res = admin
        .client
        .post(app.url("/settings/members"))
        .form(&[
            ("_csrf", csrf.as_str()),
            ("email", "new@a.example"),
            ("role", "member"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let page = res.text().await.unwrap();
    let start = page.find(&format!("{}/invites/", app.base)).unwrap();
    let link = &page[start..start + page[start..].find('"').unwrap()];
    let invite_token = token_of(link);
    assert!(invite_token.len() > 20);

    // Later pages don't show them again, and no table holds them: not the
    // sessions, not anything else.
    let keys_page = admin.client.get_text(app.url("/settings/keys")).await;
    assert!(!keys_page.contains(key));
    let members_page = admin.client.get_text(app.url("/settings/members")).await;
    assert!(!members_page.contains(&invite_token));
    let dump = app.db.dump_text().await;
    assert!(app.db.count("SELECT COUNT(*) FROM sessions").await > 0);
    assert!(!dump.contains(key), "the key is stored somewhere");
    assert!(!dump.contains(&invite_token), "the invite token is stored");
    app.stop().await;
}

async fn secret_responses_are_not_cached(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.signup("admin@a.example", "Acme").await;
    let member = invited_account(&app, &admin, "member@a.example", "member").await;
    let ws = admin.workspace_id;
    let no_store = |res: &reqwest::Response, what: &str| {
        assert_eq!(res.headers()["cache-control"], "no-store", "{what}");
    };
    let res = admin
        .client
        .post_json(
            app.url(&format!("/api/workspaces/{ws}/service-keys")),
            &json!({"name": "k", "scopes": ["tokens:read"]}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    no_store(&res, "service key");
    let res = admin
        .client
        .post_json(
            app.url(&format!("/api/workspaces/{ws}/invites")),
            &json!({"email": "x@a.example", "role": "member"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    no_store(&res, "invite");
    let res = admin
        .client
        .post_json(
            app.url(&format!("/api/workspaces/{ws}/members")),
            &json!({"email": "y@a.example", "role": "member"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    no_store(&res, "invite by members");
    let res = admin
        .client
        .post_json(
            app.url(&format!(
                "/api/workspaces/{ws}/members/{}/password-reset",
                member.id
            )),
            &json!({}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    no_store(&res, "password reset link");
    let reset: Value = res.json().await.unwrap();
    let res = client()
        .get(reset["resetUrl"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    no_store(&res, "reset page");
    let csrf = app.csrf(&admin.client, "/settings/members").await;
    let res = admin
        .client
        .post(app.url(&format!("/settings/members/{}/reset-password", member.id)))
        .form(&[("_csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    no_store(&res, "reset link page");
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("data-testid=\"reset-link\"")
    );
    // Static assets still cache.
    let css = client()
        .get(app.url("/static/app.css"))
        .send()
        .await
        .unwrap();
    assert_ne!(css.headers()["cache-control"], "no-store");
    app.stop().await;
}

async fn create_reset(app: &TestApp, admin: &TestUser, user: Uuid) -> reqwest::Response {
    admin
        .client
        .post_json(
            app.url(&format!(
                "/api/workspaces/{}/members/{user}/password-reset",
                admin.workspace_id
            )),
            &json!({}),
        )
        .await
}

/// Fills the reset form as a browser would; returns the answer.
async fn submit_reset(url: &str, password: &str) -> reqwest::Response {
    let browser = client();
    let page = browser.get(url).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let csrf = extract_csrf(&page.text().await.unwrap()).unwrap();
    browser
        .post(url)
        .form(&[("_csrf", csrf.as_str()), ("password", password)])
        .send()
        .await
        .unwrap()
}

async fn password_reset_link_works_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let bob = app.signup("bob@b.example", "Org B").await;
    let mia = invited_account(&app, &bob, "mia@b.example", "member").await;
    let mia_other_device = app.login(&mia.email).await;

    let res = create_reset(&app, &bob, mia.id).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let created: Value = res.json().await.unwrap();
    assert_eq!(created["email"], mia.email);
    let url = created["resetUrl"].as_str().unwrap().to_owned();
    assert!(url.starts_with(&format!("{}/reset/", app.base)));
    let token = token_of(&url);
    // Shown once, stored hashed only.
    assert!(!app.db.dump_text().await.contains(&token));
    assert!(
        app.db
            .count("SELECT COUNT(*) FROM password_resets WHERE used_at IS NULL")
            .await
            == 1
    );

    // The sign-up password policy applies; a refused password keeps the link.
    let res = submit_reset(&url, "short").await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        login_status(&app, &mia.email, PASSWORD).await,
        StatusCode::OK
    );

    let res = submit_reset(&url, NEW_PASSWORD).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.text().await.unwrap().contains("Password changed"));

    // Every old session is gone; the old password too.
    for c in [&mia.client, &mia_other_device] {
        let res = c.get(app.url("/api/me")).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        login_status(&app, &mia.email, PASSWORD).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login_status(&app, &mia.email, NEW_PASSWORD).await,
        StatusCode::OK
    );

    // Used once: dead, as page and as form.
    let res = client().get(&url).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let browser = client();
    let csrf = app.csrf(&browser, "/login").await;
    let res = browser
        .post(&url)
        .form(&[
            ("_csrf", csrf.as_str()),
            ("password", "yet another password"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        login_status(&app, &mia.email, NEW_PASSWORD).await,
        StatusCode::OK
    );

    // An expired link is refused; a newer link replaces an older one.
    let first: Value = create_reset(&app, &bob, mia.id).await.json().await.unwrap();
    let second: Value = create_reset(&app, &bob, mia.id).await.json().await.unwrap();
    let res = client()
        .get(first["resetUrl"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND, "replaced link");
    app.db
        .execute(
            "UPDATE password_resets SET expires_at = '2000-01-01T00:00:00Z' WHERE used_at IS NULL",
        )
        .await;
    let res = client()
        .get(second["resetUrl"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND, "expired link");

    // Audited, without the token.
    let audit: Value = bob
        .client
        .get_json(app.url(&format!("/api/workspaces/{}/audit", bob.workspace_id)))
        .await;
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(actions.contains(&"password_reset.create"), "{actions:?}");
    assert!(actions.contains(&"user.password_reset"), "{actions:?}");
    assert!(!audit.to_string().contains(&token));
    app.stop().await;
}

async fn password_reset_is_limited_by_authority(backend: Backend) {
    let app = spawn_app(backend).await;
    let bob = app.signup("bob@b.example", "Org B").await;
    let alice = app.signup("alice@a.example", "Org A").await;
    let adam = invited_account(&app, &bob, "adam@b.example", "admin").await;
    let olga = invited_account(&app, &bob, "olga@b.example", "owner").await;
    let mia = invited_account(&app, &bob, "mia@b.example", "member").await;
    // Carol owns an organization of her own and is a member of B.
    let carol = app.signup("carol@c.example", "Org C").await;
    app.join(
        &bob.client,
        bob.workspace_id,
        &carol.client,
        &carol.email,
        "member",
    )
    .await;

    // Another workspace's member, or its path, is "not found".
    let ghost = Uuid::now_v7();
    for (who, user) in [(&alice, mia.id), (&alice, ghost), (&bob, alice.id)] {
        let res = create_reset(&app, who, user).await;
        api_error(res, StatusCode::NOT_FOUND).await;
    }
    let res = alice
        .client
        .post_json(
            app.url(&format!(
                "/api/workspaces/{}/members/{}/password-reset",
                bob.workspace_id, mia.id
            )),
            &json!({}),
        )
        .await;
    api_error(res, StatusCode::NOT_FOUND).await;

    // Members reset nobody; admins don't reset owners, nor people who
    // belong to workspaces beyond their authority.
    let res = create_reset(&app, &mia, adam.id).await;
    api_error(res, StatusCode::FORBIDDEN).await;
    for target in [olga.id, bob.id, carol.id] {
        let res = create_reset(&app, &adam, target).await;
        api_error(res, StatusCode::FORBIDDEN).await;
    }
    let csrf = app.csrf(&adam.client, "/settings/members").await;
    let res = adam
        .client
        .post(app.url(&format!("/settings/members/{}/reset-password", olga.id)))
        .form(&[("_csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let page = adam.client.get_text(app.url("/settings/members")).await;
    assert!(page.contains("only owners can reset"), "{page}");
    assert!(!page.contains("data-testid=\"reset-link\""));
    assert_eq!(
        app.db.count("SELECT COUNT(*) FROM password_resets").await,
        0
    );

    // An admin resets a member; an owner resets an owner.
    assert_eq!(
        create_reset(&app, &adam, mia.id).await.status(),
        StatusCode::CREATED
    );
    assert_eq!(
        create_reset(&app, &bob, olga.id).await.status(),
        StatusCode::CREATED
    );
    // Carol's own organization is out of Bob's reach too.
    let res = create_reset(&app, &bob, carol.id).await;
    api_error(res, StatusCode::FORBIDDEN).await;
    app.stop().await;
}

fn run_cli(app: &TestApp, args: &[&str], stdin: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_plugboard"))
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PLUGBOARD_DATA_DIR", dir.path())
        .env("DATABASE_URL", app.settings.database.url.expose_secret())
        .env("PLUGBOARD_ENCRYPTION_KEYS", common::test_keys())
        .env(
            "PLUGBOARD_PROVIDERS_DIR",
            concat!(env!("CARGO_MANIFEST_DIR"), "/providers"),
        )
        .env("PLUGBOARD_LOG_LEVEL", "warn")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

async fn cli_resets_a_password(backend: Backend) {
    let app = spawn_app(backend).await;
    let ana = app.signup("ana@a.example", "Org A").await;
    let args = [
        "user",
        "reset-password",
        "--email",
        "ANA@a.example",
        "--password-stdin",
    ];

    // The sign-up policy applies: too short changes nothing.
    let out = run_cli(&app, &args, "short\n");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--password"));
    assert_eq!(
        login_status(&app, &ana.email, PASSWORD).await,
        StatusCode::OK
    );
    let out = run_cli(
        &app,
        &[
            "user",
            "reset-password",
            "--email",
            "nobody@a.example",
            "--password-stdin",
        ],
        &format!("{NEW_PASSWORD}\n"),
    );
    assert!(!out.status.success());

    let out = run_cli(&app, &args, &format!("{NEW_PASSWORD}\n"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("password set"), "{stdout}");
    assert!(!stdout.contains(NEW_PASSWORD));

    let res = ana.client.get(app.url("/api/me")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        login_status(&app, &ana.email, PASSWORD).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login_status(&app, &ana.email, NEW_PASSWORD).await,
        StatusCode::OK
    );
    app.stop().await;
}
