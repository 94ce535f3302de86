//! Waiting for a condition that another process makes true within a bound.

#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use tokio::time::Instant;

/// How long a change made elsewhere (another replica, the CLI) may take to reach a running
/// issuer: the announced bound (`sync::RELOAD_BOUND`, 1 s) and room for one request on a loaded
/// machine.
pub const CHANGE_BOUND: Duration = Duration::from_millis(1500);

/// Polls `condition` every 100 ms (slow enough for a token request each time to stay within the
/// issuer's default per-client rate limit, 10 per second) until it holds; panics with `what`
/// after `within`.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !condition().await {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
