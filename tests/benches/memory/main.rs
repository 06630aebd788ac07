//! Memory bench: the daemon's resident memory with 10,000 live processes in containers.
//!
//! 100 cgroups laid out as Docker's (`system.slice/docker-<64 hex>.scope`), 100 `sleep`
//! processes in each, started before the daemons so the start-up seeding indexes them. Then
//! each daemon (this build with eBPF, this build with `--no-ebpf`, and with
//! `COLLECTOR_BASELINE_DAEMON_BIN` set the baseline build with eBPF) answers, in a few passes:
//! every PID looked up in `POST /v1/pids` batches of 1,000 (each answer checked: the right
//! container id), `GET /v1/containers` (each test container listed with all its PIDs) and one
//! full collection `GET /v1/stats?max_age_ms=0` (each test container present). After the
//! passes it prints each daemon's `VmRSS` and `VmHWM` (`/proc/<pid>/status`) against the
//! target, under 40 MB resident, and where the resident memory is (`/proc/<pid>/smaps`:
//! anonymous and heap, BPF maps, the executable, libraries). The stats bench reports the same at 1,000 containers.
//!
//! Memory is not disturbed by the CPU noise of a shared machine the way timings are, so there
//! are no interleaved rounds here: the passes only make sure every path that allocates
//! (lookups, the container list, a collection) has run more than once before reading.
//! Guards kill the sleepers and remove the cgroups at the end, also on panic.
//!
//! `cargo xtask bench -- memory` runs it as root. Without `--bench` (as `cargo test
//! --benches` runs it) it is a quick smoke run with a few processes.

use std::{collections::HashMap, hash::RandomState, path::PathBuf, time::Instant};

use collector_tests::support::{
    cgroup::TestCgroup,
    daemon::{Daemon, baseline_daemon_bin, daemon_bin},
    memory::{Breakdown, Memory, mib},
    process::{ChildGuard, bench_sleeper, random_container_id, spawn_command_in_cgroup},
};
// Dependencies of the support lib and the integration tests that this bench does not use.
use {
    collector_common as _, collector_daemon as _, k8s_cri as _, libc as _, rustls as _,
    rustls_pki_types as _, tempfile as _, tokio as _, tonic as _,
};

/// How much to do; [`Config::full`] for `cargo bench`, [`Config::quick`] otherwise.
#[derive(Debug, Clone)]
struct Config {
    containers: usize,
    per_container: usize,
    /// PIDs per `POST /v1/pids`.
    batch_size: usize,
    /// Times every request kind is made before memory is read.
    passes: usize,
}

impl Config {
    fn full() -> Self {
        Self {
            containers: 100,
            per_container: 100,
            batch_size: 1_000,
            passes: 3,
        }
    }

    fn quick() -> Self {
        Self {
            containers: 3,
            per_container: 4,
            batch_size: 5,
            passes: 2,
        }
    }
}

/// The sleepers and their cgroups. Fields drop in order: children are killed before the
/// cgroups they were in are removed.
struct Fleet {
    children: Vec<ChildGuard>,
    cgroups: Vec<TestCgroup>,
    /// Each sleeper's PID and its container's id.
    expected: Vec<(u32, String)>,
}

impl Fleet {
    fn spawn(config: &Config) -> Self {
        let total = config.containers * config.per_container;
        let mut fleet = Self {
            children: Vec::with_capacity(total),
            cgroups: Vec::with_capacity(config.containers),
            expected: Vec::with_capacity(total),
        };
        let seed = RandomState::new();
        for c in 0..config.containers {
            let id = random_container_id(&seed, c);
            let cgroup = TestCgroup::new(&format!("system.slice/docker-{id}.scope"));
            for _ in 0..config.per_container {
                let child = spawn_command_in_cgroup(&cgroup, bench_sleeper());
                fleet.expected.push((child.pid(), id.clone()));
                fleet.children.push(child);
            }
            fleet.cgroups.push(cgroup);
        }
        fleet
    }

    /// How many PIDs each container id has.
    fn per_id(&self) -> HashMap<&str, usize> {
        let mut counts = HashMap::new();
        for (_, id) in &self.expected {
            *counts.entry(id.as_str()).or_default() += 1;
        }
        counts
    }
}

/// Every PID of the fleet looked up in batches; panics on any wrong answer.
fn lookup_all(daemon: &Daemon, fleet: &Fleet, batch_size: usize, name: &str) {
    for batch in fleet.expected.chunks(batch_size) {
        let pids: Vec<u32> = batch.iter().map(|(pid, _)| *pid).collect();
        let body = serde_json::to_vec(&pids).expect("PIDs serialize");
        let response = daemon.post("/v1/pids", &body);
        assert_eq!(
            response.status, 200,
            "{name}: POST /v1/pids: {}",
            response.body
        );
        let answers = response.json();
        let answers = answers.as_array().expect("an array of answers");
        assert_eq!(answers.len(), batch.len(), "{name}: one answer per PID");
        for ((pid, id), answer) in batch.iter().zip(answers) {
            assert_eq!(answer["pid"], *pid, "{name}: {answer}");
            assert_eq!(
                answer["container_id"],
                id.as_str(),
                "{name}: PID {pid}: {answer}"
            );
        }
    }
}

