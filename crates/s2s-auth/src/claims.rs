//! The claims of a verified access token: [`StandardClaims`] and [`Scopes`], and the
//! [`ScopePolicy`] they are checked against.
//!
//! ```
//! use s2s_auth::{Scopes, StandardClaims};
//!
//! let claims: StandardClaims = serde_json::from_str(
//!     r#"{"iss":"https://auth.example.com","sub":"billing","aud":"orders-api",
//!         "exp":1900000000,"scope":"orders:read","scp":["orders:write"]}"#,
//! )?;
//! assert_eq!(claims.aud, ["orders-api"]);
//! assert!(claims.scopes.contains_all(&["orders:read", "orders:write"]));
//! assert!(claims.scopes.require_any(&["orders:admin"]).is_err()); // 403 insufficient_scope
//! # let _: Scopes = claims.scopes;
//! # Ok::<_, serde_json::Error>(())
//! ```
//!
//! Custom claims are read with any `T: DeserializeOwned` through [`Verified::claims`] (or the
//! axum `Claims<T>` extractor); the standard ones are parsed once, during verification.

use std::{fmt, sync::Arc};

use crate::{algorithm::Algorithm, rejection::Rejection};
use serde::{
    Deserialize, Deserializer, Serialize,
    de::{self, DeserializeOwned},
};

/// The registered claims (RFC 7519 §4.1) and the OAuth claims (RFC 9068, RFC 8693) that a
/// service-to-service access token carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "WireClaims")]
#[non_exhaustive]
pub struct StandardClaims {
    /// Issuer.
    pub iss: String,
    /// Subject: for a client-credentials token, the calling service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// Audiences (a single string or an array on the wire).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub aud: Vec<String>,
    /// Expiry, seconds since the epoch.
    pub exp: Option<u64>,
    /// Not before, seconds since the epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Issued at, seconds since the epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Token identifier.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// The OAuth client the token was issued to (RFC 9068 §2.2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Granted scopes: `scope` (space-delimited, RFC 9068) and `scp` (array or string, as Entra ID
    /// and Okta send it), merged. Serialized as `scope`.
    #[serde(rename = "scope", skip_serializing_if = "Scopes::is_empty")]
    pub scopes: Scopes,
}

/// The wire form: `scope` and `scp` are read apart and merged into [`Scopes`].
#[derive(Deserialize)]
struct WireClaims {
    iss: String,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    aud: Vec<String>,
    #[serde(default, deserialize_with = "numeric_date")]
    exp: Option<u64>,
    #[serde(default, deserialize_with = "numeric_date")]
    nbf: Option<u64>,
    #[serde(default, deserialize_with = "numeric_date")]
    iat: Option<u64>,
    #[serde(default)]
    jti: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    scp: Vec<String>,
}

impl From<WireClaims> for StandardClaims {
    fn from(w: WireClaims) -> Self {
        let from_scope = w.scope.iter().map(String::as_str);
        let from_scp = w.scp.iter().map(String::as_str);
        let scopes = Scopes::new(from_scope.chain(from_scp));
        StandardClaims {
            iss: w.iss,
            sub: w.sub,
            aud: w.aud,
            exp: w.exp,
            nbf: w.nbf,
            iat: w.iat,
            jti: w.jti,
            client_id: w.client_id,
            scopes,
        }
    }
}

/// The scopes granted to a token.
///
/// Kept as one text, the scopes in order, once each, separated by single spaces (a scope token
/// has no space, RFC 6749 §3.3): one allocation however many scopes a token has.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Scopes(Arc<str>);

impl Scopes {
    /// Scopes from a list of names. A name with spaces counts as the scopes it separates, as
    /// in a token's `scope` claim; empty names and repeats are dropped.
    pub fn new<I, S>(scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut joined = String::new();
        for scope in scopes {
            for scope in scope.as_ref().split(' ').filter(|s| !s.is_empty()) {
                if !Scopes::listed(&joined, scope) {
                    if !joined.is_empty() {
                        joined.push(' ');
                    }
                    joined.push_str(scope);
                }
            }
        }
        Scopes(joined.into())
    }

    fn listed(joined: &str, scope: &str) -> bool {
        joined.split(' ').any(|s| s == scope)
    }

    /// Whether `scope` was granted.
    pub fn contains(&self, scope: &str) -> bool {
        !scope.is_empty() && Scopes::listed(&self.0, scope)
    }

    /// Whether every scope of `required` was granted.
    pub fn contains_all<S: AsRef<str>>(&self, required: &[S]) -> bool {
        required.iter().all(|s| self.contains(s.as_ref()))
    }

    /// Whether at least one scope of `required` was granted.
    pub fn contains_any<S: AsRef<str>>(&self, required: &[S]) -> bool {
        required.iter().any(|s| self.contains(s.as_ref()))
    }

