//! PIDs files (Documentation/admin-guide/cgroup-v1/pids.rst, cgroup-v2.rst; same in both):
//! `pids.current` counts tasks, i.e. threads, of the cgroup and its descendants; `pids.max` is a
//! number or "max". Neither exists in a root cgroup.

use super::parse::{Limit, single_limit, single_u64};

/// `pids.current`; None when malformed.
#[must_use]
pub fn parse_current(text: &str) -> Option<u64> {
    single_u64("pids.current", text)
}

/// `pids.max`; None when malformed.
#[must_use]
pub fn parse_max(text: &str) -> Option<Limit> {
    single_limit("pids.max", text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_and_max() {
        assert_eq!(parse_current("3\n"), Some(3));
        assert_eq!(parse_current("three\n"), None);
        assert_eq!(parse_max("max\n"), Some(Limit::Unlimited));
        assert_eq!(parse_max("64\n"), Some(Limit::Value(64)));
        assert_eq!(parse_max("-1\n"), None);
    }
}
