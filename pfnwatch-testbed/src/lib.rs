//! The guest side of pfnwatch's VM test bed.
//!
//! `pfnwatch-scenario <scenario>` makes the kernel map pfns in one known way
//! and reports what it mapped; `pfnwatch-guest-init` (PID 1 in the VM) runs
//! pfnwatch and every scenario, and judges pfnwatch's records against
//! expectations derived from each kernel's code (`expect.rs`).

pub mod devices;
pub mod drivers;
pub mod expect;
mod expect_correct;
pub mod guest;
pub mod judge;
pub mod kmod;
pub mod report;
pub mod scenario;
pub mod sys;
pub mod uapi;
