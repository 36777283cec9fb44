//! The Integrations Hub pages: the catalog's statuses and search, admins
//! only, workspaces apart, and the rule form rendered from the schema and
//! the catalog of a provider no shipped file has — saved, refused at the
//! field a nested JSON pointer names, and a revision conflict.

mod common;

use common::{Backend, ClientExt, SANDBOX_ID, SANDBOX_SECRET, TestApp, TestUser};
use reqwest::StatusCode;
use serde_json::{Value, json};

on_both_backends!(
    catalog_shows_statuses_and_searches,
    members_get_403_and_no_nav_link,
    another_workspace_gets_404_for_connection_ids,
    fixture_provider_rule_form_saves_and_refuses_at_the_field,
    revision_conflicts_show_what_changed_and_reapply,
);

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

/// The `data-status` of a provider's tile.
fn tile_status(html: &str, key: &str) -> Option<String> {
    let marker = format!("data-testid=\"provider-status-{key}\" data-status=\"");
    let start = html.find(&marker)? + marker.len();
    let end = start + html[start..].find('"')?;
    Some(html[start..end].to_owned())
}

async fn post_form(
    app: &TestApp,
    c: &reqwest::Client,
    page: &str,
    action: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let csrf = app.csrf(c, page).await;
    let mut form: Vec<(&str, &str)> = vec![("_csrf", csrf.as_str())];
    form.extend_from_slice(fields);
    c.post(app.url(action)).form(&form).send().await.unwrap()
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

/// The value of ` name="…"` in one tag.
fn attr(tag: &str, name: &str) -> Option<String> {
    let marker = format!(" {name}=\"");
    let start = tag.find(&marker)? + marker.len();
    let end = start + tag[start..].find('"')?;
    Some(unescape(&tag[start..end]))
}

/// What a browser posts for the form as rendered: inputs with their
/// values (boxes only when checked, nothing disabled), and each select's
/// selected option, else its first.
fn browser_post(html: &str, testid: &str) -> Vec<(String, String)> {
    let start = html
        .find(&format!("data-testid=\"{testid}\""))
        .expect("form");
    let form = &html[start..start + html[start..].find("</form>").expect("form end")];
    let mut posted = Vec::new();
    for chunk in form.split("<input").skip(1) {
        let tag = &chunk[..chunk.find('>').unwrap()];
        let kind = attr(tag, "type").unwrap_or_else(|| "text".into());
        let (Some(name), false) = (attr(tag, "name"), tag.contains(" disabled")) else {
            continue;
        };
        if matches!(kind.as_str(), "checkbox" | "radio") && !tag.contains(" checked") {
            continue;
        }
        posted.push((name, attr(tag, "value").unwrap_or_default()));
    }
    for chunk in form.split("<select").skip(1) {
        let tag = &chunk[..chunk.find('>').unwrap()];
        let (Some(name), false) = (attr(tag, "name"), tag.contains(" disabled")) else {
            continue;
        };
        let body = &chunk[..chunk.find("</select>").unwrap()];
        let options: Vec<&str> = body.split("<option").skip(1).collect();
        let chosen = options
            .iter()
            .find(|o| o[..o.find('>').unwrap()].contains(" selected"))
            .or(options.first())
            .and_then(|o| attr(&o[..o.find('>').unwrap()], "value"))
            .unwrap_or_default();
        posted.push((name, chosen));
    }
    posted
}

async fn catalog_shows_statuses_and_searches(backend: Backend) {
    let app = common::sandbox_app(backend, &[]).await;
    let owner = app.signup("owner@hub.test", "Hub").await;
    let html = owner.client.get_text(app.url("/integrations")).await;
    assert_eq!(tile_status(&html, "sandbox").as_deref(), Some("available"));
    // No OAuth app for GitHub here: what an operator sets, and where to.
    assert_eq!(tile_status(&html, "github").as_deref(), Some("not_set_up"));
    let github = &html[html.find("data-testid=\"setup-github\"").unwrap()..];
    let github = &github[..github.find("</section>").unwrap()];
    assert!(
        github.contains("<code>PLUGBOARD_GITHUB_CLIENT_ID</code>"),
        "{github}"
    );
    assert!(github.contains("<code>PLUGBOARD_GITHUB_CLIENT_SECRET</code>"));
    assert!(github.contains(&format!(
        "{}/api/oauth/github/callback",
        app.settings.public_url()
    )));
    assert!(github.contains("Provider documentation"));

    let id = connect_sandbox(&app, &owner).await;
    let html = owner.client.get_text(app.url("/integrations")).await;
    assert_eq!(tile_status(&html, "sandbox").as_deref(), Some("connected"));
    // The provider page's actions are the Data Hub's, landing back here;
    // any other place to land is refused for the cards.
    let action = |what: &str| format!("/data/connections/{id}/{what}");
    let page = "/integrations/sandbox";
    for (what, back, expected) in [
        ("disable", "https://evil.example/", "/data/connections"),
        ("enable", page, page),
        ("disable", page, page),
    ] {
        let res = post_form(&app, &owner.client, page, &action(what), &[("back", back)]).await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER);
        assert_eq!(common::location(&res), expected, "{what} {back}");
    }
    let html = owner.client.get_text(app.url(page)).await;
    assert!(html.contains("Connection disabled."), "{html}");
    assert!(html.contains(">DISABLED<"));
    let res = post_form(
        &app,
        &owner.client,
        page,
        &action("enable"),
        &[("back", page)],
    )
    .await;
    assert_eq!(common::location(&res), page);

    // Refresh failing for more than a day: attention, on the tile and page.
    app.db
        .execute("UPDATE connections SET refresh_failing_since = '2000-01-01T00:00:00Z'")
        .await;
    let html = owner.client.get_text(app.url("/integrations")).await;
    assert_eq!(
        tile_status(&html, "sandbox").as_deref(),
        Some("needs_attention")
    );
    let page = owner
        .client
        .get_text(app.url("/integrations/sandbox"))
        .await;
    assert!(page.contains("Admin attention needed"), "{page}");
    app.db
        .execute("UPDATE connections SET refresh_failing_since = NULL, status = 'NEEDS_REAUTH'")
        .await;
    let page = owner
        .client
        .get_text(app.url("/integrations/sandbox"))
        .await;
    assert!(page.contains("data-testid=\"banner-reauth-"), "{page}");
    assert!(!page.contains("Admin attention needed"));

    // Search and category filter are a GET form.
    let html = owner
        .client
        .get_text(app.url("/integrations?q=SANDBOX"))
        .await;
    assert!(tile_status(&html, "sandbox").is_some());
    assert!(tile_status(&html, "github").is_none());
    let html = owner
        .client
        .get_text(app.url("/integrations?category=testing"))
        .await;
    assert!(tile_status(&html, "sandbox").is_some());
    assert!(tile_status(&html, "hubspot").is_none());
    let html = owner
        .client
        .get_text(app.url("/integrations?q=no-such-provider"))
        .await;
    assert!(html.contains("No provider matches."));
    app.stop().await;
}

