//! The response bodies, as concrete types: the gateway's own bytes or the upstream's stream,
//! and the auth layers' wrappers around them. Nothing is boxed: a response body is polled
//! through at most three enum matches, never a virtual call, and costs no allocation.

use std::{
    fmt,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use s2s_auth::layer::ResponseBody;

use crate::{BoxError, pool::Pooled};

/// The body of every response the gateway sends: an upstream's, streamed, or its own.
pub struct Body(Kind);

enum Kind {
    Plain(Plain),
    /// Through `VerifyLayer` (a route that requires a token).
    Verified(ResponseBody<Scoped>),
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Body").finish_non_exhaustive()
    }
}

impl From<Plain> for Body {
    fn from(plain: Plain) -> Body {
        Body(Kind::Plain(plain))
    }
}

impl From<ResponseBody<Scoped>> for Body {
    fn from(verified: ResponseBody<Scoped>) -> Body {
        Body(Kind::Verified(verified))
    }
}

impl HttpBody for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = match &mut self.get_mut().0 {
            Kind::Plain(b) => Pin::new(b).poll_frame(cx),
            Kind::Verified(b) => Pin::new(b).poll_frame(cx),
        };
        polled.map(|frame| frame.map(|f| f.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Kind::Plain(b) => b.is_end_stream(),
            Kind::Verified(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Kind::Plain(b) => b.size_hint(),
            Kind::Verified(b) => b.size_hint(),
        }
    }
}

/// A body before the auth layers: the gateway's own bytes, or the upstream's stream.
pub(crate) enum Plain {
    /// `None` once sent (or when empty: the message ends with its head).
    Own(Option<Bytes>),
    Upstream(UpstreamBody),
}

impl Plain {
    /// A fixed body.
    pub(crate) fn full(bytes: Bytes) -> Plain {
        Plain::Own((!bytes.is_empty()).then_some(bytes))
    }
}

impl HttpBody for Plain {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            Plain::Own(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            Plain::Upstream(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Plain::Own(data) => data.is_none(),
            Plain::Upstream(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Plain::Own(data) => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            Plain::Upstream(body) => body.size_hint(),
        }
    }
}

/// An upstream's body and, over HTTP/1.1, the connection it comes on: back to its pool once
/// the body has been read to its end, closed if the body is dropped before.
pub(crate) struct UpstreamBody {
    body: Incoming,
    connection: Option<Pooled>,
    ended: bool,
}

impl UpstreamBody {
    pub(crate) fn new(body: Incoming, connection: Option<Pooled>) -> UpstreamBody {
        UpstreamBody {
            body,
            connection,
            ended: false,
        }
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        if let Some(connection) = self.connection.take() {
            connection.release(self.ended || self.body.is_end_stream());
        }
    }
}

impl HttpBody for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            self.ended = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A body behind `VerifyLayer`: through `RequireScopeLayer` when the route requires scopes.
pub(crate) enum Scoped {
    Open(Plain),
    Checked(ResponseBody<Plain>),
}

impl HttpBody for Scoped {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            Scoped::Open(b) => Pin::new(b).poll_frame(cx),
            Scoped::Checked(b) => Pin::new(b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Scoped::Open(b) => b.is_end_stream(),
            Scoped::Checked(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Scoped::Open(b) => b.size_hint(),
            Scoped::Checked(b) => b.size_hint(),
        }
    }
}
