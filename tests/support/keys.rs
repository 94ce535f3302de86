//! Signing keys, tokens and a controllable JWKS server for the verification suites.
//!
//! ```no_run
//! use jsonwebtoken::Algorithm;
//! use s2s_tests::keys::{self, KeyServer, TestKey};
//!
//! # async fn demo() {
//! let key = TestKey::generate(Algorithm::ES256, "k1");
//! let server = KeyServer::start().await;
//! server.set_keys(&[&key]);
//! let token = key.sign(&keys::claims(&server.issuer(), "orders-api"));
//! // … verify `token` against `server.jwks_url()` …
//! assert_eq!(server.jwks_hits(), 0);
//! # }
//! ```
//!
//! The keys and tokens are `s2s_auth_testkit::keys`, re-exported: [`TestKey`] generates keys at
//! test time (nothing is checked in) and signs whatever the test asks for: well-formed tokens,
//! hand-written headers, raw (even invalid or duplicate-key) JSON. [`weak_rsa_jwk`] publishes an
//! RSA key below 2048 bits (a random odd modulus, no private key) that a verifier must skip when
//! it loads the set.
//!
//! [`KeyServer`] is a real HTTP/1.1 server on `127.0.0.1` (the kit's `Server`) serving `/jwks.json` and the two
//! discovery documents (`/.well-known/openid-configuration`, RFC 8414
//! `/.well-known/oauth-authorization-server`). Tests swap its keys, inject faults with
//! [`Behavior`] and read its request counters. Dropping it closes the listener *and* every open
//! connection (including pooled keep-alive ones and requests left hanging by
//! [`Behavior::Hang`]), so "the key server went away" really looks like that to a client.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::{Request, State},
    http::{HeaderValue, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
};
use futures_util::stream;
pub use s2s_auth_testkit::keys::*;
use s2s_auth_testkit::server::Server;
use serde_json::{Value, json};

/// The JOSE name of `alg` (`"ES256"`, `"EdDSA"`, ...).
pub fn alg_name(alg: jsonwebtoken::Algorithm) -> String {
    serde_json::to_value(alg)
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned()
}

// ---------------------------------------------------------------------------------------------
// The key server
// ---------------------------------------------------------------------------------------------

/// How the key server answers JWKS (and discovery) requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Behavior {
    /// 200 with the document as `application/json` (and the configured `Cache-Control`).
    Normal,
    /// This status with a small JSON body `{"error": "injected", "status": code}`.
    Status(u16),
    /// Accepts the request (and counts it) but never answers; the connection stays open until
    /// the client gives up or the server is dropped.
    Hang,
    /// 200 `text/html` error page.
    Html,
    /// 200 `application/json` body of exactly that many bytes, streamed in 64 KiB chunks, with
    /// `Content-Length`. The body is the real document followed by whitespace padding, so it is
    /// valid JSON carrying the current keys: only a size limit makes a client reject it. (When
    /// the size is below the document's length, the document is truncated.)
    Huge(usize),
    /// Same body as [`Behavior::Huge`], sent chunked without `Content-Length`.
    HugeChunked(usize),
    /// 200 `application/json` whose body is not valid JSON (`{"keys": [`).
    InvalidJson,
    /// 200 advertising `Content-Length: 1000`, sends the first 10 bytes of the document, then
    /// closes the connection.
    CloseMidBody,
}

/// A real JWKS + discovery HTTP/1.1 server on `127.0.0.1:0` (axum + hyper + tokio), fully
/// controllable and counting requests. Dropping it closes the listener and all connections.
/// (`Debug` shows its state: the public keys it serves, its behaviour and its counters.)
#[derive(Debug)]
pub struct KeyServer {
    url: String,
    state: Arc<ServerState>,
    _server: Server,
}

#[derive(Debug)]
struct ServerState {
    url: String,
    jwks: Mutex<Value>,
    behavior: Mutex<Behavior>,
    cache_control: Mutex<Option<String>>,
    metadata_issuer: Mutex<Option<String>>,
    oidc_discovery: AtomicBool,
    jwks_hits: AtomicUsize,
    discovery_hits: AtomicUsize,
    requests: AtomicUsize,
}

