//! [`TestIssuer`]: the real `s2s-issuer` on `127.0.0.1:0`, in memory, with faults on demand.

use std::{
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::{Duration, SystemTime},
};

use axum::middleware;
use s2s_issuer::{Clock, Issuer, IssuerConfig, KeyRotation, SigningAlg, accounts::NewAccount};
use secrecy::ExposeSecret as _;
use serde_json::Value;
use tokio::net::TcpListener;

use crate::{
    faults::{self, Endpoint, Fault, Faults},
    keys,
    server::Server,
};

/// A service account of a [`TestIssuer`], with its secret.
#[derive(Clone)]
pub struct TestAccount {
    /// The `client_id`.
    pub client_id: String,
    /// The client secret (shown by the issuer this once).
    pub client_secret: String,
    /// The scopes it may be granted.
    pub scopes: Vec<String>,
}

impl std::fmt::Debug for TestAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestAccount")
            .field("client_id", &self.client_id)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

/// Settings of a [`TestIssuer`] before it starts; see [`TestIssuer::builder`].
#[derive(Debug)]
#[must_use]
pub struct TestIssuerBuilder {
    config: IssuerConfig,
}

impl TestIssuerBuilder {
    /// The `aud` of tokens whose request names none (default `test-api`).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.config.default_audience = Some(audience.into());
        self
    }

    /// How long tokens from the token endpoint live (default the issuer's, 1800 s).
    pub fn token_lifetime(mut self, lifetime: Duration) -> Self {
        self.config.token_lifetime_secs = lifetime.as_secs();
        self
    }

    /// Signs with RS256 (RSA 2048) instead of ES256.
    pub fn rs256(mut self) -> Self {
        self.config.signing_alg = SigningAlg::RS256;
        self
    }

    /// Any other issuer setting (the admin token, rate limits, ...). `listen`, `issuer`, `db`
    /// and `clock` are the kit's and are overwritten.
    pub fn configure(mut self, change: impl FnOnce(&mut IssuerConfig)) -> Self {
        change(&mut self.config);
        self
    }

    /// Binds `127.0.0.1:0`, opens the issuer in memory and serves it behind the fault switch.
    ///
    /// # Panics
    ///
    /// When the issuer does not start (a configuration [`configure`](Self::configure) broke,
    /// no free port): a test helper fails loudly.
    pub async fn start(self) -> TestIssuer {
        let mut config = self.config;
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        let skew = Arc::new(AtomicI64::new(0));
        let offset = skew.clone();
        config.clock =
            Clock::from_fn(move || skewed(SystemTime::now(), offset.load(Ordering::SeqCst)));
        config.issuer = Some(url.clone());
        config.db = ":memory:".into();
        let issuer = Issuer::open(config)
            .await
            .unwrap_or_else(|e| panic!("the test issuer does not start: {e}"));
        let faults = Arc::new(Faults::default());
        let router = issuer.router().layer(middleware::from_fn_with_state(
            faults.clone(),
            faults::inject,
        ));
        let server = Server::on(listener, router);
        TestIssuer {
            issuer,
            url,
            faults,
            skew,
            _server: server,
        }
    }
}

fn skewed(now: SystemTime, secs: i64) -> SystemTime {
    let by = Duration::from_secs(secs.unsigned_abs());
    if secs >= 0 { now + by } else { now - by }
}

/// The real authorization server (`s2s-issuer`) on `127.0.0.1:0`, in memory, behind a fault
/// switch. Dropping it closes the listener and every open connection.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use s2s_auth_testkit::{Endpoint, Fault, TestIssuer};
///
/// let issuer = TestIssuer::start().await;
/// let account = issuer.account("billing", &["orders:read"]).await;
/// // ... point the client under test at `issuer.url()` with `account.client_id` and
/// // `account.client_secret` ...
/// issuer.set_fault(Endpoint::Token, Fault::RateLimited { retry_after: 2 });
/// // ... and see what it does when the token endpoint says 429 ...
/// issuer.clear_faults();
/// assert_eq!(issuer.requests(Endpoint::Token), 0);
/// # let _ = account;
/// # }
/// ```
///
/// Unlike the product's defaults, the kit's issuer has no per-client or per-address rate limit
/// (tests call it in bursts; [`Fault::RateLimited`] gives a 429 when a test wants one) and
/// hashes secrets at a test strength (argon2id with 8 KiB, one pass); change either with
/// [`TestIssuerBuilder::configure`].
#[derive(Debug)]
pub struct TestIssuer {
    issuer: Issuer,
    url: String,
    faults: Arc<Faults>,
    skew: Arc<AtomicI64>,
    _server: Server,
}

impl TestIssuer {
    /// Starts an issuer with the defaults: ES256, audience `test-api`.
    pub async fn start() -> TestIssuer {
        TestIssuer::builder().start().await
    }

