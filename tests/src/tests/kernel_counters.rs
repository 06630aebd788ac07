//! The kernel's usage counters, read from their pins as another tool would: network bytes
//! and packets per cgroup-v2 id (`net_counters`, `cgroup_skb` on the v2 root) and block IO
//! per owning cgroup and disk (`io_counters`, `block_bio_queue`). Each test makes its own
//! cgroups, so it knows exactly what they did: a known number of bytes over TCP between two
//! network namespaces joined by a veth pair, or `dd` of 64 MiB to a file on a real disk.
use std::{
    fs::{self, File},
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use collector_common::usage::{IoMapKey, IoMapValue, NetMapValue, make_dev};
use collector_daemon::ebpf::{CounterMaps, IoKey};

use super::util::{metric, root, wait_for};
use crate::support::{
    bpf,
    cgroup::{TestCgroup, v1_mount},
    daemon::Daemon,
    netns::{NetnsPair, iproute2_available, is_listening},
    process::{ChildGuard, spawn_command_in_cgroup},
    require,
};

const MIB: u64 = 1 << 20;

/// The shared daemon, with both counters attached (asserted from `/healthz`).
fn daemon_with_counters() -> &'static Daemon {
    let daemon = Daemon::shared();
    let health = daemon.healthz();
    assert_eq!(health["ebpf"], true, "{health}");
    assert!(
        health["counters_unavailable"].is_null(),
        "counters should be attached on this kernel: {health}"
    );
    daemon
}

/// Reads a per-CPU value of `N` u64 fields and sums it over CPUs.
fn sum_per_cpu<const N: usize>(pin: &Path, key: &[u8]) -> Option<[u64; N]> {
    let fd = bpf::open_pinned(pin).unwrap_or_else(|e| panic!("open {}: {e}", pin.display()));
    let per_cpu = bpf::lookup_per_cpu(&fd, key, N * 8).expect("per-CPU lookup")?;
    let mut sum = [0u64; N];
    for value in per_cpu {
        for (field, bytes) in sum.iter_mut().zip(value.chunks_exact(8)) {
            *field += u64::from_ne_bytes(bytes.try_into().expect("8 bytes"));
        }
    }
    Some(sum)
}

pub(super) fn net_entry(daemon: &Daemon, cgroup_id: u64) -> Option<NetMapValue> {
    let pin = daemon.pin_dir().join("net_counters");
    sum_per_cpu::<4>(&pin, &cgroup_id.to_ne_bytes()).map(
        |[rx_bytes, rx_packets, tx_bytes, tx_packets]| NetMapValue {
            rx_bytes,
            rx_packets,
            tx_bytes,
            tx_packets,
        },
    )
}

fn io_entry(daemon: &Daemon, key: IoMapKey) -> Option<IoMapValue> {
    let pin = daemon.pin_dir().join("io_counters");
    let mut raw = Vec::with_capacity(16);
    raw.extend_from_slice(&key.cgroup_id.to_ne_bytes());
    raw.extend_from_slice(&key.hierarchy_id.to_ne_bytes());
    raw.extend_from_slice(&key.dev.to_ne_bytes());
    sum_per_cpu::<4>(&pin, &raw).map(
        |[read_bytes, write_bytes, read_ops, write_ops]| IoMapValue {
            read_bytes,
            write_bytes,
            read_ops,
            write_ops,
        },
    )
}

pub(super) fn busybox_available() -> bool {
    Command::new("busybox")
        .arg("true")
        .status()
        .is_ok_and(|s| s.success())
}

/// Waits for `child` to exit within `timeout` and asserts it succeeded.
fn wait_success(child: &mut ChildGuard, what: &str, timeout: Duration) {
    let status = wait_for(what, timeout, || child.try_wait().expect("try_wait"));
    assert!(status.success(), "{what}: {status}");
}

/// Transmitted bytes of `dev` in the network namespace of `pid` (`/proc/<pid>/net/dev`).
fn dev_tx_bytes(pid: u32, dev: &str) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/net/dev")).ok()?;
    text.lines().find_map(|line| {
        let (name, fields) = line.split_once(':')?;
        (name.trim() == dev).then(|| fields.split_whitespace().nth(8)?.parse().ok())?
    })
}

/// Bytes each TCP test transfer carries.
pub(super) const TRANSFER: u64 = 8 * MIB;

