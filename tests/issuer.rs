//! The issuer through real HTTP on 127.0.0.1: every endpoint and every error of the token
//! endpoint and the admin API; its tokens verified by s2s-auth (discovery, `Verifier`,
//! `VerifyLayer`) and fetched by s2s-auth's `TokenManager`; key rotation with tokens of both
//! kids in flight; secret rotation with a grace period; restart on the same SQLite file;
//! disabled and deleted accounts; allowed IPs; the JSON body form; rate limits; the audit log.
//!
//! Time moves through an injected clock (shared by the issuer and the verifiers), never by
//! sleeping.

use std::{
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{Instant, SystemTime},
};

use axum::{Extension, Json, Router, routing::get};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use reqwest::{Method, RequestBuilder, StatusCode};
use s2s_auth::{
    Verified, Verifier, VerifyLayer,
    token::{ClientAuth, ClientCredentials, TokenManager, TokenSource as _},
};
use s2s_issuer::{
    IssuerConfig, Running,
    config::{Bucket, SecretHashConfig},
};
use s2s_tests::{
    answer::{Answer, ManualClock, cheap_secret_hash, get_bearer},
    app::protected_app,
};
use serde_json::{Value, json};

const ADMIN: &str = "test-admin-token-0123456789abcdef";
const AUDIENCE: &str = "orders-api";

struct Server {
    running: Running,
    http: reqwest::Client,
}

fn base_config() -> IssuerConfig {
    let mut config = IssuerConfig::default();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.db = ":memory:".into();
    config.admin_token = Some(ADMIN.into());
    config.default_audience = Some(AUDIENCE.into());
    // One test below runs with the default (OWASP) cost.
    config.secret_hash = cheap_secret_hash();
    config
}

async fn start_with(config: IssuerConfig) -> Server {
    let running = s2s_issuer::spawn(config).await.expect("the issuer starts");
    Server {
        running,
        http: reqwest::Client::new(),
    }
}

async fn start(adjust: impl FnOnce(&mut IssuerConfig)) -> Server {
    let mut config = base_config();
    adjust(&mut config);
    start_with(config).await
}

/// An issuer of the default configuration with one account created from `account`: the server,
/// the account's client id and secret.
async fn with_account(account: Value) -> (Server, String, String) {
    let server = start(|_| {}).await;
    let (id, secret) = server.create(account).await;
    (server, id, secret)
}

/// The issuer's error answers.
trait IssuerAnswer {
    fn assert_error(&self, status: u16, error: &str, code: Option<&str>);
    fn assert_error_in(&self, case: &str, status: u16, error: &str, code: Option<&str>);
}

impl IssuerAnswer for Answer {
    /// An RFC 6749 §5.2 error with this status, error and code, not cacheable.
    #[track_caller]
    fn assert_error(&self, status: u16, error: &str, code: Option<&str>) {
        self.assert_error_in("", status, error, code);
    }

    /// [`Answer::assert_error`], naming `case` when it fails.
    #[track_caller]
    fn assert_error_in(&self, case: &str, status: u16, error: &str, code: Option<&str>) {
        self.assert_oauth_error(case, status, error, code);
        assert_eq!(self.header("cache-control"), "no-store", "{case}");
        if status == 401 {
            assert!(
                self.header("www-authenticate")
                    .starts_with("Basic realm=\"s2s-issuer\""),
                "{case}: {:?}",
                self.headers
            );
        }
    }
}

/// One request to the token endpoint, for tables of cases.
enum TokenCall<'a> {
    /// [`Server::token_basic`]: Basic credentials, `grant_type=client_credentials` and this form.
    Basic(&'a str, &'a str, &'a [(&'a str, &'a str)]),
    /// [`Server::token_post`]: this form, nothing else.
    Post(&'a [(&'a str, &'a str)]),
    /// Basic credentials and exactly this form.
    BasicForm(&'a str, &'a str, &'a [(&'a str, &'a str)]),
    /// This `Authorization` header and `grant_type=client_credentials`.
    Authorization(&'a str),
    /// [`Server::raw_token_request`]: this content type and body.
    Raw(Option<&'a str>, &'a [u8]),
}

impl Server {
    fn url(&self) -> &str {
        &self.running.url
    }

    fn clock_free_verifier(&self) -> Verifier {
        Verifier::builder()
            .issuer(s2s_auth::Issuer::discover(self.url()))
            .audience(AUDIENCE)
            .build()
            .unwrap()
    }

    async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        let mut request = self
            .http
            .request(method, format!("{}/admin{path}", self.url()))
            .bearer_auth(ADMIN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        Answer::of(request.send().await.unwrap()).await
    }

    /// `PATCH /admin/accounts/{id}` with `body`.
    async fn patch(&self, id: &str, body: Value) -> Answer {
        let path = format!("/accounts/{id}");
        self.admin(Method::PATCH, &path, Some(body)).await
    }

    /// `POST /admin/accounts/{id}/rotate-secret` with `body`.
    async fn rotate_secret(&self, id: &str, body: Value) -> Answer {
        let path = format!("/accounts/{id}/rotate-secret");
        self.admin(Method::POST, &path, Some(body)).await
    }

    /// Creates an account through the admin API: (client id, secret).
    async fn create(&self, body: Value) -> (String, String) {
        let answer = self.admin(Method::POST, "/accounts", Some(body)).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
        (
            answer.body["clientId"].as_str().unwrap().to_owned(),
            answer.body["clientSecret"].as_str().unwrap().to_owned(),
        )
    }

    /// POSTs to `/token` from `http` (another source address, say) as `build` makes the
    /// request.
    async fn post_token_from(
        &self,
        http: &reqwest::Client,
        build: impl FnOnce(RequestBuilder) -> RequestBuilder,
    ) -> Answer {
        let request = build(http.post(format!("{}/token", self.url())));
        Answer::of(request.send().await.unwrap()).await
    }

    /// POSTs to `/token` as `build` makes the request.
    async fn post_token(&self, build: impl FnOnce(RequestBuilder) -> RequestBuilder) -> Answer {
        self.post_token_from(&self.http, build).await
    }

    async fn token_basic(&self, id: &str, secret: &str, form: &[(&str, &str)]) -> Answer {
        self.token_basic_from(&self.http, id, secret, form).await
    }

    /// [`Server::token_basic`] from `http` (another source address, say).
    async fn token_basic_from(
        &self,
        http: &reqwest::Client,
        id: &str,
        secret: &str,
        form: &[(&str, &str)],
    ) -> Answer {
        let mut params = vec![("grant_type", "client_credentials")];
        params.extend_from_slice(form);
        self.post_token_from(http, |r| r.basic_auth(id, Some(secret)).form(&params))
            .await
    }

    async fn send(&self, call: &TokenCall<'_>) -> Answer {
        match *call {
            TokenCall::Basic(id, secret, form) => self.token_basic(id, secret, form).await,
            TokenCall::Post(form) => self.token_post(form).await,
            TokenCall::BasicForm(id, secret, form) => {
                self.post_token(|r| r.basic_auth(id, Some(secret)).form(form))
                    .await
            }
            TokenCall::Authorization(value) => {
                self.post_token(|r| {
                    r.header("authorization", value)
                        .form(&[("grant_type", "client_credentials")])
                })
                .await
            }
            TokenCall::Raw(content_type, body) => self.raw_token_request(content_type, body).await,
        }
    }

    /// The statuses of `n` token requests in a row.
    async fn statuses(&self, id: &str, secret: &str, n: usize) -> Vec<u16> {
        let mut statuses = Vec::new();
        for _ in 0..n {
            statuses.push(self.token_basic(id, secret, &[]).await.status.as_u16());
        }
        statuses
    }

    async fn token_post(&self, form: &[(&str, &str)]) -> Answer {
        self.post_token(|r| r.form(form)).await
    }

    async fn raw_token_request(&self, content_type: Option<&str>, body: &[u8]) -> Answer {
        self.post_token(|mut request| {
            if let Some(ct) = content_type {
                request = request.header("content-type", ct);
            }
            request.body(body.to_vec())
        })
        .await
    }

    async fn get(&self, path: &str) -> Answer {
        let response = self
            .http
            .get(format!("{}{path}", self.url()))
            .send()
            .await
            .unwrap();
        Answer::of(response).await
    }
}

/// A client whose requests come from 127.0.0.2, not 127.0.0.1.
fn second_address() -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap()
}

/// The header and the claims of a JWT, unverified.
fn decode(token: &str) -> (Value, Value) {
    let mut parts = token.split('.');
    let mut part = || -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts.next().unwrap()).unwrap()).unwrap()
    };
    let header = part();
    let claims = part();
    (header, claims)
}

