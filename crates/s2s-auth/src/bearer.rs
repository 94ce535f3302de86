//! [`BearerToken`]: the raw token of a request, kept for propagation.

use std::fmt;

use http::{HeaderMap, HeaderValue, header::AUTHORIZATION};

use crate::rejection::{Reason, Rejection};

/// The `b64token` characters of RFC 6750 §2.1 (the `=` padding is checked apart).
const B64TOKEN: [bool; 256] = {
    let mut table = [false; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        table[i] =
            c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
        i += 1;
    }
    table
};

/// The raw bearer token a request carried, as `VerifyLayer` found it in `Authorization`.
///
/// It is stored in request extensions next to the verified claims so that a service can send the
/// caller's own token on an outbound call made on its behalf. Holding the header value (a
/// reference-counted buffer) makes the copy free; `Debug` never shows the token.
#[derive(Clone)]
pub struct BearerToken {
    header: HeaderValue,
    start: usize,
}

impl BearerToken {
    /// Parses `Authorization: Bearer <token>` (scheme case-insensitive, one space or more).
    ///
    /// Returns `None` when the value is not a Bearer credential with a non-empty token made of
    /// the RFC 6750 `b64token` characters.
    pub fn from_header(header: &HeaderValue) -> Option<Self> {
        let bytes = header.as_bytes();
        if bytes.len() < 7 || !bytes[..6].eq_ignore_ascii_case(b"bearer") || bytes[6] != b' ' {
            return None;
        }
        let start = 7 + bytes[7..].iter().take_while(|b| **b == b' ').count();
        let token = &bytes[start..];
        // One pass with a table: this runs on every request, over tokens of about 1 KB.
        let body_len = token
            .iter()
            .position(|b| !B64TOKEN[usize::from(*b)])
            .unwrap_or(token.len());
        if body_len == 0 || !token[body_len..].iter().all(|b| *b == b'=') {
            return None;
        }
        Some(BearerToken {
            header: header.clone(),
            start,
        })
    }

    /// The bearer token of a request.
    ///
    /// `Ok(None)` when there is no `Authorization` header or it uses another scheme (such as
    /// `Basic`); an error when there are several `Authorization` headers, or a `Bearer` one that
    /// is not `Bearer <token>` (an empty token, a tab, a space inside the token).
    pub fn from_headers(headers: &HeaderMap) -> Result<Option<Self>, Rejection> {
        let mut values = headers.get_all(AUTHORIZATION).iter();
        let Some(value) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(Rejection::new(
                Reason::MalformedHeader,
                "the request has several Authorization headers: send exactly one",
            ));
        }
        let bytes = value.as_bytes();
        let scheme_end = bytes
            .iter()
            .position(|b| *b == b' ' || *b == b'\t')
            .unwrap_or(bytes.len());
        if !bytes[..scheme_end].eq_ignore_ascii_case(b"bearer") {
            return Ok(None);
        }
        Self::from_header(value).map(Some).ok_or_else(|| {
            Rejection::new(
                Reason::MalformedHeader,
                "the Authorization header must be `Bearer <token>`: the scheme, spaces, then one \
                 token of base64url characters",
            )
        })
    }

    /// The token itself, without the `Bearer ` prefix. Treat it as a secret.
    pub fn as_str(&self) -> &str {
        // Only ASCII was accepted in `from_header`.
        std::str::from_utf8(&self.header.as_bytes()[self.start..]).unwrap_or_default()
    }

    /// The whole `Authorization` header value (`Bearer <token>`), marked sensitive, to put on an
    /// outbound request.
    pub fn header_value(&self) -> HeaderValue {
        let mut value = self.header.clone();
        value.set_sensitive(true);
        value
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Option<String> {
        BearerToken::from_header(&HeaderValue::from_str(s).unwrap()).map(|t| t.as_str().to_owned())
    }

    #[test]
    fn parses_bearer_credentials() {
        assert_eq!(
            parse("Bearer abc.def-_.x~+/=="),
            Some("abc.def-_.x~+/==".into())
        );
        assert_eq!(parse("bearer abc"), Some("abc".into()));
        assert_eq!(parse("BEARER   abc"), Some("abc".into()));
        assert_eq!(parse("Bearer "), None);
        assert_eq!(parse("Bearer"), None);
        assert_eq!(parse("Basic dXNlcjpwYXNz"), None);
        assert_eq!(parse("Bearer a b"), None);
        assert_eq!(parse("Bearer\tabc"), None);
        assert_eq!(parse("Bearer a=b"), None);
        assert_eq!(parse("Bearerabc"), None);
    }

    #[test]
    fn one_bearer_header_or_none() {
        let mut headers = HeaderMap::new();
        assert!(BearerToken::from_headers(&headers).unwrap().is_none());
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_static("Basic dXNlcjpwYXNz"),
        );
        assert!(BearerToken::from_headers(&headers).unwrap().is_none());
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer\tabc"));
        assert!(BearerToken::from_headers(&headers).is_err());
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert!(BearerToken::from_headers(&headers).is_err());
        headers.insert(AUTHORIZATION, HeaderValue::from_static("bearer abc"));
        assert_eq!(
            BearerToken::from_headers(&headers)
                .unwrap()
                .unwrap()
                .as_str(),
            "abc"
        );
        headers.append(AUTHORIZATION, HeaderValue::from_static("Bearer def"));
        let err = BearerToken::from_headers(&headers).unwrap_err();
        assert_eq!(err.reason(), Reason::MalformedHeader);
    }

    #[test]
    fn debug_redacts() {
        let t = BearerToken::from_header(&HeaderValue::from_static("Bearer secret")).unwrap();
        assert_eq!(format!("{t:?}"), "BearerToken([redacted])");
        assert!(t.header_value().is_sensitive());
    }
}
