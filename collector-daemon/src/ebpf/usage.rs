//! Readers of the kernel's per-cgroup usage counters: network traffic per cgroup-v2 id
//! (`NET_COUNTERS`) and block IO per owning cgroup and disk (`IO_COUNTERS`), both per-CPU
//! hash maps whose per-CPU copies are summed here. Layouts and semantics are in
//! `collector_common::usage`; how the kernel counts in `collector-ebpf/src/{net,blkio}.rs`.
//!
//! Reads go to the kernel every time (no cache): a lookup is one `bpf(2)` call (~1 µs), a
//! snapshot two per entry. Entries of removed cgroups stay until [`CounterMaps::remove_net`]
//! or [`CounterMaps::remove_io`] frees them, so a caller can fold their final values first.
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use aya::{
    maps::{MapData, MapError, PerCpuHashMap, PerCpuValues},
    programs::ProgramError,
};
use collector_common::{
    names::{IO_COUNTERS_MAP, NET_COUNTERS_MAP},
    usage::{IoMapKey, IoMapValue, NetMapValue, make_dev, split_dev},
};

use super::btf_offsets::OffsetError;
use crate::error_chain::{ErrorChain, IfDenied};

/// Network traffic of one cgroup (v2 id), summed over CPUs. Loopback excluded; bytes are IP
/// packet lengths (no link-layer header); packets are wire packets (GSO/GRO segments).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetTotals {
    /// Bytes received by the cgroup's sockets.
    pub rx_bytes: u64,
    /// Packets received by the cgroup's sockets.
    pub rx_packets: u64,
    /// Bytes sent by the cgroup's sockets.
    pub tx_bytes: u64,
    /// Packets sent by the cgroup's sockets.
    pub tx_packets: u64,
}

/// Block IO of one owner on one disk, summed over CPUs (per submitted bio, as `io.stat`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoTotals {
    /// Bytes read.
    pub read_bytes: u64,
    /// Bytes written.
    pub write_bytes: u64,
    /// Read operations (bios).
    pub read_ops: u64,
    /// Write operations (bios).
    pub write_ops: u64,
}

impl NetTotals {
    /// Adds `other` in (saturating: counters never wrap back to small values).
    pub fn add(&mut self, other: &NetTotals) {
        self.rx_bytes = self.rx_bytes.saturating_add(other.rx_bytes);
        self.rx_packets = self.rx_packets.saturating_add(other.rx_packets);
        self.tx_bytes = self.tx_bytes.saturating_add(other.tx_bytes);
        self.tx_packets = self.tx_packets.saturating_add(other.tx_packets);
    }
}

impl IoTotals {
    /// Adds `other` in (saturating: counters never wrap back to small values).
    pub fn add(&mut self, other: &IoTotals) {
        self.read_bytes = self.read_bytes.saturating_add(other.read_bytes);
        self.write_bytes = self.write_bytes.saturating_add(other.write_bytes);
        self.read_ops = self.read_ops.saturating_add(other.read_ops);
        self.write_ops = self.write_ops.saturating_add(other.write_ops);
    }
}

/// Who did block IO on which disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IoKey {
    /// Hierarchy of the owning cgroup: 0 for v2, else the v1 hierarchy id (normally that of
    /// `memory`, whose page ownership decides; `blkio`'s for IO of pages without one). 0
    /// together with `cgroup_id` 0: the owner could not be read.
    pub hierarchy_id: u32,
    /// The owning cgroup's id (its directory's inode) in that hierarchy.
    pub cgroup_id: u64,
    /// The disk's major number.
    pub major: u32,
    /// The disk's minor number (its first minor: partitions count as their disk).
    pub minor: u32,
}

impl From<IoMapKey> for IoKey {
    fn from(key: IoMapKey) -> Self {
        let (major, minor) = split_dev(key.dev);
        Self {
            hierarchy_id: key.hierarchy_id,
            cgroup_id: key.cgroup_id,
            major,
            minor,
        }
    }
}

