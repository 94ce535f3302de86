//! Which algorithms are verified, and which go with which key types.

use std::fmt;

use jsonwebtoken::Algorithm;

/// The asymmetric signature algorithms this crate verifies. HMAC is never accepted: a public
/// key set cannot hold a shared secret, and `none` is not an algorithm.
pub const SUPPORTED_ALGORITHMS: [crate::Algorithm; 9] = crate::Algorithm::ALL;

/// [`SUPPORTED_ALGORITHMS`] as the JOSE library names them, in the same order (the bits of an
/// [`AlgSet`]).
pub(crate) const SUPPORTED: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// A set of algorithms, as a bit mask over [`SUPPORTED`].
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct AlgSet(u16);

impl AlgSet {
    pub(crate) const RSA: AlgSet = AlgSet(0b11_1111);

    fn bit(alg: Algorithm) -> u16 {
        SUPPORTED
            .iter()
            .position(|a| *a == alg)
            .map_or(0, |i| 1 << i)
    }

    pub(crate) fn of(alg: Algorithm) -> AlgSet {
        AlgSet(Self::bit(alg))
    }

    pub(crate) fn from_slice(algs: &[Algorithm]) -> AlgSet {
        AlgSet(algs.iter().fold(0, |m, a| m | Self::bit(*a)))
    }

    pub(crate) fn contains(self, alg: Algorithm) -> bool {
        let bit = Self::bit(alg);
        bit != 0 && self.0 & bit != 0
    }

    pub(crate) fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub(super) fn intersect(self, other: AlgSet) -> AlgSet {
        AlgSet(self.0 & other.0)
    }
}

impl fmt::Debug for AlgSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(SUPPORTED.iter().filter(|a| self.contains(**a)))
            .finish()
    }
}
