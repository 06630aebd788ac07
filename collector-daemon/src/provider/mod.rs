//! The container metrics provider, modelled on the Datadog Agent's (the seed,
//! `shared/reference/seed-provider-package.txt`): runtimes and flavors, per-capability
//! collectors with priorities (lower wins), a registry that retries collectors that are not
//! ready yet, a meta collector that asks every collector in priority order, and a cache where
//! the caller says how stale an answer may be.
//!
//! Where the seed is known to go wrong (`datadog-provider-study.md` §5), this differs: the
//! meta collector goes on past errors and empty answers, ties between equal priorities break
//! by collector id (not at random), and the cache expires entries one by one.
//!
//! The parts:
//! - `registry`: calls collector factories until they succeed or fail for good, and merges
//!   what they offer into per-runtime, per-capability chains ordered by (priority, id);
//! - `meta`: the identity questions (container of a PID, inode, the daemon itself, a pod's
//!   container), asked of every collector whatever its runtime;
//! - `cache` and `cached`: the staleness cache and the wrapper putting a collector behind it;
//! - here: the `Provider` facade and the per-runtime `RuntimeCollector`.
//!
//! Wiring: build the factories (a collector that wants the seed's caching wraps its
//! `Collectors` with `cached::make_cached(id, &cache, ..)` in its constructor, with a cache the
//! daemon shares between collectors), then `Provider::new(factories)`. Call the provider
//! from blocking code (`spawn_blocking`): collectors read files and may wait on a cache fetch.
pub mod cache;
pub mod cached;
pub mod meta;
pub mod registry;
pub mod stats;
#[cfg(test)]
mod testing;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use meta::MetaCollector;
pub use registry::{Catalog, CollectorChains, RETRY_INTERVAL, Registry, RetryLoop};

pub use crate::identity::container_id::Runtime;
pub use stats::{
    ContainerStats, CpuStats, DeviceIoStats, InterfaceNetStats, IoStats, MemoryStats, NetworkStats,
    PidStats,
};

/// Every runtime the provider knows (the seed's `AllLinuxRuntimes`).
pub const ALL_LINUX_RUNTIMES: [Runtime; 6] = [
    Runtime::Docker,
    Runtime::Containerd,
    Runtime::CriO,
    Runtime::Garden,
    Runtime::Podman,
    Runtime::EcsFargate,
];

/// The seed's `RuntimeFlavor`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Flavor {
    #[default]
    Default,
    /// Kata Containers: the container's cgroups are inside a VM, not visible on the host.
    Kata,
}

impl Flavor {
    /// The seed's string: "" for the default flavor, "kata".
    pub fn as_str(self) -> &'static str {
        match self {
            Flavor::Default => "",
            Flavor::Kata => "kata",
        }
    }
}

/// The seed's `RuntimeMetadata`: which runtime runs a container, and its flavor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuntimeMetadata {
    pub runtime: Runtime,
    pub flavor: Flavor,
}

impl RuntimeMetadata {
    pub fn new(runtime: Runtime, flavor: Flavor) -> Self {
        Self { runtime, flavor }
    }
}

impl fmt::Display for RuntimeMetadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.flavor {
            Flavor::Default => f.write_str(self.runtime.as_str()),
            Flavor::Kata => write!(f, "{}-{}", self.runtime.as_str(), self.flavor.as_str()),
        }
    }
}

/// Why a collector could not answer. Errors are cached like answers (for the caller's
/// staleness window), so a failing source is not hammered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CollectorError {
    /// The container (or PID, inode, ...) is not known to this collector right now.
    #[error("{0} not found")]
    NotFound(String),
    /// The source is there but failed (file unreadable, runtime API error, ...).
    #[error("{0}")]
    Failed(String),
}

/// `Ok(None)` is "this collector does not know" (the seed's `("", nil)` / `(nil, nil)`); the
/// meta collector and the provider then ask the next collector.
pub type CollectorResult<T> = Result<Option<T>, CollectorError>;

