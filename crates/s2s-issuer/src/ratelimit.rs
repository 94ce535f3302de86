//! Token-bucket rate limits of the token endpoint, per source IP and per presented client id
//! (known or not), with `governor`'s keyed GCRA limiters.
//!
//! Both are checked before the secret is verified, so a flood of guesses costs the issuer no
//! argon2 work past the bucket. The per-client bucket also covers a client id that does not
//! exist (an attacker probing ids gets the same answers as for a real one).

use std::{
    hash::Hash,
    net::IpAddr,
    num::NonZeroU32,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use governor::{
    Quota, RateLimiter, clock::Clock as _, clock::DefaultClock,
    state::keyed::DefaultKeyedStateStore,
};

use crate::config::{Bucket, RateLimitConfig};

/// Above this many tracked keys, buckets that are full again are dropped.
const RETAIN_ABOVE: usize = 10_000;

struct Keyed<K: Hash + Eq + Clone> {
    limiter: RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock>,
    checks: AtomicU64,
}

impl<K: Hash + Eq + Clone> Keyed<K> {
    fn new(bucket: Bucket) -> Option<Self> {
        let per_second = NonZeroU32::new(bucket.per_second)?;
        let burst = NonZeroU32::new(bucket.burst)?;
        Some(Keyed {
            limiter: RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst)),
            checks: AtomicU64::new(0),
        })
    }

    /// `Err(wait)` when `key`'s bucket is empty.
    fn check(&self, key: &K) -> Result<(), Duration> {
        if self
            .checks
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(1024)
            && self.limiter.len() > RETAIN_ABOVE
        {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
        self.limiter
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}

/// The token endpoint's limiters.
pub(crate) struct Limits {
    per_ip: Option<Keyed<IpAddr>>,
    per_client: Option<Keyed<String>>,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits")
            .field("per_ip", &self.per_ip.is_some())
            .field("per_client", &self.per_client.is_some())
            .finish()
    }
}

/// Which limit refused a request, and when to try again.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limited {
    pub(crate) what: &'static str,
    pub(crate) retry_after: Duration,
}

impl Limited {
    /// Whole seconds for `Retry-After`, at least 1.
    pub(crate) fn retry_after_secs(&self) -> u64 {
        let secs = self.retry_after.as_secs() + u64::from(self.retry_after.subsec_nanos() > 0);
        secs.max(1)
    }
}

impl Limits {
    pub(crate) fn new(config: RateLimitConfig) -> Self {
        Limits {
            per_ip: config.per_ip.and_then(Keyed::new),
            per_client: config.per_client.and_then(Keyed::new),
        }
    }

    /// Takes one token from the IP's bucket (when the address is known).
    pub(crate) fn check_ip(&self, ip: Option<IpAddr>) -> Result<(), Limited> {
        match (&self.per_ip, ip) {
            (Some(limiter), Some(ip)) => limiter.check(&ip).map_err(|retry_after| Limited {
                what: "source IP",
                retry_after,
            }),
            _ => Ok(()),
        }
    }

    /// Takes one token from the client id's bucket.
    pub(crate) fn check_client(&self, client_id: &str) -> Result<(), Limited> {
        match &self.per_client {
            Some(limiter) => limiter
                .check(&client_id.to_owned())
                .map_err(|retry_after| Limited {
                    what: "client id",
                    retry_after,
                }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_refusals_with_a_wait() {
        let limits = Limits::new(RateLimitConfig {
            per_client: Some(Bucket {
                burst: 3,
                per_second: 1,
            }),
            per_ip: None,
        });
        for _ in 0..3 {
            limits.check_client("a").unwrap();
        }
        let limited = limits.check_client("a").unwrap_err();
        assert!(limited.retry_after <= Duration::from_secs(1));
        assert_eq!(limited.retry_after_secs(), 1);
        limits.check_client("b").unwrap();
        limits.check_ip(Some("127.0.0.1".parse().unwrap())).unwrap();
    }
}
