//! [`Verifier`]: the check of one access token against its issuer's keys and the claims rules.
//!
//! ```
//! # async fn run() -> Result<(), s2s_auth::Error> {
//! use s2s_auth::{Issuer, Verifier};
//!
//! let verifier = Verifier::builder()
//!     // Keys found through the issuer's discovery metadata, cached and refreshed.
//!     .issuer(Issuer::discover("https://auth.example.com"))
//!     .audience("orders-api")
//!     .build()?;
//! match verifier.verify("eyJ...").await {
//!     Ok(verified) => println!("caller {:?}", verified.standard().sub),
//!     Err(rejection) => println!("refused: {rejection}"),
//! }
//! # Ok(()) }
//! ```
//!
//! Once the keys are loaded, verifying is pure computation: no I/O and no lock. The algorithm
//! must be allowed by the verifier *and* by the key the `kid` names (an RSA key verifies only
//! RS*/PS*, a P-256 key only ES256, and so on), so RS256 and ES256 issuers can be accepted side
//! by side without ever checking an HMAC or `none` "signature". `jku`, `x5u`, `jwk` and `x5c`
//! headers are never followed: keys come only from the configured sources.

use std::{
    borrow::Cow,
    fmt,
    sync::{
        Arc, Weak,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::Algorithm;
use serde::Deserialize;
use url::Url;

use crate::{
    claims::{StandardClaims, Verified, VerifiedInner},
    error::Error,
    fetch::{self, HttpOptions},
    jwks::{
        AlgSet, FetchReason, Key, KeyCache, KeyCacheOptions, KeySet, Remote, SUPPORTED_ALGORITHMS,
    },
    metrics::{Metrics, MetricsSnapshot},
    rejection::{Reason, Rejection, sanitize},
};

/// Default limit on the length of a token, checked before any parsing.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Default clock-skew allowance for `exp` and `nbf`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);

/// An accepted issuer, where its keys come from, and (optionally) the audiences its tokens
/// must name.
///
/// ```
/// use s2s_auth::{Issuer, Verifier};
///
/// // Each issuer's tokens must name one of *its* audiences: a token of `auth-a` for
/// // `billing-api` is refused even though `billing-api` is accepted from `auth-b`.
/// let verifier = Verifier::builder()
///     .issuer(Issuer::discover("https://auth-a.example.com").audience("orders-api"))
///     .issuer(Issuer::discover("https://auth-b.example.com").audiences(["billing-api", "ops"]))
///     .build()?;
/// # Ok::<_, s2s_auth::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Issuer {
    issuer: String,
    keys: IssuerKeys,
    audiences: Vec<String>,
}

#[derive(Clone, Debug)]
enum IssuerKeys {
    Discover,
    Jwks(String),
    Static(KeySet),
}

impl Issuer {
    /// An issuer whose keys are found through its metadata
    /// (`/.well-known/openid-configuration`, then `/.well-known/oauth-authorization-server`).
    /// The metadata must name exactly this issuer.
    pub fn discover(issuer: impl Into<String>) -> Self {
        Issuer {
            issuer: issuer.into(),
            keys: IssuerKeys::Discover,
            audiences: Vec::new(),
        }
    }

    /// An issuer whose keys are published at `jwks_url`.
    pub fn jwks(issuer: impl Into<String>, jwks_url: impl Into<String>) -> Self {
        Issuer {
            issuer: issuer.into(),
            keys: IssuerKeys::Jwks(jwks_url.into()),
            audiences: Vec::new(),
        }
    }

    /// An issuer with fixed keys (tests, offline use).
    pub fn keys(issuer: impl Into<String>, keys: KeySet) -> Self {
        Issuer {
            issuer: issuer.into(),
            keys: IssuerKeys::Static(keys),
            audiences: Vec::new(),
        }
    }

    /// Accepts this issuer's tokens only when their `aud` names `audience` (call again, or use
    /// [`Issuer::audiences`], to accept any of several). An issuer with audiences of its own
    /// ignores those of [`VerifierBuilder::audience`].
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// [`Issuer::audience`] for each of `audiences`.
    pub fn audiences<I, S>(mut self, audiences: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.audiences.extend(audiences.into_iter().map(Into::into));
        self
    }

    /// The issuer identifier tokens must carry in `iss`.
    pub fn id(&self) -> &str {
        &self.issuer
    }
}

/// Builds a [`Verifier`].
#[must_use]
pub struct VerifierBuilder {
    issuers: Vec<Issuer>,
    audiences: Vec<String>,
    algorithms: Vec<Algorithm>,
    leeway: Duration,
    require_at_jwt: bool,
    required_claims: Vec<String>,
    max_token_bytes: usize,
    key_cache: KeyCacheOptions,
    clock: Option<Arc<dyn Fn() -> SystemTime + Send + Sync>>,
    token_cache_entries: u64,
}

impl fmt::Debug for VerifierBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifierBuilder")
            .field("issuers", &self.issuers)
            .field("audiences", &self.audiences)
            .finish_non_exhaustive()
    }
}

