//! Serving the API on a unix socket (mode 0660, optional group) and metrics on TCP.
//!
//! The socket file is ours: a stale one (nothing listening) is replaced, a live one (another
//! daemon answers) is an error, anything that is not a socket is never removed.
use std::{
    ffi::CString,
    fs, io,
    os::unix::fs::{FileTypeExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
};

use axum::{extract::connect_info::Connected, serve::IncomingStream};
use tokio::net::{TcpListener, UnixListener};

use crate::error_chain::IfDenied;

/// Socket file mode: owner and group may connect.
pub const SOCKET_MODE: u32 = 0o660;

/// The connecting process's credentials (`SO_PEERCRED`), for `/v1/self`.
#[derive(Clone, Copy, Debug)]
pub struct PeerCredentials {
    /// PID in the daemon's PID namespace, when the kernel gave one.
    pub pid: Option<u32>,
    /// User id.
    pub uid: u32,
}

impl Connected<IncomingStream<'_, UnixListener>> for PeerCredentials {
    fn connect_info(stream: IncomingStream<'_, UnixListener>) -> Self {
        match stream.io().peer_cred() {
            Ok(cred) => Self {
                pid: cred.pid().and_then(|p| u32::try_from(p).ok()),
                uid: cred.uid(),
            },
            Err(_) => Self {
                pid: None,
                uid: u32::MAX,
            },
        }
    }
}

/// Why the API could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Another process answers on the socket path.
    #[error("{path}: another daemon is already listening there; stop it or use --socket")]
    InUse {
        /// The socket path.
        path: PathBuf,
    },
    /// Something that is not a socket is at the path.
    #[error("{path} exists and is not a socket; remove it or use --socket")]
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// The socket could not be created or configured.
    #[error(
        "{what} {path}: {source}{}",
        IfDenied(.source, "the daemon's user needs write permission on the socket's directory")
    )]
    Io {
        /// The step that failed.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The socket could not be given to the group (`chown` to a group needs membership of it,
    /// or `CAP_CHOWN`).
    #[error(
        "giving {path} to group {gid}: {source}{}",
        IfDenied(.source, "the daemon's user must be a member of that group")
    )]
    Chown {
        /// The socket path.
        path: PathBuf,
        /// The group's id.
        gid: u32,
        /// The error of `chown(2)`.
        #[source]
        source: io::Error,
    },
    /// The group for the socket does not exist.
    #[error("socket group {group:?} not found (give a group name or a numeric gid)")]
    UnknownGroup {
        /// The group asked for.
        group: String,
    },
    /// The metrics address could not be bound.
    #[error("metrics address {addr}: {source}")]
    MetricsBind {
        /// The address.
        addr: String,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// The socket file, removed on drop.
pub struct SocketFile {
    path: PathBuf,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Binds the API socket at `path`, mode 0660, owned by `group` when given.
pub fn bind_socket(
    path: &Path,
    group: Option<&str>,
) -> Result<(UnixListener, SocketFile), ServeError> {
    let io_err = |what, source| ServeError::Io {
        what,
        path: path.to_owned(),
        source,
    };
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
    {
        fs::create_dir_all(parent).map_err(|e| io_err("creating the directory of", e))?;
    }
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(ServeError::InUse {
                    path: path.to_owned(),
                });
            }
            fs::remove_file(path).map_err(|e| io_err("removing the stale socket", e))?;
        }
        Ok(_) => {
            return Err(ServeError::NotASocket {
                path: path.to_owned(),
            });
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("inspecting", e)),
    }
    let listener = UnixListener::bind(path).map_err(|e| io_err("binding", e))?;
    let file = SocketFile {
        path: path.to_owned(),
    };
    if let Some(group) = group {
        let gid = resolve_group(group)?;
        std::os::unix::fs::chown(path, None, Some(gid)).map_err(|source| ServeError::Chown {
            path: path.to_owned(),
            gid,
            source,
        })?;
    }
    fs::set_permissions(path, fs::Permissions::from_mode(SOCKET_MODE))
        .map_err(|e| io_err("chmod", e))?;
    Ok((listener, file))
}

