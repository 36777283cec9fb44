//! The Mapping tab of an object page: each provider field against the
//! local field it feeds, with its policy. Rows come from the object's
//! catalog and the choices from the entity's columns, so a field added to
//! a provider.json shows up here with no code change. A mapping made
//! against other provider fields is shown as a diff until saved again.

use std::collections::BTreeMap;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::Value;
use uuid::Uuid;

use super::object::{ObjectQuery, Tab, connection_param, tabs, target};
use crate::app::AppState;
use crate::audit::AuditFilter;
use crate::auth::extract::CurrentTenant;
use crate::auth::session::{self, FlashKind};
use crate::entities::mapping::{self, EffectiveMapping, MappingInput};
use crate::entities::{EntityKind, FieldPolicy};
use crate::error::{AppError, AppResult};
use crate::input::FormFields;
use crate::providers::ObjectMeta;
use crate::tenancy::Tenant;
use crate::web::extract::{ApiQuery, CsrfForm, parse_json_pointer};
use crate::web::pages::kit::FormState;
use crate::web::pages::{Layout, with_status};

pub const SUFFIX: &str = "/mapping";

/// How far back the audit log is read for the mapping's last save.
const AUDIT_LOOKBACK: i64 = 200;

/// One provider field of the form.
pub struct Row {
    pub index: usize,
    pub source: String,
    /// "string, nullable, identifier".
    pub about: String,
    /// The local field the provider's metadata maps it to, if any.
    pub default_target: String,
}

impl Row {
    pub fn target_name(&self) -> String {
        format!("/fields/{}/target", self.index)
    }
    pub fn policy_name(&self) -> String {
        format!("/fields/{}/policy", self.index)
    }
}

/// What changed in the provider's fields since the mapping was saved.
pub struct StaleDiff {
    /// (field, before, now, change) — "added", "removed" or "changed".
    pub rows: Vec<(String, String, String, &'static str)>,
    /// Sources whose mapping entries were dropped because they are gone.
    pub dropped: Vec<String>,
    pub saved_hash: String,
    pub current_hash: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "integration_mapping.html")]
pub struct MappingPage {
    layout: Layout,
    provider_key: String,
    provider_name: String,
    object_key: String,
    object_label: String,
    tabs: Vec<Tab>,
    connection_id: Option<Uuid>,
    /// Why there is nothing to map (a metrics object).
    not_mapped: Option<String>,
    target: String,
    entities_href: String,
    rows: Vec<Row>,
    targets: Vec<&'static str>,
    policies: Vec<&'static str>,
    version: i32,
    is_default: bool,
    stale: Option<StaleDiff>,
    form: FormState,
}

fn describe(f: &Value) -> String {
    let mut parts = vec![f["type"].as_str().unwrap_or("?").to_owned()];
    if f["nullable"].as_bool() == Some(true) {
        parts.push("nullable".into());
    }
    if f["identifier"].as_bool() == Some(true) {
        parts.push("identifier".into());
    }
    parts.join(", ")
}

fn rows(o: &ObjectMeta) -> Vec<Row> {
    let snapshot = mapping::catalog_snapshot(o);
    let defaults: BTreeMap<&str, &str> = o
        .mapping_defaults
        .iter()
        .flat_map(|d| &d.fields)
        .map(|f| (f.source.as_str(), f.target.as_str()))
        .collect();
    o.fields
        .iter()
        .zip(snapshot.as_array().into_iter().flatten())
        .enumerate()
        .map(|(index, (f, snap))| Row {
            index,
            source: f.name.clone(),
            about: describe(snap),
            default_target: defaults
                .get(f.name.as_str())
                .map(|t| (*t).to_owned())
                .unwrap_or_default(),
        })
        .collect()
}

/// The form's values for a mapping: each row's target and policy.
fn values(rows: &[Row], m: &EffectiveMapping) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for r in rows {
        let entry = m.fields.iter().find(|f| f.source == r.source);
        out.push((
            r.target_name(),
            entry.map(|f| f.target.clone()).unwrap_or_default(),
        ));
        out.push((
            r.policy_name(),
            entry
                .map_or(FieldPolicy::default(), |f| f.policy)
                .as_str()
                .to_owned(),
        ));
    }
    out
}

/// The newest audit entry of `action` about this mapping.
async fn last_audit(
    state: &AppState,
    tenant: &Tenant,
    action: &str,
    target_id: &str,
) -> AppResult<Option<Value>> {
    let filter = AuditFilter {
        action: Some(action),
        ..AuditFilter::default()
    };
    let (entries, _) = state
        .store
        .search_audit(tenant.workspace_id, &filter, AUDIT_LOOKBACK, 0)
        .await?;
    Ok(entries
        .into_iter()
        .find(|e| {
            e.target_type.as_deref() == Some("mapping") && e.target_id.as_deref() == Some(target_id)
        })
        .map(|e| e.details.0))
}

