//! Faults, each with what was lost and the figures (printed with `eprintln!`; run with
//! `--nocapture` to see them): a ring buffer overflowed by a fork storm, a PID map filled past
//! its capacity, runtime sockets that accept and never answer, cgroups removed while they are
//! read, and 50,000 processes and 2,000 cgroups churned with the daemon's memory, descriptors
//! and kernel map back to their baseline afterwards.
use std::{
    collections::HashMap,
    fs,
    io::Read as _,
    os::unix::net::{UnixListener, UnixStream},
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

use super::{
    repair::Stopped,
    util::{container_id, lookup, metric, root, wait_for},
};
use crate::support::{
    bpf,
    cgroup::{TestCgroup, v1_mount},
    clone3::{Clone3Child, Then},
    daemon::Daemon,
    http,
    process::{ChildGuard, cgroup_v2_path, spawn_in_cgroup, start_time_ticks},
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

/// `n` children made with `clone3` into the v2 cgroup `dir` that exit at once; each one's
/// PID and start time (read while it is a zombie, before it is reaped).
fn storm(dir: &Path, n: usize) -> Vec<(u32, u64)> {
    (0..n)
        .map(|_| {
            let mut child = Clone3Child::spawn(Some(dir), None, Then::Exit).expect("clone3");
            let ticks = start_time_ticks(child.pid()).expect("the zombie's start time");
            child.wait().expect("reaping");
            (child.pid(), ticks)
        })
        .collect()
}

/// Every numeric entry of /proc (processes, not threads).
fn proc_pids() -> Vec<u32> {
    fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// Whether process `pid` has exited and waits to be reaped: a zombie's /proc entry stays,
/// with its start time, until its parent (here often an init that reaps late) waits for it.
/// `None` when unreadable, or when its leader is a zombie while other threads still run
/// (the process lives on) or are still exiting: not clearly one or the other.
fn is_zombie(pid: u32) -> Option<bool> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let state = stat[stat.rfind(')')? + 1..].split_whitespace().next()?;
    if !matches!(state, "Z" | "X") {
        return Some(false);
    }
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let threads: u32 = status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))?
        .trim()
        .parse()
        .ok()?;
    (threads <= 1).then_some(true)
}

/// How the daemon's answers for every process in /proc compare with procfs: (compared,
/// mismatches). A process that exited, or moved, between the two procfs reads around the
/// lookup is left out (its answer may rightly be either). A zombie at both reads has
/// exited: it must be answered exited, with its start time and cgroup.
fn compare_with_procfs(daemon: &Daemon) -> (usize, Vec<String>) {
    let read = |pid: u32| {
        Some((
            start_time_ticks(pid).ok()?,
            cgroup_v2_path(pid).ok()?,
            is_zombie(pid)?,
        ))
    };
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
        let (ticks, path, zombie) = before;
        let right = answer["exited"] == zombie
            && answer_ticks(answer) == Some(ticks)
            && answer["cgroup_hierarchy_id"] == 0
            && answer["cgroup_path"] == path.as_str();
        if !right {
            mismatches.push(format!(
                "pid {pid} (start {ticks}, {path}, zombie: {zombie}): {answer}"
            ));
        }
    }
    (compared, mismatches)
}

