//! Container metadata from containerd's API, against a private containerd with the CRI
//! plugin: a CRI pod's containers carry their pod's name, namespace and container name, a
//! `ctr` container its image and allow-listed labels; removed containers leave the list; and
//! the daemon serves on through a containerd crash and follows it again after a restart.
use std::time::Duration;

use serde_json::{Value, json};

use super::util::{container_id, listed_container, root, wait_for};
use crate::support::{
    containerd::{
        APP_IMAGE, Containerd, DEFAULT_NAMESPACE, SANDBOX_IMAGE, cgroup_mounts,
        containerd_available,
    },
    cri::{Cri, Pod, pod_uid},
    daemon::Daemon,
    require,
};

/// Longest wait for the daemon to reflect a change made in containerd.
const TIMEOUT: Duration = Duration::from_secs(30);
/// The only runtime label the daemon is told to answer with.
const ALLOWED_LABEL: &str = "a";

fn containerd_ready() -> bool {
    root()
        && require(
            "containerd, ctr, runc and busybox-static (Debian packages)",
            containerd_available(),
        )
}

/// A daemon that reads metadata from `containerd` only.
fn daemon_for(containerd: &Containerd) -> Daemon {
    let socket = containerd.socket().to_str().expect("temp paths are UTF-8");
    Daemon::start(&[
        "--containerd-socket",
        socket,
        "--docker-socket",
        "none",
        "--container-labels",
        ALLOWED_LABEL,
    ])
}

/// Container `id` as `GET /v1/containers` lists it, once `ready` holds of it.
fn wait_listed(daemon: &Daemon, what: &str, id: &str, ready: impl Fn(&Value) -> bool) -> Value {
    wait_for(what, TIMEOUT, || {
        listed_container(daemon, id).filter(|c| ready(c))
    })
}

#[test]
fn a_cri_pods_containers_carry_the_pods_metadata_and_leave_with_it() {
    if !containerd_ready() {
        return;
    }
    let containerd = Containerd::start();
    let daemon = daemon_for(&containerd);
    let cri = Cri::connect(containerd.socket());
    let uid = pod_uid();
    let parent = containerd.cgroup_path(&format!("kubepods/besteffort/pod{uid}"));
    let mut pod = Pod::run(&cri, "web-0", "collector-test", &uid, &parent);
    let app = pod.start_container("app", APP_IMAGE, &["sleep", "1000"]);
    let sandbox = pod.id().to_owned();

    let listed = wait_listed(&daemon, "the app container with its pod", &app, |c| {
        c["pod_name"] == "web-0"
    });
    assert_eq!(listed["container_id"], app.as_str(), "{listed}");
    assert_eq!(listed["name"], app.as_str(), "{listed}");
    assert_eq!(listed["namespace"], "collector-test", "{listed}");
    assert_eq!(listed["container_name"], "app", "{listed}");
    assert_eq!(listed["pod_uid"], uid.as_str(), "{listed}");
    assert_eq!(listed["image"], APP_IMAGE, "{listed}");
    // The CRI labels are there, but only allow-listed ones are answered.
    assert_eq!(listed["labels"], json!({}), "{listed}");
    assert!(
        !listed["pids"].as_array().expect("pids").is_empty(),
        "{listed}"
    );

    let listed = wait_listed(&daemon, "the pod's sandbox with its pod", &sandbox, |c| {
        c["pod_name"] == "web-0"
    });
    assert_eq!(listed["namespace"], "collector-test", "{listed}");
    assert_eq!(listed["container_name"], Value::Null, "{listed}");
    assert_eq!(listed["pod_uid"], uid.as_str(), "{listed}");
    assert_eq!(listed["image"], SANDBOX_IMAGE, "{listed}");

    pod.remove();
    wait_for("the pod's containers to leave the list", TIMEOUT, || {
        (listed_container(&daemon, &app).is_none() && listed_container(&daemon, &sandbox).is_none())
            .then_some(())
    });
    for mount in cgroup_mounts() {
        let dir = mount.join(parent.trim_start_matches('/'));
        assert!(!dir.exists(), "{} is left", dir.display());
    }
}

