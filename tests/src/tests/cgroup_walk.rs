//! The kernel's cgroup walk: a full collection (`GET /v1/stats`) takes each container's v1
//! memory, cpu, pids and cpuset values from one walk per hierarchy instead of its files.
//! The values must be the files' own, follow changes at once, and no descriptor of those
//! files is held for the container.
use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use serde_json::Value;

use super::util::{
    collected, container_id, held_files, metric, read, read_u64, root, sleep_in, u64_at, wait_for,
    write,
};
use crate::support::{cgroup, daemon::Daemon};

/// The v1 controllers of the test container (cpuacct: CPU usage stays a file).
const CONTROLLERS: [&str; 5] = ["memory", "cpu", "cpuacct", "pids", "cpuset"];

/// The files whose values the walk gives: the daemon must not hold them for the container.
const WALKED_FILES: [(&str, &str); 9] = [
    ("memory", "memory.usage_in_bytes"),
    ("memory", "memory.oom_control"),
    ("memory", "memory.max_usage_in_bytes"),
    ("memory", "memory.soft_limit_in_bytes"),
    ("memory", "memory.failcnt"),
    ("cpu", "cpu.shares"),
    ("cpu", "cpu.cfs_quota_us"),
    ("pids", "pids.max"),
    ("cpuset", "cpuset.effective_cpus"),
];

/// A new v1 cpuset has no CPUs or memory nodes: gives each level down to `cpuset` its
/// parent's.
fn give_cpuset_top_down(cpuset: &Path) {
    let mount = cgroup::v1_mount("cpuset").expect("a v1 cpuset hierarchy");
    let mut levels: Vec<&Path> = cpuset
        .ancestors()
        .take_while(|d| *d != mount.as_path())
        .collect();
    levels.reverse();
    for level in levels {
        let parent = level.parent().expect("below the mount");
        for file in ["cpuset.cpus", "cpuset.mems"] {
            write(level, file, &read(parent, file));
        }
    }
}

