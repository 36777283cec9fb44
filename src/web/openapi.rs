//! The API describing itself: the OpenAPI 3.1 document, generated from the

// Reads below index `serde_json::Value`s with `v["key"]` / `v[0]`, which
// never panics: a missing key or a wrong type reads as `Null`.
#![allow(clippy::indexing_slicing)]
//! handlers' `#[utoipa::path]` annotations and the types' `ToSchema`
//! derives as the routes are registered (`OpenApiRouter` + `routes!`), so
//! the document and the router can't drift. `/api/openapi.json` serves it;
//! `/api/docs` renders it with our own template (no JavaScript, no CDN).

use std::collections::BTreeMap;
use std::sync::Arc;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Extension, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::app::AppState;
use crate::auth::extract::CurrentTenant;
use crate::auth::session::SESSION_COOKIE;
use crate::error::AppResult;
use crate::internal::AGENT_HEADER;
use crate::web::pages::Layout;

/// Security scheme names, as handlers' `security(...)` refer to them.
pub const SESSION: &str = "session_cookie";
pub const SERVICE_KEY: &str = "service_key";
pub const SERVICE_KEY_BEARER: &str = "service_key_bearer";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Plugboard API",
        description = "JSON API of a Plugboard server. Browsers and scripts of signed-in members use the session cookie; \
automations use a workspace service key on /api/internal. Every error answers with the ErrorBody shape.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    modifiers(&SecuritySchemes),
    components(schemas(ErrorBody, ErrorDetail, ErrorCode)),
    tags(
        (name = "meta", description = "Liveness, readiness and this document."),
        (name = "auth", description = "Sign-up, log-in and the signed-in user."),
        (name = "workspaces", description = "Workspaces, members, invites and the audit log."),
        (name = "integrations", description = "The provider catalog."),
        (name = "connections", description = "Connecting accounts: OAuth, credentials, account selection."),
        (name = "entities", description = "Projects and people, their mappings and matching."),
        (name = "sync", description = "Sync requests, jobs and sync rules."),
        (name = "metrics", description = "The metrics semantic layer, queries, KPI tiles and revisions (session or metrics:read key)."),
        (name = "webhooks", description = "The workspace's connection-events webhook."),
        (name = "service-keys", description = "Service keys for automations (admins)."),
        (name = "internal", description = "Server-to-server endpoints for automations (service keys)."),
    )
)]
pub struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi
            .components
            .get_or_insert_with(utoipa::openapi::Components::new);
        components.add_security_scheme(
            SESSION,
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                SESSION_COOKIE,
                "The session cookie set by /api/auth/login or /api/auth/signup (HttpOnly, SameSite=Lax). \
Mutating requests must send Content-Type: application/json, which is the API's CSRF defence.",
            ))),
        );
        components.add_security_scheme(
            SERVICE_KEY,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                AGENT_HEADER,
                "A workspace service key (pb_sk_…) or the deployment-wide agent key. \
Alternatively sent as Authorization: Bearer.",
            ))),
        );
        components.add_security_scheme(
            SERVICE_KEY_BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The same service key as Authorization: Bearer <key>."))
                    .build(),
            ),
        );
    }
}

/// Every error: `{"error":{"code","message","field"}}`.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    /// A sentence a person can act on; never a secret.
    pub message: String,
    /// The input field at fault (a name or a JSON path), when there is one.
    pub field: Option<String>,
    /// 429 from "Sync now": when that connection and object last synced.
    #[serde(rename = "lastSyncAt")]
    #[schema(format = DateTime)]
    pub last_sync_at: Option<String>,
    /// 429 from "Sync now": the seconds Retry-After gives.
    #[serde(rename = "retryAfterSecs")]
    pub retry_after_secs: Option<u64>,
}

