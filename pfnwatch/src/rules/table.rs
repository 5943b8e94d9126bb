//! The rule table: every rule pfnwatch knows, as data. A rule's `matches`
//! are the cheap part (hooks and class bits), which the kernel programs
//! evaluate to decide which calls send a record; `needs` is the rest,
//! checked in user space on the record.

use crate::kernel::decode::Record;
use pfnwatch_common::class::{
    ANON, COW, ERROR, MIXEDMAP, NO_PAGE, PARTIAL, PFN_MATCH, PFNMAP, SPECIAL,
};
use pfnwatch_common::{Class, Hook, vm_flags};
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
}

impl Match {
    pub fn matches(&self, hook: Hook, class: Class) -> bool {
        self.hooks.contains(&hook) && class.has(self.all_of) && class.0 & self.none_of == 0
    }
}

/// The user-space part of a condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// The architecture keeps a special bit in its ptes.
    ArchPteSpecial,
    /// The entry is a pte, not a huge pmd or pud.
    PteLevel,
    /// The vma is VM_PFNMAP or VM_IO.
    PfnmapOrIo,
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
    /// A harsher severity when the class has all these bits.
    pub escalate: Option<(u16, Severity)>,
    /// One paragraph that cites the kernel rule, for whoever has to act.
    pub explanation: &'static str,
}

/// Hook lists of the table, by family (`Hook::of` is not const).
const LOOKUPS: &[Hook] = &[
    Hook::VmNormalPage,
    Hook::VmNormalPagePmd,
    Hook::VmNormalPagePud,
];
const REMAPS: &[Hook] = &[Hook::RemapPfnRange, Hook::RemapPfnRangeComplete];
const INSERTS: &[Hook] = &[
    Hook::VmfInsertPfnProt,
    Hook::VmfInsertMixed,
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
];
const BAD_MAP: &[Hook] = &[Hook::PrintBadPte, Hook::PrintBadPageMap];

