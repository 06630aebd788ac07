//! Reads of kernel structures at offsets taken from the running kernel's BTF.
//!
//! Pointer chains used (kernel 5.5+; offsets differ per build, names do not):
//! `task_struct.cgroups → css_set.dfl_cgrp → cgroup.kn → kernfs_node.id` is the task's
//! cgroup-v2 id (what `bpf_get_current_cgroup_id()` returns, and the directory's inode);
//! `css_set.subsys[i] → cgroup_subsys_state.cgroup → ...` the same for the v1 hierarchy of
//! controller `i`.
//!
//! Two ways to read, both fault-safe:
//!
//! * [`Direct`]: a plain load. Every program here gets its kernel pointers as BTF-typed
//!   arguments (`tp_btf` arguments, the `iter/task` context's `task`), which the verifier
//!   tracks as `PTR_TO_BTF_ID`. A load through such a pointer at a constant offset is checked
//!   against the type's BTF (`btf_struct_access()`: the offset and size must fall within a
//!   member) and rewritten into a `BPF_PROBE_MEM` load, whose exception-table entry turns a
//!   fault (a NULL or freed pointer) into the value 0 instead of an oops; loading a pointer
//!   member yields a `PTR_TO_BTF_ID` of the pointee, so whole chains stay typed. The offsets
//!   are constants to the verifier: they are read from `.rodata`, which aya creates with
//!   `BPF_F_RDONLY_PROG` and freezes before loading, so the verifier reads the values
//!   (`bpf_map_direct_read()`). A load costs a few ns where a helper call cost ~40.
//!   The catch: a failed load cannot be told from a stored 0. Pointers are checked for NULL
//!   before they are followed (a NULL base is a [`ReadError`]), and values that are never 0
//!   in a live object (tgid, pid, kernfs id) are reported as a `ReadError` when they are.
//! * [`Probe`]: `bpf_probe_read_kernel`, for addresses the verifier sees as plain numbers
//!   (decoded from tagged `unsigned long` fields such as `page.memcg_data`), through which it
//!   allows no loads; a failed read is a `ReadError`.
use aya_ebpf::helpers::bpf_probe_read_kernel;
use collector_common::{event::COMM_LEN, offsets::KernelOffsets};

use crate::maps::OFFSETS;

/// A read failed: a NULL pointer, a bad address, or a value only a failed load gives.
pub(crate) struct ReadError;

/// The offsets, or `None` while the daemon has not filled them in.
///
/// A reference into the global (a read-only map value), not a copy: the struct is ~200
/// bytes, and a copy on the 512-byte BPF stack of every program left too little room for
/// the rest. The pointer goes through `black_box` so that the compiler, which sees the
/// all-zero initialiser of a read-only static, cannot fold field reads into constants (what
/// `Global::load`'s volatile read prevents for a copy); the loader overwrites the value.
#[inline(always)]
pub(crate) fn offsets() -> Option<&'static KernelOffsets> {
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

/// How a member is read: [`Direct`] through a `PTR_TO_BTF_ID`, [`Probe`] through a helper.
pub(crate) trait Access {
    /// The `T` at `base + offset`; `Err` when `base` is NULL or the read failed.
    fn read<T: Copy>(base: *const u8, offset: u32) -> Result<T, ReadError>;
}

/// Direct loads through a verifier-typed kernel pointer (see the module docs). Using it on
/// a pointer the verifier sees as a number fails the load, not at run time.
pub(crate) struct Direct;

impl Access for Direct {
    #[inline(always)]
    fn read<T: Copy>(base: *const u8, offset: u32) -> Result<T, ReadError> {
        if base.is_null() {
            return Err(ReadError);
        }
        // SAFETY: the verifier turns this load into a `BPF_PROBE_MEM` load, checked against
        // the BTF type of `base` (see the module docs): a bad address reads as 0, no fault.
        // `offset` is a BTF member offset, aligned for `T`.
        Ok(unsafe { core::ptr::read_volatile(base.wrapping_add(offset as usize).cast::<T>()) })
    }
}

/// `bpf_probe_read_kernel`, for addresses the verifier knows only as numbers.
pub(crate) struct Probe;

impl Access for Probe {
    #[inline(always)]
    fn read<T: Copy>(base: *const u8, offset: u32) -> Result<T, ReadError> {
        if base.is_null() {
            return Err(ReadError);
        }
        // SAFETY: bpf_probe_read_kernel validates the address and fails instead of faulting.
        unsafe { bpf_probe_read_kernel(base.wrapping_add(offset as usize).cast::<T>()) }
            .map_err(|_| ReadError)
    }
}

/// A direct read (the common case): see [`Direct`].
#[inline(always)]
pub(crate) fn read<T: Copy>(base: *const u8, offset: u32) -> Result<T, ReadError> {
    Direct::read(base, offset)
}

/// A value that is never 0 in a live object: 0 means the direct load failed.
#[inline(always)]
fn nonzero<T: Copy + PartialEq + Default>(value: T) -> Result<T, ReadError> {
    if value == T::default() {
        Err(ReadError)
    } else {
        Ok(value)
    }
}

/// A `struct task_struct *` from a tracepoint argument.
#[derive(Clone, Copy)]
pub(crate) struct Task(pub *const u8);

