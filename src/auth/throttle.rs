//! Log-in throttling per client IP and per account, with governor's GCRA
//! limiter. In-process: with several server processes each enforces its own
//! budget, which still bounds guessing to N × the configured rate.

use std::net::IpAddr;
use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::AppError;

pub struct LoginThrottle {
    by_ip: DefaultKeyedRateLimiter<IpAddr>,
    by_account: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
}

impl LoginThrottle {
    pub fn new(per_ip_per_minute: u32, per_account_per_minute: u32) -> Self {
        let quota = |n: u32| Quota::per_minute(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN));
        Self {
            by_ip: RateLimiter::keyed(quota(per_ip_per_minute)),
            by_account: RateLimiter::keyed(quota(per_account_per_minute)),
            clock: DefaultClock::default(),
        }
    }

    /// Counts one attempt against both budgets; refuses when either is spent.
    pub fn check(&self, ip: IpAddr, email_normalized: &str) -> Result<(), AppError> {
        let ip_result = self.by_ip.check_key(&ip);
        let account_result = self.by_account.check_key(&email_normalized.to_owned());
        let wait = [ip_result.err(), account_result.err()]
            .into_iter()
            .flatten()
            .map(|not_until| not_until.wait_time_from(self.clock.now()))
            .max();
        match wait {
            None => Ok(()),
            Some(wait) => Err(AppError::RateLimited {
                retry_after_secs: wait.as_secs().max(1),
            }),
        }
    }

    /// Drops state for keys that are back to a full budget.
    pub fn prune(&self) {
        self.by_ip.retain_recent();
        self.by_account.retain_recent();
        self.by_ip.shrink_to_fit();
        self.by_account.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_budget_is_independent_of_ip() {
        let t = LoginThrottle::new(100, 2);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let other_ip: IpAddr = "127.0.0.2".parse().unwrap();
        assert!(t.check(ip, "a@x.io").is_ok());
        assert!(t.check(other_ip, "a@x.io").is_ok());
        let err = t.check(ip, "a@x.io").unwrap_err();
        assert!(matches!(err, AppError::RateLimited { retry_after_secs } if retry_after_secs >= 1));
        assert!(t.check(ip, "b@x.io").is_ok());
    }

    #[test]
    fn ip_budget_spans_accounts() {
        let t = LoginThrottle::new(2, 100);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(t.check(ip, "a@x.io").is_ok());
        assert!(t.check(ip, "b@x.io").is_ok());
        assert!(t.check(ip, "c@x.io").is_err());
    }
}
