//! Real sockets under a paused tokio clock, and waiting for a condition without sleeping for a
//! race.

use std::{future::Future, time::Duration};

/// Awaits `f`, which waits on real sockets, with a paused clock standing still: while a
/// `spawn_blocking` task runs, tokio does not auto-advance a paused clock (see
/// `tokio::time::pause`), so no timeout fires while the kernel moves the bytes.
pub async fn clock_held<F: Future>(f: F) -> F::Output {
    let (release, held) = std::sync::mpsc::channel::<()>();
    let holder = tokio::task::spawn_blocking(move || held.recv());
    let out = f.await;
    drop(release);
    let _ = holder.await;
    out
}

/// While alive, a paused tokio clock does not auto-advance (tokio never auto-advances while a
/// `spawn_blocking` task runs), so real sockets can be awaited with time standing still and the
/// clock moves only with `advance`. [`clock_held`] for one future, this for a whole test.
pub struct ClockHold {
    _release: std::sync::mpsc::Sender<()>,
}

impl ClockHold {
    /// Holds the clock until dropped.
    #[allow(clippy::new_without_default)]
    pub fn new() -> ClockHold {
        let (release, held) = std::sync::mpsc::channel::<()>();
        tokio::task::spawn_blocking(move || {
            let _ = held.recv();
        });
        ClockHold { _release: release }
    }
}

/// Yields until `condition` holds; fails after 10 s of real time. Yielding never auto-advances
/// a paused clock, so this also works with time paused.
pub async fn wait_until(what: &str, condition: impl FnMut() -> bool) {
    wait(what, condition, None).await;
}

/// [`wait_until`] for a condition that real time brings about (a refresh due in a second of
/// wall-clock time): checks every 5 ms instead of spinning. Not for a paused clock.
pub async fn wait_until_sleeping(what: &str, condition: impl FnMut() -> bool) {
    wait(what, condition, Some(Duration::from_millis(5))).await;
}

async fn wait(what: &str, mut condition: impl FnMut() -> bool, step: Option<Duration>) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        match step {
            Some(step) => tokio::time::sleep(step).await,
            None => tokio::task::yield_now().await,
        }
    }
}
