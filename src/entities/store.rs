//! SQL for entities, links and mappings.
//!
//! Reads and single-statement writes are [`EntityStore`] methods. Work that
//! reads and writes several rows in one transaction (applying records,
//! confirming matches, editing an entity) runs on an [`EntityTx`]: a write
//! transaction with the statements it needs, so the logic in `apply.rs` and
//! `matching.rs` is written once for both backends. The SQL is the same on
//! both; only the PostgreSQL object lock has no SQLite counterpart (SQLite's
//! write transaction already serialises writers).

use std::collections::BTreeMap;

use serde_json::Value;
use sqlx::types::Json;
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use super::{Entity, EntityKind, FieldStates, Link, MappingField};
use crate::audit::AuditEntry;
use crate::connections::Viewer;
use crate::impl_for_backends;
use crate::tenancy::WorkspaceId;

/// A workspace's saved mapping of one provider object.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredMapping {
    pub target: String,
    pub fields: Json<Vec<MappingField>>,
    pub version: i32,
    pub field_signature_hash: String,
    pub stale: bool,
    pub updated_by: Option<Uuid>,
    pub updated_at: OffsetDateTime,
}

pub struct NewMapping<'a> {
    pub provider: &'a str,
    pub object: &'a str,
    pub target: &'a str,
    pub fields: &'a [MappingField],
    pub field_signature_hash: &'a str,
    /// The version the admin saw (0: none saved); another one → not saved.
    pub seen_version: i32,
    pub updated_by: Uuid,
    pub at: OffsetDateTime,
}

/// A stored provider record, as entities need it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct SourceRecord {
    pub external_id: String,
    pub data: Json<Value>,
    pub content_hash: String,
    pub deleted: bool,
    pub is_child: bool,
}

/// A record still to apply, with its link if it has one.
#[derive(Debug, Clone)]
pub struct PendingRecord {
    pub record: SourceRecord,
    pub link: Option<Link>,
}

pub struct PendingQuery<'a> {
    pub workspace: WorkspaceId,
    pub connection_id: Uuid,
    pub provider: &'a str,
    pub object: &'a str,
    /// The mapping fingerprint the links must have been applied with.
    pub mapping: &'a str,
    /// Keyset: only external ids after this one.
    pub after: &'a str,
    pub limit: i64,
}

/// A local entity a record might match, and whether it is already linked
/// to a record of the same provider object.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub entity: Entity,
    pub linked: bool,
}

#[derive(sqlx::FromRow)]
struct ProjectRow {
    id: Uuid,
    number: Option<String>,
    name: String,
    client_name: Option<String>,
    status: String,
    start_date: Option<Date>,
    end_date: Option<Date>,
    field_state: Json<FieldStates>,
    deleted_at: Option<OffsetDateTime>,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
    #[sqlx(default)]
    linked: bool,
}

#[derive(sqlx::FromRow)]
struct PersonRow {
    id: Uuid,
    name: String,
    email: Option<String>,
    title: Option<String>,
    active: bool,
    field_state: Json<FieldStates>,
    deleted_at: Option<OffsetDateTime>,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
    #[sqlx(default)]
    linked: bool,
}

fn text(v: Option<String>) -> Value {
    v.map_or(Value::Null, Value::from)
}

fn date(v: Option<Date>) -> Value {
    v.map_or(Value::Null, |d| Value::from(super::format_date(d)))
}

impl ProjectRow {
    fn into_candidate(self) -> Candidate {
        let values = BTreeMap::from([
            ("number".to_owned(), text(self.number)),
            ("name".to_owned(), Value::from(self.name)),
            ("client_name".to_owned(), text(self.client_name)),
            ("status".to_owned(), Value::from(self.status)),
            ("start_date".to_owned(), date(self.start_date)),
            ("end_date".to_owned(), date(self.end_date)),
        ]);
        Candidate {
            entity: Entity {
                kind: EntityKind::Project,
                id: self.id,
                values,
                field_state: self.field_state.0,
                deleted_at: self.deleted_at,
                created_at: self.created_at,
                updated_at: self.updated_at,
            },
            linked: self.linked,
        }
    }
}

impl PersonRow {
    fn into_candidate(self) -> Candidate {
        let values = BTreeMap::from([
            ("name".to_owned(), Value::from(self.name)),
            ("email".to_owned(), text(self.email)),
            ("title".to_owned(), text(self.title)),
            ("active".to_owned(), Value::Bool(self.active)),
        ]);
        Candidate {
            entity: Entity {
                kind: EntityKind::Person,
                id: self.id,
                values,
                field_state: self.field_state.0,
                deleted_at: self.deleted_at,
                created_at: self.created_at,
                updated_at: self.updated_at,
            },
            linked: self.linked,
        }
    }
}

