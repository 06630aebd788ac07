//! One read of one cgroup ([`Pass`]): the files it reads through the reader's held
//! descriptors, how a missing file is told from a failed one, which controllers the v2
//! directory has, and the pressure (PSI) totals every section ends with.

use std::path::{Path, PathBuf};

use super::CgroupStatsReader;
use crate::cgroupfs::{
    dirs::{CgroupDirs, v2_values_in},
    kernel_values::{KernelCgroupValues, V1Values, V2Values},
    psi::Pressure,
};

/// The PSI files of a v2 directory (`Documentation/accounting/psi.rst`).
const PRESSURE_FILES: [&str; 3] = ["cpu.pressure", "memory.pressure", "io.pressure"];

/// A pressure file's totals in ns: `some` and `full` (each None when absent).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Stall {
    pub(super) some: Option<u64>,
    pub(super) full: Option<u64>,
}

impl Stall {
    /// (`some`, `full`).
    pub(super) fn totals(self) -> (Option<u64>, Option<u64>) {
        (self.some, self.full)
    }
}

impl From<Pressure> for Stall {
    fn from(p: Pressure) -> Self {
        Self {
            some: p.some_total_ns(),
            full: p.full_total_ns(),
        }
    }
}

/// Parses what reading `dir/name` gave; a missing file is [`Miss::Absent`], any other
/// failure (logged at debug) [`Miss::Failed`].
pub(super) fn parse_read<T>(
    dir: &Path,
    name: &str,
    read: std::io::Result<&[u8]>,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Result<T, Miss> {
    let bytes = match read {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Miss::Absent),
        Err(error) => {
            tracing::debug!(path = %dir.join(name).display(), %error, "cannot read cgroup file");
            return Err(Miss::Failed);
        }
    };
    let Ok(text) = std::str::from_utf8(bytes) else {
        tracing::debug!(path = %dir.join(name).display(), "cgroup file is not UTF-8");
        return Err(Miss::Failed);
    };
    parse(text).ok_or_else(|| {
        tracing::debug!(path = %dir.join(name).display(), "malformed cgroup file");
        Miss::Failed
    })
}

/// Why a file gave no value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Miss {
    /// ENOENT: the file does not exist (controller off, older kernel, cgroup gone).
    Absent,
    /// Any other read error, or malformed contents.
    Failed,
}

/// Controllers listed in a v2 `cgroup.controllers`, as bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Controllers(u8);

impl Controllers {
    pub(super) const CPU: u8 = 1;
    pub(super) const CPUSET: u8 = 2;
    pub(super) const IO: u8 = 4;
    pub(super) const MEMORY: u8 = 8;
    pub(super) const PIDS: u8 = 16;
    const ALL: Self = Self(u8::MAX);

    fn parse(text: &str) -> Self {
        Self(
            text.split_ascii_whitespace()
                .map(|c| match c {
                    "cpu" => Self::CPU,
                    "cpuset" => Self::CPUSET,
                    "io" => Self::IO,
                    "memory" => Self::MEMORY,
                    "pids" => Self::PIDS,
                    _ => 0,
                })
                .fold(0, |a, b| a | b),
        )
    }
}

struct V2Dir<'d> {
    dir: &'d Path,
    /// Read on first need; [`Controllers::ALL`] when `cgroup.controllers` could not be read,
    /// so that every controller is tried (missing files then give None).
    controllers: Option<Controllers>,
}

/// One `read()`: the reader, a buffer reused for every file, and what was learnt on the way.
pub(super) struct Pass<'a> {
    pub(super) r: &'a CgroupStatsReader,
    pub(super) dirs: &'a CgroupDirs,
    /// The v1 values a kernel cgroup walk gave for the cgroup, read instead of their files.
    pub(super) kernel: V1Values,
    /// The v2 values a kernel walk of the v2 hierarchy gave for the cgroup, read instead of
    /// their files.
    pub(super) kernel_v2: V2Values,
    pub(super) buf: Vec<u8>,
    v2: Option<V2Dir<'a>>,
    /// The PSI ("some", "full") totals of [`PRESSURE_FILES`] in ns, read together on first
    /// need.
    pressures: Option<[Stall; 3]>,
    /// The host's online CPUs, read on first need (`host_cpus_read`; `reader/cpu.rs`).
    pub(super) host_cpus: Option<u32>,
    pub(super) host_cpus_read: bool,
}

impl<'a> Pass<'a> {
    /// A read of `dirs` by `r`, taking the v1 values the kernel cgroup walk `kernel` has for
    /// them.
    pub(super) fn new(
        r: &'a CgroupStatsReader,
        dirs: &'a CgroupDirs,
        kernel: Option<&KernelCgroupValues>,
    ) -> Self {
        Self {
            r,
            dirs,
            kernel: kernel.map_or_else(V1Values::default, |walk| dirs.v1_keys.values_in(walk)),
            kernel_v2: kernel
                .map_or_else(V2Values::default, |walk| v2_values_in(dirs.v2_key, walk)),
            buf: Vec::new(),
            v2: dirs.v2.as_deref().map(|dir| V2Dir {
                dir,
                controllers: None,
            }),
            pressures: None,
            host_cpus: None,
            host_cpus_read: false,
        }
    }

