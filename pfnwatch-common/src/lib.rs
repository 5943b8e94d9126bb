//! The ABI between pfnwatch's kernel programs (C, in `pfnwatch-ebpf`) and its
//! user space, defined once.
//!
//! Rust is the source of truth: [`c_header`] renders these definitions as the
//! C header the kernel programs include (pfnwatch-ebpf's build script writes
//! it), and a test checks the compiled object's BTF against the Rust layout,
//! so the two sides cannot drift apart.

pub mod abi;
mod c_header;
pub mod class;
pub mod hook;
pub mod mask;
pub mod pgtable;
#[cfg(feature = "serde")]
mod serde_impls;
pub mod vm_flags;

pub use abi::Event;
pub use c_header::c_header;
pub use class::Class;
pub use hook::{Family, Hook};
pub use mask::RecordMask;
pub use pgtable::Level;
