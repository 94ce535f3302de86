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
//!
//! # gRPC
//!
//! A gRPC client reads no HTTP status and no JSON: a request whose `content-type` starts with
//! `application/grpc` is answered the gRPC way ([`Responder::respond_to`]), as a trailers-only
//! response: HTTP 200, `grpc-status` 16 UNAUTHENTICATED (no or bad token), 7 PERMISSION_DENIED
//! (missing scope), 14 UNAVAILABLE (keys not loaded yet: gRPC clients may retry), 13 INTERNAL
//! (no `VerifyLayer`), the description as a percent-encoded `grpc-message`, and the same
//! `WWW-Authenticate` challenge as metadata:
//!
//! ```
//! use http::HeaderMap;
//! use s2s_auth::rejection::{Reason, Rejection, Responder};
//!
//! let mut request = HeaderMap::new();
//! request.insert("content-type", "application/grpc".parse().unwrap());
//! let rejection = Rejection::new(Reason::Expired, "the token has expired");
//! let response = Responder::default().respond_to(&rejection, &request);
//! assert_eq!(response.status(), 200);
//! assert_eq!(response.headers()["grpc-status"], "16");
//! assert_eq!(response.headers()["grpc-message"], "the token has expired");
//! assert!(response.headers()["www-authenticate"].to_str().unwrap().contains("invalid_token"));
//! assert!(response.body().is_empty());
//! ```

use std::{borrow::Cow, fmt, fmt::Write as _, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode, header};

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

    /// The gRPC status code of the answer to a gRPC request: 16 UNAUTHENTICATED, 7
    /// PERMISSION_DENIED, 14 UNAVAILABLE or 13 INTERNAL.
    pub const fn grpc_status(self) -> u8 {
        match self {
            Reason::InsufficientScope => 7,
            Reason::KeysUnavailable => 14,
            Reason::MissingLayer => 13,
            _ => 16,
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

    /// The answer to the request whose headers are `request`: gRPC-shaped for a gRPC request
    /// (see [`Responder::respond_to`]), else [`Rejection::to_response`].
    pub fn to_response_for(&self, request: &HeaderMap) -> Response<Bytes> {
        match &self.responder {
            Some(responder) => responder.respond_to(self, request),
            None => Responder::default().respond_to(self, request),
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

/// A custom answer for rejections, given the headers of the refused request (empty when the
/// answer is asked for without them, as by [`Responder::respond`]).
pub type RejectionHandler = dyn Fn(&Rejection, &HeaderMap) -> Response<Bytes> + Send + Sync;

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

    /// Answers rejections with `handler` instead, gRPC requests included.
    pub fn handler(
        self,
        handler: impl Fn(&Rejection) -> Response<Bytes> + Send + Sync + 'static,
    ) -> Self {
        self.request_handler(move |rejection, _| handler(rejection))
    }

    /// Answers rejections with `handler`, which is also given the refused request's headers,
    /// e.g. to count refusals and still answer each kind of request its way:
    ///
    /// ```
    /// use http::HeaderMap;
    /// use s2s_auth::rejection::{Reason, Rejection, Responder};
    ///
    /// let plain = Responder::default().realm("orders");
    /// let counting = Responder::default().request_handler(move |rejection, request| {
    ///     // ... count `rejection.reason()` ...
    ///     plain.respond_to(rejection, request)
    /// });
    /// let mut grpc = HeaderMap::new();
    /// grpc.insert("content-type", "application/grpc".parse().unwrap());
    /// let rejection = Rejection::new(Reason::Expired, "the token has expired");
    /// assert_eq!(counting.respond_to(&rejection, &grpc).headers()["grpc-status"], "16");
    /// assert_eq!(counting.respond(&rejection).status(), 401);
    /// ```
    pub fn request_handler(
        mut self,
        handler: impl Fn(&Rejection, &HeaderMap) -> Response<Bytes> + Send + Sync + 'static,
    ) -> Self {
        self.handler = Some(Arc::new(handler));
        self
    }

    /// The answer for `rejection`: its status, challenge and JSON body, which show its
    /// [description](Rejection::description) and never its [detail](Rejection::detail).
    pub fn respond(&self, rejection: &Rejection) -> Response<Bytes> {
        if let Some(handler) = &self.handler {
            return handler(rejection, &HeaderMap::new());
        }
        let reason = rejection.reason;
        let description = sanitize(&rejection.description, 300);
        let mut body = ErrorBody::new(reason.oauth_error()).with_description(description);
        if let Some(code) = reason.code() {
            body = body.with_code(code);
        }
        let mut response = body.to_response(reason.status());
        self.challenge_headers(rejection, response.headers_mut());
        response
    }

    /// The answer for `rejection` to the request whose headers are `request`: the gRPC one
    /// ([`Responder::respond_grpc`]) when its `content-type` is `application/grpc*`, else
    /// [`Responder::respond`]. A custom handler answers both kinds (and is given `request`).
    pub fn respond_to(&self, rejection: &Rejection, request: &HeaderMap) -> Response<Bytes> {
        match &self.handler {
            Some(handler) => handler(rejection, request),
            None if is_grpc(request) => self.respond_grpc(rejection),
            None => self.respond(rejection),
        }
    }

    /// The gRPC answer for `rejection` (see [the module docs](self#grpc)): HTTP 200 with no
    /// body, `content-type: application/grpc`, [`Reason::grpc_status`], the description as
    /// `grpc-message`, the challenge and `Retry-After` as for [`Responder::respond`].
    pub fn respond_grpc(&self, rejection: &Rejection) -> Response<Bytes> {
        let mut response = Response::new(Bytes::new());
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        headers.insert(
            GRPC_STATUS,
            HeaderValue::from(u16::from(rejection.reason.grpc_status())),
        );
        if let Ok(message) = HeaderValue::from_str(&grpc_message(&rejection.description, 300)) {
            headers.insert("grpc-message", message);
        }
        self.challenge_headers(rejection, headers);
        response
    }

    /// `WWW-Authenticate` (for 401 and 403 reasons only: a 503 or 500 is no statement about the
    /// token) and `Retry-After`.
    fn challenge_headers(&self, rejection: &Rejection, headers: &mut HeaderMap) {
        let reason = rejection.reason;
        if matches!(
            reason.status(),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
        ) {
            let mut challenge = format!(
                "Bearer realm=\"{}\"",
                self.realm.to_str().unwrap_or_default()
            );
            if reason != Reason::MissingToken {
                let _ = write!(
                    challenge,
                    ", error=\"{}\", error_description=\"{}\"",
                    reason.oauth_error(),
                    sanitize(&rejection.description, 300)
                );
                if let Some(scope) = &rejection.required_scopes {
                    let _ = write!(challenge, ", scope=\"{}\"", sanitize(scope, 500));
                }
            }
            if let Ok(value) = HeaderValue::from_str(&challenge) {
                headers.insert(header::WWW_AUTHENTICATE, value);
            }
        }
        if let Some(after) = rejection.retry_after {
            let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
    }
}

/// Whether a request with these headers is a gRPC call (`content-type: application/grpc`,
/// `application/grpc+proto`, `application/grpc-web`…).
pub fn is_grpc(request: &HeaderMap) -> bool {
    request
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.as_bytes().get(..16))
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case(b"application/grpc"))
}

/// Whether an answer refuses the bearer token itself (RFC 6750 §3.1), so that a new token may
/// succeed: HTTP 401, or gRPC UNAUTHENTICATED (`grpc-status: 16` in the headers, as a
/// trailers-only answer has it), with a `Bearer` challenge whose `error` is `invalid_token`
/// (quoted or bare, RFC 7235 §2.1).
pub(crate) fn refuses_token(status: StatusCode, headers: &HeaderMap) -> bool {
    let refused =
        status == StatusCode::UNAUTHORIZED || headers.get(&GRPC_STATUS).is_some_and(|v| v == "16");
    refused
        && headers
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.trim_start()
                    .get(..6)
                    .is_some_and(|s| s.eq_ignore_ascii_case("bearer"))
                    && (v.contains("error=\"invalid_token\"") || v.contains("error=invalid_token"))
            })
}

