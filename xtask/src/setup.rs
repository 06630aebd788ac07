//! `cargo xtask setup`: what a fresh Debian/Ubuntu machine lacks to build and run the agent.
//! Every step checks first, so a second run takes well under a second.
//!
//! Facts (TOOLCHAIN.md): aya-build compiles the eBPF crate with the `nightly` toolchain and
//! `-Z build-std=core` (needs `rust-src`) and links with bpf-linker 0.10.x (0.11+ needs a
//! system LLVM Debian 12 lacks); tracefs is not mounted at boot on these machines. The
//! containerd client's gRPC bindings (and the tests' CRI client) are generated at build time
//! by prost, which needs `protoc` (Debian's `protobuf-compiler`).

use std::io::ErrorKind;

use anyhow::{Context as _, Result};

use crate::cmd::{Cmd, cargo};

const BPF_LINKER_VERSION: &str = "0.10.2";

/// Runs every set-up step.
pub(crate) fn setup() -> Result<()> {
    ensure_apt_packages(&["protobuf-compiler"])?;
    ensure_rust_src()?;
    ensure_bpf_linker()?;
    ensure_mounted("tracefs", "/sys/kernel/tracing")?;
    ensure_mounted("bpf", "/sys/fs/bpf")?;
    Ok(())
}

fn ensure_rust_src() -> Result<()> {
    ensure_nightly_component("rust-src")
}

/// Adds `component` to the nightly toolchain unless it is installed.
pub(crate) fn ensure_nightly_component(component: &str) -> Result<()> {
    let listed = Cmd::new("rustup")
        .args(["component", "list", "--installed", "--toolchain", "nightly"])
        .probe()?;
    let installed = listed.status.success()
        && String::from_utf8_lossy(&listed.stdout).lines().any(|line| {
            let line = line.trim();
            line == component
                || line
                    .strip_prefix(component)
                    .is_some_and(|rest| rest.starts_with('-'))
        });
    if !installed {
        Cmd::new("rustup")
            .args(["component", "add", component, "--toolchain", "nightly"])
            .run()?;
    }
    Ok(())
}

fn ensure_bpf_linker() -> Result<()> {
    let wanted = format!("bpf-linker {BPF_LINKER_VERSION}");
    let found = match Cmd::new("bpf-linker").arg("--version").probe() {
        Ok(out) if out.status.success() => Some(String::from_utf8_lossy(&out.stdout).into_owned()),
        Ok(_) => None,
        Err(e) if is_not_found(&e) => None,
        Err(e) => return Err(e),
    };
    if found.as_deref().map(str::trim) != Some(wanted.as_str()) {
        eprintln!(
            "bpf-linker: found {:?}, need {BPF_LINKER_VERSION}",
            found.as_deref().map(str::trim)
        );
        Cmd::new(cargo())
            .args([
                "install",
                &format!("bpf-linker@{BPF_LINKER_VERSION}"),
                "--locked",
            ])
            .run()?;
    }
    Ok(())
}

/// Installs the Debian packages that are missing (`apt-get update` first, only then).
pub(crate) fn ensure_apt_packages(packages: &[&str]) -> Result<()> {
    let missing = missing_apt_packages(packages)?;
    if missing.is_empty() {
        return Ok(());
    }
    apt_install(&missing, &[])
}

/// Installs the missing ones of `tools`, each a Debian package that the tests run themselves
/// but that Debian also ships as a service (`prometheus`), given with the services it brings.
///
/// Nothing of it may keep running or start at boot: the tests start their own instances on
/// ports of their own. Without recommends (Debian's `prometheus` recommends
/// `prometheus-node-exporter`, another service). Its postinst enables the service and starts
/// it through `invoke-rc.d`/`deb-systemd-invoke` unless `/usr/sbin/policy-rc.d` forbids it
/// (container images ship one that does, and without an init system nothing starts): so
/// after installing, each service is stopped and disabled. Packages that were installed
/// already are the machine owner's and are left as they are.
pub(crate) fn ensure_apt_tools(tools: &[(&str, &[&str])]) -> Result<()> {
    let packages: Vec<&str> = tools.iter().map(|(package, _)| *package).collect();
    let missing = missing_apt_packages(&packages)?;
    if missing.is_empty() {
        return Ok(());
    }
    apt_install(&missing, &["--no-install-recommends"])?;
    let services = tools
        .iter()
        .filter(|(package, _)| missing.contains(package))
        .flat_map(|(_, services)| services.iter());
    for service in services {
        stop_and_disable(service)?;
    }
    Ok(())
}

