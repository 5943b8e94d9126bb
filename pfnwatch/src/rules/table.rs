//! The rule table: every rule pfnwatch knows, as data. A rule's `matches`
//! are the cheap part (hooks and class bits), which the kernel programs
//! evaluate to decide which calls send a record; `needs` is the rest,
//! checked in user space on the record.

use crate::kernel::decode::Record;
use pfnwatch_common::class::{
    ANON, COW, ERROR, MIXEDMAP, NO_PAGE, PARTIAL, PFN_MATCH, PFNMAP, SPECIAL,
};
use pfnwatch_common::{Class, Hook};
use serde::{Deserialize, Serialize};

#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    pub const ALL: [Severity; 3] = [Severity::Info, Severity::Warning, Severity::Critical];

    pub fn parse(text: &str) -> Option<Severity> {
        Severity::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rule's id. The table below holds one [`Rule`] per id, in this order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RuleId {
    R1,
    R2,
    R3,
    R4,
    R5,
    R6,
    R7,
    R8,
    R9,
}

impl RuleId {
    pub const ALL: [RuleId; 9] = [
        RuleId::R1,
        RuleId::R2,
        RuleId::R3,
        RuleId::R4,
        RuleId::R5,
        RuleId::R6,
        RuleId::R7,
        RuleId::R8,
        RuleId::R9,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            RuleId::R1 => "R1",
            RuleId::R2 => "R2",
            RuleId::R3 => "R3",
            RuleId::R4 => "R4",
            RuleId::R5 => "R5",
            RuleId::R6 => "R6",
            RuleId::R7 => "R7",
            RuleId::R8 => "R8",
            RuleId::R9 => "R9",
        }
    }

    pub const fn rule(self) -> &'static Rule {
        &RULES[self as usize]
    }

    pub const fn name(self) -> &'static str {
        self.rule().name
    }

    /// An id (`R4`, any case) or a name (`mixedmap_in_use`), as operators
    /// write them in flags and the configuration file.
    pub fn parse(text: &str) -> Result<RuleId, String> {
        let text = text.trim();
        RuleId::ALL
            .into_iter()
            .find(|id| id.as_str().eq_ignore_ascii_case(text) || id.name() == text)
            .ok_or_else(|| {
                let known: Vec<String> = RuleId::ALL
                    .iter()
                    .map(|id| format!("{id} {}", id.name()))
                    .collect();
                format!("unknown rule {text:?} (known: {})", known.join(", "))
            })
    }
}

impl std::fmt::Display for RuleId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for RuleId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for RuleId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        RuleId::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// The in-kernel part of a condition: one of these hooks, with all of
/// `all_of` and none of `none_of` in the call's class.
#[derive(Debug)]
pub struct Match {
    pub hooks: &'static [Hook],
    pub all_of: u16,
    pub none_of: u16,
    /// The severity of a hit through this match, when not the rule's.
    pub severity: Option<Severity>,
    /// The severity on an architecture without pte_special, where the
    /// flags and vm_pgoff alone tell device pfns from pages.
    pub without_pte_special: Option<Severity>,
}

impl Match {
    pub fn matches(&self, hook: Hook, class: Class) -> bool {
        self.hooks.contains(&hook) && class.has(self.all_of) && class.0 & self.none_of == 0
    }
}

/// A match of `hooks` with all of `all_of` and none of `none_of`, at the
/// rule's severity.
const fn when(hooks: &'static [Hook], all_of: u16, none_of: u16) -> Match {
    Match {
        hooks,
        all_of,
        none_of,
        severity: None,
        without_pte_special: None,
    }
}

/// The user-space part of a condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// The architecture keeps a special bit in its ptes.
    ArchPteSpecial,
    /// The entry is a pte, not a huge pmd or pud.
    PteLevel,
    /// The pfn is not the shared zero page's: the kernel puts that page
    /// into pfn maps on purpose.
    NotZeroPage,
}

#[derive(Debug)]
pub struct Rule {
    pub id: RuleId,
    pub name: &'static str,
    pub severity: Severity,
    /// Any one of these, in the kernel.
    pub matches: &'static [Match],
    /// All of these, in user space.
    pub needs: &'static [Need],
    /// Alert once per vma (and process), not once per call: the vma is
    /// what is wrong, and its every lookup would say so again.
    pub once_per_vma: bool,
    /// One paragraph that cites the kernel rule, for whoever has to act.
    pub explanation: &'static str,
    /// Where each kernel says so: file and function, per kernel.
    pub sources: &'static str,
}

