//! Reads of kernel structures at offsets taken from the running kernel's BTF.
//!
//! Pointer chains used (kernel 5.5+; offsets differ per build, names do not):
//! `task_struct.cgroups → css_set.dfl_cgrp → cgroup.kn → kernfs_node.id` is the task's
//! cgroup-v2 id (what `bpf_get_current_cgroup_id()` returns, and the directory's inode);
//! `css_set.subsys[i] → cgroup_subsys_state.cgroup → ...` the same for the v1 hierarchy of
//! controller `i`. `bpf_probe_read_kernel` makes every read fault-safe.
use aya_ebpf::helpers::bpf_probe_read_kernel;
use collector_common::{event::COMM_LEN, offsets::KernelOffsets};

use crate::maps::OFFSETS;

/// A read failed: a bad offset, or a pointer freed under us.
pub struct ReadError;

/// The offsets, or `None` while the daemon has not filled them in.
///
/// A reference into the global (a read-only map value), not a copy: the struct is ~200
/// bytes, and a copy on the 512-byte BPF stack of every program left too little room for
/// the rest. The pointer goes through `black_box` so that the compiler, which sees the
/// all-zero initialiser of a read-only static, cannot fold field reads into constants (what
/// `Global::load`'s volatile read prevents for a copy); the loader overwrites the value.
#[inline(always)]
pub fn offsets() -> Option<&'static KernelOffsets> {
    // `Global<T>` is `repr(transparent)` over `MaybeUninit<T>`, which has `T`'s layout.
    let pointer = core::hint::black_box((&raw const OFFSETS).cast::<KernelOffsets>());
    // SAFETY: a valid, aligned, initialised static that nothing writes at run time.
    let offsets = unsafe { &*pointer };
    if offsets.ready == 0 {
        None
    } else {
        Some(offsets)
    }
}

#[inline(always)]
pub fn read<T: Copy>(base: *const u8, offset: u32) -> Result<T, ReadError> {
    if base.is_null() {
        return Err(ReadError);
    }
    // SAFETY: bpf_probe_read_kernel validates the address and fails instead of faulting.
    unsafe { bpf_probe_read_kernel(base.wrapping_add(offset as usize).cast::<T>()) }
        .map_err(|_| ReadError)
}

/// A `struct task_struct *` from a tracepoint argument.
#[derive(Clone, Copy)]
pub struct Task(pub *const u8);

impl Task {
    pub fn pid(self, o: &KernelOffsets) -> Result<u32, ReadError> {
        read::<u32>(self.0, o.task_pid)
    }

    pub fn tgid(self, o: &KernelOffsets) -> Result<u32, ReadError> {
        read::<u32>(self.0, o.task_tgid)
    }

    pub fn start_boottime_ns(self, o: &KernelOffsets) -> Result<u64, ReadError> {
        read::<u64>(self.0, o.task_start_boottime)
    }

    pub fn comm(self, o: &KernelOffsets) -> Result<[u8; COMM_LEN], ReadError> {
        read::<[u8; COMM_LEN]>(self.0, o.task_comm)
    }

    pub fn group_leader(self, o: &KernelOffsets) -> Result<Task, ReadError> {
        read::<*const u8>(self.0, o.task_group_leader).map(Task)
    }

    pub fn real_parent(self, o: &KernelOffsets) -> Result<Task, ReadError> {
        read::<*const u8>(self.0, o.task_real_parent).map(Task)
    }

    /// True when no thread of the task's group is alive any more. `do_exit` decrements
    /// `signal->live` before it fires `sched_process_exit`, in every kernel since 2.6.
    pub fn group_dead(self, o: &KernelOffsets) -> Result<bool, ReadError> {
        let signal = read::<*const u8>(self.0, o.task_signal)?;
        read::<i32>(signal, o.signal_live).map(|live| live <= 0)
    }

    /// The task's cgroup-v2 id and, when a v1 hierarchy is tracked, its cgroup id there
    /// (0 when not tracked or not attached).
    pub fn cgroup_ids(self, o: &KernelOffsets) -> Result<(u64, u64), ReadError> {
        let css_set = read::<*const u8>(self.0, o.task_cgroups)?;
        let dfl = read::<*const u8>(css_set, o.css_set_dfl_cgrp)?;
        let v2 = cgroup_id(dfl, o)?;
        if o.track_v1 == 0 {
            return Ok((v2, 0));
        }
        let slot = o.css_set_subsys + o.v1_subsys_index * 8;
        let css = read::<*const u8>(css_set, slot)?;
        if css.is_null() {
            return Ok((v2, 0));
        }
        let cgroup = read::<*const u8>(css, o.css_cgroup)?;
        Ok((v2, cgroup_id(cgroup, o)?))
    }
}

/// `cgroup->kn->id` of a `struct cgroup *`.
pub fn cgroup_id(cgroup: *const u8, o: &KernelOffsets) -> Result<u64, ReadError> {
    let kn = read::<*const u8>(cgroup, o.cgroup_kn)?;
    read::<u64>(kn, o.kernfs_node_id)
}

/// `cgroup->root->hierarchy_id` of a `struct cgroup *`: 0 for the v2 hierarchy.
pub fn cgroup_hierarchy_id(cgroup: *const u8, o: &KernelOffsets) -> Result<u32, ReadError> {
    let root = read::<*const u8>(cgroup, o.cgroup_root)?;
    read::<u32>(root, o.cgroup_root_hierarchy_id)
}

/// `cgroup->level` of a `struct cgroup *`.
pub fn cgroup_level(cgroup: *const u8, o: &KernelOffsets) -> Result<u32, ReadError> {
    read::<u32>(cgroup, o.cgroup_level)
}
