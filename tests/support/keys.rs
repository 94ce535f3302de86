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
//! [`TestKey`] generates keys with aws-lc-rs at test time (nothing is checked in) and signs
//! whatever the test asks for: well-formed tokens, hand-written headers, raw (even invalid or
//! duplicate-key) JSON. [`weak_rsa_jwk`] publishes an RSA key below 2048 bits (a random odd
//! modulus, no private key) that a verifier must skip when it loads the set.
//!
//! [`KeyServer`] is a real HTTP/1.1 server on `127.0.0.1` serving `/jwks.json` and the two
//! discovery documents (`/.well-known/openid-configuration`, RFC 8414
//! `/.well-known/oauth-authorization-server`). Tests swap its keys, inject faults with
//! [`Behavior`] and read its request counters. Dropping it closes the listener *and* every open
//! connection (including pooled keep-alive ones and requests left hanging by
//! [`Behavior::Hang`]), so "the key server went away" really looks like that to a client.

use std::{
    fmt,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use aws_lc_rs::{
    encoding::{AsDer, PublicKeyX509Der},
    rsa::KeySize,
    signature::{self as lc, KeyPair as _},
};
use axum::{
    Router,
    body::{Body, Bytes},
    extract::State,
    http::{HeaderValue, Request, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use base64::{
    Engine as _,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use futures_util::stream;
use hyper_util::rt::TokioIo;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};
use tokio::{net::TcpListener, task::JoinSet};
use tower_service::Service as _;

// ---------------------------------------------------------------------------------------------
// Keys and tokens
// ---------------------------------------------------------------------------------------------

/// A signing key generated at test time (with aws-lc-rs), with its public JWK.
#[derive(Clone)]
pub struct TestKey {
    /// The key id, published as the JWK's `kid` and put in the headers [`TestKey::sign`] writes.
    pub kid: String,
    /// The algorithm this key signs with (and the JWK's `alg`).
    pub alg: Algorithm,
    key: EncodingKey,
    jwk: Value,
    public_pem: String,
}

impl fmt::Debug for TestKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("jwk", &self.jwk)
            .finish_non_exhaustive()
    }
}

impl TestKey {
    /// Generates a fresh key for `alg`: RS256/RS384/RS512/PS256/PS384/PS512 (RSA 2048), ES256
    /// (P-256), ES384 (P-384), EdDSA (Ed25519).
    ///
    /// # Panics
    ///
    /// On any other algorithm (HMAC has no public key; use [`hs256_token`]).
    pub fn generate(alg: Algorithm, kid: &str) -> TestKey {
        use Algorithm::*;
        match alg {
            RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => rsa_key(alg, KeySize::Rsa2048, kid),
            ES256 => ec_key(alg, &lc::ECDSA_P256_SHA256_FIXED_SIGNING, "P-256", kid),
            ES384 => ec_key(alg, &lc::ECDSA_P384_SHA384_FIXED_SIGNING, "P-384", kid),
            EdDSA => {
                let pair = lc::Ed25519KeyPair::generate().expect("generate Ed25519 key");
                let pkcs8 = pair.to_pkcs8().expect("Ed25519 PKCS#8");
                let public = pair.public_key();
                let jwk = json!({
                    "kty": "OKP",
                    "kid": kid,
                    "use": "sig",
                    "alg": "EdDSA",
                    "crv": "Ed25519",
                    "x": b64(public.as_ref()),
                });
                let spki = public_spki(public);
                TestKey::new(
                    alg,
                    kid,
                    EncodingKey::from_ed_der(pkcs8.as_ref()),
                    jwk,
                    &spki,
                )
            }
            other => panic!("TestKey::generate: unsupported algorithm {other:?}"),
        }
    }

    fn new(alg: Algorithm, kid: &str, key: EncodingKey, jwk: Value, spki: &[u8]) -> TestKey {
        TestKey {
            kid: kid.to_owned(),
            alg,
            key,
            jwk,
            public_pem: pem("PUBLIC KEY", spki),
        }
    }

    /// Public JWK as JSON: `kty`, `kid`, `use: "sig"`, `alg`, and `n`/`e` or `crv`/`x`/`y` or
    /// `crv`/`x`.
    pub fn jwk(&self) -> Value {
        self.jwk.clone()
    }

    /// Same JWK without the `alg` member.
    pub fn jwk_without_alg(&self) -> Value {
        let mut jwk = self.jwk.clone();
        jwk.as_object_mut().expect("JWK is an object").remove("alg");
        jwk
    }

    /// Public key in SPKI PEM (`-----BEGIN PUBLIC KEY-----`, 64-column lines, trailing newline).
    pub fn public_pem(&self) -> String {
        self.public_pem.clone()
    }

    /// Signs `claims` with header `{alg, typ: "at+jwt", kid}`.
    pub fn sign(&self, claims: &Value) -> String {
        let header = json!({ "alg": alg_name(self.alg), "typ": "at+jwt", "kid": self.kid });
        self.sign_with_header(&header, claims)
    }

    /// Signs with a caller-given header JSON object (`alg` and `kid` NOT filled in
    /// automatically: whatever the JSON says is encoded verbatim as the header segment),
    /// producing a real signature of this key's alg over `header.payload`. Lets tests craft
    /// `crit`/`jku`/`typ`/alg-mismatch cases.
    pub fn sign_with_header(&self, header: &Value, claims: &Value) -> String {
        let header = serde_json::to_string(header).expect("serialize header");
        let claims = serde_json::to_string(claims).expect("serialize claims");
        self.sign_raw(&header, &claims)
    }

    /// Signs raw header and payload byte strings (already JSON text, encoded base64url by this
    /// fn), e.g. to test duplicate JSON keys. The signature uses this key's alg whatever the
    /// header says.
    pub fn sign_raw(&self, header_json: &str, payload_json: &str) -> String {
        let input = format!(
            "{}.{}",
            b64(header_json.as_bytes()),
            b64(payload_json.as_bytes())
        );
        let signature = jsonwebtoken::crypto::sign(input.as_bytes(), &self.key, self.alg)
            .unwrap_or_else(|e| panic!("sign with {:?}: {e}", self.alg));
        format!("{input}.{signature}")
    }
}

fn rsa_key(alg: Algorithm, size: KeySize, kid: &str) -> TestKey {
    let pair = aws_lc_rs::rsa::KeyPair::generate(size).expect("generate RSA key");
    let pkcs8 = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair).expect("RSA PKCS#8");
    let key = EncodingKey::from_rsa_pem(pem("PRIVATE KEY", pkcs8.as_ref()).as_bytes())
        .expect("jsonwebtoken reads the RSA PKCS#8 key");
    let public = pair.public_key();
    let jwk = rsa_jwk(
        alg,
        kid,
        public.modulus().big_endian_without_leading_zero(),
        public.exponent().big_endian_without_leading_zero(),
    );
    let spki = public_spki(public);
    TestKey::new(alg, kid, key, jwk, &spki)
}

