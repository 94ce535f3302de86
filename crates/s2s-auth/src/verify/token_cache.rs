//! The validated-token cache: a token verified twice is kept, and from then on costs a lookup
//! instead of a signature check.
//!
//! Entries are keyed by the SHA-256 digest of the whole token, not its bytes: a hit is still
//! only for the very same token (finding two tokens with one digest is infeasible), and an
//! entry holds 32 bytes instead of a copy of a token of about a kilobyte.
//!
//! In front of it, each thread keeps the few tokens it hit last by their bytes, with its own
//! copy of their claims (`RECENT`, a thread local: no lock): a caller that repeats its token,
//! the service-to-service case, then costs a comparison in constant time, not a digest and a
//! lookup in the shared map, and no reference count that another core also writes. At most
//! [`RECENT_PER_THREAD`] tokens per thread, of all caches together, whatever their bounds.

use std::{
    cell::RefCell,
    sync::{
        Arc, Weak,
        atomic::{AtomicU64, Ordering},
    },
};

use crate::{claims::Verified, keys::Key};

/// The SHA-256 digest of a whole token: its identity in the cache.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) struct TokenDigest([u8; 32]);

impl TokenDigest {
    pub(super) fn of(token: &str) -> TokenDigest {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
        TokenDigest(digest.as_ref().try_into().expect("SHA-256 is 32 bytes"))
    }

    /// Eight bytes of the digest, as uniform as any hash function's output.
    fn word(&self, index: usize) -> u64 {
        let bytes = &self.0[index * 8..index * 8 + 8];
        u64::from_le_bytes(bytes.try_into().expect("eight bytes"))
    }
}

impl std::hash::Hash for TokenDigest {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.word(0));
    }
}

/// A token verified before, as the validated-token cache keeps it.
pub(super) struct CachedToken {
    pub(super) verified: Verified,
    /// The key that verified it; once the key leaves its set, the entry is worthless.
    key: Weak<Key>,
    /// The index of its issuer, whose keys must still be usable (not too stale) on a hit.
    pub(super) issuer: usize,
    pub(super) exp: u64,
}

/// The validated-token cache, with its admission filter.
///
/// The map is quick_cache's: a bounded concurrent map whose entries cost about a hundred bytes
/// beside the key and value (moka's cost about four hundred), read under a sharded lock (a
/// reader locks its own thread's shard, so hits on different cores do not write one cache
/// line). It has no expiry of its own, and needs none: `exp` and `nbf` are checked on every hit,
/// a hit past `exp` removes its entry, and an entry nobody asks for is the first to be evicted.
pub(super) struct TokenCache {
    entries: quick_cache::sync::Cache<
        TokenDigest,
        Arc<CachedToken>,
        quick_cache::UnitWeighter,
        DigestHash,
    >,
    /// Tells this cache's slots in `RECENT` from other caches' (never reused).
    id: u64,
    /// Digests of tokens verified once. A token enters the cache the second time it is
    /// verified: a caller reuses its token, so that costs one more check per token, while
    /// traffic of ever-new tokens (a flood, or a caller that never reuses) never pays for
    /// cache inserts and evictions. A lost race or a shared slot only costs a check.
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
            entries: quick_cache::sync::Cache::with(
                usize::try_from(max_entries).unwrap_or(usize::MAX),
                max_entries,
                quick_cache::UnitWeighter,
                DigestHash,
                quick_cache::sync::DefaultLifecycle::default(),
            ),
            seen_once: (0..doorkeeper_slots(max_entries))
                .map(|_| AtomicU64::new(0))
                .collect(),
            id: NEXT_CACHE_ID.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// A token this thread hit lately, by its bytes, while its key is still in its issuer's
    /// set.
    pub(super) fn recent(&self, token: &[u8]) -> Option<RecentHit> {
        RECENT
            .try_with(|recent| {
                let recent = recent.try_borrow().ok()?;
                let slot = recent
                    .slots
                    .iter()
                    .flatten()
                    .find(|s| s.cache == self.id && same_token(&s.token, token))?;
                (slot.key.strong_count() > 0).then(|| RecentHit {
                    verified: slot.verified.clone(),
                    issuer: slot.issuer,
                    exp: slot.exp,
                })
            })
            .ok()
            .flatten()
    }