fn access_token(answer: &Answer) -> String {
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    answer.body["access_token"].as_str().unwrap().to_owned()
}

fn kids(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn tokens_through_basic_and_post_with_the_documented_claims() {
    // The default (OWASP) argon2id cost.
    let server = start(|c| c.secret_hash = SecretHashConfig::default()).await;
    let (id, secret) = server
        .create(json!({"name": "billing", "scopes": ["orders:read", "orders:write"]}))
        .await;

    // client_secret_basic, no scope requested: every scope of the account.
    let answer = server.token_basic(&id, &secret, &[]).await;
    let token = access_token(&answer);
    assert_eq!(answer.body["token_type"], "Bearer");
    assert_eq!(answer.body["expires_in"], 1800);
    assert_eq!(answer.body["scope"], "orders:read orders:write");
    assert_eq!(answer.header("cache-control"), "no-store");
    let (header, claims) = decode(&token);
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["typ"], "at+jwt");
    let jwks = server.get("/.well-known/jwks.json").await.body;
    assert_eq!(kids(&jwks), [header["kid"].as_str().unwrap()]);
    assert_eq!(claims["iss"], server.url());
    assert_eq!(claims["sub"], id.as_str());
    assert_eq!(claims["client_id"], id.as_str());
    assert_eq!(claims["aud"], AUDIENCE);
    assert_eq!(claims["scope"], "orders:read orders:write");
    let iat = claims["iat"].as_u64().unwrap();
    assert_eq!(claims["exp"].as_u64().unwrap(), iat + 1800);
    assert_eq!(claims["nbf"].as_u64().unwrap(), iat);
    assert!(claims["jti"].as_str().unwrap().len() >= 16);

    // A requested subset of scopes; Basic credentials form-urlencoded (RFC 6749 §2.3.1).
    let encoded_secret: String = secret.bytes().map(|b| format!("%{b:02X}")).collect();
    let answer = server
        .token_basic(&id, &encoded_secret, &[("scope", "orders:read")])
        .await;
    let (_, claims) = decode(&access_token(&answer));
    assert_eq!(claims["scope"], "orders:read");
    assert_eq!(answer.body["scope"], "orders:read");
    let jti_1 = claims["jti"].clone();

    // client_secret_post.
    let answer = server
        .token_post(&[
            ("grant_type", "client_credentials"),
            ("client_id", &id),
            ("client_secret", &secret),
            ("scope", "orders:write"),
        ])
        .await;
    let (_, claims) = decode(&access_token(&answer));
    assert_eq!(claims["scope"], "orders:write");
    assert_ne!(claims["jti"], jti_1, "each token has its own jti");
}

#[tokio::test]
async fn the_json_body_form() {
    let (server, id, secret) = with_account(json!({"name": "json", "scopes": ["a", "b"]})).await;
    let send = |body: Value| {
        let http = server.http.clone();
        let url = format!("{}/token", server.url());
        async move { Answer::of(http.post(url).json(&body).send().await.unwrap()).await }
    };
    let answer = send(json!({
        "grantType": "client_credentials", "clientId": id, "clientSecret": secret, "scope": "b"
    }))
    .await;
    // Answered in the seed's dialect (the crate's `dialect` module).
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.body["tokenType"], "Bearer");
    assert_eq!(answer.body["expiresIn"], 1800);
    let (_, claims) = decode(answer.body["accessToken"].as_str().unwrap());
    assert_eq!(claims["scope"], "b");
    assert_eq!(claims["sub"], id.as_str());

    send(json!({"grantType": "client_credentials", "clientId": id, "clientSecret": "nope"}))
        .await
        .assert_error(401, "invalid_client", Some("AUTH_101"));
    send(json!({"grantType": "password", "clientId": id, "clientSecret": secret}))
        .await
        .assert_error(400, "unsupported_grant_type", None);
    send(json!({"clientId": id, "clientSecret": secret}))
        .await
        .assert_error(400, "invalid_request", None);
    let wrong_type = send(json!({"grantType": "client_credentials", "clientId": 7})).await;
    wrong_type.assert_error(400, "invalid_request", None);
    assert!(
        wrong_type.body["error_description"]
            .as_str()
            .unwrap()
            .contains("clientId"),
        "{}",
        wrong_type.body
    );
    server
        .raw_token_request(Some("application/json"), b"{\"grantType\":")
        .await
        .assert_error(400, "invalid_request", None);
}