#[derive(sqlx::FromRow)]
struct LinkRow {
    provider: String,
    object: String,
    external_id: String,
    connection_id: Uuid,
    project_id: Option<Uuid>,
    person_id: Option<Uuid>,
    applied_hash: Option<String>,
    applied_deleted: bool,
    applied_mapping: Option<String>,
    inactive_by_source: bool,
}

impl LinkRow {
    fn into_link(self) -> Option<Link> {
        // The CHECK constraint makes exactly one of the two set.
        let (kind, entity_id) = match (self.project_id, self.person_id) {
            (Some(id), None) => (EntityKind::Project, id),
            (None, Some(id)) => (EntityKind::Person, id),
            _ => return None,
        };
        Some(Link {
            provider: self.provider,
            object: self.object,
            external_id: self.external_id,
            connection_id: self.connection_id,
            kind,
            entity_id,
            applied_hash: self.applied_hash,
            applied_deleted: self.applied_deleted,
            applied_mapping: self.applied_mapping,
            inactive_by_source: self.inactive_by_source,
        })
    }
}

#[derive(sqlx::FromRow)]
struct PendingRow {
    external_id: String,
    data: Json<Value>,
    content_hash: String,
    deleted: bool,
    link_connection_id: Option<Uuid>,
    project_id: Option<Uuid>,
    person_id: Option<Uuid>,
    applied_hash: Option<String>,
    applied_deleted: Option<bool>,
    applied_mapping: Option<String>,
    inactive_by_source: Option<bool>,
}

impl PendingRow {
    fn into_pending(self, provider: &str, object: &str) -> PendingRecord {
        let link = self.link_connection_id.and_then(|connection_id| {
            LinkRow {
                provider: provider.to_owned(),
                object: object.to_owned(),
                external_id: self.external_id.clone(),
                connection_id,
                project_id: self.project_id,
                person_id: self.person_id,
                applied_hash: self.applied_hash,
                applied_deleted: self.applied_deleted.unwrap_or(false),
                applied_mapping: self.applied_mapping,
                inactive_by_source: self.inactive_by_source.unwrap_or(false),
            }
            .into_link()
        });
        PendingRecord {
            record: SourceRecord {
                external_id: self.external_id,
                data: self.data,
                content_hash: self.content_hash,
                deleted: self.deleted,
                is_child: false,
            },
            link,
        }
    }
}

macro_rules! project_columns {
    () => {
        "p.id, p.number, p.name, p.client_name, p.status, p.start_date, p.end_date, p.field_state, \
         p.deleted_at, p.created_at, p.updated_at"
    };
}

macro_rules! person_columns {
    () => {
        "p.id, p.name, p.email, p.title, p.active, p.field_state, p.deleted_at, p.created_at, p.updated_at"
    };
}

macro_rules! link_columns {
    () => {
        "provider, object, external_id, connection_id, project_id, person_id, applied_hash, \
         applied_deleted, applied_mapping, inactive_by_source"
    };
}

// Whether the entity `p` already has a link from this provider object.
macro_rules! linked_flag {
    ($column:literal) => {
        concat!(
            "EXISTS (SELECT 1 FROM external_links l WHERE l.workspace_id = p.workspace_id \
             AND l.provider = $2 AND l.object = $3 AND l.",
            $column,
            " = p.id) AS linked"
        )
    };
}

const PENDING_SQL: &str = "SELECT r.external_id, r.data, r.content_hash, r.deleted_at IS NOT NULL AS deleted, \
     l.connection_id AS link_connection_id, l.project_id, l.person_id, l.applied_hash, l.applied_deleted, \
     l.applied_mapping, l.inactive_by_source \
     FROM records r LEFT JOIN external_links l ON l.workspace_id = r.workspace_id AND l.provider = $3 \
     AND l.object = r.object AND l.external_id = r.external_id \
     WHERE r.workspace_id = $1 AND r.connection_id = $2 AND r.object = $4 AND NOT r.is_child \
     AND r.external_id > $5 \
     AND (l.external_id IS NULL OR l.connection_id <> r.connection_id \
          OR l.applied_hash IS NULL OR l.applied_hash <> r.content_hash \
          OR l.applied_mapping IS NULL OR l.applied_mapping <> $6 \
          OR l.applied_deleted <> (r.deleted_at IS NOT NULL)) \
     ORDER BY r.external_id LIMIT $7";

