//! Configuration by file and environment (feature `config`): one binary runs against the dev,
//! int and prod authorization servers by configuration alone.
//!
//! [`VerifierConfig`] describes the receiving side (issuers, their audiences, key cache, leeway,
//! token type policy) and builds a [`Verifier`]; [`ClientConfig`] describes the calling side
//! (token endpoint or discovery, client id and authentication, scopes, audience, destinations)
//! and builds a [`ClientCredentials`] grant or a [`TokenManager`]. Both deserialise with serde
//! (so they can sit inside an application's own configuration), load from TOML
//! ([`VerifierConfig::from_toml_str`], [`VerifierConfig::from_file`]) and take overrides from
//! `S2S_*` environment variables ([`VerifierConfig::with_env`]): environment over file.
//!
//! ```
//! use s2s_auth::config::{ClientConfig, VerifierConfig};
//!
//! let verifier = VerifierConfig::from_toml_str(r#"
//!     audiences = ["orders-api"]          # for issuers without audiences of their own
//!     leeway = "30s"
//!     require_at_jwt = true
//!
//!     [[issuer]]
//!     id = "https://auth.example.com"     # keys found through its discovery metadata
//!
//!     [[issuer]]
//!     id = "https://partner.example.net"
//!     jwks_url = "https://partner.example.net/keys.json"
//!     audiences = ["orders-partner-api"]  # this issuer's tokens must name this one
//!
//!     [keys]
//!     min_ttl = "1m"
//!     max_ttl = "1h"
//!     max_stale = "6h"
//! "#)?
//! // The deployment says where the issuer is: S2S_ISSUER_URL, S2S_AUDIENCE, ...
//! .with_env_from(|name| (name == "S2S_LEEWAY").then(|| "10s".to_owned()))?
//! .build()?;
//!
//! let client = ClientConfig::from_toml_str(r#"
//!     issuer = "https://auth.example.com"  # or token_url = "https://…/oauth/token"
//!     client_id = "billing-service"
//!     auth = "basic"                        # basic | post | private_key_jwt
//!     client_secret_env = "BILLING_CLIENT_SECRET"
//!     scopes = ["orders:read"]
//!     audience = "https://orders.example.com"
//!     destinations = ["https://orders.example.com"]
//! "#)?;
//! assert_eq!(client.destinations(), ["https://orders.example.com"]);
//! # let _ = verifier;
//! # Ok::<_, s2s_auth::Error>(())
//! ```
//!
//! # Keys and environment variables
//!
//! Durations are written `250ms`, `30s`, `5m` or `1h`; lists in environment variables are
//! separated by commas or spaces, and a variable set to the empty string counts as unset. A
//! variable replaces the file's value (a list variable the whole list). Every key is optional
//! unless marked.
//!
//! | `VerifierConfig` key | Environment         | Meaning                                                |
//! |----------------------|---------------------|--------------------------------------------------------|
//! | `[[issuer]] id`      | `S2S_ISSUER_URL`    | required: the `iss` of accepted tokens, and where discovery starts (without `jwks_url`). The variable replaces the file's issuers with this one |
//! | `[[issuer]] jwks_url`| `S2S_JWKS_URL`      | the issuer's JWK set, instead of discovery (the variable applies to the single issuer) |
//! | `[[issuer]] audiences`| —                  | audiences this issuer's tokens must name (one of)      |
//! | `[[issuer]] tenants` | `S2S_ISSUER_TENANTS`| with `{tenantid}` in `id` (and optionally in `jwks_url`): an issuer template, accepting these tenants only ([`Issuer::template`]) |
//! | `[[issuer]] tenant_claim` | —              | the claim that must name the template's tenant (default `tid`), or `false` |
//! | `max_tenants`        | `S2S_MAX_TENANTS`   | tenant key caches kept at most, least recently used dropped (default 1000; at least the tenants the lists allow) |
//! | `tenant_fetch_burst`, `tenant_fetch_interval` | `S2S_TENANT_FETCH_BURST`, `S2S_TENANT_FETCH_INTERVAL` | tenant key fetches allowed at once, then one per interval, for all tenants (default 100 and 100ms; [`VerifierBuilder::tenant_fetch_limit`](crate::VerifierBuilder::tenant_fetch_limit)) |
//! | `audiences`          | `S2S_AUDIENCE`      | audiences for issuers without their own (every issuer needs some) |
//! | `leeway`             | `S2S_LEEWAY`        | clock skew allowed on `exp`/`nbf` (default 30s)        |
//! | `require_at_jwt`     | `S2S_REQUIRE_AT_JWT`| `true`: only `typ: at+jwt` tokens (RFC 9068)           |
//! | `required_claims`    | —                   | claims every token must carry                          |
//! | `allow_insecure_http`| `S2S_ALLOW_INSECURE_HTTP` | key URLs may be plain http beyond loopback       |
//! | `[keys] min_ttl`, `max_ttl`, `default_ttl` | `S2S_KEYS_MIN_TTL`, `S2S_KEYS_MAX_TTL`, `S2S_KEYS_DEFAULT_TTL` | bounds of a key set's time to live |
//! | `[keys] max_stale`   | `S2S_KEYS_MAX_STALE`| how long keys serve an outage past their TTL (24h)     |
//!
//! | `ClientConfig` key   | Environment         | Meaning                                                |
//! |----------------------|---------------------|--------------------------------------------------------|
//! | `issuer`             | `S2S_ISSUER_URL`    | the token endpoint is found through discovery (exactly one of `issuer` and `token_url`; a variable replaces the file's choice) |
//! | `token_url`          | `S2S_TOKEN_URL`     | the token endpoint itself                              |
//! | `client_id`          | `S2S_CLIENT_ID`     | required                                               |
//! | `auth`               | `S2S_CLIENT_AUTH`   | `basic` (default), `post` or `private_key_jwt`         |
//! | —                    | `S2S_CLIENT_SECRET` | the secret itself: environment only                    |
//! | `client_secret_env`  | —                   | the name of the variable holding the secret            |
//! | `client_secret_file` | `S2S_CLIENT_SECRET_FILE` | a file holding the secret (a final newline is dropped) |
//! | `private_key_file`   | `S2S_CLIENT_KEY_FILE` | PEM key for `private_key_jwt`                        |
//! | `private_key_alg`    | `S2S_CLIENT_KEY_ALG`| its algorithm (default `ES256`)                        |
//! | `key_id`             | `S2S_CLIENT_KEY_ID` | the `kid` the server knows the key by                  |
//! | `scopes`             | `S2S_SCOPES`        | scopes asked for                                       |
//! | `audience`           | `S2S_TOKEN_AUDIENCE`| `audience` parameter (Auth0 and others)                |
//! | `resources`          | `S2S_TOKEN_RESOURCE`| `resource` parameters (RFC 8707)                       |
//! | `params`             | —                   | other form parameters (a table of strings)             |
//! | `dialect`            | `S2S_TOKEN_DIALECT` | `form` (RFC 6749, default) or `json` ([`Dialect`])     |
//! | `destinations`       | `S2S_DESTINATIONS`  | origins the token may be sent to ([`AuthorizeLayer::allow_origin`](crate::layer::AuthorizeLayer::allow_origin)) |
//! | `allow_insecure_http`| `S2S_ALLOW_INSECURE_HTTP` | plain http token endpoint and destinations beyond loopback |
//!
//! **Secrets are never read from a configuration file**: a `client_secret` key is refused
//! (configuration files end up in repositories and images). The file names where the secret is
//! (`client_secret_env`, `client_secret_file`), or the deployment sets `S2S_CLIENT_SECRET`.
//! The secret is read when the grant is built, kept as a [`SecretString`], and shown by no
//! `Debug` or error.
//!
//! Errors name the key (`issuer[1].jwks_url: …`), the variable (`S2S_LEEWAY: …`) or, for TOML
//! syntax and types, the line and column, and say what is wrong.

