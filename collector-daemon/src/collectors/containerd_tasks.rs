//! containerd task metrics: a container's CPU, memory, PIDs and IO as containerd's task
//! service reports them (`Tasks.Metrics`), for containers whose cgroups this host cannot read.
//! Kata Containers run in a VM: the shim asks the agent in the guest, which reads the guest's
//! cgroups, so this is the only source of their stats (Datadog's containerd collector, which
//! it registers for the kata flavor too). For other containerd containers it is a fallback
//! after cgroupfs.
//!
//! The answer is a protobuf `Any` holding containerd's cgroups stats, v1
//! (`io.containerd.cgroups.v1.Metrics`) or v2 (`io.containerd.cgroups.v2.Metrics`), as laid out
//! in github.com/containerd/cgroups `cgroup1/stats/metrics.proto` and
//! `cgroup2/stats/metrics.proto`. The messages below hold only the fields mapped; prost skips
//! the others. proto3 scalars have no presence: a section (message) that is missing is `None`,
//! and within a present one a value the shim fills with 0 when its file is missing (limits,
//! `memory.peak`, swap) is `None` when 0; counters are taken as they are.
use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use containerd_client::{
    services::v1::{MetricsRequest, tasks_client::TasksClient},
    tonic::{Code, transport::Channel},
    types::Metric,
};
use prost::Message;

use super::{
    containerd::{WatchError, bounded, in_namespace, status_error},
    metadata::{MetadataStore, Source},
};
use crate::{
    cgroupfs::memory::{v1_limit, working_set},
    error_chain::ErrorChain,
    provider::{
        CollectorError, CollectorResult, ContainerStats, DeviceIoStats, Flavor, IoStats, MaxAge,
        StatsCollector,
    },
};

/// The collector's id (the `source` of its answers), Datadog's name for it.
pub const ID: &str = "containerd";

/// The type of a cgroup v1 task's metrics.
pub const V1_METRICS: &str = "io.containerd.cgroups.v1.Metrics";
/// The type of a cgroup v2 task's metrics.
pub const V2_METRICS: &str = "io.containerd.cgroups.v2.Metrics";

/// The flavor of a container whose containerd runtime is `runtime`: Kata for Kata's shims,
/// named `io.containerd.kata.v2` or `io.containerd.kata-<hypervisor>.v2` (as Kata's docs
/// configure them: `kata-qemu`, `kata-clh`, `kata-fc`, ...), or given as the path of a
/// `containerd-shim-kata*` binary (containerd 1.6+ accepts a path).
#[must_use]
pub fn flavor(runtime: &str) -> Flavor {
    let shim = runtime.rsplit('/').next().unwrap_or(runtime);
    let kata = shim
        .strip_prefix("io.containerd.kata")
        .is_some_and(|rest| rest.starts_with(['.', '-']))
        || shim.starts_with("containerd-shim-kata");
    if kata { Flavor::Kata } else { Flavor::Default }
}

/// Why task metrics could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TaskMetricsError {
    #[error(transparent)]
    Api(#[from] WatchError),
    #[error(
        "containerd's metrics of task {id} are of type {type_url:?}, neither cgroup v1's nor v2's"
    )]
    UnknownType { id: String, type_url: String },
    #[error("cannot decode containerd's {type_url} metrics of task {id}")]
    Decode {
        id: String,
        type_url: String,
        #[source]
        source: prost::DecodeError,
    },
    /// The collector was built outside a tokio runtime (unit tests): it cannot call.
    #[error("the containerd task client has no async runtime to call on")]
    NoRuntime,
}

/// Asks containerd's task service for the metrics of the containers containerd's watcher
/// listed (their namespace comes from there).
pub struct TaskMetrics {
    socket: PathBuf,
    timeout: Duration,
    store: Arc<MetadataStore>,
    /// One connection, made at the first call and dropped after a failure.
    channel: Mutex<Option<Channel>>,
    /// The daemon's tokio runtime: the provider's capabilities are synchronous and are
    /// called from blocking threads, which wait here on the gRPC call.
    handle: Option<tokio::runtime::Handle>,
}

impl std::fmt::Debug for TaskMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskMetrics")
            .field("socket", &self.socket)
            .finish_non_exhaustive()
    }
}

impl TaskMetrics {
    /// A client of the containerd at `socket`, each call bounded by `timeout`; containers
    /// are looked up in `store` (containerd's source).
    pub fn new(socket: PathBuf, timeout: Duration, store: Arc<MetadataStore>) -> Self {
        Self {
            socket,
            timeout,
            store,
            channel: Mutex::new(None),
            handle: tokio::runtime::Handle::try_current().ok(),
        }
    }

    /// The socket it calls.
    pub fn socket(&self) -> &std::path::Path {
        &self.socket
    }

