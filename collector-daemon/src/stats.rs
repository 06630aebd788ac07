//! Container stats, the values every source fills and the provider serves, shaped as
//! Datadog's provider shapes them (`ContainerStats`, `ContainerNetworkStats`, ...): every
//! value is optional, and absent data is `None` (`null` in JSON), never 0.
//!
//! Units follow Datadog's: CPU and stall times in nanoseconds, memory and IO in bytes, the CPU
//! limit in percent of one CPU (100 = 1 CPU). Counters are cumulative since the cgroup was
//! created. JSON names are Datadog's field names in `snake_case`.
use std::{collections::BTreeMap, time::SystemTime};

use serde::{Deserialize, Serialize};

/// CPU, memory, IO and PIDs of one container (Datadog's `ContainerStats`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerStats {
    /// When these values were read.
    #[serde(with = "rfc3339_opt", default)]
    pub timestamp: Option<SystemTime>,
    pub cpu: Option<CpuStats>,
    pub memory: Option<MemoryStats>,
    pub io: Option<IoStats>,
    pub pid: Option<PidStats>,
}

/// Datadog's `ContainerCPUStats`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuStats {
    /// CPU time used, ns.
    pub total: Option<u64>,
    /// CPU time in the kernel, ns.
    pub system: Option<u64>,
    /// CPU time in user space, ns.
    pub user: Option<u64>,
    /// CPU limit in percent of one CPU (100 = 1 CPU).
    pub limit: Option<f64>,
    /// True when no limit is set and `limit` is the host's CPU count; None when `limit` is.
    pub defaulted_limit: Option<bool>,
    /// `cpu.shares` (cgroup v1 only).
    pub shares: Option<u64>,
    /// `cpu.weight` (cgroup v2 only).
    pub weight: Option<u64>,
    /// CFS periods elapsed.
    pub elapsed_periods: Option<u64>,
    /// CFS periods in which the cgroup was throttled.
    pub throttled_periods: Option<u64>,
    /// Time throttled, ns.
    pub throttled_time: Option<u64>,
    /// PSI "some" total, ns.
    pub partial_stall_time: Option<u64>,
    /// PSI "full" total, ns (an addition to Datadog's model; kernel 5.13+ for CPU).
    #[serde(default)]
    pub full_stall_time: Option<u64>,
    /// CFS quota per period, µs: v1 `cpu.cfs_quota_us`, v2 `cpu.max`; None when unlimited
    /// (an addition to Datadog's model).
    #[serde(default)]
    pub cfs_quota_us: Option<u64>,
    /// CFS period, µs (an addition to Datadog's model).
    #[serde(default)]
    pub cfs_period_us: Option<u64>,
}

/// Datadog's `ContainerMemStats`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MemoryStats {
    pub usage_total: Option<u64>,
    pub kernel_memory: Option<u64>,
    pub limit: Option<u64>,
    pub softlimit: Option<u64>,
    pub swap: Option<u64>,
    /// v1: memory+swap limit (`memsw`); v2: swap-only limit (`memory.swap.max`).
    pub swap_limit: Option<u64>,
    /// `usage_total - inactive_file`, clamped at 0.
    pub working_set: Option<u64>,
    pub rss: Option<u64>,
    pub cache: Option<u64>,
    /// v1: `memory.failcnt` (times the limit was hit); v2: `memory.events` `oom`.
    pub oom_events: Option<u64>,
    /// PSI "some" total, ns.
    pub partial_stall_time: Option<u64>,
    /// PSI "full" total, ns (an addition to Datadog's model).
    #[serde(default)]
    pub full_stall_time: Option<u64>,
    /// v1 `memory.failcnt`: times usage hit the limit (no v2 equivalent; an addition to Datadog's model).
    #[serde(default)]
    pub failcnt: Option<u64>,
    /// Processes killed by the OOM killer in the cgroup: v1 `memory.oom_control` `oom_kill`
    /// (kernel 4.13+), v2 `memory.events` `oom_kill` (an addition to Datadog's model).
    #[serde(default)]
    pub oom_kills: Option<u64>,
    pub peak: Option<u64>,
    pub pgfault: Option<u64>,
    pub pgmajfault: Option<u64>,
    /// Windows only in Datadog's model; always None on Linux.
    pub private_working_set: Option<u64>,
    /// Windows only in Datadog's model; always None on Linux.
    pub commit_bytes: Option<u64>,
    /// Windows only in Datadog's model; always None on Linux.
    pub commit_peak_bytes: Option<u64>,
}

