//! Report.

use std::{fs, path::Path, thread, time::Duration};

use collector_tests::support::memory::{Breakdown, Memory, mib};

use crate::{
    CPU_TARGET, Config, METRICS_PATH, SCRAPE_TARGET, STATS_PATH,
    collect::{Build, Measured, Sample, Via, row_name},
    fleet::Fleet,
    floor::FloorRow,
    rounds::Row,
};

/// The sample at permille `q` of `sorted` (nearest rank).
pub(crate) fn percentile(sorted: &[Duration], q: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (sorted.len() * q).div_ceil(1000).max(1);
    sorted[rank.min(sorted.len()) - 1]
}

/// Median and p90 of wall and CPU time of a row.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Summary {
    pub wall_p50: Duration,
    pub wall_p90: Duration,
    pub cpu_p50: Duration,
    pub cpu_p90: Duration,
}

pub(crate) fn summarize(samples: &[Sample]) -> Summary {
    let sorted = |f: fn(&Sample) -> Duration| {
        let mut v: Vec<Duration> = samples.iter().map(f).collect();
        v.sort_unstable();
        v
    };
    let (wall, cpu) = (sorted(|s| s.wall), sorted(|s| s.cpu));
    Summary {
        wall_p50: percentile(&wall, 500),
        wall_p90: percentile(&wall, 900),
        cpu_p50: percentile(&cpu, 500),
        cpu_p90: percentile(&cpu, 900),
    }
}

pub(crate) fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

pub(crate) fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(f64::MIN_POSITIVE)
}

/// `d / n` in µs.
pub(crate) fn per_container(d: Duration, n: usize) -> String {
    let n = u32::try_from(n).map_or(f64::from(u32::MAX), f64::from);
    format!("{:.1} µs", d.as_secs_f64() * 1e6 / n.max(1.0))
}

pub(crate) fn print_setup(
    fleet: &Fleet,
    paths: &[Measured],
    baseline: Option<&Path>,
    daemons_took: Duration,
) {
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpus = thread::available_parallelism().map_or(0, usize::from);
    let health = paths[0].daemon.healthz();
    println!();
    println!(
        "collector stats bench (full collection: GET {STATS_PATH}; scrape: GET {METRICS_PATH})"
    );
    println!(
        "  machine: {cpus} CPUs, kernel {}, cgroup mode {}",
        kernel.trim(),
        health["cgroup_mode"]
    );
    println!(
        "  containers: {}/docker/<64 hex> in cgroup v2 and v1 {}, one sleep in each",
        fleet.cgroup.prefix(),
        fleet.controllers.join(", ")
    );
    for p in paths {
        println!(
            "  {}: pid {}, ebpf {}",
            p.name(),
            p.daemon.pid(),
            p.daemon.healthz()["ebpf"]
        );
    }
    if let Some(baseline) = baseline {
        println!(
            "  baseline build (COLLECTOR_BASELINE_DAEMON_BIN): {}, its eBPF daemon started with \
             the same arguments as this build's",
            baseline.display()
        );
    }
    println!("  daemons started in {:.1} s", daemons_took.as_secs_f64());
    println!(
        "  method: per size, a checked warm-up, then interleaved rounds taking turns request by \
         request, the order rotating every round; wall = client round trip (connect to last byte); CPU = \
         daemon's schedstat run time over all threads, before/after; answers checked outside \
         the clock"
    );
}

/// The table of every row, then the notes below it.
pub(crate) fn print_table(rows: &[Row], setup: &[(usize, Duration)], config: &Config) {
    print_rows(rows);
    print_table_notes(rows, setup, config);
}

