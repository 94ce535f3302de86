//! A `reqwest_middleware` middleware (feature `reqwest`) that sends bearer tokens and, when the
//! callee refuses one as `invalid_token`, fetches a new one and retries once.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use s2s_auth::{reqwest::AuthorizeMiddleware, token::{ClientAuth, ClientCredentials, TokenManager}};
//!
//! let tokens = TokenManager::new(
//!     ClientCredentials::new("https://auth.example.com/oauth/token", "billing-service")
//!         .auth(ClientAuth::SecretBasic(std::env::var("CLIENT_SECRET")?.into()))
//!         .scope("orders:read"),
//! )?;
//! let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
//!     .with(AuthorizeMiddleware::new(tokens))
//!     .build();
//! let orders = client.get("https://orders.internal/orders").send().await?;
//! # let _ = orders; Ok(()) }
//! ```
//!
//! As with [`AuthorizeLayer`](crate::AuthorizeLayer): a request with its own `Authorization`
//! header is left alone, and one whose extensions hold a [`BearerToken`] is sent with that token
//! (forwarding the inbound caller's token) and never retried with another.

use std::fmt;

use ::reqwest::{Request, Response, StatusCode, header::WWW_AUTHENTICATE};
use http::{Extensions, header::AUTHORIZATION};
use reqwest_middleware::{Middleware, Next, Result};

use crate::{bearer::BearerToken, token::TokenSource};

/// The middleware. See the [module docs](self).
#[derive(Clone)]
pub struct AuthorizeMiddleware<T> {
    source: T,
}

impl<T> AuthorizeMiddleware<T> {
    /// Sends tokens from `source`.
    pub fn new(source: T) -> Self {
        AuthorizeMiddleware { source }
    }
}

impl<T> fmt::Debug for AuthorizeMiddleware<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuthorizeMiddleware")
    }
}

/// Whether the callee refused the token itself (RFC 6750 §3.1), so a new one may succeed. The
/// `error` value may be a quoted string or a bare token (RFC 7235 §2.1).
fn refused_as_invalid_token(response: &Response) -> bool {
    response.status() == StatusCode::UNAUTHORIZED
        && response
            .headers()
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.trim_start()
                    .get(..6)
                    .is_some_and(|s| s.eq_ignore_ascii_case("bearer"))
                    && (v.contains("error=\"invalid_token\"") || v.contains("error=invalid_token"))
            })
}

#[async_trait::async_trait]
impl<T: TokenSource + Clone> Middleware for AuthorizeMiddleware<T> {
    async fn handle(
        &self,
        mut request: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> Result<Response> {
        if request.headers().contains_key(AUTHORIZATION) {
            return next.run(request, extensions).await;
        }
        if let Some(forwarded) = extensions.get::<BearerToken>() {
            request
                .headers_mut()
                .insert(AUTHORIZATION, forwarded.header_value());
            return next.run(request, extensions).await;
        }
        let token = self
            .source
            .token()
            .await
            .map_err(reqwest_middleware::Error::middleware)?;
        request
            .headers_mut()
            .insert(AUTHORIZATION, token.header_value().clone());
        // A streaming body cannot be sent twice: such a request is not retried.
        let retry = request.try_clone();
        let response = next.clone().run(request, extensions).await?;
        let Some(mut retry) = retry.filter(|_| refused_as_invalid_token(&response)) else {
            return Ok(response);
        };
        self.source.invalidate(&token);
        let fresh = self
            .source
            .token()
            .await
            .map_err(reqwest_middleware::Error::middleware)?;
        tracing::debug!(
            url = %retry.url(),
            "callee refused the token as invalid_token; retrying once with a new one"
        );
        retry
            .headers_mut()
            .insert(AUTHORIZATION, fresh.header_value().clone());
        next.run(retry, extensions).await
    }
}
