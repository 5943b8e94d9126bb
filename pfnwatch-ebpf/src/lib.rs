//! pfnwatch's kernel programs, as one CO-RE BPF object that serves every
//! supported kernel. `build.rs` compiles `src/bpf/pfnwatch.bpf.c` with clang
//! against the header generated from `pfnwatch-common`, and
//! `src/bpf/bench.bpf.c`, the benchmark's empty program, into a second object.

#[repr(C, align(8))]
struct Aligned<B: ?Sized>(B);

// ELF parsing wants the object 8-byte aligned; include_bytes! is not.
static ALIGNED: &Aligned<[u8]> =
    &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/pfnwatch.bpf.o")));

static BENCH_ALIGNED: &Aligned<[u8]> =
    &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/bench.bpf.o")));

static NAIVE_ALIGNED: &Aligned<[u8]> =
    &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/naive.bpf.o")));

/// The compiled BPF object (ELF, little endian, with BTF and CO-RE relocations).
pub static OBJECT: &[u8] = &ALIGNED.0;

/// `cargo xtask bench`'s yardstick: one program, [`BENCH_EMPTY_PROGRAM`],
/// an fexit on `vm_normal_page` that returns at once. Never loaded by
/// pfnwatch itself.
pub static BENCH_OBJECT: &[u8] = &BENCH_ALIGNED.0;

/// The program in [`BENCH_OBJECT`] (also its name in the kernel: < 16 bytes).
pub const BENCH_EMPTY_PROGRAM: &str = "empty_exit";

/// `cargo xtask bench`'s naive peer: [`NAIVE_PROGRAM`], an fexit on
/// `vm_normal_page` sending every call through the ring buffer
/// [`NAIVE_RING`], its losses counted in [`NAIVE_LOST`]. Never loaded by
/// pfnwatch itself.
pub static NAIVE_OBJECT: &[u8] = &NAIVE_ALIGNED.0;
pub const NAIVE_PROGRAM: &str = "naive_exit";
pub const NAIVE_RING: &str = "naive_events";
pub const NAIVE_LOST: &str = "naive_lost";
