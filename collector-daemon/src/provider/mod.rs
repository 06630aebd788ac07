//! The container metrics provider, modelled on the Datadog Agent's: runtimes and flavors,
//! per-capability collectors with priorities (lower wins), a registry that retries
//! collectors that are not ready yet, a meta collector that asks every collector in priority
//! order, and a cache where the caller says how stale an answer may be.
//!
//! Unlike Datadog's, the meta collector goes on past errors and empty answers, ties between
//! equal priorities break by collector id (not at random), and the cache expires entries one
//! by one.
//!
//! The parts:
//! - `capabilities`: one trait per capability, how a collector offers them, their errors;
//! - `registry`: calls collector factories until they succeed or fail for good, and merges
//!   what they offer into per-runtime, per-capability chains ordered by (priority, id);
//! - `meta`: the identity questions (a PID's process and container, a cgroup inode's, the
//!   daemon's own container, a pod's container, the list of containers), asked of every
//!   collector whatever its runtime;
//! - `runtime`: the chains of one runtime, and a container's full stats assembled from them;
//! - `cache` and `cached`: the staleness cache and the wrapper putting a collector behind it
//!   (identity answers are never cached);
//! - here: the `Provider` facade and the chain walk.
//!
//! Wiring: build the factories (a collector that wants caching wraps its `Collectors` with
//! `cached::make_cached(id, &cache, ..)` in its constructor, with a cache the daemon shares
//! between collectors), then `Provider::new(factories)`. Call the provider from blocking code
//! (`spawn_blocking`): collectors read files and may wait on a cache fetch.
pub mod cache;
pub mod cached;
pub mod capabilities;
pub mod meta;
pub mod registry;
pub mod runtime;
#[cfg(test)]
mod testing;

use std::{
    fmt,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

pub use capabilities::{
    CgroupIdentity, CollectionContext, CollectorCatalog, CollectorError, CollectorFactory,
    CollectorRef, CollectorResult, Collectors, ConstructError, ContainerIdForPodUidAndName,
    ContainerListing, IoCollector, MaxAge, NetworkCollector, OpenFilesCollector, PidsCollector,
    ProcessIdentity, StatsCollector,
};
pub use meta::MetaCollector;
pub use registry::{Catalog, CollectorChains, RETRY_INTERVAL, Registry, RetryLoop};
pub use runtime::{FullStats, RuntimeCollector};

pub use crate::{
    identity::container_id::Runtime,
    stats::{
        ContainerStats, CpuStats, DeviceIoStats, InterfaceNetStats, IoStats, MemoryStats,
        NetworkStats, PidStats,
    },
};

/// Every runtime the provider knows (Datadog's `AllLinuxRuntimes`).
pub const ALL_LINUX_RUNTIMES: [Runtime; 6] = [
    Runtime::Docker,
    Runtime::Containerd,
    Runtime::CriO,
    Runtime::Garden,
    Runtime::Podman,
    Runtime::EcsFargate,
];

/// Datadog's `RuntimeFlavor`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Flavor {
    #[default]
    Default,
    /// Kata Containers: the container's cgroups are inside a VM, not visible on the host.
    Kata,
}

impl Flavor {
    /// Datadog's string: "" for the default flavor, "kata".
    pub fn as_str(self) -> &'static str {
        match self {
            Flavor::Default => "",
            Flavor::Kata => "kata",
        }
    }
}

/// Datadog's `RuntimeMetadata`: which runtime runs a container, and its flavor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuntimeMetadata {
    pub runtime: Runtime,
    pub flavor: Flavor,
}

impl RuntimeMetadata {
    pub fn new(runtime: Runtime, flavor: Flavor) -> Self {
        Self { runtime, flavor }
    }
}

impl fmt::Display for RuntimeMetadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.flavor {
            Flavor::Default => f.write_str(self.runtime.as_str()),
            Flavor::Kata => write!(f, "{}-{}", self.runtime.as_str(), self.flavor.as_str()),
        }
    }
}

/// An answer, and which collector gave it (its id: "system", "ebpf", ...).
#[derive(Clone, Debug, PartialEq)]
pub struct Answer<T> {
    pub value: T,
    pub source: &'static str,
}

/// The error a chain ends with when no collector knew and at least one failed: the last
/// failure, and which collector it came from.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{collector}: {error}")]
pub struct ChainError {
    pub collector: &'static str,
    pub error: CollectorError,
}

/// What asking a chain of collectors gives: `Ok(None)` when none knows and none failed.
pub type ChainResult<T> = Result<Option<Answer<T>>, ChainError>;

