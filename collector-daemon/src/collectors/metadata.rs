//! Names, images and labels of containers, as the runtimes' own APIs tell them (Docker Engine
//! API, containerd's gRPC API, Podman's libpod API), joined to the container ids the cgroup paths give. The
//! runtime watchers (`docker.rs`, `containerd.rs`, `podman.rs`) keep this store current; the API and the
//! Prometheus exporter read it.
//!
//! A container id is unique on a node, but one container can be known to two runtimes:
//! Docker's containers also live in containerd's `moby` namespace, under the same id. Each
//! source has its own map, and Docker's answer (which has the container's name) wins.
//!
//! What a runtime said stays until that runtime says otherwise (destroy, or a full list that
//! lacks it after a reconnect): while a runtime is down its containers keep their names, and
//! numbers never depend on it.
use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, PoisonError},
    time::SystemTime,
};

use dashmap::DashMap;

use crate::provider::Flavor;

/// Label giving a Kubernetes pod's name (set by the kubelet through CRI on every container).
pub const POD_NAME_LABEL: &str = "io.kubernetes.pod.name";
/// Label giving a Kubernetes pod's namespace.
pub const POD_NAMESPACE_LABEL: &str = "io.kubernetes.pod.namespace";
/// Label giving a Kubernetes pod's UID.
pub const POD_UID_LABEL: &str = "io.kubernetes.pod.uid";
/// Label giving the container's name in its pod spec (absent on sandboxes).
pub const CONTAINER_NAME_LABEL: &str = "io.kubernetes.container.name";
/// containerd's CRI plugin label: `sandbox` for a pod's sandbox (pause) container,
/// `container` for the others.
pub const CRI_KIND_LABEL: &str = "io.cri-containerd.kind";

/// What a runtime says about one container.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerMeta {
    /// The runtime's name for it: Docker's name without the leading `/`; for containerd,
    /// which has no names, the container id (as cAdvisor and kubelet do).
    pub name: Option<String>,
    /// The image reference it was created from, as the runtime records it.
    pub image: Option<String>,
    /// Every label the runtime has for it.
    pub labels: BTreeMap<String, String>,
    /// containerd namespace (`k8s.io`, `moby`, `default`, ...) when it came from containerd.
    pub runtime_namespace: Option<String>,
    /// When the runtime created it.
    pub created: Option<SystemTime>,
    /// When its process was last started, where the runtime tells it (Docker does).
    pub started: Option<SystemTime>,
    /// The runtime's own pod it belongs to (Podman's `podman pod`), by name.
    pub pod: Option<String>,
    /// How the runtime runs it: `Kata` when containerd's runtime (shim) for it is Kata's, whose
    /// containers run in a VM with cgroups the host cannot read.
    pub flavor: Flavor,
}

impl ContainerMeta {
    fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }

    /// The Kubernetes pod's name, else the runtime's own pod's (Podman's).
    pub fn pod_name(&self) -> Option<&str> {
        self.label(POD_NAME_LABEL).or(self.pod.as_deref())
    }

    /// The Kubernetes pod's namespace.
    pub fn pod_namespace(&self) -> Option<&str> {
        self.label(POD_NAMESPACE_LABEL)
    }

    /// The Kubernetes pod's UID.
    pub fn pod_uid(&self) -> Option<&str> {
        self.label(POD_UID_LABEL)
    }

    /// The container's name in its pod spec.
    pub fn container_name(&self) -> Option<&str> {
        self.label(CONTAINER_NAME_LABEL)
    }
}

