//! `/metrics`: cAdvisor's container families (`containers.rs`), and the daemon's own health
//! (kernel counters, index sizes, repairs, runtime APIs, API requests by route), all built
//! per scrape from the live state, in the format the scraper asks for (`exposition.rs`).
pub mod containers;
pub mod exposition;

use std::{
    sync::{Arc, atomic::Ordering},
    time::SystemTime,
};

use collector_common::counters;
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric as _},
    metrics::{
        counter::{ConstCounter, Counter},
        family::Family,
        gauge::ConstGauge,
    },
    registry::Registry,
};

use self::exposition::{Format, Writer, openmetrics_to_text, strip_eof};
use crate::{
    collectors::{StatsCollectors, metadata::Source},
    identity::Identity,
};

type Labels = Vec<(&'static str, String)>;

/// The registry and the metrics updated as requests arrive.
pub struct Metrics {
    registry: Registry,
    requests: Family<Labels, Counter>,
    collectors: Arc<StatsCollectors>,
}

impl Metrics {
    /// Metrics for a daemon serving `identity` and `collectors`' stats.
    pub fn new(identity: Arc<Identity>, collectors: Arc<StatsCollectors>) -> Self {
        let mut registry = Registry::default();
        let requests = Family::<Labels, Counter>::default();
        registry.register(
            "collector_api_requests",
            "Socket API requests by route and HTTP status",
            requests.clone(),
        );
        registry.register_collector(Box::new(IdentityCollector { identity }));
        registry.register_collector(Box::new(StatsHealth {
            collectors: Arc::clone(&collectors),
        }));
        Self {
            registry,
            requests,
            collectors,
        }
    }

    /// Counts one API request.
    pub fn count_request(&self, route: String, status: u16) {
        self.requests
            .get_or_create(&vec![("route", route), ("code", status.to_string())])
            .inc();
    }

    /// The daemon's own health, as `OpenMetrics` text.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }

    /// A whole scrape in `format`: one full stats collection as the container families, then
    /// the daemon's health (read after the collection, so it counts it). Blocking: it reads
    /// cgroupfs, procfs and the kernel maps.
    pub fn scrape(&self, format: Format) -> Result<String, std::fmt::Error> {
        let rows = containers::collect(&self.collectors);
        let health = self.encode()?;
        // ~40 samples of ~200 bytes per container.
        let mut out = String::with_capacity(health.len() + rows.len() * 8_192);
        match format {
            Format::Text => out.push_str(&openmetrics_to_text(&health)),
            Format::OpenMetrics => out.push_str(strip_eof(&health)),
        }
        let mut writer = Writer::new(&mut out, format);
        containers::encode(&mut writer, &rows, SystemTime::now());
        writer.finish();
        Ok(out)
    }
}

/// The stats collectors' own state.
struct StatsHealth {
    collectors: Arc<StatsCollectors>,
}

impl std::fmt::Debug for StatsHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatsHealth").finish_non_exhaustive()
    }
}

impl Collector for StatsHealth {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let (held, limit) = self.collectors.held_cgroup_files();
        let as_i64 = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        gauge(
            &mut encoder,
            "collector_stats_cgroup_files_held",
            "cgroup stats files kept open between reads (~5 KiB of kernel memory each)",
            as_i64(held),
        )?;
        gauge(
            &mut encoder,
            "collector_stats_cgroup_files_limit",
            "The most cgroup stats files kept open (--cgroup-file-cache, bounded by RLIMIT_NOFILE)",
            as_i64(limit),
        )?;
        self.encode_runtimes(&mut encoder)?;
        let (walks, walked) = self.collectors.cgroup_walks();
        counter(
            &mut encoder,
            "collector_stats_cgroup_walks",
            "Kernel walks of the v1 hierarchies made for full collections",
            walks,
        )?;
        gauge(
            &mut encoder,
            "collector_stats_cgroups_walked",
            "Cgroups whose v1 memory, cpu, pids and cpuset values the last kernel walk read",
            as_i64(walked),
        )
    }
}

