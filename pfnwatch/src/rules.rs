//! The kernel's rules for pfn mappings (see kernel-rules.md and the linux-mm
//! thread they come from), as one table of data. A rule names the hooks and
//! the class bits that make a call suspicious; everything else about rules
//! (which records the kernel sends, what trace marks) derives from here.

use pfnwatch_common::{Class, Hook, abi, class};
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Notice,
    Warning,
    Critical,
}

#[derive(Debug)]
pub struct Rule {
    pub id: &'static str,
    pub severity: Severity,
    pub hooks: &'static [Hook],
    /// Class bits that must all be set.
    pub all_of: u16,
    /// Class bits that must all be clear.
    pub none_of: u16,
    pub summary: &'static str,
    /// Which kernel rule this is, for the operator who has to act on it.
    pub why: &'static str,
}

impl Rule {
    pub fn matches(&self, hook: Hook, class: Class) -> bool {
        self.hooks.contains(&hook)
            && class.0 & self.all_of == self.all_of
            && class.0 & self.none_of == 0
    }
}

const LOOKUPS: &[Hook] = &[Hook::VmNormalPage, Hook::VmNormalPagePmd];
const REMAPS: &[Hook] = &[Hook::RemapPfnRange, Hook::RemapPfnRangeComplete];
const INSERTS: &[Hook] = &[Hook::VmfInsertPfnProt, Hook::VmfInsertMixed];

pub const RULES: &[Rule] = &[
    Rule {
        id: "pfnmap-page-normal",
        severity: Severity::Critical,
        hooks: LOOKUPS,
        all_of: 0,
        none_of: class::MIXEDMAP | class::COW | class::NO_PAGE,
        summary: "vm_normal_page returned a struct page in a non-COW VM_PFNMAP mapping",
        why: "rule 1: in a VM_PFNMAP vma that is not a COW mapping every pte is special",
    },
    Rule {
        id: "pfnmap-cow-device-page-normal",
        severity: Severity::Warning,
        hooks: LOOKUPS,
        all_of: class::COW | class::PFN_MATCH,
        none_of: class::MIXEDMAP | class::NO_PAGE | class::ANON,
        summary: "a device pfn (pfn == vm_pgoff + offset) in a COW VM_PFNMAP was treated as a normal page",
        why: "rule 2: only COW'ed copies inside a VM_PFNMAP COW mapping are normal pages",
    },
    Rule {
        id: "folio-from-pfnmap",
        severity: Severity::Warning,
        hooks: &[Hook::FolioWalkStart],
        all_of: 0,
        none_of: class::MIXEDMAP | class::NO_PAGE | class::ANON,
        summary: "folio_walk_start returned a non-anonymous folio from a VM_PFNMAP vma",
        why: "rule 6: folio_walk_start must treat pfnmap ptes as special",
    },
    Rule {
        id: "remap-partial-cow",
        severity: Severity::Warning,
        hooks: REMAPS,
        all_of: class::COW | class::PARTIAL,
        none_of: 0,
        summary: "a driver remapped only part of a COW mapping",
        why: "rule 3: remap_pfn_range on a COW mapping must cover the whole vma (else -EINVAL)",
    },
    Rule {
        id: "pfn-insert-into-cow",
        severity: Severity::Critical,
        hooks: INSERTS,
        all_of: class::COW,
        none_of: 0,
        summary: "a fault handler inserted a pfn into a COW mapping",
        why: "rule 4: fault-time inserts do not set vm_pgoff, so COW pages cannot be told \
              from device pfns on architectures without pte_special",
    },
    Rule {
        id: "new-pfnmap-cow",
        severity: Severity::Notice,
        hooks: REMAPS,
        all_of: class::COW,
        none_of: class::MIXEDMAP | class::ERROR,
        summary: "a new VM_PFNMAP COW mapping was created",
        why: "rule 5: new VM_PFNMAP COW users should be avoided",
    },
    Rule {
        id: "remap-failed",
        severity: Severity::Notice,
        hooks: REMAPS,
        all_of: class::ERROR,
        none_of: 0,
        summary: "a pfn remap failed",
        why: "a driver's mmap failed while mapping pfns; see the errno",
    },
    Rule {
        id: "pfnmap-created",
        severity: Severity::Info,
        hooks: REMAPS,
        all_of: 0,
        none_of: 0,
        summary: "a pfn mapping was created",
        why: "inventory: which drivers and processes map raw pfns",
    },
];

