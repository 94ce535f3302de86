//! Feature `redis`: [`RedisCache`], a second token cache level that the replicas of a service
//! share, so that a fleet of N asks the token endpoint once per token lifetime instead of N
//! times.
//!
//! ```no_run
//! # async fn run() -> Result<(), s2s_auth::Error> {
//! use s2s_auth::token::{ClientAuth, ClientCredentials, RedisCache, TokenManager, TokenSource};
//!
//! let grant = ClientCredentials::new(
//!     "https://auth.example.com/oauth/token",
//!     "billing-service",
//!     ClientAuth::SecretBasic(std::env::var("CLIENT_SECRET").unwrap().into()),
//! )
//! .scope("orders:read");
//! let tokens = TokenManager::new(grant)?
//!     .with_shared_cache(RedisCache::open("rediss://user:password@cache.internal:6380")?);
//! let token = tokens.token().await?; // from memory, else Redis, else one fetch for the fleet
//! # let _ = token; Ok(()) }
//! ```
//!
//! # How it works
//!
//! The in-memory snapshot stays the warm path: a held token is served by an atomic load, with
//! no Redis read. Redis is asked only when the manager would otherwise call the token endpoint
//! (no usable token, or the background refresh is due), still inside the manager's single
//! flight, so a process sends at most one Redis request sequence at a time per grant:
//!
//! 1. `GET` the entry: a token that is still usable is taken (no token request).
//! 2. Else `SET lease NX PX`: the lease holder reads the entry once more (a holder may have
//!    published and released between 1 and 2), fetches, `SET`s the entry with the token's
//!    lifetime as its expiry, and releases the lease (compare-and-delete).
//! 3. The others poll the entry every [`RedisCache::poll`] until it holds a new token, or the
//!    lease is gone (then they try to take it), or [`RedisCache::lease`] has passed (then they
//!    fetch alone).
//!
//! Each replica schedules its own refresh (with the manager's jitter) from the shared token's
//! issue time, so the first one due refreshes for all and the others find the new token when
//! theirs falls due. A token refused by a callee (401 `invalid_token`,
//! [`TokenSource::invalidate`](super::TokenSource::invalidate)) is deleted from Redis only if
//! the entry still holds that very token (a Lua compare-and-delete), so the fleet refreshes
//! once.
//!
//! # Redis is never in the way
//!
//! Every Redis operation has a deadline ([`RedisCache::timeout`], default 200 ms). When one
//! fails or times out the manager fetches on its own, as it does without Redis (single flight,
//! back-off, `min_fetch_interval`), and Redis is left alone for [`RedisCache::retry_after`]
//! (default 1 s) before it is tried again. The first failure of an outage is logged once
//! (`warn`), its end once (`info`), and both are counted
//! ([`TokenMetrics::shared_errors`](super::TokenMetrics::shared_errors),
//! [`TokenMetrics::shared_outages`](super::TokenMetrics::shared_outages)). No call fails because
//! of Redis.
//!
//! # What is stored
//!
//! Two keys per grant, under [`RedisCache::prefix`] (default `s2s-auth:`):
//!
//! - `<prefix>token:<digest>`: `v1.<fingerprint>.<issued>.<lifetime>.<token>`, expiring with the
//!   token. `digest` is the hex SHA-256 of the grant (token endpoint, dialect, client id,
//!   authentication method, sorted scopes, audience, resources, extra parameters) and never of
//!   the secret or key; `fingerprint` the hex SHA-256 of the access token (what the
//!   compare-and-delete compares); `issued` the Unix time in milliseconds the token was
//!   received; `lifetime` its lifetime in milliseconds (after the manager's clamping). `token`
//!   is the access token itself or, with [`RedisCache::seal_key`], `s:` and the URL-safe base64
//!   of a random 96-bit nonce and its AES-256-GCM ciphertext (associated data: the entry's key,
//!   issued time and lifetime, so that a sealed token cannot be moved to another grant).
//! - `<prefix>lease:<digest>`: a random lease id while one replica fetches, expiring after
//!   [`RedisCache::lease`].
//!
//! No client secret, no private key, no digest of either is stored. Connect with
//! `rediss://` (TLS, rustls with the system's roots) and a Redis ACL user
//! (`rediss://user:password@host:port/db`) where Redis is not on the same host.

