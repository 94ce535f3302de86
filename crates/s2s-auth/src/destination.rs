//! Where outbound tokens may go: the allow-list of origins shared by
//! [`AuthorizeLayer`](crate::AuthorizeLayer) and the reqwest middleware.
//!
//! An origin is `scheme://host[:port]` (the default port of the scheme when omitted). A request
//! is let through only when its URI's origin is one of the allowed ones; plain `http://` origins
//! are allowed only for loopback hosts unless insecure http was allowed explicitly. Everything
//! else is refused with an [`Error`] of kind [`Config`](crate::ErrorKind::Config), never sent
//! (not even without a token: a request that reaches a host it was not configured for is a
//! configuration fault, or a redirect to somewhere else).

use std::fmt;

use url::Url;

use crate::{error::Error, fetch};

/// One allowed origin.
#[derive(Clone, PartialEq, Eq)]
struct Origin {
    https: bool,
    /// Lowercase; IPv6 literals in brackets, as both `url` and `http` spell them.
    host: String,
    port: u16,
    loopback: bool,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        write!(f, "{scheme}://{}:{}", self.host, self.port)
    }
}

impl Origin {
    fn parse(origin: &str) -> Result<Origin, Error> {
        let bad = |why: &str| {
            Error::config(format!(
                "`{}` is not an origin ({why}): write `https://host` or `https://host:port`",
                fetch::excerpt(origin.as_bytes())
            ))
        };
        let url = Url::parse(origin).map_err(|_| bad("not a URL"))?;
        let https = match url.scheme() {
            "https" => true,
            "http" => false,
            _ => return Err(bad("the scheme must be https or http")),
        };
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            return Err(bad("an origin has no path, query or fragment"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad("an origin has no user name or password"));
        }
        let host = url.host_str().ok_or_else(|| bad("no host"))?;
        Ok(Origin {
            https,
            host: host.to_ascii_lowercase(),
            port: url.port_or_known_default().ok_or_else(|| bad("no port"))?,
            loopback: fetch::is_loopback(&url),
        })
    }

    fn matches(&self, https: bool, host: &str, port: u16) -> bool {
        self.https == https && self.port == port && self.host.eq_ignore_ascii_case(host)
    }

    /// Whether `scheme://authority` is this origin written as clients write it: `host` for the
    /// scheme's default port, or `host:port`. Only ever a shortcut to the answer of parsing the
    /// authority ([`Origin::matches`]): any other spelling (user info, an empty port) says no
    /// here and is parsed.
    fn spelled_as(&self, scheme: &str, authority: &str) -> bool {
        let https = match scheme {
            "https" => true,
            "http" => false,
            _ => return false,
        };
        // Allowed hosts are kept in lower case, as clients mostly write them: bytes first.
        let host_matches = authority
            .get(..self.host.len())
            .is_some_and(|host| host == self.host || host.eq_ignore_ascii_case(&self.host));
        if https != self.https || !host_matches {
            return false;
        }
        match &authority[self.host.len()..] {
            "" => self.port == if https { 443 } else { 80 },
            port => port.strip_prefix(':').and_then(|p| p.parse().ok()) == Some(self.port),
        }
    }
}

/// The allow-list of one layer or middleware. See the [module docs](self).
#[derive(Clone, Default)]
pub(crate) struct Destinations {
    origins: Vec<Origin>,
    /// The first configuration mistake, reported by every check (fail closed).
    invalid: Option<String>,
    allow_insecure_http: bool,
    /// Where requests whose URI has no scheme and authority go.
    relative: Option<Origin>,
}

impl fmt::Debug for Destinations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Destinations")
            .field(
                "origins",
                &self
                    .origins
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>(),
            )
            .field("allow_insecure_http", &self.allow_insecure_http)
            .field("relative", &self.relative.as_ref().map(ToString::to_string))
            .finish()
    }
}

