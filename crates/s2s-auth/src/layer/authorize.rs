//! [`AuthorizeLayer`]: attach `Authorization: Bearer …` to outbound requests.
//!
//! ```
//! use http::Request;
//! use s2s_auth::{layer::AuthorizeLayer, token::{BearerToken, TokenFuture, TokenSource}};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! // Any `TokenSource`; usually a `TokenManager` for a client-credentials grant.
//! #[derive(Clone)]
//! struct Fixed(BearerToken);
//! impl TokenSource for Fixed {
//!     fn current(&self) -> Option<BearerToken> { Some(self.0.clone()) }
//!     fn token(&self) -> TokenFuture<'_> { Box::pin(async move { Ok(self.0.clone()) }) }
//!     fn invalidate(&self, _: &BearerToken) {}
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower::BoxError> {
//! let client = ServiceBuilder::new()
//!     .layer(AuthorizeLayer::new(Fixed(BearerToken::new("abc")?)).allow_origin("https://orders.internal"))
//!     .service(service_fn(|request: Request<()>| async move {
//!         // Stands in for a hyper client: answers with the header it got.
//!         let sent = request.headers()["authorization"].clone();
//!         Ok::<_, std::convert::Infallible>(http::Response::new(sent))
//!     }));
//! let request = Request::get("https://orders.internal/orders").body(())?;
//! let sent = client.clone().oneshot(request).await?;
//! assert_eq!(sent.body(), "Bearer abc");
//!
//! // Another origin gets nothing: the request is refused, never sent.
//! let elsewhere = Request::get("https://evil.example/").body(())?;
//! let err = client.oneshot(elsewhere).await.unwrap_err();
//! assert!(err.to_string().contains("not for that origin"), "{err}");
//! # Ok(()) }
//! ```
//!
//! # Destinations
//!
//! Tokens are bound to the origins they are for: every request must go to an origin named with
//! [`AuthorizeLayer::allow_origin`] (`scheme://host[:port]`, compared with the default port of
//! the scheme filled in). A request to any other origin is **refused** with an
//! [`Error`] of kind [`Config`](crate::ErrorKind::Config), whatever headers it carries: it is not
//! sent, not even without a token, since reaching a host the layer was not configured for is a
//! configuration fault or a redirect to somewhere else. A layer with no allowed origin refuses
//! every request (check it at start-up with [`AuthorizeLayer::check`]). Plain `http://` origins
//! are accepted for loopback hosts only, unless [`AuthorizeLayer::allow_insecure_http`]. The
//! same binding applies to a forwarded inbound token. Requests whose URI is only a path (tonic's
//! generated clients, whose `Channel` adds the origin) need [`AuthorizeLayer::relative_to`].
//!
//! # Redirects
//!
//! Put tower-http's `FollowRedirect` **around** this layer (`ServiceBuilder::new()
//! .layer(FollowRedirectLayer::new()).layer(AuthorizeLayer::new(..))`): every hop then passes
//! through this layer again, so a redirect to an origin that is not allowed fails with the error
//! above whatever the redirect policy keeps, and the token is never re-attached for it. (Its
//! `Standard` policy also drops `Authorization` on cross-origin hops, through
//! `FilterCredentials`; it does not carry request extensions over, so a redirected forwarded
//! call gets the service's own token on an allowed origin.) Placed *inside* this layer,
//! `FollowRedirect` alone decides what the next hop carries: never use it there with a policy
//! that lacks `FilterCredentials`.
//!
//! # Headers
//!
//! A request that already has an `Authorization` header is sent as it is (to an allowed origin).
//! A request whose extensions hold a [`BearerToken`] (the token an inbound request carried, as
//! `VerifyLayer` stores it) is sent with that token instead of the service's own: for calls
//! made on the caller's behalf. Token errors come back as the service's error ([`BoxError`]).
//!
//! # Refused tokens
//!
//! When the callee refuses the service's own token as `invalid_token` (HTTP 401, or gRPC
//! UNAUTHENTICATED, `grpc-status: 16`, with the `WWW-Authenticate` challenge in the response
//! headers, as a trailers-only gRPC refusal carries it), the layer tells the [`TokenSource`]
//! ([`TokenSource::invalidate`]): the next request gets a new token, fetched once for all
//! waiting callers. The refused request itself is not replayed (its body is gone); a caller
//! that retries, as gRPC clients may, sends the new token. This works as well on a
//! `tonic::transport::Channel`:
//!
//! ```no_run
//! # async fn run(tokens: s2s_auth::token::TokenManager) -> Result<(), Box<dyn std::error::Error>> {
//! use s2s_auth::AuthorizeLayer;
//! use tower::ServiceBuilder;
//!
//! let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:50051")
//!     .connect()
//!     .await?;
//! let authorized = ServiceBuilder::new()
//!     .layer(AuthorizeLayer::new(tokens).relative_to("http://127.0.0.1:50051"))
//!     .service(channel);
//! let mut health = tonic_health::pb::health_client::HealthClient::new(authorized);
//! # let _ = &mut health; Ok(()) }
//! ```

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use http::{
    HeaderValue, Request, Response,
    header::{AUTHORIZATION, Entry},
};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::define_inner_service_accessors;
use crate::{
    bearer::BearerToken, destination::Destinations, error::Error, rejection::refuses_token,
    token::TokenSource,
};

/// The error type of [`Authorize`]: the inner service's error or a token [`Error`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A tower layer that sets `Authorization: Bearer …` from a [`TokenSource`], for the origins
/// it is allowed to send them to. See the [module docs](self).
#[derive(Clone, Debug)]
pub struct AuthorizeLayer<T> {
    source: T,
    destinations: Arc<Destinations>,
}

/// How the layer names itself in its errors.
const LAYER: &str = "AuthorizeLayer";

impl<T> AuthorizeLayer<T> {
    /// Attaches tokens from `source` to requests for the origins then named with
    /// [`AuthorizeLayer::allow_origin`]; with none, every request is refused.
    pub fn new(source: T) -> Self {
        AuthorizeLayer {
            source,
            destinations: Arc::default(),
        }
    }

    /// Allows requests to `origin` (`https://host` or `https://host:port`; call again for
    /// several). A value that is not an origin makes every request fail with an error that says
    /// so (and [`AuthorizeLayer::check`] report it).
    pub fn allow_origin(mut self, origin: impl AsRef<str>) -> Self {
        Arc::make_mut(&mut self.destinations).allow(origin.as_ref());
        self
    }

    /// Allows plain `http://` origins to hosts that are not loopback. Off by default: anyone on
    /// the path can read a token sent over plain http.
    pub fn allow_insecure_http(mut self) -> Self {
        Arc::make_mut(&mut self.destinations).allow_insecure_http();
        self
    }

    /// Requests whose URI has no scheme and authority (a path, as tonic's generated clients
    /// send) go to `origin`, which is allowed too.
    pub fn relative_to(mut self, origin: impl AsRef<str>) -> Self {
        Arc::make_mut(&mut self.destinations).relative_to(origin.as_ref());
        self
    }

    /// Whether the configuration can send anything: at least one valid origin, none plain http
    /// unless allowed. Call it at start-up to fail early; requests meet the same error.
    pub fn check(&self) -> Result<(), Error> {
        self.destinations.validate(LAYER)
    }
}

impl<S, T: Clone> Layer<S> for AuthorizeLayer<T> {
    type Service = Authorize<S, T>;

    fn layer(&self, inner: S) -> Authorize<S, T> {
        Authorize {
            inner,
            source: self.source.clone(),
            destinations: self.destinations.clone(),
        }
    }
}

/// The service of [`AuthorizeLayer`]: sets `Authorization`, then calls the inner service.
#[derive(Clone, Debug)]
pub struct Authorize<S, T> {
    inner: S,
    source: T,
    destinations: Arc<Destinations>,
}

impl<S, T> Authorize<S, T> {
    /// Wraps `inner` with the token source and allowed origins of `layer`.
    pub fn new(inner: S, layer: &AuthorizeLayer<T>) -> Self
    where
        T: Clone,
    {
        layer.layer(inner)
    }

    define_inner_service_accessors!();
}

/// How a request gets its header, decided before any waiting: `None` when a token must be
/// fetched first, else the service's own header when the request carries it (to invalidate
/// it if refused; a header set by the caller or a forwarded token is not the source's).
fn authorize_now<B>(
    request: &mut Request<B>,
    source: &impl TokenSource,
) -> Option<Option<HeaderValue>> {
    let forwarded = request
        .extensions()
        .get::<BearerToken>()
        .map(|token| token.header_value().clone());
    // One lookup of the header, whether it is there or not.
    let Entry::Vacant(slot) = request.headers_mut().entry(AUTHORIZATION) else {
        return Some(None);
    };
    if let Some(forwarded) = forwarded {
        slot.insert(forwarded);
        return Some(None);
    }
    let value = source.current_header()?;
    slot.insert(value.clone());
    Some(Some(value))
}

/// The service's own token as sent, and where to report it refused.
struct Sent<T> {
    source: T,
    header: HeaderValue,
}

impl<T: TokenSource> Sent<T> {
    fn new(source: &T, header: Option<HeaderValue>) -> Option<Self>
    where
        T: Clone,
    {
        header.map(|header| Sent {
            source: source.clone(),
            header,
        })
    }

    fn check<RB>(self, response: &Response<RB>) {
        if refuses_token(response.status(), response.headers())
            && let Some(token) = BearerToken::from_header(&self.header)
        {
            self.source.invalidate(&token);
        }
    }
}

impl<S, T, B, RB> Service<Request<B>> for Authorize<S, T>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    T: TokenSource + Clone,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, B, T>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        if let Err(error) = self.destinations.check_uri(LAYER, request.uri()) {
            tracing::warn!(%error, "outbound request refused");
            return ResponseFuture {
                state: State::Refused { error: Some(error) },
            };
        }
        if let Some(own) = authorize_now(&mut request, &self.source) {
            return ResponseFuture {
                state: State::Sending {
                    sent: Sent::new(&self.source, own),
                    future: self.inner.call(request),
                },
            };
        }
        // Cold: no token held. Take the ready service and leave a clone (tower's pattern).
        let clone = self.inner.clone();
        let service = std::mem::replace(&mut self.inner, clone);
        let source = self.source.clone();
        ResponseFuture {
            state: State::Fetching {
                token: Box::pin({
                    let source = source.clone();
                    async move { source.token().await }
                }),
                source: Some(source),
                service: Some(service),
                request: Some(request),
            },
        }
    }
}

