//! Least privilege: the shipped systemd unit is valid and consistent, the daemon started as it
//! starts it (`support::service`) runs as a non-root user with exactly the unit's
//! capabilities and still loads, attaches and answers everything; without one of them it
//! says which is missing and serves on; its socket is 0660 of the unit's group at every start,
//! and something that is not a socket at its path is refused and left alone.
//!
//! The identity and stats modules run a second time with every daemon started this way
//! (`COLLECTOR_TEST_LEAST_PRIVILEGE=1`, a lane of `cargo xtask test`).
use std::{
    fs,
    os::unix::fs::{FileTypeExt as _, MetadataExt as _, PermissionsExt as _},
    path::Path,
    process::Stdio,
    time::Duration,
};

use serde_json::Value;

use super::{
    stats::stats,
    util::{lookup, root, wait_for},
};
use crate::support::{
    daemon::{Daemon, PinDir, daemon_bin},
    docker, require,
    service::{self, LeastPrivilege, ServiceUnit, TEST_GID, TEST_UID},
};

/// Each line of `/proc/<pid>/status` that starts with `key`, its value.
fn status_field(pid: u32, key: &str) -> String {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
        .trim()
        .to_owned()
}

fn hex_mask(pid: u32, key: &str) -> u64 {
    u64::from_str_radix(&status_field(pid, key), 16).unwrap()
}

fn docker_ready() -> bool {
    root()
        && require(
            "a running Docker daemon (cargo xtask test starts one)",
            docker::docker_available(),
        )
}

/// The value after `flag` in the unit's `ExecStart`.
fn exec_start_flag<'a>(unit: &'a ServiceUnit, flag: &str) -> &'a str {
    let i = unit
        .exec_start
        .iter()
        .position(|w| w == flag)
        .unwrap_or_else(|| panic!("ExecStart has no {flag}"));
    &unit.exec_start[i + 1]
}

