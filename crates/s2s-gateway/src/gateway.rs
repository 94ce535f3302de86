//! [`Gateway`]: the routes, their verification stacks and the server loop.
//!
//! ```no_run
//! use s2s_gateway::{Config, Gateway};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::from_file("gateway.toml")?;
//! let listener = tokio::net::TcpListener::bind(config.listen()).await?;
//! let gateway = Gateway::from_config(config).await?;
//! // Serves until Ctrl-C, then lets in-flight requests finish (bounded by `timeouts.drain`).
//! gateway
//!     .serve(listener, async {
//!         let _ = tokio::signal::ctrl_c().await;
//!     })
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! Each request goes through, in order:
//!
//! 1. the reserved health paths (`GET`/`HEAD` of `health.liveness`, `health.readiness` and
//!    `health.metrics`, the Prometheus text of [`crate::metrics`]), answered by the
//!    gateway;
//! 2. path normalization (see the crate docs): an ambiguous path is 400, and with matrix
//!    parameters accepted the path routed is the one such upstreams resolve;
//! 3. routing: the longest matching prefix (in any case with `[paths] case_insensitive`); its
//!    methods decide (405 with `Allow` otherwise); no route is 404. None of these reach an
//!    upstream;
//! 4. for a route that is not public: s2s-auth's [`VerifyLayer`] (401/503, RFC 6750), the
//!    issuer's audiences narrowed by the route's, then [`RequireScopeLayer`] (403
//!    `insufficient_scope`). The answers are the layers' own;
//! 5. the forwarding (see the crate docs): 413, 502 and 504 are the gateway's JSON answers.
//!
//! Refusals of the layers are counted for the metrics by a [`Responder::request_handler`],
//! which is given the request's headers: gRPC calls still get the gRPC answer.
//!
//! One `tracing` event per request (target `s2s_gateway::access`, level INFO): method, path
//! (no query), route, status, subject, latency to the response head in µs. Never the token.

use std::{
    convert::Infallible,
    future::Future,
    io,
    net::SocketAddr,
    pin::pin,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst},
    },
    time::Duration,
};

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulConnection},
};
use s2s_auth::{RequireScopeLayer, Responder, Verifier, VerifyLayer};
use tokio::{net::TcpListener, task::JoinSet, time::Instant};
use tower::Layer;

use crate::{
    Body, Error,
    config::{self, Access, Config, Scopes},
    metrics::{self, Metrics, Outcome},
    path::{self, PathOptions},
    proxy::{ClientAddr, Forward, Proxy, Target},
    response::{json, json_error},
    stack::{AfterVerify, AuthContext, RouteService, ScopeCheck, Subject, access_log_enabled},
};

/// A verifying reverse proxy, built from a [`Config`]. See the [module docs](self).
pub struct Gateway {
    shared: Arc<Shared>,
    drain_timeout: Duration,
    connections: ConnectionLimits,
}

/// How long and how many client connections are served.
#[derive(Clone, Copy, Debug)]
struct ConnectionLimits {
    /// From accepting until the first request head; each HTTP/1.1 request head.
    header_read: Duration,
    /// Without a request in flight.
    idle: Duration,
    max: usize,
}

/// How often an HTTP/2 client connection is pinged, and how long its answer may take: a peer
/// gone without a FIN (host down, NAT dropped) is noticed during long streams too.
const H2_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);
const H2_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);

struct Shared {
    /// Longest prefix first.
    routes: Vec<Route>,
    liveness: String,
    readiness: String,
    metrics_path: String,
    metrics: Arc<Metrics>,
    /// Folds the histograms' samples and closes idle upstream connections every
    /// `metrics::UPKEEP_INTERVAL`.
    upkeep: tokio::task::JoinHandle<()>,
    paths: PathOptions,
    verifier: Option<Verifier>,
    /// Loads the key sets in the background until they are all there.
    loader: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Some(loader) = &self.loader {
            loader.abort();
        }
        self.upkeep.abort();
    }
}

