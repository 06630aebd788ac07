//! Pinning maps under bpffs: the pin directory, replacing stale pins, mounting bpffs where
//! it is conventionally expected, and unpinning on drop.
use std::{
    fs,
    path::{Path, PathBuf},
};

use aya::Ebpf;
use collector_common::names::PROCESSES_MAP;

use super::loader::LoadError;
use crate::error_chain::{ErrorChain, IfDenied};

/// File name of the pinned `PROCESSES` map inside the pin directory.
pub const PROCESSES_PIN_NAME: &str = "processes";
/// File name of the pinned `NET_COUNTERS` map inside the pin directory.
pub const NET_COUNTERS_PIN_NAME: &str = "net_counters";
/// File name of the pinned `IO_COUNTERS` map inside the pin directory.
pub const IO_COUNTERS_PIN_NAME: &str = "io_counters";

/// Why a map could not be pinned.
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
    /// The pin directory could not be created.
    #[error(
        "creating the pin directory: {source}{}",
        IfDenied(.source, "create it, owned by the daemon's user, before starting the daemon")
    )]
    CreateDir {
        /// The error of `mkdir(2)`.
        #[source]
        source: std::io::Error,
    },
    /// A stale pin could not be removed.
    #[error("removing the stale pin: {source}")]
    RemoveStale {
        /// The error of `unlink(2)`.
        #[source]
        source: std::io::Error,
    },
    /// The kernel refused the pin.
    #[error("{}", ErrorChain(.source))]
    Pin {
        /// aya's error.
        #[source]
        source: aya::pin::PinError,
    },
}

/// Pinned map files, removed on drop (then their directory, when we created it and it is
/// empty), so other programs never read a map nobody updates any more.
pub struct PinnedMaps {
    /// The pin directory.
    dir: PathBuf,
    /// Pin paths in the order they were made; the first is `PROCESSES`'.
    paths: Vec<PathBuf>,
    /// Whether we created `dir` (then it is removed after the pins, when empty).
    created_dir: bool,
}

impl PinnedMaps {
    /// Where `PROCESSES` is pinned.
    pub fn path(&self) -> &Path {
        &self.paths[0]
    }

    /// Every pin, `PROCESSES` first.
    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }
}

impl Drop for PinnedMaps {
    fn drop(&mut self) {
        for path in self.paths.iter().rev() {
            if let Err(e) = fs::remove_file(path) {
                tracing::warn!(path = %path.display(), error = %e, "could not unpin map");
            }
        }
        if self.created_dir {
            // Fails (harmlessly) when something else was put there meanwhile.
            let _ = fs::remove_dir(&self.dir);
        }
    }
}

/// Pins `PROCESSES` at `<dir>/processes`, creating the directory (and mounting bpffs) when
/// needed.
pub(super) fn pin_processes(ebpf: &Ebpf, dir: &Path) -> Result<PinnedMaps, LoadError> {
    let pin_err = |source| LoadError::Pin {
        map: PROCESSES_MAP,
        path: dir.join(PROCESSES_PIN_NAME),
        source,
    };
    ensure_bpffs(dir).map_err(pin_err)?;
    let created_dir = !dir.exists();
    if created_dir {
        fs::create_dir_all(dir).map_err(|source| pin_err(PinError::CreateDir { source }))?;
    }
    let mut pins = PinnedMaps {
        dir: dir.to_owned(),
        paths: Vec::new(),
        created_dir,
    };
    pins.add(ebpf, PROCESSES_MAP, PROCESSES_PIN_NAME)?;
    Ok(pins)
}

impl PinnedMaps {
    /// Pins `map` at `<dir>/<name>`. A pin left by an earlier run that did not stop cleanly
    /// is replaced: its contents are stale, and the path is ours.
    pub(super) fn add(
        &mut self,
        ebpf: &Ebpf,
        map: &'static str,
        name: &str,
    ) -> Result<(), LoadError> {
        let path = self.dir.join(name);
        let pin_err = |source| LoadError::Pin {
            map,
            path: path.clone(),
            source,
        };
        if path.exists() {
            tracing::info!(path = %path.display(), "replacing a stale pinned map");
            fs::remove_file(&path).map_err(|source| pin_err(PinError::RemoveStale { source }))?;
        }
        let handle = ebpf.map(map).ok_or(LoadError::MissingMap { map })?;
        handle
            .pin(&path)
            .map_err(|source| pin_err(PinError::Pin { source }))?;
        self.paths.push(path);
        Ok(())
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
