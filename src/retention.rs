//! Retention: job logs and the audit log are pruned in the background past
//! their configured age (`PLUGBOARD_JOB_LOG_RETENTION_DAYS`,
//! `PLUGBOARD_AUDIT_RETENTION_DAYS`; 0 keeps them for ever), a bounded
//! number of batches per pass so a first prune of a huge table never holds
//! a long transaction.

use time::{Duration, OffsetDateTime};

use crate::app::AppState;
use crate::impl_for_backends;

/// Rows deleted per statement.
const BATCH: i64 = 5_000;
/// Statements per table per pass; what remains goes next pass.
const BATCHES_PER_PASS: u32 = 40;

#[async_trait::async_trait]
pub trait RetentionStore {
    /// Deletes up to `limit` job log lines written before `before`.
    async fn prune_job_logs(&self, before: OffsetDateTime, limit: i64) -> sqlx::Result<u64>;
    /// Deletes up to `limit` audit entries recorded before `before`.
    async fn prune_audit(&self, before: OffsetDateTime, limit: i64) -> sqlx::Result<u64>;
}

impl_for_backends! {
    impl RetentionStore {
        async fn prune_job_logs(&self, before: OffsetDateTime, limit: i64) -> sqlx::Result<u64> {
            Ok(sqlx::query(
                "DELETE FROM job_logs WHERE id IN \
                 (SELECT id FROM job_logs WHERE created_at < $1 LIMIT $2)",
            )
            .bind(before)
            .bind(limit)
            .execute(&self.pool)
            .await?
            .rows_affected())
        }

        async fn prune_audit(&self, before: OffsetDateTime, limit: i64) -> sqlx::Result<u64> {
            Ok(sqlx::query(
                "DELETE FROM audit_log WHERE id IN \
                 (SELECT id FROM audit_log WHERE created_at < $1 LIMIT $2)",
            )
            .bind(before)
            .bind(limit)
            .execute(&self.pool)
            .await?
            .rows_affected())
        }
    }
}

/// What one pass deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub job_log_lines: u64,
    pub audit_entries: u64,
}

/// The cut-off for `days` of retention at `now`; `None` keeps everything.
fn cutoff(now: OffsetDateTime, days: u32) -> Option<OffsetDateTime> {
    (days > 0).then(|| {
        now.checked_sub(Duration::days(i64::from(days)))
            .unwrap_or(now)
    })
}

/// Deletes batches while they come back full, at most `BATCHES_PER_PASS`.
async fn drain<F, Fut>(mut delete: F) -> sqlx::Result<u64>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = sqlx::Result<u64>>,
{
    let mut total = 0u64;
    for _ in 0..BATCHES_PER_PASS {
        let n = delete().await?;
        total = total.saturating_add(n);
        if n < BATCH as u64 {
            break;
        }
    }
    Ok(total)
}

/// One pruning pass over both logs, as of `now`.
pub async fn prune(state: &AppState, now: OffsetDateTime) -> sqlx::Result<Pruned> {
    let settings = &state.settings.retention;
    let mut pruned = Pruned::default();
    if let Some(before) = cutoff(now, settings.job_log_days) {
        pruned.job_log_lines = drain(|| state.store.prune_job_logs(before, BATCH)).await?;
    }
    if let Some(before) = cutoff(now, settings.audit_days) {
        pruned.audit_entries = drain(|| state.store.prune_audit(before, BATCH)).await?;
    }
    Ok(pruned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn zero_days_keeps_everything() {
        let now = datetime!(2026-12-03 12:00 UTC);
        assert_eq!(cutoff(now, 0), None);
        assert_eq!(cutoff(now, 30), Some(datetime!(2026-11-03 12:00 UTC)));
        assert!(cutoff(OffsetDateTime::UNIX_EPOCH, u32::MAX).is_some());
    }
}
