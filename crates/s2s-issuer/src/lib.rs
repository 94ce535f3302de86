//! A small, real authorization server for the OAuth 2.0 client credentials grant: service
//! accounts, a token endpoint, ES256 JWT access tokens, a JWKS with signing-key rotation, and
//! discovery metadata. For development, CI and single-node deployments, and as the issuer the
//! `s2s-auth` quickstart runs in-process.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use s2s_issuer::{IssuerConfig, accounts::NewAccount};
//! use secrecy::ExposeSecret as _;
//!
//! // In memory, on a free port of 127.0.0.1; the issuer URL is http://127.0.0.1:{port}.
//! let mut config = IssuerConfig::default();
//! config.listen = "127.0.0.1:0".parse()?;
//! config.db = ":memory:".into();
//! config.default_audience = Some("orders-api".into());
//! let running = s2s_issuer::spawn(config).await?;
//!
//! // A service account; its secret is shown this once.
//! let created = running
//!     .issuer
//!     .accounts()
//!     .create(NewAccount::new("billing").scope("orders:read"))
//!     .await?;
//! let (client_id, secret) = (&created.account.client_id, created.client_secret.expose_secret());
//!
//! // Any OAuth client now gets tokens from `{url}/token`, e.g. s2s-auth's
//! // `ClientCredentials::discover(&running.url, client_id, ClientAuth::SecretBasic(secret))`.
//! assert!(running.url.starts_with("http://127.0.0.1:"));
//! # let _ = (client_id, secret);
//! running.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # Endpoints
//!
//! | | |
//! |---|---|
//! | `POST /token` | the grant ([`token`]), a form (RFC 6749) or the seed's JSON body |
//! | `GET /.well-known/jwks.json` | the public keys ([`keys`]) |
//! | `GET /.well-known/openid-configuration`, `GET /.well-known/oauth-authorization-server` | RFC 8414 metadata |
//! | `/admin/service-accounts...`, `/admin/keys...` | accounts and keys ([`admin`]), only when an admin token is configured |
//! | `GET /healthz`, `GET /readyz` | liveness (200), readiness (503 while the database is unreachable), at the host's root |
//! | `GET /metrics` | the counters in the Prometheus text format ([`metrics`]), at the host's root |
//!
//! All of them live under the issuer URL's path: with the issuer `https://api.example.com/auth`
//! (the seed's) they are `/auth/token`, `/auth/.well-known/jwks.json`, `/auth/admin/...`; the
//! RFC 8414 metadata is also at `/.well-known/oauth-authorization-server/auth` (RFC 8414 §3).
//! The tokens' `iss` is the issuer URL unless [`IssuerConfig::token_issuer`] names another.
//!
//! The router needs the client's socket address (for `allowedIps` and the per-IP rate limit):
//! serve it with [`serve`], or with
//! `axum::serve(listener, issuer.router().into_make_service_with_connect_info::<SocketAddr>())`.
//! Without it, accounts restricted to networks are refused (the address is unknown).
//!
//! # Modules
//!
//! [`config`] (TOML and code), [`accounts`] (service accounts and their secrets), [`keys`]
//! (signing keys and rotation), [`token`] (the endpoint), [`admin`] (the admin API), [`audit`]
//! (the audit log). Storage is SQLite or PostgreSQL through sqlx ([`IssuerConfig::db`]).

#![forbid(unsafe_code)]
#![warn(missing_docs, rust_2018_idioms, unreachable_pub)]

pub mod accounts;
pub mod admin;
pub mod audit;
pub mod config;
mod dates;
mod error;
pub mod keys;
pub mod metrics;
mod ratelimit;
mod secret;
mod store;
mod sync;
pub mod token;

use std::{
    future::Future,
    net::SocketAddr,
    sync::{Arc, Mutex, atomic::Ordering},
};

use axum::{
    Json, Router,
    body::Bytes,
    extract::State,
    http::{
        HeaderValue,
        header::{CACHE_CONTROL, CONTENT_TYPE},
    },
    response::{IntoResponse, Response},
    routing::{get, post},
};
use secrecy::ExposeSecret as _;
use sha2::{Digest as _, Sha256};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

