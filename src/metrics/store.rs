//! SQL for the metrics store. One statement per batch: `UNNEST` of column
//! arrays on PostgreSQL, `json_each` of one JSON array on SQLite. Rows whose
//! numbers didn't change are not rewritten. A `replace_day` write first
//! removes the day's rows it doesn't carry, in the same transaction, and
//! every write recomputes the daily roll-up of the days it touched.

use serde_json::Value;
use sqlx::types::Json;
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use super::{DayKey, MetricRow, RowKey, WriteCounts};
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
    pub object: String,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

pub struct MetricBatch<'a> {
    pub workspace: WorkspaceId,
    pub provider: &'a str,
    /// Part of the key: None for an internal write that names no connection.
    pub connection_id: Option<Uuid>,
    /// Part of the key: the provider object ('' when the writer names none).
    pub object: &'a str,
    pub rows: &'a [MetricRow],
    /// Merge the rows' metric keys into the stored ones (else replace them).
    pub merge: bool,
    /// Days whose stored rows (of this connection and object) that `rows`
    /// doesn't carry are removed: a day here with no rows is emptied.
    pub replace_days: &'a [DayKey],
    /// Rows of the replaced days kept besides `rows` (written earlier in
    /// the same sync job, by a page that couldn't know the day was done).
    pub also_keep: &'a [RowKey],
    pub batch_id: Uuid,
    pub at: OffsetDateTime,
    /// Changed values of days from this one on are kept in the revision
    /// log (older revisions of this provider and object are pruned); None:
    /// no revisions are recorded.
    pub revisions_from: Option<Date>,
}

