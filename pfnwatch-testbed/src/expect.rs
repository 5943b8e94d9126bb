//! What each scenario must make pfnwatch report, per kernel, derived from
//! the kernels' code (mm/memory.c, drivers/char/mem.c, ...), never from
//! pfnwatch's own output. Each row says why.

use crate::expect_correct as correct;
use crate::judge::Tally;
use crate::scenario::Scenario;
use pfnwatch::kernel::programs::PROGRAMS;
use pfnwatch::rules::RuleId::{R1, R2, R3, R4, R5, R6, R7, R8, R9};
use pfnwatch::rules::Severity::{Critical, Info, Warning};
use pfnwatch::rules::{RuleId, Severity};
use pfnwatch_common::class::{
    ANON, COW, ERROR, MIXEDMAP, NO_PAGE, PARTIAL, PFN_MATCH, PFNMAP, SPECIAL,
};
use pfnwatch_common::{Class, Hook};

/// The architecture a test kernel runs on: where the kernel's code differs
/// by architecture (PAT, the huge pfn maps, the devices a board has), so do
/// the expectations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Arch {
    X86_64,
    Arm64,
}

/// A kernel's major.minor, and its architecture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct KernelVersion(pub u32, pub u32, pub Arch);

impl KernelVersion {
    /// Parses `uname -r`, e.g. "6.12.117+deb13-amd64", "6.1.0-50-amd64" or
    /// "7.2.12+deb14-arm64" (Debian's flavour names the architecture).
    pub fn parse(release: &str) -> Option<KernelVersion> {
        let mut parts = release.split(|c: char| !c.is_ascii_digit());
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        let arch = if release.ends_with("-arm64") {
            Arch::Arm64
        } else {
            Arch::X86_64
        };
        Some(KernelVersion(major, minor, arch))
    }

    pub const fn arch(self) -> Arch {
        self.2
    }
}

impl std::fmt::Display for KernelVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.2 {
            Arch::X86_64 => write!(f, "{}.{}", self.0, self.1),
            Arch::Arm64 => write!(f, "{}.{} arm64", self.0, self.1),
        }
    }
}

const fn v(major: u32, minor: u32) -> KernelVersion {
    KernelVersion(major, minor, Arch::X86_64)
}

const fn arm(major: u32, minor: u32) -> KernelVersion {
    KernelVersion(major, minor, Arch::Arm64)
}

/// The kernels whose code these expectations were derived from: Debian
/// bookworm's 6.1.176, trixie's 6.12.117 and testing's 7.2.12 on x86-64,
/// and trixie's 6.12.117 and testing's 7.2.12 on arm64. arm64 6.1 cannot
/// attach fentry/fexit ([`NO_TRAMPOLINES`]): it runs no scenario.
pub const SUPPORTED: [KernelVersion; 5] = [v(6, 1), v(6, 12), v(7, 2), arm(6, 12), arm(7, 2)];

/// Every test kernel. A row on it holds for the architecture-neutral
/// mm/ and drivers/ code; where arch/ code takes part (x86's PAT, the
/// vDSO's data pages, the huge pud maps) the row names its architecture.
pub(crate) const ALL: &[KernelVersion] = &SUPPORTED;
/// The x86-64 kernels.
pub(crate) const X86: &[KernelVersion] = &[v(6, 1), v(6, 12), v(7, 2)];
pub(crate) const K6_1: &[KernelVersion] = &[v(6, 1)];
/// Before mmap_prepare: /dev/mem's mmap calls remap_pfn_range.
pub(crate) const K6: &[KernelVersion] = &[v(6, 1), v(6, 12), arm(6, 12)];
/// folio_walk_start exists.
pub(crate) const K6_12_UP: &[KernelVersion] = &[v(6, 12), v(7, 2), arm(6, 12), arm(7, 2)];
/// The same on x86-64 only.
pub(crate) const X86_K6_12_UP: &[KernelVersion] = &[v(6, 12), v(7, 2)];
pub(crate) const K7_2: &[KernelVersion] = &[v(7, 2), arm(7, 2)];
pub(crate) const X86_K7_2: &[KernelVersion] = &[v(7, 2)];
pub(crate) const K6_12: &[KernelVersion] = &[v(6, 12), arm(6, 12)];
/// x86 6.12: PAT's lookups go through follow_pfnmap_start there
/// (arch/x86/mm/pat/memtype.c get_pat_info); arm64 has no PAT.
pub(crate) const X86_K6_12: &[KernelVersion] = &[v(6, 12)];
pub(crate) const ARM_K6_12: &[KernelVersion] = &[arm(6, 12)];

/// Kernels that load pfnwatch's programs but cannot attach fentry/fexit to
/// kernel functions: arm64's BPF trampolines reach kernel functions through
/// ftrace direct calls, which arm64 has from 6.4 (Debian 12's 6.1 config has
/// DYNAMIC_FTRACE_WITH_REGS and no DYNAMIC_FTRACE_WITH_DIRECT_CALLS). Every
/// attach fails with ENOTSUPP there; pfnwatch must say so and nothing more.
pub const NO_TRAMPOLINES: [KernelVersion; 1] = [arm(6, 1)];

/// A per-kernel value: the first entry whose kernels hold the kernel asked
/// about applies.
pub type PerKernel<T> = &'static [(&'static [KernelVersion], T)];

fn per_kernel<T: Copy>(table: PerKernel<T>, kernel: KernelVersion) -> Option<T> {
    table
        .iter()
        .find(|(kernels, _)| kernels.contains(&kernel))
        .map(|(_, v)| *v)
}

/// Calls of one hook and class on a scenario's own mapping, by its own
/// processes, on some kernels, and the call path that makes them.
pub struct Row {
    pub kernels: &'static [KernelVersion],
    pub hook: Hook,
    pub class: u16,
    pub count: u64,
    pub why: &'static str,
}

pub(crate) const fn row(
    kernels: &'static [KernelVersion],
    hook: Hook,
    class: u16,
    count: u64,
    why: &'static str,
) -> Row {
    Row {
        kernels,
        hook,
        class,
        count,
        why,
    }
}

/// An alert `pfnwatch run` must raise: rule, severity, occurrences (summed
/// over duplicate follow-ups), and the module function the call path must
/// name when the driver's code is on the stack (the fault or mmap handler;
/// later lookups at fork or munmap run in the kernel alone).
#[derive(Clone, Copy, Debug)]
pub struct Alerted {
    pub rule: RuleId,
    pub severity: Severity,
    pub count: u64,
    pub caller: Option<&'static str>,
}

