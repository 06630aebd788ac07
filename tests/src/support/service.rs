//! The systemd unit `deploy/systemd/collector.service`, and starting the daemon the way it
//! does without systemd: its `ExecStart` command line under `setpriv`, as a non-root user with
//! exactly the unit's capabilities (inheritable, ambient and bounding, nothing else), no new
//! privileges, its `UMask=` and `Limit*=`, and a clean environment.
//!
//! What the test substitutes, and why: the binary (the one under test), `--socket` (a socket
//! in the test's temp dir, which plays `RuntimeDirectory=`: owned by the user, mode 0750),
//! `--pin-dir` (a unique directory under bpffs, created owned by the user as the unit's
//! `ExecStartPre=` does), `--socket-group` (the user's group: the unit's `Group=` is its
//! socket group) and `--metrics-addr` (a port the kernel chooses). The unit's `collector`
//! user and group do not exist on a test machine: the daemon runs as `nobody`/`nogroup`
//! (65534), with the `docker` group as a supplementary group when it exists, as the README's
//! install step adds the service user to it.

use std::{
    ffi::OsString,
    fs, io,
    os::unix::{fs::PermissionsExt as _, process::CommandExt as _},
    path::{Path, PathBuf},
    process::Command,
};

/// Set to 1 to start every test daemon as the unit does (`cargo xtask test` runs the
/// identity and stats tests a second time so).
pub const LEAST_PRIVILEGE_ENV: &str = "COLLECTOR_TEST_LEAST_PRIVILEGE";
/// The user the daemon runs as in these tests (`nobody`).
pub const TEST_UID: u32 = 65_534;
/// Its group (`nogroup`), which also owns the socket.
pub const TEST_GID: u32 = 65_534;

