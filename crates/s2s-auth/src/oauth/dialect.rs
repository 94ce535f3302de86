//! [`Dialect`]: the two ways of writing a token request and its answer, and what tells them
//! apart on the wire (the request's `Content-Type`).

use std::fmt;

use http::{HeaderMap, HeaderValue, header::CONTENT_TYPE};
use serde_json::{Map, Value};

/// How a [`ClientCredentials`](crate::token::ClientCredentials) grant writes its token request and
/// reads the answer.
///
/// | dialect | request | success answer |
/// |---|---|---|
/// | [`Dialect::Form`] (default) | `application/x-www-form-urlencoded`: `grant_type=client_credentials`, `scope`, `audience`, `resource`, client authentication per [`ClientAuth`](crate::token::ClientAuth) (RFC 6749 §4.4.2) | `{"access_token", "token_type", "expires_in", "scope"}` (RFC 6749 §5.1) |
/// | [`Dialect::Json`] | `application/json`: `{"grantType": "client_credentials", "clientId", "clientSecret", "scope": "a b"}` (the Auth Service API of the seed documents) | `{"accessToken", "expiresIn", "tokenType": "Bearer", "scope"}` |
///
/// Errors are read alike in both: `{"error", "error_description", "code": "AUTH_1xx"}`
/// (RFC 6749 §5.2 plus the stable code, which decides the error's kind when present).
///
/// In the JSON dialect, `audience` is the member `"audience"` (a string), RFC 8707 `resource`s
/// the member `"resource"` (a string, or an array of strings for several), and each extra
/// [`param`](crate::token::ClientCredentials::param) a string member of its own name (an array when
/// repeated). The secret travels only as `clientSecret`, so the client must authenticate with
/// [`ClientAuth::SecretPost`](crate::token::ClientAuth::SecretPost): `client_secret_basic` and
/// `private_key_jwt` have no place in that body and are refused when the grant is built into a
/// [`TokenManager`](crate::token::TokenManager) (or fetched), as is an extra parameter that would
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
    pub(crate) access_token: &'static str,
    pub(crate) token_type: &'static str,
    pub(crate) expires_in: &'static str,
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
    pub(crate) fn other(self) -> Dialect {
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

    /// The dialect of a request, from its `Content-Type` (parameters such as `charset` ignored,
    /// the media type compared case-insensitively); `None` for any other type, or none.
    ///
    /// ```
    /// use http::{HeaderMap, HeaderValue, header::CONTENT_TYPE};
    /// use s2s_auth::oauth::Dialect;
    ///
    /// let mut headers = HeaderMap::new();
    /// headers.insert(CONTENT_TYPE, HeaderValue::from_static("Application/JSON; charset=utf-8"));
    /// assert_eq!(Dialect::from_headers(&headers), Some(Dialect::Json));
    /// ```
    pub fn from_headers(headers: &HeaderMap) -> Option<Dialect> {
        let media_type = headers
            .get(CONTENT_TYPE)?
            .to_str()
            .ok()?
            .split(';')
            .next()
            .unwrap_or_default()
            .trim();
        [Dialect::Form, Dialect::Json]
            .into_iter()
            .find(|d| media_type.eq_ignore_ascii_case(d.content_type()))
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
    pub(crate) fn mismatch_hint(self) -> String {
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
    fn the_content_type_chooses() {
        let of = |ct: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(ct));
            Dialect::from_headers(&headers)
        };
        assert_eq!(of("application/json"), Some(Dialect::Json));
        assert_eq!(of("Application/JSON; charset=utf-8"), Some(Dialect::Json));
        assert_eq!(
            of("application/x-www-form-urlencoded;charset=UTF-8"),
            Some(Dialect::Form)
        );
        assert_eq!(of("text/plain"), None);
        assert_eq!(of("application/jsonx"), None);
        assert_eq!(Dialect::from_headers(&HeaderMap::new()), None);
    }
}
