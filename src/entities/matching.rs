//! Initial matching: proposing, for each unlinked parent record of a
//! provider object, the local entity it most likely is, and confirming
//! the pairs an admin accepts — all in one transaction.
//!
//! The rules, shared with the `upsert` conflict policy of
//! [`apply_records`](super::apply::apply_records): the exact key (project
//! number; a person's email, case-insensitively), then the case-insensitive
//! name plus — for projects — client. Exactly one candidate not yet linked
//! is a match; several, or one already linked, is a conflict.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::apply::apply_fields;
use super::mapping::{effective, ensure_mapping_current, entity_object};
use super::store::{Candidate, SourceRecord};
use super::{Entity, EntityKind, Link, MappingField, normalize};
use crate::app::AppState;
use crate::audit::AuditEntry;
use crate::connections::service::resolve;
use crate::error::{AppError, AppResult};
use crate::input::SingleLine;
use crate::storage::now;
use crate::tenancy::Tenant;

/// Records considered for suggestions, and pairs accepted at once.
const MAX_RECORDS: i64 = 10_000;

/// What matching compares: the key (project number / person email), the
/// name and, for projects, the client.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Probe {
    pub key: Option<String>,
    pub name: Option<String>,
    pub client: Option<String>,
}

impl Probe {
    /// A record's values, through the mapping.
    pub fn of(kind: EntityKind, mapping: &[MappingField], data: &Value) -> Probe {
        let mapped = |column: &str| {
            let field = mapping.iter().find(|f| f.target == column)?;
            let raw = data.get(&field.source).unwrap_or(&Value::Null);
            normalize(kind, column, raw)?.as_str().map(str::to_owned)
        };
        Probe {
            key: mapped(kind.key_column()),
            name: mapped("name"),
            client: (kind == EntityKind::Project)
                .then(|| mapped("client_name"))
                .flatten(),
        }
    }

