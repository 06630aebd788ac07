//! The `PROCESSES` map's value: what the kernel knows about one live process.

/// Flag: the process has exec'd at least once since the programs were attached.
pub const FLAG_EXECED: u32 = 1;
/// Flag: the entry was written at start-up (task iterator or procfs), not by a tracepoint.
pub const FLAG_SEEDED: u32 = 2;
/// Flag: the start time comes from procfs, at clock-tick resolution, for a process the
/// task iterator did not report (it skips some, e.g. PID 1 on some 6.x kernels).
pub const FLAG_PROCFS: u32 = 4;

/// One live process (thread group), keyed by its thread-group id in `PROCESSES`.
///
/// Identity is `(tgid, start_boottime_ns)`: a reused PID has a different start time.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcessInfo {
    /// `task_struct.start_boottime` of the thread-group leader, in ns since boot
    /// (suspend included). `/proc/<pid>/stat` field 22 is this value in clock ticks.
    pub start_boottime_ns: u64,
    /// Id of the process's cgroup-v2 cgroup (the inode of its directory); the root's id
    /// where no v2 hierarchy is mounted.
    pub cgroup_v2_id: u64,
    /// Id of the process's cgroup in the one tracked v1 hierarchy (normally `memory`),
    /// 0 when no v1 hierarchy is tracked.
    pub cgroup_v1_id: u64,
    /// Thread-group id of the parent at fork time.
    pub ppid: u32,
    /// `FLAG_*` bits.
    pub flags: u32,
}

// The kernel programs and the daemon read these bytes with one layout: a field added,
// removed or resized must fail the build on both sides, not misread a map.
const _: () = assert!(size_of::<ProcessInfo>() == 32 && align_of::<ProcessInfo>() == 8); // 8+8+8+4+4 bytes

#[cfg(feature = "user")]
// SAFETY: repr(C), only integer fields, no padding (8+8+8+4+4 bytes).
unsafe impl aya::Pod for ProcessInfo {}
