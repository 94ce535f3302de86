//! The token endpoint's two dialects, chosen by the request's `Content-Type`:
//!
//! | request | success answer |
//! |---|---|
//! | `application/x-www-form-urlencoded` (RFC 6749 §4.4.2) | `{"access_token", "token_type": "Bearer", "expires_in", "scope"}` (RFC 6749 §5.1) |
//! | `application/json` `{grantType, clientId, clientSecret, scope}` (the seed's Auth Service API) | `{"accessToken", "expiresIn", "tokenType": "Bearer", "scope"}` |
//!
//! Errors are the same in both: `{"error", "error_description", "code"}` (RFC 6749 §5.2 plus
//! the seed's `AUTH_1xx` code), so a client of either dialect reads them without knowing which
//! it spoke.

use axum::{
    Json,
    http::{HeaderMap, header::CONTENT_TYPE},
    response::{IntoResponse, Response},
};
use serde_json::json;

/// How a token request was written, and so how it is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// RFC 6749: a form body, a snake_case answer.
    Form,
    /// The seed's Auth Service API: a JSON body, a camelCase answer.
    Json,
}

impl Dialect {
    /// The dialect of a request's `Content-Type` (parameters such as `charset` ignored);
    /// `None` for any other type.
    pub(crate) fn of(headers: &HeaderMap) -> Option<Dialect> {
        let media_type = headers
            .get(CONTENT_TYPE)?
            .to_str()
            .ok()?
            .split(';')
            .next()
            .unwrap_or_default()
            .trim();
        if media_type.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
            Some(Dialect::Form)
        } else if media_type.eq_ignore_ascii_case("application/json") {
            Some(Dialect::Json)
        } else {
            None
        }
    }

    /// The success answer: a bearer token valid for `expires_in` seconds, granted `scope`.
    pub(crate) fn answer(self, access_token: &str, expires_in: u64, scope: &str) -> Response {
        let body = match self {
            Dialect::Form => json!({
                "access_token": access_token,
                "token_type": "Bearer",
                "expires_in": expires_in,
                "scope": scope,
            }),
            Dialect::Json => json!({
                "accessToken": access_token,
                "expiresIn": expires_in,
                "tokenType": "Bearer",
                "scope": scope,
            }),
        };
        Json(body).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn the_content_type_chooses() {
        let of = |ct: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(ct));
            Dialect::of(&headers)
        };
        assert_eq!(of("application/json"), Some(Dialect::Json));
        assert_eq!(of("Application/JSON; charset=utf-8"), Some(Dialect::Json));
        assert_eq!(
            of("application/x-www-form-urlencoded;charset=UTF-8"),
            Some(Dialect::Form)
        );
        assert_eq!(of("text/plain"), None);
        assert_eq!(Dialect::of(&HeaderMap::new()), None);
    }
}