/// How stale a cached answer may be; `Duration::ZERO` bypasses every cache.
pub type MaxAge = Duration;

/// The seed's `ContainerStatsGetter`: CPU, memory, IO and PIDs of one container.
pub trait StatsCollector: Send + Sync {
    fn container_stats(
        &self,
        namespace: &str,
        container_id: &str,
        max_age: MaxAge,
    ) -> CollectorResult<ContainerStats>;
}

/// Block IO alone, for collectors that count IO but not CPU or memory (the eBPF counters).
/// Not in the seed, where IO is part of `ContainerStats`: when the best IO collector knows a
/// container, its answer replaces the stats collector's `io`.
pub trait IoCollector: Send + Sync {
    fn container_io(
        &self,
        namespace: &str,
        container_id: &str,
        max_age: MaxAge,
    ) -> CollectorResult<IoStats>;
}

/// The seed's `ContainerNetworkStatsGetter`.
pub trait NetworkCollector: Send + Sync {
    fn container_network(
        &self,
        namespace: &str,
        container_id: &str,
        max_age: MaxAge,
    ) -> CollectorResult<NetworkStats>;
}

/// The seed's `ContainerOpenFilesCountGetter`: file descriptors open in the container.
pub trait OpenFilesCollector: Send + Sync {
    fn container_open_files(
        &self,
        namespace: &str,
        container_id: &str,
        max_age: MaxAge,
    ) -> CollectorResult<u64>;
}

/// The seed's `ContainerPIDsGetter`: the container's processes (thread-group ids),
/// including those in its nested cgroups.
pub trait PidsCollector: Send + Sync {
    fn container_pids(
        &self,
        namespace: &str,
        container_id: &str,
        max_age: MaxAge,
    ) -> CollectorResult<Vec<u32>>;
}

/// The seed's `ContainerIDForPIDRetriever`.
pub trait ContainerIdForPid: Send + Sync {
    fn container_id_for_pid(&self, pid: u32, max_age: MaxAge) -> CollectorResult<String>;
}

/// The seed's `ContainerIDForInodeRetriever` (a cgroup directory's inode, v1 or v2).
pub trait ContainerIdForInode: Send + Sync {
    fn container_id_for_inode(&self, inode: u64, max_age: MaxAge) -> CollectorResult<String>;
}

/// The seed's `SelfContainerIDRetriever`: the container the daemon itself runs in.
pub trait SelfContainerId: Send + Sync {
    fn self_container_id(&self) -> CollectorResult<String>;
}

/// The seed's `ContainerIDForPodUIDAndContNameRetriever`.
pub trait ContainerIdForPodUidAndName: Send + Sync {
    fn container_id_for_pod_uid_and_name(
        &self,
        pod_uid: &str,
        container_name: &str,
        init_container: bool,
        max_age: MaxAge,
    ) -> CollectorResult<String>;
}

/// The seed's `CollectorRef`: a capability of one collector, with its priority (lower wins)
/// and the collector's id (which breaks ties, and names the source of an answer).
pub struct CollectorRef<T: ?Sized> {
    pub collector: Arc<T>,
    pub priority: u8,
    pub id: &'static str,
}

impl<T: ?Sized> Clone for CollectorRef<T> {
    fn clone(&self) -> Self {
        Self {
            collector: Arc::clone(&self.collector),
            priority: self.priority,
            id: self.id,
        }
    }
}

impl<T: ?Sized> fmt::Debug for CollectorRef<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CollectorRef")
            .field("id", &self.id)
            .field("priority", &self.priority)
            .finish_non_exhaustive()
    }
}

