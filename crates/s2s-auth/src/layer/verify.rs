//! [`VerifyLayer`]: verify the bearer token of every request.
//!
//! ```
//! use axum::{Router, routing::get, body::Body};
//! use http::{Request, StatusCode};
//! use s2s_auth::{Issuer, KeySet, Verified, Verifier, VerifyLayer};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let jwks = br#"{"keys":[{"kty":"EC","crv":"P-256","kid":"k1",
//! #   "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#;
//! let verifier = Verifier::builder()
//!     .issuer(Issuer::keys("https://auth.example.com", KeySet::from_jwks(jwks)?))
//!     .audience("orders-api")
//!     .build()?;
//! let app = Router::new()
//!     .route("/orders", get(|v: axum::Extension<Verified>| async move {
//!         format!("hello {:?}", v.standard().sub)
//!     }))
//!     .layer(VerifyLayer::new(verifier).realm("orders"));
//!
//! let response = app
//!     .oneshot(Request::get("/orders").body(Body::empty())?)
//!     .await?;
//! assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
//! assert_eq!(response.headers()["www-authenticate"], r#"Bearer realm="orders""#);
//! # Ok(()) }
//! ```
//!
//! A request passes when it carries exactly one `Authorization: Bearer <token>` header (the
//! scheme in any case) whose token the [`Verifier`] accepts; the layer then puts the
//! [`Verified`] claims and the raw [`BearerToken`] into the request extensions. Otherwise it is
//! answered, without reaching the inner service: 401 for a missing or invalid token, 503 with
//! `Retry-After` while the issuer's keys cannot be loaded (or those held are past their
//! maximum staleness, [`VerifierBuilder::max_stale`](crate::VerifierBuilder::max_stale)); a
//! gRPC request gets the same refusal as gRPC status 16 or 14 ([`rejection`](crate::rejection#grpc)). The
//! answer tells the caller the stable code and a short reason
//! ([`Reason::summary`](crate::Reason::summary)); the specifics go to the log.
//!
//! With the keys in memory, the layer does no I/O, takes no lock and boxes nothing. Only a
//! request that needs a key fetch (the first one, or a new `kid`) waits on a boxed future.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use bytes::Bytes;
use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::{Answer, ResponseBody, define_inner_service_accessors};
use crate::{
    bearer::BearerToken,
    claims::Verified,
    rejection::{Reason, Rejection, Responder},
    verify::{Pending, Verifier},
};

/// A tower layer that verifies bearer tokens with a [`Verifier`]. See the [module docs](self).
#[derive(Clone)]
pub struct VerifyLayer {
    config: Arc<Config>,
}

struct Config {
    verifier: Verifier,
    responder: Responder,
    /// The responder again, for the request extensions, when it is not the default: then
    /// `RequireScope` and the extractors answer with the same realm or handler.
    shared_responder: Option<Arc<Responder>>,
    optional: bool,
}

/// The [`Responder`] of the [`VerifyLayer`] a request passed, when customised.
#[derive(Clone)]
pub(crate) struct LayerResponder(pub(crate) Arc<Responder>);

/// Marks a request that passed an optional [`VerifyLayer`] without a token, so that extractors
/// can tell "no token" (401) from "no layer" (a server bug).
#[derive(Clone, Copy, Debug)]
pub(crate) struct PassedWithoutToken;

impl fmt::Debug for VerifyLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyLayer")
            .field("verifier", &self.config.verifier)
            .field("responder", &self.config.responder)
            .field("optional", &self.config.optional)
            .finish()
    }
}

impl VerifyLayer {
    /// Verifies every request's token with `verifier`.
    pub fn new(verifier: Verifier) -> Self {
        VerifyLayer {
            config: Arc::new(Config {
                verifier,
                responder: Responder::default(),
                shared_responder: None,
                optional: false,
            }),
        }
    }

    fn with(self, f: impl FnOnce(&mut Config)) -> Self {
        let mut config = Arc::try_unwrap(self.config).unwrap_or_else(|shared| Config {
            verifier: shared.verifier.clone(),
            responder: shared.responder.clone(),
            shared_responder: shared.shared_responder.clone(),
            optional: shared.optional,
        });
        f(&mut config);
        VerifyLayer {
            config: Arc::new(config),
        }
    }

    /// Lets requests without a bearer token through, with no claims in their extensions. A
    /// token that is present must still be valid.
    pub fn optional(self) -> Self {
        self.with(|c| c.optional = true)
    }

    /// The `realm` of the `WWW-Authenticate` challenge (default `"api"`).
    pub fn realm(self, realm: &str) -> Self {
        let responder = self.config.responder.clone().realm(realm);
        self.responder(responder)
    }

