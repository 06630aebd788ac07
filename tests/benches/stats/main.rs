//! Stats bench: what one full collection costs — `GET /v1/stats?max_age_ms=0`, which reads
//! every value of every live container after the request arrived — for 100 and for 1,000
//! containers, side by side in one run, by
//! - the daemon as normally started (eBPF loaded: network and IO come from the kernel
//!   programs' maps, the rest from cgroupfs and procfs), and
//! - the daemon with `--no-ebpf` (everything from cgroupfs and procfs),
//!
//! in wall time (the client's round trip: connect, request, the whole body read) and in the
//! daemon's CPU time for it (the first field of `/proc/<daemon>/task/*/schedstat`, nanoseconds
//! on CPU, summed over all its threads, read just before and just after the request). CPU time
//! is the figure that matters on a node (the collector shares it with the workloads) and is
//! much less disturbed than wall time by the other work of a noisy 2-core VM.
//!
//! The containers are test-made cgroups laid out like Docker's cgroupfs driver on this hybrid
//! host: `<test prefix>/docker/<64 hex id>` in the cgroup-v2 hierarchy and in the v1
//! hierarchies of cpu, cpuacct, cpuset, memory, pids and blkio, each with one `sleep` that
//! joined all of them before it exec'ed. They are made once and used by both daemons: first
//! 100, measured, then 900 more, measured again. Guards kill the sleepers and remove every
//! cgroup at the end, also on panic.
//!
//! Both daemons run all along (different sockets and pin dirs, no metrics port). Samples
//! alternate between them, the order flipping every round, so a slow spell of the machine
//! hits both alike: read the results as ratios. Every answer is checked outside the clock:
//! all test containers present, `cpu.total` and `memory.usage_total` not null, and
//! `sources.network` saying which path answered (`ebpf` or `system`).
//!
//! On the eBPF daemon the bench also scrapes `GET /metrics` (cAdvisor's container families
//! built from one full collection, text format 0.0.4), plain and gzipped as Prometheus asks,
//! in the same interleaved rounds: the scrape's cost over the collection's is what exporting
//! adds (target: at most 1.3x the collection's CPU). Every scrape is checked outside the
//! clock: one `container_cpu_usage_seconds_total` and one `container_memory_working_set_bytes`
//! series per test container.
//!
//! Beside them, the floor: the bench itself reading the cgroup files the eBPF daemon reads per
//! container, through held descriptors and with no parsing, and `stat()`ing each sleeper's
//! `/proc/<pid>/fd`, timed by its own thread's CPU clock, once before each pair of requests.
//! It is the share of a collection spent in those files, which no collector reading them
//! goes below (the eBPF daemon's kernel cgroup walk, which replaces the other files, is not
//! in it); the daemons' CPU is also given as a multiple of it.
//!
//! A/B against a baseline build: with `COLLECTOR_BASELINE_DAEMON_BIN` set to another
//! `collector-daemon` binary (e.g. built from the commit before a refactor), the bench also
//! starts that binary with the eBPF daemon's arguments (its own socket and pin dir; both eBPF
//! daemons' kernel programs then run side by side, attached alike), measures its collection
//! and scrapes in the same interleaved rounds as the other rows ("baseline (eBPF)",
//! "baseline /metrics", "baseline /metrics gz"), checks every answer alike, and prints the
//! ratios this build / baseline, also as the median of the ratios of the pairs measured in the
//! same pass (the steadier figure): a refactor that changes nothing shows ~1.00x. Unset,
//! nothing of it runs or prints.
//!
//! `cargo xtask bench` runs it as root with `COLLECTOR_DAEMON_BIN`; a positional argument
//! runs only the benches whose name contains it (`cargo xtask bench -- stats`). Without
//! `--bench` (as `cargo test --benches` runs it) it is a quick smoke run with small counts,
//! and the target is not judged.