impl Rule {
    /// The severity of a hit through `m` on an architecture with or without
    /// pte_special.
    pub fn severity_of(&self, m: &Match, arch_pte_special: bool) -> Severity {
        let base = m.severity.unwrap_or(self.severity);
        match m.without_pte_special {
            Some(sev) if !arch_pte_special => sev.max(base),
            _ => base,
        }
    }
}

/// Hook lists of the table (`Hook::of` is not const; a test checks them).
const LOOKUPS: &[Hook] = &[
    Hook::VmNormalPage,
    Hook::VmNormalPagePmd,
    Hook::VmNormalPagePud,
];
/// The remaps that populate a vma (prepare only describes one).
const REMAPS: &[Hook] = &[Hook::RemapPfnRange, Hook::RemapPfnRangeComplete];
const ALL_REMAPS: &[Hook] = &[
    Hook::RemapPfnRange,
    Hook::RemapPfnRangeComplete,
    Hook::RemapPfnRangePrepare,
];
/// The pfn inserts: they BUG() on a COW VM_PFNMAP and on PFNMAP|MIXEDMAP.
const PFN_INSERTS: &[Hook] = &[
    Hook::VmfInsertPfnProt,
    Hook::VmfInsertPfnPmd,
    Hook::VmfInsertPfnPud,
];
const MAPPERS: &[Hook] = &[
    Hook::RemapPfnRange,
    Hook::RemapPfnRangeComplete,
    Hook::VmfInsertPfnProt,
    Hook::VmfInsertMixed,
    Hook::VmfInsertPfnPmd,
    Hook::VmfInsertPfnPud,
    Hook::VmInsertPage,
    Hook::VmInsertPages,
    Hook::VmfInsertPageMkwrite,
    Hook::VmfInsertFolioPmd,
    Hook::ApplyToPageRange,
];
const BAD_MAP: &[Hook] = &[Hook::PrintBadPte, Hook::PrintBadPageMap];

