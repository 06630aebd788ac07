//! The eBPF collector (priority 0): answers from the kernel programs' maps.
//!
//! - Network: bytes and packets per cgroup-v2 cgroup, counted by `cgroup_skb` programs on
//!   the v2 root (loopback excluded), summed over the container's cgroups. Per container,
//!   also when containers share a network namespace or use the host's; interfaces are not
//!   known at that hook, so `interfaces` is null and the totals are the answer.
//! - IO: bytes and operations per (owning cgroup, disk), counted at the block layer and
//!   charged to the memory cgroup that owns the pages (so writeback by kernel workers goes
//!   to the writer), summed over the container's cgroups in every hierarchy.
//! - PIDs: the process index the lifecycle programs keep.
//!
//! Counters of removed cgroups: `retire` (run by the daemon's upkeep) folds a removed
//! cgroup's final values into its container's retired totals and frees the map entry, so
//! maps stay bounded and a container's counters never go backwards when a nested cgroup
//! goes away. A removed container's totals stay readable until read once after it is gone
//! (or `RETIRED_KEEP` passes).
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use crate::cgroupfs::diskstats::DeviceNames;
use crate::ebpf::{IoKey, IoTotals, NetTotals};
use crate::identity::{CgroupKey, ContainerEntry};
use crate::procfs_stats::net;
use crate::provider::{
    CollectorError, CollectorResult, DeviceIoStats, IoCollector, IoStats, MaxAge, NetworkCollector,
    NetworkStats, PidsCollector,
};

use super::containers::ContainerDirectory;

/// The collector's id (the source named in answers).
pub const ID: &str = "ebpf";

/// How often `retire` makes a pass when no cgroup was removed meanwhile.
const FULL_RETIRE_INTERVAL: Duration = Duration::from_secs(30);

/// How long a container's network namespace is reused without a new look.
const NETNS_TTL: Duration = Duration::from_secs(10);
/// Past this many remembered namespaces, forget the stale ones.
const NETNS_KEEP: usize = 4096;

/// How long a removed container's final counters are kept when nobody reads them.
const RETIRED_KEEP: Duration = Duration::from_mins(10);

/// A disk: `(major, minor)`.
type Disk = (u32, u32);

/// Per cgroup `(hierarchy id, cgroup id)`: IO per disk.
type IoByCgroup = HashMap<CgroupKey, Vec<(Disk, IoTotals)>>;

/// One read of both counter maps, indexed by cgroup. Each map may be unavailable on its
/// own (its program failed to attach): that capability then fails with the reason, and the
/// provider asks the next collector.
struct CounterSnapshot {
    taken: Instant,
    net: Result<HashMap<u64, NetTotals>, CollectorError>,
    io: Result<IoByCgroup, CollectorError>,
}

/// Final counters of a container's removed cgroups.
#[derive(Default)]
struct Retired {
    net: NetTotals,
    io: HashMap<(u32, u32), IoTotals>,
    /// When the container itself was last seen gone from the index.
    gone_since: Option<Instant>,
    /// Read by a caller since it is gone: may be dropped.
    read_since_gone: bool,
}

pub struct EbpfCollector {
    directory: Arc<ContainerDirectory>,
    proc_root: PathBuf,
    devices: DeviceNames,
    host_netns: Option<u64>,
    latest: Mutex<Option<Arc<CounterSnapshot>>>,
    retired: Mutex<HashMap<String, Retired>>,
    /// Map keys of cgroups the index did not know at the last `retire`.
    unknown: Mutex<HashSet<(u32, u64)>>,
    /// The cgroup removals count and time of the last `retire` pass.
    last_retire: Mutex<Option<(u64, Instant)>>,
    /// Per container: the process whose network namespace was looked at, when, and its
    /// inode.
    netns: Mutex<HashMap<String, (u32, Instant, u64)>>,
}

impl EbpfCollector {
    pub fn new(directory: Arc<ContainerDirectory>, proc_root: &std::path::Path) -> Self {
        Self {
            directory,
            proc_root: proc_root.to_owned(),
            devices: DeviceNames::new(proc_root),
            host_netns: net::host_netns_inode(proc_root).ok(),
            latest: Mutex::new(None),
            retired: Mutex::new(HashMap::new()),
            unknown: Mutex::new(HashSet::new()),
            netns: Mutex::new(HashMap::new()),
            last_retire: Mutex::new(None),
        }
    }

    fn counters(&self, max_age: MaxAge) -> Result<Arc<CounterSnapshot>, CollectorError> {
        let mut latest = self.latest.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(snapshot) = latest.as_ref()
            && !max_age.is_zero()
            && snapshot.taken.elapsed() <= max_age
        {
            return Ok(Arc::clone(snapshot));
        }
        let fresh = Arc::new(self.read_counters()?);
        *latest = Some(Arc::clone(&fresh));
        Ok(fresh)
    }

