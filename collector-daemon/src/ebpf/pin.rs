//! The pin directory under bpffs: the persistent maps pinned by name, the links of the
//! always-attached programs under `links/`, the lock that keeps two daemons (or a daemon and
//! `uninstall`) apart, and their removal. Pins outlive the daemon: a pinned link keeps its
//! program attached, and a pinned map keeps its contents, until the pin is removed
//! (`--unpin-on-exit` or `collector-daemon uninstall`).
use std::{
    fs,
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
};

use aya::programs::links::{FdLink, PinnedLink};

use super::persist::PERSISTENT_MAPS;
use crate::error_chain::{ErrorChain, IfDenied};

/// File name of the pinned `PROCESSES` map inside the pin directory.
pub const PROCESSES_PIN_NAME: &str = "processes";
/// File name of the pinned `NET_COUNTERS` map inside the pin directory.
pub const NET_COUNTERS_PIN_NAME: &str = "net_counters";
/// File name of the pinned `IO_COUNTERS` map inside the pin directory.
pub const IO_COUNTERS_PIN_NAME: &str = "io_counters";
/// Subdirectory of the pin directory holding one pinned link per attached program, named
/// after the program.
pub const LINKS_DIR: &str = "links";

/// Why the pin directory could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    /// The pin directory is outside `/sys/fs/bpf` and not on a bpffs.
    #[error(
        "{} is not on a bpf filesystem; mount one (mount -t bpf bpf DIR) or use --pin-dir under {BPFFS_MOUNT}",
        .dir.display()
    )]
    NotBpffs {
        /// The pin directory.
        dir: PathBuf,
    },
    /// Nothing was mounted at `/sys/fs/bpf`, and mounting bpffs there failed.
    #[error(
        "mounting bpffs at {BPFFS_MOUNT}: {source}{}",
        IfDenied(.source, "mounting needs CAP_SYS_ADMIN: mount bpffs before starting the daemon")
    )]
    MountBpffs {
        /// The error of `mkdir(2)` or `mount(2)`.
        #[source]
        source: std::io::Error,
    },
    /// The pin directory could not be created or opened.
    #[error(
        "creating the pin directory: {source}{}",
        IfDenied(.source, "create it, owned by the daemon's user, before starting the daemon")
    )]
    CreateDir {
        /// The error of `mkdir(2)` or `open(2)`.
        #[source]
        source: std::io::Error,
    },
    /// Another process (a daemon, or `uninstall`) holds the pin directory.
    #[error(
        "another collector-daemon is using this pin directory (stop it first, or give this one its own --pin-dir)"
    )]
    InUse,
    /// `flock(2)` failed for another reason.
    #[error("locking the pin directory: {source}")]
    Lock {
        /// The error of `flock(2)`.
        #[source]
        source: std::io::Error,
    },
    /// A pin could not be removed.
    #[error("removing {}: {source}", .path.display())]
    Remove {
        /// The pin.
        path: PathBuf,
        /// The error of `unlink(2)` or `rmdir(2)`.
        #[source]
        source: std::io::Error,
    },
}

/// The pin directory, locked for as long as this value lives. Dropping it leaves the pins:
/// [`Pins::remove_all`] removes them.
pub struct Pins {
    dir: PathBuf,
    /// The directory, open with an exclusive `flock(2)` on it (bpffs directories take locks
    /// like any other: the lock is the VFS's), released when the descriptor closes.
    _lock: fs::File,
    /// Whether the pinned links run this build's programs and may be kept attached.
    reuse_links: bool,
    /// The programs whose pinned links were kept, with their kernel program ids.
    kept: Vec<(String, u32)>,
    /// Links that could not be pinned, held so that their programs stay attached while the
    /// daemon runs.
    unpinned: Vec<FdLink>,
}

impl Pins {
    /// Opens (creating it, and mounting bpffs, when needed) and locks the pin directory.
    pub fn open(dir: &Path) -> Result<Self, PinError> {
        ensure_bpffs(dir)?;
        fs::create_dir_all(dir.join(LINKS_DIR)).map_err(|source| PinError::CreateDir { source })?;
        let lock = lock_dir(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
            _lock: lock,
            reuse_links: false,
            kept: Vec::new(),
            unpinned: Vec::new(),
        })
    }

    /// The pin directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where `PROCESSES` is pinned.
    pub fn path(&self) -> PathBuf {
        self.dir.join(PROCESSES_PIN_NAME)
    }

    /// Lets [`Self::keep_link`] keep pinned links (they run this build's programs).
    pub fn set_reuse_links(&mut self, reuse: bool) {
        self.reuse_links = reuse;
    }

    /// The programs whose pinned links were kept, with their kernel program ids.
    pub fn kept(&self) -> &[(String, u32)] {
        &self.kept
    }

    fn link_path(&self, program: &str) -> PathBuf {
        self.dir.join(LINKS_DIR).join(program)
    }

    /// Whether `program`'s pinned link is kept as it is (links of this build, and one is
    /// pinned and opens): then the program must not be attached again.
    pub fn keep_link(&mut self, program: &str) -> bool {
        if !self.reuse_links {
            return false;
        }
        let Ok(pinned) = PinnedLink::from_pin(self.link_path(program)) else {
            return false;
        };
        let link = FdLink::from(pinned);
        let program_id = link.info().map_or(0, |info| info.program_id());
        self.kept.push((program.to_owned(), program_id));
        true
    }

    /// Pins `link`, just attached, as `program`'s, replacing (and so detaching) the link an
    /// earlier build pinned there. Until then both ran: what they count in that window is
    /// counted twice. A pin that fails is logged and the link held, so the program stays
    /// attached while the daemon runs.
    pub fn pin_link(&mut self, program: &str, link: FdLink) {
        let path = self.link_path(program);
        if path.exists()
            && let Err(source) = fs::remove_file(&path)
        {
            tracing::warn!(error = %PinError::Remove { path, source }, "the earlier link stays attached");
            self.unpinned.push(link);
            return;
        }
        match link.pin(&path) {
            // The pin holds the link now; our descriptor is not needed.
            Ok(pinned) => drop(pinned),
            Err(e) => {
                tracing::warn!(program, error = %ErrorChain(&e), "could not pin the link: the program detaches when the daemon exits");
            }
        }
    }

    /// Removes the pinned links of programs not in `attached` (programs an earlier build had
    /// and this one does not attach), detaching them.
    pub fn prune_links(&self, attached: &[&str]) {
        let Ok(entries) = fs::read_dir(self.dir.join(LINKS_DIR)) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if attached.iter().any(|p| name == **p) {
                continue;
            }
            tracing::info!(link = %entry.path().display(), "detaching a program this build does not attach");
            if let Err(e) = fs::remove_file(entry.path()) {
                tracing::warn!(link = %entry.path().display(), error = %e, "could not remove a pinned link");
            }
        }
    }

    /// Removes the links (their programs detach once no descriptor holds them) and the maps
    /// (freed once no program or descriptor holds them); then the directories, unless
    /// `keep_dirs` (pins are made again in them, under the lock held on this one).
    pub fn remove_all(&mut self, keep_dirs: bool) -> Result<Removed, PinError> {
        self.unpinned.clear();
        remove_pins(&self.dir, keep_dirs)
    }
}

