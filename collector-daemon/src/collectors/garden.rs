//! Cloud Foundry's Garden containers (a Diego cell's app instances) from the Garden API, HTTP
//! over a unix socket (`/var/vcap/data/garden/garden.sock`) or TCP: `GET /containers` lists
//! the handles (`{"Handles": [...]}`), `GET /containers/bulk_info?handles=h1,h2` and
//! `GET /containers/bulk_metrics?handles=h1,h2` map each handle to `{"Info"|"Metrics": ...,
//! "Err": null|{...}}` (garden's `ContainerInfoEntry` and `ContainerMetricsEntry`).
//!
//! A handle is the container id (Garden names its cgroups after it, below `/garden`); its
//! properties are its labels (exported only where `--container-labels` allows). Stats come
//! from `Metrics`: `CPUStat` (ns), `MemoryStat` (cgroup v1 names; the hierarchical `total_*`
//! values), `PidStat` and `NetworkStat` (bytes only; `null` without networking). `DiskStat`
//! is disk space, not IO, and `CPUEntitlement` a cumulative time, not a limit: both left out.
use std::{
    collections::{BTreeMap, HashMap},
    fmt::Write as _,
    sync::Arc,
    time::SystemTime,
};

use serde::Deserialize;

use super::{
    metadata::{ContainerMeta, SourceState},
    remote::{self, Endpoint, HttpError, PollTiming, RemoteContainer, RemoteSource, Snapshot},
};
use crate::provider::{ContainerStats, CpuStats, MemoryStats, NetworkStats, PidStats};

/// The collector's id.
pub const ID: &str = "garden";
/// Where a Diego cell's Garden listens (garden's `bind_socket`).
pub const DEFAULT_SOCKET: &str = "/var/vcap/data/garden/garden.sock";
/// A memory limit from 2^62 is the cgroup's "no limit" (v1 writes `i64::MAX` rounded to
/// pages).
const UNSET_MEMORY_LIMIT: u64 = 1 << 62;

/// `GET /containers`.
#[derive(Debug, Default, Deserialize)]
pub struct List {
    #[serde(rename = "Handles", default)]
    pub handles: Option<Vec<String>>,
}

/// garden's `ContainerInfoEntry`.
#[derive(Debug, Default, Deserialize)]
pub struct InfoEntry {
    #[serde(rename = "Info", default)]
    pub info: ContainerInfo,
    #[serde(rename = "Err", default)]
    pub err: Option<GardenError>,
}

/// garden's `ContainerInfo` (the fields used).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerInfo {
    /// "active" or "stopped".
    pub state: Option<String>,
    #[serde(default)]
    pub properties: Option<BTreeMap<String, String>>,
}

/// garden's marshalled `Error`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GardenError {
    #[serde(default)]
    pub message: String,
}

/// garden's `ContainerMetricsEntry`.
#[derive(Debug, Default, Deserialize)]
pub struct MetricsEntry {
    #[serde(rename = "Metrics", default)]
    pub metrics: Metrics,
    #[serde(rename = "Err", default)]
    pub err: Option<GardenError>,
}

/// garden's `Metrics` (the fields used).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Metrics {
    #[serde(default)]
    pub memory_stat: MemoryStat,
    #[serde(rename = "CPUStat", default)]
    pub cpu_stat: CpuStat,
    #[serde(default)]
    pub network_stat: Option<NetworkStat>,
    #[serde(default)]
    pub pid_stat: PidStat,
}

/// garden's `ContainerMemoryStat` (the fields used: its JSON names are cgroup v1's, except
/// `TotalUsageTowardLimit`).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct MemoryStat {
    pub hierarchical_memory_limit: u64,
    pub total_rss: u64,
    pub total_cache: u64,
    pub total_swap: u64,
    pub total_inactive_file: u64,
    pub total_pgfault: u64,
    pub total_pgmajfault: u64,
    /// Usage as the limit counts it (nested containers included).
    #[serde(rename = "TotalUsageTowardLimit")]
    pub total_usage_toward_limit: u64,
}