impl VerifierBuilder {
    /// Accepts tokens of `issuer` (call again for several issuers, each with its own keys).
    pub fn issuer(mut self, issuer: Issuer) -> Self {
        self.issuers.push(issuer);
        self
    }

    /// Accepts tokens whose `aud` names `audience` (call again to accept any of several), for
    /// every issuer without audiences of its own ([`Issuer::audience`]). Every issuer needs at
    /// least one audience, its own or these: a token meant for another service must not be
    /// accepted here.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// The algorithms accepted (default: all of [`SUPPORTED_ALGORITHMS`]). Each key further
    /// limits them to those of its type.
    pub fn algorithms(mut self, algorithms: &[Algorithm]) -> Self {
        self.algorithms = algorithms.to_vec();
        self
    }

    /// Clock-skew allowance for `exp` and `nbf` (default [`DEFAULT_LEEWAY`]).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Strict RFC 9068 mode: requires the header `typ: at+jwt` (or `application/at+jwt`, in any
    /// case), refusing also tokens without `typ` or with `typ: JWT`.
    ///
    /// Without it, a token whose `typ` names another kind of JWT (an ID token, a security event,
    /// a DPoP proof, a logout token, ...) is refused all the same: only no `typ`, `JWT` (or
    /// `application/jwt`) and `at+jwt` are accepted, so that another JWT of the same issuer is
    /// never taken for an access token.
    pub fn require_at_jwt(mut self, require: bool) -> Self {
        self.require_at_jwt = require;
        self
    }

    /// Requires `claim` to be present (`exp` always is).
    pub fn required_claim(mut self, claim: impl Into<String>) -> Self {
        self.required_claims.push(claim.into());
        self
    }

    /// Limit on the token length, checked before any parsing (default
    /// [`DEFAULT_MAX_TOKEN_BYTES`]).
    pub fn max_token_bytes(mut self, max: usize) -> Self {
        self.max_token_bytes = max;
        self
    }

    /// How remote key sets are fetched and cached.
    pub fn key_cache(mut self, options: KeyCacheOptions) -> Self {
        self.key_cache = options;
        self
    }

    /// How long past its time to live a remote key set is still used while every refresh fails
    /// (default [`DEFAULT_MAX_STALE`](crate::jwks::DEFAULT_MAX_STALE), 24 h): known keys keep
    /// verifying through a key-server outage, but not forever. Past it the issuer is not ready
    /// ([`Verifier::is_ready`] is false) and its tokens are answered 503 with `Retry-After`
    /// until a fetch succeeds. Shortcut for [`KeyCacheOptions::max_stale`].
    pub fn max_stale(mut self, max_stale: Duration) -> Self {
        self.key_cache.max_stale = max_stale;
        self
    }

    /// Shortcut for the HTTP options of [`VerifierBuilder::key_cache`].
    pub fn http(mut self, http: HttpOptions) -> Self {
        self.key_cache.http = http;
        self
    }

    /// Bound of the validated-token cache (default [`DEFAULT_TOKEN_CACHE_ENTRIES`]; 0 turns it
    /// off). A token verified twice is kept; from then on it costs a lookup instead of a
    /// signature check. `exp` and `nbf` are still checked on every hit, and entries go when
    /// their token expires or their key leaves the key set.
    pub fn token_cache(mut self, max_entries: u64) -> Self {
        self.token_cache_entries = max_entries;
        self
    }

