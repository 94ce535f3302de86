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
//! // On SQLite the new key signs from now on; the old one is published until its tokens have
//! // expired.
//! assert_eq!(rotation.previous_kid.as_deref(), Some(first[0].kid.as_str()));
//! assert_eq!(issuer.signing_keys().await?.len(), 2);
//! # Ok(()) }
//! ```
//!
//! One key is active: it signs every new token. [`Issuer::rotate_signing_key`](crate::Issuer::rotate_signing_key)
//! generates a new key and publishes it; it starts signing at `activatesAt`, and the key it
//! replaces stops signing then, leaves the database with its private half, and stays in the
//! JWKS until `retire_at` = `activatesAt` + token lifetime + `key_retire_leeway`, when every
//! token it signed has expired; after that it leaves the JWKS (checked on each JWKS read, about
//! twice a second in the background, and at start).
//!
//! On SQLite (one process) a new key signs at once. On PostgreSQL, where replicas share the
//! keys, rotation is publish-then-sign: `activatesAt` = now + `jwks_max_age_secs` + 1 s, so that
//! every replica has the new key in its JWKS (replicas reload keys within 1 s of a change) and
//! every verifier has fetched it (its cache lives at most `jwks_max_age_secs`) before any
//! replica signs with it. Every replica switches at `activatesAt` by its own clock, without a
//! database round trip. Rotations are serialized by an advisory lock; with
//! `key_rotation_interval_secs` every replica checks about twice a second whether the newest key
//! is that old, and the first to take the lock rotates (the others find the new key and do
//! nothing).
//!
//! The key id is the key's RFC 7638 JWK thumbprint (SHA-256, base64url). Private keys are PKCS#8
//! DER in the database (sealed with the key-encryption key when one is configured); no `Debug`
//! or answer shows them.

use std::sync::Arc;

use arc_swap::ArcSwap;
use aws_lc_rs::{
    encoding::AsDer as _,
    rand::SystemRandom,
    rsa::KeySize,
    signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, RSA_PKCS1_SHA256, RsaKeyPair},
};
use base64::{
    Engine as _,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
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
    /// For a key published ahead of signing: when it starts signing, Unix seconds (RFC 3339 in
    /// JSON).
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "dates::serialize_opt"
    )]
    pub activate_at: Option<u64>,
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
    /// The new key's id.
    pub kid: String,
    /// When it starts signing (and the previous key stops), Unix seconds (RFC 3339 in JSON):
    /// the rotation time on SQLite, `jwks_max_age_secs` + 1 s later on PostgreSQL.
    #[serde(serialize_with = "dates::serialize")]
    pub activates_at: u64,
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

/// A key that signs from `from` on (until the next signer's `from`).
struct Signer {
    kid: String,
    key: KeyPair,
    /// The token header, `{"typ":"at+jwt","alg","kid"}` in base64url: the same for every token
    /// this key signs.
    header: String,
    from: u64,
}

impl Signer {
    /// A token of `claims`: the JWS compact serialization (RFC 7515 §7.1),
    /// `header.payload.signature`, each in base64url.
    fn sign(&self, claims: &impl Serialize) -> Result<String, Error> {
        let payload = serde_json::to_vec(claims).map_err(|e| key_error("a token's claims", e))?;
        let mut token = String::with_capacity(self.header.len() + payload.len() * 4 / 3 + 350);
        token.push_str(&self.header);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
        let mut signature = String::with_capacity(344);
        self.key.sign_into(token.as_bytes(), &mut signature)?;
        token.push('.');
        token.push_str(&signature);
        Ok(token)
    }
}

/// A private key, parsed once. (jsonwebtoken's `encode` parses its key on every call, which
/// cost as much CPU as the ES256 signature itself.)
enum KeyPair {
    Ec(EcdsaKeyPair),
    Rsa(RsaKeyPair),
}

impl KeyPair {
    fn from_pkcs8(alg: SigningAlg, pkcs8: &[u8]) -> Result<KeyPair, aws_lc_rs::error::KeyRejected> {
        Ok(match alg {
            SigningAlg::ES256 => KeyPair::Ec(EcdsaKeyPair::from_pkcs8(
                &ECDSA_P256_SHA256_FIXED_SIGNING,
                pkcs8,
            )?),
            SigningAlg::RS256 => KeyPair::Rsa(RsaKeyPair::from_pkcs8(pkcs8)?),
        })
    }

