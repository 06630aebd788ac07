//! The daemon under test: `collector-daemon run` on a socket in a temp dir, with its own bpffs
//! pin dir and a metrics port chosen by the kernel, its output in a log file that is printed
//! when a test fails. Ready when `GET /healthz` answers 200; stopped with SIGTERM (SIGKILL
//! after 10 s) when the guard drops.
//!
//! [`Daemon::shared`] is one daemon per test binary. It is spawned from a thread that never
//! exits, with `PR_SET_PDEATHSIG` (which fires when the spawning *thread* exits), so it dies
//! with the test process even when that is killed; at a normal exit an `atexit` hook stops it
//! and removes its pin dir and temp dir.

use std::{
    ffi::OsString,
    fs,
    fs::File,
    io, panic,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{
        Mutex, MutexGuard, OnceLock, PoisonError,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread,
    time::{Duration, Instant},
};

use tempfile::TempDir;

use super::{
    http::{self, Response},
    service::{self, LeastPrivilege},
};

/// How long the daemon has to answer `GET /healthz` with 200 after it is spawned.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the daemon has to exit after SIGTERM before it gets SIGKILL.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// Where bpffs is mounted (`cargo xtask setup` mounts it).
pub const BPFFS: &str = "/sys/fs/bpf";

/// The daemon binary: `COLLECTOR_DAEMON_BIN`, else `<workspace>/target/release/collector-daemon`
/// if it exists; panics saying how to get one otherwise.
#[must_use]
pub fn daemon_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("COLLECTOR_DAEMON_BIN") {
        let bin = PathBuf::from(bin);
        assert!(
            bin.is_file(),
            "COLLECTOR_DAEMON_BIN={} does not exist",
            bin.display()
        );
        return bin;
    }
    let bin = super::workspace_root().join("target/release/collector-daemon");
    assert!(
        bin.is_file(),
        "no collector-daemon binary: set COLLECTOR_DAEMON_BIN, or build {} with \
         `cargo build --release -p collector-daemon` (`cargo xtask test` does both)",
        bin.display()
    );
    bin
}

/// The baseline daemon binary of an A/B bench run: `COLLECTOR_BASELINE_DAEMON_BIN` (another
/// build of `collector-daemon`, e.g. from an older commit), or `None` when it is unset or
/// empty; panics when it names no file.
#[must_use]
pub fn baseline_daemon_bin() -> Option<PathBuf> {
    let bin = PathBuf::from(std::env::var_os("COLLECTOR_BASELINE_DAEMON_BIN")?);
    if bin.as_os_str().is_empty() {
        return None;
    }
    assert!(
        bin.is_file(),
        "COLLECTOR_BASELINE_DAEMON_BIN={} does not exist (a relative path is taken from {}; \
         give an absolute one)",
        bin.display(),
        std::env::current_dir().map_or_else(|e| format!("<{e}>"), |d| d.display().to_string())
    );
    Some(bin)
}

/// A bpffs directory `/sys/fs/bpf/collector-test-<pid>-<n>` for a daemon's pins, removed with
/// everything in it on drop. Pass it as `--pin-dir` to several daemons in turn to test pins
/// that outlive a daemon.
#[derive(Debug)]
pub struct PinDir(PathBuf);

impl PinDir {
    /// Names a fresh pin dir; the daemon creates it.
    #[must_use]
    pub fn new() -> Self {
        Self(Path::new(BPFFS).join(super::unique_name()))
    }

    #[must_use]
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Default for PinDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        match fs::remove_dir_all(&self.0) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => eprintln!("warning: removing pin dir {}: {e}", self.0.display()),
        }
    }
}

/// A running `collector-daemon run`; stopped on drop.
#[derive(Debug)]
pub struct Daemon {
    pid: u32,
    socket: PathBuf,
    pin_dir: PathBuf,
    log_path: PathBuf,
    child: Mutex<Option<Child>>,
    /// The pin dir, when we chose it (a caller-given `--pin-dir` is the caller's to remove).
    own_pins: Mutex<Option<PinDir>>,
    tmpdir: Mutex<Option<TempDir>>,
    log_shown: AtomicBool,
}

