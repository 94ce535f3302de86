//! The validated-token cache: a token verified twice is kept, and from then on costs a lookup
//! instead of a signature check.

use std::{
    sync::{
        Arc, Weak,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use crate::{claims::Verified, keys::Key};

/// A token verified before, as the validated-token cache keeps it.
pub(super) struct CachedToken {
    /// The whole token, compared on every hit.
    token: Box<str>,
    pub(super) verified: Verified,
    /// The key that verified it; once the key leaves its set, the entry is worthless.
    key: Weak<Key>,
    /// The index of its issuer, whose keys must still be usable (not too stale) on a hit.
    pub(super) issuer: usize,
    pub(super) exp: u64,
    /// How long moka keeps the entry: until `exp` plus the leeway.
    ttl: Duration,
}

struct UntilExpiry;

impl moka::Expiry<Box<str>, Arc<CachedToken>> for UntilExpiry {
    fn expire_after_create(
        &self,
        _: &Box<str>,
        value: &Arc<CachedToken>,
        _: std::time::Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// The validated-token cache, with its admission filter.
pub(super) struct TokenCache {
    entries: moka::sync::Cache<Box<str>, Arc<CachedToken>, SignatureHash>,
    /// Hashes of signatures verified once. A token enters the cache the second time it is
    /// verified: a caller reuses its token, so that costs one more check per token, while
    /// traffic of ever-new tokens (a flood, or a caller that never reuses) never pays for
    /// cache inserts and evictions. A lost race or a collision only costs a check.
    seen_once: Box<[AtomicU64]>,
}

/// Slots of the admission filter: four per cache entry (so that few tokens share one), at
/// most 2^20 (8 MiB).
fn doorkeeper_slots(max_entries: u64) -> usize {
    let wanted = usize::try_from(max_entries.saturating_mul(4)).unwrap_or(usize::MAX);
    wanted.clamp(64, 1 << 20).next_power_of_two()
}

impl TokenCache {
    /// A cache of at most `max_entries` tokens; `None` when 0 turns it off.
    pub(super) fn new(max_entries: u64) -> Option<TokenCache> {
        (max_entries > 0).then(|| TokenCache {
            entries: moka::sync::Cache::builder()
                .max_capacity(max_entries)
                .expire_after(UntilExpiry)
                .build_with_hasher(SignatureHash),
            seen_once: (0..doorkeeper_slots(max_entries))
                .map(|_| AtomicU64::new(0))
                .collect(),
        })
    }

    /// The entry of the very same token bytes, while the key that verified it is still in its
    /// issuer's set. Keyed by the signature segment (short, and as unique as signed tokens
    /// are), and compared in full on a hit.
    pub(super) fn get(&self, token: &str) -> Option<Arc<CachedToken>> {
        let hit = self.entries.get(signature_of(token))?;
        (*hit.token == *token && hit.key.strong_count() > 0).then_some(hit)
    }

    /// Keeps `token`, verified by `key`, for `ttl`, if the admission filter has seen it before.
    pub(super) fn insert(
        &self,
        token: &str,
        verified: &Verified,
        key: &Arc<Key>,
        issuer: usize,
        ttl: Duration,
    ) {
        let signature = signature_of(token);
        if !self.admit(signature) {
            return;
        }
        self.entries.insert(
            signature.into(),
            Arc::new(CachedToken {
                token: token.into(),
                verified: verified.clone(),
                key: Arc::downgrade(key),
                issuer,
                exp: verified.standard().exp.unwrap_or_default(),
                ttl,
            }),
        );
    }

    /// Whether `signature` was verified before (and, if not, remembers it).
    fn admit(&self, signature: &str) -> bool {
        use std::hash::BuildHasher as _;
        let hash = SignatureHash.hash_one(signature);
        let slots = self.seen_once.len();
        // Two slots (from the low and the high half of the hash), so that two tokens that
        // share one slot still find their mark in the other.
        let [first, second] = [hash as usize % slots, (hash >> 32) as usize % slots];
        // Never 0, the mark of an empty slot.
        let mark = hash | 1;
        let seen_first = self.seen_once[first].swap(mark, Ordering::Relaxed) == mark;
        let seen_second = self.seen_once[second].swap(mark, Ordering::Relaxed) == mark;
        seen_first || seen_second
    }
}

/// The signature segment of a token, its key in the cache.
fn signature_of(token: &str) -> &str {
    token.rsplit('.').next().unwrap_or_default()
}

/// Hashes a cache key, a token's signature segment, by its first 16 characters (about 96
/// random bits of base64url), well mixed: as well spread as SipHash for a fraction of its cost. Crafted
/// collisions gain nothing: only tokens whose signature verified are ever inserted.
#[derive(Clone, Copy, Default)]
struct SignatureHash;

impl std::hash::BuildHasher for SignatureHash {
    type Hasher = SignatureHasher;

    fn build_hasher(&self) -> SignatureHasher {
        SignatureHasher(0)
    }
}

struct SignatureHasher(u64);

impl std::hash::Hasher for SignatureHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut head = [0u8; 16];
        let n = bytes.len().min(16);
        head[..n].copy_from_slice(&bytes[..n]);
        let [a, b] = [&head[..8], &head[8..]]
            .map(|h| u64::from_le_bytes(h.try_into().expect("eight bytes")));
        self.0 = (self.0 ^ a ^ b.rotate_left(32)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn finish(&self) -> u64 {
        // The 64-bit finaliser of MurmurHash3: every output bit depends on every input bit
        // (base64 text alone leaves the low bits poorly spread).
        let mut x = self.0;
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        x ^ (x >> 33)
    }
}

/// Default bound of the validated-token cache.
pub const DEFAULT_TOKEN_CACHE_ENTRIES: u64 = 10_000;

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher as _;

    use super::*;

    /// A signature segment as base64url text (ES256: 86 characters).
    fn signature(seed: u64) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut x = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        (0..86)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                ALPHABET[(x % 64) as usize] as char
            })
            .collect()
    }

    fn hash(text: &str) -> u64 {
        SignatureHash.hash_one(text)
    }

    #[test]
    fn the_admission_filter_admits_a_token_seen_before_and_forgets_it_under_churn() {
        // The smallest filter: 64 slots.
        let cache = TokenCache::new(1).unwrap();
        assert_eq!(cache.seen_once.len(), 64);
        let first = signature(1);
        assert!(!cache.admit(&first), "admitted the first time it is seen");
        assert!(cache.admit(&first), "not admitted the second time");
        assert!(cache.admit(&first));
        assert!(
            !cache.admit(&signature(2)),
            "another token is admitted unseen"
        );
        // Thousands of other tokens overwrite both of its slots: it starts over.
        for seed in 3..5_000 {
            cache.admit(&signature(seed));
        }
        assert!(!cache.admit(&first), "remembered through churn");
        assert!(cache.admit(&first));
        // Bounded: four slots per entry, a power of two, at most 2^20.
        assert_eq!(doorkeeper_slots(0), 64);
        assert_eq!(doorkeeper_slots(10_000), 65_536);
        assert_eq!(doorkeeper_slots(u64::MAX), 1 << 20);
        assert!(TokenCache::new(0).is_none());
    }

    #[test]
    fn the_hasher_tells_apart_signatures_that_differ_in_one_character_of_its_window() {
        const ALPHABET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        for seed in 0..8 {
            let base = signature(seed);
            // Equal text, equal hash (and from a separate copy).
            assert_eq!(hash(&base), hash(&base.clone()));
            // Any one character changed within the first 16 changes the hash (the whole
            // signature is compared on a hit, so the rest needs no hashing).
            for position in 0..16 {
                for replacement in ALPHABET.chars() {
                    let mut changed = base.clone().into_bytes();
                    if changed[position] == replacement as u8 {
                        continue;
                    }
                    changed[position] = replacement as u8;
                    let changed = String::from_utf8(changed).unwrap();
                    assert_ne!(hash(&base), hash(&changed), "{position}: {changed}");
                }
            }
            // Every length up to the window hashes apart from every other.
            let prefixes: Vec<u64> = (0..=16).map(|n| hash(&base[..n])).collect();
            for (i, a) in prefixes.iter().enumerate() {
                for b in &prefixes[i + 1..] {
                    assert_ne!(a, b, "prefixes of {base}");
                }
            }
        }
    }

    #[test]
    fn the_hasher_spreads_signatures_over_the_filter_slots() {
        // 4,096 signatures over 1,024 slots, as a uniform hash spreads them (about Poisson(4):
        // some 19 slots empty, none with more than 15); the low bits are what the filter
        // indexes by.
        let mut slots = vec![0u32; 1024];
        for seed in 0..4096 {
            slots[(hash(&signature(seed)) % 1024) as usize] += 1;
        }
        let empty = slots.iter().filter(|n| **n == 0).count();
        assert!(empty <= 40, "{empty} empty slots: {slots:?}");
        assert!(slots.iter().all(|n| *n <= 16), "{slots:?}");
    }
}
