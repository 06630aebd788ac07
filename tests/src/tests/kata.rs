//! Kata containers' stats from containerd's task metrics, against a private containerd. Kata
//! cannot run here (no VM), but containerd picks a runtime's shim by name: runtime
//! `io.containerd.kata.v2` runs the binary `containerd-shim-kata-v2` found on containerd's
//! `PATH`, which here is a symlink to runc's shim. containerd then reports a real container,
//! with a real task answering `Tasks.Metrics`, as a Kata one. The daemon must answer it with
//! `flavor: "kata"` and stats from the task metrics (source `containerd`), matching
//! containerd's own `ctr tasks metrics` and the cgroup files; a runc container beside it keeps
//! its cgroupfs stats (source `system`).
use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use collector_daemon::collectors::{
    containerd_tasks::{self, TaskMetrics},
    metadata::{ContainerMeta, MetadataStore, Source},
};
use serde_json::Value;
use tempfile::TempDir;

use super::{
    stats::stats,
    util::{container_id, listed_container, root, wait_for},
};
use crate::support::{
    containerd::{Containerd, DEFAULT_NAMESPACE, cgroup_mounts, containerd_available},
    daemon::Daemon,
    require,
};

/// Longest wait for the daemon to reflect a change made in containerd.
const TIMEOUT: Duration = Duration::from_secs(30);
/// The runtime containerd reports for the stand-in container.
const KATA_RUNTIME: &str = "io.containerd.kata.v2";
/// How far apart two reads of an idle container's memory usage may be.
const MEMORY_TOLERANCE: u64 = 1 << 20;

/// A directory holding `containerd-shim-kata-v2` (a symlink to the real runc shim) and a
/// `runc` wrapper, to put first on a private containerd's `PATH`. runc's shim passes
/// `--root /run/containerd/runc/<namespace>` to runc for any runtime but runc's own (ctr
/// gives runc's options, `--runc-root`, to `io.containerd.runc.v2` only): the wrapper moves
/// that state into this directory, so nothing is left outside the test's temp dirs.
struct KataStandIn {
    dir: TempDir,
}

impl KataStandIn {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("collector-test-kata-")
            .tempdir()
            .expect("creating a temp dir for the shims");
        let shim = find_program("containerd-shim-runc-v2");
        std::os::unix::fs::symlink(&shim, dir.path().join("containerd-shim-kata-v2"))
            .expect("linking containerd-shim-kata-v2");
        let runc = find_program("runc");
        let state = dir.path().join("runc-state");
        let script = format!(
            "#!/bin/sh\n\
             # runc with its state in {state}: the value of --root is replaced.\n\
             prev=\n\
             for arg do\n\
             \tshift\n\
             \tif [ \"$prev\" = --root ]; then set -- \"$@\" '{state}'; else set -- \"$@\" \"$arg\"; fi\n\
             \tprev=$arg\n\
             done\n\
             exec '{runc}' \"$@\"\n",
            state = state.display(),
            runc = runc.display(),
        );
        let wrapper = dir.path().join("runc");
        fs::write(&wrapper, script).expect("writing the runc wrapper");
        fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755))
            .expect("making the runc wrapper executable");
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// `program`'s path on `PATH`.
fn find_program(program: &str) -> PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{program} is not on PATH"))
}

/// Whether the runc shim is installed (Debian's `containerd`).
fn shim_available() -> bool {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .any(|dir| dir.join("containerd-shim-runc-v2").is_file())
}

/// The content of cgroup file `name` of the cgroup `rel`, from whichever hierarchy has it.
fn cgroup_file(rel: &str, name: &str) -> Option<String> {
    cgroup_mounts().into_iter().find_map(|mount| {
        fs::read_to_string(mount.join(rel.trim_start_matches('/')).join(name)).ok()
    })
}

fn cgroup_u64(rel: &str, name: &str) -> u64 {
    cgroup_file(rel, name)
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or_else(|| panic!("{rel}/{name} unreadable"))
}

