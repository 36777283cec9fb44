//! Settings → Audit log (admins): who did what, filtered by actor, action
//! and days, paged by the database, and downloadable as CSV with the same
//! filters.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use uuid::Uuid;

use super::jobs::day_range;
use super::kit::{FormState, Table, TableQuery};
use super::{Layout, with_status};
use crate::app::AppState;
use crate::audit::{AuditFilter, AuditRecord};
use crate::auth::extract::CurrentTenant;
use crate::error::{AppError, AppResult};
use crate::input::SingleLine;
use crate::tenancy::Member;
use crate::tenancy::zone::Zone;
use crate::web::csv::CsvWriter;
use crate::web::extract::ApiQuery;

const PAGE_SIZE: usize = 50;
/// Rows in one CSV download; narrower filters reach older entries.
const CSV_MOST: i64 = 10_000;
const FILTERS: [&str; 4] = ["actor", "action", "from", "to"];

/// `?actor=&action=&from=&to=&page=`.
#[derive(Debug, Default, Deserialize)]
pub struct AuditQuery {
    page: Option<SingleLine>,
    actor: Option<SingleLine>,
    action: Option<SingleLine>,
    from: Option<SingleLine>,
    to: Option<SingleLine>,
}

impl AuditQuery {
    fn get(&self, name: &str) -> &str {
        let value = match name {
            "actor" => &self.actor,
            "action" => &self.action,
            "from" => &self.from,
            "to" => &self.to,
            _ => &None,
        };
        value.as_deref().map_or("", str::trim)
    }
}

pub struct Choice {
    pub value: String,
    pub label: String,
}

pub struct AuditRow {
    pub at: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub details: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "audit.html")]
pub struct AuditPage {
    layout: Layout,
    workspace_name: String,
    rows: Vec<AuditRow>,
    table: Table,
    filters: FormState,
    actors: Vec<Choice>,
    actions: Vec<String>,
    filtered: bool,
}

impl AuditPage {
    fn selected(&self, name: &str, value: &str) -> bool {
        self.filters.value(name) == value
    }

    fn csv_href(&self) -> String {
        // The table's parameters start with `&`; the CSV link has no page.
        let params = self.table.params();
        match params.strip_prefix('&') {
            Some(rest) => format!("/settings/audit.csv?{rest}"),
            None => "/settings/audit.csv".to_owned(),
        }
    }
}

/// The query's filters, checked; errors name the parameter. `actor` must
/// be a member of this workspace (or a former one whose id is in the log).
fn filter<'a>(zone: &Zone, q: &'a AuditQuery) -> AppResult<AuditFilter<'a>> {
    let actor = match q.get("actor") {
        "" => None,
        raw => Some(
            Uuid::parse_str(raw)
                .map_err(|_| AppError::validation("actor", "not a member of this workspace"))?,
        ),
    };
    let action = Some(q.get("action")).filter(|a| !a.is_empty());
    if action.is_some_and(|a| a.len() > 100) {
        return Err(AppError::validation("action", "at most 100 characters"));
    }
    let (from, until) = day_range(zone, q.get("from"), q.get("to"))?;
    Ok(AuditFilter {
        actor,
        action,
        from,
        until,
    })
}

fn actor_name(members: &[Member], id: Option<Uuid>) -> String {
    match id {
        None => "system".to_owned(),
        Some(id) => members
            .iter()
            .find(|m| m.user_id == id)
            .map_or_else(|| "former member".to_owned(), |m| m.name.clone()),
    }
}

fn target_of(r: &AuditRecord) -> String {
    match (&r.target_type, &r.target_id) {
        (Some(t), Some(id)) => format!("{t} {id}"),
        (Some(t), None) => t.clone(),
        _ => String::new(),
    }
}

fn details_of(r: &AuditRecord) -> String {
    match &r.details.0 {
        serde_json::Value::Object(m) if m.is_empty() => String::new(),
        other => other.to_string(),
    }
}

