//! Routes of the socket API. Every error is a JSON `{"error": ...}` with 400 (bad input),
//! 404 (unknown PID, inode or route), 405, 413 (body or batch too large), 500 or 503 (no
//! collector serves the request yet).
//!
//! The identity routes (`/v1/pid`, `/v1/pids`, `/v1/self`, `/v1/inode`, `/v1/containers`) are
//! in `lookups`; here are the router, errors, health, stats and `/metrics`.
use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{MatchedPath, Path, Request, State, rejection::PathRejection},
    http::{HeaderMap, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::Serialize;

use super::{
    lookups::{containers, inode, pid, pids, self_container},
    schema::{ErrorBody, HealthBody, RuntimeMetaBody, StatsBody},
};
use crate::{
    cgroupfs::CgroupMode,
    collectors::{StatsCollectors, StatsReport},
    identity::{Identity, LookupError},
    metrics::{Metrics, exposition::Format},
    provider::{ChainError, CollectorError},
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
pub(super) async fn stats_slot(
    state: &ApiState,
) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
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
        .route(
            "/v1/pod/{pod_uid}/{container_name}",
            get(super::pods::pod_container),
        )
        .route("/v1/pods/{pod_uid}/network", get(super::pods::pod_network))
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
    pub(super) status: StatusCode,
    pub(super) message: String,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    pub(super) fn bad_request(message: impl Into<String>) -> Self {
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

/// Runs `work` on the blocking pool, off the async workers.
pub(super) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
}

pub(super) fn json<T: Serialize>(value: &T) -> Response {
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

/// Longest part of a caller's input quoted back in an error.
const EXCERPT_CHARS: usize = 64;

/// `raw` quoted for an error message: whole when short, else its first [`EXCERPT_CHARS`]
/// characters and its length, so a huge bad input does not come back whole.
pub(super) fn excerpt(raw: &str) -> String {
    match raw.char_indices().nth(EXCERPT_CHARS) {
        None => format!("{raw:?}"),
        Some((end, _)) => format!("{:?}... ({} bytes)", &raw[..end], raw.len()),
    }
}

/// A path parameter, or a JSON 400 when it is not valid UTF-8 after percent-decoding.
pub(super) fn path_param(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    path.map(|Path(raw)| raw)
        .map_err(|e| ApiError::bad_request(format!("invalid path parameter: {e}")))
}

/// What the runtimes say of container `id`, as answers carry it (all null for `None`).
pub(super) fn meta_body(state: &ApiState, id: Option<&str>) -> RuntimeMetaBody {
    let meta = id.and_then(|id| state.collectors.metadata().get(id));
    RuntimeMetaBody::new(meta.as_deref(), state.collectors.container_labels())
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
#[doc(hidden)] // pub for the fuzz targets (fuzz/)
pub fn parse_max_age(query: Option<&str>) -> Result<std::time::Duration, ApiError> {
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
        let err = super::super::lookups::parse_pid(&"9".repeat(100_000)).expect_err("rejected");
        assert!(err.to_string().len() < 300, "{err}");
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
}
