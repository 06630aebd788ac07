//! The concrete collectors behind the metrics provider, one file per collector, and the
//! wiring that registers them.
//!
//! | collector | stats (cpu, memory, pid) | io | network | open files | pids | identity |
//! |---|---|---|---|---|---|---|
//! | `identity` (identity service) | – | – | – | – | – | 0 |
//! | `ebpf` (kernel maps) | – | 0 | 0 | – | 0 | – |
//! | `system` (cgroupfs, procfs) | 0 | 1 | 1 | 0 | 1 | – |
//! | `podman` (libpod API; podman's containers only) | 2 | – | – | – | – | – |
//! | `cri` (CRI runtime service) | 2 (CRI-O only) | – | – | – | – | pod lookups: 0 |
//! | `ecsfargate` (task metadata v4), ECS Fargate only | 0 | – | 0 | – | – | – |
//! | `garden` (Garden API), Garden's containers only | 2 | – | 2 | – | – | – |
//! | `kubelet` (`/pods`) | – | – | – | – | – | pod container: 2 |
//! | `containerd` (task metrics): containerd's Kata flavor | 0 | – | – | – | – | – |
//! | `containerd` (task metrics): containerd, default flavor | 3 | – | – | – | – | – |
//!
//! Lower wins; a collector that errs or does not know hands over to the next. "identity" is
//! the answers about processes, cgroup inodes and the container list (`ProcessIdentity`,
//! `CgroupIdentity`, `ContainerListing`), asked through the meta collector; inside the
//! identity service the kernel index answers first and procfs second. The eBPF collector's
//! constructor fails for good when the kernel programs are off (`--no-ebpf` or a load
//! failure): the system collector then answers the stats alone. The runtime APIs (Docker,
//! containerd, ...) come later, and join the meta collector with pod UID and container name
//! lookups.
pub mod containerd;
pub mod containerd_tasks;
pub mod containers;
pub mod cri;
pub mod crio;
pub mod docker;
pub mod ebpf;
pub mod ecsfargate;
pub mod garden;
pub mod identity;
pub mod kubelet;
pub mod metadata;
pub mod pod_network;
pub mod podman;
pub mod podman_pidns;
pub mod podman_sockets;
pub mod remote;
pub mod system;

use std::{path::Path, sync::Arc, time::Duration};

use self::{
    containerd_tasks::TaskMetrics,
    containers::ContainerDirectory,
    cri::{CriClient, CriCollector, ProbeError},
    ebpf::EbpfCollector,
    identity::IdentityCollector,
    metadata::{MetadataStore, Source, SourceState},
    podman::PodmanStats,
    podman_sockets::PodmanRegistry,
    remote::RemoteSource,
    system::SystemCollector,
};
use crate::{
    cgroupfs::kernel_values::CgroupValuesSource,
    identity::{ContainerEntry, ContainerRef, Identity},
    provider::{
        ALL_LINUX_RUNTIMES, ChainError, CollectionContext, CollectorCatalog, CollectorFactory,
        CollectorRef, Collectors, ConstructError, Flavor, FullStats, Provider, Runtime,
        RuntimeMetadata, cache::Cache, cached::make_cached,
    },
};

/// The namespace argument of Datadog's getters; container ids are unique on a node.
const NAMESPACE: &str = "";

/// The stats of one container, with the collector behind each part.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StatsReport {
    /// The container.
    pub container_id: String,
    /// Its runtime, when its cgroup path tells it (or, for a container without one, the
    /// runtime API that lists it).
    pub runtime: Option<Runtime>,
    /// How that runtime runs it (Kata: in a VM, whose cgroups the host cannot read).
    pub flavor: Flavor,
    /// The provider's answer.
    pub full: FullStats,
}

/// The provider and its collectors.
pub struct StatsCollectors {
    provider: Provider,
    directory: Arc<ContainerDirectory>,
    system: Arc<SystemCollector>,
    ebpf: Option<Arc<EbpfCollector>>,
    metadata: Arc<MetadataStore>,
    remote: RemoteSources,
    container_labels: Vec<String>,
    cri: Option<Arc<CriClient>>,
    podman: Arc<PodmanRegistry>,
}

