//! The data API: properties with daily metrics (cursor pagination), projects
//! (offset/limit, delta by `updated_since`, parent/child) and people (page
//! numbers). Metrics and people are pure functions of their inputs,
//! generated per request; projects live in memory so tests can change them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{OriginalUri, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::macros::{date, format_description};
use time::{Date, OffsetDateTime};

use super::oauth::invalid_token;
use super::{Dataset, Inner, Params, bump, json_response, lock, sha256};

const RATE_WINDOW: Duration = Duration::from_secs(60);
const MAX_SLOW_MS: u64 = 600_000;
const MAX_COMPANY_LEN: usize = 100;
const COMPANY_HEADER: &str = "X-Sandbox-Company";
const REMAINING_HEADER: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
const RESET_HEADER: HeaderName = HeaderName::from_static("x-ratelimit-reset");
const SECONDS_PER_DAY: u64 = 86_400;
const DATE_FORMAT: &[time::format_description::BorrowedFormatItem<'_>] =
    format_description!("[year]-[month]-[day]");

// ---------------------------------------------------------------- shared plumbing

/// A fixed one-minute window for the quota headers.
pub(super) struct RateWindow {
    started: Instant,
    used: u32,
}

impl RateWindow {
    pub(super) fn new(now: Instant) -> Self {
        RateWindow {
            started: now,
            used: 0,
        }
    }

    /// Counts a request; returns (remaining, seconds until reset). Only
    /// reported: real throttling comes from injected faults, so tests stay
    /// fast.
    fn note(&mut self, now: Instant, per_minute: u32) -> (u32, u64) {
        if now.saturating_duration_since(self.started) >= RATE_WINDOW {
            self.started = now;
            self.used = 0;
        }
        self.used = self.used.saturating_add(1);
        let elapsed = now.saturating_duration_since(self.started);
        let reset = RATE_WINDOW.saturating_sub(elapsed).as_secs_f64().ceil() as u64;
        (per_minute.saturating_sub(self.used), reset)
    }
}

enum ApiFault {
    RateLimited { retry_after: u64 },
    Unavailable,
    BadRequest,
}

/// The fault for this request, the delay, and a quota reset to report as
/// used up.
fn take_api_fault(inner: &Inner) -> (Option<ApiFault>, u64, Option<u64>) {
    let mut faults = lock(&inner.faults);
    let quota_exhausted = if faults.quota_exhausted_next > 0 {
        faults.quota_exhausted_next -= 1;
        Some(faults.quota_reset_secs)
    } else {
        None
    };
    let fault = if faults.bad_request_next > 0 {
        faults.bad_request_next -= 1;
        Some(ApiFault::BadRequest)
    } else if faults.rate_limit_next > 0 {
        faults.rate_limit_next -= 1;
        Some(ApiFault::RateLimited {
            retry_after: faults.retry_after_secs,
        })
    } else if faults.unavailable_next > 0 {
        faults.unavailable_next -= 1;
        Some(ApiFault::Unavailable)
    } else {
        None
    };
    (fault, faults.slow_ms, quota_exhausted)
}

/// A JSON error answer; small, unlike a whole `Response`.
pub(super) struct ApiError {
    status: StatusCode,
    body: serde_json::Value,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json_response(self.status, self.body)
    }
}

fn bad_request(error: &str, description: &str) -> ApiError {
    ApiError {
        status: StatusCode::BAD_REQUEST,
        body: serde_json::json!({"error": error, "error_description": description}),
    }
}

/// The company header, trimmed and lowercased so data doesn't depend on
/// how a client capitalises it.
fn company(headers: &HeaderMap) -> Result<String, ApiError> {
    let missing = || ApiError {
        status: StatusCode::BAD_REQUEST,
        body: serde_json::json!({"error": "missing_header", "header": COMPANY_HEADER}),
    };
    let value = headers.get(COMPANY_HEADER).ok_or_else(missing)?;
    let value = value
        .to_str()
        .ok()
        .map(|v| v.trim().to_ascii_lowercase())
        .filter(|v| v.len() <= MAX_COMPANY_LEN)
        .ok_or_else(|| ApiError {
            status: StatusCode::BAD_REQUEST,
            body: serde_json::json!({"error": "invalid_header", "header": COMPANY_HEADER}),
        })?;
    if value.is_empty() {
        return Err(missing());
    }
    Ok(value)
}

