//! cAdvisor's container metric families (names, types, units and label names as kubelet's
//! `/metrics/cadvisor` serves them), built per scrape from one full stats collection: a
//! container's series exist exactly while its cgroup does, and carry no sample timestamps,
//! so Prometheus marks them stale on the first scrape that lacks them.
//!
//! Each container is one series set, whatever its nested cgroups (they add up into it), with
//! the labels `id` (its cgroup path), `name`, `image`, `container`, `pod`, `namespace` (empty
//! where unknown, as kubelet does) and `container_label_<key>` for the allow-listed runtime
//! labels only. A value the sources do not have is an absent series, never 0.
//! `docs/metrics.md` lists what differs from cAdvisor and why.
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::exposition::{Kind, Value, Writer, label_name, push_label};
use crate::{
    collectors::{StatsCollectors, StatsReport, metadata::ContainerMeta},
    identity::ContainerEntry,
};

/// One container of a scrape: its rendered labels and everything its series are made of.
pub struct Row {
    /// `id="...",name="...",...` without braces.
    labels: String,
    stats: StatsReport,
    /// Live processes, nested cgroups included (known with the kernel index).
    processes: Option<u64>,
    /// When its process started, as the runtime tells it (else when it was created).
    start_time: Option<SystemTime>,
}

impl Row {
    /// The row of a container, with the allow-listed runtime labels `allowed`.
    pub fn new(
        entry: &ContainerEntry,
        stats: StatsReport,
        meta: Option<&ContainerMeta>,
        allowed: &[(String, String)],
    ) -> Self {
        let mut labels = String::with_capacity(256);
        let cgroup_path = entry.roots.first().map_or("", |c| &c.path);
        let text = |f: fn(&ContainerMeta) -> Option<&str>| meta.and_then(f).unwrap_or("");
        push_label(&mut labels, "id", cgroup_path);
        for (key, value) in [
            ("name", text(|m| m.name.as_deref())),
            ("image", text(|m| m.image.as_deref())),
            ("container", text(ContainerMeta::container_name)),
            ("pod", text(ContainerMeta::pod_name)),
            ("namespace", text(ContainerMeta::pod_namespace)),
        ] {
            labels.push(',');
            push_label(&mut labels, key, value);
        }
        for (key, name) in allowed {
            labels.push(',');
            let value = meta
                .and_then(|m| m.labels.get(key))
                .map_or("", String::as_str);
            push_label(&mut labels, name, value);
        }
        Self {
            labels,
            stats,
            processes: entry.pids.as_ref().map(|p| p.len() as u64),
            start_time: meta.and_then(|m| m.started.or(m.created)),
        }
    }
}

/// Allow-listed runtime label keys with their Prometheus label names; of keys whose names
/// collide after sanitizing, the first listed is kept.
pub fn allowed_labels(keys: &[String]) -> Vec<(String, String)> {
    let mut allowed: Vec<(String, String)> = Vec::with_capacity(keys.len());
    for key in keys {
        let name = label_name(key);
        if allowed.iter().all(|(_, n)| *n != name) {
            allowed.push((key.clone(), name));
        }
    }
    allowed
}

/// One full collection, as rows.
pub fn collect(collectors: &StatsCollectors) -> Vec<Row> {
    let allowed = allowed_labels(collectors.container_labels());
    let metadata = collectors.metadata();
    let mut rows = Vec::new();
    collectors.collect(Duration::ZERO, |entry, stats| {
        let meta = metadata.get(&stats.container_id);
        rows.push(Row::new(entry, stats, meta.as_deref(), &allowed));
    });
    rows
}

type Extract = fn(&Row) -> Option<Value>;

/// A family of one series per container.
struct Single {
    name: &'static str,
    help: &'static str,
    kind: Kind,
    /// Labels beyond the container's (cAdvisor's `cpu="total"`).
    extra: &'static [(&'static str, &'static str)],
    value: Extract,
}

const fn gauge(name: &'static str, help: &'static str, value: Extract) -> Single {
    Single {
        name,
        help,
        kind: Kind::Gauge,
        extra: &[],
        value,
    }
}

