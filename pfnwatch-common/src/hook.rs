//! The kernel functions pfnwatch hooks, by the id the kernel programs use.

/// Declares the hooks once: each variant with its id, kernel function and
/// family; the enum, [`Hook::ALL`], [`Hook::function`] and
/// [`Hook::family`] all come from this one list.
macro_rules! hooks {
    ($( $(#[doc = $doc:literal])* $variant:ident = $id:literal, $function:literal, $family:ident; )*) => {
        /// One hooked kernel function. The discriminant is the id the kernel
        /// programs write into records and use to index the counter maps.
        #[repr(u16)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Hook {
            $( $(#[doc = $doc])* $variant = $id, )*
        }

        impl Hook {
            /// Every hook, in id order.
            pub const ALL: [Hook; Hook::COUNT] = [$(Hook::$variant),*];
            pub const COUNT: usize = [$($id),*].len();

            /// The kernel function this hook attaches to; also its name in output.
            pub const fn function(self) -> &'static str {
                match self {
                    $(Hook::$variant => $function,)*
                }
            }

            /// What kind of kernel function this is: every rule, label and
            /// decision that depends on "is this a remap?" asks this.
            pub const fn family(self) -> Family {
                match self {
                    $(Hook::$variant => Family::$family,)*
                }
            }
        }
    };
}

hooks! {
    /// `vm_normal_page(vma, addr, pte)`: is the page behind this pte normal?
    VmNormalPage = 0, "vm_normal_page", Lookup;
    /// `vm_normal_page_pmd(vma, addr, pmd)`: the same for a huge pmd.
    VmNormalPagePmd = 1, "vm_normal_page_pmd", Lookup;
    /// `folio_walk_start(fw, vma, addr, flags)` (6.12+).
    FolioWalkStart = 2, "folio_walk_start", Walk;
    /// `remap_pfn_range(vma, addr, pfn, size, prot)`: a driver maps pfns.
    RemapPfnRange = 3, "remap_pfn_range", Remap;
    /// `remap_pfn_range_complete(vma, action)`: the mmap_prepare path (7.x).
    RemapPfnRangeComplete = 4, "remap_pfn_range_complete", Remap;
    /// `vmf_insert_pfn_prot(vma, addr, pfn, prot)`: fault-time pfn insert.
    VmfInsertPfnProt = 5, "vmf_insert_pfn_prot", Insert;
    /// `vmf_insert_mixed(vma, addr, pfn)`: fault-time insert, VM_MIXEDMAP.
    VmfInsertMixed = 6, "vmf_insert_mixed", Insert;
    /// `print_bad_pte(vma, addr, pte, page)`: the kernel reports a bad page
    /// map (until 6.17).
    PrintBadPte = 7, "print_bad_pte", BadMap;
    /// `print_bad_page_map(vma, addr, entry, page, level)`: the same from
    /// 6.18 on.
    PrintBadPageMap = 8, "print_bad_page_map", BadMap;
    /// `vmf_insert_pfn_pmd(vmf, pfn, write)`: fault-time insert of a huge
    /// pmd of pfns (6.12+ as a function; 6.1 inlines it).
    VmfInsertPfnPmd = 9, "vmf_insert_pfn_pmd", Insert;
    /// `vmf_insert_pfn_pud(vmf, pfn, write)`: the same for a pud.
    VmfInsertPfnPud = 10, "vmf_insert_pfn_pud", Insert;
    /// `vm_normal_page_pud(vma, addr, pud)`: the lookup for a huge pud (7.x).
    VmNormalPagePud = 11, "vm_normal_page_pud", Lookup;
    /// `follow_pfnmap_start(args)` (6.12+): a pfn looked up by address (KVM,
    /// vfio type1, /proc/PID/mem through generic_access_phys, x86 PAT).
    FollowPfnmapStart = 12, "follow_pfnmap_start", Follow;
    /// `follow_phys(vma, addr, flags, prot, phys)`: the same on 6.1.
    FollowPhys = 13, "follow_phys", Follow;
    /// `vm_insert_page(vma, addr, page)`: a refcounted page into a
    /// VM_MIXEDMAP (it sets the flag).
    VmInsertPage = 14, "vm_insert_page", Insert;
    /// `vm_insert_pages(vma, addr, pages, num)`: the batched form.
    VmInsertPages = 15, "vm_insert_pages", Insert;
    /// `vmf_insert_page_mkwrite(vmf, page, write)` (7.x).
    VmfInsertPageMkwrite = 16, "vmf_insert_page_mkwrite", Insert;
    /// `vmf_insert_folio_pmd(vmf, folio, write)` (7.x).
    VmfInsertFolioPmd = 17, "vmf_insert_folio_pmd", Insert;
    /// `remap_pfn_range_prepare(desc)` (7.x mmap_prepare): where a
    /// converted driver's partial COW remap is refused.
    RemapPfnRangePrepare = 18, "remap_pfn_range_prepare", Remap;
    /// `perf_event_mmap(vma)`: a new vma, its flags final (the inventory).
    PerfEventMmap = 19, "perf_event_mmap", VmaCreated;
    /// `copy_page_range(dst, src)`: fork gives the child the vma.
    CopyPageRange = 20, "copy_page_range", VmaCreated;
    /// `vm_area_free(vma)`: a vma goes away.
    VmAreaFree = 21, "vm_area_free", VmaGone;
    /// `apply_to_page_range(mm, addr, size, fn, data)` on a user mm: ptes
    /// written through a caller's callback (i915's GTT faults, Xen).
    ApplyToPageRange = 22, "apply_to_page_range", Insert;
}

impl Hook {
    pub const fn id(self) -> u16 {
        self as u16
    }

    pub fn from_id(id: u16) -> Option<Hook> {
        Hook::ALL.get(usize::from(id)).copied()
    }

    pub fn from_function(name: &str) -> Option<Hook> {
        Hook::ALL.into_iter().find(|h| h.function() == name)
    }

    /// Whether the hook returns a vm_fault_t (shown in hex) rather than an
    /// int (-errno).
    pub const fn returns_vm_fault(self) -> bool {
        matches!(
            self,
            Hook::VmfInsertPfnProt
                | Hook::VmfInsertMixed
                | Hook::VmfInsertPfnPmd
                | Hook::VmfInsertPfnPud
                | Hook::VmfInsertPageMkwrite
                | Hook::VmfInsertFolioPmd
        )
    }

    /// The hooks of one family, in id order.
    pub fn of(family: Family) -> impl Iterator<Item = Hook> {
        Hook::ALL.into_iter().filter(move |h| h.family() == family)
    }
}

/// The kinds of hooked function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// `vm_normal_page*`: is the page behind this entry a normal page?
    Lookup,
    /// `folio_walk_start`: a page walk that hands out a folio.
    Walk,
    /// `follow_pfnmap_start`, `follow_phys`: a pfn looked up by address.
    Follow,
    /// `remap_pfn_range*`: a driver maps a range of pfns at mmap time.
    Remap,
    /// `vmf_insert_*`: a fault handler inserts pfns.
    Insert,
    /// The kernel itself reports a bad page map.
    BadMap,
    /// A pfn-mapping vma comes to be (mmap, fork).
    VmaCreated,
    /// A pfn-mapping vma goes away.
    VmaGone,
}

impl Family {
    pub const ALL: [Family; 8] = [
        Family::Lookup,
        Family::Walk,
        Family::Follow,
        Family::Remap,
        Family::Insert,
        Family::BadMap,
        Family::VmaCreated,
        Family::VmaGone,
    ];

    /// Name of the C macro (`PFNW_FAMILY_<c_name>`).
    pub const fn c_name(self) -> &'static str {
        match self {
            Family::Lookup => "LOOKUP",
            Family::Walk => "WALK",
            Family::Follow => "FOLLOW",
            Family::Remap => "REMAP",
            Family::Insert => "INSERT",
            Family::BadMap => "BAD_MAP",
            Family::VmaCreated => "VMA_CREATED",
            Family::VmaGone => "VMA_GONE",
        }
    }

    /// Hooks that put pfns into a vma (remaps and inserts), as opposed to
    /// the ones that look pages up in one.
    pub const fn maps_pfns(self) -> bool {
        matches!(self, Family::Remap | Family::Insert)
    }
}

impl core::fmt::Display for Hook {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.function())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_dense_and_round_trip() {
        for (i, hook) in Hook::ALL.into_iter().enumerate() {
            assert_eq!(usize::from(hook.id()), i);
            assert_eq!(Hook::from_id(hook.id()), Some(hook));
            assert_eq!(Hook::from_function(hook.function()), Some(hook));
        }
        assert_eq!(Hook::from_id(Hook::COUNT as u16), None);
        assert_eq!(Hook::from_function("do_wp_page"), None);
    }

    #[test]
    fn every_family_has_hooks_and_remaps_are_the_two_remap_functions() {
        for family in Family::ALL {
            assert!(Hook::of(family).next().is_some(), "{family:?}");
        }
        let remaps: Vec<Hook> = Hook::of(Family::Remap).collect();
        assert_eq!(
            remaps,
            [
                Hook::RemapPfnRange,
                Hook::RemapPfnRangeComplete,
                Hook::RemapPfnRangePrepare
            ]
        );
        assert!(Hook::VmfInsertPfnPud.family().maps_pfns());
        assert!(!Hook::VmNormalPagePud.family().maps_pfns());
    }
}
