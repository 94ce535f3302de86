//! Signing keys: generation, storage, rotation and the published JWK set.
//!
//! ```
//! # async fn demo() -> Result<(), s2s_issuer::Error> {
//! use s2s_issuer::{Issuer, IssuerConfig};
//!
//! let mut config = IssuerConfig::new("http://127.0.0.1:8080");
//! config.db = ":memory:".into();
//! let issuer = Issuer::open(config).await?;
//! let first = issuer.signing_keys().await?;
//! assert_eq!(first.len(), 1);
//!
//! let rotation = issuer.rotate_signing_key().await?;
//! // The new key signs from now on; the old one is published until its tokens have expired.
//! assert_eq!(rotation.previous_kid.as_deref(), Some(first[0].kid.as_str()));
//! assert_eq!(issuer.signing_keys().await?.len(), 2);
//! # Ok(()) }
//! ```
//!
//! One key is active: it signs every new token. [`Issuer::rotate_signing_key`](crate::Issuer::rotate_signing_key) generates a new key
//! that signs at once and retires the active one: its private half is erased from the database
//! and its public half stays in the JWKS until `retire_at` = rotation time + token lifetime +
//! `key_retire_leeway`, when every token it signed has expired; after that it leaves the JWKS
//! (checked on each JWKS read and token issuance, and at start).
//!
//! The key id is the key's RFC 7638 JWK thumbprint (SHA-256, base64url). Private keys are PKCS#8
//! DER in the database; no `Debug` or answer shows them.

use std::sync::Arc;

use arc_swap::ArcSwap;
use aws_lc_rs::{
    encoding::AsDer as _,
    rand::SystemRandom,
    rsa::KeySize,
    signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair},
};
use base64::{Engine as _, engine::general_purpose::STANDARD};
use jsonwebtoken::{
    Algorithm, EncodingKey, Header,
    jwk::{Jwk, PublicKeyUse, ThumbprintHash},
};
use serde::Serialize;

use crate::{
    Clock, Error, SigningAlg, audit, dates,
    store::{KeyRow, Store},
};

/// Public facts about one signing key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SigningKeyInfo {
    /// The key id (`kid`).
    pub kid: String,
    /// `ES256` or `RS256`.
    pub alg: &'static str,
    /// Whether it signs new tokens.
    pub active: bool,
    /// Creation time, Unix seconds (RFC 3339 in JSON).
    #[serde(serialize_with = "dates::serialize")]
    pub created_at: u64,
    /// For a rotated-out key: when it leaves the JWKS, Unix seconds (RFC 3339 in JSON).
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "dates::serialize_opt"
    )]
    pub retire_at: Option<u64>,
}

/// What [`Issuer::rotate_signing_key`](crate::Issuer::rotate_signing_key) did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyRotation {
    /// The new active key's id.
    pub kid: String,
    /// The key it replaced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_kid: Option<String>,
    /// When the replaced key leaves the JWKS, Unix seconds (RFC 3339 in JSON).
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "dates::serialize_opt"
    )]
    pub previous_retire_at: Option<u64>,
}

/// The key that signs.
struct ActiveKey {
    kid: String,
    alg: Algorithm,
    key: EncodingKey,
}

struct PublishedKey {
    info: SigningKeyInfo,
    jwk: serde_json::Value,
}

struct KeyState {
    active: Arc<ActiveKey>,
    /// Active first, then rotated-out keys newest first.
    published: Vec<PublishedKey>,
    /// The earliest `retire_at` among the published keys.
    next_retirement: Option<u64>,
}

/// The signing keys of one issuer.
pub(crate) struct KeyRing {
    store: Store,
    clock: Clock,
    alg: SigningAlg,
    retire_after: u64,
    state: ArcSwap<KeyState>,
    rotation: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("active_kid", &self.state.load().active.kid)
            .finish_non_exhaustive()
    }
}

/// The key-encryption key: AES-256-GCM over the private signing keys stored in the database,
/// with the key id as associated data (a blob moved to another row does not decrypt).
pub(crate) struct Kek(aws_lc_rs::aead::LessSafeKey);

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kek(..)")
    }
}

/// The prefix of an encrypted private key: format version 1, then nonce and ciphertext.
const SEALED_PREFIX: &[u8] = b"s2s-kek1:";

