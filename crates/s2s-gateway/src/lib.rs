//! A verifying reverse proxy: the sidecar that checks bearer tokens before a service sees a
//! request, for services that cannot link s2s-auth themselves.
//!
//! ```no_run
//! use s2s_gateway::{Config, Gateway};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::from_toml_str(r#"
//!     listen = "127.0.0.1:8080"
//!
//!     [[issuer]]
//!     id = "https://auth.example.com"
//!     audiences = ["orders-api"]
//!
//!     [upstreams.orders]
//!     url = "http://127.0.0.1:9000"
//!
//!     [[route]]
//!     prefix = "/orders"
//!     upstream = "orders"
//!     scopes.all_of = ["orders:read"]
//! "#)?;
//! let listener = tokio::net::TcpListener::bind(config.listen()).await?;
//! let gateway = Gateway::from_config(config).await?;
//! gateway.serve(listener, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```
//!
//! The binary does the same from a file: `s2s-gateway --config gateway.toml` runs it (SIGTERM
//! or Ctrl-C shut it down gracefully) and `s2s-gateway check --config gateway.toml` checks the
//! file, printing every error with its line and column. [`config`] describes the file.
//!
//! # What it does to a request
//!
//! * **Refuses by default.** Only configured routes are forwarded: a path no route matches is
//!   404, a method its route does not list is 405, both without touching an upstream and
//!   without looking at the token (the route table is public knowledge of the gateway; which
//!   token is missing is not). Matching is case-sensitive unless `[paths] case_insensitive`.
//! * **Refuses ambiguous paths** with 400 (`invalid_request`, saying what is wrong), so that
//!   the route checked is the route the upstream serves: paths are normalized, and dot
//!   segments, encoded slashes, backslashes, empty segments (`//orders`, merged by nginx and
//!   many frameworks), segment parameters (`/docs/..;/orders`, which Tomcat serves as
//!   `/orders`; also an encoded `;`), double-encoded escapes (`%252e`) and encoded control
//!   characters (`/orders%00`, cut at the NUL by C-based servers) are refused. With
//!   `[paths] allow_matrix_parameters`, routing decides on the path such upstreams resolve
//!   instead, and that path is forwarded. With `[paths] case_insensitive`, segments Windows
//!   reads as another name (a trailing `.` or space, `::` streams, `~1` short names,
//!   `ı`/`ſ`/Kelvin sign) are refused too. More than one `Host` header is 400 (RFC 9112 §3.2).
//! * **Verifies** with s2s-auth's `VerifyLayer` and `RequireScopeLayer`, so the answers are theirs
//!   exactly: 401 with `WWW-Authenticate: Bearer …` and a JSON body with an `AUTH_1xx` code,
//!   403 `insufficient_scope` naming the scopes, 503 with `Retry-After` while keys cannot be
//!   loaded. Each issuer's tokens must name one of *that issuer's* audiences, and of the
//!   route's `audiences` when it names some (401 `AUTH_107`, without listing them).
//!   `require_at_jwt` accepts only RFC 9068 access tokens (`typ: at+jwt`); `leeway` and
//!   `[keys]` tune the clock skew and the key cache. The issuers are read by s2s-auth's own
//!   [`VerifierConfig`](s2s_auth::config::VerifierConfig).
//! * **Forwards** method, normalized path, query, headers and bodies, streaming both ways
//!   (nothing is buffered; request bodies are counted against `limits.max_body_bytes`, 413
//!   beyond). Removed: hop-by-hop headers (RFC 9110 §7.6.1: `Connection` and the headers it
//!   names, `Keep-Alive`, `Proxy-*`, `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade`); on
//!   every route, any header the client sent that a CGI-style stack (Rack, PHP-FPM, WSGI)
//!   reads as an identity header (`X-Auth-Subject`, `X-Auth-Client-Id`, `X-Auth-Scopes` by
//!   default; compared with case folded and `_`, or any punctuation, read as `-`, so
//!   `X_Auth_Subject` too), or as a method or URL override (`X-HTTP-Method-Override`,
//!   `X-HTTP-Method`, `X-Method-Override`, `X-Original-URL`, `X-Rewrite-URL`: the route
//!   checked the request's own method and path); optionally `Authorization`. Added: the
//!   identity headers of the verified token (`sub`; `client_id`, else `azp`; the scopes
//!   space-separated). Forwarding headers (`Forwarded`, `X-Forwarded-For`, `X-Real-IP`,
//!   `X-Forwarded-Host`, `X-Forwarded-Proto`) are the gateway's own view of the connection
//!   (the other headers frameworks read for the client's address or scheme, such as
//!   `X-Forwarded-Port`, `-Prefix`, `-Ssl`, `-Scheme`, `Front-End-Https`, `Client-IP`,
//!   `True-Client-IP`, are removed); only from a peer in
//!   `trusted_proxies` are the client's kept, the lists with this hop appended. `Host`
//!   becomes the upstream's unless `preserve_host`.
//! * **Fails in JSON**: `{"error", "error_description"}` with 502 `bad_gateway` when the
//!   upstream cannot be reached, 504 `gateway_timeout` when it does not connect within
//!   `timeouts.connect` or answer within `timeouts.request`.
//! * **Answers itself** `GET /healthz` (always 200), `GET /readyz` (200 once every issuer's
//!   key set is loaded, else 503) and `GET /metrics` (the Prometheus text format: requests by
//!   outcome and `AUTH_1xx` code, upstream status classes and latency, s2s-auth's own counters;
//!   see [`metrics`]); the three paths are configurable (`[health]`) and reserved.
//! * **Logs** one line per request (target `s2s_gateway::access`): method, path, route,
//!   status, subject, latency. Never the token, nor the query.
//!
//! * **Speaks HTTP/2** without TLS: clients may use h2c with prior knowledge (as gRPC clients
//!   do) or HTTP/1.1 on the same port; upstreams marked `http2 = true` are reached over h2c,
//!   so gRPC passes through, streams and response trailers included (`TE: trailers` is kept
//!   for them). Request trailers are dropped: the identity and forwarding rules apply to the
//!   header section, and gRPC clients send none.
//!   A refused gRPC call (`content-type: application/grpc*`) gets s2s-auth's gRPC answer:
//!   HTTP 200 with `grpc-status` 16, 7 or 14 and the same `WWW-Authenticate`; the gateway's
//!   own 404/502/504 answers are left as HTTP statuses, which gRPC clients map to
//!   UNIMPLEMENTED and UNAVAILABLE.
//!
//! * **Bounds client connections**: each must send its first request head (the HTTP/2
//!   preface included) within `timeouts.header_read` (30 s; an HTTP/1.1 client each head), is
//!   closed after `timeouts.idle` (3 min) with no request in flight, HTTP/2 ones are pinged
//!   every 30 s (closed without an answer in 20 s); beyond `limits.max_connections` (1024) new
//!   connections are closed as soon as they are accepted.
//! * **Shares one h2c connection per upstream** among clients: a stream may hold at most
//!   1 MiB of the 32 MiB connection window, so a client that stops reading stalls its own
//!   call and, only with 32 such streams at once, the others. Nothing cuts a stalled stream
//!   earlier than the client's connection going away (the pings above notice a vanished
//!   peer; a live peer that never reads holds its stream until the upstream ends it).
//!
//! Not supported: TLS on either side, protocol upgrades (WebSocket, `Upgrade: h2c`), `CONNECT`.

#![forbid(unsafe_code)]
#![warn(missing_docs, rust_2018_idioms, unreachable_pub)]

mod body;
pub mod config;
pub mod gateway;
pub mod metrics;
mod path;
mod pool;
mod proxy;
mod response;
mod stack;

pub use body::Body;
#[doc(inline)]
pub use config::Config;
pub use config::{ConfigError, ConfigErrors, Location};
#[doc(inline)]
pub use gateway::Gateway;

/// A boxed error, as bodies carry them.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a gateway could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration has errors.
    #[error("invalid configuration:\n{0}")]
    Config(#[from] ConfigErrors),
    /// The verifier could not be built from the issuers.
    #[error("cannot set up token verification: {0}")]
    Auth(#[from] s2s_auth::Error),
}
