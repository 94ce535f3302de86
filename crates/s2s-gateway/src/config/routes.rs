//! `[[route]]`: which requests are forwarded where, and what token each needs.

use std::ops::Range;

use http::Method;
use serde::Deserialize;
use toml::Spanned;

use super::{error::Errors, health::HealthPaths, issuers::IssuerConfig, upstreams::UpstreamConfig};
use crate::path;

/// A list of strings as written, each located.
type RawList = Spanned<Vec<Spanned<String>>>;

/// One `[[route]]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    prefix: Spanned<String>,
    upstream: Spanned<String>,
    methods: Option<RawList>,
    public: Option<Spanned<bool>>,
    scopes: Option<Spanned<RawScopes>>,
    audiences: Option<RawList>,
    #[serde(default)]
    strip_prefix: bool,
}

/// A route's `scopes` table as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScopes {
    all_of: Option<RawList>,
    any_of: Option<RawList>,
}

/// A checked route.
#[derive(Clone, Debug)]
pub(crate) struct RouteConfig {
    pub(crate) prefix: String,
    /// `None`: every method.
    pub(crate) methods: Option<Vec<Method>>,
    /// Index into the configuration's upstreams.
    pub(crate) upstream: usize,
    pub(crate) access: Access,
    /// The audiences the route accepts (within its issuer's): `None`, any of the issuer's.
    pub(crate) audiences: Option<Vec<String>>,
    pub(crate) strip_prefix: bool,
}

/// Who may use a route.
#[derive(Clone, Debug)]
pub(crate) enum Access {
    Public,
    /// A valid token, and these scopes.
    Token(Option<Scopes>),
}

/// The scopes a route requires.
#[derive(Clone, Debug)]
pub(crate) enum Scopes {
    AllOf(Vec<String>),
    AnyOf(Vec<String>),
}

/// What the routes are checked against: the other sections, already checked.
pub(super) struct Known<'a> {
    pub(super) upstreams: &'a [UpstreamConfig],
    pub(super) issuers: &'a [IssuerConfig],
    pub(super) health: &'a HealthPaths,
    pub(super) case_insensitive: bool,
}

/// Checks every route against the other sections, and the routes against each other (two
/// routes of the same prefix must not share a method). At least one route is needed, and an
/// issuer when a route needs a token.
pub(super) fn check(
    raw: &[Spanned<RawRoute>],
    known: &Known<'_>,
    errors: &mut Errors<'_>,
) -> Vec<RouteConfig> {
    let mut routes: Vec<RouteConfig> = Vec::new();
    let mut route_spans: Vec<Range<usize>> = Vec::new();
    for spanned in raw {
        let route = spanned.get_ref();
        let prefix = route.prefix.get_ref();
        check_prefix(&route.prefix, known.health, errors);
        let upstream = upstream(&route.upstream, known.upstreams, errors);
        let methods = route.methods.as_ref().map(|m| methods(m, errors));
        let public = route.public.as_ref().is_some_and(|p| *p.get_ref());
        let scopes = route.scopes.as_ref().and_then(|s| scopes(s, errors));
        if public && let Some(s) = &route.scopes {
            errors.at(
                s.span(),
                "a public route requires no token, so it cannot require scopes: remove `public` or `scopes`",
            );
        }
        let audiences = route
            .audiences
            .as_ref()
            .map(|list| audiences(list, public, known.issuers, errors));
        for (other, other_span) in routes.iter().zip(&route_spans) {
            if path::same_prefix(&other.prefix, prefix, known.case_insensitive)
                && share_a_method(other.methods.as_deref(), methods.as_deref())
            {
                let line = errors.line_of(other_span.start);
                errors.at(
                    route.prefix.span(),
                    format!(
                        "route `{prefix}` overlaps the route of line {line} (same prefix, common methods): \
                         split the methods between them"
                    ),
                );
            }
        }
        route_spans.push(spanned.span());
        routes.push(RouteConfig {
            prefix: prefix.clone(),
            methods,
            upstream,
            access: if public {
                Access::Public
            } else {
                Access::Token(scopes)
            },
            audiences,
            strip_prefix: route.strip_prefix,
        });
    }
    if routes.is_empty() {
        errors.global(
            "no [[route]] is configured: every request would be refused; add at least one route",
        );
    }
    let protected = routes.iter().any(|r| matches!(r.access, Access::Token(_)));
    if protected && known.issuers.is_empty() {
        errors.global(
            "routes require tokens but no [[issuer]] is configured to verify them: add an issuer, \
             or mark the routes `public = true`",
        );
    }
    routes
}

