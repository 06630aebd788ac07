//! Report.

use std::{collections::BTreeMap, fs, thread, time::Duration};

use crate::{
    Config, FORK_TARGET_NS, MIB, TCP_TARGET, WRITE_SIZE,
    daemon::prog_type_name,
    kernel::{KernelStats, ProgDelta},
    rounds::Round,
};

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        f64::midpoint(v[mid - 1], v[mid])
    }
}

/// The value at rank ceil(0.9 n) of `v` (nearest rank).
pub(crate) fn p90(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let rank = (v.len() * 9).div_ceil(10).max(1);
    v.get(rank - 1).copied().unwrap_or(f64::NAN)
}

pub(crate) fn print_foreign(others: &BTreeMap<u32, (String, Vec<String>)>) {
    if others.is_empty() {
        println!("    none");
    }
    for (pid, (comm, hooks)) in others {
        let mut shown: Vec<&str> = hooks.iter().map(String::as_str).take(8).collect();
        if hooks.len() > shown.len() {
            shown.push("...");
        }
        println!(
            "    pid {pid} ({comm}): {} attached [{}]",
            hooks.len(),
            shown.join(", ")
        );
    }
}

pub(crate) fn print_setup(config: &Config, others: &BTreeMap<u32, (String, Vec<String>)>) {
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpus = thread::available_parallelism().map_or(0, usize::from);
    println!();
    println!("collector program cost bench (with vs without the eBPF daemon's programs)");
    println!("  machine: {cpus} CPUs, kernel {}", kernel.trim());
    println!(
        "  per measurement: {} MiB over loopback TCP in {} KiB writes; {} fork+exit+waitpid",
        config.tcp_bytes / MIB,
        WRITE_SIZE / 1024,
        config.forks
    );
    println!(
        "  method: warm-up, then {} rounds of without/with (order flipping each round; the \
         daemon started for each \"with\" and stopped after, its programs checked gone); ratios \
         per round, then the median",
        config.rounds
    );
    println!("  BPF programs of other processes (present in both phases):");
    print_foreign(others);
    if !others.is_empty() {
        println!(
            "    -> the \"without\" baseline already pays for these; the ratios measure what \
             this daemon adds on top"
        );
    }
}

/// The table of both phases' medians and p90s, then each round and the ratios.
pub(crate) fn print_table(rounds: &[Round], config: &Config, took: Duration) {
    print_summary(rounds);
    print_per_round(rounds, config, took);
}

/// One column of `rounds`: `f` of each round.
fn column(rounds: &[Round], f: fn(&Round) -> f64) -> Vec<f64> {
    rounds.iter().map(f).collect()
}

/// The measures' medians and p90s, without and with.
fn print_summary(rounds: &[Round]) {
    let col = |f: fn(&Round) -> f64| column(rounds, f);
    println!();
    println!(
        "{:<34} {:>6} {:>14} {:>14} {:>14} {:>14}",
        "measure", "rounds", "without p50", "with p50", "without p90", "with p90"
    );
    println!("{}", "-".repeat(101));
    println!(
        "{:<34} {:>6} {:>14.0} {:>14.0} {:>14.0} {:>14.0}",
        "loopback TCP, MiB/s",
        rounds.len(),
        median(col(|r| r.without.mib_per_s)),
        median(col(|r| r.with.mib_per_s)),
        p90(col(|r| r.without.mib_per_s)),
        p90(col(|r| r.with.mib_per_s)),
    );
    println!(
        "{:<34} {:>6} {:>14.0} {:>14.0} {:>14.0} {:>14.0}",
        "fork+exit+wait, ns each",
        rounds.len(),
        median(col(|r| r.without.ns_per_fork)),
        median(col(|r| r.with.ns_per_fork)),
        p90(col(|r| r.without.ns_per_fork)),
        p90(col(|r| r.with.ns_per_fork)),
    );
    println!(
        "{:<34} {:>6} {:>14.0} {:>14.0} {:>14.0} {:>14.0}",
        "fork+exit+wait, per second",
        rounds.len(),
        median(col(|r| 1e9 / r.without.ns_per_fork)),
        median(col(|r| 1e9 / r.with.ns_per_fork)),
        p90(col(|r| 1e9 / r.without.ns_per_fork)),
        p90(col(|r| 1e9 / r.with.ns_per_fork)),
    );
    println!(
        "{:<34} {:>6} {:>14} {:>14.0} {:>14} {:>14.0}",
        "daemon CPU per fork+exit, ns",
        rounds.len(),
        "-",
        median(col(|r| r.with.daemon_ns_per_fork)),
        "-",
        p90(col(|r| r.with.daemon_ns_per_fork)),
    );
    println!(
        "{:<34} {:>6} {:>14} {:>14.2} {:>14} {:>14.2}",
        "daemon wake-ups per fork+exit",
        rounds.len(),
        "-",
        median(col(|r| r.with.daemon_wakeups_per_fork)),
        "-",
        p90(col(|r| r.with.daemon_wakeups_per_fork)),
    );
    println!("{}", "-".repeat(101));
}

