//! The Data Hub: a card per provider with its connection, and the forms
//! behind Connect / Disconnect / Change account / Test / admin actions.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use uuid::Uuid;

use super::kit::{ConfirmPage, Confirmation, is_confirmed};
use super::{Layout, parse_path_id, redirect_with_outcome};
use crate::app::AppState;
use crate::auth::extract::CurrentTenant;
use crate::connections::service::{self, Account, CredentialsInput, Reconnect};
use crate::connections::{ConnectionView, Status, Viewer};
use crate::error::{AppError, AppResult};
use crate::input::{FormFields, SingleLine};
use crate::oauth;
use crate::providers::HeaderSource;
use crate::web::api::connections::view;
use crate::web::extract::CsrfForm;

/// The connection cards (`/data` becomes the metrics dashboard).
pub const HUB: &str = super::CONNECTIONS;

pub struct HeaderField {
    pub key: String,
    pub label: String,
}

pub struct Card {
    pub key: String,
    pub name: String,
    pub category: String,
    pub connection: Option<ConnectionView>,
    pub status: &'static str,
    pub connected_by: Option<String>,
    pub oauth: bool,
    /// The deployment has the provider's OAuth app configured.
    pub configured: bool,
    pub credentials_flow: Option<&'static str>,
    pub header_fields: Vec<HeaderField>,
    pub has_accounts: bool,
    pub can_change: bool,
    /// Has objects the workers sync.
    pub syncable: bool,
    /// Its queued, running or waiting sync jobs.
    pub active_jobs: Vec<ActiveJob>,
    /// The connection's chosen accounts, named as the provider reports them.
    pub accounts: Vec<ChosenAccount>,
    /// The newest failed sync among the last finished one of each object.
    pub failed_sync: Option<FailedSync>,
    /// The card shows the workspace's connection, and the user may still
    /// connect their own account beside it.
    pub can_connect_own: bool,
    /// Inside the "Sync now" interval: when it can run again (workspace
    /// time), and when it last ran.
    pub sync_again_at: Option<String>,
}

/// A sync whose last run failed, as the card shows it.
pub struct FailedSync {
    pub job_id: Uuid,
    pub object: String,
    pub at: Option<time::OffsetDateTime>,
    /// The job's error (redacted when stored), cut to a card's length.
    pub excerpt: String,
}

/// How much of a job's error a card shows; the job page has all of it.
const ERROR_EXCERPT_CHARS: usize = 240;

fn excerpt(error: &str) -> String {
    crate::input::excerpt(error.trim(), ERROR_EXCERPT_CHARS)
}

/// A provider this server can't connect yet: no OAuth app configured and no
/// other way in. Listed once, with what an operator sets.
pub struct Unconfigured {
    pub name: String,
    pub env: Vec<String>,
}

pub struct ChosenAccount {
    /// The provider's name for it; its id until the accounts were listed.
    pub name: String,
    pub currency: Option<String>,
}

/// The chosen accounts of a connection with what `provider_accounts` knows.
fn chosen_accounts(
    connection: &crate::connections::Connection,
    known: &[crate::connections::accounts::ProviderAccount],
) -> Vec<ChosenAccount> {
    connection
        .selected_account_ids
        .iter()
        .map(|id| {
            let found = known
                .iter()
                .find(|a| a.connection_id == connection.id && &a.external_id == id);
            ChosenAccount {
                name: found.map_or_else(|| id.clone(), |a| a.name.clone()),
                currency: found.and_then(|a| a.currency.clone()),
            }
        })
        .collect()
}

pub struct ActiveJob {
    pub id: uuid::Uuid,
    pub object: String,
    pub status: String,
}

/// A member's personal connection as an admin sees it on the Data Hub.
pub struct PersonalRow {
    pub provider_key: String,
    pub provider: String,
    pub member: String,
    pub connection: ConnectionView,
}

#[derive(Template, WebTemplate)]
#[template(path = "data.html")]
pub struct DataPage {
    layout: Layout,
    cards: Vec<Card>,
    /// Providers not set up on this server, instead of cards without actions.
    unconfigured: Vec<Unconfigured>,
    banners: Vec<String>,
    oauth_enabled: bool,
    is_admin: bool,
    personal: Vec<PersonalRow>,
    /// Credentials forms start empty and never show secrets back.
    blank_form: super::kit::FormState,
}