/// The seed's `Collectors`: what one collector offers for one runtime. `None` = not offered.
#[derive(Clone, Debug, Default)]
pub struct Collectors {
    pub stats: Option<CollectorRef<dyn StatsCollector>>,
    pub io: Option<CollectorRef<dyn IoCollector>>,
    pub network: Option<CollectorRef<dyn NetworkCollector>>,
    pub open_files: Option<CollectorRef<dyn OpenFilesCollector>>,
    pub pids: Option<CollectorRef<dyn PidsCollector>>,
    pub container_id_for_pid: Option<CollectorRef<dyn ContainerIdForPid>>,
    pub container_id_for_inode: Option<CollectorRef<dyn ContainerIdForInode>>,
    pub self_container_id: Option<CollectorRef<dyn SelfContainerId>>,
    pub container_id_for_pod_uid_and_name: Option<CollectorRef<dyn ContainerIdForPodUidAndName>>,
}

/// The seed's `CollectorCatalog`: per runtime and flavor, what a collector offers.
pub type CollectorCatalog = std::collections::BTreeMap<RuntimeMetadata, Collectors>;

/// What a collector constructor returns when it cannot be built yet or ever (the seed's
/// `ErrNothingYet` / `ErrPermaFail`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConstructError {
    /// Not available now (runtime socket absent, daemon not up): retried every 2 s.
    #[error("not available yet: {0}")]
    NotYet(String),
    /// Will never be available here (runtime not installed, not supported): not retried.
    #[error("permanently unavailable: {0}")]
    Permanent(String),
}

/// The seed's `CollectorFactory`: an id and a constructor the registry calls until it
/// succeeds or fails for good.
pub struct CollectorFactory {
    pub id: &'static str,
    pub constructor: Box<dyn FnMut() -> Result<CollectorCatalog, ConstructError> + Send>,
}

/// An answer, and which collector gave it (its id: "system", "ebpf", ...).
#[derive(Clone, Debug, PartialEq)]
pub struct Answer<T> {
    pub value: T,
    pub source: &'static str,
}

/// The error a chain ends with when no collector knew and at least one failed: the last
/// failure, and which collector it came from.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{collector}: {error}")]
pub struct ChainError {
    pub collector: &'static str,
    pub error: CollectorError,
}

/// What asking a chain of collectors gives: `Ok(None)` when none knows and none failed.
pub type ChainResult<T> = Result<Option<Answer<T>>, ChainError>;

/// Asks each collector of `chain` in order; the first `Ok(Some(_))` wins. Errors and
/// `Ok(None)` go on to the next collector (the seed stops at the first error, study §2.3).
/// If none knows, the last error if any, else `Ok(None)`.
pub(crate) fn first_known<C: ?Sized, T>(
    chain: &[CollectorRef<C>],
    mut ask: impl FnMut(&C) -> CollectorResult<T>,
) -> ChainResult<T> {
    let mut last_error = None;
    for link in chain {
        match ask(&link.collector) {
            Ok(Some(value)) => {
                return Ok(Some(Answer {
                    value,
                    source: link.id,
                }));
            }
            Ok(None) => {}
            Err(error) => {
                tracing::debug!(collector = link.id, %error, "collector failed; asking the next one");
                last_error = Some(ChainError {
                    collector: link.id,
                    error,
                });
            }
        }
    }
    last_error.map_or(Ok(None), Err)
}

/// The container metrics provider (the seed's `GenericProvider`): the registry, its retry
/// loop, and per-runtime collectors over its current catalog.
///
/// The retry loop (see `registry`) stops when the provider is dropped or `shutdown` is
/// called, whichever comes first.
#[derive(Debug)]
pub struct Provider {
    registry: Arc<Registry>,
    retry: Mutex<Option<RetryLoop>>,
}

impl Provider {
    /// Constructs every collector that is ready now, and retries the others every 2 s (the
    /// seed's `GetProvider`, without the singleton).
    pub fn new(factories: Vec<CollectorFactory>) -> Self {
        Self::with_retry_interval(factories, RETRY_INTERVAL)
    }

    /// As `new`, retrying every `interval`.
    pub fn with_retry_interval(factories: Vec<CollectorFactory>, interval: Duration) -> Self {
        let registry = Arc::new(Registry::new(factories));
        let retry = registry.start(interval);
        Self {
            registry,
            retry: Mutex::new(Some(retry)),
        }
    }