/// Asks each collector of `chain` in order; the first `Ok(Some(_))` wins. Errors and
/// `Ok(None)` go on to the next collector (Datadog's stops at the first error).
/// If none knows, the last error if any, else `Ok(None)`.
pub(crate) fn first_known<C: ?Sized, T>(
    chain: &[CollectorRef<C>],
    mut ask: impl FnMut(&C) -> CollectorResult<T>,
) -> ChainResult<T> {
    let mut last_error = None;
    for link in chain {
        match ask(&link.collector) {
            Ok(Some(value)) => {
                return Ok(Some(Answer {
                    value,
                    source: link.id,
                }));
            }
            Ok(None) => {}
            Err(error) => {
                tracing::debug!(collector = link.id, %error, "collector failed; asking the next one");
                last_error = Some(ChainError {
                    collector: link.id,
                    error,
                });
            }
        }
    }
    last_error.map_or(Ok(None), Err)
}

/// The container metrics provider (Datadog's `GenericProvider`): the registry, its retry
/// loop, and per-runtime collectors over its current catalog.
///
/// The retry loop (see `registry`) stops when the provider is dropped or `shutdown` is
/// called, whichever comes first.
#[derive(Debug)]
pub struct Provider {
    registry: Arc<Registry>,
    retry: Mutex<Option<RetryLoop>>,
}

impl Provider {
    /// Constructs every collector that is ready now, and retries the others every 2 s (the
    /// Datadog's `GetProvider`, without the singleton).
    pub fn new(factories: Vec<CollectorFactory>) -> Self {
        Self::with_retry_interval(factories, RETRY_INTERVAL)
    }

    /// As `new`, retrying every `interval`.
    pub fn with_retry_interval(factories: Vec<CollectorFactory>, interval: Duration) -> Self {
        let registry = Arc::new(Registry::new(factories));
        let retry = registry.start(interval);
        Self {
            registry,
            retry: Mutex::new(Some(retry)),
        }
    }

    /// The collectors serving `runtime`, or `None` if none does (Datadog's `GetCollector`).
    /// Ask again for each use: better collectors can appear.
    pub fn collector(&self, runtime: RuntimeMetadata) -> Option<RuntimeCollector> {
        let catalog = self.registry.catalog();
        let chains = catalog.runtimes.get(&runtime)?;
        Some(RuntimeCollector::new(Arc::clone(chains)))
    }

    /// Every collector whatever its runtime, in the same order (priority, id): for a container
    /// whose runtime is unknown.
    pub fn collector_any(&self) -> RuntimeCollector {
        RuntimeCollector::new(Arc::clone(&self.registry.catalog().any))
    }

    /// The meta collector over the current catalog (Datadog's `GetMetaCollector`).
    pub fn meta(&self) -> MetaCollector {
        MetaCollector::new(Arc::clone(&self.registry.catalog().any))
    }