#[tokio::test]
async fn every_token_endpoint_error() {
    let (server, id, secret) =
        with_account(json!({"name": "errors", "scopes": ["a"], "audiences": ["reports-api"]}))
            .await;

    use TokenCall::{Authorization, Basic, BasicForm, Post, Raw};
    let (id, secret) = (id.as_str(), secret.as_str());
    let big = vec![b'a'; 64 * 1024];
    let form = Some("application/x-www-form-urlencoded");
    let grant: &[(&str, &str)] = &[("grant_type", "client_credentials")];
    #[rustfmt::skip]
    let refused: &[(&str, TokenCall, u16, &str, Option<&str>)] = &[
        // Credentials.
        ("a wrong secret", Basic(id, "wrong-secret", &[]), 401, "invalid_client", Some("AUTH_101")),
        ("an unknown client", Basic("0123456789abcdef0123456789abcdef", secret, &[]), 401, "invalid_client", Some("AUTH_101")),
        ("a wrong posted secret", Post(&[("grant_type", "client_credentials"), ("client_id", id), ("client_secret", "wrong")]), 401, "invalid_client", Some("AUTH_101")),
        ("no client", Post(grant), 401, "invalid_client", Some("AUTH_101")),
        ("no secret", Post(&[("grant_type", "client_credentials"), ("client_id", id)]), 401, "invalid_client", Some("AUTH_101")),
        ("Basic !!!", Authorization("Basic !!!"), 401, "invalid_client", Some("AUTH_101")),
        ("Basic", Authorization("Basic"), 401, "invalid_client", Some("AUTH_101")),
        ("Bearer abc", Authorization("Bearer abc"), 401, "invalid_client", Some("AUTH_101")),
        ("Basic without a colon", Authorization("Basic bm9jb2xvbg=="), 401, "invalid_client", Some("AUTH_101")),
        // Scope and audience.
        ("a scope not granted", Basic(id, secret, &[("scope", "a admin")]), 400, "invalid_scope", Some("AUTH_102")),
        ("a scope with a quote", Basic(id, secret, &[("scope", "a\"b")]), 400, "invalid_scope", Some("AUTH_102")),
        ("an audience not allowed", Basic(id, secret, &[("audience", "payroll-api")]), 400, "invalid_target", Some("AUTH_107")),
        // Grant type and request shape.
        ("grant_type=password", BasicForm(id, secret, &[("grant_type", "password")]), 400, "unsupported_grant_type", None),
        ("no grant_type", BasicForm(id, secret, &[("scope", "a")]), 400, "invalid_request", None),
        ("two client authentications", BasicForm(id, secret, &[("grant_type", "client_credentials"), ("client_secret", secret)]), 400, "invalid_request", None),
        ("a repeated parameter", Basic(id, secret, &[("scope", "a"), ("scope", "a")]), 400, "invalid_request", None),
        ("no content type", Raw(None, b"grant_type=client_credentials"), 400, "invalid_request", None),
        ("text/plain", Raw(Some("text/plain"), b"grant_type=client_credentials"), 400, "invalid_request", None),
        ("multipart/form-data", Raw(Some("multipart/form-data"), b"grant_type=client_credentials"), 400, "invalid_request", None),
        ("a 64 KiB form", Raw(form, &big), 400, "invalid_request", None),
    ];
    for (case, call, status, error, code) in refused {
        let answer = server.send(call).await;
        answer.assert_error_in(case, *status, error, *code);
    }
    for form in [
        &[("audience", "reports-api")],
        &[("resource", "reports-api")],
    ] {
        let (_, claims) = decode(&access_token(&server.token_basic(id, secret, form).await));
        assert_eq!(claims["aud"], "reports-api", "{form:?}");
    }

    // No 500 for anything a client sends.
    let bodies: [&[u8]; 6] = [
        b"",
        b"\xff\xfe\x00",
        b"grant_type=%ZZ&client_id=%",
        b"[]",
        b"{\"grantType\": [1, 2]}",
        b"grant_type=client_credentials&client_id=&client_secret=",
    ];
    for body in bodies {
        for ct in ["application/x-www-form-urlencoded", "application/json"] {
            let answer = server.raw_token_request(Some(ct), body).await;
            assert!(
                answer.status.is_client_error(),
                "{ct} {body:?}: {}",
                answer.status
            );
        }
    }
    assert_eq!(
        server.get("/token").await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );
}

#[tokio::test]
async fn metadata_and_jwks() {
    let server = start(|_| {}).await;
    server
        .create(json!({"name": "m", "scopes": ["orders:read", "inventory:read"]}))
        .await;
    for path in [
        "/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server",
    ] {
        let answer = server.get(path).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.header("cache-control"), "public, max-age=300");
        let m = &answer.body;
        assert_eq!(m["issuer"], server.url());
        assert_eq!(m["token_endpoint"], format!("{}/token", server.url()));
        assert_eq!(
            m["jwks_uri"],
            format!("{}/.well-known/jwks.json", server.url())
        );
        assert_eq!(m["grant_types_supported"], json!(["client_credentials"]));
        assert_eq!(
            m["token_endpoint_auth_methods_supported"],
            json!(["client_secret_basic", "client_secret_post"])
        );
        // The accounts' scopes are not published unless configured.
        assert!(m.get("scopes_supported").is_none(), "{m}");
        assert!(m.get("id_token_signing_alg_values_supported").is_none());
    }
    let answer = server.get("/.well-known/jwks.json").await;
    assert_eq!(answer.header("cache-control"), "public, max-age=300");
    let keys = answer.body["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    let key = &keys[0];
    assert_eq!(key["kty"], "EC");
    assert_eq!(key["crv"], "P-256");
    assert_eq!(key["alg"], "ES256");
    assert_eq!(key["use"], "sig");
    assert!(key.get("d").is_none(), "no private part: {key}");
}

