//! HTTP fetching shared by the key-set cache, discovery and the token client: the endpoint
//! policy (https, except loopback or an explicit opt-out), a client that follows redirects only
//! within the origin it was sent to (and through the same policy), bounded bodies and safe
//! excerpts of error pages.
//!
//! Redirects: a discovery document or JWK set that redirects to another origin is refused (that
//! origin could name keys or endpoints of its choosing), with an error that names both URLs. The
//! token client follows no redirect at all (see
//! [`ClientCredentials`](crate::token::ClientCredentials)): a redirected `POST` would re-send the
//! client's credentials.
//!
//! ```
//! use std::time::Duration;
//! use s2s_auth::{Issuer, Verifier, fetch::HttpOptions};
//!
//! # fn main() -> Result<(), s2s_auth::Error> {
//! let http = HttpOptions::new().timeout(Duration::from_secs(3));
//! let verifier = Verifier::builder()
//!     .issuer(Issuer::discover("https://auth.example.com"))
//!     .audience("orders-api")
//!     .http(http)
//!     .build()?;
//! # let _ = verifier; Ok(()) }
//! ```

use std::{net::IpAddr, time::Duration};

use bytes::{Bytes, BytesMut};
use url::Url;

use crate::error::Error;

/// Default timeout of every remote fetch (connect + whole response).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Default limit on the size of a fetched body (JWKS, metadata, token response).
pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;

/// How the crate talks to remote endpoints (authorization servers, JWKS hosts): built with
/// setters from [`HttpOptions::new`] (the defaults).
///
/// ```
/// use std::time::Duration;
/// use s2s_auth::fetch::HttpOptions;
///
/// let http = HttpOptions::new()
///     .timeout(Duration::from_secs(3))
///     .max_body(64 * 1024);
/// assert_eq!(http.request_timeout(), Duration::from_secs(3));
/// assert_eq!(http.body_limit(), 64 * 1024);
/// assert!(!http.allows_insecure_http());
/// ```
#[derive(Clone, Debug)]
pub struct HttpOptions {
    pub(crate) allow_insecure_http: bool,
    pub(crate) timeout: Duration,
    pub(crate) max_body: usize,
}

impl HttpOptions {
    /// The defaults: https only (plain http to loopback hosts), [`DEFAULT_TIMEOUT`],
    /// [`DEFAULT_MAX_BODY`].
    pub fn new() -> Self {
        HttpOptions::default()
    }

    /// Allows `http://` to hosts that are not loopback. Off by default: a token or key set
    /// fetched over plain HTTP can be replaced by anyone on the path.
    pub fn allow_insecure_http(self) -> Self {
        HttpOptions {
            allow_insecure_http: true,
            ..self
        }
    }

    /// The timeout of each fetch, from connect to the last byte (default [`DEFAULT_TIMEOUT`]).
    pub fn timeout(self, timeout: Duration) -> Self {
        HttpOptions { timeout, ..self }
    }

    /// The largest body accepted; a larger one fails the fetch (default [`DEFAULT_MAX_BODY`]).
    pub fn max_body(self, bytes: usize) -> Self {
        HttpOptions {
            max_body: bytes,
            ..self
        }
    }

    /// Whether plain `http://` is allowed to hosts that are not loopback.
    pub fn allows_insecure_http(&self) -> bool {
        self.allow_insecure_http
    }

    /// The timeout of each fetch.
    pub fn request_timeout(&self) -> Duration {
        self.timeout
    }

    /// The largest body accepted, in bytes.
    pub fn body_limit(&self) -> usize {
        self.max_body
    }

    /// A `reqwest::Client` that applies these options: rustls, the timeout, and redirects
    /// (at most 5) that stay within the origin of the first request and pass
    /// [`check_endpoint`]; a redirect to another origin fails the request and says so.
    pub(crate) fn client(&self) -> Result<reqwest::Client, Error> {
        let allow_insecure = self.allow_insecure_http;
        self.build(reqwest::redirect::Policy::custom(move |attempt| {
            let first = attempt.previous().first();
            if attempt.previous().len() >= 5 {
                attempt.error("too many redirects")
            } else if let Some(first) = first.filter(|f| f.origin() != attempt.url().origin()) {
                let message = format!(
                    "`{first}` redirected to `{}`; refusing to follow a redirect to another \
                     origin (configure the final URL if it is trusted)",
                    excerpt(attempt.url().as_str().as_bytes())
                );
                attempt.error(message)
            } else if let Err(e) = check_endpoint(attempt.url(), allow_insecure) {
                attempt.error(e)
            } else {
                attempt.follow()
            }
        }))
    }

    /// A `reqwest::Client` that applies these options and follows no redirect: a 3xx comes back
    /// as the response (for requests that carry credentials).
    pub(crate) fn client_without_redirects(&self) -> Result<reqwest::Client, Error> {
        self.build(reqwest::redirect::Policy::none())
    }

