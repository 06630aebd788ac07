//! Every capability of a collector behind the staleness cache, with the caller's `max_age`
//! (after Datadog's `MakeCached`), except the identity ones.
//!
//! Keys are `<collector id>-<prefix>...` with Datadog's prefixes (`cs-` stats, `cns-`
//! network, `of-` open files, `pids-`, `pc-<pod uid>/[i-]<name>`), plus `cio-` for the IO
//! capability; a `/` separates namespace and id, so that ("ab", "c") and ("a", "bc") have
//! distinct keys. Values, errors and "does not know" are all cached; priorities and ids are
//! unchanged. Parallel misses of one key make one call (the cache is single-flight).
//!
//! Not cached: the answers about processes, cgroup inodes and the container list
//! (`ProcessIdentity`, `CgroupIdentity`, `ContainerListing`) pass through as they are. A
//! lookup must reflect every fork and exit completed before it, and a PID is reused once its
//! process is reaped; Datadog's wrapper caches its id-only PID and inode answers (`pid-`,
//! `in-`) and memoizes the self container id.
use std::sync::Arc;

use super::{
    CollectionContext, CollectorRef, CollectorResult, Collectors, ContainerIdForPodUidAndName,
    ContainerStats, IoCollector, IoStats, MaxAge, NetworkCollector, NetworkStats,
    OpenFilesCollector, PidsCollector, StatsCollector, cache::Cache,
};

/// Returns `collectors` with every capability but the identity ones going through `cache`,
/// under keys prefixed with `collector_id`. Several collectors can share one cache.
pub fn make_cached(
    collector_id: &'static str,
    cache: &Arc<Cache>,
    collectors: &Collectors,
) -> Collectors {
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
    } = collectors;
    // One closure per capability: each wraps a different trait object.
    Collectors {
        stats: rewrap(stats.as_ref(), |c| {
            Arc::new(Cached::new(c, cache, collector_id)) as _
        }),
        io: rewrap(io.as_ref(), |c| {
            Arc::new(Cached::new(c, cache, collector_id)) as _
        }),
        network: rewrap(network.as_ref(), |c| {
            Arc::new(Cached::new(c, cache, collector_id)) as _
        }),
        open_files: rewrap(open_files.as_ref(), |c| {
            Arc::new(Cached::new(c, cache, collector_id)) as _
        }),
        pids: rewrap(pids.as_ref(), |c| {
            Arc::new(Cached::new(c, cache, collector_id)) as _
        }),
        process_identity: process_identity.clone(),
        cgroup_identity: cgroup_identity.clone(),
        container_listing: container_listing.clone(),
        container_id_for_pod_uid_and_name: rewrap(
            container_id_for_pod_uid_and_name.as_ref(),
            |c| Arc::new(Cached::new(c, cache, collector_id)) as _,
        ),
    }
}

/// The same reference (priority, id) to a wrapped collector.
fn rewrap<T: ?Sized>(
    r: Option<&CollectorRef<T>>,
    wrap: impl FnOnce(Arc<T>) -> Arc<T>,
) -> Option<CollectorRef<T>> {
    r.map(|r| CollectorRef {
        collector: wrap(Arc::clone(&r.collector)),
        priority: r.priority,
        id: r.id,
    })
}

/// One capability of a collector, behind the cache.
struct Cached<T: ?Sized> {
    inner: Arc<T>,
    cache: Arc<Cache>,
    collector_id: &'static str,
}

impl<T: ?Sized> Cached<T> {
    fn new(inner: Arc<T>, cache: &Arc<Cache>, collector_id: &'static str) -> Self {
        Self {
            inner,
            cache: Arc::clone(cache),
            collector_id,
        }
    }

    fn key(&self, rest: std::fmt::Arguments<'_>) -> String {
        format!("{}-{rest}", self.collector_id)
    }
}

impl StatsCollector for Cached<dyn StatsCollector> {
    fn container_stats(
        &self,
        namespace: &str,
        container_id: &str,
        max_age: MaxAge,
    ) -> CollectorResult<ContainerStats> {
        let key = self.key(format_args!("cs-{namespace}/{container_id}"));
        self.cache.get_or_fetch(&key, max_age, || {
            self.inner.container_stats(namespace, container_id, max_age)
        })
    }

    fn collection_stats(
        &self,
        namespace: &str,
        container_id: &str,
        max_age: MaxAge,
        collection: &CollectionContext,
    ) -> CollectorResult<ContainerStats> {
        let key = self.key(format_args!("cs-{namespace}/{container_id}"));
        self.cache.get_or_fetch(&key, max_age, || {
            self.inner
                .collection_stats(namespace, container_id, max_age, collection)
        })
    }
}

