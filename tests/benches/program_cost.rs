//! Program cost bench: what the daemon's kernel programs cost everything else on the node,
//! measured as ratios with and without them attached, in one run on one machine:
//! - loopback TCP throughput: a client thread writes to a server thread over 127.0.0.1 in
//!   64 KiB writes; the `cgroup_skb` programs on the cgroup-v2 root run on every packet. A
//!   measurement is the median of 8 transfers, client and server pinned to two CPUs (the
//!   scheduler's placement otherwise moves the rate by tens of percent). Target: at most 2%
//!   throughput lost.
//! - fork+exit rate: `fork()` a child that `_exit(0)`s at once, `waitpid` it, in a loop; the
//!   lifecycle programs (`task_newtask`, `sched_process_exit`, ...) run on each. Target: at
//!   most 100 ns added per fork+exit.
//!
//! "With" is the daemon as normally started (eBPF loaded, `--metrics-addr none`); "without"
//! is no daemon at all. The daemon is started for each "with" phase and stopped after it, and
//! before each "without" phase the bench checks that none of its programs exists any more (by
//! id). With and without alternate within each round, the first one flipping every round,
//! and the ratios are taken per round (a round's with over the same round's without) before
//! the median, so a slow spell of the noisy VM hits both sides of a ratio alike. During the
//! fork loop the daemon's own CPU time and wake-ups (its threads' schedstat) are read too:
//! consuming the programs' events is part of what running it costs.
//!
//! End to end, 100 ns on a fork that takes over 100 µs on this VM is far below the noise, so
//! the bench also reads the kernel's own figure: one more phase with the daemon running and
//! BPF run-time statistics on (`BPF_ENABLE_STATS`, which is what `sysctl
//! kernel.bpf_stats_enabled=1` sets, released by the kernel when this process exits however it
//! exits) reads `run_time_ns`/`run_cnt` of each of the daemon's programs from
//! `/proc/<daemon>/fdinfo/<prog fd>` before and after each workload: ns per run per program,
//! and the kernel ns per fork+exit (and per MiB sent) summed over the programs the workload
//! caused (those that ran at least once per two forks, or per two MiB; the rest ran for other
//! activity of the machine meanwhile). Statistics stay off during the measured rounds, since
//! they add two clock reads to every program run.
//!
//! The same phase calibrates those figures with empty programs (`r0 = 0; exit`, or `r0 = 1`
//! for `cgroup_skb`, which must let the packet through), attached through links the bench
//! holds: as raw tracepoints to `task_newtask` and `sched_process_exit` during the fork loop
//! (raw and BTF tracepoint programs are called the same way, `bpf_trace_run*()`), and as
//! `cgroup_skb` ingress and egress on the cgroup-v2 root during the transfer. An empty
//! program's ns per run — the call and the statistics' own clock reads — is the part of every
//! program's figure that no program body can save: the floor of the kernel figures.
//!
//! BPF programs that other processes hold attached through link fds (another collector, say)
//! are listed at the start, counted before each "without" phase, and listed at the end: they run in both phases alike and so do not bias the ratios, but they make the
//! "without" baseline slower than a bare machine.
//!
//! `cargo xtask bench` runs it as root with `COLLECTOR_DAEMON_BIN`; a positional argument
//! runs only the benches whose name contains it (`cargo xtask bench -- program_cost`).
//! Without `--bench` (as `cargo test --benches` runs it) it is a quick smoke run with small
//! counts, and the targets are not judged.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io::{self, Read as _, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::process::Command;
use std::time::{Duration, Instant};
use std::{fs, thread};

use collector_tests::support::cgroup::v2_mount;
use collector_tests::support::daemon::Daemon;
use collector_tests::support::{is_root, require};
use serde_json::Value;
// Dependencies of the support lib and the integration tests that this bench does not use.
use {
    collector_common as _, collector_daemon as _, k8s_cri as _, tempfile as _, tokio as _,
    tonic as _,
};

/// Target: throughput with the programs at least this share of throughput without.
const TCP_TARGET: f64 = 0.98;
/// Target: at most this many ns added per fork+exit.
const FORK_TARGET_NS: f64 = 100.0;
/// Size of each write of the TCP client (and of the server's reads).
const WRITE_SIZE: usize = 64 * 1024;
const MIB: u64 = 1024 * 1024;

/// How much to do; [`Config::full`] for `cargo bench`, [`Config::quick`] otherwise.
#[derive(Debug, Clone)]
struct Config {
    rounds: usize,
    /// Bytes sent per TCP measurement.
    tcp_bytes: u64,
    /// fork+exit iterations per measurement.
    forks: u32,
    judge: bool,
}

impl Config {
    fn full() -> Self {
        Self {
            rounds: 16,
            tcp_bytes: 512 * MIB,
            forks: 2_000,
            judge: true,
        }
    }

    fn quick() -> Self {
        Self {
            rounds: 1,
            tcp_bytes: 16 * MIB,
            forks: 100,
            judge: false,
        }
    }
}

fn main() {
    if !collector_tests::support::bench_selected("program_cost") {
        return;
    }
    let config = if collector_tests::support::is_full_bench() {
        Config::full()
    } else {
        Config::quick()
    };
    if !require("root, to load eBPF", is_root())
        || !require("a cgroup v2 hierarchy", v2_mount().is_some())
    {
        return;
    }
    let others_before = foreign_bpf();
    print_setup(&config, &others_before);

    let started = Instant::now();
    let rounds = run_rounds(&config);
    let stats = kernel_stats(&config);
    let took = started.elapsed();

    let others_after = foreign_bpf();
    print_table(&rounds, &config, took);
    print_kernel_stats(&stats, &config);
    print_targets(&rounds, &stats, &config);
    if others_after != others_before {
        println!();
        println!("BPF programs of other processes at the end (changed during the run):");
        print_foreign(&others_after);
    }
}