impl Destinations {
    fn record(&mut self, result: Result<Origin, Error>) -> Option<Origin> {
        match result {
            Ok(origin) => Some(origin),
            Err(e) => {
                self.invalid.get_or_insert_with(|| e.message().to_owned());
                None
            }
        }
    }

    pub(crate) fn allow(&mut self, origin: &str) {
        if let Some(origin) = self.record(Origin::parse(origin))
            && !self.origins.contains(&origin)
        {
            self.origins.push(origin);
        }
    }

    pub(crate) fn allow_insecure_http(&mut self) {
        self.allow_insecure_http = true;
    }

    pub(crate) fn relative_to(&mut self, origin: &str) {
        self.relative = self.record(Origin::parse(origin));
        self.allow(origin);
    }

    /// The configuration is usable: no bad origin, at least one, none plain http to a host that
    /// is not loopback unless allowed.
    pub(crate) fn validate(&self, what: &str) -> Result<(), Error> {
        if let Some(invalid) = &self.invalid {
            return Err(Error::config(format!("{what}: {invalid}")));
        }
        if self.origins.is_empty() {
            return Err(Error::config(format!(
                "{what} has no allowed origin, so it sends no token anywhere: add \
                 `.allow_origin(\"https://service.internal\")` for each service the token is for"
            )));
        }
        if !self.allow_insecure_http
            && let Some(plain) = self.origins.iter().find(|o| !o.https && !o.loopback)
        {
            return Err(Error::config(format!(
                "{what} would send tokens over plain http to `{plain}`, which anyone on the path \
                 can read: use https, or call `.allow_insecure_http()` (loopback hosts need \
                 neither)"
            )));
        }
        Ok(())
    }

