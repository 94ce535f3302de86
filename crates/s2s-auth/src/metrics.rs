//! Counters a service can read and export: verified tokens, rejections by reason, key-set
//! fetches. Relaxed atomics: each counter is exact, a [`MetricsSnapshot`] is not a transaction.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::rejection::Reason;

/// The live counters of a [`Verifier`](crate::Verifier).
#[derive(Default, Debug)]
pub(crate) struct Metrics {
    /// Tokens that passed a full verification (cache hits are counted apart and added in the
    /// snapshot, so that a hit bumps one counter).
    pub(crate) verified: AtomicU64,
    pub(crate) rejected: [AtomicU64; Reason::COUNT],
    pub(crate) jwks_fetches: AtomicU64,
    pub(crate) jwks_fetch_failures: AtomicU64,
    pub(crate) cache_hits: StripedCounter,
    pub(crate) cache_misses: AtomicU64,
}

/// Stripes of a [`StripedCounter`]: more than the cores of most hosts that run one service.
pub(crate) const STRIPES: usize = 16;

/// A counter bumped by every request on every core (the cache hits of one hot token): one
/// cache line per stripe, a thread always on its own, so that cores do not take the line from
/// each other on every request as they would with one shared atomic.
#[derive(Default)]
pub(crate) struct StripedCounter([Stripe; STRIPES]);

#[derive(Default)]
#[repr(align(128))] // Two 64-byte lines: adjacent-line prefetchers pair them.
struct Stripe(AtomicU64);

impl StripedCounter {
    pub(crate) fn increment(&self) {
        self.0[stripe()].0.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> u64 {
        self.0
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

impl Metrics {
    pub(crate) fn reject(&self, reason: Reason) {
        self.rejected[reason as usize].fetch_add(1, Ordering::Relaxed);
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
        }
    }
}

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