pub(crate) const fn alert(
    rule: RuleId,
    severity: Severity,
    count: u64,
    caller: Option<&'static str>,
) -> Alerted {
    Alerted {
        rule,
        severity,
        count,
        caller,
    }
}

/// Everything the judge and the guest's checks hold a scenario to.
pub struct Expect {
    /// The kernels it runs on.
    pub kernels: &'static [KernelVersion],
    /// Calls per hook and class, one row per call path.
    pub rows: &'static [Row],
    /// Rule hits (rule, calls). Creating a COW PFNMAP is R1 (info); each
    /// bad-driver scenario breaks exactly the rules it was written for.
    pub rules: PerKernel<&'static [(RuleId, u64)]>,
    /// The alerts `pfnwatch run` raises (bad-driver scenarios).
    pub alerts: PerKernel<&'static [Alerted]>,
    /// (hook, errno, calls) left in the kernel's `errors` map.
    pub errors: &'static [(Hook, u32, u64)],
    /// Device ptes follow pfn == vm_pgoff + off while COW copies do not
    /// (rule 2 observed). mod-pgoff breaks it on purpose.
    pub pfn_rule_holds: bool,
    /// move_pages(2) status per page, where the scenario calls it.
    pub move_pages: PerKernel<Option<&'static [i32]>>,
    /// The function that calls the remap hook, as the call path shows it:
    /// /dev/mem's mmap on 6.x, the mmap_prepare completion on 7.x.
    pub remap_caller: PerKernel<&'static str>,
    /// The driver every record of the scenario's mappings names (the
    /// character device's, or the PCI device's bound driver), where
    /// pfnwatch can name one: anonymous inodes and files have none.
    pub driver: Option<&'static str>,
    /// Row groups several scenarios share (x86 PAT's lookups, the vma
    /// inventory), counted with `rows`.
    pub shared_rows: &'static [&'static [Row]],
}

pub(crate) const EFAULT: i32 = -14;
pub(crate) const ENOENT: i32 = -2;

// Classes that recur.
/// A device pte in a shared PFNMAP: special, on the remap rule, not a page.
pub(crate) const DEV: u16 = PFNMAP | SPECIAL | PFN_MATCH | NO_PAGE;
/// The same in a COW PFNMAP.
pub(crate) const DEV_COW: u16 = COW | DEV;
/// A COW copy in a COW PFNMAP: an anonymous page, off the remap rule (rule 2).
pub(crate) const COPY: u16 = PFNMAP | COW | ANON;
/// A remap that covered the whole vma and left pfn == vm_pgoff + off.
pub(crate) const REMAP: u16 = PFNMAP | PFN_MATCH;

use Hook::{
    ApplyToPageRange, CopyPageRange, FolioWalkStart, FollowPfnmapStart, FollowPhys, PerfEventMmap,
    PrintBadPageMap, PrintBadPte, RemapPfnRange, RemapPfnRangeComplete, RemapPfnRangePrepare,
    VmAreaFree, VmInsertPage, VmNormalPage, VmNormalPagePmd, VmNormalPagePud, VmfInsertMixed,
    VmfInsertPageMkwrite, VmfInsertPfnPmd, VmfInsertPfnProt, VmfInsertPfnPud,
};

/// 7.2's /dev/mem checks its remap before the vma exists: mem_fops'
/// mmap_prepare = mmap_mem_prepare -> remap_pfn_range_prepare(desc), which
/// validates the range and sets VM_IO|VM_PFNMAP (and, for a COW mapping,
/// the pgoff) on the descriptor; remap_pfn_range_complete maps it later.
pub(crate) const PREPARE_SHARED: &[Row] = &[row(
    K7_2,
    RemapPfnRangePrepare,
    PFNMAP,
    1,
    "drivers/char/mem.c mmap_mem_prepare -> mm/memory.c remap_pfn_range_prepare: the whole vma",
)];
/// The same for a COW /dev/mem mapping.
pub(crate) const PREPARE_COW: &[Row] = &[row(
    K7_2,
    RemapPfnRangePrepare,
    PFNMAP | COW,
    1,
    "mmap_mem_prepare -> remap_pfn_range_prepare: the whole COW vma (get_remap_pgoff sets \
    desc->pgoff to the first pfn)",
)];

/// The inventory's view of `vmas` pfn mappings with `class`'s vma bits,
/// each made once and inherited by `forks` children: created, copied to
/// each child, and freed by munmap and by each child's exit. The inventory
/// takes no special mapping ([vvar]) and no vma of pfnwatch's own.
pub(crate) const fn lifetime(
    kernels: &'static [KernelVersion],
    class: u16,
    vmas: u64,
    forks: u64,
) -> [Row; 3] {
    [
        row(
            kernels,
            PerfEventMmap,
            class,
            vmas,
            "mmap: 6.1 mm/mmap.c mmap_region, 6.12 mm/mmap.c __mmap_region, 7.2 mm/vma.c \
            __mmap_complete -> perf_event_mmap(vma), the driver's mmap done and the flags final",
        ),
        row(
            kernels,
            CopyPageRange,
            class,
            vmas * forks,
            "fork: dup_mmap (6.x kernel/fork.c, 7.2 mm/mmap.c) -> copy_page_range(dst, src); \
            vma_needs_copy is true for VM_PFNMAP|VM_MIXEDMAP, so it is always called",
        ),
        row(
            kernels,
            VmAreaFree,
            class,
            vmas * (1 + forks),
            "munmap and each child's exit: remove_vma -> vm_area_free (6.12's exit_mmap \
            frees with __vm_area_free, which pfnwatch hooks beside it)",
        ),
    ]
}

