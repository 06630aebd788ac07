//! What the collectors of runtimes that answer over HTTP share (ECS task metadata, the
//! kubelet's `/pods`, Garden): a minimal HTTP/1.1 GET over TCP, TLS (rustls, for the kubelet's
//! HTTPS port) or a unix socket, the snapshot each one keeps of its containers, and the poll
//! loop that refreshes it.
//!
//! These APIs have no event stream: the loop asks every `--runtime-poll-interval`, and each
//! request is bounded by `--runtime-timeout`. A failure marks the source down (logged once,
//! retried with a backoff from 0.5 s to 5 s); names, images and labels stay as last told,
//! while stats are answered only from a snapshot taken while the source answers.
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use http_body_util::{BodyExt as _, Empty, Limited};
use hyper::{Request, StatusCode, body::Bytes, header};
use hyper_util::rt::TokioIo;
use rustls::{
    ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::CryptoProvider,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject as _};

use super::metadata::{ContainerMeta, MetadataStore, Source, SourceState};
use crate::{
    error_chain::ErrorChain,
    provider::{
        CollectorError, CollectorResult, ContainerIdForPodUidAndName, ContainerStats, MaxAge,
        NetworkCollector, NetworkStats, Runtime, StatsCollector,
    },
};

/// First wait after a failed poll; doubled per failure up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Largest response body read: a `/pods` of 110 pods (the kubelet's default maximum) is
/// well under a MiB; more is not one of these APIs.
const MAX_BODY: usize = 32 << 20;

/// Where an HTTP API listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `http://host:port/base`: requests go to `base` + path.
    Tcp { authority: String, base: String },
    /// `https://host:port/base`: the same over TLS, with the [`TlsConfig`] the caller gives.
    Https { authority: String, base: String },
    /// A unix socket (Garden's default).
    Unix { path: PathBuf },
}

/// Why an endpoint's text is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("{text:?} is not an http:// URL, a host:port or a unix socket path")]
    Malformed { text: String },
}

impl Endpoint {
    /// `http[s]://host[:port][/base]`, `host:port`, `unix:///path` or `/path`.
    pub fn parse(text: &str) -> Result<Self, EndpointError> {
        if let Some(path) = text.strip_prefix("unix://") {
            return Ok(Self::Unix { path: path.into() });
        }
        if text.starts_with('/') {
            return Ok(Self::Unix { path: text.into() });
        }
        let (rest, scheme_port) = if let Some(rest) = text.strip_prefix("https://") {
            (rest, Some(443))
        } else if let Some(rest) = text.strip_prefix("http://") {
            (rest, Some(80))
        } else {
            (text, None)
        };
        let (authority, base) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
        let malformed = || EndpointError::Malformed { text: text.into() };
        if authority.is_empty() || authority.contains(['@', ' ', '?', '#']) {
            return Err(malformed());
        }
        let authority = if authority.contains(':') && !authority.ends_with(']') {
            authority.to_owned()
        } else if let Some(port) = scheme_port {
            format!("{authority}:{port}")
        } else {
            return Err(malformed());
        };
        let base = base.trim_end_matches('/').to_owned();
        Ok(if text.starts_with("https://") {
            Self::Https { authority, base }
        } else {
            Self::Tcp { authority, base }
        })
    }