    async fn channel(&self) -> Result<Channel, WatchError> {
        let cached = self
            .channel
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(channel) = cached {
            return Ok(channel);
        }
        let channel = bounded(self.timeout, "connect", async {
            containerd_client::connect(&self.socket)
                .await
                .map_err(|source| WatchError::Connect {
                    socket: self.socket.clone(),
                    source,
                })
        })
        .await?;
        *self.channel.lock().unwrap_or_else(PoisonError::into_inner) = Some(channel.clone());
        Ok(channel)
    }

    /// The metrics of task `id` of `namespace`; `None` when it has no task (created, not
    /// started, or exited and deleted).
    pub async fn metric(&self, namespace: &str, id: &str) -> Result<Option<Metric>, WatchError> {
        const CALL: &str = "Tasks.Metrics";
        let channel = self.channel().await?;
        // containerd's identifiers are letters, digits, `_`, `.` and `-`: no quoting needed.
        let request = in_namespace(
            namespace,
            MetricsRequest {
                filters: vec![format!("id=={id}")],
            },
        )?;
        let result = bounded(self.timeout, CALL, async {
            TasksClient::new(channel)
                .metrics(request)
                .await
                .map_err(status_error(CALL))
        })
        .await;
        match result {
            Ok(response) => Ok(response
                .into_inner()
                .metrics
                .into_iter()
                .find(|m| m.id == id)),
            Err(error) => {
                // A broken connection is made afresh at the next call.
                if matches!(
                    error,
                    WatchError::Timeout { .. }
                        | WatchError::Call {
                            code: Code::Unavailable | Code::Unknown | Code::Cancelled,
                            ..
                        }
                ) {
                    *self.channel.lock().unwrap_or_else(PoisonError::into_inner) = None;
                }
                Err(error)
            }
        }
    }

    /// The stats of container `id`: `None` when containerd's watcher does not list it or it
    /// has no task.
    fn read(&self, id: &str) -> Result<Option<ContainerStats>, TaskMetricsError> {
        if id.is_empty()
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        {
            return Ok(None);
        }
        let Some(namespace) = self
            .store
            .get_from(Source::Containerd, id)
            .and_then(|meta| meta.runtime_namespace.clone())
        else {
            return Ok(None);
        };
        let handle = self.handle.as_ref().ok_or(TaskMetricsError::NoRuntime)?;
        let Some(metric) = handle.block_on(self.metric(&namespace, id))? else {
            return Ok(None);
        };
        decode(&metric).map(Some)
    }
}

impl StatsCollector for TaskMetrics {
    fn container_stats(
        &self,
        _namespace: &str,
        container_id: &str,
        _max_age: MaxAge,
    ) -> CollectorResult<ContainerStats> {
        self.read(container_id)
            .map_err(|e| CollectorError::other(ErrorChain(&e).to_string()))
    }
}

/// The provider's stats of one task's `metric`, by the type of its data.
pub fn decode(metric: &Metric) -> Result<ContainerStats, TaskMetricsError> {
    let Some(data) = &metric.data else {
        return Ok(ContainerStats {
            timestamp: metric.timestamp.as_ref().and_then(system_time),
            ..ContainerStats::default()
        });
    };
    // containerd 1.6 sends the bare type name; `type.googleapis.com/` prefixes are allowed.
    let type_name = data.type_url.rsplit('/').next().unwrap_or_default();
    let decode_error = |source| TaskMetricsError::Decode {
        id: metric.id.clone(),
        type_url: data.type_url.clone(),
        source,
    };
    let mut stats = match type_name {
        V1_METRICS => v1::Metrics::decode(data.value.as_slice())
            .map_err(decode_error)?
            .stats(),
        V2_METRICS => v2::Metrics::decode(data.value.as_slice())
            .map_err(decode_error)?
            .stats(),
        _ => {
            return Err(TaskMetricsError::UnknownType {
                id: metric.id.clone(),
                type_url: data.type_url.clone(),
            });
        }
    };
    stats.timestamp = metric.timestamp.as_ref().and_then(system_time);
    Ok(stats)
}

fn system_time(t: &prost_types::Timestamp) -> Option<SystemTime> {
    let seconds = u64::try_from(t.seconds).ok().filter(|s| *s > 0)?;
    let nanos = u32::try_from(t.nanos).ok().filter(|n| *n < 1_000_000_000)?;
    UNIX_EPOCH.checked_add(Duration::new(seconds, nanos))
}

/// `value` unless it is 0, which the shim sends for a file it could not read.
fn nonzero(value: u64) -> Option<u64> {
    (value != 0).then_some(value)
}

/// A v2 limit: 0 (file missing) and `u64::MAX` (the shim's "max") are no limit.
fn v2_limit(value: u64) -> Option<u64> {
    (value != 0 && value != u64::MAX).then_some(value)
}

