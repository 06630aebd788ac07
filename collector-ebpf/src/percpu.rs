//! Counting into the per-CPU hash maps (`NET_COUNTERS`, `IO_COUNTERS`).
use core::intrinsics::{AtomicOrdering, atomic_xadd};

use aya_ebpf::maps::PerCpuHashMap;

/// `BPF_NOEXIST`: insert only if absent.
const BPF_NOEXIST: u64 = 1;
/// `EEXIST`, negated as helpers return it.
const EEXIST: i32 = 17;

/// This CPU's value of `key`, inserted zeroed when absent: `Ok(None)` only when the daemon
/// removed the key between our insert and lookup (that one packet or bio goes uncounted),
/// `Err` with the insert's error when the map is full (`-E2BIG`) or the update failed.
///
/// Lookup first: nearly every packet or bio finds its cgroup's entry. On a miss, insert with
/// `BPF_NOEXIST` (never clobbering a value another CPU inserted meanwhile, `-EEXIST`), then
/// look up again. For a per-CPU hash a program's insert sets this CPU's copy and zeroes the
/// others (`pcpu_init_value()` in `kernel/bpf/hashtab.c`).
#[inline(always)]
pub(crate) fn entry<K, V: Default>(
    map: &PerCpuHashMap<K, V>,
    key: &K,
) -> Result<Option<*mut V>, i32> {
    if let Some(value) = map.get_ptr_mut(key) {
        return Ok(Some(value));
    }
    match map.insert(key, V::default(), BPF_NOEXIST) {
        Ok(()) => {}
        Err(e) if e == -EEXIST => {}
        Err(e) => return Err(e),
    }
    Ok(map.get_ptr_mut(key))
}

/// Adds `n` to a per-CPU counter.
///
/// Atomic although the slot is this CPU's own: programs run with migration disabled, not
/// with preemption or bottom halves disabled. An egress program in process context (TCP
/// `sendmsg`) can be interrupted by a softirq that transmits on the same socket (an ACK
/// opening the window: `tcp_write_xmit()` from `tcp_v4_rcv()`) and runs the same program on
/// the same value; a plain load-add-store would lose one of the two updates. An uncontended
/// atomic add on a line this CPU owns costs a few ns; with its result unused LLVM emits BPF's
/// `XADD` (`BPF_ATOMIC | BPF_ADD`), which every kernel with BPF supports.
///
/// `core::intrinsics::atomic_xadd` because the BPF target has no CAS, so `AtomicU64` offers
/// no `fetch_add` there, while the add itself is a native BPF instruction.
#[inline(always)]
pub(crate) fn add(counter: *mut u64, n: u64) {
    // SAFETY: `counter` points into a map value returned by a lookup, valid and 8-aligned
    // for the program's run (the maps are `BPF_F_NO_PREALLOC`: a deleted element is freed
    // only after an RCU grace period, and programs run inside an RCU read section).
    let _ = unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(counter, n) };
}
