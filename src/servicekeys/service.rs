//! Creating and revoking service keys (workspace admins).

use serde::Serialize;
use uuid::Uuid;

use super::store::NewServiceKey;
use super::{Scope, mint};
use crate::audit::AuditEntry;
use crate::auth::validate_name;
use crate::error::{AppError, AppResult};
use crate::storage::{DynStore, now};
use crate::tenancy::Tenant;

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedKey {
    pub id: Uuid,
    pub name: String,
    pub prefix: String,
    pub scopes: Vec<Scope>,
    /// The full key, shown this once.
    pub key: String,
}

pub fn parse_scopes(raw: &[String]) -> AppResult<Vec<Scope>> {
    if raw.is_empty() {
        return Err(AppError::validation("scopes", "choose at least one scope"));
    }
    let mut scopes = Vec::new();
    for (i, s) in raw.iter().enumerate() {
        let scope = Scope::parse(s.trim()).ok_or_else(|| {
            AppError::validation(
                format!("scopes[{i}]"),
                format!(
                    "unknown scope {s:?}; expected one of {}",
                    Scope::ALL.map(Scope::as_str).join(", ")
                ),
            )
        })?;
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
    Ok(scopes)
}

pub async fn create(
    store: &DynStore,
    tenant: &Tenant,
    name: &str,
    raw_scopes: &[String],
) -> AppResult<CreatedKey> {
    tenant.require_admin("manage service keys")?;
    let name = validate_name("name", name)?;
    let scopes = parse_scopes(raw_scopes)?;
    let key = mint();
    let audit = AuditEntry::new(
        Some(tenant.workspace_id),
        Some(tenant.user_id),
        "service_key.create",
    )
    .target("service_key", key.id)
    .details(serde_json::json!({ "name": name, "prefix": key.prefix, "scopes": scopes }));
    store
        .create_service_key(
            &NewServiceKey {
                id: key.id,
                workspace_id: tenant.workspace_id,
                name: &name,
                prefix: &key.prefix,
                key_hash: &key.hash,
                scopes: &scopes,
                created_by: tenant.user_id,
                created_at: audit.created_at,
            },
            &audit,
        )
        .await?;
    Ok(CreatedKey {
        id: key.id,
        name,
        prefix: key.prefix,
        scopes,
        key: key.full.expose().to_owned(),
    })
}

pub async fn revoke(store: &DynStore, tenant: &Tenant, id: Uuid) -> AppResult<()> {
    tenant.require_admin("manage service keys")?;
    let audit = AuditEntry::new(
        Some(tenant.workspace_id),
        Some(tenant.user_id),
        "service_key.revoke",
    )
    .target("service_key", id);
    if store
        .revoke_service_key(tenant.workspace_id, id, now(), &audit)
        .await?
    {
        Ok(())
    } else {
        Err(AppError::not_found("service key not found"))
    }
}
