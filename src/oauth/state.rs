//! The `state` parameter: a row id plus an HMAC over the id, the user, the
//! provider and the redirect URI. A forged or altered state fails the MAC;
//! one started in another session fails it too (different user); the row it
//! names is single-use and expires.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

const MAC_LEN: usize = 16;

fn mac(
    key: &[u8; 32],
    id: Uuid,
    user_id: Uuid,
    provider: &str,
    redirect_uri: &str,
) -> Option<Hmac<Sha256>> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).ok()?;
    for part in [
        id.as_bytes().as_slice(),
        user_id.as_bytes(),
        provider.as_bytes(),
        redirect_uri.as_bytes(),
    ] {
        mac.update(&(part.len() as u32).to_be_bytes());
        mac.update(part);
    }
    Some(mac)
}

pub fn sign(key: &[u8; 32], id: Uuid, user_id: Uuid, provider: &str, redirect_uri: &str) -> String {
    let tag = mac(key, id, user_id, provider, redirect_uri)
        .map(|m| m.finalize().into_bytes().to_vec())
        .unwrap_or_default();
    let mut raw = id.as_bytes().to_vec();
    raw.extend(tag.iter().take(MAC_LEN));
    URL_SAFE_NO_PAD.encode(raw)
}

/// The state's row id, if the state was issued by us for this user,
/// provider and redirect URI.
pub fn verify(
    key: &[u8; 32],
    state: &str,
    user_id: Uuid,
    provider: &str,
    redirect_uri: &str,
) -> Option<Uuid> {
    let raw = URL_SAFE_NO_PAD.decode(state.as_bytes()).ok()?;
    let (id, tag) = raw.split_at_checked(16)?;
    if tag.len() != MAC_LEN {
        return None;
    }
    let id = Uuid::from_slice(id).ok()?;
    let mac = mac(key, id, user_id, provider, redirect_uri)?;
    // verify_truncated_left compares in constant time.
    mac.verify_truncated_left(tag).ok()?;
    Some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_binding() {
        let key = [7u8; 32];
        let (id, user) = (Uuid::now_v7(), Uuid::now_v7());
        let state = sign(&key, id, user, "sandbox", "http://x/cb");
        assert_eq!(
            verify(&key, &state, user, "sandbox", "http://x/cb"),
            Some(id)
        );
        assert_eq!(
            verify(&key, &state, Uuid::now_v7(), "sandbox", "http://x/cb"),
            None
        );
        assert_eq!(verify(&key, &state, user, "slack", "http://x/cb"), None);
        assert_eq!(
            verify(&key, &state, user, "sandbox", "http://evil/cb"),
            None
        );
        assert_eq!(
            verify(&[8u8; 32], &state, user, "sandbox", "http://x/cb"),
            None
        );
        let mut tampered = state.clone().into_bytes();
        tampered[3] = if tampered[3] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            verify(
                &key,
                &String::from_utf8(tampered).unwrap(),
                user,
                "sandbox",
                "http://x/cb"
            ),
            None
        );
        for junk in ["", "!!", "abc", &"A".repeat(500)] {
            assert_eq!(verify(&key, junk, user, "sandbox", "http://x/cb"), None);
        }
    }
}
