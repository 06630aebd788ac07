//! Cloud Foundry's Garden, which cannot run here, against a fake on a unix socket serving the
//! payloads of garden's API as its server writes them (`garden.ContainerInfoEntry` and
//! `garden.ContainerMetricsEntry` marshalled by Go's `encoding/json`): the daemon lists
//! Garden's containers, answers their stats in the API and in Prometheus, logs an outage
//! once and recovers.
use std::time::Duration;

use serde_json::{Value, json};

use super::fake_runtimes::{
    BACK_LOG, DOWN_LOG, eventually, listed, runtime_up, start_daemon, stats,
};
use crate::support::{
    fake_api::{FakeApi, Reply},
    is_root, require,
};

/// An app instance's container (Diego names it after the instance GUID) and a task's.
const APP_HANDLE: &str = "6b1d2e4f-7a8c-4b3d-5e6f-7a8b9c0d1e2f";
const TASK_HANDLE: &str = "3f2e1d0c-9b8a-4765-8432-10fedcba9876";
const APP_GUID: &str = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d";

/// `GET /containers/bulk_info` and `bulk_metrics`, the handles as garden's client encodes
/// them (Go's `url.Values`: the comma escaped).
fn bulk(route: &str) -> String {
    format!("/containers/{route}?handles={APP_HANDLE}%2C{TASK_HANDLE}")
}

/// `garden.ContainerInfo` of a Diego container, every field Go writes.
fn info(handle: &str, ip: &str, process: &str) -> Value {
    json!({
        "Info": {
            "State": "active",
            "Events": [],
            "HostIP": "10.255.0.1",
            "ContainerIP": ip,
            "ContainerIPv6": "",
            "ExternalIP": "10.0.16.7",
            "ContainerPath": format!("/var/vcap/data/garden/depot/{handle}"),
            "ProcessIDs": [process],
            "Properties": {
                "executor:owner": "executor",
                "executor:state": "created",
                "network.app_id": APP_GUID,
                "network.space_id": "5e6f7a8b-9c0d-4e1f-2a3b-4c5d6e7f8a9b",
                "network.policy_group_id": APP_GUID,
                "log_config": "{\"guid\":\"a1b2c3d4\",\"index\":0,\"source_name\":\"CELL\"}"
            },
            "MappedPorts": [{ "HostPort": 61001, "ContainerPort": 8080 }]
        },
        "Err": null
    })
}

/// `garden.Metrics`: `ContainerMemoryStat` with its JSON tags (cgroup v1 names) and
/// `TotalUsageTowardLimit`, the other stats with Go's field names; `Age` in ns.
#[expect(
    clippy::unreadable_literal,
    reason = "byte and nanosecond counts as garden writes them"
)]
fn metrics(cpu_usage: u64, network: bool) -> Value {
    json!({
        "Metrics": {
            "MemoryStat": {
                "active_anon": 150994944, "active_file": 25165824, "cache": 67108864,
                "hierarchical_memory_limit": 1073741824, "inactive_anon": 50331648,
                "inactive_file": 33554432, "mapped_file": 8388608, "pgfault": 123456,
                "pgmajfault": 12, "pgpgin": 65536, "pgpgout": 16384, "rss": 201326592,
                "total_active_anon": 150994944, "total_active_file": 25165824,
                "total_cache": 67108864, "total_inactive_anon": 50331648,
                "total_inactive_file": 33554432, "total_mapped_file": 8388608,
                "total_pgfault": 123456, "total_pgmajfault": 12, "total_pgpgin": 65536,
                "total_pgpgout": 16384, "total_rss": 201326592, "total_unevictable": 0,
                "unevictable": 0, "swap": 0, "hierarchical_memsw_limit": 2147483648u64,
                "total_swap": 4096, "TotalUsageTowardLimit": 268435456, "anon": 0, "file": 0,
                "swapcached": 0
            },
            "CPUStat": { "Usage": cpu_usage, "User": 4000000000u64, "System": 1000000000 },
            "DiskStat": {
                "TotalBytesUsed": 157286400, "TotalInodesUsed": 4096,
                "ExclusiveBytesUsed": 10485760, "ExclusiveInodesUsed": 256
            },
            "NetworkStat": if network { json!({ "RxBytes": 987654, "TxBytes": 123456 }) } else { Value::Null },
            "PidStat": { "Current": 12, "Max": 1024 },
            "Age": 3600000000000u64,
            "CPUEntitlement": 1800000000000u64
        },
        "Err": null
    })
}

