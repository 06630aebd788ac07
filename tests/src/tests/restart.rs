//! Restarts without loss: the pins a daemon leaves keep the programs tracking and counting
//! while it is down, and the next daemon on the same pin dir reuses them; pins of another
//! layout are recreated; `--unpin-on-exit` and `uninstall` remove everything.
use std::{
    path::Path,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread,
    time::Duration,
};

use collector_common::process::ProcessInfo;
use collector_daemon::ebpf::CounterMaps;

use super::{
    kernel_counters::{TRANSFER, busybox_available, transfer},
    util::{container_id, lookup, root, wait_for},
};
use crate::support::{
    bpf,
    cgroup::TestCgroup,
    clone3::{Clone3Child, Then},
    daemon::{Daemon, PinDir, daemon_bin},
    netns::{NetnsPair, iproute2_available},
    process::spawn_in_cgroup,
    require,
};

/// The always-attached programs, one pinned link each.
const LINKS: usize = 9;

fn pinned_links(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("links")).map_or(0, Iterator::count)
}

fn process_entry(dir: &Path, pid: u32) -> Option<ProcessInfo> {
    let fd = bpf::open_pinned(&dir.join("processes")).expect("open the pinned process map");
    let bytes = bpf::lookup(&fd, &pid.to_ne_bytes(), size_of::<ProcessInfo>()).expect("lookup")?;
    // SAFETY: ProcessInfo is plain integers; the buffer has exactly its size.
    Some(unsafe { bytes.as_ptr().cast::<ProcessInfo>().read_unaligned() })
}

/// The sender cgroup's transmitted bytes, read from the pinned map.
fn tx_bytes(dir: &Path, cgroup_id: u64) -> u64 {
    CounterMaps::open_pinned(dir)
        .net_lookup(cgroup_id)
        .expect("reading the pinned network counters")
        .map_or(0, |t| t.tx_bytes)
}

fn uninstall(dir: &Path) -> std::process::Output {
    Command::new(daemon_bin())
        .args(["uninstall", "--pin-dir"])
        .arg(dir)
        .output()
        .expect("running collector-daemon uninstall")
}

/// Samples `sample` every 20 ms until dropped and asserts it never went down.
struct MonotonicWatch {
    stop: Arc<AtomicBool>,
    taken: Arc<AtomicUsize>,
    thread: Option<thread::JoinHandle<Vec<u64>>>,
}

impl MonotonicWatch {
    fn start(sample: impl Fn() -> u64 + Send + 'static) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let taken = Arc::new(AtomicUsize::new(0));
        let (flag, count) = (Arc::clone(&stop), Arc::clone(&taken));
        let thread = thread::spawn(move || {
            let mut seen = Vec::new();
            while !flag.load(Ordering::SeqCst) {
                seen.push(sample());
                count.fetch_add(1, Ordering::SeqCst);
                thread::sleep(Duration::from_millis(20));
            }
            seen
        });
        Self {
            stop,
            taken,
            thread: Some(thread),
        }
    }

    /// Waits until `n` more samples were taken.
    fn wait_for_samples(&self, n: usize) {
        let target = self.taken.load(Ordering::SeqCst) + n;
        wait_for("more counter samples", Duration::from_secs(10), || {
            (self.taken.load(Ordering::SeqCst) >= target).then_some(())
        });
    }

    /// Stops sampling and returns the samples, asserting they never decreased.
    fn finish(mut self) -> Vec<u64> {
        self.stop.store(true, Ordering::SeqCst);
        let seen = self
            .thread
            .take()
            .expect("joined once")
            .join()
            .expect("the sampler panicked");
        assert!(
            seen.windows(2).all(|w| w[0] <= w[1]),
            "a counter went backwards: {seen:?}"
        );
        seen
    }
}

impl Drop for MonotonicWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

#[test]
fn a_restart_under_load_keeps_counters_and_answers_a_pid_born_while_down() {
    if !root()
        || !require(
            "iproute2 and busybox (network namespaces, nc)",
            iproute2_available() && busybox_available(),
        )
    {
        return;
    }
    let pins = PinDir::new();
    let dir = pins.path().to_str().expect("utf-8 pin dir").to_owned();
    let net = NetnsPair::new();
    let id = container_id("restart");
    let cg = TestCgroup::new(&format!("system.slice/docker-{id}.scope"));
    let receiver = TestCgroup::new("restart/receiver");
    let first = Daemon::start(&["--pin-dir", &dir]);
    transfer(
        (&cg, net.a()),
        (&receiver, net.b()),
        NetnsPair::ADDR_B,
        5101,
    );
    let before = tx_bytes(pins.path(), cg.inode_v2());
    assert!(before >= TRANSFER, "sent {before} bytes before the restart");

    // Load through the restart: processes forked in a loop in the container, and the
    // sender's counter sampled all along.
    let _forks = spawn_in_cgroup(&cg, &["bash", "-c", "while :; do /bin/true; done"]);
    let pin_dir = pins.path().to_owned();
    let cgroup_id = cg.inode_v2();
    let watch = MonotonicWatch::start(move || tx_bytes(&pin_dir, cgroup_id));

    assert!(first.stop().success());
    assert_eq!(
        pinned_links(pins.path()),
        LINKS,
        "the links outlive the daemon"
    );

    // While no daemon runs: a process is born in the container and exits, and more
    // traffic flows. The pinned programs see both.
    let mut child = Clone3Child::spawn(Some(cg.v2_dir()), None, Then::Exit).expect("clone3");
    let pid = child.pid();
    child.wait().expect("waitpid");
    transfer(
        (&cg, net.a()),
        (&receiver, net.b()),
        NetnsPair::ADDR_B,
        5102,
    );
    let live = spawn_in_cgroup(&cg, &["sleep", "60"]);
    let entry = wait_for(
        "the pinned map to see a process born while down",
        Duration::from_secs(5),
        || process_entry(pins.path(), live.pid()),
    );
    assert_eq!(entry.cgroup_v2_id, cg.inode_v2(), "{entry:?}");

    let second = Daemon::start(&["--pin-dir", &dir]);
    let log = second.log();
    assert!(
        log.contains("reusing the pinned maps") && log.contains("same_programs=true"),
        "{log}"
    );
    let answer = lookup(&second, pid);
    assert_eq!(answer["container_id"], id.as_str(), "{answer}");
    assert_eq!(answer["exited"], true, "{answer}");
    let after = tx_bytes(pins.path(), cg.inode_v2());
    assert!(
        after >= before + TRANSFER,
        "the traffic made while down is counted: {before} then {after}"
    );
    // Samples taken after the restart, too.
    watch.wait_for_samples(5);
    let samples = watch.finish();
    eprintln!(
        "tx bytes {before} before, {after} after the restart; {} samples, never down",
        samples.len()
    );
    assert!(second.stop().success());
}

