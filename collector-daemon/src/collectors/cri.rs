//! CRI collector: the Kubernetes Container Runtime Interface (v1) of containerd's CRI plugin
//! or CRI-O, over its unix socket. It answers which container is container `name` of pod
//! `uid` (`ListContainers` with a label selector) and, for CRI-O containers, CPU and memory
//! from `ListContainerStats`, below the system and eBPF collectors.
//!
//! Runtime facts relied on: the kubelet labels every container it creates through CRI with
//! `io.kubernetes.pod.uid` and `io.kubernetes.container.name`, and both runtimes store them
//! as the container's CRI labels and filter `ListContainers` on them (`label_selector`, exact
//! match). CRI has no "init container" notion: an init container is a container the kubelet
//! runs to completion first, labelled the same way; Kubernetes makes container names unique
//! across a pod's init and app containers, so the name alone finds either. A restarted
//! container is a new CRI container with a higher `metadata.attempt`; the newest answers.
//!
//! Availability: a socket that is not there when the daemon starts is a permanent failure
//! (the collector is not registered); a runtime that does not answer is an outage, warned of
//! once, after which calls fail at once with "not available" until a retry (backoff 0.5 s to
//! 5 s) succeeds.
use std::{
    collections::{BTreeMap, HashMap},
    future::Future,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use k8s_cri::v1::{
    Container, ContainerFilter, ContainerStats as CriStats, ContainerStatsFilter,
    ListContainerStatsRequest, ListContainersRequest, VersionRequest,
    runtime_service_client::RuntimeServiceClient,
};
use tonic::{
    Code, Status,
    transport::{Channel, Endpoint},
};

use super::metadata::{
    CONTAINER_NAME_LABEL, ContainerMeta, MetadataStore, POD_UID_LABEL, Source, SourceState,
};
use crate::{
    error_chain::ErrorChain,
    identity::container_id::Runtime,
    provider::{
        CollectorError, CollectorResult, ContainerIdForPodUidAndName, ContainerStats, CpuStats,
        MaxAge, MemoryStats, StatsCollector,
    },
};

/// The collector's id (the `source` of its answers).
pub const ID: &str = "cri";
/// containerd's socket, which serves its CRI plugin too.
pub const CONTAINERD_SOCKET: &str = "/run/containerd/containerd.sock";
/// CRI-O's socket.
pub const CRIO_SOCKET: &str = "/var/run/crio/crio.sock";

/// First and longest wait before asking a runtime that failed again.
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Largest message accepted: `ListContainerStats` of a busy node.
const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// The CRI socket to use when none is configured: containerd's, else CRI-O's when that one
/// exists, else containerd's (whose absence then makes the collector unavailable).
pub fn default_socket() -> PathBuf {
    [CONTAINERD_SOCKET, CRIO_SOCKET]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from(CONTAINERD_SOCKET))
}

/// Why a CRI call failed.
#[derive(Debug, thiserror::Error)]
pub enum CriError {
    #[error("no CRI socket at {}", .socket.display())]
    Absent { socket: PathBuf },
    #[error("invalid CRI socket path {}", .socket.display())]
    Endpoint {
        socket: PathBuf,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("CRI {call} failed: {code:?}: {message}")]
    Call {
        call: &'static str,
        code: Code,
        message: String,
    },
    #[error("CRI {call} did not answer within {timeout:?}")]
    Timeout {
        call: &'static str,
        timeout: Duration,
    },
    /// The runtime failed recently and is not asked again before its backoff ends.
    #[error("the CRI runtime at {} is not available: {reason}", .socket.display())]
    Unavailable { socket: PathBuf, reason: String },
    /// The collector was built outside a tokio runtime (unit tests): it cannot call.
    #[error("the CRI client has no async runtime to call on")]
    NoRuntime,
}

impl CriError {
    /// Whether this error means the runtime is down (as opposed to refusing one request).
    fn is_outage(&self) -> bool {
        match self {
            Self::Timeout { .. } | Self::Absent { .. } => true,
            Self::Call { code, .. } => matches!(
                code,
                Code::Unavailable | Code::Unknown | Code::Cancelled | Code::DeadlineExceeded
            ),
            Self::Endpoint { .. } | Self::Unavailable { .. } | Self::NoRuntime => false,
        }
    }
}

/// Where the runtime stands, for failing fast during an outage.
#[derive(Debug, Default)]
struct Health {
    /// Set while the runtime is down: why, when to try again, and the next wait.
    down: Option<Down>,
}

