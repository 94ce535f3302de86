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
//! 1. Read the entry: a token that is still usable is taken (no token request).
//! 2. Else take the lease (`SET lease NX PX`): the lease holder reads the entry once more (a
//!    holder may have published and released between 1 and 2), fetches, hands the token to its
//!    callers at once, and then, off their path, `SET`s the entry with the token's lifetime as
//!    its expiry and releases the lease (compare-and-delete).
//! 3. The others poll the entry every [`RedisCache::poll`] until it holds a new token, or the
//!    lease is gone (then they try to take it), or [`RedisCache::lease`] has passed (then they
//!    fetch on their own and publish what they fetched).
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
//! What is in Redis is not trusted either. An entry that is not a string, is longer than
//! 64 KiB, does not parse, belongs to another key, does not open under the seal key, says it
//! was issued in the future (beyond the manager's [`skew`](super::RefreshPolicy::skew)) or
//! has a lifetime outside the manager's
//! [`min_lifetime`](super::RefreshPolicy::min_lifetime)..[`max_lifetime`](super::RefreshPolicy::max_lifetime)
//! is ignored for that grant only (logged, `warn`) and replaced by the token the lease holder
//! fetches. A lease that never expires (or outlives any lease a replica takes) is taken over,
//! so that no stray key stalls the fleet.
//!
//! # What is stored
//!
//! Two keys per grant, under [`RedisCache::prefix`] (default `s2s-auth:`):
//!
//! - `<prefix>token:<digest>`: `v2.<fingerprint>.<binding>.<issued>.<lifetime>.<token>`,
//!   expiring with the token. `digest` is the hex SHA-256 of the grant (token endpoint,
//!   dialect, client id, authentication method, sorted scopes, audience, resources, extra
//!   parameters) and never of the secret or key; `fingerprint` the hex SHA-256 of the access
//!   token (what the compare-and-delete compares); `binding` the first 128 bits (hex) of the
//!   SHA-256 of the entry's key, so that an entry copied to another grant's key is not taken
//!   for its token; `issued` the Unix time in milliseconds the token was received; `lifetime`
//!   its lifetime in milliseconds (after the manager's clamping). `token` is the access token
//!   itself or, with [`RedisCache::seal_key`], `s:` and the URL-safe base64 of a random 96-bit
//!   nonce and its AES-256-GCM ciphertext (associated data: the entry's key, issued time and
//!   lifetime, so that a sealed token cannot be moved to another grant or stretched).
//! - `<prefix>lease:<digest>`: a random lease id while one replica fetches, expiring after
//!   [`RedisCache::lease`].
//!
//! No client secret, no private key, no digest of either is stored.
//!
//! # Who can use the cached token
//!
//! **Reading the entry is enough to use the token: the client secret is not needed.** The
//! key is derived from what is public about the grant (endpoint, client id, scopes…), so
//! anyone who can read the Redis keys (and knows or lists the grant's key) can take the access
//! token and call the services it is good for until it expires, without ever holding the
//! client's secret or key. Treat read access to these keys like access to the tokens:
//!
//! - set [`RedisCache::seal_key`] (then a reader also needs that key, which lives in the
//!   replicas' configuration, not in Redis), and
//! - give the replicas a Redis ACL user of their own, limited to the prefix, and nobody else
//!   read access to it, e.g.
//!   `ACL SETUSER billing on >password ~s2s-auth:* +get +set +del +type +strlen +pttl +evalsha +script|load`
//!   (the commands the cache sends, directly or from its Lua scripts), and
//! - connect with `rediss://` (TLS, rustls with the system's roots):
//!   `rediss://user:password@host:port/db`.
//!
//! A Redis that is not on the same host (a URL whose host is not `localhost`, a loopback
//! address or a Unix socket) without a seal key is logged as a `warn` when the cache is first
//! given to a manager.

