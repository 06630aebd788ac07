//! A map whose entries expire: the small caches of values many readers share for a short
//! while (a parent cgroup's CPU limit, a network namespace's counters, the host's CPUs).
use std::{
    borrow::Borrow,
    collections::HashMap,
    hash::Hash,
    sync::{
        Mutex, MutexGuard, PoisonError,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

/// Entries older than the map's time-to-live are neither returned nor kept: an insert that
/// finds the map at its sweep mark drops the expired entries, then moves the mark to twice
/// the live count (at least [`MIN_SWEEP_AT`]). The map stays bounded by about twice what was
/// inserted within one time-to-live, and sweeps cost O(1) per insert amortised.
const MIN_SWEEP_AT: usize = 64;

#[derive(Debug)]
pub struct TtlMap<K, V> {
    ttl: Duration,
    sweep_at: AtomicUsize,
    entries: Mutex<HashMap<K, (Instant, V)>>,
}

impl<K: Eq + Hash, V: Clone> TtlMap<K, V> {
    /// An empty map whose entries live for `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            sweep_at: AtomicUsize::new(MIN_SWEEP_AT),
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The value stored for `key` less than `ttl` ago.
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        self.get_within(key, self.ttl)
    }

    /// The value stored for `key` less than `max_age` (and the map's `ttl`) ago.
    pub fn get_within<Q>(&self, key: &Q, max_age: Duration) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        let max_age = max_age.min(self.ttl);
        self.lock()
            .get(key)
            .filter(|(at, _)| at.elapsed() < max_age)
            .map(|(_, value)| value.clone())
    }

    /// Stores `value` for `key`, stamped now.
    pub fn insert(&self, key: K, value: V) {
        self.store(&mut self.lock(), key, value);
    }

    /// Stores `value` for `key` unless a fresh entry is there (which keeps its stamp, so that it
    /// still expires); whether it stored.
    pub fn insert_if_vacant(&self, key: K, value: V) -> bool {
        let mut entries = self.lock();
        if entries
            .get(&key)
            .is_some_and(|(at, _)| at.elapsed() < self.ttl)
        {
            return false;
        }
        self.store(&mut entries, key, value);
        true
    }

    /// The value for `key` if fresh, else `load()`'s, stored. `load` runs without the lock
    /// held, so two callers may both load; the later store wins.
    pub fn get_or_insert_with<Q>(&self, key: &Q, load: impl FnOnce() -> V) -> V
    where
        K: Borrow<Q>,
        Q: Eq + Hash + ToOwned<Owned = K> + ?Sized,
    {
        if let Some(value) = self.get(key) {
            return value;
        }
        let value = load();
        self.insert(key.to_owned(), value.clone());
        value
    }

    /// How many entries are stored, expired ones included until the next sweep.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stores `value` for `key` in the locked `entries`, sweeping them at the mark.
    fn store(&self, entries: &mut HashMap<K, (Instant, V)>, key: K, value: V) {
        if entries.len() >= self.sweep_at.load(Ordering::Relaxed) {
            let ttl = self.ttl;
            entries.retain(|_, (at, _)| at.elapsed() < ttl);
            let mark = (entries.len() * 2).max(MIN_SWEEP_AT);
            self.sweep_at.store(mark, Ordering::Relaxed);
        }
        entries.insert(key, (Instant::now(), value));
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<K, (Instant, V)>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_entries_are_returned_and_expired_ones_are_not() {
        let map = TtlMap::new(Duration::from_millis(50));
        map.insert("a".to_owned(), 1);
        assert_eq!(map.get("a"), Some(1));
        assert_eq!(map.get_within("a", Duration::ZERO), None);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(map.get("a"), None);
        assert_eq!(map.get_or_insert_with("a", || 2), 2);
        assert_eq!(map.get("a"), Some(2));
    }

    #[test]
    fn insert_if_vacant_keeps_a_fresh_entry_and_replaces_an_expired_one() {
        let map = TtlMap::new(Duration::from_millis(50));
        assert!(map.insert_if_vacant("a", 1));
        assert!(!map.insert_if_vacant("a", 2));
        assert_eq!(map.get("a"), Some(1));
        std::thread::sleep(Duration::from_millis(60));
        assert!(map.insert_if_vacant("a", 3));
        assert_eq!(map.get("a"), Some(3));
    }

    #[test]
    fn expired_entries_are_swept_on_insert() {
        let map = TtlMap::new(Duration::from_millis(20));
        for i in 0..MIN_SWEEP_AT {
            map.insert(i, i);
        }
        std::thread::sleep(Duration::from_millis(30));
        map.insert(1_000, 0);
        assert_eq!(map.len(), 1);
        assert!(!map.is_empty());
    }
}
