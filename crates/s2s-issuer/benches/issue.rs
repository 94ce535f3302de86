//! Token issuance through HTTP on loopback: tokens per second (criterion's `thrpt`).
//!
//! ```sh
//! cargo bench -p s2s-issuer --bench issue
//! ```
//!
//! - `token/basic, secret check remembered`: one client asking again and again (the argon2id
//!   verification ran once; later requests hit the verified-secret cache): HTTP, SQLite lookup,
//!   ES256 signature, audit event.
//! - `token/basic, 16 concurrent`: the same with 16 requests in flight.
//! - `token/wrong secret (argon2id)`: a refused guess, which always pays the full argon2id
//!   verification (OWASP cost: 19 MiB, 2 passes): the cost of a cold secret check.
//! - `sign/ES256 only`: signing alone, no HTTP (what a token costs the issuer at least).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use s2s_issuer::{IssuerConfig, accounts::NewAccount};
use secrecy::ExposeSecret as _;

fn issue(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let (running, id, secret) = runtime.block_on(async {
        let mut config = IssuerConfig::default();
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.db = ":memory:".into();
        config.rate_limit.per_client = None;
        config.rate_limit.per_ip = None;
        let running = s2s_issuer::spawn(config).await.expect("the issuer starts");
        let created = running
            .issuer
            .accounts()
            .create(NewAccount::new("bench").scope("orders:read"))
            .await
            .unwrap();
        let secret = created.client_secret.expose_secret().to_owned();
        (running, created.account.client_id, secret)
    });
    let http = reqwest::Client::new();
    let url = format!("{}/token", running.url);
    let request = |secret: &str| {
        http.post(&url)
            .basic_auth(&id, Some(secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
    };

    let mut group = c.benchmark_group("token");
    group.throughput(Throughput::Elements(1));
    group.bench_function("basic, secret check remembered", |b| {
        b.to_async(&runtime).iter(|| async {
            let response = request(&secret).await.unwrap();
            assert_eq!(response.status(), 200);
            black_box(response.bytes().await.unwrap());
        });
    });
    group.throughput(Throughput::Elements(16));
    group.bench_function("basic, 16 concurrent", |b| {
        b.to_async(&runtime).iter(|| async {
            let all = (0..16).map(|_| async {
                let response = request(&secret).await.unwrap();
                assert_eq!(response.status(), 200);
                response.bytes().await.unwrap()
            });
            black_box(futures_util::future::join_all(all).await);
        });
    });
    group.sample_size(10);
    group.throughput(Throughput::Elements(1));
    group.bench_function("wrong secret (argon2id)", |b| {
        b.to_async(&runtime).iter(|| async {
            let response = request("not-the-secret").await.unwrap();
            assert_eq!(response.status(), 401);
            black_box(response.bytes().await.unwrap());
        });
    });
    group.finish();

    // Signing alone: the issuer's own signing step with its active key, without HTTP.
    let claims = serde_json::json!({
        "iss": running.url, "sub": id, "client_id": id, "aud": "orders-api",
        "exp": 2_000_000_000u64, "iat": 1_700_000_000u64, "nbf": 1_700_000_000u64,
        "jti": "abcdefghijklmnopqrstuv", "scope": "orders:read",
    });
    let issuer = running.issuer.clone();
    let mut group = c.benchmark_group("sign");
    group.throughput(Throughput::Elements(1));
    group.bench_function("ES256 only", |b| {
        b.iter(|| black_box(issuer.sign_claims(&claims).unwrap()));
    });
    group.finish();

    runtime.block_on(running.shutdown());
}

criterion_group!(benches, issue);
criterion_main!(benches);
