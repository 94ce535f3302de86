//! `grpc_service` as its binary runs it (the same setup code and server function), called by
//! tonic-health's stock client over real sockets: SERVING with a token that has the scope,
//! UNAUTHENTICATED without one, PERMISSION_DENIED without the scope, UNAVAILABLE while the
//! issuer's keys cannot be loaded.

use s2s_auth_testkit::{TestIssuer, keys::claims};
use s2s_examples::setup;
use serde_json::json;
use tonic::{Code, metadata::MetadataValue, transport::Channel};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

const AUDIENCE: &str = "orders-api";

/// Starts the example as set up by `flags` (each `(flag, value)`), once its keys are loaded if
/// `keys_loaded`; a client of it.
async fn grpc_service(flags: &[(&str, &str)], keys_loaded: bool) -> HealthClient<Channel> {
    let args = flags
        .iter()
        .flat_map(|&(flag, value)| [flag.to_owned(), value.to_owned()])
        .chain(["--listen".to_owned(), "127.0.0.1:0".to_owned()]);
    let setup = setup::service(args, &|_| None).expect("the service's setup");
    if keys_loaded {
        setup.verifier.load_keys().await.expect("the issuer's keys");
    }
    let listener = setup::listen(&setup.listen).await.expect("listen");
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(s2s_examples::serve_grpc_health(
        listener,
        setup.verifier,
        setup.scopes,
    ));
    let channel = Channel::from_shared(url).unwrap().connect_lazy();
    HealthClient::new(channel)
}

/// The health check of the whole server, with `token` as its bearer token (if any).
async fn check(client: &mut HealthClient<Channel>, token: Option<&str>) -> Result<i32, Code> {
    let mut request = tonic::Request::new(HealthCheckRequest::default());
    if let Some(token) = token {
        let value: MetadataValue<_> = format!("Bearer {token}").parse().unwrap();
        request.metadata_mut().insert("authorization", value);
    }
    client
        .check(request)
        .await
        .map(|answer| answer.into_inner().status)
        .map_err(|status| status.code())
}

#[tokio::test]
async fn the_health_service_answers_by_token_and_scope() {
    let issuer = TestIssuer::builder().audience(AUDIENCE).start().await;
    let mut client = grpc_service(
        &[
            ("--issuer", issuer.url()),
            ("--audience", AUDIENCE),
            ("--require-scope", "orders:read"),
        ],
        true,
    )
    .await;
    let mut with_scope = claims(issuer.url(), AUDIENCE);
    with_scope["scope"] = json!("orders:read");
    let mut without_scope = claims(issuer.url(), AUDIENCE);
    without_scope["scope"] = json!("orders:write");

    assert_eq!(
        check(&mut client, Some(&issuer.token(with_scope))).await,
        Ok(ServingStatus::Serving as i32)
    );
    assert_eq!(check(&mut client, None).await, Err(Code::Unauthenticated));
    assert_eq!(
        check(&mut client, Some("not-a-jwt")).await,
        Err(Code::Unauthenticated)
    );
    assert_eq!(
        check(&mut client, Some(&issuer.token(without_scope))).await,
        Err(Code::PermissionDenied)
    );
}

#[tokio::test]
async fn without_the_issuers_keys_a_call_is_told_to_come_back() {
    // A key set URL on a port nothing listens on: the keys never load.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let jwks_url = format!("http://{}/jwks", closed.local_addr().unwrap());
    drop(closed);
    let issuer = TestIssuer::builder().audience(AUDIENCE).start().await;
    let mut client = grpc_service(
        &[
            ("--issuer", issuer.url()),
            ("--jwks-url", &jwks_url),
            ("--audience", AUDIENCE),
        ],
        false,
    )
    .await;
    let token = issuer.token(claims(issuer.url(), AUDIENCE));
    assert_eq!(
        check(&mut client, Some(&token)).await,
        Err(Code::Unavailable)
    );
}