/// Capability names by number (`include/uapi/linux/capability.h`), for `CapEff:` masks.
const CAPABILITIES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Whether [`LEAST_PRIVILEGE_ENV`] is set to 1.
#[must_use]
pub fn least_privilege_requested() -> bool {
    std::env::var(LEAST_PRIVILEGE_ENV).is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// The `[Service]` settings of the unit this test relies on.
#[derive(Clone, Debug)]
pub struct ServiceUnit {
    /// `User=`.
    pub user: String,
    /// `Group=`.
    pub group: String,
    /// `ExecStart=`, split at spaces (the unit quotes nothing).
    pub exec_start: Vec<String>,
    /// `AmbientCapabilities=`.
    pub ambient: Vec<String>,
    /// `CapabilityBoundingSet=`.
    pub bounding: Vec<String>,
    /// `NoNewPrivileges=yes`.
    pub no_new_privileges: bool,
    /// `UMask=`.
    pub umask: Option<u32>,
    /// `LimitNOFILE=`.
    pub limit_nofile: Option<u64>,
    /// `LimitMEMLOCK=` (`None` for absent; `u64::MAX` for infinity).
    pub limit_memlock: Option<u64>,
    /// Every `Key=value` of `[Service]`, in order.
    pub settings: Vec<(String, String)>,
}

impl ServiceUnit {
    /// `<workspace>/deploy/systemd/collector.service`.
    #[must_use]
    pub fn path() -> PathBuf {
        super::workspace_root().join("deploy/systemd/collector.service")
    }

    /// Reads and parses [`ServiceUnit::path`]; panics saying what is wrong.
    #[must_use]
    pub fn load() -> Self {
        let path = Self::path();
        let text =
            fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        Self::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// Parses a unit's text: its `[Service]` section must have `User=`, `Group=`,
    /// `ExecStart=` and both capability sets.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut section = "";
        let mut settings = Vec::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = if name == "Service" { "Service" } else { "" };
                continue;
            }
            if section.is_empty() {
                continue;
            }
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| format!("not a Key=value line: {line:?}"))?;
            settings.push((key.trim().to_owned(), value.trim().to_owned()));
        }
        let get = |key: &str| {
            settings
                .iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        };
        let need = |key: &str| get(key).ok_or_else(|| format!("[Service] has no {key}="));
        let words = |v: String| v.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
        let number = |key: &str| -> Result<Option<u64>, String> {
            get(key)
                .map(|v| match v.as_str() {
                    "infinity" => Ok(u64::MAX),
                    v => v.parse().map_err(|e| format!("{key}={v}: {e}")),
                })
                .transpose()
        };
        Ok(Self {
            user: need("User")?,
            group: need("Group")?,
            exec_start: words(need("ExecStart")?),
            ambient: words(need("AmbientCapabilities")?),
            bounding: words(need("CapabilityBoundingSet")?),
            no_new_privileges: get("NoNewPrivileges").is_some_and(|v| v == "yes" || v == "true"),
            umask: get("UMask")
                .map(|v| u32::from_str_radix(&v, 8).map_err(|e| format!("UMask={v}: {e}")))
                .transpose()?,
            limit_nofile: number("LimitNOFILE")?,
            limit_memlock: number("LimitMEMLOCK")?,
            settings,
        })
    }

    /// The value of a `[Service]` setting (its last occurrence).
    #[must_use]
    pub fn setting(&self, key: &str) -> Option<&str> {
        self.settings
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// How to start a daemon as the unit does; [`LeastPrivilege::command`] builds the command.
#[derive(Clone, Debug)]
pub struct LeastPrivilege {
    /// The unit.
    pub unit: ServiceUnit,
    /// Capabilities granted (inheritable, ambient, bounding): the unit's, unless changed.
    pub capabilities: Vec<String>,
}

impl LeastPrivilege {
    /// As `deploy/systemd/collector.service` says; panics when its ambient and bounding sets
    /// differ (the daemon must get exactly one set).
    #[must_use]
    pub fn from_unit() -> Self {
        let unit = ServiceUnit::load();
        let mut ambient = unit.ambient.clone();
        let mut bounding = unit.bounding.clone();
        ambient.sort();
        bounding.sort();
        assert_eq!(
            ambient, bounding,
            "AmbientCapabilities and CapabilityBoundingSet of the unit differ"
        );
        Self {
            capabilities: unit.ambient.clone(),
            unit,
        }
    }

    /// The same without `capability`, to show what fails without it.
    #[must_use]
    pub fn without(mut self, capability: &str) -> Self {
        assert!(
            self.capabilities.iter().any(|c| c == capability),
            "{capability} is not in the unit's set {:?}",
            self.capabilities
        );
        self.capabilities.retain(|c| c != capability);
        self
    }

    /// The capability mask of [`LeastPrivilege::capabilities`], as `/proc/<pid>/status`
    /// prints it (`CapEff:` and the others).
    #[must_use]
    pub fn mask(&self) -> u64 {
        capability_mask(&self.capabilities)
    }

    /// The daemon's command line: the unit's `ExecStart` arguments with `bin` as the program,
    /// each `--flag value` of `args` replacing the unit's value of that flag (or appended, as
    /// is every other argument), `--socket-group` set to [`TEST_GID`]; run by `setpriv` as
    /// [`TEST_UID`] with exactly the capabilities, `--no-new-privs` when the unit says so,
    /// SIGTERM when the test process dies, the unit's `UMask=` and limits, `PATH` and `RUST_LOG`
    /// only in its environment.
    #[must_use]
    pub fn command(&self, bin: &Path, args: &[OsString]) -> Command {
        let (_, unit_args) = self
            .unit
            .exec_start
            .split_first()
            .expect("ExecStart has a program");
        let mut daemon_args: Vec<OsString> = unit_args.iter().map(OsString::from).collect();
        set_flag(
            &mut daemon_args,
            "--socket-group",
            TEST_GID.to_string().into(),
        );
        merge_args(&mut daemon_args, args);

        let caps = self
            .capabilities
            .iter()
            .fold(String::from("-all"), |mut caps, c| {
                caps.push_str(",+");
                caps.push_str(&setpriv_name(c));
                caps
            });
        let mut cmd = Command::new("setpriv");
        cmd.arg(format!("--reuid={TEST_UID}"))
            .arg(format!("--regid={TEST_GID}"));
        match docker_gid() {
            Some(gid) => cmd.arg(format!("--groups={gid}")),
            None => cmd.arg("--clear-groups"),
        };
        cmd.arg(format!("--inh-caps={caps}"))
            .arg(format!("--ambient-caps={caps}"))
            .arg(format!("--bounding-set={caps}"));
        if self.unit.no_new_privileges {
            cmd.arg("--no-new-privs");
        }
        // Credential changes clear the parent-death signal: setpriv sets it again last.
        cmd.args(["--pdeathsig", "SIGTERM", "--"])
            .arg(bin)
            .args(&daemon_args);
        cmd.env_clear().env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        );
        if let Some(log) = std::env::var_os("RUST_LOG") {
            cmd.env("RUST_LOG", log);
        }
        self.apply_umask_and_limits(&mut cmd);
        cmd
    }

    /// `UMask=`, `LimitNOFILE=` and `LimitMEMLOCK=` in the child before it runs setpriv. A
    /// limit above this process's hard limit is lowered to it when raising is refused (a
    /// test machine without `CAP_SYS_RESOURCE`; systemd, as root, sets the unit's value).
    fn apply_umask_and_limits(&self, cmd: &mut Command) {
        let umask = self.unit.umask;
        let limits = [
            (libc::RLIMIT_NOFILE, self.unit.limit_nofile),
            (libc::RLIMIT_MEMLOCK, self.unit.limit_memlock),
        ];
        let apply = move || -> io::Result<()> {
            // SAFETY: umask, getrlimit and setrlimit are async-signal-safe syscalls, given
            // valid pointers to stack values.
            unsafe {
                if let Some(mask) = umask {
                    libc::umask(mask);
                }
                for (resource, value) in limits {
                    let Some(value) = value else { continue };
                    let wanted = if value == u64::MAX {
                        libc::RLIM_INFINITY
                    } else {
                        value
                    };
                    let mut limit = libc::rlimit {
                        rlim_cur: wanted,
                        rlim_max: wanted,
                    };
                    if libc::setrlimit(resource, &raw const limit) == 0 {
                        continue;
                    }
                    if libc::getrlimit(resource, &raw mut limit) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    limit.rlim_cur = limit.rlim_max.min(wanted);
                    limit.rlim_max = limit.rlim_cur;
                    if libc::setrlimit(resource, &raw const limit) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
            }
            Ok(())
        };
        // SAFETY: the closure makes only async-signal-safe calls and allocates nothing.
        unsafe { cmd.pre_exec(apply) };
    }
}

/// What the unit's `RuntimeDirectory=collector` and `ExecStartPre=` make before the daemon
/// starts: `dir` owned by the daemon's user and group with `mode`.
pub fn prepare_dir(dir: &Path, mode: u32) -> io::Result<()> {
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    std::os::unix::fs::chown(dir, Some(TEST_UID), Some(TEST_GID))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(mode))
}