fn serve(fake: &FakeApi, app_cpu: u64) {
    fake.set(
        "/containers",
        Reply::json(&json!({ "Handles": [APP_HANDLE, TASK_HANDLE] })),
    );
    fake.set(
        &bulk("bulk_info"),
        Reply::json(&json!({
            APP_HANDLE: info(APP_HANDLE, "10.255.12.3", "6f1e2d3c-4b5a-4968-8776-655443322110"),
            TASK_HANDLE: info(TASK_HANDLE, "10.255.12.4", "0a1b2c3d-4e5f-4a6b-8c7d-9e8f7a6b5c4d"),
        })),
    );
    fake.set(
        &bulk("bulk_metrics"),
        Reply::json(&json!({
            APP_HANDLE: metrics(app_cpu, true),
            TASK_HANDLE: metrics(7_000_000, false),
        })),
    );
}

/// The value of `family`'s series whose `name` label is `name` in a scrape of `/metrics`,
/// with the series' labels.
fn series(scrape: &str, family: &str, name: &str) -> Option<(String, f64)> {
    let prefix = format!("{family}{{");
    let needle = format!("name=\"{name}\"");
    scrape.lines().find_map(|line| {
        let rest = line.strip_prefix(&prefix)?;
        let (labels, value) = rest.rsplit_once("} ")?;
        labels
            .contains(&needle)
            .then(|| (labels.to_owned(), value.trim().parse().ok()))
            .and_then(|(l, v)| Some((l, v?)))
    })
}