use std::{collections::BTreeMap, path::Path, path::PathBuf, time::Duration};

use crate::algorithm::Algorithm;
use secrecy::SecretString;
use serde::{Deserialize, de::IgnoredAny};

use crate::{
    error::Error,
    fetch::{self, HttpOptions},
    keys::KeyCacheOptions,
    layer::AuthorizeLayer,
    token::{ClientAuth, ClientCredentials, Dialect, TokenManager},
    verify::{
        Issuer, TenantPolicy, Verifier,
        tenants::{DEFAULT_TENANT_CLAIM, TENANT_PLACEHOLDER},
    },
};

/// Where environment variables come from: the process (`std::env::var`) or, in tests and
/// embedders, any lookup.
fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The configuration of a [`Verifier`]. See the [module docs](self) for the keys.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifierConfig {
    #[serde(default, alias = "issuers")]
    issuer: Vec<IssuerConfig>,
    #[serde(default)]
    audiences: Vec<String>,
    leeway: Option<String>,
    #[serde(default)]
    require_at_jwt: bool,
    #[serde(default)]
    required_claims: Vec<String>,
    #[serde(default)]
    allow_insecure_http: bool,
    #[serde(default)]
    keys: KeysConfig,
    max_tenants: Option<u64>,
    tenant_fetch_burst: Option<u32>,
    tenant_fetch_interval: Option<String>,
}

/// One `[[issuer]]` of a [`VerifierConfig`].
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IssuerConfig {
    #[serde(alias = "url")]
    id: String,
    jwks_url: Option<String>,
    #[serde(default)]
    audiences: Vec<String>,
    /// For an issuer template (`{tenantid}` in `id`): the tenants accepted.
    #[serde(default)]
    tenants: Vec<String>,
    /// For an issuer template: the claim naming the tenant (default `tid`), or `false`.
    tenant_claim: Option<TenantClaim>,
}

/// `tenant_claim = "tid"`, or `tenant_claim = false` when `iss` alone names the tenant.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
enum TenantClaim {
    Name(String),
    Off(bool),
}

/// `[keys]`: the remote key cache.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysConfig {
    min_ttl: Option<String>,
    max_ttl: Option<String>,
    default_ttl: Option<String>,
    max_stale: Option<String>,
}

