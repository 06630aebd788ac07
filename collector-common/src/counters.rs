//! Indices of the per-CPU `COUNTERS` array: what the kernel programs did and, above all,
//! what they could not do (a lost event must be counted so the daemon can repair by re-scan).

/// A lifecycle event was dropped because the ring buffer was full.
pub const EVENTS_LOST: u32 = 0;
/// A process could not be inserted into `PROCESSES` (map full or update error).
pub const PROCESS_MAP_FULL: u32 = 1;
/// New threads seen (not inserted: the map is keyed by process).
pub const THREADS_CREATED: u32 = 2;
/// New processes seen.
pub const PROCESSES_CREATED: u32 = 3;
/// Processes whose last thread exited.
pub const PROCESSES_EXITED: u32 = 4;
/// Successful execs.
pub const EXECS: u32 = 5;
/// Task migrations between cgroups that changed a tracked cgroup of a process.
pub const ATTACHES: u32 = 6;
/// Cgroups created.
pub const CGROUPS_CREATED: u32 = 7;
/// Cgroups removed.
pub const CGROUPS_REMOVED: u32 = 8;
/// A kernel structure could not be read (bad offset or a racing free).
pub const READ_ERRORS: u32 = 9;
/// A cgroup's network traffic was not counted because `NET_COUNTERS` was full.
pub const NET_MAP_FULL: u32 = 10;
/// A cgroup's block IO was not counted because `IO_COUNTERS` was full.
pub const IO_MAP_FULL: u32 = 11;
/// A cgroup walk met more cgroups than `CGROUP_VALUES` has slots (those beyond are read
/// from their files).
pub const CGROUP_VALUES_FULL: u32 = 12;

/// Number of counters, the `COUNTERS` array's size.
pub const COUNT: u32 = 13;

/// Prometheus-friendly names, in index order.
pub const NAMES: [&str; COUNT as usize] = [
    "events_lost",
    "process_map_full",
    "threads_created",
    "processes_created",
    "processes_exited",
    "execs",
    "attaches",
    "cgroups_created",
    "cgroups_removed",
    "read_errors",
    "net_map_full",
    "io_map_full",
    "cgroup_values_full",
];