// ---------------------------------------------------------------------------------------------
// The workloads.

/// Loopback transfers per TCP measurement; the measurement is their median rate.
const TCP_TRANSFERS: u64 = 8;

/// The median MiB/s of [`TCP_TRANSFERS`] transfers of `bytes / TCP_TRANSFERS` each.
fn tcp_measurement(bytes: u64) -> f64 {
    let cpus = tcp_cpus();
    median(
        (0..TCP_TRANSFERS)
            .map(|_| tcp_throughput(bytes / TCP_TRANSFERS, cpus))
            .collect(),
    )
}

/// Sends `bytes` from a client thread to a server thread over loopback TCP in [`WRITE_SIZE`]
/// writes; returns MiB/s from the first write until the server has read the last byte. The
/// connection is made before the clock starts. The client and the server are pinned to the
/// CPUs in `cpus`: left to the scheduler, they share one CPU in some transfers and not in
/// others, which changes the rate by half either way on this 2-CPU VM and would drown the
/// programs' cost.
fn tcp_throughput(bytes: u64, cpus: (usize, usize)) -> f64 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
    let addr = listener.local_addr().expect("listener address");
    let writes = bytes / WRITE_SIZE as u64;
    let (received, elapsed) = thread::scope(|s| {
        let server = s.spawn(move || -> io::Result<(u64, Instant)> {
            pin_to(cpus.1);
            let (mut stream, _) = listener.accept()?;
            let mut buf = vec![0u8; WRITE_SIZE];
            let mut total = 0u64;
            loop {
                match stream.read(&mut buf) {
                    Ok(0) => return Ok((total, Instant::now())),
                    Ok(n) => total += n as u64,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        });
        let client = s.spawn(move || {
            pin_to(cpus.0);
            let mut client = TcpStream::connect(addr).expect("connecting over loopback");
            let chunk = vec![0xa5u8; WRITE_SIZE];
            let started = Instant::now();
            for _ in 0..writes {
                client.write_all(&chunk).expect("writing over loopback");
            }
            client
                .shutdown(Shutdown::Write)
                .expect("closing the write side");
            started
        });
        let started = join(client);
        let (received, ended) = join(server).expect("the server reads");
        (received, ended - started)
    });
    assert_eq!(received, writes * WRITE_SIZE as u64, "bytes received");
    mib(received) / elapsed.as_secs_f64()
}

/// The result of a scoped thread, its panic passed on.
fn join<T>(handle: thread::ScopedJoinHandle<'_, T>) -> T {
    handle
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// The CPUs for the TCP client and server: the first two this process may run on (the same
/// one twice on a single CPU).
fn tcp_cpus() -> (usize, usize) {
    // SAFETY: cpu_set_t is plain old data (all zeroes is the empty set); the kernel fills at
    // most its size; CPU_ISSET reads a bit below CPU_SETSIZE.
    let allowed: Vec<usize> = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        let rc = libc::sched_getaffinity(0, std::mem::size_of_val(&set), &raw mut set);
        assert_eq!(rc, 0, "sched_getaffinity: {}", io::Error::last_os_error());
        (0..usize::try_from(libc::CPU_SETSIZE).unwrap_or(0))
            .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
            .take(2)
            .collect()
    };
    match allowed[..] {
        [one] => (one, one),
        [a, b, ..] => (a, b),
        [] => panic!("no CPU allowed"),
    }
}

/// Pins the calling thread to `cpu`.
fn pin_to(cpu: usize) {
    // SAFETY: cpu_set_t is plain old data; CPU_SET sets a bit below CPU_SETSIZE (the CPU came
    // from sched_getaffinity); the kernel reads a set of the size given.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of_val(&set), &raw const set)
    };
    assert_eq!(
        rc,
        0,
        "pinning to CPU {cpu}: {}",
        io::Error::last_os_error()
    );
}

/// `forks` times: fork a child that exits at once, and reap it. Returns the ns per iteration.
fn fork_exit(forks: u32) -> f64 {
    let started = Instant::now();
    for _ in 0..forks {
        // SAFETY: the child only calls _exit, which is async-signal-safe, so forking a
        // multi-threaded process is fine.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: in the child: leave at once, running no destructors or atexit hooks.
            unsafe { libc::_exit(0) };
        }
        assert!(pid > 0, "fork: {}", io::Error::last_os_error());
        let mut status = 0;
        // SAFETY: waits for our own child, status is a valid out pointer.
        let reaped = unsafe { libc::waitpid(pid, &raw mut status, 0) };
        assert_eq!(reaped, pid, "waitpid: {}", io::Error::last_os_error());
    }
    started.elapsed().as_secs_f64() * 1e9 / f64::from(forks)
}

#[expect(clippy::cast_precision_loss, reason = "byte counts are far below 2^53")]
fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB as f64
}

// ---------------------------------------------------------------------------------------------
// The daemon and its programs.

/// One program of the daemon, as its fdinfo shows it.
#[derive(Debug, Clone, Default)]
struct Prog {
    kind: u32,
    run_time_ns: u64,
    run_cnt: u64,
}

/// The daemon's programs by id, and what each is attached to (from its link fds).
#[derive(Debug, Clone, Default)]
struct Programs {
    progs: BTreeMap<u32, Prog>,
    attached: BTreeMap<u32, Vec<String>>,
}

/// The `key:\tvalue` lines of an fdinfo file.
fn fdinfo(pid: u32, fd: &str) -> BTreeMap<String, String> {
    fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.trim().to_owned(), v.trim().to_owned()))
        })
        .collect()
}

