//! Settings → Service keys (admins).

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};

use super::kit::{ConfirmPage, Confirmation, FormState, Table, TableQuery};
use super::{Layout, ShownOnce, parse_path_id, redirect_with_outcome, with_status};
use crate::app::AppState;
use crate::auth::extract::CurrentTenant;
use crate::error::{AppError, AppResult};
use crate::input::{FormFields, Name};
use crate::servicekeys::Scope;
use crate::servicekeys::service;
use crate::servicekeys::store::ServiceKeyRecord;
use crate::tenancy::Member;
use crate::web::extract::CsrfForm;

const BACK: &str = "/settings/keys";

#[derive(Template, WebTemplate)]
#[template(path = "keys.html")]
pub struct KeysPage {
    layout: Layout,
    workspace_name: String,
    keys: Vec<ServiceKeyRecord>,
    table: Table,
    all_scopes: Vec<&'static str>,
    shown_once: Option<ShownOnce>,
    form: FormState,
    /// The scopes ticked in a form that came back with an error.
    checked: Vec<String>,
    /// Members' names by id, for the Created by column.
    members: Vec<Member>,
}
const PAGE_SIZE: usize = 25;

type KeyOrder = fn(&ServiceKeyRecord, &ServiceKeyRecord) -> std::cmp::Ordering;
const KEY_COLUMNS: [(&str, KeyOrder); 3] = [
    ("name", |a, b| {
        a.name.to_lowercase().cmp(&b.name.to_lowercase())
    }),
    ("created", |a, b| a.created_at.cmp(&b.created_at)),
    ("last_used", |a, b| a.last_used_at.cmp(&b.last_used_at)),
];

impl KeysPage {
    fn is_checked(&self, scope: &str) -> bool {
        self.checked.iter().any(|s| s == scope)
    }

    /// Who created the key: a member's name, or why there is none.
    fn creator_of(&self, k: &ServiceKeyRecord) -> String {
        match k.created_by {
            None => "—".to_owned(),
            Some(id) => self
                .members
                .iter()
                .find(|m| m.user_id == id)
                .map_or_else(|| "former member".to_owned(), |m| m.name.clone()),
        }
    }

    fn scopes_of(&self, k: &ServiceKeyRecord) -> String {
        k.scopes
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The keys page, with a key just created shown once in it.
async fn render(
    state: &AppState,
    current: CurrentTenant,
    query: &TableQuery,
    shown_once: Option<ShownOnce>,
) -> AppResult<Response> {
    render_form(
        state,
        current,
        query,
        shown_once,
        FormState::default(),
        Vec::new(),
    )
    .await
}

async fn render_form(
    state: &AppState,
    current: CurrentTenant,
    query: &TableQuery,
    shown_once: Option<ShownOnce>,
    form: FormState,
    checked: Vec<String>,
) -> AppResult<Response> {
    current.tenant.require_admin("manage service keys")?;
    let CurrentTenant {
        user,
        session,
        tenant,
    } = current;
    let mut keys = state.store.list_service_keys(tenant.workspace_id).await?;
    let table = Table::apply(query, &KEY_COLUMNS, "created", PAGE_SIZE, &mut keys);
    Ok(KeysPage {
        layout: Layout::signed_in(state, &session, &user, &tenant).await?,
        workspace_name: tenant.workspace_name.clone(),
        keys,
        table,
        all_scopes: Scope::ALL.iter().map(|s| s.as_str()).collect(),
        shown_once,
        form,
        checked,
        members: state.store.list_members(tenant.workspace_id).await?,
    }
    .into_response())
}

pub async fn page(
    State(state): State<AppState>,
    current: CurrentTenant,
    Query(query): Query<TableQuery>,
) -> AppResult<Response> {
    render(&state, current, &query, None).await
}

/// The new key is in this response only: never in the session. A bad name
/// or scope choice re-renders the form (422) with the error beside it and
/// what was typed and ticked kept.
pub async fn create(
    State(state): State<AppState>,
    current: CurrentTenant,
    form: CsrfForm<FormFields>,
) -> AppResult<Response> {
    let typed_name = form.form.first("name").map(|v| v.as_str()).unwrap_or("");
    let scopes: Vec<String> = form.form.all("scope").map(|v| v.to_string()).collect();
    let outcome = match Name::parse(typed_name) {
        Ok(name) => service::create(&state.store, &current.tenant, &name, &scopes).await,
        Err(problem) => Err(AppError::validation("name", problem)),
    };
    match outcome {
        Ok(created) => {
            let shown = ShownOnce {
                message: format!(
                    "Key {} created. Copy it now; it won't be shown again:",
                    created.name
                ),
                value: created.key,
                label: "New service key",
                testid: "new-key",
            };
            render(&state, current, &TableQuery::default(), Some(shown)).await
        }
        Err(err @ (AppError::Validation { .. } | AppError::Conflict { .. })) => {
            // `scopes[2]` and the like belong to the scopes fieldset.
            let typed = match &err {
                AppError::Validation {
                    field: Some(f),
                    message,
                } if f.starts_with("scopes") => FormState::with_values([("name", typed_name)])
                    .with_error(
                        &AppError::validation("scopes", message.clone()),
                        &["scopes"],
                    ),
                other => FormState::with_values([("name", typed_name)])
                    .with_error(other, &["name", "scopes"]),
            };
            let status = err.status();
            let page =
                render_form(&state, current, &TableQuery::default(), None, typed, scopes).await?;
            Ok(with_status(status, page))
        }
        Err(err) => redirect_with_outcome(&form.session, BACK, Err(err)).await,
    }
}

pub async fn revoke(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path(id): Path<String>,
    form: CsrfForm<Confirmation>,
) -> AppResult<Response> {
    let id = parse_path_id(&id, "service key")?;
    if !form.form.given() {
        current.tenant.require_admin("manage service keys")?;
        let key = state
            .store
            .list_service_keys(current.tenant.workspace_id)
            .await?
            .into_iter()
            .find(|k| k.id == id && k.revoked_at.is_none())
            .ok_or_else(|| AppError::not_found("service key not found"))?;
        let layout =
            Layout::signed_in(&state, &form.session, &current.user, &current.tenant).await?;
        let message = format!(
            "Automations using {} ({}…) are refused from now on. This can't be undone.",
            key.name, key.prefix
        );
        let action = format!("{BACK}/{id}/revoke");
        return Ok(ConfirmPage::new(layout, "Revoke key", message, action, BACK).render());
    }
    let outcome = service::revoke(&state.store, &current.tenant, id).await;
    redirect_with_outcome(
        &form.session,
        BACK,
        outcome.map(|()| "Key revoked.".to_owned()),
    )
    .await
}
