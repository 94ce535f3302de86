//! The whole inbound story in one process, on 127.0.0.1:
//!
//! 1. a stand-in authorization server generates an ES256 key and publishes it (discovery
//!    metadata and a JWK set);
//! 2. the protected service (`protected_router`, as in the `protected_service` example) verifies
//!    bearer tokens against those keys, found through discovery, with `VerifyLayer` and
//!    `RequireScope`;
//! 3. a caller sends it one good token and a few bad ones, and prints what each got back.
//!
//! ```sh
//! cargo run --example quickstart
//! ```
//!
//! Exits with 0 when every answer is the expected one.

use std::{process::ExitCode, time::SystemTime};

use aws_lc_rs::{
    rand::SystemRandom,
    signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair},
};
use axum::{Json, Router, routing::get};
use jsonwebtoken::{Algorithm, EncodingKey, Header, jwk::Jwk};
use s2s_auth::{Issuer, Verifier};
use serde_json::{Value, json};

const AUDIENCE: &str = "orders-api";

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,s2s_auth=info".into()),
        )
        .init();

    // 1. The authorization server's signing key and its public half, as a JWK.
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .expect("generate a P-256 key");
    let signing_key = EncodingKey::from_ec_der(pkcs8.as_ref());
    let mut jwk = Jwk::from_encoding_key(&signing_key, Algorithm::ES256).expect("public JWK");
    jwk.common.key_id = Some("quickstart-1".into());
    let (auth_listener, issuer) = bind().await;
    let metadata = json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/jwks.json"),
        "grant_types_supported": ["client_credentials"],
    });
    let jwks = json!({ "keys": [jwk] });
    let auth_server = Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(move || async move { Json(metadata) }),
        )
        .route("/jwks.json", get(move || async move { Json(jwks) }));
    tokio::spawn(async move { axum::serve(auth_listener, auth_server).await });
    println!("authorization server  {issuer}");

    // 2. The protected service.
    let verifier = Verifier::builder()
        .issuer(Issuer::discover(&issuer))
        .audience(AUDIENCE)
        .build()
        .expect("verifier configuration");
    let (listener, service_url) = bind().await;
    let service = s2s_examples::protected_router(verifier.clone(), vec!["orders:read".into()]);
    tokio::spawn(async move { axum::serve(listener, service).await });
    println!("protected service     {service_url}/whoami\n");

    // 3. The caller: one good token, then bad ones.
    let sign = |claims: Value| {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("quickstart-1".into());
        header.typ = Some("at+jwt".into());
        jsonwebtoken::encode(&header, &claims, &signing_key).expect("sign")
    };
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let claims = |aud: &str, scope: &str, exp: u64| {
        json!({
            "iss": issuer, "sub": "billing-service", "client_id": "billing-service",
            "aud": aud, "scope": scope, "iat": now, "exp": exp,
        })
    };
    let cases = [
        (
            "valid token",
            Some(sign(claims(AUDIENCE, "orders:read", now + 300))),
            200,
        ),
        ("no token", None, 401),
        (
            "token for another service",
            Some(sign(claims("payments-api", "orders:read", now + 300))),
            401,
        ),
        (
            "expired token",
            Some(sign(claims(AUDIENCE, "orders:read", now - 600))),
            401,
        ),
        (
            "missing scope",
            Some(sign(claims(AUDIENCE, "orders:write", now + 300))),
            403,
        ),
    ];
    let http = reqwest::Client::new();
    let mut all_as_expected = true;
    for (name, token, expected) in cases {
        let mut request = http.get(format!("{service_url}/whoami"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("call the protected service");
        let status = response.status().as_u16();
        let challenge = response
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap_or_default().to_owned());
        let body = response.text().await.unwrap_or_default();
        let mark = if status == expected { "ok " } else { "BAD" };
        all_as_expected &= status == expected;
        println!("{mark} {name:<26} -> {status}  {body}");
        if let Some(challenge) = challenge {
            println!("    WWW-Authenticate: {challenge}");
        }
    }
    let m = verifier.metrics();
    println!(
        "\nverified {}, rejected {}, key set fetched {} time(s)",
        m.verified,
        m.rejected_total(),
        m.jwks_fetches
    );
    if all_as_expected {
        println!("every answer was the expected one");
        ExitCode::SUCCESS
    } else {
        println!("some answers were not the expected ones");
        ExitCode::FAILURE
    }
}

/// A listener on 127.0.0.1 (port 0) and its URL.
async fn bind() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let url = format!("http://{}", listener.local_addr().expect("bound address"));
    (listener, url)
}
