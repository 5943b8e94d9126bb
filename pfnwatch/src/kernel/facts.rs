//! Facts about the running kernel that decide what pfnwatch can do on it.

use super::functions::Functions;
use super::lookups::SAFE_FOPS;
use anyhow::{Context, Result};
use aya::Btf;
use pfnwatch_common::abi;
use pfnwatch_common::pgtable::{self, Geometry};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

pub const SYS_BTF: &str = "/sys/kernel/btf/vmlinux";

/// The kernel release (`uname -r`).
pub fn release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// The running kernel's page-table layout: the architecture this binary
/// was built for, the page size, and on arm64 whether LPA2 is on. Where
/// pfnwatch does not know the layout it refuses to load rather than decode
/// entries wrongly (on arm64, say, x86's special bit 9 is a shareability
/// bit set on nearly every pte).
pub fn host_geometry() -> Result<Geometry, String> {
    let arch = std::env::consts::ARCH;
    // SAFETY: sysconf has no preconditions.
    let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let page_shift = u64::try_from(page_size)
        .ok()
        .filter(|size| size.is_power_of_two())
        .map_or(0, u64::trailing_zeros);
    let lpa2 = arch == "aarch64" && page_shift < 16 && wide_user_addresses();
    Geometry::of_host(arch, page_shift, lpa2).ok_or_else(|| {
        format!(
            "pfnwatch decodes page-table entries for {} (arm64 with 4, 16 or 64 KiB pages, \
             x86-64 with 4 KiB), not {arch} with {page_size}-byte pages: its rules would read \
             the wrong bits here",
            pgtable::ARCHES.join(", ")
        )
    })
}

/// The layout in words, for `check` and the logs.
pub fn describe_geometry(g: &Geometry) -> String {
    let lpa2 = if g.pfn_high_mask != 0 && g.page_shift < 16 {
        ", LPA2 (52-bit physical addresses)"
    } else {
        ""
    };
    format!(
        "{}, {} KiB pages{lpa2}, special bit {}",
        std::env::consts::ARCH,
        g.pte_size >> 10,
        g.special.trailing_zeros()
    )
}

/// arm64: whether user space may map above 2^48, i.e. the kernel runs with
/// 52-bit virtual addresses. With 4 or 16 KiB pages those need LPA2, and
/// the kernel turns both on together or neither (arch/arm64/kernel/pi/
/// map_kernel.c and idreg-override.c: no LPA2, VA_BITS_MIN). A hint above
/// 2^48 is honoured only when TASK_SIZE allows it (arch_get_mmap_end).
fn wide_user_addresses() -> bool {
    const HINT: usize = 1 << 50;
    // SAFETY: a private anonymous PROT_NONE mapping at a hint (not
    // MAP_FIXED): it cannot replace anything, and is unmapped at once.
    unsafe {
        let page = libc::mmap(
            HINT as *mut libc::c_void,
            1,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if page == libc::MAP_FAILED {
            return false;
        }
        libc::munmap(page, 1);
        page as usize >= 1 << 48
    }
}

/// Kernel addresses the programs read values at (0: unknown), from
/// /proc/kallsyms. None is a BTF variable on Debian's kernels (only per-CPU
/// ones are), so the programs cannot name them; with kptr_restrict hiding
/// addresses they stay 0 and the programs fall back on their defaults.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelAddresses {
    /// x86 `physical_mask` (CONFIG_DYNAMIC_PHYSICAL_MASK): the pfn bits
    /// without the memory-encryption bits.
    pub physical_mask: u64,
    /// `zero_pfn` (6.x) or `zero_page_pfn` (7.x): the shared zero page.
    pub zero_pfn: u64,
    /// `special_mapping_vmops`: the vm_ops of the vDSO and vvar mappings.
    pub special_mapping_vmops: u64,
    /// The `file_operations` of [`super::lookups::SAFE_FOPS`], in order.
    pub safe_fops: [u64; abi::SAFE_FOPS_SLOTS],
}

impl KernelAddresses {
    pub fn read() -> KernelAddresses {
        open_kallsyms(Path::new(KALLSYMS))
            .map(KernelAddresses::parse)
            .unwrap_or_default()
    }

    pub fn parse(kallsyms: impl BufRead) -> KernelAddresses {
        let mut found = KernelAddresses::default();
        // A read cut short leaves the rest unknown (0), as a missing
        // symbol does.
        kallsyms_lines(kallsyms, |line| found.feed(line)).unwrap_or_default();
        found
    }

