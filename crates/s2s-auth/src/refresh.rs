//! The one refresh primitive: a value read without a lock, fetched by one caller at a time, and
//! refreshed by a background task that retries with jittered exponential back-off and ends with
//! its owner.
//!
//! Used by the remote key cache (`keys::KeyCache`) and the outbound token
//! manager ([`TokenManager`](crate::token::TokenManager)); generic over what is held (`T`, an
//! `Arc` or `Option<Arc>`), the state the fetcher keeps between fetches (`S`) and how the owner
//! fetches ([`Refresh`]).
//!
//! - [`Refreshing::load`]: the warm path, an atomic load (no lock, no allocation).
//! - [`Refreshing::flight`]: single flight. A caller checks whether it still needs a fetch,
//!   waits for the flight, checks again (told whether another caller's attempt ended while it
//!   waited), and fetches only then.
//! - [`Refreshing::start`]: the background task, spawned once, holding only a weak reference to
//!   its owner and aborted when the owner (which holds the `Refreshing`) is dropped.

use std::{
    future::Future,
    ops::{Deref, DerefMut},
    sync::{
        Arc, OnceLock, Weak,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use arc_swap::{ArcSwapAny, Guard, RefCnt};
use tokio::{sync::Notify, task::JoinHandle, time::Instant};

use crate::time::later;

/// Builder-style setters (`name(self, value) -> Self`, with the docs given) for plain private
/// fields: the option structs of what refreshes (`KeyCacheOptions`, `RefreshPolicy`) and the
/// `VerifierBuilder`.
macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident: $ty:ty;)*) => {
        $(
            $(#[$doc])*
            pub fn $name(mut self, $name: $ty) -> Self {
                self.$name = $name;
                self
            }
        )*
    };
}
pub(crate) use setters;

/// Jittered exponential back-off: `first`, doubling per failure, at most `max`, each delay
/// drawn from its upper half (`[delay / 2, delay)`) so that a fleet does not retry in step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Backoff {
    pub(crate) first: Duration,
    pub(crate) max: Duration,
}

impl Backoff {
    /// The delay before retry number `failures` (1 after the first failure).
    pub(crate) fn delay(&self, failures: u32) -> Duration {
        self.ceiling(failures).mul_f64(rand::random_range(0.5..1.0))
    }

    /// The delay before jitter: `first * 2^(failures - 1)`, at most `max`.
    fn ceiling(&self, failures: u32) -> Duration {
        self.first
            .saturating_mul(1 << failures.saturating_sub(1).min(16))
            .min(self.max)
    }
}

/// What a [`Refreshing`] value's owner does for its background task.
pub(crate) trait Refresh: Send + Sync + 'static {
    /// When the value held is due for refresh; `None` when nothing is held (the task then
    /// retries after the back-off).
    fn due_at(&self) -> Option<Instant>;

    /// The back-off after failed refreshes.
    fn backoff(&self) -> Backoff;

    /// One background refresh. `Err(delay)` when it failed: the next attempt waits for the
    /// back-off, and at least `delay` (what the server asked for, e.g. `Retry-After`).
    fn refresh(self: Arc<Self>) -> impl Future<Output = Result<(), Duration>> + Send;
}

/// A value fetched and refreshed: see the [module docs](self).
pub(crate) struct Refreshing<T: RefCnt, S = ()> {
    current: ArcSwapAny<T>,
    /// Held while fetching (single flight), with what the fetcher keeps between fetches.
    flight: tokio::sync::Mutex<S>,
    /// Completed fetch attempts, so that a waiter can tell that one ended while it waited.
    attempts: AtomicU64,
    /// Wakes the background task when a value is stored, so that it schedules on the new one.
    /// Apart from the owner, which the sleeping task must not keep alive.
    stored: Arc<Notify>,
    task: OnceLock<AbortOnDrop>,
}

/// A task aborted when this is dropped.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The single flight, held: the fetcher's state. [`Flight::finish`] counts the attempt.
pub(crate) struct Flight<'a, S> {
    state: tokio::sync::MutexGuard<'a, S>,
    attempts: &'a AtomicU64,
}

impl<S> Flight<'_, S> {
    /// Ends the flight, counting one completed attempt.
    pub(crate) fn finish(self) {
        self.attempts.fetch_add(1, Ordering::Release);
    }
}

impl<S> Deref for Flight<'_, S> {
    type Target = S;

    fn deref(&self) -> &S {
        &self.state
    }
}

impl<S> DerefMut for Flight<'_, S> {
    fn deref_mut(&mut self) -> &mut S {
        &mut self.state
    }
}