impl Scenario {
    /// What pfnwatch must see of this scenario.
    pub const fn expect(self) -> &'static Expect {
        match self {
            Scenario::DevmemShared => &DEVMEM_SHARED,
            Scenario::DevmemPrivate => &DEVMEM_PRIVATE,
            Scenario::PcibarShared => &PCIBAR_SHARED,
            Scenario::PcibarPrivate => &PCIBAR_PRIVATE,
            Scenario::MovepagesStat => &MOVEPAGES_STAT,
            Scenario::MovepagesMove => &MOVEPAGES_MOVE,
            Scenario::AnonControl => &ANON_CONTROL,
            Scenario::Vdso => &VDSO,
            Scenario::DrmDumbBuffer => &correct::DRM_DUMB_BUFFER,
            Scenario::UioBar => &correct::UIO_BAR,
            Scenario::PerfRing => &correct::PERF_RING,
            Scenario::IoUring => &correct::IO_URING,
            Scenario::BpfRingbuf => &correct::BPF_RINGBUF,
            Scenario::DaxPrivate => &correct::DAX_PRIVATE,
            Scenario::VvarMovePages => &correct::VVAR_MOVE_PAGES,
            Scenario::DevmemProtnone => &correct::DEVMEM_PROTNONE,
            Scenario::ProcMem => &correct::PROC_MEM,
            Scenario::Idle => &IDLE,
            Scenario::ModInsertMixed => &MOD_INSERT_MIXED,
            Scenario::ModPartialRemap => &MOD_PARTIAL_REMAP,
            Scenario::ModNormalPfnmap => &MOD_NORMAL_PFNMAP,
            Scenario::ModNormalPfnmapWalk => &MOD_NORMAL_PFNMAP_WALK,
            Scenario::ModPgoff => &MOD_PGOFF,
            Scenario::ModBadPageMap => &MOD_BAD_PAGE_MAP,
            Scenario::ModZeroCowPfnmap => &MOD_ZERO_COW_PFNMAP,
            Scenario::ModApplyRange => &MOD_APPLY_RANGE,
            Scenario::ModInsertPage => &MOD_INSERT_PAGE,
            Scenario::ModHugePfnmap => &MOD_HUGE_PFNMAP,
            Scenario::ModHugePud => &MOD_HUGE_PUD,
        }
    }

    pub fn runs_on(self, kernel: KernelVersion) -> bool {
        self.expect().kernels.contains(&kernel)
    }

    /// The expected calls on this kernel, per hook and class.
    pub fn expected(self, kernel: KernelVersion) -> Tally {
        let mut t = Tally::new();
        for row in self
            .all_rows()
            .filter(|r| r.count > 0 && r.kernels.contains(&kernel))
        {
            *t.entry((row.hook, Class(row.class))).or_default() += row.count;
        }
        t
    }

    /// The scenario's own rows and the shared groups it takes part in.
    pub fn all_rows(self) -> impl Iterator<Item = &'static Row> {
        let e = self.expect();
        e.rows.iter().chain(e.shared_rows.iter().copied().flatten())
    }

    pub fn rules(self, kernel: KernelVersion) -> &'static [(RuleId, u64)] {
        per_kernel(self.expect().rules, kernel).unwrap_or(&[])
    }

    pub fn alerts(self, kernel: KernelVersion) -> &'static [Alerted] {
        per_kernel(self.expect().alerts, kernel).unwrap_or(&[])
    }

    pub fn move_pages_status(self, kernel: KernelVersion) -> Option<&'static [i32]> {
        per_kernel(self.expect().move_pages, kernel).flatten()
    }

    pub fn remap_caller(self, kernel: KernelVersion) -> Option<&'static str> {
        per_kernel(self.expect().remap_caller, kernel)
    }
}

// x86 PAT looks up the first pte of a VM_PAT vma (a whole-vma
// remap_pfn_range) at fork (track_pfn_copy) and at unmap (untrack_pfn):
// 6.1 through follow_phys (which also calls vm_normal_page, counted in the
// rows), 6.12 through get_pat_info -> follow_pfnmap_start only. 7.2 keeps a
// pfnmap_track_ctx and looks nothing up.

/// A device pte found by a pfn lookup: special, on the remap rule.
pub(crate) const FOLLOW_DEV: u16 = PFNMAP | SPECIAL | PFN_MATCH;

const PAT_MUNMAP: &[Row] = &[
    row(
        K6_1,
        FollowPhys,
        FOLLOW_DEV,
        1,
        "munmap: untrack_pfn -> get_pat_info -> follow_phys",
    ),
    row(
        X86_K6_12,
        FollowPfnmapStart,
        FOLLOW_DEV,
        1,
        "munmap: untrack_pfn -> get_pat_info -> follow_phys -> follow_pfnmap_start",
    ),
];
const PAT_MUNMAP_COW: &[Row] = &[
    row(
        K6_1,
        FollowPhys,
        COW | FOLLOW_DEV,
        1,
        "munmap: untrack_pfn -> get_pat_info -> follow_phys",
    ),
    row(
        X86_K6_12,
        FollowPfnmapStart,
        COW | FOLLOW_DEV,
        1,
        "munmap: untrack_pfn -> get_pat_info -> follow_phys -> follow_pfnmap_start",
    ),
];
const PAT_FORK_EXIT_MUNMAP: &[Row] = &[
    row(
        K6_1,
        FollowPhys,
        COW | FOLLOW_DEV,
        3,
        "track_pfn_copy at fork, untrack_pfn at the child's exit and at munmap: follow_phys of page 0",
    ),
    row(
        X86_K6_12,
        FollowPfnmapStart,
        COW | FOLLOW_DEV,
        3,
        "the same PAT lookups through get_pat_info -> follow_pfnmap_start",
    ),
];

const DEVMEM_SHARED: Expect = Expect {
    kernels: ALL,
    rows: &[
        // devmem-shared: 4 pages of /dev/mem at 0xf0000, MAP_SHARED.
        row(
            K6,
            RemapPfnRange,
            REMAP,
            1,
            "drivers/char/mem.c mmap_mem -> remap_pfn_range; vm_pgoff is the offset, 0xf0",
        ),
        row(
            K7_2,
            RemapPfnRangeComplete,
            REMAP,
            1,
            "mem_fops.mmap_prepare = mmap_mem_prepare; mm/vma.c __mmap_region -> \
            mmap_action_complete -> remap_pfn_range_complete, never remap_pfn_range",
        ),
        row(
            ALL,
            VmNormalPage,
            DEV,
            4,
            "munmap: zap_pte_range, one lookup per present pte; remap populated all four",
        ),
        row(
            K6_1,
            VmNormalPage,
            DEV,
            1,
            "munmap: untrack_pfn -> get_pat_info -> follow_phys -> vm_normal_folio at vm_start \
            (Debian 6.1's backport of 'x86/mm/pat: fix VM_PAT handling in COW mappings')",
        ),
    ],
    rules: &[],
    alerts: &[],
    errors: &[],
    pfn_rule_holds: false,
    move_pages: &[],
    remap_caller: &[(K7_2, "mmap_action_complete"), (K6, "mmap_mem")],
    driver: Some("mem"),
    shared_rows: &[PAT_MUNMAP, &lifetime(ALL, PFNMAP, 1, 0), PREPARE_SHARED],
};

