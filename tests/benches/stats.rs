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
//! `cargo xtask bench` runs it as root with `COLLECTOR_DAEMON_BIN`; a positional argument
//! runs only the benches whose name contains it (`cargo xtask bench -- stats`). Without
//! `--bench` (as `cargo test --benches` runs it) it is a quick smoke run with small counts,
//! and the target is not judged.

use std::collections::{BTreeMap, HashMap};
use std::hash::RandomState;
use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};
use std::{fs, thread};

use collector_tests::support::cgroup::{TestCgroup, v1_mount, v2_mount};
use collector_tests::support::daemon::Daemon;
use collector_tests::support::http::{parse_response, request};
use collector_tests::support::process::{
    ChildGuard, bench_sleeper, enter_before_exec, random_container_id,
};
use collector_tests::support::{is_root, require};
use serde_json::Value;
// Dependencies of the support lib and the integration tests that this bench does not use.
use {collector_common as _, collector_daemon as _, tempfile as _};

use {
    collector_common as _, collector_daemon as _, k8s_cri as _, libc as _, tempfile as _,
    tokio as _, tonic as _,
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
    if !collector_tests::support::bench_selected("stats") {
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
    // Declared before the daemons, so dropped after them: the daemons stop first, then the
    // sleepers are killed and the cgroups removed.
    let mut fleet = Fleet::new();
    let started = Instant::now();
    fleet.grow(config.sizes[0]);
    let mut setup = vec![(config.sizes[0], started.elapsed())];

    let started = Instant::now();
    let ebpf = Rc::new(Measured::start_daemon(Via::Ebpf));
    let paths = [
        Measured::new(Via::Ebpf, Rc::clone(&ebpf)),
        Measured::new(
            Via::Cgroupfs,
            Rc::new(Measured::start_daemon(Via::Cgroupfs)),
        ),
        Measured::new(Via::Scrape, Rc::clone(&ebpf)),
        Measured::new(Via::ScrapeGzip, ebpf),
    ];
    let daemons_took = started.elapsed();
    print_setup(&fleet, &paths, daemons_took);

    let mut rows = Vec::new();
    let mut floors = Vec::new();
    for (step, (&size, &per_round)) in config.sizes.iter().zip(&config.per_round).enumerate() {
        if step > 0 {
            let started = Instant::now();
            fleet.grow(size);
            setup.push((size, started.elapsed()));
        }
        let (measured, floor) = measure_size(&fleet, &paths, size, per_round, &config);
        rows.extend(measured);
        floors.push(floor);
    }
    print_table(&rows, &setup, &config);
    print_floor(&rows, &floors);
    print_ratios(&rows, &floors, &config);
}

// ---------------------------------------------------------------------------------------------
// The containers.

/// The test containers: one `docker` cgroup below a unique test prefix in v2 and in every v1
/// hierarchy of [`CONTROLLERS`] that is mounted, with one nested cgroup per container id.
/// Fields drop in order: the sleepers are killed before the cgroups are removed (the guard
/// removes the nested directories too).
struct Fleet {
    children: Vec<ChildGuard>,
    cgroup: TestCgroup,
    controllers: Vec<&'static str>,
    ids: Vec<String>,
    id_seed: RandomState,
}

impl Fleet {
    fn new() -> Self {
        // A controller co-mounted with another (`cpu,cpuacct` on some hosts) has the same
        // directory: create it once.
        let mut mounts: Vec<PathBuf> = Vec::new();
        let controllers: Vec<&'static str> = CONTROLLERS
            .into_iter()
            .filter(|c| match v1_mount(c) {
                Some(mount) if !mounts.contains(&mount) => {
                    mounts.push(mount);
                    true
                }
                _ => false,
            })
            .collect();
        let cgroup = TestCgroup::with_v1("docker", &controllers);
        if controllers.contains(&"cpuset") {
            // A new v1 cpuset has no CPUs and no memory nodes, and no process can join it
            // until both are set: copy the parent's, top down.
            let docker = cgroup.v1_dir("cpuset");
            copy_cpuset(docker.parent().expect("docker/ is below the test prefix"));
            copy_cpuset(docker);
        }
        Self {
            children: Vec::new(),
            cgroup,
            controllers,
            ids: Vec::new(),
            id_seed: RandomState::new(),
        }
    }

    /// Adds containers until there are `total`: a cgroup `docker/<id>` in every hierarchy and
    /// one `sleep` inside from before its exec.
    fn grow(&mut self, total: usize) {
        let docker_dirs: Vec<PathBuf> = self
            .cgroup
            .procs_files()
            .iter()
            .map(|f| {
                f.parent()
                    .expect("cgroup.procs is in a directory")
                    .to_owned()
            })
            .collect();
        while self.ids.len() < total {
            let id = random_container_id(&self.id_seed, self.ids.len());
            self.cgroup.mkdir_nested(&id);
            if self.controllers.contains(&"cpuset") {
                copy_cpuset(&self.cgroup.v1_dir("cpuset").join(&id));
            }
            let procs: Vec<PathBuf> = docker_dirs
                .iter()
                .map(|d| d.join(&id).join("cgroup.procs"))
                .collect();
            let mut cmd = bench_sleeper();
            enter_before_exec(&mut cmd, &procs);
            let child = cmd
                .spawn()
                .unwrap_or_else(|e| panic!("spawning sleep in docker/{id}: {e}"));
            self.children.push(ChildGuard::new(child));
            self.ids.push(id);
        }
    }
}

/// Copies `cpuset.cpus` and `cpuset.mems` from the parent of `dir` into `dir`.
fn copy_cpuset(dir: &Path) {
    let parent = dir.parent().expect("a cgroup has a parent");
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let value = fs::read_to_string(parent.join(file))
            .unwrap_or_else(|e| panic!("reading {}: {e}", parent.join(file).display()));
        fs::write(dir.join(file), value.trim())
            .unwrap_or_else(|e| panic!("writing {}: {e}", dir.join(file).display()));
    }
}

