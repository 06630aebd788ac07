//! The registry, after Datadog's: collector factories are called until they succeed or fail
//! for good, and what they offer is merged into one catalog.
//!
//! As in Datadog's provider:
//! - `retry_once` calls every remaining constructor. `Ok(catalog)` is merged and its factory
//!   dropped; `Permanent` drops the factory for good (Datadog's `ErrPermaFail`); `NotYet`
//!   keeps it for the next round (Datadog's `ErrNothingYet` and any other error). An empty
//!   catalog is kept for the next round too (as Datadog skips a nil `Collectors`);
//! - the first round runs synchronously in `start` (so collectors ready at startup serve the
//!   first request), then one round every 2 s until no factory remains;
//! - observers are told synchronously after each round that merged something (Datadog's
//!   `catalogUpdatedCallback`).
//!
//! Unlike Datadog's:
//! - every offering reference is kept, in a chain ordered by (priority, collector id), not
//!   only the best one per runtime and capability with ties broken by a Go map's random
//!   order: the first is the "best", ties break the same way on every run, and the others are
//!   there to fall back on (`super::first_known`);
//! - the catalog is published behind a lock as one `Arc` (Datadog swaps a map unlocked);
//! - a panicking constructor is dropped like a `Permanent` one, rather than killing the loop.
//!
//! The retry loop is a std thread, not a tokio task: constructors may block (they probe
//! sockets and files), the provider is used from blocking code, and tests need no runtime.
//! `RetryLoop` stops it: dropping the handle wakes the thread, which exits, and is joined.
use std::{
    collections::{BTreeMap, HashSet},
    panic::{AssertUnwindSafe, catch_unwind},
    sync::{
        Arc, Mutex, MutexGuard, PoisonError, RwLock,
        mpsc::{self, RecvTimeoutError},
    },
    thread::JoinHandle,
    time::Duration,
};

use super::{
    CgroupIdentity, CollectorCatalog, CollectorFactory, CollectorRef, Collectors, ConstructError,
    ContainerIdForPodUidAndName, ContainerListing, IoCollector, NetworkCollector,
    OpenFilesCollector, PidsCollector, ProcessIdentity, RuntimeMetadata, StatsCollector,
};

/// How often factories that are not ready yet are tried again (Datadog's `minRetryInterval`).
pub const RETRY_INTERVAL: Duration = Duration::from_secs(2);

/// Per capability, every collector offering it, best first: ordered by (priority, id), one
/// reference per collector id (its best priority).
#[derive(Clone, Debug, Default)]
pub struct CollectorChains {
    pub stats: Vec<CollectorRef<dyn StatsCollector>>,
    pub io: Vec<CollectorRef<dyn IoCollector>>,
    pub network: Vec<CollectorRef<dyn NetworkCollector>>,
    pub open_files: Vec<CollectorRef<dyn OpenFilesCollector>>,
    pub pids: Vec<CollectorRef<dyn PidsCollector>>,
    pub process_identity: Vec<CollectorRef<dyn ProcessIdentity>>,
    pub cgroup_identity: Vec<CollectorRef<dyn CgroupIdentity>>,
    pub container_listing: Vec<CollectorRef<dyn ContainerListing>>,
    pub container_id_for_pod_uid_and_name: Vec<CollectorRef<dyn ContainerIdForPodUidAndName>>,
}

