//! Process lifecycle through the kernel programs: a process that lived microseconds, a
//! reused PID, moves between containers, the exited grace period, inode lookups on v1 and
//! v2 directories, the caller's own container, and a process in no container.
use std::time::Duration;

use serde_json::Value;

use super::util::{container_id, listed_container, lookup, lookup_inode, root, sleep_in, wait_for};
use crate::support::{
    cgroup::TestCgroup,
    clone3::{Clone3Child, Then},
    daemon::Daemon,
    http::get_from_cgroup,
    process::spawn_in_cgroup,
};

#[test]
fn a_process_that_lived_microseconds_is_resolved_after_it_exited() {
    if !root() {
        return;
    }
    let daemon = Daemon::shared();
    let id = container_id("short");
    let cg = TestCgroup::new(&format!("system.slice/docker-{id}.scope"));
    // Created inside the container's cgroup (CLONE_INTO_CGROUP); it calls _exit at once,
    // and is reaped before we ask.
    let mut child = Clone3Child::spawn(Some(cg.v2_dir()), None, Then::Exit).expect("clone3");
    let pid = child.pid();
    // Exited but not yet reaped (a zombie): already exited.
    wait_for("the child to be a zombie", Duration::from_secs(5), || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        (stat.rsplit_once(") ")?.1.starts_with('Z')).then_some(())
    });
    let zombie = lookup(daemon, pid);
    assert_eq!(zombie["container_id"], id.as_str(), "{zombie}");
    assert_eq!(zombie["exited"], true, "{zombie}");
    child.wait().expect("waitpid");
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    let answer = lookup(daemon, pid);
    assert_eq!(answer["container_id"], id.as_str(), "{answer}");
    assert_eq!(answer["runtime"], "docker", "{answer}");
    assert_eq!(answer["exited"], true, "{answer}");
    assert_eq!(answer["source"], "ebpf", "{answer}");

    // The same through fork+exec of a real program.
    let mut exec_child = spawn_in_cgroup(&cg, &["true"]);
    let pid = exec_child.pid();
    exec_child.wait().expect("wait");
    let answer = lookup(daemon, pid);
    assert_eq!(answer["container_id"], id.as_str(), "{answer}");
    assert_eq!(answer["exited"], true, "{answer}");
    assert_eq!(answer["comm"], "true", "{answer}");
}

/// Spawns a process that exits at once in `first`, then another with the same PID in
/// `second` (retrying if some other process takes the PID in between).
fn reuse_pid(first: &TestCgroup, second: Option<&TestCgroup>) -> (u32, Clone3Child) {
    for _ in 0..20 {
        let mut old = Clone3Child::spawn(Some(first.v2_dir()), None, Then::Exit).expect("clone3");
        old.wait().expect("waitpid");
        match Clone3Child::spawn(second.map(TestCgroup::v2_dir), Some(old.pid()), Then::Pause) {
            Ok(new) => return (old.pid(), new),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e) => panic!("clone3 with set_tid: {e}"),
        }
    }
    panic!("could not reuse a PID in 20 tries");
}

#[test]
fn a_reused_pid_never_answers_with_the_old_process_container() {
    if !root() {
        return;
    }
    let daemon = Daemon::shared();
    let (old_id, new_id) = (container_id("old"), container_id("new"));
    let old_cg = TestCgroup::new(&format!("system.slice/docker-{old_id}.scope"));
    let new_cg = TestCgroup::new(&format!("system.slice/docker-{new_id}.scope"));

    let (pid, new) = reuse_pid(&old_cg, Some(&new_cg));
    assert_eq!(new.pid(), pid);
    let answer = lookup(daemon, pid);
    assert_eq!(answer["container_id"], new_id.as_str(), "{answer}");
    assert_eq!(answer["exited"], false, "{answer}");
    let start = crate::support::process::start_time_ticks(pid).expect("start time");
    assert_eq!(
        answer["start_time_ns"].as_u64().expect("start_time_ns") / 10_000_000,
        start,
        "{answer}"
    );
    drop(new);

    // Reused by a process in no container: the answer is null, not the old container.
    let (pid, new) = reuse_pid(&old_cg, None);
    let answer = lookup(daemon, pid);
    assert_eq!(answer["container_id"], Value::Null, "{answer}");
    assert_eq!(answer["exited"], false, "{answer}");
    drop(new);
}

