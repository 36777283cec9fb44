//! Body extractors whose failures are ordinary [`AppError`]s: JSON bodies
//! (content type enforced, syntax errors with their position, type errors
//! with the field path) and HTML forms (CSRF token checked first).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use serde::de::DeserializeOwned;
use tower_sessions::Session;

use crate::app::AppState;
use crate::auth::session::{CSRF_FIELD, verify_csrf};
use crate::error::AppError;

pub fn is_json_content_type(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json"
                || (mime.starts_with("application/") && mime.ends_with("+json"))
        })
}

async fn read_body(req: Request, state: &AppState) -> Result<Bytes, AppError> {
    Bytes::from_request(req, state)
        .await
        .map_err(|rejection| match rejection {
            BytesRejection::FailedToBufferBody(inner)
                if inner
                    .to_string()
                    .to_ascii_lowercase()
                    .contains("length limit") =>
            {
                AppError::PayloadTooLarge
            }
            other => {
                AppError::bad_request(None, format!("could not read the request body: {other}"))
            }
        })
}

/// Parses JSON, reporting where it went wrong: syntax errors as 400 with
/// line and column, shape errors as 422 with the JSON path of the field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AppError> {
    parse_json_as(bytes, false)
}

/// [`parse_json`], naming fields by JSON pointer (`/filters/1/field`), for
/// bodies whose other errors (schema checks) use pointers too.
pub fn parse_json_pointer<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AppError> {
    parse_json_as(bytes, true)
}

/// The field an error is about: the path where it happened (for an unknown
/// key, the key: so `deny_unknown_fields` names what it refused), and for
/// a missing key, reported at the object holding it, that key below it.
fn error_field(path: &serde_path_to_error::Path, message: &str, pointer: bool) -> Option<String> {
    use serde_path_to_error::Segment;
    // serde_path_to_error puts an unknown key in the path already, a
    // missing one not.
    let key = message
        .starts_with("missing field")
        .then(|| missing_field(message))
        .flatten();
    if pointer {
        let mut out: String = path
            .iter()
            .map(|segment| match segment {
                Segment::Seq { index } => format!("/{index}"),
                Segment::Map { key } => format!("/{}", pointer_token(key)),
                Segment::Enum { variant } => format!("/{}", pointer_token(variant)),
                Segment::Unknown => "/?".to_owned(),
            })
            .collect();
        if let Some(key) = key {
            out = format!("{out}/{}", pointer_token(&key));
        }
        return (!out.is_empty()).then_some(out);
    }
    let at = path.to_string();
    match (at.as_str(), key) {
        (".", Some(key)) => Some(key),
        (".", None) => None,
        (_, Some(key)) => Some(format!("{at}.{key}")),
        (_, None) => Some(at),
    }
}

fn pointer_token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn parse_json_as<T: DeserializeOwned>(bytes: &[u8], pointer: bool) -> Result<T, AppError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(AppError::bad_request(
            None,
            "request body is empty; expected a JSON object",
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().clone();
        let inner = err.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let message = strip_position(&inner.to_string());
                AppError::Validation {
                    field: error_field(&path, &message, pointer),
                    message,
                }
            }
            _ => AppError::bad_request(
                None,
                format!(
                    "malformed JSON at line {} column {}: {}",
                    inner.line(),
                    inner.column(),
                    strip_position(&inner.to_string())
                ),
            ),
        }
    })?;
    de.end().map_err(|inner| {
        AppError::bad_request(
            None,
            format!(
                "malformed JSON at line {} column {}: trailing characters after the JSON value",
                inner.line(),
                inner.column()
            ),
        )
    })?;
    Ok(value)
}

fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message.get(..at).unwrap_or(message).to_owned(),
        None => message.to_owned(),
    }
}

/// `application/json` body → `T`.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequest<AppState> for ApiJson<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        if !is_json_content_type(req.headers()) {
            return Err(AppError::UnsupportedMediaType(
                "expected Content-Type: application/json".into(),
            ));
        }
        let bytes = read_body(req, state).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// [`ApiJson`] whose errors name the field by JSON pointer.
pub struct PointerJson<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequest<AppState> for PointerJson<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        if !is_json_content_type(req.headers()) {
            return Err(AppError::UnsupportedMediaType(
                "expected Content-Type: application/json".into(),
            ));
        }
        let bytes = read_body(req, state).await?;
        parse_json_pointer(&bytes).map(PointerJson)
    }
}

/// An urlencoded form whose `_csrf` field matches the session's token.
pub struct CsrfForm<T> {
    pub form: T,
    pub session: Session,
}

