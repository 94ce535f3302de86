//! The gateway's configuration file (TOML), checked as a whole, with every error located.
//!
//! ```
//! use s2s_gateway::Config;
//!
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
//!     methods = ["GET"]
//!     upstream = "orders"
//!     scopes.any_of = ["orders:read", "orders:admin"]
//! "#).unwrap();
//! assert_eq!(config.listen().port(), 8080);
//!
//! // Every problem is reported, each with its line and column.
//! let errors = Config::from_toml_str(r#"
//! [upstreams.orders]
//! url = "http://127.0.0.1:9000"
//!
//! [[route]]
//! prefix = "/orders"
//! upstream = "ordrs"
//! "#).unwrap_err();
//! let first = &errors.errors()[0];
//! assert_eq!(first.location().map(|l| (l.line, l.column)), Some((7, 12)));
//! assert!(first.message().contains("unknown upstream `ordrs`"), "{errors}");
//! ```
//!
//! # The file
//!
//! ```toml
//! # Where the gateway listens (default 127.0.0.1:8080).
//! listen = "0.0.0.0:8080"
//! # The realm of WWW-Authenticate challenges (default "api").
//! realm = "orders"
//! # Remove the caller's Authorization header before forwarding (default false: the upstream
//! # may want to pass the token on).
//! strip_authorization = false
//! # Forward the client's Host header instead of the upstream's authority (default false).
//! preserve_host = false
//! # Allow http:// issuer and JWKS URLs to hosts that are not loopback (default false).
//! allow_insecure_http = false
//! # Accept only RFC 9068 access tokens, `typ: at+jwt` (default false).
//! require_at_jwt = false
//! # Clock skew allowed on a token's `exp` and `nbf` (default 30s).
//! leeway = "30s"
//! # Peers whose Forwarded, X-Forwarded-For, X-Real-IP, X-Forwarded-Host and X-Forwarded-Proto
//! # headers are kept, the lists with this hop appended (CIDRs; a bare address is /32 or /128).
//! # From any other peer they are replaced with the gateway's view. Default: none.
//! trusted_proxies = ["10.0.0.0/8", "::1/128"]
//!
//! # One table per accepted issuer. Keys come from its discovery metadata
//! # ({id}/.well-known/openid-configuration, then RFC 8414's), or from `jwks_url` when given.
//! [[issuer]]
//! id = "https://auth.example.com"
//! audiences = ["orders-api"]
//! # jwks_url = "https://auth.example.com/jwks.json"
//!
//! # Where requests go: plain http:// base URLs (a base path is prepended to the request path).
//! # `http2 = true`: the upstream speaks HTTP/2 without TLS (h2c), as gRPC servers do; needed
//! # for gRPC (its trailers). Default: HTTP/1.1.
//! [upstreams.orders]
//! url = "http://127.0.0.1:9000"
//! # http2 = true
//!
//! # Routes: the longest matching `prefix` (whole path segments) wins; its `methods` (default:
//! # all; matched literally, so list HEAD beside GET, and OPTIONS in a public route of the same
//! # prefix for CORS preflights) decide, and a method it does not list is 405, never a shorter
//! # prefix's route. Without `public = true` a route needs a valid token, and `scopes.all_of` /
//! # `scopes.any_of` add the scopes it needs. `audiences` narrows the token's issuer's: the
//! # token's `aud` must name one that is both the route's and its issuer's (so a billing-api
//! # token cannot pass /orders); each must be some issuer's. Default: any of the issuer's.
//! [[route]]
//! prefix = "/orders"
//! methods = ["GET", "HEAD"]
//! upstream = "orders"
//! scopes.any_of = ["orders:read", "orders:admin"]
//! audiences = ["orders-api"]
//!
//! [[route]]
//! prefix = "/orders"
//! methods = ["POST"]
//! upstream = "orders"
//! scopes.all_of = ["orders:write"]
//!
//! [[route]]
//! prefix = "/docs"
//! upstream = "orders"
//! public = true
//! # strip_prefix = true   # forward /docs/x as /x
//!
//! # The issuers' key sets (s2s-auth's key cache): the bounds of their time to live (the
//! # server's Cache-Control within them; default_ttl without one), and how long known keys
//! # keep verifying through a key-server outage past it. Defaults: 1m, 24h, 5m, 24h.
//! [keys]
//! min_ttl = "1m"
//! max_ttl = "24h"
//! default_ttl = "5m"
//! max_stale = "24h"
//!
//! [timeouts]
//! connect = "5s"    # TCP connect to the upstream: past it, 504
//! request = "30s"   # from forwarding until the upstream's response head: past it, 504
//! drain = "30s"     # on shutdown, how long in-flight requests may still finish
//! # From accepting a connection until its first request head (HTTP/2 preface included), and
//! # each HTTP/1.1 request head: past it the connection is closed (slow or silent clients).
//! header_read = "30s"
//! idle = "3m"       # a client connection with no request in flight for this long is closed
//!
//! [limits]
//! max_body_bytes = 10485760   # request bodies above it are refused with 413 (streamed, counted)
//! # Client connections served at once; more are closed at once (keep it below the process's
//! # file descriptor limit, `ulimit -n`, less the upstream connections).
//! max_connections = 1024
//!
//! # How request paths are read. Always refused (400): dot segments, encoded `/` and `\`,
//! # backslashes, empty segments (`//x`), an encoded `;` (%3B), double-encoded escapes (%252e),
//! # encoded control characters (%00).
//! [paths]
//! # false: a path whose segments carry `;` parameters is refused (Tomcat, Jetty and Spring
//! # serve `/docs/..;/orders` as `/orders`). true: routes decide on the path those upstreams
//! # resolve (parameters removed from each segment, then `.` and `..` resolved), and that
//! # path is forwarded, each segment with its parameters.
//! allow_matrix_parameters = false
//! # Routes match ASCII letters in any case, for upstreams that do (IIS, ASP.NET); segments
//! # Windows reads as another name (trailing `.` or space, `::`, `~1`, `ı`) are then refused.
//! case_insensitive = false
//!
//! # Headers the upstream receives. Any the client sent under these names is removed, also
//! # spelt with `_` for `-` or in another case (CGI stacks read those as the same header).
//! [identity_headers]
//! subject = "X-Auth-Subject"
//! client_id = "X-Auth-Client-Id"
//! scopes = "X-Auth-Scopes"
//!
//! # Paths the gateway answers itself, before any route (GET and HEAD).
//! [health]
//! liveness = "/healthz"
//! readiness = "/readyz"
//! metrics = "/metrics"     # the Prometheus text format
//! ```
//!
//! # Where each section is checked
//!
//! One file per part of the file, each with its own checks and tests: `server` (`listen`,
//! `realm`, `trusted_proxies`), `issuers` (`[[issuer]]`, `leeway` and `[keys]`, built into
//! s2s-auth's [`VerifierConfig`](s2s_auth::config::VerifierConfig)), `upstreams`, `routes`, `paths`,
//! `identity` (`[identity_headers]`), `health` and `limits` (`[timeouts]`, `[limits]`); `error`
//! locates and renders what they find.