/// A prefix is a normal path, and not one the gateway answers itself.
fn check_prefix(prefix: &Spanned<String>, health: &HealthPaths, errors: &mut Errors<'_>) {
    let text = prefix.get_ref();
    match path::normalize(text) {
        Ok(normalized) if normalized == text.as_str() => {}
        Ok(normalized) => {
            errors.at(
                prefix.span(),
                format!("write the prefix in its normal form: `{normalized}`"),
            );
            return;
        }
        Err(e) => {
            errors.at(
                prefix.span(),
                format!("`{text}` is not a usable path prefix: {e}"),
            );
            return;
        }
    }
    for own in health.all() {
        if text == own {
            errors.at(
                prefix.span(),
                format!(
                    "`{text}` is answered by the gateway itself (health path `{own}`): \
                     change the route or the [health] paths"
                ),
            );
        }
    }
}

/// The index of the upstream a route names (0 when it names none: the error is reported).
fn upstream(
    name: &Spanned<String>,
    upstreams: &[UpstreamConfig],
    errors: &mut Errors<'_>,
) -> usize {
    if let Some(i) = upstreams.iter().position(|u| u.name == *name.get_ref()) {
        return i;
    }
    let known: Vec<String> = upstreams.iter().map(|u| format!("`{}`", u.name)).collect();
    errors.at(
        name.span(),
        if known.is_empty() {
            format!(
                "unknown upstream `{}`: no [upstreams] are configured",
                name.get_ref()
            )
        } else {
            format!(
                "unknown upstream `{}`; known: {}",
                name.get_ref(),
                known.join(", ")
            )
        },
    );
    0
}

/// `methods`: upper-case HTTP methods, each once, no `CONNECT`.
fn methods(list: &RawList, errors: &mut Errors<'_>) -> Vec<Method> {
    if list.get_ref().is_empty() {
        errors.at(
            list.span(),
            "an empty method list matches nothing: list methods or leave `methods` out for all",
        );
    }
    let mut methods: Vec<Method> = Vec::new();
    for m in list.get_ref() {
        let name = m.get_ref();
        match Method::from_bytes(name.as_bytes()) {
            Ok(Method::CONNECT) => errors.at(
                m.span(),
                "CONNECT is not proxied: the gateway forwards requests, not tunnels",
            ),
            Ok(method) if name.bytes().all(|b| b.is_ascii_uppercase()) => {
                if methods.contains(&method) {
                    errors.at(m.span(), format!("method {name} is listed twice"));
                }
                methods.push(method);
            }
            _ => errors.at(
                m.span(),
                format!("`{name}` is not an HTTP method (methods are upper case, e.g. \"GET\")"),
            ),
        }
    }
    methods
}

/// Whether two method lists (`None`: every method) have a method in common.
fn share_a_method(a: Option<&[Method]>, b: Option<&[Method]>) -> bool {
    match (a, b) {
        (None, _) | (_, None) => true,
        (Some(a), Some(b)) => a.iter().any(|m| b.contains(m)),
    }
}