impl From<&IoKey> for IoMapKey {
    fn from(key: &IoKey) -> Self {
        Self {
            cgroup_id: key.cgroup_id,
            hierarchy_id: key.hierarchy_id,
            dev: make_dev(key.major, key.minor),
        }
    }
}

/// Why counters could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CounterError {
    /// The counting program is not attached, or its pinned map did not open.
    #[error("counters unavailable: {0}")]
    Unavailable(#[source] Arc<CountersUnavailable>),
    /// A map operation failed.
    #[error("reading {map}: {}", ErrorChain(.source))]
    Map {
        /// Map name.
        map: &'static str,
        /// aya's error.
        #[source]
        source: MapError,
    },
}

/// Why one counter map is not readable: its program did not attach, or (for a reader of
/// another daemon's pins) its pin did not open.
#[derive(Debug, thiserror::Error)]
pub enum CountersUnavailable {
    /// No cgroup-v2 hierarchy to attach the `cgroup_skb` programs to.
    #[error("no cgroup-v2 hierarchy is mounted (cgroup_skb programs attach to a v2 cgroup)")]
    NoCgroupV2,
    /// The cgroup-v2 directory to attach to did not open.
    #[error("opening {}: {source}", .path.display())]
    OpenCgroup {
        /// The directory.
        path: PathBuf,
        /// The error of `open(2)`.
        #[source]
        source: std::io::Error,
    },
    /// A `cgroup_skb` program is missing from the object, or failed to load or attach
    /// (attaching a program to a cgroup needs `CAP_NET_ADMIN`).
    #[error(
        "program {program} on {}: {}{}",
        .cgroup.display(),
        ErrorChain(.source),
        IfDenied(.source, "attaching to a cgroup needs CAP_NET_ADMIN")
    )]
    CgroupProgram {
        /// Program name.
        program: &'static str,
        /// The cgroup-v2 directory it attaches to.
        cgroup: PathBuf,
        /// aya's error.
        #[source]
        source: ProgramError,
    },
    /// The kernel's BTF lacks a member the block IO program reads.
    #[error("kernel BTF lacks what the block IO program reads: {source}")]
    IoOffsets {
        /// The missing struct or member.
        #[source]
        source: OffsetError,
    },
    /// A tracepoint program is missing from the object, or failed to load or attach.
    #[error(
        "program {program} (tracepoint {tracepoint}): {}{}",
        ErrorChain(.source),
        IfDenied(.source, "loading tracing programs needs CAP_BPF and CAP_PERFMON")
    )]
    Tracepoint {
        /// Program name.
        program: &'static str,
        /// Kernel tracepoint.
        tracepoint: &'static str,
        /// aya's error.
        #[source]
        source: ProgramError,
    },
    /// The map is missing from the object.
    #[error("map {map} is missing from the eBPF object")]
    MissingMap {
        /// Map name.
        map: &'static str,
    },
    /// The map is not the per-CPU hash map the reader expects.
    #[error("map {map}: {}", ErrorChain(.source))]
    Map {
        /// Map name.
        map: &'static str,
        /// aya's error.
        #[source]
        source: MapError,
    },
    /// The pinned map did not open, or is not the per-CPU hash map the reader expects.
    #[error("{}: {}", .path.display(), ErrorChain(.source))]
    Pinned {
        /// The pin.
        path: PathBuf,
        /// aya's error.
        #[source]
        source: MapError,
    },
}

type NetMap = PerCpuHashMap<MapData, u64, NetMapValue>;
type IoMap = PerCpuHashMap<MapData, IoMapKey, IoMapValue>;

