//! Request paths as routes see them.
//!
//! A route must decide on the same path the upstream will act on, or a request could pick a
//! lenient route and land on a strict one's handler. So the path is normalized first (RFC 3986
//! §6.2.2: percent-encoded unreserved characters decoded, other escapes in upper case), and
//! paths that upstreams resolve in different ways are refused outright:
//!
//! * dot segments (`.`, `..`, also when percent-encoded), which servers resolve or not;
//! * encoded or literal backslashes and encoded slashes, which some servers take for `/`;
//! * empty segments (`//orders`, `/orders//x`), which nginx, CPython's `http.server` and many
//!   frameworks merge, so that a public `/` route could reach `/orders`;
//! * segment parameters (`/docs/..;/orders`, `/orders;jsessionid=1`): Tomcat, Jetty and Spring
//!   strip `;…` from every segment and then resolve dot segments, so that `/docs/..;/orders`
//!   is `/orders` to them. An encoded `;` (`%3B`) is refused in every mode: some stacks decode
//!   it before they split parameters, others after;
//! * double-encoded escapes (`%252e%252e%252f`), which a stack that decodes again after the
//!   server did reads as `../`;
//! * encoded control characters (`%00` to `%1F`, `%7F`): a decoded NUL ends the path for
//!   C-based servers and file APIs, so `/orders%00` would pass a public `/` route and be served
//!   as `/orders`.
//!
//! With [`PathOptions::matrix_parameters`] a literal `;` is accepted for upstreams that use
//! matrix parameters; routing then decides on the path such an upstream resolves (parameters
//! removed from every segment, then dot segments resolved), and the upstream receives that
//! resolved path with each remaining segment's parameters, so it cannot resolve it into
//! another route. With [`PathOptions::case_insensitive`] (IIS, ASP.NET), segments that Windows
//! reads as another file name are refused as well: a trailing `.` or space, `::` streams, `~1`
//! short names, and non-ASCII letters whose case maps to ASCII (`ı`, `ſ`, the Kelvin sign).
//! The normalized path is the one forwarded.

use std::{borrow::Cow, fmt};

/// How request paths are read: the `[paths]` table of the configuration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct PathOptions {
    /// Accept `;` segment parameters (routing ignores them and resolves dot segments).
    pub(crate) matrix_parameters: bool,
    /// Routes match ASCII letters case-insensitively (for IIS and ASP.NET upstreams), and
    /// segments Windows reads as another name are refused (see the module docs).
    pub(crate) case_insensitive: bool,
}

/// Why a request path is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PathError {
    NotAbsolute,
    BadEscape,
    EncodedSeparator,
    Backslash,
    DotSegment,
    EmptySegment,
    SegmentParameters,
    EncodedSemicolon,
    EncodedControl,
    DoubleEncoded,
    AboveRoot,
    WindowsAlias,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::NotAbsolute => "the path must start with `/`",
            PathError::BadEscape => "a `%` must be followed by two hex digits",
            PathError::EncodedSeparator => "encoded `/` or `\\` (%2F, %5C) are not accepted",
            PathError::Backslash => "`\\` is not accepted in paths",
            PathError::DotSegment => "`.` and `..` segments are not accepted",
            PathError::EmptySegment => "empty path segments (`//`) are not accepted",
            PathError::SegmentParameters => "path segment parameters (`;`) are not allowed",
            PathError::EncodedSemicolon => "an encoded `;` (%3B) is not accepted in paths",
            PathError::DoubleEncoded => {
                "a double-encoded escape (%25 and two hex digits, e.g. %252e) is not accepted: \
                 an upstream that decodes twice would read `.`, `/` or `;`"
            }
            PathError::EncodedControl => {
                "encoded control characters (%00 to %1F, %7F) are not accepted in paths"
            }
            PathError::AboveRoot => "a `..` segment climbs above the root",
            PathError::WindowsAlias => {
                "case-insensitive routes do not accept a segment that Windows servers read as \
                 another name: a trailing `.` or space, `::` (streams), `~` and a digit (short \
                 names), or a non-ASCII letter whose case maps to ASCII (`ı`, `ſ`, `K`)"
            }
        })
    }
}