struct Route {
    prefix: String,
    methods: Option<Vec<Method>>,
    service: RouteService,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let routes = self.shared.routes.iter().map(|r| (&r.prefix, &r.methods));
        f.debug_struct("Gateway")
            .field("routes", &routes.collect::<Vec<_>>())
            .field("verifier", &self.shared.verifier)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// Builds the gateway: the verifier of every issuer (their key sets start loading in the
    /// background at once; see [`Gateway::is_ready`]), the upstream client and each route's
    /// stack. Must be called within a tokio runtime.
    pub async fn from_config(config: Config) -> Result<Gateway, Error> {
        // The verifier's own counters go to the gateway's recorder.
        let (metrics, verifier) = Metrics::new(|| build_verifier(&config));
        let verifier = verifier?;
        let plain = Responder::default().realm(&config.realm);
        let responder = {
            let metrics = metrics.clone();
            let plain = plain.clone();
            // Given the request's headers, so that gRPC calls get gRPC answers. Each refusal
            // is counted here, once.
            Responder::default().request_handler(move |rejection, request| {
                metrics.refused(rejection.reason());
                plain.respond_to(rejection, request)
            })
        };
        let proxy = Arc::new(Proxy::new(&config));
        let auth = Arc::new(AuthContext {
            issuers: config.issuers.clone(),
            responder: responder.clone(),
        });
        let mut routes = Vec::with_capacity(config.routes.len());
        for route in &config.routes {
            let target = Arc::new(Target {
                proxy: proxy.clone(),
                upstream: config.upstreams[route.upstream].clone(),
                strip_segments: if route.strip_prefix {
                    route.prefix.trim_end_matches('/').matches('/').count()
                } else {
                    0
                },
                metrics: metrics.clone(),
                pool: proxy.pool(route.upstream),
            });
            let forward = Forward(target);
            let service = match (&route.access, &verifier) {
                (Access::Public, _) => RouteService::Public(forward),
                (Access::Token(scopes), Some(verifier)) => {
                    let inner = match scopes {
                        None => ScopeCheck::Open(forward),
                        Some(scopes) => {
                            let layer = match scopes {
                                Scopes::AllOf(s) => {
                                    RequireScopeLayer::all(s.iter().map(String::as_str))
                                }
                                Scopes::AnyOf(s) => {
                                    RequireScopeLayer::any(s.iter().map(String::as_str))
                                }
                            };
                            ScopeCheck::Checked(layer.layer(forward))
                        }
                    };
                    let after_verify = AfterVerify {
                        auth: auth.clone(),
                        audiences: route.audiences.as_deref().map(Arc::from),
                        inner,
                    };
                    RouteService::Token(
                        VerifyLayer::new(verifier.clone())
                            .responder(responder.clone())
                            .layer(after_verify),
                    )
                }
                (Access::Token(_), None) => {
                    // Config::from_toml_str refuses this already.
                    return Err(Error::Auth(s2s_auth::Error::config(format!(
                        "route `{}` requires a token but no issuer is configured",
                        route.prefix
                    ))));
                }
            };
            routes.push(Route {
                prefix: route.prefix.clone(),
                methods: route.methods.clone(),
                service,
            });
        }
        // Longest prefix first; a stable sort keeps the file's order among equal prefixes.
        routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        let loader = verifier.clone().map(|v| tokio::spawn(load_keys(v)));
        let upkeep = tokio::spawn({
            let metrics = metrics.clone();
            async move {
                let mut every = tokio::time::interval(metrics::UPKEEP_INTERVAL);
                loop {
                    every.tick().await;
                    metrics.upkeep();
                    proxy.close_idle();
                }
            }
        });
        Ok(Gateway {
            shared: Arc::new(Shared {
                routes,
                liveness: config.health.liveness.clone(),
                readiness: config.health.readiness.clone(),
                metrics_path: config.health.metrics.clone(),
                metrics,
                upkeep,
                paths: config.paths,
                verifier,
                loader,
            }),
            drain_timeout: config.timeouts.drain,
            connections: ConnectionLimits {
                header_read: config.timeouts.header_read,
                idle: config.timeouts.idle,
                max: config.max_connections,
            },
        })
    }

