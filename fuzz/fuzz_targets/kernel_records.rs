//! What the kernel hands the daemon in binary or terse text: ring-buffer records of the eBPF
//! programs (`ebpf::events::decode`) and the possible-CPU list of
//! `/sys/devices/system/cpu/possible` (`ebpf::btf_offsets::parse_nr_cpu_ids`), chosen by the
//! input's first byte.
//!
//! Beyond "no panic": a decoded cgroup path is what the record held, and `nr_cpu_ids` is one
//! more than the highest CPU listed.
#![no_main]

use collector_daemon::ebpf::{btf_offsets::parse_nr_cpu_ids, events};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    if selector % 2 == 0 {
        if let Ok(events::Event::CgroupCreated { path, .. }) = events::decode(rest) {
            assert!(!path.contains('\0'));
        }
        return;
    }
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    if let Some(n) = parse_nr_cpu_ids(text) {
        let highest = text
            .trim()
            .split(',')
            .filter_map(|range| range.rsplit('-').next()?.parse::<u64>().ok())
            .max()
            .expect("a count comes from at least one CPU");
        assert_eq!(u64::from(n), highest + 1);
    }
});
