//! Block IO files. v2 `io.stat` (cgroup-v2.rst): one line per device,
//! `MAJ:MIN rbytes=.. wbytes=.. rios=.. wios=.. dbytes=.. dios=..`, hierarchical, and the kernel
//! omits devices whose counters are all zero (`blkcg_print_one_stat`), so an empty file means no
//! IO. v1 blkio "rwstat" files: `MAJ:MIN Read|Write|Sync|Async|Discard|Total N` per device and a
//! final `Total N`.
//!
//! Which v1 files count anything depends on the kernel, which is why several are kept:
//! - `blkio.throttle.io_service_bytes[_recursive]`/`io_serviced[_recursive]` are counted by
//!   blk-throttle. Since 6.9 ("blk-throttle: delay initialization until configuration") that
//!   happens only on a queue where some cgroup has a throttle rule: verified here on 6.18, where a
//!   cgroup's direct IO to an unthrottled disk left them at "Total 0". `_recursive` (4.x+) includes
//!   descendants; the plain files are local only (a parent of busy cgroups reads zeros).
//! - `blkio.bfq.io_service_bytes_recursive`/`io_serviced_recursive`: counted only for devices
//!   whose scheduler is bfq (verified here too).
//! - `blkio.io_service_bytes_recursive`/`io_serviced_recursive`: CFQ's, gone since 5.0.

use std::collections::BTreeMap;

use super::parse::{parse_dev, parse_u64};
use crate::stats::{DeviceIoStats, IoStats};

/// A block device number, (major, minor).
pub type Dev = (u32, u32);

/// Read and write counters of one device in a v1 rwstat file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RwCounts {
    pub read: Option<u64>,
    pub write: Option<u64>,
}

/// A v1 blkio rwstat file: the `Read` and `Write` rows of each device, in file order. The other
/// operations and the `Total` lines are ignored: Sync/Async/Discard overlap Read/Write.
#[must_use]
pub fn parse_blkio_rwstat(text: &str) -> Vec<(Dev, RwCounts)> {
    let mut rows: Vec<(Dev, RwCounts)> = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        let (Some(dev), Some(op), Some(value), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            // "Total N" (two fields) ends every file; blank lines are harmless.
            if !line.starts_with("Total") && !line.trim().is_empty() {
                tracing::debug!(line, "malformed blkio line");
            }
            continue;
        };
        let Some(dev) = parse_dev(dev) else {
            tracing::debug!(line, "malformed blkio device");
            continue;
        };
        let value = parse_u64(value);
        if value.is_none() {
            tracing::debug!(line, "malformed blkio value");
        }
        let index = rows.iter().position(|(d, _)| *d == dev).unwrap_or_else(|| {
            rows.push((dev, RwCounts::default()));
            rows.len() - 1
        });
        let row = &mut rows[index].1;
        match op {
            "Read" => row.read = value,
            "Write" => row.write = value,
            _ => {}
        }
    }
    rows
}

/// Per-device stats from a v1 bytes file and a v1 ops file of the same family.
#[must_use]
pub fn merge_v1(bytes: &[(Dev, RwCounts)], ios: &[(Dev, RwCounts)]) -> Vec<(Dev, DeviceIoStats)> {
    let mut rows: Vec<(Dev, DeviceIoStats)> = bytes
        .iter()
        .map(|(dev, c)| {
            (
                *dev,
                DeviceIoStats {
                    read_bytes: c.read,
                    write_bytes: c.write,
                    ..DeviceIoStats::default()
                },
            )
        })
        .collect();
    for (dev, c) in ios {
        let index = rows.iter().position(|(d, _)| d == dev).unwrap_or_else(|| {
            rows.push((*dev, DeviceIoStats::default()));
            rows.len() - 1
        });
        let row = &mut rows[index].1;
        row.read_operations = c.read;
        row.write_operations = c.write;
    }
    rows
}

/// Whether any counter of any device is non-zero.
#[must_use]
pub fn any_nonzero(rows: &[(Dev, DeviceIoStats)]) -> bool {
    rows.iter().any(|(_, r)| {
        [
            r.read_bytes,
            r.write_bytes,
            r.read_operations,
            r.write_operations,
        ]
        .iter()
        .any(|v| v.is_some_and(|v| v > 0))
    })
}

/// v2 `io.stat`: per device rbytes/wbytes/rios/wios; other keys (dbytes, dios, cost.*) ignored.
#[must_use]
pub fn parse_io_stat(text: &str) -> Vec<(Dev, DeviceIoStats)> {
    let mut rows = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        let Some(dev) = fields.next() else { continue };
        let Some(dev) = parse_dev(dev) else {
            tracing::debug!(line, "malformed io.stat device");
            continue;
        };
        let mut row = DeviceIoStats::default();
        for field in fields {
            let Some((key, value)) = field.split_once('=') else {
                tracing::debug!(line, field, "malformed io.stat field");
                continue;
            };
            let slot = match key {
                "rbytes" => &mut row.read_bytes,
                "wbytes" => &mut row.write_bytes,
                "rios" => &mut row.read_operations,
                "wios" => &mut row.write_operations,
                _ => continue,
            };
            *slot = parse_u64(value);
            if slot.is_none() {
                tracing::debug!(line, field, "malformed io.stat value");
            }
        }
        rows.push((dev, row));
    }
    rows
}

