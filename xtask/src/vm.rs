//! `cargo xtask vm`: the integration tests in a cgroup-v2-only VM. The hosts this project is
//! developed on are hybrid (v1 controllers, a controller-less cgroup2 at
//! /sys/fs/cgroup/unified); most nodes run cgroup v2 alone, with every controller.
//!
//! The guest is Debian's stock 6.1 kernel (`linux-image-amd64`) booted by qemu with
//! `cgroup_no_v1=all`, so cgroup2 is its only hierarchy. Its root filesystem is the host's `/`,
//! shared read-only over 9p: every host tool and library, the release daemon and the test
//! binary are there at the same paths. A busybox initramfs loads the virtio and 9p modules,
//! mounts that share and `switch_root`s into it; `guest.sh` (from the read-write results share)
//! then mounts the guest's own proc, sys, dev, tmpfs scratch directories, cgroup2 (every
//! controller enabled in the root's subtree), bpffs and tracefs, mounts a small ext4 disk for
//! the block IO tests, and runs the test binary. The exit code comes back through qemu's
//! `isa-debug-exit` device.
//!
//! Measured facts (shared/reference/vm-cgroup-v2-recipe.md and this lane): /dev/kvm on these
//! machines is PVM, which cannot run a stock kernel, so the guest runs under TCG; booting the
//! uncompressed vmlinux through its PVH entry saves the XZ decompression (~3 s under TCG).

