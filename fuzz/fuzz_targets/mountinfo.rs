//! Cgroup discovery from `/proc/self/mountinfo` and `/proc/self/cgroup`
//! (`CgroupLayout::from_texts`), and a process's `/proc/<pid>/cgroup` mapped to directories
//! (`parse_proc_cgroup`, `CgroupLayout::cgroup_dir`, `CgroupDirs::from_proc_cgroup`). The
//! input holds the three texts separated by NUL bytes, which none of the files contains.
//!
//! Beyond "no panic": hierarchies are sorted by unique id with v2 at 0 and absolute mount
//! points, the mode matches them, and no cgroup path maps to a directory outside its
//! hierarchy's mount point.
#![no_main]

use std::path::{Component, Path};

use collector_daemon::cgroupfs::{
    CgroupDirs, CgroupLayout, CgroupMode, HierarchyKind, mounts::parse_proc_cgroup,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |&b| b == 0).map(String::from_utf8_lossy);
    let mountinfo = parts.next().unwrap_or_default();
    let self_cgroup = parts.next().unwrap_or_default();
    let pid_cgroup = parts.next().unwrap_or_default();

    let lines = parse_proc_cgroup(&pid_cgroup);
    for line in &lines {
        assert!(line.path.starts_with('/'));
        assert!(
            line.controllers
                .iter()
                .all(|c| !c.is_empty() && !c.contains(','))
        );
    }
    let Ok(layout) = CgroupLayout::from_texts(&mountinfo, &self_cgroup) else {
        return;
    };
    check_layout(&layout);
    for line in &lines {
        let Some(dir) = layout.cgroup_dir(line.hierarchy_id, &line.path) else {
            continue;
        };
        let hierarchy = layout
            .by_id(line.hierarchy_id)
            .expect("a dir implies a hierarchy");
        assert_below(&dir, &hierarchy.mount_point);
    }
    let dirs = CgroupDirs::from_proc_cgroup(&layout, &pid_cgroup);
    for dir in dirs.all() {
        assert!(
            layout
                .hierarchies
                .iter()
                .any(|h| dir.starts_with(&h.mount_point)),
            "{} is under no mount point",
            dir.display()
        );
    }
    let moved = layout.with_mount_prefix(Path::new("/sys/fs/cgroup"), Path::new("/host/cgroup"));
    assert_eq!(moved.hierarchies.len(), layout.hierarchies.len());
});

fn check_layout(layout: &CgroupLayout) {
    assert!(!layout.hierarchies.is_empty());
    let ids: Vec<u32> = layout.hierarchies.iter().map(|h| h.id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids {ids:?}");
    for h in &layout.hierarchies {
        assert_eq!(h.id == 0, h.kind == HierarchyKind::V2);
        assert!(h.mount_point.is_absolute() && h.root.is_absolute());
    }
    let v1 = layout.hierarchies.iter().any(|h| h.id != 0);
    let v2 = layout.v2().is_some();
    let expected = match (v1, v2) {
        (true, true) => CgroupMode::Hybrid,
        (true, false) => CgroupMode::V1,
        _ => CgroupMode::V2,
    };
    assert_eq!(layout.mode, expected);
    if let Some(tracked) = layout.tracked_v1() {
        assert_ne!(tracked.id, 0);
    }
}

/// `dir` is `mount_point` or below it, with no `..` or `.` after it.
fn assert_below(dir: &Path, mount_point: &Path) {
    let rest = dir
        .strip_prefix(mount_point)
        .unwrap_or_else(|_| panic!("{} is outside {}", dir.display(), mount_point.display()));
    assert!(
        rest.components().all(|c| matches!(c, Component::Normal(_))),
        "{} escapes {}",
        dir.display(),
        mount_point.display()
    );
}
