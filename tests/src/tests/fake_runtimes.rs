//! Runtimes that cannot run here, against loopback fakes serving their documented payloads:
//! ECS Fargate's task metadata v4 (`/task`, `/task/stats`, as in AWS's "Task metadata v4
//! examples for tasks on Fargate") and the kubelet's `/pods` (a core/v1 `PodList`), over
//! HTTP and HTTPS (a CA and a kubelet certificate made by `openssl` in the test). The
//! daemon lists and answers what they tell, keeps answering when they fail (5xx, malformed
//! JSON, too slow), logs the outage once and recovers.
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{
    daemon::Daemon,
    fake_api::{FakeApi, Reply},
    is_root, require,
};

const TIMEOUT: Duration = Duration::from_secs(30);
const TASK_ID: &str = "cd189a933e5849daa93386466019ab50";
const CURL_ID: &str = "cd189a933e5849daa93386466019ab50-2495160603";
pub(super) const DOWN_LOG: &str = "runtime API down";
pub(super) const BACK_LOG: &str = "runtime API answers again";

pub(super) fn eventually<T>(
    daemon: &Daemon,
    what: &str,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match check() {
            Ok(value) => return value,
            Err(last) if Instant::now() > deadline => panic!(
                "timed out waiting for {what} (last: {last}); the daemon's log:\n{}",
                daemon.log()
            ),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// `/task` of a Fargate task with one container (AWS's v4 Fargate example, trimmed of
/// network details it does not change).
#[expect(
    clippy::unreadable_literal,
    reason = "numbers as AWS's documented example writes them"
)]
fn task() -> Value {
    json!({
        "Cluster": "arn:aws:ecs:us-west-2:111122223333:cluster/default",
        "TaskARN": format!("arn:aws:ecs:us-west-2:111122223333:task/default/{TASK_ID}"),
        "Family": "curltest",
        "Revision": "26",
        "DesiredStatus": "RUNNING",
        "KnownStatus": "RUNNING",
        "Limits": { "CPU": 0.25, "Memory": 512 },
        "PullStartedAt": "2020-10-02T00:43:06.202617438Z",
        "PullStoppedAt": "2020-10-02T00:43:06.31288465Z",
        "AvailabilityZone": "us-west-2d",
        "LaunchType": "FARGATE",
        "Containers": [{
            "DockerId": CURL_ID,
            "Name": "curl",
            "DockerName": "curl",
            "Image": "111122223333.dkr.ecr.us-west-2.amazonaws.com/curltest:latest",
            "ImageID": "sha256:25f3695bedfb454a50f12d127839a68ad3caf91e451c1da073db34c542c4d2cb",
            "Labels": {
                "com.amazonaws.ecs.cluster": "arn:aws:ecs:us-west-2:111122223333:cluster/default",
                "com.amazonaws.ecs.container-name": "curl",
                "com.amazonaws.ecs.task-arn": format!("arn:aws:ecs:us-west-2:111122223333:task/default/{TASK_ID}"),
                "com.amazonaws.ecs.task-definition-family": "curltest",
                "com.amazonaws.ecs.task-definition-version": "26"
            },
            "DesiredStatus": "RUNNING",
            "KnownStatus": "RUNNING",
            "Limits": { "CPU": 10, "Memory": 128 },
            "CreatedAt": "2020-10-02T00:43:06.326590752Z",
            "StartedAt": "2020-10-02T00:43:06.767535449Z",
            "Type": "NORMAL",
            "LogDriver": "awslogs",
            "ContainerARN": "arn:aws:ecs:us-west-2:111122223333:container/05966557-f16c-49cb-9352-24b3a0dcd0e1",
            "Networks": [{
                "NetworkMode": "awsvpc",
                "IPv4Addresses": ["10.0.0.108"],
                "AttachmentIndex": 0,
                "MACAddress": "0e:9e:32:c7:48:85",
                "IPv4SubnetCIDRBlock": "10.0.0.0/24",
                "PrivateDNSName": "ip-10-0-0-108.us-west-2.compute.internal",
                "SubnetGatewayIpv4Address": "10.0.0.1/24"
            }]
        }],
        "ClockDrift": { "ClockErrorBound": 0.5458234999999999, "ReferenceTimestamp": "2021-09-07T16:57:44Z", "ClockSynchronizationStatus": "SYNCHRONIZED" },
        "EphemeralStorageMetrics": { "Utilized": 261, "Reserved": 20496 }
    })
}

