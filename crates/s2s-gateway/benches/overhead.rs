//! What the gateway adds to a request's latency on loopback, with a hot token (verified once,
//! then found in the validated-token cache): the same small GET sent straight to the upstream
//! and through the gateway, interleaved in one run, each over its own kept-alive connection.
//!
//! ```text
//! cargo bench -p s2s-gateway --bench overhead            # 20 000 rounds
//! cargo bench -p s2s-gateway --bench overhead -- 100000  # more
//! ```
//!
//! The gateway, the upstream and the key server each run on their own thread (a current-thread
//! tokio runtime each), as separate processes would; the client runs on the main thread. No
//! tracing subscriber is installed, so the access log costs nothing here. Outside `cargo bench`
//! (e.g. `cargo test --all-targets`) it runs a few hundred rounds as a smoke test.

mod support;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use http_body_util::{BodyExt, Empty};
use hyper::{Request, body::Bytes};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use s2s_auth_testkit::Minter;
use s2s_gateway::{Config, Gateway};
use serde_json::json;
use support::{on_own_thread, serve_static};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn micros(d: Duration) -> f64 {
    d.as_nanos() as f64 / 1000.0
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let benching = args.iter().any(|a| a == "--bench");
    let rounds: usize = args
        .iter()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(if benching { 20_000 } else { 300 });

    // An ES256 key, its JWKS, and a token for the gateway's audience.
    let minter = Minter::es256();
    let jwks = minter.jwks().to_string();
    let jwks: &'static [u8] = Box::leak(jwks.into_bytes().into_boxed_slice());
    let keys = serve_static("keys", jwks, "application/json", Arc::default());
    let upstream = serve_static("upstream", b"ok", "text/plain", Arc::default());
    let issuer = format!("http://{keys}");
    let token = minter
        .issuer(&issuer)
        .audience("orders-api")
        .token(json!({ "sub": "svc-bench", "client_id": "svc-bench", "scope": "orders:read" }));

    let config = include_str!("overhead.toml")
        .replace("{issuer}", &issuer)
        .replace("{upstream}", &upstream.to_string());
    let config = Config::from_toml_str(&config).unwrap();
    let gateway = on_own_thread("gateway", 0, move |listener| async move {
        let gateway = Gateway::from_config(config).await.unwrap();
        gateway
            .serve(listener, std::future::pending())
            .await
            .unwrap();
    });

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
        let authorization = format!("Bearer {token}");
        let get = |uri: String, auth: Option<&str>| {
            let mut request = Request::get(uri);
            if let Some(a) = auth {
                request = request.header("authorization", a);
            }
            let request = request.body(Empty::new()).unwrap();
            let client = client.clone();
            async move {
                let start = Instant::now();
                let response = client.request(request).await.unwrap();
                assert!(response.status().is_success(), "{}", response.status());
                response.into_body().collect().await.unwrap();
                start.elapsed()
            }
        };
        let direct_uri = format!("http://{upstream}/orders/1");
        let gateway_uri = format!("http://{gateway}/orders/1");
        let public_uri = format!("http://{gateway}/public/1");
        // Warm up: connections pooled, keys fetched, the token verified once (then cached).
        for _ in 0..rounds.min(2_000) {
            get(direct_uri.clone(), None).await;
            get(gateway_uri.clone(), Some(&authorization)).await;
            get(public_uri.clone(), None).await;
        }
        let (mut direct, mut verified, mut public) = (
            Vec::with_capacity(rounds),
            Vec::with_capacity(rounds),
            Vec::with_capacity(rounds),
        );
        for _ in 0..rounds {
            direct.push(get(direct_uri.clone(), None).await);
            verified.push(get(gateway_uri.clone(), Some(&authorization)).await);
            public.push(get(public_uri.clone(), None).await);
        }
        for v in [&mut direct, &mut verified, &mut public] {
            v.sort();
        }
        println!("gateway overhead on loopback, {rounds} interleaved rounds (µs)");
        println!("{:<34} {:>8} {:>8} {:>8}", "", "p50", "p90", "p99");
        for (name, v) in [
            ("direct to the upstream", &direct),
            ("through the gateway, hot token", &verified),
            ("through the gateway, public route", &public),
        ] {
            println!(
                "{name:<34} {:>8.1} {:>8.1} {:>8.1}",
                micros(percentile(v, 0.5)),
                micros(percentile(v, 0.9)),
                micros(percentile(v, 0.99)),
            );
        }
        let added =
            |v: &[Duration], p: f64| micros(percentile(v, p)) - micros(percentile(&direct, p));
        println!(
            "added at p50: {:.1} µs with a hot token, {:.1} µs on a public route (goal: < 100 µs)",
            added(&verified, 0.5),
            added(&public, 0.5)
        );
    });
}
