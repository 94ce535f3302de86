//! The tower middleware. Inbound, [`VerifyLayer`] checks the bearer token of each request and
//! [`RequireScope`] the scopes a route needs; outbound, [`AuthorizeLayer`] attaches tokens. Both answer refusals per RFC 6750 through a
//! [`Responder`](crate::Responder), with a [`ResponseBody`] that is either the inner service's
//! body or the rejection's JSON.

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
pub use scope::{Match, RequireScope, RequireScopeLayer, RequireScopeService};
pub use verify::{Verify, VerifyLayer};

pin_project! {
    /// The future of a middleware that either calls the inner service or answers at once.
    pub struct ReadyOrRejected<F> {
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

impl<F> ReadyOrRejected<F> {
    pub(crate) fn inner(future: F) -> Self {
        ReadyOrRejected {
            kind: Kind::Inner { future },
        }
    }

    pub(crate) fn rejected(response: Response<Bytes>) -> Self {
        ReadyOrRejected {
            kind: Kind::Rejected {
                response: Some(response),
            },
        }
    }
}

impl<F, B, E> Future for ReadyOrRejected<F>
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
