//! Self-tests of `s2s_tests::keys`: the keys sign what real verifiers accept, and the key server
//! answers, counts and fails exactly as documented.

use std::{
    io::{Read, Write},
    time::Duration,
};

use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::Jwk};
use s2s_tests::keys::{self, Behavior, KeyServer, TestKey};
use serde_json::{Value, json};

const AUD: &str = "orders-api";

#[rustfmt::skip]
const ALGS: [Algorithm; 9] = {
    use Algorithm::*;
    [RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA]
};

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// `GET url` with [`client`].
async fn get(url: impl reqwest::IntoUrl) -> reqwest::Response {
    client().get(url).send().await.unwrap()
}

fn validation(alg: Algorithm, iss: &str) -> Validation {
    let mut v = Validation::new(alg);
    v.set_audience(&[AUD]);
    v.set_issuer(&[iss]);
    v
}

fn segment(token: &str, i: usize) -> Value {
    let seg = token.split('.').nth(i).unwrap();
    serde_json::from_slice(&b64_ext::decode(seg)).unwrap()
}

mod b64_ext {
    use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};

    /// Decodes a base64url (no padding) segment.
    pub fn decode(s: &str) -> Vec<u8> {
        URL_SAFE_NO_PAD.decode(s).unwrap()
    }
}

