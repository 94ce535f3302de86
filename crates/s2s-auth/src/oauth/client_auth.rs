//! `client_secret_basic` (RFC 6749 §2.3.1): the client id and secret in an HTTP Basic
//! `Authorization` header, each form-urlencoded first.

use base64::{Engine as _, engine::general_purpose::STANDARD};
use http::{HeaderValue, StatusCode};
use secrecy::SecretString;

use crate::error::{Code, Error, ErrorKind};

/// The `Authorization` value of `client_secret_basic`:
/// `Basic base64(urlencode(client_id) ":" urlencode(secret))`, marked sensitive.
///
/// ```
/// use s2s_auth::oauth::{client_secret_basic, parse_client_secret_basic};
/// use secrecy::ExposeSecret as _;
///
/// let header = client_secret_basic("my client", "p:ss");
/// assert!(header.is_sensitive());
/// let (id, secret) = parse_client_secret_basic(&header).unwrap();
/// assert_eq!((id.as_str(), secret.expose_secret()), ("my client", "p:ss"));
/// ```
pub fn client_secret_basic(client_id: &str, secret: &str) -> HeaderValue {
    let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let credentials = STANDARD.encode(format!("{}:{}", encode(client_id), encode(secret)));
    let mut value = HeaderValue::try_from(format!("Basic {credentials}"))
        .expect("base64 is a valid header value");
    value.set_sensitive(true);
    value
}

/// Reads a `client_secret_basic` header: (client id, secret). Fails, with a
/// [`ErrorKind::Rejected`] error for a 401 `invalid_client` whose message says what is wrong
/// (never quoting the header), for another scheme or malformed credentials.
pub fn parse_client_secret_basic(value: &HeaderValue) -> Result<(String, SecretString), Error> {
    let bad = |why: &'static str| {
        Error::new(ErrorKind::Rejected, why)
            .with_status(StatusCode::UNAUTHORIZED)
            .with_oauth_error("invalid_client")
            .with_code(Code::InvalidClient)
    };
    let text = value
        .to_str()
        .map_err(|_| bad("the Authorization header is not ASCII"))?;
    let (scheme, credentials) = text.trim().split_once(' ').unwrap_or((text, ""));
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(bad(
            "client authentication must use HTTP Basic or client_secret_post",
        ));
    }
    let decoded = STANDARD
        .decode(credentials.trim())
        .map_err(|_| bad("the Basic credentials are not base64"))?;
    let decoded =
        String::from_utf8(decoded).map_err(|_| bad("the Basic credentials are not UTF-8"))?;
    let (id, secret) = decoded
        .split_once(':')
        .ok_or_else(|| bad("the Basic credentials have no `:`"))?;
    let id = form_decode(id).ok_or_else(|| bad("the client id is not UTF-8 once decoded"))?;
    let secret =
        form_decode(secret).ok_or_else(|| bad("the client secret is not UTF-8 once decoded"))?;
    Ok((id, secret.into()))
}

/// Decodes `application/x-www-form-urlencoded` text (`+` is a space, `%XX` a byte); a `%` not
/// followed by two hex digits stays as it is.
fn form_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret as _;

    use super::*;

    #[test]
    fn form_decoding() {
        assert_eq!(form_decode("a+b%3Ac%25").as_deref(), Some("a b:c%"));
        assert_eq!(form_decode("100%").as_deref(), Some("100%"));
        assert_eq!(form_decode("%zz%4").as_deref(), Some("%zz%4"));
        assert_eq!(form_decode("%ff"), None);
    }

    #[test]
    fn basic_credentials_are_form_encoded_first() {
        let value = client_secret_basic("my client", "p:a%s+s é");
        let b64 = value.to_str().unwrap().strip_prefix("Basic ").unwrap();
        let decoded = String::from_utf8(STANDARD.decode(b64).unwrap()).unwrap();
        assert_eq!(decoded, "my+client:p%3Aa%25s%2Bs+%C3%A9");
        assert!(value.is_sensitive());
        let (id, secret) = parse_client_secret_basic(&value).unwrap();
        assert_eq!(
            (id.as_str(), secret.expose_secret()),
            ("my client", "p:a%s+s é")
        );
    }

    #[test]
    fn basic_credentials_are_decoded() {
        let header = |id: &str, secret: &str| {
            HeaderValue::try_from(format!(
                "Basic {}",
                STANDARD.encode(format!("{id}:{secret}"))
            ))
            .unwrap()
        };
        let (id, secret) = parse_client_secret_basic(&header("my%20id", "s%3Acret+x")).unwrap();
        assert_eq!((id.as_str(), secret.expose_secret()), ("my id", "s:cret x"));
        let err = parse_client_secret_basic(&HeaderValue::from_static("Bearer x")).unwrap_err();
        assert_eq!(err.oauth_error(), Some("invalid_client"));
        assert!(parse_client_secret_basic(&HeaderValue::from_static("Basic !!!")).is_err());
        let no_colon = HeaderValue::try_from(format!("Basic {}", STANDARD.encode("abc"))).unwrap();
        assert!(parse_client_secret_basic(&no_colon).is_err());
    }
}
