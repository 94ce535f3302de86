//! The configurations under load: the same axum hello service (GET / → "hello"), served the
//! same way, behind each kind of authentication; and the local JWKS endpoint they share.

use std::sync::Arc;

use axum::{
    Router,
    extract::{Request, State},
    http::{HeaderValue, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
    serve::ListenerExt as _,
};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::Jwk};
use s2s_auth::{
    Issuer, RequireScopeLayer, Verifier, VerifyLayer, verify::DEFAULT_TOKEN_CACHE_ENTRIES,
};
use serde::Deserialize;
use serde_json::Value;
use tokio::net::TcpListener;
use tower::ServiceBuilder;

use crate::{
    services::{self, ChildGuard, SCOPE},
    tokens::{AUDIENCE, ISSUER, SigningKey},
};

/// What checks the bearer token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Auth {
    /// Nothing: the baseline.
    None,
    /// `s2s_auth::VerifyLayer`, keys from the local JWKS endpoint; `cache` is the
    /// validated-token cache at its default bound, or off (`.token_cache(0)`).
    Verify { cache: bool },
    /// An axum middleware calling `jsonwebtoken::decode` with a `DecodingKey` made from the JWK.
    HandWritten,
    /// `jwt-authorizer` in JWKS mode (`from_jwks_url`) against the same endpoint.
    JwtAuthorizer,
    /// `s2s-gateway` (VerifyLayer + RequireScopeLayer, then proxying) in front of the no-auth
    /// hello service.
    Gateway,
    /// Debian's nginx as a plain reverse proxy (no authentication) in front of the same.
    Nginx,
    /// `s2s-issuer`'s token endpoint (`client_secret_basic`, form dialect).
    S2sIssuer,
    /// panva's `oidc-provider` 8 token endpoint (`client_secret_basic`, ES256 JWT tokens).
    OidcProvider,
}

impl Auth {
    /// Whether the server runs in this process (its CPU time is this process's; else its
    /// process tree's).
    pub fn in_process(self) -> bool {
        !matches!(self, Auth::Nginx | Auth::OidcProvider)
    }

    /// Whether it proxies to the hello upstream in this process (whose CPU time is then this
    /// process's during the run).
    pub fn upstream_in_process(self) -> bool {
        matches!(self, Auth::Nginx | Auth::Gateway)
    }

    /// Whether the load is token requests (`POST /token`) rather than `GET /`.
    pub fn token_endpoint(self) -> bool {
        matches!(self, Auth::S2sIssuer | Auth::OidcProvider)
    }
}

/// Which tokens the load generator sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tokens {
    /// No `Authorization` header.
    None,
    /// One token, repeated by every connection.
    Hot,
    /// A token never sent before on every request (generated before each run).
    Fresh,
    /// The next token of a fixed pool of distinct tokens, cycled. Cold for a verifier without a
    /// validated-token cache (each request is a full verification), which is what it is for.
    Pool,
    /// Token endpoints: one client's `Basic` credentials, repeated.
    Client,
    /// Token endpoints: a client never seen before on every request (accounts created before
    /// each run).
    NewClients,
}

/// One configuration of the table.
#[derive(Clone, Debug)]
pub struct Config {
    /// Stable name, also what `--configs` matches.
    pub id: &'static str,
    pub auth: Auth,
    pub alg: Option<Algorithm>,
    pub tokens: Tokens,
    /// One line for the "how to read" list.
    pub about: &'static str,
    /// Connections of the load generator when not `--connections`.
    pub connections: Option<usize>,
}

/// The id of the baseline every ratio is taken against.
pub const NO_AUTH: &str = "no-auth";

