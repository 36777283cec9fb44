//! The Rule tab of an object page: the sync rule form, rendered from
//! `rule.schema.json` and the object's catalog.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::{Value, json};
use uuid::Uuid;

use super::object::{ObjectQuery, Tab, connection_param, tabs, target};
use super::{ObjectRow, RULE_SCHEMA};
use crate::app::AppState;
use crate::auth::extract::CurrentTenant;
use crate::auth::session::{self, FlashKind};
use crate::error::{AppError, AppResult};
use crate::input::FormFields;
use crate::providers::ObjectMeta;
use crate::rules::planner::upcoming;
use crate::rules::service as rules;
use crate::rules::{Interval, RuleInput};
use crate::web::extract::{ApiQuery, CsrfForm, parse_json_pointer};
use crate::web::pages::kit::FormState;
use crate::web::pages::{Layout, with_status};
use crate::web::schema_form::{Options, SchemaForm};

/// A revision conflict: what the stored rule says now against what was sent.
pub struct Conflict {
    pub current_revision: i32,
    /// (field, stored value, your value) for each field that differs.
    pub changes: Vec<(String, String, String)>,
}

#[derive(Template, WebTemplate)]
#[template(path = "integration_object.html")]
pub struct ObjectPage {
    layout: Layout,
    provider_key: String,
    provider_name: String,
    object: ObjectRow,
    connection_id: Option<Uuid>,
    connections: Vec<(Uuid, String)>,
    revision: Option<i32>,
    schema_form: SchemaForm,
    form: FormState,
    next_runs: Vec<String>,
    conflict: Option<Conflict>,
    tabs: Vec<Tab>,
}

impl ObjectPage {
    fn is_current(&self, id: &Uuid) -> bool {
        self.connection_id.as_ref() == Some(id)
    }
}

/// The rule form for `object`: the schema, with the object's field names
/// offered wherever a field is named, and sub-records disabled where the
/// object reads parents only.
fn rule_form(o: &ObjectMeta, doc: &Value) -> SchemaForm {
    let names: Vec<String> = o.fields.iter().map(|f| f.name.clone()).collect();
    let options = Options::from([
        ("/fields".to_owned(), names.clone()),
        ("/filters/*/field".to_owned(), names),
    ]);
    let mut form = SchemaForm::build(&RULE_SCHEMA, &options, doc);
    if let Some(p) = o.filters.as_ref().and_then(|f| f.parent_only.as_ref()) {
        form.disable(
            "/includeSubprojects",
            &format!("{} reads parents only: {}", o.label, p.description),
        );
    }
    form
}

fn default_rule(o: &ObjectMeta) -> Value {
    json!({
        "interval": {"minutes": 60},
        "behaviour": if o.supports_delta() { "delta" } else { "full" },
    })
}

fn preview(layout: &Layout, doc: &Value) -> Vec<String> {
    doc.get("interval")
        .cloned()
        .and_then(|i| serde_json::from_value::<Interval>(i).ok())
        .map(|i| {
            upcoming(&i, crate::storage::now(), 3)
                .iter()
                .map(|t| layout.zone.at(t))
                .collect()
        })
        .unwrap_or_default()
}

pub async fn object_show(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path((key, object)): Path<(String, String)>,
    ApiQuery(query): ApiQuery<ObjectQuery>,
) -> AppResult<Response> {
    let connection = connection_param(query.connection.as_deref())?;
    let t = target(&state, &current.tenant, &key, &object, connection).await?;
    let existing = match &t.connection {
        Some(c) => rules::list(&state, &current.tenant, &key, &object, Some(c.id))
            .await?
            .into_iter()
            .next(),
        None => None,
    };
    let doc = existing
        .as_ref()
        .map_or_else(|| default_rule(t.object), |r| r.rule.clone());
    let schema_form = rule_form(t.object, &doc);
    let form = FormState::from_pairs(schema_form.values(&doc));
    let layout =
        Layout::signed_in(&state, &current.session, &current.user, &current.tenant).await?;
    Ok(ObjectPage {
        next_runs: preview(&layout, &doc),
        layout,
        provider_key: t.provider.meta.key.clone(),
        provider_name: t.provider.meta.display_name.clone(),
        object: ObjectRow::of(t.object),
        connection_id: t.connection.as_ref().map(|c| c.id),
        connections: t.connections,
        revision: existing.map(|r| r.revision),
        schema_form,
        form,
        conflict: None,
        tabs: tabs(&key, &object, t.connection.as_ref().map(|c| c.id), ""),
    }
    .into_response())
}

