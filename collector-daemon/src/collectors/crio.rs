//! CRI-O's info endpoint: the HTTP API CRI-O serves on its own socket beside CRI
//! (`GET /info`, `GET /containers/{id}`), for the name, image and labels of CRI-O's
//! containers when CRI does not describe them (CRI down, or not configured).
//!
//! Shapes relied on (CRI-O's `pkg/types`): `/info` is `CrioInfo` (`storage_driver`,
//! `storage_root`, `cgroup_driver`, ...); `/containers/{id}` is `ContainerInfo` (`name`,
//! `pid`, `image`, `image_ref`, `created_time` in ns, `labels`, `annotations`,
//! `crio_annotations`, `log_path`, `root`, `sandbox`, `ip_addresses`); an unknown id is a
//! 404. Every field may be missing in older releases: all are optional here.
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::UnixStream;

use super::metadata::{ContainerMeta, MetadataStore, Source, SourceState};
use crate::error_chain::ErrorChain;

/// How often the CRI-O containers nobody described are looked up.
const REFRESH_INTERVAL: Duration = Duration::from_secs(5);
/// Largest answer read (a container's info is a few KiB).
const MAX_BODY_BYTES: usize = 1 << 20;

/// `GET /info`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct CrioInfo {
    pub storage_driver: Option<String>,
    pub storage_root: Option<String>,
    pub cgroup_driver: Option<String>,
}

/// `GET /containers/{id}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ContainerInfo {
    /// CRI-O's name: `k8s_<container>_<pod>_<namespace>_<uid>_<attempt>`.
    pub name: Option<String>,
    pub pid: Option<i64>,
    pub image: Option<String>,
    pub image_ref: Option<String>,
    /// Creation, ns since 1970.
    pub created_time: Option<i64>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub sandbox: Option<String>,
}

impl ContainerInfo {
    /// As the metadata store keeps it.
    pub fn meta(self) -> ContainerMeta {
        ContainerMeta {
            name: self.name.filter(|n| !n.is_empty()),
            image: self
                .image
                .filter(|i| !i.is_empty())
                .or(self.image_ref.filter(|i| !i.is_empty())),
            labels: self.labels,
            runtime_namespace: None,
            flavor: crate::provider::Flavor::Default,
            created: self
                .created_time
                .and_then(|ns| u64::try_from(ns).ok())
                .filter(|ns| *ns > 0)
                .and_then(|ns| UNIX_EPOCH.checked_add(Duration::from_nanos(ns))),
            started: None::<SystemTime>,
            pod: None,
        }
    }
}

/// Why a request to the info endpoint failed.
#[derive(Debug, thiserror::Error)]
pub enum CrioError {
    #[error("cannot connect to CRI-O at {}", .socket.display())]
    Connect {
        socket: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("CRI-O {path} failed")]
    Http {
        path: String,
        #[source]
        source: hyper::Error,
    },
    #[error("CRI-O {path} answered {status}: {body}")]
    Status {
        path: String,
        status: StatusCode,
        body: String,
    },
    #[error("CRI-O {path} answered malformed JSON")]
    Decode {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("CRI-O {path} did not answer within {timeout:?}")]
    Timeout { path: String, timeout: Duration },
    #[error("CRI-O {path}: the answer is over {MAX_BODY_BYTES} bytes")]
    TooLarge { path: String },
}

/// A client of CRI-O's info endpoint.
#[derive(Clone, Debug)]
pub struct CrioClient {
    socket: PathBuf,
    timeout: Duration,
}

impl CrioClient {
    pub fn new(socket: PathBuf, timeout: Duration) -> Self {
        Self { socket, timeout }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `GET /info`.
    pub async fn info(&self) -> Result<CrioInfo, CrioError> {
        let path = "/info".to_owned();
        let body = self.get(&path).await?.ok_or_else(|| CrioError::Status {
            path: path.clone(),
            status: StatusCode::NOT_FOUND,
            body: String::new(),
        })?;
        serde_json::from_slice(&body).map_err(|source| CrioError::Decode { path, source })
    }

    /// `GET /containers/{id}`; `None` when CRI-O does not know it.
    pub async fn container(&self, id: &str) -> Result<Option<ContainerInfo>, CrioError> {
        let path = format!("/containers/{id}");
        let Some(body) = self.get(&path).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&body)
            .map(Some)
            .map_err(|source| CrioError::Decode { path, source })
    }

    /// The body of `GET path`, `None` for a 404; bounded by the timeout as a whole.
    async fn get(&self, path: &str) -> Result<Option<Bytes>, CrioError> {
        tokio::time::timeout(self.timeout, self.exchange(path))
            .await
            .map_err(|_| CrioError::Timeout {
                path: path.to_owned(),
                timeout: self.timeout,
            })?
    }