/// The BPF programs and links `pid` holds open, with their run statistics.
fn programs_of(pid: u32) -> Programs {
    let mut out = Programs::default();
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return out;
    };
    for fd in fds.flatten() {
        let Ok(target) = fs::read_link(fd.path()) else {
            continue;
        };
        let name = fd.file_name();
        let name = name.to_string_lossy();
        let info = fdinfo(pid, &name);
        let num = |k: &str| info.get(k).and_then(|v| v.parse::<u64>().ok());
        let Some(id) = num("prog_id").and_then(|v| u32::try_from(v).ok()) else {
            continue;
        };
        match target.to_string_lossy().as_ref() {
            "anon_inode:bpf-prog" => {
                out.progs.insert(
                    id,
                    Prog {
                        kind: num("prog_type")
                            .and_then(|v| u32::try_from(v).ok())
                            .unwrap_or(u32::MAX),
                        run_time_ns: num("run_time_ns").unwrap_or(0),
                        run_cnt: num("run_cnt").unwrap_or(0),
                    },
                );
            }
            "anon_inode:bpf_link" => {
                out.attached.entry(id).or_default().push(link_target(&info));
            }
            _ => {}
        }
    }
    out
}

/// What a link attaches to: the tracepoint name, or the cgroup hook.
fn link_target(info: &BTreeMap<String, String>) -> String {
    if let Some(tp) = info.get("tp_name") {
        return tp.clone();
    }
    let kind = info.get("link_type").map_or("link", String::as_str);
    match (kind, info.get("attach_type").map(String::as_str)) {
        // enum bpf_attach_type: BPF_CGROUP_INET_INGRESS = 0, BPF_CGROUP_INET_EGRESS = 1.
        ("cgroup", Some("0")) => "cgroup ingress".to_owned(),
        ("cgroup", Some("1")) => "cgroup egress".to_owned(),
        (kind, Some(t)) => format!("{kind} {t}"),
        (kind, None) => kind.to_owned(),
    }
}

/// A readable name for `enum bpf_prog_type` values the daemon uses.
fn prog_type_name(t: u32) -> String {
    match t {
        5 => "tracepoint".to_owned(),
        8 => "cgroup_skb".to_owned(),
        17 => "raw_tracepoint".to_owned(),
        26 => "tracing".to_owned(),
        other => format!("type {other}"),
    }
}

/// Program names by id from `bpftool prog show --json` (bpftool is optional: without it the
/// table names programs by what they are attached to).
fn prog_names() -> BTreeMap<u32, String> {
    let Ok(out) = Command::new("bpftool")
        .args(["prog", "show", "--json"])
        .output()
    else {
        return BTreeMap::new();
    };
    let list: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            let id = u32::try_from(p["id"].as_u64()?).ok()?;
            Some((id, p["name"].as_str()?.to_owned()))
        })
        .collect()
}

/// The daemon as normally started, ready and settled.
fn start_daemon() -> (Daemon, Programs) {
    let daemon = Daemon::start(&["--metrics-addr", "none"]);
    let health = daemon.healthz();
    assert_eq!(
        health["ebpf"], true,
        "the daemon did not load its programs: /healthz {health}"
    );
    let programs = programs_of(daemon.pid());
    assert!(
        !programs.attached.is_empty(),
        "the daemon (pid {}) holds no attached BPF program",
        daemon.pid()
    );
    settle(daemon.pid());
    (daemon, programs)
}

/// Waits (up to 5 s) until the daemon is idle — under 1% of a CPU over 200 ms — so its
/// start-up work (seeding its tables from /proc and cgroupfs) is not measured as program cost.
fn settle(pid: u32) {
    let window = Duration::from_millis(200);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let before = process_cpu(pid).ns;
        thread::sleep(window);
        if process_cpu(pid).ns.saturating_sub(before) < 2_000_000 {
            return;
        }
    }
}

/// CPU use of a process, summed over its live threads from their `schedstat`.
#[derive(Debug, Clone, Copy, Default)]
struct Cpu {
    /// Nanoseconds on CPU (first field).
    ns: u64,
    /// Time slices run (third field): each wake-up of a sleeping thread starts one.
    slices: u64,
}

fn process_cpu(pid: u32) -> Cpu {
    let mut total = Cpu::default();
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return total;
    };
    for thread in dir.flatten() {
        let Ok(text) = fs::read_to_string(thread.path().join("schedstat")) else {
            continue;
        };
        let fields: Vec<u64> = text
            .split_whitespace()
            .filter_map(|f| f.parse().ok())
            .collect();
        if let [ns, _, slices] = fields[..] {
            total.ns += ns;
            total.slices += slices;
        }
    }
    total
}

/// Stops the daemon and waits until none of its programs exists any more, so the next
/// "without" phase really runs without them.
fn stop_daemon(daemon: Daemon, programs: &Programs) {
    let pid = daemon.pid();
    let _ = daemon.stop();
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the daemon (pid {pid}) is still there after stopping"
    );
    // Programs are freed after their last reference is dropped, a moment after the exit.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let alive: Vec<u32> = programs
            .progs
            .keys()
            .copied()
            .filter(|&id| prog_exists(id))
            .collect();
        if alive.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "programs {alive:?} of the stopped daemon still exist"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// Whether a BPF program with this id exists (`BPF_PROG_GET_FD_BY_ID`).
fn prog_exists(id: u32) -> bool {
    const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
    let mut attr = [0u8; 128];
    // union bpf_attr, *_GET_FD_BY_ID: { u32 prog_id; u32 next_id; u32 open_flags; }
    attr[..4].copy_from_slice(&id.to_ne_bytes());
    match collector_tests::support::bpf::bpf(BPF_PROG_GET_FD_BY_ID, &mut attr) {
        Ok(fd) => {
            // SAFETY: the kernel returned a new descriptor we own; dropping closes it.
            drop(unsafe { OwnedFd::from_raw_fd(i32::try_from(fd).unwrap_or(-1)) });
            true
        }
        Err(e) => e.raw_os_error() != Some(libc::ENOENT),
    }
}

