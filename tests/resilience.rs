//! The database going away for a moment (a restart, a failover, killed
//! connections) is an outage to wait out, not a reason to sign people out.

mod common;

use std::time::Duration;

use common::{Backend, spawn_app};

on_both_backends!(a_page_view_does_not_rewrite_an_unchanged_session);

/// Sessions slide their expiry on use, but an unchanged session is written
/// at most once a minute, not on every request.
async fn a_page_view_does_not_rewrite_an_unchanged_session(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.signup("slide@example.com", "Slide").await;
    let me = app.url("/api/me");
    let stored = "SELECT CAST(expires_at AS TEXT) FROM sessions";
    assert_eq!(
        user.client.get(&me).send().await.unwrap().status(),
        StatusCode::OK
    );
    let before = app.db.text(stored).await;
    // Stored times have whole seconds: a rewrite now would move it.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    for _ in 0..5 {
        assert_eq!(
            user.client.get(&me).send().await.unwrap().status(),
            StatusCode::OK
        );
    }
    assert_eq!(app.db.text(stored).await, before);
    assert_eq!(app.db.count("SELECT count(*) FROM sessions").await, 1);
}
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use sqlx::{Connection, PgConnection};

/// Runs `sql` against the test server's admin database.
async fn admin(sql: String) {
    let mut conn = PgConnection::connect(&common::test_database_url())
        .await
        .expect("admin connection");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(&mut conn)
        .await
        .expect("admin statement");
    conn.close().await.ok();
}

/// PostgreSQL only: SQLite is a file in the process, it doesn't go away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_answers_503_not_401_and_the_session_survives() {
    let app = spawn_app(Backend::Postgres).await;
    let user = app.signup("outage@example.com", "Outage").await;
    let me = app.url("/api/me");
    assert_eq!(
        user.client.get(&me).send().await.unwrap().status(),
        StatusCode::OK
    );

    let url = app.settings.database.url.expose_secret().to_owned();
    let name = url
        .rsplit('/')
        .next()
        .and_then(|tail| tail.split('?').next())
        .expect("database name")
        .to_owned();
    admin(format!("ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS false")).await;
    admin(format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()"
    ))
    .await;

    for path in ["/api/me", "/data", "/integrations"] {
        let res = user.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert!(res.headers().get("retry-after").is_some(), "{path}");
    }

    admin(format!("ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS true")).await;
    // The pool reconnects by itself; the same session is still signed in.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let status = user.client.get(&me).send().await.unwrap().status();
        if status == StatusCode::OK {
            break;
        }
        assert_ne!(status, StatusCode::UNAUTHORIZED, "signed out by the outage");
        assert!(std::time::Instant::now() < deadline, "still {status}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
