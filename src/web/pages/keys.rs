//! Settings → Service keys (admins).

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};

use super::kit::{ConfirmPage, Confirmation, FormState, Table, TableQuery};
use super::{Layout, parse_path_id, redirect_with_outcome};
use crate::app::AppState;
use crate::auth::extract::CurrentTenant;
use crate::auth::session::{self, FlashKind};
use crate::error::{AppError, AppResult};
use crate::servicekeys::Scope;
use crate::servicekeys::service;
use crate::servicekeys::store::ServiceKeyRecord;
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
    form: FormState,
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
    fn scopes_of(&self, k: &ServiceKeyRecord) -> String {
        k.scopes
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

pub async fn page(
    State(state): State<AppState>,
    current: CurrentTenant,
    Query(query): Query<TableQuery>,
) -> AppResult<Response> {
    current.tenant.require_admin("manage service keys")?;
    let CurrentTenant {
        user,
        session,
        tenant,
    } = current;
    let mut keys = state.store.list_service_keys(tenant.workspace_id).await?;
    let table = Table::apply(&query, &KEY_COLUMNS, "created", PAGE_SIZE, &mut keys);
    Ok(KeysPage {
        layout: Layout::signed_in(&state, &session, &user, &tenant).await?,
        workspace_name: tenant.workspace_name.clone(),
        keys,
        table,
        all_scopes: Scope::ALL.iter().map(|s| s.as_str()).collect(),
        form: FormState::default(),
    }
    .into_response())
}

pub async fn create(
    State(state): State<AppState>,
    current: CurrentTenant,
    form: CsrfForm<Vec<(String, String)>>,
) -> AppResult<Response> {
    let name = form
        .form
        .iter()
        .find(|(k, _)| k == "name")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let scopes: Vec<String> = form
        .form
        .iter()
        .filter(|(k, _)| k == "scope")
        .map(|(_, v)| v.clone())
        .collect();
    match service::create(&state.store, &current.tenant, &name, &scopes).await {
        Ok(created) => {
            session::flash(
                &form.session,
                FlashKind::Success,
                format!(
                    "Key {} created. Copy it now; it won't be shown again:",
                    created.name
                ),
                Some(created.key),
            )
            .await?;
            Ok(Redirect::to(BACK).into_response())
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
