//! What each scenario must make pfnwatch report, per kernel, derived from
//! the kernels' code (mm/memory.c, drivers/char/mem.c, ...), never from
//! pfnwatch's own output. Each row says why.

use crate::judge::Tally;
use pfnwatch::rules::{RuleId, Severity};
use pfnwatch_common::class::{
    ANON, COW, ERROR, MIXEDMAP, NO_PAGE, PARTIAL, PFN_MATCH, PFNMAP, SPECIAL,
};
use pfnwatch_common::{Class, Hook};

/// A kernel's major.minor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct KernelVersion(pub u32, pub u32);

impl KernelVersion {
    /// Parses `uname -r`, e.g. "6.12.117+deb13-amd64" or "6.1.0-50-amd64".
    pub fn parse(release: &str) -> Option<KernelVersion> {
        let mut parts = release.split(|c: char| !c.is_ascii_digit());
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some(KernelVersion(major, minor))
    }
}

impl std::fmt::Display for KernelVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

const fn v(major: u32, minor: u32) -> KernelVersion {
    KernelVersion(major, minor)
}

/// The kernels whose code these expectations were derived from: Debian
/// bookworm's 6.1.176, trixie's 6.12.117 and testing's 7.2.12.
pub const SUPPORTED: [KernelVersion; 3] = [v(6, 1), v(6, 12), v(7, 2)];

const ALL: &[KernelVersion] = &SUPPORTED;
const K6_1: &[KernelVersion] = &[v(6, 1)];
/// Before mmap_prepare: /dev/mem's mmap calls remap_pfn_range.
const K6: &[KernelVersion] = &[v(6, 1), v(6, 12)];
/// folio_walk_start exists.
const K6_12_UP: &[KernelVersion] = &[v(6, 12), v(7, 2)];
const K7_2: &[KernelVersion] = &[v(7, 2)];

pub struct Row {
    pub scenario: &'static str,
    pub kernels: &'static [KernelVersion],
    pub hook: Hook,
    pub class: u16,
    pub count: u64,
    pub why: &'static str,
}

const fn row(
    scenario: &'static str,
    kernels: &'static [KernelVersion],
    hook: Hook,
    class: u16,
    count: u64,
    why: &'static str,
) -> Row {
    Row {
        scenario,
        kernels,
        hook,
        class,
        count,
        why,
    }
}

// Classes that recur.
/// A device pte in a shared PFNMAP: special, on the remap rule, not a page.
const DEV: u16 = PFNMAP | SPECIAL | PFN_MATCH | NO_PAGE;
/// The same in a COW PFNMAP.
const DEV_COW: u16 = COW | DEV;
/// A COW copy in a COW PFNMAP: an anonymous page, off the remap rule (rule 2).
const COPY: u16 = PFNMAP | COW | ANON;
/// A remap that covered the whole vma and left pfn == vm_pgoff + off.
const REMAP: u16 = PFNMAP | PFN_MATCH;

use Hook::{
    FolioWalkStart, PrintBadPageMap, PrintBadPte, RemapPfnRange, RemapPfnRangeComplete,
    VmNormalPage, VmNormalPagePmd, VmNormalPagePud, VmfInsertMixed, VmfInsertPfnPmd,
    VmfInsertPfnProt, VmfInsertPfnPud,
};

