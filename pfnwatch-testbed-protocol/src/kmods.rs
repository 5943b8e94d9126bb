//! The Debian kernel modules the guest loads for the correct-driver
//! scenarios, named as `modinfo` names them (underscores). xtask takes each
//! from the kernel's own packages, with every module it depends on, and
//! packs them decompressed under [`dir`]; the guest loads a module's
//! dependencies in the order [`DEP_FILE`] gives, then the module.

/// The modules the scenarios ask for; dependencies come along by themselves.
/// Those every architecture has first ([`modules`]).
pub const MODULES: [&str; 5] = [
    // drm-dumb-buffer: qemu's bochs-display, through DRM (TTM on 6.x, GEM
    // shmem on 7.x).
    BOCHS,
    // uio-bar: qemu's edu device, bound through new_id.
    UIO_PCI_GENERIC,
    // dax-private: the legacy pmem region (memmap=nn!ss) as /dev/pmem0 ...
    ND_PMEM,
    ND_E820,
    // ... with an ext2 file system on it, mounted by ext4 with -o dax.
    EXT4,
];

/// The modules for a guest of Debian architecture `arch`: arm64 has no
/// legacy pmem region (memmap= is x86's), so no DAX scenario and no pmem
/// modules.
pub fn modules(arch: &str) -> &'static [&'static str] {
    match arch {
        "arm64" => &MODULES[..2],
        _ => &MODULES,
    }
}

pub const BOCHS: &str = "bochs";
pub const UIO_PCI_GENERIC: &str = "uio_pci_generic";
pub const ND_PMEM: &str = "nd_pmem";
pub const ND_E820: &str = "nd_e820";
pub const EXT4: &str = "ext4";

/// Where one kernel's modules live in the initramfs (no leading '/').
pub fn dir(release: &str) -> String {
    format!("lib/modules/{release}")
}

/// depmod's format, relative to [`dir`]: `kernel/a/b.ko: kernel/c.ko
/// kernel/d.ko`, every module the first needs, listed so that loading
/// from the last to the first works (as modprobe does). There being no
/// modprobe in the guest, a module's resolvable `softdep=pre:` modules are
/// listed there too.
pub const DEP_FILE: &str = "modules.dep";
/// The Debian package's own list of modules built into the kernel.
pub const BUILTIN_FILE: &str = "modules.builtin";

/// A module's name from its file: `kernel/fs/ext4/ext4.ko` -> `ext4`,
/// `crc32c-intel.ko.xz` -> `crc32c_intel` (the kernel reads '-' as '_').
pub fn name_of(path: &str) -> Option<String> {
    let file = path.rsplit('/').next()?;
    let stem = file.split_once(".ko").map(|(stem, _)| stem)?;
    (!stem.is_empty()).then(|| stem.replace('-', "_"))
}

/// `modules.dep` as (module path, its dependencies in load order: first
/// to load first). Lines that do not parse are skipped.
pub fn parse_dep(text: &str) -> Vec<(String, Vec<String>)> {
    text.lines()
        .filter_map(|line| {
            let (module, deps) = line.split_once(':')?;
            let mut deps: Vec<String> = deps.split_whitespace().map(str::to_owned).collect();
            deps.reverse();
            Some((module.trim().to_owned(), deps))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_file_names() {
        assert_eq!(name_of("kernel/fs/ext4/ext4.ko").as_deref(), Some("ext4"));
        assert_eq!(
            name_of("kernel/arch/x86/crypto/crc32c-intel.ko.xz").as_deref(),
            Some("crc32c_intel")
        );
        assert_eq!(name_of("modules.dep"), None);
        assert_eq!(name_of(".ko"), None);
    }

    #[test]
    fn dep_lines_load_from_the_end() {
        let dep = "kernel/b.ko: kernel/a2.ko kernel/a1.ko\nkernel/a1.ko:\nnonsense\n";
        assert_eq!(
            parse_dep(dep),
            [
                (
                    "kernel/b.ko".to_owned(),
                    vec!["kernel/a1.ko".to_owned(), "kernel/a2.ko".to_owned()]
                ),
                ("kernel/a1.ko".to_owned(), vec![]),
            ]
        );
    }
}