/// Indexed by [`RuleId`].
pub const RULES: &[Rule; 9] = &[
    Rule {
        id: RuleId::R1,
        name: "cow_pfnmap_mapping",
        severity: Severity::Info,
        matches: &[Match {
            hooks: REMAPS,
            all_of: PFNMAP | COW,
            none_of: ERROR,
        }],
        needs: &[],
        escalate: None,
        explanation: "remap_pfn_range() succeeded on a COW mapping (MAP_PRIVATE and writable): \
            a VM_PFNMAP whose written pages become anonymous copies. The kernel supports it \
            by making remap_pfn_range() cover the whole vma and set vm_pgoff to the first \
            pfn, but new VM_PFNMAP COW users are to be avoided (linux-mm, \"mm/pagewalk: \
            Check pfnmap for folio_walk_start()\").",
    },
    Rule {
        id: RuleId::R2,
        name: "fault_insert_into_cow",
        severity: Severity::Warning,
        matches: &[Match {
            hooks: INSERTS,
            all_of: COW,
            none_of: 0,
        }],
        needs: &[],
        escalate: None,
        explanation: "A fault handler inserted a pfn into a COW mapping (vmf_insert_pfn*/\
            vmf_insert_mixed). Fault-time inserts do not set vm_pgoff to the first pfn, so on \
            architectures without pte_special a COW'ed page can no longer be told apart from \
            a device pfn. The thread asks to \"WARN if we stumble over a COW mapping\".",
    },
    Rule {
        id: RuleId::R3,
        name: "partial_cow_remap",
        severity: Severity::Warning,
        matches: &[Match {
            hooks: REMAPS,
            all_of: COW | PARTIAL,
            none_of: 0,
        }],
        needs: &[],
        escalate: None,
        explanation: "A driver called remap_pfn_range() on a COW mapping without covering the \
            whole vma. The kernel refuses it with -EINVAL, because only a whole-vma remap can \
            set vm_pgoff so that pfn == vm_pgoff + offset identifies device pages.",
    },
    Rule {
        id: RuleId::R4,
        name: "mixedmap_in_use",
        severity: Severity::Info,
        matches: &[
            Match {
                hooks: MAPPERS,
                all_of: MIXEDMAP,
                none_of: 0,
            },
            Match {
                hooks: &Hook::ALL,
                all_of: PFNMAP | MIXEDMAP,
                none_of: 0,
            },
        ],
        needs: &[],
        escalate: Some((PFNMAP | MIXEDMAP, Severity::Critical)),
        explanation: "A driver populates a VM_MIXEDMAP mapping, which mixes struct-page backed \
            and raw pfns; the mm maintainers \"would love to see that go\". A vma with both \
            VM_PFNMAP and VM_MIXEDMAP set is inconsistent: vm_normal_page() applies the \
            PFNMAP rules and misreads the mixed entries (critical). Lookups in MIXEDMAP vmas \
            are counted, not alerted: every 7.x process exit zaps the MIXEDMAP vDSO data.",
    },
    Rule {
        id: RuleId::R5,
        name: "folio_walk_on_pfnmap",
        severity: Severity::Critical,
        matches: &[Match {
            hooks: &[Hook::FolioWalkStart],
            all_of: 0,
            none_of: NO_PAGE | ANON,
        }],
        needs: &[Need::PfnmapOrIo],
        escalate: None,
        explanation: "folio_walk_start() returned a folio for a device pfn in a VM_PFNMAP/VM_IO \
            vma. Pfnmap ptes must be treated as special (the patch series this thread belongs \
            to); a folio there is not one the kernel owns. A COW copy is an anonymous folio \
            and is fine.",
    },
    Rule {
        id: RuleId::R6,
        name: "normal_page_in_shared_pfnmap",
        severity: Severity::Critical,
        matches: &[Match {
            hooks: LOOKUPS,
            all_of: PFNMAP,
            none_of: COW | NO_PAGE,
        }],
        needs: &[],
        escalate: None,
        explanation: "vm_normal_page() returned a struct page in a VM_PFNMAP vma that is not a \
            COW mapping. \"In a !COW mapping, everything is special\": the kernel will \
            refcount and rmap a page the driver never gave it.",
    },
    Rule {
        id: RuleId::R7,
        name: "pfnmap_pte_not_special",
        severity: Severity::Critical,
        matches: &[
            Match {
                hooks: &[Hook::VmNormalPage],
                all_of: PFNMAP,
                none_of: SPECIAL | ANON,
            },
            Match {
                hooks: &[Hook::FolioWalkStart],
                all_of: PFNMAP,
                none_of: SPECIAL | ANON | NO_PAGE,
            },
        ],
        needs: &[Need::ArchPteSpecial, Need::PteLevel],
        escalate: None,
        explanation: "A pte in a VM_PFNMAP vma lacks the special bit on an architecture that has \
            one. remap_pfn_range() and vmf_insert_pfn() always set it; a driver put a normal \
            pte there by hand. (In a COW mapping the copied pages are anonymous and rightly \
            not special: they do not count.)",
    },
    Rule {
        id: RuleId::R8,
        name: "pgoff_rule_broken",
        severity: Severity::Warning,
        matches: &[Match {
            hooks: LOOKUPS,
            all_of: PFNMAP | COW | SPECIAL,
            none_of: PFN_MATCH,
        }],
        needs: &[],
        escalate: None,
        explanation: "A special pte in a COW VM_PFNMAP vma whose pfn != vm_pgoff + offset. \
            Harmless where pte_special exists, but architectures without it tell device pfns \
            from COW copies only by that rule, and would take this device pfn for a normal \
            page (the thread's vfio-pci concern: the driver does not keep vm_pgoff at the \
            base pfn).",
    },
    Rule {
        id: RuleId::R9,
        name: "kernel_bad_page_map",
        severity: Severity::Critical,
        matches: &[Match {
            hooks: BAD_MAP,
            all_of: 0,
            none_of: 0,
        }],
        needs: &[],
        escalate: None,
        explanation: "The kernel itself reported a bad page map (print_bad_pte until 6.17, \
            print_bad_page_map from 6.18): a page-table entry pointing at a pfn with no valid \
            struct page, or a page whose counts went wrong. The kernel taints itself \
            (TAINT_BAD_PAGE); the call path names the driver.",
    },
];

impl Need {
    /// Whether the record meets this condition, given what user space knows.
    pub fn holds(self, r: &Record, arch_pte_special: bool) -> bool {
        match self {
            Need::ArchPteSpecial => arch_pte_special,
            Need::PteLevel => r.level == pfnwatch_common::Level::Pte,
            Need::PfnmapOrIo => r.vm_flags & (vm_flags::VM_PFNMAP | vm_flags::VM_IO) != 0,
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
        }
    }

    #[test]
    fn the_family_lists_hold_their_families() {
        let of = |f: Family| Hook::of(f).collect::<Vec<_>>();
        assert_eq!(LOOKUPS, of(Family::Lookup));
        assert_eq!(REMAPS, of(Family::Remap));
        assert_eq!(INSERTS, of(Family::Insert));
        assert_eq!(BAD_MAP, of(Family::BadMap));
        let mappers: Vec<Hook> = Hook::ALL
            .into_iter()
            .filter(|h| h.family().maps_pfns())
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
