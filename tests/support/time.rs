//! Real sockets under a paused tokio clock.

use std::future::Future;

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
