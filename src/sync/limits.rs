//! Provider rate limits, from provider.json and overridable in config.
//!
//! - Requests per minute, per connection and per provider across every
//!   connection, are budgets in the database (GCRA, the algorithm governor
//!   uses in memory, as one conditional upsert), so every server and worker
//!   process on the same database draws from the same budget. An in-memory
//!   limiter can't do that, which is how hubs blow a provider's quota as
//!   soon as they run two processes.
//! - Per-connection concurrency is enforced where jobs are claimed: a job
//!   reads its pages one request at a time, so at most N running jobs per
//!   connection means at most N requests in flight.
//! - Quota headers (remaining / reset), where the provider sends them, slow
//!   a job down before the provider answers 429.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use time::OffsetDateTime;

use crate::impl_for_backends;
use crate::providers::Provider;

/// Config overrides for one provider; unset fields keep provider.json's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitOverride {
    pub requests_per_minute: Option<u32>,
    pub global_requests_per_minute: Option<u32>,
    pub max_concurrent_per_connection: Option<u32>,
}

/// Parses `provider:rpm=N,global=N,concurrency=N;provider2:…`.
pub fn parse_overrides(raw: &str) -> Result<HashMap<String, LimitOverride>, String> {
    let mut out = HashMap::new();
    for entry in raw.split(';').map(str::trim).filter(|e| !e.is_empty()) {
        let (provider, settings) = entry
            .split_once(':')
            .ok_or_else(|| format!("{entry:?}: expected provider:rpm=N,global=N,concurrency=N"))?;
        let provider = provider.trim();
        if provider.is_empty() {
            return Err(format!("{entry:?}: the provider key is empty"));
        }
        let mut o = LimitOverride::default();
        for setting in settings.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (name, value) = setting
                .split_once('=')
                .ok_or_else(|| format!("{setting:?}: expected name=number"))?;
            let value: u32 = value
                .trim()
                .parse()
                .ok()
                .filter(|v| *v > 0)
                .ok_or_else(|| format!("{setting:?}: expected a positive whole number"))?;
            match name.trim() {
                "rpm" => o.requests_per_minute = Some(value),
                "global" => o.global_requests_per_minute = Some(value),
                "concurrency" => o.max_concurrent_per_connection = Some(value),
                other => {
                    return Err(format!(
                        "{other:?}: unknown limit (expected rpm, global or concurrency)"
                    ));
                }
            }
        }
        out.insert(provider.to_owned(), o);
    }
    Ok(out)
}

/// Where the provider reports its remaining quota.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaHeaders {
    pub remaining: String,
    pub reset: String,
    pub reset_format: ResetFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetFormat {
    /// Seconds until the window resets.
    Seconds,
    EpochSeconds,
    EpochMillis,
}

/// The limits a provider's requests run under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub requests_per_minute: u32,
    pub burst: u32,
    pub global_requests_per_minute: u32,
    pub max_concurrent_per_connection: u32,
    pub quota: Option<QuotaHeaders>,
}

impl Limits {
    pub fn of(provider: &Provider, overrides: &HashMap<String, LimitOverride>) -> Limits {
        let meta = &provider.meta.rate_limits;
        let o = overrides
            .get(&provider.meta.key)
            .copied()
            .unwrap_or_default();
        Limits {
            requests_per_minute: o
                .requests_per_minute
                .unwrap_or(meta.requests_per_minute)
                .max(1),
            burst: meta.burst.max(1),
            global_requests_per_minute: o
                .global_requests_per_minute
                .unwrap_or(meta.global_requests_per_minute)
                .max(1),
            max_concurrent_per_connection: o
                .max_concurrent_per_connection
                .unwrap_or(meta.max_concurrent_per_connection)
                .max(1),
            quota: meta.quota_headers.as_ref().and_then(quota_headers),
        }
    }

    /// The per-connection budget.
    pub fn connection_rate(&self) -> Rate {
        Rate::per_minute(self.requests_per_minute, self.burst)
    }

    /// The provider-wide budget; its burst scales with the rate so one
    /// second's worth can go at once.
    pub fn global_rate(&self) -> Rate {
        let burst = self.burst.max(self.global_requests_per_minute.div_ceil(60));
        Rate::per_minute(self.global_requests_per_minute, burst)
    }
}

fn quota_headers(raw: &Value) -> Option<QuotaHeaders> {
    let reset_format = match raw.get("resetFormat")?.as_str()? {
        "seconds" => ResetFormat::Seconds,
        "epoch_seconds" => ResetFormat::EpochSeconds,
        "epoch_millis" => ResetFormat::EpochMillis,
        _ => return None,
    };
    Some(QuotaHeaders {
        remaining: raw.get("remaining")?.as_str()?.to_ascii_lowercase(),
        reset: raw.get("reset")?.as_str()?.to_ascii_lowercase(),
        reset_format,
    })
}

/// A GCRA budget: one request per `interval`, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub interval_us: i64,
    pub burst: u32,
}

