//! The outbound path against servers that misbehave on purpose, over real HTTP on 127.0.0.1:
//! token endpoints that answer absurd lifetimes, redirect to another origin or answer 2xx
//! without a token response, discovery and JWK set hosts that redirect elsewhere, and callers
//! that would send tokens to hosts they are not for.
//!
//! Each [`Hostile`] server is a real HTTP/1.1 server that records every request it receives and
//! answers with a function of it; a second one on another port is "another origin" (an origin is
//! scheme, host and port). Nothing sleeps to wait for a race: waits poll a condition under a
//! real-time deadline.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use http_body_util::Empty;
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use jsonwebtoken::Algorithm;
use s2s_auth::{
    AuthorizeLayer, BearerToken, Error, ErrorKind, Issuer, Verifier,
    fetch::HttpOptions,
    middleware::AuthorizeMiddleware,
    token::{ClientAuth, ClientCredentials, RefreshPolicy, TokenFuture, TokenManager, TokenSource},
};
use s2s_tests::{
    keys::{self, TestKey},
    logs::logs,
    time::wait_until_sleeping,
    token_server::{ExpiresIn, ResourceServer, TokenServer},
};
use tower::{ServiceBuilder, ServiceExt as _};
use tower_http::follow_redirect::{
    FollowRedirectLayer,
    policy::{FilterCredentials, Limited, PolicyExt as _},
};

const CLIENT_ID: &str = "billing-service";
const SECRET: &str = "s3cret-hostile-never-sent-twice";

// ---------------------------------------------------------------------------------------------
// A server that misbehaves on purpose
// ---------------------------------------------------------------------------------------------

/// One request a [`Hostile`] server received.
#[derive(Clone, Debug)]
struct Hit {
    method: Method,
    path: String,
    headers: HeaderMap,
    body: String,
}

type Answer = dyn Fn(&Hit) -> Response + Send + Sync;

struct HostileState {
    hits: Mutex<Vec<Hit>>,
    answer: Box<Answer>,
}

/// A real HTTP server on `127.0.0.1:0` that records each request and answers `answer(hit)`.
struct Hostile {
    url: String,
    state: Arc<HostileState>,
    task: tokio::task::JoinHandle<()>,
}