/// Every configuration, in run order.
pub fn all() -> Vec<Config> {
    use Algorithm::{ES256, EdDSA, RS256};
    let c = |id, auth, alg, tokens, about| Config {
        id,
        auth,
        alg,
        tokens,
        about,
        connections: None,
    };
    vec![
        c(
            NO_AUTH,
            Auth::None,
            None,
            Tokens::None,
            "no authentication: the baseline",
        ),
        c(
            "verify-hot-es256",
            Auth::Verify { cache: true },
            Some(ES256),
            Tokens::Hot,
            "VerifyLayer, one token repeated: every request a validated-token cache hit",
        ),
        c(
            "verify-cold-es256",
            Auth::Verify { cache: true },
            Some(ES256),
            Tokens::Fresh,
            "VerifyLayer, cache on (default bound), a new token on every request: every request \
             a miss, a full verification and a cache insert (with eviction once full)",
        ),
        c(
            "verify-cold-nocache-es256",
            Auth::Verify { cache: false },
            Some(ES256),
            Tokens::Pool,
            "VerifyLayer with `.token_cache(0)`: every request a full verification",
        ),
        c(
            "handwritten-hot-es256",
            Auth::HandWritten,
            Some(ES256),
            Tokens::Hot,
            "axum middleware, `jsonwebtoken::decode` per request, one token repeated (no cache, \
             so every request a full verification)",
        ),
        c(
            "handwritten-cold-es256",
            Auth::HandWritten,
            Some(ES256),
            Tokens::Pool,
            "the same middleware over the token pool",
        ),
        c(
            "jwt-authorizer-hot-es256",
            Auth::JwtAuthorizer,
            Some(ES256),
            Tokens::Hot,
            "jwt-authorizer, JWKS mode, one token repeated (no cache: full verification)",
        ),
        c(
            "jwt-authorizer-cold-es256",
            Auth::JwtAuthorizer,
            Some(ES256),
            Tokens::Pool,
            "jwt-authorizer, JWKS mode, over the token pool",
        ),
        c(
            "verify-cold-nocache-rs256",
            Auth::Verify { cache: false },
            Some(RS256),
            Tokens::Pool,
            "VerifyLayer with `.token_cache(0)`, RS256 token pool",
        ),
        c(
            "handwritten-cold-rs256",
            Auth::HandWritten,
            Some(RS256),
            Tokens::Pool,
            "hand-written `jsonwebtoken::decode`, RS256 token pool",
        ),
        c(
            "jwt-authorizer-cold-rs256",
            Auth::JwtAuthorizer,
            Some(RS256),
            Tokens::Pool,
            "jwt-authorizer, JWKS mode, RS256 token pool",
        ),
        c(
            "verify-hot-eddsa",
            Auth::Verify { cache: true },
            Some(EdDSA),
            Tokens::Hot,
            "VerifyLayer, one EdDSA (Ed25519) token repeated: every request a cache hit",
        ),
        c(
            "verify-cold-nocache-eddsa",
            Auth::Verify { cache: false },
            Some(EdDSA),
            Tokens::Pool,
            "VerifyLayer with `.token_cache(0)`, EdDSA (Ed25519) token pool",
        ),
        c(
            "handwritten-cold-eddsa",
            Auth::HandWritten,
            Some(EdDSA),
            Tokens::Pool,
            "hand-written `jsonwebtoken::decode` (11, aws-lc-rs), EdDSA (Ed25519) token pool",
        ),
        c(
            "jwt-authorizer-cold-eddsa",
            Auth::JwtAuthorizer,
            Some(EdDSA),
            Tokens::Pool,
            "jwt-authorizer, JWKS mode (an OKP key), EdDSA (Ed25519) token pool",
        ),
        c(
            "gateway-hot-es256",
            Auth::Gateway,
            Some(ES256),
            Tokens::Hot,
            "s2s-gateway (token verified, scope required, identity headers added) proxying to \
             the no-auth hello service; one token repeated",
        ),
        c(
            NGINX,
            Auth::Nginx,
            None,
            Tokens::None,
            "nginx (Debian) as a plain reverse proxy without authentication to the same \
             no-auth hello service: `worker_processes auto`, upstream keep-alive",
        ),
        c(
            ISSUER_REPEAT,
            Auth::S2sIssuer,
            None,
            Tokens::Client,
            "s2s-issuer `POST /token`, one client repeated (`client_secret_basic`; its \
             verified secret remembered, so no argon2id after the first request), ES256",
        ),
        Config {
            connections: Some(8),
            ..c(
                "issuer-first-time",
                Auth::S2sIssuer,
                None,
                Tokens::NewClients,
                "s2s-issuer `POST /token`, a client never seen before on every request: \
                 argon2id (19 MiB, 2 passes, run twice per check) on each; 8 connections \
                 (its queue of secret checks holds 32)",
            )
        },
        c(
            OIDC_PROVIDER,
            Auth::OidcProvider,
            None,
            Tokens::Client,
            "panva's oidc-provider 8 (Node.js) `POST /token`, one client repeated \
             (`client_secret_basic`), ES256 JWT access tokens (resourceIndicators)",
        ),
    ]
}

