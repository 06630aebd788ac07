//! The container image (`cargo xtask image`) started under `docker run` with exactly the
//! capabilities, mounts, user, environment, arguments and memory limit of
//! `deploy/kubernetes/daemonset.yaml` (read from the file and translated, so the manifest is
//! what is tested): it loads its eBPF programs, answers which container a process of another
//! container is in, and serves that container's series on the port the probes and the Service
//! use.
use std::{
    collections::BTreeMap,
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use super::util::{root, wait_for};
use crate::support::{
    daemon::PinDir,
    docker::{self, Container},
    http,
    manifest::{self, DockerRun, Overrides, capability_number},
    prometheus::{http_get, parse_exposition},
    require,
};

/// The container of the manifest's `DaemonSet`.
const CONTAINER: &str = "collector";
/// The hostPath volume that holds the API socket; the test gives it a temp dir.
const SOCKET_VOLUME: &str = "run";

/// Capabilities an older Docker does not know (docker.io 20.10 on Debian 12 rejects
/// `unknown capability: "CAP_BPF"`), with the one the kernel accepts in their place:
/// `bpf_capable()` and `perfmon_capable()` also grant with `CAP_SYS_ADMIN`, as every kernel
/// before 5.8 required.
const STAND_INS: [(&str, &str); 2] = [("BPF", "SYS_ADMIN"), ("PERFMON", "SYS_ADMIN")];

fn manifest_documents() -> Option<Vec<Value>> {
    require(
        "python3 with its yaml module (cargo xtask test installs python3-yaml)",
        manifest::yaml_reader_available(),
    )
    .then(|| manifest::read_yaml(&manifest::daemonset_path()))
}

/// The value of environment variable `name` of the `DaemonSet`'s container.
fn env_value<'a>(daemonset: &'a Value, name: &str) -> &'a str {
    daemonset["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .expect("env")
        .iter()
        .find(|v| v["name"] == name)
        .and_then(|v| v["value"].as_str())
        .unwrap_or_else(|| panic!("no {name} in the DaemonSet's env"))
}

/// The port of a `host:port` address.
fn port_of(addr: &str) -> u16 {
    addr.rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .unwrap_or_else(|| panic!("no port in {addr:?}"))
}

#[test]
fn the_daemonset_manifest_is_consistent() {
    let Some(documents) = manifest_documents() else {
        return;
    };
    let daemonset = manifest::document(&documents, "DaemonSet");
    let service = manifest::document(&documents, "Service");
    let pod = &daemonset["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(container["name"], CONTAINER);
    assert_eq!(pod["hostPID"], true);
    assert!(
        pod["tolerations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["operator"] == "Exists" && t["key"].is_null()),
        "it must tolerate every taint: {}",
        pod["tolerations"]
    );
    let security = &container["securityContext"];
    assert_eq!(security["privileged"], false);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
    let added = security["capabilities"]["add"].as_array().unwrap();
    assert!(
        !added.contains(&"SYS_ADMIN".into()),
        "CAP_SYS_ADMIN is not needed: {added:?}"
    );

    // The metrics port: the daemon's address, the container port, the probes, the Service.
    let port = port_of(env_value(daemonset, "COLLECTOR_METRICS_ADDR"));
    let metrics_port = container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "metrics")
        .expect("a port named metrics");
    assert_eq!(metrics_port["containerPort"], port);
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(container[probe]["httpGet"]["path"], "/healthz", "{probe}");
        assert_eq!(container[probe]["httpGet"]["port"], "metrics", "{probe}");
    }
    assert_eq!(
        service["spec"]["selector"],
        daemonset["spec"]["selector"]["matchLabels"]
    );
    assert_eq!(service["spec"]["ports"][0]["port"], port);
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "metrics");
    let annotations = &service["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/port"], port.to_string());
    assert_eq!(annotations["prometheus.io/path"], "/metrics");

    // The socket and the pins are in host directories the pod mounts.
    let mounts = container["volumeMounts"].as_array().unwrap();
    let mounted = |path: &str| {
        mounts
            .iter()
            .any(|m| Path::new(path).starts_with(m["mountPath"].as_str().unwrap()))
    };
    for var in ["COLLECTOR_SOCKET", "COLLECTOR_PIN_DIR"] {
        let path = env_value(daemonset, var);
        assert!(mounted(path), "{var}={path} is not on a mounted volume");
    }
    assert!(
        mounted("/sys/fs/cgroup/x"),
        "the node's cgroupfs is not mounted"
    );
}