    /// The JWS signature (RFC 7518 §3.3 and §3.4) of `message`, appended in base64url.
    fn sign_into(&self, message: &[u8], out: &mut String) -> Result<(), Error> {
        let failed = |_| Error::Key("signing a token failed".into());
        let rng = SystemRandom::new();
        match self {
            KeyPair::Ec(key) => {
                let signature = key.sign(&rng, message).map_err(failed)?;
                URL_SAFE_NO_PAD.encode_string(signature.as_ref(), out);
            }
            KeyPair::Rsa(key) => {
                let mut signature = vec![0; key.public_modulus_len()];
                key.sign(&RSA_PKCS1_SHA256, &rng, message, &mut signature)
                    .map_err(failed)?;
                URL_SAFE_NO_PAD.encode_string(&signature, out);
            }
        }
        Ok(())
    }
}

struct PublishedKey {
    info: SigningKeyInfo,
    jwk: serde_json::Value,
}

struct KeyState {
    /// The keys holding a private half, by `from`: the last one whose `from` has come signs.
    signers: Vec<Arc<Signer>>,
    /// Newest first (`active` is set at read time).
    published: Vec<PublishedKey>,
    /// The earliest moment the database needs a clean-up: a `retire_at`, or a signer's end.
    next_cleanup: Option<u64>,
}

impl KeyState {
    /// The key that signs at `now`; the earliest signer if none has started (a clock set back).
    fn signer(&self, now: u64) -> &Arc<Signer> {
        self.signers
            .iter()
            .rev()
            .find(|s| s.from <= now)
            .unwrap_or(&self.signers[0])
    }
}

