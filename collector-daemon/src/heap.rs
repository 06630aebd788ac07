//! The heap: glibc's malloc, set so that memory the daemon frees goes back to the system.
//!
//! glibc raises its mmap threshold to the size of any mmapped block freed (up to 32 MiB), and
//! its trim threshold to twice that. Start-up reads and parses the kernel's BTF (a 6 MB file,
//! ~30 MB of tables) and frees it all: the thresholds then sit at several MiB, so every later
//! allocation up to that size comes from the heap, whose freed pages are kept (measured: 27 MiB
//! resident of which 0.5 MiB in use after start-up; 87 MiB resident at 1,000 containers).
//! Fixing both thresholds turns off that adjustment: blocks from [`MMAP_THRESHOLD`] up
//! (response bodies, BTF buffers) are mapped and unmapped on their own, and a free heap top
//! above it is returned. One `malloc_trim` after start-up returns what start-up left free
//! inside the heap. Other allocators measured worse here (docs/benchmarks.md, "memory").
//!
//! Only glibc has these knobs; elsewhere both functions do nothing.

/// Blocks of this size and up are mapped on their own; a free heap top above it is trimmed.
/// 4 MiB: a collection's response bodies (1.4 MB of JSON, 1.1 MB gzipped for 1,000
/// containers) reuse heap pages instead of faulting fresh ones in at every request, while
/// the BTF buffers (6–13 MB) are still unmapped when freed. Measured against 256 KiB: the
/// same resident memory within 1 MiB, scrapes a few % cheaper.
pub const MMAP_THRESHOLD: usize = 4 << 20;

/// Fixes glibc's mmap and trim thresholds at [`MMAP_THRESHOLD`]; call first thing in `main`,
/// before the allocations it should govern. Thresholds an operator set through
/// `GLIBC_TUNABLES` (`glibc.malloc.mmap_threshold`, `glibc.malloc.trim_threshold`) are left
/// as set.
pub fn configure() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        if std::env::var("GLIBC_TUNABLES").is_ok_and(|t| {
            t.contains("malloc.mmap_threshold") || t.contains("malloc.trim_threshold")
        }) {
            return;
        }
        let value = libc::c_int::try_from(MMAP_THRESHOLD).expect("4 MiB fits a C int");
        // SAFETY: mallopt only sets allocator parameters; these two are valid at any time.
        let set = unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, value) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, value) == 1
        };
        if !set {
            // Not fatal: the daemon works with glibc's defaults, with more memory held.
            eprintln!("warning: glibc refused the malloc thresholds; freed memory may be kept");
        }
    }
}

/// Returns free memory inside the heap to the system (`malloc_trim`); call once start-up
/// (BTF parsing, loading, seeding the indexes) is over. A few ms.
pub fn release_free() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free pages of the allocator's own arenas.
    unsafe {
        libc::malloc_trim(0);
    }
}
