//! The daemon and its programs: starting and stopping it, its programs and links as its
//! fdinfo shows them, BPF statistics, and other processes' BPF programs.

use std::{
    collections::BTreeMap,
    fs,
    os::fd::{FromRawFd as _, OwnedFd},
    process::Command,
    thread,
    time::{Duration, Instant},
};

use collector_tests::support::daemon::Daemon;
use serde_json::Value;

/// One program of the daemon, as its fdinfo shows it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Prog {
    pub kind: u32,
    pub run_time_ns: u64,
    pub run_cnt: u64,
}

/// The daemon's programs by id, and what each is attached to (from its link fds).
#[derive(Debug, Clone, Default)]
pub(crate) struct Programs {
    pub progs: BTreeMap<u32, Prog>,
    pub attached: BTreeMap<u32, Vec<String>>,
}

/// The `key:\tvalue` lines of an fdinfo file.
pub(crate) fn fdinfo(pid: u32, fd: &str) -> BTreeMap<String, String> {
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
pub(crate) fn programs_of(pid: u32) -> Programs {
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
pub(crate) fn link_target(info: &BTreeMap<String, String>) -> String {
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
pub(crate) fn prog_type_name(t: u32) -> String {
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
pub(crate) fn prog_names() -> BTreeMap<u32, String> {
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
pub(crate) fn start_daemon() -> (Daemon, Programs) {
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
pub(crate) fn settle(pid: u32) {
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
pub(crate) struct Cpu {
    /// Nanoseconds on CPU (first field).
    pub ns: u64,
    /// Time slices run (third field): each wake-up of a sleeping thread starts one.
    pub slices: u64,
}

pub(crate) fn process_cpu(pid: u32) -> Cpu {
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
pub(crate) fn stop_daemon(daemon: Daemon, programs: &Programs) {
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
pub(crate) fn prog_exists(id: u32) -> bool {
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
pub(crate) enum StatsOn {
    Fd(#[expect(dead_code, reason = "held only to keep the stats on")] OwnedFd),
    Sysctl(String),
}

pub(crate) const BPF_STATS_SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";

impl StatsOn {
    pub(crate) fn enable() -> Self {
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

    pub(crate) fn how(&self) -> String {
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
pub(crate) fn foreign_bpf() -> BTreeMap<u32, (String, Vec<String>)> {
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