use std::{
    fmt,
    sync::{
        Arc, LazyLock, Mutex, OnceLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use redis::{Script, aio::ConnectionManager};
use sha2::{Digest as _, Sha256};
use tokio::time::Instant;

use super::BearerToken;
use crate::error::Error;

/// Deletes `KEYS[1]` only if its value starts with `ARGV[1]`: the lease release (its own id)
/// and the forced refresh (the refused token's fingerprint).
static DELETE_IF_PREFIX: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, string.len(ARGV[1])) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0",
    )
});

/// The Redis connection and settings of the shared token cache: see the [module docs](self).
/// Cheap to clone; clones share one connection (and one outage state), so one `RedisCache`
/// can serve every [`TokenManager`](super::TokenManager) of a process.
#[derive(Clone)]
pub struct RedisCache {
    client: redis::Client,
    prefix: String,
    seal: Option<Arc<LessSafeKey>>,
    timeout: Duration,
    lease: Duration,
    poll: Duration,
    retry_after: Duration,
    link: Arc<Link>,
}

/// The connection (made on first use, then reconnecting by itself) and the outage state.
#[derive(Default)]
struct Link {
    connection: OnceLock<Option<ConnectionManager>>,
    /// Redis is not asked before this (after a failure).
    resting_until: Mutex<Option<Instant>>,
    down: AtomicBool,
    errors: AtomicU64,
    outages: AtomicU64,
    hits: AtomicU64,
}

impl fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the URL: it may hold the ACL password.
        f.debug_struct("RedisCache")
            .field("prefix", &self.prefix)
            .field("sealed", &self.seal.is_some())
            .field("timeout", &self.timeout)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

impl RedisCache {
    /// A cache on the Redis server at `url` (`redis://`, `rediss://` for TLS, `user:password@`
    /// for an ACL user, `/db` for a database number). Checks the URL only: the connection is
    /// made on first use, so a service starts while Redis is down.
    pub fn open(url: &str) -> Result<Self, Error> {
        let client = redis::Client::open(url).map_err(|e| {
            Error::config(format!(
                "the Redis URL is not valid ({}): expected redis://[user:password@]host[:port][/db] \
                 or rediss://… for TLS",
                e.category()
            ))
        })?;
        Ok(RedisCache {
            client,
            prefix: "s2s-auth:".to_owned(),
            seal: None,
            timeout: Duration::from_millis(200),
            lease: Duration::from_secs(5),
            poll: Duration::from_millis(20),
            retry_after: Duration::from_secs(1),
            link: Arc::default(),
        })
    }

    /// The prefix of every key (default `s2s-auth:`), e.g. one per environment.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Seals the cached tokens with AES-256-GCM under this 32-byte key (the same on every
    /// replica). An entry that does not open under it (another key, tampered) is ignored, as
    /// if absent.
    pub fn seal_key(mut self, key: [u8; 32]) -> Self {
        let key = UnboundKey::new(&AES_256_GCM, &key).expect("AES-256-GCM takes a 32-byte key");
        self.seal = Some(Arc::new(LessSafeKey::new(key)));
        self
    }

    crate::refresh::setters! {
        /// The deadline of each Redis operation (default 200 ms); past it the manager fetches
        /// on its own.
        timeout: Duration;
        /// How long a replica may fetch for the fleet (default 5 s): the lease's expiry, and how
        /// long the others wait for its token before fetching on their own.
        lease: Duration;
        /// How often a waiting replica reads the entry (default 20 ms).
        poll: Duration;
        /// After a failed operation, Redis is left alone this long (default 1 s).
        retry_after: Duration;
    }

    /// The cache of one grant, keyed by `digest` (`ClientCredentials::shared_key`).
    pub(super) fn level(&self, digest: [u8; 32]) -> Level {
        let digest = hex(&digest);
        Level {
            entry: format!("{}token:{digest}", self.prefix),
            lease_key: format!("{}lease:{digest}", self.prefix),
            cache: self.clone(),
        }
    }

    fn connection(&self) -> Option<ConnectionManager> {
        self.link
            .connection
            .get_or_init(|| {
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(Some(self.timeout))
                    // Reconnect quickly, and give up quickly: the next operation tries again.
                    .set_number_of_retries(1)
                    .set_min_delay(Duration::from_millis(50))
                    .set_max_delay(self.retry_after);
                ConnectionManager::new_lazy_with_config(self.client.clone(), config)
                    .inspect_err(|e| tracing::error!(error = %e, "the Redis client cannot start"))
                    .ok()
            })
            .clone()
    }

