//! `[[issuer]]`: the authorization servers whose tokens are accepted, each with its audiences.

use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use s2s_auth::config::VerifierConfig;

use super::{Config, error::Errors, limits::parse_duration};

/// One `[[issuer]]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIssuer {
    id: Spanned<String>,
    jwks_url: Option<Spanned<String>>,
    audiences: Spanned<Vec<Spanned<String>>>,
}

text_table! {
    /// `[keys]` as written: the issuers' key sets, as s2s-auth's key cache reads them.
    RawKeys { min_ttl, max_ttl, default_ttl, max_stale }
}

/// The checked `leeway` and `[keys]`, as written (s2s-auth's [`VerifierConfig`] reads them).
#[derive(Clone, Debug, Default)]
pub(crate) struct VerifierSettings {
    pub(crate) leeway: Option<String>,
    /// `[keys]` entries that are set.
    pub(crate) keys: Vec<(&'static str, String)>,
}

/// Checks `leeway` and the `[keys]` durations (zero is a duration here: no leeway, no stale
/// keys), and that `min_ttl` is not longer than `max_ttl`.
pub(super) fn settings(
    leeway: Option<&Spanned<String>>,
    keys: &RawKeys,
    errors: &mut Errors<'_>,
) -> VerifierSettings {
    let mut check = |value: Option<&Spanned<String>>| {
        let v = value?;
        let parsed = parse_duration(v.get_ref());
        if parsed.is_none() {
            errors.at(
                v.span(),
                format!(
                    "`{}` is not a duration: write e.g. \"250ms\", \"30s\", \"5m\" or \"1h\"",
                    v.get_ref()
                ),
            );
        }
        parsed
    };
    check(leeway);
    let min = check(keys.min_ttl.as_ref());
    let max = check(keys.max_ttl.as_ref());
    check(keys.default_ttl.as_ref());
    check(keys.max_stale.as_ref());
    if let (Some(min), Some(max), Some(at)) = (min, max, &keys.min_ttl)
        && min > max
    {
        errors.at(at.span(), "`min_ttl` is longer than `max_ttl`");
    }
    let entries = [
        ("min_ttl", &keys.min_ttl),
        ("max_ttl", &keys.max_ttl),
        ("default_ttl", &keys.default_ttl),
        ("max_stale", &keys.max_stale),
    ];
    VerifierSettings {
        leeway: leeway.map(|l| l.get_ref().clone()),
        keys: entries
            .into_iter()
            .filter_map(|(key, value)| Some((key, value.as_ref()?.get_ref().clone())))
            .collect(),
    }
}

/// A checked `[[issuer]]`.
#[derive(Clone, Debug)]
pub(crate) struct IssuerConfig {
    pub(crate) id: String,
    pub(crate) jwks_url: Option<String>,
    pub(crate) audiences: Vec<String>,
}

/// Checks the `[[issuer]]` tables: distinct ids, URLs under the https policy
/// (`allow_insecure_http`), at least one audience each, none empty.
pub(super) fn check(
    raw: &[Spanned<RawIssuer>],
    allow_insecure_http: bool,
    errors: &mut Errors<'_>,
) -> Vec<IssuerConfig> {
    let mut issuers: Vec<IssuerConfig> = Vec::new();
    for issuer in raw {
        let issuer = issuer.get_ref();
        let id = issuer.id.get_ref();
        if issuers.iter().any(|i| &i.id == id) {
            errors.at(
                issuer.id.span(),
                format!("issuer `{id}` is configured twice"),
            );
        }
        match issuer.jwks_url.as_ref() {
            None => check_endpoint(id, issuer.id.span(), allow_insecure_http, errors),
            Some(url) => {
                check_endpoint(url.get_ref(), url.span(), allow_insecure_http, errors);
                if id.is_empty() {
                    errors.at(issuer.id.span(), "the issuer id must not be empty");
                }
            }
        }
        if issuer.audiences.get_ref().is_empty() {
            errors.at(
                issuer.audiences.span(),
                "at least one audience is needed: tokens meant for other services must be refused",
            );
        }
        for a in issuer.audiences.get_ref() {
            if a.get_ref().is_empty() {
                errors.at(a.span(), "an audience must not be empty");
            }
        }
        issuers.push(IssuerConfig {
            id: id.clone(),
            jwks_url: issuer.jwks_url.as_ref().map(|u| u.get_ref().clone()),
            audiences: issuer
                .audiences
                .get_ref()
                .iter()
                .map(|a| a.get_ref().clone())
                .collect(),
        });
    }
    issuers
}

/// The library's configuration of the verifier of `config`'s issuers (`None` without issuers:
/// every route is public), so that s2s-auth's one piece of code builds it from configuration:
/// the `[[issuer]]` tables with their `id`, `jwks_url` and `audiences`, and the top-level
/// `allow_insecure_http`, `require_at_jwt` and `leeway`, and the `[keys]` table, are the same
/// keys in [`VerifierConfig`]. Each issuer keeps its own audiences: the verifier refuses a token naming
/// another issuer's, before a route narrows them.
pub(crate) fn verifier_config(config: &Config) -> Result<Option<VerifierConfig>, s2s_auth::Error> {
    if config.issuers.is_empty() {
        return Ok(None);
    }
    let issuers: toml::value::Array = config
        .issuers
        .iter()
        .map(|issuer| {
            let mut table = toml::Table::new();
            table.insert("id".into(), issuer.id.clone().into());
            if let Some(url) = &issuer.jwks_url {
                table.insert("jwks_url".into(), url.clone().into());
            }
            table.insert("audiences".into(), issuer.audiences.clone().into());
            table.into()
        })
        .collect();
    let mut verifier = toml::Table::new();
    verifier.insert("issuer".into(), issuers.into());
    verifier.insert(
        "allow_insecure_http".into(),
        config.allow_insecure_http.into(),
    );
    verifier.insert("require_at_jwt".into(), config.require_at_jwt.into());
    let settings = &config.verifier;
    if let Some(leeway) = &settings.leeway {
        verifier.insert("leeway".into(), leeway.clone().into());
    }
    let keys: toml::Table = settings
        .keys
        .iter()
        .map(|(key, value)| ((*key).to_owned(), value.clone().into()))
        .collect();
    verifier.insert("keys".into(), keys.into());
    VerifierConfig::from_toml_str(&verifier.to_string()).map(Some)
}

/// An issuer or JWKS URL, against s2s-auth's https policy.
fn check_endpoint(url: &str, span: Range<usize>, allow_insecure: bool, errors: &mut Errors<'_>) {
    match url::Url::parse(url) {
        Err(e) => errors.at(span, format!("`{url}` is not a URL: {e}")),
        Ok(parsed) => {
            if let Err(e) = s2s_auth::fetch::check_endpoint(&parsed, allow_insecure) {
                errors.at(span, e.to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{PUBLIC, UPSTREAM, assert_one_error, errors_of, public_with};
    use super::verifier_config;
    use crate::Config;

    const ROUTE: &str = "[[route]]\nprefix = \"/\"\nupstream = \"app\"\n";

    #[test]
    fn issuer_urls_follow_the_https_policy() {
        let text = format!(
            "{UPSTREAM}[[issuer]]\nid = \"http://auth.example.com\"\naudiences = []\n{ROUTE}"
        );
        let e = errors_of(&text);
        assert_eq!(e.len(), 2, "{e:#?}");
        assert!(e[0].2.contains("plain http"), "{e:#?}");
        assert!(e[1].2.contains("audience"), "{e:#?}");
        let allowed = format!("allow_insecure_http = true\n{text}").replace("[]", "[\"a\"]");
        Config::from_toml_str(&allowed).unwrap();
    }

    #[test]
    fn ids_are_distinct_audiences_named_and_urls_parsed() {
        let e = errors_of(&format!(
            "{UPSTREAM}\
             [[issuer]]\nid = \"https://a.example\"\naudiences = [\"x\"]\n\
             [[issuer]]\nid = \"https://a.example\"\naudiences = [\"\"]\n\
             [[issuer]]\nid = \"\"\njwks_url = \"not a url\"\naudiences = [\"x\"]\n{ROUTE}"
        ));
        let found: Vec<(usize, usize, &str)> = e.iter().map(|e| (e.0, e.1, e.2.as_str())).collect();
        assert_eq!(
            found,
            [
                (7, 6, "issuer `https://a.example` is configured twice"),
                (8, 14, "an audience must not be empty"),
                (10, 6, "the issuer id must not be empty"),
                (
                    11,
                    12,
                    "`not a url` is not a URL: relative URL without a base"
                ),
            ],
        );
    }

    #[tokio::test]
    async fn the_issuers_build_the_library_verifier_configuration() {
        assert!(verifier_config(&public_with("")).unwrap().is_none());
        let c = Config::from_toml_str(&format!(
            "require_at_jwt = true\nallow_insecure_http = true\n{UPSTREAM}\
             [[issuer]]\nid = \"http://auth.example.com\"\naudiences = [\"orders-api\"]\n\
             [[issuer]]\nid = \"https://partner.example.net\"\n\
             jwks_url = \"https://partner.example.net/keys.json\"\naudiences = [\"a\", \"b\"]\n\
             {ROUTE}"
        ))
        .unwrap();
        let verifier = verifier_config(&c).unwrap().unwrap();
        let debug = format!("{verifier:?}");
        for part in [
            r#"id: "http://auth.example.com", jwks_url: None, audiences: ["orders-api"]"#,
            r#"id: "https://partner.example.net", jwks_url: Some("https://partner.example.net/keys.json"), audiences: ["a", "b"]"#,
            "require_at_jwt: true",
            "allow_insecure_http: true",
        ] {
            assert!(debug.contains(part), "{part}: {debug}");
        }
        // The plain http issuer passes the library's checks too: `allow_insecure_http` went along.
        verifier.build().unwrap();
    }

    #[tokio::test]
    async fn leeway_and_the_key_cache_go_to_the_library() {
        let c = Config::from_toml_str(&format!(
            "leeway = \"0s\"\n{UPSTREAM}\
             [[issuer]]\nid = \"https://auth.example.com\"\naudiences = [\"orders-api\"]\n{ROUTE}\
             [keys]\nmin_ttl = \"30s\"\nmax_ttl = \"1h\"\nmax_stale = \"6h\"\n"
        ))
        .unwrap();
        let verifier = verifier_config(&c).unwrap().unwrap();
        let debug = format!("{verifier:?}");
        for part in [
            r#"leeway: Some("0s")"#,
            r#"min_ttl: Some("30s"), max_ttl: Some("1h"), default_ttl: None, max_stale: Some("6h")"#,
        ] {
            assert!(debug.contains(part), "{part}: {debug}");
        }
        verifier.build().unwrap();
        assert!(public_with("").verifier.keys.is_empty());
    }

    #[test]
    fn leeway_and_key_cache_durations_are_checked_where_they_are() {
        assert_one_error(
            &format!("leeway = \"soon\"\n{PUBLIC}"),
            1,
            "is not a duration",
        );
        for (keys, line, says) in [
            ("max_stale = \"1d\"", 8, "is not a duration"),
            (
                "min_ttl = \"2h\"\nmax_ttl = \"1h\"",
                8,
                "`min_ttl` is longer than `max_ttl`",
            ),
            ("default_ttl = \"5\"", 8, "is not a duration"),
        ] {
            assert_one_error(&format!("{PUBLIC}[keys]\n{keys}\n"), line, says);
        }
        public_with("[keys]\nmin_ttl = \"1h\"\nmax_ttl = \"1h\"\n");
    }
}
