//! Each route's stack as concrete types: [`Forward`] alone for a public route; for a route
//! that requires a token, s2s-auth's `Verify`, the gateway's [`AfterVerify`] (the audiences
//! and the identity headers), `RequireScope` when the route names scopes, then [`Forward`].
//! No service is boxed, no future is boxed, and the response body is wrapped, never boxed.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use s2s_auth::{
    Reason, Rejection, RequireScope, Responder, Verified,
    layer::{Verify, scope},
};
use tower::{Service, ServiceExt};

use crate::{
    Body,
    body::{Plain, Scoped},
    config::IssuerConfig,
    proxy::{Forward, Forwarding, Identity},
};

/// The subject of the verified token, carried on the response for the access log.
#[derive(Clone, Debug)]
pub(crate) struct Subject(pub(crate) Arc<str>);

/// Whether the access log (target `s2s_gateway::access`, INFO) is on: what only it needs (the
/// subject, the latency) is not taken otherwise.
pub(crate) fn access_log_enabled() -> bool {
    tracing::enabled!(target: "s2s_gateway::access", tracing::Level::INFO)
}

/// One route's stack.
#[derive(Clone)]
pub(crate) enum RouteService {
    Public(Forward),
    Token(Verify<AfterVerify>),
}

impl RouteService {
    /// The answer to `request`: the route's stack never fails, and its services are always
    /// ready (each is as ready as [`Forward`], which always is).
    pub(crate) async fn answer(&self, request: Request<Incoming>) -> Response<Body> {
        let answer = match self {
            RouteService::Public(forward) => forward
                .clone()
                .oneshot(request)
                .await
                .map(|r| r.map(Body::from)),
            RouteService::Token(verify) => verify
                .clone()
                .oneshot(request)
                .await
                .map(|r| r.map(Body::from)),
        };
        match answer {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }
}

/// Between `Verify` and the scopes: [`AuthContext::check`], then the rest of the stack.
#[derive(Clone)]
pub(crate) struct AfterVerify {
    pub(crate) auth: Arc<AuthContext>,
    /// The route's own audiences, narrowing the issuer's.
    pub(crate) audiences: Option<Arc<[String]>>,
    pub(crate) inner: ScopeCheck,
}

impl Service<Request<Incoming>> for AfterVerify {
    type Response = Response<Scoped>;
    type Error = Infallible;
    type Future = AfterVerifying;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Incoming>) -> AfterVerifying {
        let state = match self.auth.check(&mut request, self.audiences.as_deref()) {
            Checked::Passed(subject) => AfterState::Inner {
                future: self.inner.call(request),
                subject,
            },
            Checked::Refused(response) => AfterState::Answered {
                response: Some(response),
            },
        };
        AfterVerifying { state }
    }
}

pin_project! {
    /// The future of [`AfterVerify`]: its refusal at once, or the rest of the stack's answer
    /// with the token's subject on it.
    pub(crate) struct AfterVerifying {
        #[pin]
        state: AfterState,
    }
}

pin_project! {
    #[project = AfterProj]
    enum AfterState {
        Answered { response: Option<Response<Scoped>> },
        Inner {
            #[pin]
            future: ScopeChecking,
            subject: Option<Arc<str>>,
        },
    }
}

impl Future for AfterVerifying {
    type Output = Result<Response<Scoped>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let response = match self.project().state.project() {
            AfterProj::Answered { response } => response
                .take()
                .expect("AfterVerifying polled after completion"),
            AfterProj::Inner { future, subject } => {
                let Ok(response) = ready!(future.poll(cx));
                with_subject(response, subject.take())
            }
        };
        Poll::Ready(Ok(response))
    }
}

/// The scopes of the route, if it names some.
#[derive(Clone)]
pub(crate) enum ScopeCheck {
    Open(Forward),
    Checked(RequireScope<Forward>),
}

impl Service<Request<Incoming>> for ScopeCheck {
    type Response = Response<Scoped>;
    type Error = Infallible;
    type Future = ScopeChecking;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        match self {
            ScopeCheck::Open(forward) => forward.poll_ready(cx),
            ScopeCheck::Checked(scoped) => scoped.poll_ready(cx),
        }
    }

    fn call(&mut self, request: Request<Incoming>) -> ScopeChecking {
        let state = match self {
            ScopeCheck::Open(forward) => ScopeState::Open {
                future: forward.call(request),
            },
            ScopeCheck::Checked(scoped) => ScopeState::Checked {
                future: scoped.call(request),
            },
        };
        ScopeChecking { state }
    }
}

pin_project! {
    /// The future of [`ScopeCheck`].
    pub(crate) struct ScopeChecking {
        #[pin]
        state: ScopeState,
    }
}

