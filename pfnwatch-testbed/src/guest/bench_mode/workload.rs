//! The two workloads: a process forks a child that exits at once, so the
//! kernel copies every pte of its mappings into the child (copy_pte_range)
//! and zaps them again (zap_pte_range), calling vm_normal_page once per pte
//! each way.

use crate::scenario::PCI_BAR;
use crate::sys::{self, Map, PAGE};
use anyhow::{Context, Result, ensure};

/// 128 MiB of anonymous memory: 32768 ptes, each a vm_normal_page call on
/// ordinary memory, where pfnwatch's filter returns at its first test.
pub const ANON_PAGES: usize = 32 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Ordinary memory: the hot path.
    Anon,
    /// The VGA BAR mapped whole, MAP_SHARED: a VM_PFNMAP of special ptes,
    /// every call classified and counted.
    Bar,
}

impl Kind {
    pub const ALL: [Kind; 2] = [Kind::Anon, Kind::Bar];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Anon => "anon-fork",
            Kind::Bar => "pfnmap-fork",
        }
    }

    pub fn about(self) -> &'static str {
        match self {
            Kind::Anon => {
                "fork+exit of a process holding 128 MiB of written anonymous memory \
                 (MADV_NOHUGEPAGE, so one pte per page)"
            }
            Kind::Bar => {
                "fork+exit of a process holding qemu's VGA BAR (00:02.0 resource0) \
                 mapped whole, MAP_SHARED (VM_PFNMAP, special ptes)"
            }
        }
    }
}

/// The anonymous memory, written once and kept for the whole run.
pub struct Anon(Map);

impl Anon {
    pub fn new() -> Result<Anon> {
        let map = Map::anon(ANON_PAGES)?;
        // Huge pages would be copied per pmd, without vm_normal_page.
        madvise(&map, libc::MADV_NOHUGEPAGE)?;
        for i in 0..map.pages() {
            // SAFETY: inside the mapping, mapped writable.
            unsafe { std::ptr::write_volatile(map.page(i), 1) };
        }
        Ok(Anon(map))
    }

    pub fn pages(&self) -> usize {
        self.0.pages()
    }

    /// Whether a fork copies it: the BAR workload must not copy these ptes.
    pub fn copied_by_fork(&self, copied: bool) -> Result<()> {
        madvise(
            &self.0,
            if copied {
                libc::MADV_DOFORK
            } else {
                libc::MADV_DONTFORK
            },
        )
    }
}

/// The BAR's page count (the file's size).
pub fn bar_pages() -> Result<usize> {
    let len = std::fs::metadata(PCI_BAR)
        .with_context(|| format!("stat {PCI_BAR}"))?
        .len();
    let pages = usize::try_from(len)? / PAGE;
    ensure!(pages > 0, "{PCI_BAR} is empty");
    Ok(pages)
}

/// Maps the BAR whole; remap_pfn_range fills every pte at mmap time.
pub fn map_bar() -> Result<Map> {
    let fd = sys::open_rw(PCI_BAR, 0)?;
    Map::file(&fd, 0, bar_pages()?, false)
}

/// `n` fork+exit cycles; each one's wall time in ns (fork to waitpid).
pub fn fork_exit(n: u32) -> Result<Vec<u64>> {
    (0..n)
        .map(|_| {
            let start = sys::monotonic_ns();
            // The child exits at once: all it costs is the copy and the zap.
            sys::fork_and_wait(|| {})?;
            Ok(sys::monotonic_ns() - start)
        })
        .collect()
}

fn madvise(map: &Map, advice: libc::c_int) -> Result<()> {
    // SAFETY: advice on exactly the range mmap returned.
    if unsafe { libc::madvise(map.addr.cast(), map.len, advice) } != 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("madvise {advice}"));
    }
    Ok(())
}