type TokenFetch = Pin<Box<dyn Future<Output = Result<BearerToken, Error>> + Send>>;

pin_project! {
    /// The future of [`Authorize`]: the inner service's, or a token fetch first, or the
    /// refusal of a request to an origin that is not allowed.
    pub struct ResponseFuture<S, B, T>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<S, B, T>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B, T>
    where
        S: Service<Request<B>>,
    {
        Sending { #[pin] future: S::Future, sent: Option<Sent<T>> },
        Refused { error: Option<Error> },
        Fetching {
            token: TokenFetch,
            source: Option<T>,
            service: Option<S>,
            request: Option<Request<B>>,
        },
    }
}

/// The future of [`Authorize`], under its former name.
#[deprecated(note = "renamed `layer::authorize::ResponseFuture`")]
pub type AuthorizeFuture<S, B, T> = ResponseFuture<S, B, T>;

impl<S, B, T> fmt::Debug for ResponseFuture<S, B, T>
where
    S: Service<Request<B>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResponseFuture")
    }
}

impl<S, B, T, RB> Future for ResponseFuture<S, B, T>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
    T: TokenSource + Clone,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let (future, sent) = match this.state.as_mut().project() {
                StateProj::Sending { future, sent } => {
                    let response = ready!(future.poll(cx)).map_err(Into::into)?;
                    if let Some(sent) = sent.take() {
                        sent.check(&response);
                    }
                    return Poll::Ready(Ok(response));
                }
                StateProj::Refused { error } => {
                    let error = error.take().expect("polled after completion");
                    return Poll::Ready(Err(error.into()));
                }
                StateProj::Fetching {
                    token,
                    source,
                    service,
                    request,
                } => {
                    let token = ready!(token.as_mut().poll(cx))?;
                    let mut request = request.take().expect("polled after completion");
                    let header = token.header_value().clone();
                    request.headers_mut().insert(AUTHORIZATION, header.clone());
                    let future = service
                        .take()
                        .expect("polled after completion")
                        .call(request);
                    let source = source.take().expect("polled after completion");
                    (future, Some(Sent { source, header }))
                }
            };
            this.state.set(State::Sending { future, sent });
        }
    }
}
