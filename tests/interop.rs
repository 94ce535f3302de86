//! Interop suite: s2s-auth against panva's `oidc-provider`, a third-party OpenID-certified
//! authorization server (`tests/interop/`), over real HTTP on 127.0.0.1.
//!
//! Runs with `cargo test -p s2s-tests --features interop --test interop` (and as part of
//! `cargo test --workspace --all-features`). Needs Node.js 20+ and npm: without them the tests
//! fail when `CI=true` and are skipped loudly otherwise (see `s2s_tests::peer`).

use axum::{Router, routing::get};
use s2s_auth::Algorithm;
use s2s_auth::{
    Code, ErrorKind, Issuer, Verifier, VerifyLayer,
    token::{ClientAuth, ClientCredentials, Dialect, TokenManager, TokenSource},
};
use s2s_tests::{
    app::protected_app,
    peer::{self, Peer},
};

/// Skips (loudly, outside CI) or fails (in CI) when node is missing.
macro_rules! require_node {
    () => {
        if !peer::node_available() {
            return;
        }
    };
}

/// An `orders:read` access token from the peer's token endpoint by `auth_method` (200 expected).
async fn orders_token(http: &reqwest::Client, peer: &Peer, auth_method: &str) -> String {
    let response = token_response(http, peer, auth_method, &[("scope", "orders:read")]).await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

async fn token_response(
    http: &reqwest::Client,
    peer: &Peer,
    auth_method: &str,
    form: &[(&str, &str)],
) -> reqwest::Response {
    let client = peer.config().client(auth_method);
    let request = http.post(format!("{}/token", peer.issuer()));
    let secret = client.client_secret.as_deref().unwrap_or_default();
    let mut params = vec![("grant_type", "client_credentials")];
    params.extend_from_slice(form);
    let request = match auth_method {
        "client_secret_basic" => request.basic_auth(&client.client_id, Some(secret)),
        "client_secret_post" => {
            params.push(("client_id", &client.client_id));
            params.push(("client_secret", secret));
            request
        }
        other => panic!("raw token requests support only secrets, not {other}"),
    };
    request.form(&params).send().await.expect("token request")
}

/// The harness itself: the peer starts without warnings, publishes discovery metadata whose
/// issuer is the one it printed, issues RFC 9068 `at+jwt` tokens signed by its first key, keeps
/// its issuer across a rotating restart, and reports every token request it answered.
#[tokio::test(flavor = "multi_thread")]
async fn peer_harness_starts_issues_and_rotates() {
    require_node!();
    let mut peer = Peer::start();
    let http = reqwest::Client::new();

    let options = s2s_auth::fetch::HttpOptions::default();
    let meta = s2s_auth::discovery::ProviderMetadata::discover(peer.issuer(), &options)
        .await
        .expect("discovery against oidc-provider");
    assert_eq!(meta.issuer, peer.issuer());
    assert_eq!(
        meta.token_endpoint.as_deref(),
        Some(format!("{}/token", peer.issuer()).as_str())
    );
    let methods = meta.token_endpoint_auth_methods_supported.unwrap();
    for m in [
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt",
    ] {
        assert!(methods.iter().any(|x| x == m), "{m} not in {methods:?}");
    }

    let kids = peer.signing_kids();
    assert_eq!(kids.len(), 2, "one ES256 and one RS256 key: {kids:?}");
    let token = orders_token(&http, &peer, "client_secret_basic").await;
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    assert_eq!(header.alg, jsonwebtoken::Algorithm::ES256);
    assert_eq!(header.kid.as_deref(), Some(kids[0].as_str()));

    peer.restart_rotated();
    let rotated = peer.signing_kids();
    assert_eq!(rotated.len(), 4, "{rotated:?}");
    assert_eq!(
        &rotated[2..],
        &kids[..],
        "old keys stay published after the new ones"
    );
    let token = orders_token(&http, &peer, "client_secret_post").await;
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.kid.as_deref(), Some(rotated[0].as_str()));

    peer.sync();
    let tokens: Vec<_> = peer
        .events()
        .into_iter()
        .filter(|e| e["route"] == "token")
        .collect();
    assert_eq!(tokens.len(), 2, "{tokens:?}");
    assert_eq!(tokens[0]["auth"], "client_secret_basic");
    assert_eq!(tokens[1]["auth"], "client_secret_post");
    assert_eq!(peer.count("discovery"), 1);
    assert_eq!(peer.stderr(), "", "the peer must run without warnings");
}