/// The `oom_kill` count of `memory`'s `memory.oom_control`.
fn oom_kills(memory: &Path) -> u64 {
    let text = read(memory, "memory.oom_control");
    text.lines()
        .find_map(|l| l.strip_prefix("oom_kill ")?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no oom_kill in {}: {text:?}", memory.display()))
}

/// `memory.usage_in_bytes` and `memory.max_usage_in_bytes` of `memory`.
fn usage_and_peak(memory: &Path) -> (u64, u64) {
    (
        read_u64(memory, "memory.usage_in_bytes"),
        read_u64(memory, "memory.max_usage_in_bytes"),
    )
}

/// The values of a container set up as in the test below equal its files': limits and counts
/// exactly, usage and peak between the files' values read `before` and `after` the request.
fn assert_equal_to_files(
    body: &Value,
    dir: impl Fn(&str) -> PathBuf,
    before: (u64, u64),
    after: (u64, u64),
) {
    assert_eq!(u64_at(body, "/cpu/shares"), 512, "{body}");
    // min(quota 25% of a CPU, cpuset 1 CPU = 100%), not defaulted.
    assert_eq!(body["cpu"]["limit"], 25.0, "{body}");
    assert_eq!(body["cpu"]["defaulted_limit"], false, "{body}");
    assert_eq!(u64_at(body, "/pid/thread_limit"), 77, "{body}");
    assert_eq!(
        u64_at(body, "/pid/thread_count"),
        read_u64(&dir("pids"), "pids.current"),
        "{body}"
    );
    let memory = dir("memory");
    assert_eq!(u64_at(body, "/memory/softlimit"), 32 << 20, "{body}");
    assert_eq!(u64_at(body, "/memory/limit"), 256 << 20, "{body}");
    assert_eq!(
        u64_at(body, "/memory/oom_events"),
        read_u64(&memory, "memory.failcnt"),
        "{body}"
    );
    assert_eq!(
        u64_at(body, "/memory/oom_kills"),
        oom_kills(&memory),
        "{body}"
    );
    let usage = u64_at(body, "/memory/usage_total");
    assert!(
        (before.0.min(after.0)..=before.0.max(after.0)).contains(&usage),
        "usage {usage} not within the file's {before:?}..{after:?}"
    );
    let peak = u64_at(body, "/memory/peak");
    assert!(
        (before.1..=after.1).contains(&peak),
        "peak {peak} not within the file's {before:?}..{after:?}"
    );
    let cpu_stat = read(&dir("cpu"), "cpu.stat");
    let stat = |key: &str| -> u64 {
        cpu_stat
            .lines()
            .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{key} not in {cpu_stat}"))
    };
    assert!(
        u64_at(body, "/cpu/elapsed_periods") <= stat("nr_periods"),
        "{body}"
    );
    assert!(
        u64_at(body, "/cpu/throttled_periods") <= stat("nr_throttled"),
        "{body}"
    );
}

#[test]
fn a_full_collection_takes_v1_values_from_the_kernel_walk_and_they_equal_the_files() {
    if !root() {
        return;
    }
    for c in CONTROLLERS {
        assert!(
            cgroup::v1_mount(c).is_some(),
            "this test needs the v1 {c} controller"
        );
    }
    let daemon = Daemon::shared();
    let id = container_id("walk");
    let cg = cgroup::TestCgroup::with_v1(&format!("docker/{id}"), &CONTROLLERS);
    let dir = |c: &str| cg.v1_dir(c).to_path_buf();
    let cpuset = dir("cpuset");
    give_cpuset_top_down(&cpuset);
    write(&cpuset, "cpuset.cpus", "0");
    write(&dir("cpu"), "cpu.shares", "512");
    write(&dir("cpu"), "cpu.cfs_period_us", "100000");
    write(&dir("cpu"), "cpu.cfs_quota_us", "25000");
    write(&dir("pids"), "pids.max", "77");
    write(
        &dir("memory"),
        "memory.soft_limit_in_bytes",
        &(32u64 << 20).to_string(),
    );
    write(
        &dir("memory"),
        "memory.limit_in_bytes",
        &(256u64 << 20).to_string(),
    );
    let sleeper = sleep_in(&cg.procs_files());

    let walks_before = metric(daemon, "collector_stats_cgroup_walks_total");
    let before = usage_and_peak(&dir("memory"));
    let body = wait_for(
        "the sleeper to be counted in a full collection",
        Duration::from_secs(10),
        || {
            let body = collected(daemon, &id);
            (body["pid"]["thread_count"] == 1).then_some(body)
        },
    );
    let after = usage_and_peak(&dir("memory"));
    assert_equal_to_files(&body, dir, before, after);

    // The walk answered: walks were made, and the daemon holds none of these files for this
    // container (a read through the files would have kept them open).
    assert!(metric(daemon, "collector_stats_cgroup_walks_total") > walks_before);
    assert!(metric(daemon, "collector_stats_cgroups_walked") > 0);
    let held = held_files(daemon.pid());
    for (controller, file) in WALKED_FILES {
        let path = dir(controller).join(file);
        assert!(
            !held.contains(&path),
            "{} was read from its file in a full collection",
            path.display()
        );
    }

    // Changes show in the next full collection: the walk is made per collection.
    write(&dir("cpu"), "cpu.cfs_quota_us", "50000");
    write(&dir("cpu"), "cpu.shares", "2048");
    write(&dir("pids"), "pids.max", "max");
    write(
        &cpuset,
        "cpuset.cpus",
        &read(cpuset.parent().expect("parent"), "cpuset.cpus"),
    );
    let body = collected(daemon, &id);
    assert_eq!(body["cpu"]["limit"], 50.0, "{body}");
    assert_eq!(u64_at(&body, "/cpu/shares"), 2048, "{body}");
    assert_eq!(body["pid"]["thread_limit"], Value::Null, "{body}");

    // A single container's request reads the files, and says the same.
    let single = super::stats::stats(daemon, &id);
    assert_eq!(single["cpu"]["limit"], 50.0, "{single}");
    assert_eq!(u64_at(&single, "/cpu/shares"), 2048, "{single}");
    assert_eq!(single["pid"]["thread_limit"], Value::Null, "{single}");
    assert_eq!(single["memory"]["softlimit"], body["memory"]["softlimit"]);
    drop(sleeper);
}

#[test]
fn cgroups_beyond_the_walks_capacity_are_read_from_their_files_and_counted() {
    const NESTED: usize = 80;
    if !root() {
        return;
    }
    let controllers = ["memory", "pids"];
    for c in controllers {
        assert!(
            cgroup::v1_mount(c).is_some(),
            "this test needs the v1 {c} controller"
        );
    }
    // 64 slots (the least allowed), and more than 64 cgroups in the memory hierarchy: the
    // container's own cgroup and 80 nested ones, made after everything else there, so that
    // the walk (parents first, in creation order) meets most of them past the last slot.
    let daemon = Daemon::start(&["--cgroup-values-entries", "64"]);
    let id = container_id("walk-full");
    let mut cg = cgroup::TestCgroup::with_v1(&format!("docker/{id}"), &controllers);
    for n in 0..NESTED {
        cg.mkdir_nested(&format!("n{n}"));
    }
    let pids = cg.v1_dir("pids").to_path_buf();
    write(&pids, "pids.max", "33");
    let sleeper = sleep_in(&cg.procs_files());

    let body = wait_for(
        "the sleeper to be counted in a full collection",
        Duration::from_secs(10),
        || {
            let body = collected(&daemon, &id);
            (body["pid"]["thread_count"] == 1).then_some(body)
        },
    );
    assert!(
        metric(&daemon, "collector_kernel_cgroup_values_full_total") > 0,
        "the walk recorded every cgroup: the test did not overflow it"
    );
    // Right either way: from the walk or, past its slots, from the files.
    assert_eq!(u64_at(&body, "/pid/thread_limit"), 33, "{body}");
    assert_eq!(
        u64_at(&body, "/pid/thread_count"),
        read_u64(&pids, "pids.current"),
        "{body}"
    );
    assert_eq!(
        u64_at(&body, "/memory/oom_events"),
        read_u64(cg.v1_dir("memory"), "memory.failcnt"),
        "{body}"
    );
    assert!(
        daemon
            .log()
            .contains("more cgroups than --cgroup-values-entries")
    );
    drop(sleeper);
}

/// A process the OOM killer kills in a container shows in the container's `oom_kills` (the
/// walk reads the memory cgroup's OOM-kill event count, which `memory.oom_control` prints),
/// and the daemon does not hold that file for it.
#[test]
fn an_oom_kill_counts_in_the_walk_as_memory_oom_control_shows_it() {
    if !root() {
        return;
    }
    assert!(
        cgroup::v1_mount("memory").is_some(),
        "this test needs the v1 memory controller"
    );
    let daemon = Daemon::shared();
    let id = container_id("oom");
    let cg = cgroup::TestCgroup::with_v1(&format!("docker/{id}"), &["memory"]);
    let memory = cg.v1_dir("memory").to_path_buf();
    write(&memory, "memory.limit_in_bytes", &(16u64 << 20).to_string());
    if memory.join("memory.memsw.limit_in_bytes").exists() {
        write(
            &memory,
            "memory.memsw.limit_in_bytes",
            &(16u64 << 20).to_string(),
        );
    }
    let _sleeper = sleep_in(&cg.procs_files());
    // dd fills a 64 MiB buffer in a cgroup limited to 16 MiB: the OOM killer kills it.
    let mut dd = std::process::Command::new("dd");
    dd.args(["if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    crate::support::process::enter_before_exec(&mut dd, &cg.procs_files());
    let status = dd.status().expect("running dd");
    assert!(!status.success(), "dd was not killed: {status}");
    let kills = oom_kills(&memory);
    assert!(kills >= 1, "memory.oom_control counts no kill");
    let body = wait_for(
        "the kill in a full collection",
        Duration::from_secs(10),
        || {
            let body = collected(daemon, &id);
            (body["memory"]["oom_kills"] == kills).then_some(body)
        },
    );
    assert_eq!(u64_at(&body, "/memory/oom_kills"), kills, "{body}");
    let file = memory.join("memory.oom_control");
    assert!(
        !held_files(daemon.pid()).contains(&file),
        "{} was read from its file in a full collection",
        file.display()
    );
}
