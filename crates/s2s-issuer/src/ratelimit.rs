//! Token-bucket rate limits of the token endpoint (GCRA: one "theoretical arrival time" per key).
//!
//! Four budgets, each optional:
//!
//! - `per_ip`: every request from an address, checked first (before the body is read);
//! - `failures_per_ip` and `failures_per_client_ip`: failed authentications from an address, and
//!   for one client id from an address. One failure is reserved in both before the argon2 work
//!   and given back when the secret verifies, so a caller whose budget is spent costs no hash
//!   work, and wrong guesses from one address never touch the budget of the same client id at
//!   another address;
//! - `per_client`: authenticated requests of a client id, charged only after its secret
//!   verified, so nobody who lacks the secret can spend it (lockout).
//!
//! Addresses are bucketed as they are routed: an IPv4 address on its own, an IPv6 address by
//! its /64 (one host usually holds a whole /64, so per-address buckets would give it 2^64).

use std::{
    collections::HashMap,
    hash::Hash,
    net::{IpAddr, Ipv6Addr},
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::time::Instant;

use crate::{
    accounts::canonical_ip,
    config::{Bucket, RateLimitConfig},
};

/// Above this many tracked keys, buckets that are full again are dropped.
const RETAIN_ABOVE: usize = 10_000;

/// Keyed token buckets.
struct Buckets<K> {
    /// Time one request adds to a key's arrival time.
    interval: Duration,
    /// How far ahead of now the arrival time may run (`burst` intervals).
    capacity: Duration,
    /// A key's arrival time; a key absent or in the past has a full bucket.
    state: Mutex<HashMap<K, Instant>>,
    checks: AtomicU64,
}

impl<K: Hash + Eq + Clone> Buckets<K> {
    fn new(bucket: Bucket) -> Option<Self> {
        if bucket.burst == 0 || bucket.per_second == 0 {
            return None;
        }
        let interval = Duration::from_secs(1) / bucket.per_second;
        Some(Buckets {
            interval,
            capacity: interval * bucket.burst,
            state: Mutex::new(HashMap::new()),
            checks: AtomicU64::new(0),
        })
    }

    /// Takes one token from `key`'s bucket; `Err(wait)` when it is empty.
    fn take(&self, key: &K) -> Result<(), Duration> {
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if self
            .checks
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(1024)
            && state.len() > RETAIN_ABOVE
        {
            state.retain(|_, at| *at > now);
            state.shrink_to_fit();
        }
        let at = state
            .get(key)
            .copied()
            .filter(|at| *at > now)
            .unwrap_or(now);
        let next = at + self.interval;
        let limit = now + self.capacity;
        if next > limit {
            return Err(next - limit);
        }
        state.insert(key.clone(), next);
        Ok(())
    }

    /// Gives back a token taken from `key`'s bucket.
    fn give_back(&self, key: &K) {
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(at) = state.get_mut(key) {
            match at.checked_sub(self.interval) {
                Some(earlier) if earlier > now => *at = earlier,
                _ => {
                    state.remove(key);
                }
            }
        }
    }
}

/// The address a bucket is keyed by: IPv4 as it is, IPv6 truncated to its /64.
pub(crate) fn bucket_address(ip: IpAddr) -> IpAddr {
    match canonical_ip(ip) {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
        v4 => v4,
    }
}

/// The token endpoint's limiters.
pub(crate) struct Limits {
    per_ip: Option<Buckets<IpAddr>>,
    per_client: Option<Buckets<String>>,
    failures_per_ip: Option<Buckets<Option<IpAddr>>>,
    failures_per_client_ip: Option<Buckets<(String, Option<IpAddr>)>>,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits")
            .field("per_ip", &self.per_ip.is_some())
            .field("per_client", &self.per_client.is_some())
            .field("failures_per_ip", &self.failures_per_ip.is_some())
            .field(
                "failures_per_client_ip",
                &self.failures_per_client_ip.is_some(),
            )
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

fn limited(what: &'static str) -> impl FnOnce(Duration) -> Limited {
    move |retry_after| Limited { what, retry_after }
}

/// One failed authentication reserved in the failure budgets of an address and of a (client
/// id, address) pair. Kept when dropped (the authentication failed, or could not be decided);
/// [`FailureReservation::give_back`] once the secret verified.
#[must_use]
#[derive(Debug)]
pub(crate) struct FailureReservation<'a> {
    limits: &'a Limits,
    address: Option<IpAddr>,
    pair: (String, Option<IpAddr>),
}

impl FailureReservation<'_> {
    /// The authentication did not fail: the reserved failure is returned to both budgets.
    pub(crate) fn give_back(self) {
        if let Some(b) = &self.limits.failures_per_ip {
            b.give_back(&self.address);
        }
        if let Some(b) = &self.limits.failures_per_client_ip {
            b.give_back(&self.pair);
        }
    }
}