/// `docker run`'s form of the manifest's container with `stand_ins` applied to the added
/// capabilities.
fn with_stand_ins(run: &DockerRun, stand_ins: &BTreeMap<String, String>) -> Vec<String> {
    let mut options = Vec::new();
    let mut args = run.options.iter();
    while let Some(option) = args.next() {
        options.push(option.clone());
        if option == "--cap-add" {
            let cap = args.next().expect("--cap-add takes a value");
            options.push(stand_ins.get(cap).unwrap_or(cap).clone());
        }
    }
    options
}

/// The added capabilities this Docker cannot grant, each with its stand-in; panics on one
/// without a stand-in. Each is tried on a throw-away container of the test image.
fn docker_stand_ins(caps: &[String]) -> BTreeMap<String, String> {
    let mut stand_ins = BTreeMap::new();
    for cap in caps {
        let output = Command::new("docker")
            .args(["create", "--cap-drop", "ALL", "--cap-add", cap])
            .arg(docker::image())
            .arg("true")
            .stdin(Stdio::null())
            .output()
            .expect("running docker create");
        let stdout = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        if output.status.success() {
            let _ = Command::new("docker").args(["rm", &stdout]).output();
            continue;
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("unknown capability"),
            "docker create --cap-add {cap}: {stderr}"
        );
        let (_, stand_in) = STAND_INS
            .iter()
            .find(|(name, _)| name == cap)
            .unwrap_or_else(|| panic!("this Docker cannot grant {cap}: {stderr}"));
        let _ = writeln!(
            std::io::stderr(),
            "note: this Docker does not know CAP_{cap}; granting CAP_{stand_in} in its place"
        );
        stand_ins.insert(cap.clone(), (*stand_in).to_owned());
    }
    stand_ins
}

/// The image under test: `COLLECTOR_IMAGE`, else the one the manifest names.
fn image_under_test(manifest_image: &str) -> Option<String> {
    let image = std::env::var("COLLECTOR_IMAGE").unwrap_or_else(|_| manifest_image.to_owned());
    let exists = Command::new("docker")
        .args(["image", "inspect", &image])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    require(
        &format!("the image {image} (cargo xtask image builds it)"),
        exists,
    )
    .then_some(image)
}

/// The container started from the image; its log is printed when the test fails.
struct Collector(Container);

impl Drop for Collector {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- the collector container's log ----\n{}", self.0.logs());
        }
    }
}

