//! Replicas: real `s2s-issuer serve` processes on one PostgreSQL database. An account created on
//! one gets tokens from the others; disabling, re-scoping, rotating the secret of, or deleting an
//! account on one stops the others from issuing with the old state within the announced bound
//! of 1 s (each replica's poll reloads its copy of the accounts, and the cache of verified
//! secrets only serves a secret whose hash the account still holds).
//! A key rotation on one replica under a `VerifyLayer` service's traffic fails nothing
//! (publish-then-sign); a scheduled rotation is made by one replica; a database outage (a
//! forwarder in between, cut and restored) keeps tokens coming and refuses writes with 503;
//! `kill -9` in the middle of admin writes loses no acknowledged write and half-applies none;
//! a flood of made-up client ids cannot take a replica down.
//!
//! Each test creates its own database `s2s_test_<random>` on `S2S_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`) and drops it after; without a server it prints
//! a SKIPPED banner, except under `CI=true`, where it fails.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    process::Stdio,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::Engine as _;
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt as _, BufReader},
    process::{Child, Command},
    time::Instant,
};

#[path = "support/eventually.rs"]
mod eventually;
#[path = "support/forwarder.rs"]
mod forwarder;
#[path = "support/pgdb.rs"]
mod pgdb;

use eventually::{CHANGE_BOUND, eventually};
use forwarder::Forwarder;
use pgdb::PgTestDb;

const BIN: &str = env!("CARGO_BIN_EXE_s2s-issuer");
const ADMIN: &str = "replica-test-admin-token-0123456789";
/// base64 of 32 bytes, the same for every replica.
const KEK: &str = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";

/// A configuration file for replicas under load: rate limits out of the way (they are per
/// replica and tested elsewhere), plus `extra` TOML.
struct ConfigFile(std::path::PathBuf);

