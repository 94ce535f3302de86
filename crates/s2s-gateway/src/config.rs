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
//! [upstreams.orders]
//! url = "http://127.0.0.1:9000"
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
//! [timeouts]
//! connect = "5s"    # TCP connect to the upstream: past it, 504
//! request = "30s"   # from forwarding until the upstream's response head: past it, 504
//! drain = "30s"     # on shutdown, how long in-flight requests may still finish
//!
//! [limits]
//! max_body_bytes = 10485760   # request bodies above it are refused with 413 (streamed, counted)
//!
//! # How request paths are read. Always refused (400): dot segments, encoded `/` and `\`,
//! # backslashes, empty segments (`//x`), an encoded `;` (%3B).
//! [paths]
//! # false: a path whose segments carry `;` parameters is refused (Tomcat, Jetty and Spring
//! # serve `/docs/..;/orders` as `/orders`). true: routes decide on the path those upstreams
//! # resolve (parameters removed from each segment, then `.` and `..` resolved), and that
//! # path is forwarded, each segment with its parameters.
//! allow_matrix_parameters = false
//! # Routes match ASCII letters in any case, for upstreams that do (IIS, ASP.NET); segments
//! # ending in `.` or a space, which Windows drops, are then refused as well.
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
//! ```

use std::{
    collections::BTreeMap, fmt, net::SocketAddr, ops::Range, path::Path, str::FromStr,
    time::Duration,
};

use http::{HeaderName, Method, uri::Authority, uri::Scheme};
use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

use crate::path::{self, PathOptions};

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default upstream connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default time an upstream has to answer (until its response head).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Default bound of the graceful shutdown.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Default limit of request bodies.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 10 * 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// A line and column in the configuration text, both from 1 (columns count characters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1, in characters.
    pub column: usize,
}

/// One problem of a configuration, located where the text allows it.
#[derive(Clone, Debug)]
pub struct ConfigError {
    message: String,
    span: Option<Range<usize>>,
    location: Option<Location>,
    source_line: Option<String>,
}

impl ConfigError {
    fn new(message: impl Into<String>, span: Option<Range<usize>>, source: &str) -> Self {
        let (location, source_line) = match &span {
            Some(span) => {
                let start = span.start.min(source.len());
                let line_start = source[..start].rfind('\n').map_or(0, |i| i + 1);
                let line_end = source[start..]
                    .find('\n')
                    .map_or(source.len(), |i| start + i);
                let location = Location {
                    line: source[..start].matches('\n').count() + 1,
                    column: source[line_start..start].chars().count() + 1,
                };
                let text = source[line_start..line_end].trim_end_matches('\r');
                (Some(location), Some(text.to_owned()))
            }
            None => (None, None),
        };
        ConfigError {
            message: message.into(),
            span,
            location,
            source_line,
        }
    }

    /// What is wrong and, where it helps, what would be right.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Where, as a line and column.
    pub fn location(&self) -> Option<Location> {
        self.location
    }

