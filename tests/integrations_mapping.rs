//! The object page's Mapping and Initial matching tabs: the mapping form
//! rendered from the catalog (a field added to provider.json shows up),
//! refused at the row a nested pointer names with what was chosen kept,
//! a stale mapping shown as a diff and re-enabled by saving, the matching
//! wizard's confirm / change / skip in one transaction, members 403 and
//! another workspace's admin 404.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Backend, ClientExt, SANDBOX_ID, SANDBOX_SECRET, TestApp, TestUser};
use reqwest::StatusCode;
use serde_json::{Value, json};

on_both_backends!(
    mapping_form_round_trips_with_an_error_at_a_nested_field,
    stale_mapping_shows_the_diff_and_saving_re_enables,
    matching_wizard_confirms_changes_and_skips_in_one_transaction,
    members_get_403_and_other_workspaces_404,
);

const MAPPING: &str = "/integrations/sandbox/projects/mapping";
const MATCHING: &str = "/integrations/sandbox/projects/matching";

async fn connect_sandbox(app: &TestApp, user: &TestUser) -> String {
    let res = user
        .client
        .post_json(
            app.url("/api/integrations/sandbox/connect"),
            &json!({"flow": "client_credentials", "clientId": SANDBOX_ID, "clientSecret": SANDBOX_SECRET, "headers": {"X-Sandbox-Company": "acme"}}),
        )
        .await;
    assert!(res.status().is_success(), "connect: {}", res.status());
    let conn: Value = res.json().await.unwrap();
    conn["id"].as_str().unwrap().to_owned()
}

fn unescape(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&#34;", "\"")
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let marker = format!(" {name}=\"");
    let start = tag.find(&marker)? + marker.len();
    let end = start + tag[start..].find('"')?;
    Some(unescape(&tag[start..end]))
}

/// What a browser posts for the form as rendered (inputs, and each
/// select's selected option, else its first).
fn browser_post(html: &str, testid: &str) -> Vec<(String, String)> {
    let start = html
        .find(&format!("data-testid=\"{testid}\""))
        .unwrap_or_else(|| panic!("form {testid}: {html}"));
    let form = &html[start..start + html[start..].find("</form>").expect("form end")];
    let mut posted = Vec::new();
    for chunk in form.split("<input").skip(1) {
        let tag = &chunk[..chunk.find('>').unwrap()];
        if let Some(name) = attr(tag, "name") {
            posted.push((name, attr(tag, "value").unwrap_or_default()));
        }
    }
    for chunk in form.split("<select").skip(1) {
        let tag = &chunk[..chunk.find('>').unwrap()];
        let Some(name) = attr(tag, "name") else {
            continue;
        };
        posted.push((name, selected(chunk).unwrap_or_default()));
    }
    posted
}

/// The selected option's value of the `<select` chunk.
fn selected(chunk: &str) -> Option<String> {
    let body = &chunk[..chunk.find("</select>")?];
    let options: Vec<&str> = body.split("<option").skip(1).collect();
    options
        .iter()
        .find(|o| o[..o.find('>').unwrap()].contains(" selected"))
        .or(options.first())
        .and_then(|o| attr(&o[..o.find('>').unwrap()], "value"))
}

/// The selected value of the select named `name` on the page.
fn select_value(html: &str, name: &str) -> Option<String> {
    let start = html.find(&format!("<select name=\"{name}\""))?;
    selected(&html[start..])
}

fn set(form: &mut [(String, String)], name: &str, value: &str) {
    let slot = form
        .iter_mut()
        .find(|(k, _)| k == name)
        .unwrap_or_else(|| panic!("no field {name}"));
    slot.1 = value.to_owned();
}

async fn post(
    app: &TestApp,
    c: &reqwest::Client,
    action: &str,
    form: &[(String, String)],
) -> reqwest::Response {
    c.post(app.url(action)).form(form).send().await.unwrap()
}

/// The form row of a provider field on the Mapping tab (rows follow the
/// catalog's field order).
fn row_of(html: &str, source: &str) -> usize {
    let start = html
        .find(&format!("data-testid=\"map-{source}\""))
        .unwrap_or_else(|| panic!("no row for {source}"));
    let rest = &html[start..];
    let name = attr(&rest[rest.find("<select").unwrap()..], "name").unwrap();
    name.trim_start_matches("/fields/")
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// A copy of the shipped providers the test may edit.
fn providers_copy() -> tempfile::TempDir {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                copy(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), target).unwrap();
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    copy(
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/providers")),
        dir.path(),
    );
    dir
}

