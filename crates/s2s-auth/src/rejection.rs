//! Why a request was refused, and the RFC 6750 answer for it.
//!
//! Every rejection is answered with the status of its [`Reason`], a `WWW-Authenticate: Bearer`
//! challenge (no `error` attribute when the request carried no bearer token, RFC 6750 §3.1) and
//! a JSON body `{"error", "error_description", "code"}` with the stable `AUTH_1xx` code:
//!
//! ```
//! use s2s_auth::rejection::{Reason, Rejection, Responder};
//!
//! let rejection = Rejection::new(Reason::Expired, "the token expired 30 s ago");
//! let response = Responder::default().respond(&rejection);
//! assert_eq!(response.status(), 401);
//! assert_eq!(
//!     response.headers()["www-authenticate"],
//!     r#"Bearer realm="api", error="invalid_token", error_description="the token expired 30 s ago""#
//! );
//! let body: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
//! assert_eq!(body["code"], "AUTH_105");
//! ```
//!
//! # What a caller learns
//!
//! A rejection has two texts: its [description](Rejection::description), the one thing the
//! [`Responder`] shows the caller, and its [detail](Rejection::detail), for the log line only.
//! The [`Verifier`](crate::Verifier) describes every refusal with the fixed, short text of its
//! [`Reason`] ([`Reason::summary`]) and puts the specifics (the JWK set URL and the remote
//! error, the accepted audiences, issuers and algorithms, key ids, parser errors) in the detail,
//! so that no configuration or internal state reaches an unauthenticated caller.

use std::{borrow::Cow, fmt, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use crate::{
    error::{Code, Error, ErrorKind},
    oauth::ErrorBody,
};

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// No `Authorization: Bearer` credentials.
    MissingToken,
    /// An `Authorization` header that is not one well-formed `Bearer <token>`.
    MalformedHeader,
    /// A token longer than the configured limit.
    TooLarge,
    /// Not a compact JWS: segments, base64url or JSON are wrong.
    Malformed,
    /// A JWE (five segments): encrypted tokens are not accepted.
    Encrypted,
    /// `alg` is not allowed (or is `none`, or HMAC).
    UnsupportedAlgorithm,
    /// `alg` does not fit the key that `kid` names.
    AlgorithmMismatch,
    /// No key of the issuer's set has the token's `kid`.
    UnknownKey,
    /// The signature does not verify.
    BadSignature,
    /// `exp` has passed.
    Expired,
    /// `nbf` is in the future.
    NotYetValid,
    /// `iss` is not one of the accepted issuers.
    UnknownIssuer,
    /// `aud` names none of the accepted audiences.
    WrongAudience,
    /// A required claim (`exp`, or a configured one) is absent or malformed.
    MissingClaim,
    /// `typ` is not `at+jwt` where RFC 9068 tokens are required.
    WrongType,
    /// A `crit` header: extensions this verifier does not understand.
    CriticalHeader,
    /// The issuer's keys could not be loaded: retry later (503).
    KeysUnavailable,
    /// The token lacks a scope the route requires (403).
    InsufficientScope,
    /// A handler asked for claims on a route without `VerifyLayer` (500: a server bug).
    MissingLayer,
}

impl Reason {
    pub(crate) const COUNT: usize = 19;
    /// Every reason, in declaration order.
    pub const ALL: [Reason; Reason::COUNT] = [
        Reason::MissingToken,
        Reason::MalformedHeader,
        Reason::TooLarge,
        Reason::Malformed,
        Reason::Encrypted,
        Reason::UnsupportedAlgorithm,
        Reason::AlgorithmMismatch,
        Reason::UnknownKey,
        Reason::BadSignature,
        Reason::Expired,
        Reason::NotYetValid,
        Reason::UnknownIssuer,
        Reason::WrongAudience,
        Reason::MissingClaim,
        Reason::WrongType,
        Reason::CriticalHeader,
        Reason::KeysUnavailable,
        Reason::InsufficientScope,
        Reason::MissingLayer,
    ];

