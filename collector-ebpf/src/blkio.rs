//! Block IO per owning cgroup and disk: a BTF tracepoint on `block_bio_queue`.
//!
//! Why this hook (kernel 6.18 `block/blk-core.c`, `submit_bio_noacct_nocheck()`): it fires
//! once per bio entering the block layer, right after `blk_cgroup_bio_start()` does the
//! cgroup-v2 `io.stat` accounting, and a bio split later is not traced again (the remainder
//! keeps `BIO_TRACE_COMPLETION`). Counting there gives `io.stat` semantics (bytes and ios per
//! submitted bio), works for bio-based devices (device-mapper, md) that have no requests,
//! and sees each bio before the scheduler merges bios of different owners into one request —
//! which request-level hooks (`block_rq_issue`/`block_rq_complete`) would have to charge to
//! one owner. What it does not see: whether the IO then failed. Stacked devices are counted
//! on each level (the dm device and the disk below), as `io.stat` and `/proc/diskstats` do.
//!
//! Who owns the IO: the memory cgroup of the bio's first data page. Page-cache pages are
//! charged to the memcg of the task that first brought them into memory or dirtied a new
//! page (`filemap_add_folio()` → `mem_cgroup_charge()`), and `O_DIRECT` / user buffers are
//! the writer's own (anonymous) pages; so a buffered write flushed later by a writeback
//! worker, or by someone else's `sync`, is still the writer's. This is the rule cgroup-v2
//! writeback uses itself (`wbc_account_cgroup_owner()`), applied here on hosts where it is
//! off: on a hybrid host (v1 `memory`/`blkio`, v2 without controllers) `bio->bi_blkg` is the
//! submitter's v1 blkio cgroup, which for writeback is the flusher's root. When the page has
//! no memcg or the root memcg (kernel metadata, or a process in the root), the bio's own
//! block cgroup (`bio->bi_blkg->blkcg`) is the owner: right for direct IO and reads of a
//! process in a blkio cgroup. The key records the owner's hierarchy (0 for v2, the `memory`
//! or `blkio` v1 hierarchy here) so the daemon can map it to a container.
//!
//! Reads (see `kernel.rs`): `bio` is a `tp_btf` argument, so everything reached through
//! typed pointer members (the disk, the first page, `bi_blkg`) is a direct load. The memory
//! cgroup is reached through `page.memcg_data`, a tagged `unsigned long` the verifier types as
//! a number, so from there on (and for `page.compound_head`, see `page_memcg_cgroup`) (`obj_cgroup`, `mem_cgroup`, its `cgroup`) reads go through
//! `bpf_probe_read_kernel`. A failed direct load of `bi_opf` reads as `REQ_OP_READ` and of
//! `bi_size` as 0: such a bio is skipped as empty.
use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};
use collector_common::{
    counters::{IO_MAP_FULL, READ_ERRORS},
    offsets::KernelOffsets,
    usage::{IoMapKey, make_dev},
};

use crate::{
    counters::failure,
    kernel::{
        Access, Direct, Probe, ReadError, cgroup_hierarchy_id, cgroup_id, cgroup_level, offsets,
        read,
    },
    maps::IO_COUNTERS,
    percpu,
};

/// `REQ_OP_READ` and `REQ_OP_WRITE` (`enum req_op`, `include/linux/blk_types.h`): 0 and 1
/// since 4.10, where ops moved into `bi_opf`; every other op (flush, discard, zone ops,
/// write-zeroes) carries no data pages and is not counted.
const REQ_OP_READ: u32 = 0;
const REQ_OP_WRITE: u32 = 1;

#[btf_tracepoint(function = "block_bio_queue")]
pub(crate) fn on_block_bio_queue(ctx: BtfTracePointContext) -> i32 {
    let Some(o) = offsets() else { return 0 };
    if o.io_ready == 0 {
        return 0;
    }
    // Context reads must use constant offsets, hence the branch.
    let bio = if o.bio_queue_bio_arg == 0 {
        ctx.arg::<*const u8>(0)
    } else {
        ctx.arg::<*const u8>(1)
    };
    if try_count(&ctx, o, bio).is_err() {
        failure(&ctx, READ_ERRORS, "block_bio_queue: kernel read failed", 0);
    }
    0
}

fn try_count(
    ctx: &BtfTracePointContext,
    o: &KernelOffsets,
    bio: *const u8,
) -> Result<(), ReadError> {
    let op = read::<u32>(bio, o.bio_opf)? & o.req_op_mask;
    let write = match op {
        REQ_OP_READ => false,
        REQ_OP_WRITE => true,
        _ => return Ok(()),
    };
    // An empty write is a pure flush (`REQ_OP_WRITE | REQ_PREFLUSH`, e.g. from fsync):
    // io.stat counts it as a write io, but it moves no data.
    let bytes = read::<u32>(bio, o.bio_size)?;
    if bytes == 0 {
        return Ok(());
    }
    let dev = disk_dev(o, bio)?;
    let (cgroup_id, hierarchy_id) = owner(o, bio)?;
    let key = IoMapKey {
        cgroup_id,
        hierarchy_id,
        dev,
    };
    let value = match percpu::entry(&IO_COUNTERS, &key) {
        Ok(Some(value)) => value,
        Ok(None) => return Ok(()),
        Err(_) => {
            failure(
                ctx,
                IO_MAP_FULL,
                "IO_COUNTERS map full, block IO not counted",
                0,
            );
            return Ok(());
        }
    };
    // SAFETY: `value` is this CPU's copy of the entry; the field pointers stay inside it.
    unsafe {
        if write {
            percpu::add(&raw mut (*value).write_bytes, u64::from(bytes));
            percpu::add(&raw mut (*value).write_ops, 1);
        } else {
            percpu::add(&raw mut (*value).read_bytes, u64::from(bytes));
            percpu::add(&raw mut (*value).read_ops, 1);
        }
    }
    Ok(())
}

