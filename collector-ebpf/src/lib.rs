//! Empty library target: lets `collector-daemon` list this crate as a build-dependency, so
//! cargo rebuilds the daemon (and its embedded object) when the eBPF sources change.
#![no_std]
#![expect(
    unused_crate_dependencies,
    reason = "the dependencies are the bin's; this target only exists for cargo's rebuild tracking"
)]
