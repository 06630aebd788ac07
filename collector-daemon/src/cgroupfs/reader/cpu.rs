//! The CPU section of a read: usage (v1 `cpuacct`, else v2 `cpu.stat`, a core file), the cpu
//! controller's weight, throttling and CFS bandwidth (v1 files or the kernel walk's values, or
//! v2), and the CPU limit in percent: the cgroup's own quota and cpuset, else its parent's,
//! else every host CPU.

use std::path::Path;

use super::pass::{Controllers, Miss, Pass, parse_read};
use crate::{
    cgroupfs::{
        cpu::{CpuMax, CpuStat, CpuacctStat, parse_cfs_quota},
        cpuset::count_cpus,
        parse::{single_u64, us_to_ns},
    },
    stats::CpuStats,
};

impl<'a> Pass<'a> {
    /// The CPU section; None when no file of it (nor the kernel walk) gave a value.
    pub(super) fn cpu(&mut self) -> Option<CpuStats> {
        let acct = self.v1("cpuacct");
        let cpu = self.v1("cpu");
        let v2_cpu = match cpu {
            Some(_) => None,
            None => self.v2_enabled(self.kernel_v2.cpu.is_some(), Controllers::CPU),
        };
        // v2 cpu.stat serves usage (a core file) when there is no cpuacct, and throttling when
        // the v2 cpu controller is used; read it once for both.
        let v2_stat_dir = if acct.is_none() {
            self.v2_dir()
        } else {
            v2_cpu
        };
        let v2_stat =
            v2_stat_dir.and_then(|d| self.get(d, "cpu.stat", |t| Some(CpuStat::parse(t))).ok());

        let mut s = CpuStats::default();
        let mut ok = self.cpu_usage(acct, v2_stat.as_ref(), &mut s);
        let bandwidth = if let (Some(_), Some(k)) = (cpu, self.kernel.cpu) {
            s.shares = Some(k.shares);
            s.elapsed_periods = Some(k.nr_periods);
            s.throttled_periods = Some(k.nr_throttled);
            s.throttled_time = Some(k.throttled_time_ns);
            ok = true;
            Some(CpuMax {
                quota_us: k.quota_us,
                period_us: k.period_us,
            })
        } else if let Some(d) = cpu {
            self.cpu_v1_files(d, &mut s, &mut ok)
        } else if let Some(d) = v2_cpu {
            self.cpu_v2(d, v2_stat.as_ref(), &mut s, &mut ok)
        } else {
            None
        };
        if !ok {
            return None;
        }

        s.cfs_quota_us = bandwidth.and_then(|b| b.quota_us);
        s.cfs_period_us = bandwidth.map(|b| b.period_us);
        (s.limit, s.defaulted_limit) = self.cpu_limit(cpu, bandwidth.and_then(|b| b.percent()));
        (s.partial_stall_time, s.full_stall_time) = self.pressure("cpu.pressure").totals();
        Some(s)
    }

    /// CPU time into `s`: from the v1 `cpuacct` directory `acct`, else from v2 `cpu.stat`;
    /// whether any was read.
    fn cpu_usage(
        &mut self,
        acct: Option<&Path>,
        v2_stat: Option<&CpuStat>,
        s: &mut CpuStats,
    ) -> bool {
        let Some(d) = acct else {
            let Some(st) = v2_stat else {
                return false;
            };
            s.total = st.usage_usec.map(us_to_ns);
            s.user = st.user_usec.map(us_to_ns);
            s.system = st.system_usec.map(us_to_ns);
            return true;
        };
        // Both files at once: one descriptor lookup.
        let (mut usage, mut stat) = (None, None);
        self.r.files.read_each(
            d,
            ["cpuacct.usage", "cpuacct.stat"],
            &mut self.buf,
            |i, read| {
                if i == 0 {
                    usage =
                        parse_read(d, "cpuacct.usage", read, |t| single_u64("cpuacct.usage", t))
                            .ok();
                } else {
                    stat =
                        parse_read(d, "cpuacct.stat", read, |t| Some(CpuacctStat::parse(t))).ok();
                }
            },
        );
        let mut ok = false;
        if let Some(ns) = usage {
            s.total = Some(ns);
            ok = true;
        }
        if let Some(st) = stat {
            let hz = self.r.user_hz;
            s.user = st
                .user_ticks
                .and_then(|t| crate::clock::ticks_to_ns_at(t, hz));
            s.system = st
                .system_ticks
                .and_then(|t| crate::clock::ticks_to_ns_at(t, hz));
            ok = true;
        }
        ok
    }