/// One line per row: who collected, how many containers, wall and CPU time.
fn print_rows(rows: &[Row]) {
    // 17 wide unless a baseline row's name needs more.
    let who = rows.iter().map(|r| r.name().len() + 1).fold(17, usize::max);
    let rule = "-".repeat(97 + who);
    println!();
    println!(
        "{:>10} {:<who$} {:>7} {:>10} {:>10} {:>10} {:>10} {:>13} {:>9} {:>8}",
        "containers",
        "who collects",
        "samples",
        "wall p50",
        "wall p90",
        "CPU p50",
        "CPU p90",
        "CPU/container",
        "answer",
        "listed"
    );
    println!("{rule}");
    let mut last_size = None;
    for row in rows {
        if last_size.is_some_and(|s| s != row.size) {
            println!();
        }
        last_size = Some(row.size);
        let sum = summarize(&row.samples);
        println!(
            "{:>10} {:<who$} {:>7} {:>10} {:>10} {:>10} {:>10} {:>13} {:>6} KB {:>8}",
            row.size,
            row.name(),
            row.samples.len(),
            ms(sum.wall_p50),
            ms(sum.wall_p90),
            ms(sum.cpu_p50),
            ms(sum.cpu_p90),
            per_container(sum.cpu_p50, row.size),
            row.body_bytes / 1024,
            row.answer.containers,
        );
    }
    println!("{rule}");
}

/// Samples that undercount, the first size's `sources`, how long the set-up took.
fn print_table_notes(rows: &[Row], setup: &[(usize, Duration)], config: &Config) {
    for row in rows
        .iter()
        .filter(|r| r.samples.iter().any(|s| s.thread_exited))
    {
        let n = row.samples.iter().filter(|s| s.thread_exited).count();
        println!(
            "note: {} with {}: {n} samples saw a daemon thread exit (their CPU undercounts)",
            row.name(),
            row.size
        );
    }
    for row in rows
        .iter()
        .filter(|r| r.size == config.sizes[0] && !r.answer.sources.is_empty())
    {
        let sources: Vec<String> = row
            .answer
            .sources
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        println!("sources ({}): {}", row.name(), sources.join(" "));
    }
    let setup: Vec<String> = setup
        .iter()
        .scan(0, |from, &(to, took)| {
            let line = format!(
                "{} -> {to} containers in {:.1} s",
                *from,
                took.as_secs_f64()
            );
            *from = to;
            Some(line)
        })
        .collect();
    println!(
        "set-up (cgroups in v2 + v1, sleepers): {}",
        setup.join(", ")
    );
    println!(
        "(\"listed\" counts every container the answer held, test ones and any others on the \
         machine)"
    );
}

pub(crate) fn print_floor(rows: &[Row], floors: &[FloorRow]) {
    println!();
    println!(
        "floor: this bench reading the cgroup files the eBPF daemon reads (not those its kernel \
         walk replaces) through held descriptors (pread, no parsing) and stat()ing each \
         sleeper's /proc/<pid>/fd; its thread's CPU time"
    );
    for floor in floors {
        let f = summarize(&floor.samples);
        let over = |via: Via| {
            rows.iter()
                .find(|r| r.is(floor.size, Build::This, via))
                .map_or(f64::NAN, |r| {
                    ratio(summarize(&r.samples).cpu_p50, f.cpu_p50)
                })
        };
        println!(
            "  {:>5} containers, {:>5} files: CPU p50 {} p90 {} ({} a container); eBPF \
             daemon {:.2}x this, --no-ebpf daemon {:.2}x",
            floor.size,
            floor.files,
            ms(f.cpu_p50),
            ms(f.cpu_p90),
            per_container(f.cpu_p50, floor.size),
            over(Via::Ebpf),
            over(Via::Cgroupfs),
        );
    }
}

/// The summary of the row of `size` containers collected by `via` of `build`.
fn summary_of(rows: &[Row], size: usize, build: Build, via: Via) -> Summary {
    rows.iter()
        .find(|r| r.is(size, build, via))
        .map(|r| summarize(&r.samples))
        .expect("every row exists")
}

