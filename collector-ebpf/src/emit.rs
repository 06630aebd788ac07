//! Writing events into the ring buffer. A full buffer is counted, never silently dropped.
//!
//! Waking the reader is what an event costs most: a wakeup is an `irq_work` self-IPI, several
//! times the cost of the rest of a fork's program (figures in docs/benchmarks.md). So events
//! are submitted without a wakeup, and the reader is woken only once the buffer is a quarter
//! full; the daemon otherwise drains on a short timer and before every lookup, which is what
//! keeps answers current.
use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP, BPF_RB_RING_SIZE},
    helpers::bpf_ktime_get_boot_ns,
    programs::BtfTracePointContext,
};
use collector_common::{
    counters::EVENTS_LOST,
    event::{COMM_LEN, ProcessEvent},
    process::ProcessInfo,
};

use crate::{counters::failure, maps::EVENTS};

pub(crate) fn process_event(
    ctx: &BtfTracePointContext,
    kind: u32,
    tgid: u32,
    info: ProcessInfo,
    comm: [u8; COMM_LEN],
) {
    let Some(mut entry) = EVENTS.reserve::<ProcessEvent>(0) else {
        failure(ctx, EVENTS_LOST, "event ring buffer full, event lost", tgid);
        return;
    };
    entry.write(ProcessEvent {
        kind,
        tgid,
        info,
        // SAFETY: helper without preconditions.
        timestamp_ns: unsafe { bpf_ktime_get_boot_ns() },
        comm,
    });
    entry.submit(submit_flags());
}

/// `BPF_RB_FORCE_WAKEUP` once a quarter of the buffer waits to be read, else
/// `BPF_RB_NO_WAKEUP`.
#[inline(always)]
pub(crate) fn submit_flags() -> u64 {
    let waiting = EVENTS.query(u64::from(BPF_RB_AVAIL_DATA));
    let size = EVENTS.query(u64::from(BPF_RB_RING_SIZE));
    if waiting.saturating_mul(4) >= size {
        u64::from(BPF_RB_FORCE_WAKEUP)
    } else {
        u64::from(BPF_RB_NO_WAKEUP)
    }
}
