//! The HTTP/1.1 connections to one upstream: kept alive and reused, the most recently used
//! first, with no task, timer or hash lookup per request.
//!
//! A connection goes back to the pool once the response body it carried has been read to its
//! end (see [`Pooled`]), as soon as it can take the next request: at once in the usual case,
//! else from a task that waits for it (one whose body was dropped earlier is closed).
//! Connections idle longer than the idle timeout are closed as the pool is used and by
//! [`Pool::close_expired`]. A request that a reused connection could not even start (the
//! upstream closed it meanwhile) is sent again on another, as hyper-util's pooled client
//! does; a request that was sent is never sent again.

use std::{
    collections::VecDeque,
    error::Error as StdError,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use http::{HeaderValue, Request, Response, Uri};
use hyper::{body::Incoming, client::conn::http1};
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::time::Instant;
use tower::ServiceExt;

use crate::proxy::RequestBody;

/// Why an exchange failed, and whether it failed while connecting.
pub(crate) struct ExchangeError {
    pub(crate) connect: bool,
    pub(crate) error: Box<dyn StdError + Send + Sync>,
}

/// The kept-alive connections to one upstream, and how to open more.
pub(crate) struct Pool {
    /// The oldest in front: taken from the back, expired from the front.
    idle: Mutex<VecDeque<Idle>>,
    connector: HttpConnector,
    /// The upstream's scheme and authority, to connect to.
    uri: Uri,
    /// The `Host` of a request that has none: the upstream's authority.
    host: HeaderValue,
    idle_timeout: Duration,
}

struct Idle {
    sender: http1::SendRequest<RequestBody>,
    since: Instant,
}

impl Pool {
    /// A pool of connections to `uri`'s authority, opened by `connector`.
    pub(crate) fn new(connector: HttpConnector, uri: Uri, idle_timeout: Duration) -> Pool {
        let host = uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            .unwrap_or(HeaderValue::from_static(""));
        Pool {
            idle: Mutex::new(VecDeque::new()),
            connector,
            uri,
            host,
            idle_timeout,
        }
    }

    /// The `Host` header of the upstream.
    pub(crate) fn host(&self) -> &HeaderValue {
        &self.host
    }

    fn idle(&self) -> MutexGuard<'_, VecDeque<Idle>> {
        // Every update leaves the list whole: a panic elsewhere cannot have broken it.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends `request` (in origin form, with its `Host`) on a kept-alive connection, or a new
    /// one.
    pub(crate) async fn send(
        self: Arc<Self>,
        mut request: Request<RequestBody>,
    ) -> Result<(Response<Incoming>, Pooled), ExchangeError> {
        loop {
            let (mut sender, reused) = match self.checkout() {
                Some(sender) => (sender, true),
                None => (self.connect().await?, false),
            };
            if let Err(error) = sender.ready().await {
                if reused {
                    continue;
                }
                return Err(ExchangeError {
                    connect: false,
                    error: error.into(),
                });
            }
            match sender.try_send_request(request).await {
                Ok(response) => {
                    let pooled = Pooled { pool: self, sender };
                    return Ok((response, pooled));
                }
                Err(mut e) => match e.take_message() {
                    // Never started: the upstream closed the connection meanwhile.
                    Some(unsent) if reused => request = unsent,
                    _ => {
                        return Err(ExchangeError {
                            connect: false,
                            error: e.into_error().into(),
                        });
                    }
                },
            }
        }
    }

    /// The most recently used connection that is still open and not idle for too long.
    fn checkout(&self) -> Option<http1::SendRequest<RequestBody>> {
        let now = Instant::now();
        let mut idle = self.idle();
        while let Some(connection) = idle.pop_back() {
            if !connection.sender.is_closed() && now - connection.since < self.idle_timeout {
                return Some(connection.sender);
            }
        }
        None
    }

    async fn connect(&self) -> Result<http1::SendRequest<RequestBody>, ExchangeError> {
        let connect_error = |error: Box<dyn StdError + Send + Sync>| ExchangeError {
            connect: true,
            error,
        };
        let stream = self
            .connector
            .clone()
            .oneshot(self.uri.clone())
            .await
            .map_err(|e| connect_error(e.into()))?;
        let (sender, connection) = http1::handshake(stream)
            .await
            .map_err(|e| connect_error(e.into()))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(target: "s2s_gateway", error = %e, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }

    /// Keeps `sender` for a next request, once it can take one.
    fn put(self: Arc<Self>, mut sender: http1::SendRequest<RequestBody>) {
        if sender.is_ready() {
            self.keep(sender);
        } else if !sender.is_closed() {
            // The connection has not taken in the end of the last exchange yet.
            tokio::spawn(async move {
                if sender.ready().await.is_ok() {
                    self.keep(sender);
                }
            });
        }
    }

    fn keep(&self, sender: http1::SendRequest<RequestBody>) {
        let now = Instant::now();
        let mut idle = self.idle();
        expire(&mut idle, now, self.idle_timeout);
        idle.push_back(Idle { sender, since: now });
    }

    /// Closes the connections idle for longer than the idle timeout.
    pub(crate) fn close_expired(&self) {
        expire(&mut self.idle(), Instant::now(), self.idle_timeout);
    }
}

/// Closes the connections idle for `timeout` at `now` (the oldest are in front).
fn expire(idle: &mut VecDeque<Idle>, now: Instant, timeout: Duration) {
    while idle.front().is_some_and(|c| now - c.since >= timeout) {
        idle.pop_front();
    }
}

/// The connection a response came on, until its body has been read.
pub(crate) struct Pooled {
    pool: Arc<Pool>,
    sender: http1::SendRequest<RequestBody>,
}

impl Pooled {
    /// Done with the response: back to the pool when its body was read to the end (`complete`),
    /// else closed (a connection cannot take a request while an answer is left unread).
    pub(crate) fn release(self, complete: bool) {
        if complete {
            self.pool.put(self.sender);
        }
    }
}
