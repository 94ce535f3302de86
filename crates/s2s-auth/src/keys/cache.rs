//! `KeyCache`: the cache of one remote key set, fetched on first use and refreshed in the
//! background.

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::time::Instant;
use url::Url;

use super::KeySet;
use crate::{
    discovery,
    error::{Code, Error},
    fetch::{self, HttpOptions},
    metrics::Metrics,
    refresh::{Backoff, Refresh, Refreshing},
    time::later,
};

/// Default of [`KeyCacheOptions::max_stale`]: how long past its time to live a key set is used
/// while its server cannot be reached.
pub const DEFAULT_MAX_STALE: Duration = Duration::from_secs(24 * 60 * 60);

/// Where a remote key set comes from.
#[derive(Clone, Debug)]
pub(crate) enum Remote {
    /// The issuer's discovery metadata names the `jwks_uri`.
    Discovery {
        /// The issuer, exactly as the metadata must name it.
        issuer: String,
    },
    /// The JWK set URL itself.
    Jwks(Url),
}

impl fmt::Display for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Remote::Discovery { issuer } => write!(f, "the key set of `{issuer}` (discovered)"),
            Remote::Jwks(url) => write!(f, "the JWK set `{url}`"),
        }
    }
}

/// How a remote key set is fetched and kept (the key cache of an issuer configured with
/// [`Issuer::discover`](crate::Issuer::discover) or [`Issuer::jwks`](crate::Issuer::jwks)).
///
/// ```
/// use std::time::Duration;
/// use s2s_auth::{Issuer, KeyCacheOptions, Verifier};
///
/// let options = KeyCacheOptions::default()
///     .max_stale(Duration::from_secs(60 * 60))
///     .unknown_kid_cooldown(Duration::from_secs(10));
/// let verifier = Verifier::builder()
///     .issuer(Issuer::discover("https://auth.example.com").audience("orders-api"))
///     .key_cache(options)
///     .build()?;
/// # Ok::<_, s2s_auth::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct KeyCacheOptions {
    pub(crate) min_ttl: Duration,
    pub(crate) max_ttl: Duration,
    pub(crate) default_ttl: Duration,
    pub(crate) unknown_kid_cooldown: Duration,
    pub(crate) retry_interval: Duration,
    pub(crate) max_stale: Duration,
    pub(crate) http: HttpOptions,
}

impl Default for KeyCacheOptions {
    fn default() -> Self {
        KeyCacheOptions {
            min_ttl: Duration::from_secs(60),
            max_ttl: Duration::from_secs(24 * 60 * 60),
            default_ttl: Duration::from_secs(5 * 60),
            unknown_kid_cooldown: Duration::from_secs(30),
            retry_interval: Duration::from_secs(1),
            max_stale: DEFAULT_MAX_STALE,
            http: HttpOptions::default(),
        }
    }
}

impl KeyCacheOptions {
    crate::refresh::setters! {
        /// Shortest time a fetched set is kept before a refresh (a smaller `max-age` is raised to it). Default 60 s.
        min_ttl: Duration;
        /// Longest time a fetched set is kept before a refresh (a larger `max-age` is lowered to it). Default 24 h.
        max_ttl: Duration;
        /// Time to live when the response has no usable `Cache-Control: max-age`. Default 5 min.
        default_ttl: Duration;
        /// After a refetch for an unknown `kid`, how long further unknown kids are rejected without
        /// a fetch. Bounds the load a flood of made-up kids can put on the key server. Default 30 s.
        unknown_kid_cooldown: Duration;
        /// After a failed fetch, how long requests that find no keys at all are answered 503 at once
        /// instead of fetching again. Default 1 s.
        retry_interval: Duration;
        /// How long past its time to live a key set is still used while every refresh fails
        /// (default [`DEFAULT_MAX_STALE`]). Known keys keep verifying through an outage of the key
        /// server up to then; after it they are not used, the issuer is not ready, and its tokens
        /// are answered 503 with `Retry-After` until a fetch succeeds. A key the issuer revoked
        /// while its JWK set was unreachable is trusted for at most this long.
        max_stale: Duration;
        /// Timeouts, body size limit and the https policy of every fetch.
        http: HttpOptions;
    }
}

