//! [`Minter`]: tokens for unit tests, no sockets.

use jsonwebtoken::Algorithm;
use s2s_auth::{Issuer, KeySet, Verifier};
use serde_json::Value;

use crate::keys::{self, TestKey};

/// The issuer of [`Minter`] tokens unless [`Minter::issuer`] names another.
pub const DEFAULT_ISSUER: &str = "https://issuer.test";
/// The audience of [`Minter`] tokens unless [`Minter::audience`] names another.
pub const DEFAULT_AUDIENCE: &str = "test-api";

/// Signs tokens with a key generated at test time and hands out the matching [`Verifier`] and
/// JWK set, with no server at all.
///
/// ```
/// use s2s_auth_testkit::Minter;
/// use serde_json::json;
///
/// let minter = Minter::es256().audience("orders-api");
/// let token = minter.token(json!({ "sub": "billing", "scope": "orders:read" }));
/// let verified = minter.verifier().verify_with_held_keys(&token).unwrap();
/// assert_eq!(verified.standard().sub.as_deref(), Some("billing"));
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct Minter {
    key: TestKey,
    issuer: String,
    audience: String,
}

impl Minter {
    /// ES256 (P-256), key id `test-es256`.
    pub fn es256() -> Minter {
        Minter::with_key(TestKey::generate(Algorithm::ES256, "test-es256"))
    }

    /// ES384 (P-384), key id `test-es384`.
    pub fn es384() -> Minter {
        Minter::with_key(TestKey::generate(Algorithm::ES384, "test-es384"))
    }

    /// RS256 (RSA 2048), key id `test-rs256`.
    pub fn rs256() -> Minter {
        Minter::with_key(TestKey::generate(Algorithm::RS256, "test-rs256"))
    }

    /// PS256 (RSA 2048), key id `test-ps256`.
    pub fn ps256() -> Minter {
        Minter::with_key(TestKey::generate(Algorithm::PS256, "test-ps256"))
    }

    /// EdDSA (Ed25519), key id `test-eddsa`.
    pub fn eddsa() -> Minter {
        Minter::with_key(TestKey::generate(Algorithm::EdDSA, "test-eddsa"))
    }

    /// A minter signing with `key`.
    pub fn with_key(key: TestKey) -> Minter {
        Minter {
            key,
            issuer: DEFAULT_ISSUER.into(),
            audience: DEFAULT_AUDIENCE.into(),
        }
    }

    /// The `iss` of its tokens and of its verifier (default [`DEFAULT_ISSUER`]).
    pub fn issuer(mut self, issuer: impl Into<String>) -> Minter {
        self.issuer = issuer.into();
        self
    }

    /// The `aud` of its tokens and of its verifier (default [`DEFAULT_AUDIENCE`]).
    pub fn audience(mut self, audience: impl Into<String>) -> Minter {
        self.audience = audience.into();
        self
    }

    /// The signing key (its JWK, PEM, raw signing).
    pub fn key(&self) -> &TestKey {
        &self.key
    }

    /// A token with `claims` over the defaults ([`keys::token_claims`]: its issuer and
    /// audience, `sub` = `client_id` = `test-client`, valid for 300 s from now); header
    /// `{alg, typ: "at+jwt", kid}`. A member of `claims` replaces the default, `null` removes it:
    /// `json!({"exp": 1})` is expired, `json!({"aud": null})` has no audience.
    ///
    /// # Panics
    ///
    /// When `claims` is not a JSON object.
    pub fn token(&self, claims: Value) -> String {
        let defaults = keys::token_claims(&self.issuer, &self.audience, keys::now());
        self.key.sign(&keys::merge(defaults, claims))
    }

    /// `{"keys": [the public JWK]}`, to serve or to load elsewhere.
    pub fn jwks(&self) -> Value {
        self.key.jwks()
    }

    /// The public key as an s2s-auth [`KeySet`].
    pub fn key_set(&self) -> KeySet {
        KeySet::from_jwks(self.jwks().to_string().as_bytes()).expect("the minter's JWK set loads")
    }

    /// A [`Verifier`] of this minter's tokens: its issuer with its key, its audience.
    ///
    /// # Panics
    ///
    /// Never for the kit's keys.
    pub fn verifier(&self) -> Verifier {
        Verifier::builder()
            .issuer(Issuer::keys(&self.issuer, self.key_set()))
            .audience(&self.audience)
            .build()
            .expect("a verifier of the minter's tokens")
    }
}
