//! Container stats over the socket (`GET /v1/containers/{id}/stats`) against real Docker
//! containers: values agree with what the kernel's own files say at the same moment.
use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use serde_json::Value;

use super::util::{metric, root, wait_for};
use crate::support::{cgroup, daemon::Daemon, docker, require};

fn docker_ready() -> bool {
    root()
        && require(
            "a running Docker daemon (cargo xtask test starts one)",
            docker::docker_available(),
        )
}

/// `GET /v1/containers/{id}/stats?max_age_ms=0` (fresh values), asserting 200.
pub(super) fn stats(daemon: &Daemon, id: &str) -> Value {
    let response = daemon.get(&format!("/v1/containers/{id}/stats?max_age_ms=0"));
    assert_eq!(response.status, 200, "stats of {id}: {}", response.body);
    response.json()
}

fn u64_at(value: &Value, pointer: &str) -> u64 {
    value
        .pointer(pointer)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{pointer} is not a number in {value}"))
}

/// The v1 cgroup directory of `pid` for `controller` (this host mounts each v1 controller
/// on its own).
fn v1_dir(pid: u32, controller: &str) -> PathBuf {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let path = text
        .lines()
        .find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            controllers
                .split(',')
                .any(|c| c == controller)
                .then(|| path.to_owned())
        })
        .unwrap_or_else(|| panic!("pid {pid} has no {controller} cgroup"));
    cgroup::v1_mount(controller)
        .unwrap_or_else(|| panic!("no v1 {controller} mount"))
        .join(path.trim_start_matches('/'))
}

fn read_u64(path: &PathBuf) -> u64 {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("{}: {text:?}", path.display()))
}

fn within(actual: u64, expected: u64, fraction: f64) -> bool {
    #[expect(
        clippy::cast_precision_loss,
        reason = "test tolerance on counters far below 2^52"
    )]
    let (a, e) = (actual as f64, expected as f64);
    (a - e).abs() <= e * fraction
}

