//! The kernel programs in the object, as data: which hook each serves, how
//! it attaches, and what a missing target means on a given kernel.

use pfnwatch_common::Hook;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

const fn exit(name: &'static str, hook: Hook) -> ProgramSpec {
    ProgramSpec {
        name,
        attach: Attach::Fexit,
        hook,
    }
}

pub const PROGRAMS: [ProgramSpec; 8] = [
    exit("vm_normal_page_exit", Hook::VmNormalPage),
    exit("vm_normal_page_pmd_exit", Hook::VmNormalPagePmd),
    exit("folio_walk_start_exit", Hook::FolioWalkStart),
    ProgramSpec {
        name: "remap_pfn_range_entry",
        attach: Attach::Fentry,
        hook: Hook::RemapPfnRange,
    },
    exit("remap_pfn_range_exit", Hook::RemapPfnRange),
    exit("remap_pfn_range_complete_exit", Hook::RemapPfnRangeComplete),
    exit("vmf_insert_pfn_prot_exit", Hook::VmfInsertPfnProt),
    exit("vmf_insert_mixed_exit", Hook::VmfInsertMixed),
];

/// Where a hook exists, for telling "missing" apart from "broken".
pub const fn availability(hook: Hook) -> &'static str {
    match hook {
        Hook::FolioWalkStart => "added in 6.12",
        Hook::RemapPfnRangeComplete => "the mmap_prepare path, 7.x",
        Hook::VmNormalPage | Hook::RemapPfnRange => "every supported kernel",
        Hook::VmNormalPagePmd => "kernels with huge pfn mappings",
        Hook::VmfInsertPfnProt | Hook::VmfInsertMixed => "4.17 and later",
    }
}

/// Hooks whose absence leaves pfnwatch blind to something it must see on
/// every kernel. PFNMAP creation counts as covered when either remap path
/// exists, so the two remap hooks are judged together in [`coverage_gaps`].
pub fn coverage_gaps(present: impl Fn(Hook) -> bool) -> Vec<&'static str> {
    let mut gaps = Vec::new();
    if !present(Hook::VmNormalPage) {
        gaps.push("vm_normal_page is missing: no page-table lookups can be seen");
    }
    if !present(Hook::RemapPfnRange) && !present(Hook::RemapPfnRangeComplete) {
        gaps.push(
            "neither remap_pfn_range nor remap_pfn_range_complete exists: \
             PFNMAP creation cannot be seen",
        );
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
    fn every_hook_has_an_exit_program() {
        for hook in Hook::ALL {
            assert!(
                PROGRAMS
                    .iter()
                    .any(|p| p.hook == hook && p.attach == Attach::Fexit),
                "{hook}"
            );
        }
    }

    #[test]
    fn creation_is_covered_by_either_remap_path() {
        let only = |h: Hook| move |x: Hook| x == Hook::VmNormalPage || x == h;
        assert!(coverage_gaps(only(Hook::RemapPfnRange)).is_empty());
        assert!(coverage_gaps(only(Hook::RemapPfnRangeComplete)).is_empty());
        assert_eq!(coverage_gaps(only(Hook::VmfInsertMixed)).len(), 1);
        assert_eq!(coverage_gaps(|_| false).len(), 2);
    }
}
