//! Facts about the running kernel that decide what pfnwatch can do on it.

use anyhow::{Context, Result};
use aya::{Btf, BtfError};
use std::io::Read;
use std::path::{Path, PathBuf};

pub const SYS_BTF: &str = "/sys/kernel/btf/vmlinux";

/// The kernel release (`uname -r`).
pub fn release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// Loads the kernel's BTF from `path`, or from sysfs. A missing BTF is an
/// error the caller reports: without it CO-RE and fentry cannot work.
pub fn load_btf(path: Option<&Path>) -> Result<(Btf, PathBuf)> {
    let path = path.map_or_else(|| PathBuf::from(SYS_BTF), Path::to_path_buf);
    let btf = Btf::parse_file(&path, aya::Endianness::default()).map_err(|e| match e {
        BtfError::FileError { error, .. } if error.kind() == std::io::ErrorKind::NotFound => {
            anyhow::anyhow!(
                "no kernel BTF at {}: this kernel was built without CONFIG_DEBUG_INFO_BTF \
                 (pass --btf with a BTF file for it)",
                path.display()
            )
        }
        other => anyhow::Error::new(other).context(format!("reading BTF {}", path.display())),
    })?;
    Ok((btf, path))
}

/// Whether the kernel has the given function in its BTF (not inlined away).
pub fn has_function(btf: &Btf, name: &str) -> bool {
    btf.id_by_type_name_kind(name, aya_obj::btf::BtfKind::Func)
        .is_ok()
}

/// Capabilities that matter for loading tracing programs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Caps {
    pub sys_admin: bool,
    pub perfmon: bool,
    pub bpf: bool,
}

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

impl Caps {
    pub fn current() -> Result<Caps> {
        let status =
            std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
        Caps::from_status(&status).context("parsing CapEff in /proc/self/status")
    }

    pub fn from_status(status: &str) -> Result<Caps> {
        let hex = status
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .context("no CapEff line")?
            .trim();
        let eff = u64::from_str_radix(hex, 16).with_context(|| format!("bad CapEff {hex:?}"))?;
        let has = |cap: u32| eff & (1 << cap) != 0;
        Ok(Caps {
            sys_admin: has(CAP_SYS_ADMIN),
            perfmon: has(CAP_PERFMON),
            bpf: has(CAP_BPF),
        })
    }

    /// fentry/fexit need CAP_BPF with CAP_PERFMON, or CAP_SYS_ADMIN.
    pub fn can_trace(self) -> bool {
        self.sys_admin || (self.bpf && self.perfmon)
    }
}

/// Whether the architecture keeps a "special" bit in its ptes, and how we know.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PteSpecial {
    pub present: bool,
    pub source: String,
}

/// Reads CONFIG_ARCH_HAS_PTE_SPECIAL from the kernel config when one can be
/// found; otherwise falls back on what the architecture is known to select.
pub fn pte_special(release: &str) -> PteSpecial {
    for path in [
        format!("/boot/config-{release}"),
        "/proc/config.gz".to_owned(),
    ] {
        if let Some(config) = read_config(Path::new(&path)) {
            return PteSpecial {
                present: config
                    .lines()
                    .any(|l| l.trim() == "CONFIG_ARCH_HAS_PTE_SPECIAL=y"),
                source: path,
            };
        }
    }
    let arch = std::env::consts::ARCH;
    // Architectures that select ARCH_HAS_PTE_SPECIAL unconditionally.
    let present = matches!(
        arch,
        "x86_64" | "aarch64" | "s390x" | "powerpc64" | "riscv64" | "loongarch64"
    );
    PteSpecial {
        present,
        source: format!("architecture {arch} (no kernel config found)"),
    }
}

fn read_config(path: &Path) -> Option<String> {
    let bytes = std::fs::read(path).ok()?;
    if path.extension().is_some_and(|e| e == "gz") {
        let mut text = String::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_string(&mut text)
            .ok()?;
        Some(text)
    } else {
        String::from_utf8(bytes).ok()
    }
}

/// Settings that commonly block BPF, shown by `check` as hints.
pub fn bpf_restrictions() -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(v) = std::fs::read_to_string("/proc/sys/kernel/unprivileged_bpf_disabled") {
        out.push(format!("kernel.unprivileged_bpf_disabled = {}", v.trim()));
    }
    if let Ok(v) = std::fs::read_to_string("/sys/kernel/security/lockdown") {
        out.push(format!("lockdown: {}", v.trim()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_decode_cap_eff() {
        let root = "Name:\tx\nCapEff:\t000001ffffffffff\n";
        assert_eq!(
            Caps::from_status(root).unwrap(),
            Caps {
                sys_admin: true,
                perfmon: true,
                bpf: true
            }
        );
        // CAP_BPF (39) and CAP_PERFMON (38) only.
        let split = "CapEff:\t000000c000000000\n";
        let caps = Caps::from_status(split).unwrap();
        assert!(!caps.sys_admin && caps.can_trace());
        let none = Caps::from_status("CapEff:\t0000000000000000\n").unwrap();
        assert!(!none.can_trace());
        assert!(Caps::from_status("CapEff:\tzz\n").is_err());
        assert!(Caps::from_status("Name:\tx\n").is_err());
    }

    #[test]
    fn missing_btf_is_a_clear_error() {
        let err = load_btf(Some(Path::new("/nonexistent/vmlinux")))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("/nonexistent/vmlinux"), "{err}");
        assert!(err.contains("CONFIG_DEBUG_INFO_BTF"), "{err}");
    }

    #[test]
    fn reads_plain_and_gzip_configs() {
        let dir = std::env::temp_dir().join(format!("pfnwatch-kcfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let plain = dir.join("config");
        std::fs::write(&plain, "CONFIG_ARCH_HAS_PTE_SPECIAL=y\n").unwrap();
        assert!(read_config(&plain).unwrap().contains("PTE_SPECIAL=y"));
        let gz = dir.join("config.gz");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut enc, b"CONFIG_X=y\n").unwrap();
        std::fs::write(&gz, enc.finish().unwrap()).unwrap();
        assert_eq!(read_config(&gz).unwrap(), "CONFIG_X=y\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