/// Each round's with / without, then the ratios (per round, then the median).
fn print_per_round(rounds: &[Round], config: &Config, took: Duration) {
    let col = |f: fn(&Round) -> f64| column(rounds, f);
    let tcp_ratio = col(|r| r.with.mib_per_s / r.without.mib_per_s);
    let fork_added = col(|r| r.with.ns_per_fork - r.without.ns_per_fork);
    println!("per round (with / without):");
    for (i, r) in rounds.iter().enumerate() {
        println!(
            "  round {:>2}: TCP {:>6.0} / {:>6.0} MiB/s = {:.3}    fork {:>8.0} / {:>8.0} ns = \
             {:+.0} ns{}",
            i + 1,
            r.with.mib_per_s,
            r.without.mib_per_s,
            tcp_ratio[i],
            r.with.ns_per_fork,
            r.without.ns_per_fork,
            fork_added[i],
            if r.foreign > 0 {
                format!("    ({} foreign BPF programs attached)", r.foreign)
            } else {
                String::new()
            },
        );
    }
    println!(
        "ratios (per round, then median): TCP throughput with/without {:.3} ({:+.2}% change); \
         fork+exit {:+.0} ns added (with/without {:.3})",
        median(tcp_ratio.clone()),
        (median(tcp_ratio) - 1.0) * 100.0,
        median(fork_added),
        median(col(|r| r.with.ns_per_fork / r.without.ns_per_fork)),
    );
    println!(
        "measured in {:.1} s (fork loop: {} iterations per measurement)",
        took.as_secs_f64(),
        config.forks
    );
}

/// Each of the daemon's programs over both workloads, then the totals.
pub(crate) fn print_kernel_stats(stats: &KernelStats, config: &Config) {
    println!();
    println!(
        "kernel-side cost (daemon running, BPF statistics on through {}; \
         kernel.bpf_stats_enabled before {} / after {})",
        stats.how, stats.sysctl_before, stats.sysctl_after
    );
    println!(
        "{:<24} {:<12} {:<26} {:>10} {:>9} {:>10} {:>9} {:>9}",
        "program", "type", "attached to", "TCP runs", "ns/run", "fork runs", "per fork", "ns/run"
    );
    println!("{}", "-".repeat(115));
    let per_run = |d: &ProgDelta| {
        if d.runs == 0 {
            "-".to_owned()
        } else {
            #[expect(clippy::cast_precision_loss, reason = "ns counts are far below 2^53")]
            let ns = d.ns as f64 / d.runs as f64;
            format!("{ns:.0}")
        }
    };
    for (tcp, fork) in stats.tcp.iter().zip(&stats.forks) {
        let id = tcp.id;
        let attached = stats
            .programs
            .attached
            .get(&id)
            .map_or_else(|| "(not attached)".to_owned(), |a| a.join(", "));
        #[expect(clippy::cast_precision_loss, reason = "run counts are far below 2^53")]
        let per_fork = fork.runs as f64 / f64::from(stats.fork_count);
        println!(
            "{:<24} {:<12} {:<26} {:>10} {:>9} {:>10} {:>9.2} {:>9}",
            stats
                .names
                .get(&id)
                .cloned()
                .unwrap_or_else(|| format!("prog {id}")),
            prog_type_name(stats.programs.progs.get(&id).map_or(u32::MAX, |p| p.kind)),
            attached,
            tcp.runs,
            per_run(tcp),
            fork.runs,
            per_fork,
            per_run(fork),
        );
    }
    println!("{}", "-".repeat(115));
    print_kernel_totals(stats, config);
}

