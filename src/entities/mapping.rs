//! Which provider field feeds which entity column, under which policy.
//!
//! A workspace uses the provider's `mappingDefaults` (every field
//! `preserve_local`) until an admin saves its own mapping. A saved mapping
//! keeps the catalog's `fieldSignatureHash` it was made against; when the
//! provider's fields change, [`ensure_mapping_current`] marks it stale,
//! drops the entries whose source field is gone, and the object is blocked
//! until an admin saves the mapping again.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

use super::store::NewMapping;
use super::{EntityKind, FieldPolicy, MAPPING_OUT_OF_DATE, MappingField};
use crate::app::AppState;
use crate::audit::AuditEntry;
use crate::error::{AppError, AppResult};
use crate::input::SingleLine;
use crate::providers::catalog::field_signature_hash;
use crate::providers::{ObjectKind, ObjectMeta, Provider};
use crate::storage::now;
use crate::tenancy::{Tenant, WorkspaceId};

/// The mapping in force for one provider object of a workspace.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EffectiveMapping {
    pub provider: String,
    pub object: String,
    #[serde(skip)]
    pub kind: EntityKind,
    pub target: &'static str,
    pub fields: Vec<MappingField>,
    /// 0 until an admin saves one: the provider's defaults.
    pub version: i32,
    pub is_default: bool,
    pub stale: bool,
    /// The catalog's signature now.
    pub field_signature_hash: String,
    /// The signature the saved mapping was made against.
    pub saved_field_signature_hash: Option<String>,
    pub updated_by: Option<Uuid>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub updated_at: Option<OffsetDateTime>,
    /// What a mapping of this object may say, for editors.
    #[schema(value_type = Vec<String>)]
    pub target_fields: &'static [&'static str],
    pub source_fields: Vec<String>,
    #[schema(value_type = Vec<crate::entities::FieldPolicy>)]
    pub policies: [&'static str; 3],
}

impl EffectiveMapping {
    /// Identifies what records are applied with: a link applied under
    /// another fingerprint is applied again.
    pub fn fingerprint(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(self.target.as_bytes());
        hasher.update(serde_json::to_vec(&self.fields).unwrap_or_default());
        let digest = hasher.finalize();
        digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
    }
}

/// A provider object that feeds local entities, and which kind.
pub fn entity_object<'a>(
    state: &'a AppState,
    provider: &str,
    object: &str,
) -> AppResult<(&'a Arc<Provider>, &'a ObjectMeta, EntityKind)> {
    let p = state
        .providers
        .get(provider)
        .ok_or_else(|| AppError::not_found(format!("unknown provider {provider:?}")))?;
    let o = p
        .object(object)
        .ok_or_else(|| AppError::not_found(format!("{provider} has no object {object:?}")))?;
    let kind = o
        .mapping_defaults
        .as_ref()
        .filter(|_| o.kind == ObjectKind::Records)
        .and_then(|d| EntityKind::from_target(&d.target))
        .ok_or_else(|| {
            AppError::not_found(format!(
                "{provider}/{object} does not feed local projects or people"
            ))
        })?;
    Ok((p, o, kind))
}

fn declared(o: &ObjectMeta) -> BTreeSet<&str> {
    o.fields.iter().map(|f| f.name.as_str()).collect()
}

/// The saved mapping, else the provider's defaults. Entries whose source
/// the provider no longer declares are left out (as marking it stale
/// would drop them).
pub async fn effective(
    state: &AppState,
    workspace: WorkspaceId,
    provider: &str,
    object: &str,
) -> AppResult<EffectiveMapping> {
    let (_, o, kind) = entity_object(state, provider, object)?;
    let current = field_signature_hash(o);
    let names = declared(o);
    let stored = state.store.get_mapping(workspace, provider, object).await?;
    let mut m = EffectiveMapping {
        provider: provider.to_owned(),
        object: object.to_owned(),
        kind,
        target: kind.target(),
        fields: Vec::new(),
        version: 0,
        is_default: true,
        stale: false,
        field_signature_hash: current.clone(),
        saved_field_signature_hash: None,
        updated_by: None,
        updated_at: None,
        target_fields: kind.columns(),
        source_fields: o.fields.iter().map(|f| f.name.clone()).collect(),
        policies: FieldPolicy::ALL.map(FieldPolicy::as_str),
    };
    match stored {
        Some(s) => {
            m.fields = s
                .fields
                .0
                .into_iter()
                .filter(|f| names.contains(f.source.as_str()) && kind.column(&f.target).is_some())
                .collect();
            m.version = s.version;
            m.is_default = false;
            m.stale = s.stale || s.field_signature_hash != current;
            m.saved_field_signature_hash = Some(s.field_signature_hash);
            m.updated_by = s.updated_by;
            m.updated_at = Some(s.updated_at);
        }
        None => {
            m.fields = o
                .mapping_defaults
                .iter()
                .flat_map(|d| &d.fields)
                .filter(|f| kind.column(&f.target).is_some())
                .map(|f| MappingField {
                    source: f.source.to_string(),
                    target: f.target.clone(),
                    policy: FieldPolicy::default(),
                })
                .collect();
        }
    }
    Ok(m)
}