/// `us` microseconds in nanoseconds.
fn us_to_ns(us: u64) -> u64 {
    us.saturating_mul(1000)
}

/// The IO totals of per-device rows: `None` without rows (a v1 cgroup whose blkio files count
/// nothing, say), never a false 0.
fn io_totals(devices: BTreeMap<String, DeviceIoStats>) -> Option<IoStats> {
    if devices.is_empty() {
        return None;
    }
    let mut io = IoStats::default();
    for d in devices.values() {
        io.read_bytes = crate::stats::add_opt(io.read_bytes, d.read_bytes);
        io.write_bytes = crate::stats::add_opt(io.write_bytes, d.write_bytes);
        io.read_operations = crate::stats::add_opt(io.read_operations, d.read_operations);
        io.write_operations = crate::stats::add_opt(io.write_operations, d.write_operations);
    }
    io.devices = Some(devices);
    Some(io)
}

/// containerd's `io.containerd.cgroups.v1.Metrics`, the fields mapped.
pub mod v1 {
    use std::collections::BTreeMap;

    use super::{io_totals, nonzero, v1_limit, working_set};
    use crate::provider::{ContainerStats, CpuStats, DeviceIoStats, MemoryStats, PidStats};

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Metrics {
        #[prost(message, optional, tag = "2")]
        pub pids: Option<PidsStat>,
        #[prost(message, optional, tag = "3")]
        pub cpu: Option<CpuStat>,
        #[prost(message, optional, tag = "4")]
        pub memory: Option<MemoryStat>,
        #[prost(message, optional, tag = "5")]
        pub blkio: Option<BlkIoStat>,
        #[prost(message, optional, tag = "9")]
        pub memory_oom_control: Option<MemoryOomControl>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PidsStat {
        #[prost(uint64, tag = "1")]
        pub current: u64,
        /// `pids.max`; the shim reads "max" as 0.
        #[prost(uint64, tag = "2")]
        pub limit: u64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct CpuStat {
        #[prost(message, optional, tag = "1")]
        pub usage: Option<CpuUsage>,
        #[prost(message, optional, tag = "2")]
        pub throttling: Option<Throttle>,
    }

    /// `cpuacct.usage` and `cpuacct.stat`, in ns.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct CpuUsage {
        #[prost(uint64, tag = "1")]
        pub total: u64,
        #[prost(uint64, tag = "2")]
        pub kernel: u64,
        #[prost(uint64, tag = "3")]
        pub user: u64,
    }

    /// `cpu.stat`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Throttle {
        #[prost(uint64, tag = "1")]
        pub periods: u64,
        #[prost(uint64, tag = "2")]
        pub throttled_periods: u64,
        /// ns.
        #[prost(uint64, tag = "3")]
        pub throttled_time: u64,
    }