const DEVMEM_PRIVATE: Expect = Expect {
    kernels: ALL,
    rows: &[
        // devmem-private: the same, MAP_PRIVATE+PROT_WRITE; write page 1, fork, munmap.
        row(
            K6,
            RemapPfnRange,
            COW | REMAP,
            1,
            "remap_pfn_range of a COW mapping covers the whole vma and sets vm_pgoff = pfn (rule 3)",
        ),
        row(
            K7_2,
            RemapPfnRangeComplete,
            COW | REMAP,
            1,
            "remap_pfn_range_prepare set desc->pgoff = pfn for the COW mapping",
        ),
        row(
            ALL,
            VmNormalPage,
            DEV_COW,
            1,
            "the write to page 1: do_wp_page finds the special device pte, then wp_page_copy",
        ),
        row(
            ALL,
            VmNormalPage,
            DEV_COW,
            9,
            "pages 0, 2, 3 at fork (copy_present_pte, parent), child exit and munmap (zap_pte_range)",
        ),
        row(
            ALL,
            VmNormalPage,
            COPY,
            3,
            "page 1, the COW copy, at fork, child exit and munmap: an anonymous page (rule 2)",
        ),
        row(
            K6_1,
            VmNormalPage,
            DEV_COW,
            3,
            "PAT's follow_phys lookup of page 0 at fork (track_pfn_copy), child exit and munmap",
        ),
    ],
    rules: &[(ALL, &[(R1, 1)])],
    alerts: &[],
    errors: &[],
    pfn_rule_holds: true,
    move_pages: &[],
    remap_caller: &[(K7_2, "mmap_action_complete"), (K6, "mmap_mem")],
    driver: Some("mem"),
    shared_rows: &[
        PAT_FORK_EXIT_MUNMAP,
        &lifetime(ALL, PFNMAP | COW, 1, 1),
        PREPARE_COW,
    ],
};

const PCIBAR_SHARED: Expect = Expect {
    kernels: ALL,
    rows: &[
        // pcibar-shared: 4 pages of qemu's VGA BAR (00:02.0 resource0), MAP_SHARED.
        row(
            ALL,
            RemapPfnRange,
            REMAP,
            1,
            "pci_mmap_resource_range -> io_remap_pfn_range -> remap_pfn_range (kernfs has no \
            mmap_prepare, so 7.2 too); vm_pgoff was moved to the BAR's first pfn",
        ),
        row(
            ALL,
            VmNormalPage,
            DEV,
            4,
            "munmap: zap_pte_range, one per pte",
        ),
        row(
            K6_1,
            VmNormalPage,
            DEV,
            1,
            "munmap: PAT's follow_phys lookup",
        ),
    ],
    rules: &[],
    alerts: &[],
    errors: &[],
    pfn_rule_holds: false,
    move_pages: &[],
    remap_caller: &[(ALL, "pci_mmap_resource_range")],
    driver: None,
    shared_rows: &[PAT_MUNMAP, &lifetime(ALL, PFNMAP, 1, 0)],
};

const PCIBAR_PRIVATE: Expect = Expect {
    kernels: ALL,
    rows: &[
        // pcibar-private: as devmem-private, on the BAR.
        row(
            ALL,
            RemapPfnRange,
            COW | REMAP,
            1,
            "io_remap_pfn_range of a COW mapping: whole vma, vm_pgoff = pfn",
        ),
        row(
            ALL,
            VmNormalPage,
            DEV_COW,
            1,
            "the write fault on page 1 (do_wp_page)",
        ),
        row(
            ALL,
            VmNormalPage,
            DEV_COW,
            9,
            "pages 0, 2, 3 at fork, child exit and munmap",
        ),
        row(
            ALL,
            VmNormalPage,
            COPY,
            3,
            "page 1, the COW copy, at fork, child exit and munmap",
        ),
        row(
            K6_1,
            VmNormalPage,
            DEV_COW,
            3,
            "PAT's follow_phys lookup of page 0 at fork, child exit and munmap",
        ),
    ],
    rules: &[(ALL, &[(R1, 1)])],
    alerts: &[],
    errors: &[],
    pfn_rule_holds: true,
    move_pages: &[],
    remap_caller: &[(ALL, "pci_mmap_resource_range")],
    driver: None,
    shared_rows: &[PAT_FORK_EXIT_MUNMAP, &lifetime(ALL, PFNMAP | COW, 1, 1)],
};

const MOVEPAGES_STAT: Expect = Expect {
    kernels: ALL,
    rows: &[
        // movepages-stat: COW /dev/mem mapping, page 1 written, move_pages(nodes = NULL).
        row(
            K6,
            RemapPfnRange,
            COW | REMAP,
            1,
            "mmap_mem -> remap_pfn_range",
        ),
        row(
            K7_2,
            RemapPfnRangeComplete,
            COW | REMAP,
            1,
            "mmap_mem_prepare -> remap_pfn_range_complete",
        ),
        row(ALL, VmNormalPage, DEV_COW, 1, "the write fault on page 1"),
        row(
            K6_12_UP,
            FolioWalkStart,
            PFNMAP | COW | NO_PAGE,
            3,
            "do_pages_stat_array -> folio_walk_start: the device ptes are special, no folio (-ENOENT)",
        ),
        row(
            K6_12_UP,
            FolioWalkStart,
            COPY,
            1,
            "do_pages_stat_array -> folio_walk_start returns page 1's anonymous folio",
        ),
        row(
            ALL,
            VmNormalPage,
            DEV_COW,
            3,
            "move_pages on pages 0, 2, 3: 6.1 follow_page -> follow_page_pte, 6.12+ inside folio_walk_start",
        ),
        row(ALL, VmNormalPage, COPY, 1, "move_pages on page 1"),
        row(ALL, VmNormalPage, DEV_COW, 3, "munmap: pages 0, 2, 3"),
        row(ALL, VmNormalPage, COPY, 1, "munmap: page 1"),
        row(
            K6_1,
            VmNormalPage,
            DEV_COW,
            1,
            "munmap: PAT's follow_phys lookup",
        ),
    ],
    rules: &[(ALL, &[(R1, 1)])],
    alerts: &[],
    errors: &[],
    pfn_rule_holds: true,
    move_pages: &[
        // do_pages_stat: 6.1's follow_page(FOLL_DUMP) gives -EFAULT for a
        // special pte, 6.12's folio_walk_start no folio, -ENOENT; page 1
        // (the COW copy) is on node 0.
        (K6_1, Some(&[EFAULT, 0, EFAULT, EFAULT])),
        (K6_12_UP, Some(&[ENOENT, 0, ENOENT, ENOENT])),
    ],
    remap_caller: &[(K7_2, "mmap_action_complete"), (K6, "mmap_mem")],
    driver: Some("mem"),
    shared_rows: &[
        PAT_MUNMAP_COW,
        &lifetime(ALL, PFNMAP | COW, 1, 0),
        PREPARE_COW,
    ],
};

