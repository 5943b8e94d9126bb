//! The kernel's rules for pfn mappings (kernel-rules.md and the linux-mm
//! thread it comes from): the table as data (`table.rs`), the operator's
//! changes to it (`config.rs`), and which calls the kernel sends records
//! for (`selection.rs`). Evaluating a record happens once, here, for every
//! command.

mod config;
mod selection;
mod table;

pub use config::{RuleConfig, parse_rule_severity};
pub use selection::{Selection, record_mask, urgent_mask};
pub use table::{Match, Need, RULES, Rule, RuleId, Severity};

use crate::kernel::decode::Record;
use pfnwatch_common::{Class, Hook};

/// What user space knows that the kernel programs do not.
#[derive(Clone, Copy, Debug)]
pub struct Context {
    pub arch_pte_special: bool,
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
            .filter(|r| !self.config.disabled.contains(&r.id))
    }

    /// The rules a record breaks, most severe first.
    pub fn evaluate(&self, record: &Record) -> Vec<Hit> {
        let special = self.context.arch_pte_special;
        let mut hits: Vec<Hit> = self
            .enabled()
            .filter_map(|rule| {
                // The most severe of the matches the call meets; an
                // operator's severity for the rule wins over all of them.
                // Hook and class first: bit tests, which rule most out.
                let by_match = rule
                    .matches
                    .iter()
                    .filter(|m| m.matches(record.hook, record.class))
                    .map(|m| rule.severity_of(m, special))
                    .max()?;
                if !rule.needs.iter().all(|n| n.holds(record, special)) {
                    return None;
                }
                let severity = self
                    .config
                    .severity
                    .get(&rule.id)
                    .copied()
                    .unwrap_or(by_match);
                Some(Hit { rule, severity })
            })
            .collect();
        hits.sort_by_key(|h| std::cmp::Reverse(h.severity));
        hits
    }

    /// Whether the in-kernel part of some enabled rule matches.
    pub fn kernel_part_matches(&self, hook: Hook, class: Class) -> bool {
        self.enabled()
            .any(|r| r.matches.iter().any(|m| m.matches(hook, class)))
    }

    /// Whether a call of (hook, class) may be a hit of `severity` or worse
    /// (the user-space conditions taken as met, an operator's severity
    /// winning).
    pub fn may_be_at_least(&self, hook: Hook, class: Class, severity: Severity) -> bool {
        self.enabled().any(|rule| {
            rule.matches
                .iter()
                .filter(|m| m.matches(hook, class))
                .any(|m| match self.config.severity.get(&rule.id) {
                    Some(s) => *s >= severity,
                    None => rule.severity_of(m, self.context.arch_pte_special) >= severity,
                })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pfnwatch_common::class::{
        ANON, COW, ERROR, MIXEDMAP, NO_PAGE, PARTIAL, PFN_MATCH, PFNMAP, SPECIAL,
    };
    use pfnwatch_common::vm_flags;

    fn record(hook: Hook, class: u16) -> Record {
        Record {
            ts_ns: 1,
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
            addr: 0x1000,
            pfn: Some(0xf0),
            size: 0x1000,
            ..Record::new(hook, Class(class))
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

    /// What correct drivers do on real hosts: none of it may raise a
    /// warning or critical (info only where a rule says so).
    #[test]
    fn correct_drivers_break_no_rule() {
        let cases: &[(&str, Hook, u16)] = &[
            ("device pte, shared PFNMAP", Hook::VmNormalPage, DEV),
            ("device pte, COW PFNMAP", Hook::VmNormalPage, DEV | COW),
            ("COW copy", Hook::VmNormalPage, PFNMAP | COW | ANON),
            (
                "remap off the pgoff rule, shared",
                Hook::VmNormalPage,
                PFNMAP | SPECIAL | NO_PAGE,
            ),
            (
                "MIXEDMAP lookup (7.x vvar, io_uring)",
                Hook::VmNormalPage,
                MIXEDMAP,
            ),
            (
                "walk of a COW copy",
                Hook::FolioWalkStart,
                PFNMAP | COW | ANON,
            ),
            (
                "walk of a device pte",
                Hook::FolioWalkStart,
                PFNMAP | COW | NO_PAGE,
            ),
            // 7.x [vvar]: VM_IO|VM_MIXEDMAP, refcounted pages, move_pages.
            ("walk of 7.x vvar", Hook::FolioWalkStart, MIXEDMAP),
            ("pfn insert, shared PFNMAP", Hook::VmfInsertPfnProt, PFNMAP),
            (
                "whole shared remap",
                Hook::RemapPfnRange,
                PFNMAP | PFN_MATCH,
            ),
            // 7.x perf: one remap per page of a shared buffer.
            (
                "per-page shared remap",
                Hook::RemapPfnRange,
                PFNMAP | PARTIAL,
            ),
            // vfio-pci since 6.12: pmd inserts, special pmds.
            ("huge pmd insert", Hook::VmfInsertPfnPmd, PFNMAP | PFN_MATCH),
            ("huge pud insert", Hook::VmfInsertPfnPud, PFNMAP | PFN_MATCH),
            ("special pmd", Hook::VmNormalPagePmd, DEV),
            ("special pud", Hook::VmNormalPagePud, DEV),
            (
                "walk of a special entry",
                Hook::FolioWalkStart,
                PFNMAP | NO_PAGE,
            ),
            // DAX (6.x): vmf_insert_mixed into a MAP_PRIVATE file mapping
            // that is neither PFNMAP nor MIXEDMAP (the kernel program does
            // not even count these now); fuse DAX: COW MIXEDMAP.
            ("DAX private read fault", Hook::VmfInsertMixed, COW),
            (
                "pfn lookup by address, special",
                Hook::FollowPfnmapStart,
                PFNMAP | SPECIAL | PFN_MATCH,
            ),
            (
                "pfn lookup of a COW copy",
                Hook::FollowPfnmapStart,
                PFNMAP | COW,
            ),
            ("a vma created", Hook::PerfEventMmap, PFNMAP | COW),
            ("a vma gone", Hook::VmAreaFree, MIXEDMAP),
        ];
        for (what, hook, class) in cases {
            assert!(
                hits(*hook, *class).is_empty(),
                "{what}: {:?}",
                hits(*hook, *class)
            );
        }
        // Populating a MIXEDMAP is info, whoever does it.
        for hook in [
            Hook::VmInsertPage,
            Hook::VmInsertPages,
            Hook::VmfInsertMixed,
        ] {
            assert_eq!(hits(hook, MIXEDMAP), ["R4:info"], "{hook}");
        }
        assert_eq!(
            hits(Hook::VmfInsertMixed, MIXEDMAP | COW),
            ["R4:info"],
            "fuse DAX"
        );
    }

    /// Each rule on the case it was written for, at its severity.
    #[test]
    fn each_rule_fires_on_its_case() {
        let cases: &[(&str, Hook, u16, &[&str])] = &[
            (
                "COW remap",
                Hook::RemapPfnRange,
                PFNMAP | COW | PFN_MATCH,
                &["R1:info"],
            ),
            (
                "7.x COW remap",
                Hook::RemapPfnRangeComplete,
                PFNMAP | COW | PFN_MATCH,
                &["R1:info"],
            ),
            // At fentry, just before the kernel's BUG().
            (
                "pfn insert into COW PFNMAP",
                Hook::VmfInsertPfnProt,
                PFNMAP | COW,
                &["R2:critical"],
            ),
            (
                "pmd insert into COW PFNMAP",
                Hook::VmfInsertPfnPmd,
                PFNMAP | COW,
                &["R2:critical"],
            ),
            (
                "mixed insert into COW PFNMAP",
                Hook::VmfInsertMixed,
                PFNMAP | COW,
                &["R2:warning"],
            ),
            // A refused partial COW remap: the flags were never set.
            (
                "partial COW remap",
                Hook::RemapPfnRange,
                COW | PARTIAL | ERROR,
                &["R3:warning"],
            ),
            (
                "7.x prepare refuses it",
                Hook::RemapPfnRangePrepare,
                COW | PARTIAL | ERROR,
                &["R3:warning"],
            ),
            (
                "PFNMAP|MIXEDMAP remap",
                Hook::RemapPfnRange,
                PFNMAP | MIXEDMAP,
                &["R4:info"],
            ),
            (
                "pfn insert into PFNMAP|MIXEDMAP",
                Hook::VmfInsertPfnProt,
                PFNMAP | MIXEDMAP,
                &["R4:critical"],
            ),
            (
                "folio of a device pfn",
                Hook::FolioWalkStart,
                PFNMAP | SPECIAL | PFN_MATCH,
                &["R5:critical"],
            ),
            (
                "page in a shared PFNMAP",
                Hook::VmNormalPage,
                PFNMAP | PFN_MATCH,
                &["R6:critical", "R7:critical"],
            ),
            (
                "page behind a special pmd",
                Hook::VmNormalPagePmd,
                PFNMAP | SPECIAL,
                &["R6:critical"],
            ),
            (
                "non-special pte found by address",
                Hook::FollowPfnmapStart,
                PFNMAP | PFN_MATCH,
                &["R7:critical"],
            ),
            (
                "special pte off the pgoff rule",
                Hook::VmNormalPage,
                PFNMAP | COW | SPECIAL | NO_PAGE,
                &["R8:info"],
            ),
            (
                "bad pte",
                Hook::PrintBadPte,
                PFNMAP | NO_PAGE,
                &["R9:critical"],
            ),
            (
                "bad page map",
                Hook::PrintBadPageMap,
                MIXEDMAP,
                &["R9:critical"],
            ),
        ];
        for (what, hook, class, want) in cases {
            assert_eq!(hits(*hook, *class), *want, "{what}");
        }
    }

    #[test]
    fn borderline_cases() {
        // A device pfn returned as a non-special, non-anonymous page.
        assert_eq!(
            hits(Hook::VmNormalPage, PFNMAP | COW | PFN_MATCH),
            ["R7:critical"]
        );
        // A partial COW remap the kernel accepted cannot be: pfnwatch's
        // arithmetic would be wrong, so no R3 (only the COW remap's R1).
        assert_eq!(
            hits(Hook::RemapPfnRange, PFNMAP | COW | PARTIAL),
            ["R1:info"]
        );
        // R5 is VM_PFNMAP only: VM_IO does not make a MIXEDMAP a PFNMAP.
        let mut io = record(Hook::FolioWalkStart, MIXEDMAP);
        io.vm_flags |= vm_flags::VM_IO;
        assert!(ids(&set(), &io).is_empty());
        // R7 needs pte_special and a pte, not a huge pmd.
        let mut pmd = record(Hook::FolioWalkStart, PFNMAP);
        pmd.level = pfnwatch_common::Level::Pmd;
        assert_eq!(ids(&set(), &pmd), ["R5:critical"]);
        // The shared zero page in a shared PFNMAP (an RDMA device reset):
        // the kernel's own choice, no rule; any other page still counts.
        let mut zero = record(Hook::VmNormalPage, PFNMAP | PFN_MATCH);
        zero.zero_page = true;
        assert!(ids(&set(), &zero).is_empty());
        let mut walked = record(Hook::FolioWalkStart, PFNMAP);
        walked.zero_page = true;
        assert!(ids(&set(), &walked).is_empty());
        // The zero page off the pgoff rule in a COW PFNMAP (a driver's
        // vmf_insert_mixed of the zero pfn): vm_normal_page tests
        // is_zero_pfn right after the rule, so no R8.
        let mut zero_cow = record(Hook::VmNormalPage, PFNMAP | COW | SPECIAL | NO_PAGE);
        assert_eq!(ids(&set(), &zero_cow), ["R8:info"]);
        zero_cow.zero_page = true;
        assert!(ids(&set(), &zero_cow).is_empty());
        // Without pte_special: R7 cannot be told, R8 and the both-flags
        // case are real hazards.
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
        assert_eq!(
            ids(
                &no_special,
                &record(Hook::VmNormalPage, PFNMAP | COW | SPECIAL | NO_PAGE)
            ),
            ["R8:warning"]
        );
        assert_eq!(
            ids(&no_special, &record(Hook::RemapPfnRange, PFNMAP | MIXEDMAP)),
            ["R4:warning"]
        );
        // R8 needs a pte: a huge entry's pfn is its first page's.
        let mut huge = record(Hook::VmNormalPagePmd, PFNMAP | COW | SPECIAL | NO_PAGE);
        huge.level = pfnwatch_common::Level::Pmd;
        assert!(ids(&set(), &huge).is_empty());
    }

    #[test]
    fn config_disables_and_resets_severity() {
        let config = RuleConfig::default().with([RuleId::R4], [(RuleId::R1, Severity::Critical)]);
        let rules = RuleSet::new(config, set().context);
        assert!(ids(&rules, &record(Hook::VmfInsertMixed, MIXEDMAP | COW)).is_empty());
        assert_eq!(
            ids(&rules, &record(Hook::RemapPfnRange, PFNMAP | COW)),
            ["R1:critical"]
        );
        // An operator's severity wins over a match's own.
        let config = RuleConfig::default().with([], [(RuleId::R2, Severity::Info)]);
        let rules = RuleSet::new(config, set().context);
        assert_eq!(
            ids(&rules, &record(Hook::VmfInsertPfnProt, PFNMAP | COW)),
            ["R2:info"]
        );
    }

    #[test]
    fn record_mask_follows_the_enabled_rules() {
        let has = |mask: &pfnwatch_common::RecordMask, hook: Hook, class: u16| {
            mask.contains(hook, Class(class))
        };
        assert_eq!(
            record_mask(Selection::All, &set()),
            pfnwatch_common::RecordMask::all()
        );
        let mask = record_mask(Selection::Rules, &set());
        assert!(has(&mask, Hook::VmNormalPage, PFNMAP | PFN_MATCH));
        assert!(!has(&mask, Hook::VmNormalPage, DEV));
        assert!(!has(&mask, Hook::VmNormalPage, MIXEDMAP));
        assert!(has(&mask, Hook::PerfEventMmap, PFNMAP), "inventory");
        assert!(has(&mask, Hook::VmAreaFree, MIXEDMAP), "inventory");
        assert!(
            !has(&mask, Hook::RemapPfnRange, PFNMAP | PARTIAL),
            "a shared per-page remap sends nothing: the inventory has the vma"
        );
        assert!(has(&mask, Hook::RemapPfnRange, PFNMAP | COW));
        assert!(has(&mask, Hook::PrintBadPageMap, 0));
        assert!(!has(&mask, Hook::VmfInsertPfnProt, PFNMAP));
        let config = RuleConfig::default().with([RuleId::R9], []);
        let mask = record_mask(Selection::Rules, &RuleSet::new(config, set().context));
        assert!(!has(&mask, Hook::PrintBadPageMap, 0));
    }

    #[test]
    fn urgent_records_are_the_possible_warnings_and_criticals() {
        let has = |m: &pfnwatch_common::RecordMask, h, c| m.contains(h, Class(c));
        let urgent = urgent_mask(&set());
        // R6, R7: a page returned in a shared pfn map.
        assert!(has(&urgent, Hook::VmNormalPage, PFNMAP | PFN_MATCH));
        // R2 at the pfn insert's entry, R3, R9.
        assert!(has(&urgent, Hook::VmfInsertPfnProt, PFNMAP | COW));
        assert!(has(&urgent, Hook::RemapPfnRange, COW | PARTIAL | ERROR));
        assert!(has(&urgent, Hook::PrintBadPte, 0));
        // Info: R1, R4, R8 with pte_special, and the inventory.
        assert!(!has(&urgent, Hook::RemapPfnRange, PFNMAP | COW));
        assert!(!has(&urgent, Hook::VmInsertPage, MIXEDMAP));
        assert!(!has(
            &urgent,
            Hook::VmNormalPage,
            PFNMAP | COW | SPECIAL | NO_PAGE
        ));
        assert!(!has(&urgent, Hook::PerfEventMmap, PFNMAP));
        // Without pte_special R8 is a warning; an operator's severity wins.
        let no_special = RuleSet::new(
            RuleConfig::default(),
            Context {
                arch_pte_special: false,
            },
        );
        let urgent = urgent_mask(&no_special);
        assert!(has(
            &urgent,
            Hook::VmNormalPage,
            PFNMAP | COW | SPECIAL | NO_PAGE
        ));
        let config = RuleConfig::default().with([], [(RuleId::R1, Severity::Critical)]);
        let urgent = urgent_mask(&RuleSet::new(config, set().context));
        assert!(has(&urgent, Hook::RemapPfnRange, PFNMAP | COW));
    }
}