pub async fn hub(State(state): State<AppState>, current: CurrentTenant) -> AppResult<Response> {
    let CurrentTenant {
        user,
        session,
        tenant,
    } = current;
    let members = state.store.list_members(tenant.workspace_id).await?;
    let mut cards = Vec::new();
    let mut banners = Vec::new();
    // One query for every card, not one per provider.
    let connections = state.store.list_connections(tenant.workspace_id).await?;
    let active_jobs = state.store.list_active_jobs(Viewer::from(&tenant)).await?;
    let known_accounts = state
        .store
        .list_provider_accounts(tenant.workspace_id)
        .await?;
    let outcomes = state
        .store
        .latest_sync_outcomes(Viewer::from(&tenant))
        .await?;
    let mut unconfigured = Vec::new();
    for provider in state.providers.iter() {
        let key = provider.meta.key.clone();
        let connection = service::pick(&connections, &tenant, &key);
        let view = connection.as_ref().map(|c| view(&state, &tenant, c));
        if let Some(v) = &view {
            match v.status {
                Status::NeedsReauth => banners.push(format!(
                    "Admin attention needed: {} must be reconnected ({}).",
                    provider.meta.display_name,
                    v.last_error
                        .clone()
                        .unwrap_or_else(|| "the provider no longer accepts its grant".into())
                )),
                Status::Disabled => banners.push(format!(
                    "{} is disabled by an admin.",
                    provider.meta.display_name
                )),
                _ => {}
            }
        }
        let status = view.as_ref().map_or(Status::NotConnected, |v| v.status);
        let connected_by = view
            .as_ref()
            .and_then(|v| v.connected_by)
            .and_then(|id| members.iter().find(|m| m.user_id == id))
            .map(|m| m.name.clone());
        let can_change = match &connection {
            Some(c) => c.owner_user_id == Some(user.id) || tenant.role.can_manage_members(),
            None => true,
        };
        let credentials_flow = if oauth::supports_flow(provider, "client_credentials") {
            Some("client_credentials")
        } else if oauth::supports_flow(provider, "api_key") {
            Some("api_key")
        } else {
            None
        };
        let oauth_flow = oauth::supports_flow(provider, "authorization_code");
        let configured = oauth::app_credentials(
            &state.settings,
            provider,
            state.sandbox_credentials.as_ref(),
        )
        .is_some();
        // Nothing to show or do on a card: one line in the list instead.
        if connection.is_none() && !(oauth_flow && configured) && credentials_flow.is_none() {
            unconfigured.push(Unconfigured {
                name: provider.meta.display_name.clone(),
                env: vec![
                    provider.meta.auth.client_id_env.clone(),
                    provider.meta.auth.client_secret_env.clone(),
                ],
            });
            continue;
        }
        let failed_sync = connection.and_then(|c| {
            outcomes
                .iter()
                .filter(|j| j.connection_id == Some(c.id))
                .find(|j| j.status() == crate::jobs::JobStatus::Failed)
                .map(|j| FailedSync {
                    job_id: j.id,
                    object: j.object.clone().unwrap_or_default(),
                    at: j.finished_at,
                    excerpt: excerpt(j.error.as_deref().unwrap_or("no error was recorded")),
                })
        });
        let can_connect_own = connection.is_some_and(|c| c.owner_user_id.is_none())
            && ((oauth_flow && configured) || credentials_flow.is_some());
        cards.push(Card {
            name: provider.meta.display_name.clone(),
            category: provider.meta.category.replace('_', " "),
            status: status.as_str(),
            connected_by,
            oauth: oauth_flow,
            configured,
            credentials_flow,
            header_fields: provider
                .meta
                .required_headers
                .iter()
                .filter(|h| h.source == HeaderSource::Connection)
                .map(|h| HeaderField {
                    key: h.key.clone(),
                    label: h.label.clone(),
                })
                .collect(),
            has_accounts: provider.meta.accounts.is_some(),
            accounts: connection
                .map(|c| chosen_accounts(c, &known_accounts))
                .unwrap_or_default(),
            connection: view,
            can_change,
            syncable: !provider.meta.objects.is_empty(),
            active_jobs: active_jobs
                .iter()
                .filter(|j| {
                    j.provider == key
                        && connection
                            .as_ref()
                            .is_some_and(|c| j.connection_id == Some(c.id))
                })
                .map(|j| ActiveJob {
                    id: j.id,
                    object: j.object.clone().unwrap_or_default(),
                    status: j.status.replace('_', " "),
                })
                .collect(),
            failed_sync,
            can_connect_own,
            sync_again_at: None,
            key,
        });
    }
    let layout = Layout::signed_in(&state, &session, &user, &tenant).await?;
    for card in cards.iter_mut().filter(|c| c.syncable) {
        let Some(c) = service::pick(&connections, &tenant, &card.key) else {
            continue;
        };
        let Some(provider) = state.providers.get(&card.key) else {
            continue;
        };
        let objects: Vec<&str> = provider
            .meta
            .objects
            .iter()
            .map(|o| o.key.as_str())
            .collect();
        let waits = crate::sync::service::too_soon(&state, &tenant, c, &objects).await?;
        card.sync_again_at = waits
            .iter()
            .map(|w| w.next_at)
            .max()
            .map(|t| layout.zone.at(&t));
    }
    let personal = members_personal(&state, &tenant, &connections, &members);
    // Connected first, then the sandbox (a fresh install's way to try
    // everything), then by name.
    cards.sort_by_key(|c| {
        (
            c.connection
                .as_ref()
                .is_none_or(|v| v.status == Status::NotConnected),
            c.key != "sandbox",
            c.name.to_lowercase(),
        )
    });
    unconfigured.sort_by_key(|u| u.name.to_lowercase());
    Ok(DataPage {
        layout,
        cards,
        unconfigured,
        banners,
        oauth_enabled: state.settings.oauth.enabled,
        is_admin: tenant.role.can_manage_members(),
        personal,
        blank_form: super::kit::FormState::default(),
    }
    .into_response())
}

