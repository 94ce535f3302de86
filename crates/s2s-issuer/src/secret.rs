//! Client secrets: generation (256 random bits), argon2id hashing and verification.
//!
//! Every secret check runs argon2 exactly [`HASHES_PER_CHECK`] times, never stopping at a
//! match: against the account's current hash and, inside a rotation grace period, its
//! previous one, padded with a dummy hash of the configured cost (an unknown client id checks
//! two dummies). So an unknown id, a wrong secret and a wrong secret for an account in its
//! grace period cost the same work and take the same time.
//!
//! Hashing runs on the blocking pool, one check per CPU at a time (each run holds `memory_kib`
//! of memory); at most `max_queued` more checks wait, and a check that finds the queue full is
//! refused ([`Checked::Busy`], a 503) rather than queued without bound.
//!
//! Successful verifications are remembered: `(client id, SHA-256 of the presented secret)` → the
//! stored hash it matched. A later request with the same pair skips argon2 (and the queue) when
//! that stored hash is still one the account accepts (its current hash, or its previous one
//! inside the grace period), so rotating, disabling or deleting an account needs no explicit
//! invalidation: the account row is read on every request, and a hash it no longer holds
//! matches nothing. Failed verifications are never remembered, so a flood of wrong secrets
//! cannot evict a verified client. The secret has 256 bits of entropy, so its SHA-256 in
//! memory reveals nothing usable.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use argon2::{
    Algorithm, Argon2, Params, PasswordHash, PasswordHasher as _, PasswordVerifier as _, Version,
    password_hash::SaltString,
};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use secrecy::{ExposeSecret as _, SecretString};
use sha2::{Digest as _, Sha256};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::{Error, config::SecretHashConfig};

/// How many verified (client, secret) pairs are remembered at most.
const CACHE_CAPACITY: usize = 10_000;

/// Argon2 runs of every secret check: an account accepts at most two hashes (current and, in a
/// grace period, previous).
pub(crate) const HASHES_PER_CHECK: usize = 2;

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
    /// One per CPU: the checks running.
    running: Arc<Semaphore>,
    /// The checks running plus those allowed to wait.
    admitted: Arc<Semaphore>,
    verified: Mutex<HashMap<VerifiedKey, Arc<str>>>,
    stats: Counters,
}

#[derive(Default)]
struct Counters {
    argon2_runs: AtomicU64,
    remembered: AtomicU64,
    busy: AtomicU64,
}

/// Counters of the secret checks since the issuer started; see
/// [`Issuer::hash_stats`](crate::Issuer::hash_stats).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HashStats {
    /// Argon2 runs of token requests (two per secret check).
    pub argon2_runs: u64,
    /// Token requests whose secret was recognised without argon2 (verified before).
    pub remembered: u64,
    /// Secret checks refused because the queue was full (answered 503).
    pub busy: u64,
}

/// The outcome of [`SecretHasher::check`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Checked {
    /// The secret matches one of the accepted hashes.
    Verified,
    /// It matches none (or the client is unknown).
    Refused,
    /// Not checked: the queue of pending checks is full.
    Busy,
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

