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
//! `cargo xtask bench` runs it as root with `COLLECTOR_DAEMON_BIN`. Without `--bench` (as
//! `cargo test --benches` runs it) it is a quick smoke run with small counts.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::hash::RandomState;
use std::io::{self, ErrorKind, Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Barrier;
use std::time::{Duration, Instant};
use std::{fs, panic, thread};

use collector_tests::support::cgroup::{TestCgroup, v2_mount};
use collector_tests::support::daemon::Daemon;
use collector_tests::support::http::parse_response;
use collector_tests::support::process::{
    ChildGuard, bench_sleeper, random_container_id, spawn_command_in_cgroup,
};
use collector_tests::support::{is_root, require};
use serde_json::Value;
// Dependencies of the support lib and the integration tests that this bench does not use.
use {
    collector_common as _, collector_daemon as _, k8s_cri as _, tempfile as _, tokio as _,
    tonic as _,
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
    if !collector_tests::support::bench_selected("lookup") {
        return;
    }
    let config = if collector_tests::support::is_full_bench() {
        Config::full()
    } else {
        Config::quick()
    };
    if !require("root, to create cgroups and load eBPF", is_root())
        || !require("a cgroup v2 hierarchy", v2_mount().is_some())
    {
        return;
    }
    let setup_started = Instant::now();
    let fleet = Fleet::spawn(&config);
    let plan = Plan::new(&fleet.targets, config.batch_size);
    let ebpf = start_daemon(Via::EbpfDaemon);
    let no_ebpf = start_daemon(Via::ProcfsDaemon);
    print_setup(&config, &ebpf, &no_ebpf, setup_started.elapsed());

    let mut scenarios = scenarios(&config, &plan, &ebpf, &no_ebpf);
    let measuring_started = Instant::now();
    run_interleaved(&mut scenarios, &config);
    print_table(&scenarios, &config, measuring_started.elapsed());
    print_ratios(&scenarios);
    // Drop order: scenarios (their connections), the daemons, then the fleet.
}

// ---------------------------------------------------------------------------------------------
// Set-up: the processes, the daemons, and the requests, all prepared before any clock runs.

/// A PID to look up and the container it must resolve to.
#[derive(Debug, Clone)]
struct Target {
    pid: u32,
    /// The 64-hex id of its test cgroup; `None` for processes outside the test cgroups, whose
    /// answer is not checked beyond the PID (it depends on where the bench itself runs).
    container: Option<String>,
}

/// The long-lived processes. Fields drop in order: children are killed before the cgroups
/// they were in are removed.
struct Fleet {
    children: Vec<ChildGuard>,
    cgroups: Vec<TestCgroup>,
    targets: Vec<Target>,
}

impl Fleet {
    /// Starts `per_container` sleepers in each of `containers` Docker-like cgroups, and
    /// `plain` ones outside, interleaved in blocks so that round-robin over the PIDs mixes
    /// both kinds.
    fn spawn(config: &Config) -> Self {
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
    fn spawn_plain(&mut self, count: usize) {
        for _ in 0..count {
            let child = bench_sleeper()
                .spawn()
                .unwrap_or_else(|e| panic!("spawning sleep: {e}"));
            self.add(ChildGuard::new(child), None);
        }
    }

    fn add(&mut self, child: ChildGuard, container: Option<&str>) {
        self.targets.push(Target {
            pid: child.pid(),
            container: container.map(str::to_owned),
        });
        self.children.push(child);
    }
}

/// Starts the daemon for `via` and makes sure it is what the rows say: a bench of the eBPF
/// daemon that silently fell back to procfs would be worthless.
fn start_daemon(via: Via) -> Daemon {
    let daemon = match via {
        Via::EbpfDaemon => Daemon::start(&[]),
        Via::ProcfsDaemon => Daemon::start(&["--no-ebpf"]),
        Via::InProcess => unreachable!("no daemon reads in-process"),
    };
    let health = daemon.healthz();
    assert_eq!(
        health["ebpf"],
        via == Via::EbpfDaemon,
        "{} daemon: unexpected /healthz {health}",
        via.name()
    );
    daemon
}

/// A prepared `POST /v1/pids` and the indices (into the targets) of the PIDs it asks about.
struct Batch {
    request: Vec<u8>,
    members: Vec<usize>,
}

/// Everything the clients send, built once so no request is formatted while timed.
struct Plan {
    targets: Vec<Target>,
    /// `GET /v1/pid/{pid}` for each target, keep-alive.
    get_keep_alive: Vec<Vec<u8>>,
    /// The same with `Connection: close`.
    get_close: Vec<Vec<u8>>,
    /// Batches starting at different offsets, so consecutive batches differ.
    batches: Vec<Batch>,
}

impl Plan {
    const DISTINCT_BATCHES: usize = 8;

    fn new(targets: &[Target], batch_size: usize) -> Self {
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

// ---------------------------------------------------------------------------------------------
// A minimal HTTP/1.1 client: the support client sends `Connection: close`, and the point here
// is to also measure a persistent connection.

/// Upper bound on any single read or write, so a hung daemon fails the bench, not hangs it.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// One response; the body borrows the connection's buffer when framed by Content-Length.
struct Reply<'a> {
    status: u16,
    body: Cow<'a, [u8]>,
}

/// Bytes read from a connection. Grown, never shrunk or re-zeroed, so a read costs no memset.
struct ReadBuf {
    data: Vec<u8>,
    filled: usize,
}

impl ReadBuf {
    fn new() -> Self {
        Self {
            data: vec![0; 64 * 1024],
            filled: 0,
        }
    }

    /// Reads exactly one response from `stream`.
    fn read_reply(&mut self, stream: &mut UnixStream) -> io::Result<Reply<'_>> {
        self.filled = 0;
        let at_eof = loop {
            if frame(&self.data[..self.filled], false)?.is_some() {
                break false;
            }
            if self.filled == self.data.len() {
                self.data.resize(self.data.len() * 2, 0);
            }
            match stream.read(&mut self.data[self.filled..]) {
                Ok(0) => break true,
                Ok(n) => self.filled += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        };
        // Framed twice (once above, to know when to stop) because the borrow checker does not
        // let a reply borrowed in the loop outlive it; the head is a few hundred bytes.
        frame(&self.data[..self.filled], at_eof)?.ok_or_else(|| {
            io::Error::new(
                ErrorKind::UnexpectedEof,
                format!(
                    "connection closed before a complete response; got {:?}",
                    String::from_utf8_lossy(&self.data[..self.filled.min(300)])
                ),
            )
        })
    }
}

/// The response in `bytes`, if complete. Content-Length framing (what the daemon sends for
/// JSON) is read here without copying; chunked or EOF-delimited bodies go to the support
/// parser.
fn frame(bytes: &[u8], at_eof: bool) -> io::Result<Option<Reply<'_>>> {
    let Some(head_len) = find(bytes, b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = &bytes[..head_len];
    let Some(length) = content_length(head)? else {
        return Ok(parse_response(bytes, at_eof)?.map(|r| Reply {
            status: r.status,
            body: Cow::Owned(r.body.into_bytes()),
        }));
    };
    let body = head_len + 4..head_len + 4 + length;
    if bytes.len() < body.end {
        return Ok(None);
    }
    if bytes.len() > body.end {
        // We never pipeline, so anything more is a framing bug on one side.
        return Err(invalid("bytes after the end of a response"));
    }
    Ok(Some(Reply {
        status: status_code(head)?,
        body: Cow::Borrowed(&bytes[body]),
    }))
}

fn status_code(head: &[u8]) -> io::Result<u16> {
    let code = if head.starts_with(b"HTTP/1.") {
        head.get(9..12)
    } else {
        None
    };
    code.and_then(|code| std::str::from_utf8(code).ok()?.parse().ok())
        .ok_or_else(|| invalid("bad status line"))
}

fn content_length(head: &[u8]) -> io::Result<Option<usize>> {
    for line in head.split(|&b| b == b'\n').skip(1) {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        if line[..colon].eq_ignore_ascii_case(b"content-length") {
            return std::str::from_utf8(&line[colon + 1..])
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .map(Some)
                .ok_or_else(|| invalid("bad Content-Length"));
        }
    }
    Ok(None)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, what.to_owned())
}

fn connect(socket: &Path) -> io::Result<UnixStream> {
    let stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(stream)
}

/// One client thread's state, kept across rounds: its connection, its buffers and where it is
/// in the PID (or batch) list.
struct Client {
    socket: PathBuf,
    stream: Option<UnixStream>,
    buf: ReadBuf,
    next: usize,
    /// Steps done, for sampling which answers to check in full.
    steps: usize,
    /// For in-process reads: the path and the text read, reused.
    proc_path: String,
    proc_text: String,
}

impl Client {
    fn new(socket: &Path, start: usize) -> Self {
        Self {
            socket: socket.to_path_buf(),
            stream: None,
            buf: ReadBuf::new(),
            next: start,
            steps: 0,
            proc_path: String::new(),
            proc_text: String::new(),
        }
    }

    /// The next index, round-robin over `len`.
    fn advance(&mut self, len: usize) -> usize {
        let index = self.next % len;
        self.next = index + 1;
        self.steps += 1;
        index
    }

    /// A fresh persistent connection. Made at the start of each round, outside the clock, so
    /// that an idle timeout of the server between rounds cannot hit a measured request.
    fn reconnect(&mut self) {
        self.stream = Some(connect(&self.socket).unwrap_or_else(|e| {
            panic!("connecting to {}: {e}", self.socket.display());
        }));
    }

    /// A request on the persistent connection.
    fn keep_alive(&mut self, request: &[u8]) -> Reply<'_> {
        let stream = self.stream.as_mut().expect("reconnect() before requests");
        stream
            .write_all(request)
            .and_then(|()| self.buf.read_reply(stream))
            .unwrap_or_else(|e| panic!("request on {}: {e}", self.socket.display()))
    }

    /// A request on a connection of its own, read until the response is complete (as curl
    /// does, not waiting for the close).
    fn one_shot(&mut self, request: &[u8]) -> Reply<'_> {
        connect(&self.socket)
            .and_then(|mut stream| {
                stream.write_all(request)?;
                self.buf.read_reply(&mut stream)
            })
            .unwrap_or_else(|e| panic!("request on {}: {e}", self.socket.display()))
    }
}