use std::{
    fs,
    io::{BufRead as _, BufReader, Write as _},
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::{
    cmd::{Cmd, cargo, target_dir, workspace_root},
    setup::ensure_apt_packages,
};

/// The Debian kernel series the guest boots (`linux-image-amd64` on Debian 12).
const KERNEL_SERIES: &str = "6.1.";

/// Modules the initramfs loads to reach the 9p shares and the disk; everything else (veth,
/// ...) the guest loads with modprobe from the shared root's /lib/modules.
const INITRAMFS_MODULES: &[&str] = &["virtio_pci", "9pnet_virtio", "9p", "virtio_blk"];

/// The tests that run in the guest when no filter is given: the modules that make their
/// cgroups, processes and network namespaces themselves (no container runtime runs in the
/// guest), and `tests::v2::`, which needs a v2-only host. Not here: Docker, containerd, Podman
/// and Prometheus tests (no runtime in the guest), `cgroup_walk` and the IO tests of
/// `kernel_counters` (they test the v1 hierarchies; `tests::v2::stats` covers v2 IO), and
/// `faults` (fork storms of tens of thousands of processes: too slow under TCG).
pub(crate) const DEFAULT_FILTERS: &[&str] = &[
    "tests::v2::",
    "tests::layouts::",
    "tests::lifecycle::",
    "tests::kernel_map::",
    "tests::repair::",
    "tests::api_errors::",
    "tests::kernel_counters::tcp_over_a_veth",
];

/// Left out of [`DEFAULT_FILTERS`]' modules: tests of a v1 hierarchy, which a v2-only host
/// does not have.
const DEFAULT_SKIPS: &[&str] = &["tests::lifecycle::v1_only_placement"];

/// The default wall-clock limit of a guest run, in seconds (`--timeout`): a full run took
/// 41–51 s here, so this only stops a hung guest.
pub(crate) const TIME_BOX_SECS: u64 = 720;

/// Size of the ext4 disk image the block IO tests write to.
const DISK_MIB: u64 = 512;

/// Where the guest mounts that disk; the tests find it through `COLLECTOR_TEST_DISK_DIR`.
const GUEST_DISK_DIR: &str = "/mnt/vmdisk";

/// What the guest runs once it is set up: `command` from the `tests/` directory with `CI=true`,
/// `COLLECTOR_DAEMON_BIN` (the release daemon), `COLLECTOR_TEST_DISK_DIR` and `env`, after
/// the shell lines of `prepare`.
struct Payload {
    /// For messages: "the integration tests", "the stats bench".
    what: &'static str,
    command: Vec<String>,
    env: Vec<(&'static str, String)>,
    prepare: &'static str,
}

/// Boots the VM and runs the integration tests in it: `args` go to the test binary (a name
/// filter, `--nocapture`, ...); without a filter, [`DEFAULT_FILTERS`]. Fails when a test fails
/// or the guest does not finish within `time_box`.
pub(crate) fn vm(args: &[String], time_box: Duration) -> Result<()> {
    ensure_guest_packages()?;
    crate::build()?;
    let mut command = vec![path_text(&test_binary()?)?];
    command.extend(test_args(args));
    run(
        &Payload {
            what: "the integration tests",
            command,
            env: Vec::new(),
            prepare: "",
        },
        time_box,
    )
}

/// The wall-clock limit of the stats bench in the guest: a full run (100 then 1,000
/// containers, with a baseline daemon) took about 8 min under TCG.
pub(crate) const BENCH_TIME_BOX_SECS: u64 = 2_400;

/// Boots the VM and runs the stats bench (`tests/benches/stats`, full counts) in it, with
/// `COLLECTOR_BASELINE_DAEMON_BIN` passed on when set; `args` go to the bench binary. The
/// figures are relative (the guest is emulated): read the ratios (docs/benchmarks.md, run V).
pub(crate) fn stats_bench(args: &[String], time_box: Duration) -> Result<()> {
    ensure_guest_packages()?;
    crate::build()?;
    let mut command = vec![path_text(&bench_binary("stats")?)?, "--bench".to_owned()];
    command.extend(args.iter().cloned());
    let mut env = Vec::new();
    if let Some(baseline) = std::env::var_os("COLLECTOR_BASELINE_DAEMON_BIN")
        && !baseline.is_empty()
    {
        let baseline = std::path::absolute(&baseline)?;
        // The guest sees the host's root, but its own empty tmpfs on these directories.
        if let Some(hidden) = GUEST_TMPFS.iter().find(|d| baseline.starts_with(d)) {
            bail!(
                "COLLECTOR_BASELINE_DAEMON_BIN={} is under {hidden}, which the guest mounts a                  tmpfs on: copy it elsewhere (e.g. under target/)",
                baseline.display()
            );
        }
        env.push(("COLLECTOR_BASELINE_DAEMON_BIN", path_text(&baseline)?));
    }
    run(
        &Payload {
            what: "the stats bench",
            command,
            env,
            // A network interface besides lo: a container's network is read from the
            // interfaces of /proc/<pid>/net/dev other than lo, and the bench checks that the
            // answers have it. A dummy interface is enough (its counters stay 0).
            // (Interface names are at most 15 bytes.)
            prepare: "modprobe dummy\nip link add cdummy0 type dummy\nip link set cdummy0 up",
        },
        time_box,
    )
}

/// What booting the guest takes: qemu, the 6.1 kernel and its modules, busybox for the
/// initramfs (built with cpio and gzip, modules found by kmod's modprobe), xz for the kernel's
/// payload, mkfs.ext4 for the disk, and ip in the guest.
fn ensure_guest_packages() -> Result<()> {
    ensure_apt_packages(&[
        "qemu-system-x86",
        "linux-image-amd64",
        "busybox-static",
        "cpio",
        "gzip",
        "kmod",
        "xz-utils",
        "e2fsprogs",
        "iproute2",
    ])
}

/// The test binary's arguments: `args`, with [`DEFAULT_FILTERS`] and [`DEFAULT_SKIPS`] when
/// they hold no filter, and 2 test threads unless they say how many.
fn test_args(args: &[String]) -> Vec<String> {
    let mut test_args: Vec<String> = args.to_vec();
    let has_filter = args.iter().any(|a| !a.starts_with('-'));
    if !has_filter {
        test_args.extend(DEFAULT_FILTERS.iter().map(|f| (*f).to_owned()));
        for skip in DEFAULT_SKIPS {
            test_args.extend(["--skip".to_owned(), (*skip).to_owned()]);
        }
    }
    if !args
        .iter()
        .any(|a| a == "--test-threads" || a.starts_with("--test-threads="))
    {
        test_args.push("--test-threads=2".to_owned());
    }
    test_args
}

/// Boots the guest with `payload` and waits for its exit code.
fn run(payload: &Payload, time_box: Duration) -> Result<()> {
    let kernel = guest_kernel()?;
    let dir = target_dir().join("xtask").join("vm");
    let share = dir.join("share");
    if share.exists() {
        fs::remove_dir_all(&share).with_context(|| format!("removing {}", share.display()))?;
    }
    fs::create_dir_all(&share).with_context(|| format!("creating {}", share.display()))?;
    let share = std::path::absolute(&share)?;

    let vmlinux = extract_vmlinux(&kernel, &dir)?;
    let initrd = build_initramfs(&kernel, &dir, &share)?;
    let disk = make_disk(&dir)?;
    write_guest_script(&share, payload)?;

    let started = Instant::now();
    let rc = boot(&vmlinux, &initrd, &disk, &share, time_box);
    // The disk holds only what the guest wrote: not worth keeping between runs.
    let _ = fs::remove_file(&disk);
    let rc = rc?;
    eprintln!(
        "VM lane: {} finished with exit code {rc} after {:.1} s (console log: {})",
        payload.what,
        started.elapsed().as_secs_f64(),
        dir.join("console.log").display()
    );
    if rc != 0 {
        bail!(
            "{} in the cgroup v2 VM failed (exit code {rc})",
            payload.what
        );
    }
    Ok(())
}

fn path_text(path: &Path) -> Result<String> {
    path.to_str()
        .map(str::to_owned)
        .with_context(|| format!("{} is not UTF-8", path.display()))
}

/// Builds the bench binary `name` of collector-tests and returns its path.
fn bench_binary(name: &str) -> Result<PathBuf> {
    built_executable(
        &["bench", "-p", "collector-tests", "--bench", name],
        |msg| msg["target"]["name"] == name && msg["target"]["kind"][0] == "bench",
    )
}

/// Builds the collector-tests test binary and returns its path.
fn test_binary() -> Result<PathBuf> {
    built_executable(&["test", "-p", "collector-tests", "--lib"], |msg| {
        msg["target"]["name"] == "collector_tests" && msg["profile"]["test"] == true
    })
}

/// Runs `cargo <args> --no-run --message-format=json` and returns the executable of the
/// first `compiler-artifact` message that `wanted` accepts.
fn built_executable(args: &[&str], wanted: impl Fn(&serde_json::Value) -> bool) -> Result<PathBuf> {
    let out = Cmd::new(cargo())
        .current_dir(workspace_root())
        .args(args)
        .args(["--no-run", "--message-format=json"])
        .read_stdout()?;
    for line in out.lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] == "compiler-artifact"
            && wanted(&msg)
            && let Some(exe) = msg["executable"].as_str()
        {
            return Ok(PathBuf::from(exe));
        }
    }
    bail!("cargo {} --no-run named no such executable", args.join(" "))
}

