//! `GET /v1/pod/{pod_uid}/{container_name}[?init=true]`: which container is container `name`
//! of pod `uid`, answered by the provider's meta collector (CRI first, the kubelet's `/pods`
//! after). An unknown pod or name is a 404; a CRI runtime that is down, or neither CRI nor a
//! kubelet on the node, a 503 saying it is not available; the other routes answer on
//! meanwhile.
//!
//! `GET /v1/pods/{pod_uid}/network[?max_age_ms=N]`: the pod's network, from the network
//! namespace its containers share (see `collectors::pod_network`); a pod with no live
//! container on this host is a 404.
use std::sync::Arc;

use axum::{
    extract::{Path, RawQuery, State, rejection::PathRejection},
    http::StatusCode,
    response::Response,
};
use serde::{Deserialize, Serialize};

use super::{
    routes::{ApiError, ApiState, blocking, excerpt, json, meta_body, parse_max_age, stats_slot},
    schema::RuntimeMetaBody,
};
use crate::{
    collectors::{cri, pod_network},
    provider::{MaxAge, NetworkStats},
};

/// Longest pod UID or container name accepted (a Kubernetes container name is a DNS label
/// of at most 63 characters, a UID 36).
const MAX_PART: usize = 253;

/// The answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodBody {
    /// The pod UID asked about.
    pub pod_uid: String,
    /// The container name asked about (the request's, also when the runtime has none).
    #[serde(rename = "container")]
    pub container: String,
    /// Whether an init container was asked for.
    pub init: bool,
    /// The container's id.
    pub container_id: String,
    /// Its runtime: from its cgroup path, else the runtime API's own name.
    pub runtime: Option<String>,
    /// The collector that answered (`cri` or `kubelet`).
    pub source: String,
    /// Name, image, labels and pod from the runtimes' APIs.
    #[serde(flatten)]
    pub meta: RuntimeMetaBody,
}

/// `GET /v1/pods/{pod_uid}/network`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PodNetworkBody {
    /// The pod UID, in the dashed lower-case form.
    pub pod_uid: String,
    /// Its name and Kubernetes namespace, from its containers' runtime metadata.
    pub pod_name: Option<String>,
    pub namespace: Option<String>,
    /// Its live containers seen here (sandbox included), by id.
    pub containers: Vec<String>,
    /// The pod's network: the counters of the one network namespace its processes are in;
    /// null when they are in several (see `namespaces`) or none is alive.
    pub network: Option<NetworkStats>,
    /// Every network namespace its live processes are in, with the containers in each.
    pub namespaces: Vec<PodNamespaceBody>,
}

/// One network namespace of a pod.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PodNamespaceBody {
    pub containers: Vec<String>,
    pub network: NetworkStats,
}

/// A pod UID or container name from the path: non-empty, printable ASCII without `/`.
fn part(what: &str, raw: &str) -> Result<(), ApiError> {
    let fine = !raw.is_empty()
        && raw.len() <= MAX_PART
        && raw.bytes().all(|b| b.is_ascii_graphic() && b != b'/');
    if fine {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "invalid {what} {}: expected 1 to {MAX_PART} printable ASCII characters",
            excerpt(raw)
        )))
    }
}

/// `init=true|false|1|0` from the query string (default false); other parameters are
/// ignored.
fn parse_init(query: Option<&str>) -> Result<bool, ApiError> {
    let mut init = false;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, "true"));
        if key != "init" {
            continue;
        }
        init = match value {
            "true" | "1" => true,
            "false" | "0" => false,
            other => {
                return Err(ApiError::bad_request(format!(
                    "invalid init {}: expected true or false",
                    excerpt(other)
                )));
            }
        };
    }
    Ok(init)
}

