//! [`TokenManager`]: one cached token per grant, refreshed ahead of expiry in the background.

use std::{
    collections::HashMap,
    fmt,
    sync::{
        Arc, Mutex, OnceLock, Weak,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use arc_swap::ArcSwapOption;
use http::HeaderValue;
use secrecy::ExposeSecret;
use tokio::time::Instant;
use tracing::Instrument as _;

use super::{BearerToken as AccessToken, ClientCredentials, TokenFuture, TokenSource};
use crate::{error::Error, time::later};

/// When tokens are refreshed, and how failures are retried.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RefreshPolicy {
    /// Refresh once this fraction of the lifetime has passed (default 0.75)...
    pub at_fraction: f64,
    /// ...or this long before expiry, whichever is earlier (default 60 s); never before half
    /// the lifetime, and up to 5% of it earlier at random so that a fleet does not refresh in
    /// step.
    pub ahead: Duration,
    /// A token counts as expired this much before its `expires_in` says, for clock skew and
    /// time in flight (default 10 s, at most a tenth of the lifetime).
    pub skew: Duration,
    /// The lifetime of a token whose response has no `expires_in` and that is not a JWT
    /// (default 60 s: short, so a token is never used past its real end for long).
    pub default_lifetime: Duration,
    /// First retry delay after a failed refresh; it doubles per failure, with jitter...
    pub min_backoff: Duration,
    /// ...up to this (default 30 s). A longer `Retry-After` from the token endpoint is waited
    /// out, up to this bound too.
    pub max_backoff: Duration,
    /// After a failed fetch with no token left, callers within this interval (or the
    /// endpoint's `Retry-After`, when longer, up to `max_backoff`) get the same error at once
    /// instead of another request (default 1 s).
    pub retry_interval: Duration,
    /// The shortest lifetime a token is given (default 5 s): a smaller `expires_in` (`0`
    /// included) is raised to it, so that an endpoint that answers tiny lifetimes cannot make
    /// every call fetch. A callee that refuses such a token as expired causes a forced refresh,
    /// itself bounded by `min_fetch_interval`.
    pub min_lifetime: Duration,
    /// The longest lifetime a token is given (default 24 h): a larger `expires_in` (`1e20`
    /// included) is lowered to it, so the token is refreshed at least this often.
    pub max_lifetime: Duration,
    /// No two requests to the token endpoint start less than this apart (default 1 s), whatever
    /// the endpoint answers and however often callees refuse tokens: a fetch that falls due
    /// sooner waits (and its callers with it).
    pub min_fetch_interval: Duration,
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        RefreshPolicy {
            at_fraction: 0.75,
            ahead: Duration::from_secs(60),
            skew: Duration::from_secs(10),
            default_lifetime: Duration::from_secs(60),
            min_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            retry_interval: Duration::from_secs(1),
            min_lifetime: Duration::from_secs(5),
            max_lifetime: Duration::from_secs(24 * 60 * 60),
            min_fetch_interval: Duration::from_secs(1),
        }
    }
}

impl RefreshPolicy {
    /// `lifetime` within [`RefreshPolicy::min_lifetime`], [`RefreshPolicy::max_lifetime`].
    fn clamp_lifetime(&self, lifetime: Duration) -> Duration {
        lifetime.min(self.max_lifetime).max(self.min_lifetime)
    }

    /// (usable until, refresh at) for a token of `lifetime` (already clamped) received at `now`.
    fn schedule(&self, now: Instant, lifetime: Duration) -> (Instant, Instant) {
        let fraction = if self.at_fraction.is_finite() {
            self.at_fraction.clamp(0.0, 1.0)
        } else {
            0.75
        };
        let skew = self.skew.min(lifetime / 10);
        let by_fraction = lifetime.mul_f64(fraction);
        let by_ahead = lifetime.saturating_sub(self.ahead);
        let jitter = lifetime.mul_f64(rand::random_range(0.0..0.05));
        let refresh_in = by_fraction
            .min(by_ahead)
            .max(lifetime / 2)
            .saturating_sub(jitter);
        (later(now, lifetime - skew), later(now, refresh_in))
    }

    fn backoff(&self, failures: u32) -> Duration {
        let base = self
            .min_backoff
            .saturating_mul(1 << failures.saturating_sub(1).min(16))
            .min(self.max_backoff);
        base.mul_f64(rand::random_range(0.5..1.0))
    }