/// Sends [`TRANSFER`] bytes over TCP from a process in `sender_cg` and network namespace
/// `sender_ns` to one listening on `port` in `receiver_cg` and `receiver_ns`, reached at
/// `addr`; returns when both have exited, asserting the receiver got every byte.
pub(super) fn transfer(
    sender: (&TestCgroup, &str),
    receiver: (&TestCgroup, &str),
    addr: &str,
    port: u16,
) {
    let sink = tempfile::NamedTempFile::new().expect("temp file");
    let mut listen = NetnsPair::command(
        receiver.1,
        &["busybox", "nc", "-l", "-p", &port.to_string()],
    );
    listen
        .stdin(Stdio::null())
        .stdout(sink.reopen().expect("reopen"));
    let mut listener = spawn_command_in_cgroup(receiver.0, listen);
    wait_for("the receiver to listen", Duration::from_secs(10), || {
        is_listening(listener.pid(), port).then_some(())
    });
    // bash's /dev/tcp: the socket is made (and owned) by bash, in the sender's cgroup.
    let script = format!("head -c {TRANSFER} /dev/zero > /dev/tcp/{addr}/{port}");
    let mut writer = spawn_command_in_cgroup(
        sender.0,
        NetnsPair::command(sender.1, &["bash", "-c", &script]),
    );
    wait_success(&mut writer, "the sender", Duration::from_secs(30));
    // nc exits at the sender's FIN, after writing everything out.
    wait_success(&mut listener, "the receiver", Duration::from_secs(30));
    assert_eq!(fs::metadata(sink.path()).expect("sink").len(), TRANSFER);
}

#[test]
fn tcp_over_a_veth_counts_for_sender_and_receiver_and_loopback_is_not_counted() {
    if !root()
        || !require(
            "iproute2 and busybox (network namespaces, nc)",
            iproute2_available() && busybox_available(),
        )
    {
        return;
    }
    let daemon = daemon_with_counters();
    // Namespaces first: dropped last, after the processes inside are killed.
    let net = NetnsPair::new();
    let sender_cg = TestCgroup::new("net/sender");
    let receiver_cg = TestCgroup::new("net/receiver");
    let loopback_cg = TestCgroup::new("net/loopback");

    transfer(
        (&sender_cg, net.a()),
        (&receiver_cg, net.b()),
        NetnsPair::ADDR_B,
        5001,
    );
    let tx = net_entry(daemon, sender_cg.inode_v2()).expect("the sender's cgroup has an entry");
    let rx = net_entry(daemon, receiver_cg.inode_v2()).expect("the receiver's cgroup has an entry");
    eprintln!("sent {TRANSFER} bytes: sender {tx:?}, receiver {rx:?}");
    // Bytes are IP packets (headers included, once per GSO packet): at least the payload,
    // and within 5% plus the handshake and teardown above it.
    let ceiling = TRANSFER + TRANSFER / 20 + 16 * 1024;
    assert!(
        (TRANSFER..=ceiling).contains(&tx.tx_bytes),
        "sender tx_bytes {} not in [{TRANSFER}, {ceiling}]",
        tx.tx_bytes
    );
    assert!(
        (TRANSFER..=ceiling).contains(&rx.rx_bytes),
        "receiver rx_bytes {} not in [{TRANSFER}, {ceiling}]",
        rx.rx_bytes
    );
    // Wire packets: at most one MSS (1448 bytes on a 1500-byte MTU with timestamps) each.
    let min_segments = TRANSFER / 1448;
    assert!(tx.tx_packets >= min_segments, "{tx:?}");
    assert!(rx.rx_packets >= min_segments, "{rx:?}");
    // The other directions carry only ACKs and the handshake.
    assert!(tx.rx_bytes < TRANSFER / 20 && tx.rx_packets > 0, "{tx:?}");
    assert!(rx.tx_bytes < TRANSFER / 20 && rx.tx_packets > 0, "{rx:?}");
    // Cross-check with the kernel's device counter in the sender's namespace, where the
    // sender's is the only socket: the device adds 14-byte Ethernet headers (and IPv6
    // neighbour discovery of its own), so it counts a little more, never less.
    let probe = ChildGuard::new(
        NetnsPair::command(net.a(), &["sleep", "30"])
            .spawn()
            .expect("spawning a probe in the namespace"),
    );
    let veth_tx = wait_for(
        "veth0 in the probe's namespace",
        Duration::from_secs(5),
        || dev_tx_bytes(probe.pid(), "veth0"),
    );
    eprintln!("veth0 in the sender's namespace sent {veth_tx} bytes (with L2 headers)");
    assert!(tx.tx_bytes <= veth_tx, "{tx:?} vs veth {veth_tx}");
    drop(probe);

    // The daemon's reader API, on the same pins, sums the same per-CPU values (a closing
    // packet may still land in between: allow a little more, never less).
    let api = CounterMaps::open_pinned(daemon.pin_dir());
    assert_eq!(api.counters_unavailable(), None);
    let api_tx = api
        .net_lookup(sender_cg.inode_v2())
        .expect("net_lookup")
        .expect("the sender's entry");
    assert!(
        api_tx.tx_bytes >= tx.tx_bytes && api_tx.tx_bytes - tx.tx_bytes < 4096,
        "{api_tx:?} vs {tx:?}"
    );
    let snapshot = api.net_snapshot().expect("net_snapshot");
    let api_rx = snapshot[&receiver_cg.inode_v2()];
    assert!(
        api_rx.rx_bytes >= rx.rx_bytes && api_rx.rx_bytes - rx.rx_bytes < 4096,
        "{api_rx:?} vs {rx:?}"
    );
    assert_eq!(
        api.net_lookup(loopback_cg.inode_v2()).expect("net_lookup"),
        None
    );
    // Freeing a removed cgroup's entry (only a straggling packet could bring it back).
    api.remove_net(sender_cg.inode_v2());
    let freed = net_entry(daemon, sender_cg.inode_v2());
    assert!(freed.is_none_or(|v| v.tx_bytes < 4096), "{freed:?}");

    // Loopback: the same transfer inside one namespace over 127.0.0.1 is not counted.
    transfer(
        (&loopback_cg, net.a()),
        (&loopback_cg, net.a()),
        "127.0.0.1",
        5002,
    );
    let loopback = net_entry(daemon, loopback_cg.inode_v2());
    assert!(
        loopback.is_none_or(|v| v == NetMapValue::default()),
        "loopback traffic was counted: {loopback:?}"
    );
}