/// The machine-readable error codes (`AppError::code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 422: a field failed validation; nothing changed.
    ValidationFailed,
    /// 400: malformed syntax (e.g. invalid JSON).
    BadRequest,
    /// 401: no valid session or service key.
    Unauthenticated,
    /// 401: log-in refused.
    InvalidCredentials,
    /// 403: signed in, but not allowed (role or key scope).
    Forbidden,
    /// 404: no such resource in your workspace (another workspace's looks the same).
    NotFound,
    /// 409: the current state forbids it (stale revision, finished job, …).
    Conflict,
    /// 429: slow down; see Retry-After.
    RateLimited,
    /// 413: the body is larger than the server accepts.
    PayloadTooLarge,
    /// 415: mutating requests must send Content-Type: application/json.
    UnsupportedMediaType,
    /// 503: a dependency or feature is unavailable.
    Unavailable,
    /// 500: our fault; the request id is in the logs.
    Internal,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 12] = [
        ErrorCode::ValidationFailed,
        ErrorCode::BadRequest,
        ErrorCode::Unauthenticated,
        ErrorCode::InvalidCredentials,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::Conflict,
        ErrorCode::RateLimited,
        ErrorCode::PayloadTooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
    ];
}

fn error_response(description: &str) -> RefOr<utoipa::openapi::Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build()
        .into()
}

fn errors(list: &[(u16, &str)]) -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
    list.iter()
        .map(|(status, description)| (status.to_string(), error_response(description)))
        .collect()
}

/// Error responses shared by many operations, for `responses(...)`.
pub mod responses {
    use super::errors;
    use std::collections::BTreeMap;
    use utoipa::IntoResponses;
    use utoipa::openapi::{RefOr, Response};

    /// Signed-in routes: no session (401), server error (500).
    pub struct SignedIn;
    impl IntoResponses for SignedIn {
        fn responses() -> BTreeMap<String, RefOr<Response>> {
            errors(&[
                (401, "Not signed in (unauthenticated)."),
                (500, "Internal error."),
            ])
        }
    }

    /// Routes of the current or a named workspace: 401, 403, 404, 500.
    pub struct Tenant;
    impl IntoResponses for Tenant {
        fn responses() -> BTreeMap<String, RefOr<Response>> {
            errors(&[
                (401, "Not signed in (unauthenticated)."),
                (
                    403,
                    "Your role may not do this, or you belong to no workspace.",
                ),
                (
                    404,
                    "Not found in this workspace (another workspace's resource answers the same).",
                ),
                (500, "Internal error."),
            ])
        }
    }

    /// Routes with a JSON body: 400, 413, 415, 422.
    pub struct Body;
    impl IntoResponses for Body {
        fn responses() -> BTreeMap<String, RefOr<Response>> {
            errors(&[
                (400, "Malformed JSON (with line and column)."),
                (413, "The body is too large."),
                (415, "Content-Type must be application/json."),
                (
                    422,
                    "A field is invalid; `field` names it. Nothing changed.",
                ),
            ])
        }
    }

    /// Input in the path or query that can fail validation: 422.
    pub struct Invalid;
    impl IntoResponses for Invalid {
        fn responses() -> BTreeMap<String, RefOr<Response>> {
            errors(&[(
                422,
                "A parameter is invalid; `field` names it. Nothing changed.",
            )])
        }
    }

    /// Bodiless mutating routes still need Content-Type: application/json.
    pub struct JsonContentType;
    impl IntoResponses for JsonContentType {
        fn responses() -> BTreeMap<String, RefOr<Response>> {
            errors(&[(415, "Content-Type must be application/json.")])
        }
    }

    /// 409.
    pub struct Conflict;
    impl IntoResponses for Conflict {
        fn responses() -> BTreeMap<String, RefOr<Response>> {
            errors(&[(409, "The current state forbids this (see message).")])
        }
    }

    /// 503.
    pub struct Unavailable;
    impl IntoResponses for Unavailable {
        fn responses() -> BTreeMap<String, RefOr<Response>> {
            errors(&[(503, "Unavailable (e.g. syncing switched off).")])
        }
    }