/// For admins: members' personal connections, by status only (their data
/// and tokens are the members').
fn members_personal(
    state: &AppState,
    tenant: &crate::tenancy::Tenant,
    connections: &[crate::connections::Connection],
    members: &[crate::tenancy::Member],
) -> Vec<PersonalRow> {
    if !tenant.role.can_manage_members() {
        return Vec::new();
    }
    connections
        .iter()
        .filter(|c| !service::visible_to(c, tenant))
        .map(|c| {
            let v = view(state, tenant, c);
            PersonalRow {
                provider_key: c.provider.clone(),
                provider: state
                    .providers
                    .get(&c.provider)
                    .map_or_else(|| c.provider.clone(), |p| p.meta.display_name.clone()),
                member: c
                    .owner_user_id
                    .and_then(|id| members.iter().find(|m| m.user_id == id))
                    .map_or_else(|| "a former member".to_owned(), |m| m.name.clone()),
                connection: v,
            }
        })
        .collect()
}

#[derive(Template, WebTemplate)]
#[template(path = "accounts.html")]
pub struct AccountsPage {
    layout: Layout,
    provider_key: String,
    provider_name: String,
    connection_id: Uuid,
    accounts: Vec<Account>,
    selected: Vec<String>,
    multiple: bool,
}

impl AccountsPage {
    fn is_selected(&self, id: &str) -> bool {
        self.selected.iter().any(|s| s == id)
    }
}

pub async fn accounts_page(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path(provider): Path<String>,
) -> AppResult<Response> {
    let CurrentTenant {
        user,
        session,
        tenant,
    } = current;
    let c = service::resolve(&state, &tenant, &provider, None).await?;
    let accounts = service::list_accounts(&state, &c).await?;
    let p = state
        .providers
        .get(&provider)
        .ok_or_else(|| AppError::not_found("unknown provider"))?;
    let multiple = p
        .meta
        .accounts
        .as_ref()
        .and_then(|a| a.get("multiple"))
        .and_then(|m| m.as_bool())
        .unwrap_or(false);
    Ok(AccountsPage {
        layout: Layout::signed_in(&state, &session, &user, &tenant).await?,
        provider_name: p.meta.display_name.clone(),
        provider_key: provider,
        connection_id: c.id,
        selected: c.selected_account_ids.0.clone(),
        accounts,
        multiple,
    }
    .into_response())
}

/// Where a form on another page (the Integrations Hub) asks to land after
/// the action: only its own pages, anything else lands on the cards.
#[derive(serde::Deserialize, Default)]
pub struct ReturnTo {
    #[serde(default)]
    back: Option<SingleLine>,
}

impl ReturnTo {
    fn to(&self) -> String {
        back_to(self.back.as_deref())
    }
}

fn back_to(back: Option<&str>) -> String {
    match back {
        Some(b) if b.starts_with("/integrations/") && super::safe_next(Some(b)) == b => {
            b.to_owned()
        }
        _ => HUB.to_owned(),
    }
}