impl Kek {
    /// From base64 (standard or URL-safe, padded or not) of exactly 32 bytes; the error never
    /// repeats the input.
    pub(crate) fn from_base64(text: &str) -> Result<Kek, String> {
        use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
        let bytes = [STANDARD, URL_SAFE]
            .iter()
            .find_map(|e| e.decode(text).ok())
            .or_else(|| URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).ok())
            .ok_or("is not base64 (expected base64 of 32 random bytes)")?;
        if bytes.len() != 32 {
            return Err(format!(
                "decodes to {} bytes; expected 32 (e.g. `openssl rand -base64 32`)",
                bytes.len()
            ));
        }
        let key = aws_lc_rs::aead::UnboundKey::new(&aws_lc_rs::aead::AES_256_GCM, &bytes)
            .map_err(|_| "is not an AES-256 key".to_owned())?;
        Ok(Kek(aws_lc_rs::aead::LessSafeKey::new(key)))
    }

    /// Encrypts `plain` for the key `kid`.
    pub(crate) fn seal(&self, kid: &str, plain: &[u8]) -> Result<Vec<u8>, Error> {
        let mut nonce = [0u8; aws_lc_rs::aead::NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|e| key_error("random nonce", e))?;
        let mut data = plain.to_vec();
        self.0
            .seal_in_place_append_tag(
                aws_lc_rs::aead::Nonce::assume_unique_for_key(nonce),
                aws_lc_rs::aead::Aad::from(kid.as_bytes()),
                &mut data,
            )
            .map_err(|e| key_error("encrypting a private key", e))?;
        Ok([SEALED_PREFIX, &nonce, &data].concat())
    }

    /// Decrypts what [`Kek::seal`] made for `kid`; `None` when this is not the key (or the
    /// blob was altered or moved).
    pub(crate) fn open(&self, kid: &str, sealed: &[u8]) -> Option<Vec<u8>> {
        let rest = sealed.strip_prefix(SEALED_PREFIX)?;
        if rest.len() < aws_lc_rs::aead::NONCE_LEN {
            return None;
        }
        let (nonce, data) = rest.split_at(aws_lc_rs::aead::NONCE_LEN);
        let nonce = aws_lc_rs::aead::Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut data = data.to_vec();
        let plain = self
            .0
            .open_in_place(nonce, aws_lc_rs::aead::Aad::from(kid.as_bytes()), &mut data)
            .ok()?;
        Some(plain.to_vec())
    }

    /// Whether a stored private key is encrypted.
    pub(crate) fn is_sealed(stored: &[u8]) -> bool {
        stored.starts_with(SEALED_PREFIX)
    }
}

fn key_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Key(format!("{what}: {e}"))
}

/// A new private key for `alg` as PKCS#8 v1 DER: P-256 for ES256, RSA 2048 for RS256 (what the
/// issuer stores). Public for tools and tests that need keys of the same kind (the
/// `s2s-auth-testkit` crate generates its keys here).
pub fn generate_private_key(alg: SigningAlg) -> Result<Vec<u8>, Error> {
    match alg {
        SigningAlg::ES256 => Ok(EcdsaKeyPair::generate_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &SystemRandom::new(),
        )
        .map_err(|e| key_error("generating a P-256 key", e))?
        .as_ref()
        .to_vec()),
        SigningAlg::RS256 => {
            let pair = aws_lc_rs::rsa::KeyPair::generate(KeySize::Rsa2048)
                .map_err(|e| key_error("generating an RSA key", e))?;
            let der: aws_lc_rs::encoding::Pkcs8V1Der<'_> = pair
                .as_der()
                .map_err(|e| key_error("encoding the RSA key", e))?;
            Ok(der.as_ref().to_vec())
        }
    }
}

/// `der` as PEM with this label (`PRIVATE KEY`, `PUBLIC KEY`): base64 in 64-column lines, a
/// trailing newline. jsonwebtoken reads RSA keys only from PEM.
pub fn pem(label: &str, der: &[u8]) -> String {
    let mut pem = format!("-----BEGIN {label}-----\n");
    for line in STANDARD.encode(der).as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str(&format!("-----END {label}-----\n"));
    pem
}

/// A new key pair as a database row (PKCS#8 private key, public JWK with kid).
fn generate(alg: SigningAlg, now: i64) -> Result<KeyRow, Error> {
    let pkcs8 = generate_private_key(alg)?;
    let key = encoding_key(alg, &pkcs8)?;
    let mut jwk = Jwk::from_encoding_key(&key, algorithm(alg))
        .map_err(|e| key_error("deriving the public key", e))?;
    let kid = jwk
        .thumbprint(ThumbprintHash::SHA256)
        .map_err(|e| key_error("computing the key id", e))?;
    jwk.common.key_id = Some(kid.clone());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    let public_jwk =
        serde_json::to_string(&jwk).map_err(|e| key_error("serializing the public key", e))?;
    Ok(KeyRow {
        kid,
        alg: alg.as_str().into(),
        private_key: Some(pkcs8),
        public_jwk,
        created_at: now,
        retired_at: None,
        retire_at: None,
    })
}

