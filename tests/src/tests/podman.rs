//! Podman's names, images, labels and pods in the daemon's answers, from a private rootful
//! Podman (its own storage and API service) that the test can kill: they follow `podman
//! run`, stay while the service is down (the numbers never depend on it), and are current
//! again once it is back. Its stats (from the libpod API) agree with the container's cgroup.
use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use collector_daemon::{
    collectors::{
        metadata::{ContainerMeta, MetadataStore, Source},
        podman::PodmanStats,
        podman_sockets::{Listed, PodmanRegistry},
    },
    provider::StatsCollector as _,
};
use serde_json::{Value, json};

use super::util::{listed_container, lookup, root, wait_for};
use crate::support::{
    containerd::{Containerd, DEFAULT_NAMESPACE, containerd_available},
    daemon::Daemon,
    dockerd::{PrivateDockerd, dockerd_available},
    podman::{IMAGE, PodmanContainer, PrivatePodman, podman_available},
    require,
};

/// How long the daemon has to catch up with Podman.
const TIMEOUT: Duration = Duration::from_secs(30);
/// What the daemon logs, once, when the service goes away, and when it is back.
const DOWN_LOG: &str = "Podman is down";
const BACK_LOG: &str = "Podman is back";

fn podman_ready() -> bool {
    root()
        && require(
            "podman, conmon, tar and /bin/busybox (Debian's podman, busybox-static)",
            podman_available(),
        )
}

/// A daemon that reads metadata from `podman` only.
fn daemon_for(podman: &PrivatePodman) -> Daemon {
    let socket = podman.socket().to_str().expect("temp paths are UTF-8");
    Daemon::start(&[
        "--podman-socket",
        socket,
        "--docker-socket",
        "none",
        "--containerd-socket",
        "none",
        "--container-labels",
        "app,tier",
    ])
}

/// The container's `GET /v1/containers` entry once it carries its name.
fn wait_named(daemon: &Daemon, container: &PodmanContainer) -> Value {
    wait_for("the container listed with its name", TIMEOUT, || {
        listed_container(daemon, &container.id).filter(|c| c["name"] == container.name.as_str())
    })
}

/// The v1 cgroup directory of `pid` for `controller`.
fn v1_dir(pid: u32, controller: &str) -> PathBuf {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let path = text
        .lines()
        .find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            controllers
                .split(',')
                .any(|c| c == controller)
                .then(|| path.to_owned())
        })
        .unwrap_or_else(|| panic!("pid {pid} has no {controller} cgroup"));
    crate::support::cgroup::v1_mount(controller)
        .unwrap_or_else(|| panic!("no v1 {controller} mount"))
        .join(path.trim_start_matches('/'))
}

fn read_u64(path: &PathBuf) -> u64 {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("{}: {text:?}", path.display()))
}

fn u64_at(value: &Value, pointer: &str) -> u64 {
    value
        .pointer(pointer)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{pointer} is not a number in {value}"))
}

/// `GET /v1/containers/{id}/stats`, read fresh.
fn stats(daemon: &Daemon, id: &str) -> Value {
    let response = daemon.get(&format!("/v1/containers/{id}/stats?max_age_ms=0"));
    assert_eq!(response.status, 200, "stats of {id}: {}", response.body);
    response.json()
}

/// A busy container's CPU total and memory from the daemon, checked against its cgroup's
/// `cpuacct.usage` read around the request and `memory.usage_in_bytes` read after it.
fn assert_stats_match_the_cgroup(daemon: &Daemon, id: &str, pid: u32) {
    let cpuacct = v1_dir(pid, "cpuacct").join("cpuacct.usage");
    let memory = v1_dir(pid, "memory").join("memory.usage_in_bytes");
    wait_for("the container to use CPU", TIMEOUT, || {
        (read_u64(&cpuacct) > 100_000_000).then_some(())
    });
    let cpu_before = read_u64(&cpuacct);
    let body = stats(daemon, id);
    let cpu_after = read_u64(&cpuacct);
    let memory_after = read_u64(&memory);
    let total = u64_at(&body, "/cpu/total");
    eprintln!("cpu.total {total} ns; cpuacct.usage {cpu_before}..{cpu_after} ns");
    assert!(
        (cpu_before..=cpu_after).contains(&total),
        "cpu.total {total} outside the cgroup's {cpu_before}..{cpu_after}: {body}"
    );
    let usage = u64_at(&body, "/memory/usage_total");
    eprintln!("memory.usage_total {usage} B; memory.usage_in_bytes {memory_after} B after");
    // 4 MiB held in the container's tmpfs: the usage is at least that, and within 5% of
    // the cgroup's own figure read just after.
    assert!(usage >= 4 << 20, "{body}");
    assert!(
        usage.abs_diff(memory_after) <= memory_after / 20,
        "memory.usage_total {usage} vs the cgroup's {memory_after}: {body}"
    );
    assert_eq!(body["sources"]["cpu"], "system", "{body}");
}

