//! Docker's names, images and labels in the daemon's answers, from a private dockerd the test
//! owns so that it can kill it: they follow `docker run`, `docker rename` and `docker rm -f`,
//! stay while dockerd is down (the numbers never depend on it), and are current again once it
//! is back.
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::util::{listed_container, lookup, root};
use crate::support::{
    daemon::Daemon,
    dockerd::{PrivateContainer, PrivateDockerd, dockerd_available},
    require,
};

/// How long the daemon has to catch up with Docker.
const TIMEOUT: Duration = Duration::from_secs(30);
/// What the daemon logs, once, when Docker goes away, and when it is back.
const DOWN_LOG: &str = "Docker is down";
const BACK_LOG: &str = "Docker is back";

/// Polls `check` until it gives `Ok`, or panics with its last complaint and the daemon's log.
fn eventually<T>(daemon: &Daemon, what: &str, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match check() {
            Ok(value) => return value,
            Err(last) if Instant::now() > deadline => panic!(
                "timed out after {TIMEOUT:?} waiting for {what} (last: {last}); the daemon's \
                 log:\n{}",
                daemon.log()
            ),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// The container's `GET /v1/containers` entry once it carries the container's current name.
fn named(daemon: &Daemon, container: &PrivateContainer) -> Result<Value, String> {
    match listed_container(daemon, &container.id) {
        Some(entry) if entry["name"] == container.name.as_str() => Ok(entry),
        Some(entry) => Err(format!("listed as {entry}")),
        None => Err("not listed".to_owned()),
    }
}

/// `collector_runtime_up{runtime="docker"}` from `/metrics`.
fn docker_up(daemon: &Daemon) -> Option<u64> {
    let body = daemon.get("/metrics").body;
    body.lines().find_map(|line| {
        line.strip_prefix("collector_runtime_up{runtime=\"docker\"} ")?
            .trim()
            .parse()
            .ok()
    })
}

/// The `name` label and the value of container `id`'s `container_cpu_usage_seconds_total` in a
/// scrape of `/metrics`, when it has one.
fn cpu_series(daemon: &Daemon, id: &str) -> Option<(String, f64)> {
    let body = daemon.get("/metrics").body;
    body.lines().find_map(|line| {
        let rest = line.strip_prefix("container_cpu_usage_seconds_total{")?;
        let (labels, value) = rest.rsplit_once("} ")?;
        let id_label = labels.split("\",").find_map(|l| l.strip_prefix("id=\""))?;
        if !id_label.ends_with(id) {
            return None;
        }
        let name = labels
            .split("\",")
            .find_map(|l| l.strip_prefix("name=\""))?;
        Some((name.to_owned(), value.trim().parse().ok()?))
    })
}

#[test]
#[expect(
    clippy::too_many_lines,
    reason = "one story told in order: run, rename, crash, restart, remove"
)]
fn docker_names_follow_the_runtime_and_outlive_a_dockerd_crash() {
    if !root()
        || !require(
            "dockerd, docker, containerd, ctr, tar and /bin/busybox (docker.io, busybox-static)",
            dockerd_available(),
        )
    {
        return;
    }
    let mut dockerd = PrivateDockerd::start();
    let socket = dockerd
        .socket()
        .to_str()
        .expect("temp paths are UTF-8")
        .to_owned();
    let daemon = Daemon::start(&[
        "--docker-socket",
        &socket,
        "--containerd-socket",
        "none",
        "--container-labels",
        "app,tier",
    ]);

    // A new container: its name, the image as given, and only the allow-listed labels.
    let mut first = dockerd.run(
        "collector-meta",
        &[("app", "web"), ("tier", "front"), ("secret", "not-listed")],
    );
    let entry = eventually(&daemon, "the container listed with its name", || {
        named(&daemon, &first)
    });
    assert_eq!(entry["runtime"], "docker", "{entry}");
    assert_eq!(entry["image"], dockerd.image(), "{entry}");
    assert_eq!(
        entry["labels"],
        json!({"app": "web", "tier": "front"}),
        "{entry}"
    );
    assert_eq!(entry["pod_name"], Value::Null, "{entry}");
    let by_pid = lookup(&daemon, dockerd.main_pid(&first));
    assert_eq!(by_pid["container_id"], first.id.as_str(), "{by_pid}");
    assert_eq!(by_pid["name"], first.name.as_str(), "{by_pid}");
    assert_eq!(by_pid["image"], dockerd.image(), "{by_pid}");

    // Renamed: the answer follows.
    dockerd.rename(&mut first, "collector-meta-renamed");
    eventually(&daemon, "the new name", || named(&daemon, &first));

    // dockerd crashes: the daemon notices, keeps serving numbers and the names it knows.
    dockerd.kill();
    eventually(&daemon, "Docker reported down", || {
        let up = docker_up(&daemon);
        let logged = daemon.log().contains(DOWN_LOG);
        (up == Some(0) && logged)
            .then_some(())
            .ok_or(format!("runtime up {up:?}, logged {logged}"))
    });
    assert_eq!(daemon.healthz()["status"], "ok");
    let response = daemon.get(&format!("/v1/containers/{}/stats?max_age_ms=0", first.id));
    assert_eq!(response.status, 200, "{}", response.body);
    let stats = response.json();
    assert!(stats["cpu"]["total"].is_u64(), "{stats}");
    assert!(
        stats["memory"]["usage_total"]
            .as_u64()
            .is_some_and(|bytes| bytes > 0),
        "{stats}"
    );
    assert_eq!(stats["name"], first.name.as_str(), "{stats}");
    named(&daemon, &first).expect("the name stays while Docker is down");
    // ... and /metrics serves its numbers, named.
    let (name, cpu) = cpu_series(&daemon, &first.id)
        .unwrap_or_else(|| panic!("no CPU series for {} while Docker is down", first.id));
    assert_eq!(
        name, first.name,
        "the series' name label while Docker is down"
    );
    assert!(cpu >= 0.0, "{cpu}");

    // dockerd is back: a container made after the restart gets its name, the first keeps its.
    dockerd.restart();
    let second = dockerd.run("collector-meta-after", &[("app", "db")]);
    let entry = eventually(&daemon, "the new container listed with its name", || {
        named(&daemon, &second)
    });
    assert_eq!(entry["labels"], json!({"app": "db"}), "{entry}");
    eventually(
        &daemon,
        "the new container's series named",
        || match cpu_series(&daemon, &second.id) {
            Some((name, _)) if name == second.name => Ok(()),
            other => Err(format!("series {other:?}")),
        },
    );
    eventually(&daemon, "Docker reported back", || {
        let up = docker_up(&daemon);
        let logged = daemon.log().contains(BACK_LOG);
        (up == Some(1) && logged)
            .then_some(())
            .ok_or(format!("runtime up {up:?}, logged {logged}"))
    });
    named(&daemon, &first).expect("the first container keeps its name");
    let log = daemon.log();
    assert_eq!(
        log.matches(DOWN_LOG).count(),
        1,
        "one warning per outage, not one per retry:\n{log}"
    );

    // Removed: the container (and its cgroup) goes from the list.
    dockerd.remove(&second);
    eventually(&daemon, "the removed container gone", || {
        listed_container(&daemon, &second.id)
            .map_or(Ok(()), |entry| Err(format!("still listed: {entry}")))
    });
    named(&daemon, &first).expect("the other container is still listed");
}