use std::{collections::BTreeMap, net::SocketAddr, path::Path, time::Duration};

use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

use crate::path::PathOptions;

/// Declares a table of the file as written whose keys are all optional strings, each kept with
/// its place in the text (`Option<Spanned<String>>`) for the errors.
macro_rules! text_table {
    ($(#[$doc:meta])* $name:ident { $($key:ident),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Default, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub(super) struct $name {
            $($key: Option<toml::Spanned<String>>,)+
        }
    };
}

mod error;
mod health;
mod identity;
mod issuers;
mod limits;
mod paths;
mod routes;
mod server;
mod upstreams;

pub use error::{ConfigError, ConfigErrors, Location};
pub(crate) use health::HealthPaths;
pub(crate) use identity::IdentityHeaders;
pub(crate) use issuers::{IssuerConfig, VerifierSettings, verifier_config};
pub(crate) use limits::Timeouts;
pub use limits::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_DRAIN_TIMEOUT, DEFAULT_MAX_BODY_BYTES, DEFAULT_REQUEST_TIMEOUT,
};
pub(crate) use routes::{Access, RouteConfig, Scopes};
pub use server::DEFAULT_LISTEN;
pub(crate) use upstreams::UpstreamConfig;

use error::Errors;

/// The file as written: each section's raw form, checked by its module.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<Spanned<String>>,
    realm: Option<Spanned<String>>,
    #[serde(default)]
    strip_authorization: bool,
    #[serde(default)]
    preserve_host: bool,
    #[serde(default)]
    allow_insecure_http: bool,
    #[serde(default)]
    require_at_jwt: bool,
    leeway: Option<Spanned<String>>,
    trusted_proxies: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    paths: paths::RawPaths,
    #[serde(default, rename = "issuer")]
    issuers: Vec<Spanned<issuers::RawIssuer>>,
    #[serde(default)]
    upstreams: BTreeMap<String, Spanned<upstreams::RawUpstream>>,
    #[serde(default, rename = "route")]
    routes: Vec<Spanned<routes::RawRoute>>,
    #[serde(default)]
    timeouts: limits::RawTimeouts,
    #[serde(default)]
    limits: limits::RawLimits,
    #[serde(default)]
    identity_headers: identity::RawIdentityHeaders,
    #[serde(default)]
    health: health::RawHealth,
    #[serde(default)]
    keys: issuers::RawKeys,
}

