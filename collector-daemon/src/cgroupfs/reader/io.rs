//! The IO section of a read: counters per device from the v1 blkio files (whichever family
//! counts on this kernel) or the v2 `io.stat` when `cgroup.controllers` lists `io`, named
//! after `/proc/diskstats`, with IO pressure.

use std::path::Path;

use super::pass::{Controllers, Pass};
use crate::{
    cgroupfs::io::{Dev, any_nonzero, io_stats, merge_v1, parse_blkio_rwstat, parse_io_stat},
    stats::{DeviceIoStats, IoStats},
};

impl Pass<'_> {
    /// The IO section with counters; None without an IO controller or when no file of it
    /// gave a value.
    pub(super) fn io(&mut self) -> Option<IoStats> {
        let mut s = if let Some(d) = self.v1("blkio") {
            self.io_v1(d)?
        } else {
            let d = self.v2_has(Controllers::IO)?;
            let rows = self.get(d, "io.stat", |t| Some(parse_io_stat(t))).ok()?;
            self.named(&rows)
        };
        (s.partial_stall_time, s.full_stall_time) = self.pressure("io.pressure").totals();
        Some(s)
    }

    /// IO pressure alone, without counters; None without a `some` total.
    pub(super) fn io_pressure(&mut self) -> Option<IoStats> {
        let stall = self.pressure("io.pressure");
        stall.some.map(|psi| IoStats {
            partial_stall_time: Some(psi),
            full_stall_time: stall.full,
            ..IoStats::default()
        })
    }

    fn io_v1(&mut self, d: &Path) -> Option<IoStats> {
        // Hierarchical throttle files; the local ones on kernels without them.
        let mut best = self.blkio_pair(
            d,
            "blkio.throttle.io_service_bytes_recursive",
            "blkio.throttle.io_serviced_recursive",
            false,
        );
        if best.is_none() {
            best = self.blkio_pair(
                d,
                "blkio.throttle.io_service_bytes",
                "blkio.throttle.io_serviced",
                false,
            );
            if best.is_some() {
                self.r
                    .mark_absent("blkio.throttle.io_service_bytes_recursive");
                self.r.mark_absent("blkio.throttle.io_serviced_recursive");
            }
        }
        // All zero or missing: the throttle layer may not count on this kernel (6.9+ without a
        // throttle rule on the device); bfq and CFQ count on their own devices.
        for (bytes, ios) in [
            (
                "blkio.bfq.io_service_bytes_recursive",
                "blkio.bfq.io_serviced_recursive",
            ),
            (
                "blkio.io_service_bytes_recursive",
                "blkio.io_serviced_recursive",
            ),
        ] {
            if best.as_deref().is_some_and(any_nonzero) {
                break;
            }
            let sibling_ok = best.is_some();
            let Some(rows) = self.blkio_pair(d, bytes, ios, sibling_ok) else {
                continue;
            };
            // Counted IO wins; else rows of zeros (real zeros for those devices) beat no rows.
            if any_nonzero(&rows) || best.as_ref().is_none_or(Vec::is_empty) {
                best = Some(rows);
            }
        }
        let rows = best?;
        if rows.is_empty() {
            // No device rows anywhere: on 6.9+ that is "not counted", not "no IO".
            return Some(IoStats::default());
        }
        Some(self.named(&rows))
    }

    /// A v1 bytes file and ops file of one family, merged; None when both are unreadable.
    fn blkio_pair(
        &mut self,
        d: &Path,
        bytes: &'static str,
        ios: &'static str,
        sibling_ok: bool,
    ) -> Option<Vec<(Dev, DeviceIoStats)>> {
        let b = self.optional(d, bytes, sibling_ok, |t| Some(parse_blkio_rwstat(t)));
        let o = self.optional(d, ios, sibling_ok || b.is_ok(), |t| {
            Some(parse_blkio_rwstat(t))
        });
        if b.is_err() && o.is_err() {
            return None;
        }
        Some(merge_v1(
            b.as_deref().unwrap_or_default(),
            o.as_deref().unwrap_or_default(),
        ))
    }

    fn named(&self, rows: &[(Dev, DeviceIoStats)]) -> IoStats {
        let devices = &self.r.devices;
        io_stats(rows, |(major, minor)| devices.name(major, minor))
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, path::Path};

    use super::{
        super::{
            CgroupStatsReader,
            testing::{BAD, D, HYBRID, I, TASK, V2, fixture, fixtures, read},
        },
        *,
    };
    use crate::cgroupfs::{dirs::CgroupDirs, mounts::CgroupLayout};

    #[test]
    fn hybrid_io_uncounted_bfq_and_recursive() {
        let (layout, reader) = fixture("hybrid");
        // Every blkio file says "Total 0" with no device row: not counted, so unknown.
        let inherit = read(&layout, &reader, HYBRID, &format!("/ecs/{TASK}/{I}"));
        assert_eq!(
            inherit.io,
            Some(IoStats {
                partial_stall_time: Some(0),
                full_stall_time: Some(0),
                ..IoStats::default()
            })
        );

        let default = read(&layout, &reader, HYBRID, &format!("/docker/{D}"));
        // Its IO went to loop1, scheduled by bfq without a throttle rule: only the bfq files count.
        let loop1 = DeviceIoStats {
            read_bytes: Some(1_048_576),
            write_bytes: Some(3_145_728),
            read_operations: Some(16),
            write_operations: Some(48),
        };
        assert_eq!(
            default.io,
            Some(IoStats {
                read_bytes: Some(1_048_576),
                write_bytes: Some(3_145_728),
                read_operations: Some(16),
                write_operations: Some(48),
                partial_stall_time: Some(1_444_000),
                full_stall_time: Some(1_444_000),
                devices: Some(BTreeMap::from([("loop1".to_owned(), loop1)])),
            })
        );
        // The parent's (ECS task's) view: its local throttle files are zero, the recursive ones
        // hold its child's IO.
        let parent = read(&layout, &reader, HYBRID, &format!("/ecs/{TASK}"));
        let io = parent.io.expect("io");
        assert_eq!(
            (io.read_bytes, io.write_operations),
            (Some(2_097_152), Some(64))
        );
    }

    #[test]
    fn v2_io_empty_and_not_enabled() {
        let (layout, reader) = fixture("v2");
        let inherit = read(&layout, &reader, V2, &format!("/docker/{I}"));
        // An empty io.stat: the kernel lists only devices with non-zero counters, so no IO.
        assert_eq!(
            inherit.io,
            Some(IoStats {
                read_bytes: Some(0),
                write_bytes: Some(0),
                read_operations: Some(0),
                write_operations: Some(0),
                partial_stall_time: Some(0),
                full_stall_time: Some(0),
                devices: Some(BTreeMap::new()),
            })
        );

        // system.slice enables only cpu, memory and pids below it.
        let default = read(
            &layout,
            &reader,
            V2,
            &format!("/system.slice/docker-{D}.scope"),
        );
        assert_eq!(default.io, None, "io is not in cgroup.controllers");

        // io.stat exists in the directory but io is not enabled for it.
        let bad = read(&layout, &reader, V2, &format!("/docker/{BAD}"));
        assert_eq!(bad.io, None);
    }

    /// A scratch v1 blkio hierarchy: `files` are (cgroup-relative path, text).
    fn scratch_blkio(files: &[(&str, &str)]) -> (tempfile::TempDir, CgroupStatsReader, CgroupDirs) {
        let root = tempfile::tempdir().expect("tempdir");
        for (path, text) in files {
            let path = root.path().join("blkio").join(path);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, text).expect("write");
        }
        let mountinfo = "38 31 0:35 / /sys/fs/cgroup/blkio rw - cgroup cgroup rw,blkio\n";
        let layout = CgroupLayout::from_texts(mountinfo, "7:blkio:/\n")
            .expect("layout")
            .with_mount_prefix(Path::new("/sys/fs/cgroup"), root.path());
        let proc_root = fixtures().join("hybrid-host/proc");
        let reader = CgroupStatsReader::new(&layout, &proc_root);
        let dirs = CgroupDirs::from_paths(&layout, &[(7, "/c")]);
        (root, reader, dirs)
    }

    const ZEROS_7_0: &str = "7:0 Read 0\n7:0 Write 0\n7:0 Total 0\nTotal 0\n";

    #[test]
    fn v1_io_prefers_counted_io_over_zero_rows() {
        // Synthetic files (formats as captured here): throttle rows of zeros for loop0, bfq counts
        // loop1.
        let (_root, reader, dirs) = scratch_blkio(&[
            ("c/blkio.throttle.io_service_bytes_recursive", ZEROS_7_0),
            ("c/blkio.throttle.io_serviced_recursive", ZEROS_7_0),
            (
                "c/blkio.bfq.io_service_bytes_recursive",
                "7:1 Read 4096\n7:1 Write 0\nTotal 4096\n",
            ),
            (
                "c/blkio.bfq.io_serviced_recursive",
                "7:1 Read 1\n7:1 Write 0\nTotal 1\n",
            ),
        ]);
        let io = reader.read(&dirs).io.expect("io");
        assert_eq!((io.read_bytes, io.read_operations), (Some(4096), Some(1)));
        assert_eq!(
            io.devices.expect("devices").keys().collect::<Vec<_>>(),
            ["loop1"]
        );
        // CFQ's files were not needed, so nothing was learnt about them.
        assert!(!reader.is_absent("blkio.io_service_bytes_recursive"));
    }

    #[test]
    fn v1_io_zero_rows_are_zero_and_no_rows_are_unknown() {
        let (_root, reader, dirs) = scratch_blkio(&[
            ("c/blkio.throttle.io_service_bytes_recursive", ZEROS_7_0),
            ("c/blkio.throttle.io_serviced_recursive", ZEROS_7_0),
            ("c/blkio.bfq.io_service_bytes_recursive", "Total 0\n"),
            ("c/blkio.bfq.io_serviced_recursive", "Total 0\n"),
        ]);
        let io = reader.read(&dirs).io.expect("io");
        assert_eq!((io.read_bytes, io.write_operations), (Some(0), Some(0)));
        // CFQ's files are missing beside readable blkio files: this kernel has none.
        assert!(reader.is_absent("blkio.io_service_bytes_recursive"));
        assert!(reader.is_absent("blkio.io_serviced_recursive"));

        let (_root, reader, dirs) = scratch_blkio(&[
            ("c/blkio.throttle.io_service_bytes_recursive", "Total 0\n"),
            ("c/blkio.throttle.io_serviced_recursive", "Total 0\n"),
        ]);
        assert_eq!(reader.read(&dirs).io, Some(IoStats::default()));
    }

    #[test]
    fn v1_io_falls_back_to_local_throttle_files() {
        // Kernels before the _recursive files: the local ones, and the recursive ones are
        // learnt to be absent (not opened again for a while).
        let (_root, reader, dirs) = scratch_blkio(&[
            (
                "c/blkio.throttle.io_service_bytes",
                "7:0 Read 10\n7:0 Write 20\nTotal 30\n",
            ),
            (
                "c/blkio.throttle.io_serviced",
                "7:0 Read 1\n7:0 Write 2\nTotal 3\n",
            ),
        ]);
        let io = reader.read(&dirs).io.expect("io");
        assert_eq!(
            (
                io.read_bytes,
                io.write_bytes,
                io.read_operations,
                io.write_operations
            ),
            (Some(10), Some(20), Some(1), Some(2))
        );
        assert!(reader.is_absent("blkio.throttle.io_service_bytes_recursive"));
        assert!(!reader.is_absent("blkio.bfq.io_service_bytes_recursive"));
        // A whole missing cgroup teaches nothing.
        let (_root, reader, _) = scratch_blkio(&[]);
        let gone = CgroupDirs::from_paths(
            &CgroupLayout::from_texts(
                "38 31 0:35 / /nowhere/blkio rw - cgroup cgroup rw,blkio\n",
                "7:blkio:/\n",
            )
            .expect("layout"),
            &[(7, "/c")],
        );
        assert_eq!(reader.read(&gone).io, None);
        assert!(!reader.is_absent("blkio.throttle.io_service_bytes_recursive"));
    }
}