pub use accounts::Accounts;
pub use config::{Clock, IssuerConfig, SigningAlg};
pub use error::Error;
pub use keys::{KeyRotation, SigningKeyInfo};
pub use secret::HashStats;

use crate::{
    keys::KeyRing, metrics::Metrics, ratelimit::Limits, secret::SecretHasher, store::Store,
    sync::Health,
};

/// A running issuer's state: storage, keys, accounts, limits. Cheap to clone (an `Arc`).
#[derive(Clone, Debug)]
pub struct Issuer {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) issuer_url: String,
    /// The `iss` claim (the issuer URL unless configured).
    pub(crate) token_iss: String,
    /// The issuer URL's path without a trailing `/` (`/auth`), or empty.
    pub(crate) base_path: String,
    pub(crate) default_audience: String,
    pub(crate) token_lifetime: u64,
    /// The JWKS's `Cache-Control: max-age`, seconds.
    pub(crate) jwks_max_age: u64,
    pub(crate) trusted_proxies: Vec<ipnet::IpNet>,
    pub(crate) metadata: MetadataCache,
    pub(crate) clock: Clock,
    pub(crate) store: Store,
    pub(crate) keys: KeyRing,
    pub(crate) accounts: Accounts,
    pub(crate) limits: Limits,
    /// SHA-256 of the admin token (the token itself is not kept).
    pub(crate) admin_token_digest: Option<[u8; 32]>,
    /// Whether the database answers ([`sync`]).
    pub(crate) health: Arc<Health>,
    pub(crate) metrics: Metrics,
    /// `key_rotation_interval_secs`.
    pub(crate) key_rotation_interval: Option<u64>,
    /// The background poll of the database ([`sync`]), stopped with the issuer.
    sync_task: Mutex<Option<tokio::task::AbortHandle>>,
}