    /// 429 (log-in throttling, per-key budgets).
    pub struct RateLimited;
    impl IntoResponses for RateLimited {
        fn responses() -> BTreeMap<String, RefOr<Response>> {
            errors(&[(429, "Too many requests; see Retry-After.")])
        }
    }

    /// Service-key routes: 401 (missing/unknown/revoked key, no detail),
    /// 403 (scope missing), 404 (another workspace's), 429, 500.
    pub struct ServiceKey;
    impl IntoResponses for ServiceKey {
        fn responses() -> BTreeMap<String, RefOr<Response>> {
            errors(&[
                (
                    401,
                    "Missing, malformed, unknown or revoked key (no detail).",
                ),
                (403, "The key lacks the scope this route needs."),
                (404, "Not found for this key's workspace."),
                (429, "The key's request budget is spent; see Retry-After."),
                (500, "Internal error."),
            ])
        }
    }
}

/// The generated document and its JSON, made once at start-up.
pub struct Document {
    pub openapi: utoipa::openapi::OpenApi,
    json: String,
}

impl Document {
    pub fn new(openapi: utoipa::openapi::OpenApi) -> Document {
        // Serializing our own document can't fail; an empty object would
        // still be valid JSON for clients.
        let json = openapi.to_json().unwrap_or_else(|_| "{}".to_owned());
        Document { openapi, json }
    }
}

/// The OpenAPI 3.1 document. Public: it describes routes, never data.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi_document",
    tag = "meta",
    summary = "This API's OpenAPI 3.1 document",
    description = "Public, like /api/docs: it describes the routes and shapes, never any data.",
    responses((status = 200, description = "The OpenAPI document.", content_type = "application/json", body = Object))
)]
pub async fn openapi_json(Extension(doc): Extension<Arc<Document>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        doc.json.clone(),
    )
        .into_response()
}

#[derive(Template, WebTemplate)]
#[template(path = "api_docs.html")]
pub struct ApiDocsPage {
    layout: Layout,
    version: String,
    schemes: Vec<SchemeView>,
    groups: Vec<TagGroup>,
    schemas: Vec<SchemaView>,
}

pub struct SchemeView {
    name: String,
    how: String,
    description: String,
}

pub struct TagGroup {
    name: String,
    description: String,
    operations: Vec<OperationView>,
}

pub struct OperationView {
    anchor: String,
    method: String,
    path: String,
    summary: String,
    description: String,
    params: Vec<ParamView>,
    request: Option<BodyView>,
    responses: Vec<ResponseView>,
    auth: String,
}

pub struct ParamView {
    name: String,
    location: String,
    required: bool,
    kind: String,
    description: String,
}

pub struct ResponseView {
    status: String,
    description: String,
    schema: Option<BodyView>,
}

/// A body's type, and the schema to link to when it names one.
pub struct BodyView {
    text: String,
    link: Option<String>,
}

pub struct SchemaView {
    name: String,
    description: String,
    kind: String,
    properties: Vec<PropertyView>,
}

pub struct PropertyView {
    name: String,
    kind: String,
    required: bool,
    write_only: bool,
    description: String,
}

