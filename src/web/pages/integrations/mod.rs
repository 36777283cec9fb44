//! The Integrations Hub (admins): the provider catalog, a provider's
//! connections and objects, and an object's sync rule. Everything shown is
//! read from the provider metadata and `rule.schema.json`, so a provider or
//! field added to a provider.json appears here with no code change.

use std::sync::LazyLock;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::Value;
use time::Duration;

use super::kit::FormState;
use super::{Layout, with_status};
use crate::app::AppState;
use crate::auth::extract::CurrentTenant;
use crate::auth::session::{self, FlashKind};
use crate::connections::service::{self as connections, CredentialsInput};
use crate::connections::{Connection, ConnectionView, Status};
use crate::error::{AppError, AppResult};
use crate::input::{FormFields, SingleLine};
use crate::oauth;
use crate::providers::{Flow, HeaderSource, ObjectKind, ObjectMeta, Provider};
use crate::web::api::connections::view;
use crate::web::extract::{ApiQuery, CsrfForm};

mod links;
mod mapping;
mod matching;
mod object;
mod rule;
mod sync;

pub use links::{link_create, link_revoke};

pub use mapping::{mapping_save, mapping_show};
pub use matching::{matching_confirm, matching_fetch, matching_show};
pub use rule::{object_save, object_show};
pub use sync::{sync_action, sync_show};

/// The provider.json format versions this server understands.
const KNOWN_SCHEMA_VERSIONS: &[u32] = &[1];

/// Refresh failing this long means a person must look (the provider has
/// been unreachable, not merely slow).
const ATTENTION_AFTER: Duration = Duration::hours(24);

const WHAT: &str = "manage integrations";

static RULE_SCHEMA: LazyLock<Value> =
    LazyLock::new(|| serde_json::from_str(crate::rules::SCHEMA_JSON).unwrap_or(Value::Null));

fn provider<'a>(state: &'a AppState, key: &str) -> AppResult<&'a Provider> {
    state
        .providers
        .get(key)
        .map(AsRef::as_ref)
        .ok_or_else(|| AppError::not_found(format!("unknown provider {key:?}")))
}

/// `{publicUrl}` in metadata (the sandbox's docs) made absolute.
fn absolute(state: &AppState, text: &str) -> String {
    text.replace("{publicUrl}", &state.settings.public_url())
}

fn failing_too_long(c: &Connection) -> bool {
    c.refresh_failing_since
        .is_some_and(|since| crate::storage::now() - since > ATTENTION_AFTER)
}

fn needs_attention(c: &Connection) -> bool {
    matches!(c.status(), Status::NeedsReauth | Status::Error) || failing_too_long(c)
}

/// Whoever may connect it here: an OAuth app configured on this server, or
/// credentials an admin types.
fn can_connect(state: &AppState, p: &Provider) -> bool {
    let oauth_ready = oauth::supports_flow(p, "authorization_code")
        && oauth::app_credentials(&state.settings, p, state.sandbox_credentials.as_ref()).is_some();
    oauth_ready
        || oauth::supports_flow(p, "client_credentials")
        || oauth::supports_flow(p, "api_key")
}

// ---- the catalog ---------------------------------------------------------

pub struct Tile {
    pub key: String,
    pub name: String,
    pub category: String,
    pub description: String,
    /// connected, needs_attention, available or not_set_up.
    pub status: &'static str,
    pub status_label: &'static str,
    pub env: Vec<String>,
    pub redirect_uri: String,
    pub docs_url: String,
}

impl Tile {
    pub fn status_css(&self) -> &'static str {
        match self.status {
            "connected" => "ok",
            "needs_attention" => "bad",
            "available" => "pending",
            _ => "off",
        }
    }
}

#[derive(Deserialize, Default)]
pub struct CatalogQuery {
    q: Option<SingleLine>,
    category: Option<SingleLine>,
}

#[derive(Template, WebTemplate)]
#[template(path = "integrations.html")]
pub struct CatalogPage {
    layout: Layout,
    tiles: Vec<Tile>,
    categories: Vec<String>,
    q: String,
    category: String,
    total: usize,
}