impl Daemon {
    /// Starts [`daemon_bin`] with `run --socket <tmpdir>/collector.sock --pin-dir
    /// /sys/fs/bpf/collector-test-<pid>-<n> --unpin-on-exit --metrics-addr 127.0.0.1:0
    /// args...` (each only when `args` does not give it; `--unpin-on-exit` only with the pin
    /// dir chosen here) and waits until `GET /healthz` answers 200;
    /// panics with the daemon's log if it exits or does not answer within 30 s.
    #[must_use]
    pub fn start(args: &[&str]) -> Self {
        Self::start_bin(&daemon_bin(), args)
    }

    /// As [`Daemon::start`] with another binary; as the systemd unit starts it (see
    /// [`service`]) when `COLLECTOR_TEST_LEAST_PRIVILEGE=1`.
    #[must_use]
    pub fn start_bin(bin: &Path, args: &[&str]) -> Self {
        let privilege = service::least_privilege_requested().then(LeastPrivilege::from_unit);
        Self::start_as(bin, args, privilege.as_ref())
    }

    /// As [`Daemon::start`], always as the systemd unit starts it, with `privilege`'s
    /// capabilities.
    #[must_use]
    pub fn start_least_privilege(privilege: &LeastPrivilege, args: &[&str]) -> Self {
        Self::start_as(&daemon_bin(), args, Some(privilege))
    }

