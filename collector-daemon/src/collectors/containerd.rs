//! containerd metadata watcher: the image and labels of every container in every containerd
//! namespace (`k8s.io` for CRI pods, `moby` for Docker's, `default` for `ctr`), kept current
//! in the [`MetadataStore`] under [`Source::Containerd`].
//!
//! It uses containerd's v1 gRPC services (namespaces, containers, events), whose messages have
//! only grown since containerd 1.3; the crate's protos are 2.x and were checked against
//! containerd 1.6.20. containerd has no container names: the name is the id, as cAdvisor and
//! the kubelet show it. A namespace is chosen per call with the `containerd-namespace` header.
use std::{
    collections::BTreeMap,
    convert::Infallible,
    future::Future,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use containerd_client::{
    events::{ContainerCreate, ContainerDelete, ContainerUpdate, NamespaceCreate},
    services::v1::{
        Container, GetContainerRequest, ListContainersRequest, ListNamespacesRequest,
        SubscribeRequest, containers_client::ContainersClient, events_client::EventsClient,
        namespaces_client::NamespacesClient,
    },
    tonic::{
        self, Code, Request, Status,
        metadata::{MetadataValue, errors::InvalidMetadataValue},
        transport::Channel,
    },
    types::Envelope,
};
use prost::Message as _;
use prost_types::Timestamp;
use tokio::sync::mpsc;

use super::metadata::{ContainerMeta, MetadataStore, Source, SourceState};
use crate::{
    error_chain::{ErrorChain, IfDenied},
    provider::Flavor,
};

/// How often a socket that is not there is looked for again (one `stat`).
const ABSENT_POLL: Duration = Duration::from_secs(5);
/// First and longest wait before reconnecting after an error.
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Largest message accepted. `Containers.List` (the fallback when `ListStream` is missing)
/// carries every container's OCI spec in one message, well past tonic's 4 MiB default on a
/// busy node.
const MAX_MESSAGE_BYTES: usize = 256 << 20;
/// Events received but not yet applied; the stream waits when this many are queued.
const EVENT_BACKLOG: usize = 1024;
/// The gRPC header that names the namespace of a call.
const NAMESPACE_HEADER: &str = "containerd-namespace";

const TOPIC_CONTAINER_CREATE: &str = "/containers/create";
const TOPIC_CONTAINER_UPDATE: &str = "/containers/update";
const TOPIC_CONTAINER_DELETE: &str = "/containers/delete";
const TOPIC_NAMESPACE_CREATE: &str = "/namespaces/create";

/// Why a session with containerd ended (it is then down, and retried).
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error(
        "cannot connect to containerd at {}{}",
        .socket.display(),
        IfDenied(.source, "connecting needs write permission on the socket, root's and 0600 by default: set gid in containerd's [grpc] section to a group of the daemon's user")
    )]
    Connect {
        socket: PathBuf,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("the containerd socket {} is gone", .socket.display())]
    SocketGone { socket: PathBuf },
    #[error("containerd {call} failed: {code:?}: {message}")]
    Call {
        call: &'static str,
        code: Code,
        message: String,
    },
    #[error("containerd {call} did not answer within {timeout:?}")]
    Timeout {
        call: &'static str,
        timeout: Duration,
    },
    #[error("containerd ended the event stream")]
    StreamEnded,
    #[error("cannot decode a {topic} event from containerd")]
    Decode {
        topic: String,
        #[source]
        source: prost::DecodeError,
    },
    #[error("the containerd namespace {namespace:?} cannot be sent as a gRPC header")]
    Namespace {
        namespace: String,
        #[source]
        source: InvalidMetadataValue,
    },
}

/// Keeps `store` current from the containerd at `socket` until aborted.
///
/// A socket that is not there at start is containerd not being on this node: noted once
/// (`Absent`) and looked for every 5 s. Any other failure is an outage (`Down`): warned of
/// once, retried with a backoff of 0.5 s to 5 s; what containerd said stays in the store
/// meanwhile, and a full list replaces it when containerd answers again. A connect or call
/// that takes longer than `timeout` fails the session (a containerd that accepts and never
/// answers is down too).
pub async fn watch(store: Arc<MetadataStore>, socket: PathBuf, timeout: Duration) {
    let mut watcher = Watcher {
        store,
        socket,
        timeout,
        ever_connected: false,
        backoff: Backoff::default(),
    };
    loop {
        if !socket_present(&watcher.socket).await {
            if watcher.ever_connected {
                watcher.down(&WatchError::SocketGone {
                    socket: watcher.socket.clone(),
                });
                tokio::time::sleep(watcher.backoff.next()).await;
            } else {
                watcher.absent();
                tokio::time::sleep(ABSENT_POLL).await;
            }
            continue;
        }
        let error = watcher.session().await;
        watcher.down(&error);
        tokio::time::sleep(watcher.backoff.next()).await;
    }
}

