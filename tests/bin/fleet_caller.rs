//! One replica of a calling service for `tests/fleet_redis.rs`: a `TokenManager` with the
//! shared Redis cache, driven line by line on stdin so that the suite runs several as real
//! processes and tells them all to start at once.
//!
//! Set up from the environment: `FLEET_TOKEN_URL`, `FLEET_REDIS_URL`, `FLEET_PREFIX`, and
//! optionally `FLEET_RESOURCE_URL` (for `calls`) and `FLEET_SEAL_KEY` (64 hex digits). Prints
//! `ready`, then answers each command with one line:
//!
//! - `tokens N`: N concurrent `token()` calls → `ok=… failed=… token=<the last token>`
//! - `calls N`: N concurrent GETs of the resource through `AuthorizeMiddleware` (which retries
//!   once on `invalid_token`) → `ok=… failed=… token=<the held token>`
//! - `stats` → `fetches=… failures=… shared_hits=… shared_errors=… shared_outages=… forced=…`
//!
//! It ends at the end of stdin.

use std::{sync::Arc, time::Duration};

use s2s_auth::{
    middleware::AuthorizeMiddleware,
    token::{ClientAuth, ClientCredentials, RedisCache, RefreshPolicy, TokenManager, TokenSource},
};
use s2s_tests::outbound::{CLIENT_ID, SECRET};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("fleet_caller needs {name}"))
}

#[tokio::main]
async fn main() {
    let grant = ClientCredentials::new(
        var("FLEET_TOKEN_URL"),
        CLIENT_ID,
        ClientAuth::SecretBasic(SECRET.into()),
    )
    .scope("orders:read");
    // Refreshed at three quarters of the (short) lifetimes the suite's token endpoint gives.
    let policy = RefreshPolicy::default().ahead(Duration::ZERO);
    let mut cache = RedisCache::open(&var("FLEET_REDIS_URL"))
        .expect("a Redis URL")
        .prefix(var("FLEET_PREFIX"));
    if let Ok(key) = std::env::var("FLEET_SEAL_KEY") {
        let bytes: Vec<u8> = (0..key.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&key[i..i + 2], 16).expect("hex"))
            .collect();
        cache = cache.seal_key(bytes.try_into().expect("32 bytes"));
    }
    let tokens = Arc::new(
        TokenManager::with_policy(grant, policy)
            .expect("a valid grant")
            .with_shared_cache(cache),
    );
    let resource = std::env::var("FLEET_RESOURCE_URL").ok();
    let client = resource.as_ref().map(|url| {
        reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
            .with(AuthorizeMiddleware::new(tokens.clone()).allow_origin(url))
            .build()
    });

    let mut out = tokio::io::stdout();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    out.write_all(b"ready\n").await.unwrap();
    out.flush().await.unwrap();
    while let Some(line) = lines.next_line().await.unwrap() {
        let mut words = line.split_whitespace();
        let command = words.next().unwrap_or_default();
        let n: usize = words.next().and_then(|n| n.parse().ok()).unwrap_or(1);
        let answer = match command {
            "tokens" => {
                let calls: Vec<_> = (0..n)
                    .map(|_| {
                        let tokens = tokens.clone();
                        tokio::spawn(
                            async move { tokens.token().await.map(|t| t.as_str().to_owned()) },
                        )
                    })
                    .collect();
                let mut outcomes = Vec::new();
                for call in calls {
                    outcomes.push(call.await.unwrap().ok());
                }
                tally(&outcomes)
            }
            "calls" => {
                let client = client.clone().expect("calls need FLEET_RESOURCE_URL");
                let url = resource.clone().unwrap();
                let calls: Vec<_> = (0..n)
                    .map(|_| {
                        let (client, url, tokens) = (client.clone(), url.clone(), tokens.clone());
                        tokio::spawn(async move {
                            let ok = client
                                .get(&url)
                                .send()
                                .await
                                .is_ok_and(|r| r.status().is_success());
                            ok.then(|| tokens.current().map(|t| t.as_str().to_owned()))
                                .flatten()
                        })
                    })
                    .collect();
                let mut outcomes = Vec::new();
                for call in calls {
                    outcomes.push(call.await.unwrap());
                }
                tally(&outcomes)
            }
            "stats" => {
                let m = tokens.metrics();
                format!(
                    "fetches={} failures={} shared_hits={} shared_errors={} shared_outages={} \
                     forced={}",
                    m.fetches,
                    m.failures,
                    m.shared_hits,
                    m.shared_errors,
                    m.shared_outages,
                    m.forced_refreshes
                )
            }
            other => format!("unknown command {other:?}"),
        };
        out.write_all(format!("{answer}\n").as_bytes())
            .await
            .unwrap();
        out.flush().await.unwrap();
    }
}

/// `ok=… failed=… token=…` of the outcomes (a token, or `None` for a failed call).
fn tally(outcomes: &[Option<String>]) -> String {
    let ok = outcomes.iter().flatten().count();
    let last = outcomes
        .iter()
        .flatten()
        .last()
        .cloned()
        .unwrap_or_default();
    format!("ok={ok} failed={} token={last}", outcomes.len() - ok)
}
