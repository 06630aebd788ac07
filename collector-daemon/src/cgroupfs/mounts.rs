//! Finds the host's cgroup hierarchies (v1, v2 or hybrid), their ids and where each one is mounted.
//! Relies on proc(5): mountinfo fields with octal-escaped paths and optional fields ended by "-",
//! v1 superblock options that name the controllers, and `/proc/<pid>/cgroup` lines `ID:CONTROLLERS:PATH` (id 0 = v2).

use std::{
    collections::BTreeMap,
    ffi::{OsStr, OsString},
    fs,
    os::unix::ffi::OsStringExt,
    path::{Component, Path, PathBuf},
};

/// What kind of hierarchy a [`Hierarchy`] is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HierarchyKind {
    /// The unified (v2) hierarchy: id 0 in /proc/<pid>/cgroup.
    V2,
    /// A v1 hierarchy with its controllers, sorted (e.g. `["cpu","cpuacct"]`), and its `name=` option if
    /// named (e.g. `Some("systemd")`).
    V1 {
        controllers: Vec<String>,
        name: Option<String>,
    },
}

/// One cgroup hierarchy and the mount through which the agent reaches it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hierarchy {
    /// The id that `/proc/<pid>/cgroup` uses for this hierarchy.
    pub id: u32,
    pub kind: HierarchyKind,
    pub mount_point: PathBuf,
    /// The cgroup of the hierarchy that is mounted at `mount_point`: "/" for a whole-hierarchy mount,
    /// "/docker/<id>" when a container that shares the host's cgroup namespace sees only its own subtree.
    pub root: PathBuf,
}

/// How the host arranges its hierarchies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CgroupMode {
    V1,
    V2,
    /// Both v1 and v2 hierarchies are mounted (e.g. systemd's hybrid layout).
    Hybrid,
}

/// Every cgroup hierarchy that is both mounted and known to `/proc/self/cgroup`, sorted by id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupLayout {
    pub mode: CgroupMode,
    pub hierarchies: Vec<Hierarchy>,
}

/// Why the cgroup layout could not be found.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error(
        "cannot read {}: check that procfs is mounted at the given proc root and that the agent may read it",
        .path.display()
    )]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "no cgroup or cgroup2 mount listed in {}: mount cgroupfs (e.g. cgroup2 at /sys/fs/cgroup), or give the \
         agent a proc root whose mount namespace has it (e.g. the host's /proc)",
        .path.display()
    )]
    NoCgroupMounts { path: PathBuf },
    #[error(
        "the cgroup v1 mounts {} listed in {} match no hierarchy in {}, and there is no cgroup2 mount: both files \
         must come from the same process's view (the same proc root)",
        display_paths(.mount_points),
        .mountinfo.display(),
        .self_cgroup.display()
    )]
    UnmatchedV1Mounts {
        mountinfo: PathBuf,
        self_cgroup: PathBuf,
        mount_points: Vec<PathBuf>,
    },
}

/// One line of `/proc/<pid>/cgroup`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcCgroupLine {
    pub hierarchy_id: u32,
    /// As the kernel lists them; a named hierarchy's `name=systemd` is kept here as one entry.
    pub controllers: Vec<String>,
    /// Relative to the hierarchy's root, as seen from the reader's cgroup namespace.
    pub path: String,
}

/// Labels used in errors when the texts were given directly rather than read from files.
const MOUNTINFO_TEXT: &str = "<mountinfo text>";
const SELF_CGROUP_TEXT: &str = "<self cgroup text>";

impl CgroupLayout {
    /// Reads `<proc_root>/self/mountinfo` and `<proc_root>/self/cgroup`.
    ///
    /// # Errors
    /// [`MountError::Read`] when either file cannot be read, and the errors of [`Self::from_texts`].
    pub fn discover(proc_root: &Path) -> Result<Self, MountError> {
        let mountinfo_path = proc_root.join("self/mountinfo");
        let self_cgroup_path = proc_root.join("self/cgroup");
        // Read as bytes: mountinfo only escapes space, tab, newline and backslash, so a single non-UTF-8
        // mount point anywhere on the host must not make the whole file unreadable.
        let mountinfo = fs::read(&mountinfo_path).map_err(|source| MountError::Read {
            path: mountinfo_path.clone(),
            source,
        })?;
        let self_cgroup = fs::read(&self_cgroup_path).map_err(|source| MountError::Read {
            path: self_cgroup_path.clone(),
            source,
        })?;
        // Only ids and controller names (ASCII) are used from this file; lossy paths do no harm here.
        let self_cgroup = String::from_utf8_lossy(&self_cgroup);
        build(&mountinfo, &mountinfo_path, &self_cgroup, &self_cgroup_path)
    }

    /// The same from the two files' texts (unit tests, fixtures).
    ///
    /// # Errors
    /// [`MountError::NoCgroupMounts`] when mountinfo lists no cgroup or cgroup2 mount, and
    /// [`MountError::UnmatchedV1Mounts`] when it lists only v1 mounts and none has a line in the cgroup text.
    pub fn from_texts(mountinfo: &str, self_cgroup: &str) -> Result<Self, MountError> {
        build(
            mountinfo.as_bytes(),
            Path::new(MOUNTINFO_TEXT),
            self_cgroup,
            Path::new(SELF_CGROUP_TEXT),
        )
    }

    #[must_use]
    pub fn v2(&self) -> Option<&Hierarchy> {
        self.hierarchies
            .iter()
            .find(|h| h.kind == HierarchyKind::V2)
    }

    #[must_use]
    pub fn by_id(&self, id: u32) -> Option<&Hierarchy> {
        self.hierarchies.iter().find(|h| h.id == id)
    }

    /// The same layout with each mount point under `from` moved to the same place under `to`: for an
    /// agent that reaches the host's cgroupfs elsewhere than its mountinfo says (the host's
    /// /sys/fs/cgroup bind-mounted at /host/sys/fs/cgroup), and for fixture trees. Mount points
    /// outside `from` are kept.
    #[must_use]
    pub fn with_mount_prefix(&self, from: &Path, to: &Path) -> Self {
        let mut layout = self.clone();
        for h in &mut layout.hierarchies {
            if let Ok(rest) = h.mount_point.strip_prefix(from) {
                // join("") would add a trailing separator.
                h.mount_point = if rest.as_os_str().is_empty() {
                    to.to_path_buf()
                } else {
                    to.join(rest)
                };
            }
        }
        layout
    }

    /// The v1 hierarchy holding `controller` (e.g. "memory"), if mounted as v1.
    #[must_use]
    pub fn v1_with_controller(&self, controller: &str) -> Option<&Hierarchy> {
        self.hierarchies.iter().find(|h| match &h.kind {
            HierarchyKind::V1 { controllers, .. } => controllers.iter().any(|c| c == controller),
            HierarchyKind::V2 => false,
        })
    }