fn rsa_jwk(alg: Algorithm, kid: &str, n: &[u8], e: &[u8]) -> Value {
    json!({
        "kty": "RSA",
        "kid": kid,
        "use": "sig",
        "alg": alg_name(alg),
        "n": b64(n),
        "e": b64(e),
    })
}

/// An RS256 public JWK (`kid`, `use: "sig"`, `e` = AQAB) whose modulus is a random odd number
/// of exactly `bits` bits. There is no private key: it stands for an RSA key too short to trust,
/// which a verifier must skip when it loads the set, so a token naming its `kid` is refused
/// whatever its signature.
///
/// # Panics
///
/// Below 2 bits.
pub fn weak_rsa_jwk(bits: usize, kid: &str) -> Value {
    assert!(bits >= 2, "weak_rsa_jwk: {bits} bits");
    let mut n = vec![0u8; bits.div_ceil(8)];
    aws_lc_rs::rand::fill(&mut n).expect("random modulus");
    // Bit `bits - 1` is the highest: clear those above it in the first byte, then set it.
    let top = (bits - 1) % 8;
    n[0] &= ((1u16 << (top + 1)) - 1) as u8;
    n[0] |= 1 << top;
    *n.last_mut().expect("at least one byte") |= 1;
    rsa_jwk(Algorithm::RS256, kid, &n, &[1, 0, 1])
}

fn ec_key(
    alg: Algorithm,
    signing: &'static lc::EcdsaSigningAlgorithm,
    crv: &str,
    kid: &str,
) -> TestKey {
    let pair = lc::EcdsaKeyPair::generate(signing).expect("generate EC key");
    let pkcs8 = pair.to_pkcs8v1().expect("EC PKCS#8");
    let public = pair.public_key();
    // Uncompressed point: 0x04 || x || y.
    let point = public.as_ref();
    let (x, y) = point[1..].split_at((point.len() - 1) / 2);
    let jwk = json!({
        "kty": "EC",
        "kid": kid,
        "use": "sig",
        "alg": alg_name(alg),
        "crv": crv,
        "x": b64(x),
        "y": b64(y),
    });
    let spki = public_spki(public);
    TestKey::new(
        alg,
        kid,
        EncodingKey::from_ec_der(pkcs8.as_ref()),
        jwk,
        &spki,
    )
}

