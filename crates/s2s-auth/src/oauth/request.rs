//! The token request of the client credentials grant (RFC 6749 §4.4.2), in both dialects:
//! [`TokenRequest`] is written by the client and read by the issuer.

use std::fmt;

use http::{HeaderValue, StatusCode};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;

use super::Dialect;
use crate::error::{Error, ErrorKind};

/// The `grant_type` of the client credentials grant.
pub const CLIENT_CREDENTIALS: &str = "client_credentials";

/// The `client_assertion_type` of `private_key_jwt` (RFC 7523 §2.2).
pub const JWT_BEARER_ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A token request: the grant type, the client's credentials when they travel in the body, the
/// scope, the audiences (`audience`) and resources (RFC 8707 `resource`) asked for, and any
/// extra parameters.
///
/// ```
/// use s2s_auth::oauth::{Dialect, TokenRequest};
///
/// let request = TokenRequest::client_credentials()
///     .scope("orders:read")
///     .resource("https://orders.example.com")
///     .client_secret_post("billing", "s3cret".to_owned());
/// let (content_type, body) = request.encode(Dialect::Form);
/// assert_eq!(content_type, "application/x-www-form-urlencoded");
/// assert_eq!(
///     String::from_utf8(body.clone()).unwrap(),
///     "grant_type=client_credentials&scope=orders%3Aread\
///      &resource=https%3A%2F%2Forders.example.com&client_id=billing&client_secret=s3cret"
/// );
/// let read = TokenRequest::from_form(&body).unwrap();
/// assert_eq!(read.client_id(), Some("billing"));
/// assert_eq!(read.targets().collect::<Vec<_>>(), ["https://orders.example.com"]);
/// ```
///
/// [`encode`](TokenRequest::encode) writes a form, or a JSON object whose repeated names hold
/// an array; [`from_form`](TokenRequest::from_form) reads a form and refuses a repeated
/// `grant_type`, `client_id`, `client_secret` or `scope` (RFC 6749 §3.2); `Deserialize` reads
/// the JSON dialect (`grantType`, `clientId`, `clientSecret`, also in snake_case; `scope`,
/// `audience`, `resource` each a string or an array of strings). Other parameters are written
/// as given and ignored when read.
///
/// `Debug` never shows the secret or the assertion.
#[derive(Clone, Default)]
pub struct TokenRequest {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<SecretString>,
    client_assertion_type: Option<String>,
    client_assertion: Option<SecretString>,
    scope: Option<String>,
    /// `audience` (false) and `resource` (true) values, in the order they came.
    targets: Vec<(bool, String)>,
    extra: Vec<(String, String)>,
}

impl TokenRequest {
    /// A request of the client credentials grant, with nothing else yet.
    pub fn client_credentials() -> Self {
        TokenRequest {
            grant_type: Some(CLIENT_CREDENTIALS.to_owned()),
            ..TokenRequest::default()
        }
    }

