//! Clock arithmetic that cannot panic.

use std::time::Duration;

use tokio::time::Instant;

/// `at + after`, or a century from `at` when that overflows the clock (an `Instant` overflow
/// panics). Remote answers are bounded before they get here; configured bounds may be absurd.
pub(crate) fn later(at: Instant, after: Duration) -> Instant {
    at.checked_add(after)
        .or_else(|| at.checked_add(Duration::from_secs(100 * 365 * 24 * 60 * 60)))
        .unwrap_or(at)
}
