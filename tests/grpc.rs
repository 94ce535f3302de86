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
