//! Forwarding one request to its upstream and its answer back, bodies streamed both ways.

use std::{
    convert::Infallible,
    error::Error as StdError,
    future::Future,
    io,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use bytes::{BufMut, Bytes, BytesMut};
use http::{
    HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, Uri, Version, header,
    uri::PathAndQuery,
};
use http_body_util::{LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper_util::{
    client::legacy::{Client, ResponseFuture, connect::HttpConnector},
    rt::{TokioExecutor, TokioTimer},
};
use ipnet::IpNet;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Timeout, error::Elapsed};
use tower::Service;

use crate::{
    body::{Plain, UpstreamBody},
    config::{Config, IdentityHeaders, UpstreamConfig},
    metrics::{Metrics, Outcome},
    path::{self, PathOptions},
    pool::{ExchangeError, Pool, Pooled},
    response::json_error,
};

/// The peer address of the connection a request came on, written out once per connection
/// for the forwarding headers of all its requests.
#[derive(Clone, Debug)]
pub(crate) struct ClientAddr {
    /// An IPv4 client of a dual-stack listener is an IPv4 address, not `::ffff:a.b.c.d`.
    ip: IpAddr,
    address: HeaderValue,
}

impl ClientAddr {
    pub(crate) fn new(peer: SocketAddr) -> ClientAddr {
        let ip = peer.ip().to_canonical();
        let address = HeaderValue::from_maybe_shared(Bytes::from(ip.to_string()))
            .expect("an IP address is a header value");
        ClientAddr { ip, address }
    }
}

/// The identity headers to send, built from the verified token.
#[derive(Clone, Debug, Default)]
pub(crate) struct Identity {
    pub(crate) subject: Option<HeaderValue>,
    pub(crate) client_id: Option<HeaderValue>,
    pub(crate) scopes: Option<HeaderValue>,
}

/// What is sent upstream as a request body.
pub(crate) type RequestBody = NoTrailers<Limited<Incoming>>;

type UpstreamClient = Client<HttpConnector, RequestBody>;

/// A request body without its trailers. The identity and forwarding rules apply to the header
/// section; trailers (HTTP/2, or chunked HTTP/1.1) could carry `X-Auth-Subject` or another
/// `Authorization` past them, and gRPC clients send none, so they are dropped.
pub(crate) struct NoTrailers<B>(B);

impl<B> http_body::Body for NoTrailers<B>
where
    B: http_body::Body + Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        loop {
            match std::task::ready!(std::pin::Pin::new(&mut self.0).poll_frame(cx)) {
                Some(Ok(frame)) if frame.is_trailers() => {
                    tracing::debug!(target: "s2s_gateway", "request trailers dropped");
                }
                other => return std::task::Poll::Ready(other),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.0.size_hint()
    }
}

/// How long an upstream connection is kept without a request.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The h2c upstream client's flow-control windows (see [`Proxy::new`]).
const H2_STREAM_WINDOW: u32 = 1024 * 1024;
const H2_CONNECTION_WINDOW: u32 = 32 * 1024 * 1024;

/// What every route's forwarding shares: the clients (and their connection pools) and the rules.
pub(crate) struct Proxy {
    /// The HTTP/1.1 connections of each upstream, in the configuration's order.
    pools: Vec<Arc<Pool>>,
    /// For `http2 = true` upstreams: HTTP/2 with prior knowledge (h2c).
    h2_client: UpstreamClient,
    request_timeout: Duration,
    max_body_bytes: u64,
    identity: IdentityHeaders,
    strip_authorization: bool,
    preserve_host: bool,
    trusted_proxies: Vec<IpNet>,
    /// The lengths of every name [`Proxy::is_refused`] compares with (a CGI spelling has the
    /// length of its name): most headers are told apart by their length alone.
    refused_lengths: NameLengths,
    paths: PathOptions,
}

/// Where one route forwards to.
pub(crate) struct Target {
    pub(crate) proxy: Arc<Proxy>,
    pub(crate) upstream: UpstreamConfig,
    /// How many leading path segments (the route prefix's) to remove; 0 for none.
    pub(crate) strip_segments: usize,
    /// Where the upstream's answers are counted.
    pub(crate) metrics: Arc<Metrics>,
    /// The upstream's HTTP/1.1 connections (unused for an HTTP/2 upstream).
    pub(crate) pool: Arc<Pool>,
}

/// How many headers [`Target::forward`] may add: three identity headers, five forwarding
/// headers, and `Host` (the client's).
const ADDED_HEADERS: usize = 9;

impl Proxy {
    pub(crate) fn new(config: &Config) -> Proxy {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(config.timeouts.connect));
        connector.enforce_http(true);
        let pools = config
            .upstreams
            .iter()
            .map(|upstream| {
                let mut parts = http::uri::Parts::default();
                parts.scheme = Some(upstream.scheme.clone());
                parts.authority = Some(upstream.authority.clone());
                parts.path_and_query = Some(PathAndQuery::from_static("/"));
                let uri = Uri::from_parts(parts).expect("a scheme and an authority make a URI");
                Arc::new(Pool::new(connector.clone(), uri, POOL_IDLE_TIMEOUT))
            })
            .collect();
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT);
        // One h2c connection carries many clients' streams and shares one connection-level
        // flow-control window: a client that stops reading leaves its stream's data unread
        // there. A stream may hold at most its own window (1 MiB), so with a 32 MiB
        // connection window 32 stalled streams at once are needed to stall the others. Not
        // the adaptive window: it sizes each stream's window as large as the connection's.
        let h2_client = builder
            .http2_only(true)
            .timer(TokioTimer::new())
            .http2_initial_stream_window_size(H2_STREAM_WINDOW)
            .http2_initial_connection_window_size(H2_CONNECTION_WINDOW)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .http2_keep_alive_timeout(Duration::from_secs(20))
            .build(connector);
        Proxy {
            pools,
            h2_client,
            request_timeout: config.timeouts.request,
            max_body_bytes: config.max_body_bytes,
            identity: config.identity.clone(),
            strip_authorization: config.strip_authorization,
            preserve_host: config.preserve_host,
            trusted_proxies: config.trusted_proxies.clone(),
            paths: config.paths,
            refused_lengths: NameLengths::of(
                [
                    &config.identity.subject,
                    &config.identity.client_id,
                    &config.identity.scopes,
                ]
                .iter()
                .map(|h| h.as_str())
                .chain(OVERRIDE_HEADERS.iter().copied())
                .chain(FORWARDING_HEADERS.iter().copied()),
            ),
        }
    }

    /// The HTTP/1.1 connections of the `index`th upstream of the configuration.
    pub(crate) fn pool(&self, index: usize) -> Arc<Pool> {
        self.pools[index].clone()
    }

    /// Closes the upstream connections idle for longer than [`POOL_IDLE_TIMEOUT`].
    pub(crate) fn close_idle(&self) {
        for pool in &self.pools {
            pool.close_expired();
        }
    }

    /// Whether `ip` is a configured trusted proxy, whose forwarding headers are kept.
    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }

    /// Whether the client's header `name` must not reach the upstream: an identity header, a
    /// method or URL override, or a forwarding header from a peer that is not trusted, under any
    /// spelling a CGI-style stack reads as the same name. A trusted proxy's forwarding headers
    /// are kept in their own spelling only.
    fn is_refused(&self, name: &HeaderName, trusted: bool) -> bool {
        let n = name.as_str();
        if !self.refused_lengths.may_contain(n.len()) {
            return false;
        }
        let names = &self.identity;
        [&names.subject, &names.client_id, &names.scopes]
            .iter()
            .any(|h| same_cgi_name(h.as_str(), n))
            || OVERRIDE_HEADERS.iter().any(|h| same_cgi_name(h, n))
            || FORWARDING_HEADERS
                .iter()
                .any(|h| same_cgi_name(h, n) && !(trusted && *h == n))
    }
}

