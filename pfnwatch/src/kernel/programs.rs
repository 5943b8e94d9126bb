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
}

impl ProgramSpec {
    /// The kernel function the program attaches to.
    pub const fn target(&self) -> &'static str {
        self.hook.function()
    }
}

const fn program(name: &'static str, attach: Attach, hook: Hook) -> ProgramSpec {
    ProgramSpec { name, attach, hook }
}

use Attach::{Fentry, Fexit};

pub const PROGRAMS: [ProgramSpec; 13] = [
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
    program("vmf_insert_pfn_prot_exit", Fexit, Hook::VmfInsertPfnProt),
    program("vmf_insert_mixed_exit", Fexit, Hook::VmfInsertMixed),
    program("vmf_insert_pfn_pmd_exit", Fexit, Hook::VmfInsertPfnPmd),
    program("vmf_insert_pfn_pud_exit", Fexit, Hook::VmfInsertPfnPud),
    // Void functions that only report: nothing to learn at exit.
    program("print_bad_pte_entry", Fentry, Hook::PrintBadPte),
    program("print_bad_page_map_entry", Fentry, Hook::PrintBadPageMap),
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
            "a function in 6.12 and 7.x; 6.1 inlines it into the *_prot variant"
        }
        Hook::PrintBadPte => "until 6.17; print_bad_page_map replaced it",
        Hook::PrintBadPageMap => "6.18 and later",
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
        let in_object = object_programs();
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
            let want = if hook.family() == Family::BadMap {
                Attach::Fentry
            } else {
                Attach::Fexit
            };
            assert_eq!(p.attach, want, "{hook}");
        }
    }

    #[test]
    fn creation_needs_every_remap_path_the_kernel_has() {
        let k6 = |h: Hook| h != Hook::RemapPfnRangeComplete;
        let all = |_: Hook| true;
        // 6.x: remap_pfn_range alone covers creation.
        assert!(coverage_gaps(k6, k6).is_empty());
        // 7.x: remap_pfn_range_complete exists and must be attached too.
        let gaps = coverage_gaps(all, k6);
        assert_eq!(gaps.len(), 1);
        assert!(gaps[0].starts_with("remap_pfn_range_complete"), "{gaps:?}");
        assert!(coverage_gaps(all, all).is_empty());
        // Nothing attached: blind to lookups and to both creation paths.
        assert_eq!(coverage_gaps(all, |_| false).len(), 3);
        assert_eq!(coverage_gaps(|_| false, |_| false).len(), 2);
    }
}
