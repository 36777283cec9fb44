//! Projects and people on the Data Hub: searchable, filtered, sorted and
//! paged lists with where each row came from and where the local value
//! differs from the source's; a page per entity where admins edit a field
//! or reset it to the source (the same services as the JSON API); CSV
//! downloads of the lists with local and source columns.

use std::cmp::Ordering;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use super::kit::{Column, ConfirmPage, FormState, Table, TableQuery, is_confirmed};
use super::{Layout, parse_path_id, redirect_with_outcome, with_status};
use crate::app::AppState;
use crate::auth::extract::CurrentTenant;
use crate::entities::{Entity, EntityKind, Link, normalize, service, snake_case};
use crate::error::{AppError, AppResult};
use crate::input::{FormFields, SingleLine};
use crate::web::csv::CsvWriter;
use crate::web::extract::{ApiQuery, CsrfForm};

const PAGE_SIZE: usize = 50;

fn base(kind: EntityKind) -> &'static str {
    match kind {
        EntityKind::Project => "/data/projects",
        EntityKind::Person => "/data/people",
    }
}

fn title(kind: EntityKind) -> &'static str {
    match kind {
        EntityKind::Project => "Projects",
        EntityKind::Person => "People",
    }
}

fn label(column: &str) -> &'static str {
    match column {
        "number" => "Number",
        "name" => "Name",
        "client_name" => "Client",
        "status" | "active" => "Status",
        "start_date" => "Start date",
        "end_date" => "End date",
        "email" => "Email",
        "title" => "Title",
        _ => "Field",
    }
}

/// A column's value as text: the status columns of both kinds read
/// active / inactive.
fn text(column: &str, value: &Value) -> String {
    match (column, value) {
        (_, Value::Null) => String::new(),
        ("active", Value::Bool(b)) => if *b { "active" } else { "inactive" }.to_owned(),
        (_, Value::String(s)) => s.clone(),
        (_, other) => other.to_string(),
    }
}

/// One field: the local value beside the source's.
pub struct FieldView {
    pub column: &'static str,
    pub label: &'static str,
    pub local: String,
    /// The source's last value as the column would hold it; None when no
    /// source delivered this field.
    pub source: Option<String>,
    pub differs: bool,
    pub edited: bool,
}

fn fields(entity: &Entity) -> Vec<FieldView> {
    entity
        .kind
        .columns()
        .iter()
        .map(|column| {
            let local = entity.value(column);
            let state = entity.field_state.get(*column);
            let source = state.and_then(|s| s.source.as_ref()).map(|raw| {
                // Compared in the column's own form ("0" and "active" may
                // be the same status); a value that can't be one differs.
                normalize(entity.kind, column, raw).unwrap_or_else(|| raw.clone())
            });
            FieldView {
                column,
                label: label(column),
                local: text(column, local),
                differs: source.as_ref().is_some_and(|s| s != local),
                source: source.as_ref().map(|s| text(column, s)),
                edited: state.is_some_and(|s| s.edited),
            }
        })
        .collect()
}

/// Where a row came from.
pub struct SourceView {
    pub provider: String,
    pub object: String,
    pub external_id: String,
    pub status: &'static str,
}

fn sources(state: &AppState, links: &[Link]) -> Vec<SourceView> {
    links
        .iter()
        .map(|l| SourceView {
            provider: state
                .providers
                .get(&l.provider)
                .map_or_else(|| l.provider.clone(), |p| p.meta.display_name.clone()),
            object: l.object.clone(),
            external_id: l.external_id.clone(),
            status: if l.applied_deleted {
                "deleted at source"
            } else if l.inactive_by_source {
                "inactive at source"
            } else {
                "linked"
            },
        })
        .collect()
}

pub struct Row {
    pub id: Uuid,
    pub name: String,
    /// Number (projects) or email (people).
    pub key: String,
    pub active: bool,
    pub fields: Vec<FieldView>,
    pub sources: Vec<SourceView>,
    pub updated_at: time::OffsetDateTime,
}