/// Every data-API request: count, faults, delay, bearer token, company
/// header, then `handler`; the quota headers go on every answer.
async fn serve<F>(inner: &Inner, headers: &HeaderMap, handler: F) -> Response
where
    F: FnOnce(&Inner, &str) -> Response,
{
    bump(&inner.stats.api_requests);
    inner.stats.note_request_id(headers);
    let (fault, slow_ms, quota_exhausted) = take_api_fault(inner);
    if slow_ms > 0 {
        tokio::time::sleep(Duration::from_millis(slow_ms.min(MAX_SLOW_MS))).await;
    }
    let (mut remaining, mut reset) =
        lock(&inner.rate_window).note(Instant::now(), inner.requests_per_minute);
    if let Some(reset_secs) = quota_exhausted {
        remaining = 0;
        reset = reset_secs;
    }
    let mut response = match fault {
        Some(ApiFault::RateLimited { retry_after }) => {
            remaining = 0;
            reset = retry_after;
            let mut response = json_response(
                StatusCode::TOO_MANY_REQUESTS,
                serde_json::json!({"error": "rate_limited", "error_description": "too many requests (injected fault)"}),
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            response
        }
        Some(ApiFault::BadRequest) => json_response(
            StatusCode::BAD_REQUEST,
            serde_json::json!({
                "error": "invalid_filter",
                "error_description": "the filter is not valid (injected fault)",
                "echo": {"access_token": "sandbox-leaked-token", "email": "ann@example.com"},
            }),
        ),
        Some(ApiFault::Unavailable) => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"error": "unavailable", "error_description": "service unavailable (injected fault)"}),
        ),
        None => match inner.authenticate_bearer(headers) {
            None => invalid_token(),
            Some(_) => match company(headers) {
                Ok(company) => handler(inner, &company),
                Err(err) => err.into_response(),
            },
        },
    };
    let response_headers = response.headers_mut();
    response_headers.insert(REMAINING_HEADER, HeaderValue::from(remaining));
    response_headers.insert(RESET_HEADER, HeaderValue::from(reset));
    response
}

fn parse_query(query: Option<&str>) -> Result<Params, ApiError> {
    Params::parse(query.unwrap_or_default().as_bytes())
        .ok_or_else(|| bad_request("invalid_request", "malformed query string"))
}

/// A non-negative count; absurdly large values saturate instead of failing.
fn parse_count(params: &Params, name: &str, default: u64) -> Result<u64, ApiError> {
    match params.get(name) {
        None => Ok(default),
        Some(raw) if !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()) => {
            Ok(raw.parse().unwrap_or(u64::MAX))
        }
        Some(_) => Err(bad_request(
            "invalid_request",
            &format!("{name} must be a non-negative integer"),
        )),
    }
}

/// A page size: default when absent, clamped to 1..=max.
fn parse_limit(params: &Params, name: &str, default: u64, max: u64) -> Result<usize, ApiError> {
    let limit = parse_count(params, name, default)?.clamp(1, max);
    Ok(usize::try_from(limit).unwrap_or(usize::MAX))
}

/// Four pseudo-random words from `input`, stable across runs and builds.
fn words(input: &str) -> [u64; 4] {
    let hash = sha256(input.as_bytes());
    let mut words = [0u64; 4];
    for (word, chunk) in words.iter_mut().zip(hash.chunks_exact(8)) {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        *word = u64::from_le_bytes(bytes);
    }
    words
}

