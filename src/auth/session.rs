//! Server-side sessions: tower-sessions drives the cookie and the session
//! lifecycle; [`DbSessionStore`] keeps the records in our own database.
//! Only a SHA-256 of the session id is stored, so a copy of the sessions
//! table can't be replayed as cookies.

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tower_sessions::Session;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, ExpiredDeletion, SessionStore};
use uuid::Uuid;

use crate::error::{AppError, AppResult};
use crate::storage::{DynStore, now};
use crate::tenancy::WorkspaceId;

pub const SESSION_COOKIE: &str = "plugboard_session";
pub const USER_KEY: &str = "uid";
pub const WORKSPACE_KEY: &str = "ws";
const CSRF_KEY: &str = "csrf";
const FLASH_KEY: &str = "flash";
pub const CSRF_FIELD: &str = "_csrf";

/// A session whose data is unchanged is written again only once its expiry
/// has slid this far: sliding expiry stays right to within a minute, and a
/// page view no longer costs a database write.
const EXPIRY_WRITE_EVERY: time::Duration = time::Duration::minutes(1);

#[derive(Clone)]
pub struct DbSessionStore {
    store: DynStore,
    /// What this process last read or wrote per session (by id hash): the
    /// data's fingerprint and the expiry stored.
    known: std::sync::Arc<dashmap::DashMap<Vec<u8>, (u64, time::OffsetDateTime)>>,
}

impl std::fmt::Debug for DbSessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DbSessionStore")
    }
}

impl DbSessionStore {
    pub fn new(store: DynStore) -> Self {
        Self {
            store,
            known: std::sync::Arc::default(),
        }
    }

    fn remember(&self, key: &[u8], record: &Record) {
        let entry = (fingerprint(record), record.expiry_date);
        self.known.insert(key.to_vec(), entry);
    }
}

/// The session data's fingerprint, independent of key order.
fn fingerprint(record: &Record) -> u64 {
    use std::hash::{Hash, Hasher};
    let ordered: std::collections::BTreeMap<_, _> = record.data.iter().collect();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_string(&ordered)
        .unwrap_or_default()
        .hash(&mut hasher);
    hasher.finish()
}

/// Whether a save must reach the database: the data changed, or the expiry
/// slid by at least [`EXPIRY_WRITE_EVERY`] since the stored one.
fn must_write(known: Option<(u64, time::OffsetDateTime)>, record: &Record) -> bool {
    match known {
        Some((data, stored_expiry)) => {
            data != fingerprint(record) || record.expiry_date - stored_expiry >= EXPIRY_WRITE_EVERY
        }
        None => true,
    }
}

fn id_hash(id: &Id) -> Vec<u8> {
    Sha256::digest(id.0.to_le_bytes()).to_vec()
}

fn user_of(record: &Record) -> Option<Uuid> {
    record
        .data
        .get(USER_KEY)
        .and_then(|v| serde_json::from_value(v.clone()).ok())
}

fn backend(err: sqlx::Error) -> session_store::Error {
    session_store::Error::Backend(err.to_string())
}

#[async_trait]
impl SessionStore for DbSessionStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        // A 128-bit collision is practically impossible, but never overwrite.
        loop {
            let inserted = self
                .store
                .session_insert(
                    &id_hash(&record.id),
                    user_of(record),
                    &record.data,
                    record.expiry_date,
                )
                .await
                .map_err(backend)?;
            if inserted {
                self.remember(&id_hash(&record.id), record);
                return Ok(());
            }
            record.id = Id::default();
        }
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let key = id_hash(&record.id);
        let known = self.known.get(&key).map(|e| *e);
        if !must_write(known, record) {
            return Ok(());
        }
        self.store
            .session_update(&key, user_of(record), &record.data, record.expiry_date)
            .await
            .map_err(backend)?;
        self.remember(&key, record);
        Ok(())
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let key = id_hash(id);
        let found = self
            .store
            .session_load(&key, now())
            .await
            .map_err(backend)?;
        let record = found.map(|(data, expiry_date)| Record {
            id: *id,
            data,
            expiry_date,
        });
        match &record {
            Some(r) => self.remember(&key, r),
            None => {
                self.known.remove(&key);
            }
        }
        Ok(record)
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        let key = id_hash(id);
        self.known.remove(&key);
        self.store.session_delete(&key).await.map_err(backend)
    }
}

