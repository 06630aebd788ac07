//! A rootless Podman for tests: a dedicated system user made for the test (`useradd`), a
//! subuid/subgid range for it, its runtime directory `/run/user/<uid>` (what logind would
//! make at login), and its own `podman system service` on
//! `/run/user/<uid>/podman/podman.sock`, run as that user. On drop, also after a failure:
//! its containers removed, the service stopped by its PID, every process of the user
//! killed by PID (all are the test's: the user is), the runtime directory removed when this
//! guard made it, `userdel -r`, and exactly the subuid/subgid lines it added removed.
//!
//! Facts from Podman 4.3.1 (Debian 12) on a cgroup v1 host without a systemd user session:
//! rootless Podman needs `newuidmap`/`newgidmap` (Debian's `uidmap`) and the user's ranges
//! in `/etc/subuid` and `/etc/subgid`; it cannot create cgroups (`cgroupControllers: []`),
//! so a container's processes (and its conmon) stay in the cgroups of whoever started them;
//! its stats API answers 409 ("only available for cgroup v2"). `podman system service`
//! does not create the socket's folder, and removes the socket when it stops on SIGTERM.
//! Storage is `vfs` (needs no fuse or overlay mount in the user namespace). A `podman`
//! pause process holds the user namespace after the first command.
use std::{
    fs,
    io::Write as _,
    os::unix::fs::{MetadataExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use tempfile::TempDir;

use super::{
    cgroup::TestCgroup,
    host::{on_path, terminate},
    podman::{IMAGE, PodmanContainer, answers, podman_available},
    process::enter_before_exec,
};

/// Where logind makes users' runtime directories.
const RUN_USER: &str = "/run/user";
/// How many subordinate ids the user gets (what `useradd` gives a regular user).
const SUBID_COUNT: u64 = 65_536;
/// The lowest subordinate id handed out (above Debian's regular users' ranges at 100000).
const SUBID_FLOOR: u64 = 1_000_000_000;
/// How long the service has to answer after it is spawned.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the service has to exit after SIGTERM.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether what a rootless Podman needs is installed: a private Podman's needs, and
/// `useradd`, `userdel`, `setpriv`, `newuidmap`, `newgidmap`.
#[must_use]
pub fn rootless_podman_available() -> bool {
    podman_available()
        && ["useradd", "userdel", "setpriv", "newuidmap", "newgidmap"]
            .iter()
            .all(|p| on_path(p))
}

/// A test user with its own rootless Podman service.
#[derive(Debug)]
pub struct RootlessPodman {
    user: String,
    uid: u32,
    gid: u32,
    /// Holds the user's home (`userdel -r` removes it; the temp dir goes after).
    dir: Option<TempDir>,
    home: PathBuf,
    /// Lines this guard appended to `/etc/subuid` and `/etc/subgid`.
    subid_line: Option<String>,
    runtime_dir: PathBuf,
    made_runtime_dir: bool,
    made_run_user: bool,
    service: Option<Child>,
    user_made: bool,
}

impl RootlessPodman {
    /// Makes the user and its runtime directory, imports the test image as that user and
    /// starts its service; panics (cleaning up) when a step fails.
    #[must_use]
    pub fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("collector-rootless-")
            .tempdir()
            .expect("creating a temp dir for the rootless user");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))
            .expect("opening the temp dir to the user");
        let user = format!("crl{}x{}", std::process::id(), super::next_serial());
        let mut podman = Self {
            home: dir.path().join("home"),
            dir: Some(dir),
            user,
            uid: 0,
            gid: 0,
            subid_line: None,
            runtime_dir: PathBuf::new(),
            made_runtime_dir: false,
            made_run_user: false,
            service: None,
            user_made: false,
        };
        podman.add_user();
        podman.add_subids();
        podman.make_runtime_dir();
        podman.import_image();
        podman.start_service();
        podman
    }

    /// `useradd` of a system user (no subids of its own, no mail) with its home here.
    fn add_user(&mut self) {
        let status = Command::new("useradd")
            .args(["--system", "--user-group", "--create-home", "--shell"])
            .arg("/usr/sbin/nologin")
            .arg("--home-dir")
            .arg(&self.home)
            .arg(&self.user)
            .status()
            .expect("running useradd");
        assert!(status.success(), "useradd {} failed: {status}", self.user);
        self.user_made = true;
        let meta = fs::metadata(&self.home).expect("the new user's home");
        (self.uid, self.gid) = (meta.uid(), meta.gid());
        assert_ne!(self.uid, 0, "useradd gave uid 0");
    }

    /// Appends `<user>:<start>:65536` to `/etc/subuid` and `/etc/subgid`, `start` past every
    /// range either file already has.
    fn add_subids(&mut self) {
        let end_of = |path: &str| {
            fs::read_to_string(path)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| {
                    let mut f = l.split(':').skip(1);
                    Some(f.next()?.parse::<u64>().ok()? + f.next()?.parse::<u64>().ok()?)
                })
                .max()
                .unwrap_or(0)
        };
        let start = SUBID_FLOOR
            .max(end_of("/etc/subuid"))
            .max(end_of("/etc/subgid"));
        let line = format!("{}:{start}:{SUBID_COUNT}", self.user);
        self.subid_line = Some(line.clone());
        for path in ["/etc/subuid", "/etc/subgid"] {
            let mut file = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .unwrap_or_else(|e| panic!("opening {path}: {e}"));
            writeln!(file, "{line}").unwrap_or_else(|e| panic!("writing {path}: {e}"));
        }
    }

    /// `/run/user/<uid>` (0700, the user's) and its `podman` folder, as logind would.
    fn make_runtime_dir(&mut self) {
        if !Path::new(RUN_USER).exists() {
            fs::create_dir(RUN_USER).expect("creating /run/user");
            fs::set_permissions(RUN_USER, fs::Permissions::from_mode(0o755))
                .expect("chmod /run/user");
            self.made_run_user = true;
        }
        self.runtime_dir = Path::new(RUN_USER).join(self.uid.to_string());
        assert!(
            !self.runtime_dir.exists(),
            "{} exists already: another user with uid {} left it",
            self.runtime_dir.display(),
            self.uid
        );
        fs::create_dir(&self.runtime_dir).expect("creating the runtime dir");
        self.made_runtime_dir = true;
        fs::set_permissions(&self.runtime_dir, fs::Permissions::from_mode(0o700))
            .expect("chmod the runtime dir");
        let podman_dir = self.runtime_dir.join("podman");
        fs::create_dir(&podman_dir).expect("creating the socket's folder");
        for path in [&self.runtime_dir, &podman_dir] {
            std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid))
                .expect("chown to the user");
        }
    }

    /// The user's uid.
    #[must_use]
    pub fn uid(&self) -> u32 {
        self.uid
    }

    /// The user's API socket, `/run/user/<uid>/podman/podman.sock`.
    #[must_use]
    pub fn socket(&self) -> PathBuf {
        self.runtime_dir.join("podman/podman.sock")
    }

    /// `podman` run as the user, in its session's environment, on `vfs` storage.
    fn command(&self) -> Command {
        let mut cmd = Command::new("setpriv");
        cmd.arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.gid))
            .args(["--init-groups", "--", "podman"])
            .args(["--storage-driver", "vfs", "--cgroup-manager", "cgroupfs"])
            .args(["--events-backend", "file"])
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("HOME", &self.home)
            .env("USER", &self.user)
            .env("LOGNAME", &self.user)
            .env("XDG_RUNTIME_DIR", &self.runtime_dir)
            .current_dir(&self.home)
            .stdin(Stdio::null());
        cmd
    }

    /// `podman args...` as the user, whatever its status.
    #[must_use]
    pub fn podman(&self, args: &[&str]) -> Output {
        self.command()
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running podman {args:?} as {}: {e}", self.user))
    }

    /// As [`Self::podman`], panicking unless it succeeds; its trimmed stdout.
    pub fn podman_ok(&self, args: &[&str]) -> String {
        let output = self.podman(args);
        assert!(
            output.status.success(),
            "podman {args:?} as {} failed ({}): {}",
            self.user,
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// The static busybox as [`IMAGE`], in the user's storage.
    fn import_image(&self) {
        let tarball = super::podman::image_tarball(&self.home);
        std::os::unix::fs::chown(&tarball, Some(self.uid), Some(self.gid))
            .expect("giving the image to the user");
        let tarball = tarball.to_str().expect("temp paths are UTF-8").to_owned();
        self.podman_ok(&["import", "--quiet", &tarball, IMAGE]);
    }

    /// Everything the service logged so far (all its runs).
    #[must_use]
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir
            .as_ref()
            .map_or_else(PathBuf::new, |d| d.path().join("service.log"))
    }

    /// Starts the user's `podman system service --time=0` and waits until it answers.
    pub fn start_service(&mut self) {
        assert!(self.service.is_none(), "the service runs already");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("opening the service log");
        let child = self
            .command()
            .args(["system", "service", "--time=0"])
            .arg(format!("unix://{}", self.socket().display()))
            .stdout(log.try_clone().expect("cloning the log"))
            .stderr(log)
            .spawn()
            .expect("spawning podman system service");
        self.service = Some(child);
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while !answers(&self.socket()) {
            assert!(
                Instant::now() < deadline,
                "the rootless service did not answer within {STARTUP_TIMEOUT:?}; its log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the service (SIGTERM by its PID): it removes its socket; containers run on.
    pub fn stop_service(&mut self) {
        if let Some(child) = self.service.take() {
            terminate(child, "rootless podman system service", SHUTDOWN_TIMEOUT);
        }
    }

    /// `podman run -d --network none --name <prefix>-<pid>-<n> --label k=v... <image>
    /// sleep 86400` as the user.
    #[must_use]
    pub fn run(&self, name_prefix: &str, labels: &[(&str, &str)]) -> PodmanContainer {
        self.run_from(name_prefix, labels, None)
    }

    /// As [`Self::run`], with `podman run` started inside `cgroup`: rootless Podman on
    /// cgroup v1 creates none, so the container's processes stay there.
    #[must_use]
    pub fn run_in_cgroup(
        &self,
        name_prefix: &str,
        labels: &[(&str, &str)],
        cgroup: &TestCgroup,
    ) -> PodmanContainer {
        self.run_from(name_prefix, labels, Some(cgroup))
    }

    fn run_from(
        &self,
        name_prefix: &str,
        labels: &[(&str, &str)],
        cgroup: Option<&TestCgroup>,
    ) -> PodmanContainer {
        let name = format!(
            "{name_prefix}-{}-{}",
            std::process::id(),
            super::next_serial()
        );
        let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut args = vec!["run", "-d", "--network", "none", "--name", &name];
        args.extend([
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
        ]);
        for label in &labels {
            args.extend(["--label", label.as_str()]);
        }
        args.extend([IMAGE, "sleep", "86400"]);
        let mut cmd = self.command();
        cmd.args(&args);
        if let Some(cgroup) = cgroup {
            enter_before_exec(&mut cmd, &cgroup.procs_files());
        }
        let output = cmd.output().expect("running podman run as the user");
        assert!(
            output.status.success(),
            "podman {args:?} as {} failed ({}): {}",
            self.user,
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
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
        let pid = self.podman_ok(&["inspect", "-f", "{{.State.Pid}}", &container.id]);
        pid.parse()
            .unwrap_or_else(|_| panic!("podman inspect gave the PID {pid:?}"))
    }

    /// The PIDs of every process running as the user or as one of its subordinate uids
    /// (a container's root is the user itself; its other uids are the range's).
    fn user_pids(&self) -> Vec<i32> {
        let range = self.subid_range();
        let Ok(entries) = fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                fs::metadata(format!("/proc/{pid}")).is_ok_and(|m| {
                    m.uid() == self.uid || range.as_ref().is_some_and(|r| r.contains(&m.uid()))
                })
            })
            .collect()
    }

    /// The subordinate uids this guard gave the user.
    fn subid_range(&self) -> Option<std::ops::Range<u32>> {
        let mut fields = self.subid_line.as_deref()?.split(':').skip(1);
        let start: u32 = fields.next()?.parse().ok()?;
        let count: u32 = fields.next()?.parse().ok()?;
        Some(start..start.checked_add(count)?)
    }

    /// Kills every process of the user (all are the test's: the user was made for it) by
    /// PID, the pause process that holds its user namespace included, until none is left.
    fn kill_user_processes(&self) {
        let deadline = Instant::now() + SHUTDOWN_TIMEOUT;
        loop {
            let pids = self.user_pids();
            if pids.is_empty() {
                return;
            }
            if Instant::now() > deadline {
                eprintln!("warning: processes of {} left: {pids:?}", self.user);
                return;
            }
            for pid in pids {
                // SAFETY: kill has no memory preconditions; the PID is a process of the
                // test's own user.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Removes exactly the line this guard added from `path`.
    fn remove_subid_line(path: &str, line: &str) {
        let Ok(text) = fs::read_to_string(path) else {
            return;
        };
        let mut removed = false;
        let mut kept = String::with_capacity(text.len());
        for l in text.lines() {
            if !removed && l == line {
                removed = true;
            } else {
                kept.push_str(l);
                kept.push('\n');
            }
        }
        if removed && let Err(e) = fs::write(path, kept) {
            eprintln!("warning: restoring {path}: {e}");
        }
    }
}

impl Drop for RootlessPodman {
    fn drop(&mut self) {
        if self.user_made && self.uid != 0 {
            let _ = self.podman(&["rm", "-f", "-a", "-t", "0"]);
            self.stop_service();
            self.kill_user_processes();
        }
        if self.made_runtime_dir
            && let Err(e) = fs::remove_dir_all(&self.runtime_dir)
        {
            eprintln!("warning: removing {}: {e}", self.runtime_dir.display());
        }
        if self.made_run_user {
            let _ = fs::remove_dir(RUN_USER);
        }
        if self.user_made {
            let status = Command::new("userdel").arg("-r").arg(&self.user).output();
            if !status.as_ref().is_ok_and(|o| o.status.success()) {
                eprintln!("warning: userdel -r {}: {status:?}", self.user);
            }
        }
        if let Some(line) = self.subid_line.take() {
            Self::remove_subid_line("/etc/subuid", &line);
            Self::remove_subid_line("/etc/subgid", &line);
        }
        if let Some(dir) = self.dir.take()
            && let Err(e) = dir.close()
        {
            eprintln!("warning: removing the rootless temp dir: {e}");
        }
    }
}