impl Row {
    fn of(state: &AppState, entity: &Entity, links: &[Link]) -> Row {
        Row {
            id: entity.id,
            name: entity.text("name").unwrap_or_default(),
            key: entity.text(entity.kind.key_column()).unwrap_or_default(),
            active: entity.is_active(),
            fields: fields(entity),
            sources: sources(state, links),
            updated_at: entity.updated_at,
        }
    }

    pub fn field(&self, column: &str) -> Option<&FieldView> {
        self.fields.iter().find(|f| f.column == column)
    }

    /// Fields whose local value isn't the source's.
    pub fn differing(&self) -> usize {
        self.fields.iter().filter(|f| f.differs).count()
    }
}

/// `?q=&status=` besides the table's own parameters. Text goes through the
/// input checks (a control character is 422 naming `q`).
#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    q: Option<SingleLine>,
    #[serde(default)]
    status: Option<String>,
    #[serde(flatten)]
    table: TableQuery,
    #[serde(default)]
    format: Option<String>,
}

impl ListQuery {
    fn search(&self) -> String {
        self.q
            .as_deref()
            .map(|q| q.trim().to_lowercase())
            .unwrap_or_default()
    }

    /// "active", "inactive" or "" (all); anything else is all.
    fn status(&self) -> &'static str {
        match self.status.as_deref() {
            Some("active") => "active",
            Some("inactive") => "inactive",
            _ => "",
        }
    }

    fn keeps(&self, row: &Row) -> bool {
        let status_ok = match self.status() {
            "active" => row.active,
            "inactive" => !row.active,
            _ => true,
        };
        let q = self.search();
        status_ok
            && (q.is_empty()
                || row.fields.iter().any(|f| {
                    matches!(f.column, "name" | "number" | "email" | "client_name")
                        && f.local.to_lowercase().contains(&q)
                })
                || row
                    .sources
                    .iter()
                    .any(|s| s.external_id.to_lowercase().contains(&q)))
    }
}

fn by_name(a: &Row, b: &Row) -> Ordering {
    a.name.to_lowercase().cmp(&b.name.to_lowercase())
}
fn by_key(a: &Row, b: &Row) -> Ordering {
    a.key.to_lowercase().cmp(&b.key.to_lowercase())
}
fn by_status(a: &Row, b: &Row) -> Ordering {
    b.active.cmp(&a.active).then_with(|| by_name(a, b))
}
fn by_updated(a: &Row, b: &Row) -> Ordering {
    a.updated_at.cmp(&b.updated_at)
}
fn by_source(a: &Row, b: &Row) -> Ordering {
    let first = |r: &Row| r.sources.first().map(|s| s.provider.to_lowercase());
    first(a).cmp(&first(b)).then_with(|| by_name(a, b))
}

const COLUMNS: [Column<Row>; 5] = [
    ("name", by_name),
    ("key", by_key),
    ("status", by_status),
    ("source", by_source),
    ("updated", by_updated),
];

/// What an empty list should lead to.
pub enum Empty {
    /// Rows exist; the filters hide them all.
    Filtered,
    /// Nothing connected yet.
    Connect,
    /// Connected: sync, or set the object's mapping.
    Sync,
}

#[derive(Template, WebTemplate)]
#[template(path = "entities.html")]
pub struct ListPage {
    layout: Layout,
    kind: EntityKind,
    title: &'static str,
    base: &'static str,
    rows: Vec<Row>,
    table: Table,
    q: String,
    status: &'static str,
    is_admin: bool,
    empty: Option<Empty>,
    /// Labels of the columns shown besides name and key.
    detail_columns: Vec<&'static str>,
}

impl ListPage {
    fn key_label(&self) -> &'static str {
        label(self.kind.key_column())
    }

    fn csv_href(&self) -> String {
        let params = super::kit::query_suffix(&[("q", &self.q), ("status", self.status)]);
        match params.strip_prefix('&') {
            Some(p) => format!("{}.csv?{p}", self.base),
            None => format!("{}.csv", self.base),
        }
    }
}

async fn rows(state: &AppState, current: &CurrentTenant, kind: EntityKind) -> AppResult<Vec<Row>> {
    Ok(service::list_with_links(state, &current.tenant, kind)
        .await?
        .iter()
        .map(|(e, links)| Row::of(state, e, links))
        .collect())
}

