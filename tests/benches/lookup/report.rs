//! Report.

use std::{fs, thread, time::Duration};

use crate::{
    Config,
    scenarios::{Measured, Mode, Scenario, Via, n_threads},
    setup::Daemons,
};

/// The sample at permille `q` of `sorted` (nearest rank).
pub(crate) fn percentile(sorted: &[Duration], q: usize) -> Duration {
    let rank = (sorted.len() * q).div_ceil(1000).max(1);
    sorted[rank.min(sorted.len()) - 1]
}

/// Latency summary of one row.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Summary {
    pub per_second: f64,
    pub p50: Duration,
    pub p99: Duration,
    pub p999: Duration,
}

pub(crate) fn summarize(measured: &Measured) -> Summary {
    let mut sorted = measured.latencies.clone();
    sorted.sort_unstable();
    if sorted.is_empty() {
        sorted.push(Duration::ZERO);
    }
    // Counts stay far below 2^32, so the conversion is exact.
    let lookups = u32::try_from(measured.lookups).map_or(f64::from(u32::MAX), f64::from);
    Summary {
        per_second: lookups / measured.wall.as_secs_f64().max(f64::MIN_POSITIVE),
        p50: percentile(&sorted, 500),
        p99: percentile(&sorted, 990),
        p999: percentile(&sorted, 999),
    }
}

pub(crate) fn fmt_duration(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{:.1} µs", d.as_secs_f64() * 1e6)
    } else {
        format!("{:.2} ms", d.as_secs_f64() * 1e3)
    }
}