/// The reverse-proxy baseline of the gateway.
pub const NGINX: &str = "nginx-proxy";
/// The issuer's repeat client, and the token endpoint it is compared with.
pub const ISSUER_REPEAT: &str = "issuer-repeat-client";
pub const OIDC_PROVIDER: &str = "oidc-provider-repeat-client";

/// The configurations whose id contains one of `filters` (all when empty), always with the
/// baseline.
pub fn select(filters: &[String]) -> Vec<Config> {
    all()
        .into_iter()
        .filter(|c| c.id == NO_AUTH || selected(filters, c.id))
        .collect()
}

/// Whether `--configs` selects `id` (it contains one of `filters`, or there are none).
pub fn selected(filters: &[String], id: &str) -> bool {
    filters.is_empty() || filters.iter().any(|f| id.contains(f.as_str()))
}

/// A running hello service.
pub struct Server {
    pub url: String,
    /// The verifier behind a `VerifyLayer`, for its cache counters.
    pub verifier: Option<Verifier>,
    /// The `Authorization` values to send when the service makes its own (token endpoints).
    pub headers: Option<Vec<String>>,
    /// The issuer, to create first-time clients before each run.
    pub issuer: Option<services::IssuerService>,
    /// The server's process, when it is not this one.
    pub _child: Option<ChildGuard>,
}

impl Server {
    /// The id of the server's process, when it is not this one.
    pub fn pid(&self) -> Option<u32> {
        self._child.as_ref().and_then(ChildGuard::pid)
    }
}

impl Server {
    fn local(url: String, verifier: Option<Verifier>) -> Server {
        Server {
            url,
            verifier,
            headers: None,
            issuer: None,
            _child: None,
        }
    }
}

/// Serves `router` on 127.0.0.1:0 (HTTP/1.1, `TCP_NODELAY`), the same way for every
/// configuration. Returns `http://127.0.0.1:port`.
async fn serve(router: Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("local address"));
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move { axum::serve(listener, router).await.expect("serve") });
    url
}

/// Serves `jwks` at `/jwks.json`; returns its URL.
pub async fn serve_jwks(jwks: Value) -> String {
    let body = Arc::new(serde_json::to_vec(&jwks).expect("JWKS JSON"));
    let router = Router::new().route(
        "/jwks.json",
        get(move || {
            let body = body.clone();
            async move {
                (
                    [
                        (header::CONTENT_TYPE, "application/json"),
                        (header::CACHE_CONTROL, "max-age=3600"),
                    ],
                    body.as_ref().clone(),
                )
            }
        }),
    );
    format!("{}/jwks.json", serve(router).await)
}

fn hello() -> Router {
    Router::new().route("/", get(|| async { "hello" }))
}