    /// Whether requests go over TLS.
    pub fn is_https(&self) -> bool {
        matches!(self, Self::Https { .. })
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tcp { authority, base } => write!(f, "http://{authority}{base}"),
            Self::Https { authority, base } => write!(f, "https://{authority}{base}"),
            Self::Unix { path } => write!(f, "unix://{}", path.display()),
        }
    }
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("connecting to {endpoint}")]
    Connect {
        endpoint: String,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS handshake with {endpoint}")]
    Tls {
        endpoint: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{endpoint} is an HTTPS endpoint, and this source has no TLS settings")]
    NoTls { endpoint: String },
    #[error("GET {path} on {endpoint}")]
    Request {
        endpoint: String,
        path: String,
        #[source]
        source: hyper::Error,
    },
    #[error("GET {path} on {endpoint} answered {status}: {excerpt}")]
    Status {
        endpoint: String,
        path: String,
        status: StatusCode,
        excerpt: String,
    },
    #[error("GET {path} on {endpoint}: the body is too large or broke off")]
    Body { endpoint: String, path: String },
    #[error("GET {path} on {endpoint}: the answer is not the expected JSON")]
    Json {
        endpoint: String,
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("GET {path} on {endpoint}: no answer within {timeout:?}")]
    Timeout {
        endpoint: String,
        path: String,
        timeout: Duration,
    },
}

/// `GET path` on a plain HTTP or unix socket `endpoint`, decoded from JSON, within
/// `timeout`.
pub async fn get_json<T: serde::de::DeserializeOwned>(
    endpoint: &Endpoint,
    path: &str,
    timeout: Duration,
) -> Result<T, HttpError> {
    get_json_with(endpoint, path, &Access::default(), timeout).await
}

/// What a request sends beyond its path: `bearer` as `Authorization: Bearer`, and the TLS
/// settings an HTTPS endpoint needs.
#[derive(Clone, Debug, Default)]
pub struct Access {
    pub bearer: Option<String>,
    pub tls: Option<TlsConfig>,
}

/// `GET path` on `endpoint` with `access`, decoded from JSON, within `timeout`.
pub async fn get_json_with<T: serde::de::DeserializeOwned>(
    endpoint: &Endpoint,
    path: &str,
    access: &Access,
    timeout: Duration,
) -> Result<T, HttpError> {
    let body = tokio::time::timeout(timeout, get(endpoint, path, access))
        .await
        .map_err(|_| HttpError::Timeout {
            endpoint: endpoint.to_string(),
            path: path.to_owned(),
            timeout,
        })??;
    serde_json::from_slice(&body).map_err(|source| HttpError::Json {
        endpoint: endpoint.to_string(),
        path: path.to_owned(),
        source,
    })
}

async fn get(endpoint: &Endpoint, path: &str, access: &Access) -> Result<Bytes, HttpError> {
    let (host, full_path) = match endpoint {
        Endpoint::Tcp { authority, base } | Endpoint::Https { authority, base } => {
            (authority.as_str(), format!("{base}{path}"))
        }
        Endpoint::Unix { .. } => ("localhost", path.to_owned()),
    };
    let request_error = |source| HttpError::Request {
        endpoint: endpoint.to_string(),
        path: path.to_owned(),
        source,
    };
    let mut sender = connect(endpoint, path, access).await?;
    let mut request = Request::get(full_path.as_str())
        .header(header::HOST, host)
        .header(header::ACCEPT, "application/json");
    if let Some(token) = &access.bearer {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = request
        .body(Empty::<Bytes>::new())
        .map_err(|_| HttpError::Body {
            endpoint: endpoint.to_string(),
            path: path.to_owned(),
        })?;
    let response = sender.send_request(request).await.map_err(request_error)?;
    let status = response.status();
    let body = Limited::new(response.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|_| HttpError::Body {
            endpoint: endpoint.to_string(),
            path: path.to_owned(),
        })?
        .to_bytes();
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body);
        let excerpt: String = text.trim().chars().take(200).collect();
        return Err(HttpError::Status {
            endpoint: endpoint.to_string(),
            path: path.to_owned(),
            status,
            excerpt,
        });
    }
    Ok(body)
}

/// A connection to `endpoint`, over TLS for HTTPS, ready for one request for `path`.
async fn connect(endpoint: &Endpoint, path: &str, access: &Access) -> Result<Sender, HttpError> {
    let connect_error = |source| HttpError::Connect {
        endpoint: endpoint.to_string(),
        source,
    };
    let request_error = |source| HttpError::Request {
        endpoint: endpoint.to_string(),
        path: path.to_owned(),
        source,
    };
    match endpoint {
        Endpoint::Tcp { authority, .. } => {
            let stream = tokio::net::TcpStream::connect(authority.as_str())
                .await
                .map_err(connect_error)?;
            handshake(stream).await.map_err(request_error)
        }
        Endpoint::Https { authority, .. } => {
            let tls = access.tls.as_ref().ok_or_else(|| HttpError::NoTls {
                endpoint: endpoint.to_string(),
            })?;
            let stream = tokio::net::TcpStream::connect(authority.as_str())
                .await
                .map_err(connect_error)?;
            let tls_error = |source| HttpError::Tls {
                endpoint: endpoint.to_string(),
                source,
            };
            let name = server_name(authority).map_err(tls_error)?;
            let stream = tokio_rustls::TlsConnector::from(Arc::clone(&tls.0))
                .connect(name, stream)
                .await
                .map_err(tls_error)?;
            handshake(stream).await.map_err(request_error)
        }
        Endpoint::Unix { path: socket } => {
            let stream = tokio::net::UnixStream::connect(socket)
                .await
                .map_err(connect_error)?;
            handshake(stream).await.map_err(request_error)
        }
    }
}