    /// Answers rejections with `handler` instead of the RFC 6750 default.
    pub fn on_rejection(
        self,
        handler: impl Fn(&Rejection) -> Response<Bytes> + Send + Sync + 'static,
    ) -> Self {
        let responder = self.config.responder.clone().handler(handler);
        self.responder(responder)
    }

    /// Answers rejections with `responder`.
    pub fn responder(self, responder: Responder) -> Self {
        self.with(|c| {
            c.shared_responder = Some(Arc::new(responder.clone()));
            c.responder = responder;
        })
    }
}

impl<S> Layer<S> for VerifyLayer {
    type Service = Verify<S>;

    fn layer(&self, inner: S) -> Verify<S> {
        Verify {
            inner,
            config: self.config.clone(),
        }
    }
}

/// The service of [`VerifyLayer`]: verifies the token, then calls the inner service.
#[derive(Clone)]
pub struct Verify<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S: fmt::Debug> fmt::Debug for Verify<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verify")
            .field("inner", &self.inner)
            .field("verifier", &self.config.verifier)
            .finish()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Verify<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    ReqBody: Send + 'static,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let config = &self.config;
        // The hot path: a token this thread verified lately, found by its bytes alone.
        if let Some((token, result)) = BearerToken::known(request.headers(), |token| {
            config.verifier.verify_recent(token)
        }) {
            return match result {
                Ok(verified) => self.pass(request, verified, token),
                Err(rejection) => ResponseFuture::ready_rejected(
                    config.responder.respond_to(&rejection, request.headers()),
                ),
            };
        }
        let token = match BearerToken::from_headers(request.headers()) {
            Ok(Some(token)) => token,
            Ok(None) if config.optional => {
                insert_responder(&mut request, config);
                request.extensions_mut().insert(PassedWithoutToken);
                return ResponseFuture::ready(self.inner.call(request));
            }
            Ok(None) => {
                let rejection =
                    Rejection::new(Reason::MissingToken, Reason::MissingToken.summary());
                return ResponseFuture::ready_rejected(self.reject(&rejection, &request));
            }
            Err(rejection) => {
                return ResponseFuture::ready_rejected(self.reject(&rejection, &request));
            }
        };
        match config.verifier.verify_now(token.as_str()) {
            Ok(verified) => self.pass(request, verified, token),
            Err(Pending::Rejected(rejection)) => ResponseFuture::ready_rejected(
                config.responder.respond_to(&rejection, request.headers()),
            ),
            Err(Pending::NeedKeys { .. }) => {
                // The rare path: the keys must be fetched. Take the service that was polled
                // ready and leave a clone in its place (tower's documented pattern).
                let clone = self.inner.clone();
                let service = std::mem::replace(&mut self.inner, clone);
                let verifier = config.verifier.clone();
                let verification = Box::pin(async move {
                    let verified = verifier.verify(token.as_str()).await?;
                    Ok((verified, token))
                });
                ResponseFuture {
                    state: State::Fetching {
                        verification,
                        service: Some(service),
                        request: Some(request),
                        config: self.config.clone(),
                    },
                }
            }
        }
    }
}

impl<S> Verify<S> {
    /// Wraps `inner` with the verification of `layer`.
    pub fn new(inner: S, layer: &VerifyLayer) -> Self {
        layer.layer(inner)
    }

    define_inner_service_accessors!();

    /// Calls the inner service with the verified token in the request's extensions.
    fn pass<ReqBody>(
        &mut self,
        mut request: Request<ReqBody>,
        verified: Verified,
        token: BearerToken,
    ) -> ResponseFuture<S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        insert_responder(&mut request, &self.config);
        insert(&mut request, verified, token);
        ResponseFuture::ready(self.inner.call(request))
    }

    fn reject<B>(&self, rejection: &Rejection, request: &Request<B>) -> Response<Bytes> {
        self.config.verifier.record(rejection, None);
        self.config
            .responder
            .respond_to(rejection, request.headers())
    }
}

fn insert_responder<B>(request: &mut Request<B>, config: &Config) {
    if let Some(responder) = &config.shared_responder {
        request
            .extensions_mut()
            .insert(LayerResponder(responder.clone()));
    }
}

fn insert<B>(request: &mut Request<B>, verified: Verified, token: BearerToken) {
    let extensions = request.extensions_mut();
    extensions.insert(verified);
    extensions.insert(token);
}

type Verification =
    Pin<Box<dyn Future<Output = Result<(Verified, BearerToken), Rejection>> + Send>>;