/// `from_env` and `with_env` for a configuration with `Default` and a `with_env_from`.
macro_rules! env_constructors {
    () => {
        /// The configuration from `S2S_*` environment variables alone.
        pub fn from_env() -> Result<Self, Error> {
            Self::default().with_env()
        }

        /// This configuration with the `S2S_*` environment variables that are set applied over
        /// it.
        pub fn with_env(self) -> Result<Self, Error> {
            self.with_env_from(process_env)
        }
    };
}

crate::debug_fields!(VerifierConfig:
    issuer, audiences, leeway, require_at_jwt, allow_insecure_http, keys);

impl VerifierConfig {
    /// Parses a TOML document (nothing is fetched; [`VerifierConfig::build`] checks the rest).
    pub fn from_toml_str(text: &str) -> Result<Self, Error> {
        from_toml(text, None)
    }

    /// Reads and parses the TOML file at `path`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, Error> {
        from_file(path.as_ref())
    }

    env_constructors!();

    /// [`VerifierConfig::with_env`] with variables looked up by `env` instead of the process
    /// environment.
    pub fn with_env_from(mut self, env: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let env = Env(&env);
        if let Some(id) = env.get("S2S_ISSUER_URL") {
            self.issuer = vec![IssuerConfig {
                id,
                jwks_url: None,
                audiences: Vec::new(),
                tenants: Vec::new(),
                tenant_claim: None,
            }];
        }
        if let Some(url) = env.get("S2S_JWKS_URL") {
            match self.issuer.as_mut_slice() {
                [only] => only.jwks_url = Some(url),
                other => {
                    return Err(Error::config(format!(
                        "S2S_JWKS_URL: applies to a single issuer, and the configuration has {}: \
                         set S2S_ISSUER_URL too",
                        other.len()
                    )));
                }
            }
        }
        if let Some(tenants) = env.get("S2S_ISSUER_TENANTS") {
            match self.issuer.as_mut_slice() {
                [only] => env.list("S2S_ISSUER_TENANTS", &mut only.tenants),
                other => {
                    return Err(Error::config(format!(
                        "S2S_ISSUER_TENANTS: applies to a single issuer template, and the \
                         configuration has {} issuers (tenants `{tenants}`): set \
                         S2S_ISSUER_URL too",
                        other.len()
                    )));
                }
            }
        }
        env.list("S2S_AUDIENCE", &mut self.audiences);
        env.set("S2S_LEEWAY", &mut self.leeway);
        env.flag("S2S_REQUIRE_AT_JWT", &mut self.require_at_jwt)?;
        if let Some(value) = env.get("S2S_MAX_TENANTS") {
            self.max_tenants = Some(value.trim().parse().map_err(|_| {
                Error::config(format!("S2S_MAX_TENANTS: `{value}` is not a number"))
            })?);
        }
        if let Some(value) = env.get("S2S_TENANT_FETCH_BURST") {
            self.tenant_fetch_burst = Some(value.trim().parse().map_err(|_| {
                Error::config(format!("S2S_TENANT_FETCH_BURST: `{value}` is not a number"))
            })?);
        }
        env.set("S2S_TENANT_FETCH_INTERVAL", &mut self.tenant_fetch_interval);
        env.flag("S2S_ALLOW_INSECURE_HTTP", &mut self.allow_insecure_http)?;
        env.set("S2S_KEYS_MIN_TTL", &mut self.keys.min_ttl);
        env.set("S2S_KEYS_MAX_TTL", &mut self.keys.max_ttl);
        env.set("S2S_KEYS_DEFAULT_TTL", &mut self.keys.default_ttl);
        env.set("S2S_KEYS_MAX_STALE", &mut self.keys.max_stale);
        Ok(self)
    }

    /// Checks the configuration and builds the verifier (see
    /// [`VerifierBuilder::build`](crate::VerifierBuilder::build)). Nothing is fetched yet.
    pub fn build(&self) -> Result<Verifier, Error> {
        if self.issuer.is_empty() {
            return Err(Error::config(
                "issuer: no issuer configured: add an [[issuer]] with its `id` (or set \
                 S2S_ISSUER_URL)",
            ));
        }
        let http = HttpOptions {
            allow_insecure_http: self.allow_insecure_http,
            ..HttpOptions::default()
        };
        let mut keys = KeyCacheOptions {
            http,
            ..KeyCacheOptions::default()
        };
        for (key, value, slot) in [
            ("keys.min_ttl", &self.keys.min_ttl, &mut keys.min_ttl),
            ("keys.max_ttl", &self.keys.max_ttl, &mut keys.max_ttl),
            (
                "keys.default_ttl",
                &self.keys.default_ttl,
                &mut keys.default_ttl,
            ),
            ("keys.max_stale", &self.keys.max_stale, &mut keys.max_stale),
        ] {
            if let Some(value) = value {
                *slot = duration(key, value)?;
            }
        }
        if keys.min_ttl > keys.max_ttl {
            return Err(Error::config(format!(
                "keys.min_ttl: {:?} is longer than keys.max_ttl {:?}",
                keys.min_ttl, keys.max_ttl
            )));
        }
        let mut builder = Verifier::builder()
            .key_cache(keys)
            .require_at_jwt(self.require_at_jwt);
        if let Some(leeway) = &self.leeway {
            builder = builder.leeway(duration("leeway", leeway)?);
        }
        for audience in &self.audiences {
            builder = builder.audience(audience);
        }
        for claim in &self.required_claims {
            builder = builder.required_claim(claim);
        }
        if let Some(max) = self.max_tenants {
            builder = builder.max_tenants(max);
        }
        if self.tenant_fetch_burst.is_some() || self.tenant_fetch_interval.is_some() {
            let interval = match &self.tenant_fetch_interval {
                Some(value) => duration("tenant_fetch_interval", value)?,
                None => crate::verify::DEFAULT_TENANT_FETCH_INTERVAL,
            };
            builder = builder.tenant_fetch_limit(
                self.tenant_fetch_burst
                    .unwrap_or(crate::verify::DEFAULT_TENANT_FETCH_BURST),
                interval,
            );
        }
        for (i, issuer) in self.issuer.iter().enumerate() {
            let at = |field: &str, e: Error| Error::config(format!("issuer[{i}].{field}: {e}"));
            if issuer.audiences.is_empty() && self.audiences.is_empty() {
                return Err(at(
                    "audiences",
                    Error::config(
                        "no audience for this issuer: set its `audiences`, or `audiences` for \
                         every issuer (S2S_AUDIENCE), to this service's identifier",
                    ),
                ));
            }
            if issuer.id.contains(TENANT_PLACEHOLDER) {
                builder = builder.issuer(issuer.template(self.allow_insecure_http, at)?);
                continue;
            }
            if !issuer.tenants.is_empty() || issuer.tenant_claim.is_some() {
                return Err(at(
                    "tenants",
                    Error::config(format!(
                        "`tenants` and `tenant_claim` apply to an issuer template: put \
                         `{TENANT_PLACEHOLDER}` where the tenant is in `id`"
                    )),
                ));
            }
            let library = match &issuer.jwks_url {
                Some(url) => {
                    fetch::parse_endpoint(url, self.allow_insecure_http)
                        .map_err(|e| at("jwks_url", e))?;
                    Issuer::jwks(&issuer.id, url)
                }
                // Fetched only when discovered; with a JWKS URL it is only compared with `iss`.
                None => {
                    fetch::parse_endpoint(&issuer.id, self.allow_insecure_http)
                        .map_err(|e| at("id", e))?;
                    Issuer::discover(&issuer.id)
                }
            };
            builder = builder.issuer(library.audiences(&issuer.audiences));
        }
        builder.build()
    }
}

