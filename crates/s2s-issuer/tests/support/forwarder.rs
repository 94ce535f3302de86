//! A TCP forwarder on 127.0.0.1:0 that a test can cut and restore: the "server misbehaving on
//! purpose" between an issuer and PostgreSQL (a database outage without stopping the shared
//! server), and a round-robin front of several replicas (one URL for all of them).

#![allow(dead_code, unreachable_pub)]

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use tokio::{
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};

/// Forwards each connection to the next upstream in turn.
pub struct Forwarder {
    addr: SocketAddr,
    upstreams: Arc<Mutex<Vec<SocketAddr>>>,
    next: Arc<AtomicUsize>,
    /// The accept loop while serving (`None` while cut: new connections are refused).
    accept: Mutex<Option<JoinHandle<()>>>,
    /// The forwarding tasks of open connections.
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Forwarder {
    /// Listens on a free port of 127.0.0.1, forwarding to `upstreams` (may be set later).
    pub async fn start(upstreams: Vec<SocketAddr>) -> Forwarder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let forwarder = Forwarder {
            addr: listener.local_addr().unwrap(),
            upstreams: Arc::new(Mutex::new(upstreams)),
            next: Arc::default(),
            accept: Mutex::new(None),
            conns: Arc::default(),
        };
        forwarder.serve(listener);
        forwarder
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn set_upstreams(&self, upstreams: Vec<SocketAddr>) {
        *self.upstreams.lock().unwrap() = upstreams;
    }

    fn serve(&self, listener: TcpListener) {
        let (upstreams, next, conns) = (
            self.upstreams.clone(),
            self.next.clone(),
            self.conns.clone(),
        );
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                let target = {
                    let list = upstreams.lock().unwrap();
                    if list.is_empty() {
                        continue;
                    }
                    list[next.fetch_add(1, Ordering::SeqCst) % list.len()]
                };
                let conn = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                let mut open = conns.lock().unwrap();
                open.retain(|c| !c.is_finished());
                open.push(conn);
            }
        });
        *self.accept.lock().unwrap() = Some(task);
    }

    /// Closes every open connection and stops listening: new connections are refused.
    pub fn cut(&self) {
        if let Some(accept) = self.accept.lock().unwrap().take() {
            accept.abort();
        }
        for conn in self.conns.lock().unwrap().drain(..) {
            conn.abort();
        }
    }

    /// Listens on the same port again.
    pub async fn restore(&self) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        let listener = loop {
            // The aborted accept loop drops its listener at its next poll: retry briefly.
            match TcpListener::bind(self.addr).await {
                Ok(listener) => break listener,
                Err(_) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
                Err(e) => panic!("cannot listen on {} again: {e}", self.addr),
            }
        };
        self.serve(listener);
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.cut();
    }
}