/// A runtime API's socket and how long one request to it may take.
#[derive(Clone, Debug)]
pub struct ApiSocket {
    pub socket: std::path::PathBuf,
    pub timeout: Duration,
}

/// The runtime APIs the stats collectors ask beyond the cgroups; `None`: not asked.
#[derive(Clone, Debug, Default)]
pub struct RuntimeApis {
    /// Podman's libpod APIs (each container's own socket, see `podman_sockets`): stats of
    /// Podman's containers, within this timeout.
    pub podman: Option<Duration>,
    /// The CRI runtime service: pod lookups and CRI-O's stats.
    pub cri: Option<ApiSocket>,
    /// containerd's task service: stats of Kata containers (and of others, after cgroupfs).
    pub containerd: Option<ApiSocket>,
}

/// The runtimes asked over HTTP by polling (`remote.rs`): their snapshots and states.
pub struct RemoteSources {
    pub ecsfargate: Arc<RemoteSource>,
    pub garden: Arc<RemoteSource>,
    pub kubelet: Arc<RemoteSource>,
}

impl RemoteSources {
    fn new(store: &Arc<MetadataStore>) -> Self {
        let source = |s, runtime| Arc::new(RemoteSource::new(s, runtime, Arc::clone(store)));
        Self {
            ecsfargate: source(Source::EcsFargate, Some(Runtime::EcsFargate)),
            garden: source(Source::Garden, Some(Runtime::Garden)),
            kubelet: source(Source::Kubelet, None),
        }
    }

    /// The runtime of `id` when a source that lists its containers has it.
    fn runtime_of(&self, id: &str) -> Option<Runtime> {
        self.all()
            .into_iter()
            .filter(|s| !s.pod_listing_only())
            .find(|s| s.snapshot().containers.contains_key(id))
            .and_then(|s| s.runtime)
    }

    /// Every source, for the container list.
    pub fn all(&self) -> [&Arc<RemoteSource>; 3] {
        [&self.ecsfargate, &self.garden, &self.kubelet]
    }
}

impl StatsCollectors {
    /// Builds the collectors over `identity` and registers them with a new provider; at
    /// most `cgroup_file_cache` cgroup files are kept open between reads.
    /// `container_labels` are the runtime labels exported and answered (the allow-list).
    /// `apis` says which runtime APIs beyond the cgroups are asked, and where.
    pub fn start(
        identity: &Arc<Identity>,
        proc_root: &Path,
        cgroup_file_cache: usize,
        container_labels: Vec<String>,
        apis: RuntimeApis,
    ) -> Self {
        let metadata = Arc::new(MetadataStore::default());
        let directory = Arc::new(ContainerDirectory::new(Arc::clone(identity)));
        // One cache for every collector: keys carry the collector's id.
        let cache = Arc::new(Cache::default());
        let kernel_values = identity
            .kernel()
            .and_then(|kernel| kernel.cgroup_walker())
            .map(|walker| Arc::clone(walker) as Arc<dyn CgroupValuesSource>);
        let system = Arc::new(SystemCollector::new(
            Arc::clone(&directory),
            identity.layout().clone(),
            proc_root,
            cgroup_file_cache,
            kernel_values,
        ));
        let ebpf = identity
            .kernel()
            .map(|_| Arc::new(EbpfCollector::new(Arc::clone(&directory), proc_root)));
        let remote = RemoteSources::new(&metadata);
        let mut factories = vec![
            identity_factory(Arc::new(IdentityCollector::new(Arc::clone(identity)))),
            system_factory(Arc::clone(&system), Arc::clone(&cache)),
            ebpf_factory(ebpf.clone(), Arc::clone(&cache)),
            ecsfargate_factory(Arc::clone(&remote.ecsfargate)),
            garden_factory(Arc::clone(&remote.garden)),
            kubelet_factory(Arc::clone(&remote.kubelet)),
        ];
        let podman = Arc::new(PodmanRegistry::new(Arc::clone(&metadata)));
        if let Some(timeout) = apis.podman {
            let stats = PodmanStats::new(Arc::clone(&podman), timeout);
            factories.push(podman_factory(
                Arc::new(stats),
                Arc::clone(&metadata),
                Arc::clone(&cache),
            ));
        }
        if let Some(api) = apis.containerd {
            let tasks = TaskMetrics::new(api.socket, api.timeout, Arc::clone(&metadata));
            factories.push(containerd_tasks_factory(
                Arc::new(tasks),
                Arc::clone(&metadata),
                Arc::clone(&cache),
            ));
        }
        let cri = apis.cri.map(|api| {
            Arc::new(CriClient::new(
                api.socket,
                api.timeout,
                Arc::clone(&metadata),
            ))
        });
        match &cri {
            Some(client) => factories.push(cri_factory(Arc::clone(client), cache)),
            None => {
                metadata.set_state(Source::Cri, SourceState::Disabled);
            }
        }
        Self {
            provider: Provider::new(factories),
            directory,
            system,
            ebpf,
            metadata,
            remote,
            container_labels,
            cri,
            podman,
        }
    }

