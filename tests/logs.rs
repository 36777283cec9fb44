//! What the server writes to its log. This binary installs its own global
//! tracing subscriber (its own process), writing every level into a buffer
//! the test reads, with the request span's fields on every line.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use common::{Backend, ClientExt, sandbox_app, spawn_app};
use reqwest::StatusCode;
use serde_json::json;
use tracing_subscriber::fmt::MakeWriter;

on_both_backends!(
    invite_tokens_never_reach_the_log,
    connect_link_tokens_never_reach_the_log
);

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// The log of this process so far. Text and JSON lines both, so neither
/// format can leak what the other redacts.
fn log() -> String {
    static CAPTURE: OnceLock<Captured> = OnceLock::new();
    let captured = CAPTURE.get_or_init(|| {
        use tracing_subscriber::prelude::*;
        let captured = Captured::default();
        let text = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(captured.clone());
        let json = tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_writer(captured.clone());
        tracing_subscriber::registry()
            .with(tracing_subscriber::EnvFilter::new("trace"))
            .with(text)
            .with(json)
            .init();
        captured
    });
    String::from_utf8_lossy(&captured.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
}

async fn invite_tokens_never_reach_the_log(backend: Backend) {
    log();
    let app = spawn_app(backend).await;
    let admin = app.signup("admin@logs.example", "Logs").await;
    let res = admin
        .client
        .post(app.url(&format!("/api/workspaces/{}/invites", admin.workspace_id)))
        .json(&json!({"email": "new@logs.example", "role": "member"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let invite: serde_json::Value = res.json().await.unwrap();
    let token = invite["inviteUrl"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    assert!(token.len() >= 20, "{token}");

    // The page of the link, its form, the API accept and a bad token.
    let visitor = common::client();
    let res = visitor
        .get(app.url(&format!("/invites/{token}")))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    let res = visitor
        .post(app.url(&format!("/api/invites/{token}/accept")))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "not signed in");
    visitor
        .get(app.url(&format!("/invites/{token}x")))
        .send()
        .await
        .unwrap();
    app.stop().await;

    let log = log();
    // The capture saw these requests, by their redacted paths.
    assert!(log.contains("/invites/[redacted]"), "{log}");
    assert!(log.contains("/api/invites/[redacted]/accept"), "{log}");
    assert!(!log.contains(&token), "the invite token is in the log");
}

async fn connect_link_tokens_never_reach_the_log(backend: Backend) {
    log();
    let app = sandbox_app(backend, &[]).await;
    let admin = app.signup("admin@links.example", "Links").await;
    let res = admin
        .client
        .post_json(
            app.url(&format!(
                "/api/workspaces/{}/connect-links",
                admin.workspace_id
            )),
            &json!({"provider": "sandbox"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let link: serde_json::Value = res.json().await.unwrap();
    let token = link["url"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    assert!(token.len() >= 20, "{token}");
    let path = format!("/connect/{token}");

    // Signed out (sent to log in), the page, its button, a bad token.
    let visitor = common::client();
    let res = visitor.get(app.url(&path)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let res = admin.client.get(app.url(&path)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let csrf = app.csrf(&admin.client, &path).await;
    let res = admin
        .client
        .post(app.url(&path))
        .form(&[("_csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let res = admin
        .client
        .get(app.url(&format!("{path}x")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    app.stop().await;

    let log = log();
    assert!(log.contains("/connect/[redacted]"), "{log}");
    assert!(
        !log.contains(&token),
        "the connect link token is in the log"
    );
}