    /// The granted scopes, in the order the token lists them.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.split(' ').filter(|s| !s.is_empty())
    }

    /// How many scopes were granted.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Whether no scope was granted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Scopes {
    /// Refuses (403 `insufficient_scope`) unless every scope of `required` was granted: for
    /// checks inside a handler, `scopes.require_all(&["orders:write"])?`.
    pub fn require_all(&self, required: &[&str]) -> Result<(), Rejection> {
        ScopePolicy::all(required.iter().copied()).check(self)
    }

    /// Refuses (403 `insufficient_scope`) unless one scope of `required` was granted.
    pub fn require_any(&self, required: &[&str]) -> Result<(), Rejection> {
        ScopePolicy::any(required.iter().copied()).check(self)
    }
}

/// Whether all of the scopes of a [`ScopePolicy`] are needed, or any one of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Match {
    /// Every scope is required.
    All,
    /// One of the scopes is enough.
    Any,
}

/// Scopes a token must have, as a typed policy: checked by
/// [`RequireScopeLayer`](crate::RequireScopeLayer) for a route, by the `Required<R>` extractor
/// (feature `axum`), or by hand anywhere.
///
/// ```
/// use http::StatusCode;
/// use s2s_auth::{ScopePolicy, Scopes};
///
/// let writers = ScopePolicy::any(["orders:write", "orders:admin"]);
/// assert!(writers.check(&Scopes::new(["orders:admin"])).is_ok());
/// let refused = writers.check(&Scopes::new(["orders:read"])).unwrap_err();
/// assert_eq!(refused.status(), StatusCode::FORBIDDEN); // insufficient_scope, AUTH_102
/// assert_eq!(refused.required_scopes(), Some("orders:write orders:admin"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScopePolicy {
    scopes: Arc<[Box<str>]>,
    /// The scopes space-separated, for the challenge's `scope` attribute.
    joined: Arc<str>,
    mode: Match,
}

impl ScopePolicy {
    /// Every scope of `scopes` is required.
    pub fn all(scopes: impl IntoIterator<Item = impl Into<Box<str>>>) -> Self {
        Self::new(scopes, Match::All)
    }

    /// At least one scope of `scopes` is required.
    pub fn any(scopes: impl IntoIterator<Item = impl Into<Box<str>>>) -> Self {
        Self::new(scopes, Match::Any)
    }

    /// The scopes of `scopes`, all or any of them as `mode` says.
    pub fn new(scopes: impl IntoIterator<Item = impl Into<Box<str>>>, mode: Match) -> Self {
        let scopes: Arc<[Box<str>]> = scopes.into_iter().map(Into::into).collect();
        let joined = scopes.join(" ").into();
        ScopePolicy {
            scopes,
            joined,
            mode,
        }
    }

    /// The scopes named, in the order given.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scopes.iter().map(|s| &**s)
    }

    /// Whether all of them are needed, or any one.
    pub fn mode(&self) -> Match {
        self.mode
    }

    /// Whether `scopes` satisfy the policy.
    pub fn allows(&self, scopes: &Scopes) -> bool {
        match self.mode {
            Match::All => scopes.contains_all(&self.scopes),
            Match::Any => scopes.contains_any(&self.scopes),
        }
    }

    /// `Ok` when `scopes` satisfy the policy, else the 403 `insufficient_scope` refusal
    /// (code `AUTH_102`) that names the scopes required.
    pub fn check(&self, scopes: &Scopes) -> Result<(), Rejection> {
        if self.allows(scopes) {
            return Ok(());
        }
        let description = match self.mode {
            Match::All => format!("this endpoint requires the scopes `{}`", self.joined),
            Match::Any => format!("this endpoint requires one of the scopes `{}`", self.joined),
        };
        tracing::debug!(
            target: "s2s_auth::verify",
            required = &*self.joined,
            granted = ?scopes,
            "insufficient scope"
        );
        Err(Rejection::insufficient_scope(
            self.joined.clone(),
            description,
        ))
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Serialize for Scopes {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// A string or an array of strings.
fn one_or_many<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<OneOrMany>::deserialize(deserializer)? {
        None => Vec::new(),
        Some(OneOrMany::One(s)) => vec![s],
        Some(OneOrMany::Many(v)) => v,
    })
}

/// A NumericDate (RFC 7519 §2): a JSON number of seconds, fractions allowed and truncated.
/// Strings, negative numbers and numbers beyond the year 9999 are refused.
fn numeric_date<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    const MAX: u64 = 253_402_300_799; // 9999-12-31T23:59:59Z
    struct Visitor;
    impl de::Visitor<'_> for Visitor {
        type Value = Option<u64>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a NumericDate (seconds since 1970 as a JSON number)")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            if v > MAX {
                return Err(E::custom("NumericDate beyond the year 9999"));
            }
            Ok(Some(v))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            u64::try_from(v)
                .map_err(|_| E::custom("negative NumericDate"))
                .and_then(|v| self.visit_u64(v))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            if !(v.is_finite() && v >= 0.0 && v <= MAX as f64) {
                return Err(E::custom("NumericDate out of range"));
            }
            Ok(Some(v as u64))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    deserializer.deserialize_any(Visitor)
}

/// A token that passed verification: its standard claims, the raw payload for custom claims,
/// and which key signed it. Cheap to clone (one reference count).
#[derive(Clone)]
pub struct Verified(pub(crate) Arc<VerifiedInner>);

