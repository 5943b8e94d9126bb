//! The scenarios: each makes the kernel map and walk pfns in one known way
//! and reports the mappings, so the judge can pick out exactly their records.

use crate::drivers;
use crate::expect::KernelVersion;
use crate::report::{Mapping, Report};
use crate::sys::{self, Map};
use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

/// The BIOS area: STRICT_DEVMEM lets the first 1 MiB of /dev/mem through.
pub const DEVMEM: &str = "/dev/mem";
pub const DEVMEM_OFFSET: u64 = 0xf0000;
/// qemu's `-vga std` card at 00:02.0: its 16 MiB framebuffer BAR.
pub const PCI_BAR: &str = "/sys/bus/pci/devices/0000:00:02.0/resource0";
pub const PAGES: usize = 4;
/// The page the COW scenarios write to.
pub const WRITTEN: usize = 1;

/// Every scenario. Its spec (below) and its expectations (expect.rs) are
/// exhaustive matches: a scenario without either does not compile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    DevmemShared,
    DevmemPrivate,
    PcibarShared,
    PcibarPrivate,
    MovepagesStat,
    MovepagesMove,
    AnonControl,
    Vdso,
    DrmDumbBuffer,
    UioBar,
    PerfRing,
    IoUring,
    BpfRingbuf,
    DaxPrivate,
    VvarMovePages,
    DevmemProtnone,
    ProcMem,
    Idle,
    ModInsertMixed,
    ModPartialRemap,
    ModNormalPfnmap,
    ModNormalPfnmapWalk,
    ModPgoff,
    ModBadPageMap,
    ModZeroCowPfnmap,
    ModApplyRange,
    ModInsertPage,
    ModHugePfnmap,
    ModHugePud,
}

/// A scenario's body: makes the kernel map pfns, notes what it did.
type Runner = fn(&mut Report) -> Result<()>;

/// What a scenario is and does.
pub struct Spec {
    pub name: &'static str,
    pub about: &'static str,
    run: Runner,
}

impl Scenario {
    pub const ALL: [Scenario; 29] = [
        Scenario::DevmemShared,
        Scenario::DevmemPrivate,
        Scenario::PcibarShared,
        Scenario::PcibarPrivate,
        Scenario::MovepagesStat,
        Scenario::MovepagesMove,
        Scenario::AnonControl,
        Scenario::Vdso,
        Scenario::DrmDumbBuffer,
        Scenario::UioBar,
        Scenario::PerfRing,
        Scenario::IoUring,
        Scenario::BpfRingbuf,
        Scenario::DaxPrivate,
        Scenario::VvarMovePages,
        Scenario::DevmemProtnone,
        Scenario::ProcMem,
        Scenario::Idle,
        Scenario::ModInsertMixed,
        Scenario::ModPartialRemap,
        Scenario::ModNormalPfnmap,
        Scenario::ModNormalPfnmapWalk,
        Scenario::ModPgoff,
        Scenario::ModBadPageMap,
        Scenario::ModZeroCowPfnmap,
        Scenario::ModApplyRange,
        Scenario::ModInsertPage,
        Scenario::ModHugePfnmap,
        Scenario::ModHugePud,
    ];

