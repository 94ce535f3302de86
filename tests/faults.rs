//! The fault suite: real loopback servers that misbehave on purpose, as a token endpoint and as
//! a JWK set host. The library keeps serving what it validly holds, reports a clear error where
//! it cannot, and recovers when the server does. (`tests/inbound.rs` runs the same faults
//! against the key-set cache through `VerifyLayer`.)

use std::{
    future::Future,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{
    Json, Router,
    body::Body,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use futures_util::stream;
use jsonwebtoken::Algorithm;
use s2s_auth::{
    ErrorKind, Issuer, KeyCacheOptions, Verifier,
    fetch::HttpOptions,
    token::{ClientAuth, ClientCredentials, RefreshPolicy, TokenManager, TokenSource},
};
use s2s_tests::keys::{self, TestKey};
use serde_json::json;

/// How the server answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    None,
    /// Never answers (beyond any timeout).
    Slow,
    /// 500 with a JSON body.
    Status500,
    /// 502 with an HTML page.
    Html,
    /// 200 with a 50 MB body.
    Huge,
    /// Promises 1,000 bytes, sends 10, closes the connection.
    CloseMidBody,
    /// 200 with JSON cut short.
    InvalidJson,
    /// 302 to plain http on another host.
    Redirect,
}

const FAULTS: [Fault; 7] = [
    Fault::Slow,
    Fault::Status500,
    Fault::Html,
    Fault::Huge,
    Fault::CloseMidBody,
    Fault::InvalidJson,
    Fault::Redirect,
];

/// What a client should say about each fault.
fn expected_message(fault: Fault) -> &'static str {
    match fault {
        Fault::Slow => "timed out",
        Fault::Status500 => "500",
        Fault::Html => "Bad Gateway",
        Fault::Huge => "larger than",
        Fault::CloseMidBody => "closed",
        Fault::InvalidJson => "EOF",
        Fault::Redirect => "redirect",
        Fault::None => unreachable!("no fault, no message"),
    }
}

struct ServerState {
    fault: Mutex<Fault>,
    jwks: serde_json::Value,
    key: TestKey,
    issuer: Mutex<String>,
    issued: AtomicUsize,
}

/// A token endpoint (`POST /token`) and JWK set (`GET /jwks`) that misbehave on demand.
struct FaultyServer {
    url: String,
    state: Arc<ServerState>,
}

impl FaultyServer {
    async fn start() -> FaultyServer {
        let key = TestKey::generate(Algorithm::ES256, "k1");
        let state = Arc::new(ServerState {
            fault: Mutex::new(Fault::None),
            jwks: keys::jwks(&[key.jwk()]),
            key,
            issuer: Mutex::new(String::new()),
            issued: AtomicUsize::new(0),
        });
        let app = Router::new()
            .route("/token", post(token))
            .route("/jwks", get(jwks))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        *state.issuer.lock().unwrap() = url.clone();
        tokio::spawn(async move { axum::serve(listener, app).await });
        FaultyServer { url, state }
    }

    fn set(&self, fault: Fault) {
        *self.state.fault.lock().unwrap() = fault;
    }

    fn issued(&self) -> usize {
        self.state.issued.load(Ordering::SeqCst)
    }
}

/// The answer for a fault, or `None` to answer normally.
async fn misbehave(state: &ServerState) -> Option<Response> {
    let fault = *state.fault.lock().unwrap();
    Some(match fault {
        Fault::None => return None,
        Fault::Slow => std::future::pending().await,
        Fault::Status500 => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": "server_error"})),
        )
            .into_response(),
        Fault::Html => (
            StatusCode::BAD_GATEWAY,
            [(header::CONTENT_TYPE, "text/html")],
            "<html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1></body></html>",
        )
            .into_response(),
        Fault::Huge => {
            let chunk = axum::body::Bytes::from(vec![b' '; 1 << 20]);
            let body = stream::iter((0..50).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
            Response::builder()
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::CONTENT_LENGTH, 50 << 20)
                .body(Body::from_stream(body))
                .unwrap()
        }
        Fault::CloseMidBody => {
            let body = stream::iter([
                Ok(axum::body::Bytes::from_static(b"{\"keys\":[")),
                Err(std::io::Error::other("the server goes away")),
            ]);
            Response::builder()
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::CONTENT_LENGTH, 1000)
                .body(Body::from_stream(body))
                .unwrap()
        }
        Fault::InvalidJson => (
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"access_token": "abc", "keys": ["#,
        )
            .into_response(),
        Fault::Redirect => (
            StatusCode::FOUND,
            [(header::LOCATION, "http://auth.example.net/elsewhere")],
        )
            .into_response(),
    })
}

async fn token(State(state): State<Arc<ServerState>>) -> Response {
    if let Some(response) = misbehave(&state).await {
        return response;
    }
    let n = state.issued.fetch_add(1, Ordering::SeqCst);
    let issuer = state.issuer.lock().unwrap().clone();
    let mut claims = keys::claims(&issuer, "orders-api");
    claims["jti"] = json!(format!("token-{n}"));
    Json(json!({
        "access_token": state.key.sign(&claims),
        "token_type": "Bearer",
        "expires_in": LIFETIME.as_secs(),
    }))
    .into_response()
}

