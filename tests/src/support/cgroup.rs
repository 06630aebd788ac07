//! Test cgroups: a guard that creates `collector-test-<pid>-<n>/<sub-path>` in the cgroup v2
//! hierarchy and, optionally, in named v1 controller hierarchies, and on drop moves any process
//! still inside back to the hierarchy's root and removes exactly the directories it created.
//!
//! Hierarchies are found in /proc/self/mountinfo (cgroup2 at /sys/fs/cgroup/unified on the
//! hybrid Debian 12 hosts, /sys/fs/cgroup on v2-only ones). Nothing outside the guard's own
//! prefix is ever written, except the root's `cgroup.procs` when evacuating our own processes.

use std::{
    fmt, fs,
    io::{self, ErrorKind},
    os::unix::fs::MetadataExt as _,
    path::{Component, Path, PathBuf},
    time::{Duration, Instant},
};

/// One line of /proc/self/mountinfo, the fields we use.
#[derive(Debug, Clone)]
struct Mount {
    root: String,
    point: PathBuf,
    fstype: String,
    super_options: String,
}

fn mounts() -> Vec<Mount> {
    let text = fs::read_to_string("/proc/self/mountinfo").expect("reading /proc/self/mountinfo");
    parse_mountinfo(&text)
}

fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            // id parent major:minor root mount-point options [optional...] - fstype source super
            let (left, right) = line.split_once(" - ")?;
            let mut left = left.split(' ');
            let root = unescape(left.nth(3)?);
            let point = PathBuf::from(unescape(left.next()?));
            let mut right = right.split(' ');
            let fstype = right.next()?.to_owned();
            let super_options = right.nth(1).unwrap_or_default().to_owned();
            Some(Mount {
                root,
                point,
                fstype,
                super_options,
            })
        })
        .collect()
}

/// Undoes mountinfo's octal escapes (`\040` for a space, ...).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        if let (b'\\', Some(digits)) = (bytes[i], octal) {
            let value = digits.iter().fold(0u32, |v, d| v * 8 + u32::from(d - b'0'));
            out.push(u8::try_from(value).unwrap_or(b'?'));
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Where the cgroup v2 hierarchy is mounted, if it is.
#[must_use]
pub fn v2_mount() -> Option<PathBuf> {
    mounts()
        .into_iter()
        .find(|m| m.fstype == "cgroup2" && m.root == "/")
        .map(|m| m.point)
}

/// Where the v1 hierarchy holding `controller` (`memory`, `cpu`, `name=systemd`, ...) is
/// mounted, if it is.
#[must_use]
pub fn v1_mount(controller: &str) -> Option<PathBuf> {
    mounts()
        .into_iter()
        .find(|m| {
            m.fstype == "cgroup"
                && m.root == "/"
                && m.super_options.split(',').any(|o| o == controller)
        })
        .map(|m| m.point)
}

/// Whether this host has cgroup v2 alone, with controllers: cgroup2 mounted at
/// /sys/fs/cgroup, no v1 hierarchy mounted, and the root's `cgroup.subtree_control` enabling
/// memory, cpu, io and pids for its children (what systemd sets up on v2-only nodes, and
/// `cargo xtask vm`'s guest).
#[must_use]
pub fn v2_only_with_controllers() -> bool {
    let all = mounts();
    let v2_at_root = all
        .iter()
        .any(|m| m.fstype == "cgroup2" && m.root == "/" && m.point == Path::new("/sys/fs/cgroup"));
    let no_v1 = !all.iter().any(|m| m.fstype == "cgroup");
    let enabled = fs::read_to_string("/sys/fs/cgroup/cgroup.subtree_control").unwrap_or_default();
    let enabled: Vec<&str> = enabled.split_whitespace().collect();
    v2_at_root
        && no_v1
        && ["memory", "cpu", "io", "pids"]
            .iter()
            .all(|c| enabled.contains(c))
}

/// The directories of one hierarchy that a [`TestCgroup`] made.
struct Hierarchy {
    /// `None` for v2, else the v1 controller.
    controller: Option<String>,
    mount: PathBuf,
    leaf: PathBuf,
    /// Every directory created, in creation order (so parents before children).
    created: Vec<PathBuf>,
}

/// A cgroup the test owns, in the v2 hierarchy and optionally in v1 controller hierarchies;
/// removed (processes moved out first) on drop.
///
/// ```no_run
/// # use collector_tests::support::cgroup::TestCgroup;
/// let id = "ab".repeat(32);
/// let cg = TestCgroup::with_v1(&format!("system.slice/docker-{id}.scope"), &["memory"]);
/// println!("{} has inode {}", cg.v2_path(), cg.inode_v2());
/// ```
pub struct TestCgroup {
    prefix: String,
    sub: PathBuf,
    hierarchies: Vec<Hierarchy>,
}