// ---------------------------------------------------------------------------------------------
// CPU pinning, for the same-CPU row.

/// Pins every thread of the daemon, and the calling thread (so the client threads it spawns),
/// to one CPU; restores the previous CPU sets on drop.
struct SameCpu {
    daemon: u32,
    daemon_cpus: libc::cpu_set_t,
    own_cpus: libc::cpu_set_t,
}

impl SameCpu {
    fn pin(daemon: u32) -> Self {
        let pid = libc::pid_t::try_from(daemon).expect("pid fits pid_t");
        let own_cpus = affinity(0).expect("reading our CPU set");
        let daemon_cpus = affinity(pid).expect("reading the daemon's CPU set");
        let cpu = (0..usize::try_from(libc::CPU_SETSIZE).unwrap_or(0))
            // SAFETY: CPU_ISSET reads a bit of a valid set, the index below CPU_SETSIZE.
            .find(|&cpu| unsafe {
                libc::CPU_ISSET(cpu, &own_cpus) && libc::CPU_ISSET(cpu, &daemon_cpus)
            })
            .expect("the daemon and the bench share a CPU");
        // SAFETY: cpu_set_t is plain old data: all zeroes is the empty set.
        let mut one: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: sets a bit below CPU_SETSIZE in a valid set.
        unsafe { libc::CPU_SET(cpu, &mut one) };
        // The guard exists before anything is pinned, so a failure below still restores.
        let guard = Self {
            daemon,
            daemon_cpus,
            own_cpus,
        };
        set_affinity(0, &one).expect("pinning the bench's thread");
        for tid in threads_of(daemon) {
            set_affinity(tid, &one).expect("pinning the daemon's threads");
        }
        guard
    }
}