/// SQL condition on an entity `p` (workspace `$1`): entered locally (no
/// links), or linked through at least one connection the viewer (`$user`)
/// may use. An entity only another member's personal connection brought
/// in is theirs.
macro_rules! visible_entity {
    ($link_col:literal, $user:literal) => {
        concat!(
            "(NOT EXISTS (SELECT 1 FROM external_links el WHERE el.workspace_id = $1 AND el.",
            $link_col,
            " = p.id) \
             OR EXISTS (SELECT 1 FROM external_links el WHERE el.workspace_id = $1 AND el.",
            $link_col,
            " = p.id AND ",
            crate::visible_connection!("el.connection_id", "$1", $user),
            "))"
        )
    };
}

#[async_trait::async_trait]
pub trait EntityStore {
    /// Entities not soft-deleted, by name.
    /// Only those the viewer may see: an entity that came only from other
    /// members' personal connections is theirs (see `visible_entity!`).
    async fn list_entities(
        &self,
        viewer: Viewer,
        kind: EntityKind,
        limit: i64,
    ) -> sqlx::Result<Vec<Entity>>;
    /// One entity the viewer may see, soft-deleted ones included.
    async fn get_entity(
        &self,
        viewer: Viewer,
        kind: EntityKind,
        id: Uuid,
    ) -> sqlx::Result<Option<Entity>>;
    /// The entity's links through connections the viewer may use.
    async fn entity_links(&self, viewer: Viewer, id: Uuid) -> sqlx::Result<Vec<Link>>;
    /// Every link to entities of a kind through connections the viewer may
    /// use (the lists' source column, in one query).
    async fn links_of_kind(&self, viewer: Viewer, kind: EntityKind) -> sqlx::Result<Vec<Link>>;
    async fn get_mapping(
        &self,
        workspace: WorkspaceId,
        provider: &str,
        object: &str,
    ) -> sqlx::Result<Option<StoredMapping>>;
    /// Saves with version + 1, the given signature, not stale; the audit
    /// entry in the same transaction. None: someone saved since
    /// `seen_version` (nothing written).
    async fn save_mapping(
        &self,
        workspace: WorkspaceId,
        mapping: &NewMapping<'_>,
        audit: &AuditEntry,
    ) -> sqlx::Result<Option<StoredMapping>>;
    /// Marks a mapping saved against `seen_hash` stale, keeping `kept` of
    /// its fields; false when it was already stale or saved anew meanwhile.
    async fn mark_mapping_stale(
        &self,
        workspace: WorkspaceId,
        provider: &str,
        object: &str,
        seen_hash: &str,
        kept: &[MappingField],
        audit: &AuditEntry,
    ) -> sqlx::Result<bool>;
    /// Parent records of a connection's object that no link claims.
    async fn unlinked_records(
        &self,
        workspace: WorkspaceId,
        connection_id: Uuid,
        provider: &str,
        object: &str,
        limit: i64,
    ) -> sqlx::Result<Vec<SourceRecord>>;
    /// Every live entity of a kind, with whether this provider object
    /// already links it.
    async fn all_candidates(
        &self,
        workspace: WorkspaceId,
        kind: EntityKind,
        provider: &str,
        object: &str,
    ) -> sqlx::Result<Vec<Candidate>>;
    async fn begin_entity_tx(&self) -> sqlx::Result<Box<dyn EntityTx>>;
}