    /// Whether Redis may be asked now (not resting after a failure).
    fn available(&self) -> bool {
        let resting = self
            .link
            .resting_until
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        resting.is_none_or(|until| Instant::now() >= until)
    }

    /// Runs one operation with the deadline; records failures and recoveries. A connection
    /// error is tried once more within the deadline: the manager reconnects on it, so the first
    /// operation after Redis comes back need not fail.
    async fn run<T, F>(&self, what: &'static str, op: impl Fn(ConnectionManager) -> F) -> Option<T>
    where
        F: Future<Output = redis::RedisResult<T>>,
    {
        let Some(connection) = self.connection() else {
            self.failed(what, "the client could not start");
            return None;
        };
        let deadline = crate::time::later(Instant::now(), self.timeout);
        let mut result = tokio::time::timeout_at(deadline, op(connection.clone())).await;
        if let Ok(Err(e)) = &result
            && (e.is_io_error() || e.is_unrecoverable_error())
        {
            result = tokio::time::timeout_at(deadline, op(connection)).await;
        }
        match result {
            Ok(Ok(value)) => {
                if self.link.down.swap(false, Ordering::Relaxed) {
                    tracing::info!("the shared token cache (Redis) answers again; sharing resumes");
                }
                Some(value)
            }
            Ok(Err(e)) => {
                self.failed(what, e.category());
                None
            }
            Err(_) => {
                self.failed(what, "timed out");
                None
            }
        }
    }

    fn failed(&self, what: &'static str, why: &str) {
        self.link.errors.fetch_add(1, Ordering::Relaxed);
        *self
            .link
            .resting_until
            .lock()
            .unwrap_or_else(|e| e.into_inner()) =
            Some(crate::time::later(Instant::now(), self.retry_after));
        if !self.link.down.swap(true, Ordering::Relaxed) {
            self.link.outages.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                operation = what,
                error = why,
                "the shared token cache (Redis) is unreachable; each replica fetches its own \
                 tokens until it answers again"
            );
        }
    }

    /// Operations that failed or timed out.
    pub(super) fn errors(&self) -> u64 {
        self.link.errors.load(Ordering::Relaxed)
    }

    /// Outages seen (first failure after a success).
    pub(super) fn outages(&self) -> u64 {
        self.link.outages.load(Ordering::Relaxed)
    }

    /// Tokens taken from Redis instead of the token endpoint.
    pub(super) fn hits(&self) -> u64 {
        self.link.hits.load(Ordering::Relaxed)
    }
}

/// A token read from the shared entry.
pub(super) struct Entry {
    pub(super) token: BearerToken,
    /// Unix milliseconds at which the token was received.
    pub(super) issued_ms: u64,
    pub(super) lifetime: Duration,
}

/// How the manager obtains a token through the shared level (it holds its flight).
pub(super) trait Fetcher {
    /// Fetches from the token endpoint, storing the token in memory; returns what to publish.
    fn fetch(&self) -> impl Future<Output = Result<Entry, Error>> + Send;
    /// Stores a token read from Redis in memory, if still usable; returns it then.
    fn adopt(&self, entry: &Entry) -> Option<BearerToken>;
}

/// The shared level of one grant.
pub(super) struct Level {
    cache: RedisCache,
    entry: String,
    lease_key: String,
}

impl Level {
    pub(super) fn cache(&self) -> &RedisCache {
        &self.cache
    }