#[test]
fn a_fork_storm_overflows_the_ring_buffer_and_the_repair_answers_right() {
    const THREADS: usize = 4;
    const PER_THREAD: usize = 1_000;
    if !root() {
        return;
    }
    // One page of ring buffer: a few dozen events fill it.
    let daemon = Daemon::start(&["--ring-buffer-bytes", "4096"]);
    let storm_id = container_id("storm");
    let storm_cg = TestCgroup::new(&format!("system.slice/docker-{storm_id}.scope"));
    eprintln!(
        "storm cgroup {} (inode {}), test process {}",
        storm_cg.v2_dir().display(),
        storm_cg.inode_v2(),
        std::process::id()
    );
    let long_id = container_id("storm-long");
    let long_cg = TestCgroup::new(&format!("system.slice/docker-{long_id}.scope"));
    // Long-lived processes the daemon knows, killed during the storm while it cannot read.
    let doomed: Vec<ChildGuard> = (0..5)
        .map(|_| spawn_in_cgroup(&long_cg, &["sleep", "120"]))
        .collect();
    let doomed_pids: Vec<u32> = doomed.iter().map(ChildGuard::pid).collect();
    for &pid in &doomed_pids {
        assert_eq!(lookup(&daemon, pid)["container_id"], long_id.as_str());
    }
    let lost_before = metric(&daemon, "collector_kernel_events_lost_total");
    let repairs_before = metric(&daemon, "collector_identity_repairs_total");

    let started = Instant::now();
    let mut lost_while_running = 0;
    let (children, long) = thread::scope(|s| {
        let storms: Vec<_> = (0..THREADS)
            .map(|_| s.spawn(|| storm(storm_cg.v2_dir(), PER_THREAD)))
            .collect();
        // Long-lived processes started during the storm: ten while the daemon reads, ten
        // while it is stopped (SIGSTOP), so the storm overflows the buffer whatever the
        // scheduling; the known ones die unseen meanwhile.
        let mut long: Vec<ChildGuard> = Vec::new();
        for _ in 0..10 {
            long.push(spawn_in_cgroup(&long_cg, &["sleep", "120"]));
            thread::sleep(Duration::from_millis(20));
        }
        lost_while_running = metric(&daemon, "collector_kernel_events_lost_total") - lost_before;
        {
            let _stopped = Stopped::new(daemon.pid());
            for _ in 0..10 {
                long.push(spawn_in_cgroup(&long_cg, &["sleep", "120"]));
            }
            drop(doomed);
            thread::sleep(Duration::from_millis(300));
        }
        let children: Vec<(u32, u64)> = storms
            .into_iter()
            .flat_map(|t| t.join().expect("storm thread"))
            .collect();
        (children, long)
    });
    let storm_secs = started.elapsed().as_secs_f64();
    let lost = metric(&daemon, "collector_kernel_events_lost_total") - lost_before;
    assert!(
        lost > 0,
        "no event lost: the storm did not overflow the buffer"
    );

    // The repair: every long-lived process is answered from the index with its container,
    // and those that died unseen are marked exited.
    let repair_started = Instant::now();
    wait_for("the repair", Duration::from_secs(20), || {
        let pids: Vec<u32> = long.iter().map(ChildGuard::pid).collect();
        let live = lookup_batch(&daemon, &pids);
        let dead = lookup_batch(&daemon, &doomed_pids);
        (live.iter().all(|a| {
            a["source"] == "ebpf" && a["container_id"] == long_id.as_str() && a["exited"] == false
        }) && dead
            .iter()
            .all(|a| a["container_id"] == long_id.as_str() && a["exited"] == true))
        .then_some(())
    });
    let repair_secs = repair_started.elapsed().as_secs_f64();
    let repairs = metric(&daemon, "collector_identity_repairs_total") - repairs_before;
    assert!(repairs > 0);

    // No storm PID is answered as another process's: an answer naming the storm's container
    // is that very child (same start time, exited); any other answer is of a process that
    // reused the PID since (another start time). Children whose fork and exit were both lost
    // are unknown (404), which is right: the kernel no longer has them either.
    let pids: Vec<u32> = children.iter().map(|&(pid, _)| pid).collect();
    let latest: HashMap<u32, u64> = children.iter().copied().collect();
    let (mut right, mut unknown, mut reused) = (0, 0, 0);
    for (pid, answer) in pids.iter().zip(lookup_batch(&daemon, &pids)) {
        let ticks = latest[pid];
        if answer.get("error").is_some_and(|e| !e.is_null()) {
            unknown += 1;
        } else if answer["container_id"] == storm_id.as_str() {
            assert_eq!(answer_ticks(&answer), Some(ticks), "pid {pid}: {answer}");
            assert_eq!(answer["exited"], true, "pid {pid}: {answer}");
            right += 1;
        } else {
            assert_ne!(answer_ticks(&answer), Some(ticks), "pid {pid}: {answer}");
            reused += 1;
        }
    }
    assert!(right > 0, "no storm child answered");
    // The kernel map keeps no entry of a storm child, whether its events were lost or not.
    let map_entries = assert_no_entry_of_a_gone_process(&daemon);
    let (compared, mismatches) = compare_with_procfs(&daemon);
    assert!(mismatches.is_empty(), "{mismatches:#?}");
    eprintln!(
        "ring overflow: {} storm children + 20 long-lived in {storm_secs:.1} s ({THREADS} \
         threads, daemon stopped 0.3 s of it); events lost: {lost} ({lost_while_running} while \
         the daemon was reading); repairs: {repairs}, done {repair_secs:.1} s after the storm; \
         storm PIDs afterwards: {right} answered exited in their container, {unknown} unknown, \
         {reused} reused by other processes, 0 wrong; 20/20 long-lived and 5/5 killed unseen \
         answered right; daemon vs procfs: {compared} processes compared, 0 mismatches; \
         PROCESSES map: {map_entries} entries, none of a gone process",
        children.len()
    );
    drop(long);
}

