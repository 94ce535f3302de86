//! The reqwest integration (feature `reqwest`): [`AuthorizeMiddleware`], a
//! `reqwest_middleware` middleware that sends bearer tokens and, when the
//! callee refuses one as `invalid_token`, fetches a new one and retries once.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use s2s_auth::{middleware::AuthorizeMiddleware, token::{ClientAuth, ClientCredentials, TokenManager}};
//!
//! let tokens = TokenManager::new(
//!     ClientCredentials::new(
//!         "https://auth.example.com/oauth/token",
//!         "billing-service",
//!         ClientAuth::SecretBasic(std::env::var("CLIENT_SECRET")?.into()),
//!     )
//!     .scope("orders:read"),
//! )?;
//! let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
//!     .with(AuthorizeMiddleware::new(tokens).allow_origin("https://orders.internal"))
//!     .build();
//! let orders = client.get("https://orders.internal/orders").send().await?;
//! # let _ = orders; Ok(()) }
//! ```
//!
//! As with [`AuthorizeLayer`](crate::AuthorizeLayer) (see its
//! [destination rules](crate::layer::authorize#destinations)): tokens go only to the origins
//! named with [`AuthorizeMiddleware::allow_origin`], plain http only to loopback unless
//! [`AuthorizeMiddleware::allow_insecure_http`]; a request to any other origin fails with an
//! error of kind [`Config`](crate::ErrorKind::Config) and is not sent. A request with its own
//! `Authorization` header is left alone, and one whose extensions hold a [`BearerToken`] is sent
//! with that token (forwarding the inbound caller's token) and never retried with another.
//!
//! Redirects are followed inside the `reqwest::Client`, after this middleware: reqwest drops
//! `Authorization` when a redirect changes scheme, host or port, so the token never follows a
//! redirect to another origin. For none at all, build the client with
//! `redirect(reqwest::redirect::Policy::none())`.

use std::fmt;

use http::{Extensions, header::AUTHORIZATION};
use reqwest::{Request, Response};
use reqwest_middleware::{Middleware, Next, Result};

use crate::{bearer::BearerToken, destination::Destinations, error::Error, token::TokenSource};

/// The middleware. See the [module docs](self).
#[derive(Clone)]
pub struct AuthorizeMiddleware<T> {
    source: T,
    destinations: Destinations,
}

/// How the middleware names itself in its errors.
const MIDDLEWARE: &str = "AuthorizeMiddleware";

impl<T> AuthorizeMiddleware<T> {
    /// Sends tokens from `source` to the origins then named with
    /// [`AuthorizeMiddleware::allow_origin`]; with none, every request is refused.
    pub fn new(source: T) -> Self {
        AuthorizeMiddleware {
            source,
            destinations: Destinations::default(),
        }
    }

    /// Allows requests to `origin` (`https://host` or `https://host:port`; call again for
    /// several). A value that is not an origin makes every request fail with an error that says
    /// so (and [`AuthorizeMiddleware::check`] report it).
    pub fn allow_origin(mut self, origin: impl AsRef<str>) -> Self {
        self.destinations.allow(origin.as_ref());
        self
    }

    /// Allows plain `http://` origins to hosts that are not loopback. Off by default: anyone on
    /// the path can read a token sent over plain http.
    pub fn allow_insecure_http(mut self) -> Self {
        self.destinations.allow_insecure_http();
        self
    }

    /// Whether the configuration can send anything: at least one valid origin, none plain http
    /// unless allowed. Call it at start-up to fail early; requests meet the same error.
    pub fn check(&self) -> std::result::Result<(), Error> {
        self.destinations.validate(MIDDLEWARE)
    }
}

impl<T> fmt::Debug for AuthorizeMiddleware<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizeMiddleware")
            .field("destinations", &self.destinations)
            .finish_non_exhaustive()
    }
}

/// Whether the callee refused the token itself (RFC 6750 §3.1), so a new one may succeed.
fn refused_as_invalid_token(response: &Response) -> bool {
    crate::rejection::refuses_token(response.status(), response.headers())
}

#[async_trait::async_trait]
impl<T: TokenSource + Clone> Middleware for AuthorizeMiddleware<T> {
    async fn handle(
        &self,
        mut request: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> Result<Response> {
        if let Err(error) = self.destinations.check_url(MIDDLEWARE, request.url()) {
            tracing::warn!(%error, "outbound request refused");
            return Err(reqwest_middleware::Error::middleware(error));
        }
        if request.headers().contains_key(AUTHORIZATION) {
            return next.run(request, extensions).await;
        }
        if let Some(forwarded) = extensions.get::<BearerToken>() {
            request
                .headers_mut()
                .insert(AUTHORIZATION, forwarded.header_value().clone());
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
