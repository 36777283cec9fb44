//! Service keys: how automations (n8n and the like) call the internal API.
//!
//! A key is `pb_sk_<prefix>_<secret>`: 8 characters of prefix to find the
//! row, 256 bits of secret. Only a SHA-256 of the whole key is stored (the
//! key has full entropy, so a slow hash buys nothing) and it is compared in
//! constant time. A key belongs to one workspace; the deployment-wide
//! `AGENT_SERVICE_KEY` has every scope in every workspace.

pub mod service;
pub mod store;

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::tenancy::WorkspaceId;
use crate::vault::Secret;

pub const KEY_PREFIX: &str = "pb_sk_";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Scope {
    #[serde(rename = "tokens:read")]
    TokensRead,
    #[serde(rename = "tokens:read_refresh")]
    TokensReadRefresh,
    /// Members' personal connections too, those whose owner allowed
    /// automations (on top of `tokens:read` / `context:read`).
    #[serde(rename = "tokens:read_personal")]
    TokensReadPersonal,
    #[serde(rename = "metrics:write")]
    MetricsWrite,
    /// The metrics read API (catalog, query, KPIs) of the key's workspace:
    /// workspace connections' data, never members' personal ones.
    #[serde(rename = "metrics:read")]
    MetricsRead,
    #[serde(rename = "runs:write")]
    RunsWrite,
    #[serde(rename = "context:read")]
    ContextRead,
}

impl Scope {
    pub const ALL: [Scope; 7] = [
        Scope::TokensRead,
        Scope::TokensReadRefresh,
        Scope::TokensReadPersonal,
        Scope::MetricsWrite,
        Scope::MetricsRead,
        Scope::RunsWrite,
        Scope::ContextRead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::TokensRead => "tokens:read",
            Scope::TokensReadRefresh => "tokens:read_refresh",
            Scope::TokensReadPersonal => "tokens:read_personal",
            Scope::MetricsWrite => "metrics:write",
            Scope::MetricsRead => "metrics:read",
            Scope::RunsWrite => "runs:write",
            Scope::ContextRead => "context:read",
        }
    }

    pub fn parse(value: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.as_str() == value)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A freshly minted key: the full value exists only here and in the one
/// response that shows it.
pub struct NewKey {
    pub id: Uuid,
    pub prefix: String,
    pub full: Secret,
    pub hash: Vec<u8>,
}

pub fn hash_key(full: &str) -> Vec<u8> {
    Sha256::digest(full.as_bytes()).to_vec()
}

pub fn mint() -> NewKey {
    let mut prefix_bytes = [0u8; 6];
    let mut secret_bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut prefix_bytes);
    rand::rng().fill_bytes(&mut secret_bytes);
    // base64url can contain '_', which separates the parts: use it only in
    // the secret, where it is the last part anyway.
    let prefix: String = URL_SAFE_NO_PAD
        .encode(prefix_bytes)
        .chars()
        .map(|c| if c == '_' || c == '-' { 'x' } else { c })
        .collect();
    let prefix = format!("{KEY_PREFIX}{prefix}");
    let full = format!("{prefix}_{}", URL_SAFE_NO_PAD.encode(secret_bytes));
    NewKey {
        id: Uuid::now_v7(),
        hash: hash_key(&full),
        prefix,
        full: Secret::new(full),
    }
}

/// The prefix of a presented key, if it has the right shape.
pub fn prefix_of(presented: &str) -> Option<&str> {
    let rest = presented.strip_prefix(KEY_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let well_formed = id.len() == 8
        && id.chars().all(|c| c.is_ascii_alphanumeric())
        && (40..=64).contains(&secret.len())
        && secret
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    presented
        .get(..KEY_PREFIX.len().saturating_add(8))
        .filter(|_| well_formed)
}

/// Who is calling the internal API.
#[derive(Debug, Clone)]
pub struct ServiceCaller {
    /// None for the deployment-wide key.
    pub key_id: Option<Uuid>,
    /// The one workspace a key may touch; None: any (deployment-wide key).
    pub workspace: Option<WorkspaceId>,
    pub scopes: Vec<Scope>,
}

impl ServiceCaller {
    pub fn deployment() -> Self {
        ServiceCaller {
            key_id: None,
            workspace: None,
            scopes: Scope::ALL.to_vec(),
        }
    }

    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }

    /// Whether the caller may act in `workspace`; other workspaces are not
    /// found, never forbidden.
    pub fn may_access(&self, workspace: WorkspaceId) -> bool {
        self.workspace.is_none_or(|own| own == workspace)
    }

    /// For audit details.
    pub fn label(&self) -> String {
        match self.key_id {
            Some(id) => id.to_string(),
            None => "AGENT_SERVICE_KEY".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_keys_parse_and_differ() {
        let a = mint();
        let b = mint();
        assert_ne!(a.full.expose(), b.full.expose());
        assert_eq!(prefix_of(a.full.expose()), Some(a.prefix.as_str()));
        assert_eq!(a.hash, hash_key(a.full.expose()));
        assert!(a.full.expose().len() > 50);
        assert_eq!(format!("{:?}", a.full), "[redacted]");
    }

    #[test]
    fn malformed_keys_have_no_prefix() {
        for bad in [
            "",
            "pb_sk_",
            "pb_sk_short_x",
            "sk_live_abc",
            "pb_sk_abcdefgh",
            "pb_sk_abcdefgh_tooshort",
            "pb_sk_abc!efgh_0123456789012345678901234567890123456789",
        ] {
            assert_eq!(prefix_of(bad), None, "{bad}");
        }
    }

    #[test]
    fn scopes_round_trip() {
        for s in Scope::ALL {
            assert_eq!(Scope::parse(s.as_str()), Some(s));
        }
        assert_eq!(Scope::parse("admin"), None);
    }
}
