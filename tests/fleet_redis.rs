//! One token for the whole fleet: eight real replica processes (`bin/fleet_caller.rs`) with
//! the same grant, one real token endpoint ([`TokenServer`], counting requests on arrival), the
//! shared token cache on a real Redis (the shared server with a prefix per test, or a
//! `redis-server` of the test's own where it is killed).
//!
//! Lifetimes are shortened (the endpoint answers `expires_in: 6`; the replicas refresh at three
//! quarters of it, less up to 5% jitter), so several lifetimes pass in seconds of real time.
//! Then, in this process, replicas (a `RedisCache` each) against what a broken or hostile
//! Redis may hold: spoiled entries and stray leases cost one token request, never a failed
//! call, and never the sharing of other grants.
//!
//! Under `CI=true` a missing Redis fails; elsewhere the tests print SKIPPED and pass.

use std::{collections::BTreeMap, process::Stdio, time::Duration};

use s2s_auth::token::{RedisCache, TokenManager, TokenSource as _};
use s2s_tests::{
    outbound::{SECRET, grant},
    redis::{RedisServer, clean, connect, entries, redis_url, test_prefix, wait_for_value},
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
    assert!(value.starts_with("v2.") && value.contains(".s:"), "{value}");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_redis_write_stays_off_the_callers_path() {
    let Some(redis) = redis_url().await else {
        return;
    };
    let prefix = test_prefix("slow-write");
    // Redis behind a forwarder that holds every plain `SET` (the publication of a fetched
    // token; reads and the lease are scripts) for `HOLD` before passing it on.
    const HOLD: Duration = Duration::from_secs(3);
    let slow = hold_writes(&redis, b"\r\n$3\r\nSET\r\n", HOLD).await;
    let tokens = TokenServer::start().await;
    // A deadline longer than the hold: the write waits it out and lands.
    let cache = replica(&slow, &prefix).timeout(Duration::from_secs(10));
    let started = Instant::now();
    let token = managed(grant(&tokens), &cache).token().await.unwrap();
    let waited = started.elapsed();
    assert!(
        waited < HOLD / 2,
        "the caller waited {waited:?} for its token while its publication was held {HOLD:?}"
    );
    // The write was held, not lost: the entry appears once the hold is over.
    key_of(&redis, &prefix, token.as_str()).await;
    assert!(
        started.elapsed() >= HOLD,
        "the forwarder did not hold the write"
    );
    assert_eq!(tokens.requests(), 1);
    clean(&redis, &prefix).await;
}

/// A TCP forwarder to the Redis at `redis` (`redis://HOST:PORT`) that holds each chunk a
/// client sends that contains `pattern` for `hold` before passing it (and what follows) on;
/// its own `redis://` URL.
async fn hold_writes(redis: &str, pattern: &'static [u8], hold: Duration) -> String {
    use tokio::io::AsyncReadExt as _;
    let upstream = redis
        .strip_prefix("redis://")
        .expect("a redis:// URL")
        .trim_end_matches('/')
        .to_owned();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("redis://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let server = tokio::net::TcpStream::connect(&upstream).await.unwrap();
            let (mut client_read, mut client_write) = client.into_split();
            let (mut server_read, mut server_write) = server.into_split();
            tokio::spawn(async move { tokio::io::copy(&mut server_read, &mut client_write).await });
            tokio::spawn(async move {
                let mut chunk = vec![0; 64 * 1024];
                while let Ok(n @ 1..) = client_read.read(&mut chunk).await {
                    if chunk[..n].windows(pattern.len()).any(|w| w == pattern) {
                        tokio::time::sleep(hold).await;
                    }
                    if server_write.write_all(&chunk[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    url
}

/// What a test leaves in a grant's entry (or lease) before a replica that has no token yet
/// asks for one.
#[derive(Clone, Copy, Debug)]
enum Spoil {
    /// Bytes that are not UTF-8, without expiry.
    Garbage,
    /// A hash where the entry belongs.
    WrongType,
    /// A megabyte that starts like an entry.
    Huge,
    /// The entry of another grant, copied over.
    OtherGrants,
    /// The grant's own entry with an issue time an hour ahead.
    FromTheFuture,
}

/// A replica in this process: a `RedisCache` of its own (its own connection and outage state,
/// as a process has), shared by its managers.
fn replica(redis: &str, prefix: &str) -> RedisCache {
    RedisCache::open(redis).unwrap().prefix(prefix)
}

fn managed(grant: s2s_auth::token::ClientCredentials, cache: &RedisCache) -> TokenManager {
    TokenManager::new(grant)
        .unwrap()
        .with_shared_cache(cache.clone())
}

/// The key of the published entry holding `token` (plain entries end with it).
async fn key_of(redis: &str, prefix: &str, token: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = entries(redis, prefix)
            .await
            .into_iter()
            .find(|(key, value)| key.contains(":token:") && value.ends_with(&format!(".{token}")));
        if let Some((key, _)) = found {
            return key;
        }
        assert!(Instant::now() < deadline, "{token} was never published");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A spoiled entry costs its grant one token request and nothing else: the replica still gets
/// a token the endpoint issued, Redis is not taken for down, the other grant is still shared,
/// and the entry is replaced so that the next replica takes the new token from Redis.
async fn a_spoiled_entry_costs_its_grant_one_fetch(spoil: Spoil) {
    let Some(redis) = redis_url().await else {
        return;
    };
    let prefix = test_prefix(&format!("spoil_{spoil:?}"));
    let tokens = TokenServer::start().await;
    let (orders, stock) = (
        grant(&tokens).scope("orders:read"),
        grant(&tokens).scope("stock:read"),
    );
    // Replica A publishes both grants' tokens.
    let a = replica(&redis, &prefix);
    let a_orders = managed(orders.clone(), &a).token().await.unwrap();
    let a_stock = managed(stock.clone(), &a).token().await.unwrap();
    let orders_key = key_of(&redis, &prefix, a_orders.as_str()).await;
    let stock_key = key_of(&redis, &prefix, a_stock.as_str()).await;
    assert_eq!(tokens.requests(), 2);

    let mut conn = connect(&redis).await;
    let original: Vec<u8> = redis::cmd("GET")
        .arg(&orders_key)
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut set = redis::cmd("SET");
    set.arg(&orders_key);
    match spoil {
        Spoil::Garbage => set.arg(b"v2.\xff\xfe\x00garbage".as_slice()),
        Spoil::WrongType => {
            let _: () = redis::cmd("DEL")
                .arg(&orders_key)
                .query_async(&mut conn)
                .await
                .unwrap();
            let mut hset = redis::cmd("HSET");
            hset.arg(&orders_key).arg("field").arg("value");
            let _: () = hset.query_async(&mut conn).await.unwrap();
            &mut set
        }
        Spoil::Huge => set.arg([b"v2.".as_slice(), &vec![b'a'; 1 << 20]].concat()),
        Spoil::OtherGrants => {
            let theirs: Vec<u8> = redis::cmd("GET")
                .arg(&stock_key)
                .query_async(&mut conn)
                .await
                .unwrap();
            set.arg(theirs)
        }
        Spoil::FromTheFuture => {
            let original = String::from_utf8(original.clone()).unwrap();
            let mut fields: Vec<&str> = original.splitn(6, '.').collect();
            let issued: u64 = fields[3].parse().unwrap();
            let ahead = (issued + 3_600_000).to_string();
            fields[3] = &ahead;
            set.arg(fields.join("."))
        }
    };
    if !matches!(spoil, Spoil::WrongType) {
        let _: () = set.query_async(&mut conn).await.unwrap();
    }

    // Replica B, cold: a token the endpoint issued for this grant, at the cost of one request.
    let b = replica(&redis, &prefix);
    let b_orders_manager = managed(orders.clone(), &b);
    let b_orders = b_orders_manager
        .token()
        .await
        .expect("a token despite the entry");
    assert_eq!(tokens.requests(), 3, "{spoil:?}: one extra request");
    assert_eq!(tokens.latest_token().as_deref(), Some(b_orders.as_str()));
    assert!(b_orders.as_str() != a_stock.as_str());
    assert_eq!(b_orders_manager.metrics().fetches, 1);
    // Its other grant still comes from Redis: the spoiled entry did not put the link to rest.
    let b_stock_manager = managed(stock.clone(), &b);
    let b_stock = b_stock_manager.token().await.unwrap();
    assert!(b_stock.as_str() == a_stock.as_str());
    let m = b_stock_manager.metrics();
    assert_eq!(
        (m.fetches, m.shared_hits, m.shared_errors, m.shared_outages),
        (0, 1, 0, 0),
        "{spoil:?}"
    );
    assert_eq!(tokens.requests(), 3);

    // The entry now holds B's token, and replica C takes it from there.
    let fresh = format!(".{}", b_orders.as_str());
    wait_for_value(&redis, &orders_key, |v| v.ends_with(fresh.as_bytes())).await;
    let c_orders_manager = managed(orders, &replica(&redis, &prefix));
    let c_orders = c_orders_manager.token().await.unwrap();
    assert!(c_orders.as_str() == b_orders.as_str());
    assert_eq!(tokens.requests(), 3);
    let m = c_orders_manager.metrics();
    assert_eq!((m.fetches, m.shared_hits), (0, 1));
    clean(&redis, &prefix).await;
}

#[tokio::test]
async fn a_garbage_entry_costs_its_grant_one_fetch() {
    a_spoiled_entry_costs_its_grant_one_fetch(Spoil::Garbage).await;
}

#[tokio::test]
async fn an_entry_key_of_another_type_costs_its_grant_one_fetch() {
    a_spoiled_entry_costs_its_grant_one_fetch(Spoil::WrongType).await;
}

#[tokio::test]
async fn a_huge_entry_costs_its_grant_one_fetch() {
    a_spoiled_entry_costs_its_grant_one_fetch(Spoil::Huge).await;
}

#[tokio::test]
async fn an_entry_copied_from_another_grant_is_not_taken_for_its_token() {
    a_spoiled_entry_costs_its_grant_one_fetch(Spoil::OtherGrants).await;
}

#[tokio::test]
async fn an_entry_issued_in_the_future_is_not_taken_for_fresh() {
    a_spoiled_entry_costs_its_grant_one_fetch(Spoil::FromTheFuture).await;
}

/// A stray lease (no replica's: it never expires, or outlives any lease a replica takes)
/// does not make cold callers wait for it: it is taken over at once, the token fetched and
/// published, and the lease released.
async fn a_stray_lease_is_taken_over(expiry_ms: Option<u64>) {
    let Some(redis) = redis_url().await else {
        return;
    };
    let prefix = test_prefix("stray_lease");
    let tokens = TokenServer::start().await;
    let orders = grant(&tokens).scope("orders:read");
    // The grant's keys: from the entry a first replica publishes, which is then removed.
    let first = managed(orders.clone(), &replica(&redis, &prefix))
        .token()
        .await
        .unwrap();
    let entry_key = key_of(&redis, &prefix, first.as_str()).await;
    let lease_key = entry_key.replace(":token:", ":lease:");
    let mut conn = connect(&redis).await;
    let _: () = redis::cmd("DEL")
        .arg(&entry_key)
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut stray = redis::cmd("SET");
    stray.arg(&lease_key).arg("stuck");
    if let Some(ms) = expiry_ms {
        stray.arg("PX").arg(ms);
    }
    let _: () = stray.query_async(&mut conn).await.unwrap();

    // Waiting out the lease would take 30 s.
    let lease = Duration::from_secs(30);
    let cold = managed(orders.clone(), &replica(&redis, &prefix).lease(lease));
    let started = Instant::now();
    let token = cold.token().await.expect("a token despite the lease");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "waited {:?} for a stray lease",
        started.elapsed()
    );
    assert_eq!(tokens.requests(), 2, "one request");
    assert_eq!(tokens.latest_token().as_deref(), Some(token.as_str()));

    // Published, and the lease (now the replica's own) released.
    let published = format!(".{}", token.as_str());
    wait_for_value(&redis, &entry_key, |v| v.ends_with(published.as_bytes())).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let exists: i64 = redis::cmd("EXISTS")
            .arg(&lease_key)
            .query_async(&mut conn)
            .await
            .unwrap();
        if exists == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the lease was never released");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let next = managed(orders, &replica(&redis, &prefix));
    assert!(next.token().await.unwrap().as_str() == token.as_str());
    assert_eq!(tokens.requests(), 2);
    clean(&redis, &prefix).await;
}

#[tokio::test]
async fn a_lease_without_expiry_does_not_stall_cold_callers() {
    a_stray_lease_is_taken_over(None).await;
}

#[tokio::test]
async fn a_lease_longer_than_any_replicas_does_not_stall_cold_callers() {
    a_stray_lease_is_taken_over(Some(24 * 60 * 60 * 1000)).await;
}
