//! The page kit's view types: what the askama macros in `templates/macros/`
//! read. Forms keep typed values and inline errors, tables sort and page
//! through links (`?page=&sort=&dir=`), destructive actions ask first.

use askama::Template;
use askama_web::WebTemplate;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::Layout;
use crate::error::AppError;

/// A form as the page shows it: the values typed (never secrets: the macros
/// don't echo password fields, and handlers don't keep them) and an error
/// next to the field it is about.
#[derive(Debug, Default, Clone)]
pub struct FormState {
    values: Vec<(String, String)>,
    errors: Vec<(String, String)>,
    /// An error that names no field of this form.
    pub message: Option<String>,
}

impl FormState {
    pub fn with_values<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> FormState {
        FormState {
            values: pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            ..FormState::default()
        }
    }

    /// The values as posted, several per name allowed (checkbox lists).
    pub fn from_pairs(values: Vec<(String, String)>) -> FormState {
        FormState {
            values,
            ..FormState::default()
        }
    }

    /// Puts `message` next to `field` (a field the caller knows the form has).
    pub fn with_field_error(mut self, field: &str, message: impl Into<String>) -> FormState {
        self.errors.push((field.to_owned(), message.into()));
        self
    }

    /// Whether `name` was given `value` (a checked box of a list).
    pub fn has_value(&self, name: &str, value: &str) -> bool {
        self.values.iter().any(|(k, v)| k == name && v == value)
    }

    /// Puts `err` next to its field when the form has one, else above it.
    pub fn with_error(mut self, err: &AppError, fields: &[&str]) -> FormState {
        let field = match err {
            AppError::Validation { field, .. }
            | AppError::BadRequest { field, .. }
            | AppError::Conflict { field, .. } => field.as_deref(),
            _ => None,
        };
        match field.filter(|f| fields.contains(f)) {
            Some(f) => self.errors.push((f.to_owned(), err.to_string())),
            None => self.message = Some(err.to_string()),
        }
        self
    }

    /// Puts `err` next to the input its field (a JSON pointer, for forms
    /// built from a body) names, as `input_for` maps it; else above the form.
    pub fn with_error_at(
        mut self,
        err: &AppError,
        input_for: impl Fn(&str) -> Option<String>,
    ) -> FormState {
        let (pointer, message) = match err {
            AppError::Validation { field, message }
            | AppError::BadRequest { field, message }
            | AppError::Conflict { field, message } => (field.as_deref(), message.clone()),
            other => (None, other.to_string()),
        };
        match pointer.and_then(input_for) {
            Some(name) => self.errors.push((name, message)),
            None => self.message = Some(message),
        }
        self
    }

    pub fn value(&self, name: &str) -> &str {
        self.values
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }

    pub fn error(&self, name: &str) -> Option<&str> {
        self.errors
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn has_error(&self, name: &str) -> bool {
        self.error(name).is_some()
    }
}

/// A sortable column: its `sort` key and how two rows compare by it.
pub type Column<T> = (&'static str, fn(&T, &T) -> std::cmp::Ordering);

/// Equal strings, for templates comparing `&&str` with `&str` (selects).
pub fn same(a: &str, b: &str) -> bool {
    a == b
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    Asc,
    Desc,
}

impl Dir {
    pub fn as_str(self) -> &'static str {
        match self {
            Dir::Asc => "asc",
            Dir::Desc => "desc",
        }
    }
}

/// `?page=&sort=&dir=` as typed: anything unknown falls back to defaults,
/// so a hand-edited link never errors.
#[derive(Debug, Default, Deserialize)]
pub struct TableQuery {
    pub page: Option<String>,
    pub sort: Option<String>,
    pub dir: Option<String>,
}

/// One sortable, paged table: the column it is sorted by, the page, and
/// the links to change either.
#[derive(Debug, Clone)]
pub struct Table {
    pub sort: &'static str,
    pub dir: Dir,
    pub page: usize,
    pub pages: usize,
    pub total: usize,
    pub first: usize,
    pub last: usize,
    /// Other query parameters (search, filters) the links keep, encoded.
    params: String,
}

impl Table {
    /// Sorts `rows` by one of `columns` (key, comparator) and keeps one page.
    pub fn apply<T>(
        query: &TableQuery,
        columns: &[Column<T>],
        default_sort: &'static str,
        page_size: usize,
        rows: &mut Vec<T>,
    ) -> Table {
        let (sort, compare) = columns
            .iter()
            .find(|(k, _)| Some(*k) == query.sort.as_deref())
            .or_else(|| columns.iter().find(|(k, _)| *k == default_sort))
            .or(columns.first())
            .map_or((default_sort, None), |(k, f)| (*k, Some(*f)));
        let dir = match query.dir.as_deref() {
            Some("desc") => Dir::Desc,
            _ => Dir::Asc,
        };
        if let Some(compare) = compare {
            rows.sort_by(|a, b| match dir {
                Dir::Asc => compare(a, b),
                Dir::Desc => compare(b, a),
            });
        }
        let page_size = page_size.max(1);
        let total = rows.len();
        let pages = total.div_ceil(page_size).max(1);
        let page = query
            .page
            .as_deref()
            .and_then(|p| p.parse::<usize>().ok())
            .unwrap_or(1)
            .clamp(1, pages);
        let start = (page - 1).saturating_mul(page_size).min(total);
        let end = start.saturating_add(page_size).min(total);
        rows.truncate(end);
        rows.drain(..start);
        Table {
            sort,
            dir,
            page,
            pages,
            total,
            first: if total == 0 { 0 } else { start + 1 },
            last: end,
            params: String::new(),
        }
    }

