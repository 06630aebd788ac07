//! `cargo xtask image`: the container image (`Dockerfile` at the workspace root) from the
//! release daemon, without pulling anything (no registry is reachable from these machines).
//!
//! The daemon links glibc dynamically, so the image is `FROM scratch` plus the stripped daemon
//! at `/usr/bin/collector-daemon` and each shared object `ldd` resolves for it, copied to the
//! path the loader looks for it at (`/lib/x86_64-linux-gnu/libc.so.6`, the interpreter
//! `/lib64/ld-linux-x86-64.so.2`, ...). These are staged in `target/image/context/rootfs`,
//! and only that directory is the build context, so `docker build` does not send `target/`.
//!
//! Built with the classic builder (`DOCKER_BUILDKIT=0`): Debian's docker.io 20.10 has no
//! buildx, and newer clients refuse `BuildKit` builds without it.

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail};

use crate::cmd::{Cmd, target_dir, workspace_root};

/// The tag `cargo xtask image` gives the image (`COLLECTOR_IMAGE` for the integration tests).
pub(crate) const IMAGE: &str = "collector:dev";

/// Where the daemon sits in the image (the Dockerfile's `ENTRYPOINT`).
const DAEMON_IN_IMAGE: &str = "usr/bin/collector-daemon";

/// Stages the root filesystem and builds the image (the daemon must be built already).
pub(crate) fn image() -> Result<()> {
    let daemon = target_dir().join("release").join("collector-daemon");
    if !daemon.is_file() {
        bail!("{} is missing: build it first", daemon.display());
    }
    let context = target_dir().join("image").join("context");
    if context.exists() {
        fs::remove_dir_all(&context).with_context(|| format!("removing {}", context.display()))?;
    }
    let rootfs = context.join("rootfs");
    stage(&daemon, &rootfs)?;
    Cmd::root("docker")
        .env("DOCKER_BUILDKIT", "0")
        .args(["build", "--quiet", "--tag", IMAGE, "--file"])
        .arg(workspace_root().join("Dockerfile"))
        .arg(&context)
        .run()?;
    let size = Cmd::root("docker")
        .args(["image", "inspect", "--format", "{{.Size}}", IMAGE])
        .read_stdout()?;
    eprintln!("built {IMAGE}: {} bytes", size.trim());
    Ok(())
}

/// Copies the stripped daemon and its shared objects into `rootfs`.
fn stage(daemon: &Path, rootfs: &Path) -> Result<()> {
    let target = rootfs.join(DAEMON_IN_IMAGE);
    copy_to(daemon, &target)?;
    // Symbols only name functions in backtraces; the image is 3 MB smaller without them.
    Cmd::new("strip").arg(&target).run()?;
    let ldd = Cmd::new("ldd").arg(daemon).read_stdout()?;
    for library in shared_objects(&ldd)? {
        let relative = library
            .strip_prefix("/")
            .with_context(|| format!("ldd listed a relative path {}", library.display()))?;
        copy_to(&library, &rootfs.join(relative))?;
    }
    Ok(())
}

/// Copies `from` (following symlinks: the image holds the file under the name asked for) to
/// `to`, creating its directory.
fn copy_to(from: &Path, to: &Path) -> Result<()> {
    let dir = to.parent().context("a staged file has a directory")?;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    fs::copy(from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    Ok(())
}

/// The files `ldd` output names: `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)` and
/// the interpreter `/lib64/ld-linux-x86-64.so.2 (0x...)`; the vDSO has no file. A library it
/// could not find is an error.
fn shared_objects(ldd: &str) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for line in ldd.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let path = match line.split_once(" => ") {
            Some((name, rest)) => {
                if rest.starts_with("not found") {
                    bail!("ldd: {name} not found");
                }
                rest.split(" (").next().unwrap_or_default()
            }
            None => line.split(" (").next().unwrap_or_default(),
        };
        if path.starts_with('/') {
            files.push(PathBuf::from(path));
        } else if !path.starts_with("linux-vdso") {
            bail!("unexpected ldd line {line:?}");
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::shared_objects;

    #[test]
    fn reads_the_files_ldd_resolves() {
        let ldd = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                   \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f6c)\n\
                   \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f6b)\n\
                   \t/lib64/ld-linux-x86-64.so.2 (0x00007f6d)\n";
        assert_eq!(
            shared_objects(ldd).unwrap(),
            [
                "/lib/x86_64-linux-gnu/libgcc_s.so.1",
                "/lib/x86_64-linux-gnu/libc.so.6",
                "/lib64/ld-linux-x86-64.so.2"
            ]
            .map(PathBuf::from)
        );
    }

    #[test]
    fn a_missing_library_is_an_error() {
        let ldd = "\tlibfoo.so.1 => not found\n";
        let error = shared_objects(ldd).unwrap_err().to_string();
        assert!(error.contains("libfoo.so.1 not found"), "{error}");
    }
}