/// A daemon started while processes are forked and exit at a high rate: every program is
/// attached while they come and go, and the task iterator lists them meanwhile. Afterwards
/// the kernel map has no entry of a process that is gone (such an entry would stay until
/// the PID is reused, taking a slot of the map).
#[test]
fn a_daemon_started_during_a_fork_storm_keeps_no_entry_of_a_gone_process() {
    const THREADS: usize = 2;
    if !root() {
        return;
    }
    let storm_id = container_id("start-storm");
    let storm_cg = TestCgroup::new(&format!("system.slice/docker-{storm_id}.scope"));
    let done = AtomicBool::new(false);
    let (children, daemon) = thread::scope(|s| {
        let storms: Vec<_> = (0..THREADS)
            .map(|_| {
                s.spawn(|| {
                    let mut n = 0;
                    while !done.load(Ordering::SeqCst) {
                        n += storm(storm_cg.v2_dir(), 50).len();
                    }
                    n
                })
            })
            .collect();
        thread::sleep(Duration::from_millis(100));
        let daemon = Daemon::start(&[]);
        thread::sleep(Duration::from_millis(300));
        done.store(true, Ordering::SeqCst);
        let children: usize = storms
            .into_iter()
            .map(|t| t.join().expect("storm thread"))
            .sum();
        (children, daemon)
    });
    let map_entries = assert_no_entry_of_a_gone_process(&daemon);
    eprintln!(
        "daemon started during a fork storm: {children} children made and gone meanwhile; \
         PROCESSES map: {map_entries} entries, none of a gone process"
    );
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

/// The user and system CPU time of `pid` in seconds (fields 14 and 15 of its stat).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/<pid>/stat");
    let after_comm = &stat[stat.rfind(')').expect("comm") + 1..];
    let ticks: u64 = after_comm
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(|t| t.parse::<u64>().expect("ticks"))
        .sum();
    Duration::from_millis(ticks * 10).as_secs_f64()
}

/// `VmRSS` of `pid` in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/<pid>/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
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

/// Descriptors `pid` holds on cgroupfs below any of `prefixes`.
fn descriptors_below(pid: u32, prefixes: &[String]) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("/proc/<pid>/fd")
        .flatten()
        .filter_map(|e| fs::read_link(e.path()).ok())
        .map(|t| t.display().to_string())
        .filter(|t| {
            t.starts_with("/sys/fs/cgroup/") && prefixes.iter().any(|p| t.contains(p.as_str()))
        })
        .count()
}

/// Containers removed right after a full collection read them: the descriptors the stats
/// reader holds for them are let go within the next upkeep passes, although the container
/// snapshot the first pass could reuse (up to a second old) still lists them.
#[test]
fn removed_containers_let_go_of_their_descriptors_at_once() {
    const CONTAINERS: usize = 20;
    if !root() {
        return;
    }
    let daemon = Daemon::start(&[]);
    for round in 0..3 {
        let ids: Vec<String> = (0..CONTAINERS).map(|_| container_id("let-go")).collect();
        let cgroups: Vec<TestCgroup> = ids
            .iter()
            .map(|id| TestCgroup::new(&format!("system.slice/docker-{id}.scope")))
            .collect();
        let prefixes: Vec<String> = cgroups.iter().map(|c| c.prefix().to_owned()).collect();
        let children: Vec<ChildGuard> = cgroups
            .iter()
            .map(|cg| spawn_in_cgroup(cg, &["sleep", "60"]))
            .collect();
        let response = daemon.get("/v1/stats?max_age_ms=0");
        assert_eq!(response.status, 200, "{}", response.body);
        let body = response.body;
        assert!(ids.iter().all(|id| body.contains(id.as_str())), "{body}");
        let held = descriptors_below(daemon.pid(), &prefixes);
        assert!(
            held > 0,
            "the full collection held no file of the containers"
        );
        let removed = Instant::now();
        drop(children);
        drop(cgroups);
        wait_for(
            "the removed containers' descriptors to be let go",
            Duration::from_secs(5),
            || (descriptors_below(daemon.pid(), &prefixes) == 0).then_some(()),
        );
        eprintln!(
            "round {round}: {held} descriptors of {CONTAINERS} removed containers let go {:?} \
             after their removal",
            removed.elapsed()
        );
    }
}

