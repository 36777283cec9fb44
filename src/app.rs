//! Application context and server lifecycle.

use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower_sessions::ExpiredDeletion;

use dashmap::DashMap;
use uuid::Uuid;

use crate::auth::session::DbSessionStore;
use crate::auth::throttle::LoginThrottle;
use crate::config::Settings;
use crate::oauth::AppCredentials;
use crate::outbound::Outbound;
use crate::providers::ProviderRegistry;
use crate::storage::{self, DynStore};
use crate::vault::{self, KeyRing, KeySource};

/// Everything a request handler may need, shared behind one `Arc`.
pub struct AppContext {
    pub settings: Settings,
    pub store: DynStore,
    pub keys: KeyRing,
    pub providers: ProviderRegistry,
    pub login_throttle: LoginThrottle,
    /// Per-service-key request budget for the internal API.
    pub key_limiter: crate::internal::KeyLimiter,
    pub outbound: Outbound,
    /// One in-process lock per connection being refreshed (see
    /// `connections::tokens`); the database lease covers other processes.
    pub refresh_locks: DashMap<Uuid, Arc<tokio::sync::Mutex<()>>>,
    /// Identifies this process as a refresh-lease holder.
    pub instance_id: Uuid,
    pub sandbox: Option<crate::sandbox::Sandbox>,
    /// The OAuth app the sandbox provider knows this server as.
    pub sandbox_credentials: Option<AppCredentials>,
    /// `PLUGBOARD_RATE_LIMITS`, parsed.
    pub rate_limit_overrides: std::collections::HashMap<String, crate::sync::limits::LimitOverride>,
    /// `PLUGBOARD_REDACT_FIELDS`, parsed.
    pub redact_fields: Vec<String>,
    /// `PLUGBOARD_HANDOFF`: provider → the automation's URL.
    pub handoff_targets: std::collections::HashMap<String, String>,
    /// This process's supervised background loops.
    pub background: Arc<crate::background::Registry>,
}

impl AppContext {
    /// The limits a provider's requests run under (provider.json + config).
    pub fn limits(&self, provider: &crate::providers::Provider) -> crate::sync::limits::Limits {
        crate::sync::limits::Limits::of(provider, &self.rate_limit_overrides)
    }
}

#[derive(Clone)]
pub struct AppState(Arc<AppContext>);

impl Deref for AppState {
    type Target = AppContext;
    fn deref(&self) -> &AppContext {
        &self.0
    }
}

impl AppState {
    pub fn new(ctx: AppContext) -> Self {
        AppState(Arc::new(ctx))
    }
}

/// Opens the database, applies migrations, loads keys and providers. Any
/// failure here stops the start with a message that names the cause.
pub async fn build_state(settings: Settings) -> anyhow::Result<AppState> {
    let (keys, source) = vault::load_key_ring(&settings)?;
    if let KeySource::DevFile { path, created } = &source {
        tracing::warn!(
            path = %path.display(),
            created,
            "no PLUGBOARD_ENCRYPTION_KEYS set: using a generated development key file. \
             Fine for trying Plugboard on SQLite; for real use run `plugboard keys generate` \
             and set PLUGBOARD_ENCRYPTION_KEYS"
        );
    }
    let providers = ProviderRegistry::load(&settings.providers.dir)
        .map_err(|report| anyhow::anyhow!("{report}"))?;
    let store = storage::connect(&settings).await?;
    store.migrate().await?;
    let login_throttle = LoginThrottle::new(
        settings.auth.login_attempts_per_ip_per_minute,
        settings.auth.login_attempts_per_account_per_minute,
    );
    let outbound = Outbound::new(&settings.http)?;
    let (sandbox, sandbox_credentials) = build_sandbox(&settings, &keys, &providers);
    if let Some(sandbox) = &sandbox {
        sandbox.attach_store(store.clone()).await?;
    }
    let key_limiter = crate::internal::KeyLimiter::new(settings.internal.requests_per_minute);
    let rate_limit_overrides = crate::sync::limits::parse_overrides(&settings.sync.rate_limits)
        .map_err(|e| anyhow::anyhow!("sync.rate_limits: {e}"))?;
    let redact_fields = settings
        .sync
        .redact_fields
        .split(',')
        .map(|f| f.trim().to_owned())
        .filter(|f| !f.is_empty())
        .collect();
    let handoff_targets = crate::sync::handoff::parse_targets(&settings.sync.handoff)
        .map_err(|e| anyhow::anyhow!("sync.handoff: {e}"))?;
    // The job claim reads these: a job of a connection waits while the
    // provider's limit of that connection's jobs already runs.
    let concurrency: Vec<(String, u32)> = providers
        .iter()
        .map(|p| {
            let limits = crate::sync::limits::Limits::of(p, &rate_limit_overrides);
            (p.meta.key.clone(), limits.max_concurrent_per_connection)
        })
        .collect();
    store
        .set_provider_limits(&concurrency, storage::now())
        .await?;
    Ok(AppState::new(AppContext {
        settings,
        store,
        keys,
        providers,
        login_throttle,
        key_limiter,
        outbound,
        refresh_locks: DashMap::new(),
        instance_id: Uuid::new_v4(),
        sandbox,
        sandbox_credentials,
        rate_limit_overrides,
        redact_fields,
        handoff_targets,
        background: Arc::default(),
    }))
}