    /// The v1 hierarchy whose cgroup the kernel programs track per process: the one with "memory" when it
    /// is v1; otherwise the first v1 hierarchy (lowest id) that has at least one controller (named-only
    /// hierarchies like name=systemd cannot be tracked); None on pure v2.
    #[must_use]
    pub fn tracked_v1(&self) -> Option<&Hierarchy> {
        self.v1_with_controller("memory").or_else(|| {
            // `hierarchies` is sorted by id, so the first match has the lowest id.
            self.hierarchies.iter().find(|h| {
                matches!(&h.kind, HierarchyKind::V1 { controllers, .. } if !controllers.is_empty())
            })
        })
    }

    /// The directory of cgroup `path` (hierarchy-relative, as in `/proc/<pid>/cgroup`; the leading "/" is
    /// optional) in hierarchy `hierarchy_id`: "/docker/abc" → /sys/fs/cgroup/memory/docker/abc.
    ///
    /// None when the hierarchy is not mounted, when `path` has a ".." component (it could escape the
    /// mount point) or a NUL byte, or when `path` lies outside the subtree that the mount shows.
    #[must_use]
    pub fn cgroup_dir(&self, hierarchy_id: u32, path: &str) -> Option<PathBuf> {
        let hierarchy = self.by_id(hierarchy_id)?;
        let mut parts = Vec::new();
        for part in path.split('/') {
            match part {
                "" | "." => {}
                ".." => return None,
                _ if part.contains('\0') => return None,
                _ => parts.push(OsStr::new(part)),
            }
        }
        // A mount whose root is not "/" shows only that subtree: its mount point is the root cgroup,
        // so the root's components must be stripped from `path`, and paths outside it are unreachable.
        let mut rest = parts.into_iter();
        for component in hierarchy.root.components() {
            match component {
                Component::RootDir | Component::CurDir => {}
                Component::Normal(name) => {
                    if rest.next() != Some(name) {
                        return None;
                    }
                }
                // A root such as "/.." is shown for mounts from outside the reader's cgroup namespace;
                // which cgroup it is cannot be told from here.
                Component::ParentDir | Component::Prefix(_) => return None,
            }
        }
        let mut dir = hierarchy.mount_point.clone();
        dir.extend(rest);
        Some(dir)
    }
}

/// Parses one /proc/<pid>/cgroup text into (`hierarchy_id`, controllers, path) entries; tolerant of a
/// trailing newline, skips malformed lines.
#[must_use]
pub fn parse_proc_cgroup(text: &str) -> Vec<ProcCgroupLine> {
    text.lines().filter_map(parse_proc_cgroup_line).collect()
}

fn parse_proc_cgroup_line(line: &str) -> Option<ProcCgroupLine> {
    // At most three fields: cgroup names may themselves contain ':' (e.g. "...slice:cri-containerd:<id>").
    let mut fields = line.splitn(3, ':');
    let id = fields.next()?;
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let hierarchy_id = id.parse().ok()?;
    let controllers = fields
        .next()?
        .split(',')
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect();
    let path = fields.next()?;
    // The kernel always prints the path from the namespace root, so it starts with "/".
    if !path.starts_with('/') {
        return None;
    }
    Some(ProcCgroupLine {
        hierarchy_id,
        controllers,
        path: path.to_owned(),
    })
}

/// A cgroup or cgroup2 mount read from mountinfo.
#[derive(Debug, PartialEq, Eq)]
struct CgroupMount {
    kind: HierarchyKind,
    root: PathBuf,
    mount_point: PathBuf,
}

/// v1 superblock options that are not controllers. Generic mount flags are listed too so that text in
/// the /proc/mounts style (flags mixed into the options) still yields the right controller set.
const NON_CONTROLLER_OPTIONS: &[&str] = &[
    "rw",
    "ro",
    "xattr",
    "clone_children",
    "noprefix",
    "cpuset_v2_mode",
    "favordynmods",
    "none",
    "nosuid",
    "nodev",
    "noexec",
    "relatime",
    "norelatime",
    "noatime",
    "nodiratime",
    "strictatime",
    "lazytime",
    "sync",
    "dirsync",
    "mand",
    "nomand",
    "silent",
];

fn build(
    mountinfo: &[u8],
    mountinfo_path: &Path,
    self_cgroup: &str,
    self_cgroup_path: &Path,
) -> Result<CgroupLayout, MountError> {
    let mounts = parse_mountinfo(mountinfo);
    if mounts.is_empty() {
        return Err(MountError::NoCgroupMounts {
            path: mountinfo_path.to_path_buf(),
        });
    }
    // Ids of the v1 hierarchies keyed by (sorted controllers, name); id 0 is always the unified one.
    let v1_ids: Vec<(u32, HierarchyKind)> = parse_proc_cgroup(self_cgroup)
        .into_iter()
        .filter(|line| line.hierarchy_id != 0)
        .map(|line| (line.hierarchy_id, v1_kind(&line.controllers)))
        .collect();

    let mut by_id: BTreeMap<u32, Hierarchy> = BTreeMap::new();
    let mut unmatched = Vec::new();
    for mount in mounts {
        let id = if mount.kind == HierarchyKind::V2 {
            0
        } else if let Some((id, _)) = v1_ids.iter().find(|(_, kind)| *kind == mount.kind) {
            *id
        } else {
            // Without a line in /proc/self/cgroup the hierarchy's id is unknown, so paths read from
            // /proc/<pid>/cgroup could never be mapped to it.
            unmatched.push(mount.mount_point);
            continue;
        };
        let candidate = Hierarchy {
            id,
            kind: mount.kind,
            mount_point: mount.mount_point,
            root: mount.root,
        };
        match by_id.get_mut(&id) {
            Some(best) if preference(&candidate) < preference(best) => *best = candidate,
            Some(_) => {}
            None => {
                by_id.insert(id, candidate);
            }
        }
    }

    let hierarchies: Vec<Hierarchy> = by_id.into_values().collect();
    let has_v2 = hierarchies.iter().any(|h| h.kind == HierarchyKind::V2);
    let has_v1 = hierarchies.iter().any(|h| h.kind != HierarchyKind::V2);
    let mode = match (has_v1, has_v2) {
        (true, true) => CgroupMode::Hybrid,
        (true, false) => CgroupMode::V1,
        (false, true) => CgroupMode::V2,
        (false, false) => {
            // Every mount was v1 (a v2 one always has id 0) and none had an id.
            return Err(MountError::UnmatchedV1Mounts {
                mountinfo: mountinfo_path.to_path_buf(),
                self_cgroup: self_cgroup_path.to_path_buf(),
                mount_points: unmatched,
            });
        }
    };
    Ok(CgroupLayout { mode, hierarchies })
}