/// The two counter maps, each either attached and readable or unavailable with a reason.
pub struct CounterMaps {
    net: Result<Mutex<NetMap>, Arc<CountersUnavailable>>,
    io: Result<Mutex<IoMap>, Arc<CountersUnavailable>>,
    /// Both reasons in one sentence, when anything is unavailable.
    unavailable: Option<String>,
    /// Entries the last snapshot of each map read (`usize::MAX` before the first): its
    /// occupancy, without a walk of the map just to count.
    net_entries: std::sync::atomic::AtomicUsize,
    io_entries: std::sync::atomic::AtomicUsize,
}

impl CounterMaps {
    /// From the maps of attached programs, or the reasons they are not attached.
    pub fn new(
        net: Result<NetMap, CountersUnavailable>,
        io: Result<IoMap, CountersUnavailable>,
    ) -> Self {
        let unavailable = match (&net, &io) {
            (Ok(_), Ok(_)) => None,
            (Err(net), Ok(_)) => Some(format!("network counters: {net}")),
            (Ok(_), Err(io)) => Some(format!("block IO counters: {io}")),
            (Err(net), Err(io)) => {
                Some(format!("network counters: {net}; block IO counters: {io}"))
            }
        };
        Self {
            net: net.map(Mutex::new).map_err(Arc::new),
            io: io.map(Mutex::new).map_err(Arc::new),
            unavailable,
            net_entries: std::sync::atomic::AtomicUsize::new(usize::MAX),
            io_entries: std::sync::atomic::AtomicUsize::new(usize::MAX),
        }
    }

    /// The maps a running daemon pinned in `pin_dir` (`net_counters`, `io_counters`), for
    /// other tools and tests. A missing or wrong pin makes that map unavailable with the
    /// reason. Only reading and removing go through these handles; the programs stay the
    /// pinning daemon's.
    pub fn open_pinned(pin_dir: &Path) -> Self {
        use super::loader::{IO_COUNTERS_PIN_NAME, NET_COUNTERS_PIN_NAME};
        Self::new(
            open_pinned(&pin_dir.join(NET_COUNTERS_PIN_NAME)),
            open_pinned(&pin_dir.join(IO_COUNTERS_PIN_NAME)),
        )
    }

    /// Why some counters are not attached (`None` when both are).
    pub fn counters_unavailable(&self) -> Option<&str> {
        self.unavailable.as_deref()
    }

    /// Why the network counters are not attached.
    pub fn net_unavailable(&self) -> Option<&CountersUnavailable> {
        self.net.as_ref().err().map(Arc::as_ref)
    }

    /// Every cgroup's traffic, by cgroup-v2 id.
    pub fn net_snapshot(&self) -> Result<HashMap<u64, NetTotals>, CounterError> {
        let map = self.net()?;
        let mut out = HashMap::new();
        for entry in map.iter() {
            let (id, values) = entry.map_err(net_err)?;
            out.insert(id, sum_net(&values));
        }
        self.net_entries
            .store(out.len(), std::sync::atomic::Ordering::Relaxed);
        Ok(out)
    }

    /// One cgroup's traffic; `None` when it has none counted.
    pub fn net_lookup(&self, cgroup_id: u64) -> Result<Option<NetTotals>, CounterError> {
        let map = self.net()?;
        match map.get(&cgroup_id, 0) {
            Ok(values) => Ok(Some(sum_net(&values))),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(net_err(e)),
        }
    }

    /// Every owner's block IO, per disk.
    pub fn io_snapshot(&self) -> Result<HashMap<IoKey, IoTotals>, CounterError> {
        let map = self.io()?;
        let mut out = HashMap::new();
        for entry in map.iter() {
            let (key, values) = entry.map_err(io_err)?;
            out.insert(IoKey::from(key), sum_io(&values));
        }
        self.io_entries
            .store(out.len(), std::sync::atomic::Ordering::Relaxed);
        Ok(out)
    }

    /// Entries the last snapshots of the network and IO maps read, when there was one.
    pub fn last_entries(&self) -> (Option<usize>, Option<usize>) {
        let read = |a: &std::sync::atomic::AtomicUsize| {
            Some(a.load(std::sync::atomic::Ordering::Relaxed)).filter(|&n| n != usize::MAX)
        };
        (read(&self.net_entries), read(&self.io_entries))
    }

