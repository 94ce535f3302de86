//! One token for the whole fleet: eight real replica processes (`bin/fleet_caller.rs`) with
//! the same grant, one real token endpoint ([`TokenServer`], counting requests on arrival), the
//! shared token cache on a real Redis (the shared server with a prefix per test, or a
//! `redis-server` of the test's own where it is killed).
//!
//! Lifetimes are shortened (the endpoint answers `expires_in: 6`; the replicas refresh at three
//! quarters of it, less up to 5% jitter), so several lifetimes pass in seconds of real time.
//! Under `CI=true` a missing Redis fails; elsewhere the tests print SKIPPED and pass.

use std::{collections::BTreeMap, process::Stdio, time::Duration};

use s2s_auth::token::{RedisCache, TokenManager, TokenSource as _};
use s2s_tests::{
    outbound::{SECRET, grant},
    redis::{RedisServer, clean, entries, redis_url, test_prefix},
    token_server::{ExpiresIn, ResourceServer, TokenServer},
};
use tokio::{
    io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader, Lines},
    process::{Child, ChildStdin, ChildStdout, Command},
    time::Instant,
};

/// Replicas in the fleet.
const REPLICAS: usize = 8;
/// The endpoint's `expires_in`, seconds.
const LIFETIME: u64 = 6;
/// The shortest time between two refreshes of one token: 3/4 of the lifetime, less 5% jitter.
const MIN_REFRESH: f64 = LIFETIME as f64 * (0.75 - 0.05);

/// One replica process.
struct Replica {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

/// A replica's answer: `key=value` words.
type Answer = BTreeMap<String, String>;

/// The fleet: [`REPLICAS`] processes of `fleet_caller` with the same setup.
struct Fleet {
    replicas: Vec<Replica>,
}

impl Fleet {
    async fn start(env: &[(&str, String)]) -> Fleet {
        let mut replicas = Vec::new();
        for _ in 0..REPLICAS {
            let mut child = Command::new(env!("CARGO_BIN_EXE_fleet_caller"))
                .envs(env.iter().map(|(k, v)| (k, v)))
                .env("RUST_LOG", "warn")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .expect("start fleet_caller");
            let stdin = child.stdin.take().unwrap();
            let lines = BufReader::new(child.stdout.take().unwrap()).lines();
            replicas.push(Replica {
                child,
                stdin,
                lines,
            });
        }
        for replica in &mut replicas {
            let ready = replica
                .lines
                .next_line()
                .await
                .expect("read")
                .expect("a line");
            assert_eq!(ready, "ready");
        }
        Fleet { replicas }
    }

    /// Sends `command` to every replica first (so that they run it at once), then reads each
    /// one's answer.
    async fn all(&mut self, command: &str) -> Vec<Answer> {
        for replica in &mut self.replicas {
            replica
                .stdin
                .write_all(format!("{command}\n").as_bytes())
                .await
                .expect("write to a replica");
        }
        let mut answers = Vec::new();
        for replica in &mut self.replicas {
            let line = tokio::time::timeout(Duration::from_secs(30), replica.lines.next_line())
                .await
                .expect("a replica answers within 30 s")
                .expect("read")
                .expect("a replica ended early");
            answers.push(
                line.split_whitespace()
                    .filter_map(|w| w.split_once('='))
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
            );
        }
        answers
    }

    /// A counter of every replica's `stats`.
    async fn stat(&mut self, name: &str) -> Vec<u64> {
        self.all("stats")
            .await
            .iter()
            .map(|a| a[name].parse().expect("a number"))
            .collect()
    }