    /// A token for the manager: Redis's, or one fetched by this replica for the fleet, or, when
    /// Redis fails, one fetched alone. `stale` is the token being replaced (the held one on a
    /// refresh), never taken from Redis; `rejected` a token a callee refused, deleted from
    /// Redis first if the entry still holds it.
    pub(super) async fn obtain(
        &self,
        manager: &impl Fetcher,
        stale: Option<BearerToken>,
        rejected: Option<BearerToken>,
    ) -> Result<BearerToken, Error> {
        let cache = &self.cache;
        if !cache.available() {
            return manager.fetch().await.map(|e| e.token);
        }
        if let Some(rejected) = &rejected {
            let fingerprint = &format!("v1.{}.", fingerprint(rejected));
            let deleted = cache
                .run("delete the refused token", |mut c| async move {
                    DELETE_IF_PREFIX
                        .key(&self.entry)
                        .arg(fingerprint)
                        .invoke_async::<i64>(&mut c)
                        .await
                })
                .await;
            if deleted.is_none() {
                return manager.fetch().await.map(|e| e.token);
            }
        }
        let fresh = |entry: &Entry| {
            ![&stale, &rejected]
                .into_iter()
                .flatten()
                .any(|old| old.as_str() == entry.token.as_str())
        };
        let lease_id = format!("{:032x}", rand::random::<u128>());
        let lease_id = lease_id.as_str();
        let give_up = crate::time::later(Instant::now(), cache.lease);
        loop {
            match self.read().await {
                None => return manager.fetch().await.map(|e| e.token),
                Some(Some(entry)) if fresh(&entry) => {
                    if let Some(token) = manager.adopt(&entry) {
                        cache.link.hits.fetch_add(1, Ordering::Relaxed);
                        return Ok(token);
                    }
                }
                Some(_) => {}
            }
            let lease_ms = cache.lease.as_millis().max(1) as u64;
            let taken = cache
                .run("take the lease", |mut c| async move {
                    redis::cmd("SET")
                        .arg(&self.lease_key)
                        .arg(lease_id)
                        .arg("NX")
                        .arg("PX")
                        .arg(lease_ms)
                        .query_async::<Option<String>>(&mut c)
                        .await
                })
                .await;
            match taken {
                None => return manager.fetch().await.map(|e| e.token),
                Some(Some(_)) => return self.fetch_for_fleet(manager, lease_id, fresh).await,
                Some(None) if Instant::now() >= give_up => {
                    tracing::warn!(
                        "no token from the replica holding the shared lease in time; fetching \
                         alone"
                    );
                    return manager.fetch().await.map(|e| e.token);
                }
                // Another replica fetches: wait for its token (the loop reads it).
                Some(None) => tokio::time::sleep(cache.poll).await,
            }
        }
    }

    /// With the lease: fetch, publish, release.
    async fn fetch_for_fleet(
        &self,
        manager: &impl Fetcher,
        lease_id: &str,
        fresh: impl Fn(&Entry) -> bool,
    ) -> Result<BearerToken, Error> {
        // A holder may have published and released between our read and our lease.
        let adopted = match self.read().await {
            Some(Some(entry)) if fresh(&entry) => manager.adopt(&entry),
            _ => None,
        };
        let result = match adopted {
            Some(token) => {
                self.cache.link.hits.fetch_add(1, Ordering::Relaxed);
                Ok(token)
            }
            None => match manager.fetch().await {
                Ok(entry) => {
                    self.publish(&entry).await;
                    Ok(entry.token)
                }
                Err(e) => Err(e),
            },
        };
        self.cache
            .run("release the lease", |mut c| async move {
                DELETE_IF_PREFIX
                    .key(&self.lease_key)
                    .arg(lease_id)
                    .invoke_async::<i64>(&mut c)
                    .await
            })
            .await;
        result
    }

    /// The entry: `None` when Redis failed, `Some(None)` when absent or unreadable.
    async fn read(&self) -> Option<Option<Entry>> {
        let raw = self
            .cache
            .run("read the token", |mut c| async move {
                redis::cmd("GET")
                    .arg(&self.entry)
                    .query_async::<Option<String>>(&mut c)
                    .await
            })
            .await?;
        Some(raw.and_then(|raw| self.decode(&raw)))
    }

    async fn publish(&self, entry: &Entry) {
        let value = &self.encode(entry);
        let expiry_ms = entry.lifetime.as_millis().max(1) as u64;
        self.cache
            .run("publish the token", |mut c| async move {
                redis::cmd("SET")
                    .arg(&self.entry)
                    .arg(value)
                    .arg("PX")
                    .arg(expiry_ms)
                    .query_async::<()>(&mut c)
                    .await
            })
            .await;
    }

    fn encode(&self, entry: &Entry) -> String {
        let token = entry.token.as_str();
        let (issued, lifetime) = (entry.issued_ms, entry.lifetime.as_millis());
        let body = match &self.cache.seal {
            None => token.to_owned(),
            Some(key) => {
                let nonce_bytes: [u8; NONCE_LEN] = rand::random();
                let mut sealed = token.as_bytes().to_vec();
                let aad = format!("{}|{issued}|{lifetime}", self.entry);
                let sealed = key
                    .seal_in_place_append_tag(
                        Nonce::assume_unique_for_key(nonce_bytes),
                        Aad::from(aad.as_bytes()),
                        &mut sealed,
                    )
                    .map(|()| [&nonce_bytes[..], &sealed].concat());
                match sealed {
                    Ok(bytes) => format!("s:{}", URL_SAFE_NO_PAD.encode(bytes)),
                    // Sealing a short buffer does not fail; were it to, nothing usable is stored.
                    Err(_) => String::new(),
                }
            }
        };
        format!(
            "v1.{}.{issued}.{lifetime}.{body}",
            fingerprint(&entry.token)
        )
    }

