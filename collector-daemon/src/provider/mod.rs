//! The container metrics provider, modelled on the Datadog Agent's (the seed,
//! `shared/reference/seed-provider-package.txt`): runtimes and flavors, per-capability
//! collectors with priorities (lower wins), a registry that retries collectors that are not
//! ready yet, a meta collector that asks every collector in priority order, and a cache where
//! the caller says how stale an answer may be.
//!
//! Where the seed is known to go wrong (`datadog-provider-study.md` §5), this differs: the
//! meta collector goes on past errors and empty answers, ties between equal priorities break
//! by collector id (not at random), and the cache expires entries one by one.
pub mod cache;
pub mod stats;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

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
