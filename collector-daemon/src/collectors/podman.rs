//! Podman's names, images, labels and pods, from the libpod REST API that `podman system
//! service` serves on a unix socket (rootful `/run/podman/podman.sock`, rootless
//! `$XDG_RUNTIME_DIR/podman/podman.sock`); and its stats, the last link of the podman
//! runtime's stats chain (after cgroupfs).
//!
//! Podman has no daemon of its own: the API service may come and go while the containers
//! (each watched by its `conmon`) run on. The watcher subscribes to the event stream first,
//! then lists every container; any event that arrives afterwards is answered with a new list
//! (one per burst). Libpod's list already carries the name, image reference, labels, pod
//! name and times that an inspection would give, so no container is inspected one by one.
//! Facts from Podman 4.3 (Debian 12): the API is versioned `v4.0.0`; the list's `Created` is
//! RFC 3339 and `StartedAt` Unix seconds (0 or negative when never started).
use std::{
    collections::BTreeMap,
    convert::Infallible,
    io::{Read as _, Write as _},
    os::unix::net::UnixStream as StdUnixStream,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use futures_util::FutureExt as _;
use http_body_util::{BodyExt as _, Empty};
use hyper::{Request, Response, body::Incoming, header::HOST};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, de::DeserializeOwned};

use super::{
    docker::{Backoff, Outage, parse_docker_time},
    metadata::{ContainerMeta, SourceState},
    podman_sockets::{Listed, PodmanRegistry},
};
use crate::{
    error_chain::ErrorChain,
    provider::{
        ContainerStats, CpuStats, MaxAge, MemoryStats, PidStats, StatsCollector,
        capabilities::{CollectorError, CollectorResult},
    },
};

/// The collector's id (the source named in answers).
pub const ID: &str = "podman";
/// Rootful Podman's API socket (`podman.socket`'s, and the usual `podman system service`'s).
pub const ROOTFUL_SOCKET: &str = "/run/podman/podman.sock";
/// The libpod API's path prefix. Podman 4 answers any `v4.x` prefix.
const API: &str = "/v4.0.0/libpod";
/// Container events only (`filters={"type":["container"]}`, URL-encoded): pods' own events
/// change nothing listed that a container event does not also announce.
const EVENTS_QUERY: &str = "/events?stream=true&filters=%7B%22type%22%3A%5B%22container%22%5D%7D";
/// Every container, running or not (a created container has a cgroup once started only, but
/// its name is known before).
const LIST_QUERY: &str = "/containers/json?all=true";
/// How often a socket that was never there is looked for (one `stat`).
const ABSENT_POLL: Duration = Duration::from_secs(5);
/// Most bytes of one answer read: a rootless user's service is not trusted to end its
/// answers (a list of 10,000 containers is ~10 MiB).
const MAX_ANSWER_BYTES: usize = 64 << 20;
/// Most bytes of an error answer quoted in a message.
const QUOTED_BODY: usize = 200;

/// The API socket used when none is configured: the rootful one for root, else the
/// rootless one of the daemon's own user (`$XDG_RUNTIME_DIR`, which the session sets to
/// `/run/user/<uid>`).
pub fn default_socket(euid: u32, xdg_runtime_dir: Option<&Path>) -> PathBuf {
    if euid == 0 {
        return PathBuf::from(ROOTFUL_SOCKET);
    }
    match xdg_runtime_dir.filter(|dir| dir.is_absolute()) {
        Some(dir) => dir.join("podman/podman.sock"),
        None => PathBuf::from(format!("/run/user/{euid}/podman/podman.sock")),
    }
}