async fn jwks(State(state): State<Arc<ServerState>>) -> Response {
    if let Some(response) = misbehave(&state).await {
        return response;
    }
    Json(state.jwks.clone()).into_response()
}

/// Short enough that the background refresh runs during a test; see `RefreshPolicy`: refresh
/// after 6 s (minus jitter), usable until 10.8 s.
const SECRET: &str = "s3cr3t-Value-42";

const LIFETIME: Duration = Duration::from_secs(12);

fn http() -> HttpOptions {
    // Long enough for a loaded machine to answer, short enough for a test.
    HttpOptions::new().timeout(Duration::from_secs(1))
}

fn manager(server: &FaultyServer) -> TokenManager {
    let grant = ClientCredentials::new(
        format!("{}/token", server.url),
        "svc",
        ClientAuth::SecretBasic(SECRET.into()),
    )
    .http(http());
    let policy = RefreshPolicy::default()
        .min_backoff(Duration::from_millis(200))
        .max_backoff(Duration::from_millis(400))
        .retry_interval(Duration::ZERO);
    TokenManager::with_policy(grant, policy).unwrap()
}

/// Polls `condition` every 20 ms until it holds, failing after 20 s.
async fn until(what: &str, mut condition: impl FnMut() -> bool) {
    tokio::time::timeout(Duration::from_secs(20), async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting until {what}"));
}

/// Runs `check` for every fault at once, each against its own server.
async fn for_every_fault<F, Fut>(check: F)
where
    F: Fn(Fault, FaultyServer) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut runs = tokio::task::JoinSet::new();
    for fault in FAULTS {
        let server = FaultyServer::start().await;
        runs.spawn(check(fault, server));
    }
    while let Some(run) = runs.join_next().await {
        run.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_endpoint_faults_at_cold_start_give_clear_errors_then_recover() {
    for_every_fault(|fault, server| async move {
        server.set(fault);
        let tokens = manager(&server);
        let err = tokens.token().await.unwrap_err();
        let text = err.to_string();
        assert!(text.contains(expected_message(fault)), "{fault:?}: {text}");
        assert_eq!(err.kind(), ErrorKind::Transient, "{fault:?}: {text}");
        assert!(!text.contains(SECRET), "{fault:?}: {text}");

        server.set(Fault::None);
        tokens
            .token()
            .await
            .unwrap_or_else(|e| panic!("{fault:?}: no recovery: {e}"));
        assert_eq!(server.issued(), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_endpoint_faults_during_refresh_keep_the_valid_token() {
    for_every_fault(|fault, server| async move {
        let tokens = manager(&server);
        let first = tokens.token().await.unwrap();
        server.set(fault);
        // The refresh (due after about 6 s) fails, is retried, fails again...
        until("two refresh attempts failed", || {
            tokens.metrics().failures >= 2
        })
        .await;
        // ...and callers are still served the token they had, without waiting.
        let held = tokens
            .current()
            .unwrap_or_else(|| panic!("{fault:?}: token dropped"));
        assert_eq!(held.as_str(), first.as_str(), "{fault:?}");

        // The server recovers: the next retry replaces the token before it expires.
        server.set(Fault::None);
        until("the manager holds a new token", || {
            tokens
                .current()
                .is_some_and(|t| t.as_str() != first.as_str())
        })
        .await;
        assert_eq!(server.issued(), 2, "{fault:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_set_faults_keep_known_keys_and_report_clearly() {
    for_every_fault(|fault, server| async move {
        let verifier = |server: &FaultyServer| {
            let options = KeyCacheOptions::default()
                .http(http())
                // Retry a failed cold start at once (default 1 s), so recovery needs no waiting.
                .retry_interval(Duration::ZERO);
            Verifier::builder()
                .issuer(Issuer::jwks(&server.url, format!("{}/jwks", server.url)))
                .audience("orders-api")
                .key_cache(options)
                .build()
                .unwrap()
        };
        let token = server
            .state
            .key
            .sign(&keys::claims(&server.url, "orders-api"));

        // Cold start against the fault: 503-worthy, and the detail (for the log; the caller is
        // told only the reason) says what went wrong.
        server.set(fault);
        let cold = verifier(&server);
        let refused = cold.verify(&token).await.unwrap_err();
        assert_eq!(
            refused.reason(),
            s2s_auth::Reason::KeysUnavailable,
            "{fault:?}"
        );
        let detail = refused.detail().unwrap_or_default();
        assert!(
            detail.contains(expected_message(fault)),
            "{fault:?}: {detail}"
        );

        // Warm: keys loaded, then the host fails; a refetch (unknown kid) fails too, and the
        // known key keeps verifying.
        server.set(Fault::None);
        let warm = verifier(&server);
        warm.verify(&token).await.unwrap();
        server.set(fault);
        let stranger = TestKey::generate(Algorithm::ES256, "k2")
            .sign(&keys::claims(&server.url, "orders-api"));
        assert!(warm.verify(&stranger).await.is_err());
        assert_eq!(warm.metrics().jwks_fetch_failures, 1, "{fault:?}");
        warm.verify(&token)
            .await
            .unwrap_or_else(|r| panic!("{fault:?}: {r}"));

        // Recovery: once the host answers, the cold verifier loads its keys.
        server.set(Fault::None);
        cold.verify(&token)
            .await
            .unwrap_or_else(|r| panic!("{fault:?}: {r}"));
    })
    .await;
}
