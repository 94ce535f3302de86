//! Key sets: parsing JWK sets and PEM keys, and the cache of a remote key set.
//!
//! ```
//! use s2s_auth::jwks::KeySet;
//!
//! let jwks = br#"{"keys":[
//!   {"kty":"EC","crv":"P-256","kid":"k1","use":"sig",
//!    "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
//!    "y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
//!   {"kty":"RSA","kid":"enc","use":"enc","n":"AQAB","e":"AQAB"},
//!   {"kty":"oct","kid":"bad","k":"c2VjcmV0"}
//! ]}"#;
//! let keys = KeySet::from_jwks(jwks).unwrap();
//! // The encryption key and the symmetric key are skipped, not the whole set.
//! assert_eq!(keys.kids().collect::<Vec<_>>(), ["k1"]);
//! ```
//!
//! A remote key set ([`KeyCache`]) is read without a lock (an atomic load of the current set).
//! It is fetched on first use, refreshed in the background before its time to live ends (taken
//! from `Cache-Control: max-age`, clamped to [`KeyCacheOptions::min_ttl`] and
//! [`KeyCacheOptions::max_ttl`]), and refetched when a token names an unknown `kid`: once, shared
//! by every waiting request, then not again before [`KeyCacheOptions::unknown_kid_cooldown`].
//! A failed refresh keeps the keys it had, for at most [`KeyCacheOptions::max_stale`] past their
//! time to live: then they are no longer used, the verifier is not ready, and tokens of the
//! issuer are answered 503 until a fetch succeeds. A successful refresh replaces them.

use std::{
    fmt,
    sync::{
        Arc, OnceLock, Weak,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use arc_swap::ArcSwap;
use aws_lc_rs::signature::{self, ParsedPublicKey};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::time::Instant;
use url::Url;

use crate::{
    discovery,
    error::Error,
    fetch::{self, HttpOptions},
    metrics::Metrics,
    time::later,
};

/// The asymmetric signature algorithms this crate verifies. HMAC is never accepted: a public
/// key set cannot hold a shared secret, and `none` is not an algorithm.
pub const SUPPORTED_ALGORITHMS: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Default of [`KeyCacheOptions::max_stale`]: how long past its time to live a key set is used
/// while its server cannot be reached.
pub const DEFAULT_MAX_STALE: Duration = Duration::from_secs(24 * 60 * 60);

/// RSA keys shorter than this are refused (NIST SP 800-131A, RFC 7518 §3.3).
pub const MIN_RSA_BITS: usize = 2048;

/// A set of algorithms, as a bit mask over [`SUPPORTED_ALGORITHMS`].
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct AlgSet(u16);

impl AlgSet {
    pub(crate) const RSA: AlgSet = AlgSet(0b11_1111);

    fn bit(alg: Algorithm) -> u16 {
        SUPPORTED_ALGORITHMS
            .iter()
            .position(|a| *a == alg)
            .map_or(0, |i| 1 << i)
    }

    pub(crate) fn of(alg: Algorithm) -> AlgSet {
        AlgSet(Self::bit(alg))
    }

    pub(crate) fn from_slice(algs: &[Algorithm]) -> AlgSet {
        AlgSet(algs.iter().fold(0, |m, a| m | Self::bit(*a)))
    }

    pub(crate) fn contains(self, alg: Algorithm) -> bool {
        let bit = Self::bit(alg);
        bit != 0 && self.0 & bit != 0
    }

    pub(crate) fn is_empty(self) -> bool {
        self.0 == 0
    }

    fn intersect(self, other: AlgSet) -> AlgSet {
        AlgSet(self.0 & other.0)
    }
}

impl fmt::Debug for AlgSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(SUPPORTED_ALGORITHMS.iter().filter(|a| self.contains(**a)))
            .finish()
    }
}

/// One verification key, and the algorithms it may verify.
pub(crate) struct Key {
    pub(crate) kid: Option<Box<str>>,
    pub(crate) algs: AlgSet,
    pub(crate) decoding: DecodingKey,
    /// The key parsed once by aws-lc-rs (EC and Ed25519 keys from a JWK): verifying with it
    /// skips decoding and validating the point on every signature.
    pub(crate) parsed: Option<ParsedPublicKey>,
    /// SHA-256 of the key material, to tell an unchanged key across refreshes.
    fingerprint: [u8; 32],
}

