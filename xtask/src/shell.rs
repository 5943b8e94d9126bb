//! `cargo xtask vm-shell`: the test guest booted with `pfnwatch.mode=shell` and
//! the terminal attached, for poking at a kernel by hand.

use pfnwatch_testbed_protocol::mode::Mode;
use std::path::PathBuf;

use anyhow::Result;

use crate::{
    badmod, guest,
    kernels::{self, KernelSpec},
    kmods,
    paths::Paths,
    preflight, qemu,
};

#[derive(Debug, Clone)]
pub struct Options {
    pub kernel: KernelSpec,
    pub guest_dir: Option<PathBuf>,
}

pub fn run(options: &Options) -> Result<()> {
    preflight::check()?;
    let paths = Paths::discover()?;
    let kernel = kernels::fetch(options.kernel, &paths)?;
    // Handy by hand (`insmod /lib/pfnwatch/badmod-$(uname -r).ko bar_pfn=0xfd000`),
    // not needed for a shell: a failed build is only a warning.
    let modules = match badmod::build(&paths, &kernel) {
        Ok(module) => vec![module],
        Err(err) => {
            println!("warning: no bad-driver module in this guest: {err:#}");
            Vec::new()
        }
    };
    // The Debian modules the correct-driver scenarios load, likewise.
    let kernel_modules = match kmods::fetch(&kernel, &paths) {
        Ok(kernel_modules) => vec![kernel_modules],
        Err(err) => {
            println!("warning: no Debian modules in this guest: {err:#}");
            Vec::new()
        }
    };
    let initrd = guest::prepare(
        &paths,
        options.guest_dir.as_deref(),
        &modules,
        &kernel_modules,
    )?;
    println!("qemu: Ctrl-A x quits, Ctrl-A c toggles the monitor");
    qemu::interactive(paths.arch, &kernel.vmlinuz, &initrd, Mode::Shell)
}