async fn list(
    state: AppState,
    current: CurrentTenant,
    kind: EntityKind,
    query: ListQuery,
) -> AppResult<Response> {
    let all = rows(&state, &current, kind).await?;
    if query.format.as_deref() == Some("csv") {
        return csv(kind, all, &query);
    }
    let had_rows = !all.is_empty();
    let mut shown: Vec<Row> = all.into_iter().filter(|r| query.keeps(r)).collect();
    let q = query.search();
    let status = query.status();
    let table = Table::apply(&query.table, &COLUMNS, "name", PAGE_SIZE, &mut shown)
        .with_params(&[("q", &q), ("status", status)]);
    let empty = if !shown.is_empty() {
        None
    } else if had_rows {
        Some(Empty::Filtered)
    } else if has_connections(&state, &current).await? {
        Some(Empty::Sync)
    } else {
        Some(Empty::Connect)
    };
    let CurrentTenant {
        user,
        session,
        tenant,
    } = current;
    Ok(ListPage {
        layout: Layout::signed_in(&state, &session, &user, &tenant).await?,
        kind,
        title: title(kind),
        base: base(kind),
        rows: shown,
        table,
        q,
        status,
        is_admin: tenant.role.can_manage_members(),
        empty,
        detail_columns: kind
            .columns()
            .iter()
            .filter(|c| !matches!(**c, "name" | "number" | "email" | "status" | "active"))
            .copied()
            .collect(),
    }
    .into_response())
}

/// Whether the user has any connection to sync from.
async fn has_connections(state: &AppState, current: &CurrentTenant) -> AppResult<bool> {
    Ok(state
        .store
        .list_connections(current.tenant.workspace_id)
        .await?
        .iter()
        .any(|c| crate::connections::service::visible_to(c, &current.tenant)))
}

/// The whole filtered list (not one page), sorted as shown: per field the
/// local value and the source's, then where it came from.
fn csv(kind: EntityKind, mut all: Vec<Row>, query: &ListQuery) -> AppResult<Response> {
    all.retain(|r| query.keeps(r));
    Table::apply(&query.table, &COLUMNS, "name", usize::MAX, &mut all);
    let mut out = CsvWriter::new();
    let mut header = vec!["id".to_owned()];
    for column in kind.columns() {
        header.push((*column).to_owned());
        header.push(format!("source_{column}"));
    }
    header.extend(
        ["edited_fields", "providers", "external_ids", "link_status"]
            .iter()
            .map(|h| (*h).to_owned()),
    );
    out.row(&header);
    for row in &all {
        let mut cells = vec![row.id.to_string()];
        for f in &row.fields {
            cells.push(f.local.clone());
            cells.push(f.source.clone().unwrap_or_default());
        }
        let join = |f: &dyn Fn(&SourceView) -> &str| {
            row.sources.iter().map(f).collect::<Vec<_>>().join("; ")
        };
        cells.push(
            row.fields
                .iter()
                .filter(|f| f.edited)
                .map(|f| f.column)
                .collect::<Vec<_>>()
                .join("; "),
        );
        cells.push(join(&|s| s.provider.as_str()));
        cells.push(join(&|s| s.external_id.as_str()));
        cells.push(join(&|s| s.status));
        out.row(&cells);
    }
    Ok(out.into_download(&format!("{}.csv", kind.target())))
}

