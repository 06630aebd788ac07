//! Bumping the per-CPU counters, and rate-limited diagnostics through aya-log.
use aya_ebpf::EbpfContext;
use aya_log_ebpf::warn;

use crate::maps::COUNTERS;

/// Adds one to counter `index` and returns its new value on this CPU (0 if the slot is
/// missing, which the verifier forces us to handle but cannot happen for valid indices).
#[inline(always)]
pub(crate) fn bump(index: u32) -> u64 {
    match COUNTERS.get_ptr_mut(index) {
        Some(slot) => {
            // SAFETY: per-CPU slot, programs do not migrate CPUs while running.
            unsafe {
                *slot += 1;
                *slot
            }
        }
        None => 0,
    }
}

/// Counts a failure and logs it the 1st, 2nd, 4th, 8th, ... time on each CPU, so a
/// persistent failure (a full map, a bad offset) is visible without flooding the log.
#[inline(always)]
pub(crate) fn failure<C: EbpfContext>(ctx: &C, index: u32, what: &str, tgid: u32) {
    let n = bump(index);
    if n.is_power_of_two() {
        warn!(ctx, "{} (tgid {}, {} times on this cpu)", what, tgid, n);
    }
}