    /// Takes what it needs from one kallsyms line: so a reader of the
    /// whole file for other reasons (the call-path symbols) can fill it
    /// on the way, and the kernel formats the file once.
    pub fn feed(&mut self, line: &str) {
        let mut words = line.split_whitespace();
        let (Some(addr), Some(_), Some(name)) = (words.next(), words.next(), words.next()) else {
            return;
        };
        // Module symbols carry a "[module]" column: not these.
        if words.next().is_some() {
            return;
        }
        let safe = SAFE_FOPS.iter().position(|s| *s == name);
        let slot = match (name, safe) {
            ("physical_mask", _) => &mut self.physical_mask,
            ("zero_pfn" | "zero_page_pfn", _) => &mut self.zero_pfn,
            ("special_mapping_vmops", _) => &mut self.special_mapping_vmops,
            (_, Some(i)) => &mut self.safe_fops[i],
            _ => return,
        };
        *slot = u64::from_str_radix(addr, 16).unwrap_or(0);
    }
}

/// Where the kernel lists its symbols.
pub const KALLSYMS: &str = "/proc/kallsyms";

/// A kallsyms file opened for [`kallsyms_lines`].
pub fn open_kallsyms(path: &Path) -> std::io::Result<BufReader<std::fs::File>> {
    std::fs::File::open(path).map(|f| BufReader::with_capacity(64 << 10, f))
}

/// Calls `each` with every line of a kallsyms text. The file is 10 to 20 MB
/// and is read a line at a time, never whole: a buffer that size, freed,
/// raises glibc's mmap threshold and leaves the heap to grow in its place
/// (the 7.2 soak's RSS steps). A module may name a symbol anything: invalid
/// UTF-8 is replaced, not a reason to lose the file.
pub fn kallsyms_lines(mut input: impl BufRead, mut each: impl FnMut(&str)) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(256);
    loop {
        buf.clear();
        if input.read_until(b'\n', &mut buf)? == 0 {
            return Ok(());
        }
        each(&String::from_utf8_lossy(&buf));
    }
}

/// The kernel's BTF, parsed for CO-RE, and the functions pfnwatch may
/// attach to in it.
pub struct KernelBtf {
    pub btf: Btf,
    pub functions: Functions,
}

/// Loads the kernel's BTF from `path`, or from sysfs. A missing BTF is an
/// error the caller reports: without it CO-RE and fentry cannot work.
pub fn load_btf(path: Option<&Path>) -> Result<KernelBtf> {
    let path = path.map_or_else(|| PathBuf::from(SYS_BTF), Path::to_path_buf);
    let raw = std::fs::read(&path).map_err(|error| {
        if error.kind() == std::io::ErrorKind::NotFound {
            anyhow::anyhow!(
                "no kernel BTF at {}: this kernel was built without CONFIG_DEBUG_INFO_BTF \
                 (pass --btf with a BTF file for it)",
                path.display()
            )
        } else {
            anyhow::Error::new(error).context(format!("reading BTF {}", path.display()))
        }
    })?;
    let btf = Btf::parse(&raw, aya::Endianness::default())
        .map_err(|e| anyhow::Error::new(e).context(format!("reading BTF {}", path.display())))?;
    let functions = Functions::find(&raw, &btf);
    Ok(KernelBtf { btf, functions })
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
    fn kernel_addresses_come_from_kallsyms_or_stay_unknown() {
        let text = "ffffffff8242bf20 D physical_mask\n\
                    ffffffff82c3dea0 D zero_pfn\n\
                    ffffffff82000100 d special_mapping_vmops\n\
                    ffffffffc0001000 d zero_pfn\t[some_module]\n\
                    ffffffff81000000 T _stext\n";
        let a = KernelAddresses::parse(text.as_bytes());
        assert_eq!(a.physical_mask, 0xffff_ffff_8242_bf20);
        assert_eq!(
            a.zero_pfn, 0xffff_ffff_82c3_dea0,
            "the module's is not the kernel's"
        );
        assert_eq!(a.special_mapping_vmops, 0xffff_ffff_8200_0100);
        // 7.x names the zero pfn zero_page_pfn.
        let seven = KernelAddresses::parse(&b"ffffffff82b48fc0 R zero_page_pfn\n"[..]);
        assert_eq!(seven.zero_pfn, 0xffff_ffff_82b4_8fc0);
        // kptr_restrict: zeros, which the programs take as unknown.
        let hidden = KernelAddresses::parse(&b"0000000000000000 D physical_mask\n"[..]);
        assert_eq!(hidden, KernelAddresses::default());
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
