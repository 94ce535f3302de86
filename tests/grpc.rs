//! gRPC, both sides, over real HTTP/2 on 127.0.0.1: tonic servers of the standard
//! `grpc.health.v1.Health` service behind `VerifyLayer` + `RequireScopeLayer`, called by tonic
//! clients (one through `AuthorizeLayer` on a `Channel`) and by the reference Python client
//! (`grpcio`, pinned in `tests/grpc_clients/requirements.txt`, installed into a venv by the
//! first test that needs it; without python3 the test fails when `CI=true` and is skipped
//! loudly otherwise), directly and through the gateway (h2c both ways).
//!
//! Each refusal is checked by its gRPC status as the client library reports it: 16
//! UNAUTHENTICATED (no token, a bad token), 7 PERMISSION_DENIED (a scope missing), 14
//! UNAVAILABLE (the issuer's keys not loaded), 0 OK, with the RFC 6750 challenge in the
//! metadata.

use std::{
    io::Write as _, net::SocketAddr, path::PathBuf, pin::Pin, process::Stdio, sync::OnceLock,
    time::Duration,
};

use futures_util::Stream;
use jsonwebtoken::Algorithm;
use s2s_auth::{
    AuthorizeLayer, Issuer, KeySet, RequireScopeLayer, Verifier, VerifyLayer, grpc,
    token::{TokenManager, TokenSource as _},
};
use s2s_tests::{
    gateway::{self, wait_until},
    keys::{self, Behavior, KeyServer, TestKey},
    outbound,
    peer::is_ci,
    token_server::{TokenFormat, TokenServer},
    venv::python_venv,
};
use serde_json::{Value, json};
use tokio::{net::TcpListener, task::JoinHandle};
use tonic::{
    Code, Request, Response, Status,
    metadata::MetadataValue,
    transport::{Channel, Endpoint, Server, server::TcpIncoming},
};
use tonic_health::pb::{
    HealthCheckRequest, HealthCheckResponse,
    health_check_response::ServingStatus,
    health_client::HealthClient,
    health_server::{Health, HealthServer},
};
use tower::ServiceBuilder;

const AUD: &str = "orders-api";
const SCOPE: &str = "orders:read";

// ---------------------------------------------------------------------------------------------
// Servers
// ---------------------------------------------------------------------------------------------

/// A tonic server on 127.0.0.1:0, stopped when dropped.
struct GrpcServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
    /// The stock health service's statuses.
    reporter: Option<tonic_health::server::HealthReporter>,
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl GrpcServer {
    fn target(&self) -> String {
        self.addr.to_string()
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// The health service as a handler that reads the claims: SERVING, and the token's subject
/// in the `x-subject` metadata.
struct WhoAmI;

#[tonic::async_trait]
impl Health for WhoAmI {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        let subject = grpc::verified(&request)?.standard().sub.clone();
        let mut response = Response::new(HealthCheckResponse {
            status: ServingStatus::Serving as i32,
        });
        if let Some(value) = subject.and_then(|s| MetadataValue::try_from(s).ok()) {
            response.metadata_mut().insert("x-subject", value);
        }
        Ok(response)
    }

    type WatchStream =
        Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send + 'static>>;

    async fn watch(
        &self,
        _: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        Err(Status::unimplemented("not in this test"))
    }
}

/// [`WhoAmI`] behind `VerifyLayer(verifier)` + `RequireScopeLayer::all([SCOPE])`.
async fn protected(verifier: Verifier) -> GrpcServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let auth = ServiceBuilder::new()
        .layer(VerifyLayer::new(verifier))
        .layer(RequireScopeLayer::all([SCOPE]));
    let router = Server::builder()
        .layer(auth)
        .add_service(HealthServer::new(WhoAmI));
    let task = tokio::spawn(async move {
        router
            .serve_with_incoming(TcpIncoming::from(listener))
            .await
            .expect("the gRPC server runs");
    });
    GrpcServer {
        addr,
        task,
        reporter: None,
    }
}

/// tonic-health's own service, unprotected: the upstream the gateway guards.
async fn stock_health() -> GrpcServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (reporter, health) = tonic_health::server::health_reporter();
    let task = tokio::spawn(async move {
        Server::builder()
            .add_service(health)
            .serve_with_incoming(TcpIncoming::from(listener))
            .await
            .expect("the gRPC server runs");
    });
    GrpcServer {
        addr,
        task,
        reporter: Some(reporter),
    }
}