/// The release of the newest installed 6.1 kernel that has both /boot/vmlinuz-R and
/// /lib/modules/R (the guest loads further modules from there).
fn guest_kernel() -> Result<String> {
    let mut releases: Vec<String> = fs::read_dir("/boot")
        .context("reading /boot")?
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let release = name.strip_prefix("vmlinuz-")?.to_owned();
            (release.starts_with(KERNEL_SERIES)
                && Path::new("/lib/modules").join(&release).is_dir())
            .then_some(release)
        })
        .collect();
    releases.sort_by_key(|r| version_key(r));
    releases
        .pop()
        .context("no /boot/vmlinuz-6.1.* with /lib/modules (is linux-image-amd64 installed?)")
}

/// `6.1.0-57-amd64` → [6, 1, 0, 57, ...]: numeric parts compared as numbers.
fn version_key(release: &str) -> Vec<u64> {
    release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect()
}

/// The uncompressed kernel from inside /boot/vmlinuz-K (a bzImage whose payload is an XZ
/// stream): qemu boots it through its PVH entry point, skipping the decompressor, which takes
/// about 3 s under TCG. Cached in `dir` by release.
fn extract_vmlinux(kernel: &str, dir: &Path) -> Result<PathBuf> {
    let out = dir.join(format!("vmlinux-{kernel}"));
    if out.exists() {
        return Ok(out);
    }
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let bz = format!("/boot/vmlinuz-{kernel}");
    let image = fs::read(&bz).with_context(|| format!("reading {bz}"))?;
    let magic = b"\xfd7zXZ\x00";
    let offset = image
        .windows(magic.len())
        .position(|w| w == magic)
        .with_context(|| format!("no XZ stream in {bz}"))?;
    let partial = dir.join(format!("vmlinux-{kernel}.partial"));
    let file =
        fs::File::create(&partial).with_context(|| format!("creating {}", partial.display()))?;
    eprintln!("$ xz -dc < {bz}[{offset}..] > {}", partial.display());
    let mut xz = Cmd::new("xz")
        .arg("-dc")
        .stdin(Stdio::piped())
        .stdout(file)
        .stderr(Stdio::null())
        .spawn()?;
    let mut stdin = xz.stdin.take().context("xz's stdin")?;
    // xz stops reading at the end of its stream (the bzImage has more after it): a broken pipe
    // here is expected, as is xz's complaint about trailing data.
    let _ = stdin.write_all(&image[offset..]);
    drop(stdin);
    let _ = xz.wait().context("waiting for xz")?;
    let head = fs::read(&partial).with_context(|| format!("reading {}", partial.display()))?;
    if !head.starts_with(b"\x7fELF") {
        bail!("{bz}: the XZ payload is not an ELF kernel");
    }
    fs::rename(&partial, &out).with_context(|| format!("renaming to {}", out.display()))?;
    Ok(out)
}

