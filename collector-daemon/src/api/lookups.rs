//! The identity routes: `/v1/pid/{pid}`, `/v1/pids`, `/v1/self`, `/v1/inode/{inode}` and
//! `/v1/containers`, answered by the provider's meta collector.
//!
//! What the kernel index holds in memory (live processes whose cgroups it knows) is answered
//! on the async worker; every other lookup runs off the async scheduler (see [`lookup`]): it
//! may read procfs, or walk the cgroup mounts without the kernel programs.
use std::sync::Arc;

use axum::{
    body::Body,
    extract::{ConnectInfo, Path, Request, State, rejection::PathRejection},
    http::StatusCode,
    response::Response,
};

use super::{
    MAX_BATCH, MAX_BODY_BYTES, PID_MAX_LIMIT,
    routes::{ApiError, ApiState, blocking, excerpt, json, meta_body, path_param},
    schema::{ContainerBody, InodeBody, PidBody, flavor_name},
    server::PeerCredentials,
};
use crate::{
    identity::{LookupError, ProcessAnswer},
    provider::{ChainResult, CollectorChains, MaxAge, MetaCollector, Runtime},
};

/// Most PIDs a batch may hold to be answered on the async worker when the kernel index has
/// them all (under a millisecond of work); larger batches go off the async scheduler.
const MAX_IN_MEMORY_BATCH: usize = 1_024;

/// Runs an identity lookup off the async scheduler (what the in-memory answers cannot serve:
/// procfs reads, cgroup walks). On the multi-threaded runtime (the
/// daemon's), it runs on this thread once the worker's other tasks are handed to another
/// thread (`block_in_place`): the request waits for no other thread. The blocking pool
/// (`spawn_blocking`) would cost each request two thread wake-ups, there and back, which the
/// lookup bench shows as a higher latency of keep-alive lookups. On a current-thread runtime,
/// which does not allow `block_in_place`, the lookup goes to the blocking pool.
async fn lookup<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    if tokio::runtime::Handle::current().runtime_flavor()
        == tokio::runtime::RuntimeFlavor::MultiThread
    {
        tokio::task::block_in_place(work)
    } else {
        blocking(work).await
    }
}

/// The provider's meta collector, or a 503 while no collector offers what `offered` checks
/// (collectors are registered asynchronously; the identity collector's constructor succeeds
/// at once, so this is not expected).
fn meta_collector(
    state: &ApiState,
    offered: impl FnOnce(&CollectorChains) -> bool,
    what: &str,
) -> Result<MetaCollector, ApiError> {
    offering(state.collectors.provider().meta(), offered, what)
}

fn offering(
    meta: MetaCollector,
    offered: impl FnOnce(&CollectorChains) -> bool,
    what: &str,
) -> Result<MetaCollector, ApiError> {
    if offered(meta.chains()) {
        Ok(meta)
    } else {
        Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("no collector answers {what} yet; try again shortly"),
        ))
    }
}

/// Why the API's text is not a PID.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PidParseError {
    /// Not a decimal integer that fits in 64 bits.
    #[error("invalid pid {quoted}: expected a decimal integer between 1 and {PID_MAX_LIMIT}")]
    Malformed {
        /// The text, quoted back in short (see `excerpt`).
        quoted: String,
    },
    /// An integer outside `1..=PID_MAX_LIMIT`.
    #[error("invalid pid {quoted}: expected a decimal integer between 1 and {PID_MAX_LIMIT}")]
    OutOfRange {
        /// The text, quoted back in short (see `excerpt`).
        quoted: String,
    },
}

/// Parses a PID from the API's text: a decimal integer in `1..=PID_MAX_LIMIT`.
pub fn parse_pid(raw: &str) -> Result<u32, PidParseError> {
    let pid = raw.parse::<u64>().map_err(|_| PidParseError::Malformed {
        quoted: excerpt(raw),
    })?;
    u32::try_from(pid)
        .ok()
        .filter(|pid| (1..=PID_MAX_LIMIT).contains(pid))
        .ok_or_else(|| PidParseError::OutOfRange {
            quoted: excerpt(raw),
        })
}

pub(super) async fn pid(
    State(state): State<Arc<ApiState>>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let raw = path_param(path)?;
    let pid = parse_pid(&raw)?;
    answer_pid(state, pid).await
}