/// A request path as routed and as forwarded.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct RequestPath<'a> {
    /// What routes match: normalized, no segment parameters, no dot segments.
    routed: Cow<'a, str>,
    /// What the upstream receives when it differs from `routed`: the same segments, each with
    /// its parameters (only with matrix parameters accepted).
    with_parameters: Option<String>,
}

impl RequestPath<'_> {
    /// The path routes are matched against.
    pub(crate) fn routed(&self) -> &str {
        &self.routed
    }

    /// The path the upstream receives: the routed one, with segment parameters where given.
    pub(crate) fn forwarded(&self) -> &str {
        self.with_parameters.as_deref().unwrap_or(&self.routed)
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

/// The normal form of `path` in the strict mode (no segment parameters), or why it is refused:
/// how route prefixes and health paths must be written.
pub(crate) fn normalize(path: &str) -> Result<Cow<'_, str>, PathError> {
    parse(path, PathOptions::default()).map(|p| p.routed)
}

/// The request path as routes see it and as the upstream receives it, or why it is refused.
/// Borrows when the path is already normal (the common case costs two scans, no allocation).
pub(crate) fn parse(path: &str, options: PathOptions) -> Result<RequestPath<'_>, PathError> {
    let normal = normalize_escapes(path)?;
    let mut resolve = false;
    for (segment, last) in segments(&normal) {
        let (name, parameters) = match segment.split_once(';') {
            Some((name, _)) => (name, true),
            None => (segment, false),
        };
        if parameters && !options.matrix_parameters {
            return Err(PathError::SegmentParameters);
        }
        if name.is_empty() && !last {
            return Err(PathError::EmptySegment);
        }
        if name == "." || name == ".." {
            if !options.matrix_parameters {
                return Err(PathError::DotSegment);
            }
            resolve = true;
        } else if options.case_insensitive && is_windows_alias(name) {
            return Err(PathError::WindowsAlias);
        }
        resolve |= parameters;
    }
    if !resolve {
        return Ok(RequestPath {
            routed: normal,
            with_parameters: None,
        });
    }
    // Matrix parameters: what Tomcat and the like act on. Parameters are removed from each
    // segment, then dot segments resolved (RFC 3986 §5.2.4; a dot segment's parameters go
    // with it); each remaining segment keeps its own parameters for the upstream.
    let mut kept: Vec<(&str, &str)> = Vec::new();
    for (segment, last) in segments(&normal) {
        let name = segment.split(';').next().unwrap_or_default();
        match name {
            "." => {}
            ".." => {
                kept.pop().ok_or(PathError::AboveRoot)?;
            }
            _ => kept.push((name, segment)),
        }
        if last && (name == "." || name == "..") {
            kept.push(("", ""));
        }
    }
    let (mut routed, mut forwarded) = (String::new(), String::new());
    for (name, segment) in kept {
        routed.push('/');
        routed.push_str(name);
        forwarded.push('/');
        forwarded.push_str(segment);
    }
    Ok(RequestPath {
        with_parameters: (forwarded != routed).then_some(forwarded),
        routed: Cow::Owned(routed),
    })
}

/// Whether an IIS upstream could serve the segment `name` (normalized, parameters removed)
/// from a file of another name, which a case-insensitive route would not see: Windows drops
/// trailing dots and spaces (`/admin./x` is `/admin/x`), any `:` names an NTFS stream
/// (`admin::$DATA` is the file `admin`, `admin::$INDEX_ALLOCATION` the directory),
/// `ADMINI~1` the 8.3 short name of `administration`, and its case folding maps `ı` to `I`,
/// `ſ` to `S` and the Kelvin sign to `k`.
fn is_windows_alias(name: &str) -> bool {
    let bytes = name.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        // Escapes are well-formed here (normalize_escapes checked them).
        match (bytes[i], bytes.get(i + 1..i + 3)) {
            (b'%', Some(&[hi, lo])) => {
                decoded.push(hex(hi).unwrap_or(0) << 4 | hex(lo).unwrap_or(0));
                i += 3;
            }
            (b, _) => {
                decoded.push(b);
                i += 1;
            }
        }
    }
    let name = String::from_utf8_lossy(&decoded);
    name.ends_with(['.', ' '])
        || name.contains(':')
        || name
            .as_bytes()
            .windows(2)
            .any(|w| w[0] == b'~' && w[1].is_ascii_digit())
        || name.chars().any(|c| {
            !c.is_ascii()
                && c.to_uppercase()
                    .chain(c.to_lowercase())
                    .any(|f| f.is_ascii())
        })
}