/// Builds `initrd.cpio.gz`: static busybox, the modules of [`INITRAMFS_MODULES`] in the order
/// `modprobe --show-depends` gives, and `/init` (see [`init_script`]).
fn build_initramfs(kernel: &str, dir: &Path, share: &Path) -> Result<PathBuf> {
    let root = dir.join("initramfs");
    if root.exists() {
        fs::remove_dir_all(&root).with_context(|| format!("removing {}", root.display()))?;
    }
    for sub in ["bin", "modules", "proc", "sys", "dev", "newroot"] {
        fs::create_dir_all(root.join(sub))
            .with_context(|| format!("creating {}", root.join(sub).display()))?;
    }
    fs::copy("/bin/busybox", root.join("bin/busybox")).context("copying /bin/busybox")?;
    let mut order: Vec<String> = Vec::new();
    for module in INITRAMFS_MODULES {
        let deps = Cmd::new("modprobe")
            .args(["--show-depends", "-S", kernel, module])
            .read_stdout()?;
        // Lines are `insmod /lib/modules/K/.../name.ko ` (builtin ones say `builtin name`).
        for path in deps
            .lines()
            .filter_map(|l| l.trim().strip_prefix("insmod "))
        {
            let path = Path::new(path.trim());
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .with_context(|| format!("module path {}", path.display()))?
                .to_owned();
            if !order.contains(&name) {
                fs::copy(path, root.join("modules").join(&name))
                    .with_context(|| format!("copying {}", path.display()))?;
                order.push(name);
            }
        }
    }
    fs::write(root.join("modules/order"), order.join("\n") + "\n")
        .context("writing modules/order")?;
    let init = root.join("init");
    fs::write(&init, init_script(share)).context("writing /init")?;
    make_executable(&init)?;

    let initrd = dir.join("initrd.cpio.gz");
    let initrd = std::path::absolute(&initrd)?;
    // `find .` lists parents before children, as cpio's newc format needs.
    Cmd::new("sh")
        .current_dir(&root)
        .arg("-c")
        .arg(format!(
            "find . | cpio --quiet -o -H newc | gzip -1 > '{}'",
            initrd.display()
        ))
        .run()?;
    fs::remove_dir_all(&root).with_context(|| format!("removing {}", root.display()))?;
    Ok(initrd)
}

/// The initramfs's `/init` (busybox sh): load the modules, mount the host's `/` (9p tag
/// `root`, read-only) at /newroot and the results share (tag `results`) at its host path in
/// it, then hand over to `guest.sh` from that share as PID 1 of the new root. If anything
/// fails, the exit code 125 goes to `isa-debug-exit` and qemu stops.
fn init_script(share: &Path) -> String {
    let share = share.display();
    format!(
        r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
fail() {{ echo "initramfs: $*"; printf '\175' | dd of=/dev/port bs=1 seek=244 count=1 2>/dev/null; poweroff -f; }}
mount -t proc proc /proc || fail "mount proc"
mount -t sysfs sysfs /sys || fail "mount sysfs"
mount -t devtmpfs devtmpfs /dev || fail "mount devtmpfs"
exec 0</dev/console 1>/dev/console 2>&1
for m in $(cat /modules/order); do insmod "/modules/$m" || fail "insmod $m"; done
opts=trans=virtio,version=9p2000.L,msize=512000,cache=loose
mount -t 9p -o "$opts,ro" root /newroot || fail "mount the host root"
mount -t 9p -o "$opts" results "/newroot{share}" || fail "mount the results share"
# switch_root deletes the initramfs and execs guest.sh as PID 1 in the new root, where the
# guest's own proc, sys and dev go along (they hide the host's, seen through the share).
for d in /proc /sys /dev; do mount --move "$d" "/newroot$d" || fail "moving $d"; done
exec switch_root /newroot /bin/sh "{share}/guest.sh"
fail "switch_root"
"#
    )
}