impl IssuerConfig {
    /// The library's issuer template of an `[[issuer]]` whose `id` has `{tenantid}`; the https
    /// policy and the placeholders are checked when the verifier is built.
    fn template(
        &self,
        allow_insecure_http: bool,
        at: impl Fn(&str, Error) -> Error,
    ) -> Result<Issuer, Error> {
        if self.tenants.is_empty() {
            return Err(at(
                "tenants",
                Error::config(
                    "an issuer template needs the list of tenants it accepts: set `tenants` \
                     (or S2S_ISSUER_TENANTS)",
                ),
            ));
        }
        // The https policy, shown on a sample tenant (the builder checks the placeholders).
        let allow_insecure = allow_insecure_http;
        fetch::parse_endpoint(
            &self.id.replace(TENANT_PLACEHOLDER, "tenant"),
            allow_insecure,
        )
        .map_err(|e| at("id", e))?;
        if let Some(url) = &self.jwks_url {
            fetch::parse_endpoint(&url.replace(TENANT_PLACEHOLDER, "tenant"), allow_insecure)
                .map_err(|e| at("jwks_url", e))?;
        }
        let claim = match &self.tenant_claim {
            None => Some(DEFAULT_TENANT_CLAIM),
            Some(TenantClaim::Name(name)) if !name.trim().is_empty() => Some(name.as_str()),
            Some(TenantClaim::Off(false)) => None,
            Some(_) => {
                return Err(at(
                    "tenant_claim",
                    Error::config("expected a claim name (such as \"tid\") or `false`"),
                ));
            }
        };
        let mut template = Issuer::template(&self.id, TenantPolicy::allow(&self.tenants))
            .tenant_claim(claim)
            .audiences(&self.audiences);
        if let Some(url) = &self.jwks_url {
            template = template.jwks_template(url);
        }
        Ok(template)
    }
}

/// How a [`ClientConfig`] authenticates.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum AuthMethod {
    #[default]
    #[serde(alias = "client_secret_basic")]
    Basic,
    #[serde(alias = "client_secret_post")]
    Post,
    #[serde(alias = "private-key-jwt")]
    PrivateKeyJwt,
}

/// Where the client secret is.
#[derive(Clone)]
enum SecretSource {
    /// The value of `S2S_CLIENT_SECRET`.
    Value(SecretString),
    /// The variable named by `client_secret_env`.
    Env(String),
    /// The file named by `client_secret_file` or `S2S_CLIENT_SECRET_FILE`.
    File(PathBuf),
}

