//! Processes in cgroups laid out like every runtime's (made by the test under its own
//! prefix, removed after), resolved by the eBPF index: exact container id, runtime and pod
//! UID; and the layouts that are not containers.
use std::path::Path;

use serde_json::Value;

use super::util::{container_id, lookup, root, sleep_in};
use crate::support::{cgroup::TestCgroup, daemon::Daemon, process::spawn_in_cgroup};

struct Layout {
    /// Path below the test prefix, with `{id}` for the container id.
    path: &'static str,
    runtime: Option<&'static str>,
    pod_uid: Option<&'static str>,
}

const POD: &str = "6a0c3d6e-1b8f-4a6e-9d2c-3f5e7a9b1c2d";
const POD_: &str = "6a0c3d6e_1b8f_4a6e_9d2c_3f5e7a9b1c2d";

fn layouts() -> Vec<Layout> {
    let l = |path, runtime, pod_uid| Layout {
        path,
        runtime,
        pod_uid,
    };
    vec![
        // Docker: cgroupfs driver, systemd driver.
        l("docker/{id}", Some("docker"), None),
        l("system.slice/docker-{id}.scope", Some("docker"), None),
        // containerd/CRI, systemd driver, every QoS class.
        l(
            "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{pod_}.slice/cri-containerd-{id}.scope",
            Some("containerd"),
            Some(POD),
        ),
        l(
            "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{pod_}.slice/cri-containerd-{id}.scope",
            Some("containerd"),
            Some(POD),
        ),
        l(
            "kubepods.slice/kubepods-pod{pod_}.slice/cri-containerd-{id}.scope",
            Some("containerd"),
            Some(POD),
        ),
        // cgroupfs driver, every QoS class (the runtime cannot be told from the path).
        l("kubepods/burstable/pod{pod}/{id}", None, Some(POD)),
        l("kubepods/besteffort/pod{pod}/{id}", None, Some(POD)),
        l("kubepods/pod{pod}/{id}", None, Some(POD)),
        // CRI-O, and its container/ leaf.
        l(
            "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{pod_}.slice/crio-{id}.scope",
            Some("cri-o"),
            Some(POD),
        ),
        l(
            "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{pod_}.slice/crio-{id}.scope/container",
            Some("cri-o"),
            Some(POD),
        ),
        // Podman: root, payload, rootless, container/ leaf.
        l("machine.slice/libpod-{id}.scope", Some("podman"), None),
        l(
            "machine.slice/libpod-{id}.scope/container",
            Some("podman"),
            None,
        ),
        l("libpod_parent/libpod-payload-{id}", Some("podman"), None),
        l(
            "user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{id}.scope/container",
            Some("podman"),
            None,
        ),
    ]
}

fn expand(path: &str, id: &str) -> String {
    path.replace("{id}", id)
        .replace("{pod_}", POD_)
        .replace("{pod}", POD)
}

fn assert_container(answer: &Value, id: &str, runtime: Option<&str>, pod: Option<&str>) {
    assert_eq!(answer["container_id"], id, "{answer}");
    assert_eq!(
        answer["runtime"],
        runtime.map_or(Value::Null, Value::from),
        "{answer}"
    );
    assert_eq!(
        answer["pod_uid"],
        pod.map_or(Value::Null, Value::from),
        "{answer}"
    );
    assert_eq!(answer["source"], "ebpf", "{answer}");
    assert_eq!(answer["exited"], false, "{answer}");
}

#[test]
fn every_runtime_layout_resolves_to_its_container() {
    if !root() {
        return;
    }
    let daemon = Daemon::shared();
    for layout in layouts() {
        let id = container_id("layout");
        let cg = TestCgroup::new(&expand(layout.path, &id));
        let child = spawn_in_cgroup(&cg, &["sleep", "60"]);
        let answer = lookup(daemon, child.pid());
        assert_container(&answer, &id, layout.runtime, layout.pod_uid);
        assert_eq!(answer["cgroup_path"], cg.v2_path(), "{answer}");
        assert_eq!(answer["cgroup_id"], cg.inode_v2(), "{answer}");
        assert_eq!(answer["cgroup_hierarchy_id"], 0, "{answer}");
    }
}