/// A fresh directory under the system temp dir.
fn temp_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "s2s-issuer-{tag}-{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn discovery_is_served_from_memory_and_lists_scopes_only_when_configured() {
    let dir = temp_dir("discovery");
    let db = dir.join("issuer.db");
    let clock = ManualClock::default();
    let server = start(|c| {
        c.db = db.to_str().unwrap().to_owned();
        c.publish_scopes_supported = true;
        c.clock = clock.clock();
    })
    .await;
    let scopes = |server: &Server| {
        let server = server.url().to_owned();
        async move {
            let answer = reqwest::get(format!("{server}/.well-known/openid-configuration"))
                .await
                .unwrap();
            assert_eq!(answer.status(), StatusCode::OK);
            assert_eq!(answer.headers()["content-type"], "application/json");
            let body: Value = answer.json().await.unwrap();
            body["scopes_supported"].clone()
        }
    };
    assert_eq!(scopes(&server).await, json!([]));
    // A change through this issuer shows at once.
    let (id, _) = server
        .create(json!({"name": "m", "scopes": ["orders:read", "inventory:read"]}))
        .await;
    assert_eq!(
        scopes(&server).await,
        json!(["inventory:read", "orders:read"])
    );
    // A change made by another process on the same database is not read per request: the
    // document stays as it was until it is 60 s old.
    let mut other = base_config();
    other.db = db.to_str().unwrap().to_owned();
    other.issuer = Some("http://127.0.0.1:1".into());
    let offline = s2s_issuer::Issuer::open(other).await.unwrap();
    offline
        .accounts()
        .create(s2s_issuer::accounts::NewAccount::new("elsewhere").scope("billing:write"))
        .await
        .unwrap();
    offline.close().await;
    for _ in 0..3 {
        assert_eq!(
            scopes(&server).await,
            json!(["inventory:read", "orders:read"])
        );
    }
    clock.advance(59);
    assert_eq!(
        scopes(&server).await,
        json!(["inventory:read", "orders:read"])
    );
    clock.advance(1);
    assert_eq!(
        scopes(&server).await,
        json!(["billing:write", "inventory:read", "orders:read"])
    );
    // Disabling an account through this issuer drops its scopes at once.
    let answer = server.patch(&id, json!({"status": "DISABLED"})).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(scopes(&server).await, json!(["billing:write"]));
    let Server { running, http } = server;
    drop(http);
    running.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn rs256_keys_when_configured() {
    let server = start(|c| c.signing_alg = s2s_issuer::SigningAlg::RS256).await;
    let (id, secret) = server.create(json!({"name": "rsa", "scopes": ["a"]})).await;
    let token = access_token(&server.token_basic(&id, &secret, &[]).await);
    assert_eq!(decode(&token).0["alg"], "RS256");
    let jwks = server.get("/.well-known/jwks.json").await.body;
    assert_eq!(jwks["keys"][0]["kty"], "RSA");
    assert!(jwks["keys"][0].get("d").is_none());
    let verified = server.clock_free_verifier().verify(&token).await.unwrap();
    assert_eq!(verified.standard().sub.as_deref(), Some(id.as_str()));
}

#[tokio::test]
async fn tokens_verify_with_s2s_auth_through_discovery_and_verify_layer() {
    let (server, id, secret) =
        with_account(json!({"name": "caller", "scopes": ["orders:read"]})).await;
    let token = access_token(&server.token_basic(&id, &secret, &[]).await);

    let verifier = server.clock_free_verifier();
    let verified = verifier.verify(&token).await.expect("the token verifies");
    assert_eq!(verified.standard().iss, server.url());
    assert_eq!(verified.standard().sub.as_deref(), Some(id.as_str()));
    assert_eq!(verified.standard().client_id.as_deref(), Some(id.as_str()));
    assert!(verified.scopes().contains("orders:read"));

    // The same through VerifyLayer in a real service.
    let routes =
        Router::new().route(
            "/whoami",
            get(|Extension(v): Extension<Verified>| async move {
                Json(json!({"sub": v.standard().sub}))
            }),
        );
    let app = protected_app(routes, VerifyLayer::new(verifier), &[]).await;
    let service_url = app.url();
    let answer = get_bearer(&server.http, &format!("{service_url}/whoami"), &token).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body["sub"], id.as_str());
    let refused = server
        .http
        .get(format!("{service_url}/whoami"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);

    // A token for another audience does not pass a verifier for this one.
    let other = Verifier::builder()
        .issuer(s2s_auth::Issuer::discover(server.url()))
        .audience("somebody-else")
        .build()
        .unwrap();
    assert!(other.verify(&token).await.is_err());
}

#[tokio::test]
async fn the_token_manager_gets_tokens_by_discovery() {
    let (server, id, secret) =
        with_account(json!({"name": "manager", "scopes": ["orders:read", "orders:write"]})).await;
    let tokens = TokenManager::new(
        ClientCredentials::discover(
            server.url(),
            &id,
            ClientAuth::SecretBasic(secret.clone().into()),
        )
        .scope("orders:read"),
    )
    .unwrap();
    let token = tokens.token().await.expect("a token");
    let again = tokens.token().await.unwrap();
    assert!(
        token.same_as(&again),
        "the second call is served from memory"
    );
    let verified = server
        .clock_free_verifier()
        .verify(token.as_str())
        .await
        .unwrap();
    assert_eq!(verified.standard().sub.as_deref(), Some(id.as_str()));
    assert_eq!(decode(token.as_str()).1["scope"], "orders:read");

    // client_secret_post through the same grant.
    let post = TokenManager::new(ClientCredentials::discover(
        server.url(),
        &id,
        ClientAuth::SecretPost(secret.into()),
    ))
    .unwrap();
    let token = post.token().await.unwrap();
    assert_eq!(
        decode(token.as_str()).1["scope"],
        "orders:read orders:write"
    );

    // A wrong secret is a permanent error, not a token.
    let wrong = TokenManager::new(ClientCredentials::discover(
        server.url(),
        &id,
        ClientAuth::SecretBasic("wrong".to_owned().into()),
    ))
    .unwrap();
    assert!(wrong.token().await.is_err());
}