impl Limits {
    pub(crate) fn new(config: RateLimitConfig) -> Self {
        Limits {
            per_ip: config.per_ip.and_then(Buckets::new),
            per_client: config.per_client.and_then(Buckets::new),
            failures_per_ip: config.failures_per_ip.and_then(Buckets::new),
            failures_per_client_ip: config.failures_per_client_ip.and_then(Buckets::new),
        }
    }

    /// Takes one token from the address's bucket (when the address is known).
    pub(crate) fn check_ip(&self, ip: Option<IpAddr>) -> Result<(), Limited> {
        match (&self.per_ip, ip) {
            (Some(b), Some(ip)) => b.take(&bucket_address(ip)).map_err(limited("source IP")),
            _ => Ok(()),
        }
    }

    /// Takes one token from the bucket of a client id that has proved its secret.
    pub(crate) fn check_client(&self, client_id: &str) -> Result<(), Limited> {
        match &self.per_client {
            Some(b) => b.take(&client_id.to_owned()).map_err(limited("client id")),
            None => Ok(()),
        }
    }

    /// Reserves one failed authentication of `client_id` from `ip` before its secret is
    /// checked; `Err` when the address or the pair has no failures left (then nothing is
    /// reserved). An unknown address (no socket address) shares one bucket.
    pub(crate) fn reserve_failure(
        &self,
        client_id: &str,
        ip: Option<IpAddr>,
    ) -> Result<FailureReservation<'_>, Limited> {
        let address = ip.map(bucket_address);
        let pair = (client_id.to_owned(), address);
        if let Some(b) = &self.failures_per_ip {
            b.take(&address)
                .map_err(limited("source IP (failed authentications)"))?;
        }
        if let Some(b) = &self.failures_per_client_ip
            && let Err(wait) = b.take(&pair)
        {
            if let Some(b) = &self.failures_per_ip {
                b.give_back(&address);
            }
            return Err(limited(
                "client id from this source IP (failed authentications)",
            )(wait));
        }
        Ok(FailureReservation {
            limits: self,
            address,
            pair,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(burst: u32, per_second: u32) -> Option<Bucket> {
        Some(Bucket { burst, per_second })
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_then_refusals_with_a_wait_then_a_refill() {
        let limits = Limits::new(RateLimitConfig {
            per_client: bucket(3, 1),
            per_ip: None,
            failures_per_ip: None,
            failures_per_client_ip: None,
        });
        for _ in 0..3 {
            limits.check_client("a").unwrap();
        }
        let limited = limits.check_client("a").unwrap_err();
        assert!(limited.retry_after <= Duration::from_secs(1));
        assert_eq!(limited.retry_after_secs(), 1);
        limits.check_client("b").unwrap();
        limits.check_ip(Some("127.0.0.1".parse().unwrap())).unwrap();
        tokio::time::advance(Duration::from_secs(1)).await;
        limits.check_client("a").unwrap();
        limits.check_client("a").unwrap_err();
    }

    #[tokio::test(start_paused = true)]
    async fn failures_are_given_back_on_success_and_kept_on_failure() {
        let limits = Limits::new(RateLimitConfig {
            per_client: None,
            per_ip: None,
            failures_per_ip: bucket(3, 1),
            failures_per_client_ip: bucket(2, 1),
        });
        let here = Some("192.0.2.1".parse().unwrap());
        let there = Some("192.0.2.2".parse().unwrap());
        // Successes never spend the budgets.
        for _ in 0..10 {
            limits.reserve_failure("c", here).unwrap().give_back();
        }
        let _kept = limits.reserve_failure("c", here).unwrap();
        let _kept = limits.reserve_failure("c", here).unwrap();
        // The pair is spent; the address has one left, which the refused pair did not take.
        assert!(
            limits
                .reserve_failure("c", here)
                .unwrap_err()
                .what
                .contains("client id")
        );
        let _kept = limits.reserve_failure("d", here).unwrap();
        assert!(
            limits
                .reserve_failure("e", here)
                .unwrap_err()
                .what
                .starts_with("source IP")
        );
        // Another address is untouched.
        let _kept = limits.reserve_failure("c", there).unwrap();
    }

    #[test]
    fn ipv6_addresses_share_their_slash_64() {
        let a = bucket_address("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = bucket_address("2001:db8:1:2:ffff:1:2:3".parse().unwrap());
        let c = bucket_address("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.to_string(), "2001:db8:1:2::");
        assert_eq!(
            bucket_address("::ffff:10.1.2.3".parse().unwrap()).to_string(),
            "10.1.2.3"
        );
    }
}