/// What the cgroup files say: memory usage, CPU time in ns, tasks.
fn cgroup_values(rel: &str) -> (u64, u64, u64) {
    if cgroup_file(rel, "memory.usage_in_bytes").is_some() {
        (
            cgroup_u64(rel, "memory.usage_in_bytes"),
            cgroup_u64(rel, "cpuacct.usage"),
            cgroup_u64(rel, "pids.current"),
        )
    } else {
        let cpu_stat = cgroup_file(rel, "cpu.stat").expect("cpu.stat");
        let usage_usec: u64 = cpu_stat
            .lines()
            .find_map(|l| l.strip_prefix("usage_usec "))
            .and_then(|v| v.trim().parse().ok())
            .expect("usage_usec in cpu.stat");
        (
            cgroup_u64(rel, "memory.current"),
            usage_usec * 1000,
            cgroup_u64(rel, "pids.current"),
        )
    }
}

/// What `ctr tasks metrics --format json` says of `id`: memory usage, CPU time in ns, tasks
/// (JSON of containerd's v1 or v2 metrics message; zero fields are left out).
fn ctr_metrics(containerd: &Containerd, id: &str) -> (u64, u64, u64) {
    let out = containerd.ctr_ok(&[
        "-n",
        DEFAULT_NAMESPACE,
        "tasks",
        "metrics",
        "--format",
        "json",
        id,
    ]);
    let json: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    let pids = n(&json["pids"]["current"]);
    if json["cpu"]["usage"].is_object() {
        (
            n(&json["memory"]["usage"]["usage"]),
            n(&json["cpu"]["usage"]["total"]),
            pids,
        )
    } else {
        (
            n(&json["memory"]["usage"]),
            n(&json["cpu"]["usage_usec"]) * 1000,
            pids,
        )
    }
}

/// Memory usage, CPU total and tasks of a stats answer.
fn answered(body: &Value) -> (u64, u64, u64) {
    let n = |v: &Value| {
        v.as_u64()
            .unwrap_or_else(|| panic!("not a number: {v} in {body}"))
    };
    (
        n(&body["memory"]["usage_total"]),
        n(&body["cpu"]["total"]),
        n(&body["pid"]["thread_count"]),
    )
}

fn close(a: u64, b: u64) -> bool {
    a.abs_diff(b) <= MEMORY_TOLERANCE
}

