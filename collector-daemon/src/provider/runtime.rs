//! The collectors serving one runtime: each capability's chain, and the full stats of a
//! container assembled from all of them.
use std::{borrow::Cow, collections::BTreeMap, sync::Arc};

use serde::{Deserialize, Serialize};

use super::{
    Answer, ChainError, ChainResult, CollectionContext, CollectorChains, ContainerStats, IoStats,
    MaxAge, NetworkStats, first_known,
};

/// The collectors serving one runtime (or all of them, `Provider::collector_any`). Each
/// method walks its capability's chain like the meta collector: first that knows wins,
/// errors and "does not know" go on to the next.
#[derive(Clone, Debug)]
pub struct RuntimeCollector {
    chains: Arc<CollectorChains>,
}

impl RuntimeCollector {
    pub fn new(chains: Arc<CollectorChains>) -> Self {
        Self { chains }
    }

    /// The chains this collector walks (for the API to show).
    pub fn chains(&self) -> &CollectorChains {
        &self.chains
    }

    pub fn stats(
        &self,
        namespace: &str,
        container_id: &str,
        max_age: MaxAge,
    ) -> ChainResult<ContainerStats> {
        first_known(&self.chains.stats, |c| {
            c.container_stats(namespace, container_id, max_age)
        })
    }

    pub fn io(&self, namespace: &str, container_id: &str, max_age: MaxAge) -> ChainResult<IoStats> {
        first_known(&self.chains.io, |c| {
            c.container_io(namespace, container_id, max_age)
        })
    }

    pub fn network(
        &self,
        namespace: &str,
        container_id: &str,
        max_age: MaxAge,
    ) -> ChainResult<NetworkStats> {
        first_known(&self.chains.network, |c| {
            c.container_network(namespace, container_id, max_age)
        })
    }

    pub fn open_files(
        &self,
        namespace: &str,
        container_id: &str,
        max_age: MaxAge,
    ) -> ChainResult<u64> {
        first_known(&self.chains.open_files, |c| {
            c.container_open_files(namespace, container_id, max_age)
        })
    }

    pub fn pids(
        &self,
        namespace: &str,
        container_id: &str,
        max_age: MaxAge,
    ) -> ChainResult<Vec<u32>> {
        first_known(&self.chains.pids, |c| {
            c.container_pids(namespace, container_id, max_age)
        })
    }

    /// Everything known about a container, as the API serves it:
    /// - cpu, memory, io and pid from the stats chain;
    /// - `io` replaced by the IO chain's answer when it knows (its counters are the better
    ///   ones, e.g. eBPF), keeping the stats chain's `partial_stall_time` if the IO chain has
    ///   none (PSI comes from cgroupfs only);
    /// - network and open files from their chains.
    ///
    /// `sources` names the collector behind each section present. A chain that failed while
    /// others answered is listed in `errors`. `Ok(None)` when no chain knows the container;
    /// the last error when none knows and one failed.
    pub fn full_stats(
        &self,
        namespace: &str,
        container_id: &str,
        max_age: MaxAge,
    ) -> Result<Option<FullStats>, ChainError> {
        let collection = CollectionContext::default();
        self.collection_full_stats(namespace, container_id, max_age, &collection)
    }

    /// As [`Self::full_stats`], within the full collection `collection`, whose shared values
    /// the stats chain's collectors may take (see [`super::StatsCollector::collection_stats`]).
    pub fn collection_full_stats(
        &self,
        namespace: &str,
        container_id: &str,
        max_age: MaxAge,
        collection: &CollectionContext,
    ) -> Result<Option<FullStats>, ChainError> {
        let mut assembly = Assembly::default();
        let stats = first_known(&self.chains.stats, |c| {
            c.collection_stats(namespace, container_id, max_age, collection)
        });
        if let Some(answer) = assembly.take("stats", stats) {
            assembly.full.set_stats(answer);
        }
        if let Some(answer) = assembly.take("io", self.io(namespace, container_id, max_age)) {
            assembly.full.set_io(answer);
        }
        if let Some(Answer { value, source }) =
            assembly.take("network", self.network(namespace, container_id, max_age))
        {
            assembly.full.network = Some(value);
            assembly
                .full
                .sources
                .insert("network".into(), source.into());
        }
        if let Some(Answer { value, source }) = assembly.take(
            "open_files",
            self.open_files(namespace, container_id, max_age),
        ) {
            assembly.full.open_files = Some(value);
            assembly
                .full
                .sources
                .insert("open_files".into(), source.into());
        }
        assembly.finish()
    }
}