fn fingerprint(parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    hasher.finalize().into()
}

/// A set of public verification keys, each tied to the algorithms its type allows.
///
/// Cheap to clone. Built from a JWK set ([`KeySet::from_jwks`]) or PEM ([`KeySet::from_pem`]),
/// or fetched and cached by [`KeyCache`].
#[derive(Clone, Default)]
pub struct KeySet {
    keys: Arc<[Arc<Key>]>,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(
                self.keys
                    .iter()
                    .map(|k| (k.kid.as_deref().unwrap_or("(no kid)"), k.algs)),
            )
            .finish()
    }
}

/// The members of a JWK this crate reads.
#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default, rename = "use")]
    use_: Option<String>,
    #[serde(default)]
    key_ops: Option<Vec<String>>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
}

impl KeySet {
    /// Parses a JWK set (RFC 7517 §5).
    ///
    /// Keys that cannot verify signatures here are skipped with a warning rather than failing
    /// the set: `use: enc` keys, symmetric (`oct`) keys, unknown key types or curves, RSA keys
    /// under 2048 bits, and malformed keys. A JWK without `alg` may verify every algorithm of its
    /// type (RSA: RS*/PS*; P-256: ES256; P-384: ES384; Ed25519: EdDSA); one with `alg` only that.
    ///
    /// Fails when the document is not a JWK set, or when it lists keys and none is usable.
    pub fn from_jwks(json: &[u8]) -> Result<KeySet, Error> {
        #[derive(Deserialize)]
        struct Doc {
            keys: Vec<serde_json::Value>,
        }
        let doc: Doc = serde_json::from_slice(json).map_err(|e| {
            Error::transient(format!("not a JWK set ({e}): `{}`", fetch::excerpt(json)))
        })?;
        let listed = doc.keys.len();
        let mut keys = Vec::with_capacity(listed);
        for (i, value) in doc.keys.into_iter().enumerate() {
            match parse_jwk(value) {
                Ok(Some(key)) => {
                    if keys
                        .iter()
                        .any(|k: &Arc<Key>| k.kid.is_some() && k.kid == key.kid)
                    {
                        tracing::warn!(index = i, kid = ?key.kid, "JWK set lists a kid twice; keeping the first");
                        continue;
                    }
                    keys.push(Arc::new(key));
                }
                Ok(None) => {}
                Err(why) => tracing::warn!(index = i, %why, "skipping a JWK that cannot be used"),
            }
        }
        if keys.is_empty() && listed > 0 {
            return Err(Error::transient(format!(
                "the JWK set lists {listed} keys and none can verify signatures \
                 (see the warnings for why each was skipped)"
            )));
        }
        Ok(KeySet { keys: keys.into() })
    }

    /// A set of one key from a PEM public key (`-----BEGIN PUBLIC KEY-----`, or
    /// `-----BEGIN RSA PUBLIC KEY-----`) that verifies `alg` only.
    pub fn from_pem(alg: Algorithm, pem: &[u8], kid: Option<&str>) -> Result<KeySet, Error> {
        let bad = |e: jsonwebtoken::errors::Error| {
            Error::config(format!("the PEM key for {alg:?} cannot be read")).with_source(e)
        };
        let decoding = match alg {
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => DecodingKey::from_rsa_pem(pem).map_err(bad)?,
            Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(pem).map_err(bad)?,
            Algorithm::EdDSA => DecodingKey::from_ed_pem(pem).map_err(bad)?,
            other => {
                return Err(Error::config(format!(
                    "{other:?} is not an asymmetric signature algorithm; \
                     only {SUPPORTED_ALGORITHMS:?} are verified"
                )));
            }
        };
        Ok(KeySet {
            keys: Arc::new([Arc::new(Key {
                kid: kid.map(Into::into),
                algs: AlgSet::of(alg),
                decoding,
                parsed: None,
                fingerprint: fingerprint(&[pem]),
            })]) as Arc<[_]>,
        })
    }

