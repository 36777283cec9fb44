//! SQL for the `secrets` table, and the vault operations built on it.

use time::OffsetDateTime;
use uuid::Uuid;

use super::{KeyRing, Place, Secret, VaultError};
use crate::impl_for_backends;
use crate::storage::now;
use crate::tenancy::WorkspaceId;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SealedRow {
    pub id: Uuid,
    pub workspace_id: WorkspaceId,
    pub owner_kind: String,
    pub owner_id: Uuid,
    pub field: String,
    pub key_id: String,
    pub ciphertext: String,
}

impl SealedRow {
    pub fn place(&self) -> Place<'_> {
        Place {
            workspace_id: self.workspace_id,
            owner_kind: &self.owner_kind,
            owner_id: self.owner_id,
            field: &self.field,
        }
    }
}

/// What one rotation batch did. `last_id` is the keyset cursor: rows that
/// can't be re-sealed (key already retired) are passed over, not retried
/// forever.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RotateBatch {
    pub scanned: u64,
    pub rotated: u64,
    pub failed: u64,
    pub last_id: Option<Uuid>,
}

/// Re-seals one row: `Some((key id, ciphertext))`, or `None` when it can't.
pub type Resealer<'a> = &'a (dyn Fn(&SealedRow) -> Option<(String, String)> + Send + Sync);

/// A sealed value ready to be written beside the row it belongs to.
#[derive(Debug, Clone)]
pub struct SealedField {
    pub field: &'static str,
    pub key_id: String,
    pub ciphertext: String,
}

pub(crate) const UPSERT_SEALED_SQL: &str = "INSERT INTO secrets \
     (id, workspace_id, owner_kind, owner_id, field, key_id, ciphertext, updated_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
     ON CONFLICT (owner_kind, owner_id, field) DO UPDATE SET key_id = excluded.key_id, \
     ciphertext = excluded.ciphertext, updated_at = excluded.updated_at \
     WHERE secrets.workspace_id = excluded.workspace_id";

/// Writes sealed fields of one owner on the given executor (a transaction),
/// so secrets change together with the row that owns them.
#[macro_export]
macro_rules! upsert_sealed {
    ($executor:expr, $workspace:expr, $owner_kind:expr, $owner_id:expr, $fields:expr, $at:expr) => {{
        let mut result: sqlx::Result<()> = Ok(());
        for sealed in $fields {
            let sealed: &$crate::vault::store::SealedField = sealed;
            if let Err(e) = sqlx::query($crate::vault::store::UPSERT_SEALED_SQL)
                .bind(uuid::Uuid::now_v7())
                .bind($workspace)
                .bind($owner_kind)
                .bind($owner_id)
                .bind(sealed.field)
                .bind(&sealed.key_id)
                .bind(&sealed.ciphertext)
                .bind($at)
                .execute(&mut *$executor)
                .await
            {
                result = Err(e);
                break;
            }
        }
        result
    }};
}

/// Seals `secret` for `place`, ready for [`upsert_sealed!`].
pub fn seal_field(
    ring: &KeyRing,
    place: &Place<'_>,
    field: &'static str,
    secret: &Secret,
) -> Result<SealedField, VaultError> {
    debug_assert_eq!(place.field, field);
    Ok(SealedField {
        field,
        key_id: ring.primary_key_id().to_owned(),
        ciphertext: ring.seal_secret(secret, place)?,
    })
}