/// Calls on each scenario's own mapping, by its own processes.
pub const ROWS: &[Row] = &[
    // devmem-shared: 4 pages of /dev/mem at 0xf0000, MAP_SHARED.
    row(
        "devmem-shared",
        K6,
        RemapPfnRange,
        REMAP,
        1,
        "drivers/char/mem.c mmap_mem -> remap_pfn_range; vm_pgoff is the offset, 0xf0",
    ),
    row(
        "devmem-shared",
        K7_2,
        RemapPfnRangeComplete,
        REMAP,
        1,
        "mem_fops.mmap_prepare = mmap_mem_prepare; mm/vma.c __mmap_region -> \
         mmap_action_complete -> remap_pfn_range_complete, never remap_pfn_range",
    ),
    row(
        "devmem-shared",
        ALL,
        VmNormalPage,
        DEV,
        4,
        "munmap: zap_pte_range, one lookup per present pte; remap populated all four",
    ),
    row(
        "devmem-shared",
        K6_1,
        VmNormalPage,
        DEV,
        1,
        "munmap: untrack_pfn -> get_pat_info -> follow_phys -> vm_normal_folio at vm_start \
         (Debian 6.1's backport of 'x86/mm/pat: fix VM_PAT handling in COW mappings')",
    ),
    // devmem-private: the same, MAP_PRIVATE+PROT_WRITE; write page 1, fork, munmap.
    row(
        "devmem-private",
        K6,
        RemapPfnRange,
        COW | REMAP,
        1,
        "remap_pfn_range of a COW mapping covers the whole vma and sets vm_pgoff = pfn (rule 3)",
    ),
    row(
        "devmem-private",
        K7_2,
        RemapPfnRangeComplete,
        COW | REMAP,
        1,
        "remap_pfn_range_prepare set desc->pgoff = pfn for the COW mapping",
    ),
    row(
        "devmem-private",
        ALL,
        VmNormalPage,
        DEV_COW,
        1,
        "the write to page 1: do_wp_page finds the special device pte, then wp_page_copy",
    ),
    row(
        "devmem-private",
        ALL,
        VmNormalPage,
        DEV_COW,
        9,
        "pages 0, 2, 3 at fork (copy_present_pte, parent), child exit and munmap (zap_pte_range)",
    ),
    row(
        "devmem-private",
        ALL,
        VmNormalPage,
        COPY,
        3,
        "page 1, the COW copy, at fork, child exit and munmap: an anonymous page (rule 2)",
    ),
    row(
        "devmem-private",
        K6_1,
        VmNormalPage,
        DEV_COW,
        3,
        "PAT's follow_phys lookup of page 0 at fork (track_pfn_copy), child exit and munmap",
    ),
    // pcibar-shared: 4 pages of qemu's VGA BAR (00:02.0 resource0), MAP_SHARED.
    row(
        "pcibar-shared",
        ALL,
        RemapPfnRange,
        REMAP,
        1,
        "pci_mmap_resource_range -> io_remap_pfn_range -> remap_pfn_range (kernfs has no \
         mmap_prepare, so 7.2 too); vm_pgoff was moved to the BAR's first pfn",
    ),
    row(
        "pcibar-shared",
        ALL,
        VmNormalPage,
        DEV,
        4,
        "munmap: zap_pte_range, one per pte",
    ),
    row(
        "pcibar-shared",
        K6_1,
        VmNormalPage,
        DEV,
        1,
        "munmap: PAT's follow_phys lookup",
    ),
    // pcibar-private: as devmem-private, on the BAR.
    row(
        "pcibar-private",
        ALL,
        RemapPfnRange,
        COW | REMAP,
        1,
        "io_remap_pfn_range of a COW mapping: whole vma, vm_pgoff = pfn",
    ),
    row(
        "pcibar-private",
        ALL,
        VmNormalPage,
        DEV_COW,
        1,
        "the write fault on page 1 (do_wp_page)",
    ),
    row(
        "pcibar-private",
        ALL,
        VmNormalPage,
        DEV_COW,
        9,
        "pages 0, 2, 3 at fork, child exit and munmap",
    ),
    row(
        "pcibar-private",
        ALL,
        VmNormalPage,
        COPY,
        3,
        "page 1, the COW copy, at fork, child exit and munmap",
    ),
    row(
        "pcibar-private",
        K6_1,
        VmNormalPage,
        DEV_COW,
        3,
        "PAT's follow_phys lookup of page 0 at fork, child exit and munmap",
    ),
    // movepages-stat: COW /dev/mem mapping, page 1 written, move_pages(nodes = NULL).
    row(
        "movepages-stat",
        K6,
        RemapPfnRange,
        COW | REMAP,
        1,
        "mmap_mem -> remap_pfn_range",
    ),
    row(
        "movepages-stat",
        K7_2,
        RemapPfnRangeComplete,
        COW | REMAP,
        1,
        "mmap_mem_prepare -> remap_pfn_range_complete",
    ),
    row(
        "movepages-stat",
        ALL,
        VmNormalPage,
        DEV_COW,
        1,
        "the write fault on page 1",
    ),
    row(
        "movepages-stat",
        K6_12_UP,
        FolioWalkStart,
        PFNMAP | COW | NO_PAGE,
        3,
        "do_pages_stat_array -> folio_walk_start: the device ptes are special, no folio (-ENOENT)",
    ),
    row(
        "movepages-stat",
        K6_12_UP,
        FolioWalkStart,
        COPY,
        1,
        "do_pages_stat_array -> folio_walk_start returns page 1's anonymous folio",
    ),
    row(
        "movepages-stat",
        ALL,
        VmNormalPage,
        DEV_COW,
        3,
        "move_pages on pages 0, 2, 3: 6.1 follow_page -> follow_page_pte, 6.12+ inside folio_walk_start",
    ),
    row(
        "movepages-stat",
        ALL,
        VmNormalPage,
        COPY,
        1,
        "move_pages on page 1",
    ),
    row(
        "movepages-stat",
        ALL,
        VmNormalPage,
        DEV_COW,
        3,
        "munmap: pages 0, 2, 3",
    ),
    row(
        "movepages-stat",
        ALL,
        VmNormalPage,
        COPY,
        1,
        "munmap: page 1",
    ),
    row(
        "movepages-stat",
        K6_1,
        VmNormalPage,
        DEV_COW,
        1,
        "munmap: PAT's follow_phys lookup",
    ),
    // movepages-move: the same with nodes = {0,0,0,0}: vma_migratable() refuses VM_PFNMAP|VM_IO.
    row(
        "movepages-move",
        K6,
        RemapPfnRange,
        COW | REMAP,
        1,
        "mmap_mem -> remap_pfn_range",
    ),
    row(
        "movepages-move",
        K7_2,
        RemapPfnRangeComplete,
        COW | REMAP,
        1,
        "mmap_mem_prepare -> remap_pfn_range_complete",
    ),
    row(
        "movepages-move",
        ALL,
        VmNormalPage,
        DEV_COW,
        1,
        "the write fault on page 1",
    ),
    row(
        "movepages-move",
        ALL,
        VmNormalPage,
        DEV_COW,
        3,
        "munmap: pages 0, 2, 3 (move_pages itself stops at vma_migratable, before any lookup)",
    ),
    row(
        "movepages-move",
        ALL,
        VmNormalPage,
        COPY,
        1,
        "munmap: page 1",
    ),
    row(
        "movepages-move",
        K6_1,
        VmNormalPage,
        DEV_COW,
        1,
        "munmap: PAT's follow_phys lookup",
    ),
    // anon-control: no rows; an anonymous vma is filtered out in the kernel.
    // vdso: the vvar vma, through the process's whole life.
    row(
        "vdso",
        K6,
        VmfInsertPfnProt,
        PFNMAP,
        1,
        "the first vDSO read faults [vvar] (VM_PFNMAP): vvar_fault -> vmf_insert_pfn -> \
         vmf_insert_pfn_prot; the vvar page's pfn has nothing to do with vm_pgoff 0",
    ),
    row(
        "vdso",
        K6,
        VmNormalPage,
        PFNMAP | SPECIAL | NO_PAGE,
        1,
        "exit zaps the vvar pte: special",
    ),
    row(
        "vdso",
        K7_2,
        VmNormalPage,
        MIXEDMAP,
        1,
        "lib/vdso/datastore.c: [vvar] is VM_MIXEDMAP and its fault returns vmf->page (no insert \
         hook); exit's vm_normal_page returns that page",
    ),
    // idle: no rows.
    //
    // The bad-driver module (pfnwatch-trigger/badmod), 4 pages of qemu's VGA
    // BAR each; its pfns have no struct page and vm_pgoff is 0 unless said.
    row(
        "mod-insert-mixed",
        ALL,
        VmfInsertMixed,
        MIXEDMAP | COW,
        4,
        "each first read faults: insert_mixed_fault -> vmf_insert_mixed into the \
         MAP_PRIVATE VM_MIXEDMAP vma (R2, R4); pfn is the BAR's, vm_pgoff 0",
    ),
    row(
        "mod-insert-mixed",
        ALL,
        VmNormalPage,
        MIXEDMAP | COW | SPECIAL | NO_PAGE,
        4,
        "munmap: zap_pte_range finds the special ptes insert_pfn() wrote",
    ),
    row(
        "mod-partial-remap",
        ALL,
        RemapPfnRange,
        COW | PARTIAL | ERROR,
        1,
        "partial_remap_mmap remaps 3 of 4 pages of a COW vma: -EINVAL before any flag \
         is set (remap_pfn_range_notrack / remap_pfn_range_prepare_vma), so mmap fails",
    ),
    row(
        "mod-normal-pfnmap",
        ALL,
        VmNormalPage,
        PFNMAP,
        12,
        "vm_insert_page'd pages in a vma relabelled VM_PFNMAP: not special, so \
         vm_normal_page returns them (R6, R7) at fork (copy_present_pte), the child's \
         exit and munmap, 4 each; no PAT lookup on 6.1 (no VM_PAT)",
    ),
    row(
        "mod-pgoff",
        ALL,
        RemapPfnRange,
        PFNMAP | PARTIAL,
        2,
        "pgoff_mmap maps page 0 and pages 1-3 with two partial remaps while VM_MAYWRITE \
         is cleared (not COW then), and only afterwards sets vm_pgoff = first pfn + 1",
    ),
    row(
        "mod-pgoff",
        ALL,
        VmNormalPage,
        PFNMAP | COW | SPECIAL | NO_PAGE,
        10,
        "special device ptes off the pgoff rule (R8): the write fault on page 1, then \
         pages 0, 2, 3 at fork, child exit and munmap; no PAT lookup (no VM_PAT)",
    ),
    row(
        "mod-pgoff",
        ALL,
        VmNormalPage,
        COPY,
        3,
        "page 1's COW copy at fork, child exit and munmap",
    ),
    row(
        "mod-normal-pfnmap-walk",
        ALL,
        VmNormalPage,
        PFNMAP,
        8,
        "move_pages(nodes NULL) looks each page up (6.1: follow_page -> follow_page_pte; \
         6.12+: inside folio_walk_start) and munmap zaps it: vm_normal_page returns the \
         driver's pages, 4 + 4 (R6, R7)",
    ),
    row(
        "mod-normal-pfnmap-walk",
        K6_12_UP,
        FolioWalkStart,
        PFNMAP,
        4,
        "do_pages_stat_array -> folio_walk_start returns each page's folio: not anonymous, \
         in a VM_PFNMAP vma (R5, and R7 for its non-special pte)",
    ),
    row(
        "mod-bad-page-map",
        ALL,
        VmfInsertMixed,
        MIXEDMAP,
        4,
        "bad_page_map_mmap inserts the 4 pfns while the shared vma is VM_MIXEDMAP (R4), \
         then clears VM_MIXEDMAP",
    ),
    row(
        "mod-bad-page-map",
        K6,
        PrintBadPte,
        SPECIAL | NO_PAGE,
        4,
        "munmap: vm_normal_page finds special ptes in a vma that is neither PFNMAP nor \
         MIXEDMAP and reports each through print_bad_pte (R9); the lookups themselves \
         are not counted, the vma is no pfn mapping",
    ),
    row(
        "mod-bad-page-map",
        K7_2,
        PrintBadPageMap,
        SPECIAL | NO_PAGE,
        4,
        "the same report, renamed print_bad_page_map in 6.18",
    ),
    // mod-huge-pfnmap (6.12+): two 2 MiB pmds of the BAR and one page, vm_pgoff
    // = first pfn; a read in each pmd (page 5) and of the last page, and
    // move_pages on the two pmd addresses.
    // Its faults map whole pmds: a fallback to ptes would show as
    // vmf_insert_pfn_prot and vm_normal_page calls, which no row allows.
    row(
        "mod-huge-pfnmap",
        K6_12_UP,
        VmfInsertPfnPmd,
        PFNMAP | PFN_MATCH,
        2,
        "each read faults: __handle_mm_fault -> create_huge_pmd -> huge_pfnmap_huge_fault \
         -> vmf_insert_pfn_pmd at the pmd's start, pfn = vm_pgoff + its page offset",
    ),
    row(
        "mod-huge-pfnmap",
        K6_12_UP,
        VmfInsertPfnProt,
        PFNMAP | PFN_MATCH,
        1,
        "the read of the last page: no pmd fits, so huge_fault falls back and the pte \
         fault inserts it: huge_pfnmap_fault -> vmf_insert_pfn -> vmf_insert_pfn_prot",
    ),
    row(
        "mod-huge-pfnmap",
        K6_12_UP,
        VmNormalPage,
        DEV,
        1,
        "munmap: zap_pte_range on that one special pte",
    ),
    row(
        "mod-huge-pfnmap",
        K6_12_UP,
        FolioWalkStart,
        PFNMAP | NO_PAGE,
        2,
        "do_pages_stat_array -> folio_walk_start finds a present pmd leaf and gets no \
         page for it, so no folio (-ENOENT)",
    ),
    row(
        "mod-huge-pfnmap",
        K6_12_UP,
        VmNormalPagePmd,
        DEV,
        2,
        "folio_walk_start's pmd level: vm_normal_page_pmd returns NULL for the special pmd \
         (pmd_mkspecial in insert_pfn_pmd); its pfn, the pmd's first, is vm_pgoff + the \
         pmd's page offset",
    ),
    row(
        "mod-huge-pfnmap",
        K7_2,
        VmNormalPagePmd,
        DEV,
        2,
        "munmap: zap_huge_pmd -> normal_or_softleaf_folio_pmd -> vm_normal_folio_pmd, one \
         per pmd (6.12's zap_huge_pmd skips special-huge vmas without a lookup)",
    ),
    // mod-huge-pud (6.12+): 1 GiB of qemu's ivshmem BAR at a 1 GiB-aligned
    // address, vm_pgoff = first pfn; a read at page 5, move_pages there.
    row(
        "mod-huge-pud",
        K6_12_UP,
        VmfInsertPfnPud,
        PFNMAP | PFN_MATCH,
        1,
        "the read faults: __handle_mm_fault -> create_huge_pud -> huge_pfnmap_huge_fault \
         -> vmf_insert_pfn_pud, one special pud for the whole vma",
    ),
    row(
        "mod-huge-pud",
        K6_12_UP,
        FolioWalkStart,
        PFNMAP | NO_PAGE,
        1,
        "do_pages_stat_array -> folio_walk_start at the pud level: no folio (-ENOENT)",
    ),
    row(
        "mod-huge-pud",
        K7_2,
        VmNormalPagePud,
        DEV,
        1,
        "7.2's folio_walk_start asks vm_normal_page_pud, NULL for the special pud; 6.12 \
         skips pud_special entries before any lookup ('mm/pagewalk: Check pfnmap for \
         folio_walk_start()'); neither zap_huge_pud looks the pud up",
    ),
];

