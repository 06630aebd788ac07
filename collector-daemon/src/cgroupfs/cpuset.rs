//! CPU lists: v1 `cpuset.cpus`/`cpuset.effective_cpus`, v2 `cpuset.cpus.effective`, and
//! `/sys/devices/system/cpu/online`. The kernel prints them with `%*pbl`: ascending, disjoint
//! ranges `0-3,5,7-8`, an empty line for an empty set (a fresh v1 cpuset cgroup has one until
//! `cpuset.cpus` is written).

/// The number of CPUs in a list; None when malformed (logged). Some(0) for an empty list.
#[must_use]
pub fn count_cpus(text: &str) -> Option<u32> {
    let text = text.trim();
    if text.is_empty() {
        return Some(0);
    }
    let mut count: u32 = 0;
    let mut last: Option<u32> = None;
    for part in text.split(',') {
        let Some((lo, hi)) = parse_range(part) else {
            tracing::debug!(list = text, part, "malformed CPU list");
            return None;
        };
        // Ranges are ascending and disjoint in what the kernel prints; anything else would be
        // counted twice, so it is rejected rather than guessed at.
        if last.is_some_and(|l| lo <= l) {
            tracing::debug!(list = text, "CPU list not ascending");
            return None;
        }
        last = Some(hi);
        count = count.checked_add((hi - lo).checked_add(1)?)?;
    }
    Some(count)
}

fn parse_range(part: &str) -> Option<(u32, u32)> {
    let num = |s: &str| {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            None
        } else {
            s.parse::<u32>().ok()
        }
    };
    match part.split_once('-') {
        Some((lo, hi)) => {
            let (lo, hi) = (num(lo)?, num(hi)?);
            (lo <= hi).then_some((lo, hi))
        }
        None => num(part).map(|n| (n, n)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts() {
        assert_eq!(count_cpus("0-3,5,7-8\n"), Some(7));
        assert_eq!(count_cpus("0-1\n"), Some(2));
        assert_eq!(count_cpus("1\n"), Some(1));
        assert_eq!(count_cpus("\n"), Some(0));
        assert_eq!(count_cpus("0-127"), Some(128));
        assert_eq!(count_cpus("0-4294967295"), None, "overflows, no panic");
    }

    #[test]
    fn malformed() {
        for text in [
            "3-1", "0-", "-1", "a", "0,,1", "0-1,1", "2,1", "0 1", "1-2-3",
        ] {
            assert_eq!(count_cpus(text), None, "{text:?}");
        }
    }
}
