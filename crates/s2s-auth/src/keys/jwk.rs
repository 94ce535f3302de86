//! Parsing JWK sets (RFC 7517) and PEM public keys into a [`KeySet`].

use std::{fmt, sync::Arc};

use aws_lc_rs::signature::{self, ParsedPublicKey};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::algorithms::{AlgSet, SUPPORTED_ALGORITHMS};
use crate::{error::Error, fetch};

/// RSA keys shorter than this are refused (NIST SP 800-131A, RFC 7518 §3.3).
pub const MIN_RSA_BITS: usize = 2048;

/// One verification key, and the algorithms it may verify.
pub(crate) struct Key {
    pub(crate) kid: Option<Box<str>>,
    pub(crate) algs: AlgSet,
    pub(crate) decoding: DecodingKey,
    /// The key parsed once by aws-lc-rs (EC and Ed25519 keys from a JWK): verifying with it
    /// skips decoding and validating the point on every signature.
    pub(crate) parsed: Option<ParsedPublicKey>,
    /// SHA-256 of the key material, to tell an unchanged key across refreshes.
    fingerprint: [u8; 32],
}

fn fingerprint(parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    hasher.finalize().into()
}

/// A set of public verification keys, each tied to the algorithms its type allows.
///
/// Cheap to clone. Built from a JWK set ([`KeySet::from_jwks`]) or PEM ([`KeySet::from_pem`]),
/// or fetched and cached for an issuer ([`Issuer::jwks`](crate::Issuer::jwks),
/// [`Issuer::discover`](crate::Issuer::discover)).
#[derive(Clone, Default)]
pub struct KeySet {
    keys: Arc<[Arc<Key>]>,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(
                self.keys
                    .iter()
                    .map(|k| (k.kid.as_deref().unwrap_or("(no kid)"), k.algs)),
            )
            .finish()
    }
}

/// The members of a JWK this crate reads.
#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default, rename = "use")]
    use_: Option<String>,
    #[serde(default)]
    key_ops: Option<Vec<String>>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
}

impl KeySet {
    /// Parses a JWK set (RFC 7517 §5).
    ///
    /// Keys that cannot verify signatures here are skipped with a warning rather than failing
    /// the set: `use: enc` keys, symmetric (`oct`) keys, unknown key types or curves, RSA keys
    /// under 2048 bits, and malformed keys. A JWK without `alg` may verify every algorithm of its
    /// type (RSA: RS*/PS*; P-256: ES256; P-384: ES384; Ed25519: EdDSA); one with `alg` only that.
    ///
    /// Fails when the document is not a JWK set, or when it lists keys and none is usable.
    pub fn from_jwks(json: &[u8]) -> Result<KeySet, Error> {
        #[derive(Deserialize)]
        struct Doc {
            keys: Vec<serde_json::Value>,
        }
        let doc: Doc = serde_json::from_slice(json).map_err(|e| {
            Error::transient(format!("not a JWK set ({e}): `{}`", fetch::excerpt(json)))
        })?;
        let listed = doc.keys.len();
        let mut keys = Vec::with_capacity(listed);
        for (i, value) in doc.keys.into_iter().enumerate() {
            match parse_jwk(value) {
                Ok(Some(key)) => {
                    if keys
                        .iter()
                        .any(|k: &Arc<Key>| k.kid.is_some() && k.kid == key.kid)
                    {
                        tracing::warn!(index = i, kid = ?key.kid, "JWK set lists a kid twice; keeping the first");
                        continue;
                    }
                    keys.push(Arc::new(key));
                }
                Ok(None) => {}
                Err(why) => tracing::warn!(index = i, %why, "skipping a JWK that cannot be used"),
            }
        }
        if keys.is_empty() && listed > 0 {
            return Err(Error::transient(format!(
                "the JWK set lists {listed} keys and none can verify signatures \
                 (see the warnings for why each was skipped)"
            )));
        }
        Ok(KeySet { keys: keys.into() })
    }

    /// A set of one key from a PEM public key (`-----BEGIN PUBLIC KEY-----`, or
    /// `-----BEGIN RSA PUBLIC KEY-----`) that verifies `alg` only.
    pub fn from_pem(alg: crate::Algorithm, pem: &[u8], kid: Option<&str>) -> Result<KeySet, Error> {
        let alg = alg.to_jwt();
        let bad = |e: jsonwebtoken::errors::Error| {
            Error::config(format!("the PEM key for {alg:?} cannot be read")).with_source(e)
        };
        let decoding = match alg {
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => DecodingKey::from_rsa_pem(pem).map_err(bad)?,
            Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(pem).map_err(bad)?,
            Algorithm::EdDSA => DecodingKey::from_ed_pem(pem).map_err(bad)?,
            other => {
                return Err(Error::config(format!(
                    "{other:?} is not an asymmetric signature algorithm; \
                     only {SUPPORTED_ALGORITHMS:?} are verified"
                )));
            }
        };
        Ok(KeySet {
            keys: Arc::new([Arc::new(Key {
                kid: kid.map(Into::into),
                algs: AlgSet::of(alg),
                decoding,
                parsed: None,
                fingerprint: fingerprint(&[pem]),
            })]) as Arc<[_]>,
        })
    }

