//! Faults, each with what was lost and the figures (printed with `eprintln!`; run with
//! `--nocapture` to see them): a PID map filled past its capacity, runtime sockets that accept
//! and never answer, and cgroups removed while they are read.
use std::{
    collections::HashMap,
    fs,
    io::Read as _,
    os::unix::net::{UnixListener, UnixStream},
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

use super::util::{container_id, lookup, metric, root, wait_for};
use crate::support::{
    bpf,
    cgroup::{TestCgroup, v1_mount},
    clone3::{Clone3Child, Then},
    daemon::Daemon,
    http,
    process::{cgroup_v2_path, spawn_in_cgroup, start_time_ticks},
};

/// Nanoseconds per clock tick (`USER_HZ` is 100 on every architecture the daemon runs on):
/// an answer's `start_time_ns` divided by this is `/proc/<pid>/stat`'s start time.
const NS_PER_TICK: u64 = 10_000_000;

/// `POST /v1/pids` with `pids`, asserting 200; the answers in order.
fn lookup_batch(daemon: &Daemon, pids: &[u32]) -> Vec<Value> {
    let body = serde_json::to_vec(pids).expect("PIDs as JSON");
    let response = daemon.post("/v1/pids", &body);
    assert_eq!(response.status, 200, "POST /v1/pids: {}", response.body);
    let answers = response.json().as_array().expect("an array").clone();
    assert_eq!(answers.len(), pids.len());
    answers
}

/// An answer's start time in clock ticks.
fn answer_ticks(answer: &Value) -> Option<u64> {
    answer["start_time_ns"].as_u64().map(|ns| ns / NS_PER_TICK)
}

/// Every numeric entry of /proc (processes, not threads).
fn proc_pids() -> Vec<u32> {
    fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// How the daemon's answers for every process in /proc compare with procfs: (compared,
/// mismatches). A process that exited, or moved, between the two procfs reads around the
/// lookup is left out (its answer may rightly be either).
fn compare_with_procfs(daemon: &Daemon) -> (usize, Vec<String>) {
    let read = |pid: u32| Some((start_time_ticks(pid).ok()?, cgroup_v2_path(pid).ok()?));
    let pids = proc_pids();
    let before: Vec<_> = pids.iter().map(|&p| read(p)).collect();
    let answers = lookup_batch(daemon, &pids);
    let mut compared = 0;
    let mut mismatches = Vec::new();
    for ((&pid, before), answer) in pids.iter().zip(before).zip(&answers) {
        let (Some(before), Some(after)) = (before, read(pid)) else {
            continue;
        };
        if before != after {
            continue;
        }
        compared += 1;
        let (ticks, path) = before;
        let right = answer["exited"] == false
            && answer_ticks(answer) == Some(ticks)
            && answer["cgroup_hierarchy_id"] == 0
            && answer["cgroup_path"] == path.as_str();
        if !right {
            mismatches.push(format!("pid {pid} (start {ticks}, {path}): {answer}"));
        }
    }
    (compared, mismatches)
}

#[test]
fn a_pid_map_past_capacity_still_answers_every_process() {
    const CGROUPS: usize = 4;
    const PER_CGROUP: usize = 500;
    if !root() {
        return;
    }
    let daemon = Daemon::start(&["--max-processes", "1024"]);
    let full_before = metric(&daemon, "collector_kernel_process_map_full_total");
    let cgroups: Vec<(String, TestCgroup)> = (0..CGROUPS)
        .map(|i| {
            let id = container_id(&format!("map-full-{i}"));
            let cg = TestCgroup::new(&format!("docker/{id}"));
            (id, cg)
        })
        .collect();
    // 2,000 paused children (clone3: no exec, so they cost little memory) on top of the
    // host's own processes: twice the map's capacity.
    let mut expected: Vec<(u32, u64, &str)> = Vec::new();
    let mut children: Vec<Clone3Child> = Vec::new();
    for (id, cg) in &cgroups {
        for _ in 0..PER_CGROUP {
            let child = Clone3Child::spawn(Some(cg.v2_dir()), None, Then::Pause).expect("clone3");
            let ticks = start_time_ticks(child.pid()).expect("start time");
            expected.push((child.pid(), ticks, id.as_str()));
            children.push(child);
        }
    }
    let live_on_host = proc_pids().len();
    assert!(live_on_host > 2 * 1024 - 100, "{live_on_host} processes");
    let full = metric(&daemon, "collector_kernel_process_map_full_total") - full_before;
    assert!(full > 0, "the map never filled");
    let pin = daemon.pin_dir().join("processes");
    let in_map = bpf::keys(&bpf::open_pinned(&pin).expect("the pin"), 4)
        .expect("map keys")
        .len();

    let right = |pid: u32, ticks: u64, id: &str, answer: &Value| {
        assert_eq!(answer["container_id"], id, "pid {pid}: {answer}");
        assert_eq!(answer["exited"], false, "pid {pid}: {answer}");
        assert_eq!(answer_ticks(answer), Some(ticks), "pid {pid}: {answer}");
    };
    let mut sources: HashMap<String, usize> = HashMap::new();
    let single = Instant::now();
    for &(pid, ticks, id) in &expected {
        let answer = lookup(&daemon, pid);
        right(pid, ticks, id, &answer);
        *sources
            .entry(answer["source"].as_str().unwrap_or("?").to_owned())
            .or_default() += 1;
    }
    let single_ms = single.elapsed().as_millis();
    let pids: Vec<u32> = expected.iter().map(|&(pid, _, _)| pid).collect();
    let batch = Instant::now();
    let answers = lookup_batch(&daemon, &pids);
    let batch_ms = batch.elapsed().as_millis();
    for (&(pid, ticks, id), answer) in expected.iter().zip(&answers) {
        right(pid, ticks, id, answer);
    }
    let (compared, mismatches) = compare_with_procfs(&daemon);
    assert!(mismatches.is_empty(), "{mismatches:#?}");

    // Once they are gone none of them is left in the kernel map (other processes of the
    // host may fill it again at once, so the check is on ours, not on free room).
    drop(children);
    let fd = bpf::open_pinned(&pin).expect("the pin");
    let value_len = size_of::<collector_common::process::ProcessInfo>();
    let left: Vec<u32> = expected
        .iter()
        .filter(|&&(pid, ticks, _)| {
            bpf::lookup(&fd, &pid.to_ne_bytes(), value_len)
                .expect("lookup")
                .is_some_and(|v| {
                    // SAFETY: ProcessInfo is plain integers; the buffer has exactly its size.
                    let info = unsafe {
                        v.as_ptr()
                            .cast::<collector_common::process::ProcessInfo>()
                            .read_unaligned()
                    };
                    info.start_boottime_ns / NS_PER_TICK == ticks
                })
        })
        .map(|&(pid, _, _)| pid)
        .collect();
    assert!(left.is_empty(), "map entries of exited children: {left:?}");
    eprintln!(
        "map past capacity: --max-processes 1024, {} processes of ours among {live_on_host} on \
         the host; map full {full} times, {in_map} entries in the map; every one answered right \
         ({} single lookups in {single_ms} ms, sources {sources:?}; one batch of {} in \
         {batch_ms} ms); daemon vs procfs: {compared} compared, 0 mismatches; none of them \
         left in the map after they exited",
        expected.len(),
        expected.len(),
        pids.len()
    );
}

/// Unix sockets that accept every connection and never answer: a runtime that hangs. The
/// connections are held open (as a hung server would) until the guard drops.
struct HungServer {
    dir: tempfile::TempDir,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl HungServer {
    fn start(names: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let threads = names
            .iter()
            .map(|name| {
                let listener = UnixListener::bind(dir.path().join(name)).expect("bind");
                listener.set_nonblocking(true).expect("nonblocking");
                let (accepted, stop) = (Arc::clone(&accepted), Arc::clone(&stop));
                thread::spawn(move || {
                    let mut held: Vec<UnixStream> = Vec::new();
                    while !stop.load(Ordering::SeqCst) {
                        match listener.accept() {
                            Ok((stream, _)) => {
                                accepted.fetch_add(1, Ordering::SeqCst);
                                held.push(stream);
                            }
                            Err(_) => thread::sleep(Duration::from_millis(10)),
                        }
                        // Read (and drop) what arrives, so writers never block on a full
                        // buffer: the server hears the request and does not answer.
                        for stream in &mut held {
                            let _ = stream.set_nonblocking(true);
                            let _ = stream.read(&mut [0; 4096]);
                        }
                    }
                })
            })
            .collect();
        Self {
            dir,
            accepted,
            stop,
            threads,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for HungServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Sends `GET path` and returns the response and how long it took, failing after `bound`.
fn timed_get(daemon: &Daemon, path: &str, bound: Duration) -> (http::Response, Duration) {
    let started = Instant::now();
    let response =
        http::send_with_timeout(daemon.socket(), &http::request("GET", path, None), bound)
            .unwrap_or_else(|e| panic!("GET {path}: no answer within {bound:?}: {e}"));
    (response, started.elapsed())
}

#[test]
fn hung_runtime_sockets_are_bounded_and_nothing_else_waits() {
    // Long enough that a request held up by a runtime would stand out from one that is
    // only slow because the machine is busy: such a request would take the whole timeout.
    const TIMEOUT_SECS: u64 = 5;
    if !root() {
        return;
    }
    let bound = Duration::from_secs(TIMEOUT_SECS + 1);
    let hung = HungServer::start(&["docker.sock", "containerd.sock"]);
    let docker = hung.path("docker.sock");
    let containerd = hung.path("containerd.sock");
    let started = Instant::now();
    let daemon = Daemon::start(&[
        "--docker-socket",
        docker.to_str().expect("UTF-8"),
        "--containerd-socket",
        containerd.to_str().expect("UTF-8"),
        "--runtime-timeout",
        &TIMEOUT_SECS.to_string(),
    ]);
    let startup = started.elapsed();
    let id = container_id("hung");
    let cg = TestCgroup::new(&format!("system.slice/docker-{id}.scope"));
    let child = spawn_in_cgroup(&cg, &["sleep", "60"]);
    wait_for("both runtimes to be asked", Duration::from_secs(5), || {
        (hung.accepted.load(Ordering::SeqCst) >= 2).then_some(())
    });

    // Every route answers while the watchers wait on the hung sockets, time out, back off
    // and reconnect: over three timeouts.
    let routes = [
        format!("/v1/pid/{}", child.pid()),
        format!("/v1/inode/{}", cg.inode_v2()),
        "/v1/containers".to_owned(),
        format!("/v1/containers/{id}/stats"),
        "/v1/stats".to_owned(),
        "/metrics".to_owned(),
        "/healthz".to_owned(),
    ];
    let mut took_all: Vec<Duration> = Vec::new();
    // Descriptors once every route was served (the stats read keeps cgroup files open),
    // compared with the count after the retries.
    let mut fds_first = None;
    let window = Duration::from_secs(2 * TIMEOUT_SECS + 2);
    let deadline = Instant::now() + window;
    while Instant::now() < deadline {
        for route in &routes {
            let (response, took) = timed_get(&daemon, route, bound);
            assert_eq!(response.status, 200, "GET {route}: {}", response.body);
            took_all.push(took);
        }
        fds_first.get_or_insert_with(|| descriptors(daemon.pid(), "-"));
        thread::sleep(Duration::from_millis(50));
    }
    took_all.sort();
    let answer = lookup(&daemon, child.pid());
    assert_eq!(answer["container_id"], id.as_str(), "{answer}");
    assert_eq!(answer["runtime"], "docker", "{answer}");
    assert_eq!(answer["source"], "ebpf", "{answer}");
    assert!(
        answer["name"].is_null() && answer["image"].is_null(),
        "{answer}"
    );
    let stats = daemon.get(&format!("/v1/containers/{id}/stats")).json();
    assert!(
        stats["cpu"]["total"].as_u64().is_some_and(|t| t > 0),
        "{stats}"
    );
    assert!(stats["pid"]["thread_count"] == 1, "{stats}");
    let metrics = daemon.get("/metrics").body;
    for runtime in ["docker", "containerd"] {
        let up = format!("collector_runtime_up{{runtime=\"{runtime}\"}} 0");
        assert!(metrics.contains(&up), "{up} not in\n{metrics}");
    }

    // Each outage is logged once, not at every retry; the failed connections are closed.
    let log = daemon.log();
    let docker_down = log.matches("Docker is down").count();
    let containerd_down = log.matches("containerd is unreachable").count();
    assert_eq!(docker_down, 1, "{log}");
    assert_eq!(containerd_down, 1, "{log}");
    assert!(log.contains("did not answer within 5s"), "{log}");
    let attempts = hung.accepted.load(Ordering::SeqCst);
    assert!(
        attempts >= 4,
        "{attempts} connections: the watchers did not retry"
    );
    // Descriptors other than the cgroup files the stats reader holds for every container on
    // the machine (other tests create and remove theirs meanwhile).
    let fds_first = fds_first.expect("a round of requests");
    let fds_last = descriptors(daemon.pid(), "-");
    let (fds_first, fds_last) = (fds_first.0 - fds_first.1, fds_last.0 - fds_last.1);
    assert!(
        fds_last <= fds_first + 2,
        "descriptors {fds_first} -> {fds_last}"
    );
    assert!(daemon.is_running());
    eprintln!(
        "hung runtimes: --runtime-timeout {TIMEOUT_SECS}; daemon healthy {:.2} s after spawn; \
         {} requests on 7 routes over {window:?}, all 200, median {:.1} ms, slowest {:.1} ms \
         (bound {bound:?}); {attempts} connections to the hung sockets, each outage logged \
         once; descriptors {fds_first} -> {fds_last}; identity and stats unaffected (names \
         and images null)",
        startup.as_secs_f64(),
        took_all.len(),
        took_all[took_all.len() / 2].as_secs_f64() * 1000.0,
        took_all.iter().max().expect("requests").as_secs_f64() * 1000.0,
    );
}

/// What the readers of `cgroups_removed_while_read_answer_absent_never_zero` saw.
#[derive(Default)]
struct ReadTally {
    requests: usize,
    not_found: usize,
    /// Stats answers of churned containers, and those with a section absent (`null`).
    churned_stats: usize,
    partial: usize,
    failures: Vec<String>,
}

/// Checks one stats answer of a churned container: its CPU time is absent or positive (a
/// process ran in it before its id was published, so 0 would be a value made up for a file
/// that could not be read).
fn check_churned_stats(stats: &Value, tally: &mut ReadTally) {
    tally.churned_stats += 1;
    let total = &stats["cpu"]["total"];
    if !(total.is_null() || total.as_u64().is_some_and(|t| t > 0)) {
        tally
            .failures
            .push(format!("CPU time 0 for a churned container: {stats}"));
    }
    if ["cpu", "memory", "pid"].iter().any(|s| stats[*s].is_null()) {
        tally.partial += 1;
    }
}

/// One reader of that test: hammers a route until `done`, checking every answer.
fn read_while_churned(
    daemon: &Daemon,
    route: &str,
    published: &Mutex<Vec<(String, u64)>>,
    done: &AtomicBool,
) -> ReadTally {
    let mut tally = ReadTally::default();
    let mut n = 0usize;
    while !done.load(Ordering::SeqCst) {
        n += 1;
        let recent = published.lock().expect("lock").last().cloned();
        let path = match (route, &recent) {
            ("stats-one", Some((id, _))) => format!("/v1/containers/{id}/stats"),
            ("inode", Some((_, inode))) => format!("/v1/inode/{inode}"),
            ("stats-one" | "inode", None) => {
                thread::sleep(Duration::from_millis(1));
                continue;
            }
            ("rotate", _) => ["/v1/stats", "/metrics", "/v1/containers"][n % 3].to_owned(),
            (other, _) => other.to_owned(),
        };
        // The ids published before the request: a container published after it was read
        // may rightly show no CPU time yet.
        let ids: Vec<String> = published
            .lock()
            .expect("lock")
            .iter()
            .map(|(id, _)| id.clone())
            .collect();
        let response = daemon.get(&path);
        tally.requests += 1;
        match response.status {
            200 => {}
            404 if path.starts_with("/v1/containers/") || path.starts_with("/v1/inode/") => {
                tally.not_found += 1;
                continue;
            }
            status => {
                tally
                    .failures
                    .push(format!("GET {path}: {status} {}", response.body));
                continue;
            }
        }
        if path.ends_with("/stats") && path.starts_with("/v1/containers/") {
            check_churned_stats(&response.json(), &mut tally);
        } else if path.starts_with("/v1/stats") {
            for stats in response.json().as_array().expect("an array") {
                if ids.iter().any(|id| stats["container_id"] == id.as_str()) {
                    check_churned_stats(stats, &mut tally);
                }
            }
        } else if path == "/v1/containers" {
            assert!(response.json().is_array());
        }
    }
    tally
}

#[test]
fn cgroups_removed_while_read_answer_absent_never_zero() {
    const CHURN: Duration = Duration::from_secs(8);
    if !root() {
        return;
    }
    let daemon = Daemon::start(&[]);
    let controllers: Vec<&str> = ["memory", "cpuacct", "pids"]
        .into_iter()
        .filter(|c| v1_mount(c).is_some())
        .collect();
    let published: Mutex<Vec<(String, u64)>> = Mutex::new(Vec::new());
    let done = AtomicBool::new(false);
    let mut rounds = 0;
    let tallies = thread::scope(|s| {
        let readers: Vec<_> = ["stats-one", "rotate", "inode", "/v1/stats?max_age_ms=0"]
            .into_iter()
            .map(|route| {
                let (daemon, published, done) = (&daemon, &published, &done);
                s.spawn(move || read_while_churned(daemon, route, published, done))
            })
            .collect();
        // Each round: a container cgroup in v2 and the v1 hierarchies, a sleeper inside
        // (so CPU time was spent in it), its id published to the readers, then the sleeper
        // killed and the cgroup removed while they read it.
        let deadline = Instant::now() + CHURN;
        while Instant::now() < deadline {
            let id = container_id("removed");
            let cg = TestCgroup::with_v1(&format!("system.slice/docker-{id}.scope"), &controllers);
            let child = spawn_in_cgroup(&cg, &["sleep", "60"]);
            thread::sleep(Duration::from_millis(5));
            published.lock().expect("lock").push((id, cg.inode_v2()));
            thread::sleep(Duration::from_millis(10 + (rounds % 5) * 10));
            drop(child);
            drop(cg);
            rounds += 1;
        }
        done.store(true, Ordering::SeqCst);
        readers
            .into_iter()
            .map(|r| r.join().expect("reader"))
            .collect::<Vec<ReadTally>>()
    });
    let failures: Vec<&String> = tallies.iter().flat_map(|t| &t.failures).collect();
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(daemon.is_running());
    let log = daemon.log();
    assert!(!log.contains("panic"), "{log}");

    // Afterwards no removed cgroup is anyone's container any more.
    let published = published.into_inner().expect("lock");
    wait_for(
        "the removed containers to go",
        Duration::from_secs(5),
        || {
            let listed = daemon.get("/v1/containers").body;
            let stats = daemon.get("/v1/stats").body;
            published
                .iter()
                .all(|(id, _)| !listed.contains(id.as_str()) && !stats.contains(id.as_str()))
                .then_some(())
        },
    );
    // A removed container is still known for the grace period: its stats answer has no
    // cgroupfs values (null, not 0), or it is unknown (404) once the grace ended.
    for (id, inode) in &published {
        let response = daemon.get(&format!("/v1/containers/{id}/stats"));
        assert!(
            response.status == 404
                || (response.status == 200 && {
                    let stats = response.json();
                    ["cpu", "memory", "pid", "open_files", "timestamp"]
                        .iter()
                        .all(|k| stats[*k].is_null())
                }),
            "{id}: {} {}",
            response.status,
            response.body
        );
        let response = daemon.get(&format!("/v1/inode/{inode}"));
        assert!(
            response.status == 404 || response.json()["removed"] == true,
            "inode {inode}: {} {}",
            response.status,
            response.body
        );
    }
    let sum = |f: fn(&ReadTally) -> usize| tallies.iter().map(f).sum::<usize>();
    eprintln!(
        "cgroups removed mid-read: {rounds} containers (v2 + {controllers:?}) created, read \
         and removed in {CHURN:?}; {} requests, 0 errors 5xx, {} answered 404 (gone); {} stats \
         answers of churned containers, {} with a section null (read after removal), 0 with \
         a made-up 0; every removed one gone from /v1/containers and /v1/stats afterwards",
        sum(|t| t.requests),
        sum(|t| t.not_found),
        sum(|t| t.churned_stats),
        sum(|t| t.partial),
    );
}

/// The daemon's open descriptors: (all, on cgroupfs, on cgroupfs below `ours`). The stats
/// reader holds cgroup files of every live container, also of those other tests on the
/// machine create meanwhile, so those are counted apart.
fn descriptors(pid: u32, ours: &str) -> (usize, usize, usize) {
    let targets: Vec<String> = fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("/proc/<pid>/fd")
        .flatten()
        .filter_map(|e| fs::read_link(e.path()).ok())
        .map(|t| t.display().to_string())
        .collect();
    let cgroupfs = targets.iter().filter(|t| t.starts_with("/sys/fs/cgroup/"));
    (
        targets.len(),
        cgroupfs.clone().count(),
        cgroupfs.filter(|t| t.contains(ours)).count(),
    )
}
