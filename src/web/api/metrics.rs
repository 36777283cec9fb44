//! The metrics read API: the semantic layer's catalog, the query behind the
//! explorer (JSON or CSV), the dashboard's KPI tiles and the revision log.
//! A session sees the workspace's data and the member's own personal
//! connections'; a service key with `metrics:read` sees its workspace's
//! data without members' personal connections.

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use uuid::Uuid;

use crate::app::AppState;
use crate::auth::extract::CurrentTenant;
use crate::connections::Viewer;
use crate::error::{AppError, AppResult};
use crate::internal::{AGENT_HEADER, ServiceAuth, require};
use crate::metrics::query::{
    self, Catalog, KpiBoard, QueryResult, Revision, parse_kpi_request, parse_query,
};
use crate::servicekeys::Scope;
use crate::tenancy::WorkspaceId;
use crate::web::openapi::responses as errors;

/// The query string as pairs; a value that isn't UTF-8 is replaced, never
/// a panic.
fn pairs(parts: &Parts) -> Vec<(String, String)> {
    form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

fn presents_key(headers: &HeaderMap) -> bool {
    headers.contains_key(AGENT_HEADER)
        || headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .is_some_and(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
}

/// Who reads, and the query string. A service key's viewer is no member
/// (the nil user), so personal connections stay out; the deployment-wide
/// key names the workspace in `workspaceId`.
pub struct MetricsReader {
    pub viewer: Viewer,
    pub pairs: Vec<(String, String)>,
}

impl FromRequestParts<AppState> for MetricsReader {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let pairs = pairs(parts);
        if presents_key(&parts.headers) {
            let ServiceAuth(caller) = ServiceAuth::from_request_parts(parts, state).await?;
            require(&caller, Scope::MetricsRead)?;
            let workspace = match caller.workspace {
                Some(ws) => ws,
                None => {
                    let raw = pairs
                        .iter()
                        .find(|(k, _)| k == "workspaceId")
                        .map(|(_, v)| v.as_str())
                        .ok_or_else(|| {
                            AppError::validation(
                                "workspaceId",
                                "the deployment-wide key names the workspace",
                            )
                        })?;
                    let id = Uuid::parse_str(raw.trim())
                        .map_err(|_| AppError::validation("workspaceId", "expected a UUID"))?;
                    let ws = WorkspaceId(id);
                    if !state.store.workspace_exists(ws).await? {
                        return Err(AppError::not_found("workspace not found"));
                    }
                    ws
                }
            };
            return Ok(MetricsReader {
                viewer: Viewer {
                    workspace,
                    user: Uuid::nil(),
                },
                pairs,
            });
        }
        let current = CurrentTenant::from_request_parts(parts, state).await?;
        Ok(MetricsReader {
            viewer: Viewer::from(&current.tenant),
            pairs,
        })
    }
}

fn wants_csv(headers: &HeaderMap, pairs: &[(String, String)]) -> bool {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().to_ascii_lowercase().starts_with("text/csv"))
        });
    accept || pairs.iter().any(|(k, v)| k == "format" && v == "csv")
}

#[utoipa::path(
    get,
    path = "/data/metrics/catalog",
    operation_id = "metrics_catalog",
    tag = "metrics",
    summary = "The metrics semantic layer of the workspace's visible connections",
    description = "Canonical metric keys (derived ones included) with labels, units and aggregation; dimensions; per provider its settling window, accounts, first and last day with data, and the layer as declared. A session or a service key with metrics:read.",
    security(("session_cookie" = []), ("service_key" = []), ("service_key_bearer" = [])),
    responses((status = 200, description = "The catalog.", body = Catalog), errors::Tenant, errors::ServiceKey)
)]
pub async fn catalog(
    State(state): State<AppState>,
    reader: MetricsReader,
) -> AppResult<Json<Catalog>> {
    Ok(Json(query::catalog(&state, &reader.viewer).await?))
}