/// Whether something is at `socket` (a symlink counts by its target). Another failure than
/// "not found" (a permission, say) counts as present: connecting then tells what is wrong.
async fn socket_present(socket: &Path) -> bool {
    match tokio::fs::metadata(socket).await {
        Ok(_) => true,
        Err(e) => e.kind() != std::io::ErrorKind::NotFound,
    }
}

struct Watcher {
    store: Arc<MetadataStore>,
    socket: PathBuf,
    /// Whether containerd has answered since start: a socket missing after that is an
    /// outage (containerd stopped cleanly), not containerd being absent from the node.
    ever_connected: bool,
    backoff: Backoff,
    /// Longest wait for one answer.
    timeout: Duration,
}

impl Watcher {
    fn absent(&self) {
        let reason = format!("no containerd socket at {}", self.socket.display());
        let before = self.store.set_state(
            Source::Containerd,
            SourceState::Absent {
                reason: reason.clone(),
            },
        );
        if !matches!(before, SourceState::Absent { .. }) {
            tracing::info!(
                socket = %self.socket.display(),
                "{reason}: not reading containerd metadata until it appears"
            );
        }
    }

    /// Records an outage; warns only when one begins, not at every failed retry.
    fn down(&self, error: &WatchError) {
        let reason = ErrorChain(error).to_string();
        let before = self.store.set_state(
            Source::Containerd,
            SourceState::Down {
                reason: reason.clone(),
            },
        );
        if !matches!(before, SourceState::Down { .. }) {
            tracing::warn!(
                socket = %self.socket.display(),
                error = %reason,
                "containerd is unreachable; retrying, the metadata already read is kept"
            );
        }
    }

    fn connected(&mut self, containers: usize, namespaces: usize) {
        self.ever_connected = true;
        self.backoff.reset();
        let before = self
            .store
            .set_state(Source::Containerd, SourceState::Connected);
        if matches!(before, SourceState::Down { .. }) {
            tracing::info!(
                socket = %self.socket.display(),
                containers,
                namespaces,
                "containerd is reachable again; metadata re-listed"
            );
        } else {
            tracing::info!(
                socket = %self.socket.display(),
                containers,
                namespaces,
                "reading container metadata from containerd"
            );
        }
    }

    /// Connects, subscribes, lists, then applies events until something fails.
    async fn session(&mut self) -> WatchError {
        match self.run_session().await {
            Ok(never) => match never {},
            Err(e) => e,
        }
    }

    async fn run_session(&mut self) -> Result<Infallible, WatchError> {
        let channel = bounded(self.timeout, "connect", async {
            containerd_client::connect(&self.socket)
                .await
                .map_err(|source| WatchError::Connect {
                    socket: self.socket.clone(),
                    source,
                })
        })
        .await?;
        // Subscribed before listing, so that a change made during the list arrives as an
        // event after it. (The subscription is in place once containerd has run its handler;
        // containerd sends no answer before the first event, so a change in the moment
        // between sending the request and that handler running could still be missed, and
        // would be read at the container's next change or the next full list.)
        let mut events = Subscription::start(EventsClient::new(channel.clone()));
        let mut api = Api::new(channel, self.timeout);
        let namespaces = api.namespaces().await?;
        let mut entries = Vec::new();
        for namespace in &namespaces {
            let containers = api.containers(namespace).await?;
            entries.extend(containers.into_iter().map(|c| container_meta(namespace, c)));
        }
        let count = entries.len();
        self.store.replace_all(Source::Containerd, entries);
        self.connected(count, namespaces.len());
        loop {
            let envelope = events.next().await?;
            match change(&envelope)? {
                Some(Change::Container { namespace, id }) => {
                    match api.container(&namespace, &id).await? {
                        Some(container) => {
                            let (id, meta) = container_meta(&namespace, container);
                            self.store.upsert(Source::Containerd, id, meta);
                        }
                        // Deleted again before we asked: its delete event follows.
                        None => self.forget(&namespace, &id),
                    }
                }
                Some(Change::Deleted { namespace, id }) => self.forget(&namespace, &id),
                Some(Change::Namespace { name }) => {
                    for container in api.containers(&name).await? {
                        let (id, meta) = container_meta(&name, container);
                        self.store.upsert(Source::Containerd, id, meta);
                    }
                }
                None => {}
            }
        }
    }