/// The configuration of a client credentials grant and where its tokens may go. See the
/// [module docs](self) for the keys.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    issuer: Option<String>,
    token_url: Option<String>,
    client_id: Option<String>,
    #[serde(default)]
    auth: AuthMethod,
    /// Only to refuse it with a clear message.
    client_secret: Option<IgnoredAny>,
    client_secret_env: Option<String>,
    client_secret_file: Option<PathBuf>,
    private_key_file: Option<PathBuf>,
    private_key_alg: Option<String>,
    key_id: Option<String>,
    #[serde(default)]
    scopes: Vec<String>,
    audience: Option<String>,
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    params: BTreeMap<String, String>,
    #[serde(default)]
    destinations: Vec<String>,
    dialect: Option<String>,
    #[serde(default)]
    allow_insecure_http: bool,
    /// From the environment only.
    #[serde(skip)]
    secret_override: Option<SecretSource>,
}

crate::debug_fields!(ClientConfig:
    issuer, token_url, client_id, auth, client_secret_env, client_secret_file, scopes, audience,
    destinations);

impl ClientConfig {
    /// Parses a TOML document. A `client_secret` key is refused: see the [module docs](self).
    pub fn from_toml_str(text: &str) -> Result<Self, Error> {
        let config: Self = from_toml(text, None)?;
        config.refuse_inline_secret()?;
        Ok(config)
    }

