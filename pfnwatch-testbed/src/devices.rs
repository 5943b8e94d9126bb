//! The devices of the correct-driver scenarios, brought up with the Debian
//! drivers real hosts run: qemu's bochs-display through DRM's bochs, qemu's
//! edu through uio_pci_generic, and the legacy pmem region (xtask's
//! `memmap=`) through nd_e820 and nd_pmem, with ext2 on it mounted `-o dax`.
//! Each step is idempotent: the guest brings them up before pfnwatch
//! starts, and each scenario asks again (a no-op then, but `vm-shell` runs
//! a scenario by itself).

use crate::kmod::{self, Loaded};
use crate::sys;
use anyhow::{Context, Result, bail, ensure};
use pfnwatch_testbed_protocol::kmods;
use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const PCI: &str = "/sys/bus/pci/devices";
/// qemu's `-vga std`: its BAR is what the pcibar scenarios and the test
/// module map, so no driver may claim it.
const VGA: &str = "0000:00:02.0";
/// qemu's bochs-display: the VGA's ids with the display-other class.
const BOCHS_DISPLAY: PciId = PciId {
    vendor: "0x1234",
    device: "0x1111",
    class: Some("0x038000"),
};
/// qemu's edu device.
const EDU: PciId = PciId {
    vendor: "0x1234",
    device: "0x11e8",
    class: None,
};
/// What edu's register 0 reads: version 1.0 and "ed".
pub const EDU_ID: u32 = 0x0100_00ed;
/// No driver has this name: bochs must not take 00:02.0.
const NO_DRIVER: &str = "pfnwatch-none";

/// Where the DAX file system goes, and its file.
pub const DAX_MOUNT: &str = "/mnt/pfnw-dax";
pub const DAX_FILE: &str = "/mnt/pfnw-dax/data";
/// What each page of the DAX file starts with, its index in the low bits.
pub const DAX_MARK: u64 = 0x7066_6e77_6461_7800;
/// statx's attribute for a file accessed through DAX.
const STATX_ATTR_DAX: u64 = 0x0020_0000;

/// Devtmpfs and sysfs catch up with a probe quickly; pmem's namespaces are
/// probed asynchronously.
const WAIT: Duration = Duration::from_secs(10);

struct PciId {
    vendor: &'static str,
    device: &'static str,
    class: Option<&'static str>,
}

/// DRM's bochs on the bochs-display; returns its /dev/dri/card node.
pub fn drm_card() -> Result<(PathBuf, Loaded)> {
    // Before bochs loads: its probe would take 00:02.0 too.
    keep_driverless(VGA)?;
    let loaded = kmod::ensure(kmods::BOCHS)?;
    let dev = find_pci(&BOCHS_DISPLAY)?;
    ensure!(
        driver_of(&dev).as_deref() == Some("bochs-drm"),
        "{} is bound to {:?}, not bochs-drm",
        dev.display(),
        driver_of(&dev)
    );
    let card = wait_for("a DRM card of the bochs-display", || {
        child_named(&dev.join("drm"), "card").map(|c| Path::new("/dev/dri").join(c))
    })?;
    wait_for_node(&card)?;
    Ok((card, loaded))
}

/// uio_pci_generic on edu; returns its /dev/uio node and map0's size.
pub fn uio_device() -> Result<(PathBuf, u64, Loaded)> {
    let loaded = kmod::ensure(kmods::UIO_PCI_GENERIC)?;
    let dev = find_pci(&EDU)?;
    if driver_of(&dev).as_deref() != Some("uio_pci_generic") {
        // It has no id table: new_id binds every unbound edu, once.
        let drv = Path::new("/sys/bus/pci/drivers/uio_pci_generic");
        let id = format!("{} {}", &EDU.vendor[2..], &EDU.device[2..]);
        if let Err(e) = std::fs::write(drv.join("new_id"), &id) {
            if e.raw_os_error() != Some(libc::EEXIST) {
                return Err(e).context("adding edu's id to uio_pci_generic");
            }
            let name = dev.file_name().unwrap_or_default().to_string_lossy();
            std::fs::write(drv.join("bind"), name.as_bytes()).context("binding edu")?;
        }
    }
    let uio = wait_for("edu's uio device", || child_named(&dev.join("uio"), "uio"))?;
    let node = Path::new("/dev").join(&uio);
    wait_for_node(&node)?;
    let size = read_hex(
        &Path::new("/sys/class/uio")
            .join(&uio)
            .join("maps/map0/size"),
    )?;
    Ok((node, size, loaded))
}

