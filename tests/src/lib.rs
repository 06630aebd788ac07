//! Integration tests of the collector that need root, the real kernel and real container
//! runtimes, in aya's integration-test shape: the tests are `src/tests/<feature>.rs` modules
//! of this lib, compiled only under `cfg(test)`; what they (and benches in `benches/`) share is
//! the public [`support`] module.
//!
//! Run them with `cargo xtask test`, which installs and starts what they need, builds the
//! release daemon and runs them as root with `COLLECTOR_DAEMON_BIN` and `COLLECTOR_TEST_IMAGE`.

pub mod support;

#[cfg(test)]
#[expect(
    clippy::too_many_lines,
    reason = "an integration test reads as one scenario, from the workload it starts to its \
              last assert and clean-up; its steps are helpers already"
)]
mod tests;