    /// Reads and parses the TOML file at `path`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, Error> {
        let config: Self = from_file(path.as_ref())?;
        config.refuse_inline_secret()?;
        Ok(config)
    }

    fn refuse_inline_secret(&self) -> Result<(), Error> {
        if self.client_secret.is_some() {
            return Err(Error::config(
                "client_secret: secrets are not read from configuration files; name where it \
                 is with `client_secret_env` (a variable) or `client_secret_file`, or set \
                 S2S_CLIENT_SECRET",
            ));
        }
        if self.client_secret_env.is_some() && self.client_secret_file.is_some() {
            return Err(Error::config(
                "client_secret_file: give either client_secret_env or client_secret_file, not both",
            ));
        }
        Ok(())
    }

    env_constructors!();

    /// [`ClientConfig::with_env`] with variables looked up by `env` instead of the process
    /// environment.
    pub fn with_env_from(mut self, env: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let env = Env(&env);
        // A variable naming the endpoint replaces the file's choice of issuer or token URL.
        match (env.get("S2S_ISSUER_URL"), env.get("S2S_TOKEN_URL")) {
            (Some(_), Some(_)) => {
                return Err(Error::config(
                    "S2S_TOKEN_URL: give either S2S_ISSUER_URL or S2S_TOKEN_URL, not both",
                ));
            }
            (Some(issuer), None) => (self.issuer, self.token_url) = (Some(issuer), None),
            (None, Some(url)) => (self.issuer, self.token_url) = (None, Some(url)),
            (None, None) => {}
        }
        env.set("S2S_CLIENT_ID", &mut self.client_id);
        if let Some(method) = env.get("S2S_CLIENT_AUTH") {
            self.auth = AuthMethod::deserialize(serde::de::value::StrDeserializer::<
                serde::de::value::Error,
            >::new(&method))
            .map_err(|_| {
                Error::config(format!(
                    "S2S_CLIENT_AUTH: `{method}` is not basic, post or private_key_jwt"
                ))
            })?;
        }
        if let Some(path) = env.get("S2S_CLIENT_SECRET_FILE") {
            self.secret_override = Some(SecretSource::File(path.into()));
        }
        if let Some(secret) = env.get("S2S_CLIENT_SECRET") {
            self.secret_override = Some(SecretSource::Value(secret.into()));
        }
        if let Some(path) = env.get("S2S_CLIENT_KEY_FILE") {
            self.private_key_file = Some(path.into());
        }
        env.set("S2S_CLIENT_KEY_ALG", &mut self.private_key_alg);
        env.set("S2S_CLIENT_KEY_ID", &mut self.key_id);
        env.list("S2S_SCOPES", &mut self.scopes);
        env.set("S2S_TOKEN_AUDIENCE", &mut self.audience);
        env.list("S2S_TOKEN_RESOURCE", &mut self.resources);
        env.list("S2S_DESTINATIONS", &mut self.destinations);
        env.set("S2S_TOKEN_DIALECT", &mut self.dialect);
        env.flag("S2S_ALLOW_INSECURE_HTTP", &mut self.allow_insecure_http)?;
        Ok(self)
    }

    /// The origins the token may be sent to (`destinations`).
    pub fn destinations(&self) -> &[String] {
        &self.destinations
    }

    /// Whether plain http is allowed beyond loopback (`allow_insecure_http`).
    pub fn allow_insecure_http(&self) -> bool {
        self.allow_insecure_http
    }

    /// The grant: reads the secret (or private key) now, checks what the configuration needs.
    pub fn grant(&self) -> Result<ClientCredentials, Error> {
        // Again here: a `ClientConfig` inside an application's own configuration is deserialised
        // without `from_toml_str`.
        self.refuse_inline_secret()?;
        let dialect = match self.dialect.as_deref() {
            None | Some("form") => Dialect::Form,
            Some("json") => Dialect::Json,
            Some(other) => {
                return Err(Error::config(format!(
                    "dialect: `{other}` is not form (RFC 6749) or json (the Auth Service's)"
                )));
            }
        };
        let client_id = self
            .client_id
            .clone()
            .filter(|id| !id.is_empty())
            .ok_or_else(|| Error::config("client_id: required (or set S2S_CLIENT_ID)"))?;
        let allow_insecure = self.allow_insecure_http;
        // The endpoint first, then the client's authentication: errors in that order.
        let new_grant: fn(&String, String, ClientAuth) -> ClientCredentials;
        let endpoint = match (&self.issuer, &self.token_url) {
            (Some(issuer), None) => {
                fetch::parse_endpoint(issuer, allow_insecure)
                    .map_err(|e| Error::config(format!("issuer: {e}")))?;
                new_grant = |url, id, auth| ClientCredentials::discover(url, id, auth);
                issuer
            }
            (None, Some(url)) => {
                fetch::parse_endpoint(url, allow_insecure)
                    .map_err(|e| Error::config(format!("token_url: {e}")))?;
                new_grant = |url, id, auth| ClientCredentials::new(url, id, auth);
                url
            }
            (Some(_), Some(_)) => {
                return Err(Error::config(
                    "token_url: give either `issuer` (discovery) or `token_url`, not both",
                ));
            }
            (None, None) => {
                return Err(Error::config(
                    "token_url: required: set `token_url`, or `issuer` to find it by discovery \
                     (or S2S_TOKEN_URL / S2S_ISSUER_URL)",
                ));
            }
        };
        let auth = match self.auth {
            AuthMethod::Basic => ClientAuth::SecretBasic(self.secret()?),
            AuthMethod::Post => ClientAuth::SecretPost(self.secret()?),
            AuthMethod::PrivateKeyJwt => {
                let path = self.private_key_file.as_ref().ok_or_else(|| {
                    Error::config(
                        "private_key_file: `auth = \"private_key_jwt\"` needs the PEM key's path \
                         (or S2S_CLIENT_KEY_FILE)",
                    )
                })?;
                let pem = std::fs::read(path).map_err(|e| {
                    Error::config(format!(
                        "private_key_file: cannot read {}: {e}",
                        path.display()
                    ))
                })?;
                let name = self.private_key_alg.as_deref().unwrap_or("ES256");
                let alg: Algorithm = name.parse().map_err(|_| {
                    Error::config(format!(
                        "private_key_alg: `{name}` is not an algorithm (ES256, RS256, EdDSA, …)"
                    ))
                })?;
                ClientAuth::private_key_pem(alg, &pem, self.key_id.clone())
                    .map_err(|e| Error::config(format!("private_key_file: {e}")))?
            }
        };
        let mut grant = new_grant(endpoint, client_id, auth);
        grant = grant.http(HttpOptions {
            allow_insecure_http: allow_insecure,
            ..HttpOptions::default()
        });
        for scope in &self.scopes {
            grant = grant.scope(scope);
        }
        if let Some(audience) = &self.audience {
            grant = grant.audience(audience);
        }
        for resource in &self.resources {
            grant = grant.resource(resource);
        }
        for (name, value) in &self.params {
            grant = grant.param(name, value);
        }
        Ok(grant.dialect(dialect))
    }

    /// A [`TokenManager`] for [`ClientConfig::grant`].
    pub fn token_manager(&self) -> Result<TokenManager, Error> {
        TokenManager::new(self.grant()?)
    }

    /// An [`AuthorizeLayer`] sending tokens of `source` to the configured destinations only.
    pub fn authorize_layer<T>(&self, source: T) -> AuthorizeLayer<T> {
        let mut layer = self
            .destinations
            .iter()
            .fold(AuthorizeLayer::new(source), |l, o| l.allow_origin(o));
        if self.allow_insecure_http {
            layer = layer.allow_insecure_http();
        }
        layer
    }

    /// A reqwest middleware sending tokens of `source` to the configured destinations only.
    #[cfg(feature = "reqwest")]
    pub fn authorize_middleware<T>(&self, source: T) -> crate::middleware::AuthorizeMiddleware<T> {
        let mut middleware = self.destinations.iter().fold(
            crate::middleware::AuthorizeMiddleware::new(source),
            |m, o| m.allow_origin(o),
        );
        if self.allow_insecure_http {
            middleware = middleware.allow_insecure_http();
        }
        middleware
    }

    /// The secret of `basic` and `post`, from where the configuration says.
    fn secret(&self) -> Result<SecretString, Error> {
        let source = self.secret_override.clone().or_else(|| {
            (self.client_secret_file.clone().map(SecretSource::File))
                .or_else(|| self.client_secret_env.clone().map(SecretSource::Env))
        });
        let (key, secret) = match source {
            None => {
                return Err(Error::config(format!(
                    "client_secret_env: `auth = \"{}\"` needs a client secret: name its variable \
                     with client_secret_env or its file with client_secret_file (or set \
                     S2S_CLIENT_SECRET / S2S_CLIENT_SECRET_FILE)",
                    if self.auth == AuthMethod::Post {
                        "post"
                    } else {
                        "basic"
                    }
                )));
            }
            Some(SecretSource::Value(secret)) => return Ok(secret),
            Some(SecretSource::Env(name)) => (
                "client_secret_env",
                std::env::var(&name).map_err(|_| {
                    Error::config(format!(
                        "client_secret_env: the variable `{name}` is not set (or not UTF-8)"
                    ))
                })?,
            ),
            Some(SecretSource::File(path)) => (
                "client_secret_file",
                std::fs::read_to_string(&path).map_err(|e| {
                    Error::config(format!(
                        "client_secret_file: cannot read {}: {e}",
                        path.display()
                    ))
                })?,
            ),
        };
        let secret = secret.strip_suffix('\n').unwrap_or(&secret);
        let secret = secret.strip_suffix('\r').unwrap_or(secret);
        if secret.is_empty() {
            return Err(Error::config(format!("{key}: the client secret is empty")));
        }
        Ok(secret.into())
    }
}