/// The ones of `packages` dpkg does not list as installed.
fn missing_apt_packages<'a>(packages: &[&'a str]) -> Result<Vec<&'a str>> {
    let mut missing = Vec::new();
    for package in packages {
        let out = Cmd::new("dpkg-query")
            .args(["-W", "-f=${Status}", package])
            .probe_quietly()?;
        // `${Status}` is "want ok state", e.g. "install ok installed", "unknown ok not-installed".
        let state = String::from_utf8_lossy(&out.stdout)
            .split(' ')
            .nth(2)
            .map(str::to_owned);
        if !(out.status.success() && state.as_deref() == Some("installed")) {
            missing.push(*package);
        }
    }
    Ok(missing)
}

/// `apt-get update`, then `apt-get install -y OPTIONS PACKAGES`.
fn apt_install(packages: &[&str], options: &[&str]) -> Result<()> {
    Cmd::root("apt-get")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .arg("update")
        .run()?;
    Cmd::root("apt-get")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y"])
        .args(options)
        .args(packages)
        .run()
}

/// Stops the service `name` if it runs and keeps it from starting at boot, under systemd or
/// `SysV` init alike: under systemd `systemctl disable --now` the unit, otherwise stop it with
/// `service` (the init script's stop is a no-op when nothing runs); `update-rc.d disable`
/// turns off the rc.d links, and the unit's too.
fn stop_and_disable(name: &str) -> Result<()> {
    let exists = |dir: &str, file: &str| std::path::Path::new(dir).join(file).exists();
    let has_init_script = exists("/etc/init.d", name);
    let unit = format!("{name}.service");
    let has_unit = [
        "/lib/systemd/system",
        "/usr/lib/systemd/system",
        "/etc/systemd/system",
    ]
    .iter()
    .any(|dir| exists(dir, &unit));
    if exists("/run/systemd", "system") && has_unit {
        Cmd::root("systemctl")
            .args(["disable", "--now", &unit])
            .run()?;
    } else if has_init_script {
        Cmd::root("service").args([name, "stop"]).run()?;
    }
    if has_init_script {
        Cmd::root("update-rc.d").args([name, "disable"]).run()?;
    }
    Ok(())
}

pub(crate) fn is_not_found(e: &anyhow::Error) -> bool {
    e.downcast_ref::<std::io::Error>()
        .is_some_and(|io| io.kind() == ErrorKind::NotFound)
}

/// Mounts `fstype` at `target` unless a filesystem of that type is mounted there already.
fn ensure_mounted(fstype: &str, target: &str) -> Result<()> {
    let mountinfo =
        std::fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    if is_mounted(&mountinfo, fstype, target) {
        return Ok(());
    }
    Cmd::root("mount")
        .args(["-t", fstype, fstype, target])
        .run()
}

/// Whether `mountinfo` (the text of /proc/self/mountinfo) lists `fstype` mounted at `target`.
fn is_mounted(mountinfo: &str, fstype: &str, target: &str) -> bool {
    mountinfo.lines().any(|line| {
        // id parent major:minor root mount-point options [optional...] - fstype source super
        let mut halves = line.splitn(2, " - ");
        let (Some(left), Some(right)) = (halves.next(), halves.next()) else {
            return false;
        };
        left.split(' ').nth(4) == Some(target) && right.split(' ').next() == Some(fstype)
    })
}

#[cfg(test)]
mod tests {
    use super::is_mounted;

    const MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw
50 23 0:40 / /sys/fs/bpf rw,relatime - bpf bpf rw,mode=700
";

    #[test]
    fn finds_mounts_by_type_and_point() {
        assert!(is_mounted(MOUNTINFO, "bpf", "/sys/fs/bpf"));
        assert!(is_mounted(MOUNTINFO, "cgroup2", "/sys/fs/cgroup/unified"));
        assert!(!is_mounted(MOUNTINFO, "tracefs", "/sys/kernel/tracing"));
        assert!(!is_mounted(MOUNTINFO, "bpf", "/sys/fs/cgroup"));
    }
}