/// A set of name lengths: one bit per length below 128, and one for every longer length.
#[derive(Clone, Copy, Debug)]
struct NameLengths(u128);

impl NameLengths {
    fn bit(len: usize) -> u128 {
        1 << len.min(127)
    }

    fn of<'a>(names: impl IntoIterator<Item = &'a str>) -> NameLengths {
        NameLengths(names.into_iter().fold(0, |set, n| set | Self::bit(n.len())))
    }

    /// False when no name of the set has this length.
    fn may_contain(self, len: usize) -> bool {
        self.0 & Self::bit(len) != 0
    }
}

/// The forwarding headers: kept from a trusted proxy only. The gateway sets the first five
/// from its own view of the connection; the others it has no view of, so they are only
/// removed. They are what frameworks read for the client's address or scheme or to build
/// URLs: Spring (`X-Forwarded-Port`, `-Prefix`, `-Ssl`), Rack (`X-Forwarded-Ssl`, `-Scheme`),
/// gunicorn (`X-Forwarded-Protocol`, `-Ssl`, trusted from loopback by default), IIS
/// (`Front-End-Https`), Rails and PHP apps (`Client-IP` and the CDN client-address headers).
pub(crate) const FORWARDING_HEADERS: &[&str] = &[
    "forwarded",
    "x-forwarded-for",
    "x-real-ip",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-ssl",
    "x-forwarded-scheme",
    "x-forwarded-protocol",
    "x-forwarded-server",
    "x-forwarded",
    "forwarded-for",
    "x-original-forwarded-for",
    "front-end-https",
    "x-url-scheme",
    "client-ip",
    "x-client-ip",
    "true-client-ip",
    "x-cluster-client-ip",
    "cf-connecting-ip",
    "fastly-client-ip",
];