/// `nr_throttled` of a v1 `cpu.stat`.
fn nr_throttled(cpu_stat: &Path) -> u64 {
    std::fs::read_to_string(cpu_stat)
        .unwrap_or_else(|e| panic!("{}: {e}", cpu_stat.display()))
        .lines()
        .find_map(|l| l.strip_prefix("nr_throttled "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no nr_throttled in {}", cpu_stat.display()))
}

#[test]
fn a_busy_containers_cpu_and_memory_match_its_cgroup() {
    if !docker_ready() {
        return;
    }
    let daemon = Daemon::shared();
    // A busy loop, and 32 MiB held in the container's tmpfs (charged to its memory cgroup).
    let container = docker::Container::run_with_options(
        "collector-stats-busy",
        &["--memory", "256m", "--cpus", "0.5"],
        &[
            "sh",
            "-c",
            "head -c 33554432 /dev/zero > /dev/shm/blob; while :; do :; done",
        ],
    );
    let pid = container.main_pid();
    let cpuacct = v1_dir(pid, "cpuacct").join("cpuacct.usage");
    let memory = v1_dir(pid, "memory").join("memory.usage_in_bytes");
    let cpu_stat = v1_dir(pid, "cpu").join("cpu.stat");
    // The kernel throttles a 0.5-CPU busy loop once it has run its quota in a period; on a
    // loaded machine the loop may be starved for a while first, so wait for both.
    wait_for(
        "the container to use CPU and be throttled",
        Duration::from_secs(30),
        || (read_u64(&cpuacct) > 300_000_000 && nr_throttled(&cpu_stat) > 0).then_some(()),
    );

    let cpu_before = read_u64(&cpuacct);
    let throttled_before = nr_throttled(&cpu_stat);
    let body = stats(daemon, container.id());
    let cpu_after = read_u64(&cpuacct);
    let throttled_after = nr_throttled(&cpu_stat);
    let memory_after = read_u64(&memory);
    let total = u64_at(&body, "/cpu/total");
    eprintln!("cpu.total {total} ns; cpuacct.usage {cpu_before}..{cpu_after} ns");
    assert!(
        total >= cpu_before * 98 / 100 && total <= cpu_after * 102 / 100,
        "cpu.total {total} outside the cgroup's {cpu_before}..{cpu_after} ±2%: {body}"
    );
    assert_eq!(body["sources"]["cpu"], "system", "{body}");
    // --cpus 0.5 is a CFS quota of half a CPU: 50 (percent of one CPU), not defaulted.
    assert_eq!(body["cpu"]["limit"].as_f64(), Some(50.0), "{body}");
    assert_eq!(body["cpu"]["defaulted_limit"], false, "{body}");
    assert!(
        u64_at(&body, "/cpu/user") + u64_at(&body, "/cpu/system") > 0,
        "{body}"
    );
    let throttled = u64_at(&body, "/cpu/throttled_periods");
    assert!(
        (throttled_before..=throttled_after).contains(&throttled) && throttled > 0,
        "throttled_periods {throttled} outside the cgroup's nr_throttled \
         {throttled_before}..{throttled_after}: {body}"
    );

    let usage = u64_at(&body, "/memory/usage_total");
    eprintln!("memory.usage_total {usage} B; memory.usage_in_bytes {memory_after} B after");
    assert!(
        within(usage, memory_after, 0.05),
        "memory.usage_total {usage} vs the cgroup's {memory_after}: {body}"
    );
    assert!(usage >= 32 << 20, "the 32 MiB blob is charged: {body}");
    assert_eq!(u64_at(&body, "/memory/limit"), 256 << 20, "{body}");
    assert!(u64_at(&body, "/memory/working_set") <= usage, "{body}");
    assert!(
        u64_at(&body, "/memory/cache") >= 32 << 20,
        "tmpfs pages are cache: {body}"
    );
    assert!(!body["timestamp"].is_null(), "{body}");
}

#[test]
fn a_containers_thread_count_and_open_files_are_exact() {
    if !docker_ready() {
        return;
    }
    let daemon = Daemon::shared();
    // sh holds 0-2 (Docker's /dev/null and log pipes) plus 3, 4, 5; each sleep inherits the
    // same six: 3 processes, 3 threads, 18 descriptors.
    let container = docker::Container::run(
        "collector-stats-fds",
        &[
            "sh",
            "-c",
            "exec 3</etc/hostname 4</etc/hostname 5</etc/hostname; sleep 86400 & sleep 86400 & wait",
        ],
    );
    wait_for(
        "three processes in the container",
        Duration::from_secs(20),
        || (container.top_pids().len() == 3).then_some(()),
    );
    let body = wait_for("exact counts", Duration::from_secs(10), || {
        let body = stats(daemon, container.id());
        (body["pid"]["thread_count"] == 3 && body["open_files"] == 18).then_some(body)
    });
    assert_eq!(body["pid"]["thread_count"], 3, "{body}");
    assert_eq!(body["open_files"], 18, "{body}");
    // Docker leaves pids.max at "max" unless --pids-limit: no limit is null, not 0.
    assert!(body["pid"]["thread_limit"].is_null(), "{body}");

    let limited =
        docker::Container::run_with_options("collector-stats-pids", &["--pids-limit", "42"], &[]);
    let body = stats(daemon, limited.id());
    assert_eq!(body["pid"]["thread_limit"], 42, "{body}");
    assert_eq!(body["pid"]["thread_count"], 1, "{body}");
}

#[test]
fn an_unknown_container_is_404_and_a_bad_max_age_is_400() {
    if !root() {
        return;
    }
    let daemon = Daemon::shared();
    let unknown = "0".repeat(64);
    let response = daemon.get(&format!("/v1/containers/{unknown}/stats"));
    assert_eq!(response.status, 404, "{}", response.body);
    assert!(
        response.json()["error"]
            .as_str()
            .unwrap()
            .contains(&unknown)
    );
    for bad in ["-1", "abc", "99999999999999999999999"] {
        let response = daemon.get(&format!("/v1/containers/{unknown}/stats?max_age_ms={bad}"));
        assert_eq!(response.status, 400, "max_age_ms={bad}: {}", response.body);
    }
    assert!(daemon.is_running());
}

/// Received and sent bytes of `iface` in `/proc/<pid>/net/dev` (the netns of `pid`).
fn net_dev_bytes(pid: u32, iface: &str) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).unwrap();
    let line = text
        .lines()
        .find_map(|l| {
            l.trim_start()
                .strip_prefix(&format!("{iface}:"))
                .map(str::to_owned)
        })
        .unwrap_or_else(|| panic!("no {iface} in /proc/{pid}/net/dev: {text}"));
    let fields: Vec<u64> = line
        .split_whitespace()
        .map(|f| f.parse().unwrap())
        .collect();
    (fields[0], fields[8])
}

