//! Where xtask keeps things: everything it downloads or generates lives under
//! `<target>/vmtest` (and `<target>/fuzz`), so `cargo clean` removes it and git never sees it.

use pfnwatch_testbed_protocol::mode::Mode;
use std::{
    env,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result};

use crate::arch::Arch;

#[derive(Debug, Clone)]
pub struct Paths {
    /// The workspace root (where `cargo build` for the guest runs).
    pub root: PathBuf,
    /// `<target>/vmtest`, or `<target>/vmtest/arm64` for arm64 guests: apt
    /// roots, kernels, modules and initramfs are per architecture.
    pub vmtest: PathBuf,
    /// The guests' architecture.
    pub arch: Arch,
    /// `<target>/vmtest` whatever the architecture.
    all_vmtest: PathBuf,
}

impl Paths {
    pub fn discover() -> Result<Self> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .context("xtask's manifest directory has no parent")?
            .to_owned();
        let target = match env::var_os("CARGO_TARGET_DIR") {
            Some(dir) => root.join(dir),
            None => root.join("target"),
        };
        Ok(Self {
            root,
            vmtest: target.join("vmtest"),
            arch: Arch::X86_64,
            all_vmtest: target.join("vmtest"),
        })
    }

    /// An x86-64 tree at `vmtest` (tests).
    #[cfg(test)]
    pub fn at(root: PathBuf, vmtest: PathBuf) -> Self {
        Self {
            root,
            all_vmtest: vmtest.clone(),
            vmtest,
            arch: Arch::X86_64,
        }
    }

    /// The same tree for `arch`'s guests.
    pub fn for_arch(&self, arch: Arch) -> Self {
        let vmtest = match arch {
            Arch::X86_64 => self.all_vmtest.clone(),
            other => self.all_vmtest.join(other.name()),
        };
        Self {
            vmtest,
            arch,
            ..self.clone()
        }
    }

    /// `<target>/fuzz`: the corpora the fuzz runs grow, and their logs.
    pub fn fuzz(&self) -> PathBuf {
        self.all_vmtest.with_file_name("fuzz")
    }

    /// The private apt root for one suite.
    pub fn apt_dir(&self, suite: &str) -> PathBuf {
        self.vmtest.join("apt").join(suite)
    }

    fn kernels(&self) -> PathBuf {
        self.vmtest.join("kernels")
    }

    /// Extracted vmlinuz (and config) of one kernel package version.
    pub fn kernel_dir(&self, package: &str, version: &str) -> PathBuf {
        self.kernels().join(format!("{package}_{version}"))
    }

    /// Names the kernel a suite resolved to last (`<package> <version>`).
    pub fn last_kernel_file(&self, suite: &str) -> PathBuf {
        self.kernels().join(format!("{suite}.last"))
    }

    pub fn initramfs(&self) -> PathBuf {
        self.vmtest.join("initramfs.cpio")
    }

    /// The console log of one boot, e.g. `6.12.console.log` or `newest.demo.console.log`.
    pub fn console_log(&self, label: &str, mode: Mode) -> PathBuf {
        let name = match mode {
            Mode::Test => format!("{label}.console.log"),
            other => format!("{label}.{other}.console.log"),
        };
        self.vmtest.join(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_architecture_has_its_own_tree_and_shares_the_fuzz_corpora() {
        let x86 = Paths::at(PathBuf::from("/w"), PathBuf::from("/w/target/vmtest"));
        let arm = x86.for_arch(Arch::Arm64);
        assert_eq!(arm.vmtest, Path::new("/w/target/vmtest/arm64"));
        assert_eq!(
            arm.apt_dir("testing"),
            Path::new("/w/target/vmtest/arm64/apt/testing")
        );
        assert_eq!(arm.fuzz(), x86.fuzz());
        // And back: the host's tree, whichever one asks.
        assert_eq!(arm.for_arch(Arch::X86_64).vmtest, x86.vmtest);
        assert_eq!(arm.for_arch(Arch::Arm64).vmtest, arm.vmtest);
    }
}
