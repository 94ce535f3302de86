//! What the gateway's benches share: servers on threads of their own, as separate processes
//! would be, and a static upstream.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use http_body_util::Full;
use hyper::{Request, Response, body::Bytes};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Runs `serve` with a listener on 127.0.0.1:0 on a thread of its own, on a current-thread
/// runtime or one of `workers` workers; returns the bound address.
pub fn on_own_thread<F, Fut>(name: &str, workers: usize, serve: F) -> SocketAddr
where
    F: FnOnce(TcpListener) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let rt = if workers == 0 {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
            } else {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(workers)
                    .enable_all()
                    .build()
            }
            .unwrap();
            rt.block_on(async move {
                let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                serve(listener).await;
            });
        })
        .unwrap();
    rx.recv().unwrap()
}

/// Serves `body` for every request, counting the connections it accepts.
pub fn serve_static(
    name: &str,
    body: &'static [u8],
    content_type: &'static str,
    accepted: Arc<AtomicUsize>,
) -> SocketAddr {
    on_own_thread(name, 0, move |listener| async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            accepted.fetch_add(1, Ordering::Relaxed);
            let _ = stream.set_nodelay(true);
            let service =
                hyper::service::service_fn(move |_: Request<hyper::body::Incoming>| async move {
                    let mut response = Response::new(Full::new(Bytes::from_static(body)));
                    response.headers_mut().insert(
                        hyper::header::CONTENT_TYPE,
                        hyper::header::HeaderValue::from_static(content_type),
                    );
                    Ok::<_, Infallible>(response)
                });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    })
}