/// Looked up in every answer an outbound layer reads: a name parsed once, not per response.
const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");

/// `message` as the gRPC spec wants `grpc-message`: UTF-8, every byte outside printable ASCII
/// and `%` itself percent-encoded; cut at `max` characters.
fn grpc_message(message: &str, max: usize) -> String {
    let mut out = String::with_capacity(message.len());
    for c in message.chars().take(max) {
        if (' '..='~').contains(&c) && c != '%' {
            out.push(c);
        } else {
            let mut utf8 = [0; 4];
            for byte in c.encode_utf8(&mut utf8).bytes() {
                let _ = write!(out, "%{byte:02X}");
            }
        }
    }
    out
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

    fn grpc_request() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc+proto"),
        );
        headers
    }

    #[test]
    fn grpc_requests_get_grpc_answers() {
        let responder = Responder::default().realm("orders");
        let cases = [
            (Rejection::new(Reason::MissingToken, "no token"), "16"),
            (Rejection::summarized(Reason::BadSignature, "detail"), "16"),
            (
                Rejection::insufficient_scope("orders:write".into(), "needs orders:write".into()),
                "7",
            ),
            (
                Rejection::new(Reason::KeysUnavailable, "later")
                    .with_retry_after(Duration::from_secs(3)),
                "14",
            ),
            (Rejection::new(Reason::MissingLayer, "bug"), "13"),
        ];
        for (rejection, status) in cases {
            let r = responder.respond_to(&rejection, &grpc_request());
            let reason = rejection.reason();
            assert_eq!(r.status(), 200, "{reason}");
            assert_eq!(r.headers()["grpc-status"], status, "{reason}");
            assert_eq!(r.headers()[header::CONTENT_TYPE], "application/grpc");
            assert_eq!(r.headers()["grpc-message"], rejection.description());
            assert!(r.body().is_empty(), "{reason}");
            // The same challenge as the HTTP answer's.
            let http = responder.respond(&rejection);
            assert_eq!(
                r.headers().get(header::WWW_AUTHENTICATE),
                http.headers().get(header::WWW_AUTHENTICATE),
                "{reason}"
            );
            assert_eq!(
                r.headers().get(header::RETRY_AFTER),
                http.headers().get(header::RETRY_AFTER)
            );
        }
        let r = responder.respond_to(
            &Rejection::insufficient_scope("orders:write".into(), "x".into()),
            &grpc_request(),
        );
        let challenge = r.headers()[header::WWW_AUTHENTICATE].to_str().unwrap();
        assert!(challenge.contains("scope=\"orders:write\""), "{challenge}");
    }

    #[test]
    fn other_requests_and_custom_handlers_keep_their_answers() {
        let rejection = Rejection::new(Reason::Expired, "expired");
        let mut json = HeaderMap::new();
        json.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        for headers in [HeaderMap::new(), json] {
            let r = Responder::default().respond_to(&rejection, &headers);
            assert_eq!(r.status(), 401);
            assert!(r.headers().get("grpc-status").is_none());
        }
        let custom = Responder::default().handler(|_| {
            let mut r = Response::new(Bytes::from_static(b"custom"));
            *r.status_mut() = StatusCode::IM_A_TEAPOT;
            r
        });
        assert_eq!(custom.respond_to(&rejection, &grpc_request()).status(), 418);
        let mut upper = HeaderMap::new();
        upper.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("Application/GRPC"),
        );
        assert!(is_grpc(&upper));
        let mut short = HeaderMap::new();
        short.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/gr"),
        );
        assert!(!is_grpc(&short));
    }

    #[test]
    fn request_handlers_answer_each_kind_of_request() {
        // What the gateway does: count, mark, and answer through the plain responder.
        let plain = Responder::default().realm("orders");
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let counting = {
            let seen = seen.clone();
            Responder::default().request_handler(move |rejection, request| {
                seen.lock().unwrap().push(rejection.reason());
                let mut response = plain.respond_to(rejection, request);
                response
                    .headers_mut()
                    .insert("x-counted", HeaderValue::from_static("1"));
                response
            })
        };
        let scope =
            Rejection::insufficient_scope("orders:write".into(), "needs orders:write".into());
        let r = counting.respond_to(&scope, &grpc_request());
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["grpc-status"], "7");
        assert_eq!(r.headers()["grpc-message"], "needs orders:write");
        assert_eq!(r.headers()["x-counted"], "1");
        let challenge = r.headers()[header::WWW_AUTHENTICATE].to_str().unwrap();
        assert!(
            challenge.starts_with("Bearer realm=\"orders\""),
            "{challenge}"
        );
        assert!(r.body().is_empty());
        // An HTTP request, and `respond` without the request: the RFC 6750 answer.
        let expired = Rejection::new(Reason::Expired, "expired");
        for r in [
            counting.respond_to(&expired, &HeaderMap::new()),
            counting.respond(&expired),
        ] {
            assert_eq!(r.status(), 401);
            assert!(r.headers().get("grpc-status").is_none());
            assert_eq!(r.headers()["x-counted"], "1");
        }
        assert_eq!(
            *seen.lock().unwrap(),
            [Reason::InsufficientScope, Reason::Expired, Reason::Expired]
        );
    }

    #[test]
    fn grpc_messages_are_percent_encoded() {
        assert_eq!(
            grpc_message("100% sure é\r\n", 300),
            "100%25 sure %C3%A9%0D%0A"
        );
        assert_eq!(grpc_message("abcdef", 3), "abc");
        let r = Responder::default().respond_grpc(&Rejection::new(
            Reason::UnknownKey,
            "kid \"x\r\nSet-Cookie: a=b",
        ));
        assert_eq!(r.headers()["grpc-message"], "kid \"x%0D%0ASet-Cookie: a=b");
    }

    #[test]
    fn token_refusals_are_told_from_others() {
        let challenge = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(v));
            h
        };
        let invalid = r#"Bearer realm="api", error="invalid_token""#;
        assert!(refuses_token(StatusCode::UNAUTHORIZED, &challenge(invalid)));
        assert!(refuses_token(
            StatusCode::UNAUTHORIZED,
            &challenge("bearer error=invalid_token")
        ));
        let mut grpc = challenge(invalid);
        grpc.insert("grpc-status", HeaderValue::from_static("16"));
        assert!(refuses_token(StatusCode::OK, &grpc));
        grpc.insert("grpc-status", HeaderValue::from_static("7"));
        assert!(!refuses_token(StatusCode::OK, &grpc));
        assert!(!refuses_token(StatusCode::OK, &challenge(invalid)));
        let scope = r#"Bearer error="insufficient_scope""#;
        assert!(!refuses_token(StatusCode::UNAUTHORIZED, &challenge(scope)));
        assert!(!refuses_token(
            StatusCode::UNAUTHORIZED,
            &challenge(r#"Bearer realm="api""#)
        ));
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
