//! `ClientCredentials` in the Auth Service JSON dialect (`Dialect::Json`), over real HTTP on
//! 127.0.0.1: against a [`TokenServer`] that speaks only that dialect (and refuses forms with
//! 415), one that speaks only RFC 6749 (and refuses JSON with 400), one that speaks both, and a
//! real `s2s-issuer` served as the seed's Auth Service (`tests/seed_support`). The request and answer field by field, caching and refresh, every seed
//! error code mapped to a typed error, each dialect against the wrong server, and issue 11's
//! hardening (no redirects, bodies never quoted, bounded lifetimes, the shared-manager key) in
//! this dialect too.
//!
//! Time: the refresh and `Retry-After` tests run on a paused tokio clock held still while bytes
//! move ([`clock_held`]) and moved only with `advance`. Nothing sleeps to wait for a race.

use std::time::Duration;

use axum::http::StatusCode;
use futures_util::FutureExt as _;
use jsonwebtoken::Algorithm;
use s2s_auth::{
    Code, Error, ErrorKind,
    middleware::AuthorizeMiddleware,
    token::{ClientAuth, ClientCredentials, Dialect, MAX_EXPIRES_IN, TokenManager, TokenSource},
};
use s2s_tests::{
    outbound::assert_asks_again_only_after,
    time::{clock_held, wait_until},
    token_server::{ExpiresIn, Reply, ResourceServer, Speaks, TokenServer},
};
use serde_json::json;
use tokio::time::advance;

mod seed_support;
use seed_support::{SEED_ISS, SeedIssuer};

const CLIENT_ID: &str = "val_svc_client_a1b2c3";
const SECRET: &str = "cs_4d5e6f7g8h9i0j_ONLY_SHOWN_ONCE";

/// `text` says each of `says` and never `never` (a secret or a token).
#[track_caller]
fn assert_says_never(text: &str, says: &[&str], never: &str) {
    for said in says {
        assert!(text.contains(said), "`{said}` missing: {text}");
    }
    assert!(!text.contains(never), "{text}");
}

/// `err` is a configuration error refused with `status`, whose message says each of `says` and
/// never the secret.
#[track_caller]
fn assert_config_refusal(err: &Error, status: StatusCode, says: &[&str]) {
    let text = err.to_string();
    assert_eq!(err.kind(), ErrorKind::Config, "{text}");
    assert_eq!(err.status(), Some(status), "{text}");
    assert_says_never(&text, says, SECRET);
}

/// The grant of `CLIENT_ID` against `server`, authenticated with `auth`.
fn grant(server: &TokenServer, auth: ClientAuth) -> ClientCredentials {
    ClientCredentials::new(server.token_url(), CLIENT_ID, auth)
}

/// The seed's grant: JSON dialect, secret in the body, two scopes.
fn json_grant(server: &TokenServer) -> ClientCredentials {
    grant(server, ClientAuth::SecretPost(SECRET.into()))
        .dialect(Dialect::Json)
        .scope("workflow:read")
        .scope("validation:write")
}

async fn json_server() -> TokenServer {
    let server = TokenServer::start().await;
    server.set_dialect(Speaks::JsonOnly);
    server
}

