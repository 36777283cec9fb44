//! Settings → Workspace (admins): the time zone pages show times in.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::kit::FormState;
use super::{Layout, with_status};
use crate::app::AppState;
use crate::auth::extract::CurrentTenant;
use crate::auth::session::{self, FlashKind};
use crate::error::{AppError, AppResult};
use crate::tenancy::service;
use crate::tenancy::zone::all_zone_names;
use crate::web::extract::CsrfForm;

const BACK: &str = "/settings/workspace";

/// One link of the settings index.
pub struct SettingsLink {
    pub href: &'static str,
    pub title: &'static str,
    pub about: &'static str,
}

pub const SETTINGS_LINKS: [SettingsLink; 5] = [
    SettingsLink {
        href: "/settings/members",
        title: "Members",
        about: "Who belongs to this workspace, their roles, invites and password resets.",
    },
    SettingsLink {
        href: "/settings/keys",
        title: "Service keys",
        about: "Keys for automations calling the internal API, with their scopes, creator and last use.",
    },
    SettingsLink {
        href: "/settings/webhooks",
        title: "Webhooks",
        about: "Where connection and sync events are sent, the signing secret, and recent deliveries.",
    },
    SettingsLink {
        href: "/settings/audit",
        title: "Audit log",
        about: "Who changed what, filtered by person, action and date, downloadable as CSV.",
    },
    SettingsLink {
        href: "/settings/workspace",
        title: "Workspace",
        about: "The time zone every page shows times in.",
    },
];

#[derive(Template, WebTemplate)]
#[template(path = "settings_index.html")]
pub struct SettingsIndex {
    layout: Layout,
    workspace_name: String,
    links: &'static [SettingsLink],
}

/// `/settings`: every settings page, one link each (admins).
pub async fn index(State(state): State<AppState>, current: CurrentTenant) -> AppResult<Response> {
    current.tenant.require_admin("change workspace settings")?;
    let CurrentTenant {
        user,
        session,
        tenant,
    } = current;
    Ok(SettingsIndex {
        layout: Layout::signed_in(&state, &session, &user, &tenant).await?,
        workspace_name: tenant.workspace_name.clone(),
        links: &SETTINGS_LINKS,
    }
    .into_response())
}

#[derive(Template, WebTemplate)]
#[template(path = "settings.html")]
pub struct SettingsPage {
    layout: Layout,
    workspace_name: String,
    form: FormState,
    zones: Vec<String>,
    /// An example time, shown in the zone in force.
    now: String,
}

fn render(layout: Layout, workspace_name: String, form: FormState) -> SettingsPage {
    let now = layout.zone.at(&crate::storage::now());
    SettingsPage {
        layout,
        workspace_name,
        form,
        zones: all_zone_names(),
        now,
    }
}

pub async fn page(State(state): State<AppState>, current: CurrentTenant) -> AppResult<Response> {
    current.tenant.require_admin("change workspace settings")?;
    let CurrentTenant {
        user,
        session,
        tenant,
    } = current;
    let layout = Layout::signed_in(&state, &session, &user, &tenant).await?;
    let form = FormState::with_values([("time_zone", layout.zone.name())]);
    Ok(render(layout, tenant.workspace_name.clone(), form).into_response())
}

#[derive(Deserialize)]
pub struct SettingsForm {
    #[serde(default)]
    time_zone: String,
}

/// A bad zone re-renders the form (422) with the typed value and the error
/// beside it; nothing is saved.
pub async fn save(
    State(state): State<AppState>,
    current: CurrentTenant,
    form: CsrfForm<SettingsForm>,
) -> AppResult<Response> {
    let CsrfForm { form, session } = form;
    match service::set_time_zone(&state.store, &current.tenant, &form.time_zone).await {
        Ok(zone) => {
            session::flash(
                &session,
                FlashKind::Success,
                format!("Times are now shown in {}.", zone.name()),
            )
            .await?;
            Ok(Redirect::to(BACK).into_response())
        }
        Err(err @ (AppError::Validation { .. } | AppError::BadRequest { .. })) => {
            let layout =
                Layout::signed_in(&state, &session, &current.user, &current.tenant).await?;
            let typed = FormState::with_values([("time_zone", form.time_zone.as_str())])
                .with_error(&err, &["time_zone"]);
            let page = render(layout, current.tenant.workspace_name.clone(), typed);
            Ok(with_status(err.status(), page))
        }
        Err(err) => Err(err),
    }
}
