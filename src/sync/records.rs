//! The records store: one row per (connection, object, external id), with
//! a content hash so an unchanged record isn't rewritten, the provider's
//! deletion marker honoured, and records a full read no longer returns
//! marked deleted — never silently kept as live.
//!
//! One statement per page (UNNEST on PostgreSQL, json_each on SQLite). On
//! delta reads unchanged rows are not touched at all; on full reads only
//! their `seen_in` moves, which is what finds the vanished ones.

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::types::Json;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::impl_for_backends;
use crate::input::{escape_nul_for_storage, escape_nul_in_text};
use crate::metrics::canonical;
use crate::storage::{PgStore, SqliteStore};
use crate::tenancy::WorkspaceId;

#[derive(Debug, Clone, PartialEq)]
pub struct RecordRow {
    pub external_id: String,
    pub data: Value,
    pub content_hash: String,
    pub is_child: bool,
    pub deleted: bool,
}

/// `rows` with one row per key, the last one given for it, in the order
/// of those last rows. A provider may list a record twice in one page (it
/// changed while being paged); PostgreSQL refuses an upsert that touches a
/// row twice and SQLite would keep whichever came last, so both get the
/// last, before the write.
pub fn last_wins<T, K: std::hash::Hash + Eq>(rows: Vec<T>, key: impl Fn(&T) -> K) -> Vec<T> {
    let mut seen = std::collections::HashSet::new();
    let mut kept: Vec<T> = rows
        .into_iter()
        .rev()
        .filter(|r| seen.insert(key(r)))
        .collect();
    kept.reverse();
    kept
}

