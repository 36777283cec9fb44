//! Server-rendered pages (askama). Handlers stay thin: extract, call the
//! capability, render or redirect with a flash message.

mod auth;
mod data;
mod invites;
mod keys;
mod members;
mod reset;
mod workspace;

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Serialize;
use tower_sessions::Session;

use crate::app::AppState;
use crate::auth::User;
use crate::auth::session::{self, Flash, FlashKind};
use crate::error::{AppError, AppResult, ErrorInfo};
use crate::tenancy::{Tenant, WorkspaceId};
pub use crate::web::parse_path_id;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(workspace::home))
        .route("/signup", get(auth::signup_page).post(auth::signup_submit))
        .route("/login", get(auth::login_page).post(auth::login_submit))
        .route("/logout", post(auth::logout))
        .route("/workspaces", post(workspace::create))
        .route("/workspaces/{workspace_id}/switch", post(workspace::switch))
        .route("/settings/members", get(members::page).post(members::add))
        .route(
            "/settings/members/{user_id}/role",
            post(members::change_role),
        )
        .route("/settings/members/{user_id}/remove", post(members::remove))
        .route(
            "/settings/members/{user_id}/reset-password",
            post(members::reset_password),
        )
        .route(
            "/settings/invites/{invite_id}/revoke",
            post(members::revoke_invite),
        )
        .route("/data", get(data::hub))
        .route(
            "/data/{provider}/accounts",
            get(data::accounts_page).post(data::select_accounts),
        )
        .route("/data/{provider}/disconnect", post(data::disconnect))
        .route("/data/{provider}/test", post(data::test))
        .route("/data/{provider}/sync", post(data::sync_now))
        .route("/data/jobs/{id}", get(data::job_page))
        .route("/data/jobs/{id}/{action}", post(data::job_action))
        .route("/data/{provider}/credentials", post(data::credentials))
        .route("/data/connections/{id}/{action}", post(data::admin_action))
        .route("/settings/keys", get(keys::page).post(keys::create))
        .route("/settings/keys/{id}/revoke", post(keys::revoke))
        .route("/invites/{token}", get(invites::show))
        .route("/reset/{token}", get(reset::show).post(reset::submit))
        .route("/invites/{token}/accept", post(invites::accept))
}

/// A secret (key, invite or reset link) rendered once in the response that
/// created it. Never flashed: the session is stored in the database.
pub struct ShownOnce {
    pub message: String,
    pub value: String,
    pub label: &'static str,
    pub testid: &'static str,
}

/// What every page's frame needs.
pub struct Layout {
    pub csrf: String,
    pub nav: Option<Nav>,
    pub flash: Option<Flash>,
}

pub struct Nav {
    pub user_name: String,
    pub user_email: String,
    pub workspace_name: String,
    pub organization_name: String,
    pub role: &'static str,
    pub workspaces: Vec<WorkspaceLink>,
}

#[derive(Serialize)]
pub struct WorkspaceLink {
    pub id: WorkspaceId,
    pub name: String,
    pub organization_name: String,
    pub role: &'static str,
    pub current: bool,
}

impl Layout {
    pub async fn anonymous(session: &Session) -> AppResult<Layout> {
        Ok(Layout {
            csrf: session::csrf_token(session).await?,
            nav: None,
            flash: session::take_flash(session).await?,
        })
    }

    pub async fn signed_in(
        state: &AppState,
        session: &Session,
        user: &User,
        tenant: &Tenant,
    ) -> AppResult<Layout> {
        let workspaces = state
            .store
            .workspaces_for_user(user.id)
            .await?
            .into_iter()
            .map(|m| WorkspaceLink {
                current: m.workspace_id == tenant.workspace_id,
                role: m.role().as_str(),
                id: m.workspace_id,
                name: m.workspace_name,
                organization_name: m.organization_name,
            })
            .collect();
        Ok(Layout {
            csrf: session::csrf_token(session).await?,
            nav: Some(Nav {
                user_name: user.name.clone(),
                user_email: user.email.clone(),
                workspace_name: tenant.workspace_name.clone(),
                organization_name: tenant.organization_name.clone(),
                role: tenant.role.as_str(),
                workspaces,
            }),
            flash: session::take_flash(session).await?,
        })
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "error.html")]
pub struct ErrorPage {
    layout: Layout,
    status: u16,
    title: &'static str,
    message: String,
    field: Option<String>,
}

