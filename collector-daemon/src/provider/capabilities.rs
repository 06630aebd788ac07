//! What a collector can offer (one trait per capability), how it is registered (with a
//! priority and an id), and the errors it answers with.
use std::{fmt, path::PathBuf, sync::Arc, time::Duration};

use super::{ContainerStats, IoStats, NetworkStats, RuntimeMetadata};
use crate::{
    cgroupfs::kernel_values::KernelCgroupValues,
    ebpf::CounterError,
    identity::{CgroupAnswer, ContainerView, LookupError, ProcessAnswer},
};

/// Why a collector could not answer. Errors are cached like answers (for the caller's
/// staleness window), so a failing source is not hammered; sources are shared (`Arc`) for
/// that reason.
#[derive(Clone, Debug, thiserror::Error)]
pub enum CollectorError {
    /// None of the container's cgroup directories is under a mounted hierarchy.
    #[error("no cgroup directory of the container is mounted")]
    NotMounted,
    /// Every cgroup file of the container failed to read.
    #[error("no cgroup file of container {container_id} could be read")]
    NothingRead { container_id: String },
    /// The kernel programs are not loaded (`--no-ebpf`, or the kernel refused them).
    #[error("kernel programs not loaded")]
    KernelUnavailable,
    /// Reading a process's procfs files failed.
    #[error("pid {pid}: {source}")]
    Process {
        pid: u32,
        #[source]
        source: Arc<std::io::Error>,
    },
    /// Reading a file or directory failed.
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The identity service could not answer: no such PID (running, or exited within the
    /// grace period), no such cgroup inode, or procfs unreadable. Kept whole so that the API
    /// answers with its status and message.
    #[error(transparent)]
    Lookup(Arc<LookupError>),
    /// Reading the kernel programs' counter maps failed.
    #[error(transparent)]
    Counters(Arc<CounterError>),
    /// Any other source's error (a runtime's API, a test's fake).
    #[error(transparent)]
    Other(Arc<dyn std::error::Error + Send + Sync>),
}

impl CollectorError {
    /// A process read failure.
    pub fn process(pid: u32, source: std::io::Error) -> Self {
        Self::Process {
            pid,
            source: Arc::new(source),
        }
    }

    /// A file read failure.
    pub fn read(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Read {
            path: path.into(),
            source: Arc::new(source),
        }
    }

    /// Any other error (a message converts too).
    pub fn other(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Other(Arc::from(source.into()))
    }
}

impl From<LookupError> for CollectorError {
    fn from(error: LookupError) -> Self {
        Self::Lookup(Arc::new(error))
    }
}

impl From<CounterError> for CollectorError {
    fn from(error: CounterError) -> Self {
        Self::Counters(Arc::new(error))
    }
}

/// Errors compare by kind and message: their sources (I/O, runtime errors) are not
/// comparable, and chains' answers are compared in tests.
impl PartialEq for CollectorError {
    fn eq(&self, other: &Self) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
            && self.to_string() == other.to_string()
    }
}

impl Eq for CollectorError {}

/// `Ok(None)` is "this collector does not know" (Datadog's `("", nil)` / `(nil, nil)`); the
/// meta collector and the provider then ask the next collector.
pub type CollectorResult<T> = Result<Option<T>, CollectorError>;

/// How stale a cached answer may be; `Duration::ZERO` bypasses every cache.
pub type MaxAge = Duration;

/// What the reads of one full collection share, handed to each container's stats read (see
/// `StatsCollectors::collect`).
#[derive(Clone, Debug, Default)]
pub struct CollectionContext {
    /// The kernel cgroup walk made, or found recent enough, when the collection began: as
    /// fresh as every read of the collection needs, whatever tolerance each container is then
    /// asked with.
    pub kernel_walk: Option<Arc<KernelCgroupValues>>,
}

/// Datadog's `ContainerStatsGetter`: CPU, memory, IO and PIDs of one container.
pub trait StatsCollector: Send + Sync {
    fn container_stats(
        &self,
        namespace: &str,
        container_id: &str,
        max_age: MaxAge,
    ) -> CollectorResult<ContainerStats>;

    /// As [`Self::container_stats`], within the full collection `collection`: a collector may
    /// take values from what the collection shares instead of reading them itself.
    fn collection_stats(
        &self,
        namespace: &str,
        container_id: &str,
        max_age: MaxAge,
        _collection: &CollectionContext,
    ) -> CollectorResult<ContainerStats> {
        self.container_stats(namespace, container_id, max_age)
    }
}

/// Block IO alone, for collectors that count IO but not CPU or memory (the eBPF counters).
/// Not in Datadog's provider, where IO is part of `ContainerStats`: when the best IO
/// collector knows a container, its answer replaces the stats collector's `io`.
pub trait IoCollector: Send + Sync {
    fn container_io(
        &self,
        namespace: &str,
        container_id: &str,
        max_age: MaxAge,
    ) -> CollectorResult<IoStats>;
}

/// Datadog's `ContainerNetworkStatsGetter`.
pub trait NetworkCollector: Send + Sync {
    fn container_network(
        &self,
        namespace: &str,
        container_id: &str,
        max_age: MaxAge,
    ) -> CollectorResult<NetworkStats>;
}

/// Datadog's `ContainerOpenFilesCountGetter`: file descriptors open in the container.
pub trait OpenFilesCollector: Send + Sync {
    fn container_open_files(
        &self,
        namespace: &str,
        container_id: &str,
        max_age: MaxAge,
    ) -> CollectorResult<u64>;
}