#[tokio::test]
async fn signing_key_rotation_with_tokens_of_both_kids_in_flight() {
    let clock = ManualClock::default();
    let server = start(|c| {
        c.clock = clock.clock();
        c.token_lifetime_secs = 600;
        c.key_retire_leeway_secs = 60;
    })
    .await;
    let (id, secret) = server.create(json!({"name": "rot", "scopes": ["a"]})).await;
    let verifier = {
        let clock = clock.clone();
        Verifier::builder()
            .issuer(s2s_auth::Issuer::discover(server.url()))
            .audience(AUDIENCE)
            .clock(move || clock.now())
            .build()
            .unwrap()
    };
    let old_token = access_token(&server.token_basic(&id, &secret, &[]).await);
    let old_kid = decode(&old_token).0["kid"].as_str().unwrap().to_owned();
    verifier.verify(&old_token).await.unwrap();

    let rotation = server.admin(Method::POST, "/keys/rotate", None).await;
    assert_eq!(rotation.status, StatusCode::OK, "{}", rotation.body);
    assert_eq!(rotation.body["previousKid"], old_kid.as_str());
    let new_kid = rotation.body["kid"].as_str().unwrap().to_owned();
    assert_ne!(new_kid, old_kid);

    // The new key signs at once; both kids are published; both tokens verify (the verifier
    // that cached the old set fetches again for the unknown kid).
    let new_token = access_token(&server.token_basic(&id, &secret, &[]).await);
    assert_eq!(decode(&new_token).0["kid"], new_kid.as_str());
    let jwks = server.get("/.well-known/jwks.json").await.body;
    assert_eq!(kids(&jwks), [new_kid.clone(), old_kid.clone()]);
    verifier.verify(&new_token).await.expect("new kid verifies");
    verifier
        .verify(&old_token)
        .await
        .expect("old kid still verifies");
    let listed = server.admin(Method::GET, "/keys", None).await.body;
    assert_eq!(listed["keys"][0]["active"], true);
    assert_eq!(listed["keys"][1]["active"], false);
    // Dates are RFC 3339 on the wire; their values are checked through the Rust API.
    assert!(
        listed["keys"][1]["retireAt"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    let infos = server.running.issuer.signing_keys().await.unwrap();
    assert_eq!(infos[1].retire_at.unwrap(), infos[0].created_at + 600 + 60);

    // Just before retirement the old key is still there; after it, gone.
    clock.advance(600 + 60 - 2);
    let jwks = server.get("/.well-known/jwks.json").await.body;
    assert_eq!(kids(&jwks).len(), 2);
    clock.advance(3);
    let jwks = server.get("/.well-known/jwks.json").await.body;
    assert_eq!(kids(&jwks), std::slice::from_ref(&new_kid));
    let listed = server.admin(Method::GET, "/keys", None).await.body;
    assert_eq!(listed["keys"].as_array().unwrap().len(), 1);
    // Tokens keep coming from the new key.
    let later = access_token(&server.token_basic(&id, &secret, &[]).await);
    assert_eq!(decode(&later).0["kid"], new_kid.as_str());
}

#[tokio::test]
async fn rotation_in_the_middle_of_traffic_fails_no_request() {
    let server = Arc::new(
        start(|c| {
            c.rate_limit.per_client = None;
            c.rate_limit.per_ip = None;
        })
        .await,
    );
    let (id, secret) = server
        .create(json!({"name": "busy", "scopes": ["a"]}))
        .await;
    let verifier = server.clock_free_verifier();
    // Warm the secret check so the burst is quick.
    access_token(&server.token_basic(&id, &secret, &[]).await);
    let mut tasks = Vec::new();
    for i in 0..40 {
        let (server, id, secret) = (server.clone(), id.clone(), secret.clone());
        tasks.push(tokio::spawn(async move {
            if i == 20 {
                server.running.issuer.rotate_signing_key().await.unwrap();
            }
            access_token(&server.token_basic(&id, &secret, &[]).await)
        }));
    }
    let mut seen_kids = std::collections::BTreeSet::new();
    for task in tasks {
        let token = task.await.unwrap();
        verifier.verify(&token).await.expect("every token verifies");
        seen_kids.insert(decode(&token).0["kid"].as_str().unwrap().to_owned());
    }
    assert!(!seen_kids.is_empty());
    assert_eq!(
        kids(&server.get("/.well-known/jwks.json").await.body).len(),
        2
    );
}

#[tokio::test]
async fn secret_rotation_with_and_without_grace() {
    let clock = ManualClock::default();
    let server = start(|c| c.clock = clock.clock()).await;
    let (id, old) = server.create(json!({"name": "sec", "scopes": ["a"]})).await;
    access_token(&server.token_basic(&id, &old, &[]).await); // remembered as verified

    let answer = server
        .rotate_secret(&id, json!({"gracePeriodSeconds": 60}))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let new = answer.body["clientSecret"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert!(answer.body["previousSecretExpiresAt"].as_str().is_some());
    access_token(&server.token_basic(&id, &new, &[]).await);
    access_token(&server.token_basic(&id, &old, &[]).await);

    clock.advance(61);
    server
        .token_basic(&id, &old, &[])
        .await
        .assert_error(401, "invalid_client", Some("AUTH_101"));
    access_token(&server.token_basic(&id, &new, &[]).await);

    // Without a grace period (empty body) the previous secret stops at once.
    let response = server
        .http
        .post(format!(
            "{}/admin/accounts/{id}/rotate-secret",
            server.url()
        ))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    let answer = Answer::of(response).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let newest = answer.body["clientSecret"].as_str().unwrap().to_owned();
    server
        .token_basic(&id, &new, &[])
        .await
        .assert_error(401, "invalid_client", Some("AUTH_101"));
    access_token(&server.token_basic(&id, &newest, &[]).await);
}

#[tokio::test]
async fn disabled_and_deleted_accounts_are_refused_at_once() {
    let (server, id, secret) = with_account(json!({"name": "d", "scopes": ["a"]})).await;
    access_token(&server.token_basic(&id, &secret, &[]).await);

    let answer = server.patch(&id, json!({"status": "DISABLED"})).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body["status"], "DISABLED");
    server.token_basic(&id, &secret, &[]).await.assert_error(
        401,
        "unauthorized_client",
        Some("AUTH_103"),
    );
    // A wrong secret for a disabled account says nothing about its status.
    server.token_basic(&id, "wrong", &[]).await.assert_error(
        401,
        "invalid_client",
        Some("AUTH_101"),
    );

    server.patch(&id, json!({"status": "ACTIVE"})).await;
    access_token(&server.token_basic(&id, &secret, &[]).await);

    let deleted = server
        .admin(Method::DELETE, &format!("/accounts/{id}"), None)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    server.token_basic(&id, &secret, &[]).await.assert_error(
        401,
        "invalid_client",
        Some("AUTH_101"),
    );
    assert_eq!(
        server
            .admin(Method::GET, &format!("/accounts/{id}"), None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    // The programmatic API and the CLI's `disable` act the same way.
    let (id, secret) = server.create(json!({"name": "d2", "scopes": ["a"]})).await;
    access_token(&server.token_basic(&id, &secret, &[]).await);
    server.running.issuer.accounts().disable(&id).await.unwrap();
    server.token_basic(&id, &secret, &[]).await.assert_error(
        401,
        "unauthorized_client",
        Some("AUTH_103"),
    );
}

#[tokio::test]
async fn allowed_ips_are_enforced() {
    let (server, local, local_secret) =
        with_account(json!({"name": "local", "scopes": ["a"], "allowedIps": ["127.0.0.1/32"]}))
            .await;
    let (remote, remote_secret) = server
        .create(json!({"name": "remote", "scopes": ["a"], "allowedIps": ["10.0.0.0/8"]}))
        .await;
    access_token(&server.token_basic(&local, &local_secret, &[]).await);
    server
        .token_basic(&remote, &remote_secret, &[])
        .await
        .assert_error(403, "unauthorized_client", Some("AUTH_104"));
    // X-Forwarded-For is ignored unless trusted.
    server
        .post_token(|r| {
            r.basic_auth(&remote, Some(&remote_secret))
                .header("x-forwarded-for", "10.1.2.3")
                .form(&[("grant_type", "client_credentials")])
        })
        .await
        .assert_error(403, "unauthorized_client", Some("AUTH_104"));
    // Widening the list applies to the next request.
    let answer = server
        .patch(
            &remote,
            json!({"allowedIps": ["10.0.0.0/8", "127.0.0.0/8"]}),
        )
        .await;
    assert_eq!(
        answer.body["allowedIps"],
        json!(["10.0.0.0/8", "127.0.0.0/8"])
    );
    access_token(&server.token_basic(&remote, &remote_secret, &[]).await);

    // Behind a trusted proxy (127.0.0.1 here), the right-most X-Forwarded-For entry that is
    // not a trusted proxy is the client.
    let proxied = start(|c| c.trusted_proxies = vec!["127.0.0.1/32".into()]).await;
    let (id, secret) = proxied
        .create(json!({"name": "behind", "scopes": ["a"], "allowedIps": ["10.0.0.0/8"]}))
        .await;
    let via = |xff: &'static str| {
        proxied
            .http
            .post(format!("{}/token", proxied.url()))
            .basic_auth(&id, Some(&secret))
            .header("x-forwarded-for", xff)
            .form(&[("grant_type", "client_credentials")])
            .send()
    };
    access_token(&Answer::of(via("192.0.2.1, 10.1.2.3").await.unwrap()).await);
    access_token(&Answer::of(via("10.1.2.3, 127.0.0.1").await.unwrap()).await);
    Answer::of(via("10.1.2.3, 192.0.2.1").await.unwrap())
        .await
        .assert_error(403, "unauthorized_client", Some("AUTH_104"));
    // A peer that is not a trusted proxy cannot name its own address.
    let untrusted = second_address();
    proxied
        .post_token_from(&untrusted, |r| {
            r.basic_auth(&id, Some(&secret))
                .header("x-forwarded-for", "10.1.2.3")
                .form(&[("grant_type", "client_credentials")])
        })
        .await
        .assert_error(403, "unauthorized_client", Some("AUTH_104"));
}

/// A rate limit of `burst` requests at once and `per_second` more each second.
fn bucket(burst: u32, per_second: u32) -> Option<Bucket> {
    Some(Bucket { burst, per_second })
}

#[tokio::test]
async fn a_thousand_bad_secrets_are_rate_limited() {
    let server = start(|c| {
        c.rate_limit.failures_per_client_ip = bucket(10, 1);
        c.rate_limit.failures_per_ip = None;
        c.rate_limit.per_ip = bucket(50, 5);
    })
    .await;
    let (id, secret) = server
        .create(json!({"name": "target", "scopes": ["a"]}))
        .await;
    let server = Arc::new(server);
    let started = Instant::now();
    // 25 callers, 40 guesses each, as fast as the answers come.
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..25 {
        let (server, id) = (server.clone(), id.clone());
        workers.spawn(async move {
            let (mut refused, mut limited) = (0u32, 0u32);
            for i in 0..40 {
                let answer = server
                    .token_basic(&id, &format!("guess-{worker}-{i}"), &[])
                    .await;
                match answer.status.as_u16() {
                    401 => refused += 1,
                    429 => {
                        limited += 1;
                        assert_eq!(answer.body["code"], "AUTH_106", "{}", answer.body);
                        assert_eq!(answer.body["error"], "rate_limited");
                        let retry: u64 = answer.header("retry-after").parse().unwrap();
                        assert!((1..=60).contains(&retry), "Retry-After {retry}");
                        assert_eq!(answer.header("cache-control"), "no-store");
                    }
                    other => panic!("unexpected {other}: {}", answer.body),
                }
            }
            (refused, limited)
        });
    }
    let (mut refused, mut limited) = (0u32, 0u32);
    while let Some(counts) = workers.join_next().await {
        let (r, l) = counts.unwrap();
        refused += r;
        limited += l;
    }
    let elapsed = started.elapsed().as_secs();
    assert_eq!(refused + limited, 1000);
    // The failure bucket of (client id, address): 10 at once, then 1 a second.
    assert!(
        u64::from(refused) <= 10 + elapsed + 1,
        "{refused} guesses reached the secret check in {elapsed} s"
    );
    assert!(limited >= 900, "{limited}");
    // The right secret is limited too from the guessing address while its bucket is empty
    // (no oracle) ...
    assert_eq!(
        server.token_basic(&id, &secret, &[]).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    // ... but the client itself, at another address, is not locked out.
    let elsewhere = second_address();
    access_token(&server.token_basic_from(&elsewhere, &id, &secret, &[]).await);
}

#[tokio::test]
async fn rate_limits_per_client_id_and_per_source_ip() {
    // Per client id: another client from the same address is not affected.
    let server = start(|c| {
        c.rate_limit.per_client = bucket(3, 1);
        c.rate_limit.per_ip = None;
    })
    .await;
    let (a, a_secret) = server.create(json!({"name": "a", "scopes": ["x"]})).await;
    let (b, b_secret) = server.create(json!({"name": "b", "scopes": ["x"]})).await;
    let statuses = server.statuses(&a, &a_secret, 6).await;
    assert!(statuses.contains(&429), "{statuses:?}");
    access_token(&server.token_basic(&b, &b_secret, &[]).await);

    // Per source IP: 127.0.0.2 has its own bucket.
    let server = start(|c| {
        c.rate_limit.per_client = None;
        c.rate_limit.per_ip = bucket(3, 1);
    })
    .await;
    let (id, secret) = server.create(json!({"name": "c", "scopes": ["x"]})).await;
    let statuses = server.statuses(&id, &secret, 6).await;
    assert!(statuses.contains(&429), "{statuses:?}");
    let other_address = second_address();
    access_token(
        &server
            .token_basic_from(&other_address, &id, &secret, &[])
            .await,
    );
}

#[tokio::test]
async fn the_admin_api() {
    let server = start(|_| {}).await;
    // Authentication.
    for token in [None, Some("wrong-token-wrong-token"), Some("")] {
        let mut request = server.http.get(format!("{}/admin/accounts", server.url()));
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        let answer = Answer::of(request.send().await.unwrap()).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
        assert_eq!(answer.body["error"], "unauthorized");
        assert!(answer.header("www-authenticate").starts_with("Bearer"));
    }

    // Create.
    let answer = server
        .admin(
            Method::POST,
            "/accounts",
            Some(json!({
                "name": "inventory-reader", "description": "reads inventory",
                "scopes": ["inventory:read"], "allowedIps": ["127.0.0.1/32", "10.0.0.0/8"],
                "audiences": ["inventory-api"]
            })),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    assert_eq!(answer.header("cache-control"), "no-store");
    let id = answer.body["clientId"].as_str().unwrap().to_owned();
    let secret = answer.body["clientSecret"].as_str().unwrap().to_owned();
    assert!(secret.len() >= 43, "256-bit secret");
    assert_eq!(answer.header("location"), format!("/admin/accounts/{id}"));
    assert_eq!(answer.body["status"], "ACTIVE");
    assert_eq!(answer.body["scopes"], json!(["inventory:read"]));
    assert_eq!(answer.body["audiences"], json!(["inventory-api"]));

    // Get: no secret, no hash.
    let answer = server
        .admin(Method::GET, &format!("/accounts/{id}"), None)
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body["name"], "inventory-reader");
    assert_eq!(answer.body["description"], "reads inventory");
    let text = answer.body.to_string();
    assert!(!text.contains(&secret) && !text.contains("argon2"));
    assert!(answer.body.get("clientSecret").is_none());

    // Validation errors name the field.
    for (body, field, status) in [
        (
            json!({"name": "x", "allowedIps": ["10.0.0.0/33"]}),
            "allowedIps[0]",
            400,
        ),
        (
            json!({"name": "x", "allowedIps": ["nonsense"]}),
            "allowedIps[0]",
            400,
        ),
        (
            json!({"name": "x", "scopes": ["ok", "has space"]}),
            "scopes[1]",
            400,
        ),
        (json!({"name": ""}), "name", 400),
        (json!({"scopes": ["a"]}), "name", 400),
        (json!({"name": "x", "colour": "red"}), "colour", 400),
        (json!({"name": "x", "scopes": "a"}), "scopes", 400),
        (json!({"name": "inventory-reader"}), "inventory-reader", 409),
    ] {
        let answer = server
            .admin(Method::POST, "/accounts", Some(body.clone()))
            .await;
        assert_eq!(answer.status.as_u16(), status, "{body} → {}", answer.body);
        let description = answer.body["error_description"].as_str().unwrap();
        assert!(description.contains(field), "{body} → {description}");
    }
    let not_json = server
        .http
        .post(format!("{}/admin/accounts", server.url()))
        .bearer_auth(ADMIN)
        .body("name=x")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // Update.
    let answer = server
        .patch(
            &id,
            json!({"scopes": ["inventory:read", "inventory:write"], "allowedIps": []}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(
        answer.body["scopes"],
        json!(["inventory:read", "inventory:write"])
    );
    assert_eq!(answer.body["allowedIps"], json!([]));
    let answer = server.patch(&id, json!({"status": "PAUSED"})).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(
        answer.body["error_description"]
            .as_str()
            .unwrap()
            .contains("status")
    );
    for (method, path, body) in [
        (Method::GET, "/accounts/nope".to_owned(), None),
        (
            Method::PATCH,
            "/accounts/nope".to_owned(),
            Some(json!({"status": "DISABLED"})),
        ),
        (Method::DELETE, "/accounts/nope".to_owned(), None),
        (
            Method::POST,
            "/accounts/nope/rotate-secret".to_owned(),
            Some(json!({})),
        ),
    ] {
        let answer = server.admin(method.clone(), &path, body).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{method} {path}");
        assert_eq!(answer.body["error"], "not_found");
    }
    let answer = server
        .rotate_secret(&id, json!({"gracePeriodSeconds": 999_999_999}))
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.body["field"], "gracePeriodSeconds");

    // List, paginated.
    for i in 0..4 {
        server.create(json!({"name": format!("extra-{i}")})).await;
    }
    let mut names = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/accounts?limit=2&cursor={c}"),
            None => "/accounts?limit=2".to_owned(),
        };
        let page = server.admin(Method::GET, &path, None).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        pages += 1;
        for a in page.body["accounts"].as_array().unwrap() {
            names.push(a["name"].as_str().unwrap().to_owned());
            assert!(a.get("clientSecret").is_none());
        }
        match page.body["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(
        names,
        [
            "inventory-reader",
            "extra-0",
            "extra-1",
            "extra-2",
            "extra-3"
        ]
    );
    for bad in [
        "limit=0",
        "limit=x",
        "limit=100000",
        "cursor=abc",
        "colour=red",
    ] {
        let answer = server
            .admin(Method::GET, &format!("/accounts?{bad}"), None)
            .await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(answer.body["error"], "invalid_request");
    }

    // Delete, once.
    let account = format!("/accounts/{id}");
    let delete = || server.admin(Method::DELETE, &account, None);
    assert_eq!(delete().await.status, StatusCode::NO_CONTENT);
    assert_eq!(
        delete().await.status,
        StatusCode::NOT_FOUND,
        "deleted twice"
    );

    // Without an admin token there is no admin API (tokens are still served).
    let no_admin = start(|c| c.admin_token = None).await;
    let answer = no_admin
        .http
        .get(format!("{}/admin/accounts", no_admin.url()))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::NOT_FOUND);
    let created = no_admin
        .running
        .issuer
        .accounts()
        .create(s2s_issuer::accounts::NewAccount::new("direct").scope("a"))
        .await
        .unwrap();
    use secrecy::ExposeSecret as _;
    access_token(
        &no_admin
            .token_basic(
                &created.account.client_id,
                created.client_secret.expose_secret(),
                &[],
            )
            .await,
    );
}

#[tokio::test]
async fn restart_on_the_same_sqlite_file_keeps_accounts_and_keys() {
    let dir = temp_dir("restart");
    let db = dir.join("issuer.db");
    let config = || {
        let mut c = base_config();
        c.db = db.to_str().unwrap().to_owned();
        c
    };

    let first = start_with(config()).await;
    let (id, secret) = first
        .create(json!({"name": "durable", "scopes": ["a"]}))
        .await;
    let first_token = access_token(&first.token_basic(&id, &secret, &[]).await);
    first.running.issuer.rotate_signing_key().await.unwrap();
    let jwks_before = first.get("/.well-known/jwks.json").await.body;
    assert_eq!(kids(&jwks_before).len(), 2);
    let Server { running, http } = first;
    drop(http);
    running.shutdown().await;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&db).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the database is private to its owner");
    }

    let second = start_with(config()).await;
    let jwks_after = second.get("/.well-known/jwks.json").await.body;
    assert_eq!(jwks_after, jwks_before, "the same keys after a restart");
    let token = access_token(&second.token_basic(&id, &secret, &[]).await);
    assert_eq!(
        decode(&token).0["kid"],
        jwks_before["keys"][0]["kid"],
        "the active key is still the active key"
    );
    let account = second
        .admin(Method::GET, &format!("/accounts/{id}"), None)
        .await;
    assert_eq!(account.body["name"], "durable");
    // The token issued before the restart verifies against the restarted issuer's keys
    // (issuer URL aside: it was another port, so check the signature by kid only).
    let first_kid = decode(&first_token).0["kid"].clone();
    assert!(kids(&jwks_after).contains(&first_kid.as_str().unwrap().to_owned()));
    let Server { running, http } = second;
    drop(http);
    running.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Collects formatted tracing output.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The process-wide log of this test binary (a global subscriber: a thread-local one misses
/// events whose callsites other tests' threads registered first).
fn captured_log() -> &'static Captured {
    static CAPTURED: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();
    CAPTURED.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
        captured
    })
}