const JWKS_PATH: &str = "/jwks.json";
const OIDC_PATH: &str = "/.well-known/openid-configuration";
const RFC8414_PATH: &str = "/.well-known/oauth-authorization-server";

impl KeyServer {
    /// Binds `127.0.0.1:0` and starts serving on the current tokio runtime: an empty
    /// `{"keys": []}` with `Cache-Control: max-age=300`, both discovery documents enabled.
    pub async fn start() -> KeyServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        let state = Arc::new(ServerState {
            url: url.clone(),
            jwks: Mutex::new(jwks(&[])),
            behavior: Mutex::new(Behavior::Normal),
            cache_control: Mutex::new(Some("max-age=300".to_owned())),
            metadata_issuer: Mutex::new(None),
            oidc_discovery: AtomicBool::new(true),
            jwks_hits: AtomicUsize::new(0),
            discovery_hits: AtomicUsize::new(0),
            requests: AtomicUsize::new(0),
        });
        let router = Router::new()
            .route(JWKS_PATH, get(jwks_handler))
            .route(OIDC_PATH, get(oidc_handler))
            .route(RFC8414_PATH, get(rfc8414_handler))
            .layer(middleware::from_fn_with_state(state.clone(), count))
            .with_state(state.clone());
        let server = Server::on(listener, router);
        KeyServer {
            url,
            state,
            _server: server,
        }
    }

    /// [`KeyServer::start`], then serving these keys ([`KeyServer::set_keys`]).
    pub async fn serving(keys: &[&TestKey]) -> KeyServer {
        let server = KeyServer::start().await;
        server.set_keys(keys);
        server
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The issuer identifier: the same as [`KeyServer::url`].
    pub fn issuer(&self) -> String {
        self.url.clone()
    }

    /// [`KeyServer::url`] + `/jwks.json`.
    pub fn jwks_url(&self) -> String {
        format!("{}{JWKS_PATH}", self.url)
    }

    /// Replaces the served JWKS document (any JSON, valid JWKS or not).
    pub fn set_jwks(&self, jwks: Value) {
        *self.state.jwks.lock().unwrap() = jwks;
    }

    /// Serves `{"keys": [...]}` of these keys' [`TestKey::jwk`].
    pub fn set_keys(&self, keys: &[&TestKey]) {
        self.set_jwks(jwks(&keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()));
    }

    /// How `/jwks.json` and both discovery paths answer from now on.
    ///
    /// # Panics
    ///
    /// On [`Behavior::Status`] with a code outside 100..=999.
    pub fn set_behavior(&self, b: Behavior) {
        if let Behavior::Status(code) = b {
            StatusCode::from_u16(code).expect("Behavior::Status: invalid status code");
        }
        *self.state.behavior.lock().unwrap() = b;
    }

    /// The `Cache-Control` header of JWKS and discovery answers; `None` sends none.
    pub fn set_cache_control(&self, v: Option<&str>) {
        *self.state.cache_control.lock().unwrap() = v.map(str::to_owned);
    }

    /// The `issuer` published in the discovery metadata (default: [`KeyServer::issuer`]).
    pub fn set_metadata_issuer(&self, issuer: &str) {
        *self.state.metadata_issuer.lock().unwrap() = Some(issuer.to_owned());
    }

    /// When false, `/.well-known/openid-configuration` is 404 and only RFC 8414
    /// `/.well-known/oauth-authorization-server` works (default true: both work).
    pub fn set_oidc_discovery(&self, enabled: bool) {
        self.state.oidc_discovery.store(enabled, Ordering::SeqCst);
    }

    /// Number of `GET /jwks.json` received, counted on arrival (before answering, so including
    /// [`Behavior::Hang`]).
    pub fn jwks_hits(&self) -> usize {
        self.state.jwks_hits.load(Ordering::SeqCst)
    }

    /// Number of requests to either discovery path (including a disabled OIDC path's 404s).
    pub fn discovery_hits(&self) -> usize {
        self.state.discovery_hits.load(Ordering::SeqCst)
    }

    /// Number of requests of any method and path.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }
}

