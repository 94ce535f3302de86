//! The tower middleware, one module each, named as tower-http names its own: an `XLayer`, the
//! `X` service it wraps around the inner one (with `get_ref`, `get_mut` and `into_inner`), and
//! the `ResponseFuture` of that service.
//!
//! ```
//! use axum::{Router, routing::get};
//! use s2s_auth::layer::{RequireScopeLayer, VerifyLayer};
//! # fn app(verifier: s2s_auth::Verifier) -> Router {
//! Router::new()
//!     .route("/orders", get(|| async { "orders" }))
//!     .route_layer(RequireScopeLayer::all(["orders:read"]))
//!     .layer(VerifyLayer::new(verifier))
//! # }
//! ```
//!
//! | module | layer | service | what it does |
//! |---|---|---|---|
//! | [`verify`] | [`VerifyLayer`] | [`Verify`] | inbound: checks the bearer token of each request |
//! | [`scope`] | [`RequireScopeLayer`] | [`RequireScope`] | inbound: the scopes a route needs |
//! | [`authorize`] | [`AuthorizeLayer`] | [`Authorize`] | outbound: attaches tokens, only for the allowed origins |
//!
//! The inbound ones answer refusals per RFC 6750 through a [`Responder`](crate::Responder),
//! with a [`ResponseBody`] that is either the inner service's body or the rejection's JSON.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::Response;
use pin_project_lite::pin_project;

pub mod authorize;
mod body;
pub mod scope;
pub mod verify;

pub use authorize::{Authorize, AuthorizeLayer};
pub use body::ResponseBody;
#[allow(deprecated)]
pub use scope::RequireScopeService;
pub use scope::{Match, RequireScope, RequireScopeLayer};
pub use verify::{Verify, VerifyLayer};

/// The future of [`RequireScope`], under its former name.
#[deprecated(note = "renamed `layer::scope::ResponseFuture`")]
pub type ReadyOrRejected<F> = scope::ResponseFuture<F>;

/// `get_ref`, `get_mut` and `into_inner` for a middleware service whose inner service is the
/// field `inner` of type `S` (tower-http's `define_inner_service_accessors!`).
macro_rules! define_inner_service_accessors {
    () => {
        /// The inner service.
        pub fn get_ref(&self) -> &S {
            &self.inner
        }

        /// The inner service, mutably.
        pub fn get_mut(&mut self) -> &mut S {
            &mut self.inner
        }

        /// Consumes the middleware, returning the inner service.
        pub fn into_inner(self) -> S {
            self.inner
        }
    };
}
pub(crate) use define_inner_service_accessors;

pin_project! {
    /// The future of a middleware that either calls the inner service or answers at once.
    pub(crate) struct Answer<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Inner { #[pin] future: F },
        Rejected { response: Option<Response<Bytes>> },
    }
}

impl<F> Answer<F> {
    pub(crate) fn inner(future: F) -> Self {
        Answer {
            kind: Kind::Inner { future },
        }
    }

    pub(crate) fn rejected(response: Response<Bytes>) -> Self {
        Answer {
            kind: Kind::Rejected {
                response: Some(response),
            },
        }
    }
}

impl<F, B, E> Future for Answer<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future } => future
                .poll(cx)
                .map(|r| r.map(|response| response.map(ResponseBody::inner))),
            KindProj::Rejected { response } => {
                let response = response.take().expect("future polled after completion");
                Poll::Ready(Ok(response.map(ResponseBody::rejection)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tower_layer::Layer as _;

    use super::{AuthorizeLayer, RequireScopeLayer};

    #[test]
    fn services_hand_out_their_inner_service() {
        let mut scope = RequireScopeLayer::all(["orders:read"]).layer(1_u8);
        assert_eq!(*scope.get_ref(), 1);
        *scope.get_mut() = 2;
        assert_eq!(scope.into_inner(), 2);

        let mut authorize = AuthorizeLayer::new(()).layer(String::from("inner"));
        authorize.get_mut().push('!');
        assert_eq!(authorize.get_ref(), "inner!");
        assert_eq!(authorize.into_inner(), "inner!");
    }

    #[test]
    #[allow(deprecated)]
    fn the_former_layer_name_still_builds_the_layer() {
        let layer: RequireScopeLayer = super::RequireScope::any(["a", "b"]);
        assert!(format!("{layer:?}").contains("Any"));
    }
}