/// Indexed by [`RuleId`]. The conditions follow the kernel sources of
/// Debian's 6.1.176, 6.12.117 and 7.2.12 (`sources`); where the linux-mm
/// thread and the code disagree, the code wins.
pub const RULES: &[Rule; 9] = &[
    Rule {
        id: RuleId::R1,
        name: "cow_pfnmap_mapping",
        severity: Severity::Info,
        matches: &[when(REMAPS, PFNMAP | COW, ERROR)],
        needs: &[],
        once_per_vma: false,
        explanation: "remap_pfn_range() succeeded on a COW mapping (MAP_PRIVATE and writable): \
            a VM_PFNMAP whose written pages become anonymous copies. The kernel supports it \
            by making remap_pfn_range() cover the whole vma and set vm_pgoff to the first \
            pfn, but new VM_PFNMAP COW users are to be avoided (linux-mm, \"mm/pagewalk: \
            Check pfnmap for folio_walk_start()\").",
        sources: "6.1 mm/memory.c remap_pfn_range_notrack (is_cow_mapping: vm_pgoff = pfn); \
            6.12 mm/memory.c remap_pfn_range_internal, the same; 7.2 mm/memory.c \
            get_remap_pgoff (from remap_pfn_range_prepare_vma and remap_pfn_range_prepare)",
    },
    Rule {
        id: RuleId::R2,
        name: "fault_insert_into_cow",
        severity: Severity::Critical,
        matches: &[
            // Seen at fentry: the insert BUG()s before its exit.
            when(PFN_INSERTS, PFNMAP | COW, 0),
            // vmf_insert_mixed does not BUG on a COW VM_PFNMAP: it inserts
            // the zero pfn (and special or devmap pfn_ts on 6.x).
            Match {
                severity: Some(Severity::Warning),
                ..when(&[Hook::VmfInsertMixed], PFNMAP | COW, ERROR)
            },
        ],
        needs: &[],
        once_per_vma: false,
        explanation: "A fault handler inserted a pfn into a COW VM_PFNMAP. The pfn inserts \
            (vmf_insert_pfn*) BUG() on that before inserting anything, so this record, taken \
            at entry, is the trace of which driver and call path took the machine down \
            (critical). vmf_insert_mixed() lets the zero pfn through instead (warning): a \
            fault-time insert does not set vm_pgoff to the first pfn, which architectures \
            without pte_special need to tell device pfns from COW copies; the thread asks \
            to \"WARN if we stumble over a COW mapping\". COW VM_MIXEDMAP and DAX file \
            mappings are supported and never count.",
        sources: "BUG_ON((vma->vm_flags & VM_PFNMAP) && is_cow_mapping(vma->vm_flags)): \
            6.1 mm/memory.c vmf_insert_pfn_prot, mm/huge_memory.c vmf_insert_pfn_pmd_prot, \
            vmf_insert_pfn_pud_prot; 6.12 mm/memory.c vmf_insert_pfn_prot, mm/huge_memory.c \
            vmf_insert_pfn_pmd, vmf_insert_pfn_pud; 7.2 the same. No COW test in vm_mixed_ok \
            (mm/memory.c, all three). COW MIXEDMAP supported: vm_normal_page's comment \
            (mm/memory.c, all three); fs/dax.c dax_fault_iter inserts into MAP_PRIVATE files \
            on read faults (6.1, 6.12: vmf_insert_mixed into a vma that is neither PFNMAP \
            nor MIXEDMAP; 7.2: vmf_insert_page_mkwrite); fs/fuse/dax.c fuse_dax_mmap sets \
            VM_MIXEDMAP",
    },
    Rule {
        id: RuleId::R3,
        name: "partial_cow_remap",
        severity: Severity::Warning,
        matches: &[when(ALL_REMAPS, COW | PARTIAL | ERROR, 0)],
        needs: &[],
        once_per_vma: false,
        explanation: "A driver remapped pfns into a COW mapping without covering the whole \
            vma. The kernel refuses it with -EINVAL, because only a whole-vma remap can set \
            vm_pgoff so that pfn == vm_pgoff + offset identifies device pages. The size is \
            rounded up to a page first, as the kernel does, and 7.x drivers converted to \
            mmap_prepare are refused (and seen) in remap_pfn_range_prepare().",
        sources: "6.1 mm/memory.c remap_pfn_range_notrack (end = addr + PAGE_ALIGN(size); \
            COW: addr != vm_start || end != vm_end -> -EINVAL); 6.12 mm/memory.c \
            remap_pfn_range_internal, the same; 7.2 mm/memory.c get_remap_pgoff, from \
            remap_pfn_range_prepare_vma (PAGE_ALIGN) and remap_pfn_range_prepare (the raw \
            size, the vma described by struct vm_area_desc)",
    },
    Rule {
        id: RuleId::R4,
        name: "mixedmap_in_use",
        severity: Severity::Info,
        matches: &[
            // Where a driver populates the vma; never per lookup.
            when(MAPPERS, MIXEDMAP, ERROR | PFNMAP),
            // VM_PFNMAP and VM_MIXEDMAP on one vma: with pte_special the
            // entry's special bit decides and nothing goes wrong; without,
            // VM_MIXEDMAP wins in vm_normal_page and a remapped pfn_valid
            // pfn is taken for a refcounted page.
            Match {
                without_pte_special: Some(Severity::Warning),
                ..when(REMAPS, PFNMAP | MIXEDMAP, ERROR)
            },
            // A pfn insert into such a vma BUG()s.
            Match {
                severity: Some(Severity::Critical),
                ..when(PFN_INSERTS, PFNMAP | MIXEDMAP, 0)
            },
        ],
        needs: &[],
        once_per_vma: true,
        explanation: "A driver populates a VM_MIXEDMAP mapping, which mixes struct-page backed \
            and raw pfns; the mm maintainers \"would love to see that go\", but it is \
            supported (fuse DAX, cramfs, 7.x's vvar, io_uring and BPF ring buffers). Reported \
            once per vma. VM_PFNMAP and VM_MIXEDMAP together (virtio-gpu host-visible blobs, \
            /proc/vmcore) are harmless where ptes carry a special bit, as on x86-64 and arm64, \
            and a warning where they do not; a pfn insert into such a vma BUG()s (critical).",
        sources: "both flags: 6.1, 6.12 drivers/gpu/drm/virtio/virtgpu_vram.c \
            virtio_gpu_vram_mmap (VM_MIXEDMAP, then io_remap_pfn_range adds VM_PFNMAP), 7.2 \
            the same; fs/proc/vmcore.c mmap_vmcore. Which flag wins: 6.1 mm/memory.c \
            vm_normal_page (pte_special first; without it VM_MIXEDMAP is tested first), 6.12 \
            the same, 7.2 __vm_normal_page. The BUG: BUG_ON((vm_flags & (VM_PFNMAP | \
            VM_MIXEDMAP)) == (VM_PFNMAP | VM_MIXEDMAP)) in vmf_insert_pfn_prot (mm/memory.c, \
            all three)",
    },
    Rule {
        id: RuleId::R5,
        name: "folio_walk_on_pfnmap",
        severity: Severity::Critical,
        matches: &[when(
            &[Hook::FolioWalkStart],
            PFNMAP,
            NO_PAGE | ANON | MIXEDMAP,
        )],
        needs: &[Need::NotZeroPage],
        once_per_vma: false,
        explanation: "folio_walk_start() returned a folio for a device pfn in a VM_PFNMAP vma. \
            Pfnmap entries must be treated as special (the patch series this thread belongs \
            to); a folio there is not one the kernel owns. A COW copy is an anonymous folio \
            and is fine, and so are VM_IO|VM_MIXEDMAP vmas such as 7.x's [vvar], whose \
            refcounted pages move_pages(2) may walk.",
        sources: "6.12 mm/pagewalk.c folio_walk_start (no VM_PFNMAP test of its own: \
            vm_normal_page_pmd and vm_normal_page decide; special puds skipped), 7.2 the same \
            with vm_normal_page_pud; 6.1 has no folio_walk_start. 7.2 lib/vdso/datastore.c \
            vvar (VM_IO|VM_MIXEDMAP, refcounted pages), mm/migrate.c do_pages_stat_array \
            (no vma check before folio_walk_start)",
    },
    Rule {
        id: RuleId::R6,
        name: "normal_page_in_shared_pfnmap",
        severity: Severity::Critical,
        matches: &[when(LOOKUPS, PFNMAP, COW | NO_PAGE | MIXEDMAP)],
        needs: &[Need::NotZeroPage],
        once_per_vma: false,
        explanation: "vm_normal_page() returned a struct page in a VM_PFNMAP vma that is not a \
            COW mapping. \"In a !COW mapping, everything is special\": the kernel will \
            refcount and rmap a page the driver never gave it. The shared zero page is the \
            exception the kernel makes on purpose (an RDMA device reset maps it into the \
            still-VM_PFNMAP vma); any other page still counts, the driver's own included, \
            because nothing tells a page the core accounted for from one put there by hand.",
        sources: "6.1 mm/memory.c vm_normal_page, 6.12 the same, 7.2 __vm_normal_page; the \
            zero page: drivers/infiniband/core/uverbs_main.c rdma_umap_fault (all three: \
            vmf->page = ZERO_PAGE for read-only vmas after a disassociate), 6.x mm/memory.c \
            zero_pfn, 7.2 mm/mm_init.c zero_page_pfn",
    },
    Rule {
        id: RuleId::R7,
        name: "pfnmap_pte_not_special",
        severity: Severity::Critical,
        matches: &[
            when(&[Hook::VmNormalPage], PFNMAP, SPECIAL | ANON | MIXEDMAP),
            when(
                &[Hook::FolioWalkStart],
                PFNMAP,
                SPECIAL | ANON | NO_PAGE | MIXEDMAP,
            ),
            // follow_pfnmap_start() reports the pte's special bit, 6.1's
            // follow_phys() the pte's flags; in a COW mapping a
            // non-special pte is a copy.
            when(
                &[Hook::FollowPfnmapStart, Hook::FollowPhys],
                PFNMAP,
                SPECIAL | COW | ERROR | MIXEDMAP,
            ),
        ],
        needs: &[Need::ArchPteSpecial, Need::PteLevel, Need::NotZeroPage],
        once_per_vma: false,
        explanation: "A pte in a VM_PFNMAP vma lacks the special bit on an architecture that has \
            one. remap_pfn_range() and vmf_insert_pfn() always set it; a driver put a normal \
            pte there by hand. (In a COW mapping the copied pages are anonymous and rightly \
            not special: they do not count; nor does the shared zero page.)",
        sources: "6.1 mm/memory.c remap_pte_range (pte_mkspecial), insert_pfn (pte_mkspecial); \
            6.12 the same; 7.2 the same; follow_pfnmap_start's args->special = pte_special() \
            (mm/memory.c, 6.12 and 7.2); 6.1 mm/memory.c follow_phys (*prot = \
            pte_pgprot(pte), which keeps _PAGE_SPECIAL on x86)",
    },
    Rule {
        id: RuleId::R8,
        name: "pgoff_rule_broken",
        severity: Severity::Info,
        matches: &[Match {
            without_pte_special: Some(Severity::Warning),
            ..when(LOOKUPS, PFNMAP | COW | SPECIAL, PFN_MATCH)
        }],
        // vm_normal_page tests is_zero_pfn after the pgoff rule: the zero
        // page is never taken for a normal page.
        needs: &[Need::PteLevel, Need::NotZeroPage],
        once_per_vma: true,
        explanation: "A special pte in a COW VM_PFNMAP vma whose pfn != vm_pgoff + offset. \
            Harmless on this architecture, whose ptes carry a special bit (info); a latent \
            bug where they do not, because there device pfns are told from COW copies only by \
            that rule, and this device pfn would be taken for a normal page (warning: the \
            thread's vfio-pci concern). i915's MAP_PRIVATE GEM mmaps do this with a fake \
            vm_pgoff. Reported once per vma.",
        sources: "6.1 mm/memory.c vm_normal_page (without pte_special: pfn == vm_pgoff + off \
            -> NULL, then is_zero_pfn -> NULL), 6.12 the same, 7.2 __vm_normal_page; i915: \
            drivers/gpu/drm/i915/gem/i915_gem_mman.c vm_fault_gtt/vm_fault_cpu (all three)",
    },
    Rule {
        id: RuleId::R9,
        name: "kernel_bad_page_map",
        severity: Severity::Critical,
        matches: &[when(BAD_MAP, 0, 0)],
        needs: &[],
        once_per_vma: false,
        explanation: "The kernel itself reported a bad page map (print_bad_pte until 6.17, \
            print_bad_page_map from 6.18): a page-table entry pointing at a pfn with no valid \
            struct page, or a page whose counts went wrong. The kernel taints itself \
            (TAINT_BAD_PAGE); the call path names the driver.",
        sources: "6.1 mm/memory.c print_bad_pte, 6.12 the same, 7.2 print_bad_page_map",
    },
];