    /// Frees the entry of a removed cgroup (the caller folded its final values first).
    /// Absent entries and unavailable counters are no error.
    pub fn remove_net(&self, cgroup_id: u64) {
        if let Ok(mut map) = self.net() {
            log_remove(NET_COUNTERS_MAP, map.remove(&cgroup_id));
        }
    }

    /// Frees an IO entry of a removed cgroup, as [`Self::remove_net`].
    pub fn remove_io(&self, key: &IoKey) {
        if let Ok(mut map) = self.io() {
            log_remove(IO_COUNTERS_MAP, map.remove(&IoMapKey::from(key)));
        }
    }

    fn net(&self) -> Result<MutexGuard<'_, NetMap>, CounterError> {
        match &self.net {
            Ok(map) => Ok(map.lock().unwrap_or_else(PoisonError::into_inner)),
            Err(reason) => Err(CounterError::Unavailable(Arc::clone(reason))),
        }
    }

    fn io(&self) -> Result<MutexGuard<'_, IoMap>, CounterError> {
        match &self.io {
            Ok(map) => Ok(map.lock().unwrap_or_else(PoisonError::into_inner)),
            Err(reason) => Err(CounterError::Unavailable(Arc::clone(reason))),
        }
    }
}

fn log_remove(map: &'static str, result: Result<(), MapError>) {
    match result {
        Ok(()) | Err(MapError::KeyNotFound) => {}
        // The kernel answers ENOENT through a syscall error for an absent key.
        Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => {}
        Err(e) => tracing::warn!(map, error = %ErrorChain(&e), "could not remove a counter entry"),
    }
}

/// A counter map another process pinned at `path`.
fn open_pinned<K: aya::Pod, V: aya::Pod>(
    path: &Path,
) -> Result<PerCpuHashMap<MapData, K, V>, CountersUnavailable> {
    let pinned = |source| CountersUnavailable::Pinned {
        path: path.to_owned(),
        source,
    };
    let data = MapData::from_pin(path).map_err(pinned)?;
    let map = aya::maps::Map::from_map_data(data).map_err(pinned)?;
    PerCpuHashMap::try_from(map).map_err(pinned)
}

fn net_err(source: MapError) -> CounterError {
    CounterError::Map {
        map: NET_COUNTERS_MAP,
        source,
    }
}

fn io_err(source: MapError) -> CounterError {
    CounterError::Map {
        map: IO_COUNTERS_MAP,
        source,
    }
}

/// Sums the per-CPU copies of a network value (wrapping: a u64 of bytes does not wrap in
/// practice, and a reader must never panic).
pub fn sum_net(values: &PerCpuValues<NetMapValue>) -> NetTotals {
    sum_net_slice(values)
}

fn sum_net_slice(values: &[NetMapValue]) -> NetTotals {
    values.iter().fold(NetTotals::default(), |t, v| NetTotals {
        rx_bytes: t.rx_bytes.wrapping_add(v.rx_bytes),
        rx_packets: t.rx_packets.wrapping_add(v.rx_packets),
        tx_bytes: t.tx_bytes.wrapping_add(v.tx_bytes),
        tx_packets: t.tx_packets.wrapping_add(v.tx_packets),
    })
}

/// Sums the per-CPU copies of a block IO value.
pub fn sum_io(values: &PerCpuValues<IoMapValue>) -> IoTotals {
    sum_io_slice(values)
}

