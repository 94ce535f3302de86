//! Interop suite: s2s-auth against panva's `oidc-provider`, a third-party OpenID-certified
//! authorization server (`tests/interop/`), over real HTTP on 127.0.0.1.
//!
//! Runs with `cargo test -p s2s-tests --features interop --test interop` (and as part of
//! `cargo test --workspace --all-features`). Needs Node.js 20+ and npm: without them the tests
//! fail when `CI=true` and are skipped loudly otherwise (see `s2s_tests::peer`).

use s2s_tests::peer::{self, Peer};

/// Skips (loudly, outside CI) or fails (in CI) when node is missing.
macro_rules! require_node {
    () => {
        if !peer::node_available() {
            return;
        }
    };
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
    let meta = s2s_auth::discovery::discover(&http, peer.issuer(), &options)
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
    let response = token_response(
        &http,
        &peer,
        "client_secret_basic",
        &[("scope", "orders:read")],
    )
    .await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    let token = body["access_token"].as_str().unwrap();
    let header = jsonwebtoken::decode_header(token).unwrap();
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
    let response = token_response(
        &http,
        &peer,
        "client_secret_post",
        &[("scope", "orders:read")],
    )
    .await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    let header = jsonwebtoken::decode_header(body["access_token"].as_str().unwrap()).unwrap();
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
