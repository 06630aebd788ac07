//! Process lifecycle: a new process (`task_newtask`), exec, and the exit of its last thread.
//!
//! `task_newtask` fires inside `copy_process()`, after the child has its PID and its final
//! cgroups (`cgroup_post_fork`, `CLONE_INTO_CGROUP` included) but before it can run. So its
//! fork event is always in the ring buffer before anything the child does, its exit above
//! all. (`sched_process_fork` fires only after `wake_up_new_task()`: a child that exits at
//! once on another CPU could have its exit event queued before its fork event.)
use aya_ebpf::{
    EbpfContext as _, bindings::BPF_ANY, macros::btf_tracepoint, programs::BtfTracePointContext,
};
use collector_common::{
    counters::{
        EXECS, PROCESS_MAP_FULL, PROCESSES_CREATED, PROCESSES_EXITED, READ_ERRORS, THREADS_CREATED,
    },
    event::{KIND_EXEC, KIND_EXIT, KIND_FORK},
    offsets::KernelOffsets,
    process::{FLAG_EXECED, ProcessInfo},
};

use crate::{
    counters::{bump, failure},
    emit,
    kernel::{ReadError, Task, offsets},
    maps::PROCESSES,
};

/// `CLONE_THREAD` from `include/uapi/linux/sched.h`: the new task is a thread of the caller.
const CLONE_THREAD: u64 = 0x0001_0000;

#[btf_tracepoint(function = "task_newtask")]
pub(crate) fn on_task_newtask(ctx: BtfTracePointContext) -> i32 {
    let Some(o) = offsets() else { return 0 };
    let task = Task(ctx.arg::<*const u8>(0));
    let clone_flags: u64 = ctx.arg(1);
    if clone_flags & CLONE_THREAD != 0 {
        bump(THREADS_CREATED);
        return 0;
    }
    if try_on_task_newtask(&ctx, o, task).is_err() {
        failure(&ctx, READ_ERRORS, "task_newtask: kernel read failed", 0);
    }
    0
}

fn try_on_task_newtask(
    ctx: &BtfTracePointContext,
    o: &KernelOffsets,
    task: Task,
) -> Result<(), ReadError> {
    let tgid = task.tgid(o)?;
    let info = process_info(o, task, 0)?;
    bump(PROCESSES_CREATED);
    track(ctx, tgid, info);
    emit::process_event(ctx, KIND_FORK, tgid, info, task.comm(o)?);
    Ok(())
}

#[btf_tracepoint(function = "sched_process_exec")]
pub(crate) fn on_process_exec(ctx: BtfTracePointContext) -> i32 {
    let Some(o) = offsets() else { return 0 };
    let task = Task(ctx.arg::<*const u8>(0));
    if try_on_process_exec(&ctx, o, task).is_err() {
        failure(
            &ctx,
            READ_ERRORS,
            "sched_process_exec: kernel read failed",
            ctx.tgid(),
        );
    }
    0
}

fn try_on_process_exec(
    ctx: &BtfTracePointContext,
    o: &KernelOffsets,
    task: Task,
) -> Result<(), ReadError> {
    // After de_thread() the exec'ing task is the group leader: tgid is the PID it keeps.
    let tgid = task.tgid(o)?;
    bump(EXECS);
    let info = match PROCESSES.get_ptr_mut(tgid) {
        Some(entry) => {
            // SAFETY: a valid map value pointer; concurrent writers only touch other keys
            // (one exec per process at a time) or write whole values of this one.
            unsafe {
                (*entry).flags |= FLAG_EXECED;
                *entry
            }
        }
        None => {
            // Not tracked (map was full, or the process predates the start-up scan).
            let info = process_info(o, task, FLAG_EXECED)?;
            track(ctx, tgid, info);
            info
        }
    };
    emit::process_event(ctx, KIND_EXEC, tgid, info, task.comm(o)?);
    Ok(())
}

