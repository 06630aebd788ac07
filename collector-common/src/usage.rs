//! Per-cgroup resource usage counted in the kernel: the keys and values of the
//! `NET_COUNTERS` and `IO_COUNTERS` per-CPU hash maps.
//!
//! Both maps are `BPF_MAP_TYPE_PERCPU_HASH`: every CPU has its own copy of each value, so the
//! programs never contend on a cache line, and a reader sums the copies. Values only grow;
//! an entry lives until the daemon removes it (for a removed cgroup, after folding its final
//! values into its container).

/// `NET_COUNTERS` value, keyed by the cgroup-v2 id (`u64`) of the socket's owner
/// (`bpf_skb_cgroup_id()`: the v2 cgroup the socket was created in).
///
/// Bytes are `skb->len` as the `cgroup_skb` programs see it: the packet from its network
/// header on (IP header included, link-layer header excluded). Packets are wire packets: a
/// GSO/GRO packet counts as its `gso_segs` segments, any other as one. Loopback traffic is
/// not counted, as `lo` is left out of a container's `/proc/net/dev` figures.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetMapValue {
    /// Bytes received by sockets of the cgroup.
    pub rx_bytes: u64,
    /// Packets received by sockets of the cgroup.
    pub rx_packets: u64,
    /// Bytes sent by sockets of the cgroup.
    pub tx_bytes: u64,
    /// Packets sent by sockets of the cgroup.
    pub tx_packets: u64,
}

/// `IO_COUNTERS` key: the cgroup that owns the IO, and the whole disk it went to.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct IoMapKey {
    /// `cgroup->kn->id` of the owning cgroup (the inode of its directory).
    pub cgroup_id: u64,
    /// `cgroup->root->hierarchy_id` of that cgroup: 0 for cgroup v2, else the v1 hierarchy
    /// (the first column of `/proc/<pid>/cgroup`), normally `memory`'s (see `blkio.rs`).
    pub hierarchy_id: u32,
    /// The whole disk as the kernel's internal `dev_t`: `major << 20 | minor`
    /// ([`DEV_MINOR_BITS`]), the disk's `first_minor` (partitions are folded into their disk,
    /// as in `io.stat` and `blkio.*` files).
    pub dev: u32,
}

/// `IO_COUNTERS` value. Counted per bio when it is submitted (`block_bio_queue`), like the
/// `rbytes`/`wbytes`/`rios`/`wios` of cgroup v2 `io.stat`; a bio split by the block layer
/// counts once. Only reads and writes with data: flushes, discards and zeroing are left out.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoMapValue {
    /// Bytes read.
    pub read_bytes: u64,
    /// Bytes written.
    pub write_bytes: u64,
    /// Read bios.
    pub read_ops: u64,
    /// Write bios.
    pub write_ops: u64,
}

/// Bits of the minor number in the kernel's internal `dev_t` (`MINORBITS` in
/// `include/linux/kdev_t.h`): `dev = major << 20 | minor`.
pub const DEV_MINOR_BITS: u32 = 20;

/// The kernel-internal `dev_t` of `major:minor`.
#[must_use]
pub const fn make_dev(major: u32, minor: u32) -> u32 {
    (major << DEV_MINOR_BITS) | (minor & ((1 << DEV_MINOR_BITS) - 1))
}

/// `(major, minor)` of a kernel-internal `dev_t`.
#[must_use]
pub const fn split_dev(dev: u32) -> (u32, u32) {
    (dev >> DEV_MINOR_BITS, dev & ((1 << DEV_MINOR_BITS) - 1))
}

// The kernel programs and the daemon read these bytes with one layout: a field added,
// removed or resized must fail the build on both sides, not misread a map.
const _: () = assert!(size_of::<NetMapValue>() == 32 && align_of::<NetMapValue>() == 8); // 4×8 bytes
const _: () = assert!(size_of::<IoMapKey>() == 16 && align_of::<IoMapKey>() == 8); // 8+4+4 bytes
const _: () = assert!(size_of::<IoMapValue>() == 32 && align_of::<IoMapValue>() == 8); // 4×8 bytes

#[cfg(feature = "user")]
// SAFETY: repr(C), only u64 fields, no padding (4 × 8 bytes).
unsafe impl aya::Pod for NetMapValue {}
#[cfg(feature = "user")]
// SAFETY: repr(C), u64 + u32 + u32, no padding (16 bytes, 8-aligned).
unsafe impl aya::Pod for IoMapKey {}
#[cfg(feature = "user")]
// SAFETY: repr(C), only u64 fields, no padding (4 × 8 bytes).
unsafe impl aya::Pod for IoMapValue {}