#[test]
fn ecs_and_garden_layouts_resolve() {
    if !root() {
        return;
    }
    let daemon = Daemon::shared();
    for (sub, id, runtime) in [
        (
            "ecs/8d0e4c2bf3a94c1e9a5f0b7d6e2c1a3f/8d0e4c2bf3a94c1e9a5f0b7d6e2c1a3f-1234567890",
            "8d0e4c2bf3a94c1e9a5f0b7d6e2c1a3f-1234567890",
            "ecsfargate",
        ),
        (
            "ecs/8d0e4c2bf3a94c1e9a5f0b7d6e2c1a3f/8d0e4c2bf3a94c1e9a5f0b7d6e2c1a3f-123456789",
            "8d0e4c2bf3a94c1e9a5f0b7d6e2c1a3f-123456789",
            "ecsfargate",
        ),
        (
            "garden/2c7a5e1b-3f4d-4a6b-8c9d-0e1f",
            "2c7a5e1b-3f4d-4a6b-8c9d-0e1f",
            "garden",
        ),
    ] {
        let cg = TestCgroup::new(sub);
        let child = spawn_in_cgroup(&cg, &["sleep", "60"]);
        assert_container(&lookup(daemon, child.pid()), id, Some(runtime), None);
    }
}

#[test]
fn monitors_mount_units_and_plain_services_are_not_containers() {
    if !root() {
        return;
    }
    let daemon = Daemon::shared();
    let id = container_id("not-a-container");
    for sub in [
        format!(
            "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{POD_}.slice/crio-conmon-{id}.scope"
        ),
        format!("machine.slice/libpod-conmon-{id}.scope"),
        format!("system.slice/run-docker-{id}.mount"),
        format!("kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{POD_}.slice"),
        "system.slice/cron.service".to_owned(),
        "user.slice/user-1000.slice/user@1000.service/app.slice/podman-1234.scope".to_owned(),
    ] {
        let cg = TestCgroup::new(&sub);
        let child = spawn_in_cgroup(&cg, &["sleep", "60"]);
        let answer = lookup(daemon, child.pid());
        assert_eq!(answer["container_id"], Value::Null, "{sub}: {answer}");
        assert_eq!(answer["runtime"], Value::Null, "{sub}: {answer}");
        assert_eq!(answer["cgroup_path"], cg.v2_path(), "{sub}: {answer}");
        assert_eq!(answer["exited"], false, "{sub}: {answer}");
    }
}

#[test]
fn a_cgroup_nested_below_a_container_belongs_to_it() {
    if !root() {
        return;
    }
    let daemon = Daemon::shared();
    let id = container_id("nested");
    // In v1 memory too where it is mounted (hybrid hosts); v2-only hosts have v2 alone.
    let mut cg =
        TestCgroup::with_v1_where_mounted(&format!("system.slice/docker-{id}.scope"), &["memory"]);
    let nested = cg.mkdir_nested("init.scope/workers/w1");
    let v1_memory = cg.v1_dir_if_created("memory").map(Path::to_path_buf);
    // A process in the nested cgroup, in every hierarchy.
    let mut procs = vec![nested.join("cgroup.procs")];
    procs.extend(
        v1_memory
            .iter()
            .map(|dir| dir.join("init.scope/workers/w1/cgroup.procs")),
    );
    let child = sleep_in(&procs);
    let answer = lookup(daemon, child.pid());
    assert_container(&answer, &id, Some("docker"), None);
    assert_eq!(
        answer["cgroup_path"],
        format!("{}/init.scope/workers/w1", cg.v2_path()),
        "{answer}"
    );
    // The nested directory's inodes, v2 and v1, belong to the container too.
    let inode = super::util::lookup_inode(daemon, crate::support::cgroup::inode(&nested));
    assert_eq!(inode["container_id"], id.as_str(), "{inode}");
    if let Some(v1_memory) = v1_memory {
        let inode_v1 = super::util::lookup_inode(
            daemon,
            crate::support::cgroup::inode(&v1_memory.join("init.scope/workers")),
        );
        assert_eq!(inode_v1["container_id"], id.as_str(), "{inode_v1}");
    }
}

#[test]
fn docker_in_docker_resolves_to_the_inner_container() {
    if !root() {
        return;
    }
    let daemon = Daemon::shared();
    let (outer, inner) = (container_id("outer"), container_id("inner"));
    let cg = TestCgroup::new(&format!("docker/{outer}/docker/{inner}"));
    let child = spawn_in_cgroup(&cg, &["sleep", "60"]);
    assert_container(&lookup(daemon, child.pid()), &inner, Some("docker"), None);
}
