//! Request paths as routes see them.
//!
//! A route must decide on the same path the upstream will act on, or a request could pick a
//! lenient route and land on a strict one's handler. So the path is normalized first (RFC 3986
//! §6.2.2: percent-encoded unreserved characters decoded, other escapes in upper case), and
//! paths that upstreams resolve in different ways are refused outright: dot segments (`.`, `..`,
//! also when percent-encoded) and encoded or literal backslashes and encoded slashes. The
//! normalized path is the one forwarded.

use std::{borrow::Cow, fmt};

/// Why a request path is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PathError {
    NotAbsolute,
    BadEscape,
    EncodedSeparator,
    Backslash,
    DotSegment,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::NotAbsolute => "the path must start with `/`",
            PathError::BadEscape => "a `%` must be followed by two hex digits",
            PathError::EncodedSeparator => "encoded `/` or `\\` (%2F, %5C) are not accepted",
            PathError::Backslash => "`\\` is not accepted in paths",
            PathError::DotSegment => "`.` and `..` segments are not accepted",
        })
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// The normal form of `path`, or why it is refused. Borrows when the path is already normal
/// (the common case costs one scan).
pub(crate) fn normalize(path: &str) -> Result<Cow<'_, str>, PathError> {
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    let bytes = path.as_bytes();
    let mut out: Option<Vec<u8>> = None;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'%' => {
                let (Some(hi), Some(lo)) = (
                    bytes.get(i + 1).copied().and_then(hex),
                    bytes.get(i + 2).copied().and_then(hex),
                ) else {
                    return Err(PathError::BadEscape);
                };
                let value = hi << 4 | lo;
                if value == b'/' || value == b'\\' {
                    return Err(PathError::EncodedSeparator);
                }
                let escape = &bytes[i..i + 3];
                if is_unreserved(value) {
                    out.get_or_insert_with(|| bytes[..i].to_vec()).push(value);
                } else if escape[1..].iter().any(u8::is_ascii_lowercase) {
                    let o = out.get_or_insert_with(|| bytes[..i].to_vec());
                    o.push(b'%');
                    o.extend(escape[1..].iter().map(u8::to_ascii_uppercase));
                } else if let Some(o) = &mut out {
                    o.extend_from_slice(escape);
                }
                i += 3;
            }
            b'\\' => return Err(PathError::Backslash),
            _ => {
                if let Some(o) = &mut out {
                    o.push(b);
                }
                i += 1;
            }
        }
    }
    let normal: Cow<'_, str> = match out {
        // Only ASCII bytes were changed, and only whole escapes: still UTF-8 where the input
        // was (and the input is a &str).
        Some(o) => Cow::Owned(String::from_utf8(o).map_err(|_| PathError::BadEscape)?),
        None => Cow::Borrowed(path),
    };
    if normal.split('/').any(|s| s == "." || s == "..") {
        return Err(PathError::DotSegment);
    }
    Ok(normal)
}

/// Whether `prefix` covers `path` on whole segments: `/orders` covers `/orders` and
/// `/orders/1`, not `/ordersx`.
pub(crate) fn matches_prefix(path: &str, prefix: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    path.starts_with(prefix)
        && (path.len() == prefix.len()
            || prefix.ends_with('/')
            || path.as_bytes()[prefix.len()] == b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_paths_are_borrowed() {
        assert!(matches!(
            normalize("/orders/1"),
            Ok(Cow::Borrowed("/orders/1"))
        ));
        assert!(matches!(normalize("/a%20b"), Ok(Cow::Borrowed("/a%20b"))));
    }

    #[test]
    fn unreserved_escapes_are_decoded_others_upper_cased() {
        assert_eq!(normalize("/%61dmin").unwrap(), "/admin");
        assert_eq!(normalize("/a%7eb%2dc").unwrap(), "/a~b-c");
        assert_eq!(normalize("/a%3fb%c3%a9").unwrap(), "/a%3Fb%C3%A9");
    }

    #[test]
    fn ambiguous_paths_are_refused() {
        use PathError::*;
        for (path, error) in [
            ("orders", NotAbsolute),
            ("*", NotAbsolute),
            ("/a/../admin", DotSegment),
            ("/a/./b", DotSegment),
            ("/..", DotSegment),
            ("/a/%2e%2e/admin", DotSegment),
            ("/a/.%2E", DotSegment),
            ("/public%2f..%2fadmin", EncodedSeparator),
            ("/a%5cb", EncodedSeparator),
            ("/a\\..\\b", Backslash),
            ("/a%zz", BadEscape),
            ("/a%4", BadEscape),
        ] {
            assert_eq!(normalize(path), Err(error), "{path}");
        }
        // Dots inside a segment are fine.
        assert_eq!(normalize("/a/..b/.c").unwrap(), "/a/..b/.c");
    }

    #[test]
    fn prefixes_match_whole_segments() {
        assert!(matches_prefix("/orders", "/orders"));
        assert!(matches_prefix("/orders/1", "/orders"));
        assert!(!matches_prefix("/ordersx", "/orders"));
        assert!(!matches_prefix("/order", "/orders"));
        assert!(matches_prefix("/orders/1", "/orders/"));
        assert!(!matches_prefix("/orders", "/orders/"));
        assert!(matches_prefix("/anything", "/"));
    }
}