/// Starts the hello service of `config`; `key` is the key of the config's algorithm,
/// `upstream` the URL of the no-auth service (for the proxies), `dir` a scratch directory.
pub async fn start(
    config: &Config,
    jwks_url: &str,
    key: Option<&SigningKey>,
    upstream: &str,
    dir: &std::path::Path,
) -> Server {
    let mut verifier = None;
    let router = match config.auth {
        Auth::Gateway => {
            return Server::local(services::start_gateway(upstream, jwks_url).await, None);
        }
        Auth::Nginx => {
            let (url, child) = services::start_nginx(upstream, &dir.join("nginx")).await;
            return Server {
                _child: Some(child),
                ..Server::local(url, None)
            };
        }
        Auth::OidcProvider => {
            let (url, child) = services::start_oidc_provider(&services::oidc_provider_dir()).await;
            return Server {
                headers: Some(vec![services::oidc_basic()]),
                _child: Some(child),
                ..Server::local(url, None)
            };
        }
        Auth::S2sIssuer => {
            let issuer = services::IssuerService::start().await;
            let headers = match config.tokens {
                Tokens::Client => {
                    let headers = issuer.basic_headers(1, 1).await;
                    services::request_token(issuer.url(), &headers[0]).await;
                    Some(headers)
                }
                _ => None,
            };
            return Server {
                headers,
                issuer: Some(issuer),
                ..Server::local(String::new(), None)
            }
            .with_issuer_url();
        }
        Auth::None => hello(),
        Auth::Verify { cache } => {
            let v = Verifier::builder()
                .issuer(Issuer::jwks(ISSUER, jwks_url))
                .audience(AUDIENCE)
                .token_cache(if cache {
                    DEFAULT_TOKEN_CACHE_ENTRIES
                } else {
                    0
                })
                .build()
                .expect("verifier");
            v.load_keys().await.expect("load the JWKS");
            verifier = Some(v.clone());
            // As a service protects a route: the scope checked on every request too.
            hello()
                .route_layer(RequireScopeLayer::all([SCOPE]))
                .layer(VerifyLayer::new(v))
        }
        Auth::HandWritten => {
            let key = key.expect("hand-written check needs a key");
            hello().layer(middleware::from_fn_with_state(
                Arc::new(HandWritten::new(key)),
                hand_written,
            ))
        }
        Auth::JwtAuthorizer => {
            let authorizer = jwt_authorizer::JwtAuthorizer::<Claims>::from_jwks_url(jwks_url)
                .validation(
                    jwt_authorizer::Validation::new()
                        .iss(&[ISSUER])
                        .aud(&[AUDIENCE])
                        .nbf(true),
                )
                .build()
                .await
                .expect("jwt-authorizer");
            // jwt-authorizer 0.15 is written against axum 0.7: its tower layer needs the inner
            // response to be `From<AuthError>`, which axum 0.8's `Response` is not. `Adapted`
            // wraps the response on the way in and out; the checking is all jwt-authorizer's.
            hello().layer(
                ServiceBuilder::new()
                    .map_response(Adapted::into_inner)
                    .layer(jwt_authorizer::layer::AuthorizationLayer::new(vec![
                        Arc::new(authorizer),
                    ]))
                    .map_response(Adapted),
            )
        }
    };
    Server::local(serve(router).await, verifier)
}

impl Server {
    fn with_issuer_url(mut self) -> Server {
        self.url = self.issuer.as_ref().expect("issuer").url().to_owned();
        self
    }
}

/// The claims the hand-written check and jwt-authorizer deserialize (what a handler reads).
#[derive(Clone, Debug, Deserialize)]
#[allow(dead_code)] // read by handlers in real services; here only deserialized.
pub struct Claims {
    sub: String,
    client_id: Option<String>,
    scope: Option<String>,
    exp: u64,
}

/// The per-request check a service would write by hand with jsonwebtoken.
struct HandWritten {
    key: DecodingKey,
    validation: Validation,
}

impl HandWritten {
    fn new(key: &SigningKey) -> HandWritten {
        let jwk: Jwk = serde_json::from_value(key.jwk().clone()).expect("JWK");
        let mut validation = Validation::new(key.alg);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.validate_nbf = true;
        HandWritten {
            key: DecodingKey::from_jwk(&jwk).expect("decoding key"),
            validation,
        }
    }
}

async fn hand_written(
    State(check): State<Arc<HandWritten>>,
    mut request: Request,
    next: Next,
) -> Response {
    let claims = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|token| {
            jsonwebtoken::decode::<Claims>(token, &check.key, &check.validation).ok()
        });
    match claims {
        Some(data) => {
            request.extensions_mut().insert(data.claims);
            next.run(request).await
        }
        None => unauthorized(),
    }
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Bearer error="invalid_token""#),
        )],
    )
        .into_response()
}

/// An axum 0.8 response that jwt-authorizer can also build from its `AuthError`.
struct Adapted(Response);

impl Adapted {
    fn into_inner(self) -> Response {
        self.0
    }
}

impl From<jwt_authorizer::AuthError> for Adapted {
    fn from(_: jwt_authorizer::AuthError) -> Self {
        Adapted(unauthorized())
    }
}
