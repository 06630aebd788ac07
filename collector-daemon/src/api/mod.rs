//! The local API: HTTP/1.1 + JSON over a unix socket (`server`, `routes`, `lookups`,
//! `schema`), and the client the CLI uses (`client`).
pub mod client;
pub mod lookups;
pub mod pods;
pub mod routes;
pub mod schema;
pub mod server;

/// Highest PID Linux can hand out (`PID_MAX_LIMIT` on 64-bit: 4 × 1024 × 1024).
pub const PID_MAX_LIMIT: u32 = 4 * 1024 * 1024;
/// Largest request body accepted (a `POST /v1/pids` of ~100,000 PIDs fits).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Most PIDs in one `POST /v1/pids`.
pub const MAX_BATCH: usize = 100_000;
