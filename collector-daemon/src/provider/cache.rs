//! The staleness cache, after Datadog's provider `Cache`.
//!
//! As in Datadog's:
//! - the caller says how stale an answer may be (`max_age`, Datadog's `cacheValidity`), not
//!   the one who stored it; `max_age == 0` bypasses the cache (but the fresh answer is still
//!   stored, so the next caller with a non-zero `max_age` can use it);
//! - whatever the fetch returned is stored: values, errors and "does not know" alike. The
//!   cache stores any `T`; the cached collectors (`cached.rs`) store a whole
//!   `CollectorResult<T>`, so a failing collector is not asked again within the window.
//!
//! Unlike Datadog's:
//! - expiry is per entry: an entry older than the retention (30 s by default) is dropped on
//!   its own, swept from the oldest end on every store, rather than the whole map being
//!   replaced every 30 s (which drops entries stored a moment before);
//! - single flight per key: callers missing the same key while a fetch for it is running wait
//!   for that fetch and share its answer, rather than each calling the collector;
//! - the size is bounded: past `capacity` the oldest entries go first.
//!
//! Callers are synchronous (the daemon calls the provider from `spawn_blocking`), so this uses
//! std locks. The map lock is never held while fetching: different keys fetch in parallel.
//!
//! One cache can be shared by several collectors, as Datadog's provider-wide cache is: the
//! values are type-erased, and keys must say which collector and capability they belong to
//! (`cached.rs` prefixes them with the collector id and Datadog's `cs-`, `cns-`, ...).
use std::{
    any::Any,
    collections::BTreeMap,
    sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use crate::fast_map::FastMap;

/// How long an entry is kept at most, whatever `max_age` callers ask for (Datadog's
/// `cacheGCInterval`).
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30);

/// How many entries are kept at most. A few entries per container and capability, plus one
/// per PID or inode asked about: this leaves room for thousands of containers.
pub const DEFAULT_CAPACITY: usize = 16_384;

/// Where the cache reads the time, so tests can move it by hand.
pub trait Clock: Send + Sync {
    fn now(&self) -> Instant;
}

/// The monotonic clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that only moves when told to (for tests).
#[derive(Debug)]
pub struct ManualClock {
    start: Instant,
    elapsed: Mutex<Duration>,
}

impl ManualClock {
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            elapsed: Mutex::new(Duration::ZERO),
        }
    }

    pub fn advance(&self, by: Duration) {
        *lock(&self.elapsed) += by;
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.start + *lock(&self.elapsed)
    }
}

type Value = Arc<dyn Any + Send + Sync>;

struct Entry {
    value: Value,
    /// When the fetch that produced the value started: the data is at least that fresh.
    stored_at: Instant,
    /// Breaks ties between entries stored at the same instant in `by_age`.
    seq: u64,
}

/// A fetch in progress for one key.
struct Flight {
    started: Instant,
    state: Mutex<FlightProgress>,
    done: Condvar,
}

struct FlightProgress {
    state: FlightState,
    /// Callers blocked in `wait`: `finish` wakes them only when there are any (a
    /// `notify_all` is a futex syscall even with nobody waiting, and nearly every fetch has
    /// no one waiting).
    waiters: usize,
}

enum FlightState {
    Running,
    Done(Value),
    /// The fetch panicked: waiters go back and try again (one of them fetches).
    Abandoned,
}

impl Flight {
    /// Waits for the fetch to end; `None` when it was abandoned.
    fn wait(&self) -> Option<Value> {
        let mut progress = lock(&self.state);
        loop {
            match &progress.state {
                FlightState::Running => {
                    progress.waiters += 1;
                    progress = self
                        .done
                        .wait(progress)
                        .unwrap_or_else(PoisonError::into_inner);
                    progress.waiters -= 1;
                }
                FlightState::Done(value) => return Some(Arc::clone(value)),
                FlightState::Abandoned => return None,
            }
        }
    }

    fn finish(&self, state: FlightState) {
        let mut progress = lock(&self.state);
        progress.state = state;
        // A waiter counts itself under this lock before it sleeps, so none is missed.
        let anyone_waits = progress.waiters > 0;
        drop(progress);
        if anyone_waits {
            self.done.notify_all();
        }
    }
}

#[derive(Default)]
struct Inner {
    entries: FastMap<String, Entry>,
    /// Every entry's key by `(stored_at, seq)`: the first is the oldest.
    by_age: BTreeMap<(Instant, u64), String>,
    next_seq: u64,
    flights: FastMap<String, Arc<Flight>>,
}