impl Hostile {
    async fn start(answer: impl Fn(&Hit) -> Response + Send + Sync + 'static) -> Hostile {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        let state = Arc::new(HostileState {
            hits: Mutex::default(),
            answer: Box::new(answer),
        });
        let router = Router::new()
            .fallback(record_and_answer)
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Hostile { url, state, task }
    }

    fn url(&self) -> String {
        self.url.clone()
    }

    fn hits(&self) -> Vec<Hit> {
        self.state.hits.lock().unwrap().clone()
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn record_and_answer(
    State(state): State<Arc<HostileState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let hit = Hit {
        method,
        path: uri.path().to_owned(),
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    state.hits.lock().unwrap().push(hit.clone());
    (state.answer)(&hit)
}

/// `status` with `Location: location`.
fn redirect(status: u16, location: &str) -> Response {
    let mut response = StatusCode::from_u16(status).unwrap().into_response();
    response
        .headers_mut()
        .insert(header::LOCATION, HeaderValue::from_str(location).unwrap());
    response
}

/// 200 with this content type and body.
fn ok(content_type: &str, body: impl Into<String>) -> Response {
    let mut response = (StatusCode::OK, body.into()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(content_type).unwrap(),
    );
    response
}

/// A token endpoint that answers every request with `body` (JSON).
async fn token_endpoint_answering(body: String) -> Hostile {
    Hostile::start(move |_| ok("application/json", body.clone())).await
}

fn log_text() -> String {
    logs().text()
}

fn grant(token_url: String) -> ClientCredentials {
    ClientCredentials::new(token_url, CLIENT_ID, ClientAuth::SecretBasic(SECRET.into()))
}

// ---------------------------------------------------------------------------------------------
// Item 10: absurd lifetimes, and the fetch rate whatever the server answers
// ---------------------------------------------------------------------------------------------

/// `expires_in: 1e20` (and other huge values) used to panic the caller with "overflow when
/// adding duration to instant". Now it is lowered to `max_lifetime`: the token is served, and
/// refreshed on the schedule of that bound.
#[tokio::test]
async fn a_huge_expires_in_is_clamped_to_the_maximum_lifetime_instead_of_panicking() {
    for expires_in in [
        "1e20",
        "18446744073709551615",
        "\"1e20\"",
        "1.7976931348623157e308",
    ] {
        let server = token_endpoint_answering(format!(
            r#"{{"access_token":"at-huge","token_type":"Bearer","expires_in":{expires_in}}}"#
        ))
        .await;
        let policy = RefreshPolicy::default()
            .min_lifetime(Duration::from_secs(1))
            .max_lifetime(Duration::from_secs(2))
            .min_fetch_interval(Duration::from_millis(100));
        let tokens =
            TokenManager::with_policy(grant(format!("{}/token", server.url())), policy).unwrap();
        let token = tokens
            .token()
            .await
            .unwrap_or_else(|e| panic!("expires_in {expires_in}: {e}"));
        assert_eq!(token.as_str(), "at-huge");
        // Lowered to 2 s, the token is refreshed about a second later, not in 1e20 s.
        wait_until_sleeping(&format!("expires_in {expires_in} is refreshed"), || {
            server.hits().len() >= 2
        })
        .await;
    }
}

/// Negative or non-numeric lifetimes are refused with an error that says what is wrong; a
/// number too large for JSON's doubles is not JSON at all. None panics.
#[tokio::test]
async fn a_negative_or_non_numeric_expires_in_is_a_clear_error() {
    for expires_in in ["-1", "-1e20", "\"soon\"", "true", "1e400"] {
        let server = token_endpoint_answering(format!(
            r#"{{"access_token":"at-secret-lifetime","token_type":"Bearer","expires_in":{expires_in}}}"#
        ))
        .await;
        let tokens = TokenManager::new(grant(format!("{}/token", server.url()))).unwrap();
        let err = tokens
            .token()
            .await
            .expect_err(&format!("expires_in {expires_in} accepted"));
        assert!(err.is_transient(), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("expires_in") || text.contains("not JSON"),
            "expires_in {expires_in}: {text}"
        );
        assert!(!text.contains("at-secret-lifetime"), "{text}");
    }
}

/// `expires_in: 0` used to make every call fetch (2,512 token requests for 2,000 calls). Now the
/// lifetime is raised to `min_lifetime`, and fetches are at most one per `min_fetch_interval`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expires_in_zero_does_not_make_every_call_fetch() {
    let server = TokenServer::start().await;
    server.set_expires_in(ExpiresIn::Seconds(0));
    let api = ResourceServer::start(&server).await;
    let tokens = TokenManager::new(grant(server.token_url())).unwrap();
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(AuthorizeMiddleware::new(tokens.clone()).allow_origin(api.url()))
        .build();
    let started = std::time::Instant::now();
    for i in 0..2000 {
        let response = client
            .get(format!("{}/orders/{i}", api.url()))
            .send()
            .await
            .expect("call");
        assert_eq!(response.status(), StatusCode::OK);
    }
    let elapsed = started.elapsed().as_secs();
    // One fetch per second at most (`min_fetch_interval`), plus the first.
    assert!(
        server.requests() as u64 <= elapsed + 2,
        "{} token requests for 2,000 calls in {elapsed} s",
        server.requests()
    );
}

/// Forced refreshes (a callee that refuses every token) are spaced by `min_fetch_interval`, so
/// no server answer can make the caller hammer the token endpoint.
#[tokio::test]
async fn forced_refreshes_are_spaced_by_the_minimum_fetch_interval() {
    let server = TokenServer::start().await;
    let refusing = Hostile::start(|_| {
        let mut r = StatusCode::UNAUTHORIZED.into_response();
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Bearer error="invalid_token""#),
        );
        r
    })
    .await;
    let policy = RefreshPolicy::default().min_fetch_interval(Duration::from_millis(500));
    let tokens = TokenManager::with_policy(grant(server.token_url()), policy).unwrap();
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(AuthorizeMiddleware::new(tokens.clone()).allow_origin(refusing.url()))
        .build();
    for _ in 0..3 {
        let response = client.get(refusing.url()).send().await.expect("call");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let requests = server.recorded();
    assert_eq!(requests.len(), 4, "one cold fetch and one per refusal");
    // Arrival times, while the interval is kept between the starts of the requests: the first
    // one also builds the HTTP client and connects, so it is left out, and 50 ms of variation
    // in flight is tolerated.
    for pair in requests[1..].windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(
            gap >= Duration::from_millis(450),
            "token requests {gap:?} apart"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Item 11: tokens bound to their destinations
// ---------------------------------------------------------------------------------------------

type HyperClient = Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>;

fn hyper_client() -> HyperClient {
    Client::builder(TokioExecutor::new()).build_http()
}

fn get(url: String) -> Request<Empty<Bytes>> {
    Request::get(url).body(Empty::new()).unwrap()
}

fn inbound_token() -> BearerToken {
    BearerToken::from_header(&HeaderValue::from_static("Bearer inbound-token")).unwrap()
}

fn as_error<'a>(err: &'a (dyn std::error::Error + 'static)) -> &'a Error {
    err.downcast_ref::<Error>()
        .unwrap_or_else(|| panic!("not an s2s_auth::Error: {err}"))
}

/// A token source that never fetches (the layer tests need no token endpoint).
#[derive(Clone)]
struct Fixed(BearerToken);

impl TokenSource for Fixed {
    fn current(&self) -> Option<BearerToken> {
        Some(self.0.clone())
    }
    fn token(&self) -> TokenFuture<'_> {
        Box::pin(async move { Ok(self.0.clone()) })
    }
    fn invalidate(&self, _: &BearerToken) {}
}

fn fixed() -> Fixed {
    Fixed(BearerToken::new("service-token").unwrap())
}

fn authorization(hit: &Hit) -> Option<&str> {
    hit.headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

/// `AuthorizeLayer` used to put the token on every request. Now only allowed origins get it;
/// a request to another origin (another port of the same host included) is refused and never
/// sent, with or without a forwarded inbound token.
#[tokio::test]
async fn authorize_layer_sends_tokens_only_to_allowed_origins() {
    let api = Hostile::start(|_| StatusCode::OK.into_response()).await;
    let elsewhere = Hostile::start(|_| StatusCode::OK.into_response()).await;
    let client = ServiceBuilder::new()
        .layer(AuthorizeLayer::new(fixed()).allow_origin(api.url()))
        .service(hyper_client());

    let response = client
        .clone()
        .oneshot(get(format!("{}/orders", api.url())))
        .await;
    assert_eq!(response.expect("allowed").status(), StatusCode::OK);
    assert_eq!(authorization(&api.hits()[0]), Some("Bearer service-token"));

    let err = client
        .clone()
        .oneshot(get(format!("{}/orders", elsewhere.url())))
        .await
        .expect_err("another origin");
    let err = as_error(&*err);
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(
        err.message().contains("not for that origin") && err.message().contains(&api.url()),
        "{err}"
    );

    let mut forwarded = get(format!("{}/on-behalf", elsewhere.url()));
    forwarded.extensions_mut().insert(inbound_token());
    client
        .clone()
        .oneshot(forwarded)
        .await
        .expect_err("a forwarded token to another origin");

    // `localhost` is another origin than `127.0.0.1`, though the same socket.
    let port = api.url().rsplit(':').next().unwrap().to_owned();
    client
        .oneshot(get(format!("http://localhost:{port}/orders")))
        .await
        .expect_err("another host name");
    assert!(elsewhere.hits().is_empty(), "{:?}", elsewhere.hits());
    assert_eq!(api.hits().len(), 1);
}

/// A layer (or middleware) with no allowed origin, or a plain-http one to a host that is not
/// loopback, is a configuration error that says what to write; every request meets it.
#[tokio::test]
async fn an_empty_or_insecure_allow_list_is_a_clear_configuration_error() {
    let api = Hostile::start(|_| StatusCode::OK.into_response()).await;
    let unconfigured = AuthorizeLayer::new(fixed());
    let err = unconfigured.check().expect_err("no origin");
    assert!(err.message().contains("allow_origin"), "{err}");
    let err = ServiceBuilder::new()
        .layer(unconfigured)
        .service(hyper_client())
        .oneshot(get(format!("{}/orders", api.url())))
        .await
        .expect_err("no origin");
    assert!(as_error(&*err).message().contains("allow_origin"), "{err}");

    let plain = AuthorizeLayer::new(fixed()).allow_origin("http://orders.example");
    let err = plain.check().expect_err("plain http to a remote host");
    assert!(err.message().contains("plain http"), "{err}");
    let err = ServiceBuilder::new()
        .layer(plain.clone())
        .service(hyper_client())
        .oneshot(get("http://orders.example/orders".into()))
        .await
        .expect_err("plain http to a remote host");
    assert!(as_error(&*err).message().contains("plain http"), "{err}");
    assert!(plain.allow_insecure_http().check().is_ok());

    let err = AuthorizeLayer::new(fixed())
        .allow_origin("https://orders.example/api")
        .check()
        .expect_err("a URL with a path");
    assert!(err.message().contains("not an origin"), "{err}");

    let middleware = AuthorizeMiddleware::new(fixed());
    assert!(middleware.check().is_err());
    let err = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(middleware)
        .build()
        .get(api.url())
        .send()
        .await
        .expect_err("no origin");
    assert!(err.to_string().contains("allow_origin"), "{err}");
    assert!(api.hits().is_empty());
}

/// The reqwest middleware: the same binding, for its own and forwarded tokens.
#[tokio::test]
async fn reqwest_middleware_sends_tokens_only_to_allowed_origins() {
    let api = Hostile::start(|_| StatusCode::OK.into_response()).await;
    let elsewhere = Hostile::start(|_| StatusCode::OK.into_response()).await;
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(AuthorizeMiddleware::new(fixed()).allow_origin(api.url()))
        .build();
    let response = client.get(format!("{}/orders", api.url())).send().await;
    assert_eq!(response.expect("allowed").status(), StatusCode::OK);
    assert_eq!(authorization(&api.hits()[0]), Some("Bearer service-token"));

    let err = client
        .get(format!("{}/orders", elsewhere.url()))
        .send()
        .await
        .expect_err("another origin");
    let reqwest_middleware::Error::Middleware(err) = err else {
        panic!("not a middleware error: {err}");
    };
    let err = err.downcast_ref::<Error>().expect("an s2s_auth::Error");
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.message().contains("not for that origin"), "{err}");
    client
        .get(format!("{}/on-behalf", elsewhere.url()))
        .with_extension(inbound_token())
        .send()
        .await
        .expect_err("a forwarded token to another origin");
    assert!(elsewhere.hits().is_empty(), "{:?}", elsewhere.hits());
}

/// tower-http's `FollowRedirect` placed around the layer, even with a policy that keeps
/// `Authorization` across origins: the redirected request passes through the layer again and is
/// refused, so the token never reaches the other origin.
#[tokio::test]
async fn follow_redirect_around_the_layer_cannot_carry_the_token_to_another_origin() {
    let elsewhere = Hostile::start(|_| StatusCode::OK.into_response()).await;
    let target = format!("{}/stolen", elsewhere.url());
    let api = Hostile::start(move |_| redirect(307, &target)).await;
    // A careless policy: follow anything, keep every header.
    let policy = Limited::new(5).and::<_, Empty<Bytes>, s2s_auth::layer::authorize::BoxError>(
        FilterCredentials::new().block_none(),
    );
    let client = ServiceBuilder::new()
        .layer(FollowRedirectLayer::with_policy(policy))
        .layer(AuthorizeLayer::new(fixed()).allow_origin(api.url()))
        .service(hyper_client());
    let err = client
        .oneshot(get(format!("{}/orders", api.url())))
        .await
        .expect_err("the redirect to another origin is refused");
    assert!(err.to_string().contains("not for that origin"), "{err}");
    assert_eq!(authorization(&api.hits()[0]), Some("Bearer service-token"));
    assert!(elsewhere.hits().is_empty(), "{:?}", elsewhere.hits());
}

// ---------------------------------------------------------------------------------------------
// Item 12: redirects on token, discovery and JWK set fetches
// ---------------------------------------------------------------------------------------------

/// A 307 from the token endpoint used to re-POST the client's secret to wherever `Location`
/// pointed. Now no redirect of a token request is followed (another origin or not), and the
/// error says where it pointed.
#[tokio::test]
async fn a_token_endpoint_redirect_is_refused_and_credentials_are_not_resent() {
    let elsewhere = Hostile::start(|_| ok("application/json", "{}")).await;
    for (name, target) in [
        ("another origin", format!("{}/token", elsewhere.url())),
        ("the same origin", "/oauth/token".to_owned()),
    ] {
        let location = target.clone();
        let endpoint = Hostile::start(move |_| redirect(307, &location)).await;
        for auth in [
            ClientAuth::SecretPost(SECRET.into()),
            ClientAuth::SecretBasic(SECRET.into()),
        ] {
            let grant =
                ClientCredentials::new(format!("{}/token", endpoint.url()), CLIENT_ID, auth);
            let err = grant.fetch().await.expect_err("a redirect");
            assert!(err.is_transient(), "{name}: {err}");
            let text = err.to_string();
            assert!(
                text.contains("refusing to follow") && text.contains(&target),
                "{name}: {text}"
            );
            assert!(!text.contains(SECRET), "{text}");
        }
        assert_eq!(
            endpoint.hits().len(),
            2,
            "{name}: followed within the origin"
        );
        let hits = endpoint.hits();
        assert!(hits[0].method == Method::POST && hits[0].body.contains("client_secret="));
        assert!(
            endpoint.hits().iter().all(|h| h.path == "/token"),
            "{name}: {:?}",
            endpoint.hits()
        );
    }
    assert!(
        elsewhere.hits().is_empty(),
        "the credentials were re-sent to another origin: {:?}",
        elsewhere.hits()
    );
}

/// A discovery document that redirects to another origin (which could name a token endpoint
/// or key set of its choosing) is refused, and that origin is never asked.
#[tokio::test]
async fn a_discovery_redirect_to_another_origin_is_refused() {
    let elsewhere = Hostile::start(|_| ok("application/json", "{}")).await;
    let target = format!("{}/.well-known/openid-configuration", elsewhere.url());
    let location = target.clone();
    let issuer = Hostile::start(move |_| redirect(302, &location)).await;

    let err = ClientCredentials::discover(
        issuer.url(),
        CLIENT_ID,
        ClientAuth::SecretPost(SECRET.into()),
    )
    .fetch()
    .await
    .expect_err("a redirect to another origin");
    let text = err.to_string();
    assert!(
        text.contains("refusing to follow a redirect to another origin") && text.contains(&target),
        "{text}"
    );

    let verifier = Verifier::builder()
        .issuer(Issuer::discover(issuer.url()))
        .audience("orders-api")
        .build()
        .unwrap();
    let err = verifier.load_keys().await.expect_err("a redirect");
    assert!(err.to_string().contains("another origin"), "{err}");
    assert!(elsewhere.hits().is_empty(), "{:?}", elsewhere.hits());
}

/// A JWK set URL that redirects to another origin is refused; a redirect within the origin is
/// still followed.
#[tokio::test]
async fn a_jwks_redirect_is_followed_only_within_its_origin() {
    let key = TestKey::generate(Algorithm::ES256, "k1");
    let jwks = keys::jwks(&[key.jwk()]).to_string();
    let served = jwks.clone();
    let elsewhere = Hostile::start(move |_| ok("application/json", served.clone())).await;
    let foreign = format!("{}/keys", elsewhere.url());
    let host = Hostile::start(move |hit| match hit.path.as_str() {
        "/moved" => redirect(301, "/keys"),
        "/keys" => ok("application/json", jwks.clone()),
        _ => redirect(302, &foreign),
    })
    .await;
    let verifier = |path: &str| {
        Verifier::builder()
            .issuer(Issuer::jwks(
                "https://issuer.example",
                format!("{}{path}", host.url()),
            ))
            .audience("orders-api")
            .build()
            .unwrap()
    };
    let err = verifier("/jwks")
        .load_keys()
        .await
        .expect_err("another origin");
    let text = err.to_string();
    assert!(
        text.contains("refusing to follow a redirect to another origin")
            && text.contains(&elsewhere.url()),
        "{text}"
    );
    assert!(elsewhere.hits().is_empty(), "{:?}", elsewhere.hits());

    verifier("/moved")
        .load_keys()
        .await
        .expect("a redirect within the origin is followed");
}

// ---------------------------------------------------------------------------------------------
// Item 13: token responses never quoted; shared managers keyed on the whole grant
// ---------------------------------------------------------------------------------------------

/// A 2xx token response that is not JSON (a form-encoded answer, as some servers send without
/// `Accept: application/json`, or JSON broken after a leading newline) used to be quoted in the
/// error and the log line, token included.
#[tokio::test]
async fn a_non_json_2xx_token_response_is_never_quoted() {
    logs();
    const TOKEN: &str = "gho_LeakedTokenValue0123456789";
    for (content_type, body) in [
        (
            "application/x-www-form-urlencoded",
            format!("access_token={TOKEN}&token_type=bearer&scope=orders"),
        ),
        (
            "application/json",
            format!("\n{{\"access_token\": \"{TOKEN}\", \"token_type\": \"Bearer\",}}"),
        ),
        ("text/plain", format!("token: {TOKEN}")),
        (
            "application/json",
            format!(r#"{{"access_token": ["{TOKEN}"], "token_type": "{TOKEN}"}}"#),
        ),
    ] {
        let served = body.clone();
        let server = Hostile::start(move |_| ok(content_type, served.clone())).await;
        let tokens = TokenManager::new(grant(format!("{}/token", server.url()))).unwrap();
        let err = tokens.token().await.expect_err("not a token response");
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains(TOKEN), "{content_type}: {shown}");
        assert!(shown.contains("not shown"), "{shown}");
    }
    assert!(log_text().contains("token fetch failed"));
    assert!(!log_text().contains(TOKEN), "the token reached the log");
}

/// `TokenManager::shared` used to hand the same cached token to grants that differ in their
/// client authentication, extra parameters or HTTP options. Now each differing grant gets its
/// own manager (and its own token request); identical grants still share one.
#[tokio::test]
async fn shared_managers_are_keyed_on_the_whole_grant() {
    let server = TokenServer::start().await;
    let base = || {
        ClientCredentials::new(
            server.token_url(),
            CLIENT_ID,
            ClientAuth::SecretBasic("secret-one".into()),
        )
        .scope("orders:read")
    };
    let key = || {
        let pem = TestKey::generate(Algorithm::EdDSA, "client").private_pem();
        ClientAuth::private_key_pem(s2s_auth::Algorithm::EdDSA, pem.as_bytes(), None).unwrap()
    };
    let grants = [
        base().auth(ClientAuth::SecretBasic("secret-one".into())),
        base().auth(ClientAuth::SecretBasic("secret-two".into())),
        base().auth(ClientAuth::SecretPost("secret-one".into())),
        base().auth(key()),
        base().auth(key()),
        base()
            .auth(ClientAuth::SecretBasic("secret-one".into()))
            .param("tenant", "blue"),
        base()
            .auth(ClientAuth::SecretBasic("secret-one".into()))
            .http(HttpOptions::new().max_body(4096)),
    ];
    let managers: Vec<TokenManager> = grants
        .iter()
        .map(|g| TokenManager::shared(g.clone()).unwrap())
        .collect();
    let mut tokens = Vec::new();
    for manager in &managers {
        tokens.push(manager.token().await.unwrap().as_str().to_owned());
    }
    assert_eq!(server.requests(), grants.len(), "grants shared a token");
    tokens.sort();
    tokens.dedup();
    assert_eq!(tokens.len(), grants.len());

    // The same grant again (scopes in another order): the same manager, no new request.
    let again = TokenManager::shared(
        ClientCredentials::new(
            server.token_url(),
            CLIENT_ID,
            ClientAuth::SecretBasic("secret-one".into()),
        )
        .scope("orders:read"),
    )
    .unwrap();
    again.token().await.unwrap();
    assert_eq!(server.requests(), grants.len());
    drop(managers);
}