fn algorithm(alg: SigningAlg) -> Algorithm {
    match alg {
        SigningAlg::ES256 => Algorithm::ES256,
        SigningAlg::RS256 => Algorithm::RS256,
    }
}

fn encoding_key(alg: SigningAlg, pkcs8: &[u8]) -> Result<EncodingKey, Error> {
    match alg {
        SigningAlg::ES256 => Ok(EncodingKey::from_ec_der(pkcs8)),
        SigningAlg::RS256 => EncodingKey::from_rsa_pem(pem("PRIVATE KEY", pkcs8).as_bytes())
            .map_err(|e| key_error("loading the RSA key", e)),
    }
}

fn unix(t: i64) -> u64 {
    u64::try_from(t).unwrap_or(0)
}

/// The key state of the stored rows (already pruned of retired keys).
fn state_from_rows(rows: &[KeyRow]) -> Result<Option<KeyState>, Error> {
    let mut active = None;
    let mut published = Vec::new();
    for row in rows.iter().rev() {
        let Some(alg) = SigningAlg::parse(&row.alg) else {
            return Err(Error::Key(format!(
                "stored key `{}` has an unknown algorithm `{}`",
                row.kid, row.alg
            )));
        };
        let is_active = row.retired_at.is_none() && active.is_none();
        if is_active {
            let pkcs8 = row.private_key.as_deref().ok_or_else(|| {
                Error::Key(format!("the active key `{}` has no private key", row.kid))
            })?;
            let key = encoding_key(alg, pkcs8)?;
            // Fails on a damaged key, here rather than at the first token.
            Jwk::from_encoding_key(&key, algorithm(alg))
                .map_err(|e| key_error(&format!("stored key `{}`", row.kid), e))?;
            active = Some(Arc::new(ActiveKey {
                kid: row.kid.clone(),
                alg: algorithm(alg),
                key,
            }));
        }
        let jwk: serde_json::Value = serde_json::from_str(&row.public_jwk)
            .map_err(|e| key_error(&format!("stored public key `{}`", row.kid), e))?;
        published.push(PublishedKey {
            info: SigningKeyInfo {
                kid: row.kid.clone(),
                alg: alg.as_str(),
                active: is_active,
                created_at: unix(row.created_at),
                retire_at: if is_active {
                    None
                } else {
                    row.retire_at.map(unix)
                },
            },
            jwk,
        });
    }
    let Some(active) = active else {
        return Ok(None);
    };
    published.sort_by_key(|p| (!p.info.active, std::cmp::Reverse(p.info.created_at)));
    let next_retirement = published.iter().filter_map(|p| p.info.retire_at).min();
    Ok(Some(KeyState {
        active,
        published,
        next_retirement,
    }))
}

impl KeyRing {
    /// Loads the stored keys, dropping retired ones; generates the first key when none is active.
    pub(crate) async fn open(
        store: Store,
        clock: Clock,
        alg: SigningAlg,
        token_lifetime: u64,
        leeway: u64,
    ) -> Result<KeyRing, Error> {
        let now = i64::try_from(clock.unix_now()).unwrap_or(i64::MAX);
        store.delete_retired_keys(now).await?;
        let state = match state_from_rows(&store.keys().await?)? {
            Some(state) => state,
            None => {
                let row = tokio::task::spawn_blocking(move || generate(alg, now))
                    .await
                    .map_err(|e| Error::Internal(format!("key generation task: {e}")))??;
                if store.insert_first_key(&row).await? {
                    audit::admin("signing_key_created", None, &row.kid);
                }
                state_from_rows(&store.keys().await?)?
                    .ok_or_else(|| Error::Key("the new key was not stored".into()))?
            }
        };
        Ok(KeyRing {
            store,
            clock,
            alg,
            retire_after: token_lifetime.saturating_add(leeway),
            state: ArcSwap::from_pointee(state),
            rotation: tokio::sync::Mutex::new(()),
        })
    }