    /// The Podman sockets' containers (the watchers keep it current).
    pub fn podman(&self) -> &Arc<PodmanRegistry> {
        &self.podman
    }

    /// Where the CRI runtime stands, for messages: its socket and state.
    pub fn cri_status(&self) -> String {
        match &self.cri {
            None => "turned off by --cri-socket none".to_owned(),
            Some(client) => match self.metadata.state(metadata::Source::Cri) {
                metadata::SourceState::Absent { reason } => reason,
                _ => match client.probe() {
                    Ok(()) => format!("{} is not registered yet", client.socket().display()),
                    Err(e) => format!("{}: {e}", client.socket().display()),
                },
            },
        }
    }

    /// The live containers whose cgroup paths say `runtime` runs them.
    pub fn container_ids(&self, runtime: Runtime) -> Vec<String> {
        self.directory
            .snapshot(Duration::from_secs(1))
            .containers
            .iter()
            .filter(|(_, entry)| !entry.is_removed() && entry.container.runtime == Some(runtime))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// The runtime of container `id`: from its cgroup path, else from the polled API that
    /// lists it, else the CRI runtime's name.
    pub fn container_runtime(&self, id: &str) -> Option<Runtime> {
        self.directory
            .entry(id, Duration::ZERO)
            .and_then(|entry| entry.container.runtime)
            .or_else(|| self.remote.runtime_of(id))
            .or_else(|| self.cri.as_ref().and_then(|c| c.runtime()))
    }

    /// The runtime of container `id` and how it runs it: the runtime from its cgroup path,
    /// else from the polled API that lists it, else containerd when containerd lists it (a
    /// Kata container has no cgroup here); the flavor from containerd's runtime (shim) name.
    pub fn runtime_metadata(&self, id: &str, max_age: Duration) -> (Option<Runtime>, Flavor) {
        let from_cgroup = self
            .directory
            .entry(id, max_age)
            .and_then(|entry| entry.container.runtime);
        self.runtime_and_flavor(id, from_cgroup)
    }

    /// As [`Self::runtime_metadata`], given the runtime its cgroup path tells.
    pub fn runtime_and_flavor(
        &self,
        id: &str,
        from_cgroup: Option<Runtime>,
    ) -> (Option<Runtime>, Flavor) {
        let containerd = self.metadata.get_from(Source::Containerd, id);
        let runtime = from_cgroup
            .or_else(|| self.remote.runtime_of(id))
            .or_else(|| containerd.is_some().then_some(Runtime::Containerd))
            .or_else(|| self.podman_lists(id).then_some(Runtime::Podman));
        let flavor = match (runtime, containerd) {
            (Some(Runtime::Containerd), Some(meta)) => meta.flavor,
            _ => Flavor::Default,
        };
        (runtime, flavor)
    }

    /// Whether a Podman socket lists container `id` (a rootless container on cgroup v1 has no
    /// cgroup of its own to tell its runtime).
    fn podman_lists(&self, id: &str) -> bool {
        self.metadata.get_from(Source::Podman, id).is_some()
            || self.metadata.get_from(Source::PodmanRootless, id).is_some()
    }

    /// The running Podman containers without a cgroup of their own here (rootless Podman on
    /// cgroup v1 cannot create one: their processes stay in the cgroups of whatever started
    /// them), which the container list gives without cgroups, while their main process is
    /// the one listed.
    pub fn podman_without_cgroups(&self, listed: &dyn Fn(&str) -> bool) -> Vec<String> {
        self.podman
            .running()
            .into_iter()
            .filter(|c| !listed(&c.id) && c.is_alive())
            .map(|c| c.id)
            .collect()
    }

    /// Where the kubelet stands, for messages.
    pub fn kubelet_status(&self) -> String {
        match self.metadata.state(Source::Kubelet) {
            SourceState::Absent { reason } | SourceState::Down { reason } => reason,
            SourceState::Disabled => "turned off by --kubelet-url none".to_owned(),
            SourceState::Starting => "not answered yet".to_owned(),
            SourceState::Connected => "answers".to_owned(),
        }
    }

    /// The runtimes asked by polling.
    pub fn remote(&self) -> &RemoteSources {
        &self.remote
    }

    /// What the runtimes' APIs say of the containers.
    pub fn metadata(&self) -> &Arc<MetadataStore> {
        &self.metadata
    }

    /// The runtime labels exported and answered.
    pub fn container_labels(&self) -> &[String] {
        &self.container_labels
    }

    pub fn provider(&self) -> &Provider {
        &self.provider
    }

    /// Everything known about container `id`, no older than `max_age`: `Ok(None)` when no
    /// collector knows the container.
    pub fn container_stats(
        &self,
        id: &str,
        max_age: Duration,
    ) -> Result<Option<StatsReport>, ChainError> {
        self.collection_stats(id, max_age, &CollectionContext::default())
    }

    /// As [`Self::container_stats`], within the full collection `collection`.
    fn collection_stats(
        &self,
        id: &str,
        max_age: Duration,
        collection: &CollectionContext,
    ) -> Result<Option<StatsReport>, ChainError> {
        // A container without a cgroup here (an ECS Fargate task's, a Kata container) takes
        // the runtime of the API that lists it.
        let (runtime, flavor) = self.runtime_metadata(id, max_age);
        // A runtime nobody serves yet, or an unknown one: every collector, in order.
        let collector = runtime
            .and_then(|r| self.provider.collector(RuntimeMetadata::new(r, flavor)))
            .unwrap_or_else(|| self.provider.collector_any());
        Ok(collector
            .collection_full_stats(NAMESPACE, id, max_age, collection)?
            .map(|full| StatsReport {
                container_id: id.to_owned(),
                runtime,
                flavor,
                full,
            }))
    }

    /// Stats of every live container: one full collection. Every value is read after the
    /// call began, or is at most `max_age` old: each container is asked with a tolerance of
    /// `max_age` or the time since the collection began, whichever is longer, so what the
    /// collection shares (the container list, the kernel counter maps, a network namespace's
    /// counters) is read once, not once per container.
    pub fn all_stats(&self, max_age: Duration) -> Vec<StatsReport> {
        let mut reports = Vec::new();
        self.collect(max_age, |_, report| reports.push(report));
        reports
    }

    /// One full collection, as [`Self::all_stats`], handing each live container's entry (its
    /// cgroups and processes, from the same snapshot) and stats to `each`, in id order; then
    /// the containers only a polled runtime API lists (ECS Fargate's, Garden's whose cgroups
    /// are not visible here), with an entry without cgroups.
    pub fn collect(&self, max_age: Duration, mut each: impl FnMut(&ContainerEntry, StatsReport)) {
        let began = std::time::Instant::now();
        let collection = self.system.begin_collection(max_age);
        let snapshot = self.directory.snapshot(max_age);
        let mut live: Vec<(&String, &ContainerEntry)> = snapshot
            .containers
            .iter()
            .filter(|(_, entry)| !entry.is_removed())
            .collect();
        live.sort_unstable_by(|a, b| a.0.cmp(b.0));
        for (id, entry) in live {
            let tolerance = max_age.max(began.elapsed());
            match self.collection_stats(id, tolerance, &collection) {
                Ok(Some(report)) => each(entry, report),
                Ok(None) => {}
                Err(e) => tracing::debug!(container = %id, error = %e, "no stats"),
            }
        }
        for source in self.remote.all() {
            if source.pod_listing_only() {
                continue;
            }
            for id in source.snapshot().containers.keys() {
                if snapshot.containers.contains_key(id) {
                    continue;
                }
                let tolerance = max_age.max(began.elapsed());
                match self.collection_stats(id, tolerance, &collection) {
                    Ok(Some(report)) => {
                        let entry = ContainerEntry::without_cgroups(ContainerRef {
                            id: id.clone(),
                            runtime: source.runtime,
                            pod_uid: None,
                        });
                        each(&entry, report);
                    }
                    Ok(None) => {}
                    Err(e) => tracing::debug!(container = %id, error = %e, "no stats"),
                }
            }
        }
    }

    /// The network of pod `pod_uid` (canonical) from the namespace its live processes are
    /// in, no older than `max_age`; `Ok(None)` when no live container of the pod is known.
    pub fn pod_network(
        &self,
        pod_uid: &str,
        max_age: Duration,
    ) -> Result<Option<pod_network::PodNetwork>, crate::provider::CollectorError> {
        let snapshot = self.directory.snapshot(max_age);
        pod_network::pod_network(&self.system, &snapshot, pod_uid, max_age)
    }

    /// cgroup files held open between reads, and the most that may be.
    pub fn held_cgroup_files(&self) -> (usize, usize) {
        self.system.held_cgroup_files()
    }

    /// Kernel cgroup walks made, and the cgroups the last one recorded.
    pub fn cgroup_walks(&self) -> (u64, usize) {
        self.system.cgroup_walks()
    }

    /// Periodic upkeep (every second): frees the counters and descriptors of removed
    /// cgroups.
    pub fn upkeep(&self) {
        self.system.forget_removed();
        if let Some(ebpf) = &self.ebpf {
            ebpf.retire();
        }
    }
}

#[expect(
    clippy::unnecessary_wraps,
    reason = "every capability of `Collectors` is an Option: this fills one"
)]
fn reference<T: ?Sized>(
    collector: Arc<T>,
    priority: u8,
    id: &'static str,
) -> Option<CollectorRef<T>> {
    Some(CollectorRef {
        collector,
        priority,
        id,
    })
}

