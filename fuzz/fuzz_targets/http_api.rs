//! The socket API end to end in-process: the daemon's real router (`api::routes::router`)
//! over a state built as `run` builds it with `--no-ebpf` (real procfs and cgroupfs of this
//! host, no kernel programs, no runtime APIs), driven through tower's `oneshot` on a
//! current-thread tokio runtime. The input is a request as text:
//!
//! ```text
//! METHOD URI
//! Header: value        (any number of lines)
//!                      (an empty line)
//! body
//! ```
//!
//! Requests that the `http` crate refuses to build (bad method, URI or header) never reach the
//! router: hyper answers those with a 400 before routing.
//!
//! Beyond "no panic": no input gets a 5xx (bad input is a 400, 404, 405 or 413), and every
//! error is the JSON `{"error": "..."}` the README documents.
#![no_main]

use std::{
    path::PathBuf,
    sync::{Arc, OnceLock},
    time::Duration,
};

use axum::{
    Router,
    body::{Body, to_bytes},
    extract::ConnectInfo,
    http::{Request, header},
};
use collector_daemon::{
    api::{
        routes::{self, ApiState},
        server::PeerCredentials,
    },
    cgroupfs::CgroupLayout,
    collectors::{RuntimeApis, StatsCollectors},
    identity::{Identity, IdentityOptions},
    metrics::Metrics,
};
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt as _;

struct Harness {
    runtime: tokio::runtime::Runtime,
    router: Router,
}

/// The state as `daemon::run` builds it, minus the kernel programs, the runtime watchers and
/// the listeners; made once per process.
fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let proc_root = PathBuf::from("/proc");
        let layout = CgroupLayout::discover(&proc_root).expect("this host's cgroup layout");
        let identity = Arc::new(Identity::start(
            layout,
            None,
            IdentityOptions {
                proc_root: proc_root.clone(),
                exited_grace: Duration::from_mins(1),
            },
        ));
        let collectors = Arc::new(StatsCollectors::start(
            &identity,
            &proc_root,
            1024,
            vec!["app".to_owned()],
            RuntimeApis::default(),
        ));
        let metrics = Arc::new(Metrics::new(Arc::clone(&identity), Arc::clone(&collectors)));
        let state = Arc::new(ApiState {
            identity,
            ebpf_disabled_reason: Some("fuzzing: procfs only".to_owned()),
            metrics,
            metrics_addr: OnceLock::new(),
            collectors,
            stats_slots: routes::stats_slots(),
        });
        Harness {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime"),
            router: routes::router(state),
        }
    })
}

/// The request the text describes, or None when `http` refuses it.
fn request(data: &[u8]) -> Option<Request<Body>> {
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(at) => (&data[..at], &data[at + 2..]),
        None => (data, &b""[..]),
    };
    let head = std::str::from_utf8(head).ok()?;
    let mut lines = head.split('\n');
    let (method, uri) = lines.next()?.split_once(' ')?;
    let mut builder = Request::builder().method(method).uri(uri);
    for line in lines {
        let (name, value) = line.split_once(':')?;
        builder = builder.header(name.trim(), value.trim());
    }
    let mut request = builder.body(Body::from(body.to_vec())).ok()?;
    // As the socket listener adds it (SO_PEERCRED), for `/v1/self`: this process.
    request
        .extensions_mut()
        .insert(ConnectInfo(PeerCredentials {
            pid: Some(std::process::id()),
            uid: 0,
        }));
    Some(request)
}

fuzz_target!(|data: &[u8]| {
    let Some(request) = request(data) else {
        return;
    };
    let described = format!("{} {}", request.method(), request.uri());
    let harness = harness();
    let response = harness
        .runtime
        .block_on(harness.router.clone().oneshot(request))
        .expect("the router's error type is Infallible");
    let status = response.status();
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    let body = harness
        .runtime
        .block_on(to_bytes(response.into_body(), usize::MAX))
        .expect("a response body");
    assert!(
        !status.is_server_error(),
        "{described} answered {status}: {}",
        String::from_utf8_lossy(&body)
    );
    if status.is_client_error() {
        assert!(json, "{described}: a {status} that is not JSON");
        let value: serde_json::Value = serde_json::from_slice(&body).expect("a JSON error body");
        assert!(value["error"].is_string(), "{described}: {value}");
    }
});