const MOVEPAGES_MOVE: Expect = Expect {
    kernels: ALL,
    rows: &[
        // movepages-move: the same with nodes = {0,0,0,0}: vma_migratable() refuses VM_PFNMAP|VM_IO.
        row(
            K6,
            RemapPfnRange,
            COW | REMAP,
            1,
            "mmap_mem -> remap_pfn_range",
        ),
        row(
            K7_2,
            RemapPfnRangeComplete,
            COW | REMAP,
            1,
            "mmap_mem_prepare -> remap_pfn_range_complete",
        ),
        row(ALL, VmNormalPage, DEV_COW, 1, "the write fault on page 1"),
        row(
            ALL,
            VmNormalPage,
            DEV_COW,
            3,
            "munmap: pages 0, 2, 3 (move_pages itself stops at vma_migratable, before any lookup)",
        ),
        row(ALL, VmNormalPage, COPY, 1, "munmap: page 1"),
        row(
            K6_1,
            VmNormalPage,
            DEV_COW,
            1,
            "munmap: PAT's follow_phys lookup",
        ),
    ],
    rules: &[(ALL, &[(R1, 1)])],
    alerts: &[],
    errors: &[],
    pfn_rule_holds: true,
    move_pages: &[
        // vma_migratable() fails first: -EFAULT for every page.
        (ALL, Some(&[EFAULT; 4])),
    ],
    remap_caller: &[(K7_2, "mmap_action_complete"), (K6, "mmap_mem")],
    driver: Some("mem"),
    shared_rows: &[
        PAT_MUNMAP_COW,
        &lifetime(ALL, PFNMAP | COW, 1, 0),
        PREPARE_COW,
    ],
};

const ANON_CONTROL: Expect = Expect {
    kernels: ALL,
    rows: &[],
    rules: &[],
    alerts: &[],
    errors: &[],
    pfn_rule_holds: false,
    move_pages: &[(ALL, Some(&[0; 4]))],
    remap_caller: &[],
    driver: None,
    shared_rows: &[],
};

const VDSO: Expect = Expect {
    kernels: ALL,
    rows: &[
        // anon-control: no rows; an anonymous vma is filtered out in the kernel.
        // vdso: the vvar vma, through the process's whole life.
        row(
            K6,
            VmfInsertPfnProt,
            PFNMAP,
            1,
            "the first vDSO read faults [vvar] (VM_PFNMAP): vvar_fault -> vmf_insert_pfn -> \
            vmf_insert_pfn_prot; the vvar page's pfn has nothing to do with vm_pgoff 0",
        ),
        row(
            K6,
            VmNormalPage,
            PFNMAP | SPECIAL | NO_PAGE,
            1,
            "exit zaps the vvar pte: special",
        ),
        row(
            K7_2,
            VmNormalPage,
            MIXEDMAP,
            1,
            "lib/vdso/datastore.c: [vvar] is VM_MIXEDMAP and its fault returns vmf->page (no insert \
            hook); exit's vm_normal_page returns that page",
        ),
    ],
    rules: &[],
    alerts: &[],
    errors: &[],
    pfn_rule_holds: false,
    move_pages: &[],
    remap_caller: &[],
    driver: None,
    shared_rows: &[],
};

const IDLE: Expect = Expect {
    kernels: ALL,
    rows: &[],
    rules: &[],
    alerts: &[],
    errors: &[],
    pfn_rule_holds: false,
    move_pages: &[],
    remap_caller: &[],
    driver: None,
    shared_rows: &[],
};

const MOD_INSERT_MIXED: Expect = Expect {
    kernels: ALL,
    rows: &[
        // idle: no rows.
        //
        // The bad-driver module (pfnwatch-testbed/badmod), 4 pages of qemu's VGA
        // BAR each; its pfns have no struct page and vm_pgoff is 0 unless said.
        row(
            ALL,
            VmfInsertMixed,
            MIXEDMAP | COW,
            4,
            "each first read faults: insert_mixed_fault -> vmf_insert_mixed into the \
            MAP_PRIVATE VM_MIXEDMAP vma; pfn is the BAR's, vm_pgoff 0. COW VM_MIXEDMAP is \
            supported (vm_mixed_ok has no COW test; fuse DAX does it): R4 only",
        ),
        row(
            ALL,
            VmNormalPage,
            MIXEDMAP | COW | SPECIAL | NO_PAGE,
            4,
            "munmap: zap_pte_range finds the special ptes insert_pfn() wrote",
        ),
    ],
    // R4 hits per insert and alerts once for the vma.
    rules: &[(ALL, &[(R4, 4)])],
    alerts: &[(ALL, &[alert(R4, Info, 1, Some("insert_mixed_fault"))])],
    errors: &[],
    pfn_rule_holds: false,
    move_pages: &[],
    remap_caller: &[],
    driver: Some("pfnwatch_badmod"),
    shared_rows: &[&lifetime(ALL, MIXEDMAP | COW, 1, 0)],
};

const MOD_PARTIAL_REMAP: Expect = Expect {
    kernels: ALL,
    rows: &[row(
        ALL,
        RemapPfnRange,
        COW | PARTIAL | ERROR,
        1,
        "partial_remap_mmap remaps 3 of 4 pages of a COW vma: -EINVAL before any flag \
            is set (remap_pfn_range_notrack / remap_pfn_range_prepare_vma), so mmap fails",
    )],
    rules: &[(ALL, &[(R3, 1)])],
    alerts: &[(ALL, &[alert(R3, Warning, 1, Some("partial_remap_mmap"))])],
    errors: &[(RemapPfnRange, 22, 1)],
    pfn_rule_holds: false,
    move_pages: &[],
    remap_caller: &[],
    driver: Some("pfnwatch_badmod"),
    shared_rows: &[],
};

/// normal_pfnmap_mmap's pages, put in while the vma is still VM_MIXEDMAP.
const INSERT_PAGES_THEN_PFNMAP: Row = row(
    ALL,
    VmInsertPage,
    MIXEDMAP,
    4,
    "normal_pfnmap_mmap: vm_insert_page of 4 pages into the vma it made VM_MIXEDMAP, \
    before relabelling it VM_PFNMAP (R4 once: a driver populates a VM_MIXEDMAP)",
);

