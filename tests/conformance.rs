//! Conformance of the metadata-driven reader with every shipped provider
//! object, against responses recorded from each provider's documented
//! format (tests/fixtures/conformance): the requests it makes page by page
//! (path, query, body), that it reads every page and stops on the
//! provider's end signal, the records it extracts (ids, children, deleted),
//! and the delta read's request.

mod common;

use std::path::Path;

use common::{Backend, ClientExt, SANDBOX_ID, SANDBOX_SECRET, sandbox_app};
use plugboard::providers::{ObjectKind, ProviderRegistry};
use plugboard::storage::now;
use plugboard::sync::fetch::{ObjectReader, Position, ReadSpec};
use plugboard::sync::records::{RecordBatch, RecordRow};
use plugboard::tenancy::WorkspaceId;
use serde_json::Value;
use uuid::Uuid;

const BASE: &str = "http://fixture.test/base";

fn substitute(value: &Value) -> Value {
    match value {
        Value::String(s) => Value::String(s.replace("{baseUrl}", BASE)),
        Value::Array(a) => Value::Array(a.iter().map(substitute).collect()),
        Value::Object(m) => {
            Value::Object(m.iter().map(|(k, v)| (k.clone(), substitute(v))).collect())
        }
        other => other.clone(),
    }
}

fn query_of(url: &str) -> Vec<(String, String)> {
    match url.split_once('?') {
        Some((_, q)) => serde_urlencoded::from_str(q).unwrap_or_default(),
        None => Vec::new(),
    }
}

struct Walk {
    /// Each page's records as the engine stores them.
    pages: Vec<Vec<RecordRow>>,
    ids: Vec<String>,
    children: usize,
    deleted: usize,
    records: usize,
}

/// Drives the reader through recorded pages, checking each request.
fn walk(
    reader: &ObjectReader<'_>,
    spec: &ReadSpec,
    pages: &[Value],
    label: &str,
) -> Result<Walk, String> {
    let mut position = Position::Start;
    let mut walk = Walk {
        pages: Vec::new(),
        ids: Vec::new(),
        children: 0,
        deleted: 0,
        records: 0,
    };
    for (i, page) in pages.iter().enumerate() {
        let at = format!("{label} page {}", i + 1);
        if position == Position::Done {
            return Err(format!("{at}: the reader stopped early"));
        }
        let request = reader
            .request(spec, &position)
            .map_err(|e| format!("{at}: {e}"))?;
        let expected = &page["request"];
        if let Some(method) = expected.get("method").and_then(Value::as_str)
            && !method.eq_ignore_ascii_case(&request.method)
        {
            return Err(format!("{at}: method {} != {method}", request.method));
        }
        let (url_path, mut query) = match request.url.split_once('?') {
            Some((p, _)) => (p.to_owned(), query_of(&request.url)),
            None => (request.url.clone(), Vec::new()),
        };
        query.extend(request.query.iter().cloned());
        if let Some(path) = expected.get("path").and_then(Value::as_str) {
            let path = path.split('?').next().unwrap_or(path);
            let want = format!("{BASE}{path}");
            if url_path != want {
                return Err(format!("{at}: requested {url_path}, recorded {want}"));
            }
        }
        if let Some(Value::Object(q)) = expected.get("query") {
            for (k, v) in q {
                let want = v
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| v.to_string());
                if !query.iter().any(|(qk, qv)| qk == k && *qv == want) {
                    return Err(format!("{at}: query {k}={want} missing from {query:?}"));
                }
            }
        }
        if let Some(Value::Object(b)) = expected.get("bodyContains") {
            let body = request.body.clone().unwrap_or(Value::Null);
            for (pointer, want) in b {
                if body.pointer(pointer) != Some(want) {
                    return Err(format!(
                        "{at}: body {pointer} is {:?}, recorded {want}",
                        body.pointer(pointer)
                    ));
                }
            }
        }
        let response = substitute(&page["response"]);
        let headers: Vec<(String, String)> = response
            .get("headers")
            .and_then(Value::as_object)
            .map(|h| {
                h.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        let parsed = reader
            .parse(
                &position,
                &headers,
                response.get("body").unwrap_or(&Value::Null),
            )
            .map_err(|e| format!("{at}: {e}"))?;
        let mut rows = Vec::new();
        for record in &parsed.records {
            walk.records += 1;
            if let Some(id) = reader.external_id(record) {
                walk.ids.push(id.clone());
                rows.push(RecordRow::new(
                    id,
                    reader.project(record),
                    reader.is_child(record),
                    reader.is_deleted(record),
                ));
            }
            walk.children += usize::from(reader.is_child(record));
            walk.deleted += usize::from(reader.is_deleted(record));
        }
        walk.pages.push(rows);
        position = parsed.next;
    }
    if position != Position::Done {
        return Err(format!(
            "{label}: the reader wants another page after the recorded last one: {position:?}"
        ));
    }
    Ok(walk)
}

fn check(expected: &Value, walk: &Walk, label: &str, records_have_ids: bool) -> Result<(), String> {
    let want = expected["records"].as_u64().unwrap_or(0) as usize;
    if walk.records != want {
        return Err(format!(
            "{label}: read {} records, recorded {want}",
            walk.records
        ));
    }
    if records_have_ids && let Some(ids) = expected.get("ids").and_then(Value::as_array) {
        let ids: Vec<String> = ids
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| v.to_string())
            })
            .collect();
        if walk.ids != ids {
            return Err(format!("{label}: ids {:?} != recorded {ids:?}", walk.ids));
        }
    }
    for (key, got) in [("children", walk.children), ("deleted", walk.deleted)] {
        if let Some(want) = expected.get(key).and_then(Value::as_u64)
            && got as u64 != want
        {
            return Err(format!("{label}: {key} {got} != recorded {want}"));
        }
    }
    Ok(())
}