/// Whether this kernel can run a scenario: the huge ones need pmd and pud
/// pfn maps (x86-64's ARCH_SUPPORTS_{PMD,PUD}_PFNMAP, 6.12), so the module
/// offers their devices only there.
pub fn runs_on(kernel: KernelVersion, scenario: &str) -> bool {
    match scenario {
        "mod-huge-pfnmap" | "mod-huge-pud" => K6_12_UP.contains(&kernel),
        _ => true,
    }
}

/// The rules a scenario breaks, with how many calls break them. Creating a
/// COW PFNMAP is R1 (info); nothing else the plain scenarios do is wrong.
/// Each bad-driver scenario breaks exactly the rules it was written for.
pub fn rules(kernel: KernelVersion, scenario: &str) -> &'static [(RuleId, u64)] {
    match scenario {
        // folio_walk_start adds R5 and its own R7 where it exists.
        "mod-normal-pfnmap-walk" if K6_12_UP.contains(&kernel) => {
            &[(RuleId::R5, 4), (RuleId::R6, 8), (RuleId::R7, 12)]
        }
        "mod-normal-pfnmap-walk" => &[(RuleId::R6, 8), (RuleId::R7, 8)],
        "devmem-private" | "pcibar-private" | "movepages-stat" | "movepages-move" => {
            &[(RuleId::R1, 1)]
        }
        "mod-insert-mixed" => &[(RuleId::R2, 4), (RuleId::R4, 4)],
        "mod-partial-remap" => &[(RuleId::R3, 1)],
        "mod-normal-pfnmap" => &[(RuleId::R6, 12), (RuleId::R7, 12)],
        "mod-pgoff" => &[(RuleId::R8, 10)],
        "mod-bad-page-map" => &[(RuleId::R4, 4), (RuleId::R9, 4)],
        _ => &[],
    }
}

