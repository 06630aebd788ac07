//! The collector's kernel programs. They keep `PROCESSES` (thread-group id → cgroups) current
//! as processes fork, exec, exit and move between cgroups, and stream those lifecycle events
//! and cgroup mkdir/rmdir to the daemon through the `EVENTS` ring buffer. They also count
//! network traffic per cgroup (`net.rs`, `cgroup_skb`) and block IO per owning cgroup and
//! disk (`blkio.rs`) into per-CPU hash maps the daemon reads on demand.
//!
//! All other programs are BTF tracepoints (`tp_btf`, kernel ≥ 5.5): their arguments are typed kernel
//! pointers, with no tracefs record layout to depend on. Kernel struct members are read at
//! offsets the daemon computed from the running kernel's BTF (`kernel.rs`).
#![no_std]
#![no_main]
// `atomic_xadd`: atomic adds on per-CPU counters (see `percpu::add`).
#![feature(core_intrinsics)]
#![allow(
    internal_features,
    reason = "core_intrinsics for atomic_xadd, see percpu::add"
)]
#![allow(
    clippy::needless_pass_by_value,
    reason = "aya's program macros fix the entry points' signature: the context by value"
)]
#![allow(
    clippy::single_match_else,
    reason = "map lookups read better as a match on Some/None with both arms spelled out"
)]
#![allow(
    clippy::inline_always,
    reason = "small helpers on every program's path; inlining avoids BPF-to-BPF calls"
)]

use collector_ebpf as _;

mod blkio;
mod cgroup;
mod cgroup_values;
mod counters;
mod emit;
mod kernel;
mod maps;
mod net;
mod percpu;
mod process;
mod seed;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // Unreachable in a verified program: the verifier rejects any path that could get here.
    loop {}
}

// GPL: tp_btf programs and bpf_probe_read_kernel are GPL-only.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
