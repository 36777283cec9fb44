//! Settings → Service keys (admins).

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};

use super::{Layout, ShownOnce, parse_path_id, redirect_with_outcome};
use crate::app::AppState;
use crate::auth::extract::CurrentTenant;
use crate::error::{AppError, AppResult};
use crate::input::{FormFields, Name};
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
    all_scopes: Vec<&'static str>,
    shown_once: Option<ShownOnce>,
}

impl KeysPage {
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
    shown_once: Option<ShownOnce>,
) -> AppResult<Response> {
    current.tenant.require_admin("manage service keys")?;
    let CurrentTenant {
        user,
        session,
        tenant,
    } = current;
    let keys = state.store.list_service_keys(tenant.workspace_id).await?;
    Ok(KeysPage {
        layout: Layout::signed_in(state, &session, &user, &tenant).await?,
        workspace_name: tenant.workspace_name.clone(),
        keys,
        all_scopes: Scope::ALL.iter().map(|s| s.as_str()).collect(),
        shown_once,
    }
    .into_response())
}

pub async fn page(State(state): State<AppState>, current: CurrentTenant) -> AppResult<Response> {
    render(&state, current, None).await
}

/// The new key is in this response only: never in the session.
pub async fn create(
    State(state): State<AppState>,
    current: CurrentTenant,
    form: CsrfForm<FormFields>,
) -> AppResult<Response> {
    let name = match Name::parse(form.form.first("name").map(|v| v.as_str()).unwrap_or("")) {
        Ok(name) => name,
        Err(problem) => {
            let err = AppError::validation("name", problem);
            return redirect_with_outcome(&form.session, BACK, Err(err)).await;
        }
    };
    let scopes: Vec<String> = form.form.all("scope").map(|v| v.to_string()).collect();
    match service::create(&state.store, &current.tenant, &name, &scopes).await {
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
            render(&state, current, Some(shown)).await
        }
        Err(err) => redirect_with_outcome(&form.session, BACK, Err(err)).await,
    }
}

pub async fn revoke(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path(id): Path<String>,
    form: CsrfForm<serde::de::IgnoredAny>,
) -> AppResult<Response> {
    let id = parse_path_id(&id, "service key")?;
    let outcome = service::revoke(&state.store, &current.tenant, id).await;
    redirect_with_outcome(
        &form.session,
        BACK,
        outcome.map(|()| "Key revoked.".to_owned()),
    )
    .await
}