mod checks;
mod collect;
mod fleet;
mod floor;
mod report;
mod rounds;

use std::time::{Duration, Instant};

use collector_tests::support::daemon::baseline_daemon_bin;
// Dependencies of the support lib and the integration tests that this bench does not use.
use {
    collector_common as _, collector_daemon as _, k8s_cri as _, rustls as _, rustls_pki_types as _,
    tempfile as _, tokio as _, tonic as _,
};

use crate::{
    collect::start_paths,
    fleet::Fleet,
    report::{memory_of, print_floor, print_memory, print_ratios, print_setup, print_table},
    rounds::measure_size,
};

/// stats read: cpu and cpuacct (CPU), cpuset, memory, pids, blkio (IO).
const CONTROLLERS: [&str; 6] = ["cpu", "cpuacct", "cpuset", "memory", "pids", "blkio"];
/// The full collection, every value read after the request arrived.
const STATS_PATH: &str = "/v1/stats?max_age_ms=0";
/// The scrape: cAdvisor's container families, text format 0.0.4.
const METRICS_PATH: &str = "/metrics";
/// Target: a full collection for 1,000 containers under this much CPU (eBPF daemon, median).
const CPU_TARGET: Duration = Duration::from_millis(50);
/// Target: a scrape costs at most this many times the CPU of the collection it is built from.
const SCRAPE_TARGET: f64 = 1.3;
/// Upper bound on one request, so a hung daemon fails the bench instead of hanging it.
const IO_TIMEOUT: Duration = Duration::from_mins(2);
/// How long the daemons have to list every new test container with full values.
const COVER_TIMEOUT: Duration = Duration::from_mins(2);

/// How much to do; [`Config::full`] for `cargo bench`, [`Config::quick`] otherwise.
#[derive(Debug, Clone)]
struct Config {
    /// Container counts measured, in increasing order (the set grows from one to the next).
    sizes: Vec<usize>,
    /// Interleaved rounds per size.
    rounds: usize,
    /// Requests per daemon per round, per size.
    per_round: Vec<usize>,
    /// Whether to judge the target (counts large enough to mean something).
    judge: bool,
}

impl Config {
    fn full() -> Self {
        Self {
            sizes: vec![100, 1_000],
            rounds: 10,
            per_round: vec![4, 2],
            judge: true,
        }
    }

    fn quick() -> Self {
        Self {
            sizes: vec![3, 8],
            rounds: 2,
            per_round: vec![1, 1],
            judge: false,
        }
    }
}

fn main() {
    let Some(full) = collector_tests::support::bench_start("stats") else {
        return;
    };
    let config = if full {
        Config::full()
    } else {
        Config::quick()
    };
    // Declared before the daemons, so dropped after them: the daemons stop first, then the
    // sleepers are killed and the cgroups removed.
    let mut fleet = Fleet::new();
    let started = Instant::now();
    fleet.grow(config.sizes[0]);
    let mut setup = vec![(config.sizes[0], started.elapsed())];

    let baseline = baseline_daemon_bin();
    let started = Instant::now();
    let paths = start_paths(baseline.as_deref());
    let daemons_took = started.elapsed();
    print_setup(&fleet, &paths, baseline.as_deref(), daemons_took);

    let mut rows = Vec::new();
    let mut floors = Vec::new();
    let mut memory = Vec::new();
    for (step, (&size, &per_round)) in config.sizes.iter().zip(&config.per_round).enumerate() {
        if step > 0 {
            let started = Instant::now();
            fleet.grow(size);
            setup.push((size, started.elapsed()));
        }
        let (measured, floor) = measure_size(&fleet, &paths, size, per_round, &config);
        rows.extend(measured);
        floors.push(floor);
        memory.extend(memory_of(&paths, size));
    }
    print_table(&rows, &setup, &config);
    print_floor(&rows, &floors);
    print_ratios(&rows, &floors, &config);
    print_memory(&memory);
}