/// The alerts `pfnwatch run` must raise for a bad-driver scenario: rule,
/// severity, occurrences (summed over duplicate follow-ups), and the
/// module function the call path must name when the driver's code is on
/// the stack (the fault or mmap handler); later lookups (fork, munmap) run
/// in the kernel alone and are traced to the driver by the file instead.
pub fn module_alerts(
    kernel: KernelVersion,
    scenario: &str,
) -> &'static [(RuleId, Severity, u64, Option<&'static str>)] {
    use Severity::{Critical, Info, Warning};
    match scenario {
        "mod-normal-pfnmap-walk" if K6_12_UP.contains(&kernel) => &[
            (RuleId::R5, Critical, 4, None),
            (RuleId::R6, Critical, 8, None),
            (RuleId::R7, Critical, 12, None),
        ],
        "mod-normal-pfnmap-walk" => &[
            (RuleId::R6, Critical, 8, None),
            (RuleId::R7, Critical, 8, None),
        ],
        "mod-insert-mixed" => &[
            (RuleId::R2, Warning, 4, Some("insert_mixed_fault")),
            (RuleId::R4, Info, 4, Some("insert_mixed_fault")),
        ],
        "mod-partial-remap" => &[(RuleId::R3, Warning, 1, Some("partial_remap_mmap"))],
        "mod-normal-pfnmap" => &[
            (RuleId::R6, Critical, 12, None),
            (RuleId::R7, Critical, 12, None),
        ],
        "mod-pgoff" => &[(RuleId::R8, Warning, 10, None)],
        "mod-bad-page-map" => &[
            (RuleId::R4, Info, 4, Some("bad_page_map_mmap")),
            (RuleId::R9, Critical, 4, None),
        ],
        _ => &[],
    }
}