/// Method and URL override headers: frameworks that honour them (Rails, Laravel, Express's
/// method-override; Symfony and IIS modules for the URL ones) would run another method or
/// path than the one the route allowed, so they never reach an upstream.
pub(crate) const OVERRIDE_HEADERS: &[&str] = &[
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-url",
    "x-rewrite-url",
];

/// Whether two header names are the same to a CGI-style stack (Rack, PHP-FPM, WSGI servers),
/// which reads `X_Auth_Subject` as `X-Auth-Subject` (`HTTP_X_AUTH_SUBJECT`): ASCII case is
/// folded and every character that is not a letter or digit is read as `-`.
pub(crate) fn same_cgi_name(a: &str, b: &str) -> bool {
    let fold = |c: u8| {
        if c.is_ascii_alphanumeric() {
            c.to_ascii_lowercase()
        } else {
            b'-'
        }
    };
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| fold(x) == fold(y))
}

/// Why an upstream exchange failed.
#[derive(Debug, PartialEq, Eq)]
enum Failure {
    Timeout,
    TooLarge,
    Unreachable(String),
}

/// One route's forwarding: the innermost service of its stack.
#[derive(Clone)]
pub(crate) struct Forward(pub(crate) Arc<Target>);

impl Service<Request<Incoming>> for Forward {
    type Response = Response<Plain>;
    type Error = Infallible;
    type Future = Forwarding;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Incoming>) -> Forwarding {
        Target::forward(&self.0, request)
    }
}

pin_project! {
    /// The future of [`Forward`]: the gateway's own answer at once, or the upstream exchange.
    pub(crate) struct Forwarding {
        #[pin]
        state: State,
    }
}

pin_project! {
    #[project = StateProj]
    enum State {
        Answered { response: Option<Response<Plain>> },
        Exchange {
            #[pin]
            exchange: Timeout<Exchange>,
            target: Arc<Target>,
            started: Instant,
        },
    }
}

/// An exchange on a pooled HTTP/1.1 connection.
type Http1Exchange =
    Pin<Box<dyn Future<Output = Result<(Response<Incoming>, Pooled), ExchangeError>> + Send>>;

/// The upstream's answer and the connection it came on (HTTP/1.1), or why there is none.
type Exchanged = Result<(Response<Incoming>, Option<Pooled>), Failure>;

/// One exchange with the upstream: on a pooled HTTP/1.1 connection, or by the h2c client.
enum Exchange {
    Http1(Http1Exchange),
    Http2(ResponseFuture),
}