async fn members_get_403_and_no_nav_link(backend: Backend) {
    let app = common::sandbox_app(backend, &[]).await;
    let owner = app.signup("owner@hub.test", "Hub").await;
    let member = app.signup("member@hub.test", "Elsewhere").await;
    app.join(
        &owner.client,
        owner.workspace_id,
        &member.client,
        &member.email,
        "member",
    )
    .await;
    let switch = post_form(
        &app,
        &member.client,
        "/",
        &format!("/workspaces/{}/switch", owner.workspace_id),
        &[],
    )
    .await;
    assert!(switch.status().is_redirection());
    for path in [
        "/integrations",
        "/integrations/sandbox",
        "/integrations/sandbox/projects",
    ] {
        let res = member.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{path}");
    }
    let home = member.client.get_text(app.url("/")).await;
    assert!(
        home.contains("data-testid=\"current-workspace\">Hub<"),
        "{home}"
    );
    assert!(!home.contains("href=\"/integrations\""));
    let home = owner.client.get_text(app.url("/")).await;
    assert!(home.contains("href=\"/integrations\""));
    app.stop().await;
}

async fn another_workspace_gets_404_for_connection_ids(backend: Backend) {
    let app = common::sandbox_app(backend, &[]).await;
    let owner = app.signup("owner@hub.test", "Hub").await;
    let id = connect_sandbox(&app, &owner).await;
    let stranger = app.signup("admin@other.test", "Other").await;
    let res = stranger
        .client
        .get(app.url(&format!("/integrations/sandbox/projects?connection={id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = post_form(
        &app,
        &stranger.client,
        "/integrations",
        "/integrations/sandbox/projects",
        &[
            ("connectionId", &id),
            ("/interval", "minutes"),
            ("/interval/minutes", "60"),
            ("/behaviour", "full"),
        ],
    )
    .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = post_form(
        &app,
        &stranger.client,
        "/integrations",
        &format!("/data/connections/{id}/disable"),
        &[],
    )
    .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    // Their own provider page lists none of it.
    let page = stranger
        .client
        .get_text(app.url("/integrations/sandbox"))
        .await;
    assert!(!page.contains(&id));
    let conns = common::connections(&owner.client, &app).await;
    assert_eq!(conns[0]["status"], "CONNECTED", "nothing changed");
    app.stop().await;
}

/// A provider only this test has: `fixturecrm`, with a `deals` object and
/// fields no shipped provider declares, connected with an API key.
fn fixture_providers() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/providers/sandbox/provider.json"
    ))
    .unwrap();
    let mut doc: Value = serde_json::from_str(&sandbox).unwrap();
    doc["key"] = "fixturecrm".into();
    doc["displayName"] = "Fixture CRM".into();
    doc["category"] = "crm".into();
    doc["auth"]["flows"] = json!([{"type": "api_key", "headerName": "X-Api-Key"}]);
    doc["auth"]["clientIdEnv"] = "PLUGBOARD_FIXTURECRM_CLIENT_ID".into();
    doc["auth"]["clientSecretEnv"] = "PLUGBOARD_FIXTURECRM_CLIENT_SECRET".into();
    doc["requiredHeaders"] = json!([]);
    doc.as_object_mut().unwrap().remove("accounts");
    let mut object = doc["objects"][2].clone();
    object["key"] = "deals".into();
    object["label"] = "Deals".into();
    object["endpoint"] = "/deals".into();
    object["fields"] = json!([
        {"name": "deal_code", "type": "string", "nullable": false, "identifier": true},
        {"name": "pipeline_stage", "type": "string", "nullable": true},
        {"name": "amount_cents", "type": "integer", "nullable": true}
    ]);
    object.as_object_mut().unwrap().remove("mappingDefaults");
    doc["objects"] = json!([object]);
    std::fs::create_dir_all(dir.path().join("fixturecrm")).unwrap();
    std::fs::write(dir.path().join("fixturecrm/provider.json"), doc.to_string()).unwrap();
    dir
}