/// A group name or numeric gid.
fn resolve_group(group: &str) -> Result<u32, ServeError> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    let unknown = || ServeError::UnknownGroup {
        group: group.to_owned(),
    };
    let name = CString::new(group).map_err(|_| unknown())?;
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: `group` is plain old data (integers and pointers), for which all zeroes is valid.
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::group = std::ptr::null_mut();
    // SAFETY: `name` is NUL-terminated; `grp`, `buf` (of the length passed) and `result` are
    // valid and writable, and outlive the call; `grp`'s strings point into `buf`, which is
    // only read (for the gid, an integer) while it is alive.
    let rc = unsafe {
        libc::getgrnam_r(
            name.as_ptr(),
            &raw mut grp,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &raw mut result,
        )
    };
    if rc != 0 || result.is_null() {
        return Err(unknown());
    }
    Ok(grp.gr_gid)
}

/// Binds the metrics listener.
pub async fn bind_metrics(addr: &str) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::MetricsBind {
            addr: addr.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn binds_0660_and_replaces_only_stale_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/api.sock");
        let bound = bind_socket(&path, None).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, SOCKET_MODE);
        assert!(matches!(
            bind_socket(&path, None),
            Err(ServeError::InUse { .. })
        ));
        drop(bound);
        assert!(!path.exists());

        // A socket file nobody listens on is replaced.
        let stale = std::os::unix::net::UnixListener::bind(&path).unwrap();
        drop(stale);
        assert!(path.exists());
        let _bound = bind_socket(&path, Some("0")).unwrap();

        let file = dir.path().join("file");
        fs::write(&file, b"x").unwrap();
        assert!(matches!(
            bind_socket(&file, None),
            Err(ServeError::NotASocket { .. })
        ));
        assert!(file.exists());
        assert!(matches!(
            bind_socket(&dir.path().join("g.sock"), Some("no-such-group-xyz")),
            Err(ServeError::UnknownGroup { .. })
        ));
    }

    #[tokio::test]
    async fn a_directory_or_symlink_at_the_path_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let taken = dir.path().join("taken.sock");
        fs::create_dir(&taken).unwrap();
        fs::write(taken.join("keep"), b"x").unwrap();
        let refused = bind_socket(&taken, None).err().unwrap();
        assert!(matches!(refused, ServeError::NotASocket { .. }));
        assert_eq!(
            refused.to_string(),
            format!(
                "{} exists and is not a socket; remove it or use --socket",
                taken.display()
            )
        );
        assert_eq!(fs::read(taken.join("keep")).unwrap(), b"x");

        // A symlink is not followed, even to a stale socket: it is not ours to replace.
        let target = dir.path().join("stale.sock");
        drop(std::os::unix::net::UnixListener::bind(&target).unwrap());
        let link = dir.path().join("link.sock");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(matches!(
            bind_socket(&link, None),
            Err(ServeError::NotASocket { .. })
        ));
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert!(
            fs::symlink_metadata(&target)
                .unwrap()
                .file_type()
                .is_socket()
        );
    }

    #[tokio::test]
    async fn a_stale_socket_of_another_mode_is_replaced_by_one_0660_of_the_group() {
        use std::os::unix::fs::MetadataExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        fs::set_permissions(&path, fs::Permissions::from_mode(0o777)).unwrap();
        // Our own primary group: a group we may give files to without CAP_CHOWN.
        // SAFETY: getegid(2) cannot fail.
        let gid = unsafe { libc::getegid() };
        let _bound = bind_socket(&path, Some(&gid.to_string())).unwrap();
        let meta = fs::metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        // The stale socket refused connections; this one is listened on.
        assert!(std::os::unix::net::UnixStream::connect(&path).is_ok());
        assert_eq!(meta.mode() & 0o7777, SOCKET_MODE);
        assert_eq!(meta.gid(), gid);
        // SAFETY: geteuid(2) cannot fail.
        assert_eq!(meta.uid(), unsafe { libc::geteuid() });
    }
}
