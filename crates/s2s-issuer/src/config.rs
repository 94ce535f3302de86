//! Configuration: [`IssuerConfig`], read from a TOML file or built in code.
//!
//! ```
//! use s2s_issuer::IssuerConfig;
//!
//! // In code: the issuer URL (the `iss` of every token) and in-memory storage.
//! let mut config = IssuerConfig::new("http://127.0.0.1:8080");
//! config.db = ":memory:".into();
//! config.token_lifetime_secs = 600;
//! assert!(config.validate().is_ok());
//!
//! // From TOML: unknown fields and bad values are refused, naming the field.
//! let config = IssuerConfig::from_toml_str(r#"
//!     issuer = "https://auth.example.com"
//!     db = "/var/lib/s2s-issuer/issuer.db"
//!     default_audience = "orders-api"
//!
//!     [rate_limit.per_client]
//!     burst = 20
//!     per_second = 5
//! "#).unwrap();
//! assert_eq!(config.rate_limit.per_client.unwrap().burst, 20);
//!
//! let err = IssuerConfig::from_toml_str("token_lifetime = 0").unwrap_err();
//! assert!(err.to_string().contains("token_lifetime"));
//! ```
//!
//! The file's fields are those of [`IssuerConfig`] (snake_case); the CLI's flags override them.

use std::{
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;

use crate::Error;

/// Where "now" comes from: the system clock by default; tests inject their own to move time
/// forward (token expiry, grace periods, key retirement).
///
/// ```
/// use std::{sync::{Arc, atomic::{AtomicU64, Ordering}}, time::{Duration, SystemTime}};
/// use s2s_issuer::Clock;
///
/// let offset = Arc::new(AtomicU64::new(0));
/// let clock = {
///     let offset = offset.clone();
///     Clock::from_fn(move || SystemTime::now() + Duration::from_secs(offset.load(Ordering::SeqCst)))
/// };
/// let before = clock.unix_now();
/// offset.store(3600, Ordering::SeqCst);
/// assert!(clock.unix_now() >= before + 3600);
/// ```
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> SystemTime + Send + Sync>);

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Clock(Arc::new(SystemTime::now))
    }

    /// A clock reading `now` from a function.
    pub fn from_fn(now: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        Clock(Arc::new(now))
    }

    /// The current time.
    pub fn now(&self) -> SystemTime {
        (self.0)()
    }

    /// The current time in whole seconds since the Unix epoch (0 before 1970).
    pub fn unix_now(&self) -> u64 {
        self.now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Clock")
    }
}

/// The signing algorithm of new keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Deserialize)]
pub enum SigningAlg {
    /// ECDSA P-256 with SHA-256 (the default).
    #[default]
    ES256,
    /// RSA PKCS#1 v1.5 with SHA-256, 2048-bit keys.
    RS256,
}

impl SigningAlg {
    /// `"ES256"` or `"RS256"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            SigningAlg::ES256 => "ES256",
            SigningAlg::RS256 => "RS256",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "ES256" => Some(SigningAlg::ES256),
            "RS256" => Some(SigningAlg::RS256),
            _ => None,
        }
    }
}

/// A token bucket: `burst` requests at once, refilled at `per_second`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bucket {
    /// The bucket's size: how many requests may arrive at once.
    pub burst: u32,
    /// Requests added back per second.
    pub per_second: u32,
}

/// Token-endpoint rate limits. `None` switches a limit off. Addresses are bucketed by IPv4
/// address and by IPv6 /64.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Authenticated requests per client id, charged only once the secret verified (so wrong
    /// secrets under a client's id cannot lock it out). Default: burst 20, 10 per second.
    pub per_client: Option<Bucket>,
    /// Every request per source address. Default: burst 50, 25 per second.
    pub per_ip: Option<Bucket>,
    /// Failed authentications (unknown id, wrong secret) per source address; when spent,
    /// requests that would need a secret check get 429 without any hash work. Default: burst
    /// 20, 5 per second.
    pub failures_per_ip: Option<Bucket>,
    /// Failed authentications per (client id, source address). Default: burst 10, 1 per
    /// second.
    pub failures_per_client_ip: Option<Bucket>,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            per_client: Some(Bucket {
                burst: 20,
                per_second: 10,
            }),
            per_ip: Some(Bucket {
                burst: 50,
                per_second: 25,
            }),
            failures_per_ip: Some(Bucket {
                burst: 20,
                per_second: 5,
            }),
            failures_per_client_ip: Some(Bucket {
                burst: 10,
                per_second: 1,
            }),
        }
    }
}

