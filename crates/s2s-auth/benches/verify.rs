//! Cold verification per algorithm, side by side with a bare `jsonwebtoken::decode` of the same
//! token in the same run (goal: within 5% of it), and the cost of a rejection.
//!
//! `cargo bench -p s2s-auth --bench verify`

use std::hint::black_box;

use aws_lc_rs::{
    rand::SystemRandom,
    rsa::KeySize,
    signature::{
        ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair,
        Ed25519KeyPair, KeyPair as _,
    },
};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, jwk::Jwk};
use s2s_auth::{Issuer, KeySet, Verifier};
use serde_json::json;

const ISSUER: &str = "https://auth.example.com/realms/services";
const AUDIENCE: &str = "https://orders.internal.example.com";
const KID: &str = "2024-rotation-key-7f3c9a1e";

/// A fresh signing key and its public JWK.
fn signing_key(alg: Algorithm) -> (EncodingKey, serde_json::Value) {
    let rng = SystemRandom::new();
    let key = match alg {
        Algorithm::RS256 | Algorithm::PS256 => {
            use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
            let pair = aws_lc_rs::rsa::KeyPair::generate(KeySize::Rsa2048).expect("RSA key");
            let der = AsDer::<Pkcs8V1Der>::as_der(&pair).expect("PKCS#8");
            let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
            let pem = format!("-----BEGIN PRIVATE KEY-----\n{b64}\n-----END PRIVATE KEY-----\n");
            EncodingKey::from_rsa_pem(pem.as_bytes()).expect("RSA PEM")
        }
        Algorithm::ES256 => EncodingKey::from_ec_der(
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .expect("P-256 key")
                .as_ref(),
        ),
        Algorithm::ES384 => EncodingKey::from_ec_der(
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng)
                .expect("P-384 key")
                .as_ref(),
        ),
        Algorithm::EdDSA => {
            // jsonwebtoken derives no JWK from an Ed25519 PKCS#8 v2 key: build it from the pair.
            let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("Ed25519 key");
            let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("Ed25519 pair");
            let x = URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
            let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": KID, "alg": "EdDSA"});
            return (EncodingKey::from_ed_der(pkcs8.as_ref()), jwk);
        }
        other => panic!("no benchmark key for {other:?}"),
    };
    let mut jwk = Jwk::from_encoding_key(&key, alg).expect("JWK");
    jwk.common.key_id = Some(KID.into());
    (key, serde_json::to_value(jwk).expect("JSON"))
}

/// A token shaped like those of real authorization servers (about 800 bytes for ES256).
fn token(alg: Algorithm, key: &EncodingKey) -> String {
    let now = jsonwebtoken::get_current_timestamp();
    let mut header = Header::new(alg);
    header.kid = Some(KID.into());
    header.typ = Some("at+jwt".into());
    let claims = json!({
        "iss": ISSUER, "sub": "service-account-billing-worker",
        "aud": [AUDIENCE, "https://audit.internal.example.com"],
        "exp": now + 3600, "nbf": now, "iat": now,
        "jti": "5f1c2d4e-9a8b-4c3d-8e7f-6a5b4c3d2e1f",
        "client_id": "billing-worker", "azp": "billing-worker",
        "scope": "orders:read orders:write invoices:read customers:read audit:write",
        "tenant": "eu-central-1", "environment": "production",
        "acr": "1", "typ": "Bearer", "session_state": "b5c7f0e2-4d3a-4b1c-9e8f-7a6b5c4d3e2f",
        "resource_access": { "orders": { "roles": ["reader", "writer"] } },
    });
    jsonwebtoken::encode(&header, &claims, key).expect("sign")
}

/// A verifier with the validated-token cache off (`cache_entries` 0) or bounded.
fn verifier_with_cache(jwk: &serde_json::Value, cache_entries: u64) -> Verifier {
    let jwks = serde_json::to_vec(&json!({ "keys": [jwk] })).expect("JSON");
    Verifier::builder()
        .issuer(Issuer::keys(
            ISSUER,
            KeySet::from_jwks(&jwks).expect("keys"),
        ))
        .audience(AUDIENCE)
        .token_cache(cache_entries)
        .build()
        .expect("verifier")
}

