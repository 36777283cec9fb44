//! Connecting accounts over JSON, and the OAuth redirect endpoints.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::app::AppState;
use crate::auth::extract::{CurrentTenant, MaybeUser};
use crate::auth::session::{self, FlashKind, WORKSPACE_KEY};
use crate::connections::service::{
    self, Account, CallbackQuery, CredentialsInput, Diagnostics, Reconnect, StartedAuthorization,
};
use crate::connections::{Connection, ConnectionView};
use crate::error::{AppError, AppResult, ErrorInfo};
use crate::input::SingleLine;
use crate::tenancy::Tenant;
use crate::web::extract::{ApiJson, ApiQuery};
use crate::web::openapi::responses as errors;
use crate::web::parse_path_id;

/// The connection as `tenant` may see it: another member's personal
/// connection by status only.
pub fn view(state: &AppState, tenant: &Tenant, c: &Connection) -> ConnectionView {
    let issues = state
        .providers
        .get(&c.provider)
        .is_some_and(|p| p.meta.auth.issues_refresh_token);
    ConnectionView::for_viewer(c, issues, tenant.user_id)
}

/// What an admin may do to a connection (documentation of the path value).
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum ConnectionAction {
    Disable,
    Enable,
    Reconnect,
}

/// The connection after the action, or (reconnect of an OAuth connection)
/// where to send the browser.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum ConnectionActionResult {
    Connection(Box<ConnectionView>),
    Authorize(StartedAuthorization),
}

#[derive(Deserialize)]
pub struct StartQuery {
    ownership: Option<SingleLine>,
    environment: Option<SingleLine>,
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"))
}

/// 303 to the provider, or `{authUrl, state}` for clients asking for JSON.
#[utoipa::path(
    get,
    path = "/oauth/{provider}/start",
    operation_id = "oauth_start",
    tag = "connections",
    summary = "Begin connecting over OAuth",
    description = "Redirects (303 See Other) to the provider's consent page, or answers {authUrl, state} when the client sends Accept: application/json.",
    security(("session_cookie" = [])),
    params(("provider" = String, Path, description = "A provider key from the catalog."),
        ("ownership" = Option<String>, Query, description = "workspace (default) or user (a personal connection)."),
        ("environment" = Option<String>, Query, description = "A base-URL variant key of the provider.")),
    responses(
        (status = 200, description = "Where to send the browser (Accept: application/json).", body = StartedAuthorization),
        (status = 303, description = "Redirect to the provider."),
        errors::Tenant, errors::Invalid
    )
)]
pub async fn start(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path(provider): Path<String>,
    ApiQuery(query): ApiQuery<StartQuery>,
    headers: HeaderMap,
) -> AppResult<Response> {
    let started = service::start_authorization(
        &state,
        &current.tenant,
        &provider,
        query.ownership.as_deref(),
        query.environment.as_deref(),
    )
    .await?;
    if wants_json(&headers) {
        return Ok(Json(started).into_response());
    }
    Ok(Redirect::to(&started.auth_url).into_response())
}

/// The provider sends the browser back here. Successes and refusals land on
/// the Data Hub with a message; a bad state gets an error page. Either way
/// nothing is created unless the whole exchange succeeded.
#[utoipa::path(
    get,
    path = "/oauth/{provider}/callback",
    operation_id = "oauth_callback",
    tag = "connections",
    summary = "Where the provider sends the browser back (HTML flow)",
    description = "Not for API clients: redirects to the Data Hub with a message, or renders an error page. Nothing is created unless the whole exchange succeeded.",
    security(("session_cookie" = [])),
    params(("provider" = String, Path, description = "A provider key from the catalog."), CallbackQuery),
    responses(
        (status = 303, description = "Back to the Data Hub (or account selection)."),
        (status = 400, description = "A bad or expired state: an HTML error page.", content_type = "text/html", body = String),
        (status = 401, description = "The session ended: an HTML error page.", content_type = "text/html", body = String)
    )
)]
pub async fn callback(
    State(state): State<AppState>,
    maybe: MaybeUser,
    Path(provider): Path<String>,
    Query(query): Query<CallbackQuery>,
) -> Response {
    let Some(user) = maybe.user else {
        return error_page(
            &state,
            &maybe.session,
            AppError::Unauthenticated.status(),
            "Sign in again",
            "Your session ended before the provider answered; log in and connect again.",
        )
        .await;
    };
    // Set when a connect link started this flow; cleared whatever happens.
    let linked = maybe
        .session
        .remove::<String>(crate::connectlinks::LANDING_KEY)
        .await
        .ok()
        .flatten();
    match service::complete_authorization(&state, user.id, &provider, &query).await {
        Ok(connected) => {
            let _ = maybe
                .session
                .insert(WORKSPACE_KEY, connected.connection.workspace_id)
                .await;
            // A connect link's flow lands on its own "connected" page.
            if linked.as_deref() == Some(provider.as_str()) {
                return Redirect::to(&format!("/connected/{provider}")).into_response();
            }
            let name = state
                .providers
                .get(&provider)
                .map_or(provider.clone(), |p| p.meta.display_name.clone());
            if connected.needs_account_selection {
                let _ = session::flash(
                    &maybe.session,
                    FlashKind::Success,
                    format!("{name} connected. Choose the accounts to use."),
                )
                .await;
                Redirect::to(&format!("/data/{provider}/accounts")).into_response()
            } else {
                let _ = session::flash(
                    &maybe.session,
                    FlashKind::Success,
                    format!("{name} connected."),
                )
                .await;
                Redirect::to(crate::web::pages::CONNECTIONS).into_response()
            }
        }
        // The provider refused or the user declined: back to the hub.
        Err(AppError::BadRequest {
            field: None,
            message,
        }) => {
            let _ = session::flash(&maybe.session, FlashKind::Error, message).await;
            Redirect::to(crate::web::pages::CONNECTIONS).into_response()
        }
        Err(AppError::Internal(e)) => {
            tracing::error!(error = format!("{e:#}"), "OAuth callback failed");
            error_page(
                &state,
                &maybe.session,
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "Connecting failed on our side; nothing was connected. Try again.",
            )
            .await
        }
        Err(err) => {
            error_page(
                &state,
                &maybe.session,
                err.status(),
                "Connecting failed",
                &err.to_string(),
            )
            .await
        }
    }
}