/// `1234567.8` as `1,234,568`.
pub(crate) fn fmt_rate(rate: f64) -> String {
    let digits = format!("{rate:.0}");
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub(crate) fn print_setup(config: &Config, daemons: &Daemons, took: Duration) {
    let Daemons {
        ebpf,
        no_ebpf,
        baseline,
    } = daemons;
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpus = thread::available_parallelism().map_or(0, usize::from);
    let health = ebpf.healthz();
    println!();
    println!("collector lookup bench");
    println!(
        "  machine: {cpus} CPUs, kernel {}, cgroup mode {}",
        kernel.trim(),
        health["cgroup_mode"]
    );
    println!(
        "  processes: {} sleepers, {} in {} docker-like cgroups \
         (system.slice/docker-<64 hex>.scope), {} outside",
        config.processes(),
        config.containers * config.per_container,
        config.containers,
        config.plain
    );
    println!(
        "  eBPF daemon: pid {}, ebpf {}, processes_live {}, cgroups {}",
        ebpf.pid(),
        health["ebpf"],
        health["processes_live"],
        health["cgroups"]
    );
    let health = no_ebpf.healthz();
    println!(
        "  --no-ebpf daemon: pid {}, ebpf {} ({})",
        no_ebpf.pid(),
        health["ebpf"],
        health["ebpf_disabled_reason"]
    );
    if let Some((bin, baseline)) = baseline {
        let health = baseline.healthz();
        println!(
            "  {}: pid {}, ebpf {}, processes_live {}, cgroups {}; binary {} \
             (COLLECTOR_BASELINE_DAEMON_BIN), started as the eBPF daemon",
            Via::BaselineDaemon.name(),
            baseline.pid(),
            health["ebpf"],
            health["processes_live"],
            health["cgroups"],
            bin.display()
        );
    }
    println!("  set-up took {:.1} s", took.as_secs_f64());
    println!(
        "  method: warm-up, then {} interleaved rounds per row (alternating order); latency per \
         request / batch / in-process lookup; lookups/s over wall time; answers checked \
         outside the clock",
        config.rounds
    );
}

pub(crate) fn print_table(scenarios: &[Scenario<'_>], config: &Config, took: Duration) {
    println!();
    println!(
        "{:<17} {:<36} {:>7} {:>8} {:>11} {:>10} {:>10} {:>10}",
        "who answers", "how", "samples", "per", "lookups/s", "p50", "p99", "p99.9"
    );
    println!("{}", "-".repeat(114));
    let mut last_via = None;
    for s in scenarios {
        if last_via.is_some_and(|v| v != s.via) {
            println!();
        }
        last_via = Some(s.via);
        let sum = summarize(&s.measured);
        println!(
            "{:<17} {:<36} {:>7} {:>8} {:>11} {:>10} {:>10} {:>10}{}",
            s.via.name(),
            s.mode.describe(config.batch_size),
            s.measured.latencies.len(),
            s.mode.sample_unit(),
            fmt_rate(sum.per_second),
            fmt_duration(sum.p50),
            fmt_duration(sum.p99),
            fmt_duration(sum.p999),
            if s.measured.capped {
                "  (cut at time cap)"
            } else {
                ""
            }
        );
    }
    println!("{}", "-".repeat(114));
    println!("measured in {:.1} s", took.as_secs_f64());
}

pub(crate) fn find_summary(scenarios: &[Scenario<'_>], via: Via, mode: Mode) -> Summary {
    let s = scenarios
        .iter()
        .find(|s| s.is(via, mode))
        .expect("every row exists");
    summarize(&s.measured)
}

pub(crate) fn print_ratios(scenarios: &[Scenario<'_>]) {
    let get = |via, mode| find_summary(scenarios, via, mode);
    let single = get(Via::EbpfDaemon, Mode::KeepAlive);
    let same_cpu = get(Via::EbpfDaemon, Mode::KeepAliveSameCpu);
    let single_new = get(Via::EbpfDaemon, Mode::NewConnection);
    let read = get(Via::InProcess, Mode::Read { threads: 1 });
    println!();
    println!("ratios (same run)");
    println!("  single lookup latency, eBPF daemon / in-process /proc read (1 thread):");
    print_latency_ratio("keep-alive", single, read, 1);
    print_latency_ratio("keep-alive, same CPU", same_cpu, read, 1);
    print_latency_ratio("new connection each", single_new, read, 1);
    println!(
        "  batched lookups/s, eBPF daemon / in-process /proc read / --no-ebpf daemon batched:"
    );
    for threads in [1, 2] {
        let ebpf = get(Via::EbpfDaemon, Mode::Batched { threads }).per_second;
        let read = get(Via::InProcess, Mode::Read { threads }).per_second;
        let procfs = get(Via::ProcfsDaemon, Mode::Batched { threads }).per_second;
        println!(
            "    {:<22} {} / {} / {}  ->  eBPF {:.1}x the in-process read, {:.1}x the \
             --no-ebpf daemon",
            format!("{}:", n_threads(threads)),
            fmt_rate(ebpf),
            fmt_rate(read),
            fmt_rate(procfs),
            ebpf / read,
            ebpf / procfs,
        );
    }
    let best_batched = [1, 2]
        .map(|threads| get(Via::EbpfDaemon, Mode::Batched { threads }).per_second)
        .into_iter()
        .fold(0.0, f64::max);
    if scenarios.iter().any(|s| s.via == Via::BaselineDaemon) {
        print_baseline_ratios(scenarios);
    }
    let verdict = |pass: bool| if pass { "PASS" } else { "MISS" };
    println!();
    println!("targets (informational, not asserted)");
    println!(
        "  p99 single lookup < 100 µs (eBPF daemon, keep-alive): {} -> {}   \
         (same CPU: {}, new connection each: {})",
        fmt_duration(single.p99),
        verdict(single.p99 < Duration::from_micros(100)),
        fmt_duration(same_cpu.p99),
        fmt_duration(single_new.p99),
    );
    println!(
        "  batched >= 200,000 lookups/s (eBPF daemon, best of 1 and 2 threads): {}/s -> {}",
        fmt_rate(best_batched),
        verdict(best_batched >= 200_000.0),
    );
}

/// One line: p50 and p99 of `a` over those of `b`, the ratios with `decimals` decimals.
pub(crate) fn print_latency_ratio(label: &str, a: Summary, b: Summary, decimals: usize) {
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(f64::MIN_POSITIVE);
    println!(
        "    {:<22} p50 {} / {} = {:.decimals$}x    p99 {} / {} = {:.decimals$}x",
        format!("{label}:"),
        fmt_duration(a.p50),
        fmt_duration(b.p50),
        ratio(a.p50, b.p50),
        fmt_duration(a.p99),
        fmt_duration(b.p99),
        ratio(a.p99, b.p99),
    );
}

/// This build's eBPF daemon over the baseline build's, row by row (same run): latency of the
/// single lookups, lookups/s of the batches. Within noise, the ratios sit around 1.00x.
pub(crate) fn print_baseline_ratios(scenarios: &[Scenario<'_>]) {
    let get = |via, mode| find_summary(scenarios, via, mode);
    println!(
        "  this build / baseline, eBPF daemons (same run, same arguments; 1.00x = no change):"
    );
    for (label, mode) in [
        ("keep-alive", Mode::KeepAlive),
        ("keep-alive, same CPU", Mode::KeepAliveSameCpu),
        ("new connection each", Mode::NewConnection),
    ] {
        let (this, base) = (get(Via::EbpfDaemon, mode), get(Via::BaselineDaemon, mode));
        print_latency_ratio(label, this, base, 2);
    }
    for threads in [1, 2] {
        let mode = Mode::Batched { threads };
        let (this, base) = (get(Via::EbpfDaemon, mode), get(Via::BaselineDaemon, mode));
        println!(
            "    {:<22} {} / {} lookups/s = {:.2}x    batch p50 {:.2}x  p99 {:.2}x",
            format!("batched, {}:", n_threads(threads)),
            fmt_rate(this.per_second),
            fmt_rate(base.per_second),
            this.per_second / base.per_second.max(f64::MIN_POSITIVE),
            this.p50.as_secs_f64() / base.p50.as_secs_f64().max(f64::MIN_POSITIVE),
            this.p99.as_secs_f64() / base.p99.as_secs_f64().max(f64::MIN_POSITIVE),
        );
    }
}