/// Edits the sandbox's `projects` object in the copy.
fn edit_projects(dir: &Path, edit: impl FnOnce(&mut Value)) {
    let path = dir.join("sandbox/provider.json");
    let mut doc: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let objects = doc["objects"].as_array_mut().unwrap();
    let projects = objects.iter_mut().find(|o| o["key"] == "projects").unwrap();
    edit(projects);
    std::fs::write(&path, doc.to_string()).unwrap();
}

async fn mapping_form_round_trips_with_an_error_at_a_nested_field(backend: Backend) {
    // A field only this test's provider.json has: the form shows it.
    let dir = providers_copy();
    edit_projects(dir.path(), |o| {
        o["fields"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "billing_ref", "type": "string", "nullable": true}));
    });
    let app = common::sandbox_app(
        backend,
        &[("PLUGBOARD_PROVIDERS_DIR", dir.path().to_str().unwrap())],
    )
    .await;
    let owner = app.signup("owner@map.test", "Map").await;
    connect_sandbox(&app, &owner).await;
    let html = owner.client.get_text(app.url(MAPPING)).await;
    assert!(html.contains("data-testid=\"map-billing_ref\""), "{html}");
    assert!(html.contains("aria-current=\"page\">Mapping<"));
    assert!(html.contains("provider&#x27;s defaults") || html.contains("provider's defaults"));
    // The defaults come from the metadata: name → name, preserve_local.
    let name_row = row_of(&html, "name");
    assert_eq!(
        select_value(&html, &format!("/fields/{name_row}/target")).as_deref(),
        Some("name")
    );
    let api: Value = owner
        .client
        .get_json(app.url("/api/integrations/sandbox/projects/mapping"))
        .await;
    assert_eq!(api["isDefault"], true);

    // Two provider fields onto one local field: refused at the second
    // one's row (the API says /fields/<entry>/target), choices kept.
    let billing = row_of(&html, "billing_ref");
    let client = row_of(&html, "client_name");
    let mut form = browser_post(&html, "mapping-form");
    set(&mut form, &format!("/fields/{billing}/target"), "name");
    set(
        &mut form,
        &format!("/fields/{billing}/policy"),
        "write_once",
    );
    set(
        &mut form,
        &format!("/fields/{client}/policy"),
        "follow_source",
    );
    let res = post(&app, &owner.client, MAPPING, &form).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = res.text().await.unwrap();
    let error = format!("data-testid=\"error-/fields/{billing}/target\"");
    assert!(html.contains(&error), "{html}");
    assert!(html.contains("name is mapped twice"));
    assert_eq!(
        select_value(&html, &format!("/fields/{billing}/policy")).as_deref(),
        Some("write_once"),
        "what was chosen is kept"
    );
    assert_eq!(
        select_value(&html, &format!("/fields/{client}/policy")).as_deref(),
        Some("follow_source")
    );
    let api: Value = owner
        .client
        .get_json(app.url("/api/integrations/sandbox/projects/mapping"))
        .await;
    assert_eq!(api["isDefault"], true, "nothing saved");

    // Corrected: saved, and the API (and the page) read it back.
    let mut form = browser_post(&html, "mapping-form");
    set(&mut form, &format!("/fields/{billing}/target"), "number");
    let number = row_of(&html, "number");
    set(&mut form, &format!("/fields/{number}/target"), "");
    let res = post(&app, &owner.client, MAPPING, &form).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let api: Value = owner
        .client
        .get_json(app.url("/api/integrations/sandbox/projects/mapping"))
        .await;
    assert_eq!(api["version"], 1);
    let fields = api["fields"].as_array().unwrap();
    let entry = |source: &str| fields.iter().find(|f| f["source"] == source).cloned();
    assert_eq!(
        entry("billing_ref"),
        Some(json!({"source": "billing_ref", "target": "number", "policy": "write_once"}))
    );
    assert_eq!(entry("client_name").unwrap()["policy"], "follow_source");
    assert_eq!(entry("number"), None);
    let html = owner.client.get_text(app.url(MAPPING)).await;
    assert!(html.contains("Mapping saved (version 1)"), "{html}");
    assert_eq!(
        select_value(&html, &format!("/fields/{billing}/policy")).as_deref(),
        Some("write_once")
    );
    assert_eq!(
        select_value(&html, &format!("/fields/{number}/target")).as_deref(),
        Some("")
    );
    // Metrics objects have nothing to map.
    let html = owner
        .client
        .get_text(app.url("/integrations/sandbox/daily_metrics/mapping"))
        .await;
    assert!(html.contains("Nothing to map."), "{html}");
    app.stop().await;
}