const MOD_NORMAL_PFNMAP: Expect = Expect {
    kernels: ALL,
    rows: &[
        INSERT_PAGES_THEN_PFNMAP,
        row(
            ALL,
            VmNormalPage,
            PFNMAP,
            12,
            "vm_insert_page'd pages in a vma relabelled VM_PFNMAP: not special, so \
            vm_normal_page returns them (R6, R7) at fork (copy_present_pte), the child's \
            exit and munmap, 4 each; no PAT lookup on 6.1 (no VM_PAT)",
        ),
    ],
    rules: &[(ALL, &[(R4, 4), (R6, 12), (R7, 12)])],
    alerts: &[(
        ALL,
        &[
            alert(R4, Info, 1, Some("normal_pfnmap_mmap")),
            alert(R6, Critical, 12, None),
            alert(R7, Critical, 12, None),
        ],
    )],
    errors: &[],
    pfn_rule_holds: false,
    move_pages: &[],
    remap_caller: &[],
    driver: Some("pfnwatch_badmod"),
    shared_rows: &[&lifetime(ALL, PFNMAP, 1, 1)],
};

const MOD_NORMAL_PFNMAP_WALK: Expect = Expect {
    kernels: ALL,
    rows: &[
        INSERT_PAGES_THEN_PFNMAP,
        row(
            ALL,
            VmNormalPage,
            PFNMAP,
            8,
            "move_pages(nodes NULL) looks each page up (6.1: follow_page -> follow_page_pte; \
            6.12+: inside folio_walk_start) and munmap zaps it: vm_normal_page returns the \
            driver's pages, 4 + 4 (R6, R7)",
        ),
        row(
            K6_12_UP,
            FolioWalkStart,
            PFNMAP,
            4,
            "do_pages_stat_array -> folio_walk_start returns each page's folio: not anonymous, \
            in a VM_PFNMAP vma (R5, and R7 for its non-special pte)",
        ),
    ],
    rules: &[
        // folio_walk_start adds R5 and its own R7 where it exists.
        (K6_12_UP, &[(R4, 4), (R5, 4), (R6, 8), (R7, 12)]),
        (K6_1, &[(R4, 4), (R6, 8), (R7, 8)]),
    ],
    alerts: &[
        (
            K6_12_UP,
            &[
                alert(R4, Info, 1, Some("normal_pfnmap_mmap")),
                alert(R5, Critical, 4, None),
                alert(R6, Critical, 8, None),
                alert(R7, Critical, 12, None),
            ],
        ),
        (
            K6_1,
            &[
                alert(R4, Info, 1, Some("normal_pfnmap_mmap")),
                alert(R6, Critical, 8, None),
                alert(R7, Critical, 8, None),
            ],
        ),
    ],
    errors: &[],
    pfn_rule_holds: false,
    move_pages: &[(ALL, Some(&[0; 4]))],
    remap_caller: &[],
    driver: Some("pfnwatch_badmod"),
    shared_rows: &[&lifetime(ALL, PFNMAP, 1, 0)],
};

const MOD_PGOFF: Expect = Expect {
    kernels: ALL,
    rows: &[
        row(
            ALL,
            RemapPfnRange,
            PFNMAP | PARTIAL,
            2,
            "pgoff_mmap maps page 0 and pages 1-3 with two partial remaps while VM_MAYWRITE \
            is cleared (not COW then), and only afterwards sets vm_pgoff = first pfn + 1",
        ),
        row(
            ALL,
            VmNormalPage,
            PFNMAP | COW | SPECIAL | NO_PAGE,
            10,
            "special device ptes off the pgoff rule (R8): the write fault on page 1, then \
            pages 0, 2, 3 at fork, child exit and munmap; no PAT lookup (no VM_PAT)",
        ),
        row(
            ALL,
            VmNormalPage,
            COPY,
            3,
            "page 1's COW copy at fork, child exit and munmap",
        ),
    ],
    rules: &[(ALL, &[(R8, 10)])],
    // Harmless with pte_special (info); once per vma: the parent's, whose
    // lookups come at the write, fork and munmap, and the child's, at exit.
    alerts: &[(ALL, &[alert(R8, Info, 2, None)])],
    errors: &[],
    pfn_rule_holds: false,
    move_pages: &[],
    remap_caller: &[],
    driver: Some("pfnwatch_badmod"),
    shared_rows: &[&lifetime(ALL, PFNMAP | COW, 1, 1)],
};

const MOD_BAD_PAGE_MAP: Expect = Expect {
    kernels: ALL,
    rows: &[
        row(
            ALL,
            VmfInsertMixed,
            MIXEDMAP,
            4,
            "bad_page_map_mmap inserts the 4 pfns while the shared vma is VM_MIXEDMAP (R4), \
            then clears VM_MIXEDMAP",
        ),
        row(
            K6,
            PrintBadPte,
            SPECIAL | NO_PAGE,
            4,
            "munmap: vm_normal_page finds special ptes in a vma that is neither PFNMAP nor \
            MIXEDMAP and reports each through print_bad_pte (R9); the lookups themselves \
            are not counted, the vma is no pfn mapping",
        ),
        row(
            K7_2,
            PrintBadPageMap,
            SPECIAL | NO_PAGE,
            4,
            "the same report, renamed print_bad_page_map in 6.18",
        ),
    ],
    rules: &[(ALL, &[(R4, 4), (R9, 4)])],
    alerts: &[(
        ALL,
        &[
            alert(R4, Info, 1, Some("bad_page_map_mmap")),
            alert(R9, Critical, 4, None),
        ],
    )],
    errors: &[],
    pfn_rule_holds: false,
    move_pages: &[],
    remap_caller: &[],
    driver: Some("pfnwatch_badmod"),
    shared_rows: &[],
};

const MOD_ZERO_COW_PFNMAP: Expect = Expect {
    kernels: ALL,
    rows: &[
        row(
            ALL,
            VmfInsertMixed,
            PFNMAP | COW,
            4,
            "each first read faults: zero_cow_pfnmap_fault -> vmf_insert_mixed of the zero pfn \
            into the COW VM_PFNMAP (vm_mixed_ok lets the zero pfn into a VM_PFNMAP: 6.1, \
            6.12 and 7.2 mm/memory.c); R2, warning: the vmf_insert_pfn it stands for BUG()s",
        ),
        row(
            ALL,
            VmNormalPage,
            PFNMAP | COW | SPECIAL | NO_PAGE,
            4,
            "munmap: zap_pte_range finds the special zero-pfn ptes; vm_normal_page returns \
            NULL for them (pte_special, then is_zero_pfn: no R8, the zero page is no device \
            pfn); no VM_PAT, so no PAT lookup on 6.1",
        ),
    ],
    rules: &[(ALL, &[(R2, 4)])],
    alerts: &[(ALL, &[alert(R2, Warning, 4, Some("zero_cow_pfnmap_fault"))])],
    errors: &[],
    pfn_rule_holds: false,
    move_pages: &[],
    remap_caller: &[],
    driver: Some("pfnwatch_badmod"),
    shared_rows: &[&lifetime(ALL, PFNMAP | COW, 1, 0)],
};