/// `full_stats` in progress: what is known so far, and the chains that failed.
#[derive(Default)]
struct Assembly {
    full: FullStats,
    known: bool,
    last_error: Option<ChainError>,
}

impl Assembly {
    /// The answer of chain `chain`, if it knew; a failure is listed in `errors`.
    fn take<T>(&mut self, chain: &str, result: ChainResult<T>) -> Option<Answer<T>> {
        match result {
            Ok(Some(answer)) => {
                self.known = true;
                Some(answer)
            }
            Ok(None) => None,
            Err(error) => {
                self.full.errors.insert(chain.to_owned(), error.to_string());
                self.last_error = Some(error);
                None
            }
        }
    }

    /// The full stats when any chain knew; else the last failure, or `None`.
    fn finish(self) -> Result<Option<FullStats>, ChainError> {
        if self.known {
            Ok(Some(self.full))
        } else {
            self.last_error.map_or(Ok(None), Err)
        }
    }
}

impl FullStats {
    /// The stats chain's answer: every section it has, named after its collector.
    fn set_stats(&mut self, Answer { value, source }: Answer<ContainerStats>) {
        let present = [
            ("cpu", value.cpu.is_some()),
            ("memory", value.memory.is_some()),
            ("io", value.io.is_some()),
            ("pid", value.pid.is_some()),
        ];
        for (section, is_some) in present {
            if is_some {
                self.sources.insert(section.into(), source.into());
            }
        }
        self.stats = value;
    }

    /// The IO chain's answer replaces the stats chain's `io`, keeping the stats chain's
    /// stall times (PSI comes from cgroupfs only) when the IO chain has none.
    fn set_io(&mut self, Answer { mut value, source }: Answer<IoStats>) {
        let stats_io = self.stats.io.as_ref();
        if value.partial_stall_time.is_none()
            && let Some(psi) = stats_io.and_then(|io| io.partial_stall_time)
        {
            value.partial_stall_time = Some(psi);
            value.full_stall_time = stats_io.and_then(|io| io.full_stall_time);
            let psi_source = self.sources.get("io").cloned().unwrap_or_default();
            self.sources
                .insert("io.partial_stall_time".into(), psi_source);
        }
        self.stats.io = Some(value);
        self.sources.insert("io".into(), source.into());
    }
}

