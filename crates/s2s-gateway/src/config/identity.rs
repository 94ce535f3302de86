//! `[identity_headers]`: the headers that carry the verified token's identity to the upstream.

use http::HeaderName;
use toml::Spanned;

use super::error::Errors;
use crate::proxy;

text_table! {
    /// `[identity_headers]` as written.
    RawIdentityHeaders { subject, client_id, scopes }
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
    use super::super::tests::{assert_one_error, public_with};

    #[test]
    fn defaults_and_own_names() {
        let names = |rest: &str| {
            let c = public_with(rest);
            let i = &c.identity;
            [
                i.subject.to_string(),
                i.client_id.to_string(),
                i.scopes.to_string(),
            ]
        };
        assert_eq!(
            names(""),
            ["x-auth-subject", "x-auth-client-id", "x-auth-scopes"]
        );
        assert_eq!(
            names("[identity_headers]\nsubject = \"X-User\"\nscopes = \"X-Scope\"\n"),
            ["x-user", "x-auth-client-id", "x-scope"]
        );
    }

    #[test]
    fn identity_headers_cannot_be_forwarding_or_override_headers_in_any_spelling() {
        let taken = "cannot carry identity";
        for (headers, line, says) in [
            ("subject = \"X_Forwarded_For\"", 8, taken),
            ("subject = \"X-Real-IP\"", 8, taken),
            ("client_id = \"X-HTTP-Method-Override\"", 8, taken),
            ("scopes = \"Connection\"", 8, taken),
            ("subject = \"Authorization\"", 8, taken),
            ("subject = \"X Auth\"", 8, "is not a header name"),
            (
                "subject = \"A\"\nclient_id = \"a\"",
                9,
                "used for two identity values",
            ),
            (
                "client_id = \"X_Auth_Subject\"",
                8,
                "used for two identity values",
            ),
            // `scopes` keeps its default, so the clash is reported where `subject` is not:
            // for the file.
            (
                "subject = \"X-Auth-Scopes\"",
                0,
                "used for two identity values",
            ),
        ] {
            let text = format!(
                "{}[identity_headers]\n{headers}\n",
                super::super::tests::PUBLIC
            );
            assert_one_error(&text, line, says);
        }
    }
}