const MOD_APPLY_RANGE: Expect = Expect {
    kernels: ALL,
    rows: &[
        row(
            ALL,
            ApplyToPageRange,
            PFNMAP,
            4,
            "each first read faults: apply_range_fault -> apply_to_page_range on the user mm, \
            the vma found by bpf_find_vma (the fault holds the mmap or per-vma lock, not the \
            write lock); the pfn is the callback's and not seen",
        ),
        row(
            ALL,
            VmNormalPage,
            PFNMAP | SPECIAL | NO_PAGE,
            12,
            "fork copies the ptes (copy_present_pte(s): a VM_PFNMAP is always copied), the \
            child's exit and munmap zap them, 4 each: special, so no page; vm_pgoff 0 is no \
            pfn; no VM_PAT (no remap_pfn_range), so no PAT lookup on 6.1",
        ),
    ],
    rules: &[],
    alerts: &[],
    errors: &[],
    pfn_rule_holds: false,
    move_pages: &[],
    remap_caller: &[],
    driver: Some("pfnwatch_badmod"),
    shared_rows: &[&lifetime(ALL, PFNMAP, 1, 1)],
};

const MOD_INSERT_PAGE: Expect = Expect {
    kernels: K7_2,
    rows: &[
        row(
            K7_2,
            VmfInsertPageMkwrite,
            MIXEDMAP | COW,
            4,
            "each first read faults: insert_page_fault -> vmf_insert_page_mkwrite of the zero \
            page (mm/memory.c insert_page: vm_mixed_zeropage_allowed, COW)",
        ),
        row(
            K7_2,
            VmNormalPage,
            MIXEDMAP | COW | SPECIAL | NO_PAGE,
            4,
            "munmap: insert_page_into_pte_locked made the zero page's ptes special; \
            __vm_normal_page returns NULL for them",
        ),
    ],
    // A VM_MIXEDMAP populated: R4 per insert, alerted once for the vma.
    rules: &[(K7_2, &[(R4, 4)])],
    alerts: &[(K7_2, &[alert(R4, Info, 1, Some("insert_page_fault"))])],
    errors: &[],
    pfn_rule_holds: false,
    move_pages: &[],
    remap_caller: &[],
    driver: Some("pfnwatch_badmod"),
    shared_rows: &[&lifetime(K7_2, MIXEDMAP | COW, 1, 0)],
};

const MOD_HUGE_PFNMAP: Expect = Expect {
    kernels: K6_12_UP,
    rows: &[
        // mod-huge-pfnmap (6.12+): two 2 MiB pmds of the BAR and one page, vm_pgoff
        // = first pfn; a read in each pmd (page 5) and of the last page, and
        // move_pages on the two pmd addresses.
        // Its faults map whole pmds: a fallback to ptes would show as
        // vmf_insert_pfn_prot and vm_normal_page calls, which no row allows.
        row(
            K6_12_UP,
            VmfInsertPfnPmd,
            PFNMAP | PFN_MATCH,
            2,
            "each read faults: __handle_mm_fault -> create_huge_pmd -> huge_pfnmap_huge_fault \
            -> vmf_insert_pfn_pmd at the pmd's start, pfn = vm_pgoff + its page offset",
        ),
        row(
            K6_12_UP,
            VmfInsertPfnProt,
            PFNMAP | PFN_MATCH,
            1,
            "the read of the last page: no pmd fits, so huge_fault falls back and the pte \
            fault inserts it: huge_pfnmap_fault -> vmf_insert_pfn -> vmf_insert_pfn_prot",
        ),
        row(
            K6_12_UP,
            VmNormalPage,
            DEV,
            1,
            "munmap: zap_pte_range on that one special pte",
        ),
        row(
            K6_12_UP,
            FolioWalkStart,
            PFNMAP | NO_PAGE,
            2,
            "do_pages_stat_array -> folio_walk_start finds a present pmd leaf and gets no \
            page for it, so no folio (-ENOENT)",
        ),
        row(
            K6_12_UP,
            VmNormalPagePmd,
            DEV,
            2,
            "folio_walk_start's pmd level: vm_normal_page_pmd returns NULL for the special pmd \
            (pmd_mkspecial in insert_pfn_pmd); its pfn, the pmd's first, is vm_pgoff + the \
            pmd's page offset",
        ),
        row(
            K7_2,
            VmNormalPagePmd,
            DEV,
            2,
            "munmap: zap_huge_pmd -> normal_or_softleaf_folio_pmd -> vm_normal_folio_pmd, one \
            per pmd (6.12's zap_huge_pmd skips special-huge vmas without a lookup)",
        ),
    ],
    rules: &[],
    alerts: &[],
    errors: &[],
    pfn_rule_holds: false,
    move_pages: &[
        // folio_walk_start gets no page for a special pmd.
        (ALL, Some(&[ENOENT; 2])),
    ],
    remap_caller: &[],
    driver: Some("pfnwatch_badmod"),
    shared_rows: &[&lifetime(K6_12_UP, PFNMAP, 1, 0)],
};

const MOD_HUGE_PUD: Expect = Expect {
    kernels: X86_K6_12_UP,
    rows: &[
        // mod-huge-pud (6.12+): 1 GiB of qemu's ivshmem BAR at a 1 GiB-aligned
        // address, vm_pgoff = first pfn; a read at page 5, move_pages there.
        row(
            X86_K6_12_UP,
            VmfInsertPfnPud,
            PFNMAP | PFN_MATCH,
            1,
            "the read faults: __handle_mm_fault -> create_huge_pud -> huge_pfnmap_huge_fault \
            -> vmf_insert_pfn_pud, one special pud for the whole vma",
        ),
        row(
            X86_K6_12_UP,
            FolioWalkStart,
            PFNMAP | NO_PAGE,
            1,
            "do_pages_stat_array -> folio_walk_start at the pud level: no folio (-ENOENT)",
        ),
        row(
            X86_K7_2,
            VmNormalPagePud,
            DEV,
            1,
            "7.2's folio_walk_start asks vm_normal_page_pud, NULL for the special pud; 6.12 \
            skips pud_special entries before any lookup ('mm/pagewalk: Check pfnmap for \
            folio_walk_start()'); neither zap_huge_pud looks the pud up",
        ),
    ],
    rules: &[],
    alerts: &[],
    errors: &[],
    pfn_rule_holds: false,
    move_pages: &[(ALL, Some(&[ENOENT]))],
    remap_caller: &[],
    driver: Some("pfnwatch_badmod"),
    shared_rows: &[&lifetime(X86_K6_12_UP, PFNMAP, 1, 0)],
};