/// A busy loop holding 4 MiB in the container's tmpfs (charged to its memory cgroup).
const BUSY: [&str; 3] = [
    "sh",
    "-c",
    "head -c 4194304 /dev/zero > /dev/shm/blob; while :; do :; done",
];

#[test]
fn podman_containers_are_answered_with_name_image_labels_pod_and_stats() {
    if !podman_ready() {
        return;
    }
    let podman = PrivatePodman::start();
    let daemon = daemon_for(&podman);

    let single = podman.run_command(
        "collector-podman",
        &[("app", "web"), ("tier", "front"), ("secret", "not-listed")],
        None,
        &BUSY,
    );
    let pod = podman.create_pod("collector-pod");
    let member = podman.run("collector-podman-member", &[("app", "db")], Some(&pod));

    let entry = wait_named(&daemon, &single);
    assert_eq!(entry["runtime"], "podman", "{entry}");
    assert_eq!(entry["image"], IMAGE, "{entry}");
    assert_eq!(
        entry["labels"],
        json!({"app": "web", "tier": "front"}),
        "{entry}"
    );
    assert_eq!(entry["pod_name"], Value::Null, "{entry}");

    let entry = wait_named(&daemon, &member);
    assert_eq!(entry["runtime"], "podman", "{entry}");
    assert_eq!(entry["pod_name"], pod.as_str(), "{entry}");
    assert_eq!(entry["labels"], json!({"app": "db"}), "{entry}");

    // A PID of each: its container, with Podman's metadata.
    for (container, pod_name) in [(&single, Value::Null), (&member, json!(pod))] {
        let pid = podman.main_pid(container);
        let answer = lookup(&daemon, pid);
        assert_eq!(answer["container_id"], container.id.as_str(), "{answer}");
        assert_eq!(answer["runtime"], "podman", "{answer}");
        assert_eq!(answer["name"], container.name.as_str(), "{answer}");
        assert_eq!(answer["image"], IMAGE, "{answer}");
        assert_eq!(answer["pod_name"], pod_name, "{answer}");
    }
    // conmon watches the container from a cgroup of its own: it is in no container.
    let conmon = podman.conmon_pid(&single);
    let answer = lookup(&daemon, conmon);
    assert_eq!(answer["container_id"], Value::Null, "conmon: {answer}");

    let pid = podman.main_pid(&single);
    assert_stats_match_the_cgroup(&daemon, &single.id, pid);

    // Podman's own stats (the podman runtime's last stats link), asked through the daemon's
    // library against the real service, agree with the cgroup too.
    let registry = Arc::new(PodmanRegistry::new(Arc::new(MetadataStore::default())));
    registry.register(podman.socket(), Source::Podman);
    registry.replace(
        podman.socket(),
        vec![Listed {
            id: single.id.clone(),
            meta: ContainerMeta::default(),
            running: true,
            pid: None,
            start_time_ns: None,
        }],
    );
    let collector = PodmanStats::new(registry, TIMEOUT);
    let cpuacct = v1_dir(pid, "cpuacct").join("cpuacct.usage");
    let pids_current = v1_dir(pid, "pids").join("pids.current");
    let before = read_u64(&cpuacct);
    let answer = collector
        .container_stats("", &single.id, Duration::ZERO)
        .expect("Podman answers")
        .expect("Podman knows the container");
    let after = read_u64(&cpuacct);
    let cpu = answer.cpu.and_then(|c| c.total).expect("a CPU total");
    eprintln!("podman CPUNano {cpu} ns; cpuacct.usage {before}..{after} ns");
    assert!(
        (before..=after).contains(&cpu),
        "{cpu} outside {before}..{after}"
    );
    assert_eq!(
        answer.pid.and_then(|p| p.thread_count),
        Some(read_u64(&pids_current))
    );
    let usage = answer.memory.and_then(|m| m.usage_total).expect("a usage");
    assert!(usage >= 4 << 20, "podman MemUsage {usage}");
    // Not Podman's: it does not know, and asks nothing.
    assert_eq!(
        collector.container_stats("", &"0".repeat(64), Duration::ZERO),
        Ok(None)
    );
}