    /// This set and `other`'s keys together.
    pub fn merge(&self, other: &KeySet) -> KeySet {
        KeySet {
            keys: self.keys.iter().chain(other.keys.iter()).cloned().collect(),
        }
    }

    /// This set, with the very same key instances as `old` where a key is unchanged (same kid,
    /// material and algorithms), so that what was verified with a key that stays remains valid
    /// and only what a removed key verified is forgotten.
    pub(crate) fn reuse_unchanged(self, old: &KeySet) -> KeySet {
        let keys = self
            .keys
            .iter()
            .map(|new| {
                old.keys
                    .iter()
                    .find(|o| {
                        o.kid == new.kid && o.fingerprint == new.fingerprint && o.algs == new.algs
                    })
                    .unwrap_or(new)
                    .clone()
            })
            .collect();
        KeySet { keys }
    }

    /// The `kid`s of the keys (keys without one are not listed).
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().filter_map(|k| k.kid.as_deref())
    }

    /// How many keys the set holds.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set holds no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key for a token's `kid`. A token without `kid` is matched only when exactly one key
    /// could verify its algorithm, so that a kid-less token never costs more than one signature
    /// check.
    pub(crate) fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<&Arc<Key>> {
        match kid {
            Some(kid) => self.keys.iter().find(|k| k.kid.as_deref() == Some(kid)),
            None => {
                let mut candidates = self.keys.iter().filter(|k| k.algs.contains(alg));
                let first = candidates.next()?;
                candidates.next().is_none().then_some(first)
            }
        }
    }
}

fn parse_jwk(value: serde_json::Value) -> Result<Option<Key>, String> {
    let jwk: RawJwk = serde_json::from_value(value).map_err(|e| e.to_string())?;
    let kid = jwk.kid.clone();
    if jwk.use_.as_deref().is_some_and(|u| u != "sig") {
        tracing::debug!(?kid, "skipping a JWK not meant for signatures");
        return Ok(None);
    }
    if let Some(ops) = &jwk.key_ops
        && !ops.iter().any(|o| o == "verify")
    {
        tracing::debug!(?kid, "skipping a JWK whose key_ops exclude verify");
        return Ok(None);
    }
    let required = |v: &Option<String>, name: &str| {
        v.clone()
            .ok_or_else(|| format!("{} key without `{name}`", jwk.kty))
    };
    let (type_algs, decoding, parsed) = match jwk.kty.as_str() {
        "RSA" => {
            let n = required(&jwk.n, "n")?;
            let e = required(&jwk.e, "e")?;
            let modulus = URL_SAFE_NO_PAD
                .decode(n.trim_end_matches('='))
                .map_err(|e| format!("RSA modulus is not base64url: {e}"))?;
            let bits = match modulus.iter().position(|b| *b != 0) {
                Some(i) => (modulus.len() - i) * 8 - modulus[i].leading_zeros() as usize,
                None => 0,
            };
            if bits < MIN_RSA_BITS {
                return Err(format!(
                    "RSA key of {bits} bits; at least {MIN_RSA_BITS} are required"
                ));
            }
            let key = DecodingKey::from_rsa_components(&n, &e).map_err(|e| e.to_string())?;
            (AlgSet::RSA, key, None)
        }
        "EC" => {
            let alg = match jwk.crv.as_deref() {
                Some("P-256") => Algorithm::ES256,
                Some("P-384") => Algorithm::ES384,
                other => return Err(format!("unsupported EC curve {other:?}")),
            };
            let (x, y) = (required(&jwk.x, "x")?, required(&jwk.y, "y")?);
            let width = if alg == Algorithm::ES256 { 32 } else { 48 };
            let mut point = vec![0x04]; // uncompressed: x then y
            for c in [&x, &y] {
                let coordinate = URL_SAFE_NO_PAD
                    .decode(c)
                    .map_err(|e| format!("EC coordinate is not base64url: {e}"))?;
                if coordinate.len() != width {
                    return Err(format!(
                        "EC coordinate of {} bytes; {width} expected",
                        coordinate.len()
                    ));
                }
                point.extend_from_slice(&coordinate);
            }
            let verification = if alg == Algorithm::ES256 {
                &signature::ECDSA_P256_SHA256_FIXED
            } else {
                &signature::ECDSA_P384_SHA384_FIXED
            };
            let parsed = ParsedPublicKey::new(verification, &point)
                .map_err(|_| "the EC point is not on the curve".to_owned())?;
            let key = DecodingKey::from_ec_components(&x, &y).map_err(|e| e.to_string())?;
            (AlgSet::of(alg), key, Some(parsed))
        }
        "OKP" => {
            if jwk.crv.as_deref() != Some("Ed25519") {
                return Err(format!("unsupported OKP curve {:?}", jwk.crv));
            }
            let x = required(&jwk.x, "x")?;
            let public = URL_SAFE_NO_PAD
                .decode(&x)
                .map_err(|e| format!("OKP key is not base64url: {e}"))?;
            if public.len() != 32 {
                return Err(format!(
                    "Ed25519 key of {} bytes; 32 expected",
                    public.len()
                ));
            }
            let parsed = ParsedPublicKey::new(&signature::ED25519, &public)
                .map_err(|_| "the Ed25519 key is not valid".to_owned())?;
            let key = DecodingKey::from_ed_components(&x).map_err(|e| e.to_string())?;
            (AlgSet::of(Algorithm::EdDSA), key, Some(parsed))
        }
        "oct" => return Err("symmetric (oct) keys are never accepted".into()),
        other => return Err(format!("unsupported key type `{other}`")),
    };
    let algs = match jwk.alg.as_deref() {
        None => type_algs,
        Some(name) => {
            let alg: Algorithm = name
                .parse()
                .map_err(|_| format!("unsupported alg `{name}`"))?;
            let set = type_algs.intersect(AlgSet::of(alg));
            if set.is_empty() {
                return Err(format!("alg `{name}` does not fit a {} key", jwk.kty));
            }
            set
        }
    };
    let optional = [&jwk.crv, &jwk.n, &jwk.e, &jwk.x, &jwk.y];
    let mut material = vec![jwk.kty.as_bytes()];
    material.extend(optional.map(|v| v.as_deref().unwrap_or_default().as_bytes()));
    Ok(Some(Key {
        kid: kid.map(Into::into),
        algs,
        decoding,
        parsed,
        fingerprint: fingerprint(&material),
    }))
}

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

