//! The outbound path end to end, over real HTTP on 127.0.0.1: a [`TokenServer`] the tests control
//! issues tokens (and counts and records every request), a [`ResourceServer`] accepts only the
//! latest token issued, and `TokenManager`, `AuthorizeLayer` (over a hyper-util client) and the
//! reqwest middleware sit between them.
//!
//! Time: the tests about refresh schedules, outages and back-off run on a paused tokio clock that
//! stands still while bytes move ([`ClockHold`]) and moves only with `advance`, one second at a
//! time, so "no caller waits" is checked at every second of several token lifetimes. Nothing
//! sleeps to wait for a race: waits poll a condition under a real-time deadline
//! ([`wait_until`]), and concurrent callers are known to be queued because each has been polled
//! and found pending.

use std::{
    collections::HashSet,
    future::{Future, poll_fn},
    io,
    pin::pin,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{
    body::Bytes,
    http::{HeaderValue, Request, StatusCode, header::AUTHORIZATION},
};
use base64::{
    Engine as _,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use futures_util::FutureExt as _;
use http_body_util::Empty;
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use jsonwebtoken::Algorithm;
use s2s_auth::{
    AuthorizeLayer, BearerToken, Code, Error, ErrorKind,
    fetch::HttpOptions,
    middleware::AuthorizeMiddleware,
    token::{ClientAuth, ClientCredentials, TokenManager, TokenSource},
};
use s2s_tests::{
    keys::{self, TestKey},
    token_server::{ExpiresIn, Reply, ResourceServer, TokenFormat, TokenRequest, TokenServer},
};
use serde_json::Value;
use tokio::time::{Instant, advance};
use tower::{ServiceBuilder, ServiceExt as _};

const CLIENT_ID: &str = "billing-service";
const SECRET: &str = "s3cret-Q7x!never-logged";
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// The grant against `server` for [`CLIENT_ID`], `client_secret_basic` with [`SECRET`].
fn grant(server: &TokenServer) -> ClientCredentials {
    ClientCredentials::new(
        server.token_url(),
        CLIENT_ID,
        ClientAuth::SecretBasic(SECRET.into()),
    )
}

fn manager(server: &TokenServer) -> TokenManager {
    TokenManager::new(grant(server)).expect("a valid grant")
}

/// While alive, a paused tokio clock does not auto-advance (tokio never auto-advances while a
/// `spawn_blocking` task runs), so real sockets can be awaited with time standing still and the
/// clock moves only with `advance`.
struct ClockHold {
    _release: std::sync::mpsc::Sender<()>,
}

impl ClockHold {
    fn new() -> ClockHold {
        let (release, held) = std::sync::mpsc::channel::<()>();
        tokio::task::spawn_blocking(move || {
            let _ = held.recv();
        });
        ClockHold { _release: release }
    }
}

/// Yields until `condition` holds; fails after 10 s of real time. Yielding never advances a
/// paused clock.
async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::task::yield_now().await;
    }
}

/// Lets whatever a clock step woke (a due refresh) run, then waits until every request that
/// reached the token endpoint has been answered and taken in by the manager.
async fn settle(server: &TokenServer, tokens: &TokenManager) {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    wait_until("the token requests in flight are answered", || {
        tokens.metrics().fetches == server.requests() as u64
    })
    .await;
}

/// One second of paused time, then [`settle`].
async fn tick(server: &TokenServer, tokens: &TokenManager) {
    advance(Duration::from_secs(1)).await;
    settle(server, tokens).await;
}

/// A token now, from memory: panics when the caller would have to wait.
fn token_without_waiting(tokens: &TokenManager, at: u64) -> BearerToken {
    tokens
        .token()
        .now_or_never()
        .unwrap_or_else(|| panic!("at t = {at} s a caller had to wait for the token endpoint"))
        .unwrap_or_else(|e| panic!("at t = {at} s a caller got an error: {e}"))
}

/// Whole seconds from `start` to each recorded request that `keep` selects.
fn seconds_of(
    requests: &[TokenRequest],
    start: Instant,
    keep: impl Fn(&TokenRequest) -> bool,
) -> Vec<u64> {
    requests
        .iter()
        .filter(|r| keep(r))
        .map(|r| (r.at - start).as_secs())
        .collect()
}

/// Decodes one `application/x-www-form-urlencoded` value.
fn form_decode(encoded: &str) -> String {
    let form = format!("v={encoded}");
    let pairs: Vec<_> = url::form_urlencoded::parse(form.as_bytes()).collect();
    assert_eq!(pairs.len(), 1, "`{encoded}` is not one form-encoded value");
    pairs[0].1.clone().into_owned()
}

fn decode_json(segment: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).expect("base64url segment"))
        .expect("JSON segment")
}

fn alg_name(alg: Algorithm) -> String {
    serde_json::to_value(alg)
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned()
}

/// A client key pair for `private_key_jwt`, generated here with aws-lc-rs: the private key as
/// PKCS#8 PEM (what a user configures) and what the authorization server verifies with.
struct ClientKey {
    alg: Algorithm,
    private_pem: String,
    public: Vec<u8>,
    verification: &'static dyn aws_lc_rs::signature::VerificationAlgorithm,
}