impl TestCgroup {
    /// Creates `<v2 mount>/collector-test-<pid>-<n>/<sub>`. `sub` is relative, e.g.
    /// `"system.slice/docker-<64 hex>.scope"` or `"kubepods/burstable/pod<uid>/<64 hex>"`.
    /// Panics when there is no cgroup2 mount or the directories cannot be made (not root).
    #[must_use]
    pub fn new(sub: &str) -> Self {
        Self::with_v1(sub, &[])
    }

    /// As [`TestCgroup::new`], and the same directories in the v1 hierarchy of each of
    /// `controllers` (panics when one is not mounted: check with [`v1_mount`] first).
    #[must_use]
    pub fn with_v1(sub: &str, controllers: &[&str]) -> Self {
        let sub = relative(sub);
        let mut targets: Vec<(Option<String>, PathBuf)> = Vec::new();
        let v2 = v2_mount().expect("no cgroup2 hierarchy in /proc/self/mountinfo");
        targets.push((None, v2));
        for controller in controllers {
            let mount = v1_mount(controller).unwrap_or_else(|| {
                panic!("no cgroup v1 hierarchy with controller {controller:?} is mounted")
            });
            targets.push((Some((*controller).to_owned()), mount));
        }
        // A leftover of a crashed run with the same pid may hold a name: take the next one.
        let prefix = loop {
            let name = super::unique_name();
            if targets.iter().all(|(_, mount)| !mount.join(&name).exists()) {
                break name;
            }
        };
        let mut cg = Self {
            prefix,
            sub: sub.clone(),
            hierarchies: Vec::new(),
        };
        for (controller, mount) in targets {
            let leaf = mount.join(&cg.prefix).join(&sub);
            cg.hierarchies.push(Hierarchy {
                controller,
                mount: mount.clone(),
                leaf,
                created: Vec::new(),
            });
            let hierarchy = cg.hierarchies.last_mut().expect("just pushed");
            let mut dir = mount.join(&cg.prefix);
            mkdir(&dir);
            hierarchy.created.push(dir.clone());
            for component in sub.components() {
                dir.push(component);
                mkdir(&dir);
                hierarchy.created.push(dir.clone());
            }
        }
        cg
    }

    /// As [`TestCgroup::with_v1`], in the v1 hierarchies of those of `controllers` that are
    /// mounted: all of them on a hybrid host, none on a v2-only one (where `cgroup_no_v1` or
    /// systemd leave cgroup2 the only hierarchy). For tests that hold on both.
    #[must_use]
    pub fn with_v1_where_mounted(sub: &str, controllers: &[&str]) -> Self {
        let mounted: Vec<&str> = controllers
            .iter()
            .copied()
            .filter(|c| v1_mount(c).is_some())
            .collect();
        Self::with_v1(sub, &mounted)
    }

    /// The cgroup's directory in the v1 hierarchy of `controller`, if the guard was created
    /// there.
    #[must_use]
    pub fn v1_dir_if_created(&self, controller: &str) -> Option<&Path> {
        self.hierarchies
            .iter()
            .find(|h| h.controller.as_deref() == Some(controller))
            .map(|h| h.leaf.as_path())
    }

    /// The unique top directory name, `collector-test-<pid>-<n>`.
    #[must_use]
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The cgroup's directory in the v2 hierarchy.
    #[must_use]
    pub fn v2_dir(&self) -> &Path {
        &self.hierarchy(None).leaf
    }

    /// The cgroup's directory in the v1 hierarchy of `controller`; panics when the guard was
    /// not created there.
    #[must_use]
    pub fn v1_dir(&self, controller: &str) -> &Path {
        &self.hierarchy(Some(controller)).leaf
    }

    /// The cgroup v2 id (the inode number of its v2 directory), which is what
    /// `bpf_get_current_cgroup_id()` returns for processes inside.
    #[must_use]
    pub fn inode_v2(&self) -> u64 {
        inode(self.v2_dir())
    }

    /// The inode number of the cgroup's directory in the v1 hierarchy of `controller`.
    #[must_use]
    pub fn inode_v1(&self, controller: &str) -> u64 {
        inode(self.v1_dir(controller))
    }

    /// The path relative to the v2 mount as /proc/<pid>/cgroup shows it:
    /// `/collector-test-<pid>-<n>/<sub>` (the same path is used in every v1 hierarchy).
    #[must_use]
    pub fn v2_path(&self) -> String {
        format!("/{}/{}", self.prefix, self.sub.display())
    }

