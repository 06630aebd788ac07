//! Container stats on a v2-only host against the cgroup's own v2 files read around the
//! request: CPU (cpu.stat, cpu.max, cpu.pressure), memory (memory.current, memory.stat,
//! memory.max, memory.pressure), pids (pids.current, pids.max), block IO after direct and
//! buffered writes on a real disk (io.stat), network over a veth pair between namespaces,
//! and the final totals once the cgroup is removed.
use std::{
    fs,
    path::{Path, PathBuf},
    time::Duration,
};

use serde_json::Value;

use super::{
    super::{
        kernel_counters::{TRANSFER, transfer},
        util::{container_id, wait_for},
    },
    delegated, v2_host,
};
use crate::support::{
    daemon::Daemon,
    netns::NetnsPair,
    process::{enter_before_exec, spawn_in_cgroup},
    require,
};

const MIB: u64 = 1 << 20;

/// `GET /v1/containers/{id}/stats?max_age_ms=0`, asserting 200.
fn stats(daemon: &Daemon, id: &str) -> Value {
    let response = daemon.get(&format!("/v1/containers/{id}/stats?max_age_ms=0"));
    assert_eq!(response.status, 200, "stats of {id}: {}", response.body);
    response.json()
}

fn u64_at(value: &Value, pointer: &str) -> u64 {
    value
        .pointer(pointer)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{pointer} is not a number in {value}"))
}

fn read(dir: &Path, file: &str) -> String {
    fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("{}/{file}: {e}", dir.display()))
}

/// The value of `key` in a flat-keyed file (`cpu.stat`, `memory.stat`: `key value` lines).
fn keyed(dir: &Path, file: &str, key: &str) -> u64 {
    read(dir, file)
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {}/{file}", dir.display()))
}

/// The `some` total (µs) of a PSI file (`some avg10=.. avg60=.. avg300=.. total=N`).
fn psi_some_us(dir: &Path, file: &str) -> u64 {
    read(dir, file)
        .lines()
        .find_map(|l| {
            l.strip_prefix("some ")?
                .split_whitespace()
                .find_map(|f| f.strip_prefix("total=")?.parse().ok())
        })
        .unwrap_or_else(|| panic!("no some total in {}/{file}", dir.display()))
}

fn one_number(dir: &Path, file: &str) -> u64 {
    let text = read(dir, file);
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("{}/{file}: {text:?}", dir.display()))
}

/// `wbytes` summed over the devices of `io.stat` (`MAJ:MIN rbytes=.. wbytes=.. ...` lines).
fn io_stat_wbytes(dir: &Path) -> u64 {
    read(dir, "io.stat")
        .lines()
        .flat_map(str::split_whitespace)
        .filter_map(|f| f.strip_prefix("wbytes=")?.parse::<u64>().ok())
        .sum()
}

/// `actual` within ±`percent`% of `expected`.
fn within(actual: u64, expected: u64, percent: u64) -> bool {
    actual.abs_diff(expected) * 100 <= expected * percent
}