impl<T: DeserializeOwned + Send> FromRequest<AppState> for CsrfForm<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let session = Session::from_request_parts(&mut parts, state)
            .await
            .map_err(|(_, msg)| {
                AppError::internal(anyhow::anyhow!("session layer missing: {msg}"))
            })?;
        let is_form = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if !is_form {
            return Err(AppError::UnsupportedMediaType(
                "expected a form (application/x-www-form-urlencoded)".into(),
            ));
        }
        let bytes = read_body(Request::from_parts(parts, body), state).await?;
        // Percent-decoding is lossy on invalid UTF-8, never a panic.
        let pairs: Vec<(String, String)> = form_pairs(&bytes);
        let token = pairs
            .iter()
            .find(|(k, _)| k == CSRF_FIELD)
            .map(|(_, v)| v.as_str());
        verify_csrf(&session, token).await?;
        let form = parse_urlencoded(&bytes)?;
        Ok(CsrfForm { form, session })
    }
}

/// Parses an urlencoded form or query string; a field that fails (a control
/// character, a missing field, a bad number) is 422 naming it.
pub fn parse_urlencoded<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AppError> {
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(bytes));
    serde_path_to_error::deserialize(de).map_err(|err| {
        let path = err.path().to_string();
        let message = err.into_inner().to_string();
        let field = if path == "." {
            missing_field(&message)
        } else {
            Some(path)
        };
        AppError::Validation { field, message }
    })
}

/// A query string → `T`, with failures as 422 naming the parameter (axum's
/// `Query` answers 400 and loses the field).
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        parse_urlencoded(query.as_bytes()).map(ApiQuery)
    }
}

fn form_pairs(bytes: &[u8]) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(bytes).unwrap_or_default()
}

fn missing_field(message: &str) -> Option<String> {
    let (_, rest) = message.split_once('`')?;
    let (name, _) = rest.split_once('`')?;
    Some(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Body {
        email: String,
        nested: Option<Inner>,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        count: u32,
    }

    #[test]
    fn syntax_errors_give_the_position() {
        let err = parse_json::<Body>(b"{\n  \"email\": \"a\",,\n}").unwrap_err();
        assert_eq!(err.status(), 400);
        assert!(err.to_string().contains("line 2 column"), "{err}");
    }

    #[test]
    fn type_errors_name_the_field() {
        let err = parse_json::<Body>(br#"{"email":"a","nested":{"count":"x"}}"#).unwrap_err();
        assert_eq!(err.status(), 422);
        assert!(
            matches!(&err, AppError::Validation { field: Some(f), .. } if f == "nested.count"),
            "{err:?}"
        );
        let err = parse_json::<Body>(br#"{"nested":null}"#).unwrap_err();
        assert!(err.to_string().contains("email"), "{err}");
    }

    #[test]
    fn empty_and_trailing() {
        assert_eq!(parse_json::<Body>(b"  ").unwrap_err().status(), 400);
        assert_eq!(
            parse_json::<Body>(br#"{"email":"a"} x"#)
                .unwrap_err()
                .status(),
            400
        );
    }

    #[test]
    fn json_content_types() {
        let mut h = HeaderMap::new();
        assert!(!is_json_content_type(&h));
        h.insert(
            header::CONTENT_TYPE,
            "application/json; charset=utf-8".parse().unwrap(),
        );
        assert!(is_json_content_type(&h));
        h.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        assert!(!is_json_content_type(&h));
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Form {
        email: crate::input::SingleLine,
        next: Option<crate::input::SingleLine>,
    }

    #[test]
    fn forms_and_queries_name_the_field() {
        let ok: Form = parse_urlencoded(b"email=a%40b.c&next=%2Fdata").unwrap();
        assert_eq!(ok.email.as_str(), "a@b.c");
        let err = parse_urlencoded::<Form>(b"email=a%00b").unwrap_err();
        assert_eq!(err.status(), 422);
        assert!(
            matches!(&err, AppError::Validation { field: Some(f), .. } if f == "email"),
            "{err:?}"
        );
        assert!(!err.to_string().contains("a\0b"), "{err}");
        let err = parse_urlencoded::<Form>(b"email=x&next=%0A").unwrap_err();
        assert!(
            matches!(&err, AppError::Validation { field: Some(f), .. } if f == "next"),
            "{err:?}"
        );
        let err = parse_urlencoded::<Form>(b"next=%2F").unwrap_err();
        assert!(
            matches!(&err, AppError::Validation { field: Some(f), .. } if f == "email"),
            "{err:?}"
        );
    }

    #[test]
    fn json_text_fields_name_the_field() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Named {
            items: Vec<crate::input::Name>,
        }
        let err = parse_json::<Named>(br#"{"items":["ok","a\u202Eb"]}"#).unwrap_err();
        assert_eq!(err.status(), 422);
        assert!(
            matches!(&err, AppError::Validation { field: Some(f), .. } if f == "items[1]"),
            "{err:?}"
        );
    }

    #[test]
    fn invalid_utf8_form_does_not_panic() {
        let pairs = form_pairs(b"a=%FF%FE&b=\xff");
        assert_eq!(pairs.len(), 2);
    }
}