    /// The clock `exp` and `nbf` are checked against (default: the system clock).
    pub fn clock(mut self, clock: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Checks the configuration and builds the verifier. Fails on a missing issuer or audience,
    /// an unsupported algorithm, or a key URL that breaks the https policy.
    pub fn build(self) -> Result<Verifier, Error> {
        if self.issuers.is_empty() {
            return Err(Error::config(
                "no issuer configured: add one with `.issuer(Issuer::discover(url))`",
            ));
        }
        if let Some(bad) = self
            .algorithms
            .iter()
            .find(|a| !SUPPORTED_ALGORITHMS.contains(a))
        {
            return Err(Error::config(format!(
                "{bad:?} cannot be allowed: only the asymmetric algorithms \
                 {SUPPORTED_ALGORITHMS:?} are verified"
            )));
        }
        let algorithms = AlgSet::from_slice(&self.algorithms);
        if algorithms.is_empty() {
            return Err(Error::config("no algorithm allowed"));
        }
        let metrics = Arc::new(Metrics::default());
        let allow_insecure = self.key_cache.http.allow_insecure_http;
        let mut issuers = Vec::with_capacity(self.issuers.len());
        for issuer in self.issuers {
            if issuers
                .iter()
                .any(|i: &IssuerState| i.issuer == issuer.issuer)
            {
                return Err(Error::config(format!(
                    "issuer `{}` is configured twice",
                    issuer.issuer
                )));
            }
            let audiences = if issuer.audiences.is_empty() {
                self.audiences.clone()
            } else {
                issuer.audiences
            };
            if audiences.is_empty() {
                return Err(Error::config(format!(
                    "no audience configured for issuer `{}`: add this service's identifier with \
                     `.audience(...)` (on the builder, or on the `Issuer` for its tokens only) so \
                     that tokens meant for other services are refused",
                    issuer.issuer
                )));
            }
            let keys = match issuer.keys {
                IssuerKeys::Static(set) => Keys::Static(set),
                IssuerKeys::Discover => {
                    fetch::parse_endpoint(&issuer.issuer, allow_insecure)?;
                    Keys::Remote(KeyCache::new(
                        Remote::Discovery {
                            issuer: issuer.issuer.clone(),
                        },
                        self.key_cache.clone(),
                        metrics.clone(),
                    )?)
                }
                IssuerKeys::Jwks(url) => {
                    let url: Url = fetch::parse_endpoint(&url, allow_insecure)?;
                    Keys::Remote(KeyCache::new(
                        Remote::Jwks(url),
                        self.key_cache.clone(),
                        metrics.clone(),
                    )?)
                }
            };
            issuers.push(IssuerState {
                issuer: issuer.issuer,
                audiences,
                keys,
            });
        }
        let required_claims = self
            .required_claims
            .into_iter()
            .filter(|c| c != "exp")
            .collect();
        Ok(Verifier {
            inner: Arc::new(Inner {
                issuers,
                algorithms,
                leeway: self.leeway.as_secs(),
                require_at_jwt: self.require_at_jwt,
                required_claims,
                max_token_bytes: self.max_token_bytes,
                clock: self.clock,
                metrics,
                token_cache: (self.token_cache_entries > 0).then(|| TokenCache {
                    entries: moka::sync::Cache::builder()
                        .max_capacity(self.token_cache_entries)
                        .expire_after(UntilExpiry)
                        .build_with_hasher(SignatureHash),
                    seen_once: (0..doorkeeper_slots(self.token_cache_entries))
                        .map(|_| AtomicU64::new(0))
                        .collect(),
                }),
            }),
        })
    }
}

/// Verifies access tokens. Cheap to clone (one reference count); clones share keys, caches and
/// counters.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

struct Inner {
    issuers: Vec<IssuerState>,
    algorithms: AlgSet,
    leeway: u64,
    require_at_jwt: bool,
    required_claims: Vec<String>,
    max_token_bytes: usize,
    clock: Option<Arc<dyn Fn() -> SystemTime + Send + Sync>>,
    metrics: Arc<Metrics>,
    token_cache: Option<TokenCache>,
}

struct IssuerState {
    issuer: String,
    /// Its own audiences, or the builder's when it has none.
    audiences: Vec<String>,
    keys: Keys,
}

enum Keys {
    Static(KeySet),
    Remote(KeyCache),
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field(
                "issuers",
                &self
                    .inner
                    .issuers
                    .iter()
                    .map(|i| (&i.issuer, &i.audiences))
                    .collect::<Vec<_>>(),
            )
            .field("algorithms", &self.inner.algorithms)
            .finish_non_exhaustive()
    }
}

/// The JOSE header members this verifier reads. Duplicate members are refused by serde.
#[derive(Deserialize)]
struct JoseHeader<'a> {
    #[serde(borrow)]
    alg: Cow<'a, str>,
    #[serde(default, borrow)]
    kid: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    typ: Option<Cow<'a, str>>,
    #[serde(default)]
    crit: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    enc: Option<serde::de::IgnoredAny>,
}

