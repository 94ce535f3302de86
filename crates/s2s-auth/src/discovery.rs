//! Authorization server metadata: OpenID Connect Discovery and RFC 8414.
//!
//! ```no_run
//! use s2s_auth::{discovery::ProviderMetadata, fetch::HttpOptions};
//!
//! # async fn run() -> Result<(), s2s_auth::Error> {
//! let meta = ProviderMetadata::discover("https://auth.example.com", &HttpOptions::new()).await?;
//! let token_endpoint = meta.token_endpoint(false)?;
//! # let _ = token_endpoint; Ok(()) }
//! ```
//!
//! [`ProviderMetadata::discover`] fetches `{issuer}/.well-known/openid-configuration`, then, when that is absent,
//! the RFC 8414 location `/.well-known/oauth-authorization-server{issuer path}`, and refuses
//! metadata whose `issuer` is not exactly the configured one (RFC 8414 §3.3): a server that
//! answers for another issuer could hand out keys or token endpoints of its choosing.

use serde::Deserialize;
use tracing::Instrument as _;
use url::Url;

use crate::{
    error::Error,
    fetch::{self, HttpOptions},
};

/// The fields of the metadata this crate uses; others are ignored.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProviderMetadata {
    /// The issuer identifier; equal to the configured issuer.
    pub issuer: String,
    /// Where the signing keys are published.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// Where tokens are requested.
    #[serde(default)]
    pub token_endpoint: Option<String>,
    /// Client authentication methods the token endpoint accepts.
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Option<Vec<String>>,
    /// Grant types the server supports.
    #[serde(default)]
    pub grant_types_supported: Option<Vec<String>>,
}

impl ProviderMetadata {
    /// Fetches and checks the metadata of `issuer` (see the [module docs](self)), with `options`.
    pub async fn discover(issuer: &str, options: &HttpOptions) -> Result<Self, Error> {
        discover(&options.client()?, issuer, options).await
    }

    /// Parses metadata and checks that it names `expected_issuer`.
    pub fn from_json(body: &[u8], expected_issuer: &str) -> Result<Self, Error> {
        let meta: ProviderMetadata = serde_json::from_slice(body).map_err(|e| {
            Error::transient(format!(
                "authorization server metadata is not valid JSON metadata ({}): `{}`",
                e,
                fetch::excerpt(body)
            ))
        })?;
        if meta.issuer != expected_issuer {
            return Err(Error::config(format!(
                "metadata names issuer `{}` but `{expected_issuer}` is configured; \
                 they must be identical (RFC 8414 §3.3): fix the configured issuer",
                meta.issuer
            )));
        }
        Ok(meta)
    }

    /// The `jwks_uri`, checked against the endpoint policy.
    pub fn jwks_uri(&self, allow_insecure_http: bool) -> Result<Url, Error> {
        let uri = self.jwks_uri.as_deref().ok_or_else(|| {
            Error::config(format!("metadata of `{}` has no `jwks_uri`", self.issuer))
        })?;
        fetch::parse_endpoint(uri, allow_insecure_http)
    }

    /// The `token_endpoint`, checked against the endpoint policy.
    pub fn token_endpoint(&self, allow_insecure_http: bool) -> Result<Url, Error> {
        let uri = self.token_endpoint.as_deref().ok_or_else(|| {
            Error::config(format!(
                "metadata of `{}` has no `token_endpoint`",
                self.issuer
            ))
        })?;
        fetch::parse_endpoint(uri, allow_insecure_http)
    }
}

/// The two places metadata may live for `issuer`, in the order they are tried.
pub fn metadata_urls(issuer: &Url) -> [Url; 2] {
    let trimmed = issuer.as_str().trim_end_matches('/');
    let oidc = Url::parse(&format!("{trimmed}/.well-known/openid-configuration"))
        .expect("appending a path to a valid URL stays valid");
    let mut rfc8414 = issuer.clone();
    let path = issuer.path().trim_end_matches('/');
    rfc8414.set_path(&format!("/.well-known/oauth-authorization-server{path}"));
    rfc8414.set_query(None);
    [oidc, rfc8414]
}

/// Fetches and checks the metadata of `issuer` with `client` (one built by
/// [`HttpOptions`], shared by the caller's fetches).
pub(crate) async fn discover(
    client: &reqwest::Client,
    issuer: &str,
    options: &HttpOptions,
) -> Result<ProviderMetadata, Error> {
    let issuer_url = fetch::parse_endpoint(issuer, options.allow_insecure_http)?;
    let mut last_error = None;
    for url in metadata_urls(&issuer_url) {
        let response = client
            .get(url.clone())
            .header(http::header::ACCEPT, "application/json")
            .send()
            .instrument(tracing::debug_span!("s2s_auth.discovery", %url))
            .await
            .map_err(|e| fetch::request_error(e, "fetching authorization server metadata"))?;
        let status = response.status();
        if status == http::StatusCode::NOT_FOUND {
            last_error = Some(Error::config(format!(
                "no authorization server metadata at `{url}` (404)"
            )));
            continue;
        }
        let body = fetch::read_body(response, options.max_body).await?;
        if !status.is_success() {
            let err = Error::transient(format!(
                "metadata endpoint `{url}` answered {status}: `{}`",
                fetch::excerpt(&body)
            ))
            .with_status(status);
            return Err(err);
        }
        let meta = ProviderMetadata::from_json(&body, issuer)?;
        tracing::debug!(issuer, %url, "discovered authorization server metadata");
        return Ok(meta);
    }
    Err(last_error.expect("at least one URL was tried"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_locations() {
        let [oidc, oauth] = metadata_urls(&Url::parse("https://a.example/realms/x").unwrap());
        assert_eq!(
            oidc.as_str(),
            "https://a.example/realms/x/.well-known/openid-configuration"
        );
        assert_eq!(
            oauth.as_str(),
            "https://a.example/.well-known/oauth-authorization-server/realms/x"
        );
        let [oidc, oauth] = metadata_urls(&Url::parse("https://a.example/").unwrap());
        assert_eq!(
            oidc.as_str(),
            "https://a.example/.well-known/openid-configuration"
        );
        assert_eq!(
            oauth.as_str(),
            "https://a.example/.well-known/oauth-authorization-server"
        );
    }

    #[test]
    fn issuer_must_match_exactly() {
        let body = br#"{"issuer":"https://a.example/","jwks_uri":"https://a.example/jwks"}"#;
        assert!(ProviderMetadata::from_json(body, "https://a.example/").is_ok());
        let err = ProviderMetadata::from_json(body, "https://a.example").unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Config);
        assert!(ProviderMetadata::from_json(b"<html>", "https://a.example").is_err());
    }
}
