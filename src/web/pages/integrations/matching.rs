//! The Initial matching tab: a wizard, before the first enabled sync, that
//! pairs the provider's stored records with local projects or people. The
//! suggestions come grouped (matched, conflict, unmatched); the admin keeps
//! or changes each pair, or skips it, and submits them all at once — one
//! transaction (see `entities::matching::confirm`). What is left unmatched
//! follows the rule's conflict policy on the next sync.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::{Value, json};
use uuid::Uuid;

use super::object::{ObjectQuery, Tab, connection_param, tabs, target};
use crate::app::AppState;
use crate::auth::extract::CurrentTenant;
use crate::auth::session::{self, FlashKind};
use crate::entities::mapping;
use crate::entities::matching::{self, ConfirmInput, MatchStatus, Probe, Suggestion};
use crate::error::{AppError, AppResult};
use crate::input::FormFields;
use crate::rules::service as rules;
use crate::web::extract::{ApiQuery, CsrfForm, parse_json_pointer};
use crate::web::pages::kit::FormState;
use crate::web::pages::{Layout, with_status};

pub const SUFFIX: &str = "/matching";

/// Rows shown at once; the rest wait for the next round.
const MAX_ROWS: usize = 500;

/// One record of the wizard and the local record it is paired with.
pub struct Pair {
    pub index: usize,
    pub external_id: String,
    pub record: String,
    pub deleted: bool,
    /// The suggestion's entity ("" for none).
    pub suggested: String,
    /// How it was matched, or why it is a conflict.
    pub note: String,
    /// The form field of its choice: `/pairs/<index>/entityId`.
    pub field: String,
}

/// A group of the wizard: matched, conflict or unmatched.
pub struct Group {
    pub key: &'static str,
    pub title: &'static str,
    pub hint: &'static str,
    pub pairs: Vec<Pair>,
}

/// What the submit did.
pub struct Summary {
    pub matched: u64,
    pub changed: u64,
    pub skipped: u64,
    /// Linked to the suggested record / to another one.
    pub as_suggested: usize,
    pub changed_by_admin: usize,
    /// Left unmatched by the admin.
    pub left: usize,
}

#[derive(Template, WebTemplate)]
#[template(path = "integration_matching.html")]
pub struct MatchingPage {
    layout: Layout,
    provider_key: String,
    provider_name: String,
    object_key: String,
    object_label: String,
    tabs: Vec<Tab>,
    connection_id: Option<Uuid>,
    /// Why the wizard can't run (no connection, not an entity object,
    /// stale mapping).
    blocked: Option<String>,
    stale_mapping: bool,
    noun: String,
    target: String,
    entities_href: String,
    groups: Vec<Group>,
    /// (entity id, label) of the local records not linked yet.
    choices: Vec<(String, String)>,
    hidden: usize,
    /// The rule's conflict policy and whether it is enabled.
    policy: String,
    rule_enabled: bool,
    summary: Option<Summary>,
    form: FormState,
}

impl MatchingPage {
    fn total(&self) -> usize {
        self.groups.iter().map(|g| g.pairs.len()).sum()
    }

    fn policy_says(&self) -> &'static str {
        match self.policy.as_str() {
            "skip" => "they wait here for review: nothing is created or linked",
            "auto_create" => "each becomes a new local record",
            _ => "each is linked when one local record matches it exactly, otherwise created",
        }
    }
}

fn label(p: &Probe) -> String {
    let mut parts = Vec::new();
    if let Some(k) = &p.key {
        parts.push(k.clone());
    }
    parts.push(p.name.clone().unwrap_or_else(|| "(no name)".into()));
    if let Some(c) = &p.client {
        parts.push(c.clone());
    }
    parts.join(" · ")
}