impl ClientKey {
    fn generate(alg: Algorithm) -> ClientKey {
        use aws_lc_rs::{
            encoding::{AsDer, Pkcs8V1Der},
            rsa::KeySize,
            signature::{self as sig, KeyPair as _},
        };
        let (pkcs8, public, verification): (
            Vec<u8>,
            Vec<u8>,
            &'static dyn sig::VerificationAlgorithm,
        ) = match alg {
            Algorithm::ES256 => {
                let pair =
                    sig::EcdsaKeyPair::generate(&sig::ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
                (
                    pair.to_pkcs8v1().unwrap().as_ref().to_vec(),
                    pair.public_key().as_ref().to_vec(),
                    &sig::ECDSA_P256_SHA256_FIXED,
                )
            }
            Algorithm::RS256 => {
                let pair = aws_lc_rs::rsa::KeyPair::generate(KeySize::Rsa2048).unwrap();
                (
                    AsDer::<Pkcs8V1Der>::as_der(&pair)
                        .unwrap()
                        .as_ref()
                        .to_vec(),
                    pair.public_key().as_ref().to_vec(),
                    &sig::RSA_PKCS1_2048_8192_SHA256,
                )
            }
            Algorithm::EdDSA => {
                let pair = sig::Ed25519KeyPair::generate().unwrap();
                (
                    pair.to_pkcs8().unwrap().as_ref().to_vec(),
                    pair.public_key().as_ref().to_vec(),
                    &sig::ED25519,
                )
            }
            other => panic!("no client key for {other:?}"),
        };
        let mut private_pem = String::from("-----BEGIN PRIVATE KEY-----\n");
        for line in STANDARD.encode(pkcs8).as_bytes().chunks(64) {
            private_pem.push_str(std::str::from_utf8(line).unwrap());
            private_pem.push('\n');
        }
        private_pem.push_str("-----END PRIVATE KEY-----\n");
        ClientKey {
            alg,
            private_pem,
            public,
            verification,
        }
    }

    fn auth(&self, kid: &str) -> ClientAuth {
        let alg = alg_name(self.alg)
            .parse()
            .expect("a JWS algorithm of the crate");
        ClientAuth::private_key_pem(alg, self.private_pem.as_bytes(), Some(kid.to_owned()))
            .expect("the PEM private key is accepted")
    }

    /// Whether `jwt`'s signature verifies with this public key.
    fn verifies(&self, jwt: &str) -> bool {
        let (input, signature) = jwt.rsplit_once('.').expect("a compact JWS");
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .expect("base64url signature");
        aws_lc_rs::signature::UnparsedPublicKey::new(self.verification, &self.public)
            .verify(input.as_bytes(), &signature)
            .is_ok()
    }
}

/// The token server's checks of a `private_key_jwt` request (RFC 7523 §3, §2.2): the assertion
/// signed by the client's key, `iss` = `sub` = client id, `aud` = the token endpoint, a short
/// `exp`, a `jti`. Returns the `jti`.
fn check_assertion(request: &TokenRequest, key: &ClientKey, kid: &str, token_url: &str) -> String {
    assert_eq!(
        request.header("authorization"),
        None,
        "no Basic credentials"
    );
    assert_eq!(request.form_value("grant_type"), "client_credentials");
    assert_eq!(request.form_value("client_id"), CLIENT_ID);
    assert_eq!(request.form_value("client_assertion_type"), ASSERTION_TYPE);
    assert!(request.form_values("client_secret").is_empty());
    let jwt = request.form_value("client_assertion");
    let segments: Vec<&str> = jwt.split('.').collect();
    assert_eq!(segments.len(), 3, "a compact JWS: {jwt}");
    let header = decode_json(segments[0]);
    assert_eq!(header["alg"], alg_name(key.alg), "{header}");
    assert_eq!(header["kid"], kid, "{header}");
    assert!(
        key.verifies(jwt),
        "the {:?} signature does not verify",
        key.alg
    );
    let claims = decode_json(segments[1]);
    assert_eq!(claims["iss"], CLIENT_ID, "{claims}");
    assert_eq!(claims["sub"], CLIENT_ID, "{claims}");
    assert_eq!(claims["aud"], token_url, "{claims}");
    let now = keys::now();
    let exp = claims["exp"].as_u64().expect("numeric exp");
    assert!(
        exp > now && exp <= now + 65,
        "exp must be short (about 60 s): exp - now = {}",
        exp as i64 - now as i64
    );
    if let Some(iat) = claims["iat"].as_u64() {
        assert!(iat <= now + 1 && exp - iat <= 60, "{claims}");
    }
    let jti = claims["jti"].as_str().expect("a jti").to_owned();
    assert!(jti.len() >= 16, "jti too short to be unique: {jti}");
    jti
}

/// Every log line of this test binary, captured by a global `tracing-subscriber` that the first
/// test installs before any event is recorded: [`token_server`] calls this first, so no callsite
/// is registered without it. (A scoped `set_default` subscriber would miss events now and then:
/// a callsite that another test's thread registers while the scoped one is being set up can
/// cache "never interested".)
fn logs() -> &'static Logs {
    static LOGS: OnceLock<Logs> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Logs::default();
        let writer = logs.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing_subscriber::filter::LevelFilter::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .try_init()
            .expect("the only global subscriber");
        logs
    })
}

/// A [`TokenServer`], with [`logs`] captured.
async fn token_server() -> TokenServer {
    logs();
    TokenServer::start().await
}

/// Captured log lines (a `tracing-subscriber` fmt writer).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

// ---------------------------------------------------------------------------------------------
// Single flight
// ---------------------------------------------------------------------------------------------

