//! Provider catalog for signed-in users.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::auth::extract::CurrentUser;
use crate::error::{AppError, AppResult};
use crate::providers::Provider;
use crate::providers::catalog::{
    CatalogView, MappingDefaultsView, ProviderDetail, ProviderSummary,
};

fn find_provider<'a>(state: &'a AppState, key: &str) -> AppResult<&'a Arc<Provider>> {
    state
        .providers
        .get(key)
        .ok_or_else(|| AppError::not_found(format!("unknown provider {key:?}")))
}

pub async fn capabilities(State(state): State<AppState>, _user: CurrentUser) -> Response {
    let providers: Vec<&str> = state
        .providers
        .iter()
        .map(|p| p.meta.key.as_str())
        .collect();
    Json(serde_json::json!({
        "integrations": { "enabled": !providers.is_empty(), "providers": providers }
    }))
    .into_response()
}

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

pub async fn provider(
    State(state): State<AppState>,
    _user: CurrentUser,
    Path(key): Path<String>,
) -> AppResult<Response> {
    provider_detail(&state, &key)
}

pub async fn catalog(
    State(state): State<AppState>,
    _user: CurrentUser,
    Path(key): Path<String>,
) -> AppResult<Response> {
    Ok(Json(CatalogView::of(find_provider(&state, &key)?)).into_response())
}

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
