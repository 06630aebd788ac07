//! Tests that only make sense on a cgroup-v2-only host with controllers (most nodes; not the
//! hybrid development hosts): each starts with [`v2_host`], which fails under `CI=true`
//! elsewhere, so `cargo xtask test` skips this module on the host (`--skip tests::v2::`) and
//! `cargo xtask vm` runs it in a v2-only guest (docs/testing.md).

mod identity;
mod kernel_walk;
mod stats;

use super::util::root;
use crate::support::{
    cgroup::{TestCgroup, v2_only_with_controllers},
    require,
};

/// Root, on a cgroup-v2-only host whose root enables memory, cpu, io and pids.
fn v2_host() -> bool {
    root()
        && require(
            "a cgroup-v2-only host with controllers (cargo xtask vm boots one)",
            v2_only_with_controllers(),
        )
}

/// A runtime-shaped cgroup with every controller enabled down to its leaf.
fn delegated(path: &str) -> TestCgroup {
    let cg = TestCgroup::new(path);
    cg.enable_controllers();
    // The leaf has the controllers' files: the layout is what a v2 node has.
    assert!(
        cg.v2_dir().join("memory.current").exists() && cg.v2_dir().join("pids.max").exists(),
        "{cg:?} has no memory.current/pids.max"
    );
    cg
}
