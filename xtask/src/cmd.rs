//! Running external commands the xtask way: print each one before it runs, name it in every
//! error, and run what needs root through `sudo -E` when we are not root already.
//!
//! `sudo` on Debian replaces PATH with its `secure_path` even under `-E`, which would hide
//! `~/.cargo/bin` (cargo, rustup, bpf-linker); root commands therefore run as
//! `sudo -E env PATH=<ours> program ...`.

use std::{
    ffi::{OsStr, OsString},
    fmt,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
};

use anyhow::{Context as _, Result, bail};

/// True when this process runs with effective uid 0.
pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The prefix that makes a command run as root: nothing when we are root, else
/// `sudo -E env PATH=$PATH`.
pub(crate) fn root_prefix() -> Vec<OsString> {
    if is_root() {
        Vec::new()
    } else {
        let mut path = OsString::from("PATH=");
        path.push(std::env::var_os("PATH").unwrap_or_default());
        vec!["sudo".into(), "-E".into(), "env".into(), path]
    }
}

/// The workspace root (the directory holding the root `Cargo.toml`).
pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// The workspace's target directory (honours `CARGO_TARGET_DIR`).
pub(crate) fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace_root().join(dir),
        None => workspace_root().join("target"),
    }
}

/// The cargo that runs us (`CARGO` is set by `cargo run`), else `cargo` from PATH.
pub(crate) fn cargo() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// A command with a printable form, built like [`std::process::Command`].
pub(crate) struct Cmd {
    inner: Command,
    shown: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
}

impl Cmd {
    /// A command run as the current user.
    pub(crate) fn new(program: impl AsRef<OsStr>) -> Self {
        Self {
            inner: Command::new(program.as_ref()),
            shown: vec![program.as_ref().to_owned()],
            envs: Vec::new(),
        }
    }

    /// A command run as root: directly when we are root, else through `sudo -E`.
    pub(crate) fn root(program: impl AsRef<OsStr>) -> Self {
        let prefix = root_prefix();
        let Some((first, rest)) = prefix.split_first() else {
            return Self::new(program);
        };
        let mut cmd = Self::new(first);
        cmd.args(rest).arg(program);
        cmd
    }

    pub(crate) fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Self {
        self.inner.arg(arg.as_ref());
        self.shown.push(arg.as_ref().to_owned());
        self
    }

    pub(crate) fn args<I, S>(&mut self, args: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        for arg in args {
            self.arg(arg);
        }
        self
    }

    pub(crate) fn env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Self {
        self.inner.env(key.as_ref(), value.as_ref());
        self.envs
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    pub(crate) fn current_dir(&mut self, dir: impl AsRef<Path>) -> &mut Self {
        self.inner.current_dir(dir);
        self
    }

    pub(crate) fn stdin(&mut self, stdio: impl Into<Stdio>) -> &mut Self {
        self.inner.stdin(stdio);
        self
    }

    pub(crate) fn stdout(&mut self, stdio: impl Into<Stdio>) -> &mut Self {
        self.inner.stdout(stdio);
        self
    }

    pub(crate) fn stderr(&mut self, stdio: impl Into<Stdio>) -> &mut Self {
        self.inner.stderr(stdio);
        self
    }

    /// Prints the command, runs it to completion and fails unless it exits 0.
    pub(crate) fn run(&mut self) -> Result<()> {
        let status = self.status()?;
        if !status.success() {
            bail!("{self} failed: {status}");
        }
        Ok(())
    }

    /// Prints the command, runs it to completion and returns its exit status.
    pub(crate) fn status(&mut self) -> Result<ExitStatus> {
        self.announce();
        self.inner
            .status()
            .with_context(|| format!("running {self}"))
    }

    /// Prints the command and starts it.
    pub(crate) fn spawn(&mut self) -> Result<Child> {
        self.announce();
        self.inner
            .spawn()
            .with_context(|| format!("running {self}"))
    }

    /// Runs a probe (`--version`, `docker info`, ...) with stdin closed, capturing its output.
    /// Printed like every command; `Err` only when it could not be started at all.
    pub(crate) fn probe(&mut self) -> Result<Output> {
        self.announce();
        self.probe_quietly()
    }

    /// As [`Cmd::probe`] without printing: for polling loops.
    pub(crate) fn probe_quietly(&mut self) -> Result<Output> {
        self.inner
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {self}"))
    }

    /// Prints the command, runs it capturing stdout (stderr passes through) and fails unless it
    /// exits 0.
    pub(crate) fn read_stdout(&mut self) -> Result<String> {
        self.announce();
        let output = self
            .inner
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("running {self}"))?;
        if !output.status.success() {
            bail!("{self} failed: {}", output.status);
        }
        String::from_utf8(output.stdout).with_context(|| format!("output of {self} is not UTF-8"))
    }

    fn announce(&self) {
        eprintln!("$ {self}");
    }
}

impl fmt::Display for Cmd {
    /// Shell-like: `KEY=value program arg 'arg with spaces'`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let envs = self.envs.iter().map(|(k, v)| {
            let mut kv = k.clone();
            kv.push("=");
            kv.push(v);
            kv
        });
        for word in envs.chain(self.shown.iter().cloned()) {
            if !first {
                f.write_str(" ")?;
            }
            first = false;
            f.write_str(&quote(&word.to_string_lossy()))?;
        }
        Ok(())
    }
}

impl fmt::Debug for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Quotes a word for display the way a shell would need it.
fn quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%^".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}