    pub fn of_entity(e: &Entity) -> Probe {
        Probe {
            key: e.text(e.kind.key_column()),
            name: e.text("name"),
            client: (e.kind == EntityKind::Project)
                .then(|| e.text("client_name"))
                .flatten(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MatchedBy {
    Number,
    Email,
    NameAndClient,
    Name,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ranked {
    Matched { id: Uuid, by: MatchedBy },
    Unmatched,
    Conflict { ids: Vec<Uuid>, by: MatchedBy },
}

fn lower(v: &Option<String>) -> Option<String> {
    v.as_deref().map(str::to_lowercase)
}

/// Applies the matching rules to a record's probe.
pub fn rank(kind: EntityKind, probe: &Probe, candidates: &[Candidate]) -> Ranked {
    let decide = |hits: Vec<&Candidate>, by: MatchedBy| match hits.as_slice() {
        [] => None,
        [one] if !one.linked => Some(Ranked::Matched {
            id: one.entity.id,
            by,
        }),
        _ => Some(Ranked::Conflict {
            ids: hits.iter().map(|c| c.entity.id).collect(),
            by,
        }),
    };
    if probe.key.is_some() {
        let (by, want) = match kind {
            EntityKind::Project => (MatchedBy::Number, probe.key.clone()),
            EntityKind::Person => (MatchedBy::Email, lower(&probe.key)),
        };
        let hits = candidates
            .iter()
            .filter(|c| {
                let key = Probe::of_entity(&c.entity).key;
                let key = match kind {
                    EntityKind::Project => key,
                    EntityKind::Person => lower(&key),
                };
                key == want
            })
            .collect();
        if let Some(ranked) = decide(hits, by) {
            return ranked;
        }
    }
    if probe.name.is_some() {
        let by = match kind {
            EntityKind::Project => MatchedBy::NameAndClient,
            EntityKind::Person => MatchedBy::Name,
        };
        let hits = candidates
            .iter()
            .filter(|c| {
                let other = Probe::of_entity(&c.entity);
                lower(&other.name) == lower(&probe.name)
                    && lower(&other.client) == lower(&probe.client)
            })
            .collect();
        if let Some(ranked) = decide(hits, by) {
            return ranked;
        }
    }
    Ranked::Unmatched
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MatchStatus {
    Matched,
    Unmatched,
    Conflict,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CandidateView {
    pub id: Uuid,
    #[serde(flatten)]
    pub values: Probe,
    pub linked: bool,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Suggestion {
    pub external_id: String,
    pub deleted: bool,
    /// The record's values matching looked at.
    pub record: Probe,
    pub status: MatchStatus,
    /// The proposed entity (status matched).
    pub entity_id: Option<Uuid>,
    pub matched_by: Option<MatchedBy>,
    pub candidates: Vec<CandidateView>,
}

/// Suggestions for unlinked records; an entity proposed for two records
/// settles neither (both conflict).
pub fn suggest(
    kind: EntityKind,
    mapping: &[MappingField],
    records: &[SourceRecord],
    candidates: &[Candidate],
) -> Vec<Suggestion> {
    let by_id: BTreeMap<Uuid, &Candidate> = candidates.iter().map(|c| (c.entity.id, c)).collect();
    let view = |id: &Uuid| {
        by_id.get(id).map(|c| CandidateView {
            id: *id,
            values: Probe::of_entity(&c.entity),
            linked: c.linked,
        })
    };
    let mut out: Vec<Suggestion> = records
        .iter()
        .map(|r| {
            let probe = Probe::of(kind, mapping, &r.data.0);
            let (status, entity_id, matched_by, ids) = match rank(kind, &probe, candidates) {
                Ranked::Matched { id, by } => (MatchStatus::Matched, Some(id), Some(by), vec![id]),
                Ranked::Unmatched => (MatchStatus::Unmatched, None, None, Vec::new()),
                Ranked::Conflict { ids, by } => (MatchStatus::Conflict, None, Some(by), ids),
            };
            Suggestion {
                external_id: r.external_id.clone(),
                deleted: r.deleted,
                record: probe,
                status,
                entity_id,
                matched_by,
                candidates: ids.iter().filter_map(view).collect(),
            }
        })
        .collect();
    let mut proposed: BTreeMap<Uuid, usize> = BTreeMap::new();
    for id in out.iter().filter_map(|s| s.entity_id) {
        *proposed.entry(id).or_default() += 1;
    }
    for s in &mut out {
        if s.entity_id
            .is_some_and(|id| proposed.get(&id).copied().unwrap_or(0) > 1)
        {
            s.status = MatchStatus::Conflict;
            s.entity_id = None;
        }
    }
    out
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Suggestions {
    pub provider: String,
    pub object: String,
    pub connection_id: Uuid,
    pub matched: usize,
    pub unmatched: usize,
    pub conflict: usize,
    pub suggestions: Vec<Suggestion>,
}

async fn current_mapping(
    state: &AppState,
    tenant: &Tenant,
    provider: &str,
    object: &str,
) -> AppResult<super::mapping::EffectiveMapping> {
    entity_object(state, provider, object)?;
    ensure_mapping_current(state, tenant.workspace_id, provider, object)
        .await
        .map_err(|message| AppError::conflict("mapping", message))?;
    effective(state, tenant.workspace_id, provider, object).await
}

/// Proposals for the parent records of the user's connection (or the one
/// named) that no link claims yet.
pub async fn suggestions(
    state: &AppState,
    tenant: &Tenant,
    provider: &str,
    object: &str,
    connection_id: Option<Uuid>,
) -> AppResult<Suggestions> {
    tenant.require_admin("match records to projects and people")?;
    let mapping = current_mapping(state, tenant, provider, object).await?;
    let connection = resolve(state, tenant, provider, connection_id).await?;
    let ws = tenant.workspace_id;
    let records = state
        .store
        .unlinked_records(ws, connection.id, provider, object, MAX_RECORDS)
        .await?;
    let candidates = state
        .store
        .all_candidates(ws, mapping.kind, provider, object)
        .await?;
    let suggestions = suggest(mapping.kind, &mapping.fields, &records, &candidates);
    let count = |status| suggestions.iter().filter(|s| s.status == status).count();
    Ok(Suggestions {
        provider: provider.to_owned(),
        object: object.to_owned(),
        connection_id: connection.id,
        matched: count(MatchStatus::Matched),
        unmatched: count(MatchStatus::Unmatched),
        conflict: count(MatchStatus::Conflict),
        suggestions,
    })
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConfirmInput {
    pub pairs: Vec<PairInput>,
    #[serde(default)]
    pub connection_id: Option<Uuid>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PairInput {
    pub external_id: SingleLine,
    pub entity_id: SingleLine,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Confirmed {
    /// Pairs linked now.
    pub matched: u64,
    /// Of those, entities whose local values the source changed (per the
    /// field policies).
    pub changed: u64,
    /// Pairs already linked exactly so.
    pub skipped: u64,
}

/// Checks the pair list on its own: ids well-formed, none twice.
fn check_pairs(pairs: &[PairInput]) -> AppResult<Vec<(String, Uuid)>> {
    if pairs.is_empty() {
        return Err(AppError::validation("/pairs", "confirm at least one pair"));
    }
    if pairs.len() as i64 > MAX_RECORDS {
        return Err(AppError::validation(
            "/pairs",
            format!("at most {MAX_RECORDS} pairs at once"),
        ));
    }
    let mut externals = HashSet::new();
    let mut entities = HashSet::new();
    let mut out = Vec::with_capacity(pairs.len());
    for (i, p) in pairs.iter().enumerate() {
        let external = p.external_id.trim();
        if external.is_empty() {
            return Err(AppError::validation(
                format!("/pairs/{i}/externalId"),
                "must not be empty",
            ));
        }
        if !externals.insert(external) {
            return Err(AppError::validation(
                format!("/pairs/{i}/externalId"),
                format!("{external:?} appears in more than one pair"),
            ));
        }
        let entity = Uuid::parse_str(p.entity_id.trim())
            .map_err(|_| AppError::validation(format!("/pairs/{i}/entityId"), "expected a UUID"))?;
        if !entities.insert(entity) {
            return Err(AppError::validation(
                format!("/pairs/{i}/entityId"),
                format!("{entity} appears in more than one pair"),
            ));
        }
        out.push((external.to_owned(), entity));
    }
    Ok(out)
}

/// Links every pair and applies the record's fields to its entity under
/// the field policies, in one transaction: any bad pair (unknown record,
/// an entity not in this workspace, an external id or entity linked
/// otherwise) fails the whole request and nothing is written. The
/// deletion state is left to the next apply.
pub async fn confirm(
    state: &AppState,
    tenant: &Tenant,
    provider: &str,
    object: &str,
    input: &ConfirmInput,
) -> AppResult<Confirmed> {
    tenant.require_admin("match records to projects and people")?;
    let pairs = check_pairs(&input.pairs)?;
    let mapping = current_mapping(state, tenant, provider, object).await?;
    let connection = resolve(state, tenant, provider, input.connection_id).await?;
    let ws = tenant.workspace_id;
    let kind = mapping.kind;
    let fingerprint = mapping.fingerprint();
    let at = now();
    let mut result = Confirmed::default();
    let mut tx = state.store.begin_entity_tx().await?;
    tx.lock_object(ws, provider, object).await?;
    for (i, (external_id, entity_id)) in pairs.iter().enumerate() {
        let record = tx
            .record(ws, connection.id, object, external_id)
            .await?
            .ok_or_else(|| {
                AppError::validation(
                    format!("/pairs/{i}/externalId"),
                    format!("no {provider} {object} record {external_id:?} on this connection; sync first"),
                )
            })?;
        if record.is_child {
            return Err(AppError::validation(
                format!("/pairs/{i}/externalId"),
                format!("{external_id:?} is a child record; only parent records are matched"),
            ));
        }
        let mut entity = tx
            .entity(ws, kind, *entity_id)
            .await?
            .filter(|e| e.deleted_at.is_none())
            .ok_or_else(|| AppError::not_found(format!("{} {entity_id} not found", kind.noun())))?;
        if let Some(link) = tx
            .link_by_external(ws, provider, object, external_id)
            .await?
        {
            if link.entity_id == *entity_id && link.connection_id == connection.id {
                result.skipped += 1;
                continue;
            }
            return Err(AppError::conflict(
                format!("/pairs/{i}/externalId"),
                format!(
                    "{external_id:?} is already linked to another {} or connection",
                    kind.noun()
                ),
            ));
        }
        if let Some(link) = tx.link_by_entity(ws, provider, object, *entity_id).await? {
            return Err(AppError::conflict(
                format!("/pairs/{i}/entityId"),
                format!(
                    "this {} is already linked to {provider} {object} record {:?}",
                    kind.noun(),
                    link.external_id
                ),
            ));
        }
        let before = entity.clone();
        if apply_fields(&mut entity, &mapping.fields, &record.data.0, false) {
            result.changed += 1;
            entity.updated_at = at;
        }
        if entity != before {
            tx.update_entity(ws, &entity).await?;
        }
        let link = Link {
            provider: provider.to_owned(),
            object: object.to_owned(),
            external_id: external_id.clone(),
            connection_id: connection.id,
            kind,
            entity_id: *entity_id,
            applied_hash: Some(record.content_hash.clone()),
            applied_deleted: false,
            applied_mapping: Some(fingerprint.clone()),
            inactive_by_source: false,
        };
        tx.insert_link(ws, &link, at).await?;
        result.matched += 1;
    }
    let audit = AuditEntry::new(Some(ws), Some(tenant.user_id), "matching.confirm")
        .target("mapping", format!("{provider}/{object}"))
        .details(serde_json::json!({
            "connectionId": connection.id,
            "matched": result.matched,
            "changed": result.changed,
            "skipped": result.skipped,
        }));
    tx.audit(&audit).await?;
    tx.commit().await?;
    Ok(result)
}

/// Queues a sync of the object that stores its records for matching and
/// changes nothing local: the rule's reading part (filters, fields,
/// behaviour) is kept, but unmatched records wait for review (`skip`),
/// deletions are ignored and it is never a dry run. Returns the job (an
/// active one for the object is returned rather than doubled).
pub async fn fetch_for_matching(
    state: &AppState,
    tenant: &Tenant,
    provider: &str,
    object: &str,
    connection_id: Option<Uuid>,
) -> AppResult<Uuid> {
    tenant.require_admin("match records to projects and people")?;
    entity_object(state, provider, object)?;
    if !state.settings.sync.enabled {
        return Err(AppError::Unavailable(
            "syncing is switched off on this server (PLUGBOARD_INGEST_ENABLED=false)".into(),
        ));
    }
    let connection = resolve(state, tenant, provider, connection_id).await?;
    if !connection.status().usable() {
        return Err(crate::connections::tokens::unusable(&connection));
    }
    let ws = tenant.workspace_id;
    let mut metadata = match state.store.get_rule(ws, connection.id, object).await? {
        Some(rule) => crate::rules::planner::rule_metadata(rule.id, rule.revision, &rule.rule.0),
        None => serde_json::json!({}),
    };
    if let Some(rule) = metadata.get_mut("rule").and_then(Value::as_object_mut) {
        rule.insert("conflictPolicy".into(), Value::from("skip"));
        rule.insert("deletionPolicy".into(), Value::from("ignore"));
        rule.insert("dryRun".into(), Value::Bool(false));
    }
    let created = state
        .store
        .create_job(&crate::jobs::store::NewJob {
            id: Uuid::now_v7(),
            workspace_id: ws,
            connection_id: Some(connection.id),
            provider,
            object: Some(object),
            kind: "sync",
            status: crate::jobs::JobStatus::Queued,
            idempotency_key: None,
            metadata,
            requested_by: Some(tenant.user_id),
            at: now(),
        })
        .await?;
    Ok(match created {
        crate::jobs::store::Created::New(id) | crate::jobs::store::Created::Existing(id) => id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entities::FieldPolicy;
    use serde_json::json;
    use sqlx::types::Json;

    fn project(number: Option<&str>, name: &str, client: Option<&str>, linked: bool) -> Candidate {
        let mut e = Entity::new(EntityKind::Project, name, crate::storage::now());
        e.set("number", number.map_or(Value::Null, Value::from));
        e.set("client_name", client.map_or(Value::Null, Value::from));
        Candidate { entity: e, linked }
    }

    fn probe(number: Option<&str>, name: &str, client: Option<&str>) -> Probe {
        Probe {
            key: number.map(str::to_owned),
            name: Some(name.to_owned()),
            client: client.map(str::to_owned),
        }
    }

    #[test]
    fn number_first_then_name_and_client() {
        let k = EntityKind::Project;
        let a = project(Some("P-1"), "Website", Some("Globex"), false);
        let b = project(None, "Website", Some("Globex"), false);
        let c = project(None, "Audit", Some("Initech"), false);
        let all = [a.clone(), b.clone(), c.clone()];
        // The number wins over a name match elsewhere.
        assert_eq!(
            rank(k, &probe(Some("P-1"), "Website", Some("Globex")), &all),
            Ranked::Matched {
                id: a.entity.id,
                by: MatchedBy::Number
            }
        );
        // Unknown number: name + client, case-insensitively.
        assert_eq!(
            rank(k, &probe(Some("P-9"), "audit", Some("INITECH")), &all),
            Ranked::Matched {
                id: c.entity.id,
                by: MatchedBy::NameAndClient
            }
        );
        // Same name, other client: no match.
        assert_eq!(
            rank(k, &probe(None, "Audit", Some("Globex")), &all),
            Ranked::Unmatched
        );
        // Two with the same name and client: conflict.
        assert!(matches!(
            rank(k, &probe(None, "Website", Some("Globex")), &all),
            Ranked::Conflict { ids, .. } if ids.len() == 2
        ));
        // The only candidate is linked already: conflict.
        let linked = project(Some("P-2"), "X", None, true);
        assert!(matches!(
            rank(k, &probe(Some("P-2"), "X", None), &[linked]),
            Ranked::Conflict { ids, by: MatchedBy::Number } if ids.len() == 1
        ));
    }

    #[test]
    fn people_match_by_email_then_name() {
        let k = EntityKind::Person;
        let mut ada = Entity::new(k, "Ada Lovelace", crate::storage::now());
        ada.set("email", json!("Ada@Example.com"));
        let c = Candidate {
            entity: ada.clone(),
            linked: false,
        };
        let p = Probe {
            key: Some("ada@example.com".into()),
            name: Some("Someone".into()),
            client: None,
        };
        assert_eq!(
            rank(k, &p, std::slice::from_ref(&c)),
            Ranked::Matched {
                id: ada.id,
                by: MatchedBy::Email
            }
        );
        let p = Probe {
            key: None,
            name: Some("ADA LOVELACE".into()),
            client: None,
        };
        assert_eq!(
            rank(k, &p, &[c]),
            Ranked::Matched {
                id: ada.id,
                by: MatchedBy::Name
            }
        );
    }

    #[test]
    fn one_entity_for_two_records_is_a_conflict() {
        let k = EntityKind::Project;
        let mapping = vec![
            MappingField {
                source: "number".into(),
                target: "number".into(),
                policy: FieldPolicy::PreserveLocal,
            },
            MappingField {
                source: "name".into(),
                target: "name".into(),
                policy: FieldPolicy::PreserveLocal,
            },
            MappingField {
                source: "client".into(),
                target: "client_name".into(),
                policy: FieldPolicy::PreserveLocal,
            },
        ];
        let record = |id: &str, data: Value| SourceRecord {
            external_id: id.into(),
            data: Json(data),
            content_hash: String::new(),
            deleted: false,
            is_child: false,
        };
        let a = project(None, "Website", Some("Globex"), false);
        let b = project(Some("P-7"), "Audit", None, false);
        let records = [
            record(
                "1",
                json!({"number": null, "name": "Website", "client": "Globex"}),
            ),
            record(
                "2",
                json!({"number": "", "name": "website", "client": "globex"}),
            ),
            record("3", json!({"number": "P-7", "name": "Whatever"})),
            record("4", json!({"number": "P-8", "name": "New"})),
        ];
        let s = suggest(k, &mapping, &records, &[a.clone(), b.clone()]);
        assert_eq!(s[0].status, MatchStatus::Conflict);
        assert_eq!(s[1].status, MatchStatus::Conflict);
        assert_eq!(s[0].candidates[0].id, a.entity.id);
        assert_eq!(s[2].status, MatchStatus::Matched);
        assert_eq!(s[2].entity_id, Some(b.entity.id));
        assert_eq!(s[2].matched_by, Some(MatchedBy::Number));
        assert_eq!(s[3].status, MatchStatus::Unmatched);
    }

    #[test]
    fn pair_lists_are_checked_before_anything_is_read() {
        let id = Uuid::now_v7().to_string();
        let pair = |e: &str, i: &str| PairInput {
            external_id: e.into(),
            entity_id: i.into(),
        };
        let field = |r: AppResult<Vec<(String, Uuid)>>| match r.unwrap_err() {
            AppError::Validation { field, .. } => field.unwrap(),
            other => panic!("{other:?}"),
        };
        assert_eq!(field(check_pairs(&[])), "/pairs");
        assert_eq!(
            field(check_pairs(&[
                pair("a", &id),
                pair("a", &Uuid::now_v7().to_string())
            ])),
            "/pairs/1/externalId"
        );
        assert_eq!(
            field(check_pairs(&[pair("a", &id), pair("b", &id)])),
            "/pairs/1/entityId"
        );
        assert_eq!(
            field(check_pairs(&[pair("a", "nope")])),
            "/pairs/0/entityId"
        );
        assert_eq!(field(check_pairs(&[pair(" ", &id)])), "/pairs/0/externalId");
        assert_eq!(check_pairs(&[pair("a", &id)]).unwrap().len(), 1);
    }
}