/// BPF run-time statistics on while alive. Through `BPF_ENABLE_STATS` (kernel 5.8+), whose fd
/// the kernel releases when this process exits in any way; else through the sysctl, restored
/// on drop (also when unwinding from a panic).
enum StatsOn {
    Fd(#[expect(dead_code, reason = "held only to keep the stats on")] OwnedFd),
    Sysctl(String),
}

const BPF_STATS_SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";

impl StatsOn {
    fn enable() -> Self {
        const BPF_ENABLE_STATS: libc::c_long = 32;
        let mut attr = [0u8; 128];
        // union bpf_attr, BPF_ENABLE_STATS: { u32 type; }; BPF_STATS_RUN_TIME = 0.
        if let Ok(fd) = collector_tests::support::bpf::bpf(BPF_ENABLE_STATS, &mut attr) {
            // SAFETY: the kernel returned a new descriptor we own.
            return Self::Fd(unsafe { OwnedFd::from_raw_fd(i32::try_from(fd).unwrap_or(-1)) });
        }
        let old = fs::read_to_string(BPF_STATS_SYSCTL)
            .unwrap_or_else(|e| panic!("reading {BPF_STATS_SYSCTL}: {e}"));
        // The guard exists before the write, so the old value is restored whatever follows.
        let guard = Self::Sysctl(old.trim().to_owned());
        fs::write(BPF_STATS_SYSCTL, "1")
            .unwrap_or_else(|e| panic!("enabling BPF statistics in {BPF_STATS_SYSCTL}: {e}"));
        guard
    }