/// 1,000 tasks call `token()` on a cold manager while the token endpoint holds the one request it
/// got; each caller is counted once it has been polled and found pending, so all are known to be
/// queued before the endpoint answers.
async fn thousand_cold_callers(
    reply: Reply,
) -> (TokenServer, TokenManager, Vec<Result<BearerToken, Error>>) {
    let server = token_server().await;
    server.set_reply(reply);
    server.hold();
    let tokens = manager(&server);
    let waiting = Arc::new(AtomicUsize::new(0));
    let callers: Vec<_> = (0..1000)
        .map(|_| {
            let tokens = tokens.clone();
            let waiting = waiting.clone();
            tokio::spawn(async move {
                let mut call = pin!(tokens.token());
                let mut counted = false;
                poll_fn(|cx| {
                    let poll = call.as_mut().poll(cx);
                    if poll.is_pending() && !counted {
                        counted = true;
                        waiting.fetch_add(1, Ordering::SeqCst);
                    }
                    poll
                })
                .await
            })
        })
        .collect();
    wait_until("all 1,000 callers wait for a token", || {
        waiting.load(Ordering::SeqCst) == 1000
    })
    .await;
    wait_until("the token request arrived", || server.requests() >= 1).await;
    assert_eq!(server.requests(), 1, "callers sent parallel token requests");
    server.release();
    let mut outcomes = Vec::new();
    for caller in callers {
        outcomes.push(caller.await.expect("caller task"));
    }
    (server, tokens, outcomes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_concurrent_cold_callers_share_one_token_request() {
    let (server, tokens, outcomes) = thousand_cold_callers(Reply::Token).await;
    let issued = server.latest_token().expect("a token was issued");
    for outcome in outcomes {
        assert_eq!(
            outcome.expect("every caller gets the token").as_str(),
            issued
        );
    }
    assert_eq!(server.requests(), 1);
    assert_eq!(server.issued().len(), 1);
    let metrics = tokens.metrics();
    assert_eq!(metrics.fetches, 1);
    assert_eq!(metrics.failures, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_concurrent_cold_callers_share_one_failed_token_request() {
    let (server, tokens, outcomes) = thousand_cold_callers(Reply::Status(503)).await;
    for outcome in outcomes {
        let err = outcome.expect_err("no token: the endpoint is down");
        assert!(err.is_transient(), "{err}");
        assert_eq!(err.status(), Some(StatusCode::SERVICE_UNAVAILABLE), "{err}");
    }
    assert_eq!(
        server.requests(),
        1,
        "the failure was shared, not retried per caller"
    );
    assert_eq!(tokens.metrics().failures, 1);
}

// ---------------------------------------------------------------------------------------------
// Refresh ahead of expiry (paused time)
// ---------------------------------------------------------------------------------------------

/// `expires_in` of these tests. With the default policy the refresh is due 75% into the life
/// minus up to 5% jitter (420..=450 s) and the token is served until 10 s before it expires
/// (590 s).
const LIFETIME: u64 = 600;
const REFRESH: std::ops::RangeInclusive<u64> = 420..=450;
const USABLE: u64 = 590;

#[tokio::test(start_paused = true)]
async fn background_refresh_runs_before_expiry_and_no_caller_ever_waits() {
    let _clock = ClockHold::new();
    let server = token_server().await;
    server.set_expires_in(ExpiresIn::Seconds(LIFETIME));
    let tokens = manager(&server);
    let start = Instant::now();
    let first = tokens.token().await.expect("warm-up token");
    assert_eq!(server.requests(), 1);

    let mut served = vec![first.as_str().to_owned()];
    for at in 1..=10 * LIFETIME {
        tick(&server, &tokens).await;
        let token = token_without_waiting(&tokens, at);
        if served.last().map(String::as_str) != Some(token.as_str()) {
            served.push(token.as_str().to_owned());
        }
    }

    let requests = server.recorded();
    let times = seconds_of(&requests, start, |_| true);
    // One request per token: each next one 70..75% into the life of the one before (a one
    // second step of tolerance for a request that left at the end of a step).
    for pair in times.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            (REFRESH.start() - 1..=REFRESH.end() + 1).contains(&gap),
            "a refresh {gap} s after the token before it (lifetime {LIFETIME} s): {times:?}"
        );
    }
    let last = *times.last().unwrap();
    assert!(
        10 * LIFETIME - last <= REFRESH.end() + 1,
        "the last token was not refreshed in time: {times:?}"
    );
    assert!((14..=15).contains(&times.len()), "{times:?}");
    assert!(requests.iter().all(|r| r.status == Some(StatusCode::OK)));
    // Every token issued was served, in order: each new one as soon as it came.
    assert_eq!(served, server.issued());
    let metrics = tokens.metrics();
    assert_eq!(metrics.fetches, times.len() as u64);
    assert_eq!(metrics.failures, 0);
    assert!(metrics.warm_hits >= 10 * LIFETIME, "{metrics:?}");
}

/// A forced refresh that brings a token of a much shorter life: the background refresh follows
/// the new token's schedule, not the old one's, so no caller ever waits.
#[tokio::test(start_paused = true)]
async fn a_forced_refresh_with_a_shorter_life_is_refreshed_on_its_own_schedule() {
    let _clock = ClockHold::new();
    let server = token_server().await;
    server.set_expires_in(ExpiresIn::Seconds(LIFETIME));
    let tokens = manager(&server);
    let long = tokens.token().await.expect("first token");
    // Let the background task schedule on the long-lived token.
    tick(&server, &tokens).await;
    // A callee refuses it; the token that replaces it lives 60 s (refresh due 27..30 s in,
    // usable until 54 s), while the old schedule said ~420 s.
    server.set_expires_in(ExpiresIn::Seconds(60));
    tokens.invalidate(&long);
    let short = tokens.token().await.expect("forced refresh");
    assert_eq!(server.requests(), 2);
    for at in 2..=59 {
        tick(&server, &tokens).await;
        token_without_waiting(&tokens, at);
    }
    assert!(
        server.requests() >= 3,
        "no background refresh of the short token"
    );
    let held = tokens.current().expect("a token");
    assert_ne!(held.as_str(), short.as_str());
    assert_eq!(tokens.metrics().forced_refreshes, 1);
}

#[tokio::test(start_paused = true)]
async fn an_outage_longer_than_the_refresh_window_fails_no_call() {
    // The endpoint answers 503 from t = 100 s to t = 540 s: 440 s, longer than the whole window
    // from the due refresh to the token's end (140..=170 s), shorter than its 600 s life.
    const DOWN: u64 = 100;
    const UP: u64 = 540;
    let _clock = ClockHold::new();
    let server = token_server().await;
    server.set_expires_in(ExpiresIn::Seconds(LIFETIME));
    let tokens = manager(&server);
    let start = Instant::now();
    let first = tokens.token().await.expect("warm-up token");

    for at in 1..=2 * LIFETIME {
        if at == DOWN {
            server.set_reply(Reply::Status(503));
        }
        if at == UP {
            server.set_reply(Reply::Token);
        }
        tick(&server, &tokens).await;
        let token = token_without_waiting(&tokens, at);
        if at < UP {
            assert!(token.same_as(&first), "a new token during the outage");
        }
    }

    let requests = server.recorded();
    let failed = seconds_of(&requests, start, |r| {
        r.status == Some(StatusCode::SERVICE_UNAVAILABLE)
    });
    let ok = seconds_of(&requests, start, |r| r.status == Some(StatusCode::OK));
    assert!(
        failed.len() >= 5,
        "the refresh was not retried through the outage: {failed:?}"
    );
    assert!(
        REFRESH.contains(&failed[0]),
        "the first refresh attempt at {} s: {failed:?}",
        failed[0]
    );
    assert!(failed.iter().all(|t| (DOWN..UP).contains(t)));
    // Exponential, jittered, bounded back-off: 0.5..1 s first, doubling, at most 30 s.
    let gaps: Vec<u64> = failed.windows(2).map(|p| p[1] - p[0]).collect();
    assert!(gaps[0] <= 2, "first retry after {} s: {failed:?}", gaps[0]);
    assert!(
        gaps.iter().all(|g| *g <= 31),
        "back-off above 30 s: {failed:?}"
    );
    assert!(
        gaps.iter().max().unwrap() >= &15,
        "back-off did not grow: {failed:?}"
    );
    assert!(failed.len() <= 16, "too many retries: {failed:?}");
    // Recovered before the held token ran out, then back on schedule.
    assert_eq!(ok[0], 0);
    assert!(
        (UP..USABLE).contains(&ok[1]),
        "the token was replaced at {} s: {ok:?}",
        ok[1]
    );
    let metrics = tokens.metrics();
    assert_eq!(metrics.failures, failed.len() as u64);
    assert_eq!(metrics.fetches, requests.len() as u64);
}

#[tokio::test(start_paused = true)]
async fn a_refused_refresh_keeps_serving_the_held_token_then_reports_what_to_fix() {
    let _clock = ClockHold::new();
    let server = token_server().await;
    server.set_expires_in(ExpiresIn::Seconds(LIFETIME));
    let tokens = manager(&server);
    let first = tokens.token().await.expect("warm-up token");
    server.set_reply(Reply::oauth("invalid_client")); // e.g. the client's secret was rotated

    for at in 1..USABLE {
        tick(&server, &tokens).await;
        assert!(token_without_waiting(&tokens, at).same_as(&first));
    }
    assert!(tokens.metrics().failures >= 1, "no refresh was attempted");
    tick(&server, &tokens).await;
    assert!(tokens.current().is_none(), "a token served past its end");
    let err = tokens.token().await.expect_err("no valid token left");
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert_eq!(err.code(), Some(Code::InvalidClient), "{err}");
}

#[tokio::test(start_paused = true)]
async fn without_expires_in_a_jwt_lives_until_its_exp() {
    let _clock = ClockHold::new();
    let server = token_server().await;
    server.set_expires_in(ExpiresIn::Omitted);
    server.set_format(TokenFormat::Jwt {
        key: TestKey::generate(Algorithm::ES256, "as-1"),
        lifetime: Duration::from_secs(LIFETIME),
    });
    let tokens = manager(&server);
    let first = tokens.token().await.expect("warm-up token");
    // Scheduled on the JWT's 600 s, not on the 60 s default for tokens of unknown lifetime.
    for at in 1..REFRESH.start() - 2 {
        tick(&server, &tokens).await;
        assert!(token_without_waiting(&tokens, at).same_as(&first));
    }
    assert_eq!(server.requests(), 1);
    for _ in REFRESH.start() - 2..=REFRESH.end() + 1 {
        tick(&server, &tokens).await;
    }
    assert_eq!(
        server.requests(),
        2,
        "the JWT was not refreshed before its exp"
    );
}

#[tokio::test(start_paused = true)]
async fn without_expires_in_an_opaque_token_gets_the_short_default_lifetime() {
    let _clock = ClockHold::new();
    let server = token_server().await;
    server.set_expires_in(ExpiresIn::Omitted);
    let tokens = manager(&server);
    tokens.token().await.expect("warm-up token");
    // Default 60 s: refreshed at 27..=30 s.
    for at in 1..=26 {
        tick(&server, &tokens).await;
        token_without_waiting(&tokens, at);
    }
    assert_eq!(server.requests(), 1);
    for at in 27..=31 {
        tick(&server, &tokens).await;
        token_without_waiting(&tokens, at);
    }
    assert_eq!(server.requests(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_failed_cold_fetch_is_shared_for_the_retry_interval() {
    let _clock = ClockHold::new();
    let server = token_server().await;
    server.set_reply(Reply::Status(503));
    let tokens = manager(&server);
    let err = tokens.token().await.expect_err("the endpoint is down");
    assert!(err.is_transient(), "{err}");
    let again = tokens
        .token()
        .await
        .expect_err("still within the retry interval");
    assert_eq!(again.status(), Some(StatusCode::SERVICE_UNAVAILABLE));
    assert_eq!(server.requests(), 1, "retried at once");
    server.set_reply(Reply::Token);
    advance(Duration::from_secs(1)).await;
    tokens.token().await.expect("retried after the interval");
    assert_eq!(server.requests(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_rate_limited_refresh_waits_as_long_as_retry_after_says() {
    let _clock = ClockHold::new();
    let server = token_server().await;
    server.set_expires_in(ExpiresIn::Seconds(LIFETIME));
    let tokens = manager(&server);
    let start = Instant::now();
    let first = tokens.token().await.expect("warm-up token");
    server.set_reply(Reply::RateLimited { retry_after: 20 });
    for at in 1..USABLE {
        tick(&server, &tokens).await;
        assert!(token_without_waiting(&tokens, at).same_as(&first));
    }
    let limited = seconds_of(&server.recorded(), start, |r| {
        r.status == Some(StatusCode::TOO_MANY_REQUESTS)
    });
    assert!(REFRESH.contains(&limited[0]), "{limited:?}");
    assert!(limited.len() >= 4, "not retried: {limited:?}");
    for gap in limited.windows(2).map(|p| p[1] - p[0]) {
        assert!(
            (20..=31).contains(&gap),
            "retried {gap} s after `429 Retry-After: 20`: {limited:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_rate_limited_cold_fetch_is_not_retried_before_retry_after() {
    let _clock = ClockHold::new();
    let server = token_server().await;
    server.set_reply(Reply::RateLimited { retry_after: 5 });
    let tokens = manager(&server);
    let err = tokens.token().await.expect_err("rate limited");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(5)));
    server.set_reply(Reply::Token);
    for _ in 1..5 {
        advance(Duration::from_secs(1)).await;
        let again = tokens.token().await.expect_err("within Retry-After");
        assert_eq!(again.status(), Some(StatusCode::TOO_MANY_REQUESTS));
        assert_eq!(server.requests(), 1, "asked again before Retry-After");
    }
    advance(Duration::from_secs(1)).await;
    tokens.token().await.expect("asked again after Retry-After");
    assert_eq!(server.requests(), 2);
}

// ---------------------------------------------------------------------------------------------
// Errors of the token endpoint
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn invalid_client_is_a_permanent_error_that_says_what_to_fix() {
    let server = token_server().await;
    server.set_reply(Reply::OAuth {
        status: 401,
        error: "invalid_client".into(),
        description: Some("client authentication failed".into()),
        code: None,
    });
    let tokens = manager(&server);
    let err = tokens.token().await.expect_err("refused");
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(!err.is_transient());
    assert_eq!(err.code(), Some(Code::InvalidClient));
    assert_eq!(err.oauth_error(), Some("invalid_client"));
    assert_eq!(err.status(), Some(StatusCode::UNAUTHORIZED));
    let text = err.to_string();
    assert!(text.starts_with("AUTH_101: "), "{text}");
    for what in [
        "invalid_client",
        "client authentication failed",
        CLIENT_ID,
        "secret",
    ] {
        assert!(text.contains(what), "`{what}` missing from: {text}");
    }
    assert!(!text.contains(SECRET), "{text}");
    assert_eq!(server.requests(), 1);
    assert_eq!(tokens.metrics().failures, 1);
}

#[tokio::test]
async fn oauth_errors_are_classified_with_their_stable_codes() {
    let server = token_server().await;
    let cases = [
        (
            Reply::oauth("invalid_scope"),
            ErrorKind::Config,
            Some(Code::InsufficientScope),
            "scope",
        ),
        (
            Reply::OAuth {
                status: 401,
                error: "unauthorized_client".into(),
                description: Some("service account disabled".into()),
                code: Some("AUTH_103".into()),
            },
            ErrorKind::Config,
            Some(Code::AccountDisabled),
            "service account disabled",
        ),
        (
            Reply::OAuth {
                status: 403,
                error: "unauthorized_client".into(),
                description: None,
                code: Some("AUTH_104".into()),
            },
            ErrorKind::Config,
            Some(Code::IpNotAllowed),
            "unauthorized_client",
        ),
        (
            Reply::oauth("unsupported_grant_type"),
            ErrorKind::Config,
            None,
            "unsupported_grant_type",
        ),
        (
            Reply::OAuth {
                status: 503,
                error: "temporarily_unavailable".into(),
                description: None,
                code: None,
            },
            ErrorKind::Transient,
            None,
            "temporarily_unavailable",
        ),
    ];
    for (reply, kind, code, says) in cases {
        server.set_reply(reply.clone());
        let err = grant(&server).fetch().await.expect_err("refused");
        assert_eq!(err.kind(), kind, "{reply:?}: {err}");
        assert_eq!(err.code(), code, "{reply:?}: {err}");
        assert!(err.to_string().contains(says), "{reply:?}: {err}");
    }
}

#[tokio::test]
async fn an_html_error_page_gives_the_status_and_a_short_excerpt() {
    let server = token_server().await;
    server.set_reply(Reply::Html(500));
    let tokens = manager(&server);
    let err = tokens.token().await.expect_err("500");
    assert!(err.is_transient(), "{err}");
    assert_eq!(err.status(), Some(StatusCode::INTERNAL_SERVER_ERROR));
    let message = err.message();
    assert!(message.contains("500 Internal Server Error"), "{message}");
    // The excerpt: the page's text, not its markup, and short.
    assert!(
        message.matches("Internal Server Error").count() >= 2,
        "no excerpt of the page: {message}"
    );
    assert!(
        !message.contains('<') && !message.contains('>'),
        "{message}"
    );
    assert!(
        message.chars().count() < 300,
        "{} chars: {message}",
        message.len()
    );
    assert!(!message.contains("padding padding padding"), "{message}");

    server.set_reply(Reply::Status(503));
    let err = grant(&server).fetch().await.expect_err("503");
    assert!(err.is_transient());
    assert_eq!(err.status(), Some(StatusCode::SERVICE_UNAVAILABLE));
    assert!(err.message().contains("injected failure"), "{err}");

    // A client error that is not OAuth JSON is not worth retrying.
    server.set_reply(Reply::Html(404));
    let err = grant(&server).fetch().await.expect_err("404");
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.message().contains("404 Not Found"), "{err}");
}

#[tokio::test]
async fn rate_limiting_is_transient_with_retry_after() {
    let server = token_server().await;
    server.set_reply(Reply::RateLimited { retry_after: 7 });
    let err = grant(&server).fetch().await.expect_err("429");
    assert!(err.is_transient(), "{err}");
    assert_eq!(err.status(), Some(StatusCode::TOO_MANY_REQUESTS));
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
    assert!(err.message().contains("429"), "{err}");

    server.set_reply(Reply::OAuth {
        status: 429,
        error: "rate_limited".into(),
        description: None,
        code: Some("AUTH_106".into()),
    });
    let err = grant(&server).fetch().await.expect_err("429");
    assert!(err.is_transient(), "{err}");
    assert_eq!(err.code(), Some(Code::RateLimited));
}

// ---------------------------------------------------------------------------------------------
// The token response
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn token_type_is_case_insensitive_and_only_bearer_is_accepted() {
    let server = token_server().await;
    for token_type in ["bearer", "BEARER", "Bearer", "bEaReR"] {
        server.set_token_type(token_type);
        let token = manager(&server)
            .token()
            .await
            .unwrap_or_else(|e| panic!("token_type `{token_type}` refused: {e}"));
        assert_eq!(token.as_str(), server.latest_token().unwrap());
    }
    for token_type in ["DPoP", "mac", "N_A"] {
        server.set_token_type(token_type);
        let tokens = manager(&server);
        let err = tokens
            .token()
            .await
            .expect_err("only Bearer tokens can be sent");
        assert_eq!(err.kind(), ErrorKind::Config, "{err}");
        assert!(err.message().contains(token_type), "{err}");
        assert!(err.message().contains("Bearer"), "{err}");
        assert!(!err.to_string().contains(&server.latest_token().unwrap()));
    }
}

#[tokio::test]
async fn expires_in_as_number_string_or_from_the_jwt_exp() {
    let server = token_server().await;
    let cases = [
        (
            ExpiresIn::Seconds(3600),
            TokenFormat::Opaque,
            Some(3600..=3600),
        ),
        (
            ExpiresIn::Text("3600".into()),
            TokenFormat::Opaque,
            Some(3600..=3600),
        ),
        (ExpiresIn::Omitted, TokenFormat::Opaque, None),
        (
            ExpiresIn::Omitted,
            TokenFormat::Jwt {
                key: TestKey::generate(Algorithm::ES256, "as-1"),
                lifetime: Duration::from_secs(300),
            },
            Some(298..=300),
        ),
        // `expires_in`, when given, wins over the JWT's `exp`.
        (
            ExpiresIn::Seconds(120),
            TokenFormat::Jwt {
                key: TestKey::generate(Algorithm::ES256, "as-1"),
                lifetime: Duration::from_secs(300),
            },
            Some(120..=120),
        ),
    ];
    for (expires_in, format, expected) in cases {
        server.set_expires_in(expires_in.clone());
        server.set_format(format.clone());
        let response = grant(&server).fetch().await.expect("token");
        let secs = response.expires_in.map(|d| d.as_secs());
        match expected {
            Some(range) => assert!(
                secs.is_some_and(|s| range.contains(&s)),
                "{expires_in:?} {format:?}: {secs:?}"
            ),
            None => assert_eq!(secs, None, "{expires_in:?} {format:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The wire format of the grant
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn client_secret_basic_form_encodes_id_and_secret_before_base64() {
    const ID: &str = "billing:svc é+1";
    const TRICKY: &str = "p:ss%20w+rd/&=é€ ü";
    let server = token_server().await;
    let grant = ClientCredentials::new(
        server.token_url(),
        ID,
        ClientAuth::SecretBasic(TRICKY.into()),
    );
    grant.fetch().await.expect("token");

    let request = &server.recorded()[0];
    assert_eq!(request.method, "POST");
    assert_eq!(
        request.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(request.header("accept"), Some("application/json"));
    let basic = request
        .header("authorization")
        .and_then(|v| v.strip_prefix("Basic "))
        .expect("Basic credentials");
    let decoded = String::from_utf8(STANDARD.decode(basic).expect("base64")).expect("ASCII");
    // RFC 6749 §2.3.1: each part form-urlencoded, so the separator is the only `:`.
    assert_eq!(decoded.matches(':').count(), 1, "{decoded}");
    assert!(decoded.is_ascii(), "{decoded}");
    let (id, secret) = decoded.split_once(':').unwrap();
    assert_eq!(form_decode(id), ID);
    assert_eq!(form_decode(secret), TRICKY);
    // Nothing about the client in the body.
    assert_eq!(
        request.form,
        vec![("grant_type".to_owned(), "client_credentials".to_owned())]
    );
}

#[tokio::test]
async fn client_secret_post_sends_id_and_secret_in_the_form() {
    const TRICKY: &str = "p:ss%20w+rd/&=é€ ü";
    let server = token_server().await;
    let grant = ClientCredentials::new(
        server.token_url(),
        CLIENT_ID,
        ClientAuth::SecretPost(TRICKY.into()),
    );
    grant.fetch().await.expect("token");

    let request = &server.recorded()[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.header("authorization"), None);
    assert_eq!(
        request.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(request.form_value("grant_type"), "client_credentials");
    assert_eq!(request.form_value("client_id"), CLIENT_ID);
    assert_eq!(request.form_value("client_secret"), TRICKY);
    assert_eq!(request.form.len(), 3, "{:?}", request.form);
    assert!(
        !request.body.contains(TRICKY),
        "sent unencoded: {}",
        request.body
    );
}

#[tokio::test]
async fn private_key_jwt_sends_a_signed_short_lived_unique_assertion() {
    let server = token_server().await;
    for alg in [Algorithm::ES256, Algorithm::RS256, Algorithm::EdDSA] {
        let key = ClientKey::generate(alg);
        let kid = format!("billing-{}", alg_name(alg));
        let grant = ClientCredentials::new(server.token_url(), CLIENT_ID, key.auth(&kid));
        let before = server.requests();
        grant.fetch().await.expect("first token");
        grant.fetch().await.expect("second token");
        let requests = &server.recorded()[before..];
        assert_eq!(requests.len(), 2);
        let jtis: HashSet<String> = requests
            .iter()
            .map(|r| check_assertion(r, &key, &kid, &server.token_url()))
            .collect();
        assert_eq!(jtis.len(), 2, "{alg:?}: the jti was reused");
        // The check can fail: another key does not verify the assertion.
        let other = ClientKey::generate(alg);
        assert!(!other.verifies(requests[0].form_value("client_assertion")));
    }
}

#[tokio::test]
async fn private_key_jwt_audience_is_the_discovered_token_endpoint() {
    let server = token_server().await;
    let key = ClientKey::generate(Algorithm::ES256);
    let tokens = TokenManager::new(ClientCredentials::discover(
        server.url(),
        CLIENT_ID,
        key.auth("k1"),
    ))
    .unwrap();
    let first = tokens.token().await.expect("token");
    tokens.invalidate(&first);
    tokens.token().await.expect("second token");
    assert_eq!(server.discovery_hits(), 1, "metadata fetched again");
    let requests = server.recorded();
    assert_eq!(requests.len(), 2);
    for request in &requests {
        check_assertion(request, &key, "k1", &server.token_url());
    }
}

#[tokio::test]
async fn scopes_audience_resources_and_extra_parameters_are_sent() {
    let server = token_server().await;
    let grant = grant(&server)
        .scope("orders:read")
        .scope("orders:write")
        .audience("https://orders.example.com")
        .resource("https://orders.example.com/")
        .resource("https://billing.example.com/v1?x=1&y=2")
        .param("tenant", "acme & co");
    let response = grant.fetch().await.expect("token");
    assert_eq!(response.scope.as_deref(), Some("orders:read orders:write"));

    let request = &server.recorded()[0];
    assert_eq!(request.form_value("grant_type"), "client_credentials");
    assert_eq!(request.form_value("scope"), "orders:read orders:write");
    assert_eq!(request.form_value("audience"), "https://orders.example.com");
    assert_eq!(
        request.form_values("resource"),
        [
            "https://orders.example.com/",
            "https://billing.example.com/v1?x=1&y=2"
        ]
    );
    assert_eq!(request.form_value("tenant"), "acme & co");
    assert_eq!(request.form.len(), 6, "{:?}", request.form);

    // The scope the server granted is kept, even when narrower.
    server.set_scope(Some("orders:read"));
    let response = grant.fetch().await.expect("token");
    assert_eq!(response.scope.as_deref(), Some("orders:read"));
}

#[tokio::test]
async fn discovery_finds_the_token_endpoint_once() {
    let server = token_server().await;
    let tokens = TokenManager::new(ClientCredentials::discover(
        server.url(),
        CLIENT_ID,
        ClientAuth::SecretPost(SECRET.into()),
    ))
    .unwrap();
    let token = tokens.token().await.expect("token");
    assert_eq!(token.as_str(), server.latest_token().unwrap());
    tokens.invalidate(&token);
    tokens.token().await.expect("second token");
    assert_eq!(server.discovery_hits(), 1);
    assert_eq!(server.requests(), 2);
    assert_eq!(server.recorded()[0].form_value("client_secret"), SECRET);
}

#[test]
fn plain_http_to_a_remote_host_is_refused_unless_allowed() {
    logs();
    let auth = || ClientAuth::SecretBasic(SECRET.into());
    for grant in [
        ClientCredentials::new("http://auth.example.com/oauth/token", CLIENT_ID, auth()),
        ClientCredentials::discover("http://auth.example.com", CLIENT_ID, auth()),
    ] {
        let err = TokenManager::new(grant.clone()).expect_err("plain http");
        assert_eq!(err.kind(), ErrorKind::Config, "{err}");
        assert!(err.message().contains("https"), "{err}");
        let allowed = grant.http(HttpOptions::new().allow_insecure_http());
        TokenManager::new(allowed).expect("explicitly allowed");
    }
    TokenManager::new(ClientCredentials::new(
        "https://auth.example.com/t",
        CLIENT_ID,
        auth(),
    ))
    .expect("https");
    TokenManager::new(ClientCredentials::new(
        "http://localhost:8080/t",
        CLIENT_ID,
        auth(),
    ))
    .expect("loopback");
}

// ---------------------------------------------------------------------------------------------
// No secrets in Debug, Display or logs
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn secrets_and_tokens_never_reach_debug_display_or_logs() {
    let server = token_server().await;
    let key = ClientKey::generate(Algorithm::ES256);
    let pem_line = key.private_pem.lines().nth(1).unwrap().to_owned();
    let mut shown = Vec::new();

    for auth in [
        ClientAuth::SecretBasic(SECRET.into()),
        ClientAuth::SecretPost(SECRET.into()),
        key.auth("k1"),
    ] {
        shown.push(format!("{auth:?}"));
        let grant =
            ClientCredentials::new(server.token_url(), CLIENT_ID, auth).param("tenant", "acme");
        shown.push(format!("{grant:?}"));
        let tokens = TokenManager::new(grant.clone()).unwrap();
        let token = tokens.token().await.expect("token");
        shown.push(format!("{token:?}"));
        shown.push(format!("{tokens:?}"));
        shown.push(format!("{:?}", grant.fetch().await.expect("token")));
    }
    // Errors of every kind, some from bodies that hold a token.
    let leaky = "at-leaked-0123456789abcdef";
    for reply in [
        Reply::OAuth {
            status: 401,
            error: "invalid_client".into(),
            description: Some("bad credentials".into()),
            code: None,
        },
        Reply::Raw {
            status: 200,
            content_type: "application/json".into(),
            body: format!(r#"{{"access_token":"{leaky}"}}"#),
        },
        Reply::Raw {
            status: 200,
            content_type: "application/json".into(),
            body: format!(r#"{{"access_token":"{leaky}","token_type":"DPoP"}}"#),
        },
        Reply::Html(502),
    ] {
        server.set_reply(reply);
        let tokens = manager(&server);
        let err = tokens.token().await.expect_err("refused");
        shown.push(format!("{err:?}"));
        shown.push(err.to_string());
        shown.push(format!("{tokens:?}"));
    }

    // All the binary's logs so far: this test's, and any other's that ran meanwhile.
    let logs = logs().text();
    assert!(logs.contains("token fetched"), "logs not captured: {logs}");
    assert!(logs.contains("token fetch failed"), "{logs}");
    assert!(shown.iter().any(|s| s.contains(CLIENT_ID)), "{shown:#?}");
    let mut secrets = server.issued();
    secrets.extend([SECRET.to_owned(), leaky.to_owned(), pem_line]);
    for request in server.recorded() {
        if let Some(basic) = request.header("authorization") {
            secrets.push(basic.trim_start_matches("Basic ").to_owned());
        }
        if let Some((_, assertion)) = request.form.iter().find(|(k, _)| k == "client_assertion") {
            secrets.push(assertion.clone());
        }
    }
    assert!(secrets.len() >= 10, "{secrets:?}");
    for secret in &secrets {
        for text in &shown {
            assert!(!text.contains(secret.as_str()), "a secret in `{text}`");
        }
        assert!(
            !logs.contains(secret.as_str()),
            "a secret in the logs:\n{logs}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// AuthorizeLayer over a hyper client
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

#[tokio::test]
async fn authorize_layer_sends_the_token_over_a_hyper_client() {
    let server = token_server().await;
    let api = ResourceServer::start(&server).await;
    let tokens = manager(&server);
    let client = ServiceBuilder::new()
        .layer(AuthorizeLayer::new(tokens.clone()).allow_origin(api.url()))
        .service(hyper_client());

    // Cold: the first call fetches; then warm.
    for i in 0..10 {
        let response = client
            .clone()
            .oneshot(get(format!("{}/orders/{i}", api.url())))
            .await
            .expect("call");
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!(server.requests(), 1);
    let expected = format!("Bearer {}", server.latest_token().unwrap());
    assert_eq!(api.authorizations(), vec![Some(expected); 10]);
    assert!(tokens.metrics().warm_hits >= 9);

    // A request with its own Authorization header is sent as it is.
    let mut own = get(format!("{}/own", api.url()));
    own.headers_mut().insert(
        AUTHORIZATION,
        HeaderValue::from_static("Bearer caller-chosen"),
    );
    let response = client.clone().oneshot(own).await.expect("call");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        api.authorizations().last().unwrap().as_deref(),
        Some("Bearer caller-chosen")
    );

    // Forwarding: the inbound caller's token instead of the service's.
    api.also_accept("inbound-token");
    let mut forwarded = get(format!("{}/on-behalf", api.url()));
    forwarded.extensions_mut().insert(inbound_token());
    let response = client.clone().oneshot(forwarded).await.expect("call");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        api.authorizations().last().unwrap().as_deref(),
        Some("Bearer inbound-token")
    );
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn authorize_layer_forwarding_needs_no_service_token() {
    let server = token_server().await;
    let api = ResourceServer::start(&server).await;
    api.also_accept("inbound-token");
    let client = ServiceBuilder::new()
        .layer(AuthorizeLayer::new(manager(&server)).allow_origin(api.url()))
        .service(hyper_client());
    let mut forwarded = get(format!("{}/on-behalf", api.url()));
    forwarded.extensions_mut().insert(inbound_token());
    let response = client.oneshot(forwarded).await.expect("call");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        api.authorizations(),
        vec![Some("Bearer inbound-token".to_owned())]
    );
    assert_eq!(server.requests(), 0, "a service token was fetched");
}

#[tokio::test]
async fn authorize_layer_returns_token_errors_as_the_service_error() {
    let server = token_server().await;
    let api = ResourceServer::start(&server).await;
    server.set_reply(Reply::oauth("invalid_client"));
    let client = ServiceBuilder::new()
        .layer(AuthorizeLayer::new(manager(&server)).allow_origin(api.url()))
        .service(hyper_client());
    let err = client
        .oneshot(get(format!("{}/orders", api.url())))
        .await
        .expect_err("no token");
    let err = err
        .downcast_ref::<Error>()
        .unwrap_or_else(|| panic!("not an s2s_auth::Error: {err}"));
    assert_eq!(err.kind(), ErrorKind::Config);
    assert_eq!(err.code(), Some(Code::InvalidClient));
    assert_eq!(api.calls(), 0, "sent without a token");
}

// ---------------------------------------------------------------------------------------------
// The reqwest middleware
// ---------------------------------------------------------------------------------------------

fn reqwest_client(
    tokens: &TokenManager,
    api: &ResourceServer,
) -> reqwest_middleware::ClientWithMiddleware {
    reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(AuthorizeMiddleware::new(tokens.clone()).allow_origin(api.url()))
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_calls_refused_as_invalid_token_cause_one_forced_refresh() {
    let server = token_server().await;
    let api = ResourceServer::start(&server).await;
    let tokens = manager(&server);
    let stale = tokens.token().await.expect("warm-up token");
    // The callee stops accepting it (say the authorization server rotated its keys); the
    // manager cannot know. All 100 first attempts are refused before any caller can react.
    server.revoke_issued();
    api.hold_rejections_until(100);

    let client = reqwest_client(&tokens, &api);
    let calls: Vec<_> = (0..100)
        .map(|i| {
            let request = client.get(format!("{}/orders/{i}", api.url()));
            tokio::spawn(async move { request.send().await })
        })
        .collect();
    for call in calls {
        let response = call.await.unwrap().expect("call");
        assert_eq!(response.status(), StatusCode::OK);
    }

    assert_eq!(tokens.metrics().forced_refreshes, 1);
    assert_eq!(server.requests(), 2, "one warm-up, one forced refresh");
    let stale = Some(format!("Bearer {}", stale.as_str()));
    let fresh = Some(format!("Bearer {}", server.latest_token().unwrap()));
    let sent = api.authorizations();
    assert_eq!(sent.len(), 200, "each call sent once and retried once");
    assert_eq!(sent.iter().filter(|a| **a == stale).count(), 100);
    assert_eq!(sent.iter().filter(|a| **a == fresh).count(), 100);
    assert_eq!((api.rejected(), api.accepted()), (100, 100));
}

#[tokio::test]
async fn invalidate_forces_one_refresh_and_only_for_the_cached_token() {
    let server = token_server().await;
    let tokens = manager(&server);
    let first = tokens.token().await.expect("token");
    tokens.invalidate(&first);
    assert!(tokens.current().is_none());
    let second = tokens.token().await.expect("new token");
    assert!(!second.same_as(&first));
    assert_eq!(server.requests(), 2);
    // A late 401 for the token already replaced changes nothing.
    tokens.invalidate(&first);
    // Equal text is not the cached instance: only the token a caller was given counts.
    tokens.invalidate(&BearerToken::new(second.as_str()).unwrap());
    assert!(tokens.current().is_some_and(|t| t.same_as(&second)));
    assert!(tokens.token().await.unwrap().same_as(&second));
    assert_eq!(server.requests(), 2);
    assert_eq!(tokens.metrics().forced_refreshes, 1);
}

#[tokio::test]
async fn reqwest_middleware_leaves_own_headers_alone_and_forwards_without_retry() {
    let server = token_server().await;
    let api = ResourceServer::start(&server).await;
    let tokens = manager(&server);
    let client = reqwest_client(&tokens, &api);

    let response = client
        .get(format!("{}/orders", api.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let service_token = format!("Bearer {}", server.latest_token().unwrap());
    assert_eq!(api.authorizations(), vec![Some(service_token)]);

    // Its own header: sent as it is, and a 401 is not retried with the service's token.
    let response = client
        .get(format!("{}/own", api.url()))
        .header(AUTHORIZATION, "Bearer caller-chosen")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(api.calls(), 2);
    assert_eq!(
        api.authorizations()[1].as_deref(),
        Some("Bearer caller-chosen")
    );

    // Forwarding the inbound caller's token: refused as invalid_token, returned as it is (a
    // new service token would not be the caller's).
    let response = client
        .get(format!("{}/on-behalf", api.url()))
        .with_extension(inbound_token())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(api.calls(), 3);
    assert_eq!(
        api.authorizations()[2].as_deref(),
        Some("Bearer inbound-token")
    );
    // ... and accepted when the callee accepts it.
    api.also_accept("inbound-token");
    let response = client
        .get(format!("{}/on-behalf", api.url()))
        .with_extension(inbound_token())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(server.requests(), 1);
    assert_eq!(tokens.metrics().forced_refreshes, 0);
}

#[tokio::test]
async fn reqwest_middleware_retries_only_an_invalid_token_refusal() {
    let server = token_server().await;
    let api = ResourceServer::start(&server).await;
    let tokens = manager(&server);
    let client = reqwest_client(&tokens, &api);
    tokens.token().await.expect("warm-up token");
    server.revoke_issued();
    // 401 for other reasons: a new token would not help, so none is fetched.
    for challenge in [
        "Bearer realm=\"api\", error=\"invalid_request\"",
        "Bearer realm=\"api\"",
        "Basic realm=\"api\"",
    ] {
        api.set_challenge(challenge);
        let response = client
            .get(format!("{}/orders", api.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{challenge}");
    }
    assert_eq!(api.calls(), 3, "retried");
    assert_eq!(server.requests(), 1);
    assert_eq!(tokens.metrics().forced_refreshes, 0);
    // The scheme is case-insensitive and a parameter value a token or a quoted string
    // (RFC 7235 §2.1).
    for (i, challenge) in [
        "bearer error=\"invalid_token\"",
        "Bearer realm=\"api\", error=invalid_token",
    ]
    .into_iter()
    .enumerate()
    {
        api.set_challenge(challenge);
        server.revoke_issued();
        let response = client
            .get(format!("{}/orders", api.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{challenge}");
        assert_eq!(server.requests(), 2 + i, "{challenge}");
        assert_eq!(api.calls(), 5 + 2 * i, "{challenge}");
    }
}

#[tokio::test]
async fn reqwest_middleware_returns_token_errors() {
    let server = token_server().await;
    let api = ResourceServer::start(&server).await;
    server.set_reply(Reply::oauth("invalid_client"));
    let err = reqwest_client(&manager(&server), &api)
        .get(format!("{}/orders", api.url()))
        .send()
        .await
        .expect_err("no token");
    let reqwest_middleware::Error::Middleware(err) = err else {
        panic!("not a middleware error: {err}");
    };
    let err = err.downcast_ref::<Error>().expect("an s2s_auth::Error");
    assert_eq!(err.code(), Some(Code::InvalidClient));
    assert_eq!(api.calls(), 0);
}

// ---------------------------------------------------------------------------------------------
// One manager per grant
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn shared_managers_are_one_per_endpoint_client_scopes_and_audience() {
    let server = token_server().await;
    let both = |g: ClientCredentials| g.scope("orders:read").scope("orders:write");
    let a = TokenManager::shared(both(grant(&server))).unwrap();
    // The same scope set in another order is the same grant.
    let b =
        TokenManager::shared(grant(&server).scope("orders:write").scope("orders:read")).unwrap();
    let ta = a.token().await.unwrap();
    let tb = b.token().await.unwrap();
    assert!(ta.same_as(&tb));
    assert_eq!(server.requests(), 1);
    assert_eq!(b.metrics().fetches, 1);

    let fewer_scopes = TokenManager::shared(grant(&server).scope("orders:read")).unwrap();
    let other_audience =
        TokenManager::shared(both(grant(&server)).audience("https://billing.example.com")).unwrap();
    let other_client = TokenManager::shared(both(ClientCredentials::new(
        server.token_url(),
        "other-client",
        ClientAuth::SecretBasic(SECRET.into()),
    )))
    .unwrap();
    for (i, other) in [fewer_scopes, other_audience, other_client]
        .iter()
        .enumerate()
    {
        assert!(
            other.current().is_none(),
            "case {i} shares the cached token"
        );
        assert!(!other.token().await.unwrap().same_as(&ta));
        assert_eq!(server.requests(), 2 + i);
    }

    // Once every handle is gone, the next one starts afresh.
    drop((a, b, ta, tb));
    let c = TokenManager::shared(both(grant(&server))).unwrap();
    assert!(c.current().is_none());
    assert_eq!(c.metrics().fetches, 0);
}
