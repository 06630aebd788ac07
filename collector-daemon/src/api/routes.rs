//! Routes of the socket API. Every error is a JSON `{"error": ...}` with 400 (bad input),
//! 404 (unknown PID, inode or route), 405, 413 (body or batch too large), 500 or 503 (no
//! collector serves the request yet).
//!
//! Identity answers (`/v1/pid`, `/v1/pids`, `/v1/self`, `/v1/inode`, `/v1/containers`) come
//! from the provider's meta collector, asked off the async scheduler (see `lookup`): a lookup
//! may read procfs, or walk the cgroup mounts without the kernel programs.
use std::sync::Arc;

use axum::{
    Json, Router,
    body::Body,
    extract::{ConnectInfo, MatchedPath, Path, Request, State, rejection::PathRejection},
    http::{HeaderMap, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::Serialize;

use super::{
    MAX_BATCH, MAX_BODY_BYTES, PID_MAX_LIMIT,
    schema::{
        ContainerBody, ErrorBody, HealthBody, InodeBody, PidBody, RuntimeMetaBody, StatsBody,
    },
    server::PeerCredentials,
};
use crate::{
    cgroupfs::CgroupMode,
    collectors::{StatsCollectors, StatsReport},
    identity::{Identity, LookupError, ProcessAnswer},
    metrics::{Metrics, exposition::Format},
    provider::{ChainError, ChainResult, CollectorChains, CollectorError, MaxAge, MetaCollector},
};

/// What the handlers share.
pub struct ApiState {
    /// The identity service, for `/healthz` (lookups go through the provider's meta
    /// collector).
    pub identity: Arc<Identity>,
    /// Why the kernel programs are off, when they are.
    pub ebpf_disabled_reason: Option<String>,
    /// The daemon's metrics.
    pub metrics: Arc<Metrics>,
    /// The bound metrics address, once listening.
    pub metrics_addr: std::sync::OnceLock<String>,
    /// The metrics provider and its collectors.
    pub collectors: Arc<StatsCollectors>,
    /// Stats requests served at once (see [`stats_slots`]).
    pub stats_slots: Arc<tokio::sync::Semaphore>,
}

/// How many stats requests are served at once: half the CPUs, at least one. A request
/// reads cgroupfs and procfs on a blocking thread, and a full collection of 1,000
/// containers takes ~65 ms of a CPU; unbounded, concurrent callers would take every CPU
/// from the lookups, the daemon's first job (16 clients asking `/v1/stats` in a loop took a
/// lookup's p99 from 0.24 to 28 ms on 2 CPUs). The others wait their turn; one asking with a
/// `max_age_ms` then gets what the collection before it cached.
#[must_use]
pub fn stats_slots() -> Arc<tokio::sync::Semaphore> {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    Arc::new(tokio::sync::Semaphore::new((cpus / 2).max(1)))
}

/// Waits for a stats slot (see [`stats_slots`]); the permit goes with the blocking work.
async fn stats_slot(state: &ApiState) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
    Arc::clone(&state.stats_slots)
        .acquire_owned()
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))
}

/// The socket API's router.
pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/v1/pid/{pid}", get(pid))
        .route("/v1/pids", post(pids))
        .route("/v1/inode/{inode}", get(inode))
        .route("/v1/self", get(self_container))
        .route("/v1/containers", get(containers))
        .route("/v1/containers/{id}/stats", get(container_stats))
        .route("/v1/stats", get(all_stats))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            count_requests,
        ))
        .with_state(state)
}

/// The TCP listener's router: metrics and health only (identity stays on the socket,
/// whose permissions say who may ask).
pub fn metrics_router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .with_state(state)
}

/// An error answer.
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(ErrorBody {
                error: self.message,
            }),
        )
            .into_response()
    }
}

impl From<&LookupError> for ApiError {
    fn from(e: &LookupError) -> Self {
        let status = match e {
            LookupError::PidNotFound { .. } | LookupError::InodeNotFound { .. } => {
                StatusCode::NOT_FOUND
            }
            LookupError::Procfs { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, e.to_string())
    }
}

/// The identity service's errors keep their status and message (404 for an unknown PID or
/// inode, 500 when procfs is unreadable); any other collector error is a 500 naming the
/// collector.
impl From<ChainError> for ApiError {
    fn from(e: ChainError) -> Self {
        match &e.error {
            CollectorError::Lookup(lookup) => Self::from(&**lookup),
            _ => Self::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        }
    }
}

impl From<PidParseError> for ApiError {
    fn from(e: PidParseError) -> Self {
        Self::bad_request(e.to_string())
    }
}

/// Runs `work` on the blocking pool, off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
}

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

fn json<T: Serialize>(value: &T) -> Response {
    Json(value).into_response()
}