impl Future for Exchange {
    type Output = Exchanged;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(match self.get_mut() {
            Exchange::Http1(exchange) => match std::task::ready!(exchange.as_mut().poll(cx)) {
                Ok((response, pooled)) => Ok((response, Some(pooled))),
                Err(e) => Err(classify(&*e.error, e.connect)),
            },
            Exchange::Http2(exchange) => match std::task::ready!(Pin::new(exchange).poll(cx)) {
                Ok(response) => Ok((response, None)),
                Err(e) => Err(classify(&e, e.is_connect())),
            },
        })
    }
}

impl Forwarding {
    fn answered(response: Response<Plain>) -> Forwarding {
        Forwarding {
            state: State::Answered {
                response: Some(response),
            },
        }
    }
}

impl Future for Forwarding {
    type Output = Result<Response<Plain>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let response = match self.project().state.project() {
            StateProj::Answered { response } => {
                response.take().expect("Forwarding polled after completion")
            }
            StateProj::Exchange {
                exchange,
                target,
                started,
            } => {
                let result = std::task::ready!(exchange.poll(cx));
                target.answer(result, *started)
            }
        };
        Poll::Ready(Ok(response))
    }
}

impl Target {
    /// Forwards `request`: the upstream's answer, or the gateway's JSON answer when the
    /// upstream cannot be reached in time. Never fails.
    fn forward(this: &Arc<Target>, request: Request<Incoming>) -> Forwarding {
        let started = Instant::now();
        let proxy = &*this.proxy;
        if let Some(length) = content_length(request.headers())
            && length > proxy.max_body_bytes
        {
            this.metrics.request(Outcome::Invalid);
            return Forwarding::answered(too_large(proxy.max_body_bytes));
        }
        let (mut parts, body) = request.into_parts();
        let uri = match this.upstream_uri(&parts.uri, this.upstream.http2) {
            Some(uri) => uri,
            None => {
                this.metrics.request(Outcome::Invalid);
                return Forwarding::answered(json_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "the request path cannot be forwarded",
                ));
            }
        };
        let client = parts.extensions.remove::<ClientAddr>();
        let trusted = client.as_ref().is_some_and(|c| proxy.is_trusted(c.ip));
        let identity = parts.extensions.remove::<Identity>().unwrap_or_default();
        let original_host = parts
            .headers
            .get(header::HOST)
            .cloned()
            .or_else(|| parts.uri.authority().and_then(|a| a.as_str().parse().ok()));