    /// Forgets container `id` of `namespace`. Ids are unique per namespace only: one that
    /// another namespace's container holds now is kept.
    fn forget(&self, namespace: &str, id: &str) {
        let ours = self
            .store
            .get_from(Source::Containerd, id)
            .is_some_and(|meta| meta.runtime_namespace.as_deref() == Some(namespace));
        if ours {
            self.store.remove(Source::Containerd, id);
        }
    }
}

/// The clients of the services read, on one connection.
struct Api {
    namespaces: NamespacesClient<Channel>,
    containers: ContainersClient<Channel>,
    /// Longest wait for one answer.
    timeout: Duration,
}

impl Api {
    fn new(channel: Channel, timeout: Duration) -> Self {
        Self {
            timeout,
            namespaces: NamespacesClient::new(channel.clone()),
            containers: ContainersClient::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES),
        }
    }

    async fn namespaces(&mut self) -> Result<Vec<String>, WatchError> {
        const CALL: &str = "Namespaces.List";
        let response = bounded(self.timeout, CALL, async {
            self.namespaces
                .list(ListNamespacesRequest::default())
                .await
                .map_err(status_error(CALL))
        })
        .await?;
        Ok(response
            .into_inner()
            .namespaces
            .into_iter()
            .map(|n| n.name)
            .collect())
    }

    /// Every container of `namespace`, one message each (`ListStream`, containerd 1.3+), or
    /// all in one (`List`) where the stream is not implemented.
    async fn containers(&mut self, namespace: &str) -> Result<Vec<Container>, WatchError> {
        const CALL: &str = "Containers.ListStream";
        bounded(self.timeout, CALL, async {
            let request = in_namespace(namespace, ListContainersRequest::default())?;
            match self.containers.list_stream(request).await {
                Ok(response) => {
                    let mut stream = response.into_inner();
                    let mut containers = Vec::new();
                    while let Some(message) = stream.message().await.map_err(status_error(CALL))? {
                        containers.extend(message.container);
                    }
                    Ok(containers)
                }
                Err(status) if status.code() == Code::Unimplemented => {
                    let request = in_namespace(namespace, ListContainersRequest::default())?;
                    let response = self
                        .containers
                        .list(request)
                        .await
                        .map_err(status_error("Containers.List"))?;
                    Ok(response.into_inner().containers)
                }
                Err(status) => Err(status_error(CALL)(status)),
            }
        })
        .await
    }

    /// Container `id` of `namespace`; `None` when it is not there (any more).
    async fn container(
        &mut self,
        namespace: &str,
        id: &str,
    ) -> Result<Option<Container>, WatchError> {
        const CALL: &str = "Containers.Get";
        bounded(self.timeout, CALL, async {
            let request = in_namespace(namespace, GetContainerRequest { id: id.to_owned() })?;
            match self.containers.get(request).await {
                Ok(response) => Ok(response.into_inner().container),
                Err(status) if status.code() == Code::NotFound => Ok(None),
                Err(status) => Err(status_error(CALL)(status)),
            }
        })
        .await
    }
}

/// The event stream, read by a task of its own: containerd (1.6 at least) sends the
/// response headers of `Subscribe` only with the first event, so awaiting the call itself
/// would hold up the list until something happens.
struct Subscription {
    events: mpsc::Receiver<Result<Envelope, WatchError>>,
    task: tokio::task::JoinHandle<()>,
}

impl Subscription {
    fn start(mut client: EventsClient<Channel>) -> Self {
        let (sender, events) = mpsc::channel(EVENT_BACKLOG);
        let task = tokio::spawn(async move {
            if let Err(e) = forward_events(&mut client, &sender).await {
                let _ = sender.send(Err(e)).await;
            }
        });
        Self { events, task }
    }

