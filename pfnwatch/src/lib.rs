//! pfnwatch's user space: loads the kernel programs, reads their counters
//! and records, and turns them into checks, traces and daemon output.
//!
//! hook (programs.rs) -> load (loader.rs) -> record (record.rs) ->
//! rule (rules.rs) -> output (output.rs, trace.rs, daemon.rs).
//! The daemon serves metrics.rs over http.rs; its configuration is
//! config.rs (the file) and settings.rs (file, flags, reloads).
//! trace, record and replay share view.rs: filter.rs, the alert pipeline,
//! capture.rs (the record/replay file), summary.rs.

pub mod alert;
pub mod bpf_stats;
pub mod capture;
pub mod check;
pub mod cli;
pub mod config;
pub mod counters;
pub mod daemon;
pub mod dedup;
pub mod enrich;
pub mod errors;
pub mod filter;
pub mod http;
pub mod kernel;
pub mod loader;
pub mod manual;
pub mod metrics;
pub mod output;
pub mod pipeline;
pub mod programs;
pub mod record;
pub mod replay;
pub mod rules;
pub mod session;
pub mod settings;
pub mod sinks;
pub mod summary;
pub mod trace;
pub mod view;
