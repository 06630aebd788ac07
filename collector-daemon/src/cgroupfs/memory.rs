//! Memory files. v1 (Documentation/admin-guide/cgroup-v1/memory.rst): `memory.usage_in_bytes`,
//! `memory.kmem.usage_in_bytes`, `memory.max_usage_in_bytes`, `memory.failcnt`,
//! `memory.soft_limit_in_bytes`, and `memory.stat`, whose `total_*` keys and
//! `hierarchical_*_limit` cover the cgroup and its descendants (the unprefixed keys are local).
//! An unset v1 limit reads as `PAGE_COUNTER_MAX` pages: `LONG_MAX` rounded down to the page size
//! (9223372036854771712 with 4 KiB pages), older kernels printed 2^63-1 or 2^64-1.
//! v2 (cgroup-v2.rst): `memory.current`, `memory.max`/`memory.low`/`memory.swap.max` ("max" =
//! none), `memory.swap.current`, `memory.peak` (5.19+), `memory.events` (hierarchical unless
//! mounted with `memory_localevents`) and `memory.stat` (`kernel` since 5.18).

use super::parse::{flat_keyed, parse_u64};

/// v1 limits at or above this are "unlimited": 2^62 bytes is far beyond any real limit, and
/// covers `PAGE_COUNTER_MAX` for every page size as well as the older 2^63-1 / 2^64-1 spellings.
pub const V1_UNLIMITED_FROM: u64 = 1 << 62;

/// A v1 limit value, None when it means "unlimited".
#[must_use]
pub fn v1_limit(bytes: u64) -> Option<u64> {
    (bytes < V1_UNLIMITED_FROM).then_some(bytes)
}

/// The `memory.stat` keys used from v1 (hierarchical `total_*` ones).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryStatV1 {
    pub total_rss: Option<u64>,
    pub total_cache: Option<u64>,
    /// Present only with swap accounting (`memory.memsw.*` files exist).
    pub total_swap: Option<u64>,
    pub total_pgfault: Option<u64>,
    pub total_pgmajfault: Option<u64>,
    pub total_inactive_file: Option<u64>,
    pub hierarchical_memory_limit: Option<u64>,
    pub hierarchical_memsw_limit: Option<u64>,
}

impl MemoryStatV1 {
    #[must_use]
    pub fn parse(text: &str) -> Self {
        let mut s = Self::default();
        flat_keyed("memory.stat", text, |key, value| {
            let slot = match key {
                "total_rss" => &mut s.total_rss,
                "total_cache" => &mut s.total_cache,
                "total_swap" => &mut s.total_swap,
                "total_pgfault" => &mut s.total_pgfault,
                "total_pgmajfault" => &mut s.total_pgmajfault,
                "total_inactive_file" => &mut s.total_inactive_file,
                "hierarchical_memory_limit" => &mut s.hierarchical_memory_limit,
                "hierarchical_memsw_limit" => &mut s.hierarchical_memsw_limit,
                _ => return,
            };
            *slot = value;
        });
        // Per-CPU counter drift once made total_rss print a negative value as u64 (Datadog drops
        // values >= 2^63 for this reason); such a value is garbage, not a size.
        if s.total_rss.is_some_and(|v| v >= 1 << 63) {
            tracing::debug!(value = s.total_rss, "implausible total_rss");
            s.total_rss = None;
        }
        s
    }
}

/// The `memory.stat` keys used from v2.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryStatV2 {
    pub anon: Option<u64>,
    pub file: Option<u64>,
    /// Since 5.18.
    pub kernel: Option<u64>,
    pub kernel_stack: Option<u64>,
    pub slab: Option<u64>,
    pub pgfault: Option<u64>,
    pub pgmajfault: Option<u64>,
    pub inactive_file: Option<u64>,
}

impl MemoryStatV2 {
    #[must_use]
    pub fn parse(text: &str) -> Self {
        let mut s = Self::default();
        flat_keyed("memory.stat", text, |key, value| {
            let slot = match key {
                "anon" => &mut s.anon,
                "file" => &mut s.file,
                "kernel" => &mut s.kernel,
                "kernel_stack" => &mut s.kernel_stack,
                "slab" => &mut s.slab,
                "pgfault" => &mut s.pgfault,
                "pgmajfault" => &mut s.pgmajfault,
                "inactive_file" => &mut s.inactive_file,
                _ => return,
            };
            *slot = value;
        });
        s
    }

    /// Kernel memory: `kernel` (5.18+), else `kernel_stack + slab` as before it existed.
    #[must_use]
    pub fn kernel_memory(&self) -> Option<u64> {
        self.kernel.or_else(|| {
            self.kernel_stack
                .zip(self.slab)
                .map(|(a, b)| a.saturating_add(b))
        })
    }
}