    /// How long the endpoint asked to be left alone after `err` (`Retry-After`), bounded.
    fn server_delay(&self, err: &Error) -> Duration {
        err.retry_after().unwrap_or_default().min(self.max_backoff)
    }
}

/// Counters of a [`TokenManager`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenMetrics {
    /// Requests to the token endpoint.
    pub fetches: u64,
    /// Of which failed.
    pub failures: u64,
    /// Tokens served from memory.
    pub warm_hits: u64,
    /// Tokens dropped because a callee refused them.
    pub forced_refreshes: u64,
}

/// Caches the token of one [`ClientCredentials`] grant. See the [module docs](super).
///
/// - The warm path ([`TokenSource::current`]) is an atomic load: no lock, no I/O.
/// - Concurrent callers with no token share one request to the token endpoint.
/// - A background task refreshes the token ahead of expiry (see [`RefreshPolicy`]), so after the
///   first token no caller waits for the authorization server. It ends with the last clone.
/// - A failed refresh keeps serving the still-valid token and retries with jittered exponential
///   back-off; callers see an error only once no valid token is left.
#[derive(Clone)]
pub struct TokenManager {
    shared: Arc<Shared>,
}

struct Shared {
    grant: ClientCredentials,
    policy: RefreshPolicy,
    current: ArcSwapOption<Held>,
    /// Held while fetching (single flight).
    fetching: tokio::sync::Mutex<()>,
    /// Completed fetch attempts, so a waiter can tell that one finished while it waited.
    attempts: AtomicU64,
    last_failure: Mutex<Option<(Instant, Error)>>,
    /// When the latest request to the token endpoint started (for `min_fetch_interval`).
    last_fetch: Mutex<Option<Instant>>,
    refresher: OnceLock<tokio::task::JoinHandle<()>>,
    /// Wakes the background task when a token is stored, so that it schedules on the new one
    /// (a forced refresh may bring a shorter life). Apart from `Shared`, which the sleeping task
    /// must not keep alive.
    stored: Arc<tokio::sync::Notify>,
    fetches: AtomicU64,
    failures: AtomicU64,
    warm_hits: AtomicU64,
    forced_refreshes: AtomicU64,
}

struct Held {
    token: AccessToken,
    usable_until: Instant,
    refresh_at: Instant,
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Some(task) = self.refresher.get() {
            task.abort();
        }
    }
}

impl fmt::Debug for TokenManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenManager")
            .field("grant", &self.shared.grant)
            .field("holds_token", &self.shared.current.load().is_some())
            .finish()
    }
}

impl TokenManager {
    /// A manager for `grant` with the default [`RefreshPolicy`].
    pub fn new(grant: ClientCredentials) -> Result<Self, Error> {
        Self::with_policy(grant, RefreshPolicy::default())
    }

    /// A manager for `grant` refreshing per `policy`.
    pub fn with_policy(grant: ClientCredentials, policy: RefreshPolicy) -> Result<Self, Error> {
        grant.validate()?;
        Ok(TokenManager {
            shared: Arc::new(Shared {
                grant,
                policy,
                current: ArcSwapOption::empty(),
                fetching: tokio::sync::Mutex::new(()),
                attempts: AtomicU64::new(0),
                last_failure: Mutex::new(None),
                last_fetch: Mutex::new(None),
                refresher: OnceLock::new(),
                stored: Arc::default(),
                fetches: AtomicU64::new(0),
                failures: AtomicU64::new(0),
                warm_hits: AtomicU64::new(0),
                forced_refreshes: AtomicU64::new(0),
            }),
        })
    }

    /// The manager of the process for `grant`: the existing one while any clone of it lives,
    /// else a new one. Lets separate parts of a program share one cached token instead of
    /// fetching one each. Grants are the same only when everything is: endpoint, client id,
    /// client authentication (secret or key, compared by a SHA-256 digest that is all the
    /// registry keeps), scopes (in any order), audience, resources, extra parameters and HTTP
    /// options.
    pub fn shared(grant: ClientCredentials) -> Result<Self, Error> {
        static REGISTRY: Mutex<Option<HashMap<[u8; 32], Weak<Shared>>>> = Mutex::new(None);
        let key = grant.cache_key();
        let mut registry = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
        let map = registry.get_or_insert_with(HashMap::new);
        map.retain(|_, weak| weak.strong_count() > 0);
        if let Some(shared) = map.get(&key).and_then(Weak::upgrade) {
            return Ok(TokenManager { shared });
        }
        let manager = Self::new(grant)?;
        map.insert(key, Arc::downgrade(&manager.shared));
        Ok(manager)
    }

