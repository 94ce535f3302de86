//! The audit log: one `tracing` event per token issued, per token request refused, and per
//! change to accounts or signing keys, on the target `s2s_issuer::audit`.
//!
//! Fields: `client_id`, `source_ip`, `outcome` (`issued`, `refused`, or the admin action),
//! `code` (`AUTH_1xx` when one applies), `error` (the OAuth error name), `reason`, and for
//! issued tokens `scope`, `aud`, `kid`, `jti` and `exp`. Never a secret or a token.
//!
//! ```no_run
//! // Route the audit events to their own output with a tracing-subscriber filter, e.g.
//! // RUST_LOG=info,s2s_issuer::audit=info
//! tracing_subscriber::fmt()
//!     .with_env_filter(tracing_subscriber::EnvFilter::new("s2s_issuer::audit=info"))
//!     .init();
//! ```

use std::net::IpAddr;

/// The target of every audit event.
pub const TARGET: &str = "s2s_issuer::audit";

/// Presented client ids are logged, cut to this many characters (an attacker chooses them).
const MAX_LOGGED_ID: usize = 64;

pub(crate) fn loggable_id(client_id: Option<&str>) -> String {
    match client_id {
        None => String::new(),
        Some(id) => id
            .chars()
            .take(MAX_LOGGED_ID)
            .map(|c| if c.is_control() { '?' } else { c })
            .collect(),
    }
}

fn ip_text(ip: Option<IpAddr>) -> String {
    ip.map_or_else(|| "unknown".into(), |ip| ip.to_string())
}

/// A token was issued.
pub(crate) struct Issued<'a> {
    pub(crate) client_id: &'a str,
    pub(crate) source_ip: Option<IpAddr>,
    pub(crate) scope: &'a str,
    pub(crate) aud: &'a str,
    pub(crate) kid: &'a str,
    pub(crate) jti: &'a str,
    pub(crate) exp: u64,
}

pub(crate) fn issued(event: &Issued<'_>) {
    tracing::info!(
        target: TARGET,
        outcome = "issued",
        client_id = event.client_id,
        source_ip = %ip_text(event.source_ip),
        scope = event.scope,
        aud = event.aud,
        kid = event.kid,
        jti = event.jti,
        exp = event.exp,
        "token issued"
    );
}

/// A token request was refused.
pub(crate) fn refused(
    client_id: Option<&str>,
    source_ip: Option<IpAddr>,
    error: &str,
    code: Option<&str>,
    reason: &str,
) {
    tracing::warn!(
        target: TARGET,
        outcome = "refused",
        client_id = %loggable_id(client_id),
        source_ip = %ip_text(source_ip),
        error,
        code = code.unwrap_or(""),
        reason,
        "token request refused"
    );
}

/// An administrative change (account created, updated, secret rotated, deleted; key rotated).
pub(crate) fn admin(action: &str, client_id: Option<&str>, detail: &str) {
    tracing::info!(
        target: TARGET,
        outcome = action,
        client_id = client_id.unwrap_or(""),
        detail,
        "administrative change"
    );
}

/// The database became unreachable or reachable again (one entry per transition).
pub(crate) fn storage(outcome: &str, detail: &str) {
    tracing::warn!(target: TARGET, outcome, detail, "storage availability changed");
}