/// A checked gateway configuration. Build it with [`Config::from_toml_str`] or
/// [`Config::from_file`]; the [module docs](self) describe the file.
#[derive(Clone, Debug)]
pub struct Config {
    pub(crate) listen: SocketAddr,
    pub(crate) realm: String,
    pub(crate) strip_authorization: bool,
    pub(crate) preserve_host: bool,
    pub(crate) allow_insecure_http: bool,
    pub(crate) require_at_jwt: bool,
    /// `leeway` and `[keys]`, for the verifier.
    pub(crate) verifier: VerifierSettings,
    /// Peers whose forwarding headers are kept (and appended to).
    pub(crate) trusted_proxies: Vec<IpNet>,
    pub(crate) paths: PathOptions,
    pub(crate) issuers: Vec<IssuerConfig>,
    pub(crate) upstreams: Vec<UpstreamConfig>,
    pub(crate) routes: Vec<RouteConfig>,
    pub(crate) timeouts: Timeouts,
    pub(crate) max_body_bytes: u64,
    pub(crate) max_connections: usize,
    pub(crate) identity: IdentityHeaders,
    pub(crate) health: HealthPaths,
}

impl Config {
    /// Parses and checks a configuration. Every problem found is returned, each with the line
    /// and column it is at; nothing is fetched (issuers are contacted when the gateway starts).
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigErrors> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let message = e.message().trim_end().to_owned();
            ConfigErrors::one(ConfigError::new(message, e.span(), text))
        })?;
        let mut errors = Errors::new(text);
        let config = check(&raw, &mut errors);
        errors.finish(config)
    }

    /// Reads and checks the configuration file at `path` (see [`Config::from_toml_str`]).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Config, ConfigErrors> {
        let path = path.as_ref();
        match std::fs::read_to_string(path) {
            Ok(text) => Config::from_toml_str(&text),
            Err(e) => Err(ConfigErrors::one(ConfigError::new(
                format!("cannot read {}: {e}", path.display()),
                None,
                "",
            ))),
        }
    }

    /// The address to listen on.
    pub fn listen(&self) -> SocketAddr {
        self.listen
    }

    /// How long a graceful shutdown waits for in-flight requests.
    pub fn drain_timeout(&self) -> Duration {
        self.timeouts.drain
    }

    /// How many routes, issuers and upstreams the configuration has, in that order.
    pub fn counts(&self) -> (usize, usize, usize) {
        (self.routes.len(), self.issuers.len(), self.upstreams.len())
    }
}