    /// Signs `claims` with the active key: header `{alg, typ: "at+jwt", kid}`. Returns the token
    /// and the kid.
    pub(crate) fn sign(&self, claims: &impl Serialize) -> Result<(String, String), Error> {
        let active = self.state.load().active.clone();
        let mut header = Header::new(active.alg);
        header.typ = Some("at+jwt".into());
        header.kid = Some(active.kid.clone());
        let token = jsonwebtoken::encode(&header, claims, &active.key)
            .map_err(|e| key_error("signing a token", e))?;
        Ok((token, active.kid.clone()))
    }

    /// The JWK set: `{"keys": [...]}`, the active key first.
    pub(crate) async fn jwks(&self) -> serde_json::Value {
        self.prune().await;
        let state = self.state.load();
        let now = self.clock.unix_now();
        let keys: Vec<&serde_json::Value> = state
            .published
            .iter()
            .filter(|p| p.info.retire_at.is_none_or(|t| t > now))
            .map(|p| &p.jwk)
            .collect();
        serde_json::json!({ "keys": keys })
    }

    /// The published keys, the active one first.
    pub(crate) async fn infos(&self) -> Vec<SigningKeyInfo> {
        self.prune().await;
        let now = self.clock.unix_now();
        self.state
            .load()
            .published
            .iter()
            .filter(|p| p.info.retire_at.is_none_or(|t| t > now))
            .map(|p| p.info.clone())
            .collect()
    }

    /// Drops keys whose publication has ended, from memory and the database. A failure only
    /// delays the database part (memory is filtered by time on every read anyway).
    pub(crate) async fn prune(&self) {
        let now = self.clock.unix_now();
        if self.state.load().next_retirement.is_none_or(|t| t > now) {
            return;
        }
        let _guard = self.rotation.lock().await;
        if self.state.load().next_retirement.is_none_or(|t| t > now) {
            return;
        }
        let result = async {
            let deleted = self
                .store
                .delete_retired_keys(i64::try_from(now).unwrap_or(i64::MAX))
                .await?;
            self.reload().await?;
            Ok::<_, Error>(deleted)
        }
        .await;
        match result {
            Ok(n) if n > 0 => audit::admin("signing_key_unpublished", None, &format!("{n} key(s)")),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not prune retired signing keys"),
        }
    }

    async fn reload(&self) -> Result<(), Error> {
        let state = state_from_rows(&self.store.keys().await?)?
            .ok_or_else(|| Error::Key("no active signing key is stored".into()))?;
        self.state.store(Arc::new(state));
        Ok(())
    }

    /// Generates a key that signs from now on; the previous one stays published until every
    /// token it signed has expired.
    pub(crate) async fn rotate(&self) -> Result<KeyRotation, Error> {
        let _guard = self.rotation.lock().await;
        let alg = self.alg;
        let previous_kid = self.state.load().active.kid.clone();
        let created = i64::try_from(self.clock.unix_now()).unwrap_or(i64::MAX);
        let mut row = tokio::task::spawn_blocking(move || generate(alg, created))
            .await
            .map_err(|e| Error::Internal(format!("key generation task: {e}")))??;
        // "Now" is read after the (slow) generation, right before the switch.
        let now = self.clock.unix_now();
        row.created_at = i64::try_from(now).unwrap_or(i64::MAX);
        let retire_at = now.saturating_add(self.retire_after);
        self.store
            .rotate_keys(&row, i64::try_from(retire_at).unwrap_or(i64::MAX))
            .await?;
        self.reload().await?;
        audit::admin(
            "signing_key_rotated",
            None,
            &format!(
                "kid={} previous_kid={previous_kid} previous_retire_at={retire_at}",
                row.kid
            ),
        );
        Ok(KeyRotation {
            kid: row.kid,
            previous_kid: Some(previous_kid),
            previous_retire_at: Some(retire_at),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_sign_and_publish_only_public_parts() {
        for alg in [SigningAlg::ES256, SigningAlg::RS256] {
            let row = generate(alg, 0).unwrap();
            let jwk: serde_json::Value = serde_json::from_str(&row.public_jwk).unwrap();
            assert_eq!(jwk["kid"], row.kid.as_str());
            assert_eq!(jwk["alg"], alg.as_str());
            assert_eq!(jwk["use"], "sig");
            assert!(jwk.get("d").is_none(), "{jwk}");
            let state = state_from_rows(std::slice::from_ref(&row))
                .unwrap()
                .unwrap();
            let key = &state.active.key;
            let token = jsonwebtoken::encode(
                &Header::new(algorithm(alg)),
                &serde_json::json!({"a": 1}),
                key,
            )
            .unwrap();
            assert_eq!(token.split('.').count(), 3);
        }
    }
}