    /// A short stable name for logs and metrics, e.g. `"expired"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::MissingToken => "missing_token",
            Reason::MalformedHeader => "malformed_header",
            Reason::TooLarge => "too_large",
            Reason::Malformed => "malformed",
            Reason::Encrypted => "encrypted",
            Reason::UnsupportedAlgorithm => "unsupported_algorithm",
            Reason::AlgorithmMismatch => "algorithm_mismatch",
            Reason::UnknownKey => "unknown_key",
            Reason::BadSignature => "bad_signature",
            Reason::Expired => "expired",
            Reason::NotYetValid => "not_yet_valid",
            Reason::UnknownIssuer => "unknown_issuer",
            Reason::WrongAudience => "wrong_audience",
            Reason::MissingClaim => "missing_claim",
            Reason::WrongType => "wrong_type",
            Reason::CriticalHeader => "critical_header",
            Reason::KeysUnavailable => "keys_unavailable",
            Reason::InsufficientScope => "insufficient_scope",
            Reason::MissingLayer => "missing_layer",
        }
    }

    /// The HTTP status of the answer.
    pub const fn status(self) -> StatusCode {
        match self {
            Reason::InsufficientScope => StatusCode::FORBIDDEN,
            Reason::KeysUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Reason::MissingLayer => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    /// The stable code of the answer, where one applies.
    pub const fn code(self) -> Option<Code> {
        match self {
            Reason::WrongAudience => Some(Code::InvalidAudience),
            Reason::InsufficientScope => Some(Code::InsufficientScope),
            Reason::KeysUnavailable | Reason::MissingLayer => None,
            _ => Some(Code::InvalidToken),
        }
    }

    /// The short, fixed description a caller is shown for this reason: what is wrong, never
    /// how this service is configured. The verifier describes all its refusals with it.
    pub const fn summary(self) -> &'static str {
        match self {
            Reason::MissingToken => {
                "this endpoint requires a bearer token: send `Authorization: Bearer <token>`"
            }
            Reason::MalformedHeader => {
                "the Authorization header must be exactly one `Bearer <token>`"
            }
            Reason::TooLarge => "the token is longer than this service accepts",
            Reason::Malformed => "the token is not a well-formed signed JWT",
            Reason::Encrypted => "encrypted tokens (JWE) are not accepted: send a signed JWT",
            Reason::UnsupportedAlgorithm => "the token's alg is not accepted",
            Reason::AlgorithmMismatch => "the token's alg does not fit the key it names",
            Reason::UnknownKey => "no signing key of the token's issuer has the token's kid",
            Reason::BadSignature => "the token's signature does not verify",
            Reason::Expired => "the token has expired",
            Reason::NotYetValid => "the token is not valid yet (nbf)",
            Reason::UnknownIssuer => "the token's issuer is not accepted",
            Reason::WrongAudience => {
                "the token is not meant for this service: its aud names none of the audiences \
                 this route accepts"
            }
            Reason::MissingClaim => "the token lacks a claim this service requires",
            Reason::WrongType => {
                "the token's typ says it is not an access token: send an OAuth access token \
                 (typ `at+jwt`)"
            }
            Reason::CriticalHeader => {
                "the token has a `crit` header naming extensions this service does not support"
            }
            Reason::KeysUnavailable => {
                "the signing keys of the token's issuer are not available; retry later"
            }
            Reason::InsufficientScope => "the token lacks a scope this endpoint requires",
            Reason::MissingLayer => "server misconfiguration: this route has no VerifyLayer",
        }
    }

    /// The OAuth error name in the JSON body (and, but for [`Reason::MissingToken`], in the
    /// challenge).
    pub const fn oauth_error(self) -> &'static str {
        match self {
            Reason::InsufficientScope => "insufficient_scope",
            Reason::KeysUnavailable => "temporarily_unavailable",
            Reason::MissingLayer => "server_error",
            _ => "invalid_token",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused request: the [`Reason`], a description that says what to fix, and a detail for
/// the log.
///
/// The description is what the caller is shown (see [the module docs](self#what-a-caller-learns));
/// the detail never leaves the service. Neither contains the token.
#[derive(Clone, Debug)]
pub struct Rejection {
    reason: Reason,
    description: Cow<'static, str>,
    /// For the log line only: what the operator needs and the caller must not see.
    detail: Option<Cow<'static, str>>,
    required_scopes: Option<Arc<str>>,
    retry_after: Option<Duration>,
    /// How the layer that saw the request answers (its realm or handler), when not the default.
    responder: Option<Arc<Responder>>,
}

impl Rejection {
    /// A rejection for `reason`.
    pub fn new(reason: Reason, description: impl Into<Cow<'static, str>>) -> Self {
        Rejection {
            reason,
            description: description.into(),
            detail: None,
            required_scopes: None,
            retry_after: None,
            responder: None,
        }
    }

    /// A rejection for `reason` described to the caller by [`Reason::summary`], with `detail`
    /// for the log only.
    pub fn summarized(reason: Reason, detail: impl Into<Cow<'static, str>>) -> Self {
        Rejection::new(reason, reason.summary()).with_detail(detail)
    }

    /// Sets what the log line says beyond the description (never shown to the caller).
    pub fn with_detail(mut self, detail: impl Into<Cow<'static, str>>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub(crate) fn with_responder(mut self, responder: Option<&Arc<Responder>>) -> Self {
        self.responder = responder.cloned();
        self
    }

    /// The answer: the RFC 6750 one with the realm of the `VerifyLayer` that saw the request
    /// (or its custom handler), else with the default realm.
    pub fn to_response(&self) -> Response<Bytes> {
        match &self.responder {
            Some(responder) => responder.respond(self),
            None => Responder::default().respond(self),
        }
    }

    pub(crate) fn insufficient_scope(required: Arc<str>, description: String) -> Self {
        Rejection {
            required_scopes: Some(required),
            ..Rejection::new(Reason::InsufficientScope, description)
        }
    }

    pub(crate) fn with_retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = Some(retry_after);
        self
    }

    /// Why.
    pub fn reason(&self) -> Reason {
        self.reason
    }

    /// What happened and what to fix: the text the caller is shown.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The specifics for the log (URLs, remote errors, the configuration the token failed
    /// against). Never put it in an answer: it is what an unauthenticated caller must not learn.
    pub fn detail(&self) -> Option<&str> {
        self.detail.as_deref()
    }

    /// The HTTP status of the answer.
    pub fn status(&self) -> StatusCode {
        self.reason.status()
    }

    /// The scopes the route requires, for [`Reason::InsufficientScope`] (space-delimited).
    pub fn required_scopes(&self) -> Option<&str> {
        self.required_scopes.as_deref()
    }

    /// When to retry, for [`Reason::KeysUnavailable`].
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.description)
    }
}