    fn read_counters(&self) -> Result<CounterSnapshot, CollectorError> {
        let kernel = self
            .directory
            .identity()
            .kernel()
            .ok_or(CollectorError::KernelUnavailable)?;
        let net = kernel.net_snapshot().map_err(CollectorError::from);
        let io = kernel
            .io_snapshot()
            .map_err(CollectorError::from)
            .map(|snapshot| {
                let mut io: IoByCgroup = HashMap::new();
                for (key, totals) in snapshot {
                    io.entry((key.hierarchy_id, key.cgroup_id))
                        .or_default()
                        .push(((key.major, key.minor), totals));
                }
                io
            });
        Ok(CounterSnapshot {
            taken: Instant::now(),
            net,
            io,
        })
    }

    fn network_totals(
        &self,
        entry: Option<&ContainerEntry>,
        id: &str,
        max_age: MaxAge,
    ) -> CollectorResult<NetTotals> {
        // The retired totals are locked before the counters are taken, and `retire` holds
        // the same lock for its whole pass: an answer sees a cgroup's counts either live
        // or folded, never both (which would count them twice, then go backwards).
        let mut retired = self.retired.lock().unwrap_or_else(PoisonError::into_inner);
        let counters = self.counters(max_age)?;
        let live = counters.net.as_ref().map_err(Clone::clone)?;
        let from_retired = read_retired(&mut retired, id, |r| r.net);
        let Some(entry) = entry else {
            return Ok(from_retired);
        };
        let mut totals = from_retired.unwrap_or_default();
        for member in entry.members.iter().filter(|m| m.key.0 == 0) {
            if let Some(counted) = live.get(&member.key.1) {
                totals.add(counted);
            }
        }
        Ok(Some(totals))
    }

    fn io_totals(
        &self,
        entry: Option<&ContainerEntry>,
        id: &str,
        max_age: MaxAge,
    ) -> CollectorResult<HashMap<(u32, u32), IoTotals>> {
        // The retired totals are locked before the counters are taken, and `retire` holds
        // the same lock for its whole pass: an answer sees a cgroup's counts either live
        // or folded, never both (which would count them twice, then go backwards).
        let mut retired = self.retired.lock().unwrap_or_else(PoisonError::into_inner);
        let counters = self.counters(max_age)?;
        let live = counters.io.as_ref().map_err(Clone::clone)?;
        let from_retired = read_retired(&mut retired, id, |r| r.io.clone());
        let Some(entry) = entry else {
            return Ok(from_retired);
        };
        let mut per_disk = from_retired.unwrap_or_default();
        for member in &entry.members {
            for (disk, counted) in live.get(&member.key).into_iter().flatten() {
                per_disk.entry(*disk).or_default().add(counted);
            }
        }
        Ok(Some(per_disk))
    }

    /// Folds the counters of removed cgroups into their containers' retired totals and
    /// frees their map entries; forgets retired totals of containers long gone. Called
    /// periodically by the daemon (every second).
    pub fn retire(&self) {
        let Some(kernel) = self.directory.identity().kernel() else {
            return;
        };
        // A pass reads both maps and every container: do it when a cgroup went away, while
        // unknown entries wait for their second look, and otherwise every FULL_RETIRE_INTERVAL
        // (entries of cgroups that went away before the index knew them, retired totals to
        // forget).
        let removals = self.directory.identity().cgroup_removals();
        {
            let mut pass = self
                .last_retire
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let unknown_pending = !self
                .unknown
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_empty();
            if let Some((seen, at)) = *pass
                && seen == removals
                && !unknown_pending
                && at.elapsed() < FULL_RETIRE_INTERVAL
            {
                return;
            }
            *pass = Some((removals, Instant::now()));
        }
        // Held for the whole pass (see `network_totals`): readers see each cgroup either live
        // or folded.
        let mut retired = self.retired.lock().unwrap_or_else(PoisonError::into_inner);
        let counters = match self.read_counters() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "reading the counter maps failed");
                return;
            }
        };
        let containers = self.directory.snapshot(Duration::ZERO);
        let identity = self.directory.identity();
        let mut owner: HashMap<CgroupKey, &str> = HashMap::new();
        for (id, entry) in &containers.containers {
            for member in &entry.members {
                owner.insert(member.key, id);
            }
        }
        let mut unknown = self.unknown.lock().unwrap_or_else(PoisonError::into_inner);
        let mut still_unknown = HashSet::new();
        // A cgroup may be removed while sockets it created live on (their packets keep its
        // id), so an entry can come back after being freed: it is folded in again then.
        let mut should_free = |key: CgroupKey| {
            if let Some(removed) = identity.cgroup_removed(key) {
                return removed;
            }
            // Not in the index: removed and forgotten, or created after the snapshot. Free
            // it only when it was already unknown at the previous pass.
            still_unknown.insert(key);
            unknown.contains(&key)
        };
        for (&cgroup_id, totals) in counters.net.iter().flatten() {
            let key = (0, cgroup_id);
            if should_free(key) {
                if let Some(id) = owner.get(&key) {
                    retired.entry((*id).to_owned()).or_default().net.add(totals);
                }
                kernel.remove_net(cgroup_id);
            }
        }
        for (&key, disks) in counters.io.iter().flatten() {
            if should_free(key) {
                for ((major, minor), totals) in disks {
                    if let Some(id) = owner.get(&key) {
                        let r = retired.entry((*id).to_owned()).or_default();
                        r.io.entry((*major, *minor)).or_default().add(totals);
                    }
                    kernel.remove_io(&IoKey {
                        hierarchy_id: key.0,
                        cgroup_id: key.1,
                        major: *major,
                        minor: *minor,
                    });
                }
            }
        }
        *unknown = still_unknown;
        let now = Instant::now();
        retired.retain(|id, r| {
            if containers.containers.contains_key(id) {
                r.gone_since = None;
                r.read_since_gone = false;
                return true;
            }
            let since = *r.gone_since.get_or_insert(now);
            !r.read_since_gone && now.duration_since(since) < RETIRED_KEEP
        });
        // The snapshot cached for callers may hold freed entries: drop it.
        *self.latest.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// The network namespace of the container's first live process. A `stat` in procfs
    /// costs several µs and a process changes namespace rarely (`setns`, `unshare`), so the
    /// answer is kept per container and process for `NETNS_TTL`.
    fn netns_of(&self, entry: &ContainerEntry) -> Option<u64> {
        let id = &entry.container.id;
        let pids = entry.pids.as_deref().unwrap_or_default();
        {
            let known = self.netns.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some((pid, at, inode)) = known.get(id)
                && at.elapsed() < NETNS_TTL
                && pids.contains(pid)
            {
                return Some(*inode);
            }
        }
        let (pid, inode) = pids
            .iter()
            .find_map(|&pid| Some((pid, net::netns_inode(&self.proc_root, pid).ok()?)))?;
        let mut known = self.netns.lock().unwrap_or_else(PoisonError::into_inner);
        if known.len() > NETNS_KEEP {
            known.retain(|_, (_, at, _)| at.elapsed() < NETNS_TTL);
        }
        known.insert(id.clone(), (pid, Instant::now(), inode));
        Some(inode)
    }
}

