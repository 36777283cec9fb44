//! Test harness: the real application on 127.0.0.1:0 with a fresh database
//! per test — an SQLite file in a temp folder, or a new PostgreSQL database
//! on TEST_DATABASE_URL's server, dropped afterwards.
#![allow(dead_code)]

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::OnceLock;

use plugboard::app::{self, Server};
use plugboard::config::Settings;
use plugboard::storage::DynStore;
use reqwest::StatusCode;
use reqwest::header::LOCATION;
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};
use sqlx::{ConnectOptions, Connection};
use tempfile::TempDir;
use tokio::net::TcpListener;
use uuid::Uuid;

pub const PASSWORD: &str = "correct horse battery staple";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs each named `async fn(Backend)` scenario once per backend.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::common::Backend::Sqlite).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::common::Backend::Postgres).await
                }
            }
        )*
    };
}

pub fn test_database_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// One key ring for the whole test process.
pub fn test_keys() -> &'static str {
    static KEYS: OnceLock<String> = OnceLock::new();
    KEYS.get_or_init(|| plugboard::vault::generate_key_entry("test1").expect("key"))
}

/// A direct connection to the test's database, for checks the API can't
/// make (raw rows, forced expiry).
#[derive(Clone)]
pub enum RawDb {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

impl RawDb {
    pub async fn count(&self, sql: &'static str) -> i64 {
        match self {
            RawDb::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await.expect(sql),
            RawDb::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await.expect(sql),
        }
    }

    /// The one text value `sql` selects.
    pub async fn text(&self, sql: &'static str) -> String {
        match self {
            RawDb::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await.expect(sql),
            RawDb::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await.expect(sql),
        }
    }

    pub async fn execute(&self, sql: &'static str) -> u64 {
        match self {
            RawDb::Postgres(pool) => sqlx::query(sql)
                .execute(pool)
                .await
                .expect(sql)
                .rows_affected(),
            RawDb::Sqlite(pool) => sqlx::query(sql)
                .execute(pool)
                .await
                .expect(sql)
                .rows_affected(),
        }
    }

    /// Every text cell of every table, for "no plaintext secret" checks.
    pub async fn dump_text(&self) -> String {
        let tables = [
            "users",
            "organizations",
            "workspaces",
            "memberships",
            "invites",
            "sessions",
            "audit_log",
            "secrets",
            "connect_links",
            "webhook_deliveries",
        ];
        let mut out = String::new();
        for table in tables {
            match self {
                RawDb::Postgres(pool) => {
                    let sql = format!("SELECT row_to_json(t)::text FROM {table} t");
                    let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                        .fetch_all(pool)
                        .await
                        .unwrap();
                    out.push_str(&rows.join("\n"));
                }
                RawDb::Sqlite(pool) => {
                    let sql = format!("SELECT * FROM {table}");
                    use sqlx::{Row, ValueRef};
                    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .fetch_all(pool)
                        .await
                        .unwrap();
                    for row in rows {
                        for i in 0..row.columns().len() {
                            let raw = row.try_get_raw(i).unwrap();
                            if raw.is_null() {
                                continue;
                            }
                            if let Ok(text) = row.try_get::<String, _>(i) {
                                out.push_str(&text);
                            } else if let Ok(bytes) = row.try_get::<Vec<u8>, _>(i) {
                                out.push_str(&String::from_utf8_lossy(&bytes));
                            }
                            out.push(' ');
                        }
                        out.push('\n');
                    }
                }
            }
        }
        out
    }
}

struct PgTestDb {
    admin_url: String,
    name: String,
}

impl Drop for PgTestDb {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop can't await; a short-lived runtime on its own thread can.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                if let Ok(options) = PgConnectOptions::from_str(&admin_url)
                    && let Ok(mut conn) = options.connect().await
                {
                    let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                    let _ = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .execute(&mut conn)
                        .await;
                    let _ = conn.close().await;
                }
            });
        })
        .join();
    }
}