    /// A table the database pages (`LIMIT`/`OFFSET`): only the page number
    /// comes from the query; the order is fixed (`sort`, descending).
    pub fn paged(query: &TableQuery, sort: &'static str, page_size: usize, total: usize) -> Table {
        let page_size = page_size.max(1);
        let pages = total.div_ceil(page_size).max(1);
        let page = query
            .page
            .as_deref()
            .and_then(|p| p.parse::<usize>().ok())
            .unwrap_or(1)
            .clamp(1, pages);
        let start = (page - 1).saturating_mul(page_size).min(total);
        let end = start.saturating_add(page_size).min(total);
        Table {
            sort,
            dir: Dir::Desc,
            page,
            pages,
            total,
            first: if total == 0 { 0 } else { start + 1 },
            last: end,
            params: String::new(),
        }
    }

    /// Rows to skip for this page.
    pub fn offset(&self) -> usize {
        self.first.saturating_sub(1)
    }

    /// Keeps `params` (empty values left out) in the sort and page links,
    /// so sorting a filtered list stays filtered.
    pub fn with_params(mut self, params: &[(&str, &str)]) -> Table {
        self.params = query_suffix(params);
        self
    }

    /// The same parameters for another link (a CSV download of the list).
    pub fn params(&self) -> &str {
        &self.params
    }

    fn href(&self, sort: &str, dir: Dir, page: usize) -> String {
        format!(
            "?page={page}&sort={sort}&dir={}{}",
            dir.as_str(),
            self.params
        )
    }

    /// Sorting by a column starts at page 1; the current column flips.
    pub fn sort_href(&self, column: &str) -> String {
        let dir = if column == self.sort && self.dir == Dir::Asc {
            Dir::Desc
        } else {
            Dir::Asc
        };
        self.href(column, dir, 1)
    }

    pub fn aria_sort(&self, column: &str) -> &'static str {
        match (column == self.sort, self.dir) {
            (false, _) => "none",
            (true, Dir::Asc) => "ascending",
            (true, Dir::Desc) => "descending",
        }
    }

    pub fn arrow(&self, column: &str) -> &'static str {
        match (column == self.sort, self.dir) {
            (false, _) => "",
            (true, Dir::Asc) => "▲",
            (true, Dir::Desc) => "▼",
        }
    }

    pub fn page_href(&self, page: usize) -> String {
        self.href(self.sort, self.dir, page)
    }

    pub fn has_prev(&self) -> bool {
        self.page > 1
    }

    pub fn has_next(&self) -> bool {
        self.page < self.pages
    }

    pub fn prev(&self) -> usize {
        self.page.saturating_sub(1).max(1)
    }

    pub fn next(&self) -> usize {
        self.page.saturating_add(1).min(self.pages)
    }
}

/// `&name=value` for each non-empty value, percent-encoded.
pub fn query_suffix(params: &[(&str, &str)]) -> String {
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
    params
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| {
            format!(
                "&{}={}",
                utf8_percent_encode(k, NON_ALPHANUMERIC),
                utf8_percent_encode(v, NON_ALPHANUMERIC)
            )
        })
        .collect()
}

/// The colour of a status badge, from the status word itself, so every
/// page shows CONNECTED, succeeded, REVOKED … alike.
pub fn badge_class(status: &str) -> &'static str {
    match status.to_ascii_lowercase().replace(' ', "_").as_str() {
        "connected" | "succeeded" | "active" | "ok" | "delivered" => "ok",
        "error" | "needs_reauth" | "failed" | "sync_failed" => "bad",
        "pending" | "queued" | "running" | "waiting_external" | "retrying" => "pending",
        _ => "off",
    }
}

