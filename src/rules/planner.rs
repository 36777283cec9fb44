//! The planner: when a rule runs next, and queueing the syncs that are due.
//!
//! Runs are spread by up to ±10 % of the interval, so rules saved together
//! don't all hit a provider in the same second. [`plan_due`] claims due
//! rules in one transaction (on PostgreSQL `FOR UPDATE SKIP LOCKED`, on
//! SQLite inside `BEGIN IMMEDIATE`), moving each to its next run, so two
//! server processes never queue the same slot twice; the jobs are queued
//! after the claim commits. A crash in between loses that one slot (the next
//! one still runs): at most once per slot, never twice.

use chrono::{DateTime, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use rand::Rng;
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::store::{Claim, DueRule};
use super::{InitialSyncMode, Interval, MIN_INTERVAL_MINUTES, Rule, format_mark};
use crate::app::AppState;
use crate::connections::Status;
use crate::jobs::JobStatus;
use crate::jobs::store::{Created, NewJob};

/// Largest jitter, as a fraction of the interval.
pub const MAX_JITTER: f64 = 0.1;
/// Rules claimed per transaction.
const BATCH: i64 = 100;
/// Batches per pass: a backlog larger than this waits for the next pass.
const MAX_BATCHES: usize = 50;

/// Standard five-field cron (minute granularity, no seconds or years).
pub fn parse_cron(expr: &str) -> Result<Cron, String> {
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(expr.trim())
        .map_err(|e| {
            format!("not a five-field cron expression (minute hour day month weekday): {e}")
        })
}

fn to_chrono(t: OffsetDateTime) -> Option<DateTime<Utc>> {
    DateTime::<Utc>::from_timestamp(t.unix_timestamp(), 0)
}

fn from_chrono(t: DateTime<Utc>) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(t.timestamp()).ok()
}

/// The first occurrence strictly after `after`.
fn occurrence_after(cron: &Cron, after: OffsetDateTime) -> Option<OffsetDateTime> {
    let next = cron.find_next_occurrence(&to_chrono(after)?, false).ok()?;
    from_chrono(next)
}

/// Accepts a cron expression that parses, fires at all, and never fires
/// twice within the minimum interval.
pub fn check_cron(expr: &str) -> Result<(), String> {
    let cron = parse_cron(expr)?;
    let start = crate::storage::now();
    let horizon = start + Duration::days(400);
    let Some(mut previous) = occurrence_after(&cron, start) else {
        return Err("this cron expression never fires".to_owned());
    };
    // A sample of the schedule: enough to see bursts in any hour, day or
    // month pattern, bounded for yearly ones.
    for _ in 0..100 {
        let Some(next) = occurrence_after(&cron, previous) else {
            break;
        };
        if next - previous < Duration::minutes(i64::from(MIN_INTERVAL_MINUTES)) {
            return Err(format!(
                "this cron expression fires more often than every {MIN_INTERVAL_MINUTES} minutes \
                 (e.g. {} and {})",
                format_mark(previous),
                format_mark(next)
            ));
        }
        if next > horizon {
            break;
        }
        previous = next;
    }
    Ok(())
}

fn whole_seconds(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(0).unwrap_or(t)
}