fn claims_of(token: &str) -> serde_json::Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).expect("a JWS has a payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url payload");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

/// The tokens and errors of the peer that the library tests below rely on: an RS256 token with
/// an `aud` array, a token without `scope`, and the OAuth error answers for a bad secret and a
/// scope the client may not request.
#[tokio::test(flavor = "multi_thread")]
async fn peer_token_shapes_and_error_answers() {
    require_node!();
    let peer = Peer::start();
    let http = reqwest::Client::new();

    let response = token_response(
        &http,
        &peer,
        "client_secret_post",
        &[
            ("scope", "billing:read"),
            ("resource", "https://billing.interop.test"),
        ],
    )
    .await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(
        jsonwebtoken::decode_header(token).unwrap().alg,
        jsonwebtoken::Algorithm::RS256
    );
    let claims = claims_of(token);
    assert_eq!(
        claims["aud"],
        serde_json::json!(["https://billing.interop.test", "https://audit.interop.test"])
    );
    assert_eq!(claims["scope"], "billing:read");
    assert_eq!(claims["iss"], peer.issuer());

    let response = token_response(&http, &peer, "client_secret_basic", &[]).await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    let claims = claims_of(body["access_token"].as_str().unwrap());
    assert!(claims.get("scope").is_none(), "{claims}");
    assert_eq!(claims["aud"], peer.config().default_resource);

    let client = peer.config().client("client_secret_basic");
    let response = http
        .post(format!("{}/token", peer.issuer()))
        .basic_auth(&client.client_id, Some("wrong-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client");

    let response = token_response(&http, &peer, "client_secret_post", &[("scope", "admin")]).await;
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_scope");
    assert_eq!(peer.stderr(), "");
}

fn grant(peer: &Peer, auth_method: &str) -> ClientCredentials {
    let client = peer.config().client(auth_method);
    let secret = || {
        client
            .client_secret
            .clone()
            .expect("a secret client")
            .into()
    };
    let auth = match auth_method {
        "client_secret_basic" => ClientAuth::SecretBasic(secret()),
        "client_secret_post" => ClientAuth::SecretPost(secret()),
        "private_key_jwt" => {
            ClientAuth::private_key_pem(Algorithm::ES256, peer.client_key_pem().as_bytes(), None)
                .expect("the peer's client key")
        }
        other => panic!("no grant for {other}"),
    };
    ClientCredentials::discover(peer.issuer(), &client.client_id, auth)
}

fn verifier(peer: &Peer, audience: &str) -> Verifier {
    Verifier::builder()
        .issuer(Issuer::discover(peer.issuer()))
        .audience(audience)
        .require_at_jwt(true)
        .build()
        .expect("verifier")
}

/// The token manager gets a token from oidc-provider with each client authentication method,
/// through discovery, and the verifier accepts each through discovery too.
#[tokio::test(flavor = "multi_thread")]
async fn token_manager_and_verifier_against_oidc_provider() {
    require_node!();
    let peer = Peer::start();
    let audience = peer.config().default_resource.clone();
    let verifier = verifier(&peer, &audience);
    for method in [
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt",
    ] {
        let tokens = TokenManager::new(grant(&peer, method).scope("orders:read"))
            .expect("grant configuration");
        let token = tokens
            .token()
            .await
            .unwrap_or_else(|e| panic!("{method}: {e}"));
        assert_eq!(tokens.token().await.unwrap().as_str(), token.as_str());
        assert_eq!(
            tokens.metrics().fetches,
            1,
            "{method}: one fetch, then the cache"
        );
        let verified = verifier.verify(token.as_str()).await.expect(method);
        let client_id = &peer.config().client(method).client_id;
        assert_eq!(
            verified.standard().client_id.as_deref(),
            Some(client_id.as_str())
        );
        assert!(verified.scopes().contains("orders:read"));
        assert_eq!(verified.algorithm(), Algorithm::ES256);
    }
    peer.sync();
    let auths: Vec<_> = peer
        .events()
        .into_iter()
        .filter(|e| e["route"] == "token")
        .map(|e| e["auth"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        auths,
        [
            "client_secret_basic",
            "client_secret_post",
            "private_key_jwt"
        ]
    );
    assert_eq!(verifier.metrics().jwks_fetches, 1);
    assert_eq!(peer.stderr(), "");
}

/// An RS256 token whose `aud` is an array, and a token without `scope`, through `VerifyLayer`
/// and `RequireScopeLayer` over real HTTP.
#[tokio::test(flavor = "multi_thread")]
async fn verify_layer_accepts_aud_arrays_and_scopeless_tokens_from_oidc_provider() {
    require_node!();
    let peer = Peer::start();
    let billing = "https://billing.interop.test";
    let routes = Router::new().route("/billing", get(|| async { "billing" }));
    let verify = VerifyLayer::new(verifier(&peer, billing));
    let app = protected_app(routes, verify, &["billing:read"]).await;
    let url = format!("{}/billing", app.url());
    let http = reqwest::Client::new();

    let scoped = TokenManager::new(
        grant(&peer, "client_secret_post")
            .scope("billing:read")
            .resource(billing),
    )
    .unwrap();
    let response = http
        .get(&url)
        .bearer_auth(scoped.token().await.unwrap().as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "RS256 token with an aud array");

    let scopeless =
        TokenManager::new(grant(&peer, "client_secret_basic").resource(billing)).unwrap();
    let token = scopeless.token().await.unwrap();
    let response = http
        .get(&url)
        .bearer_auth(token.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403, "verified, but without billing:read");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], "AUTH_102");

    // The same token is for the billing audience, not the orders one.
    let orders = verifier(&peer, &peer.config().default_resource.clone());
    let refused = orders.verify(token.as_str()).await.unwrap_err();
    assert_eq!(refused.reason(), s2s_auth::Reason::WrongAudience);
}