pub struct TestApp {
    pub base: String,
    pub backend: Backend,
    pub state: plugboard::app::AppState,
    pub store: DynStore,
    pub db: RawDb,
    pub settings: Settings,
    server: Option<Server>,
    _dir: TempDir,
    _pg: Option<PgTestDb>,
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, &[]).await
}

pub async fn spawn_app_with(backend: Backend, overrides: &[(&'static str, &str)]) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().unwrap();
    let base = format!("http://{addr}");

    let (database_url, pg) = match backend {
        Backend::Sqlite => (
            format!("sqlite://{}", dir.path().join("test.db").display()),
            None,
        ),
        Backend::Postgres => {
            let admin_url = test_database_url();
            let name = format!("pb_test_{}", Uuid::new_v4().simple());
            let mut admin = PgConnectOptions::from_str(&admin_url)
                .expect("TEST_DATABASE_URL")
                .connect()
                .await
                .unwrap_or_else(|e| {
                    panic!("PostgreSQL at TEST_DATABASE_URL ({admin_url}) is required: {e}")
                });
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
                .execute(&mut admin)
                .await
                .expect("create test database");
            admin.close().await.ok();
            let url = replace_database(&admin_url, &name);
            (url, Some(PgTestDb { admin_url, name }))
        }
    };

    let mut env: HashMap<String, String> = HashMap::from([
        ("DATABASE_URL".into(), database_url.clone()),
        (
            "PLUGBOARD_DATA_DIR".into(),
            dir.path().display().to_string(),
        ),
        ("PLUGBOARD_PUBLIC_URL".into(), base.clone()),
        ("PLUGBOARD_ENCRYPTION_KEYS".into(), test_keys().to_owned()),
        (
            "PLUGBOARD_PROVIDERS_DIR".into(),
            format!("{}/providers", env!("CARGO_MANIFEST_DIR")),
        ),
        ("PLUGBOARD_LOG_LEVEL".into(), "warn".into()),
        // Deterministic sandbox numbers; a test wanting revisions passes true.
        ("PLUGBOARD_SANDBOX_REVISIONS".into(), "false".into()),
        (
            "PLUGBOARD_LOGIN_ATTEMPTS_PER_IP_PER_MINUTE".into(),
            "1000".into(),
        ),
        (
            "PLUGBOARD_LOGIN_ATTEMPTS_PER_ACCOUNT_PER_MINUTE".into(),
            "1000".into(),
        ),
        ("PLUGBOARD_DATABASE_MAX_CONNECTIONS".into(), "5".into()),
        // Tests sync again and again; the few about the "Sync now"
        // interval set it themselves.
        ("PLUGBOARD_SYNC_MIN_INTERVAL_SECS".into(), "0".into()),
    ]);
    for (k, v) in overrides {
        env.insert((*k).to_owned(), (*v).to_owned());
    }
    let settings = Settings::from_env_map(&env).expect("test settings");
    let state = app::build_state(settings.clone())
        .await
        .expect("build state");
    let store = state.store.clone();
    let server = app::spawn(state.clone(), listener).await.expect("spawn");

    let db = match backend {
        Backend::Sqlite => RawDb::Sqlite(
            SqlitePool::connect_with(SqliteConnectOptions::from_str(&database_url).unwrap())
                .await
                .expect("raw sqlite"),
        ),
        Backend::Postgres => RawDb::Postgres(
            PgPoolOptions::new()
                .max_connections(2)
                .connect(&database_url)
                .await
                .expect("raw pg"),
        ),
    };
    TestApp {
        base,
        backend,
        state,
        store,
        db,
        settings,
        server: Some(server),
        _dir: dir,
        _pg: pg,
    }
}

pub fn replace_database(url: &str, name: &str) -> String {
    let (without_query, query) = match url.split_once('?') {
        Some((u, q)) => (u, format!("?{q}")),
        None => (url, String::new()),
    };
    let scheme_end = without_query.find("://").map_or(0, |i| i + 3);
    let base = match without_query[scheme_end..].find('/') {
        Some(slash) => &without_query[..scheme_end + slash],
        None => without_query,
    };
    format!("{base}/{name}{query}")
}

/// A browser-like client: keeps cookies, never follows redirects (tests
/// look at them).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

pub struct TestUser {
    pub client: reqwest::Client,
    pub id: Uuid,
    pub email: String,
    pub workspace_id: Uuid,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// A second server process on the same database (its own pools, locks
    /// and instance id), as in a deployment that runs several servers.
    pub async fn spawn_peer(&self) -> (String, Server) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = app::build_state(self.settings.clone())
            .await
            .expect("peer state");
        (base, app::spawn(state, listener).await.expect("peer"))
    }

    /// Stops the server and starts the app again on the same database,
    /// settings and address, as restarting the binary would: everything
    /// kept only in memory is gone.
    pub async fn restart(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await.expect("server stopped cleanly");
        }
        let addr = self.base.trim_start_matches("http://").to_owned();
        let listener = TcpListener::bind(&addr).await.expect("bind again");
        let state = app::build_state(self.settings.clone())
            .await
            .expect("state after restart");
        self.store = state.store.clone();
        self.state = state.clone();
        self.server = Some(app::spawn(state, listener).await.expect("spawn again"));
    }

    pub async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await.expect("server stopped cleanly");
        }
    }

    /// Signs up a new user with their own organization via the JSON API.
    pub async fn signup(&self, email: &str, org: &str) -> TestUser {
        let client = client();
        let res = client
            .post(self.url("/api/auth/signup"))
            .json(&json!({ "email": email, "password": PASSWORD, "name": email.split('@').next().unwrap(), "organization": org }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::CREATED, "signup {email}");
        let me: Value = res.json().await.unwrap();
        TestUser {
            client,
            id: me["user"]["id"].as_str().unwrap().parse().unwrap(),
            email: email.to_owned(),
            workspace_id: me["currentWorkspaceId"].as_str().unwrap().parse().unwrap(),
        }
    }

    /// A logged-in client for an existing account.
    pub async fn login(&self, email: &str) -> reqwest::Client {
        let client = client();
        let res = client
            .post(self.url("/api/auth/login"))
            .json(&json!({ "email": email, "password": PASSWORD }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "login {email}");
        client
    }

    /// Makes an existing account a member the only way there is: an admin
    /// invites the email and the person accepts the link.
    pub async fn join(
        &self,
        admin: &reqwest::Client,
        workspace_id: Uuid,
        member: &reqwest::Client,
        email: &str,
        role: &str,
    ) {
        let res = admin
            .post(self.url(&format!("/api/workspaces/{workspace_id}/invites")))
            .json(&json!({ "email": email, "role": role }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::CREATED, "invite {email}");
        let invite: Value = res.json().await.unwrap();
        let token = invite["inviteUrl"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .to_owned();
        let res = member
            .post(self.url(&format!("/api/invites/{token}/accept")))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "accept {email}");
    }

    /// The CSRF token of the client's session, read from a rendered form.
    pub async fn csrf(&self, client: &reqwest::Client, page: &str) -> String {
        let html = client
            .get(self.url(page))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        extract_csrf(&html).unwrap_or_else(|| panic!("no CSRF field on {page}"))
    }
}

pub fn extract_csrf(html: &str) -> Option<String> {
    let marker = "name=\"_csrf\" value=\"";
    let start = html.find(marker)? + marker.len();
    let end = start + html[start..].find('"')?;
    Some(html[start..end].to_owned())
}

/// Short forms of the requests tests make over and over.
pub trait ClientExt {
    fn get_text(&self, url: String) -> impl std::future::Future<Output = String>;
    fn get_json(&self, url: String) -> impl std::future::Future<Output = Value>;
    fn post_json(
        &self,
        url: String,
        body: &impl serde::Serialize,
    ) -> impl std::future::Future<Output = reqwest::Response>;
    fn patch_json(
        &self,
        url: String,
        body: &impl serde::Serialize,
    ) -> impl std::future::Future<Output = reqwest::Response>;
    /// DELETE with the JSON content type the API requires of mutations.
    fn delete_json(&self, url: String) -> impl std::future::Future<Output = reqwest::Response>;
}

impl ClientExt for reqwest::Client {
    async fn get_text(&self, url: String) -> String {
        self.get(url).send().await.unwrap().text().await.unwrap()
    }
    async fn get_json(&self, url: String) -> Value {
        self.get(url).send().await.unwrap().json().await.unwrap()
    }
    async fn post_json(&self, url: String, body: &impl serde::Serialize) -> reqwest::Response {
        self.post(url).json(body).send().await.unwrap()
    }
    async fn patch_json(&self, url: String, body: &impl serde::Serialize) -> reqwest::Response {
        self.patch(url).json(body).send().await.unwrap()
    }
    async fn delete_json(&self, url: String) -> reqwest::Response {
        self.delete(url)
            .header("content-type", "application/json")
            .send()
            .await
            .unwrap()
    }
}

/// Asserts the API error envelope and returns it.
pub async fn api_error(res: reqwest::Response, status: StatusCode) -> Value {
    assert_eq!(res.status(), status);
    let body: Value = res.json().await.expect("JSON error body");
    assert!(body["error"]["code"].is_string(), "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    body["error"].clone()
}

// ---- the built-in sandbox provider -------------------------------------

pub const SANDBOX_ID: &str = "test-sandbox-client";
pub const SANDBOX_SECRET: &str = "test-sandbox-secret";

pub async fn sandbox_app(backend: Backend, extra: &[(&'static str, &str)]) -> TestApp {
    let mut env: Vec<(&'static str, &str)> = vec![
        ("PLUGBOARD_SANDBOX", "true"),
        ("PLUGBOARD_SANDBOX_CLIENT_ID", SANDBOX_ID),
        ("PLUGBOARD_SANDBOX_CLIENT_SECRET", SANDBOX_SECRET),
        ("PLUGBOARD_OAUTH_KEEPALIVE_INTERVAL_MINUTES", "0"),
    ];
    env.extend_from_slice(extra);
    spawn_app_with(backend, &env).await
}

pub fn location(res: &reqwest::Response) -> String {
    res.headers()
        .get(LOCATION)
        .unwrap_or_else(|| panic!("no Location on {}", res.status()))
        .to_str()
        .unwrap()
        .to_owned()
}

/// Plays the browser through the sandbox consent page; returns the
/// response of Plugboard's callback.
pub async fn authorize(
    app: &TestApp,
    c: &reqwest::Client,
    ownership: &str,
    decision: &str,
) -> reqwest::Response {
    let res = c
        .get(app.url(&format!("/api/oauth/sandbox/start?ownership={ownership}")))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_redirection(), "start: {}", res.status());
    let authorize_url = location(&res);
    assert!(
        authorize_url.starts_with(&app.url("/sandbox/oauth/authorize")),
        "{authorize_url}"
    );
    assert!(
        authorize_url.contains("code_challenge_method=S256"),
        "PKCE must be used"
    );
    let consent = c.get(&authorize_url).send().await.unwrap();
    assert_eq!(consent.status(), StatusCode::OK);
    let mut form: Vec<(String, String)> = reqwest::Url::parse(&authorize_url)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    form.push(("decision".into(), decision.into()));
    form.push(("company".into(), "acme".into()));
    let res = c
        .post(app.url("/sandbox/oauth/authorize"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert!(res.status().is_redirection(), "consent: {}", res.status());
    let callback = location(&res);
    assert!(
        callback.starts_with(&app.url("/api/oauth/sandbox/callback")),
        "{callback}"
    );
    c.get(callback).send().await.unwrap()
}

pub async fn sandbox_stats(app: &TestApp) -> Value {
    client().get_json(app.url("/sandbox/_stats")).await
}

pub async fn set_faults(app: &TestApp, faults: Value) {
    let res = client()
        .post_json(app.url("/sandbox/_faults"), &faults)
        .await;
    assert!(res.status().is_success());
}

pub async fn connections(c: &reqwest::Client, app: &TestApp) -> Vec<Value> {
    c.get_json(app.url("/api/integrations/connections"))
        .await
        .as_array()
        .unwrap()
        .clone()
}