    /// The counters.
    pub fn metrics(&self) -> TokenMetrics {
        let s = &self.shared;
        TokenMetrics {
            fetches: s.fetches.load(Ordering::Relaxed),
            failures: s.failures.load(Ordering::Relaxed),
            warm_hits: s.warm_hits.load(Ordering::Relaxed),
            forced_refreshes: s.forced_refreshes.load(Ordering::Relaxed),
        }
    }

    async fn fetch_shared(&self) -> Result<AccessToken, Error> {
        let shared = &self.shared;
        let seen = shared.attempts.load(Ordering::Acquire);
        let _fetching = shared.fetching.lock().await;
        if let Some(token) = self.current() {
            return Ok(token);
        }
        // An attempt finished while this caller waited, or failed a moment ago: share its
        // outcome rather than asking the token endpoint again.
        let recent_failure = shared
            .last_failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .filter(|(at, err)| {
                shared.attempts.load(Ordering::Acquire) != seen
                    || at.elapsed()
                        < shared
                            .policy
                            .retry_interval
                            .max(shared.policy.server_delay(err))
            })
            .map(|(_, e)| e.duplicate());
        if let Some(err) = recent_failure {
            return Err(err);
        }
        self.fetch_now("cold").await
    }

    /// One request to the token endpoint; the caller holds `fetching`.
    async fn fetch_now(&self, why: &'static str) -> Result<AccessToken, Error> {
        let shared = &self.shared;
        let last = *shared.last_fetch.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(last) = last {
            let next = later(last, shared.policy.min_fetch_interval);
            if Instant::now() < next {
                tracing::debug!(
                    client_id = shared.grant.client_id(),
                    why,
                    "token fetch waits for the minimum interval between fetches"
                );
                tokio::time::sleep_until(next).await;
            }
        }
        let started = Instant::now();
        *shared.last_fetch.lock().unwrap_or_else(|e| e.into_inner()) = Some(started);
        let span = tracing::info_span!(
            "s2s_auth.token_fetch",
            client_id = shared.grant.client_id(),
            why,
            outcome = tracing::field::Empty,
        );
        let result = shared.grant.fetch().instrument(span.clone()).await;
        shared.fetches.fetch_add(1, Ordering::Relaxed);
        let elapsed_ms = started.elapsed().as_millis() as u64;
        let outcome = result.and_then(|response| {
            let token = AccessToken::new(response.access_token.expose_secret())?;
            Ok((token, response.expires_in))
        });
        let result = match outcome {
            Ok((token, expires_in)) => {
                let lifetime = shared
                    .policy
                    .clamp_lifetime(expires_in.unwrap_or(shared.policy.default_lifetime));
                let (usable_until, refresh_at) = shared.policy.schedule(Instant::now(), lifetime);
                shared.current.store(Some(Arc::new(Held {
                    token: token.clone(),
                    usable_until,
                    refresh_at,
                })));
                *shared
                    .last_failure
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = None;
                shared.stored.notify_one();
                span.record("outcome", "ok");
                tracing::info!(
                    parent: &span,
                    lifetime_secs = lifetime.as_secs(),
                    elapsed_ms,
                    "token fetched"
                );
                self.start_refresher();
                Ok(token)
            }
            Err(err) => {
                shared.failures.fetch_add(1, Ordering::Relaxed);
                span.record(
                    "outcome",
                    if err.is_transient() {
                        "transient"
                    } else {
                        "permanent"
                    },
                );
                tracing::warn!(parent: &span, error = %err, elapsed_ms, "token fetch failed");
                *shared
                    .last_failure
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), err.duplicate()));
                Err(err)
            }
        };
        shared.attempts.fetch_add(1, Ordering::Release);
        result
    }

    fn start_refresher(&self) {
        let weak = Arc::downgrade(&self.shared);
        let stored = self.shared.stored.clone();
        let _ = self
            .shared
            .refresher
            .get_or_init(|| tokio::spawn(refresh_loop(weak, stored)));
    }
}

