//! Loads the bad-driver test module (pfnwatch-testbed/badmod) that xtask
//! built for this kernel: one misc device per way a driver can break the
//! VM_PFNMAP/VM_MIXEDMAP rules, each mapping qemu's VGA BAR.

use super::Reporter;
use crate::expect::KernelVersion;
use crate::scenario::Scenario;
use anyhow::{Context, Result, bail, ensure};
use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

/// The BAR the devices map: PCI 00:02.0 (`-vga std`) resource 0. Its pfns
/// have no struct page.
const BAR_RESOURCE: &str = "/sys/bus/pci/devices/0000:00:02.0/resource";
/// qemu's ivshmem-plain (PCI 1af4:1110): its BAR 2 is the 1 GiB memory
/// xtask gives it, for the pud-sized map.
const IVSHMEM: (&str, &str) = ("0x1af4", "0x1110");
const IVSHMEM_BAR: usize = 2;
/// What the module says it registered.
const DEVICES_PARAM: &str = "/sys/module/pfnwatch_badmod/parameters/devices";

/// The module's devices, under /dev (see badmod/README.md for what each does).
const DEVICES: [&str; 7] = [
    "pfnw-insert-mixed",
    "pfnw-partial-remap",
    "pfnw-normal-pfnmap",
    "pfnw-pgoff",
    "pfnw-bad-page-map",
    "pfnw-zero-cow-pfnmap",
    "pfnw-apply-range",
];
/// Only where the kernel has pmd and pud pfn maps (6.12 on).
const HUGE_DEVICES: [&str; 2] = ["pfnw-huge-pfnmap", "pfnw-huge-pud"];

/// The devices the module must register on this kernel.
fn devices(kernel: KernelVersion) -> Vec<&'static str> {
    let mut devices = DEVICES.to_vec();
    // vmf_insert_page_mkwrite came with 6.15.
    if Scenario::ModInsertPage.runs_on(kernel) {
        devices.push("pfnw-insert-page");
    }
    if Scenario::ModHugePfnmap.runs_on(kernel) {
        devices.extend(HUGE_DEVICES);
    }
    devices
}

/// devtmpfs creates the nodes as the module registers them; this is slack.
const NODE_WAIT: Duration = Duration::from_secs(2);

/// Loads the module and reports `module/load`.
pub fn load(rep: &mut Reporter, kernel: KernelVersion) {
    match try_load(&devices(kernel)) {
        Ok(detail) => rep.pass("module/load", &detail),
        Err(e) => rep.fail("module/load", &format!("{e:#}")),
    }
}

fn try_load(devices: &[&str]) -> Result<String> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .context("reading the kernel release")?;
    // xtask's badmod::guest_path().
    let path = format!("/lib/pfnwatch/badmod-{}.ko", release.trim());
    let resource =
        std::fs::read_to_string(BAR_RESOURCE).with_context(|| format!("reading {BAR_RESOURCE}"))?;
    let (pfn, pages) = bar(&resource, 0).with_context(|| format!("parsing {BAR_RESOURCE}"))?;
    let mut params = format!("bar_pfn={pfn:#x} bar_pages={pages}");
    if let Some(path) = find_pci(IVSHMEM)? {
        let path = path.join("resource");
        let resource = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let (pfn, pages) =
            bar(&resource, IVSHMEM_BAR).with_context(|| format!("parsing {}", path.display()))?;
        params.push_str(&format!(" pud_bar_pfn={pfn:#x} pud_bar_pages={pages}"));
    }
    let file = std::fs::File::open(&path)
        .with_context(|| format!("opening {path} (built by xtask for this kernel?)"))?;
    let c_params = CString::new(params.clone())?;
    // SAFETY: a valid fd and NUL-terminated parameter string; flags 0.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_finit_module,
            file.as_raw_fd(),
            c_params.as_ptr(),
            0,
        )
    };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        // Loaded already (a second run in one boot): what it created still counts.
        if err.raw_os_error() != Some(libc::EEXIST) {
            return Err(err).with_context(|| format!("finit_module({path}, {params:?})"));
        }
    }
    let listed = std::fs::read_to_string(DEVICES_PARAM)
        .with_context(|| format!("reading {DEVICES_PARAM}"))?;
    let missing: Vec<&str> = devices
        .iter()
        .copied()
        .filter(|device| !listed.split_whitespace().any(|name| name == *device))
        .collect();
    ensure!(
        missing.is_empty(),
        "the module did not register {missing:?} (it lists {:?})",
        listed.trim()
    );
    wait_for_nodes(devices)?;
    Ok(format!(
        "{path} with {params}: /dev/{}",
        devices.join(", /dev/")
    ))
}