async fn fixture_provider_rule_form_saves_and_refuses_at_the_field(backend: Backend) {
    let dir = fixture_providers();
    let app = common::spawn_app_with(
        backend,
        &[
            ("PLUGBOARD_PROVIDERS_DIR", dir.path().to_str().unwrap()),
            ("PLUGBOARD_SYNC_WORKERS", "0"),
            ("PLUGBOARD_PLANNER_INTERVAL_SECS", "0"),
        ],
    )
    .await;
    let owner = app.signup("owner@hub.test", "Hub").await;
    let page = owner
        .client
        .get_text(app.url("/integrations/fixturecrm"))
        .await;
    assert!(page.contains("data-testid=\"object-deals\""), "{page}");
    assert!(page.contains("data-testid=\"field-deals-pipeline_stage\""));
    assert!(page.contains("providerSchemaVersion 1"));

    // The connection form (API key); a missing key comes back at its field.
    let res = post_form(
        &app,
        &owner.client,
        "/integrations/fixturecrm",
        "/integrations/fixturecrm/connect",
        &[
            ("flow", "api_key"),
            ("ownership", "workspace"),
            ("api_key", ""),
        ],
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = res.text().await.unwrap();
    assert!(html.contains("data-testid=\"error-api_key\""), "{html}");
    let res = post_form(
        &app,
        &owner.client,
        "/integrations/fixturecrm",
        "/integrations/fixturecrm/connect",
        &[
            ("flow", "api_key"),
            ("ownership", "workspace"),
            ("api_key", "fixture-key-123"),
        ],
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let page = owner
        .client
        .get_text(app.url("/integrations/fixturecrm"))
        .await;
    assert!(!page.contains("fixture-key-123"), "the key is never shown");

    let form = owner
        .client
        .get_text(app.url("/integrations/fixturecrm/deals"))
        .await;
    for field in ["deal_code", "pipeline_stage", "amount_cents"] {
        assert!(
            form.contains(&format!("name=\"/fields\" value=\"{field}\"")),
            "{field} offered: {form}"
        );
    }
    assert!(form.contains("name=\"/interval/minutes\""));
    assert!(form.contains("data-testid=\"next-runs\""));
    assert!(form.contains("No rule saved yet"));

    let res = post_form(
        &app,
        &owner.client,
        "/integrations/fixturecrm/deals",
        "/integrations/fixturecrm/deals",
        &[
            ("/fields", "deal_code"),
            ("/fields", "pipeline_stage"),
            ("/filters/0/field", "amount_cents"),
            ("/filters/0/op", "gt"),
            ("/filters/0/value", "1000"),
            ("/interval", "minutes"),
            ("/interval/minutes", "45"),
            ("/behaviour", "full"),
            ("/conflictPolicy", "skip"),
            ("/deletionPolicy", "ignore"),
            ("/initialSyncMode", "full_once"),
            ("/enabled", "true"),
        ],
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let rules: Value = owner
        .client
        .get_json(app.url("/api/integrations/fixturecrm/deals/rules"))
        .await;
    let rule = &rules[0]["rule"];
    assert_eq!(rule["fields"], json!(["deal_code", "pipeline_stage"]));
    assert_eq!(
        rule["filters"],
        json!([{"field": "amount_cents", "op": "gt", "value": 1000}])
    );
    assert_eq!(rule["interval"], json!({"minutes": 45}));
    assert_eq!(rule["conflictPolicy"], "skip");
    assert_eq!(rule["dryRun"], false);
    assert_eq!(rules[0]["revision"], 1);
    let form = owner
        .client
        .get_text(app.url("/integrations/fixturecrm/deals"))
        .await;
    assert!(form.contains("Revision 1"), "{form}");
    assert!(form.contains("name=\"/fields\" value=\"pipeline_stage\" checked"));

    // Render → post as a browser would → the same rule (a new revision).
    let posted = browser_post(&form, "rule-form");
    let res = owner
        .client
        .post(app.url("/integrations/fixturecrm/deals"))
        .form(&posted)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "{posted:?}");
    let again: Value = owner
        .client
        .get_json(app.url("/api/integrations/fixturecrm/deals/rules"))
        .await;
    assert_eq!(again[0]["revision"], 2);
    assert_eq!(again[0]["rule"], rules[0]["rule"], "{posted:?}");
    let form = owner
        .client
        .get_text(app.url("/integrations/fixturecrm/deals"))
        .await;
    assert!(form.contains("Revision 2"), "{form}");

    // `in` needs a list: refused at /filters/0/value, what was typed kept.
    let res = post_form(
        &app,
        &owner.client,
        "/integrations/fixturecrm/deals",
        "/integrations/fixturecrm/deals",
        &[
            ("revision", "2"),
            ("/filters/0/field", "pipeline_stage"),
            ("/filters/0/op", "in"),
            ("/filters/0/value", "won"),
            ("/interval", "minutes"),
            ("/interval/minutes", "45"),
            ("/behaviour", "full"),
            ("/enabled", "true"),
        ],
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = res.text().await.unwrap();
    assert!(
        html.contains("data-testid=\"error-/filters/0/value\""),
        "{html}"
    );
    assert!(
        html.contains("name=\"/filters/0/value\" type=\"text\" aria-label=\"Value\" value=\"won\""),
        "{html}"
    );
    assert!(html.contains("<option value=\"in\" selected>"));
    let rules: Value = owner
        .client
        .get_json(app.url("/api/integrations/fixturecrm/deals/rules"))
        .await;
    assert_eq!(rules[0]["revision"], 2, "nothing saved");
    app.stop().await;
}

async fn revision_conflicts_show_what_changed_and_reapply(backend: Backend) {
    let app = common::sandbox_app(
        backend,
        &[
            ("PLUGBOARD_SYNC_WORKERS", "0"),
            ("PLUGBOARD_PLANNER_INTERVAL_SECS", "0"),
        ],
    )
    .await;
    let owner = app.signup("owner@hub.test", "Hub").await;
    connect_sandbox(&app, &owner).await;
    let page = "/integrations/sandbox/projects";
    let fields = |revision: &'static str| -> Vec<(&'static str, &'static str)> {
        let mut f = vec![
            ("/interval", "cron"),
            ("/interval/cron", "0 */6 * * *"),
            ("/behaviour", "full"),
            ("/dryRun", "true"),
            ("/enabled", "true"),
        ];
        if !revision.is_empty() {
            f.push(("revision", revision));
        }
        f
    };
    let res = post_form(&app, &owner.client, page, page, &fields("")).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    // Someone else saves meanwhile (the API, last write wins): revision 2.
    let res = owner
        .client
        .put(app.url("/api/integrations/sandbox/projects/rules"))
        .json(&json!({"interval": {"minutes": 30}, "behaviour": "full"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    let res = post_form(&app, &owner.client, page, page, &fields("1")).await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    let html = res.text().await.unwrap();
    assert!(html.contains("data-testid=\"conflict\""), "{html}");
    assert!(html.contains("data-testid=\"changed-interval\""));
    assert!(html.contains("data-testid=\"changed-dryRun\""));
    assert!(!html.contains("data-testid=\"changed-behaviour\""));
    assert!(
        html.contains("name=\"revision\" value=\"2\""),
        "reapply over 2"
    );
    assert!(html.contains("value=\"0 */6 * * *\""), "your values kept");

    let res = post_form(&app, &owner.client, page, page, &fields("2")).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let rules: Value = owner
        .client
        .get_json(app.url("/api/integrations/sandbox/projects/rules"))
        .await;
    assert_eq!(rules[0]["revision"], 3);
    assert_eq!(rules[0]["rule"]["interval"], json!({"cron": "0 */6 * * *"}));
    assert_eq!(rules[0]["rule"]["dryRun"], true);
    // The cron's next three runs are previewed.
    let html = owner.client.get_text(app.url(page)).await;
    let runs = &html[html.find("data-testid=\"next-runs\"").unwrap()..];
    assert_eq!(
        runs[..runs.find("</ol>").unwrap()].matches("<li>").count(),
        3
    );
    // This form round-trips too: the same cron rule, one revision on.
    let posted = browser_post(&html, "rule-form");
    let res = owner
        .client
        .post(app.url(page))
        .form(&posted)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "{posted:?}");
    let again: Value = owner
        .client
        .get_json(app.url("/api/integrations/sandbox/projects/rules"))
        .await;
    assert_eq!(again[0]["revision"], 4);
    assert_eq!(again[0]["rule"], rules[0]["rule"]);
    app.stop().await;
}