#[derive(Debug)]
struct Down {
    reason: String,
    retry_at: Instant,
    backoff: Duration,
}

/// A CRI runtime service client over a unix socket, shared by the lookups.
pub struct CriClient {
    socket: PathBuf,
    timeout: Duration,
    store: Arc<MetadataStore>,
    channel: Mutex<Option<Channel>>,
    health: Mutex<Health>,
    /// The runtime's name from `Version` (`containerd`, `cri-o`), once it answered.
    runtime: Mutex<Option<Runtime>>,
    /// The daemon's tokio runtime: the provider's capabilities are synchronous and are
    /// called from blocking threads, which wait here on the async gRPC call.
    handle: Option<tokio::runtime::Handle>,
}

impl std::fmt::Debug for CriClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CriClient")
            .field("socket", &self.socket)
            .finish_non_exhaustive()
    }
}

impl CriClient {
    /// A client of the CRI runtime at `socket`; each call may take `timeout`. What it learns
    /// of containers goes to `store` under [`Source::Cri`].
    pub fn new(socket: PathBuf, timeout: Duration, store: Arc<MetadataStore>) -> Self {
        Self {
            socket,
            timeout,
            store,
            channel: Mutex::new(None),
            health: Mutex::new(Health::default()),
            runtime: Mutex::new(None),
            handle: tokio::runtime::Handle::try_current().ok(),
        }
    }

