//! The cgroup iterator (`iter/cgroup`, kernel 6.1+; v1 hierarchies since the iterator takes
//! a v1 cgroup's directory, `cgroup_v1v2_get_from_fd()`): for each cgroup of the walk, the
//! counters and limits that its files print one number each, read from the controllers'
//! own structures (`mem_cgroup`, `task_group`, `pids_cgroup`, `cpuset`). One program walks
//! v1 hierarchies and the v2 one alike: the structures are the same, and a cgroup of the v2
//! hierarchy (`cgroup->root->hierarchy_id` 0) also gets the v2 memory limits and swap.
//!
//! Records go into the `CGROUP_VALUES` array, slot = the cgroup's position in the walk
//! (`bpf_iter_meta.seq_num`), not into the iterator's file: a cgroup iterator must finish in
//! one `read()` (it holds `cgroup_mutex` and cannot resume, `cgroup_iter_seq_start()`),
//! whose buffer (8 pages) holds far fewer records than a node has cgroups. Each cgroup's
//! call writes how many the walk visited so far to `CGROUP_WALK`, and the final call (no
//! cgroup) that the walk reached its end. (The final call's `seq_num` is that of the last
//! cgroup, not the count: `bpf_seq_read()` advances it only when there is a next object.)
//!
//! The controllers' members are read with `bpf_probe_read_kernel`: `cgroup.subsys[i]` is
//! typed `struct cgroup_subsys_state *`, and a direct load past that struct's size (into
//! the `mem_cgroup` around it) is refused by the verifier.
use core::ffi::c_void;

use collector_common::{
    cgroup_values::{
        CgroupValues, HAS_CPU, HAS_CPUSET, HAS_KMEM, HAS_MEMORY, HAS_OOM_KILL, HAS_PIDS,
        HAS_SOFT_LIMIT, HAS_V2_MEMORY, IS_ROOT,
    },
    counters::{CGROUP_VALUES_FULL, READ_ERRORS},
    offsets::KernelOffsets,
};

use crate::{
    counters::bump,
    kernel::{
        Access as _, Direct, Probe, ReadError, cgroup_hierarchy_id, cgroup_id, cgroup_level,
        offsets,
    },
    maps::{CGROUP_VALUES, CGROUP_WALK},
};

/// `struct bpf_iter_meta { struct seq_file *seq; u64 session_id; u64 seq_num; }`: fixed by
/// the iterator ABI.
#[repr(C)]
struct IterMeta {
    seq: *mut c_void,
    session_id: u64,
    seq_num: u64,
}

/// `struct bpf_iter__cgroup { struct bpf_iter_meta *meta; struct cgroup *cgroup; }`.
#[repr(C)]
struct IterCgroupContext {
    meta: *const IterMeta,
    cgroup: *const u8,
}

#[unsafe(no_mangle)]
#[unsafe(link_section = "iter/cgroup")]
pub(crate) extern "C" fn read_cgroup_values(ctx: *mut c_void) -> i32 {
    let ctx = ctx.cast::<IterCgroupContext>();
    // SAFETY: the context layout is fixed by the kernel ABI (above); `meta` is never NULL,
    // `cgroup` is NULL on the final call.
    let (meta, cgroup) = unsafe { ((*ctx).meta, (*ctx).cgroup) };
    // SAFETY: as above.
    let (session, position) = unsafe { ((*meta).session_id, (*meta).seq_num) };
    let Some(walk) = CGROUP_WALK.get_ptr_mut(0) else {
        return 0;
    };
    if cgroup.is_null() {
        // SAFETY: a valid map value pointer; walks are run one at a time by the daemon.
        unsafe { (*walk).finished = session };
        return 0;
    }
    // SAFETY: as above.
    unsafe {
        (*walk).session = session;
        (*walk).visited = position + 1;
    }
    let Some(o) = offsets() else { return 0 };
    #[expect(clippy::cast_possible_truncation, reason = "checked against u32::MAX")]
    let slot = if position > u64::from(u32::MAX) {
        None
    } else {
        CGROUP_VALUES.get_ptr_mut(position as u32)
    };
    let Some(slot) = slot else {
        // More cgroups than slots: the daemon reads the rest from their files.
        bump(CGROUP_VALUES_FULL);
        return 0;
    };
    match values(o, cgroup) {
        // SAFETY: a valid map value pointer, written by this walk only.
        Ok(values) => unsafe { *slot = values },
        Err(ReadError) => {
            // A record with no `HAS_*` bit: the daemon reads this cgroup's files.
            // SAFETY: as above.
            unsafe { *slot = CgroupValues::default() };
            bump(READ_ERRORS);
        }
    }
    0
}