    /// Starts `bin` as [`Daemon::start`] says: as root, or through `privilege`'s command
    /// with the socket's directory and the pin dir prepared as the unit prepares them.
    fn start_as(bin: &Path, args: &[&str], privilege: Option<&LeastPrivilege>) -> Self {
        let tmpdir = tempfile::Builder::new()
            .prefix("collector-test-")
            .tempdir()
            .expect("creating a temp dir for the daemon");
        let mut command_line: Vec<OsString> = vec!["run".into()];
        let socket = flag_value(args, "--socket").map_or_else(
            || {
                let socket = tmpdir.path().join("collector.sock");
                command_line.extend(["--socket".into(), socket.clone().into()]);
                socket
            },
            PathBuf::from,
        );
        let (pin_dir, own_pins) = if let Some(dir) = flag_value(args, "--pin-dir") {
            (PathBuf::from(dir), None)
        } else {
            // The daemon removes its pins at exit (and the guard whatever is left), so no
            // program of a test daemon stays attached after it, even when the test binary
            // is killed (the daemon gets SIGTERM then). A caller-given `--pin-dir` keeps its
            // pins across daemons; the caller's `PinDir` removes them.
            let pins = PinDir::new();
            command_line.extend([
                "--pin-dir".into(),
                pins.path().into(),
                "--unpin-on-exit".into(),
            ]);
            (pins.path().to_path_buf(), Some(pins))
        };
        if flag_value(args, "--metrics-addr").is_none() {
            command_line.extend(["--metrics-addr".into(), "127.0.0.1:0".into()]);
        }
        command_line.extend(args.iter().map(OsString::from));

        let log_path = tmpdir.path().join("daemon.log");
        let log = File::create(&log_path).expect("creating the daemon log");
        let mut cmd = match privilege {
            None => {
                let mut cmd = Command::new(bin);
                cmd.args(&command_line);
                cmd
            }
            Some(privilege) => {
                prepare_for_service_user(tmpdir.path(), &pin_dir, args);
                privilege.command(bin, &command_line)
            }
        };
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().expect("duplicating the log handle"))
            .stderr(log);
        let child = spawn_tied_to_process(cmd)
            .unwrap_or_else(|e| panic!("spawning {} {command_line:?}: {e}", bin.display()));
        // From here on the guard exists, so a panic below still stops the daemon.
        let daemon = Self {
            pid: child.id(),
            socket,
            pin_dir,
            log_path,
            child: Mutex::new(Some(child)),
            own_pins: Mutex::new(own_pins),
            tmpdir: Mutex::new(Some(tmpdir)),
            log_shown: AtomicBool::new(false),
        };
        daemon.wait_healthy(bin, &command_line);
        daemon
    }

    /// One daemon with default arguments for the whole test binary, started on first use.
    /// If it failed to start, every caller panics with that first failure.
    pub fn shared() -> &'static Daemon {
        static SHARED: OnceLock<Result<Daemon, String>> = OnceLock::new();
        extern "C" fn stop_shared() {
            let _ = panic::catch_unwind(|| {
                if let Some(Ok(daemon)) = SHARED.get() {
                    daemon.shutdown();
                }
            });
        }
        let started = SHARED.get_or_init(|| match panic::catch_unwind(|| Daemon::start(&[])) {
            Ok(daemon) => {
                // SAFETY: registers a plain function; it only runs at process exit.
                unsafe { libc::atexit(stop_shared) };
                Ok(daemon)
            }
            Err(payload) => Err(panic_message(&*payload)),
        });
        match started {
            Ok(daemon) => daemon,
            Err(message) => panic!("the shared daemon failed to start: {message}"),
        }
    }

    /// The daemon's PID.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Its API socket.
    #[must_use]
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Runs `collector-daemon query --socket <its socket> ARGS...` and returns what it did.
    pub fn query(&self, args: &[&str]) -> std::process::Output {
        Command::new(daemon_bin())
            .arg("query")
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("running the CLI")
    }

    /// Its `--pin-dir`.
    #[must_use]
    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    /// Everything it printed so far (stdout and stderr).
    #[must_use]
    pub fn log(&self) -> String {
        fs::read(&self.log_path).map_or_else(
            |e| format!("<log {} unreadable: {e}>", self.log_path.display()),
            |b| String::from_utf8_lossy(&b).into_owned(),
        )
    }

    /// `GET path` on its socket.
    #[must_use]
    pub fn get(&self, path: &str) -> Response {
        http::get(&self.socket, path)
    }

    /// `POST path` with `body` on its socket.
    #[must_use]
    pub fn post(&self, path: &str, body: &[u8]) -> Response {
        http::post(&self.socket, path, body)
    }

    /// Sends raw bytes to its socket.
    #[must_use]
    pub fn raw(&self, bytes: &[u8]) -> Response {
        http::raw(&self.socket, bytes)
    }

    /// `GET /healthz` as JSON, asserting 200.
    #[must_use]
    pub fn healthz(&self) -> serde_json::Value {
        let response = self.get("/healthz");
        assert_eq!(response.status, 200, "GET /healthz: {}", response.body);
        response.json()
    }

    /// Whether the process is still running.
    #[must_use]
    pub fn is_running(&self) -> bool {
        self.child()
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Stops it (SIGTERM, SIGKILL after 10 s) and returns how it exited, for tests of a clean
    /// shutdown (`assert!(daemon.stop().success())`).
    pub fn stop(self) -> ExitStatus {
        self.shutdown().expect("the daemon is stopped only once")
    }

    fn child(&self) -> MutexGuard<'_, Option<Child>> {
        self.child.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wait_healthy(&self, bin: &Path, argv: &[OsString]) {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let probe = http::request("GET", "/healthz", None);
        loop {
            if let Some(status) = self
                .child()
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.log_shown.store(true, Ordering::SeqCst);
                panic!(
                    "{} {argv:?} exited ({status}) before answering GET /healthz; its log:\n{}",
                    bin.display(),
                    self.log()
                );
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let last = match http::send_with_timeout(
                &self.socket,
                &probe,
                left.max(Duration::from_millis(100)),
            ) {
                Ok(response) if response.status == 200 => return,
                Ok(response) => format!("{} {}", response.status, response.body),
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                self.log_shown.store(true, Ordering::SeqCst);
                panic!(
                    "{} {argv:?} did not answer GET /healthz with 200 within {STARTUP_TIMEOUT:?} \
                     (last: {last}); its log:\n{}",
                    bin.display(),
                    self.log()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the process and removes what it left; `None` when already done.
    fn shutdown(&self) -> Option<ExitStatus> {
        let mut child = self.child().take()?;
        let exited_early = child.try_wait().ok().flatten();
        let (status, killed) = match exited_early {
            Some(status) => (status, false),
            None => terminate(&mut child),
        };
        let abnormal = exited_early.is_some() || killed || !status.success();
        if (abnormal || thread::panicking()) && !self.log_shown.swap(true, Ordering::SeqCst) {
            let how = if exited_early.is_some() {
                format!("had already exited ({status})")
            } else if killed {
                format!("ignored SIGTERM for {SHUTDOWN_TIMEOUT:?} and was killed")
            } else {
                format!("exited ({status}) on SIGTERM")
            };
            eprintln!(
                "---- collector-daemon (pid {}) {how}; its log: ----\n{}\n---- end of log ----",
                self.pid,
                self.log()
            );
        }
        drop(
            self.own_pins
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        drop(
            self.tmpdir
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        Some(status)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// What systemd makes before the unit's daemon starts, owned by the service user: the
/// directory of its socket (`RuntimeDirectory=`, mode 0750; here the daemon's temp dir, which
/// holds the socket unless `args` put it elsewhere, then the caller prepares that) and its
/// pin dir (`ExecStartPre=`, mode 0700; only a test's own, named by [`super::unique_name`]).
fn prepare_for_service_user(tmpdir: &Path, pin_dir: &Path, args: &[&str]) {
    service::prepare_dir(tmpdir, 0o750)
        .unwrap_or_else(|e| panic!("preparing {} for the daemon: {e}", tmpdir.display()));
    let ours = pin_dir.parent() == Some(Path::new(BPFFS))
        && pin_dir
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("collector-test-"));
    if ours && !args.contains(&"--no-pin") {
        service::prepare_dir(pin_dir, 0o700)
            .unwrap_or_else(|e| panic!("preparing {} for the daemon: {e}", pin_dir.display()));
    }
}

/// SIGTERM, then up to [`SHUTDOWN_TIMEOUT`] for it to exit, then SIGKILL. Returns the status
/// and whether SIGKILL was needed.
fn terminate(child: &mut Child) -> (ExitStatus, bool) {
    let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
    // SAFETY: kill(2) on our own child, which has not been reaped (try_wait said so).
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + SHUTDOWN_TIMEOUT;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return (status, false);
        }
        thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    (child.wait().expect("reaping the daemon"), true)
}

/// The value of `--flag VALUE` or `--flag=VALUE` in `args`.
fn flag_value<'a>(args: &[&'a str], flag: &str) -> Option<&'a str> {
    args.iter().enumerate().find_map(|(i, arg)| {
        if *arg == flag {
            args.get(i + 1).copied()
        } else {
            arg.strip_prefix(flag)
                .and_then(|rest| rest.strip_prefix('='))
        }
    })
}

type SpawnJob = (Command, mpsc::Sender<io::Result<Child>>);

/// Spawns `cmd` so that it gets SIGTERM when this process exits: with `PR_SET_PDEATHSIG`, from
/// a thread that lives as long as the process (the signal follows the spawning thread).
fn spawn_tied_to_process(mut cmd: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<mpsc::Sender<SpawnJob>> = OnceLock::new();
    super::process::die_with_parent(&mut cmd, libc::SIGTERM);
    let spawner = SPAWNER.get_or_init(|| {
        let (jobs, inbox) = mpsc::channel::<SpawnJob>();
        thread::Builder::new()
            .name("collector-test-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in inbox {
                    let _ = reply.send(cmd.spawn());
                }
                // The sender lives in a static, so this is never reached; and the thread must
                // never exit, which would kill everything it spawned.
                loop {
                    thread::park();
                }
            })
            .expect("starting the spawner thread");
        jobs
    });
    let (reply, answer) = mpsc::channel();
    spawner
        .send((cmd, reply))
        .expect("the spawner thread never exits");
    answer.recv().expect("the spawner thread always answers")
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "<non-string panic>".to_owned())
}

#[cfg(test)]
mod tests {
    use std::{
        fs,
        os::unix::fs::PermissionsExt as _,
        path::{Path, PathBuf},
    };

    use super::{Daemon, flag_value, panic_message};

    fn script(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("fake-daemon");
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[test]
    fn finds_flag_values() {
        let args = ["--no-ebpf", "--socket", "/a", "--pin-dir=/b"];
        assert_eq!(flag_value(&args, "--socket"), Some("/a"));
        assert_eq!(flag_value(&args, "--pin-dir"), Some("/b"));
        assert_eq!(flag_value(&args, "--metrics-addr"), None);
    }

    #[test]
    fn a_daemon_that_dies_at_start_panics_with_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let fake = script(
            dir.path(),
            "#!/bin/sh\necho 'boom: no such flag' >&2\nexit 3\n",
        );
        let payload = std::panic::catch_unwind(|| Daemon::start_bin(&fake, &[])).unwrap_err();
        let message = panic_message(&*payload);
        assert!(message.contains("boom: no such flag"), "{message}");
        assert!(message.contains("exit status: 3"), "{message}");
    }
}
