//! Names of maps, globals and programs: the strings the daemon looks up in the loaded
//! object. The kernel side uses the same names for its statics and functions.

/// Hash map: thread-group id (the PID userspace sees) → [`crate::process::ProcessInfo`].
/// Pinned under bpffs so that other eBPF programs can resolve a PID to its cgroups.
pub const PROCESSES_MAP: &str = "PROCESSES";
/// Ring buffer of lifecycle events ([`crate::event`]).
pub const EVENTS_MAP: &str = "EVENTS";
/// Per-CPU array of [`crate::counters`].
pub const COUNTERS_MAP: &str = "COUNTERS";
/// Per-CPU hash: cgroup-v2 id → [`crate::usage::NetMapValue`]. Pinned as `net_counters`.
pub const NET_COUNTERS_MAP: &str = "NET_COUNTERS";
/// Per-CPU hash: [`crate::usage::IoMapKey`] → [`crate::usage::IoMapValue`]. Pinned as
/// `io_counters`.
pub const IO_COUNTERS_MAP: &str = "IO_COUNTERS";
/// Array (mmapable): slot n → [`crate::cgroup_values::CgroupValues`] of the nth cgroup of
/// the last cgroup walk.
pub const CGROUP_VALUES_MAP: &str = "CGROUP_VALUES";
/// Array of one [`crate::cgroup_values::CgroupWalk`]: how the last walk ended.
pub const CGROUP_WALK_MAP: &str = "CGROUP_WALK";
/// Array of one [`crate::persist::PinState`]: the layout version of the pinned maps and the
/// stamp of the programs whose links are pinned beside them. Written by the daemon only.
pub const PIN_STATE_MAP: &str = "PIN_STATE";
/// Ring buffer of aya-log's records (created by `aya-log-ebpf`).
pub const AYA_LOGS_MAP: &str = "AYA_LOGS";
/// Global [`crate::offsets::KernelOffsets`], set by the daemon before loading.
pub const OFFSETS_GLOBAL: &str = "OFFSETS";

/// BTF tracepoint on `task_newtask`: a new task (process or thread) exists, not yet running.
pub const PROGRAM_TASK_NEWTASK: &str = "on_task_newtask";
/// BTF tracepoint on `sched_process_exec`.
pub const PROGRAM_PROCESS_EXEC: &str = "on_process_exec";
/// BTF tracepoint on `sched_process_exit`.
pub const PROGRAM_PROCESS_EXIT: &str = "on_process_exit";
/// BTF tracepoint on `cgroup_attach_task`: a task moved between cgroups.
pub const PROGRAM_CGROUP_ATTACH: &str = "on_cgroup_attach_task";
/// BTF tracepoint on `cgroup_mkdir`.
pub const PROGRAM_CGROUP_MKDIR: &str = "on_cgroup_mkdir";
/// BTF tracepoint on `cgroup_rmdir`.
pub const PROGRAM_CGROUP_RMDIR: &str = "on_cgroup_rmdir";

/// `cgroup_skb/ingress` program counting received traffic per cgroup (attached to the
/// cgroup-v2 root).
pub const PROGRAM_NET_INGRESS: &str = "count_ingress";
/// `cgroup_skb/egress` program counting sent traffic per cgroup (attached to the cgroup-v2
/// root).
pub const PROGRAM_NET_EGRESS: &str = "count_egress";
/// BTF tracepoint on `block_bio_queue` counting block IO per owning cgroup and disk.
pub const PROGRAM_BLOCK_BIO_QUEUE: &str = "on_block_bio_queue";
/// The tracepoint [`PROGRAM_BLOCK_BIO_QUEUE`] attaches to.
pub const TRACEPOINT_BLOCK_BIO_QUEUE: &str = "block_bio_queue";

/// Task iterator (`iter/task`) that seeds `PROCESSES` with the processes alive at start-up
/// and writes them to its file for the daemon.
pub const PROGRAM_SEED_TASKS: &str = "seed_tasks";

/// Cgroup iterator (`iter/cgroup`) that writes each cgroup's v1 counters and limits into
/// `CGROUP_VALUES`, walked once per hierarchy per full collection.
pub const PROGRAM_CGROUP_VALUES: &str = "read_cgroup_values";

/// Every program of the object with the kernel tracepoint it attaches to, in the order
/// they are attached: those that forget (process exit, cgroup removal) before those that
/// record. A process that forks after `task_newtask` is attached has its entry written, and
/// if `sched_process_exit` were not attached yet, its exit would leave that entry in
/// `PROCESSES` for good; the other way round, a process the programs miss at start-up is
/// found by the task iterator, which runs once all of them are attached.
pub const BTF_TRACEPOINTS: [(&str, &str); 6] = [
    (PROGRAM_PROCESS_EXIT, "sched_process_exit"),
    (PROGRAM_CGROUP_RMDIR, "cgroup_rmdir"),
    (PROGRAM_PROCESS_EXEC, "sched_process_exec"),
    (PROGRAM_CGROUP_ATTACH, "cgroup_attach_task"),
    (PROGRAM_CGROUP_MKDIR, "cgroup_mkdir"),
    (PROGRAM_TASK_NEWTASK, "task_newtask"),
];