    /// This set and `other`'s keys together.
    pub fn merge(&self, other: &KeySet) -> KeySet {
        KeySet {
            keys: self.keys.iter().chain(other.keys.iter()).cloned().collect(),
        }
    }

    /// This set, with the very same key instances as `old` where a key is unchanged (same kid,
    /// material and algorithms), so that what was verified with a key that stays remains valid
    /// and only what a removed key verified is forgotten.
    pub(crate) fn reuse_unchanged(self, old: &KeySet) -> KeySet {
        let keys = self
            .keys
            .iter()
            .map(|new| {
                old.keys
                    .iter()
                    .find(|o| {
                        o.kid == new.kid && o.fingerprint == new.fingerprint && o.algs == new.algs
                    })
                    .unwrap_or(new)
                    .clone()
            })
            .collect();
        KeySet { keys }
    }

    /// The `kid`s of the keys (keys without one are not listed).
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().filter_map(|k| k.kid.as_deref())
    }

    /// How many keys the set holds.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set holds no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key for a token's `kid`. A token without `kid` is matched only when exactly one key
    /// could verify its algorithm, so that a kid-less token never costs more than one signature
    /// check.
    pub(crate) fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<&Arc<Key>> {
        match kid {
            Some(kid) => self.keys.iter().find(|k| k.kid.as_deref() == Some(kid)),
            None => {
                let mut candidates = self.keys.iter().filter(|k| k.algs.contains(alg));
                let first = candidates.next()?;
                candidates.next().is_none().then_some(first)
            }
        }
    }
}