async fn healthz(State(state): State<Arc<ApiState>>) -> Json<HealthBody> {
    let identity = &state.identity;
    identity.sync();
    let kernel = identity.kernel();
    let (live, exited) = identity.process_counts();
    Json(HealthBody {
        status: "ok".to_owned(),
        ebpf: kernel.is_some(),
        ebpf_disabled_reason: state.ebpf_disabled_reason.clone(),
        cgroup_mode: match identity.layout().mode {
            CgroupMode::V1 => "v1",
            CgroupMode::V2 => "v2",
            CgroupMode::Hybrid => "hybrid",
        }
        .to_owned(),
        processes_live: kernel.map(|_| live),
        processes_exited: kernel.map(|_| exited),
        cgroups: identity.cgroup_count(),
        events_lost: kernel.map(|k| k.counters()[collector_common::counters::EVENTS_LOST as usize]),
        exited_grace_secs: identity.exited_grace().as_secs(),
        metrics_addr: state.metrics_addr.get().cloned(),
        pinned_map: kernel
            .and_then(crate::ebpf::KernelTracker::pin_path)
            .map(|p| p.display().to_string()),
        counters_unavailable: kernel
            .and_then(crate::ebpf::KernelTracker::counters_unavailable)
            .map(str::to_owned),
    })
}

/// `/metrics`: one full collection as cAdvisor's container families plus the daemon's
/// health, in the format the `Accept` header prefers, gzipped when `Accept-Encoding` allows.
/// A scrape takes a stats slot like `/v1/stats`, so scrapes cannot take the CPUs from lookups.
async fn metrics(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let text_header = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let format = Format::negotiate(text_header(header::ACCEPT));
    let gzip = accepts_gzip(text_header(header::ACCEPT_ENCODING));
    let metrics = Arc::clone(&state.metrics);
    let slot = stats_slot(&state).await?;
    let body = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let text = metrics
            .scrape(format)
            .map_err(|e| format!("encoding metrics: {e}"))?;
        if gzip {
            gzip_bytes(text.as_bytes()).map_err(|e| format!("compressing metrics: {e}"))
        } else {
            Ok(text.into_bytes())
        }
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    let mut response = ([(header::CONTENT_TYPE, format.content_type())], body).into_response();
    if gzip {
        response.headers_mut().insert(
            header::CONTENT_ENCODING,
            header::HeaderValue::from_static("gzip"),
        );
    }
    response.headers_mut().insert(
        header::VARY,
        header::HeaderValue::from_static("Accept, Accept-Encoding"),
    );
    Ok(response)
}

/// Whether an `Accept-Encoding` header allows gzip (`gzip` or `*`, with a quality above 0).
fn accepts_gzip(accept_encoding: Option<&str>) -> bool {
    accept_encoding.is_some_and(|header| {
        header.split(',').any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or("");
            let quality = parts
                .find_map(|p| p.strip_prefix("q="))
                .map_or(1.0, |q| q.trim().parse::<f32>().unwrap_or(0.0));
            (name.eq_ignore_ascii_case("gzip") || name == "*") && quality > 0.0
        })
    })
}

/// `bytes` gzipped at the fastest level: a scrape's text compresses ~10x even so, and a
/// higher level would cost more CPU than the collection itself.
fn gzip_bytes(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Write as _;
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(bytes.len() / 8),
        flate2::Compression::fast(),
    );
    encoder.write_all(bytes)?;
    encoder.finish()
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

/// Longest part of a caller's input quoted back in an error.
const EXCERPT_CHARS: usize = 64;

/// `raw` quoted for an error message: whole when short, else its first [`EXCERPT_CHARS`]
/// characters and its length, so a huge bad input does not come back whole.
fn excerpt(raw: &str) -> String {
    match raw.char_indices().nth(EXCERPT_CHARS) {
        None => format!("{raw:?}"),
        Some((end, _)) => format!("{:?}... ({} bytes)", &raw[..end], raw.len()),
    }
}

/// A path parameter, or a JSON 400 when it is not valid UTF-8 after percent-decoding.
fn path_param(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    path.map(|Path(raw)| raw)
        .map_err(|e| ApiError::bad_request(format!("invalid path parameter: {e}")))
}

async fn pid(
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
fn pid_body(state: &ApiState, answer: &ProcessAnswer) -> PidBody {
    let mut body = PidBody::from(answer);
    body.meta = meta_body(state, body.container_id.as_deref());
    body
}

/// What the runtimes say of container `id`, as answers carry it (all null for `None`).
fn meta_body(state: &ApiState, id: Option<&str>) -> RuntimeMetaBody {
    let meta = id.and_then(|id| state.collectors.metadata().get(id));
    RuntimeMetaBody::new(meta.as_deref(), state.collectors.container_labels())
}

async fn pids(State(state): State<Arc<ApiState>>, request: Request) -> Result<Response, ApiError> {
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

async fn inode(
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

async fn self_container(
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

async fn containers(State(state): State<Arc<ApiState>>) -> Result<Response, ApiError> {
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
        let bodies: Vec<ContainerBody> = views
            .iter()
            .map(|view| {
                let mut body = ContainerBody::from(view);
                body.meta = meta_body(&state, Some(&body.container_id));
                body
            })
            .collect();
        Ok(json(&bodies))
    })
    .await
}

/// Longest accepted `max_age_ms`: a day. Longer would not be a staleness tolerance.
const MAX_AGE_LIMIT_MS: u64 = 86_400_000;

async fn container_stats(
    State(state): State<Arc<ApiState>>,
    path: Result<Path<String>, PathRejection>,
    query: axum::extract::RawQuery,
) -> Result<Response, ApiError> {
    let id = path_param(path)?;
    if id.is_empty()
        || id.len() > 256
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(ApiError::bad_request(format!(
            "invalid container id {}: expected up to 256 letters, digits, '-', '_' or '.'",
            excerpt(&id)
        )));
    }
    let max_age = parse_max_age(query.0.as_deref())?;
    let slot = stats_slot(&state).await?;
    // Reads cgroupfs, procfs and BPF maps: off the async workers.
    blocking(move || {
        let _slot = slot;
        match state.collectors.container_stats(&id, max_age) {
            Ok(Some(report)) => Ok(json(&stats_body(&state, report))),
            Ok(None) => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("container {id} is not known (no collector has it)"),
            )),
            Err(e) => Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("stats of container {id}: {e}"),
            )),
        }
    })
    .await
}