pin_project! {
    /// The future of [`Verify`]: ready at once (the inner service's future, or the refusal), or
    /// a key fetch first.
    pub struct ResponseFuture<S: Service<Request<ReqBody>>, ReqBody> {
        #[pin]
        state: State<S, ReqBody>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S: Service<Request<ReqBody>>, ReqBody> {
        Ready { #[pin] future: Answer<S::Future> },
        Fetching {
            verification: Verification,
            service: Option<S>,
            request: Option<Request<ReqBody>>,
            config: Arc<Config>,
        },
    }
}

impl<S, ReqBody> ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>>,
{
    fn ready(future: S::Future) -> Self {
        ResponseFuture {
            state: State::Ready {
                future: Answer::inner(future),
            },
        }
    }

    fn ready_rejected(response: Response<Bytes>) -> Self {
        ResponseFuture {
            state: State::Ready {
                future: Answer::rejected(response),
            },
        }
    }
}

impl<S, ReqBody, ResBody> Future for ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let next = match this.state.as_mut().project() {
                StateProj::Ready { future } => return future.poll(cx),
                StateProj::Fetching {
                    verification,
                    service,
                    request,
                    config,
                } => {
                    let result = ready!(verification.as_mut().poll(cx));
                    match result {
                        Ok((verified, token)) => {
                            let mut request = request.take().expect("polled after completion");
                            insert_responder(&mut request, config);
                            insert(&mut request, verified, token);
                            let mut service = service.take().expect("polled after completion");
                            Answer::inner(service.call(request))
                        }
                        Err(rejection) => {
                            let request = request.as_ref().expect("polled after completion");
                            Answer::rejected(
                                config.responder.respond_to(&rejection, request.headers()),
                            )
                        }
                    }
                }
            };
            this.state.set(State::Ready { future: next });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        convert::Infallible,
        sync::{Arc, Mutex},
    };

    use futures_util::FutureExt as _;
    use http::{HeaderValue, StatusCode, header::AUTHORIZATION};
    use jsonwebtoken::Algorithm;
    use s2s_auth_testkit::TestKey;
    use tower::{ServiceExt as _, service_fn};

    use super::*;
    use crate::{Issuer, KeySet};

    /// The status of a request with these `Authorization` values, and the token the service
    /// behind the layer was handed.
    fn answer(layer: &VerifyLayer, authorization: &[&str]) -> (StatusCode, Option<BearerToken>) {
        let handed = Arc::new(Mutex::new(None));
        let seen = handed.clone();
        let inner = service_fn(move |request: Request<()>| {
            *seen.lock().unwrap() = request.extensions().get::<BearerToken>().cloned();
            async { Ok::<_, Infallible>(Response::new(())) }
        });
        let mut request = Request::new(());
        for value in authorization {
            let value = HeaderValue::from_str(value).unwrap();
            request.headers_mut().append(AUTHORIZATION, value);
        }
        let response = layer
            .layer(inner)
            .oneshot(request)
            .now_or_never()
            .expect("keys held: ready at once")
            .unwrap();
        let token = handed.lock().unwrap().take();
        (response.status(), token)
    }

    /// A token this thread verified lately skips the scan of its characters, not the other
    /// checks of the header: the same answers as for any token.
    #[test]
    fn a_recent_token_still_needs_a_well_formed_header() {
        let key = TestKey::generate(Algorithm::ES256, "k1");
        let jwks = serde_json::to_vec(&key.jwks()).unwrap();
        let verifier = Verifier::builder()
            .issuer(Issuer::keys(
                "https://issuer",
                KeySet::from_jwks(&jwks).unwrap(),
            ))
            .audience("api")
            .build()
            .unwrap();
        let now = jsonwebtoken::get_current_timestamp();
        let token = key.sign(&serde_json::json!({
            "iss": "https://issuer", "aud": "api", "exp": now + 300, "scope": "a",
        }));
        let layer = VerifyLayer::new(verifier.clone());
        let bearer = format!("Bearer {token}");
        for _ in 0..3 {
            assert_eq!(answer(&layer, &[&bearer]).0, StatusCode::OK);
        }
        assert_eq!(verifier.metrics().cache_hits, 1, "a recent token now");

        let (status, handed) = answer(&layer, &[&format!("bEaReR   {token}")]);
        assert_eq!(status, StatusCode::OK);
        let handed = handed.expect("the token in the extensions");
        assert_eq!(handed.as_str(), token);
        assert!(handed.header_value().is_sensitive());
        assert_eq!(verifier.metrics().cache_hits, 2);

        for refused in [
            [bearer.as_str(), bearer.as_str()].as_slice(),
            &[&format!("Bearer\t{token}")],
            &[&format!("Bearer {token} ")],
            &[&format!("Bearer {token}=x")],
        ] {
            assert_eq!(answer(&layer, refused).0, StatusCode::UNAUTHORIZED);
        }
        let metrics = verifier.metrics();
        assert_eq!(metrics.cache_hits, 2);
        assert_eq!(metrics.rejected(Reason::MalformedHeader), 4);
    }
}