// ---------------------------------------------------------------------------------------------
// The request and the answer
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_json_dialect_sends_the_seed_request_and_reads_the_seed_answer() {
    let server = json_server().await;
    server.set_expires_in(ExpiresIn::Seconds(1800));
    let api = ResourceServer::start(&server).await;
    let answer = json_grant(&server).fetch().await.expect("a token");
    assert_eq!(answer.expires_in, Some(Duration::from_secs(1800)));
    assert_eq!(
        answer.scope.as_deref(),
        Some("workflow:read validation:write")
    );

    let [request] = &server.recorded()[..] else {
        panic!("one request expected: {:?}", server.recorded());
    };
    assert_eq!(request.method, "POST");
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.header("accept"), Some("application/json"));
    assert_eq!(
        request.header("authorization"),
        None,
        "no Basic credentials"
    );
    assert_eq!(
        request.json,
        Some(json!({
            "grantType": "client_credentials",
            "clientId": CLIENT_ID,
            "clientSecret": SECRET,
            "scope": "workflow:read validation:write",
        }))
    );

    // The token read from `accessToken` is the one the server issued: the API takes it.
    let tokens = TokenManager::new(json_grant(&server)).unwrap();
    let token = tokens.token().await.unwrap();
    assert_eq!(Some(token.as_str().to_owned()), server.latest_token());
    let response = reqwest::Client::new()
        .get(format!("{}/workflows/active", api.url()))
        .header("authorization", token.header_value())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn audience_resources_and_extra_parameters_are_json_members() {
    let server = json_server().await;
    json_grant(&server)
        .audience("api")
        .resource("https://workflow.example.com")
        .resource("https://validation.example.com")
        .param("tenant", "blue")
        .fetch()
        .await
        .expect("a token");
    grant(&server, ClientAuth::SecretPost(SECRET.into()))
        .dialect(Dialect::Json)
        .resource("https://workflow.example.com")
        .fetch()
        .await
        .expect("a token");
    let requests = server.recorded();
    assert_eq!(
        requests[0].json,
        Some(json!({
            "grantType": "client_credentials",
            "clientId": CLIENT_ID,
            "clientSecret": SECRET,
            "scope": "workflow:read validation:write",
            "audience": "api",
            "resource": ["https://workflow.example.com", "https://validation.example.com"],
            "tenant": "blue",
        }))
    );
    // One resource is a string, and no scopes means no `scope` member.
    assert_eq!(
        requests[1].json,
        Some(json!({
            "grantType": "client_credentials",
            "clientId": CLIENT_ID,
            "clientSecret": SECRET,
            "resource": "https://workflow.example.com",
        }))
    );
}