    /// The registry: its catalog, pending factories, and `on_update` for observers.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Stops the retry loop now (collectors already merged stay). Dropping the provider
    /// does the same.
    pub fn shutdown(&self) {
        let retry = self
            .retry
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        drop(retry);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::{
        testing::{Fake, Mode, catalog, ready},
        *,
    };

    const SECOND: Duration = Duration::from_secs(1);
    const DOCKER: RuntimeMetadata = RuntimeMetadata {
        runtime: Runtime::Docker,
        flavor: Flavor::Default,
    };
    const PODMAN: RuntimeMetadata = RuntimeMetadata {
        runtime: Runtime::Podman,
        flavor: Flavor::Default,
    };
    const GARDEN: RuntimeMetadata = RuntimeMetadata {
        runtime: Runtime::Garden,
        flavor: Flavor::Default,
    };

    fn provider(factories: Vec<CollectorFactory>) -> Provider {
        Provider::with_retry_interval(factories, Duration::from_hours(1))
    }

    #[expect(clippy::unnecessary_wraps, reason = "compared with what chains return")]
    fn known<T>(value: T, source: &'static str) -> ChainResult<T> {
        Ok(Some(Answer { value, source }))
    }

    #[test]
    fn unknown_runtime_has_no_collector() {
        let system = Fake::new("system", 1, Mode::Know);
        let provider = provider(vec![ready(
            "system",
            catalog(&[DOCKER], &system.offer_all(0)),
        )]);
        assert!(provider.collector(DOCKER).is_some());
        assert!(provider.collector(PODMAN).is_none());
    }

    #[test]
    fn runtime_chains_fall_through_errors_and_unknowns_in_priority_order() {
        let system = Fake::new("system", 1, Mode::Fail);
        let docker = Fake::new("docker", 2, Mode::DoNotKnow);
        let kubelet = Fake::new("kubelet", 3, Mode::Know);
        let provider = provider(vec![
            ready("kubelet", catalog(&[DOCKER], &kubelet.offer_all(2))),
            ready("docker", catalog(&[DOCKER], &docker.offer_all(1))),
            ready("system", catalog(&[DOCKER], &system.offer_all(0))),
        ]);
        let c = provider.collector(DOCKER).unwrap();
        assert_eq!(c.open_files("", "c1", SECOND), known(3, "kubelet"));
        assert_eq!(c.pids("", "c1", SECOND), known(vec![3], "kubelet"));
        let network = c.network("", "c1", SECOND).unwrap().unwrap();
        assert_eq!(
            (network.value.bytes_sent, network.source),
            (Some(3), "kubelet")
        );
        assert_eq!((system.calls(), docker.calls(), kubelet.calls()), (3, 3, 3));

        kubelet.set_mode(Mode::DoNotKnow);
        assert_eq!(
            c.stats("", "c1", SECOND),
            Err(ChainError {
                collector: "system",
                error: CollectorError::other("system failed"),
            })
        );
        system.set_mode(Mode::DoNotKnow);
        assert_eq!(c.io("", "c1", SECOND), Ok(None));
    }

    #[test]
    fn equal_priorities_break_by_collector_id() {
        let b = Fake::new("bravo", 2, Mode::Know);
        let a = Fake::new("alpha", 1, Mode::Know);
        for factories in [
            vec![
                ready("bravo", catalog(&[DOCKER], &b.offer_all(1))),
                ready("alpha", catalog(&[DOCKER], &a.offer_all(1))),
            ],
            vec![
                ready("alpha", catalog(&[DOCKER], &a.offer_all(1))),
                ready("bravo", catalog(&[DOCKER], &b.offer_all(1))),
            ],
        ] {
            let c = provider(factories).collector(DOCKER).unwrap();
            assert_eq!(c.open_files("", "c1", SECOND), known(1, "alpha"));
        }
    }

    #[test]
    fn collector_any_uses_every_runtime_in_order() {
        let garden = Fake::new("garden", 1, Mode::DoNotKnow);
        let docker = Fake::new("docker", 2, Mode::Know);
        let provider = provider(vec![
            ready("garden", catalog(&[GARDEN], &garden.offer_all(0))),
            ready("docker", catalog(&[DOCKER], &docker.offer_all(1))),
        ]);
        let any = provider.collector_any();
        assert_eq!(any.open_files("", "c1", SECOND), known(2, "docker"));
        assert_eq!(garden.calls(), 1);
        assert_eq!(any.chains().describe()["stats"], ["garden", "docker"]);
    }

    #[test]
    fn meta_collector_over_every_runtime() {
        let garden = Fake::new("garden", 1, Mode::Fail);
        let docker = Fake::new("docker", 2, Mode::Know);
        let provider = provider(vec![
            ready("garden", catalog(&[GARDEN], &garden.offer_all(0))),
            ready("docker", catalog(&[DOCKER], &docker.offer_all(1))),
        ]);
        assert_eq!(
            provider.meta().container_id_for_pid(1, SECOND),
            known("cid-docker".to_owned(), "docker")
        );
    }

    #[test]
    fn a_late_collector_is_picked_up_and_shutdown_stops_the_loop() {
        let tries = Arc::new(AtomicUsize::new(0));
        let docker = Fake::new("docker", 2, Mode::Know);
        let offer = catalog(&[DOCKER], &docker.offer_all(1));
        let counter = Arc::clone(&tries);
        let late = CollectorFactory {
            id: "docker",
            constructor: Box::new(move || {
                if counter.fetch_add(1, Ordering::SeqCst) < 2 {
                    Err(ConstructError::not_yet("socket absent"))
                } else {
                    Ok(offer.clone())
                }
            }),
        };
        let never_tries = Arc::new(AtomicUsize::new(0));
        let never_counter = Arc::clone(&never_tries);
        let never = CollectorFactory {
            id: "never",
            constructor: Box::new(move || {
                never_counter.fetch_add(1, Ordering::SeqCst);
                Err(ConstructError::not_yet("not yet"))
            }),
        };
        let provider = Provider::with_retry_interval(vec![late, never], Duration::from_millis(5));
        // Not there after the synchronous first round.
        crate::test_support::wait_until("docker to be merged", || {
            provider.collector(DOCKER).is_some()
        });
        assert_eq!(provider.registry().pending(), ["never"]);
        provider.shutdown();
        // `shutdown` joined the retry thread: it no longer holds the registry, so nothing
        // can call the pending constructor again.
        assert_eq!(Arc::strong_count(provider.registry()), 1);
    }
}