/// A directory on a real block device (not tmpfs or overlay) for test files, and the whole
/// disk under it as the kernel names it.
struct Disk {
    dir: PathBuf,
    major: u32,
    minor: u32,
}

/// The first of `COLLECTOR_TEST_DISK_DIR` (the VM lane's disk), `/var/tmp`, the temp dir and
/// the workspace whose filesystem is on a block device (its `st_dev` major is not 0, the
/// anonymous-device major of tmpfs, overlay, 9p, ...).
fn scratch_disk() -> Option<Disk> {
    let candidates = [
        std::env::var_os("COLLECTOR_TEST_DISK_DIR").map_or_else(PathBuf::new, PathBuf::from),
        PathBuf::from("/var/tmp"),
        std::env::temp_dir(),
        crate::support::workspace_root(),
    ];
    candidates.into_iter().find_map(|dir| {
        let dev = fs::metadata(&dir).ok()?.dev();
        let (major, minor) = (libc::major(dev), libc::minor(dev));
        if major == 0 {
            return None;
        }
        let (major, minor) = whole_disk(major, minor);
        Some(Disk { dir, major, minor })
    })
}

/// The disk a partition belongs to (`/sys/dev/block/M:m/partition` exists for partitions,
/// and the parent directory is the disk); a whole disk is itself.
fn whole_disk(major: u32, minor: u32) -> (u32, u32) {
    let sys = PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
    if !sys.join("partition").exists() {
        return (major, minor);
    }
    fs::canonicalize(&sys)
        .ok()
        .and_then(|p| fs::read_to_string(p.parent()?.join("dev")).ok())
        .and_then(|dev| {
            let (ma, mi) = dev.trim().split_once(':')?;
            Some((ma.parse().ok()?, mi.parse().ok()?))
        })
        .unwrap_or((major, minor))
}

/// The hierarchy id of the v1 controller (`/proc/cgroups`: name, hierarchy, cgroups, enabled).
fn v1_hierarchy_id(controller: &str) -> u32 {
    let text = fs::read_to_string("/proc/cgroups").expect("/proc/cgroups");
    text.lines()
        .find_map(|line| {
            let mut fields = line.split_whitespace();
            (fields.next()? == controller).then(|| fields.next()?.parse().ok())?
        })
        .unwrap_or_else(|| panic!("{controller} missing from /proc/cgroups"))
}