/// Which hooks this kernel has, so pfnwatch must attach them; the others it
/// must report missing.
pub fn hook_present(kernel: KernelVersion, hook: Hook) -> bool {
    // The functions are mm/'s, the same on both architectures but where
    // arch/ code decides whether they are built: the sets below name x86.
    let arch = kernel.arch();
    let kernel = KernelVersion(kernel.0, kernel.1, Arch::X86_64);
    match hook {
        Hook::FolioWalkStart => K6_12_UP.contains(&kernel),
        Hook::RemapPfnRangeComplete => K7_2.contains(&kernel),
        // Renamed print_bad_page_map in 6.18.
        Hook::PrintBadPte => K6.contains(&kernel),
        Hook::PrintBadPageMap => K7_2.contains(&kernel),
        Hook::VmNormalPagePud => K7_2.contains(&kernel),
        // 6.1's pfn lookup by address; 6.12 replaced it.
        Hook::FollowPhys => K6_1.contains(&kernel),
        Hook::FollowPfnmapStart => K6_12_UP.contains(&kernel),
        // 7.x: DAX and the vvar insert pages; mmap_prepare remaps.
        Hook::VmfInsertPageMkwrite | Hook::VmfInsertFolioPmd | Hook::RemapPfnRangePrepare => {
            K7_2.contains(&kernel)
        }
        // 6.1 has them as vmf_insert_pfn_{pmd,pud}_prot, which the same
        // programs attach to.
        Hook::VmfInsertPfnPmd => true,
        // mm/huge_memory.c builds it under
        // CONFIG_HAVE_ARCH_TRANSPARENT_HUGEPAGE_PUD, which arch/x86/Kconfig
        // selects (X86_64) and arch/arm64/Kconfig does not.
        Hook::VmfInsertPfnPud => arch == Arch::X86_64,
        Hook::VmNormalPage
        | Hook::VmNormalPagePmd
        | Hook::RemapPfnRange
        | Hook::VmfInsertPfnProt
        | Hook::VmfInsertMixed
        | Hook::VmInsertPage
        | Hook::VmInsertPages
        | Hook::PerfEventMmap
        | Hook::CopyPageRange
        | Hook::VmAreaFree
        | Hook::ApplyToPageRange => true,
    }
}

/// Whether this kernel has the function a program attaches to: its hook's,
/// or for a program beside the hook, that function.
pub fn program_present(kernel: KernelVersion, program: &str) -> bool {
    let Some(spec) = PROGRAMS.iter().find(|p| p.name == program) else {
        return false;
    };
    match spec.beside {
        // 6.12's exit_mmap frees through remove_vma(vma, true) ->
        // __vm_area_free (mm/vma.c); 6.1 (mm/mmap.c remove_vma) and 7.2
        // (mm/vma.c remove_vma) always call vm_area_free.
        Some("__vm_area_free") => K6_12.contains(&KernelVersion(kernel.0, kernel.1, Arch::X86_64)),
        Some(_) => false,
        None => hook_present(kernel, spec.hook),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_program_beside_a_hook_is_known() {
        for spec in PROGRAMS.iter().filter(|p| p.beside.is_some()) {
            assert!(
                SUPPORTED.iter().any(|k| program_present(*k, spec.name)),
                "{} is on no kernel",
                spec.name
            );
        }
    }

    #[test]
    fn parses_debian_releases() {
        assert_eq!(KernelVersion::parse("6.1.0-50-amd64"), Some(v(6, 1)));
        assert_eq!(KernelVersion::parse("6.12.117+deb13-amd64"), Some(v(6, 12)));
        assert_eq!(KernelVersion::parse("7.2.12+deb14-amd64"), Some(v(7, 2)));
        assert_eq!(KernelVersion::parse("7.2.12+deb14-arm64"), Some(arm(7, 2)));
        assert_eq!(arm(7, 2).to_string(), "7.2 arm64");
        assert_eq!(KernelVersion::parse("garbage"), None);
    }

    #[test]
    fn totals_follow_the_kernel_differences() {
        let total = |k, s: &str, h| -> u64 {
            Scenario::find(s)
                .unwrap()
                .expected(k)
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
        assert!(Scenario::AnonControl.expected(v(6, 12)).is_empty());
        // A kernel nobody derived expectations for expects nothing at all.
        assert!(Scenario::DevmemShared.expected(v(6, 6)).is_empty());
    }

    #[test]
    fn correct_drivers_break_no_rule_but_the_info_ones() {
        // R1 (a COW pfn mapping) and R4 (a VM_MIXEDMAP populated) say what
        // a driver does, not that it is wrong.
        for scenario in Scenario::ALL.into_iter().filter(|s| s.correct_driver()) {
            for k in SUPPORTED {
                let rules: Vec<RuleId> = scenario.rules(k).iter().map(|(r, _)| *r).collect();
                assert!(
                    rules.iter().all(|r| [R1, R4].contains(r)),
                    "{scenario} on {k}: {rules:?}"
                );
                assert!(
                    scenario.alerts(k).iter().all(|a| a.severity == Info),
                    "{scenario} on {k}"
                );
            }
        }
    }

    #[test]
    fn every_row_says_why_and_per_kernel_tables_cover_the_kernels() {
        for scenario in Scenario::ALL {
            let e = scenario.expect();
            for row in scenario.all_rows() {
                assert!(!row.why.is_empty(), "{scenario}");
                assert!(
                    row.kernels.iter().all(|k| e.kernels.contains(k)),
                    "{scenario}"
                );
            }
            for k in e.kernels {
                if !e.rules.is_empty() {
                    assert!(per_kernel(e.rules, *k).is_some(), "{scenario} rules on {k}");
                }
                if !e.alerts.is_empty() {
                    // An alert counts its rule's hits, except a rule about a
                    // vma, which alerts once per vma however often it hits.
                    let alerts = scenario.alerts(*k);
                    let rules = scenario.rules(*k);
                    assert_eq!(alerts.len(), rules.len(), "{scenario} on {k}");
                    for (a, (rule, hits)) in alerts.iter().zip(rules) {
                        assert_eq!(a.rule, *rule, "{scenario} on {k}");
                        if rule.rule().once_per_vma {
                            assert!((1..=*hits).contains(&a.count), "{scenario} on {k}");
                        } else {
                            assert_eq!(a.count, *hits, "{scenario} on {k}: {rule}");
                        }
                    }
                }
            }
        }
    }
}
