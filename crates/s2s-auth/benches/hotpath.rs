//! The hot path in instructions: N requests with one repeated token through an axum hello
//! router, bare and behind `VerifyLayer` + `RequireScopeLayer` (issue 14, goal 1), called
//! in process on pre-built requests (no network, no runtime), for callgrind:
//!
//! ```text
//! CARGO_PROFILE_BENCH_DEBUG=true cargo bench -p s2s-auth --features axum --bench hotpath --no-run
//! valgrind --tool=callgrind --toggle-collect='hotpath::serve_all*' <bench binary> layered 100000
//! ```
//!
//! Only `serve_all` is counted (not the warm-up): the calls, the handler, and dropping each
//! response. The instructions a hit adds are (layered − bare) / N; mode `noop` has two
//! pass-through layers in their place, to tell axum's cost of any two layers from ours. The keys come from a JWKS endpoint, as in
//! a service, so that the hit also checks the fetched keys' staleness. Without arguments (as
//! `cargo bench` runs it), both modes run briefly and print their wall time per request.

use std::{hint::black_box, time::Instant};

use axum::{Router, body::Body, routing::get};
use futures_util::FutureExt as _;
use http::{HeaderValue, Request, header};
use jsonwebtoken::Algorithm;
use s2s_auth::{Issuer, RequireScopeLayer, Verifier, VerifyLayer};
use s2s_auth_testkit::server::Server;
use tower::{Service as _, util::MapRequestLayer};

mod support;
use support::{AUDIENCE, ISSUER, signing_key, token};

fn hello() -> Router {
    Router::new().route("/", get(|| async { "hello" }))
}

/// Requests as hyper hands them over: a few headers, the token, no extensions.
fn requests(n: usize, authorization: &HeaderValue) -> Vec<Request<Body>> {
    (0..n)
        .map(|_| {
            Request::get("/")
                .header(header::HOST, "orders.internal")
                .header(header::USER_AGENT, "billing/1.4")
                .header(header::ACCEPT, "*/*")
                .header(header::AUTHORIZATION, authorization.clone())
                .body(Body::empty())
                .expect("request")
        })
        .collect()
}

/// The measured part: every request through `router`, each answer dropped.
#[inline(never)]
fn serve_all(router: &mut Router, requests: Vec<Request<Body>>) -> usize {
    serve(router, requests)
}

/// The same, inlined where it is not counted (the warm-up).
#[inline(always)]
fn serve(router: &mut Router, requests: Vec<Request<Body>>) -> usize {
    let mut ok = 0;
    for request in requests {
        let response = router
            .call(request)
            .now_or_never()
            .expect("the hello router answers at once")
            .expect("infallible");
        ok += usize::from(response.status().is_success());
        drop(black_box(response));
    }
    ok
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` passes `--bench`: then both modes, a wall-time figure each.
    let (modes, n) = match args.first().map(String::as_str) {
        Some(mode @ ("bare" | "noop" | "layered")) => (
            vec![mode.to_owned()],
            args.get(1).map_or(100_000, |n| n.parse().expect("N")),
        ),
        _ => (
            vec!["bare".into(), "noop".into(), "layered".into()],
            200_000,
        ),
    };

    let key = signing_key(Algorithm::ES256);
    let token = token(&key);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let jwks = key.jwks();
    let (_server, verifier) = runtime.block_on(async {
        let server = Server::start(Router::new().route(
            "/jwks.json",
            get(move || {
                let jwks = jwks.clone();
                async move { axum::Json(jwks) }
            }),
        ))
        .await;
        let verifier = Verifier::builder()
            .issuer(Issuer::jwks(ISSUER, format!("{}/jwks.json", server.url())))
            .audience(AUDIENCE)
            .build()
            .expect("verifier");
        verifier.load_keys().await.expect("keys");
        (server, verifier)
    });
    let authorization = HeaderValue::from_str(&format!("Bearer {token}")).expect("header");

    for mode in modes {
        let router = match mode.as_str() {
            "bare" => hello(),
            // Two layers that do nothing, where the auth layers are: what axum's wrapping of
            // each layer costs (a boxed clone of the inner service per call, a boxed future).
            "noop" => hello()
                .route_layer(MapRequestLayer::new(|r: Request<Body>| r))
                .layer(MapRequestLayer::new(|r: Request<Body>| r)),
            _ => hello()
                .route_layer(RequireScopeLayer::all(["orders:read"]))
                .layer(VerifyLayer::new(verifier.clone())),
        };
        // As `axum::serve` does: the handlers made services once, not on every request.
        let mut router = router.with_state(());
        // The token is verified, kept (the second time), then a hit of this thread.
        assert_eq!(serve(&mut router, requests(10, &authorization)), 10);
        let batch = requests(n, &authorization);
        let start = Instant::now();
        let ok = serve_all(&mut router, batch);
        let elapsed = start.elapsed();
        assert_eq!(ok, n, "every request answered 200");
        println!(
            "{mode}: {n} requests, {:.0} ns each ({} B token)",
            elapsed.as_nanos() as f64 / n as f64,
            token.len()
        );
    }
    if let Some(mode) = args.first().filter(|m| *m == "layered") {
        let hits = verifier.metrics().cache_hits;
        assert!(hits >= n as u64, "{mode}: {hits} cache hits");
    }
}
