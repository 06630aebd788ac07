//! Program cost bench: what the daemon's kernel programs cost everything else on the node,
//! measured as ratios with and without them attached, in one run on one machine:
//! - loopback TCP throughput: a client thread writes to a server thread over 127.0.0.1 in
//!   64 KiB writes; the `cgroup_skb` programs on the cgroup-v2 root run on every packet. A
//!   measurement is the median of 8 transfers, client and server pinned to two CPUs (the
//!   scheduler's placement otherwise moves the rate by tens of percent). Target: at most 2%
//!   throughput lost.
//! - fork+exit rate: `fork()` a child that `_exit(0)`s at once, `waitpid` it, in a loop; the
//!   lifecycle programs (`task_newtask`, `sched_process_exit`, ...) run on each. Target: at
//!   most 100 ns added per fork+exit.
//!
//! "With" is the daemon as normally started (eBPF loaded, `--metrics-addr none`); "without"
//! is no daemon at all. The daemon is started for each "with" phase and stopped after it, and
//! before each "without" phase the bench checks that none of its programs exists any more (by
//! id). With and without alternate within each round, the first one flipping every round,
//! and the ratios are taken per round (a round's with over the same round's without) before
//! the median, so a slow spell of the noisy VM hits both sides of a ratio alike. During the
//! fork loop the daemon's own CPU time and wake-ups (its threads' schedstat) are read too:
//! consuming the programs' events is part of what running it costs.
//!
//! End to end, 100 ns on a fork that takes over 100 µs on this VM is far below the noise, so
//! the bench also reads the kernel's own figure: one more phase with the daemon running and
//! BPF run-time statistics on (`BPF_ENABLE_STATS`, which is what `sysctl
//! kernel.bpf_stats_enabled=1` sets, released by the kernel when this process exits however it
//! exits) reads `run_time_ns`/`run_cnt` of each of the daemon's programs from
//! `/proc/<daemon>/fdinfo/<prog fd>` before and after each workload: ns per run per program,
//! and the kernel ns per fork+exit (and per MiB sent) summed over the programs the workload
//! caused (those that ran at least once per two forks, or per two MiB; the rest ran for other
//! activity of the machine meanwhile). Statistics stay off during the measured rounds, since
//! they add two clock reads to every program run.
//!
//! The same phase calibrates those figures with empty programs (`r0 = 0; exit`, or `r0 = 1`
//! for `cgroup_skb`, which must let the packet through), attached through links the bench
//! holds: as raw tracepoints to `task_newtask` and `sched_process_exit` during the fork loop
//! (raw and BTF tracepoint programs are called the same way, `bpf_trace_run*()`), and as
//! `cgroup_skb` ingress and egress on the cgroup-v2 root during the transfer. An empty
//! program's ns per run — the call and the statistics' own clock reads — is the part of every
//! program's figure that no program body can save: the floor of the kernel figures.
//!
//! BPF programs that other processes hold attached through link fds (another collector, say)
//! are listed at the start, counted before each "without" phase, and listed at the end: they run in both phases alike and so do not bias the ratios, but they make the
//! "without" baseline slower than a bare machine.
//!
//! `cargo xtask bench` runs it as root with `COLLECTOR_DAEMON_BIN`; a positional argument
//! runs only the benches whose name contains it (`cargo xtask bench -- program_cost`).
//! Without `--bench` (as `cargo test --benches` runs it) it is a quick smoke run with small
//! counts, and the targets are not judged.

mod daemon;
mod kernel;
mod report;
mod rounds;
mod workloads;

use std::time::Instant;

// Dependencies of the support lib and the integration tests that this bench does not use.
use {
    collector_common as _, collector_daemon as _, k8s_cri as _, rustls as _, rustls_pki_types as _,
    tempfile as _, tokio as _, tonic as _,
};

use crate::{
    daemon::foreign_bpf,
    kernel::kernel_stats,
    report::{print_foreign, print_kernel_stats, print_setup, print_table, print_targets},
    rounds::run_rounds,
};

/// Target: throughput with the programs at least this share of throughput without.
const TCP_TARGET: f64 = 0.98;
/// Target: at most this many ns added per fork+exit.
const FORK_TARGET_NS: f64 = 100.0;
/// Size of each write of the TCP client (and of the server's reads).
const WRITE_SIZE: usize = 64 * 1024;
const MIB: u64 = 1024 * 1024;

/// How much to do; [`Config::full`] for `cargo bench`, [`Config::quick`] otherwise.
#[derive(Debug, Clone)]
struct Config {
    rounds: usize,
    /// Bytes sent per TCP measurement.
    tcp_bytes: u64,
    /// fork+exit iterations per measurement.
    forks: u32,
    judge: bool,
}

impl Config {
    fn full() -> Self {
        Self {
            rounds: 16,
            tcp_bytes: 512 * MIB,
            forks: 2_000,
            judge: true,
        }
    }

    fn quick() -> Self {
        Self {
            rounds: 1,
            tcp_bytes: 16 * MIB,
            forks: 100,
            judge: false,
        }
    }
}

fn main() {
    let Some(full) = collector_tests::support::bench_start("program_cost") else {
        return;
    };
    let config = if full {
        Config::full()
    } else {
        Config::quick()
    };
    let others_before = foreign_bpf();
    print_setup(&config, &others_before);

    let started = Instant::now();
    let rounds = run_rounds(&config);
    let stats = kernel_stats(&config);
    let took = started.elapsed();

    let others_after = foreign_bpf();
    print_table(&rounds, &config, took);
    print_kernel_stats(&stats, &config);
    print_targets(&rounds, &stats, &config);
    if others_after != others_before {
        println!();
        println!("BPF programs of other processes at the end (changed during the run):");
        print_foreign(&others_after);
    }
}
