//! The provider catalog API and `plugboard providers validate`.

mod common;

use std::process::Command;

use common::{Backend, ClientExt, api_error, client, spawn_app};
use reqwest::StatusCode;
use serde_json::Value;

on_both_backends!(catalog_api);

async fn catalog_api(backend: Backend) {
    let app = spawn_app(backend).await;
    // Signed-in users only.
    let res = client()
        .get(app.url("/api/integrations/providers"))
        .send()
        .await
        .unwrap();
    api_error(res, StatusCode::UNAUTHORIZED).await;

    let user = app.signup("cat@example.com", "Acme").await;
    let get = |path: &str| user.client.get(app.url(path)).send();

    let list: Value = get("/api/integrations/providers")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let keys: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["key"].as_str().unwrap())
        .collect();
    assert!(
        keys.contains(&"sandbox") && keys.contains(&"bqe-core") && keys.len() >= 14,
        "{keys:?}"
    );

    let caps: Value = get("/api/capabilities")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(caps["integrations"]["enabled"], true);
    assert_eq!(
        caps["integrations"]["providers"].as_array().unwrap().len(),
        keys.len()
    );

    let detail: Value = get("/api/integrations/sandbox")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(detail["auth"]["pkce"], true);
    assert_eq!(
        detail["auth"]["clientSecretEnv"],
        "PLUGBOARD_SANDBOX_CLIENT_SECRET"
    );

    let catalog: Value = get("/api/integrations/bqe-core/catalog")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(catalog["providerSchemaVersion"], 1);
    assert!(catalog["rateLimits"]["requestsPerMinute"].is_u64());
    assert!(!catalog["baseUrlVariants"].as_array().unwrap().is_empty());
    let projects = catalog["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["key"] == "projects")
        .unwrap();
    assert!(projects["parentOnly"]["description"].is_string());
    assert!(projects["hierarchy"]["parentKey"].is_string());
    let fields = projects["fields"].as_array().unwrap();
    assert_eq!(fields.iter().filter(|f| f["identifier"] == true).count(), 1);
    assert!(
        fields
            .iter()
            .all(|f| f["type"].is_string() && f["nullable"].is_boolean())
    );

    let mapping: Value = get("/api/integrations/sandbox/projects/mapping/defaults")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(mapping["mappingSchemaVersion"].is_u64());
    assert_eq!(mapping["target"], "projects");
    let hash = mapping["fieldSignatureHash"].as_str().unwrap();
    assert!(hash.starts_with("sha256:") && hash.len() == 71);
    let sandbox_catalog: Value = get("/api/integrations/sandbox/catalog")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let in_catalog = sandbox_catalog["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["key"] == "projects")
        .unwrap();
    assert_eq!(in_catalog["fieldSignatureHash"], hash);

    let err = api_error(
        get("/api/integrations/nope").await.unwrap(),
        StatusCode::NOT_FOUND,
    )
    .await;
    assert!(err["message"].as_str().unwrap().contains("nope"));
    api_error(
        get("/api/integrations/nope/catalog").await.unwrap(),
        StatusCode::NOT_FOUND,
    )
    .await;
    let err = api_error(
        get("/api/integrations/sandbox/nope/mapping/defaults")
            .await
            .unwrap(),
        StatusCode::NOT_FOUND,
    )
    .await;
    assert!(err["message"].as_str().unwrap().contains("nope"));

    // No secret values: set one in the environment and make sure no
    // response carries it (the catalog names variables, never values).
    let everything = format!(
        "{}{}{}",
        get("/api/integrations/providers")
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        get("/api/integrations/google-ads")
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        get("/api/integrations/google-ads/catalog")
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    assert!(
        !everything.to_lowercase().contains("secret\":\""),
        "a secret-like value leaked"
    );
    app.stop().await;
}

fn plugboard() -> Command {
    Command::new(env!("CARGO_BIN_EXE_plugboard"))
}

#[test]
fn validate_passes_on_the_shipped_folder() {
    let out = plugboard()
        .args([
            "providers",
            "validate",
            concat!(env!("CARGO_MANIFEST_DIR"), "/providers"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("providers valid"));
}

#[test]
fn validate_fails_precisely_on_each_malformed_example() {
    let cases = [
        ("missing-header-fields", "/requiredHeaders/0"),
        ("unknown-flow", "/auth/flows/0"),
        ("bad-url", "/auth/tokenUrl"),
        ("wrong-types", "/rateLimits/requestsPerMinute"),
        ("duplicate-object-keys", "/objects/1/key"),
        ("key-mismatch", "/key"),
        (
            "reserved-key",
            "jobs/provider.json: /key: key \"jobs\" is reserved",
        ),
        ("not-json", "line"),
    ];
    for (case, expected) in cases {
        let dir = format!(
            "{}/tests/fixtures/providers-invalid/{case}",
            env!("CARGO_MANIFEST_DIR")
        );
        let out = plugboard()
            .args(["providers", "validate", &dir])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{case} should fail");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("provider.json") && stderr.contains(expected),
            "{case}: {stderr}"
        );
    }
}

/// A deployment adds a provider by dropping a folder in PLUGBOARD_PROVIDERS_DIR.
#[tokio::test]
async fn custom_providers_dir_is_used() {
    let dir = tempfile::tempdir().unwrap();
    let src = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/providers/sandbox/provider.json"
    ))
    .unwrap();
    let mut doc: Value = serde_json::from_str(&src).unwrap();
    doc["key"] = "acme-crm".into();
    doc["displayName"] = "Acme CRM".into();
    doc["futureField"] = serde_json::json!({"kept": true});
    std::fs::create_dir_all(dir.path().join("acme-crm")).unwrap();
    std::fs::write(dir.path().join("acme-crm/provider.json"), doc.to_string()).unwrap();
    let app = common::spawn_app_with(
        Backend::Sqlite,
        &[("PLUGBOARD_PROVIDERS_DIR", dir.path().to_str().unwrap())],
    )
    .await;
    let user = app.signup("custom@example.com", "Acme").await;
    let list: Value = user
        .client
        .get_json(app.url("/api/integrations/providers"))
        .await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["key"], "acme-crm");
    app.stop().await;
}