/// The answer for one PID, with its container's runtime metadata.
async fn answer_pid(state: Arc<ApiState>, pid: u32) -> Result<Response, ApiError> {
    let meta = meta_collector(
        &state,
        |chains| !chains.process_identity.is_empty(),
        "process lookups",
    )?;
    if let Some(answer) = meta.processes_in_memory(&[pid]).and_then(|mut a| a.pop()) {
        return Ok(json(&pid_body(&state, &answer.value)));
    }
    lookup(move || {
        let answer = known_process(&state, pid, meta.process(pid, MaxAge::ZERO))?;
        Ok(json(&pid_body(&state, &answer)))
    })
    .await
}

/// The process a chain found, or the error to answer with. When every collector says it does
/// not know the PID without failing, the answer is the identity service's "not found".
fn known_process(
    state: &ApiState,
    pid: u32,
    result: ChainResult<ProcessAnswer>,
) -> Result<ProcessAnswer, ApiError> {
    match result {
        Ok(Some(answer)) => Ok(answer.value),
        Ok(None) => Err(ApiError::from(&LookupError::PidNotFound {
            pid,
            grace_secs: state.identity.exited_grace().as_secs(),
        })),
        Err(e) => Err(ApiError::from(e)),
    }
}

/// A PID answer with its container's runtime metadata.
/// A live process may be in a Podman container that has no cgroup of its own (rootless
/// Podman on cgroup v1, whose processes stay in the cgroups of whatever started them, which
/// may even be another container's): its PID namespace tells, when it does so for certain,
/// and wins over the cgroup's. Its cgroup fields stay those of the cgroup it is in.
fn pid_body(state: &ApiState, answer: &ProcessAnswer) -> PidBody {
    let mut body = PidBody::from(answer);
    if body.exited != Some(true)
        && let Some(id) = state.collectors.podman().container_of_pid(body.pid)
        && body.container_id.as_deref() != Some(id.as_str())
    {
        body.container_id = Some(id);
        body.runtime = Some(Runtime::Podman.as_str().to_owned());
        body.pod_uid = None;
    }
    body.meta = meta_body(state, body.container_id.as_deref());
    body
}

pub(super) async fn pids(
    State(state): State<Arc<ApiState>>,
    request: Request,
) -> Result<Response, ApiError> {
    let body = read_body(request.into_body()).await?;
    let pids = parse_pid_array(&body)?;
    let meta = meta_collector(
        &state,
        |chains| !chains.process_identity.is_empty(),
        "process lookups",
    )?;
    if pids.len() <= MAX_IN_MEMORY_BATCH
        && let Some(answers) = meta.processes_in_memory(&pids)
    {
        let bodies: Vec<PidBody> = answers
            .iter()
            .map(|answer| pid_body(&state, &answer.value))
            .collect();
        return Ok(json(&bodies));
    }
    lookup(move || {
        let answers: Vec<PidBody> = meta
            .processes(&pids, MaxAge::ZERO)
            .into_iter()
            .zip(&pids)
            .map(|(result, &pid)| match known_process(&state, pid, result) {
                Ok(answer) => pid_body(&state, &answer),
                Err(e) => PidBody::error(pid, e.message),
            })
            .collect();
        Ok(json(&answers))
    })
    .await
}

async fn read_body(body: Body) -> Result<bytes::Bytes, ApiError> {
    axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|e| {
            let too_large =
                std::iter::successors(Some(&e as &(dyn std::error::Error + 'static)), |e| {
                    e.source()
                })
                .any(<dyn std::error::Error>::is::<http_body_util::LengthLimitError>);
            if too_large {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("request body over {MAX_BODY_BYTES} bytes"),
                )
            } else {
                ApiError::bad_request(format!("reading the request body failed: {e}"))
            }
        })
}

