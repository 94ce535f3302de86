//! The token endpoint's wire formats, in both [`Dialect`]s: the request body, the token
//! response and the error response. One request builder, one answer parser and one error
//! parser serve both; a dialect only supplies its media type and member names.

use std::{fmt, time::Duration};

use http::{HeaderValue, StatusCode};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::client_credentials::{MAX_EXPIRES_IN, TokenResponse, jwt_lifetime};
use crate::{
    error::{Code, Error, ErrorKind},
    fetch,
    rejection::sanitize,
};

/// How a [`ClientCredentials`](super::ClientCredentials) grant writes its token request and
/// reads the answer.
///
/// | dialect | request | success answer |
/// |---|---|---|
/// | [`Dialect::Form`] (default) | `application/x-www-form-urlencoded`: `grant_type=client_credentials`, `scope`, `audience`, `resource`, client authentication per [`ClientAuth`](super::ClientAuth) (RFC 6749 §4.4.2) | `{"access_token", "token_type", "expires_in", "scope"}` (RFC 6749 §5.1) |
/// | [`Dialect::Json`] | `application/json`: `{"grantType": "client_credentials", "clientId", "clientSecret", "scope": "a b"}` (the Auth Service API of the seed documents) | `{"accessToken", "expiresIn", "tokenType": "Bearer", "scope"}` |
///
/// Errors are read alike in both: `{"error", "error_description", "code": "AUTH_1xx"}`
/// (RFC 6749 §5.2 plus the stable code, which decides the error's kind when present).
///
/// In the JSON dialect, `audience` is the member `"audience"` (a string), RFC 8707 `resource`s
/// the member `"resource"` (a string, or an array of strings for several), and each extra
/// [`param`](super::ClientCredentials::param) a string member of its own name (an array when
/// repeated). The secret travels only as `clientSecret`, so the client must authenticate with
/// [`ClientAuth::SecretPost`](super::ClientAuth::SecretPost): `client_secret_basic` and
/// `private_key_jwt` have no place in that body and are refused when the grant is built into a
/// [`TokenManager`](super::TokenManager) (or fetched), as is an extra parameter that would
/// overwrite one of the dialect's own members.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Dialect {
    /// RFC 6749: a form body, a snake_case answer.
    #[default]
    Form,
    /// The Auth Service JSON dialect: a JSON body, a camelCase answer.
    Json,
}

/// The member names a dialect spells differently.
pub(crate) struct Names {
    pub(crate) grant_type: &'static str,
    pub(crate) client_id: &'static str,
    pub(crate) client_secret: &'static str,
    access_token: &'static str,
    token_type: &'static str,
    expires_in: &'static str,
}

const FORM_NAMES: Names = Names {
    grant_type: "grant_type",
    client_id: "client_id",
    client_secret: "client_secret",
    access_token: "access_token",
    token_type: "token_type",
    expires_in: "expires_in",
};

const JSON_NAMES: Names = Names {
    grant_type: "grantType",
    client_id: "clientId",
    client_secret: "clientSecret",
    access_token: "accessToken",
    token_type: "tokenType",
    expires_in: "expiresIn",
};

impl Dialect {
    /// Its member names.
    pub(crate) fn names(self) -> &'static Names {
        match self {
            Dialect::Form => &FORM_NAMES,
            Dialect::Json => &JSON_NAMES,
        }
    }

    /// The other dialect (for the hint of a mismatch).
    fn other(self) -> Dialect {
        match self {
            Dialect::Form => Dialect::Json,
            Dialect::Json => Dialect::Form,
        }
    }

    /// The media type of its request body.
    pub fn content_type(self) -> &'static str {
        match self {
            Dialect::Form => "application/x-www-form-urlencoded",
            Dialect::Json => "application/json",
        }
    }

    /// The members the dialect itself writes; an extra parameter may not take these names in
    /// the JSON dialect (a JSON object has one value per name).
    pub(crate) fn reserved(self) -> [&'static str; 6] {
        let n = self.names();
        [
            n.grant_type,
            n.client_id,
            n.client_secret,
            "scope",
            "audience",
            "resource",
        ]
    }

    /// The request body of `params` (in order; a repeated name is a repeated form parameter, or
    /// one JSON member holding an array).
    pub(crate) fn encode(self, params: &[(&str, &str)]) -> (HeaderValue, Vec<u8>) {
        let body = match self {
            Dialect::Form => url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(params)
                .finish()
                .into_bytes(),
            Dialect::Json => {
                let mut object = Map::new();
                for (name, value) in params {
                    let value = Value::from(*value);
                    match object.get_mut(*name) {
                        None => {
                            object.insert((*name).to_owned(), value);
                        }
                        Some(Value::Array(values)) => values.push(value),
                        Some(first) => *first = Value::Array(vec![first.take(), value]),
                    }
                }
                serde_json::to_vec(&object).expect("a map of strings serializes")
            }
        };
        (HeaderValue::from_static(self.content_type()), body)
    }

    /// The hint added to a refusal that may come from speaking the wrong dialect.
    fn mismatch_hint(self) -> String {
        let other = self.other();
        format!(
            " (this grant speaks the {self} dialect, `Content-Type: {}`; if the token endpoint \
             takes the {other} dialect, set `ClientCredentials::dialect(Dialect::{other:?})`)",
            self.content_type()
        )
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dialect::Form => "RFC 6749 form",
            Dialect::Json => "Auth Service JSON",
        })
    }
}

