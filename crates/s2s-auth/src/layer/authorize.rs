//! [`AuthorizeLayer`]: attach `Authorization: Bearer …` to outbound requests.
//!
//! ```
//! use http::Request;
//! use s2s_auth::{layer::AuthorizeLayer, token::{AccessToken, TokenFuture, TokenSource}};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! // Any `TokenSource`; usually a `TokenManager` for a client-credentials grant.
//! #[derive(Clone)]
//! struct Fixed(AccessToken);
//! impl TokenSource for Fixed {
//!     fn current(&self) -> Option<AccessToken> { Some(self.0.clone()) }
//!     fn token(&self) -> TokenFuture<'_> { Box::pin(async move { Ok(self.0.clone()) }) }
//!     fn invalidate(&self, _: &AccessToken) {}
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower::BoxError> {
//! let client = ServiceBuilder::new()
//!     .layer(AuthorizeLayer::new(Fixed(AccessToken::new("abc")?)))
//!     .service(service_fn(|request: Request<()>| async move {
//!         // Stands in for a hyper client.
//!         Ok::<_, std::convert::Infallible>(request.headers()["authorization"].clone())
//!     }));
//! let sent = client.oneshot(Request::new(())).await?;
//! assert_eq!(sent, "Bearer abc");
//! # Ok(()) }
//! ```
//!
//! A request that already has an `Authorization` header is sent as it is. A request whose
//! extensions hold a [`BearerToken`] (the token an inbound request carried, as `VerifyLayer`
//! stores it) is sent with that token instead of the service's own: for calls made on the
//! caller's behalf. Token errors come back as the service's error ([`BoxError`]).

use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use http::{Request, header::AUTHORIZATION};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::{
    bearer::BearerToken,
    error::Error,
    token::{AccessToken, TokenSource},
};

/// The error type of [`Authorize`]: the inner service's error or a token [`Error`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A tower layer that sets `Authorization: Bearer …` from a [`TokenSource`]. See the
/// [module docs](self).
#[derive(Clone, Debug)]
pub struct AuthorizeLayer<T> {
    source: T,
}

impl<T> AuthorizeLayer<T> {
    /// Attaches tokens from `source`.
    pub fn new(source: T) -> Self {
        AuthorizeLayer { source }
    }
}

impl<S, T: Clone> Layer<S> for AuthorizeLayer<T> {
    type Service = Authorize<S, T>;

    fn layer(&self, inner: S) -> Authorize<S, T> {
        Authorize {
            inner,
            source: self.source.clone(),
        }
    }
}

/// The service of [`AuthorizeLayer`].
#[derive(Clone, Debug)]
pub struct Authorize<S, T> {
    inner: S,
    source: T,
}

/// How a request gets its header, decided before any waiting.
fn authorize_now<B>(request: &mut Request<B>, source: &impl TokenSource) -> bool {
    if request.headers().contains_key(AUTHORIZATION) {
        return true;
    }
    let value = match request.extensions().get::<BearerToken>() {
        Some(forwarded) => forwarded.header_value(),
        None => match source.current_header() {
            Some(value) => value,
            None => return false,
        },
    };
    request.headers_mut().insert(AUTHORIZATION, value);
    true
}

impl<S, T, B> Service<Request<B>> for Authorize<S, T>
where
    S: Service<Request<B>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    T: TokenSource + Clone,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = AuthorizeFuture<S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        if authorize_now(&mut request, &self.source) {
            return AuthorizeFuture {
                state: State::Sending {
                    future: self.inner.call(request),
                },
            };
        }
        // Cold: no token held. Take the ready service and leave a clone (tower's pattern).
        let clone = self.inner.clone();
        let service = std::mem::replace(&mut self.inner, clone);
        let source = self.source.clone();
        AuthorizeFuture {
            state: State::Fetching {
                token: Box::pin(async move { source.token().await }),
                service: Some(service),
                request: Some(request),
            },
        }
    }
}

type TokenFetch = Pin<Box<dyn Future<Output = Result<AccessToken, Error>> + Send>>;

pin_project! {
    /// The future of [`Authorize`].
    pub struct AuthorizeFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<S, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B>
    where
        S: Service<Request<B>>,
    {
        Sending { #[pin] future: S::Future },
        Fetching {
            token: TokenFetch,
            service: Option<S>,
            request: Option<Request<B>>,
        },
    }
}

impl<S, B> fmt::Debug for AuthorizeFuture<S, B>
where
    S: Service<Request<B>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuthorizeFuture")
    }
}

impl<S, B> Future for AuthorizeFuture<S, B>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let future = match this.state.as_mut().project() {
                StateProj::Sending { future } => return future.poll(cx).map_err(Into::into),
                StateProj::Fetching {
                    token,
                    service,
                    request,
                } => {
                    let token = ready!(token.as_mut().poll(cx))?;
                    let mut request = request.take().expect("polled after completion");
                    request
                        .headers_mut()
                        .insert(AUTHORIZATION, token.header_value().clone());
                    service
                        .take()
                        .expect("polled after completion")
                        .call(request)
                }
            };
            this.state.set(State::Sending { future });
        }
    }
}
