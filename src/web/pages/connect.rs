//! Opening a connect link: a page that says what will be connected and for
//! whom, a button that starts the provider's sign-in (a POST, so link
//! previews and prefetches can't use the link up), and the "connected" page
//! the OAuth callback lands on afterwards.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};

use super::Layout;
use crate::app::AppState;
use crate::auth::extract::{CurrentTenant, CurrentUser};
use crate::auth::session;
use crate::connections::service as connections;
use crate::connections::{ConnectionView, Status};
use crate::connectlinks::{self, LANDING_KEY};
use crate::error::{AppError, AppResult};
use crate::web::api::connections::view;
use crate::web::extract::CsrfForm;

fn display_name(state: &AppState, key: &str) -> String {
    state
        .providers
        .get(key)
        .map_or_else(|| key.to_owned(), |p| p.meta.display_name.clone())
}

#[derive(Template, WebTemplate)]
#[template(path = "connect_link.html")]
pub struct LinkPage {
    layout: Layout,
    token: String,
    provider_name: String,
    workspace_name: String,
    for_workspace: bool,
    reconnect: bool,
    environment: String,
}

/// Signed out: the log-in page, then back here (CurrentUser's 401 does
/// that). Not the opener's link, or gone: 404, and the link stays as it was.
pub async fn show(
    State(state): State<AppState>,
    current: CurrentUser,
    Path(token): Path<String>,
) -> AppResult<Response> {
    let (link, tenant) = connectlinks::open(&state, current.user.id, &token).await?;
    Ok(LinkPage {
        layout: Layout::signed_in(&state, &current.session, &current.user, &tenant).await?,
        token,
        provider_name: display_name(&state, &link.provider),
        workspace_name: tenant.workspace_name.clone(),
        for_workspace: link.ownership == "workspace",
        reconnect: link.connection_id.is_some(),
        environment: link.environment,
    }
    .into_response())
}

/// Starts the sign-in at the provider and uses the link up.
pub async fn begin(
    State(state): State<AppState>,
    current: CurrentUser,
    Path(token): Path<String>,
    form: CsrfForm<serde::de::IgnoredAny>,
) -> AppResult<Response> {
    let (link, tenant, started) = connectlinks::start(&state, current.user.id, &token).await?;
    session::choose_workspace(
        &state.store,
        &form.session,
        current.user.id,
        tenant.workspace_id,
    )
    .await?;
    form.session
        .insert(LANDING_KEY, link.provider)
        .await
        .map_err(|e| AppError::internal(anyhow::Error::new(e)))?;
    Ok(Redirect::to(&started.auth_url).into_response())
}

#[derive(Template, WebTemplate)]
#[template(path = "connected.html")]
pub struct ConnectedPage {
    layout: Layout,
    key: String,
    provider_name: String,
    connection: ConnectionView,
    choose_accounts: bool,
    admin: bool,
}

/// Where a link's OAuth flow lands: the opener's connection of the
/// provider, as they may see it.
pub async fn connected(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path(key): Path<String>,
) -> AppResult<Response> {
    let tenant = &current.tenant;
    let provider = state
        .providers
        .get(&key)
        .ok_or_else(|| AppError::not_found(format!("unknown provider {key:?}")))?;
    let mine = connections::visible_connections(&state, tenant)
        .await?
        .into_iter()
        .filter(|c| c.provider == key && c.connected_by == Some(tenant.user_id))
        .max_by_key(|c| c.connected_at)
        .ok_or_else(|| AppError::not_found("no connection of yours to show"))?;
    let choose_accounts = provider.meta.accounts.is_some()
        && mine.selected_account_ids.is_empty()
        && mine.status() == Status::Connected;
    Ok(ConnectedPage {
        layout: Layout::signed_in(&state, &current.session, &current.user, tenant).await?,
        provider_name: provider.meta.display_name.clone(),
        connection: view(&state, tenant, &mine),
        choose_accounts,
        admin: tenant.role.can_manage_members(),
        key,
    }
    .into_response())
}