fn values(o: &KernelOffsets, cgroup: *const u8) -> Result<CgroupValues, ReadError> {
    let mut v = CgroupValues {
        cgroup_id: cgroup_id::<Direct>(cgroup, o)?,
        ..CgroupValues::default()
    };
    if cgroup_level::<Direct>(cgroup, o)? == 0 {
        v.present |= IS_ROOT;
    }
    if o.values_memory_ready != 0 {
        let memcg = subsys(o, cgroup, o.memory_subsys_id)?;
        if !memcg.is_null() {
            memory(o, memcg, &mut v)?;
            // The v2 hierarchy's `hierarchy_id` is 0 (`cgrp_dfl_root`, "0::" in
            // /proc/<pid>/cgroup); on v1 `swap` is `memsw` and the limits are not the files'.
            if o.values_v2_memory_ready != 0 && cgroup_hierarchy_id::<Direct>(cgroup, o)? == 0 {
                memory_v2(o, memcg, &mut v)?;
            }
        }
    }
    if o.values_cpu_ready != 0 {
        let tg = subsys(o, cgroup, o.cpu_subsys_id)?;
        if !tg.is_null() {
            cpu(o, tg, &mut v)?;
        }
    }
    if o.values_pids_ready != 0 {
        let pids = subsys(o, cgroup, o.pids_subsys_id)?;
        if !pids.is_null() {
            v.pids_current = Probe::read::<i64>(pids, o.pids_counter)?;
            v.pids_limit = Probe::read::<i64>(pids, o.pids_limit)?;
            v.present |= HAS_PIDS;
        }
    }
    if o.values_cpuset_ready != 0 {
        let cpuset = subsys(o, cgroup, o.cpuset_subsys_id)?;
        if !cpuset.is_null() {
            v.effective_cpus = effective_cpus(o, cpuset)?;
            v.present |= HAS_CPUSET;
        }
    }
    Ok(v)
}

/// Most 64-bit words of a CPU mask read: 4,096 CPUs (the daemon leaves cpusets to their
/// files on bigger machines).
const MAX_CPUMASK_WORDS: u32 = 64;

/// The number of CPUs in `cpuset.effective_cpus`: the bits of its first `nr_cpu_ids`.
#[inline(always)]
fn effective_cpus(o: &KernelOffsets, cpuset: *const u8) -> Result<u32, ReadError> {
    let mask = if o.cpumask_indirect == 0 {
        cpuset.wrapping_add(o.cpuset_effective_cpus as usize)
    } else {
        Probe::read::<*const u8>(cpuset, o.cpuset_effective_cpus)?
    };
    let mut count = 0;
    for word in 0..MAX_CPUMASK_WORDS {
        if word >= o.cpumask_words {
            break;
        }
        let mut bits = Probe::read::<u64>(mask, word * 8)?;
        if word + 1 == o.cpumask_words && o.cpumask_last_bits != 0 {
            bits &= (1u64 << (o.cpumask_last_bits & 63)) - 1;
        }
        count += bits.count_ones();
    }
    Ok(count)
}

