//! pfnwatch's user space. A record's path, one stage per folder:
//!
//! 1. `kernel/`: load and attach the programs, read the ring buffer and
//!    the per-CPU counters; each record is decoded once (`decode.rs`).
//! 2. `rules/`: the rule table as data; a record is evaluated once.
//! 3. `enrich/`: host context (call path symbols, cgroup, driver), looked
//!    up once per record, through one set of caches.
//! 4. `pipeline/`: filters, rules, host context and duplicate collapsing
//!    in one [`pipeline::Pipeline`] that every command feeds; it hands an
//!    [`pipeline::Outcome`] and the alerts to the sinks.
//! 5. `sinks/`: the daemon's outputs: the alert log, the alerts file,
//!    `/metrics` and its HTTP listener.
//! 6. `views/`: trace's and replay's lines (text, JSON), the summary, the
//!    capture file.
//! 7. `commands/`: `check`, `run`, `trace`/`record`, `replay`, `man` and
//!    `completions`, on top of `cli.rs`.
//!
//! `logging.rs` sends the log to the journal under systemd, else to stderr.

pub mod cli;
pub mod commands;
pub mod enrich;
pub mod kernel;
pub mod logging;
pub mod pipeline;
pub mod printable;
pub mod rules;
pub mod sinks;
pub mod views;
