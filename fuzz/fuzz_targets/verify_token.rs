//! Any bytes as a bearer token: the verifier answers (almost always a rejection), never panics.
//! The verifier holds an EC, an RSA and an Ed25519 key, so inputs reach every signature path.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use s2s_auth::{Issuer, KeySet, Verifier};

static VERIFIER: LazyLock<Verifier> = LazyLock::new(|| {
    let jwks = include_bytes!("../seeds/jwks.json");
    Verifier::builder()
        .issuer(Issuer::keys(
            "https://issuer.example",
            KeySet::from_jwks(jwks).unwrap(),
        ))
        .audience("orders-api")
        .token_cache(64)
        .build()
        .unwrap()
});

fuzz_target!(|data: &[u8]| {
    if let Ok(token) = std::str::from_utf8(data) {
        let _ = VERIFIER.verify_with_held_keys(token);
    }
});
