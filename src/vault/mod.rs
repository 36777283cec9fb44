//! Secrets at rest: AES-256-GCM under a key ring, bound to their place.
//!
//! A sealed value is one printable string, `pbv1:<key id>:<nonce>:<ciphertext+tag>`
//! (base64url), so it says which key opens it. The associated data names the
//! place the secret belongs to — workspace, owner kind, owner row, field —
//! so a ciphertext copied to another row, field or workspace fails to open.
//! The first key in the ring seals; every key opens, which is what makes
//! rotation possible without downtime (see README, "Rotating keys").

pub mod secret;
pub mod store;

use std::fmt;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rand::RngCore;
use secrecy::ExposeSecret;
use uuid::Uuid;
use zeroize::Zeroizing;

pub use secret::Secret;

use crate::config::{Environment, Settings};
use crate::tenancy::WorkspaceId;

const FORMAT_VERSION: &str = "pbv1";
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
pub const DEV_KEY_FILE: &str = "encryption.key";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VaultError {
    #[error("sealed secret is malformed: {0}")]
    Malformed(&'static str),
    #[error("sealed with key id {0:?}, which is not in PLUGBOARD_ENCRYPTION_KEYS")]
    UnknownKey(String),
    /// Wrong place, wrong key material, or altered bytes: GCM can't tell
    /// which, and neither should we.
    #[error("secret failed authentication (altered, or bound to another place)")]
    Tampered,
    #[error("invalid encryption key list: {0}")]
    BadKeyList(String),
}

/// Where a secret belongs; becomes the AEAD associated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place<'a> {
    pub workspace_id: WorkspaceId,
    pub owner_kind: &'a str,
    pub owner_id: Uuid,
    pub field: &'a str,
}

impl Place<'_> {
    fn associated_data(&self, key_id: &str) -> Vec<u8> {
        // Length-prefixed parts: no choice of names can make two places collide.
        let mut aad = Vec::with_capacity(128);
        for part in [
            FORMAT_VERSION.as_bytes(),
            key_id.as_bytes(),
            self.workspace_id.0.as_bytes(),
            self.owner_kind.as_bytes(),
            self.owner_id.as_bytes(),
            self.field.as_bytes(),
        ] {
            aad.extend_from_slice(&(part.len() as u32).to_be_bytes());
            aad.extend_from_slice(part);
        }
        aad
    }
}

struct RingKey {
    id: String,
    cipher: Aes256Gcm,
    material: Zeroizing<[u8; 32]>,
}

/// The configured keys; the first one seals. Held as primary + others so
/// "there is a sealing key" is a fact of the type, not an index that
/// could panic.
pub struct KeyRing {
    primary: RingKey,
    others: Vec<RingKey>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("key_ids", &self.key_ids())
            .finish()
    }
}