/// What the cache holds now.
pub(crate) struct Snapshot {
    pub(crate) keys: KeySet,
    /// Increases with every successful fetch; 0 until the first.
    pub(crate) generation: u64,
    /// When the background task refreshes.
    refresh_at: Instant,
    /// Until when the keys may be used: fetched + time to live + `max_stale`.
    usable_until: Instant,
}

impl Snapshot {
    /// Whether the keys may verify now: fetched, and not past their maximum staleness.
    pub(crate) fn is_usable(&self) -> bool {
        self.generation > 0 && Instant::now() < self.usable_until
    }
}

/// Why a fetch was asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FetchReason {
    /// No keys yet.
    Cold,
    /// A token names a kid the set does not have.
    UnknownKid,
    /// The time to live is running out.
    Refresh,
}

/// The cache of one remote key set. Cheap to clone; the background refresh ends when the last
/// clone is dropped.
#[derive(Clone)]
pub(crate) struct KeyCache {
    shared: Arc<Shared>,
}

struct Shared {
    remote: Remote,
    options: KeyCacheOptions,
    client: reqwest::Client,
    /// The keys held; the flight's state is the `jwks_uri` found by discovery.
    value: Refreshing<Arc<Snapshot>, Option<Url>>,
    backoff: Arc<BackoffState>,
    /// Charged for every fetch but the background refresh (a tenant's key cache).
    budget: Option<Arc<FetchBudget>>,
    metrics: Arc<Metrics>,
}

/// The unknown-kid cooldown and failure back-off of a key cache: apart from it, so that a
/// tenant's outlives its evicted key cache and a new cache cannot be used to skip it.
pub(crate) struct BackoffState {
    /// Milliseconds since `epoch` (+1; 0 = never) of the last unknown-kid fetch and failure.
    last_kid_fetch: AtomicU64,
    last_failure: AtomicU64,
    last_error: std::sync::Mutex<Option<Arc<str>>>,
    epoch: Instant,
}

impl BackoffState {
    pub(crate) fn new() -> Self {
        BackoffState {
            last_kid_fetch: AtomicU64::new(0),
            last_failure: AtomicU64::new(0),
            last_error: std::sync::Mutex::new(None),
            epoch: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }
}

/// A token bucket over key set fetches shared by many key caches: `burst` at once, then one
/// more per `interval`.
pub(crate) struct FetchBudget {
    burst: u32,
    interval: Duration,
    /// Fetches left, and since when the next one accrues.
    state: std::sync::Mutex<(u32, Instant)>,
}

impl FetchBudget {
    /// `burst` and `interval` are not zero (checked by the builder).
    pub(crate) fn new(burst: u32, interval: Duration) -> Self {
        FetchBudget {
            burst,
            interval,
            state: std::sync::Mutex::new((burst, Instant::now())),
        }
    }

    /// Takes one fetch (`take`) or only looks; `Err` says how long until the next one.
    pub(crate) fn check(&self, take: bool) -> Result<(), Duration> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (left, since) = &mut *state;
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(*since);
        let accrued = elapsed.as_nanos() / self.interval.as_nanos().max(1);
        if accrued > 0 {
            let accrued = u32::try_from(accrued).unwrap_or(u32::MAX);
            *left = left.saturating_add(accrued).min(self.burst);
            *since = if *left == self.burst {
                now
            } else {
                *since + self.interval * accrued
            };
        }
        if *left == 0 {
            return Err(self
                .interval
                .saturating_sub(now.saturating_duration_since(*since)));
        }
        if take {
            if *left == self.burst {
                // A full bucket accrues nothing: the next fetch accrues from now.
                *since = now;
            }
            *left -= 1;
        }
        Ok(())
    }
}

impl fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let snapshot = self.shared.value.load();
        f.debug_struct("KeyCache")
            .field("remote", &self.shared.remote)
            .field("keys", &snapshot.keys)
            .field("generation", &snapshot.generation)
            .finish()
    }
}

impl KeyCache {
    pub(crate) fn new(
        remote: Remote,
        options: KeyCacheOptions,
        metrics: Arc<Metrics>,
    ) -> Result<KeyCache, Error> {
        let client = options.http.client()?;
        Ok(KeyCache::with_client(
            remote,
            options,
            client,
            metrics,
            Arc::new(BackoffState::new()),
            None,
        ))
    }