impl Inner {
    fn stop_sync(&self) {
        if let Some(task) = self
            .sync_task
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            task.abort();
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop_sync();
    }
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // No admin token digest, no keys, no hashes.
        f.debug_struct("Issuer")
            .field("issuer_url", &self.issuer_url)
            .field("token_iss", &self.token_iss)
            .field("default_audience", &self.default_audience)
            .field("token_lifetime", &self.token_lifetime)
            .field("admin_api", &self.admin_token_digest.is_some())
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl Issuer {
    /// Opens the database (creating and migrating it as needed), loads or generates the signing
    /// key, and checks the configuration. `config.issuer` must be set.
    pub async fn open(config: IssuerConfig) -> Result<Issuer, Error> {
        config.validate()?;
        let trusted_proxies = config.trusted_proxy_nets()?;
        let issuer_url = config.issuer.clone().ok_or_else(|| Error::Config {
            field: "issuer".into(),
            message: "the issuer URL is required".into(),
        })?;
        let admin_token_digest = config
            .resolve_admin_token()?
            .map(|t| Sha256::digest(t.expose_secret().as_bytes()).into());
        let hash_config = config.secret_hash;
        let hasher = tokio::task::spawn_blocking(move || SecretHasher::new(hash_config))
            .await
            .map_err(|e| Error::Internal(format!("hasher setup: {e}")))??;
        let kek = config.resolve_key_encryption_key()?;
        let store = Store::open(&config.db, kek).await?;
        // Read before the keys and accounts: a change during their loading is reloaded.
        let version = store.version().await?;
        let health = Arc::new(Health::default());
        let keys = KeyRing::open(
            store.clone(),
            config.clock.clone(),
            config.signing_alg,
            config.token_lifetime_secs,
            config.key_retire_leeway_secs,
            config.jwks_max_age_secs,
            health.clone(),
        )
        .await?;
        let accounts = Accounts {
            store: store.clone(),
            hasher: Arc::new(hasher),
            clock: config.clock.clone(),
            generation: Arc::default(),
            known: Arc::default(),
            health: health.clone(),
        };
        accounts.reload_all().await?;
        let issuer = Issuer {
            inner: Arc::new(Inner {
                default_audience: config
                    .default_audience
                    .clone()
                    .unwrap_or_else(|| issuer_url.clone()),
                token_iss: config
                    .token_issuer
                    .clone()
                    .unwrap_or_else(|| issuer_url.clone()),
                base_path: config::base_path(&issuer_url),
                issuer_url,
                token_lifetime: config.token_lifetime_secs,
                jwks_max_age: config.jwks_max_age_secs,
                trusted_proxies,
                metadata: MetadataCache::new(config.publish_scopes_supported),
                clock: config.clock.clone(),
                store,
                keys,
                accounts,
                limits: Limits::new(config.rate_limit),
                admin_token_digest,
                health,
                metrics: Metrics::default(),
                key_rotation_interval: config.key_rotation_interval_secs,
                sync_task: Mutex::new(None),
            }),
        };
        let task = sync::spawn(Arc::downgrade(&issuer.inner), Some(version));
        *issuer
            .inner
            .sync_task
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(task);
        Ok(issuer)
    }

    /// The routes: token endpoint, JWKS, metadata and (with an admin token) the admin API,
    /// under the issuer URL's path. Serve with connect info (see the crate docs).
    pub fn router(&self) -> Router {
        let mut router = Router::new()
            .route("/token", post(token::handler))
            .route("/.well-known/jwks.json", get(jwks))
            .route("/.well-known/openid-configuration", get(metadata))
            .route("/.well-known/oauth-authorization-server", get(metadata));
        if self.inner.admin_token_digest.is_some() {
            router = router.nest("/admin", admin::router(self.clone()));
        }
        let base = &self.inner.base_path;
        if !base.is_empty() {
            // RFC 8414 §3: the well-known segment goes between the host and the issuer's path.
            router = Router::new().nest(base, router).route(
                &format!("/.well-known/oauth-authorization-server{base}"),
                get(metadata),
            );
        }
        // Probes and the scrape at the host's root, whatever the issuer's path.
        router
            .route("/healthz", get(|| async { "ok" }))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics))
            .with_state(self.clone())
    }

    /// The service accounts.
    pub fn accounts(&self) -> &Accounts {
        &self.inner.accounts
    }

    /// The issuer URL (the metadata's `issuer`, the base of every endpoint).
    pub fn issuer_url(&self) -> &str {
        &self.inner.issuer_url
    }

    /// The `iss` claim of issued tokens: [`IssuerConfig::token_issuer`], else the issuer URL.
    pub fn token_issuer(&self) -> &str {
        &self.inner.token_iss
    }

    /// The `aud` of tokens whose request names no audience.
    pub fn default_audience(&self) -> &str {
        &self.inner.default_audience
    }

    /// Whether the admin API is served (an admin token is configured).
    pub fn admin_enabled(&self) -> bool {
        self.inner.admin_token_digest.is_some()
    }

    /// Generates and publishes a new signing key. On SQLite it signs from now on; on
    /// PostgreSQL from [`KeyRotation::activates_at`] (`jwks_max_age_secs` + 1 s later, so that
    /// every replica publishes it and every verifier has fetched it first; see [`keys`]). The
    /// previous key stays in the JWKS until every token it signed has expired.
    pub async fn rotate_signing_key(&self) -> Result<KeyRotation, Error> {
        self.inner.keys.rotate().await
    }

    /// Signs `claims` (any JSON object) with the active signing key, header
    /// `{alg, typ: "at+jwt", kid}`: the token endpoint's last step without its checks, for tools
    /// and tests that need tokens with chosen claims (`s2s-auth-testkit`). Nothing is filled in:
    /// the claims are signed as given.
    pub fn sign_claims(&self, claims: &impl serde::Serialize) -> Result<String, Error> {
        Ok(self.inner.keys.sign(claims)?.0)
    }

    /// The published signing keys, the active one first.
    pub async fn signing_keys(&self) -> Result<Vec<SigningKeyInfo>, Error> {
        Ok(self.inner.keys.infos().await)
    }

    /// The JWK set as served at `/.well-known/jwks.json`.
    pub async fn jwks(&self) -> serde_json::Value {
        self.inner.keys.jwks().await
    }

    /// Counters of the token endpoint's secret checks (argon2 runs, checks skipped for a
    /// recently verified secret, checks refused with 503 because the queue was full).
    pub fn hash_stats(&self) -> HashStats {
        self.inner.accounts.hasher.stats()
    }

    /// Whether the database answered the last check (about twice a second): what `/readyz`
    /// reports.
    pub fn database_up(&self) -> bool {
        self.inner.health.is_up()
    }

    /// Stops the background database poll and closes the database connections (after the
    /// server has stopped).
    pub async fn close(&self) {
        self.inner.stop_sync();
        self.inner.store.close().await;
    }

    fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.inner.issuer_url.trim_end_matches('/'))
    }
}