fn connection_id(pairs: &FormFields) -> AppResult<Option<Uuid>> {
    match pairs.first("connection_id").filter(|v| !v.is_empty()) {
        Some(raw) => parse_path_id(raw, "connection").map(Some),
        None => Ok(None),
    }
}

pub async fn select_accounts(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path(provider): Path<String>,
    form: CsrfForm<FormFields>,
) -> AppResult<Response> {
    let ids: Vec<String> = form.form.all("account_id").map(|v| v.to_string()).collect();
    let c = service::resolve(
        &state,
        &current.tenant,
        &provider,
        connection_id(&form.form)?,
    )
    .await?;
    let outcome = service::select_accounts(&state, &current.tenant, &c, &ids)
        .await
        .map(|c| format!("{} account(s) selected.", c.selected_account_ids.len()));
    let back = if outcome.is_ok() {
        HUB.to_owned()
    } else {
        format!("/data/{provider}/accounts")
    };
    redirect_with_outcome(&form.session, &back, outcome).await
}

pub async fn disconnect(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path(provider): Path<String>,
    form: CsrfForm<FormFields>,
) -> AppResult<Response> {
    let c = service::resolve_to_manage(
        &state,
        &current.tenant,
        &provider,
        connection_id(&form.form)?,
    )
    .await?;
    let back = back_to(form.form.first("back").map(|v| v.as_str()));
    if !is_confirmed(form.form.first("confirm").map(|v| v.as_str())) {
        let layout =
            Layout::signed_in(&state, &form.session, &current.user, &current.tenant).await?;
        let name = state
            .providers
            .get(&provider)
            .map_or_else(|| provider.clone(), |p| p.meta.display_name.clone());
        let message = format!(
            "Plugboard revokes the grant at {name} where it can and deletes the tokens; syncs of \
             this connection stop until someone connects it again."
        );
        let page = ConfirmPage::new(
            layout,
            format!("Disconnect {name}"),
            message,
            format!("/data/{provider}/disconnect"),
            back.clone(),
        )
        .hidden("connection_id", c.id.to_string());
        let page = if back == HUB {
            page
        } else {
            page.hidden("back", back.clone())
        };
        return Ok(page.render());
    }
    let outcome = service::disconnect(&state, &current.tenant, &c)
        .await
        .map(|c| match c.last_error {
            Some(e) => format!(
                "Disconnected. Revoking at the provider failed ({e}); the tokens were deleted here."
            ),
            None => "Disconnected.".to_owned(),
        });
    redirect_with_outcome(&form.session, &back, outcome).await
}

pub async fn test(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path(provider): Path<String>,
    form: CsrfForm<ReturnTo>,
) -> AppResult<Response> {
    let back = form.form.to();
    let outcome = service::test_connection(&state, &current.tenant, &provider)
        .await
        .and_then(|d| {
            let summary: Vec<String> = d
                .checks
                .iter()
                .map(|c| format!("{}: {}", c.name, c.message))
                .collect();
            if d.ok {
                Ok(format!("Test passed. {}", summary.join(" · ")))
            } else {
                Err(AppError::bad_request(
                    None,
                    format!("Test failed. {}", summary.join(" · ")),
                ))
            }
        });
    redirect_with_outcome(&form.session, &back, outcome).await
}

pub async fn credentials(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path(provider): Path<String>,
    form: CsrfForm<FormFields>,
) -> AppResult<Response> {
    let pairs = &form.form;
    let text = |name: &str| pairs.first(name).filter(|v| !v.is_empty()).cloned();
    let input = CredentialsInput {
        flow: text("flow"),
        client_id: text("client_id"),
        client_secret: text("client_secret"),
        api_key: text("api_key"),
        headers: pairs
            .iter()
            .filter_map(|(k, v)| {
                let name = SingleLine::parse(k.strip_prefix("header:")?).ok()?;
                Some((name, v.clone()))
            })
            .collect(),
        environment: text("environment"),
        ownership: text("ownership"),
        tenant_key: text("tenant_key"),
    };
    let outcome = service::connect_with_credentials(&state, &current.tenant, &provider, &input)
        .await
        .map(|c| format!("{} connected.", c.provider));
    redirect_with_outcome(&form.session, HUB, outcome).await
}

