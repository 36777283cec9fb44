//! Hand-off to an automation: providers named in `PLUGBOARD_HANDOFF` are
//! synced by an external workflow (n8n and the like) instead of our
//! workers. A sync request makes a job waiting for the automation and
//! POSTs it a signed description — never a token: the automation fetches
//! tokens and writes results through the internal API, and reports the
//! job's end at `/api/internal/runs/callback`. A job not reported within
//! `PLUGBOARD_HANDOFF_TIMEOUT_SECS` of its last report fails clearly.

use std::collections::HashMap;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use secrecy::ExposeSecret;
use serde_json::json;
use uuid::Uuid;

use crate::app::AppState;
use crate::connections::Connection;
use crate::error::AppResult;
use crate::jobs::JobStatus;
use crate::jobs::store::{Created, JobReport, NewJob};
use crate::storage::now;
use crate::tenancy::Tenant;
use crate::webhooks::{SIGNATURE_HEADER, signature};

/// Parses `provider=https://…;provider2=https://…`.
pub fn parse_targets(raw: &str) -> Result<HashMap<String, String>, String> {
    let mut out = HashMap::new();
    for entry in raw.split(';').map(str::trim).filter(|e| !e.is_empty()) {
        let (provider, url) = entry
            .split_once('=')
            .ok_or_else(|| format!("{entry:?}: expected provider=https://…"))?;
        let (provider, url) = (provider.trim(), url.trim());
        if provider.is_empty() {
            return Err(format!("{entry:?}: the provider key is empty"));
        }
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(format!("{provider}: expected an http(s) URL"));
        }
        out.insert(provider.to_owned(), url.to_owned());
    }
    Ok(out)
}

/// Whether the provider's syncs are handed to an automation.
pub fn is_handed_off(state: &AppState, provider: &str) -> bool {
    state.handoff_targets.contains_key(provider)
}

/// Makes (or finds) the waiting job for one object and, when new, sends
/// the automation its description in the background. Returns the job id
/// and whether it already existed.
pub async fn hand_off(
    state: &AppState,
    tenant: &Tenant,
    connection: &Connection,
    object: &str,
) -> AppResult<(Uuid, bool)> {
    let Some(url) = state.handoff_targets.get(&connection.provider).cloned() else {
        return Err(crate::error::AppError::not_found(
            "this provider is not handed off",
        ));
    };
    let id = Uuid::now_v7();
    let created = state
        .store
        .create_job(&NewJob {
            id,
            workspace_id: tenant.workspace_id,
            connection_id: Some(connection.id),
            provider: &connection.provider,
            object: Some(object),
            kind: "external",
            status: JobStatus::WaitingExternal,
            idempotency_key: None,
            metadata: json!({"handoff": true}),
            requested_by: Some(tenant.user_id),
            at: now(),
        })
        .await?;
    let job_id = match created {
        Created::Existing(existing) => return Ok((existing, true)),
        Created::New(job_id) => job_id,
    };
    let body = json!({
        "tenant": {"workspaceId": tenant.workspace_id.0, "userId": tenant.user_id},
        "provider": connection.provider,
        "object": object,
        "connectionId": connection.id,
        "selectedAccountIds": connection.selected_account_ids,
        "jobId": job_id,
        "callbackUrl": format!("{}/api/internal/runs/callback", state.settings.public_url()),
    });
    let state = state.clone();
    let workspace = tenant.workspace_id;
    tokio::spawn(async move {
        if let Err(message) = deliver(&state, &url, &body).await {
            tracing::warn!(job = %job_id, %message, "hand-off failed");
            let _ = state
                .store
                .report_job(
                    workspace,
                    job_id,
                    &JobReport {
                        status: JobStatus::Failed,
                        summary: None,
                        error: Some(&message),
                        metadata: None,
                        at: now(),
                    },
                )
                .await;
        }
    });
    Ok((job_id, false))
}

/// POSTs the signed body, retrying network errors and 5xx a few times.
/// The error names the host, never the full URL (it may carry a token).
async fn deliver(state: &AppState, url: &str, body: &serde_json::Value) -> Result<(), String> {
    let bytes = serde_json::to_vec(body).map_err(|e| e.to_string())?;
    let secret = state
        .settings
        .sync
        .handoff_secret
        .expose_secret()
        .to_owned();
    let host = reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| "the automation".into());
    let mut waits = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .with_max_times(3)
        .build();
    loop {
        let timestamp = time::OffsetDateTime::now_utc().unix_timestamp();
        let sent = crate::outbound::with_request_id(state.outbound.client().post(url))
            .header("content-type", "application/json")
            .header(SIGNATURE_HEADER, signature(&secret, timestamp, &bytes))
            .header("plugboard-event", "sync.requested")
            .body(bytes.clone())
            .send()
            .await;
        let outcome = match sent {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) if r.status().is_server_error() => {
                format!("{host} answered HTTP {}", r.status().as_u16())
            }
            Ok(r) => {
                return Err(format!(
                    "the automation at {host} refused the hand-off (HTTP {})",
                    r.status().as_u16()
                ));
            }
            Err(_) => format!("{host} could not be reached"),
        };
        match waits.next() {
            Some(wait) => tokio::time::sleep(wait).await,
            None => return Err(format!("hand-off failed: {outcome}")),
        }
    }
}

/// Fails hand-off jobs whose automation has not reported for too long.
pub async fn expire_overdue(state: &AppState) -> sqlx::Result<u64> {
    let timeout = state.settings.sync.handoff_timeout_secs;
    let before = now() - time::Duration::seconds(i64::try_from(timeout).unwrap_or(i64::MAX / 2));
    let message = format!(
        "the automation did not report on this job within {timeout} s (PLUGBOARD_HANDOFF_TIMEOUT_SECS)"
    );
    state
        .store
        .expire_external_jobs(before, &message, now())
        .await
}

/// Runs [`expire_overdue`] until `stop`; only when hand-off is configured.
pub async fn expiry_loop(state: AppState, mut stop: tokio::sync::watch::Receiver<bool>) {
    let every = Duration::from_secs((state.settings.sync.handoff_timeout_secs / 4).clamp(1, 60));
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                match expire_overdue(&state).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(failed = n, "hand-off jobs timed out"),
                    Err(e) => tracing::warn!(error = %e, "expiring hand-off jobs failed"),
                }
            }
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_targets;

    #[test]
    fn targets_parse_and_report_mistakes() {
        let t = parse_targets(
            "bqe-core=https://n8n.example/webhook/a; google-ads=http://127.0.0.1:5678/w",
        )
        .unwrap();
        assert_eq!(t["bqe-core"], "https://n8n.example/webhook/a");
        assert_eq!(t.len(), 2);
        assert!(parse_targets("").unwrap().is_empty());
        assert!(parse_targets("bqe-core").is_err());
        assert!(parse_targets("bqe-core=ftp://x").is_err());
    }
}