/// The PCI device with this (vendor, device) id, if the machine has one.
fn find_pci(id: (&str, &str)) -> Result<Option<std::path::PathBuf>> {
    let dir = "/sys/bus/pci/devices";
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {dir}"))? {
        let path = entry?.path();
        let read = |f: &str| std::fs::read_to_string(path.join(f)).unwrap_or_default();
        if read("vendor").trim() == id.0 && read("device").trim() == id.1 {
            return Ok(Some(path));
        }
    }
    Ok(None)
}

/// (first pfn, pages) of BAR `index` from a sysfs PCI `resource` file (one
/// `start end flags` line per BAR, in hex).
fn bar(resource: &str, index: usize) -> Result<(u64, u64)> {
    let mut fields = resource
        .lines()
        .nth(index)
        .unwrap_or_default()
        .split_whitespace();
    let mut hex = |what: &str| -> Result<u64> {
        let field = fields.next().with_context(|| format!("no {what}"))?;
        let digits = field.trim_start_matches("0x");
        u64::from_str_radix(digits, 16).with_context(|| format!("{what} {field:?}"))
    };
    let (start, end) = (hex("start")?, hex("end")?);
    if start == 0 || end < start || start % 4096 != 0 || end - start + 1 < 4096 {
        bail!("resource {index} is {start:#x}..{end:#x}, not a page-aligned BAR of a page or more");
    }
    Ok((start >> 12, (end - start + 1) >> 12))
}

fn wait_for_nodes(devices: &[&str]) -> Result<()> {
    let deadline = Instant::now() + NODE_WAIT;
    loop {
        let missing: Vec<&str> = devices
            .iter()
            .copied()
            .filter(|device| !Path::new("/dev").join(device).exists())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("no /dev node for {missing:?} after {NODE_WAIT:?} (is devtmpfs mounted?)");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bar_comes_from_its_resource_line() {
        // qemu's ivshmem-plain: BAR 0 registers, BAR 2 the 1 GiB memory.
        let resource = "0x00000000febf1000 0x00000000febf10ff 0x0000000000040200\n\
                        0x0000000000000000 0x0000000000000000 0x0000000000000000\n\
                        0x0000000080000000 0x00000000bfffffff 0x000000000014220c\n";
        assert_eq!(bar(resource, 2).unwrap(), (0x80000, 262_144));
        // 256 bytes of registers: no page to map.
        assert!(bar(resource, 0).is_err());
        let vga = "0x00000000fd000000 0x00000000fdffffff 0x0000000000042208\n";
        assert_eq!(bar(vga, 0).unwrap(), (0xfd000, 4096));
    }

    #[test]
    fn an_absent_or_odd_bar_is_an_error() {
        let unset = "0x0000000000000000 0x0000000000000000 0x0000000000000000\n";
        assert!(bar(unset, 0).is_err());
        assert!(bar(unset, 1).is_err());
        assert!(bar("", 0).is_err());
        assert!(bar("0x00000000fd000800 0x00000000fdffffff 0x0\n", 0).is_err());
        assert!(bar("zz 0x1 0x0\n", 0).is_err());
    }
}
