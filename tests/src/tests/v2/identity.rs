//! Identity on a v2-only host: every runtime's layout with its controllers enabled the way
//! the runtime's manager enables them (systemd delegates with `nsdelegate`; CRI-O and Podman
//! put the payload in a `container` leaf below their scope, since v2 forbids processes beside
//! enabled controllers), moves between such cgroups, exited processes and inode lookups.
use std::time::Duration;

use serde_json::Value;

use super::{
    super::util::{container_id, lookup, lookup_inode, wait_for},
    delegated, v2_host,
};
use crate::support::{daemon::Daemon, process::spawn_in_cgroup};

const POD: &str = "0f3b1c2d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
const POD_: &str = "0f3b1c2d_4e5f_4a6b_8c7d_9e0f1a2b3c4d";

/// (path below the test prefix with `{id}`, runtime, pod UID): systemd-driver layouts, as
/// found on v2 nodes.
const LAYOUTS: &[(&str, Option<&str>, Option<&str>)] = &[
    ("system.slice/docker-{id}.scope", Some("docker"), None),
    (
        "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{pod_}.slice/cri-containerd-{id}.scope",
        Some("containerd"),
        Some(POD),
    ),
    (
        "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{pod_}.slice/cri-containerd-{id}.scope",
        Some("containerd"),
        Some(POD),
    ),
    (
        "kubepods.slice/kubepods-pod{pod_}.slice/cri-containerd-{id}.scope",
        Some("containerd"),
        Some(POD),
    ),
    (
        "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{pod_}.slice/crio-{id}.scope/container",
        Some("cri-o"),
        Some(POD),
    ),
    (
        "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{pod_}.slice/crio-{id}.scope/container",
        Some("cri-o"),
        Some(POD),
    ),
    (
        "machine.slice/libpod-{id}.scope/container",
        Some("podman"),
        None,
    ),
];

fn expand(path: &str, id: &str) -> String {
    path.replace("{id}", id).replace("{pod_}", POD_)
}

#[test]
fn every_runtime_layout_with_controllers_resolves_by_pid_and_inode() {
    if !v2_host() {
        return;
    }
    let daemon = Daemon::shared();
    for (path, runtime, pod) in LAYOUTS {
        let id = container_id("v2-layout");
        let cg = delegated(&expand(path, &id));
        let child = spawn_in_cgroup(&cg, &["sleep", "60"]);
        let answer = lookup(daemon, child.pid());
        assert_eq!(answer["container_id"], id.as_str(), "{path}: {answer}");
        assert_eq!(
            answer["runtime"],
            runtime.map_or(Value::Null, Value::from),
            "{path}: {answer}"
        );
        assert_eq!(
            answer["pod_uid"],
            pod.map_or(Value::Null, Value::from),
            "{path}: {answer}"
        );
        assert_eq!(answer["source"], "ebpf", "{path}: {answer}");
        assert_eq!(answer["cgroup_path"], cg.v2_path(), "{path}: {answer}");
        assert_eq!(answer["cgroup_id"], cg.inode_v2(), "{path}: {answer}");
        assert_eq!(answer["cgroup_hierarchy_id"], 0, "{path}: {answer}");
        let by_inode = lookup_inode(daemon, cg.inode_v2());
        assert_eq!(by_inode["container_id"], id.as_str(), "{path}: {by_inode}");
        assert_eq!(
            by_inode["pod_uid"],
            pod.map_or(Value::Null, Value::from),
            "{path}: {by_inode}"
        );
    }
}

#[test]
fn a_process_moved_between_delegated_containers_is_followed_at_once() {
    if !v2_host() {
        return;
    }
    let daemon = Daemon::shared();
    let (a, b) = (container_id("v2-from"), container_id("v2-to"));
    let cg_a = delegated(&format!("system.slice/docker-{a}.scope"));
    let cg_b = delegated(&format!(
        "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{POD_}.slice/crio-{b}.scope/container"
    ));
    let child = spawn_in_cgroup(&cg_a, &["sleep", "60"]);
    assert_eq!(lookup(daemon, child.pid())["container_id"], a.as_str());
    for round in 0..4 {
        let (to, id) = if round % 2 == 0 {
            (&cg_b, &b)
        } else {
            (&cg_a, &a)
        };
        to.add_process(child.pid());
        let answer = lookup(daemon, child.pid());
        assert_eq!(
            answer["container_id"],
            id.as_str(),
            "round {round}: {answer}"
        );
        assert_eq!(
            answer["cgroup_id"],
            to.inode_v2(),
            "round {round}: {answer}"
        );
    }
    let plain = delegated("system.slice/cron.service");
    plain.add_process(child.pid());
    let answer = lookup(daemon, child.pid());
    assert_eq!(answer["container_id"], Value::Null, "{answer}");
    assert_eq!(answer["cgroup_path"], plain.v2_path(), "{answer}");
}

#[test]
fn an_exited_process_keeps_its_container_until_reaped_and_after() {
    if !v2_host() {
        return;
    }
    let daemon = Daemon::shared();
    let id = container_id("v2-exited");
    let cg = delegated(&format!("machine.slice/libpod-{id}.scope/container"));
    let mut child = spawn_in_cgroup(&cg, &["true"]);
    let pid = child.pid();
    let status = wait_for("true to exit", Duration::from_secs(10), || {
        child.try_wait().expect("try_wait")
    });
    assert!(status.success());
    let answer = lookup(daemon, pid);
    assert_eq!(answer["container_id"], id.as_str(), "{answer}");
    assert_eq!(answer["runtime"], "podman", "{answer}");
    assert_eq!(answer["exited"], true, "{answer}");
    assert_eq!(answer["comm"], "true", "{answer}");
    assert_eq!(answer["cgroup_id"], cg.inode_v2(), "{answer}");
}