/// The same offer for every runtime this collector serves (default flavor: Kata
/// containers' cgroups are inside their VM, invisible here).
fn for_every_runtime(offer: &Collectors) -> CollectorCatalog {
    ALL_LINUX_RUNTIMES
        .iter()
        .map(|&runtime| {
            (
                RuntimeMetadata::new(runtime, Flavor::Default),
                offer.clone(),
            )
        })
        .collect()
}

/// The identity collector: not cached (a lookup reflects every fork and exit before it).
fn identity_factory(collector: Arc<IdentityCollector>) -> CollectorFactory {
    let id = identity::ID;
    CollectorFactory {
        id,
        constructor: Box::new(move || {
            let offer = Collectors {
                process_identity: reference(collector.clone(), 0, id),
                cgroup_identity: reference(collector.clone(), 0, id),
                container_listing: reference(collector.clone(), 0, id),
                ..Collectors::default()
            };
            Ok(for_every_runtime(&offer))
        }),
    }
}

fn system_factory(system: Arc<SystemCollector>, cache: Arc<Cache>) -> CollectorFactory {
    let id = system::ID;
    CollectorFactory {
        id,
        constructor: Box::new(move || {
            let offer = Collectors {
                stats: reference(system.clone(), 0, id),
                io: reference(system.clone(), 1, id),
                network: reference(system.clone(), 1, id),
                open_files: reference(system.clone(), 0, id),
                pids: reference(system.clone(), 1, id),
                ..Collectors::default()
            };
            Ok(for_every_runtime(&make_cached(id, &cache, &offer)))
        }),
    }
}