fn cache_for(response: &mut Response, value: &'static str) {
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static(value));
}

async fn jwks(State(issuer): State<Issuer>) -> Response {
    let mut response = Json(issuer.jwks().await).into_response();
    let max_age = HeaderValue::from_str(&format!("public, max-age={}", issuer.inner.jwks_max_age))
        .unwrap_or_else(|_| HeaderValue::from_static("public, max-age=300"));
    response.headers_mut().insert(CACHE_CONTROL, max_age);
    response
}

/// `GET /readyz`: 200 while the database answers, 503 while it does not (tokens are still
/// issued from memory then, see [`sync`]).
async fn readyz(State(issuer): State<Issuer>) -> Response {
    let mut response = if issuer.database_up() {
        Json(serde_json::json!({"status": "ready"})).into_response()
    } else {
        let body = s2s_auth::oauth::ErrorBody::new("temporarily_unavailable").with_description(
            "the database is unreachable: tokens are issued for known accounts from memory, \
             admin changes are refused"
                .to_owned(),
        );
        let mut response = error::answer(axum::http::StatusCode::SERVICE_UNAVAILABLE, &body, "");
        response.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            HeaderValue::from(sync::RETRY_AFTER_SECS),
        );
        response
    };
    cache_for(&mut response, "no-store");
    response
}

/// `GET /metrics` ([`metrics`]).
async fn metrics(State(issuer): State<Issuer>) -> Response {
    let mut response = issuer
        .inner
        .metrics
        .render(issuer.database_up())
        .into_response();
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    cache_for(&mut response, "no-store");
    response
}

/// How long a discovery document that lists the scopes is served before the scopes are read
/// again, seconds: it bounds how stale it is after changes made by another process on the
/// same database (changes made through this issuer clear it at once).
const METADATA_MAX_AGE: u64 = 60;

/// The discovery document, serialised once. Without `scopes_supported` it never changes; with
/// it, it is rebuilt after an account change in this process or [`METADATA_MAX_AGE`], never
/// per request.
pub(crate) struct MetadataCache {
    publish_scopes: bool,
    cached: Mutex<Option<CachedMetadata>>,
    /// One rebuild at a time: concurrent requests of a stale document wait for it.
    rebuild: tokio::sync::Mutex<()>,
}

struct CachedMetadata {
    body: Bytes,
    generation: u64,
    built_at: u64,
}

impl MetadataCache {
    fn new(publish_scopes: bool) -> Self {
        MetadataCache {
            publish_scopes,
            cached: Mutex::new(None),
            rebuild: tokio::sync::Mutex::new(()),
        }
    }

    fn fresh(&self, generation: u64, now: u64) -> Option<Bytes> {
        let cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        cached
            .as_ref()
            .filter(|c| {
                !self.publish_scopes
                    || (c.generation == generation
                        && now.saturating_sub(c.built_at) < METADATA_MAX_AGE)
            })
            .map(|c| c.body.clone())
    }
}

impl Issuer {
    /// The serialised discovery document, from the cache when it is fresh.
    async fn metadata_body(&self) -> Bytes {
        let cache = &self.inner.metadata;
        let generation = || self.inner.accounts.generation.load(Ordering::SeqCst);
        let now = || self.inner.clock.unix_now();
        if let Some(body) = cache.fresh(generation(), now()) {
            return body;
        }
        let _rebuilding = cache.rebuild.lock().await;
        if let Some(body) = cache.fresh(generation(), now()) {
            return body;
        }
        // Read before the query, so that a change during it makes the result stale.
        let (generation, built_at) = (generation(), now());
        let mut body = serde_json::json!({
            "issuer": self.issuer_url(),
            "token_endpoint": self.endpoint("/token"),
            "jwks_uri": self.endpoint("/.well-known/jwks.json"),
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "response_types_supported": [],
        });
        let mut complete = true;
        if cache.publish_scopes {
            let scopes = self.accounts().all_scopes().await.unwrap_or_else(|e| {
                tracing::warn!(error = %e, "could not list scopes for the metadata");
                complete = false;
                Vec::new()
            });
            body["scopes_supported"] = scopes.into();
        }
        let body = Bytes::from(body.to_string());
        if complete {
            *cache.cached.lock().unwrap_or_else(|e| e.into_inner()) = Some(CachedMetadata {
                body: body.clone(),
                generation,
                built_at,
            });
        }
        body
    }
}