fn pick<'a>(list: &[&'a str], n: u64) -> &'a str {
    let len = list.len() as u64;
    if len == 0 {
        return "";
    }
    usize::try_from(n % len)
        .ok()
        .and_then(|i| list.get(i))
        .copied()
        .unwrap_or_default()
}

fn format_date(date: Date) -> String {
    date.format(DATE_FORMAT).unwrap_or_default()
}

fn format_datetime(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_default()
}

/// `now` minus up to 30 days, derived from `seed`.
fn spread(now: OffsetDateTime, seed: u64) -> OffsetDateTime {
    let back = i64::try_from(seed % (30 * SECONDS_PER_DAY)).unwrap_or(0);
    now.checked_sub(time::Duration::seconds(back))
        .unwrap_or(now)
}

fn display_company(company: &str) -> String {
    let mut chars = company.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

// ---------------------------------------------------------------- properties, metrics

const PROPERTY_SUFFIXES: &[&str] = &["Web", "App", "Shop", "Blog", "Docs", "Help Center"];

fn property_name(company: &str, n: usize) -> String {
    let suffix = n
        .checked_sub(1)
        .and_then(|i| PROPERTY_SUFFIXES.get(i))
        .map(|s| (*s).to_owned())
        .unwrap_or_else(|| format!("Site {n}"));
    format!("{} {suffix}", display_company(company))
}

/// `prop-N` with 1 ≤ N ≤ count, canonical spelling only.
fn property_number(id: &str, count: usize) -> Option<usize> {
    let n: usize = id.strip_prefix("prop-")?.parse().ok()?;
    (1..=count)
        .contains(&n)
        .then_some(n)
        .filter(|n| format!("prop-{n}") == id)
}

const PROPERTY_CURRENCIES: &[&str] = &["USD", "EUR", "GBP", "JPY"];
const PROPERTY_TIME_ZONES: &[&str] = &[
    "America/New_York",
    "Europe/Berlin",
    "Europe/London",
    "Asia/Tokyo",
];

/// The currency and time zone of the `index`th property (they cycle).
fn property_locale(index: usize) -> (&'static str, &'static str) {
    let i = index % PROPERTY_CURRENCIES.len().max(1);
    (
        PROPERTY_CURRENCIES.get(i).copied().unwrap_or("USD"),
        PROPERTY_TIME_ZONES.get(i).copied().unwrap_or("UTC"),
    )
}

/// `GET /api/properties`: id, name, currency and time zone, as GA4 and
/// Google Ads report them for a property or customer.
pub(super) async fn properties(State(inner): State<Arc<Inner>>, headers: HeaderMap) -> Response {
    serve(&inner, &headers, |inner, company| {
        let properties: Vec<_> = (1..=inner.dataset.properties)
            .map(|n| {
                let (currency, time_zone) = property_locale(n.saturating_sub(1));
                serde_json::json!({
                    "id": format!("prop-{n}"),
                    "name": property_name(company, n),
                    "currency": currency,
                    "timeZone": time_zone,
                })
            })
            .chain(lock(&inner.faults).extra_property.clone().map(|id| {
                serde_json::json!({
                    "id": id,
                    "name": id,
                    "currency": property_locale(0).0,
                    "timeZone": property_locale(0).1,
                })
            }))
            .collect();
        axum::Json(serde_json::json!({ "properties": properties })).into_response()
    })
    .await
}

#[derive(Debug, Serialize)]
struct MetricRow {
    date: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<String>,
    sessions: u64,
    users: u64,
    conversions: u64,
    revenue: f64,
    ad_clicks: u64,
    impressions: u64,
    cost: f64,
}

/// Plausible numbers from a hash of (property, date, company).
fn metric_row(property: &str, date: Date, company: &str) -> MetricRow {
    let day = format_date(date);
    let [a, b, c, d] = words(&format!("metrics|{property}|{day}|{company}"));
    let weekend = matches!(
        date.weekday(),
        time::Weekday::Saturday | time::Weekday::Sunday
    );
    let sessions = (300 + a % 1_700) * if weekend { 6 } else { 10 } / 10;
    let users = sessions * (55 + (a >> 32) % 35) / 100;
    let conversions = sessions * (5 + b % 35) / 1_000;
    let revenue_cents = conversions * (2_000 + (b >> 32) % 10_000);
    let impressions = 2_000 + c % 30_000;
    let ad_clicks = impressions * (5 + (c >> 32) % 35) / 1_000;
    let cost_cents = ad_clicks * (20 + d % 180);
    MetricRow {
        date: day,
        channel: None,
        sessions,
        users,
        conversions,
        revenue: revenue_cents as f64 / 100.0,
        ad_clicks,
        impressions,
        cost: cost_cents as f64 / 100.0,
    }
}

/// Cursors name the next date (and, broken down by channel, the next
/// channel of that day: a day may span pages); opaque so clients don't
/// build them.
fn encode_cursor(date: Date, channel: usize) -> String {
    let text = match channel {
        0 => format!("d:{}", format_date(date)),
        c => format!("d:{}/{c}", format_date(date)),
    };
    URL_SAFE_NO_PAD.encode(text)
}

fn decode_cursor(cursor: &str) -> Option<(Date, usize)> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    let text = std::str::from_utf8(&bytes).ok()?.strip_prefix("d:")?;
    let (day, channel) = match text.split_once('/') {
        Some((day, c)) => (day, c.parse().ok()?),
        None => (text, 0),
    };
    Some((Date::parse(day, DATE_FORMAT).ok()?, channel))
}