fn public_spki<K: AsDer<PublicKeyX509Der<'static>>>(public: &K) -> Vec<u8> {
    public.as_der().expect("SPKI DER").as_ref().to_vec()
}

fn alg_name(alg: Algorithm) -> String {
    serde_json::to_value(alg)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .expect("Algorithm serializes to a string")
}

fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// base64url (no padding) of `bytes`.
pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A compact token from raw segments: header JSON text, payload JSON text, signature bytes
/// (each base64url-encoded here). Pass an empty signature for `alg: none` shapes.
pub fn unsigned_token(header_json: &str, payload_json: &str, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        b64(header_json.as_bytes()),
        b64(payload_json.as_bytes()),
        b64(signature)
    )
}

/// HS256 token whose HMAC secret is the given bytes (for the "HS256 signed with the RSA public
/// key as secret" attack: pass `key.public_pem().as_bytes()`), header
/// `{alg: "HS256", typ: "at+jwt", kid}` (the same header [`TestKey::sign`] writes, so only the
/// algorithm differs from a legitimate token).
pub fn hs256_token(secret: &[u8], kid: &str, claims: &Value) -> String {
    let header = json!({ "alg": "HS256", "typ": "at+jwt", "kid": kid });
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let signature = jsonwebtoken::crypto::sign(
        input.as_bytes(),
        &EncodingKey::from_secret(secret),
        Algorithm::HS256,
    )
    .expect("HS256 sign");
    format!("{input}.{signature}")
}

/// JWKS JSON `{"keys": [...]}` from JWK values.
pub fn jwks(jwks: &[Value]) -> Value {
    json!({ "keys": jwks })
}

/// Current unix time in seconds (from [`SystemTime`]).
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// Standard valid claims: `iss`, `aud`, `sub: "svc-orders"`, `client_id: "svc-orders"`,
/// `scope: "orders:read orders:write"`, `iat` = `nbf` = now, `exp` = now + 300, random `jti`.
pub fn claims(iss: &str, aud: &str) -> Value {
    let now = now();
    let mut jti = [0u8; 16];
    aws_lc_rs::rand::fill(&mut jti).expect("random jti");
    json!({
        "iss": iss,
        "aud": aud,
        "sub": "svc-orders",
        "client_id": "svc-orders",
        "scope": "orders:read orders:write",
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "jti": jti.iter().map(|b| format!("{b:02x}")).collect::<String>(),
    })
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
pub struct KeyServer {
    url: String,
    state: Arc<ServerState>,
    task: tokio::task::JoinHandle<()>,
}

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

impl fmt::Debug for KeyServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyServer")
            .field("url", &self.url)
            .field("behavior", &*self.state.behavior.lock().unwrap())
            .field("jwks_hits", &self.jwks_hits())
            .field("discovery_hits", &self.discovery_hits())
            .field("requests", &self.requests())
            .finish_non_exhaustive()
    }
}

const JWKS_PATH: &str = "/jwks.json";
const OIDC_PATH: &str = "/.well-known/openid-configuration";
const RFC8414_PATH: &str = "/.well-known/oauth-authorization-server";

impl KeyServer {
    /// Binds `127.0.0.1:0` and starts serving on the current tokio runtime: an empty
    /// `{"keys": []}` with `Cache-Control: max-age=300`, both discovery documents enabled.
    pub async fn start() -> KeyServer {
        let listener = TcpListener::bind("127.0.0.1:0")
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
            .with_state(state.clone());
        let task = tokio::spawn(serve(listener, router, state.clone()));
        KeyServer { url, state, task }
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

impl Drop for KeyServer {
    fn drop(&mut self) {
        // Drops the listener and the JoinSet of connections: every socket closes.
        self.task.abort();
    }
}

/// Accept loop. Connections live in a `JoinSet` owned by this task, so aborting it closes
/// them all (`axum::serve` would leave them running).
async fn serve(listener: TcpListener, router: Router, state: Arc<ServerState>) {
    let mut connections = JoinSet::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            // Reap finished connections so the set does not grow without bound.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let router = router.clone();
        let state = state.clone();
        let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
            state.requests.fetch_add(1, Ordering::SeqCst);
            router.clone().call(req)
        });
        connections.spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
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
