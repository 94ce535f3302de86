//! The error answer of a token endpoint, a protected resource or an admin API: [`ErrorBody`]
//! writes it, the client reads it.

use std::{borrow::Cow, time::Duration};

use bytes::Bytes;
use http::{Response, StatusCode};
use serde::{Deserialize, Serialize};

use super::Dialect;
use crate::{
    error::{Code, Error, ErrorKind},
    fetch,
    rejection::sanitize,
};

/// An error answer's JSON body: RFC 6749 §5.2 (`error`, `error_description`) plus the stable
/// `AUTH_1xx` [`Code`] and, for a validation error, the `field` at fault. Both dialects, RFC 6750
/// rejections, the gateway's own answers and the issuer's admin API write it alike.
///
/// ```
/// use s2s_auth::{Code, oauth::ErrorBody};
///
/// let body = ErrorBody::new("invalid_client")
///     .with_description("invalid client credentials")
///     .with_code(Code::InvalidClient);
/// assert_eq!(
///     String::from_utf8(body.to_json()).unwrap(),
///     r#"{"code":"AUTH_101","error":"invalid_client","error_description":"invalid client credentials"}"#
/// );
/// let read = ErrorBody::parse(&body.to_json()).unwrap();
/// assert_eq!(read.code(), Some(Code::InvalidClient));
/// assert_eq!(read.error(), Some("invalid_client"));
/// ```
///
/// Members are written in lexicographic order, absent ones not at all. Reading is lenient:
/// every member may be missing, `errorDescription` is read as `error_description`, and a code
/// this version does not know is kept as text ([`ErrorBody::code_str`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    // Declared in lexicographic order: the bytes are those of a sorted JSON object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    code: Option<Cow<'static, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<Cow<'static, str>>,
    #[serde(
        default,
        alias = "errorDescription",
        skip_serializing_if = "Option::is_none"
    )]
    error_description: Option<Cow<'static, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    field: Option<Cow<'static, str>>,
}

impl ErrorBody {
    /// A body with the OAuth `error` name (`invalid_request`, `invalid_token`, …).
    pub fn new(error: impl Into<Cow<'static, str>>) -> Self {
        ErrorBody {
            code: None,
            error: Some(error.into()),
            error_description: None,
            field: None,
        }
    }

    /// Sets `error_description`: what is wrong and what to fix, for the caller to read.
    pub fn with_description(mut self, description: impl Into<Cow<'static, str>>) -> Self {
        self.error_description = Some(description.into());
        self
    }

    /// Sets the stable `AUTH_1xx` code.
    pub fn with_code(mut self, code: Code) -> Self {
        self.code = Some(Cow::Borrowed(code.as_str()));
        self
    }

    /// Sets the `code` member to `code` as written: a code this version may not know (a newer
    /// server's), or none of the `AUTH_1xx` ones at all.
    pub fn with_code_str(mut self, code: impl Into<Cow<'static, str>>) -> Self {
        self.code = Some(code.into());
        self
    }

    /// Sets the `field` a validation error is about.
    pub fn with_field(mut self, field: impl Into<Cow<'static, str>>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// Reads an error body; `None` when `body` is not a JSON object with a string `error` or
    /// `code` (a member of another type makes it no error body at all).
    pub fn parse(body: &[u8]) -> Option<ErrorBody> {
        serde_json::from_slice::<ErrorBody>(body)
            .ok()
            .filter(|b| b.error.is_some() || b.code.is_some())
    }

    /// The OAuth `error` name.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// The `error_description`.
    pub fn description(&self) -> Option<&str> {
        self.error_description.as_deref()
    }

    /// The stable code, when it is one this version knows.
    pub fn code(&self) -> Option<Code> {
        self.code.as_deref().and_then(Code::from_code_str)
    }

    /// The `code` member as written.
    pub fn code_str(&self) -> Option<&str> {
        self.code.as_deref()
    }

    /// The `field` member.
    pub fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }

    /// The JSON body.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an object of strings serializes")
    }

    /// The whole answer: `status`, `Content-Type: application/json`, `Cache-Control: no-store`.
    pub fn to_response(&self, status: StatusCode) -> Response<Bytes> {
        super::json_response(status, self.to_json())
    }
}