#[async_trait::async_trait]
pub trait MetricStore {
    /// Writes the batch in one transaction; all or nothing.
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

// The key's connection goes through COALESCE with the nil UUID, exactly as
// in the unique index `metric_rows_key`, so rows without one dedupe too.
// A write that doesn't know the currency keeps the stored one.
const PG_UPSERT: &str = "INSERT INTO metric_rows (workspace_id, provider, connection_id, object, account_id, metric_date, \
     dimension_key, dimensions, metrics, written_by, updated_at, currency) \
     SELECT $1, $2, $3, $4, t.a, t.d, t.k, t.dim, t.m, $5, $6, t.c \
     FROM UNNEST($8::text[], $9::date[], $10::text[], $11::jsonb[], $12::jsonb[], $13::text[]) AS t(a, d, k, dim, m, c) \
     ON CONFLICT (workspace_id, provider, (COALESCE(connection_id, '00000000-0000-0000-0000-000000000000'::uuid)), \
     object, account_id, metric_date, dimension_key) DO UPDATE SET \
     dimensions = excluded.dimensions, \
     metrics = CASE WHEN $7 THEN metric_rows.metrics || excluded.metrics ELSE excluded.metrics END, \
     currency = COALESCE(excluded.currency, metric_rows.currency), \
     updated_at = excluded.updated_at \
     WHERE metric_rows.metrics IS DISTINCT FROM \
     (CASE WHEN $7 THEN metric_rows.metrics || excluded.metrics ELSE excluded.metrics END) \
     OR metric_rows.currency IS DISTINCT FROM COALESCE(excluded.currency, metric_rows.currency) \
     RETURNING written_by";

// Stored numbers the batch changes, before the upsert, in its transaction.
// The stored row is looked up per batch row through a LATERAL subquery
// (LIMIT 1 keeps PostgreSQL from flattening it): as a plain join the
// planner, guessing one row for the (workspace, provider, connection,
// object) prefix, scanned all of the object's rows and probed the batch
// for each, minutes per 10,000-row write once a workspace held 250,000
// rows. Rows whose stored numbers already contain the new ones are skipped
// before their keys are compared.
const PG_REVISIONS: &str = "INSERT INTO metric_revisions (workspace_id, provider, connection_id, object, account_id, \
     metric_date, dimension_key, metric, old_value, new_value, at) \
     SELECT $1, $2, $3, $4, t.a, t.d, t.k, o.key, \
     (o.value #>> '{}')::float8, (n.value #>> '{}')::float8, $5 \
     FROM UNNEST($6::text[], $7::date[], $8::text[], $9::jsonb[]) AS t(a, d, k, mj) \
     CROSS JOIN LATERAL (SELECT m.metrics FROM metric_rows m WHERE m.workspace_id = $1 AND m.provider = $2 \
         AND COALESCE(m.connection_id, '00000000-0000-0000-0000-000000000000'::uuid) \
             = COALESCE($3::uuid, '00000000-0000-0000-0000-000000000000'::uuid) \
         AND m.object = $4 AND m.account_id = t.a AND m.metric_date = t.d AND m.dimension_key = t.k \
         AND NOT (m.metrics @> t.mj) LIMIT 1) AS m \
     CROSS JOIN LATERAL jsonb_each(m.metrics) AS o(key, value) \
     JOIN LATERAL jsonb_each(t.mj) AS n(key, value) ON n.key = o.key \
     WHERE t.d >= $10 AND jsonb_typeof(o.value) = 'number' AND jsonb_typeof(n.value) = 'number' \
     AND o.value <> n.value";

const PG_PRUNE_REVISIONS: &str = "DELETE FROM metric_revisions WHERE workspace_id = $1 AND provider = $2 \
     AND object = $3 AND metric_date < $4";

// `WHERE true` resolves SQLite's INSERT … SELECT … ON CONFLICT ambiguity.
const SQLITE_UPSERT: &str = "INSERT INTO metric_rows (workspace_id, provider, connection_id, object, account_id, metric_date, \
     dimension_key, dimensions, metrics, written_by, updated_at, currency) \
     SELECT $1, $2, $3, $4, json_extract(j.value, '$.a'), json_extract(j.value, '$.d'), json_extract(j.value, '$.k'), \
     json(json_extract(j.value, '$.dim')), json(json_extract(j.value, '$.m')), $5, $6, json_extract(j.value, '$.c') \
     FROM json_each($8) AS j WHERE true \
     ON CONFLICT (workspace_id, provider, COALESCE(connection_id, X'00000000000000000000000000000000'), \
     object, account_id, metric_date, dimension_key) DO UPDATE SET \
     dimensions = excluded.dimensions, \
     metrics = CASE WHEN $7 THEN json_patch(metric_rows.metrics, excluded.metrics) ELSE excluded.metrics END, \
     currency = COALESCE(excluded.currency, metric_rows.currency), \
     updated_at = excluded.updated_at \
     WHERE metric_rows.metrics IS NOT \
     (CASE WHEN $7 THEN json_patch(metric_rows.metrics, excluded.metrics) ELSE excluded.metrics END) \
     OR metric_rows.currency IS NOT COALESCE(excluded.currency, metric_rows.currency) \
     RETURNING written_by";

// CROSS JOIN keeps the batch as the outer loop: with a plain JOIN SQLite
// scanned every stored row of the object per write and probed the batch
// for each (76 rows/s once an object held a few thousand rows).
const SQLITE_REVISIONS: &str = "INSERT INTO metric_revisions (workspace_id, provider, connection_id, object, account_id, \
     metric_date, dimension_key, metric, old_value, new_value, at) \
     SELECT $1, $2, $3, $4, m.account_id, m.metric_date, m.dimension_key, o.key, o.value, n.value, $5 \
     FROM json_each($6) AS j \
     CROSS JOIN metric_rows m ON m.workspace_id = $1 AND m.provider = $2 \
     AND COALESCE(m.connection_id, X'00000000000000000000000000000000') \
         = COALESCE($3, X'00000000000000000000000000000000') \
     AND m.object = $4 AND m.account_id = json_extract(j.value, '$.a') \
     AND m.metric_date = json_extract(j.value, '$.d') AND m.dimension_key = json_extract(j.value, '$.k') \
     JOIN json_each(m.metrics) AS o \
     JOIN json_each(json_extract(j.value, '$.m')) AS n ON n.key = o.key \
     WHERE json_extract(j.value, '$.d') >= $7 AND o.type IN ('integer', 'real') \
     AND n.type IN ('integer', 'real') AND o.value <> n.value";

const SQLITE_PRUNE_REVISIONS: &str = "DELETE FROM metric_revisions WHERE workspace_id = $1 AND provider = $2 \
     AND object = $3 AND metric_date < $4";

// Rows of the replaced days that the batch doesn't carry.
const PG_DELETE_VANISHED: &str = "DELETE FROM metric_rows m WHERE m.workspace_id = $1 AND m.provider = $2 \
     AND COALESCE(m.connection_id, '00000000-0000-0000-0000-000000000000'::uuid) \
         = COALESCE($3::uuid, '00000000-0000-0000-0000-000000000000'::uuid) \
     AND m.object = $4 \
     AND (m.account_id, m.metric_date) IN (SELECT * FROM UNNEST($5::text[], $6::date[])) \
     AND NOT EXISTS (SELECT 1 FROM UNNEST($7::text[], $8::date[], $9::text[]) AS k(a, d, k) \
         WHERE k.a = m.account_id AND k.d = m.metric_date AND k.k = m.dimension_key)";

const SQLITE_DELETE_VANISHED: &str = "DELETE FROM metric_rows WHERE workspace_id = $1 AND provider = $2 \
     AND COALESCE(connection_id, X'00000000000000000000000000000000') \
         = COALESCE($3, X'00000000000000000000000000000000') \
     AND object = $4 \
     AND (account_id, metric_date) IN \
         (SELECT json_extract(value, '$.a'), json_extract(value, '$.d') FROM json_each($5)) \
     AND (account_id, metric_date, dimension_key) NOT IN \
         (SELECT json_extract(value, '$.a'), json_extract(value, '$.d'), json_extract(value, '$.k') FROM json_each($6))";

// The daily roll-up (metric_daily, see its migration) of the (account, day)
// groups a write touched, recomputed from metric_rows after the write in
// its transaction: whatever the write did (insert, merge, replace, delete),
// the roll-up ends equal to the raw rows' sums. Only numeric fields are
// summed (writes accept nothing else as a metric). The groups are looked up
// one by one from the batch's list (OFFSET 0 keeps PostgreSQL from
// flattening the subquery into a scan of the object's rows).
// The rows are found per group of the list and deleted by their ctid: as a
// join (DELETE … USING UNNEST) the planner, guessing one row for the
// (workspace, provider, connection, object) prefix, walked all of the
// object's roll-up rows and compared each with the whole list (42 s per
// 10,000-row write at 400,000 rows).
const PG_DAILY_DELETE: &str = "DELETE FROM metric_daily WHERE ctid = ANY(ARRAY( \
     SELECT x.ctid FROM UNNEST($5::text[], $6::date[]) AS p(a, d) \
     CROSS JOIN LATERAL (SELECT d.ctid FROM metric_daily d WHERE d.workspace_id = $1 AND d.provider = $2 \
         AND COALESCE(d.connection_id, '00000000-0000-0000-0000-000000000000'::uuid) \
             = COALESCE($3::uuid, '00000000-0000-0000-0000-000000000000'::uuid) \
         AND d.object = $4 AND d.account_id = p.a AND d.metric_date = p.d OFFSET 0) AS x))";

const PG_DAILY_INSERT: &str = "INSERT INTO metric_daily (workspace_id, provider, connection_id, object, account_id, \
     metric_date, currency, metrics) \
     SELECT $1, $2, $3, $4, s.account_id, s.metric_date, s.currency, jsonb_object_agg(s.key, s.total) \
     FROM (SELECT m.account_id, m.metric_date, m.currency, e.key, SUM((e.value #>> '{}')::float8) AS total \
         FROM UNNEST($5::text[], $6::date[]) AS p(a, d) \
         CROSS JOIN LATERAL (SELECT r.account_id, r.metric_date, r.currency, r.metrics FROM metric_rows r \
             WHERE r.workspace_id = $1 AND r.provider = $2 \
             AND COALESCE(r.connection_id, '00000000-0000-0000-0000-000000000000'::uuid) \
                 = COALESCE($3::uuid, '00000000-0000-0000-0000-000000000000'::uuid) \
             AND r.object = $4 AND r.account_id = p.a AND r.metric_date = p.d OFFSET 0) AS m \
         CROSS JOIN LATERAL jsonb_each(m.metrics) AS e(key, value) \
         WHERE jsonb_typeof(e.value) = 'number' \
         GROUP BY 1, 2, 3, 4) s \
     GROUP BY s.account_id, s.metric_date, s.currency";

const SQLITE_DAILY_DELETE: &str = "DELETE FROM metric_daily WHERE workspace_id = $1 AND provider = $2 \
     AND COALESCE(connection_id, X'00000000000000000000000000000000') \
         = COALESCE($3, X'00000000000000000000000000000000') \
     AND object = $4 AND (account_id, metric_date) IN \
         (SELECT json_extract(value, '$.a'), json_extract(value, '$.d') FROM json_each($5))";

// CROSS JOIN: the batch's groups stay the outer loop (see SQLITE_REVISIONS).
const SQLITE_DAILY_INSERT: &str = "INSERT INTO metric_daily (workspace_id, provider, connection_id, object, account_id, \
     metric_date, currency, metrics) \
     SELECT $1, $2, $3, $4, account_id, metric_date, currency, json_group_object(key, total) \
     FROM (SELECT m.account_id, m.metric_date, m.currency, e.key AS key, SUM(e.value + 0.0) AS total \
         FROM json_each($5) AS p \
         CROSS JOIN metric_rows m ON m.workspace_id = $1 AND m.provider = $2 \
         AND COALESCE(m.connection_id, X'00000000000000000000000000000000') \
             = COALESCE($3, X'00000000000000000000000000000000') \
         AND m.object = $4 AND m.account_id = json_extract(p.value, '$.a') \
         AND m.metric_date = json_extract(p.value, '$.d') \
         CROSS JOIN json_each(m.metrics) AS e \
         WHERE e.type IN ('integer', 'real') \
         GROUP BY 1, 2, 3, 4) \
     GROUP BY account_id, metric_date, currency";

/// The (account, day) groups a batch touches, each once.
fn touched_days<'a>(batch: &'a MetricBatch<'_>) -> Vec<(&'a str, Date)> {
    let rows = batch.rows.iter().map(|r| (r.account_id.as_str(), r.date));
    let replaced = batch
        .replace_days
        .iter()
        .map(|d| (d.account_id.as_str(), d.date));
    let set: std::collections::BTreeSet<(&str, Date)> = rows.chain(replaced).collect();
    set.into_iter().collect()
}

