//! [`Algorithm`]: the JWS signature algorithms (RFC 7518 §3, RFC 8037) this crate verifies and
//! signs client assertions with.
//!
//! ```
//! use s2s_auth::Algorithm;
//!
//! let alg: Algorithm = "ES256".parse()?;
//! assert_eq!(alg, Algorithm::ES256);
//! assert_eq!(alg.to_string(), "ES256");
//! assert_eq!(Algorithm::EdDSA.as_str(), "EdDSA");
//! assert!("HS256".parse::<Algorithm>().is_err()); // shared secrets are not accepted
//! # Ok::<_, s2s_auth::algorithm::UnknownAlgorithm>(())
//! ```
//!
//! The enum is the crate's own, so that users need not depend on the JOSE library the crate
//! uses inside. Only asymmetric algorithms exist here: a symmetric one (`HS256`) would let
//! every holder of the secret mint tokens, and `none` is no signature at all.

use std::{fmt, str::FromStr};

/// A JWS signature algorithm, named as in the JOSE header's `alg`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Algorithm {
    /// ECDSA with P-256 and SHA-256.
    ES256,
    /// ECDSA with P-384 and SHA-384.
    ES384,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512.
    PS512,
    /// EdDSA with Ed25519 (RFC 8037).
    EdDSA,
}

impl Algorithm {
    /// Every algorithm, in the order above.
    pub const ALL: [Algorithm; 9] = {
        use Algorithm::*;
        [
            ES256, ES384, RS256, RS384, RS512, PS256, PS384, PS512, EdDSA,
        ]
    };

    /// The JOSE name (`"ES256"`, `"EdDSA"`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::PS256 => "PS256",
            Algorithm::PS384 => "PS384",
            Algorithm::PS512 => "PS512",
            Algorithm::EdDSA => "EdDSA",
        }
    }

    /// The algorithm of the JOSE library used inside.
    pub(crate) const fn to_jwt(self) -> jsonwebtoken::Algorithm {
        use jsonwebtoken::Algorithm as J;
        match self {
            Algorithm::ES256 => J::ES256,
            Algorithm::ES384 => J::ES384,
            Algorithm::RS256 => J::RS256,
            Algorithm::RS384 => J::RS384,
            Algorithm::RS512 => J::RS512,
            Algorithm::PS256 => J::PS256,
            Algorithm::PS384 => J::PS384,
            Algorithm::PS512 => J::PS512,
            Algorithm::EdDSA => J::EdDSA,
        }
    }

    /// The crate's algorithm for one of the JOSE library's; `None` for the symmetric ones
    /// (and any the library adds), which the crate never accepts.
    pub(crate) const fn from_jwt(alg: jsonwebtoken::Algorithm) -> Option<Self> {
        use jsonwebtoken::Algorithm as J;
        Some(match alg {
            J::ES256 => Algorithm::ES256,
            J::ES384 => Algorithm::ES384,
            J::RS256 => Algorithm::RS256,
            J::RS384 => Algorithm::RS384,
            J::RS512 => Algorithm::RS512,
            J::PS256 => Algorithm::PS256,
            J::PS384 => Algorithm::PS384,
            J::PS512 => Algorithm::PS512,
            J::EdDSA => Algorithm::EdDSA,
            _ => return None,
        })
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = UnknownAlgorithm;

    /// Parses the JOSE name, exactly (`alg` values are case-sensitive, RFC 7515 §4.1.1).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Algorithm::ALL
            .into_iter()
            .find(|alg| alg.as_str() == s)
            .ok_or(UnknownAlgorithm(()))
    }
}

/// The error of parsing an [`Algorithm`]: the name is none of [`Algorithm::ALL`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownAlgorithm(());

impl fmt::Display for UnknownAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "not a supported JWS algorithm (ES256, ES384, RS256, RS384, RS512, PS256, PS384, \
             PS512, EdDSA)",
        )
    }
}

impl std::error::Error for UnknownAlgorithm {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for alg in Algorithm::ALL {
            assert_eq!(alg.as_str().parse::<Algorithm>(), Ok(alg));
            assert_eq!(alg.to_string(), alg.as_str());
            assert_eq!(Algorithm::from_jwt(alg.to_jwt()), Some(alg));
            // The JOSE library names its variants by the JOSE names too.
            assert_eq!(format!("{:?}", alg.to_jwt()), alg.as_str());
        }
    }

    #[test]
    fn refuses_symmetric_unknown_and_miscased_names() {
        for bad in ["HS256", "none", "es256", "ES256 ", "", "EDDSA"] {
            assert!(bad.parse::<Algorithm>().is_err(), "{bad}");
        }
        assert_eq!(Algorithm::from_jwt(jsonwebtoken::Algorithm::HS256), None);
    }
}
