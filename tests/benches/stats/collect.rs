//! The paths measured and one measured collection.

use std::collections::HashMap;
use std::fs;
use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use collector_tests::support::daemon::Daemon;
use collector_tests::support::http::request;

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

/// A request under measurement, to a daemon (the scrapes share the eBPF daemon).
pub(crate) struct Measured {
    pub via: Via,
    pub daemon: Rc<Daemon>,
    /// The request, built once.
    pub request: Vec<u8>,
}

impl Measured {
    /// Starts the daemon for `via` and makes sure it is what the rows say: an eBPF daemon that
    /// silently fell back to cgroupfs would make the comparison worthless.
    pub(crate) fn start_daemon(via: Via) -> Daemon {
        let mut args = vec!["--metrics-addr", "none"];
        if via == Via::Cgroupfs {
            args.push("--no-ebpf");
        }
        let daemon = Daemon::start(&args);
        let health = daemon.healthz();
        assert_eq!(
            health["ebpf"],
            via != Via::Cgroupfs,
            "{}: unexpected /healthz {health}",
            via.name()
        );
        daemon
    }

    pub(crate) fn new(via: Via, daemon: Rc<Daemon>) -> Self {
        let request = match via {
            Via::Ebpf | Via::Cgroupfs | Via::Scrape => request("GET", via.path(), None),
            Via::ScrapeGzip => format!(
                "GET {METRICS_PATH} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
                 Accept-Encoding: gzip\r\n\r\n"
            )
            .into_bytes(),
        };
        Self {
            via,
            daemon,
            request,
        }
    }

    /// One full collection: its wall time and the daemon's CPU time, and the body to check
    /// (after the clock).
    pub(crate) fn collect(&self, body: &mut Vec<u8>) -> Sample {
        let before = thread_cpu(self.daemon.pid());
        let started = Instant::now();
        fetch(self.daemon.socket(), &self.request, body)
            .unwrap_or_else(|e| panic!("{}: GET {}: {e}", self.via.name(), self.via.path()));
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
pub(crate) fn cpu_between(before: &HashMap<u32, u64>, after: &HashMap<u32, u64>) -> (Duration, bool) {
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