    /// Shares and throttling from the v1 cpu directory `d` into `s` (`ok` set when a file was
    /// read); its CFS bandwidth.
    fn cpu_v1_files(&mut self, d: &Path, s: &mut CpuStats, ok: &mut bool) -> Option<CpuMax> {
        if let Ok(shares) = self.get(d, "cpu.shares", |t| single_u64("cpu.shares", t)) {
            s.shares = Some(shares);
            *ok = true;
        }
        if let Ok(st) = self.get(d, "cpu.stat", |t| Some(CpuStat::parse(t))) {
            s.elapsed_periods = st.nr_periods;
            s.throttled_periods = st.nr_throttled;
            s.throttled_time = st.throttled_time;
            *ok = true;
        }
        let (read, max) = self.v1_bandwidth(d);
        *ok |= read;
        max
    }

    /// Weight and throttling from the v2 directory `d`, whose `cpu.stat` is `v2_stat`, into `s`
    /// (`ok` set when a file was read); its `cpu.max`. Weight and `cpu.max` come from the
    /// kernel walk when it has them (throttling stays in `cpu.stat`, per-CPU data).
    fn cpu_v2(
        &mut self,
        d: &Path,
        v2_stat: Option<&CpuStat>,
        s: &mut CpuStats,
        ok: &mut bool,
    ) -> Option<CpuMax> {
        if let Some(st) = v2_stat {
            s.elapsed_periods = st.nr_periods;
            s.throttled_periods = st.nr_throttled;
            s.throttled_time = st.throttled_usec.map(us_to_ns);
            *ok = true;
        }
        if let Some(k) = self.kernel_v2.cpu {
            s.weight = Some(k.weight);
            *ok = true;
            return Some(k.max);
        }
        if let Ok(weight) = self.get(d, "cpu.weight", |t| single_u64("cpu.weight", t)) {
            s.weight = Some(weight);
            *ok = true;
        }
        let max = self.get(d, "cpu.max", CpuMax::parse_v2).ok();
        *ok |= max.is_some();
        max
    }

    /// The CPU limit in percent and whether it was defaulted to the host's CPUs: the cgroup's
    /// own quota and cpuset (`cpu` is its v1 cpu directory, else v2 is used), else its parent's.
    fn cpu_limit(
        &mut self,
        cpu: Option<&'a Path>,
        quota_pct: Option<f64>,
    ) -> (Option<f64>, Option<bool>) {
        let cpus = self.own_cpus();
        // No limit of its own: the parent's, where ECS puts a task's limits above its
        // containers. Only one level up, as in Datadog's provider.
        let limit = match self.limit_pct(quota_pct, cpus) {
            Some(pct) => Some(pct),
            None => self.parent_limit(cpu),
        };
        match limit {
            Some(pct) => (Some(pct), Some(false)),
            None => match self.host_cpus() {
                Some(host) => (Some(f64::from(host) * 100.0), Some(true)),
                None => (None, None),
            },
        }
    }

    /// CPUs in the cgroup's own effective set: the kernel walk's count for a cpuset it has,
    /// else the cpuset files.
    fn own_cpus(&mut self) -> Option<u32> {
        let cpuset = self.cpuset_dir();
        let kernel_cpus = match cpuset {
            Some((_, true)) => self.kernel.effective_cpus,
            Some((_, false)) => self.kernel_v2.effective_cpus,
            None => None,
        };
        match kernel_cpus {
            // An empty set is unconfigured, as in `cpuset_count`.
            Some(n) => Some(n).filter(|&n| n > 0),
            None => cpuset.and_then(|(d, v1)| self.cpuset_count(d, v1)),
        }
    }