#[derive(Clone)]
pub(crate) struct VerifiedInner {
    pub(crate) claims: StandardClaims,
    pub(crate) payload: Box<[u8]>,
    pub(crate) kid: Option<Box<str>>,
    /// As the verifier parsed it; it admits only algorithms that have a crate [`Algorithm`].
    pub(crate) alg: jsonwebtoken::Algorithm,
}

impl Verified {
    /// A copy with its own reference count, for one thread's hits: clones of one `Verified`
    /// on every core would take the count's cache line from each other on every request.
    pub(crate) fn own_copy(&self) -> Verified {
        Verified(Arc::new(VerifiedInner::clone(&self.0)))
    }

    /// The standard claims.
    pub fn standard(&self) -> &StandardClaims {
        &self.0.claims
    }

    /// The granted scopes.
    pub fn scopes(&self) -> &Scopes {
        &self.0.claims.scopes
    }

    /// The claims as any deserializable type, for custom claims.
    pub fn claims<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.0.payload)
    }

    /// The `kid` of the key that verified the signature.
    pub fn kid(&self) -> Option<&str> {
        self.0.kid.as_deref()
    }

    /// The algorithm of the signature.
    pub fn algorithm(&self) -> Algorithm {
        Algorithm::from_jwt(self.0.alg)
            .unwrap_or_else(|| unreachable!("the verifier admits asymmetric algorithms only"))
    }
}

impl fmt::Debug for Verified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Claims are not secret (they are what the handler sees); the token itself is never kept.
        f.debug_struct("Verified")
            .field("claims", &self.0.claims)
            .field("kid", &self.0.kid)
            .field("alg", &self.algorithm())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<StandardClaims, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn audience_and_scopes_in_every_shape() {
        let c = parse(r#"{"iss":"i","aud":"a","exp":10,"scope":"x y  x"}"#).unwrap();
        assert_eq!(c.aud, ["a"]);
        assert_eq!(c.scopes.iter().collect::<Vec<_>>(), ["x", "y"]);
        let c =
            parse(r#"{"iss":"i","aud":["a","b"],"exp":10,"scp":["z","x"],"scope":"x"}"#).unwrap();
        assert_eq!(c.aud, ["a", "b"]);
        assert!(c.scopes.contains_all(&["x", "z"]));
        assert!(!c.scopes.contains_any(&["q"]));
        let c = parse(r#"{"iss":"i","exp":10}"#).unwrap();
        assert!(c.aud.is_empty() && c.scopes.is_empty());
    }

    #[test]
    fn numeric_dates() {
        assert_eq!(parse(r#"{"iss":"i","exp":10.9}"#).unwrap().exp, Some(10));
        assert_eq!(parse(r#"{"iss":"i"}"#).unwrap().exp, None);
        for bad in [r#""10""#, "-1", "1e30", "99999999999999999999", "true"] {
            assert!(
                parse(&format!(r#"{{"iss":"i","exp":{bad}}}"#)).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn duplicate_claims_are_refused() {
        assert!(parse(r#"{"iss":"i","iss":"j","exp":1}"#).is_err());
    }

    #[test]
    fn scope_policies_all_and_any() {
        let granted = Scopes::new(["orders:read", "orders:write"]);
        assert!(ScopePolicy::all(["orders:read", "orders:write"]).allows(&granted));
        assert!(!ScopePolicy::all(["orders:read", "orders:admin"]).allows(&granted));
        assert!(ScopePolicy::any(["orders:admin", "orders:write"]).allows(&granted));
        assert!(!ScopePolicy::any(["orders:admin"]).allows(&granted));
        let refused = ScopePolicy::all(["orders:read", "orders:admin"])
            .check(&granted)
            .unwrap_err();
        assert_eq!(refused.status(), http::StatusCode::FORBIDDEN);
        assert_eq!(refused.required_scopes(), Some("orders:read orders:admin"));
        // The same checks without a layer or the axum feature.
        assert!(granted.require_all(&["orders:read"]).is_ok());
        assert!(granted.require_any(&["x", "orders:write"]).is_ok());
        assert!(granted.require_all(&["orders:read", "x"]).is_err());
        assert!(granted.require_any(&["x", "y"]).is_err());
    }

    #[test]
    fn scopes_are_tokens_once_each_in_order() {
        let scopes = Scopes::new(["b a", "", "a", "c  d ", "b"]);
        assert_eq!(scopes.iter().collect::<Vec<_>>(), ["b", "a", "c", "d"]);
        assert_eq!(scopes.len(), 4);
        assert!(scopes.contains("c") && !scopes.contains("") && !scopes.contains("a b"));
        assert!(!scopes.contains("b a") && !scopes.contains(" "));
        assert_eq!(scopes, Scopes::new(["b", "a", "c", "d"]));
        let none = Scopes::new([" ", ""]);
        assert_eq!(none.len(), 0);
        assert!(none.is_empty() && none.iter().next().is_none());
        assert_eq!(none, Scopes::default());
    }

    #[test]
    fn scopes_serialize_as_scope() {
        let c = parse(r#"{"iss":"i","exp":10,"scp":"a b"}"#).unwrap();
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["scope"], "a b");
    }
}
