//! A private dockerd for tests that kill and restart Docker, never the machine's: its own
//! socket, data root, exec root, pid file and config file in a temp dir, and its own
//! containerd (a child of this test, not of dockerd) in a containerd namespace of its own.
//! Stopped by PID, and everything it made removed, on drop, also after a failure.
//!
//! Facts from docker.io 20.10 on Debian 12: without `--containerd`, dockerd uses
//! `/run/containerd/containerd.sock` when that exists and otherwise starts a containerd of
//! its own as its child; giving it one here makes both cases the same, and keeps containerd
//! (and so the containers, with `--live-restore`) alive when dockerd is killed. dockerd writes
//! its trust key to `/etc/docker/key.json` unless the config file's `deprecated-key-path` says
//! otherwise (there is no flag). On a SIGKILL it leaves its socket file (refusing connections)
//! and its bind mount of the data root; a new dockerd replaces the socket.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use tempfile::TempDir;

use super::host::{containerd_shims, on_path, terminate, unmount_below};

/// How long containerd, and then dockerd, have to answer after they are spawned.
pub const STARTUP_TIMEOUT: Duration = Duration::from_mins(1);
/// How long dockerd or containerd has to exit after SIGTERM before it gets SIGKILL.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
/// The static busybox the test image is made of (Debian's `busybox-static`).
const BUSYBOX: &str = "/bin/busybox";

/// Whether what a private dockerd needs is installed: `dockerd`, `docker`, `containerd` and
/// `ctr` (Debian's `docker.io` and its dependencies), `tar` and the static busybox.
#[must_use]
pub fn dockerd_available() -> bool {
    ["dockerd", "docker", "containerd", "ctr", "tar"]
        .iter()
        .all(|program| on_path(program))
        && Path::new(BUSYBOX).is_file()
}

/// A container of the private dockerd (removed by the [`PrivateDockerd`] guard).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivateContainer {
    /// The full 64-hex id.
    pub id: String,
    /// Its name, as given at `run` or by the last [`PrivateDockerd::rename`].
    pub name: String,
}

/// A running private dockerd and its containerd; both stopped on drop, after removing every
/// container, and their temp dir removed.
#[derive(Debug)]
pub struct PrivateDockerd {
    dir: Option<TempDir>,
    path: PathBuf,
    socket: PathBuf,
    containerd_socket: PathBuf,
    namespace: String,
    image: String,
    containerd: Option<Child>,
    dockerd: Option<Child>,
    /// The bridge made for this dockerd (see [`Bridge`]).
    bridge: Option<Bridge>,
}