pub async fn catalog(
    State(state): State<AppState>,
    current: CurrentTenant,
    ApiQuery(query): ApiQuery<CatalogQuery>,
) -> AppResult<Response> {
    let CurrentTenant {
        user,
        session,
        tenant,
    } = current;
    tenant.require_admin(WHAT)?;
    let q = query.q.as_deref().unwrap_or_default().trim().to_lowercase();
    let category = query.category.as_deref().unwrap_or_default().to_owned();
    let all = state.store.list_connections(tenant.workspace_id).await?;
    let mut categories: Vec<String> = state
        .providers
        .iter()
        .map(|p| p.meta.category.clone())
        .collect();
    categories.sort();
    categories.dedup();
    let mut tiles = Vec::new();
    for p in state.providers.iter() {
        let meta = &p.meta;
        let text = format!(
            "{} {} {} {}",
            meta.key,
            meta.display_name,
            meta.category,
            meta.description.as_deref().unwrap_or_default()
        )
        .to_lowercase();
        if (!q.is_empty() && !text.contains(&q))
            || (!category.is_empty() && meta.category != category)
        {
            continue;
        }
        let mine: Vec<&Connection> = all.iter().filter(|c| c.provider == meta.key).collect();
        let (status, status_label) = if mine.iter().any(|c| needs_attention(c)) {
            ("needs_attention", "Needs attention")
        } else if mine.iter().any(|c| c.status() == Status::Connected) {
            ("connected", "Connected")
        } else if can_connect(&state, p) {
            ("available", "Available")
        } else {
            ("not_set_up", "Not set up on this server")
        };
        tiles.push(Tile {
            key: meta.key.clone(),
            name: meta.display_name.clone(),
            category: meta.category.replace('_', " "),
            description: meta
                .description
                .as_deref()
                .map(|d| absolute(&state, d))
                .unwrap_or_default(),
            status,
            status_label,
            env: vec![
                meta.auth.client_id_env.clone(),
                meta.auth.client_secret_env.clone(),
            ],
            redirect_uri: format!(
                "{}/api/oauth/{}/callback",
                state.settings.public_url(),
                meta.key
            ),
            docs_url: absolute(&state, &meta.docs_url),
        });
    }
    tiles.sort_by_key(|t| (t.status == "not_set_up", t.name.to_lowercase()));
    Ok(CatalogPage {
        layout: Layout::signed_in(&state, &session, &user, &tenant).await?,
        total: state.providers.len(),
        tiles,
        categories,
        q: query.q.as_deref().unwrap_or_default().to_owned(),
        category,
    }
    .into_response())
}

// ---- a provider ----------------------------------------------------------

pub struct ConnectionRow {
    pub view: ConnectionView,
    /// "Workspace", "Yours" or "Personal (member)".
    pub owner: String,
    pub environment: String,
    /// Refresh has failed for over a day.
    pub attention: bool,
    pub failing_since: Option<time::OffsetDateTime>,
}

pub struct FieldRow {
    pub name: String,
    pub field_type: String,
    pub identifier: bool,
    pub nullable: bool,
    /// The field delta reads compare against.
    pub delta_cursor: bool,
}

pub struct ObjectRow {
    pub key: String,
    pub label: String,
    pub description: String,
    pub metrics: bool,
    pub supports_delta: bool,
    pub fields: Vec<FieldRow>,
    pub hierarchy: Option<String>,
    pub parent_only: Option<String>,
}

impl ObjectRow {
    fn of(o: &ObjectMeta) -> ObjectRow {
        ObjectRow {
            key: o.key.clone(),
            label: o.label.clone(),
            description: o.description.clone().unwrap_or_default(),
            metrics: o.kind == ObjectKind::Metrics,
            supports_delta: o.supports_delta(),
            fields: o
                .fields
                .iter()
                .map(|f| FieldRow {
                    name: f.name.clone(),
                    field_type: f.field_type.clone(),
                    identifier: f.identifier,
                    nullable: f.nullable,
                    delta_cursor: o.delta_cursor_field.as_deref() == Some(f.name.as_str()),
                })
                .collect(),
            hierarchy: o.hierarchy.as_ref().map(|h| {
                format!(
                    "Child records point to their parent through {}; a record is a child when {}.",
                    h.parent_key, h.child_predicate
                )
            }),
            parent_only: o
                .filters
                .as_ref()
                .and_then(|f| f.parent_only.as_ref())
                .map(|p| p.description.clone()),
        }
    }
}

pub struct HeaderInput {
    pub name: String,
    pub label: String,
    pub hint: String,
    pub optional: bool,
    pub secret: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "integration.html")]
