//! The kernel's cgroup walk of the v2 hierarchy: on a host whose cgroup2 has the controllers,
//! a full collection (`GET /v1/stats`) takes each container's `memory.current`,
//! `memory.peak`, `memory.max`, `memory.low`, `memory.swap.*`, `cpu.max`, `cpu.weight`,
//! `pids.*` and `cpuset.cpus.effective` values from one walk instead of its files. The values
//! must be the files' own ("max" is null, never 0), follow changes at once, and no descriptor
//! of those files is held for the container.
use std::{path::Path, time::Duration};

use serde_json::Value;

use super::super::util::{
    collected, container_id, held_files, metric, read, read_u64, sleep_in, u64_at, wait_for, write,
};
use crate::support::{daemon::Daemon, process::spawn_in_cgroup};

/// The controllers the walk reads, enabled down to the test container.
const CONTROLLERS: [&str; 4] = ["memory", "cpu", "pids", "cpuset"];

/// The files whose values the walk gives: the daemon must not hold them for the container.
/// (`cgroup.controllers` neither: a walk's record says which controllers are enabled.)
const WALKED_FILES: [&str; 12] = [
    "cgroup.controllers",
    "memory.current",
    "memory.peak",
    "memory.max",
    "memory.low",
    "memory.swap.current",
    "memory.swap.max",
    "cpu.max",
    "cpu.weight",
    "pids.current",
    "pids.max",
    "cpuset.cpus.effective",
];

/// A one-value file as the daemon reports it: "max" is null.
fn limit(dir: &Path, file: &str) -> Value {
    let text = read(dir, file);
    if text == "max" {
        return Value::Null;
    }
    Value::from(
        text.parse::<u64>()
            .unwrap_or_else(|_| panic!("{}/{file}: {text:?}", dir.display())),
    )
}

/// `memory.current` and `memory.peak` of `dir`.
fn current_and_peak(dir: &Path) -> (u64, u64) {
    (
        read_u64(dir, "memory.current"),
        read_u64(dir, "memory.peak"),
    )
}

/// The memory, CPU and PIDs values of `body` equal the files of `dir`: limits exactly,
/// `memory.current` and `memory.peak` between the files' values read `before` and `after`.
fn assert_equal_to_files(body: &Value, dir: &Path, before: (u64, u64), after: (u64, u64)) {
    let memory = &body["memory"];
    assert_eq!(memory["limit"], limit(dir, "memory.max"), "{body}");
    // memory.low is reported as the soft limit (0, "no protection", as null).
    let low = read_u64(dir, "memory.low");
    assert_eq!(
        memory["softlimit"],
        if low == 0 {
            Value::Null
        } else {
            Value::from(low)
        },
        "{body}"
    );
    assert_eq!(
        memory["swap_limit"],
        limit(dir, "memory.swap.max"),
        "{body}"
    );
    assert_eq!(
        u64_at(body, "/memory/swap"),
        read_u64(dir, "memory.swap.current"),
        "{body}"
    );
    let usage = u64_at(body, "/memory/usage_total");
    assert!(
        (before.0.min(after.0)..=before.0.max(after.0)).contains(&usage),
        "memory.current {usage} not within the file's {before:?}..{after:?}"
    );
    let peak = u64_at(body, "/memory/peak");
    assert!(
        (before.1..=after.1).contains(&peak),
        "memory.peak {peak} not within the file's {before:?}..{after:?}"
    );
    assert_eq!(
        u64_at(body, "/cpu/weight"),
        read_u64(dir, "cpu.weight"),
        "{body}"
    );
    let cpu_max = read(dir, "cpu.max");
    let (quota, period) = cpu_max.split_once(' ').expect("cpu.max: quota period");
    let quota = if quota == "max" {
        Value::Null
    } else {
        Value::from(quota.parse::<u64>().expect("cpu.max quota"))
    };
    assert_eq!(body["cpu"]["cfs_quota_us"], quota, "{body}");
    assert_eq!(
        u64_at(body, "/cpu/cfs_period_us"),
        period.parse::<u64>().expect("cpu.max period"),
        "{body}"
    );
    assert_eq!(
        body["pid"]["thread_limit"],
        limit(dir, "pids.max"),
        "{body}"
    );
    assert_eq!(
        u64_at(body, "/pid/thread_count"),
        read_u64(dir, "pids.current"),
        "{body}"
    );
}

