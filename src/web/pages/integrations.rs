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
use serde_json::{Value, json};
use time::Duration;
use uuid::Uuid;

use super::kit::FormState;
use super::{Layout, parse_path_id, with_status};
use crate::app::AppState;
use crate::auth::extract::CurrentTenant;
use crate::auth::session::{self, FlashKind};
use crate::connections::service::{self as connections, CredentialsInput};
use crate::connections::{Connection, ConnectionView, Status};
use crate::error::{AppError, AppResult};
use crate::input::{FormFields, SingleLine};
use crate::oauth;
use crate::providers::{Flow, HeaderSource, ObjectKind, ObjectMeta, Provider};
use crate::rules::planner::upcoming;
use crate::rules::service as rules;
use crate::rules::{Interval, RuleInput};
use crate::tenancy::Tenant;
use crate::web::api::connections::view;
use crate::web::extract::{ApiQuery, CsrfForm, parse_json_pointer};
use crate::web::schema_form::{Options, SchemaForm};

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
    Ok(ProviderPage {
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
        oauth_ready: oauth::supports_flow(p, "authorization_code")
            && oauth::app_credentials(&state.settings, p, state.sandbox_credentials.as_ref())
                .is_some(),
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

// ---- an object's rule ----------------------------------------------------

#[derive(Deserialize, Default)]
pub struct ObjectQuery {
    connection: Option<SingleLine>,
}

/// A revision conflict: what the stored rule says now against what was sent.
pub struct Conflict {
    pub current_revision: i32,
    /// (field, stored value, your value) for each field that differs.
    pub changes: Vec<(String, String, String)>,
}

#[derive(Template, WebTemplate)]
#[template(path = "integration_object.html")]
pub struct ObjectPage {
    layout: Layout,
    provider_key: String,
    provider_name: String,
    object: ObjectRow,
    connection_id: Option<Uuid>,
    connections: Vec<(Uuid, String)>,
    revision: Option<i32>,
    schema_form: SchemaForm,
    form: FormState,
    next_runs: Vec<String>,
    conflict: Option<Conflict>,
}

impl ObjectPage {
    fn is_current(&self, id: &Uuid) -> bool {
        self.connection_id.as_ref() == Some(id)
    }
}

/// The rule form for `object`: the schema, with the object's field names
/// offered wherever a field is named, and sub-records disabled where the
/// object reads parents only.
fn rule_form(o: &ObjectMeta, doc: &Value) -> SchemaForm {
    let names: Vec<String> = o.fields.iter().map(|f| f.name.clone()).collect();
    let options = Options::from([
        ("/fields".to_owned(), names.clone()),
        ("/filters/*/field".to_owned(), names),
    ]);
    let mut form = SchemaForm::build(&RULE_SCHEMA, &options, doc);
    if let Some(p) = o.filters.as_ref().and_then(|f| f.parent_only.as_ref()) {
        form.disable(
            "/includeSubprojects",
            &format!("{} reads parents only: {}", o.label, p.description),
        );
    }
    form
}

fn default_rule(o: &ObjectMeta) -> Value {
    json!({
        "interval": {"minutes": 60},
        "behaviour": if o.supports_delta() { "delta" } else { "full" },
    })
}

fn preview(layout: &Layout, doc: &Value) -> Vec<String> {
    doc.get("interval")
        .cloned()
        .and_then(|i| serde_json::from_value::<Interval>(i).ok())
        .map(|i| {
            upcoming(&i, crate::storage::now(), 3)
                .iter()
                .map(|t| layout.zone.at(t))
                .collect()
        })
        .unwrap_or_default()
}

struct Target<'a> {
    provider: &'a Provider,
    object: &'a ObjectMeta,
    connection: Option<Connection>,
    connections: Vec<(Uuid, String)>,
}

async fn target<'a>(
    state: &'a AppState,
    tenant: &Tenant,
    key: &str,
    object: &str,
    connection: Option<Uuid>,
) -> AppResult<Target<'a>> {
    tenant.require_admin(WHAT)?;
    let p = provider(state, key)?;
    let o = p
        .object(object)
        .ok_or_else(|| AppError::not_found(format!("{key} has no object {object:?}")))?;
    let connection = match connection {
        // Another workspace's id is not found, like one that doesn't exist.
        Some(id) => Some(connections::resolve(state, tenant, key, Some(id)).await?),
        None => match connections::resolve(state, tenant, key, None).await {
            Ok(c) => Some(c),
            Err(AppError::NotFound(_)) => None,
            Err(e) => return Err(e),
        },
    };
    let connections = state
        .store
        .list_connections(tenant.workspace_id)
        .await?
        .into_iter()
        .filter(|c| c.provider == key && connections::visible_to(c, tenant))
        .map(|c| {
            let label = format!(
                "{} · {}{}",
                if c.owner_user_id.is_none() {
                    "workspace"
                } else {
                    "yours"
                },
                c.environment,
                if c.status() == Status::Connected {
                    String::new()
                } else {
                    format!(" · {}", c.status().as_str())
                }
            );
            (c.id, label)
        })
        .collect();
    Ok(Target {
        provider: p,
        object: o,
        connection,
        connections,
    })
}

