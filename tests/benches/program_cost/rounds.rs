//! Rounds: without and with the daemon, alternating.

use crate::{
    Config,
    daemon::{Cpu, foreign_bpf, process_cpu, start_daemon, stop_daemon},
    workloads::{fork_exit, tcp_measurement},
};

/// One phase's results.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Phase {
    pub mib_per_s: f64,
    pub ns_per_fork: f64,
    /// The daemon's own CPU (user and kernel) per fork+exit during the fork loop: the cost of
    /// consuming the programs' events, on whichever CPU it ran.
    pub daemon_ns_per_fork: f64,
    /// The daemon's time slices per fork+exit during the fork loop: how often it was woken.
    pub daemon_wakeups_per_fork: f64,
}

/// One round: without and with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Round {
    pub without: Phase,
    pub with: Phase,
    /// Attached BPF programs of other processes seen just before the "without" phase.
    pub foreign: usize,
}

pub(crate) fn measure(forks: u32, tcp_bytes: u64, daemon: Option<u32>) -> Phase {
    let mib_per_s = tcp_measurement(tcp_bytes);
    let before = daemon.map(process_cpu);
    let ns_per_fork = fork_exit(forks);
    let daemon_cpu = daemon.zip(before).map_or(Cpu::default(), |(pid, before)| {
        let after = process_cpu(pid);
        Cpu {
            ns: after.ns.saturating_sub(before.ns),
            slices: after.slices.saturating_sub(before.slices),
        }
    });
    #[expect(clippy::cast_precision_loss, reason = "counts are far below 2^53")]
    let per_fork = |v: u64| v as f64 / f64::from(forks);
    Phase {
        mib_per_s,
        ns_per_fork,
        daemon_ns_per_fork: per_fork(daemon_cpu.ns),
        daemon_wakeups_per_fork: per_fork(daemon_cpu.slices),
    }
}

/// A warm-up of both workloads, then `config.rounds` rounds of without and with, the first
/// flipping every round; the daemon runs only during "with".
pub(crate) fn run_rounds(config: &Config) -> Vec<Round> {
    let _ = measure(config.forks / 10 + 1, config.tcp_bytes / 8, None);
    (0..config.rounds)
        .map(|round| {
            let with_first = round % 2 == 1;
            let mut result = Round {
                without: Phase::default(),
                with: Phase::default(),
                foreign: 0,
            };
            for with in [with_first, !with_first] {
                if with {
                    let (daemon, programs) = start_daemon();
                    result.with = measure(config.forks, config.tcp_bytes, Some(daemon.pid()));
                    stop_daemon(daemon, &programs);
                } else {
                    result.foreign = foreign_bpf().values().map(|(_, hooks)| hooks.len()).sum();
                    result.without = measure(config.forks, config.tcp_bytes, None);
                }
            }
            result
        })
        .collect()
}