    /// Whether every issuer's key set is loaded (what the readiness path answers). True at
    /// once when no route needs a token.
    pub fn is_ready(&self) -> bool {
        self.shared.verifier.as_ref().is_none_or(Verifier::is_ready)
    }

    /// The verifier of the configured issuers (none when every route is public), e.g. for its
    /// [`metrics`](Verifier::metrics).
    pub fn verifier(&self) -> Option<&Verifier> {
        self.shared.verifier.as_ref()
    }

    /// The counters in the Prometheus text format, as the metrics path answers them.
    pub fn render_metrics(&self) -> String {
        self.shared.metrics.render()
    }

    /// Serves HTTP/1.1 and HTTP/2 without TLS (h2c, prior knowledge: gRPC clients) on
    /// `listener` until `shutdown` completes; then stops accepting (the
    /// listener is closed, so new connections are refused), lets in-flight requests finish and
    /// closes idle connections, waiting at most the configured drain timeout before cutting
    /// what is left. Returns once every connection is closed.
    ///
    /// Each connection must send its first request head within `timeouts.header_read` (the
    /// protocol sniffing and HTTP/2 preface included; HTTP/1.1 also for each later head), is
    /// closed after `timeouts.idle` with no request in flight, and HTTP/2 ones are pinged every
    /// 30 s (a peer gone without a FIN is closed after 20 s without an answer). Beyond `limits.max_connections` connections at once, new
    /// ones are closed as soon as they are accepted.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> io::Result<()> {
        let limits = self.connections;
        let mut http = auto::Builder::new(TokioExecutor::new());
        http.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read);
        http.http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(H2_KEEP_ALIVE_INTERVAL)
            .keep_alive_timeout(H2_KEEP_ALIVE_TIMEOUT);
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut connections = JoinSet::new();
        let mut shutdown = pin!(shutdown);
        let mut backoff = Duration::from_millis(5);
        let mut full = false;
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(target: "s2s_gateway", %addr, "listening");
        }
        loop {
            let (stream, peer) = tokio::select! {
                biased;
                () = &mut shutdown => break,
                Some(_) = connections.join_next(), if !connections.is_empty() => continue,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => {
                        backoff = Duration::from_millis(5);
                        accepted
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: wait a little, do not spin.
                        tracing::warn!(target: "s2s_gateway", error = %e, "accept failed");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                        continue;
                    }
                },
            };
            // Finished connections were reaped above (biased), so this counts live ones.
            if connections.len() >= limits.max {
                if !full {
                    tracing::warn!(
                        target: "s2s_gateway",
                        max = limits.max,
                        "connection limit reached: new connections are closed"
                    );
                }
                full = true;
                drop(stream);
                continue;
            }
            full = false;
            let _ = stream.set_nodelay(true);
            let activity = Arc::new(Activity::new());
            let shared = self.shared.clone();
            let client = ClientAddr::new(peer);
            let service = hyper::service::service_fn({
                let activity = activity.clone();
                move |request| {
                    let shared = shared.clone();
                    let client = client.clone();
                    let guard = activity.begin();
                    async move {
                        let response = shared.handle(request, client).await;
                        Ok::<_, Infallible>(response.map(|body| InFlight { body, guard }))
                    }
                }
            });
            let connection = http
                .serve_connection(TokioIo::new(stream), service)
                .into_owned();
            let stopped = stopped.clone();
            connections.spawn(drive(connection, activity, limits, stopped, peer));
        }
        drop(listener);
        tracing::info!(
            target: "s2s_gateway",
            connections = connections.len(),
            "shutting down: no new connections; draining"
        );
        let _ = stop.send(true);
        let drained = tokio::time::timeout(self.drain_timeout, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                target: "s2s_gateway",
                connections = connections.len(),
                timeout_ms = self.drain_timeout.as_millis() as u64,
                "drain timeout: closing the connections left"
            );
        }
        connections.shutdown().await;
        tracing::info!(target: "s2s_gateway", "stopped");
        Ok(())
    }
}