impl Need {
    /// Whether the record meets this condition, given what user space knows.
    pub fn holds(self, r: &Record, arch_pte_special: bool) -> bool {
        match self {
            Need::ArchPteSpecial => arch_pte_special,
            Need::PteLevel => r.level == pfnwatch_common::Level::Pte,
            Need::NotZeroPage => !r.zero_page,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pfnwatch_common::Family;

    #[test]
    fn the_table_is_in_id_order_with_unique_names() {
        for (i, rule) in RULES.iter().enumerate() {
            assert_eq!(rule.id, RuleId::ALL[i]);
            assert_eq!(rule.id.as_str(), format!("R{}", i + 1));
            assert!(RULES[i + 1..].iter().all(|b| b.name != rule.name));
            assert!(!rule.matches.is_empty() && rule.explanation.len() > 80);
            // Every rule cites each kernel it was checked against.
            for kernel in ["6.1", "6.12", "7.2"] {
                assert!(rule.sources.contains(kernel), "{} {kernel}", rule.id);
            }
        }
    }

    #[test]
    fn the_family_lists_hold_their_families() {
        let of = |f: Family| Hook::of(f).collect::<Vec<_>>();
        assert_eq!(LOOKUPS, of(Family::Lookup));
        assert_eq!(ALL_REMAPS, of(Family::Remap));
        assert_eq!(BAD_MAP, of(Family::BadMap));
        assert!(PFN_INSERTS.iter().all(|h| h.family() == Family::Insert));
        // prepare only describes a remap: the vma does not exist yet.
        let mappers: Vec<Hook> = Hook::ALL
            .into_iter()
            .filter(|h| h.family().maps_pfns() && *h != Hook::RemapPfnRangePrepare)
            .collect();
        assert_eq!(MAPPERS, mappers);
    }

    #[test]
    fn ids_parse_by_id_or_name() {
        assert_eq!(RuleId::parse("r4"), Ok(RuleId::R4));
        assert_eq!(RuleId::parse(" pgoff_rule_broken "), Ok(RuleId::R8));
        let err = RuleId::parse("R10").unwrap_err();
        assert!(
            err.contains("unknown rule \"R10\"") && err.contains("R9 kernel_bad_page_map"),
            "{err}"
        );
        let json = serde_json::to_string(&RuleId::R6).unwrap();
        assert_eq!(json, "\"R6\"");
        assert_eq!(serde_json::from_str::<RuleId>(&json).unwrap(), RuleId::R6);
    }
}