#[test]
fn podman_names_outlive_a_service_crash_and_follow_it_back() {
    if !podman_ready() {
        return;
    }
    let mut podman = PrivatePodman::start();
    let daemon = daemon_for(&podman);
    let first = podman.run_command("collector-podman-crash", &[("app", "web")], None, &BUSY);
    wait_named(&daemon, &first);
    assert_eq!(runtime_up(&daemon), Some(1));

    podman.kill_service();
    wait_for("the daemon to notice the outage", TIMEOUT, || {
        daemon.log().contains(DOWN_LOG).then_some(())
    });
    assert_eq!(runtime_up(&daemon), Some(0));
    // Podman is daemonless: a container runs without the service.
    let second = podman.run("collector-podman-crash", &[], None);
    // While it is down: the names stay, the numbers come from cgroupfs.
    let entry = listed_container(&daemon, &first.id).expect("still listed");
    assert_eq!(entry["name"], first.name.as_str(), "{entry}");
    let answer = lookup(&daemon, podman.main_pid(&first));
    assert_eq!(answer["name"], first.name.as_str(), "{answer}");
    assert_stats_match_the_cgroup(&daemon, &first.id, podman.main_pid(&first));
    // Retried with a backoff, logged once.
    std::thread::sleep(Duration::from_secs(3));

    podman.restart_service();
    let entry = wait_named(&daemon, &second);
    assert_eq!(entry["runtime"], "podman", "{entry}");
    wait_for("the comeback logged", TIMEOUT, || {
        daemon.log().contains(BACK_LOG).then_some(())
    });
    let log = daemon.log();
    assert_eq!(log.matches(DOWN_LOG).count(), 1, "{log}");
    assert_eq!(log.matches(BACK_LOG).count(), 1, "{log}");
    assert_eq!(runtime_up(&daemon), Some(1));
}

/// `collector_runtime_up{runtime="podman"}` from `/metrics`.
fn runtime_up(daemon: &Daemon) -> Option<u64> {
    let body = daemon.get("/metrics").body;
    body.lines().find_map(|line| {
        line.strip_prefix("collector_runtime_up{runtime=\"podman\"} ")?
            .trim()
            .parse()
            .ok()
    })
}

#[test]
fn docker_containerd_and_podman_at_once_each_answered_with_its_runtime() {
    if !podman_ready()
        || !require(
            "dockerd, docker, containerd, ctr (docker.io, containerd)",
            dockerd_available() && containerd_available(),
        )
    {
        return;
    }
    let podman = PrivatePodman::start();
    let dockerd = PrivateDockerd::start();
    let containerd = Containerd::start();
    let utf8 = |p: &std::path::Path| p.to_str().expect("temp paths are UTF-8").to_owned();
    let daemon = Daemon::start(&[
        "--podman-socket",
        &utf8(podman.socket()),
        "--docker-socket",
        &utf8(dockerd.socket()),
        "--containerd-socket",
        &utf8(containerd.socket()),
    ]);
    let in_podman = podman.run("collector-three", &[], None);
    let in_docker = dockerd.run("collector-three", &[]);
    let ctr_id = super::util::container_id("three");
    // In the cgroup the systemd driver gives a CRI container (`cri-containerd-<id>.scope`),
    // whose name tells the runtime (a plain `ctr` path tells none).
    let ctr_cgroup = containerd.cgroup_path(&format!("cri-containerd-{ctr_id}.scope"));
    let in_containerd = containerd.run_container_in(
        DEFAULT_NAMESPACE,
        &ctr_id,
        &ctr_cgroup,
        &[],
        &["sleep", "1000"],
    );
    let procs = crate::support::cgroup::v2_mount()
        .expect("a cgroup2 mount")
        .join(ctr_cgroup.trim_start_matches('/'))
        .join("cgroup.procs");
    let task_pid: u32 = wait_for("the ctr task's process", TIMEOUT, || {
        std::fs::read_to_string(&procs)
            .ok()?
            .lines()
            .next()?
            .parse()
            .ok()
    });
    // containerd has no names: the id is the name.
    let expected = [
        (
            podman.main_pid(&in_podman),
            in_podman.id.clone(),
            "podman",
            in_podman.name.clone(),
        ),
        (
            dockerd.main_pid(&in_docker),
            in_docker.id.clone(),
            "docker",
            in_docker.name.clone(),
        ),
        (
            task_pid,
            in_containerd.id().to_owned(),
            "containerd",
            ctr_id.clone(),
        ),
    ];
    let deadline = Instant::now() + TIMEOUT;
    for (pid, id, runtime, name) in expected {
        let answer = loop {
            let answer = lookup(&daemon, pid);
            if answer["name"] == name.as_str() || Instant::now() > deadline {
                break answer;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        eprintln!("pid {pid}: {runtime} {}", answer["name"]);
        assert_eq!(answer["container_id"], id.as_str(), "{answer}");
        assert_eq!(answer["runtime"], runtime, "{answer}");
        assert_eq!(answer["name"], name.as_str(), "{answer}");
    }
}