/// A token verified before, as the validated-token cache keeps it.
struct CachedToken {
    /// The whole token, compared on every hit.
    token: Box<str>,
    verified: Verified,
    /// The key that verified it; once the key leaves its set, the entry is worthless.
    key: Weak<Key>,
    /// The index of its issuer, whose keys must still be usable (not too stale) on a hit.
    issuer: usize,
    exp: u64,
    /// How long moka keeps the entry: until `exp` plus the leeway.
    ttl: Duration,
}

struct UntilExpiry;

impl moka::Expiry<Box<str>, Arc<CachedToken>> for UntilExpiry {
    fn expire_after_create(
        &self,
        _: &Box<str>,
        value: &Arc<CachedToken>,
        _: std::time::Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// The validated-token cache, with its admission filter.
struct TokenCache {
    entries: moka::sync::Cache<Box<str>, Arc<CachedToken>, SignatureHash>,
    /// Hashes of signatures verified once. A token enters the cache the second time it is
    /// verified: a caller reuses its token, so that costs one more check per token, while
    /// traffic of ever-new tokens (a flood, or a caller that never reuses) never pays for
    /// cache inserts and evictions. A lost race or a collision only costs a check.
    seen_once: Box<[AtomicU64]>,
}

/// Slots of the admission filter: four per cache entry (so that few tokens share one), at
/// most 2^20 (8 MiB).
fn doorkeeper_slots(max_entries: u64) -> usize {
    let wanted = usize::try_from(max_entries.saturating_mul(4)).unwrap_or(usize::MAX);
    wanted.clamp(64, 1 << 20).next_power_of_two()
}

impl TokenCache {
    /// Whether `signature` was verified before (and, if not, remembers it).
    fn admit(&self, signature: &str) -> bool {
        use std::hash::BuildHasher as _;
        let hash = SignatureHash.hash_one(signature);
        let slots = self.seen_once.len();
        // Two slots (from the low and the high half of the hash), so that two tokens that
        // share one slot still find their mark in the other.
        let [first, second] = [hash as usize % slots, (hash >> 32) as usize % slots];
        // Never 0, the mark of an empty slot.
        let mark = hash | 1;
        let seen_first = self.seen_once[first].swap(mark, Ordering::Relaxed) == mark;
        let seen_second = self.seen_once[second].swap(mark, Ordering::Relaxed) == mark;
        seen_first || seen_second
    }
}

/// Hashes a cache key, a token's signature segment, by its first 16 characters (about 96
/// random bits of base64url), well mixed: as well spread as SipHash for a fraction of its cost. Crafted
/// collisions gain nothing: only tokens whose signature verified are ever inserted.
#[derive(Clone, Copy, Default)]
struct SignatureHash;

impl std::hash::BuildHasher for SignatureHash {
    type Hasher = SignatureHasher;

    fn build_hasher(&self) -> SignatureHasher {
        SignatureHasher(0)
    }
}

struct SignatureHasher(u64);

impl std::hash::Hasher for SignatureHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut head = [0u8; 16];
        let n = bytes.len().min(16);
        head[..n].copy_from_slice(&bytes[..n]);
        let [a, b] = [&head[..8], &head[8..]]
            .map(|h| u64::from_le_bytes(h.try_into().expect("eight bytes")));
        self.0 = (self.0 ^ a ^ b.rotate_left(32)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn finish(&self) -> u64 {
        // The 64-bit finaliser of MurmurHash3: every output bit depends on every input bit
        // (base64 text alone leaves the low bits poorly spread).
        let mut x = self.0;
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        x ^ (x >> 33)
    }
}

/// Default bound of the validated-token cache.
pub const DEFAULT_TOKEN_CACHE_ENTRIES: u64 = 10_000;

/// Why [`Verifier::verify_now`] could not decide.
pub(crate) enum Pending {
    Rejected(Rejection),
    /// The issuer's keys must be fetched first.
    NeedKeys {
        issuer: usize,
        generation: u64,
        reason: FetchReason,
        /// The kid looked for (only on this rare path is it copied).
        kid: Option<Box<str>>,
    },
}

impl From<Rejection> for Pending {
    fn from(r: Rejection) -> Self {
        Pending::Rejected(r)
    }
}

/// Every refusal of the verifier: the caller is shown the reason's fixed summary, the log
/// line also `detail` (see [`Rejection::summarized`]).
fn reject(reason: Reason, detail: impl Into<Cow<'static, str>>) -> Pending {
    Pending::Rejected(Rejection::summarized(reason, detail))
}

impl Verifier {
    /// Starts building a verifier.
    pub fn builder() -> VerifierBuilder {
        VerifierBuilder {
            issuers: Vec::new(),
            audiences: Vec::new(),
            algorithms: SUPPORTED_ALGORITHMS.to_vec(),
            leeway: DEFAULT_LEEWAY,
            require_at_jwt: false,
            required_claims: Vec::new(),
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
            key_cache: KeyCacheOptions::default(),
            clock: None,
            token_cache_entries: DEFAULT_TOKEN_CACHE_ENTRIES,
        }
    }

    /// Verifies `token`, fetching the issuer's keys first when they are not loaded yet or the
    /// token names a `kid` not seen before (subject to the key cache's cooldown).
    pub async fn verify(&self, token: &str) -> Result<Verified, Rejection> {
        let mut fetched = false;
        loop {
            match self.verify_now(token) {
                Ok(v) => return Ok(v),
                Err(Pending::Rejected(r)) => return Err(r),
                Err(Pending::NeedKeys {
                    issuer,
                    generation,
                    reason,
                    kid,
                }) => {
                    // At most one fetch per verification, whatever the token says.
                    if fetched {
                        return Err(self.reject_after_fetch(token, issuer, reason, Ok(())));
                    }
                    let fetch = self.fetch_keys(issuer, generation, reason, kid.as_deref());
                    if let Err(e) = fetch.await {
                        return Err(self.reject_after_fetch(token, issuer, reason, Err(e)));
                    }
                    fetched = true;
                }
            }
        }
    }

    /// Verifies with the keys held now, never fetching: a token whose key is not held is
    /// refused ([`Reason::KeysUnavailable`] before the first fetch or past
    /// [`VerifierBuilder::max_stale`], else [`Reason::UnknownKey`]).
    /// For synchronous contexts and benchmarks; [`Verifier::verify`] is the usual entry point.
    pub fn verify_with_held_keys(&self, token: &str) -> Result<Verified, Rejection> {
        self.verify_now(token).map_err(|pending| match pending {
            Pending::Rejected(r) => r,
            Pending::NeedKeys { issuer, reason, .. } => {
                self.reject_after_fetch(token, issuer, reason, Ok(()))
            }
        })
    }

    /// Verifies with the keys held now; `Err(Pending::NeedKeys)` when a fetch could decide.
    pub(crate) fn verify_now(&self, token: &str) -> Result<Verified, Pending> {
        let result = self.check(token);
        match &result {
            Ok(_) => {
                self.inner.metrics.verified.fetch_add(1, Ordering::Relaxed);
            }
            Err(Pending::Rejected(r)) => self.record(r, Some(token)),
            Err(Pending::NeedKeys { .. }) => {}
        }
        result
    }

    pub(crate) async fn fetch_keys(
        &self,
        issuer: usize,
        generation: u64,
        reason: FetchReason,
        wanted_kid: Option<&str>,
    ) -> Result<(), Error> {
        match &self.inner.issuers[issuer].keys {
            Keys::Remote(cache) => cache.fetch(generation, reason, wanted_kid).await,
            Keys::Static(_) => Ok(()),
        }
    }

    /// The rejection when the keys needed are still missing after a fetch (or its back-off).
    pub(crate) fn reject_after_fetch(
        &self,
        token: &str,
        issuer: usize,
        reason: FetchReason,
        result: Result<(), Error>,
    ) -> Rejection {
        let iss = &self.inner.issuers[issuer].issuer;
        let rejection = match (reason, result) {
            (FetchReason::UnknownKid, _) => Rejection::summarized(
                Reason::UnknownKey,
                format!("no key of issuer `{iss}` has the token's kid"),
            ),
            (_, Err(e)) => Rejection::summarized(
                Reason::KeysUnavailable,
                format!("the signing keys of `{iss}` are not available: {e}"),
            )
            .with_retry_after(e.retry_after().unwrap_or(Duration::from_secs(1))),
            (_, Ok(())) => Rejection::summarized(
                Reason::KeysUnavailable,
                format!("the signing keys of `{iss}` are not available"),
            )
            .with_retry_after(Duration::from_secs(1)),
        };
        self.record(&rejection, Some(token));
        rejection
    }

    /// Counts a rejection and logs it with the token's `kid` and `iss` (read only when the
    /// event is enabled, and never the token itself).
    pub(crate) fn record(&self, r: &Rejection, token: Option<&str>) {
        self.inner.metrics.reject(r.reason());
        if tracing::enabled!(target: "s2s_auth::verify", tracing::Level::DEBUG) {
            let (kid, iss) = token
                .filter(|t| t.len() <= self.inner.max_token_bytes)
                .map(peek_kid_and_issuer)
                .unwrap_or_default();
            tracing::debug!(
                target: "s2s_auth::verify",
                reason = %r.reason(),
                kid = kid.as_deref(),
                iss = iss.as_deref(),
                description = r.description(),
                detail = r.detail(),
                "token rejected"
            );
        }
    }

    fn now(&self) -> u64 {
        let now = match &self.inner.clock {
            Some(clock) => clock(),
            None => SystemTime::now(),
        };
        now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
    }

    fn check(&self, token: &str) -> Result<Verified, Pending> {
        let Some(cache) = &self.inner.token_cache else {
            return self.check_uncached(token);
        };
        if token.len() > self.inner.max_token_bytes {
            return self.check_uncached(token);
        }
        // Keyed by the signature segment (short, and as unique as signed tokens are), and
        // compared in full on a hit: only the very same token bytes can hit.
        let signature = token.rsplit('.').next().unwrap_or_default();
        let metrics = &self.inner.metrics;
        if let Some(hit) = cache.entries.get(signature) {
            // Only while the key that verified it is still in its issuer's set.
            if *hit.token == *token && hit.key.strong_count() > 0 && self.keys_usable(hit.issuer) {
                let claims = hit.verified.standard();
                self.check_times(self.now(), hit.exp, claims.nbf)?;
                metrics.cache_hits.fetch_add(1, Ordering::Relaxed);
                return Ok(hit.verified.clone());
            }
        }
        let result = self.check_full(token);
        if !matches!(result, Err(Pending::NeedKeys { .. })) {
            // Counted once per token, not again after the key fetch it may wait for.
            metrics.cache_misses.fetch_add(1, Ordering::Relaxed);
        }
        let (verified, key, issuer) = result?;
        if !cache.admit(signature) {
            return Ok(verified);
        }
        let exp = verified.standard().exp.unwrap_or_default();
        let ttl = exp
            .saturating_add(self.inner.leeway)
            .saturating_sub(self.now());
        cache.entries.insert(
            signature.into(),
            Arc::new(CachedToken {
                token: token.into(),
                verified: verified.clone(),
                key: Arc::downgrade(&key),
                issuer,
                exp,
                ttl: Duration::from_secs(ttl.max(1)),
            }),
        );
        Ok(verified)
    }

    fn check_uncached(&self, token: &str) -> Result<Verified, Pending> {
        self.check_full(token).map(|(verified, ..)| verified)
    }

    /// The whole verification: structure, header, key, signature, claims.
    /// The verified token, the key that verified it and its issuer's index.
    fn check_full(&self, token: &str) -> Result<(Verified, Arc<Key>, usize), Pending> {
        let inner = &*self.inner;
        if token.len() > inner.max_token_bytes {
            return Err(reject(
                Reason::TooLarge,
                format!(
                    "the token is {} bytes; at most {} are accepted",
                    token.len(),
                    inner.max_token_bytes
                ),
            ));
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(reject(
                Reason::Malformed,
                "not a JWT: expected three base64url segments separated by dots",
            ));
        };
        match parts.count() {
            0 => {}
            2 => {
                return Err(reject(
                    Reason::Encrypted,
                    "encrypted tokens (JWE) are not accepted: send a signed JWT",
                ));
            }
            _ => {
                return Err(reject(
                    Reason::Malformed,
                    "not a JWT: expected three base64url segments separated by dots",
                ));
            }
        }
        let header_json = decode_segment(header_b64, "header")?;
        let header: JoseHeader<'_> = serde_json::from_slice(&header_json).map_err(|e| {
            reject(
                Reason::Malformed,
                format!("the JWT header is not a valid JOSE header: {e}"),
            )
        })?;
        if header.enc.is_some() {
            return Err(reject(
                Reason::Encrypted,
                "encrypted tokens (JWE) are not accepted: send a signed JWT",
            ));
        }
        if header.crit.is_some() {
            return Err(reject(
                Reason::CriticalHeader,
                "the token has a `crit` header naming extensions this service does not support",
            ));
        }
        let alg: Algorithm = match header.alg.parse() {
            Ok(alg) if inner.algorithms.contains(alg) => alg,
            _ => {
                return Err(reject(
                    Reason::UnsupportedAlgorithm,
                    format!(
                        "alg `{}` is not accepted; accepted: {:?}",
                        sanitize(&header.alg, 20),
                        inner.algorithms
                    ),
                ));
            }
        };
        if !typ_allowed(header.typ.as_deref(), inner.require_at_jwt) {
            return Err(reject(
                Reason::WrongType,
                format!(
                    "typ {:?} is not an access token's{}",
                    header.typ.as_deref().map(|t| sanitize(t, 40)),
                    if inner.require_at_jwt {
                        " (RFC 9068 `at+jwt` required)"
                    } else {
                        ""
                    }
                ),
            ));
        }
        let payload = decode_segment(payload_b64, "payload")?;
        let claims: StandardClaims = serde_json::from_slice(&payload).map_err(|e| {
            reject(
                Reason::Malformed,
                format!("the JWT claims are not valid: {e}"),
            )
        })?;
        let Some(issuer_index) = inner.issuers.iter().position(|i| i.issuer == claims.iss) else {
            return Err(reject(
                Reason::UnknownIssuer,
                format!("issuer `{}` is not accepted", sanitize(&claims.iss, 100)),
            ));
        };
        let issuer = &inner.issuers[issuer_index];
        let kid = header.kid.as_deref();
        let key = match &issuer.keys {
            Keys::Static(set) => set.find(kid, alg).cloned(),
            Keys::Remote(cache) => {
                let snapshot = cache.snapshot();
                // Keys past their maximum staleness are not used: fetch first, as at a cold
                // start (503 while that fails).
                let usable = snapshot.is_usable();
                match snapshot.keys.find(kid, alg).filter(|_| usable) {
                    Some(key) => Some(key.clone()),
                    None => {
                        return Err(Pending::NeedKeys {
                            issuer: issuer_index,
                            generation: snapshot.generation,
                            reason: if !usable {
                                FetchReason::Cold
                            } else {
                                FetchReason::UnknownKid
                            },
                            kid: kid.map(Into::into),
                        });
                    }
                }
            }
        };
        let Some(key) = key else {
            return Err(reject(
                Reason::UnknownKey,
                match kid {
                    Some(kid) => format!(
                        "no key of issuer `{}` has kid `{}`",
                        issuer.issuer,
                        sanitize(kid, 64)
                    ),
                    None => "the token has no kid and no single key of its issuer fits it".into(),
                },
            ));
        };
        if !key.algs.contains(alg) {
            return Err(reject(
                Reason::AlgorithmMismatch,
                format!("alg {alg:?} does not fit the key the token names"),
            ));
        }
        let message = &token.as_bytes()[..header_b64.len() + 1 + payload_b64.len()];
        let valid = match &key.parsed {
            Some(parsed) => URL_SAFE_NO_PAD
                .decode(signature_b64)
                .is_ok_and(|signature| parsed.verify_sig(message, &signature).is_ok()),
            None => jsonwebtoken::crypto::verify(signature_b64, message, &key.decoding, alg)
                .unwrap_or(false),
        };
        if !valid {
            return Err(reject(
                Reason::BadSignature,
                "the token's signature does not verify",
            ));
        }
        self.check_claims(&claims, &payload, &issuer.audiences)?;
        let verified = Verified(Arc::new(VerifiedInner {
            claims,
            payload: payload.into_boxed_slice(),
            kid: key.kid.clone(),
            alg,
        }));
        Ok((verified, key, issuer_index))
    }

