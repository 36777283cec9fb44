//! Settings → Webhooks (admins): the endpoint, its signing secret shown
//! once, recent deliveries, and redelivery. The rules are the API's
//! (`webhooks::set_endpoint`): one place decides what an endpoint may be.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};

use super::kit::{ConfirmPage, Confirmation, FormState};
use super::{Layout, ShownOnce, parse_path_id, redirect_with_outcome, with_status};
use crate::app::AppState;
use crate::audit::AuditEntry;
use crate::auth::extract::CurrentTenant;
use crate::error::{AppError, AppResult};
use crate::input::FormFields;
use crate::web::extract::CsrfForm;
use crate::webhooks::store::{DeliveryRecord, Redelivery};

const BACK: &str = "/settings/webhooks";
const RECENT: i64 = 50;

pub struct DeliveryRow {
    pub id: String,
    pub event: String,
    pub status: &'static str,
    pub attempts: i32,
    pub created: String,
    pub finished: String,
    pub last_error: String,
    pub can_redeliver: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "webhooks.html")]
pub struct WebhooksPage {
    layout: Layout,
    workspace_name: String,
    url: Option<String>,
    form: FormState,
    shown_once: Option<ShownOnce>,
    deliveries: Vec<DeliveryRow>,
    events: &'static [&'static str],
}

/// Every event a workspace's endpoint may receive.
pub const EVENTS: &[&str] = &[
    "connected",
    "refresh_failed",
    "needs_reauth",
    "recovered",
    "disconnected",
    "sync_failed",
    "sync_recovered",
];

fn row(layout: &Layout, d: &DeliveryRecord) -> DeliveryRow {
    let (status, finished) = match (d.delivered_at, d.failed_at) {
        (Some(t), _) => ("delivered", layout.zone.at(&t)),
        (None, Some(t)) => ("failed", layout.zone.at(&t)),
        (None, None) if d.attempts > 0 => ("retrying", String::from("—")),
        (None, None) => ("pending", String::from("—")),
    };
    DeliveryRow {
        id: d.id.to_string(),
        event: d.event.clone(),
        status,
        attempts: d.attempts,
        created: layout.zone.at(&d.created_at),
        finished,
        last_error: d
            .last_error
            .as_deref()
            .map(|e| crate::input::excerpt(e, 200))
            .unwrap_or_default(),
        can_redeliver: d.delivered_at.is_some() || d.failed_at.is_some(),
    }
}

async fn render(
    state: &AppState,
    current: CurrentTenant,
    form: FormState,
    shown_once: Option<ShownOnce>,
) -> AppResult<Response> {
    current.tenant.require_admin("manage webhooks")?;
    let CurrentTenant {
        user,
        session,
        tenant,
    } = current;
    let ws = tenant.workspace_id;
    let layout = Layout::signed_in(state, &session, &user, &tenant).await?;
    let url = state.store.get_webhook_url(ws).await?;
    let deliveries = state
        .store
        .list_deliveries(ws, RECENT)
        .await?
        .iter()
        .map(|d| row(&layout, d))
        .collect();
    let form = if form.value("url").is_empty() && form.error("url").is_none() {
        FormState::with_values([("url", url.as_deref().unwrap_or(""))])
    } else {
        form
    };
    Ok(WebhooksPage {
        layout,
        workspace_name: tenant.workspace_name.clone(),
        url,
        form,
        shown_once,
        deliveries,
        events: EVENTS,
    }
    .into_response())
}

pub async fn page(State(state): State<AppState>, current: CurrentTenant) -> AppResult<Response> {
    render(&state, current, FormState::default(), None).await
}

/// Saving issues a new signing secret, shown in this response only (never
/// in the session). A bad URL re-renders the form (422) with the typed
/// value and the error beside it; nothing changes.
pub async fn save(
    State(state): State<AppState>,
    current: CurrentTenant,
    form: CsrfForm<FormFields>,
) -> AppResult<Response> {
    let typed = form.form.first("url").map(|v| v.as_str()).unwrap_or("");
    match crate::webhooks::set_endpoint(&state, &current.tenant, typed).await {
        Ok((url, secret)) => {
            let shown = ShownOnce {
                message: format!(
                    "Deliveries to {url} are signed with this secret. Copy it now; it won't be shown again:"
                ),
                value: secret.expose().to_owned(),
                label: "Signing secret",
                testid: "signing-secret",
            };
            render(&state, current, FormState::default(), Some(shown)).await
        }
        Err(err @ AppError::Validation { .. }) => {
            let status = err.status();
            let form = FormState::with_values([("url", typed)]).with_error(&err, &["url"]);
            let page = render(&state, current, form, None).await?;
            Ok(with_status(status, page))
        }
        Err(err) => Err(err),
    }
}

/// Removes the endpoint and its secret (after a confirmation).
pub async fn remove(
    State(state): State<AppState>,
    current: CurrentTenant,
    form: CsrfForm<Confirmation>,
) -> AppResult<Response> {
    current.tenant.require_admin("manage webhooks")?;
    if !form.form.given() {
        let layout =
            Layout::signed_in(&state, &form.session, &current.user, &current.tenant).await?;
        let message = "Events stop being sent, and the signing secret is deleted. Setting an endpoint again issues a new one.";
        return Ok(ConfirmPage::new(
            layout,
            "Remove webhook",
            message,
            format!("{BACK}/remove"),
            BACK,
        )
        .render());
    }
    let ws = current.tenant.workspace_id;
    let audit = AuditEntry::new(Some(ws), Some(current.tenant.user_id), "webhook.delete");
    let outcome = match state.store.delete_webhook(ws, &audit).await? {
        true => Ok("Webhook removed.".to_owned()),
        false => Err(AppError::conflict("url", "no webhook configured")),
    };
    redirect_with_outcome(&form.session, BACK, outcome).await
}

/// Sends a delivered or given-up event again (after a confirmation). One
/// still being retried is left alone: it is on its way.
pub async fn redeliver(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path(id): Path<String>,
    form: CsrfForm<Confirmation>,
) -> AppResult<Response> {
    current.tenant.require_admin("manage webhooks")?;
    let id = parse_path_id(&id, "delivery")?;
    let ws = current.tenant.workspace_id;
    if !form.form.given() {
        let delivery = state
            .store
            .list_deliveries(ws, i64::MAX)
            .await?
            .into_iter()
            .find(|d| d.id == id)
            .ok_or_else(|| AppError::not_found("delivery not found"))?;
        let layout =
            Layout::signed_in(&state, &form.session, &current.user, &current.tenant).await?;
        let message = format!(
            "The {} event is sent to the endpoint again, with the same delivery id, and retried if it fails.",
            delivery.event
        );
        return Ok(ConfirmPage::new(
            layout,
            "Redeliver",
            message,
            format!("{BACK}/deliveries/{id}/redeliver"),
            BACK,
        )
        .render());
    }
    let audit = AuditEntry::new(Some(ws), Some(current.tenant.user_id), "webhook.redeliver")
        .target("webhook_delivery", id);
    let outcome = match state.store.redeliver(ws, id, &audit).await? {
        Redelivery::Queued => Ok("Queued for redelivery.".to_owned()),
        Redelivery::StillPending => Err(AppError::conflict(
            "delivery",
            "this delivery is still being sent; redeliver it once it has succeeded or failed",
        )),
        Redelivery::NotFound => Err(AppError::not_found("delivery not found")),
    };
    redirect_with_outcome(&form.session, BACK, outcome).await
}