impl IoCollector for Cached<dyn IoCollector> {
    fn container_io(
        &self,
        namespace: &str,
        container_id: &str,
        max_age: MaxAge,
    ) -> CollectorResult<IoStats> {
        let key = self.key(format_args!("cio-{namespace}/{container_id}"));
        self.cache.get_or_fetch(&key, max_age, || {
            self.inner.container_io(namespace, container_id, max_age)
        })
    }
}

impl NetworkCollector for Cached<dyn NetworkCollector> {
    fn container_network(
        &self,
        namespace: &str,
        container_id: &str,
        max_age: MaxAge,
    ) -> CollectorResult<NetworkStats> {
        let key = self.key(format_args!("cns-{namespace}/{container_id}"));
        self.cache.get_or_fetch(&key, max_age, || {
            self.inner
                .container_network(namespace, container_id, max_age)
        })
    }
}

impl OpenFilesCollector for Cached<dyn OpenFilesCollector> {
    fn container_open_files(
        &self,
        namespace: &str,
        container_id: &str,
        max_age: MaxAge,
    ) -> CollectorResult<u64> {
        let key = self.key(format_args!("of-{namespace}/{container_id}"));
        self.cache.get_or_fetch(&key, max_age, || {
            self.inner
                .container_open_files(namespace, container_id, max_age)
        })
    }
}

impl PidsCollector for Cached<dyn PidsCollector> {
    fn container_pids(
        &self,
        namespace: &str,
        container_id: &str,
        max_age: MaxAge,
    ) -> CollectorResult<Vec<u32>> {
        let key = self.key(format_args!("pids-{namespace}/{container_id}"));
        self.cache.get_or_fetch(&key, max_age, || {
            self.inner.container_pids(namespace, container_id, max_age)
        })
    }
}

