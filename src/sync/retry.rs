//! Sending provider requests with retries: 429, 502, 503, 504 and
//! connection errors are retried with exponential backoff and jitter
//! (backon), with 429s budgeted apart from 5xx so a throttling provider
//! can't use up the budget an outage needs, or the other way round.
//! `Retry-After` is honoured in both forms (seconds, HTTP date) up to a
//! maximum; past it the job fails with "rate limited for N s" instead of
//! sleeping for an hour.

use std::time::{Duration, SystemTime};

use backon::{BackoffBuilder, ExponentialBuilder};
use reqwest::header::{HeaderMap, RETRY_AFTER};

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_attempts_429: u32,
    pub max_attempts_5xx: u32,
    pub max_retry_after: Duration,
    pub min_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts_429: 5,
            max_attempts_5xx: 5,
            max_retry_after: Duration::from_secs(120),
            min_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SendError {
    #[error(
        "rate limited for {wait_secs} s, longer than the {max_secs} s a job waits; try again later"
    )]
    RateLimitedTooLong { wait_secs: u64, max_secs: u64 },
    #[error("the provider kept answering HTTP {status} after {attempts} attempts")]
    Exhausted { status: u16, attempts: u32 },
    #[error("the provider could not be reached after {attempts} attempts ({reason})")]
    Unreachable { attempts: u32, reason: String },
}

/// One retry, for the job log (never the URL's secrets or a body).
#[derive(Debug, Clone)]
pub struct Retry {
    pub attempt: u32,
    pub reason: String,
    pub wait: Duration,
}

/// `Retry-After` as a wait from now: delta-seconds or an HTTP date.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

fn backoff(policy: &RetryPolicy, times: u32) -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(policy.min_delay)
        .with_max_delay(policy.max_delay)
        .with_jitter()
        .with_max_times(times as usize)
        .build()
}

fn is_retryable_status(status: u16) -> bool {
    matches!(status, 502..=504)
}

