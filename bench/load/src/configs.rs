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
use s2s_auth::{Issuer, Verifier, VerifyLayer, verify::DEFAULT_TOKEN_CACHE_ENTRIES};
use serde::Deserialize;
use serde_json::Value;
use tokio::net::TcpListener;
use tower::ServiceBuilder;

use crate::tokens::{AUDIENCE, ISSUER, SigningKey};

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
}

/// The id of the baseline every ratio is taken against.
pub const NO_AUTH: &str = "no-auth";

/// Every configuration, in run order.
pub fn all() -> Vec<Config> {
    use Algorithm::{ES256, RS256};
    let c = |id, auth, alg, tokens, about| Config {
        id,
        auth,
        alg,
        tokens,
        about,
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
    ]
}

/// The configurations whose id contains one of `filters` (all when empty), always with the
/// baseline.
pub fn select(filters: &[String]) -> Vec<Config> {
    all()
        .into_iter()
        .filter(|c| {
            c.id == NO_AUTH || filters.is_empty() || filters.iter().any(|f| c.id.contains(f))
        })
        .collect()
}

/// A running hello service.
pub struct Server {
    pub url: String,
    /// The verifier behind a `VerifyLayer`, for its cache counters.
    pub verifier: Option<Verifier>,
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

/// Starts the hello service of `config`; `key` is the key of the config's algorithm.
pub async fn start(config: &Config, jwks_url: &str, key: Option<&SigningKey>) -> Server {
    let mut verifier = None;
    let router = match config.auth {
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
            hello().layer(VerifyLayer::new(v))
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
    Server {
        url: serve(router).await,
        verifier,
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