fn ebpf_factory(ebpf: Option<Arc<EbpfCollector>>, cache: Arc<Cache>) -> CollectorFactory {
    let id = ebpf::ID;
    CollectorFactory {
        id,
        constructor: Box::new(move || {
            let Some(ebpf) = &ebpf else {
                return Err(ConstructError::permanent(
                    "the kernel programs are not loaded",
                ));
            };
            // When a counter program could not attach (no cgroup-v2 hierarchy, say), its
            // capability fails with the reason and the system collector answers instead.
            let offer = Collectors {
                stats: None,
                io: reference(ebpf.clone(), 0, id),
                network: reference(ebpf.clone(), 0, id),
                open_files: None,
                pids: reference(ebpf.clone(), 0, id),
                ..Collectors::default()
            };
            Ok(for_every_runtime(&make_cached(id, &cache, &offer)))
        }),
    }
}

/// Podman's stats, for Podman's containers only and after cgroupfs (priority 2): a request
/// to the service per container costs far more than reading the cgroup files, and answers
/// only while the service runs. The watchers' states decide: constructed once a socket
/// (rootful or a rootless user's) listed its containers, "not yet" while they start, a
/// service is down or rootless sockets are looked for (the registry retries), and a
/// permanent failure when there is no socket to wait for or Podman is turned off.
fn podman_factory(
    podman: Arc<PodmanStats>,
    metadata: Arc<MetadataStore>,
    cache: Arc<Cache>,
) -> CollectorFactory {
    let id = podman::ID;
    CollectorFactory {
        id,
        constructor: Box::new(move || {
            let rootful = metadata.state(Source::Podman);
            let rootless = metadata.state(Source::PodmanRootless);
            if !rootful.is_up() && !rootless.is_up() {
                return Err(podman_not_constructed(&rootful, &rootless));
            }
            let offer = Collectors {
                stats: reference(podman.clone(), 2, id),
                ..Collectors::default()
            };
            Ok(CollectorCatalog::from([(
                RuntimeMetadata::new(Runtime::Podman, Flavor::Default),
                make_cached(id, &cache, &offer),
            )]))
        }),
    }
}

