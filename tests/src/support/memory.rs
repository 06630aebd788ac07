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

/// Where a process's resident memory is, summed over its mappings in `/proc/<pid>/smaps`
/// (KiB each).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Breakdown {
    /// `[heap]` and anonymous mappings: malloc's heap and arenas, thread stacks.
    pub anon_kib: u64,
    /// BPF maps mapped into the process (`anon_inode:bpf-map`): ring buffers (their data
    /// pages are mapped twice, and counted twice) and mmapable arrays.
    pub bpf_maps_kib: u64,
    /// The executable's own file (code and read-only data as touched).
    pub binary_kib: u64,
    /// Shared libraries and any other file.
    pub libraries_kib: u64,
    /// The rest: the main stack, vdso.
    pub other_kib: u64,
}

impl Breakdown {
    /// Reads `/proc/<pid>/smaps`; `None` when the process is gone.
    #[must_use]
    pub fn of(pid: u32) -> Option<Self> {
        let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).ok()?;
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
        Some(Self::parse(&smaps, &exe.to_string_lossy()))
    }

    /// Sums the `Rss:` of each mapping of `smaps` text into its kind; `exe` is the
    /// executable's path.
    #[must_use]
    pub fn parse(smaps: &str, exe: &str) -> Self {
        let mut breakdown = Self::default();
        let mut name = String::new();
        for line in smaps.lines() {
            let mut fields = line.split_whitespace();
            let first = fields.next().unwrap_or_default();
            if first.contains('-') && !first.ends_with(':') {
                // A mapping's header: range perms offset dev inode [name].
                name = fields.nth(4).map(str::to_owned).unwrap_or_default();
            } else if first == "Rss:" {
                let kib: u64 = fields.next().and_then(|v| v.parse().ok()).unwrap_or(0);
                *breakdown.slot(&name, exe) += kib;
            }
        }
        breakdown
    }

    fn slot(&mut self, name: &str, exe: &str) -> &mut u64 {
        match name {
            "" | "[heap]" => &mut self.anon_kib,
            "anon_inode:bpf-map" => &mut self.bpf_maps_kib,
            n if n == exe => &mut self.binary_kib,
            n if n.starts_with('/') => &mut self.libraries_kib,
            _ => &mut self.other_kib,
        }
    }

    /// One line: each kind in MiB.
    #[must_use]
    pub fn line(&self) -> String {
        format!(
            "anonymous/heap {}, BPF maps {}, executable {}, libraries {}, other {}",
            mib(Some(self.anon_kib)),
            mib(Some(self.bpf_maps_kib)),
            mib(Some(self.binary_kib)),
            mib(Some(self.libraries_kib)),
            mib(Some(self.other_kib)),
        )
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
    use super::{Breakdown, Memory, mib, status_kib};

    #[test]
    fn smaps_sum_by_kind() {
        let smaps = "\
55b516d35000-55b517008000 r--p 00000000 fe:01 123 /usr/bin/collector-daemon
Size:               2892 kB
Rss:                1364 kB
55b542880000-55b5449c6000 rw-p 00000000 00:00 0                          [heap]
Rss:               28964 kB
7fa6ab298000-7fa6aba99000 r--p 00000000 00:0f 1060                       anon_inode:bpf-map
Rss:                8196 kB
7fa6ac632000-7fa6ac788000 r-xp 00028000 fe:01 456 /usr/lib/x86_64-linux-gnu/libc.so.6
Rss:                 952 kB
7fa6ac800000-7fa6ac900000 rw-p 00000000 00:00 0
Rss:                  12 kB
7ffc8c0f0000-7ffc8c111000 rw-p 00000000 00:00 0                          [stack]
Rss:                  20 kB
";
        let b = Breakdown::parse(smaps, "/usr/bin/collector-daemon");
        assert_eq!(
            b,
            Breakdown {
                anon_kib: 28_976,
                bpf_maps_kib: 8_196,
                binary_kib: 1_364,
                libraries_kib: 952,
                other_kib: 20,
            }
        );
        let own = Breakdown::of(std::process::id()).expect("our own smaps");
        assert!(own.anon_kib > 0 && own.binary_kib > 0, "{own:?}");
    }

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
