//! Without the kernel programs (`--no-ebpf`, as when eBPF cannot load) the same API answers
//! from procfs and cgroupfs, says so in `source`, and health says why eBPF is off.
use serde_json::Value;

use super::util::{container_id, listed_container, lookup, lookup_inode, root};
use crate::support::{cgroup::TestCgroup, daemon::Daemon, process::spawn_in_cgroup};

#[test]
fn no_ebpf_serves_the_same_api_from_procfs() {
    if !root() {
        return;
    }
    let daemon = Daemon::start(&["--no-ebpf"]);
    let health = daemon.healthz();
    assert_eq!(health["ebpf"], false, "{health}");
    assert!(
        health["ebpf_disabled_reason"]
            .as_str()
            .unwrap()
            .contains("--no-ebpf"),
        "{health}"
    );
    assert!(health["processes_live"].is_null(), "{health}");
    assert!(health["pinned_map"].is_null(), "{health}");
    assert!(
        !daemon.pin_dir().exists(),
        "--no-ebpf must not pin anything"
    );

    let id = container_id("fallback");
    let mut cg = TestCgroup::with_v1(
        &format!("kubepods/besteffort/pod6a0c3d6e-1b8f-4a6e-9d2c-3f5e7a9b1c2d/{id}"),
        &["memory"],
    );
    let child = spawn_in_cgroup(&cg, &["sleep", "60"]);
    let answer = lookup(&daemon, child.pid());
    assert_eq!(answer["container_id"], id.as_str(), "{answer}");
    assert_eq!(
        answer["pod_uid"], "6a0c3d6e-1b8f-4a6e-9d2c-3f5e7a9b1c2d",
        "{answer}"
    );
    assert_eq!(answer["source"], "procfs", "{answer}");
    assert_eq!(answer["cgroup_id"], cg.inode_v2(), "{answer}");
    assert_eq!(answer["exited"], false, "{answer}");

    // A cgroup created after start, looked up by inode (a walk on miss finds it).
    let nested = cg.mkdir_nested("sub");
    let by_inode = lookup_inode(&daemon, crate::support::cgroup::inode(&nested));
    assert_eq!(by_inode["container_id"], id.as_str(), "{by_inode}");

    let plain = lookup(&daemon, std::process::id());
    assert_eq!(plain["container_id"], Value::Null, "{plain}");
    assert_eq!(plain["source"], "procfs", "{plain}");

    let entry = listed_container(&daemon, &id).unwrap_or_else(|| panic!("{id} not listed"));
    assert_eq!(entry["pids"], serde_json::json!([child.pid()]), "{entry}");

    // Without the kernel's events an exited process cannot be told: it is not found
    // (never a stale answer).
    let pid = child.pid();
    drop(child);
    let response = daemon.get(&format!("/v1/pid/{pid}"));
    assert_eq!(response.status, 404, "{}", response.body);
    let metrics = daemon.get("/metrics").body;
    assert!(metrics.contains("collector_ebpf_enabled 0"), "{metrics}");
}

#[test]
fn no_ebpf_serves_container_stats_from_cgroupfs_and_procfs() {
    if !root()
        || !crate::support::require(
            "a running Docker daemon (cargo xtask test starts one)",
            crate::support::docker::docker_available(),
        )
    {
        return;
    }
    let daemon = Daemon::start(&["--no-ebpf"]);
    let container = crate::support::docker::Container::run(
        "collector-fallback-stats",
        &["sh", "-c", "sleep 86400 & sleep 86400 & wait"],
    );
    let body = super::util::wait_for("three tasks", std::time::Duration::from_secs(20), || {
        let response = daemon.get(&format!(
            "/v1/containers/{}/stats?max_age_ms=0",
            container.id()
        ));
        assert_eq!(response.status, 200, "{}", response.body);
        let body = response.json();
        (body["pid"]["thread_count"] == 3).then_some(body)
    });
    for section in ["cpu", "memory", "pid", "network", "open_files"] {
        assert_eq!(body["sources"][section], "system", "{section}: {body}");
    }
    assert!(body["cpu"]["total"].as_u64().unwrap() > 0, "{body}");
    assert!(
        body["memory"]["usage_total"].as_u64().unwrap() > 0,
        "{body}"
    );
    // From /proc/<pid>/net/dev of the container's namespace: per interface, lo excluded.
    let interfaces = body["network"]["interfaces"]
        .as_object()
        .expect("interfaces");
    assert!(interfaces.contains_key("eth0"), "{body}");
    assert!(!interfaces.contains_key("lo"), "{body}");
    assert_eq!(body["network"]["using_host_network"], false, "{body}");
    assert!(
        body["network"]["network_isolation_group_id"]
            .as_u64()
            .is_some(),
        "{body}"
    );

    // A container's stats are unknown once Docker removed it: cgroupfs has nothing left.
    let id = container.id().to_owned();
    drop(container);
    let response = super::util::wait_for(
        "the container to be gone",
        std::time::Duration::from_secs(20),
        || {
            let response = daemon.get(&format!("/v1/containers/{id}/stats?max_age_ms=0"));
            (response.status == 404).then_some(response)
        },
    );
    assert!(response.json()["error"].as_str().unwrap().contains(&id));
}