    /// [`KeyCache::new`] with a client of `options.http` made before (shared by many caches),
    /// the back-off state of a predecessor, and the budget its fetches are charged to.
    pub(crate) fn with_client(
        remote: Remote,
        options: KeyCacheOptions,
        client: reqwest::Client,
        metrics: Arc<Metrics>,
        backoff: Arc<BackoffState>,
        budget: Option<Arc<FetchBudget>>,
    ) -> KeyCache {
        let epoch = Instant::now();
        KeyCache {
            shared: Arc::new(Shared {
                remote,
                options,
                client,
                value: Refreshing::new(
                    Arc::new(Snapshot {
                        keys: KeySet::default(),
                        generation: 0,
                        refresh_at: epoch,
                        usable_until: epoch,
                    }),
                    None,
                ),
                backoff,
                budget,
                metrics,
            }),
        }
    }

    /// The current keys, without a lock.
    pub(crate) fn snapshot(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.shared.value.load()
    }

    /// Whether the cache holds keys it may verify with: fetched, and not older than their time
    /// to live plus [`KeyCacheOptions::max_stale`].
    pub(crate) fn is_usable(&self) -> bool {
        self.shared.value.load().is_usable()
    }

    /// Fetches the set now unless another fetch completed since `seen_generation` or `reason`'s
    /// back-off applies, in which case it returns at once. Concurrent callers share one fetch.
    ///
    /// A fetch for an unknown kid starts the cooldown when it ends without that kid (failed, or
    /// the kid is not in the new set): a rotation is not an attack, and two rotations in a row
    /// must not wait for each other. It is stamped at the end, not the start, so that requests
    /// arriving during the fetch wait for its result instead of being refused.
    pub(crate) async fn fetch(
        &self,
        seen_generation: u64,
        reason: FetchReason,
        wanted_kid: Option<&str>,
    ) -> Result<(), Error> {
        let shared = &self.shared;
        // Asked again once the flight is ours: another caller may have fetched (or failed)
        // while this one waited.
        let flight = shared
            .value
            .flight(|_| self.backing_off(seen_generation, reason))
            .await;
        let mut jwks_uri = match flight {
            Ok(flight) => flight,
            Err(answer) => return answer,
        };
        // Charged only once this caller is the one fetching; the background refresh (one per
        // held cache per time to live) is not, so that held keys never go stale for it.
        if let Some(budget) = shared
            .budget
            .as_ref()
            .filter(|_| reason != FetchReason::Refresh)
            && let Err(wait) = budget.check(true)
        {
            return Err(budget_exhausted(wait));
        }
        let started = Instant::now();
        let result = shared.fetch_once(&mut jwks_uri).await;
        shared
            .metrics
            .jwks_fetched(result.is_ok(), started.elapsed());
        let result = match result {
            Ok((keys, ttl)) => {
                let generation = shared.value.load().generation + 1;
                // Refresh when 80% of the time to live has passed, so that a slow or failing
                // key server has the remaining 20% to recover before the keys are stale.
                let now = Instant::now();
                let refresh_at = later(now, ttl.mul_f64(0.8));
                let usable_until = later(now, ttl.saturating_add(shared.options.max_stale));
                tracing::info!(
                    target: "s2s_auth::jwks",
                    source = ?shared.remote,
                    ?reason,
                    kids = ?keys.kids().collect::<Vec<_>>(),
                    ttl_secs = ttl.as_secs(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "fetched key set"
                );
                let found = wanted_kid.is_some_and(|kid| keys.kids().any(|k| k == kid));
                if reason == FetchReason::UnknownKid && !found {
                    self.start_kid_cooldown();
                }
                let keys = keys.reuse_unchanged(&shared.value.load().keys);
                shared.value.store(Arc::new(Snapshot {
                    keys,
                    generation,
                    refresh_at,
                    usable_until,
                }));
                self.start_refresher();
                Ok(())
            }
            Err(err) => {
                // Say which key set failed: the message reaches logs (never a caller).
                let err = Error::new(err.kind(), format!("fetching {}: {err}", shared.remote));
                if reason == FetchReason::UnknownKid {
                    self.start_kid_cooldown();
                }
                let backoff = &shared.backoff;
                backoff
                    .last_failure
                    .store(backoff.now_ms(), Ordering::Relaxed);
                *backoff.last_error.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some(err.to_string().into());
                let held = shared.value.load();
                if held.generation > 0 && !held.is_usable() {
                    tracing::error!(
                        target: "s2s_auth::jwks",
                        source = ?shared.remote,
                        ?reason,
                        error = %err,
                        max_stale_secs = shared.options.max_stale.as_secs(),
                        "key set fetch failed and the keys held are past their maximum \
                         staleness: not using them; tokens of this issuer are refused (503)"
                    );
                } else {
                    tracing::warn!(
                        target: "s2s_auth::jwks",
                        source = ?shared.remote,
                        ?reason,
                        error = %err,
                        "key set fetch failed; keeping the keys held"
                    );
                }
                Err(err)
            }
        };
        jwks_uri.finish();
        result
    }

    /// `Some(result)` when `fetch` should not fetch now.
    fn backing_off(&self, seen_generation: u64, reason: FetchReason) -> Option<Result<(), Error>> {
        let shared = &self.shared;
        if shared.value.load().generation != seen_generation {
            return Some(Ok(()));
        }
        let backoff = &shared.backoff;
        let (last, interval) = match reason {
            FetchReason::UnknownKid => (
                backoff.last_kid_fetch.load(Ordering::Relaxed),
                shared.options.unknown_kid_cooldown,
            ),
            FetchReason::Cold => (
                backoff.last_failure.load(Ordering::Relaxed),
                shared.options.retry_interval,
            ),
            FetchReason::Refresh => return None,
        };
        if last == 0 {
            return None;
        }
        let since = Duration::from_millis(backoff.now_ms().saturating_sub(last));
        if since >= interval {
            return None;
        }
        let retry_after = interval - since;
        Some(Err(match reason {
            FetchReason::UnknownKid => Error::new(
                crate::ErrorKind::Rejected,
                "the key set was refetched recently; unknown kids are not looked up again yet",
            )
            .with_retry_after(retry_after),
            _ => {
                let last = backoff
                    .last_error
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                Error::transient(format!(
                    "the key set is not available: {}",
                    last.as_deref().unwrap_or("fetch failed")
                ))
                .with_retry_after(retry_after)
            }
        }))
    }

    fn start_kid_cooldown(&self) {
        let backoff = &self.shared.backoff;
        backoff
            .last_kid_fetch
            .store(backoff.now_ms(), Ordering::Relaxed);
    }

    fn start_refresher(&self) {
        self.shared.value.start(&self.shared);
    }
}

/// The refusal of a fetch for want of budget: 503 with `Retry-After` (see
/// [`VerifierBuilder::tenant_fetch_limit`](crate::VerifierBuilder::tenant_fetch_limit)).
pub(crate) fn budget_exhausted(wait: Duration) -> Error {
    Error::transient(
        "too many tenant key set fetches lately (the verifier's tenant fetch limit); not \
         fetching now",
    )
    .with_code(Code::RateLimited)
    .with_retry_after(wait.max(Duration::from_secs(1)))
}

/// The background refresh: before the time to live ends; on failure retried with jittered
/// exponential back-off (2 s doubling up to the minimum time to live), keeping the old keys
/// meanwhile.
impl Refresh for Shared {
    fn due_at(&self) -> Option<Instant> {
        Some(self.value.load().refresh_at)
    }

