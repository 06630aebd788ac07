//! A rootless user's Podman, seen by the daemon running as root with no `--podman-socket`:
//! it finds the user's socket under `/run/user`, lists the user's container with the name,
//! image and labels its own user's service gives and runtime `podman`, keeps them when the
//! service stops (logged once) and follows the service back.
//!
//! On this cgroup v1 host without a systemd user session, rootless Podman creates no cgroup:
//! the container's processes stay in the cgroups of whatever started them, so the daemon
//! lists the container without cgroups, and must never answer another container for its
//! processes.
use std::time::Duration;

use serde_json::{Value, json};

use super::util::{listed_container, lookup, root, wait_for};
use crate::support::{
    cgroup::TestCgroup,
    daemon::Daemon,
    podman::{IMAGE, PodmanContainer},
    podman_rootless::{RootlessPodman, rootless_podman_available},
    process::spawn_in_cgroup,
    require,
};

/// How long the daemon has to catch up (a rescan of `/run/user` is every 5 s).
const TIMEOUT: Duration = Duration::from_secs(30);
/// What the daemon logs when it finds a rootless socket, and when a service goes away.
const FOUND_LOG: &str = "found a rootless Podman socket";
const DOWN_LOG: &str = "Podman is down";

fn rootless_ready() -> bool {
    root()
        && require(
            "podman, conmon, tar, /bin/busybox, useradd, setpriv, newuidmap (Debian's podman, \
             busybox-static, passwd, util-linux, uidmap)",
            rootless_podman_available(),
        )
}

/// The container's `GET /v1/containers` entry once it carries its name.
fn wait_named(daemon: &Daemon, container: &PodmanContainer) -> Value {
    wait_for(
        "the rootless container listed with its name",
        TIMEOUT,
        || listed_container(daemon, &container.id).filter(|c| c["name"] == container.name.as_str()),
    )
}

/// The daemon's log lines that say `what` about `socket`.
fn log_lines(daemon: &Daemon, what: &str, socket: &str) -> usize {
    daemon
        .log()
        .lines()
        .filter(|l| l.contains(what) && l.contains(socket))
        .count()
}

/// `collector_runtime_up{runtime="podman-rootless"}` from `/metrics`.
fn rootless_up(daemon: &Daemon) -> Option<u64> {
    let body = daemon.get("/metrics").body;
    body.lines().find_map(|line| {
        line.strip_prefix("collector_runtime_up{runtime=\"podman-rootless\"} ")?
            .trim()
            .parse()
            .ok()
    })
}

/// The answer for a rootless container's process: that container (its PID namespace tells,
/// since no cgroup does), with its name; never another container.
fn assert_pid_answer(daemon: &Daemon, pid: u32, container: &PodmanContainer) -> Value {
    let answer = lookup(daemon, pid);
    eprintln!("pid {pid} of {}: {answer}", container.id);
    assert_eq!(answer["container_id"], container.id.as_str(), "{answer}");
    assert_eq!(answer["runtime"], "podman", "{answer}");
    assert_eq!(answer["name"], container.name.as_str(), "{answer}");
    answer
}

/// The daemon with rootless discovery (no `--podman-socket`) and no other runtime.
fn discovering_daemon() -> Daemon {
    Daemon::start(&[
        "--docker-socket",
        "none",
        "--containerd-socket",
        "none",
        "--container-labels",
        "app,tier",
    ])
}

