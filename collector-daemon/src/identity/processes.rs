//! Index of processes by PID, kept from kernel events: the live process of each PID and
//! the processes that exited under it within the grace period.
//!
//! Identity is `(pid, start time)`: a PID reused by a new process gets a new live entry,
//! and the old one stays findable only as exited, so a lookup never answers with the old
//! process's cgroups for the new one. Start times come from the kernel
//! (`task_struct.start_boottime`, ns), so equal means the same process.
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use collector_common::process::{FLAG_PROCFS, ProcessInfo};
use dashmap::DashMap;

use crate::clock;

/// True when `a` and `b` are the same process's start. Kernel start times are exact; a
/// start time from procfs (`FLAG_PROCFS`) is known to the clock tick, and the kernel
/// truncates when converting, so compare ticks then.
pub fn same_start(a: &ProcessInfo, b: &ProcessInfo) -> bool {
    if (a.flags | b.flags) & FLAG_PROCFS != 0 {
        let ns_per_tick = clock::ns_per_tick(clock::user_hz());
        a.start_boottime_ns / ns_per_tick == b.start_boottime_ns / ns_per_tick
    } else {
        a.start_boottime_ns == b.start_boottime_ns
    }
}

/// What is known about one process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessEntry {
    /// The kernel's view: start time, cgroups, parent.
    pub info: ProcessInfo,
    /// Command name.
    pub comm: Arc<str>,
    /// When the daemon learned that its last thread exited.
    pub exited_at: Option<Instant>,
}

#[derive(Default)]
struct Slot {
    live: Option<ProcessEntry>,
    /// Exited processes of this PID, oldest first (PID reuse within the grace period is
    /// rare, so this stays tiny).
    exited: Vec<ProcessEntry>,
}

impl Slot {
    /// Records an exited process of this PID, in start order: a PID's processes follow one
    /// another (a PID is free again only once its process was reaped), so the newest start
    /// is the last process to have had it.
    fn push_exited(&mut self, entry: ProcessEntry) {
        let at = self
            .exited
            .partition_point(|e| e.info.start_boottime_ns <= entry.info.start_boottime_ns);
        self.exited.insert(at, entry);
    }
}

/// The index.
#[derive(Default)]
pub struct ProcessIndex {
    slots: DashMap<u32, Slot>,
    /// Changes of the live set (a process recorded, changed, or gone): lets what is derived
    /// from it be rebuilt only when it changed.
    changes: std::sync::atomic::AtomicU64,
}

impl ProcessIndex {
    /// A process exists with this state (fork, exec, attach, or a seed).
    pub fn upsert_live(&self, tgid: u32, info: ProcessInfo, comm: &str, now: Instant) {
        self.changed();
        let mut slot = self.slots.entry(tgid).or_default();
        if slot.exited.iter().any(|e| same_start(&e.info, &info)) {
            // Its exit was already applied (a seed record read after the exit event).
            return;
        }
        match &mut slot.live {
            Some(live) if same_start(&live.info, &info) => {
                // Keep the exact start time when the update only knows it to the tick.
                let start = if info.flags & FLAG_PROCFS != 0 {
                    live.info.start_boottime_ns
                } else {
                    info.start_boottime_ns
                };
                live.info = ProcessInfo {
                    start_boottime_ns: start,
                    ..info
                };
                if &*live.comm != comm {
                    live.comm = Arc::from(comm);
                }
            }
            Some(live) if info.start_boottime_ns < live.info.start_boottime_ns => {
                // An older process of this PID: a task iterator record listed before it
                // exited, applied after the fork event of the process that has the PID now
                // (its exit event lost). It is gone, since the PID was reused.
                slot.push_exited(ProcessEntry {
                    info,
                    comm: Arc::from(comm),
                    exited_at: Some(now),
                });
            }
            other => {
                // A newer live process under this PID means we missed the old one's exit
                // (events lost): it is gone, since the PID was reused.
                let stale = other.take();
                if let Some(mut stale) = stale {
                    tracing::debug!(
                        pid = tgid,
                        comm = %stale.comm,
                        start_ns = stale.info.start_boottime_ns,
                        new_start_ns = info.start_boottime_ns,
                        "a newer process has the PID: the exit of the one before was lost"
                    );
                    stale.exited_at = Some(now);
                    slot.push_exited(stale);
                }
                slot.live = Some(ProcessEntry {
                    info,
                    comm: Arc::from(comm),
                    exited_at: None,
                });
            }
        }
    }

    /// The process `(tgid, info.start_boottime_ns)` exited; `info` is its final state.
    pub fn exit(&self, tgid: u32, info: ProcessInfo, comm: &str, now: Instant) {
        self.changed();
        let mut slot = self.slots.entry(tgid).or_default();
        if slot
            .live
            .as_ref()
            .is_some_and(|l| same_start(&l.info, &info))
        {
            slot.live = None;
        }
        if !slot.exited.iter().any(|e| same_start(&e.info, &info)) {
            slot.push_exited(ProcessEntry {
                info,
                comm: Arc::from(comm),
                exited_at: Some(now),
            });
        }
    }