    /// Sets the `scope` (space-delimited).
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// Adds an `audience`.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.targets.push((false, audience.into()));
        self
    }

    /// Adds an RFC 8707 `resource`.
    pub fn resource(mut self, resource: impl Into<String>) -> Self {
        self.targets.push((true, resource.into()));
        self
    }

    /// Adds an extra parameter (written after the standard ones, before the credentials).
    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra.push((name.into(), value.into()));
        self
    }

    /// Authenticates with `client_secret_post`: the client id and secret in the body.
    pub fn client_secret_post(mut self, client_id: impl Into<String>, secret: String) -> Self {
        self.client_id = Some(client_id.into());
        self.client_secret = Some(secret.into());
        self
    }

    /// Authenticates with `private_key_jwt`: the client id and a signed assertion (RFC 7523).
    pub fn client_assertion(mut self, client_id: impl Into<String>, assertion: String) -> Self {
        self.client_id = Some(client_id.into());
        self.client_assertion_type = Some(JWT_BEARER_ASSERTION.to_owned());
        self.client_assertion = Some(assertion.into());
        self
    }

    /// The `grant_type`.
    pub fn grant_type(&self) -> Option<&str> {
        self.grant_type.as_deref()
    }

    /// The `client_id` of the body.
    pub fn client_id(&self) -> Option<&str> {
        self.client_id.as_deref()
    }

    /// Takes the `client_id` out of the request.
    pub fn take_client_id(&mut self) -> Option<String> {
        self.client_id.take()
    }

    /// The `client_secret` of the body. Treat it as a secret.
    pub fn client_secret(&self) -> Option<&str> {
        self.client_secret.as_ref().map(|s| s.expose_secret())
    }

    /// Takes the `client_secret` out of the request.
    pub fn take_client_secret(&mut self) -> Option<SecretString> {
        self.client_secret.take()
    }

    /// Whether the body carries a client assertion (`client_assertion` or its type).
    pub fn has_client_assertion(&self) -> bool {
        self.client_assertion.is_some() || self.client_assertion_type.is_some()
    }

    /// The `scope` as sent (space-delimited).
    pub fn requested_scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }

    /// The `audience` and `resource` values, in the order they came.
    pub fn targets(&self) -> impl Iterator<Item = &str> {
        self.targets.iter().map(|(_, t)| t.as_str())
    }

    /// The request body in `dialect`, with its `Content-Type`.
    pub fn encode(&self, dialect: Dialect) -> (HeaderValue, Vec<u8>) {
        let names = dialect.names();
        let mut params: Vec<(&str, &str)> = Vec::new();
        if let Some(grant_type) = &self.grant_type {
            params.push((names.grant_type, grant_type));
        }
        if let Some(scope) = &self.scope {
            params.push(("scope", scope));
        }
        for (is_resource, target) in &self.targets {
            params.push((if *is_resource { "resource" } else { "audience" }, target));
        }
        params.extend(self.extra.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        if let Some(id) = &self.client_id {
            params.push((names.client_id, id));
        }
        if let Some(secret) = &self.client_secret {
            params.push((names.client_secret, secret.expose_secret()));
        }
        if let Some(kind) = &self.client_assertion_type {
            params.push(("client_assertion_type", kind));
        }
        if let Some(assertion) = &self.client_assertion {
            params.push(("client_assertion", assertion.expose_secret()));
        }
        dialect.encode(&params)
    }

    /// Reads an `application/x-www-form-urlencoded` body. Fails (a [`ErrorKind::Rejected`]
    /// error for a 400 `invalid_request`) when a parameter that may appear once is repeated.
    pub fn from_form(body: &[u8]) -> Result<TokenRequest, Error> {
        let mut request = TokenRequest::default();
        let mut seen: Vec<String> = Vec::new();
        for (name, value) in url::form_urlencoded::parse(body) {
            let value = value.into_owned();
            match name.as_ref() {
                "grant_type" | "client_id" | "client_secret" | "scope" => {}
                "audience" => {
                    request.targets.push((false, value));
                    continue;
                }
                "resource" => {
                    request.targets.push((true, value));
                    continue;
                }
                "client_assertion_type" => {
                    request.client_assertion_type = Some(value);
                    continue;
                }
                "client_assertion" => {
                    request.client_assertion = Some(value.into());
                    continue;
                }
                _ => continue,
            }
            if seen.iter().any(|s| *s == name) {
                return Err(Error::new(
                    ErrorKind::Rejected,
                    format!("the parameter `{name}` is repeated (RFC 6749 §3.2)"),
                )
                .with_status(StatusCode::BAD_REQUEST)
                .with_oauth_error("invalid_request"));
            }
            match name.as_ref() {
                "grant_type" => request.grant_type = Some(value),
                "client_id" => request.client_id = Some(value),
                "client_secret" => request.client_secret = Some(value.into()),
                _ => request.scope = Some(value),
            }
            seen.push(name.into_owned());
        }
        Ok(request)
    }
}

