//! One error type for the whole application.
//!
//! Every failure becomes an [`AppError`]. Its response is JSON
//! (`{"error":{"code","message","field"}}`) and carries an [`ErrorInfo`]
//! extension, so the page router can swap the body for an HTML page (see
//! `web::html_errors`) without handlers caring which kind of client asked.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

pub type AppResult<T> = Result<T, AppError>;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Input that fails validation: 422 naming the field.
    #[error("{message}")]
    Validation {
        field: Option<String>,
        message: String,
    },
    /// Syntactically broken input (bad JSON, bad form encoding): 400.
    #[error("{message}")]
    BadRequest {
        field: Option<String>,
        message: String,
    },
    #[error("authentication required")]
    Unauthenticated,
    #[error("{0}")]
    InvalidCredentials(String),
    #[error("{0}")]
    Forbidden(String),
    /// Also what another tenant's resources look like: absence, never 403.
    #[error("{0}")]
    NotFound(String),
    #[error("{message}")]
    Conflict {
        field: Option<String>,
        message: String,
    },
    #[error("too many attempts; retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    /// "Sync now" inside the minimum interval: 429 with Retry-After and
    /// when that connection and object last synced (RFC 3339).
    #[error("{message}")]
    SyncTooSoon {
        message: String,
        retry_after_secs: u64,
        last_sync_at: String,
    },
    #[error("request body is larger than this endpoint accepts")]
    PayloadTooLarge,
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    Unavailable(String),
    /// The database is unreachable for the moment (restart, failover, a
    /// full pool): 503 with Retry-After, never a 401 or a 500.
    #[error("the database is briefly unavailable; retry shortly")]
    DatabaseUnavailable,
    /// Anything unexpected. The cause chain is logged, never shown.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

/// Attached to every error response so middleware can re-render it.
#[derive(Debug, Clone)]
pub struct ErrorInfo {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorPayload<'a>,
}

#[derive(Serialize)]
struct ErrorPayload<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
    #[serde(rename = "lastSyncAt", skip_serializing_if = "Option::is_none")]
    last_sync_at: Option<&'a str>,
    #[serde(rename = "retryAfterSecs", skip_serializing_if = "Option::is_none")]
    retry_after_secs: Option<u64>,
}

impl AppError {
    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        AppError::Validation {
            field: Some(field.into()),
            message: message.into(),
        }
    }

    pub fn bad_request(field: Option<String>, message: impl Into<String>) -> Self {
        AppError::BadRequest {
            field,
            message: message.into(),
        }
    }

    pub fn conflict(field: impl Into<String>, message: impl Into<String>) -> Self {
        AppError::Conflict {
            field: Some(field.into()),
            message: message.into(),
        }
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        AppError::NotFound(what.into())
    }

    pub fn internal(err: impl Into<anyhow::Error>) -> Self {
        AppError::Internal(err.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            AppError::Validation { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            AppError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            AppError::Unauthenticated | AppError::InvalidCredentials(_) => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::Conflict { .. } => StatusCode::CONFLICT,
            AppError::RateLimited { .. } | AppError::SyncTooSoon { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            AppError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            AppError::Unavailable(_) | AppError::DatabaseUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            AppError::Validation { .. } => "validation_failed",
            AppError::BadRequest { .. } => "bad_request",
            AppError::Unauthenticated => "unauthenticated",
            AppError::InvalidCredentials(_) => "invalid_credentials",
            AppError::Forbidden(_) => "forbidden",
            AppError::NotFound(_) => "not_found",
            AppError::Conflict { .. } => "conflict",
            AppError::RateLimited { .. } | AppError::SyncTooSoon { .. } => "rate_limited",
            AppError::PayloadTooLarge => "payload_too_large",
            AppError::UnsupportedMediaType(_) => "unsupported_media_type",
            AppError::Unavailable(_) | AppError::DatabaseUnavailable => "unavailable",
            AppError::Internal(_) => "internal",
        }
    }

    /// Seconds to wait, for the Retry-After header.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            AppError::RateLimited { retry_after_secs }
            | AppError::SyncTooSoon {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            AppError::DatabaseUnavailable => Some(DATABASE_RETRY_AFTER_SECS),
            _ => None,
        }
    }

    fn field(&self) -> Option<&str> {
        match self {
            AppError::Validation { field, .. }
            | AppError::BadRequest { field, .. }
            | AppError::Conflict { field, .. } => field.as_deref(),
            _ => None,
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let AppError::Internal(cause) = &self {
            // `{:#}` keeps the whole cause chain in the log line.
            tracing::error!(error = format!("{cause:#}"), "request failed");
        }
        let message = self.to_string();
        let body = ErrorBody {
            error: ErrorPayload {
                code: self.code(),
                message: &message,
                field: self.field(),
                last_sync_at: match &self {
                    AppError::SyncTooSoon { last_sync_at, .. } => Some(last_sync_at.as_str()),
                    _ => None,
                },
                retry_after_secs: match &self {
                    AppError::SyncTooSoon {
                        retry_after_secs, ..
                    } => Some(*retry_after_secs),
                    _ => None,
                },
            },
        };
        let json = serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec());
        let mut response =
            (status, [(header::CONTENT_TYPE, "application/json")], json).into_response();
        if let Some(retry_after_secs) = self.retry_after_secs()
            && let Ok(value) = HeaderValue::from_str(&retry_after_secs.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response.extensions_mut().insert(ErrorInfo {
            status,
            code: self.code(),
            message,
            field: self.field().map(str::to_owned),
        });
        response
    }
}

/// What a client is told to wait when the database is away.
const DATABASE_RETRY_AFTER_SECS: u64 = 5;

impl From<sqlx::Error> for AppError {
    fn from(err: sqlx::Error) -> Self {
        if crate::storage::is_transient(&err) {
            tracing::warn!(error = %err, "database unavailable");
            return AppError::DatabaseUnavailable;
        }
        AppError::Internal(err.into())
    }
}

impl From<anyhow::Error> for AppError {
    fn from(err: anyhow::Error) -> Self {
        AppError::Internal(err)
    }
}

impl From<tower_sessions::session::Error> for AppError {
    fn from(err: tower_sessions::session::Error) -> Self {
        AppError::Internal(err.into())
    }
}