fn connection_param(raw: Option<&str>) -> AppResult<Option<Uuid>> {
    raw.filter(|r| !r.is_empty())
        .map(|r| parse_path_id(r, "connection"))
        .transpose()
}

pub async fn object_show(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path((key, object)): Path<(String, String)>,
    ApiQuery(query): ApiQuery<ObjectQuery>,
) -> AppResult<Response> {
    let connection = connection_param(query.connection.as_deref())?;
    let t = target(&state, &current.tenant, &key, &object, connection).await?;
    let existing = match &t.connection {
        Some(c) => rules::list(&state, &current.tenant, &key, &object, Some(c.id))
            .await?
            .into_iter()
            .next(),
        None => None,
    };
    let doc = existing
        .as_ref()
        .map_or_else(|| default_rule(t.object), |r| r.rule.clone());
    let schema_form = rule_form(t.object, &doc);
    let form = FormState::from_pairs(schema_form.values(&doc));
    let layout =
        Layout::signed_in(&state, &current.session, &current.user, &current.tenant).await?;
    Ok(ObjectPage {
        next_runs: preview(&layout, &doc),
        layout,
        provider_key: t.provider.meta.key.clone(),
        provider_name: t.provider.meta.display_name.clone(),
        object: ObjectRow::of(t.object),
        connection_id: t.connection.as_ref().map(|c| c.id),
        connections: t.connections,
        revision: existing.map(|r| r.revision),
        schema_form,
        form,
        conflict: None,
    }
    .into_response())
}