/// `/task/stats`: Docker Engine stats per `DockerId`; the memory limit is Docker's "none"
/// (so the task's 512 MiB applies).
#[expect(
    clippy::unreadable_literal,
    reason = "numbers as AWS's documented example writes them"
)]
fn task_stats(total_usage: u64) -> Value {
    json!({
        CURL_ID: {
            "read": "2020-10-02T00:51:13.410254284Z",
            "preread": "2020-10-02T00:51:12.406202398Z",
            "pids_stats": { "current": 3 },
            "blkio_stats": {
                "io_service_bytes_recursive": [
                    { "major": 202, "minor": 26368, "op": "Read", "value": 638976 },
                    { "major": 202, "minor": 26368, "op": "Write", "value": 0 },
                    { "major": 202, "minor": 26368, "op": "Sync", "value": 638976 },
                    { "major": 202, "minor": 26368, "op": "Async", "value": 0 },
                    { "major": 202, "minor": 26368, "op": "Total", "value": 638976 }
                ],
                "io_serviced_recursive": [
                    { "major": 202, "minor": 26368, "op": "Read", "value": 12 },
                    { "major": 202, "minor": 26368, "op": "Write", "value": 0 },
                    { "major": 202, "minor": 26368, "op": "Total", "value": 12 }
                ],
                "io_queue_recursive": [], "io_service_time_recursive": [], "io_wait_time_recursive": [],
                "io_merged_recursive": [], "io_time_recursive": [], "sectors_recursive": []
            },
            "num_procs": 0,
            "storage_stats": {},
            "cpu_stats": {
                "cpu_usage": {
                    "total_usage": total_usage,
                    "percpu_usage": [182359190, 178608875],
                    "usage_in_kernelmode": 40000000,
                    "usage_in_usermode": 290000000
                },
                "system_cpu_usage": 3951680000000u64,
                "online_cpus": 2,
                "throttling_data": { "periods": 0, "throttled_periods": 0, "throttled_time": 0 }
            },
            "precpu_stats": {
                "cpu_usage": { "total_usage": 360968065, "percpu_usage": [182359190, 178608875], "usage_in_kernelmode": 40000000, "usage_in_usermode": 290000000 },
                "system_cpu_usage": 3949670000000u64, "online_cpus": 2,
                "throttling_data": { "periods": 0, "throttled_periods": 0, "throttled_time": 0 }
            },
            "memory_stats": {
                "usage": 1806336,
                "max_usage": 6299648,
                "stats": {
                    "active_anon": 606208, "active_file": 0, "cache": 0, "dirty": 0,
                    "hierarchical_memory_limit": 134217728, "hierarchical_memsw_limit": 268435456,
                    "inactive_anon": 0, "inactive_file": 0, "mapped_file": 0, "pgfault": 4185,
                    "pgmajfault": 0, "pgpgin": 2926, "pgpgout": 2778, "rss": 606208,
                    "rss_huge": 0, "total_cache": 0, "total_rss": 606208, "unevictable": 0, "writeback": 0
                },
                "limit": 9223372036854771712u64
            },
            "name": "curl",
            "id": CURL_ID,
            "networks": {
                "eth1": {
                    "rx_bytes": 2398415937u64, "rx_packets": 1898631, "rx_errors": 0, "rx_dropped": 0,
                    "tx_bytes": 1259037719, "tx_packets": 428002, "tx_errors": 0, "tx_dropped": 0
                }
            },
            "network_rate_stats": { "rx_bytes_per_sec": 43.315, "tx_bytes_per_sec": 63.358 }
        }
    })
}

