//! The paths measured and one measured collection.

use std::{
    collections::HashMap,
    fs,
    io::{Read as _, Write as _},
    os::unix::net::UnixStream,
    path::Path,
    rc::Rc,
    time::{Duration, Instant},
};

use collector_tests::support::{
    daemon::{Daemon, daemon_bin},
    http::request,
};

use crate::{IO_TIMEOUT, METRICS_PATH, STATS_PATH};

/// Which daemon answers what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Via {
    /// `/v1/stats` of the daemon started as normally: eBPF loaded.
    Ebpf,
    /// `/v1/stats` of the daemon started with `--no-ebpf`.
    Cgroupfs,
    /// `/metrics` of the eBPF daemon, text 0.0.4, not compressed.
    Scrape,
    /// `/metrics` of the eBPF daemon with `Accept-Encoding: gzip`, as Prometheus asks.
    ScrapeGzip,
}

impl Via {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Via::Ebpf => "eBPF daemon",
            Via::Cgroupfs => "--no-ebpf daemon",
            Via::Scrape => "eBPF /metrics",
            Via::ScrapeGzip => "eBPF /metrics gz",
        }
    }

    pub(crate) fn path(self) -> &'static str {
        match self {
            Via::Ebpf | Via::Cgroupfs => STATS_PATH,
            Via::Scrape | Via::ScrapeGzip => METRICS_PATH,
        }
    }

    /// What `sources.network` must say: which path really answered.
    pub(crate) fn network_source(self) -> &'static str {
        match self {
            Via::Ebpf | Via::Scrape | Via::ScrapeGzip => "ebpf",
            Via::Cgroupfs => "system",
        }
    }
}

/// Which build of the daemon answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Build {
    /// This build: `COLLECTOR_DAEMON_BIN`.
    This,
    /// `COLLECTOR_BASELINE_DAEMON_BIN`, measured beside this build in an A/B run.
    Baseline,
}

/// The name of a row: `via`'s for this build; the baseline's rows are named apart.
pub(crate) fn row_name(build: Build, via: Via) -> &'static str {
    match (build, via) {
        (Build::This, via) => via.name(),
        (Build::Baseline, Via::Ebpf) => "baseline (eBPF)",
        (Build::Baseline, Via::Cgroupfs) => "baseline --no-ebpf",
        (Build::Baseline, Via::Scrape) => "baseline /metrics",
        (Build::Baseline, Via::ScrapeGzip) => "baseline /metrics gz",
    }
}

/// Starts the daemons and returns the paths measured: the eBPF daemon's collection, the
/// `--no-ebpf` daemon's, the eBPF daemon's scrapes; with a `baseline` binary also its eBPF
/// daemon's collection and scrapes (a daemon of its own: own socket and pin dir).
pub(crate) fn start_paths(baseline: Option<&Path>) -> Vec<Measured> {
    let bin = daemon_bin();
    let ebpf = Rc::new(Measured::start_daemon(&bin, Build::This, Via::Ebpf));
    let cgroupfs = Rc::new(Measured::start_daemon(&bin, Build::This, Via::Cgroupfs));
    let mut paths = vec![
        Measured::new(Build::This, Via::Ebpf, Rc::clone(&ebpf)),
        Measured::new(Build::This, Via::Cgroupfs, cgroupfs),
        Measured::new(Build::This, Via::Scrape, Rc::clone(&ebpf)),
        Measured::new(Build::This, Via::ScrapeGzip, ebpf),
    ];
    if let Some(baseline) = baseline {
        let daemon = Rc::new(Measured::start_daemon(baseline, Build::Baseline, Via::Ebpf));
        paths.extend(
            [Via::Ebpf, Via::Scrape, Via::ScrapeGzip]
                .map(|via| Measured::new(Build::Baseline, via, Rc::clone(&daemon))),
        );
    }
    paths
}

