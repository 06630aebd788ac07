//! Keeping the indexes current: applying the kernel's lifecycle events (`sync`), periodic
//! upkeep (forgetting what left the grace period, repairs after lost events), seeding the
//! process index from the kernel's task iterator and procfs, and walks of the cgroup mounts.
use std::{
    collections::HashMap,
    sync::{PoisonError, atomic::Ordering},
    time::{Duration, Instant},
};

use collector_common::{
    counters,
    process::{FLAG_PROCFS, FLAG_SEEDED, ProcessInfo},
};

use super::{Identity, cgroups, procfs};
use crate::ebpf::{Event, KernelMaps, ProcessChange};

/// Without kernel events, the cgroup index is refreshed by a walk this often.
const RESCAN_INTERVAL: Duration = Duration::from_secs(2);
/// Walks triggered by lookups of unknown inodes (without kernel events) are at least this
/// far apart.
const MISS_WALK_INTERVAL: Duration = Duration::from_millis(50);

/// What upkeep remembers between runs.
pub(super) struct Upkeep {
    /// The kernel's lost-events counter at the last repair.
    events_lost_seen: u64,
    /// When the last walk of the cgroup mounts started.
    last_scan: Instant,
}

impl Upkeep {
    /// `events_lost_seen`: the kernel's lost-events counter before the first seeding (not 0:
    /// the counter lives in a pinned map and carries the losses of earlier runs, which that
    /// seeding repairs).
    pub(super) fn new(now: Instant, events_lost_seen: u64) -> Self {
        Self {
            events_lost_seen,
            last_scan: now,
        }
    }
}

impl Identity {
    /// Applies every pending kernel event. Cheap when none is pending.
    pub fn sync(&self) {
        let Some(kernel) = &self.kernel else { return };
        let now = Instant::now();
        let n = kernel.drain(&mut |event| self.apply(event, now));
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
                // The task iterator can write a process's map entry while its exit
                // tracepoint runs (which then finds nothing to delete), so the exit event
                // follows the seeded entry: remove that entry from the kernel map.
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

    /// Periodic upkeep (the daemon calls it every second): applies events, forgets what
    /// left the grace period, and repairs after lost events (re-seed from the kernel and
    /// re-walk cgroups). Without kernel programs, re-walks the cgroup mounts.
    pub fn upkeep(&self) {
        self.sync();
        let now = Instant::now();
        self.processes.gc(now, self.options.exited_grace);
        self.cgroups.gc(now, self.options.exited_grace);
        match &self.kernel {
            Some(kernel) => self.repair_if_events_lost(kernel.as_ref(), now),
            None => self.rescan_cgroups_rate_limited(),
        }
    }

    /// After the kernel's lost-events counter grew, the indexes may miss anything: walk the
    /// cgroup mounts and re-seed the processes.
    fn repair_if_events_lost(&self, kernel: &dyn KernelMaps, now: Instant) {
        let lost = kernel.counters()[counters::EVENTS_LOST as usize];
        let mut upkeep = self.upkeep.lock().unwrap_or_else(PoisonError::into_inner);
        if lost <= upkeep.events_lost_seen {
            return;
        }
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

    /// Runs the kernel task iterator and brings the process index in line with it.
    pub(super) fn reseed(&self, now: Instant) {
        let Some(kernel) = &self.kernel else { return };
        // Events queued before the iterator ran are older than what it reports.
        self.sync();
        let listed_from_ns = crate::clock::boottime_ns();
        let seeds = kernel.seed().unwrap_or_else(|e| {
            tracing::error!(error = %e, "seeding processes from the kernel failed; using procfs");
            Vec::new()
        });
        let mut alive: HashMap<u32, ProcessInfo> = HashMap::with_capacity(seeds.len());
        for (tgid, info, comm) in &seeds {
            self.processes.upsert_live(*tgid, *info, comm, now);
            alive.insert(*tgid, *info);
        }
        let from_procfs = self.fill_gaps_from_procfs(kernel.as_ref(), &mut alive, now);
        // procfs start times are whole clock ticks (truncated): compare at that resolution.
        let tick = crate::clock::ns_per_tick(crate::clock::user_hz());
        let still_alive = |tgid: u32, info: &ProcessInfo| {
            let start = info.start_boottime_ns / tick * tick;
            !procfs::exiting_or_gone(&self.options.proc_root, tgid, start)
        };
        let gone = self
            .processes
            .reconcile(&alive, listed_from_ns, still_alive, now);
        tracing::info!(
            from_kernel = seeds.len(),
            from_procfs,
            gone,
            "process index seeded"
        );
        self.sync();
    }

    /// Adds the live processes the task iterator did not report (it skips some, PID 1 on
    /// some 6.x kernels among them), from procfs, to the index and the kernel map.
    fn fill_gaps_from_procfs(
        &self,
        kernel: &dyn KernelMaps,
        alive: &mut HashMap<u32, ProcessInfo>,
        now: Instant,
    ) -> usize {
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
            // A process that exited after it was read had its exit tracepoint run with no
            // entry to remove, and the one just written would stay forever: read it again
            // after the insert (an exit that begins later removes the entry itself).
            if kernel.insert_if_absent(pid, &info)
                && procfs::exiting_or_gone(&self.options.proc_root, pid, info.start_boottime_ns)
            {
                kernel.forget_process(pid, info.start_boottime_ns);
                continue;
            }
            self.processes.upsert_live(pid, info, &process.comm, now);
            alive.insert(pid, info);
            added += 1;
        }
        added
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

    /// Walks the cgroup mounts unless a walk started after `missed_at`; walks at most every
    /// `MISS_WALK_INTERVAL` (a client asking for unknown inodes in a loop costs at most that).
    pub(super) fn rescan_after_miss(&self, missed_at: Instant) {
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

    pub(super) fn rescan_cgroups(&self, now: Instant) {
        // Record the walk's start: what exists from here on is seen by this walk.
        let summary = self.cgroups.scan(&self.layout, now);
        self.stats.cgroup_scans.fetch_add(1, Ordering::Relaxed);
        self.upkeep
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .last_scan = now;
        tracing::debug!(?summary, "cgroup mounts walked");
    }

    pub(super) fn rescan_cgroups_rate_limited(&self) {
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
