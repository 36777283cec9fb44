//! The API describes itself: `/api/openapi.json` covers every route under
//! /api plus /health and /ready, every documented operation reaches a
//! handler, secrets are write-only without examples, and `/api/docs`
//! renders the same document as HTML without JavaScript.

mod common;

use std::collections::BTreeSet;

use common::{Backend, ClientExt, TestApp, api_error, client, spawn_app};
use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;
use serde_json::Value;

on_both_backends!(
    every_documented_operation_reaches_a_handler,
    secrets_are_write_only_without_examples,
    auth_schemes_and_error_codes_are_documented,
    docs_page_renders_the_document,
    documented_bodies_are_what_the_server_parses,
);

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

async fn document(app: &TestApp) -> Value {
    // Public: no session, no key.
    let res = client()
        .get(app.url("/api/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let doc: Value = res.json().await.unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    doc
}

/// (method, path) of every documented operation, paths as served.
fn operations(doc: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS {
            if item[method].is_object() {
                out.push((method.to_owned(), path.clone()));
            }
        }
    }
    out
}

/// Reads a source file of the crate.
fn source(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// Handlers registered through `routes!(...)` in a source file.
fn registered_handlers(src: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = src;
    while let Some(at) = rest.find("routes!(") {
        rest = &rest[at + "routes!(".len()..];
        let end = rest.find(')').unwrap();
        out.extend(
            rest[..end]
                .split(',')
                .map(str::trim)
                .filter(|h| !h.is_empty())
                .map(str::to_owned),
        );
        rest = &rest[end..];
    }
    out
}

/// Paths given to plain `.route("…")` calls in a source file.
fn plain_routes(src: &str) -> Vec<String> {
    src.match_indices(".route(")
        .map(|(at, _)| {
            let tail = &src[at + ".route(".len()..];
            let tail = tail.trim_start();
            tail.strip_prefix('"')
                .and_then(|t| t.split('"').next())
                .unwrap_or("<computed>")
                .to_owned()
        })
        .collect()
}

/// A value for a path parameter: the first of its enum, else an id that
/// exists nowhere.
fn placeholder(doc: &Value, param: &Value) -> String {
    let mut schema = &param["schema"];
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.rsplit('/').next().unwrap();
        schema = &doc["components"]["schemas"][name];
    }
    match schema["enum"][0].as_str() {
        Some(first) => first.to_owned(),
        None => "00000000-0000-4000-8000-000000000001".to_owned(),
    }
}

fn concrete_path(doc: &Value, method: &str, path: &str) -> String {
    let mut concrete = path.to_owned();
    for param in doc["paths"][path][method]["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["in"] == "path")
    {
        let name = param["name"].as_str().unwrap();
        concrete = concrete.replace(&format!("{{{name}}}"), &placeholder(doc, param));
    }
    assert!(
        !concrete.contains('{'),
        "undocumented path parameter in {path}"
    );
    concrete
}

/// True when the answer is the router's, not a handler's: no such route or
/// no such method on it.
async fn router_answered(res: reqwest::Response) -> bool {
    if res.status() == StatusCode::METHOD_NOT_ALLOWED {
        return true;
    }
    if res.status() != StatusCode::NOT_FOUND {
        return false;
    }
    let body = res.text().await.unwrap_or_default();
    body.contains("no such API route") || body.contains("page not found")
}

async fn every_documented_operation_reaches_a_handler(backend: Backend) {
    let app = spawn_app(backend).await;
    let doc = document(&app).await;
    let ops = operations(&doc);

    // Routes are registered only through routes!(...) on the OpenApiRouter:
    // a plain .route(...) under /api (or for /health and /ready) would be
    // served but not documented.
    let mut api_sources = vec![source("src/web/api/mod.rs")];
    for entry in std::fs::read_dir(format!("{}/src/web/api", env!("CARGO_MANIFEST_DIR"))).unwrap() {
        api_sources.push(std::fs::read_to_string(entry.unwrap().path()).unwrap());
    }
    for src in &api_sources {
        let plain = plain_routes(src);
        assert!(plain.is_empty(), "undocumented API routes: {plain:?}");
        assert!(!src.contains("route_service(") && !src.contains("nest_service("));
    }
    let web = source("src/web/mod.rs");
    for path in plain_routes(&web) {
        assert!(
            !path.starts_with("/api") && path != "/health" && path != "/ready",
            "{path} is routed without documentation"
        );
    }
    // Every handler registered is in the document: an OpenApiRouter turned
    // into a plain Router on the way loses its documentation, and this
    // count notices.
    let mut registered = registered_handlers(&web);
    registered.extend(registered_handlers(&api_sources[0]));
    assert_eq!(
        registered.len(),
        ops.len(),
        "registered handlers {registered:?} vs documented operations {ops:?}"
    );
    let ids: BTreeSet<&str> = ops
        .iter()
        .map(|(m, p)| doc["paths"][p][m]["operationId"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), ops.len(), "operation ids must be unique");

    let paths: BTreeSet<&str> = ops.iter().map(|(_, p)| p.as_str()).collect();
    for required in [
        "/health",
        "/ready",
        "/api/openapi.json",
        "/api/docs",
        "/api/auth/login",
        "/api/internal/connection-tokens",
        "/api/internal/metrics/write",
        "/api/workspaces/{workspace_id}/service-keys/{key_id}",
    ] {
        assert!(paths.contains(required), "{required} is not documented");
    }

    // The check below can tell the router's answer from a handler's.
    let probe = client()
        .get(app.url("/api/no-such-route"))
        .send()
        .await
        .unwrap();
    assert!(router_answered(probe).await);
    let probe = client()
        .delete(app.url("/api/me"))
        .header(CONTENT_TYPE, "application/json")
        .send()
        .await
        .unwrap();
    assert!(router_answered(probe).await);

    // Every documented operation is routed, anonymously (handlers answer
    // 401 and change nothing) with placeholder ids.
    let http = client();
    for (method, path) in &ops {
        let url = app.url(&concrete_path(&doc, method, path));
        let req = match method.as_str() {
            "get" => http.get(&url),
            "post" => http.post(&url),
            "put" => http.put(&url),
            "patch" => http.patch(&url),
            "delete" => http.delete(&url),
            other => panic!("unexpected method {other}"),
        };
        let res = req
            .header(CONTENT_TYPE, "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        let status = res.status();
        assert!(
            !router_answered(res).await,
            "{method} {path} is documented but not routed ({status})"
        );
    }
    app.stop().await;
}

fn schema<'a>(doc: &'a Value, name: &str) -> &'a Value {
    let s = &doc["components"]["schemas"][name];
    assert!(s.is_object(), "schema {name} missing");
    s
}

/// Schemas sent as request bodies.
fn request_schemas(doc: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for item in doc["paths"].as_object().unwrap().values() {
        for method in METHODS {
            let body = &item[method]["requestBody"]["content"]["application/json"]["schema"];
            let r = body["$ref"]
                .as_str()
                .or_else(|| body["items"]["$ref"].as_str());
            if let Some(r) = r {
                out.insert(r.rsplit('/').next().unwrap().to_owned());
            }
        }
    }
    out
}

fn has_example(v: &Value) -> bool {
    match v {
        Value::Object(map) => {
            map.contains_key("example")
                || map.contains_key("examples")
                || map.values().any(has_example)
        }
        Value::Array(items) => items.iter().any(has_example),
        _ => false,
    }
}

async fn secrets_are_write_only_without_examples(backend: Backend) {
    let app = spawn_app(backend).await;
    let doc = document(&app).await;
    let requests = request_schemas(&doc);
    for name in ["SignupInput", "LoginInput", "CredentialsInput"] {
        assert!(requests.contains(name), "{name} is not a request body");
    }
    let mut secrets = 0;
    for name in &requests {
        let s = schema(&doc, name);
        for (prop, p) in s["properties"].as_object().into_iter().flatten() {
            let lower = prop.to_ascii_lowercase();
            let secret = ["password", "secret", "apikey", "api_key", "token"]
                .iter()
                .any(|w| lower.contains(w));
            if secret {
                secrets += 1;
                assert_eq!(p["writeOnly"], true, "{name}.{prop} must be writeOnly");
                assert!(!has_example(p), "{name}.{prop} has an example");
            }
        }
    }
    // password ×2, invite_token, clientSecret, apiKey at least.
    assert!(secrets >= 5, "found {secrets} secret fields");
    // The one response that returns tokens is documented as such, and only
    // behind a service key.
    let tokens = &doc["paths"]["/api/internal/connection-tokens"]["get"];
    assert_eq!(
        tokens["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/IssuedTokens"
    );
    assert!(tokens["security"].as_array().unwrap().iter().all(|s| {
        s.as_object()
            .unwrap()
            .keys()
            .all(|k| k.starts_with("service_key"))
    }));
    app.stop().await;
}

async fn auth_schemes_and_error_codes_are_documented(backend: Backend) {
    let app = spawn_app(backend).await;
    let doc = document(&app).await;
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["session_cookie"]["type"], "apiKey");
    assert_eq!(schemes["session_cookie"]["in"], "cookie");
    assert_eq!(schemes["session_cookie"]["name"], "plugboard_session");
    assert_eq!(schemes["service_key"]["in"], "header");
    assert_eq!(schemes["service_key"]["name"], "x-agent-service-key");
    assert_eq!(schemes["service_key_bearer"]["scheme"], "bearer");

    // The session cookie really is called that.
    let user = app.signup("docs@example.com", "Docs").await;
    let me = user.client.get(app.url("/api/me")).send().await.unwrap();
    assert_eq!(me.status(), StatusCode::OK);
    let anon = client()
        .post(app.url("/api/auth/login"))
        .json(&serde_json::json!({"email": "docs@example.com", "password": common::PASSWORD}))
        .send()
        .await
        .unwrap();
    let cookie = anon.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("plugboard_session="), "{cookie}");

    // Error codes are enumerated, and real errors use them.
    let error = schema(&doc, "ErrorBody");
    assert_eq!(
        error["properties"]["error"]["$ref"],
        "#/components/schemas/ErrorDetail"
    );
    let codes: Vec<&str> = schema(&doc, "ErrorCode")["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    for res in [
        client().get(app.url("/api/me")).send().await.unwrap(),
        client()
            .post(app.url("/api/auth/login"))
            .json(&serde_json::json!({"email": 5}))
            .send()
            .await
            .unwrap(),
        user.client
            .get(app.url("/api/jobs/not-an-id"))
            .send()
            .await
            .unwrap(),
    ] {
        let body: Value = res.json().await.unwrap();
        let code = body["error"]["code"].as_str().unwrap();
        assert!(codes.contains(&code), "{code} not in {codes:?}");
    }
    // Enums carry their values.
    let job_status = schema(&doc, "JobStatus")["enum"].as_array().unwrap();
    assert!(job_status.iter().any(|v| v == "waiting_external"));
    let scopes = schema(&doc, "Scope")["enum"].as_array().unwrap();
    assert!(scopes.iter().any(|v| v == "tokens:read_refresh"));
    // Signed-in routes name the session scheme; public ones none.
    assert_eq!(
        doc["paths"]["/api/me"]["get"]["security"][0]["session_cookie"],
        serde_json::json!([])
    );
    assert!(doc["paths"]["/api/auth/login"]["post"]["security"].is_null());
    app.stop().await;
}

