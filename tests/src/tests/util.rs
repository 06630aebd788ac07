//! Small helpers shared by the integration tests.
use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::support::{
    daemon::Daemon,
    is_root,
    process::{ChildGuard, enter_before_exec},
    require,
};

/// A 64-hex container id unique to this test process and `tag`, shaped like Docker's.
pub(super) fn container_id(tag: &str) -> String {
    let seed = format!(
        "{tag}-{}-{}",
        std::process::id(),
        crate::support::next_serial()
    );
    // FNV-1a, expanded to 32 bytes: stable, and no dependency for a test id.
    let mut out = String::with_capacity(64);
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for round in 0u8..4 {
        for b in seed.bytes().chain([round]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        let _ = write!(out, "{h:016x}");
    }
    out
}

/// `GET /v1/pid/{pid}`, asserting 200.
pub(super) fn lookup(daemon: &Daemon, pid: u32) -> Value {
    let response = daemon.get(&format!("/v1/pid/{pid}"));
    assert_eq!(
        response.status, 200,
        "GET /v1/pid/{pid}: {} {}",
        response.status, response.body
    );
    response.json()
}

/// `GET /v1/inode/{inode}`, asserting 200.
pub(super) fn lookup_inode(daemon: &Daemon, inode: u64) -> Value {
    let response = daemon.get(&format!("/v1/inode/{inode}"));
    assert_eq!(
        response.status, 200,
        "GET /v1/inode/{inode}: {} {}",
        response.status, response.body
    );
    response.json()
}

/// The entry of container `id` in `GET /v1/containers`, if listed.
pub(super) fn listed_container(daemon: &Daemon, id: &str) -> Option<Value> {
    let response = daemon.get("/v1/containers");
    assert_eq!(response.status, 200, "{}", response.body);
    response
        .json()
        .as_array()
        .expect("an array")
        .iter()
        .find(|c| c["container_id"] == id)
        .cloned()
}

/// `sleep 60` started inside the cgroups whose `cgroup.procs` files are given (nested
/// directories, or a mix of hierarchies), from before its first instruction.
///
/// Returns once the sleeper is blocked in its sleep: `spawn` returns as soon as `exec`
/// succeeded, while the dynamic loader and locale setup still open and close files, so
/// a test counting its descriptors before then could see one more than it settles on.
pub(super) fn sleep_in(procs_files: &[std::path::PathBuf]) -> ChildGuard {
    let mut cmd = std::process::Command::new("sleep");
    cmd.arg("60");
    enter_before_exec(&mut cmd, procs_files);
    let child = ChildGuard::new(cmd.spawn().expect("spawning sleep"));
    let pid = child.pid();
    wait_for(
        "the sleeper to block in its sleep",
        Duration::from_secs(10),
        || in_sleep_syscall(pid).then_some(()),
    );
    child
}

/// Whether `pid` is blocked in `nanosleep`/`clock_nanosleep`: the first field of
/// `/proc/<pid>/syscall` is the number of the system call a blocked task is in.
fn in_sleep_syscall(pid: u32) -> bool {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/syscall")) else {
        return false;
    };
    let number = text
        .split_whitespace()
        .next()
        .and_then(|n| n.parse::<i64>().ok());
    number.is_some_and(|n| n == libc::SYS_nanosleep || n == libc::SYS_clock_nanosleep)
}

/// The value of the unlabelled metric `name` in the daemon's `/metrics`; panics when absent.
pub(super) fn metric(daemon: &Daemon, name: &str) -> u64 {
    let body = daemon.get("/metrics").body;
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in\n{body}"))
}

/// Polls `f` until it returns `Some`, or panics with `what` after `timeout`.
pub(super) fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// These tests load eBPF and create cgroups: root only (skips outside CI when not root).
pub(super) fn root() -> bool {
    require("root (eBPF programs and cgroups)", is_root())
}

// Cgroup files and full collections, as the kernel cgroup walk tests compare them.

/// The trimmed text of `dir/file`.
pub(super) fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.join(file).display()))
        .trim()
        .to_owned()
}

/// `dir/file` as one number.
pub(super) fn read_u64(dir: &Path, file: &str) -> u64 {
    let text = read(dir, file);
    text.parse()
        .unwrap_or_else(|_| panic!("{}/{file}: {text:?}", dir.display()))
}

/// Writes `value` to `dir/file`.
pub(super) fn write(dir: &Path, file: &str, value: &str) {
    std::fs::write(dir.join(file), value)
        .unwrap_or_else(|e| panic!("writing {value} to {}: {e}", dir.join(file).display()));
}

/// The container's entry in a full collection (`/v1/stats?max_age_ms=0`).
pub(super) fn collected(daemon: &Daemon, id: &str) -> Value {
    let response = daemon.get("/v1/stats?max_age_ms=0");
    assert_eq!(response.status, 200, "{}", response.body);
    let all = response.json();
    all.as_array()
        .and_then(|list| list.iter().find(|c| c["container_id"] == id))
        .cloned()
        .unwrap_or_else(|| panic!("{id} not in the full collection"))
}

/// The number at JSON `pointer` of `value`.
pub(super) fn u64_at(value: &Value, pointer: &str) -> u64 {
    value
        .pointer(pointer)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{pointer} is not a number in {value}"))
}

/// Paths of the files process `pid` holds open.
pub(super) fn held_files(pid: u32) -> Vec<PathBuf> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|entries| {
            entries
                .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .collect()
        })
        .unwrap_or_default()
}