use std::{
    fmt,
    net::IpAddr,
    sync::{
        Arc, LazyLock, Mutex, OnceLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use redis::{ConnectionAddr, Script, Value, aio::ConnectionManager};
use sha2::{Digest as _, Sha256};
use tokio::time::Instant;

use super::BearerToken;
use crate::error::Error;

/// The longest entry read or written: a token entry is a few KiB at most, and a bigger value
/// (a stray key, a mistake, an attack) must not be pulled into every replica.
pub(super) const MAX_ENTRY: usize = 64 * 1024;

/// The entry format's version (the first field).
const VERSION: &str = "v2";

/// Reads `KEYS[1]` without ever failing on what it holds, so that one bad key cannot pass for
/// an outage: nil when absent, `{type}` when not a string, its length when longer than
/// `ARGV[1]` (not sent then), else the value.
static READ: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local kind = redis.call('TYPE', KEYS[1]).ok
if kind == 'none' then return false end
if kind ~= 'string' then return {kind} end
local n = redis.call('STRLEN', KEYS[1])
if n > tonumber(ARGV[1]) then return n end
return redis.call('GET', KEYS[1])",
    )
});

/// Takes the lease `KEYS[1]` for `ARGV[1]` (1) unless another replica holds it (0). A key
/// there that never expires, or expires later than a lease of `ARGV[2]` ms would, is no
/// replica's lease (each sets one with that expiry): taken over.
static TAKE_LEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
local ttl = redis.call('PTTL', KEYS[1])
if ttl == -1 or ttl > tonumber(ARGV[2]) then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 2
end
return 0",
    )
});

