//! Kubernetes pods from the kubelet's `GET /pods`, a core/v1 `PodList`: each container
//! status's `containerID` (`<runtime>://<id>`) joined to its pod's UID and the container's
//! name, with the pod's labels. Asked with the service account's token as
//! `Authorization: Bearer` (the kubelet authorizes `nodes/proxy`); the read-only port
//! (10255) needs none. HTTPS (the kubelet's port 10250) is checked against the cluster's CA
//! (the service account's `ca.crt`, as Datadog's `kubelet_client_ca`), or not at all with
//! `--kubelet-tls-verify=false` (Datadog's `kubelet_tls_verify: false`: kubelets serve a
//! self-signed certificate unless serving certificates are turned on).
//!
//! Labels given to a container are the pod's, plus the `io.kubernetes.*` labels the
//! kubelet sets through CRI (pod name, namespace, UID, container name), so that a container
//! known only to the kubelet carries the same pod identity as one a runtime told of.
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
};

use serde::Deserialize;

use super::{
    metadata::{
        CONTAINER_NAME_LABEL, ContainerMeta, POD_NAME_LABEL, POD_NAMESPACE_LABEL, POD_UID_LABEL,
        SourceState,
    },
    remote::{
        self, Access, Endpoint, HttpError, PodContainer, PollTiming, RemoteContainer, RemoteSource,
        Snapshot, TlsConfig, TlsTrust,
    },
};

/// The collector's id.
pub const ID: &str = "kubelet";
/// Where Kubernetes mounts a pod's service-account token.
pub const DEFAULT_TOKEN_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";
/// Where Kubernetes mounts the cluster's CA beside it.
pub const DEFAULT_CA_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";