        let headers = &mut parts.headers;
        // `TE: trailers` is the one TE HTTP/2 allows; gRPC servers may insist on it.
        let te_trailers = headers.get_all(header::TE).iter().any(|v| {
            v.to_str().is_ok_and(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
            })
        });
        remove_hop_by_hop(headers);
        let refused: Vec<HeaderName> = headers
            .keys()
            .filter(|name| proxy.is_refused(name, trusted))
            .cloned()
            .collect();
        for name in refused {
            headers.remove(name);
        }
        let names = &proxy.identity;
        // The gateway answered any `Expect: 100-continue` itself and streams the body at once.
        headers.remove(header::EXPECT);
        if proxy.strip_authorization {
            headers.remove(header::AUTHORIZATION);
        }
        if !proxy.preserve_host {
            // The client sets it from the upstream URI.
            headers.remove(header::HOST);
        }
        // Room for every header added below at once (the map grows once, if at all): the
        // identity, forwarding and host headers.
        headers.reserve(ADDED_HEADERS);
        if let Some(v) = identity.subject {
            headers.insert(names.subject.clone(), v);
        }
        if let Some(v) = identity.client_id {
            headers.insert(names.client_id.clone(), v);
        }
        if let Some(v) = identity.scopes {
            headers.insert(names.scopes.clone(), v);
        }
        if let Some(ClientAddr { ip, address }) = client {
            // Lists get this hop appended; single values are the first proxy's, so a trusted
            // proxy's stay and otherwise they are the gateway's view. The address was written
            // once for the connection.
            let written = address.to_str().unwrap_or_default();
            let forwarded = forwarded_element(ip.is_ipv6(), written, original_host.as_ref());
            if let Ok(forwarded) = HeaderValue::from_maybe_shared(Bytes::from(forwarded)) {
                append_list(headers, header::FORWARDED, forwarded);
            }
            append_list(headers, X_FORWARDED_FOR, address.clone());
            for (name, value) in [
                (X_REAL_IP, Some(address)),
                (X_FORWARDED_PROTO, Some(HeaderValue::from_static("http"))),
                (X_FORWARDED_HOST, original_host),
            ] {
                if let Some(value) = value {
                    headers.entry(name).or_insert(value);
                }
            }
        }
        parts.uri = uri;
        if this.upstream.http2 {
            if te_trailers {
                headers.insert(header::TE, HeaderValue::from_static("trailers"));
            }
            parts.version = Version::HTTP_2;
        } else {
            // As a client sets it from the URI: the upstream's authority.
            headers
                .entry(header::HOST)
                .or_insert_with(|| this.pool.host().clone());
            parts.version = Version::HTTP_11;
        }
        let limit = usize::try_from(proxy.max_body_bytes).unwrap_or(usize::MAX);
        let request = Request::from_parts(parts, NoTrailers(Limited::new(body, limit)));
        let exchange = if this.upstream.http2 {
            Exchange::Http2(proxy.h2_client.request(request))
        } else {
            Exchange::Http1(Box::pin(this.pool.clone().send(request)))
        };
        Forwarding {
            state: State::Exchange {
                exchange: tokio::time::timeout(proxy.request_timeout, exchange),
                target: this.clone(),
                started,
            },
        }
    }

    /// The answer to the client once the exchange is over: the upstream's, or the gateway's
    /// 502, 504 or 413; counted for the metrics.
    fn answer(&self, result: Result<Exchanged, Elapsed>, started: Instant) -> Response<Plain> {
        let failure = match result {
            Ok(Ok((response, connection))) => {
                let (mut parts, body) = response.into_parts();
                remove_hop_by_hop(&mut parts.headers);
                self.metrics.upstream(parts.status, started.elapsed());
                self.metrics
                    .request(if parts.status == StatusCode::TOO_MANY_REQUESTS {
                        Outcome::RateLimited
                    } else {
                        Outcome::Forwarded
                    });
                let body = Plain::Upstream(UpstreamBody::new(body, connection));
                return Response::from_parts(parts, body);
            }
            Ok(Err(failure)) => failure,
            Err(_) => Failure::Timeout,
        };
        let proxy = &*self.proxy;
        let name = &self.upstream.name;
        self.metrics.request(match failure {
            Failure::TooLarge => Outcome::Invalid,
            Failure::Timeout | Failure::Unreachable(_) => Outcome::GatewayError,
        });
        match failure {
            Failure::Timeout => {
                tracing::warn!(upstream = %name, "upstream timed out");
                json_error(
                    StatusCode::GATEWAY_TIMEOUT,
                    "gateway_timeout",
                    format!(
                        "upstream `{name}` did not answer within {} ms",
                        proxy.request_timeout.as_millis()
                    ),
                )
            }
            Failure::TooLarge => too_large(proxy.max_body_bytes),
            Failure::Unreachable(cause) => {
                tracing::warn!(upstream = %name, cause = %cause, "upstream unreachable");
                json_error(
                    StatusCode::BAD_GATEWAY,
                    "bad_gateway",
                    format!("upstream `{name}` could not be reached ({cause})"),
                )
            }
        }
    }

    /// The upstream URI: its base path, the request's normalized path (less the route prefix
    /// when stripped) and query; with the upstream's scheme and authority when `absolute`
    /// (HTTP/2: `:scheme` and `:authority`), else in origin form (HTTP/1.1).
    fn upstream_uri(&self, uri: &Uri, absolute: bool) -> Option<Uri> {
        // The same parse routing did: the path forwarded is the one routed (with segment
        // parameters where they are accepted).
        let parsed = path::parse(uri.path(), self.proxy.paths).ok()?;
        let rest = path::without_segments(parsed.forwarded(), self.strip_segments);
        let base = &self.upstream.base_path;
        let query = uri.query();
        let mut pq =
            BytesMut::with_capacity(base.len() + rest.len() + 1 + query.map_or(0, |q| q.len() + 1));
        pq.put_slice(base.as_bytes());
        if !rest.starts_with('/') {
            pq.put_u8(b'/');
        }
        pq.put_slice(rest.as_bytes());
        if let Some(q) = query {
            pq.put_u8(b'?');
            pq.put_slice(q.as_bytes());
        }
        let path_and_query = PathAndQuery::from_maybe_shared(pq.freeze()).ok()?;
        if !absolute {
            return Some(Uri::from(path_and_query));
        }
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(self.upstream.scheme.clone());
        parts.authority = Some(self.upstream.authority.clone());
        parts.path_and_query = Some(path_and_query);
        Uri::from_parts(parts).ok()
    }
}

