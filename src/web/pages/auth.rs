use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::kit::FormState;
use super::{Layout, safe_next, with_status};
use crate::app::AppState;
use crate::auth::extract::{ClientIp, MaybeUser};
use crate::auth::{self, LoginInput, SignupInput, SignupPolicy, normalize_email, session};
use crate::error::{AppError, AppResult};
use crate::input::SingleLine;
use crate::storage::now;
use crate::tenancy::service::hash_token;
use crate::web::extract::{ApiQuery, CsrfForm};

pub struct InviteInfo {
    token: String,
    workspace_name: String,
    organization_name: String,
    role: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "signup.html")]
pub struct SignupPage {
    layout: Layout,
    form: FormState,
    invite: Option<InviteInfo>,
    min_password_length: usize,
}

impl SignupPage {
    fn min_len(&self) -> String {
        self.min_password_length.to_string()
    }

    fn password_hint(&self) -> String {
        format!("At least {} characters.", self.min_password_length)
    }
}

const SIGNUP_FIELDS: [&str; 4] = ["name", "email", "password", "organization"];

#[derive(Deserialize)]
pub struct SignupQuery {
    invite: Option<SingleLine>,
}

async fn invite_info(
    state: &AppState,
    token: Option<&str>,
) -> AppResult<Option<(InviteInfo, String)>> {
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let found = state
        .store
        .find_open_invite(&hash_token(token), now())
        .await?;
    Ok(found.map(|i| {
        (
            InviteInfo {
                token: token.to_owned(),
                workspace_name: i.workspace_name,
                organization_name: i.organization_name,
                role: i.role_text,
            },
            i.email,
        )
    }))
}

pub async fn signup_page(
    State(state): State<AppState>,
    maybe: MaybeUser,
    ApiQuery(query): ApiQuery<SignupQuery>,
) -> AppResult<Response> {
    if maybe.user.is_some() && query.invite.is_none() {
        return Ok(Redirect::to("/").into_response());
    }
    let invite = invite_info(&state, query.invite.as_deref()).await?;
    if query.invite.is_some() && invite.is_none() {
        return Err(AppError::not_found(
            "this invite link is invalid, expired or already used",
        ));
    }
    let email = invite.as_ref().map(|(_, e)| e.clone()).unwrap_or_default();
    Ok(SignupPage {
        layout: Layout::anonymous(&maybe.session).await?,
        form: FormState::with_values([("email", email.as_str())]),
        invite: invite.map(|(i, _)| i),
        min_password_length: state.settings.auth.min_password_length,
    }
    .into_response())
}

pub async fn signup_submit(
    State(state): State<AppState>,
    form: CsrfForm<SignupInput>,
) -> AppResult<Response> {
    let CsrfForm {
        form: input,
        session,
    } = form;
    match auth::signup(
        &state.store,
        &SignupPolicy::from_settings(&state.settings),
        &input,
    )
    .await
    {
        Ok(created) => {
            session::begin(&session, created.user_id, Some(created.workspace_id)).await?;
            session::flash(
                &session,
                session::FlashKind::Success,
                "Welcome to Plugboard.",
            )
            .await?;
            Ok(Redirect::to("/").into_response())
        }
        Err(err @ AppError::Internal(_)) => Err(err),
        Err(err) => {
            let status = err.status();
            let invite = invite_info(&state, input.invite_token.as_deref())
                .await?
                .map(|(i, _)| i);
            let page = SignupPage {
                layout: Layout::anonymous(&session).await?,
                // The password is never sent back.
                form: FormState::with_values([
                    ("name", input.name.as_str()),
                    ("email", input.email.as_str()),
                    (
                        "organization",
                        input.organization.as_deref().unwrap_or_default(),
                    ),
                ])
                .with_error(&err, &SIGNUP_FIELDS),
                invite,
                min_password_length: state.settings.auth.min_password_length,
            };
            Ok(with_status(status, page))
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "login.html")]
pub struct LoginPage {
    layout: Layout,
    form: FormState,
    next: String,
    signup_open: bool,
}

#[derive(Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

pub async fn login_page(
    State(state): State<AppState>,
    maybe: MaybeUser,
    ApiQuery(query): ApiQuery<LoginQuery>,
) -> AppResult<Response> {
    let next = safe_next(query.next.as_deref());
    if maybe.user.is_some() {
        return Ok(Redirect::to(&next).into_response());
    }
    Ok(LoginPage {
        layout: Layout::anonymous(&maybe.session).await?,
        form: FormState::default(),
        next,
        signup_open: state.settings.auth.allow_signup,
    }
    .into_response())
}

#[derive(Deserialize)]
pub struct LoginForm {
    email: SingleLine,
    password: String,
    next: Option<String>,
}

pub async fn login_submit(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    form: CsrfForm<LoginForm>,
) -> AppResult<Response> {
    let CsrfForm { form, session } = form;
    let next = safe_next(form.next.as_deref());
    let input = LoginInput {
        email: form.email,
        password: form.password,
    };
    let outcome = match state
        .login_throttle
        .check(ip, &normalize_email(&input.email))
    {
        Ok(()) => auth::authenticate(&state.store, &input).await,
        Err(limited) => Err(limited),
    };
    match outcome {
        Ok(user) => {
            session::begin(&session, user.id, None).await?;
            Ok(Redirect::to(&next).into_response())
        }
        Err(err @ AppError::Internal(_)) => Err(err),
        Err(err) => {
            let status = err.status();
            let retry_after = match &err {
                AppError::RateLimited { retry_after_secs } => Some(*retry_after_secs),
                _ => None,
            };
            let page = LoginPage {
                layout: Layout::anonymous(&session).await?,
                // Which of the two was wrong is not said: no field.
                form: FormState::with_values([("email", input.email.as_str())])
                    .with_error(&err, &[]),
                next,
                signup_open: state.settings.auth.allow_signup,
            };
            let mut response = with_status(status, page);
            if let Some(secs) = retry_after
                && let Ok(v) = secs.to_string().parse()
            {
                response
                    .headers_mut()
                    .insert(axum::http::header::RETRY_AFTER, v);
            }
            Ok(response)
        }
    }
}

pub async fn logout(form: CsrfForm<serde::de::IgnoredAny>) -> AppResult<Response> {
    session::end(&form.session).await?;
    Ok(Redirect::to("/login").into_response())
}
