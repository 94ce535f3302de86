//! The one error type of the crate, and the stable `AUTH_1xx` codes.
//!
//! ```
//! use s2s_auth::{Code, ErrorKind, token::{ClientAuth, ClientCredentials, TokenManager}};
//!
//! // Plain http to a remote host: refused before any request, as a configuration error.
//! let grant = ClientCredentials::new(
//!     "http://auth.example.com/oauth/token",
//!     "billing-service",
//!     ClientAuth::SecretBasic("s3cret".into()),
//! );
//! let err = TokenManager::new(grant).unwrap_err();
//! assert_eq!(err.kind(), ErrorKind::Config);
//! assert!(!err.to_string().contains("s3cret"));
//! assert_eq!(Code::from_code_str("AUTH_106"), Some(Code::RateLimited));
//! ```
//!
//! Every error says what its receiver can do about it through [`Error::kind`]: reject the
//! request, retry later, or fix the configuration. Messages never contain a secret or a token.

use std::{borrow::Cow, fmt, time::Duration};

use http::StatusCode;

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What the receiver of an [`Error`] can do about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The credentials presented with a request are not acceptable: reject the request.
    Rejected,
    /// A temporary failure (network, timeout, 5xx, 429, keys not loaded yet): retry later.
    Transient,
    /// The configuration is wrong (bad URL, client refused by the authorization server, missing
    /// layer): retrying will not help, fix the configuration.
    Config,
}

/// The stable error codes of the service-to-service auth API (see `ARCHITECTURE.md` at the
/// repository root, "Conventions").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Code {
    /// `AUTH_101`: invalid client credentials (`invalid_client`, 401).
    InvalidClient,
    /// `AUTH_102`: insufficient scope (`insufficient_scope` 403, or `invalid_scope` 400).
    InsufficientScope,
    /// `AUTH_103`: service account disabled (`unauthorized_client`, 401).
    AccountDisabled,
    /// `AUTH_104`: IP address not allowed (`unauthorized_client`, 403).
    IpNotAllowed,
    /// `AUTH_105`: token signature verification failed, and every other invalid token
    /// (`invalid_token`, 401).
    InvalidToken,
    /// `AUTH_106`: rate limit exceeded (429 with `Retry-After`).
    RateLimited,
    /// `AUTH_107`: invalid audience (`invalid_token`, 401).
    InvalidAudience,
}

