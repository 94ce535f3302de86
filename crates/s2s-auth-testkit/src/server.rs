//! A real HTTP/1.1 server on `127.0.0.1:0` for any axum [`Router`], gone when dropped.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use axum::{Router, routing::get};
//! use s2s_auth_testkit::server::Server;
//!
//! let server = Server::start(Router::new().route("/", get(|| async { "ok" }))).await;
//! assert!(server.url().starts_with("http://127.0.0.1:"));
//! drop(server); // the listener and every open connection close here
//! # }
//! ```
//!
//! Unlike `axum::serve`, dropping the [`Server`] closes every open connection too (pooled
//! keep-alive ones, and requests a fault left hanging), so "the server went away" looks like
//! that to a client. Each request carries the client's address as
//! `axum::extract::ConnectInfo<SocketAddr>`, which the issuer's router needs.

use std::{net::SocketAddr, time::Duration};

use axum::{Router, extract::ConnectInfo, http::Request};
use hyper_util::rt::TokioIo;
use tokio::{net::TcpListener, task::JoinSet};
use tower_service::Service as _;

/// A server running `router` on the current tokio runtime; see the [module docs](self).
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Binds `127.0.0.1:0` and serves `router` in a background task.
    ///
    /// # Panics
    ///
    /// When no loopback port can be bound.
    pub async fn start(router: Router) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        Server::on(listener, router)
    }

    /// Serves `router` on a listener the caller bound (to know the URL before building the
    /// router, say).
    ///
    /// # Panics
    ///
    /// When the listener has no local address.
    pub fn on(listener: TcpListener, router: Router) -> Server {
        let addr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(accept(listener, router));
        Server { addr, task }
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Drops the listener and the JoinSet of connections: every socket closes.
        self.task.abort();
    }
}

/// Accept loop. Connections live in a `JoinSet` owned by this task, so aborting it closes them
/// all.
async fn accept(listener: TcpListener, router: Router) {
    let mut connections = JoinSet::new();
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(_) => {
                    // Out of file descriptors or similar: let the connections make progress.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            // Reap finished connections so the set does not grow without bound.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo(remote));
            router.clone().call(req)
        });
        connections.spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