/// Environment lookups, each naming its variable in its errors.
struct Env<'a>(&'a dyn Fn(&str) -> Option<String>);

impl Env<'_> {
    /// The variable, when set to something other than the empty string.
    fn get(&self, name: &str) -> Option<String> {
        (self.0)(name).filter(|v| !v.trim().is_empty())
    }

    fn set(&self, name: &str, slot: &mut Option<String>) {
        if let Some(value) = self.get(name) {
            *slot = Some(value);
        }
    }

    /// A list separated by commas or spaces.
    fn list(&self, name: &str, slot: &mut Vec<String>) {
        if let Some(value) = self.get(name) {
            *slot = value
                .split([',', ' '])
                .filter(|s| !s.is_empty())
                .map(Into::into)
                .collect();
        }
    }

    fn flag(&self, name: &str, slot: &mut bool) -> Result<(), Error> {
        if let Some(value) = self.get(name) {
            *slot = match value.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => true,
                "false" | "0" | "no" => false,
                _ => {
                    return Err(Error::config(format!(
                        "{name}: `{value}` is not true or false"
                    )));
                }
            };
        }
        Ok(())
    }
}

/// Parses TOML into `T`; syntax and type errors say where (`line 3, column 7`) and, with `path`,
/// in which file.
fn from_toml<T: serde::de::DeserializeOwned>(text: &str, path: Option<&Path>) -> Result<T, Error> {
    toml::from_str(text).map_err(|e| {
        let mut at = path.map_or_else(String::new, |p| format!("{}: ", p.display()));
        if let Some(span) = e.span() {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            at.push_str(&format!("line {line}, column {column}: "));
        }
        Error::config(format!("{at}{}", e.message().trim_end()))
    })
}

fn from_file<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::config(format!("cannot read {}: {e}", path.display())))?;
    from_toml(&text, Some(path))
}