impl Rate {
    pub fn per_minute(requests: u32, burst: u32) -> Rate {
        Rate {
            interval_us: 60_000_000 / i64::from(requests.max(1)),
            burst: burst.max(1),
        }
    }

    /// How far ahead of now the schedule may run: the burst.
    fn tolerance_us(&self) -> i64 {
        self.interval_us
            .saturating_mul(i64::from(self.burst.saturating_sub(1)))
    }
}

fn epoch_us(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[async_trait::async_trait]
pub trait RateStore {
    /// Takes one request from the budget `key`: None when granted, else how
    /// long until one would be.
    async fn take_rate_slot(
        &self,
        key: &str,
        rate: Rate,
        now: SystemTime,
    ) -> sqlx::Result<Option<Duration>>;
    /// Records the concurrency limits the job claim applies.
    async fn set_provider_limits(
        &self,
        limits: &[(String, u32)],
        at: OffsetDateTime,
    ) -> sqlx::Result<()>;
}

impl_for_backends! {
    impl RateStore {
        async fn take_rate_slot(&self, key: &str, rate: Rate, now: SystemTime) -> sqlx::Result<Option<Duration>> {
            let now_us = epoch_us(now);
            // Granted iff the schedule isn't more than the burst ahead of
            // now; the schedule then moves one interval on.
            let granted: Option<i64> = sqlx::query_scalar(Self::sql(
                "INSERT INTO rate_budgets (key, tat_us) VALUES ($1, $2 + $3) \
                 ON CONFLICT (key) DO UPDATE SET tat_us = GREATEST(rate_budgets.tat_us, $2) + $3 \
                 WHERE rate_budgets.tat_us <= $2 + $4 RETURNING tat_us",
                "INSERT INTO rate_budgets (key, tat_us) VALUES ($1, $2 + $3) \
                 ON CONFLICT (key) DO UPDATE SET tat_us = MAX(rate_budgets.tat_us, $2) + $3 \
                 WHERE rate_budgets.tat_us <= $2 + $4 RETURNING tat_us",
            ))
            .bind(key)
            .bind(now_us)
            .bind(rate.interval_us)
            .bind(rate.tolerance_us())
            .fetch_optional(&self.pool)
            .await?;
            if granted.is_some() {
                return Ok(None);
            }
            let tat: Option<i64> = sqlx::query_scalar("SELECT tat_us FROM rate_budgets WHERE key = $1")
                .bind(key)
                .fetch_optional(&self.pool)
                .await?;
            let wait_us = tat
        .map_or(0, |tat| {
            tat.saturating_sub(rate.tolerance_us())
                .saturating_sub(now_us)
        })
        .max(1_000);
            Ok(Some(Duration::from_micros(wait_us.unsigned_abs())))
        }

        async fn set_provider_limits(&self, limits: &[(String, u32)], at: OffsetDateTime) -> sqlx::Result<()> {
            let mut tx = self.begin_write().await?;
            for (provider, max_concurrent) in limits {
                sqlx::query(
                    "INSERT INTO provider_limits (provider, max_concurrent_per_connection, updated_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (provider) DO UPDATE SET max_concurrent_per_connection = excluded.max_concurrent_per_connection, \
                     updated_at = excluded.updated_at",
                )
                .bind(provider)
                .bind(i32::try_from(*max_concurrent).unwrap_or(i32::MAX))
                .bind(at)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await
        }
    }
}

/// Why a request could not be given a slot.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WaitError {
    #[error(
        "the provider's quota is used up for {wait_secs} s, longer than the {max_secs} s a job waits; try again later"
    )]
    TooLong { wait_secs: u64, max_secs: u64 },
}

/// Waits for a slot in each budget. A database error lets the request
/// through (logged): the provider's own 429 handling still protects it,
/// and a sync shouldn't stop because a budget row couldn't be read.
pub async fn acquire(
    store: &(dyn RateStore + Send + Sync),
    budgets: &[(String, Rate)],
    max_wait: Duration,
) -> Result<Duration, WaitError> {
    let started = std::time::Instant::now();
    for (key, rate) in budgets {
        loop {
            match store.take_rate_slot(key, *rate, SystemTime::now()).await {
                Ok(None) => break,
                Ok(Some(wait)) => {
                    if wait > max_wait {
                        return Err(WaitError::TooLong {
                            wait_secs: wait.as_secs(),
                            max_secs: max_wait.as_secs(),
                        });
                    }
                    tokio::time::sleep(wait).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, budget = %key, "rate budget unavailable; sending anyway");
                    break;
                }
            }
        }
    }
    Ok(started.elapsed())
}

