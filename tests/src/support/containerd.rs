//! A private containerd for tests, never the machine's: its own root, state and sockets in a
//! temp dir, the CRI plugin on, started and stopped by PID. Every cgroup its containers get is
//! below a unique `collector-test-<pid>-<n>` prefix, and everything it made is removed on drop,
//! also after a failure.
//!
//! No registry is reachable, so the images are built here: an OCI layout holding one layer
//! made from the host's static busybox, imported with `ctr images import` under the CRI
//! plugin's sandbox image name and an app image name. Facts from containerd 1.6.20 (Debian 12):
//! the CRI plugin starts without any CNI config (it logs an error and serves host-network pods
//! only); `ctr images import` unpacks for the default snapshotter, which is what the CRI
//! plugin needs; the shims put their sockets in `/run/containerd/s` whatever the config
//! (named by a hash of the address, so they never clash with another containerd's); runc's
//! state goes wherever the runtime's `Root` option says, here under the temp dir.

use std::{
    fs,
    io::{self, ErrorKind},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use serde_json::json;
use tempfile::TempDir;

use super::host::{containerd_shims, on_path, terminate, unmount_below};

/// The CRI plugin's pause image (set as `sandbox_image`); built here, never pulled.
pub const SANDBOX_IMAGE: &str = "registry.k8s.io/pause:3.6";
/// The image for app containers: the same busybox image under another name.
pub const APP_IMAGE: &str = "localhost/collector-test-busybox:latest";
/// The containerd namespace of the CRI plugin.
pub const CRI_NAMESPACE: &str = "k8s.io";
/// The namespace of plain `ctr` containers.
pub const DEFAULT_NAMESPACE: &str = "default";

/// How long containerd has to answer after it is spawned.
pub const STARTUP_TIMEOUT: Duration = Duration::from_mins(1);
/// How long it has to exit after SIGTERM before it gets SIGKILL.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a cgroup may stay busy (a process exiting) before its removal gives up.
const CGROUP_REMOVE_TIMEOUT: Duration = Duration::from_secs(10);
/// The static busybox the images are made of (Debian's `busybox-static`).
const BUSYBOX: &str = "/bin/busybox";

/// Debian's CNI plugins (`containernetworking-plugins`).
const CNI_PLUGINS: &str = "/usr/lib/cni";
/// The addresses of pods with a network of their own: a private range that no route of these
/// machines uses (each pod's host end is routed, not bridged).
pub const POD_SUBNET: &str = "10.254.77.0/24";

/// Whether pods can get a network of their own: the CNI plugins the CRI plugin runs
/// (`ptp`, `host-local`, and `loopback` for the pod's `lo`).
#[must_use]
pub fn pod_network_available() -> bool {
    ["ptp", "host-local", "loopback"]
        .iter()
        .all(|plugin| Path::new(CNI_PLUGINS).join(plugin).is_file())
}

/// Whether the programs a private containerd needs are installed: `containerd`, `ctr` and
/// `runc` (Debian's `containerd` and `runc`, which `docker.io` depends on), the static
/// busybox, `tar` and `sha256sum`.
#[must_use]
pub fn containerd_available() -> bool {
    ["containerd", "ctr", "runc", "tar", "sha256sum"]
        .iter()
        .all(|program| on_path(program))
        && Path::new(BUSYBOX).is_file()
}

/// A running private containerd; stopped, and everything it made removed, on drop.
#[derive(Debug)]
pub struct Containerd {
    dir: Option<TempDir>,
    path: PathBuf,
    socket: PathBuf,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    cgroup_prefix: String,
    /// Whether the test stopped or killed it (and has not started it again).
    stopped: bool,
    /// A directory searched before `$PATH` for shims and `runc` (see
    /// [`Containerd::start_with_path_prefix`]).
    path_prefix: Option<PathBuf>,
    /// Whether pods get their own network namespace (see
    /// [`Containerd::start_with_pod_network`]).
    pod_network: bool,
}

impl Containerd {
    /// Writes the configuration, starts containerd, waits until it answers and imports
    /// [`SANDBOX_IMAGE`] and [`APP_IMAGE`] into the CRI namespace and [`APP_IMAGE`] into the
    /// default one. Panics (with containerd's log) when any step fails.
    #[must_use]
    pub fn start() -> Self {
        Self::start_with(None, false)
    }

    /// As [`Containerd::start`], with a CNI configuration so that pods not on the host's
    /// network get a network namespace of their own: the `ptp` plugin of Debian's
    /// `containernetworking-plugins` (`/usr/lib/cni`) makes a veth pair per pod, the pod's
    /// end `eth0` with an address of [`POD_SUBNET`], the host's end routed to it; no NAT, no
    /// bridge, nothing left on the host once the pod is removed (the host's end goes with
    /// the pod's namespace). `host-local` keeps its leases below the temp dir.
    #[must_use]
    pub fn start_with_pod_network() -> Self {
        Self::start_with(None, true)
    }

    /// As [`Containerd::start`], with `dir` first on containerd's `PATH` (which its shims
    /// inherit): containerd runs runtime `io.containerd.<name>.<version>` with the binary
    /// `containerd-shim-<name>-<version>` found there, so a test can stand in a shim for a
    /// runtime that cannot run here. `dir` must outlive the guard (its drop stops containers).
    #[must_use]
    pub fn start_with_path_prefix(dir: &Path) -> Self {
        Self::start_with(Some(dir.to_path_buf()), false)
    }

    fn start_with(path_prefix: Option<PathBuf>, pod_network: bool) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("collector-test-")
            .tempdir()
            .expect("creating a temp dir for containerd");
        let path = dir.path().to_path_buf();
        let mut containerd = Self {
            socket: path.join("containerd.sock"),
            config: path.join("config.toml"),
            log: path.join("containerd.log"),
            path,
            dir: Some(dir),
            child: None,
            cgroup_prefix: super::unique_name(),
            stopped: false,
            path_prefix,
            pod_network,
        };
        fs::write(&containerd.config, containerd.config_toml()).expect("writing config.toml");
        if pod_network {
            let conf = containerd.path.join("cni/conf");
            fs::create_dir_all(&conf).expect("creating the CNI conf dir");
            fs::write(
                conf.join("10-collector-test.conflist"),
                containerd.cni_conflist(),
            )
            .expect("writing the CNI config");
        }
        containerd.spawn();
        let archive = build_image_archive(&containerd.path.join("image"));
        for namespace in [CRI_NAMESPACE, DEFAULT_NAMESPACE] {
            containerd.ctr_ok(&[
                "-n",
                namespace,
                "images",
                "import",
                archive.to_str().expect("temp paths are UTF-8"),
            ]);
        }
        containerd
    }

    /// `version = 2` configuration: everything below the temp dir, no debug or metrics
    /// listener, the CRI streaming server on a port the kernel picks, no CNI config (so
    /// pods must use the host's network), runc's state below the temp dir too.
    /// `restrict_oom_score_adj`: the CRI plugin gives sandboxes an `oom_score_adj` of -998,
    /// which runc cannot set without `CAP_SYS_RESOURCE` (these machines' root lacks it:
    /// "nsexec: failed to update `/proc/self/oom_score_adj`: Permission denied"); restricted,
    /// it is never below containerd's own.
    fn config_toml(&self) -> String {
        let p = |sub: &str| self.path.join(sub).display().to_string();
        format!(
            r#"version = 2
root = "{root}"
state = "{state}"

[grpc]
  address = "{socket}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{SANDBOX_IMAGE}"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin}"
    conf_dir = "{cni_conf}"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
      Root = "{runc_root}"
"#,
            root = p("root"),
            state = p("state"),
            socket = self.socket.display(),
            opt = p("opt"),
            cni_bin = if self.pod_network {
                CNI_PLUGINS.to_owned()
            } else {
                p("cni/bin")
            },
            cni_conf = p("cni/conf"),
            runc_root = p("runc"),
        )
    }

    /// The CNI network of pods (see [`Containerd::start_with_pod_network`]).
    fn cni_conflist(&self) -> String {
        json!({
            "cniVersion": "1.0.0",
            "name": "collector-test",
            "plugins": [{
                "type": "ptp",
                "ipMasq": false,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{ "subnet": POD_SUBNET }]],
                    "dataDir": self.path.join("cni/ipam"),
                },
            }],
        })
        .to_string()
    }

    fn spawn(&mut self) {
        if let Err(e) = self.try_spawn() {
            panic!("{e}; containerd's log:\n{}", self.log());
        }
    }

    /// Starts containerd and waits until it answers (no panic: the guard's drop uses it).
    fn try_spawn(&mut self) -> Result<(), String> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .and_then(|log| Ok((log.try_clone()?, log)))
            .map_err(|e| format!("opening {}: {e}", self.log.display()))?;
        let mut cmd = Command::new("containerd");
        cmd.arg("--config")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.0)
            .stderr(log.1);
        if let Some(prefix) = &self.path_prefix {
            let mut dirs = vec![prefix.clone()];
            dirs.extend(std::env::split_paths(
                &std::env::var_os("PATH").unwrap_or_default(),
            ));
            let path =
                std::env::join_paths(dirs).map_err(|e| format!("{}: {e}", prefix.display()))?;
            cmd.env("PATH", path);
        }
        // Stopped by the guard; SIGTERM from the kernel if this thread dies first.
        super::process::die_with_parent(&mut cmd, libc::SIGTERM);
        let child = cmd
            .spawn()
            .map_err(|e| format!("spawning containerd: {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(format!("containerd exited ({status}) at start"));
            }
            if accepts(&self.socket) && self.ctr(&["version"]).status.success() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "containerd did not answer within {STARTUP_TIMEOUT:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Its gRPC socket (pass it to the daemon's `--containerd-socket`).
    #[must_use]
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// containerd's PID, while it runs.
    #[must_use]
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `/<prefix>/<sub>`: a cgroup path below this containerd's own prefix, for a pod's
    /// `cgroup_parent` (e.g. `kubepods/besteffort/pod<uid>`), removed with the guard.
    #[must_use]
    pub fn cgroup_path(&self, sub: &str) -> String {
        format!("/{}/{}", self.cgroup_prefix, sub.trim_matches('/'))
    }

    /// Everything it logged so far.
    #[must_use]
    pub fn log(&self) -> String {
        fs::read(&self.log).map_or_else(
            |e| format!("<log {} unreadable: {e}>", self.log.display()),
            |b| String::from_utf8_lossy(&b).into_owned(),
        )
    }

    /// `ctr -a <socket> args...`, whatever its status.
    #[must_use]
    pub fn ctr(&self, args: &[&str]) -> Output {
        ctr(&self.socket, args)
    }

    /// `ctr -a <socket> args...`, panicking unless it succeeds; its trimmed stdout.
    pub fn ctr_ok(&self, args: &[&str]) -> String {
        let output = self.ctr(args);
        assert!(
            output.status.success(),
            "ctr {args:?} failed ({}): {}\ncontainerd's log:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim(),
            self.log()
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// `ctr -n <namespace> run -d` of [`APP_IMAGE`] as container `id` with `labels`,
    /// running `command`, in the cgroup `/<prefix>/<namespace>/<id>`; removed on drop.
    #[must_use]
    pub fn run_container(
        &self,
        namespace: &str,
        id: &str,
        labels: &[(&str, &str)],
        command: &[&str],
    ) -> CtrContainer {
        let cgroup = self.cgroup_path(&format!("{namespace}/{id}"));
        self.run_container_in(namespace, id, &cgroup, labels, command)
    }

    /// As [`Self::run_container`], in the cgroup `cgroup` (a path below
    /// [`Self::cgroup_path`], e.g. the systemd driver's `cri-containerd-<id>.scope`, whose
    /// name tells the runtime).
    #[must_use]
    pub fn run_container_in(
        &self,
        namespace: &str,
        id: &str,
        cgroup: &str,
        labels: &[(&str, &str)],
        command: &[&str],
    ) -> CtrContainer {
        self.run_container_with_runtime(namespace, id, cgroup, None, labels, command)
    }

    /// As [`Self::run_container_in`], with containerd runtime `runtime` (`ctr run --runtime`,
    /// e.g. `io.containerd.kata.v2`) instead of runc's.
    #[must_use]
    pub fn run_container_with_runtime(
        &self,
        namespace: &str,
        id: &str,
        cgroup: &str,
        runtime: Option<&str>,
        labels: &[(&str, &str)],
        command: &[&str],
    ) -> CtrContainer {
        let fifo_dir = self.path.join("fifo").display().to_string();
        let runc_root = self.path.join("runc").display().to_string();
        let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut args = vec![
            "-n",
            namespace,
            "run",
            "-d",
            "--null-io",
            "--fifo-dir",
            &fifo_dir,
            "--runc-root",
            &runc_root,
            "--cgroup",
            cgroup,
        ];
        for label in &labels {
            args.extend(["--label", label.as_str()]);
        }
        if let Some(runtime) = runtime {
            args.extend(["--runtime", runtime]);
        }
        args.extend([APP_IMAGE, id]);
        args.extend_from_slice(command);
        // The guard first: `ctr run` can fail after creating the container.
        let container = CtrContainer {
            socket: self.socket.clone(),
            namespace: namespace.to_owned(),
            id: id.to_owned(),
        };
        self.ctr_ok(&args);
        container
    }

    /// Kills containerd with SIGKILL, as a crash would; its shims and containers run on.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            self.stopped = true;
        }
    }

    /// Stops containerd cleanly (SIGTERM), which removes its gRPC socket (containerd 1.6
    /// leaves the ttrpc one); its shims and containers run on.
    pub fn stop(&mut self) {
        if self.child.is_some() {
            self.terminate();
            self.stopped = true;
        }
    }

    /// Starts it again with the same configuration and state (after [`Containerd::kill`] or
    /// [`Containerd::stop`]).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "containerd is still running");
        self.spawn();
        self.stopped = false;
    }

    /// Removes every container of every namespace through containerd, tasks first.
    fn remove_all_containers(&self) {
        let listed = |args: &[&str]| -> Vec<String> {
            let output = self.ctr(args);
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect()
        };
        for namespace in listed(&["namespaces", "list", "-q"]) {
            for task in listed(&["-n", &namespace, "tasks", "list", "-q"]) {
                let _ = self.ctr(&["-n", &namespace, "tasks", "delete", "-f", &task]);
            }
            for container in listed(&["-n", &namespace, "containers", "list", "-q"]) {
                let _ = self.ctr(&["-n", &namespace, "containers", "delete", &container]);
            }
        }
    }

    fn terminate(&mut self) {
        if let Some(child) = self.child.take() {
            terminate(child, "containerd", SHUTDOWN_TIMEOUT);
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- private containerd ({}) log: ----\n{}\n---- end of log ----",
                self.socket.display(),
                self.log()
            );
        }
        // Containers left by a failed test are removed through containerd, started again
        // for that when it was killed.
        if self.stopped
            && let Err(e) = self.try_spawn()
        {
            eprintln!("warning: could not restart containerd to remove its containers: {e}");
        }
        self.remove_all_containers();
        self.terminate();
        for pid in containerd_shims(&self.socket) {
            eprintln!("warning: killing leftover shim {pid} of the test containerd");
            // SAFETY: kill(2) of a shim this containerd started (its command line names our
            // socket).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        unmount_below(&self.path);
        remove_cgroup_tree(&self.cgroup_prefix);
        // The shims' empty `/run/containerd/s` stays: another containerd (the machine's, or
        // another test's) may be about to put a socket there.
        drop(self.dir.take());
    }
}

