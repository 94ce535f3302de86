//! The token endpoint under abuse, over real sockets (a real issuer on 127.0.0.1 port 0, real
//! HTTP clients bound to distinct loopback addresses): wrong secrets sent under a client's id
//! never lock it out; a flood of unknown ids from many addresses of one IPv6 /64 (arriving
//! through a trusted proxy) is refused with little hash work while a verified client keeps
//! getting tokens; a full queue of secret checks answers 503 with `Retry-After`; every failure
//! path costs the same argon2 work.
//!
//! The assertions are on outcomes (every token the legitimate client asked for, the status of
//! every attacking request, argon2 runs counted by the issuer), never on timing; the measured
//! figures are printed (`cargo test -p s2s-issuer --test abuse -- --nocapture`).

use std::{
    future::Future,
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use s2s_issuer::{
    IssuerConfig, Running,
    accounts::NewAccount,
    config::{RateLimitConfig, SecretHashConfig},
};
use secrecy::ExposeSecret as _;
use serde_json::Value;
use tokio::{sync::Notify, task::JoinSet};

/// A cheap argon2 cost: the suites measure counts, not the cost itself.
const CHEAP: SecretHashConfig = SecretHashConfig {
    memory_kib: 1024,
    iterations: 1,
    parallelism: 1,
    max_queued: 32,
};

fn config(adjust: impl FnOnce(&mut IssuerConfig)) -> IssuerConfig {
    let mut config = IssuerConfig::default();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.db = ":memory:".into();
    config.secret_hash = CHEAP;
    adjust(&mut config);
    config
}

/// A running issuer of [`config`]`(adjust)`, and its URL.
async fn start(adjust: impl FnOnce(&mut IssuerConfig)) -> (Running, String) {
    let running = s2s_issuer::spawn(config(adjust)).await.unwrap();
    let url = running.url.clone();
    (running, url)
}

/// No rate limit at all, and `secret_hash`: for the tests that measure the secret checks alone.
fn unlimited(config: &mut IssuerConfig, secret_hash: SecretHashConfig) {
    config.rate_limit = RateLimitConfig {
        per_client: None,
        per_ip: None,
        failures_per_ip: None,
        failures_per_client_ip: None,
    };
    config.secret_hash = secret_hash;
}

/// An HTTP client whose connections come from `local` (a loopback address).
fn client_from(local: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::from(local))
        .build()
        .unwrap()
}

struct Answer {
    status: u16,
    retry_after: Option<String>,
    cache_control: Option<String>,
    body: Value,
}

/// One token request with HTTP Basic, optionally carrying an `X-Forwarded-For`.
async fn token(
    http: &reqwest::Client,
    url: &str,
    id: &str,
    secret: &str,
    forwarded_for: Option<&str>,
) -> Answer {
    let mut request = http
        .post(format!("{url}/token"))
        .basic_auth(id, Some(secret))
        .form(&[("grant_type", "client_credentials")]);
    if let Some(xff) = forwarded_for {
        request = request.header("x-forwarded-for", xff);
    }
    let response = request.send().await.unwrap();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (retry_after, cache_control) = (header("retry-after"), header("cache-control"));
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    Answer {
        status,
        retry_after,
        cache_control,
        body,
    }
}

async fn account(running: &Running, name: &str) -> (String, String) {
    let created = running
        .issuer
        .accounts()
        .create(NewAccount::new(name).scope("orders:read"))
        .await
        .unwrap();
    (
        created.account.client_id.clone(),
        created.client_secret.expose_secret().to_owned(),
    )
}

/// Counts of an attacker's answers.
#[derive(Default)]
struct Tally {
    sent: AtomicU64,
    unauthorized: AtomicU64,
    limited: AtomicU64,
    busy: AtomicU64,
    progress: Notify,
}