/// A container's stats with what the runtimes say of it.
fn stats_body(state: &ApiState, report: StatsReport) -> StatsBody {
    let meta = meta_body(state, Some(&report.container_id));
    StatsBody::new(report, meta)
}

async fn all_stats(
    State(state): State<Arc<ApiState>>,
    query: axum::extract::RawQuery,
) -> Result<Response, ApiError> {
    let max_age = parse_max_age(query.0.as_deref())?;
    let slot = stats_slot(&state).await?;
    blocking(move || {
        let _slot = slot;
        let bodies: Vec<StatsBody> = state
            .collectors
            .all_stats(max_age)
            .into_iter()
            .map(|report| stats_body(&state, report))
            .collect();
        Ok(json(&bodies))
    })
    .await
}

/// `max_age_ms=N` from the query string: how stale cached values may be (default 0: read
/// now). Other parameters are ignored.
fn parse_max_age(query: Option<&str>) -> Result<std::time::Duration, ApiError> {
    let mut max_age = std::time::Duration::ZERO;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key != "max_age_ms" {
            continue;
        }
        let ms = value
            .parse::<u64>()
            .ok()
            .filter(|&ms| ms <= MAX_AGE_LIMIT_MS)
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "invalid max_age_ms {}: expected milliseconds, 0 to {MAX_AGE_LIMIT_MS}",
                    excerpt(value)
                ))
            })?;
        max_age = std::time::Duration::from_millis(ms);
    }
    Ok(max_age)
}

async fn not_found(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "no route for {} {}; see the README's API section",
            request.method(),
            excerpt(request.uri().path())
        ),
    )
}

async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "method {} not allowed on {}",
            request.method(),
            request.uri().path()
        ),
    )
}

async fn count_requests(
    State(state): State<Arc<ApiState>>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    state
        .metrics
        .count_request(route, response.status().as_u16());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_is_used_when_the_scraper_accepts_it() {
        assert!(accepts_gzip(Some("gzip")));
        assert!(accepts_gzip(Some("deflate, gzip;q=0.5")));
        assert!(accepts_gzip(Some("*")));
        assert!(!accepts_gzip(None));
        assert!(!accepts_gzip(Some("identity")));
        assert!(!accepts_gzip(Some("gzip;q=0")));
        let packed = gzip_bytes(b"abc").unwrap();
        let mut unpacked = String::new();
        std::io::Read::read_to_string(
            &mut flate2::read::GzDecoder::new(&packed[..]),
            &mut unpacked,
        )
        .unwrap();
        assert_eq!(unpacked, "abc");
    }

    #[test]
    fn bad_input_is_quoted_back_in_short() {
        assert_eq!(excerpt("abc"), r#""abc""#);
        assert_eq!(excerpt("a\0b"), r#""a\0b""#);
        let long = "é".repeat(5_000);
        let quoted = excerpt(&long);
        assert_eq!(quoted, format!("{:?}... (10000 bytes)", "é".repeat(64)));
        let err = parse_pid(&"9".repeat(100_000)).expect_err("rejected");
        assert!(err.to_string().len() < 300, "{err}");
    }

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
    fn identity_errors_keep_their_status_and_message() {
        let chain = |error: CollectorError| ChainError {
            collector: "identity",
            error,
        };
        let not_found = LookupError::PidNotFound {
            pid: 7,
            grace_secs: 60,
        };
        let procfs = LookupError::Procfs {
            pid: 7,
            source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        };
        let no_inode = LookupError::InodeNotFound { inode: 9 };
        for (lookup, status) in [
            (not_found, StatusCode::NOT_FOUND),
            (procfs, StatusCode::INTERNAL_SERVER_ERROR),
            (no_inode, StatusCode::NOT_FOUND),
        ] {
            let message = lookup.to_string();
            let error = ApiError::from(chain(CollectorError::from(lookup)));
            assert_eq!((error.status, error.message), (status, message));
        }
        let other = ApiError::from(chain(CollectorError::other("runtime down")));
        assert_eq!(
            (other.status, other.message.as_str()),
            (StatusCode::INTERNAL_SERVER_ERROR, "identity: runtime down")
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
}