/// `scopes`: exactly one of `all_of` and `any_of`, a non-empty list of RFC 6749 scopes.
fn scopes(raw: &Spanned<RawScopes>, errors: &mut Errors<'_>) -> Option<Scopes> {
    match (&raw.get_ref().all_of, &raw.get_ref().any_of) {
        (Some(all), None) => Some(Scopes::AllOf(scope_list(all, errors))),
        (None, Some(any)) => Some(Scopes::AnyOf(scope_list(any, errors))),
        (Some(_), Some(any)) => {
            errors.at(any.span(), "give either `all_of` or `any_of`, not both");
            None
        }
        (None, None) => {
            errors.at(raw.span(), "`scopes` needs `all_of` or `any_of`");
            None
        }
    }
}

fn scope_list(list: &RawList, errors: &mut Errors<'_>) -> Vec<String> {
    if list.get_ref().is_empty() {
        errors.at(
            list.span(),
            "an empty scope list: remove it, or name the scopes",
        );
    }
    for scope in list.get_ref() {
        let v = scope.get_ref();
        // RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
        if v.is_empty()
            || !v
                .bytes()
                .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
        {
            errors.at(
                scope.span(),
                format!("`{v}` is not a scope (RFC 6749 §3.3: no spaces, quotes or backslashes)"),
            );
        }
    }
    strings(list)
}

/// A route's `audiences`: not on a public route, not empty, each some issuer's.
fn audiences(
    list: &RawList,
    public: bool,
    issuers: &[IssuerConfig],
    errors: &mut Errors<'_>,
) -> Vec<String> {
    if public {
        errors.at(
            list.span(),
            "a public route requires no token, so it cannot require audiences: remove `public` or `audiences`",
        );
    } else if list.get_ref().is_empty() {
        errors.at(
            list.span(),
            "an empty audience list accepts no token: name the audiences, or leave `audiences` out \
             to accept any of the issuers'",
        );
    }
    for a in list.get_ref() {
        let v = a.get_ref();
        if v.is_empty() {
            errors.at(a.span(), "an audience must not be empty");
        } else if !public && !issuers.iter().any(|i| i.audiences.contains(v)) {
            errors.at(
                a.span(),
                format!(
                    "audience `{v}` is not among any [[issuer]]'s audiences, so no token could \
                     pass: add it to its issuer's `audiences`"
                ),
            );
        }
    }
    strings(list)
}

