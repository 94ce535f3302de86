//! Replicas: real `s2s-issuer serve` processes on one PostgreSQL database. An account created on
//! one gets tokens from the others; disabling, re-scoping, rotating the secret of, or deleting an
//! account on one stops the others from issuing with the old state on their next request (every
//! token request reads the account from the database, and the cache of verified secrets only
//! serves a secret whose hash the account still holds: the bound is 0 s, one round trip).
//!
//! Each test creates its own database `s2s_test_<random>` on `S2S_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`) and drops it after; without a server it prints
//! a SKIPPED banner, except under `CI=true`, where it fails.

use std::{process::Stdio, time::Duration};

use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt as _, BufReader},
    process::{Child, Command},
};

#[path = "support/pgdb.rs"]
mod pgdb;

use pgdb::PgTestDb;

const BIN: &str = env!("CARGO_BIN_EXE_s2s-issuer");
const ADMIN: &str = "replica-test-admin-token-0123456789";
/// base64 of 32 bytes, the same for every replica.
const KEK: &str = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";
/// Starts a replica on `db` and waits for its "listening on" line: (child, base URL).
async fn replica(db: &str) -> (Child, String) {
    let mut child = Command::new(BIN)
        .args(["serve", "--db", db, "--listen", "127.0.0.1:0"])
        .env("S2S_ISSUER_ADMIN_TOKEN", ADMIN)
        .env("S2S_ISSUER_KEY_ENCRYPTION_KEY", KEK)
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("the replica starts within a minute")
        .unwrap()
        .expect("a first line");
    let url = line
        .split("(issuer ")
        .nth(1)
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("unexpected first line: {line}"))
        .to_owned();
    (child, url)
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
async fn accounts_and_their_changes_are_shared_by_every_replica_at_once() {
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

    // Disabled on A: refused by B at once; enabled on C: served by B again.
    admin(
        &http,
        post.clone(),
        format!("{}/admin/accounts/{id}/disable", urls[0]),
        json!({}),
    )
    .await;
    assert_ne!(token(&http, &urls[1], &id, &secret, "a").await, 200);
    admin(
        &http,
        post.clone(),
        format!("{}/admin/accounts/{id}/enable", urls[2]),
        json!({}),
    )
    .await;
    assert_eq!(token(&http, &urls[1], &id, &secret, "a").await, 200);

    // Re-scoped on A: B no longer grants the removed scope.
    admin(
        &http,
        reqwest::Method::PATCH,
        format!("{}/admin/accounts/{id}", urls[0]),
        json!({"scopes": ["a"]}),
    )
    .await;
    assert_ne!(token(&http, &urls[1], &id, &secret, "b").await, 200);
    assert_eq!(token(&http, &urls[1], &id, &secret, "a").await, 200);

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
    assert_ne!(token(&http, &urls[1], &id, &secret, "a").await, 200);
    assert_eq!(token(&http, &urls[1], &id, new_secret, "a").await, 200);

    // Deleted on C: refused by A and B.
    let response = http
        .delete(format!("{}/admin/accounts/{id}", urls[2]))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    for url in &urls[..2] {
        assert_ne!(token(&http, url, &id, new_secret, "a").await, 200, "{url}");
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