#[tokio::test]
async fn every_algorithm_verifies_against_the_served_jwk() {
    let server = KeyServer::start().await;
    let test_keys: Vec<TestKey> = ALGS
        .iter()
        .enumerate()
        .map(|(i, &alg)| TestKey::generate(alg, &format!("k{i}")))
        .collect();
    server.set_keys(&test_keys.iter().collect::<Vec<_>>());

    let served: Value = get(server.jwks_url()).await.json().await.unwrap();
    assert_eq!(server.jwks_hits(), 1);
    assert_eq!(served["keys"].as_array().unwrap().len(), ALGS.len());

    for key in &test_keys {
        let served_jwk = served["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == key.kid.as_str())
            .unwrap();
        assert_eq!(served_jwk, &key.jwk());
        assert_eq!(served_jwk["use"], "sig");
        assert!(key.jwk_without_alg().get("alg").is_none());

        let token = key.sign(&keys::claims(&server.issuer(), AUD));
        let header = segment(&token, 0);
        assert_eq!(header["typ"], "at+jwt");
        assert_eq!(header["kid"], key.kid.as_str());

        let jwk: Jwk = serde_json::from_value(served_jwk.clone()).unwrap();
        let decoding = DecodingKey::from_jwk(&jwk).unwrap();
        let data = jsonwebtoken::decode::<Value>(
            &token,
            &decoding,
            &validation(key.alg, &server.issuer()),
        )
        .unwrap_or_else(|e| panic!("{:?} via JWK: {e}", key.alg));
        assert_eq!(data.claims["sub"], "svc-orders");

        // The SPKI PEM is the same public key.
        let pem = key.public_pem();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        let decoding = match key.alg {
            Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(pem.as_bytes()),
            Algorithm::EdDSA => DecodingKey::from_ed_pem(pem.as_bytes()),
            _ => DecodingKey::from_rsa_pem(pem.as_bytes()),
        }
        .unwrap();
        jsonwebtoken::decode::<Value>(&token, &decoding, &validation(key.alg, &server.issuer()))
            .unwrap_or_else(|e| panic!("{:?} via PEM: {e}", key.alg));
    }
}

#[test]
fn weak_rsa_jwk_has_exactly_the_bits_asked() {
    for (bits, len, top_byte_bits) in [(1024, 128, 8), (1030, 129, 6), (2047, 256, 7)] {
        let jwk = keys::weak_rsa_jwk(bits, "weak");
        assert_eq!(
            (
                &jwk["kty"],
                &jwk["alg"],
                &jwk["kid"],
                &jwk["use"],
                &jwk["e"]
            ),
            (
                &json!("RSA"),
                &json!("RS256"),
                &json!("weak"),
                &json!("sig"),
                &json!("AQAB")
            )
        );
        let n = b64_ext::decode(jwk["n"].as_str().unwrap());
        assert_eq!(n.len(), len, "{bits} bits");
        assert_eq!(
            8 - n[0].leading_zeros() as usize,
            top_byte_bits,
            "{bits} bits"
        );
        assert_eq!(n[len - 1] & 1, 1, "odd");
        assert_ne!(keys::weak_rsa_jwk(bits, "weak")["n"], jwk["n"], "random");
    }
}

#[test]
fn crafted_tokens() {
    let key = TestKey::generate(Algorithm::ES256, "k1");
    let claims = keys::claims("https://issuer.test", AUD);

    // A header written by the caller is encoded as is, and the signature is real.
    let header = json!({ "alg": "RS256", "typ": "JWT", "crit": ["exp"], "jku": "http://evil" });
    let token = key.sign_with_header(&header, &claims);
    assert_eq!(segment(&token, 0), header);
    assert_eq!(segment(&token, 1), claims);
    let (input, _) = token.rsplit_once('.').unwrap();
    let resigned = key.sign_raw(
        &String::from_utf8(b64_ext::decode(input.split('.').next().unwrap())).unwrap(),
        &claims.to_string(),
    );
    assert_eq!(resigned.split('.').next(), token.split('.').next());
    let sig = token.rsplit_once('.').unwrap().1;
    let pk = DecodingKey::from_ec_pem(key.public_pem().as_bytes()).unwrap();
    assert!(jsonwebtoken::crypto::verify(sig, input.as_bytes(), &pk, Algorithm::ES256).unwrap());

    // Raw JSON with duplicate members survives byte for byte.
    let raw_header = r#"{"alg":"ES256","kid":"k1","kid":"k2"}"#;
    let raw_payload = r#"{"sub":"a","sub":"b"}"#;
    let token = key.sign_raw(raw_header, raw_payload);
    let mut parts = token.split('.');
    assert_eq!(
        b64_ext::decode(parts.next().unwrap()),
        raw_header.as_bytes()
    );
    assert_eq!(
        b64_ext::decode(parts.next().unwrap()),
        raw_payload.as_bytes()
    );

    // Unsigned shapes.
    let t = keys::unsigned_token(r#"{"alg":"none"}"#, "{}", b"");
    assert_eq!(
        t,
        format!("{}.{}.", keys::b64(br#"{"alg":"none"}"#), keys::b64(b"{}"))
    );

    // HS256 with the RSA public key as secret: verifies with exactly that secret.
    let rsa = TestKey::generate(Algorithm::RS256, "rsa");
    let t = keys::hs256_token(rsa.public_pem().as_bytes(), "rsa", &claims);
    assert_eq!(
        segment(&t, 0),
        json!({ "alg": "HS256", "typ": "at+jwt", "kid": "rsa" })
    );
    jsonwebtoken::decode::<Value>(
        &t,
        &DecodingKey::from_secret(rsa.public_pem().as_bytes()),
        &validation(Algorithm::HS256, "https://issuer.test"),
    )
    .unwrap();

    // Standard claims.
    let now = keys::now();
    assert_eq!(claims["scope"], "orders:read orders:write");
    assert_eq!(claims["client_id"], "svc-orders");
    assert!(claims["iat"].as_u64().unwrap().abs_diff(now) <= 2);
    assert_eq!(
        claims["exp"].as_u64().unwrap(),
        claims["iat"].as_u64().unwrap() + 300
    );
    assert_ne!(keys::claims("a", "b")["jti"], keys::claims("a", "b")["jti"]);
}

#[tokio::test]
async fn discovery_headers_and_counters() {
    let server = KeyServer::start().await;
    assert!(server.url().starts_with("http://127.0.0.1:"));
    assert_eq!(server.issuer(), server.url());

    let r = get(server.jwks_url()).await;
    assert_eq!(r.headers()["cache-control"], "max-age=300");
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(r.json::<Value>().await.unwrap(), json!({ "keys": [] }));

    for path in [
        "/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server",
    ] {
        let meta: Value = get(format!("{}{path}", server.url()))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(
            meta,
            json!({
                "issuer": server.issuer(),
                "jwks_uri": server.jwks_url(),
                "token_endpoint": format!("{}/token", server.url()),
                "grant_types_supported": ["client_credentials"],
            })
        );
    }
    assert_eq!(server.discovery_hits(), 2);

    server.set_oidc_discovery(false);
    server.set_metadata_issuer("https://other.test");
    server.set_cache_control(None);
    let r = get(format!("{}/.well-known/openid-configuration", server.url())).await;
    assert_eq!(r.status(), 404);
    let r = get(format!(
        "{}/.well-known/oauth-authorization-server",
        server.url()
    ))
    .await;
    assert!(r.headers().get("cache-control").is_none());
    assert_eq!(
        r.json::<Value>().await.unwrap()["issuer"],
        "https://other.test"
    );
    assert_eq!(server.discovery_hits(), 4);

    let r = get(format!("{}/nope", server.url())).await;
    assert_eq!(r.status(), 404);
    assert_eq!(server.jwks_hits(), 1);
    assert_eq!(server.requests(), 6);

    // The behaviour applies to discovery as well.
    server.set_behavior(Behavior::Status(503));
    let r = get(format!(
        "{}/.well-known/oauth-authorization-server",
        server.url()
    ))
    .await;
    assert_eq!(r.status(), 503);
}

#[tokio::test]
async fn behaviors() {
    let key = TestKey::generate(Algorithm::ES256, "k1");
    let server = KeyServer::serving(&[&key]).await;
    let http = client();
    let get = || http.get(server.jwks_url()).send();

    server.set_behavior(Behavior::Status(500));
    let r = get().await.unwrap();
    assert_eq!(r.status(), 500);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], 500);

    server.set_behavior(Behavior::Html);
    let r = get().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(r.text().await.unwrap().contains("<html>"));

    server.set_behavior(Behavior::InvalidJson);
    let r = get().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.json::<Value>().await.is_err());

    let size = 3 * 1024 * 1024 + 17;
    server.set_behavior(Behavior::Huge(size));
    let r = get().await.unwrap();
    assert_eq!(r.headers()["content-length"], size.to_string().as_str());
    assert_eq!(r.content_length(), Some(size as u64));
    let body = r.bytes().await.unwrap();
    assert_eq!(body.len(), size);
    let doc: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        doc["keys"][0],
        key.jwk(),
        "valid JSON carrying the real keys"
    );

    server.set_behavior(Behavior::HugeChunked(size));
    let r = get().await.unwrap();
    assert!(r.headers().get("content-length").is_none());
    assert_eq!(r.headers()["transfer-encoding"], "chunked");
    assert_eq!(r.bytes().await.unwrap().len(), size);

    server.set_behavior(Behavior::CloseMidBody);
    let r = get().await.unwrap();
    assert_eq!(r.content_length(), Some(1000));
    assert!(r.bytes().await.is_err());

    let before = server.jwks_hits();
    server.set_behavior(Behavior::Hang);
    let err = http
        .get(server.jwks_url())
        .timeout(Duration::from_millis(200))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(server.jwks_hits(), before + 1);

    server.set_behavior(Behavior::Normal);
    assert_eq!(
        get().await.unwrap().json::<Value>().await.unwrap()["keys"][0],
        key.jwk()
    );
}

