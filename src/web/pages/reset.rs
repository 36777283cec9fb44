//! `/reset/{token}`: a password reset link an admin handed out.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{Layout, with_status};
use crate::app::AppState;
use crate::auth::extract::MaybeUser;
use crate::auth::{reset, session};
use crate::error::{AppError, AppResult};
use crate::web::extract::CsrfForm;

#[derive(Template, WebTemplate)]
#[template(path = "reset.html")]
pub struct ResetPage {
    layout: Layout,
    token: String,
    email: String,
    error: Option<String>,
    done: bool,
    min_password_length: usize,
}

pub async fn show(
    State(state): State<AppState>,
    maybe: MaybeUser,
    Path(token): Path<String>,
) -> AppResult<Response> {
    let link = reset::find_link(&state.store, &token).await?;
    Ok(ResetPage {
        layout: Layout::anonymous(&maybe.session).await?,
        token,
        email: link.email,
        error: None,
        done: false,
        min_password_length: state.settings.auth.min_password_length,
    }
    .into_response())
}

#[derive(Deserialize)]
pub struct ResetForm {
    password: String,
}

pub async fn submit(
    State(state): State<AppState>,
    Path(token): Path<String>,
    form: CsrfForm<ResetForm>,
) -> AppResult<Response> {
    let CsrfForm { form, session } = form;
    let min_password_length = state.settings.auth.min_password_length;
    let link = reset::find_link(&state.store, &token).await?;
    match reset::complete(&state.store, &token, &form.password, min_password_length).await {
        Ok(()) => {
            // Whoever is signed in on this browser is signed out too.
            session::end(&session).await?;
            Ok(ResetPage {
                layout: Layout {
                    csrf: String::new(),
                    nav: None,
                    flash: None,
                    zone: crate::tenancy::zone::Zone::utc(),
                },
                token: String::new(),
                email: link.email,
                error: None,
                done: true,
                min_password_length,
            }
            .into_response())
        }
        Err(err @ (AppError::Internal(_) | AppError::NotFound(_))) => Err(err),
        Err(err) => {
            let page = ResetPage {
                layout: Layout::anonymous(&session).await?,
                token,
                email: link.email,
                error: Some(err.to_string()),
                done: false,
                min_password_length,
            };
            Ok(with_status(err.status(), page))
        }
    }
}