    /// `exp` and `nbf` against `now`, with the leeway: the same rules for a cache hit as for a
    /// full verification.
    fn check_times(&self, now: u64, exp: u64, nbf: Option<u64>) -> Result<(), Pending> {
        let leeway = self.inner.leeway;
        if now >= exp.saturating_add(leeway) {
            return Err(reject(
                Reason::Expired,
                format!("the token expired {} s ago", now.saturating_sub(exp)),
            ));
        }
        if let Some(nbf) = nbf {
            if nbf > exp {
                return Err(reject(
                    Reason::Malformed,
                    "the token's `nbf` is after its `exp`",
                ));
            }
            if nbf > now.saturating_add(leeway) {
                return Err(reject(
                    Reason::NotYetValid,
                    format!("the token is not valid for another {} s", nbf - now),
                ));
            }
        }
        Ok(())
    }

    /// The claims rules; `audiences` are those of the token's issuer.
    fn check_claims(
        &self,
        claims: &StandardClaims,
        payload: &[u8],
        audiences: &[String],
    ) -> Result<(), Pending> {
        let inner = &*self.inner;
        let now = self.now();
        let Some(exp) = claims.exp else {
            return Err(reject(
                Reason::MissingClaim,
                "the token has no `exp` claim: tokens without expiry are not accepted",
            ));
        };
        self.check_times(now, exp, claims.nbf)?;
        if !claims.aud.iter().any(|a| audiences.iter().any(|b| a == b)) {
            return Err(reject(
                Reason::WrongAudience,
                format!(
                    "aud {} names none of the accepted audiences {:?}",
                    sanitize(&format!("{:?}", claims.aud), 200),
                    audiences
                ),
            ));
        }
        if !inner.required_claims.is_empty() {
            let present: std::collections::HashMap<Cow<'_, str>, serde::de::IgnoredAny> =
                serde_json::from_slice(payload).map_err(|e| {
                    reject(
                        Reason::Malformed,
                        format!("the JWT claims are not valid: {e}"),
                    )
                })?;
            if let Some(missing) = inner
                .required_claims
                .iter()
                .find(|c| !present.contains_key(c.as_str()))
            {
                return Err(reject(
                    Reason::MissingClaim,
                    format!("the token has no `{missing}` claim, which this service requires"),
                ));
            }
        }
        Ok(())
    }