fn note(s: &Suggestion) -> String {
    let by = s.matched_by.map_or("", |b| match b {
        matching::MatchedBy::Number => "the number",
        matching::MatchedBy::Email => "the email",
        matching::MatchedBy::NameAndClient => "name and client",
        matching::MatchedBy::Name => "the name",
    });
    match s.status {
        MatchStatus::Matched => format!("by {by}"),
        MatchStatus::Conflict => format!(
            "{} candidates by {by}: {}",
            s.candidates.len(),
            s.candidates
                .iter()
                .map(|c| label(&c.values))
                .collect::<Vec<_>>()
                .join("; ")
        ),
        MatchStatus::Unmatched => "no local record alike".into(),
    }
}

/// The suggestions in groups, numbered in the order shown.
fn groups(suggestions: Vec<Suggestion>) -> (Vec<Group>, usize) {
    let mut groups = vec![
        Group {
            key: "matched",
            title: "Matched",
            hint: "One local record matches; keep it, choose another, or skip.",
            pairs: Vec::new(),
        },
        Group {
            key: "conflict",
            title: "Conflicts",
            hint: "Several local records match (or the match is taken): choose one, or skip.",
            pairs: Vec::new(),
        },
        Group {
            key: "unmatched",
            title: "Unmatched",
            hint: "Nothing local matches: pick one, or leave it to the rule's policy.",
            pairs: Vec::new(),
        },
    ];
    let order = |s: &Suggestion| match s.status {
        MatchStatus::Matched => 0,
        MatchStatus::Conflict => 1,
        MatchStatus::Unmatched => 2,
    };
    let mut all = suggestions;
    all.sort_by_key(order);
    let hidden = all.len().saturating_sub(MAX_ROWS);
    for (index, s) in all.into_iter().take(MAX_ROWS).enumerate() {
        let pair = Pair {
            index,
            external_id: s.external_id.clone(),
            record: label(&s.record),
            deleted: s.deleted,
            suggested: s.entity_id.map(|id| id.to_string()).unwrap_or_default(),
            note: note(&s),
            field: format!("/pairs/{index}/entityId"),
        };
        if let Some(g) = groups.get_mut(order(&s)) {
            g.pairs.push(pair);
        }
    }
    (groups, hidden)
}

/// Each row's choice: the suggestion's, else skip.
fn suggested_values(groups: &[Group]) -> Vec<(String, String)> {
    groups
        .iter()
        .flat_map(|g| &g.pairs)
        .map(|p| (p.field.clone(), p.suggested.clone()))
        .collect()
}

async fn page(
    state: &AppState,
    current: &CurrentTenant,
    key: &str,
    object: &str,
    connection: Option<Uuid>,
    posted: Option<FormState>,
) -> AppResult<MatchingPage> {
    let tenant = &current.tenant;
    let t = target(state, tenant, key, object, connection).await?;
    let connection_id = t.connection.as_ref().map(|c| c.id);
    let mut page = MatchingPage {
        layout: Layout::signed_in(state, &current.session, &current.user, tenant).await?,
        provider_key: t.provider.meta.key.clone(),
        provider_name: t.provider.meta.display_name.clone(),
        object_key: t.object.key.clone(),
        object_label: t.object.label.clone(),
        tabs: tabs(key, object, connection_id, SUFFIX),
        connection_id,
        blocked: None,
        stale_mapping: false,
        noun: String::new(),
        target: String::new(),
        entities_href: String::new(),
        groups: Vec::new(),
        choices: Vec::new(),
        hidden: 0,
        policy: "upsert".into(),
        rule_enabled: false,
        summary: None,
        form: FormState::default(),
    };
    let kind = match mapping::entity_object(state, key, object) {
        Ok((_, _, kind)) => kind,
        Err(AppError::NotFound(_)) => {
            page.blocked = Some(format!(
                "{} records don't feed local projects or people: there is nothing to match.",
                t.object.label
            ));
            return Ok(page);
        }
        Err(e) => return Err(e),
    };
    page.noun = kind.noun().to_owned();
    page.target = kind.target().to_owned();
    page.entities_href = format!("/data/{}", kind.target());
    let Some(connection_id) = connection_id else {
        page.blocked = Some(format!(
            "Connect {} first: matching pairs a connection's records.",
            t.provider.meta.display_name
        ));
        return Ok(page);
    };
    if let Some(rule) = rules::list(state, tenant, key, object, Some(connection_id))
        .await?
        .into_iter()
        .next()
    {
        page.rule_enabled = rule
            .rule
            .get("enabled")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        if let Some(p) = rule.rule.get("conflictPolicy").and_then(Value::as_str) {
            page.policy = p.to_owned();
        }
    }
    let suggestions =
        match matching::suggestions(state, tenant, key, object, Some(connection_id)).await {
            Ok(s) => s,
            Err(AppError::Conflict { message, .. }) => {
                page.stale_mapping = true;
                page.blocked = Some(message);
                return Ok(page);
            }
            Err(e) => return Err(e),
        };
    page.choices = state
        .store
        .all_candidates(tenant.workspace_id, kind, key, object)
        .await?
        .into_iter()
        .filter(|c| !c.linked)
        .map(|c| (c.entity.id.to_string(), label(&Probe::of_entity(&c.entity))))
        .collect();
    page.choices.sort_by_key(|c| c.1.to_lowercase());
    let (groups, hidden) = groups(suggestions.suggestions);
    page.form = posted.unwrap_or_else(|| FormState::from_pairs(suggested_values(&groups)));
    page.groups = groups;
    page.hidden = hidden;
    Ok(page)
}

