//! The inbound path end to end, over real HTTP on 127.0.0.1: a [`KeyServer`] publishes the keys,
//! an axum app behind `VerifyLayer` (and `RequireScopeLayer` on some routes) answers, reqwest calls it.
//!
//! Time: the key-cache tests that depend on it (TTL, background refresh, cooldowns, retry
//! intervals) run on a paused tokio clock moved with `advance`; real sockets are awaited through
//! `clock_held`, which keeps the paused clock from auto-advancing meanwhile. Token times
//! (`exp`, `nbf`, leeway) are decided by an injected clock. Nothing sleeps to wait for a race:
//! waits poll a condition under a deadline ([`wait_until`]).

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, UNIX_EPOCH},
};

use axum::{Json, Router, routing::get};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::Algorithm;
use reqwest::{
    StatusCode,
    header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, RETRY_AFTER, WWW_AUTHENTICATE},
};
use s2s_auth::{
    BearerToken, Issuer, KeyCacheOptions, KeySet, MetricsSnapshot, Reason, RequireScopeLayer,
    Scopes, Verified, Verifier, VerifierBuilder, VerifyLayer, extract::Claims, fetch::HttpOptions,
};
use s2s_auth_testkit::server::Server;
use s2s_tests::{
    app::protected_router,
    keys::{self, Behavior, KeyServer, TestKey},
    time::{clock_held, wait_until},
};
use serde_json::{Value, json};
use tokio::{net::TcpListener, task::JoinSet, time::advance};

const AUD: &str = "orders-api";
const REALM: &str = "orders";
const MIB: usize = 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A verifier of the key server's issuer, keys from its JWKS URL.
fn verifier(server: &KeyServer) -> VerifierBuilder {
    Verifier::builder()
        .issuer(Issuer::jwks(server.issuer(), server.jwks_url()))
        .audience(AUD)
}

/// A verifier of the key server's issuer by discovery.
fn discovering(server: &KeyServer) -> Verifier {
    Verifier::builder()
        .issuer(Issuer::discover(server.issuer()))
        .audience(AUD)
        .build()
        .unwrap()
}

/// A key server serving one ES256 key `k1`, and the app trusting it ([`start_app`]).
async fn one_key_app(optional: bool) -> (KeyServer, TestKey, App) {
    let key = TestKey::generate(Algorithm::ES256, "k1");
    let server = KeyServer::serving(&[&key]).await;
    let app = start_app(&verifier(&server).build().unwrap(), optional).await;
    (server, key, app)
}

/// Default key-cache options, edited.
fn cache_options(edit: impl FnOnce(KeyCacheOptions) -> KeyCacheOptions) -> KeyCacheOptions {
    edit(KeyCacheOptions::default())
}

/// Valid claims of the key server's issuer for [`AUD`].
fn claims(server: &KeyServer) -> Value {
    keys::claims(&server.issuer(), AUD)
}

/// `claims` with the members of `changes` set (`null` removes one).
fn edit(mut claims: Value, changes: Value) -> Value {
    let object = claims.as_object_mut().unwrap();
    for (k, v) in changes.as_object().unwrap() {
        match v {
            Value::Null => object.remove(k),
            v => object.insert(k.clone(), v.clone()),
        };
    }
    claims
}

fn token(key: &TestKey, server: &KeyServer) -> String {
    key.sign(&claims(server))
}

/// A token naming a random kid the issuer never published.
fn random_kid_token(signer: &TestKey, server: &KeyServer) -> String {
    let kid = keys::claims("", "")["jti"].clone(); // 128 random bits
    signer.sign_with_header(&json!({ "alg": "ES256", "kid": kid }), &claims(server))
}

/// The axum app under test: `/whoami` (every extractor), `/maybe` (`Option<Claims>`), `/admin`
/// (all of `orders:admin orders:read`) and `/any` (any of `orders:admin orders:write`) behind
/// `VerifyLayer`; `/nolayer` reads claims without it.
struct App {
    url: String,
    http: reqwest::Client,
    verifier: Verifier,
    _server: Server,
}

async fn whoami(
    Claims(claims): Claims<Value>,
    verified: Verified,
    scopes: Scopes,
    token: BearerToken,
) -> Json<Value> {
    Json(json!({
        "claims": claims,
        "kid": verified.kid(),
        "alg": format!("{:?}", verified.algorithm()),
        "scopes": scopes,
        "token_len": token.as_str().len(),
    }))
}

async fn maybe(claims: Option<Claims<Value>>) -> Json<Value> {
    Json(json!({ "claims": claims.map(|Claims(c)| c) }))
}