/// Container cgroups made and removed by [`churn`] below `parent`; any left (a failed test)
/// are removed on drop, before the parent's guard removes the parent.
struct ChurnDirs(PathBuf);

impl Drop for ChurnDirs {
    fn drop(&mut self) {
        let Ok(entries) = fs::read_dir(&self.0) else {
            return;
        };
        for entry in entries.flatten() {
            if entry.path().join("cgroup.procs").exists() {
                let _ = fs::remove_dir(entry.path());
            }
        }
    }
}

/// Churn from one thread: `cgroups` container cgroups made below `parent`, `per_cgroup`
/// processes in each (one made into it with `clone3`, which forks the others there; each
/// exits at once), then the cgroup removed. `CLONE_INTO_CGROUP`, like mkdir and rmdir,
/// takes the kernel's cgroup mutex: one clone3 per cgroup keeps the churn from queueing on
/// it 50,000 times behind whatever else on the machine holds it.
/// Returns the cgroups' inodes.
fn churn(parent: &Path, tag: &str, cgroups: usize, per_cgroup: usize) -> Vec<u64> {
    let mut inodes = Vec::with_capacity(cgroups);
    for _ in 0..cgroups {
        let dir = parent.join(format!("docker-{}.scope", container_id(tag)));
        fs::create_dir(&dir).expect("mkdir");
        inodes.push(crate::support::cgroup::inode(&dir));
        let forks = u32::try_from(per_cgroup - 1).expect("a few");
        let mut child =
            Clone3Child::spawn(Some(&dir), None, Then::ForkExit(forks)).expect("clone3");
        child.wait().expect("reaping");
        fs::remove_dir(&dir).expect("rmdir");
    }
    inodes
}