    fn backoff(&self) -> Backoff {
        Backoff {
            first: Duration::from_secs(2),
            max: self.options.min_ttl.max(Duration::from_secs(1)),
        }
    }

    async fn refresh(self: Arc<Self>) -> Result<(), Duration> {
        let cache = KeyCache { shared: self };
        let generation = cache.snapshot().generation;
        let result = cache.fetch(generation, FetchReason::Refresh, None).await;
        result.map_err(|_| Duration::ZERO)
    }
}

impl Shared {
    async fn fetch_once(&self, jwks_uri: &mut Option<Url>) -> Result<(KeySet, Duration), Error> {
        let http = &self.options.http;
        let url = match (&self.remote, jwks_uri.as_ref()) {
            (Remote::Jwks(url), _) => url.clone(),
            (Remote::Discovery { .. }, Some(url)) => url.clone(),
            (Remote::Discovery { issuer }, None) => {
                let meta = discovery::discover(&self.client, issuer, http).await?;
                let url = meta.jwks_uri(http.allow_insecure_http)?;
                *jwks_uri = Some(url.clone());
                url
            }
        };
        let result = self.fetch_jwks(&url).await;
        if result.is_err() && matches!(self.remote, Remote::Discovery { .. }) {
            // The metadata may have moved the key set: discover again next time.
            *jwks_uri = None;
        }
        result
    }