/// A container made with `ctr run`; its task and it are removed on drop.
#[derive(Debug)]
pub struct CtrContainer {
    socket: PathBuf,
    namespace: String,
    id: String,
}

impl CtrContainer {
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl Drop for CtrContainer {
    fn drop(&mut self) {
        if !accepts(&self.socket) {
            return;
        }
        // `tasks delete -f` kills with SIGKILL first. While containerd is down both fail, and
        // the `Containerd` guard removes what is left.
        let _ = ctr(
            &self.socket,
            &["-n", &self.namespace, "tasks", "delete", "-f", &self.id],
        );
        let output = ctr(
            &self.socket,
            &["-n", &self.namespace, "containers", "delete", &self.id],
        );
        if !output.status.success() {
            eprintln!(
                "warning: ctr containers delete {}: {}",
                self.id,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
    }
}

/// Whether something listens on the unix socket `socket` (a killed containerd leaves its
/// socket file behind, refusing connections).
#[must_use]
pub fn accepts(socket: &Path) -> bool {
    std::os::unix::net::UnixStream::connect(socket).is_ok()
}

fn ctr(socket: &Path, args: &[&str]) -> Output {
    // ctr waits 10 s for a socket that does not answer by default.
    Command::new("ctr")
        .arg("-a")
        .arg(socket)
        .args(["--connect-timeout", "2s"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running ctr {args:?}: {e}"))
}

/// Builds an OCI image archive in `dir` with two images sharing one uncompressed layer
/// (`/bin/busybox` and a symlink per applet, `PATH=/bin`): [`SANDBOX_IMAGE`], whose
/// entrypoint is `sleep infinity` (the pause container's job), and [`APP_IMAGE`], whose
/// command is `/bin/sh`. Named by `io.containerd.image.name` annotations, which
/// `ctr images import` reads. The configs differ so that the images do: the CRI plugin
/// records one name per image id, so with one id the pause container would show the app
/// image's name. Returns the archive's path.
fn build_image_archive(dir: &Path) -> PathBuf {
    let rootfs = dir.join("rootfs");
    let layout = dir.join("layout");
    let blobs = layout.join("blobs/sha256");
    fs::create_dir_all(rootfs.join("bin")).expect("creating the image rootfs");
    fs::create_dir_all(&blobs).expect("creating the OCI layout");
    fs::copy(BUSYBOX, rootfs.join("bin/busybox")).expect("copying busybox");
    let applets = run_ok(Command::new(BUSYBOX).arg("--list"));
    for applet in applets.lines().map(str::trim) {
        if applet.is_empty() || applet == "busybox" || applet.contains('/') {
            continue;
        }
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet))
            .unwrap_or_else(|e| panic!("linking applet {applet}: {e}"));
    }
    let layer = dir.join("layer.tar");
    run_ok(
        Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .arg("-cf")
            .arg(&layer)
            .arg("."),
    );
    let layer = add_blob(&blobs, &fs::read(&layer).expect("reading the layer"));
    let sandbox = json!({"Env": ["PATH=/bin"], "Entrypoint": ["/bin/sleep", "infinity"]});
    let app = json!({"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]});
    let entries: Vec<_> = [(SANDBOX_IMAGE, sandbox), (APP_IMAGE, app)]
        .into_iter()
        .map(|(name, config)| {
            let manifest = add_manifest(&blobs, &layer, &config);
            json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest.digest,
                "size": manifest.size,
                "annotations": {"io.containerd.image.name": name},
            })
        })
        .collect();
    let index = json!({"schemaVersion": 2, "manifests": entries});
    fs::write(layout.join("index.json"), index.to_string()).expect("writing index.json");
    fs::write(
        layout.join("oci-layout"),
        json!({"imageLayoutVersion": "1.0.0"}).to_string(),
    )
    .expect("writing oci-layout");
    let archive = dir.join("image.tar");
    run_ok(
        Command::new("tar")
            .arg("-C")
            .arg(&layout)
            .arg("-cf")
            .arg(&archive)
            .arg("."),
    );
    archive
}

/// Adds the config (OCI `config` section `config`, over `layer`) and manifest of an image;
/// returns the manifest.
fn add_manifest(blobs: &Path, layer: &Blob, config: &serde_json::Value) -> Blob {
    let config = json!({
        "architecture": oci_architecture(),
        "os": "linux",
        "config": config,
        // The layer is uncompressed, so its digest is its diff id.
        "rootfs": {"type": "layers", "diff_ids": [layer.digest]},
    });
    let config = add_blob(blobs, config.to_string().as_bytes());
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config.digest,
            "size": config.size,
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": layer.digest,
            "size": layer.size,
        }],
    });
    add_blob(blobs, manifest.to_string().as_bytes())
}