/// The rules a call matches, most severe first.
pub fn matching(hook: Hook, class: Class) -> Vec<&'static Rule> {
    let mut hits: Vec<_> = RULES.iter().filter(|r| r.matches(hook, class)).collect();
    hits.sort_by_key(|r| std::cmp::Reverse(r.severity));
    hits
}

/// Which (hook, class) pairs the kernel sends detail records for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Selection {
    /// Only calls some rule matches.
    Rules,
    /// Every classified call (tests, debugging; can be a lot on busy hosts).
    All,
}

pub type RecordMask = [u64; Hook::COUNT * abi::CLASS_WORDS];

pub fn record_mask(selection: Selection) -> RecordMask {
    let mut mask = [0u64; Hook::COUNT * abi::CLASS_WORDS];
    for hook in Hook::ALL {
        for raw in 0..class::SLOTS as u16 {
            if selection == Selection::All || !matching(hook, Class(raw)).is_empty() {
                let word = usize::from(hook.id()) * abi::CLASS_WORDS + usize::from(raw >> 6);
                mask[word] |= 1 << (raw & 63);
            }
        }
    }
    mask
}

#[cfg(test)]
mod tests {
    use super::*;
    use class::*;

    fn ids(hook: Hook, bits: u16) -> Vec<&'static str> {
        matching(hook, Class(bits)).iter().map(|r| r.id).collect()
    }

    #[test]
    fn ordinary_pfnmap_traffic_matches_nothing() {
        // Special device ptes in shared and COW mappings, and COW copies.
        assert!(ids(Hook::VmNormalPage, SPECIAL | PFN_MATCH | NO_PAGE).is_empty());
        assert!(ids(Hook::VmNormalPage, COW | SPECIAL | PFN_MATCH | NO_PAGE).is_empty());
        assert!(ids(Hook::VmNormalPage, COW | ANON).is_empty());
        assert!(ids(Hook::FolioWalkStart, COW | ANON).is_empty());
        assert!(ids(Hook::FolioWalkStart, NO_PAGE).is_empty());
        // The vDSO's fault-time insert into a shared PFNMAP.
        assert!(ids(Hook::VmfInsertPfnProt, PFN_MATCH).is_empty());
        // Mixed maps with real pages are how they are meant to work.
        assert!(ids(Hook::VmNormalPage, MIXEDMAP).is_empty());
    }

    #[test]
    fn each_kernel_rule_fires_on_its_case() {
        assert_eq!(ids(Hook::VmNormalPage, PFN_MATCH), ["pfnmap-page-normal"]);
        assert_eq!(
            ids(Hook::VmNormalPagePmd, COW | PFN_MATCH),
            ["pfnmap-cow-device-page-normal"]
        );
        assert_eq!(ids(Hook::FolioWalkStart, PFN_MATCH), ["folio-from-pfnmap"]);
        assert_eq!(
            ids(Hook::VmfInsertMixed, MIXEDMAP | COW),
            ["pfn-insert-into-cow"]
        );
        assert_eq!(
            ids(Hook::RemapPfnRange, COW | PARTIAL | ERROR),
            ["remap-partial-cow", "remap-failed", "pfnmap-created"]
        );
        assert_eq!(
            ids(Hook::RemapPfnRangeComplete, COW | PFN_MATCH),
            ["new-pfnmap-cow", "pfnmap-created"]
        );
        assert_eq!(ids(Hook::RemapPfnRange, PFN_MATCH), ["pfnmap-created"]);
    }

    #[test]
    fn record_mask_follows_the_rules() {
        let all = record_mask(Selection::All);
        assert!(all.iter().all(|w| *w == u64::MAX));
        let rules = record_mask(Selection::Rules);
        let bit = |hook: Hook, class: u16| {
            let word = usize::from(hook.id()) * abi::CLASS_WORDS + usize::from(class >> 6);
            rules[word] & (1 << (class & 63)) != 0
        };
        assert!(bit(Hook::VmNormalPage, PFN_MATCH));
        assert!(!bit(Hook::VmNormalPage, SPECIAL | PFN_MATCH | NO_PAGE));
        assert!(bit(Hook::RemapPfnRange, 0));
        assert!(bit(Hook::RemapPfnRangeComplete, ERROR | PARTIAL | COW));
        assert!(!bit(Hook::VmfInsertPfnProt, 0));
        assert!(bit(Hook::VmfInsertPfnProt, COW));
    }
}