/// The sandbox provider, when enabled and described in the providers
/// folder. Its client secret is derived from the primary key unless pinned
/// by env, so it is stable across restarts but not a published constant.
fn build_sandbox(
    settings: &Settings,
    keys: &KeyRing,
    providers: &ProviderRegistry,
) -> (Option<crate::sandbox::Sandbox>, Option<AppCredentials>) {
    use secrecy::ExposeSecret;
    let Some(provider) = providers.get("sandbox") else {
        return (None, None);
    };
    if !settings.sandbox_enabled() {
        return (None, None);
    }
    let auth = &provider.meta.auth;
    let client_id = settings
        .provider_env(&auth.client_id_env)
        .map(|v| v.expose_secret().to_owned())
        .unwrap_or_else(|| "plugboard-sandbox".to_owned());
    let client_secret = settings
        .provider_env(&auth.client_secret_env)
        .map(|v| v.expose_secret().to_owned())
        .unwrap_or_else(|| {
            keys.derive_key("sandbox-client-secret")
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        });
    let sandbox = crate::sandbox::Sandbox::new(crate::sandbox::SandboxConfig {
        public_url: settings.public_url(),
        client_id: client_id.clone(),
        client_secret: client_secret.clone(),
        token_lifetime_secs: settings.sandbox.token_lifetime_secs,
        dataset: crate::sandbox::Dataset::parse(&settings.sandbox.dataset).unwrap_or_default(),
        requests_per_minute: settings.sandbox.requests_per_minute,
        revisions: settings.sandbox.revisions,
    });
    let credentials = AppCredentials {
        client_id,
        client_secret: crate::vault::Secret::new(client_secret),
    };
    (Some(sandbox), Some(credentials))
}

/// A running server, for `main` and for the test harness.
pub struct Server {
    pub local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Server {
    /// Asks the server to stop and waits for in-flight requests to finish.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        self.handle.await.context("server task panicked")?
    }

    /// Resolves when the server task ends (after a signal, for `main`).
    pub async fn wait(self) -> anyhow::Result<()> {
        self.handle.await.context("server task panicked")?
    }
}

pub async fn spawn(state: AppState, listener: TcpListener) -> anyhow::Result<Server> {
    let local_addr = listener.local_addr()?;
    let (shutdown, mut shutdown_rx) = watch::channel(false);
    let router = crate::web::router(state.clone());

    let maintenance = supervised(&state, &shutdown, "maintenance", maintenance_loop);
    let deliveries = supervised(&state, &shutdown, "webhook deliveries", webhook_loop);
    let keepalive = supervised(&state, &shutdown, "refresh keep-alive", keepalive_loop);
    let planner = supervised(&state, &shutdown, "sync planner", planner_loop);
    let handoff_expiry = (!state.handoff_targets.is_empty()).then(|| {
        supervised(
            &state,
            &shutdown,
            "hand-off expiry",
            crate::sync::handoff::expiry_loop,
        )
    });
    let workers = tokio::spawn(crate::sync::worker::run_workers(
        state.clone(),
        state.settings.sync.workers,
        shutdown.subscribe(),
    ));
    let handle = tokio::spawn(async move {
        let stop_signal = async move {
            let _ = shutdown_rx.wait_for(|stop| *stop).await;
        };
        let serve = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(stop_signal);
        let result = serve.await.context("serving HTTP");
        maintenance.abort();
        deliveries.abort();
        keepalive.abort();
        if let Some(expiry) = handoff_expiry {
            expiry.abort();
        }
        // A pass in progress finishes, so a claimed slot gets its job.
        let _ = tokio::time::timeout(Duration::from_secs(5), planner).await;
        // Workers stop between pages; a job cut short resumes elsewhere.
        let _ = tokio::time::timeout(Duration::from_secs(10), workers).await;
        state.store.close().await;
        result
    });
    Ok(Server {
        local_addr,
        shutdown,
        handle,
    })
}