impl Drop for SameCpu {
    fn drop(&mut self) {
        // Listed again: threads the daemon started while pinned inherited the one CPU.
        let restored = threads_of(self.daemon)
            .into_iter()
            .try_for_each(|tid| set_affinity(tid, &self.daemon_cpus))
            .and_then(|()| set_affinity(0, &self.own_cpus));
        if let Err(e) = restored {
            eprintln!("warning: restoring CPU sets after the same-CPU row: {e}");
        }
    }
}

/// The CPU set of thread `tid` (0: the calling thread).
fn affinity(tid: libc::pid_t) -> io::Result<libc::cpu_set_t> {
    // SAFETY: cpu_set_t is plain old data; the kernel fills at most its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(tid, std::mem::size_of_val(&set), &raw mut set) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(set)
    }
}

/// Sets the CPU set of thread `tid` (0: the calling thread); a thread that exited meanwhile
/// is no error.
fn set_affinity(tid: libc::pid_t, set: &libc::cpu_set_t) -> io::Result<()> {
    // SAFETY: passes a valid set of the size given.
    if unsafe { libc::sched_setaffinity(tid, std::mem::size_of_val(set), set) } == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::ESRCH) {
        return Ok(());
    }
    Err(err)
}

/// The thread ids of process `pid`.
fn threads_of(pid: u32) -> Vec<libc::pid_t> {
    fs::read_dir(format!("/proc/{pid}/task"))
        .map(|dir| {
            dir.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// The no-daemon baseline.

/// What a client without the daemon does: read /proc/<pid>/cgroup, take the cgroup v2 (`0::`)
/// line and find a 64-hex id in its path. Buffers are the caller's, reused.
fn resolve_in_process(
    pid: u32,
    path: &mut String,
    text: &mut String,
) -> io::Result<Option<String>> {
    path.clear();
    let _ = write!(path, "/proc/{pid}/cgroup");
    text.clear();
    fs::File::open(&*path)?.read_to_string(text)?;
    let v2 = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or_else(|| invalid("no cgroup v2 line"))?;
    Ok(hex_id_in(v2).map(str::to_owned))
}

/// The innermost run of exactly 64 hex digits in a cgroup path (`docker-<id>.scope`,
/// `cri-containerd-<id>.scope`, `/docker/<id>`, ...).
fn hex_id_in(path: &str) -> Option<&str> {
    path.rsplit('/').find_map(|component| {
        component
            .split(|c: char| !c.is_ascii_hexdigit())
            .find(|run| run.len() == 64)
    })
}

// ---------------------------------------------------------------------------------------------
// Scenarios and how they are run.

/// Who answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    EbpfDaemon,
    ProcfsDaemon,
    InProcess,
}

impl Via {
    fn name(self) -> &'static str {
        match self {
            Via::EbpfDaemon => "eBPF daemon",
            Via::ProcfsDaemon => "--no-ebpf daemon",
            Via::InProcess => "no daemon",
        }
    }

    /// The `source` every answer of this daemon must carry.
    fn source(self) -> &'static str {
        match self {
            Via::EbpfDaemon => "ebpf",
            Via::ProcfsDaemon | Via::InProcess => "procfs",
        }
    }
}