const fn counter(name: &'static str, help: &'static str, value: Extract) -> Single {
    Single {
        name,
        help,
        kind: Kind::Counter,
        extra: &[],
        value,
    }
}

fn int(v: Option<u64>) -> Option<Value> {
    v.map(Value::Int)
}

fn secs(ns: Option<u64>) -> Option<Value> {
    ns.map(Value::seconds_from_ns)
}

fn cpu(row: &Row) -> Option<&crate::provider::CpuStats> {
    row.stats.full.stats.cpu.as_ref()
}

fn memory(row: &Row) -> Option<&crate::provider::MemoryStats> {
    row.stats.full.stats.memory.as_ref()
}

fn io(row: &Row) -> Option<&crate::provider::IoStats> {
    row.stats.full.stats.io.as_ref()
}

/// CFS counters exist only where a quota is set (as cAdvisor: without a limit the kernel
/// counts no periods worth graphing).
fn with_quota(
    row: &Row,
    value: impl FnOnce(&crate::provider::CpuStats) -> Option<Value>,
) -> Option<Value> {
    cpu(row)
        .filter(|c| c.cfs_quota_us.is_some())
        .and_then(value)
}

/// cgroup v2 `cpu.weight` (1–10000) as the v1 shares it stands for (2–262144): the inverse
/// of the conversion runc and the kubelet apply, as cAdvisor reports it.
fn shares_from_weight(weight: u64) -> u64 {
    2 + weight.saturating_sub(1) * 262_142 / 9_999
}