fn verified_key(client_id: &str, secret: &str) -> VerifiedKey {
    (
        client_id.to_owned(),
        Sha256::digest(secret.as_bytes()).into(),
    )
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
        let lanes = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .max(2);
        Ok(SecretHasher {
            params,
            dummy_hash,
            running: Arc::new(Semaphore::new(lanes)),
            admitted: Arc::new(Semaphore::new(lanes + config.max_queued as usize)),
            verified: Mutex::new(HashMap::new()),
            stats: Counters::default(),
        })
    }

    /// Runs `work` on the blocking pool when a CPU is free (waiting as long as it takes).
    /// `held` (an admission) and the CPU's permit are released when the work ends, not when
    /// the caller stops waiting: a client that hangs up cannot free a slot while its argon2
    /// still runs.
    async fn blocking<T: Send + 'static>(
        &self,
        held: Option<OwnedSemaphorePermit>,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Error> {
        let permit = self
            .running
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::Internal("the hashing semaphore is closed".into()))?;
        tokio::task::spawn_blocking(move || {
            let _permits = (permit, held);
            work()
        })
        .await
        .map_err(|e| Error::Internal(format!("hashing task: {e}")))
    }

    /// The argon2id PHC string of `secret`.
    pub(crate) async fn hash(&self, secret: &SecretString) -> Result<String, Error> {
        let params = self.params.clone();
        let secret = SecretString::from(secret.expose_secret().to_owned());
        self.blocking(None, move || {
            hash_blocking(&params, secret.expose_secret().as_bytes())
        })
        .await?
    }

    /// Whether `client_id` presented this `secret` before and it matched a hash that is still
    /// one of `accepted`: no argon2 needed.
    pub(crate) fn remembered(&self, client_id: &str, secret: &str, accepted: &[&str]) -> bool {
        if accepted.is_empty() {
            return false;
        }
        let key = verified_key(client_id, secret);
        let remembered = self
            .verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned();
        let hit = remembered.is_some_and(|phc| accepted.iter().any(|a| **a == *phc));
        if hit {
            self.stats.remembered.fetch_add(1, Ordering::Relaxed);
        }
        hit
    }

    /// Checks `secret` against `accepted` (the account's hashes; empty for an unknown client)
    /// with [`HASHES_PER_CHECK`] argon2 runs whatever the outcome, or answers
    /// [`Checked::Busy`] at once when `max_queued` checks already wait. A match is remembered.
    pub(crate) async fn check(
        &self,
        client_id: &str,
        secret: &str,
        accepted: &[&str],
    ) -> Result<Checked, Error> {
        let Ok(admitted) = self.admitted.clone().try_acquire_owned() else {
            self.stats.busy.fetch_add(1, Ordering::Relaxed);
            return Ok(Checked::Busy);
        };
        let key = verified_key(client_id, secret);
        let secret = SecretString::from(secret.to_owned());
        let mut candidates: Vec<String> = accepted.iter().map(|s| (*s).to_owned()).collect();
        let real = candidates.len();
        while candidates.len() < HASHES_PER_CHECK {
            candidates.push(self.dummy_hash.clone());
        }
        self.stats
            .argon2_runs
            .fetch_add(candidates.len() as u64, Ordering::Relaxed);
        let matched = self
            .blocking(Some(admitted), move || {
                // Every candidate, no early exit: the same work for every outcome.
                let results: Vec<bool> = candidates
                    .iter()
                    .map(|phc| verify_blocking(secret.expose_secret().as_bytes(), phc))
                    .collect();
                let index = results.iter().position(|ok| *ok).filter(|i| *i < real);
                index.map(|i| candidates.swap_remove(i))
            })
            .await?;
        let Some(phc) = matched else {
            return Ok(Checked::Refused);
        };
        let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if verified.len() >= CACHE_CAPACITY {
            verified.clear();
        }
        verified.insert(key, Arc::from(phc));
        Ok(Checked::Verified)
    }

    /// The counters since start.
    pub(crate) fn stats(&self) -> HashStats {
        HashStats {
            argon2_runs: self.stats.argon2_runs.load(Ordering::Relaxed),
            remembered: self.stats.remembered.load(Ordering::Relaxed),
            busy: self.stats.busy.load(Ordering::Relaxed),
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

    fn cheap(max_queued: u32) -> SecretHasher {
        SecretHasher::new(SecretHashConfig {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
            max_queued,
        })
        .unwrap()
    }

    /// Checks and remembers: the full check, then the remembered fast path.
    async fn verifies(hasher: &SecretHasher, id: &str, secret: &str, accepted: &[&str]) -> bool {
        hasher.remembered(id, secret, accepted)
            || hasher.check(id, secret, accepted).await.unwrap() == Checked::Verified
    }

    #[tokio::test]
    async fn hashes_verify_and_the_cache_follows_the_accepted_hashes() {
        let hasher = cheap(8);
        let secret = generate_secret();
        assert_eq!(secret.expose_secret().len(), 43);
        let hash = hasher.hash(&secret).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        let s = secret.expose_secret();
        assert!(!hasher.remembered("c", s, &[&hash]));
        assert!(verifies(&hasher, "c", s, &[&hash]).await);
        assert!(hasher.remembered("c", s, &[&hash]));
        assert!(!verifies(&hasher, "c", "wrong", &[&hash]).await);
        assert!(!verifies(&hasher, "c", s, &[]).await, "unknown client");
        // Remembered, but only while the account still holds that hash.
        let other = hasher.hash(&generate_secret()).await.unwrap();
        assert!(!verifies(&hasher, "c", s, &[&other]).await);
        assert!(!verifies(&hasher, "d", s, &[&other]).await);
        // The previous hash of a grace period verifies too, as the second candidate.
        assert!(verifies(&hasher, "e", s, &[&other, &hash]).await);
    }

    #[tokio::test]
    async fn every_check_runs_argon2_twice_whatever_the_outcome() {
        let hasher = cheap(8);
        let (a, b) = (generate_secret(), generate_secret());
        let (ha, hb) = (
            hasher.hash(&a).await.unwrap(),
            hasher.hash(&b).await.unwrap(),
        );
        let cases: [(&str, &[&str]); 5] = [
            ("wrong", &[]),
            ("wrong", &[&ha]),
            ("wrong", &[&ha, &hb]),
            (a.expose_secret(), &[&ha]),
            (b.expose_secret(), &[&ha, &hb]),
        ];
        for (i, (secret, accepted)) in cases.into_iter().enumerate() {
            let before = hasher.stats().argon2_runs;
            hasher
                .check(&format!("c{i}"), secret, accepted)
                .await
                .unwrap();
            assert_eq!(hasher.stats().argon2_runs - before, 2, "case {i}");
        }
    }

    #[tokio::test]
    async fn a_full_queue_answers_busy_without_hashing() {
        let hasher = Arc::new(cheap(0));
        let lanes = hasher.admitted.available_permits();
        // Hold every admission slot, as checks in progress do.
        let held = hasher.admitted.try_acquire_many(lanes as u32).unwrap();
        let before = hasher.stats();
        assert_eq!(hasher.check("c", "s", &[]).await.unwrap(), Checked::Busy);
        assert_eq!(hasher.stats().busy, before.busy + 1);
        assert_eq!(hasher.stats().argon2_runs, before.argon2_runs);
        drop(held);
        assert_eq!(hasher.check("c", "s", &[]).await.unwrap(), Checked::Refused);
    }

    #[tokio::test]
    async fn a_caller_that_stops_waiting_keeps_its_slot_until_the_hash_work_ends() {
        use std::{future::Future as _, task::Context};
        // A costly hash (hundreds of milliseconds), so the work outlasts the next few lines by
        // orders of magnitude.
        let hasher = SecretHasher::new(SecretHashConfig {
            memory_kib: 64 * 1024,
            iterations: 4,
            parallelism: 1,
            max_queued: 0,
        })
        .unwrap();
        let lanes = hasher.admitted.available_permits();
        for i in 0..lanes {
            // One poll admits the check and hands its argon2 to the blocking pool; then the
            // caller goes away, as a request future does when its client hangs up.
            let id = format!("c{i}");
            let mut check = std::pin::pin!(hasher.check(&id, "s", &[]));
            let polled = check
                .as_mut()
                .poll(&mut Context::from_waker(std::task::Waker::noop()));
            assert!(polled.is_pending());
        }
        // The slots stay taken until the work itself ends ...
        assert_eq!(hasher.check("c", "s", &[]).await.unwrap(), Checked::Busy);
        // ... and then come back.
        drop(hasher.admitted.acquire_many(lanes as u32).await.unwrap());
        assert_eq!(hasher.check("c", "s", &[]).await.unwrap(), Checked::Refused);
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
