//! The maps and the one global shared with the daemon (names in `collector_common::names`).
use aya_ebpf::{
    Global,
    macros::map,
    maps::{Array, HashMap, PerCpuArray, PerCpuHashMap, RingBuf},
};
use collector_common::{
    cgroup_values::{CgroupValues, CgroupWalk},
    counters,
    offsets::KernelOffsets,
    persist::PinState,
    process::ProcessInfo,
    usage::{IoMapKey, IoMapValue, NetMapValue},
};

/// Live processes. 65,536 by default; the daemon resizes it (`--max-processes`) before load.
/// Preallocated (flags 0): inserts from tracepoint context never allocate.
#[map(name = "PROCESSES")]
pub(crate) static PROCESSES: HashMap<u32, ProcessInfo> = HashMap::with_max_entries(65_536, 0);

/// Lifecycle events. 4 MiB holds about 50,000 process events: a fork storm of that size
/// between two daemon reads is lost and counted (`EVENTS_LOST`), then repaired by re-scan.
#[map(name = "EVENTS")]
pub(crate) static EVENTS: RingBuf = RingBuf::with_byte_size(4 << 20, 0);

/// Per-CPU counters (`collector_common::counters`).
#[map(name = "COUNTERS")]
pub(crate) static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counters::COUNT, 0);

/// `BPF_F_NO_PREALLOC`: elements are allocated on insert and freed after an RCU grace period.
///
/// Chosen for the per-CPU counter maps, unlike `PROCESSES`: (1) a preallocated per-CPU hash
/// takes entries × value size × *possible* CPUs up front — 16,384 × 32 B × 64 CPUs is 32 MiB
/// per map — while a node has hundreds of cgroups; (2) the daemon deletes entries of removed
/// cgroups, and in a preallocated hash a deleted element is reused at once, so a program
/// still holding its pointer could add to another cgroup's new entry; freed after a grace
/// period, the pointer stays the old (deleted) element's for the rest of the run. Inserting
/// (a cgroup's first packet or bio) allocates from the BPF memory allocator, safe in any
/// context since 6.1 (`kernel/bpf/memalloc.c`); before, the verifier accepts it for these
/// program types. The bound still holds: an insert beyond `max_entries` fails with `E2BIG`.
const NO_PREALLOC: u32 = aya_ebpf::bindings::BPF_F_NO_PREALLOC;

/// Network bytes and packets per cgroup-v2 id (`net.rs`). At most 16,384 cgroups by default;
/// the daemon resizes it (`--net-counter-entries`) before load.
#[map(name = "NET_COUNTERS")]
pub(crate) static NET_COUNTERS: PerCpuHashMap<u64, NetMapValue> =
    PerCpuHashMap::with_max_entries(16_384, NO_PREALLOC);

/// Block IO per (owning cgroup, disk) (`blkio.rs`). At most 16,384 entries by default
/// (`--io-counter-entries`).
#[map(name = "IO_COUNTERS")]
pub(crate) static IO_COUNTERS: PerCpuHashMap<IoMapKey, IoMapValue> =
    PerCpuHashMap::with_max_entries(16_384, NO_PREALLOC);

/// Values of the cgroups of the last cgroup walk, slot n for the nth cgroup (`cgroup_values.rs`).
/// 16,384 by default; the daemon resizes it (`--cgroup-values-entries`) before load.
/// `BPF_F_MMAPABLE`: the daemon reads a walk's records through a read-only mapping, with no
/// system call per record.
#[map(name = "CGROUP_VALUES")]
pub(crate) static CGROUP_VALUES: Array<CgroupValues> =
    Array::with_max_entries(16_384, aya_ebpf::bindings::BPF_F_MMAPABLE);

/// How the last cgroup walk ended (one slot).
#[map(name = "CGROUP_WALK")]
pub(crate) static CGROUP_WALK: Array<CgroupWalk> = Array::with_max_entries(1, 0);

/// The pinned maps' layout version and the stamp of the programs pinned with them, written
/// and read by the daemon only (no program uses it; it is declared here so that it is
/// created, pinned and checked like the maps it describes).
#[map(name = "PIN_STATE")]
pub(crate) static PIN_STATE: Array<PinState> = Array::with_max_entries(1, 0);

/// Struct member offsets, filled by the daemon before load (all zero, `ready == 0`, until then).
#[unsafe(no_mangle)]
pub(crate) static OFFSETS: Global<KernelOffsets> = Global::new(KernelOffsets {
    task_pid: 0,
    task_tgid: 0,
    task_start_boottime: 0,
    task_cgroups: 0,
    task_signal: 0,
    task_real_parent: 0,
    task_group_leader: 0,
    task_comm: 0,
    signal_live: 0,
    css_set_dfl_cgrp: 0,
    css_set_subsys: 0,
    css_cgroup: 0,
    cgroup_kn: 0,
    cgroup_root: 0,
    cgroup_level: 0,
    cgroup_root_hierarchy_id: 0,
    kernfs_node_id: 0,
    v1_subsys_index: 0,
    track_v1: 0,
    ready: 0,
    io_ready: 0,
    bio_queue_bio_arg: 0,
    bio_bdev: 0,
    bio_disk_direct: 0,
    bio_opf: 0,
    bio_size: 0,
    bio_io_vec: 0,
    bdev_disk: 0,
    disk_major: 0,
    disk_first_minor: 0,
    req_op_mask: 0,
    io_memcg: 0,
    bvec_page: 0,
    page_compound_head: 0,
    page_memcg_data: 0,
    memcg_data_flags_mask: 0,
    memcg_data_kmem: 0,
    obj_cgroup_memcg: 0,
    memcg_css: 0,
    io_blkg: 0,
    bio_blkg: 0,
    blkg_blkcg: 0,
    blkcg_css: 0,
    cgroup_subsys: 0,
    values_memory_ready: 0,
    memory_subsys_id: 0,
    memcg_memory: 0,
    values_kmem_ready: 0,
    memcg_kmem: 0,
    values_soft_limit_ready: 0,
    memcg_soft_limit: 0,
    values_oom_kill_ready: 0,
    memcg_oom_kill: 0,
    page_counter_usage: 0,
    page_counter_watermark: 0,
    page_counter_failcnt: 0,
    values_v2_memory_ready: 0,
    memcg_swap: 0,
    page_counter_max: 0,
    page_counter_high: 0,
    page_counter_low: 0,
    values_cpu_ready: 0,
    cpu_subsys_id: 0,
    tg_shares: 0,
    tg_cfs_bandwidth: 0,
    cfs_b_period: 0,
    cfs_b_quota: 0,
    cfs_b_nr_periods: 0,
    cfs_b_nr_throttled: 0,
    cfs_b_throttled_time: 0,
    values_pids_ready: 0,
    pids_subsys_id: 0,
    pids_counter: 0,
    pids_limit: 0,
    values_cpuset_ready: 0,
    cpuset_subsys_id: 0,
    cpuset_effective_cpus: 0,
    cpumask_indirect: 0,
    cpumask_words: 0,
    cpumask_last_bits: 0,
});
