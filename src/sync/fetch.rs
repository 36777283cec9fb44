//! The metadata-driven page reader: from an object's provider.json entry,
//! which request comes next and what a response means. Pure functions, no
//! I/O — the engine sends the requests — so every strategy is tested
//! against recorded provider responses.
//!
//! Stop conditions lean towards reading too much rather than too little:
//! offset and page-number strategies stop on an empty page (or when the
//! provider says there is no more), not on a short one, because providers
//! cap page sizes silently and a short page is no proof of the end. Every
//! read also has a page cap, and a cursor that repeats is an error, so a
//! misbehaving provider can't loop a job forever.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::providers::ObjectMeta;

/// Where a read is: serialised into the job checkpoint, so a killed job
/// resumes at the page it was on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "at", rename_all = "snake_case")]
pub enum Position {
    Start,
    Offset { offset: u64 },
    Page { page: u64 },
    Cursor { cursor: String },
    Url { url: String },
    Done,
}

/// What is being read: one object, for one account, maybe since a time.
#[derive(Debug, Clone)]
pub struct ReadSpec {
    pub base_url: String,
    pub account_id: Option<String>,
    /// Formatted per the object's `deltaFormat`, for delta reads.
    pub since: Option<String>,
    pub until: Option<String>,
    /// Apply the object's server-side `parentOnly` filter.
    pub parent_only: bool,
    /// Page size to ask for (capped by `maxPageSize`).
    pub page_size: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PageRequest {
    pub method: String,
    /// Absolute URL without the query string.
    pub url: String,
    pub query: Vec<(String, String)>,
    pub body: Option<Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ParsedPage {
    pub records: Vec<Value>,
    pub next: Position,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FetchError {
    #[error("the response has no record list at {0:?}")]
    NoRecords(String),
    #[error("the provider returned the same cursor twice; stopping to avoid a loop")]
    CursorLoop,
    #[error("metadata for this object lacks {0}")]
    Metadata(&'static str),
    #[error("a value for {0} can't be a path segment (empty, \".\" or \"..\")")]
    PathValue(&'static str),
    #[error(
        "the provider's next-page link points to {0}, not to the provider's own host; \
         it was not followed (the connection's token would have gone with it)"
    )]
    ForeignNextLink(String),
}

/// Bytes kept as they are in a path segment: RFC 3986 unreserved plus the
/// sub-delimiters no server reads as structure (OneDrive drive ids carry
/// `!`), so `/`, `?`, `#`, `:`, `;`, `%` and spaces in a value can't change
/// the path.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'!')
    .remove(b'$')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')')
    .remove(b'*')
    .remove(b',')
    .remove(b'=');

/// A value (an account id such as Search Console's `sc-domain:example.com`
/// or `https://example.com/`) as one path segment. Dot segments would still
/// move up the path however they are encoded, so they are refused.
pub fn encode_path_segment(value: &str, placeholder: &'static str) -> Result<String, FetchError> {
    if matches!(value, "" | "." | "..") {
        return Err(FetchError::PathValue(placeholder));
    }
    Ok(percent_encoding::utf8_percent_encode(value, SEGMENT).to_string())
}

fn p_str<'a>(pagination: &'a Value, key: &str) -> Option<&'a str> {
    pagination.get(key).and_then(Value::as_str)
}

fn p_u64(pagination: &Value, key: &str) -> Option<u64> {
    pagination.get(key).and_then(Value::as_u64)
}

/// Object-level extra keys (`query`, `body`, `deltaQueryTemplate`, …) are
/// forward-compatible metadata, read from the raw object.
pub struct ObjectReader<'a> {
    pub object: &'a ObjectMeta,
    pub raw: &'a Value,
}

