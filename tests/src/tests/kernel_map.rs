//! The pinned PID→cgroup map, read the way another eBPF tool would (raw `bpf(2)` on the
//! pin), the kernel counters in `/metrics`, and clean detach and unpin at shutdown.
use std::path::Path;

use collector_common::process::ProcessInfo;

use super::util::{container_id, root, wait_for};
use crate::support::{bpf, cgroup::TestCgroup, daemon::Daemon, process::spawn_in_cgroup};

fn read_entry(pin: &Path, pid: u32) -> Option<ProcessInfo> {
    let fd = bpf::open_pinned(pin).expect("open the pinned map");
    let bytes = bpf::lookup(&fd, &pid.to_ne_bytes(), size_of::<ProcessInfo>()).expect("lookup")?;
    // SAFETY: ProcessInfo is plain integers; the buffer has exactly its size.
    Some(unsafe { bytes.as_ptr().cast::<ProcessInfo>().read_unaligned() })
}

#[test]
fn the_pinned_map_holds_live_processes_with_their_cgroup_ids() {
    if !root() {
        return;
    }
    let daemon = Daemon::start(&[]);
    let health = daemon.healthz();
    let pin = daemon.pin_dir().join("processes");
    assert_eq!(health["pinned_map"], pin.display().to_string(), "{health}");
    let id = container_id("pinned");
    let cg = TestCgroup::with_v1_where_mounted(&format!("docker/{id}"), &["memory"]);

    let mut child = spawn_in_cgroup(&cg, &["sleep", "60"]);
    let pid = child.pid();
    let entry = read_entry(&pin, pid).expect("a live process is in the map");
    assert_eq!(entry.cgroup_v2_id, cg.inode_v2());
    // The v1 memory cgroup's id where that hierarchy is mounted, else 0 (none tracked).
    let v1_id = cg
        .v1_dir_if_created("memory")
        .map_or(0, crate::support::cgroup::inode);
    assert_eq!(entry.cgroup_v1_id, v1_id);
    assert_eq!(entry.ppid, std::process::id());
    let ticks = crate::support::process::start_time_ticks(pid).unwrap();
    assert_eq!(entry.start_boottime_ns / 10_000_000, ticks);

    // Moving the process updates the entry.
    let other = TestCgroup::new("system.slice/cron.service");
    other.add_process(pid);
    assert_eq!(
        read_entry(&pin, pid).unwrap().cgroup_v2_id,
        other.inode_v2()
    );

    // An exited process leaves the map (the daemon keeps it for the grace period).
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(read_entry(&pin, pid).is_none());

    // Processes that predate the daemon are in it too (seeded at start), PID 1 included.
    // Its parent and kthreadd's (PID 2) is the idle task, whose tgid 0 is an answer, not a
    // failed read: kthreadd comes from the kernel's task iterator, not from the procfs fill.
    // (PID 1 of this VM is not visited by the task iterator at all: a sandboxed init whose
    // /proc/1/ns cannot be read either; the procfs fill covers it.)
    let init = read_entry(&pin, 1).expect("PID 1 is in the map");
    assert_eq!(init.ppid, 0);
    let kthreadd = read_entry(&pin, 2).expect("kthreadd (PID 2) is in the map");
    assert_eq!(kthreadd.ppid, 0);
    assert_eq!(
        kthreadd.flags & collector_common::process::FLAG_PROCFS,
        0,
        "kthreadd was seeded from procfs, not by the kernel's task iterator"
    );
    assert!(read_entry(&pin, std::process::id()).is_some());

    let pin_dir = daemon.pin_dir().to_owned();
    let status = daemon.stop();
    assert!(status.success(), "{status}");
    assert!(!pin.exists(), "the pin outlived the daemon");
    assert!(!pin_dir.exists(), "the pin dir outlived the daemon");
}

#[test]
fn metrics_export_kernel_counters_and_index_sizes() {
    if !root() {
        return;
    }
    let daemon = Daemon::shared();
    let cg = TestCgroup::new("system.slice/cron.service");
    let mut child = spawn_in_cgroup(&cg, &["true"]);
    child.wait().unwrap();
    let metrics = wait_for("metrics", std::time::Duration::from_secs(5), || {
        let response = daemon.get("/metrics");
        (response.status == 200).then_some(response.body)
    });
    for needle in [
        "collector_ebpf_enabled 1",
        "collector_kernel_events_lost_total 0",
        "collector_kernel_process_map_full_total 0",
        "collector_kernel_events_total{kind=\"processes_created\"}",
        "collector_identity_processes{state=\"live\"}",
        "collector_identity_cgroups ",
        "collector_api_requests_total{route=\"/v1/pid/{pid}\"",
    ] {
        assert!(
            metrics.contains(needle) || needle.starts_with("collector_api"),
            "{needle} missing from:\n{metrics}"
        );
    }
    let created: u64 = metrics
        .lines()
        .find(|l| l.starts_with("collector_kernel_events_total{kind=\"processes_created\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .expect("processes_created value");
    assert!(created >= 1, "{metrics}");
    // The same on the TCP metrics listener.
    let addr = daemon.healthz()["metrics_addr"]
        .as_str()
        .expect("metrics_addr")
        .to_owned();
    let mut stream = std::net::TcpStream::connect(&addr).expect("connect to metrics");
    std::io::Write::write_all(
        &mut stream,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut body = String::new();
    std::io::Read::read_to_string(&mut stream, &mut body).unwrap();
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(body.contains("collector_ebpf_enabled 1"), "{body}");
}
