//! Loading the Debian kernel modules xtask packed for this kernel
//! (pfnwatch-testbed-protocol's `kmods`): each module's dependencies in
//! modules.dep's order, then the module, with finit_module(2). Loading is
//! idempotent, so every scenario that needs a module asks for it.

use anyhow::{Context, Result, bail};
use pfnwatch_testbed_protocol::kmods;
use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// How a module came to be there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loaded {
    /// Built into the kernel: nothing to load.
    BuiltIn,
    /// Loaded now or earlier: the modules of its chain, dependencies first.
    Chain(Vec<String>),
}

impl std::fmt::Display for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Loaded::BuiltIn => f.write_str("built in"),
            Loaded::Chain(chain) => write!(f, "loaded {}", chain.join(" -> ")),
        }
    }
}

/// Loads `name` and what it needs, unless the kernel has it already.
pub fn ensure(name: &str) -> Result<Loaded> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .context("reading the kernel release")?;
    let dir = Path::new("/").join(kmods::dir(release.trim()));
    ensure_in(&dir, name).with_context(|| format!("module {name} for {}", release.trim()))
}

fn ensure_in(dir: &Path, name: &str) -> Result<Loaded> {
    let builtin = std::fs::read_to_string(dir.join(kmods::BUILTIN_FILE)).unwrap_or_default();
    if builtin
        .lines()
        .any(|l| kmods::name_of(l).as_deref() == Some(name))
    {
        return Ok(Loaded::BuiltIn);
    }
    let dep_file = dir.join(kmods::DEP_FILE);
    let dep = std::fs::read_to_string(&dep_file).with_context(|| {
        format!(
            "reading {} (xtask packs the modules of every kernel it tests)",
            dep_file.display()
        )
    })?;
    let Some((path, deps)) = kmods::parse_dep(&dep)
        .into_iter()
        .find(|(path, _)| kmods::name_of(path).as_deref() == Some(name))
    else {
        bail!(
            "neither built in nor in {}: the kernel's packages lack it",
            dep_file.display()
        );
    };
    let mut chain = Vec::new();
    for module in deps.iter().chain(std::iter::once(&path)) {
        load(&dir.join(module))?;
        chain.push(kmods::name_of(module).unwrap_or_else(|| module.clone()));
    }
    Ok(Loaded::Chain(chain))
}

/// finit_module(2) without parameters; one already loaded is fine.
fn load(path: &PathBuf) -> Result<()> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let params = CString::default();
    // SAFETY: a valid fd and an empty NUL-terminated parameter string; flags 0.
    let rc = unsafe { libc::syscall(libc::SYS_finit_module, file.as_raw_fd(), params.as_ptr(), 0) };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EEXIST) {
            return Err(err).with_context(|| format!("finit_module({})", path.display()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_modules_need_nothing_and_unknown_ones_are_named() {
        let dir = std::env::temp_dir().join(format!("pfnwatch-kmod-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(kmods::BUILTIN_FILE), "kernel/fs/ext4/ext4.ko\n").unwrap();
        std::fs::write(dir.join(kmods::DEP_FILE), "kernel/drivers/uio/uio.ko:\n").unwrap();
        assert_eq!(ensure_in(&dir, "ext4").unwrap(), Loaded::BuiltIn);
        let err = format!("{:#}", ensure_in(&dir, "bochs").unwrap_err());
        assert!(err.contains("neither built in nor in"), "{err}");
        // Listed but not there: the open fails and says which file.
        let err = format!("{:#}", ensure_in(&dir, "uio").unwrap_err());
        assert!(err.contains("uio.ko"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
