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
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    path::PathBuf,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant, SystemTime},
};

use super::containers::ContainerDirectory;
use crate::{
    cgroupfs::diskstats::DeviceNames,
    ebpf::{IoKey, IoTotals, KernelMaps, NetTotals},
    identity::{CgroupKey, ContainerEntry, ContainerSnapshot},
    procfs_stats::net,
    provider::{
        CollectorError, CollectorResult, DeviceIoStats, IoCollector, IoStats, MaxAge,
        NetworkCollector, NetworkStats, PidsCollector,
    },
    ttl_map::TtlMap,
};

/// The collector's id (the source named in answers).
pub const ID: &str = "ebpf";

/// How often `retire` makes a pass when no cgroup was removed meanwhile.
const FULL_RETIRE_INTERVAL: Duration = Duration::from_secs(30);

/// How long a container's network namespace is reused without a new look.
const NETNS_TTL: Duration = Duration::from_secs(10);

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
    /// Per container id: the process whose network namespace was looked at, and the
    /// namespace's inode.
    netns: TtlMap<String, (u32, u64)>,
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
            netns: TtlMap::new(NETNS_TTL),
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
            .kernel_maps()
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
        let identity = self.directory.identity();
        let Some(kernel) = identity.kernel_maps() else {
            return;
        };
        if !self.retire_due(identity.cgroup_removals()) {
            return;
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
        self.fold_removed(kernel, &counters, &containers, &mut retired);
        forget_gone(&mut retired, &containers, Instant::now());
        // The snapshot cached for callers may hold freed entries: drop it.
        *self.latest.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// Whether a `retire` pass is due, given the index's cgroup removals count. A pass reads
    /// both maps and every container: it runs when a cgroup went away, while unknown entries
    /// wait for their second look, and otherwise every `FULL_RETIRE_INTERVAL` (entries of
    /// cgroups that went away before the index knew them, retired totals to forget).
    fn retire_due(&self, removals: u64) -> bool {
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
            return false;
        }
        *pass = Some((removals, Instant::now()));
        true
    }

    /// Adds the counted values of every removed cgroup to its container's retired totals
    /// and frees its map entries. A map entry of a cgroup the index does not know is freed
    /// (without folding: no container to fold into) when it was unknown at the previous
    /// pass too.
    fn fold_removed(
        &self,
        kernel: &dyn KernelMaps,
        counters: &CounterSnapshot,
        containers: &ContainerSnapshot,
        retired: &mut HashMap<String, Retired>,
    ) {
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
    }

    /// The network namespace of the container's first live process. A `stat` in procfs
    /// costs several µs and a process changes namespace rarely (`setns`, `unshare`), so the
    /// answer is kept per container and process for `NETNS_TTL`.
    fn netns_of(&self, entry: &ContainerEntry) -> Option<u64> {
        let id = &entry.container.id;
        let pids = entry.pids.as_deref().unwrap_or_default();
        if let Some((pid, inode)) = self.netns.get(id.as_str())
            && pids.contains(&pid)
        {
            return Some(inode);
        }
        let (pid, inode) = pids
            .iter()
            .find_map(|&pid| Some((pid, net::netns_inode(&self.proc_root, pid).ok()?)))?;
        self.netns.insert(id.clone(), (pid, inode));
        Some(inode)
    }
}