/// Root, a v1 `memory` and `blkio` hierarchy (this host's hybrid layout), and a disk.
fn io_ready() -> Option<Disk> {
    if !root()
        || !require(
            "v1 memory and blkio hierarchies (the hybrid layout)",
            v1_mount("memory").is_some() && v1_mount("blkio").is_some(),
        )
    {
        return None;
    }
    let disk = scratch_disk();
    require(
        "a directory on a block device for test files",
        disk.is_some(),
    )
    .then_some(disk)
    .flatten()
}

/// A cgroup for one IO test, in v2 and the v1 `memory` and `blkio` hierarchies, as a
/// container on this host has.
fn io_cgroup() -> TestCgroup {
    TestCgroup::with_v1("io/writer", &["memory", "blkio"])
}

/// The cgroup's block IO on `disk`, summed over the keys it can be counted under (its
/// `memory` cgroup, whose pages decide; its `blkio` cgroup, for pages without a memcg; its
/// v2 cgroup on v2-only hosts), with the per-key values for the log.
fn io_of(
    daemon: &Daemon,
    cg: &TestCgroup,
    disk: &Disk,
) -> (IoMapValue, Vec<(&'static str, IoMapValue)>) {
    let dev = make_dev(disk.major, disk.minor);
    let keys = [
        ("memory", v1_hierarchy_id("memory"), cg.inode_v1("memory")),
        ("blkio", v1_hierarchy_id("blkio"), cg.inode_v1("blkio")),
        ("v2", 0, cg.inode_v2()),
    ];
    let mut total = IoMapValue::default();
    let mut parts = Vec::new();
    for (name, hierarchy_id, cgroup_id) in keys {
        if let Some(v) = io_entry(
            daemon,
            IoMapKey {
                cgroup_id,
                hierarchy_id,
                dev,
            },
        ) {
            total.read_bytes += v.read_bytes;
            total.write_bytes += v.write_bytes;
            total.read_ops += v.read_ops;
            total.write_ops += v.write_ops;
            parts.push((name, v));
        }
    }
    (total, parts)
}

/// Runs `dd args...` in `cg` and asserts it succeeded.
fn dd_in(cg: &TestCgroup, args: &[&str]) {
    let mut cmd = Command::new("dd");
    cmd.args(args).stdin(Stdio::null()).stderr(Stdio::null());
    let mut dd = spawn_command_in_cgroup(cg, cmd);
    wait_success(&mut dd, "dd", Duration::from_mins(2));
}

/// Asserts `bytes` is the 64 MiB written or read, give or take a little filesystem metadata
/// (journal blocks whose pages the writer's cgroup brought in).
fn assert_about_64_mib(what: &str, bytes: u64, detail: &dyn std::fmt::Debug) {
    assert!(
        (64 * MIB..70 * MIB).contains(&bytes),
        "{what}: {bytes} bytes not in [64 MiB, 70 MiB): {detail:?}"
    );
}

fn scratch_file(disk: &Disk) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("collector-test-")
        .tempdir_in(&disk.dir)
        .expect("scratch dir");
    let file = dir.path().join("data");
    (dir, file)
}

#[test]
fn buffered_writes_flushed_by_fsync_are_charged_to_the_writer() {
    let Some(disk) = io_ready() else { return };
    let daemon = daemon_with_counters();
    let cg = io_cgroup();
    let (_dir, file) = scratch_file(&disk);
    dd_in(
        &cg,
        &[
            "if=/dev/zero",
            &format!("of={}", file.display()),
            "bs=1M",
            "count=64",
            "conv=fsync",
        ],
    );
    let (io, parts) = io_of(daemon, &cg, &disk);
    eprintln!(
        "buffered + fsync, {}:{}: {io:?} from {parts:?}",
        disk.major, disk.minor
    );
    assert_about_64_mib("write_bytes", io.write_bytes, &parts);
    assert!(io.write_ops >= 1, "{parts:?}");
    assert!(
        parts
            .iter()
            .any(|(name, v)| *name == "memory" && v.write_bytes >= 64 * MIB),
        "the page owner (memory cgroup) should carry the writes: {parts:?}"
    );

    // The daemon's reader API sees the same entry (journal blocks may still come: allow a
    // little more, never less), and frees it on request.
    let api = CounterMaps::open_pinned(daemon.pin_dir());
    let key = IoKey {
        hierarchy_id: v1_hierarchy_id("memory"),
        cgroup_id: cg.inode_v1("memory"),
        major: disk.major,
        minor: disk.minor,
    };
    let raw = parts
        .iter()
        .find(|(name, _)| *name == "memory")
        .map(|(_, v)| *v)
        .expect("memory entry");
    let api_io = api.io_snapshot().expect("io_snapshot")[&key];
    assert!(
        api_io.write_bytes >= raw.write_bytes && api_io.write_bytes - raw.write_bytes < MIB,
        "{api_io:?} vs {raw:?}"
    );
    assert!(api_io.write_ops >= raw.write_ops);
    api.remove_io(&key);
    let freed = io_entry(daemon, IoMapKey::from(&key));
    assert!(freed.is_none_or(|v| v.write_bytes < MIB), "{freed:?}");
}

