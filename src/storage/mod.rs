//! Storage: one [`Store`] trait, a PostgreSQL and an SQLite implementation.
//!
//! Each capability module declares its own store trait (`AccountStore`,
//! `TenancyStore`, …) and owns the SQL behind it. The trait is implemented
//! for both [`PgStore`] and [`SqliteStore`] with [`impl_for_backends!`]: the
//! method bodies are written once, and where the dialects differ the SQL is
//! chosen explicitly with `Self::sql(pg, sqlite)`. Queries are runtime
//! `query_as` over static SQL; no `sqlx::Any`.
//!
//! Timestamps are written by the application (never `DEFAULT now()`) and
//! truncated to whole seconds: SQLite keeps them as RFC 3339 text, and only a
//! fixed-width text compares correctly as a string.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use secrecy::ExposeSecret;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use time::OffsetDateTime;

use crate::audit::AuditStore;
use crate::auth::store::{AccountStore, SessionRecordStore};
use crate::config::Settings;
use crate::connections::accounts::ProviderAccountStore;
use crate::connections::store::ConnectionStore;
use crate::connectlinks::store::ConnectLinkStore;
use crate::entities::store::EntityStore;
use crate::jobs::store::JobStore;
use crate::metrics::store::{MetricReadStore, MetricStore};
use crate::rules::store::RuleStore;
use crate::sandbox::store::SandboxTokenStore;
use crate::servicekeys::store::ServiceKeyStore;
use crate::sync::leases::{LeaseStore, PageStore};
use crate::sync::limits::RateStore;
use crate::sync::records::{RecordReadStore, RecordStore};
use crate::tenancy::store::TenancyStore;
use crate::vault::store::VaultStore;
use crate::webhooks::store::WebhookStore;

pub static PG_MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");
pub static SQLITE_MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Postgres => "postgres",
            Backend::Sqlite => "sqlite",
        }
    }
}

/// Everything the application asks of a database.
#[async_trait]
pub trait Store:
    AccountStore
    + SessionRecordStore
    + TenancyStore
    + AuditStore
    + VaultStore
    + ConnectionStore
    + ProviderAccountStore
    + EntityStore
    + WebhookStore
    + ServiceKeyStore
    + MetricStore
    + MetricReadStore
    + crate::metrics::read::MetricQueryStore
    + JobStore
    + RecordStore
    + RecordReadStore
    + LeaseStore
    + PageStore
    + RateStore
    + RuleStore
    + SandboxTokenStore
    + crate::retention::RetentionStore
    + ConnectLinkStore
    + crate::sync::resync::ResyncStore
    + Send
    + Sync
    + 'static
{
    fn backend(&self) -> Backend;
    async fn ping(&self) -> sqlx::Result<()>;
    /// Migrations compiled into this binary that the database has not applied.
    async fn pending_migrations(&self) -> anyhow::Result<usize>;
    async fn migrate(&self) -> anyhow::Result<()>;
    async fn close(&self);
}

pub type DynStore = Arc<dyn Store>;

#[derive(Clone, Debug)]
pub struct PgStore {
    pub(crate) pool: PgPool,
}

#[derive(Clone, Debug)]
pub struct SqliteStore {
    pub(crate) pool: SqlitePool,
}

impl PgStore {
    const BACKEND: Backend = Backend::Postgres;
    const MIGRATOR: &'static Migrator = &PG_MIGRATOR;

    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
    /// Picks the PostgreSQL text of a query whose dialects differ.
    pub(crate) const fn sql(pg: &'static str, _sqlite: &'static str) -> &'static str {
        pg
    }

    /// A transaction that will write.
    pub(crate) async fn begin_write(
        &self,
    ) -> sqlx::Result<sqlx::Transaction<'static, sqlx::Postgres>> {
        self.pool.begin().await
    }
}

impl SqliteStore {
    const BACKEND: Backend = Backend::Sqlite;
    const MIGRATOR: &'static Migrator = &SQLITE_MIGRATOR;

    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
    pub(crate) const fn sql(_pg: &'static str, sqlite: &'static str) -> &'static str {
        sqlite
    }

    /// A transaction that will write, holding SQLite's write lock from the
    /// start. A deferred transaction that reads first fails outright
    /// (SQLITE_BUSY_SNAPSHOT) if another writer commits before it writes;
    /// IMMEDIATE makes it wait its turn (busy_timeout) instead.
    pub(crate) async fn begin_write(
        &self,
    ) -> sqlx::Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        self.pool.begin_with("BEGIN IMMEDIATE").await
    }
}