    /// Keeps `hit`, a hit on `token`, among this thread's recent ones (replacing the oldest).
    ///
    /// Only tokens of the base64url alphabet and dots, as every JWT that verified is: a match
    /// by bytes then also vouches for the token's syntax as a `b64token` (RFC 6750), which
    /// `VerifyLayer` does not scan again on a recent hit.
    pub(super) fn remember(&self, token: &str, hit: &CachedToken) {
        let base64url = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.');
        if !token.bytes().all(base64url) {
            return;
        }
        let _ = RECENT.try_with(|recent| {
            let Ok(mut recent) = recent.try_borrow_mut() else {
                return;
            };
            let next = recent.next;
            recent.next = (next + 1) % RECENT_PER_THREAD;
            recent.slots[next] = Some(RecentSlot {
                cache: self.id,
                token: token.into(),
                verified: hit.verified.own_copy(),
                key: hit.key.clone(),
                issuer: hit.issuer,
                exp: hit.exp,
            });
        });
    }

    /// The entry of the token with this digest, while the key that verified it is still in its
    /// issuer's set.
    pub(super) fn get(&self, digest: &TokenDigest) -> Option<Arc<CachedToken>> {
        let hit = self.entries.get(digest)?;
        (hit.key.strong_count() > 0).then_some(hit)
    }

    /// Drops the entry of `digest`.
    pub(super) fn remove(&self, digest: &TokenDigest) {
        self.entries.remove(digest);
    }

    /// Keeps the token of `digest`, verified by `key`, if the admission filter has seen it
    /// before.
    pub(super) fn insert(
        &self,
        digest: TokenDigest,
        verified: &Verified,
        key: &Arc<Key>,
        issuer: usize,
    ) {
        if !self.admit(&digest) {
            return;
        }
        self.entries.insert(
            digest,
            Arc::new(CachedToken {
                verified: verified.clone(),
                key: Arc::downgrade(key),
                issuer,
                exp: verified.standard().exp.unwrap_or_default(),
            }),
        );
    }

    /// Whether the token of `digest` was verified before (and, if not, remembers it).
    fn admit(&self, digest: &TokenDigest) -> bool {
        let slots = self.seen_once.len();
        // Two slots, so that two tokens that share one still find their mark in the other.
        let [first, second] = [digest.word(1), digest.word(2)].map(|w| w as usize % slots);
        // Never 0, the mark of an empty slot.
        let mark = digest.word(3) | 1;
        let seen_first = self.seen_once[first].swap(mark, Ordering::Relaxed) == mark;
        let seen_second = self.seen_once[second].swap(mark, Ordering::Relaxed) == mark;
        seen_first || seen_second
    }
}

/// Tokens kept by each thread in front of the shared map.
pub(super) const RECENT_PER_THREAD: usize = 4;

static NEXT_CACHE_ID: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// The tokens this thread hit last, of every cache (told apart by the cache's id).
    static RECENT: RefCell<RecentSlots> = RefCell::default();
}

#[derive(Default)]
struct RecentSlots {
    slots: [Option<RecentSlot>; RECENT_PER_THREAD],
    /// The slot replaced next.
    next: usize,
}

struct RecentSlot {
    /// The id of the cache whose hit this is.
    cache: u64,
    /// The whole token, compared byte for byte.
    token: Box<str>,
    /// This thread's own copy.
    verified: Verified,
    key: Weak<Key>,
    issuer: usize,
    exp: u64,
}

/// What [`TokenCache::recent`] found.
pub(super) struct RecentHit {
    pub(super) verified: Verified,
    pub(super) issuer: usize,
    pub(super) exp: u64,
}

/// Whether `a` and `b` are the same token, in a time that depends on their length only: a
/// kept token is a credential, and a comparison that stopped at the first difference would
/// tell a caller how much of one it guessed. Eight bytes at a time, no early exit.
fn same_token(a: &str, b: &[u8]) -> bool {
    let a = a.as_bytes();
    if a.len() != b.len() {
        return false;
    }
    let (a_words, a_rest) = a.as_chunks::<8>();
    let (b_words, b_rest) = b.as_chunks::<8>();
    let mut diff = 0u64;
    for (x, y) in a_words.iter().zip(b_words) {
        diff |= u64::from_ne_bytes(*x) ^ u64::from_ne_bytes(*y);
    }
    for (x, y) in a_rest.iter().zip(b_rest) {
        diff |= u64::from(x ^ y);
    }
    std::hint::black_box(diff) == 0
}

