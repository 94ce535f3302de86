//! `s2s-load memory`: the resident memory of the validated-token cache at its default bound.
//! Fills a [`Verifier`]'s cache with that many distinct realistic ES256 tokens (signed up
//! front) and reads `VmRSS` before and after. Prints one JSON line, a [`MemoryResult`].

use jsonwebtoken::Algorithm;
use s2s_auth::{Issuer, KeySet, Verifier, verify::DEFAULT_TOKEN_CACHE_ENTRIES};
use serde::{Deserialize, Serialize};

use crate::tokens::{self, AUDIENCE, ISSUER, SigningKey};

#[derive(clap::Args, Debug, Clone)]
pub struct MemoryArgs {
    /// Entries to fill the cache with (default: its default bound).
    #[arg(long, default_value_t = DEFAULT_TOKEN_CACHE_ENTRIES)]
    pub entries: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MemoryResult {
    pub entries: u64,
    pub token_bytes_avg: f64,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    pub growth_bytes: u64,
    pub bytes_per_entry: f64,
    /// Hits when every token is verified once more: how many entries the cache kept.
    pub hits_second_pass: u64,
}

/// Runs the measurement and prints its result.
pub fn main(args: MemoryArgs) {
    let result = measure(args.entries);
    eprintln!(
        "validated-token cache: {} entries of {:.0}-byte tokens: RSS {} KiB -> {} KiB, +{:.1} MiB \
         ({:.0} B/entry); {} of {} hit on a second pass",
        result.entries,
        result.token_bytes_avg,
        result.rss_before_kib,
        result.rss_after_kib,
        result.growth_bytes as f64 / (1024.0 * 1024.0),
        result.bytes_per_entry,
        result.hits_second_pass,
        result.entries,
    );
    println!(
        "{}",
        serde_json::to_string(&result).expect("result as JSON")
    );
}

fn measure(entries: u64) -> MemoryResult {
    let key = SigningKey::generate(Algorithm::ES256);
    let jwks = serde_json::to_vec(&tokens::jwks(&[&key])).expect("JWKS");
    let keys = KeySet::from_jwks(&jwks).expect("key set");
    let verifier = Verifier::builder()
        .issuer(Issuer::keys(ISSUER, keys))
        .audience(AUDIENCE)
        .token_cache(entries)
        .build()
        .expect("verifier");
    let tokens = key.tokens(entries as usize);
    let token_bytes_avg =
        tokens.iter().map(String::len).sum::<usize>() as f64 / tokens.len().max(1) as f64;
    // Warm the allocator and the verifier's lazily built parts with a token not counted.
    verifier
        .verify_with_held_keys(&key.token(u64::MAX))
        .expect("warm-up token verifies");

    // A token is kept the second time it is verified (the cache's admission filter); a third
    // pass admits the few whose filter slots other tokens took.
    let before = vm_rss_kib();
    for _ in 0..3 {
        for token in &tokens {
            verifier
                .verify_with_held_keys(token)
                .expect("token verifies");
        }
    }
    let after = vm_rss_kib();

    let hits_before = verifier.metrics().cache_hits;
    for token in &tokens {
        verifier
            .verify_with_held_keys(token)
            .expect("token verifies");
    }
    let hits_second_pass = verifier.metrics().cache_hits - hits_before;

    let growth_bytes = after.saturating_sub(before) * 1024;
    MemoryResult {
        entries,
        token_bytes_avg,
        rss_before_kib: before,
        rss_after_kib: after,
        growth_bytes,
        bytes_per_entry: growth_bytes as f64 / entries.max(1) as f64,
        hits_second_pass,
    }
}

/// `VmRSS` of this process, from /proc/self/status.
fn vm_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

/// Runs `memory` as a child process (a clean heap) and returns what it measured.
pub async fn spawn() -> MemoryResult {
    let output = tokio::process::Command::new(std::env::current_exe().expect("own path"))
        .arg("memory")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .output()
        .await
        .expect("run the memory measurement");
    assert!(output.status.success(), "memory measurement failed");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("memory output {line:?}: {e}"))
}