#[test]
fn cpu_memory_pids_limits_and_pressure_equal_the_v2_files() {
    if !v2_host() {
        return;
    }
    let daemon = Daemon::shared();
    let id = container_id("v2-stats");
    let cg = delegated(&format!("system.slice/docker-{id}.scope"));
    let dir = cg.v2_dir();
    fs::write(dir.join("memory.max"), (256 * MIB).to_string()).unwrap();
    fs::write(dir.join("cpu.max"), "50000 100000").unwrap();
    fs::write(dir.join("pids.max"), "42").unwrap();
    // 32 MiB in a tmpfs file (charged to the writer's memory cgroup as file pages), then a
    // busy loop the 50% quota throttles.
    let tmp = tempfile::tempdir().unwrap();
    let blob = tmp.path().join("blob");
    let script = format!(
        "head -c {} /dev/zero > {}; while :; do :; done",
        32 * MIB,
        blob.display()
    );
    let _busy = spawn_in_cgroup(&cg, &["sh", "-c", &script]);
    wait_for(
        "the busy loop to use CPU, be throttled and hold its blob",
        Duration::from_mins(1),
        || {
            (keyed(dir, "cpu.stat", "usage_usec") > 300_000
                && keyed(dir, "cpu.stat", "nr_throttled") > 0
                && one_number(dir, "pids.current") == 1
                && keyed(dir, "memory.stat", "file") >= 32 * MIB)
                .then_some(())
        },
    );

    let usage_before = keyed(dir, "cpu.stat", "usage_usec") * 1000;
    let throttled_before = keyed(dir, "cpu.stat", "nr_throttled");
    let cpu_psi_before = psi_some_us(dir, "cpu.pressure") * 1000;
    let memory_psi_before = psi_some_us(dir, "memory.pressure") * 1000;
    let body = stats(daemon, &id);
    let usage_after = keyed(dir, "cpu.stat", "usage_usec") * 1000;
    let throttled_after = keyed(dir, "cpu.stat", "nr_throttled");
    let cpu_psi_after = psi_some_us(dir, "cpu.pressure") * 1000;
    let memory_psi_after = psi_some_us(dir, "memory.pressure") * 1000;
    let current = one_number(dir, "memory.current");
    let file = keyed(dir, "memory.stat", "file");
    eprintln!("{body}");

    let total = u64_at(&body, "/cpu/total");
    assert!(
        (usage_before..=usage_after).contains(&total),
        "cpu.total {total} outside cpu.stat usage {usage_before}..{usage_after} ns: {body}"
    );
    let throttled = u64_at(&body, "/cpu/throttled_periods");
    assert!(
        (throttled_before..=throttled_after).contains(&throttled),
        "throttled_periods {throttled} outside nr_throttled {throttled_before}..{throttled_after}: {body}"
    );
    // cpu.max "50000 100000": half a CPU.
    assert_eq!(body["cpu"]["limit"].as_f64(), Some(50.0), "{body}");
    assert_eq!(body["cpu"]["cfs_quota_us"], 50_000, "{body}");
    assert_eq!(body["cpu"]["cfs_period_us"], 100_000, "{body}");
    let cpu_psi = u64_at(&body, "/cpu/partial_stall_time");
    assert!(
        (cpu_psi_before..=cpu_psi_after).contains(&cpu_psi),
        "cpu PSI {cpu_psi} outside cpu.pressure {cpu_psi_before}..{cpu_psi_after} ns: {body}"
    );

    let usage = u64_at(&body, "/memory/usage_total");
    assert!(
        within(usage, current, 5),
        "memory.usage_total {usage} vs memory.current {current}: {body}"
    );
    assert!(usage >= 32 * MIB, "the 32 MiB blob is charged: {body}");
    assert_eq!(u64_at(&body, "/memory/limit"), 256 * MIB, "{body}");
    let cache = u64_at(&body, "/memory/cache");
    assert!(
        within(cache, file, 5),
        "memory.cache {cache} vs memory.stat file {file}: {body}"
    );
    let memory_psi = u64_at(&body, "/memory/partial_stall_time");
    assert!(
        (memory_psi_before..=memory_psi_after).contains(&memory_psi),
        "memory PSI {memory_psi} outside memory.pressure {memory_psi_before}..{memory_psi_after} ns: {body}"
    );

    assert_eq!(body["pid"]["thread_count"], 1, "{body}");
    assert_eq!(body["pid"]["thread_limit"], 42, "{body}");
}

#[test]
fn unlimited_v2_cgroups_have_null_limits() {
    if !v2_host() {
        return;
    }
    let daemon = Daemon::shared();
    let id = container_id("v2-unlimited");
    let cg = delegated(&format!("system.slice/docker-{id}.scope"));
    // memory.max, cpu.max and pids.max say "max": no limit is null, not 0.
    assert_eq!(read(cg.v2_dir(), "memory.max").trim(), "max");
    assert_eq!(read(cg.v2_dir(), "pids.max").trim(), "max");
    let _sleeper = spawn_in_cgroup(&cg, &["sleep", "60"]);
    let body = stats(daemon, &id);
    assert!(body["memory"]["limit"].is_null(), "{body}");
    assert!(body["pid"]["thread_limit"].is_null(), "{body}");
    assert!(body["cpu"]["cfs_quota_us"].is_null(), "{body}");
    assert_eq!(body["pid"]["thread_count"], 1, "{body}");
}

/// The disk `cargo xtask vm` gives the guest (`COLLECTOR_TEST_DISK_DIR`, an ext4 filesystem
/// on a virtio disk): block IO there reaches a real block device.
fn test_disk() -> Option<PathBuf> {
    let dir = std::env::var_os("COLLECTOR_TEST_DISK_DIR").map(PathBuf::from);
    require(
        "COLLECTOR_TEST_DISK_DIR, a directory on a block device (cargo xtask vm sets it)",
        dir.is_some(),
    )
    .then_some(dir)
    .flatten()
}

/// Runs `dd ARGS` inside the cgroup whose `cgroup.procs` is `procs` and asserts success.
fn dd_in(procs: &Path, args: &[String]) {
    let mut dd = std::process::Command::new("dd");
    dd.args(args);
    enter_before_exec(&mut dd, &[procs.to_path_buf()]);
    let status = dd.status().expect("dd");
    assert!(status.success(), "dd {args:?}: {status}");
}