#[test]
fn a_ctr_container_has_its_image_and_allowed_labels() {
    if !containerd_ready() {
        return;
    }
    let containerd = Containerd::start();
    let daemon = daemon_for(&containerd);
    let id = container_id("ctr");
    let _container = containerd.run_container(
        DEFAULT_NAMESPACE,
        &id,
        &[(ALLOWED_LABEL, "b"), ("not-allowed", "c")],
        &["sleep", "1000"],
    );
    let listed = wait_listed(&daemon, "the ctr container with its image", &id, |c| {
        !c["image"].is_null()
    });
    assert_eq!(listed["image"], APP_IMAGE, "{listed}");
    assert_eq!(listed["name"], id.as_str(), "{listed}");
    assert_eq!(listed["labels"], json!({ALLOWED_LABEL: "b"}), "{listed}");
    assert_eq!(listed["pod_name"], Value::Null, "{listed}");
    assert_eq!(listed["namespace"], Value::Null, "{listed}");
    assert_eq!(listed["container_name"], Value::Null, "{listed}");
}

#[test]
fn metadata_outlives_a_containerd_crash_and_follows_a_restart() {
    if !containerd_ready() {
        return;
    }
    let mut containerd = Containerd::start();
    let daemon = daemon_for(&containerd);
    let before = container_id("before-crash");
    let _before = containerd.run_container(
        DEFAULT_NAMESPACE,
        &before,
        &[(ALLOWED_LABEL, "1")],
        &["sleep", "1000"],
    );
    wait_listed(&daemon, "the first container's metadata", &before, |c| {
        c["image"] == APP_IMAGE
    });

    containerd.kill();
    wait_for("the daemon to see containerd down", TIMEOUT, || {
        daemon
            .log()
            .contains("containerd is unreachable")
            .then_some(())
    });
    // Still serving (healthz asserts 200), with what containerd said before: its container
    // runs on, as shims outlive containerd.
    let _ = daemon.healthz();
    let listed = listed_container(&daemon, &before).expect("the first container is listed");
    assert_eq!(listed["image"], APP_IMAGE, "{listed}");
    assert_eq!(listed["labels"], json!({ALLOWED_LABEL: "1"}), "{listed}");

    containerd.restart();
    let after = container_id("after-restart");
    let _after = containerd.run_container(
        DEFAULT_NAMESPACE,
        &after,
        &[(ALLOWED_LABEL, "2")],
        &["sleep", "1000"],
    );
    let listed = wait_listed(
        &daemon,
        "metadata from the restarted containerd",
        &after,
        |c| c["image"] == APP_IMAGE,
    );
    assert_eq!(listed["labels"], json!({ALLOWED_LABEL: "2"}), "{listed}");
    let log = daemon.log();
    assert_eq!(
        log.matches("containerd is unreachable").count(),
        1,
        "one warning per outage; the log:\n{log}"
    );
    assert!(log.contains("containerd is reachable again"), "{log}");
}

#[test]
fn a_containerd_that_starts_after_the_daemon_is_found() {
    if !containerd_ready() {
        return;
    }
    let mut containerd = Containerd::start();
    containerd.stop();
    assert!(
        !containerd.socket().exists(),
        "a clean stop removes the socket"
    );
    let daemon = daemon_for(&containerd);
    wait_for("the daemon to note containerd absent", TIMEOUT, || {
        daemon
            .log()
            .contains("no containerd socket at")
            .then_some(())
    });
    containerd.restart();
    let id = container_id("late");
    let _container = containerd.run_container(
        DEFAULT_NAMESPACE,
        &id,
        &[(ALLOWED_LABEL, "late")],
        &["sleep", "1000"],
    );
    let listed = wait_listed(&daemon, "metadata once containerd appeared", &id, |c| {
        c["image"] == APP_IMAGE
    });
    assert_eq!(listed["labels"], json!({ALLOWED_LABEL: "late"}), "{listed}");
    let log = daemon.log();
    assert_eq!(log.matches("no containerd socket at").count(), 1, "{log}");
    // Absent is not an outage: nothing to warn about.
    assert!(!log.contains("containerd is unreachable"), "{log}");
}
