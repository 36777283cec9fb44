//! Applying stored provider records to local entities.
//!
//! [`apply_records`] reads the records store for one connection's object —
//! parent records only — that are not yet applied as they are now: no link,
//! or a link whose applied content hash, deletion state or mapping
//! fingerprint differs. Each batch of [`BATCH`] records is applied in one
//! transaction together with the links' new applied state, so a second run
//! finds nothing to do and a run cut short resumes with what is left.
//! Records left for review and records another connection already claims
//! are counted `skipped` on every run; they are never written.
//!
//! Per mapped field the source value is always kept beside the local one;
//! whether it also becomes the local value is the field's policy
//! ([`FieldPolicy::allows_write`](super::FieldPolicy::allows_write)).

use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use super::mapping::{effective, ensure_mapping_current};
use super::matching::{Probe, Ranked, rank};
use super::store::{EntityTx, PendingQuery, PendingRecord};
use super::{
    ApplyCounts, ApplyOptions, ConflictPolicy, DeletionPolicy, Entity, EntityKind, Link,
    MappingField, normalize,
};
use crate::app::AppState;
use crate::error::{AppError, AppResult};
use crate::storage::now;
use crate::tenancy::WorkspaceId;

/// Records per transaction.
pub const BATCH: i64 = 500;

/// Writes mapped source values into an entity under the fields' policies.
/// The source value is stored whatever the policy; `frozen` stores only
/// that. True when a local value changed.
pub fn apply_fields(
    entity: &mut Entity,
    mapping: &[MappingField],
    data: &Value,
    frozen: bool,
) -> bool {
    let mut changed = false;
    for f in mapping {
        let raw = data.get(&f.source).cloned().unwrap_or(Value::Null);
        let local = normalize(entity.kind, &f.target, &raw);
        let state = entity.field_state.entry(f.target.clone()).or_default();
        state.source = Some(raw);
        // A value that can't be one of this column's stays a source value.
        let Some(local) = local.filter(|_| !frozen) else {
            continue;
        };
        if !f.policy.allows_write(state) {
            continue;
        }
        state.sourced = true;
        state.edited = false;
        changed |= entity.set(&f.target, local);
    }
    changed
}

/// What applying one record did to its entity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outcome {
    /// A local value (status included) changed.
    pub changed: bool,
    pub deactivated: bool,
    pub deleted: bool,
}

/// Applies a linked record to its entity: fields under their policies and
/// the deletion policy when the provider marks the record deleted.
///
/// - `mark_inactive_keep_link`: the entity turns inactive and the link is
///   flagged; while the record stays deleted no field is updated (source
///   values are still kept). Restored, it turns active again and fields
///   follow their policies.
/// - `soft_delete`: the entity gets `deleted_at` (hidden); restored, it
///   comes back.
/// - `ignore`: deletion changes nothing; fields are applied as usual.
pub fn update_linked(
    entity: &mut Entity,
    link: &mut Link,
    mapping: &[MappingField],
    policy: DeletionPolicy,
    data: &Value,
    deleted: bool,
    at: OffsetDateTime,
) -> Outcome {
    let mut out = Outcome::default();
    let status = entity.kind.status_column();
    match (deleted, policy) {
        (true, DeletionPolicy::MarkInactiveKeepLink) => {
            out.changed |= apply_fields(entity, mapping, data, true);
            if !link.inactive_by_source {
                link.inactive_by_source = true;
                out.changed |= entity.set(status, entity.kind.status_value(false));
                out.deactivated = true;
            }
        }
        (true, DeletionPolicy::SoftDelete) => {
            out.changed |= apply_fields(entity, mapping, data, true);
            if entity.deleted_at.is_none() {
                entity.deleted_at = Some(at);
                out.deleted = true;
            }
        }
        (true, DeletionPolicy::Ignore) | (false, _) => {
            if !deleted {
                if link.inactive_by_source {
                    link.inactive_by_source = false;
                    out.changed |= entity.set(status, entity.kind.status_value(true));
                }
                if entity.deleted_at.take().is_some() {
                    out.changed = true;
                }
            }
            out.changed |= apply_fields(entity, mapping, data, false);
        }
    }
    out
}

