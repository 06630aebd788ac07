//! Set-up: the processes, the daemons, and the requests, all prepared before any clock runs.

use std::{
    hash::RandomState,
    path::{Path, PathBuf},
};

use collector_tests::support::{
    cgroup::TestCgroup,
    daemon::{Daemon, baseline_daemon_bin, daemon_bin},
    process::{ChildGuard, bench_sleeper, random_container_id, spawn_command_in_cgroup},
};

use crate::{Config, scenarios::Via};

/// A PID to look up and the container it must resolve to.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub pid: u32,
    /// The 64-hex id of its test cgroup; `None` for processes outside the test cgroups, whose
    /// answer is not checked beyond the PID (it depends on where the bench itself runs).
    pub container: Option<String>,
}

/// The long-lived processes. Fields drop in order: children are killed before the cgroups
/// they were in are removed.
pub(crate) struct Fleet {
    pub children: Vec<ChildGuard>,
    pub cgroups: Vec<TestCgroup>,
    pub targets: Vec<Target>,
}

impl Fleet {
    /// Starts `per_container` sleepers in each of `containers` Docker-like cgroups, and
    /// `plain` ones outside, interleaved in blocks so that round-robin over the PIDs mixes
    /// both kinds.
    pub(crate) fn spawn(config: &Config) -> Self {
        let mut fleet = Self {
            children: Vec::with_capacity(config.processes()),
            cgroups: Vec::with_capacity(config.containers),
            targets: Vec::with_capacity(config.processes()),
        };
        let ids = RandomState::new();
        let (containers, plain) = (config.containers, config.plain);
        for c in 0..containers {
            let id = random_container_id(&ids, c);
            let cgroup = TestCgroup::new(&format!("system.slice/docker-{id}.scope"));
            for _ in 0..config.per_container {
                fleet.add(spawn_command_in_cgroup(&cgroup, bench_sleeper()), Some(&id));
            }
            fleet.cgroups.push(cgroup);
            // This container's share of the plain processes.
            fleet.spawn_plain(plain * (c + 1) / containers - plain * c / containers);
        }
        if containers == 0 {
            fleet.spawn_plain(plain);
        }
        fleet
    }

    /// `count` sleepers outside the test cgroups.
    pub(crate) fn spawn_plain(&mut self, count: usize) {
        for _ in 0..count {
            let child = bench_sleeper()
                .spawn()
                .unwrap_or_else(|e| panic!("spawning sleep: {e}"));
            self.add(ChildGuard::new(child), None);
        }
    }

    pub(crate) fn add(&mut self, child: ChildGuard, container: Option<&str>) {
        self.targets.push(Target {
            pid: child.pid(),
            container: container.map(str::to_owned),
        });
        self.children.push(child);
    }
}

/// The daemons: this build's with and without eBPF, and in an A/B run the baseline build's
/// (`COLLECTOR_BASELINE_DAEMON_BIN`), started as the eBPF daemon is, on its own socket and pin
/// dir.
pub(crate) struct Daemons {
    pub ebpf: Daemon,
    pub no_ebpf: Daemon,
    /// The baseline binary and its daemon.
    pub baseline: Option<(PathBuf, Daemon)>,
}

impl Daemons {
    pub(crate) fn start() -> Self {
        let bin = daemon_bin();
        Self {
            ebpf: start_daemon(Via::EbpfDaemon, &bin),
            no_ebpf: start_daemon(Via::ProcfsDaemon, &bin),
            baseline: baseline_daemon_bin().map(|baseline| {
                let daemon = start_daemon(Via::BaselineDaemon, &baseline);
                (baseline, daemon)
            }),
        }
    }
}

/// Starts `bin` as the daemon for `via` (the baseline with the eBPF daemon's arguments, so
/// only flags it knows too) and makes sure it is what the rows say: a bench of the eBPF
/// daemon that silently fell back to procfs would be worthless.
pub(crate) fn start_daemon(via: Via, bin: &Path) -> Daemon {
    let daemon = match via {
        Via::EbpfDaemon | Via::BaselineDaemon => Daemon::start_bin(bin, &[]),
        Via::ProcfsDaemon => Daemon::start_bin(bin, &["--no-ebpf"]),
        Via::InProcess => unreachable!("no daemon reads in-process"),
    };
    let health = daemon.healthz();
    assert_eq!(
        health["ebpf"],
        via != Via::ProcfsDaemon,
        "{} daemon: unexpected /healthz {health}",
        via.name()
    );
    daemon
}

/// A prepared `POST /v1/pids` and the indices (into the targets) of the PIDs it asks about.
pub(crate) struct Batch {
    pub request: Vec<u8>,
    pub members: Vec<usize>,
}

/// Everything the clients send, built once so no request is formatted while timed.
pub(crate) struct Plan {
    pub targets: Vec<Target>,
    /// `GET /v1/pid/{pid}` for each target, keep-alive.
    pub get_keep_alive: Vec<Vec<u8>>,
    /// The same with `Connection: close`.
    pub get_close: Vec<Vec<u8>>,
    /// Batches starting at different offsets, so consecutive batches differ.
    pub batches: Vec<Batch>,
}

impl Plan {
    pub(crate) const DISTINCT_BATCHES: usize = 8;

    pub(crate) fn new(targets: &[Target], batch_size: usize) -> Self {
        let get = |target: &Target, extra: &str| {
            format!(
                "GET /v1/pid/{} HTTP/1.1\r\nHost: localhost\r\n{extra}\r\n",
                target.pid
            )
            .into_bytes()
        };
        let stride = targets.len() / Self::DISTINCT_BATCHES;
        let batches = (0..Self::DISTINCT_BATCHES)
            .map(|b| {
                let members: Vec<usize> = (0..batch_size)
                    .map(|j| (b * stride + j) % targets.len())
                    .collect();
                let pids: Vec<u32> = members.iter().map(|&i| targets[i].pid).collect();
                let body = serde_json::to_vec(&pids).expect("PIDs serialize");
                let mut request = format!(
                    "POST /v1/pids HTTP/1.1\r\nHost: localhost\r\n\
                     Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                )
                .into_bytes();
                request.extend_from_slice(&body);
                Batch { request, members }
            })
            .collect();
        Self {
            targets: targets.to_vec(),
            get_keep_alive: targets.iter().map(|t| get(t, "")).collect(),
            get_close: targets
                .iter()
                .map(|t| get(t, "Connection: close\r\n"))
                .collect(),
            batches,
        }
    }
}