/// A runtime API the store hears from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    Docker,
    Containerd,
    Podman,
    /// The CRI runtime service (containerd's CRI plugin or CRI-O), for the containers a pod
    /// lookup found.
    Cri,
    /// CRI-O's own HTTP info endpoint, for CRI-O containers CRI did not describe.
    CriO,
    /// ECS task metadata endpoint v4 (`ecsfargate.rs`).
    EcsFargate,
    /// Cloud Foundry's Garden API (`garden.rs`).
    Garden,
    /// The kubelet's `/pods` (`kubelet.rs`): the container runtimes know more.
    Kubelet,
    /// Rootless Podman services found under `/run/user` (`podman_sockets.rs`): last, as
    /// their users are trusted least, so no user can rename another runtime's container by
    /// listing its id.
    PodmanRootless,
}

/// How many sources there are.
const SOURCES: usize = 9;

impl Source {
    /// Every source, in the order their answers win (Podman's and ECS's containers are in no
    /// other runtime; the kubelet knows least; a rootless user's Podman is trusted least).
    pub const ALL: [Self; SOURCES] = [
        Self::Docker,
        Self::Containerd,
        Self::Podman,
        Self::Cri,
        Self::CriO,
        Self::EcsFargate,
        Self::Garden,
        Self::Kubelet,
        Self::PodmanRootless,
    ];

    /// Lowercase name, as in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Docker => "docker",
            Self::Containerd => "containerd",
            Self::Podman => "podman",
            Self::Cri => "cri",
            Self::CriO => "cri-o",
            Self::EcsFargate => "ecsfargate",
            Self::Garden => "garden",
            Self::Kubelet => "kubelet",
            Self::PodmanRootless => "podman-rootless",
        }
    }

    fn index(self) -> usize {
        match self {
            Self::Docker => 0,
            Self::Containerd => 1,
            Self::Podman => 2,
            Self::Cri => 3,
            Self::CriO => 4,
            Self::EcsFargate => 5,
            Self::Garden => 6,
            Self::Kubelet => 7,
            Self::PodmanRootless => 8,
        }
    }
}

/// Where a source stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceState {
    /// Not tried yet.
    Starting,
    /// Listed and following its events.
    Connected,
    /// Was reachable or should be, and is not now; retried. The reason is the last error.
    Down { reason: String },
    /// Not on this node (no socket): a permanent failure, found without waiting.
    Absent { reason: String },
    /// Turned off by configuration.
    Disabled,
}

impl SourceState {
    /// 1 when connected, else 0: `collector_runtime_up`.
    pub fn is_up(&self) -> bool {
        matches!(self, Self::Connected)
    }
}

/// One source's containers by id. foldhash: every container of a full collection and of a
/// scrape is looked up here (twice: Docker's map, then containerd's), and std's `SipHash`
/// spends ~50 ns on a 64-byte id.
type ById = DashMap<String, Arc<ContainerMeta>, foldhash::fast::RandomState>;

/// The containers' metadata by source and id.
pub struct MetadataStore {
    by_source: [ById; Source::ALL.len()],
    states: [Mutex<SourceState>; Source::ALL.len()],
}

impl Default for MetadataStore {
    fn default() -> Self {
        Self {
            by_source: std::array::from_fn(|_| ById::default()),
            states: std::array::from_fn(|_| Mutex::new(SourceState::Starting)),
        }
    }
}

impl MetadataStore {
    /// What the runtimes say of container `id`: the first source of [`Source::ALL`] that
    /// knows it.
    pub fn get(&self, id: &str) -> Option<Arc<ContainerMeta>> {
        Source::ALL
            .iter()
            .find_map(|s| self.by_source[s.index()].get(id).map(|m| Arc::clone(&m)))
    }

    /// What `source` alone says of container `id`.
    pub fn get_from(&self, source: Source, id: &str) -> Option<Arc<ContainerMeta>> {
        self.by_source[source.index()]
            .get(id)
            .map(|m| Arc::clone(&m))
    }

    /// Sets what `source` says of `id`.
    pub fn upsert(&self, source: Source, id: String, meta: ContainerMeta) {
        self.by_source[source.index()].insert(id, Arc::new(meta));
    }