/// Why a connection to Podman failed or ended. Messages leave the cause to `source()`.
#[derive(Debug, thiserror::Error)]
pub enum PodmanError {
    /// The socket path could not be stat'ed.
    #[error("cannot stat the Podman socket {socket}")]
    Stat {
        socket: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// It was there before and is gone (the service removes it when it stops cleanly).
    #[error("the Podman socket {socket} is gone")]
    Vanished { socket: PathBuf },
    /// Connecting, writing or reading the socket failed.
    #[error("talking to Podman on {socket} failed (GET {path})")]
    Io {
        socket: PathBuf,
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// Reading an answer's body failed, or it was larger than the daemon reads.
    #[error("reading Podman's answer on {socket} failed (GET {path})")]
    Read {
        socket: PathBuf,
        path: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The HTTP exchange failed.
    #[error("HTTP to Podman on {socket} failed (GET {path})")]
    Http {
        socket: PathBuf,
        path: String,
        #[source]
        source: hyper::Error,
    },
    /// No answer within the runtime timeout.
    #[error("Podman on {socket} did not answer GET {path} within {timeout:?}")]
    Timeout {
        socket: PathBuf,
        path: String,
        timeout: Duration,
    },
    /// An answer other than 2xx.
    #[error("Podman answered GET {path} with HTTP {status}: {body}")]
    Status {
        path: String,
        status: u16,
        body: String,
    },
    /// A 2xx answer that is not what the libpod API documents.
    #[error("Podman's answer to GET {path} is not the documented JSON")]
    Json {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    /// The event stream ended (the service stopped).
    #[error("Podman's event stream ended")]
    EventsEnded,
}

/// Keeps what `registry` has from `socket` current from its libpod API until aborted. A
/// request that gets no answer within `timeout` fails the connection (the event stream
/// itself may stay idle). The socket must be registered.
pub async fn watch(registry: Arc<PodmanRegistry>, socket: PathBuf, timeout: Duration) {
    let mut watcher = Watcher {
        registry,
        socket,
        seen: false,
        outage: Outage::default(),
        backoff: Backoff::default(),
        timeout,
    };
    watcher.run().await;
}

struct Watcher {
    registry: Arc<PodmanRegistry>,
    socket: PathBuf,
    /// Whether the socket was ever there: missing after that is an outage, not a node
    /// without Podman.
    seen: bool,
    outage: Outage,
    backoff: Backoff,
    timeout: Duration,
}

impl Watcher {
    async fn run(&mut self) -> ! {
        loop {
            let Err(error) = self.attempt().await else {
                tokio::time::sleep(ABSENT_POLL).await;
                continue;
            };
            let reason = ErrorChain(&error).to_string();
            self.registry.set_state(
                &self.socket,
                SourceState::Down {
                    reason: reason.clone(),
                },
            );
            if self.outage.failed() {
                tracing::warn!(
                    socket = %self.socket.display(),
                    error = %reason,
                    "Podman is down: retrying; the names, images and labels already known are kept"
                );
            } else {
                tracing::debug!(error = %reason, "Podman still down");
            }
            tokio::time::sleep(self.backoff.next_wait()).await;
        }
    }

    /// One try: `Ok` when the socket is absent (never seen), else the error that ended the
    /// connection.
    async fn attempt(&mut self) -> Result<(), PodmanError> {
        match tokio::fs::metadata(&self.socket).await {
            Ok(_) => self.seen = true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if self.seen {
                    return Err(PodmanError::Vanished {
                        socket: self.socket.clone(),
                    });
                }
                if self.outage.absent() {
                    tracing::info!(
                        socket = %self.socket.display(),
                        "no Podman socket: Podman metadata off until it appears"
                    );
                }
                let reason = format!("no Podman socket at {}", self.socket.display());
                self.registry
                    .set_state(&self.socket, SourceState::Absent { reason });
                return Ok(());
            }
            Err(source) => {
                return Err(PodmanError::Stat {
                    socket: self.socket.clone(),
                    source,
                });
            }
        }
        let Err(e) = self.session().await;
        Err(e)
    }

    /// Subscribes to the events, lists, and lists again after each burst of events, until
    /// something fails.
    async fn session(&mut self) -> Result<Infallible, PodmanError> {
        let events_path = format!("{API}{EVENTS_QUERY}");
        let events = open(&self.socket, &events_path, self.timeout).await?;
        check_status(&events_path, events.status().as_u16(), &[])?;
        let mut body = events.into_body();
        let count = self.relist().await?;
        self.registry
            .set_state(&self.socket, SourceState::Connected);
        self.backoff.reset();
        if self.outage.connected() {
            tracing::info!(socket = %self.socket.display(), containers = count, "Podman is back");
        } else {
            tracing::info!(socket = %self.socket.display(), containers = count, "connected to Podman");
        }
        let stream_error = |source| PodmanError::Http {
            socket: self.socket.clone(),
            path: events_path.clone(),
            source,
        };
        loop {
            match body.frame().await {
                Some(Ok(_)) => {
                    // Whatever else already arrived is covered by the same list.
                    while let Some(frame) = body.frame().now_or_never() {
                        match frame {
                            Some(Ok(_)) => {}
                            Some(Err(source)) => return Err(stream_error(source)),
                            None => return Err(PodmanError::EventsEnded),
                        }
                    }
                    self.relist().await?;
                }
                Some(Err(source)) => return Err(stream_error(source)),
                None => return Err(PodmanError::EventsEnded),
            }
        }
    }

    /// Replaces what the registry has from this socket with a fresh list; how many were
    /// listed.
    async fn relist(&self) -> Result<usize, PodmanError> {
        let path = format!("{API}{LIST_QUERY}");
        let listed: Vec<ListedContainer> = get_json(&self.socket, &path, self.timeout).await?;
        let entries: Vec<Listed> = listed
            .into_iter()
            .filter_map(ListedContainer::into_listed)
            .collect();
        let count = entries.len();
        self.registry.replace(&self.socket, entries);
        Ok(count)
    }
}

/// Sends `GET path` on a new connection to `socket`; the response once its headers arrived.
async fn open(
    socket: &Path,
    path: &str,
    timeout: Duration,
) -> Result<Response<Incoming>, PodmanError> {
    let http_error = |source| PodmanError::Http {
        socket: socket.to_owned(),
        path: path.to_owned(),
        source,
    };
    let exchange = async {
        let stream = tokio::net::UnixStream::connect(socket)
            .await
            .map_err(|source| PodmanError::Io {
                socket: socket.to_owned(),
                path: path.to_owned(),
                source,
            })?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(http_error)?;
        // The connection task carries the body; it ends when the response is read or dropped.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let request = Request::get(path)
            .header(HOST, "podman")
            .body(Empty::<Bytes>::new())
            .map_err(|e| PodmanError::Io {
                socket: socket.to_owned(),
                path: path.to_owned(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
            })?;
        sender.send_request(request).await.map_err(http_error)
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| PodmanError::Timeout {
            socket: socket.to_owned(),
            path: path.to_owned(),
            timeout,
        })?
}

/// `GET path`, its whole body read within `timeout` and decoded.
async fn get_json<T: DeserializeOwned>(
    socket: &Path,
    path: &str,
    timeout: Duration,
) -> Result<T, PodmanError> {
    let read = async {
        let response = open(socket, path, timeout).await?;
        let status = response.status().as_u16();
        let body = http_body_util::Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|source| PodmanError::Read {
                socket: socket.to_owned(),
                path: path.to_owned(),
                source,
            })?
            .to_bytes();
        check_status(path, status, &body)?;
        serde_json::from_slice(&body).map_err(|source| PodmanError::Json {
            path: path.to_owned(),
            source,
        })
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| PodmanError::Timeout {
            socket: socket.to_owned(),
            path: path.to_owned(),
            timeout,
        })?
}

fn check_status(path: &str, status: u16, body: &[u8]) -> Result<(), PodmanError> {
    if (200..300).contains(&status) {
        return Ok(());
    }
    let quoted = String::from_utf8_lossy(&body[..body.len().min(QUOTED_BODY)]);
    Err(PodmanError::Status {
        path: path.to_owned(),
        status,
        body: quoted.trim().to_owned(),
    })
}

/// One element of `GET /libpod/containers/json` (the fields read).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
#[doc(hidden)] // pub for the fuzz targets (fuzz/)
pub struct ListedContainer {
    pub id: String,
    pub names: Option<Vec<String>>,
    pub image: Option<String>,
    pub labels: Option<BTreeMap<String, String>>,
    pub pod_name: Option<String>,
    /// RFC 3339 in Podman 4.
    pub created: Option<serde_json::Value>,
    /// Unix seconds; 0 or Go's zero time (negative) when never started.
    pub started_at: Option<i64>,
    /// `created`, `running`, `exited`, ...
    pub state: Option<String>,
    /// The main process's host PID; 0 when not running.
    pub pid: Option<i64>,
}

impl ListedContainer {
    /// The container as its socket listed it; `None` without an id.
    pub fn into_listed(mut self) -> Option<Listed> {
        let running = self.state.take().is_some_and(|s| s == "running");
        let pid = self
            .pid
            .take()
            .and_then(|p| u32::try_from(p).ok())
            .filter(|&p| p > 0 && running);
        self.into_meta().map(|(id, meta)| Listed {
            id,
            meta,
            running,
            pid,
            start_time_ns: None,
        })
    }

    /// The container's id and what it says of it; `None` without an id.
    pub fn into_meta(self) -> Option<(String, ContainerMeta)> {
        if self.id.is_empty() {
            return None;
        }
        let created = match &self.created {
            Some(serde_json::Value::String(text)) => parse_docker_time(text).ok().flatten(),
            Some(serde_json::Value::Number(n)) => n.as_u64().and_then(unix_seconds),
            _ => None,
        };
        let meta = ContainerMeta {
            name: self
                .names
                .and_then(|n| n.into_iter().find(|n| !n.is_empty())),
            image: self.image.filter(|i| !i.is_empty()),
            labels: self.labels.unwrap_or_default(),
            runtime_namespace: None,
            flavor: crate::provider::Flavor::Default,
            created,
            started: self
                .started_at
                .and_then(|s| u64::try_from(s).ok())
                .and_then(unix_seconds),
            pod: self.pod_name.filter(|p| !p.is_empty()),
        };
        Some((self.id, meta))
    }
}

/// A positive Unix time (0 is Podman's "never").
fn unix_seconds(secs: u64) -> Option<SystemTime> {
    (secs > 0).then(|| UNIX_EPOCH + Duration::from_secs(secs))
}

/// `GET /libpod/containers/stats?stream=false` (the fields read).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct StatsReport {
    error: Option<serde_json::Value>,
    stats: Option<Vec<ContainerStatsEntry>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ContainerStatsEntry {
    #[serde(rename = "ContainerID")]
    container_id: String,
    /// Total CPU time, ns (cgroup `cpuacct.usage` / `cpu.stat` `usage_usec`).
    #[serde(rename = "CPUNano")]
    cpu_nano: Option<u64>,
    /// System CPU time, ns.
    #[serde(rename = "CPUSystemNano")]
    cpu_system_nano: Option<u64>,
    /// Memory usage, bytes (libpod subtracts the inactive file cache from the cgroup's usage).
    mem_usage: Option<u64>,
    /// Tasks in the cgroup (`pids.current`).
    #[serde(rename = "PIDs")]
    pids: Option<u64>,
}

impl ContainerStatsEntry {
    fn into_stats(self, at: SystemTime) -> ContainerStats {
        ContainerStats {
            timestamp: Some(at),
            cpu: Some(CpuStats {
                total: self.cpu_nano,
                system: self.cpu_system_nano,
                ..CpuStats::default()
            }),
            // Libpod's `MemLimit` is the host's memory when the cgroup has no limit: it cannot
            // tell "no limit" from a limit, so it is not taken.
            memory: Some(MemoryStats {
                usage_total: self.mem_usage,
                ..MemoryStats::default()
            }),
            io: None,
            pid: Some(PidStats {
                thread_count: self.pids,
                thread_limit: None,
            }),
        }
    }
}

/// The stats of Podman's own containers from the libpod API of the socket that lists each,
/// asked synchronously (the provider is called from blocking threads). Only containers a
/// watcher has listed are asked about: the chain's other runtimes' ids never cost a request.
/// Rootless Podman on cgroup v1 has no stats (HTTP 409, "only available for cgroup v2").
pub struct PodmanStats {
    registry: Arc<PodmanRegistry>,
    timeout: Duration,
}

impl PodmanStats {
    pub fn new(registry: Arc<PodmanRegistry>, timeout: Duration) -> Self {
        Self { registry, timeout }
    }

    fn fetch(
        &self,
        socket: &Path,
        container_id: &str,
    ) -> Result<Option<ContainerStats>, PodmanError> {
        let path = format!("{API}/containers/stats?containers={container_id}&stream=false");
        let (status, body) = blocking_get(socket, &path, self.timeout)?;
        if status == 404 || status == 409 {
            // No such container, or not running: Podman does not know its stats.
            return Ok(None);
        }
        check_status(&path, status, &body)?;
        let report: StatsReport =
            serde_json::from_slice(&body).map_err(|source| PodmanError::Json {
                path: path.clone(),
                source,
            })?;
        if report.error.as_ref().is_some_and(|e| !e.is_null()) {
            return Ok(None);
        }
        let now = SystemTime::now();
        Ok(report
            .stats
            .unwrap_or_default()
            .into_iter()
            .find(|s| s.container_id == container_id)
            .map(|s| s.into_stats(now)))
    }
}

impl StatsCollector for PodmanStats {
    fn container_stats(
        &self,
        _namespace: &str,
        container_id: &str,
        _max_age: MaxAge,
    ) -> CollectorResult<ContainerStats> {
        let Some(socket) = self.registry.socket_of(container_id) else {
            return Ok(None);
        };
        self.fetch(&socket, container_id)
            .map_err(CollectorError::other)
    }
}

/// One `GET` as HTTP/1.0 on a blocking socket: the status and the whole body. Go's server
/// answers an HTTP/1.0 request without chunking and closes the connection after the body,
/// so reading to the end is the whole answer.
fn blocking_get(
    socket: &Path,
    path: &str,
    timeout: Duration,
) -> Result<(u16, Vec<u8>), PodmanError> {
    let io_error = |source| PodmanError::Io {
        socket: socket.to_owned(),
        path: path.to_owned(),
        source,
    };
    let mut stream = StdUnixStream::connect(socket).map_err(io_error)?;
    stream.set_read_timeout(Some(timeout)).map_err(io_error)?;
    stream.set_write_timeout(Some(timeout)).map_err(io_error)?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: podman\r\n\r\n").map_err(io_error)?;
    let mut answer = Vec::new();
    // A rootless user's service could answer without end: what is read is bounded.
    (&mut stream)
        .take(MAX_ANSWER_BYTES as u64)
        .read_to_end(&mut answer)
        .map_err(io_error)?;
    parse_http_answer(&answer).ok_or_else(|| {
        io_error(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not an HTTP answer",
        ))
    })
}

/// The status and body of a whole HTTP/1.x answer without chunking.
fn parse_http_answer(answer: &[u8]) -> Option<(u16, Vec<u8>)> {
    let split = answer.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&answer[..split]).ok()?;
    let status_line = head.lines().next()?;
    let mut words = status_line.split(' ');
    if !words.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let status = words.next()?.parse().ok()?;
    Some((status, answer[split + 4..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collectors::metadata::{MetadataStore, Source};

    /// A registry over `store` with `socket` registered as a named one.
    fn registry_with(store: &Arc<MetadataStore>, socket: &Path) -> Arc<PodmanRegistry> {
        let registry = Arc::new(PodmanRegistry::new(Arc::clone(store)));
        registry.register(socket, Source::Podman);
        registry
    }

    #[test]
    fn root_uses_the_rootful_socket() {
        assert_eq!(
            default_socket(0, Some(Path::new("/run/user/0"))),
            PathBuf::from("/run/podman/podman.sock")
        );
        assert_eq!(
            default_socket(0, None),
            PathBuf::from("/run/podman/podman.sock")
        );
    }

    #[test]
    fn a_user_uses_its_rootless_socket() {
        assert_eq!(
            default_socket(1000, Some(Path::new("/run/user/1000"))),
            PathBuf::from("/run/user/1000/podman/podman.sock")
        );
        assert_eq!(
            default_socket(1000, Some(Path::new("/tmp/xdg"))),
            PathBuf::from("/tmp/xdg/podman/podman.sock")
        );
        // Unset or relative (invalid per the XDG spec): the login session's usual place.
        assert_eq!(
            default_socket(1000, None),
            PathBuf::from("/run/user/1000/podman/podman.sock")
        );
        assert_eq!(
            default_socket(1000, Some(Path::new("relative"))),
            PathBuf::from("/run/user/1000/podman/podman.sock")
        );
    }

    /// A Podman 4.3.1 list element, as `GET /v4.0.0/libpod/containers/json?all=true` gave it.
    const LISTED: &str = r#"{
        "AutoRemove": false, "Command": ["sleep", "1000"],
        "Created": "2026-12-05T09:15:23.181943867Z", "CreatedAt": "",
        "Exited": false, "ExitedAt": -62135596800, "ExitCode": 0,
        "Id": "4cc841fe0d8be51ccf95a45702b5ab4725557acaef50c2883446946affef10cf",
        "Image": "localhost/collector-test-busybox:latest",
        "ImageID": "73e91e3ba3013cfb6abd9eadbf5d9f4d2ee4c131cb119600370c6a213054421c",
        "IsInfra": false, "Labels": {"app": "web"}, "Mounts": [], "Names": ["pt1"],
        "Namespaces": {}, "Networks": [], "Pid": 29057, "Pod": "", "PodName": "",
        "Ports": null, "Size": null, "StartedAt": 1796462123, "State": "running", "Status": ""
    }"#;

    #[test]
    fn a_list_element_gives_name_image_labels_pod_and_times() {
        let listed: ListedContainer = serde_json::from_str(LISTED).unwrap();
        let (id, meta) = listed.into_meta().unwrap();
        assert_eq!(
            id,
            "4cc841fe0d8be51ccf95a45702b5ab4725557acaef50c2883446946affef10cf"
        );
        assert_eq!(
            meta,
            ContainerMeta {
                name: Some("pt1".into()),
                image: Some("localhost/collector-test-busybox:latest".into()),
                labels: BTreeMap::from([("app".into(), "web".into())]),
                runtime_namespace: None,
                flavor: crate::provider::Flavor::Default,
                created: Some(UNIX_EPOCH + Duration::new(1_796_462_123, 181_943_867)),
                started: Some(UNIX_EPOCH + Duration::from_secs(1_796_462_123)),
                pod: None,
            }
        );
    }

    #[test]
    fn a_pod_member_names_its_pod_and_a_created_one_has_no_start() {
        let mut value: serde_json::Value = serde_json::from_str(LISTED).unwrap();
        value["PodName"] = "web-pod".into();
        value["Pod"] = "e2a1".into();
        value["StartedAt"] = serde_json::json!(-62_135_596_800_i64);
        value["Labels"] = serde_json::Value::Null;
        let listed: ListedContainer = serde_json::from_value(value).unwrap();
        let (_, meta) = listed.into_meta().unwrap();
        assert_eq!(meta.pod.as_deref(), Some("web-pod"));
        assert_eq!(meta.pod_name(), Some("web-pod"));
        assert_eq!(meta.started, None);
        assert!(meta.labels.is_empty());
    }

    #[test]
    fn a_running_element_gives_its_main_pid_and_a_stopped_one_none() {
        let listed: ListedContainer = serde_json::from_str(LISTED).unwrap();
        let running = listed.into_listed().unwrap();
        assert!(running.running);
        assert_eq!(running.pid, Some(29057));
        let mut value: serde_json::Value = serde_json::from_str(LISTED).unwrap();
        value["State"] = "exited".into();
        value["Pid"] = 0.into();
        let stopped: ListedContainer = serde_json::from_value(value).unwrap();
        let stopped = stopped.into_listed().unwrap();
        assert_eq!((stopped.running, stopped.pid), (false, None));
    }

    #[test]
    fn an_element_without_id_is_skipped() {
        let listed: ListedContainer = serde_json::from_str(r#"{"Names": ["x"]}"#).unwrap();
        assert!(listed.into_meta().is_none());
    }

    #[test]
    fn a_stats_answer_gives_cpu_memory_and_tasks() {
        // Podman 4.3.1's answer to GET /v4.0.0/libpod/containers/stats?stream=false.
        let body = r#"{"Error": null, "Stats": [{
            "AvgCPU": 1.19, "ContainerID": "4cc8", "Name": "pt1", "PerCPU": [32078651, 13449311],
            "CPU": 1.19, "CPUNano": 45527962, "CPUSystemNano": 16000000,
            "SystemNano": 1796462127195296360, "MemUsage": 512000, "MemLimit": 25276194816,
            "MemPerc": 0.002, "NetInput": 0, "NetOutput": 0, "BlockInput": 0, "BlockOutput": 0,
            "PIDs": 1, "UpTime": 45527962, "Duration": 45527962}]}"#;
        let report: StatsReport = serde_json::from_str(body).unwrap();
        let entry = report.stats.unwrap().pop().unwrap();
        assert_eq!(entry.container_id, "4cc8");
        let stats = entry.into_stats(UNIX_EPOCH);
        let cpu = stats.cpu.unwrap();
        assert_eq!(
            (cpu.total, cpu.system, cpu.user),
            (Some(45_527_962), Some(16_000_000), None)
        );
        let memory = stats.memory.unwrap();
        assert_eq!((memory.usage_total, memory.limit), (Some(512_000), None));
        assert_eq!(stats.pid.unwrap().thread_count, Some(1));
        assert_eq!(stats.io, None);
    }

    #[test]
    fn http_answers_are_split_into_status_and_body() {
        assert_eq!(
            parse_http_answer(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{}"),
            Some((200, b"{}".to_vec()))
        );
        assert_eq!(
            parse_http_answer(b"HTTP/1.1 404 Not Found\r\n\r\n"),
            Some((404, Vec::new()))
        );
        assert_eq!(parse_http_answer(b"SSH-2.0\r\n\r\n"), None);
        assert_eq!(parse_http_answer(b"HTTP/1.0 200 OK\r\n"), None);
    }

    async fn state_becomes(
        store: &MetadataStore,
        want: impl Fn(&SourceState) -> bool,
    ) -> SourceState {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let state = store.state(Source::Podman);
            if want(&state) {
                return state;
            }
            assert!(tokio::time::Instant::now() < deadline, "still {state:?}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn a_missing_socket_is_absent_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(MetadataStore::default());
        let socket = dir.path().join("podman.sock");
        let registry = registry_with(&store, &socket);
        let task = tokio::spawn(watch(registry, socket, Duration::from_secs(30)));
        let state = state_becomes(&store, |s| matches!(s, SourceState::Absent { .. })).await;
        task.abort();
        let SourceState::Absent { reason } = state else {
            unreachable!()
        };
        assert!(reason.contains("podman.sock"), "{reason}");
    }

    #[tokio::test]
    async fn a_socket_that_refuses_is_down_and_known_names_stay() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("podman.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let store = Arc::new(MetadataStore::default());
        let registry = registry_with(&store, &path);
        registry.replace(
            &path,
            vec![Listed {
                id: "abc".into(),
                meta: ContainerMeta {
                    name: Some("kept".into()),
                    ..ContainerMeta::default()
                },
                running: true,
                pid: None,
                start_time_ns: None,
            }],
        );
        let task = tokio::spawn(watch(registry, path, Duration::from_secs(30)));
        let state = state_becomes(&store, |s| matches!(s, SourceState::Down { .. })).await;
        task.abort();
        let SourceState::Down { reason } = state else {
            unreachable!()
        };
        assert!(reason.contains("podman.sock"), "{reason}");
        assert_eq!(store.get("abc").unwrap().name.as_deref(), Some("kept"));
    }

    #[test]
    fn stats_are_not_asked_for_containers_podman_did_not_list() {
        let store = Arc::new(MetadataStore::default());
        let registry = registry_with(&store, Path::new("/nonexistent/podman.sock"));
        let stats = PodmanStats::new(registry, Duration::from_secs(1));
        assert_eq!(stats.container_stats("", "abc", Duration::ZERO), Ok(None));
    }
}
