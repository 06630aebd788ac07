//! AWS ECS (Fargate) containers from the task metadata endpoint v4, whose URL ECS puts in
//! every container's `ECS_CONTAINER_METADATA_URI_V4`: `GET /task` lists the task's
//! containers (`DockerId`, `Name`, `Image`, `Labels`) and the task's limits
//! (`Limits.CPU` in vCPUs, `Limits.Memory` in MiB); `GET /task/stats` maps each `DockerId`
//! to Docker Engine stats JSON. On Fargate this daemon runs beside the task's containers,
//! without their cgroups: these are their only stats.
//!
//! Stats follow Datadog's `ecs_fargate` collector: CPU total/system/user from `cpu_usage`,
//! the CPU limit is the task's vCPUs × 100, memory usage/RSS/cache/pgfault, the memory limit
//! is the container's when set (Docker reports "no limit" as ≥ 2^62) else the task's, block
//! IO sums the `Read` and `Write` rows; network per interface and in total. Throttling and
//! the thread count are taken too where Docker gives them.
use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::SystemTime,
};

use serde::Deserialize;

use super::{
    metadata::{ContainerMeta, SourceState},
    remote::{self, Endpoint, HttpError, PollTiming, RemoteContainer, RemoteSource, Snapshot},
};
use crate::provider::{
    ContainerStats, CpuStats, InterfaceNetStats, IoStats, MemoryStats, NetworkStats, PidStats,
};

/// The collector's id.
pub const ID: &str = "ecsfargate";
/// The variable ECS sets in every container of a task.
pub const URI_VARIABLE: &str = "ECS_CONTAINER_METADATA_URI_V4";
/// Docker's memory limit when none is set is `i64::MAX` rounded to pages; Datadog takes
/// anything from 2^62 as unset.
const UNSET_MEMORY_LIMIT: u64 = 1 << 62;

/// `GET /task` (the fields used).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Task {
    #[serde(default)]
    pub containers: Vec<TaskContainer>,
    #[serde(default)]
    pub limits: Option<Limits>,
}

/// `Limits` of a task: vCPUs and MiB.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Limits {
    #[serde(rename = "CPU")]
    pub cpu: Option<f64>,
    pub memory: Option<f64>,
}

/// An element of `Containers`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TaskContainer {
    pub docker_id: String,
    pub name: Option<String>,
    pub image: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub created_at: Option<String>,
    pub started_at: Option<String>,
}