/// Call before syncing or applying an object. Ok when the workspace uses
/// the defaults or a mapping saved against the provider's current fields.
/// Otherwise the mapping is marked stale — entries whose source field is
/// gone dropped, in one transaction — and `Err` carries the message the
/// job should fail with: "Mappings out of date; review in Integrations
/// Hub". It stays so until an admin saves the mapping again.
pub async fn ensure_mapping_current(
    state: &AppState,
    workspace: WorkspaceId,
    provider: &str,
    object: &str,
) -> Result<(), String> {
    let o = state
        .providers
        .get(provider)
        .and_then(|p| p.object(object))
        .ok_or_else(|| format!("{provider} has no object {object:?}"))?;
    let current = field_signature_hash(o);
    let failed = |e: sqlx::Error| format!("reading the mapping failed: {e}");
    let Some(stored) = state
        .store
        .get_mapping(workspace, provider, object)
        .await
        .map_err(failed)?
    else {
        return Ok(());
    };
    if stored.stale {
        return Err(MAPPING_OUT_OF_DATE.to_owned());
    }
    if stored.field_signature_hash == current {
        return Ok(());
    }
    let names = declared(o);
    let (kept, dropped): (Vec<MappingField>, Vec<MappingField>) = stored
        .fields
        .0
        .into_iter()
        .partition(|f| names.contains(f.source.as_str()));
    let audit = AuditEntry::new(Some(workspace), None, "mapping.stale")
        .target("mapping", format!("{provider}/{object}"))
        .details(serde_json::json!({
            "dropped": dropped.iter().map(|f| &f.source).collect::<Vec<_>>(),
            "fieldSignatureHash": current,
        }));
    let marked = state
        .store
        .mark_mapping_stale(
            workspace,
            provider,
            object,
            &stored.field_signature_hash,
            &kept,
            &audit,
        )
        .await
        .map_err(|e| format!("marking the mapping stale failed: {e}"))?;
    if !marked {
        // Saved anew meanwhile: it may be current now.
        let again = state
            .store
            .get_mapping(workspace, provider, object)
            .await
            .map_err(failed)?;
        if again.is_some_and(|m| !m.stale && m.field_signature_hash == current) {
            return Ok(());
        }
    }
    Err(MAPPING_OUT_OF_DATE.to_owned())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MappingInput {
    pub fields: Vec<FieldInput>,
    /// The version the editor started from; a save by someone else since
    /// then is a conflict.
    #[serde(default)]
    pub version: Option<i32>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldInput {
    pub source: SingleLine,
    pub target: SingleLine,
    #[serde(default)]
    pub policy: Option<SingleLine>,
}

/// Checks a mapping against the object's fields and the entity's columns;
/// errors name the entry by JSON pointer (`/fields/1/source`).
pub fn validate(
    o: &ObjectMeta,
    kind: EntityKind,
    input: &[FieldInput],
) -> AppResult<Vec<MappingField>> {
    if input.is_empty() {
        return Err(AppError::validation("/fields", "map at least one field"));
    }
    let names = declared(o);
    let mut targets = BTreeSet::new();
    let mut out = Vec::with_capacity(input.len());
    for (i, f) in input.iter().enumerate() {
        if !names.contains(f.source.as_str()) {
            return Err(AppError::validation(
                format!("/fields/{i}/source"),
                format!(
                    "{:?} is not a field of {}; expected one of {}",
                    f.source,
                    o.key,
                    names.iter().copied().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        let Some(target) = kind.column(&f.target) else {
            return Err(AppError::validation(
                format!("/fields/{i}/target"),
                format!(
                    "{:?} is not a field of {}; expected one of {}",
                    f.target,
                    kind.target(),
                    kind.columns().join(", ")
                ),
            ));
        };
        if !targets.insert(target) {
            return Err(AppError::validation(
                format!("/fields/{i}/target"),
                format!("{target} is mapped twice"),
            ));
        }
        let policy = match f.policy.as_deref() {
            None => FieldPolicy::default(),
            Some(raw) => FieldPolicy::parse(raw).ok_or_else(|| {
                AppError::validation(
                    format!("/fields/{i}/policy"),
                    "expected preserve_local, follow_source or write_once",
                )
            })?,
        };
        out.push(MappingField {
            source: f.source.to_string(),
            target: target.to_owned(),
            policy,
        });
    }
    Ok(out)
}

/// Saves the workspace's mapping (admins): validated, version + 1, against
/// the catalog's current signature, no longer stale.
pub async fn save(
    state: &AppState,
    tenant: &Tenant,
    provider: &str,
    object: &str,
    input: &MappingInput,
) -> AppResult<EffectiveMapping> {
    tenant.require_admin("edit mappings")?;
    let (_, o, kind) = entity_object(state, provider, object)?;
    let fields = validate(o, kind, &input.fields)?;
    let current = effective(state, tenant.workspace_id, provider, object).await?;
    let seen_version = input.version.unwrap_or(current.version);
    let signature = field_signature_hash(o);
    let audit = AuditEntry::new(
        Some(tenant.workspace_id),
        Some(tenant.user_id),
        "mapping.save",
    )
    .target("mapping", format!("{provider}/{object}"))
    .details(serde_json::json!({
        "fields": &fields,
        "fieldSignatureHash": &signature,
        // The fields the mapping was made against: once the provider's
        // change, the Mapping tab shows what changed since.
        "catalog": catalog_snapshot(o),
    }));
    let saved = state
        .store
        .save_mapping(
            tenant.workspace_id,
            &NewMapping {
                provider,
                object,
                target: kind.target(),
                fields: &fields,
                field_signature_hash: &signature,
                seen_version,
                updated_by: tenant.user_id,
                at: now(),
            },
            &audit,
        )
        .await?;
    if saved.is_none() {
        return Err(AppError::conflict(
            "version",
            "the mapping was changed by someone else; reload it and save again",
        ));
    }
    effective(state, tenant.workspace_id, provider, object).await
}

/// The object's fields as a mapping is saved against them (name, type,
/// nullable, identifier: what `fieldSignatureHash` covers).
pub fn catalog_snapshot(o: &ObjectMeta) -> serde_json::Value {
    o.fields
        .iter()
        .map(|f| {
            serde_json::json!({
                "name": f.name,
                "type": f.field_type,
                "nullable": f.nullable,
                "identifier": f.identifier,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object() -> ObjectMeta {
        serde_json::from_value(serde_json::json!({
            "key": "projects", "label": "P", "kind": "records", "endpoint": "/p", "method": "GET",
            "pagination": {"strategy": "none"}, "recordSelector": "", "capabilities": ["list"],
            "fields": [
                {"name": "id", "type": "string", "nullable": false, "identifier": true},
                {"name": "name", "type": "string", "nullable": false},
                {"name": "code", "type": "string", "nullable": true}
            ],
        }))
        .unwrap()
    }

    fn input(source: &str, target: &str, policy: Option<&str>) -> FieldInput {
        FieldInput {
            source: source.into(),
            target: target.into(),
            policy: policy.map(Into::into),
        }
    }

    fn field_of(err: AppError) -> Option<String> {
        match err {
            AppError::Validation { field, .. } => field,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn validation_names_the_entry() {
        let o = object();
        let k = EntityKind::Project;
        let ok = validate(
            &o,
            k,
            &[
                input("name", "name", None),
                input("code", "number", Some("write_once")),
            ],
        )
        .unwrap();
        assert_eq!(ok[0].policy, FieldPolicy::PreserveLocal);
        assert_eq!(ok[1].policy, FieldPolicy::WriteOnce);
        let bad_source = validate(
            &o,
            k,
            &[input("name", "name", None), input("nope", "number", None)],
        );
        assert_eq!(
            field_of(bad_source.unwrap_err()).as_deref(),
            Some("/fields/1/source")
        );
        let bad_target = validate(&o, k, &[input("name", "email", None)]);
        assert_eq!(
            field_of(bad_target.unwrap_err()).as_deref(),
            Some("/fields/0/target")
        );
        let twice = validate(
            &o,
            k,
            &[input("name", "name", None), input("code", "name", None)],
        );
        assert_eq!(
            field_of(twice.unwrap_err()).as_deref(),
            Some("/fields/1/target")
        );
        let policy = validate(&o, k, &[input("name", "name", Some("sometimes"))]);
        assert_eq!(
            field_of(policy.unwrap_err()).as_deref(),
            Some("/fields/0/policy")
        );
        assert_eq!(
            field_of(validate(&o, k, &[]).unwrap_err()).as_deref(),
            Some("/fields")
        );
    }
}
