//! procfs reads behind the system collector's network, open-files and PID answers.
//! (`identity::procfs` holds the per-process identity reads; these are per-container stats.)
pub mod fds;
pub mod net;
pub mod tasks;