/// v2 `memory.events`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryEvents {
    pub low: Option<u64>,
    pub high: Option<u64>,
    pub max: Option<u64>,
    /// Times the cgroup hit its limit and reclaim failed (the OOM killer was invoked or the
    /// charge failed).
    pub oom: Option<u64>,
    pub oom_kill: Option<u64>,
}

impl MemoryEvents {
    #[must_use]
    pub fn parse(text: &str) -> Self {
        let mut s = Self::default();
        flat_keyed("memory.events", text, |key, value| {
            let slot = match key {
                "low" => &mut s.low,
                "high" => &mut s.high,
                "max" => &mut s.max,
                "oom" => &mut s.oom,
                "oom_kill" => &mut s.oom_kill,
                _ => return,
            };
            *slot = value;
        });
        s
    }
}

/// v1 `memory.oom_control`: `oom_kill_disable 0`, `under_oom 0`, `oom_kill N` (the last
/// since kernel 4.13).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OomControl {
    /// Processes the OOM killer killed in the cgroup (and below it).
    pub oom_kill: Option<u64>,
}

impl OomControl {
    #[must_use]
    pub fn parse(text: &str) -> Self {
        let oom_kill = text.lines().find_map(|line| {
            let (key, value) = line.split_once(' ')?;
            (key == "oom_kill")
                .then(|| parse_u64(value.trim()))
                .flatten()
        });
        Self { oom_kill }
    }
}

/// `usage - inactive_file`, clamped at 0: the kernel reads the two at different instants, so
/// `inactive_file` can exceed the usage of a nearly empty cgroup.
#[must_use]
pub fn working_set(usage: Option<u64>, inactive_file: Option<u64>) -> Option<u64> {
    usage.zip(inactive_file).map(|(u, i)| u.saturating_sub(i))
}

#[cfg(test)]
mod tests {
    #[test]
    fn oom_control_gives_the_kill_count() {
        let text = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(super::OomControl::parse(text).oom_kill, Some(3));
        // Kernels before 4.13 have no oom_kill line: unknown, not 0.
        let old = "oom_kill_disable 0\nunder_oom 0\n";
        assert_eq!(super::OomControl::parse(old).oom_kill, None);
    }

    use super::*;

    #[test]
    fn v1_unlimited() {
        assert_eq!(v1_limit(9_223_372_036_854_771_712), None);
        assert_eq!(v1_limit(9_223_372_036_854_710_272), None); // 64 KiB pages
        assert_eq!(v1_limit(u64::MAX), None);
        assert_eq!(v1_limit(268_435_456), Some(268_435_456));
    }

    #[test]
    fn v1_stat_keys() {
        let s = MemoryStatV1::parse(
            "cache 1\nrss 2\ntotal_cache 2431774720\ntotal_rss 12144640\ntotal_swap 0\n\
             total_pgfault 158429733\ntotal_pgmajfault 25644\ntotal_inactive_file 842981376\n\
             hierarchical_memory_limit 9223372036854771712\nhierarchical_memsw_limit 536870912\n",
        );
        assert_eq!(
            s,
            MemoryStatV1 {
                total_rss: Some(12_144_640),
                total_cache: Some(2_431_774_720),
                total_swap: Some(0),
                total_pgfault: Some(158_429_733),
                total_pgmajfault: Some(25_644),
                total_inactive_file: Some(842_981_376),
                hierarchical_memory_limit: Some(9_223_372_036_854_771_712),
                hierarchical_memsw_limit: Some(536_870_912),
            }
        );
        assert_eq!(
            MemoryStatV1::parse("total_rss 18446744073709539328\n").total_rss,
            None
        );
    }

    #[test]
    fn v2_kernel_memory_fallback() {
        let s = MemoryStatV2::parse("kernel_stack 65536\nslab 88016\n");
        assert_eq!(s.kernel_memory(), Some(153_552));
        let s = MemoryStatV2::parse("kernel 544768\nkernel_stack 65536\nslab 88016\n");
        assert_eq!(s.kernel_memory(), Some(544_768));
        assert_eq!(MemoryStatV2::parse("slab 1\n").kernel_memory(), None);
    }

    #[test]
    fn events() {
        let e =
            MemoryEvents::parse("low 0\nhigh 85\nmax 36\noom 1\noom_kill 1\noom_group_kill 0\n");
        assert_eq!(
            e,
            MemoryEvents {
                low: Some(0),
                high: Some(85),
                max: Some(36),
                oom: Some(1),
                oom_kill: Some(1),
            }
        );
    }

    #[test]
    fn working_set_is_clamped() {
        assert_eq!(working_set(Some(100), Some(30)), Some(70));
        assert_eq!(working_set(Some(100), Some(300)), Some(0));
        assert_eq!(working_set(None, Some(3)), None);
        assert_eq!(working_set(Some(3), None), None);
    }
}