impl StatsHealth {
    /// Whether each runtime API answers, and how many containers it told of.
    fn encode_runtimes(&self, encoder: &mut DescriptorEncoder) -> std::fmt::Result {
        let store = self.collectors.metadata();
        {
            let mut family = encoder.encode_descriptor(
                "collector_runtime_up",
                "1 when the runtime's API answers and its events are followed, 0 when it is down, absent or disabled",
                None,
                prometheus_client::metrics::MetricType::Gauge,
            )?;
            for source in Source::ALL {
                ConstGauge::new(i64::from(store.state(source).is_up()))
                    .encode(family.encode_family(&[("runtime", source.as_str())])?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "collector_runtime_containers",
            "Containers the runtime's API told of (names, images, labels known)",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for source in Source::ALL {
            ConstGauge::new(as_i64(store.len(source)))
                .encode(family.encode_family(&[("runtime", source.as_str())])?)?;
        }
        Ok(())
    }
}

#[derive(Debug)]
struct IdentityCollector {
    identity: Arc<Identity>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity").finish_non_exhaustive()
    }
}

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: i64) -> std::fmt::Result {
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> std::fmt::Result {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn as_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Collector for IdentityCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        self.identity.sync();
        self.encode_identity(&mut encoder)?;
        if let Some(kernel) = self.identity.kernel() {
            encode_kernel(&mut encoder, &kernel.counters())?;
            let (live, _) = self.identity.process_counts();
            encode_programs(&mut encoder, kernel, live)?;
        }
        Ok(())
    }
}

impl IdentityCollector {
    fn encode_identity(&self, encoder: &mut DescriptorEncoder) -> std::fmt::Result {
        let identity = &self.identity;
        {
            let info = ConstGauge::new(1i64);
            let mut family = encoder.encode_descriptor(
                "collector_build_info",
                "Build information",
                None,
                info.metric_type(),
            )?;
            let labels = [("version", env!("CARGO_PKG_VERSION"))];
            info.encode(family.encode_family(&labels)?)?;
        }
        gauge(
            encoder,
            "collector_ebpf_enabled",
            "1 when identity answers come from the kernel programs, 0 when from procfs",
            i64::from(identity.kernel().is_some()),
        )?;
        let (live, exited) = identity.process_counts();
        {
            let mut family = encoder.encode_descriptor(
                "collector_identity_processes",
                "Processes in the identity index, live and exited within the grace period",
                None,
                prometheus_client::metrics::MetricType::Gauge,
            )?;
            for (state, n) in [("live", live), ("exited", exited)] {
                ConstGauge::new(as_i64(n)).encode(family.encode_family(&[("state", state)])?)?;
            }
        }
        gauge(
            encoder,
            "collector_identity_cgroups",
            "Live cgroup directories in the index, all hierarchies",
            as_i64(identity.cgroup_count()),
        )?;
        let stats = identity.stats();
        for (name, help, value) in [
            (
                "collector_identity_events_applied",
                "Kernel lifecycle events applied to the index",
                &stats.events_applied,
            ),
            (
                "collector_identity_repairs",
                "Repairs (kernel re-seed and cgroup walk) after lost events",
                &stats.repairs,
            ),
            (
                "collector_identity_cgroup_scans",
                "Walks of the cgroup mounts",
                &stats.cgroup_scans,
            ),
            (
                "collector_identity_procfs_fallbacks",
                "PID lookups answered from procfs while the kernel programs run (thread ids, untracked processes)",
                &stats.procfs_fallbacks,
            ),
        ] {
            counter(encoder, name, help, value.load(Ordering::Relaxed))?;
        }
        Ok(())
    }
}

/// Whether the kernel keeps BPF run statistics (`sysctl kernel.bpf_stats_enabled=1`; off by
/// default, as counting costs ~20 ns a run).
fn bpf_stats_enabled() -> bool {
    std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled").is_ok_and(|v| v.trim() == "1")
}

/// Per-program runs and run time (when the kernel counts them) and the programs' maps'
/// capacity and occupancy: `processes_live` for `PROCESSES` (the kernel programs keep one
/// entry per live process, the index mirrors it), the last snapshot's size for the usage
/// counters.
fn encode_programs(
    encoder: &mut DescriptorEncoder,
    kernel: &crate::ebpf::KernelTracker,
    processes_live: usize,
) -> std::fmt::Result {
    use collector_common::names::{IO_COUNTERS_MAP, NET_COUNTERS_MAP, PROCESSES_MAP};
    use prometheus_client::metrics::MetricType;
    let enabled = bpf_stats_enabled();
    gauge(
        encoder,
        "collector_bpf_stats_enabled",
        "1 when the kernel counts BPF program runs and run time (sysctl kernel.bpf_stats_enabled)",
        i64::from(enabled),
    )?;
    let (programs, maps) = kernel.program_stats();
    if enabled {
        let mut runs = encoder.encode_descriptor(
            "collector_bpf_program_runs",
            "Runs of each kernel program since it was loaded (counted while kernel.bpf_stats_enabled is 1)",
            None,
            MetricType::Counter,
        )?;
        for p in &programs {
            ConstCounter::new(p.runs)
                .encode(runs.encode_family(&[("program", p.name.as_str())])?)?;
        }
        let mut time = encoder.encode_descriptor(
            "collector_bpf_program_run_seconds",
            "Time each kernel program spent running (counted while kernel.bpf_stats_enabled is 1)",
            None,
            MetricType::Counter,
        )?;
        for p in &programs {
            ConstCounter::new(p.run_time.as_secs_f64())
                .encode(time.encode_family(&[("program", p.name.as_str())])?)?;
        }
    }
    {
        let mut capacity = encoder.encode_descriptor(
            "collector_bpf_map_capacity",
            "Most entries each map of the kernel programs holds (bytes for the ring buffer)",
            None,
            MetricType::Gauge,
        )?;
        for (name, max_entries) in maps.values() {
            ConstGauge::new(i64::from(*max_entries))
                .encode(capacity.encode_family(&[("map", name.as_str())])?)?;
        }
    }
    let (net, io) = kernel.usage().last_entries();
    let mut entries = encoder.encode_descriptor(
        "collector_bpf_map_entries",
        "Entries in the maps that grow with the node: live processes, and cgroups (and disks) with counted traffic as the last read found them",
        None,
        MetricType::Gauge,
    )?;
    for (name, count) in [
        (PROCESSES_MAP, Some(processes_live)),
        (NET_COUNTERS_MAP, net),
        (IO_COUNTERS_MAP, io),
    ] {
        if let Some(count) = count {
            ConstGauge::new(as_i64(count)).encode(entries.encode_family(&[("map", name)])?)?;
        }
    }
    Ok(())
}

fn encode_kernel(
    encoder: &mut DescriptorEncoder,
    values: &[u64; counters::COUNT as usize],
) -> std::fmt::Result {
    {
        let mut family = encoder.encode_descriptor(
            "collector_kernel_events",
            "Lifecycle events seen by the kernel programs, by kind",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for index in [
            counters::PROCESSES_CREATED,
            counters::THREADS_CREATED,
            counters::PROCESSES_EXITED,
            counters::EXECS,
            counters::ATTACHES,
            counters::CGROUPS_CREATED,
            counters::CGROUPS_REMOVED,
        ] {
            let kind = counters::NAMES[index as usize];
            ConstCounter::new(values[index as usize])
                .encode(family.encode_family(&[("kind", kind)])?)?;
        }
    }
    for (index, name, help) in [
        (
            counters::EVENTS_LOST,
            "collector_kernel_events_lost",
            "Events dropped because the ring buffer was full (each triggers a repair)",
        ),
        (
            counters::PROCESS_MAP_FULL,
            "collector_kernel_process_map_full",
            "Processes not inserted in the pinned PROCESSES map because it was full (see --max-processes)",
        ),
        (
            counters::READ_ERRORS,
            "collector_kernel_read_errors",
            "Failed reads of kernel structures in the programs",
        ),
        (
            counters::NET_MAP_FULL,
            "collector_kernel_net_map_full",
            "Packets not counted because the per-cgroup network counter map was full (see --net-counter-entries)",
        ),
        (
            counters::IO_MAP_FULL,
            "collector_kernel_io_map_full",
            "Block IOs not counted because the block IO counter map was full (see --io-counter-entries)",
        ),
        (
            counters::CGROUP_VALUES_FULL,
            "collector_kernel_cgroup_values_full",
            "Cgroups a kernel walk could not record (see --cgroup-values-entries); their files are read",
        ),
    ] {
        counter(encoder, name, help, values[index as usize])?;
    }
    Ok(())
}