/// Forgets the retired totals of containers gone from the index (`containers`) that were
/// read once since, or that have been gone for `RETIRED_KEEP`.
fn forget_gone(
    retired: &mut HashMap<String, Retired>,
    containers: &ContainerSnapshot,
    now: Instant,
) {
    retired.retain(|id, r| {
        if containers.containers.contains_key(id) {
            r.gone_since = None;
            r.read_since_gone = false;
            return true;
        }
        let since = *r.gone_since.get_or_insert(now);
        !r.read_since_gone && now.duration_since(since) < RETIRED_KEEP
    });
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
#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{
        ebpf::{Event, kernel_maps::fake::FakeKernel},
        test_support::FakeHost,
    };

    const ID: &str = "d1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";

    fn net(rx_bytes: u64) -> NetTotals {
        NetTotals {
            rx_bytes,
            rx_packets: rx_bytes / 10,
            tx_bytes: 2 * rx_bytes,
            tx_packets: rx_bytes / 5,
        }
    }

    fn io(read_bytes: u64) -> IoTotals {
        IoTotals {
            read_bytes,
            write_bytes: 3 * read_bytes,
            read_ops: read_bytes / 4096,
            write_ops: 1,
        }
    }

    fn disk(cgroup_id: u64) -> IoKey {
        IoKey {
            hierarchy_id: 0,
            cgroup_id,
            major: 8,
            minor: 0,
        }
    }

    /// The container's (received bytes, sent bytes, read bytes, written bytes).
    fn totals(collector: &EbpfCollector) -> (u64, u64, u64, u64) {
        let net = collector
            .container_network("", ID, Duration::ZERO)
            .unwrap()
            .unwrap();
        let io = collector
            .container_io("", ID, Duration::ZERO)
            .unwrap()
            .unwrap();
        (
            net.bytes_rcvd.unwrap(),
            net.bytes_sent.unwrap(),
            io.read_bytes.unwrap(),
            io.write_bytes.unwrap(),
        )
    }

    #[test]
    fn removed_cgroups_counters_are_folded_into_their_container() {
        let host = FakeHost::new();
        let root_path = format!("/docker/{ID}");
        let sub_path = format!("{root_path}/sub");
        let root = host.mkdir(&root_path);
        let sub = host.mkdir(&sub_path);
        let kernel = Arc::new(FakeKernel::default());
        {
            let mut state = kernel.state();
            state.net.insert(root, net(100));
            state.net.insert(sub, net(50));
            state.io.insert(disk(root), io(8192));
            state.io.insert(disk(sub), io(4096));
        }
        let identity = Arc::new(host.identity(&kernel));
        let directory = Arc::new(ContainerDirectory::new(identity));
        let collector = EbpfCollector::new(directory, &host.proc_root());
        assert_eq!(totals(&collector), (150, 300, 12_288, 36_864));

        // Nothing removed: the maps are left alone.
        collector.retire();
        assert_eq!(kernel.state().net.len(), 2);
        assert_eq!(kernel.state().io.len(), 2);

        // The nested cgroup goes away: its counts move to the container's retired totals
        // and its entries are freed; the container's totals stay.
        host.rmdir(&sub_path);
        kernel.state().events.push_back(Event::CgroupRemoved {
            hierarchy_id: 0,
            cgroup_id: sub,
        });
        collector.retire();
        {
            let state = kernel.state();
            assert_eq!(state.net.keys().copied().collect::<Vec<_>>(), [root]);
            assert_eq!(state.io.keys().copied().collect::<Vec<_>>(), [disk(root)]);
        }
        assert_eq!(totals(&collector), (150, 300, 12_288, 36_864));

        // The live cgroup counts on, on top of the retired totals.
        {
            let mut state = kernel.state();
            state.net.insert(root, net(120));
            state.io.insert(disk(root), io(16_384));
        }
        assert_eq!(totals(&collector), (170, 340, 20_480, 61_440));

        // The container itself goes away: its totals are what it counted, from the retired
        // totals alone.
        host.rmdir(&root_path);
        kernel.state().events.push_back(Event::CgroupRemoved {
            hierarchy_id: 0,
            cgroup_id: root,
        });
        collector.retire();
        assert!(kernel.state().net.is_empty());
        assert!(kernel.state().io.is_empty());
        assert_eq!(totals(&collector), (170, 340, 20_480, 61_440));
    }

    #[test]
    fn entries_of_cgroups_the_index_never_knew_are_freed_at_the_second_pass() {
        let host = FakeHost::new();
        let kernel = Arc::new(FakeKernel::default());
        kernel.state().net.insert(999_999, net(10));
        let identity = Arc::new(host.identity(&kernel));
        let collector = EbpfCollector::new(
            Arc::new(ContainerDirectory::new(identity)),
            &host.proc_root(),
        );
        collector.retire();
        assert!(kernel.state().net.contains_key(&999_999));
        collector.retire();
        assert!(kernel.state().net.is_empty());
    }
}