/// Parses `POST /v1/pids`'s body: a JSON array of PIDs.
pub fn parse_pid_array(body: &[u8]) -> Result<Vec<u32>, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "malformed JSON body: {e}; expected an array of PIDs such as [1, 42]"
        ))
    })?;
    let serde_json::Value::Array(items) = value else {
        return Err(ApiError::bad_request(
            "expected a JSON array of PIDs such as [1, 42]",
        ));
    };
    if items.len() > MAX_BATCH {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("{} pids in one request; at most {MAX_BATCH}", items.len()),
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            item.as_u64()
                .filter(|pid| (1..=u64::from(PID_MAX_LIMIT)).contains(pid))
                .and_then(|pid| u32::try_from(pid).ok())
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "element {i} ({item}) is not a pid: expected an integer between 1 and {PID_MAX_LIMIT}"
                    ))
                })
        })
        .collect()
}

pub(super) async fn inode(
    State(state): State<Arc<ApiState>>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let raw = path_param(path)?;
    // Inodes 0-2 are never directories of a cgroup filesystem's cgroups... except the
    // root's own id (1): accept from 1.
    let inode = raw.parse::<u64>().ok().filter(|&i| i >= 1).ok_or_else(|| {
        ApiError::bad_request(format!(
            "invalid inode {}: expected a positive decimal integer",
            excerpt(&raw)
        ))
    })?;
    let meta = meta_collector(
        &state,
        |chains| !chains.cgroup_identity.is_empty(),
        "cgroup lookups",
    )?;
    // A miss may walk the cgroup mounts (without eBPF).
    lookup(move || match meta.cgroup(inode, MaxAge::ZERO)? {
        Some(answer) => Ok(json(&InodeBody::from(&answer.value))),
        None => Err(ApiError::from(&LookupError::InodeNotFound { inode })),
    })
    .await
}

pub(super) async fn self_container(
    State(state): State<Arc<ApiState>>,
    ConnectInfo(peer): ConnectInfo<PeerCredentials>,
) -> Result<Response, ApiError> {
    let pid = peer.pid.ok_or_else(|| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the kernel gave no PID for this connection (SO_PEERCRED)",
        )
    })?;
    answer_pid(state, pid).await
}

pub(super) async fn containers(State(state): State<Arc<ApiState>>) -> Result<Response, ApiError> {
    let meta = meta_collector(
        &state,
        |chains| !chains.container_listing.is_empty(),
        "the container list",
    )?;
    // Without eBPF this reads every /proc/<pid>/cgroup.
    lookup(move || {
        let views = meta
            .containers(MaxAge::ZERO)?
            .map(|answer| answer.value)
            .unwrap_or_default();
        let mut bodies: Vec<ContainerBody> = views
            .iter()
            .map(|view| {
                let mut body = ContainerBody::from(view);
                body.meta = meta_body(&state, Some(&body.container_id));
                // A container whose cgroup path names no runtime (a Kata container, a `ctr`
                // one) takes containerd's when containerd lists it, and its flavor.
                let (runtime, flavor) = state
                    .collectors
                    .runtime_and_flavor(&body.container_id, view.container.runtime);
                body.runtime = runtime.map(|r| r.as_str().to_owned());
                flavor_name(flavor).clone_into(&mut body.flavor);
                body
            })
            .collect();
        remote_only(&state, &mut bodies);
        podman_only(&state, &mut bodies);
        Ok(json(&bodies))
    })
    .await
}

/// Appends the containers that only a polled runtime API tells of (ECS Fargate's task, whose
/// cgroups this daemon does not see): no cgroup, no processes.
fn remote_only(state: &ApiState, bodies: &mut Vec<ContainerBody>) {
    let listed: std::collections::HashSet<String> =
        bodies.iter().map(|b| b.container_id.clone()).collect();
    for source in state.collectors.remote().all() {
        if source.pod_listing_only() {
            continue;
        }
        for (id, container) in &source.snapshot().containers {
            if listed.contains(id) {
                continue;
            }
            bodies.push(ContainerBody {
                container_id: id.clone(),
                runtime: source.runtime.map(|r| r.as_str().to_owned()),
                flavor: "default".to_owned(),
                meta: meta_body(state, Some(id)),
                pod_uid: container.pod.as_ref().map(|p| p.pod_uid.clone()),
                cgroup_path: None,
                cgroup_id: None,
                cgroups: Vec::new(),
                pids: Vec::new(),
            });
        }
    }
}