impl std::error::Error for Rejection {}

impl From<Rejection> for Error {
    fn from(r: Rejection) -> Error {
        let kind = match r.reason {
            Reason::KeysUnavailable => ErrorKind::Transient,
            Reason::MissingLayer => ErrorKind::Config,
            _ => ErrorKind::Rejected,
        };
        let mut err = Error::new(kind, r.description)
            .with_status(r.reason.status())
            .with_oauth_error(r.reason.oauth_error());
        if let Some(code) = r.reason.code() {
            err = err.with_code(code);
        }
        if let Some(after) = r.retry_after {
            err = err.with_retry_after(after);
        }
        err
    }
}

/// A custom answer for rejections.
pub type RejectionHandler = dyn Fn(&Rejection) -> Response<Bytes> + Send + Sync;

/// Turns a [`Rejection`] into a response: the RFC 6750 answer with a realm, or a custom
/// [`RejectionHandler`]. Shared by `VerifyLayer`, `RequireScope` and the axum extractors.
#[derive(Clone)]
pub struct Responder {
    realm: HeaderValue,
    handler: Option<Arc<RejectionHandler>>,
}

impl Default for Responder {
    fn default() -> Self {
        Responder {
            realm: HeaderValue::from_static("api"),
            handler: None,
        }
    }
}

impl fmt::Debug for Responder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Responder")
            .field("realm", &self.realm)
            .field("custom_handler", &self.handler.is_some())
            .finish()
    }
}

impl Responder {
    /// Sets the `realm` of the challenge (default `"api"`). Characters that cannot appear in a
    /// quoted string are dropped.
    pub fn realm(mut self, realm: &str) -> Self {
        self.realm = HeaderValue::from_str(&sanitize(realm, 200)).unwrap_or(self.realm);
        self
    }

    /// Answers rejections with `handler` instead.
    pub fn handler(
        mut self,
        handler: impl Fn(&Rejection) -> Response<Bytes> + Send + Sync + 'static,
    ) -> Self {
        self.handler = Some(Arc::new(handler));
        self
    }

