//! `[identity_headers]`: the headers that carry the verified token's identity to the upstream.

use http::HeaderName;
use serde::Deserialize;
use toml::Spanned;

use super::error::Errors;
use crate::proxy;

/// `[identity_headers]` as written.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIdentityHeaders {
    subject: Option<Spanned<String>>,
    client_id: Option<Spanned<String>>,
    scopes: Option<Spanned<String>>,
}

/// The checked identity headers.
#[derive(Clone, Debug)]
pub(crate) struct IdentityHeaders {
    pub(crate) subject: HeaderName,
    pub(crate) client_id: HeaderName,
    pub(crate) scopes: HeaderName,
}

/// Headers the gateway or HTTP manages and that cannot carry identity (besides the forwarding
/// and method override headers, which the gateway sets or removes itself).
const RESERVED_HEADERS: &[&str] = &["authorization", "host", "content-length", "content-type"];

/// Checks that each name is a header name nothing else manages, and that no two are the same
/// header to a CGI-style stack.
pub(super) fn check(raw: &RawIdentityHeaders, errors: &mut Errors<'_>) -> IdentityHeaders {
    let subject = header_name(raw.subject.as_ref(), "x-auth-subject", errors);
    let client_id = header_name(raw.client_id.as_ref(), "x-auth-client-id", errors);
    let scopes = header_name(raw.scopes.as_ref(), "x-auth-scopes", errors);
    let named = [
        (&raw.subject, &subject),
        (&raw.client_id, &client_id),
        (&raw.scopes, &scopes),
    ];
    for (i, (spanned, name)) in named.iter().enumerate() {
        if named[..i]
            .iter()
            .any(|(_, n)| proxy::same_cgi_name(n.as_str(), name.as_str()))
        {
            errors.at_or_global(
                spanned.as_ref().map(Spanned::span),
                format!("header `{name}` is used for two identity values"),
            );
        }
    }
    IdentityHeaders {
        subject,
        client_id,
        scopes,
    }
}

fn header_name(
    value: Option<&Spanned<String>>,
    default: &'static str,
    errors: &mut Errors<'_>,
) -> HeaderName {
    let Some(v) = value else {
        return HeaderName::from_static(default);
    };
    match HeaderName::from_bytes(v.get_ref().as_bytes()) {
        Ok(name)
            if RESERVED_HEADERS
                .iter()
                .chain(proxy::FORWARDING_HEADERS)
                .chain(proxy::OVERRIDE_HEADERS)
                .any(|r| proxy::same_cgi_name(r, name.as_str()))
                || proxy::is_hop_by_hop(&name) =>
        {
            errors.at(
                v.span(),
                format!(
                    "`{}` cannot carry identity: the gateway or HTTP itself manages it",
                    v.get_ref()
                ),
            );
            HeaderName::from_static(default)
        }
        Ok(name) => name,
        Err(_) => {
            errors.at(v.span(), format!("`{}` is not a header name", v.get_ref()));
            HeaderName::from_static(default)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{UPSTREAM, errors_of};
    use crate::Config;

    const ROUTE: &str = "[[route]]\nprefix = \"/\"\nupstream = \"app\"\npublic = true\n";

    #[test]
    fn defaults_and_own_names() {
        let c = Config::from_toml_str(&format!("{UPSTREAM}{ROUTE}")).unwrap();
        let names = |c: &Config| {
            let i = &c.identity;
            [
                i.subject.to_string(),
                i.client_id.to_string(),
                i.scopes.to_string(),
            ]
        };
        assert_eq!(
            names(&c),
            ["x-auth-subject", "x-auth-client-id", "x-auth-scopes"]
        );
        let c = Config::from_toml_str(&format!(
            "{UPSTREAM}{ROUTE}[identity_headers]\nsubject = \"X-User\"\nscopes = \"X-Scope\"\n"
        ))
        .unwrap();
        assert_eq!(names(&c), ["x-user", "x-auth-client-id", "x-scope"]);
    }

    #[test]
    fn identity_headers_cannot_be_forwarding_or_override_headers_in_any_spelling() {
        for (subject, client_id, says) in [
            (
                "X_Forwarded_For",
                "X-Auth-Client-Id",
                "cannot carry identity",
            ),
            ("X-Real-IP", "X-Auth-Client-Id", "cannot carry identity"),
            (
                "X-HTTP-Method-Override",
                "X-Auth-Client-Id",
                "cannot carry identity",
            ),
            ("Connection", "X-Auth-Client-Id", "cannot carry identity"),
            ("Authorization", "X-Auth-Client-Id", "cannot carry identity"),
            ("X Auth", "X-Auth-Client-Id", "is not a header name"),
            (
                "X-Auth-Subject",
                "X_Auth_Subject",
                "used for two identity values",
            ),
        ] {
            let e = errors_of(&format!(
                "{UPSTREAM}{ROUTE}[identity_headers]\nsubject = \"{subject}\"\nclient_id = \"{client_id}\"\n"
            ));
            assert_eq!(e.len(), 1, "{subject}: {e:#?}");
            assert!(e[0].2.contains(says), "{subject}: {e:#?}");
        }
    }

    #[test]
    fn a_default_name_taken_by_another_value_is_reported_for_the_file() {
        let e = errors_of(&format!(
            "{UPSTREAM}{ROUTE}[identity_headers]\nsubject = \"X-Auth-Scopes\"\n"
        ));
        // `scopes` keeps its default, so the clash is reported where `subject` is not: nowhere.
        assert_eq!(e.len(), 1, "{e:#?}");
        assert_eq!((e[0].0, e[0].1), (0, 0), "{e:#?}");
        assert!(e[0].2.contains("used for two identity values"), "{e:#?}");
    }
}