/// The whole disk's `dev_t`: `gendisk.major` and `first_minor`, so a partition's IO is
/// charged to its disk as `io.stat` and the v1 `blkio.*` files name it (their blkgs are per
/// disk queue). `bio->bi_bdev` is still the partition after `blk_partition_remap()`.
#[inline(always)]
fn disk_dev(o: &KernelOffsets, bio: *const u8) -> Result<u32, ReadError> {
    let target = read::<*const u8>(bio, o.bio_bdev)?;
    let disk = if o.bio_disk_direct == 0 {
        read::<*const u8>(target, o.bdev_disk)?
    } else {
        target
    };
    let major = read::<u32>(disk, o.disk_major)?;
    let minor = read::<u32>(disk, o.disk_first_minor)?;
    Ok(make_dev(major, minor))
}

/// `(cgroup id, hierarchy id)` of the IO's owner (see the module docs); `(0, 0)` when
/// neither source is available.
#[inline(always)]
fn owner(o: &KernelOffsets, bio: *const u8) -> Result<(u64, u32), ReadError> {
    let mut fallback: *const u8 = core::ptr::null();
    if o.io_memcg != 0 {
        let cgroup = page_memcg_cgroup(o, bio)?;
        if !cgroup.is_null() {
            if cgroup_level::<Probe>(cgroup, o)? > 0 {
                return cgroup_key::<Probe>(o, cgroup);
            }
            fallback = cgroup;
        }
    }
    if o.io_blkg != 0 {
        let group = read::<*const u8>(bio, o.bio_blkg)?;
        if !group.is_null() {
            let blkcg = read::<*const u8>(group, o.blkg_blkcg)?;
            let cgroup = read::<*const u8>(blkcg.wrapping_add(o.blkcg_css as usize), o.css_cgroup)?;
            if !cgroup.is_null() {
                return cgroup_key::<Direct>(o, cgroup);
            }
        }
    }
    if fallback.is_null() {
        Ok((0, 0))
    } else {
        cgroup_key::<Probe>(o, fallback)
    }
}

#[inline(always)]
fn cgroup_key<A: Access>(o: &KernelOffsets, cgroup: *const u8) -> Result<(u64, u32), ReadError> {
    Ok((
        cgroup_id::<A>(cgroup, o)?,
        cgroup_hierarchy_id::<A>(cgroup, o)?,
    ))
}

/// The `struct cgroup *` of the memory cgroup charged for the bio's first data page, or null
/// when it has none (`memcg_data` 0, or a slab page). The result is an address the verifier
/// sees as a number: read through it with [`Probe`].
///
/// `memcg_data` (`include/linux/memcontrol.h`, `folio_memcg()`) lives in the folio's head
/// page: a tail page (`compound_head` with bit 0 set, `_compound_head()` in
/// `include/linux/page-flags.h`) is first resolved to its head. The low bits are
/// `enum page_memcg_data_flags`: `MEMCG_DATA_KMEM` means it points to an `obj_cgroup`
/// (kernel memory charged with `__GFP_ACCOUNT`), whose `memcg` is the cgroup; any other
/// flag (`MEMCG_DATA_OBJEXTS`, slab object vectors) names no single owner.
#[inline(always)]
fn page_memcg_cgroup(o: &KernelOffsets, bio: *const u8) -> Result<*const u8, ReadError> {
    let null = core::ptr::null();
    let vecs = read::<*const u8>(bio, o.bio_io_vec)?;
    if vecs.is_null() {
        return Ok(null);
    }
    let page = read::<*const u8>(vecs, o.bvec_page)?;
    if page.is_null() {
        return Ok(null);
    }
    // `unsigned long` fields: pointer-sized. `compound_head` shares its offset with
    // `lru.next` in `struct page`'s first union, so the verifier types a direct load of it as a
    // `list_head` pointer, on which it refuses the bit test: read it through the helper. A
    // failed direct load of `memcg_data` reads as 0: no owner from this source.
    let head = Probe::read::<usize>(page, o.page_compound_head)?;
    let data = if head & 1 != 0 {
        // The head's address is a number to the verifier.
        Probe::read::<usize>((head - 1) as *const u8, o.page_memcg_data)?
    } else {
        read::<usize>(page, o.page_memcg_data)?
    };
    let flags_mask = o.memcg_data_flags_mask as usize;
    let flags = data & flags_mask;
    let pointer = (data & !flags_mask) as *const u8;
    if pointer.is_null() {
        return Ok(null);
    }
    let memcg = if flags == 0 {
        pointer
    } else if flags & o.memcg_data_kmem as usize != 0 {
        Probe::read::<*const u8>(pointer, o.obj_cgroup_memcg)?
    } else {
        return Ok(null);
    };
    if memcg.is_null() {
        return Ok(null);
    }
    Probe::read::<*const u8>(memcg.wrapping_add(o.memcg_css as usize), o.css_cgroup)
}