fn parse_jwk(value: serde_json::Value) -> Result<Option<Key>, String> {
    let jwk: RawJwk = serde_json::from_value(value).map_err(|e| e.to_string())?;
    let kid = jwk.kid.clone();
    if jwk.use_.as_deref().is_some_and(|u| u != "sig") {
        tracing::debug!(?kid, "skipping a JWK not meant for signatures");
        return Ok(None);
    }
    if let Some(ops) = &jwk.key_ops
        && !ops.iter().any(|o| o == "verify")
    {
        tracing::debug!(?kid, "skipping a JWK whose key_ops exclude verify");
        return Ok(None);
    }
    let required = |v: &Option<String>, name: &str| {
        v.clone()
            .ok_or_else(|| format!("{} key without `{name}`", jwk.kty))
    };
    let (type_algs, decoding, parsed) = match jwk.kty.as_str() {
        "RSA" => {
            let n = required(&jwk.n, "n")?;
            let e = required(&jwk.e, "e")?;
            let modulus = URL_SAFE_NO_PAD
                .decode(n.trim_end_matches('='))
                .map_err(|e| format!("RSA modulus is not base64url: {e}"))?;
            let bits = match modulus.iter().position(|b| *b != 0) {
                Some(i) => (modulus.len() - i) * 8 - modulus[i].leading_zeros() as usize,
                None => 0,
            };
            if bits < MIN_RSA_BITS {
                return Err(format!(
                    "RSA key of {bits} bits; at least {MIN_RSA_BITS} are required"
                ));
            }
            let key = DecodingKey::from_rsa_components(&n, &e).map_err(|e| e.to_string())?;
            (AlgSet::RSA, key, None)
        }
        "EC" => {
            let alg = match jwk.crv.as_deref() {
                Some("P-256") => Algorithm::ES256,
                Some("P-384") => Algorithm::ES384,
                other => return Err(format!("unsupported EC curve {other:?}")),
            };
            let (x, y) = (required(&jwk.x, "x")?, required(&jwk.y, "y")?);
            let width = if alg == Algorithm::ES256 { 32 } else { 48 };
            let mut point = vec![0x04]; // uncompressed: x then y
            for c in [&x, &y] {
                let coordinate = URL_SAFE_NO_PAD
                    .decode(c)
                    .map_err(|e| format!("EC coordinate is not base64url: {e}"))?;
                if coordinate.len() != width {
                    return Err(format!(
                        "EC coordinate of {} bytes; {width} expected",
                        coordinate.len()
                    ));
                }
                point.extend_from_slice(&coordinate);
            }
            let verification = if alg == Algorithm::ES256 {
                &signature::ECDSA_P256_SHA256_FIXED
            } else {
                &signature::ECDSA_P384_SHA384_FIXED
            };
            let parsed = ParsedPublicKey::new(verification, &point)
                .map_err(|_| "the EC point is not on the curve".to_owned())?;
            let key = DecodingKey::from_ec_components(&x, &y).map_err(|e| e.to_string())?;
            (AlgSet::of(alg), key, Some(parsed))
        }
        "OKP" => {
            if jwk.crv.as_deref() != Some("Ed25519") {
                return Err(format!("unsupported OKP curve {:?}", jwk.crv));
            }
            let x = required(&jwk.x, "x")?;
            let public = URL_SAFE_NO_PAD
                .decode(&x)
                .map_err(|e| format!("OKP key is not base64url: {e}"))?;
            if public.len() != 32 {
                return Err(format!(
                    "Ed25519 key of {} bytes; 32 expected",
                    public.len()
                ));
            }
            let parsed = ParsedPublicKey::new(&signature::ED25519, &public)
                .map_err(|_| "the Ed25519 key is not valid".to_owned())?;
            let key = DecodingKey::from_ed_components(&x).map_err(|e| e.to_string())?;
            (AlgSet::of(Algorithm::EdDSA), key, Some(parsed))
        }
        "oct" => return Err("symmetric (oct) keys are never accepted".into()),
        other => return Err(format!("unsupported key type `{other}`")),
    };
    let algs = match jwk.alg.as_deref() {
        None => type_algs,
        Some(name) => {
            let alg: Algorithm = name
                .parse()
                .map_err(|_| format!("unsupported alg `{name}`"))?;
            let set = type_algs.intersect(AlgSet::of(alg));
            if set.is_empty() {
                return Err(format!("alg `{name}` does not fit a {} key", jwk.kty));
            }
            set
        }
    };
    let optional = [&jwk.crv, &jwk.n, &jwk.e, &jwk.x, &jwk.y];
    let mut material = vec![jwk.kty.as_bytes()];
    material.extend(optional.map(|v| v.as_deref().unwrap_or_default().as_bytes()));
    Ok(Some(Key {
        kid: kid.map(Into::into),
        algs,
        decoding,
        parsed,
        fingerprint: fingerprint(&material),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const P256: &str = r#"{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0""#;

    fn set(keys: &[String]) -> Result<KeySet, Error> {
        KeySet::from_jwks(format!(r#"{{"keys":[{}]}}"#, keys.join(",")).as_bytes())
    }

    /// A set of the same P-256 key under each of `kids`.
    fn p256(kids: &[&str]) -> KeySet {
        let keys: Vec<String> = kids
            .iter()
            .map(|kid| format!(r#"{P256},"kid":"{kid}"}}"#))
            .collect();
        set(&keys).unwrap()
    }

    #[test]
    fn alg_is_inferred_and_checked_against_the_key_type() {
        let keys = p256(&["a"]);
        let key = keys.find(Some("a"), Algorithm::ES256).unwrap();
        assert!(key.algs.contains(Algorithm::ES256));
        assert!(!key.algs.contains(Algorithm::ES384));
        assert!(!key.algs.contains(Algorithm::RS256));
        // An EC key that claims an RSA algorithm is refused; the set keeps the good key.
        let keys = set(&[
            format!(r#"{P256},"kid":"bad","alg":"RS256"}}"#),
            format!(r#"{P256},"kid":"good","alg":"ES256"}}"#),
        ])
        .unwrap();
        assert_eq!(keys.kids().collect::<Vec<_>>(), ["good"]);
    }

    #[test]
    fn unchanged_keys_keep_their_identity_across_refreshes() {
        let old = p256(&["a", "b"]);
        let new = p256(&["b", "c"]).reuse_unchanged(&old);
        let b_old = old.find(Some("b"), Algorithm::ES256).unwrap();
        let b_new = new.find(Some("b"), Algorithm::ES256).unwrap();
        assert!(Arc::ptr_eq(b_old, b_new));
        let changed = set(&[format!(r#"{P256},"kid":"b","alg":"ES256","use":"sig"}}"#)])
            .unwrap()
            .reuse_unchanged(&old);
        assert!(Arc::ptr_eq(
            b_old,
            changed.find(Some("b"), Algorithm::ES256).unwrap()
        ));
        let moved = p256(&["z"]).reuse_unchanged(&old);
        assert!(!Arc::ptr_eq(
            b_old,
            moved.find(Some("z"), Algorithm::ES256).unwrap()
        ));
    }

    #[test]
    fn unusable_sets_fail_and_empty_sets_do_not() {
        assert!(set(&[r#"{"kty":"oct","k":"c2VjcmV0"}"#.into()]).is_err());
        assert!(set(&[]).unwrap().is_empty());
        assert!(KeySet::from_jwks(b"<html>oops</html>").is_err());
        assert!(KeySet::from_jwks(br#"{"keys":{}}"#).is_err());
    }

    #[test]
    fn kidless_tokens_match_only_a_single_candidate() {
        let keys = p256(&["a", "b"]);
        assert!(keys.find(None, Algorithm::ES256).is_none());
        let keys = p256(&["a"]);
        assert!(keys.find(None, Algorithm::ES256).is_some());
        assert!(keys.find(None, Algorithm::RS256).is_none());
    }
}