/// `GET /v1/containers` lists every test container with all its PIDs, and a full collection
/// has every test container; panics otherwise.
fn list_and_collect(daemon: &Daemon, fleet: &Fleet, name: &str) {
    let listed = daemon.get("/v1/containers");
    assert_eq!(
        listed.status, 200,
        "{name}: /v1/containers: {}",
        listed.body
    );
    let listed = listed.json();
    let pids_of: HashMap<&str, usize> = listed
        .as_array()
        .expect("an array of containers")
        .iter()
        .filter_map(|c| Some((c["container_id"].as_str()?, c["pids"].as_array()?.len())))
        .collect();
    for (id, count) in fleet.per_id() {
        assert_eq!(
            pids_of.get(id),
            Some(&count),
            "{name}: container {id}'s PIDs"
        );
    }
    let stats = daemon.get("/v1/stats?max_age_ms=0");
    assert_eq!(stats.status, 200, "{name}: /v1/stats: {}", stats.body);
    for (id, _) in fleet.per_id() {
        assert!(
            stats.body.contains(id),
            "{name}: /v1/stats lacks container {id}"
        );
    }
}

/// A daemon measured: its row name, binary and process.
type Measured = (String, PathBuf, Daemon);

/// This build's eBPF and `--no-ebpf` daemons, and the baseline build's eBPF daemon when
/// `COLLECTOR_BASELINE_DAEMON_BIN` is set; each checked to run as its name says.
fn start_daemons() -> Vec<Measured> {
    let bin = daemon_bin();
    let mut daemons: Vec<Measured> = vec![
        (
            "eBPF daemon".to_owned(),
            bin.clone(),
            Daemon::start_bin(&bin, &[]),
        ),
        (
            "--no-ebpf daemon".to_owned(),
            bin.clone(),
            Daemon::start_bin(&bin, &["--no-ebpf"]),
        ),
    ];
    if let Some(baseline) = baseline_daemon_bin() {
        let daemon = Daemon::start_bin(&baseline, &[]);
        daemons.push(("baseline (eBPF)".to_owned(), baseline, daemon));
    }
    for (name, _, daemon) in &daemons {
        let ebpf = daemon.healthz()["ebpf"] == true;
        assert_eq!(
            ebpf,
            !name.starts_with("--no-ebpf"),
            "{name}: /healthz says ebpf {ebpf}"
        );
    }
    daemons
}

/// Each daemon's memory now, judged against the target in a full run.
fn print_memory(daemons: &[Measured], processes: usize) {
    println!("\ndaemon memory after the passes (VmRSS, peak VmHWM of /proc/<pid>/status)");
    for (name, bin, daemon) in daemons {
        let memory = Memory::of(daemon.pid());
        let verdict = if processes >= 10_000 {
            memory.verdict()
        } else {
            "(smoke run: not judged)"
        };
        println!(
            "  {:>6} processes, {:<18} RSS {:>10}  peak {:>10}  target < 40 MB: {verdict}  ({})",
            processes,
            name,
            mib(memory.rss_kib),
            mib(memory.peak_kib),
            bin.display()
        );
        if let Some(breakdown) = Breakdown::of(daemon.pid()) {
            println!("{:>26}{}", "", breakdown.line());
        }
    }
}

fn main() {
    let Some(full) = collector_tests::support::bench_start("memory") else {
        return;
    };
    let config = if full {
        Config::full()
    } else {
        Config::quick()
    };
    let started = Instant::now();
    let fleet = Fleet::spawn(&config);
    let spawned = started.elapsed();
    let daemons = start_daemons();
    println!(
        "memory bench: {} processes in {} containers (spawned in {:.1} s); {} passes of: every \
         PID in POST /v1/pids × {}, GET /v1/containers, GET /v1/stats?max_age_ms=0",
        fleet.expected.len(),
        config.containers,
        spawned.as_secs_f64(),
        config.passes,
        config.batch_size
    );
    for _ in 0..config.passes {
        for (name, _, daemon) in &daemons {
            lookup_all(daemon, &fleet, config.batch_size, name);
            list_and_collect(daemon, &fleet, name);
        }
    }
    print_memory(&daemons, fleet.expected.len());
    // Drop order: the daemons first (declared later), then the fleet.
    drop(daemons);
}