/// At the socket level: the headers promise 1000 bytes, 10 arrive, then EOF.
#[tokio::test(flavor = "multi_thread")]
async fn close_mid_body_really_closes() {
    let server = KeyServer::start().await;
    server.set_keys(&[&TestKey::generate(Algorithm::EdDSA, "k1")]);
    server.set_behavior(Behavior::CloseMidBody);
    let addr = server.url().trim_start_matches("http://").to_owned();
    let received = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET /jwks.json HTTP/1.1\r\nhost: x\r\n\r\n")
            .unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).expect("EOF, not a read timeout");
        out
    })
    .await
    .unwrap();
    let text = String::from_utf8(received).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(
        head.to_ascii_lowercase().contains("content-length: 1000"),
        "{head}"
    );
    assert_eq!(body, r#"{"keys":[{"#);
}

#[tokio::test]
async fn drop_closes_listener_and_open_connections() {
    let server = KeyServer::start().await;
    let http = client();
    get(server.jwks_url()).await;
    let url = server.jwks_url();

    server.set_behavior(Behavior::Hang);
    let hanging = tokio::spawn({
        let http = http.clone();
        let url = url.clone();
        async move { http.get(url).send().await }
    });
    // Drop the server once the hanging request has arrived.
    tokio::time::timeout(Duration::from_secs(10), async {
        while server.jwks_hits() < 2 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the hanging request reaches the server");
    drop(server);

    let err = hanging.await.unwrap().unwrap_err();
    assert!(!err.is_timeout(), "{err:?}");
    // The pooled keep-alive connection is gone too.
    assert!(http.get(&url).send().await.is_err());
}
