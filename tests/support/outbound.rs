//! The outbound suites' common setup (`tests/outbound_*.rs`): the billing service's grant
//! against a [`TokenServer`], its manager, and the inbound caller's token some tests forward.

use axum::http::HeaderValue;
use s2s_auth::{
    BearerToken,
    token::{ClientAuth, ClientCredentials, TokenManager},
};

use crate::{logs::logs, token_server::TokenServer};

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
    ClientCredentials::new(server.token_url(), CLIENT_ID)
        .auth(ClientAuth::SecretBasic(SECRET.into()))
}

/// A [`TokenManager`] of [`grant`].
pub fn manager(server: &TokenServer) -> TokenManager {
    TokenManager::new(grant(server)).expect("a valid grant")
}

/// The inbound caller's token (`Bearer inbound-token`), as `VerifyLayer` leaves it in a
/// request's extensions for forwarding.
pub fn inbound_token() -> BearerToken {
    BearerToken::from_header(&HeaderValue::from_static("Bearer inbound-token")).unwrap()
}