/// Waits until `GET /healthz` on `socket` answers 200 and returns its JSON.
fn wait_healthy(collector: &Collector, socket: &Path) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let probe = http::request("GET", "/healthz", None);
        match http::send_with_timeout(socket, &probe, Duration::from_secs(5)) {
            Ok(response) if response.status == 200 => return response.json(),
            last => {
                assert!(
                    Instant::now() < deadline,
                    "no healthy daemon on {} after 30 s (last: {last:?}); running: {}",
                    socket.display(),
                    collector.0.inspect("{{.State.Status}}")
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// The effective capability set of process `pid` (`CapEff` in its status).
fn effective_caps(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .expect("CapEff in status")
        .trim();
    u64::from_str_radix(hex, 16).unwrap()
}

/// The samples of family `name` for the container named `container_name`.
fn container_samples(text: &str, name: &str, container_name: &str) -> Vec<f64> {
    parse_exposition(text)
        .expect("the exposition parses")
        .into_iter()
        .filter(|s| {
            s.name == name && s.labels.get("name").map(String::as_str) == Some(container_name)
        })
        .map(|s| s.value)
        .collect()
}

#[test]
fn the_image_runs_as_the_daemonset_says() {
    if !root()
        || !require(
            "a Docker daemon with the test image",
            docker::docker_available(),
        )
    {
        return;
    }
    let Some(documents) = manifest_documents() else {
        return;
    };
    let daemonset = manifest::document(&documents, "DaemonSet");
    // Declared before the container, so dropped after it: the pins go once the daemon is gone.
    let pins = PinDir::new();
    let run_dir = tempfile::Builder::new()
        .prefix("collector-test-image-")
        .tempdir()
        .unwrap();
    let overrides = Overrides {
        host_paths: BTreeMap::from([(
            SOCKET_VOLUME.to_owned(),
            run_dir.path().display().to_string(),
        )]),
        env: BTreeMap::from([(
            "COLLECTOR_PIN_DIR".to_owned(),
            pins.path().display().to_string(),
        )]),
    };
    let run = manifest::docker_run(daemonset, CONTAINER, &overrides);
    let Some(image) = image_under_test(&run.image) else {
        return;
    };
    let stand_ins = docker_stand_ins(&run.cap_add);
    let options = with_stand_ins(&run, &stand_ins);
    let options: Vec<&str> = options.iter().map(String::as_str).collect();
    let args: Vec<&str> = run.args.iter().map(String::as_str).collect();
    let collector = Collector(Container::run_image(
        "collector-image",
        &options,
        &image,
        &args,
    ));

    let socket_in_container = PathBuf::from(env_value(daemonset, "COLLECTOR_SOCKET"));
    let socket = run_dir
        .path()
        .join(socket_in_container.file_name().unwrap());
    let health = wait_healthy(&collector, &socket);
    assert_eq!(health["ebpf"], true, "{health}");
    assert_eq!(health["counters_unavailable"], Value::Null, "{health}");
    assert_eq!(
        health["pinned_map"],
        pins.path().join("processes").display().to_string(),
        "{health}"
    );

    // The daemon has exactly the capabilities granted, as uid 0.
    let daemon_pid = collector.0.main_pid();
    let granted = run
        .cap_add
        .iter()
        .map(|cap| stand_ins.get(cap).unwrap_or(cap))
        .fold(0u64, |mask, cap| mask | 1 << capability_number(cap));
    assert_eq!(effective_caps(daemon_pid), granted, "CapEff of the daemon");

    // A process in another container: its host PID names that container, and Docker's name
    // for it (the Docker socket is mounted).
    let peer = Container::run("collector-image-peer", &[]);
    let pid = peer.main_pid();
    let answer = wait_for(
        "the peer's name in the lookup",
        Duration::from_secs(20),
        || {
            let response = http::get(&socket, &format!("/v1/pid/{pid}"));
            assert_eq!(response.status, 200, "GET /v1/pid/{pid}: {}", response.body);
            let answer = response.json();
            (answer["name"] == peer.name()).then_some(answer)
        },
    );
    assert_eq!(answer["container_id"], peer.id(), "{answer}");
    assert_eq!(answer["runtime"], "docker", "{answer}");
    assert_eq!(answer["source"], "ebpf", "{answer}");
    assert_eq!(answer["exited"], false, "{answer}");
    assert_eq!(answer["image"], docker::image(), "{answer}");

    // The metrics port, as the probes and the Service reach it: the container's address.
    let ip = collector.0.inspect("{{.NetworkSettings.IPAddress}}");
    let addr = format!(
        "{ip}:{}",
        port_of(env_value(daemonset, "COLLECTOR_METRICS_ADDR"))
    );
    let healthz = http_get(&addr, "/healthz", &[]).expect("GET /healthz on the metrics port");
    assert_eq!(healthz.status, 200, "{}", healthz.text());
    let metrics = http_get(&addr, "/metrics", &[]).expect("GET /metrics");
    assert_eq!(metrics.status, 200);
    let text = metrics.text();
    let cpu = container_samples(&text, "container_cpu_usage_seconds_total", peer.name());
    assert_eq!(cpu.len(), 1, "one CPU series for the peer");
    assert!(cpu[0] >= 0.0, "{cpu:?}");
    let working_set = container_samples(&text, "container_memory_working_set_bytes", peer.name());
    assert!(
        working_set.len() == 1 && working_set[0] > 0.0,
        "{working_set:?}"
    );
    let processes = container_samples(&text, "container_processes", peer.name());
    assert_eq!(processes, [1.0], "the peer runs one process");
}
