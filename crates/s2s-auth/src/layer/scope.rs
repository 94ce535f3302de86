//! [`RequireScopeLayer`]: per-route scope checks behind [`VerifyLayer`](super::VerifyLayer).
//!
//! ```
//! use axum::{Router, routing::{get, post}};
//! use s2s_auth::RequireScopeLayer;
//!
//! let app: Router = Router::new()
//!     .route("/orders", get(|| async { "list" }))
//!     .route_layer(RequireScopeLayer::any(["orders:read", "orders:admin"]))
//!     .merge(
//!         Router::new()
//!             .route("/orders", post(|| async { "created" }))
//!             .route_layer(RequireScopeLayer::all(["orders:write"])),
//!     );
//! // ... then `.layer(VerifyLayer::new(verifier))` on the whole router.
//! ```
//!
//! A request whose token lacks the scopes is answered 403 with
//! `WWW-Authenticate: Bearer error="insufficient_scope", scope="…"` and code `AUTH_102`; a
//! request with no verified token at all (an optional `VerifyLayer`, or none) is answered 401.
//! A gRPC request gets them as gRPC status 7 and 16 ([`rejection`](crate::rejection#grpc)).

use std::task::{Context, Poll};
use std::{fmt, future::Future, pin::Pin, sync::Arc};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::{Answer, ResponseBody, define_inner_service_accessors, verify::LayerResponder};
use crate::{
    claims::{Scopes, Verified},
    rejection::{Reason, Rejection, Responder},
};

pub use crate::claims::{Match, ScopePolicy};

/// A [`ScopePolicy`] for a route: the layer. A refusal is answered as the request's
/// `VerifyLayer` answers, or with [`RequireScopeLayer::responder`].
#[derive(Clone)]
pub struct RequireScopeLayer {
    inner: Arc<Requirement>,
}

struct Requirement {
    policy: ScopePolicy,
    /// `None`: answer as the `VerifyLayer` of the request does.
    responder: Option<Responder>,
}

impl fmt::Debug for RequireScopeLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequireScopeLayer")
            .field("scopes", &self.inner.policy.scopes().collect::<Vec<_>>())
            .field("mode", &self.inner.policy.mode())
            .finish()
    }
}

impl From<ScopePolicy> for RequireScopeLayer {
    fn from(policy: ScopePolicy) -> Self {
        RequireScopeLayer::new(policy)
    }
}

impl RequireScopeLayer {
    /// Requires what `policy` requires.
    pub fn new(policy: ScopePolicy) -> Self {
        RequireScopeLayer {
            inner: Arc::new(Requirement {
                policy,
                responder: None,
            }),
        }
    }

    /// Requires every scope of `scopes` ([`ScopePolicy::all`]).
    pub fn all(scopes: impl IntoIterator<Item = impl Into<Box<str>>>) -> Self {
        Self::new(ScopePolicy::all(scopes))
    }

    /// Requires at least one scope of `scopes` ([`ScopePolicy::any`]).
    pub fn any(scopes: impl IntoIterator<Item = impl Into<Box<str>>>) -> Self {
        Self::new(ScopePolicy::any(scopes))
    }

    /// Answers refusals with `responder` (realm, custom handler). By default they are answered
    /// as the request's `VerifyLayer` answers.
    pub fn responder(self, responder: Responder) -> Self {
        RequireScopeLayer {
            inner: Arc::new(Requirement {
                policy: self.inner.policy.clone(),
                responder: Some(responder),
            }),
        }
    }

    /// The policy this layer checks.
    pub fn policy(&self) -> &ScopePolicy {
        &self.inner.policy
    }

    /// Checks `scopes` against the requirement ([`ScopePolicy::check`]).
    pub fn check(&self, scopes: &Scopes) -> Result<(), Rejection> {
        self.inner.policy.check(scopes)
    }

    /// Checks the verified token of a request (401 when there is none).
    pub fn check_request<B>(&self, request: &Request<B>) -> Result<(), Rejection> {
        let result = match request.extensions().get::<Verified>() {
            Some(verified) => self.check(verified.scopes()),
            None => Err(Rejection::new(
                Reason::MissingToken,
                "this endpoint requires a bearer token: send `Authorization: Bearer <token>`",
            )),
        };
        result.map_err(|r| {
            let layer = request.extensions().get::<LayerResponder>();
            r.with_responder(layer.map(|l| &l.0))
        })
    }

    fn respond<B>(&self, rejection: &Rejection, request: &Request<B>) -> Response<bytes::Bytes> {
        match &self.inner.responder {
            Some(responder) => responder.respond_to(rejection, request.headers()),
            None => rejection.to_response_for(request.headers()),
        }
    }
}

impl<S> Layer<S> for RequireScopeLayer {
    type Service = RequireScope<S>;

    fn layer(&self, inner: S) -> RequireScope<S> {
        RequireScope {
            inner,
            requirement: self.clone(),
        }
    }
}

/// The service of [`RequireScopeLayer`]: passes requests whose verified token has the scopes,
/// answers the others.
#[derive(Clone, Debug)]
pub struct RequireScope<S> {
    inner: S,
    requirement: RequireScopeLayer,
}

/// The service of [`RequireScopeLayer`], under its former name.
#[deprecated(note = "renamed `RequireScope` (the service; the layer is `RequireScopeLayer`)")]
pub type RequireScopeService<S> = RequireScope<S>;

impl<S> RequireScope<S> {
    /// Wraps `inner` with the requirement of `layer`.
    pub fn new(inner: S, layer: RequireScopeLayer) -> Self {
        RequireScope {
            inner,
            requirement: layer,
        }
    }

    /// The requirement this service checks.
    pub fn requirement(&self) -> &RequireScopeLayer {
        &self.requirement
    }

    define_inner_service_accessors!();
}

/// Where `RequireScope` was the layer: `RequireScope::all([..])` still builds one.
impl RequireScope<()> {
    /// The layer requiring every scope of `scopes`.
    #[deprecated(note = "the layer is `RequireScopeLayer`: use `RequireScopeLayer::all`")]
    pub fn all(scopes: impl IntoIterator<Item = impl Into<Box<str>>>) -> RequireScopeLayer {
        RequireScopeLayer::all(scopes)
    }

    /// The layer requiring at least one scope of `scopes`.
    #[deprecated(note = "the layer is `RequireScopeLayer`: use `RequireScopeLayer::any`")]
    pub fn any(scopes: impl IntoIterator<Item = impl Into<Box<str>>>) -> RequireScopeLayer {
        RequireScopeLayer::any(scopes)
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RequireScope<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let answer = match self.requirement.check_request(&request) {
            Ok(()) => Answer::inner(self.inner.call(request)),
            Err(rejection) => Answer::rejected(self.requirement.respond(&rejection, &request)),
        };
        ResponseFuture { answer }
    }
}

pin_project! {
    /// The future of [`RequireScope`]: the inner service's, or the refusal, ready at once.
    pub struct ResponseFuture<F> {
        #[pin]
        answer: Answer<F>,
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResponseFuture")
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().answer.poll(cx)
    }
}
