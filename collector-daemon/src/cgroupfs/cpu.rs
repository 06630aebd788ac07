//! CPU files. v1 (Documentation/admin-guide/cgroup-v1/cpuacct.rst, scheduler/sched-bwc.rst):
//! `cpuacct.usage` (ns), `cpuacct.stat` (`user`/`system` in `USER_HZ` ticks), `cpu.shares`,
//! `cpu.stat` (`nr_periods`, `nr_throttled`, `throttled_time` in ns; 5.14+ adds `nr_bursts`,
//! `burst_time`), `cpu.cfs_quota_us` (-1 = no quota), `cpu.cfs_period_us`.
//! v2 (cgroup-v2.rst): `cpu.stat` (`usage_usec`, `user_usec`, `system_usec` always, a core file
//! even without the cpu controller; `nr_periods`, `nr_throttled`, `throttled_usec` with it),
//! `cpu.weight`, `cpu.max` (`$MAX $PERIOD`, `$MAX` may be "max").
//! Every value is hierarchical: the cgroup and its descendants.

use super::parse::{flat_keyed, parse_u64};

/// `cpu.stat`, v1 or v2: the keys of both versions, each None when absent or malformed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuStat {
    pub usage_usec: Option<u64>,
    pub user_usec: Option<u64>,
    pub system_usec: Option<u64>,
    pub nr_periods: Option<u64>,
    pub nr_throttled: Option<u64>,
    /// v1, ns.
    pub throttled_time: Option<u64>,
    /// v2, µs.
    pub throttled_usec: Option<u64>,
}

impl CpuStat {
    #[must_use]
    pub fn parse(text: &str) -> Self {
        let mut s = Self::default();
        flat_keyed("cpu.stat", text, |key, value| {
            let slot = match key {
                "usage_usec" => &mut s.usage_usec,
                "user_usec" => &mut s.user_usec,
                "system_usec" => &mut s.system_usec,
                "nr_periods" => &mut s.nr_periods,
                "nr_throttled" => &mut s.nr_throttled,
                "throttled_time" => &mut s.throttled_time,
                "throttled_usec" => &mut s.throttled_usec,
                _ => return,
            };
            *slot = value;
        });
        s
    }
}

/// v1 `cpuacct.stat`, in `USER_HZ` ticks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuacctStat {
    pub user_ticks: Option<u64>,
    pub system_ticks: Option<u64>,
}

impl CpuacctStat {
    #[must_use]
    pub fn parse(text: &str) -> Self {
        let mut s = Self::default();
        flat_keyed("cpuacct.stat", text, |key, value| match key {
            "user" => s.user_ticks = value,
            "system" => s.system_ticks = value,
            _ => {}
        });
        s
    }
}

/// A CFS bandwidth limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuMax {
    /// None when unlimited (v2 "max", v1 -1).
    pub quota_us: Option<u64>,
    pub period_us: u64,
}

impl CpuMax {
    /// v2 `cpu.max`: "max 100000" or "50000 100000". None when malformed (logged).
    #[must_use]
    pub fn parse_v2(text: &str) -> Option<Self> {
        let mut fields = text.split_ascii_whitespace();
        let parsed = match (fields.next(), fields.next(), fields.next()) {
            (Some("max"), Some(period), None) => parse_u64(period).map(|period_us| Self {
                quota_us: None,
                period_us,
            }),
            (Some(quota), Some(period), None) => {
                parse_u64(quota)
                    .zip(parse_u64(period))
                    .map(|(quota_us, period_us)| Self {
                        quota_us: Some(quota_us),
                        period_us,
                    })
            }
            _ => None,
        };
        if parsed.is_none() {
            tracing::debug!(text = text.trim(), "malformed cpu.max");
        }
        parsed
    }

    /// The limit in percent of one CPU (100 = 1 CPU), None when unlimited or the period is 0.
    #[must_use]
    pub fn percent(&self) -> Option<f64> {
        let quota = self.quota_us?;
        if self.period_us == 0 {
            return None;
        }
        // Quotas and periods are at most ~2^44 µs, exact in an f64.
        #[expect(
            clippy::cast_precision_loss,
            reason = "values fit the mantissa; a percentage is approximate anyway"
        )]
        Some(quota as f64 / self.period_us as f64 * 100.0)
    }
}

/// v1 `cpu.cfs_quota_us`: Some(None) for -1 (no quota), Some(Some(q)) for a quota, None when
/// malformed (logged).
#[must_use]
pub fn parse_cfs_quota(text: &str) -> Option<Option<u64>> {
    let t = text.trim();
    // The kernel prints -1 for RUNTIME_INF; any other negative value is not written by it.
    if t == "-1" {
        return Some(None);
    }
    let quota = parse_u64(t);
    if quota.is_none() {
        tracing::debug!(text = t, "malformed cpu.cfs_quota_us");
    }
    quota.map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_stat_v1_of_this_kernel() {
        let s = CpuStat::parse(
            "nr_periods 53\nnr_throttled 26\nthrottled_time 1125889374\nnr_bursts 0\nburst_time 0\n",
        );
        assert_eq!(
            s,
            CpuStat {
                nr_periods: Some(53),
                nr_throttled: Some(26),
                throttled_time: Some(1_125_889_374),
                ..CpuStat::default()
            }
        );
    }

    #[test]
    fn cpu_stat_v2() {
        let s = CpuStat::parse(
            "usage_usec 5599944\nuser_usec 1653120\nsystem_usec 3946824\nnr_periods 284\n\
             nr_throttled 117\nthrottled_usec 8951439\nnr_bursts 0\nburst_usec 0\n",
        );
        assert_eq!(s.usage_usec, Some(5_599_944));
        assert_eq!(s.user_usec, Some(1_653_120));
        assert_eq!(s.system_usec, Some(3_946_824));
        assert_eq!(s.nr_periods, Some(284));
        assert_eq!(s.nr_throttled, Some(117));
        assert_eq!(s.throttled_usec, Some(8_951_439));
        assert_eq!(s.throttled_time, None);
        // A malformed line affects only its key.
        let s = CpuStat::parse("usage_usec x\nuser_usec 5\n");
        assert_eq!((s.usage_usec, s.user_usec), (None, Some(5)));
    }

    #[test]
    fn cpuacct_stat_and_ticks() {
        let s = CpuacctStat::parse("user 36\nsystem 69\n");
        assert_eq!((s.user_ticks, s.system_ticks), (Some(36), Some(69)));
    }

    #[test]
    fn cpu_max_and_quota() {
        assert_eq!(
            CpuMax::parse_v2("max 100000\n"),
            Some(CpuMax {
                quota_us: None,
                period_us: 100_000
            })
        );
        let m = CpuMax::parse_v2("30000 100000\n").expect("parse");
        assert_eq!(m.percent(), Some(30.0));
        assert_eq!(CpuMax::parse_v2("max\n"), None);
        assert_eq!(CpuMax::parse_v2("1 2 3\n"), None);
        assert_eq!(CpuMax::parse_v2("-1 100000\n"), None);
        assert_eq!(
            CpuMax {
                quota_us: Some(5),
                period_us: 0
            }
            .percent(),
            None
        );
        assert_eq!(parse_cfs_quota("-1\n"), Some(None));
        assert_eq!(parse_cfs_quota("150000\n"), Some(Some(150_000)));
        assert_eq!(parse_cfs_quota("-2\n"), None);
        assert_eq!(parse_cfs_quota("\n"), None);
    }
}