fn verifier(keys: &KeyServer) -> Verifier {
    Verifier::builder()
        .issuer(Issuer::jwks(keys.issuer(), keys.jwks_url()))
        .audience(AUD)
        .build()
        .unwrap()
}

/// The tokens of one issuer: a good one, one signed by a key it never published, one without
/// the scope.
struct Tokens {
    good: String,
    forged: String,
    unscoped: String,
}

fn tokens(keys: &KeyServer, key: &TestKey) -> Tokens {
    let claims = keys::claims(&keys.issuer(), AUD);
    let stranger = TestKey::generate(Algorithm::ES256, &key.kid);
    let mut unscoped = claims.clone();
    unscoped["scope"] = json!("billing:read");
    Tokens {
        good: key.sign(&claims),
        forged: stranger.sign(&claims),
        unscoped: key.sign(&unscoped),
    }
}

/// What a client saw: the code, the message, the `www-authenticate` metadata.
#[derive(Debug)]
struct Seen {
    code: Code,
    message: String,
    challenge: Option<String>,
    serving: Option<&'static str>,
}

/// One Check with tonic's client, with `token` as the bearer token when some.
async fn tonic_check(target: &str, token: Option<&str>) -> Seen {
    let channel = Endpoint::from_shared(format!("http://{target}"))
        .unwrap()
        .connect()
        .await
        .expect("connects");
    let mut request = Request::new(HealthCheckRequest::default());
    if let Some(token) = token {
        let value = format!("Bearer {token}").parse().unwrap();
        request.metadata_mut().insert("authorization", value);
    }
    seen(HealthClient::new(channel).check(request).await)
}

fn seen(result: Result<Response<HealthCheckResponse>, Status>) -> Seen {
    match result {
        Ok(response) => Seen {
            code: Code::Ok,
            message: String::new(),
            challenge: None,
            serving: Some(response.get_ref().status().as_str_name()),
        },
        Err(status) => Seen {
            code: status.code(),
            message: status.message().to_owned(),
            challenge: status
                .metadata()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap().to_owned()),
            serving: None,
        },
    }
}