/// The signing keys of one issuer.
pub(crate) struct KeyRing {
    store: Store,
    clock: Clock,
    alg: SigningAlg,
    retire_after: u64,
    /// From a rotation to the moment its key signs: 0 on SQLite, the JWKS lifetime + the
    /// replicas' reload bound on PostgreSQL.
    activation_delay: u64,
    /// Clean-ups are not tried while the database is known to be down.
    health: Arc<crate::sync::Health>,
    state: ArcSwap<KeyState>,
    rotation: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field(
                "active_kid",
                &self.state.load().signer(self.clock.unix_now()).kid,
            )
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
        activate_at: None,
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

/// The key state of the stored rows (already pruned of retired keys); `None` when no key can
/// sign.
fn state_from_rows(rows: &[KeyRow]) -> Result<Option<KeyState>, Error> {
    let mut signers = Vec::new();
    let mut published = Vec::new();
    let mut next_cleanup: Option<u64> = None;
    let mut cleanup_at = |t: u64| next_cleanup = Some(next_cleanup.map_or(t, |n| n.min(t)));
    for row in rows {
        let Some(alg) = SigningAlg::parse(&row.alg) else {
            return Err(Error::Key(format!(
                "stored key `{}` has an unknown algorithm `{}`",
                row.kid, row.alg
            )));
        };
        if let Some(pkcs8) = row.private_key.as_deref() {
            // Fails on a damaged key, here rather than at the first token.
            Jwk::from_encoding_key(&encoding_key(alg, pkcs8)?, algorithm(alg))
                .map_err(|e| key_error(&format!("stored key `{}`", row.kid), e))?;
            let key = KeyPair::from_pkcs8(alg, pkcs8)
                .map_err(|e| key_error(&format!("stored key `{}`", row.kid), e))?;
            let mut header = Header::new(algorithm(alg));
            header.typ = Some("at+jwt".into());
            header.kid = Some(row.kid.clone());
            let header = serde_json::to_vec(&header).map_err(|e| key_error("a token header", e))?;
            signers.push(Arc::new(Signer {
                kid: row.kid.clone(),
                key,
                header: URL_SAFE_NO_PAD.encode(header),
                from: unix(row.activate_at.unwrap_or(row.created_at)),
            }));
            if let Some(until) = row.retired_at {
                cleanup_at(unix(until));
            }
        } else if row.retired_at.is_none() {
            return Err(Error::Key(format!(
                "the active key `{}` has no private key",
                row.kid
            )));
        }
        if let Some(t) = row.retire_at {
            cleanup_at(unix(t));
        }
        let jwk: serde_json::Value = serde_json::from_str(&row.public_jwk)
            .map_err(|e| key_error(&format!("stored public key `{}`", row.kid), e))?;
        published.push(PublishedKey {
            info: SigningKeyInfo {
                kid: row.kid.clone(),
                alg: alg.as_str(),
                active: false,
                created_at: unix(row.created_at),
                activate_at: row.activate_at.map(unix),
                retire_at: row.retire_at.map(unix),
            },
            jwk,
        });
    }
    if signers.is_empty() {
        return Ok(None);
    }
    signers.sort_by_key(|s| s.from);
    published.sort_by_key(|p| std::cmp::Reverse((p.info.created_at, p.info.kid.clone())));
    Ok(Some(KeyState {
        signers,
        published,
        next_cleanup,
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
        jwks_max_age: u64,
        health: Arc<crate::sync::Health>,
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
        let activation_delay = if store.is_shared() {
            jwks_max_age.saturating_add(crate::sync::RELOAD_BOUND.as_secs())
        } else {
            0
        };
        Ok(KeyRing {
            store,
            clock,
            alg,
            retire_after: token_lifetime.saturating_add(leeway),
            activation_delay,
            health,
            state: ArcSwap::from_pointee(state),
            rotation: tokio::sync::Mutex::new(()),
        })
    }

    /// Signs `claims` with the key that signs now: header `{alg, typ: "at+jwt", kid}`. Returns
    /// the token and the kid.
    pub(crate) fn sign(&self, claims: &impl Serialize) -> Result<(String, String), Error> {
        let state = self.state.load();
        let signer = state.signer(self.clock.unix_now());
        Ok((signer.sign(claims)?, signer.kid.clone()))
    }

    /// The published keys at `now`, the active one first, each with its `active` flag.
    fn published_now<T>(&self, pick: impl Fn(&PublishedKey, bool) -> T) -> Vec<T> {
        let state = self.state.load();
        let now = self.clock.unix_now();
        let active = &state.signer(now).kid;
        let live = || {
            state
                .published
                .iter()
                .filter(|p| p.info.retire_at.is_none_or(|t| t > now))
        };
        live()
            .filter(|p| &p.info.kid == active)
            .map(|p| pick(p, true))
            .chain(
                live()
                    .filter(|p| &p.info.kid != active)
                    .map(|p| pick(p, false)),
            )
            .collect()
    }

    /// The JWK set: `{"keys": [...]}`, the active key first.
    pub(crate) async fn jwks(&self) -> serde_json::Value {
        self.prune().await;
        let keys = self.published_now(|p, _| p.jwk.clone());
        serde_json::json!({ "keys": keys })
    }

    /// The published keys, the active one first.
    pub(crate) async fn infos(&self) -> Vec<SigningKeyInfo> {
        self.prune().await;
        self.published_now(|p, active| SigningKeyInfo {
            active,
            ..p.info.clone()
        })
    }

    /// The newest key's creation time.
    fn newest(&self) -> u64 {
        self.state
            .load()
            .published
            .first()
            .map_or(0, |p| p.info.created_at)
    }

    /// Drops keys whose publication has ended and the private halves of keys that stopped
    /// signing, from the database, then reloads. A failure only delays this (memory is filtered
    /// by time on every read anyway). Nothing is tried while the database is known to be down.
    pub(crate) async fn prune(&self) {
        let now = self.clock.unix_now();
        let due = || self.state.load().next_cleanup.is_some_and(|t| t <= now);
        if !due() || !self.health.is_up() {
            return;
        }
        let _guard = self.rotation.lock().await;
        if !due() {
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

    /// Reads the keys from the database again (another replica changed them).
    pub(crate) async fn reload(&self) -> Result<(), Error> {
        let state = state_from_rows(&self.store.keys().await?)?
            .ok_or_else(|| Error::Key("no active signing key is stored".into()))?;
        self.state.store(Arc::new(state));
        Ok(())
    }

    /// Generates and publishes a key that signs from `activates_at` on (see the module docs);
    /// the previous one stays published until every token it signed has expired.
    pub(crate) async fn rotate(&self) -> Result<KeyRotation, Error> {
        self.publish(None)
            .await?
            .ok_or_else(|| Error::Internal("the rotation was not stored".into()))
    }

    /// A scheduled rotation: when the newest key is `interval` old, unless another replica
    /// made one first (checked under the rotation lock).
    pub(crate) async fn rotate_if_due(&self, interval: u64) -> Result<Option<KeyRotation>, Error> {
        let now = self.clock.unix_now();
        if self.newest().saturating_add(interval) > now {
            return Ok(None);
        }
        let since = i64::try_from(now.saturating_sub(interval)).unwrap_or(i64::MAX);
        let rotation = self.publish(Some(since)).await?;
        if rotation.is_none() {
            self.reload().await?; // another replica rotated; learn its key now
        }
        Ok(rotation)
    }

    async fn publish(&self, unless_newer_than: Option<i64>) -> Result<Option<KeyRotation>, Error> {
        let _guard = self.rotation.lock().await;
        let alg = self.alg;
        let created = i64::try_from(self.clock.unix_now()).unwrap_or(i64::MAX);
        let mut row = tokio::task::spawn_blocking(move || generate(alg, created))
            .await
            .map_err(|e| Error::Internal(format!("key generation task: {e}")))??;
        // "Now" is read after the (slow) generation, right before the switch.
        let now = self.clock.unix_now();
        row.created_at = i64::try_from(now).unwrap_or(i64::MAX);
        let activates_at = now.saturating_add(self.activation_delay);
        let retire_at = activates_at.saturating_add(self.retire_after);
        let to_i64 = |t: u64| i64::try_from(t).unwrap_or(i64::MAX);
        // The key signing until the switch: the newest signer (after a reload, another
        // replica's rotation included).
        self.reload().await?;
        let previous_kid = self.state.load().signers.last().map(|s| s.kid.clone());
        let stored = self
            .store
            .rotate_keys(
                &row,
                to_i64(activates_at),
                to_i64(retire_at),
                unless_newer_than,
            )
            .await?;
        if !stored {
            return Ok(None);
        }
        self.reload().await?;
        audit::admin(
            "signing_key_rotated",
            None,
            &format!(
                "kid={} activates_at={activates_at} previous_kid={} previous_retire_at={retire_at}",
                row.kid,
                previous_kid.as_deref().unwrap_or("")
            ),
        );
        Ok(Some(KeyRotation {
            kid: row.kid,
            activates_at,
            previous_kid,
            previous_retire_at: Some(retire_at),
        }))
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
            // What the issuer signs, checked by jsonwebtoken with the published key.
            let token = state.signers[0].sign(&serde_json::json!({"a": 1})).unwrap();
            let jwk: Jwk = serde_json::from_value(jwk).unwrap();
            let mut validation = jsonwebtoken::Validation::new(algorithm(alg));
            validation.required_spec_claims.clear();
            validation.validate_exp = false;
            validation.validate_aud = false;
            let decoded = jsonwebtoken::decode::<serde_json::Value>(
                &token,
                &jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap(),
                &validation,
            )
            .unwrap();
            assert_eq!(decoded.claims, serde_json::json!({"a": 1}));
            assert_eq!(decoded.header.alg, algorithm(alg));
            assert_eq!(decoded.header.typ.as_deref(), Some("at+jwt"));
            assert_eq!(decoded.header.kid.as_deref(), Some(row.kid.as_str()));
            // One bit of the payload changed: refused.
            let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
            parts[1] = URL_SAFE_NO_PAD.encode(br#"{"a":2}"#);
            let forged = parts.join(".");
            assert!(
                jsonwebtoken::decode::<serde_json::Value>(
                    &forged,
                    &jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap(),
                    &validation,
                )
                .is_err()
            );
        }
    }
}