/// Saves the rule the way `PUT /api/integrations/{provider}/{object}/rules`
/// does; errors go back to the field their JSON pointer names.
pub async fn object_save(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path((key, object)): Path<(String, String)>,
    form: CsrfForm<FormFields>,
) -> AppResult<Response> {
    let pairs = &form.form;
    let connection = connection_param(pairs.first("connectionId").map(|v| v.as_str()))?;
    let t = target(&state, &current.tenant, &key, &object, connection).await?;
    let posted: Vec<(String, String)> = pairs
        .iter()
        .filter(|(k, _)| k.starts_with('/'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    // Built twice: the posted form decides how many filter rows it had.
    let blank = rule_form(
        t.object,
        &json!({"filters": vec![Value::Null; posted_rows(&posted)]}),
    );
    let doc = blank.parse(&posted);
    let mut body = doc.clone();
    if let Some(obj) = body.as_object_mut() {
        if let Some(c) = &t.connection {
            obj.insert("connectionId".into(), Value::from(c.id.to_string()));
        }
        if let Some(r) = pairs
            .first("revision")
            .and_then(|r| r.trim().parse::<u32>().ok())
        {
            obj.insert("revision".into(), Value::from(r));
        }
    }
    let saved = match serde_json::to_vec(&body) {
        Ok(bytes) => match parse_json_pointer::<RuleInput>(&bytes) {
            Ok(input) => rules::save(&state, &current.tenant, &key, &object, input).await,
            Err(e) => Err(e),
        },
        Err(e) => Err(AppError::internal(e)),
    };
    let back = match &t.connection {
        Some(c) => format!("/integrations/{key}/{object}?connection={}", c.id),
        None => format!("/integrations/{key}/{object}"),
    };
    let err = match saved {
        Ok(saved) => {
            let mut message = format!("Rule saved (revision {}).", saved.view.revision);
            for a in &saved.adjusted {
                message.push_str(&format!(" {}: {}.", a.field, a.message));
            }
            session::flash(&form.session, FlashKind::Success, message).await?;
            return Ok(Redirect::to(&back).into_response());
        }
        Err(
            err @ (AppError::Validation { .. }
            | AppError::BadRequest { .. }
            | AppError::Conflict { .. }),
        ) => err,
        Err(err) => return Err(err),
    };
    let schema_form = rule_form(t.object, &doc);
    let mut state_form = FormState::from_pairs(schema_form.values(&doc));
    let status = err.status();
    let mut conflict = None;
    let mut revision = pairs
        .first("revision")
        .and_then(|r| r.trim().parse::<i32>().ok());
    match &err {
        AppError::Conflict { field, message } if field.as_deref() == Some("revision") => {
            let current_rule = match &t.connection {
                Some(c) => rules::list(&state, &current.tenant, &key, &object, Some(c.id))
                    .await?
                    .into_iter()
                    .next(),
                None => None,
            };
            if let Some(r) = current_rule {
                conflict = Some(Conflict {
                    current_revision: r.revision,
                    changes: differences(&r.rule, &doc),
                });
                // Saving again applies this version over the current one.
                revision = Some(r.revision);
            }
            state_form.message = Some(message.clone());
        }
        AppError::Validation {
            field: Some(pointer),
            message,
        }
        | AppError::BadRequest {
            field: Some(pointer),
            message,
        } => match schema_form.field_for_pointer(pointer) {
            Some(name) => state_form = state_form.with_field_error(&name, message.clone()),
            None => state_form.message = Some(format!("{pointer}: {message}")),
        },
        other => state_form.message = Some(other.to_string()),
    }
    let layout =
        Layout::signed_in(&state, &current.session, &current.user, &current.tenant).await?;
    let page = ObjectPage {
        next_runs: preview(&layout, &doc),
        layout,
        provider_key: t.provider.meta.key.clone(),
        provider_name: t.provider.meta.display_name.clone(),
        object: ObjectRow::of(t.object),
        connection_id: t.connection.as_ref().map(|c| c.id),
        connections: t.connections,
        revision,
        schema_form,
        form: state_form,
        conflict,
    };
    Ok(with_status(status, page))
}

/// How many filter rows the posted form had (`/filters/<i>/…`), never more
/// than the schema allows (the index is the sender's to make up).
fn posted_rows(posted: &[(String, String)]) -> usize {
    let max = RULE_SCHEMA
        .pointer("/properties/filters/maxItems")
        .and_then(Value::as_u64)
        .and_then(|m| usize::try_from(m).ok())
        .unwrap_or(50);
    let rows = posted
        .iter()
        .filter_map(|(k, _)| {
            k.strip_prefix("/filters/")?
                .split('/')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .max()
        .map_or(0, |m| m.saturating_add(1))
        // Row `m` exists; `build` adds the blank row after the last.
        .saturating_sub(1);
    rows.min(max)
}

/// The rule's top-level fields whose stored value differs from the one sent
/// (a field the form left out takes its default, and is not a change).
fn differences(stored: &Value, sent: &Value) -> Vec<(String, String, String)> {
    let empty = serde_json::Map::new();
    let a = stored.as_object().unwrap_or(&empty);
    let b = sent.as_object().unwrap_or(&empty);
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| b.contains_key(*k) && a.get(*k) != b.get(*k))
        .map(|k| {
            let show = |v: Option<&Value>| v.map_or_else(|| "—".to_owned(), Value::to_string);
            (k.clone(), show(a.get(k)), show(b.get(k)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn posted_rows_count_the_filled_rows() {
        let p = |names: &[&str]| -> Vec<(String, String)> {
            names
                .iter()
                .map(|n| ((*n).to_owned(), "x".to_owned()))
                .collect()
        };
        assert_eq!(posted_rows(&p(&["/behaviour"])), 0);
        assert_eq!(posted_rows(&p(&["/filters/0/field"])), 0);
        assert_eq!(posted_rows(&p(&["/filters/0/field", "/filters/2/op"])), 2);
        assert_eq!(posted_rows(&p(&["/filters/999999999999/op"])), 50);
    }

    #[test]
    fn conflicts_list_what_changed() {
        let stored = json!({"behaviour": "full", "dryRun": false, "interval": {"minutes": 30}});
        let sent = json!({"behaviour": "full", "dryRun": true, "interval": {"minutes": 30}});
        assert_eq!(
            differences(&stored, &sent),
            vec![("dryRun".to_owned(), "false".to_owned(), "true".to_owned())]
        );
    }
}
