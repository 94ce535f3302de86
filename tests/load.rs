//! Load with faults: 20,000 requests at 64 concurrent connections through `VerifyLayer` while
//! the signing key rotates twice, and calls through the reqwest middleware while the token
//! endpoint is down. Both must see zero failed requests.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{Router, routing::get};
use jsonwebtoken::Algorithm;
use s2s_auth::{
    Issuer, Verifier, VerifyLayer,
    middleware::AuthorizeMiddleware,
    token::{ClientAuth, ClientCredentials, TokenManager},
};
use s2s_auth_testkit::server::Server;
use s2s_tests::{
    app::protected_app,
    keys::{self, KeyServer, TestKey},
    token_server::{ExpiresIn, Reply, TokenFormat, TokenServer},
};
use tokio::task::JoinSet;

const CONNECTIONS: usize = 64;

/// A service behind `VerifyLayer` with keys from `jwks_url`, on 127.0.0.1; the server, its URL
/// and the verifier.
async fn protected(issuer: &str, jwks_url: &str) -> (Server, String, Verifier) {
    let verifier = Verifier::builder()
        .issuer(Issuer::jwks(issuer, jwks_url))
        .audience("orders-api")
        .build()
        .unwrap();
    let routes = Router::new().route("/orders", get(|| async { "orders" }));
    let app = protected_app(routes, VerifyLayer::new(verifier.clone()), &[]).await;
    let url = format!("{}/orders", app.url());
    (app, url, verifier)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_requests_while_the_signing_key_rotates_twice() {
    const TOTAL: usize = 20_000;
    let server = KeyServer::start().await;
    let [k1, k2, k3] = ["k1", "k2", "k3"].map(|kid| TestKey::generate(Algorithm::ES256, kid));
    server.set_keys(&[&k1]);
    let (_app, url, verifier) = protected(&server.issuer(), &server.jwks_url()).await;
    let claims = keys::claims(&server.issuer(), "orders-api");
    // What the issuer currently signs with; callers always send its latest token.
    let current = Arc::new(Mutex::new(k1.sign(&claims)));
    let sent = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(Mutex::new(Vec::new()));
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(CONNECTIONS)
        .build()
        .unwrap();

    let mut callers = JoinSet::new();
    for _ in 0..CONNECTIONS {
        let (http, url, current, sent, failed) = (
            http.clone(),
            url.clone(),
            current.clone(),
            sent.clone(),
            failed.clone(),
        );
        callers.spawn(async move {
            while sent.fetch_add(1, Ordering::SeqCst) < TOTAL {
                let token = current.lock().unwrap().clone();
                let response = http.get(&url).bearer_auth(token).send().await;
                let failure = match response {
                    Ok(r) if r.status() == 200 => continue,
                    Ok(r) => format!("{} {}", r.status(), r.text().await.unwrap_or_default()),
                    Err(e) => e.to_string(),
                };
                failed.lock().unwrap().push(failure);
            }
        });
    }
    // Two rotations in the middle of the traffic: the new key is published next to the old one
    // and signs at once; at the second, the first key leaves the set.
    let rotations = [(6_000, vec![&k1, &k2], &k2), (13_000, vec![&k2, &k3], &k3)];
    for (at, published, signer) in rotations {
        while sent.load(Ordering::SeqCst) < at {
            tokio::task::yield_now().await;
        }
        server.set_keys(&published);
        *current.lock().unwrap() = signer.sign(&claims);
    }
    while callers.join_next().await.is_some() {}

    let failed = failed.lock().unwrap();
    assert!(
        failed.is_empty(),
        "{} failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    let m = verifier.metrics();
    assert_eq!(m.verified, TOTAL as u64);
    assert_eq!(
        server.jwks_hits(),
        3,
        "the first load and one refetch per rotation"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_endpoint_outage_during_load_costs_no_call() {
    let key = TestKey::generate(Algorithm::ES256, "k1");
    let tokens = TokenServer::start().await;
    // A token of 8 s: its refresh falls due after about 4 s, in the middle of the outage.
    let lifetime = Duration::from_secs(8);
    tokens.set_format(TokenFormat::Jwt {
        key: key.clone(),
        lifetime,
    });
    tokens.set_expires_in(ExpiresIn::Seconds(lifetime.as_secs()));
    let keys = KeyServer::start().await;
    keys.set_keys(&[&key]);
    let (_app, url, _) = protected(&tokens.url(), &keys.jwks_url()).await;

    let manager = TokenManager::new(ClientCredentials::new(
        tokens.token_url(),
        "billing",
        ClientAuth::SecretBasic("secret".into()),
    ))
    .unwrap();
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(
            AuthorizeMiddleware::new(manager.clone()).allow_origin(url.trim_end_matches("/orders")),
        )
        .build();
    client
        .get(&url)
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    let started = Instant::now();
    tokens.set_reply(Reply::Status(503));

    let (calls, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut callers = JoinSet::new();
    for _ in 0..CONNECTIONS {
        let (client, url, calls, failed) =
            (client.clone(), url.clone(), calls.clone(), failed.clone());
        callers.spawn(async move {
            // Calls for 6 s: past the refresh time, within the token's life (7.2 s usable).
            while started.elapsed() < Duration::from_secs(6) {
                calls.fetch_add(1, Ordering::SeqCst);
                let ok = client
                    .get(&url)
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 200);
                if !ok {
                    failed.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
    }
    while callers.join_next().await.is_some() {}

    assert_eq!(
        failed.load(Ordering::SeqCst),
        0,
        "of {} calls",
        calls.load(Ordering::SeqCst)
    );
    let m = manager.metrics();
    assert!(m.failures >= 1, "the refresh met the outage: {m:?}");
    assert_eq!(
        m.fetches - m.failures,
        1,
        "one token served the whole outage: {m:?}"
    );
}
