//! `collector-daemon run`: discover cgroups, load the kernel programs (or fall back to
//! procfs and say why), build the identity indexes, and serve the socket API and metrics
//! until SIGINT or SIGTERM.
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::Context as _;
use tokio::io::{Interest, unix::AsyncFd};

use crate::{
    api::{
        routes::{self, ApiState},
        server::{self, PeerCredentials},
    },
    cgroupfs::CgroupLayout,
    collectors::{
        ApiSocket, RuntimeApis, StatsCollectors, containerd, crio, docker, ecsfargate, garden,
        kubelet,
        metadata::{Source, SourceState},
        podman_sockets::{self, PodmanSockets},
        remote::{self, PollTiming, RemoteSource},
    },
    ebpf::{KernelTracker, LoadOptions, loader},
    identity::{Identity, IdentityOptions},
    metrics::Metrics,
};

/// Settings of `run`.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// API socket path.
    pub socket: PathBuf,
    /// Group owning the socket (name or gid).
    pub socket_group: Option<String>,
    /// TCP address for `/metrics` and `/healthz`; `None` to not listen.
    pub metrics_addr: Option<String>,
    /// How long exited processes stay resolvable.
    pub exited_grace: Duration,
    /// Serve from procfs only.
    pub no_ebpf: bool,
    /// Where to pin the persistent maps and the programs' links; `None` to not pin.
    pub pin_dir: Option<PathBuf>,
    /// Remove the pins at exit instead of leaving them for the next start.
    pub unpin_on_exit: bool,
    /// Size of the kernel `PROCESSES` map.
    pub max_processes: u32,
    /// Size of the event ring buffer in bytes.
    pub ring_buffer_bytes: u32,
    /// Capacity of the kernel's per-cgroup network counters.
    pub net_counter_entries: u32,
    /// Capacity of the kernel's block IO counters (owner × disk).
    pub io_counter_entries: u32,
    /// Cgroups one hierarchy's kernel walk records.
    pub cgroup_values_entries: u32,
    /// cgroup stats files kept open between reads.
    pub cgroup_file_cache: usize,
    /// procfs mount.
    pub proc_root: PathBuf,
    /// Docker Engine API socket; `None` to not ask Docker.
    pub docker_socket: Option<PathBuf>,
    /// containerd socket; `None` to not ask containerd.
    pub containerd_socket: Option<PathBuf>,
    /// Podman's libpod API sockets (named ones, and whether rootless ones are looked for).
    pub podman_sockets: PodmanSockets,
    /// CRI runtime service socket (containerd's or CRI-O's); `None` to not ask CRI.
    pub cri_socket: Option<PathBuf>,
    /// CRI-O's HTTP info endpoint socket; `None` to not ask it.
    pub crio_socket: Option<PathBuf>,
    /// How long one request to a runtime API may take before it counts as down.
    pub runtime_timeout: Duration,
    /// `--ecs-metadata-uri`: a URL, "auto" or "none".
    pub ecs_metadata_uri: String,
    /// `--garden-socket`: a socket path, an http:// URL or "none".
    pub garden_socket: String,
    /// `--kubelet-url`: a URL, "auto" or "none".
    pub kubelet_url: String,
    /// The kubelet's bearer token file; `None` to send none.
    pub kubelet_token_file: Option<PathBuf>,
    /// The CA the kubelet's HTTPS certificate is checked against; `None`: the system's roots.
    pub kubelet_ca_file: Option<PathBuf>,
    /// `--kubelet-tls-verify`: false takes any kubelet certificate.
    pub kubelet_tls_verify: bool,
    /// Between two polls of ECS and the kubelet.
    pub runtime_poll_interval: Duration,
    /// Runtime labels exported on container metrics and in API answers.
    pub container_labels: Vec<String>,
}

/// How often pending kernel events are applied when no lookup or wakeup did it.
const DRAIN_INTERVAL: Duration = Duration::from_millis(100);
/// How often upkeep runs (GC of exited processes, lost-event repair, cgroup re-walks).
const UPKEEP_INTERVAL: Duration = Duration::from_secs(1);

impl RunOptions {
    /// The runtime APIs the stats collectors ask, each with the runtime timeout.
    fn runtime_apis(&self) -> RuntimeApis {
        let api = |socket: &Option<PathBuf>| {
            socket.clone().map(|socket| ApiSocket {
                socket,
                timeout: self.runtime_timeout,
            })
        };
        RuntimeApis {
            podman: (!self.podman_sockets.is_off()).then_some(self.runtime_timeout),
            cri: api(&self.cri_socket),
            containerd: api(&self.containerd_socket),
        }
    }
}