impl<'a> ObjectReader<'a> {
    pub fn new(object: &'a ObjectMeta, raw_provider: &'a Value) -> Self {
        let raw = raw_provider
            .get("objects")
            .and_then(Value::as_array)
            .and_then(|objects| {
                objects
                    .iter()
                    .find(|o| o.get("key").and_then(Value::as_str) == Some(&object.key))
            })
            .unwrap_or(&Value::Null);
        ObjectReader { object, raw }
    }

    fn pagination(&self) -> &Value {
        &self.object.pagination
    }

    fn strategy(&self) -> &str {
        p_str(self.pagination(), "strategy").unwrap_or("none")
    }

    fn params_in_body(&self) -> bool {
        p_str(self.pagination(), "paramsIn") == Some("body")
    }

    fn page_size(&self, spec: &ReadSpec) -> Option<u64> {
        let wanted = spec
            .page_size
            .or_else(|| p_u64(self.pagination(), "pageSize"))?;
        Some(match p_u64(self.pagination(), "maxPageSize") {
            Some(max) => wanted.min(max),
            None => wanted,
        })
    }

    /// `fill` for the endpoint: every substituted value is one encoded
    /// path segment.
    fn fill_path(&self, template: &str, spec: &ReadSpec) -> Result<String, FetchError> {
        let mut out = template.to_owned();
        let values = [
            ("{accountId}", spec.account_id.as_deref()),
            ("{companyId}", spec.account_id.as_deref()),
            ("{since}", spec.since.as_deref()),
            ("{until}", spec.until.as_deref()),
        ];
        for (placeholder, value) in values {
            if let Some(value) = value
                && out.contains(placeholder)
            {
                out = out.replace(placeholder, &encode_path_segment(value, placeholder)?);
            }
        }
        Ok(out)
    }

    /// Substitutes placeholders in query and body values, which are encoded
    /// later as what they are.
    fn fill(&self, template: &str, spec: &ReadSpec) -> String {
        let mut out = template.to_owned();
        if let Some(account) = &spec.account_id {
            out = out
                .replace("{accountId}", account)
                .replace("{companyId}", account);
        }
        if let Some(since) = &spec.since {
            out = out.replace("{since}", since);
        }
        if let Some(until) = &spec.until {
            out = out.replace("{until}", until);
        }
        out
    }