// ---------------------------------------------------------------------------------------------
// The two paths and one measured collection.

/// Which daemon answers what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
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
    fn name(self) -> &'static str {
        match self {
            Via::Ebpf => "eBPF daemon",
            Via::Cgroupfs => "--no-ebpf daemon",
            Via::Scrape => "eBPF /metrics",
            Via::ScrapeGzip => "eBPF /metrics gz",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Via::Ebpf | Via::Cgroupfs => STATS_PATH,
            Via::Scrape | Via::ScrapeGzip => METRICS_PATH,
        }
    }

    /// What `sources.network` must say: which path really answered.
    fn network_source(self) -> &'static str {
        match self {
            Via::Ebpf | Via::Scrape | Via::ScrapeGzip => "ebpf",
            Via::Cgroupfs => "system",
        }
    }
}

/// A request under measurement, to a daemon (the scrapes share the eBPF daemon).
struct Measured {
    via: Via,
    daemon: Rc<Daemon>,
    /// The request, built once.
    request: Vec<u8>,
}

impl Measured {
    /// Starts the daemon for `via` and makes sure it is what the rows say: an eBPF daemon that
    /// silently fell back to cgroupfs would make the comparison worthless.
    fn start_daemon(via: Via) -> Daemon {
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

    fn new(via: Via, daemon: Rc<Daemon>) -> Self {
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
    fn collect(&self, body: &mut Vec<u8>) -> Sample {
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
fn fetch(socket: &Path, request: &[u8], body: &mut Vec<u8>) -> std::io::Result<()> {
    body.clear();
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    stream.write_all(request)?;
    stream.read_to_end(body).map(drop)
}

/// Nanoseconds on CPU of each thread of `pid` (first field of its `schedstat`).
fn thread_cpu(pid: u32) -> HashMap<u32, u64> {
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
fn cpu_between(before: &HashMap<u32, u64>, after: &HashMap<u32, u64>) -> (Duration, bool) {
    let ns: u64 = after
        .iter()
        .map(|(tid, &now)| now.saturating_sub(before.get(tid).copied().unwrap_or(0)))
        .sum();
    let exited = before.keys().any(|tid| !after.contains_key(tid));
    (Duration::from_nanos(ns), exited)
}

/// One measured collection.
#[derive(Debug, Clone, Copy)]
struct Sample {
    wall: Duration,
    cpu: Duration,
    thread_exited: bool,
}

// ---------------------------------------------------------------------------------------------
// Checks: a bench that measures error answers or half answers is worthless.

/// What one answer held, for the report.
#[derive(Debug, Clone, Default)]
struct Answer {
    /// Containers listed (ours and any others on the machine).
    containers: usize,
    /// `sources` of the first test container.
    sources: BTreeMap<String, String>,
}

/// Checks a whole response: 200, a JSON array listing every id of `ids` with `cpu.total` and
/// `memory.usage_total` not null and `sources.network` of `via`; for a scrape, see
/// [`check_scrape`].
fn check(raw: &[u8], ids: &[String], via: Via) -> Result<Answer, String> {
    match via {
        Via::Ebpf | Via::Cgroupfs => {}
        Via::Scrape => return check_scrape(raw, ids),
        Via::ScrapeGzip => return check_gzipped(raw),
    }
    let response = parse_response(raw, true)
        .map_err(|e| format!("unparsable response: {e}"))?
        .ok_or("incomplete response")?;
    if response.status != 200 {
        return Err(format!(
            "status {}: {}",
            response.status,
            &response.body[..response.body.len().min(300)]
        ));
    }
    let answers: Vec<Value> = serde_json::from_str(&response.body)
        .map_err(|e| format!("body is not a JSON array ({e})"))?;
    let by_id: HashMap<&str, &Value> = answers
        .iter()
        .filter_map(|a| Some((a["container_id"].as_str()?, a)))
        .collect();
    for id in ids {
        let Some(answer) = by_id.get(id.as_str()) else {
            return Err(format!(
                "container {id} missing ({} containers listed)",
                answers.len()
            ));
        };
        for (section, field) in [("cpu", "total"), ("memory", "usage_total")] {
            if answer[section][field].is_null() {
                return Err(format!("{section}.{field} is null for {id}: {answer}"));
            }
        }
        if answer["sources"]["network"] != via.network_source() {
            return Err(format!(
                "sources.network is not {:?} for {id}: {}",
                via.network_source(),
                answer["sources"]
            ));
        }
    }
    let sources = ids
        .first()
        .and_then(|id| by_id.get(id.as_str()))
        .and_then(|a| a["sources"].as_object())
        .map(|s| {
            s.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("?").to_owned()))
                .collect()
        })
        .unwrap_or_default();
    Ok(Answer {
        containers: answers.len(),
        sources,
    })
}

/// Checks a plain scrape: 200, and one `container_cpu_usage_seconds_total` and one
/// `container_memory_working_set_bytes` series for every id of `ids` (the `id` label is the
/// container's cgroup path, which ends in its id).
fn check_scrape(raw: &[u8], ids: &[String]) -> Result<Answer, String> {
    let response = parse_response(raw, true)
        .map_err(|e| format!("unparsable response: {e}"))?
        .ok_or("incomplete response")?;
    if response.status != 200 {
        return Err(format!("status {}", response.status));
    }
    let mut series: HashMap<(&str, &str), usize> = HashMap::new();
    let mut containers = std::collections::HashSet::new();
    for line in response.body.lines() {
        let Some((name, rest)) = line.split_once("{id=\"") else {
            continue;
        };
        let Some((path, _)) = rest.split_once('"') else {
            continue;
        };
        let id = path.rsplit('/').next().unwrap_or(path);
        containers.insert(id);
        *series.entry((name, id)).or_default() += 1;
    }
    for id in ids {
        for family in [
            "container_cpu_usage_seconds_total",
            "container_memory_working_set_bytes",
        ] {
            match series.get(&(family, id.as_str())) {
                Some(1) => {}
                found => return Err(format!("{family} of {id}: {found:?} series")),
            }
        }
    }
    Ok(Answer {
        containers: containers.len(),
        sources: BTreeMap::new(),
    })
}

/// Checks a gzipped scrape: 200 with `Content-Encoding: gzip` and a gzip body (its content is
/// the plain scrape's, checked there).
fn check_gzipped(raw: &[u8]) -> Result<Answer, String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of headers")?;
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    if !head.starts_with("http/1.1 200") {
        return Err(format!("status line {:?}", head.lines().next()));
    }
    if !head.contains("content-encoding: gzip") {
        return Err(format!("not gzipped: {head}"));
    }
    if !raw[end + 4..].starts_with(&[0x1f, 0x8b]) {
        return Err("body has no gzip magic".to_owned());
    }
    Ok(Answer::default())
}

/// Asks until the daemon lists every test container with full values (a daemon learns of new
/// cgroups by events or by scanning; neither is what is measured here). Also the warm-up.
fn wait_covered(path: &Measured, ids: &[String]) -> Answer {
    let deadline = Instant::now() + COVER_TIMEOUT;
    let mut body = Vec::new();
    loop {
        let _ = path.collect(&mut body);
        // A client error (no such route, a rejected query) will not go away by waiting.
        if path.via != Via::ScrapeGzip
            && let Ok(Some(response)) = parse_response(&body, true)
            && (400..500).contains(&response.status)
        {
            panic!(
                "{}: GET {}: {} {}",
                path.via.name(),
                path.via.path(),
                response.status,
                response.body
            );
        }
        match check(&body, ids, path.via) {
            Ok(answer) => return answer,
            Err(e) if Instant::now() > deadline => panic!(
                "{}: GET {} did not cover the {} test containers within {COVER_TIMEOUT:?}: {e}",
                path.via.name(),
                path.via.path(),
                ids.len()
            ),
            Err(_) => thread::sleep(Duration::from_millis(200)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Rounds.

/// One row of the table.
struct Row {
    size: usize,
    via: Via,
    samples: Vec<Sample>,
    answer: Answer,
    body_bytes: usize,
}

/// Measures every path with the first `size` containers live: a checked warm-up each, then
/// `config.rounds` rounds of `per_round` requests per path, taking turns request by request,
/// the order rotating every round; and before each turn one pass of the [`Floor`].
fn measure_size(
    fleet: &Fleet,
    paths: &[Measured],
    size: usize,
    per_round: usize,
    config: &Config,
) -> (Vec<Row>, FloorRow) {
    let ids = &fleet.ids[..size];
    let mut rows: Vec<Row> = paths
        .iter()
        .map(|p| Row {
            size,
            via: p.via,
            samples: Vec::new(),
            answer: wait_covered(p, ids),
            body_bytes: 0,
        })
        .collect();
    let floor = Floor::open(fleet, size);
    floor.sample(); // warm-up
    let mut floor_samples = Vec::new();
    let mut bodies: Vec<Vec<u8>> = paths.iter().map(|_| Vec::new()).collect();
    for round in 0..config.rounds {
        for _ in 0..per_round {
            floor_samples.push(floor.sample());
            for turn in 0..paths.len() {
                let i = (turn + round) % paths.len();
                let sample = paths[i].collect(&mut bodies[i]);
                // Outside the clock.
                if let Err(e) = check(&bodies[i], ids, paths[i].via) {
                    panic!(
                        "{} with {size} containers: GET {}: {e}",
                        paths[i].via.name(),
                        paths[i].via.path()
                    );
                }
                rows[i].samples.push(sample);
                rows[i].body_bytes = bodies[i].len();
            }
        }
    }
    (
        rows,
        FloorRow {
            size,
            files: floor.files.len(),
            samples: floor_samples,
        },
    )
}

// ---------------------------------------------------------------------------------------------
// The floor: what the kernel's part of a collection costs with nothing else around it.

/// The cgroup files the eBPF daemon reads per container in a full collection on a hybrid host,
/// by v1 controller (`cgroupfs/stats_reader.rs`): IO counters are left out (the kernel programs
/// count IO) and so are the parents' files (the daemon keeps parents' limits for a second).
/// The one-number files of `memory`, `cpu`, `pids` and `cpuset` (usage, peak, failcnt, kmem,
/// soft limit, shares, quota, `cpu.stat`, `pids.*`, `cpuset.effective_cpus`) are not read
/// either: the daemon's kernel cgroup walk gives them, and its cost (one walk per hierarchy)
/// is in the daemon's figure, not in the floor.
const V1_FILES: [(&str, &str); 3] = [
    ("cpuacct", "cpuacct.usage"),
    ("cpuacct", "cpuacct.stat"),
    ("memory", "memory.stat"),
];
/// The same in the container's v2 directory: pressure on a hybrid host (the v1 controllers
/// give the rest), every file on a v2-only host. Files this host lacks are skipped.
const V2_PRESSURE_FILES: [&str; 3] = ["cpu.pressure", "memory.pressure", "io.pressure"];
const V2_FILES: [&str; 14] = [
    "cpu.stat",
    "cpu.max",
    "cpu.weight",
    "cpuset.cpus.effective",
    "memory.current",
    "memory.stat",
    "memory.max",
    "memory.low",
    "memory.swap.current",
    "memory.swap.max",
    "memory.events",
    "memory.peak",
    "pids.current",
    "pids.max",
];

/// The bench itself reading, for the first `size` containers and in the daemon's order, the
/// cgroup files the daemon reads (through descriptors held open, `pread` at offset 0, no
/// parsing) and `stat()`ing each sleeper's `/proc/<pid>/fd` (its open-files count): the
/// kernel's share of a collection, which no daemon can go below by reading cgroupfs.
struct Floor {
    files: Vec<fs::File>,
    fd_dirs: Vec<PathBuf>,
}

impl Floor {
    fn open(fleet: &Fleet, size: usize) -> Self {
        raise_nofile_to_hard();
        let v2 = fleet.cgroup.v2_dir();
        let v2_files: Vec<&str> = if fleet.controllers.is_empty() {
            [&V2_FILES[..], &V2_PRESSURE_FILES[..]].concat()
        } else {
            V2_PRESSURE_FILES.to_vec()
        };
        let mut files = Vec::new();
        for id in &fleet.ids[..size] {
            let mut paths: Vec<PathBuf> = V1_FILES
                .iter()
                .filter(|(controller, _)| fleet.controllers.contains(controller))
                .map(|(controller, file)| fleet.cgroup.v1_dir(controller).join(id).join(file))
                .collect();
            paths.extend(v2_files.iter().map(|file| v2.join(id).join(file)));
            for path in paths {
                match fs::File::open(&path) {
                    Ok(file) => files.push(file),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => panic!("floor: opening {}: {e}", path.display()),
                }
            }
        }
        let fd_dirs = fleet.children[..size]
            .iter()
            .map(|c| PathBuf::from(format!("/proc/{}/fd", c.pid())))
            .collect();
        Self { files, fd_dirs }
    }

    /// One pass: its wall time and this thread's CPU time.
    fn sample(&self) -> Sample {
        use std::os::unix::fs::FileExt as _;
        let mut buf = vec![0u8; 64 * 1024];
        let cpu_before = thread_cpu_self();
        let started = Instant::now();
        for file in &self.files {
            file.read_at(&mut buf, 0)
                .unwrap_or_else(|e| panic!("floor: pread: {e}"));
        }
        for dir in &self.fd_dirs {
            fs::metadata(dir).unwrap_or_else(|e| panic!("floor: stat {}: {e}", dir.display()));
        }
        Sample {
            wall: started.elapsed(),
            cpu: thread_cpu_self().saturating_sub(cpu_before),
            thread_exited: false,
        }
    }
}

/// The floor's samples for one size.
struct FloorRow {
    size: usize,
    /// Cgroup files read per pass (all containers).
    files: usize,
    samples: Vec<Sample>,
}

/// CPU time of the calling thread.
fn thread_cpu_self() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the struct we pass.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &raw mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

/// The floor holds ~6 descriptors per container (17 on a v2-only host): lift the soft limit
/// to the hard one.
fn raise_nofile_to_hard() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls with valid pointers.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &raw const limit);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Report.

/// The sample at permille `q` of `sorted` (nearest rank).
fn percentile(sorted: &[Duration], q: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (sorted.len() * q).div_ceil(1000).max(1);
    sorted[rank.min(sorted.len()) - 1]
}

/// Median and p90 of wall and CPU time of a row.
#[derive(Debug, Clone, Copy)]
struct Summary {
    wall_p50: Duration,
    wall_p90: Duration,
    cpu_p50: Duration,
    cpu_p90: Duration,
}

fn summarize(samples: &[Sample]) -> Summary {
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

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(f64::MIN_POSITIVE)
}

/// `d / n` in µs.
fn per_container(d: Duration, n: usize) -> String {
    let n = u32::try_from(n).map_or(f64::from(u32::MAX), f64::from);
    format!("{:.1} µs", d.as_secs_f64() * 1e6 / n.max(1.0))
}

fn print_setup(fleet: &Fleet, paths: &[Measured], daemons_took: Duration) {
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
            p.via.name(),
            p.daemon.pid(),
            p.daemon.healthz()["ebpf"]
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

fn print_table(rows: &[Row], setup: &[(usize, Duration)], config: &Config) {
    println!();
    println!(
        "{:>10} {:<17} {:>7} {:>10} {:>10} {:>10} {:>10} {:>13} {:>9} {:>8}",
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
    println!("{}", "-".repeat(114));
    let mut last_size = None;
    for row in rows {
        if last_size.is_some_and(|s| s != row.size) {
            println!();
        }
        last_size = Some(row.size);
        let sum = summarize(&row.samples);
        println!(
            "{:>10} {:<17} {:>7} {:>10} {:>10} {:>10} {:>10} {:>13} {:>6} KB {:>8}",
            row.size,
            row.via.name(),
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
    println!("{}", "-".repeat(114));
    for row in rows
        .iter()
        .filter(|r| r.samples.iter().any(|s| s.thread_exited))
    {
        let n = row.samples.iter().filter(|s| s.thread_exited).count();
        println!(
            "note: {} with {}: {n} samples saw a daemon thread exit (their CPU undercounts)",
            row.via.name(),
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
        println!("sources ({}): {}", row.via.name(), sources.join(" "));
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

fn print_floor(rows: &[Row], floors: &[FloorRow]) {
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
                .find(|r| r.size == floor.size && r.via == via)
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

fn print_ratios(rows: &[Row], floors: &[FloorRow], config: &Config) {
    let get = |size: usize, via: Via| {
        rows.iter()
            .find(|r| r.size == size && r.via == via)
            .map(|r| summarize(&r.samples))
            .expect("every row exists")
    };
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
                .find(|r| r.size == size && r.via == via)
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
    println!();
    if !config.judge {
        println!("targets: not judged in quick mode (counts too small); run with --bench");
        return;
    }
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
