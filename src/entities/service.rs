//! Projects and people as the workspace sees and edits them. Members read;
//! owners and admins create, edit, and reset a field to its source value.
//! A field an edit changes is marked edited locally, which is what the
//! `preserve_local` and `write_once` policies respect.

use serde_json::Value;
use uuid::Uuid;

use super::{Entity, EntityKind, camel_case, normalize, parse_local, snake_case};
use crate::app::AppState;
use crate::audit::AuditEntry;
use crate::connections::Viewer;
use crate::error::{AppError, AppResult};
use crate::storage::now;
use crate::tenancy::Tenant;

const LIST_LIMIT: i64 = 5_000;

fn not_found(kind: EntityKind) -> AppError {
    AppError::not_found(format!("{} not found", kind.noun()))
}

/// An entity with its links, for the API.
async fn view(state: &AppState, tenant: &Tenant, entity: &Entity) -> AppResult<Value> {
    let links = state
        .store
        .entity_links(Viewer::from(tenant), entity.id)
        .await?;
    let mut out = entity.view();
    if let Value::Object(map) = &mut out {
        let links: Vec<Value> = links
            .iter()
            .map(|l| {
                serde_json::json!({
                    "provider": l.provider,
                    "object": l.object,
                    "externalId": l.external_id,
                    "connectionId": l.connection_id,
                    "inactiveBySource": l.inactive_by_source,
                })
            })
            .collect();
        map.insert("links".into(), Value::Array(links));
    }
    Ok(out)
}

pub async fn list(state: &AppState, tenant: &Tenant, kind: EntityKind) -> AppResult<Vec<Value>> {
    Ok(state
        .store
        .list_entities(Viewer::from(tenant), kind, LIST_LIMIT)
        .await?
        .iter()
        .map(Entity::view)
        .collect())
}

/// The entities of a kind with their links, for the Data Hub's lists.
pub async fn list_with_links(
    state: &AppState,
    tenant: &Tenant,
    kind: EntityKind,
) -> AppResult<Vec<(Entity, Vec<super::Link>)>> {
    let viewer = Viewer::from(tenant);
    let entities = state.store.list_entities(viewer, kind, LIST_LIMIT).await?;
    let mut links: std::collections::HashMap<Uuid, Vec<super::Link>> =
        std::collections::HashMap::new();
    for link in state.store.links_of_kind(viewer, kind).await? {
        links.entry(link.entity_id).or_default().push(link);
    }
    Ok(entities
        .into_iter()
        .map(|e| {
            let l = links.remove(&e.id).unwrap_or_default();
            (e, l)
        })
        .collect())
}

/// One entity with its links, for its page.
pub async fn get_with_links(
    state: &AppState,
    tenant: &Tenant,
    kind: EntityKind,
    id: Uuid,
) -> AppResult<(Entity, Vec<super::Link>)> {
    let entity = visible(state, tenant, kind, id).await?;
    let links = state
        .store
        .entity_links(Viewer::from(tenant), entity.id)
        .await?;
    Ok((entity, links))
}

/// Soft-deleted entities are gone as far as the API is concerned.
pub async fn get(
    state: &AppState,
    tenant: &Tenant,
    kind: EntityKind,
    id: Uuid,
) -> AppResult<Value> {
    let entity = visible(state, tenant, kind, id).await?;
    view(state, tenant, &entity).await
}

/// The entity if the user may see it (not one only another member's
/// personal connection brought in) and it is not soft-deleted.
async fn visible(
    state: &AppState,
    tenant: &Tenant,
    kind: EntityKind,
    id: Uuid,
) -> AppResult<Entity> {
    state
        .store
        .get_entity(Viewer::from(tenant), kind, id)
        .await?
        .filter(|e| e.deleted_at.is_none())
        .ok_or_else(|| not_found(kind))
}