/// The ratios between the rows of the same run, then the targets.
pub(crate) fn print_ratios(rows: &[Row], floors: &[FloorRow], config: &Config) {
    let get = |size: usize, via: Via| summary_of(rows, size, Build::This, via);
    println!();
    println!("ratios eBPF daemon / --no-ebpf daemon (same run)");
    for &size in &config.sizes {
        let (e, c) = (get(size, Via::Ebpf), get(size, Via::Cgroupfs));
        println!(
            "  {size:>5} containers: wall p50 {:.2}x  p90 {:.2}x    CPU p50 {:.2}x  p90 {:.2}x",
            ratio(e.wall_p50, c.wall_p50),
            ratio(e.wall_p90, c.wall_p90),
            ratio(e.cpu_p50, c.cpu_p50),
            ratio(e.cpu_p90, c.cpu_p90),
        );
    }
    println!("ratios eBPF /metrics scrape / eBPF /v1/stats collection (same daemon, same run)");
    for &size in &config.sizes {
        let e = get(size, Via::Ebpf);
        for via in [Via::Scrape, Via::ScrapeGzip] {
            let s = get(size, via);
            let bytes = rows
                .iter()
                .find(|r| r.is(size, Build::This, via))
                .map_or(0, |r| r.body_bytes);
            println!(
                "  {size:>5} containers, {:<16}: CPU p50 {:.2}x  p90 {:.2}x    wall p50 {:.2}x    \
                 {} KB",
                via.name(),
                ratio(s.cpu_p50, e.cpu_p50),
                ratio(s.cpu_p90, e.cpu_p90),
                ratio(s.wall_p50, e.wall_p50),
                bytes / 1024,
            );
        }
    }
    if let [small, .., large] = config.sizes[..] {
        println!("scaling {small} -> {large} containers (CPU p50)");
        for via in [Via::Ebpf, Via::Cgroupfs] {
            let (s, l) = (get(small, via), get(large, via));
            println!(
                "  {:<17} {:.1}x for {:.1}x the containers",
                via.name(),
                ratio(l.cpu_p50, s.cpu_p50),
                f64::from(u32::try_from(large).unwrap_or(u32::MAX))
                    / f64::from(u32::try_from(small).unwrap_or(u32::MAX)).max(1.0),
            );
        }
    }
    if rows.iter().any(|r| r.build == Build::Baseline) {
        print_baseline_ratios(rows, config);
    }
    println!();
    if !config.judge {
        println!("targets: not judged in quick mode (counts too small); run with --bench");
        return;
    }
    print_targets(rows, floors, config);
}

/// The targets (informational): the collection's CPU, the scrape's over the collection's.
fn print_targets(rows: &[Row], floors: &[FloorRow], config: &Config) {
    let get = |size: usize, via: Via| summary_of(rows, size, Build::This, via);
    let large = *config.sizes.last().expect("one size");
    let verdict = |pass: bool| if pass { "PASS" } else { "MISS" };
    let (e, c) = (get(large, Via::Ebpf), get(large, Via::Cgroupfs));
    println!("targets (informational, not asserted)");
    println!(
        "  full collection for {large} containers < {} of CPU (eBPF daemon, p50): {} -> {}   \
         (p90 {}; --no-ebpf daemon p50 {} -> {})",
        ms(CPU_TARGET),
        ms(e.cpu_p50),
        verdict(e.cpu_p50 < CPU_TARGET),
        ms(e.cpu_p90),
        ms(c.cpu_p50),
        verdict(c.cpu_p50 < CPU_TARGET),
    );
    for size in &config.sizes {
        let (e, s) = (get(*size, Via::Ebpf), get(*size, Via::Scrape));
        let r = ratio(s.cpu_p50, e.cpu_p50);
        println!(
            "  scrape of {size} containers at most {SCRAPE_TARGET}x the collection's CPU (p50): \
             {} / {} = {r:.2}x -> {}",
            ms(s.cpu_p50),
            ms(e.cpu_p50),
            verdict(r <= SCRAPE_TARGET),
        );
    }
    if let Some(floor) = floors.iter().find(|f| f.size == large) {
        println!(
            "  of which the floor (the reads alone) is {}: {:.0}% of the target",
            ms(summarize(&floor.samples).cpu_p50),
            100.0 * ratio(summarize(&floor.samples).cpu_p50, CPU_TARGET),
        );
    }
}