    /// `memory.stat` and the `memory.*` files: the `total_*` keys (the cgroup and its
    /// descendants), as the system collector reads them.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MemoryStat {
        #[prost(uint64, tag = "16")]
        pub hierarchical_memory_limit: u64,
        /// memory+swap.
        #[prost(uint64, tag = "17")]
        pub hierarchical_swap_limit: u64,
        #[prost(uint64, tag = "18")]
        pub total_cache: u64,
        #[prost(uint64, tag = "19")]
        pub total_rss: u64,
        #[prost(uint64, tag = "26")]
        pub total_pg_fault: u64,
        #[prost(uint64, tag = "27")]
        pub total_pg_maj_fault: u64,
        #[prost(uint64, tag = "30")]
        pub total_inactive_file: u64,
        /// `memory.{usage_in_bytes,max_usage_in_bytes,failcnt,limit_in_bytes}`.
        #[prost(message, optional, tag = "33")]
        pub usage: Option<MemoryEntry>,
        /// The `memory.memsw.*` files (memory+swap); zeros without swap accounting.
        #[prost(message, optional, tag = "34")]
        pub swap: Option<MemoryEntry>,
        /// The `memory.kmem.*` files; zeros where the kernel has none.
        #[prost(message, optional, tag = "35")]
        pub kernel: Option<MemoryEntry>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MemoryEntry {
        #[prost(uint64, tag = "1")]
        pub limit: u64,
        #[prost(uint64, tag = "2")]
        pub usage: u64,
        #[prost(uint64, tag = "3")]
        pub max: u64,
        #[prost(uint64, tag = "4")]
        pub failcnt: u64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MemoryOomControl {
        /// Since kernel 4.13.
        #[prost(uint64, tag = "3")]
        pub oom_kill: u64,
    }

    /// `blkio.*_recursive`, else `blkio.throttle.*`: `op` is `Read`, `Write`, `Sync`,
    /// `Async`, `Discard` or `Total`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct BlkIoStat {
        #[prost(message, repeated, tag = "1")]
        pub io_service_bytes_recursive: Vec<BlkIoEntry>,
        #[prost(message, repeated, tag = "2")]
        pub io_serviced_recursive: Vec<BlkIoEntry>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct BlkIoEntry {
        #[prost(string, tag = "1")]
        pub op: String,
        /// `/dev/<name>` from the shim's `/proc/partitions` (the guest's, under Kata).
        #[prost(string, tag = "2")]
        pub device: String,
        #[prost(uint64, tag = "3")]
        pub major: u64,
        #[prost(uint64, tag = "4")]
        pub minor: u64,
        #[prost(uint64, tag = "5")]
        pub value: u64,
    }

    impl Metrics {
        /// The provider's stats, computed as the system collector does from the same files.
        #[must_use]
        pub fn stats(&self) -> ContainerStats {
            ContainerStats {
                timestamp: None,
                cpu: self.cpu.as_ref().map(CpuStat::stats),
                memory: self.memory.as_ref().map(|m| {
                    let mut memory = m.stats();
                    memory.oom_kills = self.memory_oom_control.as_ref().map(|o| o.oom_kill);
                    memory
                }),
                io: self.blkio.as_ref().and_then(BlkIoStat::stats),
                pid: self.pids.as_ref().map(|p| PidStats {
                    thread_count: Some(p.current),
                    thread_limit: nonzero(p.limit),
                }),
            }
        }
    }

    impl CpuStat {
        fn stats(&self) -> CpuStats {
            let usage = self.usage.as_ref();
            let throttling = self.throttling.as_ref();
            CpuStats {
                total: usage.map(|u| u.total),
                system: usage.map(|u| u.kernel),
                user: usage.map(|u| u.user),
                elapsed_periods: throttling.map(|t| t.periods),
                throttled_periods: throttling.map(|t| t.throttled_periods),
                throttled_time: throttling.map(|t| t.throttled_time),
                ..CpuStats::default()
            }
        }
    }

    impl MemoryStat {
        fn stats(&self) -> MemoryStats {
            let usage = self.usage.as_ref().map(|u| u.usage);
            // memsw counts memory and swap: swap is the difference, where swap accounting
            // filled it (a memsw usage of 0 is its files missing).
            let swap = self
                .swap
                .as_ref()
                .filter(|s| s.usage > 0)
                .zip(usage)
                .map(|(s, usage)| s.usage.saturating_sub(usage));
            MemoryStats {
                usage_total: usage,
                // A kmem usage of 0 is its files missing (kernels without kmem accounting):
                // a running container always has some kernel memory.
                kernel_memory: self.kernel.as_ref().and_then(|k| nonzero(k.usage)),
                limit: nonzero(self.hierarchical_memory_limit).and_then(v1_limit),
                swap,
                swap_limit: nonzero(self.hierarchical_swap_limit).and_then(v1_limit),
                working_set: working_set(usage, Some(self.total_inactive_file)),
                // Per-CPU counter drift can print a negative total_rss (as u64): garbage.
                rss: (self.total_rss < 1 << 63).then_some(self.total_rss),
                cache: Some(self.total_cache),
                oom_events: self.usage.as_ref().map(|u| u.failcnt),
                failcnt: self.usage.as_ref().map(|u| u.failcnt),
                peak: self.usage.as_ref().and_then(|u| nonzero(u.max)),
                pgfault: Some(self.total_pg_fault),
                pgmajfault: Some(self.total_pg_maj_fault),
                ..MemoryStats::default()
            }
        }
    }

    impl BlkIoStat {
        fn stats(&self) -> Option<crate::provider::IoStats> {
            let mut devices: BTreeMap<String, DeviceIoStats> = BTreeMap::new();
            let rows = [
                (&self.io_service_bytes_recursive, true),
                (&self.io_serviced_recursive, false),
            ];
            for (entries, bytes) in rows {
                for e in entries {
                    let read = match e.op.as_str() {
                        "Read" | "read" => true,
                        "Write" | "write" => false,
                        _ => continue,
                    };
                    let name = match e.device.strip_prefix("/dev/") {
                        Some(name) if !name.is_empty() => name.to_owned(),
                        _ => format!("{}:{}", e.major, e.minor),
                    };
                    let d = devices.entry(name).or_default();
                    let slot = match (bytes, read) {
                        (true, true) => &mut d.read_bytes,
                        (true, false) => &mut d.write_bytes,
                        (false, true) => &mut d.read_operations,
                        (false, false) => &mut d.write_operations,
                    };
                    *slot = crate::stats::add_opt(*slot, Some(e.value));
                }
            }
            io_totals(devices)
        }
    }
}

/// containerd's `io.containerd.cgroups.v2.Metrics`, the fields mapped.
pub mod v2 {
    use std::collections::BTreeMap;

