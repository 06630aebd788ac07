//! Processes made with `clone3(2)` (kernel 5.3+), for what `fork`+`exec` cannot do:
//! - `CLONE_INTO_CGROUP` (5.7+): the child exists in the target cgroup-v2 cgroup from its
//!   creation, so a process that exits at once (microseconds) is still a container's;
//! - `set_tid` (5.5+, needs `CAP_SYS_ADMIN`): the child gets a chosen PID, so a test can reuse
//!   the PID of a process that just exited.
//!
//! The child of a multi-threaded process may only make async-signal-safe calls: it calls
//! `_exit` or `pause` and nothing else.

use std::{ffi::CString, io, os::unix::ffi::OsStrExt as _, path::Path};

/// `CLONE_INTO_CGROUP` from `include/uapi/linux/sched.h`.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `struct clone_args` (`CLONE_ARGS_SIZE_VER2`, 88 bytes).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// What the child does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Then {
    /// `_exit(0)` at once.
    Exit,
    /// Sleep in `pause()` until killed.
    Pause,
    /// Make this many children of its own one after the other (raw `clone` with only
    /// `SIGCHLD`, i.e. `fork` without glibc's atfork handlers, whose locks another thread
    /// of the parent may have held), each exiting at once and reaped, then `_exit(0)`. The
    /// children are born in the child's cgroup, without taking the kernel's cgroup mutex
    /// as `CLONE_INTO_CGROUP` does.
    ForkExit(u32),
}

/// A `clone3` child, killed (if still running) and reaped on drop.
#[derive(Debug)]
pub struct Clone3Child {
    pid: u32,
    reaped: bool,
}

impl Clone3Child {
    /// Creates a child in the v2 cgroup directory `cgroup` (when given) with PID `pid` (when
    /// given) that does `then`.
    pub fn spawn(cgroup: Option<&Path>, pid: Option<u32>, then: Then) -> io::Result<Self> {
        let cgroup_fd = match cgroup {
            Some(dir) => {
                let c = CString::new(dir.as_os_str().as_bytes())
                    .map_err(|_| io::Error::other("NUL in cgroup path"))?;
                // SAFETY: open with a valid path.
                let fd = unsafe {
                    libc::open(
                        c.as_ptr(),
                        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
                    )
                };
                if fd < 0 {
                    return Err(io::Error::last_os_error());
                }
                Some(fd)
            }
            None => None,
        };
        let tids: [libc::pid_t; 1] = [pid.map_or(0, |p| libc::pid_t::try_from(p).unwrap_or(0))];
        let mut args = CloneArgs {
            exit_signal: libc::SIGCHLD as u64,
            ..CloneArgs::default()
        };
        if let Some(fd) = cgroup_fd {
            args.flags |= CLONE_INTO_CGROUP;
            args.cgroup = u64::try_from(fd).unwrap_or_default();
        }
        if pid.is_some() {
            args.set_tid = tids.as_ptr() as u64;
            args.set_tid_size = 1;
        }
        // SAFETY: clone3 with a valid, fully initialised clone_args; the child only calls
        // async-signal-safe functions (see the module doc).
        let ret = unsafe {
            libc::syscall(
                libc::SYS_clone3,
                &raw const args,
                std::mem::size_of::<CloneArgs>(),
            )
        };
        if ret == 0 {
            child_main(then);
        }
        let err = io::Error::last_os_error();
        if let Some(fd) = cgroup_fd {
            // SAFETY: closing the descriptor we opened.
            unsafe { libc::close(fd) };
        }
        if ret < 0 {
            return Err(err);
        }
        Ok(Self {
            pid: u32::try_from(ret).map_err(|_| io::Error::other("clone3 returned a bad pid"))?,
            reaped: false,
        })
    }

    /// The child's PID.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Waits for the child to exit and reaps it (its PID is free afterwards).
    pub fn wait(&mut self) -> io::Result<()> {
        if self.reaped {
            return Ok(());
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        let rc = unsafe { libc::waitpid(self.pid.cast_signed(), &raw mut status, 0) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        self.reaped = true;
        Ok(())
    }
}

/// What the child runs; it never returns.
fn child_main(then: Then) -> ! {
    match then {
        // SAFETY: async-signal-safe.
        Then::Exit => unsafe { libc::_exit(0) },
        Then::Pause => loop {
            // SAFETY: async-signal-safe.
            unsafe { libc::pause() };
        },
        Then::ForkExit(n) => {
            for _ in 0..n {
                // SAFETY: clone(SIGCHLD) with no new stack is fork(2); the grandchild only
                // calls _exit, the child waitpid: both async-signal-safe.
                unsafe {
                    let pid = libc::syscall(
                        libc::SYS_clone,
                        libc::c_long::from(libc::SIGCHLD),
                        0,
                        0,
                        0,
                        0,
                    );
                    if pid == 0 {
                        libc::_exit(0);
                    }
                    if let Ok(pid) = libc::pid_t::try_from(pid)
                        && pid > 0
                    {
                        let mut status = 0;
                        libc::waitpid(pid, &raw mut status, 0);
                    }
                }
            }
            // SAFETY: async-signal-safe.
            unsafe { libc::_exit(0) }
        }
    }
}

impl Drop for Clone3Child {
    fn drop(&mut self) {
        if !self.reaped {
            // SAFETY: signalling our own unreaped child: its PID cannot have been reused.
            unsafe { libc::kill(self.pid.cast_signed(), libc::SIGKILL) };
            let _ = self.wait();
        }
    }
}