/// Sort key among mounts of one hierarchy (smaller wins): a whole-hierarchy mount (root "/") reaches
/// every cgroup, and the shortest mount point is usually the canonical one rather than a bind mount.
fn preference(h: &Hierarchy) -> (bool, usize, &OsStr) {
    let mount_point = h.mount_point.as_os_str();
    (h.root != Path::new("/"), mount_point.len(), mount_point)
}

/// The cgroup and cgroup2 mounts of a mountinfo text, in file order; other and malformed lines are skipped.
fn parse_mountinfo(text: &[u8]) -> Vec<CgroupMount> {
    text.split(|&b| b == b'\n')
        .filter_map(parse_mountinfo_line)
        .collect()
}

fn parse_mountinfo_line(line: &[u8]) -> Option<CgroupMount> {
    // Split on single spaces, not runs: the kernel escapes spaces inside fields, and an empty mount
    // source is printed as an empty field that must keep its place.
    let fields: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
    let &[mount_id, parent_id, _dev, root, mount_point, _options] = fields.get(..6)? else {
        return None;
    };
    // Zero or more optional fields ("shared:1", "master:2", ...) follow, ended by a lone "-".
    let separator = 6 + fields.get(6..)?.iter().position(|f| *f == b"-")?;
    let &[fstype, _source, super_options] = fields.get(separator + 1..separator + 4)? else {
        return None;
    };
    if !is_decimal(mount_id) || !is_decimal(parent_id) {
        return None;
    }
    let kind = match fstype {
        b"cgroup2" => HierarchyKind::V2,
        b"cgroup" => v1_kind_from_options(std::str::from_utf8(super_options).ok()?)?,
        _ => return None,
    };
    let root = unescape(root);
    let mount_point = unescape(mount_point);
    if !root.starts_with(b"/") || !mount_point.starts_with(b"/") {
        return None;
    }
    Some(CgroupMount {
        kind,
        root: PathBuf::from(OsString::from_vec(root)),
        mount_point: PathBuf::from(OsString::from_vec(mount_point)),
    })
}

fn is_decimal(field: &[u8]) -> bool {
    !field.is_empty() && field.iter().all(u8::is_ascii_digit)
}

/// The controllers and name of a v1 superblock, e.g. "rw,cpuacct,cpu" or "rw,xattr,name=systemd".
/// None for a hierarchy with neither, which the kernel refuses to create.
fn v1_kind_from_options(super_options: &str) -> Option<HierarchyKind> {
    let mut entries = Vec::new();
    for option in super_options.split(',') {
        if let Some(name) = option.strip_prefix("name=") {
            // seq_show_option escapes the name in mountinfo; /proc/<pid>/cgroup prints it raw.
            entries.push(format!(
                "name={}",
                String::from_utf8(unescape(name.as_bytes())).ok()?
            ));
        } else if !option.contains('=') && !NON_CONTROLLER_OPTIONS.contains(&option) {
            // Options with a value (release_agent=...) are never controllers.
            entries.push(option.to_owned());
        }
    }
    match v1_kind(&entries) {
        HierarchyKind::V1 {
            controllers,
            name: None,
        } if controllers.is_empty() => None,
        kind => Some(kind),
    }
}

/// The v1 kind of a controller list in the /proc/<pid>/cgroup style ("name=X" among the controllers).
/// Controllers are sorted and deduplicated: kernels differ in order ("cpu,cpuacct" vs "cpuacct,cpu").
fn v1_kind(entries: &[String]) -> HierarchyKind {
    let mut controllers = Vec::new();
    let mut name = None;
    for entry in entries {
        if let Some(n) = entry.strip_prefix("name=") {
            if !n.is_empty() {
                name = Some(n.to_owned());
            }
        } else if !entry.is_empty() {
            controllers.push(entry.clone());
        }
    }
    controllers.sort();
    controllers.dedup();
    HierarchyKind::V1 { controllers, name }
}

/// Undoes mountinfo's escaping: the kernel writes ' ', '\t', '\n' and '\\' as `\ooo` octal.
/// Anything that is not a valid `\ooo` byte is kept as it is.
fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\'
            && let Some(byte) = field.get(i + 1..i + 4).and_then(octal_byte)
        {
            out.push(byte);
            i += 4;
        } else {
            out.push(field[i]);
            i += 1;
        }
    }
    out
}

fn octal_byte(digits: &[u8]) -> Option<u8> {
    digits.iter().try_fold(0u8, |acc, &d| {
        if (b'0'..=b'7').contains(&d) {
            acc.checked_mul(8)?.checked_add(d - b'0')
        } else {
            None
        }
    })
}

fn display_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use std::os::unix::ffi::OsStrExt;

    use super::*;

    // This machine: a hybrid host (each v1 controller on its own hierarchy, cgroup2 at .../unified).
    const THIS_HOST_MOUNTINFO: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
