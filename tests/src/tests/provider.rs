//! The metrics provider with its real collectors, built in this process over freshly loaded
//! kernel programs: the meta collector's identity collector answers from the kernel index,
//! and from procfs for what the index does not know (thread ids); the per-runtime chains go
//! past a collector that fails (network counters not attached) to the next one; answers say
//! which collector gave them.
use std::{
    path::Path,
    process::{Command, Stdio},
    sync::Arc,
    time::Duration,
};

use collector_daemon::{
    cgroupfs::{CgroupLayout, files::DEFAULT_MAX_OPEN},
    collectors::{RuntimeApis, StatsCollectors},
    daemon::tracked_v1_controller,
    ebpf::{KernelTracker, LoadOptions, loader},
    identity::{Identity, IdentityOptions, LookupError, Source},
    provider::{CollectorError, Flavor, Runtime, RuntimeMetadata},
};

use super::util::{container_id, root, wait_for};
use crate::support::{cgroup::TestCgroup, daemon::daemon_bin, process::spawn_command_in_cgroup};

#[test]
fn the_provider_goes_past_collectors_that_do_not_know_or_fail() {
    if !root() {
        return;
    }
    let proc_root = Path::new("/proc");
    let layout = CgroupLayout::discover(proc_root).expect("cgroup mounts");
    // No cgroup-v2 root to attach the network counters to: the eBPF collector's network
    // capability fails (saying why), while its IO capability works.
    let loaded = loader::load(&LoadOptions {
        max_processes: 65_536,
        ring_buffer_bytes: 1 << 20,
        pin_dir: None,
        tracked_v1_controller: tracked_v1_controller(&layout),
        cgroup_v2_root: None,
        net_counter_entries: 1024,
        io_counter_entries: 1024,
        cgroup_walk_mounts: Vec::new(),
        cgroup_walk_v2: None,
        cgroup_values_entries: 1024,
    })
    .expect("loading the kernel programs");
    let (kernel, _logger) = KernelTracker::new(loaded);
    let identity = Arc::new(Identity::start(
        layout,
        Some(kernel),
        IdentityOptions {
            proc_root: proc_root.to_owned(),
            exited_grace: Duration::from_mins(1),
        },
    ));
    let collectors = StatsCollectors::start(
        &identity,
        proc_root,
        DEFAULT_MAX_OPEN,
        Vec::new(),
        RuntimeApis::default(),
    );
    let provider = collectors.provider();

    // A multi-threaded process in a Docker-shaped cgroup: the daemon binary itself, serving
    // from procfs on a socket of its own (its tokio workers are threads).
    let id = container_id("provider");
    let cg = TestCgroup::with_v1(&format!("docker/{id}"), &["memory"]);
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(daemon_bin());
    cmd.args([
        "run",
        "--no-ebpf",
        "--no-pin",
        "--metrics-addr",
        "none",
        "--socket",
    ])
    .arg(dir.path().join("s.sock"))
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let child = spawn_command_in_cgroup(&cg, cmd);
    let pid = child.pid();
    let tid = wait_for("a second thread", Duration::from_secs(20), || {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .ok()?
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .find(|&t| t != pid)
    });

    let meta = provider.meta();
    // The kernel index knows the process.
    let answer = meta
        .process(pid, Duration::ZERO)
        .unwrap()
        .expect("the process");
    assert_eq!(
        (
            answer.value.container.as_ref().map(|c| c.id.as_str()),
            answer.source,
            answer.value.source
        ),
        (Some(id.as_str()), "identity", Source::Ebpf)
    );
    let answer = meta
        .container_id_for_pid(pid, Duration::ZERO)
        .unwrap()
        .expect("the process's container");
    assert_eq!(
        (answer.value.as_str(), answer.source),
        (id.as_str(), "identity")
    );
    // It does not know thread ids: procfs answers, through the same collector.
    let answers = meta.processes(&[pid, tid], Duration::ZERO);
    let thread = answers[1].as_ref().unwrap().as_ref().expect("the thread");
    assert_eq!(
        (
            thread.value.container.as_ref().map(|c| c.id.as_str()),
            thread.source,
            thread.value.source
        ),
        (Some(id.as_str()), "identity", Source::Procfs)
    );
    // Nobody knows a PID that does not exist: the identity service's error is the answer.
    let unknown = meta.process(4_194_000, Duration::ZERO).unwrap_err();
    assert_eq!(unknown.collector, "identity");
    assert!(
        matches!(&unknown.error, CollectorError::Lookup(e)
            if matches!(**e, LookupError::PidNotFound { .. })),
        "{unknown}"
    );

    // Network: the eBPF collector fails (no counters attached), the system collector reads
    // the process's namespace (the host's here). IO still comes from the kernel counters.
    let docker = provider
        .collector(RuntimeMetadata::new(Runtime::Docker, Flavor::Default))
        .expect("collectors serve docker");
    let network = docker
        .network("", &id, Duration::ZERO)
        .unwrap()
        .expect("network stats");
    assert_eq!(network.source, "system");
    assert_eq!(network.value.using_host_network, Some(true));
    assert!(network.value.interfaces.is_some_and(|i| !i.is_empty()));
    let io = docker
        .io("", &id, Duration::ZERO)
        .unwrap()
        .expect("io stats");
    assert_eq!(io.source, "ebpf");
    let full = docker
        .full_stats("", &id, Duration::ZERO)
        .unwrap()
        .expect("full stats");
    assert_eq!(full.sources["network"], "system", "{:?}", full.sources);
    assert_eq!(full.sources["io"], "ebpf", "{:?}", full.sources);
    assert_eq!(full.sources["cpu"], "system", "{:?}", full.sources);
    drop(child);
}
