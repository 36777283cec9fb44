//! The internal API for automations: service-key authentication, fresh
//! tokens, metric writes, and run reports. Access rules:
//! missing, malformed, unknown or revoked key → 401 with no detail; a key
//! without the scope → 403; anything of another workspace → 404.

use std::num::NonZeroU32;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::app::AppState;
use crate::audit::AuditEntry;
use crate::connections::tokens::{self, place, provider_of, required_headers};
use crate::connections::{Connection, REFRESH_TOKEN, Status};
use crate::error::{AppError, AppResult};
use crate::input::{JsonText, MultiLine, SingleLine, TextKind, problem_in_json};
use crate::jobs::store::{JobReport, ReportOutcome};
use crate::jobs::{Job, JobStatus};
use crate::metrics::store::MetricBatch;
use crate::metrics::{
    MetricInput, WriteCounts, WriteMode, currency_code, days_of, new_batch_id, revisions_from,
    semantics_of, validate_batch, validate_object,
};
use crate::servicekeys::{Scope, ServiceCaller, hash_key, prefix_of};
use crate::storage::now;
use crate::tenancy::WorkspaceId;
use crate::vault::store::get_secret;

pub const AGENT_HEADER: &str = "x-agent-service-key";

/// Per-key request budget (the deployment-wide key is `Uuid::nil()`).
pub struct KeyLimiter {
    limiter: DefaultKeyedRateLimiter<Uuid>,
    clock: DefaultClock,
    /// When each key's last use was written, so a busy key costs one
    /// write a minute rather than one per request.
    touched: dashmap::DashMap<Uuid, std::time::Instant>,
}

impl KeyLimiter {
    pub fn new(per_minute: u32) -> Self {
        KeyLimiter {
            limiter: RateLimiter::keyed(Quota::per_minute(
                NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN),
            )),
            clock: DefaultClock::default(),
            touched: dashmap::DashMap::new(),
        }
    }

    /// True when the key's last use should be written now.
    fn should_touch(&self, key: Uuid) -> bool {
        let now = std::time::Instant::now();
        let mut due = false;
        self.touched
            .entry(key)
            .and_modify(|last| {
                if now.duration_since(*last) >= std::time::Duration::from_secs(60) {
                    *last = now;
                    due = true;
                }
            })
            .or_insert_with(|| {
                due = true;
                now
            });
        due
    }

    fn check(&self, key: Uuid) -> AppResult<()> {
        self.limiter
            .check_key(&key)
            .map_err(|not_until| AppError::RateLimited {
                retry_after_secs: not_until.wait_time_from(self.clock.now()).as_secs().max(1),
            })
    }

    pub fn prune(&self) {
        self.limiter.retain_recent();
        let hour = std::time::Duration::from_secs(3600);
        self.touched.retain(|_, last| last.elapsed() < hour);
    }
}

fn presented_key(parts: &Parts) -> Option<&str> {
    if let Some(value) = parts.headers.get(AGENT_HEADER) {
        return value.to_str().ok().map(str::trim);
    }
    let auth = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = auth.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Authenticates a service key (or the deployment-wide key) and spends one
/// request of its budget.
pub struct ServiceAuth(pub ServiceCaller);

impl FromRequestParts<AppState> for ServiceAuth {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let presented = presented_key(parts)
            .filter(|k| !k.is_empty())
            .ok_or(AppError::Unauthenticated)?;
        let agent = state.settings.internal.agent_service_key.expose_secret();
        if !agent.is_empty() && bool::from(agent.as_bytes().ct_eq(presented.as_bytes())) {
            state.key_limiter.check(Uuid::nil())?;
            return Ok(ServiceAuth(ServiceCaller::deployment()));
        }
        let prefix = prefix_of(presented).ok_or(AppError::Unauthenticated)?;
        let credential = state
            .store
            .find_key_credential(prefix)
            .await?
            .ok_or(AppError::Unauthenticated)?;
        let matches = bool::from(hash_key(presented).ct_eq(&credential.key_hash));
        if !matches || credential.revoked_at.is_some() {
            return Err(AppError::Unauthenticated);
        }
        state.key_limiter.check(credential.id)?;
        if state.key_limiter.should_touch(credential.id)
            && let Err(e) = state.store.touch_service_key(credential.id, now()).await
        {
            tracing::warn!(error = %e, "recording service key use failed");
        }
        Ok(ServiceAuth(ServiceCaller {
            key_id: Some(credential.id),
            workspace: Some(credential.workspace_id),
            scopes: credential.scopes.0,
        }))
    }
}

