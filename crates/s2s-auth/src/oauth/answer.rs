//! The token endpoint's success answer (RFC 6749 §5.1, or the Auth Service JSON dialect's
//! camelCase spelling): [`TokenAnswer`] writes it, the client reads it.

use std::{fmt, time::Duration};

use bytes::Bytes;
use http::{Response, StatusCode};
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::{Map, Value};

use super::Dialect;
use crate::{
    error::Error,
    rejection::sanitize,
    token::{MAX_EXPIRES_IN, TokenResponse, jwt_lifetime},
};

/// A token endpoint's success answer, as a server writes it: a bearer token, its lifetime in
/// seconds and the scopes granted.
///
/// ```
/// use s2s_auth::oauth::{Dialect, TokenAnswer};
///
/// let answer = TokenAnswer::bearer("eyJ…").expires_in(300).scope("orders:read");
/// assert_eq!(
///     String::from_utf8(answer.to_json(Dialect::Form)).unwrap(),
///     r#"{"access_token":"eyJ…","expires_in":300,"scope":"orders:read","token_type":"Bearer"}"#
/// );
/// assert_eq!(
///     String::from_utf8(answer.to_json(Dialect::Json)).unwrap(),
///     r#"{"accessToken":"eyJ…","expiresIn":300,"scope":"orders:read","tokenType":"Bearer"}"#
/// );
/// ```
///
/// `Debug` never shows the token.
#[derive(Clone, Debug)]
pub struct TokenAnswer {
    access_token: SecretString,
    expires_in: Option<u64>,
    scope: Option<String>,
}

impl TokenAnswer {
    /// An answer carrying `access_token` as a `Bearer` token, with no lifetime and no scope.
    pub fn bearer(access_token: impl Into<String>) -> Self {
        TokenAnswer {
            access_token: SecretString::from(access_token.into()),
            expires_in: None,
            scope: None,
        }
    }

    /// Sets `expires_in`, in seconds.
    pub fn expires_in(mut self, seconds: u64) -> Self {
        self.expires_in = Some(seconds);
        self
    }

    /// Sets the granted `scope` (space-delimited; written even when empty).
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// The JSON body in `dialect`'s member names (members in lexicographic order).
    pub fn to_json(&self, dialect: Dialect) -> Vec<u8> {
        let names = dialect.names();
        let mut object = Map::new();
        object.insert(
            names.access_token.into(),
            self.access_token.expose_secret().into(),
        );
        object.insert(names.token_type.into(), "Bearer".into());
        if let Some(seconds) = self.expires_in {
            object.insert(names.expires_in.into(), seconds.into());
        }
        if let Some(scope) = &self.scope {
            object.insert("scope".into(), scope.as_str().into());
        }
        serde_json::to_vec(&object).expect("a map of strings and numbers serializes")
    }

    /// The whole answer: 200, `Content-Type: application/json`, `Cache-Control: no-store`.
    pub fn to_response(&self, dialect: Dialect) -> Response<Bytes> {
        super::json_response(StatusCode::OK, self.to_json(dialect))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn answers_read_back_in_both_dialects() {
        let answer = TokenAnswer::bearer("abc").expires_in(60).scope("a b");
        for dialect in [Dialect::Form, Dialect::Json] {
            let read = parse_success(dialect, &answer.to_json(dialect)).unwrap();
            assert_eq!(read.expires_in, Some(Duration::from_secs(60)));
            assert_eq!(read.scope.as_deref(), Some("a b"));
            assert_eq!(read.access_token.expose_secret(), "abc");
        }
        let response = answer.to_response(Dialect::Form);
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "application/json");
        assert_eq!(response.headers()["cache-control"], "no-store");
        assert!(!format!("{answer:?}").contains("abc"));
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
}