/// What [`remove_pins`] removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Removed {
    /// Pinned links removed.
    pub links: usize,
    /// Pinned maps removed.
    pub maps: usize,
    /// Whether the directory itself was removed (false: something else is in it, left alone).
    pub dir: bool,
}

/// Removes what a daemon pins in `dir`: every link under `links/` first (so no program
/// writes into a map being removed), then the persistent maps by their names, then (unless
/// `keep_dirs`) the two directories when empty. Files the daemon does not make are left in
/// place.
pub fn remove_pins(dir: &Path, keep_dirs: bool) -> Result<Removed, PinError> {
    let remove =
        |path: PathBuf| fs::remove_file(&path).map_err(|source| PinError::Remove { path, source });
    let mut removed = Removed::default();
    let links = dir.join(LINKS_DIR);
    if let Ok(entries) = fs::read_dir(&links) {
        for entry in entries.flatten() {
            remove(entry.path())?;
            removed.links += 1;
        }
        if !keep_dirs {
            fs::remove_dir(&links).map_err(|source| PinError::Remove {
                path: links.clone(),
                source,
            })?;
        }
    }
    for (_, pin) in PERSISTENT_MAPS {
        let path = dir.join(pin);
        if path.exists() {
            remove(path)?;
            removed.maps += 1;
        }
    }
    removed.dir = !keep_dirs && fs::remove_dir(dir).is_ok();
    Ok(removed)
}

/// Opens `dir` and takes an exclusive `flock(2)` on it without waiting: `InUse` when another
/// process holds it.
pub fn lock_dir(dir: &Path) -> Result<fs::File, PinError> {
    let file = fs::File::open(dir).map_err(|source| PinError::CreateDir { source })?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(file);
    }
    let source = std::io::Error::last_os_error();
    if source.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Err(PinError::InUse)
    } else {
        Err(PinError::Lock { source })
    }
}

/// The conventional bpffs mount point.
const BPFFS_MOUNT: &str = "/sys/fs/bpf";
/// `BPF_FS_MAGIC` from `include/uapi/linux/magic.h`.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// Pins need a bpffs. When the pin directory is under `/sys/fs/bpf` and nothing is mounted
/// there (tracefs and bpffs are not mounted at boot on every distribution), mount it, as
/// bpftool and systemd do; elsewhere, require that the caller mounted one.
fn ensure_bpffs(dir: &Path) -> Result<(), PinError> {
    let mount_point = Path::new(BPFFS_MOUNT);
    if is_bpffs(mount_point) || !dir.starts_with(mount_point) {
        return if dir.starts_with(mount_point) || nearest_existing_is_bpffs(dir) {
            Ok(())
        } else {
            Err(PinError::NotBpffs {
                dir: dir.to_owned(),
            })
        };
    }
    tracing::info!("mounting bpffs at {BPFFS_MOUNT}");
    fs::create_dir_all(mount_point).map_err(|source| PinError::MountBpffs { source })?;
    // SAFETY: valid NUL-terminated strings; no data argument.
    let rc = unsafe {
        libc::mount(
            c"bpf".as_ptr(),
            c"/sys/fs/bpf".as_ptr(),
            c"bpf".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(PinError::MountBpffs {
            source: std::io::Error::last_os_error(),
        })
    }
}

fn is_bpffs(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt as _;
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `statfs` is plain old data, for which all zeroes is a valid value.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c_path` is NUL-terminated and `stat` is a valid, writable `statfs`.
    let rc = unsafe { libc::statfs(c_path.as_ptr(), &raw mut stat) };
    rc == 0 && stat.f_type == BPF_FS_MAGIC
}

fn nearest_existing_is_bpffs(dir: &Path) -> bool {
    dir.ancestors().find(|p| p.exists()).is_some_and(is_bpffs)
}
