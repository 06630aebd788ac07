//! Docker for the integration tests and benches: Debian's `docker.io`, a `dockerd` that xtask
//! starts (and stops again) when none answers, and the test image built from busybox-static,
//! since no image registry is reachable from these machines.
//!
//! dockerd runs with `--iptables=false --ip-forward=false`: by default it rewrites the host's
//! iptables (FORWARD policy DROP, NAT rules) and turns on IPv4 forwarding, and leaves both
//! behind when it stops. The tests only need containers on the docker0 bridge, which
//! works without either (verified on Debian 12, docker.io 20.10, kernel 6.18).

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::{
    cmd::{Cmd, target_dir},
    setup::ensure_apt_packages,
};

/// The image the tests run containers from (`COLLECTOR_TEST_IMAGE`).
pub(crate) const TEST_IMAGE: &str = "collector-test-busybox:latest";

const STARTUP_TIMEOUT: Duration = Duration::from_mins(1);
const SHUTDOWN_TIMEOUT: Duration = Duration::from_mins(1);
const BRIDGE: &str = "/sys/class/net/docker0";

/// Installs what containers need (and iproute2, with which the kernel-counter tests join two
/// network namespaces by a veth link), makes sure a Docker daemon answers and the test image
/// exists. Keep the returned guard alive while containers are in use: it stops the dockerd we
/// started.
pub(crate) fn prepare() -> Result<Option<Dockerd>> {
    ensure_apt_packages(&["docker.io", "busybox-static", "iproute2"])?;
    let dockerd = ensure_daemon()?;
    ensure_test_image()?;
    Ok(dockerd)
}

/// A dockerd started by xtask; dropping it stops it (SIGTERM, then SIGKILL after a minute).
pub(crate) struct Dockerd {
    child: Child,
    log: PathBuf,
    bridge_existed: bool,
}

fn docker_answers() -> bool {
    Cmd::root("docker")
        .arg("info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .probe_quietly()
        .is_ok_and(|out| out.status.success())
}

fn ensure_daemon() -> Result<Option<Dockerd>> {
    eprintln!("$ docker info  (is a Docker daemon answering?)");
    if docker_answers() {
        return Ok(None);
    }
    let log_dir = target_dir().join("xtask");
    fs::create_dir_all(&log_dir).with_context(|| format!("creating {}", log_dir.display()))?;
    let log = log_dir.join("dockerd.log");
    let file = fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    let bridge_existed = Path::new(BRIDGE).exists();
    let child = Cmd::root("dockerd")
        .args(["--iptables=false", "--ip-forward=false"])
        .stdin(Stdio::null())
        .stdout(
            file.try_clone()
                .context("duplicating the dockerd log handle")?,
        )
        .stderr(file)
        .spawn()?;
    eprintln!(
        "dockerd started (pid {}), log in {}",
        child.id(),
        log.display()
    );
    let mut dockerd = Dockerd {
        child,
        log,
        bridge_existed,
    };
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        if docker_answers() {
            return Ok(Some(dockerd));
        }
        if let Some(status) = dockerd.child.try_wait().context("waiting for dockerd")? {
            bail!(
                "dockerd exited with {status} before answering; its log ({}):\n{}",
                dockerd.log.display(),
                tail(&dockerd.log)
            );
        }
        if Instant::now() > deadline {
            bail!(
                "dockerd did not answer `docker info` within {STARTUP_TIMEOUT:?}; its log ({}):\n{}",
                dockerd.log.display(),
                tail(&dockerd.log)
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let pid = self.child.id();
        eprintln!("stopping the dockerd xtask started (pid {pid})");
        let pid = libc::pid_t::try_from(pid).expect("pid fits pid_t");
        // SAFETY: plain kill(2) on our own child, which we have not reaped yet.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + SHUTDOWN_TIMEOUT;
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() > deadline => {
                    eprintln!("dockerd still running after {SHUTDOWN_TIMEOUT:?}: SIGKILL");
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
        // dockerd leaves its bridge behind; remove it only when it was not there before us.
        if !self.bridge_existed && Path::new(BRIDGE).exists() {
            let result = Cmd::root("ip").args(["link", "delete", "docker0"]).run();
            if let Err(e) = result {
                eprintln!("warning: {e:#}");
            }
        }
    }
}

/// The last lines of a log file, for error messages.
fn tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Builds `collector-test-busybox:latest` from the host's static busybox unless it exists:
/// a root with `bin/busybox` and one symlink per applet, imported as a single-layer image.
fn ensure_test_image() -> Result<()> {
    let exists = Cmd::root("docker")
        .args(["image", "inspect", TEST_IMAGE])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .probe()?
        .status
        .success();
    if exists {
        return Ok(());
    }
    let busybox = Path::new("/bin/busybox");
    let root = target_dir().join("xtask").join("busybox-rootfs");
    if root.exists() {
        fs::remove_dir_all(&root).with_context(|| format!("removing {}", root.display()))?;
    }
    let bin = root.join("bin");
    fs::create_dir_all(&bin).with_context(|| format!("creating {}", bin.display()))?;
    let result = fill_and_import(busybox, &root, &bin);
    let _ = fs::remove_dir_all(&root);
    result
}

fn fill_and_import(busybox: &Path, root: &Path, bin: &Path) -> Result<()> {
    fs::copy(busybox, bin.join("busybox"))
        .with_context(|| format!("copying {} into {}", busybox.display(), bin.display()))?;
    let applets = Cmd::new(busybox).arg("--list").read_stdout()?;
    for applet in applets.lines().map(str::trim) {
        if applet.is_empty() || applet == "busybox" || applet.contains('/') {
            continue;
        }
        std::os::unix::fs::symlink("busybox", bin.join(applet))
            .with_context(|| format!("linking applet {applet}"))?;
    }
    let mut tar = Cmd::new("tar")
        .arg("-C")
        .arg(root)
        .args(["-c", "."])
        .stdout(Stdio::piped())
        .spawn()?;
    let tar_out = tar.stdout.take().context("tar's stdout")?;
    let import = Cmd::root("docker")
        .args([
            "import",
            "--change",
            "ENV PATH=/bin",
            "--change",
            r#"CMD ["/bin/sh"]"#,
            "-",
            TEST_IMAGE,
        ])
        .stdin(tar_out)
        .run();
    let tar_status = tar.wait().context("waiting for tar")?;
    import?;
    if !tar_status.success() {
        bail!("tar -C {} -c . failed: {tar_status}", root.display());
    }
    Ok(())
}