impl ConfigFile {
    fn new(extra: &str) -> ConfigFile {
        let path = std::env::temp_dir().join(format!(
            "s2s-replica-{}-{:x}.toml",
            std::process::id(),
            rand::random::<u64>()
        ));
        let big = "{ burst = 1000000, per_second = 1000000 }";
        std::fs::write(
            &path,
            format!(
                "{extra}\n[rate_limit]\nper_client = {big}\nper_ip = {big}\n\
                 failures_per_ip = {big}\nfailures_per_client_ip = {big}\n"
            ),
        )
        .unwrap();
        ConfigFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// One `s2s-issuer serve` process.
struct Replica {
    child: Child,
    /// Its own address, `http://127.0.0.1:{port}`.
    url: String,
    addr: SocketAddr,
    /// Its stderr lines (when captured).
    log: Arc<Mutex<Vec<String>>>,
}

impl Replica {
    /// Starts a replica on `db` with these extra `serve` arguments and waits for its
    /// "listening on" line. `RUST_LOG` decides what its captured stderr holds.
    async fn start(db: &str, args: &[&str], rust_log: &str) -> Replica {
        let mut child = Command::new(BIN)
            .args(["serve", "--db", db, "--listen", "127.0.0.1:0"])
            .args(args)
            .env("S2S_ISSUER_ADMIN_TOKEN", ADMIN)
            .env("S2S_ISSUER_KEY_ENCRYPTION_KEY", KEK)
            .env("RUST_LOG", rust_log)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
        let lines = log.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = stderr.next_line().await {
                eprintln!("[replica] {line}");
                lines.lock().unwrap().push(line);
            }
        });
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("the replica starts within a minute")
            .unwrap()
            .expect("a first line");
        let addr: SocketAddr = line
            .strip_prefix("s2s-issuer listening on ")
            .and_then(|rest| rest.split(' ').next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line: {line}"));
        Replica {
            child,
            url: format!("http://{addr}"),
            addr,
            log,
        }
    }

    /// How many captured log lines contain `needle`.
    fn logged(&self, needle: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }
}

/// Starts a replica on `db` with default settings: (child, base URL).
async fn replica(db: &str) -> (Child, String) {
    let Replica { child, url, .. } = Replica::start(db, &[], "error").await;
    (child, url)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The `kid` of a token's header and its `iat` claim.
fn kid_and_iat(token: &str) -> (String, u64) {
    let decode = |part: &str| -> Value {
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(part)
                .unwrap(),
        )
        .unwrap()
    };
    let mut parts = token.split('.');
    let header = decode(parts.next().unwrap());
    let claims = decode(parts.next().unwrap());
    (
        header["kid"].as_str().unwrap().to_owned(),
        claims["iat"].as_u64().unwrap(),
    )
}

/// A token from `url`, or the status that refused it.
async fn access_token(
    http: &reqwest::Client,
    url: &str,
    id: &str,
    secret: &str,
) -> Result<String, u16> {
    let response = http
        .post(format!("{url}/token"))
        .basic_auth(id, Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .map_err(|_| 0u16)?;
    if response.status() != 200 {
        return Err(response.status().as_u16());
    }
    let body: Value = response.json().await.map_err(|_| 1u16)?;
    Ok(body["access_token"].as_str().unwrap().to_owned())
}

async fn jwks_kids(http: &reqwest::Client, url: &str) -> BTreeSet<String> {
    let body: Value = http
        .get(format!("{url}/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

async fn token(http: &reqwest::Client, url: &str, id: &str, secret: &str, scope: &str) -> u16 {
    http.post(format!("{url}/token"))
        .basic_auth(id, Some(secret))
        .form(&[("grant_type", "client_credentials"), ("scope", scope)])
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn admin(http: &reqwest::Client, method: reqwest::Method, url: String, body: Value) -> Value {
    let response = http
        .request(method, url)
        .bearer_auth(ADMIN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    response.json().await.unwrap_or(Value::Null)
}

#[tokio::test]
async fn accounts_and_their_changes_are_shared_by_every_replica_within_the_bound() {
    let Some(db) = PgTestDb::create("replicas_share_accounts").await else {
        return;
    };
    // Three replicas starting at the same moment on an empty database (one migration run).
    let (a, b, c) = tokio::join!(replica(&db.url), replica(&db.url), replica(&db.url));
    let (urls, _children): (Vec<String>, Vec<Child>) = [a, b, c]
        .into_iter()
        .map(|(child, url)| (url, child))
        .unzip();
    let http = reqwest::Client::new();
    let post = reqwest::Method::POST;

    // Created on A: tokens from B and C, one signing key everywhere.
    let created = admin(
        &http,
        post.clone(),
        format!("{}/admin/accounts", urls[0]),
        json!({"name": "shared", "scopes": ["a", "b"]}),
    )
    .await;
    let id = created["clientId"].as_str().unwrap().to_owned();
    let secret = created["clientSecret"].as_str().unwrap().to_owned();
    for url in &urls {
        assert_eq!(token(&http, url, &id, &secret, "a").await, 200, "{url}");
    }
    let mut jwks = Vec::new();
    for url in &urls {
        let body: Value = http
            .get(format!("{url}/.well-known/jwks.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        jwks.push(body);
    }
    assert!(jwks.iter().all(|j| j == &jwks[0]), "{jwks:?}");

    // Disabled on A: refused by B within the bound; enabled on C: served by B again.
    admin(
        &http,
        post.clone(),
        format!("{}/admin/accounts/{id}/disable", urls[0]),
        json!({}),
    )
    .await;
    let b = &urls[1];
    eventually(CHANGE_BOUND, "B refuses the disabled account", || async {
        token(&http, b, &id, &secret, "a").await == 401
    })
    .await;
    admin(
        &http,
        post.clone(),
        format!("{}/admin/accounts/{id}/enable", urls[2]),
        json!({}),
    )
    .await;
    eventually(CHANGE_BOUND, "B serves the enabled account", || async {
        token(&http, b, &id, &secret, "a").await == 200
    })
    .await;

    // Re-scoped on A: B no longer grants the removed scope.
    admin(
        &http,
        reqwest::Method::PATCH,
        format!("{}/admin/accounts/{id}", urls[0]),
        json!({"scopes": ["a"]}),
    )
    .await;
    eventually(CHANGE_BOUND, "B refuses the removed scope", || async {
        token(&http, b, &id, &secret, "b").await == 400
    })
    .await;
    assert_eq!(token(&http, b, &id, &secret, "a").await, 200);

    // Secret rotated on A (no grace): B refuses the old secret it verified and cached before,
    // and accepts the new one.
    let rotated = admin(
        &http,
        post.clone(),
        format!("{}/admin/accounts/{id}/rotate-secret", urls[0]),
        json!({}),
    )
    .await;
    let new_secret = rotated["clientSecret"].as_str().unwrap();
    eventually(CHANGE_BOUND, "B refuses the old secret", || async {
        token(&http, b, &id, &secret, "a").await == 401
    })
    .await;
    assert_eq!(token(&http, b, &id, new_secret, "a").await, 200);

    // Deleted on C: refused by A and B.
    let response = http
        .delete(format!("{}/admin/accounts/{id}", urls[2]))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    for url in &urls[..2] {
        eventually(
            CHANGE_BOUND,
            &format!("{url} refuses the deleted account"),
            || async { token(&http, url, &id, new_secret, "a").await == 401 },
        )
        .await;
    }
}

#[tokio::test]
async fn a_replica_without_the_key_encryption_key_refuses_to_start() {
    let Some(db) = PgTestDb::create("replica_without_kek").await else {
        return;
    };
    let output = Command::new(BIN)
        .args(["serve", "--db", &db.url, "--listen", "127.0.0.1:0"])
        .env_remove("S2S_ISSUER_KEY_ENCRYPTION_KEY")
        .env("S2S_ISSUER_ADMIN_TOKEN", ADMIN)
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("S2S_ISSUER_KEY_ENCRYPTION_KEY"), "{stderr}");

    // With another key than the one the first replica stored the signing key with: refused.
    let (first, _url) = replica(&db.url).await;
    drop(first);
    let output = Command::new(BIN)
        .args(["serve", "--db", &db.url, "--listen", "127.0.0.1:0"])
        .env(
            "S2S_ISSUER_KEY_ENCRYPTION_KEY",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        )
        .env("S2S_ISSUER_ADMIN_TOKEN", ADMIN)
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not the one"), "{stderr}");
    assert!(!stderr.contains(KEK), "{stderr}");
}

/// Starts `n` replicas behind one round-robin URL (the forwarder) that is their issuer URL.
async fn replicas_behind_one_url(
    db: &str,
    n: usize,
    config: &ConfigFile,
    args: &[&str],
    rust_log: &str,
) -> (Forwarder, String, Vec<Replica>) {
    let front = Forwarder::start(Vec::new()).await;
    let issuer = format!("http://{}", front.addr());
    let mut all = vec!["--issuer", issuer.as_str(), "--config", config.path()];
    all.extend_from_slice(args);
    let starts = (0..n).map(|_| Replica::start(db, &all, rust_log));
    let replicas = futures_util::future::join_all(starts).await;
    front.set_upstreams(replicas.iter().map(|r| r.addr).collect());
    (front, issuer, replicas)
}

/// A protected service: `GET /` answers 200 behind `VerifyLayer`, its key cache on the
/// replicas' shared JWKS URL (refreshed as the `max-age` they announce says).
async fn protected_service(issuer: &str) -> String {
    use s2s_auth::{Issuer, KeyCacheOptions, Verifier, VerifyLayer};
    let verifier = Verifier::builder()
        .issuer(Issuer::jwks(issuer, format!("{issuer}/.well-known/jwks.json")).audience(issuer))
        .key_cache(KeyCacheOptions::default().min_ttl(Duration::from_secs(1)))
        .token_cache(0)
        .build()
        .unwrap();
    let app = axum::Router::new()
        .route("/", axum::routing::get(|| async { "ok" }))
        .layer(VerifyLayer::new(verifier));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

async fn create_account(http: &reqwest::Client, url: &str, name: &str) -> (String, String) {
    let created = admin(
        http,
        reqwest::Method::POST,
        format!("{url}/admin/service-accounts"),
        json!({"name": name, "scopes": ["a"]}),
    )
    .await;
    (
        created["clientId"].as_str().unwrap().to_owned(),
        created["clientSecret"].as_str().unwrap().to_owned(),
    )
}

/// A key rotation started on one of three replicas while a `VerifyLayer` service takes
/// traffic with tokens from all of them: every replica publishes the new key before any signs
/// with it, all switch at `activatesAt`, and not one request fails.
#[tokio::test]
async fn a_key_rotation_under_traffic_fails_no_request() {
    let Some(db) = PgTestDb::create("rotation_under_traffic").await else {
        return;
    };
    let config = ConfigFile::new("");
    let (_front, issuer, replicas) =
        replicas_behind_one_url(&db.url, 3, &config, &["--jwks-max-age-secs", "2"], "error").await;
    let http = reqwest::Client::new();
    let (id, secret) = create_account(&http, &replicas[0].url, "traffic").await;
    let service = protected_service(&issuer).await;
    let urls: Vec<String> = replicas.iter().map(|r| r.url.clone()).collect();

    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    // (replica, kid, iat) of every token that was used.
    let seen = Arc::new(Mutex::new(Vec::<(usize, String, u64)>::new()));
    let mut callers = tokio::task::JoinSet::new();
    for caller in 0..6 {
        let (http, urls, id, secret, service) = (
            http.clone(),
            urls.clone(),
            id.clone(),
            secret.clone(),
            service.clone(),
        );
        let (stop, failures, seen) = (stop.clone(), failures.clone(), seen.clone());
        callers.spawn(async move {
            let mut n = caller;
            while !stop.load(Ordering::SeqCst) {
                let replica = n % urls.len();
                n += 1;
                let token = match access_token(&http, &urls[replica], &id, &secret).await {
                    Ok(token) => token,
                    Err(status) => {
                        failures.lock().unwrap().push(format!("token: {status}"));
                        continue;
                    }
                };
                let status = http
                    .get(&service)
                    .bearer_auth(&token)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0);
                if status != 200 {
                    failures
                        .lock()
                        .unwrap()
                        .push(format!("service: {status} ({:?})", kid_and_iat(&token)));
                }
                let (kid, iat) = kid_and_iat(&token);
                seen.lock().unwrap().push((replica, kid, iat));
            }
        });
    }
    let count = || seen.lock().unwrap().len();
    eventually(Duration::from_secs(30), "traffic flows", || async {
        count() >= 60
    })
    .await;

    let rotation = admin(
        &http,
        reqwest::Method::POST,
        format!("{}/admin/keys/rotate", urls[1]),
        json!({}),
    )
    .await;
    let new_kid = rotation["kid"].as_str().unwrap().to_owned();
    let activates_at = time::OffsetDateTime::parse(
        rotation["activatesAt"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap()
    .unix_timestamp() as u64;
    // Publish, wait the JWKS lifetime (2 s) and the replicas' reload bound (1 s), then sign.
    assert!(activates_at >= unix_now() + 2, "{rotation}");
    // Every replica publishes the new key before it signs with it.
    for url in &urls {
        eventually(
            Duration::from_secs(3),
            "the new key is published",
            || async { jwks_kids(&http, url).await.contains(&new_kid) },
        )
        .await;
        assert!(
            unix_now() < activates_at,
            "{url} published the key too late"
        );
    }
    // Traffic until every replica has signed with the new key for a while.
    eventually(
        Duration::from_secs(30),
        "all replicas sign with the new key",
        || async {
            let seen = seen.lock().unwrap();
            (0..urls.len()).all(|r| {
                seen.iter()
                    .filter(|(replica, kid, _)| *replica == r && *kid == new_kid)
                    .count()
                    >= 20
            })
        },
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    while callers.join_next().await.is_some() {}

    let failures = failures.lock().unwrap();
    let seen = seen.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} failed: {failures:?}",
        failures.len()
    );
    for (replica, kid, iat) in seen.iter() {
        if *kid == new_kid {
            assert!(
                *iat >= activates_at,
                "replica {replica} signed early at {iat}"
            );
        } else {
            assert!(
                *iat <= activates_at,
                "replica {replica} signed late at {iat}"
            );
        }
    }
    let old_tokens = seen.iter().filter(|(_, kid, _)| *kid != new_kid).count();
    assert!(old_tokens >= 60, "{old_tokens}");
    eprintln!(
        "rotation under traffic: {} requests, 0 failed ({old_tokens} with the old key)",
        seen.len()
    );
}

/// With `key_rotation_interval_secs`, two replicas check twice a second and one rotates: keys
/// are created one interval apart, never two at once.
#[tokio::test]
async fn a_scheduled_rotation_is_made_by_one_replica() {
    let Some(db) = PgTestDb::create("scheduled_rotation").await else {
        return;
    };
    let config = ConfigFile::new("key_rotation_interval_secs = 3\njwks_max_age_secs = 1");
    let (_front, _issuer, replicas) =
        replicas_behind_one_url(&db.url, 2, &config, &[], "s2s_issuer=info").await;
    let http = reqwest::Client::new();
    let keys = || async {
        let listed = admin(
            &http,
            reqwest::Method::GET,
            format!("{}/admin/keys", replicas[0].url),
            Value::Null,
        )
        .await;
        let mut created: Vec<u64> = listed["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| {
                time::OffsetDateTime::parse(
                    k["createdAt"].as_str().unwrap(),
                    &time::format_description::well_known::Rfc3339,
                )
                .unwrap()
                .unix_timestamp() as u64
            })
            .collect();
        created.sort_unstable();
        created
    };
    eventually(
        Duration::from_secs(20),
        "two scheduled rotations",
        || async { keys().await.len() >= 3 },
    )
    .await;
    let created = keys().await;
    for pair in created.windows(2) {
        assert!(
            pair[1] - pair[0] >= 3,
            "two rotations within the interval: {created:?}"
        );
    }
    let rotations: usize = replicas
        .iter()
        .map(|r| r.logged("scheduled key rotation"))
        .sum();
    assert_eq!(rotations, created.len() - 1, "{created:?}");
}

/// The database cut off under load (a forwarder between the issuer and PostgreSQL, cut and
/// restored): tokens keep being issued for known accounts, admin writes answer 503 with
/// `Retry-After`, `/readyz` goes 503 then 200 again, the audit log says so once, and all
/// recovers without a restart.
/// H1: no client can put a replica into outage mode. A flood of made-up client ids (64 at
/// once, the pool has 8 connections) while every account read hangs (the test holds a lock on
/// `accounts`): `/readyz` stays 200, nothing is issued from memory, the audit log has no
/// outage; then, flood still running, a disable on the other replica is honoured within 1 s.
#[tokio::test]
async fn a_flood_of_unknown_client_ids_cannot_take_a_replica_down() {
    let Some(db) = PgTestDb::create("unknown_id_flood").await else {
        return;
    };
    let config = ConfigFile::new("");
    let args = ["--config", config.path()];
    let a = Replica::start(&db.url, &args, "error").await;
    let b = Replica::start(&db.url, &args, "s2s_issuer::audit=warn").await;
    let http = reqwest::Client::new();
    let (id, secret) = create_account(&http, &a.url, "flooded").await;
    eventually(
        Duration::from_secs(5),
        "b issues for the account",
        || async { access_token(&http, &b.url, &id, &secret).await.is_ok() },
    )
    .await;

    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let mut flood = tokio::task::JoinSet::new();
    for _ in 0..64 {
        let (http, url, stop, answered) =
            (http.clone(), b.url.clone(), stop.clone(), answered.clone());
        flood.spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let made_up = format!("flood-{:016x}", rand::random::<u64>());
                // 401, or 503 when the queue of secret checks is full.
                let answer = access_token(&http, &url, &made_up, "wrong").await;
                assert!(matches!(answer, Err(401 | 503)), "{answer:?}");
                answered.fetch_add(1, Ordering::SeqCst);
            }
        });
    }
    let readyz = || {
        let request = http.get(format!("{}/readyz", b.url));
        async move { request.send().await.unwrap().status().as_u16() }
    };

    // Every account read hangs while this transaction holds the lock.
    use sqlx::{Connection as _, Executor as _};
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let mut lock = conn.begin().await.unwrap();
    lock.execute("LOCK TABLE accounts IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let locked = Instant::now();
    let before = answered.load(Ordering::SeqCst);
    // Longer than the token path's read timeout (500 ms) and several polls (500 ms).
    while locked.elapsed() < Duration::from_millis(2000)
        || answered.load(Ordering::SeqCst) < before + 200
    {
        assert_eq!(readyz().await, 200, "under the flood, accounts locked");
        assert!(
            locked.elapsed() < Duration::from_secs(30),
            "the flood got no answers while the accounts were locked"
        );
    }
    lock.rollback().await.unwrap();

    // The flood goes on; a disable on `a` is honoured by `b` within the bound.
    admin(
        &http,
        reqwest::Method::POST,
        format!("{}/admin/accounts/{id}/disable", a.url),
        json!({}),
    )
    .await;
    eventually(CHANGE_BOUND, "b refuses the disabled account", || async {
        access_token(&http, &b.url, &id, &secret).await == Err(401)
    })
    .await;
    assert_eq!(readyz().await, 200);
    stop.store(true, Ordering::SeqCst);
    while flood.join_next().await.is_some() {}

    let metrics = http
        .get(format!("{}/metrics", b.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(metric(&metrics, "s2s_issuer_database_up"), 1.0, "{metrics}");
    assert_eq!(
        metric(&metrics, "s2s_issuer_tokens_issued_from_memory_total"),
        0.0,
        "{metrics}"
    );
    assert_eq!(b.logged("database_unreachable"), 0);
}

#[tokio::test]
async fn a_database_outage_keeps_tokens_coming_and_refuses_writes() {
    let Some(db) = PgTestDb::create("database_outage").await else {
        return;
    };
    let mut url = url::Url::parse(&db.url).unwrap();
    let pg: SocketAddr = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432))
        .parse()
        .unwrap();
    let proxy = Forwarder::start(vec![pg]).await;
    url.set_port(Some(proxy.addr().port())).unwrap();
    let config = ConfigFile::new("");
    let replica = Replica::start(
        url.as_str(),
        &["--config", config.path()],
        "s2s_issuer::audit=warn",
    )
    .await;
    let http = reqwest::Client::new();
    let (id, secret) = create_account(&http, &replica.url, "steady").await;
    let get = |path: &str| {
        let request = http.get(format!("{}{path}", replica.url));
        async move { request.send().await.unwrap() }
    };
    assert_eq!(get("/readyz").await.status(), 200);

    let stop = Arc::new(AtomicBool::new(false));
    let (issued, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut load = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (http, url, id, secret) = (
            http.clone(),
            replica.url.clone(),
            id.clone(),
            secret.clone(),
        );
        let (stop, issued, failed) = (stop.clone(), issued.clone(), failed.clone());
        load.spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                match access_token(&http, &url, &id, &secret).await {
                    Ok(_) => issued.fetch_add(1, Ordering::SeqCst),
                    Err(_) => failed.fetch_add(1, Ordering::SeqCst),
                };
            }
        });
    }
    let issued_now = || issued.load(Ordering::SeqCst);
    eventually(Duration::from_secs(10), "tokens flow", || async {
        issued_now() >= 50
    })
    .await;

    proxy.cut();
    // A write right after the cut (the poll may not have noticed yet) is refused quickly.
    let sent = Instant::now();
    let refused = http
        .post(format!("{}/admin/service-accounts", replica.url))
        .bearer_auth(ADMIN)
        .json(&json!({"name": "right-after-the-cut"}))
        .send()
        .await
        .unwrap();
    let took = sent.elapsed();
    assert!(took < Duration::from_secs(2), "the refusal took {took:?}");
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable", "{body}");
    eventually(Duration::from_secs(5), "/readyz answers 503", || async {
        get("/readyz").await.status() == 503
    })
    .await;
    let refused = http
        .post(format!("{}/admin/service-accounts", replica.url))
        .bearer_auth(ADMIN)
        .json(&json!({"name": "during-outage"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable", "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("nothing was changed"),
        "{body}"
    );
    let during = issued_now();
    eventually(
        Duration::from_secs(10),
        "tokens during the outage",
        || async { issued_now() >= during + 50 },
    )
    .await;
    let metrics = get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("s2s_issuer_database_up 0"), "{metrics}");

    proxy.restore().await;
    eventually(
        Duration::from_secs(10),
        "/readyz answers 200 again",
        || async { get("/readyz").await.status() == 200 },
    )
    .await;
    let (new_id, new_secret) = create_account(&http, &replica.url, "after-outage").await;
    assert!(
        access_token(&http, &replica.url, &new_id, &new_secret)
            .await
            .is_ok()
    );
    let listed = admin(
        &http,
        reqwest::Method::GET,
        format!("{}/admin/service-accounts", replica.url),
        Value::Null,
    )
    .await;
    let names: Vec<&str> = listed["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["steady", "after-outage"],
        "the refused write was not made"
    );
    stop.store(true, Ordering::SeqCst);
    while load.join_next().await.is_some() {}
    assert_eq!(failed.load(Ordering::SeqCst), 0, "token requests failed");

    let metrics = get("/metrics").await.text().await.unwrap();
    let from_memory = metric(&metrics, "s2s_issuer_tokens_issued_from_memory_total");
    assert!(from_memory >= 50.0, "{metrics}");
    assert_eq!(metric(&metrics, "s2s_issuer_database_up"), 1.0);
    // One audit entry for the outage and one for the recovery, not one per request.
    eventually(
        Duration::from_secs(5),
        "the recovery is audited",
        || async { replica.logged("database_reachable") == 1 },
    )
    .await;
    assert_eq!(replica.logged("database_unreachable"), 1);
}

/// The value of an unlabelled sample in a Prometheus text exposition.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

/// `kill -9` of a replica in the middle of admin writes (creates, and changes of scopes and
/// description together): after a restart every acknowledged write is there, and every account
/// is whole: its secret works, its scopes and description changed together or not at all.
#[tokio::test]
async fn kill_9_in_the_middle_of_writes_loses_no_acknowledged_write() {
    let Some(db) = PgTestDb::create("kill_9_writes").await else {
        return;
    };
    let config = ConfigFile::new("");
    let args = ["--config", config.path()];
    let mut replica = Replica::start(&db.url, &args, "error").await;
    let http = reqwest::Client::new();
    // name → (client id, secret, patched and acknowledged)
    let acked = Arc::new(Mutex::new(BTreeMap::<String, (String, String, bool)>::new()));
    let next = Arc::new(AtomicUsize::new(0));
    let mut writers = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (http, url, acked, next) = (
            http.clone(),
            replica.url.clone(),
            acked.clone(),
            next.clone(),
        );
        writers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let name = format!("w{i}");
                let created = http
                    .post(format!("{url}/admin/service-accounts"))
                    .bearer_auth(ADMIN)
                    .json(&json!({"name": name, "scopes": [format!("{name}:a")]}))
                    .send()
                    .await;
                let Ok(created) = created else { return };
                if created.status() != 201 {
                    return;
                }
                let Ok(body) = created.json::<Value>().await else {
                    return;
                };
                let id = body["clientId"].as_str().unwrap().to_owned();
                let secret = body["clientSecret"].as_str().unwrap().to_owned();
                acked
                    .lock()
                    .unwrap()
                    .insert(name.clone(), (id.clone(), secret, false));
                let patched = http
                    .patch(format!("{url}/admin/service-accounts/{id}"))
                    .bearer_auth(ADMIN)
                    .json(&json!({
                        "scopes": [format!("{name}:a"), format!("{name}:b")],
                        "description": "patched",
                    }))
                    .send()
                    .await;
                match patched {
                    Ok(r) if r.status() == 200 => {
                        acked.lock().unwrap().get_mut(&name).unwrap().2 = true;
                    }
                    _ => return,
                }
            }
        });
    }
    eventually(
        Duration::from_secs(60),
        "writes are acknowledged",
        || async { acked.lock().unwrap().len() >= 25 },
    )
    .await;
    replica.child.start_kill().unwrap(); // SIGKILL
    replica.child.wait().await.unwrap();
    while writers.join_next().await.is_some() {}
    let acked = acked.lock().unwrap().clone();