/// The peer restarts with new keys first in its JWKS: a token with a new kid is accepted after
/// one refetch, and tokens of the old keys still verify while the old keys are published.
#[tokio::test(flavor = "multi_thread")]
async fn rotation_of_the_peer_keys() {
    require_node!();
    let mut peer = Peer::start();
    let audience = peer.config().default_resource.clone();
    let verifier = verifier(&peer, &audience);
    let old = TokenManager::new(grant(&peer, "client_secret_basic").scope("orders:read"))
        .unwrap()
        .token()
        .await
        .unwrap();
    verifier.verify(old.as_str()).await.expect("old kid");
    peer.sync();
    let jwks_before = peer.count("jwks");

    tokio::task::block_in_place(|| peer.restart_rotated());
    let new = TokenManager::new(grant(&peer, "client_secret_basic").scope("orders:read"))
        .unwrap()
        .token()
        .await
        .unwrap();
    let verified = verifier.verify(new.as_str()).await.expect("new kid");
    assert_eq!(verified.kid(), Some(peer.signing_kids()[0].as_str()));
    verifier
        .verify(old.as_str())
        .await
        .expect("old kid still published");
    peer.sync();
    assert_eq!(peer.count("jwks"), jwks_before + 1, "exactly one refetch");
}

/// The peer's error answers become typed errors with the stable codes.
#[tokio::test(flavor = "multi_thread")]
async fn oauth_errors_of_the_peer_map_to_typed_errors() {
    require_node!();
    let peer = Peer::start();
    let client = peer.config().client("client_secret_basic");
    let wrong = TokenManager::new(ClientCredentials::discover(
        peer.issuer(),
        &client.client_id,
        ClientAuth::SecretBasic("wrong-secret".into()),
    ))
    .unwrap();
    let err = wrong.token().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert_eq!(err.code(), Some(Code::InvalidClient));
    assert_eq!(err.oauth_error(), Some("invalid_client"));
    assert!(!err.to_string().contains("wrong-secret"), "{err}");

    let greedy = TokenManager::new(grant(&peer, "client_secret_post").scope("admin")).unwrap();
    let err = greedy.token().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert_eq!(err.code(), Some(Code::InsufficientScope));
    assert_eq!(err.oauth_error(), Some("invalid_scope"));
}

/// oidc-provider takes only RFC 6749's form body: the same client in the Auth Service JSON
/// dialect is refused, and the error says to choose the form dialect.
#[tokio::test]
async fn the_json_dialect_against_the_form_only_peer_fails_clearly() {
    require_node!();
    let peer = Peer::start();
    let json =
        TokenManager::new(grant(&peer, "client_secret_post").dialect(Dialect::Json)).unwrap();
    let err = json.token().await.unwrap_err();
    let text = err.to_string();
    assert_eq!(err.kind(), ErrorKind::Config, "{text}");
    assert!(text.contains("Dialect::Form"), "{text}");
    // The same grant in the form dialect is served.
    TokenManager::new(grant(&peer, "client_secret_post"))
        .unwrap()
        .token()
        .await
        .expect("a token in the form dialect");
}
