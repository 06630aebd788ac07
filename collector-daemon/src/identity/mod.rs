//! Identity: which container a PID, a cgroup inode or a socket peer belongs to.
//!
//! With the kernel programs, the process index is fed by their events and seeded once by a
//! kernel task iterator, and the cgroup index by one walk of the cgroup mounts plus
//! mkdir/rmdir events. Before answering, a lookup applies every event already in the ring
//! buffer, so an answer is never older than the lookup: a fork or exit that completed
//! before the request is reflected in it. Without them (`--no-ebpf`, or a kernel that
//! cannot load them), answers come from procfs and `source` says so.
//!
//! - `answer`: PID and inode lookups, from kernel cgroup ids or `/proc/<pid>/cgroup` lines;
//! - `containers`: every container with its cgroups and processes;
//! - `upkeep`: applying kernel events, repairs after lost events, walks of the cgroup
//!   mounts;
//! - `cgroups`, `processes`: the two indexes; `container_id`: container ids from cgroup
//!   paths; `procfs`: what is read from `/proc/<pid>`.
mod answer;
pub mod cgroups;
pub mod container_id;
mod containers;
pub mod processes;
pub mod procfs;
#[cfg(test)]
mod tests;
mod upkeep;

use std::{
    path::PathBuf,
    sync::{Arc, Mutex, atomic::AtomicU64},
    time::{Duration, Instant},
};

pub use self::{
    cgroups::{CgroupIndex, CgroupKey, CgroupNode, ContainerRef},
    container_id::Runtime,
    containers::{CgroupMember, ContainerEntry, ContainerSnapshot, ContainerView},
    processes::{ProcessEntry, ProcessIndex},
};
use crate::{
    cgroupfs::CgroupLayout,
    ebpf::{KernelMaps, KernelTracker},
};

/// Where an answer came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The kernel programs' index.
    Ebpf,
    /// A read of `/proc/<pid>/cgroup`.
    Procfs,
}

impl Source {
    /// The API's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Ebpf => "ebpf",
            Source::Procfs => "procfs",
        }
    }
}

/// A cgroup as an answer names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupRef {
    /// Hierarchy id (0 for v2).
    pub hierarchy_id: u32,
    /// Cgroup id (directory inode).
    pub id: u64,
    /// Path from the hierarchy's root.
    pub path: Arc<str>,
}

/// The answer about one PID.
#[derive(Clone, Debug)]
pub struct ProcessAnswer {
    /// The PID asked about.
    pub pid: u32,
    /// Its container, `None` when it is in none.
    pub container: Option<Arc<ContainerRef>>,
    /// The cgroup the answer was found from.
    pub cgroup: Option<CgroupRef>,
    /// True when the process has exited (within the grace period).
    pub exited: bool,
    /// Where the answer came from.
    pub source: Source,
    /// Start time, ns since boot (clock-tick resolution from procfs).
    pub start_boottime_ns: u64,
    /// Command name.
    pub comm: Arc<str>,
}

/// The answer about one cgroup inode.
#[derive(Clone, Debug)]
pub struct CgroupAnswer {
    /// The cgroup.
    pub cgroup: CgroupRef,
    /// Its container, `None` when it is in none.
    pub container: Option<Arc<ContainerRef>>,
    /// True when the directory was removed (within the grace period).
    pub removed: bool,
}

/// Why a lookup has no answer.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// No such process, now or within the grace period.
    #[error("pid {pid} not found: not running, and did not exit within the last {grace_secs} s")]
    PidNotFound {
        /// The PID.
        pid: u32,
        /// The grace period.
        grace_secs: u64,
    },
    /// procfs could not be read for another reason than the process being gone.
    #[error("pid {pid}: reading /proc failed: {source}")]
    Procfs {
        /// The PID.
        pid: u32,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// No cgroup directory has this inode, in any hierarchy.
    #[error("inode {inode} is not a cgroup directory known on this host (any hierarchy)")]
    InodeNotFound {
        /// The inode.
        inode: u64,
    },
}

/// Settings.
#[derive(Clone, Debug)]
pub struct IdentityOptions {
    /// procfs mount (normally `/proc`).
    pub proc_root: PathBuf,
    /// How long exited processes and removed cgroups stay resolvable.
    pub exited_grace: Duration,
}