    /// The live process of `pid`, else the last one that exited within the grace period.
    pub fn get(&self, pid: u32) -> Option<ProcessEntry> {
        let slot = self.slots.get(&pid)?;
        slot.live.clone().or_else(|| slot.exited.last().cloned())
    }

    /// Calls `f` with every live process.
    pub fn for_each_live(&self, mut f: impl FnMut(u32, &ProcessEntry)) {
        for slot in &self.slots {
            if let Some(live) = &slot.live {
                f(*slot.key(), live);
            }
        }
    }

    /// Live processes.
    pub fn live_count(&self) -> usize {
        self.slots.iter().filter(|s| s.live.is_some()).count()
    }

    /// Exited processes still kept.
    pub fn exited_count(&self) -> usize {
        self.slots.iter().map(|s| s.exited.len()).sum()
    }

    /// Marks exited every live process not in `alive` (a complete list of the processes
    /// live when it was taken, which began at boot time `listed_from_ns`): their exits were
    /// lost. A process that started at or after `listed_from_ns` may be missing from the
    /// list while its fork event (applied by a concurrent drain) is newer than it: such a
    /// one is marked exited only when `still_alive` says it is gone. Returns how many.
    pub fn reconcile(
        &self,
        alive: &std::collections::HashMap<u32, ProcessInfo>,
        listed_from_ns: u64,
        still_alive: impl Fn(u32, &ProcessInfo) -> bool,
        now: Instant,
    ) -> usize {
        let mut gone = 0;
        for mut slot in self.slots.iter_mut() {
            let tgid = *slot.key();
            let lost = slot.live.as_ref().is_some_and(|l| {
                !alive
                    .get(&tgid)
                    .is_some_and(|info| same_start(&l.info, info))
                    && (l.info.start_boottime_ns < listed_from_ns || !still_alive(tgid, &l.info))
            });
            if lost && let Some(mut entry) = slot.live.take() {
                tracing::debug!(
                    pid = tgid,
                    comm = %entry.comm,
                    start_ns = entry.info.start_boottime_ns,
                    listed_start_ns = alive.get(&tgid).map(|i| i.start_boottime_ns),
                    "not in the kernel's list: its exit was lost"
                );
                entry.exited_at = Some(now);
                slot.push_exited(entry);
                gone += 1;
            }
        }
        if gone > 0 {
            self.changed();
        }
        gone
    }