fn strings(list: &RawList) -> Vec<String> {
    list.get_ref().iter().map(|s| s.get_ref().clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::super::tests::{UPSTREAM, assert_one_error, errors_of, public_with};
    use super::*;
    use crate::Config;

    const ISSUER: &str =
        "[[issuer]]\nid = \"https://auth.example.com\"\naudiences = [\"orders-api\"]\n";

    #[test]
    fn each_key_of_a_route_is_checked_where_it_is() {
        for (route, line, says) in [
            ("prefix = \"orders\"", 8, "not a usable path prefix"),
            (
                "prefix = \"/a/../b\"",
                8,
                "`.` and `..` segments are not accepted",
            ),
            (
                "prefix = \"/%61\"",
                8,
                "write the prefix in its normal form: `/a`",
            ),
            ("prefix = \"/healthz\"", 8, "answered by the gateway itself"),
            ("prefix = \"/\"\nmethods = []", 9, "empty method list"),
            (
                "prefix = \"/\"\nmethods = [\"get\"]",
                9,
                "is not an HTTP method",
            ),
            (
                "prefix = \"/\"\nmethods = [\"CONNECT\"]",
                9,
                "CONNECT is not proxied",
            ),
            (
                "prefix = \"/\"\nmethods = [\"GET\", \"GET\"]",
                9,
                "listed twice",
            ),
            (
                "prefix = \"/\"\nscopes = {}",
                9,
                "needs `all_of` or `any_of`",
            ),
            ("prefix = \"/\"\nscopes.all_of = []", 9, "empty scope list"),
            (
                "prefix = \"/\"\nscopes.any_of = [\"a b\"]",
                9,
                "is not a scope",
            ),
            (
                "prefix = \"/\"\nscopes = { all_of = [\"a\"], any_of = [\"b\"] }",
                9,
                "not both",
            ),
            (
                "prefix = \"/\"\npublic = true\nscopes.all_of = [\"a\"]",
                10,
                "cannot require scopes",
            ),
            (
                "prefix = \"/\"\npublic = true\naudiences = [\"orders-api\"]",
                10,
                "cannot require audiences",
            ),
            ("prefix = \"/\"\naudiences = []", 9, "empty audience list"),
            ("prefix = \"/\"\naudiences = [\"\"]", 9, "must not be empty"),
            (
                "prefix = \"/\"\naudiences = [\"billing-api\"]",
                9,
                "not among any [[issuer]]'s audiences",
            ),
        ] {
            // An upstream `app` and an issuer on lines 1 to 5, the route from line 6.
            let text = format!("{UPSTREAM}{ISSUER}[[route]]\nupstream = \"app\"\n{route}");
            assert_one_error(&text, line, says);
        }
    }

    #[test]
    fn unknown_upstreams_list_the_known_ones() {
        let e = errors_of(&format!(
            "{UPSTREAM}[[route]]\nprefix = \"/\"\nupstream = \"ap\"\npublic = true\n"
        ));
        assert_eq!(e.len(), 1, "{e:#?}");
        assert_eq!(e[0].2, "unknown upstream `ap`; known: `app`");
        let e = errors_of("[[route]]\nprefix = \"/\"\nupstream = \"app\"\npublic = true\n");
        assert!(e[0].2.contains("no [upstreams] are configured"), "{e:#?}");
    }

    #[test]
    fn routes_and_issuers_are_needed() {
        assert_one_error(UPSTREAM, 0, "no [[route]] is configured");
        let text = format!("{UPSTREAM}[[route]]\nprefix = \"/\"\nupstream = \"app\"\n");
        assert_one_error(&text, 0, "no [[issuer]]");
    }

    #[test]
    fn a_public_only_config_needs_no_issuer() {
        let c = public_with("");
        assert_eq!(c.counts(), (1, 0, 1));
        assert_eq!(c.upstreams[0].authority.as_str(), "127.0.0.1:9000");
    }

    #[test]
    fn overlapping_routes() {
        let text = format!(
            "{UPSTREAM}[[route]]\nprefix = \"/a\"\nupstream = \"app\"\npublic = true\n\
             [[route]]\nprefix = \"/a\"\nmethods = [\"GET\"]\nupstream = \"app\"\npublic = true\n\
             [[route]]\nprefix = \"/a\"\nmethods = [\"POST\"]\nupstream = \"app\"\npublic = true\n"
        );
        let e = errors_of(&text);
        assert_eq!(e.len(), 2, "{e:#?}");
        assert_eq!((e[0].0, e[1].0), (8, 13), "{e:#?}");
        assert!(
            e.iter()
                .all(|e| e.2.contains("overlaps the route of line 3")),
            "{e:#?}"
        );
        assert!(share_a_method(None, Some(&[Method::GET])));
        assert!(!share_a_method(Some(&[Method::GET]), Some(&[Method::POST])));
    }

    #[test]
    fn prefixes_differing_in_case_overlap_when_routes_ignore_case() {
        let routes = format!(
            "{UPSTREAM}[[route]]\nprefix = \"/Orders\"\nupstream = \"app\"\npublic = true\n\
             [[route]]\nprefix = \"/orders\"\nupstream = \"app\"\npublic = true\n"
        );
        Config::from_toml_str(&routes).unwrap();
        let e = errors_of(&format!("{routes}[paths]\ncase_insensitive = true\n"));
        assert_eq!(e.len(), 1, "{e:#?}");
        assert!(e[0].2.contains("overlaps the route of line 3"), "{e:#?}");
    }
}