/// Datadog's `ContainerPIDsGetter`: the container's processes (thread-group ids),
/// including those in its nested cgroups.
pub trait PidsCollector: Send + Sync {
    fn container_pids(
        &self,
        namespace: &str,
        container_id: &str,
        max_age: MaxAge,
    ) -> CollectorResult<Vec<u32>>;
}

/// Which container each of `pids` is in, with the cgroup the answer comes from and the
/// process's start time and command: the full answer the API serves. Datadog's
/// `ContainerIDForPIDRetriever` answers the container id alone; `MetaCollector` derives that
/// from this.
///
/// Answers are never cached (`cached::make_cached` passes this capability through): a lookup
/// reflects every fork and exit completed before it. `max_age` is there for collectors that
/// could answer from a cache of their own; the identity collector ignores it.
pub trait ProcessIdentity: Send + Sync {
    /// One answer per PID, in order. A PID the collector does not know is `Ok(None)` or an
    /// error (the identity collector's `LookupError::PidNotFound`); either way the meta
    /// collector asks the next collector for it.
    fn processes(&self, pids: &[u32], max_age: MaxAge) -> Vec<CollectorResult<ProcessAnswer>>;

    /// The answer for one PID (by default, a batch of one).
    fn process(&self, pid: u32, max_age: MaxAge) -> CollectorResult<ProcessAnswer> {
        self.processes(&[pid], max_age)
            .pop()
            .unwrap_or_else(|| Err(CollectorError::other("no answer for a batch of one pid")))
    }

    /// The answers for `pids` when this collector has every one of them in memory: no file
    /// read, no wait, so the API may ask from an async worker. `None` (the default) sends the
    /// request the whole way, through [`Self::processes`] on a thread that may block; where
    /// this answers, `processes` would give the same answers.
    fn processes_in_memory(&self, _pids: &[u32]) -> Option<Vec<ProcessAnswer>> {
        None
    }
}

/// Which container owns the cgroup directory with this inode (v1 or v2), with the cgroup's
/// path and whether it was removed. Datadog's `ContainerIDForInodeRetriever` answers the
/// container id alone. Never cached, as [`ProcessIdentity`].
pub trait CgroupIdentity: Send + Sync {
    fn cgroup(&self, inode: u64, max_age: MaxAge) -> CollectorResult<CgroupAnswer>;
}

/// Every container with a live cgroup, with its cgroups and live processes. Not in
/// Datadog's provider (its workloadmeta lists containers); here the identity collector lists
/// them through the meta collector like the other identity answers. Never cached.
pub trait ContainerListing: Send + Sync {
    fn containers(&self, max_age: MaxAge) -> CollectorResult<Vec<ContainerView>>;
}

/// Datadog's `ContainerIDForPodUIDAndContNameRetriever`.
pub trait ContainerIdForPodUidAndName: Send + Sync {
    fn container_id_for_pod_uid_and_name(
        &self,
        pod_uid: &str,
        container_name: &str,
        init_container: bool,
        max_age: MaxAge,
    ) -> CollectorResult<String>;
}

/// Datadog's `CollectorRef`: a capability of one collector, with its priority (lower wins)
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

/// Datadog's `Collectors`: what one collector offers for one runtime. `None` = not offered.
#[derive(Clone, Debug, Default)]
pub struct Collectors {
    pub stats: Option<CollectorRef<dyn StatsCollector>>,
    pub io: Option<CollectorRef<dyn IoCollector>>,
    pub network: Option<CollectorRef<dyn NetworkCollector>>,
    pub open_files: Option<CollectorRef<dyn OpenFilesCollector>>,
    pub pids: Option<CollectorRef<dyn PidsCollector>>,
    pub process_identity: Option<CollectorRef<dyn ProcessIdentity>>,
    pub cgroup_identity: Option<CollectorRef<dyn CgroupIdentity>>,
    pub container_listing: Option<CollectorRef<dyn ContainerListing>>,
    pub container_id_for_pod_uid_and_name: Option<CollectorRef<dyn ContainerIdForPodUidAndName>>,
}

/// Datadog's `CollectorCatalog`: per runtime and flavor, what a collector offers.
pub type CollectorCatalog = std::collections::BTreeMap<RuntimeMetadata, Collectors>;

/// What a collector constructor returns when it cannot be built yet or ever, with the
/// reason (the runtime's error, or a message).
#[derive(Debug, thiserror::Error)]
pub enum ConstructError {
    /// Not available now (runtime socket absent, daemon not up): retried every 2 s.
    #[error("not available yet: {0}")]
    NotYet(Box<dyn std::error::Error + Send + Sync>),
    /// Will never be available here (runtime not installed, not supported): not retried.
    #[error("permanently unavailable: {0}")]
    Permanent(Box<dyn std::error::Error + Send + Sync>),
}

impl ConstructError {
    /// Not available now, because of `why` (an error, or a message).
    pub fn not_yet(why: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::NotYet(why.into())
    }

    /// Never available here, because of `why` (an error, or a message).
    pub fn permanent(why: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Permanent(why.into())
    }
}

/// Datadog's `CollectorFactory`: an id and a constructor the registry calls until it
/// succeeds or fails for good.
pub struct CollectorFactory {
    pub id: &'static str,
    pub constructor: Box<dyn FnMut() -> Result<CollectorCatalog, ConstructError> + Send>,
}