/// The directories the guest mounts an empty tmpfs on (its scratch space; the host's root is
/// read-only there).
const GUEST_TMPFS: &[&str] = &[
    "/tmp",
    "/run",
    "/var/tmp",
    "/root",
    "/mnt",
    "/var/lib",
    "/var/log",
    "/var/cache",
];

/// Writes `guest.sh` into the results share: mounts, the payload (its output to the console
/// and `output.log`), and the exit code to `isa-debug-exit`.
fn write_guest_script(share: &Path, payload: &Payload) -> Result<()> {
    let daemon = std::path::absolute(target_dir().join("release").join("collector-daemon"))?;
    let tests_dir = workspace_root().join("tests");
    let env: Vec<String> = payload
        .env
        .iter()
        .map(|(name, value)| format!("{name}={}", shell_quote(value)))
        .collect();
    let quoted: Vec<String> = payload.command.iter().map(|a| shell_quote(a)).collect();
    let script = format!(
        r#"#!/bin/sh
# PID 1 of the guest, in the host's read-only root. Kernel facts: cgroup_no_v1=all leaves
# cgroup2 the only hierarchy; a controller is usable in a child only once enabled in its
# parent's cgroup.subtree_control (nsdelegate and memory_recursiveprot as systemd mounts it).
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
share={share}
report() {{ echo "VM_EXIT_CODE=$1"; sync; printf "\\$(printf %03o "$1")" | dd of=/dev/port bs=1 seek=244 count=1 2>/dev/null; echo o > /proc/sysrq-trigger; sleep 5; }}
# A set-up step that fails ends the run with exit code 125 (not a kernel panic at PID 1's exit).
trap 'echo "guest: a set-up step failed"; report 125' EXIT
set -e
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
for d in {tmpfs}; do mount -t tmpfs -o mode=1777 tmpfs "$d"; done
chmod 0700 /root
mount -t cgroup2 -o nsdelegate,memory_recursiveprot cgroup2 /sys/fs/cgroup
for c in $(cat /sys/fs/cgroup/cgroup.controllers); do echo "+$c" > /sys/fs/cgroup/cgroup.subtree_control; done
mount -t bpf bpf /sys/fs/bpf
mount -t tracefs tracefs /sys/kernel/tracing
mount -t debugfs debugfs /sys/kernel/debug
mkdir -p {disk_dir}
mount -t ext4 /dev/vda {disk_dir}
chmod 1777 {disk_dir}
ip link set lo up
# PID 1 starts with the kernel's 1024/4096 open-file limits; a host's init gives far more (the
# stats bench holds 6 files per container beside the daemons, as the daemon's own cache does).
ulimit -n 65536
{prepare}
set +e
trap - EXIT
echo "guest: $(uname -r); $(grep cgroup /proc/self/mountinfo | cut -d' ' -f5,9-); subtree_control: $(cat /sys/fs/cgroup/cgroup.subtree_control)"
cd {tests_dir}
start=$(cut -d' ' -f1 /proc/uptime)
env CI=true RUST_BACKTRACE=1 COLLECTOR_DAEMON_BIN={daemon} COLLECTOR_TEST_DISK_DIR={disk_dir} {env} \
    {command} > "$share/output.log" 2>&1
rc=$?
echo "guest: {what} took $(awk -v s="$start" '{{print $1 - s}}' /proc/uptime) s (guest uptime $(cut -d' ' -f1 /proc/uptime) s)"
cat "$share/output.log"
umount {disk_dir}
[ "$rc" -gt 127 ] && rc=127
report "$rc"
"#,
        share = shell_quote(&share.display().to_string()),
        disk_dir = GUEST_DISK_DIR,
        tests_dir = shell_quote(&tests_dir.display().to_string()),
        daemon = shell_quote(&daemon.display().to_string()),
        tmpfs = GUEST_TMPFS.join(" "),
        prepare = payload.prepare,
        env = env.join(" "),
        what = payload.what,
        command = quoted.join(" "),
    );
    let path = share.join("guest.sh");
    fs::write(&path, script).with_context(|| format!("writing {}", path.display()))?;
    make_executable(&path)
}

