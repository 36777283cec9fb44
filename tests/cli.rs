//! The binary's commands: headless user creation, keys, config errors.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

fn plugboard(data_dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_plugboard"));
    cmd.current_dir(data_dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PLUGBOARD_DATA_DIR", data_dir)
        .env(
            "PLUGBOARD_PROVIDERS_DIR",
            concat!(env!("CARGO_MANIFEST_DIR"), "/providers"),
        )
        .env("PLUGBOARD_LOG_LEVEL", "warn");
    cmd
}

fn run_with_stdin(mut cmd: Command, input: &str) -> std::process::Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[tokio::test]
async fn user_create_then_log_in() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = plugboard(dir.path());
    cmd.args([
        "user",
        "create",
        "--email",
        "ops@example.com",
        "--password-stdin",
        "--org",
        "Ops",
        "--role",
        "owner",
    ]);
    let out = run_with_stdin(cmd, "a long enough password\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("as owner"));
    // The password never echoes.
    assert!(!String::from_utf8_lossy(&out.stdout).contains("a long enough password"));

    // A second user joins the existing organization as admin.
    let mut cmd = plugboard(dir.path());
    cmd.args([
        "user",
        "create",
        "--email",
        "two@example.com",
        "--password-stdin",
        "--org",
        "Ops",
        "--role",
        "admin",
    ]);
    let out = run_with_stdin(cmd, "another long password\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Both can log in with what was piped in.
    let env = std::collections::HashMap::from([(
        "PLUGBOARD_DATA_DIR".to_owned(),
        dir.path().display().to_string(),
    )]);
    let settings = plugboard::config::Settings::from_env_map(&env).unwrap();
    let store = plugboard::storage::connect(&settings).await.unwrap();
    for (email, password) in [
        ("ops@example.com", "a long enough password"),
        ("two@example.com", "another long password"),
    ] {
        let input = plugboard::auth::LoginInput {
            email: plugboard::input::SingleLine::parse(email).unwrap(),
            password: password.into(),
        };
        let user = plugboard::auth::authenticate(&store, &input)
            .await
            .expect(email);
        let workspaces = store.workspaces_for_user(user.id).await.unwrap();
        assert_eq!(workspaces.len(), 1);
        assert_eq!(workspaces[0].organization_name, "Ops");
    }
    store.close().await;

    // Duplicate email, short password, unknown role: clear errors.
    for (args, stdin, expected) in [
        (
            vec!["--email", "ops@example.com", "--org", "Ops"],
            "a long enough password\n",
            "already exists",
        ),
        (
            vec!["--email", "x@example.com", "--org", "Ops"],
            "short\n",
            "--password",
        ),
        (
            vec!["--email", "y@example.com", "--org", "Ops", "--role", "god"],
            "a long enough password\n",
            "--role",
        ),
        (
            vec![
                "--email",
                "z@example.com",
                "--org",
                "Nope",
                "--role",
                "member",
            ],
            "a long enough password\n",
            "does not exist",
        ),
    ] {
        let mut cmd = plugboard(dir.path());
        cmd.args(["user", "create", "--password-stdin"]).args(&args);
        let out = run_with_stdin(cmd, stdin);
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

#[test]
fn bad_setting_stops_the_start_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = plugboard(dir.path())
        .env("PORT", "eighty")
        .arg("migrate")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("server.port"), "{stderr}");
}

#[test]
fn postgres_without_key_refuses_and_says_how_to_make_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = plugboard(dir.path())
        .env("DATABASE_URL", common::test_database_url())
        .env("PLUGBOARD_SHUTDOWN_GRACE_SECS", "1")
        .arg("serve")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("plugboard keys generate"), "{stderr}");
}