    pub const fn spec(self) -> Spec {
        let (name, about, run): (&'static str, &'static str, Runner) = match self {
            Scenario::DevmemShared => (
                "devmem-shared",
                "/dev/mem MAP_SHARED: map, read every page, munmap",
                devmem_shared,
            ),
            Scenario::DevmemPrivate => (
                "devmem-private",
                "/dev/mem MAP_PRIVATE+PROT_WRITE (a COW PFNMAP): read, write page 1 (COW), fork, munmap",
                devmem_private,
            ),
            Scenario::PcibarShared => (
                "pcibar-shared",
                "PCI BAR 00:02.0 resource0 MAP_SHARED: map, read, munmap",
                pcibar_shared,
            ),
            Scenario::PcibarPrivate => (
                "pcibar-private",
                "PCI BAR resource0 MAP_PRIVATE+PROT_WRITE: read, write page 1 (COW), fork, munmap",
                pcibar_private,
            ),
            Scenario::MovepagesStat => (
                "movepages-stat",
                "move_pages(2) status query (nodes NULL) on a COW'ed /dev/mem mapping",
                movepages_stat,
            ),
            Scenario::MovepagesMove => (
                "movepages-move",
                "move_pages(2) to node 0 on a COW'ed /dev/mem mapping",
                movepages_move,
            ),
            Scenario::AnonControl => (
                "anon-control",
                "anonymous memory: write, fork, move_pages, munmap; no hook may count it",
                anon_control,
            ),
            Scenario::Vdso => (
                "vdso",
                "clock_gettime through the vDSO: the vvar data page is fault-populated (VM_PFNMAP in 6.x, VM_MIXEDMAP in 7.x)",
                vdso,
            ),
            Scenario::DrmDumbBuffer => (
                "drm-dumb-buffer",
                "correct driver: a DRM dumb buffer of DRM's bochs (TTM on 6.x, GEM shmem on 7.x) mapped shared and read-only; read, fork, munmap",
                drivers::drm_dumb_buffer,
            ),
            Scenario::UioBar => (
                "uio-bar",
                "correct driver: qemu's edu BAR through uio_pci_generic, /dev/uio0 map0 MAP_SHARED; read, fork, munmap",
                drivers::uio_bar,
            ),
            Scenario::PerfRing => (
                "perf-ring",
                "correct driver: a perf event's ring buffer (1 + 8 pages; a pfn map since 6.15); read, write data_tail, fork, munmap",
                drivers::perf_ring,
            ),
            Scenario::IoUring => (
                "io-uring",
                "correct driver: io_uring's SQ ring, CQ ring and SQEs mapped (VM_MIXEDMAP of kernel pages); read, fork, munmap",
                drivers::io_uring,
            ),
            Scenario::BpfRingbuf => (
                "bpf-ringbuf",
                "correct driver: a BPF ring buffer map of this process (not pfnwatch's), consumer and producer pages (VM_MIXEDMAP); read, fork, munmap",
                drivers::bpf_ringbuf,
            ),
            Scenario::DaxPrivate => (
                "dax-private",
                "correct driver: a file on ext2 -o dax over pmem, MAP_PRIVATE; read (fs/dax inserts pmem pfns), write page 1 (COW), fork, munmap",
                drivers::dax_private,
            ),
            Scenario::VvarMovePages => (
                "vvar-move-pages",
                "correct driver: move_pages(2) status, then move, of every page of the vDSO's data mappings",
                drivers::vvar_move_pages,
            ),
            Scenario::DevmemProtnone => (
                "devmem-protnone",
                "correct driver: a COW /dev/mem mapping with page 1 written, then mprotect(PROT_NONE) (the pfns of PROT_NONE ptes are stored inverted, L1TF), munmap",
                drivers::devmem_protnone,
            ),
            Scenario::ProcMem => (
                "proc-mem",
                "correct driver: /dev/mem MAP_SHARED read through /proc/self/mem (vm_ops->access, generic_access_phys), munmap",
                drivers::proc_mem,
            ),
            Scenario::Idle => (
                "idle",
                "one second doing nothing: nothing may be reported",
                idle,
            ),
            Scenario::ModInsertMixed => (
                "mod-insert-mixed",
                "odd driver: fault-time vmf_insert_mixed into a MAP_PRIVATE (COW) VM_MIXEDMAP (supported, like fuse DAX); read, munmap",
                mod_insert_mixed,
            ),
            Scenario::ModPartialRemap => (
                "mod-partial-remap",
                "bad driver: remap_pfn_range of all but one page of a COW vma; mmap must fail EINVAL",
                mod_partial_remap,
            ),
            Scenario::ModNormalPfnmap => (
                "mod-normal-pfnmap",
                "bad driver: real pages in a vma turned VM_PFNMAP (ptes not special); read, fork, munmap",
                mod_normal_pfnmap,
            ),
            Scenario::ModNormalPfnmapWalk => (
                "mod-normal-pfnmap-walk",
                "bad driver: the same VM_PFNMAP of real pages, walked by move_pages(2) (folio_walk_start on 6.12+)",
                mod_normal_pfnmap_walk,
            ),
            Scenario::ModPgoff => (
                "mod-pgoff",
                "bad driver: COW VM_PFNMAP with vm_pgoff = first pfn + 1; read, write page 1, fork, munmap",
                mod_pgoff,
            ),
            Scenario::ModBadPageMap => (
                "mod-bad-page-map",
                "bad driver: special ptes left in a vma that is neither PFNMAP nor MIXEDMAP; munmap",
                mod_bad_page_map,
            ),
            Scenario::ModZeroCowPfnmap => (
                "mod-zero-cow-pfnmap",
                "bad driver: fault-time vmf_insert_mixed of the zero page into a COW VM_PFNMAP; read, munmap",
                mod_zero_cow_pfnmap,
            ),
            Scenario::ModApplyRange => (
                "mod-apply-range",
                "good driver: special ptes written at fault time through apply_to_page_range, as i915 maps its GTT; read, fork, munmap",
                mod_apply_range,
            ),
            Scenario::ModInsertPage => (
                "mod-insert-page",
                "good driver (7.x): fault-time vmf_insert_page_mkwrite of the zero page into a MAP_PRIVATE VM_MIXEDMAP, as fs/dax.c maps holes; read, munmap",
                mod_insert_page,
            ),
            Scenario::ModHugePfnmap => (
                "mod-huge-pfnmap",
                "good driver (6.12+): a VM_PFNMAP of 2 MiB special pmds and one pte; read, move_pages(2), munmap",
                mod_huge_pfnmap,
            ),
            Scenario::ModHugePud => (
                "mod-huge-pud",
                "good driver (6.12+): a VM_PFNMAP of one 1 GiB special pud; read, move_pages(2), munmap",
                mod_huge_pud,
            ),
        };
        Spec { name, about, run }
    }