23 27 0:22 / /sys rw,relatime - sysfs sysfs rw
24 27 0:6 / /dev rw,relatime - devtmpfs devtmpfs rw,size=12334492k,nr_inodes=3083623,mode=755
25 24 0:23 / /dev/shm rw,relatime - tmpfs tmpfs rw,size=24684092k
26 24 0:24 / /dev/pts rw,relatime - devpts devpts rw,mode=600,ptmxmode=000
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard,resv_strict,resuid=65534,resgid=65534
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const THIS_HOST_CGROUP: &str = "\
9:name=systemd:/
8:pids:/
7:blkio:/
6:freezer:/
5:devices:/
4:memory:/process_api/a5cc18f5f395c5843485e68c40ebfbc3
3:cpuset:/
2:cpuacct:/
1:cpu:/
0::/
";

    // Ubuntu 22.04 / Debian 12: pure v2, systemd mounts cgroup2 at /sys/fs/cgroup.
    const UBUNTU_2204_MOUNTINFO: &str = "\
22 28 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
23 28 0:22 / /proc rw,nosuid,nodev,noexec,relatime shared:13 - proc proc rw
24 28 0:5 / /dev rw,nosuid,relatime shared:2 - devtmpfs udev rw,size=8123456k,nr_inodes=2030864,mode=755,inode64
25 24 0:23 / /dev/pts rw,nosuid,noexec,relatime shared:3 - devpts devpts rw,gid=5,mode=620,ptmxmode=000
26 28 0:24 / /run rw,nosuid,nodev,noexec,relatime shared:5 - tmpfs tmpfs rw,size=1631234k,mode=755,inode64
28 1 253:0 / / rw,relatime shared:1 - ext4 /dev/mapper/ubuntu--vg-ubuntu--lv rw
29 22 0:6 / /sys/kernel/security rw,nosuid,nodev,noexec,relatime shared:8 - securityfs securityfs rw
30 24 0:25 / /dev/shm rw,nosuid,nodev shared:4 - tmpfs tmpfs rw,inode64
32 22 0:27 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
33 22 0:28 / /sys/fs/pstore rw,nosuid,nodev,noexec,relatime shared:10 - pstore pstore rw
34 22 0:29 / /sys/fs/bpf rw,nosuid,nodev,noexec,relatime shared:11 - bpf bpf rw,mode=700
";
    const UBUNTU_2204_CGROUP: &str = "0::/user.slice/user-1000.slice/session-3.scope\n";

    // CentOS 7 (kernel 3.10): pure v1, co-mounted controllers listed "cpuacct,cpu"; the
    // /sys/fs/cgroup/cpu and /sys/fs/cgroup/cpuacct symlinks do not show in mountinfo.
    const CENTOS7_MOUNTINFO: &str = "\
17 39 0:17 / /sys rw,nosuid,nodev,noexec,relatime shared:6 - sysfs sysfs rw
18 39 0:3 / /proc rw,nosuid,nodev,noexec,relatime shared:5 - proc proc rw
24 17 0:20 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:7 - tmpfs tmpfs ro,mode=755
25 24 0:21 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:8 - cgroup cgroup rw,xattr,release_agent=/usr/lib/systemd/systemd-cgroups-agent,name=systemd
27 24 0:23 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:9 - cgroup cgroup rw,cpuacct,cpu
28 24 0:24 / /sys/fs/cgroup/cpuset rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,cpuset
29 24 0:25 / /sys/fs/cgroup/freezer rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,freezer
30 24 0:26 / /sys/fs/cgroup/devices rw,nosuid,nodev,noexec,relatime shared:12 - cgroup cgroup rw,devices
31 24 0:27 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup rw,net_prio,net_cls
32 24 0:28 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,memory
33 24 0:29 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,pids
34 24 0:30 / /sys/fs/cgroup/blkio rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,blkio
35 24 0:31 / /sys/fs/cgroup/perf_event rw,nosuid,nodev,noexec,relatime shared:17 - cgroup cgroup rw,perf_event
36 24 0:32 / /sys/fs/cgroup/hugetlb rw,nosuid,nodev,noexec,relatime shared:18 - cgroup cgroup rw,hugetlb
39 1 253:0 / / rw,relatime shared:1 - xfs /dev/mapper/centos-root rw,attr2,inode64,noquota
";
    const CENTOS7_CGROUP: &str = "\
11:hugetlb:/
10:perf_event:/
9:blkio:/user.slice
8:pids:/user.slice
7:memory:/user.slice
6:net_prio,net_cls:/
5:devices:/user.slice
4:freezer:/
3:cpuset:/
2:cpuacct,cpu:/user.slice
1:name=systemd:/user.slice/user-1000.slice/session-1.scope
";

    // Ubuntu 20.04: systemd's hybrid layout, v1 controllers plus a controller-less cgroup2 at .../unified.
    const UBUNTU_2004_MOUNTINFO: &str = "\
22 29 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
25 22 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
27 25 0:24 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
29 1 253:0 / / rw,relatime shared:1 - ext4 /dev/sda2 rw
30 25 0:27 / /sys/fs/cgroup/devices rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,devices
31 25 0:28 / /sys/fs/cgroup/blkio rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,blkio
32 25 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:17 - cgroup cgroup rw,cpu,cpuacct
33 25 0:30 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:18 - cgroup cgroup rw,memory
34 25 0:31 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid,nodev,noexec,relatime shared:19 - cgroup cgroup rw,net_cls,net_prio
35 25 0:32 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:20 - cgroup cgroup rw,pids
36 25 0:33 / /sys/fs/cgroup/cpuset rw,nosuid,nodev,noexec,relatime shared:21 - cgroup cgroup rw,cpuset,clone_children
37 25 0:34 / /sys/fs/cgroup/rdma rw,nosuid,nodev,noexec,relatime shared:22 - cgroup cgroup rw,rdma
38 25 0:35 / /sys/fs/cgroup/freezer rw,nosuid,nodev,noexec,relatime shared:23 - cgroup cgroup rw,freezer
39 25 0:36 / /sys/fs/cgroup/perf_event rw,nosuid,nodev,noexec,relatime shared:24 - cgroup cgroup rw,perf_event
40 25 0:37 / /sys/fs/cgroup/hugetlb rw,nosuid,nodev,noexec,relatime shared:25 - cgroup cgroup rw,hugetlb
";
    const UBUNTU_2004_CGROUP: &str = "\
12:hugetlb:/
11:perf_event:/
10:freezer:/
9:rdma:/
8:cpuset:/
7:pids:/user.slice/user-1000.slice/session-2.scope
6:net_cls,net_prio:/
5:memory:/user.slice/user-1000.slice/session-2.scope
4:cpu,cpuacct:/user.slice
3:blkio:/user.slice
2:devices:/user.slice
1:name=systemd:/user.slice/user-1000.slice/session-2.scope
0::/user.slice/user-1000.slice/session-2.scope
";

    // The agent in a Docker container on a CentOS 7 host, sharing the host's cgroup namespace: its own
    // /sys/fs/cgroup mounts show only /docker/4f1c2a, and the host's /sys/fs/cgroup is bind-mounted at
    // /host/sys/fs/cgroup (memory also at a longer /host/rootfs path). pids has no host mount.
    const CONTAINER_MOUNTINFO: &str = "\
1500 1400 0:120 / / rw,relatime master:300 - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/l/A:/var/lib/docker/overlay2/l/B,upperdir=/var/lib/docker/overlay2/x/diff,workdir=/var/lib/docker/overlay2/x/work
1510 1500 0:125 / /sys ro,nosuid,nodev,noexec,relatime - sysfs sysfs ro
1511 1510 0:126 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime - tmpfs tmpfs rw,mode=755
1512 1511 0:21 /docker/4f1c2a /sys/fs/cgroup/systemd ro,nosuid,nodev,noexec,relatime master:8 - cgroup cgroup rw,xattr,release_agent=/usr/lib/systemd/systemd-cgroups-agent,name=systemd
1513 1511 0:23 /docker/4f1c2a /sys/fs/cgroup/cpu,cpuacct ro,nosuid,nodev,noexec,relatime master:9 - cgroup cgroup rw,cpuacct,cpu
1514 1511 0:28 /docker/4f1c2a /sys/fs/cgroup/memory ro,nosuid,nodev,noexec,relatime master:14 - cgroup cgroup rw,memory
1515 1511 0:29 /docker/4f1c2a /sys/fs/cgroup/pids ro,nosuid,nodev,noexec,relatime master:15 - cgroup cgroup rw,pids
1530 1500 0:20 / /host/sys/fs/cgroup ro,nosuid,nodev,noexec master:7 - tmpfs tmpfs ro,mode=755
1531 1530 0:21 / /host/sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime master:8 - cgroup cgroup rw,xattr,release_agent=/usr/lib/systemd/systemd-cgroups-agent,name=systemd
1532 1530 0:23 / /host/sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime master:9 - cgroup cgroup rw,cpuacct,cpu
1540 1500 0:28 / /host/rootfs/sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime master:14 - cgroup cgroup rw,memory
1533 1530 0:28 / /host/sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime master:14 - cgroup cgroup rw,memory
";
    const CONTAINER_CGROUP: &str = "\
11:hugetlb:/docker/4f1c2a
8:pids:/docker/4f1c2a
7:memory:/docker/4f1c2a
2:cpuacct,cpu:/docker/4f1c2a
1:name=systemd:/docker/4f1c2a
";

    // Mount points with every character the kernel escapes: space, tab, newline, backslash.
    const ESCAPED_MOUNTINFO: &str = r"40 25 0:40 / /run/my\040cgroups/uni\011fied\134x\012y rw,relatime shared:30 - cgroup2 cgroup2 rw