pub(super) async fn pod_container(
    State(state): State<Arc<ApiState>>,
    path: Result<Path<(String, String)>, PathRejection>,
    query: RawQuery,
) -> Result<Response, ApiError> {
    let Path((uid, name)) =
        path.map_err(|e| ApiError::bad_request(format!("invalid path parameter: {e}")))?;
    part("pod uid", &uid)?;
    part("container name", &name)?;
    let init = parse_init(query.0.as_deref())?;
    let meta = state.collectors.provider().meta();
    if meta.chains().container_id_for_pod_uid_and_name.is_empty() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "pod lookups are not available: neither a CRI runtime nor a kubelet answers \
                 (CRI: {}; kubelet: {}); see --cri-socket and --kubelet-url",
                state.collectors.cri_status(),
                state.collectors.kubelet_status()
            ),
        ));
    }
    // The CRI call waits on the runtime: off the async workers.
    blocking(move || {
        let found = meta.container_id_for_pod_uid_and_name(&uid, &name, init, MaxAge::ZERO);
        let answer = match found {
            Ok(Some(answer)) => answer,
            Ok(None) => {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    format!(
                        "no {}container named {name:?} in pod {uid:?}",
                        if init { "init " } else { "" }
                    ),
                ));
            }
            Err(e) if cri::is_unavailable(&e.error) => {
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("container {name:?} of pod {uid:?}: {e}"),
                ));
            }
            Err(e) => {
                return Err(ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("container {name:?} of pod {uid:?}: {e}"),
                ));
            }
        };
        let id = answer.value;
        let body = PodBody {
            runtime: state
                .collectors
                .container_runtime(&id)
                .map(|r| r.as_str().to_owned()),
            source: answer.source.to_owned(),
            meta: meta_body(&state, Some(&id)),
            pod_uid: uid,
            container: name,
            init,
            container_id: id,
        };
        Ok(json(&body))
    })
    .await
}

pub(super) async fn pod_network(
    State(state): State<Arc<ApiState>>,
    path: Result<Path<String>, PathRejection>,
    query: RawQuery,
) -> Result<Response, ApiError> {
    let Path(raw) =
        path.map_err(|e| ApiError::bad_request(format!("invalid path parameter: {e}")))?;
    let Some(uid) = pod_network::canonical_pod_uid(&raw) else {
        return Err(ApiError::bad_request(format!(
            "invalid pod uid {}: expected a UUID or 32 hexadecimal digits",
            excerpt(&raw)
        )));
    };
    let max_age = parse_max_age(query.0.as_deref())?;
    let slot = stats_slot(&state).await?;
    // Reads procfs: off the async workers.
    blocking(move || {
        let _slot = slot;
        let pod = match state.collectors.pod_network(&uid, max_age) {
            Ok(Some(pod)) => pod,
            Ok(None) => {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    format!("no live container of pod {uid:?} is known on this host"),
                ));
            }
            Err(e) => {
                return Err(ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("network of pod {uid:?}: {e}"),
                ));
            }
        };
        Ok(json(&pod_network_body(&state, &pod)))
    })
    .await
}

fn pod_network_body(state: &ApiState, pod: &pod_network::PodNetwork) -> PodNetworkBody {
    // The pod's name and namespace: from the first of its containers a runtime names.
    let named = pod
        .containers
        .iter()
        .map(|id| meta_body(state, Some(id)))
        .find(|meta| meta.pod_name.is_some())
        .unwrap_or_default();
    PodNetworkBody {
        pod_uid: pod.pod_uid.clone(),
        pod_name: named.pod_name,
        namespace: named.namespace,
        containers: pod.containers.clone(),
        network: pod.network().cloned(),
        namespaces: pod
            .namespaces
            .iter()
            .map(|n| PodNamespaceBody {
                containers: n.containers.clone(),
                network: n.network.clone(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_is_a_boolean_query_parameter() {
        assert!(!parse_init(None).ok().unwrap());
        assert!(parse_init(Some("init=true")).ok().unwrap());
        assert!(parse_init(Some("x=1&init=1")).ok().unwrap());
        assert!(parse_init(Some("init")).ok().unwrap());
        assert!(!parse_init(Some("init=false")).ok().unwrap());
        let error = parse_init(Some("init=yes")).err().unwrap();
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            error.message,
            "invalid init \"yes\": expected true or false"
        );
    }

    #[test]
    fn path_parts_are_printable_and_bounded() {
        assert!(part("pod uid", "0c5b1f6e-1d2a-4e0b-8f00-1234567890ab").is_ok());
        for bad in ["", "a b", "é", &"x".repeat(MAX_PART + 1)] {
            assert!(part("pod uid", bad).is_err(), "{bad:?}");
        }
    }
}