/// How it is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    KeepAlive,
    /// Keep-alive with the client and all the daemon's threads pinned to one CPU: no
    /// cross-CPU wake-up per request, which a VM makes expensive (a diagnostic row).
    KeepAliveSameCpu,
    NewConnection,
    Batched {
        threads: usize,
    },
    Read {
        threads: usize,
    },
}

impl Mode {
    fn describe(self, batch_size: usize) -> String {
        match self {
            Mode::KeepAlive => "GET /v1/pid, 1 keep-alive conn".to_owned(),
            Mode::KeepAliveSameCpu => "  same, client+daemon on 1 CPU".to_owned(),
            Mode::NewConnection => "GET /v1/pid, new conn each".to_owned(),
            Mode::Batched { threads } => format!("POST {batch_size} PIDs, {}", n_threads(threads)),
            Mode::Read { threads } => format!("read /proc/<pid>/cgroup, {}", n_threads(threads)),
        }
    }

    /// What one latency sample covers.
    fn sample_unit(self) -> &'static str {
        match self {
            Mode::KeepAlive | Mode::KeepAliveSameCpu | Mode::NewConnection => "request",
            Mode::Batched { .. } => "batch",
            Mode::Read { .. } => "lookup",
        }
    }
}

fn n_threads(threads: usize) -> String {
    if threads == 1 {
        "1 thread".to_owned()
    } else {
        format!("{threads} threads")
    }
}