/// A fresh ext4 image of [`DISK_MIB`] (sparse) for the guest's block IO tests.
fn make_disk(dir: &Path) -> Result<PathBuf> {
    let disk = dir.join("disk.img");
    let _ = fs::remove_file(&disk);
    let file = fs::File::create(&disk).with_context(|| format!("creating {}", disk.display()))?;
    file.set_len(DISK_MIB << 20)
        .with_context(|| format!("sizing {}", disk.display()))?;
    drop(file);
    Cmd::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "vmdisk"])
        .arg(&disk)
        .run()?;
    Ok(disk)
}

/// Runs qemu to the end or until `time_box` passes (then kills it, by its PID); returns the
/// guest's exit code. The serial console goes to stderr and `console.log`.
fn boot(
    vmlinux: &Path,
    initrd: &Path,
    disk: &Path,
    share: &Path,
    time_box: Duration,
) -> Result<i32> {
    let log_path = share
        .parent()
        .context("the share has a parent")?
        .join("console.log");
    let mut log =
        fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let mut qemu = Cmd::new("qemu-system-x86_64");
    qemu.args(["-accel", "tcg,thread=multi", "-cpu", "max", "-smp", "2"])
        .args(["-m", "2048", "-nodefaults", "-no-user-config", "-nographic"])
        .args(["-no-reboot", "-serial", "stdio", "-monitor", "none"])
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
        .arg("-kernel")
        .arg(vmlinux)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", "console=ttyS0 cgroup_no_v1=all panic=-1 quiet"])
        // multidevs=remap: the host's `/` spans several filesystems, whose inode numbers would
        // otherwise collide in the guest.
        .args([
            "-fsdev",
            "local,id=root,path=/,security_model=none,readonly=on,multidevs=remap",
        ])
        .args(["-device", "virtio-9p-pci,fsdev=root,mount_tag=root"])
        .arg("-fsdev")
        .arg(format!(
            "local,id=results,path={},security_model=none",
            share.display()
        ))
        .args(["-device", "virtio-9p-pci,fsdev=results,mount_tag=results"])
        .arg("-drive")
        .arg(format!("file={},if=virtio,format=raw", disk.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    let started = Instant::now();
    let mut child = qemu.spawn()?;
    let pid = child.id();
    let stdout = child.stdout.take().context("qemu's stdout")?;
    let tee = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            eprintln!("vm| {line}");
            let _ = writeln!(log, "{line}");
        }
    });
    let deadline = started + time_box;
    let status = loop {
        if let Some(status) = child.try_wait().context("waiting for qemu")? {
            break status;
        }
        if Instant::now() > deadline {
            eprintln!("VM lane: no result after {time_box:?}: killing qemu (pid {pid})");
            let _ = child.kill();
            let _ = child.wait();
            let _ = tee.join();
            bail!("the cgroup v2 VM did not finish within {time_box:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let _ = tee.join();
    // isa-debug-exit makes qemu exit with (value << 1) | 1; 0 means the guest powered off (or
    // rebooted on a panic) without reporting.
    match status.code() {
        Some(code) if code & 1 == 1 => Ok(code >> 1),
        _ => bail!("qemu ended without an exit code from the guest ({status}); see the console"),
    }
}

fn make_executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))
        .with_context(|| format!("chmod 755 {}", path.display()))
}

/// Single-quotes `word` for sh.
fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::{shell_quote, version_key};

    #[test]
    fn kernel_releases_compare_by_number() {
        let mut releases = vec!["6.1.0-9-amd64", "6.1.0-57-amd64", "6.1.0-10-amd64"];
        releases.sort_by_key(|r| version_key(r));
        assert_eq!(
            releases,
            ["6.1.0-9-amd64", "6.1.0-10-amd64", "6.1.0-57-amd64"]
        );
    }

    #[test]
    fn shell_words_are_single_quoted() {
        assert_eq!(shell_quote("tests::v2::"), "'tests::v2::'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