/// Runs the daemon until a signal.
pub async fn run(options: RunOptions) -> anyhow::Result<()> {
    raise_open_files_limit();
    let layout = CgroupLayout::discover(&options.proc_root).context("discovering cgroup mounts")?;
    tracing::info!(mode = ?layout.mode, hierarchies = layout.hierarchies.len(), "cgroup layout");

    let (kernel, logger, disabled_reason) = load_kernel(&options, &layout);

    let identity = Arc::new(Identity::start(
        layout,
        kernel,
        IdentityOptions {
            proc_root: options.proc_root.clone(),
            exited_grace: options.exited_grace,
        },
    ));
    let collectors = Arc::new(StatsCollectors::start(
        &identity,
        &options.proc_root,
        options.cgroup_file_cache,
        options.container_labels.clone(),
        options.runtime_apis(),
    ));
    let metrics = Arc::new(Metrics::new(Arc::clone(&identity), Arc::clone(&collectors)));
    let state = Arc::new(ApiState {
        identity: Arc::clone(&identity),
        ebpf_disabled_reason: disabled_reason,
        metrics,
        metrics_addr: std::sync::OnceLock::new(),
        collectors: Arc::clone(&collectors),
        stats_slots: routes::stats_slots(),
    });

    let mut tasks = tokio::task::JoinSet::new();
    spawn_background(&mut tasks, &identity, &collectors, logger)?;
    spawn_runtime_watchers(&mut tasks, &options, &collectors);
    spawn_remote_pollers(&mut tasks, &options, collectors.remote());

    // Start-up's transient memory (BTF tables, the object, seeding) is free by now.
    crate::heap::release_free();
    let (listener, socket_file) =
        server::bind_socket(&options.socket, options.socket_group.as_deref())
            .context("binding the API socket")?;
    tracing::info!(socket = %options.socket.display(), "serving the API");
    if let Some(addr) = &options.metrics_addr {
        let listener = server::bind_metrics(addr).await?;
        let local: SocketAddr = listener.local_addr().context("metrics listener address")?;
        tracing::info!(addr = %local, "serving /metrics");
        let _ = state.metrics_addr.set(local.to_string());
        let router = routes::metrics_router(Arc::clone(&state));
        tasks.spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::error!(error = %e, "metrics listener failed");
            }
        });
    }

    let app = routes::router(state).into_make_service_with_connect_info::<PeerCredentials>();
    let serve = axum::serve(listener, app).with_graceful_shutdown(shutdown_signal());
    let result = serve.await.context("serving the API socket");
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    drop(socket_file);
    // By default the pins stay: the pinned programs keep tracking processes and counting
    // into the pinned maps, and the next start reuses them. `--unpin-on-exit` removes them;
    // the programs then detach as the process exits and its descriptors close.
    if let Some(kernel) = identity.kernel() {
        if options.unpin_on_exit {
            kernel.unpin();
        } else if let Some(pin) = kernel.pin_path() {
            tracing::info!(
                dir = ?pin.parent(),
                "pins left in place: the programs keep tracking until the next start (collector-daemon uninstall removes them)"
            );
        }
    }
    tracing::info!("stopped");
    result
}

/// The kernel programs, their aya-log reader, or why they are off.
fn load_kernel(
    options: &RunOptions,
    layout: &CgroupLayout,
) -> (Option<KernelTracker>, Option<KernelLogger>, Option<String>) {
    if options.no_ebpf {
        tracing::warn!("eBPF disabled by --no-ebpf: answers come from procfs");
        return (None, None, Some("disabled by --no-ebpf".to_owned()));
    }
    let load_options = LoadOptions {
        max_processes: options.max_processes,
        ring_buffer_bytes: options.ring_buffer_bytes,
        pin_dir: options.pin_dir.clone(),
        tracked_v1_controller: tracked_v1_controller(layout),
        cgroup_v2_root: layout.v2().map(|h| h.mount_point.clone()),
        net_counter_entries: options.net_counter_entries,
        io_counter_entries: options.io_counter_entries,
        cgroup_walk_mounts: cgroup_walk_mounts(layout),
        cgroup_walk_v2: cgroup_walk_v2(layout),
        cgroup_values_entries: options.cgroup_values_entries,
    };
    match loader::load(&load_options) {
        Ok(loaded) => {
            let (kernel, logger) = KernelTracker::new(loaded);
            tracing::info!(
                pin_dir = ?options.pin_dir,
                max_processes = options.max_processes,
                "kernel programs attached"
            );
            (Some(kernel), logger, None)
        }
        Err(e) => {
            let reason = e.to_string();
            tracing::warn!(error = %reason, "eBPF unavailable: answers come from procfs");
            (None, None, Some(reason))
        }
    }
}