/// What `get` takes from container `id`'s retired totals, if it has any; a read of a
/// container already gone lets its totals be dropped.
fn read_retired<T>(
    retired: &mut HashMap<String, Retired>,
    id: &str,
    get: impl FnOnce(&Retired) -> T,
) -> Option<T> {
    let r = retired.get_mut(id)?;
    if r.gone_since.is_some() {
        r.read_since_gone = true;
    }
    Some(get(r))
}

impl NetworkCollector for EbpfCollector {
    fn container_network(
        &self,
        _namespace: &str,
        container_id: &str,
        max_age: MaxAge,
    ) -> CollectorResult<NetworkStats> {
        let entry = self.directory.entry(container_id, max_age);
        let Some(totals) = self.network_totals(entry.as_ref(), container_id, max_age)? else {
            return Ok(None);
        };
        let netns = entry.as_ref().and_then(|e| self.netns_of(e));
        Ok(Some(NetworkStats {
            timestamp: Some(SystemTime::now()),
            bytes_sent: Some(totals.tx_bytes),
            bytes_rcvd: Some(totals.rx_bytes),
            packets_sent: Some(totals.tx_packets),
            packets_rcvd: Some(totals.rx_packets),
            interfaces: None,
            network_isolation_group_id: netns,
            using_host_network: netns.zip(self.host_netns).map(|(own, host)| own == host),
        }))
    }
}

impl IoCollector for EbpfCollector {
    fn container_io(
        &self,
        _namespace: &str,
        container_id: &str,
        max_age: MaxAge,
    ) -> CollectorResult<IoStats> {
        let entry = self.directory.entry(container_id, max_age);
        let Some(per_disk) = self.io_totals(entry.as_ref(), container_id, max_age)? else {
            return Ok(None);
        };
        let mut totals = IoTotals::default();
        let mut devices = BTreeMap::new();
        for ((major, minor), disk) in &per_disk {
            totals.add(disk);
            // Disks missing from /proc/diskstats (gone since) count in the totals only.
            if let Some(name) = self.devices.name(*major, *minor) {
                devices.insert(
                    name,
                    DeviceIoStats {
                        read_bytes: Some(disk.read_bytes),
                        write_bytes: Some(disk.write_bytes),
                        read_operations: Some(disk.read_ops),
                        write_operations: Some(disk.write_ops),
                    },
                );
            }
        }
        Ok(Some(IoStats {
            read_bytes: Some(totals.read_bytes),
            write_bytes: Some(totals.write_bytes),
            read_operations: Some(totals.read_ops),
            write_operations: Some(totals.write_ops),
            partial_stall_time: None,
            full_stall_time: None,
            devices: Some(devices),
        }))
    }
}

impl PidsCollector for EbpfCollector {
    fn container_pids(
        &self,
        _namespace: &str,
        container_id: &str,
        max_age: MaxAge,
    ) -> CollectorResult<Vec<u32>> {
        Ok(self
            .directory
            .entry(container_id, max_age)
            .filter(|e| !e.is_removed())
            .and_then(|e| e.pids))
    }
}
