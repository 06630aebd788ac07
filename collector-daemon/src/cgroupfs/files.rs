//! Held descriptors for cgroupfs files. Opening a cgroup file costs a path walk, a kernfs open
//! and a `seq_file` set-up; `pread` at offset 0 on a descriptor kept open skips all three.
//! kernfs regenerates a `seq_file`'s text whenever it is read from offset 0, so a held
//! descriptor always returns current values.
//!
//! When a cgroup is removed, reads on its held descriptors fail with ENODEV (kernfs deactivates
//! the node) and a cgroup recreated under the same path has new nodes; so on ENODEV, ENOENT or
//! ESTALE the file is reopened by path once, and the error is returned if that fails too.

use std::{
    ffi::OsStr,
    fs::File,
    io,
    os::unix::{ffi::OsStrExt as _, fs::FileExt as _},
    path::Path,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use crate::fast_map::FastMap;

/// Default bound on held descriptors: about 1,300 containers at the 24 files one container
/// holds on a hybrid host (a v2 host needs fewer).
pub const DEFAULT_MAX_OPEN: usize = 32_768;

/// Largest file read, a guard against a runaway buffer: cgroup stats files are a few KiB at most
/// (an `io.stat` of 1,000 devices is ~70 KiB).
const MAX_FILE: usize = 1 << 20;

/// Open descriptors per file, grouped by directory; least recently used directories are closed
/// first when the bound is reached. Safe to share between threads: reads happen outside the lock.
#[derive(Debug)]
pub struct FileCache {
    state: Mutex<State>,
    max_open: usize,
}

/// A lookup is the cache's hot path (a full collection of 1,000 containers makes 17,000), so
/// it does no more than it must: directories are keyed by their path's bytes (hashing and
/// comparing a `Path` walks its components), and it reads no clock (see [`Marks`]).
#[derive(Debug, Default)]
struct State {
    dirs: FastMap<Box<[u8]>, DirFiles>,
    /// Descriptors held, over all directories.
    open: usize,
    /// Advances on every lookup: the recency order for eviction.
    clock: u64,
    /// When idle directories were last looked for (a full pass over the directories: not on
    /// every insert into a full cache).
    idle_sweep: Option<Instant>,
    marks: Marks,
}

#[derive(Debug)]
struct DirFiles {
    /// `State::clock` at the last read: the recency order, and (through [`Marks`]) whether
    /// the directory went unread for `IDLE_EVICTION`.
    last_used: u64,
    /// A cgroup directory has a dozen files of interest at most: a list beats a map here.
    files: Vec<(Box<str>, Arc<File>)>,
}

/// Which `State::clock` values were current when: (instant, clock) pairs at least
/// `MARK_INTERVAL` apart, recorded on inserts and every `MARK_EVERY` lookups. A directory
/// whose `last_used` is below the clock of a mark older than `IDLE_EVICTION` was not read
/// since then: idle, without a clock read per lookup.
#[derive(Debug, Default)]
struct Marks(std::collections::VecDeque<(Instant, u64)>);

/// Lookups between two chances to record a mark.
const MARK_EVERY: u64 = 1_024;
/// Least time between two marks.
const MARK_INTERVAL: Duration = Duration::from_secs(10);

impl Marks {
    fn record(&mut self, clock: u64) {
        let now = Instant::now();
        if self
            .0
            .back()
            .is_some_and(|(at, _)| now.duration_since(*at) < MARK_INTERVAL)
        {
            return;
        }
        self.0.push_back((now, clock));
        // Of the marks older than IDLE_EVICTION only the newest is of use.
        while self
            .0
            .get(1)
            .is_some_and(|(at, _)| now.duration_since(*at) >= IDLE_EVICTION)
        {
            self.0.pop_front();
        }
    }

    /// Directories last read before this clock value were not read for `IDLE_EVICTION`
    /// (0: none is known to be idle).
    fn idle_before(&self) -> u64 {
        self.0
            .iter()
            .take_while(|(at, _)| at.elapsed() >= IDLE_EVICTION)
            .last()
            .map_or(0, |(_, clock)| *clock)
    }
}

/// The key of `dir` in `State::dirs`.
fn key(dir: &Path) -> &[u8] {
    dir.as_os_str().as_bytes()
}

impl FileCache {
    /// A cache holding at most `max_open` descriptors (0: none, every read opens its file),
    /// and no more than the process's soft `RLIMIT_NOFILE` leaves after a reserve (see
    /// [`descriptor_budget`]).
    #[must_use]
    pub fn new(max_open: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            max_open: max_open.min(descriptor_budget(nofile_soft_limit())),
        }
    }

    /// The bound actually used.
    #[must_use]
    pub fn max_open(&self) -> usize {
        self.max_open
    }

    /// Descriptors held now.
    #[must_use]
    pub fn open_count(&self) -> usize {
        self.lock().open
    }

    /// Whether a descriptor for `dir/name` is held.
    #[must_use]
    pub fn holds(&self, dir: &Path, name: &str) -> bool {
        self.lock()
            .dirs
            .get(key(dir))
            .is_some_and(|d| d.files.iter().any(|(n, _)| &**n == name))
    }

    /// The inode of the file held for `dir/name` (tests: tells a reopened descriptor apart).
    #[cfg(test)]
    pub(crate) fn held_inode(&self, dir: &Path, name: &str) -> Option<u64> {
        use std::os::unix::fs::MetadataExt as _;
        let [file] = self.lookup(dir, [name]);
        file?.metadata().ok().map(|m| m.ino())
    }

    /// Reads the whole of `dir/name` into `buf` (grown as needed) and returns the bytes read.
    ///
    /// # Errors
    /// The open or read error, after one reopen when a held descriptor went stale.
    pub fn read<'b>(&self, dir: &Path, name: &str, buf: &'b mut Vec<u8>) -> io::Result<&'b [u8]> {
        let [held] = self.lookup(dir, [name]);
        self.read_held(dir, name, held, buf)
    }

    /// Reads each of `names` in `dir` in turn, as [`Self::read`] would, handing each result
    /// to `each` (with the name's index): the directory is looked up once for all of them.
    pub fn read_each<const N: usize>(
        &self,
        dir: &Path,
        names: [&str; N],
        buf: &mut Vec<u8>,
        mut each: impl FnMut(usize, io::Result<&[u8]>),
    ) {
        let held = self.lookup(dir, names);
        for (i, (name, file)) in names.into_iter().zip(held).enumerate() {
            each(i, self.read_held(dir, name, file, buf));
        }
    }

    /// Reads `dir/name` through `held` (its held descriptor, if any), reopening it when stale.
    fn read_held<'b>(
        &self,
        dir: &Path,
        name: &str,
        held: Option<Arc<File>>,
        buf: &'b mut Vec<u8>,
    ) -> io::Result<&'b [u8]> {
        if let Some(file) = held {
            match read_all(&file, buf) {
                Ok(n) => return Ok(&buf[..n]),
                Err(e) if is_stale(&e) => self.remove(dir, name, &file),
                Err(e) => return Err(e),
            }
        }
        let file = self.open(&dir.join(name))?;
        let n = read_all(&file, buf)?;
        let file = Arc::new(file);
        self.insert(dir, name, Arc::clone(&file));
        // The cgroup may have been removed between the open and the insert, and its
        // descriptors let go (`forget`) in between: then this one would be held for a
        // removed cgroup until idle eviction. Removal (rmdir) takes the directory away
        // before anyone can learn of it and call `forget`, so a directory still there
        // now means a later `forget` will see this descriptor.
        if !dir.exists() {
            self.remove(dir, name, &file);
        }
        Ok(&buf[..n])
    }

    /// Closes the descriptors of files in `dir` and in directories below it.
    pub fn forget(&self, dir: &Path) {
        let mut state = self.lock();
        let mut closed = 0;
        state.dirs.retain(|d, files| {
            let keep = !Path::new(OsStr::from_bytes(d)).starts_with(dir);
            if !keep {
                closed += files.files.len();
            }
            keep
        });
        state.open -= closed;
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing in State can be left half-updated by a panic that matters: keep serving.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The held descriptors of `names` in `dir` (one directory lookup for all).
    fn lookup<const N: usize>(&self, dir: &Path, names: [&str; N]) -> [Option<Arc<File>>; N] {
        let mut state = self.lock();
        state.clock += 1;
        let now = state.clock;
        if now.is_multiple_of(MARK_EVERY) {
            state.marks.record(now);
        }
        let Some(files) = state.dirs.get_mut(key(dir)) else {
            return [const { None }; N];
        };
        files.last_used = now;
        names.map(|name| {
            files
                .files
                .iter()
                .find(|(n, _)| &**n == name)
                .map(|(_, f)| Arc::clone(f))
        })
    }

    fn remove(&self, dir: &Path, name: &str, old: &Arc<File>) {
        let mut state = self.lock();
        let Some(files) = state.dirs.get_mut(key(dir)) else {
            return;
        };
        let before = files.files.len();
        // Another thread may have reopened it already: remove only the stale descriptor.
        files
            .files
            .retain(|(n, f)| !(&**n == name && Arc::ptr_eq(f, old)));
        let removed = before - files.files.len();
        if files.files.is_empty() {
            state.dirs.remove(key(dir));
        }
        state.open -= removed;
    }

    fn open(&self, path: &Path) -> io::Result<File> {
        match File::open(path) {
            Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                // Out of descriptors: give back the older half of ours and try once more.
                let mut state = self.lock();
                let keep = state.open / 2;
                evict(&mut state, keep);
                drop(state);
                File::open(path)
            }
            other => other,
        }
    }

    fn insert(&self, dir: &Path, name: &str, file: Arc<File>) {
        let mut state = self.lock();
        if state.open >= self.max_open {
            // Full. A collection reads every container's files in the same order each time,
            // and evicting the least recently used would then close, one pass after the
            // other, exactly the files read next (every read a reopen). So only directories
            // idle for IDLE_EVICTION make room; if none is, this file is read uncached and
            // the descriptors held stay useful. Removed cgroups are let go by `forget`.
            evict_idle(&mut state);
            if state.open >= self.max_open {
                return;
            }
        }
        state.clock += 1;
        let now = state.clock;
        state.marks.record(now);
        let files = state
            .dirs
            .entry(key(dir).into())
            .or_insert_with(|| DirFiles {
                last_used: now,
                files: Vec::new(),
            });
        files.last_used = now;
        if let Some(slot) = files.files.iter_mut().find(|(n, _)| &**n == name) {
            // A concurrent reader inserted it first; keep one descriptor.
            slot.1 = file;
        } else {
            files.files.push((name.into(), file));
            state.open += 1;
        }
    }
}

