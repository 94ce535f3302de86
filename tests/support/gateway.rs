//! The gateway's end-to-end world, shared by the gateway suite and the adversarial corpus: a
//! [`KeyServer`] publishes the keys, an [`Upstream`] (a hyper server that records and counts
//! what reaches it, and echoes it as JSON) stands for the protected service, the gateway runs
//! in-process on its own port ([`start`]), and a hyper client calls it ([`call`], [`send`]).

use std::{
    convert::Infallible,
    future::Future,
    io,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use futures_util::stream;
use http_body_util::{BodyExt, Empty, Full, StreamBody, combinators::BoxBody};
use hyper::{
    HeaderMap, Method, Request, Response, StatusCode,
    body::{Bytes, Frame, Incoming},
    header::{self, HeaderValue},
};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioIo},
};
use jsonwebtoken::Algorithm;
use s2s_gateway::{Config, Gateway};
use serde_json::{Value, json};
use tokio::{net::TcpListener, sync::Notify, task::JoinSet};

use crate::keys::{self, KeyServer, TestKey};

pub const AUD: &str = "orders-api";
pub const REALM: &str = "orders";
pub const MB: u64 = 1024 * 1024;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type ClientBody = BoxBody<Bytes, BoxError>;

// ---------------------------------------------------------------------------------------------
// Bounded waits
// ---------------------------------------------------------------------------------------------