/// This build over the baseline, row by row (same run): CPU and wall time of the collection and
/// of the scrapes, as ratios of the percentiles and as the median of the ratios of the pairs
/// measured in the same pass (every pass asks every path once, so a slow spell of the machine
/// that hits one of a pair likely hits the other). Within noise, the ratios sit around 1.00x.
fn print_baseline_ratios(rows: &[Row], config: &Config) {
    println!(
        "ratios this build / baseline (same run, same arguments; 1.00x = no change; paired = \
         median over passes of the ratio of the two CPU times of the same pass)"
    );
    for &size in &config.sizes {
        for (via, what) in [
            (Via::Ebpf, "/v1/stats collection"),
            (Via::Scrape, "/metrics scrape"),
            (Via::ScrapeGzip, "/metrics scrape gz"),
        ] {
            let row = |build| {
                rows.iter()
                    .find(|r| r.is(size, build, via))
                    .expect("every row exists")
            };
            let (this, base) = (row(Build::This), row(Build::Baseline));
            let mut paired: Vec<f64> = this
                .samples
                .iter()
                .zip(&base.samples)
                .map(|(a, b)| ratio(a.cpu, b.cpu))
                .collect();
            paired.sort_unstable_by(f64::total_cmp);
            let (this, base) = (summarize(&this.samples), summarize(&base.samples));
            println!(
                "  {size:>5} containers, {what:<20}: CPU p50 {} / {} = {:.2}x  p90 {:.2}x  \
                 paired {:.2}x    wall p50 {:.2}x",
                ms(this.cpu_p50),
                ms(base.cpu_p50),
                ratio(this.cpu_p50, base.cpu_p50),
                ratio(this.cpu_p90, base.cpu_p90),
                paired.get(paired.len() / 2).copied().unwrap_or(f64::NAN),
                ratio(this.wall_p50, base.wall_p50),
            );
        }
    }
}

/// One daemon's memory after the rounds at one size: its row name, resident and peak
/// resident set (`VmRSS`, `VmHWM` of `/proc/<pid>/status`) and where it is (`smaps`).
pub(crate) struct DaemonMemory {
    pub size: usize,
    pub name: &'static str,
    pub memory: Memory,
    pub breakdown: Option<Breakdown>,
}

/// The memory of each daemon measured (one per build and path: the scrapes share the eBPF
/// daemon), after the rounds at `size` containers.
pub(crate) fn memory_of(paths: &[Measured], size: usize) -> Vec<DaemonMemory> {
    paths
        .iter()
        .filter(|p| matches!(p.via, Via::Ebpf | Via::Cgroupfs))
        .map(|p| DaemonMemory {
            size,
            name: row_name(p.build, p.via),
            memory: Memory::of(p.daemon.pid()),
            breakdown: Breakdown::of(p.daemon.pid()),
        })
        .collect()
}

/// Each daemon's resident memory after the rounds at each size; at 1,000 containers and more
/// against the target (under 40 MB resident).
pub(crate) fn print_memory(memory: &[DaemonMemory]) {
    println!("\ndaemon memory after the rounds (VmRSS, peak VmHWM of /proc/<pid>/status)");
    for m in memory {
        let verdict = if m.size >= 1_000 {
            m.memory.verdict()
        } else {
            ""
        };
        println!(
            "  {:>6} containers, {:<22} RSS {:>10}  peak {:>10}  {}",
            m.size,
            m.name,
            mib(m.memory.rss_kib),
            mib(m.memory.peak_kib),
            if verdict.is_empty() {
                String::new()
            } else {
                format!("target < 40 MB: {verdict}")
            }
        );
        if let Some(breakdown) = &m.breakdown {
            println!("{:>22}{}", "", breakdown.line());
        }
    }
}
