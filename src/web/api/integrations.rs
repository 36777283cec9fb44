//! Provider catalog for signed-in users.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::app::AppState;
use crate::auth::extract::CurrentUser;
use crate::error::{AppError, AppResult};
use crate::providers::Provider;
use crate::providers::catalog::{
    CatalogView, MappingDefaultsView, ProviderDetail, ProviderSummary,
};
use crate::web::openapi::{ErrorBody, responses as errors};

fn find_provider<'a>(state: &'a AppState, key: &str) -> AppResult<&'a Arc<Provider>> {
    state
        .providers
        .get(key)
        .ok_or_else(|| AppError::not_found(format!("unknown provider {key:?}")))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Capabilities {
    integrations: IntegrationsCapability,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct IntegrationsCapability {
    /// True when at least one provider is configured.
    enabled: bool,
    /// Provider keys.
    providers: Vec<String>,
}

#[utoipa::path(
    get,
    path = "/capabilities",
    operation_id = "capabilities",
    tag = "integrations",
    summary = "What this server offers",
    security(("session_cookie" = [])),
    responses((status = 200, description = "Capabilities.", body = Capabilities), errors::SignedIn)
)]
pub async fn capabilities(State(state): State<AppState>, _user: CurrentUser) -> Json<Capabilities> {
    let providers: Vec<String> = state.providers.iter().map(|p| p.meta.key.clone()).collect();
    Json(Capabilities {
        integrations: IntegrationsCapability {
            enabled: !providers.is_empty(),
            providers,
        },
    })
}

#[utoipa::path(
    get,
    path = "/integrations/providers",
    operation_id = "list_providers",
    tag = "integrations",
    summary = "The providers this server knows",
    security(("session_cookie" = [])),
    responses((status = 200, description = "Provider summaries.", body = Vec<ProviderSummary>), errors::SignedIn)
)]
// The catalog views borrow from the registry held by this request's state,
// so they are serialized here rather than returned.
pub async fn providers(State(state): State<AppState>, _user: CurrentUser) -> Response {
    let list: Vec<ProviderSummary<'_>> = state
        .providers
        .iter()
        .map(|p| ProviderSummary::of(p))
        .collect();
    Json(list).into_response()
}

fn provider_detail(state: &AppState, key: &str) -> AppResult<Response> {
    Ok(Json(ProviderDetail::of(find_provider(state, key)?)).into_response())
}

#[utoipa::path(
    get,
    path = "/integrations/{provider}",
    operation_id = "show_provider",
    tag = "integrations",
    summary = "A provider's details (never secrets or env values)",
    security(("session_cookie" = [])),
    params(("provider" = String, Path, description = "A provider key from the catalog.")),
    responses((status = 200, description = "The provider.", body = ProviderDetail), (status = 404, description = "Unknown provider.", body = ErrorBody), errors::SignedIn)
)]
pub async fn provider(
    State(state): State<AppState>,
    _user: CurrentUser,
    Path(key): Path<String>,
) -> AppResult<Response> {
    provider_detail(&state, &key)
}

#[utoipa::path(
    get,
    path = "/integrations/{provider}/catalog",
    operation_id = "provider_catalog",
    tag = "integrations",
    summary = "A provider's objects and their fields",
    security(("session_cookie" = [])),
    params(("provider" = String, Path, description = "A provider key from the catalog.")),
    responses((status = 200, description = "The catalog.", body = CatalogView), (status = 404, description = "Unknown provider.", body = ErrorBody), errors::SignedIn)
)]
pub async fn catalog(
    State(state): State<AppState>,
    _user: CurrentUser,
    Path(key): Path<String>,
) -> AppResult<Response> {
    Ok(Json(CatalogView::of(find_provider(&state, &key)?)).into_response())
}

#[utoipa::path(
    get,
    path = "/integrations/{provider}/{object}/mapping/defaults",
    operation_id = "mapping_defaults",
    tag = "integrations",
    summary = "The provider's default mapping of an object",
    security(("session_cookie" = [])),
    params(("provider" = String, Path, description = "A provider key from the catalog."), ("object" = String, Path, description = "An object key of the provider.")),
    responses((status = 200, description = "Defaults (empty version 1 when none are declared).", body = MappingDefaultsView), (status = 404, description = "Unknown provider or object.", body = ErrorBody), errors::SignedIn)
)]
pub async fn mapping_defaults(
    State(state): State<AppState>,
    _user: CurrentUser,
    Path((key, object)): Path<(String, String)>,
) -> AppResult<Response> {
    let p = find_provider(&state, &key)?;
    let o = p
        .object(&object)
        .ok_or_else(|| AppError::not_found(format!("provider {key:?} has no object {object:?}")))?;
    Ok(Json(MappingDefaultsView::of(p, o)).into_response())
}
