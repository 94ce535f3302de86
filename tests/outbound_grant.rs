//! The wire format of the client credentials grant, over real HTTP on 127.0.0.1 against a
//! [`TokenServer`] that records every request: `client_secret_basic`, `client_secret_post` and
//! `private_key_jwt` (RFC 6749 §2.3.1, RFC 7523), scopes, audience, resources and extra
//! parameters, discovery, the https rule, and no secret or token in `Debug`, `Display` or a log
//! line.
//!
//! [`TokenServer`]: s2s_tests::token_server::TokenServer

use std::collections::HashSet;

use base64::{
    Engine as _,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use jsonwebtoken::Algorithm;
use s2s_auth::{
    ErrorKind,
    fetch::HttpOptions,
    token::{ClientAuth, ClientCredentials, TokenManager, TokenSource},
};
use s2s_tests::{
    keys::{self, alg_name},
    logs::logs,
    outbound::{CLIENT_ID, SECRET, grant, manager, token_server},
    token_server::{Reply, TokenRequest},
};
use serde_json::Value;

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Decodes one `application/x-www-form-urlencoded` value.
fn form_decode(encoded: &str) -> String {
    let form = format!("v={encoded}");
    let pairs: Vec<_> = url::form_urlencoded::parse(form.as_bytes()).collect();
    assert_eq!(pairs.len(), 1, "`{encoded}` is not one form-encoded value");
    pairs[0].1.clone().into_owned()
}

fn decode_json(segment: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).expect("base64url segment"))
        .expect("JSON segment")
}

/// A client key pair for `private_key_jwt`, generated here with aws-lc-rs: the private key as
/// PKCS#8 PEM (what a user configures) and what the authorization server verifies with.
struct ClientKey {
    alg: Algorithm,
    private_pem: String,
    public: Vec<u8>,
    verification: &'static dyn aws_lc_rs::signature::VerificationAlgorithm,
}