/// The refusals every route of these tests answers, with `realm`: (token, code, what the
/// challenge contains).
fn cases<'a>(tokens: &'a Tokens, realm: &str) -> Vec<(Option<&'a str>, Code, String)> {
    vec![
        (
            None,
            Code::Unauthenticated,
            format!(r#"Bearer realm="{realm}""#),
        ),
        (
            Some(&tokens.forged),
            Code::Unauthenticated,
            r#"error="invalid_token""#.to_owned(),
        ),
        (
            Some(&tokens.unscoped),
            Code::PermissionDenied,
            r#"error="insufficient_scope", error_description="#.to_owned(),
        ),
    ]
}

fn assert_refused(seen: &Seen, code: Code, challenge: &str, who: &str) {
    assert_eq!(seen.code, code, "{who}: {seen:?}");
    let got = seen.challenge.as_deref().unwrap_or_default();
    assert!(
        got.contains(challenge),
        "{who}: challenge {got:?} lacks {challenge:?}"
    );
    assert!(!seen.message.is_empty(), "{who}: no grpc-message: {seen:?}");
}

// ---------------------------------------------------------------------------------------------
// The called side, with tonic's client
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn each_refusal_is_a_grpc_status_with_the_challenge() {
    let key = TestKey::generate(Algorithm::ES256, "k1");
    let keys = KeyServer::serving(&[&key]).await;
    let server = protected(verifier(&keys)).await;
    let tokens = tokens(&keys, &key);

    let ok = tonic_check(&server.target(), Some(&tokens.good)).await;
    assert_eq!((ok.code, ok.serving), (Code::Ok, Some("SERVING")), "{ok:?}");

    for (token, code, challenge) in cases(&tokens, "api") {
        let seen = tonic_check(&server.target(), token).await;
        assert_refused(&seen, code, &challenge, "tonic");
    }
    let scope = tonic_check(&server.target(), Some(&tokens.unscoped)).await;
    assert!(
        scope
            .challenge
            .unwrap()
            .contains(&format!(r#"scope="{SCOPE}""#)),
        "the challenge names the scope"
    );
    let missing = tonic_check(&server.target(), None).await;
    assert_eq!(missing.message, s2s_auth::Reason::MissingToken.summary());
}

#[tokio::test]
async fn the_handler_reads_the_claims_from_the_request() {
    let key = TestKey::generate(Algorithm::ES256, "k1");
    let keys = KeyServer::serving(&[&key]).await;
    let server = protected(verifier(&keys)).await;
    let channel = Endpoint::from_shared(server.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut request = Request::new(HealthCheckRequest::default());
    let mut claims = keys::claims(&keys.issuer(), AUD);
    claims["sub"] = json!("billing-7");
    let bearer = format!("Bearer {}", key.sign(&claims));
    request
        .metadata_mut()
        .insert("authorization", bearer.parse().unwrap());
    let response = HealthClient::new(channel).check(request).await.expect("OK");
    assert_eq!(response.metadata().get("x-subject").unwrap(), "billing-7");
}

/// Keys that cannot be loaded: UNAVAILABLE, which clients may retry; once the key server
/// answers, the same call passes.
#[tokio::test]
async fn keys_not_loaded_is_unavailable_then_the_call_passes() {
    let key = TestKey::generate(Algorithm::ES256, "k1");
    let keys = KeyServer::serving(&[&key]).await;
    keys.set_behavior(Behavior::Status(503));
    let server = protected(verifier(&keys)).await;
    let tokens = tokens(&keys, &key);

    let seen = tonic_check(&server.target(), Some(&tokens.good)).await;
    assert_eq!(seen.code, Code::Unavailable, "{seen:?}");
    assert!(
        seen.challenge.is_none(),
        "no statement about the token: {seen:?}"
    );

    keys.set_behavior(Behavior::Normal);
    let target = server.target();
    let good = tokens.good.clone();
    wait_until("the keys to load and the call to pass", || {
        let (target, good) = (target.clone(), good.clone());
        async move { tonic_check(&target, Some(&good)).await.code == Code::Ok }
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// The calling side: AuthorizeLayer on a tonic Channel
// ---------------------------------------------------------------------------------------------

/// The token endpoint first issues a token the service refuses (signed by a key it does not
/// know): the call fails UNAUTHENTICATED with `invalid_token`, the layer drops that token, and
/// the next call fetches a new one (accepted); later calls reuse it.
#[tokio::test]
async fn authorize_layer_on_a_channel_replaces_a_refused_token() {
    let good = TestKey::generate(Algorithm::ES256, "k1");
    let stranger = TestKey::generate(Algorithm::ES256, "k1");
    let token_server = TokenServer::start().await;
    let lifetime = Duration::from_secs(300);
    token_server.set_format(TokenFormat::Jwt {
        key: stranger,
        lifetime,
    });
    let jwks = serde_json::to_vec(&good.jwks()).unwrap();
    let verifier = Verifier::builder()
        .issuer(Issuer::keys(
            token_server.url(),
            KeySet::from_jwks(&jwks).unwrap(),
        ))
        .audience(AUD)
        .build()
        .unwrap();
    let server = protected(verifier).await;

    let tokens: TokenManager = outbound::manager(&token_server);
    let channel: Channel = Endpoint::from_shared(server.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let authorized = ServiceBuilder::new()
        .layer(AuthorizeLayer::new(tokens.clone()).relative_to(server.url()))
        .service(channel);
    let mut client = HealthClient::new(authorized);

    let refused = seen(client.check(HealthCheckRequest::default()).await);
    assert_refused(
        &refused,
        Code::Unauthenticated,
        r#"error="invalid_token""#,
        "first call",
    );
    assert_eq!(token_server.requests(), 1);
    assert!(tokens.current().is_none(), "the refused token is dropped");

    token_server.set_format(TokenFormat::Jwt {
        key: good,
        lifetime,
    });
    for call in 2..=4 {
        let ok = seen(client.check(HealthCheckRequest::default()).await);
        assert_eq!(ok.code, Code::Ok, "call {call}: {ok:?}");
        assert_eq!(
            token_server.requests(),
            2,
            "call {call}: one new token, then reused"
        );
    }
}

/// A refusal that is not about the token (a scope missing) keeps the token.
#[tokio::test]
async fn authorize_layer_keeps_a_token_refused_for_its_scopes() {
    let key = TestKey::generate(Algorithm::ES256, "k1");
    let token_server = TokenServer::start().await;
    token_server.set_format(TokenFormat::Jwt {
        key: key.clone(),
        lifetime: Duration::from_secs(300),
    });
    let jwks = serde_json::to_vec(&key.jwks()).unwrap();
    let verifier = Verifier::builder()
        .issuer(Issuer::keys(
            token_server.url(),
            KeySet::from_jwks(&jwks).unwrap(),
        ))
        .audience(AUD)
        .build()
        .unwrap();
    // The tokens' scopes are orders:read orders:write: require one they lack.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = Server::builder()
        .layer(
            ServiceBuilder::new()
                .layer(VerifyLayer::new(verifier))
                .layer(RequireScopeLayer::all(["orders:admin"])),
        )
        .add_service(HealthServer::new(WhoAmI));
    let task = tokio::spawn(router.serve_with_incoming(TcpIncoming::from(listener)));

    let tokens = outbound::manager(&token_server);
    let channel = Endpoint::from_shared(url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = HealthClient::new(
        ServiceBuilder::new()
            .layer(AuthorizeLayer::new(tokens.clone()).relative_to(&url))
            .service(channel),
    );
    for _ in 0..2 {
        let seen = seen(client.check(HealthCheckRequest::default()).await);
        assert_eq!(seen.code, Code::PermissionDenied, "{seen:?}");
    }
    assert_eq!(token_server.requests(), 1, "the token is kept");
    assert!(tokens.current().is_some());
    task.abort();
}

// ---------------------------------------------------------------------------------------------
// Through the gateway
// ---------------------------------------------------------------------------------------------

/// A gateway for `keys`' issuer routing the health service to `upstream` over h2c.
async fn grpc_gateway(keys: &KeyServer, upstream: &GrpcServer) -> gateway::Running {
    let tables = format!(
        "[upstreams.grpc]\nurl = \"{}\"\nhttp2 = true\n\n\
         [[route]]\nprefix = \"/grpc.health.v1.Health\"\nupstream = \"grpc\"\n\
         scopes.all_of = [\"{SCOPE}\"]\n",
        upstream.url()
    );
    let config = gateway::issuer_config(keys, upstream.addr, "", &tables);
    gateway::start(&config).await
}

#[tokio::test]
async fn grpc_passes_through_the_gateway_with_grpc_refusals() {
    let key = TestKey::generate(Algorithm::ES256, "k1");
    let keys = KeyServer::serving(&[&key]).await;
    let upstream = stock_health().await;
    let gateway = grpc_gateway(&keys, &upstream).await;
    let target = gateway.addr.to_string();
    let tokens = tokens(&keys, &key);

    // OK needs the upstream's trailers (grpc-status 0) to come through.
    let good = tokens.good.clone();
    wait_until("the gateway's keys to load", || {
        let (target, good) = (target.clone(), good.clone());
        async move { tonic_check(&target, Some(&good)).await.code != Code::Unavailable }
    })
    .await;
    let ok = tonic_check(&target, Some(&tokens.good)).await;
    assert_eq!((ok.code, ok.serving), (Code::Ok, Some("SERVING")), "{ok:?}");
    for (token, code, challenge) in cases(&tokens, gateway::REALM) {
        let seen = tonic_check(&target, token).await;
        assert_refused(&seen, code, &challenge, "tonic through the gateway");
    }

    // A server stream stays open through the gateway: the second message is sent after the
    // status changes.
    let channel = Endpoint::from_shared(format!("http://{target}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut request = Request::new(HealthCheckRequest::default());
    let bearer = format!("Bearer {}", tokens.good);
    request
        .metadata_mut()
        .insert("authorization", bearer.parse().unwrap());
    let mut watch = HealthClient::new(channel)
        .watch(request)
        .await
        .expect("watch")
        .into_inner();
    let first = gateway::within("the first message", watch.message()).await;
    assert_eq!(first.unwrap().unwrap().status(), ServingStatus::Serving);
    let reporter = upstream.reporter.as_ref().unwrap();
    reporter
        .set_service_status("", tonic_health::ServingStatus::NotServing)
        .await;
    let second = gateway::within("the second message", watch.message()).await;
    assert_eq!(second.unwrap().unwrap().status(), ServingStatus::NotServing);
}

#[tokio::test]
async fn the_gateway_answers_unavailable_until_its_keys_load() {
    let key = TestKey::generate(Algorithm::ES256, "k1");
    let keys = KeyServer::serving(&[&key]).await;
    keys.set_behavior(Behavior::Status(503));
    let upstream = stock_health().await;
    let gateway = grpc_gateway(&keys, &upstream).await;
    let tokens = tokens(&keys, &key);
    let seen = tonic_check(&gateway.addr.to_string(), Some(&tokens.good)).await;
    assert_eq!(seen.code, Code::Unavailable, "{seen:?}");
}

// ---------------------------------------------------------------------------------------------
// The reference Python client (grpcio)
// ---------------------------------------------------------------------------------------------

fn clients_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("grpc_clients")
}

/// The venv's python, or `None` after a loud skip (outside CI); panics under `CI=true`.
fn python() -> Option<PathBuf> {
    static READY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match READY.get_or_init(|| python_venv(&clients_dir())) {
        Ok(python) => Some(python.clone()),
        Err(reason) if is_ci() => {
            panic!("the grpcio client needs python3 with venv (CI=true): {reason}")
        }
        Err(reason) => {
            // Straight to stderr: libtest captures `eprintln!` of passing tests.
            let _ = writeln!(
                std::io::stderr().lock(),
                "\n************************************************************************\n\
                 SKIPPED: the grpcio client test\nreason: {reason}\n\
                 install Python 3.9+ with venv; with CI=true this fails\n\
                 ************************************************************************"
            );
            None
        }
    }
}

/// One Check by the Python client: what it reports.
async fn python_check(python: &PathBuf, target: &str, token: Option<&str>) -> Seen {
    let args = json!({ "target": target, "token": token });
    let run = tokio::process::Command::new(python)
        .arg("health_check.py")
        .arg(args.to_string())
        .current_dir(clients_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the grpcio client finishes within 60 s")
        .expect("the grpcio client runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let result: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|_| {
            panic!(
                "the grpcio client printed no JSON ({}):\n{stdout}\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            )
        });
    let challenge = result["metadata"]
        .as_array()
        .unwrap()
        .iter()
        .find(|pair| pair[0] == "www-authenticate")
        .map(|pair| pair[1].as_str().unwrap().to_owned());
    Seen {
        code: Code::from(result["code"].as_i64().unwrap() as i32),
        message: result["details"].as_str().unwrap_or_default().to_owned(),
        challenge,
        serving: match result["serving"].as_str() {
            Some("SERVING") => Some("SERVING"),
            Some(_) => Some("other"),
            None => None,
        },
    }
}

#[tokio::test]
async fn the_python_grpc_client_reads_each_status_directly_and_through_the_gateway() {
    let Some(python) = python() else { return };
    let key = TestKey::generate(Algorithm::ES256, "k1");
    let keys = KeyServer::serving(&[&key]).await;
    let tokens = tokens(&keys, &key);
    let direct = protected(verifier(&keys)).await;
    let upstream = stock_health().await;
    let gateway = grpc_gateway(&keys, &upstream).await;
    let via_gateway = gateway.addr.to_string();
    let good = tokens.good.clone();
    wait_until("the gateway's keys to load", || {
        let (target, good) = (via_gateway.clone(), good.clone());
        async move { tonic_check(&target, Some(&good)).await.code != Code::Unavailable }
    })
    .await;

    for (target, realm, who) in [
        (direct.target(), "api", "grpcio"),
        (
            via_gateway.clone(),
            gateway::REALM,
            "grpcio through the gateway",
        ),
    ] {
        let ok = python_check(&python, &target, Some(&tokens.good)).await;
        assert_eq!(
            (ok.code, ok.serving),
            (Code::Ok, Some("SERVING")),
            "{who}: {ok:?}"
        );
        for (token, code, challenge) in cases(&tokens, realm) {
            let seen = python_check(&python, &target, token).await;
            assert_refused(&seen, code, &challenge, who);
        }
    }

    // 14, directly and through the gateway, from issuers whose keys cannot be loaded.
    let down = KeyServer::serving(&[&key]).await;
    down.set_behavior(Behavior::Status(503));
    let tokens = self::tokens(&down, &key);
    let direct = protected(verifier(&down)).await;
    let gateway = grpc_gateway(&down, &upstream).await;
    for target in [direct.target(), gateway.addr.to_string()] {
        let seen = python_check(&python, &target, Some(&tokens.good)).await;
        assert_eq!(seen.code, Code::Unavailable, "{target}: {seen:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// On the wire: what a gRPC client is sent, not what tonic makes of it
// ---------------------------------------------------------------------------------------------

/// What came back on the wire for one call.
#[derive(Debug)]
struct Wire {
    status: http::StatusCode,
    headers: http::HeaderMap,
    trailers: Option<http::HeaderMap>,
}

/// A Check as a gRPC client puts it on the wire (HTTP/2 with prior knowledge, an empty
/// message), with `token` as the bearer token when some.
async fn wire_check(target: SocketAddr, token: Option<&str>) -> Wire {
    use http_body_util::{BodyExt as _, Full};
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<bytes::Bytes>>();
    let mut request = http::Request::post(format!("http://{target}/grpc.health.v1.Health/Check"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    // The length-prefixed empty HealthCheckRequest.
    let request = request
        .body(Full::new(bytes::Bytes::from_static(&[0, 0, 0, 0, 0])))
        .unwrap();
    let response = gateway::within("the HTTP/2 answer", client.request(request))
        .await
        .expect("answers over HTTP/2");
    let (parts, body) = response.into_parts();
    let collected = gateway::within("the body", body.collect()).await.unwrap();
    Wire {
        status: parts.status,
        headers: parts.headers,
        trailers: collected.trailers().cloned(),
    }
}

/// Each refusal is a trailers-only gRPC answer: HTTP 200, the grpc-status and the exact
/// grpc-message in the headers, the challenge kept. An HTTP 401/403 (which tonic would map to
/// the same codes) fails here.
fn assert_wire_refusals(wire: &[Wire], realm: &str, who: &str) {
    let expected = [
        (
            "16",
            s2s_auth::Reason::MissingToken.summary().to_owned(),
            format!(r#"Bearer realm="{realm}""#),
        ),
        (
            "16",
            s2s_auth::Reason::BadSignature.summary().to_owned(),
            r#"error="invalid_token""#.to_owned(),
        ),
        (
            "7",
            format!("this endpoint requires the scopes `{SCOPE}`"),
            r#"error="insufficient_scope""#.to_owned(),
        ),
    ];
    for (seen, (status, message, challenge)) in wire.iter().zip(expected) {
        assert_eq!(seen.status, 200, "{who}: {seen:?}");
        assert_eq!(
            seen.headers["content-type"], "application/grpc",
            "{who}: {seen:?}"
        );
        assert_eq!(seen.headers["grpc-status"], status, "{who}: {seen:?}");
        assert_eq!(
            seen.headers["grpc-message"],
            message.as_str(),
            "{who}: {seen:?}"
        );
        let got = seen.headers["www-authenticate"].to_str().unwrap();
        assert!(
            got.contains(&challenge),
            "{who}: {got:?} lacks {challenge:?}"
        );
        assert!(seen.trailers.is_none(), "{who}: trailers-only: {seen:?}");
    }
}

#[tokio::test]
async fn refusals_on_the_wire_are_grpc_answers_directly_and_through_the_gateway() {
    let key = TestKey::generate(Algorithm::ES256, "k1");
    let keys = KeyServer::serving(&[&key]).await;
    let tokens = tokens(&keys, &key);
    let asks = [
        None,
        Some(tokens.forged.as_str()),
        Some(tokens.unscoped.as_str()),
    ];

    let direct = protected(verifier(&keys)).await;
    let mut wire = Vec::new();
    for token in asks {
        wire.push(wire_check(direct.addr, token).await);
    }
    assert_wire_refusals(&wire, "api", "directly");

    let upstream = stock_health().await;
    let gateway = grpc_gateway(&keys, &upstream).await;
    let good = tokens.good.clone();
    let addr = gateway.addr;
    wait_until("the gateway's keys to load", || {
        let good = good.clone();
        async move {
            wire_check(addr, Some(&good))
                .await
                .headers
                .get("grpc-status")
                .is_none()
        }
    })
    .await;
    // The upstream's OK comes in the trailers.
    let ok = wire_check(addr, Some(&tokens.good)).await;
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(
        ok.trailers.as_ref().map(|t| &t["grpc-status"]),
        Some(&http::HeaderValue::from_static("0")),
        "{ok:?}"
    );
    let mut wire = Vec::new();
    for token in asks {
        wire.push(wire_check(addr, token).await);
    }
    assert_wire_refusals(&wire, gateway::REALM, "through the gateway");

    // Keys not loaded: 14 UNAVAILABLE, no challenge (it is no statement about the token).
    let down = KeyServer::serving(&[&key]).await;
    down.set_behavior(Behavior::Status(503));
    let unready = grpc_gateway(&down, &upstream).await;
    let good = key.sign(&keys::claims(&down.issuer(), AUD));
    let seen = wire_check(unready.addr, Some(&good)).await;
    assert_eq!(seen.status, 200, "{seen:?}");
    assert_eq!(seen.headers["grpc-status"], "14", "{seen:?}");
    assert_eq!(
        seen.headers["grpc-message"],
        s2s_auth::Reason::KeysUnavailable.summary(),
        "{seen:?}"
    );
    assert!(seen.headers.get("www-authenticate").is_none(), "{seen:?}");
}

// ---------------------------------------------------------------------------------------------
// The gateway's client connections: slow, silent and too many clients
// ---------------------------------------------------------------------------------------------

/// A gateway with `[timeouts]` and `[limits]` lines in front of `upstream`.
async fn limited_gateway(
    keys: &KeyServer,
    upstream: &GrpcServer,
    tables: &str,
) -> gateway::Running {
    let tables = format!(
        "{tables}\n[upstreams.grpc]\nurl = \"{}\"\nhttp2 = true\n\n\
         [[route]]\nprefix = \"/grpc.health.v1.Health\"\nupstream = \"grpc\"\npublic = true\n",
        upstream.url()
    );
    let config = gateway::issuer_config(keys, upstream.addr, "", &tables);
    gateway::start(&config).await
}

/// Waits (at most 10 s) until the gateway closes `stream`: a read sees EOF or a reset.
async fn closed_by_the_gateway(stream: &mut tokio::net::TcpStream, what: &str) {
    use tokio::io::AsyncReadExt as _;
    gateway::within(what, async {
        let mut buf = [0u8; 256];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                // An HTTP/2 GOAWAY or settings frame may come first.
                Ok(_) => {}
            }
        }
    })
    .await;
}

#[tokio::test]
async fn silent_and_slow_clients_are_closed_after_the_header_timeout() {
    use tokio::io::AsyncWriteExt as _;
    let keys = KeyServer::serving(&[]).await;
    let upstream = stock_health().await;
    let gateway = limited_gateway(&keys, &upstream, "[timeouts]\nheader_read = \"1s\"\n").await;
    let started = std::time::Instant::now();
    let mut silent = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    // 5 bytes of the HTTP/2 preface: not enough for the protocol to be told.
    let mut partial = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    partial.write_all(b"PRI *").await.unwrap();
    // The whole preface, then nothing: an HTTP/2 connection without a request.
    let mut h2 = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    closed_by_the_gateway(&mut silent, "the silent connection to be closed").await;
    closed_by_the_gateway(&mut partial, "the 5-byte connection to be closed").await;
    closed_by_the_gateway(&mut h2, "the request-less HTTP/2 connection to be closed").await;
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "closed before the timeout"
    );
    // A client that sends its request is served.
    assert!(wire_check(gateway.addr, None).await.trailers.is_some());
}

#[tokio::test]
async fn idle_http2_connections_are_closed() {
    let keys = KeyServer::serving(&[]).await;
    let upstream = stock_health().await;
    let gateway = limited_gateway(&keys, &upstream, "[timeouts]\nidle = \"1s\"\n").await;
    let stream = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    let driver = tokio::spawn(connection);
    let request = http::Request::post("/grpc.health.v1.Health/Check")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(&[
            0, 0, 0, 0, 0,
        ])))
        .unwrap();
    let response = gateway::within("the answer", sender.send_request(request))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    drop(response);
    // After the idle timeout the gateway sends GOAWAY and closes: the connection ends.
    let ended = gateway::within("the idle connection to be closed", driver).await;
    assert!(ended.is_ok(), "{ended:?}");
}

#[tokio::test]
async fn connections_beyond_the_limit_are_closed() {
    use tokio::io::AsyncWriteExt as _;
    let keys = KeyServer::serving(&[]).await;
    let upstream = stock_health().await;
    let gateway = limited_gateway(&keys, &upstream, "[limits]\nmax_connections = 2\n").await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
        stream.write_all(b"PRI *").await.unwrap();
        held.push(stream);
    }
    // The third is accepted and closed at once, long before the 30 s header timeout.
    let mut third = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    closed_by_the_gateway(&mut third, "the connection beyond the limit to be closed").await;
    // Once one is gone, a new client is served again.
    drop(held.pop());
    let addr = gateway.addr;
    wait_until("a slot to free", || async move {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .http2_only(true)
                .build_http::<http_body_util::Full<bytes::Bytes>>();
        let request = http::Request::post(format!("http://{addr}/grpc.health.v1.Health/Check"))
            .header("content-type", "application/grpc")
            .body(http_body_util::Full::new(bytes::Bytes::from_static(&[
                0, 0, 0, 0, 0,
            ])))
            .unwrap();
        client.request(request).await.is_ok()
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Request trailers
// ---------------------------------------------------------------------------------------------

/// What an h2c upstream got: the request's headers and trailers.
type Got = std::sync::Arc<std::sync::Mutex<Vec<(http::HeaderMap, Option<http::HeaderMap>)>>>;

/// An h2c upstream that records each request's headers and trailers and answers 200.
async fn recording_h2c() -> (SocketAddr, Got, JoinHandle<()>) {
    use http_body_util::BodyExt as _;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let got = Got::default();
    let task = tokio::spawn({
        let got = got.clone();
        async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let got = got.clone();
                let service = hyper::service::service_fn(
                    move |request: http::Request<hyper::body::Incoming>| {
                        let got = got.clone();
                        async move {
                            let (parts, body) = request.into_parts();
                            let trailers = body
                                .collect()
                                .await
                                .ok()
                                .and_then(|c| c.trailers().cloned());
                            got.lock().unwrap().push((parts.headers, trailers));
                            Ok::<_, std::convert::Infallible>(http::Response::new(
                                http_body_util::Full::new(bytes::Bytes::from_static(b"ok")),
                            ))
                        }
                    },
                );
                tokio::spawn(
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
                );
            }
        }
    });
    (addr, got, task)
}

#[tokio::test]
async fn request_trailers_never_reach_the_upstream() {
    use futures_util::stream;
    use http_body_util::{BodyExt as _, StreamBody};
    use hyper::body::Frame;
    let key = TestKey::generate(Algorithm::ES256, "k1");
    let keys = KeyServer::serving(&[&key]).await;
    let (upstream, got, task) = recording_h2c().await;
    let tables = format!(
        "[upstreams.h2]\nurl = \"http://{upstream}\"\nhttp2 = true\n\n\
         [[route]]\nprefix = \"/svc\"\nupstream = \"h2\"\n"
    );
    let config = gateway::issuer_config(&keys, upstream, "strip_authorization = true", &tables);
    let gateway = gateway::start(&config).await;
    let good = key.sign(&keys::claims(&keys.issuer(), AUD));
    let addr = gateway.addr;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<gateway::ClientBody>();
    let send = |token: String| {
        let client = client.clone();
        async move {
            let mut trailers = http::HeaderMap::new();
            for (name, value) in [
                ("x-auth-subject", "admin"),
                ("x-auth-client-id", "root"),
                ("x-auth-scopes", "orders:admin"),
                ("authorization", "Bearer smuggled"),
                ("x-forwarded-for", "10.9.9.9"),
                ("x-checksum", "kept-or-not"),
            ] {
                trailers.insert(name, http::HeaderValue::from_static(value));
            }
            let frames: Vec<Result<Frame<bytes::Bytes>, gateway::BoxError>> = vec![
                Ok(Frame::data(bytes::Bytes::from_static(b"payload"))),
                Ok(Frame::trailers(trailers)),
            ];
            let request = http::Request::post(format!("http://{addr}/svc/x"))
                .header("authorization", format!("Bearer {token}"))
                .header("te", "trailers")
                .body(StreamBody::new(stream::iter(frames)).boxed())
                .unwrap();
            client.request(request).await.map(|r| r.status())
        }
    };
    wait_until("the gateway's keys to load", || {
        let good = good.clone();
        async move { send(good).await.is_ok_and(|s| s == 200) }
    })
    .await;
    let got = got.lock().unwrap();
    assert!(!got.is_empty());
    for (headers, trailers) in got.iter() {
        assert!(
            trailers.is_none(),
            "trailers reached the upstream: {trailers:?}"
        );
        assert!(headers.get("authorization").is_none(), "{headers:?}");
        assert!(headers.get("x-checksum").is_none(), "{headers:?}");
    }
    task.abort();
}
