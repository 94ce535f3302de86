//! Tokens per second of one repeat client on SQLite, PostgreSQL with one replica, and
//! PostgreSQL with two replicas, with the same load generator in one run.
//!
//! ```sh
//! cargo bench -p s2s-issuer --bench replicas            # 5 s per setup, 16 requests in flight
//! S2S_BENCH_SECS=10 S2S_BENCH_CONCURRENCY=32 cargo bench -p s2s-issuer --bench replicas
//! ```
//!
//! Each setup runs the issuer in this process (as `s2s_issuer::spawn`, the code `serve` runs) on
//! 127.0.0.1:0; the replicas of a setup share one PostgreSQL database (`S2S_TEST_POSTGRES_URL`,
//! a fresh database per setup, dropped after). The client's secret check is remembered after
//! its first request, so a token costs an HTTP round trip, one account read from the database,
//! an ES256 signature and an audit event. Requests go round-robin over the replicas. Rate
//! limits are off. The figures are printed, never asserted; on a small machine the load
//! generator shares the cores with the issuers and the database.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use base64::Engine as _;
use s2s_issuer::{IssuerConfig, Running, accounts::NewAccount};
use secrecy::ExposeSecret as _;

#[path = "../tests/support/pgdb.rs"]
mod pgdb;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn config(db: &str) -> IssuerConfig {
    let mut config = IssuerConfig::default();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.db = db.to_owned();
    config.rate_limit.per_client = None;
    config.rate_limit.per_ip = None;
    config.key_encryption_key = Some(
        base64::engine::general_purpose::STANDARD
            .encode([7u8; 32])
            .into(),
    );
    config
}

/// Tokens per second over `secs` with `concurrency` requests in flight, round-robin over
/// `replicas`, for one client.
async fn measure(replicas: &[Running], secs: u64, concurrency: u64) -> (f64, u64) {
    let created = replicas[0]
        .issuer
        .accounts()
        .create(NewAccount::new("bench").scope("orders:read"))
        .await
        .expect("an account");
    let id = created.account.client_id.clone();
    let secret = created.client_secret.expose_secret().to_owned();
    let urls: Arc<Vec<String>> = Arc::new(
        replicas
            .iter()
            .map(|r| format!("{}/token", r.url))
            .collect(),
    );
    let http = reqwest::Client::new();
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let request = |http: &reqwest::Client, url: &str| {
        http.post(url)
            .basic_auth(&id, Some(&secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
    };
    // Warm: the secret check, connections.
    for url in urls.iter() {
        let status = request(&http, url)
            .await
            .expect("a warm-up answer")
            .status();
        assert_eq!(status, 200, "warm-up");
    }
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..concurrency {
        let (http, urls, ok, failed, stop) = (
            http.clone(),
            urls.clone(),
            ok.clone(),
            failed.clone(),
            stop.clone(),
        );
        let (id, secret) = (id.clone(), secret.clone());
        tasks.spawn(async move {
            let mut n = worker as usize;
            while !stop.load(Ordering::Relaxed) {
                let url = &urls[n % urls.len()];
                n += 1;
                let answer = http
                    .post(url)
                    .basic_auth(&id, Some(&secret))
                    .form(&[("grant_type", "client_credentials")])
                    .send()
                    .await;
                match answer {
                    Ok(r) if r.status() == 200 => {
                        let _ = r.bytes().await;
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    while tasks.join_next().await.is_some() {}
    let elapsed = started.elapsed().as_secs_f64();
    (
        ok.load(Ordering::Relaxed) as f64 / elapsed,
        failed.load(Ordering::Relaxed),
    )
}

async fn run_setup(name: &str, dbs: &[String], secs: u64, concurrency: u64) {
    let mut replicas = Vec::new();
    for db in dbs {
        replicas.push(
            s2s_issuer::spawn(config(db))
                .await
                .expect("the issuer starts"),
        );
    }
    let (rate, failed) = measure(&replicas, secs, concurrency).await;
    println!("{name:<32} {rate:>10.0} tokens/s   ({failed} failed)");
    for replica in replicas {
        replica.shutdown().await;
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing of ours: run short.
    let secs = env_or("S2S_BENCH_SECS", 5);
    let concurrency = env_or("S2S_BENCH_CONCURRENCY", 16);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        println!(
            "one repeat client, {concurrency} requests in flight, {secs} s per setup, \
             {} CPU(s)",
            std::thread::available_parallelism().map_or(1, |n| n.get())
        );
        let file = std::env::temp_dir().join(format!("s2s-bench-{}.db", std::process::id()));
        let sqlite = file.to_str().unwrap().to_owned();
        run_setup("SQLite file, 1 process", &[sqlite], secs, concurrency).await;
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
        }
        match pgdb::PgTestDb::create("bench_postgres_1").await {
            Some(db) => {
                run_setup(
                    "PostgreSQL, 1 replica",
                    std::slice::from_ref(&db.url),
                    secs,
                    concurrency,
                )
                .await
            }
            None => println!("PostgreSQL, 1 replica: SKIPPED (no server)"),
        }
        match pgdb::PgTestDb::create("bench_postgres_2").await {
            Some(db) => {
                let urls = [db.url.clone(), db.url.clone()];
                run_setup("PostgreSQL, 2 replicas", &urls, secs, concurrency).await
            }
            None => println!("PostgreSQL, 2 replicas: SKIPPED (no server)"),
        }
    });
}
