//! The kernel's rules for pfn mappings (kernel-rules.md and the linux-mm
//! thread it comes from): the table as data (`table.rs`), the operator's
//! changes to it (`config.rs`), and which calls the kernel sends records
//! for (`selection.rs`). Evaluating a record happens once, here, for every
//! command.

mod config;
mod selection;
mod table;

pub use config::{RuleConfig, parse_rule_severity};
pub use selection::{Selection, record_mask};
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
        let mut hits: Vec<Hit> = self
            .enabled()
            .filter(|r| {
                r.matches
                    .iter()
                    .any(|m| m.matches(record.hook, record.class))
            })
            .filter(|r| {
                r.needs
                    .iter()
                    .all(|n| n.holds(record, self.context.arch_pte_special))
            })
            .map(|rule| {
                let base = self
                    .config
                    .severity
                    .get(&rule.id)
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

    /// Whether the in-kernel part of some enabled rule matches.
    pub fn kernel_part_matches(&self, hook: Hook, class: Class) -> bool {
        self.enabled()
            .any(|r| r.matches.iter().any(|m| m.matches(hook, class)))
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
        pmd.level = pfnwatch_common::Level::Pmd;
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
    fn config_disables_and_resets_severity() {
        let config = RuleConfig::default().with([RuleId::R4], [(RuleId::R1, Severity::Critical)]);
        let rules = RuleSet::new(config, set().context);
        assert_eq!(
            ids(&rules, &record(Hook::VmfInsertMixed, MIXEDMAP | COW)),
            ["R2:warning"]
        );
        assert_eq!(
            ids(&rules, &record(Hook::RemapPfnRange, PFNMAP | COW)),
            ["R1:critical"]
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
        assert!(has(&mask, Hook::RemapPfnRange, PFNMAP), "inventory");
        assert!(has(&mask, Hook::PrintBadPageMap, 0));
        assert!(!has(&mask, Hook::VmfInsertPfnProt, PFNMAP));
        let config = RuleConfig::default().with([RuleId::R9], []);
        let mask = record_mask(Selection::Rules, &RuleSet::new(config, set().context));
        assert!(!has(&mask, Hook::PrintBadPageMap, 0));
    }
}