/// Counters about the identity service itself, for `/metrics`.
#[derive(Debug, Default)]
pub struct IdentityStats {
    /// Kernel events applied.
    pub events_applied: AtomicU64,
    /// Repairs after lost events (re-seed and re-walk).
    pub repairs: AtomicU64,
    /// Walks of the cgroup mounts.
    pub cgroup_scans: AtomicU64,
    /// Lookups answered from procfs while the kernel programs run.
    pub procfs_fallbacks: AtomicU64,
}
/// The identity service.
pub struct Identity {
    layout: CgroupLayout,
    tracked_v1: Option<u32>,
    /// Hierarchy ids in the order an inode is looked up in: v2, the tracked v1, the others.
    inode_order: Vec<u32>,
    options: IdentityOptions,
    cgroups: CgroupIndex,
    processes: ProcessIndex,
    /// The kernel programs, `None` when answers come from procfs.
    kernel: Option<Arc<dyn KernelMaps>>,
    upkeep: Mutex<upkeep::Upkeep>,
    /// Serializes walks triggered by inode misses.
    miss_walk: Mutex<()>,
    stats: IdentityStats,
}

impl Identity {
    /// Builds the indexes: one walk of the cgroup mounts and, with the kernel programs, one
    /// run of the task iterator; then applies the events queued meanwhile.
    pub fn start(
        layout: CgroupLayout,
        kernel: Option<KernelTracker>,
        options: IdentityOptions,
    ) -> Self {
        Self::start_with(
            layout,
            kernel.map(|k| Arc::new(k) as Arc<dyn KernelMaps>),
            options,
        )
    }

    /// As `start`, over any implementation of the kernel side (a fake in tests).
    pub fn start_with(
        layout: CgroupLayout,
        kernel: Option<Arc<dyn KernelMaps>>,
        options: IdentityOptions,
    ) -> Self {
        let tracked_v1 = layout.tracked_v1().map(|h| h.id);
        let mut inode_order: Vec<u32> = layout.hierarchies.iter().map(|h| h.id).collect();
        inode_order.sort_by_key(|&h| (h != 0, Some(h) != tracked_v1, h));
        let now = Instant::now();
        let events_lost = kernel.as_ref().map_or(0, |k| {
            k.counters()[collector_common::counters::EVENTS_LOST as usize]
        });
        let identity = Self {
            layout,
            tracked_v1,
            inode_order,
            options,
            cgroups: CgroupIndex::default(),
            processes: ProcessIndex::default(),
            kernel,
            upkeep: Mutex::new(upkeep::Upkeep::new(now, events_lost)),
            miss_walk: Mutex::new(()),
            stats: IdentityStats::default(),
        };
        identity.rescan_cgroups(now);
        if identity.kernel.is_some() {
            identity.reseed(now);
        }
        identity
    }

    /// The loaded kernel programs' handles, when they are what the service runs on.
    pub fn kernel(&self) -> Option<&KernelTracker> {
        self.kernel.as_deref().and_then(KernelMaps::tracker)
    }

    /// The kernel side the service runs on, `None` without the kernel programs.
    pub fn kernel_maps(&self) -> Option<&dyn KernelMaps> {
        self.kernel.as_deref()
    }

    /// The cgroup layout in use.
    pub fn layout(&self) -> &CgroupLayout {
        &self.layout
    }

    /// The grace period for exited processes and removed cgroups.
    pub fn exited_grace(&self) -> Duration {
        self.options.exited_grace
    }

    /// Counters about the service.
    pub fn stats(&self) -> &IdentityStats {
        &self.stats
    }

    /// Live and exited processes in the index.
    pub fn process_counts(&self) -> (usize, usize) {
        (self.processes.live_count(), self.processes.exited_count())
    }

    /// Live cgroups in the index.
    pub fn cgroup_count(&self) -> usize {
        self.cgroups.len()
    }

    /// A number that grows whenever the indexes change (after applying the queued
    /// events): what is derived from them, like `container_snapshot`, need not be rebuilt
    /// while it stays the same.
    pub fn index_version(&self) -> u64 {
        self.sync();
        self.cgroups.changes() + self.processes.changes()
    }

    /// How many cgroups were seen removed since start (events or walks), after applying the
    /// queued events.
    pub fn cgroup_removals(&self) -> u64 {
        self.sync();
        self.cgroups.removals()
    }

    /// Whether the cgroup `key` is removed: `None` when the index does not know it (never
    /// seen, or removed longer ago than the grace period).
    pub fn cgroup_removed(&self, key: CgroupKey) -> Option<bool> {
        self.cgroups.get(key).map(|node| node.removed_at.is_some())
    }
}
