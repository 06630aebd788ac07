//! Bad input over the socket: every kind gets a clear JSON error with the right status, and
//! the daemon keeps serving. Also the socket's mode and the CLI's handling of errors.
use std::os::unix::fs::PermissionsExt as _;

use super::util::root;
use crate::support::daemon::{Daemon, daemon_bin};

fn assert_error(daemon: &Daemon, method: &str, path: &str, body: Option<&[u8]>, status: u16) {
    let response = match (method, body) {
        ("GET", None) => daemon.get(path),
        ("POST", Some(body)) => daemon.post(path, body),
        _ => daemon.raw(&crate::support::http::request(method, path, body)),
    };
    assert_eq!(
        response.status, status,
        "{method} {path}: {}",
        response.body
    );
    let json = response.json();
    let message = json["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{method} {path}: no error in {json}"));
    assert!(!message.is_empty());
}

/// A PID no process has: the highest possible ones are free on a test machine.
fn free_pid() -> u32 {
    (4_000_000..4_194_304)
        .rev()
        .find(|p| !std::path::Path::new(&format!("/proc/{p}")).exists())
        .expect("a free pid")
}

#[test]
fn bad_requests_get_json_errors_and_the_daemon_keeps_serving() {
    if !root() {
        return;
    }
    let daemon = Daemon::shared();
    for path in [
        "/v1/pid/abc",
        "/v1/pid/0",
        "/v1/pid/-1",
        "/v1/pid/4194305",
        "/v1/pid/99999999999999999999999",
        "/v1/pid/1.5",
        "/v1/pid/%20",
        "/v1/pid/%ff",
        "/v1/inode/%ff%fe",
        "/v1/inode/abc",
        "/v1/inode/-3",
        "/v1/inode/0",
    ] {
        assert_error(daemon, "GET", path, None, 400);
    }
    let free = free_pid();
    assert_error(daemon, "GET", &format!("/v1/pid/{free}"), None, 404);
    assert_error(daemon, "GET", "/v1/inode/18446744073709551615", None, 404);
    assert_error(daemon, "GET", "/v1/nothing", None, 404);
    assert_error(daemon, "GET", "/", None, 404);
    assert_error(daemon, "POST", "/v1/pid/1", Some(b""), 405);
    assert_error(daemon, "DELETE", "/v1/containers", None, 405);
    assert_error(daemon, "GET", "/v1/pids", None, 405);

    for body in [
        &b"not json"[..],
        b"",
        b"[1, 2",
        b"{\"pids\": [1]}",
        b"[1, \"two\"]",
        b"[0]",
        b"[-4]",
        b"[4194305]",
        b"[1.5]",
        b"[null]",
        b"\xff\xfe",
    ] {
        assert_error(daemon, "POST", "/v1/pids", Some(body), 400);
    }
    // A body over the 1 MiB limit, and more PIDs than a batch may hold.
    let huge = format!("[{}1]", "1,".repeat(600_000));
    assert_error(daemon, "POST", "/v1/pids", Some(huge.as_bytes()), 413);
    let many = format!("[{}1]", "1,".repeat(100_000));
    assert_error(daemon, "POST", "/v1/pids", Some(many.as_bytes()), 413);

    // Unknown PIDs in a batch: an error per element, in order; known ones answered.
    let answers = daemon
        .post("/v1/pids", format!("[1, {free}, 1]").as_bytes())
        .json();
    let answers = answers.as_array().unwrap();
    assert_eq!(answers.len(), 3);
    assert_eq!(answers[0]["pid"], 1);
    assert!(answers[0].get("error").is_none(), "{}", answers[0]);
    assert_eq!(answers[1]["pid"], free);
    assert!(answers[1]["error"].as_str().unwrap().contains("not found"));
    assert!(answers[1]["container_id"].is_null());
    assert_eq!(answers[2]["pid"], 1);
    assert_eq!(daemon.post("/v1/pids", b"[]").json(), serde_json::json!([]));

    // Not HTTP at all, and a request cut short: the connection is answered or closed.
    for bytes in [
        &b"GARBAGE\r\n\r\n"[..],
        b"\x00\x01\x02\x03\xff\r\n\r\n",
        b"GET /v1/pid/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nab",
    ] {
        let _ = crate::support::http::send_with_timeout(
            daemon.socket(),
            bytes,
            std::time::Duration::from_secs(5),
        );
    }
    assert!(daemon.is_running());
    assert_eq!(daemon.healthz()["status"], "ok");
    assert_eq!(daemon.get("/v1/pid/1").status, 200);
}

#[test]
fn the_socket_is_0660() {
    if !root() {
        return;
    }
    let daemon = Daemon::shared();
    let mode = std::fs::metadata(daemon.socket())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o660);
}

#[test]
fn the_cli_prints_tables_json_and_errors() {
    if !root() {
        return;
    }
    let daemon = Daemon::shared();
    let cli = |args: &[&str]| daemon.query(args);
    let out = cli(&["--json", "pid", "1"]);
    assert!(out.status.success(), "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["pid"], 1);

    let out = cli(&["pids", "1", &std::process::id().to_string()]);
    assert!(out.status.success(), "{out:?}");
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.starts_with("PID "), "{table}");
    assert_eq!(table.lines().count(), 3, "{table}");

    let out = cli(&["containers"]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("CONTAINER"));

    let out = cli(&["--json", "self"]);
    assert!(out.status.success(), "{out:?}");

    // Errors: an unknown PID exits non-zero with the daemon's message; a bad one is
    // refused before asking.
    let out = cli(&["pid", &free_pid().to_string()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not found"),
        "{out:?}"
    );
    let out = cli(&["pid", "0"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let out = std::process::Command::new(daemon_bin())
        .args([
            "query",
            "--socket",
            "/nonexistent/collector.sock",
            "pid",
            "1",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is the daemon running"),
        "{out:?}"
    );
}