    async fn next(&mut self) -> Result<Envelope, WatchError> {
        self.events
            .recv()
            .await
            .unwrap_or(Err(WatchError::StreamEnded))
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Subscribes and passes every event on; returns when the receiver is gone, or the error
/// that ended the stream.
async fn forward_events(
    client: &mut EventsClient<Channel>,
    sender: &mpsc::Sender<Result<Envelope, WatchError>>,
) -> Result<(), WatchError> {
    const CALL: &str = "Events.Subscribe";
    let request = SubscribeRequest {
        filters: event_filters(),
    };
    let mut stream = client
        .subscribe(request)
        .await
        .map_err(status_error(CALL))?
        .into_inner();
    while let Some(envelope) = stream.message().await.map_err(status_error(CALL))? {
        if sender.send(Ok(envelope)).await.is_err() {
            return Ok(());
        }
    }
    Err(WatchError::StreamEnded)
}

/// containerd event filters for the topics applied (filters are or-ed).
fn event_filters() -> Vec<String> {
    [
        TOPIC_CONTAINER_CREATE,
        TOPIC_CONTAINER_UPDATE,
        TOPIC_CONTAINER_DELETE,
        TOPIC_NAMESPACE_CREATE,
    ]
    .iter()
    .map(|topic| format!("topic=={topic:?}"))
    .collect()
}

/// What an event asks of the store.
#[doc(hidden)] // pub for the fuzz targets (fuzz/)
#[derive(Debug, PartialEq, Eq)]
pub enum Change {
    /// Created or updated: read it again.
    Container {
        namespace: String,
        id: String,
    },
    Deleted {
        namespace: String,
        id: String,
    },
    /// A new namespace: list its containers.
    Namespace {
        name: String,
    },
}

/// The change an event tells of; `None` for other topics and events without an id.
#[doc(hidden)] // pub for the fuzz targets (fuzz/)
pub fn change(envelope: &Envelope) -> Result<Option<Change>, WatchError> {
    let value = envelope
        .event
        .as_ref()
        .map_or(&[][..], |any| any.value.as_slice());
    let decode_error = |source| WatchError::Decode {
        topic: envelope.topic.clone(),
        source,
    };
    let namespace = envelope.namespace.clone();
    // The payload's type is known from the topic: containerd's `Any` type URLs
    // (`containerd.events.ContainerCreate`) lack the prefix prost's `Any::to_msg` expects.
    let change = match envelope.topic.as_str() {
        TOPIC_CONTAINER_CREATE => {
            let id = ContainerCreate::decode(value).map_err(decode_error)?.id;
            Change::Container { namespace, id }
        }
        TOPIC_CONTAINER_UPDATE => {
            let id = ContainerUpdate::decode(value).map_err(decode_error)?.id;
            Change::Container { namespace, id }
        }
        TOPIC_CONTAINER_DELETE => {
            let id = ContainerDelete::decode(value).map_err(decode_error)?.id;
            Change::Deleted { namespace, id }
        }
        TOPIC_NAMESPACE_CREATE => {
            let name = NamespaceCreate::decode(value).map_err(decode_error)?.name;
            Change::Namespace { name }
        }
        _ => return Ok(None),
    };
    let empty = match &change {
        Change::Container { id, .. } | Change::Deleted { id, .. } => id.is_empty(),
        Change::Namespace { name } => name.is_empty(),
    };
    Ok((!empty).then_some(change))
}

/// The store's entry for a container of `namespace`: its id, and its metadata.
#[doc(hidden)] // pub for the fuzz targets (fuzz/)
pub fn container_meta(namespace: &str, container: Container) -> (String, ContainerMeta) {
    let Container {
        id,
        labels,
        image,
        created_at,
        runtime,
        ..
    } = container;
    let meta = ContainerMeta {
        name: Some(id.clone()),
        image: (!image.is_empty()).then_some(image),
        labels: labels.into_iter().collect::<BTreeMap<_, _>>(),
        runtime_namespace: Some(namespace.to_owned()),
        created: created_at.as_ref().and_then(system_time),
        started: None,
        pod: None,
        flavor: runtime.map_or(Flavor::Default, |r| {
            super::containerd_tasks::flavor(&r.name)
        }),
    };
    (id, meta)
}

/// A protobuf timestamp as a time; `None` for one at or before 1970, which is an unset one
/// (Go's zero time is year 1), and for an invalid one.
fn system_time(timestamp: &Timestamp) -> Option<SystemTime> {
    let seconds = u64::try_from(timestamp.seconds).ok().filter(|s| *s > 0)?;
    let nanos = u32::try_from(timestamp.nanos)
        .ok()
        .filter(|n| *n < 1_000_000_000)?;
    UNIX_EPOCH.checked_add(Duration::new(seconds, nanos))
}

/// `message` for a call in `namespace`.
pub(super) fn in_namespace<T>(namespace: &str, message: T) -> Result<Request<T>, WatchError> {
    let value = MetadataValue::try_from(namespace).map_err(|source| WatchError::Namespace {
        namespace: namespace.to_owned(),
        source,
    })?;
    let mut request = Request::new(message);
    request.metadata_mut().insert(NAMESPACE_HEADER, value);
    Ok(request)
}

pub(super) fn status_error(call: &'static str) -> impl Fn(Status) -> WatchError {
    move |status| WatchError::Call {
        call,
        code: status.code(),
        message: status_message(&status),
    }
}

/// A status's message, with the transport error under it when there is one (tonic's
/// message for a broken connection is only "transport error").
fn status_message(status: &Status) -> String {
    let Some(source) = std::error::Error::source(status) else {
        return status.message().to_owned();
    };
    let causes = ErrorChain(source).to_string();
    if causes.starts_with(status.message()) {
        causes
    } else {
        format!("{}: {causes}", status.message())
    }
}

/// `future`, failing with a timeout after `timeout`.
pub(super) async fn bounded<T>(
    timeout: Duration,
    call: &'static str,
    future: impl Future<Output = Result<T, WatchError>>,
) -> Result<T, WatchError> {
    tokio::time::timeout(timeout, future)
        .await
        .map_err(|_| WatchError::Timeout { call, timeout })?
}

/// Waits before reconnecting: doubling from [`BACKOFF_MIN`] to [`BACKOFF_MAX`].
struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { next: BACKOFF_MIN }
    }
}