/// Docker Engine stats JSON, one element of `GET /task/stats` (the fields used).
#[derive(Debug, Default, Deserialize)]
pub struct DockerStats {
    pub read: Option<String>,
    pub cpu_stats: Option<DockerCpu>,
    pub memory_stats: Option<DockerMemory>,
    pub blkio_stats: Option<DockerBlkio>,
    pub pids_stats: Option<DockerPids>,
    pub networks: Option<BTreeMap<String, DockerNetwork>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct DockerCpu {
    pub cpu_usage: Option<DockerCpuUsage>,
    pub throttling_data: Option<DockerThrottling>,
}

#[derive(Debug, Default, Deserialize)]
pub struct DockerCpuUsage {
    pub total_usage: Option<u64>,
    pub usage_in_kernelmode: Option<u64>,
    pub usage_in_usermode: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
pub struct DockerThrottling {
    pub periods: Option<u64>,
    pub throttled_periods: Option<u64>,
    pub throttled_time: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
pub struct DockerMemory {
    pub usage: Option<u64>,
    pub max_usage: Option<u64>,
    pub limit: Option<u64>,
    #[serde(default)]
    pub stats: HashMap<String, u64>,
}

#[derive(Debug, Default, Deserialize)]
pub struct DockerBlkio {
    pub io_service_bytes_recursive: Option<Vec<DockerBlkioRow>>,
    pub io_serviced_recursive: Option<Vec<DockerBlkioRow>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct DockerBlkioRow {
    pub op: String,
    pub value: u64,
}

#[derive(Debug, Default, Deserialize)]
pub struct DockerPids {
    pub current: Option<u64>,
    pub limit: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
pub struct DockerNetwork {
    pub rx_bytes: Option<u64>,
    pub rx_packets: Option<u64>,
    pub tx_bytes: Option<u64>,
    pub tx_packets: Option<u64>,
}

/// The endpoint `--ecs-metadata-uri` names: "auto" takes `from_env` (the value of
/// [`URI_VARIABLE`]); else the state the source is in ("none": disabled; "auto" without the
/// variable: absent, not an ECS task).
pub fn endpoint(flag: &str, from_env: Option<String>) -> Result<Endpoint, SourceState> {
    let text = match flag {
        "none" | "" => return Err(SourceState::Disabled),
        "auto" => from_env.ok_or_else(|| SourceState::Absent {
            reason: format!("{URI_VARIABLE} is not set: not an ECS task"),
        })?,
        uri => uri.to_owned(),
    };
    Endpoint::parse(&text).map_err(|e| SourceState::Absent {
        reason: format!("ECS task metadata endpoint {e}"),
    })
}

/// Polls the endpoint until aborted.
pub async fn watch(source: Arc<RemoteSource>, endpoint: Endpoint, timing: PollTiming) {
    remote::poll(source, &endpoint, timing, || fetch(&endpoint, timing)).await;
}

async fn fetch(endpoint: &Endpoint, timing: PollTiming) -> Result<Snapshot, HttpError> {
    let task: Task = remote::get_json(endpoint, "/task", timing.timeout).await?;
    // A stats value is `null` for a container that has not started yet.
    let stats: HashMap<String, Option<DockerStats>> =
        remote::get_json(endpoint, "/task/stats", timing.timeout).await?;
    Ok(snapshot(task, stats))
}

/// The task's containers with their stats.
pub fn snapshot<S: std::hash::BuildHasher>(
    task: Task,
    mut stats: HashMap<String, Option<DockerStats>, S>,
) -> Snapshot {
    let limits = task.limits.unwrap_or_default();
    let containers = task
        .containers
        .into_iter()
        .map(|c| {
            let docker = stats.remove(&c.docker_id).flatten();
            let meta = ContainerMeta {
                name: c.name,
                image: c.image,
                labels: c.labels,
                runtime_namespace: None,
                flavor: crate::provider::Flavor::Default,
                created: c.created_at.as_deref().and_then(time),
                started: c.started_at.as_deref().and_then(time),
                pod: None,
            };
            let remote = RemoteContainer {
                meta,
                stats: docker.as_ref().map(|d| container_stats(d, &limits)),
                network: docker.as_ref().and_then(network_stats),
                pod: None,
            };
            (c.docker_id, remote)
        })
        .collect();
    Snapshot { containers }
}

fn time(text: &str) -> Option<SystemTime> {
    crate::stats::parse_rfc3339(text)
        .map(|ns| SystemTime::UNIX_EPOCH + std::time::Duration::from_nanos(ns))
}

/// One container's stats, with the task's limits where the container has none.
pub fn container_stats(d: &DockerStats, task: &Limits) -> ContainerStats {
    let cpu = d.cpu_stats.as_ref().map(|c| {
        let usage = c.cpu_usage.as_ref();
        let throttling = c.throttling_data.as_ref();
        CpuStats {
            total: usage.and_then(|u| u.total_usage),
            system: usage.and_then(|u| u.usage_in_kernelmode),
            user: usage.and_then(|u| u.usage_in_usermode),
            limit: task.cpu.filter(|&v| v > 0.0).map(|vcpus| vcpus * 100.0),
            elapsed_periods: throttling.and_then(|t| t.periods),
            throttled_periods: throttling.and_then(|t| t.throttled_periods),
            throttled_time: throttling.and_then(|t| t.throttled_time),
            ..CpuStats::default()
        }
    });
    let memory = d.memory_stats.as_ref().map(|m| {
        let own_limit = m.limit.filter(|&l| l > 0 && l < UNSET_MEMORY_LIMIT);
        let task_limit = task.memory.filter(|&mib| mib > 0.0).map(mib_to_bytes);
        MemoryStats {
            usage_total: m.usage,
            limit: own_limit.or(task_limit),
            rss: m.stats.get("rss").copied(),
            cache: m.stats.get("cache").copied(),
            pgfault: m.stats.get("pgfault").copied(),
            pgmajfault: m.stats.get("pgmajfault").copied(),
            peak: m.max_usage,
            ..MemoryStats::default()
        }
    });
    ContainerStats {
        timestamp: d.read.as_deref().and_then(time),
        cpu,
        memory,
        io: d.blkio_stats.as_ref().map(io_stats),
        pid: d.pids_stats.as_ref().map(|p| PidStats {
            thread_count: p.current,
            thread_limit: p.limit.filter(|&l| l > 0),
        }),
    }
}

#[expect(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "a positive number of MiB, far below 2^44"
)]
fn mib_to_bytes(mib: f64) -> u64 {
    (mib * 1024.0 * 1024.0).round() as u64
}

/// Sums of the `Read` and `Write` rows (cgroup v2 hosts write them lowercase); a list
/// Docker left out (`null`) is unknown, not 0.
fn io_stats(b: &DockerBlkio) -> IoStats {
    let sum = |rows: Option<&Vec<DockerBlkioRow>>, op: &str| {
        rows.map(|rows| {
            rows.iter()
                .filter(|r| r.op.eq_ignore_ascii_case(op))
                .map(|r| r.value)
                .sum()
        })
    };
    let bytes = b.io_service_bytes_recursive.as_ref();
    let ops = b.io_serviced_recursive.as_ref();
    IoStats {
        read_bytes: sum(bytes, "read"),
        write_bytes: sum(bytes, "write"),
        read_operations: sum(ops, "read"),
        write_operations: sum(ops, "write"),
        ..IoStats::default()
    }
}

fn network_stats(d: &DockerStats) -> Option<NetworkStats> {
    let networks = d.networks.as_ref()?;
    let mut total = NetworkStats {
        timestamp: d.read.as_deref().and_then(time),
        ..NetworkStats::default()
    };
    let mut interfaces = BTreeMap::new();
    for (name, n) in networks {
        total.bytes_sent = crate::stats::add_opt(total.bytes_sent, n.tx_bytes);
        total.bytes_rcvd = crate::stats::add_opt(total.bytes_rcvd, n.rx_bytes);
        total.packets_sent = crate::stats::add_opt(total.packets_sent, n.tx_packets);
        total.packets_rcvd = crate::stats::add_opt(total.packets_rcvd, n.rx_packets);
        interfaces.insert(
            name.clone(),
            InterfaceNetStats {
                bytes_sent: n.tx_bytes,
                bytes_rcvd: n.rx_bytes,
                packets_sent: n.tx_packets,
                packets_rcvd: n.rx_packets,
            },
        );
    }
    total.interfaces = Some(interfaces);
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_come_from_the_container_else_the_task() {
        let task = Limits {
            cpu: Some(0.25),
            memory: Some(512.0),
        };
        let mut d = DockerStats {
            memory_stats: Some(DockerMemory {
                usage: Some(10),
                limit: Some(9_223_372_036_854_771_712),
                ..DockerMemory::default()
            }),
            cpu_stats: Some(DockerCpu::default()),
            ..DockerStats::default()
        };
        let s = container_stats(&d, &task);
        assert_eq!(s.memory.unwrap().limit, Some(512 << 20));
        assert_eq!(s.cpu.unwrap().limit, Some(25.0));
        d.memory_stats.as_mut().unwrap().limit = Some(128 << 20);
        let s = container_stats(&d, &task);
        assert_eq!(s.memory.unwrap().limit, Some(128 << 20));
        assert_eq!(s.io, None);
        let s = container_stats(&d, &Limits::default());
        assert_eq!(s.cpu.unwrap().limit, None);
    }
}