/// The human-readable reference, rendered from the same document.
#[utoipa::path(
    get,
    path = "/docs",
    operation_id = "api_reference",
    tag = "meta",
    summary = "This reference, as an HTML page",
    description = "Public. Shows the navigation when signed in.",
    responses((status = 200, description = "The API reference.", content_type = "text/html", body = String))
)]
pub async fn docs(
    State(state): State<AppState>,
    Extension(doc): Extension<Arc<Document>>,
    mut parts: Parts,
) -> AppResult<ApiDocsPage> {
    let layout = match CurrentTenant::from_request_parts(&mut parts, &state).await {
        Ok(current) => {
            Layout::signed_in(&state, &current.session, &current.user, &current.tenant).await?
        }
        Err(_) => match tower_sessions::Session::from_request_parts(&mut parts, &state).await {
            Ok(session) => Layout::anonymous(&session).await?,
            Err(_) => Layout {
                csrf: String::new(),
                nav: None,
                flash: None,
                zone: crate::tenancy::zone::Zone::utc(),
            },
        },
    };
    let json = serde_json::to_value(&doc.openapi).unwrap_or(Value::Null);
    Ok(ApiDocsPage {
        layout,
        version: text(&json["info"]["version"]),
        schemes: schemes(&json),
        groups: groups(&json),
        schemas: schemas(&json),
    })
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

fn schemes(json: &Value) -> Vec<SchemeView> {
    let Some(map) = json["components"]["securitySchemes"].as_object() else {
        return Vec::new();
    };
    map.iter()
        .map(|(name, s)| SchemeView {
            name: name.clone(),
            how: match text(&s["type"]).as_str() {
                "apiKey" => format!("{} {}", text(&s["in"]), text(&s["name"])),
                "http" => format!("Authorization: {}", text(&s["scheme"])),
                other => other.to_owned(),
            },
            description: text(&s["description"]),
        })
        .collect()
}

/// `#/components/schemas/Name` → `Name`; arrays as `Name[]`; inline types
/// by their type.
fn type_name(schema: &Value) -> String {
    if let Some(r) = schema["$ref"].as_str() {
        return r.rsplit('/').next().unwrap_or(r).to_owned();
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        if let Some(items) = schema[key].as_array() {
            let names: Vec<String> = items
                .iter()
                .map(type_name)
                .filter(|n| n != "null")
                .collect();
            let nullable = items.iter().any(|i| i["type"] == "null");
            return format!(
                "{}{}",
                names.join(" | "),
                if nullable { " (nullable)" } else { "" }
            );
        }
    }
    let kind = match &schema["type"] {
        Value::String(t) => t.clone(),
        Value::Array(ts) => ts
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" | "),
        _ => "any".to_owned(),
    };
    let kind = if kind.starts_with("array") {
        kind.replacen("array", &format!("{}[]", type_name(&schema["items"])), 1)
    } else {
        kind
    };
    let kind = match schema["format"].as_str() {
        Some(format) => format!("{kind} ({format})"),
        None => kind,
    };
    match schema["enum"].as_array() {
        Some(values) => format!(
            "{kind}: {}",
            values
                .iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None => kind,
    }
}

fn json_schema_of(content: &Value) -> Option<BodyView> {
    let media = content.as_object()?;
    let (media_type, body) = media.iter().next()?;
    Some(match body.get("schema") {
        Some(schema) => BodyView {
            text: format!("{} ({media_type})", type_name(schema)),
            link: schema["$ref"]
                .as_str()
                .or_else(|| schema["items"]["$ref"].as_str())
                .and_then(|r| r.rsplit('/').next())
                .map(str::to_owned),
        },
        None => BodyView {
            text: media_type.clone(),
            link: None,
        },
    })
}

fn auth_of(op: &Value) -> String {
    let Some(reqs) = op["security"].as_array() else {
        return "public".to_owned();
    };
    let names: Vec<String> = reqs
        .iter()
        .filter_map(Value::as_object)
        .flat_map(|m| m.keys().cloned())
        .collect();
    if names.is_empty() {
        "public".to_owned()
    } else {
        names.join(" or ")
    }
}

fn operation(path: &str, method: &str, op: &Value) -> OperationView {
    let params = op["parameters"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .map(|p| ParamView {
                    name: text(&p["name"]),
                    location: text(&p["in"]),
                    required: p["required"].as_bool().unwrap_or(false),
                    kind: type_name(&p["schema"]),
                    description: text(&p["description"]),
                })
                .collect()
        })
        .unwrap_or_default();
    let responses = op["responses"]
        .as_object()
        .map(|rs| {
            rs.iter()
                .map(|(status, r)| ResponseView {
                    status: status.clone(),
                    description: text(&r["description"]),
                    schema: json_schema_of(&r["content"]),
                })
                .collect()
        })
        .unwrap_or_default();
    OperationView {
        anchor: text(&op["operationId"]),
        method: method.to_uppercase(),
        path: path.to_owned(),
        summary: text(&op["summary"]),
        description: text(&op["description"]),
        params,
        request: json_schema_of(&op["requestBody"]["content"]),
        responses,
        auth: auth_of(op),
    }
}

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