/// Appends the running Podman containers without a cgroup of their own (rootless Podman on
/// cgroup v1): no cgroup, and no processes, since the cgroups cannot tell them.
fn podman_only(state: &ApiState, bodies: &mut Vec<ContainerBody>) {
    let listed: std::collections::HashSet<String> =
        bodies.iter().map(|b| b.container_id.clone()).collect();
    for id in state
        .collectors
        .podman_without_cgroups(&|id| listed.contains(id))
    {
        bodies.push(ContainerBody {
            runtime: Some(Runtime::Podman.as_str().to_owned()),
            flavor: "default".to_owned(),
            meta: meta_body(state, Some(&id)),
            container_id: id,
            pod_uid: None,
            cgroup_path: None,
            cgroup_id: None,
            cgroups: Vec::new(),
            pids: Vec::new(),
        });
    }
}

impl From<PidParseError> for ApiError {
    fn from(e: PidParseError) -> Self {
        Self::bad_request(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pids_are_decimal_integers_in_range() {
        assert_eq!(parse_pid("1"), Ok(1));
        assert_eq!(parse_pid("4194304"), Ok(4_194_304));
        for bad in [
            "0",
            "-1",
            "4194305",
            "abc",
            "",
            "1.5",
            "18446744073709551616",
            " 1",
        ] {
            assert!(parse_pid(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn pid_errors_say_what_a_pid_is() {
        let expected = |quoted: &str| {
            format!(
                "invalid pid {quoted}: expected a decimal integer between 1 and {PID_MAX_LIMIT}"
            )
        };
        let malformed = parse_pid("x1").unwrap_err();
        assert!(matches!(malformed, PidParseError::Malformed { .. }));
        assert_eq!(malformed.to_string(), expected(r#""x1""#));
        let out_of_range = parse_pid("4194305").unwrap_err();
        assert!(matches!(out_of_range, PidParseError::OutOfRange { .. }));
        assert_eq!(out_of_range.to_string(), expected(r#""4194305""#));
        assert!(matches!(
            parse_pid("0"),
            Err(PidParseError::OutOfRange { .. })
        ));
        assert_eq!(ApiError::from(malformed).status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn no_identity_collector_is_a_503() {
        let meta = MetaCollector::new(Arc::default());
        let error = offering(
            meta,
            |chains| !chains.process_identity.is_empty(),
            "process lookups",
        )
        .unwrap_err();
        assert_eq!(error.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            error.message,
            "no collector answers process lookups yet; try again shortly"
        );
    }

    #[test]
    fn pid_arrays_are_validated_element_by_element() {
        assert_eq!(parse_pid_array(b"[1, 2, 3]").ok(), Some(vec![1, 2, 3]));
        assert_eq!(parse_pid_array(b"[]").ok(), Some(vec![]));
        for (body, status) in [
            (&b"[1, \"x\"]"[..], StatusCode::BAD_REQUEST),
            (b"[1, 0]", StatusCode::BAD_REQUEST),
            (b"[-5]", StatusCode::BAD_REQUEST),
            (b"[1.5]", StatusCode::BAD_REQUEST),
            (b"{\"pids\": [1]}", StatusCode::BAD_REQUEST),
            (b"[1,", StatusCode::BAD_REQUEST),
            (b"", StatusCode::BAD_REQUEST),
        ] {
            let err = parse_pid_array(body).expect_err("rejected");
            assert_eq!(err.status, status, "{}", String::from_utf8_lossy(body));
        }
        let huge = format!("[{}]", vec!["1"; MAX_BATCH + 1].join(","));
        assert_eq!(
            parse_pid_array(huge.as_bytes()).err().map(|e| e.status),
            Some(StatusCode::PAYLOAD_TOO_LARGE)
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lookups_run_in_place_on_the_multi_threaded_runtime() {
        let here = std::thread::current().id();
        let same_thread = lookup(move || Ok(std::thread::current().id() == here)).await;
        assert_eq!(same_thread.ok(), Some(true));
    }

    #[tokio::test]
    async fn lookups_run_on_the_blocking_pool_of_a_current_thread_runtime() {
        let here = std::thread::current().id();
        let same_thread = lookup(move || Ok(std::thread::current().id() == here)).await;
        assert_eq!(same_thread.ok(), Some(false));
    }
}