impl<T: RefCnt, S> Refreshing<T, S> {
    /// Holds `initial`; `state` is the fetcher's.
    pub(crate) fn new(initial: T, state: S) -> Self {
        Refreshing {
            current: ArcSwapAny::new(initial),
            flight: tokio::sync::Mutex::new(state),
            attempts: AtomicU64::new(0),
            stored: Arc::default(),
            task: OnceLock::new(),
        }
    }

    /// The value held: an atomic load.
    #[inline]
    pub(crate) fn load(&self) -> Guard<T> {
        self.current.load()
    }

    /// The cell itself, for a compare-and-swap.
    pub(crate) fn cell(&self) -> &ArcSwapAny<T> {
        &self.current
    }

    /// Stores a fetched value and wakes the background task to schedule on it.
    pub(crate) fn store(&self, value: T) {
        self.current.store(value);
        self.stored.notify_one();
    }

    /// The single flight. `settled` says whether the caller still needs a fetch (`None`) or
    /// has its answer (`Some`); it is asked before waiting (with `false`) and again once the
    /// flight is this caller's (with whether another attempt ended meanwhile). `Ok` hands the
    /// flight to the caller, who fetches and then calls [`Flight::finish`].
    pub(crate) async fn flight<R>(
        &self,
        settled: impl Fn(bool) -> Option<R>,
    ) -> Result<Flight<'_, S>, R> {
        let seen = self.attempts.load(Ordering::Acquire);
        if let Some(answer) = settled(false) {
            return Err(answer);
        }
        let state = self.flight.lock().await;
        if let Some(answer) = settled(self.attempts.load(Ordering::Acquire) != seen) {
            return Err(answer);
        }
        Ok(Flight {
            state,
            attempts: &self.attempts,
        })
    }

    /// Starts the background task of `owner` (whose `Refreshing` this is), once.
    pub(crate) fn start<O: Refresh>(&self, owner: &Arc<O>) {
        let _ = self.task.get_or_init(|| {
            AbortOnDrop(tokio::spawn(run(
                Arc::downgrade(owner),
                self.stored.clone(),
            )))
        });
    }
}

