//! The kit over real sockets: the issuer's tokens verify, keys rotate, and every fault is what
//! a client sees.

use std::time::{Duration, Instant};

use s2s_auth_testkit::{Algorithm, Endpoint, Fault, Minter, TestIssuer, keys};
use serde_json::{Value, json};

async fn fetch_token(issuer: &TestIssuer, id: &str, secret: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(issuer.token_url())
        .basic_auth(id, Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("the token endpoint answers")
}

fn payload(token: &str) -> Value {
    use base64::Engine as _;
    let part = token.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

#[tokio::test]
async fn accounts_get_tokens_that_the_verifier_accepts() {
    let issuer = TestIssuer::builder().audience("orders-api").start().await;
    let account = issuer.account("billing", &["orders:read"]).await;
    let response = fetch_token(&issuer, &account.client_id, &account.client_secret).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let token = body["access_token"].as_str().unwrap();
    let verifier = issuer.verifier();
    let verified = verifier
        .verify(token)
        .await
        .expect("the issuer's token verifies");
    assert_eq!(
        verified.standard().client_id.as_deref(),
        Some(account.client_id.as_str())
    );
    assert!(verified.scopes().contains("orders:read"));

    // A minted token with claims of the test's choosing, signed by the same key.
    let minted = issuer.token(json!({ "sub": "custom", "tenant": "eu", "scope": "a b" }));
    let verified = verifier
        .verify(&minted)
        .await
        .expect("a minted token verifies");
    assert_eq!(verified.standard().sub.as_deref(), Some("custom"));
    assert_eq!(verified.claims::<Value>().unwrap()["tenant"], "eu");
    assert_eq!(issuer.requests(Endpoint::Token), 1);
}

#[tokio::test]
async fn a_wrong_secret_is_refused_by_the_real_issuer() {
    let issuer = TestIssuer::start().await;
    let account = issuer.account("billing", &[]).await;
    let response = fetch_token(&issuer, &account.client_id, "not-the-secret").await;
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn rotation_signs_with_a_new_key_and_keeps_the_old_one_published() {
    let issuer = TestIssuer::builder().rs256().start().await;
    let before = issuer.token(json!({}));
    let rotation = issuer.rotate_keys().await;
    let after = issuer.token(json!({}));
    let kid = |t: &str| jsonwebtoken::decode_header(t).unwrap().kid.unwrap();
    assert_eq!(kid(&after), rotation.kid);
    assert_eq!(Some(kid(&before)), rotation.previous_kid);
    let jwks: Value = reqwest::get(issuer.jwks_url())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2, "{jwks}");
    let verifier = issuer.verifier();
    for token in [&before, &after] {
        verifier.verify(token).await.expect("both keys verify");
    }
    assert_eq!(
        jsonwebtoken::decode_header(&after).unwrap().alg,
        Algorithm::RS256
    );
}

#[tokio::test]
async fn rate_limited_once_then_served() {
    let issuer = TestIssuer::start().await;
    let account = issuer.account("billing", &[]).await;
    issuer.fail_next(Endpoint::Token, Fault::RateLimited { retry_after: 7 }, 1);
    let limited = fetch_token(&issuer, &account.client_id, &account.client_secret).await;
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.headers()["retry-after"], "7");
    let body: Value = limited.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable");
    let served = fetch_token(&issuer, &account.client_id, &account.client_secret).await;
    assert_eq!(served.status(), 200);
    assert_eq!(issuer.requests(Endpoint::Token), 2);
}

#[tokio::test]
async fn a_status_fault_hits_only_its_endpoint_until_cleared() {
    let issuer = TestIssuer::start().await;
    issuer.set_fault(Endpoint::Jwks, Fault::Status(503));
    let jwks = reqwest::get(issuer.jwks_url()).await.unwrap();
    assert_eq!(jwks.status(), 503);
    let metadata = reqwest::get(format!("{}/.well-known/openid-configuration", issuer.url()))
        .await
        .unwrap();
    assert_eq!(metadata.status(), 200);
    // The verifier meets the fault too: discovery works, the keys do not.
    assert!(
        issuer
            .verifier()
            .verify(&issuer.token(json!({})))
            .await
            .is_err()
    );
    issuer.clear_faults();
    assert_eq!(reqwest::get(issuer.jwks_url()).await.unwrap().status(), 200);
    assert_eq!(issuer.requests(Endpoint::Jwks), 3);
    assert_eq!(issuer.requests(Endpoint::Discovery), 2);
    assert_eq!(issuer.requests(Endpoint::Any), 5);
}

#[tokio::test]
async fn a_hung_request_times_out_and_is_served_once_cleared() {
    let issuer = TestIssuer::start().await;
    issuer.set_fault(Endpoint::Any, Fault::Hang);
    let client = reqwest::Client::new();
    let timed_out = client
        .get(issuer.jwks_url())
        .timeout(Duration::from_millis(200))
        .send()
        .await
        .expect_err("nothing is answered");
    assert!(timed_out.is_timeout(), "{timed_out}");

    let held = tokio::spawn(client.get(issuer.jwks_url()).send());
    let deadline = Instant::now() + Duration::from_secs(10);
    while issuer.requests(Endpoint::Jwks) < 2 {
        assert!(Instant::now() < deadline, "the request never arrived");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(!held.is_finished());
    issuer.clear_faults();
    let response = held
        .await
        .unwrap()
        .expect("served after the fault is cleared");
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_slow_body_trickles_the_real_document() {
    let issuer = TestIssuer::start().await;
    let real = reqwest::get(issuer.jwks_url())
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let tick = Duration::from_millis(25);
    issuer.set_fault(
        Endpoint::Jwks,
        Fault::SlowBody {
            bytes_per_tick: 16,
            tick,
        },
    );
    let started = Instant::now();
    let response = reqwest::get(issuer.jwks_url()).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.content_length(), Some(real.len() as u64));
    let body = response.bytes().await.unwrap();
    let pieces = real.len().div_ceil(16) as u32;
    assert!(
        started.elapsed() >= tick * pieces,
        "{:?}",
        started.elapsed()
    );
    assert_eq!(body, real, "the same document, only slower");
}

#[tokio::test]
async fn clock_skew_moves_the_issued_times() {
    let issuer = TestIssuer::start().await;
    let account = issuer.account("billing", &[]).await;
    issuer.set_clock_skew(-7200);
    let response = fetch_token(&issuer, &account.client_id, &account.client_secret).await;
    let body: Value = response.json().await.unwrap();
    let claims = payload(body["access_token"].as_str().unwrap());
    let iat = claims["iat"].as_u64().unwrap();
    let now = keys::now();
    assert!(
        iat <= now - 7200 && iat + 60 > now - 7200,
        "iat {iat}, now {now}"
    );
    // 1800 s tokens two hours behind: expired for a verifier on the real clock.
    let err = issuer
        .verifier()
        .verify(body["access_token"].as_str().unwrap())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("expired"), "{err}");
    let minted = payload(&issuer.token(json!({})));
    assert!(minted["iat"].as_u64().unwrap() <= now - 7200);
}

#[test]
fn the_minter_signs_every_algorithm_for_its_verifier() {
    for minter in [
        Minter::es256(),
        Minter::es384(),
        Minter::rs256(),
        Minter::ps256(),
        Minter::eddsa(),
    ] {
        let token = minter.token(json!({ "scope": "orders:read" }));
        let verified = minter.verifier().verify_with_held_keys(&token).unwrap();
        assert_eq!(
            verified.algorithm().to_string(),
            format!("{:?}", minter.key().alg)
        );
        assert!(verified.scopes().contains("orders:read"));
    }
}

#[test]
fn minted_claims_replace_and_remove_the_defaults() {
    let minter = Minter::es256()
        .issuer("https://auth.example")
        .audience("orders-api");
    let verifier = minter.verifier();
    assert!(
        verifier
            .verify_with_held_keys(&minter.token(json!({"exp": 1})))
            .is_err()
    );
    assert!(
        verifier
            .verify_with_held_keys(&minter.token(json!({"aud": "other"})))
            .is_err()
    );
    let no_exp = payload(&minter.token(json!({"exp": null})));
    assert!(no_exp.get("exp").is_none(), "{no_exp}");
    assert_eq!(no_exp["iss"], "https://auth.example");
    assert!(
        verifier
            .verify_with_held_keys(&minter.token(json!({})))
            .is_ok()
    );
    let other = Minter::es256()
        .audience("orders-api")
        .issuer("https://auth.example");
    assert!(
        verifier
            .verify_with_held_keys(&other.token(json!({})))
            .is_err(),
        "another key's token is refused"
    );
}
