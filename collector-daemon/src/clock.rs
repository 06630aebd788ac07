//! The kernel's user-visible clock tick (`USER_HZ`), the unit of procfs start times and of
//! v1 `cpuacct.stat`. The kernel converts to it with `nsec_to_clock_t` and truncates, so a
//! value in ticks is exact only to the tick.
use std::sync::OnceLock;

/// `USER_HZ` when `sysconf(_SC_CLK_TCK)` fails: the value every Linux ABI uses.
const DEFAULT_USER_HZ: u64 = 100;

/// `USER_HZ`, from `sysconf(_SC_CLK_TCK)` once per process.
pub fn user_hz() -> u64 {
    static HZ: OnceLock<u64> = OnceLock::new();
    *HZ.get_or_init(|| {
        // SAFETY: sysconf has no preconditions; it returns -1 for an unknown name.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        u64::try_from(hz)
            .ok()
            .filter(|&hz| hz > 0)
            .unwrap_or(DEFAULT_USER_HZ)
    })
}

/// Nanoseconds per tick at `hz` ticks per second (`hz` 0 is taken as 1).
pub fn ns_per_tick(hz: u64) -> u64 {
    1_000_000_000 / hz.max(1)
}

/// `ticks` at `hz` ticks per second, in ns, exactly (`hz` need not divide 10^9); `None` when
/// `hz` is 0 or the result overflows.
pub fn ticks_to_ns_at(ticks: u64, hz: u64) -> Option<u64> {
    if hz == 0 {
        return None;
    }
    u64::try_from(u128::from(ticks) * 1_000_000_000 / u128::from(hz)).ok()
}

/// `ticks` of this host's `USER_HZ`, in ns (saturating).
pub fn ticks_to_ns(ticks: u64) -> u64 {
    ticks_to_ns_at(ticks, user_hz()).unwrap_or(u64::MAX)
}

/// `CLOCK_BOOTTIME` now in ns: the clock of the kernel's task start times
/// (`task->start_boottime`); 0 if it cannot be read.
pub fn boottime_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    if unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &raw mut now) } != 0 {
        return 0;
    }
    u64::try_from(now.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(now.tv_nsec).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_hz_is_the_sysconf_value() {
        // SAFETY: as in user_hz.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        assert_eq!(user_hz(), u64::try_from(hz).unwrap());
        assert_eq!(ticks_to_ns(3), 3 * ns_per_tick(user_hz()));
        assert_eq!(ticks_to_ns_at(36, 100), Some(360_000_000));
        assert_eq!(ticks_to_ns_at(3, 1024), Some(2_929_687));
        assert_eq!(ticks_to_ns_at(3, 0), None);
        assert_eq!(ticks_to_ns_at(u64::MAX, 1), None);
        assert_eq!(ns_per_tick(100), 10_000_000);
        assert_eq!(ns_per_tick(0), 1_000_000_000);
    }
}