    /// The CPU limit of the cgroup's parent (`cpu` is the cgroup's v1 cpu directory, else v2
    /// is used), shared by its siblings for [`super::SHARED_TTL`].
    fn parent_limit(&mut self, cpu: Option<&'a Path>) -> Option<f64> {
        let r = self.r;
        let quota_dir = cpu.or(self.v2_dir());
        let cpuset_dir = match self.v1("cpuset") {
            Some(d) => Some((d, true)),
            None => self.v2_dir().map(|d| (d, false)),
        };
        let quota_parent = quota_dir.and_then(|d| r.parent(d));
        let cpuset_parent = cpuset_dir.and_then(|(d, v1)| Some((r.parent(d)?, v1)));
        let key =
            quota_parent.map(|q| (q.to_path_buf(), cpuset_parent.map(|(p, _)| p.to_path_buf())));
        if let Some(limit) = key.as_ref().and_then(|key| r.parent_limits.get(key)) {
            return limit;
        }
        let parent_quota = quota_parent.and_then(|p| {
            if cpu.is_some() {
                self.v1_bandwidth(p).1.and_then(|b| b.percent())
            } else {
                self.get(p, "cpu.max", CpuMax::parse_v2).ok()?.percent()
            }
        });
        let parent_cpus = cpuset_parent.and_then(|(p, v1)| self.cpuset_count(p, v1));
        let limit = self.limit_pct(parent_quota, parent_cpus);
        if let Some(key) = key {
            r.parent_limits.insert(key, limit);
        }
        limit
    }

    /// v1 CFS bandwidth: (whether a file was read, quota and period when both were read).
    fn v1_bandwidth(&mut self, dir: &Path) -> (bool, Option<CpuMax>) {
        let Ok(quota_us) = self.get(dir, "cpu.cfs_quota_us", parse_cfs_quota) else {
            return (false, None);
        };
        let period = self
            .get(dir, "cpu.cfs_period_us", |t| {
                single_u64("cpu.cfs_period_us", t)
            })
            .ok();
        (
            true,
            period.map(|period_us| CpuMax {
                quota_us,
                period_us,
            }),
        )
    }

    /// The directory giving the cgroup's CPU set, and whether it is v1.
    fn cpuset_dir(&mut self) -> Option<(&'a Path, bool)> {
        if let Some(d) = self.v1("cpuset") {
            return Some((d, true));
        }
        let walked = self.kernel_v2.effective_cpus.is_some();
        self.v2_enabled(walked, Controllers::CPUSET)
            .map(|d| (d, false))
    }

    /// CPUs in the cgroup's effective set; None when unreadable or empty (an unconfigured v1
    /// cpuset has an empty list, and a cgroup cannot run tasks on no CPU).
    fn cpuset_count(&mut self, dir: &Path, v1: bool) -> Option<u32> {
        let count = if v1 {
            // effective_cpus (kernel 4.x+) leaves out offline CPUs; cpus is what was written.
            const EFFECTIVE: &str = "cpuset.effective_cpus";
            let effective = if self.r.is_absent(EFFECTIVE) {
                Err(Miss::Absent)
            } else {
                self.get(dir, EFFECTIVE, count_cpus)
            };
            match effective {
                Err(Miss::Absent) => {
                    let cpus = self.get(dir, "cpuset.cpus", count_cpus);
                    if cpus.is_ok() {
                        self.r.mark_absent(EFFECTIVE);
                    }
                    cpus.ok()
                }
                other => other.ok(),
            }
        } else {
            self.get(dir, "cpuset.cpus.effective", count_cpus).ok()
        };
        count.filter(|&n| n > 0)
    }