/// `GET /api/properties/{id}/daily-metrics?since=&cursor=&limit=`.
pub(super) async fn daily_metrics(
    State(inner): State<Arc<Inner>>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Response {
    *lock(&inner.stats.last_metrics_path) = Some(uri.path().to_owned());
    let id = if lock(&inner.faults).extra_property.as_deref() == Some(id.as_str()) {
        "prop-1".to_owned()
    } else {
        id
    };
    serve(&inner, &headers, move |inner, company| {
        let channels = lock(&inner.metric_channels).clone();
        let revision = inner
            .revisions
            .load(std::sync::atomic::Ordering::Relaxed)
            .then(|| {
                inner
                    .metric_reads
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                    .wrapping_add(1)
            });
        match metrics_page(
            inner.dataset,
            &id,
            query.as_deref(),
            company,
            (OffsetDateTime::now_utc().date(), &channels, revision),
        ) {
            Ok(page) => page,
            Err(err) => err.into_response(),
        }
    })
    .await
}

fn metrics_page(
    dataset: Dataset,
    id: &str,
    query: Option<&str>,
    company: &str,
    (today, channels, revision): (Date, &[String], Option<u64>),
) -> Result<Response, ApiError> {
    // With revisions on, the last REVISED_DAYS days read differently each
    // time (the read's number is part of their seed).
    let revised_from = today
        .checked_sub(time::Duration::days(i64::from(super::REVISED_DAYS) - 1))
        .unwrap_or(Date::MIN);
    let seed = |property: String, date: Date| match revision {
        Some(n) if date >= revised_from => format!("{property}|r{n}"),
        _ => property,
    };
    if property_number(id, dataset.properties).is_none() {
        return Err(ApiError {
            status: StatusCode::NOT_FOUND,
            body: serde_json::json!({"error": "not_found", "error_description": "unknown property"}),
        });
    }
    let params = parse_query(query)?;
    let limit = parse_limit(&params, "limit", 30, 500)?;
    let mut next = if dataset.days == 0 {
        None
    } else {
        Some(
            today
                .checked_sub(time::Duration::days(i64::from(dataset.days) - 1))
                .unwrap_or(Date::MIN),
        )
    };
    if let Some(raw) = params.get("since") {
        let since = Date::parse(raw, DATE_FORMAT)
            .map_err(|_| bad_request("invalid_request", "since must be YYYY-MM-DD"))?;
        next = next.map(|start| start.max(since));
    }
    let mut channel = 0;
    if let Some(raw) = params.get("cursor") {
        let (day, at) = decode_cursor(raw)
            .ok_or_else(|| bad_request("invalid_cursor", "cursor is not one this API issued"))?;
        next = next.map(|start| start.max(day));
        if next == Some(day) {
            channel = at;
        }
    }
    // One row a day, or one per day and channel.
    let per_day = channels.len().max(1);
    let mut rows = Vec::new();
    while let Some(date) = next.filter(|d| *d <= today) {
        if rows.len() == limit {
            break;
        }
        if channel >= per_day {
            next = date.next_day();
            channel = 0;
            continue;
        }
        match channels.get(channel) {
            Some(name) => {
                let mut row = metric_row(&seed(format!("{id}/{name}"), date), date, company);
                row.channel = Some(name.clone());
                rows.push(row);
            }
            None => rows.push(metric_row(&seed(id.to_owned(), date), date, company)),
        }
        channel += 1;
        if channel >= per_day {
            next = date.next_day();
            channel = 0;
        }
    }
    let next_cursor = next
        .filter(|d| *d <= today)
        .map(|d| encode_cursor(d, channel));
    Ok(axum::Json(serde_json::json!({ "rows": rows, "next_cursor": next_cursor })).into_response())
}

// ---------------------------------------------------------------- projects

#[derive(Clone, Debug)]
pub(super) struct Project {
    pub(super) id: String,
    number: String,
    pub(super) name: String,
    client_name: String,
    active: bool,
    parent_id: Option<String>,
    start_date: Date,
    end_date: Option<Date>,
    pub(super) updated_at: OffsetDateTime,
    pub(super) deleted: bool,
}

#[derive(Serialize)]
struct ProjectOut<'a> {
    id: &'a str,
    number: &'a str,
    name: &'a str,
    client_name: &'a str,
    status: &'static str,
    parent_id: Option<&'a str>,
    start_date: String,
    end_date: Option<String>,
    updated_at: String,
    deleted: bool,
}