/// `cgroup.subsys[id]`: the controller's state for this cgroup, NULL when the controller is
/// not on the cgroup's hierarchy. The daemon checked that `css` is the first member of
/// `mem_cgroup`, `task_group` and `pids_cgroup`, so this is also the controller's struct.
#[inline(always)]
fn subsys(o: &KernelOffsets, cgroup: *const u8, id: u32) -> Result<*const u8, ReadError> {
    if id >= 16 {
        return Err(ReadError);
    }
    // An element boundary of the `subsys` pointer array, as the verifier requires.
    Direct::read::<*const u8>(cgroup, o.cgroup_subsys + id * 8)
}

#[inline(always)]
fn memory(o: &KernelOffsets, memcg: *const u8, v: &mut CgroupValues) -> Result<(), ReadError> {
    let counter = o.memcg_memory;
    v.memory_usage_pages = Probe::read::<u64>(memcg, counter + o.page_counter_usage)?;
    v.memory_watermark_pages = Probe::read::<u64>(memcg, counter + o.page_counter_watermark)?;
    v.memory_failcnt = Probe::read::<u64>(memcg, counter + o.page_counter_failcnt)?;
    v.present |= HAS_MEMORY;
    if o.values_soft_limit_ready != 0 {
        v.soft_limit_pages = Probe::read::<u64>(memcg, o.memcg_soft_limit)?;
        v.present |= HAS_SOFT_LIMIT;
    }
    if o.values_kmem_ready != 0 {
        v.kmem_usage_pages = Probe::read::<u64>(memcg, o.memcg_kmem + o.page_counter_usage)?;
        v.present |= HAS_KMEM;
    }
    if o.values_oom_kill_ready != 0 {
        v.oom_kill = Probe::read::<u64>(memcg, o.memcg_oom_kill)?;
        v.present |= HAS_OOM_KILL;
    }
    Ok(())
}

/// The v2 memory files' values (`mm/memcontrol.c` 6.1–6.18): `memory.max`, `memory.high`
/// and `memory.low` print `memcg->memory.{max,high,low}`, `memory.swap.current` and
/// `memory.swap.max` `memcg->swap.{usage,max}` (pages; `PAGE_COUNTER_MAX` prints "max").
#[inline(always)]
fn memory_v2(o: &KernelOffsets, memcg: *const u8, v: &mut CgroupValues) -> Result<(), ReadError> {
    let (memory, swap) = (o.memcg_memory, o.memcg_swap);
    v.memory_max_pages = Probe::read::<u64>(memcg, memory + o.page_counter_max)?;
    v.memory_high_pages = Probe::read::<u64>(memcg, memory + o.page_counter_high)?;
    v.memory_low_pages = Probe::read::<u64>(memcg, memory + o.page_counter_low)?;
    v.swap_usage_pages = Probe::read::<u64>(memcg, swap + o.page_counter_usage)?;
    v.swap_max_pages = Probe::read::<u64>(memcg, swap + o.page_counter_max)?;
    v.present |= HAS_V2_MEMORY;
    Ok(())
}

#[inline(always)]
fn cpu(o: &KernelOffsets, tg: *const u8, v: &mut CgroupValues) -> Result<(), ReadError> {
    let bandwidth = o.tg_cfs_bandwidth;
    v.cpu_shares_raw = Probe::read::<u64>(tg, o.tg_shares)?;
    v.cfs_period_ns = Probe::read::<u64>(tg, bandwidth + o.cfs_b_period)?;
    v.cfs_quota_ns = Probe::read::<u64>(tg, bandwidth + o.cfs_b_quota)?;
    v.nr_periods = Probe::read::<u32>(tg, bandwidth + o.cfs_b_nr_periods)?;
    v.nr_throttled = Probe::read::<u32>(tg, bandwidth + o.cfs_b_nr_throttled)?;
    v.throttled_time_ns = Probe::read::<u64>(tg, bandwidth + o.cfs_b_throttled_time)?;
    v.present |= HAS_CPU;
    Ok(())
}
