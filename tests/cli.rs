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
            email: email.into(),
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