    /// The collectors serving `runtime`, or `None` if none does (the seed's `GetCollector`).
    /// Ask again for each use: better collectors can appear.
    pub fn collector(&self, runtime: RuntimeMetadata) -> Option<RuntimeCollector> {
        let catalog = self.registry.catalog();
        let chains = catalog.runtimes.get(&runtime)?;
        Some(RuntimeCollector::new(Arc::clone(chains)))
    }

    /// Every collector whatever its runtime, in the same order (priority, id): for a container
    /// whose runtime is unknown.
    pub fn collector_any(&self) -> RuntimeCollector {
        RuntimeCollector::new(Arc::clone(&self.registry.catalog().any))
    }

    /// The meta collector over the current catalog (the seed's `GetMetaCollector`).
    pub fn meta(&self) -> MetaCollector {
        MetaCollector::new(Arc::clone(&self.registry.catalog().any))
    }

    /// The registry: its catalog, pending factories, and `on_update` for observers.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Stops the retry loop now (collectors already merged stay). Dropping the provider
    /// does the same.
    pub fn shutdown(&self) {
        let retry = self
            .retry
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        drop(retry);
    }
}

/// The collectors serving one runtime (or all of them, `Provider::collector_any`). Each
/// method walks its capability's chain like the meta collector: first that knows wins,
/// errors and "does not know" go on to the next.
#[derive(Clone, Debug)]
pub struct RuntimeCollector {
    chains: Arc<CollectorChains>,
}

impl RuntimeCollector {
    pub fn new(chains: Arc<CollectorChains>) -> Self {
        Self { chains }
    }

    /// The chains this collector walks (for the API to show).
    pub fn chains(&self) -> &CollectorChains {
        &self.chains
    }

    pub fn stats(
        &self,
        namespace: &str,
        container_id: &str,
        max_age: MaxAge,
    ) -> ChainResult<ContainerStats> {
        first_known(&self.chains.stats, |c| {
            c.container_stats(namespace, container_id, max_age)
        })
    }

    pub fn io(&self, namespace: &str, container_id: &str, max_age: MaxAge) -> ChainResult<IoStats> {
        first_known(&self.chains.io, |c| {
            c.container_io(namespace, container_id, max_age)
        })
    }

    pub fn network(
        &self,
        namespace: &str,
        container_id: &str,
        max_age: MaxAge,
    ) -> ChainResult<NetworkStats> {
        first_known(&self.chains.network, |c| {
            c.container_network(namespace, container_id, max_age)
        })
    }

    pub fn open_files(
        &self,
        namespace: &str,
        container_id: &str,
        max_age: MaxAge,
    ) -> ChainResult<u64> {
        first_known(&self.chains.open_files, |c| {
            c.container_open_files(namespace, container_id, max_age)
        })
    }

    pub fn pids(
        &self,
        namespace: &str,
        container_id: &str,
        max_age: MaxAge,
    ) -> ChainResult<Vec<u32>> {
        first_known(&self.chains.pids, |c| {
            c.container_pids(namespace, container_id, max_age)
        })
    }