impl PrivateDockerd {
    /// Starts containerd and dockerd, waits until dockerd answers, and imports the test image
    /// ([`super::docker::image`]) from the host's busybox. Panics with their logs when any
    /// step fails (the guard then removes what was made).
    #[must_use]
    pub fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("collector-test-")
            .tempdir()
            .expect("creating a temp dir for dockerd");
        let path = dir.path().to_path_buf();
        let mut dockerd = Self {
            socket: path.join("docker.sock"),
            containerd_socket: path.join("containerd.sock"),
            namespace: super::unique_name(),
            image: super::docker::image(),
            path,
            dir: Some(dir),
            containerd: None,
            dockerd: None,
            bridge: Some(Bridge::create()),
        };
        dockerd.write_configs();
        if let Err(e) = dockerd.spawn_containerd() {
            panic!("{e}; containerd's log:\n{}", dockerd.containerd_log());
        }
        dockerd.spawn_dockerd();
        dockerd.import_image();
        dockerd
    }

    /// Its API socket (pass it to the daemon's `--docker-socket`).
    #[must_use]
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// dockerd's PID, while it runs.
    #[must_use]
    pub fn pid(&self) -> Option<u32> {
        self.dockerd.as_ref().map(Child::id)
    }

    /// The image its containers run (the test image's name).
    #[must_use]
    pub fn image(&self) -> &str {
        &self.image
    }

    /// Everything dockerd logged so far (all its runs).
    #[must_use]
    pub fn log(&self) -> String {
        read_log(&self.path.join("dockerd.log"))
    }

    fn containerd_log(&self) -> String {
        read_log(&self.path.join("containerd.log"))
    }

    /// `docker -H unix://<socket> args...`, whatever its status.
    #[must_use]
    pub fn docker(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .arg("-H")
            .arg(format!("unix://{}", self.socket.display()))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running docker {args:?}: {e}"))
    }

    /// As [`PrivateDockerd::docker`], panicking unless it succeeds; its trimmed stdout.
    pub fn docker_ok(&self, args: &[&str]) -> String {
        let output = self.docker(args);
        assert!(
            output.status.success(),
            "docker {args:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// `docker run -d --network none --name <name_prefix>-<pid>-<n> --label k=v... <image>
    /// sleep 86400` (plus the `collector-test=1` label every test container carries).
    #[must_use]
    pub fn run(&self, name_prefix: &str, labels: &[(&str, &str)]) -> PrivateContainer {
        let name = format!(
            "{name_prefix}-{}-{}",
            std::process::id(),
            super::next_serial()
        );
        let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut args = vec![
            "run",
            "-d",
            "--network",
            "none",
            "--name",
            &name,
            "--label",
            super::docker::LABEL,
        ];
        for label in &labels {
            args.extend(["--label", label.as_str()]);
        }
        args.extend([self.image.as_str(), "sleep", "86400"]);
        let output = self.docker(&args);
        if !output.status.success() {
            // `docker run` can fail after creating the container: remove it by name.
            let _ = self.docker(&["rm", "-f", &name]);
            panic!(
                "docker {args:?} failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        let id = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        assert!(
            id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "docker run printed {id:?}, not a container id"
        );
        PrivateContainer { id, name }
    }

    /// `docker rename`: gives `container` a new unique name starting with `name_prefix`.
    pub fn rename(&self, container: &mut PrivateContainer, name_prefix: &str) {
        let name = format!(
            "{name_prefix}-{}-{}",
            std::process::id(),
            super::next_serial()
        );
        self.docker_ok(&["rename", &container.id, &name]);
        container.name = name;
    }

    /// `docker rm -f`.
    pub fn remove(&self, container: &PrivateContainer) {
        self.docker_ok(&["rm", "-f", &container.id]);
    }

    /// The host PID of a container's main process.
    #[must_use]
    pub fn main_pid(&self, container: &PrivateContainer) -> u32 {
        let pid = self.docker_ok(&["inspect", "-f", "{{.State.Pid}}", &container.id]);
        pid.parse()
            .unwrap_or_else(|_| panic!("docker inspect gave pid {pid:?} for {}", container.name))
    }

    /// Kills dockerd with SIGKILL, by its PID, as a crash would; its containers run on.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.dockerd.take() {
            // std's kill is SIGKILL to the child's PID, which is not reaped yet.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts dockerd again on the same state (stopping it first with SIGTERM if it runs);
    /// it restores the running containers (`--live-restore`).
    pub fn restart(&mut self) {
        self.terminate_dockerd();
        self.spawn_dockerd();
    }

    fn write_configs(&self) {
        let p = |sub: &str| self.path.join(sub).display().to_string();
        let containerd = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "{socket}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"
"#,
            root = p("containerd/root"),
            state = p("containerd/state"),
            socket = self.containerd_socket.display(),
            opt = p("containerd/opt"),
        );
        fs::write(self.path.join("containerd.toml"), containerd).expect("writing containerd.toml");
        let daemon = serde_json::json!({"deprecated-key-path": p("key.json")});
        fs::write(self.path.join("daemon.json"), daemon.to_string()).expect("writing daemon.json");
    }

    /// Starts containerd and waits until its socket accepts (no panic: the drop uses it).
    fn spawn_containerd(&mut self) -> Result<(), String> {
        let mut cmd = Command::new("containerd");
        cmd.arg("--config").arg(self.path.join("containerd.toml"));
        let child = self.spawn_logged(cmd, "containerd.log")?;
        self.containerd = Some(child);
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(status) = self
                .containerd
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.containerd = None;
                return Err(format!("containerd exited ({status}) at start"));
            }
            if std::os::unix::net::UnixStream::connect(&self.containerd_socket).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "containerd did not answer within {STARTUP_TIMEOUT:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn spawn_dockerd(&mut self) {
        if let Err(e) = self.try_spawn_dockerd() {
            panic!("{e}; dockerd's log:\n{}", tail(&self.log()));
        }
    }

    /// Starts dockerd and waits until `docker version` answers (no panic: the drop uses it).
    fn try_spawn_dockerd(&mut self) -> Result<(), String> {
        // The dockerd this replaces was reaped: its pid file is stale, and dockerd would
        // refuse to start if that PID were reused meanwhile.
        let _ = fs::remove_file(self.path.join("docker.pid"));
        let p = |sub: &str| self.path.join(sub);
        let mut cmd = Command::new("dockerd");
        cmd.arg("--host")
            .arg(format!("unix://{}", self.socket.display()))
            .arg("--data-root")
            .arg(p("data"))
            .arg("--exec-root")
            .arg(p("exec"))
            .arg("--pidfile")
            .arg(p("docker.pid"))
            .arg("--config-file")
            .arg(p("daemon.json"))
            .arg("--containerd")
            .arg(&self.containerd_socket)
            .arg("--containerd-namespace")
            .arg(&self.namespace)
            .arg("--containerd-plugins-namespace")
            .arg(format!("{}-plugins", self.namespace))
            // A bridge of its own, no iptables or forwarding changes: nothing else on the
            // host's network changes; the containers run with `--network none`.
            .args(self.bridge.iter().flat_map(Bridge::dockerd_args))
            .args([
                "--iptables=false",
                "--ip-forward=false",
                "--ip-masq=false",
                "--live-restore",
            ]);
        let child = self.spawn_logged(cmd, "dockerd.log")?;
        self.dockerd = Some(child);
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(status) = self
                .dockerd
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.dockerd = None;
                return Err(format!("dockerd exited ({status}) at start"));
            }
            if self.docker(&["version"]).status.success() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("dockerd did not answer within {STARTUP_TIMEOUT:?}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Spawns `cmd` with its output appended to `log` in the temp dir, SIGTERM'd by the kernel
    /// if this thread dies before the guard stops it.
    fn spawn_logged(&self, mut cmd: Command, log: &str) -> Result<Child, String> {
        let log = self.path.join(log);
        let file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .and_then(|f| Ok((f.try_clone()?, f)))
            .map_err(|e| format!("opening {}: {e}", log.display()))?;
        cmd.stdin(Stdio::null()).stdout(file.0).stderr(file.1);
        super::process::die_with_parent(&mut cmd, libc::SIGTERM);
        cmd.spawn()
            .map_err(|e| format!("spawning {}: {e}", cmd.get_program().display()))
    }

    /// Imports the test image: `/bin/busybox` and a symlink per applet, as xtask builds it
    /// for the machine's dockerd.
    fn import_image(&self) {
        let root = self.path.join("rootfs");
        let bin = root.join("bin");
        fs::create_dir_all(&bin).expect("creating the image rootfs");
        fs::copy(BUSYBOX, bin.join("busybox")).expect("copying busybox");
        let applets = Command::new(BUSYBOX)
            .arg("--list")
            .output()
            .expect("running busybox --list");
        for applet in String::from_utf8_lossy(&applets.stdout)
            .lines()
            .map(str::trim)
        {
            if applet.is_empty() || applet == "busybox" || applet.contains('/') {
                continue;
            }
            std::os::unix::fs::symlink("busybox", bin.join(applet))
                .unwrap_or_else(|e| panic!("linking applet {applet}: {e}"));
        }
        let mut tar = Command::new("tar")
            .arg("-C")
            .arg(&root)
            .args(["-c", "."])
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawning tar");
        let import = Command::new("docker")
            .arg("-H")
            .arg(format!("unix://{}", self.socket.display()))
            .args([
                "import",
                "--change",
                "ENV PATH=/bin",
                "--change",
                r#"CMD ["/bin/sh"]"#,
                "-",
                &self.image,
            ])
            .stdin(tar.stdout.take().expect("tar's stdout"))
            .output()
            .expect("running docker import");
        let tar_status = tar.wait().expect("waiting for tar");
        assert!(
            tar_status.success(),
            "tar -C {} -c . failed",
            root.display()
        );
        assert!(
            import.status.success(),
            "docker import failed: {}",
            String::from_utf8_lossy(&import.stderr).trim()
        );
        let _ = fs::remove_dir_all(&root);
    }

    fn terminate_dockerd(&mut self) {
        if let Some(child) = self.dockerd.take() {
            terminate(child, "dockerd", SHUTDOWN_TIMEOUT);
        }
    }

    /// Removes every task and container left in our containerd namespace (when dockerd could
    /// not do it), through `ctr`.
    fn sweep_containerd(&self) {
        let ctr = |args: &[&str]| {
            Command::new("ctr")
                .arg("-a")
                .arg(&self.containerd_socket)
                .args(["--connect-timeout", "2s", "-n", &self.namespace])
                .args(args)
                .stdin(Stdio::null())
                .output()
        };
        let listed = |args: &[&str]| -> Vec<String> {
            ctr(args)
                .map(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        for task in listed(&["tasks", "list", "-q"]) {
            eprintln!("warning: removing leftover task {task} through containerd");
            let _ = ctr(&["tasks", "delete", "-f", &task]);
        }
        for container in listed(&["containers", "list", "-q"]) {
            let _ = ctr(&["containers", "delete", &container]);
        }
    }
}

impl Drop for PrivateDockerd {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- private dockerd ({}) log: ----\n{}\n---- end of log ----",
                self.socket.display(),
                tail(&self.log())
            );
        }
        // A killed dockerd is started again to remove its containers the ordinary way.
        if self.dockerd.is_none()
            && self.containerd.is_some()
            && let Err(e) = self.try_spawn_dockerd()
        {
            eprintln!("warning: could not restart the test dockerd to remove its containers: {e}");
        }
        if self.dockerd.is_some() {
            // Every container of this dockerd is a test's.
            let listed = self.docker(&["ps", "-aq", "--no-trunc"]);
            let ids: Vec<String> = String::from_utf8_lossy(&listed.stdout)
                .split_whitespace()
                .map(str::to_owned)
                .collect();
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f"];
                args.extend(ids.iter().map(String::as_str));
                let output = self.docker(&args);
                if !output.status.success() {
                    eprintln!(
                        "warning: docker rm -f {ids:?}: {}",
                        String::from_utf8_lossy(&output.stderr).trim()
                    );
                }
            }
        }
        // With `--live-restore` a stopping dockerd leaves containers running: they are gone
        // by now, or removed through containerd below.
        self.terminate_dockerd();
        if self.containerd.is_some() {
            self.sweep_containerd();
        }
        if let Some(child) = self.containerd.take() {
            terminate(child, "containerd", SHUTDOWN_TIMEOUT);
        }
        for pid in containerd_shims(&self.containerd_socket) {
            eprintln!("warning: killing leftover shim {pid} of the test containerd");
            // SAFETY: kill(2) of a shim our containerd started (its command line names our
            // containerd's socket).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        unmount_below(&self.path);
        drop(self.bridge.take());
        if let Some(dir) = self.dir.take()
            && let Err(e) = dir.close()
        {
            eprintln!("warning: removing {}: {e}", self.path.display());
        }
    }
}