impl Inner {
    fn remove(&mut self, key: &str) {
        if let Some(old) = self.entries.remove(key) {
            self.by_age.remove(&(old.stored_at, old.seq));
        }
    }

    /// Drops entries older than `retention`, then the oldest ones beyond `capacity`. Only
    /// looks at the old end of `by_age`, so a sweep costs what it removes.
    fn sweep(&mut self, now: Instant, retention: Duration, capacity: usize) {
        while let Some(entry) = self.by_age.first_entry() {
            let (stored_at, _) = *entry.key();
            let expired = now.saturating_duration_since(stored_at) > retention;
            if !expired && self.entries.len() <= capacity {
                break;
            }
            let key = entry.remove();
            self.entries.remove(&key);
        }
    }
}

/// What a caller does after looking at the cache.
enum Step<T> {
    Hit(T),
    /// Lead a new flight: fetch, store, wake the waiters.
    Lead(Arc<Flight>),
    /// Wait for the flight in progress.
    Join(Arc<Flight>),
    /// Fetch without a flight: the running one started too long ago for this caller.
    Alone,
}

/// The staleness cache. See the module documentation.
pub struct Cache {
    clock: Arc<dyn Clock>,
    retention: Duration,
    capacity: usize,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("retention", &self.retention)
            .field("capacity", &self.capacity)
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl Default for Cache {
    fn default() -> Self {
        Self::new(Arc::new(SystemClock), DEFAULT_RETENTION, DEFAULT_CAPACITY)
    }
}

impl Cache {
    /// `retention` caps how long any entry is kept; `capacity` (at least 1) how many.
    pub fn new(clock: Arc<dyn Clock>, retention: Duration, capacity: usize) -> Self {
        Self {
            clock,
            retention,
            capacity: capacity.max(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The value stored under `key` if it is at most `max_age` old; otherwise what `fetch`
    /// returns, which is stored. `max_age == 0` always fetches.
    ///
    /// While one caller fetches a key, others missing the same key wait for that fetch and
    /// get a clone of its value, unless it started more than their `max_age` ago. A key must
    /// always be used with the same `T`; a value of another type counts as a miss.
    pub fn get_or_fetch<T, F>(&self, key: &str, max_age: Duration, fetch: F) -> T
    where
        T: Clone + Send + Sync + 'static,
        F: FnOnce() -> T,
    {
        if max_age.is_zero() {
            return self.fetch_alone(key, fetch);
        }
        // Older than the retention is a miss whatever the caller accepts, so answers do not
        // depend on when the sweep last ran.
        let max_age = max_age.min(self.retention);
        loop {
            match self.look(key, max_age) {
                Step::Hit(value) => return value,
                Step::Alone => return self.fetch_alone(key, fetch),
                Step::Lead(flight) => return self.lead(key, &flight, fetch),
                Step::Join(flight) => {
                    // `None`: the leader panicked; look again (this caller may lead now).
                    if let Some(value) = flight.wait() {
                        return match value.downcast_ref::<T>() {
                            Some(value) => value.clone(),
                            None => self.fetch_alone(key, fetch),
                        };
                    }
                }
            }
        }
    }

    fn look<T: Clone + 'static>(&self, key: &str, max_age: Duration) -> Step<T> {
        let now = self.clock.now();
        let mut inner = lock(&self.inner);
        if let Some(entry) = inner.entries.get(key)
            && now.saturating_duration_since(entry.stored_at) <= max_age
            && let Some(value) = entry.value.downcast_ref::<T>()
        {
            return Step::Hit(value.clone());
        }
        match inner.flights.get(key) {
            Some(flight) if now.saturating_duration_since(flight.started) <= max_age => {
                Step::Join(Arc::clone(flight))
            }
            Some(_) => Step::Alone,
            None => {
                let flight = Arc::new(Flight {
                    started: now,
                    state: Mutex::new(FlightProgress {
                        state: FlightState::Running,
                        waiters: 0,
                    }),
                    done: Condvar::new(),
                });
                inner.flights.insert(key.to_owned(), Arc::clone(&flight));
                Step::Lead(flight)
            }
        }
    }

    fn lead<T, F>(&self, key: &str, flight: &Arc<Flight>, fetch: F) -> T
    where
        T: Clone + Send + Sync + 'static,
        F: FnOnce() -> T,
    {
        // If `fetch` panics, the guard wakes the waiters (they retry) and clears the flight.
        let mut guard = LeaderGuard {
            cache: self,
            key,
            flight,
            done: false,
        };
        let value = fetch();
        let shared: Value = Arc::new(value.clone());
        {
            let mut inner = lock(&self.inner);
            self.insert(&mut inner, key, flight.started, Arc::clone(&shared));
            remove_flight(&mut inner, key, flight);
        }
        flight.finish(FlightState::Done(shared));
        guard.done = true;
        value
    }

    fn fetch_alone<T, F>(&self, key: &str, fetch: F) -> T
    where
        T: Clone + Send + Sync + 'static,
        F: FnOnce() -> T,
    {
        let started = self.clock.now();
        let value = fetch();
        let mut inner = lock(&self.inner);
        self.insert(&mut inner, key, started, Arc::new(value.clone()));
        value
    }

    /// Stores `value` unless the entry holds a fresher one (two fetches of one key can end in
    /// any order; the one that started last has the newer data).
    fn insert(&self, inner: &mut Inner, key: &str, stored_at: Instant, value: Value) {
        if inner
            .entries
            .get(key)
            .is_some_and(|old| old.stored_at > stored_at)
        {
            return;
        }
        inner.remove(key);
        let seq = inner.next_seq;
        inner.next_seq += 1;
        inner.by_age.insert((stored_at, seq), key.to_owned());
        inner.entries.insert(
            key.to_owned(),
            Entry {
                value,
                stored_at,
                seq,
            },
        );
        inner.sweep(self.clock.now(), self.retention, self.capacity);
    }

    /// Drops the entries older than the retention. Stores already do this; call it to free
    /// memory when nothing has been stored for a while.
    pub fn gc(&self) {
        let now = self.clock.now();
        lock(&self.inner).sweep(now, self.retention, self.capacity);
    }

    /// Entries stored (fresh or not yet swept).
    pub fn len(&self) -> usize {
        lock(&self.inner).entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `key` has an entry, however old.
    pub fn contains(&self, key: &str) -> bool {
        lock(&self.inner).entries.contains_key(key)
    }
}

/// Clears a flight whose leader did not finish it (its fetch panicked).
struct LeaderGuard<'a> {
    cache: &'a Cache,
    key: &'a str,
    flight: &'a Arc<Flight>,
    done: bool,
}

impl Drop for LeaderGuard<'_> {
    fn drop(&mut self) {
        if !self.done {
            remove_flight(&mut lock(&self.cache.inner), self.key, self.flight);
            self.flight.finish(FlightState::Abandoned);
        }
    }
}

/// Removes `key`'s flight if it is still `flight` (not one started since).
fn remove_flight(inner: &mut Inner, key: &str, flight: &Arc<Flight>) {
    if inner
        .flights
        .get(key)
        .is_some_and(|f| Arc::ptr_eq(f, flight))
    {
        inner.flights.remove(key);
    }
}

/// Locks, ignoring poisoning: nothing panics while holding these locks, and a fetch that
/// panics does so outside them.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Waits (at most 10 s) until `holders` hold the flight of `key`: the flights map, the leader
/// and each waiter hold one reference (tests: proves callers joined a flight, no sleeping).
#[cfg(test)]
pub(crate) fn wait_for_flight_holders(cache: &Cache, key: &str, holders: usize) {
    crate::test_support::wait_until(&format!("{holders} holders of flight {key}"), || {
        lock(&cache.inner)
            .flights
            .get(key)
            .map_or(0, Arc::strong_count)
            >= holders
    });
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{
            Barrier,
            atomic::{AtomicUsize, Ordering},
            mpsc,
        },
        thread,
    };