    pub const fn name(self) -> &'static str {
        self.spec().name
    }

    pub fn find(name: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The scenarios this kernel can run.
    pub fn for_kernel(kernel: KernelVersion) -> impl Iterator<Item = Scenario> {
        Scenario::ALL.into_iter().filter(move |s| s.runs_on(kernel))
    }

    /// Scenarios of the bad-driver test module (badmod).
    pub fn uses_module(self) -> bool {
        self.name().starts_with("mod-")
    }

    /// The correct-driver scenarios (drivers.rs): under `pfnwatch run`
    /// they may raise no warning or critical alert.
    pub fn correct_driver(self) -> bool {
        self.spec().about.starts_with("correct driver:")
    }

    pub fn run(self) -> Result<Report> {
        let mut report = Report::new(self, sys::monotonic_ns());
        (self.spec().run)(&mut report)?;
        report.end_ns = sys::monotonic_ns();
        Ok(report)
    }
}

impl std::fmt::Display for Scenario {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The bad-driver test module's devices (pfnwatch-testbed/badmod).
pub const MOD_INSERT_MIXED: &str = "/dev/pfnw-insert-mixed";
pub const MOD_ZERO_COW_PFNMAP: &str = "/dev/pfnw-zero-cow-pfnmap";
pub const MOD_APPLY_RANGE: &str = "/dev/pfnw-apply-range";
pub const MOD_INSERT_PAGE: &str = "/dev/pfnw-insert-page";
pub const MOD_PARTIAL_REMAP: &str = "/dev/pfnw-partial-remap";
pub const MOD_NORMAL_PFNMAP: &str = "/dev/pfnw-normal-pfnmap";
pub const MOD_PGOFF: &str = "/dev/pfnw-pgoff";
pub const MOD_BAD_PAGE_MAP: &str = "/dev/pfnw-bad-page-map";
pub const MOD_HUGE_PFNMAP: &str = "/dev/pfnw-huge-pfnmap";
pub const MOD_HUGE_PUD: &str = "/dev/pfnw-huge-pud";
/// A huge pmd: 2 MiB, in pages.
pub const PMD_PAGES: usize = 512;
/// A huge pud: 1 GiB, in pages.
pub const PUD_PAGES: usize = 512 * PMD_PAGES;
/// mod-huge-pfnmap maps two pmds and touches this page of each: not the
/// first, so the lookups get addresses inside the pmd, not its start.
pub const HUGE_TOUCHED: usize = 5;
/// What the module writes at the start of each normal-pfnmap page, with the
/// page index in the low bits: proof the mapping shows the driver's pages.
pub const NORMAL_PFNMAP_MARK: u64 = 0x7066_6e77_0000_0000;

pub(crate) fn record_map(report: &mut Report, label: &str, map: &Map, written: &[usize]) {
    report.mappings.push(Mapping {
        label: label.to_owned(),
        start: map.start(),
        end: map.end(),
        written_pages: written.iter().map(|p| *p as u64).collect(),
    });
}

fn shared(report: &mut Report, path: &str, offset: u64, extra: libc::c_int) -> Result<()> {
    let fd = sys::open_rw(path, extra)?;
    let map = Map::file(&fd, offset, PAGES, false)?;
    record_map(report, path, &map, &[]);
    map.touch_all();
    map.unmap()
}

/// Maps privately, reads every page, writes WRITTEN (COW), then `more`.
fn private(
    report: &mut Report,
    path: &str,
    offset: u64,
    extra: libc::c_int,
    more: impl FnOnce(&mut Report, &Map) -> Result<()>,
) -> Result<()> {
    let fd = sys::open_rw(path, extra)?;
    let map = Map::file(&fd, offset, PAGES, true)?;
    record_map(report, path, &map, &[WRITTEN]);
    map.touch_all();
    map.write(WRITTEN);
    more(report, &map)?;
    map.unmap()
}

pub(crate) fn fork_reader(report: &mut Report, map: &Map) -> Result<()> {
    let child = sys::fork_and_wait(|| {
        map.touch_all();
    })?;
    report.children.push(child);
    Ok(())
}

fn devmem_shared(r: &mut Report) -> Result<()> {
    shared(r, DEVMEM, DEVMEM_OFFSET, libc::O_SYNC)
}

fn devmem_private(r: &mut Report) -> Result<()> {
    private(r, DEVMEM, DEVMEM_OFFSET, 0, fork_reader)
}

fn pcibar_shared(r: &mut Report) -> Result<()> {
    shared(r, PCI_BAR, 0, 0)
}

fn pcibar_private(r: &mut Report) -> Result<()> {
    private(r, PCI_BAR, 0, 0, fork_reader)
}

fn movepages_stat(r: &mut Report) -> Result<()> {
    private(r, DEVMEM, DEVMEM_OFFSET, 0, |r, map| {
        r.move_pages_status = Some(sys::move_pages(map, None)?);
        Ok(())
    })
}

fn movepages_move(r: &mut Report) -> Result<()> {
    private(r, DEVMEM, DEVMEM_OFFSET, 0, |r, map| {
        r.move_pages_status = Some(sys::move_pages(map, Some(0))?);
        Ok(())
    })
}

fn anon_control(r: &mut Report) -> Result<()> {
    let map = Map::anon(PAGES)?;
    let all: Vec<usize> = (0..PAGES).collect();
    record_map(r, "anonymous", &map, &all);
    for page in &all {
        map.write(*page);
    }
    fork_reader(r, &map)?;
    r.move_pages_status = Some(sys::move_pages(&map, None)?);
    map.unmap()
}

fn vdso(r: &mut Report) -> Result<()> {
    // The first vDSO clock read faults the vvar page in.
    let t = sys::monotonic_ns();
    if t == 0 {
        bail!("CLOCK_MONOTONIC read 0");
    }
    for name in ["[vvar]", "[vvar_vclock]"] {
        for (start, end) in sys::named_vmas(name)? {
            r.mappings.push(Mapping {
                label: name.to_owned(),
                start,
                end,
                written_pages: Vec::new(),
            });
        }
    }
    if r.mappings.is_empty() {
        bail!("no [vvar] mapping in /proc/self/maps");
    }
    Ok(())
}

fn mod_insert_mixed(r: &mut Report) -> Result<()> {
    let fd = sys::open_rw(MOD_INSERT_MIXED, 0)?;
    let map = Map::file(&fd, 0, PAGES, true)?;
    record_map(r, MOD_INSERT_MIXED, &map, &[]);
    // Each first read faults: one vmf_insert_mixed per page.
    map.touch_all();
    map.unmap()
}

fn mod_zero_cow_pfnmap(r: &mut Report) -> Result<()> {
    let fd = sys::open_rw(MOD_ZERO_COW_PFNMAP, 0)?;
    let map = Map::file(&fd, 0, PAGES, true)?;
    record_map(r, MOD_ZERO_COW_PFNMAP, &map, &[]);
    // Each first read faults: one vmf_insert_mixed of the zero pfn per page.
    map.touch_all();
    map.unmap()
}

fn mod_apply_range(r: &mut Report) -> Result<()> {
    let fd = sys::open_rw(MOD_APPLY_RANGE, 0)?;
    let map = Map::file(&fd, 0, PAGES, false)?;
    record_map(r, MOD_APPLY_RANGE, &map, &[]);
    // Each first read faults: one apply_to_page_range per page.
    map.touch_all();
    // fork copies the ptes (a VM_PFNMAP is always copied): the child's
    // reads fault nothing.
    fork_reader(r, &map)?;
    map.unmap()
}

fn mod_insert_page(r: &mut Report) -> Result<()> {
    let fd = sys::open_rw(MOD_INSERT_PAGE, 0)?;
    let map = Map::file(&fd, 0, PAGES, true)?;
    record_map(r, MOD_INSERT_PAGE, &map, &[]);
    // Each first read faults: one vmf_insert_page_mkwrite per page.
    map.touch_all();
    map.unmap()
}

fn mod_partial_remap(r: &mut Report) -> Result<()> {
    let fd = sys::open_rw(MOD_PARTIAL_REMAP, 0)?;
    // The vma never comes to be: the records are matched by file instead.
    r.mappings.push(Mapping {
        label: MOD_PARTIAL_REMAP.to_owned(),
        ..Mapping::default()
    });
    match Map::file(&fd, 0, PAGES, true) {
        Ok(_) => bail!(
            "mmap of {MOD_PARTIAL_REMAP} succeeded; the kernel must refuse a partial COW remap"
        ),
        Err(e) if sys::errno_of(&e) == Some(libc::EINVAL) => Ok(()),
        Err(e) => Err(e.context("expected EINVAL")),
    }
}

fn mod_normal_pfnmap(r: &mut Report) -> Result<()> {
    let fd = sys::open_rw(MOD_NORMAL_PFNMAP, 0)?;
    let map = Map::file(&fd, 0, PAGES, false)?;
    record_map(r, MOD_NORMAL_PFNMAP, &map, &[]);
    for i in 0..PAGES {
        // SAFETY: inside the mapping; the driver's pages are 8-byte aligned.
        let mark = unsafe { std::ptr::read_volatile(map.page(i).cast::<u64>()) };
        if mark != NORMAL_PFNMAP_MARK | i as u64 {
            bail!("page {i} reads {mark:#x}, not the driver's mark");
        }
    }
    fork_reader(r, &map)?;
    map.unmap()
}

fn mod_normal_pfnmap_walk(r: &mut Report) -> Result<()> {
    let fd = sys::open_rw(MOD_NORMAL_PFNMAP, 0)?;
    let map = Map::file(&fd, 0, PAGES, false)?;
    record_map(r, MOD_NORMAL_PFNMAP, &map, &[]);
    r.move_pages_status = Some(sys::move_pages(&map, None)?);
    map.unmap()
}

fn mod_pgoff(r: &mut Report) -> Result<()> {
    private(r, MOD_PGOFF, 0, 0, fork_reader)
}

fn mod_bad_page_map(r: &mut Report) -> Result<()> {
    let fd = sys::open_rw(MOD_BAD_PAGE_MAP, 0)?;
    let map = Map::file(&fd, 0, PAGES, false)?;
    record_map(r, MOD_BAD_PAGE_MAP, &map, &[]);
    // The kernel reports each pte as it zaps it.
    map.unmap()
}

fn mod_huge_pfnmap(r: &mut Report) -> Result<()> {
    let fd = sys::open_rw(MOD_HUGE_PFNMAP, 0)?;
    // Two pmds and one page more, where no pmd fits: the driver maps that
    // one with a single special pte.
    let map = Map::file(&fd, 0, 2 * PMD_PAGES + 1, false)?;
    record_map(r, MOD_HUGE_PFNMAP, &map, &[]);
    // The driver's get_unmapped_area aligns the mapping, or no pmd fits.
    if map.start() % (PMD_PAGES * sys::PAGE) as u64 != 0 {
        bail!(
            "{MOD_HUGE_PFNMAP} mapped at {:#x}, not on a 2 MiB boundary",
            map.start()
        );
    }
    // One fault per pmd: the driver maps the whole 2 MiB there.
    let touched = [HUGE_TOUCHED, PMD_PAGES + HUGE_TOUCHED];
    for page in touched {
        map.touch(page);
    }
    map.touch(2 * PMD_PAGES);
    let addrs: Vec<*mut u8> = touched.iter().map(|p| map.page(*p)).collect();
    r.move_pages_status = Some(sys::move_pages_at(&addrs, None)?);
    map.unmap()
}

fn mod_huge_pud(r: &mut Report) -> Result<()> {
    let fd = sys::open_rw(MOD_HUGE_PUD, 0)?;
    let map = Map::file_aligned(&fd, 0, PUD_PAGES, PUD_PAGES * sys::PAGE)?;
    record_map(r, MOD_HUGE_PUD, &map, &[]);
    // One fault: the driver maps the whole 1 GiB there.
    map.touch(HUGE_TOUCHED);
    r.move_pages_status = Some(sys::move_pages_at(&[map.page(HUGE_TOUCHED)], None)?);
    map.unmap()
}

fn idle(_: &mut Report) -> Result<()> {
    std::thread::sleep(std::time::Duration::from_secs(1));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_findable() {
        for s in Scenario::ALL {
            assert_eq!(Scenario::find(s.name()), Some(s));
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.name()));
        }
        assert!(Scenario::find("nope").is_none());
    }

    #[test]
    fn aligned_maps_land_on_the_boundary() {
        use std::io::Write;
        let path = std::env::temp_dir().join(format!("pfnwatch-aligned-{}", std::process::id()));
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(&[0x5a; 2 * sys::PAGE]).unwrap();
        let fd = sys::open_rw(path.to_str().unwrap(), 0).unwrap();
        std::fs::remove_file(&path).unwrap();
        for align in [PMD_PAGES * sys::PAGE, PUD_PAGES * sys::PAGE] {
            let map = Map::file_aligned(&fd, 0, 2, align).unwrap();
            assert_eq!(map.start() % align as u64, 0, "{:#x}", map.start());
            assert_eq!((map.touch(0), map.touch(1)), (0x5a, 0x5a));
            map.unmap().unwrap();
        }
    }

    #[test]
    fn anon_control_runs_anywhere_and_reports_its_mapping() {
        let report = Scenario::AnonControl.run().unwrap();
        assert_eq!(report.mappings.len(), 1);
        let m = &report.mappings[0];
        assert_eq!(m.end - m.start, (PAGES * sys::PAGE) as u64);
        assert_eq!(report.children.len(), 1);
        // Every page was written, so every page is present on the node.
        let status = report.move_pages_status.unwrap();
        assert_eq!(status.len(), PAGES);
        assert!(status.iter().all(|s| *s >= 0), "{status:?}");
        assert!(report.end_ns > report.start_ns);
    }
}
