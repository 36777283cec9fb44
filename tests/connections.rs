//! Connecting accounts: the authorization-code round trip against the
//! built-in sandbox, failure modes of state and token endpoints, refresh
//! (rotation, single flight across tasks and processes, invalid_grant),
//! disconnect, ownership, tenancy, the kill switch and connection webhooks.
//! Where a test must control the provider's answers exactly, an in-test
//! wiremock server plays the provider.

mod common;

use std::time::Duration;

use common::{
    Backend, ClientExt, SANDBOX_ID, SANDBOX_SECRET, TestApp, api_error, authorize, client,
    connections, location, sandbox_app, sandbox_stats, set_faults, spawn_app_with,
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

on_both_backends!(
    code_flow_with_pkce_account_selection_and_disconnect,
    bad_state_is_refused_and_changes_nothing,
    denied_consent_and_failing_token_endpoint,
    client_credentials_connect,
    refresh_rotates_and_is_single_flight_across_processes,
    invalid_grant_needs_reauth_and_notifies,
    member_connection_wins_and_tenants_are_isolated,
    kill_switch,
    tokens_at_rest_are_sealed,
    keep_alive_refreshes_idle_connections,
    provider_401_refreshes_once_and_retries,
    account_listing_reads_every_page,
);

async fn code_flow_with_pkce_account_selection_and_disconnect(backend: Backend) {
    let app = sandbox_app(backend, &[]).await;
    let owner = app.signup("owner@a.example", "Acme").await;
    let res = authorize(&app, &owner.client, "workspace", "approve").await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        location(&res),
        "/data/sandbox/accounts",
        "accounts are chosen next"
    );

    let list = connections(&owner.client, &app).await;
    assert_eq!(list.len(), 1);
    let conn = &list[0];
    assert_eq!(conn["status"], "CONNECTED");
    assert_eq!(conn["ownership"], "workspace");
    assert_eq!(conn["hasRefreshToken"], true);
    assert_eq!(conn["accountEmail"], "sandbox.user@acme.example");
    assert!(conn.get("accessToken").is_none() && !conn.to_string().contains("token\":\""));
    assert_eq!(sandbox_stats(&app).await["token_authorization_code"], 1);

    // The account picker lists the sandbox properties.
    let accounts = owner
        .client
        .get_json(app.url("/api/oauth/sandbox/accounts"))
        .await;
    let ids: Vec<String> = accounts["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(ids.len() >= 2, "{accounts}");
    let res = owner
        .client
        .post_json(
            app.url("/api/data/select-account"),
            &json!({"provider": "sandbox", "accountIds": ["nope"]}),
        )
        .await;
    let err = api_error(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(err["field"], "accountIds[0]");
    let res = owner
        .client
        .post_json(
            app.url("/api/data/select-account"),
            &json!({"provider": "sandbox", "accountIds": [ids[0], ids[1]]}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let selected: Value = res.json().await.unwrap();
    assert_eq!(selected["selectedAccountIds"], json!([ids[0], ids[1]]));

    // The Data Hub shows the card connected, with its accounts.
    let hub = owner.client.get_text(app.url("/data/connections")).await;
    assert!(
        hub.contains("data-testid=\"status-sandbox\">CONNECTED<"),
        "{hub}"
    );
    // Named as the provider reports them (not by id), with the currency.
    assert!(hub.contains("Acme Web (USD), Acme App (EUR)"), "{hub}");

    // Test: a minimal authenticated call.
    let diag = owner
        .client
        .get_json(app.url("/api/integrations/sandbox/test"))
        .await;
    assert_eq!(diag["ok"], true, "{diag}");

    // Disconnect revokes at the provider and deletes the tokens.
    let res = owner
        .client
        .post_json(
            app.url("/api/data/disconnect"),
            &json!({"provider": "sandbox"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["status"], "NOT_CONNECTED");
    assert_eq!(sandbox_stats(&app).await["revoke"], 1);
    assert_eq!(
        app.db
            .count("SELECT COUNT(*) FROM secrets WHERE owner_kind = 'connection'")
            .await,
        0
    );
    let audit = owner
        .client
        .get_json(app.url(&format!("/api/workspaces/{}/audit", owner.workspace_id)))
        .await;
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in [
        "connection.connect",
        "connection.select_accounts",
        "connection.disconnect",
    ] {
        assert!(actions.contains(&a), "{actions:?}");
    }
    // No OAuth state is left behind.
    assert_eq!(app.db.count("SELECT COUNT(*) FROM oauth_states").await, 0);
    app.stop().await;
}

async fn bad_state_is_refused_and_changes_nothing(backend: Backend) {
    let app = sandbox_app(backend, &[("PLUGBOARD_OAUTH_STATE_TTL_MINUTES", "1")]).await;
    let owner = app.signup("owner@a.example", "Acme").await;
    let started = owner
        .client
        .get(app.url("/api/oauth/sandbox/start?ownership=workspace"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    let started: Value = started.json().await.unwrap();
    let state = started["state"].as_str().unwrap().to_owned();
    let callback = |state: String| {
        app.url(&format!(
            "/api/oauth/sandbox/callback?code=anything&state={state}"
        ))
    };

    // Tampered.
    let mut tampered = state.clone().into_bytes();
    tampered[5] = if tampered[5] == b'A' { b'B' } else { b'A' };
    let res = owner
        .client
        .get(callback(String::from_utf8(tampered).unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(res.text().await.unwrap().contains("start connecting again"));
    // Another session (another user) presenting it.
    let other = app.signup("other@b.example", "Other").await;
    let res = other
        .client
        .get(callback(state.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    // Not even signed in.
    let res = client().get(callback(state.clone())).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    // Used once (the code is junk, so the exchange fails), then replayed.
    let res = owner
        .client
        .get(callback(state.clone()))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_redirection() || res.status().is_client_error());
    let res = owner
        .client
        .get(callback(state.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("already used or has expired")
    );
    // Expired.
    let started: Value = owner
        .client
        .get(app.url("/api/oauth/sandbox/start?ownership=workspace"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    app.db
        .execute("UPDATE oauth_states SET expires_at = '2000-01-01T00:00:00Z'")
        .await;
    let res = owner
        .client
        .get(callback(started["state"].as_str().unwrap().to_owned()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    // Missing state.
    let res = owner
        .client
        .get(app.url("/api/oauth/sandbox/callback?code=x"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);

    assert_eq!(app.db.count("SELECT COUNT(*) FROM connections").await, 0);
    assert_eq!(
        sandbox_stats(&app).await["token_authorization_code"],
        1,
        "only the single legitimate use reached the provider"
    );
    app.stop().await;
}

async fn denied_consent_and_failing_token_endpoint(backend: Backend) {
    let app = sandbox_app(backend, &[]).await;
    let owner = app.signup("owner@a.example", "Acme").await;
    let res = authorize(&app, &owner.client, "workspace", "deny").await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&res), "/data/connections");
    let hub = owner.client.get_text(app.url("/data/connections")).await;
    assert!(hub.contains("declined"), "{hub}");
    assert_eq!(app.db.count("SELECT COUNT(*) FROM connections").await, 0);

    set_faults(&app, json!({"token_error_next": 1})).await;
    let res = authorize(&app, &owner.client, "workspace", "approve").await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(res.text().await.unwrap().contains("nothing was connected"));
    set_faults(&app, json!({"token_malformed_next": 1})).await;
    let res = authorize(&app, &owner.client, "workspace", "approve").await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(app.db.count("SELECT COUNT(*) FROM connections").await, 0);
    assert_eq!(app.db.count("SELECT COUNT(*) FROM secrets").await, 0);

    // And then it works.
    let res = authorize(&app, &owner.client, "workspace", "approve").await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(connections(&owner.client, &app).await.len(), 1);
    app.stop().await;
}

async fn client_credentials_connect(backend: Backend) {
    let app = sandbox_app(backend, &[]).await;
    let owner = app.signup("owner@a.example", "Acme").await;
    let url = app.url("/api/integrations/sandbox/connect");
    let res = owner
        .client
        .post_json(url.clone(), &json!({"flow": "client_credentials", "clientId": SANDBOX_ID, "clientSecret": "wrong", "headers": {"X-Sandbox-Company": "acme"}}))
        .await;
    let err = api_error(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(err["field"], "clientSecret");
    assert!(
        !err.to_string().contains("wrong"),
        "the secret is never echoed"
    );
    let res = owner
        .client
        .post_json(url.clone(), &json!({"flow": "client_credentials", "clientId": SANDBOX_ID, "clientSecret": SANDBOX_SECRET}))
        .await;
    let err = api_error(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(err["field"], "headers.X-Sandbox-Company");
    let res = owner
        .client
        .post_json(url.clone(), &json!({"flow": "client_credentials", "clientId": SANDBOX_ID, "clientSecret": SANDBOX_SECRET, "headers": {"X-Unknown": "1"}}))
        .await;
    api_error(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    let res = owner
        .client
        .post_json(url.clone(), &json!({"flow": "implicit"}))
        .await;
    let err = api_error(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(err["field"], "flow");
    assert_eq!(app.db.count("SELECT COUNT(*) FROM connections").await, 0);

    let res = owner
        .client
        .post_json(url, &json!({"flow": "client_credentials", "clientId": SANDBOX_ID, "clientSecret": SANDBOX_SECRET, "headers": {"X-Sandbox-Company": "acme"}}))
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let conn: Value = res.json().await.unwrap();
    assert_eq!(conn["flow"], "client_credentials");
    assert_eq!(conn["headerValues"]["X-Sandbox-Company"], "acme");
    assert!(!conn.to_string().contains(SANDBOX_SECRET));
    let diag = owner
        .client
        .get_json(app.url("/api/integrations/sandbox/test"))
        .await;
    assert_eq!(diag["ok"], true, "{diag}");
    assert!(
        !app.db.dump_text().await.contains(SANDBOX_SECRET),
        "client secret sealed at rest"
    );
    app.stop().await;
}

async fn refresh_rotates_and_is_single_flight_across_processes(backend: Backend) {
    // 60-second tokens, expired on purpose in the database: the refreshed
    // token stays fresh for the rest of the test however slow the machine.
    let app = sandbox_app(backend, &[("PLUGBOARD_SANDBOX_TOKEN_LIFETIME_SECS", "60")]).await;
    let owner = app.signup("owner@a.example", "Acme").await;
    authorize(&app, &owner.client, "workspace", "approve").await;
    app.db
        .execute("UPDATE connections SET access_expires_at = '2000-01-01T00:00:00Z'")
        .await;

    // 200 concurrent uses of the expired token, split over two server
    // processes sharing the database: exactly one refresh reaches the provider.
    let (peer_base, peer) = app.spawn_peer().await;
    let peer_client = app.login("owner@a.example").await;
    let mut calls = Vec::new();
    for i in 0..200 {
        let (c, url) = if i % 2 == 0 {
            (owner.client.clone(), app.url("/api/oauth/sandbox/accounts"))
        } else {
            (
                peer_client.clone(),
                format!("{peer_base}/api/oauth/sandbox/accounts"),
            )
        };
        calls.push(tokio::spawn(async move {
            c.get(url).send().await.unwrap().status()
        }));
    }
    for call in calls {
        assert_eq!(call.await.unwrap(), StatusCode::OK);
    }
    let stats = sandbox_stats(&app).await;
    let audit = owner
        .client
        .get_text(app.url(&format!("/api/workspaces/{}/audit", owner.workspace_id)))
        .await;
    assert_eq!(
        stats["token_refresh"], 1,
        "exactly one refresh: {stats} {audit}"
    );
    let after = connections(&owner.client, &app).await[0].clone();
    assert_ne!(after["accessExpiresAt"], "2000-01-01T00:00:00Z");
    assert!(after["lastRefreshedAt"].is_string());

    // The rotated refresh token was stored with the new access token: a
    // second refresh (the old refresh token is dead at the sandbox) works.
    app.db
        .execute("UPDATE connections SET access_expires_at = '2000-01-01T00:00:00Z'")
        .await;
    let res = owner
        .client
        .get(app.url("/api/oauth/sandbox/accounts"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(sandbox_stats(&app).await["token_refresh"], 2);
    assert_eq!(
        connections(&owner.client, &app).await[0]["status"],
        "CONNECTED"
    );
    peer.stop().await.unwrap();
    app.stop().await;
}

/// A provider fake whose answers the test sets: `fakeprov`, described like
/// any provider in a providers folder of the test's own.
async fn fake_provider_app(
    backend: Backend,
    mock: &MockServer,
    extra: &[(&'static str, &str)],
) -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/providers/sandbox/provider.json"
    ))
    .unwrap();
    let mut doc: Value = serde_json::from_str(&sandbox).unwrap();
    let uri = mock.uri();
    doc["key"] = "fakeprov".into();
    doc["displayName"] = "Fake Provider".into();
    doc["auth"]["authorizationUrl"] = format!("{uri}/authorize").into();
    doc["auth"]["tokenUrl"] = format!("{uri}/token").into();
    doc["auth"]["revokeUrl"] = format!("{uri}/revoke").into();
    doc["auth"]["userinfoUrl"] = format!("{uri}/userinfo").into();
    doc["auth"]["clientIdEnv"] = "PLUGBOARD_FAKEPROV_CLIENT_ID".into();
    doc["auth"]["clientSecretEnv"] = "PLUGBOARD_FAKEPROV_CLIENT_SECRET".into();
    doc["baseUrlVariants"][0]["baseUrl"] = format!("{uri}/api").into();
    doc["requiredHeaders"] = json!([]);
    // Accounts come in pages here, with prefixed ids (like GA4's "properties/123").
    doc["accounts"]["pagination"] =
        json!({"strategy": "cursor", "cursorParam": "cursor", "cursorPath": "/next_cursor"});
    doc["accounts"]["idPrefixToStrip"] = "properties/".into();
    std::fs::create_dir_all(dir.path().join("fakeprov")).unwrap();
    std::fs::write(dir.path().join("fakeprov/provider.json"), doc.to_string()).unwrap();
    let mut env: Vec<(&'static str, &str)> = vec![
        ("PLUGBOARD_PROVIDERS_DIR", dir.path().to_str().unwrap()),
        ("PLUGBOARD_FAKEPROV_CLIENT_ID", "fake-id"),
        ("PLUGBOARD_FAKEPROV_CLIENT_SECRET", "fake-secret-value"),
        ("PLUGBOARD_OAUTH_KEEPALIVE_INTERVAL_MINUTES", "0"),
    ];
    env.extend_from_slice(extra);
    let app = spawn_app_with(backend, &env).await;
    (app, dir)
}

async fn connect_fake(app: &TestApp, c: &reqwest::Client) -> reqwest::Response {
    let started: Value = c
        .get(app.url("/api/oauth/fakeprov/start?ownership=workspace"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let auth_url = started["authUrl"].as_str().unwrap();
    assert!(auth_url.contains("code_challenge="));
    let state = started["state"].as_str().unwrap();
    c.get(app.url(&format!(
        "/api/oauth/fakeprov/callback?code=the-code&state={state}"
    )))
    .send()
    .await
    .unwrap()
}

async fn invalid_grant_needs_reauth_and_notifies(backend: Backend) {
    let mock = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(body_string_contains("grant_type=authorization_code"))
        .and(body_string_contains("code_verifier="))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": "AT-first", "refresh_token": "RT-first", "expires_in": 1, "token_type": "Bearer"
        })))
        .mount(&mock)
        .await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(body_string_contains("grant_type=refresh_token"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": "invalid_grant"})))
        .expect(1)
        .mount(&mock)
        .await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&mock)
        .await;
    // The webhook listener is local: the operator allowlists it.
    let (app, _dir) =
        fake_provider_app(backend, &mock, &[("PLUGBOARD_OUTBOUND_ALLOW", "127.0.0.1")]).await;
    let owner = app.signup("owner@a.example", "Acme").await;
    let res = owner
        .client
        .put(app.url(&format!("/api/workspaces/{}/webhook", owner.workspace_id)))
        .json(&json!({"url": format!("{}/hook", mock.uri())}))
        .send()
        .await
        .unwrap();
    let hook: Value = res.json().await.unwrap();
    let signing_secret = hook["signingSecret"].as_str().unwrap().to_owned();

    let res = connect_fake(&app, &owner.client).await;
    assert!(res.status().is_redirection(), "{}", res.status());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let diag = owner
        .client
        .get_json(app.url("/api/integrations/fakeprov/test"))
        .await;
    assert_eq!(diag["ok"], false);
    let conn = connections(&owner.client, &app).await[0].clone();
    assert_eq!(conn["status"], "NEEDS_REAUTH");
    // Not retried forever: further uses don't call the provider again.
    let diag = owner
        .client
        .get_json(app.url("/api/integrations/fakeprov/test"))
        .await;
    assert!(
        diag["checks"][0]["message"]
            .as_str()
            .unwrap()
            .contains("reconnect"),
        "{diag}"
    );
    let hub = owner.client.get_text(app.url("/data/connections")).await;
    assert!(hub.contains("Admin attention needed"), "{hub}");
    let audit = owner
        .client
        .get_json(app.url(&format!("/api/workspaces/{}/audit", owner.workspace_id)))
        .await;
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "connection.needs_reauth")
    );

    // Webhooks: connected, then needs_reauth; signed; no tokens inside.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let hooks = loop {
        let received: Vec<_> = mock
            .received_requests()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.url.path() == "/hook")
            .collect();
        if received.len() >= 2 || std::time::Instant::now() > deadline {
            break received;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let events: Vec<String> = hooks
        .iter()
        .map(|r| {
            serde_json::from_slice::<Value>(&r.body).unwrap()["event"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let deliveries = owner
        .client
        .get_text(app.url(&format!(
            "/api/workspaces/{}/webhook/deliveries",
            owner.workspace_id
        )))
        .await;
    assert_eq!(events, vec!["connected", "needs_reauth"], "{deliveries}");
    for r in &hooks {
        let body = String::from_utf8_lossy(&r.body);
        assert!(
            !body.contains("AT-first") && !body.contains("RT-first"),
            "{body}"
        );
        let header = r
            .headers
            .get("plugboard-signature")
            .unwrap()
            .to_str()
            .unwrap();
        let t: i64 = header
            .split(',')
            .next()
            .unwrap()
            .trim_start_matches("t=")
            .parse()
            .unwrap();
        assert_eq!(
            header,
            plugboard::webhooks::signature(&signing_secret, t, &r.body)
        );
    }
    app.stop().await;
}

async fn member_connection_wins_and_tenants_are_isolated(backend: Backend) {
    let app = sandbox_app(backend, &[]).await;
    let admin = app.signup("admin@a.example", "Acme").await;
    let member = app.signup("member@a.example", "Member's own").await;
    app.join(
        &admin.client,
        admin.workspace_id,
        &member.client,
        "member@a.example",
        "member",
    )
    .await;
    member
        .client
        .post_json(
            app.url(&format!("/api/workspaces/{}/switch", admin.workspace_id)),
            &json!({}),
        )
        .await;
    // Members can't connect for the whole workspace.
    let res = member
        .client
        .get(app.url("/api/oauth/sandbox/start?ownership=workspace"))
        .send()
        .await
        .unwrap();
    api_error(res, StatusCode::FORBIDDEN).await;

    authorize(&app, &admin.client, "workspace", "approve").await;
    let shared = connections(&member.client, &app).await;
    assert_eq!(shared.len(), 1, "members see the workspace's connection");
    let diag = member
        .client
        .get_json(app.url("/api/integrations/sandbox/test"))
        .await;
    assert_eq!(diag["connectionId"], shared[0]["id"]);

    // The member's own connection wins for them, not for the admin.
    authorize(&app, &member.client, "user", "approve").await;
    let mine = member
        .client
        .get_json(app.url("/api/integrations/sandbox/test"))
        .await;
    assert_ne!(mine["connectionId"], shared[0]["id"]);
    let admins = admin
        .client
        .get_json(app.url("/api/integrations/sandbox/test"))
        .await;
    assert_eq!(admins["connectionId"], shared[0]["id"]);
    // The member can't change what the workspace's connection reads…
    let res = member
        .client
        .post_json(
            app.url("/api/data/select-account"),
            &json!({"provider": "sandbox", "connectionId": shared[0]["id"], "accountIds": ["prop-1"]}),
        )
        .await;
    api_error(res, StatusCode::FORBIDDEN).await;
    // …nor disconnect it.
    let res = member
        .client
        .post_json(
            app.url("/api/data/disconnect"),
            &json!({"provider": "sandbox", "connectionId": shared[0]["id"]}),
        )
        .await;
    api_error(res, StatusCode::FORBIDDEN).await;

    // Another workspace sees nothing and can touch nothing.
    let outsider = app.signup("x@b.example", "B").await;
    assert!(connections(&outsider.client, &app).await.is_empty());
    let id = shared[0]["id"].as_str().unwrap();
    for action in ["disable", "enable", "reconnect"] {
        let res = outsider
            .client
            .post_json(
                app.url(&format!("/api/integrations/connections/{id}/{action}")),
                &json!({}),
            )
            .await;
        api_error(res, StatusCode::NOT_FOUND).await;
    }
    for (path, body) in [
        (
            "/api/data/disconnect",
            json!({"provider": "sandbox", "connectionId": id}),
        ),
        (
            "/api/data/select-account",
            json!({"provider": "sandbox", "connectionId": id, "accountIds": ["prop-1"]}),
        ),
    ] {
        let res = outsider.client.post_json(app.url(path), &body).await;
        api_error(res, StatusCode::NOT_FOUND).await;
    }
    let res = outsider
        .client
        .get(app.url(&format!("/api/oauth/sandbox/accounts?connectionId={id}")))
        .send()
        .await
        .unwrap();
    api_error(res, StatusCode::NOT_FOUND).await;
    let token = app.csrf(&outsider.client, "/data/connections").await;
    let res = outsider
        .client
        .post(app.url(&format!("/data/connections/{id}/disable")))
        .form(&[("_csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    // The admin disables; the member's use is refused with the status.
    let res = admin
        .client
        .post_json(
            app.url(&format!("/api/integrations/connections/{id}/disable")),
            &json!({}),
        )
        .await;
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "DISABLED");
    let res = admin
        .client
        .get(app.url("/api/oauth/sandbox/accounts"))
        .send()
        .await
        .unwrap();
    let err = api_error(res, StatusCode::CONFLICT).await;
    assert!(err["message"].as_str().unwrap().contains("DISABLED"));
    app.stop().await;
}

async fn kill_switch(backend: Backend) {
    let app = sandbox_app(backend, &[("PLUGBOARD_OAUTH_ENABLED", "false")]).await;
    let owner = app.signup("owner@a.example", "Acme").await;
    let res = owner
        .client
        .get(app.url("/api/oauth/sandbox/start?ownership=workspace"))
        .send()
        .await
        .unwrap();
    api_error(res, StatusCode::SERVICE_UNAVAILABLE).await;
    let res = owner
        .client
        .post_json(
            app.url("/api/integrations/sandbox/connect"),
            &json!({"flow": "client_credentials", "clientId": "a", "clientSecret": "b"}),
        )
        .await;
    api_error(res, StatusCode::SERVICE_UNAVAILABLE).await;
    let hub = owner.client.get_text(app.url("/data/connections")).await;
    assert!(
        hub.contains("switched off") && !hub.contains("/api/oauth/sandbox/start"),
        "{hub}"
    );
    app.stop().await;
}

async fn tokens_at_rest_are_sealed(backend: Backend) {
    let mock = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": "ya29.PLAINTEXT-ACCESS", "refresh_token": "1//PLAINTEXT-REFRESH",
            "expires_in": 3600, "token_type": "Bearer", "scope": "metrics.read projects.read"
        })))
        .mount(&mock)
        .await;
    Mock::given(method("GET"))
        .and(path("/userinfo"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"sub": "u-1", "email": "fake@fake.example"})),
        )
        .mount(&mock)
        .await;
    let (app, _dir) = fake_provider_app(backend, &mock, &[]).await;
    let owner = app.signup("owner@a.example", "Acme").await;
    let res = connect_fake(&app, &owner.client).await;
    assert!(res.status().is_redirection());
    let conn = connections(&owner.client, &app).await[0].clone();
    assert_eq!(conn["accountEmail"], "fake@fake.example");
    // people.read was requested but not granted: shown as missing.
    assert_eq!(conn["missingScopes"], json!(["people.read"]));
    let dump = app.db.dump_text().await;
    for plaintext in [
        "PLAINTEXT-ACCESS",
        "PLAINTEXT-REFRESH",
        "the-code",
        "fake-secret-value",
    ] {
        assert!(!dump.contains(plaintext), "{plaintext} stored in the clear");
    }
    assert_eq!(
        app.db
            .count("SELECT COUNT(*) FROM secrets WHERE owner_kind = 'connection'")
            .await,
        2
    );
    // No API response carries them either.
    let everything = format!(
        "{}{}{}",
        owner
            .client
            .get_text(app.url("/api/integrations/connections"))
            .await,
        owner.client.get_text(app.url("/data/connections")).await,
        owner
            .client
            .get_text(app.url(&format!("/api/workspaces/{}/audit", owner.workspace_id)))
            .await,
    );
    assert!(
        !everything.contains("PLAINTEXT"),
        "a token leaked into a response"
    );
    app.stop().await;
}

async fn keep_alive_refreshes_idle_connections(backend: Backend) {
    let app = sandbox_app(backend, &[]).await;
    let owner = app.signup("owner@a.example", "Acme").await;
    authorize(&app, &owner.client, "workspace", "approve").await;
    // Fresh connections are left alone.
    assert_eq!(
        plugboard::connections::service::keep_alive(&app.state).await,
        0
    );
    app.db
        .execute("UPDATE connections SET last_refreshed_at = '2000-01-01T00:00:00Z', connected_at = '2000-01-01T00:00:00Z'")
        .await;
    assert_eq!(
        plugboard::connections::service::keep_alive(&app.state).await,
        1
    );
    assert_eq!(sandbox_stats(&app).await["token_refresh"], 1);
    let conn = connections(&owner.client, &app).await[0].clone();
    assert_eq!(conn["status"], "CONNECTED");
    assert_ne!(conn["lastRefreshedAt"], "2000-01-01T00:00:00Z");
    app.stop().await;
}

async fn provider_401_refreshes_once_and_retries(backend: Backend) {
    let mock = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(body_string_contains("grant_type=authorization_code"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": "AT-1", "refresh_token": "RT-1", "expires_in": 3600, "token_type": "bearer"
        })))
        .mount(&mock)
        .await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(body_string_contains("grant_type=refresh_token"))
        .and(body_string_contains("refresh_token=RT-1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": "AT-2", "refresh_token": "RT-2", "expires_in": 3600, "token_type": "bearer"
        })))
        .expect(1)
        .mount(&mock)
        .await;
    // The provider has revoked AT-1 early; AT-2 works.
    Mock::given(method("GET"))
        .and(path("/userinfo"))
        .and(wiremock::matchers::header("authorization", "Bearer AT-1"))
        .respond_with(ResponseTemplate::new(401))
        .mount(&mock)
        .await;
    Mock::given(method("GET"))
        .and(path("/userinfo"))
        .and(wiremock::matchers::header("authorization", "Bearer AT-2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"sub": "u"})))
        .mount(&mock)
        .await;
    let (app, _dir) = fake_provider_app(backend, &mock, &[]).await;
    let owner = app.signup("owner@a.example", "Acme").await;
    assert!(
        connect_fake(&app, &owner.client)
            .await
            .status()
            .is_redirection()
    );
    let diag = owner
        .client
        .get_json(app.url("/api/integrations/fakeprov/test"))
        .await;
    assert_eq!(diag["ok"], true, "{diag}");
    // A second use goes straight to AT-2: no further refresh (expect(1)).
    let diag = owner
        .client
        .get_json(app.url("/api/integrations/fakeprov/test"))
        .await;
    assert_eq!(diag["ok"], true, "{diag}");
    app.stop().await;
}

async fn account_listing_reads_every_page(backend: Backend) {
    let mock = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": "AT", "refresh_token": "RT", "expires_in": 3600, "token_type": "bearer"
        })))
        .mount(&mock)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/properties"))
        .and(wiremock::matchers::query_param("cursor", "c2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "properties": [{"id": "properties/3", "name": "Third"}], "next_cursor": null
        })))
        .mount(&mock)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/properties"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "properties": [{"id": "properties/1", "name": "First"}, {"id": "properties/2", "name": "Second"}], "next_cursor": "c2"
        })))
        .mount(&mock)
        .await;
    let (app, _dir) = fake_provider_app(backend, &mock, &[]).await;
    let owner = app.signup("owner@a.example", "Acme").await;
    assert!(
        connect_fake(&app, &owner.client)
            .await
            .status()
            .is_redirection()
    );
    let listed = owner
        .client
        .get_json(app.url("/api/oauth/fakeprov/accounts"))
        .await;
    let ids: Vec<&str> = listed["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec!["1", "2", "3"],
        "every page, ids without their prefix: {listed}"
    );
    let res = owner
        .client
        .post_json(
            app.url("/api/data/select-account"),
            &json!({"provider": "fakeprov", "accountIds": ["3"]}),
        )
        .await;
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "an account from the second page can be chosen"
    );
    app.stop().await;
}