#[tokio::test]
async fn the_audit_log_records_issuance_and_refusals_without_secrets() {
    let captured = captured_log();
    let (server, id, secret) =
        with_account(json!({"name": "audited", "scopes": ["a"], "allowedIps": ["127.0.0.1"]}))
            .await;
    let token = access_token(&server.token_basic(&id, &secret, &[]).await);
    server
        .token_basic(&id, "not-the-secret", &[])
        .await
        .assert_error(401, "invalid_client", Some("AUTH_101"));
    server
        .token_basic(&id, &secret, &[("scope", "b")])
        .await
        .assert_error(400, "invalid_scope", Some("AUTH_102"));

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    // Other tests log too: keep this account's audit lines.
    let audit: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("s2s_issuer::audit") && l.contains(&id))
        .collect();
    let issued: Vec<&&str> = audit
        .iter()
        .filter(|l| l.contains("outcome=\"issued\""))
        .collect();
    assert_eq!(issued.len(), 1, "{log}");
    assert!(issued[0].contains(&id) && issued[0].contains("source_ip=127.0.0.1"));
    let refused: Vec<&&str> = audit
        .iter()
        .filter(|l| l.contains("outcome=\"refused\""))
        .collect();
    assert_eq!(refused.len(), 2, "{log}");
    assert!(refused[0].contains("AUTH_101") && refused[0].contains(&id));
    assert!(refused[1].contains("AUTH_102"));
    assert!(audit.iter().any(|l| l.contains("account_created")));
    assert!(!log.contains(&secret), "a secret in the log");
    assert!(
        !log.contains("not-the-secret"),
        "a guessed secret in the log"
    );
    assert!(!log.contains(&token), "a token in the log");
    let signature = token.rsplit('.').next().unwrap();
    assert!(!log.contains(signature));
}

#[tokio::test]
async fn a_tampered_token_is_not_accepted() {
    // The verifier really checks the issuer's signatures (the tests above could not fail
    // otherwise): the same token with a widened scope and the original signature is refused.
    let (server, id, secret) = with_account(json!({"name": "tamper", "scopes": ["a", "b"]})).await;
    let token = access_token(&server.token_basic(&id, &secret, &[("scope", "a")]).await);
    let verifier = server.clock_free_verifier();
    verifier.verify(&token).await.unwrap();
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let (_, mut claims) = decode(&token);
    claims["scope"] = json!("a b admin");
    parts[1] = URL_SAFE_NO_PAD.encode(claims.to_string());
    assert!(verifier.verify(&parts.join(".")).await.is_err());
}