#[test]
fn garden_containers() {
    if !require("root", is_root()) {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let socket = dir.path().join("garden.sock");
    let fake = FakeApi::start_unix(&socket);
    serve(&fake, 5_123_456_789);
    let daemon = start_daemon(&[
        "--garden-socket",
        socket.to_str().unwrap(),
        "--container-labels",
        "network.app_id",
    ]);

    let entry = eventually(&daemon, "Garden's app container listed", || {
        listed(&daemon, APP_HANDLE)
    });
    println!("listed: {entry}");
    assert_eq!(entry["runtime"], "garden");
    assert_eq!(entry["name"], APP_HANDLE);
    // Properties are labels, allow-listed as any runtime's.
    assert_eq!(entry["labels"], json!({ "network.app_id": APP_GUID }));
    assert_eq!(entry["cgroups"], json!([]));
    assert_eq!(listed(&daemon, TASK_HANDLE).unwrap()["runtime"], "garden");

    let s = eventually(&daemon, "the app's stats", || {
        match stats(&daemon, APP_HANDLE) {
            (200, s) => Ok(s),
            other => Err(format!("{other:?}")),
        }
    });
    println!("stats: {s}");
    assert_eq!(s["runtime"], "garden");
    assert_eq!(s["cpu"]["total"], 5_123_456_789u64);
    assert_eq!(s["cpu"]["user"], 4_000_000_000u64);
    assert_eq!(s["cpu"]["system"], 1_000_000_000);
    assert_eq!(s["cpu"]["limit"], Value::Null);
    assert_eq!(s["memory"]["usage_total"], 268_435_456);
    assert_eq!(s["memory"]["limit"], 1_073_741_824);
    assert_eq!(s["memory"]["rss"], 201_326_592);
    assert_eq!(s["memory"]["cache"], 67_108_864);
    assert_eq!(s["memory"]["swap"], 4096);
    // Usage minus the inactive file cache.
    assert_eq!(s["memory"]["working_set"], 268_435_456 - 33_554_432);
    assert_eq!(s["memory"]["pgfault"], 123_456);
    assert_eq!(s["memory"]["pgmajfault"], 12);
    assert_eq!(s["pid"]["thread_count"], 12);
    assert_eq!(s["pid"]["thread_limit"], 1024);
    assert_eq!(s["network"]["bytes_rcvd"], 987_654);
    assert_eq!(s["network"]["bytes_sent"], 123_456);
    assert_eq!(s["sources"]["cpu"], "garden");
    assert_eq!(s["sources"]["network"], "garden");
    // A container without networking (`"NetworkStat": null`) has no network stats.
    let (status, task) = stats(&daemon, TASK_HANDLE);
    assert_eq!(status, 200, "{task}");
    assert_eq!(task["cpu"]["total"], 7_000_000);
    assert_eq!(task["network"], Value::Null, "{task}");

    // Prometheus: cAdvisor's families with the handle as the name and the allowed property.
    let scrape = daemon.get("/metrics").body;
    let (labels, cpu) = series(&scrape, "container_cpu_usage_seconds_total", APP_HANDLE)
        .unwrap_or_else(|| panic!("no CPU series for {APP_HANDLE}:\n{scrape}"));
    assert!((cpu - 5.123_456_789).abs() < 1e-9, "{cpu}");
    assert!(
        labels.contains(&format!("container_label_network_app_id=\"{APP_GUID}\"")),
        "{labels}"
    );
    let (_, memory) = series(&scrape, "container_memory_usage_bytes", APP_HANDLE).unwrap();
    assert!((memory - 268_435_456.0).abs() < 0.5, "{memory}");
    let (_, limit) = series(&scrape, "container_spec_memory_limit_bytes", APP_HANDLE).unwrap();
    assert!((limit - 1_073_741_824.0).abs() < 0.5, "{limit}");
    assert!(series(&scrape, "container_cpu_usage_seconds_total", TASK_HANDLE).is_some());
    assert_eq!(runtime_up(&daemon, "garden").as_deref(), Some("1"));

    // Garden goes away (its socket with it): down, logged once; names stay, stats are an
    // error, the rest of the API answers.
    drop(fake);
    eventually(&daemon, "garden down", || {
        match runtime_up(&daemon, "garden") {
            Some(v) if v == "0" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    std::thread::sleep(Duration::from_secs(3));
    let (status, body) = stats(&daemon, APP_HANDLE);
    assert_eq!(status, 500, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("garden is down"),
        "{body}"
    );
    assert_eq!(listed(&daemon, APP_HANDLE).unwrap()["name"], APP_HANDLE);
    assert_eq!(daemon.get("/healthz").status, 200);
    let log = daemon.log();
    assert_eq!(log.matches(DOWN_LOG).count(), 1, "{log}");
    // The outage line names the endpoint, whether the poll was refused or timed out.
    let down_line = log.lines().find(|l| l.contains(DOWN_LOG)).unwrap();
    assert!(
        down_line.contains(&format!("endpoint=unix://{}", socket.display())),
        "{down_line}"
    );

    // Back with new values.
    let fake = FakeApi::start_unix(&socket);
    serve(&fake, 6_000_000_000);
    let s = eventually(&daemon, "the new stats", || {
        match stats(&daemon, APP_HANDLE) {
            (200, s) if s["cpu"]["total"] == 6_000_000_000u64 => Ok(s),
            other => Err(format!("{other:?}")),
        }
    });
    assert_eq!(s["memory"]["limit"], 1_073_741_824);
    assert_eq!(daemon.log().matches(BACK_LOG).count(), 1);
    assert_eq!(runtime_up(&daemon, "garden").as_deref(), Some("1"));
    // Every request was one of garden's routes, with the handles encoded as its client does.
    let paths: std::collections::BTreeSet<String> =
        fake.received().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths,
        [
            "/containers".to_owned(),
            bulk("bulk_info"),
            bulk("bulk_metrics")
        ]
        .into_iter()
        .collect()
    );
    println!("garden: listed, stats in the API and Prometheus, down once logged, back");
}