/// The bits of `names` (`CAP_BPF`, ...) as in `/proc/<pid>/status`; panics on an unknown name.
#[must_use]
pub fn capability_mask(names: &[String]) -> u64 {
    names.iter().fold(0, |mask, name| {
        let bit = CAPABILITIES
            .iter()
            .position(|c| c == name)
            .unwrap_or_else(|| panic!("unknown capability {name}"));
        mask | 1 << bit
    })
}

/// `CAP_SYS_PTRACE` → `sys_ptrace`, setpriv's spelling.
fn setpriv_name(capability: &str) -> String {
    capability
        .strip_prefix("CAP_")
        .unwrap_or(capability)
        .to_ascii_lowercase()
}

/// The gid of the `docker` group, when /etc/group has one.
fn docker_gid() -> Option<u32> {
    fs::read_to_string("/etc/group")
        .ok()?
        .lines()
        .find_map(|line| {
            let mut fields = line.split(':');
            (fields.next() == Some("docker"))
                .then(|| fields.nth(1)?.parse().ok())
                .flatten()
        })
}

/// Sets `flag`'s value in `args` (after it, or `--flag=value`), or appends `flag value`.
fn set_flag(args: &mut Vec<OsString>, flag: &str, value: OsString) {
    let with_eq = format!("{flag}=");
    for i in 0..args.len() {
        if args[i] == flag && i + 1 < args.len() {
            args[i + 1] = value;
            return;
        }
        if args[i].to_str().is_some_and(|a| a.starts_with(&with_eq)) {
            let mut joined = OsString::from(&with_eq);
            joined.push(&value);
            args[i] = joined;
            return;
        }
    }
    args.push(flag.into());
    args.push(value);
}