#[test]
fn a_process_moved_between_containers_is_followed_at_once() {
    if !root() {
        return;
    }
    let daemon = Daemon::shared();
    let (a, b) = (container_id("from"), container_id("to"));
    let cg_a =
        TestCgroup::with_v1_where_mounted(&format!("system.slice/docker-{a}.scope"), &["memory"]);
    let cg_b =
        TestCgroup::with_v1_where_mounted(&format!("system.slice/docker-{b}.scope"), &["memory"]);
    let child = spawn_in_cgroup(&cg_a, &["sleep", "60"]);
    assert_eq!(lookup(daemon, child.pid())["container_id"], a.as_str());
    for round in 0..5 {
        let (to, id) = if round % 2 == 0 {
            (&cg_b, &b)
        } else {
            (&cg_a, &a)
        };
        to.add_process(child.pid());
        // The daemon applies pending kernel events before it answers: the first answer
        // after the move already has it (well within the 100 ms the issue allows).
        let answer = lookup(daemon, child.pid());
        assert_eq!(
            answer["container_id"],
            id.as_str(),
            "round {round}: {answer}"
        );
        assert_eq!(
            answer["cgroup_path"],
            to.v2_path(),
            "round {round}: {answer}"
        );
    }
    // Moved out of any container, in v2 and v1 alike.
    let plain = TestCgroup::with_v1_where_mounted("system.slice/cron.service", &["memory"]);
    plain.add_process(child.pid());
    assert_eq!(lookup(daemon, child.pid())["container_id"], Value::Null);
}

#[test]
fn v1_only_placement_is_resolved_from_the_memory_hierarchy() {
    if !root() {
        return;
    }
    if !crate::support::require(
        "a v1 memory hierarchy (hybrid or v1 host)",
        crate::support::cgroup::v1_mount("memory").is_some(),
    ) {
        return;
    }
    let daemon = Daemon::shared();
    let id = container_id("v1only");
    // A runtime on a v1 host: the container exists in the v1 hierarchies only; the
    // process's v2 cgroup is not a container's.
    let cg = TestCgroup::with_v1(&format!("docker/{id}"), &["memory"]);
    let plain = TestCgroup::new("system.slice/cron.service");
    let child = sleep_in(&[
        plain.v2_dir().join("cgroup.procs"),
        cg.v1_dir("memory").join("cgroup.procs"),
    ]);
    let answer = lookup(daemon, child.pid());
    assert_eq!(answer["container_id"], id.as_str(), "{answer}");
    assert_ne!(answer["cgroup_hierarchy_id"], 0, "{answer}");
    assert_eq!(answer["cgroup_id"], cg.inode_v1("memory"), "{answer}");
}

#[test]
fn inode_lookups_cover_v1_and_v2_directories() {
    if !root() {
        return;
    }
    let daemon = Daemon::shared();
    let id = container_id("inode");
    let mut controllers = vec![];
    for c in ["memory", "pids", "cpu"] {
        if crate::support::cgroup::v1_mount(c).is_some() {
            controllers.push(c);
        }
    }
    let cg = TestCgroup::with_v1(
        &format!("kubepods/burstable/pod6a0c3d6e-1b8f-4a6e-9d2c-3f5e7a9b1c2d/{id}"),
        &controllers,
    );
    let v2 = lookup_inode(daemon, cg.inode_v2());
    assert_eq!(v2["container_id"], id.as_str(), "{v2}");
    assert_eq!(v2["cgroup_hierarchy_id"], 0, "{v2}");
    assert_eq!(v2["cgroup_path"], cg.v2_path(), "{v2}");
    assert_eq!(
        v2["pod_uid"], "6a0c3d6e-1b8f-4a6e-9d2c-3f5e7a9b1c2d",
        "{v2}"
    );
    assert_eq!(v2["removed"], false, "{v2}");
    for c in &controllers {
        let v1 = lookup_inode(daemon, cg.inode_v1(c));
        // An inode number can exist in several hierarchies: the answer is the container
        // either way for these fresh directories, and the path is ours.
        assert_eq!(v1["container_id"], id.as_str(), "{c}: {v1}");
        assert_eq!(v1["cgroup_path"], cg.v2_path(), "{c}: {v1}");
    }
    // A directory that is not a cgroup's.
    let tmp = tempfile::tempdir().unwrap();
    let not_cgroup = crate::support::cgroup::inode(tmp.path());
    let response = daemon.get(&format!("/v1/inode/{not_cgroup}"));
    assert!(
        response.status == 404 || response.json()["container_id"].is_null(),
        "{} {}",
        response.status,
        response.body
    );
}