/// Whether a client connection has requests in flight, and since when it has none. Updated by
/// every request without waking the connection's driver: the driver's one timer checks it
/// when it fires (see [`drive`]).
struct Activity {
    opened: Instant,
    seen: AtomicBool,
    in_flight: AtomicUsize,
    /// When the last request ended, in nanoseconds since `opened`.
    idle_since: AtomicU64,
    /// Wakes the driver at the first request (only then can the deadline move earlier: from
    /// the first head's to the idle one).
    first_request: tokio::sync::Notify,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            opened: Instant::now(),
            seen: false.into(),
            in_flight: 0.into(),
            idle_since: 0.into(),
            first_request: tokio::sync::Notify::new(),
        }
    }

    fn begin(self: &Arc<Self>) -> RequestGuard {
        self.in_flight.fetch_add(1, SeqCst);
        if !self.seen.swap(true, SeqCst) {
            self.first_request.notify_one();
        }
        RequestGuard(self.clone())
    }

    /// When the connection is to be closed if nothing happens meanwhile; none while a request
    /// is in flight.
    fn deadline(&self, limits: ConnectionLimits) -> Option<Instant> {
        if !self.seen.load(SeqCst) {
            Some(self.opened + limits.header_read)
        } else if self.in_flight.load(SeqCst) == 0 {
            let since = Duration::from_nanos(self.idle_since.load(SeqCst));
            Some(self.opened + since + limits.idle)
        } else {
            None
        }
    }
}

/// A request in flight until its response body is done or dropped.
struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let activity = &self.0;
        if activity.in_flight.fetch_sub(1, SeqCst) == 1 {
            // Centuries of nanoseconds fit in a u64.
            let since = activity.opened.elapsed().as_nanos() as u64;
            activity.idle_since.store(since, SeqCst);
        }
    }
}

/// A response body that keeps its request counted as in flight.
struct InFlight {
    body: Body,
    guard: RequestGuard,
}

impl http_body::Body for InFlight {
    type Data = bytes::Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let _ = &self.guard;
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// Serves one connection: closes it (no answer: there is no request) when its first request
/// head is not in within `header_read`, shuts it down gracefully after `idle` without a
/// request in flight or when the gateway stops, and cuts it if a graceful shutdown takes
/// longer than `header_read`.
///
/// One timer, set to the earliest time the connection could have to close and checked when
/// it fires: requests come and go without re-arming it (a timer per request costs more than
/// the forwarding itself does on a kept-alive connection). Once the first request is in,
/// the deadline only moves later, so the timer is never late.
async fn drive<C>(
    connection: C,
    activity: Arc<Activity>,
    limits: ConnectionLimits,
    mut stopped: tokio::sync::watch::Receiver<bool>,
    peer: SocketAddr,
) where
    C: GracefulConnection<Error: std::fmt::Display>,
{
    let mut connection = pin!(connection);
    let mut closing: Option<Instant> = None;
    // A request in flight cannot end the connection: look again `idle` later at the earliest.
    let next_check = |activity: &Activity| {
        activity
            .deadline(limits)
            .unwrap_or_else(|| Instant::now() + limits.idle)
    };
    let timer = tokio::time::sleep_until(next_check(&activity));
    let mut timer = pin!(timer);
    let mut first_request = true;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(target: "s2s_gateway", error = %e, %peer, "connection ended with an error");
                }
                return;
            }
            _ = stopped.wait_for(|stop| *stop), if closing.is_none() => {
                connection.as_mut().graceful_shutdown();
                let cut = Instant::now() + limits.header_read;
                closing = Some(cut);
                timer.as_mut().reset(cut);
            }
            () = activity.first_request.notified(), if first_request => {
                first_request = false;
                if closing.is_none() {
                    timer.as_mut().reset(next_check(&activity));
                }
            }
            () = timer.as_mut() => {
                if closing.is_some() {
                    tracing::debug!(target: "s2s_gateway", %peer, "connection cut: graceful close took too long");
                    return;
                }
                if !activity.seen.load(SeqCst) {
                    tracing::debug!(target: "s2s_gateway", %peer, "connection closed: no request head in time");
                    return;
                }
                let now = Instant::now();
                if activity.deadline(limits).is_some_and(|at| at <= now) {
                    tracing::debug!(target: "s2s_gateway", %peer, "idle connection closed");
                    connection.as_mut().graceful_shutdown();
                    let cut = now + limits.header_read;
                    closing = Some(cut);
                    timer.as_mut().reset(cut);
                } else {
                    timer.as_mut().reset(next_check(&activity));
                }
            }
        }
    }
}