#[test]
fn a_kata_container_has_containerd_task_metrics_and_a_runc_one_cgroupfs_stats() {
    if !root()
        || !require(
            "containerd, ctr, runc, containerd-shim-runc-v2 and busybox-static",
            containerd_available() && shim_available(),
        )
    {
        return;
    }
    // Declared first, dropped last: stopping the containers needs the shims.
    let stand_in = KataStandIn::new();
    let containerd = Containerd::start_with_path_prefix(stand_in.path());
    let socket = containerd.socket().to_str().expect("temp paths are UTF-8");
    let daemon = Daemon::start(&["--containerd-socket", socket, "--docker-socket", "none"]);

    let kata_id = container_id("kata");
    let kata_cgroup = containerd.cgroup_path(&format!("{DEFAULT_NAMESPACE}/{kata_id}"));
    let _kata = containerd.run_container_with_runtime(
        DEFAULT_NAMESPACE,
        &kata_id,
        &kata_cgroup,
        Some(KATA_RUNTIME),
        &[],
        &["sleep", "1000"],
    );
    let runc_id = container_id("runc");
    let runc_cgroup = containerd.cgroup_path(&format!("{DEFAULT_NAMESPACE}/{runc_id}"));
    let _runc = containerd.run_container(DEFAULT_NAMESPACE, &runc_id, &[], &["sleep", "1000"]);
    let info = containerd.ctr_ok(&["-n", DEFAULT_NAMESPACE, "containers", "info", &kata_id]);
    assert!(info.contains(KATA_RUNTIME), "{info}");

    // Listed as containerd's, Kata flavor (its cgroup path names no runtime).
    let listed = wait_for("the Kata container with its flavor", TIMEOUT, || {
        listed_container(&daemon, &kata_id).filter(|c| c["flavor"] == "kata")
    });
    assert_eq!(listed["runtime"], "containerd", "{listed}");
    let runc_listed = wait_for("the runc container from containerd", TIMEOUT, || {
        listed_container(&daemon, &runc_id).filter(|c| c["runtime"] == "containerd")
    });
    assert_eq!(runc_listed["flavor"], "default", "{runc_listed}");

    // Stats from the task metrics once the collector is registered (it waits for
    // containerd's first list).
    let body = wait_for(
        "the Kata container's stats from containerd",
        TIMEOUT,
        || Some(stats(&daemon, &kata_id)).filter(|b| b["sources"]["cpu"] == "containerd"),
    );
    assert_eq!(body["flavor"], "kata", "{body}");
    assert_eq!(body["runtime"], "containerd", "{body}");
    for section in ["cpu", "memory", "pid"] {
        assert_eq!(body["sources"][section], "containerd", "{section}: {body}");
    }
    // Nothing from the host's cgroups or kernel counters: a Kata guest's are not visible.
    for section in ["network", "open_files"] {
        assert!(body["sources"][section].is_null(), "{section}: {body}");
    }
    if !body["io"].is_null() {
        assert_eq!(body["sources"]["io"], "containerd", "{body}");
    }
    // The CPU limit and soft limit are not in containerd's metrics.
    assert!(body["cpu"]["limit"].is_null(), "{body}");

    // Values: between two reads of containerd's own answer and of the cgroup files (the
    // container sleeps: memory holds still, CPU only grows).
    let ctr_before = ctr_metrics(&containerd, &kata_id);
    let files_before = cgroup_values(&kata_cgroup);
    let body = stats(&daemon, &kata_id);
    let files_after = cgroup_values(&kata_cgroup);
    let ctr_after = ctr_metrics(&containerd, &kata_id);
    let (memory, cpu, pids) = answered(&body);
    eprintln!(
        "kata container: memory {memory} B (ctr {} B, cgroup {} B), cpu {cpu} ns (ctr {}..{}, \
         cgroup {}..{}), tasks {pids} (ctr {}, cgroup {})",
        ctr_after.0,
        files_after.0,
        ctr_before.1,
        ctr_after.1,
        files_before.1,
        files_after.1,
        ctr_after.2,
        files_after.2
    );
    assert_eq!(body["sources"]["cpu"], "containerd", "{body}");
    assert!(memory > 0, "{body}");
    assert!(close(memory, ctr_after.0), "{memory} vs ctr {ctr_after:?}");
    assert!(
        close(memory, files_after.0),
        "{memory} vs files {files_after:?}"
    );
    assert!(
        ctr_before.1 <= cpu && cpu <= ctr_after.1,
        "{cpu} vs ctr {ctr_before:?}..{ctr_after:?}"
    );
    assert!(
        files_before.1 <= cpu && cpu <= files_after.1,
        "{cpu} vs files {files_before:?}..{files_after:?}"
    );
    assert_eq!(pids, files_after.2, "{body}");
    assert_eq!(pids, ctr_after.2, "{body}");
    let memory_body = &body["memory"];
    let working_set = memory_body["working_set"].as_u64().expect("working_set");
    assert!(working_set <= memory, "{body}");
    assert!(memory_body["rss"].as_u64().is_some(), "{body}");
    assert!(memory_body["cache"].as_u64().is_some(), "{body}");

    // Work in the container: its CPU time grows by it.
    let fifo_dir = stand_in.path().join("fifo");
    let fifo_dir = fifo_dir.to_str().expect("temp paths are UTF-8");
    containerd.ctr_ok(&[
        "-n",
        DEFAULT_NAMESPACE,
        "tasks",
        "exec",
        "--fifo-dir",
        fifo_dir,
        "--exec-id",
        "work",
        &kata_id,
        "sh",
        "-c",
        "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done",
    ]);
    let after_work = stats(&daemon, &kata_id);
    let (_, cpu_after_work, _) = answered(&after_work);
    let files_after_work = cgroup_values(&kata_cgroup);
    eprintln!(
        "kata container after work: cpu {cpu_after_work} ns (+{} ns; cgroup {})",
        cpu_after_work.saturating_sub(cpu),
        files_after_work.1
    );
    // 200,000 shell iterations take well over 10 ms of CPU.
    assert!(
        cpu_after_work >= cpu + 10_000_000,
        "{cpu} -> {cpu_after_work}: {after_work}"
    );
    assert!(cpu_after_work <= files_after_work.1, "{after_work}");

    // The runc container beside it: cgroupfs, as every default-flavor container.
    let runc_body = stats(&daemon, &runc_id);
    assert_eq!(runc_body["flavor"], "default", "{runc_body}");
    assert_eq!(runc_body["runtime"], "containerd", "{runc_body}");
    for section in ["cpu", "memory", "pid"] {
        assert_eq!(
            runc_body["sources"][section], "system",
            "{section}: {runc_body}"
        );
    }
    let (runc_memory, _, runc_pids) = answered(&runc_body);
    let runc_files = cgroup_values(&runc_cgroup);
    assert!(close(runc_memory, runc_files.0), "{runc_body}");
    assert_eq!(runc_pids, runc_files.2, "{runc_body}");
}