/// Datadog's `ContainerIOStats`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct IoStats {
    pub read_bytes: Option<u64>,
    pub write_bytes: Option<u64>,
    pub read_operations: Option<u64>,
    pub write_operations: Option<u64>,
    /// PSI "some" total, ns.
    pub partial_stall_time: Option<u64>,
    /// PSI "full" total, ns (an addition to Datadog's model).
    #[serde(default)]
    pub full_stall_time: Option<u64>,
    /// Per device, keyed by the device name from `/proc/diskstats` (e.g. "vda").
    pub devices: Option<BTreeMap<String, DeviceIoStats>>,
}

/// Datadog's `DeviceIOStats`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceIoStats {
    pub read_bytes: Option<u64>,
    pub write_bytes: Option<u64>,
    pub read_operations: Option<u64>,
    pub write_operations: Option<u64>,
}

/// Datadog's `ContainerPIDStats`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PidStats {
    /// Tasks (threads) in the container: `pids.current`.
    pub thread_count: Option<u64>,
    /// `pids.max` (None when "max").
    pub thread_limit: Option<u64>,
}

/// Datadog's `ContainerNetworkStats`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NetworkStats {
    /// When these values were read.
    #[serde(with = "rfc3339_opt", default)]
    pub timestamp: Option<SystemTime>,
    pub bytes_sent: Option<u64>,
    pub bytes_rcvd: Option<u64>,
    pub packets_sent: Option<u64>,
    pub packets_rcvd: Option<u64>,
    /// Per interface (loopback excluded), when the source knows interfaces.
    pub interfaces: Option<BTreeMap<String, InterfaceNetStats>>,
    /// Inode of the container's network namespace: containers sharing it share traffic.
    pub network_isolation_group_id: Option<u64>,
    /// True when the container is in the host's network namespace.
    pub using_host_network: Option<bool>,
}

/// Datadog's `InterfaceNetStats`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceNetStats {
    pub bytes_sent: Option<u64>,
    pub bytes_rcvd: Option<u64>,
    pub packets_sent: Option<u64>,
    pub packets_rcvd: Option<u64>,
}

/// Adds `b` into `a`, where an absent side leaves the other unchanged (None + x = x).
pub fn add_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.saturating_add(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// `Option<SystemTime>` as an RFC 3339 UTC string with nanoseconds (`null` when absent).
mod rfc3339_opt {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use serde::{Deserialize, Deserializer, Serializer};

    #[expect(
        clippy::ref_option,
        reason = "serde's `with` passes the field by reference"
    )]
    pub(super) fn serialize<S: Serializer>(
        t: &Option<SystemTime>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&super::format_rfc3339(*t)),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<SystemTime>, D::Error> {
        let raw: Option<String> = Option::deserialize(d)?;
        raw.map(|s| {
            super::parse_rfc3339(&s)
                .ok_or_else(|| serde::de::Error::custom(format!("bad timestamp {s:?}")))
        })
        .transpose()
        .map(|t| t.map(|ns| UNIX_EPOCH + Duration::from_nanos(ns)))
    }
}

/// Formats `t` as `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` (UTC). Written here rather than pulling
/// a date crate in for one format: days-to-civil is Howard Hinnant's public algorithm.
pub fn format_rfc3339(t: SystemTime) -> String {
    let since = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        since.subsec_nanos()
    )
}

/// Parses what `format_rfc3339` writes back to ns since the epoch: `None` for anything else,
/// for a field out of its range, and for a time past what u64 nanoseconds hold (the year
/// 2554).
#[expect(
    clippy::many_single_char_names,
    reason = "date fields read best as y m d"
)]
pub(crate) fn parse_rfc3339(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() < 20 || !s.ends_with('Z') {
        return None;
    }
    let separators = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')];
    if separators.iter().any(|&(at, c)| b[at] != c) {
        return None;
    }
    let num = |r: std::ops::Range<usize>| {
        let digits = s.get(r)?;
        if !digits.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        digits.parse::<u64>().ok()
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 59 {
        return None;
    }
    let nanos = match s.get(19..s.len() - 1)? {
        "" => 0,
        frac => {
            let digits = frac.strip_prefix('.')?;
            if digits.is_empty() || digits.len() > 9 || !digits.bytes().all(|c| c.is_ascii_digit())
            {
                return None;
            }
            digits.parse::<u64>().ok()? * 10u64.pow(9 - u32::try_from(digits.len()).ok()?)
        }
    };
    let days = days_from_civil(i64::try_from(y).ok()?, m, d);
    let secs = u64::try_from(days).ok()? * 86_400 + hh * 3600 + mm * 60 + ss;
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
}

fn civil_from_days(z: i64) -> (i64, u64, u64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        u64::try_from(m).unwrap_or(1),
        u64::try_from(d).unwrap_or(1),
    )
}