    fn build(&self, redirect: reqwest::redirect::Policy) -> Result<reqwest::Client, Error> {
        reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(self.timeout)
            .redirect(redirect)
            .user_agent(concat!("s2s-auth/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::config("could not build the HTTP client").with_source(e))
    }
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            allow_insecure_http: false,
            timeout: DEFAULT_TIMEOUT,
            max_body: DEFAULT_MAX_BODY,
        }
    }
}

/// Parses `url` and checks it against the endpoint policy.
pub(crate) fn parse_endpoint(url: &str, allow_insecure_http: bool) -> Result<Url, Error> {
    let parsed = Url::parse(url)
        .map_err(|e| Error::config(format!("`{url}` is not a valid URL")).with_source(e))?;
    check_endpoint(&parsed, allow_insecure_http)?;
    Ok(parsed)
}

/// Refuses anything but `https://`, or `http://` to a loopback host, unless `allow_insecure_http`.
pub fn check_endpoint(url: &Url, allow_insecure_http: bool) -> Result<(), Error> {
    match url.scheme() {
        "https" => Ok(()),
        "http" if allow_insecure_http || is_loopback(url) => Ok(()),
        "http" => Err(Error::config(format!(
            "refusing plain http to `{}`: use https, or allow insecure http explicitly \
             (only loopback hosts are allowed without it)",
            url.host_str().unwrap_or_default()
        ))),
        other => Err(Error::config(format!(
            "unsupported URL scheme `{other}`: use https"
        ))),
    }
}

pub(crate) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Reads a response body, failing as soon as it grows past `max` bytes (the `Content-Length`
/// is checked first, then every chunk), so a huge body costs at most `max` bytes of memory.
pub(crate) async fn read_body(mut response: reqwest::Response, max: usize) -> Result<Bytes, Error> {
    let host = response.url().host_str().unwrap_or_default().to_owned();
    let too_large = || {
        Error::transient(format!(
            "response from `{host}` is larger than the {max} byte limit"
        ))
    };
    if response
        .content_length()
        .is_some_and(|len| len > max as u64)
    {
        return Err(too_large());
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| request_error(e, "reading the response body"))?
    {
        if body.len() + chunk.len() > max {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Maps a transport error to a transient [`Error`] that says what was being done.
pub(crate) fn request_error(e: reqwest::Error, doing: &str) -> Error {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_redirect() {
        "refused a redirect"
    } else {
        "failed"
    };
    // The innermost cause says what really happened ("connection closed before message
    // completed"); reqwest's own message is generic. Neither holds headers or bodies.
    let mut cause: &dyn std::error::Error = &e;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    let detail = cause.to_string();
    let e = e.without_url();
    if detail == e.to_string() {
        Error::transient(format!("{doing} {what}")).with_source(e)
    } else {
        Error::transient(format!("{doing} {what} ({detail})")).with_source(e)
    }
}

/// A short excerpt of a body for an error message: at most 120 characters, control characters
/// and markup collapsed, so that an HTML error page gives a readable hint and nothing else.
pub(crate) fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(2048)]);
    let mut out = String::new();
    let mut in_tag = false;
    let mut last_space = true;
    for c in text.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                continue;
            }
            _ => {}
        }
        if in_tag {
            continue;
        }
        let c = if c.is_control() || c.is_whitespace() {
            ' '
        } else {
            c
        };
        if c == ' ' && last_space {
            continue;
        }
        last_space = c == ' ';
        out.push(c);
        if out.chars().count() >= 120 {
            out.push('…');
            break;
        }
    }
    out.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_policy() {
        assert!(parse_endpoint("https://auth.example.com/token", false).is_ok());
        assert!(parse_endpoint("http://127.0.0.1:8080/token", false).is_ok());
        assert!(parse_endpoint("http://[::1]:8080/token", false).is_ok());
        assert!(parse_endpoint("http://localhost/token", false).is_ok());
        let err = parse_endpoint("http://auth.example.com/token", false).unwrap_err();
        assert!(err.message().contains("https"), "{err}");
        assert!(parse_endpoint("http://auth.example.com/token", true).is_ok());
        assert!(parse_endpoint("ftp://auth.example.com/", true).is_err());
        assert!(parse_endpoint("not a url", false).is_err());
    }

    #[test]
    fn excerpt_strips_markup_and_bounds_length() {
        let page = b"<html><head><title>502 Bad Gateway</title></head>\n<body><h1>Bad   Gateway</h1></body></html>";
        assert_eq!(excerpt(page), "502 Bad Gateway Bad Gateway");
        let long = vec![b'a'; 10_000];
        assert!(excerpt(&long).chars().count() <= 121);
    }
}