fn valid_key_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 32
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl KeyRing {
    /// Parses `keyid:base64(32 bytes),…`. Errors name the entry by position
    /// and key id, never by key material.
    pub fn parse(list: &str) -> Result<Self, VaultError> {
        let mut keys: Vec<RingKey> = Vec::new();
        for (index, entry) in list.split(',').map(str::trim).enumerate() {
            let position = index + 1;
            if entry.is_empty() {
                continue;
            }
            let (id, material) = entry.split_once(':').ok_or_else(|| {
                VaultError::BadKeyList(format!("entry {position} is not keyid:base64key"))
            })?;
            if !valid_key_id(id) {
                return Err(VaultError::BadKeyList(format!(
                    "entry {position}: key id must be 1-32 characters of A-Z a-z 0-9 - _"
                )));
            }
            if keys.iter().any(|k| k.id == id) {
                return Err(VaultError::BadKeyList(format!(
                    "key id {id:?} appears twice"
                )));
            }
            let bytes =
                Zeroizing::new(STANDARD.decode(material.trim()).map_err(|_| {
                    VaultError::BadKeyList(format!("key {id:?} is not valid base64"))
                })?);
            if bytes.len() != 32 {
                return Err(VaultError::BadKeyList(format!(
                    "key {id:?} must decode to 32 bytes, got {}",
                    bytes.len()
                )));
            }
            let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&bytes));
            let mut material = Zeroizing::new([0u8; 32]);
            material.copy_from_slice(&bytes);
            keys.push(RingKey {
                id: id.to_owned(),
                cipher,
                material,
            });
        }
        let mut keys = keys.into_iter();
        let primary = keys
            .next()
            .ok_or_else(|| VaultError::BadKeyList("no keys given".into()))?;
        Ok(KeyRing {
            primary,
            others: keys.collect(),
        })
    }

    /// A 32-byte key for another purpose (e.g. signing OAuth state),
    /// derived from the primary key so no second secret needs managing.
    /// Rotating the primary key changes it, which only invalidates
    /// short-lived values.
    pub fn derive_key(&self, purpose: &str) -> Zeroizing<[u8; 32]> {
        use hmac::{Hmac, Mac};
        let mut out = Zeroizing::new([0u8; 32]);
        if let Ok(mut mac) =
            <Hmac<sha2::Sha256> as Mac>::new_from_slice(self.primary.material.as_ref())
        {
            mac.update(b"plugboard derived key v1\0");
            mac.update(purpose.as_bytes());
            out.copy_from_slice(&mac.finalize().into_bytes());
        }
        out
    }

    pub fn primary_key_id(&self) -> &str {
        &self.primary.id
    }

    fn keys(&self) -> impl Iterator<Item = &RingKey> {
        std::iter::once(&self.primary).chain(&self.others)
    }

    pub fn key_ids(&self) -> Vec<&str> {
        self.keys().map(|k| k.id.as_str()).collect()
    }

    pub fn seal(&self, plaintext: &[u8], place: &Place<'_>) -> Result<String, VaultError> {
        let key = &self.primary;
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let ciphertext = key
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: &place.associated_data(&key.id),
                },
            )
            .map_err(|_| VaultError::Malformed("encryption failed"))?;
        Ok(format!(
            "{FORMAT_VERSION}:{}:{}:{}",
            key.id,
            URL_SAFE_NO_PAD.encode(nonce),
            URL_SAFE_NO_PAD.encode(ciphertext)
        ))
    }

    pub fn open(&self, sealed: &str, place: &Place<'_>) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        let (key_id, nonce, ciphertext) = split_sealed(sealed)?;
        let key = self
            .keys()
            .find(|k| k.id == key_id)
            .ok_or_else(|| VaultError::UnknownKey(key_id.to_owned()))?;
        let plaintext = key
            .cipher
            .decrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &ciphertext,
                    aad: &place.associated_data(key_id),
                },
            )
            .map_err(|_| VaultError::Tampered)?;
        Ok(Zeroizing::new(plaintext))
    }

    pub fn seal_secret(&self, secret: &Secret, place: &Place<'_>) -> Result<String, VaultError> {
        self.seal(secret.expose().as_bytes(), place)
    }

    pub fn open_secret(&self, sealed: &str, place: &Place<'_>) -> Result<Secret, VaultError> {
        let bytes = self.open(sealed, place)?;
        let text = std::str::from_utf8(&bytes).map_err(|_| VaultError::Malformed("not UTF-8"))?;
        Ok(Secret::new(text))
    }
}

/// The key id a sealed value names, without opening it.
pub fn sealed_key_id(sealed: &str) -> Result<&str, VaultError> {
    split_sealed(sealed).map(|(id, _, _)| id)
}