/// A bridge interface of the test's own for a private dockerd. dockerd 20.10 started with
/// `--bridge=none` deletes the host's `docker0` (`removeDefaultBridgeInterface`), which cuts off
/// the machine's dockerd's containers; with a bridge named for it, it leaves `docker0` alone.
/// Its address is from the benchmarking range 198.18.0.0/15 (RFC 2544), one /24 per bridge, so
/// it never overlaps `docker0`'s 172.17.0.0/16 or a real network; no container joins it.
/// Dropping it deletes the interface.
#[derive(Debug)]
struct Bridge {
    name: String,
    cidr: String,
}

impl Bridge {
    fn create() -> Self {
        let serial = super::next_serial();
        // Interface names are at most 15 bytes.
        let name = format!("cdk{}x{}", std::process::id() % 1_000_000, serial % 1_000);
        let cidr = format!(
            "198.18.{}.1/24",
            (std::process::id() as usize + serial) % 256
        );
        let status = Command::new("ip")
            .args(["link", "add", &name, "type", "bridge"])
            .status()
            .unwrap_or_else(|e| panic!("ip link add {name}: {e}"));
        assert!(status.success(), "ip link add {name} type bridge: {status}");
        let bridge = Self { name, cidr };
        // dockerd takes a given bridge's address as it is (`-b` and `--bip` exclude each
        // other), and would give it 172.17.0.1/16, docker0's, if it had none.
        let status = Command::new("ip")
            .args(["addr", "add", &bridge.cidr, "dev", &bridge.name])
            .status()
            .unwrap_or_else(|e| panic!("ip addr add {}: {e}", bridge.cidr));
        assert!(
            status.success(),
            "ip addr add {} dev {}: {status}",
            bridge.cidr,
            bridge.name
        );
        bridge
    }

    fn dockerd_args(&self) -> [String; 1] {
        [format!("--bridge={}", self.name)]
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        match Command::new("ip")
            .args(["link", "delete", &self.name])
            .status()
        {
            Ok(status) if status.success() => {}
            other => eprintln!("warning: ip link delete {}: {other:?}", self.name),
        }
    }
}

fn read_log(path: &Path) -> String {
    fs::read(path).map_or_else(
        |e| format!("<log {} unreadable: {e}>", path.display()),
        |b| String::from_utf8_lossy(&b).into_owned(),
    )
}

/// The last 60 lines of a log.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}
