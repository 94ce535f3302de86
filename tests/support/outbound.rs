//! The outbound suites' common setup (`tests/outbound_*.rs`): the billing service's grant
//! against a [`TokenServer`], its manager, and the inbound caller's token some tests forward.

use std::time::Duration;

use axum::http::HeaderValue;
use s2s_auth::{
    BearerToken, Error,
    token::{ClientAuth, ClientCredentials, TokenManager, TokenSource as _},
};
use tokio::time::advance;

use crate::{
    logs::logs,
    token_server::{Reply, TokenServer},
};

/// The calling service's client id.
pub const CLIENT_ID: &str = "billing-service";
/// Its client secret: never in a log line, `Debug` or `Display`.
pub const SECRET: &str = "s3cret-Q7x!never-logged";

/// A [`TokenServer`], with the binary's [`logs`] captured first.
pub async fn token_server() -> TokenServer {
    logs();
    TokenServer::start().await
}

/// The grant against `server` for [`CLIENT_ID`], `client_secret_basic` with [`SECRET`].
pub fn grant(server: &TokenServer) -> ClientCredentials {
    ClientCredentials::new(
        server.token_url(),
        CLIENT_ID,
        ClientAuth::SecretBasic(SECRET.into()),
    )
}

/// A [`TokenManager`] of [`grant`].
pub fn manager(server: &TokenServer) -> TokenManager {
    TokenManager::new(grant(server)).expect("a valid grant")
}

/// After one rate-limited cold fetch with `Retry-After: secs`, the endpoint now answering
/// tokens: on a paused clock, `tokens` does not ask again before `secs` seconds (each error
/// meanwhile passes `still_refused`), and does after.
pub async fn assert_asks_again_only_after(
    server: &TokenServer,
    tokens: &TokenManager,
    secs: u64,
    still_refused: impl Fn(&Error),
) {
    server.set_reply(Reply::Token);
    for _ in 1..secs {
        advance(Duration::from_secs(1)).await;
        let again = tokens.token().await.expect_err("within Retry-After");
        still_refused(&again);
        assert_eq!(server.requests(), 1, "asked again before Retry-After");
    }
    advance(Duration::from_secs(1)).await;
    tokens.token().await.expect("asked again after Retry-After");
    assert_eq!(server.requests(), 2);
}

/// The inbound caller's token (`Bearer inbound-token`), as `VerifyLayer` leaves it in a
/// request's extensions for forwarding.
pub fn inbound_token() -> BearerToken {
    BearerToken::from_header(&HeaderValue::from_static("Bearer inbound-token")).unwrap()
}