    /// Where, as a byte range of the text.
    pub fn span(&self) -> Option<Range<usize>> {
        self.span.clone()
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.location {
            Some(Location { line, column }) => write!(f, "{line}:{column}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Every problem found in a configuration (at least one).
#[derive(Clone, Debug)]
pub struct ConfigErrors {
    errors: Vec<ConfigError>,
}

impl ConfigErrors {
    /// The problems, in the order of the text.
    pub fn errors(&self) -> &[ConfigError] {
        &self.errors
    }

    /// Renders the errors for a terminal, each as `NAME:LINE:COLUMN: error: MESSAGE` followed
    /// by the line of the file and a caret under the place.
    pub fn render(&self, name: &str) -> String {
        let mut out = String::new();
        for e in &self.errors {
            match (e.location, &e.source_line) {
                (Some(Location { line, column }), Some(text)) => {
                    let gutter = line.to_string().len();
                    let width = e.span.as_ref().map_or(1, |s| {
                        let len = s.end.saturating_sub(s.start);
                        len.clamp(1, text.chars().count().saturating_sub(column - 1).max(1))
                    });
                    out.push_str(&format!(
                        "{name}:{line}:{column}: error: {}\n{:gutter$} |\n{line} | {text}\n{:gutter$} | {}{}\n",
                        e.message,
                        "",
                        "",
                        " ".repeat(column - 1),
                        "^".repeat(width),
                    ));
                }
                _ => out.push_str(&format!("{name}: error: {}\n", e.message)),
            }
        }
        out
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Collects errors against one source text.
struct Errors<'a> {
    source: &'a str,
    errors: Vec<ConfigError>,
}

impl Errors<'_> {
    fn at(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.errors
            .push(ConfigError::new(message, Some(span), self.source));
    }

    fn global(&mut self, message: impl Into<String>) {
        self.errors
            .push(ConfigError::new(message, None, self.source));
    }
}

// ---------------------------------------------------------------------------------------------
// The file as written
// ---------------------------------------------------------------------------------------------

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
    trusted_proxies: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    paths: RawPaths,
    #[serde(default, rename = "issuer")]
    issuers: Vec<Spanned<RawIssuer>>,
    #[serde(default)]
    upstreams: BTreeMap<String, Spanned<RawUpstream>>,
    #[serde(default, rename = "route")]
    routes: Vec<Spanned<RawRoute>>,
    #[serde(default)]
    timeouts: RawTimeouts,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    identity_headers: RawIdentityHeaders,
    #[serde(default)]
    health: RawHealth,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIssuer {
    id: Spanned<String>,
    jwks_url: Option<Spanned<String>>,
    audiences: Spanned<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    url: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    prefix: Spanned<String>,
    upstream: Spanned<String>,
    methods: Option<Spanned<Vec<Spanned<String>>>>,
    public: Option<Spanned<bool>>,
    scopes: Option<Spanned<RawScopes>>,
    audiences: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    strip_prefix: bool,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPaths {
    #[serde(default)]
    allow_matrix_parameters: bool,
    #[serde(default)]
    case_insensitive: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScopes {
    all_of: Option<Spanned<Vec<Spanned<String>>>>,
    any_of: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTimeouts {
    connect: Option<Spanned<String>>,
    request: Option<Spanned<String>>,
    drain: Option<Spanned<String>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_body_bytes: Option<Spanned<i64>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdentityHeaders {
    subject: Option<Spanned<String>>,
    client_id: Option<Spanned<String>>,
    scopes: Option<Spanned<String>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    liveness: Option<Spanned<String>>,
    readiness: Option<Spanned<String>>,
}

// ---------------------------------------------------------------------------------------------
// The checked configuration
// ---------------------------------------------------------------------------------------------

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
    /// Peers whose forwarding headers are kept (and appended to).
    pub(crate) trusted_proxies: Vec<IpNet>,
    pub(crate) paths: PathOptions,
    pub(crate) issuers: Vec<IssuerConfig>,
    pub(crate) upstreams: Vec<UpstreamConfig>,
    pub(crate) routes: Vec<RouteConfig>,
    pub(crate) connect_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) drain_timeout: Duration,
    pub(crate) max_body_bytes: u64,
    pub(crate) identity: IdentityHeaders,
    pub(crate) liveness_path: String,
    pub(crate) readiness_path: String,
}

#[derive(Clone, Debug)]
pub(crate) struct IssuerConfig {
    pub(crate) id: String,
    pub(crate) jwks_url: Option<String>,
    pub(crate) audiences: Vec<String>,
}

#[derive(Clone, Debug)]
pub(crate) struct UpstreamConfig {
    pub(crate) name: String,
    pub(crate) scheme: Scheme,
    pub(crate) authority: Authority,
    /// The URL's path without its trailing `/` ("" for none).
    pub(crate) base_path: String,
}

#[derive(Clone, Debug)]
pub(crate) struct RouteConfig {
    pub(crate) prefix: String,
    /// `None`: every method.
    pub(crate) methods: Option<Vec<Method>>,
    pub(crate) upstream: usize,
    pub(crate) access: Access,
    /// The audiences the route accepts (within its issuer's): `None`, any of the issuer's.
    pub(crate) audiences: Option<Vec<String>>,
    pub(crate) strip_prefix: bool,
}

#[derive(Clone, Debug)]
pub(crate) enum Access {
    Public,
    /// A valid token, and these scopes.
    Token(Option<Scopes>),
}

#[derive(Clone, Debug)]
pub(crate) enum Scopes {
    AllOf(Vec<String>),
    AnyOf(Vec<String>),
}

#[derive(Clone, Debug)]
pub(crate) struct IdentityHeaders {
    pub(crate) subject: HeaderName,
    pub(crate) client_id: HeaderName,
    pub(crate) scopes: HeaderName,
}

impl Config {
    /// Parses and checks a configuration. Every problem found is returned, each with the line
    /// and column it is at; nothing is fetched (issuers are contacted when the gateway starts).
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigErrors> {
        let mut errors = Errors {
            source: text,
            errors: Vec::new(),
        };
        let raw: RawConfig = match toml::from_str(text) {
            Ok(raw) => raw,
            Err(e) => {
                let message = e.message().trim_end().to_owned();
                errors
                    .errors
                    .push(ConfigError::new(message, e.span(), text));
                return Err(ConfigErrors {
                    errors: errors.errors,
                });
            }
        };
        let config = check(raw, &mut errors);
        if errors.errors.is_empty() {
            Ok(config)
        } else {
            let mut list = errors.errors;
            list.sort_by_key(|e| e.span.as_ref().map_or(usize::MAX, |s| s.start));
            Err(ConfigErrors { errors: list })
        }
    }

    /// Reads and checks the configuration file at `path` (see [`Config::from_toml_str`]).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Config, ConfigErrors> {
        let path = path.as_ref();
        match std::fs::read_to_string(path) {
            Ok(text) => Config::from_toml_str(&text),
            Err(e) => Err(ConfigErrors {
                errors: vec![ConfigError::new(
                    format!("cannot read {}: {e}", path.display()),
                    None,
                    "",
                )],
            }),
        }
    }

    /// The address to listen on.
    pub fn listen(&self) -> SocketAddr {
        self.listen
    }

    /// How long a graceful shutdown waits for in-flight requests.
    pub fn drain_timeout(&self) -> Duration {
        self.drain_timeout
    }

    /// How many routes, issuers and upstreams the configuration has, in that order.
    pub fn counts(&self) -> (usize, usize, usize) {
        (self.routes.len(), self.issuers.len(), self.upstreams.len())
    }
}

fn check(raw: RawConfig, errors: &mut Errors<'_>) -> Config {
    let listen = match &raw.listen {
        None => DEFAULT_LISTEN.parse().expect("valid default"),
        Some(s) => s.get_ref().parse().unwrap_or_else(|_| {
            errors.at(
                s.span(),
                format!(
                    "`{}` is not a socket address: write IP:PORT, e.g. \"0.0.0.0:8080\"",
                    s.get_ref()
                ),
            );
            DEFAULT_LISTEN.parse().expect("valid default")
        }),
    };
    let realm = match &raw.realm {
        None => "api".to_owned(),
        Some(r) => {
            if r.get_ref().is_empty()
                || !r
                    .get_ref()
                    .chars()
                    .all(|c| matches!(c, ' '..='~') && c != '"' && c != '\\')
            {
                errors.at(
                    r.span(),
                    "the realm must be printable ASCII without `\"` or `\\`",
                );
            }
            r.get_ref().clone()
        }
    };

    // Issuers.
    let mut issuers: Vec<IssuerConfig> = Vec::new();
    for issuer in &raw.issuers {
        let issuer = issuer.get_ref();
        let id = issuer.id.get_ref();
        if issuers.iter().any(|i| &i.id == id) {
            errors.at(
                issuer.id.span(),
                format!("issuer `{id}` is configured twice"),
            );
        }
        match issuer.jwks_url.as_ref() {
            None => check_endpoint(id, issuer.id.span(), raw.allow_insecure_http, errors),
            Some(url) => {
                check_endpoint(url.get_ref(), url.span(), raw.allow_insecure_http, errors);
                if id.is_empty() {
                    errors.at(issuer.id.span(), "the issuer id must not be empty");
                }
            }
        }
        if issuer.audiences.get_ref().is_empty() {
            errors.at(
                issuer.audiences.span(),
                "at least one audience is needed: tokens meant for other services must be refused",
            );
        }
        for a in issuer.audiences.get_ref() {
            if a.get_ref().is_empty() {
                errors.at(a.span(), "an audience must not be empty");
            }
        }
        issuers.push(IssuerConfig {
            id: id.clone(),
            jwks_url: issuer.jwks_url.as_ref().map(|u| u.get_ref().clone()),
            audiences: issuer
                .audiences
                .get_ref()
                .iter()
                .map(|a| a.get_ref().clone())
                .collect(),
        });
    }

    // Upstreams.
    let mut upstreams = Vec::new();
    for (name, upstream) in &raw.upstreams {
        let url = &upstream.get_ref().url;
        match parse_upstream(url.get_ref()) {
            Ok((scheme, authority, base_path)) => upstreams.push(UpstreamConfig {
                name: name.clone(),
                scheme,
                authority,
                base_path,
            }),
            Err(message) => {
                errors.at(url.span(), message);
                upstreams.push(UpstreamConfig {
                    name: name.clone(),
                    scheme: Scheme::HTTP,
                    authority: Authority::from_static("invalid"),
                    base_path: String::new(),
                });
            }
        }
    }

    // Health paths (checked before the routes, which must not hide under them).
    let liveness_path = health_path(raw.health.liveness.as_ref(), "/healthz", errors);
    let readiness_path = health_path(raw.health.readiness.as_ref(), "/readyz", errors);
    if liveness_path == readiness_path
        && let Some(r) = &raw.health.readiness
    {
        errors.at(
            r.span(),
            "the readiness path must differ from the liveness path",
        );
    }

    let paths = PathOptions {
        matrix_parameters: raw.paths.allow_matrix_parameters,
        case_insensitive: raw.paths.case_insensitive,
    };
    let trusted_proxies = raw.trusted_proxies.as_ref().map_or_else(Vec::new, |list| {
        list.get_ref()
            .iter()
            .filter_map(|v| {
                parse_cidr(v.get_ref())
                    .map_err(|message| errors.at(v.span(), message))
                    .ok()
            })
            .collect()
    });

    // Routes.
    let mut routes: Vec<RouteConfig> = Vec::new();
    let mut route_spans: Vec<Range<usize>> = Vec::new();
    let mut protected = false;
    for spanned in &raw.routes {
        let route = spanned.get_ref();
        let prefix = route.prefix.get_ref();
        let prefix_ok = match path::normalize(prefix) {
            Ok(normalized) if normalized == prefix.as_str() => true,
            Ok(normalized) => {
                errors.at(
                    route.prefix.span(),
                    format!("write the prefix in its normal form: `{normalized}`"),
                );
                false
            }
            Err(e) => {
                errors.at(
                    route.prefix.span(),
                    format!("`{prefix}` is not a usable path prefix: {e}"),
                );
                false
            }
        };
        if prefix_ok {
            for health in [&liveness_path, &readiness_path] {
                if prefix == health {
                    errors.at(
                        route.prefix.span(),
                        format!(
                            "`{prefix}` is answered by the gateway itself (health path `{health}`): \
                             change the route or the [health] paths"
                        ),
                    );
                }
            }
        }
        let upstream = upstreams
            .iter()
            .position(|u| u.name == *route.upstream.get_ref())
            .unwrap_or_else(|| {
                let known: Vec<String> =
                    upstreams.iter().map(|u| format!("`{}`", u.name)).collect();
                errors.at(
                    route.upstream.span(),
                    if known.is_empty() {
                        format!(
                            "unknown upstream `{}`: no [upstreams] are configured",
                            route.upstream.get_ref()
                        )
                    } else {
                        format!(
                            "unknown upstream `{}`; known: {}",
                            route.upstream.get_ref(),
                            known.join(", ")
                        )
                    },
                );
                0
            });
        let methods = route.methods.as_ref().map(|methods| {
            if methods.get_ref().is_empty() {
                errors.at(
                    methods.span(),
                    "an empty method list matches nothing: list methods or leave `methods` out for all",
                );
            }
            let mut list: Vec<Method> = Vec::new();
            for m in methods.get_ref() {
                let name = m.get_ref();
                match Method::from_bytes(name.as_bytes()) {
                    Ok(Method::CONNECT) => errors.at(
                        m.span(),
                        "CONNECT is not proxied: the gateway forwards requests, not tunnels",
                    ),
                    Ok(method) if name.bytes().all(|b| b.is_ascii_uppercase()) => {
                        if list.contains(&method) {
                            errors.at(m.span(), format!("method {name} is listed twice"));
                        }
                        list.push(method);
                    }
                    _ => errors.at(
                        m.span(),
                        format!("`{name}` is not an HTTP method (methods are upper case, e.g. \"GET\")"),
                    ),
                }
            }
            list
        });
        let public = route.public.as_ref().is_some_and(|p| *p.get_ref());
        let scopes = route.scopes.as_ref().and_then(|s| {
            let raw_scopes = s.get_ref();
            let list = |l: &Spanned<Vec<Spanned<String>>>, errors: &mut Errors<'_>| {
                if l.get_ref().is_empty() {
                    errors.at(l.span(), "an empty scope list: remove it, or name the scopes");
                }
                for scope in l.get_ref() {
                    let v = scope.get_ref();
                    // RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
                    if v.is_empty()
                        || !v
                            .bytes()
                            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
                    {
                        errors.at(
                            scope.span(),
                            format!("`{v}` is not a scope (RFC 6749 §3.3: no spaces, quotes or backslashes)"),
                        );
                    }
                }
                l.get_ref().iter().map(|s| s.get_ref().clone()).collect::<Vec<_>>()
            };
            match (&raw_scopes.all_of, &raw_scopes.any_of) {
                (Some(all), None) => Some(Scopes::AllOf(list(all, errors))),
                (None, Some(any)) => Some(Scopes::AnyOf(list(any, errors))),
                (Some(_), Some(any)) => {
                    errors.at(any.span(), "give either `all_of` or `any_of`, not both");
                    None
                }
                (None, None) => {
                    errors.at(s.span(), "`scopes` needs `all_of` or `any_of`");
                    None
                }
            }
        });
        if public && let Some(s) = &route.scopes {
            errors.at(
                s.span(),
                "a public route requires no token, so it cannot require scopes: remove `public` or `scopes`",
            );
        }
        let audiences = route.audiences.as_ref().map(|list| {
            if public {
                errors.at(
                    list.span(),
                    "a public route requires no token, so it cannot require audiences: remove `public` or `audiences`",
                );
            } else if list.get_ref().is_empty() {
                errors.at(
                    list.span(),
                    "an empty audience list accepts no token: name the audiences, or leave `audiences` out \
                     to accept any of the issuers'",
                );
            }
            for a in list.get_ref() {
                let v = a.get_ref();
                if v.is_empty() {
                    errors.at(a.span(), "an audience must not be empty");
                } else if !public && !issuers.iter().any(|i| i.audiences.contains(v)) {
                    errors.at(
                        a.span(),
                        format!(
                            "audience `{v}` is not among any [[issuer]]'s audiences, so no token could \
                             pass: add it to its issuer's `audiences`"
                        ),
                    );
                }
            }
            list.get_ref().iter().map(|a| a.get_ref().clone()).collect()
        });
        let access = if public {
            Access::Public
        } else {
            protected = true;
            Access::Token(scopes)
        };
        // Two routes with the same prefix must not both take a method.
        for (other, other_span) in routes.iter().zip(&route_spans) {
            if !path::same_prefix(&other.prefix, prefix, paths.case_insensitive) {
                continue;
            }
            let overlap = match (&other.methods, &methods) {
                (None, _) | (_, None) => true,
                (Some(a), Some(b)) => a.iter().any(|m| b.contains(m)),
            };
            if overlap {
                let (line, _) = line_of(errors.source, other_span.start);
                errors.at(
                    route.prefix.span(),
                    format!(
                        "route `{prefix}` overlaps the route of line {line} (same prefix, common methods): \
                         split the methods between them"
                    ),
                );
            }
        }
        route_spans.push(spanned.span());
        routes.push(RouteConfig {
            prefix: prefix.clone(),
            methods,
            upstream,
            access,
            audiences,
            strip_prefix: route.strip_prefix,
        });
    }
    if raw.routes.is_empty() {
        errors.global(
            "no [[route]] is configured: every request would be refused; add at least one route",
        );
    }
    if protected && raw.issuers.is_empty() {
        errors.global(
            "routes require tokens but no [[issuer]] is configured to verify them: add an issuer, \
             or mark the routes `public = true`",
        );
    }

    // Timeouts and limits.
    let connect_timeout = duration(
        raw.timeouts.connect.as_ref(),
        DEFAULT_CONNECT_TIMEOUT,
        errors,
    );
    let request_timeout = duration(
        raw.timeouts.request.as_ref(),
        DEFAULT_REQUEST_TIMEOUT,
        errors,
    );
    let drain_timeout = duration(raw.timeouts.drain.as_ref(), DEFAULT_DRAIN_TIMEOUT, errors);
    let max_body_bytes = match &raw.limits.max_body_bytes {
        None => DEFAULT_MAX_BODY_BYTES,
        Some(v) => match u64::try_from(*v.get_ref()) {
            Ok(n) if n > 0 => n,
            _ => {
                errors.at(
                    v.span(),
                    "the body limit must be a positive number of bytes",
                );
                DEFAULT_MAX_BODY_BYTES
            }
        },
    };

    // Identity headers.
    let ih = &raw.identity_headers;
    let subject = header_name(ih.subject.as_ref(), "x-auth-subject", errors);
    let client_id = header_name(ih.client_id.as_ref(), "x-auth-client-id", errors);
    let scopes = header_name(ih.scopes.as_ref(), "x-auth-scopes", errors);
    let named = [
        (&ih.subject, &subject),
        (&ih.client_id, &client_id),
        (&ih.scopes, &scopes),
    ];
    for (i, (spanned, name)) in named.iter().enumerate() {
        if named[..i]
            .iter()
            .any(|(_, n)| crate::proxy::same_cgi_name(n.as_str(), name.as_str()))
        {
            let message = format!("header `{name}` is used for two identity values");
            match spanned {
                Some(s) => errors.at(s.span(), message),
                None => errors.global(message),
            }
        }
    }

    Config {
        listen,
        realm,
        strip_authorization: raw.strip_authorization,
        preserve_host: raw.preserve_host,
        allow_insecure_http: raw.allow_insecure_http,
        require_at_jwt: raw.require_at_jwt,
        trusted_proxies,
        paths,
        issuers,
        upstreams,
        routes,
        connect_timeout,
        request_timeout,
        drain_timeout,
        max_body_bytes,
        identity: IdentityHeaders {
            subject,
            client_id,
            scopes,
        },
        liveness_path,
        readiness_path,
    }
}

fn line_of(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let line = source[..offset].matches('\n').count() + 1;
    let start = source[..offset].rfind('\n').map_or(0, |i| i + 1);
    (line, source[start..offset].chars().count() + 1)
}

/// A `trusted_proxies` entry: a CIDR block, or one address (/32, /128).
fn parse_cidr(value: &str) -> Result<IpNet, String> {
    if let Ok(ip) = value.parse::<std::net::IpAddr>() {
        return Ok(IpNet::from(ip));
    }
    match value.parse::<IpNet>() {
        Ok(net) if net.trunc() == net => Ok(net),
        Ok(net) => Err(format!(
            "`{value}` has address bits set beyond its prefix length: write `{}`",
            net.trunc()
        )),
        Err(_) => Err(format!(
            "`{value}` is not a CIDR block: write e.g. \"10.0.0.0/8\", \"::1/128\" or a single address"
        )),
    }
}

/// An issuer or JWKS URL, against s2s-auth's https policy.
fn check_endpoint(url: &str, span: Range<usize>, allow_insecure: bool, errors: &mut Errors<'_>) {
    match url::Url::parse(url) {
        Err(e) => errors.at(span, format!("`{url}` is not a URL: {e}")),
        Ok(parsed) => {
            if let Err(e) = s2s_auth::fetch::check_endpoint(&parsed, allow_insecure) {
                errors.at(span, e.to_string());
            }
        }
    }
}

fn parse_upstream(url: &str) -> Result<(Scheme, Authority, String), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    if parsed.scheme() != "http" {
        return Err(format!(
            "upstream URLs must be http:// (the gateway is the sidecar of a local service; \
             https upstreams are not supported): `{url}`"
        ));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(format!("an upstream URL has no query or fragment: `{url}`"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(format!("an upstream URL has no user or password: `{url}`"));
    }
    let host = parsed
        .host_str()
        .ok_or_else(|| format!("`{url}` has no host"))?;
    let authority = match parsed.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    };
    let authority =
        Authority::from_str(&authority).map_err(|e| format!("`{url}` has no usable host: {e}"))?;
    let base_path = parsed.path().trim_end_matches('/').to_owned();
    Ok((Scheme::HTTP, authority, base_path))
}

fn health_path(value: Option<&Spanned<String>>, default: &str, errors: &mut Errors<'_>) -> String {
    let Some(v) = value else {
        return default.to_owned();
    };
    match path::normalize(v.get_ref()) {
        Ok(p) if p == v.get_ref().as_str() && p != "/" => p.into_owned(),
        _ => {
            errors.at(
                v.span(),
                format!(
                    "`{}` is not a usable path: write an absolute path such as \"{default}\"",
                    v.get_ref()
                ),
            );
            default.to_owned()
        }
    }
}

fn duration(
    value: Option<&Spanned<String>>,
    default: Duration,
    errors: &mut Errors<'_>,
) -> Duration {
    let Some(v) = value else {
        return default;
    };
    match parse_duration(v.get_ref()) {
        Some(d) if !d.is_zero() => d,
        _ => {
            errors.at(
                v.span(),
                format!(
                    "`{}` is not a duration: write e.g. \"250ms\", \"5s\" or \"2m\"",
                    v.get_ref()
                ),
            );
            default
        }
    }
}

/// `250ms`, `5s`, `2m`, `1h`.
pub(crate) fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = s.split_at(split);
    let n: u64 = number.parse().ok()?;
    match unit.trim() {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => n.checked_mul(60).map(Duration::from_secs),
        "h" => n.checked_mul(3600).map(Duration::from_secs),
        _ => None,
    }
}

/// Headers the gateway or HTTP manages and that cannot carry identity (besides the forwarding
/// and method override headers, which the gateway sets or removes itself).
const RESERVED_HEADERS: &[&str] = &["authorization", "host", "content-length", "content-type"];

fn header_name(
    value: Option<&Spanned<String>>,
    default: &'static str,
    errors: &mut Errors<'_>,
) -> HeaderName {
    let Some(v) = value else {
        return HeaderName::from_static(default);
    };
    match HeaderName::from_bytes(v.get_ref().as_bytes()) {
        Ok(name)
            if RESERVED_HEADERS
                .iter()
                .chain(crate::proxy::FORWARDING_HEADERS)
                .chain(crate::proxy::OVERRIDE_HEADERS)
                .any(|r| crate::proxy::same_cgi_name(r, name.as_str()))
                || crate::proxy::is_hop_by_hop(&name) =>
        {
            errors.at(
                v.span(),
                format!(
                    "`{}` cannot carry identity: the gateway or HTTP itself manages it",
                    v.get_ref()
                ),
            );
            HeaderName::from_static(default)
        }
        Ok(name) => name,
        Err(_) => {
            errors.at(v.span(), format!("`{}` is not a header name", v.get_ref()));
            HeaderName::from_static(default)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UPSTREAM: &str = "[upstreams.app]\nurl = \"http://127.0.0.1:9000\"\n";

    fn errors_of(text: &str) -> Vec<(usize, usize, String)> {
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
    fn durations() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("s"), None);
        assert_eq!(parse_duration("1.5s"), None);
    }

    #[test]
    fn a_public_only_config_needs_no_issuer() {
        let c = Config::from_toml_str(&format!(
            "{UPSTREAM}[[route]]\nprefix = \"/\"\nupstream = \"app\"\npublic = true\n"
        ))
        .unwrap();
        assert_eq!(c.counts(), (1, 0, 1));
        assert_eq!(c.upstreams[0].authority.as_str(), "127.0.0.1:9000");
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
    fn overlapping_routes_and_health_paths() {
        let text = format!(
            "{UPSTREAM}[[route]]\nprefix = \"/a\"\nupstream = \"app\"\npublic = true\n\
             [[route]]\nprefix = \"/a\"\nmethods = [\"GET\"]\nupstream = \"app\"\npublic = true\n\
             [[route]]\nprefix = \"/healthz\"\nupstream = \"app\"\npublic = true\n"
        );
        let e = errors_of(&text);
        assert_eq!(e.len(), 2, "{e:#?}");
        assert!(e[0].2.contains("overlaps the route of line 3"), "{e:#?}");
        assert!(e[1].2.contains("health path"), "{e:#?}");
    }

    #[test]
    fn issuer_urls_follow_the_https_policy() {
        let text = format!(
            "{UPSTREAM}[[issuer]]\nid = \"http://auth.example.com\"\naudiences = []\n\
             [[route]]\nprefix = \"/\"\nupstream = \"app\"\n"
        );
        let e = errors_of(&text);
        assert_eq!(e.len(), 2, "{e:#?}");
        assert!(e[0].2.contains("plain http"), "{e:#?}");
        assert!(e[1].2.contains("audience"), "{e:#?}");
        let allowed = format!("allow_insecure_http = true\n{text}").replace("[]", "[\"a\"]");
        Config::from_toml_str(&allowed).unwrap();
    }

    #[test]
    fn hardening_keys() {
        let route = "[[route]]\nprefix = \"/\"\nupstream = \"app\"\npublic = true\n";
        let c = Config::from_toml_str(&format!(
            "trusted_proxies = [\"10.0.0.0/8\", \"::1\", \"192.0.2.7\"]\nrequire_at_jwt = true\n\
             {UPSTREAM}{route}[paths]\nallow_matrix_parameters = true\ncase_insensitive = true\n"
        ))
        .unwrap();
        let nets: Vec<String> = c.trusted_proxies.iter().map(|n| n.to_string()).collect();
        assert_eq!(nets, ["10.0.0.0/8", "::1/128", "192.0.2.7/32"]);
        assert!(c.require_at_jwt && c.paths.matrix_parameters && c.paths.case_insensitive);
        let c = Config::from_toml_str(&format!("{UPSTREAM}{route}")).unwrap();
        assert!(c.trusted_proxies.is_empty() && !c.require_at_jwt);
        assert_eq!(c.paths, PathOptions::default());
    }

    #[test]
    fn prefixes_differing_in_case_overlap_when_routes_ignore_case() {
        let routes = format!(
            "{UPSTREAM}[[route]]\nprefix = \"/Orders\"\nupstream = \"app\"\npublic = true\n\
             [[route]]\nprefix = \"/orders\"\nupstream = \"app\"\npublic = true\n"
        );
        Config::from_toml_str(&routes).unwrap();
        let e = errors_of(&format!("{routes}[paths]\ncase_insensitive = true\n"));
        assert_eq!(e.len(), 1, "{e:#?}");
        assert!(e[0].2.contains("overlaps the route of line 3"), "{e:#?}");
    }

    #[test]
    fn identity_headers_cannot_be_forwarding_or_override_headers_in_any_spelling() {
        for (subject, client_id) in [
            ("X_Forwarded_For", "X-Auth-Client-Id"),
            ("X-Real-IP", "X-Auth-Client-Id"),
            ("X-HTTP-Method-Override", "X-Auth-Client-Id"),
            ("X-Auth-Subject", "X_Auth_Subject"),
        ] {
            let e = errors_of(&format!(
                "{UPSTREAM}[[route]]\nprefix = \"/\"\nupstream = \"app\"\npublic = true\n\
                 [identity_headers]\nsubject = \"{subject}\"\nclient_id = \"{client_id}\"\n"
            ));
            assert_eq!(e.len(), 1, "{subject}: {e:#?}");
        }
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
}