/// The mount points of the v1 hierarchies with `memory`, `cpu`, `pids` or `cpuset`, each once
/// (a co-mounted `cpu,cpuacct` is one hierarchy).
fn cgroup_walk_mounts(layout: &CgroupLayout) -> Vec<PathBuf> {
    let mut mounts: Vec<PathBuf> = Vec::new();
    for controller in ["memory", "cpu", "pids", "cpuset"] {
        if let Some(h) = layout.v1_with_controller(controller)
            && !mounts.contains(&h.mount_point)
        {
            mounts.push(h.mount_point.clone());
        }
    }
    mounts
}

/// The v2 hierarchy's mount point when its root has `memory`, `cpu`, `pids` or `cpuset` in
/// `cgroup.controllers` (a v2 or v2-mostly host). A hybrid host's v2 has none (they are on
/// v1), and walking it would only cost.
fn cgroup_walk_v2(layout: &CgroupLayout) -> Option<PathBuf> {
    let mount = &layout.v2()?.mount_point;
    let controllers = std::fs::read_to_string(mount.join("cgroup.controllers")).ok()?;
    controllers
        .split_ascii_whitespace()
        .any(|c| ["memory", "cpu", "pids", "cpuset"].contains(&c))
        .then(|| mount.clone())
}

/// aya-log's reader of the kernel programs' log records.
type KernelLogger = aya_log::EbpfLogger<&'static dyn log::Log>;

/// Background work: applying kernel events as they arrive, forwarding kernel log records,
/// and upkeep once a second.
fn spawn_background(
    tasks: &mut tokio::task::JoinSet<()>,
    identity: &Arc<Identity>,
    collectors: &Arc<StatsCollectors>,
    logger: Option<KernelLogger>,
) -> anyhow::Result<()> {
    if let Some(kernel) = identity.kernel() {
        let fd = kernel
            .events_fd()
            .context("duplicating the ring buffer descriptor")?;
        // SAFETY: an OwnedFd is open until dropped and always returns the same descriptor.
        let events = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
            .map_err(|e| e.into_parts().1)
            .context("registering the ring buffer with epoll")?;
        let identity = Arc::clone(identity);
        tasks.spawn(async move {
            // The kernel wakes us only when the buffer fills up (a wakeup per event would
            // cost more than the event itself); drain on a timer too, so exits are stamped
            // close to when they happened and memory stays bounded. Lookups drain first.
            let mut tick = tokio::time::interval(DRAIN_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    ready = events.readable() => {
                        let Ok(mut guard) = ready else { break };
                        // Clear first: an event committed while draining re-arms readiness.
                        guard.clear_ready();
                    }
                    _ = tick.tick() => {}
                }
                identity.sync();
            }
        });
    }
    if let Some(logger) = logger {
        // SAFETY: the logger owns its ring buffer's descriptor until dropped, and as_raw_fd
        // always returns that descriptor.
        let mut logger = unsafe { AsyncFd::register_with_interest(logger, Interest::READABLE) }
            .map_err(|e| e.into_parts().1)
            .context("registering the aya-log ring buffer with epoll")?;
        tasks.spawn(async move {
            loop {
                let Ok(mut guard) = logger.readable_mut().await else {
                    break;
                };
                guard.clear_ready();
                guard.get_inner_mut().flush();
            }
        });
    }
    let identity = Arc::clone(identity);
    let collectors = Arc::clone(collectors);
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let identity = Arc::clone(&identity);
            let collectors = Arc::clone(&collectors);
            let _ = tokio::task::spawn_blocking(move || {
                identity.upkeep();
                collectors.upkeep();
            })
            .await;
        }
    });
    Ok(())
}

/// The runtime API watchers that keep container names, images and labels current; a
/// runtime turned off by its flag is marked disabled.
fn spawn_runtime_watchers(
    tasks: &mut tokio::task::JoinSet<()>,
    options: &RunOptions,
    collectors: &Arc<StatsCollectors>,
) {
    spawn_crio_watcher(tasks, options, collectors);
    let store = collectors.metadata();
    match &options.docker_socket {
        Some(socket) => {
            tasks.spawn(docker::watch(
                Arc::clone(store),
                socket.clone(),
                options.runtime_timeout,
            ));
        }
        None => {
            store.set_state(Source::Docker, SourceState::Disabled);
        }
    }
    match &options.containerd_socket {
        Some(socket) => {
            tasks.spawn(containerd::watch(
                Arc::clone(store),
                socket.clone(),
                options.runtime_timeout,
            ));
        }
        None => {
            store.set_state(Source::Containerd, SourceState::Disabled);
        }
    }
    if options.podman_sockets.is_off() {
        store.set_state(Source::Podman, SourceState::Disabled);
        store.set_state(Source::PodmanRootless, SourceState::Disabled);
    } else {
        tasks.spawn(podman_sockets::watch_all(
            Arc::clone(collectors.podman()),
            options.podman_sockets.clone(),
            options.runtime_timeout,
        ));
    }
}