/// Why Podman's stats are not offered, given the named sockets' and the rootless ones'
/// states, neither connected.
fn podman_not_constructed(rootful: &SourceState, rootless: &SourceState) -> ConstructError {
    match (rootful, rootless) {
        (SourceState::Disabled, SourceState::Disabled) => {
            ConstructError::permanent("Podman is turned off")
        }
        (SourceState::Absent { reason }, SourceState::Disabled) => {
            ConstructError::permanent(reason.clone())
        }
        _ => {
            let both = [rootful, rootless];
            // An outage's reason before an absence's.
            let reason = both
                .iter()
                .find_map(|s| match s {
                    SourceState::Down { reason } => Some(reason),
                    _ => None,
                })
                .or_else(|| {
                    both.iter().find_map(|s| match s {
                        SourceState::Absent { reason } => Some(reason),
                        _ => None,
                    })
                });
            ConstructError::not_yet(
                reason.map_or_else(|| "Podman not listed yet".to_owned(), Clone::clone),
            )
        }
    }
}

/// containerd's task metrics: the only stats of Kata containers (priority 0 for
/// containerd's kata flavor: their cgroups are in the VM), and a last resort for containerd's
/// other containers (priority 3, after cgroupfs, eBPF and the runtime APIs at 2): a gRPC call
/// per container costs far more than reading the cgroup files. The metadata watcher's state
/// decides, as for Podman: constructed once it listed the containers (whose namespaces the
/// calls need), "not yet" while it starts or containerd is down, a permanent failure when
/// there is no socket.
fn containerd_tasks_factory(
    tasks: Arc<TaskMetrics>,
    metadata: Arc<MetadataStore>,
    cache: Arc<Cache>,
) -> CollectorFactory {
    let id = containerd_tasks::ID;
    CollectorFactory {
        id,
        constructor: Box::new(move || match metadata.state(Source::Containerd) {
            SourceState::Connected => {
                let offer = |priority| Collectors {
                    stats: reference(tasks.clone(), priority, id),
                    ..Collectors::default()
                };
                Ok(CollectorCatalog::from([
                    (
                        RuntimeMetadata::new(Runtime::Containerd, Flavor::Kata),
                        make_cached(id, &cache, &offer(0)),
                    ),
                    (
                        RuntimeMetadata::new(Runtime::Containerd, Flavor::Default),
                        make_cached(id, &cache, &offer(3)),
                    ),
                ]))
            }
            // The watcher logged its own reason once; this one names the socket differently.
            SourceState::Absent { .. } => Err(ConstructError::permanent(format!(
                "containerd's socket {} was absent at start: no task metrics",
                tasks.socket().display()
            ))),
            SourceState::Disabled => Err(ConstructError::permanent("containerd is turned off")),
            SourceState::Starting => Err(ConstructError::not_yet("containerd not listed yet")),
            SourceState::Down { reason } => Err(ConstructError::not_yet(reason)),
        }),
    }
}