#[test]
fn every_shipped_object_reads_its_recorded_pages() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let registry = ProviderRegistry::load(&root.join("providers")).expect("shipped providers");
    let mut failures = Vec::new();
    let mut checked = 0;
    for provider in registry.iter() {
        for object in &provider.meta.objects {
            let label = format!("{}/{}", provider.meta.key, object.key);
            let path = root.join(format!("tests/fixtures/conformance/{label}.json"));
            let Ok(text) = std::fs::read_to_string(&path) else {
                failures.push(format!("{label}: no recorded fixture"));
                continue;
            };
            let fixture: Value = match serde_json::from_str(&text) {
                Ok(v) => v,
                Err(e) => {
                    failures.push(format!("{label}: fixture is not JSON: {e}"));
                    continue;
                }
            };
            checked += 1;
            let reader = ObjectReader::new(object, &provider.raw);
            let records_have_ids = object.fields.iter().any(|f| f.identifier);
            let spec = ReadSpec {
                base_url: BASE.to_owned(),
                account_id: fixture
                    .get("accountId")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                since: None,
                until: fixture
                    .get("until")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                parent_only: false,
                page_size: None,
            };
            let pages = fixture["pages"].as_array().cloned().unwrap_or_default();
            match walk(&reader, &spec, &pages, &label) {
                Ok(w) => {
                    if let Err(e) = check(&fixture["expected"], &w, &label, records_have_ids) {
                        failures.push(e);
                    }
                }
                Err(e) => failures.push(e),
            }
            // Delta reads that go through a query parameter: the first
            // request must carry it. (Stored-cursor and delta-link modes
            // are provider state, checked with the sync engine.)
            let delta = &fixture["delta"];
            let uses_param = provider
                .raw
                .get("objects")
                .and_then(Value::as_array)
                .and_then(|objects| {
                    objects
                        .iter()
                        .find(|o| o["key"] == object.key.as_str())
                        .and_then(|o| o.get("deltaParam"))
                });
            if let (Some(since), Some(_)) = (delta.get("since").and_then(Value::as_str), uses_param)
            {
                let spec = ReadSpec {
                    since: Some(since.to_owned()),
                    ..spec.clone()
                };
                let dpages = delta["pages"].as_array().cloned().unwrap_or_default();
                match walk(&reader, &spec, &dpages, &format!("{label} delta")) {
                    Ok(w) => {
                        if let Err(e) = check(
                            &delta["expected"],
                            &w,
                            &format!("{label} delta"),
                            records_have_ids,
                        ) {
                            failures.push(e);
                        }
                    }
                    Err(e) => failures.push(e),
                }
            }
        }
    }
    assert!(checked >= 28, "only {checked} objects had fixtures");
    assert!(
        failures.is_empty(),
        "{} of {checked} objects failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Every shipped records object's recorded pages, as stored rows.
fn recorded_record_pages() -> Vec<(String, Vec<Vec<RecordRow>>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let registry = ProviderRegistry::load(&root.join("providers")).expect("shipped providers");
    let mut out = Vec::new();
    for provider in registry.iter() {
        for object in &provider.meta.objects {
            if object.kind != ObjectKind::Records {
                continue;
            }
            let label = format!("{}/{}", provider.meta.key, object.key);
            let text = std::fs::read_to_string(
                root.join(format!("tests/fixtures/conformance/{label}.json")),
            )
            .expect("fixture");
            let fixture: Value = serde_json::from_str(&text).expect("fixture JSON");
            let reader = ObjectReader::new(object, &provider.raw);
            let spec = ReadSpec {
                base_url: BASE.to_owned(),
                account_id: fixture
                    .get("accountId")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                since: None,
                until: None,
                parent_only: false,
                page_size: None,
            };
            let pages = fixture["pages"].as_array().cloned().unwrap_or_default();
            let walk = walk(&reader, &spec, &pages, &label).expect("walk");
            out.push((label, walk.pages));
        }
    }
    out
}

on_both_backends!(full_reads_are_idempotent_and_resumable_for_every_records_object);

/// Store-level conformance, per shipped records object: a second full read
/// of the same pages changes nothing, and a read interrupted after page k
/// and resumed with page k read again ends with exactly the store of an
/// uninterrupted read.
async fn full_reads_are_idempotent_and_resumable_for_every_records_object(backend: Backend) {
    let app = sandbox_app(backend, &[]).await;
    let mut connections = Vec::new();
    for n in 0..2 {
        let owner = app
            .signup(&format!("conf{n}@example.com"), &format!("Conf {n}"))
            .await;
        let res = owner
            .client
            .post_json(
                app.url("/api/integrations/sandbox/connect"),
                &serde_json::json!({"flow": "client_credentials", "clientId": SANDBOX_ID, "clientSecret": SANDBOX_SECRET, "headers": {"X-Sandbox-Company": "acme"}}),
            )
            .await;
        let conn: Value = res.json().await.unwrap();
        let id: Uuid = conn["id"].as_str().unwrap().parse().unwrap();
        connections.push((WorkspaceId(owner.workspace_id), id));
    }
    let store = app.store.clone();
    let write = |(ws, connection_id): (WorkspaceId, Uuid),
                 object: String,
                 run: Uuid,
                 rows: Vec<RecordRow>| {
        let store = store.clone();
        async move {
            store
                .upsert_records(&RecordBatch {
                    workspace: ws,
                    connection_id,
                    object: &object,
                    run_id: run,
                    full_read: true,
                    rows: &rows,
                    at: now(),
                })
                .await
                .unwrap()
        }
    };
    let snapshot = |(ws, connection_id): (WorkspaceId, Uuid), object: String| {
        let store = store.clone();
        async move {
            let mut rows: Vec<(String, Value, bool, bool)> = store
                .list_records(ws, connection_id, &object, 100_000)
                .await
                .unwrap()
                .into_iter()
                .map(|r| (r.external_id, r.data.0, r.is_child, r.deleted_at.is_some()))
                .collect();
            rows.sort_by(|a, b| a.0.cmp(&b.0));
            rows
        }
    };
    let objects = recorded_record_pages();
    assert!(objects.len() >= 20, "{} records objects", objects.len());
    for (label, pages) in objects {
        let total: usize = pages.iter().map(Vec::len).sum();
        let (whole, resumed) = (connections[0], connections[1]);
        // Two uninterrupted full reads.
        for pass in 0..2 {
            let run = Uuid::now_v7();
            let (mut created, mut updated, mut unchanged) = (0, 0, 0);
            for page in &pages {
                let c = write(whole, label.clone(), run, page.clone()).await;
                created += c.created;
                updated += c.updated;
                unchanged += c.unchanged;
            }
            let vanished = store
                .mark_vanished(whole.0, whole.1, &label, run, now())
                .await
                .unwrap();
            assert_eq!(vanished, 0, "{label} pass {pass}");
            if pass == 1 {
                assert_eq!(
                    (created, updated),
                    (0, 0),
                    "{label}: a second full read rewrote rows"
                );
                assert_eq!(unchanged as usize, total, "{label}");
            }
        }
        // Interrupted after page k and resumed from page k again (the
        // worst case: its commit raced the crash, so it is read twice).
        let k = pages.len().div_ceil(2);
        let run = Uuid::now_v7();
        for page in &pages[..k] {
            write(resumed, label.clone(), run, page.clone()).await;
        }
        for page in &pages[k - 1..] {
            write(resumed, label.clone(), run, page.clone()).await;
        }
        store
            .mark_vanished(resumed.0, resumed.1, &label, run, now())
            .await
            .unwrap();
        let (a, b) = (
            snapshot(whole, label.clone()).await,
            snapshot(resumed, label.clone()).await,
        );
        assert!(!a.is_empty(), "{label}: nothing stored");
        assert_eq!(a, b, "{label}: the resumed read's store differs");
    }
    app.stop().await;
}
