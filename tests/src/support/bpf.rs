//! Reading a pinned BPF map with the raw `bpf(2)` syscall, as another eBPF tool or program
//! would: `BPF_OBJ_GET` on the pin, then `BPF_MAP_LOOKUP_ELEM` (and `BPF_MAP_GET_NEXT_KEY` to
//! walk keys). No library in between, so a test sees exactly what the kernel holds.
//!
//! Per-CPU maps answer a lookup with one value per *possible* CPU, each rounded up to 8
//! bytes (`bpf_map_value_size()` in `kernel/bpf/syscall.c`): see [`lookup_per_cpu`].
use std::{
    ffi::CString,
    io,
    os::{
        fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
        unix::ffi::OsStrExt as _,
    },
    path::Path,
};

const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;
const BPF_OBJ_GET: libc::c_long = 7;

/// The raw `bpf(2)` syscall with a zero-padded `union bpf_attr`.
pub fn bpf(cmd: libc::c_long, attr: &mut [u8; 128]) -> io::Result<libc::c_long> {
    // SAFETY: the attr buffer is larger than every bpf_attr variant used here.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len()) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Opens a pinned map.
pub fn open_pinned(path: &Path) -> io::Result<OwnedFd> {
    let c_path = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let mut attr = [0u8; 128];
    // union bpf_attr, BPF_OBJ_GET: { u64 pathname; u32 bpf_fd; u32 file_flags; }
    attr[..8].copy_from_slice(&(c_path.as_ptr() as u64).to_ne_bytes());
    let fd = bpf(BPF_OBJ_GET, &mut attr)?;
    // SAFETY: the kernel returned a new descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(i32::try_from(fd).map_err(io::Error::other)?) })
}

/// Looks `key` up in the map `fd`; `Ok(None)` when absent.
pub fn lookup(fd: &OwnedFd, key: &[u8], value_len: usize) -> io::Result<Option<Vec<u8>>> {
    let mut value = vec![0u8; value_len];
    let mut attr = [0u8; 128];
    // BPF_MAP_*_ELEM: { u32 map_fd; (pad) u64 key; u64 value; u64 flags; }
    attr[..4].copy_from_slice(&fd.as_raw_fd().to_ne_bytes());
    attr[8..16].copy_from_slice(&(key.as_ptr() as u64).to_ne_bytes());
    attr[16..24].copy_from_slice(&(value.as_mut_ptr() as u64).to_ne_bytes());
    match bpf(BPF_MAP_LOOKUP_ELEM, &mut attr) {
        Ok(_) => Ok(Some(value)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The number of possible CPUs (`/sys/devices/system/cpu/possible`, e.g. `0-1` or `0,2-3`):
/// how many values a per-CPU map returns per key.
pub fn possible_cpus() -> io::Result<usize> {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/possible")?;
    parse_cpu_list(text.trim())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("cpu list {text:?}")))
}

fn parse_cpu_list(list: &str) -> Option<usize> {
    let mut highest = None;
    for range in list.split(',') {
        let end = match range.split_once('-') {
            Some((_, end)) => end.parse::<usize>().ok()?,
            None => range.parse::<usize>().ok()?,
        };
        highest = highest.max(Some(end));
    }
    highest.map(|h| h + 1)
}

/// Looks `key` up in the per-CPU map `fd` whose values are `value_len` bytes: one value per
/// possible CPU, in CPU order; `Ok(None)` when absent.
pub fn lookup_per_cpu(
    fd: &OwnedFd,
    key: &[u8],
    value_len: usize,
) -> io::Result<Option<Vec<Vec<u8>>>> {
    let stride = value_len.div_ceil(8) * 8;
    let cpus = possible_cpus()?;
    Ok(lookup(fd, key, stride * cpus)?.map(|bytes| {
        bytes
            .chunks_exact(stride)
            .map(|chunk| chunk[..value_len].to_vec())
            .collect()
    }))
}

/// Every key of the map `fd` (keys of `key_len` bytes), walked with `BPF_MAP_GET_NEXT_KEY`.
pub fn keys(fd: &OwnedFd, key_len: usize) -> io::Result<Vec<Vec<u8>>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut next = vec![0u8; key_len];
        let mut attr = [0u8; 128];
        // BPF_MAP_GET_NEXT_KEY: { u32 map_fd; (pad) u64 key; u64 next_key; }; a null key
        // asks for the first.
        attr[..4].copy_from_slice(&fd.as_raw_fd().to_ne_bytes());
        let current = out.last().map_or(0, |k| k.as_ptr() as u64);
        attr[8..16].copy_from_slice(&current.to_ne_bytes());
        attr[16..24].copy_from_slice(&(next.as_mut_ptr() as u64).to_ne_bytes());
        match bpf(BPF_MAP_GET_NEXT_KEY, &mut attr) {
            Ok(_) => out.push(next),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(out),
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_cpu_list;

    #[test]
    fn cpu_lists_give_the_count_of_possible_cpus() {
        assert_eq!(parse_cpu_list("0"), Some(1));
        assert_eq!(parse_cpu_list("0-1"), Some(2));
        assert_eq!(parse_cpu_list("0,2-3"), Some(4));
        assert_eq!(parse_cpu_list("0-127"), Some(128));
        assert_eq!(parse_cpu_list("x"), None);
    }
}