/// `threads` churning threads of `cgroups` cgroups × `per_cgroup` processes each, with
/// lookups, stats and scrapes meanwhile; how long it took and the cgroups' inodes.
fn churn_with_lookups(
    daemon: &Daemon,
    parent: &Path,
    threads: usize,
    cgroups: usize,
    per_cgroup: usize,
) -> (Duration, Vec<u64>) {
    let started = Instant::now();
    let done = AtomicBool::new(false);
    let inodes = thread::scope(|s| {
        let churners: Vec<_> = (0..threads)
            .map(|_| s.spawn(|| churn(parent, "churn", cgroups, per_cgroup)))
            .collect();
        let lookups = s.spawn(|| {
            let mut n: usize = 0;
            while !done.load(Ordering::SeqCst) {
                n += 1;
                // A batch of PID lookups every 50 ms; a stats read, a scrape or a listing
                // every second (they read every container of the host).
                let pids: Vec<u32> = (0..64u32)
                    .map(|i| (u32::try_from(n % 512).expect("small") * 64 + i) % 32_768 + 1)
                    .collect();
                let _ = lookup_batch(daemon, &pids);
                if n.is_multiple_of(20) {
                    let path = ["/v1/stats", "/metrics", "/v1/containers"][(n / 20) % 3];
                    let response = daemon.get(path);
                    assert_eq!(response.status, 200, "GET {path}: {}", response.body);
                }
                thread::sleep(Duration::from_millis(50));
            }
            n
        });
        let inodes: Vec<u64> = churners
            .into_iter()
            .flat_map(|c| c.join().expect("churn thread"))
            .collect();
        done.store(true, Ordering::SeqCst);
        lookups.join().expect("lookups");
        inodes
    });
    (started.elapsed(), inodes)
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

/// Keys in the pinned PROCESSES map whose process is gone: read twice 2 s apart, so a
/// process that exits between the read of the keys and the look at /proc is not counted.
fn stale_map_entries(pin: &Path) -> (usize, Vec<u32>) {
    let read = || -> Vec<u32> {
        let fd = bpf::open_pinned(pin).expect("the pin");
        bpf::keys(&fd, 4)
            .expect("map keys")
            .iter()
            .map(|k| u32::from_ne_bytes(k[..4].try_into().expect("4 bytes")))
            .collect()
    };
    let gone = |pid: &u32| !Path::new(&format!("/proc/{pid}")).exists();
    let first: Vec<u32> = read().into_iter().filter(gone).collect();
    thread::sleep(Duration::from_secs(2));
    let keys = read();
    let stale = first
        .into_iter()
        .filter(|pid| keys.contains(pid) && gone(pid))
        .collect();
    (keys.len(), stale)
}

/// The PROCESSES map's entries of `pids` as text: start time, cgroup ids, parent, flags
/// (`collector_common::process::ProcessInfo`).
fn map_values(pin: &Path, pids: &[u32]) -> Vec<String> {
    let fd = bpf::open_pinned(pin).expect("the pin");
    pids.iter()
        .map(|pid| {
            let Ok(Some(v)) = bpf::lookup(&fd, &pid.to_ne_bytes(), 32) else {
                return format!("{pid}: gone from the map");
            };
            let u64_at = |i: usize| u64::from_ne_bytes(v[i..i + 8].try_into().expect("8 bytes"));
            let u32_at = |i: usize| u32::from_ne_bytes(v[i..i + 4].try_into().expect("4 bytes"));
            let parent = u32_at(24);
            let parent_is = fs::read_to_string(format!("/proc/{parent}/comm"))
                .map_or_else(|_| "gone".to_owned(), |comm| comm.trim().to_owned());
            format!(
                "{pid}: start {} ns, cgroup v2 {} v1 {}, parent {parent} ({parent_is}), flags {}",
                u64_at(0),
                u64_at(8),
                u64_at(16),
                u32_at(28)
            )
        })
        .collect()
}

/// Asserts that the daemon's PROCESSES map holds no entry of a gone process; returns how
/// many entries it holds.
fn assert_no_entry_of_a_gone_process(daemon: &Daemon) -> usize {
    let pin = daemon.pin_dir().join("processes");
    let (map_entries, stale) = stale_map_entries(&pin);
    assert!(
        stale.is_empty(),
        "{} entries of gone processes in the PROCESSES map, e.g. {:?}",
        stale.len(),
        map_values(&pin, &stale[..stale.len().min(5)])
    );
    map_entries
}

/// The daemon's figures at rest.
#[derive(Debug)]
struct AtRest {
    rss_kib: u64,
    /// All descriptors, those on cgroupfs, those on cgroupfs below the churn's parent.
    fds: (usize, usize, usize),
    map_entries: usize,
    /// Entries of processes that are gone.
    stale: Vec<u32>,
    exited: u64,
    cgroups: u64,
}

fn at_rest(daemon: &Daemon, ours: &str) -> AtRest {
    let (entries, stale) = stale_map_entries(&daemon.pin_dir().join("processes"));
    let metrics = daemon.get("/metrics").body;
    let value = |prefix: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(prefix)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{prefix} not in\n{metrics}"))
    };
    AtRest {
        rss_kib: rss_kib(daemon.pid()),
        fds: descriptors(daemon.pid(), ours),
        map_entries: entries,
        stale,
        exited: value("collector_identity_processes{state=\"exited\"}"),
        cgroups: value("collector_identity_cgroups"),
    }
}