fn too_large(max: u64) -> Response<Plain> {
    json_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("the request body exceeds the gateway's limit of {max} bytes"),
    )
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Why an exchange failed, from its error's chain; `connect` when it failed connecting.
fn classify(error: &(dyn StdError + 'static), connect: bool) -> Failure {
    let mut source: Option<&(dyn StdError + 'static)> = Some(error);
    let mut io_kind = None;
    while let Some(e) = source {
        if e.is::<LengthLimitError>() {
            return Failure::TooLarge;
        }
        if let Some(io) = e.downcast_ref::<io::Error>() {
            if io.kind() == io::ErrorKind::TimedOut {
                return Failure::Timeout;
            }
            io_kind.get_or_insert(io.kind());
        }
        source = e.source();
    }
    let cause = match io_kind {
        Some(io::ErrorKind::ConnectionRefused) => "connection refused".to_owned(),
        Some(io::ErrorKind::ConnectionReset) => "connection reset".to_owned(),
        Some(kind) if connect => format!("connect failed: {kind}"),
        _ if connect => "connect failed".to_owned(),
        _ => "the connection failed before a complete answer".to_owned(),
    };
    Failure::Unreachable(cause)
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Whether `name` is hop-by-hop by RFC 9110 §7.6.1 (and the de-facto `Proxy-*` and
/// `Keep-Alive`): such headers describe one connection and are never forwarded.
pub(crate) fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection" | "keep-alive" | "te" | "trailer" | "transfer-encoding" | "upgrade"
    ) || name.as_str().starts_with("proxy-")
}

/// Headers a `Connection` list may not remove: the message would lose its framing or target.
const NOT_CONNECTION_OPTIONS: &[&str] = &["host", "content-length", "content-type"];

/// Removes hop-by-hop headers: the fixed ones and those the `Connection` header names.
pub(crate) fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none (and without `Connection`, no other name is listed): one scan
    // of the names is cheaper than hashing each hop-by-hop name to remove it.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .filter(|n| !NOT_CONNECTION_OPTIONS.contains(&n.as_str()))
        .collect();
    for name in listed {
        headers.remove(name);
    }
    // Few headers are hop-by-hop: look for them rather than scan names by prefix unless a
    // `proxy-` header is there.
    for name in [
        header::CONNECTION,
        HeaderName::from_static("keep-alive"),
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::PROXY_AUTHORIZATION,
        header::PROXY_AUTHENTICATE,
    ] {
        headers.remove(name);
    }
    if headers.keys().any(|n| n.as_str().starts_with("proxy-")) {
        let proxy: Vec<HeaderName> = headers
            .keys()
            .filter(|n| n.as_str().starts_with("proxy-"))
            .cloned()
            .collect();
        for name in proxy {
            headers.remove(name);
        }
    }
}

/// Appends `value` to the comma-separated list `name` (several fields are joined into one).
fn append_list(headers: &mut HeaderMap, name: HeaderName, value: HeaderValue) {
    let mut existing = match headers.entry(name) {
        http::header::Entry::Vacant(vacant) => {
            vacant.insert(value);
            return;
        }
        http::header::Entry::Occupied(occupied) => occupied,
    };
    let mut joined = BytesMut::new();
    for field in existing.iter() {
        joined.put_slice(field.as_bytes());
        joined.put_slice(b", ");
    }
    joined.put_slice(value.as_bytes());
    if let Ok(v) = HeaderValue::from_maybe_shared(joined.freeze()) {
        // Replaces every field of the name.
        existing.insert(v);
    }
}

/// One `Forwarded` element (RFC 7239): `for` (the client's `address`, bracketed and quoted
/// when IPv6), `proto` and, when it can be written, `host`.
fn forwarded_element(ipv6: bool, address: &str, host: Option<&HeaderValue>) -> String {
    // The host as a token, quoted, or not at all (it cannot be written).
    let host = host.and_then(|h| h.to_str().ok()).and_then(|host| {
        let is_token = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if is_token {
            Some((host, false))
        } else {
            let quotable = host
                .bytes()
                .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\');
            quotable.then_some((host, true))
        }
    });
    // Exactly the length written, so that the header value keeps this buffer as it is.
    let length = "for=".len()
        + if ipv6 { 4 } else { 0 }
        + address.len()
        + ";proto=http".len()
        + host.map_or(0, |(h, quoted)| {
            ";host=".len() + h.len() + if quoted { 2 } else { 0 }
        });
    let mut element = String::with_capacity(length);
    if ipv6 {
        element.push_str("for=\"[");
        element.push_str(address);
        element.push_str("]\"");
    } else {
        element.push_str("for=");
        element.push_str(address);
    }
    element.push_str(";proto=http");
    match host {
        Some((host, false)) => {
            element.push_str(";host=");
            element.push_str(host);
        }
        Some((host, true)) => {
            element.push_str(";host=\"");
            element.push_str(host);
            element.push('"');
        }
        None => {}
    }
    debug_assert_eq!(element.len(), length);
    element
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_go_with_those_connection_names() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("connection", "keep-alive, X-Secret, Content-Length"),
            ("connection", "x-other"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("x-other", "1"),
            ("proxy-authorization", "Basic x"),
            ("proxy-foo", "1"),
            ("te", "trailers"),
            ("trailer", "x"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("content-length", "3"),
            ("x-kept", "1"),
        ] {
            h.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        remove_hop_by_hop(&mut h);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort();
        assert_eq!(left, vec!["content-length", "x-kept"]);
    }

    #[test]
    fn name_lengths_never_rule_out_a_name_of_the_set() {
        let long = "x".repeat(300);
        let set = NameLengths::of(["x-auth-subject", "te", long.as_str()]);
        for len in ["x-auth-subject".len(), 2, 300, 127, 1000] {
            assert!(set.may_contain(len), "{len}");
        }
        for len in [0, 1, 3, 13, 126] {
            assert!(!set.may_contain(len), "{len}");
        }
    }

    #[test]
    fn forwarded_lists_are_appended() {
        let mut h = HeaderMap::new();
        h.append(X_FORWARDED_FOR, HeaderValue::from_static("10.0.0.1"));
        h.append(X_FORWARDED_FOR, HeaderValue::from_static("10.0.0.2"));
        append_list(
            &mut h,
            X_FORWARDED_FOR,
            HeaderValue::from_static("127.0.0.1"),
        );
        assert_eq!(h[X_FORWARDED_FOR], "10.0.0.1, 10.0.0.2, 127.0.0.1");
        assert_eq!(h.get_all(X_FORWARDED_FOR).iter().count(), 1);
    }

    #[test]
    fn forwarded_elements_quote_what_needs_it() {
        assert_eq!(
            forwarded_element(
                false,
                "192.0.2.1",
                Some(&HeaderValue::from_static("example.com"))
            ),
            "for=192.0.2.1;proto=http;host=example.com"
        );
        assert_eq!(
            forwarded_element(
                true,
                "2001:db8::1",
                Some(&HeaderValue::from_static("example.com:8080"))
            ),
            "for=\"[2001:db8::1]\";proto=http;host=\"example.com:8080\""
        );
        assert_eq!(
            forwarded_element(false, "192.0.2.1", Some(&HeaderValue::from_static("a\"b"))),
            "for=192.0.2.1;proto=http"
        );
    }
}
