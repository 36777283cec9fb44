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

#[derive(Clone)]
pub struct DbSessionStore {
    store: DynStore,
}

impl std::fmt::Debug for DbSessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DbSessionStore")
    }
}

impl DbSessionStore {
    pub fn new(store: DynStore) -> Self {
        Self { store }
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
                return Ok(());
            }
            record.id = Id::default();
        }
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        self.store
            .session_update(
                &id_hash(&record.id),
                user_of(record),
                &record.data,
                record.expiry_date,
            )
            .await
            .map_err(backend)
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let found = self
            .store
            .session_load(&id_hash(id), now())
            .await
            .map_err(backend)?;
        Ok(found.map(|(data, expiry_date)| Record {
            id: *id,
            data,
            expiry_date,
        }))
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        self.store
            .session_delete(&id_hash(id))
            .await
            .map_err(backend)
    }
}

#[async_trait]
impl ExpiredDeletion for DbSessionStore {
    async fn delete_expired(&self) -> session_store::Result<()> {
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