#[test]
fn real_task_metrics_bytes_decode_to_the_cgroup_values() {
    if !root()
        || !require(
            "containerd, ctr, runc and busybox-static",
            containerd_available(),
        )
    {
        return;
    }
    let containerd = Containerd::start();
    let id = container_id("metrics");
    let cgroup = containerd.cgroup_path(&format!("{DEFAULT_NAMESPACE}/{id}"));
    let _container = containerd.run_container(DEFAULT_NAMESPACE, &id, &[], &["sleep", "1000"]);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let store = Arc::new(MetadataStore::default());
    store.upsert(
        Source::Containerd,
        id.clone(),
        ContainerMeta {
            runtime_namespace: Some(DEFAULT_NAMESPACE.to_owned()),
            ..ContainerMeta::default()
        },
    );
    let tasks = {
        let _entered = runtime.enter();
        TaskMetrics::new(
            containerd.socket().to_path_buf(),
            Duration::from_secs(10),
            store,
        )
    };
    let metric = runtime
        .block_on(tasks.metric(DEFAULT_NAMESPACE, &id))
        .expect("Tasks.Metrics")
        .expect("a metric for the running task");
    let data = metric.data.as_ref().expect("metrics data");
    let v1_host = cgroup_file(&cgroup, "memory.usage_in_bytes").is_some();
    let expected = if v1_host {
        containerd_tasks::V1_METRICS
    } else {
        containerd_tasks::V2_METRICS
    };
    assert_eq!(data.type_url, expected);
    eprintln!("real {} payload: {} bytes", data.type_url, data.value.len());
    let stats = containerd_tasks::decode(&metric).expect("decoding containerd's payload");
    let files = cgroup_values(&cgroup);
    let memory = stats.memory.as_ref().expect("memory");
    let usage = memory.usage_total.expect("usage");
    assert!(close(usage, files.0), "{usage} vs {files:?}");
    let cpu = stats.cpu.as_ref().and_then(|c| c.total).expect("cpu total");
    assert!(cpu > 0 && cpu <= files.1, "{cpu} vs {files:?}");
    assert_eq!(
        stats.pid.as_ref().and_then(|p| p.thread_count),
        Some(files.2)
    );
    assert!(stats.timestamp.is_some());
    // And through the collector, as the provider asks it: from a blocking thread, while the
    // runtime runs (as the daemon's API and scrapes do).
    let tasks = Arc::new(tasks);
    let answer = {
        let (tasks, id) = (Arc::clone(&tasks), id.clone());
        runtime.block_on(async move {
            tokio::task::spawn_blocking(move || {
                collector_daemon::provider::StatsCollector::container_stats(
                    &*tasks,
                    "",
                    &id,
                    Duration::ZERO,
                )
            })
            .await
            .expect("the blocking call")
        })
    }
    .expect("an answer")
    .expect("the container is known");
    assert_eq!(
        answer.pid.as_ref().and_then(|p| p.thread_count),
        Some(files.2),
        "{answer:?}"
    );
    // Unknown to containerd's watcher: not known, no call made.
    let other = collector_daemon::provider::StatsCollector::container_stats(
        &*tasks,
        "",
        "not-there",
        Duration::ZERO,
    );
    assert_eq!(other, Ok(None));
}
