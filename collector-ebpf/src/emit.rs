//! Writing events into the ring buffer. A full buffer is counted, never silently dropped.
use aya_ebpf::{helpers::bpf_ktime_get_boot_ns, programs::BtfTracePointContext};
use collector_common::{
    counters::EVENTS_LOST,
    event::{COMM_LEN, ProcessEvent},
    process::ProcessInfo,
};

use crate::{counters::failure, maps::EVENTS};

pub fn process_event(
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
    entry.submit(0);
}