fn split_sealed(sealed: &str) -> Result<(&str, Vec<u8>, Vec<u8>), VaultError> {
    let mut parts = sealed.split(':');
    let (Some(version), Some(key_id), Some(nonce), Some(ciphertext), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(VaultError::Malformed(
            "expected version:key:nonce:ciphertext",
        ));
    };
    if version != FORMAT_VERSION {
        return Err(VaultError::Malformed("unknown format version"));
    }
    if !valid_key_id(key_id) {
        return Err(VaultError::Malformed("bad key id"));
    }
    let nonce = URL_SAFE_NO_PAD
        .decode(nonce)
        .map_err(|_| VaultError::Malformed("nonce is not base64url"))?;
    if nonce.len() != NONCE_LEN {
        return Err(VaultError::Malformed("nonce has the wrong length"));
    }
    let ciphertext = URL_SAFE_NO_PAD
        .decode(ciphertext)
        .map_err(|_| VaultError::Malformed("ciphertext is not base64url"))?;
    if ciphertext.len() < TAG_LEN {
        return Err(VaultError::Malformed("ciphertext is shorter than its tag"));
    }
    Ok((key_id, nonce, ciphertext))
}

/// A new `keyid:base64key` entry for PLUGBOARD_ENCRYPTION_KEYS.
pub fn generate_key_entry(key_id: &str) -> Result<String, VaultError> {
    if !valid_key_id(key_id) {
        return Err(VaultError::BadKeyList(
            "key id must be 1-32 characters of A-Z a-z 0-9 - _".into(),
        ));
    }
    let mut bytes = Zeroizing::new([0u8; 32]);
    rand::rng().fill_bytes(bytes.as_mut());
    Ok(format!("{key_id}:{}", STANDARD.encode(bytes.as_ref())))
}

/// A key id that sorts by creation date, e.g. `k20261122`.
pub fn default_key_id() -> String {
    let today = time::OffsetDateTime::now_utc().date();
    format!(
        "k{:04}{:02}{:02}",
        today.year(),
        u8::from(today.month()),
        today.day()
    )
}

#[derive(Debug, thiserror::Error)]
pub enum KeySetupError {
    #[error(
        "no encryption key configured. Secrets are encrypted at rest, and with {reason} \
         Plugboard will not invent a key. Create one with `plugboard keys generate`, then set \
         PLUGBOARD_ENCRYPTION_KEYS=<the printed line> and start again."
    )]
    Missing { reason: &'static str },
    #[error("PLUGBOARD_ENCRYPTION_KEYS: {0}")]
    Invalid(VaultError),
    #[error("development key file {path}: {source}")]
    KeyFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("development key file {path}: {error}")]
    KeyFileContent { path: PathBuf, error: VaultError },
}

/// How the key ring was obtained, for the one start-up warning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Configured,
    DevFile { path: PathBuf, created: bool },
}

/// The configured ring; on the embedded SQLite in development only, a key
/// generated once into `data_dir` (mode 0600) so `cargo run` needs nothing.
pub fn load_key_ring(settings: &Settings) -> Result<(KeyRing, KeySource), KeySetupError> {
    let configured = settings.vault.encryption_keys.expose_secret().trim();
    if !configured.is_empty() {
        let ring = KeyRing::parse(configured).map_err(KeySetupError::Invalid)?;
        return Ok((ring, KeySource::Configured));
    }
    if settings.env == Environment::Production {
        return Err(KeySetupError::Missing {
            reason: "PLUGBOARD_ENV=production",
        });
    }
    if !settings.uses_embedded_sqlite() {
        return Err(KeySetupError::Missing {
            reason: "PostgreSQL",
        });
    }
    let path = settings.data_dir.join(DEV_KEY_FILE);
    let (entry, created) = read_or_create_dev_key(&path)?;
    let ring = KeyRing::parse(&entry).map_err(|error| KeySetupError::KeyFileContent {
        path: path.clone(),
        error,
    })?;
    Ok((ring, KeySource::DevFile { path, created }))
}