/// garden's `ContainerCPUStat`: ns.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CpuStat {
    pub usage: u64,
    pub user: u64,
    pub system: u64,
}

/// garden's `ContainerNetworkStat`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NetworkStat {
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

/// garden's `ContainerPidStat`: `Max` 0 is no limit.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PidStat {
    pub current: u64,
    pub max: u64,
}

/// The endpoint `--garden-socket` names ("none": disabled); a unix socket that does not
/// exist is absent: not a Diego cell, not retried.
pub fn endpoint(flag: &str) -> Result<Endpoint, SourceState> {
    if matches!(flag, "none" | "") {
        return Err(SourceState::Disabled);
    }
    let endpoint = Endpoint::parse(flag).map_err(|e| SourceState::Absent {
        reason: format!("Garden endpoint {e}"),
    })?;
    if let Endpoint::Unix { path } = &endpoint
        && !path.exists()
    {
        return Err(SourceState::Absent {
            reason: format!("no Garden socket at {}: not a Diego cell", path.display()),
        });
    }
    Ok(endpoint)
}

/// Polls Garden until aborted.
pub async fn watch(source: Arc<RemoteSource>, endpoint: Endpoint, timing: PollTiming) {
    remote::poll(source, &endpoint, timing, || fetch(&endpoint, timing)).await;
}

async fn fetch(endpoint: &Endpoint, timing: PollTiming) -> Result<Snapshot, HttpError> {
    let list: List = remote::get_json(endpoint, "/containers", timing.timeout).await?;
    let handles = list.handles.unwrap_or_default();
    if handles.is_empty() {
        return Ok(Snapshot::default());
    }
    let query = handles_query(&handles);
    let info: HashMap<String, InfoEntry> = remote::get_json(
        endpoint,
        &format!("/containers/bulk_info?{query}"),
        timing.timeout,
    )
    .await?;
    let metrics: HashMap<String, MetricsEntry> = remote::get_json(
        endpoint,
        &format!("/containers/bulk_metrics?{query}"),
        timing.timeout,
    )
    .await?;
    Ok(snapshot(info, metrics, SystemTime::now()))
}

/// `handles=h1%2Ch2`: the comma-joined handles, URL-encoded as garden's client does (Go's
/// `url.Values`).
pub fn handles_query(handles: &[String]) -> String {
    let joined = handles.join(",");
    let mut query = String::from("handles=");
    for byte in joined.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            query.push(char::from(byte));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(query, "%{byte:02X}");
        }
    }
    query
}

/// Every container Garden described (an entry with `Err` is gone or broken: left out),
/// with its metrics when Garden had them.
pub fn snapshot<S: std::hash::BuildHasher>(
    info: HashMap<String, InfoEntry, S>,
    mut metrics: HashMap<String, MetricsEntry, S>,
    now: SystemTime,
) -> Snapshot {
    let containers = info
        .into_iter()
        .filter(|(_, entry)| entry.err.is_none())
        .map(|(handle, entry)| {
            let metrics = metrics
                .remove(&handle)
                .filter(|m| m.err.is_none())
                .map(|m| m.metrics);
            let remote = RemoteContainer {
                meta: ContainerMeta {
                    name: Some(handle.clone()),
                    labels: entry.info.properties.unwrap_or_default(),
                    ..ContainerMeta::default()
                },
                stats: metrics.as_ref().map(|m| container_stats(m, now)),
                network: metrics.as_ref().and_then(|m| network_stats(m, now)),
                pod: None,
            };
            (handle, remote)
        })
        .collect();
    Snapshot { containers }
}