/// Awaits `future` for at most 10 s.
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Polls `condition` until it holds, for at most 10 s.
pub async fn wait_until<F: Future<Output = bool>>(what: &str, mut condition: impl FnMut() -> F) {
    within(what, async {
        while !condition().await {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// The upstream
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
pub struct UpstreamState {
    pub requests: AtomicUsize,
    /// `/hold` and `/slow`: notified on arrival, answer once released.
    pub arrived: Notify,
    pub release: Notify,
    /// `/upload`: bytes received, and a signal at the first ones.
    pub uploaded: AtomicU64,
    pub upload_started: Notify,
    /// `/download`: the client signals its first bytes here.
    pub download_seen: Notify,
}

/// A real HTTP/1.1 server on 127.0.0.1:0 standing for the protected service. Dropping it closes
/// the listener and every connection.
pub struct Upstream {
    pub addr: SocketAddr,
    pub state: Arc<UpstreamState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Upstream {
    pub async fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(UpstreamState::default());
        let task = tokio::spawn(serve_upstream(listener, state.clone()));
        Upstream { addr, state, task }
    }

    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }
}

pub async fn serve_upstream(listener: TcpListener, state: Arc<UpstreamState>) {
    let mut connections = JoinSet::new();
    loop {
        let stream = tokio::select! {
            Ok((stream, _)) = listener.accept() => stream,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let state = state.clone();
        let service = hyper::service::service_fn(move |request| upstream(state.clone(), request));
        connections.spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

pub static CHUNK: [u8; 64 * 1024] = [b'x'; 64 * 1024];

/// A 100 MB body of [`CHUNK`]s that stops half-way until `resume(state)` is notified (within
/// 10 s), and fails if it is not: what no buffering proxy would ever let through. `receiver`
/// names the side that should have seen bytes, for the failure.
pub fn halting_100_mb(
    state: Arc<UpstreamState>,
    resume: fn(&UpstreamState) -> &Notify,
    receiver: &'static str,
) -> ClientBody {
    let total = 100 * MB / CHUNK.len() as u64;
    let body = stream::unfold(0u64, move |i| {
        let state = state.clone();
        async move {
            if i == total {
                return None;
            }
            if i == total / 2 {
                let resumed =
                    tokio::time::timeout(Duration::from_secs(10), resume(&state).notified());
                if resumed.await.is_err() {
                    let e: BoxError = format!("{receiver} saw nothing of the first 50 MB").into();
                    return Some((Err(e), total));
                }
            }
            Some((Ok(Frame::data(Bytes::from_static(&CHUNK))), i + 1))
        }
    });
    BodyExt::boxed(StreamBody::new(body))
}

pub async fn upstream(
    state: Arc<UpstreamState>,
    request: Request<Incoming>,
) -> Result<Response<ClientBody>, Infallible> {
    state.requests.fetch_add(1, Ordering::SeqCst);
    let target = request.uri().to_string();
    let path = request.uri().path().to_owned();
    if path.starts_with("/hold") || path.starts_with("/slow") {
        state.arrived.notify_one();
        state.release.notified().await;
        return Ok(Response::new(full("released")));
    }
    if path.starts_with("/upload") {
        let mut body = request.into_body();
        while let Some(Ok(frame)) = body.frame().await {
            let n = frame.data_ref().map_or(0, |d| d.len() as u64);
            if n > 0 && state.uploaded.fetch_add(n, Ordering::SeqCst) == 0 {
                state.upload_started.notify_one();
            }
        }
        let n = state.uploaded.load(Ordering::SeqCst);
        return Ok(Response::new(full(json!({ "bytes": n }).to_string())));
    }
    if path.starts_with("/download") {
        // Half-way, wait until the client has seen bytes (bounded), else fail the body.
        let body = halting_100_mb(state, |s| &s.download_seen, "the client");
        let mut response = Response::new(body);
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(100 * MB));
        return Ok(response);
    }
    // Anything else: echo what arrived, with hop-by-hop headers of the upstream's own.
    let mut headers = serde_json::Map::new();
    for name in request.headers().keys() {
        let values: Vec<Value> = request
            .headers()
            .get_all(name)
            .iter()
            .map(|v| Value::from(v.to_str().unwrap_or("<binary>")))
            .collect();
        headers.insert(name.as_str().to_owned(), Value::from(values));
    }
    let echo = json!({
        "method": request.method().as_str(),
        "target": target,
        "headers": headers,
    });
    let mut response = Response::new(full(echo.to_string()));
    let h = response.headers_mut();
    h.insert("x-upstream", HeaderValue::from_static("yes"));
    h.insert(
        header::CONNECTION,
        HeaderValue::from_static("x-upstream-hop"),
    );
    h.insert("x-upstream-hop", HeaderValue::from_static("1"));
    h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
    h.insert("proxy-authenticate", HeaderValue::from_static("Basic"));
    Ok(response)
}

pub fn full(data: impl Into<Bytes>) -> ClientBody {
    Full::new(data.into())
        .map_err(|never| match never {})
        .boxed()
}

pub fn empty() -> ClientBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

// ---------------------------------------------------------------------------------------------
// The gateway and its callers
// ---------------------------------------------------------------------------------------------

/// A gateway serving in-process on 127.0.0.1:0.
pub struct Running {
    pub addr: SocketAddr,
    pub shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    pub task: tokio::task::JoinHandle<io::Result<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Running {
    /// `method path` with `headers` and no body, to this gateway.
    pub async fn call(&self, method: Method, path: &str, headers: &[(&str, &str)]) -> Answer {
        call(self.addr, method, path, headers).await
    }

    /// `GET path` with no header.
    pub async fn get(&self, path: &str) -> Answer {
        self.call(Method::GET, path, &[]).await
    }

    /// `method path` with this `Authorization` value (e.g. [`bearer`]).
    pub async fn authorized(&self, method: Method, path: &str, authorization: &str) -> Answer {
        self.call(method, path, &[("authorization", authorization)])
            .await
    }
}

pub async fn start(config: &str) -> Running {
    let config = Config::from_toml_str(config).unwrap_or_else(|e| panic!("{e}\n{config}"));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let gateway = Gateway::from_config(config).await.unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(gateway.serve(listener, async {
        let _ = rx.await;
    }));
    Running {
        addr,
        shutdown: Some(tx),
        task,
    }
}

/// `template` with each `{name}` of `values` replaced.
fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut text = template.to_owned();
    for (name, value) in values {
        text = text.replace(&format!("{{{name}}}"), value);
    }
    text
}

/// A configuration with the issuer of `keys` (audience [`AUD`], realm [`REALM`]) and the
/// upstream `app` at `upstream` (`s2s-gateway/tests/configs/issuer.toml`): `top` goes before
/// the tables, `tables` (the routes, ...) after them.
pub fn issuer_config(keys: &KeyServer, upstream: SocketAddr, top: &str, tables: &str) -> String {
    fill(
        include_str!("../../crates/s2s-gateway/tests/configs/issuer.toml"),
        &[
            ("realm", REALM),
            ("audience", AUD),
            ("top", top),
            ("issuer", &keys.issuer()),
            ("jwks", &keys.jwks_url()),
            ("upstream", &upstream.to_string()),
            ("tables", tables),
        ],
    )
}

/// The test configuration: [`issuer_config`] with the routes of
/// `s2s-gateway/tests/configs/world.toml` (and an upstream `down` that refuses connections);
/// `top` goes before the tables, `tables` after the standard ones.
pub fn config(keys: &KeyServer, upstream: &Upstream, top: &str, tables: &str) -> String {
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let world = fill(
        include_str!("../../crates/s2s-gateway/tests/configs/world.toml"),
        &[("dead", &dead.to_string()), ("tables", tables)],
    );
    issuer_config(keys, upstream.addr, top, &world)
}

/// Key server, signing key, upstream: what most tests start with.
pub struct World {
    pub keys: KeyServer,
    pub key: TestKey,
    pub upstream: Upstream,
}

impl World {
    pub async fn new() -> World {
        let key = TestKey::generate(Algorithm::ES256, "k1");
        let keys = KeyServer::start().await;
        keys.set_keys(&[&key]);
        World {
            keys,
            key,
            upstream: Upstream::start().await,
        }
    }

    pub fn config(&self, top: &str, tables: &str) -> String {
        config(&self.keys, &self.upstream, top, tables)
    }

    /// A world and a gateway on its test configuration (see [`config`]).
    pub async fn with_gateway(top: &str, tables: &str) -> (World, Running) {
        let world = World::new().await;
        let gateway = world.gateway(top, tables).await;
        (world, gateway)
    }

    /// A gateway on the test configuration (see [`config`]).
    pub async fn gateway(&self, top: &str, tables: &str) -> Running {
        start(&self.config(top, tables)).await
    }

    /// Asserts how many requests reached the upstream so far.
    #[track_caller]
    pub fn assert_forwarded(&self, requests: usize, what: &str) {
        assert_eq!(self.upstream.requests(), requests, "{what}");
    }

    /// `Bearer` + a token with the standard claims and `scope`.
    pub fn bearer(&self, scope: &str) -> String {
        bearer(&self.token(scope))
    }

    /// A token with the standard claims (`sub` = `client_id` = svc-orders) and `scope`.
    pub fn token(&self, scope: &str) -> String {
        let mut claims = keys::claims(&self.keys.issuer(), AUD);
        claims["scope"] = scope.into();
        self.key.sign(&claims)
    }
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

pub fn client() -> Client<HttpConnector, ClientBody> {
    Client::builder(TokioExecutor::new()).build_http()
}

pub async fn send(addr: SocketAddr, request: Request<ClientBody>) -> Answer {
    let (parts, body) = request.into_parts();
    let uri = format!("http://{addr}{}", parts.uri);
    let mut request = Request::from_parts(parts, body);
    *request.uri_mut() = uri.parse().unwrap();
    let response = within("the gateway's answer", client().request(request))
        .await
        .expect("the gateway answers");
    let (parts, body) = response.into_parts();
    let body = within("the body", body.collect()).await.unwrap().to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// `method path` with `headers` and no body.
pub async fn call(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
) -> Answer {
    let mut request = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    send(addr, request.body(empty()).unwrap()).await
}

pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

pub fn header<'a>(echo: &'a Value, name: &str) -> Option<&'a str> {
    let values = echo["headers"].get(name)?.as_array()?;
    assert_eq!(
        values.len(),
        1,
        "{name} sent {} times: {values:?}",
        values.len()
    );
    values[0].as_str()
}

/// A public catch-all: what the path refusals protect the other routes from.
pub const CATCH_ALL: &str = "[[route]]\nprefix = \"/\"\nupstream = \"app\"\npublic = true\n";

/// The names of the headers the upstream received.
pub fn header_names(echo: &Value) -> Vec<String> {
    echo["headers"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect()
}
