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

mod builder;
pub mod tenants;
mod token_cache;

pub use builder::{DEFAULT_LEEWAY, DEFAULT_MAX_TOKEN_BYTES, Issuer, VerifierBuilder};
pub use tenants::{
    DEFAULT_MAX_TENANTS, DEFAULT_TENANT_FETCH_BURST, DEFAULT_TENANT_FETCH_INTERVAL, TenantPolicy,
};
pub use token_cache::DEFAULT_TOKEN_CACHE_ENTRIES;
use token_cache::{TokenCache, TokenDigest};

use std::{
    borrow::Cow,
    fmt,
    sync::{Arc, atomic::Ordering},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::Algorithm;
use serde::Deserialize;

use crate::{
    claims::{StandardClaims, Verified, VerifiedInner},
    error::{Code, Error},
    keys::{AlgSet, FetchReason, Key, KeyCache, KeySet},
    metrics::{Metrics, MetricsSnapshot},
    rejection::{Reason, Rejection, sanitize},
};

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
    /// Issuer templates and their tenants' key caches (issuer indices past `issuers`).
    tenants: Option<tenants::Tenants>,
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
            .field(
                "templates",
                &self
                    .inner
                    .tenants
                    .iter()
                    .flat_map(|t| t.sources())
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
        if let Err(Pending::Rejected(r)) = &result {
            self.record(r, Some(token));
        }
        result
    }

    /// Verifies `token` when it is one this thread verified lately, by its bytes: the hot
    /// path of [`VerifyLayer`](crate::VerifyLayer), before the header is parsed any further.
    /// `None` when it is not (or its keys need a look), and [`Verifier::verify_now`] decides.
    pub(crate) fn verify_recent(&self, token: &[u8]) -> Option<Result<Verified, Rejection>> {
        let result = self.check_recent(token)?;
        if let Err(r) = &result {
            // A recent token is of the base64url alphabet (see `TokenCache::remember`).
            self.record(r, std::str::from_utf8(token).ok());
        }
        Some(result)
    }

    pub(crate) async fn fetch_keys(
        &self,
        issuer: usize,
        generation: u64,
        reason: FetchReason,
        wanted_kid: Option<&str>,
    ) -> Result<(), Error> {
        let tenant;
        let keys = match self.inner.issuers.get(issuer) {
            Some(fixed) => &fixed.keys,
            None => match self.inner.tenant(issuer) {
                Some(held) => {
                    tenant = held;
                    &tenant.keys
                }
                // Evicted meanwhile: the next verification starts it again.
                None => return Ok(()),
            },
        };
        match keys {
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
        let iss: Box<str> = match self.inner.issuers.get(issuer) {
            Some(fixed) => fixed.issuer.as_str().into(),
            None => self
                .inner
                .tenant(issuer)
                .map_or_else(|| "a tenant".into(), |t| t.issuer.clone()),
        };
        let rejection = match (reason, result) {
            // The tenant fetch limit: even for an unknown kid, a retry may succeed.
            (_, Err(e)) if e.code() == Some(Code::RateLimited) => Rejection::summarized(
                Reason::KeysUnavailable,
                format!("the signing keys of `{iss}` are not available: {e}"),
            )
            .with_retry_after(e.retry_after().unwrap_or(Duration::from_secs(1))),
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
        let metrics = &self.inner.metrics;
        if let Some(result) = self.check_recent(token.as_bytes()) {
            return result.map_err(Pending::Rejected);
        }
        let digest = TokenDigest::of(token);
        if let Some(hit) = cache
            .get(&digest)
            .filter(|hit| self.keys_usable(hit.issuer))
        {
            let times = self.check_times(self.now(), hit.exp, hit.verified.standard().nbf);
            if times.is_err() {
                // Expired (or not yet valid): no use keeping it, the cache has no expiry.
                cache.remove(&digest);
            }
            times?;
            metrics.cache_hits.increment();
            cache.remember(token, &hit);
            return Ok(hit.verified.clone());
        }
        let result = self.check_full(token);
        if !matches!(result, Err(Pending::NeedKeys { .. })) {
            // Counted once per token, not again after the key fetch it may wait for.
            metrics.cache_misses.fetch_add(1, Ordering::Relaxed);
        }
        let (verified, key, issuer) = result?;
        cache.insert(digest, &verified, &key, issuer);
        Ok(verified)
    }

    /// A hit of this thread's recent tokens (see [`TokenCache::recent`]), or `None`.
    fn check_recent(&self, token: &[u8]) -> Option<Result<Verified, Rejection>> {
        // A hit only while its issuer's keys are still usable (not too stale), and only
        // within `exp` and `nbf`, checked on every hit as on a full verification.
        let hit = self
            .inner
            .token_cache
            .as_ref()?
            .recent(token)
            .filter(|hit| self.keys_usable(hit.issuer))?;
        Some(
            self.check_times(self.now(), hit.exp, hit.verified.standard().nbf)
                .map(|()| {
                    // The one counter of a hit (`verified` adds the hits in its snapshot).
                    self.inner.metrics.cache_hits.increment();
                    hit.verified
                }),
        )
    }

    fn check_uncached(&self, token: &str) -> Result<Verified, Pending> {
        self.check_full(token).map(|(verified, ..)| verified)
    }

    /// Counts a full verification that passed.
    fn count_verified(&self) {
        self.inner.metrics.verified.fetch_add(1, Ordering::Relaxed);
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
        let tenant;
        let (issuer_index, issuer_id, keys, audiences) =
            match inner.issuers.iter().position(|i| i.issuer == claims.iss) {
                Some(i) => {
                    let fixed = &inner.issuers[i];
                    (i, fixed.issuer.as_str(), &fixed.keys, &fixed.audiences[..])
                }
                // Not a fixed issuer: one of a template's tenants, or refused (before any fetch).
                None => {
                    tenant = self.tenant_keys(&claims.iss, &payload)?;
                    let audiences = inner
                        .tenants
                        .as_ref()
                        .map_or(&[][..], |t| t.audiences(&tenant));
                    (tenant.id, &*tenant.issuer, &tenant.keys, audiences)
                }
            };
        let kid = header.kid.as_deref();
        let key = match keys {
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
                        issuer_id,
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
        self.check_claims(&claims, &payload, audiences)?;
        let verified = Verified(Arc::new(VerifiedInner {
            claims,
            payload: payload.into_boxed_slice(),
            kid: key.kid.clone(),
            alg,
        }));
        self.count_verified();
        Ok((verified, key, issuer_index))
    }

    /// `exp` and `nbf` against `now`, with the leeway: the same rules for a cache hit as for a
    /// full verification.
    fn check_times(&self, now: u64, exp: u64, nbf: Option<u64>) -> Result<(), Rejection> {
        let leeway = self.inner.leeway;
        if now >= exp.saturating_add(leeway) {
            return Err(Rejection::summarized(
                Reason::Expired,
                format!("the token expired {} s ago", now.saturating_sub(exp)),
            ));
        }
        if let Some(nbf) = nbf {
            if nbf > exp {
                return Err(Rejection::summarized(
                    Reason::Malformed,
                    "the token's `nbf` is after its `exp`",
                ));
            }
            if nbf > now.saturating_add(leeway) {
                return Err(Rejection::summarized(
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
        let usable = |keys: &Keys| match keys {
            Keys::Static(_) => true,
            Keys::Remote(cache) => cache.snapshot().is_usable(),
        };
        match self.inner.issuers.get(index) {
            Some(fixed) => usable(&fixed.keys),
            // A tenant: while it is held (an evicted tenant's tokens are verified again).
            None => self.inner.tenant(index).is_some_and(|t| usable(&t.keys)),
        }
    }

    /// The counters: verified, rejected by reason, key-set fetches.
    pub fn metrics(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            tenant_key_caches: self.tenants_held(),
            ..self.inner.metrics.snapshot()
        }
    }
}

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

/// Decodes a header or payload segment, which must hold a JSON object (RFC 7515 §4, RFC 7519
/// §7.2): serde would otherwise read the header or claims struct from a JSON array, by position.
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