impl CollectorChains {
    /// Builds the chains of everything in `offers`.
    pub fn from_offers<'a>(offers: impl IntoIterator<Item = &'a Collectors>) -> Self {
        let mut chains = Self::default();
        for offer in offers {
            chains.add(offer);
        }
        chains.order();
        chains
    }

    fn add(&mut self, offer: &Collectors) {
        let Collectors {
            stats,
            io,
            network,
            open_files,
            pids,
            process_identity,
            cgroup_identity,
            container_listing,
            container_id_for_pod_uid_and_name,
        } = offer;
        self.stats.extend(stats.clone());
        self.io.extend(io.clone());
        self.network.extend(network.clone());
        self.open_files.extend(open_files.clone());
        self.pids.extend(pids.clone());
        self.process_identity.extend(process_identity.clone());
        self.cgroup_identity.extend(cgroup_identity.clone());
        self.container_listing.extend(container_listing.clone());
        self.container_id_for_pod_uid_and_name
            .extend(container_id_for_pod_uid_and_name.clone());
    }

    fn order(&mut self) {
        order(&mut self.stats);
        order(&mut self.io);
        order(&mut self.network);
        order(&mut self.open_files);
        order(&mut self.pids);
        order(&mut self.process_identity);
        order(&mut self.cgroup_identity);
        order(&mut self.container_listing);
        order(&mut self.container_id_for_pod_uid_and_name);
    }

    /// Per capability, the collector ids in chain order (for logs and the API).
    pub fn describe(&self) -> BTreeMap<&'static str, Vec<&'static str>> {
        fn ids<T: ?Sized>(chain: &[CollectorRef<T>]) -> Vec<&'static str> {
            chain.iter().map(|r| r.id).collect()
        }
        BTreeMap::from([
            ("stats", ids(&self.stats)),
            ("io", ids(&self.io)),
            ("network", ids(&self.network)),
            ("open_files", ids(&self.open_files)),
            ("pids", ids(&self.pids)),
            ("process_identity", ids(&self.process_identity)),
            ("cgroup_identity", ids(&self.cgroup_identity)),
            ("container_listing", ids(&self.container_listing)),
            (
                "container_id_for_pod_uid_and_name",
                ids(&self.container_id_for_pod_uid_and_name),
            ),
        ])
    }
}

/// Sorts by (priority, id) and keeps one reference per collector id: the same collector
/// registered for several runtimes (Datadog's `system`) is asked once. The sort is stable,
/// so among equal (priority, id) the first merged stays.
fn order<T: ?Sized>(chain: &mut Vec<CollectorRef<T>>) {
    chain.sort_by_key(|r| (r.priority, r.id));
    let mut seen = HashSet::new();
    chain.retain(|r| seen.insert(r.id));
}

/// What the registry publishes: the chains per runtime, and across all runtimes.
#[derive(Debug, Default)]
pub struct Catalog {
    /// Runtimes that at least one collector serves.
    pub runtimes: BTreeMap<RuntimeMetadata, Arc<CollectorChains>>,
    /// Every collector whatever its runtime: for the meta collector (which, as Datadog's, asks
    /// the identity capabilities of all runtimes), and for containers of an unknown runtime.
    pub any: Arc<CollectorChains>,
}

impl Catalog {
    /// Merges the catalogs of every constructed collector.
    pub fn build(merged: &[CollectorCatalog]) -> Self {
        let mut per_runtime: BTreeMap<RuntimeMetadata, Vec<&Collectors>> = BTreeMap::new();
        for catalog in merged {
            for (runtime, offer) in catalog {
                per_runtime.entry(*runtime).or_default().push(offer);
            }
        }
        let any = CollectorChains::from_offers(merged.iter().flat_map(|c| c.values()));
        Self {
            runtimes: per_runtime
                .into_iter()
                .map(|(rt, offers)| (rt, Arc::new(CollectorChains::from_offers(offers))))
                .collect(),
            any: Arc::new(any),
        }
    }
}

type Observer = Box<dyn Fn(&Arc<Catalog>) + Send + Sync>;

struct State {
    pending: Vec<CollectorFactory>,
    /// Catalogs of the constructed collectors, in the order they were merged.
    merged: Vec<CollectorCatalog>,
}

/// The collector registry. See the module documentation.
pub struct Registry {
    /// Held through a whole round, so rounds (the loop's and a direct call) do not overlap
    /// and observers hear of catalogs in the order they were published.
    round: Mutex<()>,
    state: Mutex<State>,
    published: RwLock<Arc<Catalog>>,
    observers: Mutex<Vec<Observer>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("pending", &self.pending())
            .field("catalog", &self.catalog())
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// A registry with nothing constructed yet; `retry_once` or `start` constructs.
    pub fn new(factories: Vec<CollectorFactory>) -> Self {
        Self {
            round: Mutex::new(()),
            state: Mutex::new(State {
                pending: factories,
                merged: Vec::new(),
            }),
            published: RwLock::new(Arc::new(Catalog::default())),
            observers: Mutex::new(Vec::new()),
        }
    }