    /// The `cgroup.procs` file of the cgroup in every hierarchy it was created in.
    #[must_use]
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.hierarchies
            .iter()
            .map(|h| h.leaf.join("cgroup.procs"))
            .collect()
    }

    /// The processes in the cgroup (its v2 directory, not nested ones).
    #[must_use]
    pub fn procs(&self) -> Vec<u32> {
        read_procs(self.v2_dir()).unwrap_or_else(|e| panic!("reading procs of {self:?}: {e}"))
    }

    /// Moves process `pid` into the cgroup in every hierarchy it was created in.
    pub fn add_process(&self, pid: u32) {
        for file in self.procs_files() {
            fs::write(&file, pid.to_string())
                .unwrap_or_else(|e| panic!("writing {pid} to {}: {e}", file.display()));
        }
    }

    /// Creates `sub` (relative, may be several levels) below the cgroup in every hierarchy and
    /// returns its v2 directory (in a v1 hierarchy it is `v1_dir(controller).join(sub)`).
    /// Removed with the guard.
    pub fn mkdir_nested(&mut self, sub: &str) -> PathBuf {
        let sub = relative(sub);
        for hierarchy in &mut self.hierarchies {
            let mut dir = hierarchy.leaf.clone();
            for component in sub.components() {
                dir.push(component);
                if !hierarchy.created.contains(&dir) {
                    mkdir(&dir);
                    hierarchy.created.push(dir.clone());
                }
            }
        }
        self.v2_dir().join(sub)
    }

    /// Enables, in the v2 hierarchy, every controller each directory is offered
    /// (`cgroup.controllers`) in its `cgroup.subtree_control`, from the guard's top directory
    /// down to the leaf's parent, as systemd and the runtimes do on v2 hosts: a controller's
    /// files (memory.current, cpu.max, io.stat, pids.max, ...) exist in a cgroup only when its
    /// parent enables it. Only directories this guard made are written; they hold no process
    /// (v2's no-internal-process rule forbids processes beside enabled controllers).
    pub fn enable_controllers(&self) {
        let hierarchy = self.hierarchy(None);
        let mut dir = hierarchy.mount.join(&self.prefix);
        let mut parents = vec![dir.clone()];
        let components: Vec<_> = self.sub.components().collect();
        for component in components.iter().take(components.len().saturating_sub(1)) {
            dir.push(component);
            parents.push(dir.clone());
        }
        for parent in parents {
            let offered = fs::read_to_string(parent.join("cgroup.controllers"))
                .unwrap_or_else(|e| panic!("{}/cgroup.controllers: {e}", parent.display()));
            for controller in offered.split_whitespace() {
                let file = parent.join("cgroup.subtree_control");
                fs::write(&file, format!("+{controller}"))
                    .unwrap_or_else(|e| panic!("+{controller} > {}: {e}", file.display()));
            }
        }
    }

    fn hierarchy(&self, controller: Option<&str>) -> &Hierarchy {
        self.hierarchies
            .iter()
            .find(|h| h.controller.as_deref() == controller)
            .unwrap_or_else(|| panic!("{self:?} was not created in the {controller:?} hierarchy"))
    }
}

impl fmt::Debug for TestCgroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let controllers: Vec<&str> = self
            .hierarchies
            .iter()
            .map(|h| h.controller.as_deref().unwrap_or("v2"))
            .collect();
        write!(
            f,
            "TestCgroup({} in {})",
            self.v2_path(),
            controllers.join(",")
        )
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        for hierarchy in &self.hierarchies {
            let mut dirs = hierarchy.created.clone();
            dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
            let root_procs = hierarchy.mount.join("cgroup.procs");
            for dir in &dirs {
                if let Err(e) = remove(dir, &root_procs) {
                    eprintln!(
                        "warning: could not remove test cgroup {}: {e}",
                        dir.display()
                    );
                }
            }
        }
    }
}

/// Moves every process out of `dir` (to the hierarchy root) and removes it, retrying for a
/// while: a process that is exiting, or forking, can keep a cgroup busy for a moment.
fn remove(dir: &Path, root_procs: &Path) -> io::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match read_procs(dir) {
            Ok(pids) => {
                for pid in pids {
                    // ESRCH (it exited meanwhile) and EINVAL (a zombie) are fine.
                    let _ = fs::write(root_procs, pid.to_string());
                }
            }
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(_) => {}
        }
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn read_procs(dir: &Path) -> io::Result<Vec<u32>> {
    Ok(fs::read_to_string(dir.join("cgroup.procs"))?
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect())
}

