//! Projects, people, mappings, applying records and matching.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::app::AppState;
use crate::auth::extract::CurrentTenant;
use crate::connections::service::resolve;
use crate::entities::apply::apply_records;
use crate::entities::mapping::{self, EffectiveMapping, MappingInput};
use crate::entities::matching::{self, ConfirmInput, Confirmed, Suggestions};
use crate::entities::service::Change;
use crate::entities::{
    ApplyCounts, ApplyOptions, ConflictPolicy, DeletionPolicy, EntityKind, service,
};
use crate::error::AppResult;
use crate::input::{Name, Patch, SingleLine};
use crate::web::extract::{ApiJson, ApiQuery};
use crate::web::openapi::responses as errors;
use crate::web::parse_path_id;
use uuid::Uuid;

// Projects and people are read and written as JSON objects whose keys are
// the entity's columns (`EntityKind::columns`): the service checks each key
// (camelCase or snake_case), so a bad one is a 422 naming it. The types
// below document those objects; keep them in step with the columns.

/// A project as the API shows it.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct ProjectView {
    id: Uuid,
    /// Always `project`.
    kind: String,
    number: Option<String>,
    name: String,
    client_name: Option<String>,
    #[schema(value_type = Option<EntityStatus>)]
    status: Option<String>,
    #[schema(format = Date)]
    start_date: Option<String>,
    #[schema(format = Date)]
    end_date: Option<String>,
    #[serde(flatten)]
    common: EntityCommon,
}

/// A person as the API shows it.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct PersonView {
    id: Uuid,
    /// Always `person`.
    kind: String,
    name: String,
    email: Option<String>,
    title: Option<String>,
    active: Option<bool>,
    #[serde(flatten)]
    common: EntityCommon,
}

/// Fields every project and person has.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct EntityCommon {
    /// The source's values by field, beside the local ones.
    #[schema(value_type = Object)]
    source_values: Value,
    /// Fields edited locally (what preserve_local respects).
    local_edits: Vec<String>,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
    /// Only when reading one (GET by id): the records linked to it.
    links: Option<Vec<EntityLink>>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct EntityLink {
    provider: String,
    object: String,
    external_id: String,
    connection_id: Uuid,
    inactive_by_source: bool,
}

#[derive(Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EntityStatus {
    Active,
    Inactive,
}

/// Fields to set on a project (camelCase or snake_case keys); others are
/// 422. Null or an empty string clears a field. This type is the parser:
/// the service then checks values (dates, lengths) field by field.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProjectChanges {
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    number: Patch<SingleLine>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    name: Patch<Name>,
    #[serde(default, alias = "client_name")]
    #[schema(value_type = Option<String>)]
    client_name: Patch<Name>,
    #[serde(default)]
    #[schema(value_type = Option<EntityStatus>)]
    status: Patch<EntityStatus>,
    #[serde(default, alias = "start_date")]
    #[schema(value_type = Option<String>, format = Date)]
    start_date: Patch<SingleLine>,
    #[serde(default, alias = "end_date")]
    #[schema(value_type = Option<String>, format = Date)]
    end_date: Patch<SingleLine>,
}

/// Fields to set on a person (camelCase or snake_case keys); others are
/// 422. Null or an empty string clears a field.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PersonChanges {
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    name: Patch<Name>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    email: Patch<SingleLine>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    title: Patch<Name>,
    #[serde(default)]
    #[schema(value_type = Option<bool>)]
    active: Patch<bool>,
}

/// One change as the service checks it: the column and the JSON value.
fn change<T: Serialize>(column: &'static str, patch: Patch<T>) -> Option<Change> {
    let value = match patch {
        Patch::Keep => return None,
        Patch::Clear => Value::Null,
        Patch::Set(v) => serde_json::to_value(v).unwrap_or(Value::Null),
    };
    Some((column, value))
}