/// Argon2id cost of client-secret hashes. The default is OWASP's: 19 MiB, 2 passes, 1 lane.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecretHashConfig {
    /// Memory in KiB (at least 8 × `parallelism`).
    pub memory_kib: u32,
    /// Passes over the memory (at least 1).
    pub iterations: u32,
    /// Lanes (at least 1).
    pub parallelism: u32,
    /// How many secret checks may wait for a free CPU beyond those running (one per CPU).
    /// When the queue is full the token endpoint answers 503 with `Retry-After` instead of
    /// queueing; a client whose secret verified recently needs no check and is still served.
    /// Default 32, at most 10000.
    pub max_queued: u32,
}

impl Default for SecretHashConfig {
    fn default() -> Self {
        SecretHashConfig {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
            max_queued: 32,
        }
    }
}

/// The issuer's configuration. Build it with [`IssuerConfig::new`] and set fields, or read it
/// from TOML with [`IssuerConfig::from_toml_str`] / [`IssuerConfig::from_file`].
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct IssuerConfig {
    /// Address the `serve` command listens on. Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// The issuer URL: the base of every endpoint and the metadata's `issuer`, e.g.
    /// `https://auth.example.com`. A path is served as the base path: with
    /// `https://api.example.com/auth` the endpoints are `/auth/token`,
    /// `/auth/.well-known/jwks.json`, `/auth/admin/...`, and the discovery documents
    /// `/auth/.well-known/openid-configuration` and (RFC 8414 §3)
    /// `/.well-known/oauth-authorization-server/auth`. The CLI derives `http://{listen}` when it
    /// is not set; [`Issuer::open`](crate::Issuer::open) requires it.
    pub issuer: Option<String>,
    /// The `iss` claim of issued tokens, when it is not the issuer URL: any StringOrURI of RFC
    /// 7519 §2, e.g. `auth-service` as the seed's validators expect. Discovery (RFC 8414, OIDC)
    /// still names the issuer URL, so a verifier of such tokens checks `iss` against this value
    /// and takes the keys from the JWKS URL directly (s2s-auth: `Issuer::jwks(iss, jwks_url)`).
    /// Default: the issuer URL.
    pub token_issuer: Option<String>,
    /// The database: a SQLite file path, a `sqlite:` URL, `:memory:`, or a PostgreSQL URL
    /// (`postgres://user@host/db`, which several replicas may share). Default `s2s-issuer.db`.
    pub db: String,
    /// Access-token lifetime, seconds (1 to 86400). Default 1800.
    #[serde(rename = "token_lifetime")]
    pub token_lifetime_secs: u64,
    /// The `aud` of tokens when the request names none. Default: the issuer URL.
    pub default_audience: Option<String>,
    /// The admin API's bearer token (at least 16 characters). Without one (here, in
    /// `admin_token_file`, or the `S2S_ISSUER_ADMIN_TOKEN` variable the CLI reads) the admin API
    /// is not served; tokens still are.
    pub admin_token: Option<SecretString>,
    /// A file holding the admin token (surrounding whitespace trimmed).
    pub admin_token_file: Option<PathBuf>,
    /// The key-encryption key of the private signing keys in the database: base64 of 32
    /// random bytes (AES-256-GCM). Else the contents of `key_encryption_key_file`, else the
    /// `S2S_ISSUER_KEY_ENCRYPTION_KEY` variable. Required on PostgreSQL (the key never goes
    /// to the database), optional on SQLite; an issuer with a missing or wrong key refuses to
    /// start when the stored key is encrypted.
    pub key_encryption_key: Option<SecretString>,
    /// A file holding the key-encryption key (base64, surrounding whitespace trimmed).
    pub key_encryption_key_file: Option<PathBuf>,
    /// The `Cache-Control: max-age` of the JWKS, seconds: how long verifiers may keep it.
    /// Default 300.
    pub jwks_max_age_secs: u64,
    /// The algorithm of newly generated signing keys. Default ES256.
    pub signing_alg: SigningAlg,
    /// How long a rotated-out public key stays published after the last token it may have
    /// signed expires, seconds: the verifiers' clock leeway. Default 60.
    #[serde(rename = "key_retire_leeway")]
    pub key_retire_leeway_secs: u64,
    /// Rotate the signing key automatically when the newest one is this old, seconds (more
    /// than `jwks_max_age_secs` + 1). Every replica checks; one rotates (see
    /// [`keys`](crate::keys)). Default: no scheduled rotation (`POST /admin/keys/rotate` or
    /// `s2s-issuer keys rotate`).
    pub key_rotation_interval_secs: Option<u64>,
    /// Token-endpoint rate limits, per replica (see the README).
    pub rate_limit: RateLimitConfig,
    /// The proxies in front of the issuer, as CIDRs or addresses (`["10.0.0.0/8",
    /// "2001:db8::1"]`). When the connecting peer is one of them, the client address is the
    /// right-most `X-Forwarded-For` entry that is not; otherwise, and when the list is empty
    /// (the default), the peer address is the client address and `X-Forwarded-For` is ignored.
    pub trusted_proxies: Vec<String>,
    /// Publish `scopes_supported` in the discovery metadata: every scope of every active
    /// account, which tells anyone what the accounts may do. Default false.
    pub publish_scopes_supported: bool,
    /// Argon2id cost of client-secret hashes.
    pub secret_hash: SecretHashConfig,
    /// Where "now" comes from (not read from files).
    #[serde(skip)]
    pub clock: Clock,
    /// The removed `trust_forwarded_for` key, read only to refuse it with a clear message.
    #[serde(rename = "trust_forwarded_for")]
    pub(crate) removed_trust_forwarded_for: Option<serde::de::IgnoredAny>,
}

