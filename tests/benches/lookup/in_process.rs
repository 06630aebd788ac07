//! The no-daemon baseline: this process reading `/proc/<pid>/cgroup` itself.

use std::{
    fmt::Write as _,
    fs,
    io::{self, Read as _},
};

use crate::client::invalid;

/// What a client without the daemon does: read /proc/<pid>/cgroup, take the cgroup v2 (`0::`)
/// line and find a 64-hex id in its path. Buffers are the caller's, reused.
pub(crate) fn resolve_in_process(
    pid: u32,
    path: &mut String,
    text: &mut String,
) -> io::Result<Option<String>> {
    path.clear();
    let _ = write!(path, "/proc/{pid}/cgroup");
    text.clear();
    fs::File::open(&*path)?.read_to_string(text)?;
    let v2 = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or_else(|| invalid("no cgroup v2 line"))?;
    Ok(hex_id_in(v2).map(str::to_owned))
}

/// The innermost run of exactly 64 hex digits in a cgroup path (`docker-<id>.scope`,
/// `cri-containerd-<id>.scope`, `/docker/<id>`, ...).
pub(crate) fn hex_id_in(path: &str) -> Option<&str> {
    path.rsplit('/').find_map(|component| {
        component
            .split(|c: char| !c.is_ascii_hexdigit())
            .find(|run| run.len() == 64)
    })
}