/// How long a directory's descriptors may go unread before they make room for others.
const IDLE_EVICTION: Duration = Duration::from_mins(5);
/// How often a full cache looks for idle directories.
const IDLE_SWEEP_INTERVAL: Duration = Duration::from_secs(10);

/// Closes the directories not read for `IDLE_EVICTION`; looks at most once per
/// `IDLE_SWEEP_INTERVAL`.
fn evict_idle(state: &mut State) {
    if state
        .idle_sweep
        .is_some_and(|at| at.elapsed() < IDLE_SWEEP_INTERVAL)
    {
        return;
    }
    state.idle_sweep = Some(Instant::now());
    let idle_before = state.marks.idle_before();
    let mut closed = 0;
    state.dirs.retain(|_, files| {
        let keep = files.last_used >= idle_before;
        if !keep {
            closed += files.files.len();
        }
        keep
    });
    state.open -= closed;
}

/// Closes whole directories, least recently used first, until at most `keep` descriptors remain.
fn evict(state: &mut State, keep: usize) {
    if state.open <= keep {
        return;
    }
    let mut by_age: Vec<(u64, &[u8], usize)> = state
        .dirs
        .iter()
        .map(|(d, f)| (f.last_used, &**d, f.files.len()))
        .collect();
    by_age.sort_unstable_by_key(|(t, _, _)| *t);
    let mut open = state.open;
    let mut victims = Vec::new();
    for (_, dir, n) in by_age {
        if open <= keep {
            break;
        }
        open -= n;
        victims.push(dir.to_vec());
    }
    for dir in victims {
        state.dirs.remove(&*dir);
    }
    state.open = open;
}

