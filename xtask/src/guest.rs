//! Everything that goes into the guest, ready to boot: binaries built (or taken
//! from `--guest-dir`) and the kernels' bad-driver modules, packed into
//! target/vmtest/initramfs.cpio.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

use crate::{
    badmod::Module, build, initramfs, kmods::KernelModules, paths::Paths, preflight::BUSYBOX,
};

/// Builds the guest programs and the initramfs, with the bad-driver module of
/// each kernel in `modules` and the Debian modules in `kernel_modules`;
/// returns the initramfs path.
pub fn prepare(
    paths: &Paths,
    guest_dir: Option<&Path>,
    modules: &[Module],
    kernel_modules: &[KernelModules],
) -> Result<PathBuf> {
    prepare_with(paths, guest_dir, modules, kernel_modules, &[])
}

/// [`prepare`], with `extra` files (path in the guest, file on the host).
pub fn prepare_with(
    paths: &Paths,
    guest_dir: Option<&Path>,
    modules: &[Module],
    kernel_modules: &[KernelModules],
    extra: &[(String, PathBuf)],
) -> Result<PathBuf> {
    let binaries = match guest_dir {
        Some(dir) => build::prebuilt_guest(dir)?,
        None => build::build_guest(paths).context("building the guest binaries")?,
    };
    let path = paths.initramfs();
    let busybox = if paths.arch.is_host() {
        PathBuf::from(BUSYBOX)
    } else {
        crate::cross::busybox(paths)?
    };
    let mut image = initramfs::guest_initramfs(&binaries, &busybox, modules, kernel_modules)?;
    for (guest, host) in extra {
        image.file_from(guest, host, 0o755)?;
    }
    image.write_to(&path).context("writing the initramfs")?;
    println!("initramfs: {}", path.display());
    Ok(path)
}
