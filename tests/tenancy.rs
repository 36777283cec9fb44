//! Workspaces, roles, invites, and the tenancy matrix: a user of workspace
//! A asking for anything of workspace B gets exactly what a made-up id gets.

mod common;

use common::{
    Backend, ClientExt, PASSWORD, TestApp, TestUser, api_error, client, extract_csrf, spawn_app,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

on_both_backends!(
    tenancy_matrix_api,
    tenancy_matrix_pages,
    roles_limit_what_members_can_do,
    last_owner_is_kept,
    invite_new_user_and_existing_user,
    invite_existing_user_and_switch_workspaces,
    audit_records_changes,
);

struct World {
    alice: TestUser,
    bob: TestUser,
    carol_id: Uuid,
    b_invite_id: Uuid,
}

/// Alice owns workspace A. Bob owns B, where Carol is a member and an
/// invite is open.
async fn world(app: &TestApp) -> World {
    let alice = app.signup("alice@a.example", "Org A").await;
    let bob = app.signup("bob@b.example", "Org B").await;
    let carol = app.signup("carol@b.example", "Carol's own").await;
    app.join(
        &bob.client,
        bob.workspace_id,
        &carol.client,
        &carol.email,
        "member",
    )
    .await;
    // Carol goes back to her own workspace: her last choice.
    let res = carol
        .client
        .post_json(
            app.url(&format!("/api/workspaces/{}/switch", carol.workspace_id)),
            &json!({}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let invite: Value = bob
        .client
        .post_json(
            app.url(&format!("/api/workspaces/{}/invites", bob.workspace_id)),
            &json!({"email": "dave@b.example", "role": "admin"}),
        )
        .await
        .json()
        .await
        .unwrap();
    World {
        alice,
        bob,
        carol_id: carol.id,
        b_invite_id: invite["id"].as_str().unwrap().parse().unwrap(),
    }
}

async fn send(
    client: &reqwest::Client,
    app: &TestApp,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, String) {
    let mut req = client.request(method.clone(), app.url(path));
    if method != Method::GET {
        req = req.json(&body.unwrap_or(json!({})));
    }
    let res = req.send().await.unwrap();
    (res.status(), res.text().await.unwrap())
}

async fn b_is_untouched(app: &TestApp, w: &World) {
    let members: Value = w
        .bob
        .client
        .get_json(app.url(&format!("/api/workspaces/{}/members", w.bob.workspace_id)))
        .await;
    let members = members.as_array().unwrap();
    assert_eq!(members.len(), 2, "{members:?}");
    let carol = members
        .iter()
        .find(|m| m["userId"] == w.carol_id.to_string())
        .unwrap();
    assert_eq!(carol["role"], "member");
    let invites: Value = w
        .bob
        .client
        .get_json(app.url(&format!("/api/workspaces/{}/invites", w.bob.workspace_id)))
        .await;
    assert_eq!(invites.as_array().unwrap().len(), 1);
}

async fn tenancy_matrix_api(backend: Backend) {
    let app = spawn_app(backend).await;
    let w = world(&app).await;
    let b = w.bob.workspace_id;
    let a = w.alice.workspace_id;
    let (carol, invite) = (w.carol_id, w.b_invite_id);
    let ghost = Uuid::now_v7();
    let role = json!({"role": "admin"});
    let member = json!({"email": "alice@a.example", "role": "member"});
    let invite_body = json!({"email": "eve@a.example", "role": "member"});

    // (method, path with B's ids, same path with made-up ids, body)
    let routes: Vec<(Method, String, String, Option<Value>)> = vec![
        (
            Method::GET,
            format!("/api/workspaces/{b}"),
            format!("/api/workspaces/{ghost}"),
            None,
        ),
        (
            Method::POST,
            format!("/api/workspaces/{b}/switch"),
            format!("/api/workspaces/{ghost}/switch"),
            None,
        ),
        (
            Method::GET,
            format!("/api/workspaces/{b}/members"),
            format!("/api/workspaces/{ghost}/members"),
            None,
        ),
        (
            Method::POST,
            format!("/api/workspaces/{b}/members"),
            format!("/api/workspaces/{ghost}/members"),
            Some(member.clone()),
        ),
        (
            Method::PATCH,
            format!("/api/workspaces/{b}/members/{carol}"),
            format!("/api/workspaces/{ghost}/members/{ghost}"),
            Some(role.clone()),
        ),
        (
            Method::DELETE,
            format!("/api/workspaces/{b}/members/{carol}"),
            format!("/api/workspaces/{ghost}/members/{ghost}"),
            None,
        ),
        (
            Method::GET,
            format!("/api/workspaces/{b}/invites"),
            format!("/api/workspaces/{ghost}/invites"),
            None,
        ),
        (
            Method::POST,
            format!("/api/workspaces/{b}/invites"),
            format!("/api/workspaces/{ghost}/invites"),
            Some(invite_body.clone()),
        ),
        (
            Method::DELETE,
            format!("/api/workspaces/{b}/invites/{invite}"),
            format!("/api/workspaces/{ghost}/invites/{ghost}"),
            None,
        ),
        (
            Method::GET,
            format!("/api/workspaces/{b}/audit"),
            format!("/api/workspaces/{ghost}/audit"),
            None,
        ),
        // B's ids smuggled under A's own workspace.
        (
            Method::PATCH,
            format!("/api/workspaces/{a}/members/{carol}"),
            format!("/api/workspaces/{a}/members/{ghost}"),
            Some(role.clone()),
        ),
        (
            Method::DELETE,
            format!("/api/workspaces/{a}/members/{carol}"),
            format!("/api/workspaces/{a}/members/{ghost}"),
            None,
        ),
        (
            Method::DELETE,
            format!("/api/workspaces/{a}/invites/{invite}"),
            format!("/api/workspaces/{a}/invites/{ghost}"),
            None,
        ),
        // Malformed ids are not a different answer either.
        (
            Method::GET,
            "/api/workspaces/not-a-uuid".to_owned(),
            format!("/api/workspaces/{ghost}"),
            None,
        ),
    ];
    for (method, path, ghost_path, body) in &routes {
        let (status, text) = send(&w.alice.client, &app, method.clone(), path, body.clone()).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {text}");
        let (ghost_status, ghost_text) = send(
            &w.alice.client,
            &app,
            method.clone(),
            ghost_path,
            body.clone(),
        )
        .await;
        assert_eq!(ghost_status, StatusCode::NOT_FOUND, "{method} {ghost_path}");
        assert_eq!(
            text, ghost_text,
            "{method} {path} must be indistinguishable from a made-up id"
        );
    }
    b_is_untouched(&app, &w).await;
    app.stop().await;
}

async fn tenancy_matrix_pages(backend: Backend) {
    let app = spawn_app(backend).await;
    let w = world(&app).await;
    let (b, carol, invite, ghost) = (
        w.bob.workspace_id,
        w.carol_id,
        w.b_invite_id,
        Uuid::now_v7(),
    );
    let token = app.csrf(&w.alice.client, "/").await;
    let pages = [
        (
            format!("/workspaces/{b}/switch"),
            format!("/workspaces/{ghost}/switch"),
            vec![],
        ),
        (
            format!("/settings/members/{carol}/role"),
            format!("/settings/members/{ghost}/role"),
            vec![("role", "admin")],
        ),
        (
            format!("/settings/members/{carol}/remove"),
            format!("/settings/members/{ghost}/remove"),
            vec![],
        ),
        (
            format!("/settings/invites/{invite}/revoke"),
            format!("/settings/invites/{ghost}/revoke"),
            vec![],
        ),
    ];
    for (path, ghost_path, fields) in &pages {
        let mut form = fields.clone();
        form.push(("_csrf", token.as_str()));
        let res = w
            .alice
            .client
            .post(app.url(path))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "POST {path}");
        let text = res.text().await.unwrap();
        let res = w
            .alice
            .client
            .post(app.url(ghost_path))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "POST {ghost_path}");
        assert_eq!(text, res.text().await.unwrap(), "POST {path}");
    }
    // Alice's pages never show B.
    let home = w.alice.client.get_text(app.url("/")).await;
    assert!(!home.contains("Org B") && !home.contains("bob@b.example"));
    b_is_untouched(&app, &w).await;
    app.stop().await;
}

async fn roles_limit_what_members_can_do(backend: Backend) {
    let app = spawn_app(backend).await;
    let w = world(&app).await;
    let b = w.bob.workspace_id;
    let carol = app.login("carol@b.example").await;
    // Carol (member) sees her workspace and its members...
    let res = carol
        .get(app.url(&format!("/api/workspaces/{b}/members")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // ...but manages nothing: 403 (the workspace is hers to see).
    let res = carol
        .post_json(
            app.url(&format!("/api/workspaces/{b}/invites")),
            &json!({"email": "x@b.example", "role": "member"}),
        )
        .await;
    api_error(res, StatusCode::FORBIDDEN).await;
    let res = carol
        .patch_json(
            app.url(&format!("/api/workspaces/{b}/members/{}", w.carol_id)),
            &json!({"role": "owner"}),
        )
        .await;
    api_error(res, StatusCode::FORBIDDEN).await;
    let res = carol
        .get(app.url("/settings/members"))
        .send()
        .await
        .unwrap();
    // Carol's current workspace is her own org's (she owns it); switch first.
    assert_eq!(res.status(), StatusCode::OK);
    carol
        .post_json(app.url(&format!("/api/workspaces/{b}/switch")), &json!({}))
        .await;
    let res = carol
        .get(app.url("/settings/members"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);

    // Bob makes Carol admin; an admin can't mint owners.
    let res = w
        .bob
        .client
        .patch_json(
            app.url(&format!("/api/workspaces/{b}/members/{}", w.carol_id)),
            &json!({"role": "admin"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = carol
        .patch_json(
            app.url(&format!("/api/workspaces/{b}/members/{}", w.carol_id)),
            &json!({"role": "owner"}),
        )
        .await;
    api_error(res, StatusCode::FORBIDDEN).await;
    let res = carol
        .delete_json(app.url(&format!("/api/workspaces/{b}/members/{}", w.bob.id)))
        .await;
    api_error(res, StatusCode::FORBIDDEN).await;
    let res = w
        .bob
        .client
        .patch_json(
            app.url(&format!("/api/workspaces/{b}/members/{}", w.carol_id)),
            &json!({"role": "superuser"}),
        )
        .await;
    let err = api_error(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(err["field"], "role");
    let _ = w.alice;
    app.stop().await;
}

async fn last_owner_is_kept(backend: Backend) {
    let app = spawn_app(backend).await;
    let bob = app.signup("owner@b.example", "Solo").await;
    let ws = bob.workspace_id;
    let res = bob
        .client
        .patch_json(
            app.url(&format!("/api/workspaces/{ws}/members/{}", bob.id)),
            &json!({"role": "admin"}),
        )
        .await;
    let err = api_error(res, StatusCode::CONFLICT).await;
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("at least one owner")
    );
    let res = bob
        .client
        .delete_json(app.url(&format!("/api/workspaces/{ws}/members/{}", bob.id)))
        .await;
    api_error(res, StatusCode::CONFLICT).await;
    assert_eq!(
        app.db
            .count("SELECT COUNT(*) FROM memberships WHERE role = 'owner'")
            .await,
        1
    );

    // With a second owner, the first may step down — but two concurrent
    // demotions can't leave the workspace ownerless.
    let second = app.signup("second@b.example", "Other").await;
    app.join(&bob.client, ws, &second.client, &second.email, "owner")
        .await;
    let second_client = app.login("second@b.example").await;
    let demote = |c: reqwest::Client, user: Uuid| {
        let url = app.url(&format!("/api/workspaces/{ws}/members/{user}"));
        async move {
            c.patch(url)
                .json(&json!({"role": "member"}))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    let (s1, s2) = tokio::join!(
        demote(bob.client.clone(), bob.id),
        demote(second_client, second.id)
    );
    let ok = [s1, s2].iter().filter(|s| **s == StatusCode::OK).count();
    assert_eq!(ok, 1, "exactly one demotion may succeed: {s1} {s2}");
    let owners: Value = bob
        .client
        .get_json(app.url(&format!("/api/workspaces/{ws}/members")))
        .await;
    let owner_count = owners
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "owner")
        .count();
    assert_eq!(owner_count, 1);
    app.stop().await;
}

async fn invite_new_user_and_existing_user(backend: Backend) {
    let app = spawn_app(backend).await;
    let bob = app.signup("bob@b.example", "Org B").await;
    let ws = bob.workspace_id;
    let invite: Value = bob
        .client
        .post_json(
            app.url(&format!("/api/workspaces/{ws}/invites")),
            &json!({"email": "New.Person@b.example", "role": "admin"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let url = invite["inviteUrl"].as_str().unwrap().to_owned();
    let token = url.rsplit('/').next().unwrap().to_owned();
    assert!(url.starts_with(&app.base));
    // The token is shown once and stored only hashed.
    assert!(!app.db.dump_text().await.contains(&token));
    let listed = bob
        .client
        .get_text(app.url(&format!("/api/workspaces/{ws}/invites")))
        .await;
    assert!(!listed.contains(&token));

    // The invite page works without an account.
    let page = client()
        .get(app.url(&format!("/invites/{token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("Org B"));

    // Wrong email can't use it.
    let res = client()
        .post_json(app.url("/api/auth/signup"), &json!({"email": "other@b.example", "password": PASSWORD, "name": "O", "inviteToken": token})).await;
    let err = api_error(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(err["field"], "email");

    let newbie = client();
    let res = newbie
        .post_json(app.url("/api/auth/signup"), &json!({"email": "new.person@b.example", "password": PASSWORD, "name": "New", "inviteToken": token})).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let me: Value = res.json().await.unwrap();
    assert_eq!(me["workspaces"].as_array().unwrap().len(), 1);
    assert_eq!(me["workspaces"][0]["workspaceId"], ws.to_string());
    assert_eq!(me["workspaces"][0]["role"], "admin");
    assert_eq!(app.db.count("SELECT COUNT(*) FROM organizations").await, 1);

    // Used once: gone.
    let res = client()
        .post_json(app.url("/api/auth/signup"), &json!({"email": "new.person@b.example", "password": PASSWORD, "name": "Again", "inviteToken": token})).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        client()
            .get(app.url(&format!("/invites/{token}")))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );

    // An existing account accepts while logged in; a revoked invite is dead.
    let erin = app.signup("erin@e.example", "Erin's").await;
    let invite: Value = bob
        .client
        .post_json(
            app.url(&format!("/api/workspaces/{ws}/invites")),
            &json!({"email": "erin@e.example", "role": "member"}),
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
    let res = erin
        .client
        .post_json(app.url(&format!("/api/invites/{token}/accept")), &json!({}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let me: Value = erin.client.get_json(app.url("/api/me")).await;
    assert_eq!(me["workspaces"].as_array().unwrap().len(), 2);
    assert_eq!(me["currentWorkspaceId"], ws.to_string());

    let invite: Value = bob
        .client
        .post_json(
            app.url(&format!("/api/workspaces/{ws}/invites")),
            &json!({"email": "frank@f.example", "role": "member"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let id = invite["id"].as_str().unwrap();
    let token = invite["inviteUrl"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let res = bob
        .client
        .delete_json(app.url(&format!("/api/workspaces/{ws}/invites/{id}")))
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = client()
        .post_json(app.url("/api/auth/signup"), &json!({"email": "frank@f.example", "password": PASSWORD, "name": "F", "inviteToken": token})).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        app.db
            .count("SELECT COUNT(*) FROM users WHERE email_normalized = 'frank@f.example'")
            .await,
        0
    );
    app.stop().await;
}

async fn invite_existing_user_and_switch_workspaces(backend: Backend) {
    let app = spawn_app(backend).await;
    let bob = app.signup("bob@b.example", "Org B").await;
    let carol = app.signup("carol@c.example", "Org C").await;
    // Page flow: Bob invites Carol through the members form; the link is
    // in the answer, and Carol is not a member until she accepts it.
    let token = app.csrf(&bob.client, "/settings/members").await;
    let res = bob
        .client
        .post(app.url("/settings/members"))
        .form(&[
            ("_csrf", token.as_str()),
            ("email", "CAROL@c.example"),
            ("role", "member"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let page = res.text().await.unwrap();
    let marker = "data-testid=\"invite-link\"";
    assert!(page.contains(marker), "{page}");
    let link_start = page.find(&format!("{}/invites/", app.base)).unwrap();
    let link = &page[link_start..];
    let link = &link[..link.find('"').unwrap()];
    let me: Value = carol.client.get_json(app.url("/api/me")).await;
    assert_eq!(me["workspaces"].as_array().unwrap().len(), 1);
    let token = app.csrf(&carol.client, "/").await;
    let res = carol
        .client
        .post(format!("{link}/accept"))
        .form(&[("_csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    // Inviting a member again is a conflict shown to the admin, beside
    // the email field of the form it came from.
    let token = extract_csrf(&page).unwrap();
    let res = bob
        .client
        .post(app.url("/settings/members"))
        .form(&[
            ("_csrf", token.as_str()),
            ("email", "carol@c.example"),
            ("role", "member"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CONFLICT);
    let page = res.text().await.unwrap();
    assert!(page.contains("already a member"), "{page}");
    assert!(page.contains("data-testid=\"error-email\""), "{page}");
    // Back in her own workspace, her last choice.
    let res = carol
        .client
        .post_json(
            app.url(&format!("/api/workspaces/{}/switch", carol.workspace_id)),
            &json!({}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);

    // Carol now switches between her two workspaces.
    let me: Value = carol.client.get_json(app.url("/api/me")).await;
    assert_eq!(me["workspaces"].as_array().unwrap().len(), 2);
    assert_eq!(me["currentWorkspaceId"], carol.workspace_id.to_string());
    let token = app.csrf(&carol.client, "/").await;
    let res = carol
        .client
        .post(app.url(&format!("/workspaces/{}/switch", bob.workspace_id)))
        .form(&[("_csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let home = carol.client.get_text(app.url("/")).await;
    assert!(
        home.contains("data-testid=\"current-workspace\">Org B<"),
        "{home}"
    );
    let me: Value = carol.client.get_json(app.url("/api/me")).await;
    assert_eq!(me["currentWorkspaceId"], bob.workspace_id.to_string());

    // Removed from B, Carol falls back to her own workspace at once.
    let res = bob
        .client
        .delete_json(app.url(&format!(
            "/api/workspaces/{}/members/{}",
            bob.workspace_id, carol.id
        )))
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let home = carol.client.get_text(app.url("/")).await;
    assert!(
        home.contains("data-testid=\"current-workspace\">Org C<"),
        "{home}"
    );

    // A new workspace in Bob's organization.
    let res = bob
        .client
        .post_json(app.url("/api/workspaces"), &json!({"name": "Second"}))
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let res = bob
        .client
        .post_json(app.url("/api/workspaces"), &json!({"name": "Second"}))
        .await;
    let err = api_error(res, StatusCode::CONFLICT).await;
    assert_eq!(err["field"], "name");
    app.stop().await;
}

async fn audit_records_changes(backend: Backend) {
    let app = spawn_app(backend).await;
    let w = world(&app).await;
    let audit: Value = w
        .bob
        .client
        .get_json(app.url(&format!("/api/workspaces/{}/audit", w.bob.workspace_id)))
        .await;
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for expected in ["user.signup", "invite.accept", "invite.create"] {
        assert!(actions.contains(&expected), "{actions:?}");
    }
    let _ = w.alice;
    app.stop().await;
}