impl Default for IssuerConfig {
    fn default() -> Self {
        IssuerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            issuer: None,
            token_issuer: None,
            db: "s2s-issuer.db".into(),
            token_lifetime_secs: 1800,
            default_audience: None,
            admin_token: None,
            admin_token_file: None,
            key_encryption_key: None,
            key_encryption_key_file: None,
            jwks_max_age_secs: 300,
            signing_alg: SigningAlg::ES256,
            key_retire_leeway_secs: 60,
            key_rotation_interval_secs: None,
            rate_limit: RateLimitConfig::default(),
            trusted_proxies: Vec::new(),
            publish_scopes_supported: false,
            secret_hash: SecretHashConfig::default(),
            clock: Clock::system(),
            removed_trust_forwarded_for: None,
        }
    }
}

/// The longest accepted token lifetime, a day.
const MAX_LIFETIME: u64 = 86_400;
/// The most secret checks that may wait for a CPU.
const MAX_QUEUED: u32 = 10_000;

impl IssuerConfig {
    /// Defaults, with the given issuer URL.
    pub fn new(issuer: impl Into<String>) -> Self {
        IssuerConfig {
            issuer: Some(issuer.into()),
            ..IssuerConfig::default()
        }
    }

    /// Parses TOML and validates it; errors name the field.
    pub fn from_toml_str(toml_text: &str) -> Result<Self, Error> {
        let config: IssuerConfig = toml::from_str(toml_text).map_err(|e| Error::Config {
            field: toml_error_field(toml_text, &e),
            message: e.message().trim().to_owned(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Reads and parses a TOML file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::Config {
            field: "config".into(),
            message: format!("cannot read {}: {e}", path.display()),
        })?;
        IssuerConfig::from_toml_str(&text)
    }

    /// Checks every field; the error names the first bad one. Does not require `issuer` (the
    /// CLI fills it in later).
    pub fn validate(&self) -> Result<(), Error> {
        if let Some(issuer) = &self.issuer {
            validate_issuer(issuer)?;
        }
        if let Some(iss) = &self.token_issuer {
            validate_string_or_uri("token_issuer", iss)?;
        }
        if self.db.trim().is_empty() {
            return Err(config_error("db", "is empty"));
        }
        if !(1..=MAX_LIFETIME).contains(&self.token_lifetime_secs) {
            return Err(config_error(
                "token_lifetime",
                format!("must be 1 to {MAX_LIFETIME} seconds"),
            ));
        }
        if let Some(aud) = &self.default_audience
            && (aud.is_empty() || aud.chars().any(char::is_whitespace))
        {
            return Err(config_error(
                "default_audience",
                "must be non-empty, without spaces",
            ));
        }
        if let Some(token) = &self.admin_token {
            validate_admin_token("admin_token", token)?;
        }
        if self.jwks_max_age_secs > MAX_LIFETIME {
            return Err(config_error(
                "jwks_max_age_secs",
                format!("must be at most {MAX_LIFETIME} seconds"),
            ));
        }
        if let Some(interval) = self.key_rotation_interval_secs
            && interval <= self.jwks_max_age_secs.saturating_add(1)
        {
            return Err(config_error(
                "key_rotation_interval_secs",
                format!(
                    "must be more than jwks_max_age_secs + 1 ({} s): a new key waits that long \
                     before it signs",
                    self.jwks_max_age_secs.saturating_add(1)
                ),
            ));
        }
        if self.key_retire_leeway_secs > MAX_LIFETIME {
            return Err(config_error(
                "key_retire_leeway",
                format!("must be at most {MAX_LIFETIME} seconds"),
            ));
        }
        if self.removed_trust_forwarded_for.is_some() {
            return Err(config_error(
                "trust_forwarded_for",
                "was removed: it took X-Forwarded-For from any peer, so any client could choose \
                 its own address. List the proxies in front of the issuer instead, e.g. \
                 `trusted_proxies = [\"10.0.0.0/8\"]`; the client address is then the right-most \
                 X-Forwarded-For entry that is not one of them",
            ));
        }
        self.trusted_proxy_nets()?;
        let r = &self.rate_limit;
        for (field, bucket) in [
            ("rate_limit.per_client", r.per_client),
            ("rate_limit.per_ip", r.per_ip),
            ("rate_limit.failures_per_ip", r.failures_per_ip),
            (
                "rate_limit.failures_per_client_ip",
                r.failures_per_client_ip,
            ),
        ] {
            if let Some(b) = bucket {
                if b.burst == 0 {
                    return Err(config_error(field, "`burst` must be at least 1"));
                }
                if b.per_second == 0 {
                    return Err(config_error(field, "`per_second` must be at least 1"));
                }
            }
        }
        let h = self.secret_hash;
        if argon2::Params::new(h.memory_kib, h.iterations, h.parallelism, None).is_err() {
            return Err(config_error(
                "secret_hash",
                "invalid Argon2 parameters (memory_kib ≥ 8 × parallelism, iterations ≥ 1, parallelism ≥ 1)",
            ));
        }
        if h.max_queued > MAX_QUEUED {
            return Err(config_error(
                "secret_hash.max_queued",
                format!("must be at most {MAX_QUEUED}"),
            ));
        }
        Ok(())
    }

    /// `trusted_proxies` parsed; the error names the bad entry.
    pub(crate) fn trusted_proxy_nets(&self) -> Result<Vec<ipnet::IpNet>, Error> {
        crate::accounts::parse_nets("trusted_proxies", &self.trusted_proxies).map_err(|e| match e {
            Error::Invalid { field, message } => Error::Config { field, message },
            other => other,
        })
    }

    /// The key-encryption key: `key_encryption_key`, else `key_encryption_key_file`'s
    /// contents, else `S2S_ISSUER_KEY_ENCRYPTION_KEY`; `None` when none is set.
    pub(crate) fn resolve_key_encryption_key(&self) -> Result<Option<crate::keys::Kek>, Error> {
        const ENV: &str = "S2S_ISSUER_KEY_ENCRYPTION_KEY";
        let (field, text) = if let Some(key) = &self.key_encryption_key {
            ("key_encryption_key", key.expose_secret().to_owned())
        } else if let Some(path) = &self.key_encryption_key_file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                config_error(
                    "key_encryption_key_file",
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            ("key_encryption_key_file", text)
        } else if let Ok(text) = std::env::var(ENV) {
            (ENV, text)
        } else {
            return Ok(None);
        };
        crate::keys::Kek::from_base64(text.trim())
            .map(Some)
            .map_err(|message| config_error(field, message))
    }

    /// The admin token: `admin_token`, else the contents of `admin_token_file`.
    pub(crate) fn resolve_admin_token(&self) -> Result<Option<SecretString>, Error> {
        if let Some(token) = &self.admin_token {
            return Ok(Some(token.clone()));
        }
        let Some(path) = &self.admin_token_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            config_error(
                "admin_token_file",
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        let token = SecretString::from(text.trim().to_owned());
        validate_admin_token("admin_token_file", &token)?;
        Ok(Some(token))
    }
}

fn validate_admin_token(field: &str, token: &SecretString) -> Result<(), Error> {
    let t = token.expose_secret();
    if t.chars().count() < 16 {
        return Err(config_error(
            field,
            "the admin token must be at least 16 characters",
        ));
    }
    if t.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(config_error(
            field,
            "the admin token must not contain spaces or control characters",
        ));
    }
    // The admin API reads `Authorization: Bearer` with the library's RFC 6750 parser.
    let as_header = axum::http::HeaderValue::try_from(format!("Bearer {t}"));
    if as_header.map_or(true, |v| s2s_auth::BearerToken::from_header(&v).is_none()) {
        // Refused at start rather than at every admin request: a token the admin API cannot read
        // would lock the operator out.
        return Err(config_error(
            field,
            "the admin token may hold only RFC 6750 token characters (letters, digits, \
             `-._~+/`, trailing `=`); generate one with `head -c 32 /dev/urandom | base64`",
        ));
    }
    Ok(())
}

pub(crate) fn validate_issuer(issuer: &str) -> Result<(), Error> {
    let url = url::Url::parse(issuer)
        .map_err(|e| config_error("issuer", format!("`{issuer}` is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(config_error("issuer", "must be an http or https URL"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(config_error(
            "issuer",
            "must not have a query or fragment (RFC 8414 §2)",
        ));
    }
    if url.host().is_none() {
        return Err(config_error("issuer", "has no host"));
    }
    // The path becomes the routes' base path: plain segments only (no route syntax, no
    // percent-escapes, no empty or dot segments).
    let path = url.path().trim_end_matches('/');
    let plain = |segment: &str| {
        !segment.is_empty()
            && segment != "."
            && segment != ".."
            && segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
    };
    if !path.is_empty() && !path[1..].split('/').all(plain) {
        return Err(config_error(
            "issuer",
            format!(
                "the path `{path}` must be segments of letters, digits, `-`, `.`, `_` or `~` (e.g. /auth)"
            ),
        ));
    }
    Ok(())
}

/// The base path of an issuer URL: `/auth` for `https://host/auth/`, empty for none.
pub(crate) fn base_path(issuer: &str) -> String {
    url::Url::parse(issuer)
        .map(|url| url.path().trim_end_matches('/').to_owned())
        .unwrap_or_default()
}

/// A StringOrURI (RFC 7519 §2): a string, which must be a URI when it contains `:`.
fn validate_string_or_uri(field: &str, value: &str) -> Result<(), Error> {
    if value.is_empty() || value.chars().count() > 500 {
        return Err(config_error(field, "must be 1 to 500 characters"));
    }
    if value.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(config_error(
            field,
            "must not contain spaces or control characters",
        ));
    }
    if value.contains(':') && url::Url::parse(value).is_err() {
        return Err(config_error(
            field,
            format!("`{value}` contains `:` but is not a URI (RFC 7519 §2 StringOrURI)"),
        ));
    }
    Ok(())
}

fn config_error(field: &str, message: impl Into<String>) -> Error {
    Error::Config {
        field: field.into(),
        message: message.into(),
    }
}

/// The (dotted) name of the field a TOML error is about: named in the message for unknown and
/// missing fields, else the key on the line the error points at, under its `[table]`.
fn toml_error_field(text: &str, e: &toml::de::Error) -> String {
    let message = e.message();
    if (message.starts_with("unknown field") || message.starts_with("missing field"))
        && let Some(start) = message.find('`')
        && let Some(len) = message[start + 1..].find('`')
    {
        return message[start + 1..start + 1 + len].to_owned();
    }
    let Some(span) = e.span() else {
        return "config".into();
    };
    let before = text.get(..span.start).unwrap_or_default();
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or_default();
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"').to_owned())
        .filter(|k| !k.is_empty() && !k.starts_with('['));
    let table = before[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_owned());
    match (table, key) {
        (Some(t), Some(k)) => format!("{t}.{k}"),
        (None, Some(k)) => k,
        (Some(t), None) => t,
        (None, None) => "config".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_field() {
        for (text, field) in [
            ("tokn_lifetime = 5", "tokn_lifetime"),
            ("token_lifetime = 0", "token_lifetime"),
            ("token_lifetime = \"long\"", "token_lifetime"),
            ("issuer = \"ftp://x\"", "issuer"),
            ("listen = \"nowhere\"", "listen"),
            ("admin_token = \"short\"", "admin_token"),
            (
                "[rate_limit.per_ip]\nburst = 0\nper_second = 1",
                "rate_limit.per_ip",
            ),
            ("[rate_limit.per_ip]\nburst = 1", "per_second"),
            ("signing_alg = \"HS256\"", "signing_alg"),
            ("trusted_proxies = [\"10.0.0.0/33\"]", "trusted_proxies[0]"),
            ("trusted_proxies = \"10.0.0.0/8\"", "trusted_proxies"),
            (
                "[rate_limit.failures_per_client_ip]\nburst = 1\nper_second = 0",
                "rate_limit.failures_per_client_ip",
            ),
            (
                "[secret_hash]\nmax_queued = 10001",
                "secret_hash.max_queued",
            ),
            ("issuer = \"http://a.example/{x}\"", "issuer"),
            ("issuer = \"http://a.example/a%2Fb\"", "issuer"),
            ("token_issuer = \"\"", "token_issuer"),
            ("token_issuer = \"a b\"", "token_issuer"),
            ("token_issuer = \"1:2\"", "token_issuer"),
        ] {
            let err = IssuerConfig::from_toml_str(text).unwrap_err().to_string();
            assert!(err.contains(field), "{text:?} → {err}");
        }
    }

    #[test]
    fn the_removed_trust_forwarded_for_is_refused_saying_what_to_use() {
        for value in ["true", "false"] {
            let err = IssuerConfig::from_toml_str(&format!("trust_forwarded_for = {value}"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("`trust_forwarded_for`"), "{err}");
            assert!(err.contains("was removed"), "{err}");
            assert!(err.contains("trusted_proxies = ["), "{err}");
        }
    }

    #[test]
    fn the_readme_example_parses() {
        let readme = include_str!("../README.md");
        let start = readme.find("```toml\n").unwrap() + "```toml\n".len();
        let len = readme[start..].find("```").unwrap();
        let config = IssuerConfig::from_toml_str(&readme[start..start + len]).unwrap();
        assert_eq!(config.issuer.as_deref(), Some("https://auth.example.com"));
        assert_eq!(config.secret_hash, SecretHashConfig::default());
        assert_eq!(config.rate_limit, RateLimitConfig::default());
    }

    #[test]
    fn a_full_file_parses() {
        let config = IssuerConfig::from_toml_str(
            r#"
            listen = "0.0.0.0:9000"
            issuer = "https://auth.example.com"
            db = ":memory:"
            token_lifetime = 600
            default_audience = "orders"
            admin_token = "0123456789abcdef0123"
            signing_alg = "RS256"
            key_retire_leeway = 30
            trusted_proxies = ["10.0.0.0/8", "2001:db8::1"]
            publish_scopes_supported = true
            [rate_limit]
            per_ip = { burst = 5, per_second = 1 }
            [secret_hash]
            memory_kib = 1024
            iterations = 1
            parallelism = 1
            "#,
        )
        .unwrap();
        assert_eq!(config.token_lifetime_secs, 600);
        assert_eq!(config.signing_alg, SigningAlg::RS256);
        assert!(config.rate_limit.per_client.is_some());
        assert_eq!(config.rate_limit.per_ip.unwrap().burst, 5);
        assert_eq!(config.trusted_proxy_nets().unwrap().len(), 2);
        assert!(config.publish_scopes_supported);
        let debug = format!("{config:?}");
        assert!(!debug.contains("0123456789abcdef0123"), "{debug}");
    }

    #[test]
    fn jwks_max_age_and_key_encryption_key_are_read_from_toml() {
        let config = IssuerConfig::from_toml_str("").unwrap();
        assert_eq!(config.jwks_max_age_secs, 300);
        assert!(config.resolve_key_encryption_key().is_ok());
        let config = IssuerConfig::from_toml_str(
            "jwks_max_age_secs = 30\nkey_encryption_key = \"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\"",
        )
        .unwrap();
        assert_eq!(config.jwks_max_age_secs, 30);
        assert!(config.resolve_key_encryption_key().unwrap().is_some());
        let err = IssuerConfig::from_toml_str("jwks_max_age_secs = 100000")
            .unwrap_err()
            .to_string();
        assert!(err.contains("jwks_max_age_secs"), "{err}");
        let config = IssuerConfig::from_toml_str("key_encryption_key = \"c2hvcnQ=\"").unwrap();
        let err = config.resolve_key_encryption_key().unwrap_err().to_string();
        assert!(
            err.contains("`key_encryption_key`") && err.contains("5 bytes"),
            "{err}"
        );
        assert!(!err.contains("c2hvcnQ"), "{err}");
    }
}