    /// Forgets what `source` said of `id` (the container was destroyed).
    pub fn remove(&self, source: Source, id: &str) {
        self.by_source[source.index()].remove(id);
    }

    /// Replaces everything `source` said with a full list of its containers: ids it no
    /// longer lists are forgotten.
    pub fn replace_all(
        &self,
        source: Source,
        entries: impl IntoIterator<Item = (String, ContainerMeta)>,
    ) {
        let map = &self.by_source[source.index()];
        let fresh: std::collections::HashMap<String, Arc<ContainerMeta>> = entries
            .into_iter()
            .map(|(id, meta)| (id, Arc::new(meta)))
            .collect();
        map.retain(|id, _| fresh.contains_key(id));
        for (id, meta) in fresh {
            map.insert(id, meta);
        }
    }

    /// How many containers `source` told of.
    pub fn len(&self, source: Source) -> usize {
        self.by_source[source.index()].len()
    }

    /// Whether no source told of any container.
    pub fn is_empty(&self) -> bool {
        self.by_source.iter().all(DashMap::is_empty)
    }

    /// Records where `source` stands; returns the state it was in.
    pub fn set_state(&self, source: Source, state: SourceState) -> SourceState {
        let mut slot = self.states[source.index()]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        std::mem::replace(&mut *slot, state)
    }

    /// Where `source` stands.
    pub fn state(&self, source: Source) -> SourceState {
        self.states[source.index()]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(name: &str) -> ContainerMeta {
        ContainerMeta {
            name: Some(name.to_owned()),
            ..ContainerMeta::default()
        }
    }

    #[test]
    fn docker_wins_over_containerd_for_one_id() {
        let store = MetadataStore::default();
        store.upsert(Source::Containerd, "abc".into(), named("abc"));
        assert_eq!(store.get("abc").unwrap().name.as_deref(), Some("abc"));
        store.upsert(Source::Docker, "abc".into(), named("web"));
        assert_eq!(store.get("abc").unwrap().name.as_deref(), Some("web"));
        store.remove(Source::Docker, "abc");
        assert_eq!(store.get("abc").unwrap().name.as_deref(), Some("abc"));
        assert!(store.get("nope").is_none());
    }

    #[test]
    fn a_full_list_replaces_only_its_own_source() {
        let store = MetadataStore::default();
        store.upsert(Source::Docker, "a".into(), named("a"));
        store.upsert(Source::Docker, "b".into(), named("b"));
        store.upsert(Source::Containerd, "c".into(), named("c"));
        store.replace_all(
            Source::Docker,
            [("b".to_owned(), named("b2")), ("d".to_owned(), named("d"))],
        );
        assert!(store.get("a").is_none());
        assert_eq!(store.get("b").unwrap().name.as_deref(), Some("b2"));
        assert_eq!(store.get("c").unwrap().name.as_deref(), Some("c"));
        assert_eq!(store.len(Source::Docker), 2);
    }

    #[test]
    fn kubernetes_labels_are_read_from_the_labels() {
        let mut meta = named("x");
        meta.labels.insert(POD_NAME_LABEL.into(), "web-0".into());
        meta.labels
            .insert(POD_NAMESPACE_LABEL.into(), "prod".into());
        meta.labels
            .insert(CONTAINER_NAME_LABEL.into(), "nginx".into());
        assert_eq!(meta.pod_name(), Some("web-0"));
        assert_eq!(meta.pod_namespace(), Some("prod"));
        assert_eq!(meta.container_name(), Some("nginx"));
        assert_eq!(meta.pod_uid(), None);
    }

    #[test]
    fn states_are_kept_per_source() {
        let store = MetadataStore::default();
        assert_eq!(store.state(Source::Docker), SourceState::Starting);
        let before = store.set_state(Source::Docker, SourceState::Connected);
        assert_eq!(before, SourceState::Starting);
        assert!(store.state(Source::Docker).is_up());
        assert!(!store.state(Source::Containerd).is_up());
    }
}