/// The kernel figures per fork+exit and per MiB, beside their calibration by empty programs;
/// checks that the statistics sysctl was restored.
fn print_kernel_totals(stats: &KernelStats, config: &Config) {
    let totals = kernel_totals(stats);
    println!(
        "  fork+exit: {:.0} ns of program run time per fork+exit, programs that ran at least \
         once per 2 forks ({} forks; other programs meanwhile, left out: {:.0} ns per fork)",
        totals.per_fork, config.forks, totals.per_fork_left_out
    );
    println!(
        "  calibration: an empty program (r0 = 0; exit) on the same hooks, same loop: {}; {:.0} \
         ns per fork+exit is what any program pair costs by this measure",
        calibration_runs(&stats.empty),
        empty_total(&stats.empty) / f64::from(stats.fork_count),
    );
    println!(
        "  loopback TCP: {:.0} ns of program run time per MiB sent, programs that ran at least \
         once per 2 MiB ({:.0} MiB; other programs meanwhile, left out: {:.0} ns in all)",
        totals.tcp / stats.tcp_mib,
        stats.tcp_mib,
        totals.tcp_left_out
    );
    println!(
        "  calibration: an empty cgroup_skb program (r0 = 1; exit) on the cgroup-v2 root, same \
         transfer: {}; {:.0} ns per MiB sent is what any program pair there costs by this \
         measure",
        calibration_runs(&stats.empty_packet),
        empty_total(&stats.empty_packet) / stats.tcp_mib,
    );
    assert_eq!(
        stats.sysctl_before, stats.sysctl_after,
        "kernel.bpf_stats_enabled was not restored"
    );
}

/// Program run time that a workload causes, in ns. A program counts towards a workload when
/// it ran at least once per two units of it (forks, MiB): the lifecycle programs run on every
/// fork+exit and the packet programs on every few packets, while programs that ran less often
/// meanwhile were answering the rest of the machine (a build's IO, other traffic) and are
/// left out (their total is reported beside). `units` is the number of forks or MiB.
pub(crate) fn caused(deltas: &[ProgDelta], units: f64) -> (f64, f64) {
    #[expect(clippy::cast_precision_loss, reason = "counts are far below 2^53")]
    let (caused, other) = deltas.iter().fold((0.0, 0.0), |(caused, other), d| {
        if d.runs as f64 * 2.0 >= units {
            (caused + d.ns as f64, other)
        } else {
            (caused, other + d.ns as f64)
        }
    });
    (caused, other)
}

/// `ns / runs`, formatted; "-" when it never ran.
pub(crate) fn per_run_of(runs: u64, ns: u64) -> String {
    if runs == 0 {
        return "-".to_owned();
    }
    #[expect(clippy::cast_precision_loss, reason = "counts are far below 2^53")]
    let per_run = ns as f64 / runs as f64;
    format!("{per_run:.0}")
}