impl Project {
    fn out(&self) -> ProjectOut<'_> {
        ProjectOut {
            id: &self.id,
            number: &self.number,
            name: &self.name,
            client_name: &self.client_name,
            status: if self.active { "active" } else { "inactive" },
            parent_id: self.parent_id.as_deref(),
            start_date: format_date(self.start_date),
            end_date: self.end_date.map(format_date),
            updated_at: format_datetime(self.updated_at),
            deleted: self.deleted,
        }
    }
}

const PROJECT_ADJECTIVES: &[&str] = &[
    "Website",
    "Mobile",
    "Brand",
    "Data",
    "Cloud",
    "Office",
    "Retail",
    "Annual",
    "Customer",
    "Warehouse",
    "Payroll",
    "Intranet",
];
const PROJECT_NOUNS: &[&str] = &[
    "Redesign",
    "Migration",
    "Audit",
    "Launch",
    "Rollout",
    "Refresh",
    "Integration",
    "Study",
    "Upgrade",
    "Campaign",
];
const CLIENTS: &[&str] = &[
    "Northwind Traders",
    "Contoso Ltd",
    "Globex",
    "Initech",
    "Umbrella Corp",
    "Stark Industries",
    "Wayne Enterprises",
    "Hooli",
    "Vandelay Industries",
];
const PHASES: &[&str] = &["Discovery", "Delivery", "Support", "Handover"];