/// How long to pause before the next request, from the quota headers of
/// the last answer: until the reset once the quota is spent, and spread
/// over the rest of the window when little is left.
pub fn quota_pause(
    quota: &QuotaHeaders,
    headers: &[(String, String)],
    now: SystemTime,
) -> Option<Duration> {
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    };
    let remaining: u64 = header(&quota.remaining)?.parse().ok()?;
    let reset_raw: f64 = header(&quota.reset)?.parse().ok()?;
    let now_secs = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let until_reset = match quota.reset_format {
        ResetFormat::Seconds => reset_raw,
        ResetFormat::EpochSeconds => reset_raw - now_secs,
        // Some providers document millis and send seconds; big values are millis.
        ResetFormat::EpochMillis if reset_raw > 1e12 => reset_raw / 1000.0 - now_secs,
        ResetFormat::EpochMillis => reset_raw - now_secs,
    };
    if !until_reset.is_finite() || until_reset <= 0.0 {
        return None;
    }
    // Low water: a few requests' worth, so other jobs of the same account
    // still get some.
    const LOW: u64 = 5;
    let pause = if remaining == 0 {
        until_reset
    } else if remaining <= LOW {
        until_reset / (remaining + 1) as f64
    } else {
        return None;
    };
    Some(Duration::from_secs_f64(pause.min(86_400.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_parse_and_report_mistakes() {
        let o = parse_overrides("github:rpm=30,global=600 ; slack:concurrency=1").unwrap();
        assert_eq!(o["github"].requests_per_minute, Some(30));
        assert_eq!(o["github"].global_requests_per_minute, Some(600));
        assert_eq!(o["slack"].max_concurrent_per_connection, Some(1));
        assert!(parse_overrides("").unwrap().is_empty());
        assert!(parse_overrides("github").unwrap_err().contains("expected"));
        assert!(
            parse_overrides("github:rpm=0")
                .unwrap_err()
                .contains("positive")
        );
        assert!(
            parse_overrides("github:speed=3")
                .unwrap_err()
                .contains("speed")
        );
    }

    fn quota(format: ResetFormat) -> QuotaHeaders {
        QuotaHeaders {
            remaining: "x-remaining".into(),
            reset: "x-reset".into(),
            reset_format: format,
        }
    }

    fn h(remaining: &str, reset: &str) -> Vec<(String, String)> {
        vec![
            ("X-Remaining".into(), remaining.into()),
            ("X-Reset".into(), reset.into()),
        ]
    }

    #[test]
    fn quota_slows_down_before_it_runs_out() {
        let now = UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        let q = quota(ResetFormat::Seconds);
        assert_eq!(quota_pause(&q, &h("100", "30"), now), None);
        assert_eq!(
            quota_pause(&q, &h("0", "30"), now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            quota_pause(&q, &h("2", "30"), now),
            Some(Duration::from_secs(10))
        );
        let q = quota(ResetFormat::EpochSeconds);
        assert_eq!(
            quota_pause(&q, &h("0", "1795000020"), now),
            Some(Duration::from_secs(20))
        );
        // A reset in the past, or garbage, never pauses.
        assert_eq!(quota_pause(&q, &h("0", "1794999000"), now), None);
        assert_eq!(quota_pause(&q, &h("zero", "1795000020"), now), None);
        let q = quota(ResetFormat::EpochMillis);
        assert_eq!(
            quota_pause(&q, &h("0", "1795000010000"), now),
            Some(Duration::from_secs(10))
        );
        // Documented as millis, sent as seconds.
        assert_eq!(
            quota_pause(&q, &h("0", "1795000010"), now),
            Some(Duration::from_secs(10))
        );
    }

    #[test]
    fn rates_allow_their_burst() {
        let r = Rate::per_minute(60, 10);
        assert_eq!(r.interval_us, 1_000_000);
        assert_eq!(r.tolerance_us(), 9_000_000);
        assert_eq!(Rate::per_minute(0, 0).burst, 1);
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use crate::testing::{header_text, json_with_keys};
    use proptest::prelude::*;
    use std::time::Duration;

    proptest! {
        #[test]
        fn any_quota_headers_give_a_bounded_pause(
            remaining in header_text(),
            reset in header_text(),
            format in 0..3u8,
            secs in any::<u64>(),
        ) {
            let quota = QuotaHeaders {
                remaining: "x-remaining".into(),
                reset: "x-reset".into(),
                reset_format: match format {
                    0 => ResetFormat::Seconds,
                    1 => ResetFormat::EpochSeconds,
                    _ => ResetFormat::EpochMillis,
                },
            };
            let headers = vec![
                ("X-Remaining".to_owned(), remaining),
                ("x-reset".to_owned(), reset),
            ];
            let now = UNIX_EPOCH + Duration::from_secs(secs % 10_000_000_000);
            if let Some(pause) = quota_pause(&quota, &headers, now) {
                prop_assert!(pause <= Duration::from_secs(86_400));
            }
        }

        #[test]
        fn any_quota_metadata_is_read_or_ignored(raw in json_with_keys(&["remaining", "reset", "resetFormat"])) {
            let _ = quota_headers(&raw);
        }

        #[test]
        fn any_rate_has_a_finite_tolerance(requests in any::<u32>(), burst in any::<u32>()) {
            let rate = Rate { interval_us: 60_000_000 / i64::from(requests.max(1)), burst };
            prop_assert!(rate.tolerance_us() >= 0);
        }
    }
}