    fn how(&self) -> String {
        match self {
            Self::Fd(_) => "BPF_ENABLE_STATS fd".to_owned(),
            Self::Sysctl(old) => format!("sysctl kernel.bpf_stats_enabled=1 (was {old})"),
        }
    }
}

impl Drop for StatsOn {
    fn drop(&mut self) {
        if let Self::Sysctl(old) = self
            && let Err(e) = fs::write(BPF_STATS_SYSCTL, old.as_bytes())
        {
            eprintln!("warning: restoring {BPF_STATS_SYSCTL} to {old}: {e}");
        }
    }
}

/// Processes other than this one holding attached BPF programs: pid, command,
/// and what the programs are attached to.
fn foreign_bpf() -> BTreeMap<u32, (String, Vec<String>)> {
    let me = std::process::id();
    let Ok(procs) = fs::read_dir("/proc") else {
        return BTreeMap::new();
    };
    procs
        .flatten()
        .filter_map(|p| p.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter_map(|pid| {
            let programs = programs_of(pid);
            if programs.attached.is_empty() {
                return None;
            }
            let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let hooks = programs.attached.into_values().flatten().collect();
            Some((pid, (comm.trim().to_owned(), hooks)))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Rounds.

/// One phase's results.
#[derive(Debug, Clone, Copy, Default)]
struct Phase {
    mib_per_s: f64,
    ns_per_fork: f64,
    /// The daemon's own CPU (user and kernel) per fork+exit during the fork loop: the cost of
    /// consuming the programs' events, on whichever CPU it ran.
    daemon_ns_per_fork: f64,
    /// The daemon's time slices per fork+exit during the fork loop: how often it was woken.
    daemon_wakeups_per_fork: f64,
}

/// One round: without and with.
#[derive(Debug, Clone, Copy)]
struct Round {
    without: Phase,
    with: Phase,
    /// Attached BPF programs of other processes seen just before the "without" phase.
    foreign: usize,
}

fn measure(forks: u32, tcp_bytes: u64, daemon: Option<u32>) -> Phase {
    let mib_per_s = tcp_measurement(tcp_bytes);
    let before = daemon.map(process_cpu);
    let ns_per_fork = fork_exit(forks);
    let daemon_cpu = daemon.zip(before).map_or(Cpu::default(), |(pid, before)| {
        let after = process_cpu(pid);
        Cpu {
            ns: after.ns.saturating_sub(before.ns),
            slices: after.slices.saturating_sub(before.slices),
        }
    });
    #[expect(clippy::cast_precision_loss, reason = "counts are far below 2^53")]
    let per_fork = |v: u64| v as f64 / f64::from(forks);
    Phase {
        mib_per_s,
        ns_per_fork,
        daemon_ns_per_fork: per_fork(daemon_cpu.ns),
        daemon_wakeups_per_fork: per_fork(daemon_cpu.slices),
    }
}

/// A warm-up of both workloads, then `config.rounds` rounds of without and with, the first
/// flipping every round; the daemon runs only during "with".
fn run_rounds(config: &Config) -> Vec<Round> {
    let _ = measure(config.forks / 10 + 1, config.tcp_bytes / 8, None);
    (0..config.rounds)
        .map(|round| {
            let with_first = round % 2 == 1;
            let mut result = Round {
                without: Phase::default(),
                with: Phase::default(),
                foreign: 0,
            };
            for with in [with_first, !with_first] {
                if with {
                    let (daemon, programs) = start_daemon();
                    result.with = measure(config.forks, config.tcp_bytes, Some(daemon.pid()));
                    stop_daemon(daemon, &programs);
                } else {
                    result.foreign = foreign_bpf().values().map(|(_, hooks)| hooks.len()).sum();
                    result.without = measure(config.forks, config.tcp_bytes, None);
                }
            }
            result
        })
        .collect()
}

/// Per-program run statistics over one workload.
struct ProgDelta {
    id: u32,
    runs: u64,
    ns: u64,
}

/// The kernel's figures: the daemon's programs' run counts and run time over a TCP and a
/// fork+exit workload, statistics on.
struct KernelStats {
    how: String,
    programs: Programs,
    names: BTreeMap<u32, String>,
    tcp: Vec<ProgDelta>,
    tcp_mib: f64,
    forks: Vec<ProgDelta>,
    fork_count: u32,
    /// The empty program on each lifecycle hook: (hook, (runs, ns)) over the fork loop.
    empty: [(&'static str, (u64, u64)); 2],
    /// The same on the packet hooks over the TCP transfer (attached before its start, so
    /// their counts include the set-up's few packets, as the daemon's do).
    empty_packet: [(&'static str, (u64, u64)); 2],
    /// The sysctl value before and after (must match).
    sysctl_before: String,
    sysctl_after: String,
}

fn deltas(before: &Programs, after: &Programs) -> Vec<ProgDelta> {
    after
        .progs
        .iter()
        .map(|(&id, a)| {
            let b = before.progs.get(&id).cloned().unwrap_or_default();
            ProgDelta {
                id,
                runs: a.run_cnt.saturating_sub(b.run_cnt),
                ns: a.run_time_ns.saturating_sub(b.run_time_ns),
            }
        })
        .collect()
}

/// The hooks a fork+exit runs the lifecycle programs on.
const EMPTY_PROGRAM_HOOKS: [Hook; 2] = [
    Hook::RawTracepoint("task_newtask"),
    Hook::RawTracepoint("sched_process_exit"),
];
/// The hooks a packet runs the counting programs on (on the cgroup-v2 root, like them).
const EMPTY_PACKET_HOOKS: [Hook; 2] = [Hook::CgroupSkb("ingress"), Hook::CgroupSkb("egress")];

/// Where an empty program goes.
#[derive(Debug, Clone, Copy)]
enum Hook {
    /// A raw tracepoint, by name.
    RawTracepoint(&'static str),
    /// `cgroup_skb` on the cgroup-v2 root, "ingress" or "egress".
    CgroupSkb(&'static str),
}

impl Hook {
    fn name(self) -> &'static str {
        match self {
            Hook::RawTracepoint(name) | Hook::CgroupSkb(name) => name,
        }
    }
}

/// An empty program (see the module docs) attached through a link; detached on drop (also
/// if the bench dies), so nothing of it outlives the bench.
struct EmptyProgram {
    hook: Hook,
    prog: OwnedFd,
    _link: OwnedFd,
}

impl EmptyProgram {
    fn attach(hook: Hook) -> io::Result<Self> {
        use collector_tests::support::bpf::bpf;
        const BPF_PROG_LOAD: libc::c_long = 5;
        const BPF_RAW_TRACEPOINT_OPEN: libc::c_long = 17;
        const BPF_LINK_CREATE: libc::c_long = 28;
        const BPF_PROG_TYPE_CGROUP_SKB: u32 = 8;
        const BPF_PROG_TYPE_RAW_TRACEPOINT: u32 = 17;
        const BPF_CGROUP_INET_INGRESS: u32 = 0;
        const BPF_CGROUP_INET_EGRESS: u32 = 1;
        let owned = |fd: libc::c_long| -> io::Result<OwnedFd> {
            let fd = i32::try_from(fd).map_err(io::Error::other)?;
            // SAFETY: the kernel returned a new descriptor we own.
            Ok(unsafe { OwnedFd::from_raw_fd(fd) })
        };
        // `r0 = K; exit`: a tracepoint program's return value is ignored; a cgroup_skb
        // program must return 1, or the packet is dropped.
        let r0: u8 = match hook {
            Hook::RawTracepoint(_) => 0,
            Hook::CgroupSkb(_) => 1,
        };
        let insns: [u8; 16] = [0xb7, 0, 0, 0, r0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0];
        let (prog_type, attach_type) = match hook {
            Hook::RawTracepoint(_) => (BPF_PROG_TYPE_RAW_TRACEPOINT, 0),
            Hook::CgroupSkb("ingress") => (BPF_PROG_TYPE_CGROUP_SKB, BPF_CGROUP_INET_INGRESS),
            Hook::CgroupSkb(_) => (BPF_PROG_TYPE_CGROUP_SKB, BPF_CGROUP_INET_EGRESS),
        };
        let license = c"GPL";
        let mut attr = [0u8; 128];
        // union bpf_attr, BPF_PROG_LOAD: { u32 prog_type; u32 insn_cnt; u64 insns;
        // u64 license; u32 log_level; u32 log_size; u64 log_buf; u32 kern_version;
        // u32 prog_flags; char prog_name[16]; u32 prog_ifindex; u32 expected_attach_type; }
        attr[0..4].copy_from_slice(&prog_type.to_ne_bytes());
        attr[4..8].copy_from_slice(&2u32.to_ne_bytes());
        attr[8..16].copy_from_slice(&(insns.as_ptr() as u64).to_ne_bytes());
        attr[16..24].copy_from_slice(&(license.as_ptr() as u64).to_ne_bytes());
        attr[48..53].copy_from_slice(b"empty");
        attr[68..72].copy_from_slice(&attach_type.to_ne_bytes());
        let prog = owned(bpf(BPF_PROG_LOAD, &mut attr)?)?;
        let link = match hook {
            Hook::RawTracepoint(name) => {
                let name = CString::new(name).map_err(io::Error::other)?;
                let mut attr = [0u8; 128];
                // BPF_RAW_TRACEPOINT_OPEN: { u64 name; u32 prog_fd; }
                attr[0..8].copy_from_slice(&(name.as_ptr() as u64).to_ne_bytes());
                attr[8..12].copy_from_slice(&prog.as_raw_fd().to_ne_bytes());
                owned(bpf(BPF_RAW_TRACEPOINT_OPEN, &mut attr)?)?
            }
            Hook::CgroupSkb(_) => {
                let root = v2_mount().ok_or_else(|| io::Error::other("no cgroup v2 mount"))?;
                let root = fs::File::open(root)?;
                let mut attr = [0u8; 128];
                // BPF_LINK_CREATE: { u32 prog_fd; u32 target_fd; u32 attach_type; u32 flags; }
                attr[0..4].copy_from_slice(&prog.as_raw_fd().to_ne_bytes());
                attr[4..8].copy_from_slice(&root.as_raw_fd().to_ne_bytes());
                attr[8..12].copy_from_slice(&attach_type.to_ne_bytes());
                owned(bpf(BPF_LINK_CREATE, &mut attr)?)?
            }
        };
        Ok(Self {
            hook,
            prog,
            _link: link,
        })
    }

    fn attach_all(hooks: [Hook; 2]) -> [Self; 2] {
        hooks.map(|hook| {
            Self::attach(hook)
                .unwrap_or_else(|e| panic!("attaching an empty program: {hook:?}: {e}"))
        })
    }

    /// The hook's name, runs and run time so far (`run_cnt`, `run_time_ns` of its fdinfo).
    fn runs_and_ns(&self) -> (&'static str, (u64, u64)) {
        let info = fdinfo(std::process::id(), &self.prog.as_raw_fd().to_string());
        let get = |key: &str| info.get(key).and_then(|v| v.parse().ok()).unwrap_or(0);
        (self.hook.name(), (get("run_cnt"), get("run_time_ns")))
    }
}

fn kernel_stats(config: &Config) -> KernelStats {
    let sysctl = || {
        fs::read_to_string(BPF_STATS_SYSCTL)
            .unwrap_or_default()
            .trim()
            .to_owned()
    };
    let sysctl_before = sysctl();
    let (daemon, programs) = start_daemon();
    let pid = daemon.pid();
    let names = prog_names();
    let (how, tcp, forks, empty_packet, empty) = {
        let stats = StatsOn::enable();
        let empties = EmptyProgram::attach_all(EMPTY_PACKET_HOOKS);
        let at_start = programs_of(pid);
        let _ = tcp_measurement(config.tcp_bytes);
        let after_tcp = programs_of(pid);
        let empty_packet = empties.map(|e| e.runs_and_ns());
        let empties = EmptyProgram::attach_all(EMPTY_PROGRAM_HOOKS);
        let _ = fork_exit(config.forks);
        let after_forks = programs_of(pid);
        (
            stats.how(),
            deltas(&at_start, &after_tcp),
            deltas(&after_tcp, &after_forks),
            empty_packet,
            empties.map(|e| e.runs_and_ns()),
        )
    };
    stop_daemon(daemon, &programs);
    KernelStats {
        how,
        programs,
        names,
        tcp,
        tcp_mib: mib(config.tcp_bytes / TCP_TRANSFERS / WRITE_SIZE as u64
            * WRITE_SIZE as u64
            * TCP_TRANSFERS),
        forks,
        fork_count: config.forks,
        empty,
        empty_packet,
        sysctl_before,
        sysctl_after: sysctl(),
    }
}

// ---------------------------------------------------------------------------------------------
// Report.

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        f64::midpoint(v[mid - 1], v[mid])
    }
}

/// The value at rank ceil(0.9 n) of `v` (nearest rank).
fn p90(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let rank = (v.len() * 9).div_ceil(10).max(1);
    v.get(rank - 1).copied().unwrap_or(f64::NAN)
}

fn print_foreign(others: &BTreeMap<u32, (String, Vec<String>)>) {
    if others.is_empty() {
        println!("    none");
    }
    for (pid, (comm, hooks)) in others {
        let mut shown: Vec<&str> = hooks.iter().map(String::as_str).take(8).collect();
        if hooks.len() > shown.len() {
            shown.push("...");
        }
        println!(
            "    pid {pid} ({comm}): {} attached [{}]",
            hooks.len(),
            shown.join(", ")
        );
    }
}

fn print_setup(config: &Config, others: &BTreeMap<u32, (String, Vec<String>)>) {
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpus = thread::available_parallelism().map_or(0, usize::from);
    println!();
    println!("collector program cost bench (with vs without the eBPF daemon's programs)");
    println!("  machine: {cpus} CPUs, kernel {}", kernel.trim());
    println!(
        "  per measurement: {} MiB over loopback TCP in {} KiB writes; {} fork+exit+waitpid",
        config.tcp_bytes / MIB,
        WRITE_SIZE / 1024,
        config.forks
    );
    println!(
        "  method: warm-up, then {} rounds of without/with (order flipping each round; the \
         daemon started for each \"with\" and stopped after, its programs checked gone); ratios \
         per round, then the median",
        config.rounds
    );
    println!("  BPF programs of other processes (present in both phases):");
    print_foreign(others);
    if !others.is_empty() {
        println!(
            "    -> the \"without\" baseline already pays for these; the ratios measure what \
             this daemon adds on top"
        );
    }
}

fn print_table(rounds: &[Round], config: &Config, took: Duration) {
    let col = |f: fn(&Round) -> f64| rounds.iter().map(f).collect::<Vec<f64>>();
    let tcp_ratio = col(|r| r.with.mib_per_s / r.without.mib_per_s);
    let fork_added = col(|r| r.with.ns_per_fork - r.without.ns_per_fork);
    println!();
    println!(
        "{:<34} {:>6} {:>14} {:>14} {:>14} {:>14}",
        "measure", "rounds", "without p50", "with p50", "without p90", "with p90"
    );
    println!("{}", "-".repeat(101));
    println!(
        "{:<34} {:>6} {:>14.0} {:>14.0} {:>14.0} {:>14.0}",
        "loopback TCP, MiB/s",
        rounds.len(),
        median(col(|r| r.without.mib_per_s)),
        median(col(|r| r.with.mib_per_s)),
        p90(col(|r| r.without.mib_per_s)),
        p90(col(|r| r.with.mib_per_s)),
    );
    println!(
        "{:<34} {:>6} {:>14.0} {:>14.0} {:>14.0} {:>14.0}",
        "fork+exit+wait, ns each",
        rounds.len(),
        median(col(|r| r.without.ns_per_fork)),
        median(col(|r| r.with.ns_per_fork)),
        p90(col(|r| r.without.ns_per_fork)),
        p90(col(|r| r.with.ns_per_fork)),
    );
    println!(
        "{:<34} {:>6} {:>14.0} {:>14.0} {:>14.0} {:>14.0}",
        "fork+exit+wait, per second",
        rounds.len(),
        median(col(|r| 1e9 / r.without.ns_per_fork)),
        median(col(|r| 1e9 / r.with.ns_per_fork)),
        p90(col(|r| 1e9 / r.without.ns_per_fork)),
        p90(col(|r| 1e9 / r.with.ns_per_fork)),
    );
    println!(
        "{:<34} {:>6} {:>14} {:>14.0} {:>14} {:>14.0}",
        "daemon CPU per fork+exit, ns",
        rounds.len(),
        "-",
        median(col(|r| r.with.daemon_ns_per_fork)),
        "-",
        p90(col(|r| r.with.daemon_ns_per_fork)),
    );
    println!(
        "{:<34} {:>6} {:>14} {:>14.2} {:>14} {:>14.2}",
        "daemon wake-ups per fork+exit",
        rounds.len(),
        "-",
        median(col(|r| r.with.daemon_wakeups_per_fork)),
        "-",
        p90(col(|r| r.with.daemon_wakeups_per_fork)),
    );
    println!("{}", "-".repeat(101));
    println!("per round (with / without):");
    for (i, r) in rounds.iter().enumerate() {
        println!(
            "  round {:>2}: TCP {:>6.0} / {:>6.0} MiB/s = {:.3}    fork {:>8.0} / {:>8.0} ns = \
             {:+.0} ns{}",
            i + 1,
            r.with.mib_per_s,
            r.without.mib_per_s,
            tcp_ratio[i],
            r.with.ns_per_fork,
            r.without.ns_per_fork,
            fork_added[i],
            if r.foreign > 0 {
                format!("    ({} foreign BPF programs attached)", r.foreign)
            } else {
                String::new()
            },
        );
    }
    println!(
        "ratios (per round, then median): TCP throughput with/without {:.3} ({:+.2}% change); \
         fork+exit {:+.0} ns added (with/without {:.3})",
        median(tcp_ratio.clone()),
        (median(tcp_ratio) - 1.0) * 100.0,
        median(fork_added),
        median(col(|r| r.with.ns_per_fork / r.without.ns_per_fork)),
    );
    println!(
        "measured in {:.1} s (fork loop: {} iterations per measurement)",
        took.as_secs_f64(),
        config.forks
    );
}

fn print_kernel_stats(stats: &KernelStats, config: &Config) {
    println!();
    println!(
        "kernel-side cost (daemon running, BPF statistics on through {}; \
         kernel.bpf_stats_enabled before {} / after {})",
        stats.how, stats.sysctl_before, stats.sysctl_after
    );
    println!(
        "{:<24} {:<12} {:<26} {:>10} {:>9} {:>10} {:>9} {:>9}",
        "program", "type", "attached to", "TCP runs", "ns/run", "fork runs", "per fork", "ns/run"
    );
    println!("{}", "-".repeat(115));
    let per_run = |d: &ProgDelta| {
        if d.runs == 0 {
            "-".to_owned()
        } else {
            #[expect(clippy::cast_precision_loss, reason = "ns counts are far below 2^53")]
            let ns = d.ns as f64 / d.runs as f64;
            format!("{ns:.0}")
        }
    };
    for (tcp, fork) in stats.tcp.iter().zip(&stats.forks) {
        let id = tcp.id;
        let attached = stats
            .programs
            .attached
            .get(&id)
            .map_or_else(|| "(not attached)".to_owned(), |a| a.join(", "));
        #[expect(clippy::cast_precision_loss, reason = "run counts are far below 2^53")]
        let per_fork = fork.runs as f64 / f64::from(stats.fork_count);
        println!(
            "{:<24} {:<12} {:<26} {:>10} {:>9} {:>10} {:>9.2} {:>9}",
            stats
                .names
                .get(&id)
                .cloned()
                .unwrap_or_else(|| format!("prog {id}")),
            prog_type_name(stats.programs.progs.get(&id).map_or(u32::MAX, |p| p.kind)),
            attached,
            tcp.runs,
            per_run(tcp),
            fork.runs,
            per_fork,
            per_run(fork),
        );
    }
    println!("{}", "-".repeat(115));
    let totals = kernel_totals(stats);
    println!(
        "  fork+exit: {:.0} ns of program run time per fork+exit, programs that ran at least \
         once per 2 forks ({} forks; other programs meanwhile, left out: {:.0} ns per fork)",
        totals.per_fork, config.forks, totals.per_fork_left_out
    );
    println!(
        "  calibration: an empty program (r0 = 0; exit) on the same hooks, same loop: {}; {:.0} \
         ns per fork+exit is what any program pair costs by this measure",
        calibration_runs(&stats.empty),
        empty_total(&stats.empty) / f64::from(stats.fork_count),
    );
    println!(
        "  loopback TCP: {:.0} ns of program run time per MiB sent, programs that ran at least \
         once per 2 MiB ({:.0} MiB; other programs meanwhile, left out: {:.0} ns in all)",
        totals.tcp / stats.tcp_mib,
        stats.tcp_mib,
        totals.tcp_left_out
    );
    println!(
        "  calibration: an empty cgroup_skb program (r0 = 1; exit) on the cgroup-v2 root, same \
         transfer: {}; {:.0} ns per MiB sent is what any program pair there costs by this \
         measure",
        calibration_runs(&stats.empty_packet),
        empty_total(&stats.empty_packet) / stats.tcp_mib,
    );
    assert_eq!(
        stats.sysctl_before, stats.sysctl_after,
        "kernel.bpf_stats_enabled was not restored"
    );
}

/// Program run time that a workload causes, in ns. A program counts towards a workload when
/// it ran at least once per two units of it (forks, MiB): the lifecycle programs run on every
/// fork+exit and the packet programs on every few packets, while programs that ran less often
/// meanwhile were answering the rest of the machine (a build's IO, other traffic) and are
/// left out (their total is reported beside). `units` is the number of forks or MiB.
fn caused(deltas: &[ProgDelta], units: f64) -> (f64, f64) {
    #[expect(clippy::cast_precision_loss, reason = "counts are far below 2^53")]
    let (caused, other) = deltas.iter().fold((0.0, 0.0), |(caused, other), d| {
        if d.runs as f64 * 2.0 >= units {
            (caused + d.ns as f64, other)
        } else {
            (caused, other + d.ns as f64)
        }
    });
    (caused, other)
}

/// `ns / runs`, formatted; "-" when it never ran.
fn per_run_of(runs: u64, ns: u64) -> String {
    if runs == 0 {
        return "-".to_owned();
    }
    #[expect(clippy::cast_precision_loss, reason = "counts are far below 2^53")]
    let per_run = ns as f64 / runs as f64;
    format!("{per_run:.0}")
}

/// "hook N ns/run (R runs), ..." of empty programs.
fn calibration_runs(empty: &[(&str, (u64, u64))]) -> String {
    empty
        .iter()
        .map(|(hook, (runs, ns))| format!("{hook} {} ns/run ({runs} runs)", per_run_of(*runs, *ns)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The empty programs' total run time in ns: the floor of the kernel figure.
fn empty_total(empty: &[(&str, (u64, u64))]) -> f64 {
    #[expect(clippy::cast_precision_loss, reason = "ns counts are far below 2^53")]
    empty.iter().map(|(_, (_, ns))| *ns as f64).sum()
}

/// [`caused`] for both workloads.
fn kernel_totals(stats: &KernelStats) -> KernelTotals {
    let forks = f64::from(stats.fork_count);
    let (fork, fork_other) = caused(&stats.forks, forks);
    let (tcp, tcp_other) = caused(&stats.tcp, stats.tcp_mib);
    KernelTotals {
        per_fork: fork / forks,
        per_fork_left_out: fork_other / forks,
        tcp,
        tcp_left_out: tcp_other,
    }
}

/// Program run time in ns, see [`kernel_totals`].
struct KernelTotals {
    /// Per fork+exit, programs the forks caused.
    per_fork: f64,
    /// Per fork+exit, programs that ran for the rest of the machine meanwhile.
    per_fork_left_out: f64,
    /// The whole TCP phase, programs the transfer caused.
    tcp: f64,
    /// The whole TCP phase, programs that ran for the rest of the machine meanwhile.
    tcp_left_out: f64,
}

fn print_targets(rounds: &[Round], stats: &KernelStats, config: &Config) {
    println!();
    if !config.judge {
        println!("targets: not judged in quick mode (counts too small); run with --bench");
        return;
    }
    let verdict = |pass: bool| if pass { "PASS" } else { "MISS" };
    let tcp_ratio = median(
        rounds
            .iter()
            .map(|r| r.with.mib_per_s / r.without.mib_per_s)
            .collect(),
    );
    let fork_added = median(
        rounds
            .iter()
            .map(|r| r.with.ns_per_fork - r.without.ns_per_fork)
            .collect(),
    );
    let totals = kernel_totals(stats);
    let kernel_fork_ns = totals.per_fork;
    // The packet programs' time as a share of the transfer's wall time at the median "with"
    // rate: the loss if all of it lay on the critical path (it runs in the sender's and the
    // receiver's context, on two CPUs, so the real loss can only be lower).
    let with_mib_per_s = median(rounds.iter().map(|r| r.with.mib_per_s).collect());
    let transfer_ns = stats.tcp_mib / with_mib_per_s * 1e9;
    let tcp_share = totals.tcp / transfer_ns;
    println!("targets (informational, not asserted)");
    println!(
        "  loopback TCP throughput loss <= 2%: end to end {:+.2}% -> {}   (kernel: programs ran \
         {:.2}% of the transfer time -> {}; an empty program pair measures {:.2}%)",
        (tcp_ratio - 1.0) * 100.0,
        verdict(tcp_ratio >= TCP_TARGET),
        tcp_share * 100.0,
        verdict(tcp_share <= 1.0 - TCP_TARGET),
        empty_total(&stats.empty_packet) / transfer_ns * 100.0,
    );
    println!(
        "  fork+exit added <= 100 ns: kernel program time {kernel_fork_ns:.0} ns -> {}   (end to \
         end {fork_added:+.0} ns -> {}, on a fork+exit of ~{:.0} µs; an empty program pair \
         measures {:.0} ns)",
        verdict(kernel_fork_ns <= FORK_TARGET_NS),
        verdict(fork_added <= FORK_TARGET_NS),
        median(rounds.iter().map(|r| r.without.ns_per_fork).collect()) / 1e3,
        empty_total(&stats.empty) / f64::from(stats.fork_count),
    );
}