    use super::*;
    use crate::provider::{CollectorError, CollectorResult};

    fn cache(clock: &Arc<ManualClock>) -> Cache {
        Cache::new(Arc::clone(clock) as Arc<dyn Clock>, DEFAULT_RETENTION, 100)
    }

    /// A fetch that counts its calls and returns `answer`.
    fn counted<T: Clone + 'static>(calls: &AtomicUsize, answer: T) -> impl FnOnce() -> T + '_ {
        move || {
            calls.fetch_add(1, Ordering::SeqCst);
            answer
        }
    }

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn zero_max_age_always_fetches_and_stores_the_fresh_answer() {
        let clock = Arc::new(ManualClock::new());
        let cache = cache(&clock);
        let calls = AtomicUsize::new(0);
        assert_eq!(
            cache.get_or_fetch("k", Duration::ZERO, counted(&calls, 1u64)),
            1
        );
        assert_eq!(
            cache.get_or_fetch("k", Duration::ZERO, counted(&calls, 2u64)),
            2
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // The bypassing call stored its answer: a tolerant caller gets it.
        assert_eq!(cache.get_or_fetch("k", SECOND, counted(&calls, 3u64)), 2);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn hit_within_max_age_and_stale_entry_is_a_miss() {
        let clock = Arc::new(ManualClock::new());
        let cache = cache(&clock);
        let calls = AtomicUsize::new(0);
        assert_eq!(
            cache.get_or_fetch("k", 2 * SECOND, counted(&calls, 1u64)),
            1
        );
        clock.advance(2 * SECOND);
        // Exactly max_age old is still a hit (Datadog's provider misses only when older).
        assert_eq!(
            cache.get_or_fetch("k", 2 * SECOND, counted(&calls, 2u64)),
            1
        );
        clock.advance(SECOND);
        // 3 s old: stale for a 2 s caller, fine for a 5 s one.
        assert_eq!(
            cache.get_or_fetch("k", 5 * SECOND, counted(&calls, 2u64)),
            1
        );
        assert_eq!(
            cache.get_or_fetch("k", 2 * SECOND, counted(&calls, 2u64)),
            2
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn error_is_cached_within_max_age() {
        let clock = Arc::new(ManualClock::new());
        let cache = cache(&clock);
        let calls = AtomicUsize::new(0);
        let failed: CollectorResult<u64> = Err(CollectorError::other("boom"));
        let first = cache.get_or_fetch("k", 2 * SECOND, counted(&calls, failed.clone()));
        assert_eq!(first, failed);
        clock.advance(SECOND);
        let second: CollectorResult<u64> =
            cache.get_or_fetch("k", 2 * SECOND, counted(&calls, Ok(Some(5u64))));
        assert_eq!(second, failed);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        clock.advance(2 * SECOND);
        let third: CollectorResult<u64> =
            cache.get_or_fetch("k", 2 * SECOND, counted(&calls, Ok(Some(5u64))));
        assert_eq!(third, Ok(Some(5)));
    }

    #[test]
    fn does_not_know_is_cached() {
        let clock = Arc::new(ManualClock::new());
        let cache = cache(&clock);
        let calls = AtomicUsize::new(0);
        let unknown: CollectorResult<u64> = Ok(None);
        assert_eq!(
            cache.get_or_fetch("k", SECOND, counted(&calls, unknown)),
            Ok(None)
        );
        let again: CollectorResult<u64> =
            cache.get_or_fetch("k", SECOND, counted(&calls, Ok(Some(1u64))));
        assert_eq!(again, Ok(None));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn expiry_is_per_entry_and_keeps_fresh_entries() {
        let clock = Arc::new(ManualClock::new());
        let cache = cache(&clock);
        let calls = AtomicUsize::new(0);
        cache.get_or_fetch("old", SECOND, counted(&calls, 1u64));
        clock.advance(20 * SECOND);
        cache.get_or_fetch("fresh", SECOND, counted(&calls, 2u64));
        clock.advance(15 * SECOND);
        // "old" is 35 s old (past the 30 s retention), "fresh" 15 s.
        cache.gc();
        assert!(!cache.contains("old"));
        assert!(cache.contains("fresh"));
        assert_eq!(
            cache.get_or_fetch("fresh", 20 * SECOND, counted(&calls, 9u64)),
            2
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn store_sweeps_expired_entries() {
        let clock = Arc::new(ManualClock::new());
        let cache = cache(&clock);
        let calls = AtomicUsize::new(0);
        cache.get_or_fetch("a", SECOND, counted(&calls, 1u64));
        cache.get_or_fetch("b", SECOND, counted(&calls, 1u64));
        clock.advance(31 * SECOND);
        cache.get_or_fetch("c", SECOND, counted(&calls, 1u64));
        assert_eq!(cache.len(), 1);
        assert!(cache.contains("c"));
    }

    #[test]
    fn retention_caps_max_age() {
        let clock = Arc::new(ManualClock::new());
        let cache = cache(&clock);
        let calls = AtomicUsize::new(0);
        cache.get_or_fetch("k", 60 * SECOND, counted(&calls, 1u64));
        clock.advance(40 * SECOND);
        // Not swept yet, but past the retention: a miss even for a 60 s caller.
        assert!(cache.contains("k"));
        assert_eq!(
            cache.get_or_fetch("k", 60 * SECOND, counted(&calls, 2u64)),
            2
        );
    }

    #[test]
    fn capacity_evicts_the_oldest() {
        let clock = Arc::new(ManualClock::new());
        let cache = Cache::new(Arc::clone(&clock) as Arc<dyn Clock>, DEFAULT_RETENTION, 3);
        let calls = AtomicUsize::new(0);
        for key in ["a", "b", "c", "d", "e"] {
            cache.get_or_fetch(key, SECOND, counted(&calls, 0u64));
            clock.advance(Duration::from_millis(10));
        }
        assert_eq!(cache.len(), 3);
        assert!(!cache.contains("a") && !cache.contains("b"));
        assert!(cache.contains("c") && cache.contains("d") && cache.contains("e"));
        // Refreshing "c" makes it the newest: "d" goes next.
        cache.get_or_fetch("c", Duration::ZERO, counted(&calls, 1u64));
        cache.get_or_fetch("f", SECOND, counted(&calls, 0u64));
        assert!(cache.contains("c") && !cache.contains("d"));
    }

    #[test]
    fn a_fresher_entry_is_not_overwritten_by_an_older_fetch() {
        let clock = Arc::new(ManualClock::new());
        let cache = Arc::new(cache(&clock));
        let (started_tx, started_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let slow = {
            let cache = Arc::clone(&cache);
            thread::spawn(move || {
                cache.get_or_fetch("k", SECOND, move || {
                    started_tx.send(()).unwrap();
                    release_rx.recv().unwrap();
                    1u64
                })
            })
        };
        started_rx.recv().unwrap();
        clock.advance(Duration::from_millis(10));
        // A bypassing caller fetches newer data while the slow fetch runs.
        assert_eq!(cache.get_or_fetch("k", Duration::ZERO, || 2u64), 2);
        release_tx.send(()).unwrap();
        assert_eq!(slow.join().unwrap(), 1);
        assert_eq!(cache.get_or_fetch("k", SECOND, || 3u64), 2);
    }

    #[test]
    fn single_flight_one_fetch_for_concurrent_misses() {
        const THREADS: usize = 8;
        let clock = Arc::new(ManualClock::new());
        let cache = Arc::new(cache(&clock));
        let calls = Arc::new(AtomicUsize::new(0));
        let barrier = Arc::new(Barrier::new(THREADS));
        let handles: Vec<_> = (0..THREADS)
            .map(|i| {
                let (cache, calls, barrier) =
                    (Arc::clone(&cache), Arc::clone(&calls), Arc::clone(&barrier));
                thread::spawn(move || {
                    barrier.wait();
                    cache.get_or_fetch("k", SECOND, || {
                        calls.fetch_add(1, Ordering::SeqCst);
                        // Every other thread has joined this flight before it ends.
                        wait_for_flight_holders(&cache, "k", THREADS + 1);
                        Ok::<_, CollectorError>(Some(i))
                    })
                })
            })
            .collect();
        let answers: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(answers.iter().all(|a| *a == answers[0]), "{answers:?}");
    }

    #[test]
    fn different_keys_fetch_in_parallel() {
        let clock = Arc::new(ManualClock::new());
        let cache = Arc::new(cache(&clock));
        // Each fetch waits until the other one has started: if fetches of different keys
        // were serialized, the first would time out.
        let (a_tx, a_rx) = mpsc::channel();
        let (b_tx, b_rx) = mpsc::channel();
        let spawn = |key: &'static str, tell: mpsc::Sender<()>, hear: mpsc::Receiver<()>| {
            let cache = Arc::clone(&cache);
            thread::spawn(move || {
                cache.get_or_fetch(key, SECOND, move || {
                    tell.send(()).unwrap();
                    hear.recv_timeout(Duration::from_secs(5)).is_ok()
                })
            })
        };
        let a = spawn("a", a_tx, b_rx);
        let b = spawn("b", b_tx, a_rx);
        assert!(a.join().unwrap());
        assert!(b.join().unwrap());
    }

    #[test]
    fn waiters_fetch_themselves_when_the_leader_panics() {
        let clock = Arc::new(ManualClock::new());
        let cache = Arc::new(cache(&clock));
        let (started_tx, started_rx) = mpsc::channel();
        let leader = {
            let cache = Arc::clone(&cache);
            thread::spawn(move || {
                let inner = Arc::clone(&cache);
                cache.get_or_fetch("k", SECOND, move || -> u64 {
                    started_tx.send(()).unwrap();
                    // The map, this leader and the waiter hold the flight: panic only then.
                    wait_for_flight_holders(&inner, "k", 3);
                    panic!("fetch failed hard");
                })
            })
        };
        started_rx.recv().unwrap();
        // Joins the flight, which is abandoned, then fetches itself.
        assert_eq!(cache.get_or_fetch("k", SECOND, || 7u64), 7);
        assert!(leader.join().is_err());
        assert_eq!(cache.get_or_fetch("k", SECOND, || 8u64), 7);
    }
}
