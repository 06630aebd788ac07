//! The PIDs section of a read: `pids.current` and `pids.max` of the v1 pids controller, else of
//! the v2 directory when `cgroup.controllers` lists `pids` (from the kernel walk when it has
//! them, either way).

use super::pass::{Controllers, Pass};
use crate::{
    cgroupfs::{
        parse::Limit,
        pids::{parse_current, parse_max},
    },
    stats::PidStats,
};

impl Pass<'_> {
    /// The PIDs section; None without a pids controller or when neither file gave a value.
    pub(super) fn pids(&mut self) -> Option<PidStats> {
        let (d, walked) = if let Some(d) = self.v1("pids") {
            (d, self.kernel.pids)
        } else {
            let walked = self.kernel_v2.pids;
            (
                self.v2_enabled(walked.is_some(), Controllers::PIDS)?,
                walked,
            )
        };
        if let Some(k) = walked {
            return Some(PidStats {
                thread_count: Some(k.current),
                thread_limit: k.max.value(),
            });
        }
        let current = self.get(d, "pids.current", parse_current);
        let max = self.get(d, "pids.max", parse_max);
        if current.is_err() && max.is_err() {
            return None;
        }
        Some(PidStats {
            thread_count: current.ok(),
            thread_limit: max.ok().and_then(Limit::value),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{
        super::testing::{BAD, D, HYBRID, I, TASK, V1, V2, fixture, read},
        *,
    };

    #[test]
    fn hybrid_pids_without_and_with_a_limit() {
        let (layout, reader) = fixture("hybrid");
        let inherit = read(&layout, &reader, HYBRID, &format!("/ecs/{TASK}/{I}"));
        assert_eq!(
            inherit.pid,
            Some(PidStats {
                thread_count: Some(3),
                thread_limit: None,
            })
        );
        let parent = read(&layout, &reader, HYBRID, &format!("/ecs/{TASK}"));
        assert_eq!(parent.pid.and_then(|p| p.thread_limit), Some(100));
    }

    #[test]
    fn v1_malformed_and_missing_pids_files() {
        let (layout, reader) = fixture("v1");
        let stats = read(&layout, &reader, V1, &format!("/docker/{BAD}"));
        // pids.current empty and pids.max missing: every file of the section failed.
        assert_eq!(stats.pid, None);
    }

    #[test]
    fn v2_pids_without_a_limit() {
        let (layout, reader) = fixture("v2");
        let inherit = read(&layout, &reader, V2, &format!("/docker/{I}"));
        assert_eq!(inherit.pid.and_then(|p| p.thread_limit), None);
        // system.slice enables only cpu, memory and pids below it.
        let default = read(
            &layout,
            &reader,
            V2,
            &format!("/system.slice/docker-{D}.scope"),
        );
        assert_eq!(default.pid.and_then(|p| p.thread_count), Some(1));
    }
}