/// When a rule runs next after `after`, with `jitter` (clamped to ±10 %)
/// as a fraction of the interval. Minutes: `after + interval × (1 + jitter)`.
/// Cron: an occurrence plus `jitter` × the gap to the one following it,
/// taking the first occurrence whose whole jitter window lies after
/// `after` — so a run claimed early (negative jitter) is never followed by
/// a second run for the same occurrence. `None` for a cron expression that
/// doesn't parse or never fires. Whole seconds, UTC, as stored.
pub fn next_run(interval: &Interval, after: OffsetDateTime, jitter: f64) -> Option<OffsetDateTime> {
    let jitter = if jitter.is_finite() {
        jitter.clamp(-MAX_JITTER, MAX_JITTER)
    } else {
        0.0
    };
    let after = whole_seconds(after.to_offset(time::UtcOffset::UTC));
    match interval {
        Interval::Minutes(minutes) => {
            let base = i64::from((*minutes).max(1)) * 60;
            // Rounding can't leave the ±10 % window: its bounds are whole seconds.
            let offset = (base as f64 * (1.0 + jitter)).round() as i64;
            Some(after + Duration::seconds(offset.max(1)))
        }
        Interval::Cron(expr) => {
            let cron = parse_cron(expr).ok()?;
            let mut occurrence = occurrence_after(&cron, after)?;
            for _ in 0..64 {
                let following = occurrence_after(&cron, occurrence)?;
                let gap = (following - occurrence).whole_seconds() as f64;
                let earliest = occurrence + Duration::seconds((-MAX_JITTER * gap).round() as i64);
                if earliest > after {
                    return Some(occurrence + Duration::seconds((jitter * gap).round() as i64));
                }
                occurrence = following;
            }
            None
        }
    }
}

/// The next `n` times `interval` comes due after `after`, without jitter:
/// what a form previews. Empty for a cron expression that doesn't parse.
pub fn upcoming(interval: &Interval, after: OffsetDateTime, n: usize) -> Vec<OffsetDateTime> {
    let after = whole_seconds(after.to_offset(time::UtcOffset::UTC));
    let mut out = Vec::with_capacity(n);
    match interval {
        Interval::Minutes(minutes) => {
            let step = Duration::minutes(i64::from((*minutes).max(1)));
            let mut at = after;
            for _ in 0..n {
                at += step;
                out.push(at);
            }
        }
        Interval::Cron(expr) => {
            let Ok(cron) = parse_cron(expr) else {
                return out;
            };
            let mut at = after;
            for _ in 0..n {
                let Some(next) = occurrence_after(&cron, at) else {
                    break;
                };
                out.push(next);
                at = next;
            }
        }
    }
    out
}

/// A uniformly random jitter in [-10 %, +10 %].
pub fn random_jitter() -> f64 {
    rand::rng().random_range(-MAX_JITTER..=MAX_JITTER)
}

/// What one planner pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanReport {
    /// Due rules this pass took (each moved to its next run).
    pub claimed: usize,
    /// Jobs queued.
    pub queued: Vec<Uuid>,
    /// Rules whose connection+object already had a job queued or running.
    pub existing: usize,
    /// Due rules not queued: unusable connection, disabled, or unreadable.
    pub skipped: usize,
}

/// Decides, inside the claim transaction, what a due rule gets.
fn decide(due: &DueRule, now: OffsetDateTime) -> Claim {
    let rule: Rule = match serde_json::from_value(due.rule.0.clone()) {
        Ok(rule) => rule,
        Err(err) => {
            // Stored rules were validated; one that no longer reads is
            // parked (no next run) rather than retried every pass.
            tracing::error!(rule_id = %due.id, error = %err, "sync rule unreadable; not scheduling it");
            return Claim::skip(None);
        }
    };
    if !rule.enabled {
        return Claim::skip(None);
    }
    let next = next_run(&rule.interval, now, random_jitter());
    if next.is_none() {
        tracing::error!(rule_id = %due.id, "sync rule schedule has no next run; not scheduling it");
    }
    if !Status::parse(&due.connection_status).usable() {
        tracing::info!(
            rule_id = %due.id,
            status = %due.connection_status,
            "sync rule due but its connection is not usable; skipping this run"
        );
        return Claim::skip(next);
    }
    // The first run decides where delta reads start; a dry run writes
    // nothing, not even the starting mark.
    let seed_mark = match (due.first_run && !rule.dry_run, rule.initial_sync_mode) {
        (true, InitialSyncMode::DeltaOnlyAfterDate) => rule.initial_sync_since.clone(),
        (true, InitialSyncMode::DeltaOnlyFromNow) => Some(format_mark(now)),
        _ => None,
    };
    Claim {
        next_run_at: next,
        seed_mark,
        enqueue: true,
    }
}