/// "hook N ns/run (R runs), ..." of empty programs.
pub(crate) fn calibration_runs(empty: &[(&str, (u64, u64))]) -> String {
    empty
        .iter()
        .map(|(hook, (runs, ns))| format!("{hook} {} ns/run ({runs} runs)", per_run_of(*runs, *ns)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The empty programs' total run time in ns: the floor of the kernel figure.
pub(crate) fn empty_total(empty: &[(&str, (u64, u64))]) -> f64 {
    #[expect(clippy::cast_precision_loss, reason = "ns counts are far below 2^53")]
    empty.iter().map(|(_, (_, ns))| *ns as f64).sum()
}

/// [`caused`] for both workloads.
pub(crate) fn kernel_totals(stats: &KernelStats) -> KernelTotals {
    let forks = f64::from(stats.fork_count);
    let (fork, fork_other) = caused(&stats.forks, forks);
    let (tcp, tcp_other) = caused(&stats.tcp, stats.tcp_mib);
    KernelTotals {
        per_fork: fork / forks,
        per_fork_left_out: fork_other / forks,
        tcp,
        tcp_left_out: tcp_other,
    }
}

/// Program run time in ns, see [`kernel_totals`].
pub(crate) struct KernelTotals {
    /// Per fork+exit, programs the forks caused.
    pub per_fork: f64,
    /// Per fork+exit, programs that ran for the rest of the machine meanwhile.
    pub per_fork_left_out: f64,
    /// The whole TCP phase, programs the transfer caused.
    pub tcp: f64,
    /// The whole TCP phase, programs that ran for the rest of the machine meanwhile.
    pub tcp_left_out: f64,
}

pub(crate) fn print_targets(rounds: &[Round], stats: &KernelStats, config: &Config) {
    println!();
    if !config.judge {
        println!("targets: not judged in quick mode (counts too small); run with --bench");
        return;
    }
    let verdict = |pass: bool| if pass { "PASS" } else { "MISS" };
    let tcp_ratio = median(
        rounds
            .iter()
            .map(|r| r.with.mib_per_s / r.without.mib_per_s)
            .collect(),
    );
    let fork_added = median(
        rounds
            .iter()
            .map(|r| r.with.ns_per_fork - r.without.ns_per_fork)
            .collect(),
    );
    let totals = kernel_totals(stats);
    let kernel_fork_ns = totals.per_fork;
    // The packet programs' time as a share of the transfer's wall time at the median "with"
    // rate: the loss if all of it lay on the critical path (it runs in the sender's and the
    // receiver's context, on two CPUs, so the real loss can only be lower).
    let with_mib_per_s = median(rounds.iter().map(|r| r.with.mib_per_s).collect());
    let transfer_ns = stats.tcp_mib / with_mib_per_s * 1e9;
    let tcp_share = totals.tcp / transfer_ns;
    println!("targets (informational, not asserted)");
    println!(
        "  loopback TCP throughput loss <= 2%: end to end {:+.2}% -> {}   (kernel: programs ran \
         {:.2}% of the transfer time -> {}; an empty program pair measures {:.2}%)",
        (tcp_ratio - 1.0) * 100.0,
        verdict(tcp_ratio >= TCP_TARGET),
        tcp_share * 100.0,
        verdict(tcp_share <= 1.0 - TCP_TARGET),
        empty_total(&stats.empty_packet) / transfer_ns * 100.0,
    );
    println!(
        "  fork+exit added <= 100 ns: kernel program time {kernel_fork_ns:.0} ns -> {}   (end to \
         end {fork_added:+.0} ns -> {}, on a fork+exit of ~{:.0} µs; an empty program pair \
         measures {:.0} ns)",
        verdict(kernel_fork_ns <= FORK_TARGET_NS),
        verdict(fork_added <= FORK_TARGET_NS),
        median(rounds.iter().map(|r| r.without.ns_per_fork).collect()) / 1e3,
        empty_total(&stats.empty) / f64::from(stats.fork_count),
    );
}
