//! Start-up seeding: a task iterator (`iter/task`, kernel 5.8+) that walks every task once,
//! inserts each live process into `PROCESSES` unless a tracepoint already did (its entry is
//! newer), and writes the same record to the iterator's file for the daemon. This gives the
//! exact kernel start times and cgroup ids that later events carry (procfs has start times
//! in clock ticks only), without racing a /proc walk against the tracepoints.
use core::ffi::c_void;

use aya_ebpf::helpers::{bpf_ktime_get_boot_ns, generated::bpf_seq_write};
use collector_common::{
    counters::READ_ERRORS,
    event::{KIND_SEED, ProcessEvent},
};

use crate::{
    counters::bump,
    kernel::{ReadError, Task, offsets},
    process::{Insert, insert_unless_exiting, process_info},
};

/// Size of a seed record.
#[expect(clippy::cast_possible_truncation, reason = "a 64-byte record")]
const RECORD_LEN: u32 = size_of::<ProcessEvent>() as u32;

/// `BPF_NOEXIST`: insert only if absent.
const BPF_NOEXIST: u64 = 1;

/// `struct bpf_iter__task { struct bpf_iter_meta *meta; struct task_struct *task; }` and
/// `struct bpf_iter_meta { struct seq_file *seq; ... }`: fixed by the iterator ABI.
#[repr(C)]
struct IterTaskContext {
    meta: *const *mut c_void,
    task: *const u8,
}

#[unsafe(no_mangle)]
#[unsafe(link_section = "iter/task")]
pub(crate) extern "C" fn seed_tasks(ctx: *mut c_void) -> i32 {
    let ctx = ctx.cast::<IterTaskContext>();
    // SAFETY: the iterator context layout is fixed by the kernel ABI (see above); `meta`
    // is never null, `task` is null on the final call.
    let (meta, task) = unsafe { ((*ctx).meta, (*ctx).task) };
    if task.is_null() {
        return 0;
    }
    // SAFETY: as above.
    let seq = unsafe { *meta };
    let Some(o) = offsets() else { return 0 };
    if try_seed(o, seq, Task(task)).is_err() {
        bump(READ_ERRORS);
    }
    0
}

fn try_seed(
    o: &collector_common::offsets::KernelOffsets,
    seq: *mut c_void,
    task: Task,
) -> Result<(), ReadError> {
    let tgid = task.tgid(o)?;
    // One record per process: its leader. Skip groups already dead (their exit tracepoint
    // has run or is running; an entry written now would be stale).
    if task.pid(o)? != tgid || task.group_dead(o)? {
        return Ok(());
    }
    let info = process_info(o, task, collector_common::process::FLAG_SEEDED)?;
    // The group can begin to exit between the check above and the insert.
    if insert_unless_exiting(o, task, tgid, info, BPF_NOEXIST)? == Insert::Exiting {
        return Ok(());
    }
    let record = ProcessEvent {
        kind: KIND_SEED,
        tgid,
        info,
        // SAFETY: helper without preconditions.
        timestamp_ns: unsafe { bpf_ktime_get_boot_ns() },
        comm: task.comm(o)?,
    };
    // SAFETY: `seq` is the iterator's seq_file; the record is on the stack, size exact.
    unsafe {
        bpf_seq_write(seq.cast(), (&raw const record).cast(), RECORD_LEN);
    }
    Ok(())
}
