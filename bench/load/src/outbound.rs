//! Goal 6 of issue 14: the time `AuthorizeLayer` adds to an outbound request on its warm path
//! (a `TokenManager` holding a token of the bench's issuer), against the bare inner service (a
//! ready `service_fn` answering 200), timed in this process (thread CPU time): `calls` calls of
//! each per round, the order alternating between rounds, and the median of the rounds'
//! differences.
//! `crates/s2s-auth/benches/authorize.rs` measures the same with criterion.

use std::{
    convert::Infallible,
    fmt::Debug,
    future::{Future as _, ready},
    hint::black_box,
    pin::pin,
    task::{Context, Poll, Waker},
};

use axum::http::{Request, Response, StatusCode, header::AUTHORIZATION};
use s2s_auth::{
    AuthorizeLayer,
    token::{ClientAuth, ClientCredentials, TokenManager, TokenSource as _},
};
use tower::{Layer as _, Service, service_fn};

use crate::services::{IssuerService, SCOPE};

/// Its id for `--configs`.
pub const ID: &str = "outbound-authorize-warm";

/// The origin the requests go to (never connected to: the inner service answers).
const ORIGIN: &str = "http://orders.internal";

/// What the timing found (nanoseconds per call).
#[derive(Clone, Debug)]
pub struct OutboundResult {
    pub calls: usize,
    pub rounds: usize,
    /// Medians over the rounds.
    pub bare_ns: f64,
    pub authorize_ns: f64,
    /// Median of each round's `authorize − bare`.
    pub added_ns: f64,
}

/// Starts an issuer, warms a `TokenManager` against it, and times both services.
pub async fn measure(calls: usize, rounds: usize) -> OutboundResult {
    let issuer = IssuerService::start().await;
    let account = issuer.account().await;
    let grant = ClientCredentials::new(
        format!("{}/token", issuer.url()),
        account.account.client_id,
        ClientAuth::SecretBasic(account.client_secret),
    )
    .scope(SCOPE);
    let manager = TokenManager::new(grant).expect("token manager");
    manager.token().await.expect("the first token");
    let layer = AuthorizeLayer::new(manager)
        .allow_origin(ORIGIN)
        .allow_insecure_http();
    // Off the runtime's workers; the issuer stays up (the manager needs nothing from it while
    // its token is fresh, but a refresh would).
    let result = tokio::task::spawn_blocking(move || time(&layer, calls, rounds))
        .await
        .expect("timing thread");
    drop(issuer);
    result
}

fn time(layer: &AuthorizeLayer<TokenManager>, calls: usize, rounds: usize) -> OutboundResult {
    // It runs the path it claims to: the token attached, with no wait.
    let mut echo = layer.layer(service_fn(|request: Request<()>| {
        let status = match request.headers().get(AUTHORIZATION) {
            Some(v) if v.as_bytes().starts_with(b"Bearer ") => StatusCode::OK,
            _ => StatusCode::UNAUTHORIZED,
        };
        let mut response = Response::new(());
        *response.status_mut() = status;
        ready(Ok::<_, Infallible>(response))
    }));
    assert_eq!(call_now(&mut echo).status(), StatusCode::OK);

    let inner = service_fn(|_: Request<()>| ready(Ok::<_, Infallible>(Response::new(()))));
    let mut bare = inner;
    let mut authorized = layer.layer(inner);
    let (mut bare_ns, mut authorize_ns, mut added_ns) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        // Alternating which goes first cancels drift (frequency, other cores' load).
        let (b, a) = if round % 2 == 0 {
            let b = per_call_ns(&mut bare, calls);
            (b, per_call_ns(&mut authorized, calls))
        } else {
            let a = per_call_ns(&mut authorized, calls);
            (per_call_ns(&mut bare, calls), a)
        };
        eprintln!(
            "outbound round {}/{rounds}: bare {b:.1} ns, AuthorizeLayer {a:.1} ns per call",
            round + 1
        );
        bare_ns.push(b);
        authorize_ns.push(a);
        added_ns.push(a - b);
    }
    OutboundResult {
        calls,
        rounds,
        bare_ns: crate::report::median(bare_ns),
        authorize_ns: crate::report::median(authorize_ns),
        added_ns: crate::report::median(added_ns),
    }
}

/// Mean time of `calls` calls (`poll_ready`, build a request as a client does, call, poll the
/// future once), in ns of this thread's CPU time: the time the other processes of a shared
/// machine hold the core is left out (wall time counted it, doubling the figures under load).
fn per_call_ns<S>(service: &mut S, calls: usize) -> f64
where
    S: Service<Request<()>, Response = Response<()>>,
    S::Error: Debug,
{
    let start = crate::cpu::thread_cpu_ns();
    for _ in 0..calls {
        black_box(call_now(service));
    }
    (crate::cpu::thread_cpu_ns() - start) as f64 / calls.max(1) as f64
}

/// One call that must complete at once (the inner service is ready and the token held).
fn call_now<S>(service: &mut S) -> Response<()>
where
    S: Service<Request<()>, Response = Response<()>>,
    S::Error: Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    match service.poll_ready(&mut cx) {
        Poll::Ready(ready) => ready.expect("service ready"),
        Poll::Pending => panic!("the service was not ready at once"),
    }
    match pin!(service.call(black_box(request()))).poll(&mut cx) {
        Poll::Ready(response) => response.expect("answered"),
        Poll::Pending => panic!("not the warm path: the call waited"),
    }
}

/// A request as a client builds it: a few headers already, so the map is allocated (as in the
/// criterion bench).
fn request() -> Request<()> {
    Request::get("http://orders.internal/orders/42")
        .header("accept", "application/json")
        .header("user-agent", "billing/1.4")
        .header("x-request-id", "9f1c2d4e")
        .body(())
        .expect("request")
}