/// The segments of an absolute path, each with whether it is the last.
fn segments(path: &str) -> impl Iterator<Item = (&str, bool)> {
    let mut rest = path.strip_prefix('/');
    std::iter::from_fn(move || {
        let current = rest?;
        Some(match current.split_once('/') {
            Some((segment, tail)) => {
                rest = Some(tail);
                (segment, false)
            }
            None => {
                rest = None;
                (current, true)
            }
        })
    })
}

/// `path` with percent-escapes in their normal form, or why it is refused.
fn normalize_escapes(path: &str) -> Result<Cow<'_, str>, PathError> {
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
                if value == b';' {
                    return Err(PathError::EncodedSemicolon);
                }
                // A decoded NUL ends the path for C-based servers and file APIs
                // (`/orders%00` routed by `/`, served as `/orders`); CR/LF and the others
                // split log lines and headers. No path needs them.
                if value.is_ascii_control() {
                    return Err(PathError::EncodedControl);
                }
                // `%252e%252e%252f` is `../` to a stack that decodes again after the server
                // did (a framework's own path decoding), past every check above.
                if value == b'%'
                    && bytes
                        .get(i + 3..i + 5)
                        .is_some_and(|h| h.iter().all(|&b| hex(b).is_some()))
                {
                    return Err(PathError::DoubleEncoded);
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
    Ok(match out {
        // Only ASCII bytes were changed, and only whole escapes: still UTF-8 where the input
        // was (and the input is a &str).
        Some(o) => Cow::Owned(String::from_utf8(o).map_err(|_| PathError::BadEscape)?),
        None => Cow::Borrowed(path),
    })
}

/// Whether `prefix` covers `path` on whole segments: `/orders` covers `/orders` and
/// `/orders/1`, not `/ordersx`; with `case_insensitive`, also `/ORDERS/1`.
pub(crate) fn matches_prefix(path: &str, prefix: &str, case_insensitive: bool) -> bool {
    if prefix == "/" {
        return true;
    }
    let Some(head) = path.get(..prefix.len()) else {
        return false;
    };
    same_prefix(head, prefix, case_insensitive)
        && (path.len() == prefix.len()
            || prefix.ends_with('/')
            || path.as_bytes()[prefix.len()] == b'/')
}

/// Whether two prefixes are the same to routing.
pub(crate) fn same_prefix(a: &str, b: &str, case_insensitive: bool) -> bool {
    if case_insensitive {
        a.eq_ignore_ascii_case(b)
    } else {
        a == b
    }
}