#[test]
fn direct_and_buffered_writes_on_a_disk_equal_io_stat_and_outlive_the_cgroup() {
    if !v2_host() {
        return;
    }
    let Some(disk) = test_disk() else { return };
    let daemon = Daemon::shared();
    let id = container_id("v2-io");
    let cg = delegated(&format!("system.slice/docker-{id}.scope"));
    let dir = cg.v2_dir().to_path_buf();
    let procs = dir.join("cgroup.procs");
    // The daemon knows the container once a process of it ran.
    let sleeper = spawn_in_cgroup(&cg, &["sleep", "60"]);
    let scratch = tempfile::tempdir_in(&disk).unwrap();
    let file = |name: &str| format!("of={}", scratch.path().join(name).display());

    let before = stats(daemon, &id);
    let start = u64_at(&before, "/io/write_bytes");
    // O_DIRECT: the writer's own bios, 64 MiB.
    dd_in(
        &procs,
        &[
            "if=/dev/zero".into(),
            file("direct"),
            "bs=1M".into(),
            "count=64".into(),
            "oflag=direct".into(),
            "status=none".into(),
        ],
    );
    let direct = stats(daemon, &id);
    let io_stat = io_stat_wbytes(&dir);
    let written = u64_at(&direct, "/io/write_bytes") - start;
    eprintln!("direct: {written} B counted, io.stat wbytes {io_stat}: {direct}");
    assert!(
        (64 * MIB..=66 * MIB).contains(&written),
        "{written}: {direct}"
    );
    assert!(
        within(u64_at(&direct, "/io/write_bytes"), io_stat, 5),
        "write_bytes vs io.stat wbytes {io_stat}: {direct}"
    );

    // Buffered, flushed by fsync: page cache charged to the writer's memory cgroup, written
    // back on its behalf.
    dd_in(
        &procs,
        &[
            "if=/dev/zero".into(),
            file("buffered"),
            "bs=1M".into(),
            "count=64".into(),
            "conv=fsync".into(),
            "status=none".into(),
        ],
    );
    let buffered = stats(daemon, &id);
    let io_stat = io_stat_wbytes(&dir);
    let written = u64_at(&buffered, "/io/write_bytes") - u64_at(&direct, "/io/write_bytes");
    eprintln!("buffered: {written} B counted, io.stat wbytes {io_stat}: {buffered}");
    assert!(
        (64 * MIB..=70 * MIB).contains(&written),
        "{written}: {buffered}"
    );
    assert!(
        within(u64_at(&buffered, "/io/write_bytes"), io_stat, 5),
        "write_bytes vs io.stat wbytes {io_stat}: {buffered}"
    );
    let total = u64_at(&buffered, "/io/write_bytes");

    // The container goes away: its final totals stay readable, and nothing is made up for
    // what the cgroup files no longer say.
    drop(sleeper);
    drop(scratch);
    drop(cg);
    let gone = wait_for("the cgroupfs answer to go", Duration::from_secs(20), || {
        let body = stats(daemon, &id);
        body["cpu"].is_null().then_some(body)
    });
    assert!(u64_at(&gone, "/io/write_bytes") >= total, "{gone}");
    assert!(body_has_no_memory(&gone), "{gone}");
}

fn body_has_no_memory(body: &Value) -> bool {
    body["memory"].is_null() || body["memory"]["usage_total"].is_null()
}

#[test]
fn tcp_over_a_veth_between_namespaces_counts_for_both_containers() {
    if !v2_host() {
        return;
    }
    let daemon = Daemon::shared();
    let (a, b) = (container_id("v2-tx"), container_id("v2-rx"));
    let sender = delegated(&format!("system.slice/docker-{a}.scope"));
    let receiver = delegated(&format!(
        "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice/cri-containerd-{b}.scope",
        "0f3b1c2d_4e5f_4a6b_8c7d_9e0f1a2b3c4e"
    ));
    // Both known to the daemon before the transfer, through a process of each.
    let _s = spawn_in_cgroup(&sender, &["sleep", "60"]);
    let _r = spawn_in_cgroup(&receiver, &["sleep", "60"]);
    let pair = NetnsPair::new();
    let sent_before = u64_at(&stats(daemon, &a), "/network/bytes_sent");
    let rcvd_before = u64_at(&stats(daemon, &b), "/network/bytes_rcvd");
    transfer(
        (&sender, pair.a()),
        (&receiver, pair.b()),
        NetnsPair::ADDR_B,
        7311,
    );
    let tx = stats(daemon, &a);
    let rx = stats(daemon, &b);
    let sent = u64_at(&tx, "/network/bytes_sent") - sent_before;
    let rcvd = u64_at(&rx, "/network/bytes_rcvd") - rcvd_before;
    eprintln!("{TRANSFER} B over the veth: sender counted {sent} B, receiver {rcvd} B");
    // TCP/IP headers and the handshake on top of the payload: at most 5% more.
    for (side, counted, body) in [("sent", sent, &tx), ("received", rcvd, &rx)] {
        assert!(
            (TRANSFER..=TRANSFER + TRANSFER / 20).contains(&counted),
            "{side} {counted} for {TRANSFER}: {body}"
        );
        assert_eq!(body["sources"]["network"], "ebpf", "{body}");
    }
}