/// `expires_in` as a number of seconds, or a string of one (some servers send that); `null`
/// counts as absent. Negative or non-numeric values are an error; huge ones are lowered to
/// [`MAX_EXPIRES_IN`].
fn parse_expires_in(value: Option<&Value>, name: &str) -> Result<Option<Duration>, Error> {
    let seconds = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
        Some(_) => None,
    };
    match seconds {
        Some(s) if s.is_finite() && s >= 0.0 => Ok(Some(
            Duration::try_from_secs_f64(s)
                .unwrap_or(MAX_EXPIRES_IN)
                .min(MAX_EXPIRES_IN),
        )),
        _ => Err(Error::transient(format!(
            "the token endpoint answered an `{name}` that is not a non-negative number of \
             seconds; the token is not used"
        ))),
    }
}

/// A 2xx body that is not a token response: never quoted, since it may hold a token.
fn not_a_token_response(what: impl fmt::Display) -> Error {
    Error::transient(format!(
        "the token endpoint answered 2xx with a body that is {what}; the body is not shown: it \
         may hold a token"
    ))
}

/// Reads a token response (a 2xx body) in `dialect`.
pub(crate) fn parse_success(dialect: Dialect, body: &[u8]) -> Result<TokenResponse, Error> {
    let names = dialect.names();
    // serde's syntax errors are fixed texts ("EOF while parsing a list at line 1 column 33");
    // its data errors may quote a value, so only their position is given.
    let object: Map<String, Value> =
        serde_json::from_slice(body).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => not_a_token_response(format_args!(
                "JSON but not an object (at line {} column {})",
                e.line(),
                e.column()
            )),
            _ => not_a_token_response(format_args!("not JSON ({e})")),
        })?;
    let Some(Value::String(access_token)) = object.get(names.access_token) else {
        let other = dialect.other();
        let hint = if object.contains_key(other.names().access_token) {
            format!(
                ": it has `{}`, the {other} dialect's member, so the server answers in that \
                 dialect{}",
                other.names().access_token,
                dialect.mismatch_hint()
            )
        } else {
            String::new()
        };
        return Err(not_a_token_response(format_args!(
            "a JSON object without a string `{}` member{hint}",
            names.access_token
        )));
    };
    if access_token.is_empty() {
        return Err(Error::transient(format!(
            "the token endpoint returned an empty `{}`",
            names.access_token
        )));
    }
    let token_type = match object.get(names.token_type) {
        Some(Value::String(t)) => t.as_str(),
        _ => {
            return Err(not_a_token_response(format_args!(
                "a JSON object without a string `{}` member",
                names.token_type
            )));
        }
    };
    if !token_type.eq_ignore_ascii_case("bearer") {
        return Err(Error::config(format!(
            "the token endpoint issued a `{}` token; only Bearer tokens are supported",
            sanitize(token_type, 40)
        )));
    }
    let scope = match object.get("scope") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            return Err(not_a_token_response(
                "a JSON object whose `scope` is not a string",
            ));
        }
    };
    let expires_in = parse_expires_in(object.get(names.expires_in), names.expires_in)?
        .or_else(|| jwt_lifetime(access_token));
    Ok(TokenResponse {
        access_token: access_token.clone().into(),
        expires_in,
        scope,
    })
}

/// An error response (RFC 6749 §5.2 plus the stable code); both dialects write it alike.
#[derive(Deserialize)]
struct WireError {
    #[serde(default)]
    error: Option<String>,
    #[serde(default, alias = "errorDescription")]
    error_description: Option<String>,
    #[serde(default)]
    code: Option<String>,
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
    let wire = serde_json::from_slice::<WireError>(body)
        .ok()
        .filter(|w| w.error.is_some() || w.code.is_some());
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
    let error = wire.error.as_deref().map(|e| sanitize(e, 60));
    let code = wire
        .code
        .as_deref()
        .and_then(Code::from_code_str)
        .or(match error.as_deref() {
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
        .error_description
        .as_deref()
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
    fn json_bodies_group_repeated_names() {
        let (content_type, body) = Dialect::Json.encode(&[
            ("grantType", "client_credentials"),
            ("resource", "https://a"),
            ("resource", "https://b"),
            ("resource", "https://c"),
            ("scope", "a b"),
        ]);
        assert_eq!(content_type, "application/json");
        let value: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "grantType": "client_credentials",
                "resource": ["https://a", "https://b", "https://c"],
                "scope": "a b",
            })
        );
        let (content_type, body) = Dialect::Form.encode(&[("scope", "a b"), ("x", "é&")]);
        assert_eq!(content_type, "application/x-www-form-urlencoded");
        assert_eq!(body, b"scope=a+b&x=%C3%A9%26");
    }

    #[test]
    fn token_responses() {
        let ok = parse_success(
            Dialect::Form,
            br#"{"access_token":"abc","token_type":"bearer","expires_in":"3600","scope":"a b"}"#,
        )
        .unwrap();
        assert_eq!(ok.expires_in, Some(Duration::from_secs(3600)));
        assert_eq!(ok.scope.as_deref(), Some("a b"));
        assert!(!format!("{ok:?}").contains("abc"));
        let ok = parse_success(
            Dialect::Json,
            br#"{"accessToken":"abc","tokenType":"Bearer","expiresIn":1800,"scope":"a b"}"#,
        )
        .unwrap();
        assert_eq!(ok.expires_in, Some(Duration::from_secs(1800)));
        let err = parse_success(
            Dialect::Form,
            br#"{"access_token":"abc","token_type":"DPoP","expires_in":1}"#,
        )
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        let err = parse_success(Dialect::Form, br#"{"access_token":"secret-token"}"#).unwrap_err();
        assert!(!err.to_string().contains("secret-token"), "{err}");
        // The other dialect's answer is named, never quoted.
        let err = parse_success(
            Dialect::Json,
            br#"{"access_token":"secret-token","token_type":"Bearer"}"#,
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("`access_token`"), "{text}");
        assert!(text.contains("Dialect::Form"), "{text}");
        assert!(!text.contains("secret-token"), "{text}");
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