async fn metadata(State(issuer): State<Issuer>) -> Response {
    let mut response = issuer.metadata_body().await.into_response();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    cache_for(&mut response, "public, max-age=300");
    response
}

/// Serves `issuer` on `listener` (with the clients' socket addresses) until the task is
/// dropped or fails.
pub async fn serve(listener: TcpListener, issuer: Issuer) -> std::io::Result<()> {
    axum::serve(
        listener,
        issuer
            .router()
            .into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
}

/// Like [`serve`], stopping gracefully when `shutdown` completes.
pub async fn serve_with_shutdown(
    listener: TcpListener,
    issuer: Issuer,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        issuer
            .router()
            .into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// An issuer serving in a background task; see [`spawn`].
#[derive(Debug)]
pub struct Running {
    /// The issuer (accounts, keys).
    pub issuer: Issuer,
    /// Its URL, e.g. `http://127.0.0.1:40123` (the issuer identifier).
    pub url: String,
    /// The bound address.
    pub addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Stops serving (gracefully), then closes the database.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
        self.issuer.close().await;
    }
}

/// Binds `config.listen` (port 0 picks a free port), sets `config.issuer` to
/// `http://{bound address}` when unset, opens the issuer and serves it in a background task.
pub async fn spawn(mut config: IssuerConfig) -> Result<Running, Error> {
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| Error::Config {
            field: "listen".into(),
            message: format!("cannot listen on {}: {e}", config.listen),
        })?;
    let addr = listener.local_addr().map_err(|e| Error::Config {
        field: "listen".into(),
        message: e.to_string(),
    })?;
    if config.issuer.is_none() {
        config.issuer = Some(format!("http://{addr}"));
    }
    let issuer = Issuer::open(config).await?;
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve_with_shutdown(listener, issuer.clone(), async move {
        let _ = stopped.await;
    }));
    Ok(Running {
        url: issuer.issuer_url().to_owned(),
        issuer,
        addr,
        stop,
        task,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn debug_shows_no_secrets() {
        let mut config = IssuerConfig::new("http://127.0.0.1:1");
        config.db = ":memory:".into();
        config.admin_token = Some("an-admin-token-of-some-length".into());
        let issuer = Issuer::open(config.clone()).await.unwrap();
        let created = issuer
            .accounts()
            .create(accounts::NewAccount::new("dbg"))
            .await
            .unwrap();
        let debug = format!("{issuer:?} {config:?} {created:?}");
        assert!(!debug.contains("an-admin-token"), "{debug}");
        assert!(
            !debug.contains(created.client_secret.expose_secret()),
            "{debug}"
        );
        assert!(!debug.contains("argon2"), "{debug}");
        assert!(debug.contains("admin_api: true"), "{debug}");
    }

    #[tokio::test]
    async fn open_requires_an_issuer_url_and_a_reachable_database() {
        let mut config = IssuerConfig {
            db: ":memory:".into(),
            ..IssuerConfig::default()
        };
        let err = Issuer::open(config.clone()).await.unwrap_err().to_string();
        assert!(err.contains("`issuer`"), "{err}");
        config.issuer = Some("http://127.0.0.1:1".into());
        // Nothing listens on port 1: the error names the setting, never the password.
        config.db = "postgres://issuer:hunter2@127.0.0.1:1/issuer".into();
        let err = Issuer::open(config.clone()).await.unwrap_err().to_string();
        assert!(err.contains("S2S_ISSUER_KEY_ENCRYPTION_KEY"), "{err}");
        config.key_encryption_key = Some(secrecy::SecretString::from(
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        ));
        let err = Issuer::open(config).await.unwrap_err().to_string();
        assert!(err.contains("`db`"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    /// The JWKS's `Cache-Control: max-age` is `jwks_max_age_secs` (300 unless configured).
    #[tokio::test]
    async fn the_jwks_max_age_follows_the_configuration() {
        for (configured, expected) in [
            (None, "public, max-age=300"),
            (Some(7), "public, max-age=7"),
        ] {
            let mut config = IssuerConfig {
                listen: "127.0.0.1:0".parse().unwrap(),
                db: ":memory:".into(),
                ..IssuerConfig::default()
            };
            if let Some(secs) = configured {
                config.jwks_max_age_secs = secs;
            }
            let running = spawn(config).await.unwrap();
            let response = reqwest::get(format!("{}/.well-known/jwks.json", running.url))
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            assert_eq!(response.headers()["cache-control"], expected);
            running.shutdown().await;
        }
    }

    /// `/metrics` parses as the Prometheus text format and its counters move: tokens issued,
    /// refused by AUTH code, rate limited, admin changes; `/readyz` and `/healthz` answer 200
    /// while the database does.
    #[tokio::test]
    async fn metrics_count_what_happened() {
        let mut config = IssuerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            db: ":memory:".into(),
            admin_token: Some("metrics-admin-token-0123456789".into()),
            ..IssuerConfig::default()
        };
        config.rate_limit.per_client = Some(config::Bucket {
            burst: 2,
            per_second: 1,
        });
        let running = spawn(config).await.unwrap();
        let http = reqwest::Client::new();
        let created: serde_json::Value = http
            .post(format!("{}/admin/service-accounts", running.url))
            .bearer_auth("metrics-admin-token-0123456789")
            .json(&serde_json::json!({"name": "m", "scopes": ["a"]}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = created["clientId"].as_str().unwrap();
        let secret = created["clientSecret"].as_str().unwrap();
        let token = |secret: &str| {
            http.post(format!("{}/token", running.url))
                .basic_auth(id, Some(secret))
                .form(&[("grant_type", "client_credentials")])
                .send()
        };
        assert_eq!(token("wrong").await.unwrap().status(), 401);
        let mut statuses = Vec::new();
        for _ in 0..3 {
            statuses.push(token(secret).await.unwrap().status().as_u16());
        }
        assert_eq!(statuses, [200, 200, 429]);

        let response = http
            .get(format!("{}/metrics", running.url))
            .send()
            .await
            .unwrap();
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/plain; version=0.0.4")
        );
        let text = response.text().await.unwrap();
        let scrape =
            prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
        let value = |name: &str, code: Option<&str>| {
            let sample = scrape
                .samples
                .iter()
                .find(|s| s.metric == name && s.labels.get("code") == code)
                .unwrap_or_else(|| panic!("no {name} {code:?} in {text}"));
            match sample.value {
                prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) => v,
                ref other => panic!("{name}: {other:?}"),
            }
        };
        assert_eq!(value("s2s_issuer_tokens_issued_total", None), 2.0);
        assert_eq!(
            value("s2s_issuer_tokens_refused_total", Some("AUTH_101")),
            1.0
        );
        assert_eq!(
            value("s2s_issuer_tokens_refused_total", Some("AUTH_106")),
            1.0
        );
        assert_eq!(
            value("s2s_issuer_tokens_refused_total", Some("AUTH_103")),
            0.0
        );
        assert_eq!(value("s2s_issuer_rate_limited_total", None), 1.0);
        assert_eq!(value("s2s_issuer_admin_changes_total", None), 1.0);
        assert_eq!(
            value("s2s_issuer_tokens_issued_from_memory_total", None),
            0.0
        );
        assert_eq!(value("s2s_issuer_database_up", None), 1.0);
        assert!(!text.contains(id), "no client id in the metrics");
        for probe in ["/readyz", "/healthz"] {
            let status = http
                .get(format!("{}{probe}", running.url))
                .send()
                .await
                .unwrap()
                .status();
            assert_eq!(status, 200, "{probe}");
        }
        running.shutdown().await;
    }
}