fn groups(json: &Value) -> Vec<TagGroup> {
    let mut groups: Vec<TagGroup> = json["tags"]
        .as_array()
        .map(|tags| {
            tags.iter()
                .map(|t| TagGroup {
                    name: text(&t["name"]),
                    description: text(&t["description"]),
                    operations: Vec::new(),
                })
                .collect()
        })
        .unwrap_or_default();
    let Some(paths) = json["paths"].as_object() else {
        return groups;
    };
    for (path, item) in paths {
        for method in METHODS {
            let op = &item[method];
            if !op.is_object() {
                continue;
            }
            let tag = op["tags"][0].as_str().unwrap_or("other").to_owned();
            let view = operation(path, method, op);
            match groups.iter_mut().find(|g| g.name == tag) {
                Some(group) => group.operations.push(view),
                None => groups.push(TagGroup {
                    name: tag,
                    description: String::new(),
                    operations: vec![view],
                }),
            }
        }
    }
    groups.retain(|g| !g.operations.is_empty());
    groups
}

fn schemas(json: &Value) -> Vec<SchemaView> {
    let Some(map) = json["components"]["schemas"].as_object() else {
        return Vec::new();
    };
    map.iter()
        .map(|(name, schema)| {
            // A flattened struct is `allOf`: the named parts are listed as
            // "with the fields of", the inline parts' fields shown here.
            let parts: Vec<&Value> = match schema["allOf"].as_array() {
                Some(parts) => parts.iter().collect(),
                None => vec![schema],
            };
            let included: Vec<String> = parts
                .iter()
                .filter_map(|p| p["$ref"].as_str())
                .filter_map(|r| r.rsplit('/').next())
                .map(str::to_owned)
                .collect();
            let properties = parts.iter().flat_map(|p| properties(p)).collect();
            SchemaView {
                name: name.clone(),
                description: text(&schema["description"]),
                kind: if included.is_empty() {
                    type_name(schema)
                } else {
                    format!("object, with the fields of {}", included.join(", "))
                },
                properties,
            }
        })
        .collect()
}

fn properties(schema: &Value) -> Vec<PropertyView> {
    let required: Vec<&str> = schema["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    schema["properties"]
        .as_object()
        .map(|props| {
            props
                .iter()
                .map(|(prop, s)| PropertyView {
                    name: prop.clone(),
                    kind: type_name(s),
                    required: required.contains(&prop.as_str()),
                    write_only: s["writeOnly"].as_bool().unwrap_or(false),
                    description: text(&s["description"]),
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::AppError;

    /// Every code `AppError` answers with is one the document enumerates.
    #[test]
    fn error_codes_are_enumerated() {
        let documented: Vec<String> = ErrorCode::ALL
            .iter()
            .map(|c| {
                serde_json::to_value(c)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        let errors = [
            AppError::validation("f", "m"),
            AppError::bad_request(None, "m"),
            AppError::Unauthenticated,
            AppError::InvalidCredentials("m".into()),
            AppError::Forbidden("m".into()),
            AppError::not_found("m"),
            AppError::conflict("f", "m"),
            AppError::RateLimited {
                retry_after_secs: 1,
            },
            AppError::PayloadTooLarge,
            AppError::UnsupportedMediaType("m".into()),
            AppError::Unavailable("m".into()),
            AppError::internal(anyhow::anyhow!("m")),
        ];
        assert_eq!(errors.len(), documented.len());
        for err in &errors {
            assert!(
                documented.iter().any(|d| d == err.code()),
                "{} is not in ErrorCode",
                err.code()
            );
        }
    }
}