/// A request under measurement, to a daemon (the scrapes share the eBPF daemon of their build).
pub(crate) struct Measured {
    pub build: Build,
    pub via: Via,
    pub daemon: Rc<Daemon>,
    /// The request, built once.
    pub request: Vec<u8>,
}

impl Measured {
    /// Starts `bin` as the daemon for `via` (only with flags the baseline knows too) and makes
    /// sure it is what the rows say: an eBPF daemon that silently fell back to cgroupfs would
    /// make the comparison worthless.
    pub(crate) fn start_daemon(bin: &Path, build: Build, via: Via) -> Daemon {
        let mut args = vec!["--metrics-addr", "none"];
        if via == Via::Cgroupfs {
            args.push("--no-ebpf");
        }
        let daemon = Daemon::start_bin(bin, &args);
        let health = daemon.healthz();
        assert_eq!(
            health["ebpf"],
            via != Via::Cgroupfs,
            "{}: unexpected /healthz {health}",
            row_name(build, via)
        );
        daemon
    }

    pub(crate) fn new(build: Build, via: Via, daemon: Rc<Daemon>) -> Self {
        let request = match via {
            Via::Ebpf | Via::Cgroupfs | Via::Scrape => request("GET", via.path(), None),
            Via::ScrapeGzip => format!(
                "GET {METRICS_PATH} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
                 Accept-Encoding: gzip\r\n\r\n"
            )
            .into_bytes(),
        };
        Self {
            build,
            via,
            daemon,
            request,
        }
    }

    pub(crate) fn name(&self) -> &'static str {
        row_name(self.build, self.via)
    }

    /// One full collection: its wall time and the daemon's CPU time, and the body to check
    /// (after the clock).
    pub(crate) fn collect(&self, body: &mut Vec<u8>) -> Sample {
        let before = thread_cpu(self.daemon.pid());
        let started = Instant::now();
        fetch(self.daemon.socket(), &self.request, body)
            .unwrap_or_else(|e| panic!("{}: GET {}: {e}", self.name(), self.via.path()));
        let wall = started.elapsed();
        let after = thread_cpu(self.daemon.pid());
        let (cpu, thread_exited) = cpu_between(&before, &after);
        Sample {
            wall,
            cpu,
            thread_exited,
        }
    }
}

/// Connects, sends `request` (which asks for `Connection: close`) and reads until the daemon
/// closes, into `body` (cleared first; its capacity is reused so no allocation is timed once
/// it has grown to the size of an answer).
pub(crate) fn fetch(socket: &Path, request: &[u8], body: &mut Vec<u8>) -> std::io::Result<()> {
    body.clear();
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    stream.write_all(request)?;
    stream.read_to_end(body).map(drop)
}

/// Nanoseconds on CPU of each thread of `pid` (first field of its `schedstat`).
pub(crate) fn thread_cpu(pid: u32) -> HashMap<u32, u64> {
    let dir = format!("/proc/{pid}/task");
    fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("listing {dir}: {e}"))
        .flatten()
        .filter_map(|entry| {
            let tid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let text = fs::read_to_string(entry.path().join("schedstat")).ok()?;
            Some((tid, text.split_whitespace().next()?.parse().ok()?))
        })
        .collect()
}

/// CPU time spent between two [`thread_cpu`] readings, and whether a thread exited in
/// between (its time since `before` is then lost, so the sample undercounts).
pub(crate) fn cpu_between(
    before: &HashMap<u32, u64>,
    after: &HashMap<u32, u64>,
) -> (Duration, bool) {
    let ns: u64 = after
        .iter()
        .map(|(tid, &now)| now.saturating_sub(before.get(tid).copied().unwrap_or(0)))
        .sum();
    let exited = before.keys().any(|tid| !after.contains_key(tid));
    (Duration::from_nanos(ns), exited)
}

/// One measured collection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    pub wall: Duration,
    pub cpu: Duration,
    pub thread_exited: bool,
}
