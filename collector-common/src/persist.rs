//! The record kept with the pinned maps so that a restarted daemon can tell whether it may
//! reuse them (same layout) and the programs attached to them (same build).

/// Version of the layouts of the persistent maps' keys and values (`ProcessInfo`, the
/// ring-buffer records of `event`, `usage`'s keys and values, `counters`' indexes). Bump it
/// whenever one of them changes meaning or size: a daemon finding pins of another version
/// removes them and starts afresh instead of misreading them.
pub const MAP_LAYOUT_VERSION: u32 = 1;

/// The single value of the `PIN_STATE` map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PinState {
    /// [`MAP_LAYOUT_VERSION`] of the daemon that created the maps; 0 until one wrote it.
    pub layout_version: u32,
    /// Explicit padding: always 0.
    pub reserved: u32,
    /// Stamp of the programs whose links are pinned beside the maps: a hash of the object's
    /// bytes and of what was written into it at load (kernel offsets, attach target).
    pub program_stamp: u64,
}

const _: () = assert!(size_of::<PinState>() == 16 && align_of::<PinState>() == 8);

#[cfg(feature = "user")]
// SAFETY: repr(C), only integer fields, no padding (4+4+8 bytes).
unsafe impl aya::Pod for PinState {}
