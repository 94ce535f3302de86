//! `GET /metrics`: the issuer's counters in the Prometheus text format (version 0.0.4).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut config = s2s_issuer::IssuerConfig::default();
//! config.listen = "127.0.0.1:0".parse()?;
//! config.db = ":memory:".into();
//! let running = s2s_issuer::spawn(config).await?;
//! let text = reqwest::get(format!("{}/metrics", running.url)).await?.text().await?;
//! assert!(text.contains("s2s_issuer_tokens_issued_total 0"));
//! running.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `s2s_issuer_tokens_issued_total` | counter | |
//! | `s2s_issuer_tokens_refused_total` | counter | `code`: `AUTH_101`…`AUTH_107`, or `none` (a malformed request, 503) |
//! | `s2s_issuer_rate_limited_total` | counter | (token requests answered 429) |
//! | `s2s_issuer_admin_changes_total` | counter | (admin API writes that succeeded) |
//! | `s2s_issuer_tokens_issued_from_memory_total` | counter | (issued while the database was unreachable) |
//! | `s2s_issuer_database_up` | gauge | |
//!
//! The counters belong to one issuer (several may run in one process, as in tests): they are
//! plain atomics rendered here, not a process-global recorder. Label values come from fixed
//! sets only, never from a client id. The endpoint needs no token, like the JWKS: it tells
//! nothing about accounts; put it behind the network policy of your scraper if even counts
//! are private.

use std::{
    fmt::Write as _,
    sync::atomic::{AtomicU64, Ordering},
};

/// The `code` label values, in output order; the last one is "no code".
const CODES: [&str; 8] = [
    "AUTH_101", "AUTH_102", "AUTH_103", "AUTH_104", "AUTH_105", "AUTH_106", "AUTH_107", "none",
];

/// The counters of one issuer.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    issued: AtomicU64,
    refused: [AtomicU64; CODES.len()],
    rate_limited: AtomicU64,
    admin_changes: AtomicU64,
    from_memory: AtomicU64,
}

impl Metrics {
    pub(crate) fn issued(&self, from_memory: bool) {
        self.issued.fetch_add(1, Ordering::Relaxed);
        if from_memory {
            self.from_memory.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A refused token request with this `code` (`AUTH_1xx`; anything else counts as `none`).
    pub(crate) fn refused(&self, code: Option<&str>, rate_limited: bool) {
        let i = code
            .and_then(|c| CODES.iter().position(|k| *k == c))
            .unwrap_or(CODES.len() - 1);
        self.refused[i].fetch_add(1, Ordering::Relaxed);
        if rate_limited {
            self.rate_limited.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn admin_change(&self) {
        self.admin_changes.fetch_add(1, Ordering::Relaxed);
    }

    /// The text exposition.
    pub(crate) fn render(&self, database_up: bool) -> String {
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, value: &AtomicU64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
        };
        counter(
            "s2s_issuer_tokens_issued_total",
            "Access tokens issued.",
            &self.issued,
        );
        counter(
            "s2s_issuer_rate_limited_total",
            "Token requests refused with 429 (rate limits of this replica).",
            &self.rate_limited,
        );
        counter(
            "s2s_issuer_admin_changes_total",
            "Successful admin API changes (accounts and keys).",
            &self.admin_changes,
        );
        counter(
            "s2s_issuer_tokens_issued_from_memory_total",
            "Tokens issued from the in-memory account copy while the database was unreachable.",
            &self.from_memory,
        );
        let name = "s2s_issuer_tokens_refused_total";
        let _ = writeln!(
            out,
            "# HELP {name} Token requests refused, by AUTH code.\n# TYPE {name} counter"
        );
        for (code, value) in CODES.iter().zip(&self.refused) {
            let _ = writeln!(
                out,
                "{name}{{code=\"{code}\"}} {}",
                value.load(Ordering::Relaxed)
            );
        }
        let name = "s2s_issuer_database_up";
        let _ = writeln!(
            out,
            "# HELP {name} 1 while the database answers, 0 during an outage.\n# TYPE {name} gauge\n{name} {}",
            u8::from(database_up)
        );
        out
    }
}