/// The job's `metadata`: what the worker needs of the rule, camelCase.
pub fn job_metadata(due: &DueRule) -> serde_json::Value {
    let mut metadata = rule_metadata(due.id, due.revision, &due.rule.0);
    if let Some(rule) = metadata.get_mut("rule").and_then(Value::as_object_mut) {
        rule.insert("firstRun".to_owned(), json!(due.first_run));
        rule.insert("slot".to_owned(), json!(format_mark(due.next_run_at)));
    }
    metadata
}

/// A rule as job metadata, for planned runs and for "Sync now" alike.
pub fn rule_metadata(id: uuid::Uuid, revision: i32, r: &serde_json::Value) -> serde_json::Value {
    json!({
        "rule": {
            "id": id,
            "revision": revision,
            "behaviour": r["behaviour"],
            "dryRun": r["dryRun"],
            "initialSyncMode": r["initialSyncMode"],
            "initialSyncSince": r["initialSyncSince"],
            "fields": r["fields"],
            "filters": r["filters"],
            "conflictPolicy": r["conflictPolicy"],
            "deletionPolicy": r["deletionPolicy"],
            "includeSubprojects": r["includeSubprojects"],
        }
    })
}

/// Same rule, same revision, same slot: same key. An edited rule (new
/// revision) is a different job, so it is reprocessed.
pub fn idempotency_key(due: &DueRule) -> String {
    format!(
        "rule:{}:rev:{}:slot:{}",
        due.id,
        due.revision,
        format_mark(due.next_run_at)
    )
}

