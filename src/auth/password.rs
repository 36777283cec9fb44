//! Argon2id password hashes (the crate's defaults: OWASP's recommended
//! m=19 MiB, t=2, p=1). Hashing runs on the blocking pool so a burst of
//! log-ins can't stall the async workers.

use std::sync::OnceLock;

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use zeroize::Zeroizing;

use crate::error::{AppError, AppResult};

pub async fn hash(password: String) -> AppResult<String> {
    let password = Zeroizing::new(password);
    tokio::task::spawn_blocking(move || hash_blocking(&password))
        .await
        .map_err(AppError::internal)?
}

pub fn hash_blocking(password: &str) -> AppResult<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AppError::internal(anyhow::anyhow!("hashing password: {e}")))
}

/// False for a wrong password; an unparseable stored hash is an error.
pub async fn verify(password: String, stored_hash: String) -> AppResult<bool> {
    let password = Zeroizing::new(password);
    tokio::task::spawn_blocking(move || {
        let parsed = PasswordHash::new(&stored_hash).map_err(|e| {
            AppError::internal(anyhow::anyhow!("stored password hash unreadable: {e}"))
        })?;
        Ok(Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok())
    })
    .await
    .map_err(AppError::internal)?
}

/// Spends the time of one verification, so "no such user" can't be told
/// from "wrong password" by the clock.
pub async fn burn_equal_time(password: String) {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let dummy = DUMMY
        .get_or_init(|| hash_blocking("plugboard-timing-equaliser").unwrap_or_default())
        .clone();
    let _ = verify(password, dummy).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_then_verify() {
        let h = hash("correct horse battery".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(
            verify("correct horse battery".into(), h.clone())
                .await
                .unwrap()
        );
        assert!(!verify("wrong horse battery".into(), h).await.unwrap());
    }

    #[tokio::test]
    async fn corrupt_hash_is_an_error_not_a_panic() {
        assert!(verify("x".into(), "not-a-hash".into()).await.is_err());
    }
}