async fn error_page(
    state: &AppState,
    session: &tower_sessions::Session,
    status: StatusCode,
    _title: &str,
    message: &str,
) -> Response {
    let layout = crate::web::pages::error_layout(state, Some(session)).await;
    let mut page = crate::web::pages::render_error(
        layout,
        &ErrorInfo {
            status,
            code: "oauth_callback",
            message: message.to_owned(),
            field: None,
        },
    );
    *page.status_mut() = status;
    page
}

#[utoipa::path(
    post,
    path = "/integrations/{provider}/connect",
    operation_id = "connect_with_credentials",
    tag = "connections",
    summary = "Connect with credentials (client credentials or an API key)",
    security(("session_cookie" = [])),
    params(("provider" = String, Path, description = "A provider key from the catalog.")),
    request_body = CredentialsInput,
    responses((status = 201, description = "Connected.", body = ConnectionView), errors::Tenant, errors::Conflict, errors::Body)
)]
pub async fn connect(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path(provider): Path<String>,
    ApiJson(input): ApiJson<CredentialsInput>,
) -> AppResult<(StatusCode, Json<ConnectionView>)> {
    let c = service::connect_with_credentials(&state, &current.tenant, &provider, &input).await?;
    Ok((StatusCode::CREATED, Json(view(&state, &current.tenant, &c))))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountsQuery {
    connection_id: Option<Uuid>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountsView {
    connection_id: Uuid,
    accounts: Vec<Account>,
    selected_account_ids: Vec<String>,
}

#[utoipa::path(
    get,
    path = "/oauth/{provider}/accounts",
    operation_id = "list_provider_accounts",
    tag = "connections",
    summary = "The accounts a connection can choose from, and those chosen",
    security(("session_cookie" = [])),
    params(("provider" = String, Path, description = "A provider key from the catalog."), ("connectionId" = Option<Uuid>, Query, description = "The connection; default: the one you'd use.")),
    responses((status = 200, description = "Accounts.", body = AccountsView), errors::Tenant, errors::Invalid)
)]
pub async fn accounts(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path(provider): Path<String>,
    ApiQuery(query): ApiQuery<AccountsQuery>,
) -> AppResult<Json<AccountsView>> {
    let c = service::resolve(&state, &current.tenant, &provider, query.connection_id).await?;
    let accounts = service::list_accounts(&state, &c).await?;
    Ok(Json(AccountsView {
        connection_id: c.id,
        accounts,
        selected_account_ids: c.selected_account_ids.0,
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SelectInput {
    provider: SingleLine,
    connection_id: Option<Uuid>,
    account_ids: Vec<SingleLine>,
}

#[utoipa::path(
    post,
    path = "/data/select-account",
    operation_id = "select_accounts",
    tag = "connections",
    summary = "Choose the accounts a connection syncs",
    security(("session_cookie" = [])),
    request_body = SelectInput,
    responses((status = 200, description = "The connection.", body = ConnectionView), errors::Tenant, errors::Body)
)]
pub async fn select_account(
    State(state): State<AppState>,
    current: CurrentTenant,
    ApiJson(input): ApiJson<SelectInput>,
) -> AppResult<Json<ConnectionView>> {
    let c = service::resolve(
        &state,
        &current.tenant,
        &input.provider,
        input.connection_id,
    )
    .await?;
    let ids: Vec<String> = input.account_ids.into_iter().map(String::from).collect();
    let c = service::select_accounts(&state, &current.tenant, &c, &ids).await?;
    Ok(Json(view(&state, &current.tenant, &c)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DisconnectInput {
    provider: SingleLine,
    connection_id: Option<Uuid>,
}

#[utoipa::path(
    post,
    path = "/data/disconnect",
    operation_id = "disconnect",
    tag = "connections",
    summary = "Disconnect: tokens are revoked where the provider supports it and deleted",
    security(("session_cookie" = [])),
    request_body = DisconnectInput,
    responses((status = 200, description = "The connection, now NOT_CONNECTED.", body = ConnectionView), errors::Tenant, errors::Body)
)]
pub async fn disconnect(
    State(state): State<AppState>,
    current: CurrentTenant,
    ApiJson(input): ApiJson<DisconnectInput>,
) -> AppResult<Json<ConnectionView>> {
    let c = service::resolve_to_manage(
        &state,
        &current.tenant,
        &input.provider,
        input.connection_id,
    )
    .await?;
    let c = service::disconnect(&state, &current.tenant, &c).await?;
    Ok(Json(view(&state, &current.tenant, &c)))
}

#[utoipa::path(
    get,
    path = "/integrations/connections",
    operation_id = "list_connections",
    tag = "connections",
    summary = "The connections you can see",
    security(("session_cookie" = [])),
    responses((status = 200, description = "Connections.", body = Vec<ConnectionView>), errors::Tenant)
)]
pub async fn list(
    State(state): State<AppState>,
    current: CurrentTenant,
) -> AppResult<Json<Vec<ConnectionView>>> {
    let list = service::visible_connections(&state, &current.tenant).await?;
    Ok(Json(
        list.iter()
            .map(|c| view(&state, &current.tenant, c))
            .collect(),
    ))
}

#[utoipa::path(
    post,
    path = "/integrations/connections/{id}/{action}",
    operation_id = "connection_admin_action",
    tag = "connections",
    summary = "Disable, enable or reconnect a connection (admins)",
    description = "reconnect answers {authUrl, state} for OAuth connections (send the browser there) and the connection otherwise.",
    security(("session_cookie" = [])),
    params(("id" = Uuid, Path, description = "The connection."), ("action" = ConnectionAction, Path)),
    responses(
        (status = 200, description = "The connection, or where to re-authorize.", body = ConnectionActionResult),
        errors::Tenant, errors::Conflict, errors::JsonContentType
    )
)]
pub async fn admin_action(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path((id, action)): Path<(String, String)>,
) -> AppResult<Json<ConnectionActionResult>> {
    let id = parse_path_id(&id, "connection")?;
    let c = match action.as_str() {
        "disable" => service::set_enabled(&state, &current.tenant, id, false).await?,
        "enable" => service::set_enabled(&state, &current.tenant, id, true).await?,
        "reconnect" => match service::reconnect(&state, &current.tenant, id).await? {
            Reconnect::Redirect(started) => {
                return Ok(Json(ConnectionActionResult::Authorize(started)));
            }
            Reconnect::Done(c) => *c,
        },
        _ => return Err(AppError::not_found("no such API route")),
    };
    Ok(Json(ConnectionActionResult::Connection(Box::new(view(
        &state,
        &current.tenant,
        &c,
    )))))
}