impl ProjectChanges {
    fn into_changes(self) -> Vec<Change> {
        [
            change("number", self.number),
            change("name", self.name),
            change("client_name", self.client_name),
            change("status", self.status),
            change("start_date", self.start_date),
            change("end_date", self.end_date),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

impl PersonChanges {
    fn into_changes(self) -> Vec<Change> {
        [
            change("name", self.name),
            change("email", self.email),
            change("title", self.title),
            change("active", self.active),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

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
    changes: Vec<Change>,
) -> AppResult<(StatusCode, Json<Value>)> {
    Ok((
        StatusCode::CREATED,
        Json(service::create(state, &current.tenant, kind, changes).await?),
    ))
}

async fn update(
    state: &AppState,
    current: &CurrentTenant,
    kind: EntityKind,
    id: &str,
    changes: Vec<Change>,
) -> AppResult<Json<Value>> {
    let id = parse_path_id(id, kind.noun())?;
    Ok(Json(
        service::update(state, &current.tenant, kind, id, changes).await?,
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetInput {
    /// The field (camelCase or snake_case) to set back to its source value.
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

#[utoipa::path(
    get,
    path = "/projects",
    operation_id = "list_projects",
    tag = "entities",
    summary = "The workspace's projects (up to 5,000)",
    security(("session_cookie" = [])),
    responses((status = 200, description = "Project list (without links).", body = Vec<ProjectView>), errors::Tenant)
)]
pub async fn list_projects(
    State(state): State<AppState>,
    current: CurrentTenant,
) -> AppResult<Json<Vec<Value>>> {
    list(&state, &current, EntityKind::Project).await
}

#[utoipa::path(
    post,
    path = "/projects",
    operation_id = "create_project",
    tag = "entities",
    summary = "Enter a project locally (admins)",
    description = "Keys in camelCase or snake_case; name is required.",
    security(("session_cookie" = [])),
    request_body = ProjectChanges,
    responses((status = 201, description = "Created.", body = ProjectView), errors::Tenant, errors::Body)
)]
pub async fn create_project(
    State(state): State<AppState>,
    current: CurrentTenant,
    ApiJson(body): ApiJson<ProjectChanges>,
) -> AppResult<(StatusCode, Json<Value>)> {
    create(&state, &current, EntityKind::Project, body.into_changes()).await
}

#[utoipa::path(
    get,
    path = "/projects/{id}",
    operation_id = "show_project",
    tag = "entities",
    summary = "A project with its links",
    security(("session_cookie" = [])),
    params(("id" = Uuid, Path, description = "The project.")),
    responses((status = 200, description = "The project.", body = ProjectView), errors::Tenant)
)]
pub async fn show_project(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path(id): Path<String>,
) -> AppResult<Json<Value>> {
    show(&state, &current, EntityKind::Project, &id).await
}

#[utoipa::path(
    patch,
    path = "/projects/{id}",
    operation_id = "update_project",
    tag = "entities",
    summary = "Edit a project (admins); edited fields are marked local",
    description = "Only the fields given change; null or an empty string clears a field.",
    security(("session_cookie" = [])),
    params(("id" = Uuid, Path, description = "The project.")),
    request_body = ProjectChanges,
    responses((status = 200, description = "The project.", body = ProjectView), errors::Tenant, errors::Body)
)]
pub async fn update_project(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ProjectChanges>,
) -> AppResult<Json<Value>> {
    update(
        &state,
        &current,
        EntityKind::Project,
        &id,
        body.into_changes(),
    )
    .await
}

#[utoipa::path(
    post,
    path = "/projects/{id}/reset-field",
    operation_id = "reset_project_field",
    tag = "entities",
    summary = "Reset a field of a project to its source value (admins)",
    security(("session_cookie" = [])),
    params(("id" = Uuid, Path, description = "The project.")),
    request_body = ResetInput,
    responses((status = 200, description = "The project.", body = ProjectView), errors::Tenant, errors::Body)
)]
pub async fn reset_project_field(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<ResetInput>,
) -> AppResult<Json<Value>> {
    reset(&state, &current, EntityKind::Project, &id, &input.field).await
}

#[utoipa::path(
    get,
    path = "/people",
    operation_id = "list_people",
    tag = "entities",
    summary = "The workspace's people (up to 5,000)",
    security(("session_cookie" = [])),
    responses((status = 200, description = "Person list (without links).", body = Vec<PersonView>), errors::Tenant)
)]
pub async fn list_people(
    State(state): State<AppState>,
    current: CurrentTenant,
) -> AppResult<Json<Vec<Value>>> {
    list(&state, &current, EntityKind::Person).await
}

#[utoipa::path(
    post,
    path = "/people",
    operation_id = "create_person",
    tag = "entities",
    summary = "Enter a person locally (admins)",
    description = "Keys in camelCase or snake_case; name is required.",
    security(("session_cookie" = [])),
    request_body = PersonChanges,
    responses((status = 201, description = "Created.", body = PersonView), errors::Tenant, errors::Body)
)]
pub async fn create_person(
    State(state): State<AppState>,
    current: CurrentTenant,
    ApiJson(body): ApiJson<PersonChanges>,
) -> AppResult<(StatusCode, Json<Value>)> {
    create(&state, &current, EntityKind::Person, body.into_changes()).await
}

#[utoipa::path(
    get,
    path = "/people/{id}",
    operation_id = "show_person",
    tag = "entities",
    summary = "A person with its links",
    security(("session_cookie" = [])),
    params(("id" = Uuid, Path, description = "The person.")),
    responses((status = 200, description = "The person.", body = PersonView), errors::Tenant)
)]
pub async fn show_person(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path(id): Path<String>,
) -> AppResult<Json<Value>> {
    show(&state, &current, EntityKind::Person, &id).await
}