pub(super) fn start_daemon(args: &[&str]) -> Daemon {
    let mut all = vec![
        "--docker-socket",
        "none",
        "--containerd-socket",
        "none",
        "--podman-socket",
        "none",
        "--cri-socket",
        "none",
        "--crio-socket",
        "none",
        "--runtime-poll-interval",
        "1",
        "--runtime-timeout",
        "2",
        "--container-labels",
        "com.amazonaws.ecs.container-name,app",
    ];
    all.extend_from_slice(args);
    Daemon::start(&all)
}

pub(super) fn listed(daemon: &Daemon, id: &str) -> Result<Value, String> {
    let response = daemon.get("/v1/containers");
    let list = response.json();
    list.as_array()
        .and_then(|l| l.iter().find(|c| c["container_id"] == id).cloned())
        .ok_or_else(|| format!("{id} not listed: {}", response.body))
}

pub(super) fn runtime_up(daemon: &Daemon, runtime: &str) -> Option<String> {
    let prefix = format!("collector_runtime_up{{runtime=\"{runtime}\"}} ");
    daemon
        .get("/metrics")
        .body
        .lines()
        .find_map(|l| l.strip_prefix(&prefix).map(str::to_owned))
}

pub(super) fn stats(daemon: &Daemon, id: &str) -> (u16, Value) {
    let r = daemon.get(&format!("/v1/containers/{id}/stats"));
    let body = serde_json::from_str(&r.body).unwrap_or(Value::Null);
    (r.status, body)
}