pub async fn matching_show(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path((key, object)): Path<(String, String)>,
    ApiQuery(query): ApiQuery<ObjectQuery>,
) -> AppResult<Response> {
    let connection = connection_param(query.connection.as_deref())?;
    Ok(page(&state, &current, &key, &object, connection, None)
        .await?
        .into_response())
}

/// One posted row: its record, the choice, the suggestion.
struct Posted {
    row: usize,
    external_id: String,
    entity_id: String,
    suggested: String,
}

fn posted_rows(pairs: &FormFields) -> Vec<Posted> {
    let value = |name: String| {
        pairs
            .first(&name)
            .map(|v| v.trim().to_owned())
            .unwrap_or_default()
    };
    (0..MAX_ROWS)
        .map_while(|row| {
            pairs
                .first(&format!("/pairs/{row}/externalId"))
                .map(|external| Posted {
                    row,
                    external_id: external.trim().to_owned(),
                    entity_id: value(format!("/pairs/{row}/entityId")),
                    suggested: value(format!("/pairs/{row}/suggested")),
                })
        })
        .collect()
}

/// `/pairs/<entry>/…` of the service as the form's select of that row.
fn form_field(pointer: &str, origin: &[usize]) -> Option<String> {
    let rest = pointer.strip_prefix("/pairs/")?;
    let (entry, _) = rest.split_once('/')?;
    let row = origin.get(entry.parse::<usize>().ok()?)?;
    Some(format!("/pairs/{row}/entityId"))
}

