//! Identity: which container a PID, a cgroup inode or a socket peer belongs to.
//!
//! With the kernel programs, the process index is fed by their events and seeded once by a
//! kernel task iterator, and the cgroup index by one walk of the cgroup mounts plus
//! mkdir/rmdir events. Before answering, a lookup applies every event already in the ring
//! buffer, so an answer is never older than the lookup: a fork or exit that completed
//! before the request is reflected in it. Without them (`--no-ebpf`, or a kernel that
//! cannot load them), answers come from procfs and `source` says so.
pub mod cgroups;
pub mod container_id;
pub mod processes;
pub mod procfs;

use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use collector_common::{
    counters,
    process::{FLAG_PROCFS, FLAG_SEEDED, ProcessInfo},
};

pub use self::{
    cgroups::{CgroupIndex, CgroupKey, CgroupNode, ContainerRef},
    container_id::Runtime,
    processes::{ProcessEntry, ProcessIndex},
};
use crate::fast_map::FastMap;
use crate::{
    cgroupfs::{CgroupLayout, mounts::ProcCgroupLine},
    ebpf::{Event, KernelTracker, ProcessChange},
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

/// A container with its cgroups and live processes.
#[derive(Clone, Debug)]
pub struct ContainerView {
    /// The container.
    pub container: Arc<ContainerRef>,
    /// Its top cgroup directories, one per hierarchy, v2 first.
    pub cgroups: Vec<CgroupRef>,
    /// Live processes in it or in its nested cgroups, ascending.
    pub pids: Vec<u32>,
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

struct Upkeep {
    events_lost_seen: u64,
    last_scan: Instant,
}

/// The identity service.
pub struct Identity {
    layout: CgroupLayout,
    tracked_v1: Option<u32>,
    options: IdentityOptions,
    cgroups: CgroupIndex,
    processes: ProcessIndex,
    kernel: Option<KernelTracker>,
    upkeep: Mutex<Upkeep>,
    /// Serializes walks triggered by inode misses.
    miss_walk: Mutex<()>,
    stats: IdentityStats,
}

/// One cgroup of a container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CgroupMember {
    /// `(hierarchy id, cgroup id)`.
    pub key: CgroupKey,
    /// Removed, and kept for the grace period.
    pub removed: bool,
}

/// A container as the indexes know it.
#[derive(Clone, Debug)]
pub struct ContainerEntry {
    /// The container.
    pub container: Arc<ContainerRef>,
    /// Its live top directories, one per hierarchy it has one in (v2 first).
    pub roots: Vec<CgroupRef>,
    /// Every cgroup of it in every hierarchy: the roots, nested ones, and removed ones still
    /// in their grace period.
    pub members: Vec<CgroupMember>,
    /// Its live processes, nested cgroups included, when the kernel index is on (`None`
    /// without it: procfs would need a read of every process).
    pub pids: Option<Vec<u32>>,
}

impl ContainerEntry {
    fn new(container: &Arc<ContainerRef>) -> Self {
        Self {
            container: Arc::clone(container),
            roots: Vec::new(),
            members: Vec::new(),
            pids: None,
        }
    }

    /// Records one cgroup of the container: a member, and a root when it is the container's
    /// live top directory.
    fn add_cgroup(&mut self, key: CgroupKey, node: &CgroupNode) {
        let removed = node.removed_at.is_some();
        self.members.push(CgroupMember { key, removed });
        if node.is_container_root && !removed {
            self.roots.push(CgroupRef {
                hierarchy_id: key.0,
                id: key.1,
                path: Arc::clone(&node.path),
            });
        }
    }

    /// v2 root first, members and PIDs in order.
    fn sort(&mut self) {
        self.roots
            .sort_by_key(|c| (c.hierarchy_id != 0, c.hierarchy_id));
        self.members.sort_unstable_by_key(|m| m.key);
        if let Some(pids) = &mut self.pids {
            pids.sort_unstable();
        }
    }

    /// True when every cgroup of the container is gone (kept for the grace period).
    pub fn is_removed(&self) -> bool {
        self.roots.is_empty()
    }
}

/// Every known container, at one instant.
#[derive(Clone, Debug)]
pub struct ContainerSnapshot {
    /// When it was taken.
    pub taken: Instant,
    /// By container id.
    pub containers: FastMap<String, ContainerEntry>,
}

/// Without kernel events, the cgroup index is refreshed by a walk this often.
const RESCAN_INTERVAL: Duration = Duration::from_secs(2);
/// Walks triggered by lookups of unknown inodes (without kernel events) are at least this
/// far apart.
const MISS_WALK_INTERVAL: Duration = Duration::from_millis(50);

impl Identity {
    /// Builds the indexes: one walk of the cgroup mounts and, with the kernel programs, one
    /// run of the task iterator; then applies the events queued meanwhile.
    pub fn start(
        layout: CgroupLayout,
        kernel: Option<KernelTracker>,
        options: IdentityOptions,
    ) -> Self {
        let tracked_v1 = layout.tracked_v1().map(|h| h.id);
        let now = Instant::now();
        let identity = Self {
            layout,
            tracked_v1,
            options,
            cgroups: CgroupIndex::default(),
            processes: ProcessIndex::default(),
            kernel,
            upkeep: Mutex::new(Upkeep {
                events_lost_seen: 0,
                last_scan: now,
            }),
            miss_walk: Mutex::new(()),
            stats: IdentityStats::default(),
        };
        identity.rescan_cgroups(now);
        if identity.kernel.is_some() {
            identity.reseed(now);
        }
        identity
    }

    /// The kernel programs' handles, when loaded.
    pub fn kernel(&self) -> Option<&KernelTracker> {
        self.kernel.as_ref()
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

    /// Applies every pending kernel event. Cheap when none is pending.
    pub fn sync(&self) {
        let Some(kernel) = &self.kernel else { return };
        let now = Instant::now();
        let n = kernel.drain(|event| self.apply(event, now));
        if n > 0 {
            self.stats
                .events_applied
                .fetch_add(n as u64, Ordering::Relaxed);
        }
    }

    fn apply(&self, event: Event, now: Instant) {
        match event {
            Event::Process {
                change: ProcessChange::Exit,
                tgid,
                info,
                comm,
            } => {
                let seeded = self
                    .processes
                    .get(tgid)
                    .is_some_and(|e| e.exited_at.is_none() && e.info.flags & FLAG_SEEDED != 0);
                self.processes.exit(tgid, info, &comm, now);
                // The seeding iterator can write an entry just after the process's exit
                // tracepoint ran (which then found nothing to delete): remove it.
                if seeded
                    && info.flags & FLAG_SEEDED == 0
                    && let Some(kernel) = &self.kernel
                {
                    kernel.forget_process(tgid, info.start_boottime_ns);
                }
            }
            Event::Process {
                tgid, info, comm, ..
            } => self.processes.upsert_live(tgid, info, &comm, now),
            Event::CgroupCreated {
                hierarchy_id,
                cgroup_id,
                path,
            } => {
                if self.layout.by_id(hierarchy_id).is_some() {
                    self.cgroups.insert((hierarchy_id, cgroup_id), &path);
                }
            }
            Event::CgroupRemoved {
                hierarchy_id,
                cgroup_id,
            } => self.cgroups.mark_removed((hierarchy_id, cgroup_id), now),
        }
    }

    /// Which container `pid` is in.
    pub fn lookup_pid(&self, pid: u32) -> Result<ProcessAnswer, LookupError> {
        self.sync();
        self.lookup_pid_synced(pid)
    }

    /// Which containers `pids` are in, answers in order (events applied once for all).
    pub fn lookup_pids(&self, pids: &[u32]) -> Vec<Result<ProcessAnswer, LookupError>> {
        self.sync();
        pids.iter()
            .map(|&pid| self.lookup_pid_synced(pid))
            .collect()
    }

    fn lookup_pid_synced(&self, pid: u32) -> Result<ProcessAnswer, LookupError> {
        if self.kernel.is_some() {
            // An exited process's PID may since have been taken by a thread of another
            // process (PIDs and thread ids share one number space, and threads are not in
            // the index): when a task with another start time holds the PID, procfs answers
            // for it. (The same start time is the exited process itself, a zombie.)
            let entry = self.processes.get(pid).filter(|e| {
                e.exited_at.is_none()
                    || procfs::start_time_ns(&self.options.proc_root, pid).is_none_or(|start| {
                        processes::same_start(
                            &e.info,
                            &ProcessInfo {
                                start_boottime_ns: start,
                                flags: FLAG_PROCFS,
                                ..ProcessInfo::default()
                            },
                        )
                    })
            });
            if let Some(entry) = entry {
                if let Some(answer) = self.answer_from_entry(pid, &entry) {
                    return Ok(answer);
                }
                // A cgroup the index does not know (its mkdir event lost): walk again.
                self.rescan_cgroups_rate_limited();
                if let Some(answer) = self.answer_from_entry(pid, &entry) {
                    return Ok(answer);
                }
            }
            // Not a process the kernel told us about: a thread id, or untracked.
            self.stats.procfs_fallbacks.fetch_add(1, Ordering::Relaxed);
        }
        self.lookup_procfs(pid)
    }

    fn answer_from_entry(&self, pid: u32, entry: &ProcessEntry) -> Option<ProcessAnswer> {
        let (container, cgroup) = self.resolve_kernel_cgroups(&entry.info)?;
        Some(ProcessAnswer {
            pid,
            container,
            cgroup,
            exited: entry.exited_at.is_some(),
            source: Source::Ebpf,
            start_boottime_ns: entry.info.start_boottime_ns,
            comm: Arc::clone(&entry.comm),
        })
    }

    /// The container of a process from its kernel cgroup ids: its v2 cgroup's, else its
    /// tracked v1 cgroup's (runtimes on v1-only hosts place containers in v1 only).
    /// `None` when a cgroup id is not in the index, so no answer can be trusted yet.
    fn resolve_kernel_cgroups(
        &self,
        info: &ProcessInfo,
    ) -> Option<(Option<Arc<ContainerRef>>, Option<CgroupRef>)> {
        let mut candidates: Vec<CgroupKey> = Vec::with_capacity(2);
        if self.layout.v2().is_some() {
            candidates.push((0, info.cgroup_v2_id));
        }
        if let Some(h) = self.tracked_v1
            && info.cgroup_v1_id != 0
        {
            candidates.push((h, info.cgroup_v1_id));
        }
        let mut first: Option<CgroupRef> = None;
        for key in candidates {
            let node = self.cgroups.get(key)?;
            let cgroup = CgroupRef {
                hierarchy_id: key.0,
                id: key.1,
                path: Arc::clone(&node.path),
            };
            if let Some(container) = node.container {
                return Some((Some(container), Some(cgroup)));
            }
            first.get_or_insert(cgroup);
        }
        Some((None, first))
    }

    fn lookup_procfs(&self, pid: u32) -> Result<ProcessAnswer, LookupError> {
        let process = procfs::read_process(&self.options.proc_root, pid).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                LookupError::PidNotFound {
                    pid,
                    grace_secs: self.options.exited_grace.as_secs(),
                }
            } else {
                LookupError::Procfs { pid, source }
            }
        })?;
        let (container, cgroup) = self.resolve_paths(&process.cgroups);
        Ok(ProcessAnswer {
            pid,
            container,
            cgroup,
            exited: false,
            source: Source::Procfs,
            start_boottime_ns: process.start_boottime_ns,
            comm: Arc::from(process.comm),
        })
    }

    /// The container from `/proc/<pid>/cgroup` lines, by the same rule as from kernel
    /// cgroup ids: the v2 cgroup's, else the tracked v1 hierarchy's.
    fn resolve_paths(
        &self,
        lines: &[ProcCgroupLine],
    ) -> (Option<Arc<ContainerRef>>, Option<CgroupRef>) {
        let v2 = self.layout.v2().map(|h| h.id);
        let ordered = [v2, self.tracked_v1]
            .into_iter()
            .flatten()
            .filter_map(|h| lines.iter().find(|l| l.hierarchy_id == h));
        let mut first: Option<CgroupRef> = None;
        for line in ordered {
            let id = self
                .layout
                .cgroup_dir(line.hierarchy_id, &line.path)
                .and_then(|dir| cgroups::inode_of(&dir));
            let Some(id) = id else { continue };
            let key = (line.hierarchy_id, id);
            let node = self.cgroups.get_or_insert(key, &line.path);
            let cgroup = CgroupRef {
                hierarchy_id: line.hierarchy_id,
                id,
                path: Arc::clone(&node.path),
            };
            if let Some(container) = node.container {
                return (Some(container), Some(cgroup));
            }
            first.get_or_insert(cgroup);
        }
        (None, first)
    }

    /// Which container owns the cgroup directory with this inode, in any hierarchy (v2
    /// first, since v2 ids are what clients normally send).
    ///
    /// With the kernel programs, mkdir events keep the index current: a miss is an answer.
    /// Without them, a miss walks the cgroup mounts (at most every `MISS_WALK_INTERVAL`,
    /// waiting for the next walk when one just ran), so a cgroup that existed when the
    /// request came is always found. This can block for a walk: call it off async workers.
    pub fn lookup_inode(&self, inode: u64) -> Result<CgroupAnswer, LookupError> {
        self.sync();
        if let Some(answer) = self.find_inode(inode) {
            return Ok(answer);
        }
        if self.kernel.is_none() {
            self.rescan_after_miss(Instant::now());
            if let Some(answer) = self.find_inode(inode) {
                return Ok(answer);
            }
        }
        Err(LookupError::InodeNotFound { inode })
    }

    /// Walks the cgroup mounts unless a walk started after `missed_at`; walks at most every
    /// `MISS_WALK_INTERVAL` (a client asking for unknown inodes in a loop costs at most that).
    fn rescan_after_miss(&self, missed_at: Instant) {
        let _walking = self
            .miss_walk
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let last = self
            .upkeep
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .last_scan;
        if last > missed_at {
            return;
        }
        if let Some(wait) = MISS_WALK_INTERVAL.checked_sub(last.elapsed()) {
            std::thread::sleep(wait);
        }
        self.rescan_cgroups(Instant::now());
    }

    fn find_inode(&self, inode: u64) -> Option<CgroupAnswer> {
        let mut hierarchies: Vec<u32> = self.layout.hierarchies.iter().map(|h| h.id).collect();
        hierarchies.sort_by_key(|&h| (h != 0, Some(h) != self.tracked_v1, h));
        hierarchies.into_iter().find_map(|h| {
            let node = self.cgroups.get((h, inode))?;
            Some(CgroupAnswer {
                cgroup: CgroupRef {
                    hierarchy_id: h,
                    id: inode,
                    path: node.path,
                },
                container: node.container,
                removed: node.removed_at.is_some(),
            })
        })
    }

    /// Every container with a live cgroup, with its live processes.
    pub fn containers(&self) -> Vec<ContainerView> {
        self.sync();
        let mut views: BTreeMap<String, ContainerView> = BTreeMap::new();
        self.cgroups.for_each_live(|key, node| {
            let Some(container) = &node.container else {
                return;
            };
            let view = views
                .entry(container.id.clone())
                .or_insert_with(|| ContainerView {
                    container: Arc::clone(container),
                    cgroups: Vec::new(),
                    pids: Vec::new(),
                });
            if node.is_container_root {
                view.cgroups.push(CgroupRef {
                    hierarchy_id: key.0,
                    id: key.1,
                    path: Arc::clone(&node.path),
                });
            }
        });
        let mut add_pid = |pid: u32, container: Option<Arc<ContainerRef>>| {
            if let Some(view) = container.and_then(|c| views.get_mut(&c.id)) {
                view.pids.push(pid);
            }
        };
        if self.kernel.is_some() {
            self.processes.for_each_live(|pid, entry| {
                if let Some((container, _)) = self.resolve_kernel_cgroups(&entry.info) {
                    add_pid(pid, container);
                }
            });
        } else if let Ok(pids) = procfs::list_pids(&self.options.proc_root) {
            for pid in pids {
                if let Ok(process) = procfs::read_process(&self.options.proc_root, pid) {
                    add_pid(pid, self.resolve_paths(&process.cgroups).0);
                }
            }
        }
        let mut out: Vec<ContainerView> = views.into_values().collect();
        for view in &mut out {
            view.pids.sort_unstable();
            view.cgroups
                .sort_by_key(|c| (c.hierarchy_id != 0, c.hierarchy_id));
        }
        out
    }

    /// Every container the index knows, in one pass over the cgroup index (and, with the
    /// kernel programs, the process index): what the stats collectors need to find a
    /// container's directories, all its cgroups (nested and recently removed ones included,
    /// whose counters add up into the container) and its processes.
    pub fn container_snapshot(&self) -> ContainerSnapshot {
        self.sync();
        let mut containers: FastMap<String, ContainerEntry> = FastMap::default();
        self.cgroups.for_each(|key, node| {
            if let Some(container) = &node.container {
                // Looked up before inserting: the id is copied once per container, not once
                // per cgroup of it.
                if let Some(entry) = containers.get_mut(&container.id) {
                    entry.add_cgroup(key, node);
                } else {
                    let mut entry = ContainerEntry::new(container);
                    entry.add_cgroup(key, node);
                    containers.insert(container.id.clone(), entry);
                }
            }
        });
        if self.kernel.is_some() {
            for entry in containers.values_mut() {
                entry.pids = Some(Vec::new());
            }
            self.processes.for_each_live(|pid, process| {
                if let Some((Some(container), _)) = self.resolve_kernel_cgroups(&process.info)
                    && let Some(Some(pids)) = containers.get_mut(&container.id).map(|e| &mut e.pids)
                {
                    pids.push(pid);
                }
            });
        }
        for entry in containers.values_mut() {
            entry.sort();
        }
        ContainerSnapshot {
            taken: Instant::now(),
            containers,
        }
    }

    /// One container as `container_snapshot` would show it, from its own cgroups (and one
    /// pass over the processes with the kernel programs): no walk of every cgroup.
    pub fn container_entry(&self, container_id: &str) -> Option<ContainerEntry> {
        self.sync();
        let mut entry: Option<ContainerEntry> = None;
        for key in self.cgroups.keys_of(container_id) {
            let Some(node) = self.cgroups.get(key) else {
                continue;
            };
            if let Some(container) = node.container.as_ref().filter(|c| c.id == container_id) {
                entry
                    .get_or_insert_with(|| ContainerEntry::new(container))
                    .add_cgroup(key, &node);
            }
        }
        let mut entry = entry?;
        if self.kernel.is_some() {
            let mut pids = Vec::new();
            self.processes.for_each_live(|pid, process| {
                if let Some((Some(container), _)) = self.resolve_kernel_cgroups(&process.info)
                    && container.id == container_id
                {
                    pids.push(pid);
                }
            });
            entry.pids = Some(pids);
        }
        entry.sort();
        Some(entry)
    }

    /// The kernel index's answer for `pid`, without the procfs fallback: `Ok(None)` when the
    /// kernel programs do not know it (a thread id, or the programs are off).
    pub fn lookup_pid_kernel(&self, pid: u32) -> Option<ProcessAnswer> {
        self.kernel.as_ref()?;
        self.sync();
        let entry = self.processes.get(pid)?;
        if entry.exited_at.is_some()
            && procfs::start_time_ns(&self.options.proc_root, pid).is_some_and(|start| {
                !processes::same_start(
                    &entry.info,
                    &ProcessInfo {
                        start_boottime_ns: start,
                        flags: FLAG_PROCFS,
                        ..ProcessInfo::default()
                    },
                )
            })
        {
            // The PID now names another task: the kernel index's entry is not its answer.
            return None;
        }
        self.answer_from_entry(pid, &entry)
    }

    /// After a container was not found: without kernel events the cgroup index is only as
    /// current as its last walk, so walk again (rate-limited as for inode misses). Returns
    /// true when a walk may have found something new. With the kernel programs the index is
    /// current, and this does nothing.
    pub fn refresh_after_miss(&self) -> bool {
        if self.kernel.is_some() {
            return false;
        }
        self.rescan_after_miss(Instant::now());
        true
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

    /// The procfs answer for `pid`, without the kernel index.
    pub fn lookup_pid_procfs(&self, pid: u32) -> Result<ProcessAnswer, LookupError> {
        self.lookup_procfs(pid)
    }

    /// Periodic upkeep (the daemon calls it every second): applies events, forgets what
    /// left the grace period, and repairs after lost events (re-seed from the kernel and
    /// re-walk cgroups). Without kernel programs, re-walks the cgroup mounts.
    pub fn upkeep(&self) {
        self.sync();
        let now = Instant::now();
        self.processes.gc(now, self.options.exited_grace);
        self.cgroups.gc(now, self.options.exited_grace);
        match &self.kernel {
            Some(kernel) => {
                let lost = kernel.counters()[counters::EVENTS_LOST as usize];
                let mut upkeep = self.upkeep.lock().unwrap_or_else(PoisonError::into_inner);
                if lost > upkeep.events_lost_seen {
                    tracing::warn!(
                        lost = lost - upkeep.events_lost_seen,
                        "kernel events were lost; repairing from a kernel re-seed and a cgroup walk"
                    );
                    upkeep.events_lost_seen = lost;
                    drop(upkeep);
                    self.stats.repairs.fetch_add(1, Ordering::Relaxed);
                    self.rescan_cgroups(now);
                    self.reseed(now);
                }
            }
            None => self.rescan_cgroups_rate_limited(),
        }
    }

    /// Runs the kernel task iterator and brings the process index in line with it.
    fn reseed(&self, now: Instant) {
        let Some(kernel) = &self.kernel else { return };
        // Events queued before the iterator ran are older than what it reports.
        self.sync();
        let seeds = kernel.seed().unwrap_or_else(|e| {
            tracing::error!(error = %e, "seeding processes from the kernel failed; using procfs");
            Vec::new()
        });
        let mut alive: HashMap<u32, ProcessInfo> = HashMap::with_capacity(seeds.len());
        for (tgid, info, comm) in &seeds {
            self.processes.upsert_live(*tgid, *info, comm, now);
            alive.insert(*tgid, *info);
        }
        let from_procfs = self.fill_gaps_from_procfs(&mut alive, now);
        let gone = self.processes.reconcile(&alive, now);
        tracing::info!(
            from_kernel = seeds.len(),
            from_procfs,
            gone,
            "process index seeded"
        );
        self.sync();
    }

    /// Adds the live processes the task iterator did not report (it skips some, PID 1 on
    /// this 6.18 kernel among them), from procfs, to the index and the kernel map.
    fn fill_gaps_from_procfs(&self, alive: &mut HashMap<u32, ProcessInfo>, now: Instant) -> usize {
        let Some(kernel) = &self.kernel else { return 0 };
        let Ok(pids) = procfs::list_pids(&self.options.proc_root) else {
            return 0;
        };
        let mut added = 0;
        for pid in pids {
            if alive.contains_key(&pid) {
                continue;
            }
            let Ok(process) = procfs::read_process(&self.options.proc_root, pid) else {
                continue;
            };
            let id_in = |hierarchy: Option<u32>| {
                let h = hierarchy?;
                let line = process.cgroups.iter().find(|l| l.hierarchy_id == h)?;
                cgroups::inode_of(&self.layout.cgroup_dir(h, &line.path)?)
            };
            let info = ProcessInfo {
                start_boottime_ns: process.start_boottime_ns,
                cgroup_v2_id: id_in(self.layout.v2().map(|h| h.id)).unwrap_or(0),
                cgroup_v1_id: id_in(self.tracked_v1).unwrap_or(0),
                ppid: process.ppid,
                flags: FLAG_SEEDED | FLAG_PROCFS,
            };
            tracing::debug!(pid, comm = %process.comm, "process not seen by the task iterator: from procfs");
            kernel.insert_if_absent(pid, &info);
            self.processes.upsert_live(pid, info, &process.comm, now);
            alive.insert(pid, info);
            added += 1;
        }
        added
    }

    fn rescan_cgroups(&self, now: Instant) {
        // Record the walk's start: what exists from here on is seen by this walk.
        let summary = self.cgroups.scan(&self.layout, now);
        self.stats.cgroup_scans.fetch_add(1, Ordering::Relaxed);
        self.upkeep
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .last_scan = now;
        tracing::debug!(?summary, "cgroup mounts walked");
    }

    fn rescan_cgroups_rate_limited(&self) {
        let now = Instant::now();
        let due = {
            let upkeep = self.upkeep.lock().unwrap_or_else(PoisonError::into_inner);
            now.duration_since(upkeep.last_scan) >= RESCAN_INTERVAL
        };
        if due {
            self.rescan_cgroups(now);
        }
    }
}
