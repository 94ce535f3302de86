//! The reqwest middleware (`AuthorizeMiddleware`), over real HTTP on 127.0.0.1: a
//! [`TokenServer`] issues tokens and a [`ResourceServer`] accepts only the latest one issued.
//! One forced refresh for many calls refused as `invalid_token`, a retry only for that refusal,
//! a request's own `Authorization` and a forwarded caller's token left alone, token errors
//! returned as middleware errors.
//!
//! [`TokenServer`]: s2s_tests::token_server::TokenServer

use axum::http::{StatusCode, header::AUTHORIZATION};
use reqwest_middleware::{ClientWithMiddleware, RequestBuilder};
use s2s_auth::{
    Code, Error,
    middleware::AuthorizeMiddleware,
    token::{TokenManager, TokenSource},
};
use s2s_tests::{
    outbound::{inbound_token, manager, token_server},
    token_server::{Reply, ResourceServer, TokenServer},
};

fn reqwest_client(tokens: &TokenManager, api: &ResourceServer) -> ClientWithMiddleware {
    reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(AuthorizeMiddleware::new(tokens.clone()).allow_origin(api.url()))
        .build()
}

/// A token server, a resource server accepting its latest token, a manager of that server's
/// tokens and a middleware client allowed to call the resource server with them.
async fn started() -> (
    TokenServer,
    ResourceServer,
    TokenManager,
    ClientWithMiddleware,
) {
    let server = token_server().await;
    let api = ResourceServer::start(&server).await;
    let tokens = manager(&server);
    let client = reqwest_client(&tokens, &api);
    (server, api, tokens, client)
}

/// GET `path` of `api` through `client`, with what `build` adds to the request; the status.
async fn get(
    client: &ClientWithMiddleware,
    api: &ResourceServer,
    path: &str,
    build: impl FnOnce(RequestBuilder) -> RequestBuilder,
) -> StatusCode {
    let request = build(client.get(format!("{}{path}", api.url())));
    request.send().await.unwrap().status()
}

/// `api` has had `calls` calls, the last with `Authorization: authorization`.
#[track_caller]
fn assert_last_sent(api: &ResourceServer, calls: usize, authorization: &str) {
    assert_eq!(api.calls(), calls);
    let sent = api.authorizations();
    assert_eq!(sent[calls - 1].as_deref(), Some(authorization), "{sent:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_calls_refused_as_invalid_token_cause_one_forced_refresh() {
    let server = token_server().await;
    let api = ResourceServer::start(&server).await;
    let tokens = manager(&server);
    let stale = tokens.token().await.expect("warm-up token");
    // The callee stops accepting it (say the authorization server rotated its keys); the
    // manager cannot know. All 100 first attempts are refused before any caller can react.
    server.revoke_issued();
    api.hold_rejections_until(100);

    let client = reqwest_client(&tokens, &api);
    let calls: Vec<_> = (0..100)
        .map(|i| {
            let request = client.get(format!("{}/orders/{i}", api.url()));
            tokio::spawn(async move { request.send().await })
        })
        .collect();
    for call in calls {
        let response = call.await.unwrap().expect("call");
        assert_eq!(response.status(), StatusCode::OK);
    }

    assert_eq!(tokens.metrics().forced_refreshes, 1);
    assert_eq!(server.requests(), 2, "one warm-up, one forced refresh");
    let stale = Some(format!("Bearer {}", stale.as_str()));
    let fresh = Some(format!("Bearer {}", server.latest_token().unwrap()));
    let sent = api.authorizations();
    assert_eq!(sent.len(), 200, "each call sent once and retried once");
    assert_eq!(sent.iter().filter(|a| **a == stale).count(), 100);
    assert_eq!(sent.iter().filter(|a| **a == fresh).count(), 100);
    assert_eq!((api.rejected(), api.accepted()), (100, 100));
}

#[tokio::test]
async fn reqwest_middleware_leaves_own_headers_alone_and_forwards_without_retry() {
    let (server, api, tokens, client) = started().await;

    assert_eq!(get(&client, &api, "/orders", |r| r).await, StatusCode::OK);
    let service_token = format!("Bearer {}", server.latest_token().unwrap());
    assert_eq!(api.authorizations(), vec![Some(service_token)]);

    // Its own header: sent as it is, and a 401 is not retried with the service's token.
    assert_eq!(
        get(&client, &api, "/own", |r| r
            .header(AUTHORIZATION, "Bearer caller-chosen"))
        .await,
        StatusCode::UNAUTHORIZED
    );
    assert_last_sent(&api, 2, "Bearer caller-chosen");

    // Forwarding the inbound caller's token: refused as invalid_token, returned as it is (a
    // new service token would not be the caller's).
    assert_eq!(
        get(&client, &api, "/on-behalf", |r| r
            .with_extension(inbound_token()))
        .await,
        StatusCode::UNAUTHORIZED
    );
    assert_last_sent(&api, 3, "Bearer inbound-token");
    // ... and accepted when the callee accepts it.
    api.also_accept("inbound-token");
    assert_eq!(
        get(&client, &api, "/on-behalf", |r| r
            .with_extension(inbound_token()))
        .await,
        StatusCode::OK
    );
    assert_eq!(server.requests(), 1);
    assert_eq!(tokens.metrics().forced_refreshes, 0);
}

#[tokio::test]
async fn reqwest_middleware_retries_only_an_invalid_token_refusal() {
    let (server, api, tokens, client) = started().await;
    tokens.token().await.expect("warm-up token");
    server.revoke_issued();
    // 401 for other reasons: a new token would not help, so none is fetched.
    for challenge in [
        "Bearer realm=\"api\", error=\"invalid_request\"",
        "Bearer realm=\"api\"",
        "Basic realm=\"api\"",
    ] {
        api.set_challenge(challenge);
        assert_eq!(
            get(&client, &api, "/orders", |r| r).await,
            StatusCode::UNAUTHORIZED,
            "{challenge}"
        );
    }
    assert_eq!(api.calls(), 3, "retried");
    assert_eq!(server.requests(), 1);
    assert_eq!(tokens.metrics().forced_refreshes, 0);
    // The scheme is case-insensitive and a parameter value a token or a quoted string
    // (RFC 7235 §2.1).
    for (i, challenge) in [
        "bearer error=\"invalid_token\"",
        "Bearer realm=\"api\", error=invalid_token",
    ]
    .into_iter()
    .enumerate()
    {
        api.set_challenge(challenge);
        server.revoke_issued();
        assert_eq!(
            get(&client, &api, "/orders", |r| r).await,
            StatusCode::OK,
            "{challenge}"
        );
        assert_eq!(server.requests(), 2 + i, "{challenge}");
        assert_eq!(api.calls(), 5 + 2 * i, "{challenge}");
    }
}

#[tokio::test]
async fn reqwest_middleware_returns_token_errors() {
    let server = token_server().await;
    let api = ResourceServer::start(&server).await;
    server.set_reply(Reply::oauth("invalid_client"));
    let sent = reqwest_client(&manager(&server), &api)
        .get(format!("{}/orders", api.url()))
        .send()
        .await;
    let err = match sent {
        Err(reqwest_middleware::Error::Middleware(err)) => err,
        other => panic!("not a middleware error (no token expected): {other:?}"),
    };
    let err = err.downcast_ref::<Error>().expect("an s2s_auth::Error");
    assert_eq!(err.code(), Some(Code::InvalidClient));
    assert_eq!(api.calls(), 0);
}
