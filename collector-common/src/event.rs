//! Lifecycle events streamed from the kernel to the daemon through the `EVENTS` ring buffer.
//!
//! Every record starts with a `u32` kind; the daemon reads it, then the record of that kind.
//! Events carry full state (not deltas), so applying them in ring-buffer order always ends
//! in the kernel's state, whatever a start-up scan saw in between.

use crate::process::ProcessInfo;

/// A process was created (`task_newtask`, threads excluded).
pub const KIND_FORK: u32 = 1;
/// A process exec'd (`sched_process_exec`).
pub const KIND_EXEC: u32 = 2;
/// A process's last thread exited (`sched_process_exit` with the group dead).
pub const KIND_EXIT: u32 = 3;
/// A process moved to another cgroup in a tracked hierarchy (`cgroup_attach_task`).
pub const KIND_ATTACH: u32 = 4;
/// A cgroup directory was created (`cgroup_mkdir`), in any hierarchy.
pub const KIND_CGROUP_MKDIR: u32 = 5;
/// A cgroup directory was removed (`cgroup_rmdir`), in any hierarchy.
pub const KIND_CGROUP_RMDIR: u32 = 6;
/// A live process found by the start-up task iterator (`seed_tasks`); these records go to
/// the iterator's file, not to the ring buffer.
pub const KIND_SEED: u32 = 7;

/// Length of `comm`, the kernel's `TASK_COMM_LEN`.
pub const COMM_LEN: usize = 16;
/// Room for a cgroup path: the kernel builds tracepoint cgroup paths in a buffer of
/// `TRACE_CGROUP_PATH_LEN` (1024) bytes, so nothing longer ever reaches a tracepoint.
pub const CGROUP_PATH_LEN: usize = 1024;

/// A process event: fork, exec, exit or attach.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ProcessEvent {
    /// One of `KIND_FORK`, `KIND_EXEC`, `KIND_EXIT`, `KIND_ATTACH`.
    pub kind: u32,
    /// Thread-group id.
    pub tgid: u32,
    /// The process's state after the event.
    pub info: ProcessInfo,
    /// `bpf_ktime_get_boot_ns()` when the event happened.
    pub timestamp_ns: u64,
    /// The task's command name (NUL-padded).
    pub comm: [u8; COMM_LEN],
}

/// A cgroup event: mkdir or rmdir.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CgroupEvent {
    /// `KIND_CGROUP_MKDIR` or `KIND_CGROUP_RMDIR`.
    pub kind: u32,
    /// `cgroup_root.hierarchy_id`: 0 for cgroup v2, the v1 hierarchy's id otherwise (the
    /// first column of `/proc/<pid>/cgroup`).
    pub hierarchy_id: u32,
    /// `cgroup.kn->id`: the cgroup id, equal to its directory's inode number.
    pub cgroup_id: u64,
    /// Depth below the hierarchy's root (the root is 0).
    pub level: u32,
    /// Bytes of `path` in use, NUL excluded.
    pub path_len: u32,
    /// Path from the hierarchy's root, `/`-separated, NUL-terminated.
    pub path: [u8; CGROUP_PATH_LEN],
}

// The kernel programs and the daemon read these bytes with one layout: a field added,
// removed or resized must fail the build on both sides, not misread a map.
const _: () = assert!(size_of::<ProcessEvent>() == 64 && align_of::<ProcessEvent>() == 8); // 4+4+32+8+16 bytes
const _: () = assert!(size_of::<CgroupEvent>() == 1048 && align_of::<CgroupEvent>() == 8); // 4+4+8+4+4+1024 bytes

#[cfg(feature = "user")]
// SAFETY: repr(C), integer fields and byte arrays, no padding (4+4+32+8+16 bytes).
unsafe impl aya::Pod for ProcessEvent {}
#[cfg(feature = "user")]
// SAFETY: repr(C), integer fields and a byte array, no padding (4+4+8+4+4+1024 bytes).
unsafe impl aya::Pod for CgroupEvent {}