pub async fn page(
    State(state): State<AppState>,
    current: CurrentTenant,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> AppResult<Response> {
    current.tenant.require_admin("read the audit log")?;
    let CurrentTenant {
        user,
        session,
        tenant,
    } = current;
    let ws = tenant.workspace_id;
    let layout = Layout::signed_in(&state, &session, &user, &tenant).await?;
    let members = state.store.list_members(ws).await?;
    let typed = FormState::with_values(FILTERS.iter().map(|f| (*f, q.get(f))));
    let table_query = TableQuery {
        page: q.page.as_deref().map(String::from),
        sort: None,
        dir: None,
    };
    let (records, table, filters, status) = match filter(&layout.zone, &q) {
        Ok(f) => {
            let wanted = Table::paged(&table_query, "at", PAGE_SIZE, usize::MAX);
            let (mut records, total) = search(&state, ws, &f, PAGE_SIZE, wanted.offset()).await?;
            let total = usize::try_from(total).unwrap_or(0);
            let table = Table::paged(&table_query, "at", PAGE_SIZE, total);
            // A page past the end shows the last one.
            if table.offset() != wanted.offset() {
                records = search(&state, ws, &f, PAGE_SIZE, table.offset()).await?.0;
            }
            (records, table, typed, None)
        }
        Err(err @ AppError::Validation { .. }) => {
            let status = err.status();
            let table = Table::paged(&table_query, "at", PAGE_SIZE, 0);
            (
                Vec::new(),
                table,
                typed.with_error(&err, &FILTERS),
                Some(status),
            )
        }
        Err(err) => return Err(err),
    };
    let table = table.with_params(&FILTERS.map(|f| (f, filters.value(f))));
    let rows = records
        .iter()
        .map(|r| AuditRow {
            at: layout.zone.at(&r.created_at),
            actor: actor_name(&members, r.actor_user_id),
            action: r.action.clone(),
            target: target_of(r),
            details: crate::input::excerpt(&details_of(r), 200),
        })
        .collect();
    let page = AuditPage {
        filtered: FILTERS.iter().any(|f| !q.get(f).is_empty()),
        workspace_name: tenant.workspace_name.clone(),
        actors: members
            .iter()
            .map(|m| Choice {
                value: m.user_id.to_string(),
                label: format!("{} ({})", m.name, m.email),
            })
            .collect(),
        actions: state.store.audit_actions(ws).await?,
        layout,
        rows,
        table,
        filters,
    };
    Ok(match status {
        Some(status) => with_status(status, page),
        None => page.into_response(),
    })
}

async fn search(
    state: &AppState,
    ws: crate::tenancy::WorkspaceId,
    f: &AuditFilter<'_>,
    limit: usize,
    offset: usize,
) -> AppResult<(Vec<AuditRecord>, i64)> {
    Ok(state
        .store
        .search_audit(
            ws,
            f,
            i64::try_from(limit).unwrap_or(i64::MAX),
            i64::try_from(offset).unwrap_or(i64::MAX),
        )
        .await?)
}

/// The filtered log as CSV (times in the workspace's zone, and as UTC
/// RFC 3339 for machines). Bad filters: 422 naming the parameter.
pub async fn csv(
    State(state): State<AppState>,
    current: CurrentTenant,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> AppResult<Response> {
    current.tenant.require_admin("read the audit log")?;
    let ws = current.tenant.workspace_id;
    let zone = crate::tenancy::service::time_zone(&state.store, ws).await?;
    let f = filter(&zone, &q)?;
    let members = state.store.list_members(ws).await?;
    let (records, _) = state.store.search_audit(ws, &f, CSV_MOST, 0).await?;
    let mut out = CsvWriter::new();
    out.row([
        "time",
        "time_utc",
        "actor",
        "actor_id",
        "action",
        "target_type",
        "target_id",
        "details",
    ]);
    for r in &records {
        out.row([
            zone.at(&r.created_at),
            r.created_at
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            actor_name(&members, r.actor_user_id),
            r.actor_user_id.map(|u| u.to_string()).unwrap_or_default(),
            r.action.clone(),
            r.target_type.clone().unwrap_or_default(),
            r.target_id.clone().unwrap_or_default(),
            details_of(r),
        ]);
    }
    Ok(out.into_download("audit-log.csv"))
}