impl RecordRow {
    /// Provider data as it comes, except U+0000, which neither database
    /// column type can hold (see [`escape_nul_for_storage`]).
    pub fn new(external_id: String, data: Value, is_child: bool, deleted: bool) -> Self {
        let mut data = canonical(&data);
        escape_nul_for_storage(&mut data);
        let external_id = escape_nul_in_text(&external_id);
        let digest = Sha256::digest(serde_json::to_vec(&data).unwrap_or_default());
        let content_hash = digest.iter().map(|b| format!("{b:02x}")).collect();
        RecordRow {
            external_id,
            data,
            content_hash,
            is_child,
            deleted,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RecordCounts {
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub deleted: u64,
}

impl From<crate::metrics::WriteCounts> for RecordCounts {
    fn from(w: crate::metrics::WriteCounts) -> Self {
        RecordCounts {
            created: w.inserted,
            updated: w.updated,
            unchanged: w.unchanged,
            deleted: w.deleted,
        }
    }
}

impl std::ops::Add for RecordCounts {
    type Output = RecordCounts;

    fn add(self, other: RecordCounts) -> RecordCounts {
        RecordCounts {
            created: self.created + other.created,
            updated: self.updated + other.updated,
            unchanged: self.unchanged + other.unchanged,
            deleted: self.deleted + other.deleted,
        }
    }
}

pub struct RecordBatch<'a> {
    pub workspace: WorkspaceId,
    pub connection_id: Uuid,
    pub object: &'a str,
    /// The read this page belongs to (and the write id of this page).
    pub run_id: Uuid,
    /// Full reads mark what they saw, so the rest can be found vanished.
    pub full_read: bool,
    pub rows: &'a [RecordRow],
    pub at: OffsetDateTime,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct StoredRecord {
    pub external_id: String,
    pub data: Json<Value>,
    pub is_child: bool,
    #[serde(with = "time::serde::rfc3339::option")]
    pub deleted_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

#[async_trait::async_trait]
pub trait RecordStore {
    async fn upsert_records(&self, batch: &RecordBatch<'_>) -> sqlx::Result<RecordCounts>;
}

#[async_trait::async_trait]
pub trait RecordReadStore {
    /// After a complete full read: live records it didn't return are deleted.
    async fn mark_vanished(
        &self,
        workspace: WorkspaceId,
        connection_id: Uuid,
        object: &str,
        run_id: Uuid,
        at: OffsetDateTime,
    ) -> sqlx::Result<u64>;
    async fn list_records(
        &self,
        workspace: WorkspaceId,
        connection_id: Uuid,
        object: &str,
        limit: i64,
    ) -> sqlx::Result<Vec<StoredRecord>>;
    async fn high_water_mark(
        &self,
        workspace: WorkspaceId,
        connection_id: Uuid,
        object: &str,
    ) -> sqlx::Result<Option<String>>;
    async fn set_high_water_mark(
        &self,
        workspace: WorkspaceId,
        connection_id: Uuid,
        object: &str,
        mark: &str,
        full: bool,
        at: OffsetDateTime,
    ) -> sqlx::Result<()>;
}

// The update rule, shared by both dialects: content or deletion state
// changed → rewrite; otherwise only a full read's `seen_in` moves.
macro_rules! record_upsert_tail {
    () => {
        "ON CONFLICT (connection_id, object, external_id) DO UPDATE SET \
         data = excluded.data, content_hash = excluded.content_hash, is_child = excluded.is_child, \
         deleted_at = CASE WHEN excluded.deleted_at IS NULL THEN NULL ELSE COALESCE(records.deleted_at, excluded.deleted_at) END, \
         seen_in = CASE WHEN $11 THEN excluded.seen_in ELSE records.seen_in END, \
         changed_by = CASE WHEN records.content_hash <> excluded.content_hash \
             OR (records.deleted_at IS NULL) <> (excluded.deleted_at IS NULL) THEN excluded.changed_by ELSE records.changed_by END, \
         updated_at = CASE WHEN records.content_hash <> excluded.content_hash \
             OR (records.deleted_at IS NULL) <> (excluded.deleted_at IS NULL) THEN excluded.updated_at ELSE records.updated_at END \
         WHERE records.content_hash <> excluded.content_hash \
             OR (records.deleted_at IS NULL) <> (excluded.deleted_at IS NULL) \
             OR ($11 AND records.seen_in <> excluded.seen_in) \
         RETURNING written_by, changed_by, deleted_at IS NOT NULL"
    };
}

const PG_UPSERT: &str = concat!(
    "INSERT INTO records (workspace_id, connection_id, object, external_id, data, content_hash, is_child, \
     deleted_at, seen_in, written_by, changed_by, first_seen_at, updated_at) \
     SELECT $1, $2, $3, t.id, t.data, t.hash, t.child, CASE WHEN t.del THEN $5 ELSE NULL END, $4, $4, $4, $5, $5 \
     FROM UNNEST($6::text[], $7::jsonb[], $8::text[], $9::bool[], $10::bool[]) AS t(id, data, hash, child, del) ",
    record_upsert_tail!()
);

const SQLITE_UPSERT: &str = concat!(
    "INSERT INTO records (workspace_id, connection_id, object, external_id, data, content_hash, is_child, \
     deleted_at, seen_in, written_by, changed_by, first_seen_at, updated_at) \
     SELECT $1, $2, $3, json_extract(j.value, '$.id'), json(json_extract(j.value, '$.data')), \
     json_extract(j.value, '$.hash'), json_extract(j.value, '$.child'), \
     CASE WHEN json_extract(j.value, '$.del') THEN $5 ELSE NULL END, $4, $4, $4, $5, $5 \
     FROM json_each($6) AS j WHERE $7 IS NULL AND $8 IS NULL AND $9 IS NULL AND $10 IS NULL ",
    record_upsert_tail!()
);

fn count(total: usize, returned: &[(Uuid, Uuid, bool)], run_id: Uuid) -> RecordCounts {
    let mut c = RecordCounts::default();
    for (written_by, changed_by, deleted) in returned {
        if *written_by == run_id {
            c.created += 1;
        } else if *changed_by == run_id && *deleted {
            c.deleted += 1;
        } else if *changed_by == run_id {
            c.updated += 1;
        }
    }
    c.unchanged = (total as u64)
        .saturating_sub(c.created)
        .saturating_sub(c.updated)
        .saturating_sub(c.deleted);
    c
}

/// One page's upsert on PostgreSQL, on any connection (a transaction in
/// the job engine, so the page and its checkpoint commit together).
pub(crate) async fn upsert_pg(
    conn: &mut sqlx::PgConnection,
    b: &RecordBatch<'_>,
) -> sqlx::Result<RecordCounts> {
    let ids: Vec<&str> = b.rows.iter().map(|r| r.external_id.as_str()).collect();
    let data: Vec<Json<&Value>> = b.rows.iter().map(|r| Json(&r.data)).collect();
    let hashes: Vec<&str> = b.rows.iter().map(|r| r.content_hash.as_str()).collect();
    let children: Vec<bool> = b.rows.iter().map(|r| r.is_child).collect();
    let deleted: Vec<bool> = b.rows.iter().map(|r| r.deleted).collect();
    let returned: Vec<(Uuid, Uuid, bool)> = sqlx::query_as(PG_UPSERT)
        .bind(b.workspace)
        .bind(b.connection_id)
        .bind(b.object)
        .bind(b.run_id)
        .bind(b.at)
        .bind(&ids)
        .bind(&data)
        .bind(&hashes)
        .bind(&children)
        .bind(&deleted)
        .bind(b.full_read)
        .fetch_all(&mut *conn)
        .await?;
    Ok(count(b.rows.len(), &returned, b.run_id))
}

/// One page's upsert on SQLite; see [`upsert_pg`].
pub(crate) async fn upsert_sqlite(
    conn: &mut sqlx::SqliteConnection,
    b: &RecordBatch<'_>,
) -> sqlx::Result<RecordCounts> {
    let rows: Vec<Value> = b
        .rows
        .iter()
        .map(|r| serde_json::json!({"id": r.external_id, "data": r.data, "hash": r.content_hash, "child": r.is_child, "del": r.deleted}))
        .collect();
    // $7-$10 are PostgreSQL's column arrays; here all rows travel in $6.
    let none: Option<&str> = None;
    let returned: Vec<(Uuid, Uuid, bool)> = sqlx::query_as(SQLITE_UPSERT)
        .bind(b.workspace)
        .bind(b.connection_id)
        .bind(b.object)
        .bind(b.run_id)
        .bind(b.at)
        .bind(Json(&rows))
        .bind(none)
        .bind(none)
        .bind(none)
        .bind(none)
        .bind(b.full_read)
        .fetch_all(&mut *conn)
        .await?;
    Ok(count(b.rows.len(), &returned, b.run_id))
}

#[async_trait::async_trait]
impl RecordStore for PgStore {
    async fn upsert_records(&self, b: &RecordBatch<'_>) -> sqlx::Result<RecordCounts> {
        let mut conn = self.pool.acquire().await?;
        upsert_pg(&mut conn, b).await
    }
}

#[async_trait::async_trait]
impl RecordStore for SqliteStore {
    async fn upsert_records(&self, b: &RecordBatch<'_>) -> sqlx::Result<RecordCounts> {
        let mut conn = self.pool.acquire().await?;
        upsert_sqlite(&mut conn, b).await
    }
}

/// Records of a full read's object that the read (`$4`) didn't return.
pub(super) const MARK_VANISHED: &str = "UPDATE records SET deleted_at = $5, changed_by = $4, updated_at = $5 \
     WHERE workspace_id = $1 AND connection_id = $2 AND object = $3 AND seen_in <> $4 AND deleted_at IS NULL";

impl_for_backends! {
    impl RecordReadStore {
        async fn mark_vanished(&self, workspace: WorkspaceId, connection_id: Uuid, object: &str, run_id: Uuid, at: OffsetDateTime) -> sqlx::Result<u64> {
            Ok(sqlx::query(MARK_VANISHED)
            .bind(workspace)
            .bind(connection_id)
            .bind(object)
            .bind(run_id)
            .bind(at)
            .execute(&self.pool)
            .await?
            .rows_affected())
        }

        async fn list_records(&self, workspace: WorkspaceId, connection_id: Uuid, object: &str, limit: i64) -> sqlx::Result<Vec<StoredRecord>> {
            sqlx::query_as(
                "SELECT external_id, data, is_child, deleted_at, updated_at FROM records \
                 WHERE workspace_id = $1 AND connection_id = $2 AND object = $3 ORDER BY external_id LIMIT $4",
            )
            .bind(workspace)
            .bind(connection_id)
            .bind(object)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
        }

        async fn high_water_mark(&self, workspace: WorkspaceId, connection_id: Uuid, object: &str) -> sqlx::Result<Option<String>> {
            let mark: Option<Option<String>> = sqlx::query_scalar(
                "SELECT high_water_mark FROM sync_state WHERE workspace_id = $1 AND connection_id = $2 AND object = $3",
            )
            .bind(workspace)
            .bind(connection_id)
            .bind(object)
            .fetch_optional(&self.pool)
            .await?;
            Ok(mark.flatten())
        }

        async fn set_high_water_mark(&self, workspace: WorkspaceId, connection_id: Uuid, object: &str, mark: &str, full: bool, at: OffsetDateTime) -> sqlx::Result<()> {
            sqlx::query(
                "INSERT INTO sync_state (workspace_id, connection_id, object, high_water_mark, last_full_sync_at, updated_at) \
                 VALUES ($1, $2, $3, $4, CASE WHEN $5 THEN $6 ELSE NULL END, $6) \
                 ON CONFLICT (connection_id, object) DO UPDATE SET high_water_mark = excluded.high_water_mark, \
                 last_full_sync_at = COALESCE(excluded.last_full_sync_at, sync_state.last_full_sync_at), \
                 updated_at = excluded.updated_at WHERE sync_state.workspace_id = excluded.workspace_id",
            )
            .bind(workspace)
            .bind(connection_id)
            .bind(object)
            .bind(mark)
            .bind(full)
            .bind(at)
            .execute(&self.pool)
            .await
            .map(|_| ())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_keys_keep_the_last_row_in_order() {
        let rows = vec![("a", 1), ("b", 1), ("a", 2), ("c", 1), ("b", 2)];
        assert_eq!(last_wins(rows, |r| r.0), vec![("a", 2), ("c", 1), ("b", 2)]);
    }

    #[test]
    fn hash_ignores_key_order_not_values() {
        let a = RecordRow::new(
            "1".into(),
            serde_json::json!({"a": 1, "b": {"y": 2, "x": 1}}),
            false,
            false,
        );
        let b = RecordRow::new(
            "1".into(),
            serde_json::json!({"b": {"x": 1, "y": 2}, "a": 1}),
            false,
            false,
        );
        let c = RecordRow::new(
            "1".into(),
            serde_json::json!({"a": 2, "b": {"x": 1, "y": 2}}),
            false,
            false,
        );
        assert_eq!(a.content_hash, b.content_hash);
        assert_ne!(a.content_hash, c.content_hash);
        assert_eq!(a.content_hash.len(), 64);
    }
}