const SINGLE: &[Single] = &[
    Single {
        name: "container_cpu_usage_seconds_total",
        help: "Cumulative cpu time consumed in seconds.",
        kind: Kind::Counter,
        extra: &[("cpu", "total")],
        value: |r| secs(cpu(r)?.total),
    },
    counter(
        "container_cpu_user_seconds_total",
        "Cumulative user cpu time consumed in seconds.",
        |r| secs(cpu(r)?.user),
    ),
    counter(
        "container_cpu_system_seconds_total",
        "Cumulative system cpu time consumed in seconds.",
        |r| secs(cpu(r)?.system),
    ),
    counter(
        "container_cpu_cfs_periods_total",
        "Number of elapsed enforcement period intervals.",
        |r| with_quota(r, |c| int(c.elapsed_periods)),
    ),
    counter(
        "container_cpu_cfs_throttled_periods_total",
        "Number of throttled period intervals.",
        |r| with_quota(r, |c| int(c.throttled_periods)),
    ),
    counter(
        "container_cpu_cfs_throttled_seconds_total",
        "Total time duration the container has been throttled.",
        |r| with_quota(r, |c| secs(c.throttled_time)),
    ),
    gauge(
        "container_memory_usage_bytes",
        "Current memory usage in bytes, including all memory regardless of when it was accessed.",
        |r| int(memory(r)?.usage_total),
    ),
    gauge(
        "container_memory_working_set_bytes",
        "Current working set in bytes.",
        |r| int(memory(r)?.working_set),
    ),
    gauge("container_memory_rss", "Size of RSS in bytes.", |r| {
        int(memory(r)?.rss)
    }),
    gauge(
        "container_memory_cache",
        "Number of bytes of page cache memory.",
        |r| int(memory(r)?.cache),
    ),
    gauge(
        "container_memory_swap",
        "Container swap usage in bytes.",
        |r| int(memory(r)?.swap),
    ),
    gauge(
        "container_memory_kernel_usage",
        "Size of kernel memory allocated in bytes.",
        |r| int(memory(r)?.kernel_memory),
    ),
    gauge(
        "container_memory_max_usage_bytes",
        "Maximum memory usage recorded in bytes.",
        |r| int(memory(r)?.peak),
    ),
    // A counter in cAdvisor; a gauge here because a counter's name must end in `_total`
    // (`promtool check metrics`). PromQL's rate() and increase() work on it all the same.
    gauge(
        "container_memory_failcnt",
        "Number of memory usage hits limits.",
        |r| int(memory(r)?.failcnt),
    ),
    counter(
        "container_oom_events_total",
        "Count of out of memory events observed for the container.",
        |r| int(memory(r)?.oom_kills),
    ),
    gauge(
        "container_threads",
        "Number of threads running inside the container.",
        |r| int(r.stats.full.stats.pid.as_ref()?.thread_count),
    ),
    gauge(
        "container_threads_max",
        "Maximum number of threads allowed inside the container.",
        |r| int(r.stats.full.stats.pid.as_ref()?.thread_limit),
    ),
    gauge(
        "container_processes",
        "Number of processes running inside the container.",
        |r| int(r.processes),
    ),
    gauge(
        "container_file_descriptors",
        "Number of open file descriptors for the container.",
        |r| int(r.stats.full.open_files),
    ),
    counter(
        "container_pressure_cpu_waiting_seconds_total",
        "Total time duration tasks in the container have waited due to CPU congestion.",
        |r| secs(cpu(r)?.partial_stall_time),
    ),
    counter(
        "container_pressure_cpu_stalled_seconds_total",
        "Total time duration no tasks in the container could make progress due to CPU congestion.",
        |r| secs(cpu(r)?.full_stall_time),
    ),
    counter(
        "container_pressure_memory_waiting_seconds_total",
        "Total time duration tasks in the container have waited due to memory congestion.",
        |r| secs(memory(r)?.partial_stall_time),
    ),
    counter(
        "container_pressure_memory_stalled_seconds_total",
        "Total time duration no tasks in the container could make progress due to memory congestion.",
        |r| secs(memory(r)?.full_stall_time),
    ),
    counter(
        "container_pressure_io_waiting_seconds_total",
        "Total time duration tasks in the container have waited due to IO congestion.",
        |r| secs(io(r)?.partial_stall_time),
    ),
    counter(
        "container_pressure_io_stalled_seconds_total",
        "Total time duration no tasks in the container could make progress due to IO congestion.",
        |r| secs(io(r)?.full_stall_time),
    ),
    gauge(
        "container_spec_cpu_period",
        "CPU period of the container.",
        |r| int(cpu(r)?.cfs_period_us),
    ),
    gauge(
        "container_spec_cpu_quota",
        "CPU quota of the container.",
        |r| int(cpu(r)?.cfs_quota_us),
    ),
    gauge(
        "container_spec_cpu_shares",
        "CPU share of the container.",
        |r| {
            let c = cpu(r)?;
            int(c.shares.or(c.weight.map(shares_from_weight)))
        },
    ),
    gauge(
        "container_spec_memory_limit_bytes",
        "Memory limit for the container.",
        |r| int(memory(r)?.limit),
    ),
    gauge(
        "container_spec_memory_reservation_limit_bytes",
        "Memory reservation limit for the container.",
        |r| int(memory(r)?.softlimit),
    ),
    gauge(
        "container_spec_memory_swap_limit_bytes",
        "Memory swap limit for the container.",
        |r| int(memory(r)?.swap_limit),
    ),
    gauge(
        "container_start_time_seconds",
        "Start time of the container since unix epoch in seconds.",
        |r| r.start_time.map(unix_seconds),
    ),
];

fn unix_seconds(t: SystemTime) -> Value {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    Value::Float(since.as_secs_f64())
}

/// Writes every container family of `rows`; a family none of them has a value for is left
/// out.
pub fn encode(w: &mut Writer, rows: &[Row], now: SystemTime) {
    for family in SINGLE {
        let mut started = false;
        for row in rows {
            if let Some(value) = (family.value)(row) {
                if !started {
                    w.family(family.name, family.help, family.kind);
                    started = true;
                }
                w.sample(family.name, &row.labels, family.extra, value);
            }
        }
    }
    encode_memory_failures(w, rows);
    encode_network(w, rows);
    encode_fs(w, rows);
    if !rows.is_empty() {
        let name = "container_last_seen";
        w.family(
            name,
            "Last time a container was seen by the exporter.",
            Kind::Gauge,
        );
        let now = unix_seconds(now);
        for row in rows {
            w.sample(name, &row.labels, &[], now);
        }
    }
}

