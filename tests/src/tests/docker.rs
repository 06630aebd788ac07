//! Real Docker containers: the main process and `docker exec`'d processes resolve to the
//! container's full id, on this host's cgroup layout (v1 controllers plus the v2 tree).
use super::util::{listed_container, lookup, lookup_inode, root, wait_for};
use crate::support::{daemon::Daemon, docker, require};

/// Root, and a Docker daemon (`cargo xtask test` starts one).
fn docker_ready() -> bool {
    root()
        && require(
            "a running Docker daemon (cargo xtask test starts one)",
            docker::docker_available(),
        )
}

#[test]
fn a_docker_containers_main_and_exec_processes_resolve_to_it() {
    if !docker_ready() {
        return;
    }
    let daemon = Daemon::shared();
    let container = docker::Container::run("collector-identity", &[]);
    let main = container.main_pid();
    let answer = lookup(daemon, main);
    assert_eq!(answer["container_id"], container.id(), "{answer}");
    assert_eq!(answer["runtime"], "docker", "{answer}");
    assert_eq!(answer["exited"], false, "{answer}");
    assert_eq!(answer["source"], "ebpf", "{answer}");

    container.exec_detached(&["sleep", "3601"]);
    let exec_pid = wait_for(
        "the exec'd process",
        std::time::Duration::from_secs(10),
        || container.top_pids().into_iter().find(|&p| p != main),
    );
    let answer = lookup(daemon, exec_pid);
    assert_eq!(answer["container_id"], container.id(), "{answer}");
    assert_eq!(answer["comm"], "sleep", "{answer}");

    // Every process of the container, in one batch.
    let pids = container.top_pids();
    let body = serde_json::to_vec(&pids).unwrap();
    let answers = daemon.post("/v1/pids", &body).json();
    for (pid, answer) in pids.iter().zip(answers.as_array().unwrap()) {
        assert_eq!(answer["pid"], *pid, "{answer}");
        assert_eq!(answer["container_id"], container.id(), "{answer}");
    }

    // The container's cgroup directory, by inode.
    let cgroup = crate::support::process::cgroup_v2_path(main).unwrap();
    let dir = crate::support::cgroup::v2_mount()
        .unwrap()
        .join(cgroup.trim_start_matches('/'));
    let by_inode = lookup_inode(daemon, crate::support::cgroup::inode(&dir));
    assert_eq!(by_inode["container_id"], container.id(), "{by_inode}");

    let entry = listed_container(daemon, container.id()).expect("the container is listed");
    assert!(
        entry["pids"].as_array().unwrap().contains(&main.into()),
        "{entry}"
    );
    assert!(
        entry["pids"].as_array().unwrap().contains(&exec_pid.into()),
        "{entry}"
    );
}

#[test]
fn a_short_lived_docker_container_is_resolved_after_it_exited() {
    if !docker_ready() {
        return;
    }
    let daemon = Daemon::shared();
    // The container's process exits by itself after a second; ask after it is gone (and
    // after Docker removed its cgroup).
    let container = docker::Container::run("collector-short", &["sh", "-c", "sleep 1"]);
    let pid = container.main_pid();
    wait_for(
        "the container to exit",
        std::time::Duration::from_secs(20),
        || (container.inspect("{{.State.Running}}") == "false").then_some(()),
    );
    let answer = lookup(daemon, pid);
    assert_eq!(answer["container_id"], container.id(), "{answer}");
    assert_eq!(answer["exited"], true, "{answer}");
}