#[btf_tracepoint(function = "sched_process_exit")]
pub(crate) fn on_process_exit(ctx: BtfTracePointContext) -> i32 {
    let Some(o) = offsets() else { return 0 };
    let task = Task(ctx.arg::<*const u8>(0));
    if try_on_process_exit(&ctx, o, task).is_err() {
        failure(
            &ctx,
            READ_ERRORS,
            "sched_process_exit: kernel read failed",
            ctx.tgid(),
        );
    }
    0
}

fn try_on_process_exit(
    ctx: &BtfTracePointContext,
    o: &KernelOffsets,
    task: Task,
) -> Result<(), ReadError> {
    // Fires once per exiting thread; the process is gone with its last thread.
    if !task.group_dead(o)? {
        return Ok(());
    }
    let tgid = task.tgid(o)?;
    bump(PROCESSES_EXITED);
    // SAFETY: the value is copied out before the key is removed.
    let info = match unsafe { PROCESSES.get(tgid) } {
        Some(info) => *info,
        None => process_info(o, task.group_leader(o)?, 0)?,
    };
    // An absent key (untracked process) is not an error worth counting.
    let _ = PROCESSES.remove(tgid);
    emit::process_event(ctx, KIND_EXIT, tgid, info, task.comm(o)?);
    Ok(())
}

/// Inserts or replaces the process's entry; a full map is counted and logged.
pub(crate) fn track(ctx: &BtfTracePointContext, tgid: u32, info: ProcessInfo) {
    if PROCESSES.insert(tgid, info, u64::from(BPF_ANY)).is_err() {
        failure(
            ctx,
            PROCESS_MAP_FULL,
            "PROCESSES map full, process not tracked",
            tgid,
        );
    }
}

/// What [`insert_unless_exiting`] did.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Insert {
    /// The entry is in the map.
    Kept,
    /// The process is exiting: no entry is left for it.
    Exiting,
    /// The map refused the insert (full, or the key exists under `BPF_NOEXIST`).
    Refused,
}

/// Inserts the entry of `task`'s process when no program has made one (a move or exec of
/// an untracked process, a task iterator record), unless the process is exiting. Such a
/// program runs in another task's context (the mover's, the iterator's), concurrently with
/// the process's own `do_exit`, which may have run `sched_process_exit` (and removed
/// nothing) already: an entry inserted then would outlive the process. `do_exit` decrements
/// `signal->live` before it fires that tracepoint, so `live` is read again after the
/// insert: still alive then means the exit's removal comes after the insert.
pub(crate) fn insert_unless_exiting(
    o: &KernelOffsets,
    task: Task,
    tgid: u32,
    info: ProcessInfo,
    flags: u64,
) -> Result<Insert, ReadError> {
    if task.group_dead(o)? {
        return Ok(Insert::Exiting);
    }
    if PROCESSES.insert(tgid, info, flags).is_err() {
        return Ok(Insert::Refused);
    }
    if task.group_dead(o)? {
        // Remove only the entry written here: the PID of a process whose exit completed
        // can be taken by a new one, whose own entry must stay.
        // SAFETY: the value is only compared.
        if unsafe { PROCESSES.get(tgid) }
            .is_some_and(|entry| entry.start_boottime_ns == info.start_boottime_ns)
        {
            let _ = PROCESSES.remove(tgid);
        }
        return Ok(Insert::Exiting);
    }
    Ok(Insert::Kept)
}

/// Builds the map value of a process from its (leader) task.
pub(crate) fn process_info(
    o: &KernelOffsets,
    task: Task,
    flags: u32,
) -> Result<ProcessInfo, ReadError> {
    let (cgroup_v2_id, cgroup_v1_id) = task.cgroup_ids(o)?;
    let ppid = task.real_parent(o)?.parent_tgid(o)?;
    Ok(ProcessInfo {
        start_boottime_ns: task.start_boottime_ns(o)?,
        cgroup_v2_id,
        cgroup_v1_id,
        ppid,
        flags,
    })
}