/// The `confirm` field a destructive form carries once the person said yes
/// (the confirmation page's button, or the script's dialog).
#[derive(Debug, Default, Deserialize)]
pub struct Confirmation {
    #[serde(default)]
    pub confirm: Option<String>,
}

impl Confirmation {
    pub fn given(&self) -> bool {
        is_confirmed(self.confirm.as_deref())
    }
}

pub fn is_confirmed(value: Option<&str>) -> bool {
    value == Some("yes")
}

/// The page a destructive form lands on without `confirm=yes`: it says what
/// will happen and repeats the form with the confirmation, so the action
/// needs a second, deliberate submit without JavaScript.
#[derive(Template, WebTemplate)]
#[template(path = "confirm.html")]
pub struct ConfirmPage {
    pub layout: Layout,
    pub title: String,
    pub message: String,
    pub action: String,
    pub button: String,
    pub cancel_href: String,
    /// Extra fields of the original form (ids), carried over as they were.
    pub hidden: Vec<(String, String)>,
}

impl ConfirmPage {
    pub fn new(
        layout: Layout,
        title: impl Into<String>,
        message: impl Into<String>,
        action: impl Into<String>,
        cancel_href: impl Into<String>,
    ) -> ConfirmPage {
        let title = title.into();
        ConfirmPage {
            layout,
            button: title.clone(),
            title,
            message: message.into(),
            action: action.into(),
            cancel_href: cancel_href.into(),
            hidden: Vec::new(),
        }
    }

    pub fn hidden(mut self, name: &str, value: impl Into<String>) -> ConfirmPage {
        self.hidden.push((name.to_owned(), value.into()));
        self
    }

    pub fn render(self) -> Response {
        self.into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn by_value(a: &u32, b: &u32) -> std::cmp::Ordering {
        a.cmp(b)
    }

    fn query(page: &str, sort: &str, dir: &str) -> TableQuery {
        TableQuery {
            page: Some(page.into()),
            sort: Some(sort.into()),
            dir: Some(dir.into()),
        }
    }

    #[test]
    fn tables_sort_and_page() {
        let columns: [Column<u32>; 1] = [("value", by_value)];
        let mut rows: Vec<u32> = (1..=25).rev().collect();
        let t = Table::apply(
            &query("2", "value", "asc"),
            &columns,
            "value",
            10,
            &mut rows,
        );
        assert_eq!(rows, (11..=20).collect::<Vec<_>>());
        assert_eq!(
            (t.page, t.pages, t.total, t.first, t.last),
            (2, 3, 25, 11, 20)
        );
        assert_eq!(t.page_href(3), "?page=3&sort=value&dir=asc");
        assert_eq!(t.sort_href("value"), "?page=1&sort=value&dir=desc");
        let t = t.with_params(&[("q", "a&b c"), ("status", "")]);
        assert_eq!(t.page_href(1), "?page=1&sort=value&dir=asc&q=a%26b%20c");

        let mut rows: Vec<u32> = (1..=25).collect();
        let t = Table::apply(
            &query("99", "nope", "desc"),
            &columns,
            "value",
            10,
            &mut rows,
        );
        assert_eq!(t.page, 3);
        assert_eq!(rows, vec![5, 4, 3, 2, 1]);

        let mut empty: Vec<u32> = Vec::new();
        let t = Table::apply(&query("x", "", ""), &columns, "value", 10, &mut empty);
        assert_eq!((t.page, t.pages, t.first, t.last), (1, 1, 0, 0));
    }

    #[test]
    fn forms_put_errors_next_to_their_field() {
        let err = AppError::validation("time_zone", "unknown time zone");
        let form =
            FormState::with_values([("time_zone", "Mars/Base")]).with_error(&err, &["time_zone"]);
        assert_eq!(form.value("time_zone"), "Mars/Base");
        assert_eq!(form.error("time_zone"), Some("unknown time zone"));
        let other = FormState::default().with_error(&err, &["name"]);
        assert_eq!(other.message.as_deref(), Some("unknown time zone"));
    }

    #[test]
    fn badges() {
        assert_eq!(badge_class("CONNECTED"), "ok");
        assert_eq!(badge_class("NEEDS_REAUTH"), "bad");
        assert_eq!(badge_class("waiting external"), "pending");
        assert_eq!(badge_class("REVOKED"), "off");
    }
}