/// Counts every request, of any method and path.
async fn count(State(state): State<Arc<ServerState>>, request: Request, next: Next) -> Response {
    state.requests.fetch_add(1, Ordering::SeqCst);
    next.run(request).await
}

async fn jwks_handler(State(state): State<Arc<ServerState>>) -> Response {
    state.jwks_hits.fetch_add(1, Ordering::SeqCst);
    let doc = state.jwks.lock().unwrap().clone();
    respond(&state, doc).await
}

async fn oidc_handler(State(state): State<Arc<ServerState>>) -> Response {
    state.discovery_hits.fetch_add(1, Ordering::SeqCst);
    if !state.oidc_discovery.load(Ordering::SeqCst) {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({ "error": "not_found" })),
        )
            .into_response();
    }
    let doc = metadata(&state);
    respond(&state, doc).await
}

async fn rfc8414_handler(State(state): State<Arc<ServerState>>) -> Response {
    state.discovery_hits.fetch_add(1, Ordering::SeqCst);
    let doc = metadata(&state);
    respond(&state, doc).await
}

fn metadata(state: &ServerState) -> Value {
    let issuer = state
        .metadata_issuer
        .lock()
        .unwrap()
        .clone()
        .unwrap_or_else(|| state.url.clone());
    json!({
        "issuer": issuer,
        "jwks_uri": format!("{}{JWKS_PATH}", state.url),
        "token_endpoint": format!("{}/token", state.url),
        "grant_types_supported": ["client_credentials"],
    })
}

const CHUNK: usize = 64 * 1024;

async fn respond(state: &ServerState, doc: Value) -> Response {
    let behavior = state.behavior.lock().unwrap().clone();
    let cache_control = state.cache_control.lock().unwrap().clone();
    let json = serde_json::to_vec(&doc).expect("serialize document");
    let mut response = match behavior {
        Behavior::Normal => json_response(StatusCode::OK, Body::from(json)),
        Behavior::Status(code) => {
            let status = StatusCode::from_u16(code).expect("valid status code");
            let body = json!({ "error": "injected", "status": code }).to_string();
            json_response(status, Body::from(body))
        }
        Behavior::Hang => std::future::pending().await,
        Behavior::Html => {
            let mut r = Response::new(Body::from(
                "<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\
                 <body><h1>Bad Gateway</h1><p>The upstream is unavailable.</p></body></html>\n",
            ));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            r
        }
        Behavior::Huge(size) => {
            let mut r = json_response(StatusCode::OK, padded_body(json, size));
            r.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(size));
            r
        }
        Behavior::HugeChunked(size) => json_response(StatusCode::OK, padded_body(json, size)),
        Behavior::InvalidJson => json_response(StatusCode::OK, Body::from(r#"{"keys": ["#)),
        Behavior::CloseMidBody => {
            let mut first = json;
            first.resize(10, b' ');
            let body = stream::unfold(0u8, move |step| {
                let first = first.clone();
                async move {
                    match step {
                        0 => Some((Ok(Bytes::from(first)), 1)),
                        1 => {
                            // Let hyper flush headers and the 10 bytes before failing the body.
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            Some((Err(std::io::Error::other("injected: close mid-body")), 2))
                        }
                        _ => None,
                    }
                }
            });
            let mut r = json_response(StatusCode::OK, Body::from_stream(body));
            r.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(1000));
            r
        }
    };
    if let Some(v) = cache_control.and_then(|v| HeaderValue::from_str(&v).ok()) {
        response.headers_mut().insert(header::CACHE_CONTROL, v);
    }
    response
}

fn json_response(status: StatusCode, body: Body) -> Response {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// `doc` then spaces, exactly `size` bytes, streamed in [`CHUNK`]-sized pieces.
fn padded_body(mut doc: Vec<u8>, size: usize) -> Body {
    doc.truncate(size);
    let head = Bytes::from(doc);
    let padding = Bytes::from(vec![b' '; CHUNK]);
    let mut rest = size - head.len();
    let mut chunks = vec![head];
    while rest > 0 {
        let n = rest.min(CHUNK);
        chunks.push(padding.slice(..n));
        rest -= n;
    }
    Body::from_stream(stream::iter(
        chunks.into_iter().map(Ok::<_, std::io::Error>),
    ))
}
