//! Cold verification per algorithm, side by side with a hand-written `jsonwebtoken::decode`
//! (aws-lc-rs) of the same token in the same run (goal: at least 0.97× its speed), each step of
//! a validated-token cache hit, and the cost of a rejection.
//!
//! `cargo bench -p s2s-auth --bench verify`

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use futures_util::FutureExt as _;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::Jwk};
use s2s_auth::{Issuer, KeySet, Verifier};
use serde_json::json;

mod support;
use support::{AUDIENCE, ISSUER, signing_key, token};

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
        let key = signing_key(alg);
        let verifier = verifier(&key.jwk());
        let token = token(&key);
        let jwk: Jwk = serde_json::from_value(key.jwk()).expect("JWK");
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
    let key = signing_key(Algorithm::ES256);
    let verifier = verifier(&key.jwk());
    let good = token(&key);
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

/// Each step of a cache hit on its own, then the whole of it behind the layers against the
/// bare service (issue 14: the hot path). A hit is: find the header, hash the token (SHA-256,
/// the cache key), look it up, check `exp`/`nbf`, attach the claims, check the scope.
fn hit_steps(c: &mut Criterion) {
    use http::{HeaderValue, Request, header::AUTHORIZATION};
    use s2s_auth::{BearerToken, RequireScopeLayer, ScopePolicy, VerifyLayer};
    use tower::{Service as _, ServiceBuilder, service_fn};

    let key = signing_key(Algorithm::ES256);
    let verifier = verifier_with_cache(&key.jwk(), s2s_auth::verify::DEFAULT_TOKEN_CACHE_ENTRIES);
    let token = token(&key);
    for _ in 0..3 {
        assert!(verifier.verify_with_held_keys(&token).is_ok());
    }
    assert_eq!(
        verifier.metrics().cache_hits,
        1,
        "a hit from the third check on"
    );
    let header = HeaderValue::from_str(&format!("Bearer {token}")).expect("header");
    // A request as hyper hands it over: a few headers, no extensions yet.
    let request = || {
        Request::get("/orders/42")
            .header("host", "orders.internal")
            .header("accept", "application/json")
            .header("user-agent", "billing/1.4")
            .header(AUTHORIZATION, header.clone())
            .body(())
            .expect("request")
    };
    let verified = verifier.verify_with_held_keys(&token).expect("verified");
    let policy = ScopePolicy::all(["orders:read"]);

    let mut group = c.benchmark_group(format!("hit/ES256/{}B", token.len()));
    group.bench_function("1 BearerToken::from_headers", |b| {
        let request = request();
        b.iter(|| BearerToken::from_headers(black_box(request.headers())))
    });
    group.bench_function("2 SHA-256 of the token", |b| {
        b.iter(|| {
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, black_box(token.as_bytes()))
        })
    });
    group.bench_function("3 Verifier (hit: hash, lookup, exp/nbf)", |b| {
        b.iter(|| verifier.verify_with_held_keys(black_box(&token)))
    });
    group.bench_function("4 extensions insert (Verified, BearerToken)", |b| {
        let bearer = BearerToken::from_header(&header).expect("bearer");
        b.iter_batched(
            request,
            |mut request| {
                request.extensions_mut().insert(verified.clone());
                request.extensions_mut().insert(bearer.clone());
                request
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("5 ScopePolicy::check", |b| {
        b.iter(|| policy.check(black_box(verified.scopes())))
    });
    // The bare service answers at once (dropping the request is part of both).
    let echo = service_fn(|request: Request<()>| async move {
        drop(request);
        Ok::<_, std::convert::Infallible>(http::Response::new(()))
    });
    let mut bare = echo;
    let mut layered = ServiceBuilder::new()
        .layer(VerifyLayer::new(verifier.clone()))
        .layer(RequireScopeLayer::all(["orders:read"]))
        .service(echo);
    group.bench_function("bare service", |b| {
        b.iter_batched(
            request,
            |request| bare.call(request).now_or_never().expect("ready"),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("VerifyLayer + RequireScopeLayer (hit)", |b| {
        b.iter_batched(
            request,
            |request| {
                let response = layered.call(request).now_or_never().expect("ready");
                assert!(response.as_ref().is_ok_and(|r| r.status().is_success()));
                response
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// A token seen before: SHA-256 and a cache lookup instead of the signature check.
fn cached_verify(c: &mut Criterion) {
    let key = signing_key(Algorithm::ES256);
    let verifier = verifier_with_cache(&key.jwk(), s2s_auth::verify::DEFAULT_TOKEN_CACHE_ENTRIES);
    let token = token(&key);
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
    let key = signing_key(Algorithm::ES256);
    let jwk = key.jwk();
    let cached = verifier_with_cache(&jwk, s2s_auth::verify::DEFAULT_TOKEN_CACHE_ENTRIES);
    let uncached = verifier(&jwk);
    let mut group = c.benchmark_group("cold_verify_new_tokens/ES256");
    for (name, verifier) in [("cache off", &uncached), ("cache on", &cached)] {
        // A freshly signed token per iteration (ECDSA signatures are randomised), signed
        // outside the measurement.
        group.bench_function(name, |b| {
            b.iter_batched(
                || token(&key),
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
    hit_steps,
    cached_verify,
    cold_verify_with_cache,
    rejections
);
criterion_main!(benches);