/// One field to set: the column and its value as sent (null clears).
pub type Change = (&'static str, Value);

/// The typed body's fields as checked column values; a bad one is 422
/// naming the field as the API spells it (camelCase).
fn parse_changes(kind: EntityKind, body: Vec<Change>) -> AppResult<Vec<Change>> {
    if body.is_empty() {
        return Err(AppError::validation(
            "body",
            format!(
                "nothing to change; expected some of {}",
                kind.columns()
                    .iter()
                    .map(|c| camel_case(c))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    body.into_iter()
        .map(|(column, raw)| {
            let value = parse_local(kind, column, &raw)
                .map_err(|m| AppError::validation(camel_case(column), m))?;
            Ok((column, value))
        })
        .collect()
}

fn check_dates(entity: &Entity) -> AppResult<()> {
    if let (Some(start), Some(end)) = (entity.date("start_date"), entity.date("end_date"))
        && end < start
    {
        return Err(AppError::validation(
            "endDate",
            "must not be before startDate",
        ));
    }
    Ok(())
}

/// A project or person entered locally (admins). Not an edit: the source
/// may still fill its fields once it is linked.
pub async fn create(
    state: &AppState,
    tenant: &Tenant,
    kind: EntityKind,
    body: Vec<Change>,
) -> AppResult<Value> {
    tenant.require_admin("create projects and people")?;
    let changes = parse_changes(kind, body)?;
    if !changes.iter().any(|(c, _)| *c == "name") {
        return Err(AppError::validation("name", "name is required"));
    }
    let mut entity = Entity::new(kind, "", now());
    for (column, value) in changes {
        entity.set(column, value);
    }
    check_dates(&entity)?;
    let audit = AuditEntry::new(
        Some(tenant.workspace_id),
        Some(tenant.user_id),
        "entity.create",
    )
    .target(kind.noun(), entity.id);
    let mut tx = state.store.begin_entity_tx().await?;
    tx.insert_entity(tenant.workspace_id, &entity).await?;
    tx.audit(&audit).await?;
    tx.commit().await?;
    view(state, tenant, &entity).await
}

/// Edits fields (admins); those whose value changes are marked edited
/// locally.
pub async fn update(
    state: &AppState,
    tenant: &Tenant,
    kind: EntityKind,
    id: Uuid,
    body: Vec<Change>,
) -> AppResult<Value> {
    tenant.require_admin("edit projects and people")?;
    visible(state, tenant, kind, id).await?;
    let changes = parse_changes(kind, body)?;
    let ws = tenant.workspace_id;
    let mut tx = state.store.begin_entity_tx().await?;
    let mut entity = tx
        .entity(ws, kind, id)
        .await?
        .filter(|e| e.deleted_at.is_none())
        .ok_or_else(|| not_found(kind))?;
    let mut edited = Vec::new();
    for (column, value) in changes {
        if entity.set(column, value) {
            entity
                .field_state
                .entry(column.to_owned())
                .or_default()
                .edited = true;
            edited.push(column);
        }
    }
    check_dates(&entity)?;
    if !edited.is_empty() {
        entity.updated_at = now();
        let audit = AuditEntry::new(Some(ws), Some(tenant.user_id), "entity.update")
            .target(kind.noun(), id)
            .details(serde_json::json!({ "fields": edited }));
        tx.update_entity(ws, &entity).await?;
        tx.audit(&audit).await?;
        tx.commit().await?;
    }
    view(state, tenant, &entity).await
}

/// "Reset local to source": the field takes the stored source value and
/// is no longer edited locally.
pub async fn reset_field(
    state: &AppState,
    tenant: &Tenant,
    kind: EntityKind,
    id: Uuid,
    field: &str,
) -> AppResult<Value> {
    tenant.require_admin("edit projects and people")?;
    visible(state, tenant, kind, id).await?;
    let column = kind.column(&snake_case(field.trim())).ok_or_else(|| {
        AppError::validation(
            "field",
            format!("{field:?} is not a field of {}", kind.target()),
        )
    })?;
    let ws = tenant.workspace_id;
    let mut tx = state.store.begin_entity_tx().await?;
    let mut entity = tx
        .entity(ws, kind, id)
        .await?
        .filter(|e| e.deleted_at.is_none())
        .ok_or_else(|| not_found(kind))?;
    let source = entity
        .field_state
        .get(column)
        .and_then(|s| s.source.clone())
        .ok_or_else(|| {
            AppError::conflict(
                "field",
                format!("no source value for {} yet", camel_case(column)),
            )
        })?;
    let value = normalize(kind, column, &source).ok_or_else(|| {
        AppError::conflict(
            "field",
            format!(
                "the source value {source} can't be used as {}",
                camel_case(column)
            ),
        )
    })?;
    entity.set(column, value);
    let state_of = entity.field_state.entry(column.to_owned()).or_default();
    state_of.edited = false;
    state_of.sourced = true;
    entity.updated_at = now();
    let audit = AuditEntry::new(Some(ws), Some(tenant.user_id), "entity.reset_field")
        .target(kind.noun(), id)
        .details(serde_json::json!({ "field": column }));
    tx.update_entity(ws, &entity).await?;
    tx.audit(&audit).await?;
    tx.commit().await?;
    view(state, tenant, &entity).await
}
