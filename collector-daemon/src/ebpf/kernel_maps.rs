//! What the identity service and the eBPF collector use of the kernel programs, as a trait:
//! [`KernelTracker`] implements it over the loaded programs' maps, and unit tests implement
//! it with a fake (no root, no BPF).
use std::collections::HashMap;

use collector_common::{counters, process::ProcessInfo};

use super::{CounterError, Event, IoKey, IoTotals, KernelTracker, NetTotals, loader::SeedError};

/// The kernel programs' lifecycle events, process map, counters and usage maps.
pub trait KernelMaps: Send + Sync {
    /// Decodes every pending lifecycle event and hands it to `apply`, in ring-buffer order.
    /// Returns how many records were read. Cheap when nothing is pending.
    fn drain(&self, apply: &mut dyn FnMut(Event)) -> usize;

    /// Every live process `(tgid, state, command name)`, read by the kernel's task
    /// iterator, which also writes each one into the process map if it is missing there.
    fn seed(&self) -> Result<Vec<(u32, ProcessInfo, String)>, SeedError>;

    /// The programs' counters, summed over CPUs, indexed by `collector_common::counters`
    /// (`EVENTS_LOST` among them).
    fn counters(&self) -> [u64; counters::COUNT as usize];

    /// Writes a process map entry unless the map has one for `tgid` (a kernel-written entry
    /// is newer). Returns false when the map is full.
    fn insert_if_absent(&self, tgid: u32, info: &ProcessInfo) -> bool;

    /// Removes the process map entry for `tgid` if it describes the process that started at
    /// `start_boottime_ns`.
    fn forget_process(&self, tgid: u32, start_boottime_ns: u64);

    /// Every cgroup's network traffic, by cgroup-v2 id.
    fn net_snapshot(&self) -> Result<HashMap<u64, NetTotals>, CounterError>;

    /// Block IO of every owner on every disk.
    fn io_snapshot(&self) -> Result<HashMap<IoKey, IoTotals>, CounterError>;

    /// Frees the network entry of a cgroup.
    fn remove_net(&self, cgroup_id: u64);

    /// Frees a block IO entry.
    fn remove_io(&self, key: &IoKey);

    /// The loaded programs' own handles, for what only they have (the ring buffer's
    /// descriptor, pins, program statistics, the v1 cgroup walker); `None` for any other
    /// implementation.
    fn tracker(&self) -> Option<&KernelTracker> {
        None
    }
}

impl KernelMaps for KernelTracker {
    fn drain(&self, apply: &mut dyn FnMut(Event)) -> usize {
        KernelTracker::drain(self, apply)
    }

    fn seed(&self) -> Result<Vec<(u32, ProcessInfo, String)>, SeedError> {
        KernelTracker::seed(self)
    }

    fn counters(&self) -> [u64; counters::COUNT as usize] {
        KernelTracker::counters(self)
    }

    fn insert_if_absent(&self, tgid: u32, info: &ProcessInfo) -> bool {
        KernelTracker::insert_if_absent(self, tgid, info)
    }

    fn forget_process(&self, tgid: u32, start_boottime_ns: u64) {
        KernelTracker::forget_process(self, tgid, start_boottime_ns);
    }

    fn net_snapshot(&self) -> Result<HashMap<u64, NetTotals>, CounterError> {
        KernelTracker::net_snapshot(self)
    }

    fn io_snapshot(&self) -> Result<HashMap<IoKey, IoTotals>, CounterError> {
        KernelTracker::io_snapshot(self)
    }

    fn remove_net(&self, cgroup_id: u64) {
        KernelTracker::remove_net(self, cgroup_id);
    }

    fn remove_io(&self, key: &IoKey) {
        KernelTracker::remove_io(self, key);
    }

    fn tracker(&self) -> Option<&KernelTracker> {
        Some(self)
    }
}

/// A kernel for unit tests: events, task-iterator results, counters and map contents are
/// what the test puts in, and map writes are recorded.
#[cfg(test)]
pub mod fake {
    use std::{
        collections::{HashMap, VecDeque},
        sync::{Mutex, MutexGuard, PoisonError},
    };

    use collector_common::{
        counters,
        process::{FLAG_SEEDED, ProcessInfo},
    };

    use super::KernelMaps;
    use crate::ebpf::{CounterError, Event, IoKey, IoTotals, NetTotals, loader::SeedError};

    /// The fake's state, readable and writable by the test.
    #[derive(Default)]
    pub struct FakeState {
        /// Events not drained yet.
        pub events: VecDeque<Event>,
        /// What the task iterator reports.
        pub tasks: Vec<(u32, ProcessInfo, String)>,
        /// Events queued when the task iterator runs (tasks that exit while it runs).
        pub events_during_seed: Vec<Event>,
        /// How many times the task iterator ran.
        pub seeds: usize,
        /// The counters.
        pub counters: [u64; counters::COUNT as usize],
        /// The process map.
        pub processes: HashMap<u32, ProcessInfo>,
        /// `forget_process` calls, in order.
        pub forgotten: Vec<(u32, u64)>,
        /// The network counter map.
        pub net: HashMap<u64, NetTotals>,
        /// The block IO counter map.
        pub io: HashMap<IoKey, IoTotals>,
    }

    /// The fake kernel.
    #[derive(Default)]
    pub struct FakeKernel {
        state: Mutex<FakeState>,
    }

    impl FakeKernel {
        /// Its state, locked.
        pub fn state(&self) -> MutexGuard<'_, FakeState> {
            self.state.lock().unwrap_or_else(PoisonError::into_inner)
        }
    }

    impl KernelMaps for FakeKernel {
        fn drain(&self, apply: &mut dyn FnMut(Event)) -> usize {
            // Taken out first: `apply` may call back into the fake.
            let events: Vec<Event> = self.state().events.drain(..).collect();
            let n = events.len();
            events.into_iter().for_each(apply);
            n
        }

        fn seed(&self) -> Result<Vec<(u32, ProcessInfo, String)>, SeedError> {
            let mut state = self.state();
            state.seeds += 1;
            let tasks = state.tasks.clone();
            for (tgid, info, _) in &tasks {
                state.processes.entry(*tgid).or_insert(ProcessInfo {
                    flags: info.flags | FLAG_SEEDED,
                    ..*info
                });
            }
            let during = std::mem::take(&mut state.events_during_seed);
            state.events.extend(during);
            Ok(tasks)
        }

        fn counters(&self) -> [u64; counters::COUNT as usize] {
            self.state().counters
        }

        fn insert_if_absent(&self, tgid: u32, info: &ProcessInfo) -> bool {
            self.state().processes.entry(tgid).or_insert(*info);
            true
        }

        fn forget_process(&self, tgid: u32, start_boottime_ns: u64) {
            let mut state = self.state();
            state.forgotten.push((tgid, start_boottime_ns));
            if state
                .processes
                .get(&tgid)
                .is_some_and(|info| info.start_boottime_ns == start_boottime_ns)
            {
                state.processes.remove(&tgid);
            }
        }

        fn net_snapshot(&self) -> Result<HashMap<u64, NetTotals>, CounterError> {
            Ok(self.state().net.clone())
        }

        fn io_snapshot(&self) -> Result<HashMap<IoKey, IoTotals>, CounterError> {
            Ok(self.state().io.clone())
        }

        fn remove_net(&self, cgroup_id: u64) {
            self.state().net.remove(&cgroup_id);
        }

        fn remove_io(&self, key: &IoKey) {
            self.state().io.remove(key);
        }
    }
}
