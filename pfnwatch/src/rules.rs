//! The kernel's rules for pfn mappings (kernel-rules.md and the linux-mm
//! thread it comes from), as one table of data.
//!
//! A rule's `matches` are the cheap part: hooks and class bits, which the
//! kernel programs evaluate (they decide which calls send a record). `needs`
//! is the rest, checked in user space on the record. Everything else about
//! rules (the record mask, what trace marks, alerts) derives from this table.

use crate::record::Record;
use pfnwatch_common::class::{
    ANON, COW, ERROR, MIXEDMAP, NO_PAGE, PARTIAL, PFN_MATCH, PFNMAP, SPECIAL,
};
use pfnwatch_common::{Class, Hook, abi, class, vm_flags};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

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

    pub fn parse(text: &str) -> Option<Severity> {
        [Severity::Info, Severity::Warning, Severity::Critical]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
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
    pub id: &'static str,
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

pub const RULES: &[Rule] = &[
    Rule {
        id: "R1",
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
        id: "R2",
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
        id: "R3",
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
        id: "R4",
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
        id: "R5",
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
        id: "R6",
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
        id: "R7",
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
        id: "R8",
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
        id: "R9",
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

pub fn find(id_or_name: &str) -> Option<&'static Rule> {
    RULES
        .iter()
        .find(|r| r.id.eq_ignore_ascii_case(id_or_name) || r.name == id_or_name)
}

/// What user space knows that the kernel programs do not.
#[derive(Clone, Copy, Debug)]
pub struct Context {
    pub arch_pte_special: bool,
}

/// Operator overrides of the table: rules turned off, severities changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleConfig {
    pub disabled: BTreeSet<&'static str>,
    pub severity: BTreeMap<&'static str, Severity>,
}

impl RuleConfig {
    /// `--disable-rule R4` (id or name).
    pub fn disable(&mut self, id_or_name: &str) -> Result<(), String> {
        let rule = find(id_or_name).ok_or_else(|| unknown(id_or_name))?;
        self.disabled.insert(rule.id);
        Ok(())
    }

    /// `--rule-severity R1=warning`.
    pub fn set_severity(&mut self, spec: &str) -> Result<(), String> {
        let (id, sev) = spec
            .split_once('=')
            .ok_or_else(|| format!("{spec:?}: expected RULE=SEVERITY, e.g. R1=warning"))?;
        let rule = find(id.trim()).ok_or_else(|| unknown(id.trim()))?;
        let sev = Severity::parse(sev.trim()).ok_or_else(|| {
            format!("{spec:?}: unknown severity {sev:?} (info, warning or critical)")
        })?;
        self.severity.insert(rule.id, sev);
        Ok(())
    }
}

fn unknown(id: &str) -> String {
    let known: Vec<String> = RULES
        .iter()
        .map(|r| format!("{} {}", r.id, r.name))
        .collect();
    format!("unknown rule {id:?} (known: {})", known.join(", "))
}

/// A rule a record matched, with the severity it has under the config.
#[derive(Clone, Copy, Debug)]
pub struct Hit {
    pub rule: &'static Rule,
    pub severity: Severity,
}

/// The rule table as configured.
#[derive(Clone, Debug)]
pub struct RuleSet {
    pub config: RuleConfig,
    pub context: Context,
}

impl RuleSet {
    pub fn new(config: RuleConfig, context: Context) -> RuleSet {
        RuleSet { config, context }
    }

    fn enabled(&self) -> impl Iterator<Item = &'static Rule> + '_ {
        RULES
            .iter()
            .filter(|r| !self.config.disabled.contains(r.id))
    }

    /// The rules a record breaks, most severe first.
    pub fn evaluate(&self, record: &Record) -> Vec<Hit> {
        let mut hits: Vec<Hit> = self
            .enabled()
            .filter(|r| {
                r.matches
                    .iter()
                    .any(|m| m.matches(record.hook, record.class))
            })
            .filter(|r| r.needs.iter().all(|n| self.holds(*n, record)))
            .map(|rule| {
                let base = self
                    .config
                    .severity
                    .get(rule.id)
                    .copied()
                    .unwrap_or(rule.severity);
                let severity = match rule.escalate {
                    Some((bits, sev)) if record.class.has(bits) => sev.max(base),
                    _ => base,
                };
                Hit { rule, severity }
            })
            .collect();
        hits.sort_by_key(|h| std::cmp::Reverse(h.severity));
        hits
    }

    fn holds(&self, need: Need, r: &Record) -> bool {
        match need {
            Need::ArchPteSpecial => self.context.arch_pte_special,
            Need::PteLevel => r.level == 0,
            Need::PfnmapOrIo => r.vm_flags & (vm_flags::VM_PFNMAP | vm_flags::VM_IO) != 0,
        }
    }

    /// Whether the in-kernel part of some enabled rule matches.
    pub fn kernel_part_matches(&self, hook: Hook, class: Class) -> bool {
        self.enabled()
            .any(|r| r.matches.iter().any(|m| m.matches(hook, class)))
    }
}

/// Which (hook, class) pairs the kernel sends detail records for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Selection {
    /// Calls some enabled rule may match, plus every pfn mapping created
    /// (the inventory of who maps raw pfns; rare).
    Rules,
    /// Every classified call (tests, debugging; can be a lot on busy hosts).
    All,
}