/// Statements on one write transaction; dropped without `commit`, it
/// rolls back.
#[async_trait::async_trait]
pub trait EntityTx: Send {
    /// Serialises writers of one provider object's links.
    async fn lock_object(
        &mut self,
        workspace: WorkspaceId,
        provider: &str,
        object: &str,
    ) -> sqlx::Result<()>;
    /// Parent records not yet applied as they are now (no link, other
    /// content, other deletion state or another mapping), by external id.
    /// Records another connection's link claims are always included: the
    /// caller reports them skipped, like unlinked records left for review.
    async fn pending_records(&mut self, q: &PendingQuery<'_>) -> sqlx::Result<Vec<PendingRecord>>;
    async fn record(
        &mut self,
        workspace: WorkspaceId,
        connection_id: Uuid,
        object: &str,
        external_id: &str,
    ) -> sqlx::Result<Option<SourceRecord>>;
    async fn link_by_external(
        &mut self,
        workspace: WorkspaceId,
        provider: &str,
        object: &str,
        external_id: &str,
    ) -> sqlx::Result<Option<Link>>;
    async fn link_by_entity(
        &mut self,
        workspace: WorkspaceId,
        provider: &str,
        object: &str,
        entity_id: Uuid,
    ) -> sqlx::Result<Option<Link>>;
    async fn entity(
        &mut self,
        workspace: WorkspaceId,
        kind: EntityKind,
        id: Uuid,
    ) -> sqlx::Result<Option<Entity>>;
    /// Live entities whose key column (number / email) or name equals the
    /// given ones; ranking is the caller's.
    async fn candidates(
        &mut self,
        workspace: WorkspaceId,
        kind: EntityKind,
        provider: &str,
        object: &str,
        key: Option<&str>,
        name: Option<&str>,
    ) -> sqlx::Result<Vec<Candidate>>;
    async fn insert_entity(&mut self, workspace: WorkspaceId, e: &Entity) -> sqlx::Result<()>;
    async fn update_entity(&mut self, workspace: WorkspaceId, e: &Entity) -> sqlx::Result<()>;
    async fn insert_link(
        &mut self,
        workspace: WorkspaceId,
        link: &Link,
        at: OffsetDateTime,
    ) -> sqlx::Result<()>;
    async fn update_link(
        &mut self,
        workspace: WorkspaceId,
        link: &Link,
        at: OffsetDateTime,
    ) -> sqlx::Result<()>;
    async fn audit(&mut self, entry: &AuditEntry) -> sqlx::Result<()>;
    async fn commit(self: Box<Self>) -> sqlx::Result<()>;
}

impl_for_backends! {
    impl EntityStore {
        async fn list_entities(&self, viewer: Viewer, kind: EntityKind, limit: i64) -> sqlx::Result<Vec<Entity>> {
            Ok(match kind {
                EntityKind::Project => sqlx::query_as::<_, ProjectRow>(concat!(
                    "SELECT ", project_columns!(), " FROM projects p WHERE p.workspace_id = $1 AND p.deleted_at IS NULL AND ",
                    visible_entity!("project_id", "$3"),
                    " ORDER BY lower(p.name), p.id LIMIT $2"
                ))
                .bind(viewer.workspace)
                .bind(limit)
                .bind(viewer.user)
                .fetch_all(&self.pool)
                .await?
                .into_iter()
                .map(|r| r.into_candidate().entity)
                .collect(),
                EntityKind::Person => sqlx::query_as::<_, PersonRow>(concat!(
                    "SELECT ", person_columns!(), " FROM people p WHERE p.workspace_id = $1 AND p.deleted_at IS NULL AND ",
                    visible_entity!("person_id", "$3"),
                    " ORDER BY lower(p.name), p.id LIMIT $2"
                ))
                .bind(viewer.workspace)
                .bind(limit)
                .bind(viewer.user)
                .fetch_all(&self.pool)
                .await?
                .into_iter()
                .map(|r| r.into_candidate().entity)
                .collect(),
            })
        }

        async fn get_entity(&self, viewer: Viewer, kind: EntityKind, id: Uuid) -> sqlx::Result<Option<Entity>> {
            Ok(match kind {
                EntityKind::Project => sqlx::query_as::<_, ProjectRow>(concat!(
                    "SELECT ", project_columns!(), " FROM projects p WHERE p.workspace_id = $1 AND p.id = $2 AND ",
                    visible_entity!("project_id", "$3")
                ))
                .bind(viewer.workspace)
                .bind(id)
                .bind(viewer.user)
                .fetch_optional(&self.pool)
                .await?
                .map(|r| r.into_candidate().entity),
                EntityKind::Person => sqlx::query_as::<_, PersonRow>(concat!(
                    "SELECT ", person_columns!(), " FROM people p WHERE p.workspace_id = $1 AND p.id = $2 AND ",
                    visible_entity!("person_id", "$3")
                ))
                .bind(viewer.workspace)
                .bind(id)
                .bind(viewer.user)
                .fetch_optional(&self.pool)
                .await?
                .map(|r| r.into_candidate().entity),
            })
        }

        async fn entity_links(&self, viewer: Viewer, id: Uuid) -> sqlx::Result<Vec<Link>> {
            let rows: Vec<LinkRow> = sqlx::query_as(concat!(
                "SELECT ", link_columns!(), " FROM external_links \
                 WHERE workspace_id = $1 AND (project_id = $2 OR person_id = $2) AND ",
                crate::visible_connection!("connection_id", "$1", "$3"),
                " ORDER BY provider, object, external_id"
            ))
            .bind(viewer.workspace)
            .bind(id)
            .bind(viewer.user)
            .fetch_all(&self.pool)
            .await?;
            Ok(rows.into_iter().filter_map(LinkRow::into_link).collect())
        }

        async fn links_of_kind(&self, viewer: Viewer, kind: EntityKind) -> sqlx::Result<Vec<Link>> {
            let sql = match kind {
                EntityKind::Project => concat!(
                    "SELECT ", link_columns!(), " FROM external_links \
                     WHERE workspace_id = $1 AND project_id IS NOT NULL AND ",
                    crate::visible_connection!("connection_id", "$1", "$2"),
                    " ORDER BY provider, object, external_id"
                ),
                EntityKind::Person => concat!(
                    "SELECT ", link_columns!(), " FROM external_links \
                     WHERE workspace_id = $1 AND person_id IS NOT NULL AND ",
                    crate::visible_connection!("connection_id", "$1", "$2"),
                    " ORDER BY provider, object, external_id"
                ),
            };
            let rows: Vec<LinkRow> = sqlx::query_as(sql)
                .bind(viewer.workspace)
                .bind(viewer.user)
                .fetch_all(&self.pool)
                .await?;
            Ok(rows.into_iter().filter_map(LinkRow::into_link).collect())
        }

        async fn get_mapping(&self, workspace: WorkspaceId, provider: &str, object: &str) -> sqlx::Result<Option<StoredMapping>> {
            sqlx::query_as(
                "SELECT target, fields, version, field_signature_hash, stale, updated_by, updated_at FROM mappings \
                 WHERE workspace_id = $1 AND provider = $2 AND object = $3",
            )
            .bind(workspace)
            .bind(provider)
            .bind(object)
            .fetch_optional(&self.pool)
            .await
        }

        async fn save_mapping(&self, workspace: WorkspaceId, m: &NewMapping<'_>, audit: &AuditEntry) -> sqlx::Result<Option<StoredMapping>> {
            let mut tx = self.begin_write().await?;
            let current: Option<i32> = sqlx::query_scalar(
                "SELECT version FROM mappings WHERE workspace_id = $1 AND provider = $2 AND object = $3",
            )
            .bind(workspace)
            .bind(m.provider)
            .bind(m.object)
            .fetch_optional(&mut *tx)
            .await?;
            if current.unwrap_or(0) != m.seen_version {
                return Ok(None);
            }
            // The version guard also catches a save between the read and here.
            let saved: Option<StoredMapping> = sqlx::query_as(
                "INSERT INTO mappings (workspace_id, provider, object, target, fields, version, field_signature_hash, \
                 stale, updated_by, updated_at) VALUES ($1, $2, $3, $4, $5, 1, $6, false, $7, $8) \
                 ON CONFLICT (workspace_id, provider, object) DO UPDATE SET target = excluded.target, \
                 fields = excluded.fields, version = mappings.version + 1, \
                 field_signature_hash = excluded.field_signature_hash, stale = false, \
                 updated_by = excluded.updated_by, updated_at = excluded.updated_at \
                 WHERE mappings.version = $9 \
                 RETURNING target, fields, version, field_signature_hash, stale, updated_by, updated_at",
            )
            .bind(workspace)
            .bind(m.provider)
            .bind(m.object)
            .bind(m.target)
            .bind(Json(m.fields))
            .bind(m.field_signature_hash)
            .bind(m.updated_by)
            .bind(m.at)
            .bind(m.seen_version)
            .fetch_optional(&mut *tx)
            .await?;
            if saved.is_some() {
                crate::insert_audit!(&mut *tx, audit)?;
                tx.commit().await?;
            }
            Ok(saved)
        }

        async fn mark_mapping_stale(&self, workspace: WorkspaceId, provider: &str, object: &str, seen_hash: &str, kept: &[MappingField], audit: &AuditEntry) -> sqlx::Result<bool> {
            let mut tx = self.begin_write().await?;
            let marked = sqlx::query(
                "UPDATE mappings SET stale = true, fields = $5 \
                 WHERE workspace_id = $1 AND provider = $2 AND object = $3 AND field_signature_hash = $4 AND NOT stale",
            )
            .bind(workspace)
            .bind(provider)
            .bind(object)
            .bind(seen_hash)
            .bind(Json(kept))
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if marked {
                crate::insert_audit!(&mut *tx, audit)?;
                tx.commit().await?;
            }
            Ok(marked)
        }

        async fn unlinked_records(&self, workspace: WorkspaceId, connection_id: Uuid, provider: &str, object: &str, limit: i64) -> sqlx::Result<Vec<SourceRecord>> {
            sqlx::query_as(
                "SELECT r.external_id, r.data, r.content_hash, r.deleted_at IS NOT NULL AS deleted, r.is_child FROM records r \
                 WHERE r.workspace_id = $1 AND r.connection_id = $2 AND r.object = $4 AND NOT r.is_child \
                 AND NOT EXISTS (SELECT 1 FROM external_links l WHERE l.workspace_id = r.workspace_id \
                     AND l.provider = $3 AND l.object = r.object AND l.external_id = r.external_id) \
                 ORDER BY r.external_id LIMIT $5",
            )
            .bind(workspace)
            .bind(connection_id)
            .bind(provider)
            .bind(object)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
        }

        async fn all_candidates(&self, workspace: WorkspaceId, kind: EntityKind, provider: &str, object: &str) -> sqlx::Result<Vec<Candidate>> {
            Ok(match kind {
                EntityKind::Project => sqlx::query_as::<_, ProjectRow>(concat!(
                    "SELECT ", project_columns!(), ", ", linked_flag!("project_id"),
                    " FROM projects p WHERE p.workspace_id = $1 AND p.deleted_at IS NULL ORDER BY p.id"
                ))
                .bind(workspace)
                .bind(provider)
                .bind(object)
                .fetch_all(&self.pool)
                .await?
                .into_iter()
                .map(ProjectRow::into_candidate)
                .collect(),
                EntityKind::Person => sqlx::query_as::<_, PersonRow>(concat!(
                    "SELECT ", person_columns!(), ", ", linked_flag!("person_id"),
                    " FROM people p WHERE p.workspace_id = $1 AND p.deleted_at IS NULL ORDER BY p.id"
                ))
                .bind(workspace)
                .bind(provider)
                .bind(object)
                .fetch_all(&self.pool)
                .await?
                .into_iter()
                .map(PersonRow::into_candidate)
                .collect(),
            })
        }

        async fn begin_entity_tx(&self) -> sqlx::Result<Box<dyn EntityTx>> {
            Ok(Box::new(self.begin_write().await?))
        }
    }
}

/// [`EntityTx`] for a backend's transaction; `$lock` is the object lock's
/// SQL, if the backend needs one.
macro_rules! impl_entity_tx {
    ($db:ty, $lock:expr) => {
        #[async_trait::async_trait]
        impl EntityTx for sqlx::Transaction<'static, $db> {
            async fn lock_object(&mut self, workspace: WorkspaceId, provider: &str, object: &str) -> sqlx::Result<()> {
                let lock: Option<&str> = $lock;
                if let Some(sql) = lock {
                    sqlx::query(sql)
                        .bind(format!("entities/{workspace}/{provider}/{object}"))
                        .execute(&mut **self)
                        .await?;
                }
                Ok(())
            }

            async fn pending_records(&mut self, q: &PendingQuery<'_>) -> sqlx::Result<Vec<PendingRecord>> {
                let rows: Vec<PendingRow> = sqlx::query_as(PENDING_SQL)
                    .bind(q.workspace)
                    .bind(q.connection_id)
                    .bind(q.provider)
                    .bind(q.object)
                    .bind(q.after)
                    .bind(q.mapping)
                    .bind(q.limit)
                    .fetch_all(&mut **self)
                    .await?;
                Ok(rows.into_iter().map(|r| r.into_pending(q.provider, q.object)).collect())
            }

            async fn record(&mut self, workspace: WorkspaceId, connection_id: Uuid, object: &str, external_id: &str) -> sqlx::Result<Option<SourceRecord>> {
                sqlx::query_as(
                    "SELECT external_id, data, content_hash, deleted_at IS NOT NULL AS deleted, is_child FROM records \
                     WHERE workspace_id = $1 AND connection_id = $2 AND object = $3 AND external_id = $4",
                )
                .bind(workspace)
                .bind(connection_id)
                .bind(object)
                .bind(external_id)
                .fetch_optional(&mut **self)
                .await
            }

            async fn link_by_external(&mut self, workspace: WorkspaceId, provider: &str, object: &str, external_id: &str) -> sqlx::Result<Option<Link>> {
                let row: Option<LinkRow> = sqlx::query_as(concat!(
                    "SELECT ", link_columns!(), " FROM external_links \
                     WHERE workspace_id = $1 AND provider = $2 AND object = $3 AND external_id = $4"
                ))
                .bind(workspace)
                .bind(provider)
                .bind(object)
                .bind(external_id)
                .fetch_optional(&mut **self)
                .await?;
                Ok(row.and_then(LinkRow::into_link))
            }

            async fn link_by_entity(&mut self, workspace: WorkspaceId, provider: &str, object: &str, entity_id: Uuid) -> sqlx::Result<Option<Link>> {
                let row: Option<LinkRow> = sqlx::query_as(concat!(
                    "SELECT ", link_columns!(), " FROM external_links \
                     WHERE workspace_id = $1 AND provider = $2 AND object = $3 AND (project_id = $4 OR person_id = $4)"
                ))
                .bind(workspace)
                .bind(provider)
                .bind(object)
                .bind(entity_id)
                .fetch_optional(&mut **self)
                .await?;
                Ok(row.and_then(LinkRow::into_link))
            }

            async fn entity(&mut self, workspace: WorkspaceId, kind: EntityKind, id: Uuid) -> sqlx::Result<Option<Entity>> {
                Ok(match kind {
                    EntityKind::Project => sqlx::query_as::<_, ProjectRow>(concat!(
                        "SELECT ", project_columns!(), " FROM projects p WHERE p.workspace_id = $1 AND p.id = $2"
                    ))
                    .bind(workspace)
                    .bind(id)
                    .fetch_optional(&mut **self)
                    .await?
                    .map(|r| r.into_candidate().entity),
                    EntityKind::Person => sqlx::query_as::<_, PersonRow>(concat!(
                        "SELECT ", person_columns!(), " FROM people p WHERE p.workspace_id = $1 AND p.id = $2"
                    ))
                    .bind(workspace)
                    .bind(id)
                    .fetch_optional(&mut **self)
                    .await?
                    .map(|r| r.into_candidate().entity),
                })
            }

            async fn candidates(&mut self, workspace: WorkspaceId, kind: EntityKind, provider: &str, object: &str, key: Option<&str>, name: Option<&str>) -> sqlx::Result<Vec<Candidate>> {
                Ok(match kind {
                    EntityKind::Project => sqlx::query_as::<_, ProjectRow>(concat!(
                        "SELECT ", project_columns!(), ", ", linked_flag!("project_id"),
                        " FROM projects p WHERE p.workspace_id = $1 AND p.deleted_at IS NULL \
                         AND (p.number = $4 OR lower(p.name) = lower($5)) ORDER BY p.id"
                    ))
                    .bind(workspace)
                    .bind(provider)
                    .bind(object)
                    .bind(key)
                    .bind(name)
                    .fetch_all(&mut **self)
                    .await?
                    .into_iter()
                    .map(ProjectRow::into_candidate)
                    .collect(),
                    EntityKind::Person => sqlx::query_as::<_, PersonRow>(concat!(
                        "SELECT ", person_columns!(), ", ", linked_flag!("person_id"),
                        " FROM people p WHERE p.workspace_id = $1 AND p.deleted_at IS NULL \
                         AND (lower(p.email) = lower($4) OR lower(p.name) = lower($5)) ORDER BY p.id"
                    ))
                    .bind(workspace)
                    .bind(provider)
                    .bind(object)
                    .bind(key)
                    .bind(name)
                    .fetch_all(&mut **self)
                    .await?
                    .into_iter()
                    .map(PersonRow::into_candidate)
                    .collect(),
                })
            }

            async fn insert_entity(&mut self, workspace: WorkspaceId, e: &Entity) -> sqlx::Result<()> {
                match e.kind {
                    EntityKind::Project => sqlx::query(
                        "INSERT INTO projects (id, workspace_id, number, name, client_name, status, start_date, end_date, \
                         field_state, deleted_at, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                    )
                    .bind(e.id)
                    .bind(workspace)
                    .bind(e.text("number"))
                    .bind(e.text("name").unwrap_or_default())
                    .bind(e.text("client_name"))
                    .bind(if e.is_active() { "active" } else { "inactive" })
                    .bind(e.date("start_date"))
                    .bind(e.date("end_date"))
                    .bind(Json(&e.field_state))
                    .bind(e.deleted_at)
                    .bind(e.created_at)
                    .bind(e.updated_at)
                    .execute(&mut **self)
                    .await?,
                    EntityKind::Person => sqlx::query(
                        "INSERT INTO people (id, workspace_id, name, email, title, active, field_state, deleted_at, \
                         created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                    )
                    .bind(e.id)
                    .bind(workspace)
                    .bind(e.text("name").unwrap_or_default())
                    .bind(e.text("email"))
                    .bind(e.text("title"))
                    .bind(e.is_active())
                    .bind(Json(&e.field_state))
                    .bind(e.deleted_at)
                    .bind(e.created_at)
                    .bind(e.updated_at)
                    .execute(&mut **self)
                    .await?,
                };
                Ok(())
            }

            async fn update_entity(&mut self, workspace: WorkspaceId, e: &Entity) -> sqlx::Result<()> {
                match e.kind {
                    EntityKind::Project => sqlx::query(
                        "UPDATE projects SET number = $3, name = $4, client_name = $5, status = $6, start_date = $7, \
                         end_date = $8, field_state = $9, deleted_at = $10, updated_at = $11 \
                         WHERE workspace_id = $1 AND id = $2",
                    )
                    .bind(workspace)
                    .bind(e.id)
                    .bind(e.text("number"))
                    .bind(e.text("name").unwrap_or_default())
                    .bind(e.text("client_name"))
                    .bind(if e.is_active() { "active" } else { "inactive" })
                    .bind(e.date("start_date"))
                    .bind(e.date("end_date"))
                    .bind(Json(&e.field_state))
                    .bind(e.deleted_at)
                    .bind(e.updated_at)
                    .execute(&mut **self)
                    .await?,
                    EntityKind::Person => sqlx::query(
                        "UPDATE people SET name = $3, email = $4, title = $5, active = $6, field_state = $7, \
                         deleted_at = $8, updated_at = $9 WHERE workspace_id = $1 AND id = $2",
                    )
                    .bind(workspace)
                    .bind(e.id)
                    .bind(e.text("name").unwrap_or_default())
                    .bind(e.text("email"))
                    .bind(e.text("title"))
                    .bind(e.is_active())
                    .bind(Json(&e.field_state))
                    .bind(e.deleted_at)
                    .bind(e.updated_at)
                    .execute(&mut **self)
                    .await?,
                };
                Ok(())
            }

            async fn insert_link(&mut self, workspace: WorkspaceId, l: &Link, at: OffsetDateTime) -> sqlx::Result<()> {
                let (project, person) = match l.kind {
                    EntityKind::Project => (Some(l.entity_id), None),
                    EntityKind::Person => (None, Some(l.entity_id)),
                };
                sqlx::query(
                    "INSERT INTO external_links (workspace_id, provider, object, external_id, connection_id, project_id, \
                     person_id, applied_hash, applied_deleted, applied_mapping, inactive_by_source, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12)",
                )
                .bind(workspace)
                .bind(&l.provider)
                .bind(&l.object)
                .bind(&l.external_id)
                .bind(l.connection_id)
                .bind(project)
                .bind(person)
                .bind(l.applied_hash.as_deref())
                .bind(l.applied_deleted)
                .bind(l.applied_mapping.as_deref())
                .bind(l.inactive_by_source)
                .bind(at)
                .execute(&mut **self)
                .await
                .map(|_| ())
            }

            async fn update_link(&mut self, workspace: WorkspaceId, l: &Link, at: OffsetDateTime) -> sqlx::Result<()> {
                sqlx::query(
                    "UPDATE external_links SET applied_hash = $5, applied_deleted = $6, applied_mapping = $7, \
                     inactive_by_source = $8, updated_at = $9 \
                     WHERE workspace_id = $1 AND provider = $2 AND object = $3 AND external_id = $4",
                )
                .bind(workspace)
                .bind(&l.provider)
                .bind(&l.object)
                .bind(&l.external_id)
                .bind(l.applied_hash.as_deref())
                .bind(l.applied_deleted)
                .bind(l.applied_mapping.as_deref())
                .bind(l.inactive_by_source)
                .bind(at)
                .execute(&mut **self)
                .await
                .map(|_| ())
            }

            async fn audit(&mut self, entry: &AuditEntry) -> sqlx::Result<()> {
                crate::insert_audit!(&mut **self, entry).map(|_| ())
            }

            async fn commit(self: Box<Self>) -> sqlx::Result<()> {
                sqlx::Transaction::commit(*self).await
            }
        }
    };
}

// Two appliers of one object would otherwise both create an entity for the
// same new record; the second would then fail on the link's key.
impl_entity_tx!(
    sqlx::Postgres,
    Some("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
);
impl_entity_tx!(sqlx::Sqlite, None);
