//! Cgroup lifecycle: a task moved between cgroups (`cgroup_attach_task`), and cgroups
//! created or removed (`cgroup_mkdir`, `cgroup_rmdir`) in any hierarchy, v1 or v2.
//!
//! `cgroup_attach_task` fires once per migration, after it completed (the task's `css_set`
//! is already the new one), with the thread-group leader when a whole process moved.
use aya_ebpf::{
    EbpfContext as _, bindings::BPF_ANY, helpers::bpf_probe_read_kernel_str_bytes,
    macros::btf_tracepoint, programs::BtfTracePointContext,
};
use collector_common::{
    counters::{
        ATTACHES, CGROUPS_CREATED, CGROUPS_REMOVED, EVENTS_LOST, PROCESS_MAP_FULL, READ_ERRORS,
    },
    event::{CGROUP_PATH_LEN, CgroupEvent, KIND_ATTACH, KIND_CGROUP_MKDIR, KIND_CGROUP_RMDIR},
    offsets::KernelOffsets,
};

use crate::{
    counters::{bump, failure},
    emit,
    kernel::{Direct, ReadError, Task, cgroup_hierarchy_id, cgroup_id, cgroup_level, offsets},
    maps::{EVENTS, PROCESSES},
    process::{Insert, insert_unless_exiting, process_info},
};

#[btf_tracepoint(function = "cgroup_attach_task")]
pub(crate) fn on_cgroup_attach_task(ctx: BtfTracePointContext) -> i32 {
    let Some(o) = offsets() else { return 0 };
    // (struct cgroup *dst_cgrp, const char *path, struct task_struct *task, bool threadgroup)
    let task = Task(ctx.arg::<*const u8>(2));
    if try_on_cgroup_attach_task(&ctx, o, task).is_err() {
        failure(
            &ctx,
            READ_ERRORS,
            "cgroup_attach_task: kernel read failed",
            ctx.tgid(),
        );
    }
    0
}

fn try_on_cgroup_attach_task(
    ctx: &BtfTracePointContext,
    o: &KernelOffsets,
    task: Task,
) -> Result<(), ReadError> {
    let tgid = task.tgid(o)?;
    // A lone non-leader thread moved (v1 `tasks`, v2 `cgroup.threads`): the process's
    // cgroup is its leader's, which did not move.
    if task.pid(o)? != tgid {
        return Ok(());
    }
    let (v2, v1) = task.cgroup_ids(o)?;
    let info = match PROCESSES.get_ptr_mut(tgid) {
        Some(entry) => {
            // SAFETY: valid map value pointer; see process.rs on concurrent writers.
            unsafe {
                if (*entry).cgroup_v2_id == v2 && (*entry).cgroup_v1_id == v1 {
                    // Moved within a hierarchy that is not tracked (say, v1 `cpu`).
                    return Ok(());
                }
                (*entry).cgroup_v2_id = v2;
                (*entry).cgroup_v1_id = v1;
                *entry
            }
        }
        None => {
            // The tracepoint also fires for a process that was exiting (even a zombie)
            // when it was written to `cgroup.procs`: the move skipped its exiting threads.
            let info = process_info(o, task, 0)?;
            match insert_unless_exiting(o, task, tgid, info, u64::from(BPF_ANY))? {
                Insert::Exiting => return Ok(()),
                Insert::Refused => failure(
                    ctx,
                    PROCESS_MAP_FULL,
                    "PROCESSES map full, process not tracked",
                    tgid,
                ),
                Insert::Kept => {}
            }
            info
        }
    };
    bump(ATTACHES);
    emit::process_event(ctx, KIND_ATTACH, tgid, info, task.comm(o)?);
    Ok(())
}

#[btf_tracepoint(function = "cgroup_mkdir")]
pub(crate) fn on_cgroup_mkdir(ctx: BtfTracePointContext) -> i32 {
    cgroup_event(&ctx, KIND_CGROUP_MKDIR, CGROUPS_CREATED)
}

#[btf_tracepoint(function = "cgroup_rmdir")]
pub(crate) fn on_cgroup_rmdir(ctx: BtfTracePointContext) -> i32 {
    cgroup_event(&ctx, KIND_CGROUP_RMDIR, CGROUPS_REMOVED)
}

#[inline(always)]
fn cgroup_event(ctx: &BtfTracePointContext, kind: u32, counter: u32) -> i32 {
    let Some(o) = offsets() else { return 0 };
    bump(counter);
    // (struct cgroup *cgrp, const char *path)
    let cgroup = ctx.arg::<*const u8>(0);
    let path = ctx.arg::<*const u8>(1);
    if try_cgroup_event(ctx, o, kind, cgroup, path).is_err() {
        failure(ctx, READ_ERRORS, "cgroup event: kernel read failed", 0);
    }
    0
}

fn try_cgroup_event(
    ctx: &BtfTracePointContext,
    o: &KernelOffsets,
    kind: u32,
    cgroup: *const u8,
    path: *const u8,
) -> Result<(), ReadError> {
    let hierarchy_id = cgroup_hierarchy_id::<Direct>(cgroup, o)?;
    let cgroup_id = cgroup_id::<Direct>(cgroup, o)?;
    let level = cgroup_level::<Direct>(cgroup, o)?;
    let Some(mut entry) = EVENTS.reserve::<CgroupEvent>(0) else {
        failure(ctx, EVENTS_LOST, "event ring buffer full, event lost", 0);
        return Ok(());
    };
    let event = entry.as_mut_ptr();
    // SAFETY: `event` points at reserved ring-buffer memory the size of a CgroupEvent; the
    // fields are written one by one to avoid a 1 KiB copy through the 512-byte BPF stack.
    let read = unsafe {
        (*event).kind = kind;
        (*event).hierarchy_id = hierarchy_id;
        (*event).cgroup_id = cgroup_id;
        (*event).level = level;
        let buf: &mut [u8; CGROUP_PATH_LEN] = &mut (*event).path;
        bpf_probe_read_kernel_str_bytes(path, buf).map(<[u8]>::len)
    };
    match read {
        Ok(len) => {
            #[expect(
                clippy::cast_possible_truncation,
                reason = "len <= CGROUP_PATH_LEN (1024)"
            )]
            let len = len as u32;
            // SAFETY: as above.
            unsafe { (*event).path_len = len };
            entry.submit(emit::submit_flags());
            Ok(())
        }
        Err(_) => {
            entry.discard(0);
            Err(ReadError)
        }
    }
}