/// Totals over every row, and the rows by device name. Devices `name` does not know (not in
/// /proc/diskstats) count in the totals but are left out of `devices`. `partial_stall_time` is
/// left None for the caller.
#[must_use]
pub fn io_stats(
    rows: &[(Dev, DeviceIoStats)],
    mut name: impl FnMut(Dev) -> Option<String>,
) -> IoStats {
    let mut stats = IoStats {
        read_bytes: Some(0),
        write_bytes: Some(0),
        read_operations: Some(0),
        write_operations: Some(0),
        partial_stall_time: None,
        full_stall_time: None,
        devices: Some(BTreeMap::new()),
    };
    // A counter stays Some only while every row has it: a total missing a device's share would
    // be a wrong number, not a smaller one.
    let all = |total: Option<u64>, v: Option<u64>| total.zip(v).map(|(t, v)| t.saturating_add(v));
    for (dev, row) in rows {
        stats.read_bytes = all(stats.read_bytes, row.read_bytes);
        stats.write_bytes = all(stats.write_bytes, row.write_bytes);
        stats.read_operations = all(stats.read_operations, row.read_operations);
        stats.write_operations = all(stats.write_operations, row.write_operations);
        if let (Some(name), Some(devices)) = (name(*dev), stats.devices.as_mut()) {
            devices.insert(name, row.clone());
        }
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::*;

    // Real blkio.throttle.io_service_bytes_recursive of a test cgroup on this machine (6.18).
    const BYTES: &str = "7:0 Read 2097152\n7:0 Write 4194304\n7:0 Sync 6291456\n7:0 Async 0\n\
                         7:0 Discard 0\n7:0 Total 6291456\nTotal 6291456\n";
    const IOS: &str = "7:0 Read 32\n7:0 Write 64\n7:0 Sync 96\n7:0 Async 0\n7:0 Discard 0\n\
                       7:0 Total 96\nTotal 96\n";

    #[test]
    fn v1_rwstat() {
        let bytes = parse_blkio_rwstat(BYTES);
        assert_eq!(
            bytes,
            vec![(
                (7, 0),
                RwCounts {
                    read: Some(2_097_152),
                    write: Some(4_194_304)
                }
            )]
        );
        let rows = merge_v1(&bytes, &parse_blkio_rwstat(IOS));
        assert_eq!(
            rows,
            vec![(
                (7, 0),
                DeviceIoStats {
                    read_bytes: Some(2_097_152),
                    write_bytes: Some(4_194_304),
                    read_operations: Some(32),
                    write_operations: Some(64),
                }
            )]
        );
        assert!(any_nonzero(&rows));
        assert!(parse_blkio_rwstat("Total 0\n").is_empty());
        let zeros = parse_blkio_rwstat("7:0 Read 0\n7:0 Write 0\n7:0 Total 0\nTotal 0\n");
        assert!(!any_nonzero(&merge_v1(&zeros, &[])));
    }

    #[test]
    fn v1_malformed_values_are_none() {
        let rows = parse_blkio_rwstat("8:0 Read x\n8:0 Write 5\nbad:dev Read 1\n8:0 Read\n");
        assert_eq!(
            rows,
            vec![(
                (8, 0),
                RwCounts {
                    read: None,
                    write: Some(5)
                }
            )]
        );
    }

    #[test]
    fn v2_io_stat() {
        let rows = parse_io_stat(
            "254:0 rbytes=2228224 wbytes=4194304 rios=17 wios=1025 dbytes=0 dios=0\n\
             8:16 rbytes=1 wbytes=2 rios=3 wios=4\n",
        );
        assert_eq!(rows.len(), 2);
        let stats = io_stats(&rows, |dev| (dev == (254, 0)).then(|| "vda".to_owned()));
        assert_eq!(stats.read_bytes, Some(2_228_225));
        assert_eq!(stats.write_bytes, Some(4_194_306));
        assert_eq!(stats.read_operations, Some(20));
        assert_eq!(stats.write_operations, Some(1029));
        let devices = stats.devices.expect("devices");
        assert_eq!(devices.len(), 1, "8:16 is not in diskstats");
        assert_eq!(devices["vda"].write_operations, Some(1025));
    }

    #[test]
    fn empty_io_stat_is_zero_io() {
        let stats = io_stats(&parse_io_stat(""), |_| None);
        assert_eq!(stats.read_bytes, Some(0));
        assert_eq!(stats.devices, Some(BTreeMap::new()));
    }

    #[test]
    fn a_malformed_counter_makes_its_total_none() {
        let rows = parse_io_stat(
            "8:0 rbytes=x wbytes=2 rios=3 wios=4\n8:16 rbytes=1 wbytes=2 rios=3 wios=4\n",
        );
        let stats = io_stats(&rows, |_| None);
        assert_eq!(stats.read_bytes, None);
        assert_eq!(stats.write_bytes, Some(4));
    }
}