pub fn render_error(info: &ErrorInfo) -> Response {
    let title = match info.status.as_u16() {
        400 | 422 => "That didn't work",
        403 => "Not allowed",
        404 => "Not found",
        409 => "Conflict",
        413 => "Too large",
        415 => "Unsupported request",
        429 => "Slow down",
        503 => "Unavailable",
        _ => "Something went wrong",
    };
    ErrorPage {
        layout: Layout {
            csrf: String::new(),
            nav: None,
            flash: None,
        },
        status: info.status.as_u16(),
        title,
        message: info.message.clone(),
        field: info.field.clone(),
    }
    .into_response()
}

/// Renders `page` with a status other than 200 (forms re-shown with errors).
pub fn with_status(status: StatusCode, page: impl IntoResponse) -> Response {
    let mut response = page.into_response();
    *response.status_mut() = status;
    response
}

/// After a form: redirect (303) and show the outcome once on the next page.
/// Expected failures become an error flash; unexpected ones and "not
/// found" stay errors.
pub async fn redirect_with_outcome(
    session: &Session,
    to: &str,
    outcome: AppResult<String>,
) -> AppResult<Response> {
    let redirect = Redirect::to(to).into_response();
    match outcome {
        Ok(message) => {
            session::flash(session, FlashKind::Success, message).await?;
            Ok(redirect)
        }
        // Not found stays a 404: a friendly redirect for another
        // workspace's id would tell it apart from an id that doesn't exist.
        Err(err @ (AppError::Internal(_) | AppError::NotFound(_))) => Err(err),
        Err(err) => {
            session::flash(session, FlashKind::Error, err.to_string()).await?;
            Ok(redirect)
        }
    }
}

/// Only same-origin paths: an absolute or protocol-relative URL would make
/// the log-in form an open redirect. Browsers read `/\`, `/\t/` and the
/// like as `//`, so backslashes and control characters are refused too, in
/// the text and in its percent-decoded forms (`/%2F`, `%5C`, `%09`, `%252F`).
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if is_same_origin_path(n) => n.to_owned(),
        _ => "/".to_owned(),
    }
}

fn is_same_origin_path(next: &str) -> bool {
    const MAX_LEN: usize = 2000;
    let plain = |text: &str| {
        text.starts_with('/')
            && !text.starts_with("//")
            && !text.contains('\\')
            && !text.chars().any(char::is_control)
    };
    if next.len() > MAX_LEN {
        return false;
    }
    // Decode until nothing changes (bounded), checking every layer.
    let mut text = next.to_owned();
    for _ in 0..4 {
        if !plain(&text) {
            return false;
        }
        let Ok(decoded) = percent_encoding::percent_decode_str(&text).decode_utf8() else {
            return false;
        };
        if decoded == text {
            return true;
        }
        text = decoded.into_owned();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn next_stays_same_origin() {
        let cases: &[(&str, &str)] = &[
            ("/settings/members", "/settings/members"),
            ("/data?x=1&y=%20z", "/data?x=1&y=%20z"),
            ("/data/jobs/abc#top", "/data/jobs/abc#top"),
            ("/caf%C3%A9", "/caf%C3%A9"),
            ("https://evil.example", "/"),
            ("http:/evil.example", "/"),
            ("//evil.example", "/"),
            ("///evil.example", "/"),
            ("/\\evil.example", "/"),
            ("\\evil.example", "/"),
            ("/a\\b", "/"),
            ("/\t/evil.example", "/"),
            ("/\n/evil.example", "/"),
            ("/\r\nSet-Cookie:x", "/"),
            ("/\0", "/"),
            ("/%2F/evil.example", "/"),
            ("/%2f/evil.example", "/"),
            ("%2F%2Fevil.example", "/"),
            ("/%5Cevil.example", "/"),
            ("/%5cevil.example", "/"),
            ("/%09/evil.example", "/"),
            ("/%0A/evil.example", "/"),
            ("/%00", "/"),
            ("/%252F/evil.example", "/"),
            ("/%25252F%25252Fevil", "/"),
            ("/%FF", "/"),
            ("javascript:alert(1)", "/"),
            (" /data", "/"),
            ("", "/"),
        ];
        for (given, expected) in cases {
            assert_eq!(safe_next(Some(given)), *expected, "{given:?}");
        }
        assert_eq!(safe_next(None), "/");
        assert_eq!(safe_next(Some(&format!("/{}", "a".repeat(3000)))), "/");
    }
}
