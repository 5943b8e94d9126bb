//! The kernel programs in the object, as data: which hook each serves, how
//! it attaches, and what a missing target means on a given kernel.

use pfnwatch_common::{Family, Hook};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Attach {
    Fentry,
    Fexit,
}

impl Attach {
    pub const fn section_prefix(self) -> &'static str {
        match self {
            Attach::Fentry => "fentry",
            Attach::Fexit => "fexit",
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct ProgramSpec {
    /// The C function name, which is the program's name in the object.
    pub name: &'static str,
    pub attach: Attach,
    pub hook: Hook,
    /// The same function's name on older kernels, where it had another
    /// (6.1's vmf_insert_pfn_pmd_prot for vmf_insert_pfn_pmd).
    pub older: Option<&'static str>,
    /// A function the hook's program attaches to besides the hook's own,
    /// where the kernel takes that path without calling the hook's (6.12's
    /// exit_mmap calls __vm_area_free, not vm_area_free).
    pub beside: Option<&'static str>,
}

impl ProgramSpec {
    /// The kernel function the program attaches to (its current name).
    pub const fn target(&self) -> &'static str {
        match self.beside {
            Some(function) => function,
            None => self.hook.function(),
        }
    }

    /// The name this kernel has the function under, if it has it.
    pub fn target_on(&self, has: impl Fn(&str) -> bool) -> Option<&'static str> {
        [Some(self.target()), self.older]
            .into_iter()
            .flatten()
            .find(|name| has(name))
    }
}

const fn program(name: &'static str, attach: Attach, hook: Hook) -> ProgramSpec {
    ProgramSpec {
        name,
        attach,
        hook,
        older: None,
        beside: None,
    }
}

/// A program whose function older kernels name `older`.
const fn renamed(
    name: &'static str,
    attach: Attach,
    hook: Hook,
    older: &'static str,
) -> ProgramSpec {
    ProgramSpec {
        name,
        attach,
        hook,
        older: Some(older),
        beside: None,
    }
}

/// A second program of `hook`'s, on the function `beside`.
const fn beside(
    name: &'static str,
    attach: Attach,
    hook: Hook,
    beside: &'static str,
) -> ProgramSpec {
    ProgramSpec {
        name,
        attach,
        hook,
        older: None,
        beside: Some(beside),
    }
}

use Attach::{Fentry, Fexit};

pub const PROGRAMS: [ProgramSpec; 28] = [
    program("vm_normal_page_exit", Fexit, Hook::VmNormalPage),
    program("vm_normal_page_pmd_exit", Fexit, Hook::VmNormalPagePmd),
    program("vm_normal_page_pud_exit", Fexit, Hook::VmNormalPagePud),
    program("folio_walk_start_exit", Fexit, Hook::FolioWalkStart),
    program("remap_pfn_range_entry", Fentry, Hook::RemapPfnRange),
    program("remap_pfn_range_exit", Fexit, Hook::RemapPfnRange),
    program(
        "remap_pfn_range_complete_exit",
        Fexit,
        Hook::RemapPfnRangeComplete,
    ),
    program(
        "remap_pfn_range_prepare_exit",
        Fexit,
        Hook::RemapPfnRangePrepare,
    ),
    // The pfn inserts BUG() on a COW VM_PFNMAP before their exit: the
    // fentry sees that, the fexit everything else.
    program("vmf_insert_pfn_prot_entry", Fentry, Hook::VmfInsertPfnProt),
    program("vmf_insert_pfn_prot_exit", Fexit, Hook::VmfInsertPfnProt),
    program("vmf_insert_mixed_exit", Fexit, Hook::VmfInsertMixed),
    renamed(
        "vmf_insert_pfn_pmd_entry",
        Fentry,
        Hook::VmfInsertPfnPmd,
        "vmf_insert_pfn_pmd_prot",
    ),
    renamed(
        "vmf_insert_pfn_pmd_exit",
        Fexit,
        Hook::VmfInsertPfnPmd,
        "vmf_insert_pfn_pmd_prot",
    ),
    renamed(
        "vmf_insert_pfn_pud_entry",
        Fentry,
        Hook::VmfInsertPfnPud,
        "vmf_insert_pfn_pud_prot",
    ),
    renamed(
        "vmf_insert_pfn_pud_exit",
        Fexit,
        Hook::VmfInsertPfnPud,
        "vmf_insert_pfn_pud_prot",
    ),
    program("vm_insert_page_exit", Fexit, Hook::VmInsertPage),
    program("vm_insert_pages_exit", Fexit, Hook::VmInsertPages),
    program(
        "vmf_insert_page_mkwrite_exit",
        Fexit,
        Hook::VmfInsertPageMkwrite,
    ),
    program("vmf_insert_folio_pmd_exit", Fexit, Hook::VmfInsertFolioPmd),
    program("apply_to_page_range_exit", Fexit, Hook::ApplyToPageRange),
    program("follow_pfnmap_start_exit", Fexit, Hook::FollowPfnmapStart),
    program("follow_phys_exit", Fexit, Hook::FollowPhys),
    // Void functions that only report: nothing to learn at exit.
    program("print_bad_pte_entry", Fentry, Hook::PrintBadPte),
    program("print_bad_page_map_entry", Fentry, Hook::PrintBadPageMap),
    // The inventory: nothing to wait for at exit either.
    program("perf_event_mmap_entry", Fentry, Hook::PerfEventMmap),
    program("copy_page_range_entry", Fentry, Hook::CopyPageRange),
    program("vm_area_free_entry", Fentry, Hook::VmAreaFree),
    beside(
        "__vm_area_free_entry",
        Fentry,
        Hook::VmAreaFree,
        "__vm_area_free",
    ),
];