impl Code {
    /// The code as it appears in JSON bodies, e.g. `"AUTH_105"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Code::InvalidClient => "AUTH_101",
            Code::InsufficientScope => "AUTH_102",
            Code::AccountDisabled => "AUTH_103",
            Code::IpNotAllowed => "AUTH_104",
            Code::InvalidToken => "AUTH_105",
            Code::RateLimited => "AUTH_106",
            Code::InvalidAudience => "AUTH_107",
        }
    }

    /// Parses `"AUTH_1xx"`.
    pub fn from_code_str(s: &str) -> Option<Self> {
        Some(match s {
            "AUTH_101" => Code::InvalidClient,
            "AUTH_102" => Code::InsufficientScope,
            "AUTH_103" => Code::AccountDisabled,
            "AUTH_104" => Code::IpNotAllowed,
            "AUTH_105" => Code::InvalidToken,
            "AUTH_106" => Code::RateLimited,
            "AUTH_107" => Code::InvalidAudience,
            _ => return None,
        })
    }

    /// The HTTP status a server answers with for this code.
    ///
    /// `AUTH_102` is 403 on a protected resource (`insufficient_scope`); a token endpoint answers
    /// `invalid_scope` with 400 instead.
    pub const fn status(self) -> StatusCode {
        match self {
            Code::InvalidClient
            | Code::AccountDisabled
            | Code::InvalidToken
            | Code::InvalidAudience => StatusCode::UNAUTHORIZED,
            Code::InsufficientScope | Code::IpNotAllowed => StatusCode::FORBIDDEN,
            Code::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error type of this crate.
///
/// Cheap to move (one pointer). Built with [`Error::new`] and the `with_*` methods.
pub struct Error {
    inner: Box<Inner>,
}

struct Inner {
    kind: ErrorKind,
    message: Cow<'static, str>,
    code: Option<Code>,
    oauth_error: Option<Cow<'static, str>>,
    status: Option<StatusCode>,
    retry_after: Option<Duration>,
    source: Option<BoxError>,
}

impl Error {
    /// An error of `kind` whose message says what happened and what to fix.
    ///
    /// The message must never contain a secret or a token.
    pub fn new(kind: ErrorKind, message: impl Into<Cow<'static, str>>) -> Self {
        Error {
            inner: Box::new(Inner {
                kind,
                message: message.into(),
                code: None,
                oauth_error: None,
                status: None,
                retry_after: None,
                source: None,
            }),
        }
    }

    /// A [`ErrorKind::Config`] error.
    pub fn config(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::Config, message)
    }

    /// A [`ErrorKind::Transient`] error.
    pub fn transient(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::Transient, message)
    }

    /// Sets the stable `AUTH_1xx` code.
    pub fn with_code(mut self, code: Code) -> Self {
        self.inner.code = Some(code);
        self
    }

    /// Sets the OAuth 2.0 error name (`invalid_client`, `invalid_token`, ...).
    pub fn with_oauth_error(mut self, error: impl Into<Cow<'static, str>>) -> Self {
        self.inner.oauth_error = Some(error.into());
        self
    }

    /// Sets the HTTP status a remote server answered with (or that a server should answer with).
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.inner.status = Some(status);
        self
    }

    /// Sets how long to wait before retrying.
    pub fn with_retry_after(mut self, retry_after: Duration) -> Self {
        self.inner.retry_after = Some(retry_after);
        self
    }

    /// Sets the underlying cause.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.inner.source = Some(source.into());
        self
    }

    /// A copy for another receiver of the same outcome (a shared fetch): everything but the
    /// source, whose text is appended to the message.
    pub(crate) fn duplicate(&self) -> Error {
        let i = &self.inner;
        let message = match &i.source {
            Some(source) => format!("{}: {source}", i.message).into(),
            None => i.message.clone(),
        };
        Error {
            inner: Box::new(Inner {
                kind: i.kind,
                message,
                code: i.code,
                oauth_error: i.oauth_error.clone(),
                status: i.status,
                retry_after: i.retry_after,
                source: None,
            }),
        }
    }

    /// What the receiver can do about this error.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// Whether retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        self.inner.kind == ErrorKind::Transient
    }

    /// The stable `AUTH_1xx` code, when one applies.
    pub fn code(&self) -> Option<Code> {
        self.inner.code
    }

    /// The OAuth 2.0 error name, when one applies.
    pub fn oauth_error(&self) -> Option<&str> {
        self.inner.oauth_error.as_deref()
    }

    /// The HTTP status involved, when one applies.
    pub fn status(&self) -> Option<StatusCode> {
        self.inner.status
    }

    /// How long to wait before retrying, when known.
    pub fn retry_after(&self) -> Option<Duration> {
        self.inner.retry_after
    }

    /// The message: what happened and what to fix.
    pub fn message(&self) -> &str {
        &self.inner.message
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.inner.kind)
            .field("message", &self.inner.message);
        if let Some(code) = self.inner.code {
            d.field("code", &code);
        }
        if let Some(e) = &self.inner.oauth_error {
            d.field("oauth_error", e);
        }
        if let Some(s) = self.inner.status {
            d.field("status", &s);
        }
        if let Some(r) = self.inner.retry_after {
            d.field("retry_after", &r);
        }
        if let Some(s) = &self.inner.source {
            d.field("source", s);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(code) = self.inner.code {
            write!(f, "{code}: ")?;
        }
        f.write_str(&self.inner.message)?;
        if let Some(source) = &self.inner.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner.source.as_deref().map(|e| e as _)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_map_to_statuses() {
        for code in [
            Code::InvalidClient,
            Code::InsufficientScope,
            Code::AccountDisabled,
            Code::IpNotAllowed,
            Code::InvalidToken,
            Code::RateLimited,
            Code::InvalidAudience,
        ] {
            assert_eq!(Code::from_code_str(code.as_str()), Some(code));
        }
        assert_eq!(Code::InvalidToken.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(Code::InsufficientScope.status(), StatusCode::FORBIDDEN);
        assert_eq!(Code::RateLimited.status(), StatusCode::TOO_MANY_REQUESTS);
    }

    #[test]
    fn display_names_code_message_and_source() {
        let err = Error::config("token endpoint refused the client")
            .with_code(Code::InvalidClient)
            .with_source(std::io::Error::other("boom"));
        assert_eq!(
            err.to_string(),
            "AUTH_101: token endpoint refused the client: boom"
        );
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(!err.is_transient());
    }
}
