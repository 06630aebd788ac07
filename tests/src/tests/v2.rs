//! Tests that need a host whose cgroup2 hierarchy has the controllers (a v2-only host): run
//! by the VM lane, which boots one; elsewhere they skip (and fail under `CI=true`).

mod kernel_walk;