fn days_from_civil(y: i64, m: u64, d: u64) -> i64 {
    let (m, d) = (i64::try_from(m).unwrap_or(1), i64::try_from(d).unwrap_or(1));
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn rfc3339_known_instants() {
        assert_eq!(format_rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        let t = UNIX_EPOCH + Duration::new(1_795_651_200, 123_456_789);
        assert_eq!(format_rfc3339(t), "2026-11-26T00:00:00.123456789Z");
        // 2024-02-29 exists (leap year).
        let leap = UNIX_EPOCH + Duration::from_hours(474_768);
        assert_eq!(format_rfc3339(leap), "2024-02-29T00:00:00.000000000Z");
    }

    /// Found by the `cli_answers` fuzz target: a timestamp in the year 8935 overflowed the
    /// nanosecond count (a panic in debug builds, a wrong time in release ones).
    #[test]
    fn rfc3339_rejects_what_it_cannot_hold_or_never_writes() {
        assert_eq!(parse_rfc3339("8935-11-26T01:30:36.556973255Z"), None);
        assert_eq!(parse_rfc3339("9999-12-31T23:59:59.999999999Z"), None);
        let last = parse_rfc3339("2554-07-21T23:34:33.709551615Z").unwrap();
        assert_eq!(last, u64::MAX);
        for bad in [
            "2026-13-01T00:00:00Z",
            "2026-00-01T00:00:00Z",
            "2026-11-32T00:00:00Z",
            "2026-11-26T24:00:00Z",
            "2026-11-26T00:60:00Z",
            "2026-11-26T00:00:60Z",
            "2026x11-26T00:00:00Z",
            "+026-11-26T00:00:00Z",
            "2026-11-26T00:00:00.+1Z",
            "2026-11-26T00:00:00.Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
        let json = serde_json::json!({"timestamp": "8935-11-26T01:30:36Z"});
        assert!(serde_json::from_value::<ContainerStats>(json).is_err());
    }

    #[test]
    fn rfc3339_round_trip() {
        for secs in [0u64, 951_782_400, 1_709_164_800, 4_102_444_799] {
            let t = UNIX_EPOCH + Duration::new(secs, 987_654_321);
            let s = format_rfc3339(t);
            assert_eq!(
                parse_rfc3339(&s),
                Some(secs * 1_000_000_000 + 987_654_321),
                "{s}"
            );
        }
        assert_eq!(
            parse_rfc3339("2026-11-26T00:00:00Z"),
            Some(1_795_651_200_000_000_000)
        );
        assert_eq!(parse_rfc3339("garbage"), None);
    }

    #[test]
    fn absent_is_null_in_json() {
        let stats = ContainerStats {
            cpu: Some(CpuStats {
                total: Some(5),
                ..CpuStats::default()
            }),
            ..ContainerStats::default()
        };
        let json = serde_json::to_value(&stats).unwrap();
        assert_eq!(json["timestamp"], serde_json::Value::Null);
        assert_eq!(json["cpu"]["total"], 5);
        assert_eq!(json["cpu"]["user"], serde_json::Value::Null);
        assert_eq!(json["memory"], serde_json::Value::Null);
        let back: ContainerStats = serde_json::from_value(json).unwrap();
        assert_eq!(back, stats);
    }

    #[test]
    fn add_opt_keeps_absent_absent() {
        assert_eq!(add_opt(None, None), None);
        assert_eq!(add_opt(Some(2), None), Some(2));
        assert_eq!(add_opt(None, Some(3)), Some(3));
        assert_eq!(add_opt(Some(2), Some(3)), Some(5));
    }
}
