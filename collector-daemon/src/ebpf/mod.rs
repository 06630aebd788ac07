//! The kernel side seen from the daemon: loading the programs (`loader`), the offsets they
//! need (`btf_offsets`), decoding their events (`events`) and reading their counters; what
//! the identity service and the eBPF collector use of them is the trait in `kernel_maps`.
pub mod btf_offsets;
pub mod cgroup_values;
pub mod events;
pub mod kernel_maps;
pub mod loader;
pub mod persist;
pub mod pin;
pub mod usage;

use std::sync::{Arc, Mutex};

use aya::maps::{HashMap, MapData, PerCpuArray, RingBuf};
use collector_common::{counters, process::ProcessInfo};
pub use events::{Event, ProcessChange};
pub use kernel_maps::KernelMaps;
pub use loader::{LoadError, LoadOptions, Loaded};
pub use usage::{CounterError, CounterMaps, IoKey, IoTotals, NetTotals};

/// One program's kernel statistics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramStats {
    /// Its function name.
    pub name: String,
    /// Times it ran.
    pub runs: u64,
    /// Time it spent running.
    pub run_time: std::time::Duration,
}

/// Handles the daemon keeps on the kernel programs after loading.
pub struct KernelTracker {
    /// Lifecycle events. Behind a mutex: one reader at a time (the event loop, or a lookup
    /// that drains pending events before answering).
    events: Mutex<RingBuf<MapData>>,
    counters: PerCpuArray<MapData, u64>,
    processes: Mutex<HashMap<MapData, u32, ProcessInfo>>,
    /// The object: keeps the programs attached; runs the seeding iterator.
    ebpf: Mutex<aya::Ebpf>,
    /// The pin directory (locked while the daemon runs); its pins stay unless `unpin`.
    pin: Mutex<Option<loader::Pins>>,
    /// Per-cgroup network and block IO counters.
    usage: CounterMaps,
    /// The cgroup walk of the v1 hierarchies, when there is one.
    cgroup_walker: Option<Arc<cgroup_values::CgroupWalker>>,
}

impl KernelTracker {
    /// Splits the loaded object into the handles the daemon uses, and returns the aya-log
    /// reader (to be polled by the caller) apart.
    pub fn new(loaded: Loaded) -> (Self, Option<aya_log::EbpfLogger<&'static dyn log::Log>>) {
        let Loaded {
            ebpf,
            events,
            counters,
            processes,
            logger,
            pin,
            usage,
            cgroup_walker,
        } = loaded;
        (
            Self {
                events: Mutex::new(events),
                counters,
                processes: Mutex::new(processes),
                ebpf: Mutex::new(ebpf),
                pin: Mutex::new(pin),
                usage,
                cgroup_walker: cgroup_walker.ok().map(Arc::new),
            },
            logger,
        )
    }

    /// A duplicate of the ring buffer's descriptor, to wait for readability with epoll.
    pub fn events_fd(&self) -> std::io::Result<std::os::fd::OwnedFd> {
        use std::os::fd::AsFd as _;
        let ring = self
            .events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        ring.as_fd().try_clone_to_owned()
    }

    /// Decodes every pending event and hands it to `apply`, in ring-buffer order. Returns
    /// how many records were read. Cheap when nothing is pending (two atomic loads).
    pub fn drain(&self, mut apply: impl FnMut(Event)) -> usize {
        let mut ring = self
            .events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut n = 0;
        while let Some(record) = ring.next() {
            n += 1;
            match events::decode(&record) {
                Ok(event) => apply(event),
                Err(e) => tracing::warn!(error = %e, "skipping ring-buffer record"),
            }
        }
        n
    }

    /// Every live process, read by the kernel's task iterator (which also fills in any
    /// of them missing from `PROCESSES`).
    pub fn seed(&self) -> Result<Vec<(u32, ProcessInfo, String)>, loader::SeedError> {
        let mut ebpf = self
            .ebpf
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        loader::seed_processes(&mut ebpf)
    }

    /// Removes the pinned links and maps and the pin directory (at shutdown, with
    /// `--unpin-on-exit`): the programs detach when the daemon's descriptors close.
    pub fn unpin(&self) {
        let Some(mut pins) = self
            .pin
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        else {
            return;
        };
        match pins.remove_all(false) {
            Ok(removed) => tracing::info!(
                dir = %pins.dir().display(),
                links = removed.links,
                maps = removed.maps,
                "removed the pins (--unpin-on-exit)"
            ),
            Err(e) => tracing::warn!(error = %e, "removing the pins"),
        }
    }

    /// Where `PROCESSES` is pinned, if it is.
    pub fn pin_path(&self) -> Option<std::path::PathBuf> {
        self.pin
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .map(loader::Pins::path)
    }

