//! Decoding of ring-buffer records into typed events (layouts in `collector_common::event`).
use collector_common::{
    event::{
        CgroupEvent, KIND_ATTACH, KIND_CGROUP_MKDIR, KIND_CGROUP_RMDIR, KIND_EXEC, KIND_EXIT,
        KIND_FORK, ProcessEvent,
    },
    process::ProcessInfo,
};

/// What happened to a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcessChange {
    /// Created (fork/clone without `CLONE_THREAD`).
    Fork,
    /// Exec'd.
    Exec,
    /// Its last thread exited.
    Exit,
    /// Moved to another cgroup.
    Attach,
}

/// One decoded lifecycle event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A process event with the process's state after it.
    Process {
        /// The kind of change.
        change: ProcessChange,
        /// Thread-group id (the PID).
        tgid: u32,
        /// The process's state after the change.
        info: ProcessInfo,
        /// Command name.
        comm: String,
    },
    /// A cgroup directory was created.
    CgroupCreated {
        /// Hierarchy id (0 for v2).
        hierarchy_id: u32,
        /// Cgroup id, the inode of its directory.
        cgroup_id: u64,
        /// Path from the hierarchy's root.
        path: String,
    },
    /// A cgroup directory was removed.
    CgroupRemoved {
        /// Hierarchy id (0 for v2).
        hierarchy_id: u32,
        /// Cgroup id, the inode of its directory.
        cgroup_id: u64,
    },
}

/// A record that is not a known event (a daemon/object mismatch, never expected).
#[derive(Debug, thiserror::Error)]
#[error("unknown ring-buffer record: kind {kind}, {len} bytes")]
pub struct DecodeError {
    kind: u32,
    len: usize,
}

/// Decodes one record.
pub fn decode(record: &[u8]) -> Result<Event, DecodeError> {
    let kind = record
        .get(..4)
        .map_or(0, |b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    let bad = || DecodeError {
        kind,
        len: record.len(),
    };
    match kind {
        KIND_FORK | KIND_EXEC | KIND_EXIT | KIND_ATTACH => {
            let event: ProcessEvent = read_record(record).ok_or_else(bad)?;
            let change = match kind {
                KIND_FORK => ProcessChange::Fork,
                KIND_EXEC => ProcessChange::Exec,
                KIND_EXIT => ProcessChange::Exit,
                _ => ProcessChange::Attach,
            };
            Ok(Event::Process {
                change,
                tgid: event.tgid,
                info: event.info,
                comm: c_string(&event.comm),
            })
        }
        KIND_CGROUP_MKDIR | KIND_CGROUP_RMDIR => {
            let event: CgroupEvent = read_record(record).ok_or_else(bad)?;
            if kind == KIND_CGROUP_RMDIR {
                return Ok(Event::CgroupRemoved {
                    hierarchy_id: event.hierarchy_id,
                    cgroup_id: event.cgroup_id,
                });
            }
            let len = (event.path_len as usize).min(event.path.len());
            Ok(Event::CgroupCreated {
                hierarchy_id: event.hierarchy_id,
                cgroup_id: event.cgroup_id,
                path: c_string(&event.path[..len]),
            })
        }
        _ => Err(bad()),
    }
}

/// Copies a `#[repr(C)]` plain-data record out of the (unaligned) ring-buffer bytes.
fn read_record<T: aya::Pod>(record: &[u8]) -> Option<T> {
    if record.len() < size_of::<T>() {
        return None;
    }
    // SAFETY: T is Pod (any bit pattern valid), the length was checked, and
    // read_unaligned does not need alignment.
    Some(unsafe { record.as_ptr().cast::<T>().read_unaligned() })
}

pub(crate) fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use collector_common::event::{CGROUP_PATH_LEN, COMM_LEN};

    use super::*;

    fn bytes_of<T: aya::Pod>(value: &T) -> Vec<u8> {
        // SAFETY: reading a Pod value's bytes.
        unsafe {
            std::slice::from_raw_parts(std::ptr::from_ref(value).cast::<u8>(), size_of::<T>())
        }
        .to_vec()
    }

    #[test]
    fn decodes_process_and_cgroup_records() {
        let mut comm = [0u8; COMM_LEN];
        comm[..4].copy_from_slice(b"true");
        let info = ProcessInfo {
            start_boottime_ns: 5,
            cgroup_v2_id: 6,
            cgroup_v1_id: 7,
            ppid: 8,
            flags: 0,
        };
        let record = bytes_of(&ProcessEvent {
            kind: KIND_EXIT,
            tgid: 42,
            info,
            timestamp_ns: 9,
            comm,
        });
        assert_eq!(
            decode(&record).unwrap(),
            Event::Process {
                change: ProcessChange::Exit,
                tgid: 42,
                info,
                comm: "true".into()
            }
        );

        let mut path = [0u8; CGROUP_PATH_LEN];
        path[..7].copy_from_slice(b"/docker");
        let record = bytes_of(&CgroupEvent {
            kind: KIND_CGROUP_MKDIR,
            hierarchy_id: 0,
            cgroup_id: 1234,
            level: 1,
            path_len: 7,
            path,
        });
        assert_eq!(
            decode(&record).unwrap(),
            Event::CgroupCreated {
                hierarchy_id: 0,
                cgroup_id: 1234,
                path: "/docker".into()
            }
        );
    }

    #[test]
    fn rejects_short_and_unknown_records() {
        assert!(decode(&[]).is_err());
        assert!(decode(&KIND_FORK.to_ne_bytes()).is_err());
        assert!(decode(&99u32.to_ne_bytes()).is_err());
    }
}