/// Spawns `run` under [`crate::background::supervise`]: restarted after a
/// panic, stopped with the server.
fn supervised<Fut>(
    state: &AppState,
    shutdown: &watch::Sender<bool>,
    name: &str,
    run: fn(AppState, watch::Receiver<bool>) -> Fut,
) -> tokio::task::JoinHandle<()>
where
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (loop_state, loop_stop) = (state.clone(), shutdown.clone());
    tokio::spawn(crate::background::supervise(
        name.to_owned(),
        state.background.clone(),
        shutdown.subscribe(),
        move || run(loop_state.clone(), loop_stop.subscribe()),
    ))
}

/// Sends connection events that are due.
async fn webhook_loop(state: AppState, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Err(err) = crate::webhooks::deliver_due(&state, 50).await {
                    tracing::warn!(error = %err, "webhook deliveries failed");
                }
            }
            _ = stop.changed() => return,
        }
    }
}

/// Queues the syncs that sync rules make due.
async fn planner_loop(state: AppState, mut stop: watch::Receiver<bool>) {
    let secs = state.settings.sync.planner_interval_secs;
    if secs == 0 {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_secs(secs));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                match crate::rules::planner::plan_due(&state, crate::storage::now()).await {
                    Ok(report) if report.claimed > 0 => tracing::info!(
                        claimed = report.claimed,
                        queued = report.queued.len(),
                        existing = report.existing,
                        skipped = report.skipped,
                        "planned due sync rules"
                    ),
                    Ok(_) => {}
                    Err(err) => tracing::warn!(error = %err, "planning sync rules failed"),
                }
            }
            _ = stop.changed() => return,
        }
    }
}

/// Keeps idle refresh tokens alive.
async fn keepalive_loop(state: AppState, mut stop: watch::Receiver<bool>) {
    let minutes = state.settings.oauth.keepalive_interval_minutes;
    if minutes == 0 {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_secs(u64::from(minutes) * 60));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let n = crate::connections::service::keep_alive(&state).await;
                if n > 0 {
                    tracing::info!(refreshed = n, "keep-alive refreshed idle connections");
                }
            }
            _ = stop.changed() => return,
        }
    }
}

/// Housekeeping: expired sessions and OAuth states, idle throttle entries.
async fn maintenance_loop(state: AppState, mut stop: watch::Receiver<bool>) {
    let sessions = DbSessionStore::new(state.store.clone());
    let mut tick = tokio::time::interval(Duration::from_secs(300));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Err(err) = sessions.delete_expired().await {
                    tracing::warn!(error = %err, "deleting expired sessions failed");
                }
                state.login_throttle.prune();
                state.key_limiter.prune();
                if let Err(err) = state.store.delete_expired_oauth_states(crate::storage::now()).await {
                    tracing::warn!(error = %err, "deleting expired OAuth states failed");
                }
                match crate::retention::prune(&state, crate::storage::now()).await {
                    Ok(p) if p != crate::retention::Pruned::default() => tracing::info!(
                        job_log_lines = p.job_log_lines,
                        audit_entries = p.audit_entries,
                        "pruned logs past their retention"
                    ),
                    Ok(_) => {}
                    Err(err) => tracing::warn!(error = %err, "pruning logs failed"),
                }
            }
            _ = stop.changed() => return,
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}

/// Runs the server until a signal, then drains in-flight requests for at
/// most `shutdown_grace_secs`.
pub async fn serve_until_signal(state: AppState) -> anyhow::Result<()> {
    let addr = format!(
        "{}:{}",
        state.settings.server.host, state.settings.server.port
    );
    let listener = TcpListener::bind(&addr)
        .await
        .with_context(|| format!("binding {addr} (server.host / server.port)"))?;
    let grace = Duration::from_secs(state.settings.server.shutdown_grace_secs);
    let public_url = state.settings.public_url();
    let server = spawn(state, listener).await?;
    tracing::info!(addr = %server.local_addr, %public_url, "plugboard listening");
    shutdown_signal().await;
    tracing::info!("shutdown requested; finishing in-flight requests");
    let _ = server.shutdown.send(true);
    match tokio::time::timeout(grace, server.handle).await {
        Ok(joined) => joined.context("server task panicked")?,
        Err(_) => {
            tracing::warn!(
                grace_secs = grace.as_secs(),
                "requests still running after the grace period; exiting"
            );
            Ok(())
        }
    }
}