    use super::{io_totals, nonzero, us_to_ns, v2_limit, working_set};
    use crate::provider::{
        ContainerStats, CpuStats, DeviceIoStats, IoStats, MemoryStats, PidStats,
    };

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Metrics {
        #[prost(message, optional, tag = "1")]
        pub pids: Option<PidsStat>,
        #[prost(message, optional, tag = "2")]
        pub cpu: Option<CpuStat>,
        #[prost(message, optional, tag = "4")]
        pub memory: Option<MemoryStat>,
        #[prost(message, optional, tag = "6")]
        pub io: Option<IoStat>,
        #[prost(message, optional, tag = "8")]
        pub memory_events: Option<MemoryEvents>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PidsStat {
        #[prost(uint64, tag = "1")]
        pub current: u64,
        /// `pids.max`: `u64::MAX` for "max".
        #[prost(uint64, tag = "2")]
        pub limit: u64,
    }

    /// PSI totals, µs.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PsiData {
        #[prost(uint64, tag = "4")]
        pub total: u64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PsiStats {
        #[prost(message, optional, tag = "1")]
        pub some: Option<PsiData>,
        #[prost(message, optional, tag = "2")]
        pub full: Option<PsiData>,
    }

    impl PsiStats {
        /// The `some` and `full` totals in ns.
        fn totals(psi: Option<&Self>) -> (Option<u64>, Option<u64>) {
            let total = |d: Option<&PsiData>| d.map(|d| us_to_ns(d.total));
            psi.map_or((None, None), |p| {
                (total(p.some.as_ref()), total(p.full.as_ref()))
            })
        }
    }

    /// `cpu.stat`, µs.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct CpuStat {
        #[prost(uint64, tag = "1")]
        pub usage_usec: u64,
        #[prost(uint64, tag = "2")]
        pub user_usec: u64,
        #[prost(uint64, tag = "3")]
        pub system_usec: u64,
        #[prost(uint64, tag = "4")]
        pub nr_periods: u64,
        #[prost(uint64, tag = "5")]
        pub nr_throttled: u64,
        #[prost(uint64, tag = "6")]
        pub throttled_usec: u64,
        #[prost(message, optional, tag = "7")]
        pub psi: Option<PsiStats>,
    }

    /// `memory.stat` and the `memory.*` files.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MemoryStat {
        #[prost(uint64, tag = "1")]
        pub anon: u64,
        #[prost(uint64, tag = "2")]
        pub file: u64,
        #[prost(uint64, tag = "3")]
        pub kernel_stack: u64,
        #[prost(uint64, tag = "4")]
        pub slab: u64,
        #[prost(uint64, tag = "13")]
        pub inactive_file: u64,
        #[prost(uint64, tag = "18")]
        pub pgfault: u64,
        #[prost(uint64, tag = "19")]
        pub pgmajfault: u64,
        /// `memory.current`.
        #[prost(uint64, tag = "32")]
        pub usage: u64,
        /// `memory.max`.
        #[prost(uint64, tag = "33")]
        pub usage_limit: u64,
        /// `memory.swap.current`.
        #[prost(uint64, tag = "34")]
        pub swap_usage: u64,
        /// `memory.swap.max` (swap alone).
        #[prost(uint64, tag = "35")]
        pub swap_limit: u64,
        /// `memory.peak` (kernel 5.19+).
        #[prost(uint64, tag = "36")]
        pub max_usage: u64,
        #[prost(message, optional, tag = "38")]
        pub psi: Option<PsiStats>,
    }

    /// `memory.events`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MemoryEvents {
        #[prost(uint64, tag = "4")]
        pub oom: u64,
        #[prost(uint64, tag = "5")]
        pub oom_kill: u64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct IoStat {
        #[prost(message, repeated, tag = "1")]
        pub usage: Vec<IoEntry>,
        #[prost(message, optional, tag = "2")]
        pub psi: Option<PsiStats>,
    }