    fn decode(&self, raw: &str) -> Option<Entry> {
        let mut parts = raw.splitn(5, '.');
        let (Some("v1"), Some(_), Some(issued), Some(lifetime), Some(body)) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return None;
        };
        let issued_ms: u64 = issued.parse().ok()?;
        let lifetime_ms: u64 = lifetime.parse().ok()?;
        let token = match (&self.cache.seal, body.strip_prefix("s:")) {
            (None, None) => body.to_owned(),
            (Some(key), Some(sealed)) => {
                let mut bytes = URL_SAFE_NO_PAD.decode(sealed).ok()?;
                if bytes.len() < NONCE_LEN {
                    return None;
                }
                let nonce = Nonce::try_assume_unique_for_key(&bytes[..NONCE_LEN]).ok()?;
                let aad = format!("{}|{issued_ms}|{lifetime_ms}", self.entry);
                let plain = key
                    .open_in_place(nonce, Aad::from(aad.as_bytes()), &mut bytes[NONCE_LEN..])
                    .ok()?;
                String::from_utf8(plain.to_vec()).ok()?
            }
            // Sealed where this replica has no key, or plain where it expects sealed: ignored.
            _ => return None,
        };
        if token.is_empty() {
            return None;
        }
        Some(Entry {
            token: BearerToken::new(&token).ok()?,
            issued_ms,
            lifetime: Duration::from_millis(lifetime_ms),
        })
    }
}

/// Unix time in milliseconds (0 before 1970).
pub(super) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn fingerprint(token: &BearerToken) -> String {
    hex(&Sha256::digest(token.as_str().as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(seal: Option<[u8; 32]>) -> Level {
        let cache = RedisCache::open("redis://127.0.0.1:1").unwrap();
        let cache = match seal {
            Some(key) => cache.seal_key(key),
            None => cache,
        };
        cache.level([7; 32])
    }

    fn entry() -> Entry {
        Entry {
            token: BearerToken::new("at-1.part.two").unwrap(),
            issued_ms: 1_700_000_000_000,
            lifetime: Duration::from_secs(600),
        }
    }

    #[test]
    fn entries_round_trip_plain_and_sealed_and_hide_the_token_when_sealed() {
        let plain = level(None);
        let raw = plain.encode(&entry());
        assert!(
            raw.ends_with(".1700000000000.600000.at-1.part.two"),
            "{raw}"
        );
        let back = plain.decode(&raw).unwrap();
        assert!(back.token.as_str() == entry().token.as_str());
        assert_eq!(
            (back.issued_ms, back.lifetime),
            (entry().issued_ms, entry().lifetime)
        );

        let sealed = level(Some([1; 32]));
        let raw = sealed.encode(&entry());
        assert!(!raw.contains("at-1"), "{raw}");
        assert!(sealed.decode(&raw).unwrap().token.as_str() == entry().token.as_str());
        // Another key, a plain reader, a moved entry or a changed lifetime: not a token.
        assert!(level(Some([2; 32])).decode(&raw).is_none());
        assert!(plain.decode(&raw).is_none());
        assert!(sealed.decode(&plain.encode(&entry())).is_none());
        let other = RedisCache::open("redis://127.0.0.1:1")
            .unwrap()
            .seal_key([1; 32])
            .level([8; 32]);
        assert!(other.decode(&raw).is_none());
        let stretched = raw.replace(".600000.", ".900000.");
        assert!(sealed.decode(&stretched).is_none());
        for junk in [
            "",
            "v1",
            "v2.a.1.2.t",
            "v1.f.x.2.t",
            "v1.f.1.2.",
            "v1.f.1.2.s:@@",
        ] {
            assert!(sealed.decode(junk).is_none() && plain.decode(junk).is_none());
        }
    }

    #[test]
    fn a_bad_url_is_a_configuration_error_and_debug_hides_the_password() {
        let err = RedisCache::open("http://cache:6379").unwrap_err();
        assert!(err.to_string().contains("redis://"), "{err}");
        let cache = RedisCache::open("redis://app:hunter2@cache:6379/3").unwrap();
        let debug = format!("{cache:?}");
        assert!(
            !debug.contains("hunter2") && debug.contains("s2s-auth:"),
            "{debug}"
        );
    }
}