impl Task {
    /// The thread id; never 0 for the tasks the programs see (the idle tasks never fork,
    /// exec, exit or move, nor are they iterated).
    pub(crate) fn pid(self, o: &KernelOffsets) -> Result<u32, ReadError> {
        nonzero(read::<u32>(self.0, o.task_pid)?)
    }

    /// The thread-group id; never 0, as `pid`.
    pub(crate) fn tgid(self, o: &KernelOffsets) -> Result<u32, ReadError> {
        nonzero(read::<u32>(self.0, o.task_tgid)?)
    }

    /// The thread-group id of a task that may be an idle task (tgid 0): the real parent of
    /// PID 1 and of `kthreadd` is `swapper/0`, so a parent's tgid of 0 is an answer, not a
    /// failed read (which would also read 0, and is then taken for that answer).
    pub(crate) fn parent_tgid(self, o: &KernelOffsets) -> Result<u32, ReadError> {
        read::<u32>(self.0, o.task_tgid)
    }

    pub(crate) fn start_boottime_ns(self, o: &KernelOffsets) -> Result<u64, ReadError> {
        read::<u64>(self.0, o.task_start_boottime)
    }

    /// `comm`, as two 8-byte loads (BPF loads are at most 8 bytes; the verifier allows any
    /// load inside the `char[16]` member). An empty name is possible, so 0 is no error.
    pub(crate) fn comm(self, o: &KernelOffsets) -> Result<[u8; COMM_LEN], ReadError> {
        const HALF: usize = COMM_LEN / 2;
        let low = read::<u64>(self.0, o.task_comm)?;
        #[expect(clippy::cast_possible_truncation, reason = "HALF is 8")]
        let high = read::<u64>(self.0, o.task_comm + HALF as u32)?;
        let mut comm = [0; COMM_LEN];
        comm[..HALF].copy_from_slice(&low.to_ne_bytes());
        comm[HALF..].copy_from_slice(&high.to_ne_bytes());
        Ok(comm)
    }

    pub(crate) fn group_leader(self, o: &KernelOffsets) -> Result<Task, ReadError> {
        read::<*const u8>(self.0, o.task_group_leader).map(Task)
    }

    pub(crate) fn real_parent(self, o: &KernelOffsets) -> Result<Task, ReadError> {
        read::<*const u8>(self.0, o.task_real_parent).map(Task)
    }

    /// True when no thread of the task's group is alive any more. `do_exit` decrements
    /// `signal->live` before it fires `sched_process_exit`, in every kernel since 2.6.
    /// (A failed direct load of `live` would read as 0, "dead"; `signal` of a task the
    /// kernel hands us is valid for the task's lifetime, so it does not fail.)
    pub(crate) fn group_dead(self, o: &KernelOffsets) -> Result<bool, ReadError> {
        let signal = read::<*const u8>(self.0, o.task_signal)?;
        read::<i32>(signal, o.signal_live).map(|live| live <= 0)
    }

    /// The task's cgroup-v2 id and, when a v1 hierarchy is tracked, its cgroup id there
    /// (0 when not tracked or not attached).
    pub(crate) fn cgroup_ids(self, o: &KernelOffsets) -> Result<(u64, u64), ReadError> {
        let css_set = read::<*const u8>(self.0, o.task_cgroups)?;
        let dfl = read::<*const u8>(css_set, o.css_set_dfl_cgrp)?;
        let v2 = cgroup_id::<Direct>(dfl, o)?;
        if o.track_v1 == 0 {
            return Ok((v2, 0));
        }
        let slot = o.css_set_subsys + o.v1_subsys_index * 8;
        // An element boundary of the `subsys` pointer array, as the verifier requires.
        // NULL: not attached to that hierarchy (a failed direct load reads the same).
        let css = read::<*const u8>(css_set, slot)?;
        if css.is_null() {
            return Ok((v2, 0));
        }
        let cgroup = read::<*const u8>(css, o.css_cgroup)?;
        Ok((v2, cgroup_id::<Direct>(cgroup, o)?))
    }
}

/// `cgroup->kn->id` of a `struct cgroup *`. kernfs ids start at 1, so 0 is a failed read.
#[inline(always)]
pub(crate) fn cgroup_id<A: Access>(cgroup: *const u8, o: &KernelOffsets) -> Result<u64, ReadError> {
    let kn = A::read::<*const u8>(cgroup, o.cgroup_kn)?;
    nonzero(A::read::<u64>(kn, o.kernfs_node_id)?)
}

/// `cgroup->root->hierarchy_id` of a `struct cgroup *`: 0 for the v2 hierarchy (so a failed
/// direct load reads as v2; `root` itself is checked for NULL).
#[inline(always)]
pub(crate) fn cgroup_hierarchy_id<A: Access>(
    cgroup: *const u8,
    o: &KernelOffsets,
) -> Result<u32, ReadError> {
    let root = A::read::<*const u8>(cgroup, o.cgroup_root)?;
    A::read::<u32>(root, o.cgroup_root_hierarchy_id)
}

/// `cgroup->level` of a `struct cgroup *` (0 for a root cgroup).
#[inline(always)]
pub(crate) fn cgroup_level<A: Access>(
    cgroup: *const u8,
    o: &KernelOffsets,
) -> Result<u32, ReadError> {
    A::read::<u32>(cgroup, o.cgroup_level)
}