/// The program that classifies and counts a hook's calls: its fexit, or
/// its only program.
pub fn counting_program(hook: Hook) -> &'static ProgramSpec {
    let mine = || PROGRAMS.iter().filter(move |p| p.hook == hook);
    mine()
        .find(|p| p.attach == Attach::Fexit)
        .or_else(|| mine().next())
        .unwrap_or(&PROGRAMS[0])
}

/// Where a hook exists, for telling "missing" apart from "broken".
pub const fn availability(hook: Hook) -> &'static str {
    match hook {
        Hook::FolioWalkStart => "added in 6.12",
        Hook::RemapPfnRangeComplete => "the mmap_prepare path, 7.x",
        Hook::VmNormalPage | Hook::RemapPfnRange => "every supported kernel",
        Hook::VmNormalPagePmd => "kernels with huge pfn mappings",
        Hook::VmNormalPagePud => "7.x (6.12 skips special puds without a lookup)",
        Hook::VmfInsertPfnProt | Hook::VmfInsertMixed => "4.17 and later",
        Hook::VmfInsertPfnPmd | Hook::VmfInsertPfnPud => {
            "kernels with huge pfn maps; 6.1 names it *_prot"
        }
        Hook::PrintBadPte => "until 6.17; print_bad_page_map replaced it",
        Hook::PrintBadPageMap => "6.18 and later",
        Hook::FollowPfnmapStart => "added in 6.12 (follow_phys before)",
        Hook::FollowPhys => "until 6.11 (follow_pfnmap_start after)",
        Hook::VmInsertPage | Hook::VmInsertPages => "every supported kernel",
        Hook::VmfInsertPageMkwrite | Hook::VmfInsertFolioPmd => "7.x (DAX, the vvar)",
        Hook::RemapPfnRangePrepare => "the mmap_prepare path, 7.x",
        Hook::PerfEventMmap | Hook::CopyPageRange | Hook::VmAreaFree | Hook::ApplyToPageRange => {
            "every supported kernel"
        }
    }
}

/// What pfnwatch would be blind to, given which hooks the kernel has
/// (`exists`) and which are attached. Page-table lookups need
/// vm_normal_page; PFNMAP creation needs every remap path the kernel has
/// (7.x converted drivers call only remap_pfn_range_complete).
pub fn coverage_gaps(
    exists: impl Fn(Hook) -> bool,
    attached: impl Fn(Hook) -> bool,
) -> Vec<String> {
    let mut gaps = Vec::new();
    if !attached(Hook::VmNormalPage) {
        gaps.push("vm_normal_page is not attached: no page-table lookups can be seen".to_owned());
    }
    if !Hook::of(Family::Remap).any(&exists) {
        gaps.push(
            "this kernel has no remap function pfnwatch knows: PFNMAP creation cannot be seen"
                .to_owned(),
        );
    }
    for hook in Hook::of(Family::Remap) {
        if exists(hook) && !attached(hook) {
            gaps.push(format!(
                "{hook} is not attached: PFNMAP creation through it cannot be seen"
            ));
        }
    }
    gaps
}

#[cfg(test)]
mod tests {
    use super::*;
    use object::{Object, ObjectSection, ObjectSymbol};
    use std::collections::BTreeMap;

    /// program name -> section name, read from the compiled object.
    fn object_programs() -> BTreeMap<String, String> {
        let elf = object::File::parse(pfnwatch_ebpf::OBJECT).unwrap();
        elf.symbols()
            .filter(|s| s.kind() == object::SymbolKind::Text && s.is_global())
            .filter_map(|s| {
                let section = elf.section_by_index(s.section_index()?).ok()?;
                Some((s.name().ok()?.to_owned(), section.name().ok()?.to_owned()))
            })
            .collect()
    }

    #[test]
    fn table_matches_the_object_exactly() {
        let mut in_object = object_programs();
        // The walk of every task's vmas, kernel::lookups' own.
        assert_eq!(
            in_object.remove(pfnwatch_common::abi::names::EXISTING_VMAS),
            Some("iter/task_vma".to_owned())
        );
        let in_table: BTreeMap<String, String> = PROGRAMS
            .iter()
            .map(|p| {
                (
                    p.name.to_owned(),
                    format!("{}/{}", p.attach.section_prefix(), p.target()),
                )
            })
            .collect();
        assert_eq!(in_table, in_object);
    }

    #[test]
    fn every_hook_has_one_counting_program() {
        for hook in Hook::ALL {
            let p = counting_program(hook);
            assert_eq!(p.hook, hook);
            let want = match hook.family() {
                Family::BadMap | Family::VmaCreated | Family::VmaGone => Attach::Fentry,
                _ => Attach::Fexit,
            };
            assert_eq!(p.attach, want, "{hook}");
        }
    }

    #[test]
    fn creation_needs_every_remap_path_the_kernel_has() {
        let k6 = |h: Hook| !matches!(h, Hook::RemapPfnRangeComplete | Hook::RemapPfnRangePrepare);
        let all = |_: Hook| true;
        // 6.x: remap_pfn_range alone covers creation.
        assert!(coverage_gaps(k6, k6).is_empty());
        // 7.x: the mmap_prepare remaps exist and must be attached too.
        let gaps = coverage_gaps(all, k6);
        assert_eq!(gaps.len(), 2);
        assert!(gaps[0].starts_with("remap_pfn_range_complete"), "{gaps:?}");
        assert!(gaps[1].starts_with("remap_pfn_range_prepare"), "{gaps:?}");
        assert!(coverage_gaps(all, all).is_empty());
        // Nothing attached: blind to lookups and to every creation path.
        assert_eq!(coverage_gaps(all, |_| false).len(), 4);
        assert_eq!(coverage_gaps(|_| false, |_| false).len(), 2);
    }
}