impl Backoff {
    fn next(&mut self) -> Duration {
        let wait = self.next;
        self.next = (wait * 2).min(BACKOFF_MAX);
        wait
    }

    fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use prost_types::Any;

    use super::*;
    use crate::collectors::metadata::{
        CONTAINER_NAME_LABEL, CRI_KIND_LABEL, POD_NAME_LABEL, POD_NAMESPACE_LABEL,
    };

    fn envelope(namespace: &str, topic: &str, event: &impl prost::Message) -> Envelope {
        Envelope {
            timestamp: None,
            namespace: namespace.to_owned(),
            topic: topic.to_owned(),
            event: Some(Any {
                // As containerd 1.6 sends it: no `type.googleapis.com/` prefix.
                type_url: "containerd.events.Whatever".to_owned(),
                value: event.encode_to_vec(),
            }),
        }
    }

    #[test]
    fn a_cri_container_keeps_its_id_image_labels_namespace_and_creation() {
        let labels: HashMap<String, String> = [
            (POD_NAME_LABEL, "web-0"),
            (POD_NAMESPACE_LABEL, "prod"),
            (CONTAINER_NAME_LABEL, "nginx"),
            (CRI_KIND_LABEL, "container"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let container = Container {
            id: "3f4b".repeat(16),
            labels,
            image: "docker.io/library/nginx:1.25".to_owned(),
            created_at: Some(Timestamp {
                seconds: 1_700_000_000,
                nanos: 250_000_000,
            }),
            snapshotter: "overlayfs".to_owned(),
            ..Container::default()
        };
        let (id, meta) = container_meta("k8s.io", container);
        assert_eq!(id, "3f4b".repeat(16));
        assert_eq!(meta.name.as_deref(), Some(id.as_str()));
        assert_eq!(meta.image.as_deref(), Some("docker.io/library/nginx:1.25"));
        assert_eq!(meta.runtime_namespace.as_deref(), Some("k8s.io"));
        assert_eq!(
            meta.created,
            Some(UNIX_EPOCH + Duration::new(1_700_000_000, 250_000_000))
        );
        assert_eq!(meta.started, None);
        assert_eq!(meta.pod_name(), Some("web-0"));
        assert_eq!(meta.pod_namespace(), Some("prod"));
        assert_eq!(meta.container_name(), Some("nginx"));
        assert_eq!(meta.labels.len(), 4);
        assert_eq!(meta.labels[CRI_KIND_LABEL], "container");
    }

    #[test]
    fn an_empty_image_and_no_creation_time_are_unknown() {
        let (id, meta) = container_meta(
            "default",
            Container {
                id: "plain".to_owned(),
                ..Container::default()
            },
        );
        assert_eq!(id, "plain");
        assert_eq!(meta.image, None);
        assert_eq!(meta.created, None);
        assert!(meta.labels.is_empty());
        assert_eq!(meta.runtime_namespace.as_deref(), Some("default"));
    }

    #[test]
    fn timestamps_before_1970_or_invalid_are_unset() {
        let at = |seconds, nanos| system_time(&Timestamp { seconds, nanos });
        assert_eq!(at(1, 5), Some(UNIX_EPOCH + Duration::new(1, 5)));
        // Go's zero time.Time, which containerd would send for an unset time.
        assert_eq!(at(-62_135_596_800, 0), None);
        assert_eq!(at(0, 0), None);
        assert_eq!(at(10, -1), None);
        assert_eq!(at(10, 1_000_000_000), None);
    }

    #[test]
    fn events_are_decoded_by_topic() {
        let id = "abc".to_owned();
        let create = ContainerCreate {
            id: id.clone(),
            image: "img".to_owned(),
            runtime: None,
        };
        assert_eq!(
            change(&envelope("k8s.io", TOPIC_CONTAINER_CREATE, &create)).unwrap(),
            Some(Change::Container {
                namespace: "k8s.io".to_owned(),
                id: id.clone()
            })
        );
        let update = ContainerUpdate {
            id: id.clone(),
            image: "img".to_owned(),
            labels: HashMap::from([("a".to_owned(), "b".to_owned())]),
            snapshot_key: String::new(),
        };
        assert_eq!(
            change(&envelope("default", TOPIC_CONTAINER_UPDATE, &update)).unwrap(),
            Some(Change::Container {
                namespace: "default".to_owned(),
                id: id.clone()
            })
        );
        let delete = ContainerDelete { id: id.clone() };
        assert_eq!(
            change(&envelope("moby", TOPIC_CONTAINER_DELETE, &delete)).unwrap(),
            Some(Change::Deleted {
                namespace: "moby".to_owned(),
                id
            })
        );
        let namespace = NamespaceCreate {
            name: "team-a".to_owned(),
            labels: HashMap::new(),
        };
        assert_eq!(
            change(&envelope("team-a", TOPIC_NAMESPACE_CREATE, &namespace)).unwrap(),
            Some(Change::Namespace {
                name: "team-a".to_owned()
            })
        );
    }

    #[test]
    fn other_topics_and_events_without_an_id_change_nothing() {
        let delete = ContainerDelete { id: "x".to_owned() };
        assert_eq!(
            change(&envelope("default", "/tasks/exit", &delete)).unwrap(),
            None
        );
        let no_id = ContainerDelete { id: String::new() };
        assert_eq!(
            change(&envelope("default", TOPIC_CONTAINER_DELETE, &no_id)).unwrap(),
            None
        );
        let mut empty = envelope("default", TOPIC_CONTAINER_CREATE, &no_id);
        empty.event = None;
        assert_eq!(change(&empty).unwrap(), None);
    }

    #[test]
    fn a_garbled_event_is_an_error_naming_its_topic() {
        let mut garbled = envelope(
            "default",
            TOPIC_CONTAINER_CREATE,
            &ContainerDelete { id: "x".to_owned() },
        );
        // Field 1 as a varint where a string is expected.
        garbled.event.as_mut().unwrap().value = vec![0x08, 0x01];
        let error = change(&garbled).unwrap_err();
        assert!(
            matches!(&error, WatchError::Decode { topic, .. } if topic == TOPIC_CONTAINER_CREATE),
            "{error:?}"
        );
        assert!(
            ErrorChain(&error)
                .to_string()
                .starts_with("cannot decode a /containers/create event")
        );
    }

    #[test]
    fn filters_name_the_applied_topics_in_containerd_syntax() {
        assert_eq!(
            event_filters(),
            [
                r#"topic=="/containers/create""#,
                r#"topic=="/containers/update""#,
                r#"topic=="/containers/delete""#,
                r#"topic=="/namespaces/create""#,
            ]
        );
    }

    #[test]
    fn the_namespace_goes_in_the_containerd_namespace_header() {
        let request = in_namespace("k8s.io", GetContainerRequest::default()).unwrap();
        assert_eq!(request.metadata().get(NAMESPACE_HEADER).unwrap(), "k8s.io");
        assert!(matches!(
            in_namespace("bad\nname", ()),
            Err(WatchError::Namespace { .. })
        ));
    }

    #[test]
    fn an_error_chain_leaves_out_repeated_causes() {
        #[derive(Debug, thiserror::Error)]
        #[error("connecting: {0}")]
        struct Repeats(#[source] std::io::Error);
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(
            ErrorChain(&Repeats(refused)).to_string(),
            "connecting: connection refused"
        );
        let error = WatchError::Namespace {
            namespace: "x".to_owned(),
            source: MetadataValue::try_from("\n").unwrap_err(),
        };
        assert_eq!(
            ErrorChain(&error).to_string(),
            format!(
                "the containerd namespace \"x\" cannot be sent as a gRPC header: {}",
                MetadataValue::try_from("\n").unwrap_err()
            )
        );
    }

    #[test]
    fn backoff_doubles_to_five_seconds_and_resets() {
        let mut backoff = Backoff::default();
        let waits: Vec<u64> = (0..6)
            .map(|_| u64::try_from(backoff.next().as_millis()).unwrap())
            .collect();
        assert_eq!(waits, [500, 1000, 2000, 4000, 5000, 5000]);
        backoff.reset();
        assert_eq!(backoff.next(), BACKOFF_MIN);
    }

    #[test]
    fn a_delete_in_one_namespace_keeps_the_same_id_of_another() {
        let store = Arc::new(MetadataStore::default());
        let watcher = Watcher {
            store: Arc::clone(&store),
            socket: PathBuf::from("/nonexistent"),
            ever_connected: true,
            backoff: Backoff::default(),
            timeout: Duration::from_secs(30),
        };
        let (id, meta) = container_meta(
            "team-b",
            Container {
                id: "web".to_owned(),
                ..Container::default()
            },
        );
        store.upsert(Source::Containerd, id, meta);
        watcher.forget("team-a", "web");
        assert!(store.get("web").is_some());
        watcher.forget("team-b", "web");
        assert!(store.get("web").is_none());
    }

    /// Polls the store until `done` holds of the containerd state, for at most 10 s.
    async fn wait_for_state(
        store: &MetadataStore,
        done: impl Fn(&SourceState) -> bool,
    ) -> SourceState {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let state = store.state(Source::Containerd);
            if done(&state) {
                return state;
            }
            assert!(tokio::time::Instant::now() < deadline, "still {state:?}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn a_missing_socket_is_absent_at_once() {
        let store = Arc::new(MetadataStore::default());
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("containerd.sock");
        let task = tokio::spawn(watch(
            Arc::clone(&store),
            socket.clone(),
            Duration::from_secs(30),
        ));
        let state = wait_for_state(&store, |s| *s != SourceState::Starting).await;
        task.abort();
        assert_eq!(
            state,
            SourceState::Absent {
                reason: format!("no containerd socket at {}", socket.display())
            }
        );
    }

    #[tokio::test]
    async fn a_socket_nobody_listens_on_is_down_and_the_store_is_kept() {
        let store = Arc::new(MetadataStore::default());
        store.upsert(
            Source::Containerd,
            "kept".to_owned(),
            ContainerMeta::default(),
        );
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("containerd.sock");
        // A socket file whose listener is closed, as a killed containerd leaves it:
        // connecting is refused.
        drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
        let task = tokio::spawn(watch(
            Arc::clone(&store),
            socket.clone(),
            Duration::from_secs(30),
        ));
        let state = wait_for_state(&store, |s| matches!(s, SourceState::Down { .. })).await;
        task.abort();
        let SourceState::Down { reason } = state else {
            unreachable!()
        };
        assert!(
            reason.starts_with(&format!(
                "cannot connect to containerd at {}",
                socket.display()
            )),
            "{reason}"
        );
        assert!(store.get("kept").is_some());
    }
}
