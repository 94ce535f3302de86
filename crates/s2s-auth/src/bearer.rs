//! [`BearerToken`]: one bearer token, as an `Authorization: Bearer …` value: the token an
//! inbound request carried, or one a [`TokenSource`](crate::token::TokenSource) hands out.
//!
//! ```
//! use http::{HeaderMap, HeaderValue, header::AUTHORIZATION};
//! use s2s_auth::BearerToken;
//!
//! let mut headers = HeaderMap::new();
//! headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer eyJhbGciOi.x.y"));
//! let token = BearerToken::from_headers(&headers)?.expect("a bearer token");
//! assert_eq!(token.as_str(), "eyJhbGciOi.x.y");
//! assert!(token.header_value().is_sensitive());
//! assert_eq!(format!("{token:?}"), "BearerToken([redacted])");
//!
//! let own = BearerToken::new("abc")?; // one a token endpoint returned
//! assert_eq!(own.header_value(), "Bearer abc");
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! ```

use std::fmt;

use http::{HeaderMap, HeaderValue, header::AUTHORIZATION};

use crate::{
    error::Error,
    rejection::{Reason, Rejection},
};

/// Whether `c` is a `b64token` character of RFC 6750 §2.1 (the `=` padding is checked apart).
/// Branch-free, so that the scan of a whole token compiles to vector instructions.
#[inline(always)]
fn is_b64token(c: u8) -> bool {
    let letter = (c | 0x20).wrapping_sub(b'a') < 26;
    let digit = c.wrapping_sub(b'0') < 10;
    letter
        | digit
        | (c == b'-')
        | (c == b'.')
        | (c == b'_')
        | (c == b'~')
        | (c == b'+')
        | (c == b'/')
}

/// The length of the leading run of `b64token` characters of `bytes`: whole blocks of 32 are
/// checked at once (a token of about 1 KB is some 30 vector steps), the first block with
/// another character byte by byte.
fn b64token_prefix(bytes: &[u8]) -> usize {
    const BLOCK: usize = 32;
    let mut checked = 0;
    for block in bytes.chunks_exact(BLOCK) {
        if !block.iter().fold(true, |all, c| all & is_b64token(*c)) {
            break;
        }
        checked += BLOCK;
    }
    checked
        + bytes[checked..]
            .iter()
            .position(|c| !is_b64token(*c))
            .unwrap_or(bytes.len() - checked)
}

/// Where the token starts in a value of the Bearer scheme: after `Bearer` (in any case) and
/// one space or more.
fn token_start(value: &[u8]) -> Option<usize> {
    if value.len() < 7 || !value[..6].eq_ignore_ascii_case(b"bearer") || value[6] != b' ' {
        return None;
    }
    Some(7 + value[7..].iter().take_while(|b| **b == b' ').count())
}

/// The request's `Authorization` header, if it has one; refused when it has several.
fn lone_authorization(headers: &HeaderMap) -> Result<Option<&HeaderValue>, Rejection> {
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
    Ok(Some(value))
}

/// A bearer token, held as its `Authorization` header value (marked sensitive).
///
/// Inbound, `VerifyLayer` stores the token a request carried in the request extensions, next to
/// the verified claims, so that a service can send the caller's own token on an outbound call
/// made on its behalf. Outbound, a [`TokenSource`](crate::token::TokenSource) hands tokens out
/// as this type, and the layers put [`BearerToken::header_value`] on requests. Holding the header
/// value (a reference-counted buffer) makes clones free; `Debug` never shows the token.
#[derive(Clone)]
pub struct BearerToken {
    header: HeaderValue,
    start: usize,
}

impl BearerToken {
    /// A bearer token from its text (as a token endpoint returned it). Fails when it cannot be
    /// a header value.
    pub fn new(token: &str) -> Result<Self, Error> {
        let mut header = HeaderValue::try_from(format!("Bearer {token}"))
            .map_err(|_| Error::config("the access token has characters a header cannot carry"))?;
        header.set_sensitive(true);
        Ok(BearerToken {
            header,
            start: "Bearer ".len(),
        })
    }

    /// Parses `Authorization: Bearer <token>` (scheme case-insensitive, one space or more).
    ///
    /// Returns `None` when the value is not a Bearer credential with a non-empty token made of
    /// the RFC 6750 `b64token` characters.
    pub fn from_header(header: &HeaderValue) -> Option<Self> {
        let start = token_start(header.as_bytes())?;
        let token = &header.as_bytes()[start..];
        // This runs on every request but cache hits, over tokens of about 1 KB.
        let body_len = b64token_prefix(token);
        if body_len == 0 || !token[body_len..].iter().all(|b| *b == b'=') {
            return None;
        }
        Some(Self::checked(header, start))
    }

    /// The token of `header` from `start`, whose characters were checked already.
    fn checked(header: &HeaderValue, start: usize) -> Self {
        let mut header = header.clone();
        header.set_sensitive(true);
        BearerToken { header, start }
    }

    /// The token of the request's lone `Authorization: Bearer` header when `known` says it
    /// is a token that passed [`BearerToken::from_header`] before, byte for byte (the cache of
    /// recent tokens): then its characters are not scanned again. `None` otherwise, when
    /// [`BearerToken::from_headers`] decides (and answers a malformed header as always).
    pub(crate) fn known<T>(
        headers: &HeaderMap,
        known: impl FnOnce(&[u8]) -> Option<T>,
    ) -> Option<(Self, T)> {
        let value = lone_authorization(headers).ok()??;
        let start = token_start(value.as_bytes())?;
        let found = known(&value.as_bytes()[start..])?;
        Some((Self::checked(value, start), found))
    }

    /// The bearer token of a request.
    ///
    /// `Ok(None)` when there is no `Authorization` header or it uses another scheme (such as
    /// `Basic`); an error when there are several `Authorization` headers, or a `Bearer` one that
    /// is not `Bearer <token>` (an empty token, a tab, a space inside the token).
    pub fn from_headers(headers: &HeaderMap) -> Result<Option<Self>, Rejection> {
        let Some(value) = lone_authorization(headers)? else {
            return Ok(None);
        };
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
        // Only ASCII was accepted in `from_header`; `new` took a `&str`.
        std::str::from_utf8(&self.header.as_bytes()[self.start..]).unwrap_or_default()
    }

    /// The token itself: [`BearerToken::as_str`].
    #[deprecated(note = "use `as_str` (AccessToken and BearerToken are one type now)")]
    pub fn secret(&self) -> &str {
        self.as_str()
    }

    /// The whole `Authorization` header value (`Bearer <token>`), marked sensitive, to put on an
    /// outbound request.
    pub fn header_value(&self) -> &HeaderValue {
        &self.header
    }

    /// Whether both are the very same token instance, or clones of it (not merely equal text):
    /// how a token source tells whether the token a callee refused is still the one it holds.
    pub fn same_as(&self, other: &BearerToken) -> bool {
        // Clones share the header's buffer; two tokens made apart never do.
        let (a, b) = (self.header.as_bytes(), other.header.as_bytes());
        std::ptr::eq(a, b)
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
    fn b64token_characters_are_those_of_rfc_6750() {
        for c in 0..=255u8 {
            let expected =
                c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
            assert_eq!(is_b64token(c), expected, "byte {c:#04x}");
        }
        // Every position of a long token, inside and across the 32-byte blocks.
        let long = "a".repeat(100);
        assert_eq!(b64token_prefix(long.as_bytes()), 100);
        for at in 0..100 {
            let mut bytes = long.clone().into_bytes();
            bytes[at] = b'!';
            assert_eq!(b64token_prefix(&bytes), at);
            bytes[at] = b'=';
            assert_eq!(b64token_prefix(&bytes), at);
        }
        assert_eq!(b64token_prefix(b""), 0);
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
        let t = BearerToken::new("secret").unwrap();
        assert_eq!(format!("{t:?}"), "BearerToken([redacted])");
        assert!(t.header_value().is_sensitive());
    }

    #[test]
    fn tokens_from_text() {
        let t = BearerToken::new("abc.def").unwrap();
        assert_eq!(t.as_str(), "abc.def");
        assert_eq!(t.header_value(), "Bearer abc.def");
        assert!(BearerToken::new("line\nbreak").is_err());
    }

    #[test]
    fn same_as_is_identity_not_equality() {
        let a = BearerToken::new("abc").unwrap();
        let b = BearerToken::new("abc").unwrap();
        assert!(a.same_as(&a.clone()));
        assert!(!a.same_as(&b));
        let header = HeaderValue::from_str("Bearer abc").unwrap();
        let c = BearerToken::from_header(&header).unwrap();
        assert!(c.same_as(&c.clone()));
        assert!(!c.same_as(&a));
    }
}
