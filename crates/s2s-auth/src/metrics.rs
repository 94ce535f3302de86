//! Counters a service can read and export: verified tokens, rejections by reason, key-set
//! fetches. Relaxed atomics: each counter is exact, a [`MetricsSnapshot`] is not a transaction.
//!
//! With the feature `metrics`, every count is also emitted to the [`metrics`](::metrics) facade
//! from here (the one place; see the crate README for the names and labels). The facade's
//! handles are taken when a [`Verifier`](crate::Verifier) is built, so the hot path costs an
//! atomic add per handle; install the recorder (e.g. `metrics-exporter-prometheus`) before
//! building verifiers and token managers, as the facade requires of any handle.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
#[cfg(feature = "metrics")]
use std::time::Duration;

use crate::rejection::Reason;

/// The facade's names (documented in the crate README).
#[cfg(feature = "metrics")]
pub(crate) mod names {
    pub(crate) const VERIFICATIONS: &str = "s2s_auth_verifications_total";
    pub(crate) const TOKEN_CACHE: &str = "s2s_auth_token_cache_lookups_total";
    pub(crate) const JWKS_FETCHES: &str = "s2s_auth_jwks_fetches_total";
    pub(crate) const JWKS_FETCH_SECONDS: &str = "s2s_auth_jwks_fetch_duration_seconds";
    pub(crate) const TOKEN_FETCHES: &str = "s2s_auth_token_fetches_total";
    pub(crate) const TOKEN_FETCH_SECONDS: &str = "s2s_auth_token_fetch_duration_seconds";
    pub(crate) const TOKEN_REFRESH_FAILURES: &str = "s2s_auth_token_refresh_failures_total";
    pub(crate) const TENANT_KEY_CACHES: &str = "s2s_auth_tenant_key_caches";
}

/// An `AtomicU64` with the two operations the crate uses (`fetch_add`, `load`), so call sites
/// read as before; with the feature `metrics` it also increments its facade counter.
#[derive(Debug, Default)]
pub(crate) struct Count {
    value: AtomicU64,
    #[cfg(feature = "metrics")]
    facade: Facade,
}

#[cfg(feature = "metrics")]
struct Facade(::metrics::Counter);

#[cfg(feature = "metrics")]
impl Default for Facade {
    fn default() -> Self {
        Facade(::metrics::Counter::noop())
    }
}

#[cfg(feature = "metrics")]
impl std::fmt::Debug for Facade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Counter")
    }
}

impl Count {
    #[cfg(feature = "metrics")]
    fn emitting(counter: ::metrics::Counter) -> Count {
        Count {
            value: AtomicU64::new(0),
            facade: Facade(counter),
        }
    }

    #[inline]
    pub(crate) fn fetch_add(&self, n: u64, order: Ordering) -> u64 {
        #[cfg(feature = "metrics")]
        self.facade.0.increment(n);
        self.value.fetch_add(n, order)
    }

    pub(crate) fn load(&self, order: Ordering) -> u64 {
        self.value.load(order)
    }
}

/// The live counters of a [`Verifier`](crate::Verifier).
#[derive(Default, Debug)]
pub(crate) struct Metrics {
    /// Tokens that passed a full verification (cache hits are counted apart and added in the
    /// snapshot, so that a hit bumps one counter).
    pub(crate) verified: Count,
    pub(crate) rejected: [Count; Reason::COUNT],
    pub(crate) jwks_fetches: Count,
    pub(crate) jwks_fetch_failures: Count,
    pub(crate) cache_hits: StripedCounter,
    pub(crate) cache_misses: Count,
    #[cfg(feature = "metrics")]
    fetches: FetchHandles,
}

/// Stripes of a [`StripedCounter`]: more than the cores of most hosts that run one service.
pub(crate) const STRIPES: usize = 16;

/// A counter bumped by every request on every core (the cache hits of one hot token): one
/// cache line per stripe, a thread always on its own, so that cores do not take the line from
/// each other on every request as they would with one shared atomic. With the feature
/// `metrics`, a hit is also a verification and a cache hit to the facade.
#[derive(Default)]
pub(crate) struct StripedCounter {
    stripes: [Stripe; STRIPES],
    #[cfg(feature = "metrics")]
    facade: [Facade; 2],
}

#[derive(Default)]
#[repr(align(128))] // Two 64-byte lines: adjacent-line prefetchers pair them.
struct Stripe(AtomicU64);

impl StripedCounter {
    #[cfg(feature = "metrics")]
    fn emitting(counters: [::metrics::Counter; 2]) -> StripedCounter {
        StripedCounter {
            stripes: Default::default(),
            facade: counters.map(Facade),
        }
    }

    #[inline]
    pub(crate) fn increment(&self) {
        self.stripes[stripe()].0.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        for counter in &self.facade {
            counter.0.increment(1);
        }
    }

    pub(crate) fn get(&self) -> u64 {
        self.stripes
            .iter()
            .map(|s| s.0.load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }
}

impl std::fmt::Debug for StripedCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.get().fmt(f)
    }
}

/// The stripe of the calling thread (below [`STRIPES`]), handed out round-robin when it first
/// asks.
pub(crate) fn stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
    }
    STRIPE.with(|s| *s)
}

/// The facade's handles of the cold paths, taken with the others.
#[cfg(feature = "metrics")]
struct FetchHandles {
    /// Counter and duration histogram of successful and failed key-set fetches.
    jwks: [(::metrics::Counter, ::metrics::Histogram); 2],
    tenant_key_caches: ::metrics::Gauge,
}

#[cfg(feature = "metrics")]
impl Default for FetchHandles {
    fn default() -> Self {
        let noop = || (::metrics::Counter::noop(), ::metrics::Histogram::noop());
        FetchHandles {
            jwks: [noop(), noop()],
            tenant_key_caches: ::metrics::Gauge::noop(),
        }
    }
}