async fn stale_mapping_shows_the_diff_and_saving_re_enables(backend: Backend) {
    let dir = providers_copy();
    let mut app = common::sandbox_app(
        backend,
        &[
            ("PLUGBOARD_PROVIDERS_DIR", dir.path().to_str().unwrap()),
            ("PLUGBOARD_SYNC_WORKERS", "0"),
        ],
    )
    .await;
    let owner = app.signup("owner@stale.test", "Stale").await;
    connect_sandbox(&app, &owner).await;
    let html = owner.client.get_text(app.url(MAPPING)).await;
    let res = post(
        &app,
        &owner.client,
        MAPPING,
        &browser_post(&html, "mapping-form"),
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let html = owner.client.get_text(app.url(MAPPING)).await;
    assert!(!html.contains("data-testid=\"stale\""));

    // The provider's metadata changes: a field goes, one comes, one
    // changes type. The server reads it anew on restart.
    edit_projects(dir.path(), |o| {
        let fields = o["fields"].as_array_mut().unwrap();
        fields.retain(|f| f["name"] != "end_date");
        for f in fields.iter_mut() {
            if f["name"] == "status" {
                f["nullable"] = json!(true);
            }
        }
        fields.push(json!({"name": "budget", "type": "number", "nullable": true}));
        let defaults = o["mappingDefaults"]["fields"].as_array_mut().unwrap();
        defaults.retain(|f| f["source"] != "end_date");
    });
    app.restart().await;
    let html = owner.client.get_text(app.url(MAPPING)).await;
    let banner = &html[html.find("data-testid=\"stale\"").expect("stale banner")..];
    let banner = &banner[..banner.find("</section>").unwrap()];
    assert!(banner.contains("save to re-enable"), "{banner}");
    let row = |name: &str| {
        let start = banner.find(&format!("data-testid=\"stale-{name}\""))?;
        Some(banner[start..start + banner[start..].find("</tr>")?].to_owned())
    };
    assert!(row("budget").unwrap().contains("added"));
    assert!(row("end_date").unwrap().contains("removed"));
    let status = row("status").unwrap();
    assert!(
        status.contains("changed") && status.contains("string, nullable"),
        "{status}"
    );
    assert!(row("name").is_none(), "unchanged fields are not listed");
    let dropped = &banner[banner.find("data-testid=\"dropped\"").expect("dropped")..];
    assert!(
        dropped[..dropped.find("</p>").unwrap()].contains("<code>end_date</code>"),
        "{dropped}"
    );
    assert!(html.contains("Save to re-enable"));
    let api: Value = owner
        .client
        .get_json(app.url("/api/integrations/sandbox/projects/mapping"))
        .await;
    assert_eq!(api["stale"], true);
    // Blocked meanwhile: the wizard says so.
    let wizard = owner.client.get_text(app.url(MATCHING)).await;
    assert!(wizard.contains("Mappings out of date"), "{wizard}");

    let res = post(
        &app,
        &owner.client,
        MAPPING,
        &browser_post(&html, "mapping-form"),
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let api: Value = owner
        .client
        .get_json(app.url("/api/integrations/sandbox/projects/mapping"))
        .await;
    assert_eq!(api["stale"], false);
    assert_eq!(api["version"], 2);
    assert_eq!(api["savedFieldSignatureHash"], api["fieldSignatureHash"]);
    let html = owner.client.get_text(app.url(MAPPING)).await;
    assert!(!html.contains("data-testid=\"stale\""), "{html}");
    app.stop().await;
}

/// Presses "Fetch records" and waits for the job to succeed.
async fn fetch_records(app: &TestApp, owner: &TestUser) {
    let html = owner.client.get_text(app.url(MATCHING)).await;
    let csrf = common::extract_csrf(&html).unwrap();
    let res = owner
        .client
        .post(app.url(&format!("{MATCHING}/fetch")))
        .form(&[("_csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let jobs: Value = owner
            .client
            .get_json(app.url("/api/integrations/sandbox/jobs?object=projects"))
            .await;
        let list = jobs.as_array().cloned().unwrap_or_default();
        match list.first().and_then(|j| j["status"].as_str()) {
            Some("succeeded") => return,
            Some("failed" | "cancelled") => panic!("fetch failed: {jobs}"),
            _ => {}
        }
        assert!(std::time::Instant::now() < deadline, "too slow: {jobs}");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

/// The sandbox's parent projects, read from its own data API with a
/// token of its own (not through Plugboard's store).
async fn sandbox_parents(app: &TestApp) -> Vec<Value> {
    let c = common::client();
    let token: Value = c
        .post(app.url("/sandbox/oauth/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", SANDBOX_ID),
            ("client_secret", SANDBOX_SECRET),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().expect("sandbox token");
    let body: Value = c
        .get(app.url("/sandbox/api/projects?limit=500&parent_only=true"))
        .bearer_auth(token)
        .header("X-Sandbox-Company", "acme")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let items = body["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(body["total"].as_u64(), Some(items.len() as u64), "one page");
    // Records whose name + client appear once, so the name rule matches
    // exactly one (others would be conflicts).
    let key = |p: &Value| format!("{}|{}", p["name"], p["client_name"]).to_lowercase();
    let unique: Vec<Value> = items
        .iter()
        .filter(|p| items.iter().filter(|q| key(q) == key(p)).count() == 1)
        .cloned()
        .collect();
    assert!(unique.len() >= 3, "{body}");
    let rest: Vec<Value> = items
        .iter()
        .filter(|p| !unique.iter().any(|q| q["id"] == p["id"]))
        .cloned()
        .collect();
    unique.into_iter().chain(rest).collect()
}

async fn create_project(app: &TestApp, user: &TestUser, body: Value) -> String {
    let res = user.client.post_json(app.url("/api/projects"), &body).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let p: Value = res.json().await.unwrap();
    p["id"].as_str().unwrap().to_owned()
}

/// The form row (`/pairs/<row>/entityId`) of a record on the wizard.
fn pair_row(html: &str, external_id: &str) -> String {
    let start = html
        .find(&format!("data-testid=\"pair-{external_id}\""))
        .unwrap_or_else(|| panic!("no row for {external_id}"));
    let rest = &html[start..];
    attr(&rest[rest.find("<select").unwrap()..], "name").unwrap()
}

/// The rows of one group on the wizard.
fn group_size(html: &str, group: &str) -> usize {
    let start = html
        .find(&format!("data-testid=\"group-{group}\""))
        .unwrap_or_else(|| panic!("no group {group}"));
    let rest = &html[start..];
    rest[..rest.find("</fieldset>").unwrap()]
        .matches("data-testid=\"pair-")
        .count()
}

async fn matching_wizard_confirms_changes_and_skips_in_one_transaction(backend: Backend) {
    let app = common::sandbox_app(backend, &[]).await;
    let owner = app.signup("owner@match.test", "Match").await;
    connect_sandbox(&app, &owner).await;
    let html = owner.client.get_text(app.url(MATCHING)).await;
    assert!(html.contains("No unmatched records stored."), "{html}");
    fetch_records(&app, &owner).await;
    assert_eq!(
        app.db.count("SELECT COUNT(*) FROM projects").await,
        0,
        "fetching changes nothing local"
    );
    // What the sandbox itself serves, to check the wizard against.
    let parents = sandbox_parents(&app).await;
    let (first, second, third) = (&parents[0], &parents[1], &parents[2]);
    let number = first["number"].as_str().unwrap();
    // Two local projects: one with the first record's number, one unlike
    // anything, and one taking the second record's name and client.
    let by_number = create_project(&app, &owner, json!({"number": number, "name": "Ours"})).await;
    let other = create_project(&app, &owner, json!({"name": "Nothing alike"})).await;
    let by_name = create_project(
        &app,
        &owner,
        json!({"name": second["name"], "clientName": second["client_name"]}),
    )
    .await;

    let html = owner.client.get_text(app.url(MATCHING)).await;
    assert_eq!(group_size(&html, "matched"), 2, "{html}");
    assert!(html.contains(&format!("<option value=\"{other}\">Nothing alike</option>")));
    assert_eq!(
        group_size(&html, "matched")
            + group_size(&html, "conflict")
            + group_size(&html, "unmatched"),
        parents.len()
    );
    let first_row = pair_row(&html, first["id"].as_str().unwrap());
    let second_row = pair_row(&html, second["id"].as_str().unwrap());
    let third_row = pair_row(&html, third["id"].as_str().unwrap());
    assert_eq!(
        select_value(&html, &first_row).as_deref(),
        Some(by_number.as_str())
    );
    assert_eq!(
        select_value(&html, &second_row).as_deref(),
        Some(by_name.as_str())
    );
    assert_eq!(select_value(&html, &third_row).as_deref(), Some(""));

    // The same local project for two records: refused at the second
    // one's row, every choice kept, nothing written.
    let mut form = browser_post(&html, "matching-form");
    set(&mut form, &third_row, &by_number);
    let res = post(&app, &owner.client, MATCHING, &form).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = res.text().await.unwrap();
    let later = if html.find(&first_row) < html.find(&third_row) {
        &third_row
    } else {
        &first_row
    };
    assert!(
        page.contains(&format!("data-testid=\"error-{later}\"")),
        "{page}"
    );
    assert_eq!(
        select_value(&page, &third_row).as_deref(),
        Some(by_number.as_str())
    );
    // A pair that fails after good ones were written in the transaction
    // (its local project is not found): nothing is left half-applied.
    let mut form = browser_post(&html, "matching-form");
    // (posted as a browser can't: a project that doesn't exist)
    set(
        &mut form,
        &third_row,
        "00000000-0000-4000-8000-000000000000",
    );
    let res = post(&app, &owner.client, MATCHING, &form).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert!(res.text().await.unwrap().contains("role=\"alert\""));
    assert_eq!(app.db.count("SELECT COUNT(*) FROM external_links").await, 0);

    // Keep the number match, change the name match to the third record,
    // skip everything else: one submit.
    let mut form = browser_post(&html, "matching-form");
    set(&mut form, &second_row, "");
    set(&mut form, &third_row, &by_name);
    let res = post(&app, &owner.client, MATCHING, &form).await;
    assert_eq!(res.status(), StatusCode::OK);
    let page = res.text().await.unwrap();
    let fact = |id: &str| {
        let start = page
            .find(&format!("data-testid=\"summary-{id}\">"))
            .unwrap()
            + id.len()
            + 23;
        page[start..start + page[start..].find('<').unwrap()].to_owned()
    };
    assert_eq!(fact("matched"), "2", "{page}");
    assert_eq!(fact("changed"), "1");
    assert_eq!(fact("skipped"), (parents.len() - 2).to_string());
    assert_eq!(app.db.count("SELECT COUNT(*) FROM external_links").await, 2);
    // The links, as the API shows them: the sandbox's records.
    let p: Value = owner
        .client
        .get_json(app.url(&format!("/api/projects/{by_name}")))
        .await;
    assert_eq!(p["links"][0]["externalId"], third["id"]);
    let p: Value = owner
        .client
        .get_json(app.url(&format!("/api/projects/{by_number}")))
        .await;
    assert_eq!(p["links"][0]["externalId"], first["id"]);
    // Linked records leave the wizard.
    let html = owner.client.get_text(app.url(MATCHING)).await;
    assert!(!html.contains(&format!(
        "data-testid=\"pair-{}\"",
        first["id"].as_str().unwrap()
    )));
    app.stop().await;
}

async fn members_get_403_and_other_workspaces_404(backend: Backend) {
    let app = common::sandbox_app(backend, &[]).await;
    let owner = app.signup("owner@roles.test", "Roles").await;
    let id = connect_sandbox(&app, &owner).await;
    let member = app.signup("member@roles.test", "Elsewhere").await;
    app.join(
        &owner.client,
        owner.workspace_id,
        &member.client,
        &member.email,
        "member",
    )
    .await;
    let csrf = app.csrf(&member.client, "/").await;
    let res = member
        .client
        .post(app.url(&format!("/workspaces/{}/switch", owner.workspace_id)))
        .form(&[("_csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert!(res.status().is_redirection());
    let csrf = app.csrf(&member.client, "/").await;
    for path in [MAPPING, MATCHING] {
        let res = member.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{path}");
    }
    for path in [MAPPING, MATCHING, &format!("{MATCHING}/fetch")] {
        let res = member
            .client
            .post(app.url(path))
            .form(&[("_csrf", csrf.as_str()), ("/fields/0/target", "name")])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "POST {path}");
    }

    let stranger = app.signup("admin@other.test", "Other").await;
    let csrf = app.csrf(&stranger.client, "/integrations").await;
    for path in [MAPPING, MATCHING] {
        let url = format!("{path}?connection={id}");
        let res = stranger.client.get(app.url(&url)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{url}");
    }
    for path in [MAPPING, MATCHING, &format!("{MATCHING}/fetch")] {
        let res = stranger
            .client
            .post(app.url(path))
            .form(&[
                ("_csrf", csrf.as_str()),
                ("connectionId", id.as_str()),
                ("/pairs/0/externalId", "proj-0001"),
                ("/pairs/0/entityId", "00000000-0000-0000-0000-000000000000"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "POST {path}");
    }
    assert_eq!(app.db.count("SELECT COUNT(*) FROM mappings").await, 0);
    assert_eq!(app.db.count("SELECT COUNT(*) FROM jobs").await, 0);
    app.stop().await;
}