async fn docs_page_renders_the_document(backend: Backend) {
    let app = spawn_app(backend).await;
    let doc = document(&app).await;
    let res = client().get(app.url("/api/docs")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let csp = res.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    let html = res.text().await.unwrap();
    // Only the project's own script file (the CSP's script-src 'self'), no
    // inline code and nothing the page needs to work.
    let lower = html.to_ascii_lowercase();
    assert_eq!(
        lower.matches("<script").count(),
        lower.matches("<script src=\"/static/app.js\"").count(),
        "only /static/app.js may be loaded"
    );
    assert!(html.contains("width=device-width"));
    for (method, path) in operations(&doc) {
        assert!(html.contains(&path), "{path} missing from /api/docs");
        let id = doc["paths"][&path][&method]["operationId"]
            .as_str()
            .unwrap();
        assert!(
            html.contains(&format!("id=\"op-{id}\"")),
            "{id} has no anchor"
        );
    }
    for tag in ["auth", "internal", "meta"] {
        assert!(html.contains(&format!("id=\"tag-{tag}\"")), "{tag}");
    }
    assert!(html.contains("id=\"schema-ErrorBody\""));
    assert!(html.contains("write-only"));
    // Anonymous readers get no nav; signed-in ones get the usual frame.
    assert!(!html.contains("data-testid=\"current-workspace\""));
    let user = app.signup("reader@example.com", "Readers").await;
    let html = user
        .client
        .get(app.url("/api/docs"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("data-testid=\"current-workspace\""));
    app.stop().await;
}

/// The typed edit and rule bodies are the parsers: every property the
/// document lists is a field the server reads (a wrong type there is a type
/// error, not "unknown field"), the document says nothing else is allowed,
/// and an undocumented key is a 422 naming it. Fails if the documented
/// schema and the accepted body drift apart.
async fn documented_bodies_are_what_the_server_parses(backend: Backend) {
    let app = spawn_app(backend).await;
    let doc = document(&app).await;
    let owner = app.signup("drift@example.com", "Drift").await;
    let cases = [
        ("ProjectChanges", "post", "/api/projects", "colour"),
        ("PersonChanges", "post", "/api/people", "colour"),
        (
            "RuleInput",
            "put",
            "/api/integrations/sandbox/projects/rules",
            "/colour",
        ),
    ];
    for (name, method, path, unknown_field) in cases {
        let schema = schema(&doc, name);
        assert_eq!(
            schema["additionalProperties"],
            Value::Bool(false),
            "{name} should document that other keys are refused"
        );
        let send = |body: Value| {
            let url = app.url(path);
            let client = owner.client.clone();
            async move {
                match method {
                    "put" => client.put(url).json(&body).send().await.unwrap(),
                    _ => client.post_json(url, &body).await,
                }
            }
        };
        let properties = schema["properties"].as_object().unwrap();
        assert!(!properties.is_empty(), "{name} documents no fields");
        for key in properties.keys() {
            // An object is the wrong type for every field of these bodies.
            let res = send(serde_json::json!({ key: {"not": "a value"} })).await;
            let err = api_error(res, StatusCode::UNPROCESSABLE_ENTITY).await;
            let message = err["message"].as_str().unwrap();
            assert!(
                !message.starts_with("unknown field"),
                "{name}.{key} is documented but the server refuses it: {err}"
            );
        }
        let res = send(serde_json::json!({"colour": "red"})).await;
        let err = api_error(res, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(err["field"], unknown_field, "{name}: {err}");
        assert!(
            err["message"]
                .as_str()
                .unwrap()
                .starts_with("unknown field"),
            "{name}: {err}"
        );
    }
    app.stop().await;
}