/// `250ms`, `30s`, `5m` or `1h`, the same forms as the gateway's configuration.
fn duration(key: &str, value: &str) -> Result<Duration, Error> {
    let bad = || {
        Error::config(format!(
            "{key}: `{value}` is not a duration: write it like 250ms, 30s, 5m or 1h"
        ))
    };
    let s = value.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = s.split_at(split);
    let n: u64 = number.parse().map_err(|_| bad())?;
    let secs = |factor: u64| n.checked_mul(factor).map(Duration::from_secs);
    match unit.trim() {
        "ms" => Some(Duration::from_millis(n)),
        "s" => secs(1),
        "m" => secs(60),
        "h" => secs(3600),
        _ => None,
    }
    .ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let vars: BTreeMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| vars.get(name).cloned()
    }

    fn message(result: Result<impl std::fmt::Debug, Error>) -> String {
        result.unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_key_and_what_is_wrong() {
        let cases = [
            ("[[issuer]]\nid = 3\n", "line 2, column 6: invalid type"),
            ("[[issuer]]\nurll = \"x\"\n", "unknown field `urll`"),
            (
                "audiences = [\"a\"]\nleeway = \"5x\"\n[[issuer]]\nid = \"https://a\"\n",
                "leeway: `5x` is not a duration",
            ),
            (
                "audiences = [\"a\"]\n[keys]\nmax_stale = \"soon\"\n[[issuer]]\nid = \"https://a\"\n",
                "keys.max_stale: `soon`",
            ),
            (
                "[[issuer]]\nid = \"https://a\"\naudiences = [\"x\"]\n[[issuer]]\nid = \"https://b\"\n",
                "issuer[1].audiences: no audience",
            ),
            (
                "audiences = [\"a\"]\n[[issuer]]\nid = \"http://auth.example.com\"\n",
                "issuer[0].id:",
            ),
            (
                "audiences = [\"a\"]\n[[issuer]]\nid = \"https://a\"\njwks_url = \"not a url\"\n",
                "issuer[0].jwks_url:",
            ),
            ("audiences = [\"a\"]\n", "issuer: no issuer configured"),
        ];
        for (toml, expected) in cases {
            let error = message(VerifierConfig::from_toml_str(toml).and_then(|c| c.build()));
            assert!(error.contains(expected), "{toml}: {error}");
        }
        let error = message(
            VerifierConfig::default().with_env_from(env(&[("S2S_REQUIRE_AT_JWT", "maybe")])),
        );
        assert!(error.starts_with("S2S_REQUIRE_AT_JWT: `maybe`"), "{error}");
    }

    #[test]
    fn environment_overrides_the_file() {
        let file = VerifierConfig::from_toml_str(
            "audiences = [\"orders-api\"]\nleeway = \"5s\"\n[[issuer]]\nid = \"https://dev.example.com\"\n[[issuer]]\nid = \"https://other.example.com\"\n",
        )
        .unwrap();
        let config = file
            .with_env_from(env(&[
                ("S2S_ISSUER_URL", "https://prod.example.com"),
                ("S2S_JWKS_URL", "https://prod.example.com/jwks"),
                ("S2S_AUDIENCE", "orders-api, orders-internal"),
            ]))
            .unwrap();
        assert_eq!(config.issuer.len(), 1);
        assert_eq!(config.issuer[0].id, "https://prod.example.com");
        assert_eq!(
            config.issuer[0].jwks_url.as_deref(),
            Some("https://prod.example.com/jwks")
        );
        assert_eq!(config.audiences, ["orders-api", "orders-internal"]);
        assert_eq!(config.leeway.as_deref(), Some("5s"));
        config.build().unwrap();
    }

    #[test]
    fn secrets_never_come_from_the_file_nor_show() {
        let error = message(ClientConfig::from_toml_str(
            "token_url = \"https://a/token\"\nclient_id = \"c\"\nclient_secret = \"hunter2\"\n",
        ));
        assert!(
            error.starts_with("client_secret: secrets are not read"),
            "{error}"
        );
        assert!(!error.contains("hunter2"));

        let config =
            ClientConfig::from_toml_str("token_url = \"https://a/token\"\nclient_id = \"c\"\n")
                .unwrap()
                .with_env_from(env(&[("S2S_CLIENT_SECRET", "hunter2")]))
                .unwrap();
        let grant = config.grant().unwrap();
        for shown in [format!("{config:?}"), format!("{grant:?}")] {
            assert!(!shown.contains("hunter2"), "{shown}");
        }
        // No secret at all: the error says where one can come from.
        let error = message(
            ClientConfig::from_toml_str("token_url = \"https://a/token\"\nclient_id = \"c\"\n")
                .unwrap()
                .grant(),
        );
        assert!(
            error.contains("client_secret_env") && error.contains("S2S_CLIENT_SECRET"),
            "{error}"
        );
        let error = message(
            ClientConfig::default()
                .with_env_from(env(&[
                    ("S2S_TOKEN_URL", "https://a/token"),
                    ("S2S_CLIENT_ID", "c"),
                    ("S2S_CLIENT_SECRET_FILE", "/nonexistent/secret"),
                ]))
                .unwrap()
                .grant(),
        );
        assert!(
            error.starts_with("client_secret_file: cannot read /nonexistent/secret"),
            "{error}"
        );
        let error =
            message(ClientConfig::default().with_env_from(env(&[("S2S_CLIENT_AUTH", "mtls")])));
        assert!(error.starts_with("S2S_CLIENT_AUTH: `mtls`"), "{error}");
    }

    #[test]
    fn client_errors_name_the_key() {
        let cases = [
            ("client_id = \"c\"\n", "token_url: required"),
            ("token_url = \"https://a/t\"\n", "client_id: required"),
            (
                "issuer = \"https://a\"\ntoken_url = \"https://a/t\"\nclient_id = \"c\"\n",
                "token_url: give either",
            ),
            (
                "token_url = \"http://auth.example.com/t\"\nclient_id = \"c\"\n",
                "token_url:",
            ),
            (
                "token_url = \"https://a/t\"\nclient_id = \"c\"\nauth = \"private_key_jwt\"\n",
                "private_key_file: `auth = \"private_key_jwt\"` needs",
            ),
            (
                "token_url = \"https://a/t\"\nclient_id = \"c\"\nauth = \"mtls\"\n",
                "line 3, column 8: unknown variant `mtls`",
            ),
            (
                "token_url = \"https://a/t\"\nclient_id = \"c\"\nclient_secret_env = \"S2S_TEST_SURELY_UNSET_1\"\n",
                "client_secret_env: the variable `S2S_TEST_SURELY_UNSET_1` is not set",
            ),
            (
                "token_url = \"https://a/t\"\nclient_id = \"c\"\nclient_secret_env = \"A\"\nclient_secret_file = \"/b\"\n",
                "client_secret_file: give either",
            ),
            (
                "token_url = \"https://a/t\"\nclient_id = \"c\"\nauth = \"private_key_jwt\"\nprivate_key_file = \"/nonexistent/key.pem\"\n",
                "private_key_file: cannot read /nonexistent/key.pem",
            ),
            (
                "token_url = \"https://a/t\"\nclient_id = \"c\"\ndialect = \"xml\"\n",
                "dialect: `xml` is not form",
            ),
        ];
        for (toml, expected) in cases {
            let error = message(ClientConfig::from_toml_str(toml).and_then(|c| c.grant()));
            assert!(error.contains(expected), "{toml}: {error}");
        }
    }
}