#[utoipa::path(
    patch,
    path = "/people/{id}",
    operation_id = "update_person",
    tag = "entities",
    summary = "Edit a person (admins); edited fields are marked local",
    description = "Only the fields given change; null or an empty string clears a field.",
    security(("session_cookie" = [])),
    params(("id" = Uuid, Path, description = "The person.")),
    request_body = PersonChanges,
    responses((status = 200, description = "The person.", body = PersonView), errors::Tenant, errors::Body)
)]
pub async fn update_person(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<PersonChanges>,
) -> AppResult<Json<Value>> {
    update(
        &state,
        &current,
        EntityKind::Person,
        &id,
        body.into_changes(),
    )
    .await
}

#[utoipa::path(
    post,
    path = "/people/{id}/reset-field",
    operation_id = "reset_person_field",
    tag = "entities",
    summary = "Reset a field of a person to its source value (admins)",
    security(("session_cookie" = [])),
    params(("id" = Uuid, Path, description = "The person.")),
    request_body = ResetInput,
    responses((status = 200, description = "The person.", body = PersonView), errors::Tenant, errors::Body)
)]
pub async fn reset_person_field(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<ResetInput>,
) -> AppResult<Json<Value>> {
    reset(&state, &current, EntityKind::Person, &id, &input.field).await
}

/// Members may look at the mapping; the catalog is theirs to see too.
#[utoipa::path(
    get,
    path = "/integrations/{provider}/{object}/mapping",
    operation_id = "get_mapping",
    tag = "entities",
    summary = "The mapping in force for an object",
    security(("session_cookie" = [])),
    params(("provider" = String, Path, description = "A provider key from the catalog."), ("object" = String, Path, description = "An object key of the provider.")),
    responses((status = 200, description = "The mapping (the provider's defaults until an admin saves one).", body = EffectiveMapping), errors::Tenant)
)]
pub async fn get_mapping(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path((provider, object)): Path<(String, String)>,
) -> AppResult<Json<EffectiveMapping>> {
    Ok(Json(
        mapping::effective(&state, current.tenant.workspace_id, &provider, &object).await?,
    ))
}

#[utoipa::path(
    put,
    path = "/integrations/{provider}/{object}/mapping",
    operation_id = "save_mapping",
    tag = "entities",
    summary = "Save the mapping of an object (admins)",
    security(("session_cookie" = [])),
    params(("provider" = String, Path, description = "A provider key from the catalog."), ("object" = String, Path, description = "An object key of the provider.")),
    request_body = MappingInput,
    responses((status = 200, description = "The saved mapping.", body = EffectiveMapping), errors::Tenant, errors::Conflict, errors::Body)
)]
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

#[derive(Deserialize, utoipa::ToSchema)]
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
#[utoipa::path(
    post,
    path = "/integrations/{provider}/{object}/apply",
    operation_id = "apply_mapping",
    tag = "entities",
    summary = "Re-apply the mapping to the connection's stored records (admins)",
    security(("session_cookie" = [])),
    params(("provider" = String, Path, description = "A provider key from the catalog."), ("object" = String, Path, description = "An object key of the provider.")),
    request_body = ApplyInput,
    responses((status = 200, description = "What changed (or would, with dryRun).", body = ApplyCounts), errors::Tenant, errors::Conflict, errors::Body)
)]
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

#[utoipa::path(
    get,
    path = "/integrations/{provider}/{object}/matching/suggestions",
    operation_id = "matching_suggestions",
    tag = "entities",
    summary = "Proposed matches for unlinked records (admins)",
    security(("session_cookie" = [])),
    params(("provider" = String, Path, description = "A provider key from the catalog."), ("object" = String, Path, description = "An object key of the provider."), ("connectionId" = Option<Uuid>, Query, description = "The connection; default: the one you'd use.")),
    responses((status = 200, description = "Suggestions.", body = Suggestions), errors::Tenant, errors::Conflict)
)]
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

#[utoipa::path(
    post,
    path = "/integrations/{provider}/{object}/matching/confirm",
    operation_id = "matching_confirm",
    tag = "entities",
    summary = "Link records to projects or people (admins)",
    security(("session_cookie" = [])),
    params(("provider" = String, Path, description = "A provider key from the catalog."), ("object" = String, Path, description = "An object key of the provider.")),
    request_body = ConfirmInput,
    responses((status = 200, description = "Counts.", body = Confirmed), errors::Tenant, errors::Conflict, errors::Body)
)]
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
