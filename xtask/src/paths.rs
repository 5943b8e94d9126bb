//! Where xtask keeps things: everything it downloads or generates lives under
//! `<target>/vmtest` (and `<target>/fuzz`), so `cargo clean` removes it and git never sees it.

use pfnwatch_testbed_protocol::mode::Mode;
use std::{
    env,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result};

#[derive(Debug, Clone)]
pub struct Paths {
    /// The workspace root (where `cargo build` for the guest runs).
    pub root: PathBuf,
    /// `<target>/vmtest`.
    pub vmtest: PathBuf,
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
        })
    }

    /// `<target>/fuzz`: the corpora the fuzz runs grow, and their logs.
    pub fn fuzz(&self) -> PathBuf {
        self.vmtest.with_file_name("fuzz")
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