/// Submits every chosen pair at once; a bad one sends the wizard back
/// with the error at its row and every choice kept, nothing written.
pub async fn matching_confirm(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path((key, object)): Path<(String, String)>,
    form: CsrfForm<FormFields>,
) -> AppResult<Response> {
    let pairs = &form.form;
    let connection = connection_param(pairs.first("connectionId").map(|v| v.as_str()))?;
    let t = target(&state, &current.tenant, &key, &object, connection).await?;
    let connection_id = t.connection.as_ref().map(|c| c.id);
    let rows = posted_rows(pairs);
    let chosen: Vec<&Posted> = rows.iter().filter(|r| !r.entity_id.is_empty()).collect();
    let origin: Vec<usize> = chosen.iter().map(|r| r.row).collect();
    let body = json!({
        "connectionId": connection_id,
        "pairs": chosen.iter().map(|r| json!({"externalId": r.external_id, "entityId": r.entity_id})).collect::<Vec<_>>(),
    });
    let result = if chosen.is_empty() {
        Err(AppError::validation(
            "/pairs",
            "Nothing to confirm: every record is skipped. Choose a local record for at least one, or leave them all to the rule's policy.",
        ))
    } else {
        match serde_json::to_vec(&body) {
            Ok(bytes) => match parse_json_pointer::<ConfirmInput>(&bytes) {
                Ok(input) => {
                    matching::confirm(&state, &current.tenant, &key, &object, &input).await
                }
                Err(e) => Err(e),
            },
            Err(e) => Err(AppError::internal(e)),
        }
    };
    let kept: Vec<(String, String)> = rows
        .iter()
        .map(|r| (format!("/pairs/{}/entityId", r.row), r.entity_id.clone()))
        .collect();
    let err = match result {
        Ok(done) => {
            let summary = Summary {
                matched: done.matched,
                changed: done.changed,
                skipped: done.skipped,
                as_suggested: chosen.iter().filter(|r| r.entity_id == r.suggested).count(),
                changed_by_admin: chosen.iter().filter(|r| r.entity_id != r.suggested).count(),
                left: rows.len().saturating_sub(chosen.len()),
            };
            session::flash(
                &form.session,
                FlashKind::Success,
                format!(
                    "Matching saved: {} linked, {} skipped as already linked.",
                    done.matched, done.skipped
                ),
            )
            .await?;
            let mut page = page(&state, &current, &key, &object, connection_id, None).await?;
            page.summary = Some(summary);
            return Ok(page.into_response());
        }
        Err(
            err @ (AppError::Validation { .. }
            | AppError::BadRequest { .. }
            | AppError::Conflict { .. }
            | AppError::NotFound(_)),
        ) => err,
        Err(err) => return Err(err),
    };
    let state_form = FormState::from_pairs(kept).with_error_at(&err, |p| form_field(p, &origin));
    let status = err.status();
    let page = page(
        &state,
        &current,
        &key,
        &object,
        connection_id,
        Some(state_form),
    )
    .await?;
    Ok(with_status(status, page))
}

/// "Fetch records": a sync that stores the records and changes nothing
/// local, so there is something to match before the rule runs.
pub async fn matching_fetch(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path((key, object)): Path<(String, String)>,
    form: CsrfForm<FormFields>,
) -> AppResult<Response> {
    let connection = connection_param(form.form.first("connectionId").map(|v| v.as_str()))?;
    let t = target(&state, &current.tenant, &key, &object, connection).await?;
    let connection_id = t.connection.as_ref().map(|c| c.id);
    let back = match connection_id {
        Some(id) => format!("/integrations/{key}/{object}{SUFFIX}?connection={id}"),
        None => format!("/integrations/{key}/{object}{SUFFIX}"),
    };
    let (kind, message) = match matching::fetch_for_matching(
        &state,
        &current.tenant,
        &key,
        &object,
        connection_id,
    )
    .await
    {
        Ok(job) => (
            FlashKind::Success,
            format!(
                "Fetching {} records (job {job}); local records are not changed. Reload this tab when the job has finished.",
                t.object.label
            ),
        ),
        Err(e @ (AppError::Unavailable(_) | AppError::Conflict { .. } | AppError::NotFound(_))) => {
            (FlashKind::Error, e.to_string())
        }
        Err(e) => return Err(e),
    };
    session::flash(&form.session, kind, message).await?;
    Ok(Redirect::to(&back).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_pointers_name_the_row() {
        let origin = [2, 5];
        assert_eq!(
            form_field("/pairs/1/externalId", &origin).as_deref(),
            Some("/pairs/5/entityId")
        );
        assert_eq!(
            form_field("/pairs/0/entityId", &origin).as_deref(),
            Some("/pairs/2/entityId")
        );
        assert_eq!(form_field("/pairs/7/entityId", &origin), None);
        assert_eq!(form_field("/pairs", &origin), None);
    }
}