    /// Settings first: `TestIssuer::builder().audience("orders-api").start().await`.
    pub fn builder() -> TestIssuerBuilder {
        let mut config = IssuerConfig::default();
        config.default_audience = Some("test-api".into());
        config.rate_limit.per_client = None;
        config.rate_limit.per_ip = None;
        config.secret_hash.memory_kib = 8;
        config.secret_hash.iterations = 1;
        TestIssuerBuilder { config }
    }

    /// The issuer identifier, `http://127.0.0.1:PORT`: what discovery and the tokens' `iss` say.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The token endpoint.
    pub fn token_url(&self) -> String {
        format!("{}/token", self.url)
    }

    /// The JWK set.
    pub fn jwks_url(&self) -> String {
        format!("{}/.well-known/jwks.json", self.url)
    }

    /// The default audience of issued tokens.
    pub fn audience(&self) -> &str {
        self.issuer.default_audience()
    }

    /// The issuer itself: accounts, keys, everything `s2s-issuer` offers.
    pub fn issuer(&self) -> &Issuer {
        &self.issuer
    }

    /// Creates a service account that may be granted `scopes`.
    ///
    /// # Panics
    ///
    /// When the issuer refuses it (a name used twice, an invalid scope).
    pub async fn account(&self, name: &str, scopes: &[&str]) -> TestAccount {
        let new = scopes
            .iter()
            .fold(NewAccount::new(name), |new, scope| new.scope(*scope));
        let created = self
            .issuer
            .accounts()
            .create(new)
            .await
            .unwrap_or_else(|e| panic!("the test issuer refuses account `{name}`: {e}"));
        TestAccount {
            client_id: created.account.client_id.clone(),
            client_secret: created.client_secret.expose_secret().to_owned(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    /// A token signed by the issuer's active key with `claims` over the defaults
    /// ([`keys::token_claims`]: `iss` = the issuer, `aud` = the default audience, valid for
    /// 300 s from now by the issuer's, possibly skewed, clock). A member of `claims` replaces
    /// the default; `null` removes it.
    ///
    /// # Panics
    ///
    /// When `claims` is not a JSON object.
    pub fn token(&self, claims: Value) -> String {
        let now = skewed(SystemTime::now(), self.skew.load(Ordering::SeqCst))
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let defaults = keys::token_claims(self.issuer.token_issuer(), self.audience(), now);
        self.issuer
            .sign_claims(&keys::merge(defaults, claims))
            .unwrap_or_else(|e| panic!("the test issuer cannot sign: {e}"))
    }

    /// Rotates the signing key: a new key signs from now on, the old one stays published
    /// until its tokens have expired.
    pub async fn rotate_keys(&self) -> KeyRotation {
        self.issuer
            .rotate_signing_key()
            .await
            .unwrap_or_else(|e| panic!("the test issuer cannot rotate its key: {e}"))
    }

    /// A verifier of this issuer's tokens for the default audience, finding the keys through
    /// discovery (over the socket, so faults apply to it too).
    ///
    /// # Panics
    ///
    /// When s2s-auth refuses the configuration (it does not for a loopback issuer).
    pub fn verifier(&self) -> s2s_auth::Verifier {
        s2s_auth::Verifier::builder()
            .issuer(s2s_auth::Issuer::discover(&self.url))
            .audience(self.audience())
            .build()
            .expect("a verifier of the test issuer")
    }

    /// From now on, requests to `endpoint` meet `fault` (replacing the earlier rules for that
    /// same endpoint), until [`clear_faults`](Self::clear_faults).
    pub fn set_fault(&self, endpoint: Endpoint, fault: Fault) {
        self.faults.set(endpoint, fault);
    }

    /// The next `n` requests to `endpoint` meet `fault`, then the issuer answers again (a 429
    /// once, then a token, say). Rules set earlier are asked first.
    pub fn fail_next(&self, endpoint: Endpoint, fault: Fault, n: usize) {
        if n > 0 {
            self.faults.add(endpoint, fault, Some(n));
        }
    }

    /// Removes every fault; requests held by [`Fault::Hang`] are served.
    pub fn clear_faults(&self) {
        self.faults.clear();
    }

    /// Sets the issuer's clock `secs` seconds ahead of the system clock (behind when
    /// negative): the `iat`, `nbf` and `exp` of its tokens move with it.
    pub fn set_clock_skew(&self, secs: i64) {
        self.skew.store(secs, Ordering::SeqCst);
    }

    /// Requests received at `endpoint` so far (counted on arrival, faulted ones included);
    /// [`Endpoint::Any`]: all requests.
    pub fn requests(&self, endpoint: Endpoint) -> usize {
        self.faults.count(endpoint)
    }
}