/// A content-addressed blob of an OCI layout.
struct Blob {
    digest: String,
    size: usize,
}

fn add_blob(blobs: &Path, content: &[u8]) -> Blob {
    let staged = blobs.join("staged");
    fs::write(&staged, content).expect("writing a blob");
    let sum = run_ok(Command::new("sha256sum").arg(&staged));
    let hex = sum
        .split_whitespace()
        .next()
        .expect("sha256sum prints the digest first")
        .to_owned();
    fs::rename(&staged, blobs.join(&hex)).expect("naming a blob by its digest");
    Blob {
        digest: format!("sha256:{hex}"),
        size: content.len(),
    }
}

/// The OCI name of this machine's architecture.
fn oci_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// Runs `cmd`, panicking unless it succeeds; its stdout.
fn run_ok(cmd: &mut Command) -> String {
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        output.status.success(),
        "{cmd:?} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Where every cgroup hierarchy (v1 controllers and v2) is mounted.
#[must_use]
pub fn cgroup_mounts() -> Vec<PathBuf> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let fstype = right.split(' ').next()?;
            let mut fields = left.split(' ');
            let root = fields.nth(3)?;
            let point = fields.next()?;
            (matches!(fstype, "cgroup" | "cgroup2") && root == "/").then(|| PathBuf::from(point))
        })
        .collect()
}

