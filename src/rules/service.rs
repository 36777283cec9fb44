//! Reading, saving and deleting rules for the API (admins only).

use std::sync::Arc;

use serde::Serialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use uuid::Uuid;

use super::planner::{next_run, random_jitter};
use super::store::{RuleSave, SaveOutcome, StoredRule};
use super::{Adjustment, RuleInput, validate};
use crate::app::AppState;
use crate::audit::AuditEntry;
use crate::connections::service::resolve;
use crate::error::{AppError, AppResult};
use crate::providers::{ObjectMeta, Provider};
use crate::storage::now;
use crate::tenancy::Tenant;

/// A rule as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuleView {
    pub id: Uuid,
    pub connection_id: Uuid,
    pub provider: String,
    pub object: String,
    pub revision: i32,
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_run: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_planned_at: Option<OffsetDateTime>,
    #[schema(value_type = crate::rules::Rule)]
    pub rule: Value,
    pub created_by: Option<Uuid>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl From<StoredRule> for RuleView {
    fn from(r: StoredRule) -> Self {
        RuleView {
            id: r.id,
            connection_id: r.connection_id,
            provider: r.provider,
            object: r.object,
            revision: r.revision,
            next_run: r.next_run_at,
            last_planned_at: r.last_planned_at,
            rule: r.rule.0,
            created_by: r.created_by,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Saved {
    #[serde(flatten)]
    pub view: RuleView,
    /// Values the server changed instead of rejecting.
    pub adjusted: Vec<Adjustment>,
    #[serde(skip)]
    pub created: bool,
}

const WHAT: &str = "manage sync rules";

/// The admin check, then the provider and object (404 when unknown).
fn target<'a>(
    state: &'a AppState,
    tenant: &Tenant,
    provider_key: &str,
    object_key: &str,
) -> AppResult<(&'a Arc<Provider>, &'a ObjectMeta)> {
    tenant.require_admin(WHAT)?;
    let provider = state
        .providers
        .get(provider_key)
        .ok_or_else(|| AppError::not_found(format!("unknown provider {provider_key:?}")))?;
    let object = provider.object(object_key).ok_or_else(|| {
        AppError::not_found(format!("{provider_key} has no object {object_key:?}"))
    })?;
    Ok((provider, object))
}

/// Every rule for the provider's object in the workspace. A workspace with
/// no connection of the provider has nothing here to manage: 404.
pub async fn list(
    state: &AppState,
    tenant: &Tenant,
    provider_key: &str,
    object_key: &str,
    connection_id: Option<Uuid>,
) -> AppResult<Vec<RuleView>> {
    target(state, tenant, provider_key, object_key)?;
    match connection_id {
        Some(id) => {
            resolve(state, tenant, provider_key, Some(id)).await?;
        }
        None => {
            let any = state
                .store
                .list_connections(tenant.workspace_id)
                .await?
                .iter()
                .any(|c| c.provider == provider_key);
            if !any {
                return Err(AppError::not_found(format!(
                    "no {provider_key} connection in this workspace"
                )));
            }
        }
    }
    let rules = state
        .store
        .list_rules(tenant.workspace_id, provider_key, object_key)
        .await?;
    Ok(rules
        .into_iter()
        .filter(|r| connection_id.is_none_or(|id| r.connection_id == id))
        .map(RuleView::from)
        .collect())
}

/// Validates and saves. With `revision`, only over that revision (409
/// otherwise); without, the last write wins — with a new revision either way.
pub async fn save(
    state: &AppState,
    tenant: &Tenant,
    provider_key: &str,
    object_key: &str,
    input: RuleInput,
) -> AppResult<Saved> {
    let (_, object) = target(state, tenant, provider_key, object_key)?;
    let (body, connection_id, expected_revision) = input.into_parts();
    // Revisions are stored as i32; a larger one can't match: 409 below.
    let expected_revision = expected_revision.map(|r| i32::try_from(r.get()).unwrap_or(i32::MAX));
    let at = now();
    let validated = validate(&body, object, at)?;
    let connection = resolve(state, tenant, provider_key, connection_id).await?;
    let next_run_at = if validated.rule.enabled {
        next_run(&validated.rule.interval, at, random_jitter())
    } else {
        None
    };
    let document = serde_json::to_value(&validated.rule).map_err(AppError::internal)?;
    let audit = AuditEntry::new(
        Some(tenant.workspace_id),
        Some(tenant.user_id),
        "sync_rule.save",
    )
    .details(json!({
        "provider": provider_key,
        "object": object_key,
        "connectionId": connection.id,
    }));
    let outcome = state
        .store
        .save_rule(
            &RuleSave {
                workspace_id: tenant.workspace_id,
                connection_id: connection.id,
                provider: provider_key,
                object: object_key,
                rule: &document,
                expected_revision,
                next_run_at,
                actor: tenant.user_id,
                at,
            },
            &audit,
        )
        .await?;
    match outcome {
        SaveOutcome::Saved { rule, created } => Ok(Saved {
            view: RuleView::from(*rule),
            adjusted: validated.adjusted,
            created,
        }),
        SaveOutcome::RevisionMismatch { current } => Err(AppError::conflict(
            "revision",
            match current {
                Some(current) => format!(
                    "the rule was changed meanwhile: it is at revision {current}, not {}; reload it and apply your change again",
                    expected_revision.unwrap_or_default()
                ),
                None => "there is no rule to update yet; send it without a revision to create it"
                    .to_owned(),
            },
        )),
    }
}

pub async fn delete(
    state: &AppState,
    tenant: &Tenant,
    provider_key: &str,
    object_key: &str,
    connection_id: Option<Uuid>,
) -> AppResult<()> {
    target(state, tenant, provider_key, object_key)?;
    let connection = resolve(state, tenant, provider_key, connection_id).await?;
    let audit = AuditEntry::new(
        Some(tenant.workspace_id),
        Some(tenant.user_id),
        "sync_rule.delete",
    )
    .details(json!({
        "provider": provider_key,
        "object": object_key,
        "connectionId": connection.id,
    }));
    if state
        .store
        .delete_rule(tenant.workspace_id, connection.id, object_key, &audit)
        .await?
    {
        Ok(())
    } else {
        Err(AppError::not_found(format!(
            "no rule for {provider_key} {object_key} on this connection"
        )))
    }
}
