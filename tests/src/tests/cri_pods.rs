//! Pod lookups through CRI (`GET /v1/pod/{uid}/{name}`, `query pod`) against a private
//! containerd with its CRI plugin: a pod with an init container and two containers, each
//! answered with its id, runtime and pod; unknown pods and names are 404s; a containerd
//! killed mid-run makes pod lookups "not available" (503) while the rest answers, logged
//! once, and they answer again after the restart; a removed pod is not found. The CRI
//! collector's `ListContainerStats` reader is checked against the container's cgroupfs files.
use std::{fs, path::PathBuf, sync::Arc, time::Duration};

use collector_daemon::collectors::{cri::CriClient, metadata::MetadataStore};
use serde_json::Value;

use super::util::{root, wait_for};
use crate::support::{
    containerd::{APP_IMAGE, Containerd, cgroup_mounts, containerd_available},
    cri::{Cri, Pod, pod_uid},
    daemon::Daemon,
    require,
};

/// Longest wait for the daemon to reflect a change made in containerd.
const TIMEOUT: Duration = Duration::from_secs(30);

pub(super) fn containerd_ready() -> bool {
    root()
        && require(
            "containerd, ctr, runc and busybox-static (Debian packages)",
            containerd_available(),
        )
}

/// A daemon asking `containerd` for CRI and metadata, and no Docker.
pub(super) fn daemon_for(containerd: &Containerd) -> Daemon {
    let socket = containerd.socket().to_str().expect("temp paths are UTF-8");
    Daemon::start(&[
        "--cri-socket",
        socket,
        "--containerd-socket",
        socket,
        "--docker-socket",
        "none",
        "--crio-socket",
        "none",
        "--runtime-timeout",
        "5",
    ])
}

/// `GET /v1/pod/{uid}/{name}` once it answers 200 (the CRI collector registers within a
/// retry round of the provider), with the body checked against `id`.
fn looked_up(daemon: &Daemon, uid: &str, name: &str, query: &str, id: &str) -> Value {
    let path = format!("/v1/pod/{uid}/{name}{query}");
    let body = wait_for(&format!("{path} to answer"), TIMEOUT, || {
        let response = daemon.get(&path);
        (response.status == 200).then(|| response.json())
    });
    assert_eq!(body["container_id"], id, "{path}: {body}");
    assert_eq!(body["container"], name, "{body}");
    assert_eq!(body["pod_uid"], uid, "{body}");
    assert_eq!(body["source"], "cri", "{body}");
    assert_eq!(body["runtime"], "containerd", "{body}");
    assert_eq!(body["pod_name"], "web-0", "{body}");
    assert_eq!(body["namespace"], "collector-test", "{body}");
    assert_eq!(body["container_name"], name, "{body}");
    println!("{path} -> {id}");
    body
}

#[test]
fn pod_containers_are_found_by_uid_and_name_through_a_containerd_crash() {
    if !containerd_ready() {
        return;
    }
    let mut containerd = Containerd::start();
    let daemon = daemon_for(&containerd);
    let cri = Cri::connect(containerd.socket());
    let uid = pod_uid();
    let parent = containerd.cgroup_path(&format!("kubepods/besteffort/pod{uid}"));
    let mut pod = Pod::run(&cri, "web-0", "collector-test", &uid, &parent);
    let init = pod.run_init_container("init", APP_IMAGE, &["true"]);
    let app = pod.start_container("app", APP_IMAGE, &["sleep", "1000"]);
    let sidecar = pod.start_container("sidecar", APP_IMAGE, &["sleep", "1000"]);

    looked_up(&daemon, &uid, "app", "", &app);
    looked_up(&daemon, &uid, "sidecar", "", &sidecar);
    let body = looked_up(&daemon, &uid, "init", "?init=true", &init);
    assert_eq!(body["init"], true, "{body}");

    let other_uid = pod_uid();
    for (path, what) in [
        (format!("/v1/pod/{other_uid}/app"), "an unknown pod"),
        (format!("/v1/pod/{uid}/nope"), "an unknown name"),
    ] {
        let response = daemon.get(&path);
        assert_eq!(response.status, 404, "{what}: {path}: {}", response.body);
        let error = response.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(error.starts_with("no container named"), "{what}: {error}");
        println!("{path} -> 404 {error}");
    }
    let bad = daemon.get("/v1/pod/x/app?init=maybe");
    assert_eq!(bad.status, 400, "{}", bad.body);

    let table = daemon.query(&["pod", &uid, "app"]);
    let stdout = String::from_utf8_lossy(&table.stdout);
    assert!(table.status.success(), "{stdout} {:?}", table.stderr);
    assert!(stdout.starts_with("POD"), "{stdout}");
    assert!(
        stdout.contains(&app) && stdout.contains("web-0"),
        "{stdout}"
    );
    print!("query pod:\n{stdout}");
    let json = daemon.query(&["--json", "pod", &uid, "init", "--init"]);
    let answer: Value = serde_json::from_slice(&json.stdout).expect("query --json prints JSON");
    assert_eq!(answer["container_id"], init.as_str(), "{answer}");
    let missing = daemon.query(&["pod", &other_uid, "app"]);
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr)
            .contains("error (404 Not Found): no container named"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );

    containerd.kill();
    let unavailable = wait_for("pod lookups to say not available", TIMEOUT, || {
        let response = daemon.get(&format!("/v1/pod/{uid}/app"));
        let error = response.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        (response.status == 503 && error.contains("is not available")).then_some(error)
    });
    println!("containerd killed: 503 {unavailable}");
    // The rest answers meanwhile.
    let _ = daemon.healthz();
    for _ in 0..5 {
        assert_eq!(daemon.get("/v1/containers").status, 200);
        assert_eq!(daemon.get(&format!("/v1/pod/{uid}/app")).status, 503);
    }

    containerd.restart();
    looked_up(&daemon, &uid, "app", "", &app);
    let log = daemon.log();
    assert_eq!(
        log.matches("the CRI runtime is unreachable").count(),
        1,
        "one warning per outage; the log:\n{log}"
    );
    assert!(log.contains("the CRI runtime is reachable again"), "{log}");

    pod.remove();
    let response = daemon.get(&format!("/v1/pod/{uid}/app"));
    assert_eq!(response.status, 404, "{}", response.body);
}