/// What `RuntimeCollector::full_stats` returns: the container's stats (flattened: `timestamp`,
/// `cpu`, `memory`, `io`, `pid`), network and open files, and where each came from.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FullStats {
    #[serde(flatten)]
    pub stats: ContainerStats,
    pub network: Option<NetworkStats>,
    pub open_files: Option<u64>,
    /// Section (`cpu`, `memory`, `io`, `pid`, `network`, `open_files`, and
    /// `io.partial_stall_time` when it comes from another collector than the rest of `io`)
    /// to the id of the collector that gave it.
    /// (Section names and collector ids are static strings: no allocation per container.)
    pub sources: BTreeMap<Cow<'static, str>, Cow<'static, str>>,
    /// Chain (`stats`, `io`, `network`, `open_files`) to the error it ended with, for chains
    /// that failed while others answered.
    pub errors: BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use std::{
        sync::Arc,
        time::{Duration, Instant},
    };

    use super::super::{
        CollectionContext, CollectorFactory, CollectorResult, Collectors, ContainerStats, CpuStats,
        Flavor, MaxAge, Provider, Runtime, RuntimeMetadata, StatsCollector,
        cache::Cache,
        cached::make_cached,
        testing::{Fake, Mode, catalog, ready, reference},
    };
    use crate::cgroupfs::kernel_values::{DirKey, KernelCgroupValues, V1Values};

    const SECOND: Duration = Duration::from_secs(1);
    const DOCKER: RuntimeMetadata = RuntimeMetadata {
        runtime: Runtime::Docker,
        flavor: Flavor::Default,
    };

    /// An eBPF-like collector: IO only.
    fn io_only(fake: &Arc<Fake>, priority: u8) -> Collectors {
        Collectors {
            io: Some(reference(fake.clone(), priority, fake.id)),
            ..Collectors::default()
        }
    }

    fn provider(factories: Vec<CollectorFactory>) -> Provider {
        Provider::with_retry_interval(factories, Duration::from_hours(1))
    }

    #[test]
    fn full_stats_takes_io_from_the_io_chain_and_psi_from_stats() {
        let system = Fake::new("system", 4, Mode::Know);
        let ebpf = Fake::new("ebpf", 7, Mode::Know);
        let provider = provider(vec![
            ready("system", catalog(&[DOCKER], &system.offer_all(0))),
            ready("ebpf", catalog(&[DOCKER], &io_only(&ebpf, 0))),
        ]);
        let full = provider
            .collector(DOCKER)
            .unwrap()
            .full_stats("", "c1", SECOND)
            .unwrap()
            .unwrap();
        let io = full.stats.io.as_ref().unwrap();
        // ebpf's counters (value * 10), system's PSI (value + 1).
        assert_eq!(io.read_bytes, Some(70));
        assert_eq!(io.partial_stall_time, Some(5));
        assert_eq!(full.stats.cpu.as_ref().unwrap().total, Some(4));
        assert_eq!(full.network.as_ref().unwrap().bytes_sent, Some(4));
        assert_eq!(full.open_files, Some(4));
        let sources: Vec<_> = full
            .sources
            .iter()
            .map(|(k, v)| (k.as_ref(), v.as_ref()))
            .collect();
        assert_eq!(
            sources,
            [
                ("cpu", "system"),
                ("io", "ebpf"),
                ("io.partial_stall_time", "system"),
                ("network", "system"),
                ("open_files", "system"),
            ]
        );
        assert!(full.errors.is_empty());
        let json = serde_json::to_value(&full).unwrap();
        assert_eq!(json["cpu"]["total"], 4);
        assert_eq!(json["io"]["read_bytes"], 70);
        assert_eq!(json["sources"]["io"], "ebpf");
        assert_eq!(json["memory"], serde_json::Value::Null);
    }

    #[test]
    fn full_stats_keeps_the_io_chains_own_psi() {
        let system = Fake::new("system", 4, Mode::Know);
        let ebpf = Arc::new(Fake {
            io_psi: Some(99),
            ..Fake::plain("ebpf", 7, Mode::Know)
        });
        let provider = provider(vec![
            ready("system", catalog(&[DOCKER], &system.offer_all(0))),
            ready("ebpf", catalog(&[DOCKER], &io_only(&ebpf, 0))),
        ]);
        let c = provider.collector(DOCKER).unwrap();
        let full = c.full_stats("", "c1", SECOND).unwrap().unwrap();
        assert_eq!(full.stats.io.unwrap().partial_stall_time, Some(99));
        assert!(!full.sources.contains_key("io.partial_stall_time"));
    }

    #[test]
    fn full_stats_keeps_stats_io_when_the_io_chain_does_not_know() {
        let system = Fake::new("system", 4, Mode::Know);
        let ebpf = Fake::new("ebpf", 7, Mode::DoNotKnow);
        // Stats (with their IO) but no IO capability: the IO chain is ebpf alone.
        let system_offer = Collectors {
            io: None,
            ..system.offer_all(1)
        };
        let provider = provider(vec![
            ready("system", catalog(&[DOCKER], &system_offer)),
            ready("ebpf", catalog(&[DOCKER], &io_only(&ebpf, 0))),
        ]);
        let c = provider.collector(DOCKER).unwrap();
        let full = c.full_stats("", "c1", SECOND).unwrap().unwrap();
        assert_eq!(full.stats.io.unwrap().read_bytes, Some(4));
        assert_eq!(full.sources["io"], "system");
        assert_eq!(ebpf.calls(), 1);
    }

    #[test]
    fn full_stats_reports_failed_sections_beside_known_ones() {
        let system = Fake::new("system", 4, Mode::Know);
        let ebpf = Fake::new("ebpf", 7, Mode::Fail);
        let provider = provider(vec![
            ready("system", catalog(&[DOCKER], &system.offer_all(1))),
            ready("ebpf", catalog(&[DOCKER], &io_only(&ebpf, 0))),
        ]);
        let c = provider.collector(DOCKER).unwrap();
        let full = c.full_stats("", "c1", SECOND).unwrap().unwrap();
        // The io chain went on to system after ebpf failed: no error to report.
        assert_eq!(full.sources["io"], "system");
        assert!(full.errors.is_empty());

        system.set_mode(Mode::DoNotKnow);
        ebpf.set_mode(Mode::Know);
        let full = c.full_stats("", "c1", SECOND).unwrap().unwrap();
        assert_eq!(full.sources.keys().collect::<Vec<_>>(), ["io"]);
        assert!(full.stats.cpu.is_none() && full.network.is_none());

        ebpf.set_mode(Mode::Fail);
        system.set_mode(Mode::Fail);
        let c = provider.collector(DOCKER).unwrap();
        let err = c.full_stats("", "c1", SECOND).unwrap_err();
        assert_eq!(err.collector, "system");
    }

    #[test]
    fn full_stats_partial_with_errors_listed() {
        let stats_only = Fake::new("stats", 1, Mode::Know);
        let net_only = Fake::new("net", 2, Mode::Fail);
        let provider = provider(vec![
            ready(
                "stats",
                catalog(
                    &[DOCKER],
                    &Collectors {
                        stats: Some(reference(stats_only.clone(), 0, "stats")),
                        ..Collectors::default()
                    },
                ),
            ),
            ready(
                "net",
                catalog(
                    &[DOCKER],
                    &Collectors {
                        network: Some(reference(net_only.clone(), 0, "net")),
                        ..Collectors::default()
                    },
                ),
            ),
        ]);
        let c = provider.collector(DOCKER).unwrap();
        let full = c.full_stats("", "c1", SECOND).unwrap().unwrap();
        assert_eq!(full.stats.cpu.unwrap().total, Some(1));
        assert_eq!(full.errors["network"], "net: net failed");
    }

    #[test]
    fn full_stats_none_when_nobody_knows() {
        let system = Fake::new("system", 4, Mode::DoNotKnow);
        let provider = provider(vec![ready(
            "system",
            catalog(&[DOCKER], &system.offer_all(0)),
        )]);
        let c = provider.collector(DOCKER).unwrap();
        assert_eq!(c.full_stats("", "c1", SECOND), Ok(None));
    }

    /// Stats whose `cpu.total` counts the cgroups of the collection's kernel walk (no `cpu`
    /// without one).
    struct WalkSize;

    impl StatsCollector for WalkSize {
        fn container_stats(&self, _: &str, _: &str, _: MaxAge) -> CollectorResult<ContainerStats> {
            Ok(Some(ContainerStats::default()))
        }

        fn collection_stats(
            &self,
            _: &str,
            _: &str,
            _: MaxAge,
            collection: &CollectionContext,
        ) -> CollectorResult<ContainerStats> {
            let cpu = collection.kernel_walk.as_ref().map(|walk| CpuStats {
                total: u64::try_from(walk.by_dir.len()).ok(),
                ..CpuStats::default()
            });
            Ok(Some(ContainerStats {
                cpu,
                ..ContainerStats::default()
            }))
        }
    }

    #[test]
    fn a_collection_reaches_the_stats_collectors_through_the_cache() {
        let offer = Collectors {
            stats: Some(reference(Arc::new(WalkSize), 0, "walk")),
            ..Collectors::default()
        };
        let cached = make_cached("walk", &Arc::new(Cache::default()), &offer);
        let provider = provider(vec![ready("walk", catalog(&[DOCKER], &cached))]);
        let c = provider.collector(DOCKER).unwrap();
        let walk = KernelCgroupValues {
            taken: Instant::now(),
            by_dir: [(DirKey { dev: 1, ino: 2 }, V1Values::default())]
                .into_iter()
                .collect(),
            v2_by_dir: crate::fast_map::FastMap::default(),
        };
        let collection = CollectionContext {
            kernel_walk: Some(Arc::new(walk)),
        };
        let full = c
            .collection_full_stats("", "c1", Duration::ZERO, &collection)
            .unwrap()
            .unwrap();
        assert_eq!(full.stats.cpu.and_then(|cpu| cpu.total), Some(1));
        // Outside a collection nothing is shared.
        let full = c.full_stats("", "c1", Duration::ZERO).unwrap().unwrap();
        assert_eq!(full.stats.cpu, None);
    }
}
