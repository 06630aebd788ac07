//! Network namespaces for tests: a pair joined by a veth link, so traffic between them goes
//! through a real (non-loopback) device, and removed with everything in them on drop.
//!
//! Made with iproute2 (`ip netns add`, `ip link add ... type veth peer ...`): each namespace
//! is `collector-test-<pid>-<n>-{a,b}` (a bind mount under `/run/netns`); the veth ends are
//! created directly inside them, so no interface ever appears in the host's namespace and
//! deleting the namespaces deletes the link. Processes are started inside with
//! `ip netns exec NAME ...`, which `setns`es and then execs the command in the same process.

use std::process::{Command, Stdio};

/// Two network namespaces `a` and `b` joined by a veth pair, `a` at [`NetnsPair::ADDR_A`] and
/// `b` at [`NetnsPair::ADDR_B`] (a /24 of their own: namespaces do not see each other's or the
/// host's addresses), loopback up in both. Deleted on drop.
#[derive(Debug)]
pub struct NetnsPair {
    a: String,
    b: String,
}

impl NetnsPair {
    /// Address of the veth end in namespace `a`.
    pub const ADDR_A: &'static str = "10.231.0.1";
    /// Address of the veth end in namespace `b`.
    pub const ADDR_B: &'static str = "10.231.0.2";

    /// Creates the namespaces and the link; panics (after removing what it made) when
    /// iproute2 fails, e.g. without root.
    #[must_use]
    pub fn new() -> Self {
        let base = super::unique_name();
        let pair = Self {
            a: format!("{base}-a"),
            b: format!("{base}-b"),
        };
        // From here on the guard exists: a failure below still deletes what was made.
        ip(&["netns", "add", &pair.a]);
        ip(&["netns", "add", &pair.b]);
        ip(&[
            "link", "add", "veth0", "netns", &pair.a, "type", "veth", "peer", "name", "veth0",
            "netns", &pair.b,
        ]);
        for (ns, addr) in [(&pair.a, Self::ADDR_A), (&pair.b, Self::ADDR_B)] {
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "veth0",
            ]);
            ip(&["-n", ns, "link", "set", "veth0", "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        pair
    }

    /// The name of namespace `a`.
    #[must_use]
    pub fn a(&self) -> &str {
        &self.a
    }

    /// The name of namespace `b`.
    #[must_use]
    pub fn b(&self) -> &str {
        &self.b
    }

    /// `ip netns exec <ns> argv...`, to be spawned (in a cgroup, say).
    #[must_use]
    pub fn command(ns: &str, argv: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns]).args(argv);
        cmd
    }
}

impl Default for NetnsPair {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let deleted = Command::new("ip")
                .args(["netns", "del", ns])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !deleted && std::path::Path::new("/run/netns").join(ns).exists() {
                eprintln!("warning: could not delete test network namespace {ns}");
            }
        }
    }
}

/// Runs `ip args...`, panicking with its stderr unless it succeeds.
fn ip(args: &[&str]) {
    let output = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running ip {args:?} (is iproute2 installed?): {e}"));
    assert!(
        output.status.success(),
        "ip {args:?} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
}

/// Whether `ip` (iproute2) can be run.
#[must_use]
pub fn iproute2_available() -> bool {
    Command::new("ip")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether `pid` (in its own network namespace) has a TCP socket listening on `port`, from
/// `/proc/<pid>/net/tcp` and `tcp6` (which show the namespace of that process; busybox `nc`
/// listens on an IPv6 wildcard socket that takes IPv4 too).
#[must_use]
pub fn is_listening(pid: u32, port: u16) -> bool {
    let local_port = format!(":{port:04X}");
    ["tcp", "tcp6"].iter().any(|table| {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
            return false;
        };
        // sl local_address rem_address st ...; st 0A is TCP_LISTEN.
        text.lines().skip(1).any(|line| {
            let mut fields = line.split_whitespace();
            let local = fields.nth(1).unwrap_or_default();
            let state = fields.nth(1).unwrap_or_default();
            local.ends_with(&local_port) && state == "0A"
        })
    })
}