#[test]
fn ecs_fargate_task_metadata() {
    if !require("root", is_root()) {
        return;
    }
    let fake = FakeApi::start();
    let base = format!("/v4/{TASK_ID}-2495160603");
    fake.set(&format!("{base}/task"), Reply::json(&task()));
    fake.set(
        &format!("{base}/task/stats"),
        Reply::json(&task_stats(360_968_065)),
    );
    let uri = format!("http://{}{base}", fake.addr());
    let daemon = start_daemon(&["--ecs-metadata-uri", &uri]);

    let entry = eventually(&daemon, "the task's container listed", || {
        listed(&daemon, CURL_ID)
    });
    println!("listed: {entry}");
    assert_eq!(entry["runtime"], "ecsfargate");
    assert_eq!(entry["name"], "curl");
    assert_eq!(
        entry["image"],
        "111122223333.dkr.ecr.us-west-2.amazonaws.com/curltest:latest"
    );
    assert_eq!(
        entry["labels"],
        json!({"com.amazonaws.ecs.container-name": "curl"})
    );
    assert_eq!(entry["cgroups"], json!([]));

    // The collector joins the provider at the registry's next retry (every 2 s) after the
    // endpoint first answered.
    let s = eventually(&daemon, "the task's stats", || {
        match stats(&daemon, CURL_ID) {
            (200, s) => Ok(s),
            other => Err(format!("{other:?}")),
        }
    });
    println!("stats: {s}");
    assert_eq!(s["cpu"]["total"], 360_968_065);
    assert_eq!(s["cpu"]["system"], 40_000_000);
    assert_eq!(s["cpu"]["user"], 290_000_000);
    // The task's 0.25 vCPU in percent of one CPU.
    assert_eq!(s["cpu"]["limit"], 25.0);
    assert_eq!(s["memory"]["usage_total"], 1_806_336);
    assert_eq!(s["memory"]["rss"], 606_208);
    assert_eq!(s["memory"]["cache"], 0);
    assert_eq!(s["memory"]["pgfault"], 4185);
    // Docker's "no limit": the task's 512 MiB.
    assert_eq!(s["memory"]["limit"], 512 * 1024 * 1024);
    assert_eq!(s["memory"]["working_set"], Value::Null);
    assert_eq!(s["io"]["read_bytes"], 638_976);
    assert_eq!(s["io"]["write_bytes"], 0);
    assert_eq!(s["io"]["read_operations"], 12);
    assert_eq!(s["pid"]["thread_count"], 3);
    assert_eq!(s["network"]["bytes_rcvd"], 2_398_415_937u64);
    assert_eq!(s["network"]["bytes_sent"], 1_259_037_719);
    assert_eq!(
        s["network"]["interfaces"]["eth1"]["packets_rcvd"],
        1_898_631
    );
    assert_eq!(s["runtime"], "ecsfargate");
    assert_eq!(s["sources"]["cpu"], "ecsfargate");
    assert_eq!(s["sources"]["network"], "ecsfargate");
    assert_eq!(runtime_up(&daemon, "ecsfargate").as_deref(), Some("1"));

    // A 500, malformed JSON, then an answer slower than --runtime-timeout: down, the rest of
    // the API answers, stats of the task are an error, the outage is logged once.
    fake.set(
        &format!("{base}/task/stats"),
        Reply::status(500, "internal error"),
    );
    eventually(&daemon, "ecsfargate down", || {
        match runtime_up(&daemon, "ecsfargate") {
            Some(v) if v == "0" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    let (status, body) = stats(&daemon, CURL_ID);
    assert_eq!(status, 500, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("ecsfargate is down"),
        "{body}"
    );
    assert_eq!(daemon.get("/healthz").status, 200);
    fake.set(
        &format!("{base}/task/stats"),
        Reply::status(200, "{\"truncated"),
    );
    std::thread::sleep(Duration::from_secs(3));
    let mut slow = Reply::json(&task_stats(400_000_000));
    slow.delay = Duration::from_secs(4);
    fake.set(&format!("{base}/task/stats"), slow);
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(runtime_up(&daemon, "ecsfargate").as_deref(), Some("0"));
    assert_eq!(
        listed(&daemon, CURL_ID).unwrap()["name"],
        "curl",
        "names stay while down"
    );
    let log = daemon.log();
    assert_eq!(log.matches(DOWN_LOG).count(), 1, "{log}");
    assert!(log.contains("answered 500 Internal Server Error"), "{log}");

    // Back: new values.
    fake.set(
        &format!("{base}/task/stats"),
        Reply::json(&task_stats(400_000_000)),
    );
    let s = eventually(&daemon, "the new stats", || match stats(&daemon, CURL_ID) {
        (200, s) if s["cpu"]["total"] == 400_000_000 => Ok(s),
        other => Err(format!("{other:?}")),
    });
    assert_eq!(s["memory"]["limit"], 512 * 1024 * 1024);
    assert_eq!(daemon.log().matches(BACK_LOG).count(), 1);
    println!("ecsfargate: listed, stats, down on 500/malformed/slow with one log line, back");
}

pub(super) const POD_UID: &str = "6f2c1d4e-8a9b-4c3d-9e2f-1a2b3c4d5e6f";
pub(super) const APP_ID: &str = "4c1dbd8e7f2a3b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c";
const INIT_ID: &str = "9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b";

/// `/pods`: a core/v1 `PodList` with one running pod (an init container that ran, an app
/// container), as the kubelet serves it.
pub(super) fn pods() -> Value {
    json!({
        "kind": "PodList",
        "apiVersion": "v1",
        "metadata": {},
        "items": [{
            "metadata": {
                "name": "web-0",
                "namespace": "shop",
                "uid": POD_UID,
                "resourceVersion": "1234",
                "creationTimestamp": "2024-05-01T10:00:00Z",
                "labels": { "app": "web", "pod-template-hash": "5d4f8c7b9" },
                "annotations": { "kubernetes.io/config.seen": "2024-05-01T10:00:00.000000000Z", "kubernetes.io/config.source": "api" },
                "ownerReferences": [{ "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d4f8c7b9", "uid": "0b1c2d3e-4f5a-6b7c-8d9e-0f1a2b3c4d5e", "controller": true, "blockOwnerDeletion": true }]
            },
            "spec": {
                "initContainers": [{ "name": "migrate", "image": "registry.example/migrate:1.0", "resources": {} }],
                "containers": [{ "name": "app", "image": "registry.example/web:2.3", "ports": [{ "containerPort": 8080, "protocol": "TCP" }], "resources": { "limits": { "cpu": "500m", "memory": "256Mi" } } }],
                "restartPolicy": "Always",
                "nodeName": "node-1",
                "serviceAccountName": "default"
            },
            "status": {
                "phase": "Running",
                "conditions": [{ "type": "Ready", "status": "True", "lastProbeTime": null, "lastTransitionTime": "2024-05-01T10:00:05Z" }],
                "hostIP": "10.0.0.5",
                "podIP": "10.244.1.7",
                "podIPs": [{ "ip": "10.244.1.7" }],
                "startTime": "2024-05-01T10:00:00Z",
                "initContainerStatuses": [{
                    "name": "migrate",
                    "state": { "terminated": { "exitCode": 0, "reason": "Completed", "startedAt": "2024-05-01T10:00:01Z", "finishedAt": "2024-05-01T10:00:02Z", "containerID": format!("containerd://{INIT_ID}") } },
                    "lastState": {}, "ready": true, "restartCount": 0,
                    "image": "registry.example/migrate:1.0",
                    "imageID": "registry.example/migrate@sha256:1111111111111111111111111111111111111111111111111111111111111111",
                    "containerID": format!("containerd://{INIT_ID}")
                }],
                "containerStatuses": [{
                    "name": "app",
                    "state": { "running": { "startedAt": "2024-05-01T10:00:03Z" } },
                    "lastState": {}, "ready": true, "restartCount": 0,
                    "image": "registry.example/web:2.3",
                    "imageID": "registry.example/web@sha256:2222222222222222222222222222222222222222222222222222222222222222",
                    "containerID": format!("containerd://{APP_ID}"),
                    "started": true
                }],
                "qosClass": "Burstable"
            }
        }]
    })
}

pub(super) fn pod_lookup(daemon: &Daemon, name: &str, init: bool) -> (u16, Value) {
    let query = if init { "?init=true" } else { "" };
    let r = daemon.get(&format!("/v1/pod/{POD_UID}/{name}{query}"));
    let body = serde_json::from_str(&r.body).unwrap_or(Value::Null);
    (r.status, body)
}

#[test]
fn kubelet_pods() {
    if !require("root", is_root()) {
        return;
    }
    let fake = FakeApi::start();
    fake.set("/pods", Reply::json(&pods()));
    let dir = tempfile::tempdir().expect("temp dir");
    let token = dir.path().join("token");
    std::fs::write(&token, "test-token-123\n").expect("write the token");
    let url = format!("http://{}", fake.addr());
    let daemon = start_daemon(&[
        "--kubelet-url",
        &url,
        "--kubelet-token-file",
        token.to_str().unwrap(),
    ]);

    let (status, app) = eventually(&daemon, "the pod's app container", || {
        match pod_lookup(&daemon, "app", false) {
            (200, body) => Ok((200, body)),
            other => Err(format!("{other:?}")),
        }
    });
    println!("pod lookup: {app}");
    assert_eq!(status, 200);
    assert_eq!(app["container_id"], APP_ID);
    assert_eq!(app["source"], "kubelet");
    assert_eq!(app["name"], "app");
    assert_eq!(app["image"], "registry.example/web:2.3");
    assert_eq!(app["pod_name"], "web-0");
    assert_eq!(app["namespace"], "shop");
    assert_eq!(app["container_name"], "app");
    assert_eq!(app["labels"], json!({"app": "web"}));
    let (status, init) = pod_lookup(&daemon, "migrate", true);
    assert_eq!(
        (status, &init["container_id"]),
        (200, &json!(INIT_ID)),
        "{init}"
    );
    // An init container is not found among the app containers, nor the reverse.
    assert_eq!(pod_lookup(&daemon, "migrate", false).0, 404);
    assert_eq!(pod_lookup(&daemon, "app", true).0, 404);
    assert_eq!(pod_lookup(&daemon, "nope", false).0, 404);
    assert_eq!(
        daemon
            .get(&format!("/v1/pod/{POD_UID}/app?init=maybe"))
            .status,
        400
    );
    // The kubelet's containers run in a runtime on the node: not listed without cgroups.
    assert!(listed(&daemon, APP_ID).is_err());
    let sent = fake.received();
    assert!(!sent.is_empty());
    for request in &sent {
        assert_eq!(request.path, "/pods");
        assert_eq!(
            request.headers.get("authorization").map(String::as_str),
            Some("Bearer test-token-123")
        );
    }

    // 401 (token refused), then malformed JSON: down, logged once; pod answers stay.
    fake.set("/pods", Reply::status(401, "Unauthorized"));
    eventually(&daemon, "kubelet down", || {
        match runtime_up(&daemon, "kubelet") {
            Some(v) if v == "0" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    fake.set(
        "/pods",
        Reply::status(200, "{\"kind\": \"PodList\", \"items\": [{"),
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(pod_lookup(&daemon, "app", false).0, 200);
    let log = daemon.log();
    assert_eq!(log.matches(DOWN_LOG).count(), 1, "{log}");
    assert!(log.contains("answered 401 Unauthorized"), "{log}");

    // Back, and the app container restarted with a new id.
    let mut pods = pods();
    let new_id = APP_ID.replace("4c1d", "5d2e");
    pods["items"][0]["status"]["containerStatuses"][0]["containerID"] =
        json!(format!("containerd://{new_id}"));
    fake.set("/pods", Reply::json(&pods));
    eventually(
        &daemon,
        "the restarted container's id",
        || match pod_lookup(&daemon, "app", false) {
            (200, body) if body["container_id"] == new_id.as_str() => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    assert_eq!(runtime_up(&daemon, "kubelet").as_deref(), Some("1"));
    println!(
        "kubelet: pod lookups, bearer token sent, down on 401/malformed with one log line, back"
    );
}

#[test]
fn absent_runtimes_fail_for_good_at_once() {
    if !require("root", is_root()) {
        return;
    }
    // No ECS variable, no NODE_NAME, no token: both absent, not retried, API answers.
    let daemon = start_daemon(&["--kubelet-token-file", "/nonexistent/token"]);
    assert_eq!(runtime_up(&daemon, "ecsfargate").as_deref(), Some("0"));
    assert_eq!(runtime_up(&daemon, "kubelet").as_deref(), Some("0"));
    let r = daemon.get(&format!("/v1/pod/{POD_UID}/app"));
    assert_eq!(r.status, 503, "{}", r.body);
    let log = daemon.log();
    assert!(
        log.contains("ECS_CONTAINER_METADATA_URI_V4 is not set"),
        "{log}"
    );
    assert!(!log.contains(DOWN_LOG), "{log}");
    // Not a Diego cell: no Garden socket at the default path.
    assert_eq!(runtime_up(&daemon, "garden").as_deref(), Some("0"));
    assert!(
        log.contains("no Garden socket at /var/vcap/data/garden/garden.sock"),
        "{log}"
    );
}

/// A CA, a kubelet serving certificate it signed for 127.0.0.1 (as a kubelet's serving
/// certificate names the node's address) and another CA that signed nothing the kubelet
/// serves, made by `openssl` in `dir`: `(ca.crt, kubelet.crt, kubelet.key, other-ca.crt)`.
fn kubelet_certificates(dir: &std::path::Path) -> [std::path::PathBuf; 4] {
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    for (name, cn) in [("ca", "test kubelet CA"), ("other-ca", "another CA")] {
        let (key, crt, subject) = (
            format!("{name}.key"),
            format!("{name}.crt"),
            format!("/CN={cn}"),
        );
        let mut args = vec!["req", "-x509"];
        args.extend(ec);
        args.extend([
            "-keyout", &key, "-out", &crt, "-days", "1", "-subj", &subject,
        ]);
        openssl(&args);
    }
    let mut args = vec!["req"];
    args.extend(ec);
    args.extend([
        "-keyout",
        "kubelet.key",
        "-out",
        "kubelet.csr",
        "-subj",
        "/CN=node-1",
    ]);
    openssl(&args);
    std::fs::write(
        dir.join("kubelet.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:node-1\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write the extensions");
    openssl(&[
        "x509",
        "-req",
        "-in",
        "kubelet.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "kubelet.ext",
        "-out",
        "kubelet.crt",
    ]);
    ["ca.crt", "kubelet.crt", "kubelet.key", "other-ca.crt"].map(|f| dir.join(f))
}

#[test]
fn kubelet_over_https() {
    if !require("root", is_root()) || !require("openssl", which("openssl")) {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let [ca, cert, key, other_ca] = kubelet_certificates(dir.path());
    let token = dir.path().join("token");
    std::fs::write(&token, "test-token-456\n").expect("write the token");
    let fake = FakeApi::start_tls(&cert, &key);
    fake.set("/pods", Reply::json(&pods()));
    let url = format!("https://{}", fake.addr());
    let kubelet = |more: &[&str]| {
        let mut args = vec![
            "--kubelet-url",
            url.as_str(),
            "--kubelet-token-file",
            token.to_str().unwrap(),
        ];
        args.extend_from_slice(more);
        start_daemon(&args)
    };
    let found = |daemon: &Daemon| {
        eventually(
            daemon,
            "the pod's app container over HTTPS",
            || match pod_lookup(daemon, "app", false) {
                (200, body) => Ok(body),
                other => Err(format!("{other:?}")),
            },
        )
    };

    // The cluster's CA: lookups work, the token went over TLS.
    let daemon = kubelet(&["--kubelet-ca-file", ca.to_str().unwrap()]);
    let app = found(&daemon);
    assert_eq!(app["container_id"], APP_ID);
    assert_eq!(app["source"], "kubelet");
    assert_eq!(app["pod_name"], "web-0");
    assert_eq!(runtime_up(&daemon, "kubelet").as_deref(), Some("1"));
    let sent = fake.received();
    assert!(!sent.is_empty());
    assert!(sent.iter().all(|r| r.path == "/pods"
        && r.headers.get("authorization").map(String::as_str) == Some("Bearer test-token-456")));
    drop(daemon);

    // A CA that did not sign the kubelet's certificate: down from the start with the TLS
    // error logged once, pod lookups unavailable (503), the daemon answers.
    let before = fake.received().len();
    let daemon = kubelet(&["--kubelet-ca-file", other_ca.to_str().unwrap()]);
    eventually(&daemon, "the refused certificate logged", || {
        let log = daemon.log();
        if log.contains(DOWN_LOG) {
            Ok(log)
        } else {
            Err("not yet".into())
        }
    });
    std::thread::sleep(Duration::from_secs(3));
    let log = daemon.log();
    assert_eq!(log.matches(DOWN_LOG).count(), 1, "{log}");
    assert!(log.contains(&format!("TLS handshake with {url}")), "{log}");
    assert!(
        log.contains("invalid peer certificate: UnknownIssuer"),
        "{log}"
    );
    assert_eq!(runtime_up(&daemon, "kubelet").as_deref(), Some("0"));
    let (status, body) = pod_lookup(&daemon, "app", false);
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("UnknownIssuer"),
        "{body}"
    );
    assert_eq!(daemon.get("/healthz").status, 200);
    // No request got through: the token was not sent to an unverified server.
    assert_eq!(fake.received().len(), before);
    drop(daemon);

    // Verification off: any certificate, with a warning.
    let daemon = kubelet(&[
        "--kubelet-ca-file",
        other_ca.to_str().unwrap(),
        "--kubelet-tls-verify=false",
    ]);
    assert_eq!(found(&daemon)["container_id"], APP_ID);
    assert!(
        daemon
            .log()
            .contains("the kubelet's certificate is not checked"),
        "{}",
        daemon.log()
    );
    println!(
        "kubelet over HTTPS: CA file verified, wrong CA refused (503, logged once), verify off"
    );
}

fn which(program: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}