    /// The current catalog. Cheap (an `Arc` clone); do not keep it long, as better
    /// collectors may appear (Datadog's: "You should not cache the result").
    pub fn catalog(&self) -> Arc<Catalog> {
        Arc::clone(
            &self
                .published
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    /// Ids of the factories still to be retried.
    pub fn pending(&self) -> Vec<&'static str> {
        lock(&self.state).pending.iter().map(|f| f.id).collect()
    }

    /// Calls `observer` now with the current catalog, then after every change, on the
    /// thread that made it. It may read the registry, but not call `on_update` or
    /// `retry_once`.
    pub fn on_update(&self, observer: impl Fn(&Arc<Catalog>) + Send + Sync + 'static) {
        let mut observers = lock(&self.observers);
        observer(&self.catalog());
        observers.push(Box::new(observer));
    }

    /// One round: calls every remaining constructor, merges what succeeded, publishes and
    /// tells the observers if anything was merged. Returns how many factories remain.
    pub fn retry_once(&self) -> usize {
        let _round = lock(&self.round);
        let mut state = lock(&self.state);
        let State { pending, merged } = &mut *state;
        let (merged_before, pending_before) = (merged.len(), pending.len());
        pending.retain_mut(|factory| match construct(factory) {
            Ok(catalog) if catalog.is_empty() => {
                tracing::debug!(collector = factory.id, "collector offers nothing yet");
                true
            }
            Ok(catalog) => {
                tracing::info!(
                    collector = factory.id,
                    runtimes = ?catalog.keys().map(ToString::to_string).collect::<Vec<_>>(),
                    "collector available"
                );
                merged.push(catalog);
                false
            }
            Err(ConstructError::NotYet(why)) => {
                tracing::debug!(collector = factory.id, %why, "collector not available yet");
                true
            }
            Err(ConstructError::Permanent(why)) => {
                tracing::info!(collector = factory.id, %why, "collector will never be available");
                false
            }
        });
        let remaining = pending.len();
        if remaining == 0 && pending_before > 0 {
            tracing::info!("collector discovery finished");
        }
        if merged.len() == merged_before {
            return remaining;
        }
        let catalog = Arc::new(Catalog::build(merged));
        *self
            .published
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::clone(&catalog);
        drop(state);
        for observer in lock(&self.observers).iter() {
            observer(&catalog);
        }
        remaining
    }

    /// Runs a round now, then one every `interval` on a thread until no factory remains or
    /// the returned handle is dropped.
    pub fn start(self: &Arc<Self>, interval: Duration) -> RetryLoop {
        if self.retry_once() == 0 {
            return RetryLoop::idle();
        }
        let (stop, stopped) = mpsc::channel::<()>();
        let registry = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("provider-retry".into())
            .spawn(move || {
                // Both a message and a dropped sender mean stop; only a timeout means retry.
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                    if registry.retry_once() == 0 {
                        return;
                    }
                }
            });
        match spawned {
            Ok(thread) => RetryLoop {
                stop: Some(stop),
                thread: Some(thread),
            },
            Err(e) => {
                tracing::error!(error = %e, "cannot start the collector retry thread; collectors not ready now will not be used");
                RetryLoop::idle()
            }
        }
    }
}

/// Calls a constructor; a panic counts as a permanent failure.
fn construct(factory: &mut CollectorFactory) -> Result<CollectorCatalog, ConstructError> {
    catch_unwind(AssertUnwindSafe(|| (factory.constructor)()))
        .unwrap_or_else(|_| Err(ConstructError::permanent("constructor panicked")))
}

/// The retry thread. Dropping this stops it and waits for it (at most one round).
#[derive(Debug)]
pub struct RetryLoop {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl RetryLoop {
    fn idle() -> Self {
        Self {
            stop: None,
            thread: None,
        }
    }

    /// True once no factory remains (or the loop never had to start).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Stops the thread and waits for it.
    pub fn stop(&mut self) {
        // Dropping the sender wakes the thread (its receive fails) at once.
        self.stop = None;
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the collector retry thread panicked");
        }
    }
}

