//! Projects, people, mappings, applying records and matching.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::app::AppState;
use crate::auth::extract::CurrentTenant;
use crate::connections::service::resolve;
use crate::entities::apply::apply_records;
use crate::entities::mapping::{self, EffectiveMapping, MappingInput};
use crate::entities::matching::{self, ConfirmInput, Confirmed, Suggestions};
use crate::entities::{
    ApplyCounts, ApplyOptions, ConflictPolicy, DeletionPolicy, EntityKind, service,
};
use crate::error::AppResult;
use crate::input::SingleLine;
use crate::web::extract::{ApiJson, ApiQuery};
use crate::web::parse_path_id;

type Body = ApiJson<Map<String, Value>>;

async fn list(
    state: &AppState,
    current: &CurrentTenant,
    kind: EntityKind,
) -> AppResult<Json<Vec<Value>>> {
    Ok(Json(service::list(state, &current.tenant, kind).await?))
}

async fn show(
    state: &AppState,
    current: &CurrentTenant,
    kind: EntityKind,
    id: &str,
) -> AppResult<Json<Value>> {
    let id = parse_path_id(id, kind.noun())?;
    Ok(Json(service::get(state, &current.tenant, kind, id).await?))
}

async fn create(
    state: &AppState,
    current: &CurrentTenant,
    kind: EntityKind,
    body: &Map<String, Value>,
) -> AppResult<(StatusCode, Json<Value>)> {
    Ok((
        StatusCode::CREATED,
        Json(service::create(state, &current.tenant, kind, body).await?),
    ))
}

async fn update(
    state: &AppState,
    current: &CurrentTenant,
    kind: EntityKind,
    id: &str,
    body: &Map<String, Value>,
) -> AppResult<Json<Value>> {
    let id = parse_path_id(id, kind.noun())?;
    Ok(Json(
        service::update(state, &current.tenant, kind, id, body).await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResetInput {
    field: SingleLine,
}

async fn reset(
    state: &AppState,
    current: &CurrentTenant,
    kind: EntityKind,
    id: &str,
    field: &str,
) -> AppResult<Json<Value>> {
    let id = parse_path_id(id, kind.noun())?;
    Ok(Json(
        service::reset_field(state, &current.tenant, kind, id, field).await?,
    ))
}

pub async fn list_projects(
    State(state): State<AppState>,
    current: CurrentTenant,
) -> AppResult<Json<Vec<Value>>> {
    list(&state, &current, EntityKind::Project).await
}

pub async fn create_project(
    State(state): State<AppState>,
    current: CurrentTenant,
    ApiJson(body): Body,
) -> AppResult<(StatusCode, Json<Value>)> {
    create(&state, &current, EntityKind::Project, &body).await
}

pub async fn show_project(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path(id): Path<String>,
) -> AppResult<Json<Value>> {
    show(&state, &current, EntityKind::Project, &id).await
}

pub async fn update_project(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path(id): Path<String>,
    ApiJson(body): Body,
) -> AppResult<Json<Value>> {
    update(&state, &current, EntityKind::Project, &id, &body).await
}

pub async fn reset_project_field(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<ResetInput>,
) -> AppResult<Json<Value>> {
    reset(&state, &current, EntityKind::Project, &id, &input.field).await
}

pub async fn list_people(
    State(state): State<AppState>,
    current: CurrentTenant,
) -> AppResult<Json<Vec<Value>>> {
    list(&state, &current, EntityKind::Person).await
}

pub async fn create_person(
    State(state): State<AppState>,
    current: CurrentTenant,
    ApiJson(body): Body,
) -> AppResult<(StatusCode, Json<Value>)> {
    create(&state, &current, EntityKind::Person, &body).await
}

pub async fn show_person(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path(id): Path<String>,
) -> AppResult<Json<Value>> {
    show(&state, &current, EntityKind::Person, &id).await
}

pub async fn update_person(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path(id): Path<String>,
    ApiJson(body): Body,
) -> AppResult<Json<Value>> {
    update(&state, &current, EntityKind::Person, &id, &body).await
}

pub async fn reset_person_field(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<ResetInput>,
) -> AppResult<Json<Value>> {
    reset(&state, &current, EntityKind::Person, &id, &input.field).await
}

/// Members may look at the mapping; the catalog is theirs to see too.
pub async fn get_mapping(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path((provider, object)): Path<(String, String)>,
) -> AppResult<Json<EffectiveMapping>> {
    Ok(Json(
        mapping::effective(&state, current.tenant.workspace_id, &provider, &object).await?,
    ))
}

pub async fn put_mapping(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path((provider, object)): Path<(String, String)>,
    ApiJson(input): ApiJson<MappingInput>,
) -> AppResult<Json<EffectiveMapping>> {
    Ok(Json(
        mapping::save(&state, &current.tenant, &provider, &object, &input).await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ApplyInput {
    #[serde(default)]
    conflict_policy: ConflictPolicy,
    #[serde(default)]
    deletion_policy: DeletionPolicy,
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    connection_id: Option<uuid::Uuid>,
}

/// "Re-apply mappings" (admins): applies the connection's stored records
/// of the object now.
pub async fn apply(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path((provider, object)): Path<(String, String)>,
    ApiJson(input): ApiJson<ApplyInput>,
) -> AppResult<Json<ApplyCounts>> {
    current.tenant.require_admin("apply mappings")?;
    mapping::entity_object(&state, &provider, &object)?;
    let connection = resolve(&state, &current.tenant, &provider, input.connection_id).await?;
    Ok(Json(
        apply_records(
            &state,
            current.tenant.workspace_id,
            connection.id,
            &provider,
            &object,
            ApplyOptions {
                conflict_policy: input.conflict_policy,
                deletion_policy: input.deletion_policy,
                dry_run: input.dry_run,
            },
        )
        .await?,
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SuggestionsQuery {
    connection_id: Option<SingleLine>,
}

pub async fn suggestions(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path((provider, object)): Path<(String, String)>,
    ApiQuery(q): ApiQuery<SuggestionsQuery>,
) -> AppResult<Json<Suggestions>> {
    let connection_id = q
        .connection_id
        .as_deref()
        .map(|id| parse_path_id(id, "connection"))
        .transpose()?;
    Ok(Json(
        matching::suggestions(&state, &current.tenant, &provider, &object, connection_id).await?,
    ))
}

pub async fn confirm(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path((provider, object)): Path<(String, String)>,
    ApiJson(input): ApiJson<ConfirmInput>,
) -> AppResult<Json<Confirmed>> {
    Ok(Json(
        matching::confirm(&state, &current.tenant, &provider, &object, &input).await?,
    ))
}