/// Compares the fields the mapping was saved against (kept with its save
/// in the audit log) with the catalog now.
async fn stale_diff(
    state: &AppState,
    tenant: &Tenant,
    o: &ObjectMeta,
    m: &EffectiveMapping,
) -> AppResult<StaleDiff> {
    let id = format!("{}/{}", m.provider, m.object);
    let by_name = |list: &Value| -> BTreeMap<String, String> {
        list.as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| Some((f["name"].as_str()?.to_owned(), describe(f))))
            .collect()
    };
    let now = by_name(&mapping::catalog_snapshot(o));
    let saved = last_audit(state, tenant, "mapping.save", &id).await?;
    let before = saved
        .as_ref()
        .and_then(|d| d.get("catalog"))
        .filter(|c| c.is_array())
        .map(&by_name);
    let dropped: Vec<String> = last_audit(state, tenant, "mapping.stale", &id)
        .await?
        .and_then(|d| d.get("dropped").cloned())
        .and_then(|d| serde_json::from_value(d).ok())
        .unwrap_or_default();
    let mut rows = Vec::new();
    if let Some(before) = before {
        let mut names: Vec<&String> = before.keys().chain(now.keys()).collect();
        names.sort();
        names.dedup();
        for n in names {
            let change = match (before.get(n), now.get(n)) {
                (None, Some(_)) => "added",
                (Some(_), None) => "removed",
                (Some(a), Some(b)) if a != b => "changed",
                _ => continue,
            };
            let show = |v: Option<&String>| v.cloned().unwrap_or_else(|| "—".into());
            rows.push((n.clone(), show(before.get(n)), show(now.get(n)), change));
        }
    } else {
        // Saved before snapshots were kept: what is known is what went.
        for d in &dropped {
            rows.push((d.clone(), "mapped".into(), "—".into(), "removed"));
        }
    }
    Ok(StaleDiff {
        rows,
        dropped,
        saved_hash: m.saved_field_signature_hash.clone().unwrap_or_default(),
        current_hash: m.field_signature_hash.clone(),
    })
}

async fn page(
    state: &AppState,
    current: &CurrentTenant,
    key: &str,
    object: &str,
    connection: Option<Uuid>,
    posted: Option<FormState>,
) -> AppResult<MappingPage> {
    let t = target(state, &current.tenant, key, object, connection).await?;
    let layout = Layout::signed_in(state, &current.session, &current.user, &current.tenant).await?;
    let mut page = MappingPage {
        layout,
        provider_key: t.provider.meta.key.clone(),
        provider_name: t.provider.meta.display_name.clone(),
        object_key: t.object.key.clone(),
        object_label: t.object.label.clone(),
        tabs: tabs(key, object, t.connection.as_ref().map(|c| c.id), SUFFIX),
        connection_id: t.connection.as_ref().map(|c| c.id),
        not_mapped: None,
        target: String::new(),
        entities_href: String::new(),
        rows: Vec::new(),
        targets: Vec::new(),
        policies: FieldPolicy::ALL.map(FieldPolicy::as_str).to_vec(),
        version: 0,
        is_default: true,
        stale: None,
        form: FormState::default(),
    };
    let kind = match mapping::entity_object(state, key, object) {
        Ok((_, _, kind)) => kind,
        Err(AppError::NotFound(_)) => {
            page.not_mapped = Some(format!(
                "{} records are stored as they come; they don't feed local projects or people, so there is nothing to map.",
                t.object.label
            ));
            return Ok(page);
        }
        Err(e) => return Err(e),
    };
    let ws = current.tenant.workspace_id;
    let mut m = mapping::effective(state, ws, key, object).await?;
    if m.stale {
        // Mark it as a job would (entries whose field is gone are dropped,
        // audited), so the page shows what the object is blocked on.
        let _ = mapping::ensure_mapping_current(state, ws, key, object).await;
        m = mapping::effective(state, ws, key, object).await?;
        page.stale = Some(stale_diff(state, &current.tenant, t.object, &m).await?);
    }
    page.rows = rows(t.object);
    page.form = posted.unwrap_or_else(|| FormState::from_pairs(values(&page.rows, &m)));
    page.target = m.target.to_owned();
    page.entities_href = match kind {
        EntityKind::Project => "/data/projects".into(),
        EntityKind::Person => "/data/people".into(),
    };
    page.targets = m.target_fields.to_vec();
    page.version = m.version;
    page.is_default = m.is_default;
    Ok(page)
}

