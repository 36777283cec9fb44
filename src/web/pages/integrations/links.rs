//! Connect links on the provider page: create one (its URL and QR code are
//! in that response only), and revoke an open one after confirming.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use uuid::Uuid;

use super::{WHAT, provider_page};
use crate::app::AppState;
use crate::auth::extract::CurrentTenant;
use crate::connectlinks::{self, LinkRequest};
use crate::error::{AppError, AppResult};
use crate::input::FormFields;
use crate::web::extract::CsrfForm;
use crate::web::pages::kit::{ConfirmPage, Confirmation, FormState};
use crate::web::pages::{Layout, parse_path_id, redirect_with_outcome, with_status};

const FIELDS: &[&str] = &["owner", "environment"];

/// `owner` is `workspace` or a member's user id.
fn request(key: &str, fields: &FormFields) -> AppResult<LinkRequest> {
    let text = |name: &str| {
        fields
            .first(name)
            .map(|v| v.to_string())
            .filter(|v| !v.is_empty())
    };
    let connection_id = match text("connection_id") {
        Some(raw) => Some(parse_path_id(&raw, "connection")?),
        None => None,
    };
    let owner = text("owner").unwrap_or_else(|| "workspace".to_owned());
    let (ownership, user_id) = if owner == "workspace" {
        ("workspace", None)
    } else {
        let id = Uuid::parse_str(&owner)
            .map_err(|_| AppError::validation("owner", "choose the workspace or a member"))?;
        ("user", Some(id))
    };
    Ok(LinkRequest {
        provider: Some(key.to_owned()),
        ownership: Some(ownership.to_owned()),
        user_id,
        environment: text("environment"),
        connection_id,
    })
}

/// The service names the member `userId`; the form calls it `owner`.
fn form_error(err: AppError) -> AppError {
    match err {
        AppError::Validation {
            field: Some(f),
            message,
        } if f == "userId" || f == "ownership" => AppError::Validation {
            field: Some("owner".into()),
            message,
        },
        other => other,
    }
}

pub async fn link_create(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path(key): Path<String>,
    form: CsrfForm<FormFields>,
) -> AppResult<Response> {
    current.tenant.require_admin(WHAT)?;
    let outcome = match request(&key, &form.form) {
        Ok(req) => connectlinks::create(&state, &current.tenant, &req).await,
        Err(e) => Err(e),
    };
    match outcome {
        Ok(created) => {
            let mut page = provider_page(&state, &current, &key, FormState::default()).await?;
            page.created_link = Some(created);
            Ok(page.into_response())
        }
        Err(err @ AppError::Validation { .. }) => {
            let err = form_error(err);
            let kept = FIELDS.iter().filter_map(|name| {
                form.form
                    .first(name)
                    .map(|v| ((*name).to_owned(), v.to_string()))
            });
            let link_form = FormState::from_pairs(kept.collect()).with_error(&err, FIELDS);
            let mut page = provider_page(&state, &current, &key, FormState::default()).await?;
            page.link_form = link_form;
            Ok(with_status(err.status(), page))
        }
        Err(err) => Err(err),
    }
}

pub async fn link_revoke(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path((key, link_id)): Path<(String, String)>,
    form: CsrfForm<Confirmation>,
) -> AppResult<Response> {
    let id = parse_path_id(&link_id, "connect link")?;
    let back = format!("/integrations/{key}");
    if !form.form.given() {
        let link = connectlinks::list(&state, &current.tenant)
            .await?
            .into_iter()
            .find(|l| l.id == id && l.provider == key)
            .ok_or_else(|| AppError::not_found("connect link not found"))?;
        let layout =
            Layout::signed_in(&state, &form.session, &current.user, &current.tenant).await?;
        let whom = link
            .user_name
            .map_or_else(|| "any admin".to_owned(), |name| name.to_string());
        let message = format!(
            "The link for {whom} stops working at once; whoever has it gets \"not found\". This can't be undone."
        );
        let action = format!("{back}/connect-links/{id}/revoke");
        return Ok(ConfirmPage::new(layout, "Revoke link", message, action, back).render());
    }
    let outcome = connectlinks::revoke(&state, &current.tenant, id).await;
    redirect_with_outcome(
        &form.session,
        &back,
        outcome.map(|()| "Connect link revoked.".to_owned()),
    )
    .await
}