fn sum_io_slice(values: &[IoMapValue]) -> IoTotals {
    values.iter().fold(IoTotals::default(), |t, v| IoTotals {
        read_bytes: t.read_bytes.wrapping_add(v.read_bytes),
        write_bytes: t.write_bytes.wrapping_add(v.write_bytes),
        read_ops: t.read_ops.wrapping_add(v.read_ops),
        write_ops: t.write_ops.wrapping_add(v.write_ops),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_cpu_values_are_summed() {
        let net = [
            NetMapValue {
                rx_bytes: 1,
                rx_packets: 2,
                tx_bytes: 3,
                tx_packets: 4,
            },
            NetMapValue {
                rx_bytes: 10,
                rx_packets: 20,
                tx_bytes: 30,
                tx_packets: 40,
            },
        ];
        assert_eq!(
            sum_net_slice(&net),
            NetTotals {
                rx_bytes: 11,
                rx_packets: 22,
                tx_bytes: 33,
                tx_packets: 44
            }
        );
        let io = [
            IoMapValue {
                read_bytes: 4096,
                write_bytes: 0,
                read_ops: 1,
                write_ops: 0,
            },
            IoMapValue {
                read_bytes: 0,
                write_bytes: 1 << 20,
                read_ops: 0,
                write_ops: 2,
            },
        ];
        assert_eq!(
            sum_io_slice(&io),
            IoTotals {
                read_bytes: 4096,
                write_bytes: 1 << 20,
                read_ops: 1,
                write_ops: 2
            }
        );
        assert_eq!(sum_io_slice(&[]), IoTotals::default());
    }

    #[test]
    fn io_keys_round_trip_through_the_kernel_dev_t() {
        // /dev/vda is 254:0, a partition like sdb3 would be 8:19 (folded to 8:16 by the kernel).
        let key = IoKey {
            hierarchy_id: 4,
            cgroup_id: 123_456,
            major: 254,
            minor: 0,
        };
        let raw = IoMapKey::from(&key);
        assert_eq!(raw.dev, 254 << 20);
        assert_eq!(IoKey::from(raw), key);
        let big_minor = IoKey {
            minor: (1 << 20) - 1,
            major: 259,
            ..key
        };
        assert_eq!(IoKey::from(IoMapKey::from(&big_minor)), big_minor);
    }

    #[test]
    fn unavailable_counters_say_why() {
        let maps = CounterMaps::new(
            Err(CountersUnavailable::NoCgroupV2),
            Err(CountersUnavailable::MissingMap {
                map: IO_COUNTERS_MAP,
            }),
        );
        assert_eq!(
            maps.counters_unavailable(),
            Some(
                "network counters: no cgroup-v2 hierarchy is mounted (cgroup_skb programs attach \
                 to a v2 cgroup); block IO counters: map IO_COUNTERS is missing from the eBPF \
                 object"
            )
        );
        assert!(matches!(
            maps.net_unavailable(),
            Some(CountersUnavailable::NoCgroupV2)
        ));
        assert!(matches!(
            maps.net_snapshot(),
            Err(CounterError::Unavailable(reason))
                if matches!(*reason, CountersUnavailable::NoCgroupV2)
        ));
        let Err(e) = maps.io_snapshot() else {
            panic!("IO counters are unavailable")
        };
        assert_eq!(
            e.to_string(),
            "counters unavailable: map IO_COUNTERS is missing from the eBPF object"
        );
        assert!(matches!(
            maps.net_lookup(1),
            Err(CounterError::Unavailable(_))
        ));
        // Removing from unavailable maps is a no-op, not a panic.
        maps.remove_net(1);
        maps.remove_io(&IoKey::default());
    }

    #[test]
    fn a_missing_pin_names_its_path_and_errno() {
        let maps = CounterMaps::open_pinned(Path::new("/nonexistent/pins"));
        let reason = maps.net_unavailable().expect("no pin").to_string();
        assert!(
            reason.starts_with("/nonexistent/pins/net_counters: "),
            "{reason}"
        );
        // The errno follows aya's message (ENOENT, or EPERM where bpf(2) is refused).
        assert!(reason.contains("`BPF_OBJ_GET` failed: "), "{reason}");
    }
}
