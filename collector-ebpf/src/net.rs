//! Network bytes and packets per cgroup: `cgroup_skb` ingress and egress programs attached
//! to the cgroup-v2 root (with `BPF_F_ALLOW_MULTI` semantics: a link, so they never replace
//! another program and run for every cgroup below the root, whatever descendants attach).
//!
//! Where they run (kernel 6.18, same since 4.10): egress in `ip_finish_output()` /
//! `ip6_finish_output()` (`BPF_CGROUP_RUN_PROG_INET_EGRESS`) for packets a local socket sends,
//! after routing picked the device; ingress in `sk_filter_trim_cap()`
//! (`BPF_CGROUP_RUN_PROG_INET_INGRESS`) for packets delivered to a local socket, with the
//! packet pushed back to its network header (`__cgroup_bpf_run_filter_skb()`,
//! `kernel/bpf/cgroup.c`). Forwarded packets have no local socket and are not seen.
//!
//! The cgroup is `bpf_skb_cgroup_id()`: the cgroup-v2 id stored in the socket when it was
//! created (`cgroup_sk_alloc()`; accepted sockets inherit the listener's,
//! `cgroup_sk_clone()`), so traffic is charged to the cgroup that made the socket even if
//! the process moved since. Request sockets resolve to their listener; timewait sockets are
//! not full sockets and their last ACKs are not seen. Before 5.15 the socket's cgroup pointer
//! shared a union with v1 `net_prio`/`net_cls` data, and configuring those controllers
//! turned cgroup-v2 socket matching off (`cgroup_sk_alloc_disable()`); 5.15 and later keep
//! them apart (`struct sock_cgroup_data`).
use aya_ebpf::{
    helpers::generated::bpf_skb_cgroup_id, macros::cgroup_skb, programs::SkBuffContext,
};
use collector_common::counters::NET_MAP_FULL;

use crate::{counters::failure, maps::NET_COUNTERS, percpu};

/// `LOOPBACK_IFINDEX` (`include/net/flow.h`): `lo` is registered first in every network
/// namespace and always gets ifindex 1 (`loopback_net_init()`).
const LOOPBACK_IFINDEX: u32 = 1;

/// Allow the packet (bit 0 of a `cgroup_skb` program's return value).
const ALLOW: i32 = 1;

#[cgroup_skb(ingress)]
pub(crate) fn count_ingress(ctx: SkBuffContext) -> i32 {
    count(&ctx, false);
    ALLOW
}

#[cgroup_skb(egress)]
pub(crate) fn count_egress(ctx: SkBuffContext) -> i32 {
    count(&ctx, true);
    ALLOW
}

#[inline(always)]
fn count(ctx: &SkBuffContext, egress: bool) {
    let skb = ctx.skb.skb;
    // SAFETY: `skb` is the program's context; these `__sk_buff` reads are rewritten by the
    // verifier into reads of the real `sk_buff` (`cg_skb_is_valid_access()` allows them).
    let (ifindex, len, segs) = unsafe { ((*skb).ifindex, (*skb).len, (*skb).gso_segs) };
    // Loopback is left out, as a container's `lo` is in no interface total of
    // `/proc/net/dev` that matters for its traffic: it never leaves the host. `ifindex` is
    // `skb->dev->ifindex`: the egress device chosen by routing (traffic to one of the host's
    // own addresses goes through `lo` too), or the device the packet arrived on.
    if ifindex == LOOPBACK_IFINDEX {
        return;
    }
    // SAFETY: helper on the program's own context.
    let cgroup_id = unsafe { bpf_skb_cgroup_id(skb) };
    let value = match percpu::entry(&NET_COUNTERS, &cgroup_id) {
        Ok(Some(value)) => value,
        Ok(None) => return,
        Err(_) => {
            failure(
                ctx,
                NET_MAP_FULL,
                "NET_COUNTERS map full, traffic not counted",
                0,
            );
            return;
        }
    };
    // A GSO packet (egress before segmentation, or ingress after GRO) stands for `gso_segs`
    // wire packets; other packets have `gso_segs` 0 or 1.
    let packets = u64::from(segs.max(1));
    let bytes = u64::from(len);
    // SAFETY: `value` is this CPU's copy of the entry; the field pointers stay inside it.
    unsafe {
        if egress {
            percpu::add(&raw mut (*value).tx_bytes, bytes);
            percpu::add(&raw mut (*value).tx_packets, packets);
        } else {
            percpu::add(&raw mut (*value).rx_bytes, bytes);
            percpu::add(&raw mut (*value).rx_packets, packets);
        }
    }
}