/// A new entity for an unlinked record; true when it starts inactive
/// (a deleted record under `mark_inactive_keep_link`).
pub fn create_from(
    kind: EntityKind,
    mapping: &[MappingField],
    external_id: &str,
    data: &Value,
    deleted: bool,
    policy: DeletionPolicy,
    at: OffsetDateTime,
) -> (Entity, bool) {
    // Named after the external id until (unless) the mapping names it.
    let mut entity = Entity::new(kind, external_id, at);
    apply_fields(&mut entity, mapping, data, false);
    let inactive = deleted && policy == DeletionPolicy::MarkInactiveKeepLink;
    if inactive {
        entity.set(kind.status_column(), kind.status_value(false));
    }
    (entity, inactive)
}

struct Run<'a> {
    workspace: WorkspaceId,
    connection_id: Uuid,
    provider: &'a str,
    object: &'a str,
    kind: EntityKind,
    mapping: &'a [MappingField],
    fingerprint: &'a str,
    opts: ApplyOptions,
    /// The rule's filters: records outside them are left alone.
    scope: &'a crate::rules::Scope,
    at: OffsetDateTime,
}

impl Run<'_> {
    fn new_link(&self, external_id: &str, entity_id: Uuid) -> Link {
        Link {
            provider: self.provider.to_owned(),
            object: self.object.to_owned(),
            external_id: external_id.to_owned(),
            connection_id: self.connection_id,
            kind: self.kind,
            entity_id,
            applied_hash: None,
            applied_deleted: false,
            applied_mapping: None,
            inactive_by_source: false,
        }
    }

    fn mark_applied(&self, link: &mut Link, hash: &str, deleted: bool) {
        link.applied_hash = Some(hash.to_owned());
        link.applied_deleted = deleted;
        link.applied_mapping = Some(self.fingerprint.to_owned());
    }

    async fn apply_one(
        &self,
        tx: &mut dyn EntityTx,
        pending: PendingRecord,
        counts: &mut ApplyCounts,
    ) -> sqlx::Result<()> {
        let ws = self.workspace;
        let rec = pending.record;
        let data = &rec.data.0;
        // Outside the rule's filters: neither created, linked nor updated.
        if !self.scope.admits(data) {
            counts.skipped += 1;
            return Ok(());
        }
        let (mut entity, mut link, linking) = match pending.link {
            // Another connection claimed this external id first.
            Some(link) if link.connection_id != self.connection_id || link.kind != self.kind => {
                counts.skipped += 1;
                return Ok(());
            }
            Some(link) => match tx.entity(ws, link.kind, link.entity_id).await? {
                Some(entity) => (entity, link, false),
                None => {
                    counts.skipped += 1;
                    return Ok(());
                }
            },
            None => {
                let soft_deleted =
                    rec.deleted && self.opts.deletion_policy == DeletionPolicy::SoftDelete;
                let existing = match self.opts.conflict_policy {
                    _ if soft_deleted => {
                        counts.skipped += 1;
                        return Ok(());
                    }
                    ConflictPolicy::Skip => {
                        counts.skipped += 1;
                        return Ok(());
                    }
                    ConflictPolicy::AutoCreate => None,
                    ConflictPolicy::Upsert => {
                        let probe = Probe::of(self.kind, self.mapping, data);
                        let candidates = tx
                            .candidates(
                                ws,
                                self.kind,
                                self.provider,
                                self.object,
                                probe.key.as_deref(),
                                probe.name.as_deref(),
                            )
                            .await?;
                        match rank(self.kind, &probe, &candidates) {
                            Ranked::Matched { id, .. } => candidates
                                .into_iter()
                                .find(|c| c.entity.id == id)
                                .map(|c| c.entity),
                            Ranked::Unmatched => None,
                            // Several candidates, or one already linked: for review.
                            Ranked::Conflict { .. } => {
                                counts.skipped += 1;
                                return Ok(());
                            }
                        }
                    }
                };
                match existing {
                    Some(entity) => {
                        let link = self.new_link(&rec.external_id, entity.id);
                        (entity, link, true)
                    }
                    None => {
                        let (entity, inactive) = create_from(
                            self.kind,
                            self.mapping,
                            &rec.external_id,
                            data,
                            rec.deleted,
                            self.opts.deletion_policy,
                            self.at,
                        );
                        let mut link = self.new_link(&rec.external_id, entity.id);
                        link.inactive_by_source = inactive;
                        self.mark_applied(&mut link, &rec.content_hash, rec.deleted);
                        tx.insert_entity(ws, &entity).await?;
                        tx.insert_link(ws, &link, self.at).await?;
                        counts.created += 1;
                        counts.deactivated += u64::from(inactive);
                        return Ok(());
                    }
                }
            }
        };
        let before = entity.clone();
        let out = update_linked(
            &mut entity,
            &mut link,
            self.mapping,
            self.opts.deletion_policy,
            data,
            rec.deleted,
            self.at,
        );
        if linking {
            counts.linked += 1;
        } else if !(out.deactivated || out.deleted) {
            if out.changed {
                counts.updated += 1;
            } else {
                counts.unchanged += 1;
            }
        }
        counts.deactivated += u64::from(out.deactivated);
        counts.deleted += u64::from(out.deleted);
        if entity != before {
            if out.changed || out.deleted {
                entity.updated_at = self.at;
            }
            tx.update_entity(ws, &entity).await?;
        }
        self.mark_applied(&mut link, &rec.content_hash, rec.deleted);
        if linking {
            tx.insert_link(ws, &link, self.at).await
        } else {
            tx.update_link(ws, &link, self.at).await
        }
    }
}

