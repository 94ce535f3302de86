//! The calling side: get access tokens with the client credentials grant, cache them, refresh
//! them ahead of expiry.
//!
//! ```no_run
//! # async fn run() -> Result<(), s2s_auth::Error> {
//! use s2s_auth::token::{ClientAuth, ClientCredentials, TokenManager, TokenSource};
//!
//! let tokens = TokenManager::new(
//!     ClientCredentials::discover(
//!         "https://auth.example.com",
//!         "billing-service",
//!         ClientAuth::SecretBasic(std::env::var("CLIENT_SECRET").unwrap().into()),
//!     )
//!     .scope("orders:read"),
//! )?;
//! let token = tokens.token().await?; // fetched once, then served from memory
//! # let _ = token; Ok(()) }
//! ```
//!
//! Send tokens with [`AuthorizeLayer`](crate::layer::AuthorizeLayer) (tower, hyper) or the
//! reqwest middleware (feature `reqwest`), each bound to the origins the token is for.
//!
//! Two [`Dialect`]s: RFC 6749's form (the default, for any OAuth 2.0 server) and the Auth Service
//! JSON dialect, for a server that takes only `{"grantType", "clientId", "clientSecret",
//! "scope"}` and answers `{"accessToken", "expiresIn", "tokenType", "scope"}`:
//!
//! ```no_run
//! # async fn run() -> Result<(), s2s_auth::Error> {
//! use s2s_auth::token::{ClientAuth, ClientCredentials, Dialect, TokenManager, TokenSource};
//!
//! let tokens = TokenManager::new(
//!     ClientCredentials::new(
//!         "https://api.example.com/auth/token",
//!         "val_svc_client_a1b2c3",
//!         ClientAuth::SecretPost(std::env::var("CLIENT_SECRET").unwrap().into()),
//!     )
//!     .dialect(Dialect::Json)
//!     .scope("workflow:read"),
//! )?;
//! # let _ = tokens.token().await?; Ok(()) }
//! ```
//!
//! Errors read alike in both: the OAuth `error`, its description and the stable `AUTH_1xx`
//! [`Code`](crate::Code), which decides whether the error is permanent (`AUTH_101`–`AUTH_104`:
//! fix the configuration or the account) or transient (`AUTH_106`, after its `Retry-After`).
//!
//! Whatever the token endpoint answers, nothing panics and nothing runs away: lifetimes are
//! clamped to [`RefreshPolicy::min_lifetime`]..[`RefreshPolicy::max_lifetime`] (negative or
//! non-numeric ones are an error), requests are spaced by at least
//! [`RefreshPolicy::min_fetch_interval`], redirects of token requests are never followed, and a
//! 2xx body that is not a token response is never quoted, in either dialect.

use std::{future::Future, pin::Pin, sync::Arc};

use http::HeaderValue;

pub use crate::bearer::BearerToken;
use crate::error::Error;

mod client_credentials;
mod manager;
#[cfg(feature = "redis")]
pub mod redis;

#[cfg(feature = "redis")]
pub use self::redis::RedisCache;
/// The token endpoint's dialects, defined with the other wire types in [`oauth`](crate::oauth).
pub use crate::oauth::Dialect;
pub(crate) use client_credentials::jwt_lifetime;
pub use client_credentials::{
    ClientAuth, ClientCredentials, MAX_EXPIRES_IN, SigningKey, TokenResponse,
};
pub use manager::{RefreshPolicy, TokenManager, TokenMetrics};

/// The token type of the calling side, under its former name: one type for a bearer value
/// now, [`BearerToken`].
#[deprecated(note = "renamed `BearerToken` (one type for a bearer token, inbound and outbound)")]
pub type AccessToken = BearerToken;

/// A future returned by [`TokenSource::token`].
pub type TokenFuture<'a> = Pin<Box<dyn Future<Output = Result<BearerToken, Error>> + Send + 'a>>;

/// Where outbound requests get their bearer tokens.
pub trait TokenSource: Send + Sync + 'static {
    /// A token that is valid now, without waiting, when one is held (the warm path: no lock,
    /// no I/O).
    fn current(&self) -> Option<BearerToken>;

    /// The `Authorization` value of [`TokenSource::current`]. Override it when the header can
    /// be handed out more cheaply than the token (the hot path of the layers).
    fn current_header(&self) -> Option<HeaderValue> {
        self.current().map(|token| token.header_value().clone())
    }

    /// A valid token, fetched when none is held.
    fn token(&self) -> TokenFuture<'_>;

    /// Tells the source that a callee refused `rejected` (401 `invalid_token`): the next
    /// [`TokenSource::token`] fetches a new one, unless `rejected` was replaced already.
    fn invalidate(&self, rejected: &BearerToken);
}

impl<T: TokenSource> TokenSource for Arc<T> {
    fn current(&self) -> Option<BearerToken> {
        (**self).current()
    }

    fn current_header(&self) -> Option<HeaderValue> {
        (**self).current_header()
    }

    fn token(&self) -> TokenFuture<'_> {
        (**self).token()
    }

    fn invalidate(&self, rejected: &BearerToken) {
        (**self).invalidate(rejected)
    }
}