/// Checks each section, the routes last (they name upstreams, issuers' audiences and must not
/// take the health paths).
fn check(raw: &RawConfig, errors: &mut Errors<'_>) -> Config {
    let listen = server::listen(raw.listen.as_ref(), errors);
    let realm = server::realm(raw.realm.as_ref(), errors);
    let trusted_proxies = server::trusted_proxies(raw.trusted_proxies.as_ref(), errors);
    let issuers = issuers::check(&raw.issuers, raw.allow_insecure_http, errors);
    let upstreams = upstreams::check(&raw.upstreams, errors);
    let health = health::check(&raw.health, errors);
    let paths = PathOptions::from(&raw.paths);
    let routes = routes::check(
        &raw.routes,
        &routes::Known {
            upstreams: &upstreams,
            issuers: &issuers,
            health: &health,
            case_insensitive: paths.case_insensitive,
        },
        errors,
    );
    Config {
        listen,
        realm,
        strip_authorization: raw.strip_authorization,
        preserve_host: raw.preserve_host,
        allow_insecure_http: raw.allow_insecure_http,
        require_at_jwt: raw.require_at_jwt,
        verifier: issuers::settings(raw.leeway.as_ref(), &raw.keys, errors),
        trusted_proxies,
        paths,
        issuers,
        upstreams,
        routes,
        timeouts: limits::timeouts(&raw.timeouts, errors),
        max_body_bytes: limits::max_body_bytes(&raw.limits, errors),
        max_connections: limits::max_connections(&raw.limits, errors),
        identity: identity::check(&raw.identity_headers, errors),
        health,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An upstream `app` (lines 1 and 2), for the sections' tests.
    pub(crate) const UPSTREAM: &str = "[upstreams.app]\nurl = \"http://127.0.0.1:9000\"\n";

    /// [`UPSTREAM`] and a public catch-all route to it (lines 1 to 6): a valid configuration.
    pub(crate) const PUBLIC: &str = "[upstreams.app]\nurl = \"http://127.0.0.1:9000\"\n\
        [[route]]\nprefix = \"/\"\nupstream = \"app\"\npublic = true\n";

    /// The configuration of [`PUBLIC`] followed by `rest` (from line 7), which must be valid.
    pub(crate) fn public_with(rest: &str) -> Config {
        let text = format!("{PUBLIC}{rest}");
        Config::from_toml_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    /// Asserts that `text` has exactly one error, on `line` (0: the file as a whole), saying `says`.
    #[track_caller]
    pub(crate) fn assert_one_error(text: &str, line: usize, says: &str) {
        let e = errors_of(text);
        assert!(
            e.len() == 1 && e[0].0 == line && e[0].2.contains(says),
            "{text}\n{e:#?}"
        );
    }

    /// The errors of `text` as (line, column, message); (0, 0) for the file as a whole.
    pub(crate) fn errors_of(text: &str) -> Vec<(usize, usize, String)> {
        Config::from_toml_str(text)
            .unwrap_err()
            .errors()
            .iter()
            .map(|e| {
                let l = e.location().unwrap_or(Location { line: 0, column: 0 });
                (l.line, l.column, e.message().to_owned())
            })
            .collect()
    }

    #[test]
    fn the_file_of_the_module_docs_is_valid() {
        let source = include_str!("mod.rs");
        let start = source.find("//! ```toml\n").unwrap() + "//! ```toml\n".len();
        let end = start + source[start..].find("//! ```\n").unwrap();
        let text: String = source[start..end]
            .lines()
            .map(|l| format!("{}\n", l.trim_start_matches("//!").trim_start_matches(' ')))
            .collect();
        let c = Config::from_toml_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(c.counts(), (3, 1, 1));
        assert_eq!(c.verifier.keys.len(), 4);
    }

    #[test]
    fn syntax_and_unknown_fields_are_located() {
        let e = errors_of("listen = \"127.0.0.1:1\"\nlisten_addr = 3\n");
        assert_eq!(e.len(), 1);
        assert_eq!((e[0].0, e[0].1), (2, 1), "{e:?}");
        assert!(e[0].2.contains("unknown field `listen_addr`"), "{e:?}");
        let e = errors_of("[[route]\n");
        assert_eq!(e[0].0, 1, "{e:?}");
    }

    #[test]
    fn every_semantic_error_is_reported() {
        let text = format!(
            "listen = \"nowhere\"\n\
             {UPSTREAM}\
             [[route]]\n\
             prefix = \"orders\"\n\
             upstream = \"app\"\n\
             methods = [\"get\"]\n\
             [[route]]\n\
             prefix = \"/a/../b\"\n\
             upstream = \"app\"\n\
             public = true\n\
             scopes.all_of = [\"x y\"]\n\
             [timeouts]\n\
             request = \"soon\"\n"
        );
        let e = errors_of(&text);
        let lines: Vec<usize> = e.iter().map(|e| e.0).collect();
        assert_eq!(lines, vec![1, 5, 7, 9, 12, 12, 14, 0], "{e:#?}");
        assert!(e.last().unwrap().2.contains("no [[issuer]]"), "{e:#?}");
    }

    #[test]
    fn routes_are_checked_against_the_health_paths() {
        let e = errors_of(&format!(
            "{UPSTREAM}[[route]]\nprefix = \"/healthz\"\nupstream = \"app\"\npublic = true\n"
        ));
        assert_eq!(e.len(), 1, "{e:#?}");
        assert!(e[0].2.contains("health path"), "{e:#?}");
        let c = Config::from_toml_str(&format!(
            "{UPSTREAM}[[route]]\nprefix = \"/healthz\"\nupstream = \"app\"\npublic = true\n\
             [health]\nliveness = \"/live\"\n"
        ))
        .unwrap();
        assert_eq!(c.health.liveness, "/live");
    }

    #[test]
    fn render_points_at_the_value() {
        let errors = Config::from_toml_str(&format!(
            "{UPSTREAM}[[route]]\nprefix = \"/\"\nupstream = \"nope\"\npublic = true\n"
        ))
        .unwrap_err();
        let out = errors.render("gw.toml");
        assert_eq!(
            out,
            "gw.toml:5:12: error: unknown upstream `nope`; known: `app`\n  |\n5 | upstream = \"nope\"\n  |            ^^^^^^\n"
        );
    }

    #[test]
    fn flags_default_to_false() {
        let c = public_with("");
        assert!(!c.strip_authorization && !c.preserve_host);
        assert!(!c.allow_insecure_http && !c.require_at_jwt);
        let c = Config::from_toml_str(&format!(
            "strip_authorization = true\npreserve_host = true\nrequire_at_jwt = true\n{PUBLIC}"
        ))
        .unwrap();
        assert!(c.strip_authorization && c.preserve_host && c.require_at_jwt);
    }
}
