//! The memory section of a read: the v1 memory controller's files (its one-number files from
//! the kernel walk when it has them), else the v2 directory's when the walk has its values or
//! `cgroup.controllers` lists `memory` (its one-number files from the walk when it has them),
//! with memory pressure.

use std::path::Path;

use super::pass::{Controllers, Miss, Pass};
use crate::{
    cgroupfs::{
        memory::{MemoryEvents, MemoryStatV1, MemoryStatV2, OomControl, v1_limit, working_set},
        parse::{Limit, single_limit, single_u64},
    },
    stats::MemoryStats,
};

/// The v2 memory files `memory.current`, `memory.max`, `memory.low` and `memory.peak`, as read.
type V2MemoryFiles = (
    Result<u64, Miss>,
    Result<Limit, Miss>,
    Result<Limit, Miss>,
    Result<u64, Miss>,
);

/// The five one-number v1 memory files, as read: usage, kmem usage, soft limit, failcnt, peak.
type V1MemoryFiles = (
    Result<u64, Miss>,
    Result<u64, Miss>,
    Result<u64, Miss>,
    Result<u64, Miss>,
    Result<u64, Miss>,
);

impl Pass<'_> {
    /// The memory section; None without a memory controller or when no file of it gave a
    /// value.
    pub(super) fn memory(&mut self) -> Option<MemoryStats> {
        let mut s = if let Some(d) = self.v1("memory") {
            self.memory_v1(d)?
        } else {
            let d = self.v2_enabled(self.kernel_v2.memory.is_some(), Controllers::MEMORY)?;
            self.memory_v2(d)?
        };
        (s.partial_stall_time, s.full_stall_time) = self.pressure("memory.pressure").totals();
        Some(s)
    }

    fn memory_v1(&mut self, d: &Path) -> Option<MemoryStats> {
        let kernel = self.kernel.memory;
        let stat = self.get(d, "memory.stat", |t| Some(MemoryStatV1::parse(t)));
        let oom_kills = match kernel.and_then(|k| k.oom_kill) {
            Some(kills) => Some(kills),
            None => self
                .get(d, "memory.oom_control", |t| Some(OomControl::parse(t)))
                .ok()
                .and_then(|c| c.oom_kill),
        };
        let (usage, kmem, soft, failcnt, peak) = match kernel {
            Some(k) => (
                Ok(k.usage_bytes),
                match k.kmem_usage_bytes {
                    Some(bytes) => Ok(bytes),
                    None => self.optional(d, "memory.kmem.usage_in_bytes", true, |t| {
                        single_u64("memory.kmem.usage_in_bytes", t)
                    }),
                },
                Ok(k.soft_limit_bytes),
                Ok(k.failcnt),
                Ok(k.max_usage_bytes),
            ),
            None => self.memory_v1_files(d),
        };
        let ok = usage.is_ok()
            || stat.is_ok()
            || kmem.is_ok()
            || soft.is_ok()
            || failcnt.is_ok()
            || peak.is_ok();
        if !ok {
            return None;
        }
        let usage = usage.ok();
        let stat = stat.unwrap_or_default();
        Some(MemoryStats {
            usage_total: usage,
            kernel_memory: kmem.ok(),
            limit: stat.hierarchical_memory_limit.and_then(v1_limit),
            softlimit: soft.ok().and_then(v1_limit),
            swap: stat.total_swap,
            swap_limit: stat.hierarchical_memsw_limit.and_then(v1_limit),
            working_set: working_set(usage, stat.total_inactive_file),
            rss: stat.total_rss,
            cache: stat.total_cache,
            // memory.failcnt counts charges that hit the limit, not OOM kills; Datadog's
            // provider reports it as the OOM events.
            oom_events: failcnt.as_ref().ok().copied(),
            failcnt: failcnt.ok(),
            oom_kills,
            peak: peak.ok(),
            pgfault: stat.total_pgfault,
            pgmajfault: stat.total_pgmajfault,
            ..MemoryStats::default()
        })
    }

    /// `memory.usage_in_bytes`, `memory.kmem.usage_in_bytes`, `memory.soft_limit_in_bytes`,
    /// `memory.failcnt` and `memory.max_usage_in_bytes`, from the files.
    fn memory_v1_files(&mut self, d: &Path) -> V1MemoryFiles {
        let usage = self.get(d, "memory.usage_in_bytes", |t| {
            single_u64("memory.usage_in_bytes", t)
        });
        let kmem = self.optional(d, "memory.kmem.usage_in_bytes", usage.is_ok(), |t| {
            single_u64("memory.kmem.usage_in_bytes", t)
        });
        let soft = self.get(d, "memory.soft_limit_in_bytes", |t| {
            single_u64("memory.soft_limit_in_bytes", t)
        });
        let failcnt = self.get(d, "memory.failcnt", |t| single_u64("memory.failcnt", t));
        let peak = self.get(d, "memory.max_usage_in_bytes", |t| {
            single_u64("memory.max_usage_in_bytes", t)
        });
        (usage, kmem, soft, failcnt, peak)
    }

    fn memory_v2(&mut self, d: &Path) -> Option<MemoryStats> {
        // memory.stat and memory.events stay files: the kernel sums them from per-CPU data.
        let stat = self.get(d, "memory.stat", |t| Some(MemoryStatV2::parse(t)));
        let events = self.get(d, "memory.events", |t| Some(MemoryEvents::parse(t)));
        let (current, max, low, peak) = self.memory_v2_values(d);
        let (swap, swap_max) = self.memory_v2_swap(d, current.is_ok());
        let ok = current.is_ok()
            || stat.is_ok()
            || max.is_ok()
            || low.is_ok()
            || events.is_ok()
            || swap.is_ok()
            || swap_max.is_ok()
            || peak.is_ok();
        if !ok {
            return None;
        }
        let current = current.ok();
        let stat = stat.unwrap_or_default();
        Some(MemoryStats {
            usage_total: current,
            kernel_memory: stat.kernel_memory(),
            limit: max.ok().and_then(Limit::value),
            // 0 is memory.low's default, "no protection", and "max" protects everything: neither
            // is a soft limit to report.
            softlimit: low.ok().and_then(Limit::value).filter(|&v| v > 0),
            swap: swap.ok(),
            // Swap alone, unlike v1's memory+swap limit.
            swap_limit: swap_max.ok().and_then(Limit::value),
            working_set: working_set(current, stat.inactive_file),
            rss: stat.anon,
            cache: stat.file,
            oom_events: events.as_ref().ok().and_then(|e| e.oom),
            oom_kills: events.ok().and_then(|e| e.oom_kill),
            peak: peak.ok(),
            pgfault: stat.pgfault,
            pgmajfault: stat.pgmajfault,
            ..MemoryStats::default()
        })
    }

    /// `memory.current`, `memory.max`, `memory.low` and `memory.peak` of the v2 directory `d`:
    /// the kernel walk's when it has them, else the files'.
    fn memory_v2_values(&mut self, d: &Path) -> V2MemoryFiles {
        if let Some(k) = self.kernel_v2.memory {
            return (Ok(k.current_bytes), Ok(k.max), Ok(k.low), Ok(k.peak_bytes));
        }
        let current = self.get(d, "memory.current", |t| single_u64("memory.current", t));
        let max = self.get(d, "memory.max", |t| single_limit("memory.max", t));
        let low = self.get(d, "memory.low", |t| single_limit("memory.low", t));
        // memory.peak is 5.19+.
        let peak = self.optional(d, "memory.peak", current.is_ok(), |t| {
            single_u64("memory.peak", t)
        });
        (current, max, low, peak)
    }

    /// `memory.swap.current` and `memory.swap.max` of the v2 directory `d`: the kernel
    /// walk's when it has them, else the files' (`sibling_ok`: `memory.current` was read).
    fn memory_v2_swap(
        &mut self,
        d: &Path,
        sibling_ok: bool,
    ) -> (Result<u64, Miss>, Result<Limit, Miss>) {
        if let Some(s) = self.kernel_v2.memory.and_then(|k| k.swap) {
            return (Ok(s.current_bytes), Ok(s.max));
        }
        // Swap files need swap accounting (CONFIG_MEMCG_SWAP, not `cgroup.memory=noswap`).
        let swap = self.optional(d, "memory.swap.current", sibling_ok, |t| {
            single_u64("memory.swap.current", t)
        });
        let swap_max = self.optional(d, "memory.swap.max", sibling_ok, |t| {
            single_limit("memory.swap.max", t)
        });
        (swap, swap_max)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{BAD, D, HYBRID, I, TASK, V1, V2, fixture, read};

    #[test]
    fn hybrid_unlimited_values_are_none() {
        let (layout, reader) = fixture("hybrid");
        let inherit = read(&layout, &reader, HYBRID, &format!("/ecs/{TASK}/{I}"));
        let memory = inherit.memory.expect("memory");
        assert_eq!(
            memory.limit, None,
            "hierarchical_memory_limit is the unlimited value"
        );
        assert_eq!(memory.softlimit, None, "soft limit is the unlimited value");
        assert_eq!(memory.swap_limit, None);
        assert_eq!(memory.working_set, Some(13_705_216 - 12_582_912));
        assert_eq!(memory.oom_events, Some(0));
        assert_eq!(memory.partial_stall_time, Some(0));
    }

    #[test]
    fn v1_malformed_and_missing_memory_files() {
        let (layout, reader) = fixture("v1");
        let stats = read(&layout, &reader, V1, &format!("/docker/{BAD}"));
        let memory = stats.memory.expect("memory");
        assert_eq!(memory.rss, None, "total_rss 12x");
        assert_eq!(memory.cache, Some(12_582_912));
        assert_eq!(memory.oom_events, None, "memory.failcnt missing");
        assert_eq!(memory.usage_total, Some(13_705_216));
        assert_eq!(memory.kernel_memory, Some(598_016));
    }

    #[test]
    fn v2_unlimited_values_are_none() {
        let (layout, reader) = fixture("v2");
        let inherit = read(&layout, &reader, V2, &format!("/docker/{I}"));
        let memory = inherit.memory.expect("memory");
        assert_eq!(
            (memory.limit, memory.softlimit, memory.swap_limit),
            (None, None, None)
        );
        assert_eq!(memory.peak, Some(20_664_320));

        // system.slice enables only cpu, memory and pids below it.
        let default = read(
            &layout,
            &reader,
            V2,
            &format!("/system.slice/docker-{D}.scope"),
        );
        assert_eq!(default.memory.and_then(|m| m.usage_total), Some(94_208));
    }

    #[test]
    fn v2_malformed_memory_values() {
        let (layout, reader) = fixture("v2");
        let stats = read(&layout, &reader, V2, &format!("/docker/{BAD}"));
        let memory = stats.memory.expect("memory");
        assert_eq!(memory.limit, Some(0), "memory.max 0 is a limit");
        assert_eq!(memory.softlimit, None, "memory.low max");
        assert_eq!(
            memory.working_set,
            Some(0),
            "inactive_file > usage is clamped"
        );
        assert_eq!(memory.oom_events, None, "oom x");
        assert_eq!(memory.usage_total, Some(98_304));
    }
}