    /// Loads the key sets of every issuer that has no usable one (none yet, e.g. at start-up,
    /// or one past its maximum staleness).
    pub async fn load_keys(&self) -> Result<(), Error> {
        for (i, issuer) in self.inner.issuers.iter().enumerate() {
            if let Keys::Remote(cache) = &issuer.keys
                && !cache.is_usable()
            {
                let generation = cache.snapshot().generation;
                self.fetch_keys(i, generation, FetchReason::Cold, None)
                    .await?;
            }
        }
        Ok(())
    }

    /// Whether every issuer has keys to verify with: fetched, and not older than their time to
    /// live plus [`VerifierBuilder::max_stale`]. Readiness probes (the gateway's `/readyz`)
    /// follow it.
    pub fn is_ready(&self) -> bool {
        (0..self.inner.issuers.len()).all(|i| self.keys_usable(i))
    }

    /// Whether issuer `index` has keys it may verify with now.
    fn keys_usable(&self, index: usize) -> bool {
        match &self.inner.issuers[index].keys {
            Keys::Static(_) => true,
            Keys::Remote(cache) => cache.snapshot().is_usable(),
        }
    }

    /// The counters: verified, rejected by reason, key-set fetches.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.inner.metrics.snapshot()
    }
}

/// Decodes a header or payload segment, which must hold a JSON object (RFC 7515 §4, RFC 7519
/// §7.2): serde would otherwise read the header or claims struct from a JSON array, by position.
/// The `kid` and `iss` of a token, unverified and sanitized, for logs.
fn peek_kid_and_issuer(token: &str) -> (Option<String>, Option<String>) {
    let mut parts = token.split('.');
    let mut member = |name: &str| {
        let json = URL_SAFE_NO_PAD.decode(parts.next()?).ok()?;
        let value: serde_json::Value = serde_json::from_slice(&json).ok()?;
        Some(sanitize(value.get(name)?.as_str()?, 100))
    };
    let kid = member("kid");
    (kid, member("iss"))
}