/// The seed's clients cache the token until `expiresIn`; the library's manager does better: one
/// request for any number of calls, and a refresh in the background ahead of expiry, so that no
/// call ever waits for the token endpoint.
#[tokio::test(start_paused = true)]
async fn a_json_dialect_token_is_cached_and_refreshed_ahead_of_expiry() {
    let server = json_server().await;
    server.set_expires_in(ExpiresIn::Seconds(600));
    let tokens = TokenManager::new(json_grant(&server)).unwrap();
    clock_held(async {
        let first = tokens.token().await.expect("a token");
        for _ in 0..100 {
            assert!(tokens.token().await.unwrap().same_as(&first));
        }
        assert_eq!(server.requests(), 1, "the token is cached");
        let mut refreshed_at = None;
        for at in 1..=600u64 {
            advance(Duration::from_secs(1)).await;
            for _ in 0..50 {
                tokio::task::yield_now().await;
            }
            wait_until("the token requests in flight are answered", || {
                tokens.metrics().fetches == server.requests() as u64
            })
            .await;
            let token = tokens
                .token()
                .now_or_never()
                .unwrap_or_else(|| panic!("at t = {at} s a call waited for the token endpoint"))
                .unwrap();
            if refreshed_at.is_none() && !token.same_as(&first) {
                refreshed_at = Some(at);
            }
        }
        // Refreshed once, 70..75% into the token's life (60 s ahead of its expiry, up to 5%
        // earlier at random; one second of step tolerance).
        let refreshed_at = refreshed_at.expect("the token was never refreshed");
        assert!(
            (419..=451).contains(&refreshed_at),
            "refreshed at {refreshed_at} s"
        );
        assert_eq!(server.requests(), 2);
        assert!(
            server
                .recorded()
                .iter()
                .all(|r| r.header("content-type") == Some("application/json")
                    && r.status == Some(StatusCode::OK)),
            "every request in the JSON dialect, every one answered"
        );
        assert_eq!(
            tokens.current().unwrap().as_str(),
            server.latest_token().unwrap()
        );
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Errors: the seed's codes and statuses
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn every_seed_error_code_is_a_typed_error_that_keeps_its_code() {
    let server = json_server().await;
    let oauth = |status: u16, error: &str, code: &str| Reply::OAuth {
        status,
        error: error.into(),
        description: Some(format!("refused with {code}")),
        code: Some(code.into()),
    };
    #[rustfmt::skip]
    let cases = [
        (oauth(401, "invalid_client", "AUTH_101"), ErrorKind::Config, Code::InvalidClient, "secret"),
        (oauth(400, "invalid_scope", "AUTH_102"), ErrorKind::Config, Code::InsufficientScope, "scopes"),
        (oauth(403, "insufficient_scope", "AUTH_102"), ErrorKind::Config, Code::InsufficientScope, "scopes"),
        (oauth(401, "unauthorized_client", "AUTH_103"), ErrorKind::Config, Code::AccountDisabled, "disabled"),
        (oauth(403, "unauthorized_client", "AUTH_104"), ErrorKind::Config, Code::IpNotAllowed, "allowed IPs"),
        (oauth(429, "rate_limited", "AUTH_106"), ErrorKind::Transient, Code::RateLimited, "retrying"),
        // An OAuth error name the library does not know: the code decides.
        (oauth(401, "account_disabled", "AUTH_103"), ErrorKind::Config, Code::AccountDisabled, "disabled"),
        (oauth(429, "slow_down", "AUTH_106"), ErrorKind::Transient, Code::RateLimited, "retrying"),
    ];
    server.set_retry_after(Some(9));
    for (reply, kind, code, fix) in cases {
        let Reply::OAuth {
            status, ref error, ..
        } = reply
        else {
            unreachable!()
        };
        server.set_reply(reply.clone());
        let err = json_grant(&server).fetch().await.expect_err("refused");
        let text = err.to_string();
        assert_eq!(err.kind(), kind, "{text}");
        assert_eq!(err.code(), Some(code), "{text}");
        assert_eq!(err.status().map(|s| s.as_u16()), Some(status), "{text}");
        assert_eq!(err.oauth_error(), Some(error.as_str()), "{text}");
        assert!(text.starts_with(&format!("{code}: ")), "{text}");
        assert!(text.contains(&format!("refused with {code}")), "{text}");
        assert!(text.contains(fix), "`{fix}` missing: {text}");
        assert_eq!(err.retry_after(), Some(Duration::from_secs(9)), "{text}");
        assert!(!text.contains(SECRET) && !format!("{err:?}").contains(SECRET));
    }
}

/// AUTH_106 with `Retry-After`: the manager asks again no sooner than the server said.
#[tokio::test(start_paused = true)]
async fn a_rate_limited_json_dialect_fetch_waits_for_retry_after() {
    let server = json_server().await;
    server.set_reply(Reply::OAuth {
        status: 429,
        error: "rate_limited".into(),
        description: None,
        code: Some("AUTH_106".into()),
    });
    server.set_retry_after(Some(5));
    let tokens = TokenManager::new(json_grant(&server)).unwrap();
    clock_held(async {
        let err = tokens.token().await.expect_err("rate limited");
        assert_eq!(err.code(), Some(Code::RateLimited));
        assert!(err.is_transient());
        assert_eq!(err.retry_after(), Some(Duration::from_secs(5)));
        assert_asks_again_only_after(&server, &tokens, 5, |again| {
            assert_eq!(again.code(), Some(Code::RateLimited));
        })
        .await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// The wrong dialect
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_json_only_server_refuses_the_form_dialect_clearly() {
    let server = json_server().await;
    let form = grant(&server, ClientAuth::SecretPost(SECRET.into()));
    let err = form.fetch().await.expect_err("a form is refused");
    let says = ["415", "RFC 6749 form", "Dialect::Json", "application/json"];
    assert_config_refusal(&err, StatusCode::UNSUPPORTED_MEDIA_TYPE, &says);
    // The same grant in the JSON dialect is served.
    json_grant(&server).fetch().await.expect("a token");
}

#[tokio::test]
async fn a_client_configuration_chooses_the_dialect() {
    let server = json_server().await;
    let config = |dialect: &str| {
        s2s_auth::config::ClientConfig::from_toml_str(&format!(
            "token_url = \"{}\"\nclient_id = \"{CLIENT_ID}\"\nauth = \"post\"\n\
             scopes = [\"workflow:read\"]\n{dialect}",
            server.token_url()
        ))
        .unwrap()
        .with_env_from(|name| (name == "S2S_CLIENT_SECRET").then(|| SECRET.to_owned()))
        .unwrap()
    };
    // The default, RFC 6749's form, is refused by this server; `dialect = "json"` is served.
    let err = config("").grant().unwrap().fetch().await.unwrap_err();
    assert_eq!(
        err.status(),
        Some(StatusCode::UNSUPPORTED_MEDIA_TYPE),
        "{err}"
    );
    let tokens = config("dialect = \"json\"\n").token_manager().unwrap();
    tokens.token().await.expect("a token in the JSON dialect");
    assert_eq!(
        server.recorded().len(),
        2,
        "one refused form, one JSON request"
    );
    assert!(!format!("{:?}", config("")).contains(SECRET));
}

#[tokio::test]
async fn a_form_only_server_refuses_the_json_dialect_clearly() {
    let server = TokenServer::start().await; // RFC 6749 only
    let err = json_grant(&server)
        .fetch()
        .await
        .expect_err("a JSON body is refused");
    assert_eq!(err.oauth_error(), Some("invalid_request"));
    let says = [
        "400",
        "invalid_request",
        "Auth Service JSON",
        "Dialect::Form",
    ];
    assert_config_refusal(&err, StatusCode::BAD_REQUEST, &says);
    // The same client in the form dialect is served.
    grant(&server, ClientAuth::SecretPost(SECRET.into()))
        .fetch()
        .await
        .expect("a token");
}

/// A server that takes the JSON request but answers RFC 6749's members (as `s2s-issuer` did
/// before issue 12): the error names the members it found and the dialect to choose, and never
/// quotes the token.
#[tokio::test]
async fn an_answer_in_the_other_dialect_is_named_and_never_quoted() {
    const TOKEN: &str = "eyJhbGciOiJFUzI1NiJ9.leaked-token-value.sig";
    let server = json_server().await;
    server.set_reply(Reply::json(
        json!({"access_token": TOKEN, "token_type": "Bearer", "expires_in": 1800}).to_string(),
    ));
    let err = json_grant(&server)
        .fetch()
        .await
        .expect_err("wrong dialect");
    let shown = format!("{err} {err:?}");
    assert!(err.is_transient(), "{shown}");
    let says = [
        "`accessToken`",
        "`access_token`",
        "Dialect::Form",
        "not shown",
    ];
    assert_says_never(&shown, &says, TOKEN);

    // And the other way round.
    let server = TokenServer::start().await;
    server.set_reply(Reply::json(
        json!({"accessToken": TOKEN, "tokenType": "Bearer", "expiresIn": 1800}).to_string(),
    ));
    let err = grant(&server, ClientAuth::SecretBasic(SECRET.into()))
        .fetch()
        .await
        .expect_err("wrong dialect");
    let shown = format!("{err} {err:?}");
    assert!(shown.contains("Dialect::Json"), "{shown}");
    assert!(!shown.contains(TOKEN), "{shown}");
}

/// What the JSON body cannot carry is refused before any request, with what to do instead.
#[tokio::test]
async fn the_json_dialect_refuses_what_its_body_cannot_express() {
    let server = json_server().await;
    let pem = s2s_auth_testkit::TestKey::generate(Algorithm::EdDSA, "client").private_pem();
    let private_key_jwt =
        ClientAuth::private_key_pem(s2s_auth::Algorithm::EdDSA, pem.as_bytes(), None).unwrap();
    let base = || grant(&server, ClientAuth::SecretBasic(SECRET.into())).dialect(Dialect::Json);
    let cases = [
        (base(), "ClientAuth::SecretPost"),
        (
            base().auth(ClientAuth::SecretBasic(SECRET.into())),
            "client_secret_basic",
        ),
        (base().auth(private_key_jwt), "client assertion"),
        (
            json_grant(&server).param("clientSecret", "other"),
            "`clientSecret`",
        ),
        (json_grant(&server).param("scope", "admin"), "`scope`"),
        (
            json_grant(&server).param("grantType", "password"),
            "`grantType`",
        ),
    ];
    for (grant, says) in cases {
        let err = TokenManager::new(grant.clone()).expect_err("refused when built");
        assert_eq!(err.kind(), ErrorKind::Config, "{err}");
        assert!(err.to_string().contains(says), "`{says}` missing: {err}");
        assert!(!err.to_string().contains(SECRET), "{err}");
        let err = grant.fetch().await.expect_err("refused when fetched");
        assert!(err.to_string().contains(says), "`{says}` missing: {err}");
    }
    assert_eq!(server.requests(), 0, "nothing was sent");
}

// ---------------------------------------------------------------------------------------------
// Issue 11's hardening, in this dialect too
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_redirect_of_a_json_token_request_is_never_followed() {
    let server = json_server().await;
    server.set_reply(Reply::raw(307, "text/plain", "moved"));
    let err = json_grant(&server).fetch().await.expect_err("a redirect");
    assert!(
        err.to_string().contains("refusing to follow a redirect"),
        "{err}"
    );
    assert_eq!(err.status(), Some(StatusCode::TEMPORARY_REDIRECT));
    assert_eq!(server.requests(), 1, "the redirect was followed");
}

#[tokio::test]
async fn a_json_dialect_body_that_is_not_a_token_response_is_never_quoted() {
    const TOKEN: &str = "gho_LeakedJsonDialectToken0123";
    let server = json_server().await;
    for body in [
        format!(r#"{{"accessToken": ["{TOKEN}"], "tokenType": "{TOKEN}"}}"#),
        format!("\n{{\"accessToken\": \"{TOKEN}\", \"tokenType\": \"Bearer\",}}"),
        format!(r#"["{TOKEN}"]"#),
        format!(r#"{{"accessToken": "{TOKEN}"}}"#),
        format!(r#"{{"accessToken": "{TOKEN}", "tokenType": "Bearer", "scope": ["{TOKEN}"]}}"#),
    ] {
        server.set_reply(Reply::json(body.clone()));
        let err = json_grant(&server).fetch().await.expect_err(&body);
        let shown = format!("{err} {err:?}");
        assert!(err.is_transient(), "{shown}");
        assert!(shown.contains("not shown"), "{body}: {shown}");
        assert!(!shown.contains(TOKEN), "{body}: {shown}");
    }
}

#[tokio::test]
async fn json_dialect_lifetimes_are_bounded() {
    let server = json_server().await;
    for (expires_in, expected) in [
        (json!(1800), Some(Duration::from_secs(1800))),
        (json!("1800"), Some(Duration::from_secs(1800))),
        (json!(1e300), Some(MAX_EXPIRES_IN)),
        (json!(null), None),
    ] {
        server.set_reply(Reply::json(
            json!({"accessToken": "at-1", "tokenType": "Bearer", "expiresIn": expires_in})
                .to_string(),
        ));
        let answer = json_grant(&server).fetch().await.expect("a token");
        assert_eq!(answer.expires_in, expected, "expiresIn {expires_in}");
    }
    for expires_in in [json!(-1), json!("soon"), json!(true), json!([1])] {
        server.set_reply(Reply::json(
            json!({"accessToken": "at-1", "tokenType": "Bearer", "expiresIn": expires_in})
                .to_string(),
        ));
        let err = json_grant(&server).fetch().await.expect_err("refused");
        assert!(err.is_transient(), "{err}");
        assert!(err.to_string().contains("`expiresIn`"), "{err}");
    }
}

/// Two grants that differ only in their dialect are different grants: `TokenManager::shared`
/// gives each its own token (a token obtained in one dialect is not handed to the other).
#[tokio::test]
async fn shared_managers_are_keyed_on_the_dialect_too() {
    let server = TokenServer::start().await;
    server.set_dialect(Speaks::Both);
    let grant = |dialect| {
        grant(&server, ClientAuth::SecretPost(SECRET.into()))
            .scope("workflow:read")
            .dialect(dialect)
    };
    let form = TokenManager::shared(grant(Dialect::Form)).unwrap();
    let json = TokenManager::shared(grant(Dialect::Json)).unwrap();
    let a = form.token().await.unwrap();
    let b = json.token().await.unwrap();
    assert_eq!(server.requests(), 2, "the two dialects shared one token");
    assert_ne!(a.as_str(), b.as_str());
    let content_types: Vec<_> = server
        .recorded()
        .iter()
        .map(|r| r.header("content-type").unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        content_types,
        ["application/x-www-form-urlencoded", "application/json"]
    );
    // The same JSON grant again: the same manager, no new request.
    let again = TokenManager::shared(grant(Dialect::Json)).unwrap();
    assert!(again.token().await.unwrap().same_as(&b));
    assert_eq!(server.requests(), 2);
}

// ---------------------------------------------------------------------------------------------
// Against a real s2s-issuer, served as the seed's Auth Service
// ---------------------------------------------------------------------------------------------

/// The library's `ClientCredentials` in the JSON dialect against a real `s2s-issuer` served as
/// the seed's Auth Service (`/auth`, `iss` `auth-service`, audience `api`): the seed's request,
/// answered in the seed's dialect, gives a cached token that the seed's workflow service behind
/// `VerifyLayer` accepts through the reqwest middleware; the same account in the form dialect
/// works too; a wrong secret, an unallowed scope, the seed's own account (allowed only from
/// 10.0.1.0/24 and 10.0.2.0/24) and a disabled account are the typed errors with AUTH_101..104.
#[tokio::test]
async fn the_json_dialect_against_a_real_s2s_issuer() {
    let auth = SeedIssuer::seed().await;
    let (workflows, _service) = seed_support::workflow_service(SEED_ISS, &auth.jwks_url()).await;
    let mut request = seed_support::seed_account_request();
    request["name"] = json!("validation-service-local");
    request["allowedIps"] = json!(["127.0.0.0/8"]);
    let created = auth.create(request).await.body;
    let client_id = created["clientId"].as_str().unwrap().to_owned();
    let secret = created["clientSecret"].as_str().unwrap().to_owned();
    let token_url = format!("{}/token", auth.url);
    let grant = |client_id: &str, secret: &str| {
        ClientCredentials::new(
            &token_url,
            client_id,
            ClientAuth::SecretPost(secret.to_owned().into()),
        )
        .dialect(Dialect::Json)
        .scope("workflow:read")
        .scope("validation:write")
    };

    let answer = grant(&client_id, &secret)
        .fetch()
        .await
        .expect("a token in the JSON dialect");
    assert_eq!(
        answer.scope.as_deref(),
        Some("workflow:read validation:write")
    );
    assert_eq!(answer.expires_in, Some(Duration::from_secs(1800)));

    let tokens = TokenManager::new(grant(&client_id, &secret)).unwrap();
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(AuthorizeMiddleware::new(tokens.clone()).allow_origin(&workflows))
        .build();
    for _ in 0..3 {
        let response = client
            .get(format!("{workflows}/workflow-service/workflows/active"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["count"], 2, "{body}");
    }
    assert_eq!(tokens.metrics().fetches, 1, "the token is cached");

    // The same account through the form dialect.
    ClientCredentials::new(
        &token_url,
        &client_id,
        ClientAuth::SecretBasic(secret.clone().into()),
    )
    .fetch()
    .await
    .expect("a token in the form dialect");

    let expect = |code: Code, status: StatusCode, err: s2s_auth::Error| {
        let text = err.to_string();
        assert_eq!(err.kind(), ErrorKind::Config, "{text}");
        assert_eq!(err.code(), Some(code), "{text}");
        assert_eq!(err.status(), Some(status), "{text}");
        assert!(text.starts_with(&format!("{code}: ")), "{text}");
        assert!(!text.contains(&secret), "{text}");
    };
    let err = grant(&client_id, "cs_wrong").fetch().await.unwrap_err();
    expect(Code::InvalidClient, StatusCode::UNAUTHORIZED, err);
    let err = grant(&client_id, &secret)
        .scope("admin:all")
        .fetch()
        .await
        .unwrap_err();
    expect(Code::InsufficientScope, StatusCode::BAD_REQUEST, err);
    // The seed's account as its `curl` creates it: allowed only from 10.0.1.0/24, 10.0.2.0/24.
    let seeds = auth.create(seed_support::seed_account_request()).await.body;
    let err = grant(
        seeds["clientId"].as_str().unwrap(),
        seeds["clientSecret"].as_str().unwrap(),
    )
    .fetch()
    .await
    .unwrap_err();
    expect(Code::IpNotAllowed, StatusCode::FORBIDDEN, err);
    auth.issuer.accounts().disable(&client_id).await.unwrap();
    let err = grant(&client_id, &secret).fetch().await.unwrap_err();
    expect(Code::AccountDisabled, StatusCode::UNAUTHORIZED, err);
}