    /// Reads `dir/name` and parses it.
    pub(super) fn get<T>(
        &mut self,
        dir: &Path,
        name: &'static str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Result<T, Miss> {
        let read = self.r.files.read(dir, name, &mut self.buf);
        parse_read(dir, name, read, parse)
    }

    /// As [`Self::get`] for a file that some kernels lack: when it is missing although
    /// `sibling_ok` (another file of the same controller in the same directory was read), the
    /// kernel does not provide it, and it is skipped for a while.
    pub(super) fn optional<T>(
        &mut self,
        dir: &Path,
        name: &'static str,
        sibling_ok: bool,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Result<T, Miss> {
        if self.r.is_absent(name) {
            return Err(Miss::Absent);
        }
        let got = self.get(dir, name, parse);
        if matches!(got, Err(Miss::Absent)) && sibling_ok {
            self.r.mark_absent(name);
        }
        got
    }

    /// Whether the v2 directory has `controller` enabled (`cgroup.controllers` lists it).
    pub(super) fn v2_has(&mut self, controller: u8) -> Option<&'a Path> {
        let dir = self.v2.as_ref()?.dir;
        let known = if let Some(known) = self.v2.as_ref()?.controllers {
            known
        } else {
            let known = self
                .get(dir, "cgroup.controllers", |t| Some(Controllers::parse(t)))
                .unwrap_or(Controllers::ALL);
            if let Some(v2) = self.v2.as_mut() {
                v2.controllers = Some(known);
            }
            known
        };
        (known.0 & controller != 0).then_some(dir)
    }

    /// The v2 directory when `controller` is enabled for it. When the kernel walk recorded
    /// the cgroup (`walked`: its record has the controller's values), the record says so and
    /// `cgroup.controllers` is not read; else [`Self::v2_has`].
    pub(super) fn v2_enabled(&mut self, walked: bool, controller: u8) -> Option<&'a Path> {
        if walked {
            self.v2_dir()
        } else {
            self.v2_has(controller)
        }
    }

    /// The cgroup's v2 directory, controllers or not.
    pub(super) fn v2_dir(&self) -> Option<&'a Path> {
        self.v2.as_ref().map(|v| v.dir)
    }

    /// The v1 directory of `controller`, if the cgroup has one.
    pub(super) fn v1(&self, controller: &str) -> Option<&'a Path> {
        self.dirs.v1.get(controller).map(PathBuf::as_path)
    }

    /// PSI totals of `name` (one of [`PRESSURE_FILES`]) in ns, from the v2 directory: as
    /// [`Self::read_pressures`] read them, else read now.
    pub(super) fn pressure(&mut self, name: &'static str) -> Stall {
        if let (Some(totals), Some(index)) = (
            self.pressures,
            PRESSURE_FILES.iter().position(|n| *n == name),
        ) {
            return totals[index];
        }
        let Some(dir) = self.v2_dir().filter(|_| self.r.psi) else {
            return Stall::default();
        };
        self.get(dir, name, |t| Some(Pressure::parse(t)))
            .map(Stall::from)
            .unwrap_or_default()
    }

    /// Reads the three PSI files together (one descriptor lookup), for [`Self::pressure`].
    pub(super) fn read_pressures(&mut self) {
        let Some(dir) = self.v2_dir().filter(|_| self.r.psi) else {
            return;
        };
        let mut totals = [Stall::default(); 3];
        self.r
            .files
            .read_each(dir, PRESSURE_FILES, &mut self.buf, |i, read| {
                totals[i] = parse_read(dir, PRESSURE_FILES[i], read, |t| Some(Pressure::parse(t)))
                    .map(Stall::from)
                    .unwrap_or_default();
            });
        self.pressures = Some(totals);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controllers_are_bits_of_the_listed_names() {
        let listed = Controllers::parse("cpuset cpu io memory hugetlb pids rdma misc\n");
        let all = Controllers::CPU
            | Controllers::CPUSET
            | Controllers::IO
            | Controllers::MEMORY
            | Controllers::PIDS;
        assert_eq!(listed, Controllers(all));
        assert_eq!(
            Controllers::parse("memory pids"),
            Controllers(Controllers::MEMORY | Controllers::PIDS)
        );
        assert_eq!(Controllers::parse(""), Controllers(0));
    }

    #[test]
    fn a_missing_file_is_absent_and_a_bad_one_failed() {
        let dir = Path::new("/nowhere");
        let missing = Err(std::io::Error::from(std::io::ErrorKind::NotFound));
        assert_eq!(
            parse_read(dir, "f", missing, |_| Some(1)),
            Err(Miss::Absent)
        );
        let denied = Err(std::io::Error::from(std::io::ErrorKind::PermissionDenied));
        assert_eq!(parse_read(dir, "f", denied, |_| Some(1)), Err(Miss::Failed));
        assert_eq!(
            parse_read(dir, "f", Ok(&[0xff][..]), |_| Some(1)),
            Err(Miss::Failed)
        );
        assert_eq!(
            parse_read(dir, "f", Ok(b"x"), |_| None::<u8>),
            Err(Miss::Failed)
        );
        assert_eq!(
            parse_read(dir, "f", Ok(b"7"), |t| t.parse::<u8>().ok()),
            Ok(7)
        );
    }
}