pub fn require(caller: &ServiceCaller, scope: Scope) -> AppResult<()> {
    if caller.has(scope) {
        Ok(())
    } else {
        Err(AppError::Forbidden(format!(
            "this key lacks the {scope} scope"
        )))
    }
}

/// The workspace of a connection the caller may reach; 404 otherwise.
async fn connection_workspace(
    state: &AppState,
    caller: &ServiceCaller,
    id: Uuid,
) -> AppResult<WorkspaceId> {
    let not_found = || AppError::not_found("connection not found");
    let ws = match caller.workspace {
        Some(ws) => ws,
        None => state
            .store
            .find_connection_workspace(id)
            .await?
            .ok_or_else(not_found)?,
    };
    Ok(ws)
}

/// A member's personal connection is used by automations only when the key
/// has `tokens:read_personal` and the member switched on "automations may
/// use this connection". Otherwise it answers what a made-up id answers
/// (404): the key can't tell a member's connection it may not use from none.
fn may_use(caller: &ServiceCaller, c: &Connection) -> bool {
    c.owner_user_id.is_none() || (caller.has(Scope::TokensReadPersonal) && c.automations_allowed)
}

/// Headers an automation may be handed: provider.json's `secret` ones
/// (the operator's, e.g. Google Ads' developer token) stay on the server.
fn shareable_headers(
    state: &AppState,
    provider: &crate::providers::Provider,
    c: &Connection,
) -> std::collections::BTreeMap<String, String> {
    required_headers(state, provider, c)
        .map(|headers| {
            headers
                .into_iter()
                .filter(|(key, _)| !provider.header_is_secret(key))
                .collect()
        })
        .unwrap_or_default()
}

/// A connection's tokens: the only API response that carries them, to
/// service keys with the tokens:read scope; every read is audited.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IssuedTokens {
    /// The provider access token (or API key), refreshed when expiring.
    pub access_token: String,
    /// `Bearer`, or `api_key` for API-key connections.
    pub token_type: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<time::OffsetDateTime>,
    pub scopes: Vec<String>,
    #[serde(rename = "selectedAccountIds")]
    pub selected_account_ids: Vec<String>,
    pub headers: std::collections::BTreeMap<String, String>,
    /// Only for keys with the tokens:read_refresh scope.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