#[test]
fn direct_writes_and_reads_are_charged_to_the_process_doing_them() {
    let Some(disk) = io_ready() else { return };
    let daemon = daemon_with_counters();
    let cg = io_cgroup();
    let (_dir, file) = scratch_file(&disk);
    let path = format!("of={}", file.display());
    dd_in(
        &cg,
        &["if=/dev/zero", &path, "bs=1M", "count=64", "oflag=direct"],
    );
    let (written, parts) = io_of(daemon, &cg, &disk);
    eprintln!(
        "O_DIRECT write, {}:{}: {written:?} from {parts:?}",
        disk.major, disk.minor
    );
    assert_about_64_mib("write_bytes", written.write_bytes, &parts);

    dd_in(
        &cg,
        &[
            &format!("if={}", file.display()),
            "of=/dev/null",
            "bs=1M",
            "iflag=direct",
        ],
    );
    let (read, parts) = io_of(daemon, &cg, &disk);
    eprintln!("O_DIRECT read: {read:?} from {parts:?}");
    assert_about_64_mib("read_bytes", read.read_bytes, &parts);
    assert!(read.read_ops >= 1);
}

#[test]
fn background_writeback_is_charged_to_the_writer_not_the_flusher() {
    let Some(disk) = io_ready() else { return };
    let daemon = daemon_with_counters();
    let cg = io_cgroup();
    let (_dir, file) = scratch_file(&disk);
    // No fsync: dd exits with its 64 MiB dirty in the page cache.
    dd_in(
        &cg,
        &[
            "if=/dev/zero",
            &format!("of={}", file.display()),
            "bs=1M",
            "count=64",
        ],
    );
    let (before, _) = io_of(daemon, &cg, &disk);
    // `sync` from outside the cgroup: the flusher threads (kworkers in the root cgroup)
    // write the pages back, and `sync` waits for them.
    let status = Command::new("sync").status().expect("running sync");
    assert!(status.success());
    let (after, parts) = io_of(daemon, &cg, &disk);
    eprintln!(
        "background writeback, {}:{}: {before:?} at dd's exit, {after:?} after sync, from {parts:?}",
        disk.major, disk.minor
    );
    assert_about_64_mib("write_bytes", after.write_bytes, &parts);
    // Keep the file until counted: dropping it first could discard dirty pages unwritten.
    drop(File::open(&file).expect("the file is still there"));
}

#[test]
fn a_full_io_map_is_counted_and_logged_and_tracking_goes_on() {
    let Some(disk) = io_ready() else { return };
    // 64 entries, the smallest allowed; the host's own IO takes some of them too.
    let daemon = Daemon::start(&["--io-counter-entries", "64"]);
    let (_dir, file) = scratch_file(&disk);
    let of = format!("of={}", file.display());
    // More owners than the map holds: one 4 KiB direct write from each of 80 cgroups.
    let cgroups: Vec<TestCgroup> = (0..80)
        .map(|i| TestCgroup::with_v1(&format!("io/owner{i}"), &["memory"]))
        .collect();
    for cg in &cgroups {
        dd_in(
            cg,
            &["if=/dev/zero", &of, "bs=4k", "count=1", "oflag=direct"],
        );
    }
    let fd = bpf::open_pinned(&daemon.pin_dir().join("io_counters")).expect("open pin");
    let entries = bpf::keys(&fd, 16).expect("walk keys").len();
    assert_eq!(entries, 64, "a full map holds exactly its capacity");
    assert!(metric(&daemon, "collector_kernel_io_map_full_total") > 0);
    assert_eq!(metric(&daemon, "collector_kernel_net_map_full_total"), 0);
    wait_for(
        "the kernel's map-full warning in the log",
        Duration::from_secs(5),
        || daemon.log().contains("IO_COUNTERS map full").then_some(()),
    );
    // Process tracking is unaffected.
    let answer = super::util::lookup(&daemon, std::process::id());
    assert_eq!(answer["source"], "ebpf", "{answer}");
}
