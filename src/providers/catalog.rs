//! What the catalog API shows of a provider. Built field by field from the
//! typed metadata (never by echoing the raw file), so nothing but names of
//! environment variables can leave: no client secret, no env value.

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{
    BaseUrlVariant, Flow, Hierarchy, ObjectKind, ObjectMeta, Provider, RateLimits, RequiredHeader,
};

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderSummary<'a> {
    pub key: &'a str,
    pub display_name: &'a str,
    pub category: &'a str,
    pub docs_url: &'a str,
    pub description: Option<&'a str>,
    pub flows: Vec<&'static str>,
    pub objects: Vec<&'a str>,
}

fn flow_name(flow: &Flow) -> &'static str {
    match flow {
        Flow::AuthorizationCode { .. } => "authorization_code",
        Flow::ClientCredentials => "client_credentials",
        Flow::ApiKey { .. } => "api_key",
    }
}

impl<'a> ProviderSummary<'a> {
    pub fn of(p: &'a Provider) -> Self {
        ProviderSummary {
            key: &p.meta.key,
            display_name: &p.meta.display_name,
            category: &p.meta.category,
            docs_url: &p.meta.docs_url,
            description: p.meta.description.as_deref(),
            flows: p.meta.auth.flows.iter().map(flow_name).collect(),
            objects: p.meta.objects.iter().map(|o| o.key.as_str()).collect(),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthView<'a> {
    pub flows: &'a [Flow],
    pub pkce: bool,
    pub default_scopes: &'a [String],
    pub scope_separator: &'a str,
    pub issues_refresh_token: bool,
    pub refresh_token_rotates: bool,
    pub supports_revoke: bool,
    pub client_id_env: &'a str,
    pub client_secret_env: &'a str,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderDetail<'a> {
    #[serde(flatten)]
    pub summary: ProviderSummary<'a>,
    pub provider_schema_version: u32,
    pub auth: AuthView<'a>,
    pub required_headers: &'a [RequiredHeader],
    pub base_url_variants: &'a [BaseUrlVariant],
    pub rate_limits: &'a RateLimits,
    pub supports_account_selection: bool,
}

impl<'a> ProviderDetail<'a> {
    pub fn of(p: &'a Provider) -> Self {
        let auth = &p.meta.auth;
        ProviderDetail {
            summary: ProviderSummary::of(p),
            provider_schema_version: p.meta.provider_schema_version,
            auth: AuthView {
                flows: &auth.flows,
                pkce: auth
                    .flows
                    .iter()
                    .any(|f| matches!(f, Flow::AuthorizationCode { pkce: true })),
                default_scopes: &auth.default_scopes,
                scope_separator: &auth.scope_separator,
                issues_refresh_token: auth.issues_refresh_token,
                refresh_token_rotates: auth.refresh_token_rotates,
                supports_revoke: auth.revoke_url.is_some(),
                client_id_env: &auth.client_id_env,
                client_secret_env: &auth.client_secret_env,
            },
            required_headers: &p.meta.required_headers,
            base_url_variants: &p.meta.base_url_variants,
            rate_limits: &p.meta.rate_limits,
            supports_account_selection: p.meta.accounts.is_some(),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FieldView<'a> {
    pub name: &'a str,
    #[serde(rename = "type")]
    pub field_type: &'a str,
    pub nullable: bool,
    pub identifier: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectView<'a> {
    pub key: &'a str,
    pub label: &'a str,
    pub description: Option<&'a str>,
    pub kind: ObjectKind,
    pub fields: Vec<FieldView<'a>>,
    pub supports_delta: bool,
    pub delta_cursor_field: Option<&'a str>,
    pub hierarchy: Option<&'a Hierarchy>,
    pub parent_only: Option<ParentOnlyView<'a>>,
    pub metrics: &'a [String],
    pub dimensions: &'a [String],
    pub field_signature_hash: String,
    pub has_mapping_defaults: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ParentOnlyView<'a> {
    pub description: &'a str,
}

impl<'a> ObjectView<'a> {
    pub fn of(o: &'a ObjectMeta) -> Self {
        ObjectView {
            key: &o.key,
            label: &o.label,
            description: o.description.as_deref(),
            kind: o.kind,
            fields: o
                .fields
                .iter()
                .map(|f| FieldView {
                    name: &f.name,
                    field_type: &f.field_type,
                    nullable: f.nullable,
                    identifier: f.identifier,
                })
                .collect(),
            supports_delta: o.supports_delta(),
            delta_cursor_field: o.delta_cursor_field.as_deref(),
            hierarchy: o.hierarchy.as_ref(),
            parent_only: o
                .filters
                .as_ref()
                .and_then(|f| f.parent_only.as_ref())
                .map(|p| ParentOnlyView {
                    description: &p.description,
                }),
            metrics: &o.metrics,
            dimensions: &o.dimensions,
            field_signature_hash: field_signature_hash(o),
            has_mapping_defaults: o.mapping_defaults.is_some(),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CatalogView<'a> {
    pub provider: &'a str,
    pub provider_schema_version: u32,
    pub rate_limits: &'a RateLimits,
    pub base_url_variants: &'a [BaseUrlVariant],
    pub objects: Vec<ObjectView<'a>>,
}

impl<'a> CatalogView<'a> {
    pub fn of(p: &'a Provider) -> Self {
        CatalogView {
            provider: &p.meta.key,
            provider_schema_version: p.meta.provider_schema_version,
            rate_limits: &p.meta.rate_limits,
            base_url_variants: &p.meta.base_url_variants,
            objects: p.meta.objects.iter().map(ObjectView::of).collect(),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MappingDefaultsView<'a> {
    pub provider: &'a str,
    pub object: &'a str,
    pub mapping_schema_version: u32,
    pub target: Option<&'a str>,
    pub fields: Vec<MappingPairView<'a>>,
    pub field_signature_hash: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MappingPairView<'a> {
    pub source: &'a str,
    pub target: &'a str,
}

impl<'a> MappingDefaultsView<'a> {
    /// Objects without declared defaults get an empty version-1 mapping, so
    /// clients always have a signature to store beside their own mapping.
    pub fn of(p: &'a Provider, o: &'a ObjectMeta) -> Self {
        let defaults = o.mapping_defaults.as_ref();
        MappingDefaultsView {
            provider: &p.meta.key,
            object: &o.key,
            mapping_schema_version: defaults.map_or(1, |d| d.mapping_schema_version),
            target: defaults.map(|d| d.target.as_str()),
            fields: defaults
                .map(|d| {
                    d.fields
                        .iter()
                        .map(|f| MappingPairView {
                            source: &f.source,
                            target: &f.target,
                        })
                        .collect()
                })
                .unwrap_or_default(),
            field_signature_hash: field_signature_hash(o),
        }
    }
}

/// A hash of the object's field catalog (name, type, nullability,
/// identifier; order-independent). A stored mapping keeps the hash it was
/// made against; a different hash now means the provider's fields changed.
pub fn field_signature_hash(o: &ObjectMeta) -> String {
    let mut fields: Vec<String> = o
        .fields
        .iter()
        .map(|f| {
            format!(
                "{}\u{1f}{}\u{1f}{}\u{1f}{}",
                f.name, f.field_type, f.nullable, f.identifier
            )
        })
        .collect();
    fields.sort();
    let mut hasher = Sha256::new();
    for f in &fields {
        hasher.update(f.as_bytes());
        hasher.update([0x1e]);
    }
    let digest = hasher.finalize();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::FieldMeta;

    fn object(fields: Vec<FieldMeta>) -> ObjectMeta {
        serde_json::from_value(serde_json::json!({
            "key": "o", "label": "O", "kind": "records", "endpoint": "/o", "method": "GET",
            "pagination": {"strategy": "none"}, "recordSelector": "", "capabilities": ["list"],
            "fields": fields,
        }))
        .unwrap()
    }

    fn field(name: &str, ty: &str) -> FieldMeta {
        FieldMeta {
            name: name.into(),
            field_type: ty.into(),
            nullable: false,
            identifier: name == "id",
            path: None,
            description: None,
        }
    }

    #[test]
    fn signature_ignores_order_but_not_types() {
        let a = object(vec![field("id", "string"), field("name", "string")]);
        let b = object(vec![field("name", "string"), field("id", "string")]);
        let c = object(vec![field("id", "string"), field("name", "integer")]);
        let d = object(vec![field("id", "string")]);
        assert_eq!(field_signature_hash(&a), field_signature_hash(&b));
        assert_ne!(field_signature_hash(&a), field_signature_hash(&c));
        assert_ne!(field_signature_hash(&a), field_signature_hash(&d));
        assert!(field_signature_hash(&a).starts_with("sha256:"));
    }
}
