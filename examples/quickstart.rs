//! The whole inbound story in one process, on 127.0.0.1:
//!
//! 1. a stand-in authorization server generates an ES256 key, publishes it (discovery metadata
//!    and a JWK set) and issues tokens to one client (client credentials grant);
//! 2. the protected service (`protected_router`, as in the `protected_service` example) verifies
//!    bearer tokens against those keys, found through discovery, with `VerifyLayer` and
//!    `RequireScope`;
//! 3. a calling service gets a token with `TokenManager` and calls the protected service three
//!    times through the reqwest middleware (one token fetch for all three);
//! 4. then bad tokens: none, another audience, expired, a missing scope; each answer is printed.
//!
//! ```sh
//! cargo run --example quickstart
//! ```
//!
//! Exits with 0 when every answer is the expected one.

use std::{process::ExitCode, sync::Arc, time::SystemTime};

use aws_lc_rs::{
    rand::SystemRandom,
    signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair},
};
use axum::{
    Json, Router,
    http::{HeaderMap, StatusCode, header::AUTHORIZATION},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use jsonwebtoken::{Algorithm, EncodingKey, Header, jwk::Jwk};
use s2s_auth::{
    Issuer, Verifier,
    reqwest::AuthorizeMiddleware,
    token::{ClientAuth, ClientCredentials, TokenManager},
};
use serde_json::{Value, json};
use subtle::ConstantTimeEq as _;

const AUDIENCE: &str = "orders-api";
const CLIENT_ID: &str = "billing-service";
// A stand-in: real secrets come from a secret store, never from source code.
const CLIENT_SECRET: &str = "quickstart-secret";

fn sign(key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("quickstart-1".into());
    header.typ = Some("at+jwt".into());
    jsonwebtoken::encode(&header, claims, key).expect("sign")
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// The stand-in token endpoint: client_secret_basic for one client, 5-minute tokens.
fn issue_token(headers: &HeaderMap, key: &EncodingKey, issuer: &str) -> Response {
    use base64::Engine as _;
    let expected =
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"));
    let presented = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .unwrap_or_default();
    if !bool::from(presented.as_bytes().ct_eq(expected.as_bytes())) {
        let body = json!({"error": "invalid_client", "error_description": "unknown client or wrong secret"});
        return (StatusCode::UNAUTHORIZED, Json(body)).into_response();
    }
    let now = now();
    let claims = json!({
        "iss": issuer, "sub": CLIENT_ID, "client_id": CLIENT_ID, "aud": AUDIENCE,
        "scope": "orders:read", "iat": now, "exp": now + 300,
    });
    let body = json!({
        "access_token": sign(key, &claims), "token_type": "Bearer",
        "expires_in": 300, "scope": "orders:read",
    });
    Json(body).into_response()
}

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
        "token_endpoint": format!("{issuer}/token"),
        "grant_types_supported": ["client_credentials"],
    });
    let jwks = json!({ "keys": [jwk] });
    let signing_key = Arc::new(signing_key);
    let token_endpoint = {
        let (key, issuer) = (signing_key.clone(), issuer.clone());
        move |headers: HeaderMap| async move { issue_token(&headers, &key, &issuer) }
    };
    let auth_server = Router::new()
        .route("/token", post(token_endpoint))
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

    // 3. The calling service: client credentials, cached token, reqwest middleware.
    let tokens = TokenManager::new(
        ClientCredentials::discover(&issuer, CLIENT_ID)
            .auth(ClientAuth::SecretBasic(CLIENT_SECRET.into()))
            .scope("orders:read"),
    )
    .expect("grant configuration");
    let caller = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(AuthorizeMiddleware::new(tokens.clone()))
        .build();
    let mut all_as_expected = true;
    for i in 1..=3 {
        let response = caller
            .get(format!("{service_url}/whoami"))
            .send()
            .await
            .expect("call the protected service");
        let status = response.status().as_u16();
        all_as_expected &= status == 200;
        let mark = if status == 200 { "ok " } else { "BAD" };
        println!("{mark} caller request {i}          -> {status}");
    }
    println!(
        "    tokens fetched by the caller: {}\n",
        tokens.metrics().fetches
    );

    // 4. Bad tokens.
    let sign = |claims: Value| sign(&signing_key, &claims);
    let now = now();
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