    /// Everything known about a container, as the API serves it:
    /// - cpu, memory, io and pid from the stats chain;
    /// - `io` replaced by the IO chain's answer when it knows (its counters are the better
    ///   ones, e.g. eBPF), keeping the stats chain's `partial_stall_time` if the IO chain has
    ///   none (PSI comes from cgroupfs only);
    /// - network and open files from their chains.
    ///
    /// `sources` names the collector behind each section present. A chain that failed while
    /// others answered is listed in `errors`. `Ok(None)` when no chain knows the container;
    /// the last error when none knows and one failed.
    pub fn full_stats(
        &self,
        namespace: &str,
        container_id: &str,
        max_age: MaxAge,
    ) -> Result<Option<FullStats>, ChainError> {
        let mut full = FullStats::default();
        let mut known = false;
        let mut last_error = None;
        let mut failed = |full: &mut FullStats, chain: &str, error: ChainError| {
            full.errors.insert(chain.to_owned(), error.to_string());
            last_error = Some(error);
        };

        match self.stats(namespace, container_id, max_age) {
            Ok(Some(Answer { value, source })) => {
                known = true;
                let ContainerStats {
                    timestamp,
                    cpu,
                    memory,
                    io,
                    pid,
                } = value;
                let present = [
                    ("cpu", cpu.is_some()),
                    ("memory", memory.is_some()),
                    ("io", io.is_some()),
                    ("pid", pid.is_some()),
                ];
                for (section, is_some) in present {
                    if is_some {
                        full.sources.insert(section.into(), source.into());
                    }
                }
                full.stats = ContainerStats {
                    timestamp,
                    cpu,
                    memory,
                    io,
                    pid,
                };
            }
            Ok(None) => {}
            Err(e) => failed(&mut full, "stats", e),
        }

        match self.io(namespace, container_id, max_age) {
            Ok(Some(Answer { mut value, source })) => {
                known = true;
                let stats_io = full.stats.io.as_ref();
                let stats_psi = stats_io.and_then(|io| io.partial_stall_time);
                if value.partial_stall_time.is_none()
                    && let Some(psi) = stats_psi
                {
                    value.partial_stall_time = Some(psi);
                    value.full_stall_time = stats_io.and_then(|io| io.full_stall_time);
                    let psi_source = full.sources.get("io").cloned().unwrap_or_default();
                    full.sources
                        .insert("io.partial_stall_time".into(), psi_source);
                }
                full.stats.io = Some(value);
                full.sources.insert("io".into(), source.into());
            }
            Ok(None) => {}
            Err(e) => failed(&mut full, "io", e),
        }

        match self.network(namespace, container_id, max_age) {
            Ok(Some(Answer { value, source })) => {
                known = true;
                full.network = Some(value);
                full.sources.insert("network".into(), source.into());
            }
            Ok(None) => {}
            Err(e) => failed(&mut full, "network", e),
        }

        match self.open_files(namespace, container_id, max_age) {
            Ok(Some(Answer { value, source })) => {
                known = true;
                full.open_files = Some(value);
                full.sources.insert("open_files".into(), source.into());
            }
            Ok(None) => {}
            Err(e) => failed(&mut full, "open_files", e),
        }

        if known {
            Ok(Some(full))
        } else {
            last_error.map_or(Ok(None), Err)
        }
    }
}