/// What was measured: one latency per sample, lookups done, wall time.
#[derive(Debug, Default)]
struct Measured {
    latencies: Vec<Duration>,
    lookups: usize,
    wall: Duration,
    /// Whether a round stopped at the time cap.
    capped: bool,
}

impl Measured {
    fn merge(&mut self, other: Measured) {
        self.latencies.extend(other.latencies);
        self.lookups += other.lookups;
        self.wall += other.wall;
        self.capped |= other.capped;
    }
}

/// Runs `samples` steps and returns what they measured; stops early at the deadline.
type Round<'a> = Box<dyn FnMut(usize, Instant) -> Measured + 'a>;

struct Scenario<'a> {
    via: Via,
    mode: Mode,
    samples: usize,
    round: Round<'a>,
    measured: Measured,
}

impl Scenario<'_> {
    fn is(&self, via: Via, mode: Mode) -> bool {
        self.via == via && self.mode == mode
    }
}

/// Every row of the table, in table order.
fn scenarios<'a>(
    config: &Config,
    plan: &'a Plan,
    ebpf: &Daemon,
    no_ebpf: &Daemon,
) -> Vec<Scenario<'a>> {
    let mut all = Vec::new();
    for (via, daemon) in [(Via::EbpfDaemon, ebpf), (Via::ProcfsDaemon, no_ebpf)] {
        let socket = daemon.socket();
        let mut modes = vec![Mode::KeepAlive, Mode::NewConnection];
        if via == Via::EbpfDaemon {
            modes.insert(1, Mode::KeepAliveSameCpu);
        }
        for mode in modes {
            let samples = match mode {
                Mode::NewConnection => config.new_connection_requests,
                _ => config.keep_alive_requests,
            };
            all.push(scenario(
                via,
                mode,
                samples,
                single(plan, daemon, via, mode),
            ));
        }
        for threads in [1, 2] {
            let batches = batched(plan, socket, via, threads, config.check_every_batch);
            all.push(scenario(
                via,
                Mode::Batched { threads },
                config.batches,
                batches,
            ));
        }
    }
    for threads in [1, 2] {
        let reads = in_process(plan, threads);
        all.push(scenario(
            Via::InProcess,
            Mode::Read { threads },
            config.reads,
            reads,
        ));
    }
    all
}