impl ClientKey {
    fn generate(alg: Algorithm) -> ClientKey {
        use aws_lc_rs::{
            encoding::{AsDer, Pkcs8V1Der},
            rsa::KeySize,
            signature::{self as sig, KeyPair as _},
        };
        let (pkcs8, public, verification): (
            Vec<u8>,
            Vec<u8>,
            &'static dyn sig::VerificationAlgorithm,
        ) = match alg {
            Algorithm::ES256 => {
                let pair =
                    sig::EcdsaKeyPair::generate(&sig::ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
                (
                    pair.to_pkcs8v1().unwrap().as_ref().to_vec(),
                    pair.public_key().as_ref().to_vec(),
                    &sig::ECDSA_P256_SHA256_FIXED,
                )
            }
            Algorithm::RS256 => {
                let pair = aws_lc_rs::rsa::KeyPair::generate(KeySize::Rsa2048).unwrap();
                (
                    AsDer::<Pkcs8V1Der>::as_der(&pair)
                        .unwrap()
                        .as_ref()
                        .to_vec(),
                    pair.public_key().as_ref().to_vec(),
                    &sig::RSA_PKCS1_2048_8192_SHA256,
                )
            }
            Algorithm::EdDSA => {
                let pair = sig::Ed25519KeyPair::generate().unwrap();
                (
                    pair.to_pkcs8().unwrap().as_ref().to_vec(),
                    pair.public_key().as_ref().to_vec(),
                    &sig::ED25519,
                )
            }
            other => panic!("no client key for {other:?}"),
        };
        let mut private_pem = String::from("-----BEGIN PRIVATE KEY-----\n");
        for line in STANDARD.encode(pkcs8).as_bytes().chunks(64) {
            private_pem.push_str(std::str::from_utf8(line).unwrap());
            private_pem.push('\n');
        }
        private_pem.push_str("-----END PRIVATE KEY-----\n");
        ClientKey {
            alg,
            private_pem,
            public,
            verification,
        }
    }

    fn auth(&self, kid: &str) -> ClientAuth {
        let alg = alg_name(self.alg)
            .parse()
            .expect("a JWS algorithm of the crate");
        ClientAuth::private_key_pem(alg, self.private_pem.as_bytes(), Some(kid.to_owned()))
            .expect("the PEM private key is accepted")
    }

    /// Whether `jwt`'s signature verifies with this public key.
    fn verifies(&self, jwt: &str) -> bool {
        let (input, signature) = jwt.rsplit_once('.').expect("a compact JWS");
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .expect("base64url signature");
        aws_lc_rs::signature::UnparsedPublicKey::new(self.verification, &self.public)
            .verify(input.as_bytes(), &signature)
            .is_ok()
    }
}

/// The token server's checks of a `private_key_jwt` request (RFC 7523 §3, §2.2): the assertion
/// signed by the client's key, `iss` = `sub` = client id, `aud` = the token endpoint, a short
/// `exp`, a `jti`. Returns the `jti`.
fn check_assertion(request: &TokenRequest, key: &ClientKey, kid: &str, token_url: &str) -> String {
    assert_eq!(
        request.header("authorization"),
        None,
        "no Basic credentials"
    );
    assert_eq!(request.form_value("grant_type"), "client_credentials");
    assert_eq!(request.form_value("client_id"), CLIENT_ID);
    assert_eq!(request.form_value("client_assertion_type"), ASSERTION_TYPE);
    assert!(request.form_values("client_secret").is_empty());
    let jwt = request.form_value("client_assertion");
    let segments: Vec<&str> = jwt.split('.').collect();
    assert_eq!(segments.len(), 3, "a compact JWS: {jwt}");
    let header = decode_json(segments[0]);
    assert_eq!(header["alg"], alg_name(key.alg), "{header}");
    assert_eq!(header["kid"], kid, "{header}");
    assert!(
        key.verifies(jwt),
        "the {:?} signature does not verify",
        key.alg
    );
    let claims = decode_json(segments[1]);
    assert_eq!(claims["iss"], CLIENT_ID, "{claims}");
    assert_eq!(claims["sub"], CLIENT_ID, "{claims}");
    assert_eq!(claims["aud"], token_url, "{claims}");
    let now = keys::now();
    let exp = claims["exp"].as_u64().expect("numeric exp");
    assert!(
        exp > now && exp <= now + 65,
        "exp must be short (about 60 s): exp - now = {}",
        exp as i64 - now as i64
    );
    if let Some(iat) = claims["iat"].as_u64() {
        assert!(iat <= now + 1 && exp - iat <= 60, "{claims}");
    }
    let jti = claims["jti"].as_str().expect("a jti").to_owned();
    assert!(jti.len() >= 16, "jti too short to be unique: {jti}");
    jti
}

// ---------------------------------------------------------------------------------------------
// The wire format of the grant
// ---------------------------------------------------------------------------------------------

/// A secret with every character that form encoding changes.
const TRICKY: &str = "p:ss%20w+rd/&=é€ ü";

/// The one token request that a grant of `client_id` and `auth` sends: a form POST.
async fn the_token_request(client_id: &str, auth: ClientAuth) -> TokenRequest {
    let server = token_server().await;
    let grant = ClientCredentials::new(server.token_url(), client_id, auth);
    grant.fetch().await.expect("token");
    let request = server.recorded().remove(0);
    assert_eq!(request.method, "POST");
    assert_eq!(
        request.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    request
}

#[tokio::test]
async fn client_secret_basic_form_encodes_id_and_secret_before_base64() {
    const ID: &str = "billing:svc é+1";
    let request = the_token_request(ID, ClientAuth::SecretBasic(TRICKY.into())).await;
    assert_eq!(request.header("accept"), Some("application/json"));
    let basic = request
        .header("authorization")
        .and_then(|v| v.strip_prefix("Basic "))
        .expect("Basic credentials");
    let decoded = String::from_utf8(STANDARD.decode(basic).expect("base64")).expect("ASCII");
    // RFC 6749 §2.3.1: each part form-urlencoded, so the separator is the only `:`.
    assert_eq!(decoded.matches(':').count(), 1, "{decoded}");
    assert!(decoded.is_ascii(), "{decoded}");
    let (id, secret) = decoded.split_once(':').unwrap();
    assert_eq!(form_decode(id), ID);
    assert_eq!(form_decode(secret), TRICKY);
    // Nothing about the client in the body.
    assert_eq!(
        request.form,
        vec![("grant_type".to_owned(), "client_credentials".to_owned())]
    );
}

#[tokio::test]
async fn client_secret_post_sends_id_and_secret_in_the_form() {
    let request = the_token_request(CLIENT_ID, ClientAuth::SecretPost(TRICKY.into())).await;
    assert_eq!(request.header("authorization"), None);
    assert_eq!(request.form_value("grant_type"), "client_credentials");
    assert_eq!(request.form_value("client_id"), CLIENT_ID);
    assert_eq!(request.form_value("client_secret"), TRICKY);
    assert_eq!(request.form.len(), 3, "{:?}", request.form);
    assert!(
        !request.body.contains(TRICKY),
        "sent unencoded: {}",
        request.body
    );
}

#[tokio::test]
async fn private_key_jwt_sends_a_signed_short_lived_unique_assertion() {
    let server = token_server().await;
    for alg in [Algorithm::ES256, Algorithm::RS256, Algorithm::EdDSA] {
        let key = ClientKey::generate(alg);
        let kid = format!("billing-{}", alg_name(alg));
        let grant = ClientCredentials::new(server.token_url(), CLIENT_ID, key.auth(&kid));
        let before = server.requests();
        grant.fetch().await.expect("first token");
        grant.fetch().await.expect("second token");
        let requests = &server.recorded()[before..];
        assert_eq!(requests.len(), 2);
        let jtis: HashSet<String> = requests
            .iter()
            .map(|r| check_assertion(r, &key, &kid, &server.token_url()))
            .collect();
        assert_eq!(jtis.len(), 2, "{alg:?}: the jti was reused");
        // The check can fail: another key does not verify the assertion.
        let other = ClientKey::generate(alg);
        assert!(!other.verifies(requests[0].form_value("client_assertion")));
    }
}

#[tokio::test]
async fn private_key_jwt_audience_is_the_discovered_token_endpoint() {
    let server = token_server().await;
    let key = ClientKey::generate(Algorithm::ES256);
    let tokens = TokenManager::new(ClientCredentials::discover(
        server.url(),
        CLIENT_ID,
        key.auth("k1"),
    ))
    .unwrap();
    let first = tokens.token().await.expect("token");
    tokens.invalidate(&first);
    tokens.token().await.expect("second token");
    assert_eq!(server.discovery_hits(), 1, "metadata fetched again");
    let requests = server.recorded();
    assert_eq!(requests.len(), 2);
    for request in &requests {
        check_assertion(request, &key, "k1", &server.token_url());
    }
}

#[tokio::test]
async fn scopes_audience_resources_and_extra_parameters_are_sent() {
    let server = token_server().await;
    let grant = grant(&server)
        .scope("orders:read")
        .scope("orders:write")
        .audience("https://orders.example.com")
        .resource("https://orders.example.com/")
        .resource("https://billing.example.com/v1?x=1&y=2")
        .param("tenant", "acme & co");
    let response = grant.fetch().await.expect("token");
    assert_eq!(response.scope.as_deref(), Some("orders:read orders:write"));

    let request = &server.recorded()[0];
    assert_eq!(request.form_value("grant_type"), "client_credentials");
    assert_eq!(request.form_value("scope"), "orders:read orders:write");
    assert_eq!(request.form_value("audience"), "https://orders.example.com");
    assert_eq!(
        request.form_values("resource"),
        [
            "https://orders.example.com/",
            "https://billing.example.com/v1?x=1&y=2"
        ]
    );
    assert_eq!(request.form_value("tenant"), "acme & co");
    assert_eq!(request.form.len(), 6, "{:?}", request.form);

    // The scope the server granted is kept, even when narrower.
    server.set_scope(Some("orders:read"));
    let response = grant.fetch().await.expect("token");
    assert_eq!(response.scope.as_deref(), Some("orders:read"));
}

#[tokio::test]
async fn discovery_finds_the_token_endpoint_once() {
    let server = token_server().await;
    let tokens = TokenManager::new(ClientCredentials::discover(
        server.url(),
        CLIENT_ID,
        ClientAuth::SecretPost(SECRET.into()),
    ))
    .unwrap();
    let token = tokens.token().await.expect("token");
    assert_eq!(token.as_str(), server.latest_token().unwrap());
    tokens.invalidate(&token);
    tokens.token().await.expect("second token");
    assert_eq!(server.discovery_hits(), 1);
    assert_eq!(server.requests(), 2);
    assert_eq!(server.recorded()[0].form_value("client_secret"), SECRET);
}

#[test]
fn plain_http_to_a_remote_host_is_refused_unless_allowed() {
    logs();
    let auth = || ClientAuth::SecretBasic(SECRET.into());
    for grant in [
        ClientCredentials::new("http://auth.example.com/oauth/token", CLIENT_ID, auth()),
        ClientCredentials::discover("http://auth.example.com", CLIENT_ID, auth()),
    ] {
        let err = TokenManager::new(grant.clone()).expect_err("plain http");
        assert_eq!(err.kind(), ErrorKind::Config, "{err}");
        assert!(err.message().contains("https"), "{err}");
        let allowed = grant.http(HttpOptions::new().allow_insecure_http());
        TokenManager::new(allowed).expect("explicitly allowed");
    }
    TokenManager::new(ClientCredentials::new(
        "https://auth.example.com/t",
        CLIENT_ID,
        auth(),
    ))
    .expect("https");
    TokenManager::new(ClientCredentials::new(
        "http://localhost:8080/t",
        CLIENT_ID,
        auth(),
    ))
    .expect("loopback");
}

// ---------------------------------------------------------------------------------------------
// No secrets in Debug, Display or logs
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn secrets_and_tokens_never_reach_debug_display_or_logs() {
    let server = token_server().await;
    let key = ClientKey::generate(Algorithm::ES256);
    let pem_line = key.private_pem.lines().nth(1).unwrap().to_owned();
    let mut shown = Vec::new();

    for auth in [
        ClientAuth::SecretBasic(SECRET.into()),
        ClientAuth::SecretPost(SECRET.into()),
        key.auth("k1"),
    ] {
        shown.push(format!("{auth:?}"));
        let grant =
            ClientCredentials::new(server.token_url(), CLIENT_ID, auth).param("tenant", "acme");
        shown.push(format!("{grant:?}"));
        let tokens = TokenManager::new(grant.clone()).unwrap();
        let token = tokens.token().await.expect("token");
        shown.push(format!("{token:?}"));
        shown.push(format!("{tokens:?}"));
        shown.push(format!("{:?}", grant.fetch().await.expect("token")));
    }
    // Errors of every kind, some from bodies that hold a token.
    let leaky = "at-leaked-0123456789abcdef";
    for reply in [
        Reply::OAuth {
            status: 401,
            error: "invalid_client".into(),
            description: Some("bad credentials".into()),
            code: None,
        },
        Reply::json(format!(r#"{{"access_token":"{leaky}"}}"#)),
        Reply::json(format!(
            r#"{{"access_token":"{leaky}","token_type":"DPoP"}}"#
        )),
        Reply::Html(502),
    ] {
        server.set_reply(reply);
        let tokens = manager(&server);
        let err = tokens.token().await.expect_err("refused");
        shown.push(format!("{err:?}"));
        shown.push(err.to_string());
        shown.push(format!("{tokens:?}"));
    }

    // All the binary's logs so far: this test's, and any other's that ran meanwhile.
    let logs = logs().text();
    assert!(logs.contains("token fetched"), "logs not captured: {logs}");
    assert!(logs.contains("token fetch failed"), "{logs}");
    assert!(shown.iter().any(|s| s.contains(CLIENT_ID)), "{shown:#?}");
    let mut secrets = server.issued();
    secrets.extend([SECRET.to_owned(), leaky.to_owned(), pem_line]);
    for request in server.recorded() {
        if let Some(basic) = request.header("authorization") {
            secrets.push(basic.trim_start_matches("Basic ").to_owned());
        }
        if let Some((_, assertion)) = request.form.iter().find(|(k, _)| k == "client_assertion") {
            secrets.push(assertion.clone());
        }
    }
    assert!(secrets.len() >= 10, "{secrets:?}");
    for secret in &secrets {
        for text in &shown {
            assert!(!text.contains(secret.as_str()), "a secret in `{text}`");
        }
        assert!(
            !logs.contains(secret.as_str()),
            "a secret in the logs:\n{logs}"
        );
    }
}
