//! Every cgroupfs file parser (`cgroupfs::{parse,cpu,cpuset,memory,io,pids,psi,diskstats}`),
//! one chosen by the input's first byte, the rest being the file's text (the reader hands
//! them only UTF-8: anything else is a failed read before any parser runs).
//!
//! Beyond "no panic": numbers read back as the digits they came from, CPU counts match the
//! list, limits are finite percentages, and IO totals are the sums of their rows.
#![no_main]

use std::collections::HashMap;

use collector_daemon::cgroupfs::{
    cpu::{CpuMax, CpuStat, CpuacctStat, parse_cfs_quota},
    cpuset::count_cpus,
    diskstats,
    io::{self, Dev},
    memory::{MemoryEvents, MemoryStatV1, MemoryStatV2, OomControl, v1_limit, working_set},
    parse::{Limit, parse_dev, parse_u64, single_limit},
    pids,
    psi::Pressure,
};
use libfuzzer_sys::fuzz_target;

/// Which parser: the first byte modulo the number of parsers.
const PARSERS: u8 = 15;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    match selector % PARSERS {
        0 => number(text),
        1 => {
            if let Some((major, minor)) = parse_dev(text) {
                assert_eq!(Some((major, minor)), parse_dev(&format!("{major}:{minor}")));
            }
        }
        2 => {
            let _ = CpuStat::parse(text);
        }
        3 => {
            let _ = CpuacctStat::parse(text);
        }
        4 => {
            if let Some(max) = CpuMax::parse_v2(text)
                && let Some(percent) = max.percent()
            {
                assert!(percent.is_finite() && percent >= 0.0, "{percent}");
            }
        }
        5 => {
            if let Some(Some(quota)) = parse_cfs_quota(text) {
                assert_eq!(parse_u64(text), Some(quota));
            }
        }
        6 => cpus(text),
        7 => {
            let stat = MemoryStatV1::parse(text);
            if let Some(limit) = stat.hierarchical_memory_limit {
                let _ = v1_limit(limit);
            }
            let _ = working_set(stat.total_rss, stat.total_inactive_file);
        }
        8 => {
            let _ = MemoryStatV2::parse(text).kernel_memory();
        }
        9 => {
            let _ = MemoryEvents::parse(text);
            let _ = OomControl::parse(text);
        }
        10 => blkio(text),
        11 => io_stat(text),
        12 => {
            let current = pids::parse_current(text);
            assert_eq!(current, parse_u64(text));
            if let Some(Limit::Value(max)) = pids::parse_max(text) {
                assert_eq!(Some(max), current);
            }
        }
        13 => {
            let pressure = Pressure::parse(text);
            for line in [pressure.some, pressure.full].into_iter().flatten() {
                assert!(line.avg10 >= 0.0 && line.avg60 >= 0.0 && line.avg300 >= 0.0);
            }
            let _ = (pressure.some_total_ns(), pressure.full_total_ns());
        }
        _ => {
            let names = diskstats::parse(text);
            assert!(
                names
                    .values()
                    .all(|n| !n.is_empty() && !n.contains(|c: char| c.is_ascii_whitespace()))
            );
        }
    }
});

/// A number reads back as its digits; "max" only as a limit.
fn number(text: &str) {
    if let Some(v) = parse_u64(text) {
        let digits = text.trim().trim_start_matches('0');
        assert_eq!(v.to_string(), if digits.is_empty() { "0" } else { digits });
    }
    match single_limit("fuzz", text) {
        Some(Limit::Unlimited) => assert_eq!(text.trim(), "max"),
        Some(Limit::Value(v)) => assert_eq!(parse_u64(text), Some(v)),
        None => assert_eq!(parse_u64(text), None),
    }
}

/// The count of a CPU list is the number of CPUs its ranges name.
fn cpus(text: &str) {
    let Some(count) = count_cpus(text) else {
        return;
    };
    let mut expected = 0u64;
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        let (lo, hi) = part.split_once('-').unwrap_or((part, part));
        let (lo, hi): (u64, u64) = (lo.parse().unwrap(), hi.parse().unwrap());
        expected += hi - lo + 1;
    }
    assert_eq!(u64::from(count), expected);
}

fn blkio(text: &str) {
    let rows = io::parse_blkio_rwstat(text);
    let mut devices: Vec<Dev> = rows.iter().map(|(d, _)| *d).collect();
    devices.dedup();
    assert_eq!(devices.len(), rows.len(), "one row per device");
    let merged = io::merge_v1(&rows, &rows);
    assert_eq!(merged.len(), rows.len());
    let _ = io::any_nonzero(&merged);
}

/// Totals are the sums of every row, or None when a row lacks the counter.
fn io_stat(text: &str) {
    let rows = io::parse_io_stat(text);
    let names: HashMap<Dev, String> = rows
        .iter()
        .map(|((major, minor), _)| ((*major, *minor), format!("{major}:{minor}")))
        .collect();
    let stats = io::io_stats(&rows, |dev| names.get(&dev).cloned());
    let sum = |f: fn(&collector_daemon::stats::DeviceIoStats) -> Option<u64>| {
        rows.iter()
            .try_fold(0u64, |t, (_, r)| f(r).map(|v| t.saturating_add(v)))
    };
    assert_eq!(stats.read_bytes, sum(|r| r.read_bytes));
    assert_eq!(stats.write_bytes, sum(|r| r.write_bytes));
    assert_eq!(stats.read_operations, sum(|r| r.read_operations));
    assert_eq!(stats.write_operations, sum(|r| r.write_operations));
}
