//! `[upstreams.NAME]`: where requests go, plain `http://` base URLs; `http2 = true` for an
//! upstream that speaks HTTP/2 without TLS (h2c with prior knowledge), as gRPC servers do.

use std::{collections::BTreeMap, str::FromStr};

use http::uri::{Authority, Scheme};
use serde::Deserialize;
use toml::Spanned;

use super::error::Errors;

/// One `[upstreams.NAME]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpstream {
    url: Spanned<String>,
    #[serde(default)]
    http2: bool,
}

/// A checked upstream.
#[derive(Clone, Debug)]
pub(crate) struct UpstreamConfig {
    pub(crate) name: String,
    pub(crate) scheme: Scheme,
    pub(crate) authority: Authority,
    /// The URL's path without its trailing `/` ("" for none).
    pub(crate) base_path: String,
    /// Forwarded over HTTP/2 (h2c), trailers and all; else HTTP/1.1.
    pub(crate) http2: bool,
}

/// Checks every upstream URL. Each name keeps its place even when its URL is wrong, so that
/// routes naming it are not reported as well.
pub(super) fn check(
    raw: &BTreeMap<String, Spanned<RawUpstream>>,
    errors: &mut Errors<'_>,
) -> Vec<UpstreamConfig> {
    raw.iter()
        .map(|(name, upstream)| {
            let url = &upstream.get_ref().url;
            let (scheme, authority, base_path) =
                parse_upstream(url.get_ref()).unwrap_or_else(|message| {
                    errors.at(url.span(), message);
                    (
                        Scheme::HTTP,
                        Authority::from_static("invalid"),
                        String::new(),
                    )
                });
            UpstreamConfig {
                name: name.clone(),
                scheme,
                authority,
                base_path,
                http2: upstream.get_ref().http2,
            }
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        for (url, authority, base_path) in [
            ("http://127.0.0.1:9000", "127.0.0.1:9000", ""),
            ("http://app/", "app", ""),
            ("http://[::1]:81/v1/", "[::1]:81", "/v1"),
        ] {
            let (scheme, a, p) = parse_upstream(url).unwrap();
            assert_eq!(
                (scheme, a.as_str(), p.as_str()),
                (Scheme::HTTP, authority, base_path)
            );
        }
    }

    #[test]
    fn http2_is_chosen_per_upstream() {
        let config = crate::config::tests::public_with(
            "[upstreams.grpc]\nurl = \"http://127.0.0.1:50051\"\nhttp2 = true\n",
        );
        let http2 = |name: &str| {
            config
                .upstreams
                .iter()
                .find(|u| u.name == name)
                .unwrap()
                .http2
        };
        assert!(http2("grpc"));
        assert!(!http2("app"), "HTTP/1.1 unless asked");
        crate::config::tests::assert_one_error(
            "[upstreams.app]\nurl = \"http://127.0.0.1:9000\"\nhttp2 = \"yes\"\n\
             [[route]]\nprefix = \"/\"\nupstream = \"app\"\npublic = true\n",
            3,
            "invalid type",
        );
    }

    #[test]
    fn what_an_upstream_url_cannot_be() {
        for (url, says) in [
            ("ftp://app", "must be http://"),
            ("app", "is not a URL"),
            ("https://app", "must be http://"),
            ("http://app/?x=1", "no query or fragment"),
            ("http://app/#top", "no query or fragment"),
            ("http://user:pw@app", "no user or password"),
        ] {
            let e = parse_upstream(url).unwrap_err();
            assert!(e.contains(says), "{url}: {e}");
        }
    }
}