#[utoipa::path(
    get,
    path = "/data/metrics/query",
    operation_id = "metrics_query",
    tag = "metrics",
    summary = "Metrics by period and group, with totals per currency, comparison and provisional flags",
    description = "Sums are taken per day, ISO week (Monday) or month in the workspace's time zone. Derived ratios are computed from summed parts; non-additive metrics (users) average their daily values; amounts of different currencies are never added (one part per currency); metrics of different providers are added only when both are marked comparable. Days without data are missing (null), never zero. Filters: repeated provider=, account= and dim.<key>=<value>. `Accept: text/csv` (or format=csv) answers the rows as CSV. A session or a service key with metrics:read.",
    security(("session_cookie" = []), ("service_key" = []), ("service_key_bearer" = [])),
    params(
        ("metrics" = String, Query, description = "Canonical keys from the catalog, comma-separated or repeated."),
        ("from" = Option<String>, Query, description = "First day (YYYY-MM-DD); default 28 days before `to`."),
        ("to" = Option<String>, Query, description = "Last day, inclusive; default yesterday."),
        ("grain" = Option<String>, Query, description = "day (default), week or month."),
        ("groupBy" = Option<String>, Query, description = "provider, account and declared dimension keys, comma-separated."),
        ("provider" = Option<String>, Query, description = "Only these providers (repeatable)."),
        ("account" = Option<String>, Query, description = "Only these accounts (repeatable)."),
        ("compare" = Option<String>, Query, description = "none (default), previous_period or previous_year."),
        ("format" = Option<String>, Query, description = "csv: the rows as CSV (as with Accept: text/csv).")
    ),
    responses(
        (status = 200, description = "The answer (JSON), or the rows as CSV.", content(
            (QueryResult = "application/json"),
            (String = "text/csv")
        )),
        errors::Invalid,
        errors::Tenant,
        errors::ServiceKey
    )
)]
pub async fn run_query(
    State(state): State<AppState>,
    headers: HeaderMap,
    reader: MetricsReader,
) -> AppResult<Response> {
    let catalog = query::catalog(&state, &reader.viewer).await?;
    let today = query::workspace_today(&state, reader.viewer.workspace).await?;
    let parsed = parse_query(
        &reader.pairs,
        &catalog,
        today,
        state.settings.metrics.max_range_days,
    )?;
    let result = query::run(&state, &reader.viewer, &parsed).await?;
    if wants_csv(&headers, &reader.pairs) {
        let name = format!("metrics-{}-{}.csv", parsed.from, parsed.to);
        return Ok(query::to_csv(&result, &parsed).into_download(&name));
    }
    Ok(Json(result).into_response())
}

#[utoipa::path(
    get,
    path = "/data/kpis",
    operation_id = "metrics_kpis",
    tag = "metrics",
    summary = "The dashboard's KPI tiles in one call",
    description = "range: 7d, 28d (default), 90d — the complete days ending yesterday in the workspace's zone — mtd, or custom with from and to. compare: none (default), previous_period or previous_year. Repeated provider= and account= narrow the scope. Each tile has its total (one part per currency or provider where they can't be added), the compared value and delta, provisional notes, and a daily series.",
    security(("session_cookie" = []), ("service_key" = []), ("service_key_bearer" = [])),
    params(
        ("range" = Option<String>, Query, description = "7d, 28d, 90d, mtd or custom."),
        ("from" = Option<String>, Query, description = "With range=custom."),
        ("to" = Option<String>, Query, description = "With range=custom."),
        ("compare" = Option<String>, Query, description = "none, previous_period or previous_year."),
        ("provider" = Option<String>, Query, description = "Only these providers (repeatable)."),
        ("account" = Option<String>, Query, description = "Only these accounts (repeatable).")
    ),
    responses((status = 200, description = "The tiles.", body = KpiBoard), errors::Invalid, errors::Tenant, errors::ServiceKey)
)]
pub async fn kpis(
    State(state): State<AppState>,
    reader: MetricsReader,
) -> AppResult<Json<KpiBoard>> {
    let today = query::workspace_today(&state, reader.viewer.workspace).await?;
    let request = parse_kpi_request(&reader.pairs, today)?;
    Ok(Json(query::kpis(&state, &reader.viewer, &request).await?))
}

#[utoipa::path(
    get,
    path = "/data/metrics/revisions",
    operation_id = "metrics_revisions",
    tag = "metrics",
    summary = "Values providers revised after a moment (\"revised since your last visit\")",
    description = "Newest first, at most 500. The log keeps revisions of days inside each source's settling window plus PLUGBOARD_METRICS_REVISION_MARGIN_DAYS.",
    security(("session_cookie" = []), ("service_key" = []), ("service_key_bearer" = [])),
    params(("since" = String, Query, description = "RFC 3339 instant.")),
    responses((status = 200, description = "The revisions.", body = Vec<Revision>), errors::Invalid, errors::Tenant, errors::ServiceKey)
)]
pub async fn revisions(
    State(state): State<AppState>,
    reader: MetricsReader,
) -> AppResult<Json<Vec<Revision>>> {
    let raw = reader
        .pairs
        .iter()
        .find(|(k, _)| k == "since")
        .map(|(_, v)| v.trim())
        .ok_or_else(|| AppError::validation("since", "expected an RFC 3339 instant"))?;
    let since = time::OffsetDateTime::parse(raw, &time::format_description::well_known::Rfc3339)
        .map_err(|_| AppError::validation("since", "expected an RFC 3339 instant"))?;
    Ok(Json(
        query::revisions_since(&state, &reader.viewer, since).await?,
    ))
}