pub async fn admin_action(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path((id, action)): Path<(String, String)>,
    form: CsrfForm<ReturnTo>,
) -> AppResult<Response> {
    let id = parse_path_id(&id, "connection")?;
    let back = form.form.to();
    let outcome = match action.as_str() {
        "disable" => service::set_enabled(&state, &current.tenant, id, false)
            .await
            .map(|_| "Connection disabled.".to_owned()),
        "enable" => service::set_enabled(&state, &current.tenant, id, true)
            .await
            .map(|_| "Connection enabled.".to_owned()),
        // The owner's consent switch (not an admin action: only the owner can).
        "automations-on" | "automations-off" => {
            let allowed = action == "automations-on";
            service::set_automations_allowed(&state, &current.tenant, id, allowed)
                .await
                .map(|_| {
                    if allowed {
                        "Automations may now use this connection.".to_owned()
                    } else {
                        "Automations may no longer use this connection.".to_owned()
                    }
                })
        }
        "reconnect" => match service::reconnect(&state, &current.tenant, id).await {
            Ok(Reconnect::Redirect(started)) => {
                return Ok(Redirect::to(&started.auth_url).into_response());
            }
            Ok(Reconnect::Done(_)) => Ok("Reconnected.".to_owned()),
            Err(e) => Err(e),
        },
        _ => return Err(AppError::not_found("page not found")),
    };
    redirect_with_outcome(&form.session, &back, outcome).await
}

#[derive(Template, WebTemplate)]
#[template(path = "job.html")]
pub struct JobPage {
    layout: Layout,
    provider: String,
    object: String,
    status: String,
    requested: String,
    started: String,
    finished: String,
    duration: String,
    /// (key, label, value), in the order the log's last line states them.
    counts: Vec<(String, String, String)>,
    error: Option<String>,
    running: bool,
    /// One page of the log, oldest line first.
    log: Vec<crate::sync::leases::JobLogLine>,
    log_pages: LogPages,
    job_id: Uuid,
    /// Cancel / Retry are offered to those allowed (see `may_operate`).
    can_cancel: bool,
    can_retry: bool,
}

/// The log's pages: `LOG_PAGE` lines each, oldest first; without
/// `?log_page=` the last (newest) page is shown.
pub struct LogPages {
    pub page: usize,
    pub pages: usize,
    pub total: usize,
    pub first: usize,
    pub last: usize,
}

impl LogPages {
    pub fn numbers(&self) -> std::ops::RangeInclusive<usize> {
        1..=self.pages
    }
}

const LOG_PAGE: usize = 100;

#[derive(serde::Deserialize, Default)]
pub struct JobPageQuery {
    log_page: Option<SingleLine>,
}

pub async fn job_page(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path(id): Path<String>,
    crate::web::extract::ApiQuery(query): crate::web::extract::ApiQuery<JobPageQuery>,
) -> AppResult<Response> {
    let id = parse_path_id(&id, "job")?;
    let CurrentTenant {
        user,
        session,
        tenant,
    } = current;
    let job = crate::sync::service::job(&state, &tenant, id).await?;
    let mut log = state.store.job_logs(Viewer::from(&tenant), id).await?;
    let total = log.len();
    let pages = total.div_ceil(LOG_PAGE).max(1);
    // A hand-edited page number falls back to the newest page.
    let page = query
        .log_page
        .as_deref()
        .and_then(|p| p.trim().parse::<usize>().ok())
        .filter(|p| (1..=pages).contains(p))
        .unwrap_or(pages);
    let start = (page - 1).saturating_mul(LOG_PAGE).min(total);
    let end = start.saturating_add(LOG_PAGE).min(total);
    log.truncate(end);
    log.drain(..start);
    let log_pages = LogPages {
        page,
        pages,
        total,
        first: if total == 0 { 0 } else { start + 1 },
        last: end,
    };
    let status = job.status();
    let connection = match job.connection_id {
        Some(c) => state.store.get_connection(tenant.workspace_id, c).await?,
        None => None,
    };
    let may_operate = crate::sync::service::may_operate(&tenant, &job, connection.as_ref());
    let retryable = matches!(
        status,
        crate::jobs::JobStatus::Failed | crate::jobs::JobStatus::Cancelled
    ) && (job.kind == "sync" || job.metadata.0.get("handoff").is_some());
    let layout = Layout::signed_in(&state, &session, &user, &tenant).await?;
    let when = |t: Option<time::OffsetDateTime>| layout.zone.at_opt(&t, "—");
    let counts = job
        .counts
        .0
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), k.replace('_', " "), v.to_string()))
                .collect()
        })
        .unwrap_or_default();
    let duration = match super::jobs::run_seconds(&job, crate::storage::now()) {
        Some(s) if status.is_finished() => super::jobs::duration_text(s),
        Some(s) => format!("{} so far", super::jobs::duration_text(s)),
        None => "not started".to_owned(),
    };
    Ok(JobPage {
        requested: layout.zone.at(&job.created_at),
        started: when(job.started_at),
        finished: when(job.finished_at),
        duration,
        log_pages,
        layout,
        provider: job.provider.clone(),
        object: job.object.clone().unwrap_or_default(),
        status: status.as_str().to_owned(),
        counts,
        error: job.error.clone(),
        running: !status.is_finished(),
        log,
        job_id: job.id,
        can_cancel: may_operate && !status.is_finished(),
        can_retry: may_operate && retryable,
    }
    .into_response())
}

