//! A private Podman for tests: its own storage (`--root`, `--runroot`, `--tmpdir`) and its
//! own API service (`podman system service`) on a socket in a temp dir, so nothing of the
//! machine's Podman is used or changed. The service is started and stopped by PID; on drop
//! every container and pod is removed, the service stopped, the storage's mounts detached
//! and the temp dir removed, also after a failure.
//!
//! Facts from Podman 4.3.1 (Debian 12): Podman is daemonless, so the `podman` command works
//! on the storage with or without the service, and containers (each watched by its `conmon`)
//! outlive the service. With `--cgroup-manager cgroupfs` a container's cgroup is
//! `/libpod_parent/libpod-<id>` in every hierarchy and its conmon's
//! `/libpod_parent/conmon`. Podman raises `RLIMIT_NOFILE` to 1048576 by default, which a
//! container here may not do (the hard limit is lower), and `RLIMIT_NPROC` likewise in a
//! pod: every container is given `--ulimit nofile=1024:1024 --ulimit nproc=1024:1024`. A pod without an infra container (`--infra=false`) needs no
//! pause image, which no registry can provide here.
use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use tempfile::TempDir;

use super::host::{on_path, terminate, unmount_below};

/// The test image, imported from the host's static busybox.
pub const IMAGE: &str = "localhost/collector-test-busybox:latest";
/// The static busybox the image is made of (Debian's `busybox-static`).
const BUSYBOX: &str = "/bin/busybox";
/// How long the service has to answer after it is spawned.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the service has to exit after SIGTERM.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// Private Podmans alive in this process: the shared `/libpod_parent` cgroups are removed
/// by the last one only.
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// Whether what a private Podman needs is installed: `podman`, `conmon`, `tar` and the
/// static busybox (Debian's `podman` and `busybox-static`).
#[must_use]
pub fn podman_available() -> bool {
    ["podman", "conmon", "tar"].iter().all(|p| on_path(p)) && Path::new(BUSYBOX).is_file()
}

/// A container of the private Podman (removed by the [`PrivatePodman`] guard).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodmanContainer {
    /// The full 64-hex id.
    pub id: String,
    /// Its name.
    pub name: String,
}

/// A private Podman storage and its API service.
#[derive(Debug)]
pub struct PrivatePodman {
    dir: Option<TempDir>,
    path: PathBuf,
    socket: PathBuf,
    service: Option<Child>,
}

impl PrivatePodman {
    /// Imports the test image into a new storage and starts the service; panics with the
    /// service's log when it does not answer.
    #[must_use]
    pub fn start() -> Self {
        LIVE.fetch_add(1, Ordering::SeqCst);
        let dir = tempfile::Builder::new()
            .prefix("collector-podman-")
            .tempdir()
            .expect("creating a temp dir for podman");
        let path = dir.path().to_path_buf();
        let mut podman = Self {
            socket: path.join("podman.sock"),
            path,
            dir: Some(dir),
            service: None,
        };
        podman.import_image();
        podman.start_service();
        podman
    }

    /// Its API socket (pass it to the daemon's `--podman-socket`).
    #[must_use]
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Everything the service logged so far (all its runs).
    #[must_use]
    pub fn log(&self) -> String {
        fs::read_to_string(self.path.join("service.log")).unwrap_or_default()
    }

    /// The global options that put every `podman` command on the private storage.
    fn globals(&self) -> Vec<String> {
        let p = |sub: &str| self.path.join(sub).display().to_string();
        vec![
            "--root".into(),
            p("root"),
            "--runroot".into(),
            p("runroot"),
            "--tmpdir".into(),
            p("tmp"),
            "--cgroup-manager".into(),
            "cgroupfs".into(),
            "--events-backend".into(),
            "file".into(),
        ]
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new("podman");
        cmd.args(self.globals()).stdin(Stdio::null());
        cmd
    }

    /// `podman args...`, whatever its status.
    #[must_use]
    pub fn podman(&self, args: &[&str]) -> Output {
        self.command()
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running podman {args:?}: {e}"))
    }