/// Reads from offset 0 to the end. A read shorter than the space offered is the end: kernfs's
/// `seq_read_iter` fills the caller's buffer until the records run out, and regular files
/// (fixtures) only return short at end of file; this saves the extra read that would return 0.
fn read_all(file: &File, buf: &mut Vec<u8>) -> io::Result<usize> {
    if buf.len() < 4096 {
        buf.resize(4096, 0);
    }
    let mut n = 0;
    loop {
        if n == buf.len() {
            if buf.len() >= MAX_FILE {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "file larger than 1 MiB: not a cgroup stats file",
                ));
            }
            buf.resize(buf.len() * 2, 0);
        }
        let offset = u64::try_from(n).expect("usize fits u64");
        match file.read_at(&mut buf[n..], offset) {
            Ok(0) => return Ok(n),
            Ok(k) => {
                n += k;
                if n < buf.len() {
                    return Ok(n);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Errors after which a held descriptor is worth reopening by path.
fn is_stale(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENODEV | libc::ENOENT | libc::ESTALE)
    )
}

/// How many descriptors the cache may hold under a soft `RLIMIT_NOFILE` of `limit`: all but a
/// reserve for what else the daemon opens (client sockets, BPF maps and links, the netns and
/// `/proc` files it opens for a moment). The reserve is an eighth of the limit, and at least
/// 2,048 or half the limit, whichever is less: with a small limit (1,024 is the usual
/// default) the cache gets half, as sockets matter more than a faster scrape; with 20,000 it
/// gets 17,500, which is 1,000 containers at 16–17 files each on a hybrid host.
fn descriptor_budget(limit: usize) -> usize {
    let reserve = (limit / 8).max(RESERVED_DESCRIPTORS.min(limit / 2));
    limit.saturating_sub(reserve)
}

/// The reserve's floor: see [`descriptor_budget`].
const RESERVED_DESCRIPTORS: usize = 2_048;

fn nofile_soft_limit() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct we pass; no other preconditions.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) };
    if rc != 0 {
        return 1024;
    }
    usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn marks_tell_which_directories_went_unread_long_enough() {
        let ago = |secs: u64| {
            Instant::now()
                .checked_sub(Duration::from_secs(secs))
                .expect("the clock started long enough ago")
        };
        let idle = IDLE_EVICTION.as_secs();
        let mut marks = Marks::default();
        assert_eq!(marks.idle_before(), 0, "no mark: nothing known to be idle");
        marks
            .0
            .extend([(ago(idle + 60), 100), (ago(idle + 5), 200), (ago(30), 300)]);
        // Read before clock 200 (over IDLE_EVICTION ago): idle; at or after it: not known.
        assert_eq!(marks.idle_before(), 200);
        // A new mark drops the marks older than the newest one past IDLE_EVICTION.
        marks.record(400);
        let clocks: Vec<u64> = marks.0.iter().map(|(_, c)| *c).collect();
        assert_eq!(clocks, [200, 300, 400]);
        // Marks closer together than MARK_INTERVAL are not recorded.
        marks.record(401);
        assert_eq!(marks.0.len(), 3);
    }

    #[test]
    fn descriptor_budget_keeps_a_reserve() {
        assert_eq!(descriptor_budget(1_024), 512);
        assert_eq!(descriptor_budget(4_096), 2_048);
        assert_eq!(descriptor_budget(20_000), 17_500);
        assert_eq!(descriptor_budget(65_536), 57_344);
        assert_eq!(descriptor_budget(1), 1);
        assert_eq!(descriptor_budget(0), 0);
    }

    #[test]
    fn reads_current_contents_through_a_held_descriptor() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = FileCache::new(16);
        std::fs::write(dir.path().join("a"), "one\n").expect("write");
        let mut buf = Vec::new();
        assert_eq!(
            cache.read(dir.path(), "a", &mut buf).expect("read"),
            b"one\n"
        );
        assert!(cache.holds(dir.path(), "a"));
        // Rewritten in place (same inode): the held descriptor sees the new text.
        std::fs::write(dir.path().join("a"), "two two\n").expect("write");
        assert_eq!(
            cache.read(dir.path(), "a", &mut buf).expect("read"),
            b"two two\n"
        );
        assert_eq!(cache.open_count(), 1);
    }

    #[test]
    fn a_cache_of_zero_holds_nothing_and_still_reads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = FileCache::new(0);
        assert_eq!(cache.max_open(), 0);
        let mut buf = Vec::new();
        for text in ["one\n", "two\n"] {
            std::fs::write(dir.path().join("a"), text).expect("write");
            assert_eq!(
                cache.read(dir.path(), "a", &mut buf).expect("read"),
                text.as_bytes()
            );
            assert_eq!(cache.open_count(), 0);
            assert!(!cache.holds(dir.path(), "a"));
        }
    }

    #[test]
    fn read_each_reads_every_file_of_a_directory_and_holds_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a"), "one").expect("write");
        std::fs::write(dir.path().join("c"), "three").expect("write");
        let cache = FileCache::new(16);
        let mut buf = Vec::new();
        for pass in 0..2 {
            let mut got = Vec::new();
            cache.read_each(dir.path(), ["a", "b", "c"], &mut buf, |i, read| {
                got.push((i, read.map(<[u8]>::to_vec).map_err(|e| e.kind())));
            });
            assert_eq!(
                got,
                [
                    (0, Ok(b"one".to_vec())),
                    (1, Err(io::ErrorKind::NotFound)),
                    (2, Ok(b"three".to_vec())),
                ],
                "pass {pass}"
            );
            assert_eq!(cache.open_count(), 2);
        }
    }

    #[test]
    fn large_files_are_read_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = "x".repeat(20_000);
        std::fs::write(dir.path().join("big"), &text).expect("write");
        let cache = FileCache::new(16);
        let mut buf = Vec::new();
        assert_eq!(
            cache.read(dir.path(), "big", &mut buf).expect("read"),
            text.as_bytes()
        );
    }

    #[test]
    fn missing_files_are_errors_and_not_held() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = FileCache::new(16);
        let err = cache
            .read(dir.path(), "nope", &mut Vec::new())
            .expect_err("missing");
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert_eq!(cache.open_count(), 0);
    }

    #[test]
    fn forget_closes_a_directory_and_its_subdirectories() {
        let root = tempfile::tempdir().expect("tempdir");
        let a = root.path().join("a");
        let sub = a.join("sub");
        let b = root.path().join("ab");
        for d in [&a, &sub, &b] {
            std::fs::create_dir_all(d).expect("mkdir");
            std::fs::write(d.join("f"), "1").expect("write");
        }
        let cache = FileCache::new(16);
        let mut buf = Vec::new();
        for d in [&a, &sub, &b] {
            cache.read(d, "f", &mut buf).expect("read");
        }
        assert_eq!(cache.open_count(), 3);
        cache.forget(&a);
        assert_eq!(cache.open_count(), 1);
        // "ab" shares a string prefix with "a" but is not below it.
        assert!(cache.holds(&b, "f"));
        assert!(!cache.holds(&sub, "f"));
    }

    #[test]
    fn a_full_cache_keeps_what_it_holds_and_reads_the_rest_uncached() {
        let root = tempfile::tempdir().expect("tempdir");
        let cache = FileCache::new(8);
        let mut buf = Vec::new();
        let dirs: Vec<PathBuf> = (0..10).map(|i| root.path().join(i.to_string())).collect();
        for d in &dirs {
            std::fs::create_dir(d).expect("mkdir");
            std::fs::write(d.join("f"), "1").expect("write");
        }
        // Three passes in the same order, as collections do: the first eight stay held (no
        // pass evicts what the next one reads first), the last two are read each time.
        for pass in 0..3 {
            for (i, d) in dirs.iter().enumerate() {
                std::fs::write(d.join("f"), format!("{pass}{i}")).expect("write");
                let read = cache.read(d, "f", &mut buf).expect("read").to_vec();
                assert_eq!(
                    read,
                    format!("{pass}{i}").into_bytes(),
                    "pass {pass} dir {i}"
                );
                assert!(cache.open_count() <= 8);
            }
            for d in &dirs[..8] {
                assert!(cache.holds(d, "f"), "pass {pass}: {} not held", d.display());
            }
            assert!(!cache.holds(&dirs[8], "f") && !cache.holds(&dirs[9], "f"));
        }
        // Room made by forgetting a directory goes to the next file read.
        cache.forget(&dirs[0]);
        cache.read(&dirs[9], "f", &mut buf).expect("read");
        assert!(cache.holds(&dirs[9], "f"));
    }

    #[test]
    fn forgotten_files_are_reopened_by_path() {
        // On a regular filesystem a held descriptor of a deleted file still reads the old inode,
        // where cgroupfs returns ENODEV: the reopen on ENODEV is covered by the real-cgroup test
        // in `reader`. Here: after forget, a missing file is an error, a new one is read.
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = FileCache::new(8);
        let mut buf = Vec::new();
        std::fs::write(dir.path().join("f"), "1").expect("write");
        cache.read(dir.path(), "f", &mut buf).expect("read");
        cache.forget(dir.path());
        std::fs::remove_file(dir.path().join("f")).expect("rm");
        assert!(cache.read(dir.path(), "f", &mut buf).is_err());
        std::fs::write(dir.path().join("f"), "2").expect("write");
        assert_eq!(cache.read(dir.path(), "f", &mut buf).expect("read"), b"2");
    }
}
