//! Accounts over HTTP: sign-up, log-in, log-out, sessions, CSRF, throttling,
//! and bad input that must change nothing.

mod common;

use common::{
    Backend, ClientExt, PASSWORD, api_error, client, extract_csrf, spawn_app, spawn_app_with,
};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, LOCATION, RETRY_AFTER, SET_COOKIE};
use serde_json::{Value, json};

on_both_backends!(
    json_signup_login_logout_me,
    duplicate_email_is_409_and_changes_nothing,
    wrong_password_and_unknown_user_look_the_same,
    expired_session_is_401,
    malformed_and_mistyped_json,
    wrong_content_type_and_oversized_bodies,
    html_forms_need_csrf,
    html_signup_login_home_flow,
    login_is_throttled_per_account,
    closed_signup_only_admits_the_first_user,
    cookie_flags_and_request_ids,
    health_and_ready,
);

async fn users(app: &common::TestApp) -> i64 {
    app.db.count("SELECT COUNT(*) FROM users").await
}

async fn json_signup_login_logout_me(backend: Backend) {
    let app = spawn_app(backend).await;
    let c = client();
    assert_eq!(
        c.get(app.url("/api/me")).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );

    let res = c
        .post_json(app.url("/api/auth/signup"), &json!({"email": "Ana@Example.com", "password": PASSWORD, "name": "Ana", "organization": "Acme"})).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let me: Value = res.json().await.unwrap();
    assert_eq!(me["user"]["email"], "Ana@Example.com");
    assert_eq!(me["workspaces"][0]["role"], "owner");
    assert_eq!(me["workspaces"][0]["organizationName"], "Acme");
    assert!(me["user"].get("passwordHash").is_none());

    let me: Value = c.get_json(app.url("/api/me")).await;
    assert_eq!(me["user"]["name"], "Ana");

    let res = c
        .post(app.url("/api/auth/logout"))
        .header(CONTENT_TYPE, "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        c.get(app.url("/api/me")).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.db
            .count("SELECT COUNT(*) FROM sessions WHERE user_id IS NOT NULL")
            .await,
        0
    );

    // Email identity is case-insensitive.
    let c2 = client();
    let res = c2
        .post_json(
            app.url("/api/auth/login"),
            &json!({"email": "ana@EXAMPLE.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let me: Value = c2.get_json(app.url("/api/me")).await;
    assert!(me["user"]["lastLoginAt"].is_string());
    app.stop().await;
}

async fn duplicate_email_is_409_and_changes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    app.signup("dup@example.com", "First").await;
    let before = (
        users(&app).await,
        app.db.count("SELECT COUNT(*) FROM organizations").await,
        app.db.count("SELECT COUNT(*) FROM workspaces").await,
    );
    let res = client()
        .post_json(app.url("/api/auth/signup"), &json!({"email": "DUP@example.com", "password": PASSWORD, "name": "X", "organization": "Second"})).await;
    let err = api_error(res, StatusCode::CONFLICT).await;
    assert_eq!(err["field"], "email");
    let after = (
        users(&app).await,
        app.db.count("SELECT COUNT(*) FROM organizations").await,
        app.db.count("SELECT COUNT(*) FROM workspaces").await,
    );
    assert_eq!(
        before, after,
        "a refused sign-up must leave no organization behind"
    );
    app.stop().await;
}

async fn wrong_password_and_unknown_user_look_the_same(backend: Backend) {
    let app = spawn_app(backend).await;
    app.signup("pw@example.com", "Acme").await;
    let wrong = client()
        .post_json(
            app.url("/api/auth/login"),
            &json!({"email": "pw@example.com", "password": "not the password"}),
        )
        .await;
    let wrong = api_error(wrong, StatusCode::UNAUTHORIZED).await;
    let unknown = client()
        .post_json(
            app.url("/api/auth/login"),
            &json!({"email": "nobody@example.com", "password": "whatever123"}),
        )
        .await;
    let unknown = api_error(unknown, StatusCode::UNAUTHORIZED).await;
    assert_eq!(wrong, unknown);
    assert_eq!(wrong["code"], "invalid_credentials");
    app.stop().await;
}

async fn expired_session_is_401(backend: Backend) {
    let app = spawn_app(backend).await;
    let ana = app.signup("exp@example.com", "Acme").await;
    assert_eq!(
        ana.client
            .get(app.url("/api/me"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let changed = app
        .db
        .execute("UPDATE sessions SET expires_at = '2000-01-01T00:00:00Z'")
        .await;
    assert!(changed >= 1);
    let res = ana.client.get(app.url("/api/me")).send().await.unwrap();
    api_error(res, StatusCode::UNAUTHORIZED).await;
    // A page answers with a redirect to log in instead.
    let res = ana
        .client
        .get(app.url("/settings/members"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()[LOCATION], "/login?next=%2Fsettings%2Fmembers");
    app.stop().await;
}

async fn malformed_and_mistyped_json(backend: Backend) {
    let app = spawn_app(backend).await;
    let c = client();
    let post = |body: &'static str| {
        c.post(app.url("/api/auth/signup"))
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
    };
    let err = api_error(
        post("{\"email\": \"a@b.io\",,}").await.unwrap(),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(
        err["message"].as_str().unwrap().contains("line 1 column"),
        "{err}"
    );
    let err = api_error(
        post("{\"email\": 5, \"password\": \"x\", \"name\": \"n\"}")
            .await
            .unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(err["field"], "email");
    let err = api_error(post("").await.unwrap(), StatusCode::BAD_REQUEST).await;
    assert!(err["message"].as_str().unwrap().contains("empty"));
    let err = api_error(
        post("[1,2,3]").await.unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert!(err["message"].is_string());
    let err = api_error(
        post("{\"email\":\"no-at-sign\",\"password\":\"long enough pw\",\"name\":\"n\",\"organization\":\"o\"}").await.unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(err["field"], "email");
    let err = api_error(
        post("{\"email\":\"a@b.io\",\"password\":\"short\",\"name\":\"n\",\"organization\":\"o\"}")
            .await
            .unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(err["field"], "password");
    // Invalid UTF-8 inside a JSON string.
    let res = c
        .post(app.url("/api/auth/login"))
        .header(CONTENT_TYPE, "application/json")
        .body(b"{\"email\":\"\xff\xfe\",\"password\":\"x\"}".to_vec())
        .send()
        .await
        .unwrap();
    api_error(res, StatusCode::BAD_REQUEST).await;
    assert_eq!(users(&app).await, 0);
    app.stop().await;
}

async fn wrong_content_type_and_oversized_bodies(backend: Backend) {
    let app = spawn_app_with(backend, &[("PLUGBOARD_BODY_LIMIT_BYTES", "4096")]).await;
    let c = client();
    let res = c
        .post(app.url("/api/auth/signup"))
        .header(CONTENT_TYPE, "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    api_error(res, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    let res = c
        .post(app.url("/api/auth/signup"))
        .form(&[("email", "a@b.io")])
        .send()
        .await
        .unwrap();
    api_error(res, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    let huge = json!({"email": "a@b.io", "password": "x".repeat(10_000), "name": "n", "organization": "o"});
    let res = c.post_json(app.url("/api/auth/signup"), &huge).await;
    api_error(res, StatusCode::PAYLOAD_TOO_LARGE).await;
    // Same limit for forms.
    let res = c
        .post(app.url("/signup"))
        .form(&[("email", "a@b.io"), ("name", &"n".repeat(10_000))])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        res.headers()[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert_eq!(users(&app).await, 0);
    app.stop().await;
}

async fn html_forms_need_csrf(backend: Backend) {
    let app = spawn_app(backend).await;
    let c = client();
    let _ = app.csrf(&c, "/signup").await;
    let form = [
        ("email", "form@example.com"),
        ("password", PASSWORD),
        ("name", "F"),
        ("organization", "Org"),
    ];
    let res = c.post(app.url("/signup")).form(&form).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let body = res.text().await.unwrap();
    assert!(body.contains("security token"), "{body}");
    let mut forged = form.to_vec();
    forged.push(("_csrf", "forged-token"));
    let res = c
        .post(app.url("/signup"))
        .form(&forged)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    // A token from another session doesn't transfer.
    let other = client();
    let foreign = app.csrf(&other, "/signup").await;
    let mut stolen = form.to_vec();
    stolen.push(("_csrf", &foreign));
    let res = c
        .post(app.url("/signup"))
        .form(&stolen)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    // Invalid UTF-8 in a form: a clear error, no panic, nothing written.
    let token = app.csrf(&c, "/signup").await;
    let res = c
        .post(app.url("/signup"))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(
            [
                format!("_csrf={token}&email=%FF%FE&password=x&name=").as_bytes(),
                b"\xff&organization=o",
            ]
            .concat(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(users(&app).await, 0);
    app.stop().await;
}

async fn html_signup_login_home_flow(backend: Backend) {
    let app = spawn_app(backend).await;
    let c = client();
    let token = app.csrf(&c, "/signup").await;
    let res = c
        .post(app.url("/signup"))
        .form(&[
            ("_csrf", token.as_str()),
            ("email", "page@example.com"),
            ("password", PASSWORD),
            ("name", "Page"),
            ("organization", "Paged"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let home = c.get_text(app.url("/")).await;
    assert!(
        home.contains("data-testid=\"current-workspace\">Paged<"),
        "{home}"
    );
    assert!(home.contains("page@example.com"));

    let token = extract_csrf(&home).unwrap();
    let res = c
        .post(app.url("/logout"))
        .form(&[("_csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        c.get(app.url("/")).send().await.unwrap().status(),
        StatusCode::SEE_OTHER
    );

    // Wrong password re-renders the form with the message and a 401.
    let token = app.csrf(&c, "/login").await;
    let res = c
        .post(app.url("/login"))
        .form(&[
            ("_csrf", token.as_str()),
            ("email", "page@example.com"),
            ("password", "wrong password"),
            ("next", "/"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("invalid email or password")
    );

    let token = app.csrf(&c, "/login").await;
    let res = c
        .post(app.url("/login"))
        .form(&[
            ("_csrf", token.as_str()),
            ("email", "page@example.com"),
            ("password", PASSWORD),
            ("next", "https://evil.example/"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        res.headers()[LOCATION],
        "/",
        "log-in must not redirect off-site"
    );
    app.stop().await;
}

async fn login_is_throttled_per_account(backend: Backend) {
    let app = spawn_app_with(
        backend,
        &[("PLUGBOARD_LOGIN_ATTEMPTS_PER_ACCOUNT_PER_MINUTE", "3")],
    )
    .await;
    app.signup("slow@example.com", "Acme").await;
    let c = client();
    let attempt = |password: &'static str| {
        c.post(app.url("/api/auth/login"))
            .json(&json!({"email": "slow@example.com", "password": password}))
            .send()
    };
    for _ in 0..3 {
        assert_eq!(
            attempt("wrong-password").await.unwrap().status(),
            StatusCode::UNAUTHORIZED
        );
    }
    let res = attempt(PASSWORD).await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = res.headers()[RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry));
    api_error(res, StatusCode::TOO_MANY_REQUESTS).await;
    app.stop().await;
}

async fn closed_signup_only_admits_the_first_user(backend: Backend) {
    let app = spawn_app_with(backend, &[("PLUGBOARD_ALLOW_SIGNUP", "false")]).await;
    app.signup("first@example.com", "Acme").await;
    let res = client()
        .post_json(app.url("/api/auth/signup"), &json!({"email": "second@example.com", "password": PASSWORD, "name": "S", "organization": "Other"})).await;
    api_error(res, StatusCode::FORBIDDEN).await;
    assert_eq!(users(&app).await, 1);
    app.stop().await;
}

async fn cookie_flags_and_request_ids(backend: Backend) {
    let app = spawn_app(backend).await;
    let res = client()
        .post_json(app.url("/api/auth/signup"), &json!({"email": "c@example.com", "password": PASSWORD, "name": "C", "organization": "Acme"})).await;
    let cookie = res.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("plugboard_session="), "{cookie}");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    assert!(
        !cookie.contains("Secure"),
        "plain http must not mark the cookie Secure"
    );
    // The stored session key is a hash, not the cookie's value.
    let cookie_value = cookie
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_owned();
    assert!(!app.db.dump_text().await.contains(&cookie_value));

    let res = client()
        .get(app.url("/health"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "abc-123");
    let res = client().get(app.url("/health")).send().await.unwrap();
    assert_eq!(res.headers()["x-request-id"].len(), 36);
    let res = client()
        .get(app.url("/health"))
        .header("x-request-id", "bad id\twith spaces")
        .send()
        .await
        .unwrap();
    assert_ne!(res.headers()["x-request-id"], "bad id\twith spaces");
    app.stop().await;

    let secure = spawn_app_with(
        backend,
        &[("PLUGBOARD_PUBLIC_URL", "https://plugboard.example")],
    )
    .await;
    let res = client()
        .post(secure.url("/api/auth/signup"))
        .json(&json!({"email": "s@example.com", "password": PASSWORD, "name": "S", "organization": "Acme"}))
        .send()
        .await
        .unwrap();
    assert!(
        res.headers()[SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Secure")
    );
    secure.stop().await;
}

async fn health_and_ready(backend: Backend) {
    let app = spawn_app(backend).await;
    let health: Value = client().get_json(app.url("/health")).await;
    assert_eq!(health["status"], "ok");
    let res = client().get(app.url("/ready")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let ready: Value = res.json().await.unwrap();
    assert_eq!(
        ready["database"],
        if backend == Backend::Sqlite {
            "sqlite"
        } else {
            "postgres"
        }
    );
    // Forget the last migration: no longer ready.
    app.db
        .execute("DELETE FROM _sqlx_migrations WHERE version = (SELECT MAX(version) FROM _sqlx_migrations)")
        .await;
    let res = client().get(app.url("/ready")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let unknown = client().get(app.url("/api/nope")).send().await.unwrap();
    api_error(unknown, StatusCode::NOT_FOUND).await;
    app.stop().await;
}