    /// As [`PrivatePodman::podman`], panicking unless it succeeds; its trimmed stdout.
    pub fn podman_ok(&self, args: &[&str]) -> String {
        let output = self.podman(args);
        assert!(
            output.status.success(),
            "podman {args:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// [`image_tarball`] imported as [`IMAGE`].
    fn import_image(&self) {
        let tarball = image_tarball(&self.path);
        let tarball = tarball.to_str().expect("temp paths are UTF-8").to_owned();
        self.podman_ok(&["import", "--quiet", &tarball, IMAGE]);
    }

    /// Starts `podman system service --time=0` on the socket and waits until it answers.
    fn start_service(&mut self) {
        // A service killed with SIGKILL leaves its socket file behind.
        let _ = fs::remove_file(&self.socket);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path.join("service.log"))
            .expect("opening the service log");
        let child = self
            .command()
            .args(["system", "service", "--time=0"])
            .arg(format!("unix://{}", self.socket.display()))
            .stdout(log.try_clone().expect("cloning the log"))
            .stderr(log)
            .spawn()
            .expect("spawning podman system service");
        self.service = Some(child);
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while !answers(&self.socket) {
            assert!(
                Instant::now() < deadline,
                "podman system service did not answer within {STARTUP_TIMEOUT:?}; its log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The service's PID, while it runs.
    #[must_use]
    pub fn service_pid(&self) -> Option<u32> {
        self.service.as_ref().map(Child::id)
    }

    /// Kills the service with SIGKILL, by its PID, as a crash would; containers run on.
    pub fn kill_service(&mut self) {
        if let Some(mut child) = self.service.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the service again (after [`Self::kill_service`]).
    pub fn restart_service(&mut self) {
        if let Some(child) = self.service.take() {
            terminate(child, "podman system service", SHUTDOWN_TIMEOUT);
        }
        self.start_service();
    }

    /// `podman pod create --infra=false --name <name_prefix>-<pid>-<n>`: the pod's name.
    #[must_use]
    pub fn create_pod(&self, name_prefix: &str) -> String {
        let name = unique(name_prefix);
        self.podman_ok(&["pod", "create", "--infra=false", "--name", &name]);
        name
    }

    /// `podman run -d --network none --name <name_prefix>-<pid>-<n> --label k=v...
    /// [--pod pod] <image> sleep 86400`.
    #[must_use]
    pub fn run(
        &self,
        name_prefix: &str,
        labels: &[(&str, &str)],
        pod: Option<&str>,
    ) -> PodmanContainer {
        self.run_command(name_prefix, labels, pod, &["sleep", "86400"])
    }

    /// As [`Self::run`] with `command` run in the image.
    #[must_use]
    pub fn run_command(
        &self,
        name_prefix: &str,
        labels: &[(&str, &str)],
        pod: Option<&str>,
        command: &[&str],
    ) -> PodmanContainer {
        let name = unique(name_prefix);
        let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut args = vec![
            "run",
            "-d",
            "--network",
            "none",
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
            "--name",
            &name,
            "--label",
            super::docker::LABEL,
        ];
        for label in &labels {
            args.extend(["--label", label.as_str()]);
        }
        if let Some(pod) = pod {
            args.extend(["--pod", pod]);
        }
        args.push(IMAGE);
        args.extend(command);
        let output = self.podman(&args);
        if !output.status.success() {
            let _ = self.podman(&["rm", "-f", &name]);
            panic!(
                "podman {args:?} failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        let id = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        assert!(
            id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "podman run printed {id:?}, not a container id"
        );
        PodmanContainer { id, name }
    }

    /// The host PID of a container's main process.
    #[must_use]
    pub fn main_pid(&self, container: &PodmanContainer) -> u32 {
        self.inspect_pid(container, "{{.State.Pid}}")
    }

    /// The PID of a container's conmon.
    #[must_use]
    pub fn conmon_pid(&self, container: &PodmanContainer) -> u32 {
        self.inspect_pid(container, "{{.State.ConmonPid}}")
    }

    fn inspect_pid(&self, container: &PodmanContainer, format: &str) -> u32 {
        let pid = self.podman_ok(&["inspect", "-f", format, &container.id]);
        pid.parse()
            .unwrap_or_else(|_| panic!("podman inspect {format} gave {pid:?}"))
    }
}

/// `dir/image.tar`: a folder (`dir/image`) with busybox and its applets' links.
pub(crate) fn image_tarball(dir: &Path) -> PathBuf {
    let rootfs = dir.join("image");
    let bin = rootfs.join("bin");
    fs::create_dir_all(&bin).expect("creating the image folder");
    fs::copy(BUSYBOX, bin.join("busybox")).expect("copying busybox");
    for applet in ["sh", "sleep", "cat", "head", "true"] {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).expect("linking an applet");
    }
    let tarball = dir.join("image.tar");
    let status = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tarball)
        .arg(".")
        .status()
        .expect("running tar");
    assert!(status.success(), "tar of the image failed: {status}");
    tarball
}

/// `<prefix>-<pid>-<n>`, unique in this run.
fn unique(prefix: &str) -> String {
    format!("{prefix}-{}-{}", std::process::id(), super::next_serial())
}

/// Whether the libpod API answers `GET /_ping` on `socket`.
pub(crate) fn answers(socket: &Path) -> bool {
    std::os::unix::net::UnixStream::connect(socket).is_ok_and(|mut stream| {
        use std::io::{Read as _, Write as _};
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let mut answer = String::new();
        stream
            .write_all(b"GET /v4.0.0/libpod/_ping HTTP/1.0\r\nHost: podman\r\n\r\n")
            .is_ok()
            && stream.read_to_string(&mut answer).is_ok()
            && answer.starts_with("HTTP/1.")
            && answer.contains(" 200 ")
    })
}

impl Drop for PrivatePodman {
    fn drop(&mut self) {
        // Containers first (through the storage, with or without the service), then pods.
        let _ = self.podman(&["rm", "-f", "-a", "-t", "0"]);
        let _ = self.podman(&["pod", "rm", "-f", "-a"]);
        if let Some(child) = self.service.take() {
            terminate(child, "podman system service", SHUTDOWN_TIMEOUT);
        }
        unmount_below(&self.path);
        if let Some(dir) = self.dir.take()
            && let Err(e) = dir.close()
        {
            eprintln!("warning: removing the podman temp dir: {e}");
        }
        if LIVE.fetch_sub(1, Ordering::SeqCst) == 1 {
            // Podman's cgroupfs parents, empty once every container is gone (rmdir refuses
            // a cgroup with members or children, so nothing in use is removed).
            for mount in super::containerd::cgroup_mounts() {
                let _ = fs::remove_dir(mount.join("libpod_parent/conmon"));
                let _ = fs::remove_dir(mount.join("libpod_parent"));
            }
        }
    }
}
