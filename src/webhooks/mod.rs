//! Connection events for automations: `connected`, `refresh_failed`,
//! `needs_reauth`, `recovered`, `disconnected`, POSTed as JSON to the
//! workspace's endpoint, signed with HMAC-SHA256, retried with backoff,
//! never carrying tokens.
//!
//! Events are queued in the same transaction as the change they report
//! ([`enqueue_webhook_event!`]), so an event is never lost nor sent for a
//! change that rolled back. Deliveries are claimed with a lease, so several
//! processes can run the loop without sending one event twice at once.
//!
//! Signature: header `Plugboard-Signature: t=<unix seconds>,v1=<hex>` where
//! `<hex>` = HMAC-SHA256(secret, "<t>." + raw body). Reject timestamps older
//! than a few minutes to stop replays.

pub mod store;

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::app::AppState;
use crate::storage::now;
use crate::vault::Secret;
use crate::vault::store::get_secret;
use store::Delivery;

pub const OWNER_KIND: &str = "webhook";
pub const SECRET_FIELD: &str = "signing_secret";
pub const SIGNATURE_HEADER: &str = "plugboard-signature";
const NOT_ALLOWED: &str = "address not allowed";

/// Queues `$event` (a `ConnectionEvent`) if the workspace has an endpoint.
#[macro_export]
macro_rules! enqueue_webhook_event {
    ($executor:expr, $event:expr) => {{
        let event: &$crate::connections::ConnectionEvent = $event;
        let at = $crate::storage::now();
        sqlx::query(
            "INSERT INTO webhook_deliveries (id, workspace_id, event, payload, attempts, next_attempt_at, created_at) \
             SELECT $1, $2, $3, $4, 0, $5, $5 WHERE EXISTS \
             (SELECT 1 FROM webhook_endpoints WHERE workspace_id = $2)",
        )
        .bind(uuid::Uuid::now_v7())
        .bind(event.workspace_id)
        .bind(event.event)
        .bind(sqlx::types::Json(event))
        .bind(at)
        .execute($executor)
        .await
    }};
}

/// Sets the workspace's endpoint (admins) and returns its new signing
/// secret, to be shown once. The same rules for the API and the page: an
/// http(s) URL the outbound policy allows (names are checked again on the
/// address they resolve to, per delivery).
pub async fn set_endpoint(
    state: &AppState,
    tenant: &crate::tenancy::Tenant,
    raw_url: &str,
) -> crate::error::AppResult<(String, Secret)> {
    use crate::error::AppError;
    tenant.require_admin("manage webhooks")?;
    let url = raw_url.trim();
    if !(url.starts_with("https://") || url.starts_with("http://"))
        || url.len() > 2000
        || url.contains(char::is_whitespace)
    {
        return Err(AppError::validation("url", "expected an http(s) URL"));
    }
    let parsed = reqwest::Url::parse(url)
        .map_err(|_| AppError::validation("url", "expected an http(s) URL"))?;
    state
        .outbound
        .policy()
        .check_url(&parsed)
        .map_err(|e| AppError::validation("url", e.to_string()))?;
    let ws = tenant.workspace_id;
    let secret = Secret::new(format!("whsec_{}", crate::auth::session::random_token()));
    let sealed = crate::vault::store::seal_field(
        &state.keys,
        &store::secret_place(ws),
        SECRET_FIELD,
        &secret,
    )
    .map_err(AppError::internal)?;
    let audit = crate::audit::AuditEntry::new(Some(ws), Some(tenant.user_id), "webhook.set")
        .details(serde_json::json!({ "url": url }));
    state.store.set_webhook(ws, url, &sealed, &audit).await?;
    Ok((url.to_owned(), secret))
}

/// `t=<unix>,v1=<hex hmac>` over `"<t>.<body>"`.
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let hex = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .map(|mut mac| {
            mac.update(timestamp.to_string().as_bytes());
            mac.update(b".");
            mac.update(body);
            mac.finalize()
                .into_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        })
        .unwrap_or_default();
    format!("t={timestamp},v1={hex}")
}