/// Refreshes at the value's due time; after a failure retries with back-off (and at least the
/// delay the failure asked for), rescheduling whenever a value is stored meanwhile. Ends when the
/// owner is gone.
async fn run<O: Refresh>(owner: Weak<O>, stored: Arc<Notify>) {
    let mut failures = 0u32;
    let mut asked = Duration::ZERO;
    loop {
        let wake = {
            let Some(owner) = owner.upgrade() else { return };
            match (owner.due_at(), failures) {
                (Some(due), 0) => due,
                _ => later(
                    Instant::now(),
                    owner.backoff().delay(failures.max(1)).max(asked),
                ),
            }
        };
        tokio::select! {
            () = tokio::time::sleep_until(wake) => {}
            // A value was stored meanwhile (by another fetch): schedule on it.
            () = stored.notified() => {
                failures = 0;
                continue;
            }
        }
        let Some(owner) = owner.upgrade() else { return };
        match owner.refresh().await {
            Ok(()) => failures = 0,
            Err(delay) => {
                failures = failures.saturating_add(1);
                asked = delay;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// A value that fails the fetches listed in `fail` (by number, from 1), and records when
    /// each fetch started.
    struct Counter {
        value: Refreshing<Arc<u64>>,
        fetches: Arc<Mutex<Vec<Instant>>>,
        fail: Vec<usize>,
        ttl: Duration,
        due: Mutex<Instant>,
    }

    impl Counter {
        fn new(fail: Vec<usize>) -> Arc<Counter> {
            Arc::new(Counter {
                value: Refreshing::new(Arc::new(0), ()),
                fetches: Arc::default(),
                fail,
                ttl: Duration::from_secs(100),
                due: Mutex::new(Instant::now()),
            })
        }

        /// A fetch through the single flight, for a caller that saw `seen`.
        async fn get(self: &Arc<Self>, seen: u64) -> Result<u64, ()> {
            let flight = self.value.flight(|waited| {
                let held = **self.value.load();
                (held != seen || waited).then_some(Ok(held))
            });
            let flight = match flight.await {
                Ok(flight) => flight,
                Err(answer) => return answer,
            };
            let result = self.fetch().await;
            flight.finish();
            result
        }

        async fn fetch(self: &Arc<Self>) -> Result<u64, ()> {
            let n = {
                let mut fetches = self.fetches.lock().unwrap();
                fetches.push(Instant::now());
                fetches.len()
            };
            // A fetch takes a while, so that concurrent callers pile up.
            tokio::time::sleep(Duration::from_millis(10)).await;
            if self.fail.contains(&n) {
                return Err(());
            }
            *self.due.lock().unwrap() = Instant::now() + self.ttl;
            self.value.store(Arc::new(n as u64));
            self.value.start(self);
            Ok(n as u64)
        }
    }

    impl Refresh for Counter {
        fn due_at(&self) -> Option<Instant> {
            Some(*self.due.lock().unwrap())
        }

        fn backoff(&self) -> Backoff {
            Backoff {
                first: Duration::from_secs(1),
                max: Duration::from_secs(8),
            }
        }

        async fn refresh(self: Arc<Self>) -> Result<(), Duration> {
            let seen = **self.value.load();
            self.get(seen).await.map(drop).map_err(|()| Duration::ZERO)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_one_fetch() {
        let counter = Counter::new(vec![]);
        let callers: Vec<_> = (0..50)
            .map(|_| {
                let counter = counter.clone();
                tokio::spawn(async move { counter.get(0).await })
            })
            .collect();
        for caller in callers {
            assert_eq!(caller.await.unwrap(), Ok(1));
        }
        assert_eq!(counter.fetches.lock().unwrap().len(), 1);
        // A caller that waited for a failed attempt gets its outcome instead of fetching again.
        let failing = Counter::new(vec![1]);
        let callers: Vec<_> = (0..10)
            .map(|_| {
                let failing = failing.clone();
                tokio::spawn(async move { failing.get(0).await })
            })
            .collect();
        let mut errors = 0;
        for caller in callers {
            errors += usize::from(caller.await.unwrap().is_err());
        }
        assert_eq!(errors, 1);
        assert_eq!(failing.fetches.lock().unwrap().len(), 1);
    }

    #[test]
    fn backoff_doubles_within_jitter_bounds_up_to_its_maximum() {
        let backoff = Backoff {
            first: Duration::from_secs(1),
            max: Duration::from_secs(30),
        };
        for (failures, ceiling) in [(1, 1), (2, 2), (3, 4), (5, 16), (6, 30), (40, 30)] {
            let ceiling = Duration::from_secs(ceiling);
            assert_eq!(backoff.ceiling(failures), ceiling);
            for _ in 0..200 {
                let delay = backoff.delay(failures);
                assert!(
                    delay >= ceiling / 2 && delay < ceiling,
                    "{failures}: {delay:?}"
                );
            }
        }
        // Absurd bounds neither overflow nor panic.
        let huge = Backoff {
            first: Duration::MAX,
            max: Duration::MAX,
        };
        assert!(huge.delay(u32::MAX) <= Duration::MAX);
    }

    #[tokio::test(start_paused = true)]
    async fn refreshes_when_due_and_recovers_after_errors_with_backoff() {
        // Fetch 1 succeeds; the refreshes 2 and 3 fail; 4 succeeds.
        let counter = Counter::new(vec![2, 3]);
        let start = Instant::now();
        assert_eq!(counter.get(0).await, Ok(1));
        tokio::time::sleep(Duration::from_secs(200)).await;
        let fetches = counter.fetches.lock().unwrap().clone();
        assert!(fetches.len() >= 4, "{fetches:?}");
        let since = |i: usize| fetches[i] - fetches[i - 1];
        // Due after the time to live (plus the 10 ms the first fetch took).
        assert_eq!(fetches[1] - start, Duration::from_millis(100_010));
        // Then 1 s doubling, each in the upper half of its ceiling (plus the fetch's 10 ms). The
        // ceiling itself is in reach: tokio's timer rounds a deadline up to its millisecond, so
        // a delay of 999.6 ms wakes at 1,000 ms.
        let first = since(2) - Duration::from_millis(10);
        assert!(
            (Duration::from_millis(500)..=Duration::from_secs(1)).contains(&first),
            "{first:?}"
        );
        let second = since(3) - Duration::from_millis(10);
        assert!(
            (Duration::from_secs(1)..=Duration::from_secs(2)).contains(&second),
            "{second:?}"
        );
        // Recovered: the value is that of fetch 4, and the next refresh is due a ttl later.
        assert_eq!(**counter.value.load(), 4);
        if let Some(next) = fetches.get(4) {
            assert_eq!(*next - fetches[3], Duration::from_millis(100_010));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_task_ends_with_its_owner() {
        let counter = Counter::new(vec![]);
        assert_eq!(counter.get(0).await, Ok(1));
        let fetches = counter.fetches.clone();
        let task = counter
            .value
            .task
            .get()
            .map(|t| t.0.abort_handle())
            .unwrap();
        drop(counter);
        // Aborted at once, long before its next refresh was due (when the weak reference to
        // its owner would have ended it too).
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(task.is_finished());
        tokio::time::sleep(Duration::from_secs(1000)).await;
        assert_eq!(fetches.lock().unwrap().len(), 1);
    }
}