pub async fn mapping_show(
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

/// The posted rows that map to something, as the API's body, and which
/// form row each entry came from (errors name the entry).
fn body(o: &ObjectMeta, pairs: &FormFields) -> (Value, Vec<usize>) {
    let mut fields = Vec::new();
    let mut origin = Vec::new();
    for (index, f) in o.fields.iter().enumerate() {
        let value = |what: &str| {
            pairs
                .first(&format!("/fields/{index}/{what}"))
                .map(|v| v.trim().to_owned())
                .unwrap_or_default()
        };
        let target = value("target");
        if target.is_empty() {
            continue;
        }
        let policy = value("policy");
        let mut entry = serde_json::Map::new();
        entry.insert("source".to_owned(), Value::from(f.name.clone()));
        entry.insert("target".to_owned(), Value::from(target));
        if !policy.is_empty() {
            entry.insert("policy".to_owned(), Value::from(policy));
        }
        let entry = Value::Object(entry);
        fields.push(entry);
        origin.push(index);
    }
    let mut body = serde_json::Map::new();
    body.insert("fields".to_owned(), Value::Array(fields));
    if let Some(v) = pairs
        .first("version")
        .and_then(|v| v.trim().parse::<i32>().ok())
    {
        body.insert("version".to_owned(), Value::from(v));
    }
    let body = Value::Object(body);
    (body, origin)
}

/// `/fields/<entry>/<what>` of the API as the form's field name.
fn form_field(pointer: &str, origin: &[usize]) -> Option<String> {
    let rest = pointer.strip_prefix("/fields/")?;
    let (entry, what) = rest.split_once('/')?;
    let row = origin.get(entry.parse::<usize>().ok()?)?;
    let what = match what {
        "source" | "target" => "target",
        "policy" => "policy",
        _ => return None,
    };
    Some(format!("/fields/{row}/{what}"))
}

/// Saves the mapping as `PUT …/mapping` does; an error comes back at the
/// row and field it names, with everything typed kept.
pub async fn mapping_save(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path((key, object)): Path<(String, String)>,
    form: CsrfForm<FormFields>,
) -> AppResult<Response> {
    let pairs = &form.form;
    let connection = connection_param(pairs.first("connectionId").map(|v| v.as_str()))?;
    let t = target(&state, &current.tenant, &key, &object, connection).await?;
    let (body, origin) = body(t.object, pairs);
    let saved = match serde_json::to_vec(&body) {
        Ok(bytes) => match parse_json_pointer::<MappingInput>(&bytes) {
            Ok(input) => mapping::save(&state, &current.tenant, &key, &object, &input).await,
            Err(e) => Err(e),
        },
        Err(e) => Err(AppError::internal(e)),
    };
    let err = match saved {
        Ok(m) => {
            let message = format!(
                "Mapping saved (version {}): {} field(s) feed {}.",
                m.version,
                m.fields.len(),
                m.target
            );
            session::flash(&form.session, FlashKind::Success, message).await?;
            let back = match &t.connection {
                Some(c) => format!("/integrations/{key}/{object}{SUFFIX}?connection={}", c.id),
                None => format!("/integrations/{key}/{object}{SUFFIX}"),
            };
            return Ok(Redirect::to(&back).into_response());
        }
        Err(
            err @ (AppError::Validation { .. }
            | AppError::BadRequest { .. }
            | AppError::Conflict { .. }),
        ) => err,
        Err(err) => return Err(err),
    };
    let kept: Vec<(String, String)> = pairs
        .iter()
        .filter(|(k, _)| k.starts_with("/fields/"))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let state_form = FormState::from_pairs(kept).with_error_at(&err, |p| form_field(p, &origin));
    let status = err.status();
    let page = page(
        &state,
        &current,
        &key,
        &object,
        t.connection.as_ref().map(|c| c.id),
        Some(state_form),
    )
    .await?;
    Ok(with_status(status, page))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_pointers_name_the_form_row() {
        // Rows 0 and 3 were posted as entries 0 and 1.
        let origin = [0, 3];
        assert_eq!(
            form_field("/fields/1/target", &origin).as_deref(),
            Some("/fields/3/target")
        );
        assert_eq!(
            form_field("/fields/0/policy", &origin).as_deref(),
            Some("/fields/0/policy")
        );
        assert_eq!(form_field("/fields/2/target", &origin), None);
        assert_eq!(form_field("/fields", &origin), None);
        assert_eq!(form_field("/fields/x/target", &origin), None);
    }
}
