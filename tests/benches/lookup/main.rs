//! Lookup bench: how fast "which container is PID X" is answered, side by side in one run on
//! one machine, by
//! - the daemon with eBPF (an in-memory index kept by kernel events),
//! - the daemon with `--no-ebpf` (it reads /proc/<pid>/cgroup per lookup),
//! - no daemon at all: this process reading and parsing /proc/<pid>/cgroup itself,
//!
//! as single `GET /v1/pid/{pid}` requests (on one keep-alive connection, and on a new
//! connection per request as curl does), as `POST /v1/pids` batches from 1 and 2 client
//! threads, and as in-process reads from 1 and 2 threads. It prints one table, the ratios
//! between the rows and the targets (p99 single lookup < 100 µs, batched ≥ 200,000
//! lookups/s) as PASS/MISS, for information: it asserts only that every answer is right.
//!
//! The PIDs are ~1,000 `sleep` processes, half of them in 50 cgroups laid out as Docker's
//! (`system.slice/docker-<64 hex>.scope`), killed (and the cgroups removed) by guards at the
//! end. Since the VM is noisy, every scenario runs in rounds interleaved with all the others,
//! so a slow spell hits every row alike, and results are best read as ratios.
//!
//! One diagnostic row repeats the keep-alive lookups with the client and every daemon thread
//! pinned to one CPU. On a VM, a request that wakes the daemon on the other CPU costs tens of
//! µs more (a virtual inter-processor interrupt), and the scheduler flips unpinned client and
//! daemon between the two placements mid-run: that is most of the single-lookup noise, and the
//! pinned row shows the cost without it.
//!
//! Latencies are per request, per batch or per in-process lookup, timed around the round
//! trip only (`Instant`), percentiles taken from the sorted samples; lookups/s is lookups over
//! wall time. Answers are checked after each round, outside the clock: every single answer,
//! the status of every batch and the full body of a sample of batches.
//!
//! A/B against a baseline build: with `COLLECTOR_BASELINE_DAEMON_BIN` set to another
//! `collector-daemon` binary (e.g. built from the commit before a refactor), the bench also
//! starts that binary with the eBPF daemon's arguments (its own socket and pin dir; both eBPF
//! daemons' kernel programs then run side by side, attached alike), runs the eBPF daemon's
//! rows against it as "baseline (eBPF)" in the same interleaved rounds (each right after its
//! eBPF daemon twin, so the order flipping every round puts each build first in turn), checks
//! every answer alike, and prints the ratios this build / baseline (keep-alive and
//! new-connection latency, batched lookups/s): a refactor that changes nothing shows ~1.00x.
//! Unset, nothing of it runs or prints.
//!
//! `cargo xtask bench` runs it as root with `COLLECTOR_DAEMON_BIN`. Without `--bench` (as
//! `cargo test --benches` runs it) it is a quick smoke run with small counts.

mod checks;
mod client;
mod in_process;
mod pinning;
mod report;
mod scenarios;
mod setup;

use std::time::{Duration, Instant};

// Dependencies of the support lib and the integration tests that this bench does not use.
use {
    collector_common as _, collector_daemon as _, k8s_cri as _, rustls as _, rustls_pki_types as _,
    tempfile as _, tokio as _, tonic as _,
};

use crate::{
    report::{print_ratios, print_setup, print_table},
    scenarios::{run_interleaved, scenarios},
    setup::{Daemons, Fleet, Plan},
};

/// How much to do; [`Config::full`] for `cargo bench`, [`Config::quick`] otherwise.
#[derive(Debug, Clone)]
struct Config {
    containers: usize,
    per_container: usize,
    /// Processes outside any test cgroup.
    plain: usize,
    /// Every scenario's samples are split over this many interleaved rounds.
    rounds: usize,
    /// Single requests per daemon on one keep-alive connection.
    keep_alive_requests: usize,
    /// Single requests per daemon, one connection each.
    new_connection_requests: usize,
    batch_size: usize,
    /// Batches per daemon and thread count (split over the threads).
    batches: usize,
    /// In-process /proc reads per thread count (split over the threads).
    reads: usize,
    /// One batch body in this many is fully checked (all are status-checked).
    check_every_batch: usize,
    /// A round that takes longer stops early, so a slow machine still finishes; the table
    /// marks such rows.
    round_cap: Duration,
}

impl Config {
    fn full() -> Self {
        Self {
            containers: 50,
            per_container: 10,
            plain: 500,
            rounds: 3,
            keep_alive_requests: 20_000,
            new_connection_requests: 5_000,
            batch_size: 1_000,
            batches: 300,
            reads: 60_000,
            check_every_batch: 10,
            round_cap: Duration::from_secs(6),
        }
    }

    fn quick() -> Self {
        Self {
            containers: 4,
            per_container: 3,
            plain: 12,
            rounds: 2,
            keep_alive_requests: 200,
            new_connection_requests: 50,
            batch_size: 24,
            batches: 10,
            reads: 400,
            check_every_batch: 1,
            round_cap: Duration::from_secs(2),
        }
    }

    fn processes(&self) -> usize {
        self.containers * self.per_container + self.plain
    }
}

fn main() {
    let Some(full) = collector_tests::support::bench_start("lookup") else {
        return;
    };
    let config = if full {
        Config::full()
    } else {
        Config::quick()
    };
    let setup_started = Instant::now();
    let fleet = Fleet::spawn(&config);
    let plan = Plan::new(&fleet.targets, config.batch_size);
    let daemons = Daemons::start();
    print_setup(&config, &daemons, setup_started.elapsed());

    let mut scenarios = scenarios(&config, &plan, &daemons);
    let measuring_started = Instant::now();
    run_interleaved(&mut scenarios, &config);
    print_table(&scenarios, &config, measuring_started.elapsed());
    print_ratios(&scenarios);
    // Drop order: scenarios (their connections), the daemons, then the fleet.
}
