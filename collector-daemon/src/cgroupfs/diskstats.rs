//! Block device names by device number, from `/proc/diskstats` (Documentation/admin-guide/iostats.rst):
//! `major minor name` then at least 11 counters (14 fields in all since 2.6; 18 with discard
//! stats since 4.18, 20 with flush stats since 5.5). Lines with fewer than 14 fields are skipped,
//! as Datadog's provider does. The table is cached for a minute, and a lookup that misses
//! re-reads it at most once a second, so a newly attached disk shows up quickly without a miss
//! storm re-reading the file for every cgroup with IO on an unnamed device.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Mutex,
    time::{Duration, Instant},
};

use super::io::Dev;

/// How long a read of /proc/diskstats is trusted.
pub const TTL: Duration = Duration::from_mins(1);
/// The shortest interval between re-reads caused by misses.
pub const MISS_REFRESH: Duration = Duration::from_secs(1);

/// Device number → name ("vda", "nvme0n1p1"), shared by the cgroupfs and eBPF IO paths.
#[derive(Debug)]
pub struct DeviceNames {
    path: PathBuf,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    names: HashMap<Dev, String>,
    /// When the table was last read (successfully or not); None before the first read.
    read_at: Option<Instant>,
}

impl DeviceNames {
    /// Names from `<proc_root>/diskstats`; nothing is read until the first lookup.
    #[must_use]
    pub fn new(proc_root: &Path) -> Self {
        Self {
            path: proc_root.join("diskstats"),
            state: Mutex::new(State::default()),
        }
    }

    /// The name of device `major:minor`, None when /proc/diskstats does not list it.
    #[must_use]
    pub fn name(&self, major: u32, minor: u32) -> Option<String> {
        self.name_at((major, minor), Instant::now())
    }

    fn name_at(&self, dev: Dev, now: Instant) -> Option<String> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let age = state.read_at.map(|t| now.saturating_duration_since(t));
        let expired = age.is_none_or(|age| age >= TTL);
        let miss = !state.names.contains_key(&dev) && age.is_some_and(|age| age >= MISS_REFRESH);
        if expired || miss {
            self.refresh(&mut state, now);
        }
        state.names.get(&dev).cloned()
    }

    fn refresh(&self, state: &mut State, now: Instant) {
        state.read_at = Some(now);
        match std::fs::read(&self.path) {
            Ok(bytes) => state.names = parse(&String::from_utf8_lossy(&bytes)),
            // Keep the previous table: a transient failure should not drop every device name.
            Err(error) => {
                tracing::debug!(path = %self.path.display(), %error, "cannot read diskstats");
            }
        }
    }
}

/// The name of each device in a diskstats text.
#[must_use]
pub fn parse(text: &str) -> HashMap<Dev, String> {
    let mut names = HashMap::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_ascii_whitespace().collect();
        if fields.len() < 14 {
            continue;
        }
        let (Ok(major), Ok(minor)) = (fields[0].parse::<u32>(), fields[1].parse::<u32>()) else {
            tracing::debug!(line, "malformed diskstats line");
            continue;
        };
        names.insert((major, minor), fields[2].to_owned());
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    // This machine's /proc/diskstats (6.18, 20 fields) with a short and a malformed line added.
    const TEXT: &str = "\
   7       0 loop0 32 0 4096 0 64 0 8192 17 0 16 18 0 0 0 0 0 0
 254       0 vda 799157 15359 23607202 1238379 53177 118109 48568304 231363 0 44320 1478323 71338 33 31012304 8439 3265 141
 253       0 zram0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
   8       0 short 1 2 3 4
   x       1 bad 0 0 0 0 0 0 0 0 0 0 0
";

    #[test]
    fn parses_names() {
        let names = parse(TEXT);
        assert_eq!(names.len(), 3);
        assert_eq!(names[&(254, 0)], "vda");
        assert_eq!(names[&(7, 0)], "loop0");
        assert!(!names.contains_key(&(8, 0)));
    }

    #[test]
    fn cache_and_miss_refresh() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("diskstats");
        std::fs::write(&file, TEXT).expect("write");
        let names = DeviceNames::new(dir.path());
        let t0 = Instant::now();
        assert_eq!(names.name_at((254, 0), t0).as_deref(), Some("vda"));

        // A new disk appears: a miss within a second of the last read does not re-read...
        let more = format!("{TEXT} 259 0 nvme0n1 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n");
        std::fs::write(&file, &more).expect("write");
        assert_eq!(
            names.name_at((259, 0), t0 + Duration::from_millis(500)),
            None
        );
        // ...a miss after a second does.
        let t1 = t0 + Duration::from_millis(1500);
        assert_eq!(names.name_at((259, 0), t1).as_deref(), Some("nvme0n1"));

        // A hit is served from the cache until the minute is up, even when the file changed.
        std::fs::write(&file, TEXT.replace("vda", "vdb")).expect("write");
        assert_eq!(
            names
                .name_at((254, 0), t1 + Duration::from_secs(30))
                .as_deref(),
            Some("vda")
        );
        assert_eq!(names.name_at((254, 0), t1 + TTL).as_deref(), Some("vdb"));

        // A failed read keeps the previous table.
        std::fs::remove_file(&file).expect("remove");
        assert_eq!(
            names.name_at((254, 0), t1 + TTL * 3).as_deref(),
            Some("vdb")
        );
    }
}