/// Waits until the exited processes and removed cgroups the churn left are collected
/// (`--exited-grace 1`, upkeep every second): few exited processes in the index, no
/// descriptor on a churned cgroup, no kernel map entry of a gone process, and none of
/// `inodes` known any more.
fn settle(daemon: &Daemon, ours: &str, inodes: &[u64]) -> AtRest {
    thread::sleep(Duration::from_secs(3));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rest = at_rest(daemon, ours);
        let known: Vec<Value> = inodes
            .iter()
            .filter_map(|inode| {
                let response = daemon.get(&format!("/v1/inode/{inode}"));
                (response.status != 404).then(|| response.json())
            })
            .collect();
        if rest.exited < 200 && rest.fds.2 == 0 && rest.stale.is_empty() && known.is_empty() {
            return rest;
        }
        assert!(
            Instant::now() < deadline,
            "not back to rest after 30 s: {rest:?}; churned cgroups still known: {} {:?}; \
             map entries of gone processes: {:?}; their answers: {:?}",
            known.len(),
            &known[..known.len().min(3)],
            map_values(
                &daemon.pin_dir().join("processes"),
                &rest.stale[..rest.stale.len().min(5)]
            ),
            lookup_batch(daemon, &rest.stale[..rest.stale.len().min(5)])
        );
    }
}

#[test]
fn churning_50k_processes_and_2k_cgroups_leaves_no_trace() {
    const THREADS: usize = 2;
    const CGROUPS_PER_THREAD: usize = 1_000;
    const PROCESSES_PER_CGROUP: usize = 25;
    if !root() {
        return;
    }
    let daemon = Daemon::start(&["--exited-grace", "1"]);
    let parent = TestCgroup::new("system.slice");
    let dirs = ChurnDirs(parent.v2_dir().to_path_buf());
    let ours = parent.prefix().to_owned();
    // Warm-up: a tenth of the churn, so the allocator's arenas, the maps' tables and the
    // caches reach their working size before the baseline.
    let (warm_up, _) = churn_with_lookups(&daemon, &dirs.0, THREADS, 100, PROCESSES_PER_CGROUP);
    eprintln!("churn warm-up: 5000 processes, 200 cgroups in {warm_up:?}");
    let before = settle(&daemon, &ours, &[]);

    let cpu_before = cpu_seconds(daemon.pid());
    let (took, inodes) = churn_with_lookups(
        &daemon,
        &dirs.0,
        THREADS,
        CGROUPS_PER_THREAD,
        PROCESSES_PER_CGROUP,
    );
    let peak_kib = rss_kib(daemon.pid());
    let cpu_secs = cpu_seconds(daemon.pid()) - cpu_before;
    let after = settle(&daemon, &ours, &inodes);
    let processes = THREADS * CGROUPS_PER_THREAD * PROCESSES_PER_CGROUP;
    eprintln!(
        "churn: {processes} processes and {} cgroups in {:.1} s with lookups running \
         ({:.0} processes/s; the daemon used {cpu_secs:.1} s of CPU); RSS {} KiB before, {peak_kib} KiB right after, {} KiB settled; \
         descriptors (all, on cgroupfs, on the churn's cgroups) {:?} -> {:?}; PROCESSES map \
         entries {} -> {} (none of a gone process); index exited {} -> {}, cgroups {} -> {} \
         (none of the churned still known)",
        inodes.len(),
        took.as_secs_f64(),
        f64::from(u32::try_from(processes).expect("50,000")) / took.as_secs_f64(),
        before.rss_kib,
        after.rss_kib,
        before.fds,
        after.fds,
        before.map_entries,
        after.map_entries,
        before.exited,
        after.exited,
        before.cgroups,
        after.cgroups,
    );
    // RSS: what the index and caches hold for the churn is freed after the grace; the
    // allocator may keep some freed pages, hence the margin (10 MiB, or a quarter of the
    // baseline when that is more).
    let margin = (10 * 1024).max(before.rss_kib / 4);
    assert!(
        after.rss_kib <= before.rss_kib + margin,
        "RSS {} KiB -> {} KiB (margin {margin} KiB)",
        before.rss_kib,
        after.rss_kib
    );
    // Descriptors other than the cgroup files held for the host's live containers.
    let (fds_before, fds_after) = (before.fds.0 - before.fds.1, after.fds.0 - after.fds.1);
    assert!(
        fds_after.abs_diff(fds_before) <= 2,
        "descriptors {:?} -> {:?}",
        before.fds,
        after.fds
    );
    assert_eq!(after.fds.2, 0, "descriptors on removed cgroups");
    assert!(
        fs::read_dir(&dirs.0)
            .expect("parent")
            .flatten()
            .all(|e| !e.path().join("cgroup.procs").exists())
    );
    drop(dirs);
}