/// `container_memory_failures_total{failure_type, scope}`: page faults from `memory.stat`.
/// Its totals are hierarchical, and cAdvisor fills both scopes with them: so does this.
fn encode_memory_failures(w: &mut Writer, rows: &[Row]) {
    let name = "container_memory_failures_total";
    let mut started = false;
    for row in rows {
        let Some(m) = memory(row) else { continue };
        for (failure_type, value) in [("pgfault", m.pgfault), ("pgmajfault", m.pgmajfault)] {
            let Some(value) = value else { continue };
            if !started {
                w.family(
                    name,
                    "Cumulative count of memory allocation failures.",
                    Kind::Counter,
                );
                started = true;
            }
            for scope in ["container", "hierarchy"] {
                w.sample(
                    name,
                    &row.labels,
                    &[("failure_type", failure_type), ("scope", scope)],
                    Value::Int(value),
                );
            }
        }
    }
}

/// The `interface` label of network counters that are not per interface: the kernel
/// counters count a cgroup's sockets, whichever interface their packets take.
pub const ALL_INTERFACES: &str = "total";

/// `container_network_*_total{interface}`: per interface when the source knows them (procfs),
/// else one series with `interface="total"` (the kernel counters).
fn encode_network(w: &mut Writer, rows: &[Row]) {
    type Field = fn(&crate::provider::InterfaceNetStats) -> Option<u64>;
    let families: [(&str, &str, Field); 4] = [
        (
            "container_network_receive_bytes_total",
            "Cumulative count of bytes received.",
            |i| i.bytes_rcvd,
        ),
        (
            "container_network_receive_packets_total",
            "Cumulative count of packets received.",
            |i| i.packets_rcvd,
        ),
        (
            "container_network_transmit_bytes_total",
            "Cumulative count of bytes transmitted.",
            |i| i.bytes_sent,
        ),
        (
            "container_network_transmit_packets_total",
            "Cumulative count of packets transmitted.",
            |i| i.packets_sent,
        ),
    ];
    for (name, help, field) in families {
        let mut started = false;
        for row in rows {
            let Some(net) = row.stats.full.network.as_ref() else {
                continue;
            };
            let mut emit = |interface: &str, value: Option<u64>| {
                let Some(value) = value else { return };
                if !started {
                    w.family(name, help, Kind::Counter);
                    started = true;
                }
                w.sample(
                    name,
                    &row.labels,
                    &[("interface", interface)],
                    Value::Int(value),
                );
            };
            if let Some(interfaces) = &net.interfaces {
                for (interface, stats) in interfaces {
                    emit(interface, field(stats));
                }
            } else {
                let totals = crate::provider::InterfaceNetStats {
                    bytes_sent: net.bytes_sent,
                    bytes_rcvd: net.bytes_rcvd,
                    packets_sent: net.packets_sent,
                    packets_rcvd: net.packets_rcvd,
                };
                emit(ALL_INTERFACES, field(&totals));
            }
        }
    }
}