#[async_trait::async_trait]
pub trait VaultStore {
    async fn put_sealed(
        &self,
        place: &Place<'_>,
        key_id: &str,
        ciphertext: &str,
        at: OffsetDateTime,
    ) -> sqlx::Result<()>;
    async fn get_sealed(&self, place: &Place<'_>) -> sqlx::Result<Option<String>>;
    async fn delete_sealed(
        &self,
        workspace: WorkspaceId,
        owner_kind: &str,
        owner_id: Uuid,
    ) -> sqlx::Result<u64>;
    async fn count_sealed_by_key(&self) -> sqlx::Result<Vec<(String, i64)>>;
    /// Re-seals up to `limit` rows not under `primary`, after `after`, in one
    /// transaction; each row is replaced only if unchanged since it was read.
    async fn rotate_batch(
        &self,
        primary: &str,
        after: Uuid,
        limit: i64,
        reseal: Resealer<'_>,
    ) -> sqlx::Result<RotateBatch>;
}

impl_for_backends! {
    impl VaultStore {
        async fn put_sealed(&self, place: &Place<'_>, key_id: &str, ciphertext: &str, at: OffsetDateTime) -> sqlx::Result<()> {
            sqlx::query(UPSERT_SEALED_SQL)
            .bind(Uuid::now_v7())
            .bind(place.workspace_id)
            .bind(place.owner_kind)
            .bind(place.owner_id)
            .bind(place.field)
            .bind(key_id)
            .bind(ciphertext)
            .bind(at)
            .execute(&self.pool)
            .await
            .map(|_| ())
        }

        async fn get_sealed(&self, place: &Place<'_>) -> sqlx::Result<Option<String>> {
            sqlx::query_scalar(
                "SELECT ciphertext FROM secrets WHERE workspace_id = $1 AND owner_kind = $2 \
                 AND owner_id = $3 AND field = $4",
            )
            .bind(place.workspace_id)
            .bind(place.owner_kind)
            .bind(place.owner_id)
            .bind(place.field)
            .fetch_optional(&self.pool)
            .await
        }

        async fn delete_sealed(&self, workspace: WorkspaceId, owner_kind: &str, owner_id: Uuid) -> sqlx::Result<u64> {
            Ok(sqlx::query("DELETE FROM secrets WHERE workspace_id = $1 AND owner_kind = $2 AND owner_id = $3")
                .bind(workspace)
                .bind(owner_kind)
                .bind(owner_id)
                .execute(&self.pool)
                .await?
                .rows_affected())
        }

        async fn count_sealed_by_key(&self) -> sqlx::Result<Vec<(String, i64)>> {
            sqlx::query_as("SELECT key_id, COUNT(*) FROM secrets GROUP BY key_id ORDER BY key_id")
                .fetch_all(&self.pool)
                .await
        }

        async fn rotate_batch(&self, primary: &str, after: Uuid, limit: i64, reseal: Resealer<'_>) -> sqlx::Result<RotateBatch> {
            let mut tx = self.begin_write().await?;
            // SKIP LOCKED lets two rotations (or a rotation and a server
            // writing a fresh secret) proceed without blocking each other.
            let rows: Vec<SealedRow> = sqlx::query_as(Self::sql(
                "SELECT id, workspace_id, owner_kind, owner_id, field, key_id, ciphertext FROM secrets \
                 WHERE key_id <> $1 AND id > $2 ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED",
                "SELECT id, workspace_id, owner_kind, owner_id, field, key_id, ciphertext FROM secrets \
                 WHERE key_id <> $1 AND id > $2 ORDER BY id LIMIT $3",
            ))
            .bind(primary)
            .bind(after)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
            let mut batch = RotateBatch { last_id: rows.last().map(|r| r.id), ..RotateBatch::default() };
            let at = now();
            for row in &rows {
                batch.scanned += 1;
                let Some((key_id, ciphertext)) = reseal(row) else {
                    batch.failed += 1;
                    continue;
                };
                let changed = sqlx::query(
                    "UPDATE secrets SET key_id = $2, ciphertext = $3, updated_at = $4 \
                     WHERE id = $1 AND ciphertext = $5",
                )
                .bind(row.id)
                .bind(&key_id)
                .bind(&ciphertext)
                .bind(at)
                .bind(&row.ciphertext)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                batch.rotated += changed;
            }
            tx.commit().await?;
            Ok(batch)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VaultOpError {
    #[error(transparent)]
    Crypto(#[from] VaultError),
    #[error("vault storage: {0}")]
    Db(#[from] sqlx::Error),
}

impl From<VaultOpError> for crate::error::AppError {
    fn from(err: VaultOpError) -> Self {
        crate::error::AppError::internal(anyhow::Error::new(err))
    }
}

/// Seals and stores a secret at its place (replacing what was there).
pub async fn put_secret<S: VaultStore + ?Sized>(
    store: &S,
    ring: &KeyRing,
    place: &Place<'_>,
    secret: &Secret,
) -> Result<(), VaultOpError> {
    let sealed = ring.seal_secret(secret, place)?;
    store
        .put_sealed(place, ring.primary_key_id(), &sealed, now())
        .await?;
    Ok(())
}

pub async fn get_secret<S: VaultStore + ?Sized>(
    store: &S,
    ring: &KeyRing,
    place: &Place<'_>,
) -> Result<Option<Secret>, VaultOpError> {
    match store.get_sealed(place).await? {
        Some(sealed) => Ok(Some(ring.open_secret(&sealed, place)?)),
        None => Ok(None),
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RotateReport {
    pub batches: u64,
    pub rotated: u64,
    pub failed: u64,
}

/// Re-seals every secret not under the primary key, batch by batch. Each
/// batch commits on its own, so an interrupted run loses nothing and the
/// next run picks up what is left. `max_batches` bounds one run (tests use
/// it to simulate an interruption).
pub async fn rotate_all<S: VaultStore + ?Sized>(
    store: &S,
    ring: &KeyRing,
    batch_size: u32,
    max_batches: Option<u64>,
    mut on_batch: impl FnMut(&RotateBatch),
) -> Result<RotateReport, VaultOpError> {
    let primary = ring.primary_key_id().to_owned();
    let reseal = |row: &SealedRow| -> Option<(String, String)> {
        let place = row.place();
        let plaintext = ring.open(&row.ciphertext, &place).ok()?;
        let sealed = ring.seal(&plaintext, &place).ok()?;
        Some((ring.primary_key_id().to_owned(), sealed))
    };
    let mut report = RotateReport::default();
    let mut after = Uuid::nil();
    loop {
        if max_batches.is_some_and(|max| report.batches >= max) {
            break;
        }
        let batch = store
            .rotate_batch(&primary, after, i64::from(batch_size), &reseal)
            .await?;
        if batch.scanned == 0 {
            break;
        }
        report.batches += 1;
        report.rotated += batch.rotated;
        report.failed += batch.failed;
        on_batch(&batch);
        match batch.last_id {
            Some(id) => after = id,
            None => break,
        }
    }
    Ok(report)
}