/// The name a server's certificate must hold: the host of `authority` (an IP address or a
/// DNS name).
fn server_name(authority: &str) -> std::io::Result<ServerName<'static>> {
    let host = authority
        .rsplit_once(':')
        .map_or(authority, |(host, _)| host)
        .trim_start_matches('[')
        .trim_end_matches(']');
    ServerName::try_from(host.to_owned())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
}

/// TLS client settings (rustls with the ring provider), shared by every connection of a
/// source.
#[derive(Clone)]
pub struct TlsConfig(Arc<ClientConfig>);

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsConfig")
    }
}

/// Which certificates a TLS server is checked against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsTrust {
    /// The PEM certificates of a file (the cluster's CA).
    CaFile(PathBuf),
    /// The system's roots.
    System,
    /// None: any certificate is taken (the kubelet's self-signed one), as Datadog's
    /// `kubelet_tls_verify: false` does. The connection is encrypted, not authenticated.
    Unverified,
}

/// Why TLS settings could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading the CA file {}", path.display())]
    CaFile {
        path: PathBuf,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    #[error("the CA file {} holds no usable certificate", path.display())]
    NoCertificate { path: PathBuf },
    #[error("the system holds no usable root certificate")]
    NoSystemRoots,
    #[error("TLS settings")]
    Rustls(#[from] rustls::Error),
}

impl TlsConfig {
    pub fn new(trust: &TlsTrust) -> Result<Self, TlsError> {
        // The process's provider: ring, the only one this build's rustls features enable
        // (rustls 0.23.48 deprecated naming ring's directly, for its lack of post-quantum key
        // exchange).
        let builder = ClientConfig::builder();
        let provider = Arc::clone(builder.crypto_provider());
        let config = match trust {
            TlsTrust::Unverified => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                .with_no_client_auth(),
            TlsTrust::CaFile(path) => builder
                .with_root_certificates(ca_roots(path)?)
                .with_no_client_auth(),
            TlsTrust::System => {
                let mut roots = RootCertStore::empty();
                let (added, _) =
                    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
                if added == 0 {
                    return Err(TlsError::NoSystemRoots);
                }
                builder.with_root_certificates(roots).with_no_client_auth()
            }
        };
        Ok(Self(Arc::new(config)))
    }
}

fn ca_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let error = |source| TlsError::CaFile {
        path: path.to_owned(),
        source,
    };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(error)? {
        // A certificate rustls cannot take is skipped: another of the bundle may be the one.
        let _ = roots.add(cert.map_err(error)?);
    }
    if roots.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(roots)
}

/// Takes any server certificate; handshake signatures are still checked (the server holds
/// the certificate's key).
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn handshake<S>(stream: S) -> Result<Sender, hyper::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    // The connection ends with the response (one request per connection): its error, if
    // any, reaches the request.
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// A Kubernetes pod container, as the kubelet tells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodContainer {
    pub pod_uid: String,
    pub container_name: String,
    /// An init container (`initContainerStatuses`).
    pub init: bool,
}

/// One container as a polled API tells it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RemoteContainer {
    pub meta: ContainerMeta,
    pub stats: Option<ContainerStats>,
    pub network: Option<NetworkStats>,
    pub pod: Option<PodContainer>,
}

/// Everything one poll told.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub containers: BTreeMap<String, RemoteContainer>,
}

/// One polled source: its runtime, its last snapshot and where it stands.
pub struct RemoteSource {
    pub source: Source,
    /// The runtime its containers run in, for the container list.
    pub runtime: Option<Runtime>,
    store: Arc<MetadataStore>,
    snapshot: Mutex<Arc<Snapshot>>,
    /// Whether it has answered once: until then a failure keeps its collector out.
    answered: AtomicBool,
}