/// `PodList` (the fields used).
#[derive(Debug, Default, Deserialize)]
pub struct PodList {
    #[serde(default)]
    pub items: Vec<Pod>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Pod {
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub status: PodStatus,
}

#[derive(Debug, Default, Deserialize)]
pub struct ObjectMeta {
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub uid: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStatus {
    #[serde(default)]
    pub container_statuses: Vec<ContainerStatus>,
    #[serde(default)]
    pub init_container_statuses: Vec<ContainerStatus>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStatus {
    pub name: String,
    pub image: Option<String>,
    /// `containerd://<id>`, `docker://<id>`, `cri-o://<id>`; absent until created.
    #[serde(rename = "containerID")]
    pub container_id: Option<String>,
}

/// How to reach the kubelet.
#[derive(Clone, Debug)]
pub struct KubeletAccess {
    pub endpoint: Endpoint,
    /// File holding the bearer token; read at every poll (tokens are rotated).
    pub token_file: Option<PathBuf>,
    /// For an HTTPS endpoint.
    pub tls: Option<TlsConfig>,
}

/// How the kubelet's certificate is checked: `--kubelet-tls-verify` off takes any; else the
/// `--kubelet-ca-file` ("none" or the default one missing: the system's roots).
pub fn tls_trust(verify: bool, ca_file: Option<&Path>) -> TlsTrust {
    match ca_file {
        _ if !verify => TlsTrust::Unverified,
        Some(path) if path != Path::new(DEFAULT_CA_FILE) || path.exists() => {
            TlsTrust::CaFile(path.to_owned())
        }
        _ => TlsTrust::System,
    }
}

/// The TLS settings of an HTTPS `endpoint` (`None` for plain HTTP), or the state the source
/// is in when they cannot be made (an unreadable CA file: permanent, a restart is needed).
pub fn tls_config(endpoint: &Endpoint, trust: &TlsTrust) -> Result<Option<TlsConfig>, SourceState> {
    if !endpoint.is_https() {
        return Ok(None);
    }
    TlsConfig::new(trust)
        .map(Some)
        .map_err(|e| SourceState::Absent {
            reason: format!("kubelet TLS: {}", crate::error_chain::ErrorChain(&e)),
        })
}

/// Why a poll failed.
#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("reading the token file {}", path.display())]
    Token {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The endpoint `--kubelet-url` names: "auto" is `https://$NODE_NAME:10250` when `NODE_NAME`
/// is set (`node_name`), else `https://localhost:10250` when the token file exists
/// (`token_present`: in a pod); else the state the source is in.
pub fn endpoint(
    flag: &str,
    node_name: Option<String>,
    token_present: bool,
) -> Result<Endpoint, SourceState> {
    let text = match flag {
        "none" | "" => return Err(SourceState::Disabled),
        "auto" => match node_name {
            Some(node) => format!("https://{node}:10250"),
            None if token_present => "https://localhost:10250".to_owned(),
            None => {
                return Err(SourceState::Absent {
                    reason: "NODE_NAME is not set and there is no service-account token: not a Kubernetes node".into(),
                });
            }
        },
        url => url.to_owned(),
    };
    Endpoint::parse(&text).map_err(|e| SourceState::Absent {
        reason: format!("kubelet endpoint {e}"),
    })
}

/// Polls the kubelet until aborted.
pub async fn watch(source: Arc<RemoteSource>, access: KubeletAccess, timing: PollTiming) {
    remote::poll(source, &access.endpoint, timing, || fetch(&access, timing)).await;
}

async fn fetch(access: &KubeletAccess, timing: PollTiming) -> Result<Snapshot, KubeletError> {
    let token = match &access.token_file {
        Some(path) => Some(
            tokio::fs::read_to_string(path)
                .await
                .map_err(|source| KubeletError::Token {
                    path: path.clone(),
                    source,
                })?
                .trim()
                .to_owned(),
        ),
        None => None,
    };
    let request = Access {
        bearer: token,
        tls: access.tls.clone(),
    };
    let pods: PodList =
        remote::get_json_with(&access.endpoint, "/pods", &request, timing.timeout).await?;
    Ok(snapshot(pods))
}

/// Every container with an id, by id.
pub fn snapshot(pods: PodList) -> Snapshot {
    let mut containers = BTreeMap::new();
    for pod in pods.items {
        let Some(uid) = pod.metadata.uid.clone() else {
            continue;
        };
        let statuses = pod
            .status
            .container_statuses
            .iter()
            .map(|s| (s, false))
            .chain(pod.status.init_container_statuses.iter().map(|s| (s, true)));
        for (status, init) in statuses {
            let Some(id) = status.container_id.as_deref().and_then(bare_id) else {
                continue;
            };
            let mut labels = pod.metadata.labels.clone();
            let pod_labels = [
                (POD_NAME_LABEL, pod.metadata.name.as_deref()),
                (POD_NAMESPACE_LABEL, pod.metadata.namespace.as_deref()),
                (POD_UID_LABEL, Some(uid.as_str())),
                (CONTAINER_NAME_LABEL, Some(status.name.as_str())),
            ];
            for (key, value) in pod_labels {
                if let Some(value) = value {
                    labels.insert(key.to_owned(), value.to_owned());
                }
            }
            let container = RemoteContainer {
                meta: ContainerMeta {
                    name: Some(status.name.clone()),
                    image: status.image.clone(),
                    labels,
                    ..ContainerMeta::default()
                },
                pod: Some(PodContainer {
                    pod_uid: uid.clone(),
                    container_name: status.name.clone(),
                    init,
                }),
                ..RemoteContainer::default()
            };
            containers.insert(id.to_owned(), container);
        }
    }
    Snapshot { containers }
}

/// The id in `<runtime>://<id>`.
fn bare_id(text: &str) -> Option<&str> {
    let (_, id) = text.split_once("://")?;
    (!id.is_empty()).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ids_lose_their_runtime_prefix() {
        assert_eq!(bare_id("containerd://abc"), Some("abc"));
        assert_eq!(bare_id("cri-o://abc"), Some("abc"));
        assert_eq!(bare_id("containerd://"), None);
        assert_eq!(bare_id("abc"), None);
    }

    #[test]
    fn the_ca_file_is_the_flags_else_the_systems() {
        let dir = tempfile::tempdir().unwrap();
        let own = dir.path().join("ca.crt");
        assert_eq!(tls_trust(false, Some(&own)), TlsTrust::Unverified);
        assert_eq!(tls_trust(true, Some(&own)), TlsTrust::CaFile(own.clone()));
        assert_eq!(tls_trust(true, None), TlsTrust::System);
        // The service account's CA is taken only where it is mounted.
        let default = Path::new(DEFAULT_CA_FILE);
        let expected = if default.exists() {
            TlsTrust::CaFile(default.to_owned())
        } else {
            TlsTrust::System
        };
        assert_eq!(tls_trust(true, Some(default)), expected);
    }
}