/// Recomputes the roll-up of the batch's days (PostgreSQL).
async fn roll_up_pg(conn: &mut sqlx::PgConnection, batch: &MetricBatch<'_>) -> sqlx::Result<()> {
    for chunk in touched_days(batch).chunks(CHUNK) {
        let accounts: Vec<&str> = chunk.iter().map(|t| t.0).collect();
        let dates: Vec<Date> = chunk.iter().map(|t| t.1).collect();
        for sql in [PG_DAILY_DELETE, PG_DAILY_INSERT] {
            sqlx::query(sql)
                .bind(batch.workspace)
                .bind(batch.provider)
                .bind(batch.connection_id)
                .bind(batch.object)
                .bind(&accounts)
                .bind(&dates)
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(())
}

/// Recomputes the roll-up of the batch's days (SQLite).
async fn roll_up_sqlite(
    conn: &mut sqlx::SqliteConnection,
    batch: &MetricBatch<'_>,
) -> sqlx::Result<()> {
    for chunk in touched_days(batch).chunks(CHUNK) {
        let days: Vec<Value> = chunk
            .iter()
            .map(|(a, d)| serde_json::json!({"a": a, "d": d.to_string()}))
            .collect();
        for sql in [SQLITE_DAILY_DELETE, SQLITE_DAILY_INSERT] {
            sqlx::query(sql)
                .bind(batch.workspace)
                .bind(batch.provider)
                .bind(batch.connection_id)
                .bind(batch.object)
                .bind(Json(&days))
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(())
}

/// Serialises `replace_day` writes of one (workspace, provider, connection,
/// object) on PostgreSQL: two of them interleaving their delete and insert
/// could each keep the other's rows. (SQLite has one writer at a time.)
const PG_REPLACE_LOCK: &str = "SELECT pg_advisory_xact_lock(hashtextextended($1, 72720502))";

fn replace_lock_key(batch: &MetricBatch<'_>) -> String {
    format!(
        "{}/{}/{}/{}",
        batch.workspace.0,
        batch.provider,
        batch.connection_id.unwrap_or_default(),
        batch.object
    )
}

/// Rows per statement: bounds one statement's memory on both databases.
const CHUNK: usize = 10_000;

fn counts(total: usize, returned: &[Uuid], batch_id: Uuid) -> WriteCounts {
    let inserted = returned.iter().filter(|w| **w == batch_id).count() as u64;
    let updated = (returned.len() as u64).saturating_sub(inserted);
    WriteCounts {
        written: total as u64,
        inserted,
        updated,
        unchanged: (total as u64)
            .saturating_sub(inserted)
            .saturating_sub(updated),
        deleted: 0,
    }
}

/// Removes the replaced days' rows the batch doesn't carry (PostgreSQL).
async fn delete_vanished_pg(
    conn: &mut sqlx::PgConnection,
    batch: &MetricBatch<'_>,
) -> sqlx::Result<u64> {
    if batch.replace_days.is_empty() {
        return Ok(0);
    }
    sqlx::query(PG_REPLACE_LOCK)
        .bind(replace_lock_key(batch))
        .execute(&mut *conn)
        .await?;
    let day_accounts: Vec<&str> = batch
        .replace_days
        .iter()
        .map(|d| d.account_id.as_str())
        .collect();
    let day_dates: Vec<Date> = batch.replace_days.iter().map(|d| d.date).collect();
    let kept = || {
        let rows = batch
            .rows
            .iter()
            .map(|r| (r.account_id.as_str(), r.date, r.dimension_key.as_str()));
        let also = batch
            .also_keep
            .iter()
            .map(|k| (k.account_id.as_str(), k.date, k.dimension_key.as_str()));
        rows.chain(also)
    };
    let accounts: Vec<&str> = kept().map(|k| k.0).collect();
    let dates: Vec<Date> = kept().map(|k| k.1).collect();
    let keys: Vec<&str> = kept().map(|k| k.2).collect();
    let deleted = sqlx::query(PG_DELETE_VANISHED)
        .bind(batch.workspace)
        .bind(batch.provider)
        .bind(batch.connection_id)
        .bind(batch.object)
        .bind(&day_accounts)
        .bind(&day_dates)
        .bind(&accounts)
        .bind(&dates)
        .bind(&keys)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    Ok(deleted)
}

/// Removes the replaced days' rows the batch doesn't carry (SQLite).
async fn delete_vanished_sqlite(
    conn: &mut sqlx::SqliteConnection,
    batch: &MetricBatch<'_>,
) -> sqlx::Result<u64> {
    if batch.replace_days.is_empty() {
        return Ok(0);
    }
    let days: Vec<Value> = batch
        .replace_days
        .iter()
        .map(|d| serde_json::json!({"a": d.account_id, "d": d.date.to_string()}))
        .collect();
    let keep: Vec<Value> = batch
        .rows
        .iter()
        .map(|r| (&r.account_id, r.date, &r.dimension_key))
        .chain(
            batch
                .also_keep
                .iter()
                .map(|k| (&k.account_id, k.date, &k.dimension_key)),
        )
        .map(|(a, d, k)| serde_json::json!({"a": a, "d": d.to_string(), "k": k}))
        .collect();
    let deleted = sqlx::query(SQLITE_DELETE_VANISHED)
        .bind(batch.workspace)
        .bind(batch.provider)
        .bind(batch.connection_id)
        .bind(batch.object)
        .bind(Json(&days))
        .bind(Json(&keep))
        .execute(&mut *conn)
        .await?
        .rows_affected();
    Ok(deleted)
}

/// A batch's upsert on PostgreSQL, on any connection (a transaction: the
/// internal API's request, or a sync page with its checkpoint).
pub(crate) async fn upsert_pg(
    conn: &mut sqlx::PgConnection,
    batch: &MetricBatch<'_>,
) -> sqlx::Result<WriteCounts> {
    let mut total = WriteCounts {
        deleted: delete_vanished_pg(conn, batch).await?,
        ..WriteCounts::default()
    };
    for chunk in batch.rows.chunks(CHUNK) {
        let accounts: Vec<&str> = chunk.iter().map(|r| r.account_id.as_str()).collect();
        let dates: Vec<Date> = chunk.iter().map(|r| r.date).collect();
        let keys: Vec<&str> = chunk.iter().map(|r| r.dimension_key.as_str()).collect();
        let dims: Vec<Json<&Value>> = chunk.iter().map(|r| Json(&r.dimensions)).collect();
        let metrics: Vec<Json<&Value>> = chunk.iter().map(|r| Json(&r.metrics)).collect();
        let currencies: Vec<Option<&str>> = chunk.iter().map(|r| r.currency.as_deref()).collect();
        if let Some(from) = batch.revisions_from {
            sqlx::query(PG_REVISIONS)
                .bind(batch.workspace)
                .bind(batch.provider)
                .bind(batch.connection_id)
                .bind(batch.object)
                .bind(batch.at)
                .bind(&accounts)
                .bind(&dates)
                .bind(&keys)
                .bind(&metrics)
                .bind(from)
                .execute(&mut *conn)
                .await?;
        }
        let returned: Vec<Uuid> = sqlx::query_scalar(PG_UPSERT)
            .bind(batch.workspace)
            .bind(batch.provider)
            .bind(batch.connection_id)
            .bind(batch.object)
            .bind(batch.batch_id)
            .bind(batch.at)
            .bind(batch.merge)
            .bind(&accounts)
            .bind(&dates)
            .bind(&keys)
            .bind(&dims)
            .bind(&metrics)
            .bind(&currencies)
            .fetch_all(&mut *conn)
            .await?;
        total = total + counts(chunk.len(), &returned, batch.batch_id);
    }
    roll_up_pg(conn, batch).await?;
    if let Some(from) = batch.revisions_from {
        sqlx::query(PG_PRUNE_REVISIONS)
            .bind(batch.workspace)
            .bind(batch.provider)
            .bind(batch.object)
            .bind(from)
            .execute(&mut *conn)
            .await?;
    }
    Ok(total)
}

/// A batch's upsert on SQLite; see [`upsert_pg`].
pub(crate) async fn upsert_sqlite(
    conn: &mut sqlx::SqliteConnection,
    batch: &MetricBatch<'_>,
) -> sqlx::Result<WriteCounts> {
    let mut total = WriteCounts {
        deleted: delete_vanished_sqlite(conn, batch).await?,
        ..WriteCounts::default()
    };
    for chunk in batch.rows.chunks(CHUNK) {
        let rows: Vec<Value> = chunk
            .iter()
            .map(|r| {
                serde_json::json!({
                    "a": r.account_id, "d": r.date.to_string(), "k": r.dimension_key,
                    "dim": r.dimensions, "m": r.metrics, "c": r.currency,
                })
            })
            .collect();
        if let Some(from) = batch.revisions_from {
            sqlx::query(SQLITE_REVISIONS)
                .bind(batch.workspace)
                .bind(batch.provider)
                .bind(batch.connection_id)
                .bind(batch.object)
                .bind(batch.at)
                .bind(Json(&rows))
                .bind(from)
                .execute(&mut *conn)
                .await?;
        }
        let returned: Vec<Uuid> = sqlx::query_scalar(SQLITE_UPSERT)
            .bind(batch.workspace)
            .bind(batch.provider)
            .bind(batch.connection_id)
            .bind(batch.object)
            .bind(batch.batch_id)
            .bind(batch.at)
            .bind(batch.merge)
            .bind(Json(&rows))
            .fetch_all(&mut *conn)
            .await?;
        total = total + counts(chunk.len(), &returned, batch.batch_id);
    }
    roll_up_sqlite(conn, batch).await?;
    if let Some(from) = batch.revisions_from {
        sqlx::query(SQLITE_PRUNE_REVISIONS)
            .bind(batch.workspace)
            .bind(batch.provider)
            .bind(batch.object)
            .bind(from)
            .execute(&mut *conn)
            .await?;
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
                "SELECT account_id, metric_date, dimensions, metrics, connection_id, object, updated_at FROM metric_rows \
                 WHERE workspace_id = $1 AND provider = $2 AND metric_date >= $3 AND metric_date <= $4 \
                 ORDER BY metric_date, account_id, dimension_key, object LIMIT $5",
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