/// How a [`KeyCache`] fetches and keeps a remote key set.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct KeyCacheOptions {
    /// Shortest time a fetched set is kept before a refresh (a smaller `max-age` is raised to it).
    pub min_ttl: Duration,
    /// Longest time a fetched set is kept before a refresh (a larger `max-age` is lowered to it).
    pub max_ttl: Duration,
    /// Time to live when the response has no usable `Cache-Control: max-age`.
    pub default_ttl: Duration,
    /// After a refetch for an unknown `kid`, how long further unknown kids are rejected without
    /// a fetch. Bounds the load a flood of made-up kids can put on the key server.
    pub unknown_kid_cooldown: Duration,
    /// After a failed fetch, how long requests that find no keys at all are answered 503 at once
    /// instead of fetching again.
    pub retry_interval: Duration,
    /// How long past its time to live a key set is still used while every refresh fails
    /// (default [`DEFAULT_MAX_STALE`]). Known keys keep verifying through an outage of the key
    /// server up to then; after it they are not used, the issuer is not ready, and its tokens
    /// are answered 503 with `Retry-After` until a fetch succeeds. A key the issuer revoked
    /// while its JWK set was unreachable is trusted for at most this long.
    pub max_stale: Duration,
    /// Timeouts, body size limit and the https policy of every fetch.
    pub http: HttpOptions,
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
pub struct KeyCache {
    shared: Arc<Shared>,
}

struct Shared {
    remote: Remote,
    options: KeyCacheOptions,
    client: reqwest::Client,
    current: ArcSwap<Snapshot>,
    /// Held while fetching: concurrent fetchers wait, then find the result (single flight).
    fetching: tokio::sync::Mutex<Option<Url>>,
    /// Milliseconds since `epoch` (+1; 0 = never) of the last unknown-kid fetch and failure.
    last_kid_fetch: AtomicU64,
    last_failure: AtomicU64,
    last_error: std::sync::Mutex<Option<Arc<str>>>,
    epoch: Instant,
    refresher: OnceLock<tokio::task::JoinHandle<()>>,
    metrics: Arc<Metrics>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Some(task) = self.refresher.get() {
            task.abort();
        }
    }
}