    async fn exchange(&self, path: &str) -> Result<Option<Bytes>, CrioError> {
        let stream =
            UnixStream::connect(&self.socket)
                .await
                .map_err(|source| CrioError::Connect {
                    socket: self.socket.clone(),
                    source,
                })?;
        let http = |source| CrioError::Http {
            path: path.to_owned(),
            source,
        };
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(http)?;
        let driver = tokio::spawn(connection);
        let request = Request::get(path)
            .header(hyper::header::HOST, "crio")
            .body(Empty::<Bytes>::new())
            .expect("a GET with a path from an id is a valid request");
        let response = sender.send_request(request).await.map_err(http);
        let result = match response {
            Ok(response) => {
                let status = response.status();
                let limited = http_body_util::Limited::new(response.into_body(), MAX_BODY_BYTES);
                match limited.collect().await {
                    Ok(body) => Ok((status, body.to_bytes())),
                    Err(_) => Err(CrioError::TooLarge {
                        path: path.to_owned(),
                    }),
                }
            }
            Err(e) => Err(e),
        };
        driver.abort();
        let (status, body) = result?;
        match status {
            StatusCode::OK => Ok(Some(body)),
            StatusCode::NOT_FOUND => Ok(None),
            status => Err(CrioError::Status {
                path: path.to_owned(),
                status,
                body: String::from_utf8_lossy(&body)
                    .trim()
                    .chars()
                    .take(200)
                    .collect(),
            }),
        }
    }
}

/// Keeps [`Source::CriO`] of `store` current for the CRI-O containers `ids` lists that no
/// other source describes, every 5 s, until aborted. A socket that is not there is noted
/// once (absent) and looked for again; a failure is warned of once per outage.
pub async fn watch(
    store: Arc<MetadataStore>,
    client: CrioClient,
    ids: Arc<dyn Fn() -> Vec<String> + Send + Sync>,
) {
    let mut tick = tokio::time::interval(REFRESH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if !client.socket().exists() {
            let reason = format!("no CRI-O socket at {}", client.socket().display());
            let before = store.set_state(Source::CriO, SourceState::Absent { reason });
            if !matches!(before, SourceState::Absent { .. }) {
                tracing::info!(socket = %client.socket().display(), "no CRI-O socket: not reading its info endpoint until it appears");
            }
            continue;
        }
        // Listing may read procfs (without the kernel programs): off the async workers.
        let listed = tokio::task::spawn_blocking({
            let ids = Arc::clone(&ids);
            move || ids()
        })
        .await
        .unwrap_or_default();
        if let Err(e) = refresh(&store, &client, listed).await {
            let reason = ErrorChain(&e).to_string();
            let before = store.set_state(
                Source::CriO,
                SourceState::Down {
                    reason: reason.clone(),
                },
            );
            if !matches!(before, SourceState::Down { .. }) {
                tracing::warn!(error = %reason, "CRI-O's info endpoint is unreachable; retrying");
            }
        }
    }
}