/// What `RuntimeCollector::full_stats` returns: the container's stats (flattened: `timestamp`,
/// `cpu`, `memory`, `io`, `pid`), network and open files, and where each came from.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FullStats {
    #[serde(flatten)]
    pub stats: ContainerStats,
    pub network: Option<NetworkStats>,
    pub open_files: Option<u64>,
    /// Section (`cpu`, `memory`, `io`, `pid`, `network`, `open_files`, and
    /// `io.partial_stall_time` when it comes from another collector than the rest of `io`)
    /// to the id of the collector that gave it.
    /// (Section names and collector ids are static strings: no allocation per container.)
    pub sources: BTreeMap<Cow<'static, str>, Cow<'static, str>>,
    /// Chain (`stats`, `io`, `network`, `open_files`) to the error it ended with, for chains
    /// that failed while others answered.
    pub errors: BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::testing::{Fake, Mode, catalog, ready, reference};
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);
    const DOCKER: RuntimeMetadata = RuntimeMetadata {
        runtime: Runtime::Docker,
        flavor: Flavor::Default,
    };
    const PODMAN: RuntimeMetadata = RuntimeMetadata {
        runtime: Runtime::Podman,
        flavor: Flavor::Default,
    };
    const GARDEN: RuntimeMetadata = RuntimeMetadata {
        runtime: Runtime::Garden,
        flavor: Flavor::Default,
    };

    /// An eBPF-like collector: IO only.
    fn io_only(fake: &Arc<Fake>, priority: u8) -> Collectors {
        Collectors {
            io: Some(reference(fake.clone(), priority, fake.id)),
            ..Collectors::default()
        }
    }

    fn provider(factories: Vec<CollectorFactory>) -> Provider {
        Provider::with_retry_interval(factories, Duration::from_hours(1))
    }

    #[expect(clippy::unnecessary_wraps, reason = "compared with what chains return")]
    fn known<T>(value: T, source: &'static str) -> ChainResult<T> {
        Ok(Some(Answer { value, source }))
    }

    #[test]
    fn unknown_runtime_has_no_collector() {
        let system = Fake::new("system", 1, Mode::Know);
        let provider = provider(vec![ready(
            "system",
            catalog(&[DOCKER], &system.offer_all(0)),
        )]);
        assert!(provider.collector(DOCKER).is_some());
        assert!(provider.collector(PODMAN).is_none());
    }

    #[test]
    fn runtime_chains_fall_through_errors_and_unknowns_in_priority_order() {
        let system = Fake::new("system", 1, Mode::Fail);
        let docker = Fake::new("docker", 2, Mode::DoNotKnow);
        let kubelet = Fake::new("kubelet", 3, Mode::Know);
        let provider = provider(vec![
            ready("kubelet", catalog(&[DOCKER], &kubelet.offer_all(2))),
            ready("docker", catalog(&[DOCKER], &docker.offer_all(1))),
            ready("system", catalog(&[DOCKER], &system.offer_all(0))),
        ]);
        let c = provider.collector(DOCKER).unwrap();
        assert_eq!(c.open_files("", "c1", SECOND), known(3, "kubelet"));
        assert_eq!(c.pids("", "c1", SECOND), known(vec![3], "kubelet"));
        let network = c.network("", "c1", SECOND).unwrap().unwrap();
        assert_eq!(
            (network.value.bytes_sent, network.source),
            (Some(3), "kubelet")
        );
        assert_eq!((system.calls(), docker.calls(), kubelet.calls()), (3, 3, 3));

        kubelet.set_mode(Mode::DoNotKnow);
        assert_eq!(
            c.stats("", "c1", SECOND),
            Err(ChainError {
                collector: "system",
                error: CollectorError::Failed("system failed".into()),
            })
        );
        system.set_mode(Mode::DoNotKnow);
        assert_eq!(c.io("", "c1", SECOND), Ok(None));
    }

    #[test]
    fn equal_priorities_break_by_collector_id() {
        let b = Fake::new("bravo", 2, Mode::Know);
        let a = Fake::new("alpha", 1, Mode::Know);
        for factories in [
            vec![
                ready("bravo", catalog(&[DOCKER], &b.offer_all(1))),
                ready("alpha", catalog(&[DOCKER], &a.offer_all(1))),
            ],
            vec![
                ready("alpha", catalog(&[DOCKER], &a.offer_all(1))),
                ready("bravo", catalog(&[DOCKER], &b.offer_all(1))),
            ],
        ] {
            let c = provider(factories).collector(DOCKER).unwrap();
            assert_eq!(c.open_files("", "c1", SECOND), known(1, "alpha"));
        }
    }

    #[test]
    fn full_stats_takes_io_from_the_io_chain_and_psi_from_stats() {
        let system = Fake::new("system", 4, Mode::Know);
        let ebpf = Fake::new("ebpf", 7, Mode::Know);
        let provider = provider(vec![
            ready("system", catalog(&[DOCKER], &system.offer_all(0))),
            ready("ebpf", catalog(&[DOCKER], &io_only(&ebpf, 0))),
        ]);
        let full = provider
            .collector(DOCKER)
            .unwrap()
            .full_stats("", "c1", SECOND)
            .unwrap()
            .unwrap();
        let io = full.stats.io.as_ref().unwrap();
        // ebpf's counters (value * 10), system's PSI (value + 1).
        assert_eq!(io.read_bytes, Some(70));
        assert_eq!(io.partial_stall_time, Some(5));
        assert_eq!(full.stats.cpu.as_ref().unwrap().total, Some(4));
        assert_eq!(full.network.as_ref().unwrap().bytes_sent, Some(4));
        assert_eq!(full.open_files, Some(4));
        let sources: Vec<_> = full
            .sources
            .iter()
            .map(|(k, v)| (k.as_ref(), v.as_ref()))
            .collect();
        assert_eq!(
            sources,
            [
                ("cpu", "system"),
                ("io", "ebpf"),
                ("io.partial_stall_time", "system"),
                ("network", "system"),
                ("open_files", "system"),
            ]
        );
        assert!(full.errors.is_empty());
        let json = serde_json::to_value(&full).unwrap();
        assert_eq!(json["cpu"]["total"], 4);
        assert_eq!(json["io"]["read_bytes"], 70);
        assert_eq!(json["sources"]["io"], "ebpf");
        assert_eq!(json["memory"], serde_json::Value::Null);
    }

    #[test]
    fn full_stats_keeps_the_io_chains_own_psi() {
        let system = Fake::new("system", 4, Mode::Know);
        let ebpf = Arc::new(Fake {
            io_psi: Some(99),
            ..Fake::plain("ebpf", 7, Mode::Know)
        });
        let provider = provider(vec![
            ready("system", catalog(&[DOCKER], &system.offer_all(0))),
            ready("ebpf", catalog(&[DOCKER], &io_only(&ebpf, 0))),
        ]);
        let c = provider.collector(DOCKER).unwrap();
        let full = c.full_stats("", "c1", SECOND).unwrap().unwrap();
        assert_eq!(full.stats.io.unwrap().partial_stall_time, Some(99));
        assert!(!full.sources.contains_key("io.partial_stall_time"));
    }

    #[test]
    fn full_stats_keeps_stats_io_when_the_io_chain_does_not_know() {
        let system = Fake::new("system", 4, Mode::Know);
        let ebpf = Fake::new("ebpf", 7, Mode::DoNotKnow);
        // Stats (with their IO) but no IO capability: the IO chain is ebpf alone.
        let system_offer = Collectors {
            io: None,
            ..system.offer_all(1)
        };
        let provider = provider(vec![
            ready("system", catalog(&[DOCKER], &system_offer)),
            ready("ebpf", catalog(&[DOCKER], &io_only(&ebpf, 0))),
        ]);
        let c = provider.collector(DOCKER).unwrap();
        let full = c.full_stats("", "c1", SECOND).unwrap().unwrap();
        assert_eq!(full.stats.io.unwrap().read_bytes, Some(4));
        assert_eq!(full.sources["io"], "system");
        assert_eq!(ebpf.calls(), 1);
    }

    #[test]
    fn full_stats_reports_failed_sections_beside_known_ones() {
        let system = Fake::new("system", 4, Mode::Know);
        let ebpf = Fake::new("ebpf", 7, Mode::Fail);
        let provider = provider(vec![
            ready("system", catalog(&[DOCKER], &system.offer_all(1))),
            ready("ebpf", catalog(&[DOCKER], &io_only(&ebpf, 0))),
        ]);
        let c = provider.collector(DOCKER).unwrap();
        let full = c.full_stats("", "c1", SECOND).unwrap().unwrap();
        // The io chain went on to system after ebpf failed: no error to report.
        assert_eq!(full.sources["io"], "system");
        assert!(full.errors.is_empty());

        system.set_mode(Mode::DoNotKnow);
        ebpf.set_mode(Mode::Know);
        let full = c.full_stats("", "c1", SECOND).unwrap().unwrap();
        assert_eq!(full.sources.keys().collect::<Vec<_>>(), ["io"]);
        assert!(full.stats.cpu.is_none() && full.network.is_none());

        ebpf.set_mode(Mode::Fail);
        system.set_mode(Mode::Fail);
        let c = provider.collector(DOCKER).unwrap();
        let err = c.full_stats("", "c1", SECOND).unwrap_err();
        assert_eq!(err.collector, "system");
    }

    #[test]
    fn full_stats_partial_with_errors_listed() {
        let stats_only = Fake::new("stats", 1, Mode::Know);
        let net_only = Fake::new("net", 2, Mode::Fail);
        let provider = provider(vec![
            ready(
                "stats",
                catalog(
                    &[DOCKER],
                    &Collectors {
                        stats: Some(reference(stats_only.clone(), 0, "stats")),
                        ..Collectors::default()
                    },
                ),
            ),
            ready(
                "net",
                catalog(
                    &[DOCKER],
                    &Collectors {
                        network: Some(reference(net_only.clone(), 0, "net")),
                        ..Collectors::default()
                    },
                ),
            ),
        ]);
        let c = provider.collector(DOCKER).unwrap();
        let full = c.full_stats("", "c1", SECOND).unwrap().unwrap();
        assert_eq!(full.stats.cpu.unwrap().total, Some(1));
        assert_eq!(full.errors["network"], "net: net failed");
    }

    #[test]
    fn full_stats_none_when_nobody_knows() {
        let system = Fake::new("system", 4, Mode::DoNotKnow);
        let provider = provider(vec![ready(
            "system",
            catalog(&[DOCKER], &system.offer_all(0)),
        )]);
        let c = provider.collector(DOCKER).unwrap();
        assert_eq!(c.full_stats("", "c1", SECOND), Ok(None));
    }

    #[test]
    fn collector_any_uses_every_runtime_in_order() {
        let garden = Fake::new("garden", 1, Mode::DoNotKnow);
        let docker = Fake::new("docker", 2, Mode::Know);
        let provider = provider(vec![
            ready("garden", catalog(&[GARDEN], &garden.offer_all(0))),
            ready("docker", catalog(&[DOCKER], &docker.offer_all(1))),
        ]);
        let any = provider.collector_any();
        assert_eq!(any.open_files("", "c1", SECOND), known(2, "docker"));
        assert_eq!(garden.calls(), 1);
        assert_eq!(any.chains().describe()["stats"], ["garden", "docker"]);
    }

    #[test]
    fn meta_collector_over_every_runtime() {
        let garden = Fake::new("garden", 1, Mode::Fail);
        let docker = Fake::new("docker", 2, Mode::Know);
        let provider = provider(vec![
            ready("garden", catalog(&[GARDEN], &garden.offer_all(0))),
            ready("docker", catalog(&[DOCKER], &docker.offer_all(1))),
        ]);
        assert_eq!(
            provider.meta().container_id_for_pid(1, SECOND),
            known("cid-docker".to_owned(), "docker")
        );
    }

    #[test]
    fn a_late_collector_is_picked_up_and_shutdown_stops_the_loop() {
        let tries = Arc::new(AtomicUsize::new(0));
        let docker = Fake::new("docker", 2, Mode::Know);
        let offer = catalog(&[DOCKER], &docker.offer_all(1));
        let counter = Arc::clone(&tries);
        let late = CollectorFactory {
            id: "docker",
            constructor: Box::new(move || {
                if counter.fetch_add(1, Ordering::SeqCst) < 2 {
                    Err(ConstructError::NotYet("socket absent".into()))
                } else {
                    Ok(offer.clone())
                }
            }),
        };
        let never_tries = Arc::new(AtomicUsize::new(0));
        let never_counter = Arc::clone(&never_tries);
        let never = CollectorFactory {
            id: "never",
            constructor: Box::new(move || {
                never_counter.fetch_add(1, Ordering::SeqCst);
                Err(ConstructError::NotYet("not yet".into()))
            }),
        };
        let provider = Provider::with_retry_interval(vec![late, never], Duration::from_millis(5));
        // Not there after the synchronous first round.
        crate::test_support::wait_until("docker to be merged", || {
            provider.collector(DOCKER).is_some()
        });
        assert_eq!(provider.registry().pending(), ["never"]);
        provider.shutdown();
        // `shutdown` joined the retry thread: it no longer holds the registry, so nothing
        // can call the pending constructor again.
        assert_eq!(Arc::strong_count(provider.registry()), 1);
    }
}