/// The one place tokens leave Plugboard: refreshed first when expiring
/// (single flight), every call audited.
pub async fn connection_tokens(
    state: &AppState,
    caller: &ServiceCaller,
    id: Uuid,
) -> AppResult<IssuedTokens> {
    require(caller, Scope::TokensRead)?;
    let ws = connection_workspace(state, caller, id).await?;
    let c = state
        .store
        .get_connection(ws, id)
        .await?
        .filter(|c| may_use(caller, c))
        .ok_or_else(|| AppError::not_found("connection not found"))?;
    if !c.status().usable() {
        return Err(AppError::Conflict {
            field: Some("status".into()),
            message: format!("connection is {}", c.status().as_str()),
        });
    }
    // After a refresh this is the refreshed row (new expiry, maybe scopes).
    let (access, c) = tokens::access_token_with_connection(state, &c).await?;
    let provider = provider_of(state, &c)?;
    let headers = shareable_headers(state, provider, &c);
    let refresh_token = if caller.has(Scope::TokensReadRefresh) {
        get_secret(state.store.as_ref(), &state.keys, &place(&c, REFRESH_TOKEN))
            .await?
            .map(|s| s.expose().to_owned())
    } else {
        None
    };
    let audit = AuditEntry::new(Some(ws), None, "connection.token_read")
        .target("connection", c.id)
        .details(serde_json::json!({ "serviceKey": caller.label(), "withRefreshToken": refresh_token.is_some() }));
    state.store.record_audit(&audit).await?;
    Ok(IssuedTokens {
        access_token: access.expose().to_owned(),
        token_type: if c.flow == "api_key" {
            "api_key".into()
        } else {
            "Bearer".into()
        },
        expires_at: c.access_expires_at,
        scopes: c
            .granted_scopes
            .as_ref()
            .map_or_else(|| c.requested_scopes.0.clone(), |g| g.0.clone()),
        selected_account_ids: c.selected_account_ids.0.clone(),
        headers,
        refresh_token,
    })
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantRef {
    pub workspace_id: Uuid,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricsWrite {
    pub tenant: TenantRef,
    pub provider: SingleLine,
    #[serde(default)]
    pub connection_id: Option<Uuid>,
    /// The provider object the rows belong to (e.g. the object a handed-off
    /// job syncs); '' when none is given. Part of the rows' key.
    #[serde(default)]
    pub object: Option<String>,
    /// `merge` (default) or `replace_day`.
    #[serde(default)]
    pub mode: WriteMode,
    pub metrics: Vec<MetricInput>,
}

/// Automations' dimension values are input: no NUL or other control
/// characters (tab and newline allowed), named by row and pointer.
fn refuse_control_text(rows: &[MetricInput]) -> AppResult<()> {
    for (index, row) in rows.iter().enumerate() {
        let fields = [
            ("accountId", row.account_id.as_ref()),
            ("dimensionsJson", row.dimensions_json.as_ref()),
        ];
        for (field, value) in fields {
            let Some(value) = value else { continue };
            if let Some((at, problem)) = problem_in_json(value, TextKind::MultiLine) {
                return Err(AppError::validation(
                    format!("metrics[{index}].{field}{at}"),
                    problem,
                ));
            }
        }
    }
    Ok(())
}

/// Validates every row first; any invalid row rejects the batch and
/// nothing is written. Valid batches write in one transaction: `merge`
/// merges metric keys into stored rows, `replace_day` makes the rows each
/// written day's only ones (for this connection, object and account).
pub async fn write_metrics(
    state: &AppState,
    caller: &ServiceCaller,
    input: &MetricsWrite,
) -> AppResult<WriteCounts> {
    require(caller, Scope::MetricsWrite)?;
    let ws = WorkspaceId(input.tenant.workspace_id);
    if !caller.may_access(ws) || !state.store.workspace_exists(ws).await? {
        return Err(AppError::not_found("workspace not found"));
    }
    if state.providers.get(&input.provider).is_none() {
        return Err(AppError::validation(
            "provider",
            format!("unknown provider {:?}", input.provider),
        ));
    }
    if let Some(id) = input.connection_id {
        let c = state.store.get_connection(ws, id).await?;
        match c {
            Some(c) if c.provider == input.provider.as_str() => {}
            Some(_) => {
                return Err(AppError::validation(
                    "connectionId",
                    "the connection belongs to another provider",
                ));
            }
            None => {
                return Err(AppError::validation(
                    "connectionId",
                    "no such connection in this workspace",
                ));
            }
        }
    }
    refuse_control_text(&input.metrics)?;
    let mode = input.mode;
    let object = validate_object(input.object.as_deref())?;
    let mut rows = validate_batch(&input.metrics, state.settings.internal.max_metric_rows)?;
    // The account's currency when a listing reported it (of the named
    // connection, else any of the provider's connections in the workspace).
    let currencies: std::collections::HashMap<String, String> = state
        .store
        .list_provider_accounts(ws)
        .await?
        .into_iter()
        .filter(|a| a.provider == input.provider.as_str())
        .filter(|a| input.connection_id.is_none_or(|c| c == a.connection_id))
        .filter_map(|a| {
            Some((
                a.external_id,
                a.currency.as_deref().and_then(currency_code)?,
            ))
        })
        .collect();
    for row in &mut rows {
        row.currency = currencies.get(&row.account_id).cloned();
    }
    let settling = state
        .providers
        .get(&input.provider)
        .and_then(|p| semantics_of(p, &object))
        .map_or(0, |(_, s)| s.settling_days);
    let replace_days = match mode {
        WriteMode::Merge => Vec::new(),
        WriteMode::ReplaceDay => days_of(&rows),
    };
    let counts = state
        .store
        .upsert_metrics(&MetricBatch {
            workspace: ws,
            provider: &input.provider,
            connection_id: input.connection_id,
            object: &object,
            rows: &rows,
            merge: mode == WriteMode::Merge,
            replace_days: &replace_days,
            also_keep: &[],
            batch_id: new_batch_id(),
            at: now(),
            revisions_from: Some(revisions_from(
                now().date(),
                settling,
                state.settings.metrics.revision_margin_days,
            )),
        })
        .await?;
    Ok(counts)
}

async fn job_for(state: &AppState, caller: &ServiceCaller, id: Uuid) -> AppResult<Job> {
    let found = match caller.workspace {
        Some(ws) => state.store.get_job(ws, id).await?,
        None => state.store.find_job(id).await?,
    };
    found.ok_or_else(|| AppError::not_found("job not found"))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunCallback {
    pub job_id: Uuid,
    /// running, succeeded, failed or cancelled.
    #[schema(value_type = JobStatus)]
    pub status: SingleLine,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub summary: Option<JsonText>,
    #[serde(default)]
    pub error: Option<MultiLine>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<JsonText>,
}

pub async fn report_run(
    state: &AppState,
    caller: &ServiceCaller,
    input: &RunCallback,
) -> AppResult<Job> {
    require(caller, Scope::RunsWrite)?;
    let status = match JobStatus::parse(&input.status) {
        Some(
            s @ (JobStatus::Running
            | JobStatus::Succeeded
            | JobStatus::Failed
            | JobStatus::Cancelled),
        ) => s,
        _ => {
            return Err(AppError::validation(
                "status",
                "expected running, succeeded, failed or cancelled",
            ));
        }
    };
    for (field, value) in [("summary", &input.summary), ("metadata", &input.metadata)] {
        if value.as_ref().is_some_and(|v| !v.is_object()) {
            return Err(AppError::validation(
                field,
                format!("{field} must be an object"),
            ));
        }
    }
    if input.error.as_ref().is_some_and(|e| e.len() > 4000) {
        return Err(AppError::validation(
            "error",
            "error must be at most 4000 characters",
        ));
    }
    let job = job_for(state, caller, input.job_id).await?;
    if job.kind != "external" {
        return Err(AppError::Conflict {
            field: Some("jobId".into()),
            message: "this job is run by Plugboard's own workers, not an automation".into(),
        });
    }
    let report = JobReport {
        status,
        summary: input.summary.as_deref(),
        error: input.error.as_deref(),
        metadata: input.metadata.as_deref(),
        at: now(),
    };
    match state
        .store
        .report_job(job.workspace_id, job.id, &report)
        .await?
    {
        ReportOutcome::Updated(job) => Ok(*job),
        ReportOutcome::NotFound => Err(AppError::not_found("job not found")),
        ReportOutcome::AlreadyFinished(s) => Err(AppError::Conflict {
            field: Some("status".into()),
            message: format!(
                "the job already finished ({}); a finished job can't be reopened",
                s.as_str()
            ),
        }),
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunContext {
    pub job_id: Uuid,
    pub status: JobStatus,
    pub tenant: TenantRef,
    pub provider: String,
    pub object: Option<String>,
    pub connection_id: Option<Uuid>,
    pub connection_status: Option<Status>,
    pub selected_account_ids: Vec<String>,
    #[schema(value_type = Option<crate::rules::Rule>)]
    pub rule: Value,
}

/// What an automation needs to run a job; never tokens.
pub async fn run_context(
    state: &AppState,
    caller: &ServiceCaller,
    job_id: Uuid,
) -> AppResult<RunContext> {
    require(caller, Scope::ContextRead)?;
    let job = job_for(state, caller, job_id).await?;
    let connection = match job.connection_id {
        Some(id) => state.store.get_connection(job.workspace_id, id).await?,
        None => None,
    };
    // A personal connection's job is its owner's data, like its tokens.
    if connection.as_ref().is_some_and(|c| !may_use(caller, c)) {
        return Err(AppError::not_found("job not found"));
    }
    Ok(RunContext {
        job_id: job.id,
        status: job.status(),
        tenant: TenantRef {
            workspace_id: job.workspace_id.0,
        },
        provider: job.provider.clone(),
        object: job.object.clone(),
        connection_id: job.connection_id,
        connection_status: connection.as_ref().map(|c| c.status()),
        selected_account_ids: connection
            .map(|c| c.selected_account_ids.0)
            .unwrap_or_default(),
        rule: job.metadata.0.get("rule").cloned().unwrap_or(Value::Null),
    })
}
