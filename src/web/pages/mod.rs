//! Server-rendered pages (askama). Handlers stay thin: extract, call the
//! capability, render or redirect with a flash message.

mod audit;
mod auth;
mod connect;
mod dashboard;
mod data;
pub mod entities;
mod explorer;
mod integrations;
mod invites;
mod jobs;
mod keys;
pub mod kit;
mod members;
mod reset;
mod settings;
mod webhooks;
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
use crate::tenancy::zone::Zone;
use crate::tenancy::{Tenant, WorkspaceId};
pub use crate::web::parse_path_id;

/// The connection cards of the Data Hub.
pub const CONNECTIONS: &str = "/data/connections";

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
        .route("/data", get(dashboard::page))
        .route(CONNECTIONS, get(data::hub))
        .route("/data/projects", get(entities::projects))
        .route("/data/projects.csv", get(entities::projects_csv))
        .route("/data/projects/{id}", get(entities::project))
        .route("/data/projects/{id}/edit", post(entities::edit_project))
        .route("/data/projects/{id}/reset", post(entities::reset_project))
        .route("/data/people", get(entities::people))
        .route("/data/people.csv", get(entities::people_csv))
        .route("/data/people/{id}", get(entities::person))
        .route("/data/people/{id}/edit", post(entities::edit_person))
        .route("/data/people/{id}/reset", post(entities::reset_person))
        .route(
            "/data/{provider}/accounts",
            get(data::accounts_page).post(data::select_accounts),
        )
        .route("/data/{provider}/disconnect", post(data::disconnect))
        .route("/data/{provider}/test", post(data::test))
        .route("/data/{provider}/sync", post(data::sync_now))
        .route("/data/jobs", get(jobs::page))
        .route("/data/jobs/{id}", get(data::job_page))
        .route("/data/jobs/{id}/{action}", post(data::job_action))
        .route("/data/{provider}/credentials", post(data::credentials))
        .route("/data/connections/{id}/{action}", post(data::admin_action))
        .route("/settings/keys", get(keys::page).post(keys::create))
        .route("/settings/keys/{id}/revoke", post(keys::revoke))
        .route("/settings", get(settings::index))
        .route("/settings/audit", get(audit::page))
        .route("/settings/audit.csv", get(audit::csv))
        .route(
            "/settings/webhooks",
            get(webhooks::page).post(webhooks::save),
        )
        .route("/settings/webhooks/remove", post(webhooks::remove))
        .route(
            "/settings/webhooks/deliveries/{id}/redeliver",
            post(webhooks::redeliver),
        )
        .route(
            "/settings/workspace",
            get(settings::page).post(settings::save),
        )
        .route("/data/jobs/{id}/cancel", post(data::cancel_job))
        .route("/integrations", get(integrations::catalog))
        .route("/integrations/{provider}", get(integrations::provider_show))
        .route(
            "/integrations/{provider}/connect",
            post(integrations::provider_connect),
        )
        // Hyphenated: object keys are identifiers, so no object is shadowed.
        .route(
            "/integrations/{provider}/connect-links",
            post(integrations::link_create),
        )
        .route(
            "/integrations/{provider}/connect-links/{link_id}/revoke",
            post(integrations::link_revoke),
        )
        .route(
            "/integrations/{provider}/{object}",
            get(integrations::object_show).post(integrations::object_save),
        )
        .route(
            "/integrations/{provider}/{object}/sync",
            get(integrations::sync_show),
        )
        .route(
            "/integrations/{provider}/{object}/sync/{action}",
            post(integrations::sync_action),
        )
        .route(
            "/integrations/{provider}/{object}/mapping",
            get(integrations::mapping_show).post(integrations::mapping_save),
        )
        .route(
            "/integrations/{provider}/{object}/matching",
            get(integrations::matching_show).post(integrations::matching_confirm),
        )
        .route(
            "/integrations/{provider}/{object}/matching/fetch",
            post(integrations::matching_fetch),
        )
        .route("/data/metrics", get(explorer::page))
        .route("/data/metrics.csv", get(explorer::csv))
        .route("/invites/{token}", get(invites::show))
        .route("/connect/{token}", get(connect::show).post(connect::begin))
        .route("/connected/{provider}", get(connect::connected))
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
    /// The workspace's time zone: every time on the page is shown in it.
    pub zone: Zone,
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
            zone: Zone::utc(),
        })
    }

    /// The signed-in frame when there is a user with a workspace, else the
    /// anonymous one (pages open to both, like an invite).
    pub async fn for_session(
        state: &AppState,
        session: &Session,
        user: Option<&User>,
    ) -> AppResult<Layout> {
        if let Some(user) = user
            && let Some(tenant) = current_tenant(state, session, user).await?
        {
            return Layout::signed_in(state, session, user, &tenant).await;
        }
        Layout::anonymous(session).await
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
        let zone = crate::tenancy::service::time_zone(&state.store, tenant.workspace_id).await?;
        Ok(Layout {
            zone,
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

/// The workspace the session works in, as `CurrentTenant` picks it, without
/// choosing one for the session.
async fn current_tenant(
    state: &AppState,
    session: &Session,
    user: &User,
) -> AppResult<Option<Tenant>> {
    let chosen: Option<WorkspaceId> = session.get(session::WORKSPACE_KEY).await.ok().flatten();
    if let Some(ws) = chosen
        && let Some(m) = state.store.membership(ws, user.id).await?
    {
        return Ok(Some(Tenant::from_membership(user.id, &m)));
    }
    let first = state
        .store
        .workspaces_for_user(user.id)
        .await?
        .into_iter()
        .next();
    Ok(first.map(|m| Tenant::from_membership(user.id, &m)))
}

/// The error page's frame: with the nav when someone is signed in. It must
/// never fail itself (the database may be why we are here), so anything
/// that goes wrong gives the bare frame. The flash is left for the next page.
pub async fn error_layout(state: &AppState, session: Option<&Session>) -> Layout {
    let bare = || Layout {
        csrf: String::new(),
        nav: None,
        flash: None,
        zone: Zone::utc(),
    };
    let Some(session) = session else {
        return bare();
    };
    let signed_in = async {
        let user_id: Option<uuid::Uuid> = session.get(session::USER_KEY).await.ok().flatten();
        let Some(user_id) = user_id else {
            return Ok::<_, AppError>(None);
        };
        let Some(user) = state.store.get_user(user_id).await? else {
            return Ok(None);
        };
        let Some(tenant) = current_tenant(state, session, &user).await? else {
            return Ok(None);
        };
        let flash = session::take_flash(session).await?;
        let mut layout = Layout::signed_in(state, session, &user, &tenant).await?;
        // signed_in took the flash: put it back for the page after this one.
        if let Some(f) = flash {
            session::flash(session, f.kind, f.message).await?;
        }
        layout.flash = None;
        Ok(Some(layout))
    };
    match signed_in.await {
        Ok(Some(layout)) => layout,
        Ok(None) => bare(),
        Err(err) => {
            tracing::warn!(error = %err, "error page rendered without its nav");
            bare()
        }
    }
}

pub fn render_error(layout: Layout, info: &ErrorInfo) -> Response {
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
        layout,
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