/// The CRI collector: pod lookups for every runtime (they name no container, so no runtime
/// is known beforehand), and `ListContainerStats` for CRI-O below the system and eBPF
/// collectors (the seed's cri-o collector; containerd's own API serves containerd). A socket
/// that is not there is a permanent failure; one that refuses connections is retried.
fn cri_factory(client: Arc<CriClient>, cache: Arc<Cache>) -> CollectorFactory {
    let id = cri::ID;
    CollectorFactory {
        id,
        constructor: Box::new(move || {
            match client.probe() {
                Err(ProbeError::Absent) => {
                    let reason = format!("no CRI socket at {}", client.socket().display());
                    client.metadata_absent(&reason);
                    return Err(ConstructError::permanent(reason));
                }
                Err(e @ ProbeError::Refused(_)) => {
                    return Err(ConstructError::not_yet(format!(
                        "CRI socket {}: {}",
                        client.socket().display(),
                        crate::error_chain::ErrorChain(&e)
                    )));
                }
                Ok(()) => {}
            }
            let collector = Arc::new(CriCollector::new(Arc::clone(&client)));
            let lookups = Collectors {
                container_id_for_pod_uid_and_name: reference(collector.clone(), 0, id),
                ..Collectors::default()
            };
            let mut catalog = for_every_runtime(&lookups);
            let stats = Collectors {
                stats: reference(collector, 2, id),
                ..Collectors::default()
            };
            let stats = make_cached(id, &cache, &stats);
            catalog.insert(
                RuntimeMetadata::new(Runtime::CriO, Flavor::Default),
                Collectors {
                    stats: stats.stats,
                    ..lookups
                },
            );
            Ok(catalog)
        }),
    }
}

/// ECS Fargate's task metadata: stats and network of the task's containers, at Datadog's
/// priority 0 (on Fargate the cgroups are not visible: this is the only source). Permanent
/// failure when no endpoint is configured; not yet until it first answers.
fn ecsfargate_factory(source: Arc<RemoteSource>) -> CollectorFactory {
    let id = ecsfargate::ID;
    CollectorFactory {
        id,
        constructor: Box::new(move || {
            source.readiness()?;
            let offer = Collectors {
                stats: reference(source.clone(), 0, id),
                network: reference(source.clone(), 0, id),
                ..Collectors::default()
            };
            Ok([(
                RuntimeMetadata::new(Runtime::EcsFargate, Flavor::Default),
                offer,
            )]
            .into_iter()
            .collect())
        }),
    }
}

/// Garden's containers: stats and network at 2, after the cgroups (a Diego cell's agent
/// sees them below `/garden`: the system collector answers first, as Datadog's does for
/// Garden) with the runtime API's values when the cgroups are not visible. Permanent failure
/// when there is no socket; not yet until Garden first answers.
fn garden_factory(source: Arc<RemoteSource>) -> CollectorFactory {
    let id = garden::ID;
    CollectorFactory {
        id,
        constructor: Box::new(move || {
            source.readiness()?;
            let offer = Collectors {
                stats: reference(source.clone(), 2, id),
                network: reference(source.clone(), 2, id),
                ..Collectors::default()
            };
            Ok([(
                RuntimeMetadata::new(Runtime::Garden, Flavor::Default),
                offer,
            )]
            .into_iter()
            .collect())
        }),
    }
}

