//! Background loops (workers, planner, keep-alive, webhook deliveries,
//! housekeeping) run supervised: a loop that panics is logged, counted and
//! restarted with backoff, instead of dying silently while the server
//! keeps answering as if all were well. `/api/sync/health` shows the count.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::sync::worker::{AbortOnDrop, panic_message};

/// First wait before a restart; doubles per consecutive failure.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// What this process knows of one loop.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoopHealth {
    pub name: String,
    pub running: bool,
    /// Times the loop failed and was started again.
    pub restarts: u32,
    pub last_failure: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_failure_at: Option<OffsetDateTime>,
}

/// This process's loops, by name.
#[derive(Debug, Default)]
pub struct Registry(Mutex<BTreeMap<String, LoopHealth>>);

impl Registry {
    fn update(&self, name: &str, change: impl FnOnce(&mut LoopHealth)) {
        // A poisoned lock only means a panic elsewhere mid-update: the
        // counts are still the best we have.
        let mut loops = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let entry = loops.entry(name.to_owned()).or_insert_with(|| LoopHealth {
            name: name.to_owned(),
            ..LoopHealth::default()
        });
        change(entry);
    }

    pub fn snapshot(&self) -> Vec<LoopHealth> {
        let loops = self.0.lock().unwrap_or_else(|p| p.into_inner());
        loops.values().cloned().collect()
    }
}

/// Runs `make()` as a task, starting it again after a panic (waiting
/// 1 s, 2 s, … up to 60 s between failures) until it returns or `stop`
/// turns true. Aborting the supervisor aborts the loop too.
pub async fn supervise<F, Fut>(
    name: String,
    registry: std::sync::Arc<Registry>,
    mut stop: watch::Receiver<bool>,
    mut make: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut backoff = FIRST_BACKOFF;
    loop {
        registry.update(&name, |h| h.running = true);
        let task = AbortOnDrop(tokio::spawn(make()));
        let outcome = wait_for(task).await;
        registry.update(&name, |h| h.running = false);
        let Some(failure) = outcome else { return };
        tracing::error!(task = %name, failure = %failure, wait_secs = backoff.as_secs(), "background task failed; restarting");
        registry.update(&name, |h| {
            h.restarts = h.restarts.saturating_add(1);
            h.last_failure = Some(failure);
            h.last_failure_at = Some(crate::storage::now());
        });
        if *stop.borrow() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return,
        }
        backoff = backoff.saturating_mul(2).min(MAX_BACKOFF);
    }
}

/// `None` when the task ended by itself (or was cancelled); the panic's
/// message when it failed.
async fn wait_for(mut task: AbortOnDrop<()>) -> Option<String> {
    match (&mut task.0).await {
        Ok(()) => None,
        Err(e) if e.is_panic() => Some(panic_message(e.into_panic().as_ref())),
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test(start_paused = true)]
    async fn a_panicking_loop_is_restarted_and_counted() {
        let registry = Arc::new(Registry::default());
        let (_stop_tx, stop) = watch::channel(false);
        let runs = Arc::new(AtomicU32::new(0));
        let counter = runs.clone();
        supervise("flaky".into(), registry.clone(), stop, move || {
            let counter = counter.clone();
            async move {
                // Fails twice, then finishes normally.
                if counter.fetch_add(1, Ordering::SeqCst) < 2 {
                    panic!("boom");
                }
            }
        })
        .await;
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        let health = registry.snapshot();
        assert_eq!(health.len(), 1);
        assert_eq!(health[0].restarts, 2);
        assert_eq!(health[0].last_failure.as_deref(), Some("panic: boom"));
        assert!(!health[0].running);
    }

    #[tokio::test(start_paused = true)]
    async fn stop_ends_the_wait_between_restarts() {
        let registry = Arc::new(Registry::default());
        let (stop_tx, stop) = watch::channel(false);
        let sup = tokio::spawn(supervise(
            "always".into(),
            registry.clone(),
            stop,
            || async { panic!("always") },
        ));
        tokio::time::sleep(Duration::from_millis(10)).await;
        let _ = stop_tx.send(true);
        tokio::time::timeout(Duration::from_secs(1), sup)
            .await
            .expect("the supervisor stops when asked")
            .expect("no panic escapes the supervisor");
        assert!(registry.snapshot()[0].restarts >= 1);
    }

    #[tokio::test]
    async fn dropping_the_guard_stops_its_task() {
        let beats = Arc::new(AtomicU32::new(0));
        let counter = beats.clone();
        let guard = AbortOnDrop(tokio::spawn(async move {
            loop {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
        tokio::time::sleep(Duration::from_millis(30)).await;
        drop(guard);
        tokio::time::sleep(Duration::from_millis(10)).await;
        let after_drop = beats.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert_eq!(beats.load(Ordering::SeqCst), after_drop);
    }
}
