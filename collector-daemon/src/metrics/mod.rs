//! The daemon's own health as Prometheus metrics (`OpenMetrics` text), built per scrape from
//! the live state: kernel counters, index sizes, repairs, and API requests by route.
use std::sync::{Arc, atomic::Ordering};

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

use crate::collectors::StatsCollectors;
use crate::identity::Identity;

type Labels = Vec<(&'static str, String)>;

/// The registry and the metrics updated as requests arrive.
pub struct Metrics {
    registry: Registry,
    requests: Family<Labels, Counter>,
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
        registry.register_collector(Box::new(StatsHealth { collectors }));
        Self { registry, requests }
    }

    /// Counts one API request.
    pub fn count_request(&self, route: String, status: u16) {
        self.requests
            .get_or_create(&vec![("route", route), ("code", status.to_string())])
            .inc();
    }

    /// The exposition text.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
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