    /// The socket it talks to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The runtime behind the socket, once it answered `Version`.
    pub fn runtime(&self) -> Option<Runtime> {
        *self.runtime.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the socket is there and something accepts on it: `Ok` when it does, a
    /// permanent error when the socket does not exist, a transient one otherwise.
    pub fn probe(&self) -> Result<(), ProbeError> {
        if !self.socket.exists() {
            return Err(ProbeError::Absent);
        }
        std::os::unix::net::UnixStream::connect(&self.socket)
            .map(drop)
            .map_err(ProbeError::Refused)
    }

    /// Records that the socket is not there (the collector will not be registered).
    pub fn metadata_absent(&self, reason: &str) {
        let before = self.store.set_state(
            Source::Cri,
            SourceState::Absent {
                reason: reason.to_owned(),
            },
        );
        if !matches!(before, SourceState::Absent { .. }) {
            tracing::info!(socket = %self.socket.display(), "{reason}: pod lookups are not available");
        }
    }

    /// Runs `future` on the daemon's runtime from a blocking thread.
    fn block_on<T>(
        &self,
        future: impl Future<Output = Result<T, CriError>>,
    ) -> Result<T, CriError> {
        let handle = self.handle.as_ref().ok_or(CriError::NoRuntime)?;
        handle.block_on(future)
    }

    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Fails at once while the runtime is down and its backoff has not ended; when it has,
    /// lets this one call through as the retry (the next retry waits a backoff again).
    fn gate(&self) -> Result<(), CriError> {
        let mut health = self.health();
        let Some(down) = health.down.as_mut() else {
            return Ok(());
        };
        let now = Instant::now();
        if now < down.retry_at {
            return Err(CriError::Unavailable {
                socket: self.socket.clone(),
                reason: down.reason.clone(),
            });
        }
        down.retry_at = now + down.backoff;
        down.backoff = (down.backoff * 2).min(BACKOFF_MAX);
        Ok(())
    }

    /// Records an outage; warns only when one begins.
    fn failed(&self, error: &CriError) {
        *self.channel.lock().unwrap_or_else(PoisonError::into_inner) = None;
        let reason = ErrorChain(error).to_string();
        let mut health = self.health();
        if let Some(down) = health.down.as_mut() {
            down.reason.clone_from(&reason);
        } else {
            tracing::warn!(
                socket = %self.socket.display(),
                error = %reason,
                "the CRI runtime is unreachable; pod lookups answer \"not available\" until it is back"
            );
            health.down = Some(Down {
                reason: reason.clone(),
                retry_at: Instant::now() + BACKOFF_MIN,
                backoff: BACKOFF_MIN * 2,
            });
        }
        drop(health);
        self.store
            .set_state(Source::Cri, SourceState::Down { reason });
    }

    fn succeeded(&self) {
        let was_down = self.health().down.take().is_some();
        if was_down {
            tracing::info!(socket = %self.socket.display(), "the CRI runtime is reachable again");
        }
        self.store.set_state(Source::Cri, SourceState::Connected);
    }

    fn channel(&self) -> Result<Channel, CriError> {
        let mut slot = self.channel.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(channel) = slot.as_ref() {
            return Ok(channel.clone());
        }
        let endpoint = Endpoint::from_shared(format!("unix://{}", self.socket.display()))
            .map_err(|source| CriError::Endpoint {
                socket: self.socket.clone(),
                source,
            })?
            .connect_timeout(self.timeout);
        let channel = endpoint.connect_lazy();
        *slot = Some(channel.clone());
        Ok(channel)
    }

    /// One call, bounded by the timeout; an outage is recorded, a success clears one.
    async fn call<T, F, Fut>(&self, call: &'static str, ask: F) -> Result<T, CriError>
    where
        F: FnOnce(RuntimeServiceClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        self.gate()?;
        if !self.socket.exists() {
            let error = CriError::Absent {
                socket: self.socket.clone(),
            };
            self.failed(&error);
            return Err(error);
        }
        let client =
            RuntimeServiceClient::new(self.channel()?).max_decoding_message_size(MAX_MESSAGE_BYTES);
        let result = match tokio::time::timeout(self.timeout, ask(client)).await {
            Err(_) => Err(CriError::Timeout {
                call,
                timeout: self.timeout,
            }),
            Ok(Err(status)) => Err(CriError::Call {
                call,
                code: status.code(),
                message: status_message(&status),
            }),
            Ok(Ok(response)) => Ok(response.into_inner()),
        };
        match &result {
            Ok(_) => self.succeeded(),
            Err(e) if e.is_outage() => self.failed(e),
            Err(_) => {}
        }
        result
    }

    /// Learns the runtime's name once (`Version`).
    async fn learn_runtime(&self) -> Result<(), CriError> {
        if self.runtime().is_some() {
            return Ok(());
        }
        let version = self
            .call("Version", |mut c| async move {
                c.version(VersionRequest {
                    version: String::new(),
                })
                .await
            })
            .await?;
        let runtime = match version.runtime_name.as_str() {
            "cri-o" => Some(Runtime::CriO),
            "containerd" => Some(Runtime::Containerd),
            _ => None,
        };
        *self.runtime.lock().unwrap_or_else(PoisonError::into_inner) = runtime;
        Ok(())
    }

    /// The id of container `name` of pod `uid` (its newest attempt, running or exited), or
    /// `None` when the runtime has no such container.
    pub async fn pod_container_id(
        &self,
        uid: &str,
        name: &str,
    ) -> Result<Option<String>, CriError> {
        self.learn_runtime().await?;
        let filter = ContainerFilter {
            label_selector: HashMap::from([
                (POD_UID_LABEL.to_owned(), uid.to_owned()),
                (CONTAINER_NAME_LABEL.to_owned(), name.to_owned()),
            ]),
            ..ContainerFilter::default()
        };
        let list = self
            .call("ListContainers", |mut c| async move {
                c.list_containers(ListContainersRequest {
                    filter: Some(filter),
                })
                .await
            })
            .await?;
        let Some(newest) = newest(list.containers) else {
            return Ok(None);
        };
        let (id, meta) = container_meta(newest);
        self.store.upsert(Source::Cri, id.clone(), meta);
        Ok(Some(id))
    }

    /// `ListContainerStats` of container `id`; `None` when the runtime does not know it.
    pub async fn container_stats(&self, id: &str) -> Result<Option<ContainerStats>, CriError> {
        let filter = ContainerStatsFilter {
            id: id.to_owned(),
            ..ContainerStatsFilter::default()
        };
        let list = self
            .call("ListContainerStats", |mut c| async move {
                c.list_container_stats(ListContainerStatsRequest {
                    filter: Some(filter),
                })
                .await
            })
            .await?;
        Ok(list
            .stats
            .into_iter()
            .find(|s| s.attributes.as_ref().is_some_and(|a| a.id == id))
            .map(|s| stats_from_cri(&s)))
    }
}

/// Why [`CriClient::probe`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("the socket does not exist")]
    Absent,
    #[error("connecting to the socket failed")]
    Refused(#[source] std::io::Error),
}

/// The container with the highest attempt, the latest created among equals.
fn newest(containers: Vec<Container>) -> Option<Container> {
    containers
        .into_iter()
        .max_by_key(|c| (c.metadata.as_ref().map_or(0, |m| m.attempt), c.created_at))
}

/// What CRI says of a container, as the metadata store keeps it.
#[doc(hidden)]
pub fn container_meta(container: Container) -> (String, ContainerMeta) {
    let Container {
        id,
        image,
        image_ref,
        created_at,
        labels,
        ..
    } = container;
    let image = image
        .map(|i| i.image)
        .filter(|i| !i.is_empty())
        .or_else(|| (!image_ref.is_empty()).then_some(image_ref));
    let meta = ContainerMeta {
        // As for containerd: the id is the name cAdvisor and the kubelet show.
        name: Some(id.clone()),
        image,
        labels: labels.into_iter().collect::<BTreeMap<_, _>>(),
        runtime_namespace: None,
        flavor: crate::provider::Flavor::Default,
        created: nanos_time(created_at),
        started: None,
        pod: None,
    };
    (id, meta)
}

/// A CRI timestamp (ns since 1970) as a time; `None` for 0 (unset) or a negative one.
fn nanos_time(nanos: i64) -> Option<SystemTime> {
    let nanos = u64::try_from(nanos).ok().filter(|n| *n > 0)?;
    UNIX_EPOCH.checked_add(Duration::from_nanos(nanos))
}

/// CRI's stats as the provider's: CPU time in ns, memory in bytes; what CRI leaves unset is
/// `None`.
#[doc(hidden)]
pub fn stats_from_cri(stats: &CriStats) -> ContainerStats {
    let cpu_time = stats.cpu.as_ref().and_then(|c| nanos_time(c.timestamp));
    let cpu = stats.cpu.as_ref().map(|cpu| CpuStats {
        total: cpu.usage_core_nano_seconds.as_ref().map(|v| v.value),
        ..CpuStats::default()
    });
    let swap = stats.swap.and_then(|s| s.swap_usage_bytes).map(|v| v.value);
    let memory = stats.memory.as_ref().map(|m| MemoryStats {
        usage_total: m.usage_bytes.as_ref().map(|v| v.value),
        working_set: m.working_set_bytes.as_ref().map(|v| v.value),
        rss: m.rss_bytes.as_ref().map(|v| v.value),
        pgfault: m.page_faults.as_ref().map(|v| v.value),
        pgmajfault: m.major_page_faults.as_ref().map(|v| v.value),
        swap,
        ..MemoryStats::default()
    });
    let timestamp = stats
        .memory
        .as_ref()
        .map(|m| m.timestamp)
        .and_then(nanos_time)
        .or(cpu_time);
    ContainerStats {
        timestamp,
        cpu: cpu.filter(|c| c.total.is_some()),
        memory,
        io: None,
        pid: None,
    }
}

/// A status's message, with the transport error under it when there is one.
fn status_message(status: &Status) -> String {
    match std::error::Error::source(status) {
        Some(source) => format!("{}: {}", status.message(), ErrorChain(source)),
        None => status.message().to_owned(),
    }
}

/// The provider's view of the client: pod lookups for every runtime, stats for CRI-O.
pub struct CriCollector {
    client: Arc<CriClient>,
}

impl CriCollector {
    pub fn new(client: Arc<CriClient>) -> Self {
        Self { client }
    }
}

fn collector_error(error: CriError) -> CollectorError {
    CollectorError::other(Box::new(error) as Box<dyn std::error::Error + Send + Sync>)
}

impl ContainerIdForPodUidAndName for CriCollector {
    fn container_id_for_pod_uid_and_name(
        &self,
        pod_uid: &str,
        container_name: &str,
        _init_container: bool,
        _max_age: MaxAge,
    ) -> CollectorResult<String> {
        self.client
            .block_on(self.client.pod_container_id(pod_uid, container_name))
            .map_err(collector_error)
    }
}

impl StatsCollector for CriCollector {
    fn container_stats(
        &self,
        _namespace: &str,
        container_id: &str,
        _max_age: MaxAge,
    ) -> CollectorResult<ContainerStats> {
        self.client
            .block_on(self.client.container_stats(container_id))
            .map_err(collector_error)
    }
}

/// Whether `error` (a collector's) is the CRI client saying the runtime is down.
pub fn is_unavailable(error: &CollectorError) -> bool {
    match error {
        CollectorError::Other(e) => e
            .downcast_ref::<CriError>()
            .is_some_and(|e| matches!(e, CriError::Unavailable { .. }) || e.is_outage()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use k8s_cri::v1::{
        ContainerAttributes, ContainerMetadata, CpuUsage, ImageSpec, MemoryUsage, UInt64Value,
    };

    use super::*;

    fn container(id: &str, attempt: u32, created_at: i64) -> Container {
        Container {
            id: id.to_owned(),
            metadata: Some(ContainerMetadata {
                name: "app".to_owned(),
                attempt,
            }),
            created_at,
            ..Container::default()
        }
    }

    #[test]
    fn the_newest_attempt_answers() {
        let picked = newest(vec![
            container("a", 0, 30),
            container("b", 2, 10),
            container("c", 2, 20),
            container("d", 1, 40),
        ]);
        assert_eq!(picked.map(|c| c.id).as_deref(), Some("c"));
        assert!(newest(Vec::new()).is_none());
    }

    #[test]
    fn cri_metadata_keeps_labels_image_and_creation() {
        let mut c = container("abc", 0, 1_700_000_000_250_000_000);
        c.image = Some(ImageSpec {
            image: "localhost/app:1".to_owned(),
            ..ImageSpec::default()
        });
        c.labels = HashMap::from([(POD_UID_LABEL.to_owned(), "uid-1".to_owned())]);
        let (id, meta) = container_meta(c);
        assert_eq!(id, "abc");
        assert_eq!(meta.name.as_deref(), Some("abc"));
        assert_eq!(meta.image.as_deref(), Some("localhost/app:1"));
        assert_eq!(meta.pod_uid(), Some("uid-1"));
        assert_eq!(
            meta.created,
            Some(UNIX_EPOCH + Duration::new(1_700_000_000, 250_000_000))
        );
        let (_, bare) = container_meta(container("x", 0, 0));
        assert_eq!((bare.image, bare.created), (None, None));
    }

    #[test]
    fn unset_cri_stats_are_none_never_zero() {
        let value = |v| Some(UInt64Value { value: v });
        let stats = stats_from_cri(&CriStats {
            attributes: Some(ContainerAttributes {
                id: "abc".to_owned(),
                ..ContainerAttributes::default()
            }),
            cpu: Some(CpuUsage {
                timestamp: 5,
                usage_core_nano_seconds: value(1_234),
                usage_nano_cores: None,
            }),
            memory: Some(MemoryUsage {
                timestamp: 1_000_000_000,
                working_set_bytes: value(4_096),
                usage_bytes: value(8_192),
                ..MemoryUsage::default()
            }),
            ..CriStats::default()
        });
        let cpu = stats.cpu.unwrap();
        assert_eq!((cpu.total, cpu.user, cpu.system), (Some(1_234), None, None));
        let memory = stats.memory.unwrap();
        assert_eq!(memory.working_set, Some(4_096));
        assert_eq!(memory.usage_total, Some(8_192));
        assert_eq!((memory.rss, memory.swap, memory.limit), (None, None, None));
        assert_eq!(stats.timestamp, Some(UNIX_EPOCH + Duration::from_secs(1)));
        assert_eq!((stats.io, stats.pid), (None, None));
        let empty = stats_from_cri(&CriStats::default());
        assert_eq!((empty.cpu, empty.memory), (None, None));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refused_socket_is_down_then_fails_fast_naming_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("cri.sock");
        // A socket file whose listener is closed, as a killed runtime leaves it.
        drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
        let store = Arc::new(MetadataStore::default());
        let client = Arc::new(CriClient::new(
            socket.clone(),
            Duration::from_secs(5),
            Arc::clone(&store),
        ));
        assert!(matches!(client.probe(), Err(ProbeError::Refused(_))));
        let first = client.pod_container_id("uid", "app").await.unwrap_err();
        assert!(first.is_outage(), "{first:?}");
        assert!(matches!(store.state(Source::Cri), SourceState::Down { .. }));
        let second = client.pod_container_id("uid", "app").await.unwrap_err();
        assert!(
            matches!(&second, CriError::Unavailable { .. }),
            "within the backoff the runtime is not asked: {second:?}"
        );
        assert!(
            second.to_string().starts_with(&format!(
                "the CRI runtime at {} is not available",
                socket.display()
            )),
            "{second}"
        );
        assert!(is_unavailable(&collector_error(second)));
    }

    #[test]
    fn a_missing_socket_is_absent() {
        let client = CriClient::new(
            PathBuf::from("/nonexistent/cri.sock"),
            Duration::from_secs(1),
            Arc::new(MetadataStore::default()),
        );
        assert!(matches!(client.probe(), Err(ProbeError::Absent)));
    }
}