/// `path` without its first `n` segments (`""` when none is left): a stripped route prefix,
/// counted in segments so that case and segment parameters do not matter.
pub(crate) fn without_segments(path: &str, n: usize) -> &str {
    match path.match_indices('/').nth(n) {
        Some((i, _)) => &path[i..],
        None => "",
    }
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
            // Empty segments and segment parameters, refused by default.
            ("//orders", EmptySegment),
            ("/orders//x", EmptySegment),
            ("/docs/..;/orders", SegmentParameters),
            ("/orders;jsessionid=1", SegmentParameters),
            ("/docs/;/orders", SegmentParameters),
            ("/docs/..%3B/orders", EncodedSemicolon),
            ("/docs/x%3bjsessionid=1", EncodedSemicolon),
            ("/orders%00", EncodedControl),
            ("/a%0d%0aX-Auth-Subject:%20admin", EncodedControl),
            ("/a%7F", EncodedControl),
            ("/docs/%252e%252e/orders", DoubleEncoded),
            ("/docs/..%252Forders", DoubleEncoded),
            ("/a%2500", DoubleEncoded),
        ] {
            assert_eq!(normalize(path), Err(error), "{path}");
            assert_eq!(parse(path, PathOptions::default()), Err(error), "{path}");
        }
        // Dots inside a segment are fine.
        assert_eq!(normalize("/a/..b/.c").unwrap(), "/a/..b/.c");
        // A `%25` that is no escape of an escape is a plain `%`.
        assert_eq!(normalize("/50%25off").unwrap(), "/50%25off");
        // A trailing slash is not an empty segment.
        assert_eq!(normalize("/orders/").unwrap(), "/orders/");
        assert_eq!(normalize("/").unwrap(), "/");
    }

    #[test]
    fn matrix_parameters_route_on_the_path_the_upstream_resolves() {
        let matrix = PathOptions {
            matrix_parameters: true,
            ..PathOptions::default()
        };
        for (path, routed, forwarded) in [
            ("/docs/..;/orders", "/orders", "/orders"),
            ("/docs/..;x=1/orders/1", "/orders/1", "/orders/1"),
            (
                "/orders;jsessionid=AB/1",
                "/orders/1",
                "/orders;jsessionid=AB/1",
            ),
            (
                "/orders/;jsessionid=AB",
                "/orders/",
                "/orders/;jsessionid=AB",
            ),
            ("/a/./b;v=1/../c", "/a/c", "/a/c"),
            ("/a/b/..", "/a/", "/a/"),
            ("/a/%2e%2e;x", "/", "/"),
            ("/orders/1", "/orders/1", "/orders/1"),
        ] {
            let parsed = parse(path, matrix).unwrap();
            assert_eq!(
                (parsed.routed(), parsed.forwarded()),
                (routed, forwarded),
                "{path}"
            );
        }
        use PathError::*;
        for (path, error) in [
            ("/..;/orders", AboveRoot),
            ("/a/../..", AboveRoot),
            ("/docs/;x/orders", EmptySegment),
            ("//orders", EmptySegment),
            ("/docs/..%3B/orders", EncodedSemicolon),
        ] {
            assert_eq!(parse(path, matrix), Err(error), "{path}");
        }
    }

    #[test]
    fn case_insensitive_paths_refuse_what_windows_drops() {
        let iis = PathOptions {
            case_insensitive: true,
            ..PathOptions::default()
        };
        for path in [
            "/admin./x",
            "/admin%20/x",
            "/admin.",
            "/a/b...",
            "/a%2e/b",
            "/admin::$DATA",
            "/admin%3A%3A$DATA/x",
            "/admin:$I30:$INDEX_ALLOCATION/x",
            "/a:b",
            "/ADMINI~1/x",
            "/adm%C4%B1n",
            "/adm\u{131}n",
            "/%C5%BFecret",
            "/%E2%84%AAeys",
        ] {
            assert_eq!(parse(path, iis), Err(PathError::WindowsAlias), "{path}");
            assert!(parse(path, PathOptions::default()).is_ok(), "{path}");
        }
        assert_eq!(parse("/a.b/c.json", iis).unwrap().routed(), "/a.b/c.json");
        // Other non-ASCII letters and a `~` without a digit are no aliases.
        for path in ["/caf%C3%A9", "/%C3%84rger", "/~user"] {
            assert!(parse(path, iis).is_ok(), "{path}");
        }
    }

    #[test]
    fn prefixes_match_whole_segments() {
        let m = |path, prefix| matches_prefix(path, prefix, false);
        assert!(m("/orders", "/orders"));
        assert!(m("/orders/1", "/orders"));
        assert!(!m("/ordersx", "/orders"));
        assert!(!m("/order", "/orders"));
        assert!(m("/orders/1", "/orders/"));
        assert!(!m("/orders", "/orders/"));
        assert!(m("/anything", "/"));
        assert!(!m("/ORDERS/1", "/orders"));
        assert!(matches_prefix("/ORDERS/1", "/orders", true));
        assert!(matches_prefix("/Orders", "/orders", true));
        assert!(!matches_prefix("/Ordersx", "/orders", true));
        assert!(!matches_prefix("/a\u{e9}", "/ab", true));
    }

    #[test]
    fn prefixes_are_stripped_by_segments() {
        assert_eq!(without_segments("/orders/1", 1), "/1");
        assert_eq!(without_segments("/orders;a=1/1", 1), "/1");
        assert_eq!(without_segments("/orders", 1), "");
        assert_eq!(without_segments("/orders/1", 0), "/orders/1");
    }
}
