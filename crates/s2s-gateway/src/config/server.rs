//! The top-level keys of the connection side: `listen`, `realm` and `trusted_proxies`.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use toml::Spanned;

use super::error::Errors;

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default realm of `WWW-Authenticate` challenges.
const DEFAULT_REALM: &str = "api";

/// `listen`: an `IP:PORT`.
pub(super) fn listen(value: Option<&Spanned<String>>, errors: &mut Errors<'_>) -> SocketAddr {
    let default = || DEFAULT_LISTEN.parse().expect("valid default");
    let Some(s) = value else {
        return default();
    };
    s.get_ref().parse().unwrap_or_else(|_| {
        errors.at(
            s.span(),
            format!(
                "`{}` is not a socket address: write IP:PORT, e.g. \"0.0.0.0:8080\"",
                s.get_ref()
            ),
        );
        default()
    })
}

/// `realm`: printable ASCII that can stand in a quoted string of a challenge.
pub(super) fn realm(value: Option<&Spanned<String>>, errors: &mut Errors<'_>) -> String {
    let Some(r) = value else {
        return DEFAULT_REALM.to_owned();
    };
    let text = r.get_ref();
    if text.is_empty()
        || !text
            .chars()
            .all(|c| matches!(c, ' '..='~') && c != '"' && c != '\\')
    {
        errors.at(
            r.span(),
            "the realm must be printable ASCII without `\"` or `\\`",
        );
    }
    text.clone()
}

/// `trusted_proxies`: the peers whose forwarding headers are kept.
pub(super) fn trusted_proxies(
    value: Option<&Spanned<Vec<Spanned<String>>>>,
    errors: &mut Errors<'_>,
) -> Vec<IpNet> {
    let Some(list) = value else {
        return Vec::new();
    };
    list.get_ref()
        .iter()
        .filter_map(|v| {
            parse_cidr(v.get_ref())
                .map_err(|message| errors.at(v.span(), message))
                .ok()
        })
        .collect()
}

/// A `trusted_proxies` entry: a CIDR block, or one address (/32, /128).
fn parse_cidr(value: &str) -> Result<IpNet, String> {
    if let Ok(ip) = value.parse::<IpAddr>() {
        return Ok(IpNet::from(ip));
    }
    match value.parse::<IpNet>() {
        Ok(net) if net.trunc() == net => Ok(net),
        Ok(net) => Err(format!(
            "`{value}` has address bits set beyond its prefix length: write `{}`",
            net.trunc()
        )),
        Err(_) => Err(format!(
            "`{value}` is not a CIDR block: write e.g. \"10.0.0.0/8\", \"::1/128\" or a single address"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{PUBLIC, errors_of, public_with};
    use super::*;

    #[test]
    fn defaults() {
        let c = public_with("");
        assert_eq!(c.listen().to_string(), DEFAULT_LISTEN);
        assert_eq!(c.realm, "api");
        assert!(c.trusted_proxies.is_empty());
    }

    #[test]
    fn trusted_proxies_are_blocks_or_single_addresses() {
        assert_eq!(parse_cidr("10.0.0.0/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(parse_cidr("::1").unwrap().to_string(), "::1/128");
        assert_eq!(parse_cidr("192.0.2.7").unwrap().to_string(), "192.0.2.7/32");
        let e = parse_cidr("10.1.0.0/8").unwrap_err();
        assert!(e.contains("write `10.0.0.0/8`"), "{e}");
        let e = parse_cidr("ten").unwrap_err();
        assert!(e.contains("is not a CIDR block"), "{e}");
    }

    #[test]
    fn each_bad_value_is_located() {
        let e = errors_of(&format!(
            "listen = \"8080\"\nrealm = \"a\\\"b\"\ntrusted_proxies = [\"::1\", \"nope\"]\n{PUBLIC}"
        ));
        let found: Vec<(usize, usize)> = e.iter().map(|e| (e.0, e.1)).collect();
        assert_eq!(found, [(1, 10), (2, 9), (3, 27)], "{e:#?}");
        assert!(e[0].2.contains("not a socket address"), "{e:#?}");
        assert!(e[1].2.contains("printable ASCII"), "{e:#?}");
        assert!(e[2].2.contains("not a CIDR block"), "{e:#?}");
    }
}