#[test]
fn self_answers_with_the_callers_container() {
    if !root() {
        return;
    }
    let daemon = Daemon::shared();
    let id = container_id("self");
    let cg = TestCgroup::new(&format!(
        "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod6a0c3d6e_1b8f_4a6e_9d2c_3f5e7a9b1c2d.slice/cri-containerd-{id}.scope"
    ));
    let response = get_from_cgroup(&cg, daemon.socket(), "/v1/self");
    assert_eq!(response.status, 200, "{}", response.body);
    let answer = response.json();
    assert_eq!(answer["container_id"], id.as_str(), "{answer}");
    assert_eq!(answer["runtime"], "containerd", "{answer}");
    assert_eq!(
        answer["pod_uid"], "6a0c3d6e-1b8f-4a6e-9d2c-3f5e7a9b1c2d",
        "{answer}"
    );

    // From the test process itself, which is in no container.
    let mine = daemon.get("/v1/self").json();
    assert_eq!(mine["pid"], std::process::id(), "{mine}");
    assert_eq!(mine["container_id"], Value::Null, "{mine}");
}

#[test]
fn a_process_in_no_container_answers_null() {
    if !root() {
        return;
    }
    let daemon = Daemon::shared();
    let cg = TestCgroup::new("system.slice/nginx.service");
    let child = spawn_in_cgroup(&cg, &["sleep", "60"]);
    let answer = lookup(daemon, child.pid());
    assert_eq!(answer["container_id"], Value::Null, "{answer}");
    assert_eq!(answer["runtime"], Value::Null, "{answer}");
    assert_eq!(answer["cgroup_path"], cg.v2_path(), "{answer}");
    assert_eq!(answer["cgroup_id"], cg.inode_v2(), "{answer}");
    assert_eq!(answer["exited"], false, "{answer}");
    // PID 1 is in no container on a host.
    assert_eq!(lookup(daemon, 1)["container_id"], Value::Null);
}

#[test]
fn exited_processes_are_forgotten_after_the_grace_period() {
    if !root() {
        return;
    }
    let daemon = Daemon::start(&["--exited-grace", "1"]);
    assert_eq!(daemon.healthz()["exited_grace_secs"], 1);
    let id = container_id("grace");
    let cg = TestCgroup::new(&format!("docker/{id}"));
    let mut child = Clone3Child::spawn(Some(cg.v2_dir()), None, Then::Exit).expect("clone3");
    child.wait().expect("waitpid");
    let answer = lookup(&daemon, child.pid());
    assert_eq!(answer["container_id"], id.as_str(), "{answer}");
    assert_eq!(answer["exited"], true, "{answer}");
    // Upkeep runs every second; the entry goes once older than the grace period.
    let response = wait_for(
        "the exited process to be forgotten",
        Duration::from_secs(10),
        || {
            let response = daemon.get(&format!("/v1/pid/{}", child.pid()));
            (response.status == 404).then_some(response)
        },
    );
    assert!(
        response.json()["error"]
            .as_str()
            .unwrap()
            .contains("not found"),
        "{}",
        response.body
    );
}

#[test]
fn containers_lists_cgroups_and_live_pids() {
    if !root() {
        return;
    }
    let daemon = Daemon::shared();
    let id = container_id("list");
    let mut cg = TestCgroup::new(&format!("machine.slice/libpod-{id}.scope"));
    let nested = cg.mkdir_nested("container");
    let a = spawn_in_cgroup(&cg, &["sleep", "60"]);
    let b = sleep_in(&[nested.join("cgroup.procs")]);
    let entry = listed_container(daemon, &id).unwrap_or_else(|| panic!("{id} not listed"));
    assert_eq!(entry["runtime"], "podman", "{entry}");
    assert_eq!(entry["cgroup_path"], cg.v2_path(), "{entry}");
    assert_eq!(entry["cgroup_id"], cg.inode_v2(), "{entry}");
    let mut pids: Vec<u32> = vec![a.pid(), b.pid()];
    pids.sort_unstable();
    assert_eq!(entry["pids"], serde_json::json!(pids), "{entry}");
    drop(a);
    drop(b);
    drop(cg);
    assert!(
        listed_container(daemon, &id).is_none(),
        "{id} still listed after its cgroups were removed"
    );
}