/// The kubelet's pods: a pod container's id, at Datadog's priority 2 (lowest, with CRI:
/// the container runtimes' own answers come first).
fn kubelet_factory(source: Arc<RemoteSource>) -> CollectorFactory {
    let id = kubelet::ID;
    CollectorFactory {
        id,
        constructor: Box::new(move || {
            source.readiness()?;
            let offer = Collectors {
                container_id_for_pod_uid_and_name: reference(source.clone(), 2, id),
                ..Collectors::default()
            };
            Ok(for_every_runtime(&offer))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The factory with the named sockets in `state` and rootless discovery in `rootless`.
    fn podman_factory_in(state: SourceState, rootless: SourceState) -> CollectorFactory {
        let metadata = Arc::new(MetadataStore::default());
        metadata.set_state(Source::Podman, state);
        metadata.set_state(Source::PodmanRootless, rootless);
        let registry = Arc::new(PodmanRegistry::new(Arc::clone(&metadata)));
        let collector = PodmanStats::new(registry, Duration::from_secs(1));
        podman_factory(Arc::new(collector), metadata, Arc::new(Cache::default()))
    }

    fn containerd_tasks_factory_in(state: SourceState) -> CollectorFactory {
        let metadata = Arc::new(MetadataStore::default());
        metadata.set_state(Source::Containerd, state);
        let tasks = TaskMetrics::new(
            "/nonexistent/containerd.sock".into(),
            Duration::from_secs(1),
            Arc::clone(&metadata),
        );
        containerd_tasks_factory(Arc::new(tasks), metadata, Arc::new(Cache::default()))
    }

    #[test]
    fn containerd_task_metrics_lead_for_kata_and_follow_cgroupfs_otherwise() {
        let mut connected = containerd_tasks_factory_in(SourceState::Connected);
        let catalog = (connected.constructor)().expect("constructed once listed");
        let kata = RuntimeMetadata::new(Runtime::Containerd, Flavor::Kata);
        let default = RuntimeMetadata::new(Runtime::Containerd, Flavor::Default);
        assert_eq!(catalog.keys().copied().collect::<Vec<_>>(), [default, kata]);
        let link = |runtime| {
            let stats: &CollectorRef<_> = catalog[&runtime].stats.as_ref().expect("a stats link");
            (stats.id, stats.priority)
        };
        assert_eq!(link(kata), (containerd_tasks::ID, 0));
        assert_eq!(link(default), (containerd_tasks::ID, 3));
        assert!(catalog[&kata].io.is_none() && catalog[&kata].network.is_none());

        for (state, permanent) in [
            (SourceState::Starting, false),
            (
                SourceState::Down {
                    reason: "refused".into(),
                },
                false,
            ),
            (
                SourceState::Absent {
                    reason: "no socket".into(),
                },
                true,
            ),
            (SourceState::Disabled, true),
        ] {
            let mut factory = containerd_tasks_factory_in(state.clone());
            let error = (factory.constructor)().expect_err("not constructed");
            assert_eq!(
                matches!(error, ConstructError::Permanent(_)),
                permanent,
                "{state:?}: {error}"
            );
        }
    }

    #[test]
    fn podman_stats_follow_the_watchers_state() {
        let mut connected = podman_factory_in(SourceState::Connected, SourceState::Disabled);
        let catalog = (connected.constructor)().expect("constructed once listed");
        let podman = RuntimeMetadata::new(Runtime::Podman, Flavor::Default);
        assert_eq!(catalog.keys().copied().collect::<Vec<_>>(), [podman]);
        let stats = catalog[&podman].stats.as_ref().expect("a stats link");
        assert_eq!((stats.id, stats.priority), (podman::ID, 2));

        for (state, permanent) in [
            (SourceState::Starting, false),
            (
                SourceState::Down {
                    reason: "refused".into(),
                },
                false,
            ),
            (
                SourceState::Absent {
                    reason: "no socket".into(),
                },
                true,
            ),
            (SourceState::Disabled, true),
        ] {
            let mut factory = podman_factory_in(state.clone(), SourceState::Disabled);
            let error = (factory.constructor)().expect_err("not constructed");
            assert_eq!(
                matches!(error, ConstructError::Permanent(_)),
                permanent,
                "{state:?}: {error}"
            );
        }
        // A rootless user's service found later: no rootful socket is not the end, and a
        // connected rootless one is enough.
        let absent = || SourceState::Absent {
            reason: "no socket".into(),
        };
        let mut waiting = podman_factory_in(absent(), absent());
        let error = (waiting.constructor)().expect_err("not constructed");
        assert!(matches!(error, ConstructError::NotYet(_)), "{error}");
        let mut rootless = podman_factory_in(absent(), SourceState::Connected);
        assert!((rootless.constructor)().is_ok());
    }
}