    /// Calls `command` on every replica every 100 ms for `secs` seconds; every call must
    /// succeed. Returns the tokens the replicas held, per round.
    async fn traffic(&mut self, command: &str, secs: f64) -> Vec<Vec<String>> {
        let end = Instant::now() + Duration::from_secs_f64(secs);
        let mut rounds = Vec::new();
        while Instant::now() < end {
            let answers = self.all(command).await;
            for a in &answers {
                assert_eq!(a["failed"], "0", "a failed call: {answers:?}");
            }
            rounds.push(answers.iter().map(|a| a["token"].clone()).collect());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        rounds
    }

    /// Closes every replica's stdin (the end of its commands) and waits for it to exit.
    async fn stop(self) {
        let mut children = Vec::new();
        for Replica { child, stdin, .. } in self.replicas {
            drop(stdin);
            children.push(child);
        }
        for mut child in children {
            let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
                .await
                .expect("a replica exits within 30 s of its stdin's end")
                .expect("wait for a replica");
            assert!(status.success(), "a replica failed: {status}");
        }
    }
}

/// The environment of replicas of `tokens`' grant sharing through `redis` under `prefix`.
fn fleet_env(tokens: &TokenServer, redis: &str, prefix: &str) -> Vec<(&'static str, String)> {
    vec![
        ("FLEET_TOKEN_URL", tokens.token_url()),
        ("FLEET_REDIS_URL", redis.to_owned()),
        ("FLEET_PREFIX", prefix.to_owned()),
    ]
}

async fn short_lived_tokens() -> TokenServer {
    let tokens = TokenServer::start().await;
    tokens.set_expires_in(ExpiresIn::Seconds(LIFETIME));
    tokens
}

/// At most the requests one process would make in `secs`: one, then one per refresh.
fn one_process_budget(secs: f64) -> usize {
    1 + (secs / MIN_REFRESH) as usize
}

/// Most of the time the whole fleet holds one token: all but the rounds of a changeover (a
/// replica holds the previous token until its own refresh falls due, at most the 5% jitter of
/// a lifetime later).
fn assert_mostly_unanimous(rounds: &[Vec<String>]) {
    let unanimous = rounds
        .iter()
        .filter(|r| r.iter().all(|t| *t == r[0]))
        .count();
    assert!(
        unanimous * 10 >= rounds.len() * 8,
        "the fleet held one token in only {unanimous} of {} rounds",
        rounds.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_processes_make_one_token_request_per_lifetime() {
    let Some(redis) = redis_url().await else {
        return;
    };
    let prefix = test_prefix("per_lifetime");
    let tokens = short_lived_tokens().await;
    let mut fleet = Fleet::start(&fleet_env(&tokens, &redis, &prefix)).await;

    let started = Instant::now();
    let rounds = fleet.traffic("tokens 4", 3.0 * LIFETIME as f64).await;
    let secs = started.elapsed().as_secs_f64();
    let requests = tokens.requests();
    println!(
        "fleet of {REPLICAS}: {requests} token requests in {secs:.1} s of {LIFETIME} s tokens \
         (each alone: up to {})",
        REPLICAS * one_process_budget(secs)
    );
    // Several lifetimes passed, and the fleet asked as one process would.
    assert!(requests >= 3, "{requests} requests in {secs:.1} s");
    assert!(
        requests <= one_process_budget(secs),
        "{requests} requests in {secs:.1} s"
    );
    // Every request was one replica's, and every token served was one the endpoint issued.
    let fetches: u64 = fleet.stat("fetches").await.iter().sum();
    assert_eq!(fetches as usize, requests);
    let issued = tokens.issued();
    assert!(rounds.iter().flatten().all(|t| issued.contains(t)));
    assert_mostly_unanimous(&rounds);
    fleet.stop().await;
    clean(&redis, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_cold_callers_over_eight_processes_make_one_token_request() {
    let Some(redis) = redis_url().await else {
        return;
    };
    let prefix = test_prefix("cold_thousand");
    let tokens = TokenServer::start().await;
    tokens.set_expires_in(ExpiresIn::Seconds(60));
    let seal = "42".repeat(32);
    let mut env = fleet_env(&tokens, &redis, &prefix);
    env.push(("FLEET_SEAL_KEY", seal));
    let mut fleet = Fleet::start(&env).await;

    let answers = fleet.all(&format!("tokens {}", 1000 / REPLICAS)).await;
    let ok: usize = answers
        .iter()
        .map(|a| a["ok"].parse::<usize>().unwrap())
        .sum();
    assert_eq!(ok, 1000, "{answers:?}");
    assert_eq!(tokens.requests(), 1);
    let token = tokens.latest_token().unwrap();
    assert!(answers.iter().all(|a| a["token"] == token));
    // One replica fetched; the seven others took its token from Redis.
    assert_eq!(fleet.stat("fetches").await.iter().sum::<u64>(), 1);
    assert_eq!(fleet.stat("shared_hits").await.iter().sum::<u64>(), 7);

    // What is stored: one sealed entry, the token nowhere in it, no secret in keys or values.
    let stored = entries(&redis, &prefix).await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    let (key, value) = &stored[0];
    assert!(key.starts_with(&format!("{prefix}token:")), "{key}");
    assert_eq!(key.len(), prefix.len() + "token:".len() + 64);
    assert!(value.starts_with("v1.") && value.contains(".s:"), "{value}");
    for (key, value) in &stored {
        for secret in [token.as_str(), SECRET] {
            assert!(!key.contains(secret) && !value.contains(secret));
        }
    }
    fleet.stop().await;
    clean(&redis, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_refused_by_a_callee_is_refreshed_once_for_the_fleet() {
    let Some(redis) = redis_url().await else {
        return;
    };
    let prefix = test_prefix("forced");
    let tokens = TokenServer::start().await;
    tokens.set_expires_in(ExpiresIn::Seconds(60));
    let api = ResourceServer::start(&tokens).await;
    let mut env = fleet_env(&tokens, &redis, &prefix);
    env.push(("FLEET_RESOURCE_URL", api.url()));
    let mut fleet = Fleet::start(&env).await;

    for a in fleet.all("calls 10").await {
        assert_eq!(a["ok"], "10", "{a:?}");
    }
    assert_eq!(tokens.requests(), 1);
    // The authorization server rotates its keys: the fleet's token is refused everywhere.
    tokens.revoke_issued();
    let answers = fleet.all("calls 10").await;
    for a in &answers {
        assert_eq!(a["ok"], "10", "{answers:?}");
    }
    assert_eq!(tokens.requests(), 2, "one new token for the fleet");
    let fresh = tokens.latest_token().unwrap();
    assert!(answers.iter().all(|a| a["token"] == fresh));
    // Every replica saw its token refused; one fetched.
    assert_eq!(fleet.stat("forced").await, vec![1; REPLICAS]);
    assert_eq!(fleet.stat("fetches").await.iter().sum::<u64>(), 2);
    assert!(api.rejected() >= REPLICAS);
    fleet.stop().await;
    clean(&redis, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_traffic_fails_no_call_and_sharing_resumes_after_its_restart() {
    let Some(mut redis) = RedisServer::start().await else {
        return;
    };
    let tokens = short_lived_tokens().await;
    let mut fleet = Fleet::start(&fleet_env(&tokens, &redis.url(), "outage:")).await;

    // Shared: one request for the fleet.
    fleet.traffic("tokens 4", 1.0).await;
    assert_eq!(tokens.requests(), 1);

    // Killed: every call still succeeds, each replica fetching alone, within its own budget.
    redis.kill();
    let before = fleet.stat("fetches").await;
    let started = Instant::now();
    fleet.traffic("tokens 4", 2.5 * LIFETIME as f64).await;
    let secs = started.elapsed().as_secs_f64();
    let during: Vec<u64> = fleet
        .stat("fetches")
        .await
        .iter()
        .zip(&before)
        .map(|(after, before)| after - before)
        .collect();
    println!("outage of {secs:.1} s: token requests per replica {during:?}");
    assert!(
        during
            .iter()
            .all(|n| *n as usize <= one_process_budget(secs)),
        "{during:?} in {secs:.1} s"
    );
    assert!(
        during.iter().sum::<u64>() >= REPLICAS as u64,
        "every replica fetched alone"
    );
    assert!(fleet.stat("shared_outages").await.iter().all(|n| *n >= 1));

    // Restarted (empty): after each replica's next refresh, the fleet shares again.
    redis.restart().await;
    fleet.traffic("tokens 4", MIN_REFRESH + 2.0).await;
    let resumed = tokens.requests();
    let started = Instant::now();
    let rounds = fleet.traffic("tokens 4", 2.0 * LIFETIME as f64).await;
    let secs = started.elapsed().as_secs_f64();
    let after = tokens.requests() - resumed;
    println!("after the restart: {after} token requests in {secs:.1} s");
    assert!(after <= one_process_budget(secs), "{after} in {secs:.1} s");
    assert_mostly_unanimous(&rounds);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_never_answers_costs_a_timeout_not_a_failure() {
    // A real TCP server that accepts and then says nothing: Redis hung.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("redis://{}", listener.local_addr().unwrap());
    let hung = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket);
        }
    });
    let tokens = TokenServer::start().await;
    let cache = RedisCache::open(&url)
        .unwrap()
        .timeout(Duration::from_millis(100));
    let manager = TokenManager::new(grant(&tokens))
        .unwrap()
        .with_shared_cache(cache);
    let started = Instant::now();
    manager.token().await.expect("a token despite Redis");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(tokens.requests(), 1);
    let m = manager.metrics();
    assert_eq!((m.shared_outages, m.shared_hits), (1, 0));
    assert!(m.shared_errors >= 1);
    hung.abort();
}