    /// The answer for `rejection`: its status, challenge and JSON body, which show its
    /// [description](Rejection::description) and never its [detail](Rejection::detail).
    pub fn respond(&self, rejection: &Rejection) -> Response<Bytes> {
        if let Some(handler) = &self.handler {
            return handler(rejection);
        }
        let reason = rejection.reason;
        let description = sanitize(&rejection.description, 300);
        let mut challenge = format!(
            "Bearer realm=\"{}\"",
            self.realm.to_str().unwrap_or_default()
        );
        // A challenge answers 401 and 403 only: a 503 or 500 is no statement about the token.
        let challenges = matches!(
            reason.status(),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
        );
        if reason != Reason::MissingToken && challenges {
            challenge.push_str(&format!(
                ", error=\"{}\", error_description=\"{description}\"",
                reason.oauth_error()
            ));
            if let Some(scope) = &rejection.required_scopes {
                challenge.push_str(&format!(", scope=\"{}\"", sanitize(scope, 500)));
            }
        }
        let mut body = ErrorBody::new(reason.oauth_error()).with_description(description);
        if let Some(code) = reason.code() {
            body = body.with_code(code);
        }
        let mut response = body.to_response(reason.status());
        let headers = response.headers_mut();
        if challenges && let Ok(value) = HeaderValue::from_str(&challenge) {
            headers.insert(header::WWW_AUTHENTICATE, value);
        }
        if let Some(after) = rejection.retry_after {
            let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        response
    }
}

/// Keeps what RFC 6750 §3 allows in a quoted attribute (printable ASCII but `"` and `\`),
/// replacing anything else with `?`, and cuts at `max` characters.
pub(crate) fn sanitize(s: &str, max: usize) -> String {
    let mut out: String = s
        .chars()
        .take(max)
        .map(|c| match c {
            ' '..='~' if c != '"' && c != '\\' => c,
            _ => '?',
        })
        .collect();
    if s.chars().count() > max {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_token_has_no_error_attribute() {
        let r = Responder::default()
            .realm("orders")
            .respond(&Rejection::new(
                Reason::MissingToken,
                "send Authorization: Bearer <token>",
            ));
        assert_eq!(r.status(), 401);
        assert_eq!(
            r.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"orders\""
        );
        let body: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
        assert_eq!(body["code"], "AUTH_105");
    }

    #[test]
    fn scope_and_unavailable_answers() {
        let r = Responder::default().respond(&Rejection::insufficient_scope(
            "orders:write".into(),
            "requires orders:write".into(),
        ));
        assert_eq!(r.status(), 403);
        let challenge = r.headers()[header::WWW_AUTHENTICATE].to_str().unwrap();
        assert!(
            challenge.contains("error=\"insufficient_scope\""),
            "{challenge}"
        );
        assert!(challenge.contains("scope=\"orders:write\""), "{challenge}");
        let r = Responder::default().respond(
            &Rejection::new(Reason::KeysUnavailable, "keys not loaded")
                .with_retry_after(Duration::from_millis(1500)),
        );
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()[header::RETRY_AFTER], "2");
        assert!(r.headers().get(header::WWW_AUTHENTICATE).is_none());
        let body: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
        assert!(body.get("code").is_none(), "{body}");
    }

    #[test]
    fn the_detail_never_reaches_the_answer() {
        let detail = "JWK set `https://keys.internal/jwks` answered 500: `stack trace`";
        for reason in Reason::ALL {
            let r = Responder::default().respond(&Rejection::summarized(reason, detail));
            let challenge = r
                .headers()
                .get(header::WWW_AUTHENTICATE)
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            let body: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
            assert_eq!(body["error_description"], reason.summary(), "{reason}");
            for text in [&challenge, &body.to_string()] {
                assert!(!text.contains("keys.internal"), "{reason}: {text}");
            }
        }
    }

    #[test]
    fn attacker_text_cannot_break_the_header() {
        let r = Responder::default().respond(&Rejection::new(
            Reason::UnknownKey,
            "kid \"x\r\nSet-Cookie: a=b\\ é",
        ));
        let challenge = r.headers()[header::WWW_AUTHENTICATE].to_str().unwrap();
        assert!(
            challenge.ends_with("error_description=\"kid ?x??Set-Cookie: a=b? ?\""),
            "{challenge}"
        );
    }
}