/// Whether a `typ` header fits an access token. `typ` is a media type, compared without case,
/// whose `application/` prefix may be left out (RFC 7515 §4.1.9). Accepted: `at+jwt` (RFC 9068
/// §2.1), and unless `require_at_jwt`, no `typ` or `JWT` (RFC 7519 §5.1; `application/jwt` is
/// the same media type). Every other type (`id_token`, `secevent+jwt`, `dpop+jwt`,
/// `logout+jwt`, `JWT-ID`, ...) is another kind of token signed by the same keys, and refused.
fn typ_allowed(typ: Option<&str>, require_at_jwt: bool) -> bool {
    let Some(typ) = typ else {
        return !require_at_jwt;
    };
    const PREFIX: &str = "application/";
    let subtype = match typ.get(..PREFIX.len()) {
        Some(head) if head.eq_ignore_ascii_case(PREFIX) => &typ[PREFIX.len()..],
        _ => typ,
    };
    subtype.eq_ignore_ascii_case("at+jwt")
        || (!require_at_jwt && subtype.eq_ignore_ascii_case("jwt"))
}

fn decode_segment(segment: &str, what: &'static str) -> Result<Vec<u8>, Pending> {
    let json = URL_SAFE_NO_PAD.decode(segment).map_err(|_| {
        reject(
            Reason::Malformed,
            format!("the JWT {what} is not unpadded base64url"),
        )
    })?;
    if json.trim_ascii_start().first() != Some(&b'{') {
        return Err(reject(
            Reason::Malformed,
            format!("the JWT {what} is not a JSON object"),
        ));
    }
    Ok(json)
}