#[test]
fn the_unit_is_consistent_and_systemd_accepts_it() {
    let unit = ServiceUnit::load();
    assert_eq!(unit.setting("NoNewPrivileges"), Some("yes"));
    assert_eq!(unit.setting("ProtectSystem"), Some("strict"));
    assert_ne!(unit.user, "root");
    // The socket is in the runtime directory systemd makes for the user, given to its group.
    let runtime = unit.setting("RuntimeDirectory").expect("RuntimeDirectory=");
    assert_eq!(
        Path::new(exec_start_flag(&unit, "--socket")).parent(),
        Some(Path::new("/run").join(runtime).as_path())
    );
    assert_eq!(exec_start_flag(&unit, "--socket-group"), unit.group);
    // The pin dir is writable under ProtectSystem=strict, and created for the user first.
    let pin_dir = exec_start_flag(&unit, "--pin-dir");
    assert_eq!(unit.setting("ReadWritePaths"), Some(pin_dir));
    let pre = unit.setting("ExecStartPre").expect("ExecStartPre=");
    assert!(
        pre.starts_with('+') && pre.ends_with(pin_dir) && pre.contains(&unit.user),
        "{pre}"
    );
    let mut ambient = unit.ambient.clone();
    let mut bounding = unit.bounding.clone();
    ambient.sort();
    bounding.sort();
    assert_eq!(ambient, bounding);
    assert!(
        !unit.ambient.iter().any(|c| c == "CAP_SYS_ADMIN"),
        "{ambient:?}"
    );

    if !require(
        "systemd-analyze (package systemd; cargo xtask test installs it)",
        Path::new("/usr/bin/systemd-analyze").exists(),
    ) {
        return;
    }
    // `verify` checks that ExecStart's program exists: point it at the binary under test.
    let dir = tempfile::tempdir().unwrap();
    let text = fs::read_to_string(ServiceUnit::path()).unwrap();
    let program = &unit.exec_start[0];
    let copy = dir.path().join("collector.service");
    fs::write(
        &copy,
        text.replace(program, &daemon_bin().display().to_string()),
    )
    .unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_daemon_runs_as_the_units_user_with_exactly_its_capabilities() {
    if !docker_ready() {
        return;
    }
    let privilege = LeastPrivilege::from_unit();
    let daemon = Daemon::start_least_privilege(&privilege, &[]);
    let pid = daemon.pid();
    for (key, id) in [("Uid:", TEST_UID), ("Gid:", TEST_GID)] {
        let ids: Vec<u32> = status_field(pid, key)
            .split_whitespace()
            .map(|id| id.parse().unwrap())
            .collect();
        assert_eq!(ids, [id; 4], "{key} (real, effective, saved, fs)");
    }
    for key in ["CapInh:", "CapPrm:", "CapEff:", "CapBnd:", "CapAmb:"] {
        assert_eq!(
            hex_mask(pid, key),
            privilege.mask(),
            "{key} of the daemon, the unit's set is {:?}",
            privilege.capabilities
        );
    }
    assert_eq!(status_field(pid, "NoNewPrivs:"), "1");

    // Everything loaded and attached: the capabilities are enough.
    let health = daemon.healthz();
    assert_eq!(health["ebpf"], true, "{health}");
    assert_eq!(health["counters_unavailable"], Value::Null, "{health}");
    let pin = daemon.pin_dir().join("processes");
    assert_eq!(health["pinned_map"], pin.display().to_string(), "{health}");
    assert_eq!(fs::metadata(&pin).unwrap().uid(), TEST_UID);
    let socket = fs::metadata(daemon.socket()).unwrap();
    assert!(socket.file_type().is_socket());
    assert_eq!(socket.mode() & 0o7777, 0o660);
    assert_eq!((socket.uid(), socket.gid()), (TEST_UID, TEST_GID));

    // A root process in a Docker container (another user than the daemon's): its container,
    // from the kernel, with the name Docker gives (docker group), and stats whose network
    // namespace needs CAP_SYS_PTRACE and whose network counters need CAP_NET_ADMIN.
    let container = docker::Container::run("collector-privilege", &[]);
    let answer = lookup(&daemon, container.main_pid());
    assert_eq!(answer["container_id"], container.id(), "{answer}");
    assert_eq!(answer["source"], "ebpf", "{answer}");
    let body = wait_for(
        "Docker's name for the container",
        Duration::from_secs(20),
        || {
            let body = stats(&daemon, container.id());
            (body["name"] == container.name()).then_some(body)
        },
    );
    let netns = fs::metadata(format!("/proc/{}/ns/net", container.main_pid()))
        .unwrap()
        .ino();
    assert_eq!(
        body["network"]["network_isolation_group_id"], netns,
        "{body}"
    );
    assert_eq!(body["sources"]["network"], "ebpf", "{body}");
    assert_eq!(body["sources"]["io"], "ebpf", "{body}");
    assert!(body["open_files"].as_u64().is_some_and(|n| n > 0), "{body}");
    assert_eq!(body["errors"], serde_json::json!({}), "{body}");
}

#[test]
fn without_a_capability_the_daemon_says_which_and_serves_on() {
    if !docker_ready() {
        return;
    }
    let container = docker::Container::run("collector-privilege-less", &[]);

    let no_perfmon =
        Daemon::start_least_privilege(&LeastPrivilege::from_unit().without("CAP_PERFMON"), &[]);
    let health = no_perfmon.healthz();
    assert_eq!(health["ebpf"], false, "{health}");
    let reason = health["ebpf_disabled_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("Operation not permitted") && reason.contains("CAP_PERFMON"),
        "{health}"
    );
    let answer = lookup(&no_perfmon, container.main_pid());
    assert_eq!(answer["container_id"], container.id(), "{answer}");
    assert_eq!(answer["source"], "procfs", "{answer}");
    drop(no_perfmon);

    let no_net_admin =
        Daemon::start_least_privilege(&LeastPrivilege::from_unit().without("CAP_NET_ADMIN"), &[]);
    let health = no_net_admin.healthz();
    assert_eq!(health["ebpf"], true, "{health}");
    let reason = health["counters_unavailable"].as_str().unwrap_or_default();
    assert!(
        reason.contains("network counters") && reason.contains("CAP_NET_ADMIN"),
        "{health}"
    );
    let body = stats(&no_net_admin, container.id());
    assert_eq!(body["sources"]["network"], "system", "{body}");
    drop(no_net_admin);

    // /proc/<pid>/ns/net of another user's process needs CAP_SYS_PTRACE: without it the
    // namespace is unknown (null), the counters still come.
    let no_ptrace =
        Daemon::start_least_privilege(&LeastPrivilege::from_unit().without("CAP_SYS_PTRACE"), &[]);
    let body = stats(&no_ptrace, container.id());
    assert_eq!(
        body["network"]["network_isolation_group_id"],
        Value::Null,
        "{body}"
    );
    assert!(body["network"]["bytes_rcvd"].is_u64(), "{body}");
}

#[test]
fn the_socket_is_0660_of_the_group_at_every_start_and_a_non_socket_is_left_alone() {
    if !root() {
        return;
    }
    let privilege = LeastPrivilege::from_unit();
    // The runtime directory as systemd makes it, with a stale socket of another owner and
    // mode left in it.
    let runtime = tempfile::tempdir().unwrap();
    service::prepare_dir(runtime.path(), 0o750).unwrap();
    let socket = runtime.path().join("collector.sock");
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    fs::set_permissions(&socket, fs::Permissions::from_mode(0o777)).unwrap();
    let socket_arg = socket.display().to_string();
    let daemon = Daemon::start_least_privilege(&privilege, &["--no-ebpf", "--socket", &socket_arg]);
    let meta = fs::metadata(&socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.mode() & 0o7777, 0o660);
    assert_eq!((meta.uid(), meta.gid()), (TEST_UID, TEST_GID));
    assert!(daemon.stop().success());
    assert!(
        !socket.exists(),
        "the daemon removes its socket when it stops"
    );

    // A regular file, then a directory, at the socket path: the daemon stops with the reason
    // and leaves them as they were.
    fs::write(&socket, b"not a socket").unwrap();
    let refused = run_to_exit(&privilege, &socket);
    assert!(
        refused.contains(&format!("{socket_arg} exists and is not a socket")),
        "{refused}"
    );
    assert_eq!(fs::read(&socket).unwrap(), b"not a socket");
    fs::remove_file(&socket).unwrap();
    fs::create_dir(&socket).unwrap();
    fs::write(socket.join("keep"), b"x").unwrap();
    let refused = run_to_exit(&privilege, &socket);
    assert!(refused.contains("exists and is not a socket"), "{refused}");
    assert_eq!(fs::read(socket.join("keep")).unwrap(), b"x");
}

/// Runs the unit's command line with `--socket socket` until it exits (it must, within
/// 30 s, unsuccessfully) and returns its output.
fn run_to_exit(privilege: &LeastPrivilege, socket: &Path) -> String {
    let pins = PinDir::new();
    let args = [
        "run".into(),
        "--no-ebpf".into(),
        "--socket".into(),
        socket.as_os_str().to_owned(),
        "--pin-dir".into(),
        pins.path().as_os_str().to_owned(),
        "--metrics-addr".into(),
        "none".into(),
    ];
    let mut child = privilege
        .command(&daemon_bin(), &args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let exited = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the daemon did not stop within 30 s with {} in the way",
                socket.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!exited.success(), "{text}");
    text
}
