//! SQL for the metrics store. One statement per batch: `UNNEST` of column
//! arrays on PostgreSQL, `json_each` of one JSON array on SQLite. Rows whose
//! numbers didn't change are not rewritten.

use serde_json::Value;
use sqlx::types::Json;
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use super::{MetricRow, WriteCounts};
use crate::impl_for_backends;
use crate::storage::{PgStore, SqliteStore};
use crate::tenancy::WorkspaceId;

#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct StoredMetricRow {
    pub account_id: String,
    pub metric_date: Date,
    pub dimensions: Json<Value>,
    pub metrics: Json<Value>,
    pub connection_id: Option<Uuid>,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

pub struct MetricBatch<'a> {
    pub workspace: WorkspaceId,
    pub provider: &'a str,
    pub connection_id: Option<Uuid>,
    pub rows: &'a [MetricRow],
    pub batch_id: Uuid,
    pub at: OffsetDateTime,
}

#[async_trait::async_trait]
pub trait MetricStore {
    /// Upserts all rows in one transaction; all or nothing.
    async fn upsert_metrics(&self, batch: &MetricBatch<'_>) -> sqlx::Result<WriteCounts>;
}

/// Reads are the same SQL on both backends.
#[async_trait::async_trait]
pub trait MetricReadStore {
    async fn list_metrics(
        &self,
        workspace: WorkspaceId,
        provider: &str,
        from: Date,
        to: Date,
        limit: i64,
    ) -> sqlx::Result<Vec<StoredMetricRow>>;
    async fn count_metrics(&self, workspace: WorkspaceId, provider: &str) -> sqlx::Result<i64>;
}

const PG_UPSERT: &str = "INSERT INTO metric_rows (workspace_id, provider, account_id, metric_date, dimension_key, \
     dimensions, metrics, connection_id, written_by, updated_at) \
     SELECT $1, $2, t.a, t.d, t.k, t.dim, t.m, $3, $4, $5 \
     FROM UNNEST($6::text[], $7::date[], $8::text[], $9::jsonb[], $10::jsonb[]) AS t(a, d, k, dim, m) \
     ON CONFLICT (workspace_id, provider, account_id, metric_date, dimension_key) DO UPDATE SET \
     dimensions = excluded.dimensions, metrics = excluded.metrics, \
     connection_id = COALESCE(excluded.connection_id, metric_rows.connection_id), updated_at = excluded.updated_at \
     WHERE metric_rows.metrics IS DISTINCT FROM excluded.metrics \
     RETURNING written_by";

// `WHERE true` resolves SQLite's INSERT … SELECT … ON CONFLICT ambiguity.
const SQLITE_UPSERT: &str = "INSERT INTO metric_rows (workspace_id, provider, account_id, metric_date, dimension_key, \
     dimensions, metrics, connection_id, written_by, updated_at) \
     SELECT $1, $2, json_extract(j.value, '$.a'), json_extract(j.value, '$.d'), json_extract(j.value, '$.k'), \
     json(json_extract(j.value, '$.dim')), json(json_extract(j.value, '$.m')), $3, $4, $5 \
     FROM json_each($6) AS j WHERE true \
     ON CONFLICT (workspace_id, provider, account_id, metric_date, dimension_key) DO UPDATE SET \
     dimensions = excluded.dimensions, metrics = excluded.metrics, \
     connection_id = COALESCE(excluded.connection_id, metric_rows.connection_id), updated_at = excluded.updated_at \
     WHERE metric_rows.metrics IS NOT excluded.metrics \
     RETURNING written_by";

/// Rows per statement: bounds one statement's memory on both databases.
const CHUNK: usize = 10_000;

fn counts(total: usize, returned: &[Uuid], batch_id: Uuid) -> WriteCounts {
    let inserted = returned.iter().filter(|w| **w == batch_id).count() as u64;
    let updated = returned.len() as u64 - inserted;
    WriteCounts {
        written: total as u64,
        inserted,
        updated,
        unchanged: total as u64 - inserted - updated,
    }
}

/// A batch's upsert on PostgreSQL, on any connection (a transaction: the
/// internal API's request, or a sync page with its checkpoint).
pub(crate) async fn upsert_pg(
    conn: &mut sqlx::PgConnection,
    batch: &MetricBatch<'_>,
) -> sqlx::Result<WriteCounts> {
    let mut total = WriteCounts::default();
    for chunk in batch.rows.chunks(CHUNK) {
        let accounts: Vec<&str> = chunk.iter().map(|r| r.account_id.as_str()).collect();
        let dates: Vec<Date> = chunk.iter().map(|r| r.date).collect();
        let keys: Vec<&str> = chunk.iter().map(|r| r.dimension_key.as_str()).collect();
        let dims: Vec<Json<&Value>> = chunk.iter().map(|r| Json(&r.dimensions)).collect();
        let metrics: Vec<Json<&Value>> = chunk.iter().map(|r| Json(&r.metrics)).collect();
        let returned: Vec<Uuid> = sqlx::query_scalar(PG_UPSERT)
            .bind(batch.workspace)
            .bind(batch.provider)
            .bind(batch.connection_id)
            .bind(batch.batch_id)
            .bind(batch.at)
            .bind(&accounts)
            .bind(&dates)
            .bind(&keys)
            .bind(&dims)
            .bind(&metrics)
            .fetch_all(&mut *conn)
            .await?;
        total = total + counts(chunk.len(), &returned, batch.batch_id);
    }
    Ok(total)
}

/// A batch's upsert on SQLite; see [`upsert_pg`].
pub(crate) async fn upsert_sqlite(
    conn: &mut sqlx::SqliteConnection,
    batch: &MetricBatch<'_>,
) -> sqlx::Result<WriteCounts> {
    let mut total = WriteCounts::default();
    for chunk in batch.rows.chunks(CHUNK) {
        let rows: Vec<Value> = chunk
            .iter()
            .map(|r| {
                serde_json::json!({
                    "a": r.account_id, "d": r.date.to_string(), "k": r.dimension_key,
                    "dim": r.dimensions, "m": r.metrics,
                })
            })
            .collect();
        let returned: Vec<Uuid> = sqlx::query_scalar(SQLITE_UPSERT)
            .bind(batch.workspace)
            .bind(batch.provider)
            .bind(batch.connection_id)
            .bind(batch.batch_id)
            .bind(batch.at)
            .bind(Json(&rows))
            .fetch_all(&mut *conn)
            .await?;
        total = total + counts(chunk.len(), &returned, batch.batch_id);
    }
    Ok(total)
}

#[async_trait::async_trait]
impl MetricStore for PgStore {
    async fn upsert_metrics(&self, batch: &MetricBatch<'_>) -> sqlx::Result<WriteCounts> {
        let mut tx = self.begin_write().await?;
        let total = upsert_pg(&mut tx, batch).await?;
        tx.commit().await?;
        Ok(total)
    }
}

#[async_trait::async_trait]
impl MetricStore for SqliteStore {
    async fn upsert_metrics(&self, batch: &MetricBatch<'_>) -> sqlx::Result<WriteCounts> {
        let mut tx = self.begin_write().await?;
        let total = upsert_sqlite(&mut tx, batch).await?;
        tx.commit().await?;
        Ok(total)
    }
}

impl_for_backends! {
    impl MetricReadStore {
        async fn list_metrics(&self, workspace: WorkspaceId, provider: &str, from: Date, to: Date, limit: i64) -> sqlx::Result<Vec<StoredMetricRow>> {
            sqlx::query_as(
                "SELECT account_id, metric_date, dimensions, metrics, connection_id, updated_at FROM metric_rows \
                 WHERE workspace_id = $1 AND provider = $2 AND metric_date >= $3 AND metric_date <= $4 \
                 ORDER BY metric_date, account_id, dimension_key LIMIT $5",
            )
            .bind(workspace)
            .bind(provider)
            .bind(from)
            .bind(to)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
        }

        async fn count_metrics(&self, workspace: WorkspaceId, provider: &str) -> sqlx::Result<i64> {
            sqlx::query_scalar("SELECT COUNT(*) FROM metric_rows WHERE workspace_id = $1 AND provider = $2")
                .bind(workspace)
                .bind(provider)
                .fetch_one(&self.pool)
                .await
        }
    }
}
