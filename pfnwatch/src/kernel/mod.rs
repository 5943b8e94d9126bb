//! The kernel side, seen from user space: what this kernel has (`facts`;
//! the functions to attach to and their BTF ids in `functions`),
//! the programs as data (`programs`), loading and attaching them (`loader`,
//! with `refusals` turning errnos into hints), the running session
//! (`session`: signals, the page-table lookups on demand in `lookups`, the
//! ring buffers' reader thread in `reader`), its per-CPU counters (`counters`,
//! `bpf_stats`) and the records it sends, decoded once (`decode`).

pub mod bpf_stats;
pub mod counters;
pub mod decode;
pub mod facts;
pub mod functions;
pub mod loader;
pub mod lookups;
pub mod programs;
pub mod reader;
pub mod refusals;
pub mod session;