/// Looks up each of `ids` that no source describes yet. Stops at the first failure.
pub async fn refresh(
    store: &MetadataStore,
    client: &CrioClient,
    ids: Vec<String>,
) -> Result<(), CrioError> {
    for id in &ids {
        if store.get(id).is_some() {
            continue;
        }
        if let Some(info) = client.container(id).await? {
            store.upsert(Source::CriO, id.clone(), info.meta());
        }
    }
    let before = store.set_state(Source::CriO, SourceState::Connected);
    if matches!(before, SourceState::Down { .. }) {
        tracing::info!("CRI-O's info endpoint is reachable again");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    /// A `ContainerInfo` as CRI-O 1.2x serves it for a kubelet-made container.
    const CONTAINER: &str = r#"{"name":"k8s_app_web-0_prod_0c5b1f6e-1d2a-4e0b-8f00-1234567890ab_0","pid":4242,"image":"docker.io/library/nginx:1.25","image_ref":"docker.io/library/nginx@sha256:0d3c","created_time":1700000000250000000,"labels":{"io.kubernetes.container.name":"app","io.kubernetes.pod.name":"web-0","io.kubernetes.pod.namespace":"prod","io.kubernetes.pod.uid":"0c5b1f6e-1d2a-4e0b-8f00-1234567890ab"},"annotations":{"io.kubernetes.container.restartCount":"0"},"crio_annotations":{"io.kubernetes.cri-o.ContainerType":"container"},"log_path":"/var/log/pods/prod_web-0_0c5b/app/0.log","root":"/var/lib/containers/storage/overlay/ab/merged","sandbox":"5e1f","ip_addresses":["10.88.0.7"]}"#;
    const INFO: &str = r#"{"storage_driver":"overlay","storage_image":"","storage_root":"/var/lib/containers/storage","cgroup_driver":"systemd","default_id_mappings":{"uids":[{"container_id":0,"host_id":0,"size":4294967295}],"gids":[{"container_id":0,"host_id":0,"size":4294967295}]}}"#;

    /// What the fake endpoint does with a request for a path.
    #[derive(Clone, Copy)]
    enum Reply {
        Json(&'static str),
        Status(u16, &'static str),
        /// Accepts, reads the request, and never answers.
        Hang,
    }

    /// A loopback CRI-O info endpoint on a unix socket answering `reply(path)`.
    fn serve(reply: fn(&str) -> Reply) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("crio.sock");
        let listener = tokio::net::UnixListener::bind(&socket).unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        let Ok(n) = stream.read(&mut buf).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        request.extend_from_slice(&buf[..n]);
                    }
                    let text = String::from_utf8_lossy(&request);
                    let path = text.split(' ').nth(1).unwrap_or("").to_owned();
                    let (code, body) = match reply(&path) {
                        Reply::Json(body) => (200, body),
                        Reply::Status(code, body) => (code, body),
                        Reply::Hang => {
                            tokio::time::sleep(Duration::from_hours(1)).await;
                            return;
                        }
                    };
                    let answer = format!(
                        "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(answer.as_bytes()).await;
                });
            }
        });
        (dir, socket)
    }

    fn client(socket: PathBuf) -> CrioClient {
        CrioClient::new(socket, Duration::from_millis(500))
    }

    #[tokio::test]
    async fn info_and_a_container_are_read_as_crio_serves_them() {
        let (_dir, socket) = serve(|path| match path {
            "/info" => Reply::Json(INFO),
            "/containers/abc" => Reply::Json(CONTAINER),
            _ => Reply::Status(404, "can't find the container with id"),
        });
        let client = client(socket);
        let info = client.info().await.unwrap();
        assert_eq!(info.cgroup_driver.as_deref(), Some("systemd"));
        assert_eq!(info.storage_driver.as_deref(), Some("overlay"));
        let meta = client.container("abc").await.unwrap().unwrap().meta();
        assert_eq!(
            meta.name.as_deref(),
            Some("k8s_app_web-0_prod_0c5b1f6e-1d2a-4e0b-8f00-1234567890ab_0")
        );
        assert_eq!(meta.image.as_deref(), Some("docker.io/library/nginx:1.25"));
        assert_eq!(meta.pod_name(), Some("web-0"));
        assert_eq!(meta.pod_namespace(), Some("prod"));
        assert_eq!(meta.container_name(), Some("app"));
        assert_eq!(
            meta.created,
            Some(UNIX_EPOCH + Duration::new(1_700_000_000, 250_000_000))
        );
        assert!(client.container("unknown").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn errors_name_the_status_the_json_and_the_timeout() {
        let (_dir, socket) = serve(|path| match path {
            "/containers/err" => Reply::Status(500, "internal error"),
            "/containers/bad" => Reply::Json(r#"{"name": "x", "labels": [1,"#),
            _ => Reply::Hang,
        });
        let client = client(socket);
        let error = client.container("err").await.unwrap_err();
        assert_eq!(
            error.to_string(),
            "CRI-O /containers/err answered 500 Internal Server Error: internal error"
        );
        let error = client.container("bad").await.unwrap_err();
        assert!(matches!(error, CrioError::Decode { .. }), "{error:?}");
        assert_eq!(
            error.to_string(),
            "CRI-O /containers/bad answered malformed JSON"
        );
        let started = std::time::Instant::now();
        let error = client.container("slow").await.unwrap_err();
        assert!(matches!(error, CrioError::Timeout { .. }), "{error:?}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        let gone = CrioClient::new(
            PathBuf::from("/nonexistent/crio.sock"),
            Duration::from_secs(1),
        );
        assert!(matches!(gone.info().await, Err(CrioError::Connect { .. })));
    }

    #[tokio::test]
    async fn refresh_fills_the_store_and_a_failure_leaves_it() {
        let (_dir, socket) = serve(|path| match path {
            "/containers/abc" => Reply::Json(CONTAINER),
            "/containers/err" => Reply::Status(500, "boom"),
            _ => Reply::Status(404, "not found"),
        });
        let client = client(socket);
        let store = MetadataStore::default();
        refresh(&store, &client, vec!["abc".into(), "gone".into()])
            .await
            .unwrap();
        assert_eq!(store.get("abc").unwrap().pod_name(), Some("web-0"));
        assert!(store.get("gone").is_none());
        assert!(store.state(Source::CriO).is_up());
        let error = refresh(&store, &client, vec!["abc".into(), "err".into()])
            .await
            .unwrap_err();
        assert!(matches!(error, CrioError::Status { .. }), "{error:?}");
        assert!(store.get("abc").is_some(), "what CRI-O said is kept");
    }
}