fn scenario(via: Via, mode: Mode, samples: usize, round: Round<'_>) -> Scenario<'_> {
    Scenario {
        via,
        mode,
        samples,
        round,
        measured: Measured::default(),
    }
}

/// Clients that start at evenly spread offsets of a list of `len`, so threads do not ask for
/// the same PIDs at the same time.
fn clients(socket: &Path, threads: usize, len: usize) -> Vec<Client> {
    (0..threads)
        .map(|t| Client::new(socket, t * len / threads))
        .collect()
}

/// Sequential `GET /v1/pid/{pid}`, round-robin over the targets, on one persistent connection
/// (`mode` [`Mode::KeepAlive`] or [`Mode::KeepAliveSameCpu`]) or a new connection per request
/// ([`Mode::NewConnection`]). Every answer is checked after the round.
fn single<'a>(plan: &'a Plan, daemon: &Daemon, via: Via, mode: Mode) -> Round<'a> {
    let keep_alive = mode != Mode::NewConnection;
    let pin = (mode == Mode::KeepAliveSameCpu).then_some(daemon.pid());
    let mut clients = clients(daemon.socket(), 1, plan.targets.len());
    Box::new(move |samples, deadline| {
        if keep_alive {
            clients.iter_mut().for_each(Client::reconnect);
        }
        let pinned = pin.map(SameCpu::pin);
        let (latencies, wall, answers) = run_clients(&mut clients, samples, deadline, |c| {
            let index = c.advance(plan.targets.len());
            let started = Instant::now();
            let reply = if keep_alive {
                c.keep_alive(&plan.get_keep_alive[index])
            } else {
                c.one_shot(&plan.get_close[index])
            };
            let latency = started.elapsed();
            (latency, (index, reply.status, reply.body.into_owned()))
        });
        drop(pinned);
        for (index, status, body) in &answers {
            check_single(&plan.targets[*index], *status, body, via);
        }
        measured(latencies, answers.len(), wall, samples)
    })
}

/// `POST /v1/pids` batches on one persistent connection per thread. Every status is checked,
/// and the full body of one batch in `check_every`.
fn batched<'a>(
    plan: &'a Plan,
    socket: &Path,
    via: Via,
    threads: usize,
    check_every: usize,
) -> Round<'a> {
    let mut clients = clients(socket, threads, plan.batches.len());
    Box::new(move |samples, deadline| {
        clients.iter_mut().for_each(Client::reconnect);
        let (latencies, wall, answers) = run_clients(&mut clients, samples, deadline, |c| {
            let index = c.advance(plan.batches.len());
            let keep = c.steps % check_every == 0;
            let started = Instant::now();
            let reply = c.keep_alive(&plan.batches[index].request);
            let latency = started.elapsed();
            let body = keep.then(|| reply.body.into_owned());
            (latency, (index, reply.status, body))
        });
        for (index, status, body) in &answers {
            check_batch(plan, &plan.batches[*index], *status, body.as_deref(), via);
        }
        let batch_size = plan.batches[0].members.len();
        measured(latencies, answers.len() * batch_size, wall, samples)
    })
}

/// The no-daemon baseline: [`resolve_in_process`] round-robin over the targets.
fn in_process(plan: &Plan, threads: usize) -> Round<'_> {
    let mut clients = clients(Path::new(""), threads, plan.targets.len());
    Box::new(move |samples, deadline| {
        let (latencies, wall, answers) = run_clients(&mut clients, samples, deadline, |c| {
            let index = c.advance(plan.targets.len());
            let pid = plan.targets[index].pid;
            let started = Instant::now();
            let id = resolve_in_process(pid, &mut c.proc_path, &mut c.proc_text);
            let latency = started.elapsed();
            (latency, (index, id))
        });
        for (index, id) in &answers {
            check_in_process(&plan.targets[*index], id);
        }
        measured(latencies, answers.len(), wall, samples)
    })
}

fn measured(latencies: Vec<Duration>, lookups: usize, wall: Duration, asked: usize) -> Measured {
    Measured {
        capped: latencies.len() < asked,
        latencies,
        lookups,
        wall,
    }
}

/// One client thread's start, end, and each step's latency and result.
type ThreadRun<T> = (Instant, Instant, Vec<(Duration, T)>);

