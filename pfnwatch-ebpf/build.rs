//! Compiles the kernel programs into one CO-RE object with clang, and the
//! benchmark's yardstick (an empty program) and its naive peer into two more.
//!
//! The ABI header is generated from pfnwatch-common first, so the C side
//! never carries its own copy of the record layout or constants.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const SOURCES: &[&str] = &[
    "src/bpf/pfnwatch.bpf.c",
    "src/bpf/kernel_types.h",
    "src/bpf/bench.bpf.c",
    "src/bpf/naive.bpf.c",
];

/// (source, object in OUT_DIR); lib.rs embeds each object.
const OBJECTS: &[(&str, &str)] = &[
    ("src/bpf/pfnwatch.bpf.c", "pfnwatch.bpf.o"),
    ("src/bpf/bench.bpf.c", "bench.bpf.o"),
    ("src/bpf/naive.bpf.c", "naive.bpf.o"),
];

fn main() {
    if let Err(err) = build() {
        // A build script reports failure by panicking; say what to do.
        panic!("pfnwatch-ebpf: {err}");
    }
}

fn build() -> Result<(), String> {
    let out = PathBuf::from(env::var("OUT_DIR").map_err(|e| format!("OUT_DIR: {e}"))?);
    for src in SOURCES {
        println!("cargo:rerun-if-changed={src}");
    }
    println!("cargo:rerun-if-env-changed=PFNWATCH_CLANG");

    let header = out.join("pfnwatch_abi.h");
    std::fs::write(&header, pfnwatch_common::c_header())
        .map_err(|e| format!("writing {}: {e}", header.display()))?;

    let clang = env::var("PFNWATCH_CLANG").unwrap_or_else(|_| "clang-19".to_owned());
    for (source, object) in OBJECTS {
        compile(&clang, &out, source, &out.join(object))?;
    }
    Ok(())
}

/// The build machine's Debian multiarch include directory, where
/// <linux/types.h> finds <asm/types.h>: any architecture's serves (the
/// programs take no arch-specific type from it), but it must exist, so an
/// arm64 host building natively takes its own.
fn multiarch_include() -> String {
    let host = env::var("HOST").unwrap_or_default();
    let own = match host.split('-').next() {
        Some("aarch64") => "aarch64-linux-gnu",
        _ => "x86_64-linux-gnu",
    };
    [own, "x86_64-linux-gnu", "aarch64-linux-gnu"]
        .into_iter()
        .map(|dir| format!("/usr/include/{dir}"))
        .find(|dir| Path::new(dir).join("asm").is_dir())
        .unwrap_or_else(|| format!("/usr/include/{own}"))
}

fn compile(clang: &str, out: &Path, source: &str, object: &Path) -> Result<(), String> {
    let status = Command::new(clang)
        .args(["-target", "bpf", "-g", "-O2", "-Wall", "-Werror"])
        // fentry/fexit programs read their arguments as u64s; the define
        // only picks bpf_tracing.h's pt_regs layout, which they do not use,
        // so the one object serves x86-64 and arm64.
        .args(["-D__TARGET_ARCH_x86", "-mcpu=v3"])
        .arg(format!("-I{}", multiarch_include()))
        .arg(format!("-I{}", out.display()))
        .args(["-c", source, "-o"])
        .arg(object)
        .status()
        .map_err(|e| {
            format!(
                "cannot run {clang}: {e}. Install clang-19 and libbpf-dev \
                 (apt-get install clang-19 libbpf-dev), or point PFNWATCH_CLANG at a clang"
            )
        })?;
    if !status.success() {
        return Err(format!("{clang} failed ({status}) compiling {source}"));
    }
    Ok(())
}