/// Refreshes the held token at its `refresh_at`; on failure retries with back-off while the
/// token lasts (and after, so that the next caller finds a token again).
async fn refresh_loop(weak: Weak<Shared>, stored: Arc<tokio::sync::Notify>) {
    let mut failures = 0u32;
    // What the endpoint's last refusal asked for (`Retry-After`).
    let mut server_delay = Duration::ZERO;
    loop {
        let wake = {
            let Some(shared) = weak.upgrade() else { return };
            let held = shared.current.load();
            match (&*held, failures) {
                (Some(held), 0) => held.refresh_at,
                _ => later(
                    Instant::now(),
                    shared.policy.backoff(failures.max(1)).max(server_delay),
                ),
            }
        };
        tokio::select! {
            () = tokio::time::sleep_until(wake) => {}
            // A token was stored meanwhile (by a cold or forced fetch): schedule on it.
            () = stored.notified() => {
                failures = 0;
                continue;
            }
        }
        let Some(shared) = weak.upgrade() else { return };
        let manager = TokenManager { shared };
        let _fetching = manager.shared.fetching.lock().await;
        let due = match &*manager.shared.current.load() {
            Some(held) => Instant::now() >= held.refresh_at,
            None => true,
        };
        if !due {
            // Replaced meanwhile (a forced refresh): schedule on the new token.
            failures = 0;
            continue;
        }
        match manager.fetch_now("refresh").await {
            Ok(_) => failures = 0,
            Err(err) => {
                failures = failures.saturating_add(1);
                server_delay = manager.shared.policy.server_delay(&err);
                if !err.is_transient() {
                    tracing::error!(
                        client_id = manager.shared.grant.client_id(),
                        error = %err,
                        "token refresh refused; the held token is served until it expires: fix \
                         the configuration"
                    );
                }
            }
        }
    }
}

impl TokenManager {
    /// Reads the held token if it is still usable: an atomic load and a clock read.
    fn with_held<R>(&self, f: impl FnOnce(&Held) -> R) -> Option<R> {
        let held = self.shared.current.load();
        let held = held.as_ref()?;
        if Instant::now() >= held.usable_until {
            return None;
        }
        self.shared.warm_hits.fetch_add(1, Ordering::Relaxed);
        Some(f(held))
    }
}

impl TokenSource for TokenManager {
    fn current(&self) -> Option<AccessToken> {
        self.with_held(|held| held.token.clone())
    }

    fn current_header(&self) -> Option<HeaderValue> {
        self.with_held(|held| held.token.header_value().clone())
    }

    fn token(&self) -> TokenFuture<'_> {
        Box::pin(async move {
            match self.current() {
                Some(token) => Ok(token),
                None => self.fetch_shared().await,
            }
        })
    }

    fn invalidate(&self, rejected: &AccessToken) {
        let current = self.shared.current.load();
        if let Some(held) = &*current
            && held.token.same_as(rejected)
        {
            let previous = self.shared.current.compare_and_swap(&current, None);
            if previous.as_ref().is_some_and(|p| p.token.same_as(rejected)) {
                self.shared.forced_refreshes.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    client_id = self.shared.grant.client_id(),
                    "a callee refused the token; fetching a new one"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_schedule() {
        let policy = RefreshPolicy::default();
        let now = Instant::now();
        for _ in 0..100 {
            let (usable, refresh) = policy.schedule(now, Duration::from_secs(1800));
            assert_eq!(usable - now, Duration::from_secs(1790));
            let r = (refresh - now).as_secs_f64();
            assert!((1350.0 - 90.0..=1350.0).contains(&r), "{r}");
            let (usable, refresh) = policy.schedule(now, Duration::from_secs(120));
            assert_eq!(usable - now, Duration::from_secs(110));
            let r = (refresh - now).as_secs_f64();
            assert!((54.0..=60.0).contains(&r), "{r}");
            let (_, refresh) = policy.schedule(now, Duration::from_secs(30));
            assert!((refresh - now) >= Duration::from_millis(13_500));
        }
    }

    #[test]
    fn backoff_grows_and_is_bounded() {
        let policy = RefreshPolicy::default();
        assert!(policy.backoff(1) <= Duration::from_secs(1));
        assert!(policy.backoff(3) >= Duration::from_secs(2));
        assert!(policy.backoff(30) <= Duration::from_secs(30));
    }
}
