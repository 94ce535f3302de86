//! Faults on demand: a small axum middleware in front of the issuer's router that a test
//! switches at runtime ([`TestIssuer::set_fault`](crate::TestIssuer::set_fault)).
//!
//! Every request is counted on arrival, per [`Endpoint`]. Then the first rule whose endpoint
//! matches decides: a [`Fault`] answers instead of the issuer (or, for
//! [`Fault::SlowBody`], slows the issuer's answer); with no rule the issuer answers.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{
    body::Body,
    extract::{Request, State},
    http::{HeaderValue, StatusCode, header},
    middleware::Next,
    response::Response,
};
use bytes::Bytes;
use http_body_util::BodyExt as _;
use s2s_auth::oauth::ErrorBody;
use tokio::sync::watch;

/// What goes wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// 429 Too Many Requests with `Retry-After: <retry_after>` (seconds) and an OAuth error
    /// body (`temporarily_unavailable`).
    RateLimited {
        /// The `Retry-After` value, seconds.
        retry_after: u64,
    },
    /// This status (a 5xx, typically) with an OAuth error body (`server_error`).
    Status(u16),
    /// Accepts the request and answers nothing until the faults change (then the request is
    /// served as the new rules say) or the issuer is dropped: a client's timeout fires.
    Hang,
    /// The issuer's real answer, headers at once (with the full `Content-Length`), then the
    /// body `bytes_per_tick` bytes at a time, one piece per `tick`.
    SlowBody {
        /// Bytes sent per tick (at least 1).
        bytes_per_tick: usize,
        /// The pause before each piece.
        tick: Duration,
    },
}

impl Fault {
    /// [`Fault::SlowBody`] with 8 bytes per `tick`.
    pub fn slow_body(tick: Duration) -> Fault {
        Fault::SlowBody {
            bytes_per_tick: 8,
            tick,
        }
    }
}

/// Which requests a fault applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Endpoint {
    /// `POST /token`.
    Token,
    /// `GET /.well-known/jwks.json`.
    Jwks,
    /// Both discovery documents.
    Discovery,
    /// The admin API.
    Admin,
    /// Every request (as a rule); [`TestIssuer::requests`](crate::TestIssuer::requests) counts all.
    Any,
}

impl Endpoint {
    fn of(path: &str) -> Endpoint {
        if path.ends_with("/token") {
            Endpoint::Token
        } else if path.ends_with("/.well-known/jwks.json") {
            Endpoint::Jwks
        } else if path.contains("/.well-known/") {
            Endpoint::Discovery
        } else if path.contains("/admin/") {
            Endpoint::Admin
        } else {
            Endpoint::Any
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    fn matches(self, request: Endpoint) -> bool {
        self == Endpoint::Any || self == request
    }
}

#[derive(Debug)]
struct Rule {
    endpoint: Endpoint,
    fault: Fault,
    /// Requests left; `None`: until cleared.
    remaining: Option<usize>,
}

/// The switch: rules and counters, shared by the middleware and the test.
#[derive(Debug)]
pub(crate) struct Faults {
    rules: Mutex<Vec<Rule>>,
    /// Bumped on every change, to wake [`Fault::Hang`] requests.
    changed: watch::Sender<u64>,
    /// Per [`Endpoint`] (the request's own), and the total at [`Endpoint::Any`].
    counts: [AtomicUsize; 5],
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            rules: Mutex::default(),
            changed: watch::Sender::new(0),
            counts: Default::default(),
        }
    }
}

impl Faults {
    /// Adds a rule, after those set before it.
    pub(crate) fn add(&self, endpoint: Endpoint, fault: Fault, times: Option<usize>) {
        if let Fault::Status(code) = fault {
            StatusCode::from_u16(code).expect("Fault::Status: a status code from 100 to 999");
        }
        self.rules().push(Rule {
            endpoint,
            fault,
            remaining: times,
        });
        self.changed.send_modify(|n| *n += 1);
    }

    /// Replaces the rules for `endpoint` with this one.
    pub(crate) fn set(&self, endpoint: Endpoint, fault: Fault) {
        self.rules().retain(|r| r.endpoint != endpoint);
        self.add(endpoint, fault, None);
    }

    pub(crate) fn clear(&self) {
        self.rules().clear();
        self.changed.send_modify(|n| *n += 1);
    }

    pub(crate) fn count(&self, endpoint: Endpoint) -> usize {
        self.counts[endpoint.index()].load(Ordering::SeqCst)
    }

    fn rules(&self) -> std::sync::MutexGuard<'_, Vec<Rule>> {
        self.rules.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The fault for one request of `endpoint`, spending one of a counted rule's requests.
    fn take(&self, endpoint: Endpoint) -> Option<Fault> {
        let mut rules = self.rules();
        let i = rules.iter().position(|r| r.endpoint.matches(endpoint))?;
        let fault = rules[i].fault.clone();
        if let Some(left) = &mut rules[i].remaining {
            *left = left.saturating_sub(1);
            if *left == 0 {
                rules.remove(i);
            }
        }
        Some(fault)
    }
}

/// The middleware (`axum::middleware::from_fn_with_state`).
pub(crate) async fn inject(
    State(faults): State<Arc<Faults>>,
    request: Request,
    next: Next,
) -> Response {
    let endpoint = Endpoint::of(request.uri().path());
    if endpoint != Endpoint::Any {
        faults.counts[endpoint.index()].fetch_add(1, Ordering::SeqCst);
    }
    faults.counts[Endpoint::Any.index()].fetch_add(1, Ordering::SeqCst);
    loop {
        let mut changed = faults.changed.subscribe();
        match faults.take(endpoint) {
            None => return next.run(request).await,
            Some(Fault::RateLimited { retry_after }) => {
                let mut response = error(StatusCode::TOO_MANY_REQUESTS, "temporarily_unavailable");
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
                return response;
            }
            Some(Fault::Status(code)) => {
                let status =
                    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                return error(status, "server_error");
            }
            Some(Fault::Hang) => {
                // Until the rules change; then this request is decided again.
                if changed.changed().await.is_err() {
                    return std::future::pending().await;
                }
            }
            Some(Fault::SlowBody {
                bytes_per_tick,
                tick,
            }) => return slow(next.run(request).await, bytes_per_tick.max(1), tick).await,
        }
    }
}

fn error(status: StatusCode, error: &str) -> Response {
    ErrorBody::new(error.to_owned())
        .with_description("injected by s2s-auth-testkit")
        .to_response(status)
        .map(Body::from)
}

/// `response` with its body trickling out.
async fn slow(response: Response, piece: usize, tick: Duration) -> Response {
    let (mut parts, body) = response.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::new(),
    };
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    let pieces = futures_util::stream::unfold(body, move |mut rest| async move {
        if rest.is_empty() {
            return None;
        }
        tokio::time::sleep(tick).await;
        let now = rest.split_to(piece.min(rest.len()));
        Some((Ok::<_, std::io::Error>(now), rest))
    });
    Response::from_parts(parts, Body::from_stream(pieces))
}
