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
    #[error("{what} {path}: {source}")]
    Io {
        /// The step that failed.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
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
        std::os::unix::fs::chown(path, None, Some(gid)).map_err(|e| io_err("chown", e))?;
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
}
