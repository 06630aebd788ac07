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
}

#[cfg(feature = "user")]
// SAFETY: repr(C), only u32 fields, no padding.
unsafe impl aya::Pod for KernelOffsets {}