#[test]
fn keys_generate_prints_a_usable_entry() {
    let dir = tempfile::tempdir().unwrap();
    let out = plugboard(dir.path())
        .args(["keys", "generate", "--id", "k2027"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let entry = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(entry.starts_with("k2027:"));
    plugboard::vault::KeyRing::parse(&entry).expect("entry parses as a key ring");

    // status on a fresh database with that key: nothing sealed yet.
    let out = plugboard(dir.path())
        .env("PLUGBOARD_ENCRYPTION_KEYS", &entry)
        .args(["keys", "status"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("primary key: k2027"));
}

/// `keys status` is a read: on a database nobody migrated it reports and
/// leaves it as it found it (it used to apply every migration).
#[tokio::test]
async fn keys_status_does_not_migrate_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let out = plugboard(dir.path())
        .env("PLUGBOARD_ENCRYPTION_KEYS", common::test_keys())
        .args(["keys", "status"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("migrations not applied"));
    let db = dir.path().join("plugboard.db");
    let tables: i64 = if db.exists() {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        let n = sqlx::query_scalar("SELECT count(*) FROM sqlite_master WHERE type = 'table'")
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        n
    } else {
        0
    };
    assert_eq!(tables, 0, "keys status created tables");
}

#[tokio::test]
async fn keys_status_does_not_migrate_a_postgres_database() {
    use sqlx::{Connection, PgConnection};
    let admin_url = common::test_database_url();
    let name = format!("pb_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&admin_url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut admin)
        .await
        .unwrap();
    let url = common::replace_database(&admin_url, &name);
    let dir = tempfile::tempdir().unwrap();
    let out = plugboard(dir.path())
        .env("DATABASE_URL", &url)
        .env("PLUGBOARD_ENCRYPTION_KEYS", common::test_keys())
        .args(["keys", "status"])
        .output()
        .unwrap();
    let mut db = PgConnection::connect(&url).await.unwrap();
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
    )
    .fetch_one(&mut db)
    .await
    .unwrap();
    db.close().await.ok();
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE \"{name}\"")))
        .execute(&mut admin)
        .await
        .ok();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(tables, 0, "keys status created tables");
}

/// README "Rotating keys", step by step, against the real binary.
#[tokio::test]
async fn rotation_runbook_works_as_written() {
    use plugboard::tenancy::WorkspaceId;
    use plugboard::vault::store::{get_secret, put_secret};
    use plugboard::vault::{KeyRing, Place, Secret};

    let dir = tempfile::tempdir().unwrap();
    let keys = |args: &[&str], ring: &str| {
        let out = plugboard(dir.path())
            .env("PLUGBOARD_ENCRYPTION_KEYS", ring)
            .arg("keys")
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let generate = |id: &str| {
        let out = plugboard(dir.path())
            .args(["keys", "generate", "--id", id])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let old = generate("old");

    // Secrets exist under the old key (a workspace made through the CLI).
    let mut cmd = plugboard(dir.path());
    cmd.env("PLUGBOARD_ENCRYPTION_KEYS", &old).args([
        "user",
        "create",
        "--email",
        "k@example.com",
        "--password-stdin",
        "--org",
        "K",
    ]);
    assert!(
        run_with_stdin(cmd, "a long enough password\n")
            .status
            .success()
    );
    let env = std::collections::HashMap::from([
        (
            "PLUGBOARD_DATA_DIR".to_owned(),
            dir.path().display().to_string(),
        ),
        ("PLUGBOARD_ENCRYPTION_KEYS".to_owned(), old.clone()),
    ]);
    let settings = plugboard::config::Settings::from_env_map(&env).unwrap();
    let store = plugboard::storage::connect(&settings).await.unwrap();
    let user = store
        .find_user_by_email("k@example.com")
        .await
        .unwrap()
        .unwrap();
    let ws: WorkspaceId = store.workspaces_for_user(user.id).await.unwrap()[0].workspace_id;
    let old_ring = KeyRing::parse(&old).unwrap();
    for i in 0..25u128 {
        let place = Place {
            workspace_id: ws,
            owner_kind: "connection",
            owner_id: uuid::Uuid::from_u128(i + 1),
            field: "access_token",
        };
        put_secret(
            store.as_ref(),
            &old_ring,
            &place,
            &Secret::new(format!("tok-{i}")),
        )
        .await
        .unwrap();
    }

    // 1-2. New key first, old after it.
    let new = generate("new");
    let both = format!("{new},{old}");
    let (ok, status) = keys(&["status"], &both);
    assert!(ok, "{status}");
    assert!(status.contains("needs rotate"), "{status}");
    // 3. Rotate in small batches.
    let (ok, out) = keys(&["rotate", "--batch-size", "10"], &both);
    assert!(
        ok && out.contains("rotated 25 secrets to key new in 3 batches"),
        "{out}"
    );
    // 4. Old key unused.
    let (ok, status) = keys(&["status"], &both);
    assert!(ok && status.contains("unused: can be retired"), "{status}");
    // 5. Retired: the new key alone opens every secret.
    let (ok, status) = keys(&["status"], &new);
    assert!(ok, "{status}");
    let new_ring = KeyRing::parse(&new).unwrap();
    let place = Place {
        workspace_id: ws,
        owner_kind: "connection",
        owner_id: uuid::Uuid::from_u128(7),
        field: "access_token",
    };
    assert_eq!(
        get_secret(store.as_ref(), &new_ring, &place)
            .await
            .unwrap()
            .unwrap()
            .expose(),
        "tok-6"
    );
    // Retiring too early is caught by status.
    let (ok, status) = keys(&["status"], &old);
    assert!(!ok && status.contains("NOT CONFIGURED"), "{status}");
    store.close().await;
}