/// CRI-O's info endpoint, for the CRI-O containers no other runtime API describes.
fn spawn_crio_watcher(
    tasks: &mut tokio::task::JoinSet<()>,
    options: &RunOptions,
    collectors: &Arc<StatsCollectors>,
) {
    let store = collectors.metadata();
    let Some(socket) = &options.crio_socket else {
        store.set_state(Source::CriO, SourceState::Disabled);
        return;
    };
    let listing = Arc::clone(collectors);
    tasks.spawn(crio::watch(
        Arc::clone(store),
        crio::CrioClient::new(socket.clone(), options.runtime_timeout),
        Arc::new(move || listing.container_ids(crate::provider::Runtime::CriO)),
    ));
}

/// The pollers of the runtimes without an event stream; one that is off or absent is
/// marked so (its collector then fails for good at once).
fn spawn_remote_pollers(
    tasks: &mut tokio::task::JoinSet<()>,
    options: &RunOptions,
    remote: &crate::collectors::RemoteSources,
) {
    let timing = PollTiming {
        interval: options.runtime_poll_interval,
        timeout: options.runtime_timeout,
    };
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    match ecsfargate::endpoint(&options.ecs_metadata_uri, env(ecsfargate::URI_VARIABLE)) {
        Ok(endpoint) => {
            tasks.spawn(ecsfargate::watch(
                Arc::clone(&remote.ecsfargate),
                endpoint,
                timing,
            ));
        }
        Err(state) => mark_off(&remote.ecsfargate, state),
    }
    match garden::endpoint(&options.garden_socket) {
        Ok(endpoint) => {
            tasks.spawn(garden::watch(Arc::clone(&remote.garden), endpoint, timing));
        }
        Err(state) => mark_off(&remote.garden, state),
    }
    let token_file = options.kubelet_token_file.clone();
    let token_present = token_file.as_deref().is_some_and(Path::exists);
    let trust = kubelet::tls_trust(
        options.kubelet_tls_verify,
        options.kubelet_ca_file.as_deref(),
    );
    let kubelet = kubelet::endpoint(&options.kubelet_url, env("NODE_NAME"), token_present)
        .and_then(|endpoint| {
            let tls = kubelet::tls_config(&endpoint, &trust)?;
            Ok(kubelet::KubeletAccess {
                endpoint,
                token_file,
                tls,
            })
        });
    match kubelet {
        Ok(access) => {
            if access.endpoint.is_https() && trust == remote::TlsTrust::Unverified {
                tracing::warn!(
                    endpoint = %access.endpoint,
                    "the kubelet's certificate is not checked (--kubelet-tls-verify=false)"
                );
            }
            tasks.spawn(kubelet::watch(Arc::clone(&remote.kubelet), access, timing));
        }
        Err(state) => mark_off(&remote.kubelet, state),
    }
}

fn mark_off(source: &RemoteSource, state: SourceState) {
    if let SourceState::Absent { reason } = &state {
        tracing::info!(runtime = source.source.as_str(), %reason, "runtime not on this node");
    }
    source.set_state(state);
}

/// Raises `RLIMIT_NOFILE`: the cgroupfs reader keeps a dozen descriptors per container open
/// (re-reading with `pread` costs 2.5-11x less than opening afresh) and caps itself below
/// the soft limit, which is often only 1,024. As root (`CAP_SYS_RESOURCE`) the hard limit
/// may go up to `fs.nr_open`; 65,536 is plenty; else the soft limit goes up to the hard one.
fn raise_open_files_limit() {
    const WANTED: libc::rlim_t = 65_536;
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls with valid pointers.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) != 0 || limit.rlim_cur >= WANTED {
            return;
        }
        let both = WANTED.max(limit.rlim_max);
        let raised = libc::rlimit {
            rlim_cur: both,
            rlim_max: both,
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raw const raised) == 0 {
            return;
        }
        let to_hard = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raw const to_hard) != 0 {
            tracing::debug!(
                error = %std::io::Error::last_os_error(),
                "could not raise RLIMIT_NOFILE"
            );
        }
    }
}

/// The v1 controller whose hierarchy the kernel tracks per process.
pub fn tracked_v1_controller(layout: &CgroupLayout) -> Option<String> {
    let hierarchy = layout.tracked_v1()?;
    match &hierarchy.kind {
        crate::cgroupfs::HierarchyKind::V1 { controllers, .. } => {
            if controllers.iter().any(|c| c == "memory") {
                Some("memory".to_owned())
            } else {
                controllers.first().cloned()
            }
        }
        crate::cgroupfs::HierarchyKind::V2 => None,
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop the daemon with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
}
