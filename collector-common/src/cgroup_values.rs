//! Per-cgroup values read in the kernel by the cgroup iterator (`collector-ebpf/src/
//! cgroup_values.rs`): the counters and limits that are one number each in their files
//! (v1 `memory.usage_in_bytes`, `cpu.shares`, `pids.current`, ...; v2 `memory.current`,
//! `memory.max`, `cpu.max`, `cpu.weight`, ...), and the size of the CPU set. A full
//! collection walks each v1 hierarchy, or the v2 hierarchy when it has the controllers,
//! once instead of opening, reading and parsing a dozen files per container. Raw kernel
//! units here; the daemon turns them into the files' values.

/// `present` bit: the memory fields hold the cgroup's `mem_cgroup` values.
pub const HAS_MEMORY: u32 = 1;
/// `present` bit: `kmem_usage_pages` holds `mem_cgroup.kmem` (`CONFIG_MEMCG_V1`).
pub const HAS_KMEM: u32 = 1 << 1;
/// `present` bit: the CPU fields hold the cgroup's `task_group` values.
pub const HAS_CPU: u32 = 1 << 2;
/// `present` bit: the PIDs fields hold the cgroup's `pids_cgroup` values.
pub const HAS_PIDS: u32 = 1 << 3;
/// `present` bit: `effective_cpus` holds the CPUs of `cpuset.effective_cpus`.
pub const HAS_CPUSET: u32 = 1 << 5;
/// `present` bit: `oom_kill` holds `mem_cgroup.memory_events[MEMCG_OOM_KILL]`.
pub const HAS_OOM_KILL: u32 = 1 << 6;
/// `present` bit: the v2 memory fields (`memory_max_pages` .. `swap_max_pages`) hold the
/// cgroup's `mem_cgroup` values (a cgroup of the v2 hierarchy, and BTF has the members).
pub const HAS_V2_MEMORY: u32 = 1 << 7;
/// `present` bit: `soft_limit_pages` holds `mem_cgroup.soft_limit` (`CONFIG_MEMCG_V1`).
pub const HAS_SOFT_LIMIT: u32 = 1 << 8;
/// `present` bit: a hierarchy's root cgroup (its values are not those of its files: the
/// root's usage files sum statistics instead of reading its page counter).
pub const IS_ROOT: u32 = 1 << 4;

/// One cgroup as the iterator saw it. Slot `n` of the values array holds the `n`th cgroup
/// of the last walk.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CgroupValues {
    /// `cgroup.kn->id`: the cgroup directory's inode number in its hierarchy.
    pub cgroup_id: u64,
    /// `HAS_*` and `IS_ROOT` bits.
    pub present: u32,
    /// `cfs_bandwidth.nr_periods` (`int`).
    pub nr_periods: u32,
    /// `cfs_bandwidth.nr_throttled` (`int`).
    pub nr_throttled: u32,
    /// CPUs in `cpuset.effective_cpus` (the bits set in `cpuset.effective_cpus`' mask).
    pub effective_cpus: u32,
    /// `mem_cgroup.memory.usage`, in pages.
    pub memory_usage_pages: u64,
    /// `mem_cgroup.memory.watermark`, in pages.
    pub memory_watermark_pages: u64,
    /// `mem_cgroup.memory.failcnt`.
    pub memory_failcnt: u64,
    /// `mem_cgroup.kmem.usage`, in pages.
    pub kmem_usage_pages: u64,
    /// `mem_cgroup.soft_limit`, in pages.
    pub soft_limit_pages: u64,
    /// `task_group.shares` (fixed point: `cpu.shares` shifted by `SCHED_FIXEDPOINT_SHIFT`).
    pub cpu_shares_raw: u64,
    /// `cfs_bandwidth.period` in ns.
    pub cfs_period_ns: u64,
    /// `cfs_bandwidth.quota` in ns (`RUNTIME_INF`, all ones, when unlimited).
    pub cfs_quota_ns: u64,
    /// `cfs_bandwidth.throttled_time` in ns.
    pub throttled_time_ns: u64,
    /// `pids_cgroup.counter`.
    pub pids_current: i64,
    /// `pids_cgroup.limit` (`PIDS_MAX` when unlimited: what the root's limit is).
    pub pids_limit: i64,
    /// `mem_cgroup.memory_events[MEMCG_OOM_KILL]`: processes the OOM killer killed in the
    /// cgroup and below it.
    pub oom_kill: u64,
    /// `mem_cgroup.memory.max`, in pages (`PAGE_COUNTER_MAX` when unlimited): `memory.max`.
    pub memory_max_pages: u64,
    /// `mem_cgroup.memory.high`, in pages (`PAGE_COUNTER_MAX` when unlimited): `memory.high`.
    pub memory_high_pages: u64,
    /// `mem_cgroup.memory.low`, in pages: `memory.low`.
    pub memory_low_pages: u64,
    /// `mem_cgroup.swap.usage`, in pages: `memory.swap.current`.
    pub swap_usage_pages: u64,
    /// `mem_cgroup.swap.max`, in pages (`PAGE_COUNTER_MAX` when unlimited): `memory.swap.max`.
    pub swap_max_pages: u64,
}

/// What the last walk left.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CgroupWalk {
    /// The iterator session of the last cgroup visited (`bpf_iter_meta.session_id`, unique
    /// per walk).
    pub session: u64,
    /// Cgroups that session visited so far; those beyond the values array's size were not
    /// recorded.
    pub visited: u64,
    /// The session of the last walk that reached its end (the iterator's final call).
    pub finished: u64,
}

// The kernel programs and the daemon read these bytes with one layout: a field added,
// removed or resized must fail the build on both sides, not misread a map.
const _: () = assert!(size_of::<CgroupValues>() == 160 && align_of::<CgroupValues>() == 8); // 18×8 + 4×4 bytes
const _: () = assert!(size_of::<CgroupWalk>() == 24 && align_of::<CgroupWalk>() == 8); // 3×8 bytes

#[cfg(feature = "user")]
// SAFETY: repr(C), integer fields, explicit padding.
unsafe impl aya::Pod for CgroupValues {}

#[cfg(feature = "user")]
// SAFETY: repr(C), three u64.
unsafe impl aya::Pod for CgroupWalk {}
