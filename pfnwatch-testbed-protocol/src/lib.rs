//! The protocol between pfnwatch's test guest and the host, declared once
//! for both sides of the VM boundary. The serial console is the only way
//! out of the guest, so everything travels as text lines:
//!
//! - `checks`: `pfnwatch-vmtest: PASS|FAIL <check>[: <detail>]`, `INFO`,
//!   and the final `verdict success|failure`;
//! - `files`: `pfnwatch-vmtest: FILE <name> <index> <base64>` chunks and a
//!   closing `END` line with length and CRC;
//! - `bench`: `pfnwatch-bench: <json>` result lines of `cargo xtask bench`;
//! - `deploy`: `cargo xtask deploy-test`'s checks and payload files;
//! - `kmods`: the kernel modules xtask packs for the guest, and where;
//! - `mode`: what the host asks the guest to do (`pfnwatch.mode=` on the
//!   kernel command line).
//!
//! The guest writes with the `*_line` functions and `files::encode`; the
//! host parses with `checks::parse_line`, `files::GuestFiles` and
//! `bench::parse`. Round-trip tests keep the two halves together.

pub mod bench;
pub mod checks;
pub mod deploy;
pub mod files;
pub mod kmods;
pub mod mode;