41 25 0:41 /sub\040dir /mnt/v1\040memory rw,relatime - cgroup cgroup rw,memory
";
    const ESCAPED_CGROUP: &str = "3:memory:/sub dir/job 1\n0::/\n";

    fn v1(controllers: &[&str], name: Option<&str>) -> HierarchyKind {
        HierarchyKind::V1 {
            controllers: controllers.iter().map(|c| (*c).to_owned()).collect(),
            name: name.map(str::to_owned),
        }
    }

    fn hierarchy(id: u32, kind: HierarchyKind, mount_point: &str) -> Hierarchy {
        Hierarchy {
            id,
            kind,
            mount_point: PathBuf::from(mount_point),
            root: PathBuf::from("/"),
        }
    }

    fn ids(layout: &CgroupLayout) -> Vec<u32> {
        layout.hierarchies.iter().map(|h| h.id).collect()
    }

    #[test]
    fn this_host_is_hybrid_with_one_controller_per_hierarchy() {
        let layout =
            CgroupLayout::from_texts(THIS_HOST_MOUNTINFO, THIS_HOST_CGROUP).expect("layout");
        assert_eq!(layout.mode, CgroupMode::Hybrid);
        assert_eq!(
            layout.hierarchies,
            vec![
                hierarchy(0, HierarchyKind::V2, "/sys/fs/cgroup/unified"),
                hierarchy(1, v1(&["cpu"], None), "/sys/fs/cgroup/cpu"),
                hierarchy(2, v1(&["cpuacct"], None), "/sys/fs/cgroup/cpuacct"),
                hierarchy(3, v1(&["cpuset"], None), "/sys/fs/cgroup/cpuset"),
                hierarchy(4, v1(&["memory"], None), "/sys/fs/cgroup/memory"),
                hierarchy(5, v1(&["devices"], None), "/sys/fs/cgroup/devices"),
                hierarchy(6, v1(&["freezer"], None), "/sys/fs/cgroup/freezer"),
                hierarchy(7, v1(&["blkio"], None), "/sys/fs/cgroup/blkio"),
                hierarchy(8, v1(&["pids"], None), "/sys/fs/cgroup/pids"),
                hierarchy(9, v1(&[], Some("systemd")), "/sys/fs/cgroup/systemd"),
            ]
        );
        assert_eq!(layout.v2().map(|h| h.id), Some(0));
        assert_eq!(layout.tracked_v1().map(|h| h.id), Some(4));
        assert_eq!(layout.v1_with_controller("cpuacct").map(|h| h.id), Some(2));
        assert_eq!(layout.v1_with_controller("systemd"), None);
        assert_eq!(
            layout.cgroup_dir(4, "/process_api/a5cc18f5f395c5843485e68c40ebfbc3"),
            Some(PathBuf::from(
                "/sys/fs/cgroup/memory/process_api/a5cc18f5f395c5843485e68c40ebfbc3"
            ))
        );
        assert_eq!(
            layout.cgroup_dir(0, "/"),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(layout.cgroup_dir(10, "/"), None);
    }

    #[test]
    fn ubuntu_2204_is_pure_v2() {
        let layout =
            CgroupLayout::from_texts(UBUNTU_2204_MOUNTINFO, UBUNTU_2204_CGROUP).expect("layout");
        assert_eq!(layout.mode, CgroupMode::V2);
        assert_eq!(
            layout.hierarchies,
            vec![hierarchy(0, HierarchyKind::V2, "/sys/fs/cgroup")]
        );
        assert_eq!(
            layout.v2(),
            Some(&hierarchy(0, HierarchyKind::V2, "/sys/fs/cgroup"))
        );
        assert_eq!(layout.tracked_v1(), None);
        assert_eq!(layout.v1_with_controller("memory"), None);
        assert_eq!(layout.by_id(1), None);
        assert_eq!(
            layout.cgroup_dir(0, "/user.slice/user-1000.slice/session-3.scope"),
            Some(PathBuf::from(
                "/sys/fs/cgroup/user.slice/user-1000.slice/session-3.scope"
            ))
        );
        assert_eq!(layout.cgroup_dir(1, "/user.slice"), None);
    }

    #[test]
    fn centos7_is_pure_v1_with_co_mounted_controllers() {
        let layout = CgroupLayout::from_texts(CENTOS7_MOUNTINFO, CENTOS7_CGROUP).expect("layout");
        assert_eq!(layout.mode, CgroupMode::V1);
        assert_eq!(
            layout.hierarchies,
            vec![
                hierarchy(1, v1(&[], Some("systemd")), "/sys/fs/cgroup/systemd"),
                hierarchy(
                    2,
                    v1(&["cpu", "cpuacct"], None),
                    "/sys/fs/cgroup/cpu,cpuacct"
                ),
                hierarchy(3, v1(&["cpuset"], None), "/sys/fs/cgroup/cpuset"),
                hierarchy(4, v1(&["freezer"], None), "/sys/fs/cgroup/freezer"),
                hierarchy(5, v1(&["devices"], None), "/sys/fs/cgroup/devices"),
                hierarchy(
                    6,
                    v1(&["net_cls", "net_prio"], None),
                    "/sys/fs/cgroup/net_cls,net_prio"
                ),
                hierarchy(7, v1(&["memory"], None), "/sys/fs/cgroup/memory"),
                hierarchy(8, v1(&["pids"], None), "/sys/fs/cgroup/pids"),
                hierarchy(9, v1(&["blkio"], None), "/sys/fs/cgroup/blkio"),
                hierarchy(10, v1(&["perf_event"], None), "/sys/fs/cgroup/perf_event"),
                hierarchy(11, v1(&["hugetlb"], None), "/sys/fs/cgroup/hugetlb"),
            ]
        );
        assert_eq!(layout.v2(), None);
        assert_eq!(layout.tracked_v1().map(|h| h.id), Some(7));
        assert_eq!(layout.v1_with_controller("cpu").map(|h| h.id), Some(2));
        assert_eq!(layout.v1_with_controller("net_prio").map(|h| h.id), Some(6));
        assert_eq!(
            layout.cgroup_dir(2, "/user.slice"),
            Some(PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/user.slice"))
        );
        assert_eq!(
            layout.cgroup_dir(1, "/user.slice/user-1000.slice/session-1.scope"),
            Some(PathBuf::from(
                "/sys/fs/cgroup/systemd/user.slice/user-1000.slice/session-1.scope"
            ))
        );
    }

    #[test]
    fn ubuntu_2004_is_hybrid_with_empty_unified() {
        let layout =
            CgroupLayout::from_texts(UBUNTU_2004_MOUNTINFO, UBUNTU_2004_CGROUP).expect("layout");
        assert_eq!(layout.mode, CgroupMode::Hybrid);
        assert_eq!(ids(&layout), (0..=12).collect::<Vec<_>>());
        assert_eq!(
            layout.v2(),
            Some(&hierarchy(0, HierarchyKind::V2, "/sys/fs/cgroup/unified"))
        );
        assert_eq!(
            layout.by_id(8),
            Some(&hierarchy(
                8,
                v1(&["cpuset"], None),
                "/sys/fs/cgroup/cpuset"
            ))
        );
        assert_eq!(
            layout.by_id(4),
            Some(&hierarchy(
                4,
                v1(&["cpu", "cpuacct"], None),
                "/sys/fs/cgroup/cpu,cpuacct"
            ))
        );
        assert_eq!(
            layout.by_id(1),
            Some(&hierarchy(
                1,
                v1(&[], Some("systemd")),
                "/sys/fs/cgroup/systemd"
            ))
        );
        assert_eq!(layout.by_id(9).map(|h| &h.kind), Some(&v1(&["rdma"], None)));
        assert_eq!(
            layout.tracked_v1(),
            Some(&hierarchy(
                5,
                v1(&["memory"], None),
                "/sys/fs/cgroup/memory"
            ))
        );
        assert_eq!(
            layout.cgroup_dir(5, "/user.slice/user-1000.slice/session-2.scope"),
            Some(PathBuf::from(
                "/sys/fs/cgroup/memory/user.slice/user-1000.slice/session-2.scope"
            ))
        );
        assert_eq!(
            layout.cgroup_dir(0, "/user.slice/user-1000.slice/session-2.scope"),
            Some(PathBuf::from(
                "/sys/fs/cgroup/unified/user.slice/user-1000.slice/session-2.scope"
            ))
        );
    }

    #[test]
    fn container_prefers_whole_hierarchy_mounts_then_shortest() {
        let layout =
            CgroupLayout::from_texts(CONTAINER_MOUNTINFO, CONTAINER_CGROUP).expect("layout");
        assert_eq!(layout.mode, CgroupMode::V1);
        let container_pids = Hierarchy {
            id: 8,
            kind: v1(&["pids"], None),
            mount_point: PathBuf::from("/sys/fs/cgroup/pids"),
            root: PathBuf::from("/docker/4f1c2a"),
        };
        assert_eq!(
            layout.hierarchies,
            vec![
                hierarchy(1, v1(&[], Some("systemd")), "/host/sys/fs/cgroup/systemd"),
                hierarchy(
                    2,
                    v1(&["cpu", "cpuacct"], None),
                    "/host/sys/fs/cgroup/cpu,cpuacct"
                ),
                hierarchy(7, v1(&["memory"], None), "/host/sys/fs/cgroup/memory"),
                container_pids,
            ]
        );
        assert_eq!(layout.tracked_v1().map(|h| h.id), Some(7));
        assert_eq!(
            layout.cgroup_dir(7, "/docker/4f1c2a"),
            Some(PathBuf::from("/host/sys/fs/cgroup/memory/docker/4f1c2a"))
        );
        assert_eq!(
            layout.cgroup_dir(7, "/docker/other"),
            Some(PathBuf::from("/host/sys/fs/cgroup/memory/docker/other"))
        );
        // pids is reachable only through the container's own subtree mount.
        assert_eq!(
            layout.cgroup_dir(8, "/docker/4f1c2a"),
            Some(PathBuf::from("/sys/fs/cgroup/pids"))
        );
        assert_eq!(
            layout.cgroup_dir(8, "/docker/4f1c2a/worker"),
            Some(PathBuf::from("/sys/fs/cgroup/pids/worker"))
        );
        assert_eq!(layout.cgroup_dir(8, "/docker/other"), None);
        assert_eq!(layout.cgroup_dir(8, "/docker/4f1c2abc"), None);
        assert_eq!(layout.cgroup_dir(8, "/"), None);
        // hugetlb is listed in /proc/self/cgroup but not mounted.
        assert_eq!(layout.by_id(11), None);
    }

    #[test]
    fn mount_points_move_under_a_prefix() {
        let layout =
            CgroupLayout::from_texts(THIS_HOST_MOUNTINFO, THIS_HOST_CGROUP).expect("layout");
        let moved =
            layout.with_mount_prefix(Path::new("/sys/fs/cgroup"), Path::new("/fixtures/hybrid"));
        assert_eq!(
            moved.v2().map(|h| h.mount_point.clone()),
            Some(PathBuf::from("/fixtures/hybrid/unified"))
        );
        assert_eq!(
            moved.cgroup_dir(4, "/docker/abc"),
            Some(PathBuf::from("/fixtures/hybrid/memory/docker/abc"))
        );
        let whole = layout.with_mount_prefix(Path::new("/sys/fs/cgroup/cpu"), Path::new("/x"));
        assert_eq!(
            whole.by_id(1).map(|h| h.mount_point.clone()),
            Some(PathBuf::from("/x"))
        );
        // "/sys/fs/cgroup/cpuacct" is not under "/sys/fs/cgroup/cpu".
        assert_eq!(whole.by_id(2), layout.by_id(2));
    }

    #[test]
    fn escaped_mount_points_are_unescaped() {
        let layout = CgroupLayout::from_texts(ESCAPED_MOUNTINFO, ESCAPED_CGROUP).expect("layout");
        assert_eq!(layout.mode, CgroupMode::Hybrid);
        assert_eq!(
            layout.hierarchies,
            vec![
                hierarchy(0, HierarchyKind::V2, "/run/my cgroups/uni\tfied\\x\ny"),
                Hierarchy {
                    id: 3,
                    kind: v1(&["memory"], None),
                    mount_point: PathBuf::from("/mnt/v1 memory"),
                    root: PathBuf::from("/sub dir"),
                },
            ]
        );
        assert_eq!(
            layout.cgroup_dir(3, "/sub dir/job 1"),
            Some(PathBuf::from("/mnt/v1 memory/job 1"))
        );
    }

    #[test]
    fn unescape_keeps_invalid_sequences() {
        assert_eq!(unescape(br"a\040b\011c\012d\134e"), b"a b\tc\nd\\e");
        assert_eq!(unescape(br"\0"), br"\0");
        assert_eq!(unescape(br"x\04"), br"x\04");
        assert_eq!(unescape(br"\400"), br"\400");
        assert_eq!(unescape(br"\08a"), br"\08a");
        assert_eq!(unescape(br"\\040"), b"\\ ");
        assert_eq!(unescape(br"end\"), br"end\");
        assert_eq!(unescape(br"\377"), [0xff]);
    }

    #[test]
    fn non_utf8_mount_points_are_kept_as_bytes() {
        let mounts = parse_mountinfo(b"50 25 0:50 / /mnt/\xffcg rw - cgroup2 cgroup2 rw\n");
        assert_eq!(
            mounts,
            vec![CgroupMount {
                kind: HierarchyKind::V2,
                root: PathBuf::from("/"),
                mount_point: PathBuf::from(OsStr::from_bytes(b"/mnt/\xffcg")),
            }]
        );
    }

    #[test]
    fn malformed_mountinfo_lines_are_skipped() {
        let mountinfo = "\
garbage
31 23 0:28 / /sys/fs/cgroup/memory rw,relatime - cgroup
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime cgroup cgroup rw,cpu
x 31 0:30 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
33 31 0:31 relative /sys/fs/cgroup/blkio rw - cgroup cgroup rw,blkio
33 31 0:31 / sys/fs/cgroup/devices rw - cgroup cgroup rw,devices
35 31 0:31 / /sys/fs/cgroup/none rw - cgroup cgroup rw,none
36 31 0:31 / /sys/fs/cgroup/short rw -

37 31 0:32 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:34 / /sys/fs/cgroup/orphan rw - cgroup cgroup rw,net_cls
39 31 0:33 / /sys/fs/cgroup/unified rw,relatime shared:4 master:1 - cgroup2  rw";
        let self_cgroup =
            "6:memory:/\n5:cpu:/\n4:pids:/\n3:blkio:/\n2:devices:/\n1:freezer:/\n0::/\n";
        let layout = CgroupLayout::from_texts(mountinfo, self_cgroup).expect("layout");
        assert_eq!(layout.mode, CgroupMode::Hybrid);
        assert_eq!(
            layout.hierarchies,
            vec![
                hierarchy(0, HierarchyKind::V2, "/sys/fs/cgroup/unified"),
                hierarchy(1, v1(&["freezer"], None), "/sys/fs/cgroup/freezer"),
            ]
        );
        assert_eq!(layout.tracked_v1().map(|h| h.id), Some(1));
    }

    #[test]
    fn tracked_v1_falls_back_to_lowest_id_with_controllers() {
        // memory lives on cgroup2 here, and the named hierarchy has the lowest id.
        let mountinfo = "\
40 31 0:40 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
41 31 0:41 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
42 31 0:42 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
43 31 0:43 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
";
        let self_cgroup = "1:name=systemd:/\n3:pids:/\n2:cpu,cpuacct:/\n0::/\n";
        let layout = CgroupLayout::from_texts(mountinfo, self_cgroup).expect("layout");
        assert_eq!(layout.mode, CgroupMode::Hybrid);
        assert_eq!(layout.v1_with_controller("memory"), None);
        assert_eq!(
            layout.tracked_v1(),
            Some(&hierarchy(
                2,
                v1(&["cpu", "cpuacct"], None),
                "/sys/fs/cgroup/cpu,cpuacct"
            ))
        );
    }

    #[test]
    fn named_only_v1_beside_v2_is_hybrid_without_tracked_v1() {
        // Docker on a v2 host mounts name=systemd for containers with an old systemd.
        let mountinfo = "\
32 22 0:27 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate
90 32 0:90 / /sys/fs/cgroup/systemd rw,relatime shared:50 - cgroup cgroup rw,name=systemd
";
        let layout = CgroupLayout::from_texts(mountinfo, "1:name=systemd:/\n0::/init.scope\n")
            .expect("layout");
        assert_eq!(layout.mode, CgroupMode::Hybrid);
        assert_eq!(
            layout.hierarchies,
            vec![
                hierarchy(0, HierarchyKind::V2, "/sys/fs/cgroup"),
                hierarchy(1, v1(&[], Some("systemd")), "/sys/fs/cgroup/systemd"),
            ]
        );
        assert_eq!(layout.tracked_v1(), None);
    }

    #[test]
    fn v1_mounts_match_on_controllers_and_name_together() {
        let mountinfo = "\
50 31 0:50 / /mnt/named-cpu rw - cgroup cgroup rw,cpu,name=mine
51 31 0:51 / /mnt/memory rw - cgroup cgroup rw,memory
";
        // "2:cpu:/" has the controllers but not the name, so only line 3 can match the first mount.
        let layout = CgroupLayout::from_texts(
            mountinfo,
            "2:cpu:/\n3:cpu,name=mine:/\n4:memory,name=x:/\n5:memory:/\n",
        )
        .expect("layout");
        assert_eq!(
            layout.hierarchies,
            vec![
                hierarchy(3, v1(&["cpu"], Some("mine")), "/mnt/named-cpu"),
                hierarchy(5, v1(&["memory"], None), "/mnt/memory"),
            ]
        );
    }

    #[test]
    fn cgroup_dir_rejects_parent_components() {
        let layout =
            CgroupLayout::from_texts(THIS_HOST_MOUNTINFO, THIS_HOST_CGROUP).expect("layout");
        assert_eq!(layout.cgroup_dir(4, ".."), None);
        assert_eq!(layout.cgroup_dir(4, "/.."), None);
        assert_eq!(layout.cgroup_dir(4, "/../../etc"), None);
        assert_eq!(layout.cgroup_dir(4, "/docker/../../etc"), None);
        assert_eq!(layout.cgroup_dir(4, "/docker/abc/.."), None);
        assert_eq!(layout.cgroup_dir(4, "/a\0b"), None);
        // Names that merely contain dots are ordinary cgroups.
        assert_eq!(
            layout.cgroup_dir(4, "/...x/..y/z.."),
            Some(PathBuf::from("/sys/fs/cgroup/memory/...x/..y/z.."))
        );
        assert_eq!(
            layout.cgroup_dir(4, "/a/./b//c/"),
            Some(PathBuf::from("/sys/fs/cgroup/memory/a/b/c"))
        );
        assert_eq!(
            layout.cgroup_dir(4, ""),
            Some(PathBuf::from("/sys/fs/cgroup/memory"))
        );
        assert_eq!(
            layout.cgroup_dir(4, "docker/abc"),
            Some(PathBuf::from("/sys/fs/cgroup/memory/docker/abc"))
        );
    }

    #[test]
    fn cgroup_dir_rejects_roots_outside_the_namespace() {
        let mountinfo = "60 31 0:60 /.. /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        let layout = CgroupLayout::from_texts(mountinfo, "0::/\n").expect("layout");
        assert_eq!(layout.mode, CgroupMode::V2);
        assert_eq!(layout.cgroup_dir(0, "/"), None);
        assert_eq!(layout.cgroup_dir(0, "/x"), None);
    }

    #[test]
    fn parse_proc_cgroup_reads_every_well_formed_line() {
        let lines = parse_proc_cgroup(THIS_HOST_CGROUP);
        assert_eq!(lines.len(), 10);
        assert_eq!(
            lines[0],
            ProcCgroupLine {
                hierarchy_id: 9,
                controllers: vec!["name=systemd".to_owned()],
                path: "/".to_owned(),
            }
        );
        assert_eq!(
            lines[5],
            ProcCgroupLine {
                hierarchy_id: 4,
                controllers: vec!["memory".to_owned()],
                path: "/process_api/a5cc18f5f395c5843485e68c40ebfbc3".to_owned(),
            }
        );
        assert_eq!(
            lines[9],
            ProcCgroupLine {
                hierarchy_id: 0,
                controllers: vec![],
                path: "/".to_owned(),
            }
        );
        assert_eq!(
            parse_proc_cgroup("2:cpuacct,cpu:/user.slice")[0].controllers,
            vec!["cpuacct".to_owned(), "cpu".to_owned()]
        );
    }

    #[test]
    fn parse_proc_cgroup_skips_malformed_lines() {
        let text = "\
not a line
x:memory:/
-1:memory:/
+4:memory:/
4:memory

5:cpu:relative
:pids:/
   
0::/kubepods.slice/kubepods-pod1.slice/cri-containerd:abc:def
6:freezer:/
";
        assert_eq!(
            parse_proc_cgroup(text),
            vec![
                ProcCgroupLine {
                    hierarchy_id: 0,
                    controllers: vec![],
                    path: "/kubepods.slice/kubepods-pod1.slice/cri-containerd:abc:def".to_owned(),
                },
                ProcCgroupLine {
                    hierarchy_id: 6,
                    controllers: vec!["freezer".to_owned()],
                    path: "/".to_owned(),
                },
            ]
        );
        assert_eq!(parse_proc_cgroup(""), vec![]);
    }

    #[test]
    fn no_cgroup_mount_is_an_error() {
        let err = CgroupLayout::from_texts(
            UBUNTU_2204_MOUNTINFO.replace("cgroup2", "tmpfs").as_str(),
            "0::/\n",
        )
        .expect_err("no cgroup mount");
        assert!(
            matches!(&err, MountError::NoCgroupMounts { path } if path == Path::new("<mountinfo text>")),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "no cgroup or cgroup2 mount listed in <mountinfo text>: mount cgroupfs (e.g. cgroup2 at \
             /sys/fs/cgroup), or give the agent a proc root whose mount namespace has it (e.g. the host's /proc)"
        );
        assert!(matches!(
            CgroupLayout::from_texts("", ""),
            Err(MountError::NoCgroupMounts { .. })
        ));
    }

    #[test]
    fn v1_mounts_without_ids_and_no_v2_is_an_error() {
        let err = CgroupLayout::from_texts(CENTOS7_MOUNTINFO, "0::/\n").expect_err("no v1 ids");
        let MountError::UnmatchedV1Mounts {
            mountinfo,
            self_cgroup,
            mount_points,
        } = &err
        else {
            panic!("unexpected error {err:?}");
        };
        assert_eq!(mountinfo, Path::new("<mountinfo text>"));
        assert_eq!(self_cgroup, Path::new("<self cgroup text>"));
        assert_eq!(mount_points.len(), 11);
        assert_eq!(mount_points[0], Path::new("/sys/fs/cgroup/systemd"));
        assert_eq!(mount_points[10], Path::new("/sys/fs/cgroup/hugetlb"));
        assert!(err.to_string().starts_with(
            "the cgroup v1 mounts /sys/fs/cgroup/systemd, /sys/fs/cgroup/cpu,cpuacct, /sys/fs/cgroup/cpuset, "
        ));
    }

    /// A scratch proc root under the system temp dir, removed on drop.
    struct ScratchProc(PathBuf);

    impl ScratchProc {
        fn new(test: &str, files: &[(&str, &str)]) -> Self {
            let root =
                std::env::temp_dir().join(format!("cgroupfs-mounts-{}-{test}", std::process::id()));
            fs::create_dir_all(root.join("self")).expect("create scratch proc root");
            for (name, text) in files {
                fs::write(root.join("self").join(name), text).expect("write scratch file");
            }
            Self(root)
        }
    }

    impl Drop for ScratchProc {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn discover_reads_both_files_under_proc_root() {
        let proc_root = ScratchProc::new(
            "discover",
            &[
                ("mountinfo", UBUNTU_2004_MOUNTINFO),
                ("cgroup", UBUNTU_2004_CGROUP),
            ],
        );
        let layout = CgroupLayout::discover(&proc_root.0).expect("layout");
        assert_eq!(
            layout,
            CgroupLayout::from_texts(UBUNTU_2004_MOUNTINFO, UBUNTU_2004_CGROUP).expect("layout")
        );
        assert_eq!(layout.tracked_v1().map(|h| h.id), Some(5));
    }

    #[test]
    fn discover_reports_the_file_it_could_not_read() {
        let proc_root = ScratchProc::new("missing", &[("mountinfo", UBUNTU_2204_MOUNTINFO)]);
        let err = CgroupLayout::discover(&proc_root.0).expect_err("no self/cgroup");
        let MountError::Read { path, source } = &err else {
            panic!("unexpected error {err:?}");
        };
        assert_eq!(path, &proc_root.0.join("self/cgroup"));
        assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        assert_eq!(
            err.to_string(),
            format!(
                "cannot read {}: check that procfs is mounted at the given proc root and that the agent may read it",
                path.display()
            )
        );

        let err = CgroupLayout::discover(&proc_root.0.join("nowhere")).expect_err("no mountinfo");
        assert!(
            matches!(&err, MountError::Read { path, .. } if *path == proc_root.0.join("nowhere/self/mountinfo")),
            "{err:?}"
        );
    }
}
