//! The values of a cgroup's one-number files (and its CPU set's size), read by the kernel
//! programs' cgroup walk instead of from the files (`crate::ebpf::cgroup_values` implements
//! [`CgroupValuesSource`]): a full collection then walks each v1 hierarchy once — or the v2
//! hierarchy, when it has the controllers — where it would open-read-parse eleven files per
//! container (most of that cost is the system call and kernfs, not the value).
//!
//! Values here are in the files' units and mean what the files print, so the stats reader
//! uses them exactly as it would the files' text; a cgroup (or controller) the walk did not
//! cover is read from its files.
use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use super::{cpu::CpuMax, parse::Limit};
use crate::fast_map::FastMap;

/// A cgroup directory: its filesystem (one per v1 hierarchy) and inode number (the cgroup's
/// kernfs id).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DirKey {
    pub dev: u64,
    pub ino: u64,
}

impl DirKey {
    /// The key of directory `dir`, `None` when it cannot be stat'ed.
    #[must_use]
    pub fn of(dir: &Path) -> Option<Self> {
        use std::os::unix::fs::MetadataExt as _;
        let meta = std::fs::metadata(dir).ok()?;
        Some(Self {
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }
}

/// `memory.usage_in_bytes`, `memory.max_usage_in_bytes`, `memory.failcnt`,
/// `memory.soft_limit_in_bytes` and `memory.kmem.usage_in_bytes`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryValues {
    pub usage_bytes: u64,
    pub max_usage_bytes: u64,
    pub failcnt: u64,
    pub soft_limit_bytes: u64,
    /// None when this kernel's `mem_cgroup` has no `kmem` counter known to the walk.
    pub kmem_usage_bytes: Option<u64>,
    /// `memory.oom_control` `oom_kill`; None when the walk does not know where it is.
    pub oom_kill: Option<u64>,
}

/// `cpu.shares`, `cpu.cfs_quota_us`, `cpu.cfs_period_us` and v1 `cpu.stat`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuValues {
    pub shares: u64,
    /// None: no quota (`-1`).
    pub quota_us: Option<u64>,
    pub period_us: u64,
    pub nr_periods: u64,
    pub nr_throttled: u64,
    pub throttled_time_ns: u64,
}

/// `pids.current` and `pids.max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PidsValues {
    pub current: u64,
    pub max: Limit,
}

/// What the walk read for one cgroup; a controller that is not on the cgroup's hierarchy is
/// None.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct V1Values {
    pub memory: Option<MemoryValues>,
    pub cpu: Option<CpuValues>,
    pub pids: Option<PidsValues>,
    /// CPUs in `cpuset.effective_cpus`.
    pub effective_cpus: Option<u32>,
}

/// `memory.swap.current` and `memory.swap.max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct V2SwapValues {
    pub current_bytes: u64,
    pub max: Limit,
}

/// `memory.current`, `memory.peak`, `memory.max`, `memory.high`, `memory.low` and the swap
/// files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct V2MemoryValues {
    pub current_bytes: u64,
    pub peak_bytes: u64,
    pub max: Limit,
    pub high: Limit,
    pub low: Limit,
    /// None when the walk does not read swap (the files then are read, and are absent
    /// without swap accounting).
    pub swap: Option<V2SwapValues>,
}

/// `cpu.weight` and `cpu.max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct V2CpuValues {
    pub weight: u64,
    pub max: CpuMax,
}

/// What the walk read for one cgroup of the v2 hierarchy; a controller not enabled for the
/// cgroup (or whose members this kernel's BTF lacks) is None.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct V2Values {
    pub memory: Option<V2MemoryValues>,
    pub cpu: Option<V2CpuValues>,
    pub pids: Option<PidsValues>,
    /// CPUs in `cpuset.cpus.effective`.
    pub effective_cpus: Option<u32>,
}

/// One walk's values of every cgroup of the walked hierarchies.
#[derive(Debug)]
pub struct KernelCgroupValues {
    /// When the walk began: every value is at least this recent.
    pub taken: Instant,
    /// Cgroups of the v1 hierarchies.
    pub by_dir: FastMap<DirKey, V1Values>,
    /// Cgroups of the v2 hierarchy (walked only when it has controllers).
    pub v2_by_dir: FastMap<DirKey, V2Values>,
}

impl KernelCgroupValues {
    #[must_use]
    pub fn get(&self, key: DirKey) -> Option<&V1Values> {
        self.by_dir.get(&key)
    }

    /// The values of the v2 cgroup whose directory is `key`.
    #[must_use]
    pub fn get_v2(&self, key: DirKey) -> Option<&V2Values> {
        self.v2_by_dir.get(&key)
    }

    /// Cgroups recorded, in every hierarchy walked.
    #[must_use]
    pub fn len(&self) -> usize {
        self.by_dir.len() + self.v2_by_dir.len()
    }

    /// Whether the walk recorded no cgroup.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A source of walks: the kernel programs, when loaded with the cgroup iterator.
pub trait CgroupValuesSource: Send + Sync {
    /// Walks the hierarchies now. `None` when the walk failed (logged; files are read).
    fn walk(&self) -> Option<Arc<KernelCgroupValues>>;

    /// The last walk, if it began at most `max_age` ago (never for a `max_age` of 0).
    fn latest(&self, max_age: Duration) -> Option<Arc<KernelCgroupValues>>;

    /// Whether the walks include the v2 hierarchy (then v2 directories need their keys).
    fn walks_v2(&self) -> bool;
}
