//! pfnwatch's user space: loads the kernel programs, reads their counters
//! and records, and turns them into checks, traces and daemon output.
//!
//! hook (programs.rs) -> load (loader.rs) -> record (record.rs) ->
//! rule (rules.rs) -> output (output.rs, trace.rs, daemon.rs).

pub mod alert;
pub mod check;
pub mod cli;
pub mod counters;
pub mod daemon;
pub mod dedup;
pub mod enrich;
pub mod errors;
pub mod kernel;
pub mod loader;
pub mod output;
pub mod pipeline;
pub mod programs;
pub mod record;
pub mod rules;
pub mod session;
pub mod sinks;
pub mod trace;
