//! The system collector: cgroupfs (v1, v2, hybrid) and procfs, for every runtime (as
//! Datadog's `system` collector). It serves CPU, memory and PIDs stats (with IO pressure)
//! from the container's cgroup directories, IO counters as a capability of their own,
//! network from `/proc/<pid>/net/dev` once per network namespace, and open files from
//! `/proc/<pid>/fd`.
//!
//! With the kernel programs loaded, the eBPF collector answers network, IO and PIDs
//! first (priority 0) and this one is the fallback (priority 1); CPU, memory and PIDs stats
//! have no other source here, so they are priority 0.
use std::{
    collections::HashMap,
    io,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use super::containers::ContainerDirectory;
use crate::{
    cgroupfs::{CgroupDirs, CgroupLayout, CgroupStatsReader, kernel_values::CgroupValuesSource},
    identity::{CgroupRef, ContainerEntry},
    procfs_stats::{fds::FdCounter, net, tasks},
    provider::{
        CollectionContext, CollectorError, CollectorResult, ContainerStats, IoCollector, IoStats,
        MaxAge, NetworkCollector, NetworkStats, OpenFilesCollector, PidStats, PidsCollector,
        StatsCollector,
    },
    ttl_map::TtlMap,
};

/// The collector's id (the source named in answers).
pub const ID: &str = "system";

/// A container's cgroup directories and the roots they were built from.
struct ReadDirs {
    roots: Vec<CgroupRef>,
    dirs: Arc<CgroupDirs>,
}

/// Network namespaces' counters by namespace inode, read at most once per caller's `max_age`
/// (kept up to [`NETNS_TTL`]), so containers sharing a namespace (a pod) cost one read.
type NetnsCache = TtlMap<u64, Option<NetworkStats>>;

/// How often `forget_removed` looks at the read directories even without a new removal.
const READ_DIRS_RECHECK: Duration = Duration::from_secs(30);

/// How long a namespace's counters are kept: namespaces come and go with containers.
const NETNS_TTL: Duration = Duration::from_mins(1);

pub struct SystemCollector {
    directory: Arc<ContainerDirectory>,
    layout: CgroupLayout,
    proc_root: PathBuf,
    fds: FdCounter,
    reader: CgroupStatsReader,
    /// The host's network namespace inode (PID 1's), when readable.
    host_netns: Option<u64>,
    netns: NetnsCache,
    /// The directories read per container, with the roots they were built from: reused
    /// while the roots stay the same (building them splits and joins every root's path),
    /// and used to let go of their held descriptors once the container is gone (an open
    /// file of a removed cgroup keeps it in the kernel as a dying cgroup).
    read_dirs: Mutex<HashMap<String, ReadDirs>>,
    /// The cgroup removals count at the last `forget_removed` pass, and when it ran.
    removals_seen: Mutex<Option<(u64, Instant)>>,
    /// The kernel's walk of the v1 hierarchies: a full collection reads the v1 memory, cpu,
    /// pids and cpuset values of every container through one walk per hierarchy instead of
    /// eleven files per container.
    kernel_values: Option<Arc<dyn CgroupValuesSource>>,
    /// Walks made, and cgroups the last one recorded (`/metrics`).
    walks: Mutex<(u64, usize)>,
}

impl SystemCollector {
    /// A collector over `directory`'s containers that keeps at most `cgroup_file_cache`
    /// cgroup files open between reads, and takes v1 values from `kernel_values`' walks
    /// when it has one recent enough.
    pub fn new(
        directory: Arc<ContainerDirectory>,
        layout: CgroupLayout,
        proc_root: &Path,
        cgroup_file_cache: usize,
        kernel_values: Option<Arc<dyn CgroupValuesSource>>,
    ) -> Self {
        // IO counters are their own capability (`IoCollector` below): the stats read leaves
        // them out, so that they are not read for nothing when the kernel counts IO.
        let reader = CgroupStatsReader::new(&layout, proc_root)
            .without_io_counters()
            .with_max_open_files(cgroup_file_cache);
        Self {
            directory,
            layout,
            proc_root: proc_root.to_owned(),
            fds: FdCounter::new(proc_root),
            reader,
            host_netns: net::host_netns_inode(proc_root).ok(),
            netns: TtlMap::new(NETNS_TTL),
            read_dirs: Mutex::new(HashMap::new()),
            removals_seen: Mutex::new(None),
            kernel_values,
            walks: Mutex::new((0, 0)),
        }
    }

    /// Starts a full collection: walks the v1 hierarchies in the kernel (unless a walk at
    /// most `max_age` old exists), for the collection's container reads (given the returned
    /// context) to take their v1 values from. A walk made after the collection began is as
    /// fresh as the collection needs, whatever tolerance each container is then asked with
    /// (the tolerance is computed before the read, so comparing ages would reject it). Reads
    /// without the context are not affected. Without the kernel programs' walk the context
    /// is empty.
    pub fn begin_collection(&self, max_age: MaxAge) -> CollectionContext {
        let kernel_walk = self.kernel_values.as_ref().and_then(|source| {
            source.latest(max_age).or_else(|| {
                let values = source.walk()?;
                let mut walks = self.walks.lock().unwrap_or_else(PoisonError::into_inner);
                walks.0 += 1;
                walks.1 = values.len();
                Some(values)
            })
        });
        CollectionContext { kernel_walk }
    }

    /// Kernel cgroup walks made, and the cgroups the last one recorded.
    pub fn cgroup_walks(&self) -> (u64, usize) {
        *self.walks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// cgroup files held open between reads, and the most that may be.
    pub fn held_cgroup_files(&self) -> (usize, usize) {
        (self.reader.open_files(), self.reader.max_open_files())
    }

    /// Lets go of the descriptors held for containers that are gone or whose directories
    /// changed (the daemon's upkeep calls it every second).
    ///
    /// It looks after each new cgroup removal, with a snapshot built after the removal was
    /// counted (a snapshot up to a second old can predate it, and the container would keep
    /// its descriptors until the next removal), and at least every
    /// [`READ_DIRS_RECHECK`]: a read that took its container from a snapshot made before the
    /// removal can record the container's directories again after a pass let them go.
    pub fn forget_removed(&self) {
        // Only a removed cgroup makes a container's directories go away or change.
        let removals = self.directory.identity().cgroup_removals();
        let mut read_dirs = self
            .read_dirs
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut seen = self
            .removals_seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let recheck_due = seen
            .as_ref()
            .is_none_or(|(_, at)| at.elapsed() >= READ_DIRS_RECHECK);
        if !recheck_due && seen.as_ref().is_some_and(|(count, _)| *count == removals) {
            return;
        }
        *seen = Some((removals, Instant::now()));
        drop(seen);
        let snapshot = self.directory.snapshot(Duration::ZERO);
        read_dirs.retain(|id, read| {
            let keep = snapshot
                .containers
                .get(id)
                .is_some_and(|e| !e.is_removed() && e.roots == read.roots);
            if !keep {
                self.reader.forget_dirs(&read.dirs);
            }
            keep
        });
    }

    fn live_entry(&self, id: &str, max_age: MaxAge) -> Option<ContainerEntry> {
        self.directory
            .entry(id, max_age)
            .filter(|e| !e.is_removed())
    }

    /// The container's cgroup directories: those read last time while its roots are the
    /// same, else built from its roots and remembered, the descriptors of the directories
    /// it had before let go.
    fn dirs(&self, entry: &ContainerEntry) -> Arc<CgroupDirs> {
        let id = &entry.container.id;
        let mut read_dirs = self
            .read_dirs
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(read) = read_dirs.get(id.as_str())
            && read.roots == entry.roots
        {
            return Arc::clone(&read.dirs);
        }
        let paths: Vec<(u32, &str)> = entry
            .roots
            .iter()
            .map(|r| (r.hierarchy_id, &*r.path))
            .collect();
        let mut dirs = CgroupDirs::from_paths(&self.layout, &paths);
        if let Some(source) = &self.kernel_values {
            dirs = dirs.with_dir_keys(source.walks_v2());
        }
        let dirs = Arc::new(dirs);
        if let Some(old) = read_dirs.insert(
            id.clone(),
            ReadDirs {
                roots: entry.roots.clone(),
                dirs: Arc::clone(&dirs),
            },
        ) {
            self.reader.forget_dirs(&old.dirs);
        }
        dirs
    }

    /// The container's processes from its cgroups' `cgroup.procs`, nested cgroups
    /// included: the v2 directory when there is one (every process has a v2 cgroup), else
    /// each v1 root in turn.
    fn pids_of(&self, entry: &ContainerEntry) -> Result<Vec<u32>, CollectorError> {
        let mut last_error = None;
        for root in &entry.roots {
            let Some(dir) = self.layout.cgroup_dir(root.hierarchy_id, &root.path) else {
                continue;
            };
            match tasks::cgroup_pids_recursive(&dir) {
                Ok(pids) => return Ok(pids),
                Err(e) => last_error = Some(CollectorError::read(dir, e)),
            }
        }
        Err(last_error.unwrap_or(CollectorError::NotMounted))
    }

    /// The container's processes: from the kernel-fed index when it is on (no file read),
    /// else from cgroupfs.
    fn processes(&self, entry: &ContainerEntry) -> Result<Vec<u32>, CollectorError> {
        match &entry.pids {
            Some(pids) => Ok(pids.clone()),
            None => self.pids_of(entry),
        }
    }

    fn network_of_pids(&self, pids: &[u32], max_age: MaxAge) -> CollectorResult<NetworkStats> {
        for &pid in pids {
            let inode = match net::netns_inode(&self.proc_root, pid) {
                Ok(inode) => inode,
                // Exited since the list was made: try the next process.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(CollectorError::process(pid, e)),
            };
            // A zero `max_age` reads afresh.
            let stats = match self.netns.get_within(&inode, max_age) {
                Some(stats) => stats,
                None => match net::read_net_dev(&self.proc_root, pid) {
                    Ok(stats) => {
                        self.netns.insert(inode, stats.clone());
                        stats
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(CollectorError::process(pid, e)),
                },
            };
            return Ok(stats.map(|mut stats| {
                stats.network_isolation_group_id = Some(inode);
                stats.using_host_network = self.host_netns.map(|host| host == inode);
                stats
            }));
        }
        Ok(None)
    }

    /// Threads of the container from procfs, for cgroups without a `pids` controller.
    fn thread_count_from_procfs(&self, pids: &[u32]) -> Option<u64> {
        let mut total = 0u64;
        let mut any = false;
        for &pid in pids {
            if let Ok(n) = tasks::thread_count(&self.proc_root, pid) {
                total += n;
                any = true;
            }
        }
        any.then_some(total)
    }
}

impl StatsCollector for SystemCollector {
    fn container_stats(
        &self,
        namespace: &str,
        container_id: &str,
        max_age: MaxAge,
    ) -> CollectorResult<ContainerStats> {
        let collection = CollectionContext::default();
        self.collection_stats(namespace, container_id, max_age, &collection)
    }

    /// v1 values from the collection's kernel walk, else from a walk at most `max_age` old,
    /// else from the files.
    fn collection_stats(
        &self,
        _namespace: &str,
        container_id: &str,
        max_age: MaxAge,
        collection: &CollectionContext,
    ) -> CollectorResult<ContainerStats> {
        let Some(entry) = self.live_entry(container_id, max_age) else {
            return Ok(None);
        };
        let kernel = collection.kernel_walk.clone().or_else(|| {
            let source = self.kernel_values.as_ref()?;
            source.latest(max_age)
        });
        let mut stats = self.reader.read_with(&self.dirs(&entry), kernel.as_deref());
        if stats.pid.as_ref().is_none_or(|p| p.thread_count.is_none())
            && let Ok(pids) = self.processes(&entry)
            && let Some(threads) = self.thread_count_from_procfs(&pids)
        {
            let pid = stats.pid.get_or_insert_with(PidStats::default);
            pid.thread_count = Some(threads);
        }
        if stats.cpu.is_none()
            && stats.memory.is_none()
            && stats.io.is_none()
            && stats.pid.is_none()
        {
            return Err(CollectorError::NothingRead {
                container_id: container_id.to_owned(),
            });
        }
        Ok(Some(stats))
    }
}

impl IoCollector for SystemCollector {
    fn container_io(
        &self,
        _namespace: &str,
        container_id: &str,
        max_age: MaxAge,
    ) -> CollectorResult<IoStats> {
        let Some(entry) = self.live_entry(container_id, max_age) else {
            return Ok(None);
        };
        Ok(self.reader.read_io(&self.dirs(&entry)))
    }
}

impl SystemCollector {
    /// The counters of the network namespace `entry`'s processes are in (its first live
    /// process's), no older than `max_age`; `Ok(None)` when none of them is alive.
    pub fn network_of_entry(
        &self,
        entry: &ContainerEntry,
        max_age: MaxAge,
    ) -> CollectorResult<NetworkStats> {
        let pids = self.processes(entry)?;
        self.network_of_pids(&pids, max_age)
    }
}

impl NetworkCollector for SystemCollector {
    fn container_network(
        &self,
        _namespace: &str,
        container_id: &str,
        max_age: MaxAge,
    ) -> CollectorResult<NetworkStats> {
        let Some(entry) = self.live_entry(container_id, max_age) else {
            return Ok(None);
        };
        let pids = self.processes(&entry)?;
        self.network_of_pids(&pids, max_age)
    }
}

impl OpenFilesCollector for SystemCollector {
    fn container_open_files(
        &self,
        _namespace: &str,
        container_id: &str,
        max_age: MaxAge,
    ) -> CollectorResult<u64> {
        let Some(entry) = self.live_entry(container_id, max_age) else {
            return Ok(None);
        };
        let pids = self.processes(&entry)?;
        count_open_files(&self.fds, &pids)
    }
}

/// Open descriptors summed over `pids`; processes gone meanwhile count for nothing.
fn count_open_files(fds: &FdCounter, pids: &[u32]) -> CollectorResult<u64> {
    let mut total = 0u64;
    let mut counted = false;
    for &pid in pids {
        match fds.count(pid) {
            Ok(n) => {
                total += n;
                counted = true;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(CollectorError::process(pid, e)),
        }
    }
    Ok(counted.then_some(total))
}

impl PidsCollector for SystemCollector {
    fn container_pids(
        &self,
        _namespace: &str,
        container_id: &str,
        max_age: MaxAge,
    ) -> CollectorResult<Vec<u32>> {
        let Some(entry) = self.live_entry(container_id, max_age) else {
            return Ok(None);
        };
        self.pids_of(&entry).map(Some)
    }
}