    /// Each attached program's name, runs and time spent running, from the kernel's BPF
    /// statistics (both stay 0 unless `kernel.bpf_stats_enabled` is 1), and the maps those
    /// programs use: (name, capacity), by map id.
    pub fn program_stats(
        &self,
    ) -> (
        Vec<ProgramStats>,
        std::collections::BTreeMap<u32, (String, u32)>,
    ) {
        let ebpf = self
            .ebpf
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut programs = Vec::new();
        let mut maps = std::collections::BTreeMap::new();
        let kept = self.kept_programs();
        let infos = ebpf
            .programs()
            .filter_map(|(name, program)| Some((name.to_owned(), program.info().ok()?)))
            .chain(kept);
        for (name, info) in infos {
            programs.push(ProgramStats {
                name: name.clone(),
                runs: info.run_count(),
                run_time: info.run_time(),
            });
            for id in info.map_ids().ok().flatten().unwrap_or_default() {
                if let std::collections::btree_map::Entry::Vacant(slot) = maps.entry(id)
                    && let Ok(map) = aya::maps::MapInfo::from_id(id)
                {
                    let name = map.name_as_str().unwrap_or("?").to_owned();
                    slot.insert((name, map.max_entries()));
                }
            }
        }
        (programs, maps)
    }

    /// The programs whose pinned links were kept at start (loaded by an earlier run of this
    /// build, not by this object), with their kernel descriptions.
    fn kept_programs(&self) -> Vec<(String, aya::programs::ProgramInfo)> {
        let pin = self
            .pin
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(kept) = pin
            .as_ref()
            .map(loader::Pins::kept)
            .filter(|k| !k.is_empty())
        else {
            return Vec::new();
        };
        aya::programs::loaded_programs()
            .flatten()
            .filter_map(|info| {
                let (name, _) = kept.iter().find(|(_, id)| *id == info.id())?;
                Some((name.clone(), info))
            })
            .collect()
    }

    /// The cgroup walk of the v1 hierarchies, when loaded.
    pub fn cgroup_walker(&self) -> Option<&Arc<cgroup_values::CgroupWalker>> {
        self.cgroup_walker.as_ref()
    }

    /// The usage counter maps (network per cgroup, block IO per owner and disk).
    pub fn usage(&self) -> &CounterMaps {
        &self.usage
    }

    /// Why some usage counters are not attached (`None` when all are): no cgroup-v2
    /// hierarchy, a kernel without what the programs read, a verifier refusal.
    pub fn counters_unavailable(&self) -> Option<&str> {
        self.usage.counters_unavailable()
    }

    /// Every cgroup's network traffic, by cgroup-v2 id (per-CPU values summed).
    pub fn net_snapshot(&self) -> Result<std::collections::HashMap<u64, NetTotals>, CounterError> {
        self.usage.net_snapshot()
    }

    /// Block IO of every owner on every disk (per-CPU values summed).
    pub fn io_snapshot(&self) -> Result<std::collections::HashMap<IoKey, IoTotals>, CounterError> {
        self.usage.io_snapshot()
    }

    /// One cgroup's network traffic, `None` when none was counted.
    pub fn net_lookup(&self, cgroup_id: u64) -> Result<Option<NetTotals>, CounterError> {
        self.usage.net_lookup(cgroup_id)
    }

    /// Frees the network entry of a removed cgroup (fold its final values first).
    pub fn remove_net(&self, cgroup_id: u64) {
        self.usage.remove_net(cgroup_id);
    }

    /// Frees a block IO entry of a removed cgroup (fold its final values first).
    pub fn remove_io(&self, key: &IoKey) {
        self.usage.remove_io(key);
    }

    /// The kernel counters, summed over CPUs, in `collector_common::counters` order.
    pub fn counters(&self) -> [u64; counters::COUNT as usize] {
        let mut out = [0u64; counters::COUNT as usize];
        for (index, slot) in (0..counters::COUNT).zip(out.iter_mut()) {
            if let Ok(values) = self.counters.get(&index, 0) {
                *slot = values.iter().sum();
            }
        }
        out
    }

    /// Inserts an entry unless the kernel has one for `tgid` (its own is newer). Returns
    /// false when the map is full.
    pub fn insert_if_absent(&self, tgid: u32, info: &ProcessInfo) -> bool {
        /// `BPF_NOEXIST`: fail instead of replacing.
        const BPF_NOEXIST: u64 = 1;
        let mut map = self
            .processes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        !matches!(
            map.insert(tgid, info, BPF_NOEXIST),
            Err(aya::maps::MapError::SyscallError(e))
                if e.io_error.raw_os_error() != Some(libc::EEXIST)
        )
    }

    /// Removes the kernel's entry for `tgid` if it still describes the process that started
    /// at `start_boottime_ns`: an entry the seeding iterator wrote just after the process's
    /// exit tracepoint ran (a narrow race) is removed when the daemon sees that exit.
    pub fn forget_process(&self, tgid: u32, start_boottime_ns: u64) {
        let mut map = self
            .processes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map
            .get(&tgid, 0)
            .is_ok_and(|info| info.start_boottime_ns == start_boottime_ns)
        {
            let _ = map.remove(&tgid);
        }
    }
}