fn mkdir(dir: &Path) {
    fs::create_dir(dir)
        .unwrap_or_else(|e| panic!("creating test cgroup {} (needs root): {e}", dir.display()));
}

/// The inode number of a directory (a cgroup id for cgroup directories).
#[must_use]
pub fn inode(dir: &Path) -> u64 {
    fs::metadata(dir)
        .unwrap_or_else(|e| panic!("stat {}: {e}", dir.display()))
        .ino()
}

/// `sub` as a relative path of plain components; panics on anything else.
fn relative(sub: &str) -> PathBuf {
    let path = PathBuf::from(sub.trim_matches('/'));
    assert!(
        path.components().count() > 0
            && path.components().all(|c| matches!(c, Component::Normal(_))),
        "cgroup sub-path must be relative with plain components, got {sub:?}"
    );
    path
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::{TestCgroup, parse_mountinfo, v1_mount};
    use crate::support::{
        is_root,
        process::{ChildGuard, cgroup_v2_path, spawn_in_cgroup},
        require,
    };

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime shared:5 - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
90 23 0:50 / /mnt/with\\040space rw - ext4 /dev/sda1 rw
";

    #[test]
    fn parses_mountinfo() {
        let mounts = parse_mountinfo(HYBRID);
        assert_eq!(mounts.len(), 6);
        let memory = &mounts[2];
        assert_eq!(memory.point.to_str(), Some("/sys/fs/cgroup/memory"));
        assert_eq!(memory.fstype, "cgroup");
        assert_eq!(memory.super_options, "rw,memory");
        assert_eq!(mounts[4].fstype, "cgroup2");
        assert_eq!(mounts[5].point.to_str(), Some("/mnt/with space"));
    }

    #[test]
    fn creates_then_removes_its_directories() {
        if !require("root, to create cgroups", is_root()) {
            return;
        }
        let id = "0123456789abcdef".repeat(4);
        let memory = v1_mount("memory").is_some();
        let controllers: &[&str] = if memory { &["memory"] } else { &[] };
        let mut cg = TestCgroup::with_v1(&format!("system.slice/docker-{id}.scope"), controllers);
        let top = cg.v2_dir().ancestors().nth(2).unwrap().to_path_buf();
        assert!(top.ends_with(cg.prefix()));
        assert!(cg.v2_dir().join("cgroup.procs").exists());
        assert_eq!(
            cg.v2_path(),
            format!("/{}/system.slice/docker-{id}.scope", cg.prefix())
        );
        assert_eq!(cg.inode_v2(), {
            use std::os::unix::fs::MetadataExt as _;
            fs::metadata(cg.v2_dir()).unwrap().ino()
        });
        let nested = cg.mkdir_nested("inner/deeper");
        assert!(nested.join("cgroup.procs").exists());
        let v1_top = memory.then(|| {
            assert!(cg.v1_dir("memory").join("memory.usage_in_bytes").exists());
            assert_ne!(cg.inode_v1("memory"), 0);
            cg.v1_dir("memory")
                .ancestors()
                .nth(2)
                .unwrap()
                .to_path_buf()
        });

        // A process still inside when the guard drops is moved out, not killed.
        let mut child = spawn_in_cgroup(&cg, &["sleep", "100"]);
        assert_eq!(cg.procs(), vec![child.id()]);
        assert_eq!(cgroup_v2_path(child.id()).unwrap(), cg.v2_path());
        drop(cg);
        assert!(!top.exists(), "{} left behind", top.display());
        if let Some(v1_top) = v1_top {
            assert!(!v1_top.exists(), "{} left behind", v1_top.display());
        }
        assert_eq!(cgroup_v2_path(child.id()).unwrap(), "/");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the process was killed"
        );
        drop::<ChildGuard>(child);
    }

    #[test]
    fn add_process_moves_into_every_hierarchy() {
        if !require("root, to create cgroups", is_root()) {
            return;
        }
        let controllers: &[&str] = if v1_mount("memory").is_some() {
            &["memory"]
        } else {
            &[]
        };
        let cg = TestCgroup::with_v1("kubepods/burstable/podx/ctr", controllers);
        let child = ChildGuard::new(
            std::process::Command::new("sleep")
                .arg("100")
                .spawn()
                .unwrap(),
        );
        cg.add_process(child.id());
        let cgroup = fs::read_to_string(format!("/proc/{}/cgroup", child.id())).unwrap();
        assert!(
            cgroup.contains(&format!("0::{}\n", cg.v2_path())),
            "{cgroup}"
        );
        if !controllers.is_empty() {
            assert!(
                cgroup.contains(&format!(":memory:{}\n", cg.v2_path())),
                "{cgroup}"
            );
        }
    }
}
