//! Offsets of the kernel structure members the programs read. Rust eBPF has no CO-RE
//! relocations, and layouts change between kernels (and configs), so the daemon computes
//! these from `/sys/kernel/btf/vmlinux` and sets them as a global before loading.

/// Byte offsets of kernel struct members, and the v1 subsystem to track.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    /// `task_struct.pid` (`pid_t`).
    pub task_pid: u32,
    /// `task_struct.tgid` (`pid_t`).
    pub task_tgid: u32,
    /// `task_struct.start_boottime` (`u64`; `real_start_time` before 5.5).
    pub task_start_boottime: u32,
    /// `task_struct.cgroups` (`struct css_set *`).
    pub task_cgroups: u32,
    /// `task_struct.signal` (`struct signal_struct *`).
    pub task_signal: u32,
    /// `task_struct.real_parent` (`struct task_struct *`).
    pub task_real_parent: u32,
    /// `task_struct.group_leader` (`struct task_struct *`).
    pub task_group_leader: u32,
    /// `task_struct.comm` (`char[16]`).
    pub task_comm: u32,
    /// `signal_struct.live` (`atomic_t`): live threads of the group.
    pub signal_live: u32,
    /// `css_set.dfl_cgrp` (`struct cgroup *`): the task's cgroup-v2 cgroup.
    pub css_set_dfl_cgrp: u32,
    /// `css_set.subsys` (`struct cgroup_subsys_state *[]`).
    pub css_set_subsys: u32,
    /// `cgroup_subsys_state.cgroup` (`struct cgroup *`).
    pub css_cgroup: u32,
    /// `cgroup.kn` (`struct kernfs_node *`).
    pub cgroup_kn: u32,
    /// `cgroup.root` (`struct cgroup_root *`).
    pub cgroup_root: u32,
    /// `cgroup.level` (`int`).
    pub cgroup_level: u32,
    /// `cgroup_root.hierarchy_id` (`int`).
    pub cgroup_root_hierarchy_id: u32,
    /// `kernfs_node.id` (`u64`).
    pub kernfs_node_id: u32,
    /// Index in `css_set.subsys` of the v1 controller whose cgroup is tracked (the value
    /// of `enum cgroup_subsys_id`, e.g. `memory_cgrp_id`).
    pub v1_subsys_index: u32,
    /// 1 when a v1 hierarchy is tracked (`v1_subsys_index` is valid), 0 otherwise.
    pub track_v1: u32,
    /// 1 once the daemon filled this struct; the programs do nothing while it is 0.
    pub ready: u32,

    // Block IO (`blkio.rs`). Missing members on other kernels or configs turn the block-IO
    // program (`io_ready`) or one attribution source (`io_memcg`, `io_blkg`) off, never the
    // whole load.
    /// 1 when the members below needed for every bio (op, size, disk) are known.
    pub io_ready: u32,
    /// Position of `struct bio *` among `block_bio_queue`'s arguments: 0 since Linux 5.11
    /// (`TP_PROTO(struct bio *bio)`), 1 before (`struct request_queue *q, struct bio *bio`).
    pub bio_queue_bio_arg: u32,
    /// `bio.bi_bdev` (`struct block_device *`, 5.12+), or `bio.bi_disk` (`struct gendisk *`)
    /// when `bio_disk_direct` is 1.
    pub bio_bdev: u32,
    /// 1 when `bio_bdev` is the offset of `bi_disk` (kernels before 5.12).
    pub bio_disk_direct: u32,
    /// `bio.bi_opf` (`blk_opf_t`, a `u32`): the op in its low bits, flags above.
    pub bio_opf: u32,
    /// `bio.bi_iter.bi_size` (`unsigned int`): bytes of the bio.
    pub bio_size: u32,
    /// `bio.bi_io_vec` (`struct bio_vec *`).
    pub bio_io_vec: u32,
    /// `block_device.bd_disk` (`struct gendisk *`).
    pub bdev_disk: u32,
    /// `gendisk.major` (`int`).
    pub disk_major: u32,
    /// `gendisk.first_minor` (`int`).
    pub disk_first_minor: u32,
    /// `REQ_OP_MASK`: `(1 << REQ_OP_BITS) - 1`, where `REQ_OP_BITS` is the first flag bit
    /// (`__REQ_FAILFAST_DEV` in `enum req_flag_bits`).
    pub req_op_mask: u32,
    /// 1 when the first data page's memory cgroup can be read (`CONFIG_MEMCG`).
    pub io_memcg: u32,
    /// `bio_vec.bv_page` (`struct page *`).
    pub bvec_page: u32,
    /// `page.compound_head` (`unsigned long`, bit 0 set on tail pages).
    pub page_compound_head: u32,
    /// `page.memcg_data` (`unsigned long`, same offset as `folio.memcg_data`).
    pub page_memcg_data: u32,
    /// Low bits of `memcg_data` that are flags: `__NR_MEMCG_DATA_FLAGS - 1`.
    pub memcg_data_flags_mask: u32,
    /// `MEMCG_DATA_KMEM`: `memcg_data` points to an `obj_cgroup`, not a `mem_cgroup`.
    pub memcg_data_kmem: u32,
    /// `obj_cgroup.memcg` (`struct mem_cgroup *`).
    pub obj_cgroup_memcg: u32,
    /// `mem_cgroup.css` (`struct cgroup_subsys_state`, embedded).
    pub memcg_css: u32,
    /// 1 when the bio's block cgroup can be read (`CONFIG_BLK_CGROUP`).
    pub io_blkg: u32,
    /// `bio.bi_blkg` (`struct blkcg_gq *`).
    pub bio_blkg: u32,
    /// `blkcg_gq.blkcg` (`struct blkcg *`).
    pub blkg_blkcg: u32,
    /// `blkcg.css` (`struct cgroup_subsys_state`, embedded).
    pub blkcg_css: u32,

    // Cgroup values (`cgroup_values.rs`). Each controller's group is used only when all its
    // members are known (`*_ready`); a missing one sends its files back to cgroupfs.
    /// `cgroup.subsys` (`struct cgroup_subsys_state *[]`): a v1 cgroup has the css of each
    /// controller of its hierarchy there, a v2 cgroup that of each controller enabled for it
    /// (its parent's `cgroup.subtree_control`), NULL for the others.
    pub cgroup_subsys: u32,
    /// 1 when the memory members below are known.
    pub values_memory_ready: u32,
    /// `memory_cgrp_id`.
    pub memory_subsys_id: u32,
    /// `mem_cgroup.memory` (`struct page_counter`, embedded).
    pub memcg_memory: u32,
    /// 1 when `memcg_kmem` is known (`CONFIG_MEMCG_V1`).
    pub values_kmem_ready: u32,
    /// `mem_cgroup.kmem` (`struct page_counter`, embedded).
    pub memcg_kmem: u32,
    /// 1 when `memcg_soft_limit` is known (`CONFIG_MEMCG_V1` on 6.11+, always before).
    pub values_soft_limit_ready: u32,
    /// `mem_cgroup.soft_limit` (`unsigned long`, pages).
    pub memcg_soft_limit: u32,
    /// 1 when `memcg_oom_kill` is known.
    pub values_oom_kill_ready: u32,
    /// `mem_cgroup.memory_events[MEMCG_OOM_KILL]` (`atomic_long_t`): what `memory.oom_control`
    /// prints as `oom_kill`.
    pub memcg_oom_kill: u32,
    /// `page_counter.usage` (`atomic_long_t`).
    pub page_counter_usage: u32,
    /// `page_counter.watermark` (`unsigned long`).
    pub page_counter_watermark: u32,
    /// `page_counter.failcnt` (`unsigned long`).
    pub page_counter_failcnt: u32,
    /// 1 when the v2 memory members below are known (read for cgroups of the v2 hierarchy).
    pub values_v2_memory_ready: u32,
    /// `mem_cgroup.swap` (`struct page_counter`, in a union with v1's `memsw`).
    pub memcg_swap: u32,
    /// `page_counter.max` (`unsigned long`).
    pub page_counter_max: u32,
    /// `page_counter.high` (`unsigned long`).
    pub page_counter_high: u32,
    /// `page_counter.low` (`unsigned long`).
    pub page_counter_low: u32,
    /// 1 when the CPU members below are known (`CONFIG_CFS_BANDWIDTH`).
    pub values_cpu_ready: u32,
    /// `cpu_cgrp_id`.
    pub cpu_subsys_id: u32,
    /// `task_group.shares` (`unsigned long`).
    pub tg_shares: u32,
    /// `task_group.cfs_bandwidth` (`struct cfs_bandwidth`, embedded).
    pub tg_cfs_bandwidth: u32,
    /// `cfs_bandwidth.period` (`ktime_t`).
    pub cfs_b_period: u32,
    /// `cfs_bandwidth.quota` (`u64`).
    pub cfs_b_quota: u32,
    /// `cfs_bandwidth.nr_periods` (`int`).
    pub cfs_b_nr_periods: u32,
    /// `cfs_bandwidth.nr_throttled` (`int`).
    pub cfs_b_nr_throttled: u32,
    /// `cfs_bandwidth.throttled_time` (`u64`).
    pub cfs_b_throttled_time: u32,
    /// 1 when the PIDs members below are known.
    pub values_pids_ready: u32,
    /// `pids_cgrp_id`.
    pub pids_subsys_id: u32,
    /// `pids_cgroup.counter` (`atomic64_t`).
    pub pids_counter: u32,
    /// `pids_cgroup.limit` (`atomic64_t`).
    pub pids_limit: u32,
    /// 1 when the cpuset members below are known.
    pub values_cpuset_ready: u32,
    /// `cpuset_cgrp_id`.
    pub cpuset_subsys_id: u32,
    /// `cpuset.effective_cpus` (`cpumask_var_t`).
    pub cpuset_effective_cpus: u32,
    /// 1 when `cpumask_var_t` is a pointer (`CONFIG_CPUMASK_OFFSTACK`), 0 when the mask is
    /// embedded.
    pub cpumask_indirect: u32,
    /// 64-bit words of a mask that hold CPU bits: `nr_cpu_ids` rounded up (at most 64).
    pub cpumask_words: u32,
    /// Bits of the last word that are CPUs (`nr_cpu_ids % 64`, 0 for all 64).
    pub cpumask_last_bits: u32,
}

// The kernel programs and the daemon read these bytes with one layout: a field added,
// removed or resized must fail the build on both sides, not misread a map.
const _: () = assert!(size_of::<KernelOffsets>() == 320 && align_of::<KernelOffsets>() == 4); // 80 u32 fields

#[cfg(feature = "user")]
// SAFETY: repr(C), only u32 fields, no padding.
unsafe impl aya::Pod for KernelOffsets {}
