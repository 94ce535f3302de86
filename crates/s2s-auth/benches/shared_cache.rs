//! Feature `redis`: the warm path of a `TokenManager` with the shared Redis level against one
//! without, in the same run (the level must add nothing there: no Redis read per request), and a
//! cold start of 8 replicas (each its own manager and Redis connection, as separate processes
//! have) against the real issuer, sharing through Redis against each fetching alone.
//!
//! `cargo bench -p s2s-auth --features redis --bench shared_cache` (Redis at
//! `S2S_TEST_REDIS_URL`, default `redis://127.0.0.1:6379`).

use std::{hint::black_box, time::Duration};

use criterion::{Criterion, criterion_group, criterion_main};
use s2s_auth::token::{ClientAuth, ClientCredentials, RedisCache, TokenManager, TokenSource};
use s2s_auth_testkit::TestIssuer;

const REPLICAS: usize = 8;

fn redis_url() -> String {
    std::env::var("S2S_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A fresh key prefix, so that each cold start finds Redis empty.
fn fresh_prefix() -> String {
    format!("s2s-bench:{}:{}:", std::process::id(), rand_suffix())
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

fn shared_cache(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (issuer, grant) = runtime.block_on(async {
        let issuer = TestIssuer::start().await;
        let account = issuer.account("bench", &[]).await;
        let grant = ClientCredentials::new(
            issuer.token_url(),
            account.client_id,
            ClientAuth::SecretBasic(account.client_secret.into()),
        );
        (issuer, grant)
    });
    let (memory, shared) = runtime.block_on(async {
        let memory = TokenManager::new(grant.clone()).unwrap();
        memory.token().await.expect("a token");
        let cache = RedisCache::open(&redis_url())
            .unwrap()
            .prefix(fresh_prefix());
        let shared = TokenManager::new(grant.clone())
            .unwrap()
            .with_shared_cache(cache);
        shared.token().await.expect("a token");
        (memory, shared)
    });
    let mut group = c.benchmark_group("shared_cache warm path");
    group.bench_function("current_header, memory only", |b| {
        b.iter(|| black_box(memory.current_header()).expect("held"))
    });
    group.bench_function("current_header, with the Redis level", |b| {
        b.iter(|| black_box(shared.current_header()).expect("held"))
    });
    group.finish();
    let shared_errors = shared.metrics().shared_errors;
    if shared_errors > 0 {
        eprintln!(
            "WARNING: Redis at {} did not answer: the second level fell back",
            redis_url()
        );
    }

    // One cold start of 8 replicas: the token requests they made together.
    let cold_start = |sharing: bool| {
        let grant = grant.clone();
        runtime.block_on(async move {
            let prefix = fresh_prefix();
            let mut starts = tokio::task::JoinSet::new();
            for _ in 0..REPLICAS {
                let mut manager = TokenManager::new(grant.clone()).unwrap();
                if sharing {
                    let cache = RedisCache::open(&redis_url())
                        .unwrap()
                        .prefix(prefix.clone());
                    manager = manager.with_shared_cache(cache);
                }
                starts.spawn(async move {
                    manager.token().await.expect("a token");
                    manager.metrics().fetches
                });
            }
            starts.join_all().await.iter().sum::<u64>()
        })
    };
    let mut group = c.benchmark_group("shared_cache cold start of 8 replicas");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    for (name, sharing) in [("alone", false), ("sharing through Redis", true)] {
        group.bench_function(name, |b| b.iter(|| black_box(cold_start(sharing))));
        eprintln!(
            "cold start of {REPLICAS} replicas, {name}: {} token requests",
            cold_start(sharing)
        );
    }
    group.finish();
    drop(issuer);
}

criterion_group!(benches, shared_cache);
criterion_main!(benches);