pub async fn projects(
    State(state): State<AppState>,
    current: CurrentTenant,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> AppResult<Response> {
    list(state, current, EntityKind::Project, query).await
}

pub async fn people(
    State(state): State<AppState>,
    current: CurrentTenant,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> AppResult<Response> {
    list(state, current, EntityKind::Person, query).await
}

pub async fn projects_csv(
    State(state): State<AppState>,
    current: CurrentTenant,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> AppResult<Response> {
    let all = rows(&state, &current, EntityKind::Project).await?;
    csv(EntityKind::Project, all, &query)
}

pub async fn people_csv(
    State(state): State<AppState>,
    current: CurrentTenant,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> AppResult<Response> {
    let all = rows(&state, &current, EntityKind::Person).await?;
    csv(EntityKind::Person, all, &query)
}

#[derive(Template, WebTemplate)]
#[template(path = "entity.html")]
pub struct EntityPage {
    layout: Layout,
    kind: EntityKind,
    title: &'static str,
    base: &'static str,
    row: Row,
    is_admin: bool,
    /// The edit form: current values, or what was typed with its errors.
    form: FormState,
}

impl EntityPage {
    fn is_status(&self, column: &str) -> bool {
        column == self.kind.status_column()
    }

    fn is_date(&self, column: &str) -> bool {
        column.ends_with("_date")
    }
}

async fn entity_page(
    state: &AppState,
    current: CurrentTenant,
    kind: EntityKind,
    id: Uuid,
    form: Option<FormState>,
) -> AppResult<EntityPage> {
    let (entity, links) = service::get_with_links(state, &current.tenant, kind, id).await?;
    let row = Row::of(state, &entity, &links);
    let form = form.unwrap_or_else(|| {
        FormState::with_values(row.fields.iter().map(|f| (f.column, f.local.as_str())))
    });
    let CurrentTenant {
        user,
        session,
        tenant,
    } = current;
    Ok(EntityPage {
        layout: Layout::signed_in(state, &session, &user, &tenant).await?,
        kind,
        title: title(kind),
        base: base(kind),
        row,
        is_admin: tenant.role.can_manage_members(),
        form,
    })
}

async fn show(
    state: AppState,
    current: CurrentTenant,
    kind: EntityKind,
    id: String,
) -> AppResult<Response> {
    let id = parse_path_id(&id, kind.noun())?;
    Ok(entity_page(&state, current, kind, id, None)
        .await?
        .into_response())
}

pub async fn project(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path(id): Path<String>,
) -> AppResult<Response> {
    show(state, current, EntityKind::Project, id).await
}

pub async fn person(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path(id): Path<String>,
) -> AppResult<Response> {
    show(state, current, EntityKind::Person, id).await
}

/// The edit form's fields as the API's JSON changes: every column the
/// form carries (an empty text clears it; the status is a choice).
fn changes(kind: EntityKind, form: &FormFields) -> AppResult<Vec<service::Change>> {
    let mut body = Vec::new();
    for column in kind.columns() {
        let Some(raw) = form.first(column) else {
            continue;
        };
        let value = match *column {
            "active" => match raw.as_str() {
                "active" => Value::Bool(true),
                "inactive" => Value::Bool(false),
                _ => {
                    return Err(AppError::validation(
                        "active",
                        "expected active or inactive",
                    ));
                }
            },
            // An empty field clears the column, as in the API (a date
            // input left blank posts "", which no date parses).
            _ if raw.trim().is_empty() => Value::Null,
            _ => Value::from(raw.as_str()),
        };
        body.push((*column, value));
    }
    Ok(body)
}

async fn edit(
    state: AppState,
    current: CurrentTenant,
    kind: EntityKind,
    id: String,
    form: CsrfForm<FormFields>,
) -> AppResult<Response> {
    current.tenant.require_admin("edit projects and people")?;
    let id = parse_path_id(&id, kind.noun())?;
    let back = format!("{}/{id}", base(kind));
    let outcome = match changes(kind, &form.form) {
        Ok(body) => service::update(&state, &current.tenant, kind, id, body).await,
        Err(e) => Err(e),
    };
    match outcome {
        Ok(_) => redirect_with_outcome(&form.session, &back, Ok("Saved.".to_owned())).await,
        Err(err @ AppError::Validation { .. }) => {
            // The form again with what was typed and the error beside its
            // field (the service names camelCase fields, the form snake).
            let typed: Vec<(&str, &str)> = kind
                .columns()
                .iter()
                .filter_map(|c| form.form.first(c).map(|v| (*c, v.as_str())))
                .collect();
            let err = match err {
                AppError::Validation {
                    field: Some(f),
                    message,
                } => AppError::validation(snake_case(&f), message),
                other => other,
            };
            let state_of = FormState::with_values(typed).with_error(&err, kind.columns());
            let page = entity_page(&state, current, kind, id, Some(state_of)).await?;
            Ok(with_status(StatusCode::UNPROCESSABLE_ENTITY, page))
        }
        Err(err) => redirect_with_outcome(&form.session, &back, Err(err)).await,
    }
}

pub async fn edit_project(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path(id): Path<String>,
    form: CsrfForm<FormFields>,
) -> AppResult<Response> {
    edit(state, current, EntityKind::Project, id, form).await
}

pub async fn edit_person(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path(id): Path<String>,
    form: CsrfForm<FormFields>,
) -> AppResult<Response> {
    edit(state, current, EntityKind::Person, id, form).await
}

/// Resets a field to the source value after a confirmation: the local edit
/// is lost.
async fn reset(
    state: AppState,
    current: CurrentTenant,
    kind: EntityKind,
    id: String,
    form: CsrfForm<FormFields>,
) -> AppResult<Response> {
    current.tenant.require_admin("edit projects and people")?;
    let id = parse_path_id(&id, kind.noun())?;
    let back = format!("{}/{id}", base(kind));
    let field = form
        .form
        .first("field")
        .map(|f| f.as_str().to_owned())
        .unwrap_or_default();
    let column = kind.column(&snake_case(&field)).ok_or_else(|| {
        AppError::validation("field", format!("not a field of {}", kind.target()))
    })?;
    if !is_confirmed(form.form.first("confirm").map(|v| v.as_str())) {
        let (entity, _) = service::get_with_links(&state, &current.tenant, kind, id).await?;
        let name = entity.text("name").unwrap_or_default();
        let layout =
            Layout::signed_in(&state, &form.session, &current.user, &current.tenant).await?;
        let message = format!(
            "The {} of {name} takes the source's value again and follows the source from now on; \
             the value edited here is lost.",
            label(column).to_lowercase()
        );
        let page = ConfirmPage::new(
            layout,
            "Reset to source",
            message,
            format!("{}/{id}/reset", base(kind)),
            back,
        )
        .hidden("field", column);
        return Ok(page.render());
    }
    let outcome = service::reset_field(&state, &current.tenant, kind, id, column)
        .await
        .map(|_| format!("{} reset to the source's value.", label(column)));
    redirect_with_outcome(&form.session, &back, outcome).await
}

pub async fn reset_project(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path(id): Path<String>,
    form: CsrfForm<FormFields>,
) -> AppResult<Response> {
    reset(state, current, EntityKind::Project, id, form).await
}

pub async fn reset_person(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path(id): Path<String>,
    form: CsrfForm<FormFields>,
) -> AppResult<Response> {
    reset(state, current, EntityKind::Person, id, form).await
}

/// A column's heading, for templates.
pub fn column_label(column: &str) -> &'static str {
    label(column)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn local_and_source_values_compare_in_the_columns_form() {
        let mut e = Entity::new(
            EntityKind::Project,
            "Local name",
            time::OffsetDateTime::UNIX_EPOCH,
        );
        e.field_state.insert(
            "name".into(),
            serde_json::from_value(json!({"source": " Source name ", "edited": true})).unwrap(),
        );
        // BQE-style 0 is "active": the same as the local status.
        e.field_state.insert(
            "status".into(),
            serde_json::from_value(json!({"source": 0})).unwrap(),
        );
        let f = fields(&e);
        let name = f.iter().find(|f| f.column == "name").unwrap();
        assert!(name.differs && name.edited);
        assert_eq!(name.source.as_deref(), Some("Source name"));
        let status = f.iter().find(|f| f.column == "status").unwrap();
        assert!(!status.differs, "0 and active are one status");
        let number = f.iter().find(|f| f.column == "number").unwrap();
        assert!(number.source.is_none() && !number.differs);

        let mut p = Entity::new(EntityKind::Person, "P", time::OffsetDateTime::UNIX_EPOCH);
        p.field_state.insert(
            "active".into(),
            serde_json::from_value(json!({"source": "inactive"})).unwrap(),
        );
        let f = fields(&p);
        let active = f.iter().find(|f| f.column == "active").unwrap();
        assert_eq!(
            (active.local.as_str(), active.source.as_deref()),
            ("active", Some("inactive"))
        );
        assert!(active.differs);
    }
}
