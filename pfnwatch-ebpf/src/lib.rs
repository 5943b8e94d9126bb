//! pfnwatch's kernel programs, as one CO-RE BPF object that serves every
//! supported kernel. `build.rs` compiles `src/bpf/pfnwatch.bpf.c` with clang
//! against the header generated from `pfnwatch-common`.

#[repr(C, align(8))]
struct Aligned<B: ?Sized>(B);

// ELF parsing wants the object 8-byte aligned; include_bytes! is not.
static ALIGNED: &Aligned<[u8]> =
    &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/pfnwatch.bpf.o")));

/// The compiled BPF object (ELF, little endian, with BTF and CO-RE relocations).
pub static OBJECT: &[u8] = &ALIGNED.0;