/// Adds `extra` to `args`: a `--flag value` pair replaces `args`' value of that flag; the
/// subcommand `run`, already first in `args`, is skipped; everything else is appended.
fn merge_args(args: &mut Vec<OsString>, extra: &[OsString]) {
    let mut i = 0;
    while i < extra.len() {
        let word = &extra[i];
        let is_flag = word.to_str().is_some_and(|w| w.starts_with("--"));
        let next_is_value = extra
            .get(i + 1)
            .is_some_and(|n| !n.to_str().is_some_and(|n| n.starts_with("--")));
        if i == 0 && word == "run" && args.first().is_some_and(|a| a == "run") {
            i += 1;
        } else if is_flag && next_is_value {
            set_flag(args, word.to_str().expect("checked"), extra[i + 1].clone());
            i += 2;
        } else {
            args.push(word.clone());
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use super::{LeastPrivilege, ServiceUnit, capability_mask, merge_args, setpriv_name};

    fn os(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    #[test]
    fn the_shipped_unit_parses() {
        let unit = ServiceUnit::load();
        assert_eq!(unit.user, "collector");
        assert_eq!(unit.exec_start[1], "run");
        assert!(unit.no_new_privileges);
        assert_eq!(unit.umask, Some(0o077));
        assert_eq!(unit.limit_memlock, Some(u64::MAX));
        assert_eq!(unit.setting("ProtectSystem"), Some("strict"));
        let least = LeastPrivilege::from_unit();
        assert_eq!(least.capabilities, unit.ambient);
    }

    #[test]
    fn masks_match_proc_status() {
        // `capsh --decode=000000c000081004` prints these five.
        let names = ["CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN", "CAP_SYS_PTRACE"]
            .into_iter()
            .chain(["CAP_DAC_READ_SEARCH"])
            .map(str::to_owned)
            .collect::<Vec<_>>();
        assert_eq!(capability_mask(&names), 0x0000_00c0_0008_1004);
        assert_eq!(setpriv_name("CAP_DAC_READ_SEARCH"), "dac_read_search");
    }

    #[test]
    fn test_arguments_replace_the_units_values_or_are_appended() {
        let mut args = os(&[
            "run",
            "--socket",
            "/run/c.sock",
            "--pin-dir",
            "/sys/fs/bpf/c",
        ]);
        merge_args(
            &mut args,
            &os(&[
                "run",
                "--socket",
                "/tmp/x.sock",
                "--no-ebpf",
                "--exited-grace",
                "1",
            ]),
        );
        assert_eq!(
            args,
            os(&[
                "run",
                "--socket",
                "/tmp/x.sock",
                "--pin-dir",
                "/sys/fs/bpf/c",
                "--no-ebpf",
                "--exited-grace",
                "1"
            ])
        );
    }

    #[test]
    fn a_unit_without_capabilities_is_refused() {
        let err = ServiceUnit::parse("[Service]\nUser=a\nGroup=a\nExecStart=/x run\n").unwrap_err();
        assert_eq!(err, "[Service] has no AmbientCapabilities=");
    }
}