/// /dev/pmem0 with ext2 on it mounted `-o dax` at [`DAX_MOUNT`], and
/// [`DAX_FILE`] of `pages` marked pages; returns the modules' chains.
pub fn dax_file(pages: usize) -> Result<Vec<Loaded>> {
    let loaded = [kmods::ND_PMEM, kmods::ND_E820, kmods::EXT4]
        .into_iter()
        .map(kmod::ensure)
        .collect::<Result<Vec<_>>>()?;
    let pmem = Path::new("/sys/block/pmem0");
    wait_for("/dev/pmem0 (nd_e820 on the memmap= region)", || {
        pmem.exists().then_some(())
    })?;
    wait_for_node(Path::new("/dev/pmem0"))?;
    let dax = std::fs::read_to_string(pmem.join("queue/dax")).unwrap_or_default();
    ensure!(
        dax.trim() == "1",
        "pmem0's queue/dax is {:?}, not 1",
        dax.trim()
    );
    let mounts = std::fs::read_to_string("/proc/mounts").context("reading /proc/mounts")?;
    if !mounts
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(DAX_MOUNT))
    {
        let out = std::process::Command::new("/bin/busybox")
            .args(["mke2fs", "-F", "-q", "-b", "4096", "/dev/pmem0"])
            .output()
            .context("running busybox mke2fs")?;
        ensure!(
            out.status.success(),
            "mke2fs /dev/pmem0: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        std::fs::create_dir_all(DAX_MOUNT).with_context(|| format!("creating {DAX_MOUNT}"))?;
        mount("/dev/pmem0", DAX_MOUNT, "ext2", "dax")?;
    }
    if std::fs::metadata(DAX_FILE).ok().map(|m| m.len()) != Some((pages * sys::PAGE) as u64) {
        let mut data = vec![0u8; pages * sys::PAGE];
        for (i, page) in data.chunks_mut(sys::PAGE).enumerate() {
            page[..8].copy_from_slice(&(DAX_MARK | i as u64).to_ne_bytes());
        }
        std::fs::write(DAX_FILE, &data).with_context(|| format!("writing {DAX_FILE}"))?;
    }
    ensure!(
        sys::statx_attributes(DAX_FILE)? & STATX_ATTR_DAX != 0,
        "{DAX_FILE} is not accessed through DAX (statx has no STATX_ATTR_DAX)"
    );
    Ok(loaded)
}

fn mount(source: &str, target: &str, fstype: &str, data: &str) -> Result<()> {
    let c = |s: &str| CString::new(s).map_err(anyhow::Error::from);
    let (src, tgt, fs, opts) = (c(source)?, c(target)?, c(fstype)?, c(data)?);
    // SAFETY: valid NUL-terminated strings; data is a string of options.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            tgt.as_ptr(),
            fs.as_ptr(),
            0,
            opts.as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("mount -t {fstype} -o {data} {source} {target}"));
    }
    Ok(())
}

/// Sets the device's driver_override to a name no driver has.
fn keep_driverless(addr: &str) -> Result<()> {
    let dev = Path::new(PCI).join(addr);
    if let Some(driver) = driver_of(&dev) {
        bail!("{addr} is bound to {driver}; nothing may claim its BAR");
    }
    let path = dev.join("driver_override");
    let now = std::fs::read_to_string(&path).unwrap_or_default();
    if now.trim() != NO_DRIVER {
        std::fs::write(&path, NO_DRIVER).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn find_pci(id: &PciId) -> Result<PathBuf> {
    for entry in std::fs::read_dir(PCI).with_context(|| format!("listing {PCI}"))? {
        let path = entry?.path();
        let read = |f: &str| std::fs::read_to_string(path.join(f)).unwrap_or_default();
        if read("vendor").trim() == id.vendor
            && read("device").trim() == id.device
            && id.class.is_none_or(|c| read("class").trim() == c)
        {
            return Ok(path);
        }
    }
    bail!(
        "no PCI device {}:{}{} (xtask's qemu line adds it)",
        id.vendor,
        id.device,
        id.class.map(|c| format!(" class {c}")).unwrap_or_default()
    )
}

fn driver_of(dev: &Path) -> Option<String> {
    let link = std::fs::read_link(dev.join("driver")).ok()?;
    Some(link.file_name()?.to_string_lossy().into_owned())
}

/// The first entry of `dir` whose name starts with `prefix`.
fn child_named(dir: &Path, prefix: &str) -> Option<String> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with(prefix) && n[prefix.len()..].bytes().all(|b| b.is_ascii_digit()))
}

fn read_hex(path: &Path) -> Result<u64> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    u64::from_str_radix(text.trim().trim_start_matches("0x"), 16)
        .with_context(|| format!("{}: {text:?}", path.display()))
}

fn wait_for<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> Result<T> {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(found) = probe() {
            return Ok(found);
        }
        if Instant::now() >= deadline {
            bail!("no {what} after {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_for_node(node: &Path) -> Result<()> {
    wait_for(
        &format!("{} (is devtmpfs mounted?)", node.display()),
        || node.exists().then_some(()),
    )
}