/// Implements a store trait for both backends from one body.
#[macro_export]
macro_rules! impl_for_backends {
    (impl $trait:path { $($body:tt)* }) => {
        #[async_trait::async_trait]
        impl $trait for $crate::storage::PgStore { $($body)* }
        #[async_trait::async_trait]
        impl $trait for $crate::storage::SqliteStore { $($body)* }
    };
}

/// The current time as stored: UTC, whole seconds (see the module docs).
pub fn now() -> OffsetDateTime {
    let t = OffsetDateTime::now_utc();
    t.replace_nanosecond(0).unwrap_or(t)
}

/// True when a write failed on a UNIQUE or PRIMARY KEY constraint.
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .is_some_and(|db| db.is_unique_violation())
}

/// True when a database error is about reaching the database, not about the
/// statement: the connection dropped or was refused, the pool had no
/// connection in time, or PostgreSQL is shutting down, starting up or
/// failing over (SQLSTATE class 08, 57P01–57P03). Trying again later can
/// succeed; the request or job isn't at fault.
pub fn is_transient(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08") || matches!(code.as_ref(), "57P01" | "57P02" | "57P03")
        }),
        _ => false,
    }
}

fn pending(migrator: &Migrator, applied: &[i64]) -> usize {
    migrator
        .iter()
        .filter(|m| m.migration_type.is_up_migration() && !applied.contains(&m.version))
        .count()
}

impl_for_backends! {
    impl Store {
        fn backend(&self) -> Backend {
            Self::BACKEND
        }

        async fn ping(&self) -> sqlx::Result<()> {
            sqlx::query("SELECT 1").execute(&self.pool).await.map(|_| ())
        }

        async fn pending_migrations(&self) -> anyhow::Result<usize> {
            // Before the first migration the table doesn't exist: all pending.
            let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                .fetch_all(&self.pool)
                .await
                .unwrap_or_default();
            Ok(pending(Self::MIGRATOR, &applied))
        }

        async fn migrate(&self) -> anyhow::Result<()> {
            Self::MIGRATOR
                .run(&self.pool)
                .await
                .with_context(|| format!("running {} migrations", Self::BACKEND.name()))
        }

        async fn close(&self) {
            self.pool.close().await
        }
    }
}

/// Opens the configured database (creating the embedded SQLite file and its
/// folder when needed). Does not migrate.
pub async fn connect(settings: &Settings) -> anyhow::Result<DynStore> {
    let url = settings.database.url.expose_secret();
    let acquire = Duration::from_secs(settings.database.acquire_timeout_secs);
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let options = PgConnectOptions::from_str(url).context("parsing database.url")?;
        let pool = PgPoolOptions::new()
            .max_connections(settings.database.max_connections)
            .acquire_timeout(acquire)
            .connect_with(options)
            .await
            .context("connecting to PostgreSQL (database.url)")?;
        return Ok(Arc::new(PgStore::new(pool)));
    }
    let options = if url.is_empty() {
        std::fs::create_dir_all(&settings.data_dir)
            .with_context(|| format!("creating data folder {}", settings.data_dir.display()))?;
        SqliteConnectOptions::new().filename(settings.data_dir.join("plugboard.db"))
    } else {
        SqliteConnectOptions::from_str(url).context("parsing database.url")?
    };
    let pool = sqlite_pool(options, settings.database.max_connections, acquire).await?;
    Ok(Arc::new(SqliteStore::new(pool)))
}

pub async fn sqlite_pool(
    options: SqliteConnectOptions,
    max_connections: u32,
    acquire: Duration,
) -> anyhow::Result<SqlitePool> {
    let options = options
        .create_if_missing(true)
        .foreign_keys(true)
        // WAL lets readers run beside the single writer; busy_timeout makes
        // writers queue instead of failing with SQLITE_BUSY.
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(Duration::from_secs(10));
    SqlitePoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(acquire)
        .connect_with(options)
        .await
        .context("opening the SQLite database")
}

pub fn sqlite_file_options(path: &Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new().filename(path)
}