#[test]
fn bytes_sent_between_two_containers_are_counted_on_both_sides() {
    const N: u64 = 20_000_000;
    if !docker_ready() {
        return;
    }
    let daemon = Daemon::shared();
    // busybox httpd serves an N-byte file; the client fetches it with busybox wget.
    let server = docker::Container::run(
        "collector-stats-tx",
        &[
            "sh",
            "-c",
            &format!(
                "mkdir /www && head -c {N} /dev/zero > /www/blob && exec httpd -f -p 8080 -h /www"
            ),
        ],
    );
    let client = docker::Container::run("collector-stats-rx", &[]);
    let server_ip = server.inspect("{{.NetworkSettings.IPAddress}}");
    assert!(
        !server_ip.is_empty(),
        "the server container has no bridge address"
    );
    wait_for("httpd to serve", Duration::from_secs(20), || {
        let out = server.exec(&["pidof", "httpd"]);
        (!out.stdout.is_empty()).then_some(())
    });
    let (server_pid, client_pid) = (server.main_pid(), client.main_pid());

    let server_before = stats(daemon, server.id());
    let client_before = stats(daemon, client.id());
    let (_, server_dev_before) = net_dev_bytes(server_pid, "eth0");
    let (client_dev_before, _) = net_dev_bytes(client_pid, "eth0");

    let fetch = client.exec(&[
        "wget",
        "-q",
        "-O",
        "/dev/null",
        &format!("http://{server_ip}:8080/blob"),
    ]);
    assert!(
        fetch.status.success(),
        "wget failed: {}",
        String::from_utf8_lossy(&fetch.stderr)
    );

    let server_after = stats(daemon, server.id());
    let client_after = stats(daemon, client.id());
    let (_, server_dev_after) = net_dev_bytes(server_pid, "eth0");
    let (client_dev_after, _) = net_dev_bytes(client_pid, "eth0");
    for body in [&server_after, &client_after] {
        assert_eq!(body["sources"]["network"], "ebpf", "{body}");
        assert!(body["network"]["interfaces"].is_null(), "{body}");
        assert_eq!(body["network"]["using_host_network"], false, "{body}");
    }

    let sent = u64_at(&server_after, "/network/bytes_sent")
        - u64_at(&server_before, "/network/bytes_sent");
    let received = u64_at(&client_after, "/network/bytes_rcvd")
        - u64_at(&client_before, "/network/bytes_rcvd");
    eprintln!(
        "{N}-byte file: server sent {sent} B (net/dev {server_dev} B), client received {received} B (net/dev {client_dev} B)",
        server_dev = server_dev_after - server_dev_before,
        client_dev = client_dev_after - client_dev_before,
    );
    // IP and TCP headers, the HTTP exchange and the handshake on top of the payload: at most
    // 5% more.
    for (side, counted) in [("sent", sent), ("received", received)] {
        assert!(
            (N..=N + N / 20).contains(&counted),
            "{side} {counted} bytes for a {N}-byte file\nserver {server_after}\nclient {client_after}"
        );
    }
    // The interface counters also hold Ethernet headers (and ARP): within 5%.
    let server_dev = server_dev_after - server_dev_before;
    let client_dev = client_dev_after - client_dev_before;
    assert!(
        within(sent, server_dev, 0.05),
        "eBPF {sent} vs net/dev {server_dev}"
    );
    assert!(
        within(received, client_dev, 0.05),
        "eBPF {received} vs net/dev {client_dev}"
    );
    assert!(
        u64_at(&client_after, "/network/packets_rcvd")
            > u64_at(&client_before, "/network/packets_rcvd")
    );
}

/// Waits until the daemon's pinned `io_counters` map holds no entry for cgroup `cgroup_id`
/// (the key starts with the u64 cgroup id): the daemon's upkeep freed it.
fn wait_until_io_entry_freed(daemon: &Daemon, cgroup_id: u64) {
    let map = crate::support::bpf::open_pinned(&daemon.pin_dir().join("io_counters")).unwrap();
    wait_for(
        "the removed cgroup's io_counters entry to be freed",
        Duration::from_secs(10),
        || {
            let keys = crate::support::bpf::keys(&map, 16).unwrap();
            (!keys.iter().any(|k| k[..8] == cgroup_id.to_ne_bytes())).then_some(())
        },
    );
}

/// A host directory on a real block device (not tmpfs), removed on drop.
struct HostDir(PathBuf);