/// Errno counts (hook, errno, calls) a scenario must leave in the kernel's
/// `errors` map.
pub fn errors(scenario: &str) -> &'static [(Hook, u32, u64)] {
    match scenario {
        "mod-partial-remap" => &[(RemapPfnRange, 22, 1)],
        _ => &[],
    }
}

/// Scenarios whose device ptes must follow pfn == vm_pgoff + off while their
/// COW copies do not (rule 2 observed). mod-pgoff breaks it on purpose.
pub fn pfn_rule_holds(scenario: &str) -> bool {
    matches!(
        scenario,
        "devmem-private" | "pcibar-private" | "movepages-stat" | "movepages-move"
    )
}

/// The function that called the remap hook, as the call path must show it:
/// /dev/mem's mmap on 6.x, the mmap_prepare completion on 7.x.
pub fn remap_caller(kernel: KernelVersion, scenario: &str) -> &'static str {
    match (scenario.starts_with("pcibar"), K7_2.contains(&kernel)) {
        (true, _) => "pci_mmap_resource_range",
        (false, true) => "mmap_action_complete",
        (false, false) => "mmap_mem",
    }
}

/// move_pages(2) status per page the kernel's code gives, where a scenario calls it.
pub fn move_pages_status(kernel: KernelVersion, scenario: &str) -> Option<Vec<i32>> {
    const EFAULT: i32 = -14;
    const ENOENT: i32 = -2;
    // do_pages_stat: 6.1's follow_page(FOLL_DUMP) gives -EFAULT for a special
    // pte, 6.12's folio_walk_start gives no folio, -ENOENT; page 1 is on node 0.
    let device = if kernel == v(6, 1) { EFAULT } else { ENOENT };
    match scenario {
        "movepages-stat" => Some(vec![device, 0, device, device]),
        // vma_migratable() fails first: -EFAULT for every page.
        "movepages-move" => Some(vec![EFAULT; 4]),
        "anon-control" | "mod-normal-pfnmap-walk" => Some(vec![0; 4]),
        // folio_walk_start gets no page for a special pmd.
        "mod-huge-pfnmap" => Some(vec![ENOENT; 2]),
        "mod-huge-pud" => Some(vec![ENOENT]),
        _ => None,
    }
}