impl Drop for RetryLoop {
    fn drop(&mut self) {
        self.stop();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::{
        provider::{
            Flavor, Runtime,
            testing::{Fake, Mode, catalog, ready, reference},
        },
        test_support::wait_until,
    };

    const DOCKER: RuntimeMetadata = RuntimeMetadata {
        runtime: Runtime::Docker,
        flavor: Flavor::Default,
    };
    const CONTAINERD: RuntimeMetadata = RuntimeMetadata {
        runtime: Runtime::Containerd,
        flavor: Flavor::Default,
    };
    const CONTAINERD_KATA: RuntimeMetadata = RuntimeMetadata {
        runtime: Runtime::Containerd,
        flavor: Flavor::Kata,
    };

    /// A factory answering `NotYet` until its `succeed_on`-th call, counting calls.
    fn eventually(
        id: &'static str,
        succeed_on: usize,
        catalog: CollectorCatalog,
        calls: Arc<AtomicUsize>,
    ) -> CollectorFactory {
        CollectorFactory {
            id,
            constructor: Box::new(move || {
                let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                if n >= succeed_on {
                    Ok(catalog.clone())
                } else {
                    Err(ConstructError::not_yet(format!("try {n}")))
                }
            }),
        }
    }

    fn permanent(id: &'static str, calls: Arc<AtomicUsize>) -> CollectorFactory {
        CollectorFactory {
            id,
            constructor: Box::new(move || {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(ConstructError::permanent("not installed"))
            }),
        }
    }

    fn stats_ids(chains: &CollectorChains) -> Vec<(&'static str, u8)> {
        chains.stats.iter().map(|r| (r.id, r.priority)).collect()
    }

    #[test]
    fn not_yet_constructor_is_merged_on_its_third_try() {
        let calls = Arc::new(AtomicUsize::new(0));
        let docker = Fake::new("docker", 1, Mode::Know);
        let registry = Registry::new(vec![eventually(
            "docker",
            3,
            catalog(&[DOCKER], &docker.offer_all(1)),
            Arc::clone(&calls),
        )]);
        assert_eq!(registry.retry_once(), 1);
        assert_eq!(registry.retry_once(), 1);
        assert!(registry.catalog().runtimes.is_empty());
        assert_eq!(registry.pending(), ["docker"]);
        assert_eq!(registry.retry_once(), 0);
        assert_eq!(
            stats_ids(&registry.catalog().runtimes[&DOCKER]),
            [("docker", 1)]
        );
        // Merged factories are not called again.
        assert_eq!(registry.retry_once(), 0);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn permanent_constructor_is_dropped_and_never_called_again() {
        let calls = Arc::new(AtomicUsize::new(0));
        let waiting = Arc::new(AtomicUsize::new(0));
        let registry = Registry::new(vec![
            permanent("cri", Arc::clone(&calls)),
            eventually("kubelet", usize::MAX, CollectorCatalog::new(), waiting),
        ]);
        assert_eq!(registry.retry_once(), 1);
        assert_eq!(registry.pending(), ["kubelet"]);
        registry.retry_once();
        registry.retry_once();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn panicking_constructor_is_dropped() {
        let registry = Registry::new(vec![CollectorFactory {
            id: "buggy",
            constructor: Box::new(|| panic!("constructor bug")),
        }]);
        assert_eq!(registry.retry_once(), 0);
        assert!(registry.catalog().runtimes.is_empty());
    }

    #[test]
    fn empty_catalog_is_retried() {
        let calls = Arc::new(AtomicUsize::new(0));
        let registry = Registry::new(vec![eventually(
            "empty",
            1,
            CollectorCatalog::new(),
            Arc::clone(&calls),
        )]);
        assert_eq!(registry.retry_once(), 1);
        assert_eq!(registry.retry_once(), 1);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn observers_see_each_catalog_update() {
        let calls = Arc::new(AtomicUsize::new(0));
        let system = Fake::new("system", 1, Mode::Know);
        let docker = Fake::new("docker", 2, Mode::Know);
        let registry = Registry::new(vec![
            ready(
                "system",
                catalog(&[DOCKER, CONTAINERD], &system.offer_all(0)),
            ),
            eventually("docker", 2, catalog(&[DOCKER], &docker.offer_all(1)), calls),
        ]);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        registry.on_update(move |catalog| {
            sink.lock()
                .unwrap()
                .push(catalog.runtimes.get(&DOCKER).map(|c| stats_ids(c)));
        });
        registry.retry_once();
        registry.retry_once();
        // A round that merges nothing tells nobody.
        registry.retry_once();
        assert_eq!(
            *seen.lock().unwrap(),
            [
                None,
                Some(vec![("system", 0)]),
                Some(vec![("system", 0), ("docker", 1)]),
            ]
        );
    }

    #[test]
    fn chains_order_by_priority_then_id_whatever_the_merge_order() {
        let fakes = [
            Fake::new("kubelet", 0, Mode::Know),
            Fake::new("docker", 0, Mode::Know),
            Fake::new("system", 0, Mode::Know),
            Fake::new("cri", 0, Mode::Know),
        ];
        let priorities = [2, 1, 0, 1];
        let factories = |order: &[usize]| -> Vec<CollectorFactory> {
            order
                .iter()
                .map(|&i| {
                    ready(
                        fakes[i].id,
                        catalog(&[DOCKER], &fakes[i].offer_all(priorities[i])),
                    )
                })
                .collect()
        };
        for order in [[0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1]] {
            let registry = Registry::new(factories(&order));
            registry.retry_once();
            assert_eq!(
                stats_ids(&registry.catalog().runtimes[&DOCKER]),
                [("system", 0), ("cri", 1), ("docker", 1), ("kubelet", 2)],
                "merge order {order:?}"
            );
        }
    }

    #[test]
    fn one_collector_in_many_runtimes_is_one_link_of_the_any_chain() {
        let system = Fake::new("system", 0, Mode::Know);
        let containerd = Fake::new("containerd", 0, Mode::Know);
        let kata_only = Collectors {
            stats: Some(reference(containerd.clone(), 1, "containerd")),
            ..Collectors::default()
        };
        let mut containerd_catalog = catalog(&[CONTAINERD], &containerd.offer_all(1));
        containerd_catalog.insert(CONTAINERD_KATA, kata_only);
        let registry = Registry::new(vec![
            ready(
                "system",
                catalog(&[DOCKER, CONTAINERD], &system.offer_all(0)),
            ),
            ready("containerd", containerd_catalog),
        ]);
        registry.retry_once();
        let catalog = registry.catalog();
        assert_eq!(stats_ids(&catalog.any), [("system", 0), ("containerd", 1)]);
        assert_eq!(
            stats_ids(&catalog.runtimes[&CONTAINERD_KATA]),
            [("containerd", 1)]
        );
        assert_eq!(
            catalog.runtimes[&CONTAINERD_KATA].describe()["network"],
            Vec::<&str>::new()
        );
        assert_eq!(catalog.runtimes.len(), 3);
    }

    #[test]
    fn a_collector_keeps_its_best_priority_when_offered_twice() {
        let system = Fake::new("system", 0, Mode::Know);
        let registry = Registry::new(vec![
            ready("system", catalog(&[DOCKER], &system.offer_all(10))),
            ready("system-again", catalog(&[CONTAINERD], &system.offer_all(0))),
        ]);
        registry.retry_once();
        assert_eq!(stats_ids(&registry.catalog().any), [("system", 0)]);
    }

    #[test]
    fn start_runs_a_round_at_once_and_needs_no_thread_when_all_are_ready() {
        let system = Fake::new("system", 0, Mode::Know);
        let registry = Arc::new(Registry::new(vec![ready(
            "system",
            catalog(&[DOCKER], &system.offer_all(0)),
        )]));
        let retry = registry.start(Duration::from_hours(1));
        assert!(retry.is_finished());
        assert!(registry.catalog().runtimes.contains_key(&DOCKER));
    }

    #[test]
    fn retry_loop_ends_when_no_factory_remains() {
        let calls = Arc::new(AtomicUsize::new(0));
        let docker = Fake::new("docker", 1, Mode::Know);
        let registry = Arc::new(Registry::new(vec![eventually(
            "docker",
            3,
            catalog(&[DOCKER], &docker.offer_all(1)),
            Arc::clone(&calls),
        )]));
        let retry = registry.start(Duration::from_millis(5));
        wait_until("the retry loop to finish", || retry.is_finished());
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert!(registry.catalog().runtimes.contains_key(&DOCKER));
    }

    #[test]
    fn dropping_the_handle_stops_the_retry_loop() {
        let calls = Arc::new(AtomicUsize::new(0));
        let registry = Arc::new(Registry::new(vec![eventually(
            "never",
            usize::MAX,
            CollectorCatalog::new(),
            Arc::clone(&calls),
        )]));
        let retry = registry.start(Duration::from_millis(5));
        wait_until("the retry loop to retry", || {
            calls.load(Ordering::SeqCst) >= 3
        });
        // Dropping joins the thread: its reference to the registry is gone, so nothing can
        // call the constructor afterwards.
        drop(retry);
        assert_eq!(Arc::strong_count(&registry), 1);
    }
}
