//! A process's memory as the kernel reports it: resident and peak resident set of
//! `/proc/<pid>/status`, for the benches that report the daemon's memory.

/// The target for the daemon's resident memory, in bytes: under 40 MB (decimal).
pub const RSS_TARGET_BYTES: u64 = 40_000_000;

/// One reading of a process's memory, in KiB; `None` where the field could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    /// `VmRSS`: resident now (anonymous, file-backed and shared mappings, the BPF maps the
    /// process has mapped included).
    pub rss_kib: Option<u64>,
    /// `VmHWM`: the highest `VmRSS` since the process started.
    pub peak_kib: Option<u64>,
}

impl Memory {
    /// Reads `/proc/<pid>/status`; both fields `None` when the process is gone.
    #[must_use]
    pub fn of(pid: u32) -> Self {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        Self {
            rss_kib: status_kib(&status, "VmRSS:"),
            peak_kib: status_kib(&status, "VmHWM:"),
        }
    }

    /// "PASS" when the resident set is under [`RSS_TARGET_BYTES`], "MISS" when not, "?"
    /// when unknown.
    #[must_use]
    pub fn verdict(&self) -> &'static str {
        match self.rss_kib {
            Some(kib) if kib * 1024 < RSS_TARGET_BYTES => "PASS",
            Some(_) => "MISS",
            None => "?",
        }
    }
}

/// The value in kB of `field` (e.g. `VmRSS:`) in the text of `/proc/<pid>/status`.
fn status_kib(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
}

/// `kib` as MiB with one decimal ("?" when unknown).
#[must_use]
pub fn mib(kib: Option<u64>) -> String {
    kib.map_or_else(
        || "?".to_owned(),
        |k| {
            #[expect(
                clippy::cast_precision_loss,
                reason = "KiB of a process: far below 2^52"
            )]
            let m = k as f64 / 1024.0;
            format!("{m:.1} MiB")
        },
    )
}

#[cfg(test)]
mod tests {
    use super::{Memory, mib, status_kib};

    #[test]
    fn status_fields_parse() {
        let status = "Name:\tx\nVmHWM:\t   60128 kB\nVmRSS:\t   49656 kB\nThreads:\t7\n";
        assert_eq!(status_kib(status, "VmRSS:"), Some(49_656));
        assert_eq!(status_kib(status, "VmHWM:"), Some(60_128));
        assert_eq!(status_kib(status, "VmSwap:"), None);
        assert_eq!(mib(Some(49_656)), "48.5 MiB");
        assert_eq!(mib(None), "?");
    }

    #[test]
    fn own_memory_reads_and_is_judged() {
        let own = Memory::of(std::process::id());
        assert!(own.rss_kib.is_some_and(|k| k > 0));
        assert!(own.peak_kib >= own.rss_kib);
        let small = Memory {
            rss_kib: Some(39_000),
            peak_kib: None,
        };
        assert_eq!(small.verdict(), "PASS");
        let large = Memory {
            rss_kib: Some(39_063),
            peak_kib: None,
        };
        assert_eq!(large.verdict(), "MISS");
    }
}