impl HostDir {
    fn new() -> Self {
        let dir = PathBuf::from(format!("/var/tmp/{}", crate::support::unique_name()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for HostDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_containers_buffered_and_direct_writes_are_counted_as_its_io() {
    const MIB64: u64 = 64 << 20;
    if !docker_ready() {
        return;
    }
    let daemon = Daemon::shared();
    let dir = HostDir::new();
    let volume = format!("{}:/data", dir.0.display());
    let container =
        docker::Container::run_with_options("collector-stats-io", &["-v", &volume], &[]);

    let mut last = stats(daemon, container.id());
    assert_eq!(last["sources"]["io"], "ebpf", "{last}");
    for (how, command) in [
        (
            "buffered with fsync",
            "dd if=/dev/zero of=/data/buffered bs=1M count=64 conv=fsync",
        ),
        (
            "O_DIRECT",
            "dd if=/dev/zero of=/data/direct bs=1M count=64 oflag=direct",
        ),
    ] {
        let out = container.exec(&["sh", "-c", command]);
        assert!(
            out.status.success(),
            "{how}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let now = stats(daemon, container.id());
        let written = u64_at(&now, "/io/write_bytes") - u64_at(&last, "/io/write_bytes");
        eprintln!("{how}: 64 MiB = {MIB64} B written, io.write_bytes grew by {written} B");
        // Filesystem metadata and journal blocks may add a little; the data is all there.
        assert!(
            (MIB64..=MIB64 + MIB64 / 4).contains(&written),
            "{how}: write_bytes grew by {written}, not 64 MiB\nbefore {last}\nafter {now}"
        );
        assert!(
            u64_at(&now, "/io/write_operations") > u64_at(&last, "/io/write_operations"),
            "{how}: {now}"
        );
        let devices = now["io"]["devices"].as_object().expect("per-device IO");
        assert!(
            devices
                .values()
                .any(|d| d["write_bytes"].as_u64().unwrap_or(0) >= MIB64),
            "{how}: {now}"
        );
        last = now;
    }
}

#[test]
fn nested_cgroups_add_up_into_their_container_and_outlive_their_removal() {
    if !root() {
        return;
    }
    let daemon = Daemon::shared();
    let id = super::util::container_id("nested-io");
    let controllers = ["memory", "pids", "cpu", "cpuacct"];
    for c in controllers {
        assert!(
            cgroup::v1_mount(c).is_some(),
            "this test needs the v1 {c} controller"
        );
    }
    let mut cg = cgroup::TestCgroup::with_v1(&format!("docker/{id}"), &controllers);
    let nested_v2 = cg.mkdir_nested("inner");
    let nested_memcg = cgroup::inode(&cg.v1_dir("memory").join("inner"));
    let nested_procs: Vec<PathBuf> = std::iter::once(nested_v2.join("cgroup.procs"))
        .chain(
            controllers
                .iter()
                .map(|c| cg.v1_dir(c).join("inner/cgroup.procs")),
        )
        .collect();

    // A sleeper in the nested cgroup only: the container's PIDs and threads include it.
    let sleeper = super::util::sleep_in(&nested_procs);
    let body = wait_for(
        "the nested sleeper to be counted",
        Duration::from_secs(10),
        || {
            let body = stats(daemon, &id);
            (body["pid"]["thread_count"] == 1).then_some(body)
        },
    );
    let sleeper_fds = std::fs::read_dir(format!("/proc/{}/fd", sleeper.pid()))
        .unwrap()
        .count();
    assert_eq!(body["open_files"], sleeper_fds, "{body}");

    // 64 MiB written (buffered, fsync) from the nested cgroup count for the container.
    let dir = HostDir::new();
    let mut dd = std::process::Command::new("dd");
    dd.args([
        "if=/dev/zero",
        "bs=1M",
        "count=64",
        "conv=fsync",
        "status=none",
    ])
    .arg(format!("of={}", dir.0.join("nested").display()));
    crate::support::process::enter_before_exec(&mut dd, &nested_procs);
    let before = u64_at(&body, "/io/write_bytes");
    assert!(dd.status().unwrap().success());
    let after_dd = stats(daemon, &id);
    let written = u64_at(&after_dd, "/io/write_bytes") - before;
    assert!(
        (64 << 20..=80 << 20).contains(&written),
        "{written}: {after_dd}"
    );

    // The nested cgroup goes away: its final counts stay with the container.
    drop(sleeper);
    for dir in std::iter::once(nested_v2.clone())
        .chain(controllers.iter().map(|c| cg.v1_dir(c).join("inner")))
    {
        wait_for(
            "the nested cgroup to be removable",
            Duration::from_secs(10),
            || std::fs::remove_dir(&dir).ok(),
        );
    }
    // The daemon's upkeep (every second) folds the removed cgroup's counters into the
    // container and frees its map entry.
    wait_until_io_entry_freed(daemon, nested_memcg);
    let after_removal = stats(daemon, &id);
    assert!(
        u64_at(&after_removal, "/io/write_bytes") >= u64_at(&after_dd, "/io/write_bytes"),
        "counters went backwards when the nested cgroup was removed:\n{after_dd}\n{after_removal}"
    );
}

#[test]
fn a_removed_containers_final_counters_can_still_be_read() {
    const MIB64: u64 = 64 << 20;
    if !docker_ready() {
        return;
    }
    let daemon = Daemon::shared();
    let dir = HostDir::new();
    let volume = format!("{}:/data", dir.0.display());
    let container =
        docker::Container::run_with_options("collector-stats-gone", &["-v", &volume], &[]);
    let id = container.id().to_owned();
    let out = container.exec(&[
        "dd",
        "if=/dev/zero",
        "of=/data/f",
        "bs=1M",
        "count=64",
        "conv=fsync",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let live = stats(daemon, &id);
    let written = u64_at(&live, "/io/write_bytes");
    assert!(written >= MIB64, "{live}");
    // The page-cache pages are the container's memory cgroup's: its IO is counted there.
    let memcg = cgroup::inode(&v1_dir(container.main_pid(), "memory"));

    // Docker removes the container's cgroups; the daemon's upkeep (every second) frees
    // their map entries and keeps their final values for the container.
    drop(container);
    let gone = wait_for("the cgroupfs answer to go", Duration::from_secs(20), || {
        let body = stats(daemon, &id);
        body["cpu"].is_null().then_some(body)
    });
    assert_eq!(gone["sources"]["io"], "ebpf", "{gone}");
    assert!(u64_at(&gone, "/io/write_bytes") >= written, "{gone}");
    // Still there once the upkeep has folded the removed cgroups in and freed their entries.
    wait_until_io_entry_freed(daemon, memcg);
    let folded = stats(daemon, &id);
    assert!(
        u64_at(&folded, "/io/write_bytes") >= written,
        "counters went backwards after removal:\n{live}\n{folded}"
    );
}

#[test]
fn the_cli_prints_a_containers_stats() {
    if !root() {
        return;
    }
    let daemon = Daemon::shared();
    let id = super::util::container_id("cli-stats");
    let cg = cgroup::TestCgroup::with_v1(&format!("docker/{id}"), &["memory", "cpuacct"]);
    let _sleeper = crate::support::process::spawn_in_cgroup(&cg, &["sleep", "60"]);
    let cli = |args: &[&str]| daemon.query(args);
    let out = cli(&["stats", &id]);
    assert!(out.status.success(), "{out:?}");
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.starts_with("STAT "), "{table}");
    let row = |name: &str| {
        table
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|cells| cells.first() == Some(&name))
            .unwrap_or_else(|| panic!("no {name} row in\n{table}"))
    };
    assert_eq!(row("container_id")[1], id);
    assert_eq!(row("cpu.total")[2], "system", "{table}");
    assert!(
        row("memory.usage_total")[1].parse::<u64>().unwrap() > 0,
        "{table}"
    );
    assert_eq!(row("network.bytes_sent")[2], "ebpf", "{table}");

    let out = cli(&["--json", "stats", &id, "--max-age-ms", "500"]);
    assert!(out.status.success(), "{out:?}");
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["container_id"], id.as_str(), "{json}");

    let unknown = "f".repeat(64);
    let out = cli(&["stats", &unknown]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not known"),
        "{out:?}"
    );
    // Whatever is typed reaches the daemon (percent-encoded), which says what is wrong.
    for bad in ["bad id!", "a/../b", "x?max_age_ms=1"] {
        let out = cli(&["stats", bad]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{bad}: {out:?}");
        assert!(
            stderr.contains("400") && stderr.contains("invalid container id"),
            "{bad}: {stderr}"
        );
    }
}

/// Stats requests are served a few at a time (the rest wait): many at once, full
/// collections and single containers mixed, all get complete, right answers.
#[test]
fn concurrent_stats_requests_all_get_complete_answers() {
    const CONTAINERS: usize = 3;
    const CLIENTS: usize = 6;
    if !root() {
        return;
    }
    let daemon = Daemon::shared();
    let controllers: Vec<&str> = ["memory", "pids", "cpu", "cpuacct"]
        .into_iter()
        .filter(|c| cgroup::v1_mount(c).is_some())
        .collect();
    let fleet: Vec<(String, cgroup::TestCgroup, _)> = (0..CONTAINERS)
        .map(|_| {
            let id = super::util::container_id("concurrent-stats");
            let cg = cgroup::TestCgroup::with_v1(&format!("docker/{id}"), &controllers);
            let sleeper = super::util::sleep_in(&cg.procs_files());
            (id, cg, sleeper)
        })
        .collect();
    for (id, _, _) in &fleet {
        wait_for(
            "the container to be counted",
            Duration::from_secs(10),
            || (stats(daemon, id)["pid"]["thread_count"] == 1).then_some(()),
        );
    }
    let ids: Vec<&str> = fleet.iter().map(|(id, _, _)| id.as_str()).collect();
    std::thread::scope(|scope| {
        let full: Vec<_> = (0..CLIENTS)
            .map(|_| scope.spawn(|| daemon.get("/v1/stats?max_age_ms=0")))
            .collect();
        let single: Vec<_> = (0..CLIENTS)
            .map(|i| {
                let id = ids[i % CONTAINERS];
                (id, scope.spawn(move || stats(daemon, id)))
            })
            .collect();
        for handle in full {
            let response = handle.join().expect("client thread");
            assert_eq!(response.status, 200, "{}", response.body);
            let answer = response.json();
            let listed = answer.as_array().expect("an array");
            for id in &ids {
                let body = listed
                    .iter()
                    .find(|b| b["container_id"] == *id)
                    .unwrap_or_else(|| panic!("{id} missing from the full collection"));
                assert_eq!(body["pid"]["thread_count"], 1, "{body}");
                assert!(body["cpu"]["total"].is_u64(), "{body}");
                // (On a v2-only host the memory controller is not enabled for test cgroups.)
                if controllers.contains(&"memory") {
                    assert!(body["memory"]["usage_total"].is_u64(), "{body}");
                }
            }
        }
        for (id, handle) in single {
            let body = handle.join().expect("client thread");
            assert_eq!(body["container_id"], id, "{body}");
            assert_eq!(body["pid"]["thread_count"], 1, "{body}");
        }
    });
    assert!(daemon.is_running());
}

/// `--cgroup-file-cache` bounds the cgroup files held open between reads (each pins kernel
/// memory): with 0 nothing is held and the answers are the same; by default a container's
/// files are held after its first read. `/metrics` shows both.
#[test]
fn the_cgroup_file_cache_is_bounded_and_shown_in_metrics() {
    if !root() {
        return;
    }
    let controllers: Vec<&str> = ["memory", "pids", "cpu", "cpuacct"]
        .into_iter()
        .filter(|c| cgroup::v1_mount(c).is_some())
        .collect();
    let id = super::util::container_id("file-cache");
    let cg = cgroup::TestCgroup::with_v1(&format!("docker/{id}"), &controllers);
    let _sleeper = super::util::sleep_in(&cg.procs_files());
    let uncached = Daemon::start(&["--cgroup-file-cache", "0"]);
    let shared = Daemon::shared();
    for daemon in [&uncached, shared] {
        wait_for(
            "the container to be counted",
            Duration::from_secs(10),
            || (stats(daemon, &id)["pid"]["thread_count"] == 1).then_some(()),
        );
    }
    let (a, b) = (stats(&uncached, &id), stats(shared, &id));
    for pointer in [
        "/pid/thread_count",
        "/open_files",
        "/cpu/shares",
        "/cpu/limit",
    ] {
        assert_eq!(
            a.pointer(pointer),
            b.pointer(pointer),
            "{pointer}:\n{a}\n{b}"
        );
    }
    assert!(a["cpu"]["total"].is_u64(), "{a}");
    assert_eq!(metric(&uncached, "collector_stats_cgroup_files_held"), 0);
    assert_eq!(metric(&uncached, "collector_stats_cgroup_files_limit"), 0);
    assert!(metric(shared, "collector_stats_cgroup_files_held") > 0);
    assert!(metric(shared, "collector_stats_cgroup_files_limit") > 0);
    // Bad values are refused at start-up, with the reason.
    for bad in ["-1", "lots", "2000000"] {
        let out = std::process::Command::new(crate::support::daemon::daemon_bin())
            .args(["run", &format!("--cgroup-file-cache={bad}")])
            .output()
            .expect("run the daemon");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{bad} accepted");
        assert!(stderr.contains("--cgroup-file-cache"), "{bad}: {stderr}");
    }
}