async fn start_app(verifier: &Verifier, optional: bool) -> App {
    let mut layer = VerifyLayer::new(verifier.clone()).realm(REALM);
    if optional {
        layer = layer.optional();
    }
    // RequireScope answers with the layer's realm: no responder of its own.
    let routes = Router::new()
        .route("/whoami", get(whoami))
        .route("/maybe", get(maybe))
        .merge(
            Router::new()
                .route("/admin", get(whoami))
                .route_layer(RequireScopeLayer::all(["orders:admin", "orders:read"])),
        )
        .merge(
            Router::new()
                .route("/any", get(whoami))
                .route_layer(RequireScopeLayer::any(["orders:admin", "orders:write"])),
        );
    let app = protected_router(routes, layer, &[]).route("/nolayer", get(whoami));
    let server = Server::start(app).await;
    App {
        url: server.url(),
        http: http_client(),
        verifier: verifier.clone(),
        _server: server,
    }
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

type Answer = (StatusCode, HeaderMap, Value);

impl App {
    /// GET `path` with these `Authorization` header values (none, one, or several).
    async fn call(&self, path: &str, authorization: &[&str]) -> Answer {
        let mut request = self.http.get(format!("{}{path}", self.url));
        for value in authorization {
            request = request.header(AUTHORIZATION, *value);
        }
        let response = request.send().await.unwrap();
        let (status, headers) = (response.status(), response.headers().clone());
        let bytes = response.bytes().await.unwrap();
        let body = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "{status}: body is not JSON ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        });
        (status, headers, body)
    }

    /// GET `path` with `Authorization: Bearer <token>`.
    async fn get(&self, path: &str, token: &str) -> Answer {
        self.call(path, &[&format!("Bearer {token}")]).await
    }
}

/// Checks an RFC 6750 refusal: status, JSON body `{error, error_description, code}`, and a
/// challenge `Bearer realm="orders", error=…, error_description=…` repeating the body's
/// description, followed by `extra`. Returns the description.
#[track_caller]
fn assert_refused(
    answer: &Answer,
    status: u16,
    error: &str,
    code: Option<&str>,
    extra: &str,
) -> String {
    let (got, headers, body) = answer;
    assert_eq!(got.as_u16(), status, "{body}");
    assert_eq!(headers[CONTENT_TYPE], "application/json");
    assert_eq!(body["error"], error, "{body}");
    match code {
        Some(code) => assert_eq!(body["code"], code, "{body}"),
        None => assert!(body.get("code").is_none(), "{body}"),
    }
    let description = body["error_description"].as_str().unwrap().to_owned();
    assert!(!description.is_empty());
    if status == 503 {
        // No challenge: a 503 says nothing about the token.
        assert!(headers.get(WWW_AUTHENTICATE).is_none(), "{headers:?}");
        return description;
    }
    assert_eq!(
        headers[WWW_AUTHENTICATE],
        format!(
            r#"Bearer realm="{REALM}", error="{error}", error_description="{description}"{extra}"#
        )
        .as_str()
    );
    description
}

/// A description shown to an unauthenticated caller names nothing of the service's insides:
/// not the key server (its host and port, the JWK set path), not what it answered (the test
/// server's error body says `injected`), not the accepted audiences, not `also`.
#[track_caller]
fn assert_discreet(description: &str, server: &KeyServer, also: &[&str]) {
    let authority = server.url().trim_start_matches("http://").to_owned();
    for secret in [authority.as_str(), "jwks", "injected", AUD]
        .iter()
        .chain(also)
    {
        assert!(
            !description.contains(secret),
            "the caller is told `{secret}`: {description}"
        );
    }
}

#[track_caller]
fn assert_invalid_token(answer: &Answer, code: &str) -> String {
    assert_refused(answer, 401, "invalid_token", Some(code), "")
}

/// A full round trip to the key server, so that a request sent before it (e.g. by a refresh
/// that should not have happened) has arrived and been counted.
async fn round_trip(server: &KeyServer) {
    clock_held(http_client().get(format!("{}/settle", server.url())).send())
        .await
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// Accepted tokens
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn every_algorithm_family_is_accepted_with_and_without_jwk_alg() {
    let server = KeyServer::start().await;
    let test_keys = [
        (TestKey::generate(Algorithm::RS256, "rs256"), false),
        (TestKey::generate(Algorithm::PS256, "ps256"), true),
        (TestKey::generate(Algorithm::ES256, "es256"), true),
        (TestKey::generate(Algorithm::ES384, "es384"), false),
        (TestKey::generate(Algorithm::EdDSA, "eddsa"), true),
    ];
    server.set_jwks(keys::jwks(
        &test_keys
            .iter()
            .map(|(k, alg)| if *alg { k.jwk() } else { k.jwk_without_alg() })
            .collect::<Vec<_>>(),
    ));
    let app = start_app(&verifier(&server).build().unwrap(), false).await;

    for (key, _) in &test_keys {
        let token = token(key, &server);
        let (status, _, body) = app.get("/whoami", &token).await;
        assert_eq!(status, 200, "{:?}: {body}", key.alg);
        assert_eq!(body["kid"], key.kid.as_str());
        assert_eq!(body["alg"], format!("{:?}", key.alg));
        assert_eq!(body["claims"]["sub"], "svc-orders");
        assert_eq!(body["claims"]["jti"].as_str().unwrap().len(), 32);
        assert_eq!(body["scopes"], "orders:read orders:write");
        assert_eq!(body["token_len"], token.len());
    }
    // A JWK without `alg` still verifies only its own type's algorithms.
    let (rs, es384) = (&test_keys[0].0, &test_keys[3].0);
    let header = json!({ "alg": "ES384", "kid": "rs256" });
    let forged = es384.sign_with_header(&header, &claims(&server));
    let description = assert_invalid_token(&app.get("/whoami", &forged).await, "AUTH_105");
    assert!(description.contains("does not fit"), "{description}");
    let header = json!({ "alg": "RS256", "kid": "es384" });
    let forged = rs.sign_with_header(&header, &claims(&server));
    assert_invalid_token(&app.get("/whoami", &forged).await, "AUTH_105");
    assert_eq!(
        app.verifier.metrics().rejected(Reason::AlgorithmMismatch),
        2
    );
    assert_eq!(server.jwks_hits(), 1);
}

#[tokio::test]
async fn rs256_and_es256_issuers_side_by_side() {
    let (a, b) = (KeyServer::start().await, KeyServer::start().await);
    let rs = TestKey::generate(Algorithm::RS256, "a1");
    let es = TestKey::generate(Algorithm::ES256, "b1");
    a.set_keys(&[&rs]);
    b.set_keys(&[&es]);
    let verifier = Verifier::builder()
        .issuer(Issuer::jwks(a.issuer(), a.jwks_url()))
        .issuer(Issuer::jwks(b.issuer(), b.jwks_url()))
        .audience("billing-api")
        .audience(AUD)
        .build()
        .unwrap();
    assert!(!verifier.is_ready());
    verifier.load_keys().await.unwrap();
    assert!(verifier.is_ready());
    assert_eq!((a.jwks_hits(), b.jwks_hits()), (1, 1));

    let app = start_app(&verifier, false).await;
    for (key, server) in [(&rs, &a), (&es, &b)] {
        let (status, _, body) = app.get("/whoami", &token(key, server)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["claims"]["iss"], server.issuer());
        assert_eq!(body["alg"], format!("{:?}", key.alg));
    }
    // Each issuer's tokens verify only with that issuer's keys.
    let crossed = es.sign(&keys::claims(&a.issuer(), AUD));
    assert_invalid_token(&app.get("/whoami", &crossed).await, "AUTH_105");
    assert_eq!(verifier.metrics().rejected(Reason::UnknownKey), 1);
    assert_eq!((a.jwks_hits(), b.jwks_hits()), (2, 1));
}

#[tokio::test]
async fn each_issuer_accepts_only_its_own_audiences() {
    let (a, b) = (KeyServer::start().await, KeyServer::start().await);
    let (ka, kb) = (
        TestKey::generate(Algorithm::ES256, "a1"),
        TestKey::generate(Algorithm::ES256, "b1"),
    );
    a.set_keys(&[&ka]);
    b.set_keys(&[&kb]);
    // The builder's audience applies only to issuers without audiences of their own.
    let verifier = Verifier::builder()
        .issuer(Issuer::jwks(a.issuer(), a.jwks_url()).audience(AUD))
        .issuer(Issuer::jwks(b.issuer(), b.jwks_url()).audiences(["billing-api", "ops-api"]))
        .audience("fallback-api")
        .build()
        .unwrap();
    let app = start_app(&verifier, false).await;
    let signed = |key: &TestKey, server: &KeyServer, aud: &str| {
        key.sign(&keys::claims(&server.issuer(), aud))
    };
    for (key, server, aud) in [
        (&ka, &a, AUD),
        (&kb, &b, "billing-api"),
        (&kb, &b, "ops-api"),
    ] {
        // Twice: the second answer comes from the validated-token cache.
        for _ in 0..2 {
            let (status, _, body) = app.get("/whoami", &signed(key, server, aud)).await;
            assert_eq!(status, 200, "{aud}: {body}");
        }
    }
    // Each issuer's token with the other's audience, or the builder's, is refused.
    for (key, server, aud) in [
        (&ka, &a, "billing-api"),
        (&ka, &a, "fallback-api"),
        (&kb, &b, AUD),
        (&kb, &b, "fallback-api"),
    ] {
        let token = signed(key, server, aud);
        for _ in 0..2 {
            let description = assert_invalid_token(&app.get("/whoami", &token).await, "AUTH_107");
            assert_eq!(description, Reason::WrongAudience.summary());
        }
        // The log line names that issuer's audiences only.
        let detail = verifier.verify(&token).await.unwrap_err();
        let detail = detail.detail().unwrap().to_owned();
        let own = if server.issuer() == a.issuer() {
            format!("{:?}", [AUD])
        } else {
            format!("{:?}", ["billing-api", "ops-api"])
        };
        assert!(
            detail.ends_with(&format!("accepted audiences {own}")),
            "{detail}"
        );
    }
    assert_eq!(verifier.metrics().rejected(Reason::WrongAudience), 12);

    // An issuer with no audience, its own or the builder's, is a configuration error naming it.
    let error = Verifier::builder()
        .issuer(Issuer::jwks(a.issuer(), a.jwks_url()).audience(AUD))
        .issuer(Issuer::jwks(b.issuer(), b.jwks_url()))
        .build()
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("no audience") && error.contains(&b.issuer()),
        "{error}"
    );
}

// ---------------------------------------------------------------------------------------------
// Discovery
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn discovery_via_openid_configuration_and_the_rfc8414_fallback() {
    for (oidc, discovery_hits) in [(true, 1), (false, 2)] {
        let server = KeyServer::start().await;
        server.set_oidc_discovery(oidc);
        let key = TestKey::generate(Algorithm::ES256, "k1");
        server.set_keys(&[&key]);
        let verifier = discovering(&server);
        let app = start_app(&verifier, false).await;

        let (status, _, body) = app.get("/whoami", &token(&key, &server)).await;
        assert_eq!(status, 200, "oidc {oidc}: {body}");
        assert_eq!(server.discovery_hits(), discovery_hits, "oidc {oidc}");
        assert_eq!(server.jwks_hits(), 1);
    }
}

#[tokio::test]
async fn discovery_refuses_metadata_naming_another_issuer() {
    let key = TestKey::generate(Algorithm::ES256, "k1");
    let server = KeyServer::serving(&[&key]).await;
    server.set_metadata_issuer("https://other.test");
    let verifier = discovering(&server);
    let app = start_app(&verifier, false).await;

    let answer = app.get("/whoami", &token(&key, &server)).await;
    let description = assert_refused(&answer, 503, "temporarily_unavailable", None, "");
    assert_discreet(&description, &server, &["other.test"]);
    assert_eq!(description, Reason::KeysUnavailable.summary());
    assert_eq!(answer.1[RETRY_AFTER], "1");
    // What went wrong is for the log only.
    let refused = verifier.verify(&token(&key, &server)).await.unwrap_err();
    let detail = refused.detail().unwrap();
    assert!(
        detail.contains(&format!(
            "metadata names issuer `https://other.test` but `{}` is configured",
            server.issuer()
        )),
        "{detail}"
    );
    assert_eq!(
        server.jwks_hits(),
        0,
        "keys of an impostor are never fetched"
    );
}

#[test]
fn remote_key_urls_must_be_https_except_loopback() {
    let build = |issuer: Issuer| Verifier::builder().issuer(issuer).audience(AUD).build();
    assert!(build(Issuer::discover("http://auth.example.com")).is_err());
    let jwks = Issuer::jwks("https://auth.example.com", "http://keys.example.com/jwks");
    assert!(build(jwks).is_err());
    assert!(build(Issuer::discover("https://auth.example.com")).is_ok());
    assert!(build(Issuer::discover("http://127.0.0.1:9")).is_ok());
}

// ---------------------------------------------------------------------------------------------
// Rotation and unknown kids
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotation_refetches_once_and_drops_removed_keys() {
    let server = KeyServer::start().await;
    let [k1, k2, k3] = ["k1", "k2", "k3"].map(|kid| TestKey::generate(Algorithm::ES256, kid));
    server.set_keys(&[&k1]);
    let options = cache_options(|o| o.unknown_kid_cooldown(Duration::ZERO));
    let app = start_app(
        &verifier(&server).key_cache(options).build().unwrap(),
        false,
    )
    .await;
    assert_eq!(app.get("/whoami", &token(&k1, &server)).await.0, 200);
    assert_eq!(server.jwks_hits(), 1);

    // The issuer adds k2: twenty concurrent requests with it share one refetch.
    server.set_keys(&[&k1, &k2]);
    let app = Arc::new(app);
    let mut requests = JoinSet::new();
    for _ in 0..20 {
        let (app, token) = (app.clone(), token(&k2, &server));
        requests.spawn(async move { app.get("/whoami", &token).await });
    }
    while let Some(answer) = requests.join_next().await {
        let (status, _, body) = answer.unwrap();
        assert_eq!((status.as_u16(), &body["kid"]), (200, &json!("k2")));
    }
    assert_eq!(server.jwks_hits(), 2);
    for key in [&k1, &k2] {
        assert_eq!(app.get("/whoami", &token(key, &server)).await.0, 200);
    }
    assert_eq!(server.jwks_hits(), 2);

    // k1 is retired: the successful refetch for k3 drops it.
    server.set_keys(&[&k2, &k3]);
    assert_eq!(app.get("/whoami", &token(&k3, &server)).await.0, 200);
    assert_eq!(server.jwks_hits(), 3);
    assert_invalid_token(&app.get("/whoami", &token(&k1, &server)).await, "AUTH_105");
    assert_eq!(app.verifier.metrics().rejected(Reason::UnknownKey), 1);
    assert_eq!(server.jwks_hits(), 4, "one refetch for k1, which is gone");
}

/// The validated-token cache: a token seen again is a hit; a cached token whose key leaves the
/// set is refused like any token of a removed key; time checks still apply to hits.
#[tokio::test]
async fn validated_token_cache_hits_and_forgets_removed_keys() {
    let server = KeyServer::start().await;
    let [k1, k2] = ["k1", "k2"].map(|kid| TestKey::generate(Algorithm::ES256, kid));
    server.set_keys(&[&k1]);
    // Signed before the clock is read: their `nbf` is never a second ahead of the clock.
    let (old, new) = (token(&k1, &server), token(&k2, &server));
    let now = Arc::new(std::sync::atomic::AtomicU64::new(keys::now()));
    let clock = now.clone();
    let options = cache_options(|o| o.unknown_kid_cooldown(Duration::ZERO));
    let verifier = verifier(&server)
        .key_cache(options)
        .leeway(Duration::ZERO)
        .clock(move || {
            std::time::UNIX_EPOCH
                + Duration::from_secs(clock.load(std::sync::atomic::Ordering::SeqCst))
        })
        .build()
        .unwrap();
    // Kept the second time it is verified, a hit from the third.
    for _ in 0..4 {
        verifier.verify(&old).await.unwrap();
    }
    let m = verifier.metrics();
    assert_eq!((m.cache_misses, m.cache_hits, m.verified), (2, 2, 4));

    // One byte changed, the length kept: no hit (the thread's recent tokens are compared byte
    // for byte, the shared cache by SHA-256 of the whole token).
    let mut changed = old.clone().into_bytes();
    let middle = changed.len() / 2;
    changed[middle] = if changed[middle] == b'A' { b'B' } else { b'A' };
    let changed = String::from_utf8(changed).unwrap();
    assert!(verifier.verify(&changed).await.is_err());
    assert_eq!(verifier.metrics().cache_hits, 2);

    // A different token with the same signature segment is no hit.
    let mut forged = old.clone();
    let payload_start = forged.find('.').unwrap() + 1;
    forged.insert_str(payload_start, "e30");
    assert!(verifier.verify(&forged).await.is_err());
    assert_eq!(verifier.metrics().cache_hits, 2);

    // Past `exp` (claims() gives 300 s), the hit is refused as expired.
    now.fetch_add(301, std::sync::atomic::Ordering::SeqCst);
    let expired = verifier.verify(&old).await.unwrap_err();
    assert_eq!(expired.reason(), Reason::Expired);
    now.fetch_sub(301, std::sync::atomic::Ordering::SeqCst);

    // k1 leaves the set (the refetch for k2 drops it): the cached k1 token goes with it.
    server.set_keys(&[&k2]);
    verifier.verify(&new).await.unwrap();
    let refused = verifier.verify(&old).await.unwrap_err();
    assert_eq!(refused.reason(), Reason::UnknownKey);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_requests_with_random_kids_cost_one_fetch() {
    let key = TestKey::generate(Algorithm::ES256, "k1");
    let server = KeyServer::serving(&[&key]).await;
    // The default cooldown (30 s) outlasts the storm.
    let app = Arc::new(start_app(&verifier(&server).build().unwrap(), false).await);
    assert_eq!(app.get("/whoami", &token(&key, &server)).await.0, 200);

    let attacker = TestKey::generate(Algorithm::ES256, "x");
    let tokens: Vec<String> = (0..1000)
        .map(|_| random_kid_token(&attacker, &server))
        .collect();
    for batch in tokens.chunks(100) {
        let mut requests = JoinSet::new();
        for token in batch {
            let (app, token) = (app.clone(), token.clone());
            requests.spawn(async move { app.get("/whoami", &token).await });
        }
        while let Some(answer) = requests.join_next().await {
            assert_invalid_token(&answer.unwrap(), "AUTH_105");
        }
    }
    assert_eq!(server.jwks_hits(), 2, "the cold fetch and one refetch");
    let metrics = app.verifier.metrics();
    assert_eq!(metrics.rejected(Reason::UnknownKey), 1000);
    assert_eq!(metrics.jwks_fetches, 2);
    assert_eq!(app.get("/whoami", &token(&key, &server)).await.0, 200);
}

#[tokio::test(start_paused = true)]
async fn unknown_kids_cause_at_most_one_fetch_per_cooldown() {
    let key = TestKey::generate(Algorithm::ES256, "k1");
    let server = KeyServer::serving(&[&key]).await;
    let verifier = verifier(&server).build().unwrap(); // cooldown 30 s
    clock_held(verifier.verify(&token(&key, &server)))
        .await
        .unwrap();
    let attacker = TestKey::generate(Algorithm::ES256, "x");

    // 1,000 concurrent verifications of random kids, all refused.
    let storm = || {
        let mut tasks = JoinSet::new();
        for _ in 0..1000 {
            let (verifier, token) = (verifier.clone(), random_kid_token(&attacker, &server));
            tasks.spawn(async move { verifier.verify(&token).await.map(|_| ()) });
        }
        clock_held(async move {
            while let Some(result) = tasks.join_next().await {
                assert_eq!(result.unwrap().unwrap_err().reason(), Reason::UnknownKey);
            }
        })
    };
    storm().await;
    assert_eq!(server.jwks_hits(), 2, "one refetch");
    storm().await;
    advance(Duration::from_millis(29_999)).await;
    storm().await;
    assert_eq!(server.jwks_hits(), 2, "still within the cooldown");
    advance(Duration::from_millis(1)).await;
    storm().await;
    assert_eq!(server.jwks_hits(), 3, "one refetch in the next cooldown");
    assert_eq!(verifier.metrics().rejected(Reason::UnknownKey), 4000);
}

// ---------------------------------------------------------------------------------------------
// The key server failing
// ---------------------------------------------------------------------------------------------

/// Every way the key server fails, with what the log line says (the caller is told none of it).
fn failures() -> [(Behavior, &'static str); 7] {
    [
        (Behavior::Status(500), "answered 500 Internal Server Error"),
        (Behavior::Hang, "timed out"),
        (Behavior::Html, "not a JWK set"),
        (
            Behavior::Huge(2 * MIB + 1),
            "larger than the 1048576 byte limit",
        ),
        (
            Behavior::HugeChunked(2 * MIB + 1),
            "larger than the 1048576 byte limit",
        ),
        (Behavior::InvalidJson, "not a JWK set"),
        (Behavior::CloseMidBody, "reading the response body failed"),
    ]
}

/// A fetch timeout short enough for [`Behavior::Hang`] (the other failures come sooner).
fn timeout_for(behavior: &Behavior) -> Duration {
    match behavior {
        Behavior::Hang => Duration::from_millis(300),
        _ => Duration::from_secs(10),
    }
}

#[tokio::test]
async fn known_keys_keep_verifying_while_the_key_server_fails() {
    let server = KeyServer::start().await;
    let [k1, k2] = ["k1", "k2"].map(|kid| TestKey::generate(Algorithm::ES256, kid));
    server.set_keys(&[&k1]);
    let options = cache_options(|o| {
        o.http(HttpOptions::new().timeout(Duration::from_secs(1)))
            .unknown_kid_cooldown(Duration::ZERO)
    });
    let app = start_app(
        &verifier(&server).key_cache(options).build().unwrap(),
        false,
    )
    .await;
    assert_eq!(app.get("/whoami", &token(&k1, &server)).await.0, 200);

    // The issuer now publishes k2, but every fetch of it fails (the huge bodies even carry it).
    server.set_keys(&[&k1, &k2]);
    for (i, (behavior, _)) in failures().into_iter().enumerate() {
        server.set_behavior(behavior.clone());
        assert_invalid_token(&app.get("/whoami", &token(&k2, &server)).await, "AUTH_105");
        assert_eq!(server.jwks_hits(), i + 2, "{behavior:?}");
        assert_eq!(
            app.verifier.metrics().jwks_fetch_failures,
            i as u64 + 1,
            "{behavior:?}"
        );
        let (status, _, body) = app.get("/whoami", &token(&k1, &server)).await;
        assert_eq!(status, 200, "{behavior:?}: {body}");
    }
    server.set_behavior(Behavior::Normal);
    assert_eq!(app.get("/whoami", &token(&k2, &server)).await.0, 200);
}

#[tokio::test]
async fn cold_start_with_the_key_server_down_is_503_with_retry_after() {
    for (behavior, why) in failures() {
        let key = TestKey::generate(Algorithm::ES256, "k1");
        let server = KeyServer::serving(&[&key]).await;
        server.set_behavior(behavior.clone());
        let options = cache_options(|o| {
            o.http(HttpOptions::new().timeout(timeout_for(&behavior)))
                .retry_interval(Duration::from_secs(3600))
        });
        let app = start_app(
            &verifier(&server).key_cache(options).build().unwrap(),
            false,
        )
        .await;
        let token = token(&key, &server);

        let answer = app.get("/whoami", &token).await;
        let description = assert_refused(&answer, 503, "temporarily_unavailable", None, "");
        assert_discreet(&description, &server, &[why]);
        assert_eq!(answer.1[RETRY_AFTER], "1", "{behavior:?}");
        assert_eq!(server.jwks_hits(), 1);

        // Within the retry interval, requests are answered at once, without a fetch.
        let answer = app.get("/whoami", &token).await;
        assert_refused(&answer, 503, "temporarily_unavailable", None, "");
        let retry_after: u64 = answer.1[RETRY_AFTER].to_str().unwrap().parse().unwrap();
        assert!((3000..=3600).contains(&retry_after), "{retry_after}");
        assert_eq!(server.jwks_hits(), 1, "{behavior:?}");
        assert_eq!(app.verifier.metrics().rejected(Reason::KeysUnavailable), 2);
        // The log line has the specifics: the URL and what the key server did.
        let refused = app.verifier.verify(&token).await.unwrap_err();
        let detail = refused.detail().unwrap();
        assert!(detail.contains(why), "{behavior:?}: {detail}");
        assert!(
            detail.contains(&server.jwks_url()),
            "{behavior:?}: {detail}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn cold_start_recovers_after_the_retry_interval() {
    let key = TestKey::generate(Algorithm::ES256, "k1");
    let server = KeyServer::serving(&[&key]).await;
    server.set_behavior(Behavior::Status(500));
    let verifier = verifier(&server).build().unwrap(); // retry interval 1 s
    let token = token(&key, &server);

    let refused = clock_held(verifier.verify(&token)).await.unwrap_err();
    assert_eq!(refused.reason(), Reason::KeysUnavailable);
    assert_eq!(refused.retry_after(), Some(Duration::from_secs(1)));
    server.set_behavior(Behavior::Normal);
    advance(Duration::from_millis(999)).await;
    let refused = clock_held(verifier.verify(&token)).await.unwrap_err();
    assert_eq!(refused.retry_after(), Some(Duration::from_millis(1)));
    assert_eq!(server.jwks_hits(), 1, "no fetch within the retry interval");
    assert!(!verifier.is_ready());

    advance(Duration::from_millis(1)).await;
    clock_held(verifier.verify(&token)).await.unwrap();
    assert_eq!(server.jwks_hits(), 2);
    assert!(verifier.is_ready());
}

// ---------------------------------------------------------------------------------------------
// Time to live and background refresh (paused clock)
// ---------------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn cache_control_sets_the_refresh_time_within_bounds() {
    // Defaults: TTL between 60 s and 24 h, 5 min without max-age; refreshed at 80% of it.
    for (cache_control, refresh_after) in [
        (Some("public, max-age=600"), 480),
        (Some("max-age=5"), 48),
        (Some("no-store"), 48),
        (Some("max-age=999999999"), 69_120),
        (None, 240),
    ] {
        let server = KeyServer::start().await;
        server.set_cache_control(cache_control);
        let key = TestKey::generate(Algorithm::ES256, "k1");
        server.set_keys(&[&key]);
        let verifier = verifier(&server).build().unwrap();
        clock_held(verifier.verify(&token(&key, &server)))
            .await
            .unwrap();

        advance(Duration::from_secs(refresh_after - 1)).await;
        round_trip(&server).await;
        assert_eq!(server.jwks_hits(), 1, "{cache_control:?}: refreshed early");
        advance(Duration::from_secs(2)).await;
        clock_held(wait_until("the refresh", || {
            verifier.metrics().jwks_fetches == 2
        }))
        .await;
        assert_eq!(server.jwks_hits(), 2, "{cache_control:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn background_refresh_replaces_keys_and_keeps_them_when_it_fails() {
    let server = KeyServer::start().await;
    server.set_cache_control(Some("max-age=100")); // refreshed after 80 s
    let [k1, k2] = ["k1", "k2"].map(|kid| TestKey::generate(Algorithm::ES256, kid));
    server.set_keys(&[&k1]);
    let verifier = verifier(&server).build().unwrap();
    let verify = |key: &TestKey| {
        let (verifier, token) = (verifier.clone(), token(key, &server));
        clock_held(async move { verifier.verify(&token).await })
    };
    verify(&k1).await.unwrap();

    // The issuer rotates to k2, but the refresh fails: k1 keeps verifying.
    server.set_keys(&[&k2]);
    server.set_behavior(Behavior::Status(500));
    advance(Duration::from_secs(81)).await;
    clock_held(wait_until("the failed refresh", || {
        verifier.metrics().jwks_fetch_failures == 1
    }))
    .await;
    assert_eq!(server.jwks_hits(), 2);
    verify(&k1).await.unwrap();

    // The retry (after 1–2 s of back-off) succeeds: k2 is known without a fetch, k1 is gone.
    server.set_behavior(Behavior::Normal);
    advance(Duration::from_secs(2)).await;
    clock_held(wait_until("the retried refresh", || {
        verifier.metrics().jwks_fetches == 3
    }))
    .await;
    assert_eq!(server.jwks_hits(), 3);
    let verified = verify(&k2).await.unwrap();
    assert_eq!(verified.kid(), Some("k2"));
    assert_eq!(server.jwks_hits(), 3);
    assert_eq!(verify(&k1).await.unwrap_err().reason(), Reason::UnknownKey);
}

#[tokio::test(start_paused = true)]
async fn known_keys_serve_an_outage_for_24_h_past_their_ttl_then_503_and_not_ready() {
    let key = TestKey::generate(Algorithm::ES256, "k1");
    let server = KeyServer::serving(&[&key]).await;
    server.set_cache_control(Some("max-age=100"));
    let verifier = verifier(&server).build().unwrap(); // the default maximum staleness, 24 h
    let app = start_app(&verifier, false).await;
    let (seen, unseen) = (token(&key, &server), token(&key, &server));
    assert_eq!(clock_held(app.get("/whoami", &seen)).await.0, 200);
    assert!(verifier.is_ready());

    // The key server goes down. Up to 24 h past the time to live, the known key still verifies
    // (a token seen before, now from the validated-token cache, and a new one).
    server.set_behavior(Behavior::Status(503));
    advance(Duration::from_secs(100 + 24 * 3600 - 1)).await;
    for token in [&seen, &seen, &unseen] {
        let (status, _, body) = clock_held(app.get("/whoami", token)).await;
        assert_eq!(status, 200, "{body}");
    }
    assert!(verifier.metrics().jwks_fetch_failures >= 1);
    assert!(verifier.is_ready());

    // Past it, the old key is not used any more: 503 with Retry-After, and not ready.
    advance(Duration::from_secs(2)).await;
    let fresh = token(&key, &server);
    for token in [&seen, &unseen, &fresh] {
        let answer = clock_held(app.get("/whoami", token)).await;
        let description = assert_refused(&answer, 503, "temporarily_unavailable", None, "");
        assert_discreet(&description, &server, &[]);
        assert!(answer.1.contains_key(RETRY_AFTER), "{:?}", answer.1);
    }
    assert!(!verifier.is_ready());
    assert_eq!(verifier.metrics().rejected(Reason::KeysUnavailable), 3);

    // The key server is back: the next fetch restores the issuer.
    server.set_behavior(Behavior::Normal);
    advance(Duration::from_secs(2)).await;
    assert_eq!(clock_held(app.get("/whoami", &seen)).await.0, 200);
    assert!(verifier.is_ready());
}

/// `GET /readyz` of a gateway, with the paused clock held: the status and the JSON body.
async fn readyz_answer(url: &str) -> (StatusCode, Value) {
    clock_held(async {
        // A new connection each time: the paused clock jumps past the gateway's idle timeout,
        // which closes a pooled connection at the very instant the next request is sent on it.
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let response = client.get(format!("{url}/readyz")).send().await;
        let response = response.unwrap();
        (response.status(), response.json().await.unwrap())
    })
    .await
}

/// The status of `GET /readyz`.
async fn readyz(url: &str) -> StatusCode {
    readyz_answer(url).await.0
}

#[tokio::test(start_paused = true)]
async fn the_gateway_is_not_ready_once_its_keys_are_past_max_stale() {
    let server = KeyServer::start().await;
    server.set_cache_control(Some("max-age=100"));
    server.set_keys(&[&TestKey::generate(Algorithm::ES256, "k1")]);
    let upstream = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    // One issuer, one upstream, one route (inline tables: the same TOML as `[[issuer]]` ...).
    let config = format!(
        r#"
issuer = [{{ id = "{issuer}", jwks_url = "{jwks}", audiences = ["{AUD}"] }}]
upstreams.app.url = "http://{upstream}"
route = [{{ prefix = "/orders", upstream = "app" }}]
"#,
        issuer = server.issuer(),
        jwks = server.jwks_url(),
        upstream = upstream.local_addr().unwrap(),
    );
    let config = s2s_gateway::Config::from_toml_str(&config).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let gateway = s2s_gateway::Gateway::from_config(config).await.unwrap();
    let serving = tokio::spawn(gateway.serve(listener, std::future::pending::<()>()));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while readyz(&url).await != StatusCode::OK {
        assert!(std::time::Instant::now() < deadline, "never ready");
    }

    // The key server goes down: ready through the outage, up to 24 h past the time to live.
    server.set_behavior(Behavior::Status(503));
    advance(Duration::from_secs(100 + 24 * 3600 - 1)).await;
    assert_eq!(readyz(&url).await, StatusCode::OK);
    advance(Duration::from_secs(2)).await;
    let (status, body) = readyz_answer(&url).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    // Loaded, but too stale to use: the probe says so rather than "not loaded yet".
    let why = body["error_description"].as_str().unwrap();
    assert!(why.contains("maximum staleness"), "{body}");
    assert!(!why.contains("not loaded"), "{body}");

    // Back: the key cache's own retries (at most a minimum TTL apart) make it ready again.
    server.set_behavior(Behavior::Normal);
    advance(Duration::from_secs(61)).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while readyz(&url).await != StatusCode::OK {
        assert!(std::time::Instant::now() < deadline, "never ready again");
    }
    serving.abort();
}

#[tokio::test(start_paused = true)]
async fn max_stale_is_configurable_and_load_keys_recovers_a_stale_issuer() {
    let key = TestKey::generate(Algorithm::ES256, "k1");
    let server = KeyServer::serving(&[&key]).await;
    server.set_cache_control(Some("max-age=100"));
    let verifier = verifier(&server)
        .max_stale(Duration::from_secs(600))
        .build()
        .unwrap();
    let token = token(&key, &server);
    clock_held(verifier.load_keys()).await.unwrap();
    assert!(verifier.is_ready());

    server.set_behavior(Behavior::Status(503));
    advance(Duration::from_secs(699)).await;
    assert!(verifier.is_ready());
    clock_held(verifier.verify(&token)).await.unwrap();
    advance(Duration::from_secs(2)).await;
    assert!(!verifier.is_ready());
    let refused = verifier.verify_with_held_keys(&token).unwrap_err();
    assert_eq!(refused.reason(), Reason::KeysUnavailable);

    // Readiness probes reload through `load_keys`, which fetches a stale set again.
    server.set_behavior(Behavior::Normal);
    advance(Duration::from_secs(2)).await;
    clock_held(verifier.load_keys()).await.unwrap();
    assert!(verifier.is_ready());
    verifier.verify_with_held_keys(&token).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Refusals
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn invalid_tokens_are_refused_with_401_code_and_challenge() {
    let server = KeyServer::start().await;
    let es = TestKey::generate(Algorithm::ES256, "es");
    let rs = TestKey::generate(Algorithm::RS256, "rs");
    server.set_jwks(keys::jwks(&[
        es.jwk(),
        rs.jwk(),
        keys::weak_rsa_jwk(1024, "weak-1024"),
        keys::weak_rsa_jwk(2047, "weak-2047"),
    ]));
    let app = start_app(&verifier(&server).build().unwrap(), false).await;
    let valid = token(&es, &server);
    assert_eq!(app.get("/whoami", &valid).await.0, 200);

    let now = keys::now();
    let good = || claims(&server);
    let signed = |changes: Value| es.sign(&edit(good(), changes));
    let with_header = |header: Value| es.sign_with_header(&header, &good());
    let b64_json = |v: Value| keys::b64(v.to_string().as_bytes());
    let [h, p, s] = <[&str; 3]>::try_from(valid.split('.').collect::<Vec<_>>()).unwrap();
    let tampered_signature = {
        let mut sig = URL_SAFE_NO_PAD.decode(s).unwrap();
        sig[10] ^= 1;
        format!("{h}.{p}.{}", keys::b64(&sig))
    };
    let other_es = TestKey::generate(Algorithm::ES256, "es");
    let weak = |kid: &str| rs.sign_with_header(&json!({ "alg": "RS256", "kid": kid }), &good());

    use Reason::*;
    let cases: Vec<(&str, String, &str, Reason)> = vec![
        (
            "alg none",
            keys::unsigned_token(r#"{"alg":"none","kid":"es"}"#, &good().to_string(), b""),
            "AUTH_105",
            UnsupportedAlgorithm,
        ),
        (
            "alg nOnE",
            keys::unsigned_token(r#"{"alg":"nOnE"}"#, &good().to_string(), b""),
            "AUTH_105",
            UnsupportedAlgorithm,
        ),
        (
            "HS256 with the RSA public key as secret",
            keys::hs256_token(rs.public_pem().as_bytes(), "rs", &good()),
            "AUTH_105",
            UnsupportedAlgorithm,
        ),
        (
            "RS256 naming an ES256 key",
            rs.sign_with_header(&json!({ "alg": "RS256", "kid": "es" }), &good()),
            "AUTH_105",
            AlgorithmMismatch,
        ),
        (
            "tampered payload",
            format!(
                "{h}.{}.{s}",
                b64_json(edit(good(), json!({"sub": "admin"})))
            ),
            "AUTH_105",
            BadSignature,
        ),
        (
            "tampered signature",
            tampered_signature,
            "AUTH_105",
            BadSignature,
        ),
        (
            "signed by another key with the same kid",
            token(&other_es, &server),
            "AUTH_105",
            BadSignature,
        ),
        (
            "expired",
            signed(json!({ "iat": now - 7200, "nbf": now - 7200, "exp": now - 3600 })),
            "AUTH_105",
            Expired,
        ),
        (
            "nbf in the future",
            signed(json!({ "nbf": now + 3600, "exp": now + 7200 })),
            "AUTH_105",
            NotYetValid,
        ),
        (
            "wrong iss",
            signed(json!({ "iss": "https://evil.test" })),
            "AUTH_105",
            UnknownIssuer,
        ),
        (
            "wrong aud",
            signed(json!({ "aud": "billing-api" })),
            "AUTH_107",
            WrongAudience,
        ),
        (
            "aud array without this service",
            signed(json!({ "aud": ["billing-api", "orders"] })),
            "AUTH_107",
            WrongAudience,
        ),
        (
            "missing exp",
            signed(json!({ "exp": null })),
            "AUTH_105",
            MissingClaim,
        ),
        (
            "exp as a string",
            signed(json!({ "exp": (now + 300).to_string() })),
            "AUTH_105",
            Malformed,
        ),
        (
            "unknown crit",
            with_header(json!({ "alg": "ES256", "kid": "es", "crit": ["urn:x"], "urn:x": 1 })),
            "AUTH_105",
            CriticalHeader,
        ),
        (
            "64 KiB token (over the 16 KiB limit)",
            signed(json!({ "pad": "x".repeat(64 * 1024) })),
            "AUTH_105",
            TooLarge,
        ),
        (
            "non-base64url segments",
            "e+J/.e~J+.e~J+".to_owned(),
            "AUTH_105",
            Malformed,
        ),
        (
            "header is a JSON array",
            format!("{}.{}.{s}", b64_json(json!(["ES256"])), b64_json(good())),
            "AUTH_105",
            Malformed,
        ),
        (
            "payload is a JSON array",
            es.sign_raw(
                &json!({ "alg": "ES256", "kid": "es" }).to_string(),
                &json!([server.issuer(), "svc-orders", AUD, now + 300]).to_string(),
            ),
            "AUTH_105",
            Malformed,
        ),
        (
            "header is not JSON",
            format!("{}.{}.{s}", keys::b64(b"alg: ES256"), b64_json(good())),
            "AUTH_105",
            Malformed,
        ),
        (
            "two segments",
            format!("{h}.{}", b64_json(good())),
            "AUTH_105",
            Malformed,
        ),
        (
            "five segments (JWE)",
            format!(
                "{}.a.b.c.d",
                b64_json(json!({ "alg": "RSA-OAEP", "enc": "A256GCM" }))
            ),
            "AUTH_105",
            Encrypted,
        ),
        (
            "unknown kid",
            random_kid_token(&es, &server),
            "AUTH_105",
            UnknownKey,
        ),
        (
            "1024-bit RSA key in the JWKS",
            weak("weak-1024"),
            "AUTH_105",
            UnknownKey,
        ),
        (
            "2047-bit RSA key in the JWKS",
            weak("weak-2047"),
            "AUTH_105",
            UnknownKey,
        ),
    ];
    for (name, token, code, reason) in cases {
        let before = app.verifier.metrics();
        let answer = app.get("/whoami", &token).await;
        let description = assert_refused(&answer, 401, "invalid_token", Some(code), "");
        // The caller is told the reason, never the configuration it failed against.
        assert_discreet(
            &description,
            &server,
            &["RS512", "ES384", "weak-", "billing"],
        );
        assert_eq!(description, reason.summary(), "{name}");
        let after = app.verifier.metrics();
        assert_eq!(
            (after.rejected(reason), after.rejected_total()),
            (before.rejected(reason) + 1, before.rejected_total() + 1),
            "{name}: not counted as {reason}: {description}"
        );
        if token.len() > 40 {
            let body = answer.2.to_string();
            assert!(
                !body.contains(&token[token.len() - 20..]),
                "{name}: leaks the token"
            );
        }
    }
    // Nothing broke: the server still answers.
    assert_eq!(app.get("/whoami", &valid).await.0, 200);
}

#[tokio::test]
async fn a_1_mib_token_is_refused_before_parsing_or_fetching() {
    let key = TestKey::generate(Algorithm::ES256, "k1");
    let server = KeyServer::serving(&[&key]).await;
    let verifier = verifier(&server).build().unwrap();
    let huge = key.sign(&edit(claims(&server), json!({ "pad": "x".repeat(MIB) })));
    assert!(huge.len() > MIB);
    for token in [huge, "A".repeat(MIB)] {
        let refused = verifier.verify(&token).await.unwrap_err();
        assert_eq!(refused.reason(), Reason::TooLarge);
    }
    assert_eq!(
        server.requests(),
        0,
        "no key fetch for a token refused on size"
    );
}

#[tokio::test]
async fn jku_x5u_and_jwk_headers_are_never_followed() {
    let server = KeyServer::start().await;
    let es = TestKey::generate(Algorithm::ES256, "es");
    server.set_keys(&[&es]);
    let attacker = KeyServer::start().await;
    let evil = TestKey::generate(Algorithm::ES256, "evil");
    attacker.set_keys(&[&evil]);
    let app = start_app(&verifier(&server).build().unwrap(), false).await;

    for (kid, reason) in [("evil", Reason::UnknownKey), ("es", Reason::BadSignature)] {
        let header = json!({
            "alg": "ES256", "kid": kid,
            "jku": attacker.jwks_url(), "x5u": attacker.jwks_url(), "jwk": evil.jwk(),
        });
        let forged = evil.sign_with_header(&header, &claims(&server));
        assert_invalid_token(&app.get("/whoami", &forged).await, "AUTH_105");
        assert_eq!(app.verifier.metrics().rejected(reason), 1, "kid {kid}");
    }
    assert_eq!(attacker.requests(), 0);
}

#[test]
fn rsa_keys_under_2048_bits_are_skipped_when_the_set_loads() {
    let good = TestKey::generate(Algorithm::ES256, "good");
    let mut jwks = vec![good.jwk()];
    for bits in [512, 1024, 2040, 2047, 2048] {
        jwks.push(keys::weak_rsa_jwk(bits, &format!("rsa-{bits}")));
    }
    let set = KeySet::from_jwks(keys::jwks(&jwks).to_string().as_bytes()).unwrap();
    // A 2048-bit modulus passes the size check (this one is random, not a real key).
    assert_eq!(set.kids().collect::<Vec<_>>(), ["good", "rsa-2048"]);
}

#[tokio::test]
async fn missing_token_gets_a_bare_challenge() {
    let server = KeyServer::start().await;
    let app = start_app(&verifier(&server).build().unwrap(), false).await;
    for authorization in [&[][..], &["Basic dXNlcjpwYXNz"][..]] {
        let (status, headers, body) = app.call("/whoami", authorization).await;
        assert_eq!(status, 401);
        assert_eq!(headers[WWW_AUTHENTICATE], r#"Bearer realm="orders""#);
        assert_eq!(body["code"], "AUTH_105");
    }
    assert_eq!(app.verifier.metrics().rejected(Reason::MissingToken), 2);
    assert_eq!(server.requests(), 0);
}

#[tokio::test]
async fn authorization_header_forms() {
    let (server, key, app) = one_key_app(false).await;
    let token = token(&key, &server);

    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let (status, _, body) = app.call("/whoami", &[&format!("{scheme} {token}")]).await;
        assert_eq!(status, 200, "{scheme}: {body}");
    }
    let bearer = format!("Bearer {token}");
    let extra = format!("{bearer} extra");
    let malformed: [&[&str]; 4] = [
        &[&bearer, &bearer],
        &[&bearer, "Basic dXNlcjpwYXNz"],
        &["Bearer"],
        &[&extra],
    ];
    for authorization in malformed {
        let answer = app.call("/whoami", authorization).await;
        assert_invalid_token(&answer, "AUTH_105");
    }
    assert_eq!(app.verifier.metrics().rejected(Reason::MalformedHeader), 4);
}

#[tokio::test]
async fn insufficient_scope_is_403_naming_the_scopes() {
    let (server, key, app) = one_key_app(false).await;
    let read_write = token(&key, &server); // orders:read orders:write

    let answer = app.get("/admin", &read_write).await;
    let description = assert_refused(
        &answer,
        403,
        "insufficient_scope",
        Some("AUTH_102"),
        r#", scope="orders:admin orders:read""#,
    );
    assert!(
        description.contains("orders:admin orders:read"),
        "{description}"
    );
    assert_eq!(app.get("/any", &read_write).await.0, 200);

    let read_only = key.sign(&edit(claims(&server), json!({ "scope": "orders:read" })));
    let answer = app.get("/any", &read_only).await;
    assert_refused(
        &answer,
        403,
        "insufficient_scope",
        Some("AUTH_102"),
        r#", scope="orders:admin orders:write""#,
    );
    // Scopes from `scp` (an array) count as well.
    let admin = key.sign(&edit(
        claims(&server),
        json!({ "scope": null, "scp": ["orders:admin", "orders:read"] }),
    ));
    let (status, _, body) = app.get("/admin", &admin).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scopes"], "orders:admin orders:read");
}

#[tokio::test]
async fn optional_mode_passes_without_a_token_but_refuses_a_bad_one() {
    let (server, key, app) = one_key_app(true).await;

    let (status, _, body) = app.call("/maybe", &[]).await;
    assert_eq!((status.as_u16(), body), (200, json!({ "claims": null })));
    let (status, _, body) = app.get("/maybe", &token(&key, &server)).await;
    assert_eq!(status, 200);
    assert_eq!(body["claims"]["sub"], "svc-orders");

    let expired = key.sign(&edit(claims(&server), json!({ "exp": keys::now() - 3600 })));
    assert_invalid_token(&app.get("/maybe", &expired).await, "AUTH_105");
    assert_invalid_token(&app.call("/maybe", &["Bearer"]).await, "AUTH_105");

    // A handler that requires claims answers 401 (not 500) when the token is missing, with a
    // bare challenge in the layer's realm.
    let (status, headers, body) = app.call("/whoami", &[]).await;
    assert_eq!(status, 401);
    assert_eq!(body["code"], "AUTH_105");
    assert_eq!(
        headers[WWW_AUTHENTICATE],
        format!("Bearer realm=\"{REALM}\"")
    );
}

#[tokio::test]
async fn claims_on_a_route_without_verify_layer_is_a_500_saying_to_add_it() {
    let (server, key, app) = one_key_app(false).await;

    let (status, headers, body) = app.get("/nolayer", &token(&key, &server)).await;
    assert_eq!(status, 500);
    assert!(headers.get(WWW_AUTHENTICATE).is_none());
    assert_eq!(body["error"], "server_error");
    let description = body["error_description"].as_str().unwrap();
    assert!(
        description.contains("add `.layer(VerifyLayer::new(verifier))`"),
        "{description}"
    );
}

#[tokio::test]
async fn tokens_typed_as_other_kinds_of_jwt_are_refused_without_require_at_jwt() {
    let key = TestKey::generate(Algorithm::ES256, "k1");
    let server = KeyServer::serving(&[&key]).await;
    let verifier = verifier(&server).build().unwrap(); // not strict
    let app = start_app(&verifier, false).await;
    let typed = |typ: Value| {
        let header = json!({ "alg": "ES256", "kid": "k1", "typ": typ });
        key.sign_with_header(&header, &claims(&server))
    };

    // No typ, a plain JWT (RFC 7519 §5.1; `application/` may be left out, RFC 7515 §4.1.9)
    // and an RFC 9068 access token, in any case.
    for typ in [
        Value::Null,
        json!("JWT"),
        json!("jwt"),
        json!("application/jwt"),
        json!("Application/JWT"),
        json!("at+jwt"),
        json!("AT+JWT"),
        json!("application/at+jwt"),
    ] {
        let (status, _, body) = app.get("/whoami", &typed(typ.clone())).await;
        assert_eq!(status, 200, "typ {typ}: {body}");
    }
    // Other kinds of token the same issuer may sign, and look-alikes.
    let refused = [
        "id_token",
        "JWT-ID",
        "secevent+jwt",
        "application/secevent+jwt",
        "dpop+jwt",
        "logout+jwt",
        "token-introspection+jwt",
        "vnd.example.at+jwt",
        "application/at+jwt; charset=utf-8",
        "at+jwt ",
        "jwt+at",
        "JOSE",
        "",
    ];
    for typ in refused {
        let answer = app.get("/whoami", &typed(json!(typ))).await;
        let description = assert_invalid_token(&answer, "AUTH_105");
        assert_eq!(description, Reason::WrongType.summary(), "typ {typ:?}");
    }
    assert_eq!(
        verifier.metrics().rejected(Reason::WrongType),
        refused.len() as u64
    );
}

#[tokio::test]
async fn a_wrong_audience_is_refused_without_naming_the_accepted_ones() {
    let key = TestKey::generate(Algorithm::ES256, "k1");
    let server = KeyServer::serving(&[&key]).await;
    let verifier = verifier(&server)
        .audience("orders-internal")
        .build()
        .unwrap();
    let app = start_app(&verifier, false).await;
    let billing = key.sign(&edit(claims(&server), json!({ "aud": "billing-api" })));

    let answer = app.get("/whoami", &billing).await;
    let description = assert_invalid_token(&answer, "AUTH_107");
    assert_discreet(&description, &server, &["orders-internal", "orders"]);
    assert_eq!(description, Reason::WrongAudience.summary());
    // The log line says which audiences were expected.
    let detail = verifier.verify(&billing).await.unwrap_err();
    let detail = detail.detail().unwrap();
    assert!(
        detail.contains("orders-api") && detail.contains("orders-internal"),
        "{detail}"
    );
}

#[tokio::test]
async fn require_at_jwt_refuses_other_token_types() {
    let key = TestKey::generate(Algorithm::ES256, "k1");
    let server = KeyServer::serving(&[&key]).await;
    let verifier = verifier(&server).require_at_jwt(true).build().unwrap();
    let app = start_app(&verifier, false).await;

    for (typ, accepted) in [
        (json!("at+jwt"), true),
        (json!("application/at+jwt"), true),
        (json!("AT+JWT"), true),
        (json!("JWT"), false),
        (json!("application/jwt"), false),
        (Value::Null, false),
    ] {
        let header = json!({ "alg": "ES256", "kid": "k1", "typ": typ });
        let answer = app
            .get("/whoami", &key.sign_with_header(&header, &claims(&server)))
            .await;
        if accepted {
            assert_eq!(answer.0, 200, "typ {typ}: {}", answer.2);
        } else {
            let description = assert_invalid_token(&answer, "AUTH_105");
            assert!(description.contains("at+jwt"), "{description}");
        }
    }
    assert_eq!(verifier.metrics().rejected(Reason::WrongType), 3);
}

// ---------------------------------------------------------------------------------------------
// Metrics and the injected clock
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn metrics_count_verified_rejections_by_reason_and_fetches() {
    let key = TestKey::generate(Algorithm::ES256, "k1");
    let server = KeyServer::serving(&[&key]).await;
    let verifier = verifier(&server).build().unwrap();
    assert_eq!(verifier.metrics(), MetricsSnapshot::default());
    let app = start_app(&verifier, false).await;

    for _ in 0..3 {
        assert_eq!(app.get("/whoami", &token(&key, &server)).await.0, 200);
    }
    let expired = key.sign(&edit(claims(&server), json!({ "exp": keys::now() - 3600 })));
    app.get("/whoami", &expired).await;
    app.get("/whoami", &expired).await;
    app.call("/whoami", &[]).await;
    server.set_behavior(Behavior::Status(500));
    app.get("/whoami", &random_kid_token(&key, &server)).await;

    let m = verifier.metrics();
    assert_eq!(m.verified, 3);
    assert_eq!(
        m.rejected,
        [
            (Reason::MissingToken, 1),
            (Reason::UnknownKey, 1),
            (Reason::Expired, 2)
        ]
    );
    assert_eq!(m.rejected_total(), 4);
    assert_eq!((m.jwks_fetches, m.jwks_fetch_failures), (2, 1));
}

#[tokio::test]
async fn injected_clock_decides_exp_nbf_and_leeway() {
    const ISS: &str = "https://auth.example.test";
    const NBF: u64 = 1_999_999_900;
    const EXP: u64 = 2_000_000_000;
    let key = TestKey::generate(Algorithm::EdDSA, "k1");
    let jwks = keys::jwks(&[key.jwk()]).to_string();
    let token = key.sign(&edit(
        keys::claims(ISS, AUD),
        json!({ "iat": NBF, "nbf": NBF, "exp": EXP }),
    ));
    let now = Arc::new(AtomicU64::new(0));

    for (leeway, steps) in [
        (
            0,
            [
                (NBF - 1, Err(Reason::NotYetValid)),
                (NBF, Ok(())),
                (EXP - 1, Ok(())),
                (EXP, Err(Reason::Expired)),
            ],
        ),
        (
            30,
            [
                (NBF - 31, Err(Reason::NotYetValid)),
                (NBF - 30, Ok(())),
                (EXP + 29, Ok(())),
                (EXP + 30, Err(Reason::Expired)),
            ],
        ),
    ] {
        let clock = now.clone();
        let verifier = Verifier::builder()
            .issuer(Issuer::keys(
                ISS,
                KeySet::from_jwks(jwks.as_bytes()).unwrap(),
            ))
            .audience(AUD)
            .leeway(Duration::from_secs(leeway))
            .clock(move || UNIX_EPOCH + Duration::from_secs(clock.load(Ordering::SeqCst)))
            .build()
            .unwrap();
        // The same token and verifier throughout: an accepted token is refused once expired.
        for (at, expected) in steps {
            now.store(at, Ordering::SeqCst);
            let got = verifier
                .verify(&token)
                .await
                .map(|_| ())
                .map_err(|r| r.reason());
            assert_eq!(
                got,
                expected,
                "leeway {leeway} s, {} s after nbf",
                at as i64 - NBF as i64
            );
        }
    }
}
