//! Printing an error with its sources. Many of aya's errors print only the outer call
//! (`` `bpf_link_create` failed ``) and keep the errno in their source, and bollard's repeat
//! their source's text: log lines and API errors print such errors through [`ErrorChain`], so
//! they say why, each cause once.

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
}