impl Tally {
    /// Records one attacking answer; anything but 401, 429 or 503 fails the test.
    fn record(&self, answer: &Answer) {
        self.sent.fetch_add(1, Ordering::SeqCst);
        let counter = match answer.status {
            401 => {
                assert_eq!(answer.body["error"], "invalid_client", "{}", answer.body);
                &self.unauthorized
            }
            429 => {
                assert_eq!(answer.body["code"], "AUTH_106", "{}", answer.body);
                let retry: u64 = answer.retry_after.as_deref().unwrap().parse().unwrap();
                assert!((1..=60).contains(&retry), "Retry-After {retry}");
                &self.limited
            }
            503 => {
                assert_eq!(
                    answer.body["error"], "temporarily_unavailable",
                    "{}",
                    answer.body
                );
                assert_eq!(answer.retry_after.as_deref(), Some("1"));
                assert_eq!(answer.cache_control.as_deref(), Some("no-store"));
                &self.busy
            }
            other => panic!("an attacking request got {other}: {}", answer.body),
        };
        counter.fetch_add(1, Ordering::SeqCst);
        self.progress.notify_waiters();
    }

    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::SeqCst)
    }

    /// Waits (woken by each answer, no sleeping) until `done` holds.
    async fn wait_until(&self, done: impl Fn(&Tally) -> bool) {
        loop {
            let notified = self.progress.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if done(self) {
                return;
            }
            notified.await;
        }
    }

    /// Waits until the attackers have had `n` more answers.
    async fn wait_for(&self, n: u64) {
        let target = Tally::get(&self.sent) + n;
        self.wait_until(|t| Tally::get(&t.sent) >= target).await;
    }
}

/// An attack: `workers` tasks, each with its own connections from `local`, sending request
/// number `n` (counted across workers) with `send` until `stop` is set.
struct Attack {
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
    tasks: JoinSet<()>,
}

impl Attack {
    fn start<F, Fut>(workers: usize, local: [u8; 4], send: F) -> Attack
    where
        F: Fn(reqwest::Client, u64) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = Answer> + Send,
    {
        let tally = Arc::new(Tally::default());
        let stop = Arc::new(AtomicBool::new(false));
        let next = Arc::new(AtomicU64::new(0));
        let mut tasks = JoinSet::new();
        for _ in 0..workers {
            let (tally, stop, next, send) =
                (tally.clone(), stop.clone(), next.clone(), send.clone());
            tasks.spawn(async move {
                let http = client_from(local);
                while !stop.load(Ordering::SeqCst) {
                    let n = next.fetch_add(1, Ordering::SeqCst);
                    tally.record(&send(http.clone(), n).await);
                }
            });
        }
        Attack { tally, stop, tasks }
    }

    /// Stops the attackers and waits for their last answers.
    async fn stop(mut self) -> Arc<Tally> {
        self.stop.store(true, Ordering::SeqCst);
        while let Some(done) = self.tasks.join_next().await {
            done.unwrap();
        }
        self.tally
    }
}

