//! The subcommands, each on top of the stages below: `check` asks the
//! kernel what it supports; `run` is the daemon; `trace` (and `record`,
//! which also writes a capture) the live view; `replay` a capture through
//! the same pipeline; `manual` the man pages and shell completions;
//! `synth` the made-up capture `cargo xtask bench` times.

pub mod check;
pub mod manual;
pub mod replay;
pub mod run;
pub mod synth;
pub mod trace;