/// Delay before attempt `attempt + 1`: exponential from 10 s, capped at an
/// hour, with jitter so a recovering endpoint isn't hit by a thundering herd.
pub fn retry_delay(attempt: u32) -> Duration {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_secs(10))
        .with_max_delay(Duration::from_secs(3600))
        .with_factor(3.0)
        .with_jitter()
        .without_max_times()
        .build()
        .nth(attempt as usize)
        .unwrap_or(Duration::from_secs(3600))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<'a> {
    id: Uuid,
    #[serde(flatten)]
    payload: &'a serde_json::Value,
    /// The reconnect link of a `needs_reauth` event, put together now so
    /// the stored payload holds its id only.
    #[serde(skip_serializing_if = "Option::is_none")]
    reconnect_url: Option<String>,
}

fn reconnect_url(state: &AppState, payload: &serde_json::Value) -> Option<String> {
    let id = payload.get("reconnectLinkId")?.as_str()?.parse().ok()?;
    Some(crate::connectlinks::reconnect_url(state, id))
}

async fn deliver(state: &AppState, delivery: &Delivery) -> Result<(), String> {
    let url = state
        .store
        .get_webhook_url(delivery.workspace_id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("the workspace removed its webhook")?;
    let place = store::secret_place(delivery.workspace_id);
    let secret: Secret = get_secret(state.store.as_ref(), &state.keys, &place)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("no signing secret")?;
    let body = serde_json::to_vec(&Envelope {
        id: delivery.id,
        payload: &delivery.payload.0,
        reconnect_url: reconnect_url(state, &delivery.payload.0),
    })
    .map_err(|e| e.to_string())?;
    let timestamp = now().unix_timestamp();
    // The tenant chose this address: the outbound policy applies, and what
    // is recorded says nothing about what answers inside the network.
    let request = state
        .outbound
        .guarded_request(reqwest::Method::POST, &url)
        .map_err(|_| format!("delivery failed: {}", NOT_ALLOWED))?;
    let response = request
        .header("content-type", "application/json")
        .header(
            SIGNATURE_HEADER,
            signature(secret.expose(), timestamp, &body),
        )
        .header("plugboard-event", delivery.event.as_str())
        .header("plugboard-delivery", delivery.id.to_string())
        .body(body)
        .send()
        .await
        .map_err(|e| format!("delivery failed: {}", crate::outbound::guarded_failure(&e)))?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("endpoint answered HTTP {}", status.as_u16()))
    }
}

/// Sends what is due; returns how many deliveries were attempted.
pub async fn deliver_due(state: &AppState, limit: i64) -> anyhow::Result<usize> {
    let at = now();
    let lease_until = at + time::Duration::minutes(2);
    let mut due = state
        .store
        .claim_due_deliveries(at, lease_until, limit)
        .await?;
    // UPDATE … RETURNING has no order; ids are time-ordered (v7).
    due.sort_by_key(|d| d.id);
    for delivery in &due {
        match deliver(state, delivery).await {
            Ok(()) => state.store.mark_delivered(delivery.id, now()).await?,
            Err(error) => {
                let attempts = delivery.attempts.saturating_add(1);
                let give_up = attempts >= state.settings.webhooks.max_attempts as i32;
                let next: OffsetDateTime = now()
                    + time::Duration::try_from(retry_delay(attempts as u32))
                        .unwrap_or(time::Duration::HOUR);
                tracing::warn!(delivery = %delivery.id, event = %delivery.event, attempts, give_up, %error, "webhook delivery failed");
                state
                    .store
                    .mark_delivery_failed(delivery.id, attempts, next, &error, give_up, now())
                    .await?;
            }
        }
    }
    Ok(due.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_documented_recipe() {
        // printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac whsec_test
        let sig = signature("whsec_test", 1_700_000_000, br#"{"a":1}"#);
        assert!(sig.starts_with("t=1700000000,v1="));
        assert_eq!(sig.len(), "t=1700000000,v1=".len() + 64);
        assert_ne!(sig, signature("other", 1_700_000_000, br#"{"a":1}"#));
    }

    #[test]
    fn delays_grow_and_are_capped() {
        assert!(retry_delay(0) >= Duration::from_secs(10));
        assert!(retry_delay(0) <= Duration::from_secs(20));
        assert!(retry_delay(3) > retry_delay(0));
        assert!(retry_delay(40) <= Duration::from_secs(7200));
    }
}