/// The error of a non-2xx answer: its kind from the stable code when there is one, else from the
/// OAuth error and the status; the code, OAuth error, status and `Retry-After` kept.
pub(crate) fn parse_error(
    dialect: Dialect,
    status: StatusCode,
    body: &[u8],
    retry_after: Option<Duration>,
    client_id: &str,
) -> Error {
    // 415, and 400 for a malformed request, are what a server of the other dialect answers.
    let hint = |error: Option<&str>| {
        let refused_as_malformed = status == StatusCode::UNSUPPORTED_MEDIA_TYPE
            || (status == StatusCode::BAD_REQUEST
                && matches!(
                    error,
                    None | Some("invalid_request" | "unsupported_grant_type")
                ));
        if refused_as_malformed {
            dialect.mismatch_hint()
        } else {
            String::new()
        }
    };
    let wire = ErrorBody::parse(body);
    let Some(wire) = wire else {
        let kind = if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            ErrorKind::Transient
        } else {
            ErrorKind::Config
        };
        let mut err = Error::new(
            kind,
            format!(
                "the token endpoint answered {status} without an OAuth error: `{}`{}",
                fetch::excerpt(body),
                hint(None)
            ),
        )
        .with_status(status);
        if let Some(after) = retry_after {
            err = err.with_retry_after(after);
        }
        return err;
    };
    let error = wire.error().map(|e| sanitize(e, 60));
    let code = wire.code().or(match error.as_deref() {
        Some("invalid_client") => Some(Code::InvalidClient),
        Some("invalid_scope") => Some(Code::InsufficientScope),
        _ if status == StatusCode::TOO_MANY_REQUESTS => Some(Code::RateLimited),
        _ => None,
    });
    let (kind, fix) = match (code, error.as_deref()) {
        (Some(Code::InvalidClient), _) => (
            ErrorKind::Config,
            format!("check the client id `{client_id}`, its secret or key, and the auth method"),
        ),
        (Some(Code::InsufficientScope), _) => (
            ErrorKind::Config,
            "ask only for scopes this client is allowed".into(),
        ),
        (Some(Code::AccountDisabled), _) => (
            ErrorKind::Config,
            "the service account is disabled (or expired): ask its administrator to enable it"
                .into(),
        ),
        (Some(Code::IpNotAllowed), _) => (
            ErrorKind::Config,
            "this host's address is not among the account's allowed IPs: ask its administrator \
             to add it"
                .into(),
        ),
        (Some(Code::RateLimited), _) => (ErrorKind::Transient, "retrying later".into()),
        (_, Some("unauthorized_client")) => (
            ErrorKind::Config,
            "the client may not use the client credentials grant (disabled, or not allowed from here)".into(),
        ),
        (_, Some("unsupported_grant_type" | "invalid_grant" | "invalid_request" | "invalid_target")) => (
            ErrorKind::Config,
            "the server refused the request as configured".into(),
        ),
        _ if status.is_server_error() || error.as_deref() == Some("temporarily_unavailable") => {
            (ErrorKind::Transient, "retrying".into())
        }
        _ => (ErrorKind::Config, "the server refused the request".into()),
    };
    let description = wire
        .description()
        .map(|d| format!(": {}", sanitize(d, 200)))
        .unwrap_or_default();
    let named = error.as_deref().unwrap_or("(no OAuth error)");
    let mut err = Error::new(
        kind,
        format!(
            "the token endpoint answered {status} `{named}`{description}; {fix}{}",
            hint(error.as_deref())
        ),
    )
    .with_status(status);
    if let Some(error) = error {
        err = err.with_oauth_error(error);
    }
    if let Some(code) = code {
        err = err.with_code(code);
    }
    if let Some(after) = retry_after {
        err = err.with_retry_after(after);
    }
    err
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_the_bytes_of_a_sorted_json_object() {
        let body = ErrorBody::new("invalid_request")
            .with_description("invalid `limit` \"x\"")
            .with_code(Code::InsufficientScope)
            .with_field("limit");
        let by_hand = serde_json::json!({
            "error": "invalid_request",
            "error_description": "invalid `limit` \"x\"",
            "code": "AUTH_102",
            "field": "limit",
        });
        assert_eq!(body.to_json(), by_hand.to_string().into_bytes());
        let bare = ErrorBody::new("invalid_token");
        assert_eq!(bare.to_json(), br#"{"error":"invalid_token"}"#);
        assert_eq!(ErrorBody::parse(&body.to_json()), Some(body));
        // Unknown codes are kept as text; a body with neither member is none.
        let newer = ErrorBody::parse(br#"{"code":"AUTH_199","errorDescription":"d"}"#).unwrap();
        assert_eq!((newer.code(), newer.code_str()), (None, Some("AUTH_199")));
        assert_eq!(newer.description(), Some("d"));
        assert_eq!(ErrorBody::parse(br#"{"error_description":"d"}"#), None);
        assert_eq!(ErrorBody::parse(br#"{"error":5}"#), None);
        assert_eq!(ErrorBody::parse(b"<html>"), None);
    }

    #[test]
    fn error_responses_are_classified() {
        let err = parse_error(
            Dialect::Form,
            StatusCode::UNAUTHORIZED,
            br#"{"error":"invalid_client","error_description":"bad secret"}"#,
            None,
            "svc",
        );
        assert_eq!(err.kind(), ErrorKind::Config);
        assert_eq!(err.code(), Some(Code::InvalidClient));
        assert_eq!(err.oauth_error(), Some("invalid_client"));
        let err = parse_error(
            Dialect::Form,
            StatusCode::SERVICE_UNAVAILABLE,
            b"<html><body><h1>503 Service Unavailable</h1></body></html>",
            Some(Duration::from_secs(5)),
            "svc",
        );
        assert!(err.is_transient());
        assert!(err.message().contains("503 Service Unavailable"), "{err}");
        assert_eq!(err.retry_after(), Some(Duration::from_secs(5)));
        let err = parse_error(
            Dialect::Json,
            StatusCode::FORBIDDEN,
            br#"{"error":"unauthorized_client","code":"AUTH_104"}"#,
            None,
            "svc",
        );
        assert_eq!(err.code(), Some(Code::IpNotAllowed));
        assert_eq!(err.kind(), ErrorKind::Config);
        // A code without an OAuth error still decides.
        let err = parse_error(
            Dialect::Json,
            StatusCode::TOO_MANY_REQUESTS,
            br#"{"code":"AUTH_106"}"#,
            Some(Duration::from_secs(3)),
            "svc",
        );
        assert!(err.is_transient());
        assert_eq!(err.code(), Some(Code::RateLimited));
        assert_eq!(err.oauth_error(), None);
        assert_eq!(err.retry_after(), Some(Duration::from_secs(3)));
    }
}
