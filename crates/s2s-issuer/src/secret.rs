//! Client secrets: generation (256 random bits), argon2id hashing and verification.
//!
//! Verification of an unknown client id runs argon2 against a dummy hash of the same cost, so
//! the answer takes about as long as for a known client with a wrong secret. Hashing runs on the
//! blocking pool behind a semaphore (each run holds `memory_kib` of memory).
//!
//! Successful verifications are remembered: `(client id, SHA-256 of the presented secret)` → the
//! stored hash it matched. A later request with the same pair skips argon2 when that stored hash
//! is still one the account accepts (its current hash, or its previous one inside the grace
//! period), so rotating, disabling or deleting an account needs no explicit invalidation: the
//! account row is read on every request, and a hash it no longer holds matches nothing. Failed
//! verifications are never remembered. The secret has 256 bits of entropy, so its SHA-256 in
//! memory reveals nothing usable.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use argon2::{
    Algorithm, Argon2, Params, PasswordHash, PasswordHasher as _, PasswordVerifier as _, Version,
    password_hash::SaltString,
};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use secrecy::{ExposeSecret as _, SecretString};
use sha2::{Digest as _, Sha256};
use tokio::sync::Semaphore;

use crate::{Error, config::SecretHashConfig};

/// How many verified (client, secret) pairs are remembered at most.
const CACHE_CAPACITY: usize = 10_000;

/// A new client secret: 32 random bytes, base64url without padding (43 characters).
pub(crate) fn generate_secret() -> SecretString {
    let bytes: [u8; 32] = rand::random();
    SecretString::from(URL_SAFE_NO_PAD.encode(bytes))
}

/// A new client id: 16 random bytes, lowercase hex.
pub(crate) fn generate_client_id() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// (client id, SHA-256 of a secret that verified).
type VerifiedKey = (String, [u8; 32]);

/// Hashes and verifies secrets.
pub(crate) struct SecretHasher {
    params: Params,
    dummy_hash: String,
    permits: Semaphore,
    verified: Mutex<HashMap<VerifiedKey, Arc<str>>>,
}

impl std::fmt::Debug for SecretHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretHasher")
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

fn argon2(params: &Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
}

fn hash_blocking(params: &Params, secret: &[u8]) -> Result<String, Error> {
    let salt_bytes: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&salt_bytes)
        .map_err(|e| Error::Internal(format!("salt encoding: {e}")))?;
    argon2(params)
        .hash_password(secret, &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Internal(format!("argon2: {e}")))
}

/// Verifies with the parameters stored in the hash (so a change of configured cost leaves
/// existing hashes valid). An unparsable hash matches nothing.
fn verify_blocking(secret: &[u8], phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(hash) => Argon2::default().verify_password(secret, &hash).is_ok(),
        Err(_) => false,
    }
}

impl SecretHasher {
    pub(crate) fn new(config: SecretHashConfig) -> Result<Self, Error> {
        let params = Params::new(
            config.memory_kib,
            config.iterations,
            config.parallelism,
            None,
        )
        .map_err(|e| Error::Config {
            field: "secret_hash".into(),
            message: e.to_string(),
        })?;
        let dummy: [u8; 32] = rand::random();
        let dummy_hash = hash_blocking(&params, &dummy)?;
        let lanes = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(SecretHasher {
            params,
            dummy_hash,
            permits: Semaphore::new(lanes.max(2)),
            verified: Mutex::new(HashMap::new()),
        })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Error> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| Error::Internal("the hashing semaphore is closed".into()))?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| Error::Internal(format!("hashing task: {e}")))
    }

    /// The argon2id PHC string of `secret`.
    pub(crate) async fn hash(&self, secret: &SecretString) -> Result<String, Error> {
        let params = self.params.clone();
        let secret = SecretString::from(secret.expose_secret().to_owned());
        self.blocking(move || hash_blocking(&params, secret.expose_secret().as_bytes()))
            .await?
    }

    /// Whether `secret` matches one of `accepted` (the account's current hash and, during a
    /// grace period, its previous one). `accepted` empty (unknown client): a dummy verification
    /// of the same cost runs, and the answer is false.
    pub(crate) async fn verify(
        &self,
        client_id: &str,
        secret: &str,
        accepted: &[&str],
    ) -> Result<bool, Error> {
        let digest: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        let key = (client_id.to_owned(), digest);
        if !accepted.is_empty() {
            let remembered = self
                .verified
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&key)
                .cloned();
            if let Some(phc) = remembered
                && accepted.iter().any(|a| **a == *phc)
            {
                return Ok(true);
            }
        }
        let secret = SecretString::from(secret.to_owned());
        let candidates: Vec<String> = if accepted.is_empty() {
            vec![self.dummy_hash.clone()]
        } else {
            accepted.iter().map(|s| (*s).to_owned()).collect()
        };
        let unknown = accepted.is_empty();
        let matched = self
            .blocking(move || {
                candidates
                    .into_iter()
                    .find(|phc| verify_blocking(secret.expose_secret().as_bytes(), phc))
            })
            .await?;
        match matched {
            Some(phc) if !unknown => {
                let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
                if verified.len() >= CACHE_CAPACITY {
                    verified.clear();
                }
                verified.insert(key, Arc::from(phc));
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Forgets the remembered verifications of one client (after a rotation or deletion; not
    /// needed for correctness, see the module docs, but it frees the memory at once).
    pub(crate) fn forget(&self, client_id: &str) {
        self.verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(id, _), _| id != client_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> SecretHasher {
        SecretHasher::new(SecretHashConfig {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        })
        .unwrap()
    }

    #[tokio::test]
    async fn hashes_verify_and_the_cache_follows_the_accepted_hashes() {
        let hasher = cheap();
        let secret = generate_secret();
        assert_eq!(secret.expose_secret().len(), 43);
        let hash = hasher.hash(&secret).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        let s = secret.expose_secret();
        assert!(hasher.verify("c", s, &[&hash]).await.unwrap());
        assert!(!hasher.verify("c", "wrong", &[&hash]).await.unwrap());
        assert!(!hasher.verify("c", s, &[]).await.unwrap(), "unknown client");
        // Remembered, but only while the account still holds that hash.
        let other = hasher.hash(&generate_secret()).await.unwrap();
        assert!(!hasher.verify("c", s, &[&other]).await.unwrap());
        assert!(!hasher.verify("d", s, &[&other]).await.unwrap());
    }

    #[test]
    fn ids_and_secrets_are_random() {
        assert_ne!(generate_client_id(), generate_client_id());
        assert_eq!(generate_client_id().len(), 32);
        assert_ne!(
            generate_secret().expose_secret(),
            generate_secret().expose_secret()
        );
    }
}