/// Deletes `KEYS[1]` only if its value is a string that starts with `ARGV[1]`: the lease
/// release (its own id) and the forced refresh (the refused token's fingerprint). A key of
/// another type is left alone, without an error.
static DELETE_IF_PREFIX: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local v = redis.pcall('GET', KEYS[1])
if type(v) == 'string' and string.sub(v, 1, string.len(ARGV[1])) == ARGV[1] then
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
    /// The plain-over-the-network warning was logged.
    warned_plain: AtomicBool,
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
    ///
    /// Anyone who can read the cache's keys can use the tokens in them, without the client
    /// secret: where Redis is not on the same host, set [`RedisCache::seal_key`] too (without
    /// it, a `warn` says so) and give the replicas a Redis ACL user limited to the prefix.
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
    /// if absent. Recommended wherever Redis is reached over a network: without it, reading
    /// the entry is enough to use the token.
    pub fn seal_key(mut self, key: [u8; 32]) -> Self {
        let key = UnboundKey::new(&AES_256_GCM, &key).expect("AES-256-GCM takes a 32-byte key");
        self.seal = Some(Arc::new(LessSafeKey::new(key)));
        self
    }

    crate::refresh::setters! {
        /// The deadline of each Redis operation (default 200 ms); past it the manager fetches
        /// on its own.
        timeout: Duration;
        /// How long a replica may fetch for the fleet (default 5 s; the same on every
        /// replica): the lease's expiry, and how long the others wait for its token before
        /// fetching on their own.
        lease: Duration;
        /// How often a waiting replica reads the entry (default 20 ms).
        poll: Duration;
        /// After a failed operation, Redis is left alone this long (default 1 s).
        retry_after: Duration;
    }

    /// The cache of one grant, keyed by `digest` (`ClientCredentials::shared_key`).
    pub(super) fn level(&self, digest: [u8; 32]) -> Level {
        if self.seal.is_none()
            && !is_local(self.client.get_connection_info().addr())
            && !self.link.warned_plain.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(
                "the shared token cache (Redis) is not on this host and has no seal key: \
                 whoever can read its keys can use the tokens in them; set RedisCache::seal_key \
                 (the same 32 bytes on every replica) and a Redis ACL user limited to the prefix"
            );
        }
        let digest = hex(&digest);
        let entry = format!("{}token:{digest}", self.prefix);
        Level {
            binding: hex(&Sha256::digest(entry.as_bytes())[..16]),
            entry,
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

/// Whether the server is on this host: a Unix socket, `localhost` or a loopback address.
fn is_local(addr: &ConnectionAddr) -> bool {
    let host = match addr {
        ConnectionAddr::Tcp(host, _) | ConnectionAddr::TcpTls { host, .. } => host,
        ConnectionAddr::Unix(_) => return true,
        _ => return false,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
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
    /// Stores a token read from Redis in memory, if still usable and plausible; returns it
    /// then.
    fn adopt(&self, entry: &Entry) -> Option<BearerToken>;
}

/// The shared level of one grant.
#[derive(Clone)]
pub(super) struct Level {
    cache: RedisCache,
    entry: String,
    lease_key: String,
    /// What ties an entry's value to [`Level::entry`] (see the module docs).
    binding: String,
}

/// Why an entry is not a token for this grant (the `warn` says it).
#[derive(Debug, PartialEq, Eq)]
enum Unusable {
    NotAString(String),
    TooLong(i64),
    Malformed,
    OtherKey,
    SealMismatch,
}

impl fmt::Display for Unusable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unusable::NotAString(kind) => write!(f, "the key holds a {kind}, not a string"),
            Unusable::TooLong(n) => write!(f, "the value is {n} bytes, more than {MAX_ENTRY}"),
            Unusable::Malformed => f.write_str("the value is not a token entry of this version"),
            Unusable::OtherKey => f.write_str("the value was written for another key"),
            Unusable::SealMismatch => f.write_str(
                "the value does not open with this replica's seal key (or one side has none): \
                 the replicas' seal keys differ",
            ),
        }
    }
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
            let fingerprint = &format!("{VERSION}.{}.", fingerprint(rejected));
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
                    TAKE_LEASE
                        .key(&self.lease_key)
                        .arg(lease_id)
                        .arg(lease_ms)
                        .invoke_async::<i64>(&mut c)
                        .await
                })
                .await;
            match taken {
                None => return manager.fetch().await.map(|e| e.token),
                Some(taken @ (1 | 2)) => {
                    if taken == 2 {
                        tracing::warn!(
                            key = self.lease_key,
                            "the shared lease had no expiry (or a longer one than any replica \
                             sets): taken over"
                        );
                    }
                    return self.fetch_for_fleet(manager, lease_id, fresh).await;
                }
                _ if Instant::now() >= give_up => {
                    tracing::warn!(
                        "no token from the replica holding the shared lease in time; fetching \
                         for the fleet without it"
                    );
                    let entry = manager.fetch().await?;
                    self.after_fetch(Some(&entry), None);
                    return Ok(entry.token);
                }
                // Another replica fetches: wait for its token (the loop reads it).
                _ => tokio::time::sleep(cache.poll).await,
            }
        }
    }

    /// With the lease: fetch, then publish and release off the callers' path.
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
        if let Some(token) = adopted {
            self.cache.link.hits.fetch_add(1, Ordering::Relaxed);
            self.after_fetch(None, Some(lease_id));
            return Ok(token);
        }
        let fetched = manager.fetch().await;
        self.after_fetch(fetched.as_ref().ok(), Some(lease_id));
        fetched.map(|entry| entry.token)
    }

    /// Publishes `entry` (if any), then releases the lease `lease_id` (if held), in a task of
    /// its own: the callers have their token already.
    fn after_fetch(&self, entry: Option<&Entry>, lease_id: Option<&str>) {
        let value = entry.and_then(|entry| {
            let value = self.encode(entry);
            if value.len() > MAX_ENTRY {
                tracing::warn!(
                    bytes = value.len(),
                    "the token is too long to share (more than 64 KiB); not published"
                );
                return None;
            }
            Some((value, entry.lifetime.as_millis().max(1) as u64))
        });
        let lease_id = lease_id.map(str::to_owned);
        let level = self.clone();
        tokio::spawn(async move {
            if let Some((value, expiry_ms)) = &value {
                level.publish(value, *expiry_ms).await;
            }
            if let Some(lease_id) = &lease_id {
                level.release(lease_id).await;
            }
        });
    }

    async fn publish(&self, value: &str, expiry_ms: u64) {
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

    async fn release(&self, lease_id: &str) {
        self.cache
            .run("release the lease", |mut c| async move {
                DELETE_IF_PREFIX
                    .key(&self.lease_key)
                    .arg(lease_id)
                    .invoke_async::<i64>(&mut c)
                    .await
            })
            .await;
    }

    /// The entry: `None` when Redis failed, `Some(None)` when absent or not a token for this
    /// grant (then logged: the lease holder replaces it).
    async fn read(&self) -> Option<Option<Entry>> {
        let raw = self
            .cache
            .run("read the token", |mut c| async move {
                READ.key(&self.entry)
                    .arg(MAX_ENTRY)
                    .invoke_async::<Value>(&mut c)
                    .await
            })
            .await?;
        let decoded = match raw {
            Value::Nil => return Some(None),
            Value::BulkString(bytes) => self.decode(&bytes),
            Value::Int(n) => Err(Unusable::TooLong(n)),
            Value::Array(kind) => Err(Unusable::NotAString(match kind.first() {
                Some(Value::BulkString(kind)) => String::from_utf8_lossy(kind).into_owned(),
                Some(Value::SimpleString(kind)) => kind.clone(),
                _ => "value of another type".to_owned(),
            })),
            _ => Err(Unusable::Malformed),
        };
        Some(
            decoded
                .inspect_err(|why| {
                    tracing::warn!(
                        key = self.entry,
                        %why,
                        "the shared token entry is ignored and will be replaced"
                    );
                })
                .ok(),
        )
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
            "{VERSION}.{}.{}.{issued}.{lifetime}.{body}",
            fingerprint(&entry.token),
            self.binding,
        )
    }

    fn decode(&self, raw: &[u8]) -> Result<Entry, Unusable> {
        let raw = std::str::from_utf8(raw).map_err(|_| Unusable::Malformed)?;
        let mut parts = raw.splitn(6, '.');
        let (Some(VERSION), Some(_), Some(binding), Some(issued), Some(lifetime), Some(body)) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(Unusable::Malformed);
        };
        if binding != self.binding {
            return Err(Unusable::OtherKey);
        }
        let issued_ms: u64 = issued.parse().map_err(|_| Unusable::Malformed)?;
        let lifetime_ms: u64 = lifetime.parse().map_err(|_| Unusable::Malformed)?;
        let token = match (&self.cache.seal, body.strip_prefix("s:")) {
            (None, None) => body.to_owned(),
            (Some(key), Some(sealed)) => {
                let mut bytes = URL_SAFE_NO_PAD
                    .decode(sealed)
                    .map_err(|_| Unusable::Malformed)?;
                if bytes.len() < NONCE_LEN {
                    return Err(Unusable::Malformed);
                }
                let nonce = Nonce::try_assume_unique_for_key(&bytes[..NONCE_LEN])
                    .map_err(|_| Unusable::Malformed)?;
                let aad = format!("{}|{issued_ms}|{lifetime_ms}", self.entry);
                let plain = key
                    .open_in_place(nonce, Aad::from(aad.as_bytes()), &mut bytes[NONCE_LEN..])
                    .map_err(|_| Unusable::SealMismatch)?;
                String::from_utf8(plain.to_vec()).map_err(|_| Unusable::Malformed)?
            }
            // Sealed where this replica has no key, or plain where it expects sealed.
            _ => return Err(Unusable::SealMismatch),
        };
        if token.is_empty() {
            return Err(Unusable::Malformed);
        }
        Ok(Entry {
            token: BearerToken::new(&token).map_err(|_| Unusable::Malformed)?,
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

    fn decode(level: &Level, raw: &str) -> Result<Entry, Unusable> {
        level.decode(raw.as_bytes())
    }

    #[test]
    fn entries_round_trip_plain_and_sealed_and_hide_the_token_when_sealed() {
        let plain = level(None);
        let raw = plain.encode(&entry());
        assert!(
            raw.starts_with("v2.")
                && raw.ends_with(&format!(
                    ".{}.1700000000000.600000.at-1.part.two",
                    plain.binding
                )),
            "{raw}"
        );
        let back = decode(&plain, &raw).unwrap();
        assert!(back.token.as_str() == entry().token.as_str());
        assert_eq!(
            (back.issued_ms, back.lifetime),
            (entry().issued_ms, entry().lifetime)
        );

        let sealed = level(Some([1; 32]));
        let raw = sealed.encode(&entry());
        assert!(!raw.contains("at-1"), "{raw}");
        assert!(decode(&sealed, &raw).unwrap().token.as_str() == entry().token.as_str());
        // Another key, a plain reader, a moved entry or a changed lifetime: not a token.
        assert_eq!(
            decode(&level(Some([2; 32])), &raw).err(),
            Some(Unusable::SealMismatch)
        );
        assert_eq!(decode(&plain, &raw).err(), Some(Unusable::SealMismatch));
        assert_eq!(
            decode(&sealed, &plain.encode(&entry())).err(),
            Some(Unusable::SealMismatch)
        );
        let stretched = raw.replace(".600000.", ".900000.");
        assert_eq!(
            decode(&sealed, &stretched).err(),
            Some(Unusable::SealMismatch)
        );
        for junk in [
            "",
            "v1",
            "v1.f.1.2.t",
            "v3.a.b.1.2.t",
            &format!("v2.f.{}.x.2.t", plain.binding),
            &format!("v2.f.{}.1.2.", plain.binding),
            &format!("v2.f.{}.1.2.s:@@", sealed.binding),
        ] {
            assert!(decode(&sealed, junk).is_err() && decode(&plain, junk).is_err());
        }
        assert_eq!(
            plain.decode(b"v2.\xff\xfe.x").err(),
            Some(Unusable::Malformed)
        );
    }

    #[test]
    fn an_entry_copied_to_another_key_is_refused_plain_or_sealed() {
        let other_grant = |seal: Option<[u8; 32]>| {
            let cache = RedisCache::open("redis://127.0.0.1:1").unwrap();
            match seal {
                Some(key) => cache.seal_key(key),
                None => cache,
            }
            .level([8; 32])
        };
        let other_prefix = RedisCache::open("redis://127.0.0.1:1")
            .unwrap()
            .prefix("staging:")
            .level([7; 32]);
        let raw = level(None).encode(&entry());
        assert_eq!(
            decode(&other_grant(None), &raw).err(),
            Some(Unusable::OtherKey)
        );
        assert_eq!(decode(&other_prefix, &raw).err(), Some(Unusable::OtherKey));
        let sealed = level(Some([1; 32])).encode(&entry());
        assert!(decode(&other_grant(Some([1; 32])), &sealed).is_err());
        // Rewriting the binding does not help a sealed entry: the key is in the associated data.
        let (ours, theirs) = (level(None).binding, other_grant(None).binding);
        assert!(decode(&other_grant(Some([1; 32])), &sealed.replace(&ours, &theirs)).is_err());
    }

    #[test]
    fn only_a_server_on_this_host_counts_as_local() {
        let local = |url: &str| {
            is_local(
                RedisCache::open(url)
                    .unwrap()
                    .client
                    .get_connection_info()
                    .addr(),
            )
        };
        for url in [
            "redis://127.0.0.1:6379",
            "redis://localhost",
            "rediss://user:pw@[::1]:6380/2",
            "redis+unix:///run/redis.sock",
        ] {
            assert!(local(url), "{url}");
        }
        for url in ["redis://cache.internal:6379", "rediss://10.0.0.7:6380"] {
            assert!(!local(url), "{url}");
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