/// One container's stats.
pub fn container_stats(m: &Metrics, now: SystemTime) -> ContainerStats {
    let mem = &m.memory_stat;
    let usage = mem.total_usage_toward_limit;
    ContainerStats {
        timestamp: Some(now),
        cpu: Some(CpuStats {
            total: Some(m.cpu_stat.usage),
            system: Some(m.cpu_stat.system),
            user: Some(m.cpu_stat.user),
            ..CpuStats::default()
        }),
        memory: Some(MemoryStats {
            usage_total: Some(usage),
            limit: Some(mem.hierarchical_memory_limit).filter(|&l| l > 0 && l < UNSET_MEMORY_LIMIT),
            swap: Some(mem.total_swap),
            working_set: Some(usage.saturating_sub(mem.total_inactive_file)),
            rss: Some(mem.total_rss),
            cache: Some(mem.total_cache),
            pgfault: Some(mem.total_pgfault),
            pgmajfault: Some(mem.total_pgmajfault),
            ..MemoryStats::default()
        }),
        io: None,
        pid: Some(PidStats {
            thread_count: Some(m.pid_stat.current),
            thread_limit: Some(m.pid_stat.max).filter(|&max| max > 0),
        }),
    }
}

fn network_stats(m: &Metrics, now: SystemTime) -> Option<NetworkStats> {
    let n = m.network_stat.as_ref()?;
    Some(NetworkStats {
        timestamp: Some(now),
        bytes_sent: Some(n.tx_bytes),
        bytes_rcvd: Some(n.rx_bytes),
        ..NetworkStats::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_joined_and_escaped_as_go_does() {
        let handles = ["a-1".to_owned(), "b_2".to_owned(), "c d".to_owned()];
        assert_eq!(handles_query(&handles), "handles=a-1%2Cb_2%2Cc%20d");
    }

    #[test]
    fn entries_with_errors_are_left_out_and_limits_filtered() {
        let info: HashMap<String, InfoEntry> = serde_json::from_value(serde_json::json!({
            "h1": {"Info": {"State": "active", "Properties": {"app": "web"}}, "Err": null},
            "h2": {"Info": {}, "Err": {"Type": "ContainerNotFoundError", "Message": "unknown handle: h2", "Handle": "h2"}}
        }))
        .unwrap();
        let metrics: HashMap<String, MetricsEntry> = serde_json::from_value(serde_json::json!({
            "h1": {"Metrics": {
                "MemoryStat": {"hierarchical_memory_limit": 9_223_372_036_854_771_712u64,
                               "TotalUsageTowardLimit": 100, "total_inactive_file": 150},
                "CPUStat": {"Usage": 5, "User": 3, "System": 2},
                "DiskStat": {"TotalBytesUsed": 1},
                "NetworkStat": null,
                "PidStat": {"Current": 4, "Max": 0},
                "Age": 1_000_000_000, "CPUEntitlement": 7
            }, "Err": null}
        }))
        .unwrap();
        let snapshot = snapshot(info, metrics, SystemTime::UNIX_EPOCH);
        assert_eq!(snapshot.containers.len(), 1);
        let h1 = &snapshot.containers["h1"];
        assert_eq!(h1.meta.name.as_deref(), Some("h1"));
        assert_eq!(h1.meta.labels["app"], "web");
        let stats = h1.stats.as_ref().unwrap();
        let memory = stats.memory.as_ref().unwrap();
        assert_eq!((memory.limit, memory.working_set), (None, Some(0)));
        assert_eq!(stats.pid.as_ref().unwrap().thread_limit, None);
        assert_eq!(stats.cpu.as_ref().unwrap().total, Some(5));
        assert_eq!(h1.network, None);
    }

    #[test]
    fn a_missing_socket_is_absent_and_none_is_off() {
        assert_eq!(endpoint("none"), Err(SourceState::Disabled));
        assert!(matches!(
            endpoint("/nonexistent/garden.sock"),
            Err(SourceState::Absent { .. })
        ));
        assert_eq!(
            endpoint("http://127.0.0.1:7777"),
            Ok(Endpoint::Tcp {
                authority: "127.0.0.1:7777".into(),
                base: String::new()
            })
        );
    }
}