/// Removes the cgroup `rel` (relative to the hierarchy roots, e.g. `collector-test-1-2` or
/// `collector-test-1-2/kubepods/besteffort/pod<uid>`) and everything below it, in every
/// hierarchy, deepest first. Only for cgroups the test made: a process still inside is
/// killed (it can only be one of the test's containers).
pub fn remove_cgroup_tree(rel: &str) {
    for mount in cgroup_mounts() {
        let top = mount.join(rel.trim_matches('/'));
        let mut dirs = Vec::new();
        collect_dirs(&top, &mut dirs);
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for dir in dirs {
            if let Err(e) = remove_cgroup(&dir) {
                eprintln!("warning: could not remove cgroup {}: {e}", dir.display());
            }
        }
    }
}

fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    out.push(dir.to_path_buf());
    for entry in entries.filter_map(Result::ok) {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            collect_dirs(&entry.path(), out);
        }
    }
}

fn remove_cgroup(dir: &Path) -> io::Result<()> {
    let deadline = Instant::now() + CGROUP_REMOVE_TIMEOUT;
    loop {
        if let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) {
            for pid in procs
                .lines()
                .filter_map(|l| l.trim().parse::<libc::pid_t>().ok())
            {
                // SAFETY: kill(2) of a process in a cgroup the test made.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Containerd, containerd_available, oci_architecture};
    use crate::support::{is_root, require};

    #[test]
    fn the_architecture_has_its_oci_name() {
        let arch = oci_architecture();
        assert!(!arch.is_empty());
        if cfg!(target_arch = "x86_64") {
            assert_eq!(arch, "amd64");
        }
    }

    #[test]
    fn a_private_containerd_runs_a_container_and_leaves_nothing() {
        if !require(
            "root, and containerd, runc and busybox-static installed",
            is_root() && containerd_available(),
        ) {
            return;
        }
        let containerd = Containerd::start();
        let dir = containerd.path.clone();
        let prefix = containerd.cgroup_prefix.clone();
        let images = containerd.ctr_ok(&["-n", super::CRI_NAMESPACE, "images", "list", "-q"]);
        assert!(
            images.lines().any(|l| l == super::SANDBOX_IMAGE),
            "{images}"
        );
        assert!(images.lines().any(|l| l == super::APP_IMAGE), "{images}");
        let id = crate::support::unique_name();
        let container =
            containerd.run_container(super::DEFAULT_NAMESPACE, &id, &[], &["sleep", "60"]);
        let tasks = containerd.ctr_ok(&["-n", super::DEFAULT_NAMESPACE, "tasks", "list"]);
        assert!(
            tasks
                .lines()
                .any(|l| l.starts_with(&id) && l.ends_with("RUNNING")),
            "{tasks}"
        );
        let socket = containerd.socket().to_path_buf();
        drop(container);
        drop(containerd);
        assert!(!dir.exists(), "{} is left", dir.display());
        assert!(!socket.exists());
        for mount in super::cgroup_mounts() {
            assert!(
                !mount.join(&prefix).exists(),
                "cgroup {prefix} left in {}",
                mount.display()
            );
        }
    }
}