impl RemoteSource {
    pub fn new(source: Source, runtime: Option<Runtime>, store: Arc<MetadataStore>) -> Self {
        Self {
            source,
            runtime,
            store,
            snapshot: Mutex::default(),
            answered: AtomicBool::new(false),
        }
    }

    pub fn state(&self) -> SourceState {
        self.store.state(self.source)
    }

    pub fn set_state(&self, state: SourceState) -> SourceState {
        self.store.set_state(self.source, state)
    }

    /// Whether its containers are listed only where their cgroups are seen: the kubelet's
    /// pods run in a container runtime on this node, whose cgroups the identity lists.
    pub fn pod_listing_only(&self) -> bool {
        self.source == Source::Kubelet
    }

    /// The last snapshot (empty before the first answer).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.snapshot.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Takes a new answer: the snapshot, and names, images and labels for the store.
    fn publish(&self, snapshot: Snapshot) {
        self.store.replace_all(
            self.source,
            snapshot
                .containers
                .iter()
                .map(|(id, c)| (id.clone(), c.meta.clone())),
        );
        *self.snapshot.lock().unwrap_or_else(PoisonError::into_inner) = Arc::new(snapshot);
        self.answered.store(true, Ordering::Relaxed);
    }

    /// Whether the source may be asked: what a collector factory answers the registry. A
    /// source down since its start (refused, a TLS failure) is not yet: nothing it could
    /// answer is known, and the API says why instead of "not found".
    pub fn readiness(&self) -> Result<(), crate::provider::ConstructError> {
        use crate::provider::ConstructError;
        match self.state() {
            SourceState::Connected => Ok(()),
            SourceState::Down { .. } if self.answered.load(Ordering::Relaxed) => Ok(()),
            SourceState::Down { reason } => Err(ConstructError::not_yet(format!(
                "{} has not answered yet: {reason}",
                self.source.as_str()
            ))),
            SourceState::Starting => Err(ConstructError::not_yet(format!(
                "{} has not answered yet",
                self.source.as_str()
            ))),
            SourceState::Absent { reason } => Err(ConstructError::permanent(reason)),
            SourceState::Disabled => Err(ConstructError::permanent(format!(
                "{} is turned off",
                self.source.as_str()
            ))),
        }
    }

    /// `f` of container `id` in the snapshot, when the source answers now: stats of a
    /// source that is down are an error, not the last values.
    fn answer<T>(
        &self,
        id: &str,
        f: impl FnOnce(&RemoteContainer) -> Option<T>,
    ) -> CollectorResult<T> {
        let snapshot = self.snapshot();
        let Some(container) = snapshot.containers.get(id) else {
            return Ok(None);
        };
        if let SourceState::Down { reason } = self.state() {
            return Err(CollectorError::other(format!(
                "{} is down: {reason}",
                self.source.as_str()
            )));
        }
        Ok(f(container))
    }
}

impl StatsCollector for RemoteSource {
    fn container_stats(&self, _: &str, id: &str, _: MaxAge) -> CollectorResult<ContainerStats> {
        self.answer(id, |c| c.stats.clone())
    }
}

impl NetworkCollector for RemoteSource {
    fn container_network(&self, _: &str, id: &str, _: MaxAge) -> CollectorResult<NetworkStats> {
        self.answer(id, |c| c.network.clone())
    }
}

/// Pod containers stay known while the kubelet is down: a container's pod and name never
/// change, and its id only with a restart the next poll tells.
impl ContainerIdForPodUidAndName for RemoteSource {
    fn container_id_for_pod_uid_and_name(
        &self,
        pod_uid: &str,
        container_name: &str,
        init_container: bool,
        _: MaxAge,
    ) -> CollectorResult<String> {
        let snapshot = self.snapshot();
        Ok(snapshot
            .containers
            .iter()
            .find(|(_, c)| {
                c.pod.as_ref().is_some_and(|p| {
                    p.pod_uid == pod_uid
                        && p.container_name == container_name
                        && p.init == init_container
                })
            })
            .map(|(id, _)| id.clone()))
    }
}