pub type RecordMask = [u64; Hook::COUNT * abi::CLASS_WORDS];

pub fn record_mask(selection: Selection, rules: &RuleSet) -> RecordMask {
    let mut mask = [0u64; Hook::COUNT * abi::CLASS_WORDS];
    for hook in Hook::ALL {
        for raw in 0..class::SLOTS as u16 {
            let wanted = match selection {
                Selection::All => true,
                Selection::Rules => {
                    REMAPS.contains(&hook) || rules.kernel_part_matches(hook, Class(raw))
                }
            };
            if wanted {
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

    fn record(hook: Hook, class: u16) -> Record {
        Record {
            ts_ns: 1,
            hook,
            class: Class(class),
            pid: 1,
            tgid: 1,
            comm: "t".into(),
            cgroup_id: 1,
            vm_flags: if class & PFNMAP != 0 {
                vm_flags::VM_PFNMAP | vm_flags::VM_IO
            } else if class & MIXEDMAP != 0 {
                vm_flags::VM_MIXEDMAP
            } else {
                0
            },
            vm_start: 0x1000,
            vm_end: 0x5000,
            vm_pgoff: 0xf0,
            pgoff_before: None,
            addr: 0x1000,
            pfn: Some(0xf0),
            size: 0x1000,
            entry: 0,
            ret: 0,
            level: 0,
            file: None,
            stack: Vec::new(),
        }
    }

    fn set() -> RuleSet {
        RuleSet::new(
            RuleConfig::default(),
            Context {
                arch_pte_special: true,
            },
        )
    }

    fn ids(rules: &RuleSet, r: &Record) -> Vec<String> {
        rules
            .evaluate(r)
            .iter()
            .map(|h| format!("{}:{}", h.rule.id, h.severity))
            .collect()
    }

    fn hits(hook: Hook, class: u16) -> Vec<String> {
        ids(&set(), &record(hook, class))
    }

    const DEV: u16 = PFNMAP | SPECIAL | PFN_MATCH | NO_PAGE;

    #[test]
    fn ordinary_pfnmap_traffic_breaks_no_rule() {
        // Device ptes in shared and COW mappings, COW copies, vDSO data.
        assert!(hits(Hook::VmNormalPage, DEV).is_empty());
        assert!(hits(Hook::VmNormalPage, DEV | COW).is_empty());
        assert!(hits(Hook::VmNormalPage, PFNMAP | COW | ANON).is_empty());
        assert!(hits(Hook::VmNormalPage, PFNMAP | SPECIAL | NO_PAGE).is_empty());
        assert!(hits(Hook::VmNormalPage, MIXEDMAP).is_empty());
        assert!(hits(Hook::FolioWalkStart, PFNMAP | COW | ANON).is_empty());
        assert!(hits(Hook::FolioWalkStart, PFNMAP | COW | NO_PAGE).is_empty());
        assert!(hits(Hook::VmfInsertPfnProt, PFNMAP).is_empty());
        assert!(hits(Hook::RemapPfnRange, PFNMAP | PFN_MATCH).is_empty());
        // A huge PFNMAP as vfio-pci maps BARs: pmd inserts, special pmds.
        assert!(hits(Hook::VmfInsertPfnPmd, PFNMAP | PFN_MATCH).is_empty());
        assert!(hits(Hook::VmfInsertPfnPud, PFNMAP | PFN_MATCH).is_empty());
        assert!(hits(Hook::VmNormalPagePmd, DEV).is_empty());
        assert!(hits(Hook::VmNormalPagePud, DEV).is_empty());
        assert!(hits(Hook::FolioWalkStart, PFNMAP | NO_PAGE).is_empty());
    }

    #[test]
    fn huge_inserts_are_inserts() {
        // vmf_insert_pfn_pmd BUG()s on a COW VM_PFNMAP, not on a COW MIXEDMAP.
        assert_eq!(
            hits(Hook::VmfInsertPfnPmd, MIXEDMAP | COW),
            ["R2:warning", "R4:info"]
        );
        assert_eq!(hits(Hook::VmfInsertPfnPud, MIXEDMAP), ["R4:info"]);
    }

    #[test]
    fn each_rule_fires_on_its_case() {
        let rm = Hook::RemapPfnRange;
        assert_eq!(hits(rm, PFNMAP | COW | PFN_MATCH), ["R1:info"]);
        assert_eq!(
            hits(Hook::RemapPfnRangeComplete, PFNMAP | COW | PFN_MATCH),
            ["R1:info"]
        );
        assert_eq!(
            hits(Hook::VmfInsertMixed, MIXEDMAP | COW),
            ["R2:warning", "R4:info"]
        );
        assert_eq!(hits(Hook::VmfInsertPfnProt, PFNMAP | COW), ["R2:warning"]);
        // A failed partial COW remap: flags were never set, and no R1.
        assert_eq!(hits(rm, COW | PARTIAL | ERROR), ["R3:warning"]);
        assert_eq!(
            hits(Hook::VmNormalPage, PFNMAP | MIXEDMAP | SPECIAL | NO_PAGE),
            ["R4:critical"]
        );
        assert_eq!(
            hits(Hook::FolioWalkStart, PFNMAP | SPECIAL | PFN_MATCH),
            ["R5:critical"]
        );
        assert_eq!(
            hits(Hook::VmNormalPage, PFNMAP | PFN_MATCH),
            ["R6:critical", "R7:critical"]
        );
        assert_eq!(
            hits(Hook::VmNormalPagePmd, PFNMAP | SPECIAL),
            ["R6:critical"]
        );
        assert_eq!(
            hits(Hook::VmNormalPage, PFNMAP | COW | SPECIAL | NO_PAGE),
            ["R8:warning"]
        );
        assert_eq!(hits(Hook::PrintBadPte, PFNMAP | NO_PAGE), ["R9:critical"]);
        assert_eq!(hits(Hook::PrintBadPageMap, MIXEDMAP), ["R9:critical"]);
    }

    #[test]
    fn borderline_cases() {
        // COW copy vs device pfn in a COW mapping.
        assert!(hits(Hook::VmNormalPage, PFNMAP | COW | ANON).is_empty());
        assert_eq!(
            hits(Hook::VmNormalPage, PFNMAP | COW | PFN_MATCH),
            ["R7:critical"],
            "a device pfn returned as a non-special, non-anonymous page"
        );
        // Whole vs partial COW remap.
        assert_eq!(hits(Hook::RemapPfnRange, PFNMAP | COW), ["R1:info"]);
        assert_eq!(
            hits(Hook::RemapPfnRange, COW | PARTIAL | ERROR),
            ["R3:warning"]
        );
        // A partial remap of a shared mapping is how drivers map in pieces.
        assert!(hits(Hook::RemapPfnRange, PFNMAP | PARTIAL).is_empty());
        // folio_walk_start on a MIXEDMAP vma without VM_IO hands out real folios.
        assert!(hits(Hook::FolioWalkStart, MIXEDMAP).is_empty());
        let mut io = record(Hook::FolioWalkStart, MIXEDMAP);
        io.vm_flags |= vm_flags::VM_IO;
        assert_eq!(ids(&set(), &io), ["R5:critical"]);
        // R7 needs pte_special and a pte, not a huge pmd.
        let mut pmd = record(Hook::FolioWalkStart, PFNMAP);
        pmd.level = 1;
        assert_eq!(ids(&set(), &pmd), ["R5:critical"]);
        let no_special = RuleSet::new(
            RuleConfig::default(),
            Context {
                arch_pte_special: false,
            },
        );
        assert_eq!(
            ids(&no_special, &record(Hook::VmNormalPage, PFNMAP | PFN_MATCH)),
            ["R6:critical"]
        );
    }

    #[test]
    fn config_disables_and_resets_severity_by_id_or_name() {
        let mut config = RuleConfig::default();
        config.disable("mixedmap_in_use").unwrap();
        config.set_severity("r1 = critical").unwrap();
        let rules = RuleSet::new(config, set().context);
        assert_eq!(
            ids(&rules, &record(Hook::VmfInsertMixed, MIXEDMAP | COW)),
            ["R2:warning"]
        );
        assert_eq!(
            ids(&rules, &record(Hook::RemapPfnRange, PFNMAP | COW)),
            ["R1:critical"]
        );
        let mut config = RuleConfig::default();
        assert!(
            config
                .disable("R10")
                .unwrap_err()
                .contains("unknown rule \"R10\"")
        );
        assert!(
            config
                .set_severity("R1")
                .unwrap_err()
                .contains("RULE=SEVERITY")
        );
        assert!(
            config
                .set_severity("R1=loud")
                .unwrap_err()
                .contains("\"loud\"")
        );
    }

    #[test]
    fn record_mask_follows_the_enabled_rules() {
        let bit = |mask: &RecordMask, hook: Hook, class: u16| {
            let word = usize::from(hook.id()) * abi::CLASS_WORDS + usize::from(class >> 6);
            mask[word] & (1 << (class & 63)) != 0
        };
        assert!(
            record_mask(Selection::All, &set())
                .iter()
                .all(|w| *w == u64::MAX)
        );
        let mask = record_mask(Selection::Rules, &set());
        assert!(bit(&mask, Hook::VmNormalPage, PFNMAP | PFN_MATCH));
        assert!(!bit(&mask, Hook::VmNormalPage, DEV));
        assert!(!bit(&mask, Hook::VmNormalPage, MIXEDMAP));
        assert!(bit(&mask, Hook::RemapPfnRange, PFNMAP), "inventory");
        assert!(bit(&mask, Hook::PrintBadPageMap, 0));
        assert!(!bit(&mask, Hook::VmfInsertPfnProt, PFNMAP));
        let mut config = RuleConfig::default();
        config.disable("R9").unwrap();
        let mask = record_mask(Selection::Rules, &RuleSet::new(config, set().context));
        assert!(!bit(&mask, Hook::PrintBadPageMap, 0));
    }

    #[test]
    fn ids_and_names_are_unique() {
        for (i, a) in RULES.iter().enumerate() {
            assert_eq!(a.id, format!("R{}", i + 1));
            assert!(RULES[i + 1..].iter().all(|b| b.name != a.name));
            assert!(!a.matches.is_empty() && a.explanation.len() > 80);
        }
    }
}