/// The legitimate client asks for `count` tokens, one each time the attackers have had
/// `between` more answers, so every request meets the attack at full strength; each must be a
/// 200.
async fn legitimate_tokens(
    http: &reqwest::Client,
    url: &str,
    (id, secret): (&str, &str),
    tally: &Tally,
    count: usize,
    between: u64,
) -> Vec<Duration> {
    let mut latencies = Vec::with_capacity(count);
    for i in 0..count {
        tally.wait_for(between).await;
        let started = Instant::now();
        let answer = token(http, url, id, secret, None).await;
        latencies.push(started.elapsed());
        assert_eq!(
            answer.status, 200,
            "the legitimate client's token {i} of {count} was refused during the attack: {}",
            answer.body
        );
    }
    latencies
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secrets_under_a_clients_id_at_the_full_per_address_rate_never_lock_it_out() {
    // The default limits.
    let (running, url) = start(|_| {}).await;
    let (id, secret) = account(&running, "victim").await;
    let limits = RateLimitConfig::default();

    let started = Instant::now();
    // The attacker, at 127.0.0.3: eight connections sending wrong secrets for the victim's id
    // as fast as the answers come, which is beyond its per-address rate.
    let attack = {
        let (url, id) = (url.clone(), id.clone());
        Attack::start(8, [127, 0, 0, 3], move |http, n| {
            let (url, id) = (url.clone(), id.clone());
            async move { token(&http, &url, &id, &format!("guess-{n}"), None).await }
        })
    };
    // The attack is at full strength once it is being rate limited.
    attack
        .tally
        .wait_until(|t| Tally::get(&t.limited) > 0)
        .await;
    let http = client_from([127, 0, 0, 2]);
    let asked = 15;
    let latencies = legitimate_tokens(&http, &url, (&id, &secret), &attack.tally, asked, 20).await;
    let tally = attack.stop().await;
    let elapsed = started.elapsed();
    let stats = running.issuer.hash_stats();
    let (sent, refused, limited) = (
        Tally::get(&tally.sent),
        Tally::get(&tally.unauthorized),
        Tally::get(&tally.limited),
    );
    println!(
        "lockout: over {elapsed:.2?} the attacker sent {sent} wrong secrets for the victim's id \
         ({refused} got 401 after a secret check, {limited} got 429 with no hash work, {} got \
         503); the victim asked for {asked} tokens and got {asked} (median latency {:.2?}); \
         argon2 runs {}, remembered secrets {}",
        Tally::get(&tally.busy),
        median(latencies),
        stats.argon2_runs,
        stats.remembered,
    );
    // The attacker's secret checks are bounded by its (client id, address) failure budget.
    let pair = limits.failures_per_client_ip.unwrap();
    let bound = u64::from(pair.burst) + u64::from(pair.per_second) * (elapsed.as_secs() + 1);
    assert!(
        refused <= bound,
        "{refused} wrong secrets reached a secret check in {elapsed:?} (bound {bound})"
    );
    assert!(limited > 0 && sent == refused + limited + Tally::get(&tally.busy));
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unknown_ids_from_one_ipv6_slash_64_is_refused_while_a_verified_client_is_served()
 {
    // The flood arrives through a proxy at 127.0.0.1 that the issuer trusts; the client
    // addresses it forwards are all in 2001:db8:1:2::/64.
    let (running, url) = start(|c| c.trusted_proxies = vec!["127.0.0.1/32".into()]).await;
    let (id, secret) = account(&running, "steady").await;
    let http = client_from([127, 0, 0, 2]);
    // Verified once before the flood.
    assert_eq!(token(&http, &url, &id, &secret, None).await.status, 200);
    let before = running.issuer.hash_stats();

    let started = Instant::now();
    let attack = {
        let url = url.clone();
        Attack::start(12, [127, 0, 0, 1], move |proxy, n| {
            let url = url.clone();
            async move {
                // A new address of the /64 and a new client id each time.
                let xff = format!("2001:db8:1:2:{:x}:{:x}::1", n >> 16, n & 0xffff);
                token(&proxy, &url, &format!("unknown-{n}"), "guess", Some(&xff)).await
            }
        })
    };
    let asked = 15;
    let latencies = legitimate_tokens(&http, &url, (&id, &secret), &attack.tally, asked, 30).await;
    let tally = attack.stop().await;
    let flood = Tally::get(&tally.sent);
    let elapsed = started.elapsed();
    let stats = running.issuer.hash_stats();
    let (refused, limited, busy) = (
        Tally::get(&tally.unauthorized),
        Tally::get(&tally.limited),
        Tally::get(&tally.busy),
    );
    let runs = stats.argon2_runs - before.argon2_runs;
    println!(
        "flood: {flood} unknown ids from {flood} addresses of 2001:db8:1:2::/64 in {elapsed:.2?}: \
         {refused} got 401 after a secret check, {limited} got 429 with no hash work, {busy} got \
         503; {runs} argon2 runs in all; the verified client asked for {asked} tokens and got \
         {asked} (median latency {:.2?}, {} answered without argon2)",
        median(latencies),
        stats.remembered - before.remembered,
    );
    assert_eq!(refused + limited + busy, flood);
    // The /64 shares one failure budget: its burst, then its rate.
    let per_address = RateLimitConfig::default().failures_per_ip.unwrap();
    let bound =
        u64::from(per_address.burst) + u64::from(per_address.per_second) * (elapsed.as_secs() + 1);
    assert!(
        refused <= bound,
        "{refused} unknown ids reached a secret check in {elapsed:?} (bound {bound})"
    );
    assert_eq!(
        runs,
        2 * refused,
        "two argon2 runs per secret check, none for the verified client"
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_of_secret_checks_answers_503_with_retry_after() {
    // No rate limits, no queue beyond the running checks, and a cost that makes a check last
    // far longer than the requests take to arrive.
    let (running, url) = start(|c| {
        let slow = SecretHashConfig {
            memory_kib: 16 * 1024,
            iterations: 2,
            max_queued: 0,
            ..SecretHashConfig::default()
        };
        unlimited(c, slow);
    })
    .await;
    let (id, secret) = account(&running, "known").await;
    let http = client_from([127, 0, 0, 2]);
    assert_eq!(token(&http, &url, &id, &secret, None).await.status, 200);
    let before = running.issuer.hash_stats();

    // Many more connections than the issuer runs checks at once (one per CPU).
    let workers = 2 * std::thread::available_parallelism().map_or(2, |n| n.get()) + 16;
    let started = Instant::now();
    let attack = {
        let url = url.clone();
        Attack::start(workers, [127, 0, 0, 3], move |http, n| {
            let url = url.clone();
            async move { token(&http, &url, &format!("unknown-{n}"), "guess", None).await }
        })
    };
    let asked = 10;
    let latencies = legitimate_tokens(&http, &url, (&id, &secret), &attack.tally, asked, 10).await;
    let tally = attack.stop().await;
    let flood = Tally::get(&tally.sent);
    let elapsed = started.elapsed();
    let stats = running.issuer.hash_stats();
    let (refused, busy) = (Tally::get(&tally.unauthorized), Tally::get(&tally.busy));
    println!(
        "queue: {flood} unknown ids from {workers} connections in {elapsed:.2?}: {refused} checked (401), {busy} \
         refused at once with 503 + Retry-After: 1; the verified client got {asked} of {asked} \
         tokens (median latency {:.2?})",
        median(latencies)
    );
    assert_eq!(refused + busy, flood);
    assert!(busy > 0, "the queue never filled: {refused} checks ran");
    assert_eq!(stats.busy - before.busy, busy);
    assert_eq!(stats.argon2_runs - before.argon2_runs, 2 * refused);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_in_a_rotation_grace_period_is_refused_after_the_same_work_as_an_unknown_id() {
    // The default (OWASP) cost, so the timings mean something; no rate limits.
    let (running, url) = start(|c| unlimited(c, SecretHashConfig::default())).await;
    let (plain, _) = account(&running, "plain").await;
    let (rotated, _) = account(&running, "rotated").await;
    running
        .issuer
        .accounts()
        .rotate_secret(&rotated, Duration::from_secs(3600))
        .await
        .unwrap();
    let http = client_from([127, 0, 0, 2]);
    let rounds = 11;
    let paths = [
        ("unknown id", "no-such-client"),
        ("wrong secret", plain.as_str()),
        ("wrong secret, grace period", rotated.as_str()),
    ];
    // Round-robin, so that a load on the machine weighs on every path alike.
    let mut latencies = vec![Vec::new(); paths.len()];
    for i in 0..rounds {
        for (p, (what, id)) in paths.iter().enumerate() {
            let before = running.issuer.hash_stats().argon2_runs;
            let started = Instant::now();
            let answer = token(&http, &url, id, &format!("wrong-{i}"), None).await;
            latencies[p].push(started.elapsed());
            assert_eq!(answer.status, 401, "{what}: {}", answer.body);
            assert_eq!(answer.body["error"], "invalid_client");
            let runs = running.issuer.hash_stats().argon2_runs - before;
            assert_eq!(runs, 2, "{what}: {runs} argon2 runs");
        }
    }
    let report: Vec<_> = paths
        .iter()
        .zip(latencies)
        .map(|((what, _), l)| (*what, *l.iter().min().unwrap(), median(l)))
        .collect();
    let (base_min, base_median) = (report[0].1.as_secs_f64(), report[0].2.as_secs_f64());
    for (what, fastest, median) in &report {
        println!(
            "equal work: {what}: fastest {fastest:.2?} ({:.2}x the unknown id), median \
             {median:.2?} ({:.2}x) over {rounds} refusals, 2 argon2 runs each",
            fastest.as_secs_f64() / base_min,
            median.as_secs_f64() / base_median,
        );
    }
    running.shutdown().await;
}
