//! Connecting accounts over JSON, and the OAuth redirect endpoints.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use uuid::Uuid;

use crate::app::AppState;
use crate::auth::extract::{CurrentTenant, MaybeUser};
use crate::auth::session::{self, FlashKind, WORKSPACE_KEY};
use crate::connections::service::{self, CallbackQuery, CredentialsInput, Diagnostics, Reconnect};
use crate::connections::{Connection, ConnectionView};
use crate::error::{AppError, AppResult, ErrorInfo};
use crate::web::extract::ApiJson;
use crate::web::parse_path_id;

pub fn view(state: &AppState, c: &Connection) -> ConnectionView {
    let issues = state
        .providers
        .get(&c.provider)
        .is_some_and(|p| p.meta.auth.issues_refresh_token);
    ConnectionView::of(c, issues)
}

#[derive(Deserialize)]
pub struct StartQuery {
    ownership: Option<String>,
    environment: Option<String>,
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"))
}

/// 302 to the provider, or `{authUrl, state}` for clients asking for JSON.
pub async fn start(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path(provider): Path<String>,
    Query(query): Query<StartQuery>,
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
    match service::complete_authorization(&state, user.id, &provider, &query).await {
        Ok(connected) => {
            let _ = maybe
                .session
                .insert(WORKSPACE_KEY, connected.connection.workspace_id)
                .await;
            let name = state
                .providers
                .get(&provider)
                .map_or(provider.clone(), |p| p.meta.display_name.clone());
            if connected.needs_account_selection {
                let _ = session::flash(
                    &maybe.session,
                    FlashKind::Success,
                    format!("{name} connected. Choose the accounts to use."),
                    None,
                )
                .await;
                Redirect::to(&format!("/data/{provider}/accounts")).into_response()
            } else {
                let _ = session::flash(
                    &maybe.session,
                    FlashKind::Success,
                    format!("{name} connected."),
                    None,
                )
                .await;
                Redirect::to("/data").into_response()
            }
        }
        // The provider refused or the user declined: back to the hub.
        Err(AppError::BadRequest {
            field: None,
            message,
        }) => {
            let _ = session::flash(&maybe.session, FlashKind::Error, message, None).await;
            Redirect::to("/data").into_response()
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

pub async fn connect(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path(provider): Path<String>,
    ApiJson(input): ApiJson<CredentialsInput>,
) -> AppResult<(StatusCode, Json<ConnectionView>)> {
    let c = service::connect_with_credentials(&state, &current.tenant, &provider, &input).await?;
    Ok((StatusCode::CREATED, Json(view(&state, &c))))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountsQuery {
    connection_id: Option<Uuid>,
}

pub async fn accounts(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path(provider): Path<String>,
    Query(query): Query<AccountsQuery>,
) -> AppResult<Json<serde_json::Value>> {
    let c = service::resolve(&state, &current.tenant, &provider, query.connection_id).await?;
    let accounts = service::list_accounts(&state, &c).await?;
    Ok(Json(serde_json::json!({
        "connectionId": c.id,
        "accounts": accounts,
        "selectedAccountIds": c.selected_account_ids.0,
    })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SelectInput {
    provider: String,
    connection_id: Option<Uuid>,
    account_ids: Vec<String>,
}

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
    let c = service::select_accounts(&state, &current.tenant, &c, &input.account_ids).await?;
    Ok(Json(view(&state, &c)))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DisconnectInput {
    provider: String,
    connection_id: Option<Uuid>,
}

pub async fn disconnect(
    State(state): State<AppState>,
    current: CurrentTenant,
    ApiJson(input): ApiJson<DisconnectInput>,
) -> AppResult<Json<ConnectionView>> {
    let c = service::resolve(
        &state,
        &current.tenant,
        &input.provider,
        input.connection_id,
    )
    .await?;
    let c = service::disconnect(&state, &current.tenant, &c).await?;
    Ok(Json(view(&state, &c)))
}

pub async fn list(
    State(state): State<AppState>,
    current: CurrentTenant,
) -> AppResult<Json<Vec<ConnectionView>>> {
    let list = service::visible_connections(&state, &current.tenant).await?;
    Ok(Json(list.iter().map(|c| view(&state, c)).collect()))
}

pub async fn admin_action(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path((id, action)): Path<(String, String)>,
) -> AppResult<Response> {
    let id = parse_path_id(&id, "connection")?;
    let c = match action.as_str() {
        "disable" => service::set_enabled(&state, &current.tenant, id, false).await?,
        "enable" => service::set_enabled(&state, &current.tenant, id, true).await?,
        "reconnect" => match service::reconnect(&state, &current.tenant, id).await? {
            Reconnect::Redirect(started) => return Ok(Json(started).into_response()),
            Reconnect::Done(c) => *c,
        },
        _ => return Err(AppError::not_found("no such API route")),
    };
    Ok(Json(view(&state, &c)).into_response())
}

pub async fn test(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path(provider): Path<String>,
) -> AppResult<Json<Diagnostics>> {
    Ok(Json(
        service::test_connection(&state, &current.tenant, &provider).await?,
    ))
}