    async fn fetch_jwks(&self, url: &Url) -> Result<(KeySet, Duration), Error> {
        let response = self
            .client
            .get(url.clone())
            .header(
                http::header::ACCEPT,
                "application/jwk-set+json, application/json",
            )
            .send()
            .await
            .map_err(|e| fetch::request_error(e, "fetching the JWK set"))?;
        let status = response.status();
        let ttl = self.ttl(response.headers().get(http::header::CACHE_CONTROL));
        let body = fetch::read_body(response, self.options.http.max_body).await?;
        if !status.is_success() {
            return Err(Error::transient(format!(
                "JWK set endpoint `{url}` answered {status}: `{}`",
                fetch::excerpt(&body)
            ))
            .with_status(status));
        }
        let keys = KeySet::from_jwks(&body)?;
        Ok((keys, ttl))
    }

    /// The time to live from `Cache-Control` (`max-age`; `no-cache`/`no-store` mean the
    /// minimum), clamped to the configured bounds.
    fn ttl(&self, cache_control: Option<&http::HeaderValue>) -> Duration {
        let o = &self.options;
        let ttl = cache_control
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.split(',').map(str::trim).find_map(|directive| {
                    let lower = directive.to_ascii_lowercase();
                    if lower == "no-cache" || lower == "no-store" {
                        Some(Duration::ZERO)
                    } else {
                        lower
                            .strip_prefix("max-age=")
                            .and_then(|s| s.trim_matches('"').parse().ok())
                            .map(Duration::from_secs)
                    }
                })
            })
            .unwrap_or(o.default_ttl);
        ttl.clamp(o.min_ttl, o.max_ttl.max(o.min_ttl))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_sets_the_ttl_within_bounds() {
        let cache = KeyCache::new(
            Remote::Jwks(Url::parse("http://127.0.0.1/jwks").unwrap()),
            KeyCacheOptions::default(),
            Arc::default(),
        )
        .unwrap();
        let ttl = |v: &str| {
            cache
                .shared
                .ttl(Some(&http::HeaderValue::from_str(v).unwrap()))
        };
        assert_eq!(ttl("public, max-age=600"), Duration::from_secs(600));
        assert_eq!(ttl("max-age=1"), Duration::from_secs(60));
        assert_eq!(ttl("max-age=99999999"), Duration::from_secs(86400));
        assert_eq!(ttl("no-store"), Duration::from_secs(60));
        assert_eq!(ttl("private"), Duration::from_secs(300));
        assert_eq!(cache.shared.ttl(None), Duration::from_secs(300));
    }

    #[tokio::test(start_paused = true)]
    async fn the_fetch_budget_refills_one_per_interval_up_to_its_burst() {
        let budget = FetchBudget::new(2, Duration::from_secs(10));
        let advance = tokio::time::advance;
        assert_eq!(budget.check(true), Ok(()));
        assert_eq!(budget.check(true), Ok(()));
        assert_eq!(budget.check(false), Err(Duration::from_secs(10)));
        advance(Duration::from_secs(4)).await;
        assert_eq!(budget.check(true), Err(Duration::from_secs(6)));
        advance(Duration::from_secs(6)).await;
        // Looking takes nothing.
        assert_eq!(budget.check(false), Ok(()));
        assert_eq!(budget.check(true), Ok(()));
        assert_eq!(budget.check(true), Err(Duration::from_secs(10)));
        // A long pause refills up to the burst, no more.
        advance(Duration::from_secs(100)).await;
        assert_eq!(budget.check(true), Ok(()));
        assert_eq!(budget.check(true), Ok(()));
        assert_eq!(budget.check(true), Err(Duration::from_secs(10)));
    }
}