#[async_trait]
impl ExpiredDeletion for DbSessionStore {
    async fn delete_expired(&self) -> session_store::Result<()> {
        let at = now();
        self.known.retain(|_, (_, expiry)| *expiry > at);
        self.store
            .session_delete_expired(now())
            .await
            .map(|_| ())
            .map_err(backend)
    }
}

/// Random URL-safe token with 256 bits of entropy.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The session's CSRF token, created on first use.
pub async fn csrf_token(session: &Session) -> AppResult<String> {
    if let Some(token) = session.get::<String>(CSRF_KEY).await? {
        return Ok(token);
    }
    let token = random_token();
    session.insert(CSRF_KEY, &token).await?;
    Ok(token)
}

pub async fn verify_csrf(session: &Session, submitted: Option<&str>) -> AppResult<()> {
    let expected = session.get::<String>(CSRF_KEY).await?;
    let ok = match (expected, submitted) {
        (Some(expected), Some(submitted)) => {
            bool::from(expected.as_bytes().ct_eq(submitted.as_bytes()))
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(AppError::Forbidden(
            "the form's security token is missing or out of date; reload the page and try again"
                .into(),
        ))
    }
}

/// Starts an authenticated session: a new id (no fixation), the user, the
/// workspace they work in, and a fresh CSRF token.
pub async fn begin(
    session: &Session,
    user_id: Uuid,
    workspace: Option<WorkspaceId>,
) -> AppResult<()> {
    session.cycle_id().await?;
    session.insert(USER_KEY, user_id).await?;
    if let Some(ws) = workspace {
        session.insert(WORKSPACE_KEY, ws).await?;
    }
    session.insert(CSRF_KEY, random_token()).await?;
    Ok(())
}

/// Makes `workspace` the one the user works in, now and at their next
/// log-in. The caller has checked the membership.
pub async fn choose_workspace(
    store: &DynStore,
    session: &Session,
    user_id: Uuid,
    workspace: WorkspaceId,
) -> AppResult<()> {
    session.insert(WORKSPACE_KEY, workspace).await?;
    store.remember_workspace(user_id, workspace).await?;
    Ok(())
}

pub async fn end(session: &Session) -> AppResult<()> {
    session.flush().await?;
    Ok(())
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Flash {
    pub kind: FlashKind,
    /// Never a secret: the session is stored. One-time secrets are rendered
    /// in the response that creates them (`pages::ShownOnce`).
    pub message: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FlashKind {
    Success,
    Error,
}

impl FlashKind {
    pub fn css(self) -> &'static str {
        match self {
            FlashKind::Success => "success",
            FlashKind::Error => "error",
        }
    }
}

pub async fn flash(
    session: &Session,
    kind: FlashKind,
    message: impl Into<String>,
) -> AppResult<()> {
    session
        .insert(
            FLASH_KEY,
            Flash {
                kind,
                message: message.into(),
            },
        )
        .await?;
    Ok(())
}

pub async fn take_flash(session: &Session) -> AppResult<Option<Flash>> {
    Ok(session.remove::<Flash>(FLASH_KEY).await.unwrap_or(None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn record(data: &[(&str, serde_json::Value)], expiry: time::OffsetDateTime) -> Record {
        Record {
            id: Id::default(),
            data: data
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
            expiry_date: expiry,
        }
    }

    #[test]
    fn an_unchanged_session_is_written_once_a_minute() {
        let t = datetime!(2026-12-03 12:00 UTC);
        let stored = record(
            &[
                ("uid", serde_json::json!("u")),
                ("ws", serde_json::json!("w")),
            ],
            t,
        );
        let known = Some((fingerprint(&stored), t));
        let slid = |secs| {
            record(
                &[
                    ("ws", serde_json::json!("w")),
                    ("uid", serde_json::json!("u")),
                ],
                t + time::Duration::seconds(secs),
            )
        };
        assert!(
            !must_write(known, &slid(59)),
            "key order or a small slide is no change"
        );
        assert!(must_write(known, &slid(60)));
        let changed = record(
            &[
                ("uid", serde_json::json!("u")),
                ("flash", serde_json::json!("hi")),
            ],
            t,
        );
        assert!(
            must_write(known, &changed),
            "changed data is always written"
        );
        assert!(
            must_write(None, &stored),
            "unknown to this process: written"
        );
    }
}