    /// The smaller of the cpuset's CPUs ×100 (only when not every host CPU) and the quota
    /// percentage, over whichever exist (Datadog's `computeCPULimitPct`).
    fn limit_pct(&mut self, quota_pct: Option<f64>, cpus: Option<u32>) -> Option<f64> {
        let cpuset_pct = match cpus {
            Some(n) if Some(n) != self.host_cpus() => Some(f64::from(n) * 100.0),
            _ => None,
        };
        match (cpuset_pct, quota_pct) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Online CPUs of the host: the sysfs list, else sysconf; read once per pass, and shared
    /// between passes for [`super::SHARED_TTL`].
    fn host_cpus(&mut self) -> Option<u32> {
        if self.host_cpus_read {
            return self.host_cpus;
        }
        let r = self.r;
        let known = r
            .host_cpus
            .get_or_insert_with(&(), || self.read_host_cpus());
        self.host_cpus = known;
        self.host_cpus_read = true;
        known
    }

    /// Online CPUs of the host from the sysfs list, else sysconf.
    fn read_host_cpus(&mut self) -> Option<u32> {
        let r = self.r;
        let from_sysfs = if r.online_name.is_empty() {
            None
        } else {
            r.files
                .read(&r.online_dir, &r.online_name, &mut self.buf)
                .ok()
                .and_then(|b| std::str::from_utf8(b).ok())
                .and_then(count_cpus)
                .filter(|&n| n > 0)
        };
        from_sysfs.or_else(|| {
            // SAFETY: sysconf has no preconditions.
            let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
            u32::try_from(n).ok().filter(|&n| n > 0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{
        super::testing::{BAD, D, HYBRID, I, S, TASK, V1, V2, fixture, read},
        *,
    };

    #[test]
    fn hybrid_limit_from_parent_cpuset_and_default() {
        let (layout, reader) = fixture("hybrid");

        // No quota and every CPU: the ECS task's (parent's) quota of 50000/100000 applies.
        let inherit = read(&layout, &reader, HYBRID, &format!("/ecs/{TASK}/{I}"));
        let cpu = inherit.cpu.expect("cpu");
        assert_eq!((cpu.limit, cpu.defaulted_limit), (Some(50.0), Some(false)));
        assert_eq!(cpu.total, Some(338_695_763));
        assert_eq!(
            (cpu.user, cpu.system),
            (Some(300_000_000), Some(30_000_000))
        );
        assert_eq!(cpu.shares, Some(1024));
        assert_eq!(cpu.partial_stall_time, Some(1_384_872_000));

        // cpuset.effective_cpus "1" of 2 CPUs.
        let cpuset = read(&layout, &reader, HYBRID, &format!("/ecs/{TASK}/{S}"));
        let cpu = cpuset.cpu.expect("cpu");
        assert_eq!((cpu.limit, cpu.defaulted_limit), (Some(100.0), Some(false)));

        // No limit here nor on docker/ (quota -1, cpuset 0-1): the host's 2 CPUs, defaulted.
        let default = read(&layout, &reader, HYBRID, &format!("/docker/{D}"));
        let cpu = default.cpu.expect("cpu");
        assert_eq!((cpu.limit, cpu.defaulted_limit), (Some(200.0), Some(true)));
    }

    #[test]
    fn v1_malformed_and_missing_cpu_files() {
        let (layout, reader) = fixture("v1");
        let stats = read(&layout, &reader, V1, &format!("/docker/{BAD}"));
        assert_eq!(
            stats.cpu,
            Some(CpuStats {
                // cpuacct.usage "not-a-number"
                total: None,
                user: Some(300_000_000),
                system: Some(30_000_000),
                // cpu.cfs_quota_us missing, cpuset.effective_cpus "0-"; docker/ has no limit.
                limit: Some(200.0),
                defaulted_limit: Some(true),
                shares: Some(1024),
                weight: None,
                // "nr_periods" without a value
                elapsed_periods: None,
                throttled_periods: Some(0),
                throttled_time: Some(0),
                partial_stall_time: None,
                full_stall_time: None,
                cfs_quota_us: None,
                cfs_period_us: None,
            })
        );
    }

    #[test]
    fn v2_limit_from_parent_cpuset_and_default() {
        let (layout, reader) = fixture("v2");

        let inherit = read(&layout, &reader, V2, &format!("/docker/{I}"));
        let cpu = inherit.cpu.expect("cpu");
        // cpu.max "max 100000" here, "50000 100000" on docker/.
        assert_eq!((cpu.limit, cpu.defaulted_limit), (Some(50.0), Some(false)));
        assert_eq!(cpu.weight, Some(100));

        let cpuset = read(&layout, &reader, V2, &format!("/docker/{S}"));
        let cpu = cpuset.cpu.expect("cpu");
        assert_eq!((cpu.limit, cpu.defaulted_limit), (Some(100.0), Some(false)));

        let default = read(
            &layout,
            &reader,
            V2,
            &format!("/system.slice/docker-{D}.scope"),
        );
        let cpu = default.cpu.expect("cpu");
        assert_eq!((cpu.limit, cpu.defaulted_limit), (Some(200.0), Some(true)));
        assert_eq!(cpu.total, Some(2_590_600_000));
    }

    #[test]
    fn v2_malformed_cpu_max_takes_the_parents_limit() {
        let (layout, reader) = fixture("v2");
        let stats = read(&layout, &reader, V2, &format!("/docker/{BAD}"));
        let cpu = stats.cpu.expect("cpu");
        // cpu.max "abc 100000" is malformed: the parent's 50% applies.
        assert_eq!((cpu.limit, cpu.defaulted_limit), (Some(50.0), Some(false)));
    }
}
