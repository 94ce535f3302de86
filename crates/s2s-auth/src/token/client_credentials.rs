//! [`ClientCredentials`]: the OAuth 2.0 client credentials grant (RFC 6749 §4.4).

use std::{
    fmt,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::Engine as _;
use jsonwebtoken::{EncodingKey, Header};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use tokio::sync::OnceCell;
use url::Url;

use crate::{
    algorithm::Algorithm,
    discovery,
    error::Error,
    fetch::{self, HttpOptions},
};

use crate::oauth::{self, Dialect, TokenRequest};

/// Where the token endpoint is.
#[derive(Clone, Debug)]
enum Endpoint {
    Url(String),
    Discover(String),
}

/// How the client proves its identity to the token endpoint.
#[derive(Clone)]
pub enum ClientAuth {
    /// `client_secret_basic` (the default of RFC 6749 §2.3.1): HTTP Basic with the id and
    /// secret each form-urlencoded first. Form dialect only.
    SecretBasic(SecretString),
    /// `client_secret_post`: id and secret in the body (`client_id` / `client_secret` in a
    /// form, `clientId` / `clientSecret` in the [JSON dialect](Dialect::Json)).
    SecretPost(SecretString),
    /// `private_key_jwt` (RFC 7523, OIDC Core §9): a short-lived JWT signed with the client's
    /// private key (`iss` = `sub` = client id, `aud` = token endpoint, unique `jti`). Form
    /// dialect only.
    PrivateKeyJwt(SigningKey),
}

impl fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientAuth::SecretBasic(_) => f.write_str("SecretBasic([redacted])"),
            ClientAuth::SecretPost(_) => f.write_str("SecretPost([redacted])"),
            ClientAuth::PrivateKeyJwt(key) => f.debug_tuple("PrivateKeyJwt").field(key).finish(),
        }
    }
}

impl ClientAuth {
    /// `private_key_jwt` with a PEM private key: [`SigningKey::from_pem`].
    pub fn private_key_pem(alg: Algorithm, pem: &[u8], kid: Option<String>) -> Result<Self, Error> {
        Ok(ClientAuth::PrivateKeyJwt(SigningKey::from_pem(
            alg, pem, kid,
        )?))
    }
}

/// The private key a client signs its `private_key_jwt` assertions with, with its algorithm and
/// the `kid` the server knows it by. Cheap to clone; `Debug` never shows the key.
///
/// ```
/// use s2s_auth::{Algorithm, token::{ClientAuth, SigningKey}};
///
/// let err = SigningKey::from_pem(Algorithm::ES256, b"not a key", None).unwrap_err();
/// assert!(err.to_string().contains("ES256"), "{err}");
/// # let _ = |key: SigningKey| ClientAuth::PrivateKeyJwt(key);
/// ```
#[derive(Clone)]
pub struct SigningKey {
    key: Arc<EncodingKey>,
    alg: Algorithm,
    kid: Option<String>,
}

impl SigningKey {
    /// A key from its PEM (PKCS#8, or PKCS#1 for RSA, SEC1 for EC), for `alg`.
    pub fn from_pem(alg: Algorithm, pem: &[u8], kid: Option<String>) -> Result<Self, Error> {
        let bad = |e: jsonwebtoken::errors::Error| {
            Error::config(format!("the {alg} private key cannot be read from its PEM"))
                .with_source(e)
        };
        let key = match alg {
            Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(pem).map_err(bad)?,
            Algorithm::EdDSA => EncodingKey::from_ed_pem(pem).map_err(bad)?,
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => EncodingKey::from_rsa_pem(pem).map_err(bad)?,
        };
        Ok(SigningKey {
            key: Arc::new(key),
            alg,
            kid,
        })
    }

    /// The algorithm the key signs with.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The `kid` put in the assertion's header, if any.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SigningKey({}, kid {:?}, [redacted])",
            self.alg, self.kid
        )
    }
}