/// `container_fs_{reads,writes}{_bytes,}_total{device="/dev/<disk>"}`, per disk.
fn encode_fs(w: &mut Writer, rows: &[Row]) {
    type Field = fn(&crate::provider::DeviceIoStats) -> Option<u64>;
    let families: [(&str, &str, Field); 4] = [
        (
            "container_fs_reads_bytes_total",
            "Cumulative count of bytes read.",
            |d| d.read_bytes,
        ),
        (
            "container_fs_writes_bytes_total",
            "Cumulative count of bytes written.",
            |d| d.write_bytes,
        ),
        (
            "container_fs_reads_total",
            "Cumulative count of reads completed.",
            |d| d.read_operations,
        ),
        (
            "container_fs_writes_total",
            "Cumulative count of writes completed.",
            |d| d.write_operations,
        ),
    ];
    let mut device = String::new();
    for (name, help, field) in families {
        let mut started = false;
        for row in rows {
            let Some(devices) = io(row).and_then(|io| io.devices.as_ref()) else {
                continue;
            };
            for (disk, stats) in devices {
                let Some(value) = field(stats) else { continue };
                if !started {
                    w.family(name, help, Kind::Counter);
                    started = true;
                }
                device.clear();
                device.push_str("/dev/");
                device.push_str(disk);
                w.sample(name, &row.labels, &[("device", &device)], Value::Int(value));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, sync::Arc};

    use super::*;
    use crate::{
        identity::{CgroupRef, ContainerRef},
        metrics::exposition::Format,
        provider::{
            ContainerStats, CpuStats, DeviceIoStats, FullStats, IoStats, MemoryStats, NetworkStats,
            PidStats,
        },
    };

    fn entry(id: &str, path: &str) -> ContainerEntry {
        ContainerEntry {
            container: Arc::new(ContainerRef {
                id: id.to_owned(),
                runtime: None,
                pod_uid: None,
            }),
            roots: vec![CgroupRef {
                hierarchy_id: 0,
                id: 7,
                path: Arc::from(path),
            }],
            members: Vec::new(),
            pids: Some(vec![10, 11]),
        }
    }

    fn stats(id: &str) -> StatsReport {
        StatsReport {
            container_id: id.to_owned(),
            full: FullStats {
                stats: ContainerStats {
                    cpu: Some(CpuStats {
                        total: Some(2_500_000_000),
                        user: Some(2_000_000_000),
                        system: Some(500_000_000),
                        shares: Some(1024),
                        cfs_period_us: Some(100_000),
                        elapsed_periods: Some(9),
                        ..CpuStats::default()
                    }),
                    memory: Some(MemoryStats {
                        usage_total: Some(4096),
                        working_set: Some(1024),
                        pgfault: Some(3),
                        ..MemoryStats::default()
                    }),
                    io: Some(IoStats {
                        write_bytes: Some(8192),
                        devices: Some(BTreeMap::from([(
                            "vda".to_owned(),
                            DeviceIoStats {
                                write_bytes: Some(8192),
                                ..DeviceIoStats::default()
                            },
                        )])),
                        ..IoStats::default()
                    }),
                    pid: Some(PidStats {
                        thread_count: Some(3),
                        thread_limit: None,
                    }),
                    ..ContainerStats::default()
                },
                network: Some(NetworkStats {
                    bytes_sent: Some(100),
                    ..NetworkStats::default()
                }),
                ..FullStats::default()
            },
            ..StatsReport::default()
        }
    }

    fn docker_meta() -> ContainerMeta {
        ContainerMeta {
            name: Some("web".to_owned()),
            image: Some("nginx:1".to_owned()),
            labels: BTreeMap::from([
                ("team".to_owned(), "a\"b".to_owned()),
                ("secret".to_owned(), "x".to_owned()),
            ]),
            started: Some(UNIX_EPOCH + Duration::from_secs(1_000)),
            ..ContainerMeta::default()
        }
    }

    fn lines(rows: &[Row]) -> Vec<String> {
        let mut out = String::new();
        let mut w = Writer::new(&mut out, Format::Text);
        encode(&mut w, rows, UNIX_EPOCH + Duration::from_secs(2_000));
        w.finish();
        out.lines().map(str::to_owned).collect()
    }

    #[test]
    fn a_container_gets_cadvisor_series_with_kubelet_labels() {
        let allowed = allowed_labels(&["team".to_owned()]);
        let meta = docker_meta();
        let row = Row::new(
            &entry("abc", "/docker/abc"),
            stats("abc"),
            Some(&meta),
            &allowed,
        );
        let lines = lines(&[row]);
        let labels = r#"id="/docker/abc",name="web",image="nginx:1",container="",pod="",namespace="",container_label_team="a\"b""#;
        for expected in [
            format!(r#"container_cpu_usage_seconds_total{{{labels},cpu="total"}} 2.5"#),
            format!("container_cpu_user_seconds_total{{{labels}}} 2"),
            format!("container_memory_working_set_bytes{{{labels}}} 1024"),
            format!("container_threads{{{labels}}} 3"),
            format!("container_processes{{{labels}}} 2"),
            format!("container_spec_cpu_shares{{{labels}}} 1024"),
            format!("container_spec_cpu_period{{{labels}}} 100000"),
            format!("container_start_time_seconds{{{labels}}} 1000"),
            format!("container_last_seen{{{labels}}} 2000"),
            format!(r#"container_network_transmit_bytes_total{{{labels},interface="total"}} 100"#),
            format!(r#"container_fs_writes_bytes_total{{{labels},device="/dev/vda"}} 8192"#),
            format!(
                r#"container_memory_failures_total{{{labels},failure_type="pgfault",scope="hierarchy"}} 3"#
            ),
            "# TYPE container_cpu_usage_seconds_total counter".to_owned(),
            "# TYPE container_memory_usage_bytes gauge".to_owned(),
        ] {
            assert!(
                lines.contains(&expected),
                "missing {expected}\n{}",
                lines.join("\n")
            );
        }
        let text = lines.join("\n");
        // Not on the allow-list; absent values are absent series, never 0.
        assert!(!text.contains("secret"), "{text}");
        for absent in [
            "container_cpu_cfs_periods_total",
            "container_spec_cpu_quota",
            "container_threads_max",
            "container_memory_rss",
            "container_network_receive_bytes_total",
            "container_fs_reads_bytes_total",
            "container_file_descriptors",
        ] {
            assert!(!text.contains(absent), "{absent} present\n{text}");
        }
    }

    #[test]
    fn cfs_counters_need_a_quota() {
        let mut body = stats("q");
        let cpu = body.full.stats.cpu.as_mut().unwrap();
        cpu.cfs_quota_us = Some(50_000);
        cpu.throttled_periods = Some(4);
        cpu.throttled_time = Some(1_000_000);
        let row = Row::new(&entry("q", "/q"), body, None, &[]);
        let text = lines(&[row]).join("\n");
        let labels = r#"id="/q",name="",image="",container="",pod="",namespace="""#;
        for expected in [
            format!("container_cpu_cfs_periods_total{{{labels}}} 9"),
            format!("container_cpu_cfs_throttled_periods_total{{{labels}}} 4"),
            format!("container_cpu_cfs_throttled_seconds_total{{{labels}}} 0.001"),
            format!("container_spec_cpu_quota{{{labels}}} 50000"),
        ] {
            assert!(text.contains(&expected), "missing {expected}\n{text}");
        }
    }

    #[test]
    fn pod_labels_come_from_the_kubernetes_labels() {
        let meta = ContainerMeta {
            name: Some("c0ffee".to_owned()),
            image: Some("busybox:1".to_owned()),
            labels: BTreeMap::from([
                ("io.kubernetes.pod.name".to_owned(), "web-0".to_owned()),
                ("io.kubernetes.pod.namespace".to_owned(), "prod".to_owned()),
                ("io.kubernetes.container.name".to_owned(), "app".to_owned()),
            ]),
            ..ContainerMeta::default()
        };
        let row = Row::new(
            &entry("c0ffee", "/kubepods/pod1/c0ffee"),
            stats("c0ffee"),
            Some(&meta),
            &[],
        );
        assert_eq!(
            row.labels,
            r#"id="/kubepods/pod1/c0ffee",name="c0ffee",image="busybox:1",container="app",pod="web-0",namespace="prod""#
        );
    }

    #[test]
    fn one_header_per_family_and_none_for_empty_families() {
        let rows = vec![
            Row::new(&entry("a", "/a"), stats("a"), None, &[]),
            Row::new(&entry("b", "/b"), stats("b"), None, &[]),
        ];
        let text = lines(&rows);
        let headers = text
            .iter()
            .filter(|l| *l == "# TYPE container_cpu_usage_seconds_total counter")
            .count();
        assert_eq!(headers, 1);
        let samples = text
            .iter()
            .filter(|l| l.starts_with("container_cpu_usage_seconds_total{"))
            .count();
        assert_eq!(samples, 2);
        assert!(lines(&[]).is_empty());
    }

    #[test]
    fn colliding_label_names_keep_the_first_key() {
        let allowed = allowed_labels(&["a.b".to_owned(), "a-b".to_owned(), "c".to_owned()]);
        assert_eq!(
            allowed,
            vec![
                ("a.b".to_owned(), "container_label_a_b".to_owned()),
                ("c".to_owned(), "container_label_c".to_owned()),
            ]
        );
    }

    #[test]
    fn weights_convert_to_shares() {
        assert_eq!(shares_from_weight(100), 2597);
        assert_eq!(shares_from_weight(1), 2);
        assert_eq!(shares_from_weight(10_000), 262_144);
    }
}