pub struct ProviderPage {
    layout: Layout,
    key: String,
    name: String,
    category: String,
    description: String,
    docs_url: String,
    schema_version: u32,
    known_version: bool,
    rate_limits: crate::providers::RateLimits,
    environments: Vec<(String, String, String)>,
    rows: Vec<ConnectionRow>,
    objects: Vec<ObjectRow>,
    oauth_ready: bool,
    oauth_enabled: bool,
    /// client_credentials / api_key: a form an admin types into.
    credential_flows: Vec<&'static str>,
    headers: Vec<HeaderInput>,
    form: FormState,
    env: Vec<String>,
    redirect_uri: String,
    /// Connect links can be made: the provider signs in through a browser
    /// and this server has its OAuth app.
    can_link: bool,
    /// Open connect links of this provider.
    links: Vec<crate::connectlinks::ConnectLink>,
    /// (user id, name) of the workspace's members, for `user` links.
    members: Vec<(String, String)>,
    /// A link just made: its URL and QR code, shown in this response only.
    created_link: Option<crate::connectlinks::CreatedLink>,
    link_form: FormState,
}

impl ProviderPage {
    fn first_flow(&self) -> &'static str {
        self.credential_flows.first().copied().unwrap_or_default()
    }

    fn flow_label(&self) -> &'static str {
        match self.first_flow() {
            "api_key" => "With an API key",
            _ => "With client credentials",
        }
    }

    fn has_flow(&self, flow: &str) -> bool {
        self.credential_flows.contains(&flow)
    }

    fn ownerships(&self) -> [&'static str; 2] {
        ["workspace", "user"]
    }

    /// The QR SVG without its XML declaration, to sit inside the page.
    fn qr_inline<'s>(&self, svg: &'s str) -> &'s str {
        svg.find("<svg")
            .and_then(|at| svg.get(at..))
            .unwrap_or_default()
    }

    fn env_names(&self) -> Vec<&str> {
        self.environments
            .iter()
            .map(|(k, _, _)| k.as_str())
            .collect()
    }
}

async fn provider_page(
    state: &AppState,
    current: &CurrentTenant,
    key: &str,
    form: FormState,
) -> AppResult<ProviderPage> {
    let tenant = &current.tenant;
    tenant.require_admin(WHAT)?;
    let p = provider(state, key)?;
    let meta = &p.meta;
    let members = state.store.list_members(tenant.workspace_id).await?;
    let links = crate::connectlinks::list(state, tenant)
        .await?
        .into_iter()
        .filter(|l| l.provider == meta.key)
        .collect();
    let rows = state
        .store
        .list_connections(tenant.workspace_id)
        .await?
        .into_iter()
        .filter(|c| c.provider == meta.key)
        .map(|c| {
            let owner = match c.owner_user_id {
                None => "Workspace".to_owned(),
                Some(id) if id == tenant.user_id => "Yours".to_owned(),
                Some(id) => format!(
                    "Personal ({})",
                    members
                        .iter()
                        .find(|m| m.user_id == id)
                        .map_or("a former member", |m| m.name.as_str())
                ),
            };
            ConnectionRow {
                // Another member's connection: existence and status only.
                view: view(state, tenant, &c),
                owner,
                environment: c.environment.clone(),
                attention: failing_too_long(&c),
                failing_since: c.refresh_failing_since,
            }
        })
        .collect();
    let mut credential_flows = Vec::new();
    for flow in &meta.auth.flows {
        match flow {
            Flow::ClientCredentials => credential_flows.push("client_credentials"),
            Flow::ApiKey { .. } => credential_flows.push("api_key"),
            Flow::AuthorizationCode { .. } => {}
        }
    }
    let oauth_ready = oauth::supports_flow(p, "authorization_code")
        && oauth::app_credentials(&state.settings, p, state.sandbox_credentials.as_ref()).is_some();
    Ok(ProviderPage {
        can_link: oauth_ready && state.settings.oauth.enabled,
        links,
        members: members
            .iter()
            .map(|m| (m.user_id.to_string(), m.name.clone()))
            .collect(),
        created_link: None,
        link_form: FormState::default(),
        layout: Layout::signed_in(state, &current.session, &current.user, tenant).await?,
        key: meta.key.clone(),
        name: meta.display_name.clone(),
        category: meta.category.replace('_', " "),
        description: meta
            .description
            .as_deref()
            .map(|d| absolute(state, d))
            .unwrap_or_default(),
        docs_url: absolute(state, &meta.docs_url),
        schema_version: meta.provider_schema_version,
        known_version: KNOWN_SCHEMA_VERSIONS.contains(&meta.provider_schema_version),
        rate_limits: meta.rate_limits.clone(),
        environments: meta
            .base_url_variants
            .iter()
            .map(|v| (v.key.clone(), v.label.clone(), absolute(state, &v.base_url)))
            .collect(),
        rows,
        objects: meta.objects.iter().map(ObjectRow::of).collect(),
        oauth_ready,
        oauth_enabled: state.settings.oauth.enabled,
        credential_flows,
        headers: meta
            .required_headers
            .iter()
            .filter(|h| h.source == HeaderSource::Connection)
            .map(|h| HeaderInput {
                name: format!("header:{}", h.key),
                label: h.label.clone(),
                hint: h.description.clone().unwrap_or_default(),
                optional: h.optional,
                secret: h.secret,
            })
            .collect(),
        form,
        env: vec![
            meta.auth.client_id_env.clone(),
            meta.auth.client_secret_env.clone(),
        ],
        redirect_uri: format!(
            "{}/api/oauth/{}/callback",
            state.settings.public_url(),
            meta.key
        ),
    })
}