    /// Grows whenever the live set may have changed.
    pub fn changes(&self) -> u64 {
        self.changes.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn changed(&self) {
        self.changes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Forgets processes that exited more than `grace` ago.
    pub fn gc(&self, now: Instant, grace: Duration) {
        self.slots.retain(|_, slot| {
            slot.exited
                .retain(|e| e.exited_at.is_none_or(|at| now.duration_since(at) <= grace));
            slot.live.is_some() || !slot.exited.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn info(start: u64, cgroup: u64) -> ProcessInfo {
        ProcessInfo {
            start_boottime_ns: start,
            cgroup_v2_id: cgroup,
            ..ProcessInfo::default()
        }
    }

    #[test]
    fn exited_process_is_found_until_the_grace_period_ends() {
        let index = ProcessIndex::default();
        let t0 = Instant::now();
        index.upsert_live(7, info(100, 5), "sh", t0);
        index.exit(7, info(100, 5), "sh", t0);
        let found = index.get(7).unwrap();
        assert_eq!(found.info.cgroup_v2_id, 5);
        assert_eq!(found.exited_at, Some(t0));
        index.gc(t0 + Duration::from_secs(59), Duration::from_mins(1));
        assert!(index.get(7).is_some());
        index.gc(t0 + Duration::from_secs(61), Duration::from_mins(1));
        assert!(index.get(7).is_none());
    }

    #[test]
    fn a_reused_pid_answers_with_the_new_process() {
        let index = ProcessIndex::default();
        let t0 = Instant::now();
        index.upsert_live(7, info(100, 5), "old", t0);
        index.exit(7, info(100, 5), "old", t0);
        index.upsert_live(7, info(200, 6), "new", t0);
        let found = index.get(7).unwrap();
        assert_eq!(found.info.cgroup_v2_id, 6);
        assert_eq!(found.exited_at, None);
        assert_eq!(&*found.comm, "new");
        // The new one exits too: the newest exited one answers.
        index.exit(7, info(200, 6), "new", t0);
        assert_eq!(index.get(7).unwrap().info.cgroup_v2_id, 6);
        assert_eq!(index.exited_count(), 2);
    }

    #[test]
    fn a_missed_exit_is_repaired_by_the_next_process_of_the_pid() {
        let index = ProcessIndex::default();
        let t0 = Instant::now();
        index.upsert_live(7, info(100, 5), "old", t0);
        index.upsert_live(7, info(200, 6), "new", t0);
        assert_eq!(index.get(7).unwrap().info.start_boottime_ns, 200);
        assert_eq!(index.exited_count(), 1);
    }

    #[test]
    fn a_late_seed_does_not_resurrect_an_exited_process() {
        let index = ProcessIndex::default();
        let t0 = Instant::now();
        index.exit(7, info(100, 5), "sh", t0);
        index.upsert_live(7, info(100, 5), "sh", t0);
        assert!(index.get(7).unwrap().exited_at.is_some());
        assert_eq!(index.live_count(), 0);
    }

    #[test]
    fn a_seed_of_an_older_process_does_not_displace_the_newer_one() {
        let index = ProcessIndex::default();
        let t0 = Instant::now();
        // The fork event of the process that has PID 7 now was applied; the exit of the
        // one before it was lost, and the iterator listed that one before it exited.
        index.upsert_live(7, info(200, 6), "new", t0);
        index.upsert_live(7, info(100, 5), "old", t0);
        let found = index.get(7).unwrap();
        assert_eq!(found.info.start_boottime_ns, 200);
        assert_eq!(found.exited_at, None);
        assert_eq!(index.exited_count(), 1);
        // The reconcile of that listing (PID 7 listed as the old process) keeps the new one,
        // which it checks with procfs since it started after the listing began.
        let alive: HashMap<u32, ProcessInfo> = [(7, info(100, 5))].into();
        assert_eq!(index.reconcile(&alive, 150, |_, _| true, t0), 0);
        assert_eq!(index.get(7).unwrap().info.start_boottime_ns, 200);
        // Once the new one exits too, the newest exited process answers.
        index.exit(7, info(200, 6), "new", t0);
        assert_eq!(index.get(7).unwrap().info.start_boottime_ns, 200);
        assert_eq!(index.exited_count(), 2);
    }

    #[test]
    fn reconcile_marks_unlisted_processes_exited() {
        let index = ProcessIndex::default();
        let t0 = Instant::now();
        index.upsert_live(7, info(100, 5), "a", t0);
        index.upsert_live(8, info(101, 5), "b", t0);
        let alive: HashMap<u32, ProcessInfo> = [(8, info(101, 5))].into();
        assert_eq!(index.reconcile(&alive, u64::MAX, |_, _| true, t0), 1);
        assert!(index.get(7).unwrap().exited_at.is_some());
        assert!(index.get(8).unwrap().exited_at.is_none());
    }

    #[test]
    fn reconcile_leaves_processes_newer_than_the_list_alone() {
        let index = ProcessIndex::default();
        let t0 = Instant::now();
        // Forked after the list was begun (their events applied by a concurrent drain): one
        // still running, one gone since.
        index.upsert_live(9, info(500, 5), "new", t0);
        index.upsert_live(10, info(600, 5), "gone", t0);
        index.upsert_live(7, info(100, 5), "old", t0);
        let still_alive = |tgid: u32, _: &ProcessInfo| tgid == 9;
        assert_eq!(index.reconcile(&HashMap::new(), 400, still_alive, t0), 2);
        assert!(index.get(9).unwrap().exited_at.is_none());
        assert!(index.get(10).unwrap().exited_at.is_some());
        assert!(index.get(7).unwrap().exited_at.is_some());
    }

    #[test]
    fn procfs_start_times_match_kernel_ones_to_the_tick() {
        let tick = clock::ns_per_tick(clock::user_hz());
        let index = ProcessIndex::default();
        let t0 = Instant::now();
        let from_procfs = ProcessInfo {
            start_boottime_ns: 25 * tick,
            flags: FLAG_PROCFS,
            ..info(0, 5)
        };
        index.upsert_live(1, from_procfs, "init", t0);
        // The kernel's exact start time of the same process, at exit: within the tick.
        index.exit(1, info(25 * tick + tick / 4, 5), "init", t0);
        assert_eq!(index.live_count(), 0);
        assert_eq!(index.exited_count(), 1);
        // Another tick is another process.
        assert!(!same_start(&from_procfs, &info(26 * tick + tick / 4, 5)));
    }

    #[test]
    fn attach_updates_the_live_process_in_place() {
        let index = ProcessIndex::default();
        let t0 = Instant::now();
        index.upsert_live(7, info(100, 5), "a", t0);
        index.upsert_live(7, info(100, 9), "a", t0);
        assert_eq!(index.get(7).unwrap().info.cgroup_v2_id, 9);
        assert_eq!(index.exited_count(), 0);
    }
}