/// Claims every rule due at `now` and queues one sync job for each.
pub async fn plan_due(state: &AppState, now: OffsetDateTime) -> anyhow::Result<PlanReport> {
    let mut report = PlanReport::default();
    if !state.settings.sync.enabled {
        // Switched off: rules stay due and run once syncing is back.
        return Ok(report);
    }
    let now = whole_seconds(now.to_offset(time::UtcOffset::UTC));
    let decide_at = move |due: &DueRule| decide(due, now);
    for _ in 0..MAX_BATCHES {
        let claimed = state.store.claim_due_rules(now, BATCH, &decide_at).await?;
        let batch_len = claimed.len();
        report.claimed += batch_len;
        for (due, claim) in claimed {
            if !claim.enqueue {
                report.skipped += 1;
                continue;
            }
            let key = idempotency_key(&due);
            let created = state
                .store
                .create_job(&NewJob {
                    id: Uuid::now_v7(),
                    workspace_id: due.workspace_id,
                    connection_id: Some(due.connection_id),
                    provider: &due.provider,
                    object: Some(&due.object),
                    kind: "sync",
                    status: JobStatus::Queued,
                    idempotency_key: Some(&key),
                    metadata: job_metadata(&due),
                    requested_by: None,
                    at: now,
                })
                .await;
            match created {
                Ok(Created::New(id)) => report.queued.push(id),
                Ok(Created::Existing(id)) => {
                    tracing::info!(rule_id = %due.id, job_id = %id, "sync rule due while a sync of its object is still queued or running; leaving that one");
                    report.existing += 1;
                }
                // One rule's failure doesn't stop the others.
                Err(err) => {
                    tracing::error!(rule_id = %due.id, error = %err, "queueing a sync for a rule failed; its slot is skipped");
                    report.skipped += 1;
                }
            }
        }
        if (batch_len as i64) < BATCH {
            break;
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const SAMPLES: usize = 5_000;
    // Each cron sample parses and searches: fewer keep the test quick.
    const CRON_SAMPLES: usize = 1_000;

    #[test]
    fn minutes_stay_within_ten_percent() {
        let after = datetime!(2026-03-10 08:17:23.5 UTC);
        let mut below = false;
        let mut above = false;
        for minutes in [5u32, 7, 60, 1440] {
            let base = i64::from(minutes) * 60;
            for _ in 0..SAMPLES {
                let next = next_run(&Interval::Minutes(minutes), after, random_jitter()).unwrap();
                let delta = (next - whole_seconds(after)).whole_seconds();
                assert!(
                    (base - base / 10..=base + base / 10).contains(&delta),
                    "{minutes} min: {delta} s"
                );
                assert_eq!(next.nanosecond(), 0);
                below |= delta < base;
                above |= delta > base;
            }
        }
        assert!(below && above, "jitter goes both ways");
        // The bounds themselves, and out-of-range jitter clamped to them.
        let at = |j| next_run(&Interval::Minutes(60), after, j).unwrap() - whole_seconds(after);
        assert_eq!(at(0.1), Duration::minutes(66));
        assert_eq!(at(-0.1), Duration::minutes(54));
        assert_eq!(at(5.0), Duration::minutes(66));
        assert_eq!(at(f64::NAN), Duration::minutes(60));
    }

    #[test]
    fn cron_stays_within_ten_percent_of_its_gap() {
        let cases = [
            // hourly at :30, gap 1 h
            ("30 * * * *", 3600),
            // every 6 hours, gap 6 h
            ("0 */6 * * *", 6 * 3600),
            // daily at 02:00, gap 1 day
            ("0 2 * * *", 86_400),
        ];
        let after = datetime!(2026-03-10 08:17:00 UTC);
        for (expr, gap) in cases {
            let cron = parse_cron(expr).unwrap();
            let interval = Interval::Cron(expr.into());
            for _ in 0..CRON_SAMPLES {
                let next = next_run(&interval, after, random_jitter()).unwrap();
                assert!(next > after, "{expr}: {next}");
                // The nearest occurrence to `next` is the one it jitters.
                let occurrence =
                    occurrence_after(&cron, next - Duration::seconds(gap / 2)).unwrap();
                let off = (next - occurrence).whole_seconds().abs();
                assert!(
                    off <= gap / 10,
                    "{expr}: {next} is {off} s from {occurrence}"
                );
            }
        }
        let hourly = Interval::Cron("0 * * * *".into());
        assert_eq!(
            next_run(&hourly, after, 0.0),
            Some(datetime!(2026-03-10 09:00:00 UTC))
        );
        assert_eq!(
            next_run(&hourly, after, -0.1),
            Some(datetime!(2026-03-10 08:54:00 UTC))
        );
        assert_eq!(
            next_run(&hourly, after, 0.1),
            Some(datetime!(2026-03-10 09:06:00 UTC))
        );
    }

    #[test]
    fn an_early_cron_run_is_not_followed_by_another_for_the_same_occurrence() {
        let hourly = Interval::Cron("0 * * * *".into());
        // Claimed at 08:54 (the 09:00 slot jittered early): next is 10:00's.
        for _ in 0..CRON_SAMPLES {
            let next =
                next_run(&hourly, datetime!(2026-03-10 08:54:00 UTC), random_jitter()).unwrap();
            assert!(
                next >= datetime!(2026-03-10 09:54:00 UTC)
                    && next <= datetime!(2026-03-10 10:06:00 UTC),
                "{next}"
            );
        }
    }

    #[test]
    fn cron_checks() {
        assert!(check_cron("*/5 * * * *").is_ok());
        assert!(check_cron("0 9 * * MON-FRI").is_ok());
        assert!(check_cron("@daily").is_ok());
        assert!(check_cron("0 0 1 1 *").is_ok());
        assert!(check_cron("*/4 * * * *").unwrap_err().contains("5 minutes"));
        assert!(check_cron("0,1 3 * * *").unwrap_err().contains("5 minutes"));
        assert!(check_cron("0 0 30 2 *").unwrap_err().contains("never"));
        assert!(check_cron("0 0 * * * *").is_err(), "no seconds field");
        assert!(check_cron("61 * * * *").is_err());
        assert!(check_cron("").is_err());
        assert_eq!(
            next_run(
                &Interval::Cron("nonsense".into()),
                crate::storage::now(),
                0.0
            ),
            None
        );
    }
}