impl fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let snapshot = self.shared.current.load();
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
        let epoch = Instant::now();
        Ok(KeyCache {
            shared: Arc::new(Shared {
                remote,
                options,
                client,
                current: ArcSwap::from_pointee(Snapshot {
                    keys: KeySet::default(),
                    generation: 0,
                    refresh_at: epoch,
                    usable_until: epoch,
                }),
                fetching: tokio::sync::Mutex::new(None),
                last_kid_fetch: AtomicU64::new(0),
                last_failure: AtomicU64::new(0),
                last_error: std::sync::Mutex::new(None),
                epoch,
                refresher: OnceLock::new(),
                metrics,
            }),
        })
    }

    /// The current keys, without a lock.
    pub(crate) fn snapshot(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.shared.current.load()
    }

    /// Whether a set has been fetched (it may be too stale to use: see [`KeyCache::is_usable`]).
    pub fn is_loaded(&self) -> bool {
        self.shared.current.load().generation > 0
    }

    /// Whether the cache holds keys it may verify with: fetched, and not older than their time
    /// to live plus [`KeyCacheOptions::max_stale`].
    pub fn is_usable(&self) -> bool {
        self.shared.current.load().is_usable()
    }

    /// The current key set (empty before the first fetch), even when too stale to use.
    pub fn keys(&self) -> KeySet {
        self.shared.current.load().keys.clone()
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
        if let Some(err) = self.backing_off(seen_generation, reason) {
            return err;
        }
        let mut jwks_uri = shared.fetching.lock().await;
        // Another caller may have fetched (or failed) while this one waited.
        if let Some(err) = self.backing_off(seen_generation, reason) {
            return err;
        }
        let started = Instant::now();
        let result = shared.fetch_once(&mut jwks_uri).await;
        shared.metrics.jwks_fetches.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok((keys, ttl)) => {
                let generation = shared.current.load().generation + 1;
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
                let keys = keys.reuse_unchanged(&shared.current.load().keys);
                shared.current.store(Arc::new(Snapshot {
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
                shared
                    .metrics
                    .jwks_fetch_failures
                    .fetch_add(1, Ordering::Relaxed);
                shared.last_failure.store(self.now_ms(), Ordering::Relaxed);
                *shared.last_error.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some(err.to_string().into());
                let held = shared.current.load();
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
        }
    }

    /// `Some(result)` when `fetch` should not fetch now.
    fn backing_off(&self, seen_generation: u64, reason: FetchReason) -> Option<Result<(), Error>> {
        let shared = &self.shared;
        if shared.current.load().generation != seen_generation {
            return Some(Ok(()));
        }
        let (last, interval) = match reason {
            FetchReason::UnknownKid => (
                shared.last_kid_fetch.load(Ordering::Relaxed),
                shared.options.unknown_kid_cooldown,
            ),
            FetchReason::Cold => (
                shared.last_failure.load(Ordering::Relaxed),
                shared.options.retry_interval,
            ),
            FetchReason::Refresh => return None,
        };
        if last == 0 {
            return None;
        }
        let since = Duration::from_millis(self.now_ms().saturating_sub(last));
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
                let last = shared
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
        let now = self.now_ms();
        self.shared.last_kid_fetch.store(now, Ordering::Relaxed);
    }

    fn now_ms(&self) -> u64 {
        self.shared.epoch.elapsed().as_millis() as u64 + 1
    }

    fn start_refresher(&self) {
        let weak = Arc::downgrade(&self.shared);
        let _ = self
            .shared
            .refresher
            .get_or_init(|| tokio::spawn(refresh_loop(weak)));
    }
}

/// Refreshes the set before its time to live ends; on failure retries with jittered exponential
/// back-off (1 s doubling up to the minimum time to live), keeping the old keys meanwhile.
async fn refresh_loop(weak: Weak<Shared>) {
    let mut failures = 0u32;
    let mut retry_at = None;
    loop {
        let wake = {
            let Some(shared) = weak.upgrade() else { return };
            retry_at.unwrap_or_else(|| shared.current.load().refresh_at)
        };
        tokio::time::sleep_until(wake).await;
        let Some(shared) = weak.upgrade() else { return };
        let cache = KeyCache { shared };
        let generation = cache.snapshot().generation;
        match cache.fetch(generation, FetchReason::Refresh, None).await {
            Ok(()) => {
                failures = 0;
                retry_at = None;
            }
            Err(_) => {
                failures = failures.saturating_add(1);
                let cap = cache.shared.options.min_ttl.max(Duration::from_secs(1));
                let base = Duration::from_secs(1)
                    .saturating_mul(1 << failures.min(16))
                    .min(cap);
                let jitter = rand::random_range(0.5..1.0);
                retry_at = Some(Instant::now() + base.mul_f64(jitter));
            }
        }
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

    const P256: &str = r#"{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0""#;

    fn set(keys: &[String]) -> Result<KeySet, Error> {
        KeySet::from_jwks(format!(r#"{{"keys":[{}]}}"#, keys.join(",")).as_bytes())
    }

    #[test]
    fn alg_is_inferred_and_checked_against_the_key_type() {
        let keys = set(&[format!(r#"{P256},"kid":"a"}}"#)]).unwrap();
        let key = keys.find(Some("a"), Algorithm::ES256).unwrap();
        assert!(key.algs.contains(Algorithm::ES256));
        assert!(!key.algs.contains(Algorithm::ES384));
        assert!(!key.algs.contains(Algorithm::RS256));
        // An EC key that claims an RSA algorithm is refused; the set keeps the good key.
        let keys = set(&[
            format!(r#"{P256},"kid":"bad","alg":"RS256"}}"#),
            format!(r#"{P256},"kid":"good","alg":"ES256"}}"#),
        ])
        .unwrap();
        assert_eq!(keys.kids().collect::<Vec<_>>(), ["good"]);
    }

    #[test]
    fn unchanged_keys_keep_their_identity_across_refreshes() {
        let old = set(&[
            format!(r#"{P256},"kid":"a"}}"#),
            format!(r#"{P256},"kid":"b"}}"#),
        ])
        .unwrap();
        let new = set(&[
            format!(r#"{P256},"kid":"b"}}"#),
            format!(r#"{P256},"kid":"c"}}"#),
        ])
        .unwrap()
        .reuse_unchanged(&old);
        let b_old = old.find(Some("b"), Algorithm::ES256).unwrap();
        let b_new = new.find(Some("b"), Algorithm::ES256).unwrap();
        assert!(Arc::ptr_eq(b_old, b_new));
        let changed = set(&[format!(r#"{P256},"kid":"b","alg":"ES256","use":"sig"}}"#)])
            .unwrap()
            .reuse_unchanged(&old);
        assert!(Arc::ptr_eq(
            b_old,
            changed.find(Some("b"), Algorithm::ES256).unwrap()
        ));
        let moved = set(&[format!(r#"{P256},"kid":"z"}}"#)])
            .unwrap()
            .reuse_unchanged(&old);
        assert!(!Arc::ptr_eq(
            b_old,
            moved.find(Some("z"), Algorithm::ES256).unwrap()
        ));
    }

    #[test]
    fn unusable_sets_fail_and_empty_sets_do_not() {
        assert!(set(&[r#"{"kty":"oct","k":"c2VjcmV0"}"#.into()]).is_err());
        assert!(set(&[]).unwrap().is_empty());
        assert!(KeySet::from_jwks(b"<html>oops</html>").is_err());
        assert!(KeySet::from_jwks(br#"{"keys":{}}"#).is_err());
    }

    #[test]
    fn kidless_tokens_match_only_a_single_candidate() {
        let keys = set(&[
            format!(r#"{P256},"kid":"a"}}"#),
            format!(r#"{P256},"kid":"b"}}"#),
        ])
        .unwrap();
        assert!(keys.find(None, Algorithm::ES256).is_none());
        let keys = set(&[format!(r#"{P256},"kid":"a"}}"#)]).unwrap();
        assert!(keys.find(None, Algorithm::ES256).is_some());
        assert!(keys.find(None, Algorithm::RS256).is_none());
    }

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
}
