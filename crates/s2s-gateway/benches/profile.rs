//! A repeatable load for profiling the gateway: `connections` kept-alive HTTP/1.1 clients
//! send `requests` GETs in all, each waiting for its answer before the next (as `bench/load`
//! does), through the gateway with a hot token (or straight to the upstream, or through a
//! bare hyper proxy, for comparison). The client, the upstream, the key server and the
//! gateway each run on a thread of their own, so that a profiler can tell them apart:
//!
//! ```text
//! cargo bench -p s2s-gateway --bench profile -- gateway 20000 64
//! valgrind --tool=callgrind --separate-threads=yes \
//!     target/release/deps/profile-* gateway 20000 64     # the gateway is thread 4
//! ```
//!
//! Modes: `gateway` (a route requiring a scope, hot token), `public` (a public route),
//! `direct` (no proxy), `bare` (hyper's server and hyper-util's pooled client, nothing
//! else: the floor of what any hyper-based proxy costs). `PROFILE_WORKERS=n` runs the proxy on
//! a multi-thread runtime of `n` workers (default: a current-thread runtime). The upstream
//! reports how many connections it accepted: a pool that is reused accepts about
//! `connections` of them.

mod support;

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Instant,
};

use http_body_util::{BodyExt, Empty};
use hyper::{Request, body::Bytes};
use hyper_util::{
    client::legacy::Client,
    rt::{TokioExecutor, TokioIo},
};
use s2s_auth_testkit::Minter;
use s2s_gateway::{Config, Gateway};
use serde_json::json;
use support::{on_own_thread, serve_static};
use tokio::net::{TcpListener, TcpStream};

/// hyper's server forwarding to `upstream` with hyper-util's pooled client, nothing else.
async fn bare_proxy(listener: TcpListener, upstream: SocketAddr) {
    let client = Client::builder(TokioExecutor::new()).build_http::<hyper::body::Incoming>();
    loop {
        let (stream, _) = listener.accept().await.unwrap();
        let _ = stream.set_nodelay(true);
        let client = client.clone();
        let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
            let client = client.clone();
            async move {
                let (mut parts, body) = request.into_parts();
                parts.uri = format!("http://{upstream}{}", parts.uri.path())
                    .parse()
                    .unwrap();
                client.request(Request::from_parts(parts, body)).await
            }
        });
        tokio::spawn(
            hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service),
        );
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs a short smoke test.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let mode = args.first().map_or("gateway", String::as_str).to_owned();
    let requests: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(200);
    let connections: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(8);
    let workers: usize = std::env::var("PROFILE_WORKERS")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(0);

    let minter = Minter::es256();
    let jwks = minter.jwks().to_string();
    let jwks: &'static [u8] = Box::leak(jwks.into_bytes().into_boxed_slice());
    let keys = serve_static("keys", jwks, "application/json", Arc::default());
    let accepted = Arc::new(AtomicUsize::new(0));
    let upstream = serve_static("upstream", b"hello", "text/plain", accepted.clone());
    let issuer = format!("http://{keys}");
    let token = minter
        .issuer(&issuer)
        .audience("orders-api")
        .token(json!({ "sub": "svc-bench", "client_id": "svc-bench", "scope": "orders:read" }));

    let (target, path, authorization) = match mode.as_str() {
        "direct" => (upstream, "/orders/1", None),
        "bare" => (
            on_own_thread("proxy", workers, move |l| bare_proxy(l, upstream)),
            "/orders/1",
            None,
        ),
        "gateway" | "public" => {
            let config = include_str!("overhead.toml")
                .replace("{issuer}", &issuer)
                .replace("{upstream}", &upstream.to_string());
            let config = Config::from_toml_str(&config).unwrap();
            let gateway = on_own_thread("proxy", workers, move |listener| async move {
                let gateway = Gateway::from_config(config).await.unwrap();
                // Clients wait in the listen queue until the keys are there.
                while !gateway.is_ready() {
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
                gateway
                    .serve(listener, std::future::pending())
                    .await
                    .unwrap();
            });
            if mode == "gateway" {
                (gateway, "/orders/1", Some(format!("Bearer {token}")))
            } else {
                (gateway, "/public/1", None)
            }
        }
        other => panic!("unknown mode {other}: gateway, public, direct or bare"),
    };

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let start = Instant::now();
    rt.block_on(async move {
        let mut clients = tokio::task::JoinSet::new();
        for c in 0..connections {
            let authorization = authorization.clone();
            let count = requests / connections + usize::from(c < requests % connections);
            clients.spawn(async move {
                let stream = TcpStream::connect(target).await.unwrap();
                stream.set_nodelay(true).unwrap();
                let (mut sender, connection) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream))
                        .await
                        .unwrap();
                tokio::spawn(connection);
                for _ in 0..count {
                    let mut request = Request::get(path).header("host", target.to_string());
                    if let Some(a) = &authorization {
                        request = request.header("authorization", a);
                    }
                    sender.ready().await.unwrap();
                    let response = sender
                        .send_request(request.body(Empty::<Bytes>::new()).unwrap())
                        .await
                        .unwrap();
                    assert!(response.status().is_success(), "{}", response.status());
                    response.into_body().collect().await.unwrap();
                }
            });
        }
        while let Some(done) = clients.join_next().await {
            done.unwrap();
        }
    });
    let elapsed = start.elapsed();
    println!(
        "{mode}: {requests} requests on {connections} connections in {:.3} s ({:.0}/s); \
         the upstream accepted {} connections",
        elapsed.as_secs_f64(),
        requests as f64 / elapsed.as_secs_f64(),
        accepted.load(Ordering::Relaxed)
    );
}