#[derive(serde::Deserialize)]
pub struct SyncForm {
    /// "yes" from an admin's "Force sync" button.
    #[serde(default)]
    force: Option<SingleLine>,
}

/// Sync now; inside the minimum interval nothing is queued and the hub
/// says when it can run again (admins get a "Force sync" button).
pub async fn sync_now(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path(provider): Path<String>,
    form: CsrfForm<SyncForm>,
) -> AppResult<Response> {
    let force = is_confirmed(form.form.force.as_deref());
    let queued =
        crate::sync::service::enqueue_now(&state, &current.tenant, &provider, None, force).await;
    match queued {
        Ok(jobs) => {
            if let [only] = jobs.as_slice() {
                return Ok(Redirect::to(&format!("/data/jobs/{}", only.job_id)).into_response());
            }
            let outcome = Ok(format!(
                "{} sync job(s) queued: {}.",
                jobs.len(),
                jobs.iter()
                    .map(|j| j.object.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            redirect_with_outcome(&form.session, HUB, outcome).await
        }
        Err(AppError::SyncTooSoon { message, .. }) => {
            let outcome = Err(AppError::conflict(
                "sync",
                format!("Not synced: {message}. Nothing was queued."),
            ));
            redirect_with_outcome(&form.session, HUB, outcome).await
        }
        Err(err) => redirect_with_outcome(&form.session, HUB, Err(err)).await,
    }
}

/// Retry from the job page, with the API's rules (cancel has its own
/// route, with a confirmation step).
pub async fn job_action(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path((id, action)): Path<(String, String)>,
    form: CsrfForm<serde::de::IgnoredAny>,
) -> AppResult<Response> {
    let id = parse_path_id(&id, "job")?;
    let back = format!("/data/jobs/{id}");
    match action.as_str() {
        "retry" => match crate::sync::service::retry(&state, &current.tenant, id).await {
            Ok(job) => Ok(Redirect::to(&format!("/data/jobs/{}", job.job_id)).into_response()),
            Err(err) => redirect_with_outcome(&form.session, &back, Err(err)).await,
        },
        _ => Err(AppError::not_found("page not found")),
    }
}

/// Cancels a queued or running job after a confirmation; who may cancel is
/// the sync service's rule.
pub async fn cancel_job(
    State(state): State<AppState>,
    current: CurrentTenant,
    Path(id): Path<String>,
    form: CsrfForm<Confirmation>,
) -> AppResult<Response> {
    let id = parse_path_id(&id, "job")?;
    let back = format!("/data/jobs/{id}");
    if !form.form.given() {
        let job = crate::sync::service::job(&state, &current.tenant, id).await?;
        let layout =
            Layout::signed_in(&state, &form.session, &current.user, &current.tenant).await?;
        let message = format!(
            "The {} sync of {} stops; pages it already stored are kept.",
            job.object.as_deref().unwrap_or("whole"),
            job.provider
        );
        let action = format!("/data/jobs/{id}/cancel");
        return Ok(ConfirmPage::new(layout, "Cancel job", message, action, back).render());
    }
    let outcome = crate::sync::service::cancel(&state, &current.tenant, id)
        .await
        .map(|_| "Job cancelled.".to_owned());
    redirect_with_outcome(&form.session, &back, outcome).await
}

#[cfg(test)]
mod tests {
    use super::excerpt;

    #[test]
    fn error_excerpts_are_bounded_on_character_boundaries() {
        assert_eq!(excerpt("  HTTP 400: bad  "), "HTTP 400: bad");
        let long = "é".repeat(300);
        let cut = excerpt(&long);
        assert_eq!(cut.chars().count(), 241);
        assert!(cut.ends_with('…'));
        assert_eq!(excerpt(&"x".repeat(240)), "x".repeat(240));
    }
}