/// Applies a connection's stored records of one provider object to local
/// entities; see the module docs. Refuses (409, "Mappings out of date;
/// review in Integrations Hub") while the object's mapping is stale, and
/// 404s for a connection that isn't the workspace's or a provider object
/// that doesn't feed projects or people. A dry run counts the same, in
/// transactions that are rolled back.
///
/// For the sync worker: call after a sync of the object succeeded, with
/// the rule's conflict and deletion policies.
pub async fn apply_records(
    state: &AppState,
    workspace: WorkspaceId,
    connection_id: Uuid,
    provider: &str,
    object: &str,
    opts: ApplyOptions,
) -> AppResult<ApplyCounts> {
    let scope = crate::rules::Scope::default();
    apply_records_scoped(
        state,
        workspace,
        connection_id,
        provider,
        object,
        opts,
        &scope,
    )
    .await
}

/// [`apply_records`] under a rule's scope: only records passing its
/// filters are applied, and only the mapped fields it keeps are written.
pub async fn apply_records_scoped(
    state: &AppState,
    workspace: WorkspaceId,
    connection_id: Uuid,
    provider: &str,
    object: &str,
    opts: ApplyOptions,
    scope: &crate::rules::Scope,
) -> AppResult<ApplyCounts> {
    ensure_mapping_current(state, workspace, provider, object)
        .await
        .map_err(|message| AppError::conflict("mapping", message))?;
    let mapping = effective(state, workspace, provider, object).await?;
    state
        .store
        .get_connection(workspace, connection_id)
        .await?
        .filter(|c| c.provider == provider)
        .ok_or_else(|| AppError::not_found("connection not found"))?;
    let fingerprint = mapping.fingerprint();
    let fields: Vec<MappingField> = mapping
        .fields
        .iter()
        .filter(|f| scope.keeps_field(&f.source))
        .cloned()
        .collect();
    let mut counts = ApplyCounts::default();
    let mut after = String::new();
    loop {
        let mut tx = state.store.begin_entity_tx().await?;
        tx.lock_object(workspace, provider, object).await?;
        let batch = tx
            .pending_records(&PendingQuery {
                workspace,
                connection_id,
                provider,
                object,
                mapping: &fingerprint,
                after: &after,
                limit: BATCH,
            })
            .await?;
        let Some(last) = batch.last() else {
            break;
        };
        // Keyset paging: skipped and dry-run records aren't met again.
        after = last.record.external_id.clone();
        let full = batch.len() as i64 == BATCH;
        let run = Run {
            workspace,
            connection_id,
            provider,
            object,
            kind: mapping.kind,
            mapping: &fields,
            fingerprint: &fingerprint,
            opts,
            scope,
            at: now(),
        };
        for pending in batch {
            run.apply_one(tx.as_mut(), pending, &mut counts).await?;
        }
        if !opts.dry_run {
            tx.commit().await?;
        }
        if !full {
            break;
        }
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entities::FieldPolicy;
    use serde_json::json;

    fn at() -> OffsetDateTime {
        crate::storage::now()
    }

    fn mapping(policy: FieldPolicy) -> Vec<MappingField> {
        vec![
            MappingField {
                source: "name".into(),
                target: "name".into(),
                policy,
            },
            MappingField {
                source: "client_name".into(),
                target: "client_name".into(),
                policy: FieldPolicy::FollowSource,
            },
            MappingField {
                source: "status".into(),
                target: "status".into(),
                policy: FieldPolicy::PreserveLocal,
            },
        ]
    }

    fn link(entity: &Entity) -> Link {
        Link {
            provider: "p".into(),
            object: "o".into(),
            external_id: "x".into(),
            connection_id: Uuid::nil(),
            kind: entity.kind,
            entity_id: entity.id,
            applied_hash: None,
            applied_deleted: false,
            applied_mapping: None,
            inactive_by_source: false,
        }
    }

    /// Two syncs with a local edit of `name` in between.
    fn two_syncs(policy: FieldPolicy) -> Entity {
        let m = mapping(policy);
        let first = json!({"name": "Source 1", "client_name": "Globex", "status": "active"});
        let (mut e, inactive) = create_from(
            EntityKind::Project,
            &m,
            "x",
            &first,
            false,
            DeletionPolicy::default(),
            at(),
        );
        assert!(!inactive);
        assert_eq!(e.value("name"), "Source 1");
        // Local edit, as a PATCH does it.
        e.set("name", json!("Local"));
        e.field_state.get_mut("name").unwrap().edited = true;
        let second = json!({"name": "Source 2", "client_name": "Globex", "status": "active"});
        let mut l = link(&e);
        update_linked(
            &mut e,
            &mut l,
            &m,
            DeletionPolicy::default(),
            &second,
            false,
            at(),
        );
        assert_eq!(e.field_state["name"].source, Some(json!("Source 2")));
        e
    }

    #[test]
    fn preserve_local_keeps_the_local_edit() {
        let e = two_syncs(FieldPolicy::PreserveLocal);
        assert_eq!(e.value("name"), "Local");
        assert!(e.field_state["name"].edited);
    }

    #[test]
    fn follow_source_overwrites_the_local_edit() {
        let e = two_syncs(FieldPolicy::FollowSource);
        assert_eq!(e.value("name"), "Source 2");
        assert!(!e.field_state["name"].edited);
    }

    #[test]
    fn write_once_writes_only_the_first_time() {
        let e = two_syncs(FieldPolicy::WriteOnce);
        assert_eq!(e.value("name"), "Local");
        // Without a local edit, the second value doesn't land either.
        let m = mapping(FieldPolicy::WriteOnce);
        let (mut e, _) = create_from(
            EntityKind::Project,
            &m,
            "x",
            &json!({"name": "First"}),
            false,
            DeletionPolicy::default(),
            at(),
        );
        let mut l = link(&e);
        let out = update_linked(
            &mut e,
            &mut l,
            &m,
            DeletionPolicy::Ignore,
            &json!({"name": "Second"}),
            false,
            at(),
        );
        assert_eq!(e.value("name"), "First");
        assert_eq!(e.field_state["name"].source, Some(json!("Second")));
        // A locally created entity the source never wrote gets it once.
        let mut local = Entity::new(EntityKind::Project, "Mine", at());
        apply_fields(&mut local, &m, &json!({"name": "From source"}), false);
        assert_eq!(local.value("name"), "From source");
        assert!(!out.changed);
    }

    #[test]
    fn mark_inactive_deactivates_then_freezes_fields() {
        let m = mapping(FieldPolicy::FollowSource);
        let (mut e, _) = create_from(
            EntityKind::Project,
            &m,
            "x",
            &json!({"name": "A", "status": "active"}),
            false,
            DeletionPolicy::default(),
            at(),
        );
        let mut l = link(&e);
        let p = DeletionPolicy::MarkInactiveKeepLink;
        let out = update_linked(&mut e, &mut l, &m, p, &json!({"name": "A"}), true, at());
        assert!(out.deactivated && out.changed);
        assert_eq!(e.value("status"), "inactive");
        assert!(l.inactive_by_source);
        // Still deleted, renamed at the source: no field update.
        let out = update_linked(&mut e, &mut l, &m, p, &json!({"name": "B"}), true, at());
        assert!(!out.deactivated && !out.changed);
        assert_eq!(e.value("name"), "A");
        assert_eq!(e.field_state["name"].source, Some(json!("B")));
        // Restored: active again, fields follow.
        let out = update_linked(&mut e, &mut l, &m, p, &json!({"name": "C"}), false, at());
        assert!(out.changed);
        assert_eq!(e.value("status"), "active");
        assert_eq!(e.value("name"), "C");
        assert!(!l.inactive_by_source);
    }

    #[test]
    fn soft_delete_and_ignore() {
        let m = mapping(FieldPolicy::FollowSource);
        let (mut e, _) = create_from(
            EntityKind::Person,
            &[],
            "x",
            &json!({}),
            false,
            DeletionPolicy::default(),
            at(),
        );
        let mut l = link(&e);
        let out = update_linked(
            &mut e,
            &mut l,
            &m,
            DeletionPolicy::Ignore,
            &json!({"name": "N"}),
            true,
            at(),
        );
        assert!(!out.deleted && !out.deactivated);
        assert_eq!(e.value("name"), "N");
        assert!(e.is_active());
        let out = update_linked(
            &mut e,
            &mut l,
            &m,
            DeletionPolicy::SoftDelete,
            &json!({"name": "M"}),
            true,
            at(),
        );
        assert!(out.deleted);
        assert!(e.deleted_at.is_some());
        assert_eq!(e.value("name"), "N");
        update_linked(
            &mut e,
            &mut l,
            &m,
            DeletionPolicy::SoftDelete,
            &json!({"name": "M"}),
            false,
            at(),
        );
        assert!(e.deleted_at.is_none());
        assert_eq!(e.value("name"), "M");
    }

    #[test]
    fn a_deleted_record_creates_an_inactive_entity_under_mark_inactive() {
        let m = mapping(FieldPolicy::PreserveLocal);
        let data = json!({"name": "Gone", "status": "active"});
        let (e, inactive) = create_from(
            EntityKind::Project,
            &m,
            "x",
            &data,
            true,
            DeletionPolicy::MarkInactiveKeepLink,
            at(),
        );
        assert!(inactive);
        assert_eq!(e.value("status"), "inactive");
        let (e, inactive) = create_from(
            EntityKind::Project,
            &m,
            "x",
            &data,
            true,
            DeletionPolicy::Ignore,
            at(),
        );
        assert!(!inactive);
        assert_eq!(e.value("status"), "active");
    }

    #[test]
    fn unusable_source_values_are_kept_but_not_written() {
        let m = vec![MappingField {
            source: "due".into(),
            target: "end_date".into(),
            policy: FieldPolicy::FollowSource,
        }];
        let mut e = Entity::new(EntityKind::Project, "P", at());
        e.set("end_date", json!("2024-01-31"));
        assert!(!apply_fields(&mut e, &m, &json!({"due": "soon"}), false));
        assert_eq!(e.value("end_date"), "2024-01-31");
        assert_eq!(e.field_state["end_date"].source, Some(json!("soon")));
    }
}
