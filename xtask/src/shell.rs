//! `cargo xtask vm-shell`: the test guest booted with `pfnwatch.mode=shell` and
//! the terminal attached, for poking at a kernel by hand.

use std::path::PathBuf;

use anyhow::Result;

use crate::{
    guest,
    kernels::{self, KernelSpec},
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
    let initrd = guest::prepare(&paths, options.guest_dir.as_deref())?;
    let kernel = kernels::fetch(options.kernel, &paths)?;
    println!("qemu: Ctrl-A x quits, Ctrl-A c toggles the monitor");
    qemu::interactive(&kernel.vmlinuz, &initrd, "shell")
}