    fn fill_value(&self, value: &Value, spec: &ReadSpec) -> Value {
        match value {
            Value::String(s) => Value::String(self.fill(s, spec)),
            Value::Array(items) => {
                Value::Array(items.iter().map(|v| self.fill_value(v, spec)).collect())
            }
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), self.fill_value(v, spec)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    /// Whether a delta bound reaches the provider (a delta parameter, or a
    /// `{since}` in the endpoint, query or body). Objects whose delta works
    /// otherwise (cursors kept by the provider) are read in full, so
    /// vanished records are still noticed.
    pub fn sends_since(&self) -> bool {
        self.object.raw_delta_param(self.raw).is_some()
            || self.object.endpoint.contains("{since}")
            || ["query", "body"].iter().any(|k| {
                self.raw
                    .get(*k)
                    .is_some_and(|v| v.to_string().contains("{since}"))
            })
    }

    /// The request for `position` (which must not be `Done`).
    pub fn request(&self, spec: &ReadSpec, position: &Position) -> Result<PageRequest, FetchError> {
        if let Position::Url { url } = position {
            // A provider-given next link is used as given (it carries its own
            // state), but only on the object's own host: the token goes with it.
            return Ok(PageRequest {
                method: self.object.method.clone(),
                url: self.same_host_link(spec, url)?,
                query: Vec::new(),
                body: None,
            });
        }
        let pagination = self.pagination();
        let mut endpoint = self.object.endpoint.clone();
        let continuing = matches!(position, Position::Cursor { .. });
        if continuing && let Some(cont) = p_str(pagination, "continueEndpoint") {
            endpoint = cont.to_owned();
        }
        let url = format!(
            "{}{}",
            spec.base_url.trim_end_matches('/'),
            self.fill_path(&endpoint, spec)?
        );
        let mut query: BTreeMap<String, String> = BTreeMap::new();
        if let Some(Value::Object(static_query)) = self.raw.get("query") {
            for (k, v) in static_query {
                if let Some(s) = v.as_str() {
                    query.insert(k.clone(), self.fill(s, spec));
                }
            }
        }
        let mut body: Option<Value> = self.raw.get("body").map(|b| self.fill_value(b, spec));
        // A continue endpoint (Dropbox) takes only the cursor.
        if continuing && p_str(pagination, "continueEndpoint").is_some() {
            body = Some(Value::Object(Map::new()));
        }

        if let (Some(since), Some(param)) = (&spec.since, self.object.raw_delta_param(self.raw)) {
            let value = match self.raw.get("deltaQueryTemplate").and_then(Value::as_str) {
                Some(template) => self.fill(template, spec),
                None => since.clone(),
            };
            // GraphQL-style APIs take the bound as a variable in the body.
            match self.raw.get("deltaBodyPointer").and_then(Value::as_str) {
                Some(pointer) => set_pointer(
                    body.get_or_insert_with(|| Value::Object(Map::new())),
                    pointer,
                    Value::String(value),
                ),
                None => {
                    query.insert(param.to_owned(), value);
                }
            }
        }
        if spec.parent_only
            && let Some(filter) = self
                .object
                .filters
                .as_ref()
                .and_then(|f| f.parent_only.as_ref())
        {
            for (k, v) in &filter.query {
                query.insert(k.clone(), self.fill(v, spec));
            }
        }

        let mut params: Vec<(String, Value)> = Vec::new();
        let page_size = self.page_size(spec);
        if let (Some(size), Some(param)) = (page_size, p_str(pagination, "limitParam"))
            && !(continuing && p_str(pagination, "continueEndpoint").is_some())
            && p_str(pagination, "pageParamFormat").is_none()
        {
            params.push((param.to_owned(), Value::from(size)));
        }
        match (self.strategy(), position) {
            ("offset_limit", Position::Start) | ("offset_limit", Position::Offset { .. }) => {
                let offset = match position {
                    Position::Offset { offset } => *offset,
                    _ => 0,
                };
                let param = p_str(pagination, "offsetParam")
                    .ok_or(FetchError::Metadata("pagination.offsetParam"))?;
                params.push((param.to_owned(), Value::from(offset)));
            }
            ("page_number", Position::Start) | ("page_number", Position::Page { .. }) => {
                let first = p_u64(pagination, "firstPage").unwrap_or(1);
                let page = match position {
                    Position::Page { page } => *page,
                    _ => first,
                };
                let param = p_str(pagination, "pageParam")
                    .ok_or(FetchError::Metadata("pagination.pageParam"))?;
                let value = match p_str(pagination, "pageParamFormat") {
                    Some(format) => Value::String(
                        format
                            .replace("{page}", &page.to_string())
                            .replace("{pageSize}", &page_size.unwrap_or(100).to_string()),
                    ),
                    None => Value::from(page),
                };
                params.push((param.to_owned(), value));
            }
            (_, Position::Cursor { cursor }) => {
                let param = p_str(pagination, "cursorParam")
                    .ok_or(FetchError::Metadata("pagination.cursorParam"))?;
                params.push((param.to_owned(), Value::String(cursor.clone())));
            }
            _ => {}
        }

        for (name, value) in params {
            if self.params_in_body() {
                let pointer = match name.as_str() {
                    n if Some(n) == p_str(pagination, "cursorParam") => {
                        p_str(pagination, "cursorBodyPointer")
                    }
                    n if Some(n) == p_str(pagination, "limitParam") => {
                        p_str(pagination, "limitBodyPointer")
                    }
                    _ => None,
                };
                let target = body.get_or_insert_with(|| Value::Object(Map::new()));
                set_pointer(target, pointer.unwrap_or(&format!("/{name}")), value);
            } else {
                let text = match &value {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                query.insert(name, text);
            }
        }
        Ok(PageRequest {
            method: self.object.method.clone(),
            url,
            query: query.into_iter().collect(),
            body,
        })
    }

    /// A next-page link resolved against the object's first-page URL, if
    /// it stays on that URL's scheme, host and port.
    fn same_host_link(&self, spec: &ReadSpec, link: &str) -> Result<String, FetchError> {
        let home = format!(
            "{}{}",
            spec.base_url.trim_end_matches('/'),
            self.fill(&self.object.endpoint, spec)
        );
        let home = reqwest::Url::parse(&home).map_err(|_| FetchError::Metadata("a base URL"))?;
        let next = home
            .join(link)
            .map_err(|_| FetchError::ForeignNextLink("an unreadable URL".to_owned()))?;
        if next.origin() == home.origin() {
            Ok(next.into())
        } else {
            // The origin only: the path and query may carry state or secrets.
            Err(FetchError::ForeignNextLink(
                next.origin().ascii_serialization(),
            ))
        }
    }

    /// The records of a response and the position after it.
    pub fn parse(
        &self,
        position: &Position,
        headers: &[(String, String)],
        body: &Value,
    ) -> Result<ParsedPage, FetchError> {
        let selector = self.object.record_selector.as_str();
        let records = if selector.is_empty() {
            body.as_array().cloned()
        } else {
            body.pointer(selector).and_then(Value::as_array).cloned()
        };
        let records = match records {
            Some(r) => r,
            // Some providers omit an empty list altogether.
            None if body.is_object() && body.pointer(selector).is_none_or(Value::is_null) => {
                Vec::new()
            }
            None => return Err(FetchError::NoRecords(selector.to_owned())),
        };
        let pagination = self.pagination();
        let explicit_end = p_str(pagination, "hasMorePath")
            .and_then(|p| body.pointer(p))
            .and_then(Value::as_bool)
            .map(|more| !more)
            .unwrap_or(false)
            || self
                .raw
                .get("stopWhenPath")
                .and_then(Value::as_str)
                .and_then(|p| body.pointer(p))
                .and_then(Value::as_bool)
                .unwrap_or(false);
        let next = match self.strategy() {
            _ if explicit_end => Position::Done,
            "offset_limit" => {
                let offset = match position {
                    Position::Offset { offset } => *offset,
                    _ => 0,
                };
                // `offset` comes back from a stored checkpoint: saturate.
                let next = offset.saturating_add(records.len() as u64);
                let total = body
                    .get("total")
                    .or_else(|| body.get("rowCount"))
                    .and_then(Value::as_u64);
                match total {
                    _ if records.is_empty() => Position::Done,
                    Some(total) if next >= total => Position::Done,
                    _ => Position::Offset { offset: next },
                }
            }
            "page_number" => {
                let first = p_u64(pagination, "firstPage").unwrap_or(1);
                let page = match position {
                    Position::Page { page } => *page,
                    _ => first,
                };
                if records.is_empty() {
                    Position::Done
                } else {
                    Position::Page {
                        page: page.saturating_add(1),
                    }
                }
            }
            "cursor" => {
                let cursor = p_str(pagination, "cursorPath")
                    .and_then(|p| body.pointer(p))
                    .and_then(|v| match v {
                        Value::String(s) if !s.is_empty() => Some(s.clone()),
                        Value::Number(n) => Some(n.to_string()),
                        _ => None,
                    });
                match cursor {
                    Some(c) if matches!(position, Position::Cursor { cursor } if *cursor == c) => {
                        return Err(FetchError::CursorLoop);
                    }
                    Some(c) => Position::Cursor { cursor: c },
                    None => Position::Done,
                }
            }
            "next_link" => match p_str(pagination, "nextLinkPath")
                .and_then(|p| body.pointer(p))
                .and_then(Value::as_str)
            {
                Some(url) if !url.is_empty() => Position::Url {
                    url: url.to_owned(),
                },
                _ => Position::Done,
            },
            "link_header" => match next_link(headers) {
                Some(url) => Position::Url { url },
                None => Position::Done,
            },
            _ => Position::Done,
        };
        if let (Position::Url { url }, Position::Url { url: previous }) = (&next, position)
            && url == previous
        {
            return Err(FetchError::CursorLoop);
        }
        Ok(ParsedPage { records, next })
    }

    /// A record's value for a declared field (at its `path`, else its name).
    pub fn field<'r>(&self, record: &'r Value, name: &str) -> Option<&'r Value> {
        let field = self.object.fields.iter().find(|f| f.name == name)?;
        match &field.path {
            Some(path) => record.pointer(path),
            None => record.get(name),
        }
    }