/// Runs `samples` steps in all, split evenly over one thread per client (each client's steps
/// in sequence), until done or `deadline`. A step returns its own latency, so it can time just
/// the round trip, and a result to check after the clock stopped. Returns the latencies, the
/// wall time from the first thread's start to the last one's end, and the results.
fn run_clients<T: Send>(
    clients: &mut [Client],
    samples: usize,
    deadline: Instant,
    step: impl Fn(&mut Client) -> (Duration, T) + Sync,
) -> (Vec<Duration>, Duration, Vec<T>) {
    let threads = clients.len();
    // Threads start together, so the 2-thread rows measure two clients at once.
    let barrier = Barrier::new(threads);
    let per_thread: Vec<ThreadRun<T>> = thread::scope(|s| {
        let handles: Vec<_> = clients
            .iter_mut()
            .enumerate()
            .map(|(t, client)| {
                let share = samples / threads + usize::from(t < samples % threads);
                let (barrier, step) = (&barrier, &step);
                s.spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    let mut out = Vec::with_capacity(share);
                    while out.len() < share && Instant::now() < deadline {
                        out.push(step(client));
                    }
                    (start, Instant::now(), out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| panic::resume_unwind(p)))
            .collect()
    });
    let first = per_thread.iter().map(|t| t.0).min().expect("one thread");
    let last = per_thread.iter().map(|t| t.1).max().expect("one thread");
    let (latencies, results) = per_thread.into_iter().flat_map(|t| t.2).unzip();
    (latencies, last - first, results)
}

/// Runs a warm-up round of every scenario, then `config.rounds` rounds of all of them in turn
/// (every other round in reverse order), so that machine noise is spread over all rows.
fn run_interleaved(scenarios: &mut [Scenario<'_>], config: &Config) {
    for s in scenarios.iter_mut() {
        // Warm-up: connections, caches, the daemon's allocator; checked, not recorded.
        let _ = (s.round)((s.samples / 10).max(1), Instant::now() + config.round_cap);
    }
    for round in 0..config.rounds {
        let mut order: Vec<usize> = (0..scenarios.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            let s = &mut scenarios[i];
            let samples =
                s.samples / config.rounds + usize::from(round < s.samples % config.rounds);
            let measured = (s.round)(samples, Instant::now() + config.round_cap);
            s.measured.merge(measured);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Checks: a bench that silently measures errors is worthless.

fn check_single(target: &Target, status: u16, body: &[u8], via: Via) {
    let text = || String::from_utf8_lossy(body);
    assert_eq!(
        status,
        200,
        "{}: GET /v1/pid/{}: {}",
        via.name(),
        target.pid,
        text()
    );
    let answer: Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{}: answer is not JSON ({e}): {}", via.name(), text()));
    if let Err(e) = check_answer(&answer, target, via) {
        panic!("{}: GET /v1/pid/{}: {e}: {answer}", via.name(), target.pid);
    }
}

fn check_batch(plan: &Plan, batch: &Batch, status: u16, body: Option<&[u8]>, via: Via) {
    let text = || String::from_utf8_lossy(body.unwrap_or_default());
    assert_eq!(status, 200, "{}: POST /v1/pids: {}", via.name(), text());
    let Some(body) = body else { return };
    let answers: Vec<Value> = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{}: batch answer is not a JSON array ({e})", via.name()));
    assert_eq!(
        answers.len(),
        batch.members.len(),
        "{}: batch answer length",
        via.name()
    );
    for (answer, &index) in answers.iter().zip(&batch.members) {
        let target = &plan.targets[index];
        if let Err(e) = check_answer(answer, target, via) {
            panic!(
                "{}: POST /v1/pids, PID {}: {e}: {answer}",
                via.name(),
                target.pid
            );
        }
    }
}

/// The PID matches, there is no error, the source is the daemon's, and a containerized PID
/// resolves to its container.
fn check_answer(answer: &Value, target: &Target, via: Via) -> Result<(), String> {
    if answer["pid"] != target.pid {
        return Err(format!("answer for another PID (expected {})", target.pid));
    }
    if !answer["error"].is_null() {
        return Err("error answer".to_owned());
    }
    if answer["source"] != via.source() {
        return Err(format!("source is not {:?}", via.source()));
    }
    match &target.container {
        Some(id) if answer["container_id"] != id.as_str() => {
            Err(format!("container_id is not {id}"))
        }
        _ => Ok(()),
    }
}

fn check_in_process(target: &Target, id: &io::Result<Option<String>>) {
    match id {
        Err(e) => panic!("reading /proc/{}/cgroup: {e}", target.pid),
        Ok(found) if target.container.is_some() && *found != target.container => panic!(
            "/proc/{}/cgroup resolved to {found:?}, expected {:?}",
            target.pid, target.container
        ),
        Ok(_) => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Report.

/// The sample at permille `q` of `sorted` (nearest rank).
fn percentile(sorted: &[Duration], q: usize) -> Duration {
    let rank = (sorted.len() * q).div_ceil(1000).max(1);
    sorted[rank.min(sorted.len()) - 1]
}

/// Latency summary of one row.
#[derive(Debug, Clone, Copy)]
struct Summary {
    per_second: f64,
    p50: Duration,
    p99: Duration,
    p999: Duration,
}

fn summarize(measured: &Measured) -> Summary {
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

fn fmt_duration(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{:.1} µs", d.as_secs_f64() * 1e6)
    } else {
        format!("{:.2} ms", d.as_secs_f64() * 1e3)
    }
}

/// `1234567.8` as `1,234,568`.
fn fmt_rate(rate: f64) -> String {
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

fn print_setup(config: &Config, ebpf: &Daemon, no_ebpf: &Daemon, took: Duration) {
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
    println!("  set-up took {:.1} s", took.as_secs_f64());
    println!(
        "  method: warm-up, then {} interleaved rounds per row (alternating order); latency per \
         request / batch / in-process lookup; lookups/s over wall time; answers checked \
         outside the clock",
        config.rounds
    );
}

fn print_table(scenarios: &[Scenario<'_>], config: &Config, took: Duration) {
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

fn find_summary(scenarios: &[Scenario<'_>], via: Via, mode: Mode) -> Summary {
    let s = scenarios
        .iter()
        .find(|s| s.is(via, mode))
        .expect("every row exists");
    summarize(&s.measured)
}

fn print_ratios(scenarios: &[Scenario<'_>]) {
    let get = |via, mode| find_summary(scenarios, via, mode);
    let single = get(Via::EbpfDaemon, Mode::KeepAlive);
    let same_cpu = get(Via::EbpfDaemon, Mode::KeepAliveSameCpu);
    let single_new = get(Via::EbpfDaemon, Mode::NewConnection);
    let read = get(Via::InProcess, Mode::Read { threads: 1 });
    println!();
    println!("ratios (same run)");
    println!("  single lookup latency, eBPF daemon / in-process /proc read (1 thread):");
    print_latency_ratio("keep-alive", single, read);
    print_latency_ratio("keep-alive, same CPU", same_cpu, read);
    print_latency_ratio("new connection each", single_new, read);
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

/// One line: p50 and p99 of `a` over those of `b`.
fn print_latency_ratio(label: &str, a: Summary, b: Summary) {
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(f64::MIN_POSITIVE);
    println!(
        "    {:<22} p50 {} / {} = {:.1}x    p99 {} / {} = {:.1}x",
        format!("{label}:"),
        fmt_duration(a.p50),
        fmt_duration(b.p50),
        ratio(a.p50, b.p50),
        fmt_duration(a.p99),
        fmt_duration(b.p99),
        ratio(a.p99, b.p99),
    );
}