    /// A row of `io.stat`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct IoEntry {
        #[prost(uint64, tag = "1")]
        pub major: u64,
        #[prost(uint64, tag = "2")]
        pub minor: u64,
        #[prost(uint64, tag = "3")]
        pub rbytes: u64,
        #[prost(uint64, tag = "4")]
        pub wbytes: u64,
        #[prost(uint64, tag = "5")]
        pub rios: u64,
        #[prost(uint64, tag = "6")]
        pub wios: u64,
    }

    impl Metrics {
        /// The provider's stats, computed as the system collector does from the same files.
        #[must_use]
        pub fn stats(&self) -> ContainerStats {
            ContainerStats {
                timestamp: None,
                cpu: self.cpu.as_ref().map(CpuStat::stats),
                memory: self.memory.as_ref().map(|m| {
                    let mut memory = m.stats();
                    let events = self.memory_events.as_ref();
                    memory.oom_events = events.map(|e| e.oom);
                    memory.oom_kills = events.map(|e| e.oom_kill);
                    memory
                }),
                io: self.io.as_ref().and_then(IoStat::stats),
                pid: self.pids.as_ref().map(|p| PidStats {
                    thread_count: Some(p.current),
                    thread_limit: v2_limit(p.limit),
                }),
            }
        }
    }

    impl CpuStat {
        fn stats(&self) -> CpuStats {
            let (partial_stall_time, full_stall_time) = PsiStats::totals(self.psi.as_ref());
            CpuStats {
                total: Some(us_to_ns(self.usage_usec)),
                system: Some(us_to_ns(self.system_usec)),
                user: Some(us_to_ns(self.user_usec)),
                elapsed_periods: Some(self.nr_periods),
                throttled_periods: Some(self.nr_throttled),
                throttled_time: Some(us_to_ns(self.throttled_usec)),
                partial_stall_time,
                full_stall_time,
                ..CpuStats::default()
            }
        }
    }

    impl MemoryStat {
        fn stats(&self) -> MemoryStats {
            let (partial_stall_time, full_stall_time) = PsiStats::totals(self.psi.as_ref());
            // `memory.swap.max` is there whenever swap accounting is ("max" or a number), so
            // a 0 in both is the swap files missing.
            let swap_accounted = self.swap_limit != 0 || self.swap_usage != 0;
            MemoryStats {
                usage_total: Some(self.usage),
                // The proto has no `kernel` key (5.18+): the sum used before it existed.
                kernel_memory: Some(self.kernel_stack.saturating_add(self.slab)),
                limit: v2_limit(self.usage_limit),
                swap: swap_accounted.then_some(self.swap_usage),
                swap_limit: v2_limit(self.swap_limit),
                working_set: working_set(Some(self.usage), Some(self.inactive_file)),
                rss: Some(self.anon),
                cache: Some(self.file),
                peak: nonzero(self.max_usage),
                pgfault: Some(self.pgfault),
                pgmajfault: Some(self.pgmajfault),
                partial_stall_time,
                full_stall_time,
                ..MemoryStats::default()
            }
        }
    }

    impl IoStat {
        /// Devices are named by number: under Kata they are the guest's, whose names this
        /// host's `/proc/diskstats` does not know.
        fn stats(&self) -> Option<IoStats> {
            let devices: BTreeMap<String, DeviceIoStats> = self
                .usage
                .iter()
                .map(|e| {
                    (
                        format!("{}:{}", e.major, e.minor),
                        DeviceIoStats {
                            read_bytes: Some(e.rbytes),
                            write_bytes: Some(e.wbytes),
                            read_operations: Some(e.rios),
                            write_operations: Some(e.wios),
                        },
                    )
                })
                .collect();
            let mut io = io_totals(devices)?;
            (io.partial_stall_time, io.full_stall_time) = PsiStats::totals(self.psi.as_ref());
            Some(io)
        }
    }
}

#[cfg(test)]
mod tests {
    use prost_types::{Any, Timestamp};

    use super::*;
    use crate::provider::{CpuStats, MemoryStats, PidStats};

    fn metric(type_url: &str, value: Vec<u8>) -> Metric {
        Metric {
            timestamp: Some(Timestamp {
                seconds: 1_700_000_000,
                nanos: 5,
            }),
            id: "web".to_owned(),
            data: Some(Any {
                type_url: type_url.to_owned(),
                value,
            }),
        }
    }

    #[test]
    fn kata_runtimes_are_the_kata_flavor() {
        for kata in [
            "io.containerd.kata.v2",
            "io.containerd.kata-qemu.v2",
            "io.containerd.kata-clh.v2",
            "/opt/kata/bin/containerd-shim-kata-v2",
        ] {
            assert_eq!(flavor(kata), Flavor::Kata, "{kata}");
        }
        for other in [
            "io.containerd.runc.v2",
            "io.containerd.runsc.v1",
            "io.containerd.katana.v2",
            "",
        ] {
            assert_eq!(flavor(other), Flavor::Default, "{other}");
        }
    }