    /// The record's identifier as text.
    pub fn external_id(&self, record: &Value) -> Option<String> {
        let id = self.object.fields.iter().find(|f| f.identifier)?;
        match self.field(record, &id.name)? {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }

    /// Only the declared fields, flattened to their names.
    pub fn project(&self, record: &Value) -> Value {
        let mut out = Map::new();
        for f in &self.object.fields {
            out.insert(
                f.name.clone(),
                self.field(record, &f.name).cloned().unwrap_or(Value::Null),
            );
        }
        Value::Object(out)
    }

    /// Whether a record is a child per the object's hierarchy (the client
    /// side guard behind the server-side parent-only filter).
    pub fn is_child(&self, record: &Value) -> bool {
        let Some(h) = &self.object.hierarchy else {
            return false;
        };
        match self.field(record, &h.parent_key) {
            None | Some(Value::Null) => false,
            Some(Value::String(s)) => !s.is_empty(),
            Some(Value::Array(a)) => !a.is_empty(),
            Some(_) => true,
        }
    }

    /// Whether the provider marks the record deleted or archived.
    pub fn is_deleted(&self, record: &Value) -> bool {
        let Some(marker) = &self.object.deletion_marker else {
            return false;
        };
        match self.field(record, &marker.field) {
            None | Some(Value::Null) => false,
            Some(value) if marker.when_present => !matches!(value, Value::Bool(false)),
            Some(value) => marker.values.contains(value),
        }
    }
}

impl ObjectMeta {
    fn raw_delta_param<'v>(&'v self, raw: &'v Value) -> Option<&'v str> {
        if !self.supports_delta() {
            return None;
        }
        raw.get("deltaParam").and_then(Value::as_str)
    }
}

/// Sets `value` at a JSON pointer, creating objects on the way.
fn set_pointer(target: &mut Value, pointer: &str, value: Value) {
    let mut current = target;
    let parts: Vec<String> = pointer
        .split('/')
        .skip(1)
        .map(|p| p.replace("~1", "/").replace("~0", "~"))
        .collect();
    for (i, part) in parts.iter().enumerate() {
        if !current.is_object() {
            *current = Value::Object(Map::new());
        }
        let Value::Object(map) = current else { return };
        if i + 1 == parts.len() {
            map.insert(part.clone(), value);
            return;
        }
        current = map
            .entry(part.clone())
            .or_insert_with(|| Value::Object(Map::new()));
    }
}

/// The `rel="next"` URL of an RFC 8288 Link header.
pub fn next_link(headers: &[(String, String)]) -> Option<String> {
    headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("link"))
        .flat_map(|(_, v)| v.split(','))
        .find_map(|part| {
            let (url, params) = part.split_once(';')?;
            let is_next = params.split(';').any(|p| {
                let p = p.trim().to_ascii_lowercase();
                p == "rel=\"next\"" || p == "rel=next"
            });
            is_next.then(|| {
                url.trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_owned()
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_headers() {
        let h = vec![(
            "Link".to_owned(),
            "<https://api.x/items?page=2>; rel=\"next\", <https://api.x/items?page=9>; rel=\"last\"".to_owned(),
        )];
        assert_eq!(next_link(&h).as_deref(), Some("https://api.x/items?page=2"));
        assert_eq!(
            next_link(&[("link".into(), "<https://a/b>; rel=\"prev\"".into())]),
            None
        );
        assert_eq!(next_link(&[]), None);
    }

    fn reader_test(check: impl Fn(&ObjectReader<'_>, &ReadSpec)) {
        let object: ObjectMeta = serde_json::from_value(serde_json::json!({
            "key": "items", "label": "Items", "kind": "records", "endpoint": "/v2/items",
            "method": "GET", "recordSelector": "/items", "capabilities": ["list"],
            "pagination": {"strategy": "next_link", "nextLinkPath": "/next"},
            "fields": [{"name": "id", "type": "string", "nullable": false, "identifier": true}],
        }))
        .unwrap();
        let raw = serde_json::json!({"objects": []});
        let spec = ReadSpec {
            base_url: "https://api.example.com/api/".to_owned(),
            account_id: None,
            since: None,
            until: None,
            parent_only: false,
            page_size: None,
        };
        check(&ObjectReader::new(&object, &raw), &spec);
    }

    #[test]
    fn next_links_stay_on_the_objects_host() {
        reader_test(|reader, spec| {
            let at = |url: &str| Position::Url {
                url: url.to_owned(),
            };
            let same = reader
                .request(spec, &at("https://api.example.com/api/v2/items?page=2"))
                .unwrap();
            assert_eq!(same.url, "https://api.example.com/api/v2/items?page=2");
            // Relative links resolve against the object's URL.
            let relative = reader.request(spec, &at("/api/v2/items?page=3")).unwrap();
            assert_eq!(relative.url, "https://api.example.com/api/v2/items?page=3");
            for foreign in [
                "https://evil.example/api/v2/items?page=2",
                "http://api.example.com/api/v2/items?page=2",
                "https://api.example.com:8443/api/v2/items",
                "https://api.example.com.evil.example/x",
                "https://api.example.com@evil.example/x",
                "//evil.example/x",
                "http://127.0.0.1/x",
            ] {
                match reader.request(spec, &at(foreign)) {
                    Err(FetchError::ForeignNextLink(_)) => {}
                    other => panic!("{foreign}: {other:?}"),
                }
            }
        });
    }

    #[test]
    fn substituted_path_values_stay_one_segment() {
        let object: ObjectMeta = serde_json::from_value(serde_json::json!({
            "key": "rows", "label": "Rows", "kind": "records",
            "endpoint": "/sites/{accountId}/searchAnalytics/query", "method": "GET",
            "recordSelector": "rows", "capabilities": ["list"],
            "pagination": {"strategy": "none"},
            "fields": [{"name": "id", "type": "string", "nullable": false, "identifier": true}],
            "query": {"site": "{accountId}"}
        }))
        .unwrap();
        let raw =
            serde_json::json!({"objects": [{"key": "rows", "query": {"site": "{accountId}"}}]});
        let reader = ObjectReader::new(&object, &raw);
        let spec = |account: &str| ReadSpec {
            base_url: "https://api.example/v3".into(),
            account_id: Some(account.into()),
            since: None,
            until: None,
            parent_only: false,
            page_size: None,
        };
        let cases = [
            ("123", "/sites/123/"),
            ("sc-domain:example.com", "/sites/sc-domain%3Aexample.com/"),
            (
                "https://example.com/",
                "/sites/https%3A%2F%2Fexample.com%2F/",
            ),
            ("../../admin?x=1", "/sites/..%2F..%2Fadmin%3Fx=1/"),
            ("b!kX3v;p", "/sites/b!kX3v%3Bp/"),
            ("a b#c%2F", "/sites/a%20b%23c%252F/"),
        ];
        for (account, expected) in cases {
            let req = reader.request(&spec(account), &Position::Start).unwrap();
            assert_eq!(
                req.url,
                format!("https://api.example/v3{expected}searchAnalytics/query"),
                "{account}"
            );
            // Query values are substituted raw: the HTTP client encodes them.
            assert_eq!(req.query, vec![("site".to_owned(), account.to_owned())]);
        }
        for dots in ["", ".", ".."] {
            assert!(
                reader.request(&spec(dots), &Position::Start).is_err(),
                "{dots:?}"
            );
        }
    }

    #[test]
    fn pointers_create_their_path() {
        let mut v = serde_json::json!({"variables": {"q": 1}});
        set_pointer(&mut v, "/variables/after", Value::from("c1"));
        set_pointer(&mut v, "/page_size", Value::from(10));
        assert_eq!(
            v,
            serde_json::json!({"variables": {"q": 1, "after": "c1"}, "page_size": 10})
        );
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use crate::testing::{any_json, header_text, json_with_keys};
    use proptest::prelude::*;

    fn object(strategy: &str) -> ObjectMeta {
        let pagination = serde_json::json!({
            "strategy": strategy, "hasMorePath": "/has_more", "cursorPath": "/next_cursor",
            "nextLinkPath": "/next", "firstPage": 1,
        });
        serde_json::from_value(serde_json::json!({
            "key": "items", "label": "Items", "kind": "records", "endpoint": "/v2/items",
            "method": "GET", "recordSelector": "/items", "capabilities": ["list"],
            "pagination": pagination,
            "fields": [{"name": "id", "type": "string", "nullable": false, "identifier": true},
                       {"name": "updated", "path": "/meta/updated", "type": "datetime", "nullable": true}],
        }))
        .unwrap_or_else(|e| panic!("fixture object: {e}"))
    }

    fn any_position() -> impl Strategy<Value = Position> {
        prop_oneof![
            Just(Position::Start),
            any::<u64>().prop_map(|offset| Position::Offset { offset }),
            any::<u64>().prop_map(|page| Position::Page { page }),
            any::<String>().prop_map(|cursor| Position::Cursor { cursor }),
            any::<String>().prop_map(|url| Position::Url { url }),
        ]
    }

    fn page_body() -> impl Strategy<Value = Value> {
        prop_oneof![
            any_json(),
            json_with_keys(&[
                "items",
                "has_more",
                "next_cursor",
                "next",
                "total",
                "rowCount"
            ]),
        ]
    }

    proptest! {
        // A page is provider data: whatever its shape, the reader answers
        // records and a position, or an error; the stored position may be
        // anything an earlier run (or a tampered row) left.
        #[test]
        fn any_page_reads_or_fails_cleanly(
            strategy in prop::sample::select(&["offset_limit", "page_number", "cursor", "next_link", "link_header", "none"][..]),
            position in any_position(),
            body in page_body(),
            link in header_text(),
        ) {
            let object = object(strategy);
            let raw = serde_json::json!({"objects": []});
            let reader = ObjectReader::new(&object, &raw);
            let headers = vec![("Link".to_owned(), link)];
            if let Ok(page) = reader.parse(&position, &headers, &body) {
                for record in &page.records {
                    let _ = reader.external_id(record);
                    let _ = reader.project(record);
                    let _ = reader.is_deleted(record);
                    let _ = reader.is_child(record);
                }
            }
        }

        #[test]
        fn any_link_header_gives_a_url_or_none(raw in header_text()) {
            let _ = next_link(&[("link".to_owned(), raw)]);
        }
    }

    #[test]
    fn a_stored_offset_at_the_top_does_not_overflow() {
        let object = object("offset_limit");
        let raw = serde_json::json!({"objects": []});
        let reader = ObjectReader::new(&object, &raw);
        let body = serde_json::json!({"items": [{"id": "a"}]});
        let page = reader
            .parse(&Position::Offset { offset: u64::MAX }, &[], &body)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(page.next, Position::Offset { offset: u64::MAX });
    }
}
