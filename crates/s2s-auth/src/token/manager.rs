//! [`TokenManager`]: one cached token per grant, refreshed ahead of expiry in the background.

use std::{
    collections::HashMap,
    fmt,
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use http::HeaderValue;
use secrecy::ExposeSecret;
use tokio::time::Instant;
use tracing::Instrument as _;

use super::{BearerToken, ClientCredentials, TokenFuture, TokenSource};
use crate::{
    error::Error,
    metrics::StripedCounter,
    refresh::{Backoff, Refresh, Refreshing},
    time::later,
};

/// Why a background fetch is made (the `why` of its log span).
const REFRESH: &str = "refresh";

/// When tokens are refreshed, and how failures are retried.
///
/// ```
/// use std::time::Duration;
/// use s2s_auth::token::RefreshPolicy;
///
/// let policy = RefreshPolicy::default()
///     .ahead(Duration::from_secs(120))
///     .max_backoff(Duration::from_secs(10));
/// # let _ = policy;
/// ```
#[derive(Clone, Debug)]
pub struct RefreshPolicy {
    at_fraction: f64,
    ahead: Duration,
    skew: Duration,
    default_lifetime: Duration,
    min_backoff: Duration,
    max_backoff: Duration,
    retry_interval: Duration,
    min_lifetime: Duration,
    max_lifetime: Duration,
    min_fetch_interval: Duration,
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
    crate::refresh::setters! {
        /// Refresh once this fraction of the lifetime has passed (default 0.75), or
        /// [`RefreshPolicy::ahead`] before expiry, whichever is earlier.
        at_fraction: f64;
        /// Refresh this long before expiry (default 60 s), or at [`RefreshPolicy::at_fraction`] of
        /// the lifetime, whichever is earlier; never before half
        /// the lifetime, and up to 5% of it earlier at random so that a fleet does not refresh in
        /// step.
        ahead: Duration;
        /// A token counts as expired this much before its `expires_in` says, for clock skew and
        /// time in flight (default 10 s, at most a tenth of the lifetime).
        skew: Duration;
        /// The lifetime of a token whose response has no `expires_in` and that is not a JWT
        /// (default 60 s: short, so a token is never used past its real end for long).
        default_lifetime: Duration;
        /// First retry delay after a failed refresh (default 1 s); it doubles per failure, with
        /// jitter, up to [`RefreshPolicy::max_backoff`].
        min_backoff: Duration;
        /// The longest retry delay after failed refreshes (default 30 s). A longer `Retry-After` from the token endpoint is waited
        /// out, up to this bound too.
        max_backoff: Duration;
        /// After a failed fetch with no token left, callers within this interval (or the
        /// endpoint's `Retry-After`, when longer, up to `max_backoff`) get the same error at once
        /// instead of another request (default 1 s).
        retry_interval: Duration;
        /// The shortest lifetime a token is given (default 5 s): a smaller `expires_in` (`0`
        /// included) is raised to it, so that an endpoint that answers tiny lifetimes cannot make
        /// every call fetch. A callee that refuses such a token as expired causes a forced refresh,
        /// itself bounded by `min_fetch_interval`.
        min_lifetime: Duration;
        /// The longest lifetime a token is given (default 24 h): a larger `expires_in` (`1e20`
        /// included) is lowered to it, so the token is refreshed at least this often.
        max_lifetime: Duration;
        /// No two requests to the token endpoint start less than this apart (default 1 s), whatever
        /// the endpoint answers and however often callees refuse tokens: a fetch that falls due
        /// sooner waits (and its callers with it).
        min_fetch_interval: Duration;
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

    /// The back-off of failed refreshes: [`RefreshPolicy::min_backoff`] doubling up to
    /// [`RefreshPolicy::max_backoff`].
    fn backoff(&self) -> Backoff {
        Backoff {
            first: self.min_backoff,
            max: self.max_backoff,
        }
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
    /// Feature `redis`: tokens taken from the shared cache instead of the token endpoint (of the
    /// [`RedisCache`](super::RedisCache), which its managers share).
    #[cfg(feature = "redis")]
    pub shared_hits: u64,
    /// Feature `redis`: shared-cache operations that failed or timed out (the manager fetched
    /// on its own then).
    #[cfg(feature = "redis")]
    pub shared_errors: u64,
    /// Feature `redis`: outages of the shared cache (each logged once).
    #[cfg(feature = "redis")]
    pub shared_outages: u64,
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
    /// The token held, if any.
    value: Refreshing<Option<Arc<Held>>>,
    last_failure: Mutex<Option<(Instant, Error)>>,
    /// When the latest request to the token endpoint started (for `min_fetch_interval`).
    last_fetch: Mutex<Option<Instant>>,
    fetches: AtomicU64,
    failures: AtomicU64,
    /// Bumped by every request on every core: striped, so that cores do not fight over it.
    warm_hits: StripedCounter,
    forced_refreshes: AtomicU64,
    /// Feature `redis`: the second level, shared by replicas.
    #[cfg(feature = "redis")]
    second: std::sync::OnceLock<super::redis::Level>,
    /// Feature `redis`: the token a callee refused, to delete from the second level before the
    /// next fetch.
    #[cfg(feature = "redis")]
    rejected: Mutex<Option<BearerToken>>,
}

struct Held {
    token: BearerToken,
    usable_until: Instant,
    refresh_at: Instant,
    /// Unix milliseconds when received, and the lifetime: what the second level publishes.
    #[cfg(feature = "redis")]
    issued_ms: u64,
    #[cfg(feature = "redis")]
    lifetime: Duration,
}

impl fmt::Debug for TokenManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenManager")
            .field("grant", &self.shared.grant)
            .field("holds_token", &self.shared.value.load().is_some())
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
                value: Refreshing::new(None, ()),
                last_failure: Mutex::new(None),
                last_fetch: Mutex::new(None),
                fetches: AtomicU64::new(0),
                failures: AtomicU64::new(0),
                warm_hits: StripedCounter::default(),
                forced_refreshes: AtomicU64::new(0),
                #[cfg(feature = "redis")]
                second: std::sync::OnceLock::new(),
                #[cfg(feature = "redis")]
                rejected: Mutex::new(None),
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

    /// Feature `redis`: shares this grant's token with the other replicas through `cache`
    /// (see [`RedisCache`](super::RedisCache)). The warm path does not change: Redis is asked
    /// only when the token endpoint would be. A manager takes one cache, the first it is given.
    #[cfg(feature = "redis")]
    pub fn with_shared_cache(self, cache: super::RedisCache) -> Self {
        let level = cache.level(self.shared.grant.shared_key());
        if self.shared.second.set(level).is_err() {
            tracing::warn!(
                client_id = self.shared.grant.client_id(),
                "this token manager has a shared cache already; the new one is ignored"
            );
        }
        self
    }

    /// The counters.
    pub fn metrics(&self) -> TokenMetrics {
        let s = &self.shared;
        #[cfg(feature = "redis")]
        let cache = s.second.get().map(super::redis::Level::cache);
        TokenMetrics {
            fetches: s.fetches.load(Ordering::Relaxed),
            failures: s.failures.load(Ordering::Relaxed),
            warm_hits: s.warm_hits.get(),
            forced_refreshes: s.forced_refreshes.load(Ordering::Relaxed),
            #[cfg(feature = "redis")]
            shared_hits: cache.map_or(0, |c| c.hits()),
            #[cfg(feature = "redis")]
            shared_errors: cache.map_or(0, |c| c.errors()),
            #[cfg(feature = "redis")]
            shared_outages: cache.map_or(0, |c| c.outages()),
        }
    }

    /// With the flight held: a token from the second level when there is one (which fetches
    /// for the fleet or alone as needed), else from the token endpoint. `stale` is the token
    /// being replaced.
    async fn obtain(
        &self,
        why: &'static str,
        stale: Option<BearerToken>,
    ) -> Result<BearerToken, Error> {
        #[cfg(feature = "redis")]
        if let Some(level) = self.shared.second.get() {
            let rejected = self
                .shared
                .rejected
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            return level
                .obtain(&Fetcher { manager: self, why }, stale, rejected)
                .await;
        }
        let _ = stale;
        self.fetch_now(why).await
    }

    async fn fetch_shared(&self) -> Result<BearerToken, Error> {
        let shared = &self.shared;
        let flight = shared.value.flight(|waited| {
            if let Some(token) = self.current() {
                return Some(Ok(token));
            }
            // An attempt finished while this caller waited, or failed a moment ago: share its
            // outcome rather than asking the token endpoint again.
            shared
                .last_failure
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .filter(|(at, err)| {
                    waited
                        || at.elapsed()
                            < shared
                                .policy
                                .retry_interval
                                .max(shared.policy.server_delay(err))
                })
                .map(|(_, e)| Err(e.duplicate()))
        });
        let flight = match flight.await {
            Ok(flight) => flight,
            Err(answer) => return answer,
        };
        let result = self.obtain("cold", None).await;
        flight.finish();
        result
    }

    /// One request to the token endpoint; the caller holds the flight.
    async fn fetch_now(&self, why: &'static str) -> Result<BearerToken, Error> {
        self.fetch_held(why).await.map(|held| held.token.clone())
    }

    /// [`TokenManager::fetch_now`], answering what was stored.
    async fn fetch_held(&self, why: &'static str) -> Result<Arc<Held>, Error> {
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
            let token = BearerToken::new(response.access_token.expose_secret())?;
            Ok((token, response.expires_in))
        });
        crate::metrics::token_fetched(outcome.is_ok(), why == "refresh", started.elapsed());
        match outcome {
            Ok((token, expires_in)) => {
                let lifetime = shared
                    .policy
                    .clamp_lifetime(expires_in.unwrap_or(shared.policy.default_lifetime));
                let (usable_until, refresh_at) = shared.policy.schedule(Instant::now(), lifetime);
                let held = Arc::new(Held {
                    token,
                    usable_until,
                    refresh_at,
                    #[cfg(feature = "redis")]
                    issued_ms: super::redis::unix_ms(),
                    #[cfg(feature = "redis")]
                    lifetime,
                });
                shared.value.store(Some(held.clone()));
                *shared
                    .last_failure
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = None;
                span.record("outcome", "ok");
                tracing::info!(
                    parent: &span,
                    lifetime_secs = lifetime.as_secs(),
                    elapsed_ms,
                    "token fetched"
                );
                self.start_refresher();
                Ok(held)
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
        }
    }

    fn start_refresher(&self) {
        self.shared.value.start(&self.shared);
    }
}

/// The background refresh: at the held token's `refresh_at`; on failure retried with back-off
/// while the token lasts (and after, so that the next caller finds a token again).
impl Refresh for Shared {
    fn due_at(&self) -> Option<Instant> {
        self.value.load().as_ref().map(|held| held.refresh_at)
    }

    fn backoff(&self) -> Backoff {
        self.policy.backoff()
    }

    async fn refresh(self: Arc<Self>) -> Result<(), Duration> {
        let manager = TokenManager { shared: self };
        let Ok(flight) = manager
            .shared
            .value
            .flight(|_| None::<std::convert::Infallible>)
            .await;
        let (due, stale) = match &*manager.shared.value.load() {
            Some(held) => (Instant::now() >= held.refresh_at, Some(held.token.clone())),
            None => (true, None),
        };
        if !due {
            // Replaced meanwhile (a forced refresh): schedule on the new token.
            return Ok(());
        }
        let result = manager.obtain(REFRESH, stale).await;
        flight.finish();
        let Err(err) = result else { return Ok(()) };
        if !err.is_transient() {
            tracing::error!(
                client_id = manager.shared.grant.client_id(),
                error = %err,
                "token refresh refused; the held token is served until it expires: fix \
                 the configuration"
            );
        }
        Err(manager.shared.policy.server_delay(&err))
    }
}

impl TokenManager {
    /// Reads the held token if it is still usable: an atomic load and a clock read.
    fn with_held<R>(&self, f: impl FnOnce(&Held) -> R) -> Option<R> {
        let held = self.shared.value.load();
        let held = held.as_ref()?;
        if Instant::now() >= held.usable_until {
            return None;
        }
        self.shared.warm_hits.increment();
        Some(f(held))
    }
}

impl TokenSource for TokenManager {
    fn current(&self) -> Option<BearerToken> {
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

    fn invalidate(&self, rejected: &BearerToken) {
        let current = self.shared.value.load();
        if let Some(held) = &*current
            && held.token.same_as(rejected)
        {
            let previous = self.shared.value.cell().compare_and_swap(&current, None);
            if previous.as_ref().is_some_and(|p| p.token.same_as(rejected)) {
                self.shared.forced_refreshes.fetch_add(1, Ordering::Relaxed);
                #[cfg(feature = "redis")]
                if self.shared.second.get().is_some() {
                    *self
                        .shared
                        .rejected
                        .lock()
                        .unwrap_or_else(|e| e.into_inner()) = Some(rejected.clone());
                }
                tracing::info!(
                    client_id = self.shared.grant.client_id(),
                    "a callee refused the token; fetching a new one"
                );
            }
        }
    }
}

/// The manager as the second level sees it (feature `redis`), while it holds the flight.
#[cfg(feature = "redis")]
struct Fetcher<'a> {
    manager: &'a TokenManager,
    why: &'static str,
}

#[cfg(feature = "redis")]
impl super::redis::Fetcher for Fetcher<'_> {
    async fn fetch(&self) -> Result<super::redis::Entry, Error> {
        let held = self.manager.fetch_held(self.why).await?;
        Ok(super::redis::Entry {
            token: held.token.clone(),
            issued_ms: held.issued_ms,
            lifetime: held.lifetime,
        })
    }

    fn adopt(&self, entry: &super::redis::Entry) -> Option<BearerToken> {
        let shared = &self.manager.shared;
        let policy = &shared.policy;
        let now_ms = super::redis::unix_ms();
        // What no replica with this policy publishes: a token issued in the future (it would
        // pass for fresh far too long) or with a lifetime this manager would not give it.
        let refused = if entry.issued_ms > now_ms.saturating_add(policy.skew.as_millis() as u64) {
            Some("it says it was issued in the future (beyond the skew)")
        } else if policy.clamp_lifetime(entry.lifetime) != entry.lifetime {
            Some("its lifetime is outside min_lifetime..max_lifetime")
        } else {
            None
        };
        if let Some(why) = refused {
            tracing::warn!(
                client_id = shared.grant.client_id(),
                why,
                "the shared token entry is ignored and will be replaced"
            );
            return None;
        }
        let elapsed = Duration::from_millis(now_ms.saturating_sub(entry.issued_ms));
        let lifetime = entry.lifetime;
        let now = Instant::now();
        // Scheduled from when the token was issued, so that a replica refreshes it when its
        // fetcher would have (each with its own jitter).
        let (usable_until, refresh_at) = policy.schedule(now, lifetime);
        let back = |at: Instant| at.checked_sub(elapsed).unwrap_or(now);
        let (usable_until, refresh_at) = (back(usable_until), back(refresh_at));
        // A refresh needs a token that is not due itself (another replica's newer one).
        if now >= usable_until || (self.why == REFRESH && now >= refresh_at) {
            return None;
        }
        shared.value.store(Some(Arc::new(Held {
            token: entry.token.clone(),
            usable_until,
            refresh_at,
            issued_ms: entry.issued_ms,
            lifetime,
        })));
        *shared
            .last_failure
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = None;
        tracing::debug!(
            client_id = shared.grant.client_id(),
            why = self.why,
            "token taken from the shared cache"
        );
        self.manager.start_refresher();
        Some(entry.token.clone())
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
        assert!(policy.backoff().delay(1) <= Duration::from_secs(1));
        assert!(policy.backoff().delay(3) >= Duration::from_secs(2));
        assert!(policy.backoff().delay(30) <= Duration::from_secs(30));
    }
}