pin_project! {
    #[project = ScopeProj]
    enum ScopeState {
        Open { #[pin] future: Forwarding },
        Checked { #[pin] future: scope::ResponseFuture<Forwarding> },
    }
}

impl Future for ScopeChecking {
    type Output = Result<Response<Scoped>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let response = match self.project().state.project() {
            ScopeProj::Open { future } => {
                let Ok(response) = ready!(future.poll(cx));
                response.map(Scoped::Open)
            }
            ScopeProj::Checked { future } => {
                let Ok(response) = ready!(future.poll(cx));
                response.map(Scoped::Checked)
            }
        };
        Poll::Ready(Ok(response))
    }
}

/// What happens between `VerifyLayer` and `RequireScopeLayer`: the audiences (the issuer's own,
/// narrowed by the route's), and the identity headers of the verified token.
pub(crate) struct AuthContext {
    pub(crate) issuers: Vec<IssuerConfig>,
    pub(crate) responder: Responder,
}

/// What [`AuthContext::check`] decided.
enum Checked {
    /// With the token's subject.
    Passed(Option<Arc<str>>),
    Refused(Response<Scoped>),
}

#[derive(serde::Deserialize)]
struct AuthorizedParty {
    azp: Option<String>,
}

impl AuthContext {
    /// Holds the verified token to the audiences and puts its identity headers on `request`:
    /// passed with the token's subject (for the access log), or refused.
    fn check(
        &self,
        request: &mut Request<Incoming>,
        route_audiences: Option<&[String]>,
    ) -> Checked {
        let Some(verified) = request.extensions().get::<Verified>().cloned() else {
            let rejection =
                Rejection::new(Reason::MissingLayer, "the gateway lost the verified claims");
            return Checked::Refused(self.reject(&rejection, request));
        };
        let claims = verified.standard();
        let subject = claims
            .sub
            .as_deref()
            .filter(|_| access_log_enabled())
            .map(Arc::<str>::from);
        // The verifier held the token to its issuer's audiences; the route narrows them: one
        // `aud` must be both the issuer's and the route's. The caller learns the reason, the
        // log the audiences.
        let issuer = self.issuers.iter().find(|i| i.id == claims.iss);
        let accepted = |a: &String| {
            issuer.is_some_and(|i| i.audiences.contains(a))
                && route_audiences.is_none_or(|r| r.contains(a))
        };
        if !claims.aud.iter().any(accepted) {
            // The caller is shown the reason's fixed summary, as for the verifier's own
            // audience refusal; the audiences go to the log only.
            let rejection = Rejection::summarized(
                Reason::WrongAudience,
                format!(
                    "aud {:?} names none of the audiences of issuer `{}` ({:?}) and route ({:?})",
                    claims.aud,
                    claims.iss,
                    issuer.map(|i| &i.audiences),
                    route_audiences
                ),
            );
            tracing::debug!(target: "s2s_gateway", detail = rejection.detail(), "token refused");
            return Checked::Refused(with_subject(self.reject(&rejection, request), subject));
        }
        match identity(&verified) {
            Ok(identity) => {
                request.extensions_mut().insert(identity);
                Checked::Passed(subject)
            }
            Err(rejection) => {
                Checked::Refused(with_subject(self.reject(&rejection, request), subject))
            }
        }
    }

    /// The layers' answer: gRPC-shaped for a gRPC request.
    fn reject<B>(&self, rejection: &Rejection, request: &Request<B>) -> Response<Scoped> {
        self.responder
            .respond_to(rejection, request.headers())
            .map(|b| Scoped::Open(Plain::full(b)))
    }
}

fn with_subject<B>(mut response: Response<B>, subject: Option<Arc<str>>) -> Response<B> {
    if let Some(s) = subject {
        response.extensions_mut().insert(Subject(s));
    }
    response
}

/// The identity header values of a verified token. A claim that cannot be a header value
/// (control characters) refuses the token rather than drop the header silently.
fn identity(verified: &Verified) -> Result<Identity, Rejection> {
    let claims = verified.standard();
    let refused = |name: &str| {
        Rejection::new(
            Reason::Malformed,
            format!("the token's `{name}` claim holds characters a header cannot carry"),
        )
    };
    let value = |name: &str, v: &str| HeaderValue::from_str(v).map_err(|_| refused(name));
    let subject = claims.sub.as_deref().map(|s| value("sub", s)).transpose()?;
    let client_id = match &claims.client_id {
        Some(c) => Some(value("client_id", c)?),
        None => match verified.claims::<AuthorizedParty>() {
            Ok(AuthorizedParty { azp: Some(azp) }) => Some(value("azp", &azp)?),
            _ => None,
        },
    };
    let scopes = if claims.scopes.is_empty() {
        None
    } else {
        // Joined straight into the buffer the header value keeps (no list, no copy), of
        // exactly the length written so that it is kept as it is.
        let length = claims.scopes.iter().map(|s| s.len() + 1).sum::<usize>() - 1;
        let mut joined = String::with_capacity(length);
        for (i, scope) in claims.scopes.iter().enumerate() {
            if i > 0 {
                joined.push(' ');
            }
            joined.push_str(scope);
        }
        let joined = HeaderValue::from_maybe_shared(bytes::Bytes::from(joined));
        Some(joined.map_err(|_| refused("scope"))?)
    };
    Ok(Identity {
        subject,
        client_id,
        scopes,
    })
}