/// Saves the rule the way `PUT /api/integrations/{provider}/{object}/rules`
/// does; errors go back to the field their JSON pointer names.
pub async fn object_save(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path((key, object)): Path<(String, String)>,
    form: CsrfForm<FormFields>,
) -> AppResult<Response> {
    let pairs = &form.form;
    let connection = connection_param(pairs.first("connectionId").map(|v| v.as_str()))?;
    let t = target(&state, &current.tenant, &key, &object, connection).await?;
    let posted: Vec<(String, String)> = pairs
        .iter()
        .filter(|(k, _)| k.starts_with('/'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    // Built twice: the posted form decides how many filter rows it had.
    let blank = rule_form(
        t.object,
        &json!({"filters": vec![Value::Null; posted_rows(&posted)]}),
    );
    let doc = blank.parse(&posted);
    let mut body = doc.clone();
    if let Some(obj) = body.as_object_mut() {
        if let Some(c) = &t.connection {
            obj.insert("connectionId".into(), Value::from(c.id.to_string()));
        }
        if let Some(r) = pairs
            .first("revision")
            .and_then(|r| r.trim().parse::<u32>().ok())
        {
            obj.insert("revision".into(), Value::from(r));
        }
    }
    let saved = match serde_json::to_vec(&body) {
        Ok(bytes) => match parse_json_pointer::<RuleInput>(&bytes) {
            Ok(input) => rules::save(&state, &current.tenant, &key, &object, input).await,
            Err(e) => Err(e),
        },
        Err(e) => Err(AppError::internal(e)),
    };
    let back = match &t.connection {
        Some(c) => format!("/integrations/{key}/{object}?connection={}", c.id),
        None => format!("/integrations/{key}/{object}"),
    };
    let err = match saved {
        Ok(saved) => {
            let mut message = format!("Rule saved (revision {}).", saved.view.revision);
            for a in &saved.adjusted {
                message.push_str(&format!(" {}: {}.", a.field, a.message));
            }
            session::flash(&form.session, FlashKind::Success, message).await?;
            return Ok(Redirect::to(&back).into_response());
        }
        Err(
            err @ (AppError::Validation { .. }
            | AppError::BadRequest { .. }
            | AppError::Conflict { .. }),
        ) => err,
        Err(err) => return Err(err),
    };
    let schema_form = rule_form(t.object, &doc);
    let mut state_form = FormState::from_pairs(schema_form.values(&doc));
    let status = err.status();
    let mut conflict = None;
    let mut revision = pairs
        .first("revision")
        .and_then(|r| r.trim().parse::<i32>().ok());
    match &err {
        AppError::Conflict { field, message } if field.as_deref() == Some("revision") => {
            let current_rule = match &t.connection {
                Some(c) => rules::list(&state, &current.tenant, &key, &object, Some(c.id))
                    .await?
                    .into_iter()
                    .next(),
                None => None,
            };
            if let Some(r) = current_rule {
                conflict = Some(Conflict {
                    current_revision: r.revision,
                    changes: differences(&r.rule, &doc),
                });
                // Saving again applies this version over the current one.
                revision = Some(r.revision);
            }
            state_form.message = Some(message.clone());
        }
        AppError::Validation {
            field: Some(pointer),
            message,
        }
        | AppError::BadRequest {
            field: Some(pointer),
            message,
        } => match schema_form.field_for_pointer(pointer) {
            Some(name) => state_form = state_form.with_field_error(&name, message.clone()),
            None => state_form.message = Some(format!("{pointer}: {message}")),
        },
        other => state_form.message = Some(other.to_string()),
    }
    let layout =
        Layout::signed_in(&state, &current.session, &current.user, &current.tenant).await?;
    let page = ObjectPage {
        next_runs: preview(&layout, &doc),
        layout,
        provider_key: t.provider.meta.key.clone(),
        provider_name: t.provider.meta.display_name.clone(),
        object: ObjectRow::of(t.object),
        connection_id: t.connection.as_ref().map(|c| c.id),
        connections: t.connections,
        revision,
        schema_form,
        form: state_form,
        conflict,
        tabs: tabs(&key, &object, t.connection.as_ref().map(|c| c.id), ""),
    };
    Ok(with_status(status, page))
}

/// How many filter rows the posted form had (`/filters/<i>/…`), never more
/// than the schema allows (the index is the sender's to make up).
fn posted_rows(posted: &[(String, String)]) -> usize {
    let max = RULE_SCHEMA
        .pointer("/properties/filters/maxItems")
        .and_then(Value::as_u64)
        .and_then(|m| usize::try_from(m).ok())
        .unwrap_or(50);
    let rows = posted
        .iter()
        .filter_map(|(k, _)| {
            k.strip_prefix("/filters/")?
                .split('/')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .max()
        .map_or(0, |m| m.saturating_add(1))
        // Row `m` exists; `build` adds the blank row after the last.
        .saturating_sub(1);
    rows.min(max)
}

/// The rule's top-level fields whose stored value differs from the one sent
/// (a field the form left out takes its default, and is not a change).
fn differences(stored: &Value, sent: &Value) -> Vec<(String, String, String)> {
    let empty = serde_json::Map::new();
    let a = stored.as_object().unwrap_or(&empty);
    let b = sent.as_object().unwrap_or(&empty);
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| b.contains_key(*k) && a.get(*k) != b.get(*k))
        .map(|k| {
            let show = |v: Option<&Value>| v.map_or_else(|| "—".to_owned(), Value::to_string);
            (k.clone(), show(a.get(k)), show(b.get(k)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn posted_rows_count_the_filled_rows() {
        let p = |names: &[&str]| -> Vec<(String, String)> {
            names
                .iter()
                .map(|n| ((*n).to_owned(), "x".to_owned()))
                .collect()
        };
        assert_eq!(posted_rows(&p(&["/behaviour"])), 0);
        assert_eq!(posted_rows(&p(&["/filters/0/field"])), 0);
        assert_eq!(posted_rows(&p(&["/filters/0/field", "/filters/2/op"])), 2);
        assert_eq!(posted_rows(&p(&["/filters/999999999999/op"])), 50);
    }

    #[test]
    fn conflicts_list_what_changed() {
        let stored = json!({"behaviour": "full", "dryRun": false, "interval": {"minutes": 30}});
        let sent = json!({"behaviour": "full", "dryRun": true, "interval": {"minutes": 30}});
        assert_eq!(
            differences(&stored, &sent),
            vec![("dryRun".to_owned(), "false".to_owned(), "true".to_owned())]
        );
    }
}