    #[test]
    #[expect(
        clippy::too_many_lines,
        reason = "one literal message and its whole mapping"
    )]
    fn v1_metrics_map_as_the_system_collector_reads_the_files() {
        let mib = 1 << 20;
        let v1 = v1::Metrics {
            pids: Some(v1::PidsStat {
                current: 3,
                limit: 0,
            }),
            cpu: Some(v1::CpuStat {
                usage: Some(v1::CpuUsage {
                    total: 5_000_000,
                    kernel: 1_000_000,
                    user: 3_000_000,
                }),
                throttling: Some(v1::Throttle {
                    periods: 10,
                    throttled_periods: 2,
                    throttled_time: 7_000,
                }),
            }),
            memory: Some(v1::MemoryStat {
                // Unlimited: PAGE_COUNTER_MAX pages.
                hierarchical_memory_limit: 9_223_372_036_854_771_712,
                hierarchical_swap_limit: 0,
                total_cache: 2 * mib,
                total_rss: 5 * mib,
                total_pg_fault: 100,
                total_pg_maj_fault: 1,
                total_inactive_file: mib,
                usage: Some(v1::MemoryEntry {
                    limit: 9_223_372_036_854_771_712,
                    usage: 8 * mib,
                    max: 9 * mib,
                    failcnt: 0,
                }),
                // No swap accounting: the shim left the memsw entry empty.
                swap: Some(v1::MemoryEntry::default()),
                kernel: Some(v1::MemoryEntry {
                    usage: 300_000,
                    ..v1::MemoryEntry::default()
                }),
            }),
            blkio: Some(v1::BlkIoStat {
                io_service_bytes_recursive: vec![
                    entry("Read", "/dev/vda", 4096),
                    entry("Write", "/dev/vda", 8192),
                    entry("Total", "/dev/vda", 12288),
                    entry("Read", "", 1),
                ],
                io_serviced_recursive: vec![
                    entry("Read", "/dev/vda", 1),
                    entry("Write", "/dev/vda", 2),
                ],
            }),
            memory_oom_control: Some(v1::MemoryOomControl { oom_kill: 0 }),
        };
        let stats = decode(&metric(V1_METRICS, v1.encode_to_vec())).unwrap();
        assert_eq!(
            stats.timestamp,
            Some(UNIX_EPOCH + Duration::new(1_700_000_000, 5))
        );
        assert_eq!(
            stats.cpu,
            Some(CpuStats {
                total: Some(5_000_000),
                system: Some(1_000_000),
                user: Some(3_000_000),
                elapsed_periods: Some(10),
                throttled_periods: Some(2),
                throttled_time: Some(7_000),
                ..CpuStats::default()
            })
        );
        assert_eq!(
            stats.memory,
            Some(MemoryStats {
                usage_total: Some(8 * mib),
                kernel_memory: Some(300_000),
                limit: None,
                swap: None,
                swap_limit: None,
                working_set: Some(7 * mib),
                rss: Some(5 * mib),
                cache: Some(2 * mib),
                oom_events: Some(0),
                failcnt: Some(0),
                oom_kills: Some(0),
                peak: Some(9 * mib),
                pgfault: Some(100),
                pgmajfault: Some(1),
                ..MemoryStats::default()
            })
        );
        assert_eq!(
            stats.pid,
            Some(PidStats {
                thread_count: Some(3),
                thread_limit: None,
            })
        );
        let io = stats.io.expect("io");
        assert_eq!(
            (
                io.read_bytes,
                io.write_bytes,
                io.read_operations,
                io.write_operations
            ),
            (Some(4097), Some(8192), Some(1), Some(2))
        );
        let devices = io.devices.expect("devices");
        assert_eq!(devices["vda"].read_bytes, Some(4096));
        assert_eq!(devices["8:0"].read_bytes, Some(1));
    }

    fn entry(op: &str, device: &str, value: u64) -> v1::BlkIoEntry {
        v1::BlkIoEntry {
            op: op.to_owned(),
            device: device.to_owned(),
            major: 8,
            minor: 0,
            value,
        }
    }

    #[test]
    fn v1_limits_swap_and_no_io_rows() {
        let v1 = v1::Metrics {
            memory: Some(v1::MemoryStat {
                hierarchical_memory_limit: 64 << 20,
                hierarchical_swap_limit: 128 << 20,
                usage: Some(v1::MemoryEntry {
                    usage: 10 << 20,
                    ..v1::MemoryEntry::default()
                }),
                swap: Some(v1::MemoryEntry {
                    usage: 12 << 20,
                    ..v1::MemoryEntry::default()
                }),
                ..v1::MemoryStat::default()
            }),
            pids: Some(v1::PidsStat {
                current: 1,
                limit: 100,
            }),
            blkio: Some(v1::BlkIoStat::default()),
            ..v1::Metrics::default()
        };
        let stats = decode(&metric(V1_METRICS, v1.encode_to_vec())).unwrap();
        let memory = stats.memory.unwrap();
        assert_eq!(
            (memory.limit, memory.swap_limit, memory.swap),
            (Some(64 << 20), Some(128 << 20), Some(2 << 20))
        );
        // No kmem files, no memory.oom_control in the answer: unknown, not 0.
        assert_eq!((memory.kernel_memory, memory.oom_kills), (None, None));
        assert_eq!(stats.pid.unwrap().thread_limit, Some(100));
        // blkio files that count nothing: IO unknown, never a false 0.
        assert_eq!(stats.io, None);
        assert_eq!(stats.cpu, None);
    }

    #[test]
    #[expect(
        clippy::too_many_lines,
        reason = "one literal message and its whole mapping"
    )]
    fn v2_metrics_are_converted_to_nanoseconds_and_limits() {
        let v2 = v2::Metrics {
            pids: Some(v2::PidsStat {
                current: 4,
                limit: u64::MAX,
            }),
            cpu: Some(v2::CpuStat {
                usage_usec: 1_500,
                user_usec: 1_000,
                system_usec: 500,
                nr_periods: 8,
                nr_throttled: 1,
                throttled_usec: 20,
                psi: Some(v2::PsiStats {
                    some: Some(v2::PsiData { total: 7 }),
                    full: Some(v2::PsiData { total: 3 }),
                }),
            }),
            memory: Some(v2::MemoryStat {
                anon: 3_000,
                file: 4_000,
                kernel_stack: 100,
                slab: 200,
                inactive_file: 9_000,
                pgfault: 11,
                pgmajfault: 0,
                usage: 8_000,
                usage_limit: 1 << 30,
                swap_usage: 0,
                swap_limit: u64::MAX,
                max_usage: 0,
                psi: None,
            }),
            io: Some(v2::IoStat {
                usage: vec![
                    v2::IoEntry {
                        major: 254,
                        minor: 0,
                        rbytes: 10,
                        wbytes: 20,
                        rios: 1,
                        wios: 2,
                    },
                    v2::IoEntry {
                        major: 7,
                        minor: 1,
                        rbytes: 5,
                        wbytes: 0,
                        rios: 1,
                        wios: 0,
                    },
                ],
                psi: None,
            }),
            memory_events: Some(v2::MemoryEvents {
                oom: 2,
                oom_kill: 1,
            }),
        };
        // With the prefix some clients put on type URLs.
        let url = format!("type.googleapis.com/{V2_METRICS}");
        let stats = decode(&metric(&url, v2.encode_to_vec())).unwrap();
        assert_eq!(
            stats.cpu,
            Some(CpuStats {
                total: Some(1_500_000),
                system: Some(500_000),
                user: Some(1_000_000),
                elapsed_periods: Some(8),
                throttled_periods: Some(1),
                throttled_time: Some(20_000),
                partial_stall_time: Some(7_000),
                full_stall_time: Some(3_000),
                ..CpuStats::default()
            })
        );
        assert_eq!(
            stats.memory,
            Some(MemoryStats {
                usage_total: Some(8_000),
                kernel_memory: Some(300),
                limit: Some(1 << 30),
                swap: Some(0),
                swap_limit: None,
                // inactive_file read after usage can exceed it: clamped.
                working_set: Some(0),
                rss: Some(3_000),
                cache: Some(4_000),
                oom_events: Some(2),
                oom_kills: Some(1),
                peak: None,
                pgfault: Some(11),
                pgmajfault: Some(0),
                ..MemoryStats::default()
            })
        );
        assert_eq!(
            stats.pid,
            Some(PidStats {
                thread_count: Some(4),
                thread_limit: None,
            })
        );
        let io = stats.io.unwrap();
        assert_eq!(
            (
                io.read_bytes,
                io.write_bytes,
                io.read_operations,
                io.write_operations,
                io.partial_stall_time
            ),
            (Some(15), Some(20), Some(2), Some(2), None)
        );
        assert_eq!(
            io.devices.unwrap().keys().collect::<Vec<_>>(),
            ["254:0", "7:1"]
        );
    }

    #[test]
    fn missing_sections_are_none_and_other_types_are_errors() {
        let empty = decode(&metric(V2_METRICS, Vec::new())).unwrap();
        assert_eq!(
            empty,
            ContainerStats {
                timestamp: Some(UNIX_EPOCH + Duration::new(1_700_000_000, 5)),
                ..ContainerStats::default()
            }
        );
        let windows = decode(&metric("io.microsoft.hcsshim.stats.v1.Statistics", vec![]));
        assert!(
            matches!(&windows, Err(TaskMetricsError::UnknownType { type_url, .. }) if type_url.starts_with("io.microsoft")),
            "{windows:?}"
        );
        // Field 2 (pids) as a varint where a message is expected.
        let garbled = decode(&metric(V1_METRICS, vec![0x10, 0x01]));
        assert!(
            matches!(garbled, Err(TaskMetricsError::Decode { .. })),
            "{garbled:?}"
        );
    }

    #[test]
    fn a_container_containerd_did_not_list_is_not_known() {
        let store = Arc::new(MetadataStore::default());
        let tasks = TaskMetrics::new(
            PathBuf::from("/nonexistent/containerd.sock"),
            Duration::from_secs(1),
            store,
        );
        assert_eq!(tasks.container_stats("", "web", Duration::ZERO), Ok(None));
        assert_eq!(
            tasks.container_stats("", "bad id\n", Duration::ZERO),
            Ok(None)
        );
    }
}