/// The file `name` of the container cgroup `rel` in whichever hierarchy has it.
pub(super) fn cgroup_file(rel: &str, name: &str) -> PathBuf {
    cgroup_mounts()
        .into_iter()
        .map(|m| m.join(rel.trim_start_matches('/')).join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("no {name} for cgroup {rel}"))
}

fn read_u64(path: &PathBuf) -> u64 {
    fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The v1 working set as containerd computes it: usage less inactive file pages.
fn working_set(rel: &str) -> u64 {
    let usage = read_u64(&cgroup_file(rel, "memory.usage_in_bytes"));
    let stat = fs::read_to_string(cgroup_file(rel, "memory.stat")).expect("memory.stat");
    let inactive = stat
        .lines()
        .find_map(|l| l.strip_prefix("total_inactive_file "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    usage.saturating_sub(inactive)
}

#[test]
fn list_container_stats_matches_the_containers_cgroup_files() {
    if !containerd_ready() {
        return;
    }
    let containerd = Containerd::start();
    let cri = Cri::connect(containerd.socket());
    let uid = pod_uid();
    let parent = containerd.cgroup_path(&format!("kubepods/besteffort/pod{uid}"));
    let pod = Pod::run(&cri, "web-0", "collector-test", &uid, &parent);
    // Some CPU first, then idle, so that CPU time is non-zero and memory settles.
    let app = pod.start_container(
        "app",
        APP_IMAGE,
        &[
            "sh",
            "-c",
            "i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; exec sleep 1000",
        ],
    );
    let rel = format!("{parent}/{app}");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let client = runtime.block_on(async {
        CriClient::new(
            containerd.socket().to_path_buf(),
            Duration::from_secs(10),
            Arc::new(MetadataStore::default()),
        )
    });
    let cpu_file = cgroup_file(&rel, "cpuacct.usage");
    let before = (read_u64(&cpu_file), working_set(&rel));
    let stats = runtime
        .block_on(client.container_stats(&app))
        .expect("ListContainerStats answers")
        .expect("the container has stats");
    let after = (read_u64(&cpu_file), working_set(&rel));
    let cpu = stats.cpu.as_ref().and_then(|c| c.total).expect("CPU time");
    let memory = stats.memory.as_ref().expect("memory");
    let ws = memory.working_set.expect("working set");
    println!(
        "CRI cpu {cpu} ns in [{}, {}]; working set {ws} in [{}, {}]; usage {:?}",
        before.0,
        after.0,
        before.1.min(after.1),
        before.1.max(after.1),
        memory.usage_total
    );
    assert!(cpu > 0 && (before.0..=after.0).contains(&cpu), "{stats:?}");
    assert!(
        (before.1.min(after.1)..=before.1.max(after.1)).contains(&ws),
        "{stats:?}"
    );
    assert!(memory.usage_total.is_some_and(|u| u >= ws), "{stats:?}");
    assert!(stats.timestamp.is_some(), "{stats:?}");
    assert_eq!((stats.io.as_ref(), stats.pid.as_ref()), (None, None));
    let unknown = runtime.block_on(client.container_stats(&"0".repeat(64)));
    assert!(matches!(unknown, Ok(None)), "{unknown:?}");
}
