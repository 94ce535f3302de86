//! Replicas in step: every issuer polls the database's state version (a counter that every
//! change to accounts or keys bumps, by trigger, in the writing transaction) every
//! [`POLL_INTERVAL`]; when it moved, the issuer reloads its signing keys and its in-memory copy
//! of the accounts. A change made on another replica is therefore in this one's JWKS and
//! account copy within [`RELOAD_BOUND`] (1 s).
//!
//! A poll that finds the version unmoved (or reloads after it moved) vouches for the copy: for
//! [`RELOAD_BOUND`] from that poll's start, the token endpoint answers accounts the copy holds
//! without reading the database. Disabling, re-scoping, rotating the secret of or deleting an
//! account therefore takes effect at once on the replica that made the change and within
//! [`RELOAD_BOUND`] on every other one (and for a change made by the CLI). When no poll has
//! vouched for the copy lately (a reload failed, or the poll fell behind), each token request
//! reads its account from the database again. The copy serves while the database is
//! unreachable, and answers "unknown" for ids it does not hold while it is fresh (see
//! [`crate::accounts::Accounts::credentials`]: a flood of made-up ids costs few reads).
//!
//! The same poll is the database health check, and the only one: it has its own connection
//! (see [`crate::store`]), so no traffic can starve it, and a slow token-path read falls back to
//! memory for that request only. A failed (or slower than [`POLL_TIMEOUT`]) poll marks the
//! database down ([`Health`]): `/readyz` answers 503, admin requests 503
//! `temporarily_unavailable` with `Retry-After`, the token endpoint issues for known accounts
//! from memory. The first successful poll after that marks it up again (and reloads
//! everything). Each transition is one audit entry, not one per request.
//!
//! The poll also runs the key clean-up and, with `key_rotation_interval_secs`, the scheduled
//! rotation (one replica rotates: see [`crate::keys`]).

use std::{
    sync::{
        Weak,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use crate::{Inner, audit};

/// How often the state version is read.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// A poll slower than this counts as a failure.
pub(crate) const POLL_TIMEOUT: Duration = Duration::from_millis(400);
/// The announced bound: a change on one replica is seen by the others within this.
pub(crate) const RELOAD_BOUND: Duration = Duration::from_secs(1);
/// What admin requests during an outage advise in `Retry-After`, seconds.
pub(crate) const RETRY_AFTER_SECS: u64 = 5;

/// Whether the database answers, as the last poll found (only the poll changes it).
#[derive(Debug)]
pub(crate) struct Health {
    up: AtomicBool,
    /// Tokens issued from memory during the current outage (for the recovery's audit entry).
    from_memory: AtomicU64,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            up: AtomicBool::new(true),
            from_memory: AtomicU64::new(0),
        }
    }
}

impl Health {
    pub(crate) fn is_up(&self) -> bool {
        self.up.load(Ordering::SeqCst)
    }

    /// Marks the database unreachable (the poll only); the first call of an outage writes the
    /// audit entry.
    fn mark_down(&self, why: &str) {
        if self.up.swap(false, Ordering::SeqCst) {
            audit::storage(
                "database_unreachable",
                &format!(
                    "{why}; issuing tokens for known accounts from memory, refusing admin \
                     changes with 503 until it answers again"
                ),
            );
        }
    }

    fn mark_up(&self) {
        if !self.up.swap(true, Ordering::SeqCst) {
            let served = self.from_memory.swap(0, Ordering::SeqCst);
            audit::storage(
                "database_reachable",
                &format!("{served} token(s) were issued from memory during the outage"),
            );
        }
    }

    /// Counts a token issued from memory during this outage.
    pub(crate) fn issued_from_memory(&self) {
        self.from_memory.fetch_add(1, Ordering::SeqCst);
    }
}

/// Starts the poll of `issuer`; it ends when the issuer is dropped (or the task is aborted).
pub(crate) fn spawn(issuer: Weak<Inner>, last_version: Option<i64>) -> tokio::task::AbortHandle {
    tokio::spawn(async move {
        let mut last = last_version;
        let mut ticks = tokio::time::interval(POLL_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let Some(inner) = issuer.upgrade() else {
                return;
            };
            last = poll(&inner, last).await;
        }
    })
    .abort_handle()
}

/// One poll: the version, a reload when it moved (or the database came back), the clean-up
/// and the scheduled rotation. The version the issuer is now in step with.
async fn poll(inner: &Inner, last: Option<i64>) -> Option<i64> {
    let began = tokio::time::Instant::now();
    let version = match tokio::time::timeout(POLL_TIMEOUT, inner.store.version()).await {
        Ok(Ok(version)) => version,
        Ok(Err(e)) => {
            inner.health.mark_down(&format!("the database failed: {e}"));
            return last;
        }
        Err(_) => {
            inner.health.mark_down(&format!(
                "the database did not answer within {} ms",
                POLL_TIMEOUT.as_millis()
            ));
            return last;
        }
    };
    let mut in_step = last;
    let mut confirmed = last == Some(version) && inner.health.is_up();
    if !confirmed {
        let keys = inner.keys.reload().await;
        let accounts = inner.accounts.reload_all().await;
        match keys.and(accounts) {
            // The discovery document's scopes keep their own bound (60 s, see `MetadataCache`).
            Ok(()) => {
                in_step = Some(version);
                confirmed = true;
            }
            Err(e) => {
                inner.accounts.known.mark_stale();
                tracing::warn!(error = %e, "could not reload keys and accounts");
            }
        }
    }
    if confirmed {
        // Unmoved, or reloaded after the version was read: the copy is the database as of
        // `began` at least.
        inner.accounts.known.confirm(began);
    }
    inner.health.mark_up();
    inner.keys.prune().await;
    if let Some(interval) = inner.key_rotation_interval {
        match inner.keys.rotate_if_due(interval).await {
            Ok(Some(rotation)) => tracing::info!(kid = rotation.kid, "scheduled key rotation"),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "the scheduled key rotation failed"),
        }
    }
    in_step
}