/// How a poll loop runs.
#[derive(Clone, Copy, Debug)]
pub struct PollTiming {
    /// Between two answered polls.
    pub interval: Duration,
    /// Longest one poll (all its requests) may take.
    pub timeout: Duration,
}

/// Polls `fetch` on `endpoint` until aborted, publishing each answer into `source`. Logs
/// the first failure of an outage (naming the endpoint, whatever the failure: a poll that
/// timed out says nothing of where it went) and the recovery; retries with a backoff.
pub async fn poll<F, Fut, E>(
    source: Arc<RemoteSource>,
    endpoint: &Endpoint,
    timing: PollTiming,
    mut fetch: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Snapshot, E>>,
    E: std::error::Error,
{
    let name = source.source.as_str();
    let mut backoff = FIRST_BACKOFF;
    loop {
        let began = Instant::now();
        let result = tokio::time::timeout(timing.timeout, fetch()).await;
        let wait = match result {
            Ok(Ok(snapshot)) => {
                let containers = snapshot.containers.len();
                source.publish(snapshot);
                let before = source.set_state(SourceState::Connected);
                if matches!(before, SourceState::Down { .. }) {
                    tracing::info!(runtime = name, containers, "runtime API answers again");
                } else if before != SourceState::Connected {
                    tracing::info!(runtime = name, containers, "runtime API answers");
                }
                backoff = FIRST_BACKOFF;
                timing.interval.saturating_sub(began.elapsed())
            }
            failed => {
                let reason = match failed {
                    Ok(Err(e)) => ErrorChain(&e).to_string(),
                    _ => format!("no answer within {:?}", timing.timeout),
                };
                let before = source.set_state(SourceState::Down {
                    reason: reason.clone(),
                });
                if matches!(before, SourceState::Down { .. }) {
                    tracing::debug!(runtime = name, %reason, "runtime API still down");
                } else {
                    tracing::warn!(runtime = name, %endpoint, %reason, "runtime API down; retrying");
                }
                let wait = backoff;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                wait
            }
        };
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse() {
        assert_eq!(
            Endpoint::parse("http://169.254.170.2/v4/abc-123/"),
            Ok(Endpoint::Tcp {
                authority: "169.254.170.2:80".into(),
                base: "/v4/abc-123".into()
            })
        );
        assert_eq!(
            Endpoint::parse("127.0.0.1:7777"),
            Ok(Endpoint::Tcp {
                authority: "127.0.0.1:7777".into(),
                base: String::new()
            })
        );
        assert_eq!(
            Endpoint::parse("/var/vcap/data/garden/garden.sock"),
            Ok(Endpoint::Unix {
                path: "/var/vcap/data/garden/garden.sock".into()
            })
        );
        assert_eq!(
            Endpoint::parse("unix:///g.sock"),
            Ok(Endpoint::Unix {
                path: "/g.sock".into()
            })
        );
        assert_eq!(
            Endpoint::parse("https://node:10250"),
            Ok(Endpoint::Https {
                authority: "node:10250".into(),
                base: String::new()
            })
        );
        assert_eq!(
            Endpoint::parse("https://10.0.0.7/"),
            Ok(Endpoint::Https {
                authority: "10.0.0.7:443".into(),
                base: String::new()
            })
        );
        for bad in ["localhost", "http://", "https://", "ftp x"] {
            assert!(Endpoint::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn server_names_are_the_authoritys_host() {
        assert_eq!(
            server_name("node-1:10250").unwrap(),
            ServerName::try_from("node-1").unwrap()
        );
        assert_eq!(
            server_name("127.0.0.1:10250").unwrap(),
            ServerName::try_from("127.0.0.1").unwrap()
        );
        assert_eq!(
            server_name("[::1]:10250").unwrap(),
            ServerName::try_from("::1").unwrap()
        );
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.crt");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let error = TlsConfig::new(&TlsTrust::CaFile(path.clone())).unwrap_err();
        assert!(matches!(error, TlsError::NoCertificate { .. }), "{error}");
        let missing = dir.path().join("missing.crt");
        let error = TlsConfig::new(&TlsTrust::CaFile(missing)).unwrap_err();
        assert!(matches!(error, TlsError::CaFile { .. }), "{error}");
        assert!(TlsConfig::new(&TlsTrust::Unverified).is_ok());
    }
}