#[test]
fn rootless_podman_containers_are_found_named_and_followed_across_restarts() {
    if !rootless_ready() {
        return;
    }
    let mut user = RootlessPodman::start();
    let socket = user.socket().display().to_string();
    let first = user.run(
        "collector-rootless",
        &[("app", "web"), ("tier", "back"), ("secret", "not-listed")],
    );
    // No --podman-socket: as root, the rootful socket and every rootless one.
    let daemon = discovering_daemon();
    let entry = wait_named(&daemon, &first);
    eprintln!("listed: {entry}");
    assert_eq!(entry["runtime"], "podman", "{entry}");
    assert_eq!(entry["image"], IMAGE, "{entry}");
    assert_eq!(
        entry["labels"],
        json!({"app": "web", "tier": "back"}),
        "{entry}"
    );
    if entry["cgroup_path"].is_null() {
        assert_eq!(entry["pids"], json!([]), "no cgroup, no processes: {entry}");
        // No cgroup to read and libpod has no rootless stats on cgroup v1 (HTTP 409): no
        // numbers at all, rather than zeros.
        let stats = daemon.get(&format!("/v1/containers/{}/stats?max_age_ms=0", first.id));
        assert_eq!(stats.status, 404, "{}", stats.body);
    }
    assert_pid_answer(&daemon, user.main_pid(&first), &first);
    assert_eq!(
        log_lines(&daemon, FOUND_LOG, &socket),
        1,
        "{}",
        daemon.log()
    );
    assert_eq!(rootless_up(&daemon), Some(1));

    let doomed = user.run("collector-rootless-doomed", &[]);
    wait_named(&daemon, &doomed);

    // The service stops (its socket goes): logged once, the names stay.
    user.stop_service();
    wait_for("the outage logged", TIMEOUT, || {
        (log_lines(&daemon, DOWN_LOG, &socket) > 0).then_some(())
    });
    // Two rescans: the socket is dropped without another word.
    std::thread::sleep(Duration::from_secs(11));
    assert_eq!(log_lines(&daemon, DOWN_LOG, &socket), 1, "{}", daemon.log());
    assert_eq!(rootless_up(&daemon), Some(0));
    let entry = listed_container(&daemon, &first.id).expect("still listed");
    assert_eq!(entry["name"], first.name.as_str(), "{entry}");
    assert_pid_answer(&daemon, user.main_pid(&first), &first);
    // A container removed while the service is down (Podman is daemonless) is no longer
    // listed: its main process is gone, though no event said so.
    user.podman_ok(&["rm", "-f", "-t", "0", &doomed.id]);
    wait_for("the removed container unlisted", TIMEOUT, || {
        listed_container(&daemon, &doomed.id)
            .is_none()
            .then_some(())
    });
    // A container starts without the service.
    let second = user.run("collector-rootless-later", &[("app", "db")]);

    // The service is back: found again, and its new container is answered.
    user.start_service();
    let entry = wait_named(&daemon, &second);
    assert_eq!(entry["runtime"], "podman", "{entry}");
    assert_eq!(entry["labels"], json!({"app": "db"}), "{entry}");
    assert_eq!(
        log_lines(&daemon, FOUND_LOG, &socket),
        2,
        "{}",
        daemon.log()
    );
    assert_eq!(rootless_up(&daemon), Some(1));
    assert_pid_answer(&daemon, user.main_pid(&second), &second);
}

/// The v2 cgroup path of `pid` (from `/proc/<pid>/cgroup`'s `0::` line).
fn v2_cgroup(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("0::").map(str::to_owned))
        .unwrap_or_default()
}

#[test]
fn a_rootless_container_started_in_another_containers_cgroup_is_answered_as_itself() {
    if !rootless_ready() {
        return;
    }
    // A cgroup whose path names a Docker container: what a rootless container's processes
    // land in when `podman run` is started from there.
    let docker_id = super::util::container_id("rootless-outer");
    let outer = TestCgroup::new(&format!("system.slice/docker-{docker_id}.scope"));
    let mut user = RootlessPodman::start();
    let daemon = discovering_daemon();
    // The cgroup alone says Docker's container, for any process in it.
    let plain = spawn_in_cgroup(&outer, &["sleep", "60"]);
    let answer = wait_for("the outer cgroup's process answered", TIMEOUT, || {
        let answer = lookup(&daemon, plain.pid());
        (answer["container_id"] == docker_id.as_str()).then_some(answer)
    });
    assert_eq!(answer["runtime"], "docker", "{answer}");

    let inner = user.run_in_cgroup("collector-rootless-inner", &[("app", "api")], &outer);
    let pid = user.main_pid(&inner);
    let cgroup = v2_cgroup(pid);
    eprintln!("rootless container process {pid} is in {cgroup}");
    assert!(
        cgroup.ends_with(&format!("docker-{docker_id}.scope")),
        "rootless Podman made a cgroup here after all: {cgroup}"
    );
    let entry = wait_named(&daemon, &inner);
    assert_eq!(entry["runtime"], "podman", "{entry}");
    assert_pid_answer(&daemon, pid, &inner);
    // The other process of that cgroup is still answered as Docker's.
    assert_eq!(
        lookup(&daemon, plain.pid())["container_id"],
        docker_id.as_str()
    );
    // The answer does not depend on the user's service running.
    user.stop_service();
    assert_pid_answer(&daemon, pid, &inner);
}