impl fmt::Debug for TokenRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenRequest")
            .field("grant_type", &self.grant_type)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "[redacted]"),
            )
            .field(
                "client_assertion",
                &self.has_client_assertion().then_some("[redacted]"),
            )
            .field("scope", &self.scope)
            .field("targets", &self.targets().collect::<Vec<_>>())
            .field(
                "extra",
                &self.extra.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// One string or several.
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// The JSON dialect's body (its name shows in serde's messages: keep it). Unknown members are
/// ignored, as unknown form parameters are (RFC 6749 §3.2).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonTokenRequest {
    #[serde(alias = "grant_type")]
    grant_type: Option<String>,
    #[serde(alias = "client_id")]
    client_id: Option<String>,
    #[serde(alias = "client_secret")]
    client_secret: Option<String>,
    scope: Option<OneOrMany>,
    audience: Option<OneOrMany>,
    resource: Option<OneOrMany>,
}

impl<'de> Deserialize<'de> for TokenRequest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let json = JsonTokenRequest::deserialize(deserializer)?;
        let mut targets = Vec::new();
        for (is_resource, list) in [(false, json.audience), (true, json.resource)] {
            for target in list.map(OneOrMany::into_vec).unwrap_or_default() {
                targets.push((is_resource, target));
            }
        }
        Ok(TokenRequest {
            grant_type: json.grant_type,
            client_id: json.client_id,
            client_secret: json.client_secret.map(SecretString::from),
            client_assertion_type: None,
            client_assertion: None,
            scope: json.scope.map(|s| s.into_vec().join(" ")),
            targets,
            extra: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_form_parameters_are_refused() {
        let err =
            TokenRequest::from_form(b"grant_type=client_credentials&scope=a&scope=b").unwrap_err();
        assert_eq!(err.oauth_error(), Some("invalid_request"));
        assert!(err.message().contains("`scope`"), "{err}");
        let ok =
            TokenRequest::from_form(b"grant_type=client_credentials&resource=a&audience=b&x=1")
                .unwrap();
        assert_eq!(ok.targets().collect::<Vec<_>>(), ["a", "b"]);
        assert!(!ok.has_client_assertion());
        let ok = TokenRequest::from_form(
            b"client_assertion_type=x&client_assertion=y&client_assertion=z",
        )
        .unwrap();
        assert!(ok.has_client_assertion());
    }

    #[test]
    fn both_dialects_read_back() {
        let request = TokenRequest::client_credentials()
            .scope("a b")
            .audience("https://aud")
            .resource("https://r1")
            .resource("https://r2")
            .client_secret_post("svc", "pw".to_owned());
        let (_, form) = request.encode(Dialect::Form);
        let (_, json) = request.encode(Dialect::Json);
        let json_value: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(
            json_value,
            serde_json::json!({
                "grantType": "client_credentials", "scope": "a b", "audience": "https://aud",
                "resource": ["https://r1", "https://r2"], "clientId": "svc", "clientSecret": "pw",
            })
        );
        let read = [
            TokenRequest::from_form(&form).unwrap(),
            serde_json::from_slice::<TokenRequest>(&json).unwrap(),
        ];
        for r in read {
            assert_eq!(r.grant_type(), Some(CLIENT_CREDENTIALS));
            assert_eq!(r.client_id(), Some("svc"));
            assert_eq!(r.client_secret(), Some("pw"));
            assert_eq!(r.requested_scope(), Some("a b"));
            assert_eq!(
                r.targets().collect::<Vec<_>>(),
                ["https://aud", "https://r1", "https://r2"]
            );
            assert!(!format!("{r:?}").contains("pw"));
        }
        let snake: TokenRequest = serde_json::from_slice(
            br#"{"grant_type":"client_credentials","scope":["a","b"],"x":1}"#,
        )
        .unwrap();
        assert_eq!(snake.requested_scope(), Some("a b"));
    }

    #[test]
    fn assertions_are_written_after_the_client_id() {
        let (_, body) = TokenRequest::client_credentials()
            .client_assertion("svc", "eyJ.x.y".to_owned())
            .encode(Dialect::Form);
        assert_eq!(
            String::from_utf8(body).unwrap(),
            "grant_type=client_credentials&client_id=svc&client_assertion_type=urn%3Aietf%3A\
             params%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=eyJ.x.y"
        );
    }
}