impl ContainerIdForPodUidAndName for Cached<dyn ContainerIdForPodUidAndName> {
    fn container_id_for_pod_uid_and_name(
        &self,
        pod_uid: &str,
        container_name: &str,
        init_container: bool,
        max_age: MaxAge,
    ) -> CollectorResult<String> {
        let init = if init_container { "i-" } else { "" };
        let key = self.key(format_args!("pc-{pod_uid}/{init}{container_name}"));
        self.cache.get_or_fetch(&key, max_age, || {
            self.inner.container_id_for_pod_uid_and_name(
                pod_uid,
                container_name,
                init_container,
                max_age,
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::provider::{
        CollectorError,
        cache::{Clock, DEFAULT_RETENTION, ManualClock, wait_for_flight_holders},
        testing::{Fake, Gate, Mode},
    };

    const SECOND: Duration = Duration::from_secs(1);

    fn setup(mode: Mode) -> (Arc<ManualClock>, Arc<Cache>, Arc<Fake>, Collectors) {
        let clock = Arc::new(ManualClock::new());
        let cache = Arc::new(Cache::new(
            Arc::clone(&clock) as Arc<dyn Clock>,
            DEFAULT_RETENTION,
            100,
        ));
        let fake = Fake::new("sys", 5, mode);
        let cached = make_cached("sys", &cache, &fake.offer_all(3));
        (clock, cache, fake, cached)
    }

    #[test]
    fn every_capability_is_cached_under_the_seed_keys() {
        let (_clock, cache, fake, c) = setup(Mode::Know);
        for _ in 0..2 {
            let stats = c
                .stats
                .as_ref()
                .unwrap()
                .collector
                .container_stats("ns", "c1", SECOND);
            assert!(stats.unwrap().is_some());
            let io = &c.io.as_ref().unwrap().collector;
            io.container_io("ns", "c1", SECOND).unwrap();
            let net = &c.network.as_ref().unwrap().collector;
            net.container_network("ns", "c1", SECOND).unwrap();
            let of = &c.open_files.as_ref().unwrap().collector;
            of.container_open_files("ns", "c1", SECOND).unwrap();
            let pids = &c.pids.as_ref().unwrap().collector;
            pids.container_pids("ns", "c1", SECOND).unwrap();
            let pod = &c
                .container_id_for_pod_uid_and_name
                .as_ref()
                .unwrap()
                .collector;
            pod.container_id_for_pod_uid_and_name("uid", "app", false, SECOND)
                .unwrap();
            pod.container_id_for_pod_uid_and_name("uid", "setup", true, SECOND)
                .unwrap();
        }
        // Seven calls the first time round, none the second.
        assert_eq!(fake.calls(), 7);
        for key in [
            "sys-cs-ns/c1",
            "sys-cio-ns/c1",
            "sys-cns-ns/c1",
            "sys-of-ns/c1",
            "sys-pids-ns/c1",
            "sys-pc-uid/app",
            "sys-pc-uid/i-setup",
        ] {
            assert!(cache.contains(key), "{key}");
        }
        assert_eq!(cache.len(), 7);
    }

    #[test]
    fn identity_answers_pass_through_uncached() {
        let (_clock, cache, fake, c) = setup(Mode::Know);
        let processes = &c.process_identity.as_ref().unwrap().collector;
        let cgroups = &c.cgroup_identity.as_ref().unwrap().collector;
        let listing = &c.container_listing.as_ref().unwrap().collector;
        for _ in 0..2 {
            assert!(processes.process(42, SECOND).unwrap().is_some());
            assert_eq!(processes.processes(&[1, 2], SECOND).len(), 2);
            assert!(cgroups.cgroup(4242, SECOND).unwrap().is_some());
            assert!(listing.containers(SECOND).unwrap().is_some());
        }
        // Every call reached the collector, and nothing was stored.
        assert_eq!(fake.calls(), 8);
        assert_eq!(cache.len(), 0);
        let pids = c.process_identity.unwrap();
        assert_eq!((pids.priority, pids.id), (3, "sys"));
    }

    #[test]
    fn priorities_and_ids_are_kept() {
        let (_clock, _cache, _fake, c) = setup(Mode::Know);
        let stats = c.stats.unwrap();
        assert_eq!((stats.priority, stats.id), (3, "sys"));
        let pod = c.container_id_for_pod_uid_and_name.unwrap();
        assert_eq!((pod.priority, pod.id), (3, "sys"));
    }

    #[test]
    fn absent_capabilities_stay_absent() {
        let cache = Arc::new(Cache::default());
        let fake = Fake::new("io-only", 1, Mode::Know);
        let only_io = Collectors {
            io: Some(CollectorRef {
                collector: fake.clone(),
                priority: 0,
                id: "io-only",
            }),
            ..Collectors::default()
        };
        let c = make_cached("io-only", &cache, &only_io);
        assert!(c.io.is_some());
        assert!(c.stats.is_none() && c.network.is_none() && c.process_identity.is_none());
    }

    #[test]
    fn errors_and_unknowns_are_cached_and_max_age_zero_bypasses() {
        let (clock, _cache, fake, c) = setup(Mode::Fail);
        let pod = &c
            .container_id_for_pod_uid_and_name
            .as_ref()
            .unwrap()
            .collector;
        let ask = |max_age| pod.container_id_for_pod_uid_and_name("uid", "app", false, max_age);
        assert!(matches!(ask(SECOND), Err(CollectorError::Other(_))));
        fake.set_mode(Mode::Know);
        // The error is served from the cache for a second.
        assert!(ask(SECOND).is_err());
        assert_eq!(fake.calls(), 1);
        // max_age 0 asks the collector, and stores its answer.
        assert_eq!(ask(Duration::ZERO), Ok(Some("cid-sys".to_owned())));
        fake.set_mode(Mode::DoNotKnow);
        clock.advance(2 * SECOND);
        assert_eq!(ask(SECOND), Ok(None));
        fake.set_mode(Mode::Know);
        assert_eq!(ask(SECOND), Ok(None));
        assert_eq!(fake.calls(), 3);
    }

    #[test]
    fn namespace_and_id_do_not_run_together() {
        let (_clock, _cache, fake, c) = setup(Mode::Know);
        let stats = &c.stats.as_ref().unwrap().collector;
        stats.container_stats("ab", "c", SECOND).unwrap();
        stats.container_stats("a", "bc", SECOND).unwrap();
        assert_eq!(fake.calls(), 2);
    }

    #[test]
    fn concurrent_misses_call_the_collector_once() {
        let cache = Arc::new(Cache::default());
        let gate = Arc::new(Gate::default());
        let fake = Arc::new(Fake {
            gate: Some(Arc::clone(&gate)),
            ..Fake::plain("slow", 1, Mode::Know)
        });
        let cached = make_cached("slow", &cache, &fake.offer_all(0));
        let stats = Arc::clone(&cached.stats.unwrap().collector);
        let threads: Vec<_> = (0..6)
            .map(|_| {
                let stats = Arc::clone(&stats);
                std::thread::spawn(move || stats.container_stats("", "c1", SECOND))
            })
            .collect();
        // The flights map, the one fetching and the five waiting hold the flight: every
        // caller joined it before the fetch ends.
        wait_for_flight_holders(&cache, "slow-cs-/c1", 7);
        gate.open();
        for t in threads {
            assert!(t.join().unwrap().unwrap().is_some());
        }
        assert_eq!(fake.calls(), 1);
    }
}