#[test]
fn a_full_collection_takes_v2_values_from_the_kernel_walk_and_they_equal_the_files() {
    if !super::v2_host() {
        return;
    }
    let daemon = Daemon::shared();
    let id = container_id("v2walk");
    let cg = super::delegated(&format!("docker/{id}"));
    let dir = cg.v2_dir().to_path_buf();
    let controllers = read(&dir, "cgroup.controllers");
    for c in CONTROLLERS {
        assert!(
            controllers.split_ascii_whitespace().any(|o| o == c),
            "{c} not enabled for the test cgroup: {controllers:?}"
        );
    }
    // A new v2 cpuset inherits its parent's CPUs; one CPU of them is a limit of its own.
    write(&dir, "cpuset.cpus", "0");
    write(&dir, "cpu.weight", "50");
    write(&dir, "cpu.max", "25000 100000");
    write(&dir, "pids.max", "77");
    write(&dir, "memory.max", &(256u64 << 20).to_string());
    write(&dir, "memory.high", &(200u64 << 20).to_string());
    write(&dir, "memory.low", &(32u64 << 20).to_string());
    let has_swap_files = dir.join("memory.swap.max").exists();
    if has_swap_files {
        write(&dir, "memory.swap.max", &(64u64 << 20).to_string());
    }
    // Load: 16 MiB of file pages charged to the cgroup (in the VM /tmp is a tmpfs: they stay
    // until the file is removed), and a busy loop that cpu.max throttles.
    let scratch = tempfile::tempdir().expect("a scratch dir");
    let fill = scratch.path().join("fill");
    let mut dd = spawn_in_cgroup(
        &cg,
        &[
            "dd",
            "if=/dev/zero",
            &format!("of={}", fill.display()),
            "bs=1M",
            "count=16",
        ],
    );
    let status = dd.wait().expect("waiting for dd");
    assert!(status.success(), "dd: {status}");
    let _busy = spawn_in_cgroup(&cg, &["sh", "-c", "while :; do :; done"]);
    let sleeper = sleep_in(&cg.procs_files());

    let walks_before = metric(daemon, "collector_stats_cgroup_walks_total");
    let before = current_and_peak(&dir);
    let body = wait_for(
        "the test cgroup's processes in a full collection",
        Duration::from_secs(30),
        || {
            let body = collected(daemon, &id);
            (body["pid"]["thread_count"] == read_u64(&dir, "pids.current")).then_some(body)
        },
    );
    let after = current_and_peak(&dir);
    assert_equal_to_files(&body, &dir, before, after);
    // The walk's own values, checked against the settings too (not only the files).
    assert_eq!(u64_at(&body, "/cpu/weight"), 50, "{body}");
    assert_eq!(u64_at(&body, "/memory/limit"), 256 << 20, "{body}");
    assert_eq!(u64_at(&body, "/memory/softlimit"), 32 << 20, "{body}");
    assert_eq!(u64_at(&body, "/pid/thread_limit"), 77, "{body}");
    assert!(u64_at(&body, "/memory/usage_total") >= 16 << 20, "{body}");
    // min(quota 25% of a CPU, cpuset 1 CPU = 100%), not defaulted.
    assert_eq!(body["cpu"]["limit"], 25.0, "{body}");
    assert_eq!(body["cpu"]["defaulted_limit"], false, "{body}");
    if has_swap_files {
        assert_eq!(u64_at(&body, "/memory/swap_limit"), 64 << 20, "{body}");
    }

    // The walk answered: walks were made, and the daemon holds none of these files for this
    // container (a read through the files would have kept them open).
    assert!(metric(daemon, "collector_stats_cgroup_walks_total") > walks_before);
    assert!(metric(daemon, "collector_stats_cgroups_walked") > 0);
    let held = held_files(daemon.pid());
    for file in WALKED_FILES {
        let path = dir.join(file);
        assert!(
            !held.contains(&path),
            "{} was read from its file in a full collection",
            path.display()
        );
    }
    // What stays a file is read: memory.stat (per-CPU statistics).
    assert!(
        held.contains(&dir.join("memory.stat")),
        "memory.stat not held: the container was not read through the v2 directory"
    );

    // Changes show in the next full collection, "max" as null.
    write(&dir, "cpu.max", "max 100000");
    write(&dir, "cpu.weight", "300");
    write(&dir, "pids.max", "max");
    write(&dir, "memory.max", "max");
    write(&dir, "memory.low", "0");
    if has_swap_files {
        write(&dir, "memory.swap.max", "max");
    }
    // Every CPU of its parent (an empty write would be no write at all).
    let parent = dir.parent().expect("below the mount");
    write(&dir, "cpuset.cpus", &read(parent, "cpuset.cpus.effective"));
    let before = current_and_peak(&dir);
    let body = collected(daemon, &id);
    let after = current_and_peak(&dir);
    assert_equal_to_files(&body, &dir, before, after);
    assert_eq!(u64_at(&body, "/cpu/weight"), 300, "{body}");
    for null in [
        "/cpu/cfs_quota_us",
        "/pid/thread_limit",
        "/memory/limit",
        "/memory/softlimit",
        "/memory/swap_limit",
    ] {
        assert_eq!(
            body.pointer(null).unwrap_or(&Value::Null),
            &Value::Null,
            "{null}: {body}"
        );
    }
    // No limit of its own, nor its parent's: every host CPU, defaulted.
    assert_eq!(body["cpu"]["defaulted_limit"], true, "{body}");

    // A single container's request reads the files, and says the same.
    let single = super::super::stats::stats(daemon, &id);
    for pointer in [
        "/cpu/weight",
        "/cpu/cfs_quota_us",
        "/cpu/cfs_period_us",
        "/cpu/limit",
        "/memory/limit",
        "/memory/softlimit",
        "/memory/swap_limit",
        "/pid/thread_limit",
    ] {
        assert_eq!(
            single.pointer(pointer),
            body.pointer(pointer),
            "{pointer}: {single} vs {body}"
        );
    }
    drop(sleeper);
    std::fs::remove_file(&fill).expect("removing the tmpfs fill");
}