fn read_or_create_dev_key(path: &Path) -> Result<(Zeroizing<String>, bool), KeySetupError> {
    let io_err = |source| KeySetupError::KeyFile {
        path: path.to_owned(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(content) => return Ok((Zeroizing::new(content.trim().to_owned()), false)),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io_err(e)),
        Err(_) => {}
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io_err)?;
    }
    let entry = Zeroizing::new(generate_key_entry("dev").map_err(|error| {
        KeySetupError::KeyFileContent {
            path: path.to_owned(),
            error,
        }
    })?);
    write_private_file(path, entry.as_bytes()).map_err(io_err)?;
    Ok((entry, true))
}

/// Creates the file exclusively (never clobbering a key another process just
/// wrote) with owner-only permissions from the first byte.
fn write_private_file(path: &Path, content: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(content)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(list: &str) -> KeyRing {
        KeyRing::parse(list).unwrap()
    }

    fn two_keys() -> (String, String) {
        (
            generate_key_entry("new").unwrap(),
            generate_key_entry("old").unwrap(),
        )
    }

    fn place(field: &str) -> Place<'_> {
        Place {
            workspace_id: WorkspaceId(Uuid::from_u128(1)),
            owner_kind: "connection",
            owner_id: Uuid::from_u128(2),
            field,
        }
    }

    #[test]
    fn round_trip_and_self_description() {
        let (k, _) = two_keys();
        let r = ring(&k);
        let sealed = r
            .seal(b"refresh-token-value", &place("refresh_token"))
            .unwrap();
        assert!(sealed.starts_with("pbv1:new:"));
        assert!(sealed.is_ascii() && !sealed.contains(char::is_whitespace));
        assert!(!sealed.contains("refresh-token-value"));
        assert_eq!(sealed_key_id(&sealed).unwrap(), "new");
        let opened = r.open(&sealed, &place("refresh_token")).unwrap();
        assert_eq!(opened.as_slice(), b"refresh-token-value");
    }

    #[test]
    fn every_seal_uses_a_fresh_nonce() {
        let (k, _) = two_keys();
        let r = ring(&k);
        let a = r.seal(b"same", &place("f")).unwrap();
        let b = r.seal(b"same", &place("f")).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn flipping_any_byte_fails() {
        let (k, _) = two_keys();
        let r = ring(&k);
        let sealed = r.seal(b"top secret", &place("f")).unwrap();
        let (_, nonce, ciphertext) = split_sealed(&sealed).unwrap();
        for i in 0..nonce.len() + ciphertext.len() {
            let (mut n, mut c) = (nonce.clone(), ciphertext.clone());
            if i < n.len() {
                n[i] ^= 0x01;
            } else {
                c[i - n.len()] ^= 0x01;
            }
            let forged = format!(
                "pbv1:new:{}:{}",
                URL_SAFE_NO_PAD.encode(&n),
                URL_SAFE_NO_PAD.encode(&c)
            );
            assert_eq!(
                r.open(&forged, &place("f")).unwrap_err(),
                VaultError::Tampered,
                "byte {i}"
            );
        }
    }

    #[test]
    fn wrong_place_fails() {
        let (k, _) = two_keys();
        let r = ring(&k);
        let p = place("access_token");
        let sealed = r.seal(b"t", &p).unwrap();
        let other_field = place("refresh_token");
        let other_row = Place {
            owner_id: Uuid::from_u128(3),
            ..p
        };
        let other_ws = Place {
            workspace_id: WorkspaceId(Uuid::from_u128(9)),
            ..p
        };
        let other_kind = Place {
            owner_kind: "webhook",
            ..p
        };
        for wrong in [other_field, other_row, other_ws, other_kind] {
            assert_eq!(r.open(&sealed, &wrong).unwrap_err(), VaultError::Tampered);
        }
    }

    #[test]
    fn unknown_key_is_named() {
        let (new, old) = two_keys();
        let sealed = ring(&old).seal(b"t", &place("f")).unwrap();
        let err = ring(&new).open(&sealed, &place("f")).unwrap_err();
        assert_eq!(err, VaultError::UnknownKey("old".into()));
        assert!(err.to_string().contains("\"old\""));
    }

    #[test]
    fn first_key_seals_all_keys_open() {
        let (new, old) = two_keys();
        let sealed_old = ring(&old).seal(b"t", &place("f")).unwrap();
        let both = ring(&format!("{new},{old}"));
        assert_eq!(both.primary_key_id(), "new");
        assert_eq!(
            both.open(&sealed_old, &place("f")).unwrap().as_slice(),
            b"t"
        );
        assert!(
            both.seal(b"t", &place("f"))
                .unwrap()
                .starts_with("pbv1:new:")
        );
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        let (k, _) = two_keys();
        let r = ring(&k);
        for bad in [
            "",
            "pbv1",
            "pbv1:new:x",
            "pbv2:new:AAAA:AAAA",
            "pbv1:new:%%:AAAA",
            "pbv1:n w:AAAAAAAAAAAAAAAA:AAAA",
            "pbv1:new:AAAAAAAAAAAAAAAA:AAAA",
            "pbv1:new:a:b:c",
        ] {
            assert!(r.open(bad, &place("f")).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn key_list_errors_never_echo_material() {
        let cases = [
            "nokey",
            "k1:not base64!",
            "k1:AAAA",
            "bad id:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "",
        ];
        for case in cases {
            let err = KeyRing::parse(case).unwrap_err().to_string();
            assert!(!err.contains("AAAA"), "{err}");
        }
        let (k, _) = two_keys();
        let dup = format!("{k},{k}");
        assert!(
            KeyRing::parse(&dup)
                .unwrap_err()
                .to_string()
                .contains("twice")
        );
    }

    #[test]
    fn derived_keys_differ_by_purpose_and_key() {
        let (a, b) = two_keys();
        let ra = ring(&a);
        assert_eq!(*ra.derive_key("x"), *ring(&a).derive_key("x"));
        assert_ne!(*ra.derive_key("x"), *ra.derive_key("y"));
        assert_ne!(*ra.derive_key("x"), *ring(&b).derive_key("x"));
    }

    #[test]
    fn debug_shows_ids_only() {
        let (k, _) = two_keys();
        let material = k.split_once(':').unwrap().1.to_owned();
        let shown = format!("{:?}", ring(&k));
        assert!(shown.contains("new") && !shown.contains(&material));
    }

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        let env = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_env_map(&env).unwrap()
    }

    #[test]
    fn no_key_is_refused_in_production_and_on_postgres() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().to_str().unwrap();
        let prod = settings(&[
            ("PLUGBOARD_ENV", "production"),
            ("PLUGBOARD_DATA_DIR", data),
        ]);
        let err = load_key_ring(&prod).unwrap_err().to_string();
        assert!(
            err.contains("plugboard keys generate") && err.contains("production"),
            "{err}"
        );
        let pg = settings(&[
            ("DATABASE_URL", "postgres://x@localhost/db"),
            ("PLUGBOARD_DATA_DIR", data),
        ]);
        assert!(
            load_key_ring(&pg)
                .unwrap_err()
                .to_string()
                .contains("PostgreSQL")
        );
        assert!(
            !dir.path().join(DEV_KEY_FILE).exists(),
            "no key file may be invented"
        );
        let dev = settings(&[("PLUGBOARD_DATA_DIR", data)]);
        let (_, source) = load_key_ring(&dev).unwrap();
        assert!(matches!(source, KeySource::DevFile { created: true, .. }));
        let bad = settings(&[
            ("PLUGBOARD_ENCRYPTION_KEYS", "k1:AAAA"),
            ("PLUGBOARD_DATA_DIR", data),
        ]);
        assert!(
            load_key_ring(&bad)
                .unwrap_err()
                .to_string()
                .contains("32 bytes")
        );
    }

    #[test]
    fn dev_key_file_is_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join(DEV_KEY_FILE);
        let (first, created) = read_or_create_dev_key(&path).unwrap();
        assert!(created);
        let (second, created_again) = read_or_create_dev_key(&path).unwrap();
        assert!(!created_again);
        assert_eq!(*first, *second);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