/// `projects` parents, each followed by its children, sorted by id. Every
/// 10th parent is deleted and every 7th inactive; `updated_at` is spread over
/// the 30 days before `now`.
pub(super) fn generate_projects(dataset: &Dataset, now: OffsetDateTime) -> Vec<Project> {
    let now = now.replace_nanosecond(0).unwrap_or(now);
    let epoch = date!(2024 - 01 - 01);
    let mut projects = Vec::with_capacity(dataset.projects * (1 + dataset.children_per_project));
    for p in 1..=dataset.projects {
        let id = format!("proj-{p:04}");
        let [a, b, c, d] = words(&format!("project|{id}"));
        let name = format!("{} {}", pick(PROJECT_ADJECTIVES, a), pick(PROJECT_NOUNS, b));
        let client_name = pick(CLIENTS, (p - 1) as u64).to_owned();
        let active = !p.is_multiple_of(7);
        let start_date = epoch
            .checked_add(time::Duration::days((c % 700) as i64))
            .unwrap_or(epoch);
        let end_date = (!active)
            .then(|| start_date.checked_add(time::Duration::days(90 + (c >> 32) as i64 % 90)))
            .flatten();
        for n in 1..=dataset.children_per_project {
            let child_id = format!("{id}-{n:02}");
            let [e, ..] = words(&format!("project|{child_id}"));
            let phase = PHASES
                .get(n - 1)
                .map(|s| (*s).to_owned())
                .unwrap_or_else(|| format!("Phase {n}"));
            projects.push(Project {
                number: format!("P-{p:04}.{n:02}"),
                name: format!("{name} – {phase}"),
                client_name: client_name.clone(),
                active,
                parent_id: Some(id.clone()),
                start_date: start_date
                    .checked_add(time::Duration::days(14 * n as i64))
                    .unwrap_or(start_date),
                end_date,
                updated_at: spread(now, e),
                deleted: false,
                id: child_id,
            });
        }
        projects.push(Project {
            number: format!("P-{p:04}"),
            id,
            name,
            client_name,
            active,
            parent_id: None,
            start_date,
            end_date,
            updated_at: spread(now, d),
            deleted: p.is_multiple_of(10),
        });
    }
    projects.sort_by(|x, y| x.id.cmp(&y.id));
    projects
}

/// Applies `change` and moves `updated_at` to now, strictly later than
/// before so a delta sync can't miss the change.
pub(super) fn update_project(inner: &Inner, id: &str, change: impl FnOnce(&mut Project)) {
    let mut projects = lock(&inner.projects);
    if let Some(project) = projects.iter_mut().find(|p| p.id == id) {
        change(project);
        let floor = project
            .updated_at
            .checked_add(time::Duration::milliseconds(1))
            .unwrap_or(project.updated_at);
        project.updated_at = OffsetDateTime::now_utc().max(floor);
    }
}

/// RFC 3339; a `+` offset that arrived unescaped in the query decodes to a
/// space, so that is forgiven.
fn parse_rfc3339(raw: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(raw, &Rfc3339)
        .or_else(|_| OffsetDateTime::parse(&raw.replace(' ', "+"), &Rfc3339))
        .ok()
}

/// `GET /api/projects?limit=&offset=&updated_since=&parent_only=`.
pub(super) async fn projects(
    State(inner): State<Arc<Inner>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    serve(
        &inner,
        &headers,
        move |inner, _company| match projects_page(inner, query.as_deref()) {
            Ok(page) => page,
            Err(err) => err.into_response(),
        },
    )
    .await
}

fn projects_page(inner: &Inner, query: Option<&str>) -> Result<Response, ApiError> {
    let params = parse_query(query)?;
    let limit = parse_limit(&params, "limit", 100, 500)?;
    let offset = usize::try_from(parse_count(&params, "offset", 0)?).unwrap_or(usize::MAX);
    let since = match params.get("updated_since") {
        None => None,
        Some(raw) => Some(parse_rfc3339(raw).ok_or_else(|| {
            bad_request(
                "invalid_request",
                "updated_since must be an RFC 3339 timestamp",
            )
        })?),
    };
    let parent_only = match params.get("parent_only") {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") => true,
        Some(_) => {
            return Err(bad_request(
                "invalid_request",
                "parent_only must be true or false",
            ));
        }
    };
    let projects = lock(&inner.projects);
    let matching: Vec<&Project> = projects
        .iter()
        .filter(|p| !parent_only || p.parent_id.is_none())
        .filter(|p| since.is_none_or(|since| p.updated_at >= since))
        .collect();
    let mut items: Vec<serde_json::Value> = matching
        .iter()
        .skip(offset)
        .take(limit)
        .filter_map(|p| serde_json::to_value(p.out()).ok())
        .collect();
    if lock(&inner.faults).repeat_first_project
        && let Some(mut again) = items.first().cloned()
    {
        if let Some(fields) = again.as_object_mut()
            && let Some(name) = fields.get("name").and_then(serde_json::Value::as_str)
        {
            let changed = format!("{name} (changed while paging)");
            fields.insert("name".to_owned(), serde_json::Value::String(changed));
        }
        items.push(again);
    }
    let body = serde_json::json!({ "items": items, "total": matching.len() });
    drop(projects);
    Ok(axum::Json(body).into_response())
}

