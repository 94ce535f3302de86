//! Key sets: parsing JWK sets and PEM keys, and the cache of a remote key set.
//!
//! ```
//! use s2s_auth::keys::KeySet;
//!
//! let jwks = br#"{"keys":[
//!   {"kty":"EC","crv":"P-256","kid":"k1","use":"sig",
//!    "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
//!    "y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
//!   {"kty":"RSA","kid":"enc","use":"enc","n":"AQAB","e":"AQAB"},
//!   {"kty":"oct","kid":"bad","k":"c2VjcmV0"}
//! ]}"#;
//! let keys = KeySet::from_jwks(jwks).unwrap();
//! // The encryption key and the symmetric key are skipped, not the whole set.
//! assert_eq!(keys.kids().collect::<Vec<_>>(), ["k1"]);
//! ```
//!
//! A remote key set (of an [`Issuer::discover`](crate::Issuer::discover) or
//! [`Issuer::jwks`](crate::Issuer::jwks)) is read without a lock (an atomic load of the current
//! set). It is fetched on first use, refreshed in the background before its time to live ends (taken
//! from `Cache-Control: max-age`, clamped to [`KeyCacheOptions::min_ttl`] and
//! [`KeyCacheOptions::max_ttl`]), and refetched when a token names an unknown `kid`: once, shared
//! by every waiting request, then not again before [`KeyCacheOptions::unknown_kid_cooldown`].
//! A failed refresh keeps the keys it had, for at most [`KeyCacheOptions::max_stale`] past their
//! time to live: then they are no longer used, the verifier is not ready, and tokens of the
//! issuer are answered 503 until a fetch succeeds. A successful refresh replaces them.
//!
//! Inside: `algorithms.rs` (which algorithms go with which key types), `jwk.rs` (JWK and PEM
//! parsing into a [`KeySet`]), `cache.rs` (the remote key cache, on the crate's one refresh
//! primitive).

mod algorithms;
mod cache;
mod jwk;

pub(crate) use algorithms::AlgSet;
pub(crate) use algorithms::SUPPORTED;
pub use algorithms::SUPPORTED_ALGORITHMS;
pub(crate) use cache::{
    BackoffState, FetchBudget, FetchReason, KeyCache, Remote, budget_exhausted,
};
pub use cache::{DEFAULT_MAX_STALE, KeyCacheOptions};
pub(crate) use jwk::Key;
pub use jwk::{KeySet, MIN_RSA_BITS};