/// Hashes a [`TokenDigest`] to the eight bytes it writes: a SHA-256 output needs no mixing.
/// Crafted collisions are out of reach (they would need SHA-256 preimages), and only tokens
/// whose signature verified are ever inserted.
#[derive(Clone, Copy, Default)]
struct DigestHash;

impl std::hash::BuildHasher for DigestHash {
    type Hasher = DigestHasher;

    fn build_hasher(&self) -> DigestHasher {
        DigestHasher(0)
    }
}

struct DigestHasher(u64);

impl std::hash::Hasher for DigestHasher {
    fn write_u64(&mut self, word: u64) {
        self.0 ^= word;
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `TokenDigest` is hashed here, through `write_u64`; fold anything else anyway.
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0 ^ u64::from_le_bytes(word)).rotate_left(23);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Default bound of the validated-token cache.
pub const DEFAULT_TOKEN_CACHE_ENTRIES: u64 = 10_000;

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher as _;

    use super::*;

    /// A token-like text, distinct per seed.
    fn token(seed: u64) -> String {
        format!("eyJhbGciOiJFUzI1NiJ9.eyJzZWVkIjo{seed}fQ.c2lnbmF0dXJl{seed}")
    }

    #[test]
    fn the_admission_filter_admits_a_token_seen_before_and_forgets_it_under_churn() {
        // The smallest filter: 64 slots.
        let cache = TokenCache::new(1).unwrap();
        assert_eq!(cache.seen_once.len(), 64);
        let first = TokenDigest::of(&token(1));
        assert!(!cache.admit(&first), "admitted the first time it is seen");
        assert!(cache.admit(&first), "not admitted the second time");
        assert!(cache.admit(&first));
        assert!(
            !cache.admit(&TokenDigest::of(&token(2))),
            "another token is admitted unseen"
        );
        // Thousands of other tokens overwrite both of its slots: it starts over.
        for seed in 3..5_000 {
            cache.admit(&TokenDigest::of(&token(seed)));
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
    fn the_digest_is_of_the_whole_token() {
        let base = token(7);
        assert!(TokenDigest::of(&base) == TokenDigest::of(&base.clone()));
        // One character changed anywhere, or one added or cut, is another token.
        for position in 0..base.len() {
            let mut changed = base.clone().into_bytes();
            changed[position] ^= 1;
            let changed = String::from_utf8(changed).unwrap();
            assert!(
                TokenDigest::of(&base) != TokenDigest::of(&changed),
                "{position}"
            );
        }
        assert!(TokenDigest::of(&base) != TokenDigest::of(&format!("{base}A")));
        assert!(TokenDigest::of(&base) != TokenDigest::of(&base[..base.len() - 1]));
        // The known SHA-256 of "abc" (FIPS 180-2, appendix B.1).
        assert_eq!(TokenDigest::of("abc").0[..4], [0xba, 0x78, 0x16, 0xbf],);
    }

    #[test]
    fn same_token_compares_every_byte() {
        let base = token(9);
        assert!(same_token(&base, base.as_bytes()));
        for position in 0..base.len() {
            let mut changed = base.clone().into_bytes();
            changed[position] ^= 1;
            assert!(!same_token(&base, &changed), "{position}");
        }
        assert!(!same_token(&base, &base.as_bytes()[..base.len() - 1]));
        assert!(!same_token(&base, b""));
    }

    #[test]
    fn the_hasher_spreads_digests_over_the_filter_slots() {
        // 4,096 digests over 1,024 slots, as a uniform hash spreads them (about Poisson(4):
        // some 19 slots empty, none with more than 15).
        let mut slots = vec![0u32; 1024];
        for seed in 0..4096 {
            let hash = DigestHash.hash_one(TokenDigest::of(&token(seed)));
            slots[(hash % 1024) as usize] += 1;
        }
        let empty = slots.iter().filter(|n| **n == 0).count();
        assert!(empty <= 40, "{empty} empty slots: {slots:?}");
        assert!(slots.iter().all(|n| *n <= 16), "{slots:?}");
    }
}