pub async fn provider_show(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path(key): Path<String>,
) -> AppResult<Response> {
    let page = provider_page(&state, &current, &key, FormState::default()).await?;
    Ok(page.into_response())
}

/// The connection form: credentials typed by an admin. Errors come back
/// next to their field with the values kept (never the secrets).
pub async fn provider_connect(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path(key): Path<String>,
    form: CsrfForm<FormFields>,
) -> AppResult<Response> {
    current.tenant.require_admin(WHAT)?;
    let pairs = &form.form;
    let text = |name: &str| pairs.first(name).filter(|v| !v.is_empty()).cloned();
    let headers: Vec<(SingleLine, SingleLine)> = pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .filter_map(|(k, v)| {
            Some((
                SingleLine::parse(k.strip_prefix("header:")?).ok()?,
                v.clone(),
            ))
        })
        .collect();
    let input = CredentialsInput {
        flow: text("flow"),
        client_id: text("client_id"),
        client_secret: text("client_secret"),
        api_key: text("api_key"),
        headers: headers.iter().cloned().collect(),
        environment: text("environment"),
        ownership: text("ownership"),
        tenant_key: None,
    };
    match connections::connect_with_credentials(&state, &current.tenant, &key, &input).await {
        Ok(c) => {
            session::flash(
                &form.session,
                FlashKind::Success,
                format!("{} connected.", c.provider),
            )
            .await?;
            Ok(Redirect::to(&format!("/integrations/{key}")).into_response())
        }
        Err(
            err @ (AppError::Validation { .. }
            | AppError::BadRequest { .. }
            | AppError::Conflict { .. }
            | AppError::Unavailable(_)),
        ) => {
            // Secrets are never shown back.
            let kept: Vec<(String, String)> = pairs
                .iter()
                .filter(|(k, _)| {
                    matches!(
                        k.as_str(),
                        "flow" | "client_id" | "environment" | "ownership"
                    ) || k.starts_with("header:")
                })
                .filter(|(k, _)| {
                    k.strip_prefix("header:").is_none_or(|h| {
                        !provider(&state, &key).is_ok_and(|p| p.header_is_secret(h))
                    })
                })
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let mut names: Vec<String> = [
                "flow",
                "client_id",
                "client_secret",
                "api_key",
                "environment",
            ]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
            names.extend(kept.iter().map(|(k, _)| k.clone()));
            // The service names a header as `headers.<key>`; the form as `header:<key>`.
            let err = match err {
                AppError::Validation {
                    field: Some(f),
                    message,
                } => AppError::Validation {
                    field: Some(match f.as_str() {
                        "clientId" => "client_id".to_owned(),
                        "clientSecret" => "client_secret".to_owned(),
                        "apiKey" => "api_key".to_owned(),
                        other => other
                            .strip_prefix("headers.")
                            .or_else(|| other.strip_prefix("headers/"))
                            .map_or_else(|| other.to_owned(), |h| format!("header:{h}")),
                    }),
                    message,
                },
                other => other,
            };
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            let state_form = FormState::from_pairs(kept).with_error(&err, &refs);
            let page = provider_page(&state, &current, &key, state_form).await?;
            Ok(with_status(err.status(), page))
        }
        Err(err) => Err(err),
    }
}