#[test]
fn pins_of_another_layout_are_recreated() {
    if !root() {
        return;
    }
    let pins = PinDir::new();
    let dir = pins.path().to_str().expect("utf-8 pin dir").to_owned();
    let first = Daemon::start(&["--pin-dir", &dir]);
    assert!(first.stop().success());
    let second = Daemon::start(&["--pin-dir", &dir, "--max-processes", "32768"]);
    let log = second.log();
    assert!(
        log.contains("pinned maps do not match this build")
            && log.contains("map PROCESSES: max entries 65536 (this build: 32768)"),
        "{log}"
    );
    let health = second.healthz();
    assert_eq!(health["ebpf"], true, "{health}");
    // The kernel's description of the pinned map (`/proc/self/fdinfo` of a descriptor).
    let map = bpf::open_pinned(&pins.path().join("processes")).expect("open the pinned map");
    let fdinfo = std::fs::read_to_string(format!(
        "/proc/self/fdinfo/{}",
        std::os::fd::AsRawFd::as_raw_fd(&map)
    ))
    .expect("fdinfo");
    assert!(fdinfo.contains("max_entries:\t32768\n"), "{fdinfo}");
    assert_eq!(pinned_links(pins.path()), LINKS);
    // The new programs track into the new map.
    let cg = TestCgroup::new("restart/layout");
    let child = spawn_in_cgroup(&cg, &["sleep", "60"]);
    let entry = wait_for(
        "the recreated map to hold a new process",
        Duration::from_secs(5),
        || process_entry(pins.path(), child.pid()),
    );
    assert_eq!(entry.cgroup_v2_id, cg.inode_v2());
    assert!(second.stop().success());
}

#[test]
fn unpin_on_exit_and_uninstall_remove_everything_and_detach() {
    if !root() {
        return;
    }
    let pins = PinDir::new();
    let dir = pins.path().to_str().expect("utf-8 pin dir").to_owned();
    let daemon = Daemon::start(&["--pin-dir", &dir, "--unpin-on-exit"]);
    assert_eq!(pinned_links(pins.path()), LINKS);
    assert!(daemon.stop().success());
    assert!(!pins.path().exists(), "--unpin-on-exit left pins");

    let daemon = Daemon::start(&["--pin-dir", &dir]);
    let refused = uninstall(pins.path());
    assert_eq!(refused.status.code(), Some(3), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("is running with pin directory"),
        "{refused:?}"
    );
    assert!(daemon.stop().success());
    // Held open across the uninstall: the map lives on, and shows whether the programs
    // still write into it.
    let map = bpf::open_pinned(&pins.path().join("processes")).expect("open the pinned map");
    let cg = TestCgroup::new("restart/uninstall");
    let before = spawn_in_cgroup(&cg, &["sleep", "60"]);
    wait_for(
        "the pinned programs to track while down",
        Duration::from_secs(5),
        || {
            bpf::lookup(&map, &before.pid().to_ne_bytes(), size_of::<ProcessInfo>())
                .expect("lookup")
        },
    );
    let done = uninstall(pins.path());
    assert!(done.status.success(), "{done:?}");
    assert_eq!(
        String::from_utf8_lossy(&done.stdout).trim(),
        format!("removed {LINKS} pinned programs and 7 pinned maps from {dir}, and the directory")
    );
    assert!(!pins.path().exists());
    // The kernel frees a bpffs inode after an RCU grace period and puts the link from a
    // work item: the programs detach shortly after the pins go, not within the unlink.
    let mut born_after = Vec::new();
    wait_for(
        "the programs to detach after uninstall (new processes untracked)",
        Duration::from_secs(10),
        || {
            let child = spawn_in_cgroup(&cg, &["sleep", "60"]);
            let tracked = bpf::lookup(&map, &child.pid().to_ne_bytes(), size_of::<ProcessInfo>())
                .expect("lookup")
                .is_some();
            born_after.push(child);
            (!tracked).then_some(())
        },
    );
    thread::sleep(Duration::from_millis(100));
    let last = spawn_in_cgroup(&cg, &["sleep", "60"]);
    thread::sleep(Duration::from_millis(100));
    assert_eq!(
        bpf::lookup(&map, &last.pid().to_ne_bytes(), size_of::<ProcessInfo>()).expect("lookup"),
        None,
        "a process born after uninstall is tracked: the programs are still attached"
    );
    let again = uninstall(pins.path());
    assert!(again.status.success(), "{again:?}");
}
