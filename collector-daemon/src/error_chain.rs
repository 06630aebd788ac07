//! Printing an error with its sources. Many of aya's errors print only the outer call
//! (`` `bpf_link_create` failed ``) and keep the errno in their source, and bollard's repeat
//! their source's text: log lines and API errors print such errors through [`ErrorChain`], so
//! they say why, each cause once. [`IfDenied`] adds what to grant when the cause is the kernel
//! refusing for want of a capability or a file permission.

use std::{error::Error, fmt};

/// Displays an error, then each of its sources after `": "`, leaving out a source whose text
/// is already in what was printed (aya's `"map error: {0}"` prints its source itself).
pub(crate) struct ErrorChain<'a>(pub(crate) &'a dyn Error);

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = self.0.to_string();
        let mut source = self.0.source();
        while let Some(inner) = source {
            let text = inner.to_string();
            if !out.contains(&text) {
                out.push_str(": ");
                out.push_str(&text);
            }
            source = inner.source();
        }
        f.write_str(&out)
    }
}

/// Displays `" (" + hint + ")"` when the error or one of its sources is an I/O error of kind
/// `PermissionDenied` (`EPERM`: a capability is missing; `EACCES`: a file's mode refuses),
/// nothing otherwise; for `#[error]` strings: `"...: {}{}", ErrorChain(e), IfDenied(e, "...")`.
pub(crate) struct IfDenied<'a>(
    pub(crate) &'a (dyn Error + 'static),
    pub(crate) &'static str,
);

impl fmt::Display for IfDenied<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if is_denied(self.0) {
            write!(f, " ({})", self.1)
        } else {
            Ok(())
        }
    }
}

/// Whether `error` or one of its sources is an I/O error of kind `PermissionDenied`.
pub(crate) fn is_denied(error: &(dyn Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::PermissionDenied)
        {
            return true;
        }
        next = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_follow_the_error() {
        let e = aya::maps::MapError::SyscallError(aya::sys::SyscallError {
            call: "bpf_map_lookup_elem",
            io_error: std::io::Error::from_raw_os_error(libc::ENOENT),
        });
        assert_eq!(
            ErrorChain(&e).to_string(),
            "`bpf_map_lookup_elem` failed: No such file or directory (os error 2)"
        );
    }

    #[test]
    fn a_source_printed_by_its_error_is_not_repeated() {
        let e = aya::EbpfError::MapError(aya::maps::MapError::CreateError {
            name: "EVENTS".to_owned(),
            io_error: std::io::Error::from_raw_os_error(libc::EPERM),
        });
        assert_eq!(
            ErrorChain(&e).to_string(),
            "map error: failed to create map `EVENTS`: Operation not permitted (os error 1)"
        );
    }

    #[test]
    fn a_hint_is_shown_only_when_the_kernel_refused() {
        let denied = aya::programs::ProgramError::SyscallError(aya::sys::SyscallError {
            call: "bpf_link_create",
            io_error: std::io::Error::from_raw_os_error(libc::EPERM),
        });
        assert_eq!(
            format!(
                "{}{}",
                ErrorChain(&denied),
                IfDenied(&denied, "needs CAP_NET_ADMIN")
            ),
            "`bpf_link_create` failed: Operation not permitted (os error 1) (needs CAP_NET_ADMIN)"
        );
        let absent = std::io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(IfDenied(&absent, "needs CAP_NET_ADMIN").to_string(), "");
        let access = std::io::Error::from_raw_os_error(libc::EACCES);
        assert!(is_denied(&access));
    }
}