#[cfg(feature = "metrics")]
impl std::fmt::Debug for FetchHandles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FetchHandles")
    }
}

impl Metrics {
    /// The counters, emitting to the facade's recorder of now (feature `metrics`: the global
    /// one, or the one of `metrics::with_local_recorder` around the verifier's build), or not.
    pub(crate) fn new() -> Metrics {
        #[cfg(feature = "metrics")]
        {
            use ::metrics::{counter, gauge, histogram};
            use names::*;
            let jwks = |result: &'static str| {
                (
                    counter!(JWKS_FETCHES, "result" => result),
                    histogram!(JWKS_FETCH_SECONDS, "result" => result),
                )
            };
            Metrics {
                verified: Count::emitting(
                    counter!(VERIFICATIONS, "outcome" => "verified", "reason" => "none"),
                ),
                rejected: Reason::ALL.map(|r| {
                    Count::emitting(
                        counter!(VERIFICATIONS, "outcome" => "rejected", "reason" => r.as_str()),
                    )
                }),
                // The attempts without their outcome: `jwks_fetched` labels each fetch.
                jwks_fetches: Count::default(),
                jwks_fetch_failures: Count::default(),
                cache_hits: StripedCounter::emitting([
                    counter!(TOKEN_CACHE, "result" => "hit"),
                    counter!(VERIFICATIONS, "outcome" => "verified", "reason" => "none"),
                ]),
                cache_misses: Count::emitting(counter!(TOKEN_CACHE, "result" => "miss")),
                fetches: FetchHandles {
                    jwks: [jwks("ok"), jwks("error")],
                    tenant_key_caches: gauge!(TENANT_KEY_CACHES),
                },
            }
        }
        #[cfg(not(feature = "metrics"))]
        Metrics::default()
    }

    pub(crate) fn reject(&self, reason: Reason) {
        self.rejected[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// One key-set fetch (discovery included) ended, `ok` or not, after `elapsed`.
    pub(crate) fn jwks_fetched(&self, ok: bool, elapsed: std::time::Duration) {
        self.jwks_fetches.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.jwks_fetch_failures.fetch_add(1, Ordering::Relaxed);
        }
        #[cfg(feature = "metrics")]
        {
            let (count, seconds) = &self.fetches.jwks[usize::from(!ok)];
            count.increment(1);
            seconds.record(elapsed.as_secs_f64());
        }
        #[cfg(not(feature = "metrics"))]
        let _ = elapsed;
    }

    /// The number of tenant key caches changed by `delta` (created: +1, evicted: -1).
    pub(crate) fn tenant_key_caches(&self, delta: f64) {
        #[cfg(feature = "metrics")]
        self.fetches.tenant_key_caches.increment(delta);
        #[cfg(not(feature = "metrics"))]
        let _ = delta;
    }

    pub(crate) fn snapshot(&self) -> MetricsSnapshot {
        let cache_hits = self.cache_hits.get();
        MetricsSnapshot {
            verified: self.verified.load(Ordering::Relaxed) + cache_hits,
            rejected: Reason::ALL
                .iter()
                .map(|r| (*r, self.rejected[*r as usize].load(Ordering::Relaxed)))
                .filter(|(_, n)| *n > 0)
                .collect(),
            jwks_fetches: self.jwks_fetches.load(Ordering::Relaxed),
            jwks_fetch_failures: self.jwks_fetch_failures.load(Ordering::Relaxed),
            cache_hits,
            cache_misses: self.cache_misses.load(Ordering::Relaxed),
            tenant_key_caches: 0,
        }
    }
}

/// A token fetch of a [`TokenManager`](crate::token::TokenManager) ended (its own counters
/// are in [`TokenMetrics`](crate::token::TokenMetrics)); `refresh`: a background refresh.
/// Once per token lifetime, so the handles are looked up here, in the global recorder.
#[cfg(feature = "metrics")]
pub(crate) fn token_fetched(ok: bool, refresh: bool, elapsed: Duration) {
    let result = if ok { "ok" } else { "error" };
    ::metrics::counter!(names::TOKEN_FETCHES, "result" => result).increment(1);
    ::metrics::histogram!(names::TOKEN_FETCH_SECONDS, "result" => result)
        .record(elapsed.as_secs_f64());
    if refresh && !ok {
        ::metrics::counter!(names::TOKEN_REFRESH_FAILURES).increment(1);
    }
}

/// Without the feature `metrics`: nothing.
#[cfg(not(feature = "metrics"))]
pub(crate) fn token_fetched(_: bool, _: bool, _: std::time::Duration) {}

/// A reading of the counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MetricsSnapshot {
    /// Tokens that passed verification.
    pub verified: u64,
    /// Rejections, by reason (reasons never seen are left out).
    pub rejected: Vec<(Reason, u64)>,
    /// Key-set fetches attempted (discovery included in the same attempt).
    pub jwks_fetches: u64,
    /// Key-set fetches that failed.
    pub jwks_fetch_failures: u64,
    /// Tokens found in the validated-token cache.
    pub cache_hits: u64,
    /// Tokens looked up in the validated-token cache and not found.
    pub cache_misses: u64,
    /// Key caches of tenants of issuer templates held now (see
    /// [`VerifierBuilder::max_tenants`](crate::VerifierBuilder::max_tenants)).
    pub tenant_key_caches: u64,
}

impl MetricsSnapshot {
    /// Rejections for `reason`.
    pub fn rejected(&self, reason: Reason) -> u64 {
        self.rejected
            .iter()
            .find(|(r, _)| *r == reason)
            .map_or(0, |(_, n)| *n)
    }

    /// All rejections.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.iter().map(|(_, n)| n).sum()
    }
}