    fn check(
        &self,
        what: &str,
        https: Option<bool>,
        host: &str,
        port: Option<u16>,
    ) -> Result<(), Error> {
        self.validate(what)?;
        let (https, host, port) = match https {
            Some(https) => (https, host, port.unwrap_or(if https { 443 } else { 80 })),
            None => match &self.relative {
                Some(o) if host.is_empty() => (o.https, o.host.as_str(), o.port),
                _ => {
                    return Err(Error::config(format!(
                        "{what} refuses a request whose URI is not `https://…` or `http://…` \
                         with a host: send absolute URIs, or name where relative ones go with \
                         `.relative_to(origin)`"
                    )));
                }
            },
        };
        if self.origins.iter().any(|o| o.matches(https, host, port)) {
            return Ok(());
        }
        let scheme = if https { "https" } else { "http" };
        Err(Error::config(format!(
            "{what} refuses to send a request to `{scheme}://{}:{port}`: the token is not for \
             that origin (allowed: {}); add it with `.allow_origin(…)` if it should get the token",
            fetch::excerpt(host.as_bytes()),
            self.origins
                .iter()
                .map(|o| format!("`{o}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }

    /// Checks the destination of a tower request.
    pub(crate) fn check_uri(&self, what: &str, uri: &http::Uri) -> Result<(), Error> {
        // Every outbound request comes here: the usual spelling of an allowed origin is
        // recognised without parsing the authority.
        if self.spelled_as_allowed(uri) {
            return self.validate(what);
        }
        self.check_parsed_uri(what, uri)
    }

    /// Whether `uri`'s scheme and authority are an allowed origin's usual spelling.
    fn spelled_as_allowed(&self, uri: &http::Uri) -> bool {
        let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
            return false;
        };
        self.origins
            .iter()
            .any(|o| o.spelled_as(scheme, authority.as_str()))
    }

    /// [`Destinations::check_uri`] the long way: the authority parsed into host and port.
    fn check_parsed_uri(&self, what: &str, uri: &http::Uri) -> Result<(), Error> {
        let https = match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("https") => Some(true),
            Some(s) if s.eq_ignore_ascii_case("http") => Some(false),
            Some(_) => return self.check(what, None, "?", None),
            None => None,
        };
        self.check(what, https, uri.host().unwrap_or_default(), uri.port_u16())
    }

    /// Checks the destination of a reqwest request.
    #[cfg(feature = "reqwest")]
    pub(crate) fn check_url(&self, what: &str, url: &Url) -> Result<(), Error> {
        let https = match url.scheme() {
            "https" => Some(true),
            "http" => Some(false),
            _ => return self.check(what, None, "?", None),
        };
        self.check(
            what,
            https,
            url.host_str().unwrap_or_default(),
            url.port_or_known_default(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowing(origins: &[&str]) -> Destinations {
        let mut d = Destinations::default();
        origins.iter().for_each(|o| d.allow(o));
        d
    }

    #[test]
    fn origins_match_by_scheme_host_and_port() {
        let d = allowing(&[
            "https://Orders.internal",
            "http://127.0.0.1:8080",
            "http://[::1]:9",
        ]);
        let ok = |u: &str| d.check_uri("the layer", &u.parse().unwrap());
        assert!(ok("https://orders.internal/x").is_ok());
        assert!(ok("https://ORDERS.internal:443/x").is_ok());
        assert!(ok("http://127.0.0.1:8080/").is_ok());
        assert!(ok("https://orders.internal:8443/").is_err());
        assert!(ok("http://orders.internal/").is_err());
        assert!(ok("https://orders.internal.evil/").is_err());
        assert!(ok("http://127.0.0.1:8081/").is_err());
        assert!(ok("http://[::1]:9/x").is_ok());
        assert!(ok("http://[::2]:9/x").is_err());
        let err = ok("/relative").unwrap_err();
        assert!(err.message().contains("relative_to"), "{err}");
    }

    #[test]
    fn the_shortcut_agrees_with_parsing_on_every_spelling() {
        let d = allowing(&[
            "https://orders.internal",
            "http://127.0.0.1:8080",
            "http://[::1]:9",
        ]);
        let spellings = [
            "https://orders.internal/x",
            "https://ORDERS.Internal/x",
            "https://orders.internal:443/x",
            "https://orders.internal:0443/x",
            "https://orders.internal:/x",
            "https://orders.internal:8443/x",
            "https://orders.internal@evil.example/x",
            "https://orders.internal:443@evil.example/x",
            "https://evil.example@orders.internal/x",
            "https://orders.internal.evil/x",
            "https://orders.internalx/x",
            "http://orders.internal/x",
            "http://127.0.0.1:8080/",
            "http://127.0.0.1:80800/",
            "http://127.0.0.1:8080@evil.example/",
            "http://127.0.0.1/",
            "http://[::1]:9/",
            "http://[::1]:9@evil.example/",
            "http://[::2]:9/",
        ];
        for spelling in spellings {
            let Ok(uri) = spelling.parse::<http::Uri>() else {
                continue;
            };
            let parsed = d.check_parsed_uri("the layer", &uri).is_ok();
            // The shortcut only ever says yes where parsing does.
            assert!(!d.spelled_as_allowed(&uri) || parsed, "{spelling}");
            assert_eq!(d.check_uri("the layer", &uri).is_ok(), parsed, "{spelling}");
        }
        let common = "https://orders.internal/x".parse().unwrap();
        assert!(
            d.spelled_as_allowed(&common),
            "the usual spelling takes the shortcut"
        );
    }

    #[test]
    fn configuration_mistakes_are_reported() {
        let empty = Destinations::default();
        assert!(
            empty
                .validate("x")
                .unwrap_err()
                .message()
                .contains("allow_origin")
        );
        let path = allowing(&["https://orders.internal/api"]);
        assert!(
            path.validate("x")
                .unwrap_err()
                .message()
                .contains("no path")
        );
        let plain = allowing(&["http://orders.internal"]);
        assert!(
            plain
                .validate("x")
                .unwrap_err()
                .message()
                .contains("plain http")
        );
        let mut allowed = plain.clone();
        allowed.allow_insecure_http();
        assert!(allowed.validate("x").is_ok());
        assert!(allowing(&["http://localhost:1"]).validate("x").is_ok());
    }
}