    let replica = Replica::start(&db.url, &args, "error").await;
    let mut stored = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = admin(
            &http,
            reqwest::Method::GET,
            format!(
                "{}/admin/service-accounts?limit=500&cursor={cursor}",
                replica.url
            ),
            Value::Null,
        )
        .await;
        stored.extend(page["accounts"].as_array().unwrap().iter().cloned());
        match page["nextCursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => break,
        }
    }
    let by_name: BTreeMap<&str, &Value> = stored
        .iter()
        .map(|a| (a["name"].as_str().unwrap(), a))
        .collect();
    for (name, (id, secret, patched)) in &acked {
        let account = by_name
            .get(name.as_str())
            .unwrap_or_else(|| panic!("acknowledged {name} is gone"));
        assert_eq!(account["clientId"], id.as_str());
        if *patched {
            assert_eq!(account["description"], "patched", "{account}");
        }
        assert!(
            access_token(&http, &replica.url, id, secret).await.is_ok(),
            "{name}'s secret"
        );
    }
    for account in &stored {
        let name = account["name"].as_str().unwrap();
        let scopes: Vec<&str> = account["scopes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        let a = format!("{name}:a");
        let b = format!("{name}:b");
        let whole = match account["description"].as_str().unwrap() {
            "patched" => scopes == [a.as_str(), b.as_str()],
            "" => scopes == [a.as_str()],
            _ => false,
        };
        assert!(whole, "half-applied: {account}");
    }
    eprintln!(
        "kill -9: {} acknowledged creates, {} stored accounts",
        acked.len(),
        stored.len()
    );
}