/// Sends the request `build` makes until it succeeds, fails for good, or
/// a budget runs out. Any non-retryable answer (2xx, 4xx) is returned.
pub async fn send(
    build: impl Fn() -> reqwest::RequestBuilder,
    policy: &RetryPolicy,
    mut on_retry: impl FnMut(&Retry),
) -> Result<reqwest::Response, SendError> {
    let mut throttled = backoff(policy, policy.max_attempts_429);
    let mut failing = backoff(policy, policy.max_attempts_5xx);
    let (mut attempts_429, mut attempts_5xx) = (0u32, 0u32);
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let (wait, reason) = match build().send().await {
            Ok(response) if response.status().as_u16() == 429 => {
                attempts_429 += 1;
                let hinted = retry_after(response.headers(), SystemTime::now());
                if let Some(hint) = hinted.filter(|h| *h > policy.max_retry_after) {
                    return Err(SendError::RateLimitedTooLong {
                        wait_secs: hint.as_secs(),
                        max_secs: policy.max_retry_after.as_secs(),
                    });
                }
                let Some(backoff) = throttled.next() else {
                    return Err(SendError::Exhausted {
                        status: 429,
                        attempts: attempts_429,
                    });
                };
                (hinted.unwrap_or(backoff), "HTTP 429".to_owned())
            }
            Ok(response) if is_retryable_status(response.status().as_u16()) => {
                attempts_5xx += 1;
                let status = response.status().as_u16();
                let hinted = retry_after(response.headers(), SystemTime::now())
                    .filter(|h| *h <= policy.max_retry_after);
                let Some(backoff) = failing.next() else {
                    return Err(SendError::Exhausted {
                        status,
                        attempts: attempts_5xx,
                    });
                };
                (hinted.unwrap_or(backoff), format!("HTTP {status}"))
            }
            Ok(response) => return Ok(response),
            Err(err) => {
                attempts_5xx += 1;
                // reqwest's message includes the URL, which may hold secrets.
                let reason = if err.is_timeout() {
                    "timed out"
                } else {
                    "connection failed"
                }
                .to_owned();
                let Some(backoff) = failing.next() else {
                    return Err(SendError::Unreachable {
                        attempts: attempts_5xx,
                        reason,
                    });
                };
                (backoff, reason)
            }
        };
        on_retry(&Retry {
            attempt,
            reason,
            wait,
        });
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;
    use wiremock::matchers::method;
    use wiremock::{Mock, MockServer, ResponseTemplate};

    fn client() -> reqwest::Client {
        // Built without a TLS provider of its own; the app installs ring.
        crate::outbound::install_crypto_provider();
        reqwest::Client::new()
    }

    fn fast() -> RetryPolicy {
        RetryPolicy {
            min_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
            ..RetryPolicy::default()
        }
    }

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(7)));
        h.insert(
            RETRY_AFTER,
            httpdate::fmt_http_date(now + Duration::from_secs(30))
                .parse()
                .unwrap(),
        );
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(30)));
        h.insert(
            RETRY_AFTER,
            "Tue, 15 Nov 1994 08:12:31 GMT".parse().unwrap(),
        );
        assert_eq!(
            retry_after(&h, now),
            Some(Duration::ZERO),
            "a past date means now"
        );
        h.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h, now), None);
    }

    #[tokio::test]
    async fn honours_retry_after_then_succeeds() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "2"))
            .up_to_n_times(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(200))
            .mount(&server)
            .await;
        let client = client();
        let started = Instant::now();
        let mut retries = Vec::new();
        let res = send(
            || client.get(server.uri()),
            &fast(),
            |r| retries.push(r.clone()),
        )
        .await
        .unwrap();
        assert_eq!(res.status(), 200);
        assert!(
            started.elapsed() >= Duration::from_secs(2),
            "waited {:?}",
            started.elapsed()
        );
        assert_eq!(retries.len(), 1);
        assert_eq!(retries[0].wait, Duration::from_secs(2));
    }

    #[tokio::test]
    async fn flapping_503_succeeds_within_budget() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(503))
            .up_to_n_times(3)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(200))
            .mount(&server)
            .await;
        let client = client();
        let res = send(|| client.get(server.uri()), &fast(), |_| {})
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }

    #[tokio::test]
    async fn a_long_retry_after_fails_clearly() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "3600"))
            .mount(&server)
            .await;
        let client = client();
        let err = send(|| client.get(server.uri()), &fast(), |_| {})
            .await
            .unwrap_err();
        assert_eq!(
            err,
            SendError::RateLimitedTooLong {
                wait_secs: 3600,
                max_secs: 120
            }
        );
        assert!(err.to_string().contains("rate limited for 3600 s"));
    }

    #[tokio::test]
    async fn budgets_are_separate_and_finite() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(502))
            .mount(&server)
            .await;
        let client = client();
        let err = send(|| client.get(server.uri()), &fast(), |_| {})
            .await
            .unwrap_err();
        assert_eq!(
            err,
            SendError::Exhausted {
                status: 502,
                attempts: 6
            }
        );
        // 4xx other than 429 are answers, not retried.
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(404))
            .expect(1)
            .mount(&server)
            .await;
        let res = send(|| client.get(server.uri()), &fast(), |_| {})
            .await
            .unwrap();
        assert_eq!(res.status(), 404);
        // Unreachable hosts are retried, then reported without the URL.
        let err = send(
            || client.get("http://127.0.0.1:9/?token=secret"),
            &fast(),
            |_| {},
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&err, SendError::Unreachable { .. }) && !err.to_string().contains("secret"),
            "{err}"
        );
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use crate::testing::header_text;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_retry_after_value_is_a_wait_or_none(raw in header_text(), secs in any::<u64>()) {
            let mut h = HeaderMap::new();
            if let Ok(v) = reqwest::header::HeaderValue::from_str(&raw) {
                h.insert(RETRY_AFTER, v);
            }
            let now = SystemTime::UNIX_EPOCH + Duration::from_secs(secs % 10_000_000_000);
            let _ = retry_after(&h, now);
        }
    }
}
