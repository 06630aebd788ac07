//! Answers about one PID or one cgroup inode: from the kernel index (a process's kernel
//! cgroup ids resolved through the cgroup index), else from procfs (`/proc/<pid>/cgroup`
//! lines resolved the same way).
//!
//! Kernel fact: PIDs and thread ids share one number space, and threads are not in the
//! process index. So a PID whose process exited can since name a thread of another process
//! (or a new process whose fork event is not applied yet): when `/proc/<pid>/stat` shows a
//! task with another start time, the exited entry is not the answer.
use std::{
    sync::{Arc, atomic::Ordering},
    time::Instant,
};

use collector_common::process::{FLAG_PROCFS, ProcessInfo};

use super::{
    CgroupAnswer, CgroupKey, CgroupRef, ContainerRef, Identity, LookupError, ProcessAnswer,
    ProcessEntry, Source, cgroups, processes, procfs,
};
use crate::cgroupfs::mounts::ProcCgroupLine;

/// A container (if any) and the cgroup it was found from.
type Resolved = (Option<Arc<ContainerRef>>, Option<CgroupRef>);

impl Identity {
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

    /// The kernel index's answers for `pids`, when every one is a live process whose cgroups
    /// the index knows: then no file is read and nothing waits, so an async worker may ask.
    /// `None` when any of them needs more (procfs, a cgroup walk) or the kernel programs are
    /// off; [`Identity::lookup_pids`] then gives the same answers for those it has here.
    pub fn lookup_pids_in_memory(&self, pids: &[u32]) -> Option<Vec<ProcessAnswer>> {
        self.kernel.as_ref()?;
        self.sync();
        pids.iter()
            .map(|&pid| {
                let entry = self.processes.get(pid).filter(|e| e.exited_at.is_none())?;
                self.answer_from_entry(pid, &entry)
            })
            .collect()
    }

    fn lookup_pid_synced(&self, pid: u32) -> Result<ProcessAnswer, LookupError> {
        if self.kernel.is_some() {
            let entry = self
                .processes
                .get(pid)
                .filter(|e| !self.taken_by_another_task(pid, e));
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

    /// True when `entry` exited and procfs shows a task with another start time under
    /// `pid`: the PID now names that task. (A task with the same start time is the exited
    /// process itself, a zombie; no task at all leaves the exited entry as the answer.)
    fn taken_by_another_task(&self, pid: u32, entry: &ProcessEntry) -> bool {
        entry.exited_at.is_some()
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
    pub(super) fn resolve_kernel_cgroups(&self, info: &ProcessInfo) -> Option<Resolved> {
        let v2 = self.layout.v2().map(|_| (0, info.cgroup_v2_id));
        let v1 = self
            .tracked_v1
            .filter(|_| info.cgroup_v1_id != 0)
            .map(|h| (h, info.cgroup_v1_id));
        let mut first: Option<CgroupRef> = None;
        for key in [v2, v1].into_iter().flatten() {
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
    pub(super) fn resolve_paths(&self, lines: &[ProcCgroupLine]) -> Resolved {
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
            let key: CgroupKey = (line.hierarchy_id, id);
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

    fn find_inode(&self, inode: u64) -> Option<CgroupAnswer> {
        self.inode_order.iter().find_map(|&h| {
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
}