fn build_verifier(config: &Config) -> Result<Option<Verifier>, Error> {
    match config::verifier_config(config)? {
        Some(verifier) => Ok(Some(verifier.build()?)),
        None => Ok(None),
    }
}

/// Loads every issuer's key set, retrying with back-off until all are there.
async fn load_keys(verifier: Verifier) {
    let mut delay = Duration::from_millis(200);
    loop {
        match verifier.load_keys().await {
            Ok(()) if verifier.is_ready() => {
                tracing::info!(target: "s2s_gateway", "key sets loaded: ready");
                return;
            }
            Ok(()) => {}
            Err(e) => tracing::warn!(
                target: "s2s_gateway",
                error = %e,
                retry_in_ms = delay.as_millis() as u64,
                "key sets not loaded yet"
            ),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}

impl Shared {
    async fn handle(&self, request: Request<Incoming>, client: ClientAddr) -> Response<Body> {
        // Both clones are reference counts, taken only when the access log is on.
        let logged = access_log_enabled().then(|| {
            (
                Instant::now(),
                request.method().clone(),
                request.uri().clone(),
            )
        });
        let (response, route) = self.dispatch(request, client).await;
        let Some((start, method, uri)) = logged else {
            return response;
        };
        let subject = response.extensions().get::<Subject>();
        tracing::info!(
            target: "s2s_gateway::access",
            %method,
            path = %uri.path(),
            route = %route.unwrap_or("-"),
            status = response.status().as_u16(),
            subject = %subject.map_or("-", |s| &*s.0),
            latency_us = start.elapsed().as_micros() as u64,
            "request"
        );
        response
    }

    /// The answer, and the prefix of the route that gave it. Counted for the metrics where it
    /// is decided: here the gateway's own answers, in the route's stack the others (the
    /// forwarding its own, the responder the refusals).
    async fn dispatch(
        &self,
        mut request: Request<Incoming>,
        client: ClientAddr,
    ) -> (Response<Body>, Option<&str>) {
        // RFC 9112 §3.2: more than one Host is 400. Upstreams differ on which one they take,
        // and the gateway's own view (`Forwarded`, `X-Forwarded-Host`) is the first.
        if request
            .headers()
            .get_all(header::HOST)
            .iter()
            .nth(1)
            .is_some()
        {
            let refused = json_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "the request carries more than one Host header: send exactly one",
            );
            self.metrics.request(Outcome::Invalid);
            return (refused, None);
        }
        let route = match self.select(request.method(), request.uri().path()) {
            Selected::Route(route) => route,
            Selected::Answer(response, route) => {
                self.metrics
                    .request(metrics::outcome(&response, route.is_some()));
                return (*response, route);
            }
        };
        request.extensions_mut().insert(client);
        (route.service.answer(request).await, Some(&route.prefix))
    }

    /// The route of a request, or the gateway's own answer.
    fn select(&self, method: &Method, raw_path: &str) -> Selected<'_> {
        if raw_path == self.liveness || raw_path == self.readiness || raw_path == self.metrics_path
        {
            return Selected::answer(self.health(method, raw_path), None);
        }
        if method == Method::CONNECT {
            return Selected::answer(
                json_error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    "CONNECT is not proxied",
                ),
                None,
            );
        }
        let path = match path::parse(raw_path, self.paths) {
            Ok(path) => path,
            Err(e) if raw_path.starts_with('/') => {
                return Selected::answer(
                    json_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_request",
                        format!("the request path is refused: {e}"),
                    ),
                    None,
                );
            }
            Err(_) => return Selected::answer(not_found(), None),
        };
        let case_insensitive = self.paths.case_insensitive;
        let Some(longest) = self
            .routes
            .iter()
            .find(|r| path::matches_prefix(path.routed(), &r.prefix, case_insensitive))
        else {
            return Selected::answer(not_found(), None);
        };
        let candidates = self
            .routes
            .iter()
            .filter(|r| path::same_prefix(&r.prefix, &longest.prefix, case_insensitive));
        if let Some(route) = candidates
            .clone()
            .find(|r| r.methods.as_ref().is_none_or(|m| m.contains(method)))
        {
            return Selected::Route(route);
        }
        let mut allowed: Vec<&str> = Vec::new();
        for m in candidates.flat_map(|r| r.methods.iter().flatten()) {
            if !allowed.contains(&m.as_str()) {
                allowed.push(m.as_str());
            }
        }
        let allow = allowed.join(", ");
        let mut response = json_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{method} is not routed here; allowed: {allow}"),
        );
        if let Ok(v) = HeaderValue::from_str(&allow) {
            response.headers_mut().insert(header::ALLOW, v);
        }
        Selected::answer(response, Some(&longest.prefix))
    }

    fn health(&self, method: &Method, path: &str) -> Response<Body> {
        if method != Method::GET && method != Method::HEAD {
            let mut response = json_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "health paths answer GET and HEAD",
            );
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return response;
        }
        if path == self.metrics_path {
            return self.metrics.response();
        }
        if path == self.liveness {
            return json(StatusCode::OK, &serde_json::json!({ "status": "ok" }));
        }
        match &self.verifier {
            Some(v) if !v.is_ready() => {
                // The loader ends once every key set is loaded: not ready after that means
                // a key set went past its maximum staleness.
                let loaded = self.loader.as_ref().is_some_and(|l| l.is_finished());
                let why = if loaded {
                    "an issuer's key set could not be refreshed for longer than its maximum \
                     staleness (its time to live plus max_stale): its keys are no longer used \
                     and its tokens are answered 503 until a fetch succeeds"
                } else {
                    "the issuers' key sets are not loaded yet"
                };
                json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &serde_json::json!({ "status": "not_ready", "error_description": why }),
                )
            }
            _ => json(StatusCode::OK, &serde_json::json!({ "status": "ready" })),
        }
    }
}

/// What routing decided.
enum Selected<'a> {
    Route(&'a Route),
    /// The gateway's own answer, and the route prefix it concerns (boxed: the rare case).
    Answer(Box<Response<Body>>, Option<&'a str>),
}

impl<'a> Selected<'a> {
    fn answer(response: Response<Body>, route: Option<&'a str>) -> Selected<'a> {
        Selected::Answer(Box::new(response), route)
    }
}

fn not_found() -> Response<Body> {
    json_error(
        StatusCode::NOT_FOUND,
        "not_found",
        "no route of the gateway matches this path",
    )
}