/// The client credentials grant against one token endpoint, for one client, scope set and
/// audience. [`TokenManager`](super::TokenManager) caches what it returns.
///
/// ```
/// use s2s_auth::token::{ClientAuth, ClientCredentials};
///
/// let grant = ClientCredentials::new(
///     "https://auth.example.com/oauth/token",
///     "billing-service",
///     ClientAuth::SecretBasic("s3cret".into()),
/// )
/// .scope("orders:read")
/// .audience("https://orders.example.com");
/// assert!(!format!("{grant:?}").contains("s3cret"));
/// ```
///
/// Against an Auth Service that takes only its JSON body
/// (`{"grantType", "clientId", "clientSecret", "scope"}`, answered with `accessToken` /
/// `expiresIn`), choose [`Dialect::Json`] and `client_secret_post`:
///
/// ```
/// use s2s_auth::token::{ClientAuth, ClientCredentials, Dialect};
///
/// let grant = ClientCredentials::new(
///     "https://api.example.com/auth/token",
///     "val_svc_client_a1b2c3",
///     ClientAuth::SecretPost("cs_4d5e6f7g8h9i0j".into()),
/// )
/// .dialect(Dialect::Json)
/// .scope("workflow:read")
/// .scope("validation:write");
/// ```
#[derive(Clone)]
pub struct ClientCredentials {
    endpoint: Endpoint,
    client_id: String,
    auth: ClientAuth,
    scopes: Vec<String>,
    audience: Option<String>,
    resources: Vec<String>,
    params: Vec<(String, String)>,
    dialect: Dialect,
    http: HttpOptions,
    /// The token endpoint and the client that posts to it (one that follows no redirect).
    resolved: Arc<OnceCell<(Url, reqwest::Client)>>,
}

impl fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("endpoint", &self.endpoint)
            .field("dialect", &self.dialect)
            .field("client_id", &self.client_id)
            .field("auth", &self.auth)
            .field("scopes", &self.scopes)
            .field("audience", &self.audience)
            .field("resources", &self.resources)
            .field(
                "params",
                &self.params.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// What a token endpoint answered (RFC 6749 §5.1).
#[derive(Clone)]
pub struct TokenResponse {
    /// The access token. Treat it as a secret.
    pub access_token: SecretString,
    /// How long the token lives, from `expires_in`, else the JWT's `exp`, else `None`. At most
    /// [`MAX_EXPIRES_IN`]; [`TokenManager`](super::TokenManager) clamps it further to its
    /// [`RefreshPolicy`](super::RefreshPolicy) bounds.
    pub expires_in: Option<Duration>,
    /// The scopes granted, when the server says (`scope`).
    pub scope: Option<String>,
}

impl fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &"[redacted]")
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .finish()
    }
}

/// The largest lifetime a [`TokenResponse`] carries (about 136 years): a larger `expires_in`, or
/// a JWT `exp` further away, is lowered to it, so that adding it to a clock reading never
/// overflows.
pub const MAX_EXPIRES_IN: Duration = Duration::from_secs(u32::MAX as u64);

/// `secs` seconds, at most [`MAX_EXPIRES_IN`].
fn bounded_secs(secs: u64) -> Duration {
    Duration::from_secs(secs).min(MAX_EXPIRES_IN)
}

impl ClientCredentials {
    /// The grant against the token endpoint `token_url`, for `client_id`, authenticated with
    /// `auth`.
    pub fn new(
        token_url: impl Into<String>,
        client_id: impl Into<String>,
        auth: ClientAuth,
    ) -> Self {
        Self::with_endpoint(Endpoint::Url(token_url.into()), client_id.into(), auth)
    }

    /// The grant against the token endpoint named by `issuer`'s discovery metadata, for
    /// `client_id`, authenticated with `auth`.
    pub fn discover(
        issuer: impl Into<String>,
        client_id: impl Into<String>,
        auth: ClientAuth,
    ) -> Self {
        // The token URL is looked up at the first fetch.
        let endpoint = Endpoint::Discover(issuer.into());
        Self::with_endpoint(endpoint, client_id.into(), auth)
    }

    fn with_endpoint(endpoint: Endpoint, client_id: String, auth: ClientAuth) -> Self {
        ClientCredentials {
            endpoint,
            client_id,
            auth,
            scopes: Vec::new(),
            audience: None,
            resources: Vec::new(),
            params: Vec::new(),
            dialect: Dialect::default(),
            http: HttpOptions::default(),
            resolved: Arc::default(),
        }
    }

    /// Replaces how the client authenticates (given to [`ClientCredentials::new`]).
    pub fn auth(mut self, auth: ClientAuth) -> Self {
        self.auth = auth;
        self
    }