/// Which hooks this kernel has, so pfnwatch must attach them; the others it
/// must report missing.
pub fn hook_present(kernel: KernelVersion, hook: Hook) -> bool {
    match hook {
        Hook::FolioWalkStart => K6_12_UP.contains(&kernel),
        Hook::RemapPfnRangeComplete => K7_2.contains(&kernel),
        // Renamed print_bad_page_map in 6.18.
        Hook::PrintBadPte => K6.contains(&kernel),
        Hook::PrintBadPageMap => K7_2.contains(&kernel),
        // 6.1 has only vmf_insert_pfn_{pmd,pud}_prot; the names are inline wrappers.
        Hook::VmfInsertPfnPmd | Hook::VmfInsertPfnPud => K6_12_UP.contains(&kernel),
        Hook::VmNormalPagePud => K7_2.contains(&kernel),
        _ => true,
    }
}

/// The expected tally for a scenario on a kernel.
pub fn expected(kernel: KernelVersion, scenario: &str) -> Tally {
    let mut t = Tally::new();
    for row in ROWS
        .iter()
        .filter(|r| r.scenario == scenario && r.kernels.contains(&kernel))
    {
        *t.entry((row.hook, Class(row.class))).or_default() += row.count;
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_debian_releases() {
        assert_eq!(KernelVersion::parse("6.1.0-50-amd64"), Some(v(6, 1)));
        assert_eq!(KernelVersion::parse("6.12.117+deb13-amd64"), Some(v(6, 12)));
        assert_eq!(KernelVersion::parse("7.2.12+deb14-amd64"), Some(v(7, 2)));
        assert_eq!(KernelVersion::parse("garbage"), None);
    }

    #[test]
    fn totals_follow_the_kernel_differences() {
        let total = |k, s, h| -> u64 {
            expected(k, s)
                .iter()
                .filter(|((hook, _), _)| *hook == h)
                .map(|(_, n)| n)
                .sum()
        };
        // 6.1's PAT lookup adds one at fork, child exit and munmap.
        assert_eq!(total(v(6, 1), "devmem-private", VmNormalPage), 16);
        assert_eq!(total(v(6, 12), "devmem-private", VmNormalPage), 13);
        assert_eq!(total(v(7, 2), "devmem-private", VmNormalPage), 13);
        // /dev/mem moved to mmap_prepare in 7.x; the PCI BAR did not.
        assert_eq!(total(v(7, 2), "devmem-shared", RemapPfnRange), 0);
        assert_eq!(total(v(7, 2), "devmem-shared", RemapPfnRangeComplete), 1);
        assert_eq!(total(v(7, 2), "pcibar-shared", RemapPfnRange), 1);
        assert_eq!(total(v(6, 1), "movepages-stat", FolioWalkStart), 0);
        assert_eq!(total(v(6, 12), "movepages-stat", FolioWalkStart), 4);
        assert!(expected(v(6, 12), "anon-control").is_empty());
        // A kernel nobody derived expectations for expects nothing at all.
        assert!(expected(v(6, 6), "devmem-shared").is_empty());
    }

    #[test]
    fn every_row_names_a_scenario() {
        for row in ROWS {
            assert!(
                crate::scenario::find(row.scenario).is_some(),
                "{}",
                row.scenario
            );
            assert!(!row.why.is_empty());
        }
    }
}