fn verifier(jwk: &serde_json::Value) -> Verifier {
    verifier_with_cache(jwk, 0)
}

fn cold_verify(c: &mut Criterion) {
    for alg in [
        Algorithm::RS256,
        Algorithm::PS256,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
    ] {
        let (key, jwk) = signing_key(alg);
        let verifier = verifier(&jwk);
        let token = token(alg, &key);
        let jwk: Jwk = serde_json::from_value(jwk).expect("JWK");
        let decoding = DecodingKey::from_jwk(&jwk).expect("decoding key");
        let mut validation = Validation::new(alg);
        validation.set_audience(&[AUDIENCE]);
        validation.set_issuer(&[ISSUER]);
        assert!(verifier.verify_with_held_keys(&token).is_ok());
        assert!(jsonwebtoken::decode::<serde_json::Value>(&token, &decoding, &validation).is_ok());

        let mut group = c.benchmark_group(format!("cold_verify/{alg:?}/{}B", token.len()));
        group.bench_function("jsonwebtoken::decode", |b| {
            b.iter(|| {
                jsonwebtoken::decode::<serde_json::Value>(black_box(&token), &decoding, &validation)
            })
        });
        group.bench_function("Verifier", |b| {
            b.iter(|| verifier.verify_with_held_keys(black_box(&token)))
        });
        group.finish();
    }
}

fn rejections(c: &mut Criterion) {
    let (key, jwk) = signing_key(Algorithm::ES256);
    let verifier = verifier(&jwk);
    let good = token(Algorithm::ES256, &key);
    let garbage = "x".repeat(good.len());
    let mut tampered = good.clone();
    tampered.replace_range(good.len() - 8.., "AAAAAAAA");
    let mut group = c.benchmark_group("reject");
    group.bench_function("not_a_jwt", |b| {
        b.iter(|| verifier.verify_with_held_keys(black_box(&garbage)))
    });
    group.bench_function("bad_signature_es256", |b| {
        b.iter(|| verifier.verify_with_held_keys(black_box(&tampered)))
    });
    group.finish();
}

/// A token seen before: SHA-256 and a cache lookup instead of the signature check.
fn cached_verify(c: &mut Criterion) {
    let (key, jwk) = signing_key(Algorithm::ES256);
    let verifier = verifier_with_cache(&jwk, s2s_auth::verify::DEFAULT_TOKEN_CACHE_ENTRIES);
    let token = token(Algorithm::ES256, &key);
    for _ in 0..3 {
        assert!(verifier.verify_with_held_keys(&token).is_ok());
    }
    assert_eq!(
        verifier.metrics().cache_hits,
        1,
        "kept on the second check, hit on the third"
    );
    let mut group = c.benchmark_group(format!("cached_verify/ES256/{}B", token.len()));
    group.bench_function("Verifier (hit)", |b| {
        b.iter(|| verifier.verify_with_held_keys(black_box(&token)))
    });
    group.finish();
}

/// Every token new (the cache's worst case): with the cache on, each verification also inserts.
fn cold_verify_with_cache(c: &mut Criterion) {
    let (key, jwk) = signing_key(Algorithm::ES256);
    let cached = verifier_with_cache(&jwk, s2s_auth::verify::DEFAULT_TOKEN_CACHE_ENTRIES);
    let uncached = verifier(&jwk);
    let mut group = c.benchmark_group("cold_verify_new_tokens/ES256");
    for (name, verifier) in [("cache off", &uncached), ("cache on", &cached)] {
        // A freshly signed token per iteration (ECDSA signatures are randomised), signed
        // outside the measurement.
        group.bench_function(name, |b| {
            b.iter_batched(
                || token(Algorithm::ES256, &key),
                |token| verifier.verify_with_held_keys(black_box(&token)),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    cold_verify,
    cached_verify,
    cold_verify_with_cache,
    rejections
);
criterion_main!(benches);