    /// Asks for `scope` (call again for several).
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scopes.push(scope.into());
        self
    }

    /// Sends `audience` (as Auth0 and others expect).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// Sends `resource` (RFC 8707; call again for several).
    pub fn resource(mut self, resource: impl Into<String>) -> Self {
        self.resources.push(resource.into());
        self
    }

    /// Sends another parameter (a form parameter, or a string member of the JSON body).
    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.push((name.into(), value.into()));
        self
    }

    /// How the request is written and the answer read (default [`Dialect::Form`], RFC 6749).
    /// See [`Dialect`] for how each setting of the grant maps onto the JSON dialect, and what
    /// it refuses.
    pub fn dialect(mut self, dialect: Dialect) -> Self {
        self.dialect = dialect;
        self
    }

    /// Timeouts, body limit and https policy.
    pub fn http(mut self, http: HttpOptions) -> Self {
        self.http = http;
        self
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// What identifies the cached token: a SHA-256 digest of the whole grant (endpoint, dialect,
    /// client id, client authentication with its secret or key, sorted scopes, audience, resources,
    /// extra parameters, HTTP options), so that the secret itself is never kept as a key and two
    /// grants that differ in anything never share a token.
    pub(crate) fn cache_key(&self) -> [u8; 32] {
        self.digest(true)
    }

    /// What identifies the token in a cache shared by replicas (feature `redis`): the same
    /// digest without the secret or key material (only the method), the HTTP options and under
    /// its own domain label. Replicas mid-rotation with different secrets share one token, and no
    /// digest of a secret is ever stored where an offline guess could test it.
    #[cfg(feature = "redis")]
    pub(crate) fn shared_key(&self) -> [u8; 32] {
        self.digest(false)
    }

    fn digest(&self, local: bool) -> [u8; 32] {
        let mut scopes: Vec<&str> = self.scopes.iter().map(String::as_str).collect();
        scopes.sort_unstable();
        scopes.dedup();
        let mut digest = Sha256::new();
        // Every field length-prefixed, so that no two different grants hash the same input.
        let mut field = |bytes: &[u8]| {
            digest.update((bytes.len() as u64).to_be_bytes());
            digest.update(bytes);
        };
        match &self.endpoint {
            Endpoint::Url(u) => (field(b"url"), field(u.as_bytes())),
            Endpoint::Discover(u) => (field(b"discover"), field(u.as_bytes())),
        };
        field(format!("{:?}", self.dialect).as_bytes());
        field(self.client_id.as_bytes());
        if !local {
            field(b"s2s-auth shared token v1");
        }
        match &self.auth {
            ClientAuth::SecretBasic(secret) => {
                field(b"client_secret_basic");
                if local {
                    field(secret.expose_secret().as_bytes());
                }
            }
            ClientAuth::SecretPost(secret) => {
                field(b"client_secret_post");
                if local {
                    field(secret.expose_secret().as_bytes());
                }
            }
            ClientAuth::PrivateKeyJwt(SigningKey { key, alg, kid }) => {
                field(b"private_key_jwt");
                if local {
                    field(key.as_bytes());
                    field(alg.as_str().as_bytes());
                    field(format!("{kid:?}").as_bytes());
                }
            }
        }
        field(&(scopes.len() as u64).to_be_bytes());
        scopes.iter().for_each(|s| field(s.as_bytes()));
        field(format!("{:?}", self.audience).as_bytes());
        field(&(self.resources.len() as u64).to_be_bytes());
        self.resources.iter().for_each(|r| field(r.as_bytes()));
        field(&(self.params.len() as u64).to_be_bytes());
        for (k, v) in &self.params {
            field(k.as_bytes());
            field(v.as_bytes());
        }
        if local {
            let HttpOptions {
                allow_insecure_http,
                timeout,
                max_body,
            } = &self.http;
            field(format!("{allow_insecure_http}|{timeout:?}|{max_body}").as_bytes());
        }
        digest.finalize().into()
    }

    /// Checks the configuration without any I/O (URL policy).
    pub(crate) fn validate(&self) -> Result<(), Error> {
        let url = match &self.endpoint {
            Endpoint::Url(u) | Endpoint::Discover(u) => u,
        };
        fetch::parse_endpoint(url, self.http.allow_insecure_http)?;
        if self.client_id.is_empty() {
            return Err(Error::config("the client id is empty"));
        }
        self.check_dialect()
    }

    /// Refuses what the dialect cannot express (see [`Dialect`]).
    fn check_dialect(&self) -> Result<(), Error> {
        if self.dialect != Dialect::Json {
            return Ok(());
        }
        match &self.auth {
            ClientAuth::SecretPost(_) => {}
            ClientAuth::SecretBasic(_) => {
                return Err(Error::config(
                    "the JSON dialect sends the client secret as `clientSecret` in the body: \
                     authenticate with ClientAuth::SecretPost, not client_secret_basic",
                ));
            }
            ClientAuth::PrivateKeyJwt(_) => {
                return Err(Error::config(
                    "the JSON dialect has no member for a client assertion: use \
                     ClientAuth::SecretPost, or the form dialect for private_key_jwt",
                ));
            }
        }
        let reserved = self.dialect.reserved();
        if let Some((name, _)) = self
            .params
            .iter()
            .find(|(k, _)| reserved.contains(&k.as_str()))
        {
            return Err(Error::config(format!(
                "the extra parameter `{}` would overwrite the JSON dialect's own member of that \
                 name: set scopes, audience and resources with their own methods",
                crate::rejection::sanitize(name, 40)
            )));
        }
        Ok(())
    }

    async fn resolve(&self) -> Result<&(Url, reqwest::Client), Error> {
        self.resolved
            .get_or_try_init(|| async {
                let url = match &self.endpoint {
                    Endpoint::Url(u) => fetch::parse_endpoint(u, self.http.allow_insecure_http)?,
                    Endpoint::Discover(issuer) => {
                        discovery::discover(&self.http.client()?, issuer, &self.http)
                            .await?
                            .token_endpoint(self.http.allow_insecure_http)?
                    }
                };
                Ok((url, self.http.client_without_redirects()?))
            })
            .await
    }

    /// Asks the token endpoint for a token, once.
    ///
    /// Redirects are not followed: a 3xx answer is an error that names where it pointed, since
    /// following it would re-send the client's secret or assertion to that place (configure the
    /// final token endpoint URL instead). A 2xx answer that is not a token response is an error
    /// that never quotes the body (it may hold a token).
    pub async fn fetch(&self) -> Result<TokenResponse, Error> {
        self.check_dialect()?;
        let (url, client) = self.resolve().await?;
        let mut token_request = TokenRequest::client_credentials();
        let scope = self.scopes.join(" ");
        if !scope.is_empty() {
            token_request = token_request.scope(scope);
        }
        if let Some(audience) = &self.audience {
            token_request = token_request.audience(audience.as_str());
        }
        for resource in &self.resources {
            token_request = token_request.resource(resource.as_str());
        }
        for (k, v) in &self.params {
            token_request = token_request.param(k.as_str(), v.as_str());
        }
        let mut request = client.post(url.clone());
        match &self.auth {
            ClientAuth::SecretBasic(secret) => {
                request = request.header(
                    http::header::AUTHORIZATION,
                    oauth::client_secret_basic(&self.client_id, secret.expose_secret()),
                );
            }
            ClientAuth::SecretPost(secret) => {
                token_request = token_request
                    .client_secret_post(&*self.client_id, secret.expose_secret().to_owned());
            }
            ClientAuth::PrivateKeyJwt(key) => {
                let assertion = self.client_assertion(url, key)?;
                token_request = token_request.client_assertion(&*self.client_id, assertion);
            }
        }
        let (content_type, body) = token_request.encode(self.dialect);
        let response = request
            .header(http::header::ACCEPT, "application/json")
            .header(http::header::CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await
            .map_err(|e| fetch::request_error(e, "requesting a token"))?;
        let status = response.status();
        if status.is_redirection() {
            return Err(redirect_error(url, status, response.headers()));
        }
        let retry_after = retry_after(response.headers());
        let body = fetch::read_body(response, self.http.max_body).await?;
        if status.is_success() {
            oauth::parse_success(self.dialect, &body)
        } else {
            Err(oauth::parse_error(
                self.dialect,
                status,
                &body,
                retry_after,
                &self.client_id,
            ))
        }
    }

    fn client_assertion(&self, audience: &Url, key: &SigningKey) -> Result<String, Error> {
        let alg = key.alg;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut header = Header::new(alg.to_jwt());
        header.kid = key.kid.clone();
        let jti: [u8; 16] = rand::random();
        let claims = serde_json::json!({
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": audience.as_str(),
            "jti": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(jti),
            "iat": now,
            "exp": now + 60,
        });
        jsonwebtoken::encode(&header, &claims, &key.key).map_err(|e| {
            Error::config(format!(
                "could not sign the client assertion with the {alg} key"
            ))
            .with_source(e)
        })
    }
}

/// The refusal of a 3xx from the token endpoint: where it pointed, never followed.
fn redirect_error(url: &Url, status: http::StatusCode, headers: &http::HeaderMap) -> Error {
    let location = headers
        .get(http::header::LOCATION)
        .map(|l| fetch::excerpt(l.as_bytes()))
        .unwrap_or_else(|| "nowhere".into());
    // Transient, as a refused redirect of a discovery or JWKS fetch: the endpoint may stop
    // redirecting (maintenance), and retrying never follows it.
    Error::transient(format!(
        "the token endpoint `{url}` answered {status} redirecting to `{location}`; refusing to \
         follow a redirect of a token request (it would re-send the client's credentials): \
         configure the final token endpoint URL"
    ))
    .with_status(status)
}

/// `Retry-After` in seconds (the HTTP-date form is ignored), bounded.
fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
        .map(bounded_secs)
}

/// The remaining lifetime of a JWT access token, from its `exp` (not verified: only used to
/// schedule the refresh of the token it came with).
pub(crate) fn jwt_lifetime(token: &str) -> Option<Duration> {
    #[derive(Deserialize)]
    struct Exp {
        exp: u64,
    }
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let exp = serde_json::from_slice::<Exp>(&bytes).ok()?.exp;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
    Some(bounded_secs(exp.saturating_sub(now)))
}