#[utoipa::path(
    get,
    path = "/integrations/{provider}/test",
    operation_id = "test_connection",
    tag = "connections",
    summary = "Make a minimal authenticated call and report findings",
    security(("session_cookie" = [])),
    params(("provider" = String, Path, description = "A provider key from the catalog.")),
    responses((status = 200, description = "Diagnostics.", body = Diagnostics), errors::Tenant)
)]
pub async fn test(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path(provider): Path<String>,
) -> AppResult<Json<Diagnostics>> {
    Ok(Json(
        service::test_connection(&state, &current.tenant, &provider).await?,
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AutomationsInput {
    allowed: bool,
}

/// The owner's "automations may use this connection" switch.
#[utoipa::path(
    put,
    path = "/integrations/connections/{id}/automations",
    operation_id = "set_connection_automations",
    tag = "connections",
    summary = "Let automations use your personal connection, or stop them (owner only)",
    security(("session_cookie" = [])),
    params(("id" = Uuid, Path, description = "Your personal connection.")),
    request_body = AutomationsInput,
    responses((status = 200, description = "The connection.", body = ConnectionView), errors::Tenant, errors::Body)
)]
pub async fn set_automations(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<AutomationsInput>,
) -> AppResult<Json<ConnectionView>> {
    let id = parse_path_id(&id, "connection")?;
    let c = service::set_automations_allowed(&state, &current.tenant, id, input.allowed).await?;
    Ok(Json(view(&state, &current.tenant, &c)))
}