// ---------------------------------------------------------------- people

const FIRST_NAMES: &[&str] = &[
    "Ada",
    "Grace",
    "Alan",
    "Katherine",
    "Linus",
    "Margaret",
    "Dennis",
    "Barbara",
    "Ken",
    "Radia",
    "Tim",
    "Frances",
    "Edsger",
    "Hedy",
    "Donald",
    "Sophie",
];
const LAST_NAMES: &[&str] = &[
    "Lovelace",
    "Hopper",
    "Turing",
    "Johnson",
    "Torvalds",
    "Hamilton",
    "Ritchie",
    "Liskov",
    "Thompson",
    "Perlman",
    "Berners-Lee",
    "Allen",
    "Dijkstra",
    "Lamarr",
    "Knuth",
    "Wilson",
];
const TITLES: &[&str] = &[
    "Project Manager",
    "Engineer",
    "Designer",
    "Analyst",
    "Consultant",
    "Account Director",
    "Architect",
    "Coordinator",
];

#[derive(Serialize)]
struct Person {
    id: String,
    name: String,
    email: String,
    title: &'static str,
    active: bool,
    updated_at: String,
}

fn person(n: u64, domain: &str, created_at: OffsetDateTime) -> Person {
    let [a, b, c, d] = words(&format!("person|{n}"));
    let first = pick(FIRST_NAMES, a);
    let last = pick(LAST_NAMES, b);
    let local: String = format!("{first}.{last}.{n}")
        .to_ascii_lowercase()
        .chars()
        .filter(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '-'))
        .collect();
    Person {
        id: format!("person-{n:04}"),
        name: format!("{first} {last}"),
        email: format!("{local}@{domain}.example"),
        title: pick(TITLES, c),
        active: !n.is_multiple_of(9),
        updated_at: format_datetime(spread(
            created_at.replace_nanosecond(0).unwrap_or(created_at),
            d,
        )),
    }
}

/// `GET /api/people?page=&per_page=`.
pub(super) async fn people(
    State(inner): State<Arc<Inner>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    serve(&inner, &headers, move |inner, company| {
        match people_page(inner, query.as_deref(), company) {
            Ok(page) => page,
            Err(err) => err.into_response(),
        }
    })
    .await
}

fn people_page(inner: &Inner, query: Option<&str>, company: &str) -> Result<Response, ApiError> {
    let params = parse_query(query)?;
    let page = parse_count(&params, "page", 1)?.max(1);
    let per_page = parse_limit(&params, "per_page", 50, 500)? as u64;
    let total = inner.dataset.people as u64;
    let start = (page - 1).saturating_mul(per_page).min(total);
    let end = start.saturating_add(per_page).min(total);
    let domain: String = company
        .chars()
        .filter(|ch| ch.is_ascii_alphanumeric() || *ch == '-')
        .collect();
    let domain = if domain.is_empty() {
        "company".to_owned()
    } else {
        domain
    };
    let data: Vec<Person> = (start..end)
        .map(|i| person(i + 1, &domain, inner.created_at))
        .collect();
    Ok(axum::Json(serde_json::json!({ "data": data, "has_more": end < total })).into_response())
}
