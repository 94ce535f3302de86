//! `AuthorizeLayer` over a hyper-util client, over real HTTP on 127.0.0.1: a [`TokenServer`]
//! issues tokens and a [`ResourceServer`] accepts only the latest one issued. The layer sends
//! the service's token, leaves a request's own `Authorization` alone, forwards the inbound
//! caller's token, and returns token errors as the service's error.
//!
//! [`TokenServer`]: s2s_tests::token_server::TokenServer

use axum::{
    body::Bytes,
    http::{HeaderValue, Request, StatusCode, header::AUTHORIZATION},
};
use http_body_util::Empty;
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use s2s_auth::{AuthorizeLayer, Code, Error, ErrorKind};
use s2s_tests::{
    outbound::{inbound_token, manager, token_server},
    token_server::{Reply, ResourceServer},
};
use tower::{ServiceBuilder, ServiceExt as _};

type HyperClient = Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>;

fn hyper_client() -> HyperClient {
    Client::builder(TokioExecutor::new()).build_http()
}

fn get(url: String) -> Request<Empty<Bytes>> {
    Request::get(url).body(Empty::new()).unwrap()
}

#[tokio::test]
async fn authorize_layer_sends_the_token_over_a_hyper_client() {
    let server = token_server().await;
    let api = ResourceServer::start(&server).await;
    let tokens = manager(&server);
    let client = ServiceBuilder::new()
        .layer(AuthorizeLayer::new(tokens.clone()).allow_origin(api.url()))
        .service(hyper_client());

    // Cold: the first call fetches; then warm.
    for i in 0..10 {
        let response = client
            .clone()
            .oneshot(get(format!("{}/orders/{i}", api.url())))
            .await
            .expect("call");
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!(server.requests(), 1);
    let expected = format!("Bearer {}", server.latest_token().unwrap());
    assert_eq!(api.authorizations(), vec![Some(expected); 10]);
    assert!(tokens.metrics().warm_hits >= 9);

    // A request with its own Authorization header is sent as it is.
    let mut own = get(format!("{}/own", api.url()));
    own.headers_mut().insert(
        AUTHORIZATION,
        HeaderValue::from_static("Bearer caller-chosen"),
    );
    let response = client.clone().oneshot(own).await.expect("call");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        api.authorizations().last().unwrap().as_deref(),
        Some("Bearer caller-chosen")
    );

    // Forwarding: the inbound caller's token instead of the service's.
    api.also_accept("inbound-token");
    let mut forwarded = get(format!("{}/on-behalf", api.url()));
    forwarded.extensions_mut().insert(inbound_token());
    let response = client.clone().oneshot(forwarded).await.expect("call");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        api.authorizations().last().unwrap().as_deref(),
        Some("Bearer inbound-token")
    );
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn authorize_layer_forwarding_needs_no_service_token() {
    let server = token_server().await;
    let api = ResourceServer::start(&server).await;
    api.also_accept("inbound-token");
    let client = ServiceBuilder::new()
        .layer(AuthorizeLayer::new(manager(&server)).allow_origin(api.url()))
        .service(hyper_client());
    let mut forwarded = get(format!("{}/on-behalf", api.url()));
    forwarded.extensions_mut().insert(inbound_token());
    let response = client.oneshot(forwarded).await.expect("call");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        api.authorizations(),
        vec![Some("Bearer inbound-token".to_owned())]
    );
    assert_eq!(server.requests(), 0, "a service token was fetched");
}

#[tokio::test]
async fn authorize_layer_returns_token_errors_as_the_service_error() {
    let server = token_server().await;
    let api = ResourceServer::start(&server).await;
    server.set_reply(Reply::oauth("invalid_client"));
    let client = ServiceBuilder::new()
        .layer(AuthorizeLayer::new(manager(&server)).allow_origin(api.url()))
        .service(hyper_client());
    let err = client
        .oneshot(get(format!("{}/orders", api.url())))
        .await
        .expect_err("no token");
    let err = err
        .downcast_ref::<Error>()
        .unwrap_or_else(|| panic!("not an s2s_auth::Error: {err}"));
    assert_eq!(err.kind(), ErrorKind::Config);
    assert_eq!(err.code(), Some(Code::InvalidClient));
    assert_eq!(api.calls(), 0, "sent without a token");
}
